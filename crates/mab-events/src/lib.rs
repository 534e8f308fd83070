//! What a build reports while it runs, as typed events.
//!
//! The library crates emit [`Event`]s through a [`Reporter`] (a registry
//! request retried, an SSH handshake retried, a build step, a platform
//! moved to another runner); the `mab` binary only renders them: bars on a
//! terminal, one line per event in CI logs, or one JSON object per line
//! with `--progress json` ([`json_line`], schema [`SCHEMA`]).
//!
//! Facts travel as fields, never inside free text: a renderer or a script
//! reading the JSON never has to parse a sentence. Only [`Event::Warning`]
//! and [`Event::Diagnostic`] carry a message meant for people alone.

use std::sync::Mutex;

use mab_config::Platform;
use serde::Serialize;

pub mod retry;

/// The version of the JSON form of the events (`"schema": 1` on each
/// line). It changes when a field is removed or changes meaning; new
/// events and new fields do not change it.
pub const SCHEMA: u32 = 1;

/// Receives events. Implementations must not block for long: events come
/// from the tasks that do the work.
pub trait Reporter: Send + Sync {
    /// Takes one event, on whichever task or thread produced it (a job's,
    /// a connection's); events of one job arrive in the order they
    /// happened. Must return quickly: the work waits for it.
    fn report(&self, event: Event);
}

/// Why staging tags stay in the registry ([`Event::StagingTagsLeft`]);
/// in JSON `kept_for_resume` or `not_deleted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StagingTagsReason {
    /// mab keeps them: the build failed after its images were pushed (the
    /// publish, or its read back), and a `mab build --resume` reuses the
    /// images they hold.
    KeptForResume,
    /// mab tried to remove them: the registry does not delete tags, or a
    /// deletion failed (a warning said why).
    NotDeleted,
}

/// A reporter that drops every event (for library calls made where nobody
/// watches, and for tests).
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _event: Event) {}
}

/// A reporter that keeps every event, in the order heard (for tests).
#[derive(Default)]
pub struct Recorder(Mutex<Vec<Event>>);

impl Recorder {
    /// The events heard so far.
    pub fn events(&self) -> Vec<Event> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Reporter for Recorder {
    fn report(&self, event: Event) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(event);
    }
}

