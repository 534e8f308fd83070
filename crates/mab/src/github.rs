//! GitHub Actions: what `mab build` writes for a workflow when
//! `GITHUB_ACTIONS=true` (docs/ci.md).
//!
//! [`Actions`] is an observer ([`crate::progress::observe`]) of the build's
//! events. It writes:
//! - to stderr, beside the progress lines: every line mab prints inside
//!   `::stop-commands::TOKEN` (a random token per build), so that no build
//!   output can run a workflow command; each platform's build log in a
//!   `::group::<platform> on <runner>` when its job ends; at the end each
//!   failure as an `::error` annotation (`::warning` when the platform was
//!   built elsewhere after it). Commands are written as GitHub's toolkit
//!   writes them (`@actions/core`, `command.ts`): `%`, `\r`, `\n` escaped
//!   in messages, and also `:` and `,` in properties.
//!   With `--progress json` nothing goes to stderr: JSON lines cannot
//!   hold a command ([`mab_events::json_line`]). Build log lines are in
//!   the groups only ([`crate::progress::Terminal::groups`]); a job that
//!   never ended gets its group, `… (stopped)`, when the build ends.
//! - to `$GITHUB_OUTPUT`, at the end: `image`, `metadata` (the metadata
//!   document), and, when a list was published, `digest` and `tags` (full
//!   references, one per line), each in the multiline form
//!   `name<<DELIMITER` with a random delimiter that the value does not
//!   hold (GitHub's "Multiline strings").
//! - to `$GITHUB_STEP_SUMMARY`, at the end: a Markdown table of the
//!   platforms, the list digest and tags, and the failure, if any.
//!
//! Secret values never reach events (`--secret` values and build
//! arguments are not reported; the metadata document holds digests of
//! build arguments), so none of this can echo them.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mab_config::Platform;
use mab_events::{Event, Outcome, Reporter};
use serde_json::Value;

use crate::environment::Environment;

/// The GitHub Actions observer of one build (module docs).
pub struct Actions {
    /// The `::stop-commands::` token: 32 random hex digits.
    token: String,
    /// `$GITHUB_OUTPUT` and `$GITHUB_STEP_SUMMARY`, when set.
    output: Option<PathBuf>,
    summary: Option<PathBuf>,
    /// Whether workflow commands go to stderr: not with `--progress json`,
    /// whose stderr holds only JSON lines.
    stream: bool,
    state: Mutex<State>,
}

/// What the observer gathered so far.
#[derive(Default)]
struct State {
    /// `[image] name`, from the plan.
    image: Option<String>,
    /// The metadata document last written ([`Actions::metadata_written`]).
    metadata: Option<String>,
    /// Each running job's log lines (steps and their output), by platform
    /// and runner, until the job ends.
    logs: HashMap<(Platform, String), Vec<String>>,
    /// Each job that failed: platform, runner, message, in order.
    failures: Vec<(Platform, String, String)>,
    /// The platforms whose job ended well.
    finished: HashSet<Platform>,
}

impl Actions {
    /// The observer when `GITHUB_ACTIONS=true`, else `None`; `stream`:
    /// whether workflow commands may go to stderr. With `stream`, the
    /// commands stop here (until the observer is dropped).
    pub fn start(environment: &Environment, stream: bool) -> Option<Arc<Actions>> {
        if !environment.github_actions {
            return None;
        }
        let actions = Actions {
            token: random_hex(),
            output: environment.github_output.clone(),
            summary: environment.github_step_summary.clone(),
            stream,
            state: Mutex::new(State::default()),
        };
        actions.write_stderr(&format!("::stop-commands::{}\n", actions.token));
        Some(Arc::new(actions))
    }

