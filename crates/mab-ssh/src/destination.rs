//! `[user@]host[:port]` specs and `~/.ssh/config` resolution, jump hosts included.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mab_config::host::{HostError, HostSpec};

use crate::config::{self, HostConfig, Proxy};
use crate::error::{HostRef, Route, SshError};

/// What `StrictHostKeyChecking` says to do with a host key that no
/// known_hosts file records. A key that differs from the recorded one is
/// refused whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StrictHostKeyChecking {
    /// `yes`: refuse unknown keys.
    Yes,
    /// `ask`, OpenSSH's default: mab cannot ask, so unknown keys are refused.
    #[default]
    Ask,
    /// `accept-new`: learn an unknown key by appending it to the first
    /// known_hosts file.
    AcceptNew,
    /// `no` or `off`: OpenSSH would also accept a changed key; mab treats it
    /// as `accept-new` and never accepts a changed key.
    No,
}

impl StrictHostKeyChecking {
    /// Reads the option's value as OpenSSH spells it (`true`/`false` too).
    pub fn parse(text: &str) -> Option<StrictHostKeyChecking> {
        match text.to_ascii_lowercase().as_str() {
            "yes" | "true" => Some(StrictHostKeyChecking::Yes),
            "ask" => Some(StrictHostKeyChecking::Ask),
            "accept-new" => Some(StrictHostKeyChecking::AcceptNew),
            "no" | "off" | "false" => Some(StrictHostKeyChecking::No),
            _ => None,
        }
    }

    /// Whether an unknown host key is learnt instead of refused.
    pub fn learns_unknown_keys(self) -> bool {
        matches!(
            self,
            StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No
        )
    }
}

/// The keepalives of a session: `ServerAliveInterval` and
/// `ServerAliveCountMax` of ssh_config(5), `None` when the config does not
/// set them.
///
/// Unlike OpenSSH, whose keepalives are off unless `ServerAliveInterval` is
/// set, mab sends them by default ([`DEFAULT_SERVER_ALIVE_INTERVAL`], up to
/// [`DEFAULT_SERVER_ALIVE_COUNT_MAX`] unanswered), so that a link that dies
/// during a long build is noticed within about a minute instead of hanging
/// the build's stream; `ServerAliveInterval 0` turns them off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ServerAlive {
    /// `ServerAliveInterval`: how long the server may be silent before a
    /// keepalive is sent; zero turns keepalives off.
    pub interval: Option<Duration>,
    /// `ServerAliveCountMax`: keepalives left unanswered before the
    /// connection counts as dead.
    pub count_max: Option<u32>,
}

/// The keepalive interval when the ssh config sets no `ServerAliveInterval`.
pub const DEFAULT_SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Unanswered keepalives when the ssh config sets no `ServerAliveCountMax`
/// (OpenSSH's default, 3).
pub const DEFAULT_SERVER_ALIVE_COUNT_MAX: u32 = 3;

impl ServerAlive {
    /// The interval and count to use: the config's, else the defaults;
    /// `None` when keepalives are off (`ServerAliveInterval 0`). A count of
    /// 0 is taken as 1 (the connection is dropped at the first keepalive
    /// left unanswered).
    pub fn effective(self) -> Option<(Duration, u32)> {
        let interval = self.interval.unwrap_or(DEFAULT_SERVER_ALIVE_INTERVAL);
        if interval.is_zero() {
            return None;
        }
        let count = self
            .count_max
            .unwrap_or(DEFAULT_SERVER_ALIVE_COUNT_MAX)
            .max(1);
        Some((interval, count))
    }
}

/// Where and how to reach a host, after applying `~/.ssh/config`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The host as written in the spec (a `Host` alias or a literal host name).
    pub alias: String,
    /// The host to dial: the config's `HostName`, else the alias.
    pub host_name: String,
    pub port: u16,
    pub user: String,
    /// `IdentityFile` entries, in config order, `~` expanded.
    pub identity_files: Vec<PathBuf>,
    /// `IdentitiesOnly yes`: offer only the keys named by `IdentityFile`.
    pub identities_only: bool,
    /// The `UserKnownHostsFile` entries followed by `<home>/.ssh/known_hosts`.
    /// The first one is where `StrictHostKeyChecking accept-new` records keys.
    pub known_hosts_files: Vec<PathBuf>,
    /// `ConnectTimeout`, if the config sets one.
    pub connect_timeout: Option<Duration>,
    /// `StrictHostKeyChecking`.
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// `ServerAliveInterval` and `ServerAliveCountMax`, as the config sets them.
    pub server_alive: ServerAlive,
    /// The `ProxyJump` hosts in the order they are dialled: the first is
    /// reached directly, each next one through the one before it, and this
    /// destination through the last. Each is resolved through the ssh config
    /// like a destination of its own (the first one's own `ProxyJump` comes
    /// before it in this list); their own `jumps` are empty.
    pub jumps: Vec<Destination>,
}

