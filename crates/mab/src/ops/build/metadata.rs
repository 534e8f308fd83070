//! `--metadata-file`: what the build published, or how far each platform
//! got when it failed, as JSON.

use std::path::PathBuf;

use mab_config::Platform;
use mab_events::ErrorKind;
use serde::Serialize;

use crate::cli::BuildArgs;
use crate::environment::Environment;
use crate::failure::Failure;
use crate::ops::jobs::{Built, JobFailure, JobSpec, Stop};
use crate::progress::{Event, Reporter};

#[derive(Serialize)]
struct Metadata<'a> {
    image: &'a str,
    /// The published list's digest; `null` when nothing was published.
    digest: Option<&'a str>,
    media_type: Option<&'a str>,
    tags: &'a [String],
    /// The platforms asked for that are not in the result: not published
    /// (not built, with `--no-push`); empty when the build succeeded.
    missing: Vec<Platform>,
    platforms: &'a [PlatformMetadata],
}

/// How far a platform got (`"state"` in the metadata file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum State {
    /// In the published list.
    Published,
    /// Pushed under its staging tag, verified, but no list was published
    /// (another platform failed, or the publish did).
    Pushed,
    /// Built and verified with `--no-push`.
    Built,
    /// Failed on its (last) runner.
    Failed,
    /// Stopped by `timeout` or `--deadline` while it ran.
    Cancelled,
    /// Never got a runner slot (the deadline came first), or was not
    /// planned because another platform could not be.
    NotStarted,
}

/// `"error"` of a platform: the cause and the failure's message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct ErrorMetadata {
    kind: ErrorKind,
    message: String,
}

/// One platform of the metadata file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct PlatformMetadata {
    platform: Platform,
    /// The runner it was built on (last tried, when it failed); `null`
    /// when it was not planned.
    runner: Option<String>,
    /// The image manifest's digest in the registry, once pushed.
    digest: Option<String>,
    emulated: bool,
    /// How long its job took on `runner`; `null` when it did not finish.
    seconds: Option<f64>,
    state: State,
    error: Option<ErrorMetadata>,
    /// The runner that lost the platform first, and why ([`JobSpec::moved_from`]).
    moved_from: Option<String>,
    reason: Option<String>,
}

impl PlatformMetadata {
    fn of(job: &JobSpec, state: State) -> PlatformMetadata {
        let moved = job.moved_from.as_ref();
        PlatformMetadata {
            platform: job.platform.clone(),
            runner: Some(job.runner.clone()),
            digest: None,
            emulated: job.emulated,
            seconds: None,
            state,
            error: None,
            moved_from: moved.map(|moved| moved.runner.clone()),
            reason: moved.map(|moved| moved.reason.clone()),
        }
    }

    /// A platform whose job ended well: `published` says whether its list
    /// went up; without a pushed image (`--no-push`) it is `built`.
    pub(super) fn built(built: &Built, published: bool) -> PlatformMetadata {
        let state = match (&built.child, published) {
            (None, _) => State::Built,
            (Some(_), true) => State::Published,
            (Some(_), false) => State::Pushed,
        };
        PlatformMetadata {
            digest: built.child.as_ref().map(|child| child.digest.clone()),
            seconds: Some(built.seconds),
            ..PlatformMetadata::of(&built.job, state)
        }
    }

    /// A platform whose job failed or was stopped.
    pub(super) fn failed(failure: &JobFailure) -> PlatformMetadata {
        let state = match failure.stopped {
            None => State::Failed,
            Some(Stop::Running) => State::Cancelled,
            Some(Stop::BeforeSlot) => State::NotStarted,
        };
        PlatformMetadata {
            digest: failure.digest.clone(),
            error: Some(ErrorMetadata {
                kind: failure.kind,
                message: failure.message.clone(),
            }),
            ..PlatformMetadata::of(&failure.job, state)
        }
    }

    /// A platform planned as `job` that never ran: the plan failed for
    /// another platform.
    pub(super) fn not_started(job: &JobSpec) -> PlatformMetadata {
        PlatformMetadata::of(job, State::NotStarted)
    }

    /// A platform that was not planned: the build failed before any job
    /// ran (at the registry's check, while connecting, at planning), with
    /// `error` (its cause, the failure's message) when the failure
    /// concerns this platform.
    pub(super) fn not_planned(
        platform: &Platform,
        error: Option<(ErrorKind, &str)>,
    ) -> PlatformMetadata {
        PlatformMetadata {
            runner: None,
            error: error.map(|(kind, message)| ErrorMetadata {
                kind,
                message: message.to_owned(),
            }),
            ..PlatformMetadata::of(&JobSpec::on(platform.clone(), ""), State::NotStarted)
        }
    }
}

