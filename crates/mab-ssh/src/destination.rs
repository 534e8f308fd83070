//! `[user@]host[:port]` specs and `~/.ssh/config` resolution.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2_config::{HostParams, ParseRule, SshConfig};

use crate::error::{HostRef, SshError};

/// Where and how to reach a host, after applying `~/.ssh/config`.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `<home>/.ssh/known_hosts` followed by any `UserKnownHostsFile` entries.
    pub known_hosts_files: Vec<PathBuf>,
    /// `ConnectTimeout`, if the config sets one.
    pub connect_timeout: Option<Duration>,
}

/// The parts of a `[user@]host[:port]` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    user: Option<String>,
    host: String,
    port: Option<u16>,
}

fn invalid(spec: &str, reason: &str) -> SshError {
    SshError::InvalidDestination {
        spec: spec.to_string(),
        reason: reason.to_string(),
    }
}

/// Splits `[user@]host[:port]`; an IPv6 address with a port is written `[addr]:port`.
fn parse_spec(spec: &str) -> Result<Spec, SshError> {
    if spec.is_empty() {
        return Err(invalid(spec, "it is empty"));
    }
    if spec.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(spec, "it contains whitespace"));
    }
    let (user, rest) = match spec.rsplit_once('@') {
        Some(("", _)) => return Err(invalid(spec, "the user name before `@` is empty")),
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, spec),
    };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(invalid(spec, "`[` has no matching `]`"));
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(invalid(spec, "expected `:port` after `]`")),
            },
        }
    } else {
        match rest.split_once(':') {
            // More than one colon: a bare IPv6 address without a port.
            Some((_, after)) if after.contains(':') => (rest, None),
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(invalid(spec, "the host is empty"));
    }
    if host.starts_with('-') || host.contains('/') {
        return Err(invalid(spec, "the host name is not valid"));
    }
    let port = match port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => return Err(invalid(spec, "the port must be a number from 1 to 65535")),
        },
    };
    Ok(Spec {
        user,
        host: host.to_string(),
        port,
    })
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

/// Reads `<home>/.ssh/config`; `None` when there is no such file.
fn load_config(path: &Path, home: &Path, host: &HostRef) -> Result<Option<SshConfig>, SshError> {
    let config_error = |message: String| SshError::Config {
        host: Box::new(host.clone()),
        path: path.to_path_buf(),
        message,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(config_error(error.to_string())),
    };
    SshConfig::default()
        .home_dir(home)
        .parse(
            &mut BufReader::new(file),
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map(Some)
        .map_err(|error| config_error(error.to_string()))
}

/// Arguments of an option that ssh2-config parses without interpreting.
fn uninterpreted<'a>(params: &'a HostParams, name: &str) -> &'a [String] {
    params
        .unsupported_fields
        .get(name)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn is_yes(args: &[String]) -> bool {
    args.first()
        .is_some_and(|value| matches!(value.to_ascii_lowercase().as_str(), "yes" | "true"))
}

fn default_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "root".to_string())
}

impl Destination {
    /// `spec` is `[user@]host[:port]` or a Host alias from `<home>/.ssh/config`.
    ///
    /// `home` is the user's home directory; the real `$HOME` is never read here.
    /// The user and port written in `spec` win over the config's `User` and `Port`.
    pub fn resolve(spec: &str, home: &Path) -> Result<Destination, SshError> {
        let parsed = parse_spec(spec)?;
        let config_path = home.join(".ssh").join("config");
        let host_ref = HostRef {
            alias: parsed.host.clone(),
            host_name: parsed.host.clone(),
            port: parsed.port.unwrap_or(22),
        };
        let params =
            load_config(&config_path, home, &host_ref)?.map(|config| config.query(&parsed.host));

        let host_name = params
            .as_ref()
            .and_then(|params| params.host_name.as_deref())
            .map(|name| name.replace("%h", &parsed.host))
            .unwrap_or_else(|| parsed.host.clone());
        let port = parsed
            .port
            .or(params.as_ref().and_then(|params| params.port))
            .unwrap_or(22);
        let user = parsed
            .user
            .or_else(|| params.as_ref().and_then(|params| params.user.clone()))
            .unwrap_or_else(default_user);

        let mut known_hosts_files = vec![home.join(".ssh").join("known_hosts")];
        let mut identity_files = Vec::new();
        let mut identities_only = false;
        let mut connect_timeout = None;
        if let Some(params) = &params {
            for raw in uninterpreted(params, "userknownhostsfile") {
                if raw.eq_ignore_ascii_case("none") {
                    continue;
                }
                let path = expand_path(raw, home);
                if !known_hosts_files.contains(&path) {
                    known_hosts_files.push(path);
                }
            }
            for path in params.identity_file.iter().flatten() {
                let path = expand_path(&path.to_string_lossy(), home);
                if !identity_files.contains(&path) {
                    identity_files.push(path);
                }
            }
            identities_only = is_yes(uninterpreted(params, "identitiesonly"));
            connect_timeout = params.connect_timeout.filter(|timeout| !timeout.is_zero());
        }

        Ok(Destination {
            alias: parsed.host,
            host_name,
            port,
            user,
            identity_files,
            identities_only,
            known_hosts_files,
            connect_timeout,
        })
    }

