//! The one error type of this crate, sorted into [`ErrorKind`]s.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The host an error is about: the name the user wrote and the address dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRef {
    /// The name as written (a `Host` alias of the ssh config, or a literal host).
    pub alias: String,
    /// The host actually contacted (the ssh config's `HostName`, or the alias).
    pub host_name: String,
    pub port: u16,
    /// Where the host stands in a `ProxyJump` chain, if it is in one.
    pub route: Route,
}

/// Where a host stands in a `ProxyJump` chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Route {
    /// Dialled directly.
    #[default]
    Direct,
    /// Jump host `index` (from 1) of `count`, on the way to `target`.
    Jump {
        index: usize,
        count: usize,
        target: String,
    },
    /// Reached through the jump host `jump` (the last of its chain).
    Via { jump: String },
}

impl HostRef {
    /// A host dialled directly.
    pub fn new(alias: &str, host_name: &str, port: u16) -> HostRef {
        HostRef {
            alias: alias.to_string(),
            host_name: host_name.to_string(),
            port,
            route: Route::Direct,
        }
    }

    /// The same host without its place in a ProxyJump chain, for a message
    /// that names both ends of a hop.
    pub fn without_route(&self) -> HostRef {
        HostRef {
            route: Route::Direct,
            ..self.clone()
        }
    }

    /// `host:port`, with an IPv6 address in brackets.
    pub fn address(&self) -> String {
        if self.host_name.contains(':') {
            format!("[{}]:{}", self.host_name, self.port)
        } else {
            format!("{}:{}", self.host_name, self.port)
        }
    }

    /// How OpenSSH names this host in `known_hosts`: `host`, or `[host]:port`
    /// when the port is not 22.
    pub fn known_hosts_name(&self) -> String {
        crate::known_hosts::known_hosts_name(&self.host_name, self.port)
    }
}

/// `` `alias` (host:port) ``, or `` `host:port` `` when they are the same,
/// with the host's place in a ProxyJump chain inside the parentheses.
impl fmt::Display for HostRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let route = match &self.route {
            Route::Direct => None,
            Route::Jump {
                count: 1, target, ..
            } => Some(format!("the jump host for `{target}`")),
            Route::Jump {
                index,
                count,
                target,
            } => Some(format!("jump host {index} of {count} for `{target}`")),
            Route::Via { jump } => Some(format!("via `{jump}`")),
        };
        match (self.alias == self.host_name, route) {
            (true, None) => write!(f, "`{}`", self.address()),
            (true, Some(route)) => write!(f, "`{}` ({route})", self.address()),
            (false, None) => write!(f, "`{}` ({})", self.alias, self.address()),
            (false, Some(route)) => {
                let separator = if matches!(self.route, Route::Via { .. }) {
                    " "
                } else {
                    ", "
                };
                write!(f, "`{}` ({}{separator}{route})", self.alias, self.address())
            }
        }
    }
}

/// The broad reason a connection failed, for exit codes, for the
/// `error_kind` of `mab runners check --format json` and for tests.
///
/// | kind | `as_str()` | what went wrong |
/// |---|---|---|
/// | [`Dns`](ErrorKind::Dns) | `dns` | the host name does not resolve |
/// | [`Refused`](ErrorKind::Refused) | `refused` | the host was not reached or did not accept an SSH session: connection refused, no route to host, network unreachable, connection reset or closed (also during the handshake), a handshake that fails, a jump host that cannot or may not forward to the next host |
/// | [`Timeout`](ErrorKind::Timeout) | `timeout` | no answer in time: resolving, connecting, the handshake, authentication, keepalives |
/// | [`HostKey`](ErrorKind::HostKey) | `host_key` | the host key is unknown, changed, of an unrecorded type, a certificate, or known_hosts cannot be read |
/// | [`Auth`](ErrorKind::Auth) | `auth` | no key was accepted, or there was no key to try |
/// | [`Config`](ErrorKind::Config) | `config` | the destination or the user's ssh config is wrong (a bad value, an unreadable file, `ProxyCommand`, a `ProxyJump` loop); nothing was dialled, so this is a configuration error, not an unreachable host |
/// | [`Other`](ErrorKind::Other) | `other` | the session is up but what it was asked for failed: the engine's unix socket could not be forwarded, or a remote command failed (mab reports this as `engine`) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Dns,
    Refused,
    Timeout,
    HostKey,
    Auth,
    Config,
    Other,
}

