//! The runner `host`: `local`, or where ssh(1) connects to, written
//! `[user@]host[:port]` or as a `Host` alias of `~/.ssh/config`.
//!
//! This is the one parser of that text. `runners.toml` is checked with it
//! when it is loaded (and so `mab runners add --host`, which validates the
//! file it writes), and mab-ssh parses with it when it connects and when it
//! reads a `ProxyJump` hop, so a host that loads is a host that connects.
//!
//! It lives in mab-config rather than in mab-ssh because dependencies point
//! one way: mab-ssh already depends on mab-config (through mab-events, and
//! directly for this), so the loader here cannot call into mab-ssh without a
//! cycle, and this module needs nothing of SSH itself (it does no I/O and
//! resolves nothing).
//!
//! The grammar follows ssh(1)'s destination, with mab's `:port` suffix:
//!
//! - `local`: this machine's engine (not SSH at all);
//! - the user is everything before the last `@` (as ssh splits it), and may
//!   not be empty;
//! - `[addr]` or `[addr]:port`: brackets around the host, needed for an IPv6
//!   address with a port (`[2001:db8::1]:22`, `user@[::1]:2222`);
//! - a host with more than one `:` and no brackets is an IPv6 address without
//!   a port (`::1`, `fe80::1`, `fe80::1%eth0`), as ssh reads it;
//! - otherwise `host:port` splits at its one `:`;
//! - the port is a decimal number from 1 to 65535;
//! - the host may not begin with `-` (ssh would read `-oProxyCommand=x` as an
//!   option; OpenSSH refuses such a host name, and so does the user name), nor
//!   contain white space, control characters, `/`, or the shell characters
//!   OpenSSH 9.6 refuses in a host name (`` ' ` " $ \ ; & < > | ( ) { } ``).

use std::fmt;
use std::net::Ipv6Addr;

use crate::runners::RunnerHost;

/// The characters OpenSSH (since 9.6, `valid_hostname` in ssh.c) refuses in
/// a host name given on its command line, as they could reach a shell through
/// `%h` in a `ProxyCommand` or `Match exec`.
const SHELL_CHARACTERS: &[char] = &[
    '\'', '`', '"', '$', '\\', ';', '&', '<', '>', '|', '(', ')', '{', '}',
];

/// A parsed `[user@]host[:port]`: the parts as written, brackets removed.
///
/// `host` is a host name, an IP address or a `Host` alias of the ssh config;
/// resolving it (HostName, User, Port of the config) is mab-ssh's work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// The user before the last `@`, if one is written.
    pub user: Option<String>,
    /// The host, without the brackets of `[addr]`.
    pub host: String,
    /// The port after `:`, 1 to 65535, if one is written.
    pub port: Option<u16>,
}

/// Why a runner `host` (or an SSH destination) was refused.
///
/// Each message completes a sentence that begins with what was written
/// ("`host` of runner `a` ...", "SSH destination `x` ..."); [`HostError::hint`]
/// says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing, or only blanks.
    #[error("is empty")]
    Empty,
    /// A space, tab, newline or other control character.
    #[error("contains white space or a control character")]
    WhiteSpace,
    /// `@host`: the user before `@` is empty.
    #[error("has an empty user name before `@`")]
    EmptyUser,
    /// A user name beginning with `-`.
    #[error("has the user name `{user}`, which begins with `-`")]
    UserLikeOption {
        /// The user as written.
        user: String,
    },
    /// `user@`, `:22`, `[]`: no host is written.
    #[error("names no host")]
    NoHost,
    /// A host beginning with `-`, such as `-oProxyCommand=x`.
    #[error("names the host `{host}`, which begins with `-`")]
    HostLikeOption {
        /// The host as written.
        host: String,
    },
    /// A host with a character no host name or alias has.
    #[error("names the host `{host}`, which contains `{character}`")]
    Character {
        /// The host as written.
        host: String,
        /// The first refused character.
        character: char,
    },
    /// A `[` without its `]`.
    #[error("has a `[` without its `]`")]
    UnclosedBracket,
    /// A `[` or `]` elsewhere than around the host, or text after `]` that
    /// is not `:port`.
    #[error(
        "has a `[` or `]` out of place (brackets go around the host: `[addr]` or `[addr]:port`)"
    )]
    Brackets,
    /// More than one `:` without brackets, and not an IPv6 address.
    #[error("names `{host}`, which has more than one `:` but is not an IPv6 address")]
    NotIpv6 {
        /// The host as written.
        host: String,
    },
    /// A port that is not a number from 1 to 65535.
    #[error("has an invalid port `{port}`")]
    Port {
        /// The port as written.
        port: String,
    },
}

