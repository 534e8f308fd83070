//! `mab.toml`, the project manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::document::{
    absolute, check_near_miss, deserialize, dotted_key, normalise, parse_platforms,
    unknown_key_position, Segment, Table,
};
use crate::error::{read_file, ConfigError};
use crate::platform::Platform;
use crate::secret::{ManifestSecret, SecretSource};
use crate::Location;

/// The manifest's file name.
pub const MANIFEST_NAME: &str = "mab.toml";

/// A loaded and validated `mab.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    /// Absolute path of `mab.toml`.
    pub manifest_path: PathBuf,
    /// `[image] name`: the repository to publish to, without tag or digest.
    pub image: String,
    /// Non-empty, normalised, without repeats, in the order written.
    pub platforms: Vec<Platform>,
    /// Absolute; the directory holding `mab.toml` unless `context` says otherwise.
    pub context: PathBuf,
    /// `[image] dockerfile` as written: relative to the context (it may lead
    /// outside it), or absolute. `None` when not given: then the build looks
    /// for `Dockerfile`, else `dockerfile`, in the context, as `docker build`.
    pub dockerfile: Option<PathBuf>,
    pub target: Option<String>,
    /// `[image] emulation`: whether a platform may be built under QEMU
    /// emulation when no runner builds it natively (default `true`);
    /// `false` acts as `mab build --native-only`.
    pub emulation: bool,
    /// `[image] fallback`: whether a platform whose runner cannot be
    /// reached, or fails before its build starts, moves to another runner
    /// that lists it (default `true`); `false` acts as
    /// `mab build --no-fallback`.
    pub fallback: bool,
    /// `[image] timeout`: how long one platform's job may run once it has
    /// its runner slot (see [`parse_time_limit`]); `None` (the default)
    /// for no limit.
    pub timeout: Option<Duration>,
    /// `[image.args]`.
    pub args: BTreeMap<String, String>,
    /// `[image.secrets]`: each secret's id and source (never a value).
    pub secrets: BTreeMap<String, ManifestSecret>,
    /// `[tags] extra`.
    pub extra_tags: Vec<String>,
    /// `[test]`: the smoke run of each platform's image, `None` when the
    /// table is absent.
    pub test: Option<SmokeTest>,
    /// `[verify]`: the check of each image's programs.
    pub verify: Verify,
    /// `[cache]`: where each platform's build looks for cached steps
    /// (default: nowhere but its runner's own build cache).
    pub cache: Cache,
    /// `[labels]`: label key to value, set on every platform's image (its
    /// config's `Labels`) over the `org.opencontainers.image.*` labels mab
    /// computes from the source (docs/configuration.md). Keys pass
    /// [`check_label_key`].
    pub labels: BTreeMap<String, String>,
    /// `[annotations]`: annotation key to value, set on the published list
    /// when it is an OCI image index (a Docker manifest list has no
    /// annotations). Keys pass [`check_label_key`].
    pub annotations: BTreeMap<String, String>,
    /// Unknown keys and platform alias notes, one sentence each.
    pub warnings: Vec<String>,
}

/// `[verify]`: whether and how each pushed image's ELF programs are held
/// to its platform (docs/verify.md).
#[derive(Clone, Debug, Default)]
pub struct Verify {
    /// `binaries`: what a program of another architecture does.
    pub binaries: Binaries,
    /// `ignore`: absolute image paths (`/usr/share/qemu/**`), with
    /// `.dockerignore`'s pattern rules, whose files are not inspected, as
    /// written.
    pub ignore: Vec<String>,
    /// The `ignore` patterns compiled when the manifest is read, by
    /// `.dockerignore`'s one parser ([`mab_context::DockerIgnore`]).
    pub ignored: mab_context::DockerIgnore,
}

/// Two `[verify]` tables are equal when written alike (the compiled
/// patterns follow from `ignore`).
impl PartialEq for Verify {
    fn eq(&self, other: &Verify) -> bool {
        self.binaries == other.binaries && self.ignore == other.ignore
    }
}

impl Eq for Verify {}

/// `[verify] binaries`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Binaries {
    /// `"error"` (the default): a mismatch fails the platform.
    #[default]
    Error,
    /// `"warn"`: a mismatch is a warning; the image is published.
    Warn,
    /// `"off"`: no check.
    Off,
}

impl Binaries {
    /// The values `binaries` takes, as written.
    pub const VALUES: &[(&str, Binaries)] = &[
        ("error", Binaries::Error),
        ("warn", Binaries::Warn),
        ("off", Binaries::Off),
    ];
}

/// `[cache]`: the cache source of each platform's build (docs/configuration.md#cache).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cache {
    /// `from`: where cached steps come from.
    pub from: CacheFrom,
    /// `ref`: the published list (or image) whose platform images are the
    /// cache sources, `[registry[:port]/]path[:tag|@sha256:digest]`, as
    /// written and checked by [`parse_image_reference`]; `None` for the
    /// list under the build's first tag. Only with `from = "registry"`.
    pub reference: Option<String>,
}

/// `[cache] from`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheFrom {
    /// `"none"` (the default): each runner's own build cache only, and no
    /// inline cache metadata in the images.
    #[default]
    None,
    /// `"registry"`: each platform's build imports the cache of that
    /// platform's image in the previously published list (BuildKit's
    /// `--cache-from` of a registry image), and every image is pushed with
    /// inline cache metadata (`BUILDKIT_INLINE_CACHE=1`) for the next build.
    Registry,
}

impl CacheFrom {
    /// The values `from` takes, as written.
    pub const VALUES: &[(&str, CacheFrom)] =
        &[("none", CacheFrom::None), ("registry", CacheFrom::Registry)];
}

#[derive(Deserialize)]
struct RawManifest {
    image: Option<Spanned<RawImage>>,
    tags: Option<RawTags>,
    test: Option<Spanned<RawTest>>,
    verify: Option<RawVerify>,
    cache: Option<RawCache>,
    labels: Option<BTreeMap<String, Spanned<toml::Value>>>,
    annotations: Option<BTreeMap<String, Spanned<toml::Value>>>,
}

#[derive(Deserialize)]
struct RawVerify {
    binaries: Option<Spanned<String>>,
    ignore: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
struct RawCache {
    from: Option<Spanned<String>>,
    #[serde(rename = "ref")]
    reference: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct RawImage {
    name: Option<Spanned<String>>,
    platforms: Option<Spanned<Vec<Spanned<String>>>>,
    context: Option<Spanned<String>>,
    dockerfile: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    emulation: Option<bool>,
    fallback: Option<bool>,
    timeout: Option<Spanned<String>>,
    args: Option<BTreeMap<String, String>>,
    secrets: Option<BTreeMap<String, Spanned<RawSecret>>>,
}

#[derive(Deserialize)]
struct RawSecret {
    env: Option<Spanned<String>>,
    src: Option<Spanned<String>>,
}

/// `[test]`: a command each platform's image runs on the runner that
/// built it, after its push and checks and before anything is published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmokeTest {
    /// `run`: the argv, in the exec form of a Dockerfile `ENTRYPOINT`
    /// (no shell); it replaces the image's `ENTRYPOINT` and `CMD`, as
    /// `docker run --entrypoint ARGV0 IMAGE ARGS...` does. Never empty.
    pub run: Vec<String>,
    /// `expect`: a regular expression (the `regex` crate's syntax) that
    /// must match somewhere in the command's standard output.
    pub expect: Option<Expect>,
    /// `timeout`: how long the command may run (default
    /// [`DEFAULT_TEST_TIMEOUT`]), in the grammar of [`parse_time_limit`].
    pub timeout: Duration,
}

/// How long a `[test]` command may run when `timeout` is not given.
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `[test] expect`, compiled once when the manifest is loaded; two are
/// equal when written the same.
#[derive(Clone, Debug)]
pub struct Expect(pub regex::Regex);

impl PartialEq for Expect {
    fn eq(&self, other: &Expect) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Expect {}

impl Expect {
    /// Whether the pattern matches the command's standard output `stdout`
    /// with one trailing line end (`\n` or `\r\n`) removed, as shell
    /// `$(...)` removes the output's last newline: `^version 2\.0$`
    /// matches what `echo "version 2.0"` prints. Without `(?m)`, `^` and
    /// `$` are the ends of the whole output; with it, of each line.
    pub fn is_match(&self, stdout: &str) -> bool {
        let trimmed = stdout
            .strip_suffix('\n')
            .map_or(stdout, |line| line.strip_suffix('\r').unwrap_or(line));
        self.0.is_match(trimmed)
    }
}

impl std::str::FromStr for Expect {
    type Err = String;

