//! Smoke runs: one command in a container of a built image, on the engine
//! that built it, with networking disabled, and the container removed
//! afterwards whatever happens.
//!
//! The container is created with `NetworkDisabled` and the network mode
//! `none`: the engine then sets up no network at all for it, not even the
//! loopback-only namespace hook (`libnetwork-setkey`) that `docker run
//! --network none` still runs, which a `dockerd` under QEMU user emulation
//! cannot run (the hook re-executes the engine through `/proc/self/exe`).
//!
//! Nothing is left behind, as `docker run --rm` does it and more:
//! - the container has a fixed name (`mab-<build id>-<platform slug>`,
//!   given by the caller), and the guard that removes it by that name is
//!   armed before the create request is sent, so a create whose answer was
//!   lost is removed too;
//! - `HostConfig.AutoRemove`: the engine removes the container itself once
//!   it exits, even when mab is gone (killed, or its SSH link lost);
//! - its output is not logged (`LogConfig` type `none`): mab reads it
//!   through an attach opened before the start, so a chatty command does not
//!   fill the runner's disk;
//! - the wait (`condition=removed`, as the docker CLI waits for a `--rm`
//!   container) is registered before the start: the engine answers its
//!   headers once the waiter is in place, so the exit code is not lost to
//!   the auto-removal;
//! - the timeout is enforced by a kill.
//!
//! A guard dropped before its removal (a job stopped by a time limit or a
//! signal) leaves the removal to a task, listed process-wide:
//! [`finish_removals`] waits for those before mab exits.
//!
//! On Podman's API service ([`EngineKind::Podman`]) three things differ,
//! each measured on Podman 4.3:
//! - the container is created with the libpod API
//!   (`POST /v4.0.0/libpod/containers/create`, a SpecGenerator), because
//!   the Docker-compatible create gives it Podman's default rlimits
//!   (`RLIMIT_NOFILE` 1048576), which a service that may not raise its hard
//!   limits (root without `CAP_SYS_RESOURCE`, as in an unprivileged
//!   container) cannot set: runc refuses with "error setting rlimits". A
//!   SpecGenerator without `r_limits` gets those defaults too, so when the
//!   container cannot be started for that reason it is created once more
//!   with [`FALLBACK_RLIMITS`], which fit under any hard limit Linux gives
//!   by default;
//! - it is not removed by the engine (`remove`): Podman's compat wait for
//!   `condition=removed` answers exit code 0 whatever the command returned,
//!   and its other waits answer nothing, not even their headers, until the
//!   container exits. So the wait (`condition=not-running`) is sent after
//!   the start, and the container is removed by mab alone (the guard, and
//!   [`finish_removals`]): a mab killed outright leaves it, stopped;
//! - attach, start, kill, wait and remove are the Docker-compatible calls,
//!   which Podman answers as Docker does (its attach also prepares the
//!   container, so an rlimit refusal comes as the attach's answer).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerWaitResponse, HostConfig, HostConfigLogConfig,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, KillContainerOptions, RemoveContainerOptions,
    StartContainerOptions,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use mab_config::Platform;
use mab_events::Event;

use crate::leftover::Leftovers;
use crate::{Engine, EngineError, EngineKind, REQUEST_TIMEOUT};

/// The rlimits a Podman smoke container gets when it could not be started
/// with Podman's defaults (see the module's comment), as `(type, soft,
/// hard)` of a SpecGenerator's `r_limits`: 1024 open files is Linux's
/// default soft limit and lies under every hard limit Linux sets by
/// default (4096 for `init`); 1024 processes are enough for a smoke
/// test, and processes of root are not counted against it.
pub const FALLBACK_RLIMITS: [(&str, u64, u64); 2] = [("nofile", 1024, 1024), ("nproc", 1024, 1024)];

/// What runc says when it cannot set a container's rlimits ("error
/// setting rlimits for ready process: error setting rlimit type 7:
/// operation not permitted").
const RLIMIT_REFUSED: &str = "error setting rlimit";

/// How many bytes of the command's standard output are kept (its end) for
/// [`SmokeOutcome::stdout`].
pub const STDOUT_KEPT: usize = 64 * 1024;

/// How many lines of the command's output (standard output and error, in
/// the order mab received them; the engine reads the two pipes apart, so
/// no order between them is kept) [`SmokeOutcome::output_tail`] holds.
pub const OUTPUT_TAIL_LINES: usize = 20;