/// Something worth telling while a build runs.
///
/// In JSON each event is an object whose `event` field names the variant
/// in snake case (`"event": "phase_finished"`) beside the variant's fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Which runner builds each platform, before any job starts.
    Plan {
        /// `[image] name`, `registry/namespace/name`.
        image: String,
        /// The files the build context sends (after `.dockerignore`).
        context_files: u64,
        /// One per platform, in the order of `mab.toml`.
        jobs: Vec<PlannedJob>,
    },
    /// A platform's job waits for a slot on its runner's host: every one of
    /// the runner's `jobs` slots there is taken, by other builds (another
    /// `mab build`, possibly from another machine) or by this build's
    /// other jobs on the runner. Told when the wait begins (`seconds` 0),
    /// then about every 10 s while it lasts.
    Waiting {
        platform: Platform,
        runner: String,
        /// The runner's `jobs` in the runners file of this build.
        jobs: u32,
        /// How long it has waited so far, in whole seconds.
        seconds: u64,
        /// This build's platforms whose jobs hold a slot on the runner's
        /// host now (fewer than `jobs`; the others are other builds').
        holding: Vec<Platform>,
    },
    /// A platform's job got its runner slot and starts.
    JobStarted {
        platform: Platform,
        runner: String,
        emulated: bool,
    },
    /// A phase of a platform's job began.
    PhaseStarted {
        platform: Platform,
        runner: String,
        phase: Phase,
    },
    /// A phase of a platform's job ended well.
    PhaseFinished {
        platform: Platform,
        runner: String,
        phase: Phase,
        /// How long the phase took, in seconds.
        seconds: f64,
        /// Bytes the phase moved where it knows them: the context files
        /// served to the engine ([`Phase::Build`]), the image's compressed
        /// size in the registry ([`Phase::Verify`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
    },
    /// A build step started, as BuildKit names it (`[2/3] RUN make`), or
    /// was found in the build cache (`cached`: it does not run). Each step
    /// is told once.
    Step {
        platform: Platform,
        runner: String,
        step: String,
        cached: bool,
    },
    /// A platform's build with a registry cache (`[cache] from =
    /// "registry"`, `--cache-from`) has ended, well or at a failed step:
    /// the image whose build cache it imported, or none. Told once per
    /// build that reached its engine's steps, before its push; never
    /// without a registry cache.
    CacheSource {
        platform: Platform,
        runner: String,
        /// The image imported, `REPO@sha256:…` (the metadata file's
        /// `cache_from`); `None` (`null`) when the build had none, for a
        /// reason a warning gave: nothing published at the reference, no
        /// image of the platform there, a registry that could not be
        /// read, or an engine that could not import it.
        source: Option<String>,
    },
    /// The build context on its way to the engine: `bytes` of the files'
    /// contents served so far, of at most `total` (the files the context
    /// sends, after `.dockerignore`; BuildKit asks only for files it does
    /// not hold already, so it often ends below). Told while it grows, at
    /// most four times a second, during [`Phase::Build`].
    ContextSent {
        platform: Platform,
        runner: String,
        bytes: u64,
        total: u64,
    },
    /// A line of a build step's output.
    Log {
        platform: Platform,
        runner: String,
        line: String,
    },
    /// A platform's image was pushed under its staging tag.
    Pushed {
        platform: Platform,
        runner: String,
        /// The image manifest's digest, `sha256:…`.
        digest: String,
    },
    /// A platform's job ended well: built, pushed (unless `--no-push`) and
    /// verified.
    JobFinished {
        platform: Platform,
        runner: String,
        /// From the job's start, in seconds.
        seconds: f64,
    },
    /// A platform's job failed on its runner (it may still move to another).
    JobFailed {
        platform: Platform,
        runner: String,
        kind: ErrorKind,
        message: String,
    },
    /// A request that failed for a reason that may pass is tried again.
    Retry {
        /// What was asked.
        target: RetryTarget,
        /// The request, as `PUT /v2/app/manifests/latest` or `GET /_ping`
        /// or `SSH handshake`.
        request: String,
        /// The try that failed, counted from 1.
        attempt: u32,
        /// How many tries are made at most.
        tries: u32,
        /// The wait before the next try, in milliseconds.
        delay_ms: u64,
        /// Why the try failed.
        error: String,
    },
    /// A platform's job left its runner for another (failover).
    Moved {
        platform: Platform,
        /// The runner that could not build it.
        from: String,
        /// The runner that builds it now.
        to: String,
        /// Whether `to` builds it under QEMU emulation.
        emulated: bool,
        /// Why `from` lost it: the runner's or engine's failure.
        reason: String,
    },
    /// `--resume`: a platform the earlier build pushed and verified is
    /// reused by its digest (found in the registry again); no job runs
    /// for it and its runner is not contacted.
    Reused {
        platform: Platform,
        /// The runner that built it in the earlier build; `None` (`null`)
        /// when the earlier build's document names none.
        runner: Option<String>,
        /// The image manifest's digest, `sha256:…`.
        digest: String,
    },
    /// The manifest list was pushed under its tags.
    Published {
        image: String,
        /// The list's digest, `sha256:…`.
        digest: String,
        tags: Vec<String>,
        /// The platforms asked for that the list leaves out: empty, but for
        /// a partial list published with `--allow-partial`.
        missing: Vec<Platform>,
    },
    /// The published list read back from the registry: every tag points
    /// at it, the list is served as pushed, and each platform's image is
    /// served by its digest (docs/publishing.md).
    ReadBack {
        image: String,
        /// The list's digest, `sha256:…`.
        digest: String,
        tags: Vec<String>,
        /// The platform of each entry of the list, in its order, as the
        /// list read back writes it (`os/architecture[/variant]`, not
        /// normalised: `linux/arm64/v8` stays so).
        platforms: Vec<String>,
    },
    /// Staging tags this build pushed that stay in the registry, and why.
    StagingTagsLeft {
        image: String,
        tags: Vec<String>,
        reason: StagingTagsReason,
    },
    /// Something the user should know that does not stop the build.
    Warning { message: String },
    /// A log line of a library (`MAB_LOG`), at its level: `debug`, `info`.
    Diagnostic { level: String, message: String },
    /// How the command ended: always the last event.
    Result(Outcome),
}

/// One platform of [`Event::Plan`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedJob {
    pub platform: Platform,
    pub runner: String,
    pub emulated: bool,
    /// Why this runner: "native linux/arm64 engine".
    pub reason: String,
}

/// The phases of a platform's job, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Running the Dockerfile's steps on the engine, the context served
    /// through the BuildKit session.
    Build,
    /// The engine pushing the image under its staging tag.
    Push,
    /// Reading the image back from the registry (or the engine with
    /// `--no-push`) and checking its platform.
    Verify,
    /// Reading the image's layers back (from the registry, or the engine
    /// with `--no-push`) and checking that its programs are for its
    /// platform (`[verify] binaries`); its bytes are the layers' bytes
    /// read.
    Check,
    /// The smoke run of `[test]`: the image's command in a container on
    /// the runner that built it.
    Test,
}

/// What a retried request was sent to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RetryTarget {
    /// A registry, by its host (`127.0.0.1:5000`).
    Registry { registry: String },
    /// A runner's sshd (a handshake), by the runner's name.
    Ssh { runner: String },
    /// A runner's engine, by the runner's name.
    Engine { runner: String },
}