    /// Keeps `json`, the metadata document just written (the same as
    /// `--metadata-file` holds), for `$GITHUB_OUTPUT` and the summary.
    pub fn metadata_written(&self, json: &str) {
        self.lock().metadata = Some(json.to_owned());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `text` to stderr in one piece (the lock keeps other
    /// threads' lines out of it), when commands are streamed.
    fn write_stderr(&self, text: &str) {
        if self.stream {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }

    /// Writes `commands` (whole lines) with the commands resumed around
    /// them, then stops them again.
    fn write_commands(&self, commands: &str) {
        let token = &self.token;
        self.write_stderr(&format!(
            "::{token}::\n{commands}::stop-commands::{token}\n"
        ));
    }

    /// The job of `platform` on `runner` ended: its log as a group, with
    /// `failure`'s message last when it failed.
    fn job_ended(&self, platform: &Platform, runner: &str, failure: Option<&str>) {
        let mut lines = {
            let mut state = self.lock();
            match failure {
                Some(message) => {
                    state
                        .failures
                        .push((platform.clone(), runner.to_owned(), message.to_owned()));
                }
                None => {
                    state.finished.insert(platform.clone());
                }
            }
            state
                .logs
                .remove(&(platform.clone(), runner.to_owned()))
                .unwrap_or_default()
        };
        if let Some(message) = failure {
            lines.push(format!("failed: {message}"));
        }
        self.write_commands(&group(
            &self.token,
            &format!("{platform} on {runner}"),
            &lines,
        ));
    }

    /// The groups of the jobs that never ended (the build was stopped,
    /// or failed elsewhere first): each titled `<platform> on <runner>
    /// (stopped)`, in platform order; their logs are forgotten.
    fn stopped_groups(&self) -> String {
        let mut logs: Vec<_> = self.lock().logs.drain().collect();
        logs.sort_by(|(a, _), (b, _)| a.0.to_string().cmp(&b.0.to_string()).then(a.1.cmp(&b.1)));
        logs.iter()
            .map(|((platform, runner), lines)| {
                group(
                    &self.token,
                    &format!("{platform} on {runner} (stopped)"),
                    lines,
                )
            })
            .collect()
    }

    /// The build ended as `outcome`: the stopped jobs' groups, the
    /// annotations, `$GITHUB_OUTPUT` and `$GITHUB_STEP_SUMMARY`. A file
    /// that cannot be written is a warning on stderr.
    fn ended(&self, outcome: &Outcome) {
        let stopped = self.stopped_groups();
        if !stopped.is_empty() {
            self.write_commands(&stopped);
        }
        let (image, metadata, failures, finished) = {
            let state = self.lock();
            (
                state.image.clone(),
                state.metadata.clone(),
                state.failures.clone(),
                state.finished.clone(),
            )
        };
        let document: Option<Value> = metadata
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok());
        let annotations = annotations(&failures, &finished, outcome);
        if !annotations.is_empty() {
            self.write_commands(&annotations);
        }
        let image = document
            .as_ref()
            .and_then(|document| document["image"].as_str().map(str::to_owned))
            .or(image);
        let files = [
            (
                "GITHUB_OUTPUT",
                &self.output,
                outputs(image.as_deref(), document.as_ref(), metadata.as_deref()),
            ),
            (
                "GITHUB_STEP_SUMMARY",
                &self.summary,
                summary(
                    image.as_deref(),
                    document.as_ref(),
                    outcome,
                    &outcome
                        .error
                        .as_ref()
                        .map(crate::failure::render)
                        .unwrap_or_default(),
                ),
            ),
        ];
        for (name, path, text) in files {
            let Some(path) = path else { continue };
            if let Err(error) = append(path, &text) {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "warning: could not write {name} {}: {error}; hint: GitHub Actions sets {name} to a writable file in each step; do not set it yourself",
                    path.display()
                );
            }
        }
    }
}

impl Reporter for Actions {
    fn report(&self, event: Event) {
        match event {
            Event::Plan { image, .. } => self.lock().image = Some(image),
            Event::Step {
                platform,
                runner,
                step,
                cached,
            } => {
                let cached = if cached { " (cached)" } else { "" };
                self.lock()
                    .logs
                    .entry((platform, runner))
                    .or_default()
                    .push(format!("{step}{cached}"));
            }
            Event::Log {
                platform,
                runner,
                line,
            } => self
                .lock()
                .logs
                .entry((platform, runner))
                .or_default()
                .push(line),
            Event::JobFinished {
                platform, runner, ..
            } => self.job_ended(&platform, &runner, None),
            Event::JobFailed {
                platform,
                runner,
                message,
                ..
            } => self.job_ended(&platform, &runner, Some(&message)),
            Event::Result(outcome) => self.ended(&outcome),
            _ => {}
        }
    }
}

impl Drop for Actions {
    /// Resumes the workflow commands [`Actions::start`] stopped: the
    /// observer is dropped after mab's last line (the failure's report).
    fn drop(&mut self) {
        let stopped = self.stopped_groups();
        if !stopped.is_empty() {
            self.write_commands(&stopped);
        }
        self.write_stderr(&format!("::{}::\n", self.token));
    }
}

/// 32 random hex digits (128 bits from the operating system), for a
/// `::stop-commands::` token or an output delimiter: what build output
/// cannot guess.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system gives random bytes");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A workflow command's message escaped as `@actions/core` escapes it
/// (`escapeData`): `%` → `%25`, `\r` → `%0D`, `\n` → `%0A`.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value escaped as `@actions/core` escapes
/// it (`escapeProperty`): as [`escape_data`], and `:` → `%3A`, `,` → `%2C`.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// An annotation line: `::error title=<title>::<message>` (`level` is
/// `error`, `warning` or `notice`), escaped.
pub fn annotation(level: &str, title: &str, message: &str) -> String {
    format!(
        "::{level} title={}::{}\n",
        escape_property(title),
        escape_data(message)
    )
}

/// The annotations of a build that ended as `outcome`: each of its
/// `failures` (platform, runner, message) an `::error`, or a `::warning`
/// when the platform was then `finished` on another runner; the build's
/// own failure an `::error` titled `mab build failed`, with its hints.
fn annotations(
    failures: &[(Platform, String, String)],
    finished: &HashSet<Platform>,
    outcome: &Outcome,
) -> String {
    let mut text = String::new();
    for (platform, runner, message) in failures {
        let level = if finished.contains(platform) {
            "warning"
        } else {
            "error"
        };
        text.push_str(&annotation(
            level,
            &format!("{platform} on {runner} failed"),
            message,
        ));
    }
    if let Some(error) = &outcome.error {
        // A configuration error's first detail is its place, FILE:LINE:COL.
        let place = error.details.first().filter(|detail| {
            let mut parts = detail.rsplitn(3, ':');
            let numbers = [parts.next(), parts.next()];
            parts.next().is_some()
                && numbers.iter().all(|part| {
                    part.is_some_and(|part| {
                        !part.is_empty() && part.chars().all(|c| c.is_ascii_digit())
                    })
                })
        });
        let mut message = match place {
            Some(place) => format!("{place}: {}", error.message),
            None => error.message.clone(),
        };
        for hint in &error.hints {
            message.push_str(&format!("\nhint: {hint}"));
        }
        text.push_str(&annotation("error", "mab build failed", &message));
    }
    text
}

/// A log group: `::group::<title>`, then `lines` with the commands stopped
/// by `token`, then `::endgroup::`. Written with the commands running.
fn group(token: &str, title: &str, lines: &[String]) -> String {
    let mut text = format!(
        "::group::{}\n::stop-commands::{token}\n",
        escape_data(title)
    );
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("::{token}::\n::endgroup::\n"));
    text
}