/// How many characters of one output line [`SmokeOutcome::output_tail`]
/// shows; a longer line is cut there and ends with `…`.
pub const LINE_CHARS: usize = 500;

/// The mark before a line of standard error in
/// [`SmokeOutcome::output_tail`].
pub const STDERR_MARK: &str = "stderr: ";

/// A command to run in a container of an image.
#[derive(Clone, Debug)]
pub struct SmokeRun<'a> {
    /// The image, by a name or id the engine knows.
    pub image: &'a str,
    /// The container's name, unique on the engine (`mab-<build id>-<platform
    /// slug>`): it is removed by this name whatever happens.
    pub name: &'a str,
    /// The platform of the image, sent with the create request as `docker
    /// run --platform` sends it.
    pub platform: &'a Platform,
    /// The argv: it becomes the container's `Entrypoint`, with an empty
    /// `Cmd`, replacing the image's own (as `docker run --entrypoint`).
    pub argv: &'a [String],
    /// How long the command may run, counted from the start request; after
    /// it the container is killed.
    pub timeout: Duration,
    /// Labels of the container (`mab.build=<build id>`), so that one left
    /// behind can be found.
    pub labels: HashMap<String, String>,
}

/// How a smoke run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The command exited with this code (128 + N for a signal N).
    Exited(i64),
    /// It ran past its timeout and was killed.
    TimedOut,
}

/// What a smoke run did.
#[derive(Clone, Debug, PartialEq)]
pub struct SmokeOutcome {
    pub ended: Ended,
    /// The end of its standard output (at most [`STDOUT_KEPT`] bytes,
    /// invalid UTF-8 replaced).
    pub stdout: String,
    /// The last [`OUTPUT_TAIL_LINES`] non-blank lines of its output (of the
    /// last 64 KiB of it), standard error's marked with [`STDERR_MARK`],
    /// control characters escaped (`\u{1b}`), each at most [`LINE_CHARS`]
    /// characters.
    pub output_tail: Vec<String>,
    /// From the start request to its end (or the timeout).
    pub seconds: f64,
}

/// A smoke-test container mab could not remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftContainer {
    /// The engine's label (the runner's name).
    pub runner: String,
    /// The container's name.
    pub container: String,
    /// Why: the removal's error, or that it did not end in time.
    pub why: String,
    /// The runner's engine, whose CLI the warning names (`docker rm -f`,
    /// `podman rm -f`).
    pub engine: EngineKind,
}

impl LeftContainer {
    /// The warning that says so, with the command that removes it.
    pub fn warning(&self) -> String {
        format!(
            "could not remove the smoke-test container {} on runner `{}` ({}); remove it there with `{} rm -f {}`",
            self.container, self.runner, self.why, self.engine, self.container
        )
    }
}

/// A removal a dropped [`ContainerGuard`] left to a task.
struct Removal {
    runner: String,
    container: String,
    engine: EngineKind,
}

/// The removals dropped guards left, process-wide (a build's engines may
/// be gone when mab exits): [`finish_removals`] takes them.
static PENDING: Leftovers<Removal> = Leftovers::new();

/// Waits, up to `limit` in all, for the removals of smoke-test containers
/// that runs stopped midway (a time limit, a signal) left to tasks; the
/// containers not removed then, each with why. Call it before the runtime
/// shuts down (which would cancel the tasks).
pub async fn finish_removals(limit: Duration) -> Vec<LeftContainer> {
    PENDING
        .finish(limit, "its removal")
        .await
        .into_iter()
        .map(|(removal, why)| LeftContainer {
            runner: removal.runner,
            container: removal.container,
            why,
            engine: removal.engine,
        })
        .collect()
}

/// A container, by name, that is removed (forced) when this is dropped
/// unless [`ContainerGuard::remove`] removed it: the removal then runs in a
/// task of the current runtime, listed for [`finish_removals`]. Armed
/// before the create request, so that a create whose answer was lost
/// leaves nothing either.
struct ContainerGuard {
    engine: Engine,
    name: String,
    removed: bool,
}