impl ErrorKind {
    /// The snake_case name: `dns`, `refused`, `timeout`, `host_key`, `auth`,
    /// `config`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Dns => "dns",
            ErrorKind::Refused => "refused",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HostKey => "host_key",
            ErrorKind::Auth => "auth",
            ErrorKind::Config => "config",
            ErrorKind::Other => "other",
        }
    }

    /// The kind of an I/O error on the way to a host: a timeout, else a
    /// connection-level failure (refused, no route, unreachable, reset, EOF).
    fn of_io(error: &std::io::Error) -> ErrorKind {
        match error.kind() {
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Refused,
        }
    }

    /// The kind of an SSH protocol error on an open connection: a timeout,
    /// else the connection failed or the host would not speak SSH with us.
    fn of_russh(error: &russh::Error) -> ErrorKind {
        match error {
            russh::Error::ConnectionTimeout
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
            | russh::Error::Elapsed(_) => ErrorKind::Timeout,
            russh::Error::IO(source) => ErrorKind::of_io(source),
            _ => ErrorKind::Refused,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What sshd's channel-open failure code says, in words.
fn open_failure_reason(failure: &russh::ChannelOpenFailure) -> String {
    match failure {
        russh::ChannelOpenFailure::AdministrativelyProhibited => {
            "forwarding is administratively prohibited".to_string()
        }
        russh::ChannelOpenFailure::ConnectFailed => {
            "the socket could not be connected (it may be missing or not accessible to the SSH user, \
             or sshd does not allow stream-local forwarding, which OpenSSH reports so)"
                .to_string()
        }
        russh::ChannelOpenFailure::UnknownChannelType => {
            "the server does not support stream-local forwarding".to_string()
        }
        russh::ChannelOpenFailure::ResourceShortage => "the server is short of resources".to_string(),
        russh::ChannelOpenFailure::Other { code, reason } => format!("{reason} (code {code})"),
    }
}

/// Everything that can go wrong while resolving, connecting to or using an SSH host.
///
/// The message is one sentence naming the host; [`SshError::hint`] gives the
/// suggestion to print on a `hint:` line below it.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The destination as written and why [`mab_config::HostSpec::parse`]
    /// refused it.
    #[error("SSH destination `{spec}` {source}")]
    InvalidDestination {
        spec: String,
        source: mab_config::HostError,
    },

    // The host by its alias alone: the port and name are the config's to say.
    #[error("cannot read the ssh config {} for host `{}`: {message}", path.display(), host.alias)]
    Config {
        host: Box<HostRef>,
        path: PathBuf,
        message: String,
    },

    #[error("cannot resolve the host name of {host}: {source}")]
    Dns {
        host: Box<HostRef>,
        #[source]
        source: std::io::Error,
    },

    #[error("connection to {host} was refused")]
    Refused { host: Box<HostRef> },

    #[error("{host} did not answer within {} s ({stage})", after.as_secs_f32())]
    Timeout {
        host: Box<HostRef>,
        after: Duration,
        stage: &'static str,
    },

    #[error("cannot connect to {host}: {source}")]
    Connect {
        host: Box<HostRef>,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the host key of {host} is not known: its {key_type} key has fingerprint {fingerprint}"
    )]
    UnknownHostKey {
        host: Box<HostRef>,
        key_type: String,
        fingerprint: String,
        /// Where to suggest adding the key, as the user would type it (`~/...`).
        known_hosts: String,
    },

    #[error(
        "the host key of {host} has CHANGED from the one recorded in {} line {line} \
         (the host now offers the {key_type} key {fingerprint}); \
         this may be an attack by someone intercepting the connection",
        file.display()
    )]
    ChangedHostKey {
        host: Box<HostRef>,
        key_type: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
        /// `file` as the user would type it (`~/...`).
        file_shown: String,
    },

    #[error("cannot check the host key of {host} against {}: {message}", file.display())]
    KnownHosts {
        host: Box<HostRef>,
        file: PathBuf,
        message: String,
    },

    #[error(
        "the host key of {host} is not known: it offered its {key_type} key {fingerprint}, \
         but known_hosts records only its {recorded} key, so the new key is not learnt automatically"
    )]
    UnrecordedKeyType {
        host: Box<HostRef>,
        key_type: String,
        fingerprint: String,
        /// The algorithms recorded for the host, comma-separated.
        recorded: String,
        /// Where to suggest adding the key, as the user would type it (`~/...`).
        known_hosts: String,
    },

    #[error("{host} presented a host certificate, which is not supported; only plain host keys listed in known_hosts are accepted")]
    HostCertificate { host: Box<HostRef> },

    #[error("{host} rejected every key for user `{user}` (tried: {}){}",
        tried.join(", "),
        if skipped.is_empty() { String::new() } else { format!("; skipped: {}", skipped.join(", ")) })]
    Auth {
        host: Box<HostRef>,
        user: String,
        tried: Vec<String>,
        skipped: Vec<String>,
    },

    #[error("found no SSH key to log in to {host} as `{user}` (no ssh-agent key, no IdentityFile, no default key in ~/.ssh){}",
        if skipped.is_empty() { String::new() } else { format!("; skipped: {}", skipped.join(", ")) })]
    NoKeys {
        host: Box<HostRef>,
        user: String,
        skipped: Vec<String>,
    },

    #[error("the SSH handshake with {host} failed: {source}")]
    Handshake {
        host: Box<HostRef>,
        #[source]
        source: russh::Error,
    },

    #[error(
        "{host} refused to forward to the unix socket `{socket_path}`: {}",
        open_failure_reason(failure)
    )]
    UnixSocket {
        host: Box<HostRef>,
        socket_path: String,
        /// The reason code of sshd's `SSH_MSG_CHANNEL_OPEN_FAILURE`
        /// (RFC 4254, section 5.1).
        failure: russh::ChannelOpenFailure,
    },

    #[error("{host} is reached through `ProxyCommand {command}` ({} line {line}), which mab does not run", path.display())]
    ProxyCommand {
        host: Box<HostRef>,
        command: String,
        path: PathBuf,
        line: usize,
    },

    #[error("the ProxyJump chain of {host} leads back to `{jump}` ({chain})")]
    JumpLoop {
        host: Box<HostRef>,
        /// The alias met twice.
        jump: String,
        /// `a -> b -> a`.
        chain: String,
    },

    #[error(
        "the jump host {} could not connect to {}: {reason}",
        jump.without_route(),
        host.without_route()
    )]
    JumpForward {
        host: Box<HostRef>,
        jump: Box<HostRef>,
        reason: String,
        /// The jump host refused to forward at all (its sshd forbids it).
        prohibited: bool,
    },

    #[error("running `{command}` on {host} failed: {reason}")]
    Exec {
        host: Box<HostRef>,
        command: String,
        reason: String,
    },

    #[error("the SSH connection to {host} failed while {action}: {source}")]
    Connection {
        host: Box<HostRef>,
        action: String,
        #[source]
        source: russh::Error,
    },
}