    /// The host this destination names, for error messages.
    pub fn host_ref(&self) -> HostRef {
        HostRef {
            alias: self.alias.clone(),
            host_name: self.host_name.clone(),
            port: self.port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let cases: &[(&str, Option<&str>, &str, Option<u16>)] = &[
            ("host", None, "host", None),
            ("p9-01.example.com", None, "p9-01.example.com", None),
            (
                "builder@p9-01.example.com:22",
                Some("builder"),
                "p9-01.example.com",
                Some(22),
            ),
            ("127.0.0.2:2222", None, "127.0.0.2", Some(2222)),
            ("root@127.0.0.2", Some("root"), "127.0.0.2", None),
            ("me@corp@host:7", Some("me@corp"), "host", Some(7)),
            ("[::1]:2222", None, "::1", Some(2222)),
            ("[::1]", None, "::1", None),
            ("u@[fe80::1]:22", Some("u"), "fe80::1", Some(22)),
            ("::1", None, "::1", None),
            ("arm-box", None, "arm-box", None),
        ];
        for (spec, user, host, port) in cases {
            let parsed = parse_spec(spec).unwrap_or_else(|error| panic!("{spec}: {error}"));
            assert_eq!(
                parsed,
                Spec {
                    user: user.map(str::to_string),
                    host: host.to_string(),
                    port: *port
                },
                "{spec}"
            );
        }
    }

    #[test]
    fn rejects_bad_specs() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("host:", "port"),
            ("host:0", "port"),
            ("host:70000", "port"),
            ("host:ssh", "port"),
            ("@host", "user"),
            ("user@", "host is empty"),
            (":22", "host is empty"),
            ("[::1", "`]`"),
            ("[::1]22", "`:port`"),
            ("a host", "whitespace"),
            ("-oProxyCommand=x", "not valid"),
        ];
        for (spec, reason) in cases {
            match parse_spec(spec) {
                Err(error @ SshError::InvalidDestination { .. }) => {
                    let message = error.to_string();
                    assert!(message.contains(reason), "{spec}: {message}");
                    assert!(message.contains(&format!("`{spec}`")), "{message}");
                    assert!(error.hint().is_some());
                }
                other => panic!("{spec}: expected an invalid destination, got {other:?}"),
            }
        }
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

Host power
    HostName p9-%h.example.com
    UserKnownHostsFile none

Host *.example.com
    User=ci
    IdentityFile=~/.ssh/ci_key
";

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
                    default_kh.clone(),
                    h.join(".ssh/lab_known_hosts"),
                    PathBuf::from("/etc/mab/known_hosts"),
                ],
                connect_timeout: Some(Duration::from_secs(3)),
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
                    default_kh.clone(),
                    h.join(".ssh/lab_known_hosts"),
                    PathBuf::from("/etc/mab/known_hosts"),
                ],
                connect_timeout: Some(Duration::from_secs(3)),
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
                },
                "{}",
                case.spec
            );
        }
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
        assert!(message.contains("`arm:22`"), "{message}");
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