impl ContainerGuard {
    /// Removes the container; the guard is disarmed only when that worked.
    async fn remove(&mut self) -> Result<(), EngineError> {
        self.engine.remove_container(&self.name).await?;
        self.removed = true;
        Ok(())
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let (engine, name) = (self.engine.clone(), self.name.clone());
        let removal = Removal {
            runner: self.engine.label.clone(),
            container: self.name.clone(),
            engine: self.engine.kind,
        };
        PENDING.leave(removal, async move {
            engine
                .remove_container(&name)
                .await
                .map_err(|error| error.to_string())
        });
    }
}

/// The end of a byte stream, at most `limit` bytes.
struct Tail {
    bytes: VecDeque<u8>,
    limit: usize,
}

impl Tail {
    fn new(limit: usize) -> Tail {
        Tail {
            bytes: VecDeque::new(),
            limit,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.limit)..];
        let over = (self.bytes.len() + chunk.len()).saturating_sub(self.limit);
        self.bytes.drain(..over);
        self.bytes.extend(chunk);
    }

    fn text(&self) -> String {
        let (front, back) = self.bytes.as_slices();
        String::from_utf8_lossy(&[front, back].concat()).into_owned()
    }
}

/// A command's output as it arrives: the end of its standard output, and
/// the last chunks of both streams in the order they came (at least
/// [`STDOUT_KEPT`] bytes of them), for the lines shown.
struct Output {
    stdout: Tail,
    chunks: VecDeque<(bool, Bytes)>,
    kept: usize,
}

impl Output {
    fn new() -> Output {
        Output {
            stdout: Tail::new(STDOUT_KEPT),
            chunks: VecDeque::new(),
            kept: 0,
        }
    }

    fn push(&mut self, item: LogOutput) {
        let (stderr, message) = match item {
            LogOutput::StdOut { message } => {
                self.stdout.push(&message);
                (false, message)
            }
            LogOutput::StdErr { message } | LogOutput::Console { message } => (true, message),
            LogOutput::StdIn { .. } => return,
        };
        self.kept += message.len();
        self.chunks.push_back((stderr, message));
        while let Some((_, front)) = self.chunks.front() {
            if self.kept - front.len() < STDOUT_KEPT {
                break;
            }
            self.kept -= front.len();
            self.chunks.pop_front();
        }
    }

    /// The last [`OUTPUT_TAIL_LINES`] lines, as [`SmokeOutcome::output_tail`]
    /// says.
    fn tail(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        for (stderr, chunk) in &self.chunks {
            let mut rest: &[u8] = chunk;
            while let Some(end) = rest.iter().position(|byte| *byte == b'\n') {
                let line = &mut partial[usize::from(*stderr)];
                line.extend_from_slice(&rest[..end]);
                lines.extend(shown_line(*stderr, line));
                line.clear();
                rest = &rest[end + 1..];
            }
            partial[usize::from(*stderr)].extend_from_slice(rest);
        }
        for (stream, line) in partial.iter().enumerate() {
            lines.extend(shown_line(stream == 1, line));
        }
        lines.split_off(lines.len().saturating_sub(OUTPUT_TAIL_LINES))
    }
}

/// One output line as shown (see [`SmokeOutcome::output_tail`]); `None`
/// for a blank one.
fn shown_line(stderr: bool, bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.is_empty() {
        return None;
    }
    let mut shown = String::from(if stderr { STDERR_MARK } else { "" });
    for (count, character) in text.chars().enumerate() {
        if count == LINE_CHARS {
            shown.push('…');
            break;
        }
        push_shown(&mut shown, character);
    }
    Some(shown)
}

/// `text` with its control characters (but tab) escaped as Rust writes
/// them (`\u{1b}` for ESC, `\n`, `\r`), so that text from a container or
/// a registry cannot move the cursor, recolour or clear a terminal.
pub fn escape_control_characters(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for character in text.chars() {
        push_shown(&mut shown, character);
    }
    shown
}

/// `character` onto `shown`, escaped when it is a control character but
/// tab.
fn push_shown(shown: &mut String, character: char) {
    if character.is_control() && character != '\t' {
        shown.extend(character.escape_default());
    } else {
        shown.push(character);
    }
}

/// Whether the engine itself answered `error` (a status it sent), rather
/// than the connection failing.
fn answered(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError { .. }
    )
}

/// The exit code of a smoke container, once it is known.
type WaitFuture = std::pin::Pin<Box<dyn Future<Output = Result<i64, EngineError>> + Send>>;