impl SshError {
    /// The broad reason, for exit codes and tests (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            SshError::Dns { .. } => ErrorKind::Dns,
            SshError::Refused { .. } | SshError::JumpForward { .. } => ErrorKind::Refused,
            SshError::Connect { source, .. } => ErrorKind::of_io(source),
            SshError::Handshake { source, .. } | SshError::Connection { source, .. } => {
                ErrorKind::of_russh(source)
            }
            SshError::Timeout { .. } => ErrorKind::Timeout,
            SshError::UnknownHostKey { .. }
            | SshError::ChangedHostKey { .. }
            | SshError::UnrecordedKeyType { .. }
            | SshError::KnownHosts { .. }
            | SshError::HostCertificate { .. } => ErrorKind::HostKey,
            SshError::Auth { .. } | SshError::NoKeys { .. } => ErrorKind::Auth,
            SshError::InvalidDestination { .. }
            | SshError::Config { .. }
            | SshError::ProxyCommand { .. }
            | SshError::JumpLoop { .. } => ErrorKind::Config,
            SshError::UnixSocket { .. } | SshError::Exec { .. } => ErrorKind::Other,
        }
    }

    /// The I/O error kind this error stands for when it came from opening
    /// a stream to a socket on the host ([`Session::open_unix_stream`]),
    /// which decides whether the engine request is tried again
    /// (docs/what-happens-when.md). sshd's channel-open failures (RFC 4254,
    /// section 5.1): `connect failed` (the socket refused or is missing
    /// now, as while an engine restarts) and `resource shortage` are
    /// `ConnectionRefused`, which may pass; `administratively prohibited`
    /// (a server whose policy refuses the forwarding) is
    /// `PermissionDenied` and `unknown channel type` (a server without
    /// stream-local forwarding) is `Unsupported`, which do not. OpenSSH's
    /// sshd sends `connect failed` for a forwarding its
    /// `AllowStreamLocalForwarding` refuses too (its log says "refused
    /// streamlocal port forward"), so that refusal is tried again like a
    /// missing socket. A
    /// connection that failed keeps its I/O error's kind (`NotConnected`
    /// when it was closed); anything else is `Other`.
    ///
    /// [`Session::open_unix_stream`]: crate::Session::open_unix_stream
    pub fn io_kind(&self) -> std::io::ErrorKind {
        use russh::ChannelOpenFailure as Failure;
        use std::io::ErrorKind as Io;
        match self {
            SshError::UnixSocket { failure, .. } => match failure {
                Failure::ConnectFailed | Failure::ResourceShortage => Io::ConnectionRefused,
                Failure::AdministrativelyProhibited => Io::PermissionDenied,
                Failure::UnknownChannelType => Io::Unsupported,
                Failure::Other { .. } => Io::Other,
            },
            SshError::Connection { source, .. } => match source {
                russh::Error::IO(error) => error.kind(),
                russh::Error::HUP | russh::Error::Disconnect | russh::Error::SendError => {
                    Io::NotConnected
                }
                _ => Io::Other,
            },
            _ => Io::Other,
        }
    }

    /// The host the error is about (`None` only for a destination that could not be parsed).
    pub fn host(&self) -> Option<&HostRef> {
        match self {
            SshError::InvalidDestination { .. } => None,
            SshError::Config { host, .. }
            | SshError::Dns { host, .. }
            | SshError::Refused { host }
            | SshError::Timeout { host, .. }
            | SshError::Connect { host, .. }
            | SshError::UnknownHostKey { host, .. }
            | SshError::ChangedHostKey { host, .. }
            | SshError::UnrecordedKeyType { host, .. }
            | SshError::KnownHosts { host, .. }
            | SshError::HostCertificate { host }
            | SshError::Auth { host, .. }
            | SshError::NoKeys { host, .. }
            | SshError::Handshake { host, .. }
            | SshError::UnixSocket { host, .. }
            | SshError::ProxyCommand { host, .. }
            | SshError::JumpLoop { host, .. }
            | SshError::JumpForward { host, .. }
            | SshError::Exec { host, .. }
            | SshError::Connection { host, .. } => Some(host),
        }
    }

    /// A suggestion for the user, to be printed after `hint: `.
    pub fn hint(&self) -> Option<String> {
        match self {
            SshError::InvalidDestination { source, .. } => Some(source.hint()),
            SshError::Config { .. } => {
                Some("fix the ssh config file (`ssh -G HOST` shows how OpenSSH reads it)".into())
            }
            SshError::Dns { host, .. } => Some(format!(
                "check the spelling of `{}`, or set its HostName in ~/.ssh/config",
                host.host_name
            )),
            SshError::Refused { host } => Some(format!(
                "check that sshd is running on {} and listens on port {} (the port in the runner's `host`, or Port in ~/.ssh/config)",
                host.host_name, host.port
            )),
            SshError::Timeout { .. } => Some(
                "check that the host is up and reachable, or raise ConnectTimeout for it in ~/.ssh/config"
                    .to_string(),
            ),
            SshError::Connect { .. } => {
                Some("check the network path to the host and its address".to_string())
            }
            SshError::UnknownHostKey {
                host, known_hosts, ..
            } => Some(format!(
                "verify the fingerprint, then add the key with: {}",
                keyscan(host, None, known_hosts)
            )),
            SshError::UnrecordedKeyType {
                host,
                key_type,
                known_hosts,
                ..
            } => Some(format!(
                "verify the fingerprint, then add the key with: {}",
                keyscan(host, Some(key_type), known_hosts)
            )),
            SshError::ChangedHostKey {
                host, file_shown, ..
            } => Some(format!(
                "only if you know why the key changed (the host was reinstalled), remove the old line with: \
                 ssh-keygen -f {file_shown} -R '{}'",
                host.known_hosts_name()
            )),
            SshError::KnownHosts { .. } => {
                Some("fix or remove the malformed line in the known_hosts file".to_string())
            }
            SshError::HostCertificate { .. } => None,
            SshError::Auth {
                host, user, tried, ..
            } => {
                // The public half of the first key file tried, else the
                // usual one.
                let key = tried
                    .iter()
                    .find(|tried| !tried.starts_with("ssh-agent"))
                    .map_or_else(|| "~/.ssh/id_ed25519".to_owned(), Clone::clone);
                Some(format!(
                    "add your public key ({key}.pub) to ~{user}/.ssh/authorized_keys on {}, \
                     or name the right key with IdentityFile in ~/.ssh/config",
                    host.host_name
                ))
            }
            SshError::NoKeys { host, user, .. } => Some(format!(
                "create a key with `ssh-keygen -t ed25519` and add the .pub file to \
                 ~{user}/.ssh/authorized_keys on {}, or load a key into ssh-agent",
                host.host_name
            )),
            SshError::Handshake { .. } => Some(
                "check that the port belongs to an SSH server; `ssh -v` shows the same handshake"
                    .to_string(),
            ),
            SshError::UnixSocket { socket_path, .. } => Some(format!(
                "check that `{socket_path}` exists on the host and that its sshd allows stream-local \
                 forwarding (AllowStreamLocalForwarding)"
            )),
            SshError::ProxyCommand { .. } => Some(
                "reach the host with ProxyJump instead, or set `ProxyCommand none` for it \
                 in a Host block above this one"
                    .to_string(),
            ),
            SshError::JumpLoop { jump, .. } => Some(format!(
                "give `{jump}` its own Host block with `ProxyJump none` above the block \
                 that sends it through a jump host"
            )),
            SshError::JumpForward {
                jump,
                prohibited: true,
                ..
            } => Some(format!(
                "allow TCP forwarding on `{}` (AllowTcpForwarding and PermitOpen in its sshd_config)",
                jump.host_name
            )),
            SshError::JumpForward {
                host,
                jump,
                prohibited: false,
                ..
            } => Some(format!(
                "check that `{}` resolves and accepts connections on port {} as seen from `{}`",
                host.host_name, host.port, jump.host_name
            )),
            SshError::Exec { .. } => None,
            SshError::Connection { .. } => {
                Some("the host or the network dropped the connection; try again".to_string())
            }
        }
    }
}

