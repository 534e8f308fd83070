//! Reading `~/.ssh/config` for one host, the way OpenSSH reads it.
//!
//! The files are read top to bottom for the host being resolved:
//!
//! - Options before the first `Host` apply to every host.
//! - `Host PATTERN...` starts a block that applies when one pattern matches
//!   the host as written (`*` and `?` are wildcards) and no `!PATTERN` does.
//! - The first value obtained for an option wins, across blocks and within
//!   one; `IdentityFile` accumulates instead.
//! - `Include FILE...` reads other files in place: relative paths are taken
//!   from `~/.ssh`, glob patterns are expanded in sorted order, missing files
//!   are ignored. Inside a block that does not apply, an included file's
//!   `Host` lines cannot apply either.
//! - `Match all` applies to every host; any other `Match` block is skipped
//!   (with a debug log): its criteria (`exec`, `host`, `user`, ...) are not
//!   evaluated.
//! - `Keyword value`, `Keyword=value` and `Keyword = value` are all accepted;
//!   double or single quotes group an argument that contains spaces.
//!
//! Only the options mab uses are interpreted (and their values checked on
//! every line, as OpenSSH does); other keywords are ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{debug, trace};

use crate::destination::{parse_jump, StrictHostKeyChecking};

/// How deep `Include` may nest, as in OpenSSH.
const MAX_INCLUDE_DEPTH: usize = 16;

/// A value and the line of the ssh config that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located<T> {
    pub value: T,
    pub file: PathBuf,
    pub line: usize,
}

/// How the host is reached: `ProxyJump` and `ProxyCommand` share one slot,
/// the first one set wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proxy {
    /// `ProxyJump none` or `ProxyCommand none`.
    Direct,
    /// `ProxyJump a,b`: the hops as written.
    Jump(Vec<String>),
    /// `ProxyCommand ...`, which mab does not run.
    Command(String),
}

/// The options of the ssh config that apply to one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// As written (`~` not yet expanded), in the order read.
    pub identity_files: Vec<String>,
    pub identities_only: Option<bool>,
    /// As written; `UserKnownHostsFile none` is an empty list.
    pub user_known_hosts_files: Option<Vec<String>>,
    /// `ConnectTimeout`; zero for `none` or `0`.
    pub connect_timeout: Option<Duration>,
    pub proxy: Option<Located<Proxy>>,
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    /// `ServerAliveInterval`; zero turns keepalives off.
    pub server_alive_interval: Option<Duration>,
    /// `ServerAliveCountMax`.
    pub server_alive_count_max: Option<u32>,
}

/// A problem in one file of the ssh config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

/// Reads the ssh config at `path` (absent is fine) for `host`, as written
/// by the user (an alias or a host name).
pub(crate) fn read(path: &Path, home: &Path, host: &str) -> Result<HostConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(HostConfig::default())
        }
        Err(error) => {
            return Err(ConfigError {
                file: path.to_path_buf(),
                message: error.to_string(),
            })
        }
    };
    parse(path, &text, home, host)
}

/// Reads `text`, the ssh config at `path`, for `host`, as [`read`] does
/// with the file's contents (`Include` still reads the files it names).
pub(crate) fn parse(
    path: &Path,
    text: &str,
    home: &Path,
    host: &str,
) -> Result<HostConfig, ConfigError> {
    let mut reader = Reader {
        host,
        home,
        config: HostConfig::default(),
    };
    reader.read_text(path, text, true, 0)?;
    Ok(reader.config)
}

struct Reader<'a> {
    host: &'a str,
    home: &'a Path,
    config: HostConfig,
}