    /// Compiles `expect` as written in `[test]`. The error is one line:
    /// what the regex crate's parser found wrong and where in the pattern
    /// (`unclosed group at character 1 of the pattern`), or the regex
    /// crate's message for a pattern that parses but does not compile (one
    /// over its size limit).
    fn from_str(expect: &str) -> Result<Expect, String> {
        regex::Regex::new(expect).map(Expect).map_err(|error| {
            let at = |kind: &dyn std::fmt::Display, start: regex_syntax::ast::Position| {
                let before = expect.get(..start.offset).unwrap_or(expect);
                format!(
                    "{kind} at character {} of the pattern",
                    before.chars().count() + 1
                )
            };
            match regex_syntax::Parser::new().parse(expect) {
                Err(regex_syntax::Error::Parse(error)) => at(error.kind(), error.span().start),
                Err(regex_syntax::Error::Translate(error)) => at(error.kind(), error.span().start),
                _ => match error {
                    regex::Error::CompiledTooBig(limit) => format!(
                        "the pattern compiles to more than {} MiB, the regex crate's limit (a repetition such as `\\w{{1000}}` grows it fast)",
                        limit / (1024 * 1024)
                    ),
                    error => error.to_string().replace('\n', " "),
                },
            }
        })
    }
}

#[derive(Deserialize)]
struct RawTest {
    run: Option<Spanned<Vec<String>>>,
    expect: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct RawTags {
    extra: Option<Vec<Spanned<String>>>,
}

const TOP_KEYS: &[&str] = &[
    "image",
    "tags",
    "test",
    "verify",
    "cache",
    "labels",
    "annotations",
];
const CACHE_KEYS: &[&str] = &["from", "ref"];
const TEST_KEYS: &[&str] = &["run", "expect", "timeout"];
const VERIFY_KEYS: &[&str] = &["binaries", "ignore"];
const IMAGE_KEYS: &[&str] = &[
    "name",
    "platforms",
    "context",
    "dockerfile",
    "target",
    "emulation",
    "fallback",
    "timeout",
    "args",
    "secrets",
];
const SECRET_KEYS: &[&str] = &["env", "src"];
const TAGS_KEYS: &[&str] = &["extra"];

/// `mab.toml` in `start_dir` or its nearest parent that has one.
pub fn find_manifest(start_dir: &Path) -> Option<PathBuf> {
    start_dir
        .ancestors()
        .map(|dir| dir.join(MANIFEST_NAME))
        .find(|candidate| candidate.is_file())
}

/// Reads and validates the manifest at `path`.
pub fn load_project(path: &Path) -> Result<Project, ConfigError> {
    let path = absolute(path);
    let text = read_file(
        &path,
        "run `mab init` to write a mab.toml, or point `--manifest-path` at an existing one",
    )?;
    parse_project(&path, &text)
}

/// Validates the text of a manifest that lives at `path` (absolute).
pub fn parse_project(path: &Path, text: &str) -> Result<Project, ConfigError> {
    let (raw, ignored): (RawManifest, _) = deserialize(path, text)?;
    let mut warnings = Vec::new();
    for unknown in &ignored {
        check_near_miss(path, text, unknown, &table_of(&unknown.segments))?;
        warnings.push(format!(
            "{}: unknown key `{}` is ignored",
            unknown_key_position(path, text, unknown),
            dotted_key(&unknown.segments),
        ));
    }

    let invalid = |span, message: String, hint: &str| {
        ConfigError::invalid(path, text, span, message, Some(hint.to_owned()))
    };

    let Some(image) = raw.image else {
        return Err(invalid(
            None,
            format!("{} has no [image] table", path.display()),
            "add `[image]` with `name = \"registry.example.com/team/app\"` and `platforms = [\"linux/amd64\", \"linux/arm64\"]`",
        ));
    };
    let image_span = image.span();
    let image = image.into_inner();

    let Some(name) = image.name else {
        return Err(invalid(
            Some(image_span),
            "[image] has no `name`".to_owned(),
            "add `name = \"registry.example.com/team/app\"`: the repository to publish to",
        ));
    };
    if let Err((message, hint)) = check_repository(name.get_ref()) {
        return Err(invalid(Some(name.span()), message, &hint));
    }

    let Some(written_platforms) = image.platforms else {
        return Err(invalid(
            Some(image_span),
            "[image] has no `platforms`".to_owned(),
            "add `platforms = [\"linux/amd64\", \"linux/arm64\"]`",
        ));
    };
    if written_platforms.get_ref().is_empty() {
        return Err(invalid(
            Some(written_platforms.span()),
            "`platforms` is empty".to_owned(),
            "list at least one platform, e.g. `platforms = [\"linux/amd64\"]`",
        ));
    }
    let platforms = parse_platforms(path, text, written_platforms.get_ref(), &mut warnings)?;

    let manifest_dir = path.parent().unwrap_or(Path::new("/"));
    let context = match &image.context {
        Some(context) if context.get_ref().is_empty() => {
            return Err(invalid(
                Some(context.span()),
                "`context` is empty".to_owned(),
                "write `context = \".\"` for the directory holding mab.toml",
            ));
        }
        Some(context) => normalise(&manifest_dir.join(context.get_ref())),
        None => manifest_dir.to_owned(),
    };
    let dockerfile = match &image.dockerfile {
        Some(dockerfile) if dockerfile.get_ref().is_empty() => {
            return Err(invalid(
                Some(dockerfile.span()),
                "`dockerfile` is empty".to_owned(),
                "leave it out to use `Dockerfile` in the context",
            ));
        }
        Some(dockerfile) => Some(PathBuf::from(dockerfile.get_ref())),
        None => None,
    };
    let target = match image.target {
        Some(target) if target.get_ref().trim().is_empty() => {
            return Err(invalid(
                Some(target.span()),
                "`target` is empty".to_owned(),
                "name a build stage (`FROM ... AS NAME`), or leave `target` out to build the last stage",
            ));
        }
        Some(target) => Some(target.into_inner()),
        None => None,
    };

    let timeout = image
        .timeout
        .as_ref()
        .map(|timeout| time_limit(path, text, "[image] `timeout`", timeout))
        .transpose()?;
    let test = raw
        .test
        .map(|test| smoke_test(path, text, test))
        .transpose()?;

    let mut extra_tags = Vec::new();
    for tag in raw.tags.and_then(|tags| tags.extra).unwrap_or_default() {
        if !is_valid_tag(tag.get_ref()) {
            return Err(invalid(
                Some(tag.span()),
                format!("`{}` is not a valid tag", tag.get_ref()),
                "a tag is 1 to 128 letters, digits, `_`, `.` and `-`, and does not start with `.` or `-`",
            ));
        }
        if !extra_tags.contains(tag.get_ref()) {
            extra_tags.push(tag.into_inner());
        }
    }

    let verify = match raw.verify {
        Some(verify) => parse_verify(path, verify)
            .map_err(|(span, message, hint)| invalid(Some(span), message, &hint))?,
        None => Verify::default(),
    };

    let cache = match raw.cache {
        Some(cache) => parse_cache(cache)
            .map_err(|(span, message, hint)| invalid(Some(span), message, &hint))?,
        None => Cache::default(),
    };

    let labels = key_values(path, text, "labels", raw.labels)?;
    let annotations = key_values(path, text, "annotations", raw.annotations)?;

    let mut secrets = BTreeMap::new();
    for (id, secret) in image.secrets.unwrap_or_default() {
        let span = secret.span();
        let secret = secret.into_inner();
        let source = match (secret.src, secret.env) {
            (Some(file), None) if !file.get_ref().is_empty() => {
                SecretSource::File(PathBuf::from(file.into_inner()))
            }
            (None, Some(variable)) if !variable.get_ref().is_empty() => {
                SecretSource::Env(variable.into_inner())
            }
            _ => {
                return Err(invalid(
                    Some(span),
                    format!("secret `{id}` needs one source: `src` or `env`"),
                    "write `ID = { src = \"FILE\" }` or `ID = { env = \"VARIABLE\" }`: mab.toml names where a secret is, never its value",
                ))
            }
        };
        let location = Location::from_span(text, span);
        secrets.insert(id, ManifestSecret { source, location });
    }

    Ok(Project {
        manifest_path: path.to_owned(),
        image: name.into_inner(),
        platforms,
        context,
        dockerfile,
        target,
        emulation: image.emulation.unwrap_or(true),
        fallback: image.fallback.unwrap_or(true),
        timeout,
        args: image.args.unwrap_or_default(),
        secrets,
        extra_tags,
        test,
        verify,
        cache,
        labels,
        annotations,
        warnings,
    })
}

/// `[labels]` or `[annotations]` (`table`) of the manifest at `path`
/// holding `text`: string values, each key checked with
/// [`check_label_key`]. An invalid key, a value that is not a string, or a
/// table (what a dotted key such as `org.example.team = "x"` makes in TOML)
/// is an error pointing at the value.
fn key_values(
    path: &Path,
    text: &str,
    table: &str,
    written: Option<BTreeMap<String, Spanned<toml::Value>>>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let invalid = |span, message: String, hint: &str| {
        ConfigError::invalid(path, text, Some(span), message, Some(hint.to_owned()))
    };
    let quoted = "write keys in reverse domain notation, in double quotes: `\"org.example.team\" = \"build\"`";
    let mut values = BTreeMap::new();
    for (key, value) in written.unwrap_or_default() {
        let span = value.span();
        let value = match value.into_inner() {
            toml::Value::String(value) => value,
            toml::Value::Table(_) => {
                return Err(invalid(
                    span,
                    format!("[{table}] `{key}` is a table, not a string: TOML reads an unquoted key with dots as tables"),
                    quoted,
                ))
            }
            other => {
                return Err(invalid(
                    span,
                    format!("[{table}] `{key}`: {other} is not a string"),
                    "write the value in double quotes",
                ))
            }
        };
        if let Err(problem) = check_label_key(&key) {
            return Err(invalid(
                span,
                format!("[{table}] key {key:?} {problem}"),
                quoted,
            ));
        }
        values.insert(key, value);
    }
    Ok(values)
}

/// Whether `key` can name an image label or an OCI annotation: not empty,
/// and no whitespace, control character or `=` (the Docker CLI splits
/// `--label KEY=VALUE` at the first `=` and refuses an empty or blank key;
/// the OCI image spec asks for reverse domain notation, which this
/// allows). The error says what is wrong, as a phrase.
pub fn check_label_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("is empty");
    }
    if key
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
    {
        return Err("holds whitespace or a control character");
    }
    if key.contains('=') {
        return Err("holds `=`");
    }
    Ok(())
}

/// `timeout` (a [`parse_time_limit`] duration) of the manifest at `path`
/// holding `text`; `key` names it in the error, which points at it.
fn time_limit(
    path: &Path,
    text: &str,
    key: &str,
    timeout: &Spanned<String>,
) -> Result<Duration, ConfigError> {
    parse_time_limit(timeout.get_ref()).map_err(|message| {
        ConfigError::invalid(
            path,
            text,
            Some(timeout.span()),
            format!("{key}: {message}"),
            Some(TIME_LIMIT_HINT.to_owned()),
        )
    })
}

/// The `[test]` table of the manifest at `path` holding `text`: `run` a
/// non-empty argv whose program (its first element) is not empty, `expect` a regular expression that compiles, `timeout`
/// a duration; each error points at the value (or at the table when `run`
/// is missing).
fn smoke_test(path: &Path, text: &str, test: Spanned<RawTest>) -> Result<SmokeTest, ConfigError> {
    const ARGV_EXAMPLE: &str = "e.g. `run = [\"/app/server\", \"--version\"]`";
    let invalid = |span, message: &str, hint: String| {
        ConfigError::invalid(path, text, Some(span), message.to_owned(), Some(hint))
    };
    let span = test.span();
    let test = test.into_inner();
    let run = match test.run {
        Some(run) if run.get_ref().is_empty() => {
            return Err(invalid(
                run.span(),
                "[test] `run` is empty",
                format!("write the command as an argv, {ARGV_EXAMPLE}"),
            ))
        }
        // The engine would refuse it only when the container starts:
        // `exec: "": executable file not found`.
        Some(run) if run.get_ref()[0].is_empty() => {
            return Err(invalid(
                run.span(),
                "[test] `run` names no program: its first element is empty",
                format!("make the first element the program to run, {ARGV_EXAMPLE}"),
            ))
        }
        Some(run) => run.into_inner(),
        None => {
            return Err(invalid(
                span,
                "[test] has no `run`",
                format!("add the command as an argv, {ARGV_EXAMPLE}"),
            ))
        }
    };
    let expect = match test.expect {
        Some(expect) => Some(expect.get_ref().parse::<Expect>().map_err(|error| {
            invalid(
                expect.span(),
                &format!("[test] `expect` is not a regular expression: {error}"),
                "write a regular expression in the syntax of the Rust `regex` crate (https://docs.rs/regex), e.g. `expect = 'version [0-9]+'`".to_owned(),
            )
        })?),
        None => None,
    };
    let timeout = match &test.timeout {
        Some(timeout) => time_limit(path, text, "[test] `timeout`", timeout)?,
        None => DEFAULT_TEST_TIMEOUT,
    };
    Ok(SmokeTest {
        run,
        expect,
        timeout,
    })
}

/// `[verify]`, or the span, message and hint of its bad value.
fn parse_verify(
    path: &Path,
    raw: RawVerify,
) -> Result<Verify, (std::ops::Range<usize>, String, String)> {
    let binaries = match raw.binaries {
        Some(written) => one_of(
            "binaries",
            &written,
            Binaries::VALUES,
            "\"error\", \"warn\" or \"off\"",
            "\"error\" fails a platform whose image holds a program of another architecture, \"warn\" publishes it with a warning, \"off\" skips the check (docs/verify.md)",
        )?,
        None => Binaries::default(),
    };
    let patterns = raw.ignore.unwrap_or_default();
    for pattern in &patterns {
        let text = pattern.get_ref();
        // `.dockerignore` trims the body after a leading `!`.
        let negated = text.trim().strip_prefix('!');
        let body = negated.map_or(text.trim(), str::trim_start);
        let bang = if negated.is_some() { "!" } else { "" };
        // An empty body is no path: made absolute it would be `/`, the
        // whole image.
        if body.is_empty() {
            let (message, hint) = match negated {
                Some(_) => (
                    format!("`ignore` pattern `{text}` has no path after its `!`"),
                    "remove it, or write after the `!` the path of the files to check after all, from the image's root (`!/usr/share/qemu/keep`)",
                ),
                None => (
                    "`ignore` holds an empty pattern".to_owned(),
                    "remove it, or write the path of the files meant to be foreign, from the image's root (`/usr/share/qemu/**`); `/` alone would ignore the whole image",
                ),
            };
            return Err((pattern.span(), message, hint.to_owned()));
        }
        if !body.starts_with('/') {
            return Err((
                pattern.span(),
                format!("`ignore` pattern `{text}` is not an absolute path"),
                format!("write the path as it is in the image, from its root: `{bang}/{body}`"),
            ));
        }
    }
    // The one parser of these patterns, the one `.dockerignore` has,
    // compiled once here.
    let ignored = mab_context::DockerIgnore::from_patterns(
        patterns.iter().map(Spanned::get_ref),
        path,
    )
    .map_err(|error| {
        let (line, reason) = match error {
            mab_context::ContextError::InvalidPattern { line, reason, .. } => (line, reason),
            other => (1, other.to_string()),
        };
        let pattern = &patterns[line.saturating_sub(1).min(patterns.len() - 1)];
        (
            pattern.span(),
            format!(
                "`ignore` pattern `{}` is not a valid pattern: {reason}",
                pattern.get_ref()
            ),
            "patterns use `*`, `?`, `[...]`, `**` and a leading `!`, as in .dockerignore; escape a literal `*`, `?`, `[` or `\\` with `\\`".to_owned(),
        )
    })?;
    Ok(Verify {
        binaries,
        ignore: patterns.into_iter().map(Spanned::into_inner).collect(),
        ignored,
    })
}

/// The value of `key` among `values` (each as written and its meaning),
/// or the span, message and hint of a value that is none of them
/// (`listed`, as the message names them): the hint gives the lower-case
/// spelling of a value written in another case, else `hint`.
fn one_of<T: Copy>(
    key: &str,
    written: &Spanned<String>,
    values: &[(&str, T)],
    listed: &str,
    hint: &str,
) -> Result<T, (std::ops::Range<usize>, String, String)> {
    if let Some((_, value)) = values.iter().find(|(name, _)| name == written.get_ref()) {
        return Ok(*value);
    }
    let lower = written.get_ref().trim().to_lowercase();
    let hint = match values.iter().find(|(name, _)| *name == lower) {
        Some((name, _)) => format!("the values are lower case: `{key} = \"{name}\"`"),
        None => hint.to_owned(),
    };
    Err((
        written.span(),
        format!("`{key} = \"{}\"` is not one of {listed}", written.get_ref()),
        hint,
    ))
}

/// `[cache]`, or the span, message and hint of its bad value: a `from`
/// that is not `"none"` or `"registry"`, a `ref` that is not an image
/// reference ([`parse_image_reference`]), or a `ref` without
/// `from = "registry"`.
fn parse_cache(raw: RawCache) -> Result<Cache, (std::ops::Range<usize>, String, String)> {
    let from = match &raw.from {
        Some(written) => one_of(
            "from",
            written,
            CacheFrom::VALUES,
            "\"none\" or \"registry\"",
            "\"registry\" builds each platform with the cache of its image in the last published list (or `ref`), \"none\" with its runner's own cache only (docs/configuration.md#cache)",
        )?,
        None => CacheFrom::default(),
    };
    let reference = match raw.reference {
        Some(written) => {
            if from != CacheFrom::Registry {
                return Err((
                    written.span(),
                    "`ref` is given without `from = \"registry\"`".to_owned(),
                    "add `from = \"registry\"` to [cache] to build with the cache of that image, or remove `ref`".to_owned(),
                ));
            }
            if let Err(error) = parse_image_reference(written.get_ref()) {
                return Err((
                    written.span(),
                    format!(
                        "`ref = \"{}\"` is not a valid image reference ({error})",
                        written.get_ref()
                    ),
                    "write the published list to take the cache from as [registry[:port]/]path[:tag] or path@sha256:DIGEST, e.g. `registry.example.com/team/app:main`; leave `ref` out for the list under the build's first tag".to_owned(),
                ));
            }
            Some(written.into_inner())
        }
        None => None,
    };
    Ok(Cache { from, reference })
}

impl Project {
    /// An error about the value of `[image] key` (`context`, `dockerfile`),
    /// pointing at it in the manifest (file, line, column and the line) when
    /// it is written there, else naming the file.
    pub fn error_at(&self, key: &str, message: String, hint: &str) -> ConfigError {
        #[derive(Deserialize)]
        struct Written {
            image: Option<BTreeMap<String, Spanned<toml::Value>>>,
        }
        let text = std::fs::read_to_string(&self.manifest_path).unwrap_or_default();
        let span = toml::from_str::<Written>(&text)
            .ok()
            .and_then(|written| written.image)
            .and_then(|image| image.get(key).map(Spanned::span));
        let text = if span.is_some() { text } else { String::new() };
        ConfigError::invalid(
            &self.manifest_path,
            &text,
            span,
            message,
            Some(hint.to_owned()),
        )
    }
}

/// What to write for a time limit, for the hint of a bad one.
pub const TIME_LIMIT_HINT: &str =
    "write a duration of at least 1s, such as `90m`, `2h`, `1h 30m` or `45s` (units: s, m, h, d)";

/// A time limit as written in `[image] timeout` or `--timeout`/`--deadline`:
/// a human-readable duration in the syntax of the `humantime` crate, one or
/// more `NUMBER UNIT` parts (`90m`, `1h 30m`, `45s`; units `ms`, `s`, `m`,
/// `h`, `d`, `w`, `M`, `y` and their long names), at least one second.
/// Errors: the parser's message (`` `x` is not a unit ``, ...), or that the
/// limit is zero.
pub fn parse_time_limit(text: &str) -> Result<Duration, String> {
    let limit = humantime::parse_duration(text.trim()).map_err(|error| match error {
        // humantime's own message suggests `90sec or 90ms`, which a
        // limit of at least a second would then refuse.
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            format!("`{text}` is not a duration: a unit is needed after the number")
        }
        // Its list of units is longer than the hint's, and less clear.
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("`{text}` is not a duration: `{unit}` is not a unit")
        }
        error => format!("`{text}` is not a duration: {error}"),
    })?;
    if limit < Duration::from_secs(1) {
        return Err(format!("`{text}` is less than a second"));
    }
    Ok(limit)
}