/// One output in `$GITHUB_OUTPUT`'s multiline form: `name<<DELIMITER`,
/// the value, `DELIMITER`, with a random delimiter not in `value`.
pub fn output_entry(name: &str, value: &str) -> String {
    let delimiter = loop {
        let delimiter = format!("ghadelimiter_{}", random_hex());
        if !value.contains(&delimiter) {
            break delimiter;
        }
    };
    format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
}

/// The `$GITHUB_OUTPUT` text: `image` when known, `digest` and `tags`
/// (full references, one per line) when a list was published, and
/// `metadata` when the document was written.
fn outputs(image: Option<&str>, document: Option<&Value>, metadata: Option<&str>) -> String {
    let mut text = String::new();
    if let Some(image) = image {
        text.push_str(&output_entry("image", image));
        if let Some(digest) = document.and_then(|document| document["digest"].as_str()) {
            text.push_str(&output_entry("digest", digest));
            text.push_str(&output_entry(
                "tags",
                &full_tags(image, document).join("\n"),
            ));
        }
    }
    if let Some(metadata) = metadata {
        text.push_str(&output_entry("metadata", metadata.trim_end()));
    }
    text
}

/// `image:tag` for each tag of the document.
fn full_tags(image: &str, document: Option<&Value>) -> Vec<String> {
    document
        .and_then(|document| document["tags"].as_array())
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|tag| format!("{image}:{tag}"))
        .collect()
}

