//! `runners.toml`, the runner registry, and where it is looked up.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use toml::Spanned;

use crate::document::{
    absolute, check_near_miss, deserialize, did_you_mean, parse_platforms, position,
    unknown_key_position, Segment, Table, UnknownKey,
};
use crate::error::{read_file, ConfigError};
use crate::platform::Platform;
use crate::suggest::closest;

/// The engine socket of a runner whose `engine` is not written (for a
/// `local` runner the caller first tries `DOCKER_HOST` and the docker context).
pub const DEFAULT_ENGINE_SOCKET: &str = "unix:///var/run/docker.sock";

/// The registry's file name.
pub const RUNNERS_FILE_NAME: &str = "runners.toml";

/// The name of the runner used when no runners file exists.
pub const IMPLICIT_RUNNER_NAME: &str = "local";

/// One `[[runner]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runner {
    pub name: String,
    pub host: RunnerHost,
    /// Normalised, without repeats, in the order written.
    pub platforms: Vec<Platform>,
    /// The engine address as written; `None` means the default.
    pub engine: Option<String>,
    /// Builds at once on this runner, at least 1.
    pub jobs: u32,
    pub network: NetworkMode,
}

/// Where a runner's engine lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunnerHost {
    /// `host = "local"`: this machine's engine.
    Local,
    /// `[user@]host[:port]` or a `Host` alias of the ssh config, as written
    /// and checked by [`HostSpec::parse`](crate::host::HostSpec::parse).
    Ssh(String),
}

impl fmt::Display for RunnerHost {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunnerHost::Local => formatter.write_str("local"),
            RunnerHost::Ssh(destination) => formatter.write_str(destination),
        }
    }
}

/// The network mode of `RUN` steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NetworkMode {
    #[default]
    Default,
    Host,
    None,
}

impl NetworkMode {
    pub const NAMES: [&'static str; 3] = ["default", "host", "none"];

    /// As written in runners.toml and passed to the engine.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Default => "default",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for NetworkMode {
    type Err = String;

    /// The error is the hint for a wrong value.
    fn from_str(text: &str) -> Result<NetworkMode, String> {
        match text {
            "default" => Ok(NetworkMode::Default),
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            other => Err(format!(
                "`network` is one of `default`, `host`, `none`{}",
                did_you_mean(other, &NetworkMode::NAMES)
            )),
        }
    }
}

/// The runners mab may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnersFile {
    /// The file they came from; `None` for the implicit local runner.
    pub path: Option<PathBuf>,
    pub runners: Vec<Runner>,
    /// Unknown keys, platform alias notes, an empty registry.
    pub warnings: Vec<String>,
}

impl RunnersFile {
    pub fn runner(&self, name: &str) -> Option<&Runner> {
        self.runners.iter().find(|runner| runner.name == name)
    }
}

#[derive(Deserialize)]
struct RawRunnersFile {
    runner: Option<Vec<Spanned<RawRunner>>>,
}

#[derive(Deserialize)]
struct RawRunner {
    name: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    platforms: Option<Spanned<Vec<Spanned<String>>>>,
    engine: Option<Spanned<String>>,
    jobs: Option<Spanned<i64>>,
    network: Option<Spanned<String>>,
}

const TOP_KEYS: &[&str] = &["runner"];
const RUNNER_KEYS: &[&str] = &["name", "host", "platforms", "engine", "jobs", "network"];

/// Reads and validates the runners file at `path`.
pub fn load_runners(path: &Path) -> Result<RunnersFile, ConfigError> {
    let path = absolute(path);
    let text = read_file(
        &path,
        "create it with `mab runners add`, or point `--runners` or MAB_RUNNERS at an existing file",
    )?;
    parse_runners(&path, &text)
}