/// The table holding the unknown key at `segments`, with the keys it may hold.
fn table_of(segments: &[Segment]) -> Table<'static> {
    let parent = dotted_key(&segments[..segments.len().saturating_sub(1)]);
    let (known, required): (&[&str], &[&str]) = match parent.as_str() {
        "" => (TOP_KEYS, &["image"]),
        "image" => (IMAGE_KEYS, &["name", "platforms"]),
        "tags" => (TAGS_KEYS, &[]),
        "test" => (TEST_KEYS, &["run"]),
        "verify" => (VERIFY_KEYS, &[]),
        "cache" => (CACHE_KEYS, &[]),
        secret if secret.starts_with("image.secrets.") => (SECRET_KEYS, &[]),
        _ => (&[], &[]),
    };
    let name = match parent.as_str() {
        "" => String::new(),
        parent => format!("[{parent}]"),
    };
    Table {
        name,
        known,
        required,
    }
}

/// Whether `tag` is a valid image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Parses an image reference, `[registry[:port]/]path[:tag][@sha256:digest]`,
/// as Docker does: `oci_client::Reference` (distribution/reference's
/// grammar; no registry means Docker Hub, one-component names under
/// `library/`; no tag leaves `latest`), and, as `docker pull Team/app`
/// does, a first component with upper-case letters and no `.` or `:` is
/// refused instead of read as a registry host. The one parser of image
/// references: `[image] name`, `mab init --image`, `mab inspect REF` and
/// the registry client use it. The error is the parser's reason.
pub fn parse_image_reference(text: &str) -> Result<oci_client::Reference, String> {
    let upper_case_first = text.split_once('/').is_some_and(|(first, _)| {
        !first.contains(['.', ':']) && first.chars().any(|c| c.is_ascii_uppercase())
    });
    const NOT_LOWERCASE: &str = "invalid reference format: repository name must be lowercase";
    if upper_case_first {
        return Err(NOT_LOWERCASE.to_owned());
    }
    text.parse().map_err(|error: oci_client::ParseError| {
        // Docker names this cause; the parser does not.
        let path = match text.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
            _ => text,
        };
        let repository = path.split([':', '@']).next().unwrap_or(path);
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            NOT_LOWERCASE.to_owned()
        } else {
            error.to_string()
        }
    })
}

