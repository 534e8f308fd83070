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

/// How much of a command's stderr [`HostExit::stderr`] keeps: its last
/// 64 KiB.
pub const HOST_STDERR_KEPT: usize = 64 * 1024;

/// The engine's host when it is this machine (the `local` runner):
/// commands run as `sh -c SCRIPT` child processes with piped stdin,
/// stdout and stderr.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalShell;

impl HostShell for LocalShell {
    fn start<'a>(&'a self, script: &'a str) -> HostFuture<'a, io::Result<Box<dyn HostCommand>>> {
        Box::pin(async move {
            let mut child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take();
            let stderr = child.stderr.take().map(|mut stderr| {
                tokio::spawn(async move {
                    let mut kept = Vec::new();
                    let mut chunk = vec![0; 8192];
                    loop {
                        match tokio::io::AsyncReadExt::read(&mut stderr, &mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(count) => kept.extend_from_slice(&chunk[..count]),
                        }
                        if kept.len() > 2 * HOST_STDERR_KEPT {
                            kept.drain(..kept.len() - HOST_STDERR_KEPT);
                        }
                    }
                    let start = kept.len().saturating_sub(HOST_STDERR_KEPT);
                    String::from_utf8_lossy(&kept[start..]).into_owned()
                })
            });
            let command: Box<dyn HostCommand> = Box::new(LocalCommand {
                child,
                stdin,
                stdout,
                stderr,
            });
            Ok(command)
        })
    }

    fn name(&self) -> String {
        "this machine".to_owned()
    }
}

/// A command of [`LocalShell`]. Dropping it closes its stdin and stdout
/// and leaves it running (tokio reaps it when it ends).
struct LocalCommand {
    child: tokio::process::Child,
    /// `None` once closed (`shutdown`).
    stdin: Option<tokio::process::ChildStdin>,
    stdout: Option<tokio::process::ChildStdout>,
    /// The task that keeps the tail of stderr.
    stderr: Option<tokio::task::JoinHandle<String>>,
}

impl AsyncRead for LocalCommand {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut().stdout.as_mut() {
            Some(stdout) => Pin::new(stdout).poll_read(cx, buf),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for LocalCommand {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut().stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_write(cx, buf),
            None => std::task::Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the command's stdin is closed",
            ))),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut().stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }

    /// Closes stdin: a pipe's reader sees EOF only once its writer is
    /// gone.
    fn poll_shutdown(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.get_mut().stdin = None;
        std::task::Poll::Ready(Ok(()))
    }
}

impl HostCommand for LocalCommand {
    fn wait(mut self: Box<Self>) -> HostFuture<'static, io::Result<HostExit>> {
        Box::pin(async move {
            self.stdin = None;
            if let Some(mut stdout) = self.stdout.take() {
                tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await?;
            }
            let status = self.child.wait().await?;
            let stderr = match self.stderr.take() {
                Some(task) => task.await.unwrap_or_default(),
                None => String::new(),
            };
            Ok(HostExit {
                status: status.code().and_then(|code| u32::try_from(code).ok()),
                stderr,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// `cat` gives back what it reads, several MiB of it, written while
    /// its output is read; `shutdown` is its EOF.
    #[tokio::test]
    async fn a_local_command_streams_both_ways() {
        let command = LocalShell.start("cat").await.unwrap();
        let input: Vec<u8> = (0..6 * 1024 * 1024).map(|n: u32| (n % 251) as u8).collect();
        let (mut reader, mut writer) = tokio::io::split(command);
        let write = async {
            writer.write_all(&input).await.unwrap();
            writer.shutdown().await.unwrap();
        };
        let mut output = Vec::new();
        let read = reader.read_to_end(&mut output);
        let ((), read) = tokio::join!(write, read);
        read.unwrap();
        assert!(output == input, "cat gave back {} bytes", output.len());
        let exit = reader.unsplit(writer).wait().await.unwrap();
        assert_eq!(
            exit,
            HostExit {
                status: Some(0),
                stderr: String::new()
            }
        );
    }

    /// How `script` ended, run by [`LocalShell`].
    async fn run(script: &str) -> HostExit {
        LocalShell
            .start(script)
            .await
            .unwrap()
            .wait()
            .await
            .unwrap()
    }

    /// The exit status and stderr come back; stdout left unread does not
    /// hold the wait up.
    #[tokio::test]
    async fn a_local_command_tells_its_status_and_stderr() {
        let script = "head -c 1000000 /dev/zero; echo oops >&2; exit 3";
        let exit = run(script).await;
        assert_eq!(exit.status, Some(3));
        assert_eq!(exit.stderr, "oops\n");
        assert!(!exit.success());
        assert_eq!(LocalShell.name(), "this machine");
    }

    /// Only the last 64 KiB of stderr are kept.
    #[tokio::test]
    async fn a_local_command_keeps_the_end_of_its_stderr() {
        let script = "head -c 200000 /dev/zero | tr '\\0' a >&2; echo end >&2";
        let exit = run(script).await;
        assert_eq!(exit.stderr.len(), HOST_STDERR_KEPT);
        assert!(
            exit.stderr.ends_with("aaaend\n"),
            "{}",
            &exit.stderr[exit.stderr.len() - 10..]
        );
    }

    /// A command killed by a signal has no exit status.
    #[tokio::test]
    async fn a_killed_local_command_has_no_status() {
        let exit = run("kill -9 $$").await;
        assert_eq!(exit.status, None);
    }
}
