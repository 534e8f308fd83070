//! The live worker: one platform's job on its runner's engine (build,
//! push under a staging tag, read back and verify, keep the image).

use std::collections::HashMap;
use std::time::Instant;

use mab_config::{Binaries, NetworkMode, Platform, Project, Runner, SmokeTest};
use mab_context::BuildContext;
use mab_engine::{BuildEvent, BuildSpec, Ended, EngineError, EngineKind, SmokeOutcome, SmokeRun};
use mab_events::{ErrorKind, Phase};
use mab_registry::Child;

use super::publish::{platform_slug, staging_tag, Registry};

use crate::ops::connect::{Connected, Unreachable};
use crate::ops::jobs::{Built, JobFailure, JobSpec, SlotGuard, TestRun, Worker};
use crate::ops::publishing::BuildControl;
use crate::progress::{Event, Reporter};

/// A build id: short, unique enough among concurrent builds of one image.
pub(super) fn build_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let seed = format!("{nanos}-{}", std::process::id());
    mab_registry::sha256_digest(seed.as_bytes())["sha256:".len()..]
        .chars()
        .take(12)
        .collect()
}

/// The name a platform's image has in its engine from its build to its
/// push: `<image>:mab-<build id>-<platform slug>`, unique to this build, so
/// that another build of the image on the same engine cannot take its
/// place while it builds.
fn build_name(image: &str, build_id: &str, platform: &Platform) -> String {
    format!("{image}:mab-{build_id}-{}", platform_slug(platform))
}

/// What a job's checks found, past the build: the registry's view of the
/// image (`None` with `--no-push`), the binary check's report (`None` when
/// `[verify] binaries = "off"`) and the smoke run that passed (`None`
/// without `[test]` or with `--no-test`).
struct Checked {
    child: Option<Child>,
    binaries: Option<mab_verify::Report>,
    test: Option<TestRun>,
}

/// The [`Worker`] of a real build: each job on its runner's engine, read
/// back through the [`Registry`] `R` it was pushed to (none with
/// `--no-push`).
pub(super) struct LiveWorker<'a, R> {
    pub(super) project: &'a Project,
    /// The registry of the image (`mab_registry::registry_of`), for hints.
    pub(super) registry: &'a str,
    /// The context, Dockerfile and ignore file every job sends.
    pub(super) context: &'a BuildContext,
    /// The bytes of the context's files, after `.dockerignore`: the most
    /// a job's context sends ([`Event::ContextSent`]).
    pub(super) context_total: u64,
    pub(super) build_id: String,
    pub(super) runners: HashMap<String, &'a Runner>,
    pub(super) connected: &'a HashMap<String, Result<Connected, Unreachable>>,
    pub(super) repository: Option<&'a R>,
    pub(super) credentials: Option<mab_registry::Credentials>,
    /// `--network`, over each runner's own `network`.
    pub(super) network: Option<NetworkMode>,
    /// Where registry credentials come from, for the engines' pulls.
    pub(super) credential_sources: mab_registry::CredentialSources,
    /// `--secret` and `[image.secrets]`, read before anything was built.
    pub(super) secrets: mab_engine::Secrets,
    /// `--ssh`: the agents' sockets.
    pub(super) ssh_agents: mab_engine::SshAgents,
    pub(super) reporter: &'a dyn Reporter,
    /// Set by a signal to stop the build: its jobs are dropped.
    pub(super) control: &'a BuildControl,
    /// `[test]`, unless `--no-test`.
    pub(super) test: Option<&'a SmokeTest>,
    /// Each platform's cache source, `REPO@sha256:…` (`[cache]`,
    /// `--cache-from`); a platform without one builds with its runner's
    /// cache only.
    pub(super) cache_sources: &'a std::collections::BTreeMap<Platform, String>,
    /// The cache sources imported, by platform: each job's is set once its
    /// build ran, and taken out when BuildKit could not import it (the
    /// metadata's `cache_from`).
    pub(super) cache_imported: &'a std::sync::Mutex<std::collections::BTreeMap<Platform, String>>,
}

/// The label every smoke-test container carries, with the build id as
/// its value, so that one left behind can be found (`docker ps -a
/// --filter label=mab.build`); `mab.image` (the repository) and
/// `mab.platform` go with it.
const BUILD_LABEL: &str = "mab.build";