/// The rlimits a Podman smoke container is created with (see the module's
/// comment); Docker's containers always inherit the engine's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rlimits {
    /// None given: the engine's own choice (Podman's defaults).
    EngineDefault,
    /// [`FALLBACK_RLIMITS`].
    Fallback,
}

/// Whether `error` is runc refusing the container's rlimits (on the
/// attach that prepares a Podman container, or on its start).
fn rlimits_refused(error: &EngineError) -> bool {
    matches!(error, EngineError::StartFailed { message, .. } if message.contains(RLIMIT_REFUSED))
}

/// The SpecGenerator JSON of `run`'s container on Podman (see
/// [`Engine::create_podman_container`]).
fn podman_create_body(run: &SmokeRun<'_>, rlimits: Rlimits) -> Bytes {
    let mut spec = serde_json::json!({
        "name": run.name,
        "image": run.image,
        "entrypoint": run.argv,
        "command": [],
        "labels": run.labels,
        "terminal": false,
        "stdin": false,
        "netns": {"nsmode": "none"},
        "log_configuration": {"driver": "none"},
        "image_os": run.platform.os(),
        "image_arch": run.platform.architecture(),
    });
    if let Some(variant) = run.platform.variant() {
        spec["image_variant"] = variant.into();
    }
    if rlimits == Rlimits::Fallback {
        spec["r_limits"] = FALLBACK_RLIMITS
            .iter()
            .map(|(kind, soft, hard)| serde_json::json!({"type": kind, "soft": soft, "hard": hard}))
            .collect();
    }
    Bytes::from(serde_json::to_vec(&spec).expect("a SpecGenerator always serialises"))
}

impl Engine {
    /// Runs `run` in a new container named `run.name` (see the module's
    /// comment for how it is made to leave nothing): creates it, attaches
    /// to its output and registers the wait for its removal, starts it,
    /// reads its output while it runs (bounded, see [`SmokeOutcome`]),
    /// kills it at `run.timeout` (counted from the start request) and
    /// removes it, forced. A removal that fails is reported as an
    /// [`Event::Warning`] naming the container and `docker rm -f` (`podman
    /// rm -f` on Podman), whatever
    /// the run's result; when this future is dropped the removal is left to
    /// a task (see [`finish_removals`]).
    ///
    /// Errors: [`EngineError::StartFailed`] when the engine answered the
    /// start request with an error (no such executable in the image, an
    /// exec format error); [`EngineError::Api`] for the other requests the
    /// engine refused; [`EngineError::Connect`] when a request could not
    /// reach it; [`EngineError::StreamBroken`] when the output or the wait
    /// broke while the command ran; [`EngineError::Timeout`] when the
    /// create, attach or wait request got no answer within
    /// [`REQUEST_TIMEOUT`]. A create that failed at the connection is tried
    /// again: the name makes that safe (a `409 Conflict` then says the
    /// first reached the engine).
    pub async fn smoke_run(&self, run: &SmokeRun<'_>) -> Result<SmokeOutcome, EngineError> {
        let mut guard = ContainerGuard {
            engine: self.clone(),
            name: run.name.to_owned(),
            removed: false,
        };
        let mut outcome = self.run_container(run, Rlimits::EngineDefault).await;
        if self.kind == EngineKind::Podman && outcome.as_ref().is_err_and(rlimits_refused) {
            tracing::debug!(
                "Podman on {} could not set its default rlimits for {}; creating it again with {FALLBACK_RLIMITS:?}",
                self.label,
                run.name
            );
            outcome = match guard.remove().await {
                Ok(()) => {
                    // Armed again before the second container exists: a
                    // stop while it runs must remove it too.
                    guard.removed = false;
                    self.run_container(run, Rlimits::Fallback).await
                }
                Err(error) => Err(error),
            };
            guard.removed = false;
        }
        if let Err(error) = guard.remove().await {
            let left = LeftContainer {
                runner: self.label.clone(),
                container: run.name.to_owned(),
                why: error.to_string(),
                engine: self.kind,
            };
            self.reporter.report(Event::Warning {
                message: left.warning(),
            });
        }
        outcome
    }