impl Reader<'_> {
    /// Reads one file. `may_apply`: whether its first lines apply (they do
    /// at the top of the main file, and in a file included from a block that
    /// applies); when it is false, no `Host` line in the file can apply.
    fn read_text(
        &mut self,
        file: &Path,
        text: &str,
        may_apply: bool,
        depth: usize,
    ) -> Result<(), ConfigError> {
        let mut active = may_apply;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let at = |message: String| ConfigError {
                file: file.to_path_buf(),
                message: format!("line {line}: {message}"),
            };
            let Some((keyword, args)) = tokenize(raw).map_err(at)? else {
                continue;
            };
            let name = keyword.to_ascii_lowercase();
            let takes_list = matches!(
                name.as_str(),
                "host" | "match" | "include" | "userknownhostsfile" | "proxycommand"
            );
            if takes_list && args.is_empty() {
                return Err(at(format!("`{keyword}` needs a value")));
            }
            match name.as_str() {
                "host" => active = may_apply && host_matches(&args, self.host),
                "match" => {
                    if args.len() == 1 && args[0].eq_ignore_ascii_case("all") {
                        active = may_apply;
                    } else {
                        active = false;
                        debug!(
                            "{} line {line}: skipping the block of `Match {}`: \
                             only `Match all` is evaluated",
                            file.display(),
                            args.join(" ")
                        );
                    }
                }
                "include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(at(format!(
                            "`Include` nests more than {MAX_INCLUDE_DEPTH} files deep \
                             (does a file include itself?)"
                        )));
                    }
                    for pattern in &args {
                        for included in self.include_files(pattern).map_err(at)? {
                            let text = std::fs::read_to_string(&included).map_err(|error| {
                                ConfigError {
                                    file: included.clone(),
                                    message: error.to_string(),
                                }
                            })?;
                            self.read_text(&included, &text, active, depth + 1)?;
                        }
                    }
                }
                _ => {
                    let location = Location { file, line };
                    self.apply(&keyword, &name, args, active, &location)
                        .map_err(at)?;
                }
            }
        }
        Ok(())
    }

    /// The files an `Include` argument names, sorted; directories are skipped.
    fn include_files(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let full = include_pattern(pattern, self.home);
        let paths = glob::glob(&full)
            .map_err(|error| format!("`Include {pattern}` is not a valid pattern: {error}"))?;
        let mut files: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|path| !path.is_dir())
            .collect();
        files.sort();
        if files.is_empty() {
            debug!("`Include {pattern}` matches no file ({full})");
        }
        Ok(files)
    }

    /// Checks one option line and, when its block applies and the option is
    /// not set yet, records its value.
    fn apply(
        &mut self,
        keyword: &str,
        name: &str,
        args: Vec<String>,
        active: bool,
        location: &Location<'_>,
    ) -> Result<(), String> {
        let config = &mut self.config;
        match name {
            "hostname" => set_first(&mut config.host_name, active, single(keyword, args)?),
            "user" => set_first(&mut config.user, active, single(keyword, args)?),
            "port" => {
                let text = single(keyword, args)?;
                let port = match text.parse::<u16>() {
                    Ok(port) if port > 0 => port,
                    _ => {
                        return Err(format!(
                            "`Port {text}`: the port must be a number from 1 to 65535"
                        ))
                    }
                };
                set_first(&mut config.port, active, port);
            }
            "identityfile" => {
                let path = single(keyword, args)?;
                if active && !path.eq_ignore_ascii_case("none") {
                    config.identity_files.push(path);
                }
            }
            "identitiesonly" => {
                let value = yes_no(keyword, &single(keyword, args)?)?;
                set_first(&mut config.identities_only, active, value);
            }
            "userknownhostsfile" => {
                let files = if args.len() == 1 && args[0].eq_ignore_ascii_case("none") {
                    Vec::new()
                } else {
                    args
                };
                set_first(&mut config.user_known_hosts_files, active, files);
            }
            "connecttimeout" => {
                let text = single(keyword, args)?;
                let timeout = parse_time(&text).ok_or_else(|| {
                    format!(
                        "`ConnectTimeout {text}` is not a time (write seconds, or for instance `1m30s`)"
                    )
                })?;
                set_first(&mut config.connect_timeout, active, timeout);
            }
            "serveraliveinterval" => {
                let text = single(keyword, args)?;
                let interval = parse_time(&text).ok_or_else(|| {
                    format!(
                        "`ServerAliveInterval {text}` is not a time (write seconds, or for instance `1m30s`)"
                    )
                })?;
                set_first(&mut config.server_alive_interval, active, interval);
            }
            "serveralivecountmax" => {
                let text = single(keyword, args)?;
                let count = text.parse::<u32>().map_err(|_| {
                    format!("`ServerAliveCountMax {text}`: expected a number of keepalives")
                })?;
                set_first(&mut config.server_alive_count_max, active, count);
            }
            "proxyjump" => {
                let text = single(keyword, args)?;
                let proxy = if text.eq_ignore_ascii_case("none") {
                    Proxy::Direct
                } else {
                    let hops: Vec<String> = text.split(',').map(str::to_string).collect();
                    for hop in &hops {
                        parse_jump(hop).map_err(|reason| {
                            format!("`ProxyJump {text}`: the jump host `{hop}` {reason}")
                        })?;
                    }
                    Proxy::Jump(hops)
                };
                set_first(&mut config.proxy, active, location.with(proxy));
            }
            "proxycommand" => {
                let command = args.join(" ");
                let proxy = if command.eq_ignore_ascii_case("none") {
                    Proxy::Direct
                } else {
                    Proxy::Command(command)
                };
                set_first(&mut config.proxy, active, location.with(proxy));
            }
            "stricthostkeychecking" => {
                let text = single(keyword, args)?;
                let value = StrictHostKeyChecking::parse(&text).ok_or_else(|| {
                    format!(
                        "`StrictHostKeyChecking {text}`: expected yes, no, ask, accept-new or off"
                    )
                })?;
                set_first(&mut config.strict_host_key_checking, active, value);
            }
            _ => trace!("ignoring the ssh config option `{keyword}`"),
        }
        Ok(())
    }
}