impl<R: Registry> LiveWorker<'_, R> {
    fn build_name(&self, platform: &Platform) -> String {
        build_name(&self.project.image, &self.build_id, platform)
    }

    /// Records in [`LiveWorker::cache_imported`] whether `job`'s build,
    /// which ran, imported its cache source (none when `import_failed`,
    /// or when it had none), and with a registry cache reports it
    /// ([`Event::CacheSource`]).
    fn record_cache_import(&self, job: &JobSpec, import_failed: bool) {
        let source = self
            .cache_sources
            .get(&job.platform)
            .filter(|_| !import_failed)
            .cloned();
        {
            let mut imported = self
                .cache_imported
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &source {
                Some(source) => imported.insert(job.platform.clone(), source.clone()),
                None => imported.remove(&job.platform),
            };
        }
        if self.project.cache.from == mab_config::CacheFrom::Registry {
            self.reporter.report(Event::CacheSource {
                platform: job.platform.clone(),
                runner: job.runner.clone(),
                source,
            });
        }
    }

    /// Builds, pushes and verifies `job`'s image, checks its programs,
    /// then runs its smoke test.
    async fn build_one(&self, job: &JobSpec) -> Result<Checked, JobFailure> {
        let fail = |stage: Stage, message: String, log_tail: Vec<String>| {
            stage.failure(job, message, log_tail, self.registry)
        };
        let connected = match &self.connected[&job.runner] {
            Ok(connected) => connected,
            Err(unreachable) => {
                return Err(movable(fail(
                    Stage::Runner,
                    unreachable.message.clone(),
                    Vec::new(),
                )))
            }
        };
        let engine = &connected.engine;
        let image = self.build_name(&job.platform);
        let spec = BuildSpec {
            image: image.clone(),
            platform: job.platform.clone(),
            target: self.project.target.clone(),
            args: self.project.args.clone(),
            labels: self.project.labels.clone(),
            network: self
                .network
                .unwrap_or(self.runners[&job.runner].network)
                .as_str()
                .to_owned(),
            cache_from: self
                .cache_sources
                .get(&job.platform)
                .cloned()
                .into_iter()
                .collect(),
            credential_sources: Some(self.credential_sources.clone()),
            secrets: self.secrets.clone(),
            ssh_agents: self.ssh_agents.clone(),
        };
        let phase = self.start_phase(job, Phase::Build);
        let mut import_failed = false;
        let built = engine
            .build(&spec, self.context, |event| {
                let (platform, runner) = (job.platform.clone(), job.runner.clone());
                self.reporter.report(match event {
                    BuildEvent::CacheImportFailed { reference, error } => {
                        import_failed = true;
                        Event::Warning {
                            message: match engine.kind() {
                                EngineKind::Podman => format!(
                                    "building {platform} on {runner} without its cache source {reference}: {error}; hint: list {platform} on a runner whose engine is Docker's to build it with the registry cache (docs/podman.md)"
                                ),
                                EngineKind::Docker => format!(
                                    "building {platform} on {runner} without its cache source: the engine could not import {reference}: {error}; hint: check that runner `{runner}`'s engine can pull from that registry (its credentials for it, and its TLS trust), e.g. `docker pull {reference}` there"
                                ),
                            },
                        }
                    }
                    BuildEvent::Step { name, cached } => Event::Step {
                        platform,
                        runner,
                        step: name,
                        cached,
                    },
                    BuildEvent::Log(line) => Event::Log {
                        platform,
                        runner,
                        line,
                    },
                    BuildEvent::Context { sent } => Event::ContextSent {
                        platform,
                        runner,
                        bytes: sent,
                        total: self.context_total,
                    },
                })
            })
            .await;
        if matches!(built, Ok(_) | Err(EngineError::BuildFailed { .. })) {
            self.record_cache_import(job, import_failed);
        }
        match built {
            Ok(stats) => phase.finished(Some(stats.context_bytes)),
            Err(EngineError::BuildFailed {
                message,
                log_tail,
                step,
                ..
            }) => {
                let message = match step.and_then(|step| self.locate_step(&step)) {
                    Some(located) => format!("{located}: {message}"),
                    None => message,
                };
                return Err(fail(Stage::Build, message, log_tail));
            }
            // The build never started: another runner may take it.
            Err(
                error @ (EngineError::NoAnswer { .. }
                | EngineError::Connect { .. }
                | EngineError::Timeout { .. }),
            ) => return Err(movable(fail(Stage::Runner, error.to_string(), Vec::new()))),
            // Lost midway: another runner may take it only when this
            // engine is gone too (a reset connection, a killed engine).
            Err(error @ EngineError::StreamBroken { .. }) => {
                let failure = fail(Stage::Runner, error.to_string(), Vec::new());
                return Err(match engine.ping().await {
                    Ok(()) => failure,
                    Err(ping) => movable(JobFailure {
                        message: format!(
                            "{}; then a ping of its engine failed too: {ping}",
                            failure.message
                        ),
                        ..failure
                    }),
                });
            }
            // The copy of the context on a Podman runner's host: the
            // context's own fault fails here as a usage error; the host's
            // lets another runner take the platform.
            Err(EngineError::ContextCopy { engine, error }) => {
                let message = format!("runner `{engine}`: {error}");
                let failure = JobFailure {
                    hint: error.hint().unwrap_or_else(|| {
                        format!("check runner `{engine}` with `mab runners check`")
                    }),
                    ..fail(Stage::Runner, message, Vec::new())
                };
                return Err(match error.is_usage() {
                    true => JobFailure {
                        kind: ErrorKind::Usage,
                        ..failure
                    },
                    false => movable(failure),
                });
            }
            Err(error @ EngineError::Context(_)) => {
                return Err(JobFailure {
                    kind: ErrorKind::Usage,
                    ..fail(Stage::Runner, error.to_string(), Vec::new())
                })
            }
            Err(error) => return Err(fail(Stage::Runner, error.to_string(), Vec::new())),
        }

        let (child, binaries) = match self.repository {
            None => {
                let phase = self.start_phase(job, Phase::Verify);
                let found = engine
                    .image_platform(&image)
                    .await
                    .map_err(|error| fail(Stage::Runner, error.to_string(), Vec::new()))?;
                mab_registry::check_platform(&job.platform, &found)
                    .map_err(|error| fail(Stage::Verify, error.to_string(), Vec::new()))?;
                phase.finished(None);
                let binaries = self
                    .check_binaries(
                        job,
                        |check| check_exported(engine, &image, check),
                        // Nothing was pushed.
                        &|stage, message, tail| JobFailure {
                            pushed: false,
                            ..fail(stage, message, tail)
                        },
                    )
                    .await?;
                (None, binaries)
            }
            Some(repository) => {
                let phase = self.start_phase(job, Phase::Push);
                // The staging tag is shared by every build of the platform:
                // given to this image only now, and every later step goes
                // by the digest the push reports.
                let staging_tag = staging_tag(&job.platform);
                engine
                    .tag(&image, &self.project.image, &staging_tag)
                    .await
                    .map_err(|error| fail(Stage::Push, error.to_string(), Vec::new()))?;
                let digest = engine
                    .push(&self.project.image, &staging_tag, self.credentials.as_ref())
                    .await
                    .map_err(|error| fail(Stage::Push, error.to_string(), Vec::new()))?;
                phase.finished(None);
                self.reporter.report(Event::Pushed {
                    platform: job.platform.clone(),
                    runner: job.runner.clone(),
                    digest: digest.clone(),
                });
                let phase = self.start_phase(job, Phase::Verify);
                // Failing from here on, the image is in the registry.
                let pushed = |stage: Stage, message: String| JobFailure {
                    digest: Some(digest.clone()),
                    ..fail(stage, message, Vec::new())
                };
                let child = repository
                    .describe(&digest)
                    .await
                    .map_err(|error| pushed(Stage::ReadBack, error.to_string()))?;
                mab_registry::check_platform(&job.platform, &child.platform)
                    .map_err(|error| pushed(Stage::Verify, error.to_string()))?;
                phase.finished(Some(child.image_size));
                let binaries = self
                    .check_binaries(
                        job,
                        |check| {
                            check_pushed(repository, self.registry, self.reporter, &digest, check)
                        },
                        &|stage, message, tail| JobFailure {
                            digest: Some(digest.clone()),
                            ..fail(stage, message, tail)
                        },
                    )
                    .await?;
                (Some(child), binaries)
            }
        };
        let Some(test) = self.test else {
            return Ok(Checked {
                child,
                binaries,
                test: None,
            });
        };
        let digest = child.as_ref().map(|child| child.digest.clone());
        let passed = self
            .smoke_test(job, connected, &image, test)
            .await
            .map_err(|failure| JobFailure {
                digest: digest.clone(),
                pushed: digest.is_some(),
                // The check passed: its report stays in the metadata.
                binaries: binaries.clone(),
                ..failure
            })?;
        Ok(Checked {
            child,
            binaries,
            test: Some(passed),
        })
    }

    /// Runs `test` in a container of `image` on the runner that built it
    /// (`connected`, under its QEMU when the build was emulated: the job's
    /// platform goes with the request) as [`Phase::Test`]. The container is
    /// named `mab-<build id>-<platform slug>`.
    ///
    /// Only the engine's own refusal to start the command fails the job as
    /// [`ErrorKind::Test`] (the image lacks the program); an emulated job
    /// whose runner has no QEMU handler for the platform, and every other
    /// engine error (a lost connection, a request the engine refused), are
    /// the runner's.
    async fn smoke_test(
        &self,
        job: &JobSpec,
        connected: &Connected,
        image: &str,
        test: &SmokeTest,
    ) -> Result<TestRun, JobFailure> {
        let phase = self.start_phase(job, Phase::Test);
        let name = format!("mab-{}-{}", self.build_id, platform_slug(&job.platform));
        let run = SmokeRun {
            image,
            name: &name,
            platform: &job.platform,
            argv: &test.run,
            timeout: test.timeout,
            labels: HashMap::from([
                (BUILD_LABEL.to_owned(), self.build_id.clone()),
                ("mab.image".to_owned(), self.project.image.clone()),
                ("mab.platform".to_owned(), job.platform.to_string()),
            ]),
        };
        let runner_failure = |message: String| {
            Stage::Runner.failure(
                job,
                format!("{}: {message}", test_context(test, job)),
                Vec::new(),
                self.registry,
            )
        };
        let outcome = match connected.engine.smoke_run(&run).await {
            Ok(outcome) => outcome,
            Err(EngineError::StartFailed { message, .. }) => {
                if let Some(handler) = missing_handler(job, &connected.binfmt) {
                    return Err(JobFailure {
                        hint: format!(
                            "register the QEMU handler {handler} on runner `{}` (`docker run --privileged --rm tonistiigi/binfmt --install all`, or the qemu-user-static package) or run {} on a native runner",
                            job.runner, job.platform
                        ),
                        ..runner_failure(format!(
                            "the runner emulates {} but its binfmt_misc has no QEMU handler {handler}, so the image's programs cannot run there: {message}",
                            job.platform
                        ))
                    });
                }
                let (message, hint) = test_failure(test, job, &TestEnd::NotStarted(&message));
                return Err(JobFailure {
                    hint,
                    ..Stage::Test.failure(job, message, Vec::new(), self.registry)
                });
            }
            Err(error) => return Err(runner_failure(error.to_string())),
        };
        match test_verdict(test, job, &outcome) {
            Ok(passed) => {
                phase.finished(None);
                Ok(passed)
            }
            Err((message, hint)) => Err(JobFailure {
                hint,
                test: match outcome.ended {
                    Ended::Exited(exit_code) => {
                        Some(TestRun::of(test, exit_code, outcome.seconds, false))
                    }
                    Ended::TimedOut => None,
                },
                ..Stage::Test.failure(job, message, outcome.output_tail, self.registry)
            }),
        }
    }

    /// The `check` phase of `job` when `[verify] binaries` is not off:
    /// `read` runs the check over the image's layers (a failure to read
    /// them fails the job at the stage [`CheckReadError::stage`] gives),
    /// then [`LiveWorker::judge`] decides; `failed` makes a failure of a
    /// stage.
    async fn check_binaries<F>(
        &self,
        job: &JobSpec,
        read: impl FnOnce(mab_verify::Check) -> F,
        failed: &(dyn Fn(Stage, String, Vec<String>) -> JobFailure + Sync),
    ) -> Result<Option<mab_verify::Report>, JobFailure>
    where
        F: std::future::Future<Output = Result<(mab_verify::Report, u64), CheckReadError>>,
    {
        let Some(check) = self.binaries_check(job) else {
            return Ok(None);
        };
        let phase = self.start_phase(job, Phase::Check);
        let (report, bytes) = read(check).await.map_err(|error| {
            let (stage, kind, hint) = error.stage();
            let failure = failed(stage, error.to_string(), Vec::new());
            JobFailure {
                kind: kind.unwrap_or(failure.kind),
                hint: hint.unwrap_or(failure.hint.clone()),
                ..failure
            }
        })?;
        // A check that fails ends in the job's failure, not in
        // `phase_finished` (docs/progress.md).
        match self.judge(job, &report) {
            Ok(()) => {
                phase.finished(Some(bytes));
                Ok(Some(report))
            }
            Err((message, tail)) => Err(JobFailure {
                binaries: Some(report),
                ..failed(Stage::Binaries, message, tail)
            }),
        }
    }

    /// The binary check of `job`'s image by `[verify]`; `None` when
    /// `binaries = "off"`. The ignore patterns were compiled when mab.toml
    /// was read.
    fn binaries_check(&self, job: &JobSpec) -> Option<mab_verify::Check> {
        if self.project.verify.binaries == Binaries::Off {
            return None;
        }
        let rules = mab_verify::Rules {
            ignore: self.project.verify.ignored.clone(),
        };
        Some(mab_verify::Check::new(&job.platform, rules))
    }

    /// Reports the warnings of [`judge`] and returns its failure.
    fn judge(
        &self,
        job: &JobSpec,
        report: &mab_verify::Report,
    ) -> Result<(), (String, Vec<String>)> {
        let (warnings, failure) = judge(&job.platform, self.project.verify.binaries, report);
        for message in warnings {
            self.reporter.report(Event::Warning { message });
        }
        failure.map_or(Ok(()), Err)
    }

    /// Reports [`Event::PhaseStarted`] for `phase` of `job`; the
    /// [`RunningPhase`] reports its end.
    fn start_phase<'a>(&'a self, job: &'a JobSpec, phase: Phase) -> RunningPhase<'a> {
        self.reporter.report(Event::PhaseStarted {
            platform: job.platform.clone(),
            runner: job.runner.clone(),
            phase,
        });
        RunningPhase {
            reporter: self.reporter,
            job,
            phase,
            started: Instant::now(),
        }
    }

    /// `FILE:LINE: STEP` for the build step BuildKit named `step`, where
    /// the Dockerfile holds it ([`mab_context::step_line`]); `None` when
    /// that cannot be told for sure.
    fn locate_step(&self, step: &str) -> Option<String> {
        let dockerfile = self.context.dockerfile();
        let text = std::fs::read_to_string(dockerfile).ok()?;
        let line = mab_context::step_line(&text, step)?;
        Some(format!("{}:{line}: {step}", dockerfile.display()))
    }

    /// The engine keeps the newest image per platform under a stable name,
    /// `<image>:mab-<platform slug>`, so that repeated builds do not pile up
    /// names there: the build's own name goes, and so does the staging tag
    /// (which only the push needed). Only tidying: a failure is a warning.
    async fn keep_image(&self, job: &JobSpec) {
        let Ok(connected) = &self.connected[&job.runner] else {
            return;
        };
        let image = self.build_name(&job.platform);
        let kept_tag = format!("mab-{}", platform_slug(&job.platform));
        match connected
            .engine
            .tag(&image, &self.project.image, &kept_tag)
            .await
        {
            Ok(()) => {
                connected.engine.remove_image(&image).await;
                if self.repository.is_some() {
                    let staged = format!("{}:{}", self.project.image, staging_tag(&job.platform));
                    connected.engine.remove_image(&staged).await;
                }
            }
            Err(error) => self.reporter.report(Event::Warning {
                message: format!(
                    "could not keep {image} as {}:{kept_tag}: {error}",
                    self.project.image
                ),
            }),
        }
    }
}

