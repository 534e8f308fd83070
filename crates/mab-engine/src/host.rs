//! Commands on an engine's own host.
//!
//! A Docker engine gets everything it needs through its socket (the
//! BuildKit session carries the context). Podman's API service has no such
//! session, so mab keeps a copy of the context on the engine's host and
//! builds from there: that takes commands run on the host itself (over SSH
//! for a remote runner, as a local process for `local`). This crate sees
//! them only through [`HostShell`], so it still knows nothing of SSH.

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed future, as [`HostShell`] and [`HostCommand`] return them.
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a command run by a [`HostShell`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostExit {
    /// Its exit status; `None` when it was killed by a signal, or the
    /// host closed the channel without one.
    pub status: Option<u32>,
    /// What it wrote to stderr (lossily decoded as UTF-8), at most the
    /// last 64 KiB.
    pub stderr: String,
}

impl HostExit {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// A command running on the engine's host. Reading it reads the command's
/// stdout; writing it writes its stdin, and `shutdown` closes its stdin
/// (EOF). Dropping it before [`HostCommand::wait`] ends the command the way
/// a closed `ssh` session does (its stdin and stdout are closed; a command
/// that goes on without them is not killed).
pub trait HostCommand: AsyncRead + AsyncWrite + Unpin + Send {
    /// Waits for the command to end, reading and dropping what is left of
    /// its stdout, and returns its exit status and stderr. Errors: the
    /// connection to the host broke before the command ended.
    fn wait(self: Box<Self>) -> HostFuture<'static, io::Result<HostExit>>;
}

/// Runs commands on the engine's host.
pub trait HostShell: Send + Sync {
    /// Starts `script`, a POSIX `sh` script, on the host: over SSH the
    /// account's login shell runs it as `ssh HOST SCRIPT` would (so keep
    /// it to what `sh`, `bash` and `dash` all read alike), locally `sh -c
    /// SCRIPT`. Errors: the command could not be started (the connection
    /// is gone, the host refused the channel).
    fn start<'a>(&'a self, script: &'a str) -> HostFuture<'a, io::Result<Box<dyn HostCommand>>>;

    /// The host as messages name it (`root@127.0.0.5:2222`, `this machine`).
    fn name(&self) -> String;
}