/// The `$GITHUB_STEP_SUMMARY` Markdown: a heading, the platforms' table
/// (platform, runner, native/emulated, digest, time, checks) from the
/// metadata document, the list digest and tags, and the failure: its
/// message, then `report` (its whole report as stderr shows it: message,
/// details or the file's snippet, hints) in a code block.
fn summary(
    image: Option<&str>,
    document: Option<&Value>,
    outcome: &Outcome,
    report: &str,
) -> String {
    let digest = document.and_then(|document| document["digest"].as_str());
    let heading = match (image, digest, &outcome.error) {
        (Some(image), Some(digest), None) => format!("published `{image}@{digest}`"),
        (Some(image), Some(digest), Some(_)) => {
            format!("published `{image}@{digest}`, then failed")
        }
        (Some(image), None, None) if outcome.no_push => {
            format!("built `{image}`; nothing was pushed (--no-push)")
        }
        (Some(image), None, None) => format!("built `{image}`; nothing was published"),
        (Some(image), None, Some(_)) => format!("failed; nothing was published for `{image}`"),
        (None, _, _) if outcome.error.is_some() => "failed; nothing was published".to_owned(),
        (None, _, _) => "nothing was published".to_owned(),
    };
    let image = image.unwrap_or_default();
    let mut text = format!("### mab build: {heading}\n\n");
    let platforms = document
        .and_then(|document| document["platforms"].as_array())
        .cloned()
        .unwrap_or_default();
    if !platforms.is_empty() {
        text.push_str("| Platform | Runner | Native/emulated | Digest | Time | Checks |\n");
        text.push_str("|---|---|---|---|---|---|\n");
        for entry in &platforms {
            let cell = |key: &str| entry[key].as_str().map_or("—".to_owned(), cell_text);
            let seconds = entry["seconds"]
                .as_f64()
                .map_or("—".to_owned(), |seconds| format!("{seconds:.1} s"));
            let digest = entry["digest"]
                .as_str()
                .map_or("—".to_owned(), |digest| format!("`{digest}`"));
            let emulated = match entry["emulated"].as_bool() {
                Some(true) => "emulated",
                _ => "native",
            };
            text.push_str(&format!(
                "| {} | {} | {emulated} | {digest} | {seconds} | {} |\n",
                cell("platform"),
                cell("runner"),
                cell_text(&checks(entry)),
            ));
        }
        text.push('\n');
    }
    if let Some(digest) = digest {
        text.push_str(&format!("**List digest:** `{digest}`\n\n**Tags:**\n"));
        for tag in full_tags(image, document) {
            text.push_str(&format!("- `{tag}`\n"));
        }
        text.push('\n');
    }
    if let Some(error) = &outcome.error {
        text.push_str(&format!("**Failed:** {}\n\n", cell_text(&error.message)));
        text.push_str(&fenced(report));
    }
    text
}

/// `text` on one line (line breaks as spaces) with `|` escaped, for a
/// table cell or a paragraph.
fn cell_text(text: &str) -> String {
    text.replace(['\r', '\n'], " ").replace('|', "\\|")
}

/// `text` in a fenced code block whose fence is longer than any run of
/// backticks in it, so that it cannot end the block.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}\n{text}\n{fence}\n\n")
}