    /// Creates `run`'s container, attaches to it, registers the wait,
    /// starts it and waits for its end up to its timeout (killing it then).
    /// On Podman the wait is sent after the start (see the module's
    /// comment), and the container gets `rlimits`.
    async fn run_container(
        &self,
        run: &SmokeRun<'_>,
        rlimits: Rlimits,
    ) -> Result<SmokeOutcome, EngineError> {
        let name = run.name;
        match self.kind {
            EngineKind::Docker => self.create_container(run).await?,
            EngineKind::Podman => self.create_podman_container(run, rlimits).await?,
        }
        let options = AttachContainerOptions {
            stream: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let attached = self
            .within_limit(&format!("POST /containers/{name}/attach"), async {
                self.docker
                    .attach_container(name, Some(options))
                    .await
                    .map_err(|error| match self.kind {
                        // Podman's attach prepares the container (`runc
                        // create`): what it refuses is what Docker's
                        // engine refuses at the start.
                        EngineKind::Podman if answered(&error) => self.start_failed(error),
                        _ => self.failed_request(error),
                    })
            })
            .await?;
        // Docker's engine answers the wait's headers once the waiter is in
        // place: registered before the start, it cannot miss the end.
        let mut waited: Option<WaitFuture> = match self.kind {
            EngineKind::Docker => Some(Box::pin(
                self.within_limit(
                    &format!("POST /containers/{name}/wait"),
                    self.wait_for(name, "removed"),
                )
                .await?,
            )),
            EngineKind::Podman => None,
        };
        let mut stream = attached.output;
        let mut output = Output::new();
        let started = Instant::now();
        let ran = tokio::time::timeout(run.timeout, async {
            self.docker
                .start_container(name, None::<StartContainerOptions>)
                .await
                .map_err(|error| {
                    if answered(&error) {
                        self.start_failed(error)
                    } else {
                        self.failed_request(error)
                    }
                })?;
            let read = async {
                while let Some(item) = stream.next().await {
                    output.push(item.map_err(|error| self.broken(&error))?);
                }
                Ok::<(), EngineError>(())
            };
            // Podman's: a stopped container that is not removed keeps
            // its exit code, so a command that ended already is not missed.
            let waiting = async {
                match &mut waited {
                    Some(waited) => waited.await,
                    None => self.wait_for(name, "not-running").await?.await,
                }
            };
            let (code, read) = tokio::join!(waiting, read);
            read?;
            code
        })
        .await;
        let seconds = started.elapsed().as_secs_f64();
        let ended = match ran {
            Ok(code) => Ended::Exited(code?),
            Err(_elapsed) => {
                let options = KillContainerOptions {
                    signal: "KILL".to_owned(),
                };
                // A container that ended meanwhile cannot be killed: the
                // removal that follows is forced anyway.
                let killed = self
                    .request(&format!("POST /containers/{name}/kill"), || {
                        self.docker.kill_container(name, Some(options.clone()))
                    })
                    .await;
                if let Err(error) = killed {
                    tracing::debug!("could not kill container {name}: {error}");
                }
                // Docker's engine removes it after the kill (AutoRemove);
                // on Podman the removal that follows does.
                if let Some(waited) = waited {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, waited).await;
                }
                Ended::TimedOut
            }
        };
        Ok(SmokeOutcome {
            ended,
            stdout: output.stdout.text(),
            output_tail: output.tail(),
            seconds,
        })
    }