/// What the binary check's `report` on a `platform` image means under
/// `[verify] binaries`: the warnings to report, one per kind for the
/// platform (a platform not checked; the files of the 32-bit
/// compatibility target; with `"warn"` the mismatches), each with its
/// count and the first [`MISMATCHES_LISTED`] files; and with `"error"` and
/// a mismatch the job's failure: its message (naming the first file, what
/// it is and what the platform needs, with the count when several; it is
/// also the metadata's `error.message`, so it refers to nothing under it)
/// and the lines under it in the terminal (none when there is one file,
/// else a heading and the first [`MISMATCHES_LISTED`] files).
fn judge(
    platform: &Platform,
    binaries: Binaries,
    report: &mab_verify::Report,
) -> (Vec<String>, Option<(String, Vec<String>)>) {
    let mut warnings: Vec<String> = report.note.iter().cloned().collect();
    if let Some(first) = report.warnings.first() {
        warnings.push(format!(
            "{platform}: {} of the 32-bit architecture {platform} also runs ({}; allowed, `[verify] ignore` silences them): {}",
            files(report.warnings.len()),
            first.expected,
            listed(&report.warnings)
        ));
    }
    let Some(first) = report.mismatches.first() else {
        return (warnings, None);
    };
    if binaries != Binaries::Error {
        warnings.push(format!(
            "{platform}: {} of another architecture, but {platform} needs {} (`[verify] binaries = \"warn\"`): {}",
            files(report.mismatches.len()),
            first.expected,
            listed(&report.mismatches)
        ));
        return (warnings, None);
    }
    let count = report.mismatches.len();
    // The message stands alone (it is also the metadata's
    // `error.message`); the lines under it in the terminal say which
    // files they are.
    let message = match count {
        1 => format!(
            "the {platform} image holds a program of another architecture: {} is {}, but {platform} needs {}",
            first.path, first.found, first.expected
        ),
        _ => format!(
            "the {platform} image holds {count} programs of another architecture, but {platform} needs {}: {} is {}, and {} more",
            first.expected,
            first.path,
            first.found,
            count - 1
        ),
    };
    let heading = match count {
        1 => return (warnings, Some((message, Vec::new()))),
        _ if count <= MISMATCHES_LISTED => format!("the {count} files:"),
        _ => format!("the first {MISMATCHES_LISTED} of the {count} files:"),
    };
    let files = report
        .mismatches
        .iter()
        .take(MISMATCHES_LISTED)
        .map(|finding| format!("{}: {}", finding.path, finding.found));
    let tail = std::iter::once(heading).chain(files).collect();
    (warnings, Some((message, tail)))
}

/// `1 file`, `3 files`.
fn files(count: usize) -> String {
    match count {
        1 => "1 file".to_owned(),
        _ => format!("{count} files"),
    }
}

/// The first [`MISMATCHES_LISTED`] findings as `PATH is FOUND`, joined by
/// `; `, with how many more there are.
fn listed(findings: &[mab_verify::Finding]) -> String {
    let mut text = findings
        .iter()
        .take(MISMATCHES_LISTED)
        .map(|finding| format!("{} is {}", finding.path, finding.found))
        .collect::<Vec<_>>()
        .join("; ");
    if findings.len() > MISMATCHES_LISTED {
        text.push_str(&format!(
            "; and {} more",
            findings.len() - MISMATCHES_LISTED
        ));
    }
    text
}