/// Where an option was read.
struct Location<'a> {
    file: &'a Path,
    line: usize,
}

impl Location<'_> {
    fn with<T>(&self, value: T) -> Located<T> {
        Located {
            value,
            file: self.file.to_path_buf(),
            line: self.line,
        }
    }
}

fn set_first<T>(slot: &mut Option<T>, active: bool, value: T) {
    if active && slot.is_none() {
        *slot = Some(value);
    }
}

/// The one argument of an option that takes one.
fn single(keyword: &str, mut args: Vec<String>) -> Result<String, String> {
    if args.len() > 1 {
        return Err(format!(
            "`{keyword}` takes one value, found {}",
            args.join(" ")
        ));
    }
    args.pop()
        .ok_or_else(|| format!("`{keyword}` needs a value"))
}

fn yes_no(keyword: &str, text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("`{keyword} {text}`: expected yes or no")),
    }
}

/// OpenSSH's time format: `30`, `30s`, `5m`, `1h30m` (s, m, h, d, w), or `none`.
fn parse_time(text: &str) -> Option<Duration> {
    if text.eq_ignore_ascii_case("none") {
        return Some(Duration::ZERO);
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(digit.into())?,
            );
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    match number {
        Some(seconds) => total = total.checked_add(seconds)?,
        None if text.is_empty() => return None,
        None => {}
    }
    Some(Duration::from_secs(total))
}

/// Whether a `Host` line applies to `host`: one pattern matches and no
/// negated pattern does.
pub(crate) fn host_matches(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard_match(negated, host) => return false,
            Some(_) => {}
            None => matched |= wildcard_match(pattern, host),
        }
    }
    matched
}

/// `*` matches any run of characters, `?` any one character.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it now stands for.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The glob pattern of an `Include` argument: `~` is the home directory, a
/// relative path lies in `~/.ssh`.
fn include_pattern(argument: &str, home: &Path) -> String {
    let escaped = |path: &Path| glob::Pattern::escape(&path.to_string_lossy());
    if argument == "~" {
        escaped(home)
    } else if let Some(rest) = argument.strip_prefix("~/") {
        format!("{}/{rest}", escaped(home))
    } else if argument.starts_with('/') {
        argument.to_string()
    } else {
        format!("{}/{argument}", escaped(&home.join(".ssh")))
    }
}

/// Splits a line into its keyword and arguments; `None` for a blank or
/// comment line. The keyword ends at whitespace or `=`; quotes group an
/// argument; an argument starting with `#` starts a comment.
fn tokenize(line: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = &line[..end];
    if keyword.is_empty() {
        return Err("the line starts with `=` instead of a keyword".to_string());
    }
    let mut rest = line[end..].trim_start();
    if let Some(after) = rest.strip_prefix('=') {
        rest = after.trim_start();
    }
    Ok(Some((keyword.to_string(), split_arguments(rest)?)))
}