    /// `POST /containers/create` of `run`'s container under its name,
    /// tried again when it failed at the connection (see
    /// [`Engine::smoke_run`]).
    async fn create_container(&self, run: &SmokeRun<'_>) -> Result<(), EngineError> {
        let body = ContainerCreateBody {
            image: Some(run.image.to_owned()),
            entrypoint: Some(run.argv.to_vec()),
            cmd: Some(Vec::new()),
            network_disabled: Some(true),
            labels: Some(run.labels.clone()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                auto_remove: Some(true),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("none".to_owned()),
                    config: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(run.name.to_owned()),
            platform: run.platform.to_string(),
        };
        let tries = AtomicUsize::new(0);
        crate::retry::request(
            &self.label,
            &*self.reporter,
            "POST /containers/create",
            || {
                let retried = tries.fetch_add(1, Ordering::Relaxed) > 0;
                let created = self
                    .docker
                    .create_container(Some(options.clone()), body.clone());
                async move {
                    match created.await {
                        Ok(_) => Ok(()),
                        Err(bollard::errors::Error::DockerResponseServerError {
                            status_code: 409,
                            ..
                        }) if retried => Ok(()),
                        Err(error) => Err(error),
                    }
                }
            },
        )
        .await?
        .map_err(|error| self.failed_request(error))
    }

    /// `POST /v4.0.0/libpod/containers/create` of `run`'s container on
    /// Podman: what [`Engine::create_container`] asks of Docker's engine,
    /// as a SpecGenerator (Podman's `pkg/specgen`): no network
    /// (`netns` `none`), output not logged (`log_configuration` driver
    /// `none`), not removed by the engine (see the module's comment), the
    /// platform as `image_os`, `image_arch` and `image_variant`, and
    /// `rlimits`. Tried again like the Docker create.
    async fn create_podman_container(
        &self,
        run: &SmokeRun<'_>,
        rlimits: Rlimits,
    ) -> Result<(), EngineError> {
        let body = podman_create_body(run, rlimits);
        let tries = AtomicUsize::new(0);
        crate::retry::request(
            &self.label,
            &*self.reporter,
            "POST /libpod/containers/create",
            || {
                let retried = tries.fetch_add(1, Ordering::Relaxed) > 0;
                let body = body.clone();
                async move {
                    match self.libpod_create(body).await {
                        Err(bollard::errors::Error::DockerResponseServerError {
                            status_code: 409,
                            ..
                        }) if retried => Ok(()),
                        other => other,
                    }
                }
            },
        )
        .await?
        .map_err(|error| self.failed_request(error))
    }

    /// Sends one libpod create request with `body`; an error status comes
    /// back as bollard's `DockerResponseServerError` with the engine's
    /// message, as bollard's own requests give it.
    async fn libpod_create(&self, body: Bytes) -> Result<(), bollard::errors::Error> {
        let request = http::Request::post("/v4.0.0/libpod/containers/create")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(body))
            .map_err(|error| bollard::errors::Error::IOError {
                err: std::io::Error::other(error),
            })?;
        let response = crate::transport::send(&self.connect, request).await?;
        let status = response.status();
        let body = crate::transport::body_bytes(response.into_body()).await;
        match status.is_success() {
            true => Ok(()),
            false => Err(bollard::errors::Error::DockerResponseServerError {
                status_code: status.as_u16(),
                message: crate::response_message(&body),
            }),
        }
    }