/// How many mismatched files a failure lists under its message.
const MISMATCHES_LISTED: usize = 20;

/// Why the binary check could not read an image's layers.
#[derive(Debug, thiserror::Error)]
enum CheckReadError {
    /// A layer of a media type that is not a tar stream mab reads.
    #[error("the binary check cannot read layer {digest}: its media type `{media_type}` is not a tar layer (uncompressed, gzip or zstd)")]
    MediaType { digest: String, media_type: String },
    /// The registry would not give the manifest or a layer.
    #[error(transparent)]
    Registry(#[from] mab_registry::RegistryError),
    /// A layer's stream from the registry broke or was not a tar archive,
    /// each of its tries.
    #[error(transparent)]
    Blob(mab_verify::VerifyError),
    /// The engine would not export the image, or its export broke.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The engine's export could not be read as a `docker save` archive.
    #[error(transparent)]
    Saved(mab_verify::VerifyError),
    /// The export could not be written to this machine's temporary
    /// directory.
    #[error("could not write the exported image {image} to a temporary file in {} on this machine: {source}", .directory.display())]
    Spool {
        image: String,
        directory: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl CheckReadError {
    /// The stage, cause and hint of the job's failure; `None` keeps the
    /// stage's own.
    fn stage(&self) -> (Stage, Option<ErrorKind>, Option<String>) {
        match self {
            CheckReadError::MediaType { .. } => (
                Stage::Binaries,
                Some(ErrorKind::Usage),
                Some("the binary check reads tar layers only: uncompressed, gzip or zstd (`application/vnd.oci.image.layer.v1.tar`, `+gzip`, `+zstd`, and Docker's `rootfs.diff.tar.gzip`); set `[verify] binaries = \"off\"` in mab.toml to publish such an image unchecked (docs/verify.md)".to_owned()),
            ),
            CheckReadError::Registry(_) | CheckReadError::Blob(_) => (Stage::ReadBack, None, None),
            CheckReadError::Saved(mab_verify::VerifyError::SavedPlatform { .. }) => {
                (Stage::Verify, None, None)
            }
            CheckReadError::Engine(_) | CheckReadError::Saved(_) => (Stage::Runner, None, None),
            CheckReadError::Spool { directory, .. } => (
                Stage::Runner,
                None,
                Some(format!(
                    "with --no-push the image's export (as large as the image uncompressed) is spooled to {}: free space there, or set TMPDIR to a directory with room (docs/verify.md)",
                    directory.display()
                )),
            ),
        }
    }
}

/// How many times a layer whose stream broke midway is read again from
/// its start, after the backoff of other requests
/// ([`mab_events::retry::policy`]).
const LAYER_RETRIES: usize = 2;

/// The binary check of the pushed image `digest`: its layers streamed from
/// the registry in order, each read on a blocking thread as it arrives. A
/// layer whose stream breaks is read again from its start (the check only
/// changes by a layer read whole), up to [`LAYER_RETRIES`] times, each
/// retry reported as the registry's. Returns the report and the bytes of
/// the layers read (as stored).
async fn check_pushed<R: Registry>(
    repository: &R,
    registry: &str,
    reporter: &dyn Reporter,
    digest: &str,
    mut check: mab_verify::Check,
) -> Result<(mab_verify::Report, u64), CheckReadError> {
    use backon::BackoffBuilder;
    let mut bytes = 0;
    if !check.inspects() {
        return Ok((check.report(), bytes));
    }
    let layers = repository.layers(digest).await?;
    for layer in layers {
        let compression =
            mab_verify::Compression::of_media_type(&layer.media_type).ok_or_else(|| {
                CheckReadError::MediaType {
                    digest: layer.digest.clone(),
                    media_type: layer.media_type.clone(),
                }
            })?;
        let request = format!("GET blob {} of {}", layer.digest, repository.name());
        let notifier = mab_events::retry::Notifier::new(
            reporter,
            mab_events::RetryTarget::Registry {
                registry: registry.to_owned(),
            },
            &request,
        );
        let mut delays = mab_events::retry::policy()
            .with_max_times(LAYER_RETRIES)
            .build();
        check = loop {
            let blob = repository.blob(&layer.digest).await?;
            match check
                .layer_async(layer.digest.clone(), blob, compression)
                .await
            {
                Ok(read) => break read,
                Err(mab_verify::LayerFailed {
                    check: Some(back),
                    error,
                }) => match delays.next() {
                    Some(delay) => {
                        notifier.retrying(delay, error.to_string());
                        tokio::time::sleep(delay).await;
                        check = *back;
                    }
                    None => return Err(CheckReadError::Blob(error)),
                },
                Err(failed) => return Err(CheckReadError::Blob(failed.error)),
            }
        };
        bytes += layer.size;
    }
    Ok((check.report(), bytes))
}

/// The binary check of `image` in `engine` (`--no-push`): its `docker
/// save` archive ([`mab_engine::Engine::export_image`]) spooled to a
/// temporary file, then its layers read in the order its `manifest.json`
/// gives. Returns the report and the archive's size.
async fn check_exported(
    engine: &mab_engine::Engine,
    image: &str,
    check: mab_verify::Check,
) -> Result<(mab_verify::Report, u64), CheckReadError> {
    // An image without layers has no programs, and `docker save`
    // refuses it.
    if !check.inspects()
        || engine
            .image_layer_count(image)
            .await
            .map_err(CheckReadError::Engine)?
            == 0
    {
        return Ok((check.report(), 0));
    }
    let spool = engine
        .export_image(image)
        .await
        .map_err(|error| match error {
            EngineError::Spool { source, .. } => CheckReadError::Spool {
                image: image.to_owned(),
                directory: std::env::temp_dir(),
                source,
            },
            error => CheckReadError::Engine(error),
        })?;
    let bytes = spool
        .metadata()
        .map(|metadata| metadata.len())
        .unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        mab_verify::check_saved(&spool, check)
            .map(|report| (report, bytes))
            .map_err(CheckReadError::Saved)
    })
    .await
    .map_err(|error| {
        CheckReadError::Saved(mab_verify::VerifyError::Task {
            layer: image.to_owned(),
            message: error.to_string(),
        })
    })?
}

/// `failure`, marked as one another runner may retry.
pub(super) fn movable(failure: JobFailure) -> JobFailure {
    JobFailure {
        movable: true,
        ..failure
    }
}

/// Phrases of the errors BuildKit and runc give when a `RUN` step cannot
/// get its own network: creating the network, a veth pair or the network
/// namespace fails, or the OCI prestart hook fails that dockerd's BuildKit
/// adds to set up the bridge network of a step (`libnetwork-setkey`; runc
/// reports "error running hook #0"), as it does for a foreign-architecture
/// `dockerd` under QEMU user emulation.
const NETWORK_SETUP: &[&str] = &[
    "error running hook",
    "veth",
    "netns",
    "network namespace",
    "failed to create network",
    "failed to set up network",
    "failed to setup network",
    "error setting up network",
];

/// Whether a failed build's message, or the build log's tail that BuildKit
/// ends with its own error lines, says that the engine could not set up
/// networking for a `RUN` step (case-insensitive, [`NETWORK_SETUP`]).
fn network_setup_failed(message: &str, log_tail: &[String]) -> bool {
    std::iter::once(message)
        .chain(log_tail.iter().map(String::as_str))
        .map(str::to_lowercase)
        .any(|text| NETWORK_SETUP.iter().any(|phrase| text.contains(phrase)))
}

/// A phase of a job that started ([`LiveWorker::start_phase`]). A phase
/// that fails is not reported as finished: the job's failure says it.
struct RunningPhase<'a> {
    reporter: &'a dyn Reporter,
    job: &'a JobSpec,
    phase: Phase,
    started: Instant,
}

impl RunningPhase<'_> {
    /// Reports [`Event::PhaseFinished`] with the seconds since the phase
    /// started and the `bytes` it moved, where they are known.
    fn finished(self, bytes: Option<u64>) {
        self.reporter.report(Event::PhaseFinished {
            platform: self.job.platform.clone(),
            runner: self.job.runner.clone(),
            phase: self.phase,
            seconds: self.started.elapsed().as_secs_f64(),
            bytes,
        });
    }
}