/// Parses `[user@]host[:port]` with the one parser of it, which the
/// runners.toml loader also uses ([`HostSpec::parse`], grammar in
/// [`mab_config::host`]).
fn parse_spec(spec: &str) -> Result<HostSpec, SshError> {
    HostSpec::parse(spec).map_err(|source| SshError::InvalidDestination {
        spec: spec.to_string(),
        source,
    })
}

/// One hop of `ProxyJump`: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
pub(crate) fn parse_jump(hop: &str) -> Result<HostSpec, HostError> {
    match hop.strip_prefix("ssh://") {
        Some(rest) => HostSpec::parse(rest.strip_suffix('/').unwrap_or(rest)),
        None => HostSpec::parse(hop),
    }
}

/// Expands a leading `~` and the `%d` (home) and `%%` tokens of an ssh config path.
fn expand_path(raw: &str, home: &Path) -> PathBuf {
    let home_text = home.to_string_lossy();
    let mut expanded = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('%', Some('d')) => {
                chars.next();
                expanded.push_str(&home_text);
            }
            ('%', Some('%')) => {
                chars.next();
                expanded.push('%');
            }
            _ => expanded.push(c),
        }
    }
    if expanded == "~" {
        home.to_path_buf()
    } else if let Some(rest) = expanded.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(expanded)
    }
}

fn default_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "root".to_string())
}

/// `a -> b -> c`, for a `ProxyJump` loop.
fn chain_text(chain: &[String]) -> String {
    chain.join(" -> ")
}

impl Destination {
    /// `spec` is `[user@]host[:port]` or a Host alias from `<home>/.ssh/config`.
    ///
    /// `home` is the user's home directory; the real `$HOME` is never read here.
    /// The user and port written in `spec` win over the config's `User` and `Port`.
    /// When the config gives the host a `ProxyJump`, [`Destination::jumps`]
    /// holds the resolved chain.
    pub fn resolve(spec: &str, home: &Path) -> Result<Destination, SshError> {
        let parsed = parse_spec(spec)?;
        let mut resolving = Vec::new();
        Self::resolve_chain(parsed, home, true, &mut resolving)
    }

    /// Resolves `spec`; with `follow_jumps`, also its `ProxyJump` chain.
    /// `resolving` holds the hosts whose chains are being resolved (the
    /// destination first), to catch a chain that leads back to itself.
    fn resolve_chain(
        spec: HostSpec,
        home: &Path,
        follow_jumps: bool,
        resolving: &mut Vec<HostRef>,
    ) -> Result<Destination, SshError> {
        let config_path = home.join(".ssh").join("config");
        let host_ref = HostRef::new(&spec.host, &spec.host, spec.port.unwrap_or(22));
        let config =
            config::read(&config_path, home, &spec.host).map_err(|error| SshError::Config {
                host: Box::new(host_ref.clone()),
                path: error.file,
                message: error.message,
            })?;
        let proxy = config.proxy.clone();
        let mut destination = Self::from_config(spec, config, home);
        if !follow_jumps {
            return Ok(destination);
        }
        match proxy {
            None => {}
            Some(located) => match located.value {
                Proxy::Direct => {}
                Proxy::Command(command) => {
                    return Err(SshError::ProxyCommand {
                        host: Box::new(destination.host_ref()),
                        command,
                        path: located.file,
                        line: located.line,
                    })
                }
                Proxy::Jump(hops) => {
                    if resolving.iter().any(|host| host.alias == destination.alias) {
                        let mut chain: Vec<String> =
                            resolving.iter().map(|host| host.alias.clone()).collect();
                        chain.push(destination.alias.clone());
                        let target = resolving
                            .first()
                            .cloned()
                            .unwrap_or_else(|| destination.host_ref());
                        return Err(SshError::JumpLoop {
                            host: Box::new(target),
                            jump: destination.alias,
                            chain: chain_text(&chain),
                        });
                    }
                    resolving.push(destination.host_ref());
                    let mut jumps = Vec::new();
                    for (index, hop) in hops.iter().enumerate() {
                        let hop_spec = parse_jump(hop).map_err(|reason| SshError::Config {
                            host: Box::new(host_ref.clone()),
                            path: located.file.clone(),
                            message: format!(
                                "line {}: the jump host `{hop}` {reason}",
                                located.line
                            ),
                        })?;
                        // As with OpenSSH, only the first hop's own ProxyJump
                        // is followed; the later hops are reached through the
                        // earlier ones.
                        let mut resolved =
                            Self::resolve_chain(hop_spec, home, index == 0, resolving)?;
                        jumps.append(&mut resolved.jumps);
                        jumps.push(resolved);
                    }
                    resolving.pop();
                    destination.jumps = jumps;
                }
            },
        }
        Ok(destination)
    }