/// The forms a host takes, for hints.
const FORMS: &str = "write `local`, `[user@]host[:port]` or a Host alias from ~/.ssh/config";

impl HostError {
    /// What to write instead, for a `hint:` line.
    pub fn hint(&self) -> String {
        match self {
            HostError::UserLikeOption { .. } | HostError::HostLikeOption { .. } => {
                "a user or host name cannot begin with `-`: ssh would read it as an option, \
                 and OpenSSH refuses it too"
                    .to_owned()
            }
            HostError::Character { .. } => format!(
                "a host name has none of white space, `/` and `' ` \" $ \\ ; & < > | ( ) {{ }}` \
                 (OpenSSH refuses them too); {FORMS}"
            ),
            HostError::UnclosedBracket | HostError::Brackets | HostError::NotIpv6 { .. } => {
                "write an IPv6 address alone (`fe80::1`) or in brackets with a port \
                 (`builder@[2001:db8::1]:22`)"
                    .to_owned()
            }
            HostError::Port { .. } => "a port is a number from 1 to 65535".to_owned(),
            HostError::Empty | HostError::WhiteSpace | HostError::EmptyUser | HostError::NoHost => {
                FORMS.to_owned()
            }
        }
    }
}

impl HostSpec {
    /// Parses `[user@]host[:port]` by the grammar in this module's
    /// documentation. `local` is not special here; see [`RunnerHost::parse`].
    pub fn parse(text: &str) -> Result<HostSpec, HostError> {
        if text.trim().is_empty() {
            return Err(HostError::Empty);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(HostError::WhiteSpace);
        }
        let (user, address) = match text.rsplit_once('@') {
            Some(("", _)) => return Err(HostError::EmptyUser),
            Some((user, _)) if user.starts_with('-') => {
                return Err(HostError::UserLikeOption {
                    user: user.to_owned(),
                })
            }
            Some((user, address)) => (Some(user.to_owned()), address),
            None => (None, text),
        };
        let (host, port) = split_port(address)?;
        if host.is_empty() {
            return Err(HostError::NoHost);
        }
        if host.starts_with('-') {
            return Err(HostError::HostLikeOption {
                host: host.to_owned(),
            });
        }
        if let Some(character) = host
            .chars()
            .find(|c| *c == '/' || SHELL_CHARACTERS.contains(c))
        {
            return Err(HostError::Character {
                host: host.to_owned(),
                character,
            });
        }
        let port = match port {
            None => None,
            Some(port) => Some(parse_port(port)?),
        };
        Ok(HostSpec {
            user,
            host: host.to_owned(),
            port,
        })
    }
}