/// Where a platform's job failed, for the hint that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// Reaching the runner or its engine.
    Runner,
    /// The Dockerfile's steps.
    Build,
    /// Pushing to the registry.
    Push,
    /// Reading the pushed image back from the registry.
    ReadBack,
    /// The image is not for the platform asked for.
    Verify,
    /// The image's smoke run (`[test]`) failed; its hint is the
    /// verdict's ([`test_verdict`]).
    Test,
    /// The image holds a program of another architecture.
    Binaries,
}

impl Stage {
    /// `job` failed at this stage with `message` (and the build log's
    /// `log_tail`): the image was pushed under its staging tag when the
    /// failure came after the push (reading it back or verifying it).
    pub(super) fn failure(
        self,
        job: &JobSpec,
        message: String,
        log_tail: Vec<String>,
        registry: &str,
    ) -> JobFailure {
        let network = matches!(self, Stage::Build) && network_setup_failed(&message, &log_tail);
        let hint = self.hint(job, &message, registry, network);
        // The step's line names the Dockerfile, but the cause is the
        // runner's: say that first.
        let message = if network {
            format!(
                "runner `{}` could not give a RUN step its network: {message}",
                job.runner
            )
        } else {
            message
        };
        JobFailure {
            pushed: matches!(self, Stage::Verify | Stage::ReadBack | Stage::Binaries),
            log_tail,
            ..JobFailure::new(job, self.kind(network), message, hint)
        }
    }

    /// The cause a failure at this stage is put down to: a Dockerfile step
    /// (unless the engine could not set up a step's `network`), the
    /// runner, or the registry.
    fn kind(self, network: bool) -> ErrorKind {
        match self {
            Stage::Build if network => ErrorKind::Runner,
            Stage::Build => ErrorKind::Build,
            Stage::Runner | Stage::Verify => ErrorKind::Runner,
            Stage::Test => ErrorKind::Test,
            Stage::Push | Stage::ReadBack => ErrorKind::Registry,
            Stage::Binaries => ErrorKind::Binaries,
        }
    }

    fn hint(self, job: &JobSpec, message: &str, registry: &str, network: bool) -> String {
        match self {
            Stage::Runner => format!(
                "check runner `{}` (its host and engine) and run `mab build` again",
                job.runner
            ),
            Stage::Build if network => format!(
                "the engine of runner `{}` could not set up networking for a RUN step: set `network = \"host\"` on that runner in runners.toml (or pass --network host)",
                job.runner
            ),
            Stage::Build => {
                "fix the Dockerfile step the error names (the end of its log is shown with it) and run `mab build` again"
                    .to_owned()
            }
            Stage::Push if ["auth", "denied", "unauthorized"].iter().any(|word| message.contains(word)) => format!(
                "mab hands the engines the credentials for {registry} from DOCKER_AUTH_CONFIG or the Docker configuration (docs/publishing.md); log in with `docker login {registry}`"
            ),
            Stage::Push => format!("check that {registry} is reachable from runner `{}` and accepts pushes", job.runner),
            Stage::ReadBack => format!("check that {registry} serves the image runner `{}` pushed", job.runner),
            Stage::Verify => format!(
                "runner `{}` did not produce a {} image: check that its engine honours the platform and that the final stage's FROM is not pinned to another platform",
                job.runner, job.platform
            ),
            Stage::Test => format!(
                "the image built for {} does not pass [test] in mab.toml; {TEST_FIX}",
                job.platform
            ),
            Stage::Binaries => "a stage on $BUILDPLATFORM copied a host binary, or a download picked the wrong architecture; if the file is meant to be foreign, add it to `[verify] ignore` in mab.toml (docs/verify.md)".to_owned(),
        }
    }
}

/// What to do about a smoke test that failed, the end of its hints.
const TEST_FIX: &str = "fix the image or `run`, or pass --no-test to build without the smoke test";

/// How a smoke run that failed ended, for [`test_failure`].
enum TestEnd<'a> {
    /// The engine could not start the command: its message.
    NotStarted(&'a str),
    Exited(i64),
    TimedOut,
    /// It exited 0 but its standard output did not match `expect`.
    Unmatched,
}

/// Whether `outcome` passes `test`: exit code 0 within the timeout, and
/// `expect` (when given) matching somewhere in the kept end of the
/// standard output ([`mab_engine::STDOUT_KEPT`]); then the run to record.
/// Else the failure's message and hint ([`test_failure`]).
fn test_verdict(
    test: &SmokeTest,
    job: &JobSpec,
    outcome: &SmokeOutcome,
) -> Result<TestRun, (String, String)> {
    let end = match outcome.ended {
        Ended::TimedOut => TestEnd::TimedOut,
        Ended::Exited(0) => match &test.expect {
            Some(expect) if !expect.is_match(&outcome.stdout) => TestEnd::Unmatched,
            _ => return Ok(TestRun::of(test, 0, outcome.seconds, true)),
        },
        Ended::Exited(code) => TestEnd::Exited(code),
    };
    Err(test_failure(test, job, &end))
}

/// `the linux/arm64 image on runner `pi``, as the test's messages say it.
fn image_on_runner(job: &JobSpec) -> String {
    format!("the {} image on runner `{}`", job.platform, job.runner)
}

/// The prefix of a smoke test's runner failures: `[test] run = [...] in
/// the linux/arm64 image on runner `pi``.
fn test_context(test: &SmokeTest, job: &JobSpec) -> String {
    format!(
        "[test] run = {} in {}",
        serde_json::to_string(&test.run).unwrap_or_default(),
        image_on_runner(job)
    )
}

/// The QEMU handler an emulated `job` needs that the runner's binfmt_misc
/// entries (`binfmt`, as [`Connected::binfmt`]) lack; `None` for a native
/// job or one whose handler is there.
fn missing_handler(job: &JobSpec, binfmt: &[String]) -> Option<&'static str> {
    let handler = job.platform.qemu_handler().filter(|_| job.emulated)?;
    (!binfmt.iter().any(|entry| entry == handler)).then_some(handler)
}

/// The message and hint of a smoke run that ended as `end`: the message
/// names the command, the platform and the runner, and the exit code,
/// the timeout or the regular expression.
fn test_failure(test: &SmokeTest, job: &JobSpec, end: &TestEnd<'_>) -> (String, String) {
    let run = serde_json::to_string(&test.run).unwrap_or_default();
    let image = image_on_runner(job);
    match end {
        TestEnd::NotStarted(why) => (
            format!("[test] run = {run} could not start in {image}: {why}"),
            // The same words for every platform, so that a program
            // missing from each image is one hint in the report.
            format!("check that each image holds the program `run` names, built for its platform; {TEST_FIX}"),
        ),
        TestEnd::Exited(code) => (
            format!("[test] run = {run} exited with code {code} in {image}"),
            format!("the command's output ends as shown; {TEST_FIX}"),
        ),
        TestEnd::TimedOut => (
            format!(
                "[test] run = {run} timed out after {} in {image} and was killed",
                humantime::format_duration(test.timeout)
            ),
            format!(
                "raise [test] `timeout` in mab.toml if the command needs longer{}; {TEST_FIX}",
                // Named, as the report gives each distinct hint once.
                if job.emulated {
                    format!(" (runner `{}` emulates {} with QEMU, which is slower)", job.runner, job.platform)
                } else {
                    String::new()
                }
            ),
        ),
        TestEnd::Unmatched => (
            format!(
                "[test] run = {run} exited with code 0 in {image}, but its output did not match expect = {}",
                toml_string(test.expect.as_ref().map_or("", |expect| expect.0.as_str()))
            ),
            format!("compare `expect` with the output shown: it is matched against standard output only (lines marked `stderr:` are not), its last newline removed; add `(?m)` for `^` and `$` to match at each line; {TEST_FIX}"),
        ),
    }
}