    /// The destination `spec` names, with the config's options applied (no jumps yet).
    fn from_config(spec: HostSpec, config: HostConfig, home: &Path) -> Destination {
        let host_name = config
            .host_name
            .map(|name| name.replace("%h", &spec.host))
            .unwrap_or_else(|| spec.host.clone());
        let port = spec.port.or(config.port).unwrap_or(22);
        let user = spec.user.or(config.user).unwrap_or_else(default_user);

        let mut known_hosts_files: Vec<PathBuf> = Vec::new();
        for raw in config.user_known_hosts_files.iter().flatten() {
            let path = expand_path(raw, home);
            if !known_hosts_files.contains(&path) {
                known_hosts_files.push(path);
            }
        }
        let default_known_hosts = home.join(".ssh").join("known_hosts");
        if !known_hosts_files.contains(&default_known_hosts) {
            known_hosts_files.push(default_known_hosts);
        }
        let mut identity_files = Vec::new();
        for raw in &config.identity_files {
            let path = expand_path(raw, home);
            if !identity_files.contains(&path) {
                identity_files.push(path);
            }
        }

        Destination {
            alias: spec.host,
            host_name,
            port,
            user,
            identity_files,
            identities_only: config.identities_only.unwrap_or(false),
            known_hosts_files,
            connect_timeout: config.connect_timeout.filter(|timeout| !timeout.is_zero()),
            strict_host_key_checking: config.strict_host_key_checking.unwrap_or_default(),
            server_alive: ServerAlive {
                interval: config.server_alive_interval,
                count_max: config.server_alive_count_max,
            },
            jumps: Vec::new(),
        }
    }

    /// Whether a [`Session`](crate::Session) with `self` is the same SSH
    /// connection as one with `other`: every resolved field that the
    /// connection depends on is equal (user, host name, port, identities,
    /// known_hosts files, host key policy, timeouts, keepalives and the
    /// jump hosts, compared the same way). Only the aliases may differ:
    /// they name the host in messages and choose nothing once resolved.
    pub fn same_connection(&self, other: &Destination) -> bool {
        self.connection() == other.connection()
    }

    /// What [`Destination::same_connection`] compares, as a key for a map
    /// of connections: equal for two destinations exactly when they are
    /// the same connection.
    pub fn connection(&self) -> ConnectionKey {
        fn unnamed(destination: &Destination) -> Destination {
            Destination {
                alias: String::new(),
                jumps: destination.jumps.iter().map(unnamed).collect(),
                ..destination.clone()
            }
        }
        ConnectionKey(unnamed(self))
    }

    /// The host this destination names, for error messages (with the last
    /// jump host when it is reached through ProxyJump).
    pub fn host_ref(&self) -> HostRef {
        let mut host = HostRef::new(&self.alias, &self.host_name, self.port);
        if let Some(last) = self.jumps.last() {
            host.route = Route::Via {
                jump: last.alias.clone(),
            };
        }
        host
    }
}

/// The SSH connection a [`Destination`] opens, whatever name it reaches
/// the host by ([`Destination::connection`]): a key for a map of
/// connections, so that finding a runner's shared connection is one
/// lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionKey(Destination);