/// The cause a failure is put down to, which decides its hint
/// (`"error": {"kind": …}` in the metadata file and in events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A Dockerfile step failed: the input's problem.
    Build,
    /// The runner, its sshd or its engine.
    Runner,
    /// The registry.
    Registry,
    /// Bad usage or configuration.
    Usage,
    /// The image's smoke run (`[test]`) failed: it exited non-zero, ran
    /// past its timeout, or its output did not match `expect`.
    Test,
    /// The image holds a program of another architecture than its
    /// platform's (`[verify] binaries`): the input's problem.
    Binaries,
}

/// How a command ended ([`Event::Result`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// The process exit code (PRODUCT.md): 0, 1, 2, 130 or 143.
    pub exit_code: u8,
    /// The published list's digest; `None` when nothing was published.
    pub digest: Option<String>,
    /// Whether the build ran with `--no-push`: nothing was written to the
    /// registry (so a success has no digest).
    pub no_push: bool,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OutcomeError>,
}

/// The failure of [`Outcome`]: the report's parts, as the plain renderer
/// prints them (`error: <message>`, the details, `hint: <hint>` each).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutcomeError {
    /// What failed, one sentence naming the file, host, platform or
    /// registry involved.
    pub message: String,
    /// What to do about it, one per hint.
    pub hints: Vec<String>,
    /// More about it, one line each: a failed platform with its runner and
    /// its build log's tail, or where in a file a bad value is.
    pub details: Vec<String>,
}

/// One line of `--progress json`: `"schema"` first, then the event's fields.
#[derive(Serialize)]
struct JsonLine<'a> {
    schema: u32,
    #[serde(flatten)]
    event: &'a Event,
}

/// `event` as one line of `--progress json`: the event's object with
/// `"schema": 1` first, no newline.
///
/// Every `#` is written `\u0023` (the same JSON string value): GitHub's
/// runner reads `##[command]` anywhere in a line of a step's output (its
/// legacy workflow commands, `ActionCommand.TryParse`), so a build log
/// line holding one must not reach the log as it is. `#` appears only
/// inside strings in JSON, so replacing it in the text is exact.
pub fn json_line(event: &Event) -> String {
    serde_json::to_string(&JsonLine {
        schema: SCHEMA,
        event,
    })
    .expect("events always serialise: their fields are strings, numbers and lists")
    .replace('#', "\\u0023")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(text: &str) -> Platform {
        text.parse().unwrap()
    }

    #[test]
    fn json_lines_carry_the_schema_the_event_and_its_fields() {
        let cases = [
            (
                Event::PhaseFinished {
                    platform: platform("linux/arm64"),
                    runner: "pi".to_owned(),
                    phase: Phase::Build,
                    seconds: 1.5,
                    bytes: Some(2048),
                },
                r#"{"schema":1,"event":"phase_finished","platform":"linux/arm64","runner":"pi","phase":"build","seconds":1.5,"bytes":2048}"#,
            ),
            (
                Event::Retry {
                    target: RetryTarget::Registry {
                        registry: "127.0.0.1:5000".to_owned(),
                    },
                    request: "PUT /v2/app/manifests/latest".to_owned(),
                    attempt: 1,
                    tries: 3,
                    delay_ms: 250,
                    error: "503 Service Unavailable".to_owned(),
                },
                r#"{"schema":1,"event":"retry","target":{"kind":"registry","registry":"127.0.0.1:5000"},"request":"PUT /v2/app/manifests/latest","attempt":1,"tries":3,"delay_ms":250,"error":"503 Service Unavailable"}"#,
            ),
            (
                Event::Moved {
                    platform: platform("linux/arm/v7"),
                    from: "a".to_owned(),
                    to: "b".to_owned(),
                    emulated: true,
                    reason: "connection refused".to_owned(),
                },
                r#"{"schema":1,"event":"moved","platform":"linux/arm/v7","from":"a","to":"b","emulated":true,"reason":"connection refused"}"#,
            ),
            (
                Event::Result(Outcome {
                    exit_code: 0,
                    digest: Some("sha256:ab".to_owned()),
                    no_push: false,
                    error: None,
                }),
                r#"{"schema":1,"event":"result","exit_code":0,"digest":"sha256:ab","no_push":false}"#,
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(json_line(&event), expected);
        }
    }

    /// No line can carry GitHub's legacy `##[command]`, and the value read
    /// back is the line as the build printed it.
    #[test]
    fn a_json_line_never_holds_a_workflow_command() {
        let line = "##[set-output name=x;]y #1";
        let event = Event::Log {
            platform: platform("linux/amd64"),
            runner: "local".to_owned(),
            line: line.to_owned(),
        };
        let json = json_line(&event);
        assert!(!json.contains('#'), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["line"], line);
    }
}
