//! SSH connections to runner hosts.
//!
//! - [`Destination::resolve`] turns `[user@]host[:port]` or a `Host` alias into
//!   what to dial, applying `<home>/.ssh/config` (HostName, User, Port,
//!   IdentityFile, UserKnownHostsFile, IdentitiesOnly, ConnectTimeout).
//! - [`Session::connect`] dials it, checks the host key against every
//!   known_hosts file (never accepting an unknown or changed key), and
//!   authenticates with ssh-agent, the configured keys, then the default keys.
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