/// `text` as mab.toml would hold it: a literal string (`'^v2\.0$'`, no
/// escapes, as a regex is usually written) unless it holds a `'` or a
/// line end, then a basic string with escapes.
fn toml_string(text: &str) -> String {
    if text.contains(['\'', '\n', '\r']) {
        serde_json::to_string(text).unwrap_or_default()
    } else {
        format!("'{text}'")
    }
}

impl<R: Registry> Worker for LiveWorker<'_, R> {
    /// Holds one of the runner's `jobs` slots on its host
    /// ([`Connected::hold_slot`]). A runner mab could not reach holds
    /// none: its job fails in [`Worker::run`], as before slots. A host that
    /// cannot hold a slot (no `flock`, no writable directory) or whose
    /// connection fails while the job waits fails the job on that runner,
    /// movable.
    async fn slot(
        &self,
        job: &JobSpec,
        jobs: u32,
        busy: &(dyn Fn() + Sync),
    ) -> Result<SlotGuard, JobFailure> {
        let Ok(connected) = &self.connected[&job.runner] else {
            return Ok(SlotGuard::none());
        };
        match connected.hold_slot(&job.runner, jobs, busy).await {
            Ok(held) => Ok(SlotGuard::holding(held)),
            Err(error) => {
                let failure = JobFailure {
                    hint: error.hint(),
                    ..Stage::Runner.failure(job, error.to_string(), Vec::new(), self.registry)
                };
                self.reporter.report(Event::JobFailed {
                    platform: job.platform.clone(),
                    runner: job.runner.clone(),
                    kind: failure.kind,
                    message: failure.message.clone(),
                });
                Err(movable(failure))
            }
        }
    }

    fn control(&self) -> Option<&BuildControl> {
        Some(self.control)
    }

    /// The runner's shared connection has ended ([`Connected::connection_lost`]).
    fn connection_lost(&self, runner: &str) -> bool {
        matches!(self.connected.get(runner), Some(Ok(connected)) if connected.connection_lost())
    }

    async fn run(&self, job: &JobSpec) -> Result<Built, JobFailure> {
        let started = Instant::now();
        let (platform, runner) = (job.platform.clone(), job.runner.clone());
        self.reporter.report(Event::JobStarted {
            platform: platform.clone(),
            runner: runner.clone(),
            emulated: job.emulated,
        });
        match self.build_one(job).await {
            Ok(Checked {
                child,
                binaries,
                test,
            }) => {
                let seconds = started.elapsed().as_secs_f64();
                self.keep_image(job).await;
                self.reporter.report(Event::JobFinished {
                    platform,
                    runner,
                    seconds,
                });
                Ok(Built {
                    job: job.clone(),
                    child,
                    seconds,
                    binaries,
                    test,
                })
            }
            Err(mut failure) => {
                // A failed smoke test or binary check comes after the
                // build: the engine still holds the image under its build
                // name, to be run there to see why (docs/runners.md).
                if matches!(failure.kind, ErrorKind::Test | ErrorKind::Binaries) {
                    failure.message = format!(
                        "{}; the image is kept on runner `{}` as {}",
                        failure.message,
                        job.runner,
                        self.build_name(&job.platform)
                    );
                }
                self.reporter.report(Event::JobFailed {
                    platform,
                    runner,
                    kind: failure.kind,
                    message: failure.message.clone(),
                });
                Err(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_a_job_fails_decides_its_staging_tag_and_hint() {
        let job = JobSpec::on("linux/arm64".parse().unwrap(), "pi");
        // (stage, message, pushed under its staging tag, kind, phrase of the hint)
        let cases = [
            (
                Stage::Runner,
                "connection refused",
                false,
                ErrorKind::Runner,
                "check runner `pi`",
            ),
            (
                Stage::Build,
                "RUN false: exit code 1",
                false,
                ErrorKind::Build,
                "fix the Dockerfile",
            ),
            (
                Stage::Build,
                "process \"/bin/sh -c true\" did not complete successfully: failed to create network abc: could not add veth pair",
                false,
                ErrorKind::Runner,
                "set `network = \"host\"` on that runner",
            ),
            (
                Stage::Build,
                "executor failed running [/bin/busybox true]: exit code: 1",
                false,
                ErrorKind::Build,
                "fix the Dockerfile",
            ),
            (
                Stage::Build,
                "failed to set up network namespace: operation not permitted",
                false,
                ErrorKind::Runner,
                "the engine of runner `pi` could not set up networking for a RUN step",
            ),
            (
                Stage::Push,
                "unauthorized: authentication required",
                false,
                ErrorKind::Registry,
                "log in with `docker login 127.0.0.1:5000`",
            ),
            (
                Stage::Push,
                "connection reset",
                false,
                ErrorKind::Registry,
                "check that 127.0.0.1:5000 is reachable from runner `pi`",
            ),
            (
                Stage::ReadBack,
                "manifest unknown",
                true,
                ErrorKind::Registry,
                "check that 127.0.0.1:5000 serves the image runner `pi` pushed",
            ),
            (
                Stage::Verify,
                "the image is for linux/amd64",
                true,
                ErrorKind::Runner,
                "runner `pi` did not produce a linux/arm64 image",
            ),
            (
                Stage::Test,
                "[test] run = [\"/app\"] exited with code 1",
                false,
                ErrorKind::Test,
                "the image built for linux/arm64 does not pass [test] in mab.toml",
            ),
            (
                Stage::Binaries,
                "the linux/arm64 image holds a program of another architecture: /bin/busybox is ELF 64-bit LSB x86-64 executable, but linux/arm64 needs 64-bit LSB AArch64",
                true,
                ErrorKind::Binaries,
                "a stage on $BUILDPLATFORM copied a host binary, or a download picked the wrong architecture; if the file is meant to be foreign, add it to `[verify] ignore`",
            ),
        ];
        for (stage, message, pushed, kind, hint) in cases {
            let failure = stage.failure(
                &job,
                message.to_owned(),
                vec!["#5 RUN false".to_owned()],
                "127.0.0.1:5000",
            );
            assert_eq!(failure.pushed, pushed, "{message}");
            assert_eq!(failure.kind, kind, "{message}");
            assert!(!failure.movable, "{message}");
            assert!(failure.hint.contains(hint), "{message}: {}", failure.hint);
            // A network failure is the runner's, and its message says so first.
            if kind == ErrorKind::Runner && matches!(stage, Stage::Build) {
                assert_eq!(
                    failure.message,
                    format!("runner `pi` could not give a RUN step its network: {message}")
                );
            } else {
                assert_eq!(failure.message, message);
            }
            assert_eq!(failure.log_tail, ["#5 RUN false"]);
            assert_eq!(failure.job, job);
        }
    }

    /// A smoke run passes with exit code 0 within its timeout and, with
    /// `expect`, output that matches it anywhere; else the message names
    /// the command, the platform, the runner and why.
    #[test]
    fn the_verdict_of_a_smoke_run() {
        let mut job = JobSpec::on("linux/ppc64le".parse().unwrap(), "power");
        job.emulated = true;
        let test = |expect: Option<&str>| SmokeTest {
            run: vec!["/app".to_owned(), "--version".to_owned()],
            expect: expect.map(|expect| expect.parse().unwrap()),
            timeout: std::time::Duration::from_secs(90),
        };
        let outcome = |ended: Ended, stdout: &str| SmokeOutcome {
            ended,
            stdout: stdout.to_owned(),
            output_tail: Vec::new(),
            seconds: 0.5,
        };
        const IN: &str = "in the linux/ppc64le image on runner `power`";
        // (expect, how it ended, its stdout, the message or None when it passes, phrase of the hint)
        let cases = [
            (None, Ended::Exited(0), "", None, ""),
            (Some("v1\\.2"), Ended::Exited(0), "app\nv1.2.3\n", None, ""),
            (Some("(?m)^v1\\.2"), Ended::Exited(0), "app\nv1.2.3\n", None, ""),
            (
                None,
                Ended::Exited(2),
                "v1.2.3",
                Some(format!("[test] run = [\"/app\",\"--version\"] exited with code 2 {IN}")),
                "the command's output ends as shown",
            ),
            (
                Some("v1"),
                Ended::TimedOut,
                "v1",
                Some(format!("[test] run = [\"/app\",\"--version\"] timed out after 1m 30s {IN} and was killed")),
                "raise [test] `timeout` in mab.toml if the command needs longer (runner `power` emulates linux/ppc64le with QEMU, which is slower)",
            ),
            (
                Some("^v2$"),
                Ended::Exited(0),
                "v2.0\n",
                Some(format!("[test] run = [\"/app\",\"--version\"] exited with code 0 {IN}, but its output did not match expect = '^v2$'")),
                "compare `expect` with the output shown",
            ),
            // One trailing line end is removed before matching, as `$(...)`
            // does: `$` matches after the last line's text.
            (Some("^version 2\\.0$"), Ended::Exited(0), "version 2.0\n", None, ""),
            (Some("^version 2\\.0$"), Ended::Exited(0), "version 2.0\r\n", None, ""),
            (Some("(?m)^v2$"), Ended::Exited(0), "app\nv2\n", None, ""),
            (
                Some("^v2$"),
                Ended::Exited(0),
                "v2\n\n",
                Some(format!("[test] run = [\"/app\",\"--version\"] exited with code 0 {IN}, but its output did not match expect = '^v2$'")),
                "compare `expect` with the output shown",
            ),
        ];
        for (expect, ended, stdout, message, hint) in cases {
            let verdict = test_verdict(&test(expect), &job, &outcome(ended, stdout));
            match (verdict, message) {
                (Ok(passed), None) => assert_eq!((passed.exit_code, passed.seconds), (0, 0.5)),
                (Err((said, hinted)), Some(message)) => {
                    assert_eq!(said, message);
                    assert!(hinted.starts_with(hint), "{hinted}");
                    assert!(hinted.ends_with(TEST_FIX), "{hinted}");
                }
                (verdict, message) => panic!("{expect:?} {ended:?}: {verdict:?}, not {message:?}"),
            }
        }
        let (message, hint) =
            test_failure(&test(None), &job, &TestEnd::NotStarted("exec format error"));
        assert_eq!(
            message,
            format!(
                "[test] run = [\"/app\",\"--version\"] could not start {IN}: exec format error"
            )
        );
        assert!(
            hint.starts_with(
                "check that each image holds the program `run` names, built for its platform"
            ),
            "{hint}"
        );
    }

    /// A pattern is shown as mab.toml would hold it: literal unless a
    /// quote or line end needs escapes.
    #[test]
    fn patterns_are_shown_as_toml_strings() {
        assert_eq!(toml_string(r"^version 2\.0$"), r"'^version 2\.0$'");
        assert_eq!(toml_string("it's"), r#""it's""#);
        assert_eq!(toml_string("a\nb"), r#""a\nb""#);
    }

    /// The check's report read under each `binaries` mode: warnings for
    /// the compatibility target and (with `warn`) for mismatches; with
    /// `error` a failure naming the first file, listing them when several.
    #[test]
    fn a_check_report_is_judged_by_the_binaries_mode() {
        let platform: Platform = "linux/arm64".parse().unwrap();
        let finding = |path: &str| mab_verify::Finding {
            path: path.to_owned(),
            found: "ELF 64-bit LSB x86-64 executable".to_owned(),
            expected: "64-bit LSB AArch64".to_owned(),
        };
        let compat = mab_verify::Finding {
            path: "/usr/lib/arm32/libc.so".to_owned(),
            found: "ELF 32-bit LSB ARM shared object".to_owned(),
            expected: "32-bit LSB ARM".to_owned(),
        };
        let report = |mismatches: Vec<mab_verify::Finding>| mab_verify::Report {
            checked: 30,
            mismatches,
            warnings: vec![compat.clone()],
            note: None,
        };
        let compat_warning = "linux/arm64: 1 file of the 32-bit architecture linux/arm64 also runs (32-bit LSB ARM; allowed, `[verify] ignore` silences them): /usr/lib/arm32/libc.so is ELF 32-bit LSB ARM shared object";

        let (warnings, failure) = judge(&platform, Binaries::Error, &report(Vec::new()));
        assert_eq!(warnings, [compat_warning]);
        assert_eq!(failure, None);

        let (warnings, failure) = judge(
            &platform,
            Binaries::Error,
            &report(vec![finding("/bin/busybox")]),
        );
        assert_eq!(warnings, [compat_warning]);
        assert_eq!(
            failure,
            Some((
                "the linux/arm64 image holds a program of another architecture: /bin/busybox is ELF 64-bit LSB x86-64 executable, but linux/arm64 needs 64-bit LSB AArch64".to_owned(),
                Vec::new()
            ))
        );

        let many: Vec<_> = (0..25)
            .map(|index| finding(&format!("/bin/t{index:02}")))
            .collect();
        let (_, failure) = judge(&platform, Binaries::Error, &report(many.clone()));
        let (message, listed) = failure.unwrap();
        // The message reads alone (it is the metadata's `error.message`
        // too); the lines under it say which files they are.
        assert_eq!(
            message,
            "the linux/arm64 image holds 25 programs of another architecture, but linux/arm64 needs 64-bit LSB AArch64: /bin/t00 is ELF 64-bit LSB x86-64 executable, and 24 more"
        );
        assert_eq!(listed.len(), 1 + MISMATCHES_LISTED);
        assert_eq!(listed[0], "the first 20 of the 25 files:");
        assert_eq!(listed[1], "/bin/t00: ELF 64-bit LSB x86-64 executable");
        assert_eq!(listed[20], "/bin/t19: ELF 64-bit LSB x86-64 executable");
        let (_, failure) = judge(&platform, Binaries::Error, &report(many[..3].to_vec()));
        let (message, listed) = failure.unwrap();
        assert!(message.ends_with(", and 2 more"), "{message}");
        assert_eq!(
            listed,
            [
                "the 3 files:",
                "/bin/t00: ELF 64-bit LSB x86-64 executable",
                "/bin/t01: ELF 64-bit LSB x86-64 executable",
                "/bin/t02: ELF 64-bit LSB x86-64 executable"
            ]
        );

        let (warnings, failure) = judge(&platform, Binaries::Warn, &report(many[..2].to_vec()));
        assert_eq!(failure, None);
        assert_eq!(
            warnings[1..],
            ["linux/arm64: 2 files of another architecture, but linux/arm64 needs 64-bit LSB AArch64 (`[verify] binaries = \"warn\"`): /bin/t00 is ELF 64-bit LSB x86-64 executable; /bin/t01 is ELF 64-bit LSB x86-64 executable"]
        );
        // One warning for the platform however many files, the first
        // ones named.
        let (warnings, _) = judge(&platform, Binaries::Warn, &report(many.clone()));
        assert_eq!(warnings.len(), 2);
        assert!(warnings[1].starts_with("linux/arm64: 25 files of another architecture"));
        assert!(warnings[1].contains("/bin/t19 is"));
        assert!(!warnings[1].contains("/bin/t20"));
        assert!(warnings[1].ends_with("; and 5 more"), "{}", warnings[1]);

        let unchecked = mab_verify::Report {
            note: Some(
                "windows/amd64 programs are not ELF objects: their architecture is not checked"
                    .to_owned(),
            ),
            ..mab_verify::Report::default()
        };
        let (warnings, failure) = judge(
            &"windows/amd64".parse().unwrap(),
            Binaries::Error,
            &unchecked,
        );
        assert_eq!(warnings, [unchecked.note.clone().unwrap()]);
        assert_eq!(failure, None);
    }

    /// Each cause of a check that could not read the image has its stage,
    /// kind and hint.
    #[test]
    fn a_check_that_cannot_read_fails_by_its_cause() {
        let media_type = CheckReadError::MediaType {
            digest: "sha256:a".to_owned(),
            media_type: "application/vnd.oci.image.layer.v1.tar+bzip2".to_owned(),
        };
        assert_eq!(
            media_type.to_string(),
            "the binary check cannot read layer sha256:a: its media type `application/vnd.oci.image.layer.v1.tar+bzip2` is not a tar layer (uncompressed, gzip or zstd)"
        );
        let (stage, kind, hint) = media_type.stage();
        assert_eq!((stage, kind), (Stage::Binaries, Some(ErrorKind::Usage)));
        assert!(hint.unwrap().contains("`[verify] binaries = \"off\"`"));
        let spool = CheckReadError::Spool {
            image: "app:mab-1".to_owned(),
            directory: "/scratch".into(),
            source: std::io::Error::other("No space left on device"),
        };
        assert_eq!(
            spool.to_string(),
            "could not write the exported image app:mab-1 to a temporary file in /scratch on this machine: No space left on device"
        );
        let (stage, kind, hint) = spool.stage();
        assert_eq!((stage, kind), (Stage::Runner, None));
        assert!(hint.unwrap().contains("free space there, or set TMPDIR"));
        let broken = CheckReadError::Blob(mab_verify::VerifyError::Read {
            layer: "sha256:a".to_owned(),
            source: std::io::Error::other("connection reset"),
        });
        assert_eq!(broken.stage(), (Stage::ReadBack, None, None));
        let other = CheckReadError::Saved(mab_verify::VerifyError::SavedPlatform {
            found: "linux/amd64".to_owned(),
            expected: "linux/arm64".to_owned(),
        });
        assert_eq!(other.stage().0, Stage::Verify);
    }

    /// A step whose network hook failed is told by the log's tail, as the
    /// lab's arm64 engine under QEMU reports it; a step's own output that
    /// merely mentions networks is not.
    /// An emulated job whose runner has no QEMU handler for its platform
    /// names the missing one; a native job, or one whose handler is there,
    /// has none missing. A runner failure of the test says the command,
    /// the platform and the runner first.
    #[test]
    fn a_missing_qemu_handler_and_the_tests_context() {
        let native = JobSpec::on("linux/arm64".parse().unwrap(), "pi");
        let emulated = JobSpec {
            emulated: true,
            ..JobSpec::on("linux/arm/v7".parse().unwrap(), "box")
        };
        let handlers = |names: &[&str]| {
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(missing_handler(&native, &[]), None);
        assert_eq!(
            missing_handler(&emulated, &handlers(&["qemu-aarch64"])),
            Some("qemu-arm")
        );
        assert_eq!(
            missing_handler(&emulated, &handlers(&["qemu-aarch64", "qemu-arm"])),
            None
        );
        let test = SmokeTest {
            run: vec!["/app".to_owned(), "--version".to_owned()],
            expect: None,
            timeout: std::time::Duration::from_secs(60),
        };
        assert_eq!(
            test_context(&test, &native),
            "[test] run = [\"/app\",\"--version\"] in the linux/arm64 image on runner `pi`"
        );
    }

    #[test]
    fn a_network_hook_that_fails_is_the_runners_problem() {
        let job = JobSpec::on("linux/arm64".parse().unwrap(), "arm");
        let message = "executor failed running [/bin/busybox true]: exit code: 1";
        // (log tail, kind, phrase of the hint)
        let cases = [
            (
                vec![
                    "runc run failed: unable to start container process: error during container init: error running hook #0: error running hook: exit status 1, stdout: , stderr: qemu: unknown option 'exec-root=/run/mab-host/exec'",
                    "[2/2] RUN [\"/bin/busybox\", \"true\"]: executor failed running [/bin/busybox true]: exit code: 1",
                ],
                ErrorKind::Runner,
                "the engine of runner `arm` could not set up networking for a RUN step: set `network = \"host\"` on that runner in runners.toml (or pass --network host)",
            ),
            (
                vec!["bridge br0 is down", "exit code: 1"],
                ErrorKind::Build,
                "fix the Dockerfile",
            ),
        ];
        for (tail, kind, hint) in cases {
            let tail: Vec<String> = tail.into_iter().map(str::to_owned).collect();
            let failure =
                Stage::Build.failure(&job, message.to_owned(), tail.clone(), "127.0.0.1:5000");
            assert_eq!(failure.kind, kind, "{tail:?}");
            assert!(failure.hint.contains(hint), "{tail:?}: {}", failure.hint);
            assert!(!failure.movable);
        }
    }
}

/// `check_pushed` over a registry whose layer stream breaks midway.
#[cfg(test)]
mod check_pushed_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mab_registry::{Blob, Layer, RegistryError};

    use super::*;

    /// One uncompressed layer holding an x86-64 executable, whose stream
    /// is cut short the first `broken` times it is asked for.
    struct BrokenLayer {
        layer: Vec<u8>,
        broken: usize,
        asked: AtomicUsize,
    }

    impl Registry for BrokenLayer {
        fn name(&self) -> String {
            "127.0.0.1:5000/app".to_owned()
        }
        async fn check_push(&self) -> Result<(), RegistryError> {
            unreachable!()
        }
        async fn describe(&self, _: &str) -> Result<Child, RegistryError> {
            unreachable!()
        }
        async fn publish(&self, _: &str, _: &[u8], _: &[String]) -> Result<String, RegistryError> {
            unreachable!()
        }
        async fn manifest(&self, _: &str) -> Result<(Vec<u8>, String), RegistryError> {
            unreachable!()
        }
        async fn tag_digest(&self, _: &str) -> Result<Option<String>, RegistryError> {
            unreachable!()
        }
        async fn delete_tag(&self, _: &str) -> Result<bool, RegistryError> {
            unreachable!()
        }
        async fn layers(&self, _: &str) -> Result<Vec<Layer>, RegistryError> {
            Ok(vec![Layer {
                media_type: "application/vnd.oci.image.layer.v1.tar".to_owned(),
                digest: "sha256:layer".to_owned(),
                size: self.layer.len() as u64,
            }])
        }
        async fn blob(&self, _: &str) -> Result<Blob, RegistryError> {
            let asked = self.asked.fetch_add(1, Ordering::SeqCst);
            let bytes = if asked < self.broken {
                // Cut inside an entry's data, not at a header.
                self.layer[..self.layer.len() / 2 + 100].to_vec()
            } else {
                self.layer.clone()
            };
            Ok(Box::new(std::io::Cursor::new(bytes)))
        }
    }

    fn x86_64_layer() -> Vec<u8> {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[6] = 1;
        elf[16] = 2; // ET_EXEC
        elf[18] = 62; // EM_X86_64
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(elf.len() as u64);
        header.set_mode(0o755);
        builder
            .append_data(&mut header, "bin/tool", elf.as_slice())
            .unwrap();
        // Files enough that half the stream ends inside an entry.
        for index in 0..8 {
            let mut header = tar::Header::new_gnu();
            header.set_size(1000);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, format!("data/{index}"), &[b'x'; 1000][..])
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_layer_that_breaks_is_read_again_from_its_start() {
        let platform: Platform = "linux/arm64".parse().unwrap();
        for (broken, read) in [(0, true), (2, true), (3, false)] {
            let registry = BrokenLayer {
                layer: x86_64_layer(),
                broken,
                asked: AtomicUsize::new(0),
            };
            let recorder = mab_events::Recorder::default();
            let check = mab_verify::Check::new(&platform, mab_verify::Rules::default());
            let result = check_pushed(
                &registry,
                "127.0.0.1:5000",
                &recorder,
                "sha256:image",
                check,
            )
            .await;
            let retries = recorder
                .events()
                .into_iter()
                .filter(|event| matches!(event, Event::Retry { .. }))
                .count();
            assert_eq!(retries, broken.min(LAYER_RETRIES), "{broken}");
            assert_eq!(
                registry.asked.load(Ordering::SeqCst),
                (broken + 1).min(LAYER_RETRIES + 1)
            );
            match result {
                Ok((report, _)) => {
                    assert!(read, "{broken}");
                    // Read whole once: the tool is there once.
                    assert_eq!(report.checked, 1);
                    assert_eq!(report.mismatches.len(), 1);
                }
                Err(error) => {
                    assert!(!read, "{broken}: {error}");
                    assert!(matches!(error, CheckReadError::Blob(_)), "{error}");
                }
            }
        }
    }
}
