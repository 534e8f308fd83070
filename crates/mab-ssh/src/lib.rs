//! SSH connections to runner hosts.
//!
//! - [`Destination::resolve`] turns `[user@]host[:port]` or a `Host` alias into
//!   what to dial, reading `<home>/.ssh/config` as OpenSSH does (`Host`
//!   patterns, `Include`, first value wins; `Match` blocks other than
//!   `Match all` are skipped) for HostName, User, Port, IdentityFile,
//!   UserKnownHostsFile, IdentitiesOnly, ConnectTimeout,
//!   StrictHostKeyChecking and ProxyJump. A `ProxyJump` chain is resolved
//!   into [`Destination::jumps`], each hop with its own options.
//! - [`Session::connect`] dials it (through each jump host in turn, over
//!   `direct-tcpip` channels), checks every host key against the known_hosts
//!   files (a changed key is always refused; an unknown one only learnt with
//!   `StrictHostKeyChecking accept-new`), and authenticates with ssh-agent,
//!   the configured keys, then the default keys.
//! - A [`Session`] is shared by cloning; each [`Session::open_unix_stream`]
//!   is one channel to a remote unix socket, and [`Session::exec`] runs a short
//!   command.
//!
//! Every failure is an [`SshError`] that names the host and carries a hint.
//! This crate knows nothing about what runs over its streams.

mod auth;
mod config;
mod destination;
mod error;
mod known_hosts;
mod session;

pub use destination::{Destination, StrictHostKeyChecking};
pub use error::{ErrorKind, HostRef, Route, SshError};
pub use session::{ExecOutput, Session, SshStream, DEFAULT_CONNECT_TIMEOUT, KEEPALIVE_INTERVAL};