/// Splits `host[:port]`, `[addr][:port]` or an unbracketed IPv6 address into
/// the host (without brackets) and the port as written.
fn split_port(address: &str) -> Result<(&str, Option<&str>), HostError> {
    if let Some(bracketed) = address.strip_prefix('[') {
        let (inner, rest) = bracketed
            .split_once(']')
            .ok_or(HostError::UnclosedBracket)?;
        if inner.contains('[') {
            return Err(HostError::Brackets);
        }
        return match rest {
            "" => Ok((inner, None)),
            rest => match rest.strip_prefix(':') {
                Some(port) => Ok((inner, Some(port))),
                None => Err(HostError::Brackets),
            },
        };
    }
    if address.contains(['[', ']']) {
        return Err(HostError::Brackets);
    }
    match address.split_once(':') {
        None => Ok((address, None)),
        Some((_, rest)) if rest.contains(':') => {
            // ssh reads a host with more than one `:` as an IPv6 address; a
            // zone (`%eth0`) may follow it.
            let literal = address.split_once('%').map_or(address, |(ip, _)| ip);
            match literal.parse::<Ipv6Addr>() {
                Ok(_) => Ok((address, None)),
                Err(_) => Err(HostError::NotIpv6 {
                    host: address.to_owned(),
                }),
            }
        }
        Some((host, port)) => Ok((host, Some(port))),
    }
}

/// A port: decimal digits, 1 to 65535.
fn parse_port(port: &str) -> Result<u16, HostError> {
    match port.parse::<u16>() {
        Ok(number) if number > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(number),
        _ => Err(HostError::Port {
            port: port.to_owned(),
        }),
    }
}

impl RunnerHost {
    /// Parses a runner's `host`: `local`, else an SSH destination checked by
    /// [`HostSpec::parse`] and kept as written (mab-ssh parses it again with
    /// the same function when it connects).
    pub fn parse(text: &str) -> Result<RunnerHost, HostError> {
        if text == "local" {
            return Ok(RunnerHost::Local);
        }
        HostSpec::parse(text)?;
        Ok(RunnerHost::Ssh(text.to_owned()))
    }
}