/// Validates the text of a runners file that lives at `path`.
pub fn parse_runners(path: &Path, text: &str) -> Result<RunnersFile, ConfigError> {
    let (raw, ignored): (RawRunnersFile, _) = deserialize(path, text)?;
    for unknown in &ignored {
        let table = match unknown.segments.as_slice() {
            [Segment::Key(_)] => Table {
                name: String::new(),
                known: TOP_KEYS,
                required: &[],
            },
            [Segment::Key(runner), Segment::Index(index), Segment::Key(_)]
                if runner == "runner" =>
            {
                let name = raw
                    .runner
                    .as_ref()
                    .and_then(|runners| runners.get(*index))
                    .and_then(|written| written.get_ref().name.as_ref());
                Table {
                    name: match name {
                        Some(name) => format!("runner `{}`", name.get_ref()),
                        None => format!("runner #{}", index + 1),
                    },
                    known: RUNNER_KEYS,
                    required: &["name", "host", "platforms"],
                }
            }
            _ => continue,
        };
        check_near_miss(path, text, unknown, &table)?;
    }
    let mut warnings = Vec::new();
    let mut runners: Vec<Runner> = Vec::new();
    // Where each accepted runner's name was written, to point at the first of two.
    let mut name_spans: Vec<std::ops::Range<usize>> = Vec::new();
    let raw_runners = raw.runner.unwrap_or_default();
    if raw_runners.is_empty() {
        warnings.push(format!(
            "{} lists no runners; add one with `mab runners add`",
            path.display()
        ));
    }
    for raw_runner in raw_runners {
        let runner_span = raw_runner.span();
        let raw_runner = raw_runner.into_inner();
        let invalid = |span, message: String, hint: String| {
            ConfigError::invalid(path, text, Some(span), message, Some(hint))
        };

        let Some(name) = raw_runner.name else {
            return Err(invalid(
                runner_span,
                "a [[runner]] has no `name`".to_owned(),
                "give each runner a name, e.g. `name = \"arm64-01\"`".to_owned(),
            ));
        };
        if !is_valid_runner_name(name.get_ref()) {
            return Err(invalid(
                name.span(),
                format!("`{}` is not a valid runner name", name.get_ref()),
                "a runner name starts with a letter or digit and holds letters, digits, `.`, `_` and `-`".to_owned(),
            ));
        }
        if let Some(index) = runners
            .iter()
            .position(|known| known.name == *name.get_ref())
        {
            let first = position(path, text, name_spans[index].clone());
            return Err(invalid(
                name.span(),
                format!("runner name `{}` is used twice", name.get_ref()),
                format!("the first is at {first}; give each runner its own name"),
            ));
        }
        let runner_name = name.get_ref().clone();

        let Some(host) = raw_runner.host else {
            return Err(invalid(
                runner_span,
                format!("runner `{runner_name}` has no `host`"),
                "write `host = \"local\"` for this machine's engine, or `host = \"[user@]host[:port]\"`".to_owned(),
            ));
        };
        let host = match RunnerHost::parse(host.get_ref()) {
            Ok(parsed) => parsed,
            Err(error) => {
                return Err(invalid(
                    host.span(),
                    format!("`host` of runner `{runner_name}` {error}"),
                    error.hint(),
                ));
            }
        };

        let platforms = match raw_runner.platforms {
            None => {
                return Err(invalid(
                    runner_span,
                    format!("runner `{runner_name}` lists no platforms"),
                    "add `platforms = [\"linux/arm64\"]`: the platforms this runner builds"
                        .to_owned(),
                ));
            }
            Some(written) if written.get_ref().is_empty() => {
                return Err(invalid(
                    written.span(),
                    format!("runner `{runner_name}` lists no platforms"),
                    "list the platforms this runner builds, e.g. `platforms = [\"linux/arm64\"]`"
                        .to_owned(),
                ));
            }
            Some(written) => parse_platforms(path, text, written.get_ref(), &mut warnings)?,
        };

        let engine = match raw_runner.engine {
            Some(engine) => match check_engine(engine.get_ref(), &host) {
                Ok(()) => Some(engine.into_inner()),
                Err((why, hint)) => {
                    return Err(invalid(
                        engine.span(),
                        format!("`engine` of runner `{runner_name}` {why}"),
                        hint,
                    ));
                }
            },
            None => None,
        };

        let jobs = match raw_runner.jobs {
            Some(jobs) => match u32::try_from(*jobs.get_ref()) {
                Ok(count) if count >= 1 => count,
                _ => {
                    return Err(invalid(
                        jobs.span(),
                        format!(
                            "`jobs` of runner `{runner_name}` is {}; it must be at least 1",
                            jobs.get_ref()
                        ),
                        "`jobs` is how many builds run at once on this runner; leave it out for 1"
                            .to_owned(),
                    ));
                }
            },
            None => 1,
        };

        let network = match raw_runner.network {
            Some(network) => network.get_ref().parse().map_err(|hint| {
                invalid(
                    network.span(),
                    format!(
                        "unknown network mode `{}` for runner `{runner_name}`",
                        network.get_ref()
                    ),
                    hint,
                )
            })?,
            None => NetworkMode::Default,
        };

        name_spans.push(name.span());
        runners.push(Runner {
            name: runner_name,
            host,
            platforms,
            engine,
            jobs,
            network,
        });
    }

    warnings.extend(
        ignored
            .iter()
            .map(|unknown| unknown_key_warning(path, text, unknown, &runners)),
    );
    Ok(RunnersFile {
        path: Some(path.to_owned()),
        runners,
        warnings,
    })
}