/// The checks column of a platform of the metadata document: its state
/// when not built, else the platform check, `[verify] binaries` and the
/// smoke run, as they went.
fn checks(entry: &Value) -> String {
    let state = entry["state"].as_str().unwrap_or("");
    let mut checks = match state {
        "published" | "pushed" | "built" => vec!["platform ok".to_owned()],
        "failed" => vec![format!(
            "failed ({})",
            entry["error"]["kind"].as_str().unwrap_or("error")
        )],
        other => vec![other.replace('_', " ")],
    };
    if entry["reused"].as_bool() == Some(true) {
        checks.push("reused".to_owned());
    }
    if let Some(checked) = entry["binaries"]["checked"].as_u64() {
        let wrong = entry["binaries"]["mismatches"]
            .as_array()
            .map_or(0, Vec::len);
        checks.push(match wrong {
            0 => format!("binaries ok ({checked} checked)"),
            wrong => format!("binaries: {wrong} of {checked} for another platform"),
        });
    }
    if let Some(code) = entry["test"]["exit_code"].as_i64() {
        checks.push(match code {
            0 => "test passed".to_owned(),
            code => format!("test exited {code}"),
        });
    }
    checks.join(", ")
}

/// Appends `text` to `path` (creating it).
fn append(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `name<<DELIMITER` entries as the runner does.
    fn parse_outputs(text: &str) -> Vec<(String, String)> {
        let mut lines = text.lines();
        let mut outputs = Vec::new();
        while let Some(line) = lines.next() {
            let (name, delimiter) = line.split_once("<<").expect("multiline form");
            let mut value = Vec::new();
            for line in lines.by_ref() {
                if line == delimiter {
                    break;
                }
                value.push(line);
            }
            outputs.push((name.to_owned(), value.join("\n")));
        }
        outputs
    }

    #[test]
    fn messages_and_properties_are_escaped_as_the_toolkit_does() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(
            escape_property("linux/arm64 on pi: a,b%"),
            "linux/arm64 on pi%3A a%2Cb%25"
        );
        assert_eq!(
            annotation(
                "error",
                "linux/arm64 on pi, failed",
                "exit code 1\nhint: fix it"
            ),
            "::error title=linux/arm64 on pi%2C failed::exit code 1%0Ahint: fix it\n"
        );
    }

    #[test]
    fn a_platform_built_elsewhere_after_failing_is_a_warning() {
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let ppc64le: Platform = "linux/ppc64le".parse().unwrap();
        let failures = vec![
            (
                arm64.clone(),
                "a".to_owned(),
                "runner a: engine gone".to_owned(),
            ),
            (
                ppc64le,
                "power".to_owned(),
                "RUN make: exit code 2".to_owned(),
            ),
        ];
        let finished = HashSet::from([arm64]);
        let failed = Outcome {
            exit_code: 1,
            digest: None,
            no_push: false,
            error: Some(mab_events::OutcomeError {
                message: "build failed for linux/ppc64le (runner power)".to_owned(),
                hints: vec!["fix the Dockerfile".to_owned()],
                details: Vec::new(),
            }),
        };
        assert_eq!(
            annotations(&failures, &finished, &failed),
            "::warning title=linux/arm64 on a failed::runner a: engine gone\n\
             ::error title=linux/ppc64le on power failed::RUN make: exit code 2\n\
             ::error title=mab build failed::build failed for linux/ppc64le (runner power)%0Ahint: fix the Dockerfile\n"
        );
        let succeeded = Outcome {
            exit_code: 0,
            digest: Some("sha256:ab".to_owned()),
            no_push: false,
            error: None,
        };
        assert_eq!(annotations(&[], &HashSet::new(), &succeeded), "");
        // A configuration error's annotation names its place.
        let config = Outcome {
            exit_code: 2,
            digest: None,
            no_push: false,
            error: Some(mab_events::OutcomeError {
                message: "`platforms` is empty".to_owned(),
                hints: vec!["list at least one platform".to_owned()],
                details: vec![
                    "/src/app/mab.toml:3:13".to_owned(),
                    "3 | platforms = []".to_owned(),
                ],
            }),
        };
        assert_eq!(
            annotations(&[], &HashSet::new(), &config),
            "::error title=mab build failed::/src/app/mab.toml:3:13: `platforms` is empty%0Ahint: list at least one platform\n"
        );
    }

    /// Outside GitHub Actions there is no observer; inside, the files are
    /// appended to when the build ends, from the plan and the document.
    #[test]
    fn the_observer_writes_its_files_when_the_result_comes() {
        assert!(Actions::start(&Environment::default(), false).is_none());
        let directory = tempfile::tempdir().unwrap();
        let (output, summary) = (
            directory.path().join("output"),
            directory.path().join("summary"),
        );
        std::fs::write(&output, "earlier<<EOF\nstep\nEOF\n").unwrap();
        let environment = Environment {
            github_actions: true,
            github_output: Some(output.clone()),
            github_step_summary: Some(summary.clone()),
            ..Environment::default()
        };
        let actions = Actions::start(&environment, false).unwrap();
        actions.report(Event::Plan {
            image: "r/app".to_owned(),
            context_files: 1,
            jobs: Vec::new(),
        });
        actions.report(Event::Result(Outcome {
            exit_code: 2,
            digest: None,
            no_push: false,
            error: None,
        }));
        let written = parse_outputs(&std::fs::read_to_string(&output).unwrap());
        assert_eq!(
            written,
            [
                ("earlier".to_owned(), "step".to_owned()),
                ("image".to_owned(), "r/app".to_owned())
            ]
        );
        let metadata = r#"{"image": "r/app", "digest": "sha256:ab", "tags": ["v1"]}"#;
        actions.metadata_written(metadata);
        actions.report(Event::Result(Outcome {
            exit_code: 0,
            digest: Some("sha256:ab".to_owned()),
            no_push: false,
            error: None,
        }));
        let written = parse_outputs(&std::fs::read_to_string(&output).unwrap());
        assert_eq!(written[2..].len(), 4);
        assert_eq!(written[4], ("tags".to_owned(), "r/app:v1".to_owned()));
        assert!(std::fs::read_to_string(&summary)
            .unwrap()
            .contains("published `r/app@sha256:ab`"));
    }

    #[test]
    fn a_group_stops_commands_around_the_build_output() {
        let lines = vec![
            "::error::injected".to_owned(),
            "##[set-output name=x;]y".to_owned(),
        ];
        assert_eq!(
            group("t0k3n", "linux/amd64 on local", &lines),
            "::group::linux/amd64 on local\n::stop-commands::t0k3n\n::error::injected\n##[set-output name=x;]y\n::t0k3n::\n::endgroup::\n"
        );
    }

    /// A job stopped without its end event still gets its group when the
    /// build ends, once.
    #[test]
    fn a_stopped_job_gets_its_group() {
        let environment = Environment {
            github_actions: true,
            ..Environment::default()
        };
        let actions = Actions::start(&environment, false).unwrap();
        let platform: Platform = "linux/arm64".parse().unwrap();
        actions.report(Event::Log {
            platform: platform.clone(),
            runner: "pi".to_owned(),
            line: "compiling".to_owned(),
        });
        let token = actions.token.clone();
        assert_eq!(
            actions.stopped_groups(),
            format!("::group::linux/arm64 on pi (stopped)\n::stop-commands::{token}\ncompiling\n::{token}::\n::endgroup::\n")
        );
        assert_eq!(actions.stopped_groups(), "");
    }

    #[test]
    fn outputs_use_the_multiline_form_with_a_delimiter_not_in_the_value() {
        let value = "a\nghadelimiter_\nb";
        let entry = output_entry("tags", value);
        let delimiter = entry
            .lines()
            .next()
            .unwrap()
            .strip_prefix("tags<<")
            .unwrap();
        assert!(delimiter.starts_with("ghadelimiter_") && delimiter.len() == 13 + 32);
        assert_ne!(
            delimiter,
            output_entry("tags", value).lines().next().unwrap()
        );
        assert_eq!(
            parse_outputs(&entry),
            vec![("tags".to_owned(), value.to_owned())]
        );
    }

    #[test]
    fn outputs_hold_digest_and_full_tags_only_when_published() {
        let metadata = r#"{"image": "r/ns/app", "digest": "sha256:ab", "tags": ["1.2", "latest"], "platforms": []}"#;
        let document: Value = serde_json::from_str(metadata).unwrap();
        let written = parse_outputs(&outputs(Some("r/ns/app"), Some(&document), Some(metadata)));
        assert_eq!(
            written,
            vec![
                ("image".to_owned(), "r/ns/app".to_owned()),
                ("digest".to_owned(), "sha256:ab".to_owned()),
                (
                    "tags".to_owned(),
                    "r/ns/app:1.2\nr/ns/app:latest".to_owned()
                ),
                ("metadata".to_owned(), metadata.to_owned()),
            ]
        );
        let failed = r#"{"image": "r/ns/app", "digest": null, "tags": ["1.2"]}"#;
        let document: Value = serde_json::from_str(failed).unwrap();
        let names: Vec<String> =
            parse_outputs(&outputs(Some("r/ns/app"), Some(&document), Some(failed)))
                .into_iter()
                .map(|(name, _)| name)
                .collect();
        assert_eq!(names, ["image", "metadata"]);
        assert_eq!(outputs(None, None, None), "");
    }

    #[test]
    fn the_summary_has_a_row_per_platform_the_list_and_the_failure() {
        let document: Value = serde_json::from_str(
            r#"{"image": "r/app", "digest": "sha256:ab", "tags": ["v1"], "platforms": [
                {"platform": "linux/amd64", "runner": "x|86", "digest": "sha256:01", "emulated": false,
                 "seconds": 12.34, "state": "published", "binaries": {"checked": 3, "mismatches": []},
                 "test": {"exit_code": 0, "seconds": 1.0}},
                {"platform": "linux/ppc64le", "runner": null, "digest": null, "emulated": true,
                 "seconds": null, "state": "failed", "error": {"kind": "build", "message": "m"}}
            ]}"#,
        )
        .unwrap();
        let outcome = Outcome {
            exit_code: 1,
            digest: None,
            no_push: false,
            error: Some(mab_events::OutcomeError {
                message: "read back failed".to_owned(),
                hints: vec!["run again".to_owned()],
                details: vec!["```".to_owned()],
            }),
        };
        let report = crate::failure::render(outcome.error.as_ref().unwrap());
        let text = summary(Some("r/app"), Some(&document), &outcome, &report);
        assert_eq!(
            text,
            "### mab build: published `r/app@sha256:ab`, then failed\n\n\
             | Platform | Runner | Native/emulated | Digest | Time | Checks |\n\
             |---|---|---|---|---|---|\n\
             | linux/amd64 | x\\|86 | native | `sha256:01` | 12.3 s | platform ok, binaries ok (3 checked), test passed |\n\
             | linux/ppc64le | — | emulated | — | — | failed (build) |\n\n\
             **List digest:** `sha256:ab`\n\n**Tags:**\n- `r/app:v1`\n\n\
             **Failed:** read back failed\n\n````\nerror: read back failed\n  | ```\nhint: run again\n````\n\n"
        );
        // A failure before the image is known names none; with no error
        // and no digest, `--no-push` is said only when it was given.
        let unknown = Outcome {
            exit_code: 2,
            digest: None,
            no_push: false,
            error: outcome.error.clone(),
        };
        assert!(summary(None, None, &unknown, &report)
            .starts_with("### mab build: failed; nothing was published\n\n**Failed:** read back failed\n\n````\nerror: read back failed\n"));
        let built = Outcome {
            exit_code: 0,
            digest: None,
            no_push: true,
            error: None,
        };
        assert_eq!(
            summary(Some("r/app"), None, &built, ""),
            "### mab build: built `r/app`; nothing was pushed (--no-push)\n\n"
        );
        let unpublished = Outcome {
            no_push: false,
            ..built
        };
        assert_eq!(
            summary(Some("r/app"), None, &unpublished, ""),
            "### mab build: built `r/app`; nothing was published\n\n"
        );
    }
}