fn split_arguments(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') if chars.peek().is_some_and(|next| "\"'\\ \t".contains(*next)) => {
                current.extend(chars.next());
                in_token = true;
            }
            (Some(open), c) if c == open => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_token = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_token {
                    args.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            (None, '#') if !in_token => break,
            (None, c) => {
                current.push(c);
                in_token = true;
            }
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".to_string());
    }
    if in_token {
        args.push(current);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_lines() {
        /// A line, and its keyword and arguments.
        type Case<'a> = (&'a str, Option<(&'a str, &'a [&'a str])>);
        let cases: &[Case] = &[
            ("", None),
            ("   # a comment", None),
            ("Host arm", Some(("Host", &["arm"]))),
            (
                "  HostName   127.0.0.2  ",
                Some(("HostName", &["127.0.0.2"])),
            ),
            ("User=ci", Some(("User", &["ci"]))),
            ("User = ci", Some(("User", &["ci"]))),
            ("Port= 2222", Some(("Port", &["2222"]))),
            ("Host a b !c", Some(("Host", &["a", "b", "!c"]))),
            (
                "IdentityFile \"~/my keys/id\"",
                Some(("IdentityFile", &["~/my keys/id"])),
            ),
            ("IdentityFile '/a b'", Some(("IdentityFile", &["/a b"]))),
            (r"IdentityFile /a\ b", Some(("IdentityFile", &["/a b"]))),
            ("Port 22 # the default", Some(("Port", &["22"]))),
            ("HostName a#b", Some(("HostName", &["a#b"]))),
            ("Tab\tseparated", Some(("Tab", &["separated"]))),
        ];
        for (line, expected) in cases {
            let got = tokenize(line).unwrap_or_else(|error| panic!("{line}: {error}"));
            let expected =
                expected.map(|(k, a)| (k.to_string(), a.iter().map(|s| s.to_string()).collect()));
            assert_eq!(got, expected, "{line:?}");
        }
        for bad in ["=value", "IdentityFile \"open"] {
            assert!(tokenize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matches_wildcards_and_negations() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["arm"], "arm", true),
            (&["arm"], "arm2", false),
            (&["*"], "anything", true),
            (&["*.example.com"], "p9.example.com", true),
            (&["*.example.com"], "example.com", false),
            (&["p?-0?"], "p9-01", true),
            (&["p?-0?"], "p10-01", false),
            (&["a*b*c"], "axxbyyc", true),
            (&["a*b*c"], "axxbyy", false),
            (&["*b"], "abab", true),
            (&["one", "two"], "two", true),
            (&["*.lab", "!db.lab"], "web.lab", true),
            (&["*.lab", "!db.lab"], "db.lab", false),
            // Negation first or last makes no difference.
            (&["!db.lab", "*.lab"], "db.lab", false),
            // Only negated patterns never match.
            (&["!db.lab"], "web.lab", false),
            (&["10.0.0.*"], "10.0.0.7", true),
        ];
        for (patterns, host, expected) in cases {
            let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                host_matches(&patterns, host),
                *expected,
                "{patterns:?} {host}"
            );
        }
    }

    #[test]
    fn parses_times() {
        let cases = [
            ("30", Some(30)),
            ("30s", Some(30)),
            ("5m", Some(300)),
            ("1h30m", Some(5400)),
            ("1M10S", Some(70)),
            ("0", Some(0)),
            ("none", Some(0)),
            ("", None),
            ("s", None),
            ("10x", None),
            ("-1", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_time(text),
                expected.map(Duration::from_secs),
                "{text:?}"
            );
        }
    }

    /// A home whose `.ssh` holds `files` (relative paths and contents).
    fn home_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let home = tempfile::tempdir().expect("temp dir");
        for (path, text) in files {
            let path = home.path().join(".ssh").join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        home
    }

    fn read_for(home: &Path, host: &str) -> HostConfig {
        read(&home.join(".ssh/config"), home, host).unwrap_or_else(|error| panic!("{error:?}"))
    }

    #[test]
    fn first_obtained_value_wins() {
        let home = home_with(&[(
            "config",
            "\
# options before the first Host apply everywhere, and win
User everyone
ConnectTimeout=7

Host arm arm-*
    HostName 127.0.0.2
    Port 2222
    Port 2200
    IdentityFile ~/.ssh/arm
    StrictHostKeyChecking accept-new
    StrictHostKeyChecking yes
    ServerAliveInterval 1m

Host *.lab !db.lab
    HostName %h.internal
    IdentitiesOnly yes

Host *
    Port 22
    User ignored
    IdentityFile ~/.ssh/common
    ConnectTimeout 30
    StrictHostKeyChecking no
    ServerAliveInterval 5
    ServerAliveCountMax 9
",
        )]);
        let h = home.path();
        let common = "~/.ssh/common".to_string();
        struct Case {
            host: &'static str,
            host_name: Option<&'static str>,
            port: Option<u16>,
            identity_files: Vec<String>,
            identities_only: Option<bool>,
            strict: Option<StrictHostKeyChecking>,
        }
        let cases = [
            Case {
                host: "arm",
                host_name: Some("127.0.0.2"),
                // Within one block the first value wins too.
                port: Some(2222),
                identity_files: vec!["~/.ssh/arm".into(), common.clone()],
                identities_only: None,
                strict: Some(StrictHostKeyChecking::AcceptNew),
            },
            Case {
                host: "arm-2",
                host_name: Some("127.0.0.2"),
                port: Some(2222),
                identity_files: vec!["~/.ssh/arm".into(), common.clone()],
                identities_only: None,
                strict: Some(StrictHostKeyChecking::AcceptNew),
            },
            Case {
                host: "web.lab",
                host_name: Some("%h.internal"),
                port: Some(22),
                identity_files: vec![common.clone()],
                identities_only: Some(true),
                strict: Some(StrictHostKeyChecking::No),
            },
            Case {
                host: "db.lab",
                host_name: None,
                port: Some(22),
                identity_files: vec![common.clone()],
                identities_only: None,
                strict: Some(StrictHostKeyChecking::No),
            },
        ];
        for case in cases {
            let config = read_for(h, case.host);
            assert_eq!(config.user.as_deref(), Some("everyone"), "{}", case.host);
            assert_eq!(config.connect_timeout, Some(Duration::from_secs(7)));
            let interval = if case.host.starts_with("arm") { 60 } else { 5 };
            assert_eq!(
                config.server_alive_interval,
                Some(Duration::from_secs(interval)),
                "{}",
                case.host
            );
            assert_eq!(config.server_alive_count_max, Some(9), "{}", case.host);
            assert_eq!(config.host_name.as_deref(), case.host_name, "{}", case.host);
            assert_eq!(config.port, case.port, "{}", case.host);
            assert_eq!(config.identity_files, case.identity_files, "{}", case.host);
            assert_eq!(
                config.identities_only, case.identities_only,
                "{}",
                case.host
            );
            assert_eq!(
                config.strict_host_key_checking, case.strict,
                "{}",
                case.host
            );
        }
    }

    #[test]
    fn includes_files_in_place() {
        let home = home_with(&[
            (
                "config",
                "\
Include config.d/*.conf
Host scoped
    Include scoped.conf
    User after-include
Host *
    Include ~/.ssh/defaults
",
            ),
            // Sorted: 10-first.conf is read before 20-second.conf.
            (
                "config.d/20-second.conf",
                "Host arm\n    Port 2000\n    User second\n",
            ),
            (
                "config.d/10-first.conf",
                "Host arm\n    Port 1000\nHost power\n    HostName p9\n",
            ),
            ("config.d/ignored.txt", "Host arm\n    Port 9\n"),
            // Lines before the first Host of an included file belong to the
            // enclosing block; its Host lines apply only inside that block.
            (
                "scoped.conf",
                "Port 4000\nHost scoped\n    HostName inner\nHost arm\n    User leaked\n",
            ),
            (
                "defaults",
                "User fallback\nIdentityFile ~/.ssh/default_key\n",
            ),
        ]);
        let h = home.path();
        /// Host, and its Port, User and HostName.
        type Case<'a> = (&'a str, Option<u16>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            ("arm", Some(1000), Some("second"), None),
            ("power", None, Some("fallback"), Some("p9")),
            ("scoped", Some(4000), Some("after-include"), Some("inner")),
            ("other", None, Some("fallback"), None),
        ];
        for (host, port, user, host_name) in cases {
            let config = read_for(h, host);
            assert_eq!(config.port, *port, "{host}");
            assert_eq!(config.user.as_deref(), *user, "{host}");
            assert_eq!(config.host_name.as_deref(), *host_name, "{host}");
            assert_eq!(config.identity_files, vec!["~/.ssh/default_key"], "{host}");
        }
    }

    #[test]
    fn match_blocks_are_skipped_except_match_all() {
        let home = home_with(&[(
            "config",
            "\
Host arm
    User builder
Match host arm exec \"true\"
    Port 2200
    IdentityFile ~/.ssh/matched
    Include nowhere/*
Match all
    ConnectTimeout 4
Host arm
    HostName 127.0.0.2
",
        )]);
        let config = read_for(home.path(), "arm");
        assert_eq!(config.user.as_deref(), Some("builder"));
        // The Match block's lines do not leak into the Host block above it.
        assert_eq!(config.port, None);
        assert!(config.identity_files.is_empty());
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(4)));
        assert_eq!(config.host_name.as_deref(), Some("127.0.0.2"));
    }

    #[test]
    fn proxies_and_known_hosts_files() {
        let home = home_with(&[(
            "config",
            "\
Host bastion
    ProxyJump none
Host direct
    ProxyCommand none
Host wrapped
    ProxyCommand ssh -W %h:%p gateway
Host inner-*
    ProxyJump bastion,admin@second:2202
    UserKnownHostsFile ~/.ssh/lab_known_hosts /etc/mab/known_hosts
Host *
    ProxyJump fallback
    UserKnownHostsFile none
",
        )]);
        let h = home.path();
        let config_file = h.join(".ssh/config");
        let located = |value: Proxy, line: usize| {
            Some(Located {
                value,
                file: config_file.clone(),
                line,
            })
        };
        let cases = [
            ("bastion", located(Proxy::Direct, 2), Some(vec![])),
            ("direct", located(Proxy::Direct, 4), Some(vec![])),
            (
                "wrapped",
                located(Proxy::Command("ssh -W %h:%p gateway".into()), 6),
                Some(vec![]),
            ),
            (
                "inner-1",
                located(
                    Proxy::Jump(vec!["bastion".into(), "admin@second:2202".into()]),
                    8,
                ),
                Some(vec![
                    "~/.ssh/lab_known_hosts".to_string(),
                    "/etc/mab/known_hosts".to_string(),
                ]),
            ),
            (
                "other",
                located(Proxy::Jump(vec!["fallback".into()]), 11),
                Some(vec![]),
            ),
        ];
        for (host, proxy, known_hosts) in cases {
            let config = read_for(h, host);
            assert_eq!(config.proxy, proxy, "{host}");
            assert_eq!(config.user_known_hosts_files, known_hosts, "{host}");
        }
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        /// The files of `.ssh`, the one in error, and the message.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("config", "Host arm\n    Port notaport\n")],
                "config",
                "line 2: `Port notaport`: the port must be a number from 1 to 65535",
            ),
            // Checked even in a block that does not apply to the host.
            (
                &[("config", "Host other\n  IdentitiesOnly maybe\n")],
                "config",
                "line 2: `IdentitiesOnly maybe`: expected yes or no",
            ),
            (
                &[("config", "Include extra\n"), ("extra", "\n\nStrictHostKeyChecking sometimes\n")],
                "extra",
                "line 3: `StrictHostKeyChecking sometimes`: expected yes, no, ask, accept-new or off",
            ),
            (
                &[("config", "ProxyJump bastion,:22\n")],
                "config",
                "line 1: `ProxyJump bastion,:22`: the jump host `:22` names no host",
            ),
            (
                &[("config", "ConnectTimeout soon\n")],
                "config",
                "line 1: `ConnectTimeout soon` is not a time",
            ),
            (
                &[("config", "Host *\n  ServerAliveInterval often\n")],
                "config",
                "line 2: `ServerAliveInterval often` is not a time",
            ),
            (
                &[("config", "ServerAliveCountMax -1\n")],
                "config",
                "line 1: `ServerAliveCountMax -1`: expected a number of keepalives",
            ),
            (
                &[("config", "Host\n")],
                "config",
                "line 1: `Host` needs a value",
            ),
            (
                &[("config", "HostName a b\n")],
                "config",
                "line 1: `HostName` takes one value, found a b",
            ),
            (
                &[("config", "Include config\n")],
                "config",
                "nests more than 16 files deep",
            ),
        ];
        for (files, file, message) in cases {
            let home = home_with(files);
            let error =
                read(&home.path().join(".ssh/config"), home.path(), "arm").expect_err(message);
            assert_eq!(error.file, home.path().join(".ssh").join(file), "{message}");
            assert!(
                error.message.contains(message),
                "{} does not contain {message}",
                error.message
            );
        }
    }

    #[test]
    fn a_missing_config_is_empty() {
        let home = home_with(&[]);
        assert_eq!(read_for(home.path(), "arm"), HostConfig::default());
    }

    #[test]
    fn include_patterns() {
        let home = Path::new("/home/u[1]");
        let cases = [
            ("config.d/*", "/home/u[[]1[]]/.ssh/config.d/*"),
            ("~/extra/*.conf", "/home/u[[]1[]]/extra/*.conf"),
            (
                "/etc/ssh/ssh_config.d/*.conf",
                "/etc/ssh/ssh_config.d/*.conf",
            ),
        ];
        for (argument, expected) in cases {
            assert_eq!(include_pattern(argument, home), expected, "{argument}");
        }
    }
}