/// `FILE:LINE:COL: unknown key `colour` of runner `a` is ignored`.
fn unknown_key_warning(
    path: &Path,
    text: &str,
    unknown: &UnknownKey,
    runners: &[Runner],
) -> String {
    let at = unknown_key_position(path, text, unknown);
    match unknown.segments.as_slice() {
        [Segment::Key(runner), Segment::Index(index), Segment::Key(key), ..]
            if runner == "runner" =>
        {
            let which = match runners.get(*index) {
                Some(runner) => format!("runner `{}`", runner.name),
                None => format!("runner #{}", index + 1),
            };
            format!("{at}: unknown key `{key}` of {which} is ignored")
        }
        [Segment::Key(key)] => {
            // A near miss of `runner` is an error (check_near_miss).
            let hint = match closest(key, RUNNER_KEYS.iter().copied()) {
                Some(_) => "; runner settings go under `[[runner]]`",
                None => "",
            };
            format!("{at}: unknown key `{key}` is ignored{hint}")
        }
        segments => format!(
            "{at}: unknown key `{}` is ignored",
            crate::document::dotted_key(segments)
        ),
    }
}

fn is_valid_runner_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Why `host[:port]` could not be split.
#[derive(Debug, PartialEq, Eq)]
enum AddressError {
    /// A `[` without its `]`, an empty `[]`, or text after the `]`.
    Malformed,
    /// Two or more `:` outside brackets.
    UnbracketedIpv6,
}

/// Splits `host[:port]` or `[ipv6][:port]` into the host (without brackets)
/// and the port as written.
fn split_port(address: &str) -> Result<(&str, Option<&str>), AddressError> {
    if let Some(bracketed) = address.strip_prefix('[') {
        return match bracketed.split_once(']') {
            Some((inner, "")) if !inner.is_empty() => Ok((inner, None)),
            Some((inner, rest)) if !inner.is_empty() => rest
                .strip_prefix(':')
                .map(|port| (inner, Some(port)))
                .ok_or(AddressError::Malformed),
            _ => Err(AddressError::Malformed),
        };
    }
    match address.split_once(':') {
        None => Ok((address, None)),
        Some((_, port)) if port.contains(':') => Err(AddressError::UnbracketedIpv6),
        Some((name, port)) => Ok((name, Some(port))),
    }
}

fn is_valid_port(port: &str) -> bool {
    port.parse::<u16>().is_ok_and(|port| port > 0)
}

/// Checks the engine address of a runner on `host`: a runner reached over
/// SSH takes only `unix://ABSOLUTE_PATH` (the socket on that host, reached
/// through a stream-local channel); a `local` runner also takes
/// `tcp://HOST:PORT`. The error completes "`engine` of runner `x` ..." and
/// comes with a hint naming the forms that kind of runner takes.
fn check_engine(engine: &str, host: &RunnerHost) -> Result<(), (String, String)> {
    let hint = match host {
        RunnerHost::Local => format!(
            "a `local` runner takes `unix:///ABSOLUTE/PATH` (e.g. `{DEFAULT_ENGINE_SOCKET}`) or `tcp://HOST:PORT`"
        ),
        RunnerHost::Ssh(_) => format!(
            "a runner reached over SSH takes `unix:///ABSOLUTE/PATH`, the engine's socket on that host (e.g. `{DEFAULT_ENGINE_SOCKET}`)"
        ),
    };
    let why = if let Some(socket) = engine.strip_prefix("unix://") {
        match socket {
            "" => format!("`{engine}` names no socket"),
            socket if !socket.starts_with('/') => {
                format!("`{engine}` is not an absolute socket path")
            }
            socket if socket.chars().any(char::is_control) => {
                format!("`{engine}` contains a control character")
            }
            _ => return Ok(()),
        }
    } else if !engine.contains("://") {
        format!("`{engine}` is not an engine address")
    } else if let RunnerHost::Ssh(_) = host {
        format!("`{engine}` is not a `unix://` socket")
    } else if let Some(address) = engine.strip_prefix("tcp://") {
        match check_tcp_address(address.trim_end_matches('/')) {
            Ok(()) => return Ok(()),
            Err(why) => format!("`{engine}` {why}"),
        }
    } else {
        format!("`{engine}` is neither a `unix://` socket nor a `tcp://` address")
    };
    Err((why, hint))
}