/// `ssh-keyscan [-t TYPE] [-p PORT] HOST >> FILE`.
fn keyscan(host: &HostRef, key_type: Option<&str>, known_hosts: &str) -> String {
    // ssh-keyscan names key types without their signature details.
    let key_type = key_type
        .map(|key_type| {
            let short = if key_type.starts_with("ecdsa-") {
                "ecdsa"
            } else if key_type.starts_with("rsa-") || key_type == "ssh-rsa" {
                "rsa"
            } else {
                key_type.strip_prefix("ssh-").unwrap_or(key_type)
            };
            format!("-t {short} ")
        })
        .unwrap_or_default();
    let port = if host.port == 22 {
        String::new()
    } else {
        format!("-p {} ", host.port)
    };
    format!(
        "ssh-keyscan {key_type}{port}{} >> {known_hosts}",
        host.host_name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Box<HostRef> {
        Box::new(HostRef::new("arm", "127.0.0.2", 2222))
    }

    fn jump(index: usize, count: usize) -> Box<HostRef> {
        let mut host = HostRef::new("bastion", "127.0.0.20", 2300);
        host.route = Route::Jump {
            index,
            count,
            target: "arm".into(),
        };
        Box::new(host)
    }

    /// The I/O kinds a failed stream open stands for; mab-engine retries
    /// `ConnectionRefused` and the other kinds of a dropped connection,
    /// never `PermissionDenied`, `Unsupported`, `NotConnected` or `Other`.
    #[test]
    fn stream_open_failures_as_io_kinds() {
        use russh::ChannelOpenFailure as Failure;
        use std::io::ErrorKind as Io;
        let socket = |failure| SshError::UnixSocket {
            host: host(),
            socket_path: "/run/docker.sock".into(),
            failure,
        };
        let connection = |source| SshError::Connection {
            host: host(),
            action: "opening a stream to `/run/docker.sock`".into(),
            source,
        };
        let cases = [
            (socket(Failure::ConnectFailed), Io::ConnectionRefused),
            (socket(Failure::ResourceShortage), Io::ConnectionRefused),
            (
                socket(Failure::AdministrativelyProhibited),
                Io::PermissionDenied,
            ),
            (socket(Failure::UnknownChannelType), Io::Unsupported),
            (
                socket(Failure::Other {
                    code: 9,
                    reason: "no".into(),
                }),
                Io::Other,
            ),
            (
                connection(russh::Error::IO(std::io::Error::new(
                    Io::ConnectionReset,
                    "reset",
                ))),
                Io::ConnectionReset,
            ),
            (connection(russh::Error::HUP), Io::NotConnected),
            (connection(russh::Error::Disconnect), Io::NotConnected),
            (connection(russh::Error::SendError), Io::NotConnected),
            (connection(russh::Error::Inconsistent), Io::Other),
            (SshError::Refused { host: host() }, Io::Other),
        ];
        for (error, kind) in cases {
            assert_eq!(error.io_kind(), kind, "{error:?}");
        }
    }

    fn behind_bastion() -> Box<HostRef> {
        let mut host = HostRef::new("arm", "10.0.0.5", 22);
        host.route = Route::Via {
            jump: "bastion".into(),
        };
        Box::new(host)
    }

    #[test]
    fn messages_name_the_host_and_hint() {
        let cases: Vec<(SshError, &str, &str, &str)> = vec![
            (
                SshError::Refused { host: host() },
                "refused",
                "connection to `arm` (127.0.0.2:2222) was refused",
                "listens on port 2222",
            ),
            (
                SshError::Timeout {
                    host: host(),
                    after: Duration::from_millis(2500),
                    stage: "connecting",
                },
                "timeout",
                "`arm` (127.0.0.2:2222) did not answer within 2.5 s (connecting)",
                "ConnectTimeout",
            ),
            (
                SshError::Auth {
                    host: host(),
                    user: "builder".into(),
                    tried: vec!["ssh-agent (2 keys)".into(), "~/.ssh/id_ed25519".into()],
                    skipped: vec!["~/.ssh/old (encrypted; add it to ssh-agent)".into()],
                },
                "auth",
                "`arm` (127.0.0.2:2222) rejected every key for user `builder` \
                 (tried: ssh-agent (2 keys), ~/.ssh/id_ed25519); \
                 skipped: ~/.ssh/old (encrypted; add it to ssh-agent)",
                "~builder/.ssh/authorized_keys on 127.0.0.2",
            ),
            (
                SshError::NoKeys {
                    host: host(),
                    user: "builder".into(),
                    skipped: vec![],
                },
                "auth",
                "found no SSH key to log in to `arm` (127.0.0.2:2222) as `builder` \
                 (no ssh-agent key, no IdentityFile, no default key in ~/.ssh)",
                "ssh-keygen -t ed25519",
            ),
            (
                SshError::UnixSocket {
                    host: host(),
                    socket_path: "/run/docker.sock".into(),
                    failure: russh::ChannelOpenFailure::AdministrativelyProhibited,
                },
                "other",
                "`arm` (127.0.0.2:2222) refused to forward to the unix socket `/run/docker.sock`: \
                 forwarding is administratively prohibited",
                "AllowStreamLocalForwarding",
            ),
        ];
        for (error, kind, message, hint) in cases {
            assert_eq!(error.kind().as_str(), kind, "{error}");
            assert_eq!(error.to_string(), message);
            let shown_hint = error.hint().unwrap_or_default();
            assert!(shown_hint.contains(hint), "{shown_hint}");
            assert_eq!(error.host().map(|host| host.port), Some(2222));
        }
    }

    #[test]
    fn jump_host_messages_name_the_hop() {
        let cases: Vec<(SshError, &str, &str, &str)> = vec![
            (
                SshError::Refused { host: jump(1, 2) },
                "refused",
                "connection to `bastion` (127.0.0.20:2300, jump host 1 of 2 for `arm`) was refused",
                "listens on port 2300",
            ),
            (
                SshError::UnknownHostKey {
                    host: jump(1, 1),
                    key_type: "ssh-ed25519".into(),
                    fingerprint: "SHA256:abc".into(),
                    known_hosts: "~/.ssh/known_hosts".into(),
                },
                "host_key",
                "the host key of `bastion` (127.0.0.20:2300, the jump host for `arm`) is not known: \
                 its ssh-ed25519 key has fingerprint SHA256:abc",
                "ssh-keyscan -p 2300 127.0.0.20 >> ~/.ssh/known_hosts",
            ),
            (
                SshError::JumpForward {
                    host: behind_bastion(),
                    jump: jump(1, 1),
                    reason: "the connection failed".into(),
                    prohibited: false,
                },
                "refused",
                "the jump host `bastion` (127.0.0.20:2300) could not connect to \
                 `arm` (10.0.0.5:22): the connection failed",
                "accepts connections on port 22 as seen from `127.0.0.20`",
            ),
            (
                SshError::JumpForward {
                    host: behind_bastion(),
                    jump: jump(2, 2),
                    reason: "forwarding is administratively prohibited".into(),
                    prohibited: true,
                },
                "refused",
                "the jump host `bastion` (127.0.0.20:2300) could not connect to \
                 `arm` (10.0.0.5:22): forwarding is administratively prohibited",
                "AllowTcpForwarding",
            ),
            (
                SshError::Auth {
                    host: behind_bastion(),
                    user: "builder".into(),
                    tried: vec!["~/.ssh/id_ed25519".into()],
                    skipped: vec![],
                },
                "auth",
                "`arm` (10.0.0.5:22 via `bastion`) rejected every key for user `builder` \
                 (tried: ~/.ssh/id_ed25519)",
                "authorized_keys on 10.0.0.5",
            ),
            (
                SshError::JumpLoop {
                    host: host(),
                    jump: "bastion".into(),
                    chain: "arm -> bastion -> bastion".into(),
                },
                "config",
                "the ProxyJump chain of `arm` (127.0.0.2:2222) leads back to `bastion` \
                 (arm -> bastion -> bastion)",
                "give `bastion` its own Host block with `ProxyJump none`",
            ),
            (
                SshError::ProxyCommand {
                    host: host(),
                    command: "nc %h %p".into(),
                    path: PathBuf::from("/h/.ssh/config"),
                    line: 4,
                },
                "config",
                "`arm` (127.0.0.2:2222) is reached through `ProxyCommand nc %h %p` \
                 (/h/.ssh/config line 4), which mab does not run",
                "ProxyJump",
            ),
            (
                SshError::UnrecordedKeyType {
                    host: host(),
                    key_type: "ecdsa-sha2-nistp256".into(),
                    fingerprint: "SHA256:xyz".into(),
                    recorded: "ssh-ed25519".into(),
                    known_hosts: "~/.ssh/known_hosts".into(),
                },
                "host_key",
                "the host key of `arm` (127.0.0.2:2222) is not known: it offered its ecdsa-sha2-nistp256 key \
                 SHA256:xyz, but known_hosts records only its ssh-ed25519 key, so the new key is not learnt \
                 automatically",
                "ssh-keyscan -t ecdsa -p 2222 127.0.0.2 >> ~/.ssh/known_hosts",
            ),
        ];
        for (error, kind, message, hint) in cases {
            assert_eq!(error.kind().as_str(), kind, "{error}");
            assert_eq!(error.to_string(), message);
            let shown_hint = error.hint().unwrap_or_default();
            assert!(shown_hint.contains(hint), "{shown_hint}");
        }
    }

    /// Every variant's kind: connection-level failures are `refused`,
    /// problems in the user's ssh config are `config`.
    #[test]
    fn kinds() {
        use std::io::{Error as IoError, ErrorKind as Io};
        let connect = |kind: Io, text: &str| SshError::Connect {
            host: host(),
            source: IoError::new(kind, text),
        };
        let handshake = |source: russh::Error| SshError::Handshake {
            host: host(),
            source,
        };
        let connection = |source: russh::Error| SshError::Connection {
            host: host(),
            action: "opening a channel".into(),
            source,
        };
        let cases: Vec<(SshError, ErrorKind)> = vec![
            (
                SshError::Dns {
                    host: host(),
                    source: IoError::new(Io::NotFound, "no such host"),
                },
                ErrorKind::Dns,
            ),
            (SshError::Refused { host: host() }, ErrorKind::Refused),
            (
                connect(Io::HostUnreachable, "No route to host"),
                ErrorKind::Refused,
            ),
            (
                connect(Io::NetworkUnreachable, "Network is unreachable"),
                ErrorKind::Refused,
            ),
            (
                connect(Io::ConnectionReset, "Connection reset by peer"),
                ErrorKind::Refused,
            ),
            (
                connect(Io::ConnectionAborted, "Software caused connection abort"),
                ErrorKind::Refused,
            ),
            (
                connect(Io::AddrNotAvailable, "Cannot assign requested address"),
                ErrorKind::Refused,
            ),
            (
                connect(Io::TimedOut, "Connection timed out"),
                ErrorKind::Timeout,
            ),
            (
                handshake(russh::Error::IO(IoError::new(
                    Io::UnexpectedEof,
                    "early eof",
                ))),
                ErrorKind::Refused,
            ),
            (
                handshake(russh::Error::IO(IoError::new(Io::ConnectionReset, "reset"))),
                ErrorKind::Refused,
            ),
            (handshake(russh::Error::HUP), ErrorKind::Refused),
            (handshake(russh::Error::Disconnect), ErrorKind::Refused),
            (handshake(russh::Error::Version), ErrorKind::Refused),
            (
                handshake(russh::Error::ConnectionTimeout),
                ErrorKind::Timeout,
            ),
            (connection(russh::Error::SendError), ErrorKind::Refused),
            (
                connection(russh::Error::KeepaliveTimeout),
                ErrorKind::Timeout,
            ),
            (
                SshError::JumpForward {
                    host: behind_bastion(),
                    jump: jump(1, 1),
                    reason: "the connection failed".into(),
                    prohibited: false,
                },
                ErrorKind::Refused,
            ),
            (
                SshError::JumpForward {
                    host: behind_bastion(),
                    jump: jump(1, 1),
                    reason: "forwarding is administratively prohibited".into(),
                    prohibited: true,
                },
                ErrorKind::Refused,
            ),
            (
                SshError::Timeout {
                    host: host(),
                    after: Duration::from_secs(1),
                    stage: "connecting",
                },
                ErrorKind::Timeout,
            ),
            (
                SshError::HostCertificate { host: host() },
                ErrorKind::HostKey,
            ),
            (
                SshError::KnownHosts {
                    host: host(),
                    file: PathBuf::from("/h/.ssh/known_hosts"),
                    message: "line 3 is malformed".into(),
                },
                ErrorKind::HostKey,
            ),
            (
                SshError::NoKeys {
                    host: host(),
                    user: "builder".into(),
                    skipped: vec![],
                },
                ErrorKind::Auth,
            ),
            (
                SshError::InvalidDestination {
                    spec: "a b".into(),
                    source: mab_config::HostError::WhiteSpace,
                },
                ErrorKind::Config,
            ),
            (
                SshError::Config {
                    host: host(),
                    path: PathBuf::from("/h/.ssh/config"),
                    message: "line 2: bad Port `ssh`".into(),
                },
                ErrorKind::Config,
            ),
            (
                SshError::ProxyCommand {
                    host: host(),
                    command: "nc %h %p".into(),
                    path: PathBuf::from("/h/.ssh/config"),
                    line: 4,
                },
                ErrorKind::Config,
            ),
            (
                SshError::JumpLoop {
                    host: host(),
                    jump: "arm".into(),
                    chain: "arm -> arm".into(),
                },
                ErrorKind::Config,
            ),
            (
                SshError::UnixSocket {
                    host: host(),
                    socket_path: "/run/docker.sock".into(),
                    failure: russh::ChannelOpenFailure::ConnectFailed,
                },
                ErrorKind::Other,
            ),
            (
                SshError::Exec {
                    host: host(),
                    command: "uname -m".into(),
                    reason: "the channel closed".into(),
                },
                ErrorKind::Other,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
        let names = [
            (ErrorKind::Dns, "dns"),
            (ErrorKind::Refused, "refused"),
            (ErrorKind::Timeout, "timeout"),
            (ErrorKind::HostKey, "host_key"),
            (ErrorKind::Auth, "auth"),
            (ErrorKind::Config, "config"),
            (ErrorKind::Other, "other"),
        ];
        for (kind, name) in names {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
        }
    }

    #[test]
    fn addresses() {
        let cases = [
            ("lab", "lab", 22, "`lab:22`", "lab"),
            (
                "lab",
                "127.0.0.2",
                2222,
                "`lab` (127.0.0.2:2222)",
                "[127.0.0.2]:2222",
            ),
            ("::1", "::1", 2222, "`[::1]:2222`", "[::1]:2222"),
        ];
        for (alias, host_name, port, shown, known_hosts_name) in cases {
            let host = HostRef::new(alias, host_name, port);
            assert_eq!(host.to_string(), shown);
            assert_eq!(host.known_hosts_name(), known_hosts_name);
        }

        let routes = [
            (
                Route::Jump {
                    index: 2,
                    count: 3,
                    target: "arm".into(),
                },
                "`10.0.0.1:2222` (jump host 2 of 3 for `arm`)",
            ),
            (
                Route::Jump {
                    index: 1,
                    count: 1,
                    target: "arm".into(),
                },
                "`10.0.0.1:2222` (the jump host for `arm`)",
            ),
            (
                Route::Via {
                    jump: "bastion".into(),
                },
                "`10.0.0.1:2222` (via `bastion`)",
            ),
        ];
        for (route, shown) in routes {
            let mut host = HostRef::new("10.0.0.1", "10.0.0.1", 2222);
            host.route = route;
            assert_eq!(host.to_string(), shown);
        }
    }
}