/// The path component `mab init` writes into the image name it cannot
/// know (`registry.example.com/CHANGE-ME/app`): a name holding it is
/// refused, so that a new `mab.toml` fails at that line until edited
/// instead of publishing somewhere nobody chose.
pub const INIT_PLACEHOLDER: &str = "CHANGE-ME";

/// Checks an image name (`[registry[:port]/]path`, what `[image] name` and
/// `mab init --image` take) with the image reference parser the registry
/// client uses ([`parse_image_reference`]), and refuses a tag or digest: the name
/// is a repository. The error is a message and a hint.
pub fn check_repository(name: &str) -> Result<(), (String, String)> {
    const EXAMPLE: &str = "e.g. `registry.example.com/team/app` or `localhost:5000/app`";
    if name.trim().is_empty() {
        return Err((
            "the image name is empty".to_owned(),
            format!("set `name` to the repository to publish to, {EXAMPLE}"),
        ));
    }
    let bad = |why: &str, hint: String| Err((format!("image name `{name}` {why}"), hint));
    if name
        .split('/')
        .any(|component| component == INIT_PLACEHOLDER)
    {
        return bad(
            "is the placeholder `mab init` wrote",
            format!("set `name` to the repository to publish to, {EXAMPLE}"),
        );
    }
    if name.contains('@') {
        return bad(
            "carries a digest",
            "name the repository only; mab publishes the image list and its tags".to_owned(),
        );
    }
    let reference = match parse_image_reference(name) {
        Ok(reference) => reference,
        Err(error) => {
            // Only the hint is chosen here; the parser decided.
            let (registry, path) = match name.split_once('/') {
                Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                    (Some(first), rest)
                }
                _ => (None, name),
            };
            if path.chars().any(|c| c.is_ascii_uppercase()) {
                let lower = path.to_ascii_lowercase();
                let lower =
                    registry.map_or(lower.clone(), |registry| format!("{registry}/{lower}"));
                return bad(
                    "has upper-case letters",
                    format!("repository names are lowercase: `{lower}`"),
                );
            }
            return bad(
                &format!("is not a valid image reference ({error})"),
                format!(
                    "write it as [registry[:port]/]path, path components of lowercase letters and digits joined by `.`, `_`, `__` or dashes, {EXAMPLE}"
                ),
            );
        }
    };
    // The parser fills in `latest` for a name without a tag: a tag was
    // written only when the name ends with it.
    let written_tag = reference
        .tag()
        .and_then(|tag| name.strip_suffix(tag)?.strip_suffix(':'));
    if let Some(repository) = written_tag {
        return bad(
            "carries a tag",
            format!(
                "write `name = \"{repository}\"`; tags come from git, `[tags] extra` and `--tag`"
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::assert_reported;

    const PATH: &str = "/src/app/mab.toml";

    fn parse(text: &str) -> Result<Project, ConfigError> {
        parse_project(Path::new(PATH), text)
    }

    #[test]
    fn full_manifest() {
        let project = parse(
            r#"
[image]
name = "registry.example.com/team/app"
platforms = ["linux/amd64", "linux/aarch64", "linux/ppc64le", "linux/arm64/v8"]
context = "./src/.."
dockerfile = "docker/Dockerfile.release"
target = "runtime"
emulation = false
fallback = false
timeout = "1h 30m"

[image.args]
GREETING = "hello"

[tags]
extra = ["edge", "nightly", "edge"]
"#,
        )
        .unwrap();
        assert_eq!(project.manifest_path, Path::new(PATH));
        assert_eq!(project.image, "registry.example.com/team/app");
        let platforms: Vec<String> = project.platforms.iter().map(|p| p.to_string()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64", "linux/ppc64le"]);
        assert_eq!(project.context, Path::new("/src/app"));
        assert_eq!(
            project.dockerfile.as_deref(),
            Some(Path::new("docker/Dockerfile.release"))
        );
        assert_eq!(project.target.as_deref(), Some("runtime"));
        assert!(!project.emulation);
        assert!(!project.fallback);
        assert_eq!(project.timeout, Some(Duration::from_secs(90 * 60)));
        assert_eq!(
            project.args,
            BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())])
        );
        assert_eq!(project.extra_tags, ["edge", "nightly"]);
        assert_eq!(
            project.warnings,
            [
                "/src/app/mab.toml:4:29: `linux/aarch64` read as `linux/arm64`",
                "/src/app/mab.toml:4:63: platform `linux/arm64` is listed twice; building it once",
            ]
        );
    }

    #[test]
    fn secrets_name_sources_and_where_they_are_written() {
        let text = "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n\n[image.secrets]\nnpm = { env = \"NPM_TOKEN\" }\nnetrc = { src = \"~/.netrc\" }\n";
        let project = parse(text).unwrap();
        let npm = &project.secrets["npm"];
        assert_eq!(npm.source, SecretSource::Env("NPM_TOKEN".to_owned()));
        assert_eq!((npm.location.line, npm.location.column), (6, 7));
        let netrc = &project.secrets["netrc"];
        assert_eq!(netrc.source, SecretSource::File(PathBuf::from("~/.netrc")));
        assert_eq!((netrc.location.line, netrc.location.column), (7, 9));
        // (entry, message)
        let bad = [
            ("tok = { }", "secret `tok` needs one source: `src` or `env`"),
            (
                "tok = { src = \"a\", env = \"B\" }",
                "secret `tok` needs one source: `src` or `env`",
            ),
            (
                "tok = { env = \"\" }",
                "secret `tok` needs one source: `src` or `env`",
            ),
        ];
        for (entry, message) in bad {
            let text = format!("[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[image.secrets]\n{entry}\n");
            let error = parse(&text).unwrap_err();
            assert_eq!(error.message(), message, "{entry}");
            assert_eq!(error.location().unwrap().line, 5, "{entry}");
        }
        // A typo of `src` is an error, as other typos are.
        let text = "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[image.secrets]\ntok = { sr = \"f\" }\n";
        let error = parse(text).unwrap_err();
        assert!(error.to_string().contains("did you mean `src`"), "{error}");
    }

    #[test]
    fn smoke_test_table() {
        const IMAGE: &str = "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n";
        let project = parse(&format!(
            "{IMAGE}[test]\nrun = [\"/bin/busybox\", \"echo\", \"ok\"]\nexpect = \"^o+k$\"\ntimeout = \"1m 30s\"\n"
        ))
        .unwrap();
        let test = project.test.unwrap();
        assert_eq!(test.run, ["/bin/busybox", "echo", "ok"]);
        assert_eq!(test.expect.unwrap().0.as_str(), "^o+k$");
        assert_eq!(test.timeout, Duration::from_secs(90));
        let project = parse(&format!("{IMAGE}[test]\nrun = [\"/app\"]\n")).unwrap();
        let test = project.test.unwrap();
        assert_eq!((test.expect, test.timeout), (None, DEFAULT_TEST_TIMEOUT));
        assert_eq!(parse(IMAGE).unwrap().test, None);
        // (table's lines, start of the message, line and column)
        let bad = [
            ("run = []", "[test] `run` is empty", (6, 7)),
            (
                "run = [\"\", \"--version\"]",
                "[test] `run` names no program",
                (6, 7),
            ),
            ("expect = \"x\"", "[test] has no `run`", (5, 1)),
            (
                "run = [\"/app\", 1]",
                "[test] `run`: invalid type: integer `1`, expected a string",
                (6, 16),
            ),
            (
                "run = \"/app --version\"",
                "[test] `run`: invalid type: string \"/app --version\", expected a list",
                (6, 7),
            ),
            (
                "run = [\"/app\"]\nexpect = \"(v\"",
                "[test] `expect` is not a regular expression: unclosed group at character 1 of the pattern",
                (7, 10),
            ),
            (
                "run = [\"/app\"]\nexpect = 'v[0-9]+ (\\w+'",
                "[test] `expect` is not a regular expression: unclosed group at character 9 of the pattern",
                (7, 10),
            ),
            (
                "run = [\"/app\"]\nexpect = '\\w{1000}\\w{1000}'",
                "[test] `expect` is not a regular expression: the pattern compiles to more than 10 MiB, the regex crate's limit (a repetition such as `\\w{1000}` grows it fast)",
                (7, 10),
            ),
            (
                "run = [\"/app\"]\ntimeout = 5",
                "[test] `timeout`: invalid type: integer `5`, expected a string",
                (7, 11),
            ),
            (
                "run = [\"/app\"]\ntimeout = \"500ms\"",
                "[test] `timeout`: `500ms` is less than a second",
                (7, 11),
            ),
            (
                "run = [\"/app\"]\ntimeout = \"soon\"",
                "[test] `timeout`: `soon` is not a duration",
                (7, 11),
            ),
        ];
        for (table, message, (line, column)) in bad {
            let error = parse(&format!("{IMAGE}\n[test]\n{table}\n")).unwrap_err();
            assert!(
                error.message().starts_with(message),
                "{table}: {:?}",
                error.message()
            );
            let location = error.location().unwrap();
            assert_eq!(
                (location.line, location.column),
                (line, column),
                "{table}: {error}"
            );
        }
        // A typo of `expect` is an error, as other typos are.
        let error = parse(&format!(
            "{IMAGE}[test]\nrun = [\"/app\"]\nexpcet = \"ok\"\n"
        ))
        .unwrap_err();
        assert!(
            error.to_string().contains("did you mean `expect`"),
            "{error}"
        );
    }

    #[test]
    fn defaults() {
        let project = parse("[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n").unwrap();
        assert_eq!(project.context, Path::new("/src/app"));
        assert_eq!(project.dockerfile, None);
        assert_eq!(project.target, None);
        assert!(project.emulation);
        assert!(project.fallback);
        assert_eq!(project.timeout, None);
        assert!(project.args.is_empty());
        assert!(project.labels.is_empty());
        assert!(project.annotations.is_empty());
        assert!(project.extra_tags.is_empty());
        assert_eq!(project.verify, Verify::default());
        assert_eq!(project.verify.binaries, Binaries::Error);
        assert!(project.warnings.is_empty());
    }

    /// `[cache]`: absent is no registry cache; `from` and `ref` as written.
    #[test]
    fn cache_takes_its_source_and_reference() {
        const IMAGE: &str = "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n";
        // ([cache] table, expected)
        let cases = [
            ("", Cache::default()),
            ("[cache]\n", Cache::default()),
            ("[cache]\nfrom = \"none\"\n", Cache::default()),
            (
                "[cache]\nfrom = \"registry\"\n",
                Cache {
                    from: CacheFrom::Registry,
                    reference: None,
                },
            ),
            (
                "[cache]\nfrom = \"registry\"\nref = \"localhost:5000/app@sha256:0123456789012345678901234567890123456789012345678901234567890123\"\n",
                Cache {
                    from: CacheFrom::Registry,
                    reference: Some("localhost:5000/app@sha256:0123456789012345678901234567890123456789012345678901234567890123".to_owned()),
                },
            ),
        ];
        for (table, expected) in cases {
            let project = parse(&format!("{IMAGE}{table}")).unwrap();
            assert_eq!(project.cache, expected, "{table}");
        }
    }

    #[test]
    fn verify_takes_its_mode_and_absolute_patterns() {
        let project = parse("[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[verify]\nbinaries = \"warn\"\nignore = [\"/usr/share/qemu/**\", \"!/usr/share/qemu/keep\"]\n").unwrap();
        assert_eq!(
            project.verify,
            Verify {
                binaries: Binaries::Warn,
                ignore: vec![
                    "/usr/share/qemu/**".to_owned(),
                    "!/usr/share/qemu/keep".to_owned()
                ],
                ..Verify::default()
            }
        );
        // The patterns are compiled once, here; `! /opt/x` is an exception
        // as in .dockerignore (the body is trimmed after the `!`).
        let ignored = &project.verify.ignored;
        assert!(ignored.is_excluded("/usr/share/qemu/x86_64/qemu"));
        assert!(!ignored.is_excluded("/usr/share/qemu/keep"));
        let project = parse("[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[verify]\nignore = [\"/opt/**\", \"! /opt/x\"]\n").unwrap();
        assert!(project.verify.ignored.is_excluded("/opt/y"));
        assert!(!project.verify.ignored.is_excluded("/opt/x"));
        let error = parse("[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[verify]\nbinaries = \"warn\"\nignroe = []\n").unwrap_err();
        assert_eq!(
            error.message(),
            "unknown key `ignroe` under [verify]; did you mean `ignore`?"
        );
    }

    #[test]
    fn context_outside_the_manifest_dir() {
        let cases = [
            ("..", "/src"),
            ("/abs/ctx", "/abs/ctx"),
            ("sub/dir", "/src/app/sub/dir"),
        ];
        for (context, expected) in cases {
            let project = parse(&format!(
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\ncontext = \"{context}\"\n"
            ))
            .unwrap();
            assert_eq!(project.context, Path::new(expected), "{context}");
        }
    }

    /// Keys not close to a known one of their table (the distance of
    /// `closest`) are warnings.
    #[test]
    fn unknown_keys_are_warnings() {
        let project = parse(
            "colour = 1\n[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\nlabels = {}\n[tags]\nlatest = true\n[test]\nrun = [\"/app\"]\n  colour = \"blue\"\n[verify]\ncolour = \"blue\"\n",
        )
        .unwrap();
        assert_eq!(
            project.warnings,
            [
                "/src/app/mab.toml:1:1: unknown key `colour` is ignored",
                "/src/app/mab.toml:5:1: unknown key `image.labels` is ignored",
                "/src/app/mab.toml:7:1: unknown key `tags.latest` is ignored",
                "/src/app/mab.toml:10:3: unknown key `test.colour` is ignored",
                "/src/app/mab.toml:12:1: unknown key `verify.colour` is ignored",
            ]
        );
    }

    /// (manifest, message, `FILE:LINE:COL`, offending line, carets, hint):
    /// a key or table close to a known one is an error pointing at it; a
    /// missing required one names its near miss.
    #[test]
    fn near_misses_are_errors() {
        const NAME: &str = "[image]\nname = \"app\"\n";
        const GOOD: &str = "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n";
        let cases = [
            (
                format!("{GOOD}taget = \"runtime\"\n"),
                "unknown key `taget` under [image]; did you mean `target`?",
                ":4:1",
                "taget = \"runtime\"",
                "^^^^^",
                "rename it to `target`, or remove it",
            ),
            (
                format!("{GOOD}Dockerfile = \"Dockerfile\"\n"),
                "unknown key `Dockerfile` under [image]; did you mean `dockerfile`?",
                ":4:1",
                "Dockerfile = \"Dockerfile\"",
                "^^^^^^^^^^",
                "rename it to `dockerfile`",
            ),
            (
                format!("{GOOD}arg = {{ A = \"1\" }}\n"),
                "unknown key `arg` under [image]; did you mean `args`?",
                ":4:1",
                "arg = { A = \"1\" }",
                "^^^",
                "rename it to `args`",
            ),
            (
                format!("{GOOD}[image.arg]\nA = \"1\"\n"),
                "unknown table `[image.arg]`; did you mean `[image.args]`?",
                ":4:8",
                "[image.arg]",
                "       ^^^",
                "rename it to `[image.args]`",
            ),
            (
                format!("{GOOD}[tag]\nextra = [\"edge\"]\n"),
                "unknown table `[tag]`; did you mean `[tags]`?",
                ":4:2",
                "[tag]",
                " ^^^",
                "rename it to `[tags]`",
            ),
            (
                format!("{GOOD}[tags]\nextras = [\"edge\"]\n"),
                "unknown key `extras` under [tags]; did you mean `extra`?",
                ":5:1",
                "extras = [\"edge\"]",
                "^^^^^^",
                "rename it to `extra`",
            ),
            // Both written: the misspelt one is still an error.
            (
                format!("{GOOD}platfroms = []\n"),
                "unknown key `platfroms` under [image]; did you mean `platforms`?",
                ":4:1",
                "platfroms = []",
                "^^^^^^^^^",
                "rename it to `platforms`",
            ),
            (
                format!("{NAME}platfroms = [\"linux/amd64\"]\n"),
                "missing required key `platforms` under [image]; `platfroms` (3:1) looks like it",
                ":3:1",
                "platfroms = [\"linux/amd64\"]",
                "^^^^^^^^^",
                "rename `platfroms` to `platforms`",
            ),
            (
                "[image]\nnmae = \"app\"\nplatforms = [\"linux/amd64\"]\n".to_owned(),
                "missing required key `name` under [image]; `nmae` (2:1) looks like it",
                ":2:1",
                "nmae = \"app\"",
                "^^^^",
                "rename `nmae` to `name`",
            ),
            (
                "[imgae]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n".to_owned(),
                "missing required table `[image]`; `[imgae]` (1:2) looks like it",
                ":1:2",
                "[imgae]",
                " ^^^^^",
                "rename `[imgae]` to `[image]`",
            ),
        ];
        for (text, message, position, line, carets, hint) in cases {
            let error = parse(&text).expect_err(&text);
            assert_reported(&text, &error, PATH, (message, position, line, carets, hint));
        }
    }

    /// (manifest, message, `FILE:LINE:COL`, offending line, carets, hint)
    #[test]
    fn invalid_manifests_point_at_the_value() {
        let cases = [
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\", \"linux/amd46\"]\n",
                "unknown architecture `amd46` in platform `linux/amd46`",
                ":3:29",
                "platforms = [\"linux/amd64\", \"linux/amd46\"]",
                "                            ^^^^^^^^^^^^^",
                "did you mean `linux/amd64`?",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = []\n",
                "`platforms` is empty",
                ":3:13",
                "platforms = []",
                "            ^^",
                "list at least one platform",
            ),
            (
                "[image]\nname = \"\"\nplatforms = [\"linux/amd64\"]\n",
                "the image name is empty",
                ":2:8",
                "name = \"\"",
                "       ^^",
                "set `name` to the repository",
            ),
            (
                "[image]\nname = \"Team/App\"\nplatforms = [\"linux/amd64\"]\n",
                "image name `Team/App` has upper-case letters",
                ":2:8",
                "name = \"Team/App\"",
                "       ^^^^^^^^^^",
                "repository names are lowercase: `team/app`",
            ),
            (
                "[image]\nname = \"registry.example.com/app:1.0\"\nplatforms = [\"linux/amd64\"]\n",
                "image name `registry.example.com/app:1.0` carries a tag",
                ":2:8",
                "name = \"registry.example.com/app:1.0\"",
                "       ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
                "write `name = \"registry.example.com/app\"`",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[tags]\nextra = [\"ok\", \"-bad\"]\n",
                "`-bad` is not a valid tag",
                ":5:16",
                "extra = [\"ok\", \"-bad\"]",
                "               ^^^^^^",
                "a tag is 1 to 128",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\ntarget = \"\"\n",
                "`target` is empty",
                ":4:10",
                "target = \"\"",
                "         ^^",
                "name a build stage",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = \"linux/amd64\"\n",
                "[image] `platforms`: invalid type: string \"linux/amd64\", expected a list",
                ":3:13",
                "platforms = \"linux/amd64\"",
                "            ^^^^^^^^^^^^^",
                "write the platforms as a list of strings in square brackets",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\nemulation = \"no\"\n",
                "[image] `emulation`: invalid type: string \"no\", expected a boolean",
                ":4:13",
                "emulation = \"no\"",
                "            ^^^^",
                "`true` or `false`",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\nfallback = 0\n",
                "[image] `fallback`: invalid type: integer `0`, expected a boolean",
                ":4:12",
                "fallback = 0",
                "           ^",
                "`true` or `false`",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\ntimeout = \"90 minuets\"\n",
                "[image] `timeout`: `90 minuets` is not a duration: `minuets` is not a unit",
                ":4:11",
                "timeout = \"90 minuets\"",
                "          ^^^^^^^^^^^^",
                "such as `90m`",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\ntimeout = \"90\"\n",
                "[image] `timeout`: `90` is not a duration: a unit is needed after the number",
                ":4:11",
                "timeout = \"90\"",
                "          ^^^^",
                "such as `90m`",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\ntimeout = \"0s\"\n",
                "[image] `timeout`: `0s` is less than a second",
                ":4:11",
                "timeout = \"0s\"",
                "          ^^^^",
                "such as `90m`",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\ntimeout = 90\n",
                "[image] `timeout`: invalid type: integer `90`, expected a string",
                ":4:11",
                "timeout = 90",
                "          ^^",
                "with its unit in double quotes, e.g. `timeout = \"90m\"`",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[image.args]\nN = 3\n",
                "[image.args] `N`: invalid type: integer `3`, expected a string",
                ":5:5",
                "N = 3",
                "    ^",
                "double quotes",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[labels]\n\"org.example.n\" = 3\n",
                "[labels] `org.example.n`: 3 is not a string",
                ":5:19",
                "\"org.example.n\" = 3",
                "                  ^",
                "double quotes",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[annotations]\n\"a b\" = \"x\"\n",
                "[annotations] key \"a b\" holds whitespace or a control character",
                ":5:9",
                "\"a b\" = \"x\"",
                "        ^^^",
                "reverse domain notation",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"\n",
                "unclosed array, expected `]`",
                ":3:27",
                "platforms = [\"linux/amd64\"",
                "                          ^",
                "valid TOML",
            ),
            // CRLF line ends: an unterminated string ends at the `\r\n`.
            (
                "[image]\r\nname = \"127.0.0.1:5000/x\r\nplatforms = []\r\n",
                "invalid basic string, expected `\"`",
                ":2:25",
                "name = \"127.0.0.1:5000/x",
                "                        ^",
                "valid TOML",
            ),
            (
                "[image]\r\nname = \"Team/App\"\r\nplatforms = [\"linux/amd64\"]\r\n",
                "image name `Team/App` has upper-case letters",
                ":2:8",
                "name = \"Team/App\"",
                "       ^^^^^^^^^^",
                "repository names are lowercase: `team/app`",
            ),
            (
                "[image]\r\nname = \"app\"\r\nplatforms = [\"linux/amd64\"\r\n",
                "unclosed array, expected `]`",
                ":3:27",
                "platforms = [\"linux/amd64\"",
                "                          ^",
                "valid TOML",
            ),
            (
                "[image]\nplatforms = [\"linux/amd64\"]\n",
                "[image] has no `name`",
                ":1:1",
                "[image]",
                "^^^^^^^",
                "add `name = ",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[verify]\nbinaries = \"fatal\"\n",
                "`binaries = \"fatal\"` is not one of \"error\", \"warn\" or \"off\"",
                ":5:12",
                "binaries = \"fatal\"",
                "           ^^^^^^^",
                "\"warn\" publishes it with a warning",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[verify]\nbinaries = \"Warn\"\n",
                "`binaries = \"Warn\"` is not one of \"error\", \"warn\" or \"off\"",
                ":5:12",
                "binaries = \"Warn\"",
                "           ^^^^^^",
                "the values are lower case: `binaries = \"warn\"`",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[verify]\nignore = [\"bin/busybox\"]\n",
                "`ignore` pattern `bin/busybox` is not an absolute path",
                ":5:11",
                "ignore = [\"bin/busybox\"]",
                "          ^^^^^^^^^^^^^",
                "from its root: `/bin/busybox`",
            ),
            (
                "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n[verify]\nignore = [\"/bin/[a\"]\n",
                "`ignore` pattern `/bin/[a` is not a valid pattern: a `[` character class is not closed by `]`",
                ":5:11",
                "ignore = [\"/bin/[a\"]",
                "          ^^^^^^^^^",
                "as in .dockerignore",
            ),
        ];
        for (text, message, position, line, carets, hint) in cases {
            let error = parse(text).expect_err(text);
            assert_reported(text, &error, PATH, (message, position, line, carets, hint));
        }
    }

    #[test]
    fn missing_image_table() {
        let error = parse("[tags]\nextra = []\n").unwrap_err();
        assert_eq!(error.message(), "/src/app/mab.toml has no [image] table");
        assert!(error.hint().unwrap().contains("[image]"));
    }

    #[test]
    fn missing_file() {
        let error = load_project(Path::new("/nonexistent/dir/mab.toml")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "error: could not read /nonexistent/dir/mab.toml: No such file or directory\n\
             hint: run `mab init` to write a mab.toml, or point `--manifest-path` at an existing one"
        );
    }

    #[test]
    fn repositories() {
        let valid = [
            "app",
            "team/app",
            "registry.example.com/team/app",
            "localhost:5000/app",
            "127.0.0.1:5000/a/b/c",
            "Registry.Example.com/app",
            "team/a.b_c__d--e/f",
        ];
        for name in valid {
            assert_eq!(check_repository(name), Ok(()), "{name}");
        }
        let invalid = [
            ("", "is empty"),
            (
                "registry.example.com/CHANGE-ME/app",
                "is the placeholder `mab init` wrote",
            ),
            ("app:1.0", "carries a tag"),
            ("localhost:5000/app:1.0", "carries a tag"),
            ("app@sha256:abc", "carries a digest"),
            ("Team/app", "upper-case"),
            ("team//app", "is not a valid image reference"),
            ("team/app/", "is not a valid image reference"),
            ("team/-app", "is not a valid image reference"),
            ("team/a..b", "is not a valid image reference"),
            ("team/a___b", "is not a valid image reference"),
            ("bad_host.com:5000/app", "is not a valid image reference"),
            ("host.com:/app", "is not a valid image reference"),
            ("team app", "is not a valid image reference"),
            ("[::1]:5000/app", "is not a valid image reference"),
        ];
        for (name, why) in invalid {
            let (message, _hint) = check_repository(name).expect_err(name);
            assert!(message.contains(why), "{name}: {message}");
        }
    }

    #[test]
    fn finds_the_nearest_manifest() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b/c");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(find_manifest(&nested), None);
        std::fs::write(root.path().join("a/mab.toml"), "").unwrap();
        assert_eq!(find_manifest(&nested), Some(root.path().join("a/mab.toml")));
        std::fs::write(root.path().join("a/b/c/mab.toml"), "").unwrap();
        assert_eq!(find_manifest(&nested), Some(nested.join("mab.toml")));
        // A directory named mab.toml is not a manifest.
        std::fs::create_dir(root.path().join("a/b/mab.toml")).unwrap();
        std::fs::remove_file(nested.join("mab.toml")).unwrap();
        assert_eq!(find_manifest(&nested), Some(root.path().join("a/mab.toml")));
    }

    #[test]
    fn errors_about_a_key_point_at_it() {
        let root = tempfile::tempdir().unwrap();
        let manifest = root.path().join("mab.toml");
        let write = |extra: &str| {
            std::fs::write(
                &manifest,
                format!("[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n{extra}"),
            )
            .unwrap();
            load_project(&manifest).unwrap()
        };
        let root_dir = root.path().display().to_string();

        let project = write("");
        assert_eq!(project.dockerfile, None);
        let error = project.error_at(
            "dockerfile",
            "the Dockerfile is missing".to_owned(),
            "write one",
        );
        assert_eq!(
            error.to_string(),
            format!("error: the Dockerfile is missing\n --> {root_dir}/mab.toml\nhint: write one")
        );

        let project = write("dockerfile = \"../build/Dockerfile\"\n");
        assert_eq!(
            project.dockerfile.as_deref(),
            Some(Path::new("../build/Dockerfile"))
        );
        let error = project.error_at(
            "dockerfile",
            "the Dockerfile is missing".to_owned(),
            "write one",
        );
        assert_reported(
            "",
            &error,
            &manifest.display().to_string(),
            (
                "the Dockerfile is missing",
                ":4:14",
                "dockerfile = \"../build/Dockerfile\"",
                "             ^^^^^^^^^^^^^^^^^^^^^",
                "write one",
            ),
        );
    }

    /// A repository name with upper-case letters is refused with Docker's
    /// reason, wherever they are; a tag may have them.
    #[test]
    fn an_upper_case_repository_is_refused_with_dockers_reason() {
        for text in [
            "Team/app",
            "127.0.0.1:5000/Team/App:1.0",
            "localhost/App",
            "app/Web@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(
                parse_image_reference(text).unwrap_err(),
                "invalid reference format: repository name must be lowercase",
                "{text}"
            );
        }
        assert!(parse_image_reference("127.0.0.1:5000/team/app:Release-1").is_ok());
        assert_eq!(
            parse_image_reference("127.0.0.1:5000/team/app:-bad").unwrap_err(),
            "invalid reference format"
        );
    }

    #[test]
    fn reads_labels_and_annotations() {
        let project = parse(
            "[image]\nname = \"app\"\nplatforms = [\"linux/amd64\"]\n\
             [labels]\n\"org.opencontainers.image.title\" = \"App\"\nteam = \"build\"\n\
             [annotations]\n\"org.opencontainers.image.vendor\" = \"Example\"\n",
        )
        .unwrap();
        let pairs = |map: &BTreeMap<String, String>| -> Vec<(String, String)> {
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        assert_eq!(
            pairs(&project.labels),
            [
                (
                    "org.opencontainers.image.title".to_owned(),
                    "App".to_owned()
                ),
                ("team".to_owned(), "build".to_owned())
            ]
        );
        assert_eq!(
            pairs(&project.annotations),
            [(
                "org.opencontainers.image.vendor".to_owned(),
                "Example".to_owned()
            )]
        );
    }

    #[test]
    fn label_keys() {
        // (key, accepted)
        let cases = [
            ("org.opencontainers.image.source", true),
            ("team", true),
            ("com.example/x_y-z", true),
            ("", false),
            (" ", false),
            ("a b", false),
            ("a\tb", false),
            ("a=b", false),
            ("a\u{7}", false),
        ];
        for (key, accepted) in cases {
            assert_eq!(check_label_key(key).is_ok(), accepted, "{key:?}");
        }
    }
}