/// Checks the `HOST:PORT` of a `tcp://` address; the error completes
/// "`tcp://...` ...".
fn check_tcp_address(address: &str) -> Result<(), &'static str> {
    if address.is_empty() {
        return Err("names no address");
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains white space");
    }
    match split_port(address) {
        Ok((name, _)) if name.is_empty() || name.contains(['/', '@']) => {
            Err("is not `tcp://HOST:PORT`")
        }
        Ok((_, None)) => Err("has no port"),
        Ok((_, Some(port))) if !is_valid_port(port) => Err("has an invalid port"),
        Ok(_) => Ok(()),
        Err(AddressError::UnbracketedIpv6) => Err("has an IPv6 address without brackets"),
        Err(AddressError::Malformed) => Err("is not `tcp://HOST:PORT`"),
    }
}

/// The implicit runner used when no runners file exists: `local`, this
/// machine's engine, serving every requested platform, all at once (as
/// buildx builds the platforms of one build in parallel).
pub fn implicit_runners(platforms: &[Platform]) -> RunnersFile {
    RunnersFile {
        path: None,
        runners: vec![Runner {
            name: IMPLICIT_RUNNER_NAME.to_owned(),
            host: RunnerHost::Local,
            platforms: platforms.to_vec(),
            engine: None,
            jobs: u32::try_from(platforms.len()).unwrap_or(u32::MAX).max(1),
            network: NetworkMode::Default,
        }],
        warnings: Vec::new(),
    }
}