    /// Sends `POST /containers/<name>/wait?condition=<condition>` and
    /// returns once the engine answered its headers; the future it returns
    /// reads the exit code from the body. Docker's engine answers the
    /// headers once the waiter is registered (moby's
    /// `postContainersWait`), and the body, for `removed`, once the
    /// container is gone; Podman answers both when the condition is met.
    async fn wait_for(
        &self,
        name: &str,
        condition: &str,
    ) -> Result<impl Future<Output = Result<i64, EngineError>> + Send + 'static, EngineError> {
        let request = http::Request::post(format!("/containers/{name}/wait?condition={condition}"))
            .body(Empty::<Bytes>::new())
            .map_err(|error| EngineError::Api {
                engine: self.label.clone(),
                message: error.to_string(),
            })?;
        let response = crate::transport::send(&self.connect, request)
            .await
            .map_err(|error| self.failed_request(error))?;
        let status = response.status();
        let engine = self.label.clone();
        let body = response.into_body().collect();
        if !status.is_success() {
            let body = body.await.map(|body| body.to_bytes()).unwrap_or_default();
            return Err(EngineError::Api {
                engine,
                message: crate::response_message(&body),
            });
        }
        Ok(async move {
            let broken = |message: String| EngineError::StreamBroken {
                engine: engine.clone(),
                during: "the smoke test",
                message,
            };
            let body = body
                .await
                .map_err(|error| broken(format!("waiting for the container: {error}")))?
                .to_bytes();
            serde_json::from_slice::<ContainerWaitResponse>(&body)
                .map(|answer| answer.status_code)
                .map_err(|error| {
                    broken(format!(
                        "the wait's answer {:?} gave no exit code: {error}",
                        String::from_utf8_lossy(&body)
                    ))
                })
        })
    }

    /// A request that failed: the engine's answer as [`EngineError::Api`],
    /// a failure to reach it as [`EngineError::Connect`].
    fn failed_request(&self, error: bollard::errors::Error) -> EngineError {
        if answered(&error) {
            crate::api_error(&self.label, error)
        } else {
            EngineError::Connect {
                engine: self.label.clone(),
                source: std::io::Error::other(crate::error_message_of(&error)),
            }
        }
    }

    /// The engine refused to start the command ([`EngineError::StartFailed`]).
    fn start_failed(&self, error: bollard::errors::Error) -> EngineError {
        EngineError::StartFailed {
            engine: self.label.clone(),
            message: crate::error_message(error),
        }
    }

    /// The command's output stream broke while it ran.
    fn broken(&self, error: &bollard::errors::Error) -> EngineError {
        EngineError::StreamBroken {
            engine: self.label.clone(),
            during: "the smoke test",
            message: crate::error_message_of(error),
        }
    }

    /// `request` (named `what`, as `POST /containers/<name>/attach`), given
    /// up as [`EngineError::Timeout`] after [`REQUEST_TIMEOUT`]; not tried
    /// again.
    async fn within_limit<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        tokio::time::timeout(REQUEST_TIMEOUT, request)
            .await
            .map_err(|_elapsed| EngineError::Timeout {
                engine: self.label.clone(),
                request: what.to_owned(),
                limit: REQUEST_TIMEOUT,
            })?
    }

    /// Removes container `name`, forced (a running one is killed), with
    /// its anonymous volumes. A container that is gone already (`404`), or
    /// that the engine is removing itself (`409`, removal already in
    /// progress: its AutoRemove), counts as removed.
    pub async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        if self.kind == EngineKind::Podman {
            // Podman's forced removal first stops the container with its
            // stop timeout (10 s), which a command that ignores SIGTERM (a
            // PID 1 without a handler) waits out: kill it at once instead.
            // A container that is not running answers an error, which the
            // removal below settles.
            let _ = crate::retry::request(
                &self.label,
                &*self.reporter,
                &format!("POST /containers/{name}/kill"),
                || {
                    self.docker.kill_container(
                        name,
                        Some(bollard::query_parameters::KillContainerOptions {
                            signal: "KILL".to_owned(),
                        }),
                    )
                },
            )
            .await;
        }
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let removed = crate::retry::request(
            &self.label,
            &*self.reporter,
            &format!("DELETE /containers/{name}"),
            || self.docker.remove_container(name, Some(options.clone())),
        )
        .await?;
        match removed {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("in progress") => Ok(()),
            Err(error) => Err(self.failed_request(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_end_of_the_output() {
        let mut tail = Tail::new(8);
        tail.push(b"abc");
        tail.push(b"defghij");
        assert_eq!(tail.text(), "cdefghij");
        tail.push(b"0123456789");
        assert_eq!(tail.text(), "23456789");
    }

    fn out(text: &str) -> LogOutput {
        LogOutput::StdOut {
            message: Bytes::from(text.to_owned()),
        }
    }

    fn err(text: &str) -> LogOutput {
        LogOutput::StdErr {
            message: Bytes::from(text.to_owned()),
        }
    }

    #[test]
    fn shows_the_last_lines_marked_escaped_and_cut() {
        let mut output = Output::new();
        for item in [
            out("a\n\nb  \nc"),
            err("oops\r\n"),
            out("ontinued\n"),
            out("\u{1b}[31mred\u{1b}[0m\n"),
            out(&format!("{}\n", "x".repeat(600))),
            err("no newline"),
        ] {
            output.push(item);
        }
        assert_eq!(output.stdout.text().len(), 8 + 9 + 13 + 601);
        assert_eq!(
            output.tail(),
            vec![
                "a".to_owned(),
                "b".to_owned(),
                "stderr: oops".to_owned(),
                "continued".to_owned(),
                "\\u{1b}[31mred\\u{1b}[0m".to_owned(),
                format!("{}…", "x".repeat(LINE_CHARS)),
                "stderr: no newline".to_owned(),
            ]
        );
        let mut many = Output::new();
        for line in 0..30 {
            many.push(out(&format!("{line}\n")));
        }
        assert_eq!(many.tail().first().map(String::as_str), Some("10"));
        assert_eq!(many.tail().len(), OUTPUT_TAIL_LINES);
    }

    #[test]
    fn keeps_a_bounded_output() {
        let mut output = Output::new();
        let chunk = "y\n".repeat(16 * 1024);
        for _ in 0..100 {
            output.push(out(&chunk));
        }
        assert!(output.kept < STDOUT_KEPT + chunk.len(), "{}", output.kept);
        assert!(output.kept >= STDOUT_KEPT);
        assert_eq!(output.tail(), vec!["y".to_owned(); OUTPUT_TAIL_LINES]);
    }

    /// The SpecGenerator of a Podman smoke container: the run's image,
    /// name, argv (as the entrypoint, with no command), labels and
    /// platform, no network, no log, not removed by the engine, and
    /// rlimits only on the second try.
    #[test]
    fn a_podman_container_is_specified_like_a_docker_one() {
        let platform: Platform = "linux/arm/v7".parse().unwrap();
        let argv = ["/bin/app".to_owned(), "--version".to_owned()];
        let run = SmokeRun {
            image: "registry.example/app@sha256:aa",
            name: "mab-1-linux-arm-v7",
            platform: &platform,
            argv: &argv,
            timeout: Duration::from_secs(5),
            labels: HashMap::from([("mab.build".to_owned(), "1".to_owned())]),
        };
        let spec: serde_json::Value =
            serde_json::from_slice(&podman_create_body(&run, Rlimits::EngineDefault)).unwrap();
        assert_eq!(
            spec,
            serde_json::json!({
                "name": "mab-1-linux-arm-v7",
                "image": "registry.example/app@sha256:aa",
                "entrypoint": ["/bin/app", "--version"],
                "command": [],
                "labels": {"mab.build": "1"},
                "terminal": false,
                "stdin": false,
                "netns": {"nsmode": "none"},
                "log_configuration": {"driver": "none"},
                "image_os": "linux",
                "image_arch": "arm",
                "image_variant": "v7",
            })
        );
        let spec: serde_json::Value =
            serde_json::from_slice(&podman_create_body(&run, Rlimits::Fallback)).unwrap();
        assert_eq!(
            spec["r_limits"],
            serde_json::json!([
                {"type": "nofile", "soft": 1024, "hard": 1024},
                {"type": "nproc", "soft": 1024, "hard": 1024},
            ])
        );
    }

    /// Only runc's refusal of the rlimits, as the engine answered it,
    /// makes a Podman container be created again.
    #[test]
    fn rlimit_refusals_are_told_apart() {
        let refused = "preparing container 94 for attach: runc: runc create failed: unable to start container process: error during container init: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted: OCI permission denied";
        let start_failed = |message: &str| EngineError::StartFailed {
            engine: "p".to_owned(),
            message: message.to_owned(),
        };
        assert!(rlimits_refused(&start_failed(refused)));
        assert!(!rlimits_refused(&start_failed(
            "exec: \"/bin/x\": stat /bin/x: no such file or directory"
        )));
        assert!(!rlimits_refused(&EngineError::Api {
            engine: "p".to_owned(),
            message: refused.to_owned(),
        }));
    }

    /// Removals left to tasks are awaited up to the limit; those that
    /// failed or did not end then are returned, with why, and their
    /// warning names the runner, the container and `docker rm -f`.
    #[tokio::test]
    async fn pending_removals_are_awaited_up_to_a_limit() {
        let removal = |container: &str| Removal {
            runner: "pi".to_owned(),
            container: container.to_owned(),
            engine: EngineKind::Docker,
        };
        PENDING.leave(removal("mab-1-done"), async { Ok(()) });
        PENDING.leave(removal("mab-1-refused"), async {
            Err("the engine refused".to_owned())
        });
        PENDING.leave(
            removal("mab-1-hung"),
            std::future::pending::<Result<(), String>>(),
        );
        let started = Instant::now();
        let left = finish_removals(Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        let named: Vec<(&str, &str)> = left
            .iter()
            .map(|left| (left.container.as_str(), left.why.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("mab-1-refused", "the engine refused"),
                ("mab-1-hung", "its removal did not end within 300ms"),
            ]
        );
        assert_eq!(
            left[0].warning(),
            "could not remove the smoke-test container mab-1-refused on runner `pi` (the engine refused); remove it there with `docker rm -f mab-1-refused`"
        );
        let podman = LeftContainer {
            engine: EngineKind::Podman,
            ..left[0].clone()
        };
        assert!(
            podman
                .warning()
                .ends_with("remove it there with `podman rm -f mab-1-refused`"),
            "{}",
            podman.warning()
        );
        assert!(finish_removals(Duration::from_millis(10)).await.is_empty());
    }
}