/// `user@host:port`, followed by ` via hop1, hop2` when the host is reached
/// through jump hosts.
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = HostRef::new(&self.alias, &self.host_name, self.port).address();
        write!(f, "{}@{address}", self.user)?;
        for (index, jump) in self.jumps.iter().enumerate() {
            let separator = if index == 0 { " via " } else { ", " };
            write!(f, "{separator}{}", jump.alias)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connecting side reads a destination as the runners.toml loader
    /// does (the full table is in mab_config::host): IPv6 bare or bracketed.
    #[test]
    fn parses_specs() {
        let home = temp_home(None);
        let cases: &[(&str, &str, u16, Option<&str>)] = &[
            ("::1", "::1", 22, None),
            ("fe80::1", "fe80::1", 22, None),
            ("[::1]:2222", "::1", 2222, None),
            ("u@[fe80::1]:2200", "fe80::1", 2200, Some("u")),
            ("me@corp@host:7", "host", 7, Some("me@corp")),
        ];
        for (spec, host, port, user) in cases {
            let dest = Destination::resolve(spec, home.path())
                .unwrap_or_else(|error| panic!("{spec}: {error}"));
            assert_eq!(
                (dest.alias.as_str(), dest.host_name.as_str(), dest.port),
                (*host, *host, *port),
                "{spec}"
            );
            if let Some(user) = user {
                assert_eq!(dest.user, *user, "{spec}");
            }
        }
    }

    /// The connecting side refuses what the runners.toml loader refuses,
    /// with the same reason and hint (the full table is in mab_config::host).
    #[test]
    fn rejects_bad_specs() {
        let cases: &[(&str, &str)] = &[
            ("", "is empty"),
            ("host:", "invalid port"),
            ("host:0", "invalid port"),
            ("host:70000", "invalid port"),
            ("host:ssh", "invalid port"),
            ("@host", "empty user name"),
            ("user@", "names no host"),
            (":22", "names no host"),
            ("[::1", "without its `]`"),
            ("[::1]22", "out of place"),
            ("a host", "white space"),
            ("box:1:2", "not an IPv6 address"),
            ("-oProxyCommand=x", "begins with `-`"),
            ("u@-oProxyCommand=x", "begins with `-`"),
            ("a/b", "contains `/`"),
        ];
        for (spec, reason) in cases {
            match parse_spec(spec) {
                Err(error @ SshError::InvalidDestination { .. }) => {
                    let message = error.to_string();
                    assert!(message.contains(reason), "{spec}: {message}");
                    assert!(message.contains(&format!("`{spec}`")), "{message}");
                    let refused = HostSpec::parse(spec).expect_err(spec);
                    assert_eq!(error.hint(), Some(refused.hint()), "{spec}");
                }
                other => panic!("{spec}: expected an invalid destination, got {other:?}"),
            }
        }
        let error = Destination::resolve("-oProxyCommand=x", Path::new("/nonexistent"))
            .expect_err("an option is no host");
        assert!(
            matches!(error, SshError::InvalidDestination { .. }),
            "{error:?}"
        );
    }

    const CONFIG: &str = "\
# options before the first Host apply everywhere
ServerAliveInterval 30

Host arm
    HostName 127.0.0.2
    Port 2222
    User builder
    IdentityFile ~/.ssh/lab_key
    IdentityFile %d/keys/second
    UserKnownHostsFile ~/.ssh/lab_known_hosts /etc/mab/known_hosts
    IdentitiesOnly yes
    ConnectTimeout 3
    StrictHostKeyChecking accept-new

Host power
    HostName p9-%h.example.com
    UserKnownHostsFile none
    ConnectTimeout 0
    StrictHostKeyChecking off
    ServerAliveCountMax 5

Host *.example.com
    User=ci
    IdentityFile=~/.ssh/ci_key
";

    /// Runner entries share a connection when their destinations resolve
    /// alike, whatever name they use; a field the connection depends on
    /// (user, port, a jump host's) keeps them apart.
    #[test]
    fn same_connection_ignores_only_the_names() {
        let home = temp_home(Some(
            "Host arm arm-too\n    HostName 127.0.0.2\n    Port 2222\n    User builder\n\
             Host hidden\n    HostName 10.0.0.9\n    ProxyJump arm\n\
             Host hidden-too\n    HostName 10.0.0.9\n    ProxyJump arm-too\n",
        ));
        let resolve = |spec: &str| Destination::resolve(spec, home.path()).unwrap();
        let arm = resolve("arm");
        assert!(arm.same_connection(&resolve("arm")));
        assert!(arm.same_connection(&resolve("arm-too")));
        assert!(arm.same_connection(&resolve("builder@arm:2222")));
        assert!(!arm.same_connection(&resolve("root@arm")));
        assert!(!arm.same_connection(&resolve("arm:2200")));
        assert!(resolve("hidden").same_connection(&resolve("hidden-too")));
        assert!(!resolve("hidden").same_connection(&resolve("10.0.0.9")));
        // The key says the same as the comparison.
        assert_eq!(arm.connection(), resolve("arm-too").connection());
        assert_ne!(arm.connection(), resolve("root@arm").connection());
        let keys: std::collections::HashSet<ConnectionKey> =
            ["arm", "arm-too", "hidden", "hidden-too"]
                .iter()
                .map(|spec| resolve(spec).connection())
                .collect();
        assert_eq!(keys.len(), 2);
    }

    /// docs/runners.md, "One connection per host": each field the
    /// connection depends on keeps two entries apart when it differs, the
    /// rest resolving alike; a `Host` alias and the host name it stands
    /// for share one connection.
    #[test]
    fn same_connection_splits_on_each_connection_field() {
        const BASE: &[(&str, &str)] = &[
            ("HostName", "10.0.0.5"),
            ("Port", "22"),
            ("User", "builder"),
            ("IdentityFile", "~/.ssh/key_a"),
            ("IdentitiesOnly", "no"),
            ("UserKnownHostsFile", "~/.ssh/known_a"),
            ("StrictHostKeyChecking", "yes"),
            ("ConnectTimeout", "10"),
            ("ServerAliveInterval", "15"),
            ("ProxyJump", "none"),
        ];
        /// How the option's value sets the resolved field: the destination,
        /// the home directory and the jump host `gateway`, resolved.
        type Set = fn(&mut Destination, &Path, &Destination);
        // (the option that differs from BASE, its value, the field it sets)
        let splits: [(&str, &str, Set); 9] = [
            ("IdentityFile", "~/.ssh/key_b", |to, home, _| {
                to.identity_files = vec![home.join(".ssh/key_b")];
            }),
            ("IdentitiesOnly", "yes", |to, _, _| {
                to.identities_only = true
            }),
            ("UserKnownHostsFile", "~/.ssh/known_b", |to, home, _| {
                to.known_hosts_files =
                    vec![home.join(".ssh/known_b"), home.join(".ssh/known_hosts")];
            }),
            ("StrictHostKeyChecking", "accept-new", |to, _, _| {
                to.strict_host_key_checking = StrictHostKeyChecking::AcceptNew;
            }),
            ("ConnectTimeout", "20", |to, _, _| {
                to.connect_timeout = Some(Duration::from_secs(20));
            }),
            ("ServerAliveInterval", "30", |to, _, _| {
                to.server_alive.interval = Some(Duration::from_secs(30));
            }),
            ("ProxyJump", "gateway", |to, _, gateway| {
                to.jumps = vec![gateway.clone()];
            }),
            ("Port", "2222", |to, _, _| to.port = 2222),
            ("User", "other", |to, _, _| to.user = "other".to_owned()),
        ];
        let block = |patterns: &str, change: Option<(&str, &str)>| {
            let mut text = format!("Host {patterns}\n");
            for (option, value) in BASE {
                let value = match change {
                    Some((changed, new)) if changed == *option => new,
                    _ => value,
                };
                text.push_str(&format!("    {option} {value}\n"));
            }
            text
        };
        // The alias `base` and the address it stands for share a block.
        let mut config = block("base 10.0.0.5", None);
        for (index, (option, value, _)) in splits.iter().enumerate() {
            config.push_str(&block(&format!("split-{index}"), Some((option, value))));
        }
        config.push_str("Host gateway\n    HostName 10.0.0.1\n");
        let home = temp_home(Some(&config));
        let resolve = |spec: &str| Destination::resolve(spec, home.path()).unwrap();
        let base = resolve("base");
        let gateway = resolve("gateway");

        let address = resolve("10.0.0.5");
        assert_ne!(base.alias, address.alias);
        assert!(base.same_connection(&address), "{base:?} and {address:?}");
        assert!(address.same_connection(&base));

        for (index, (option, value, set)) in splits.iter().enumerate() {
            let alias = format!("split-{index}");
            let split = resolve(&alias);
            // The option differs and nothing else does.
            let mut expected = Destination {
                alias,
                ..base.clone()
            };
            set(&mut expected, home.path(), &gateway);
            assert_eq!(split, expected, "{option} {value}");
            assert!(!base.same_connection(&split), "{option} {value}");
            assert!(!split.same_connection(&base), "{option} {value}");
            assert!(
                split.same_connection(&resolve(&split.alias)),
                "{option} {value}"
            );
        }
    }

    fn temp_home(config: Option<&str>) -> tempfile::TempDir {
        let home = tempfile::tempdir().expect("temp dir");
        if let Some(config) = config {
            std::fs::create_dir_all(home.path().join(".ssh")).expect("mkdir .ssh");
            std::fs::write(home.path().join(".ssh/config"), config).expect("write config");
        }
        home
    }

    #[test]
    fn resolves_against_the_config() {
        let home = temp_home(Some(CONFIG));
        let h = home.path();
        let default_kh = h.join(".ssh/known_hosts");
        let user = default_user();
        struct Case {
            spec: &'static str,
            host_name: &'static str,
            port: u16,
            user: String,
            identity_files: Vec<PathBuf>,
            identities_only: bool,
            known_hosts_files: Vec<PathBuf>,
            connect_timeout: Option<Duration>,
            strict: StrictHostKeyChecking,
        }
        let cases = vec![
            Case {
                spec: "arm",
                host_name: "127.0.0.2",
                port: 2222,
                user: "builder".into(),
                identity_files: vec![h.join(".ssh/lab_key"), h.join("keys/second")],
                identities_only: true,
                known_hosts_files: vec![
                    h.join(".ssh/lab_known_hosts"),
                    PathBuf::from("/etc/mab/known_hosts"),
                    default_kh.clone(),
                ],
                connect_timeout: Some(Duration::from_secs(3)),
                strict: StrictHostKeyChecking::AcceptNew,
            },
            // The spec's user and port win over the config's.
            Case {
                spec: "root@arm:2200",
                host_name: "127.0.0.2",
                port: 2200,
                user: "root".into(),
                identity_files: vec![h.join(".ssh/lab_key"), h.join("keys/second")],
                identities_only: true,
                known_hosts_files: vec![
                    h.join(".ssh/lab_known_hosts"),
                    PathBuf::from("/etc/mab/known_hosts"),
                    default_kh.clone(),
                ],
                connect_timeout: Some(Duration::from_secs(3)),
                strict: StrictHostKeyChecking::AcceptNew,
            },
            Case {
                spec: "power",
                host_name: "p9-power.example.com",
                port: 22,
                user: user.clone(),
                identity_files: vec![],
                identities_only: false,
                known_hosts_files: vec![default_kh.clone()],
                connect_timeout: None,
                strict: StrictHostKeyChecking::No,
            },
            // A literal host still picks up pattern sections.
            Case {
                spec: "x86.example.com:2022",
                host_name: "x86.example.com",
                port: 2022,
                user: "ci".into(),
                identity_files: vec![h.join(".ssh/ci_key")],
                identities_only: false,
                known_hosts_files: vec![default_kh.clone()],
                connect_timeout: None,
                strict: StrictHostKeyChecking::Ask,
            },
            Case {
                spec: "10.1.2.3",
                host_name: "10.1.2.3",
                port: 22,
                user: user.clone(),
                identity_files: vec![],
                identities_only: false,
                known_hosts_files: vec![default_kh.clone()],
                connect_timeout: None,
                strict: StrictHostKeyChecking::Ask,
            },
        ];
        for case in cases {
            let dest = Destination::resolve(case.spec, h)
                .unwrap_or_else(|error| panic!("{}: {error}", case.spec));
            let alias = case
                .spec
                .rsplit_once('@')
                .map_or(case.spec, |(_, rest)| rest);
            let alias = alias.split(':').next().unwrap_or(alias);
            assert_eq!(
                dest,
                Destination {
                    alias: alias.to_string(),
                    host_name: case.host_name.to_string(),
                    port: case.port,
                    user: case.user,
                    identity_files: case.identity_files,
                    identities_only: case.identities_only,
                    known_hosts_files: case.known_hosts_files,
                    connect_timeout: case.connect_timeout,
                    strict_host_key_checking: case.strict,
                    // The interval from the top of the file, the count from `power`'s block.
                    server_alive: ServerAlive {
                        interval: Some(Duration::from_secs(30)),
                        count_max: (case.spec == "power").then_some(5),
                    },
                    jumps: vec![],
                },
                "{}",
                case.spec
            );
        }
    }

    #[test]
    fn keepalives_default_to_about_a_minute_and_zero_turns_them_off() {
        let seconds = |s| Some(Duration::from_secs(s));
        let cases = [
            (None, None, Some((Duration::from_secs(15), 3))),
            (seconds(1), Some(2), Some((Duration::from_secs(1), 2))),
            (seconds(5), None, Some((Duration::from_secs(5), 3))),
            (None, Some(0), Some((Duration::from_secs(15), 1))),
            (seconds(0), Some(4), None),
        ];
        for (interval, count_max, expected) in cases {
            let alive = ServerAlive {
                interval,
                count_max,
            };
            assert_eq!(alive.effective(), expected, "{alive:?}");
        }
    }

    const JUMPS: &str = "\
Host bastion
    HostName 127.0.0.20
    Port 2300
    User jumper
    IdentityFile ~/.ssh/bastion_key
    StrictHostKeyChecking accept-new
    ProxyJump none
Host inner
    HostName 127.0.0.22
    Port 2302
    User builder
    ProxyJump bastion,admin@second:2202
Host second
    HostName 127.0.0.21
    User second-user
    ProxyJump first-of-second
Host first-of-second
    ProxyJump none
Host deep
    ProxyJump inner
Host uri
    ProxyJump ssh://u@bastion:2999
Host loop-a
    ProxyJump loop-b
Host loop-b
    ProxyJump loop-a
Host wrapped
    ProxyCommand nc %h %p
Host *.internal
    User builder
    ProxyJump bastion
Host *
    ProxyJump everywhere
";

    #[test]
    fn resolves_jump_chains() {
        let home = temp_home(Some(JUMPS));
        let h = home.path();
        let user = default_user();
        let bastion = ("bastion", "127.0.0.20", 2300, "jumper");
        let second = ("second", "127.0.0.21", 2202, "admin");
        /// Alias, host name, port and user of a hop.
        type Hop<'a> = (&'a str, &'a str, u16, &'a str);
        let cases: Vec<(&str, Vec<Hop>, String)> = vec![
            (
                "inner",
                vec![bastion, second],
                "builder@127.0.0.22:2302 via bastion, second".into(),
            ),
            // The first hop's own ProxyJump comes before it.
            (
                "deep",
                vec![bastion, second, ("inner", "127.0.0.22", 2302, "builder")],
                format!("{user}@deep:22 via bastion, second, inner"),
            ),
            (
                "uri",
                vec![("bastion", "127.0.0.20", 2999, "u")],
                format!("{user}@uri:22 via bastion"),
            ),
            (
                "db.internal",
                vec![bastion],
                "builder@db.internal:22 via bastion".into(),
            ),
            // A later hop's own ProxyJump is not followed, but as a
            // destination of its own it is.
            (
                "second",
                vec![("first-of-second", "first-of-second", 22, user.as_str())],
                "second-user@127.0.0.21:22 via first-of-second".into(),
            ),
            ("bastion", vec![], "jumper@127.0.0.20:2300".into()),
        ];
        for (spec, expected, shown) in cases {
            let dest =
                Destination::resolve(spec, h).unwrap_or_else(|error| panic!("{spec}: {error}"));
            let jumps: Vec<(&str, &str, u16, &str)> = dest
                .jumps
                .iter()
                .map(|jump| {
                    (
                        jump.alias.as_str(),
                        jump.host_name.as_str(),
                        jump.port,
                        jump.user.as_str(),
                    )
                })
                .collect();
            assert_eq!(jumps, expected, "{spec}");
            assert!(
                dest.jumps.iter().all(|jump| jump.jumps.is_empty()),
                "{spec}"
            );
            assert_eq!(dest.to_string(), shown, "{spec}");
        }

        // Each hop gets its own options from the config.
        let inner = Destination::resolve("inner", h).expect("inner");
        assert_eq!(
            inner.jumps[0].identity_files,
            vec![h.join(".ssh/bastion_key")]
        );
        assert_eq!(
            inner.jumps[0].strict_host_key_checking,
            StrictHostKeyChecking::AcceptNew
        );
        assert_eq!(inner.strict_host_key_checking, StrictHostKeyChecking::Ask);
        assert_eq!(
            inner.host_ref().to_string(),
            "`inner` (127.0.0.22:2302 via `second`)"
        );
    }

    #[test]
    fn rejects_jump_loops_and_proxy_commands() {
        let home = temp_home(Some(JUMPS));
        let h = home.path();
        let cases: &[(&str, &str)] = &[
            (
                "loop-a",
                "the ProxyJump chain of `loop-a:22` leads back to `loop-a` (loop-a -> loop-b -> loop-a)",
            ),
            // `Host *` sends `everywhere` through itself, as OpenSSH would.
            (
                "other",
                "the ProxyJump chain of `other:22` leads back to `everywhere` \
                 (other -> everywhere -> everywhere)",
            ),
            (
                "wrapped",
                "`wrapped:22` is reached through `ProxyCommand nc %h %p`",
            ),
        ];
        for (spec, message) in cases {
            let error = Destination::resolve(spec, h).expect_err(spec);
            let text = error.to_string();
            assert!(text.starts_with(message), "{spec}: {text}");
            assert!(error.hint().is_some(), "{spec}");
        }
        let error = Destination::resolve("wrapped", h).expect_err("wrapped");
        assert!(
            error
                .to_string()
                .contains(&format!("{} line 28", h.join(".ssh/config").display())),
            "{error}"
        );
    }

    #[test]
    fn parses_jump_hops() {
        let cases: &[(&str, Option<&str>, &str, Option<u16>)] = &[
            ("bastion", None, "bastion", None),
            ("u@bastion:2200", Some("u"), "bastion", Some(2200)),
            ("ssh://u@bastion:2200", Some("u"), "bastion", Some(2200)),
            ("ssh://bastion/", None, "bastion", None),
            ("[::1]:2200", None, "::1", Some(2200)),
        ];
        for (hop, user, host, port) in cases {
            let spec = parse_jump(hop).unwrap_or_else(|reason| panic!("{hop}: {reason}"));
            assert_eq!(spec.user.as_deref(), *user, "{hop}");
            assert_eq!(spec.host, *host, "{hop}");
            assert_eq!(spec.port, *port, "{hop}");
        }
        for bad in [
            "",
            "u@",
            "bastion:0",
            "ssh://",
            "-oProxyCommand=x",
            "ssh://-x",
        ] {
            assert!(parse_jump(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_strict_host_key_checking() {
        let cases = [
            ("yes", Some(StrictHostKeyChecking::Yes)),
            ("TRUE", Some(StrictHostKeyChecking::Yes)),
            ("ask", Some(StrictHostKeyChecking::Ask)),
            ("accept-new", Some(StrictHostKeyChecking::AcceptNew)),
            ("no", Some(StrictHostKeyChecking::No)),
            ("off", Some(StrictHostKeyChecking::No)),
            ("false", Some(StrictHostKeyChecking::No)),
            ("maybe", None),
        ];
        for (text, expected) in cases {
            assert_eq!(StrictHostKeyChecking::parse(text), expected, "{text}");
            let learns = matches!(
                expected,
                Some(StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No)
            );
            assert_eq!(
                expected.is_some_and(|value| value.learns_unknown_keys()),
                learns,
                "{text}"
            );
        }
        assert!(!StrictHostKeyChecking::default().learns_unknown_keys());
    }

    #[test]
    fn missing_config_is_fine() {
        let home = temp_home(None);
        let dest = Destination::resolve("u@example.org:2200", home.path()).expect("resolve");
        assert_eq!(dest.alias, "example.org");
        assert_eq!(dest.host_name, "example.org");
        assert_eq!(dest.port, 2200);
        assert_eq!(dest.user, "u");
        assert!(dest.identity_files.is_empty());
        assert_eq!(
            dest.known_hosts_files,
            vec![home.path().join(".ssh/known_hosts")]
        );
    }

    #[test]
    fn broken_config_names_the_file_and_host() {
        let home = temp_home(Some("Host arm\n    Port notaport\n"));
        let error = Destination::resolve("arm", home.path()).expect_err("bad port");
        assert!(matches!(error, SshError::Config { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(".ssh/config"), "{message}");
        assert!(message.contains("for host `arm`:"), "{message}");
    }

    #[test]
    fn expands_paths_against_the_given_home() {
        let home = Path::new("/tmp/home-x");
        let cases = [
            ("~", "/tmp/home-x"),
            ("~/.ssh/k", "/tmp/home-x/.ssh/k"),
            ("%d/.ssh/k", "/tmp/home-x/.ssh/k"),
            ("/etc/k", "/etc/k"),
            ("~other/k", "~other/k"),
            ("100%%", "100%"),
        ];
        for (raw, expected) in cases {
            assert_eq!(expand_path(raw, home), PathBuf::from(expected), "{raw}");
        }
    }
}