/// The runners file to use, in PRODUCT.md's order: the `--runners` flag,
/// `MAB_RUNNERS`, `runners.toml` beside `mab.toml`, then
/// `$XDG_CONFIG_HOME/mab/runners.toml` (`<home>/.config/mab/runners.toml`
/// when XDG_CONFIG_HOME is unset, empty or relative). The flag and the
/// variable are returned as given, existing or not (reading then reports a
/// missing file); the others only when they exist. `None` means the
/// implicit local runner.
pub fn locate_runners(
    flag: Option<&Path>,
    env_mab_runners: Option<&Path>,
    manifest_dir: Option<&Path>,
    xdg_config_home: Option<&Path>,
    home: &Path,
) -> Option<PathBuf> {
    fn given(path: Option<&Path>) -> Option<&Path> {
        path.filter(|path| !path.as_os_str().is_empty())
    }
    if let Some(path) = given(flag).or(given(env_mab_runners)) {
        return Some(path.to_owned());
    }
    if let Some(beside) = manifest_dir
        .map(|dir| dir.join(RUNNERS_FILE_NAME))
        .filter(|candidate| candidate.is_file())
    {
        return Some(beside);
    }
    let config_home = match given(xdg_config_home).filter(|dir| dir.is_absolute()) {
        Some(dir) => dir.to_owned(),
        None => home.join(".config"),
    };
    Some(config_home.join("mab").join(RUNNERS_FILE_NAME)).filter(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::assert_reported;

    const PATH: &str = "/etc/mab/runners.toml";

    fn parse(text: &str) -> Result<RunnersFile, ConfigError> {
        parse_runners(Path::new(PATH), text)
    }

    fn platforms(names: &[&str]) -> Vec<Platform> {
        names.iter().map(|name| name.parse().unwrap()).collect()
    }

    #[test]
    fn full_file_and_defaults() {
        let file = parse(
            r#"
[[runner]]
name = "power9-01"
host = "builder@p9-01.example.com:22"
platforms = ["linux/ppc64le"]
engine = "unix:///var/run/docker.sock"
jobs = 2
network = "host"

[[runner]]
name = "laptop"
host = "local"
platforms = ["linux/amd64", "linux/aarch64"]
"#,
        )
        .unwrap();
        assert_eq!(file.path.as_deref(), Some(Path::new(PATH)));
        assert_eq!(
            file.runners,
            [
                Runner {
                    name: "power9-01".to_owned(),
                    host: RunnerHost::Ssh("builder@p9-01.example.com:22".to_owned()),
                    platforms: platforms(&["linux/ppc64le"]),
                    engine: Some(DEFAULT_ENGINE_SOCKET.to_owned()),
                    jobs: 2,
                    network: NetworkMode::Host,
                },
                Runner {
                    name: "laptop".to_owned(),
                    host: RunnerHost::Local,
                    platforms: platforms(&["linux/amd64", "linux/arm64"]),
                    engine: None,
                    jobs: 1,
                    network: NetworkMode::Default,
                },
            ]
        );
        assert_eq!(
            file.warnings,
            ["/etc/mab/runners.toml:13:29: `linux/aarch64` read as `linux/arm64`"]
        );
        assert_eq!(file.runner("laptop").unwrap().host.to_string(), "local");
    }

    #[test]
    fn empty_file_warns() {
        let file = parse("").unwrap();
        assert!(file.runners.is_empty());
        assert_eq!(
            file.warnings,
            ["/etc/mab/runners.toml lists no runners; add one with `mab runners add`"]
        );
    }

    /// Keys not close to a known one of their table (the distance of
    /// `closest`) are warnings.
    #[test]
    fn unknown_keys_are_warnings() {
        let file = parse(
            "jobs = 3\nlabels = []\n[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\ncolour = \"x\"\n",
        )
        .unwrap();
        assert_eq!(
            file.warnings,
            [
                "/etc/mab/runners.toml:1:1: unknown key `jobs` is ignored; runner settings go under `[[runner]]`",
                "/etc/mab/runners.toml:2:1: unknown key `labels` is ignored",
                "/etc/mab/runners.toml:7:1: unknown key `colour` of runner `a` is ignored",
            ]
        );
    }

    /// (file, message, `FILE:LINE:COL`, offending line, carets, hint): a
    /// key or table close to a known one is an error pointing at it; a
    /// missing required one names its near miss.
    #[test]
    fn near_misses_are_errors() {
        let cases = [
            (
                format!("{RUNNER_A}netwrok = \"host\"\n"),
                "unknown key `netwrok` of runner `a`; did you mean `network`?",
                ":5:1",
                "netwrok = \"host\"",
                "^^^^^^^",
                "rename it to `network`, or remove it",
            ),
            (
                format!("{RUNNER_A}jbos = 2\n"),
                "unknown key `jbos` of runner `a`; did you mean `jobs`?",
                ":5:1",
                "jbos = 2",
                "^^^^",
                "rename it to `jobs`",
            ),
            (
                format!("{RUNNER_A}[[runner]]\nnme = \"b\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n"),
                "missing required key `name` of runner #2; `nme` (6:1) looks like it",
                ":6:1",
                "nme = \"b\"",
                "^^^",
                "rename `nme` to `name`",
            ),
            (
                "[[runner]]\nname = \"a\"\nhots = \"local\"\nplatforms = [\"linux/amd64\"]\n".to_owned(),
                "missing required key `host` of runner `a`; `hots` (3:1) looks like it",
                ":3:1",
                "hots = \"local\"",
                "^^^^",
                "rename `hots` to `host`",
            ),
            (
                "runners = []\n".to_owned(),
                "unknown key `runners`; did you mean `runner`?",
                ":1:1",
                "runners = []",
                "^^^^^^^",
                "rename it to `runner`",
            ),
            (
                "[[runners]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n".to_owned(),
                "unknown table `[[runners]]`; did you mean `[[runner]]`?",
                ":1:3",
                "[[runners]]",
                "  ^^^^^^^",
                "rename it to `[[runner]]`",
            ),
        ];
        for (text, message, position, line, carets, hint) in cases {
            let error = parse(&text).expect_err(&text);
            assert_reported(&text, &error, PATH, (message, position, line, carets, hint));
        }
    }

    const RUNNER_A: &str =
        "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n";

    /// (file, message, `FILE:LINE:COL`, offending line, carets, hint)
    #[test]
    fn invalid_files_point_at_the_value() {
        let with_a = |extra: &str| format!("{RUNNER_A}{extra}");
        let cases = [
            (
                with_a("[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/arm64\"]\n"),
                "runner name `a` is used twice",
                ":6:8",
                "name = \"a\"",
                "       ^^^",
                "the first is at /etc/mab/runners.toml:2:8; give each runner its own name",
            ),
            (
                "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = []\n".to_owned(),
                "runner `a` lists no platforms",
                ":4:13",
                "platforms = []",
                "            ^^",
                "list the platforms this runner builds",
            ),
            (
                "[[runner]]\nname = \"a\"\nhost = \"local\"\n".to_owned(),
                "runner `a` lists no platforms",
                ":1:1",
                "[[runner]]",
                "^^^^^^^^^^",
                "add `platforms = [\"linux/arm64\"]`",
            ),
            (
                with_a("jobs = 0\n"),
                "`jobs` of runner `a` is 0; it must be at least 1",
                ":5:8",
                "jobs = 0",
                "       ^",
                "leave it out for 1",
            ),
            (
                with_a("jobs = -2\n"),
                "`jobs` of runner `a` is -2; it must be at least 1",
                ":5:8",
                "jobs = -2",
                "       ^^",
                "leave it out for 1",
            ),
            (
                "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\", \"linux/ppc46le\"]\n".to_owned(),
                "unknown architecture `ppc46le` in platform `linux/ppc46le`",
                ":4:29",
                "platforms = [\"linux/amd64\", \"linux/ppc46le\"]",
                "                            ^^^^^^^^^^^^^^^",
                "did you mean `linux/ppc64le`?",
            ),
            (
                with_a("network = \"hots\"\n"),
                "unknown network mode `hots` for runner `a`",
                ":5:11",
                "network = \"hots\"",
                "          ^^^^^^",
                "`network` is one of `default`, `host`, `none`; did you mean `host`?",
            ),
            (
                with_a("network = \"bridge\"\n"),
                "unknown network mode `bridge` for runner `a`",
                ":5:11",
                "network = \"bridge\"",
                "          ^^^^^^^^",
                "`network` is one of `default`, `host`, `none`",
            ),
            (
                "[[runner]]\nname = \"a b\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n".to_owned(),
                "`a b` is not a valid runner name",
                ":2:8",
                "name = \"a b\"",
                "       ^^^^^",
                "a runner name starts with",
            ),
            (
                "[[runner]]\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n".to_owned(),
                "a [[runner]] has no `name`",
                ":1:1",
                "[[runner]]",
                "^^^^^^^^^^",
                "give each runner a name",
            ),
            (
                "[[runner]]\nname = \"a\"\nplatforms = [\"linux/amd64\"]\n".to_owned(),
                "runner `a` has no `host`",
                ":1:1",
                "[[runner]]",
                "^^^^^^^^^^",
                "write `host = \"local\"`",
            ),
            (
                "[[runner]]\nname = \"a\"\nhost = \"me@box:99999\"\nplatforms = [\"linux/amd64\"]\n".to_owned(),
                "`host` of runner `a` has an invalid port `99999`",
                ":3:8",
                "host = \"me@box:99999\"",
                "       ^^^^^^^^^^^^^^",
                "a port is a number from 1 to 65535",
            ),
            (
                with_a("engine = \"/var/run/docker.sock\"\n"),
                "`engine` of runner `a` `/var/run/docker.sock` is not an engine address",
                ":5:10",
                "engine = \"/var/run/docker.sock\"",
                "         ^^^^^^^^^^^^^^^^^^^^^^",
                "a `local` runner takes `unix:///ABSOLUTE/PATH` (e.g. `unix:///var/run/docker.sock`)",
            ),
            // CRLF line ends: an unterminated string ends at the `\r\n`.
            (
                "[[runner]]\r\nname = \"a\r\nhost = \"local\"\r\n".to_owned(),
                "invalid basic string, expected `\"`",
                ":2:10",
                "name = \"a",
                "         ^",
                "valid TOML",
            ),
            (
                "[[runner]]\r\nname = \"a\"\r\nhost = \"local\"\r\nplatforms = []\r\n".to_owned(),
                "runner `a` lists no platforms",
                ":4:13",
                "platforms = []",
                "            ^^",
                "list the platforms this runner builds",
            ),
            (
                "[[runner]]\nname = \"a\"\nhost = \"me@box\"\nplatforms = [\"linux/amd64\"]\nengine = \"tcp://127.0.0.1:2375\"\n".to_owned(),
                "`engine` of runner `a` `tcp://127.0.0.1:2375` is not a `unix://` socket",
                ":5:10",
                "engine = \"tcp://127.0.0.1:2375\"",
                "         ^^^^^^^^^^^^^^^^^^^^^^",
                "a runner reached over SSH takes `unix:///ABSOLUTE/PATH`, the engine's socket on that host",
            ),
            (
                "[[runner]]\nname = \"a\"\nhost = \"me@box\"\nplatforms = [\"linux/amd64\"]\nengine = \"https://box:2376\"\n".to_owned(),
                "`engine` of runner `a` `https://box:2376` is not a `unix://` socket",
                ":5:10",
                "engine = \"https://box:2376\"",
                "         ^^^^^^^^^^^^^^^^^^",
                "a runner reached over SSH takes `unix:///ABSOLUTE/PATH`",
            ),
            (
                with_a("engine = \"npipe:////./pipe/docker_engine\"\n"),
                "`engine` of runner `a` `npipe:////./pipe/docker_engine` is neither a `unix://` socket nor a `tcp://` address",
                ":5:10",
                "engine = \"npipe:////./pipe/docker_engine\"",
                "         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
                "a `local` runner takes `unix:///ABSOLUTE/PATH` (e.g. `unix:///var/run/docker.sock`) or `tcp://HOST:PORT`",
            ),
            (
                with_a("engine = \"tcp://127.0.0.1\"\n"),
                "`engine` of runner `a` `tcp://127.0.0.1` has no port",
                ":5:10",
                "engine = \"tcp://127.0.0.1\"",
                "         ^^^^^^^^^^^^^^^^^",
                "or `tcp://HOST:PORT`",
            ),
            (
                "[runner]\nname = \"a\"\n".to_owned(),
                "invalid type: map, expected a list",
                ":1:1",
                "[runner]",
                "^^^^^^^^",
                "declare runners with `[[runner]]`",
            ),
            (
                with_a("jobs = \"2\"\n"),
                "`jobs`: invalid type: string \"2\", expected an integer",
                ":5:8",
                "jobs = \"2\"",
                "       ^^^",
                "write a whole number without quotes",
            ),
        ];
        for (text, message, position, line, carets, hint) in cases {
            let error = parse(&text).expect_err(&text);
            assert_reported(&text, &error, PATH, (message, position, line, carets, hint));
        }
    }

    /// (engine, what a `local` runner says, what an SSH runner says):
    /// `None` accepts, `Some(part of the reason)` refuses.
    #[test]
    fn engines() {
        const NOT_UNIX: Option<&str> = Some("is not a `unix://` socket");
        const NOT_ENGINE: Option<&str> = Some("is not an engine address");
        let cases = [
            ("unix:///var/run/docker.sock", None, None),
            ("unix:///run/user/1000/podman/podman.sock", None, None),
            ("tcp://127.0.0.1:2375", None, NOT_UNIX),
            ("tcp://127.0.0.1:2375/", None, NOT_UNIX),
            ("tcp://[::1]:2375", None, NOT_UNIX),
            ("tcp://docker.example.com:2376", None, NOT_UNIX),
            ("tcp://", Some("names no address"), NOT_UNIX),
            ("tcp://127.0.0.1", Some("has no port"), NOT_UNIX),
            ("tcp://127.0.0.1:0", Some("invalid port"), NOT_UNIX),
            ("tcp://127.0.0.1:docker", Some("invalid port"), NOT_UNIX),
            ("tcp://host:2375/v1.41", Some("invalid port"), NOT_UNIX),
            (
                "tcp://::1:2375",
                Some("IPv6 address without brackets"),
                NOT_UNIX,
            ),
            ("tcp://:2375", Some("is not `tcp://HOST:PORT`"), NOT_UNIX),
            (
                "tcp://me@host:2375",
                Some("is not `tcp://HOST:PORT`"),
                NOT_UNIX,
            ),
            ("tcp://[::1", Some("is not `tcp://HOST:PORT`"), NOT_UNIX),
            ("tcp://a b:2375", Some("white space"), NOT_UNIX),
            (
                "http://127.0.0.1:2375",
                Some("is neither a `unix://` socket nor a `tcp://` address"),
                NOT_UNIX,
            ),
            (
                "https://docker.example.com:2376",
                Some("is neither"),
                NOT_UNIX,
            ),
            (
                "npipe:////./pipe/docker_engine",
                Some("is neither"),
                NOT_UNIX,
            ),
            ("ssh://builder@host", Some("is neither"), NOT_UNIX),
            (
                "unix://relative.sock",
                Some("is not an absolute socket path"),
                Some("is not an absolute socket path"),
            ),
            ("unix://", Some("names no socket"), Some("names no socket")),
            (
                "unix:///run/a\nb.sock",
                Some("control character"),
                Some("control character"),
            ),
            ("/var/run/docker.sock", NOT_ENGINE, NOT_ENGINE),
            ("docker.sock", NOT_ENGINE, NOT_ENGINE),
            ("", NOT_ENGINE, NOT_ENGINE),
        ];
        let ssh = RunnerHost::Ssh("builder@box".to_owned());
        for (engine, on_local, on_ssh) in cases {
            for (host, expected, forms) in [
                (&RunnerHost::Local, on_local, "or `tcp://HOST:PORT`"),
                (&ssh, on_ssh, "over SSH takes `unix:///ABSOLUTE/PATH`"),
            ] {
                match (check_engine(engine, host), expected) {
                    (Ok(()), None) => {}
                    (Err((message, hint)), Some(why)) => {
                        let context = format!("{engine} on {host}: {message}; {hint}");
                        assert!(message.starts_with(&format!("`{engine}` ")), "{context}");
                        assert!(message.contains(why), "{context}");
                        assert!(hint.contains(forms), "{context}");
                    }
                    (found, _) => panic!("{engine} on {host}: {found:?}, expected {expected:?}"),
                }
            }
        }
    }

    #[test]
    fn implicit_runner_serves_everything() {
        let wanted = platforms(&["linux/amd64", "linux/arm64"]);
        let file = implicit_runners(&wanted);
        assert_eq!(file.path, None);
        assert_eq!(file.runners.len(), 1);
        let runner = &file.runners[0];
        assert_eq!(runner.name, "local");
        assert_eq!(runner.host, RunnerHost::Local);
        assert_eq!(runner.platforms, wanted);
        assert_eq!(runner.engine, None);
        assert_eq!(runner.jobs, 2, "every platform builds at once");
        assert_eq!(implicit_runners(&[]).runners[0].jobs, 1);
    }

    #[test]
    fn missing_file() {
        let error = load_runners(Path::new("/nonexistent/runners.toml")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "error: could not read /nonexistent/runners.toml: No such file or directory\n\
             hint: create it with `mab runners add`, or point `--runners` or MAB_RUNNERS at an existing file"
        );
    }

    #[test]
    fn lookup_order() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let project = root.join("project");
        let home = root.join("home");
        let xdg = root.join("xdg");
        let flag = root.join("flag.toml");
        let env = root.join("env.toml");
        let beside = project.join("runners.toml");
        let in_xdg = xdg.join("mab/runners.toml");
        let in_home = home.join(".config/mab/runners.toml");
        for file in [&beside, &in_xdg, &in_home] {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, "").unwrap();
        }
        let locate =
            |flag: Option<&Path>, env: Option<&Path>, dir: Option<&Path>, xdg: Option<&Path>| {
                locate_runners(flag, env, dir, xdg, &home)
            };
        // [--runners, MAB_RUNNERS, manifest dir, XDG_CONFIG_HOME, expected]
        let cases: &[[Option<&Path>; 5]] = &[
            // The flag wins, even when its file is missing.
            [
                Some(&flag),
                Some(&env),
                Some(&project),
                Some(&xdg),
                Some(&flag),
            ],
            [None, Some(&env), Some(&project), Some(&xdg), Some(&env)],
            [Some(Path::new("")), Some(&env), None, None, Some(&env)],
            [None, None, Some(&project), Some(&xdg), Some(&beside)],
            [None, None, Some(&home), Some(&xdg), Some(&in_xdg)],
            [None, None, None, Some(&xdg), Some(&in_xdg)],
            [None, None, None, None, Some(&in_home)],
            // A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
            [None, None, None, Some(Path::new("rel")), Some(&in_home)],
        ];
        for (index, [flag, env, dir, xdg, expected]) in cases.iter().enumerate() {
            assert_eq!(
                locate(*flag, *env, *dir, *xdg).as_deref(),
                *expected,
                "case {index}"
            );
        }
        // Nothing found: the implicit runner.
        std::fs::remove_file(&in_home).unwrap();
        assert_eq!(locate(None, None, None, None), None);
        let empty_xdg = root.join("empty-xdg");
        assert_eq!(locate(None, None, None, Some(&empty_xdg)), None);
    }
}