/// `[user@]host[:port]`, with brackets around a host that has a `:`.
impl fmt::Display for HostSpec {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(formatter, "{user}@")?;
        }
        match (self.port, self.host.contains(':')) {
            (Some(port), true) => write!(formatter, "[{}]:{port}", self.host),
            (Some(port), false) => write!(formatter, "{}:{port}", self.host),
            (None, _) => formatter.write_str(&self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every accepted form, with the user, host and port it yields.
    #[test]
    fn accepted_hosts() {
        let cases: &[(&str, Option<&str>, &str, Option<u16>)] = &[
            ("box", None, "box", None),
            ("ssh-alias", None, "ssh-alias", None),
            ("p9-01.example.com", None, "p9-01.example.com", None),
            (
                "builder@p9-01.example.com",
                Some("builder"),
                "p9-01.example.com",
                None,
            ),
            (
                "builder@p9-01.example.com:22",
                Some("builder"),
                "p9-01.example.com",
                Some(22),
            ),
            ("127.0.0.2:2222", None, "127.0.0.2", Some(2222)),
            ("root@127.0.0.2", Some("root"), "127.0.0.2", None),
            // The user is everything before the last `@`.
            ("me@corp@host:7", Some("me@corp"), "host", Some(7)),
            ("a-b@box", Some("a-b"), "box", None),
            ("box:65535", None, "box", Some(65535)),
            // IPv6: bare without a port, bracketed with one.
            ("::1", None, "::1", None),
            ("fe80::1", None, "fe80::1", None),
            ("fe80::1%eth0", None, "fe80::1%eth0", None),
            ("2001:db8::1", None, "2001:db8::1", None),
            ("me@2001:db8::1", Some("me"), "2001:db8::1", None),
            ("[::1]", None, "::1", None),
            ("[::1]:2222", None, "::1", Some(2222)),
            ("me@[2001:db8::1]", Some("me"), "2001:db8::1", None),
            ("u@[fe80::1]:22", Some("u"), "fe80::1", Some(22)),
            ("[box]:22", None, "box", Some(22)),
        ];
        for (text, user, host, port) in cases {
            let parsed = HostSpec::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(
                parsed,
                HostSpec {
                    user: user.map(str::to_owned),
                    host: (*host).to_owned(),
                    port: *port,
                },
                "{text}"
            );
            // Written back, it parses to the same parts.
            assert_eq!(HostSpec::parse(&parsed.to_string()), Ok(parsed), "{text}");
            assert_eq!(
                RunnerHost::parse(text),
                Ok(RunnerHost::Ssh((*text).to_owned()))
            );
        }
        assert_eq!(RunnerHost::parse("local"), Ok(RunnerHost::Local));
        assert_eq!(
            RunnerHost::parse("me@local"),
            Ok(RunnerHost::Ssh("me@local".to_owned()))
        );
    }

    /// Every refused form, with the error it gets.
    #[test]
    fn refused_hosts() {
        let host_error = |host: &str| host.to_owned();
        let cases: Vec<(&str, HostError)> = vec![
            ("", HostError::Empty),
            ("  ", HostError::Empty),
            ("a b", HostError::WhiteSpace),
            ("box\n", HostError::WhiteSpace),
            ("box\u{7}", HostError::WhiteSpace),
            ("@box", HostError::EmptyUser),
            ("-l@box", HostError::UserLikeOption { user: "-l".into() }),
            ("me@", HostError::NoHost),
            (":22", HostError::NoHost),
            ("[]:22", HostError::NoHost),
            (
                "-oProxyCommand=x",
                HostError::HostLikeOption {
                    host: host_error("-oProxyCommand=x"),
                },
            ),
            (
                "me@-box",
                HostError::HostLikeOption {
                    host: host_error("-box"),
                },
            ),
            (
                "[-box]:22",
                HostError::HostLikeOption {
                    host: host_error("-box"),
                },
            ),
            (
                "a/b",
                HostError::Character {
                    host: "a/b".into(),
                    character: '/',
                },
            ),
            (
                "box;id",
                HostError::Character {
                    host: "box;id".into(),
                    character: ';',
                },
            ),
            (
                "$(id)",
                HostError::Character {
                    host: "$(id)".into(),
                    character: '$',
                },
            ),
            ("[::1", HostError::UnclosedBracket),
            ("me@[2001:db8::1:22", HostError::UnclosedBracket),
            ("[::1]22", HostError::Brackets),
            ("[::1]:", HostError::Port { port: "".into() }),
            ("::1]", HostError::Brackets),
            ("box[1]", HostError::Brackets),
            ("[[::1]]", HostError::Brackets),
            (
                "box:22:33",
                HostError::NotIpv6 {
                    host: "box:22:33".into(),
                },
            ),
            (
                "::1:2222:x",
                HostError::NotIpv6 {
                    host: "::1:2222:x".into(),
                },
            ),
            ("box:", HostError::Port { port: "".into() }),
            ("box:0", HostError::Port { port: "0".into() }),
            (
                "box:65536",
                HostError::Port {
                    port: "65536".into(),
                },
            ),
            (
                "box:99999",
                HostError::Port {
                    port: "99999".into(),
                },
            ),
            ("box:ssh", HostError::Port { port: "ssh".into() }),
            ("box:+22", HostError::Port { port: "+22".into() }),
        ];
        for (text, expected) in cases {
            assert_eq!(HostSpec::parse(text), Err(expected.clone()), "{text:?}");
            assert_eq!(RunnerHost::parse(text), Err(expected.clone()), "{text:?}");
            assert!(!expected.hint().is_empty(), "{text:?}");
        }
    }

    #[test]
    fn hints_name_the_rule() {
        let option = HostSpec::parse("-oProxyCommand=x").unwrap_err();
        assert!(option.hint().contains("cannot begin with `-`"), "{option}");
        let brackets = HostSpec::parse("[::1").unwrap_err();
        assert!(brackets.hint().contains("[2001:db8::1]:22"), "{brackets}");
        let port = HostSpec::parse("box:0").unwrap_err();
        assert_eq!(port.hint(), "a port is a number from 1 to 65535");
    }
}
