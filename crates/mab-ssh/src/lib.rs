//! SSH connections to runner hosts.
//!
//! - [`Destination::resolve`] turns `[user@]host[:port]` or a `Host` alias into
//!   what to dial, reading `<home>/.ssh/config` as OpenSSH does (`Host`
//!   patterns, `Include`, first value wins; `Match` blocks other than
//!   `Match all` are skipped) for HostName, User, Port, IdentityFile,
//!   UserKnownHostsFile, IdentitiesOnly, ConnectTimeout,
//!   StrictHostKeyChecking, ServerAliveInterval, ServerAliveCountMax and
//!   ProxyJump (keepalives are on by default, see [`ServerAlive`]). A `ProxyJump` chain is resolved
//!   into [`Destination::jumps`], each hop with its own options.
//! - [`Session::connect`] dials it (through each jump host in turn, over
//!   `direct-tcpip` channels), checks every host key against the known_hosts
//!   files (a changed key is always refused; an unknown one only learnt with
//!   `StrictHostKeyChecking accept-new`), and authenticates with ssh-agent,
//!   the configured keys, then the default keys. A connect refused, or a
//!   handshake reset or closed before authentication (sshd's
//!   `MaxStartups`), is retried with backoff, each retry reported as an
//!   `Event::Retry` of mab-events.
//! - A [`Session`] is shared by cloning; each [`Session::open_unix_stream`]
//!   is one channel to a remote unix socket, [`Session::exec`] runs a short
//!   command, and [`Session::exec_held`] keeps one running until its
//!   [`HeldCommand`] is released (waiting, [`RELEASE_WAIT`] at most, for
//!   it to end) or dropped; [`Session::exec_piped`] streams a command's
//!   stdin and stdout both ways ([`PipedCommand`]).
//!
//! - [`agent::KeyAgent`] serves key files as an SSH agent inside the
//!   process, over in-memory pipes, with no socket (for `mab build --ssh ID=KEYFILE`).
//!
//! Every failure is an [`SshError`] that names the host and carries a hint.
//! This crate knows nothing about what runs over its streams.

pub mod agent;
mod auth;
mod config;
mod destination;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod known_hosts;
mod piped;
mod retry;
mod session;

pub use destination::{
    ConnectionKey, Destination, ServerAlive, StrictHostKeyChecking, DEFAULT_SERVER_ALIVE_COUNT_MAX,
    DEFAULT_SERVER_ALIVE_INTERVAL,
};
pub use error::{ErrorKind, HostRef, Route, SshError};
pub use piped::{PipedCommand, PipedExit, STDERR_KEPT, STDOUT_HELD};
pub use retry::{Retries, MAX_DELAY, MIN_DELAY, TRIES};
pub use session::{
    ExecOutput, HeldCommand, Session, SshStream, DEFAULT_CONNECT_TIMEOUT, RELEASE_WAIT,
    SESSION_CHANNELS,
};