/// What the metadata file of a build that fails before any job ran needs:
/// the file, the image, the platforms asked for and the tags.
pub(super) struct BeforeJobs<'a> {
    pub(super) file: &'a MetadataFile,
    pub(super) image: &'a str,
    /// In the order of `mab.toml` (after `--platform`).
    pub(super) platforms: &'a [Platform],
    pub(super) tags: &'a [String],
    pub(super) reporter: &'a dyn Reporter,
}

impl BeforeJobs<'_> {
    /// Writes the metadata file for `failure`, which stopped the build
    /// before any job ran, and returns it: every platform `not_started`
    /// without a runner, `"digest": null`, every platform `missing`; the
    /// platforms `on` (every one when `None`) carry `"error"` with `kind`
    /// and the failure's message (its first line, without `error: `).
    /// A file that cannot be written is a warning.
    pub(super) fn fail(
        &self,
        failure: Failure,
        kind: ErrorKind,
        on: Option<&[Platform]>,
    ) -> Failure {
        let message = failure.report.lines().next().unwrap_or_default();
        let message = message.strip_prefix("error: ").unwrap_or(message);
        let states: Vec<PlatformMetadata> = self
            .platforms
            .iter()
            .map(|platform| {
                let concerned = on.is_none_or(|on| on.contains(platform));
                PlatformMetadata::not_planned(platform, concerned.then_some((kind, message)))
            })
            .collect();
        self.write(&states);
        failure
    }

    /// Writes the file with `platforms` as they are and no list; a failure
    /// to write it is a warning, as the build's own failure is the one
    /// reported.
    pub(super) fn write(&self, platforms: &[PlatformMetadata]) {
        self.file
            .write_failed(self.image, self.tags, platforms, self.reporter);
    }
}

/// `--metadata-file`, resolved against `-C` and created before anything
/// is built, so that an unwritable path fails first (exit 2), not after
/// publishing.
pub(super) struct MetadataFile {
    /// Where to write; `None` without `--metadata-file`.
    pub(super) path: Option<PathBuf>,
}

impl MetadataFile {
    pub(super) fn create(
        args: &BuildArgs,
        environment: &Environment,
    ) -> Result<MetadataFile, Failure> {
        let Some(given) = &args.metadata_file else {
            return Ok(MetadataFile { path: None });
        };
        let start = match &args.project.directory {
            Some(directory) => environment.current_dir.join(directory),
            None => environment.current_dir.clone(),
        };
        let path = start.join(given);
        std::fs::File::create(&path).map_err(|error| {
            Failure::usage(
                format!("cannot write the metadata file {}: {error}", path.display()),
                Some("point --metadata-file at a writable path"),
            )
        })?;
        Ok(MetadataFile { path: Some(path) })
    }

    /// Writes the file of a build that failed: no list, `platforms` as
    /// they are. A failure to write it is a warning through `reporter`, as
    /// the build's own failure is the one reported.
    pub(super) fn write_failed(
        &self,
        image: &str,
        tags: &[String],
        platforms: &[PlatformMetadata],
        reporter: &dyn Reporter,
    ) {
        if let Err(failure) = self.write(image, None, tags, platforms) {
            reporter.report(Event::Warning {
                message: failure.report.trim_start_matches("error: ").to_owned(),
            });
        }
    }

    /// Writes the file: the list (`digest`, media type) when one was
    /// published, and each platform in job order; `"missing"` holds those
    /// not `published` (not `built`, with `--no-push`).
    pub(super) fn write(
        &self,
        image: &str,
        list: Option<(&str, &str)>,
        tags: &[String],
        platforms: &[PlatformMetadata],
    ) -> Result<(), Failure> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let metadata = Metadata {
            image,
            digest: list.map(|(digest, _)| digest),
            media_type: list.map(|(_, media_type)| media_type),
            tags,
            missing: platforms
                .iter()
                .filter(|platform| !matches!(platform.state, State::Published | State::Built))
                .map(|platform| platform.platform.clone())
                .collect(),
            platforms,
        };
        let json = serde_json::to_string_pretty(&metadata).expect("metadata always serialises");
        std::fs::write(path, json + "\n").map_err(|error| {
            Failure::runtime(
                format!(
                    "could not write the metadata file {}: {error}",
                    path.display()
                ),
                None,
            )
        })
    }
}
