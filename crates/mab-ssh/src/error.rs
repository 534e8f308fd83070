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
}

impl HostRef {
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
        if self.port == 22 {
            self.host_name.clone()
        } else {
            format!("[{}]:{}", self.host_name, self.port)
        }
    }
}

impl fmt::Display for HostRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.alias == self.host_name {
            write!(f, "`{}`", self.address())
        } else {
            write!(f, "`{}` ({})", self.alias, self.address())
        }
    }
}

/// The broad reason a connection failed, for exit codes and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Dns,
    Refused,
    Timeout,
    HostKey,
    Auth,
    Other,
}

impl ErrorKind {
    /// The snake_case name: `dns`, `refused`, `timeout`, `host_key`, `auth`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Dns => "dns",
            ErrorKind::Refused => "refused",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HostKey => "host_key",
            ErrorKind::Auth => "auth",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong while resolving, connecting to or using an SSH host.
///
/// The message is one sentence naming the host; [`SshError::hint`] gives the
/// suggestion to print on a `hint:` line below it.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("invalid SSH destination `{spec}`: {reason}")]
    InvalidDestination { spec: String, reason: String },

    #[error("cannot read the ssh config {} for host {host}: {message}", path.display())]
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

    #[error("{host} refused to forward to the unix socket `{socket_path}`: {reason}")]
    UnixSocket {
        host: Box<HostRef>,
        socket_path: String,
        reason: String,
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
    /// The broad reason, for exit codes and tests.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SshError::Dns { .. } => ErrorKind::Dns,
            SshError::Refused { .. } => ErrorKind::Refused,
            SshError::Timeout { .. } => ErrorKind::Timeout,
            SshError::UnknownHostKey { .. }
            | SshError::ChangedHostKey { .. }
            | SshError::KnownHosts { .. }
            | SshError::HostCertificate { .. } => ErrorKind::HostKey,
            SshError::Auth { .. } | SshError::NoKeys { .. } => ErrorKind::Auth,
            SshError::InvalidDestination { .. }
            | SshError::Config { .. }
            | SshError::Connect { .. }
            | SshError::Handshake { .. }
            | SshError::UnixSocket { .. }
            | SshError::Exec { .. }
            | SshError::Connection { .. } => ErrorKind::Other,
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
            | SshError::KnownHosts { host, .. }
            | SshError::HostCertificate { host }
            | SshError::Auth { host, .. }
            | SshError::NoKeys { host, .. }
            | SshError::Handshake { host, .. }
            | SshError::UnixSocket { host, .. }
            | SshError::Exec { host, .. }
            | SshError::Connection { host, .. } => Some(host),
        }
    }

    /// A suggestion for the user, to be printed after `hint: `.
    pub fn hint(&self) -> Option<String> {
        match self {
            SshError::InvalidDestination { .. } => Some(
                "write the host as `[user@]host[:port]` or as a Host alias from ~/.ssh/config"
                    .to_string(),
            ),
            SshError::Config { .. } => {
                Some("fix the ssh config file (`ssh -G HOST` shows how OpenSSH reads it)".into())
            }
            SshError::Dns { host, .. } => Some(format!(
                "check the spelling of `{}`, or set its HostName in ~/.ssh/config",
                host.host_name
            )),
            SshError::Refused { host } => Some(format!(
                "check that sshd is running on {} and listens on port {} (Port in ~/.ssh/config)",
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
            } => {
                let port = if host.port == 22 {
                    String::new()
                } else {
                    format!("-p {} ", host.port)
                };
                Some(format!(
                    "verify the fingerprint, then add the key with: ssh-keyscan {port}{} >> {known_hosts}",
                    host.host_name
                ))
            }
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
            SshError::Auth { host, user, .. } => Some(format!(
                "add your public key (for instance ~/.ssh/id_ed25519.pub) to ~{user}/.ssh/authorized_keys on {}, \
                 or name the right key with IdentityFile in ~/.ssh/config",
                host.host_name
            )),
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
            SshError::Exec { .. } => None,
            SshError::Connection { .. } => {
                Some("the host or the network dropped the connection; try again".to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Box<HostRef> {
        Box::new(HostRef {
            alias: "arm".into(),
            host_name: "127.0.0.2".into(),
            port: 2222,
        })
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
                    reason: "forwarding is administratively prohibited".into(),
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
            let host = HostRef {
                alias: alias.into(),
                host_name: host_name.into(),
                port,
            };
            assert_eq!(host.to_string(), shown);
            assert_eq!(host.known_hosts_name(), known_hosts_name);
        }
    }
}
