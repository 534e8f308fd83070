//! `mab build`: plan, build every platform on its runner, verify, publish.

//!
//! The orchestration lives here; the rest is split by what it touches:
//! `overrides` (flags over `mab.toml`), `tags` (the tags to publish under
//! and the partial-build rule), `worker` (one platform's job on its
//! runner's engine), `publish` (the registry side: push rights, staging
//! tags), `metadata` (`--metadata-file`, and the state a resume reads),
//! `resume` (`--resume`: what an earlier build left that is reused) and
//! `labels` (the labels, index annotations and build arguments from the
//! source).

mod cache;
mod labels;
mod metadata;
mod overrides;
mod publish;
mod resume;
mod secrets;
mod ssh;
mod tags;
mod worker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use mab_events::ErrorKind;
use mab_plan::{Fallback, PlanError};
use mab_registry::{Child, Repository};

use crate::build_log::BuildLogs;
use crate::cli::BuildArgs;
use crate::environment::Environment;
use crate::failure::{Failure, FailureKind};
use crate::history::BuildRecord;
use crate::ops::connect::{Connected, Unreachable};
use crate::ops::jobs::{
    all_or_failures, report_planned_moves, run_all, Built, JobFailure, JobSpec, Limits, Worker,
};
use crate::ops::prepare;
use crate::ops::publishing::BuildControl;
use crate::progress::{Event, Reporter, StagingTagsReason};
use crate::report::Report;

use metadata::{BeforeJobs, Inputs, MetadataFile, OwnFiles, PlatformMetadata};
use overrides::{apply_overrides, time_limit};
use publish::{
    check_push, read_children_back, read_list_back, remove_staging_tags, staged, PublishedList,
    ReadBackError, Registry, Staged,
};
use tags::{check_not_narrowing, check_partial_has_tags, release_tags};
use worker::{build_id, LiveWorker};

/// How a build that ended well ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOutcome {
    /// `[image] name` (`registry/namespace/name`).
    pub image: String,
    /// The published list's digest (`sha256:…`); `None` with `--no-push`.
    pub digest: Option<String>,
}

impl BuildOutcome {
    /// What goes to stdout: `image@digest` and a newline, nothing with
    /// `--no-push`.
    pub fn stdout(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{}@{digest}\n", self.image),
            None => String::new(),
        }
    }
}

/// Runs the build, reporting its progress and the registry's retried
/// requests to `reporter`. `control` is marked while the list and its tags
/// are pushed, for the interrupt handler, which sets a stop on it
/// otherwise: the build then ends at once through its failure path
/// (metadata and state written, nothing published) with
/// [`Failure::stopped`] (130, 143).
///
/// The steps, in the order docs/architecture.md tells them: `load_and_check`
/// (everything checked before the registry or a runner is asked),
/// `open_registry`, `connect_and_plan`, then `run_and_publish`.
pub async fn build(
    args: &BuildArgs,
    environment: &Environment,
    reporter: &Arc<dyn Reporter>,
    control: &BuildControl,
) -> Result<BuildOutcome, Failure> {
    let github =
        crate::github::Actions::start(environment, args.progress != crate::cli::Progress::Json);
    if let Some(github) = &github {
        crate::progress::observe(github.clone());
    }
    let mut prepared = load_and_check(args, environment, reporter, control).await?;
    prepared.metadata.github = github;
    let record = history_record(environment, reporter.as_ref());
    observe_report(args, environment, record.as_ref());
    let logs = record.map(|record| {
        let logs = Arc::new(BuildLogs::new(record));
        crate::progress::observe(logs.clone());
        logs
    });
    let built = build_checked(args, environment, prepared, reporter, control).await;
    // A failed platform's report names its full log.
    built.map_err(|failure| match &logs {
        Some(logs) => failure.with_details(&logs.failed_logs()),
        None => failure,
    })
}

/// [`build`] once its inputs are checked ([`load_and_check`]).
async fn build_checked(
    args: &BuildArgs,
    environment: &Environment,
    prepared: Prepared,
    reporter: &Arc<dyn Reporter>,
    control: &BuildControl,
) -> Result<BuildOutcome, Failure> {
    // From here on every failure writes the metadata file. A resume that
    // stops before the registry is read keeps what it would reuse.
    let unstarted = BeforeJobs {
        file: &prepared.metadata,
        image: &prepared.project.image,
        platforms: &prepared.resume.rest,
        reused: &prepared.resume.carried,
        tags: &prepared.tags,
        reporter: reporter.as_ref(),
    };
    let access = open_registry(args, environment, &prepared, &unstarted, reporter, control).await?;
    // The cache sources are read from the registry while the runners
    // are connected to; a stop ends the lookup at once (the stop is then
    // seen as the jobs start), and a resume with nothing left to build
    // looks nothing up.
    let cache_sources = async {
        if prepared.resume.rest.is_empty() {
            return Ok(std::collections::BTreeMap::new());
        }
        let reference =
            cache::reference_to_read(&prepared.project, &prepared.tags, reporter.as_ref());
        let Some(reference) = reference else {
            return Ok(std::collections::BTreeMap::new());
        };
        let image_registry = (access.registry.as_str(), access.credentials.as_ref());
        let looking_up = cache::cache_sources(
            &reference,
            &prepared.resume.rest,
            environment,
            image_registry,
            reporter.as_ref(),
        );
        tokio::select! {
            biased;
            _ = control.stopped() => Ok(std::collections::BTreeMap::new()),
            sources = looking_up => Ok(sources),
        }
    };
    let (ready, cache_sources) = tokio::try_join!(
        connect_and_plan(
            args,
            environment,
            &prepared,
            &access,
            &unstarted,
            reporter,
            control,
        ),
        cache_sources,
    )?;

    let project = &prepared.project;
    let jobs: Vec<JobSpec> = ready.plan.jobs.iter().map(job_spec).collect();
    let slots: HashMap<String, u32> = ready
        .runners
        .iter()
        .map(|runner| (runner.name.clone(), runner.jobs))
        .collect();
    let worker = LiveWorker {
        project,
        registry: &access.registry,
        context: &prepared.context,
        context_total: prepared.listing.bytes,
        build_id: build_id(),
        runners: ready
            .runners
            .iter()
            .map(|runner| (runner.name.clone(), *runner))
            .collect(),
        connected: &ready.connected,
        repository: access.repository.as_ref(),
        credentials: access.credentials,
        network: prepared.network,
        credential_sources: access.credential_sources,
        secrets: prepared.secrets.clone(),
        ssh_agents: prepared.ssh.clone(),
        reporter: reporter.as_ref(),
        control,
        test: project.test.as_ref().filter(|_| !args.no_test),
        cache_sources: &cache_sources,
        cache_imported: &prepared.metadata.cache_imported,
    };
    let planned = Planned {
        image: &project.image,
        jobs: &jobs,
        slots: &slots,
        tags: &prepared.tags,
        limits: Limits {
            timeout: project.timeout,
            timeout_from_flag: args.timeout.is_some(),
            deadline: prepared.deadline,
        },
        fallback: ready.fallback,
        allow_partial: args.allow_partial,
        unplanned: &ready.unplanned,
        reused: &ready.reuse.reused,
        annotations: &labels::index_annotations(&project.labels, &project.annotations),
        annotations_configured: !project.annotations.is_empty(),
    };
    let outcome = run_and_publish(
        &planned,
        &worker,
        access.repository.as_ref(),
        &prepared.metadata,
        control,
        reporter.as_ref(),
    )
    .await;
    outcome
}

/// Creates this build's directory in mab's history
/// ([`BuildRecord::create`]); one that cannot be created is a warning, and
/// the build keeps no logs or report there.
fn history_record(environment: &Environment, reporter: &dyn Reporter) -> Option<BuildRecord> {
    let state = environment.state_dir();
    BuildRecord::create(&state, std::time::SystemTime::now())
        .map_err(|error| {
            reporter.report(Event::Warning {
                message: format!(
                    "cannot create this build's directory under {}: {error}; its logs and report are not kept there",
                    state.join("history").display()
                ),
            });
        })
        .ok()
}

/// Makes the HTML report ([`Report`]) an observer of the build: written
/// when the build ends to `--report FILE` (relative to `-C DIR`, as
/// `--metadata-file`) and to the copy in `record`.
fn observe_report(args: &BuildArgs, environment: &Environment, record: Option<&BuildRecord>) {
    let given = args
        .report
        .as_deref()
        .map(|path| metadata::given_path(args, environment, path));
    let paths = given
        .into_iter()
        .chain(record.map(BuildRecord::report_path))
        .collect();
    crate::progress::observe(Arc::new(Report::new(paths, std::time::SystemTime::now())));
}

/// A build checked before the registry or any runner is asked
/// ([`load_and_check`]).
struct Prepared {
    /// `mab.toml` with the flags over it (`overrides`).
    project: mab_config::Project,
    /// The runners file (or the implicit local runner).
    runners: mab_config::RunnersFile,
    /// Whether platforms may be emulated (`--native-only`, `emulation`).
    emulation: mab_plan::Emulation,
    /// `--deadline`: when, and the limit as given.
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
    context: mab_context::BuildContext,
    listing: mab_context::ContextListing,
    /// `--resume`: the earlier build, checked against this one's inputs.
    resume: resume::Resume,
    /// The tags to publish the list under (`tags::release_tags`).
    tags: Vec<String>,
    /// `--network`.
    network: Option<mab_config::NetworkMode>,
    /// `--secret` and `[image.secrets]`, read.
    secrets: mab_engine::Secrets,
    /// `--ssh`: the agents, and those mab serves for key files.
    ssh: mab_engine::SshAgents,
    /// `--metadata-file` and the state a resume reads, not yet written.
    metadata: MetadataFile,
    /// The runners' connections, started before the inputs were digested
    /// (none with `--resume`), until [`connect_and_plan`] takes them.
    early: std::sync::Mutex<Option<prepare::EarlyConnect>>,
}

/// Everything checked before the registry or a runner is asked: loads
/// `mab.toml` and the runners file ([`prepare::load`]), applies the flags
/// over them (`overrides`), reads the build's secrets (`secrets`: a
/// missing file or unset variable is exit 2), starts the `--ssh` agents
/// (`ssh`) and `--deadline` (counted from now), refuses a
/// `--platform` that narrows a build published under computed tags and an
/// `--allow-partial` without tags ([`tags`]), `--resume` with `--no-push`,
/// reads the build context and checks the `--target` is one of its
/// Dockerfile's stages, parses `--network` and `SOURCE_DATE_EPOCH` (a
/// malformed one is exit 2); only then starts connecting to the runners
/// that list the platforms ([`prepare::EarlyConnect`], not with
/// `--resume`, which decides later which runners it needs), so that a
/// mistake in the flags, the manifest, the runners file or the
/// environment contacts no runner. Then it digests the inputs on a
/// blocking thread, computes the release tags and the labels and build
/// arguments from the source (`labels`), loads the earlier build with
/// `--resume` (refused when its inputs differ), warns of the context's
/// warnings, of a metadata file sent with the context and then of the
/// tags, and creates the metadata file. Any failure here is returned as
/// it is, the metadata file not yet written: bad usage or configuration,
/// a build file that cannot be read or a metadata file that cannot be
/// written are exit 2 ([`Failure::usage`]); tags that git cannot compute
/// for another reason exit 1; a stop asked on `control` while the inputs
/// are digested is [`Failure::stopped`].
async fn load_and_check(
    args: &BuildArgs,
    environment: &Environment,
    shared: &Arc<dyn Reporter>,
    control: &BuildControl,
) -> Result<Prepared, Failure> {
    let reporter = shared.as_ref();
    let started = tokio::time::Instant::now();
    let loaded = prepare::load(&args.project, environment, reporter)?;
    let mut project = loaded.project;
    apply_overrides(&mut project, args, environment)?;
    cache::apply_cache_flag(&mut project, args.cache_from.as_deref())?;
    let ssh = ssh::start_agents(&args.ssh, environment).await?;
    let deadline = match &args.deadline {
        Some(deadline) => {
            let limit = time_limit("--deadline", deadline)?;
            Some((started + limit, limit))
        }
        None => None,
    };
    check_not_narrowing(&project, &loaded.manifest_platforms, args)?;
    check_partial_has_tags(args)?;
    resume::check_resume_pushes(args)?;
    let (context, listing) = prepare::build_context(&project)?;
    prepare::check_target(&project, &context, args.target.is_some())?;
    let secrets = secrets::read_secrets(&project, &args.secrets, environment, &context)?;
    // The checks that need only the flags and the environment come before
    // the runners are contacted: a mistake there logs in nowhere.
    let network = super::network_flag(args.network.as_deref())?;
    let source_date_epoch = labels::source_date_epoch(environment)?;
    let own_files = OwnFiles::of(args, environment, context.dir());
    // The runners are connected to while the inputs are digested and the
    // registry is asked; a resume decides first which ones it needs.
    let early = args.resume.is_none().then(|| {
        let runners = prepare::runners_for(&loaded.runners, &project.platforms);
        prepare::EarlyConnect::start(runners.into_iter().cloned().collect(), environment, shared)
    });
    let inputs = tokio::select! {
        biased;
        kind = control.stopped() => return Err(Failure::stopped(kind)),
        inputs = Inputs::in_background(&project, &context, &listing, own_files.paths()) => inputs?,
    };
    // The labels and the build arguments from the source change the images,
    // so they are inputs a resume must find unchanged: the source is read
    // before the resume is checked, its warnings told after.
    let held = HeldBack::default();
    let release = release_tags(&project, &context, &listing, args, environment, &held)?;
    let facts = labels::SourceFacts::of(release.source.as_ref(), release.provenance.as_ref());
    project.labels = labels::image_labels(&facts, source_date_epoch, &project.labels);
    labels::offer_build_args(&facts, &mut project.args);
    let mut inputs = inputs;
    inputs.take_source(&project);
    let resume = resume::Resume::start(args, environment, &project, &inputs)?;
    for warning in context.warnings() {
        reporter.report(Event::Warning {
            message: warning.clone(),
        });
    }
    warn_metadata_file_sent(&context, &own_files, reporter);
    held.tell(reporter);
    let tags = release.tags;
    let metadata = MetadataFile::create(args, environment, &project, inputs, reporter)?;
    Ok(Prepared {
        project,
        runners: loaded.runners,
        emulation: loaded.emulation,
        deadline,
        context,
        listing,
        resume,
        tags,
        network,
        secrets,
        ssh,
        metadata,
        early: std::sync::Mutex::new(early),
    })
}

/// Events held back, to be told later in the order they came
/// ([`HeldBack::tell`]).
#[derive(Default)]
struct HeldBack(std::sync::Mutex<Vec<Event>>);

impl Reporter for HeldBack {
    fn report(&self, event: Event) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event);
    }
}

impl HeldBack {
    /// Tells `reporter` every event held, in order.
    fn tell(self, reporter: &dyn Reporter) {
        let events = self
            .0
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in events {
            reporter.report(event);
        }
    }
}

/// The registry as the build speaks to it ([`open_registry`]).
struct RegistryAccess {
    /// The registry's host (`mab_registry::registry_of`), for messages.
    registry: String,
    /// Its credentials, if any ([`crate::ops::registry_credentials`]).
    credentials: Option<mab_registry::Credentials>,
    /// Where they came from, for the engines' pulls of base images.
    credential_sources: mab_registry::CredentialSources,
    /// The image's repository; `None` with `--no-push`.
    repository: Option<Repository>,
}

/// The registry of `[image] name`, its credentials
/// ([`crate::ops::registry_credentials`]: `DOCKER_AUTH_CONFIG`, then the
/// Docker `config.json`, a credential helper asked), and, unless `--no-push`,
/// the image's repository (its retries reported to `reporter`) with push
/// rights checked before anything is built ([`check_registry`], within
/// `prepared.deadline`). Every failure writes the metadata file as
/// `unstarted` says: an image name without a registry or a repository
/// name the registry refuses, or credentials that cannot be read, is usage
/// (exit 2); a credential helper that fails or does not answer in time, no
/// push rights, or the deadline coming first are a registry failure (exit
/// 1); a stop asked on `control` (also while a helper runs) is
/// [`Failure::stopped`].
async fn open_registry(
    args: &BuildArgs,
    environment: &Environment,
    prepared: &Prepared,
    unstarted: &BeforeJobs<'_>,
    reporter: &Arc<dyn Reporter>,
    control: &BuildControl,
) -> Result<RegistryAccess, Failure> {
    let image = &prepared.project.image;
    let registry = mab_registry::registry_of(image).map_err(|error| {
        let failure = Failure::usage(
            error.to_string(),
            Some("set [image] name to registry/namespace/name"),
        );
        unstarted.fail(failure, ErrorKind::Usage, None)
    })?;
    // A credential helper may hang: the lookup gives way to a stop and to
    // the deadline, as the check of push rights does.
    let (credential_sources, credentials) = unless_stopped(control, unstarted, async {
        let slow = || {
            (
                format!("asking for the credentials of {registry}"),
                "pass a later --deadline, or check why the credential helper answers slowly"
                    .to_owned(),
            )
        };
        before_deadline(
            prepared.deadline,
            slow,
            crate::ops::registry_credentials(environment, &registry),
        )
        .await
        .and_then(|looked_up| looked_up)
        .map_err(|failure| {
            let kind = match failure.kind {
                FailureKind::Usage => ErrorKind::Usage,
                _ => ErrorKind::Registry,
            };
            unstarted.fail(failure, kind, None)
        })
    })
    .await?;
    let repository = if args.no_push {
        None
    } else {
        Some(
            Repository::new(image, credentials.as_ref())
                .map_err(|error| {
                    let failure = Failure::usage(error.to_string(), None);
                    unstarted.fail(failure, ErrorKind::Usage, None)
                })?
                .reporting_to(Arc::clone(reporter)),
        )
    };
    unless_stopped(
        control,
        unstarted,
        check_registry(repository.as_ref(), &registry, prepared.deadline, unstarted),
    )
    .await?;
    Ok(RegistryAccess {
        registry,
        credentials,
        credential_sources,
        repository,
    })
}

/// What [`run_and_publish`] needs from [`connect_and_plan`].
struct Ready<'a> {
    /// What a resume reuses, and the platforms built.
    reuse: resume::Reuse,
    /// The runners of the platforms built, as the runners file lists them.
    runners: Vec<&'a mab_config::Runner>,
    /// Each of `runners` (by name), connected or why not.
    connected: HashMap<String, Result<Connected, Unreachable>>,
    /// One job per platform planned.
    plan: mab_plan::Plan,
    /// Under `--allow-partial`, the platforms that could not be planned,
    /// as failed jobs ([`plan_partially`]).
    unplanned: Vec<JobFailure>,
    /// Whether a job moves to its fallbacks (`--no-fallback`, `fallback`).
    fallback: Fallback,
}

/// With `--resume`, what the earlier build left that is reused (its
/// images read back by digest from `access`'s repository within the
/// deadline); then connects at once to the runners of the platforms left
/// to build (none when everything is reused) within the deadline, plans
/// one job per platform (under `--allow-partial`, the platforms that
/// cannot be planned fail as their jobs and the others are planned,
/// [`plan_partially`]), and reports the plan and the moves it made. Every
/// failure writes the metadata file (the reused platforms kept `pushed`):
/// the registry or the deadline while reading the earlier images (exit
/// 1), the deadline while connecting (naming the runners that had not
/// answered, exit 1), a plan that cannot be made ([`plan_failed`]: exit 1
/// for unreachable runners, 2 for configuration); a stop asked on
/// `control` is [`Failure::stopped`].
async fn connect_and_plan<'a>(
    args: &BuildArgs,
    environment: &Environment,
    prepared: &'a Prepared,
    access: &RegistryAccess,
    unstarted: &BeforeJobs<'_>,
    reporter: &Arc<dyn Reporter>,
    control: &BuildControl,
) -> Result<Ready<'a>, Failure> {
    let project = &prepared.project;
    let deadline = prepared.deadline;
    // A resume builds only what it cannot reuse, and contacts only the
    // runners of those platforms (none when everything is reused).
    let deciding = async {
        prepared
            .resume
            .decide(
                access.repository.as_ref(),
                &access.registry,
                &project.platforms,
                deadline,
                reporter.as_ref(),
            )
            .await
            .map_err(|failure| unstarted.fail(failure, ErrorKind::Registry, None))
    };
    let reuse = unless_stopped(control, unstarted, deciding).await?;
    let reused_entries = reuse.entries();
    // Now only the platforms to build are left to fail before their jobs.
    let unbuilt = BeforeJobs {
        platforms: &reuse.to_build,
        reused: &reused_entries,
        ..*unstarted
    };
    let runners = prepare::runners_for(&prepared.runners, &reuse.to_build);
    // The connections started early serve when the plan needs the same
    // runners; otherwise they are dropped (and stopped).
    let early = prepared
        .early
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .filter(|early| early.serves(&runners));
    let connecting = early
        .as_ref()
        .map_or_else(Default::default, prepare::EarlyConnect::connecting);
    let connecting_all = before_deadline(
        deadline,
        || {
            let pending = connecting.pending();
            let names: Vec<String> = pending.iter().map(|name| format!("`{name}`")).collect();
            (
                format!(
                    "connecting to the runners ({} had not answered)",
                    names.join(", ")
                ),
                format!(
                    "pass a later --deadline, or check why they answer slowly: `mab runners check {}`",
                    pending.join(" ")
                ),
            )
        },
        async {
            match early {
                Some(early) => early.finish().await,
                None => prepare::connect_all(&runners, environment, reporter, &connecting).await,
            }
        },
    );
    let connecting_all = async {
        connecting_all
            .await
            .map_err(|failure| unbuilt.fail(failure, ErrorKind::Runner, None))
    };
    let connected = unless_stopped(control, &unbuilt, connecting_all).await?;
    let fallback = if args.no_fallback || !project.fallback {
        Fallback::Refused
    } else {
        Fallback::Allowed
    };
    let planning = |platforms: &[mab_config::Platform]| {
        prepare::plan(
            platforms,
            prepared.emulation,
            fallback,
            &prepared.runners,
            &runners,
            &connected,
            !prepared.ssh.is_empty(),
        )
    };
    let (plan, unplanned) = match planning(&reuse.to_build) {
        Ok(plan) => (plan, Vec::new()),
        Err(error) if args.allow_partial && !args.no_push => {
            plan_partially(error, &planning, &connected, &unbuilt)?
        }
        Err(error) => return Err(plan_failed(error, &connected, &unbuilt)),
    };
    reporter.report(Event::Plan {
        image: project.image.clone(),
        context_files: prepared.listing.files,
        jobs: plan
            .jobs
            .iter()
            .map(|job| mab_events::PlannedJob {
                platform: job.platform.clone(),
                runner: job.runner.clone(),
                emulated: job.emulated,
                reason: job.reason.clone(),
            })
            .collect(),
    });
    report_planned_moves(&plan, reporter.as_ref());
    Ok(Ready {
        reuse,
        runners,
        connected,
        plan,
        unplanned,
        fallback,
    })
}

/// Warns once when the `--metadata-file` is inside the build context and
/// no ignore rule leaves it out: it is sent to every runner, and as each
/// build rewrites it, a `COPY .` step never finds its cache.
fn warn_metadata_file_sent(
    context: &mab_context::BuildContext,
    own_files: &OwnFiles,
    reporter: &dyn Reporter,
) {
    let Some(relative) = &own_files.metadata else {
        return;
    };
    if context.ignore().is_excluded(&relative.to_string_lossy()) {
        return;
    }
    let ignore_file = context
        .ignore_file()
        .map_or_else(|| context.dir().join(".dockerignore"), Path::to_path_buf);
    reporter.report(Event::Warning {
        message: format!(
            "the metadata file {} is inside the build context {}: it is sent to every runner, and as every build rewrites it, a `COPY .` step is never cached; hint: write it outside the context (`--metadata-file \"$RUNNER_TEMP/build.json\"` in CI) or add `{}` to {}",
            relative.display(),
            context.dir().display(),
            relative.display(),
            ignore_file.display()
        ),
    });
}

/// The job to run for a planned platform.
fn job_spec(job: &mab_plan::Job) -> JobSpec {
    JobSpec {
        platform: job.platform.clone(),
        runner: job.runner.clone(),
        emulated: job.emulated,
        fallbacks: job.fallbacks(),
        moved_from: job.moved_from.clone(),
    }
}

/// `future`'s output, or a runtime failure when `deadline` (`--deadline`:
/// when, and the limit as given) comes first, saying that it came while
/// doing what `doing` describes then (the message's part, naming the
/// runners or the registry waited for, and the hint) and that nothing was
/// built.
pub(super) async fn before_deadline<T>(
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
    doing: impl FnOnce() -> (String, String),
    future: impl std::future::Future<Output = T>,
) -> Result<T, Failure> {
    let Some((at, limit)) = deadline else {
        return Ok(future.await);
    };
    tokio::time::timeout_at(at, future).await.map_err(|_| {
        let (doing, hint) = doing();
        Failure::runtime(
            format!(
                "the build's deadline (--deadline {}) came while {doing}; nothing was built",
                humantime::format_duration(limit)
            ),
            Some(&hint),
        )
    })
}

/// `future`'s result, or, when a signal asks the build to stop first
/// (`control`), [`Failure::stopped`] with the metadata file written as
/// `unstarted` says, every platform `not_started` without an error.
async fn unless_stopped<T>(
    control: &BuildControl,
    unstarted: &BeforeJobs<'_>,
    future: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::select! {
        biased;
        kind = control.stopped() => {
            Err(unstarted.fail(Failure::stopped(kind), ErrorKind::Runner, Some(&[])))
        }
        result = future => result,
    }
}

/// A planned build, as [`run_and_publish`] takes it.
struct Planned<'a> {
    /// `[image] name` (`registry/namespace/name`).
    image: &'a str,
    /// One per platform, in the order of `mab.toml`.
    jobs: &'a [JobSpec],
    /// How many jobs each runner (by name) runs at once.
    slots: &'a HashMap<String, u32>,
    /// The tags to publish the list under.
    tags: &'a [String],
    /// The jobs' time limits.
    limits: Limits,
    /// Whether a job whose runner fails before its build starts moves on.
    fallback: Fallback,
    /// `--allow-partial`: when some platforms fail and others succeed,
    /// publish the list of those that succeeded (exit 1).
    allow_partial: bool,
    /// Under `--allow-partial`, the platforms that could not be planned
    /// because their runners were unreachable ([`plan_partially`]), as
    /// failed jobs; they come after `jobs` in the metadata.
    unplanned: &'a [JobFailure],
    /// `--resume`: the earlier build's platforms taken over by digest
    /// (their entries, and their images as the registry serves them);
    /// they join the list in the order of `mab.toml`.
    reused: &'a [(PlatformMetadata, Child)],
    /// The annotations of the list when it is an OCI index
    /// (`labels::index_annotations`).
    annotations: &'a std::collections::BTreeMap<String, String>,
    /// Whether `[annotations]` gives any, for the warning that a Docker
    /// manifest list cannot carry them.
    annotations_configured: bool,
}

/// Push rights, before anything is built ([`check_push`]), unless
/// `--no-push` (`repository` `None`). A failure, or the deadline coming
/// first, writes the metadata file with the registry as the cause on
/// every platform.
async fn check_registry<R: Registry>(
    repository: Option<&R>,
    registry: &str,
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
    unstarted: &BeforeJobs<'_>,
) -> Result<(), Failure> {
    let Some(repository) = repository else {
        return Ok(());
    };
    before_deadline(
        deadline,
        || slow_registry(registry, "checking push rights"),
        check_push(repository, registry),
    )
    .await
    .and_then(|checked| checked)
    .map_err(|failure| unstarted.fail(failure, ErrorKind::Registry, None))
}

/// What [`before_deadline`] says when the deadline came while `doing`
/// something at `registry`, and its hint.
pub(super) fn slow_registry(registry: &str, doing: &str) -> (String, String) {
    (
        format!("{doing} at {registry}"),
        format!("pass a later --deadline, or check why {registry} answers slowly"),
    )
}

/// Why a plan could not be made, as `mab build` and `mab plan` report it:
/// platforms stranded on unreachable runners by fallback being off fail as
/// their jobs on those runners ([`stranded`], exit 1); any other
/// [`PlanError`] as [`prepare::plan_failure`] reports it.
pub(crate) fn plan_error_report(
    error: PlanError,
    connected: &HashMap<String, Result<Connected, Unreachable>>,
) -> Failure {
    match error {
        PlanError::PreferredUnreachable { unreachable, .. } => {
            failure_report(&stranded(&unreachable, connected))
        }
        error => prepare::plan_failure(error, connected),
    }
}

/// The failure of a plan that could not be made ([`plan_error_report`]),
/// with the metadata file written. Stranded platforms are `failed` on
/// their runners, the others `not_started`; otherwise the platforms the
/// [`PlanError`] names carry its message, as a runner problem when the
/// failure is a runtime one (exit 1, runners unreachable) and as usage
/// when it is a configuration one (exit 2).
fn plan_failed(
    error: PlanError,
    connected: &HashMap<String, Result<Connected, Unreachable>>,
    unstarted: &BeforeJobs<'_>,
) -> Failure {
    if let PlanError::PreferredUnreachable {
        unreachable,
        planned,
    } = &error
    {
        let failures = stranded(unreachable, connected);
        let states: Vec<PlatformMetadata> = unstarted
            .platforms
            .iter()
            .map(|platform| {
                let failure = failures
                    .iter()
                    .find(|failure| &failure.job.platform == platform);
                let job = planned.iter().find(|job| &job.platform == platform);
                match (failure, job) {
                    (Some(failure), _) => PlatformMetadata::failed(failure),
                    (None, Some(job)) => PlatformMetadata::not_started(&job_spec(job)),
                    (None, None) => PlatformMetadata::not_planned(platform, None),
                }
            })
            .collect();
        unstarted.write(&states);
        return failure_report(&failures);
    }
    let concerned = error.platforms();
    let failure = prepare::plan_failure(error, connected);
    let kind = match failure.kind {
        FailureKind::Usage => ErrorKind::Usage,
        _ => ErrorKind::Runner,
    };
    unstarted.fail(failure, kind, Some(&concerned))
}

/// The plan under `--allow-partial` when `error` stopped the plan of
/// every platform: the platforms it names fail as their jobs
/// ([`unplanned_failures`]) and `planning` plans the others, again until
/// a plan is made. A configuration error (exit 2), or one that leaves no
/// platform to build, fails as [`plan_failed`] and
/// [`failure_report`] say, publishing nothing.
fn plan_partially(
    mut error: PlanError,
    planning: &dyn Fn(&[mab_config::Platform]) -> Result<mab_plan::Plan, PlanError>,
    connected: &HashMap<String, Result<Connected, Unreachable>>,
    unstarted: &BeforeJobs<'_>,
) -> Result<(mab_plan::Plan, Vec<JobFailure>), Failure> {
    let mut failures: Vec<JobFailure> = Vec::new();
    loop {
        let before = failures.len();
        failures.extend(unplanned_failures(&error, connected));
        if failures.len() == before {
            return Err(plan_failed(error, connected, unstarted));
        }
        let remaining: Vec<mab_config::Platform> = unstarted
            .platforms
            .iter()
            .filter(|platform| {
                !failures
                    .iter()
                    .any(|failure| &failure.job.platform == *platform)
            })
            .cloned()
            .collect();
        if remaining.is_empty() {
            let states: Vec<PlatformMetadata> =
                failures.iter().map(PlatformMetadata::failed).collect();
            unstarted.write(&states);
            return Err(failure_report(&failures));
        }
        match planning(&remaining) {
            Ok(plan) => return Ok((plan, failures)),
            Err(next) => error = next,
        }
    }
}

/// The platforms a [`PlanError`] names as failed jobs (kind runner) on the
/// unreachable runner that kept them from being planned: those stranded by
/// fallback being off ([`stranded`]), or a platform whose only runners
/// were unreachable. Empty for a configuration error.
fn unplanned_failures(
    error: &PlanError,
    connected: &HashMap<String, Result<Connected, Unreachable>>,
) -> Vec<JobFailure> {
    if !error.is_unreachable() {
        return Vec::new();
    }
    match error {
        PlanError::PreferredUnreachable { unreachable, .. } => stranded(unreachable, connected),
        PlanError::NoUsableRunner { platform, rejected }
        | PlanError::NoNativeRunner { platform, rejected } => {
            let runner = rejected
                .iter()
                .find(|rejection| rejection.unreachable())
                .map_or("", |rejection| rejection.runner.as_str());
            vec![JobFailure::new(
                &JobSpec::on(platform.clone(), runner),
                ErrorKind::Runner,
                error.to_string(),
                error.hint(),
            )]
        }
        PlanError::NoRunner { .. } => Vec::new(),
    }
}

/// The platforms `unreachable` that stay on their unreachable runners
/// because fallback is off, as their jobs' failures on those runners
/// (kind runner): the hint about fallback, then the hint of the runner's
/// own failure in `connected`, when it has one.
fn stranded(
    unreachable: &[(mab_config::Platform, mab_plan::Move)],
    connected: &HashMap<String, Result<Connected, Unreachable>>,
) -> Vec<JobFailure> {
    unreachable
        .iter()
        .map(|(platform, moved)| {
            let fallback_hint = mab_plan::fallback_hint(&[moved.runner.as_str()]);
            let runner_hint = connected
                .get(&moved.runner)
                .and_then(|result| result.as_ref().err()?.hint.as_ref());
            JobFailure {
                movable: true,
                ..JobFailure::new(
                    &JobSpec::on(platform.clone(), &moved.runner),
                    ErrorKind::Runner,
                    moved.reason.clone(),
                    match runner_hint {
                        Some(hint) => format!("{fallback_hint}\nhint: {hint}"),
                        None => fallback_hint,
                    },
                )
            }
        })
        .collect()
}

/// The decisions after planning: runs every job through `worker` (moving
/// a job whose runner fails before its build starts, unless
/// `planned.fallback` refuses it); when any platform failed, or `control`
/// was asked to stop (Ctrl-C, SIGTERM) before the publish starts, goes
/// through [`drop_failed`], which fails publishing nothing unless
/// `--allow-partial` keeps those that succeeded. With `repository` `None`
/// (`--no-push`) writes the metadata with no digests and returns nothing
/// for stdout. Otherwise [`publish_list`] publishes the list and
/// [`outcome`] says how the build ended: `image@digest` and a newline for
/// stdout, exit 1 when the list is partial.
async fn run_and_publish<W: Worker, R: Registry>(
    planned: &Planned<'_>,
    worker: &W,
    repository: Option<&R>,
    metadata: &MetadataFile,
    control: &BuildControl,
    reporter: &dyn Reporter,
) -> Result<BuildOutcome, Failure> {
    let mut results = run_all(
        worker,
        planned.jobs,
        planned.slots,
        planned.limits,
        planned.fallback,
        reporter,
    )
    .await;
    results.extend(planned.unplanned.iter().cloned().map(Err));
    let states = platform_states(planned, &results, metadata, false);
    // A signal asked to stop: the build fails as it stands, publishing
    // nothing, even when every job had finished.
    let stop = control.stop_requested();
    let checked = match (all_or_failures(results.clone()), stop) {
        (Ok(_), Some(_)) => Err(Vec::new()),
        (checked, _) => checked,
    };
    let ended = Ended {
        planned,
        results: &results,
        states: &states,
        metadata,
        reporter,
    };
    let (built, left_out) = match checked {
        Ok(built) => (built, Vec::new()),
        Err(failures) => drop_failed(&ended, repository, failures, stop).await?,
    };
    let Some(repository) = repository else {
        metadata.write(planned.image, None, planned.tags, &states, None, reporter)?;
        return Ok(BuildOutcome {
            image: planned.image.to_owned(),
            digest: None,
        });
    };
    let digest = publish_list(&ended, repository, &built, &left_out, control).await?;
    outcome(planned, digest, &left_out)
}

/// Each platform's metadata entry, in the order of `mab.toml`: those of
/// the `results` built or failed, with `--resume` the reused ones among
/// them; the built and reused ones `published` once the list is, else
/// `pushed`.
fn platform_states(
    planned: &Planned<'_>,
    results: &[Result<Built, JobFailure>],
    metadata: &MetadataFile,
    published: bool,
) -> Vec<PlatformMetadata> {
    let states: Vec<PlatformMetadata> = results
        .iter()
        .map(|result| match result {
            Ok(built) => PlatformMetadata::built(built, published),
            Err(failure) => PlatformMetadata::failed(failure),
        })
        .collect();
    metadata.in_order(&states, &resume::reused_entries(planned.reused, published))
}

/// Where [`run_and_publish`] stands once every job has ended, for the
/// steps after it.
struct Ended<'a> {
    planned: &'a Planned<'a>,
    /// Each job's result, in job order, then the unplanned platforms.
    results: &'a [Result<Built, JobFailure>],
    /// Each platform's metadata entry before publishing, in the order of
    /// `mab.toml` (the reused ones `pushed`).
    states: &'a [PlatformMetadata],
    metadata: &'a MetadataFile,
    reporter: &'a dyn Reporter,
}

impl Ended<'_> {
    /// A publish that failed: the pushed images keep their staging tags
    /// (reported, [`Ended::report_kept`]), the metadata is written as a
    /// failed build, and the failure is a runtime one with `message` and
    /// `hint`.
    fn fail_keeping_staging_tags(&self, message: String, hint: &str) -> Failure {
        self.report_kept();
        self.write_failed();
        Failure::runtime(message, Some(hint))
    }

    /// Reports the staging tags that stay for a `--resume`: those of the
    /// images this build pushed and verified, and those of the images a
    /// resume reused; nothing when there are none.
    fn report_kept(&self) {
        let reused = self.planned.reused.iter().filter_map(|(entry, _)| {
            let digest = entry.digest.clone()?;
            Some(Staged::of(&entry.platform, digest))
        });
        let tags: Vec<String> = staged_of(self.results, true)
            .into_iter()
            .chain(reused)
            .map(|staged| staged.tag)
            .collect();
        if tags.is_empty() {
            return;
        }
        self.reporter.report(Event::StagingTagsLeft {
            image: self.planned.image.to_owned(),
            tags,
            reason: StagingTagsReason::KeptForResume,
        });
    }

    /// Writes the metadata file of a build that published nothing: each
    /// platform's state and error as `states` holds them, no digest
    /// ([`MetadataFile::write_failed`]).
    fn write_failed(&self) {
        self.metadata.write_failed(
            self.planned.image,
            self.planned.tags,
            self.states,
            self.reporter,
        );
    }
}

/// When platforms failed (`failures`) or a signal asked to stop (`stop`):
/// removes the staging tags of the failed platforms that were pushed
/// (those of the verified ones stay for a resume or the partial list).
/// Under `--allow-partial`, with a `repository`, no stop and something to
/// publish (a platform built or reused), returns the built platforms and
/// the `failures` left out of the list. Otherwise writes the metadata
/// (each platform's state and error, no digest) and fails, publishing
/// nothing: with [`Failure::stopped`] (130, 143) after a stop, else
/// exit 1 naming each platform and the runners it was tried on with its
/// log tail ([`failure_report`]).
async fn drop_failed<R: Registry>(
    ended: &Ended<'_>,
    repository: Option<&R>,
    failures: Vec<JobFailure>,
    stop: Option<FailureKind>,
) -> Result<(Vec<Built>, Vec<JobFailure>), Failure> {
    let (planned, results, reporter) = (ended.planned, ended.results, ended.reporter);
    // `--allow-partial` publishes those that succeeded, if any.
    let partial = stop.is_none()
        && planned.allow_partial
        && repository.is_some()
        && (results.iter().any(Result::is_ok) || !planned.reused.is_empty());
    if let Some(repository) = repository {
        // The images of the platforms that succeeded keep their
        // staging tags: a registry that deletes an image with its
        // last tag would lose what a resume (or the partial list)
        // reuses. Those of the failed platforms go.
        let pushed_failed = staged_of(results, false);
        remove_staging_tags(repository, &pushed_failed, reporter).await;
    }
    if !partial {
        if repository.is_some() {
            ended.report_kept();
        }
        ended.write_failed();
        return Err(match stop {
            Some(kind) => Failure::stopped_after_jobs(kind, resumable(ended, repository.is_some())),
            None => failure_report(&failures),
        });
    }
    let built: Vec<Built> = results
        .iter()
        .filter_map(|result| result.as_ref().ok())
        .cloned()
        .collect();
    Ok((built, failures))
}

/// How many platforms a `--resume` after this build would reuse: those
/// pushed and verified, and those it reused itself; none with `--no-push`
/// (`pushed` false), which keeps no state.
fn resumable(ended: &Ended<'_>, pushed: bool) -> usize {
    if !pushed {
        return 0;
    }
    let verified = ended
        .results
        .iter()
        .filter(|result| result.as_ref().is_ok_and(|built| built.child.is_some()))
        .count();
    verified + ended.planned.reused.len()
}

/// Publishes the list of the `built` children in job order (with
/// `--resume`, the reused images among them, all in the order of
/// `mab.toml`) under the tags, with `control` marked as publishing while
/// the list and its tags are pushed, so that an interrupt waits for that
/// (and only that); reports it published (the platforms `left_out` by
/// `--allow-partial` named missing, each with a warning) and writes the
/// metadata with the list's digest at once. Then reads it back
/// ([`read_list_back`]), removes the staging tags (a resume's reused ones
/// too), reads each platform's image back ([`read_children_back`]),
/// reports the read back and writes the metadata again; returns the
/// list's digest.
///
/// A stop asked before the publish starts is [`Failure::stopped`]; a
/// publish the registry refuses is exit 1 naming it, the staging tags
/// then stay (reported), and the metadata records a failed build with
/// those pushed kept `pushed`. A list not read back as published (a tag
/// moved by another writer, the list or an image not served as pushed)
/// is exit 1 too ([`ReadBackError`]): the list is published all the same,
/// so the metadata keeps its digest, with the failure in `read_back_error`.
async fn publish_list<R: Registry>(
    ended: &Ended<'_>,
    repository: &R,
    built: &[Built],
    left_out: &[JobFailure],
    control: &BuildControl,
) -> Result<String, Failure> {
    let (planned, results, metadata, reporter) =
        (ended.planned, ended.results, ended.metadata, ended.reporter);
    let children = children_in_order(planned, built, metadata);
    if planned.annotations_configured && !mab_registry::carries_annotations(&children) {
        reporter.report(Event::Warning {
            message: "[annotations] in mab.toml are not published: the images are Docker manifests, so the list is a Docker manifest list, which has no annotations (only an OCI image index has)".to_owned(),
        });
    }
    let (media_type, bytes) = mab_registry::manifest_list(&children, planned.annotations);
    // While the list and its tags are pushed, a Ctrl-C waits for the
    // build to end rather than leave some tags moved and others not.
    let publishing = control.start_publish().map_err(|kind| {
        ended.write_failed();
        Failure::stopped_after_jobs(kind, resumable(ended, true))
    })?;
    let pushed = repository.publish(media_type, &bytes, planned.tags).await;
    // Every tag points at the list, or the publish failed: from here on
    // a Ctrl-C stops the build again.
    match pushed {
        Ok(_) => publishing.published(),
        Err(_) => drop(publishing),
    }
    let digest = pushed.map_err(|error| {
        // The images stay under their staging tags: a list that reached
        // some tags refers to them, and deleting a tag may delete its
        // manifest on some registries.
        ended.fail_keeping_staging_tags(
            error.to_string(),
            "check that the registry accepts pushes of manifest lists, then run `mab build` again",
        )
    })?;
    report_published(planned, &digest, left_out, reporter);
    let states = platform_states(planned, results, metadata, true);
    let write = |read_back_error: Option<&str>| {
        metadata.write(
            planned.image,
            Some(metadata::ListWritten {
                digest: &digest,
                media_type,
                size: bytes.len() as u64,
            }),
            planned.tags,
            &states,
            read_back_error,
            reporter,
        )
    };
    write(None)?;
    let list = PublishedList {
        image: planned.image.to_owned(),
        digest: digest.clone(),
        tags: planned.tags.to_vec(),
    };
    let read_back_failed = |error: ReadBackError| {
        let message = error.to_string();
        if let Err(failure) = write(Some(&message)) {
            reporter.report(Event::Warning {
                message: failure.report.trim_start_matches("error: ").to_owned(),
            });
        }
        let outcome = BuildOutcome {
            image: planned.image.to_owned(),
            digest: Some(digest.clone()),
        };
        Failure {
            stdout: outcome.stdout(),
            digest: outcome.digest,
            ..Failure::runtime(message, Some(&error.hint()))
        }
    };
    let platforms = match read_list_back(repository, &list).await {
        Ok(platforms) => platforms,
        Err(error) => {
            // The images keep their staging tags for a resume.
            ended.report_kept();
            return Err(read_back_failed(error));
        }
    };
    let done = staged_in_order(planned, built, metadata);
    remove_staging_tags(repository, &done, reporter).await;
    read_children_back(repository, &list, &children)
        .await
        .map_err(read_back_failed)?;
    reporter.report(Event::ReadBack {
        image: planned.image.to_owned(),
        digest: digest.clone(),
        tags: planned.tags.to_vec(),
        platforms,
    });
    Ok(digest)
}

/// The children of the list: those of the `built` platforms in job
/// order, with `--resume` the reused images among them, all in the
/// order of `mab.toml`.
fn children_in_order(
    planned: &Planned<'_>,
    built: &[Built],
    metadata: &MetadataFile,
) -> Vec<Child> {
    in_list_order(
        planned,
        built,
        metadata,
        |built| Some((&built.job.platform, built.child.clone()?)),
        |(entry, child)| Some((&entry.platform, child.clone())),
    )
}

/// Reports the list published under the tags, the platforms `left_out`
/// by `--allow-partial` named missing, each with a warning.
fn report_published(
    planned: &Planned<'_>,
    digest: &str,
    left_out: &[JobFailure],
    reporter: &dyn Reporter,
) {
    reporter.report(Event::Published {
        image: planned.image.to_owned(),
        digest: digest.to_owned(),
        tags: planned.tags.to_vec(),
        missing: left_out
            .iter()
            .map(|failure| failure.job.platform.clone())
            .collect(),
    });
    for failure in left_out {
        reporter.report(Event::Warning {
            message: format!(
                "{} is missing from the partial list published as {} (--allow-partial): it failed on runner `{}`: {}",
                failure.job.platform,
                planned.tags.join(", "),
                failure.job.runner,
                failure.message
            ),
        });
    }
}

/// The staging tags to remove once the list is published, in the order
/// of [`children_in_order`]: those of the `built` platforms and, with
/// `--resume`, those of the reused images, which keep them until now.
/// Each goes while it still points at its digest ([`remove_staging_tags`]).
fn staged_in_order(planned: &Planned<'_>, built: &[Built], metadata: &MetadataFile) -> Vec<Staged> {
    in_list_order(
        planned,
        built,
        metadata,
        |built| {
            let digest = built.child.as_ref()?.digest.clone();
            Some((&built.job.platform, Staged::of(&built.job.platform, digest)))
        },
        |(entry, _)| {
            let digest = entry.digest.clone()?;
            Some((&entry.platform, Staged::of(&entry.platform, digest)))
        },
    )
}

/// What `of_built` takes from each of the `built` platforms and
/// `of_reused` from each image a resume reuses (`planned.reused`), with
/// the platform it is of (`None`: nothing of it), in job order, or with
/// reused images in the order of `mab.toml`.
fn in_list_order<'a, T>(
    planned: &'a Planned<'_>,
    built: &'a [Built],
    metadata: &MetadataFile,
    of_built: impl Fn(&'a Built) -> Option<(&'a mab_config::Platform, T)>,
    of_reused: impl Fn(&'a (PlatformMetadata, Child)) -> Option<(&'a mab_config::Platform, T)>,
) -> Vec<T> {
    let mut items: Vec<(&mab_config::Platform, T)> = built
        .iter()
        .filter_map(of_built)
        .chain(planned.reused.iter().filter_map(of_reused))
        .collect();
    if !planned.reused.is_empty() {
        metadata.sort_in_order(&mut items, |(platform, _)| platform);
    }
    items.into_iter().map(|(_, item)| item).collect()
}

/// How a published build ended: `image@digest` for stdout, and, when
/// platforms were `left_out` of a partial list (`--allow-partial`), a
/// failure (exit 1) that names them as [`failure_report`] does, saying
/// the list was published under the tags, with the same stdout and digest.
fn outcome(
    planned: &Planned<'_>,
    digest: String,
    left_out: &[JobFailure],
) -> Result<BuildOutcome, Failure> {
    let outcome = BuildOutcome {
        image: planned.image.to_owned(),
        digest: Some(digest),
    };
    if left_out.is_empty() {
        return Ok(outcome);
    }
    let ending = format!(
        "published a partial list without {} as {} (--allow-partial)",
        if left_out.len() == 1 { "it" } else { "them" },
        planned.tags.join(", ")
    );
    Err(Failure {
        stdout: outcome.stdout(),
        digest: outcome.digest,
        ..failure_report_ending(left_out, &ending)
    })
}

/// The images of the `results` that succeeded (`ok`) or failed, that were
/// pushed, with their staging tags ([`staged`]).
fn staged_of(results: &[Result<Built, JobFailure>], ok: bool) -> Vec<Staged> {
    let chosen: Vec<Result<Built, JobFailure>> = results
        .iter()
        .filter(|result| result.is_ok() == ok)
        .cloned()
        .collect();
    staged(&chosen)
}

/// The report for failed platforms: each with the runners it was tried
/// on, its log tail, and the hints grouped by cause (a Dockerfile step,
/// the runner, the registry, usage), each hint once.
fn failure_report(failures: &[JobFailure]) -> Failure {
    failure_report_ending(failures, "nothing was published")
}

/// [`failure_report`], its message ending in `ending` (what was published)
/// rather than "nothing was published".
fn failure_report_ending(failures: &[JobFailure], ending: &str) -> Failure {
    let mut details = Vec::new();
    for failure in failures {
        for (runner, message) in &failure.earlier {
            details.push(format!("{} on {runner}: {message}", failure.job.platform));
        }
        details.push(format!(
            "{} on {}: {}",
            failure.job.platform, failure.job.runner, failure.message
        ));
        // The log's last line is often the step's failure, which the
        // message already says (all there is when the step printed nothing).
        let mut tail = failure.log_tail.as_slice();
        if let Some((last, rest)) = tail.split_last() {
            if !last.trim().is_empty() && failure.message.ends_with(last.trim()) {
                tail = rest;
            }
        }
        details.extend(tail.iter().map(|line| format!("    {line}")));
    }
    let mut hints: Vec<&str> = Vec::new();
    for kind in [
        ErrorKind::Build,
        ErrorKind::Test,
        ErrorKind::Binaries,
        ErrorKind::Runner,
        ErrorKind::Registry,
        ErrorKind::Usage,
    ] {
        for failure in failures.iter().filter(|failure| failure.kind == kind) {
            if !hints.contains(&failure.hint.as_str()) {
                hints.push(&failure.hint);
            }
        }
    }
    let names: Vec<String> = failures
        .iter()
        .map(|failure| {
            let mut runners: Vec<&str> = failure
                .earlier
                .iter()
                .map(|(runner, _)| runner.as_str())
                .collect();
            runners.push(&failure.job.runner);
            let label = if runners.len() == 1 {
                "runner"
            } else {
                "runners"
            };
            format!("{} ({label} {})", failure.job.platform, runners.join(", "))
        })
        .collect();
    Failure::runtime_with_details(
        format!("build failed for {}; {ending}", names.join(", ")),
        &hints,
        &details,
    )
}

#[cfg(test)]
mod tests {
    /// No annotations, for a list of Docker manifests.
    static EMPTY_ANNOTATIONS: std::collections::BTreeMap<String, String> =
        std::collections::BTreeMap::new();
    use std::sync::Mutex;

    use mab_registry::{sha256_digest, ConfigPlatform, RegistryError, DOCKER_MANIFEST};
    use serde_json::json;

    use super::*;
    use crate::ops::connect::UnreachableKind;
    use crate::ops::jobs::Built;
    use worker::{movable, Stage};

    const REGISTRY: &str = "127.0.0.1:5000";
    const IMAGE: &str = "127.0.0.1:5000/app";

    /// How the fake worker ends a platform's job on a runner.
    #[derive(Clone, Copy)]
    enum Outcome {
        Built,
        /// The Dockerfile's steps fail: nothing was pushed.
        FailsBeforePush,
        /// Pushed under its staging tag, then the image is not the platform's.
        FailsAfterPush,
        /// The engine could not be reached before the build started.
        Unreachable,
        /// The build stream broke and the engine then failed a ping.
        EngineLost,
        /// The build stream broke, but the engine still answers.
        StreamBroken,
        /// A `RUN` step could not get its network on this engine.
        NetworkSetup,
        /// The registry refused the push.
        PushRefused,
        /// Runs for ten hours, then builds.
        Hangs,
    }

    /// Ends each platform's job on its planned runner as `outcomes` says,
    /// on another runner as `elsewhere` says (built when not listed);
    /// pushes unless `--no-push`; records each run as `platform on runner`.
    struct FakeWorker {
        outcomes: Vec<(&'static str, Outcome)>,
        elsewhere: Vec<(&'static str, &'static str, Outcome)>,
        pushes: bool,
        runs: Mutex<Vec<String>>,
        /// What a signal sets to stop the build; `None`: nothing stops it.
        control: Option<BuildControl>,
        /// The digests a [`FakeRegistry`] lost with their tags: an image
        /// this worker pushes is served again.
        lost: Arc<Mutex<Vec<String>>>,
        /// The images pushed are OCI manifests ([`child_as`]).
        oci: bool,
    }

    /// A pushed image with a digest that names its platform, for readable tables.
    fn child(platform: &str) -> Child {
        let mut parts = platform.split('/').map(str::to_owned);
        Child {
            media_type: DOCKER_MANIFEST.to_owned(),
            digest: format!("sha256:{}", platform.replace('/', "-")),
            size: 500,
            platform: ConfigPlatform {
                os: parts.next().unwrap(),
                architecture: parts.next().unwrap(),
                variant: parts.next(),
            },
            image_size: 4096,
        }
    }

    /// [`child`], an OCI manifest when `oci`.
    fn child_as(platform: &str, oci: bool) -> Child {
        match oci {
            true => Child {
                media_type: mab_registry::OCI_MANIFEST.to_owned(),
                ..child(platform)
            },
            false => child(platform),
        }
    }

    impl Worker for FakeWorker {
        fn control(&self) -> Option<&BuildControl> {
            self.control.as_ref()
        }

        async fn run(&self, job: &JobSpec) -> Result<Built, JobFailure> {
            let platform = job.platform.to_string();
            let runner = job.runner.as_str();
            self.runs
                .lock()
                .unwrap()
                .push(format!("{platform} on {runner}"));
            let outcome = match self
                .elsewhere
                .iter()
                .find(|(name, on, _)| *name == platform && *on == runner)
            {
                Some((_, _, outcome)) => *outcome,
                None if runner == runner_of(&platform) => {
                    self.outcomes
                        .iter()
                        .find(|(name, _)| *name == platform)
                        .expect("every job has a row")
                        .1
                }
                None => Outcome::Built,
            };
            let fail = |stage: Stage, message: String| {
                let log = match stage {
                    Stage::Build => vec![format!("#5 RUN false ({platform})")],
                    _ => Vec::new(),
                };
                stage.failure(job, message, log, REGISTRY)
            };
            let broke = format!(
                "the connection to the Docker engine of {runner} broke during the build: connection reset"
            );
            if self.pushes && matches!(outcome, Outcome::Built | Outcome::FailsAfterPush) {
                let pushed = child(&platform).digest;
                self.lost.lock().unwrap().retain(|lost| *lost != pushed);
            }
            match outcome {
                Outcome::Built => Ok(Built {
                    job: job.clone(),
                    child: self.pushes.then(|| child_as(&platform, self.oci)),
                    seconds: 2.5,
                    test: None,
                    binaries: None,
                }),
                Outcome::Hangs => {
                    tokio::time::sleep(std::time::Duration::from_secs(36_000)).await;
                    Ok(Built {
                        job: job.clone(),
                        child: self.pushes.then(|| child(&platform)),
                        seconds: 36_000.0,
                        test: None,
                        binaries: None,
                    })
                }
                Outcome::FailsBeforePush => {
                    Err(fail(Stage::Build, "RUN false: exit code 1".to_owned()))
                }
                Outcome::NetworkSetup => Err(fail(
                    Stage::Build,
                    "failed to create network mab0: could not add veth pair".to_owned(),
                )),
                Outcome::FailsAfterPush => Err(JobFailure {
                    digest: Some(child(&platform).digest),
                    ..fail(Stage::Verify, "the image is for linux/amd64".to_owned())
                }),
                Outcome::PushRefused => Err(fail(
                    Stage::Push,
                    "unauthorized: authentication required".to_owned(),
                )),
                Outcome::StreamBroken => Err(fail(Stage::Runner, broke)),
                Outcome::Unreachable => Err(movable(fail(
                    Stage::Runner,
                    format!("cannot reach the Docker engine of {runner}: connection refused"),
                ))),
                Outcome::EngineLost => Err(movable(fail(
                    Stage::Runner,
                    format!("{broke}; then the Docker engine of {runner} did not answer GET /_ping: connection refused"),
                ))),
            }
        }
    }

    /// What the fake registry answers to `check_push`.
    #[derive(Clone, Copy, Default)]
    enum PushRights {
        #[default]
        Allowed,
        Denied,
        Unreachable,
        OtherAnswer,
        /// Answers after ten hours.
        Hangs,
    }

    /// How the fake registry behaves.
    #[derive(Clone, Copy, Default)]
    struct Answers {
        push_rights: PushRights,
        publish_fails: bool,
        /// `delete_tag` deletes; otherwise it answers that tags are not
        /// deleted here (the Docker registry).
        deletes_tags: bool,
        delete_fails: bool,
        /// The manifest goes along with its tag: once a staging tag is
        /// deleted, its image is no longer served.
        loses_manifests: bool,
        /// The platform whose staging tag another build overwrote since
        /// this build pushed: it points at `sha256:other-build`.
        overwritten: Option<&'static str>,
        /// The image of this platform (`linux-amd64`) is no longer served.
        gone: Option<&'static str>,
        /// A Ctrl-C comes while the list is published: the publish
        /// records whether the stop it asks for was accepted.
        interrupted_while_publishing: bool,
        /// A Ctrl-C comes while the first release tag is read back: the
        /// read records whether the stop it asks for was accepted.
        interrupted_while_reading_back: bool,
        /// A release tag another writer pushes to right after the
        /// publish: it points at `sha256:other-writer`.
        raced: Option<&'static str>,
        /// A release tag read stale once: its first read after the
        /// publish finds `sha256:before`, the next ones the list.
        stale: Option<&'static str>,
        /// The list is served without the entry of this platform: bytes
        /// that do not hash to the list's digest.
        listed_without: Option<&'static str>,
        /// The platform whose image the registry no longer serves by its
        /// digest once the list is published (404).
        unserved: Option<&'static str>,
        /// The platform whose image cannot be read once the list is
        /// published (a 500, after the retries).
        unreadable: Option<&'static str>,
        /// The images are OCI manifests ([`child_as`]).
        oci: bool,
    }

    /// Records every call, naming the tags and digests involved.
    struct FakeRegistry {
        answers: Answers,
        /// To record whether a publish ran with the publishing state set.
        control: BuildControl,
        calls: Mutex<Vec<String>>,
        /// The digests deleted along with their tags (`loses_manifests`);
        /// a [`FakeWorker`] given it serves them again when it pushes.
        lost: Arc<Mutex<Vec<String>>>,
        /// The list as pushed and as served, once it is published.
        list: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
        /// The release tags read since the publish.
        read: Mutex<Vec<String>>,
    }

    impl FakeRegistry {
        fn new(answers: Answers, control: &BuildControl) -> FakeRegistry {
            FakeRegistry {
                answers,
                control: control.clone(),
                calls: Mutex::new(Vec::new()),
                lost: Arc::default(),
                list: Mutex::new(None),
                read: Mutex::new(Vec::new()),
            }
        }

        fn record(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }

        fn refused(&self, action: &str) -> RegistryError {
            RegistryError::Request {
                registry: REGISTRY.to_owned(),
                action: format!("{action} in {}", self.name()),
                message: "the registry answered 500 Internal Server Error".to_owned(),
            }
        }
    }

    impl Registry for FakeRegistry {
        fn name(&self) -> String {
            IMAGE.to_owned()
        }

        async fn check_push(&self) -> Result<(), RegistryError> {
            self.record("check push".to_owned());
            let message = "refused".to_owned();
            match self.answers.push_rights {
                PushRights::Allowed => Ok(()),
                PushRights::Denied => Err(RegistryError::PushDenied {
                    anonymous: true,
                    registry: REGISTRY.to_owned(),
                    repository: self.name(),
                    whom: "anonymous users".to_owned(),
                    message,
                }),
                PushRights::Unreachable => Err(RegistryError::Unreachable {
                    registry: REGISTRY.to_owned(),
                    message,
                }),
                PushRights::OtherAnswer => Err(self.refused("starting a push")),
                PushRights::Hangs => {
                    tokio::time::sleep(std::time::Duration::from_secs(36_000)).await;
                    Ok(())
                }
            }
        }

        /// The image [`child`] names by `digest`, unless it is `gone` or
        /// was lost with its tag.
        async fn describe(&self, digest: &str) -> Result<Child, RegistryError> {
            self.record(format!("describe {digest}"));
            let platform = digest.strip_prefix("sha256:").unwrap_or(digest);
            let lost = self.lost.lock().unwrap().iter().any(|lost| lost == digest);
            match lost || self.answers.gone == Some(platform) {
                true => Err(RegistryError::NotFound {
                    registry: REGISTRY.to_owned(),
                    action: format!("reading manifest {digest} in {}", self.name()),
                    message: "the registry answered 404 Not Found".to_owned(),
                }),
                false => Ok(child_as(&platform.replace('-', "/"), self.answers.oci)),
            }
        }

        async fn publish(
            &self,
            media_type: &str,
            bytes: &[u8],
            tags: &[String],
        ) -> Result<String, RegistryError> {
            let list: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(list["mediaType"], media_type);
            let children: Vec<&str> = list["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|child| child["digest"].as_str().unwrap())
                .collect();
            let state = match self.control.publishing() {
                true => "while publishing",
                false => "NOT marked as publishing",
            };
            if self.answers.interrupted_while_publishing {
                let accepted = self.control.request_stop(FailureKind::Interrupted);
                self.record(format!("Ctrl-C: stop accepted {accepted}"));
            }
            self.record(format!(
                "publish {} as {} {state}",
                children.join(", "),
                tags.join(", ")
            ));
            if self.answers.publish_fails {
                return Err(self.refused("pushing the manifest list as latest"));
            }
            let mut served = bytes.to_vec();
            if let Some(platform) = self.answers.listed_without {
                let digest = child(platform).digest;
                let mut without = list.clone();
                without["manifests"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|entry| entry["digest"] != digest.as_str());
                served = serde_json::to_vec(&without).unwrap();
            }
            *self.list.lock().unwrap() = Some((bytes.to_vec(), served));
            Ok("sha256:list".to_owned())
        }

        /// `sha256:list` is the list as published, checked as
        /// [`Repository::manifest`] does: bytes served that do not hash
        /// as the ones pushed are a `DigestMismatch`.
        async fn manifest(&self, tag_or_digest: &str) -> Result<(Vec<u8>, String), RegistryError> {
            self.record(format!("read {tag_or_digest}"));
            let list = self.list.lock().unwrap().clone();
            match (tag_or_digest, list) {
                ("sha256:list", Some((pushed, served))) => {
                    if sha256_digest(&served) != sha256_digest(&pushed) {
                        return Err(RegistryError::DigestMismatch {
                            registry: REGISTRY.to_owned(),
                            action: format!("reading sha256:list in {}", self.name()),
                            served: sha256_digest(&served),
                        });
                    }
                    Ok((served, tag_or_digest.to_owned()))
                }
                _ => Ok((Vec::new(), tag_or_digest.to_owned())),
            }
        }

        /// A staging tag points at its platform's image (or another
        /// build's, `overwritten`); a release tag at the published list
        /// (or another writer's, `raced`; or a stale one on its first
        /// read, `stale`); a digest at itself, unless it is `unserved` or
        /// lost with its tag (`None`, a 404).
        async fn tag_digest(&self, reference: &str) -> Result<Option<String>, RegistryError> {
            if reference.starts_with("sha256:") {
                self.record(format!("read {reference}"));
                let lost = self
                    .lost
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|lost| lost == reference);
                let unserved = self
                    .answers
                    .unserved
                    .is_some_and(|platform| child(platform).digest == reference);
                if self
                    .answers
                    .unreadable
                    .is_some_and(|platform| child(platform).digest == reference)
                {
                    return Err(self.refused(&format!("reading {reference}")));
                }
                return Ok((!lost && !unserved).then(|| reference.to_owned()));
            }
            let tag = reference;
            self.record(format!("read tag {tag}"));
            let Some(slug) = tag.strip_prefix("mab-staging-") else {
                let mut read = self.read.lock().unwrap();
                if self.answers.interrupted_while_reading_back && read.is_empty() {
                    let accepted = self.control.request_stop(FailureKind::Interrupted);
                    self.record(format!("Ctrl-C: stop accepted {accepted}"));
                }
                let first = !read.iter().any(|earlier| earlier == tag);
                read.push(tag.to_owned());
                return Ok(Some(match (self.answers.raced, self.answers.stale) {
                    (Some(raced), _) if raced == tag => "sha256:other-writer".to_owned(),
                    (_, Some(stale)) if stale == tag && first => "sha256:before".to_owned(),
                    _ => "sha256:list".to_owned(),
                }));
            };
            match self.answers.overwritten {
                Some(platform) if platform.replace('/', "-") == slug => {
                    Ok(Some("sha256:other-build".to_owned()))
                }
                _ => Ok(Some(format!("sha256:{slug}"))),
            }
        }

        async fn delete_tag(&self, tag: &str) -> Result<bool, RegistryError> {
            self.record(format!("delete {tag}"));
            if self.answers.delete_fails {
                return Err(self.refused(&format!("deleting tag {tag}")));
            }
            if self.answers.deletes_tags && self.answers.loses_manifests {
                let slug = tag.strip_prefix("mab-staging-").expect("a staging tag");
                self.lost.lock().unwrap().push(format!("sha256:{slug}"));
            }
            Ok(self.answers.deletes_tags)
        }

        /// The fake's images have no layers: the live worker alone reads
        /// them, which the integration tests drive.
        async fn layers(&self, digest: &str) -> Result<Vec<mab_registry::Layer>, RegistryError> {
            self.record(format!("layers of {digest}"));
            Ok(Vec::new())
        }

        async fn blob(&self, digest: &str) -> Result<mab_registry::Blob, RegistryError> {
            Err(self.refused(&format!("reading blob {digest}")))
        }
    }

    /// Keeps every event.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<Event>>);

    impl Reporter for Recorded {
        fn report(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    impl Recorded {
        /// What the plain renderer prints of the publish, its read back, the staging
        /// tags left, the moves and the warnings.
        fn said(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|event| {
                    matches!(
                        event,
                        Event::Published { .. }
                            | Event::ReadBack { .. }
                            | Event::Reused { .. }
                            | Event::StagingTagsLeft { .. }
                            | Event::Moved { .. }
                            | Event::Warning { .. }
                    )
                })
                .filter_map(crate::progress::Lines::line)
                .collect()
        }
    }

    fn runner_of(platform: &str) -> &'static str {
        match platform {
            "linux/amd64" => "local",
            "linux/arm64" => "pi",
            _ => "mainframe",
        }
    }

    /// One scenario of the orchestration, from the jobs' outcomes to what
    /// the registry was asked, the result and the metadata file.
    struct Case {
        name: &'static str,
        /// Each platform (planned on [`runner_of`] it) and how its job ends there.
        outcomes: Vec<(&'static str, Outcome)>,
        /// How a platform's job ends on another runner (built when not listed).
        elsewhere: Vec<(&'static str, &'static str, Outcome)>,
        /// A platform's fallbacks: (runner, emulated), in order.
        fallbacks: Vec<(&'static str, Vec<(&'static str, bool)>)>,
        /// A platform the plan moved: (platform, from runner, reason).
        planned_move: Option<(&'static str, &'static str, &'static str)>,
        fallback: Fallback,
        /// `--allow-partial`.
        allow_partial: bool,
        /// `timeout` and `--deadline`, in minutes.
        timeout: Option<u64>,
        deadline: Option<u64>,
        /// `false`: `--no-push`, no registry at all.
        push: bool,
        answers: Answers,
        /// The registry calls, in order.
        calls: Vec<&'static str>,
        /// stdout, or the failure's kind and phrases its report holds once each.
        result: Result<&'static str, (FailureKind, Vec<&'static str>)>,
        /// The metadata file's JSON.
        metadata: serde_json::Value,
        /// Phrases of notes and warnings.
        said: Vec<&'static str>,
        /// Each run, `platform on runner`, sorted; `None`: one per platform
        /// on its planned runner.
        runs: Option<Vec<&'static str>>,
    }

    /// A case with no moves, no limits and an answering registry.
    fn base() -> Case {
        Case {
            name: "",
            outcomes: Vec::new(),
            elsewhere: Vec::new(),
            fallbacks: Vec::new(),
            planned_move: None,
            fallback: Fallback::Allowed,
            allow_partial: false,
            timeout: None,
            deadline: None,
            push: true,
            answers: Answers::default(),
            calls: Vec::new(),
            result: Ok(""),
            metadata: serde_json::Value::Null,
            said: Vec::new(),
            runs: None,
        }
    }

    /// A platform's entry in the metadata file in `state`, on its planned
    /// runner, not moved, without error.
    fn entry(platform: &str, state: &str) -> serde_json::Value {
        let done = matches!(state, "published" | "pushed" | "built");
        json!({
            "platform": platform,
            "runner": runner_of(platform),
            "digest": matches!(state, "published" | "pushed").then(|| child(platform).digest),
            "emulated": false,
            "seconds": done.then_some(2.5),
            "state": state,
            "error": null,
            "moved_from": null,
            "reason": null,
            "reused": false,
        })
    }

    /// `value` with the fields of `changes` replaced.
    fn with(mut value: serde_json::Value, changes: serde_json::Value) -> serde_json::Value {
        for (key, changed) in changes.as_object().unwrap() {
            value[key] = changed.clone();
        }
        value
    }

    fn error(kind: &str, message: &str) -> serde_json::Value {
        json!({ "kind": kind, "message": message })
    }

    /// The entry of a platform that ended in `state` on its planned runner
    /// with an error of `kind`.
    fn failed(platform: &str, state: &str, kind: &str, message: &str) -> serde_json::Value {
        with(
            entry(platform, state),
            json!({ "error": error(kind, message) }),
        )
    }

    /// The metadata file: the list when `published`, the platforms missing
    /// from the result, and each platform's entry.
    fn document(
        published: bool,
        missing: &[&str],
        platforms: Vec<serde_json::Value>,
    ) -> serde_json::Value {
        let mut document = json!({
            "image": IMAGE,
            "digest": published.then_some("sha256:list"),
            "media_type": published.then_some(mab_registry::DOCKER_MANIFEST_LIST),
            "tags": ["1.0", "latest"],
            "missing": missing,
            "platforms": platforms,
            "project": PROJECT,
            "inputs": serde_json::to_value(inputs()).unwrap(),
        });
        if published {
            // buildx's keys. The lists of these tests' images are 121
            // bytes and 228 more for each image in them.
            let children = document["platforms"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|entry| entry["state"] == "published")
                .count();
            document = with(
                document,
                json!({
                    "containerimage.digest": "sha256:list",
                    "containerimage.descriptor": {
                        "mediaType": mab_registry::DOCKER_MANIFEST_LIST,
                        "digest": "sha256:list",
                        "size": 121 + 228 * children,
                    },
                    "image.name": format!("{IMAGE}:1.0,{IMAGE}:latest"),
                }),
            );
        }
        document
    }

    const PROJECT: &str = "/project/mab.toml";

    /// The inputs of the builds of these tests.
    fn inputs() -> Inputs {
        Inputs {
            context: "sha256:context".to_owned(),
            context_entries: [
                ("Dockerfile".to_owned(), "sha256:empty".to_owned()),
                ("src/".to_owned(), "sha256:src".to_owned()),
            ]
            .into(),
            dockerfile: metadata::DockerfileInput {
                path: "Dockerfile".into(),
                digest: "sha256:dockerfile".to_owned(),
            },
            build_args: [("VERSION".to_owned(), "1".to_owned())].into(),
            target: None,
            platforms: vec![
                "linux/amd64".parse().unwrap(),
                "linux/arm64".parse().unwrap(),
            ],
            verify: Some(metadata::VerifyInput {
                binaries: "error".to_owned(),
                ignore: Vec::new(),
            }),
            labels: std::collections::BTreeMap::new(),
        }
    }

    fn published_metadata(platforms: &[&str]) -> serde_json::Value {
        document(
            true,
            &[],
            platforms
                .iter()
                .map(|platform| entry(platform, "published"))
                .collect(),
        )
    }

    /// The metadata of amd64 and arm64 published as `sha256:list` under
    /// 1.0 and latest, but not read back as published: `problem` says why.
    fn read_back_failed(problem: &str) -> serde_json::Value {
        with(
            published_metadata(&["linux/amd64", "linux/arm64"]),
            json!({
                "read_back_error": format!(
                    "the list sha256:list of 127.0.0.1:5000/app was published under 1.0, latest (the tags have moved); {problem}"
                ),
            }),
        )
    }

    /// `metadata.json` in a new directory (kept while the first value
    /// lives), there and empty.
    fn empty_metadata_file() -> (tempfile::TempDir, std::path::PathBuf, MetadataFile) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("metadata.json");
        std::fs::write(&path, "").unwrap();
        let metadata = MetadataFile {
            path: Some(path.clone()),
            state: Some(directory.path().join("state/builds/0123456789abcdef.json")),
            project: PROJECT.into(),
            inputs: inputs(),
            order: ["linux/amd64", "linux/arm64", "linux/s390x"]
                .iter()
                .map(|platform| platform.parse().unwrap())
                .collect(),
            github: None,
            cache_imported: Default::default(),
        };
        (directory, path, metadata)
    }

    /// A build of [`IMAGE`] that fails before any job ran.
    fn before_jobs<'a>(
        file: &'a MetadataFile,
        platforms: &'a [mab_config::Platform],
        tags: &'a [String],
        reporter: &'a Recorded,
    ) -> BeforeJobs<'a> {
        BeforeJobs {
            file,
            image: IMAGE,
            platforms,
            reused: &[],
            tags,
            reporter,
        }
    }

    const UNREACHABLE_PI: &str = "cannot reach the Docker engine of pi: connection refused";
    const BUILD_HINT: &str = "hint: fix the Dockerfile step the error names (the end of its log is shown with it) and run `mab build` again";

    fn cases() -> Vec<Case> {
        use Outcome::*;
        let both_built = vec![("linux/amd64", Built), ("linux/arm64", Built)];
        let arm_down = vec![("linux/amd64", Built), ("linux/arm64", Unreachable)];
        let arm_fallbacks = || vec![("linux/arm64", vec![("pi-2", false), ("laptop", true)])];
        let deleting = Answers {
            deletes_tags: true,
            ..Answers::default()
        };
        let deleted_then_read = published_both_after(&[]);
        // On a registry that does not delete tags.
        let not_deleting = read_back_around(&[
            "read tag mab-staging-linux-amd64",
            "delete mab-staging-linux-amd64",
        ]);
        let stdout = "127.0.0.1:5000/app@sha256:list\n";
        // amd64 pushed, arm64 failed its check after its push.
        let arm_failed_after_push = || {
            document(
                false,
                &["linux/amd64", "linux/arm64"],
                vec![
                    entry("linux/amd64", "pushed"),
                    with(
                        failed(
                            "linux/arm64",
                            "failed",
                            "runner",
                            "the image is for linux/amd64",
                        ),
                        json!({ "digest": "sha256:linux-arm64" }),
                    ),
                ],
            )
        };
        let both_published = || published_metadata(&["linux/amd64", "linux/arm64"]);
        // Every platform pushed and verified, nothing published.
        let both_pushed = || {
            document(
                false,
                &["linux/amd64", "linux/arm64"],
                vec![
                    entry("linux/amd64", "pushed"),
                    entry("linux/arm64", "pushed"),
                ],
            )
        };
        let lost_pi = "the connection to the Docker engine of pi broke during the build: connection reset; then the Docker engine of pi did not answer GET /_ping: connection refused";
        let moved_to = |to: &str, emulated: bool, reason: &str| {
            with(
                entry("linux/arm64", "published"),
                json!({ "runner": to, "emulated": emulated, "moved_from": "pi", "reason": reason }),
            )
        };
        vec![
            Case {
                name: "every platform built: the list goes up under the tags, the staging tags go",
                outcomes: both_built.clone(),
                answers: deleting,
                calls: deleted_then_read.clone(),
                result: Ok(stdout),
                metadata: both_published(),
                said: vec![
                    "published 127.0.0.1:5000/app@sha256:list as 1.0, latest",
                    "read back 127.0.0.1:5000/app@sha256:list: 1.0, latest point at it, linux/amd64, linux/arm64 served",
                ],
                ..base()
            },
            Case {
                name: "a staging tag another build overwrote since our push is left alone, without a word; ours is deleted by its digest",
                outcomes: both_built.clone(),
                answers: Answers {
                    overwritten: Some("linux/arm64"),
                    ..deleting
                },
                calls: read_back_around(&[
                    "read tag mab-staging-linux-amd64",
                    "delete mab-staging-linux-amd64",
                    "read tag mab-staging-linux-arm64",
                ]),
                result: Ok(stdout),
                metadata: both_published(),
                said: vec!["published 127.0.0.1:5000/app@sha256:list as 1.0, latest"],
                ..base()
            },
            Case {
                name: "a failed build keeps the verified platform's staging tag, and leaves the failed one's alone when another build overwrote it",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", FailsAfterPush)],
                answers: Answers {
                    overwritten: Some("linux/arm64"),
                    ..deleting
                },
                calls: vec!["read tag mab-staging-linux-arm64"],
                result: Err((
                    FailureKind::Runtime,
                    vec!["build failed for linux/arm64 (runner pi); nothing was published"],
                )),
                metadata: arm_failed_after_push(),
                said: vec!["staging tag mab-staging-linux-amd64 remains in 127.0.0.1:5000/app: kept for `mab build --resume`"],
                ..base()
            },
            Case {
                name: "a registry that does not delete tags, one staging tag overwritten: the first refusal ends the reading, the platform's one tag is said to remain",
                outcomes: both_built.clone(),
                answers: Answers {
                    overwritten: Some("linux/amd64"),
                    ..Answers::default()
                },
                calls: read_back_around(&[
                    "read tag mab-staging-linux-amd64",
                    "read tag mab-staging-linux-arm64",
                    "delete mab-staging-linux-arm64",
                ]),
                result: Ok(stdout),
                metadata: both_published(),
                said: vec!["staging tag mab-staging-linux-arm64 remains in 127.0.0.1:5000/app: the registry did not delete it"],
                ..base()
            },
            Case {
                name: "a registry that does not delete tags: the staging tags are said to remain",
                outcomes: both_built.clone(),
                calls: not_deleting.clone(),
                result: Ok(stdout),
                metadata: both_published(),
                said: vec!["staging tags mab-staging-linux-amd64, mab-staging-linux-arm64 remain in 127.0.0.1:5000/app: the registry did not delete them"],
                ..base()
            },
            Case {
                name: "a tag deletion that fails is a warning and the tag remains; the build still succeeds",
                outcomes: both_built.clone(),
                answers: Answers {
                    delete_fails: true,
                    ..Answers::default()
                },
                calls: deleted_then_read.clone(),
                result: Ok(stdout),
                metadata: both_published(),
                said: vec![
                    "warning: deleting tag mab-staging-linux-amd64 in 127.0.0.1:5000/app failed at 127.0.0.1:5000",
                    "warning: deleting tag mab-staging-linux-arm64 in 127.0.0.1:5000/app failed at 127.0.0.1:5000",
                    "staging tags mab-staging-linux-amd64, mab-staging-linux-arm64 remain",
                ],
                ..base()
            },
            Case {
                name: "a registry that deletes the manifest with its tag: the images are read back after the staging tags are removed, and the loss is a read-back failure; the list's digest is kept",
                outcomes: both_built.clone(),
                answers: Answers {
                    loses_manifests: true,
                    ..deleting
                },
                calls: deleted_then_read[..9].to_vec(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "the list sha256:list of 127.0.0.1:5000/app was published under 1.0, latest (the tags have moved); \
                         the registry no longer serves sha256:linux-amd64, the linux/amd64 image of the list (it answers 404 Not Found)",
                        "hint: the registry does not serve what it accepted",
                        "some registries delete a manifest along with its tag",
                    ],
                )),
                metadata: read_back_failed(
                    "the registry no longer serves sha256:linux-amd64, the linux/amd64 image of the list (it answers 404 Not Found)",
                ),
                ..base()
            },
            Case {
                name: "a platform fails before its push: nothing is published, the others keep their staging tags for a resume",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", FailsBeforePush)],
                answers: deleting,
                calls: Vec::new(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi); nothing was published",
                        "linux/arm64 on pi: RUN false: exit code 1",
                        "    #5 RUN false (linux/arm64)",
                        BUILD_HINT,
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        failed("linux/arm64", "failed", "build", "RUN false: exit code 1"),
                    ],
                ),
                ..base()
            },
            Case {
                name: "a platform fails after its push: its staging tag goes, the verified platform keeps its own",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", FailsAfterPush)],
                answers: deleting,
                calls: vec!["read tag mab-staging-linux-arm64", "delete mab-staging-linux-arm64"],
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi); nothing was published",
                        "hint: runner `pi` did not produce a linux/arm64 image",
                    ],
                )),
                metadata: arm_failed_after_push(),
                ..base()
            },
            Case {
                name: "one platform fails before and one after its push, on a registry that does not delete tags: the failed one's staging tag is said to remain, both platforms are named, the hints grouped by cause",
                outcomes: vec![
                    ("linux/amd64", Built),
                    ("linux/arm64", FailsAfterPush),
                    ("linux/s390x", FailsBeforePush),
                ],
                calls: vec!["read tag mab-staging-linux-arm64", "delete mab-staging-linux-arm64"],
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi), linux/s390x (runner mainframe); nothing was published",
                        "(the end of its log is shown with it) and run `mab build` again\nhint: runner `pi` did not produce a linux/arm64 image",
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64", "linux/s390x"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        with(
                            failed("linux/arm64", "failed", "runner", "the image is for linux/amd64"),
                            json!({ "digest": "sha256:linux-arm64" }),
                        ),
                        failed("linux/s390x", "failed", "build", "RUN false: exit code 1"),
                    ],
                ),
                said: vec!["staging tag mab-staging-linux-arm64 remains"],
                ..base()
            },
            Case {
                name: "every platform fails before pushing: the registry is not touched, the hint is given once",
                outcomes: vec![("linux/amd64", FailsBeforePush), ("linux/arm64", FailsBeforePush)],
                answers: deleting,
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/amd64 (runner local), linux/arm64 (runner pi); nothing was published",
                        "    #5 RUN false (linux/amd64)",
                        "    #5 RUN false (linux/arm64)",
                        BUILD_HINT,
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    ["linux/amd64", "linux/arm64"]
                        .map(|platform| failed(platform, "failed", "build", "RUN false: exit code 1"))
                        .to_vec(),
                ),
                ..base()
            },
            Case {
                name: "read back: a tag another writer moved right after the publish is a runtime failure naming it, where it points and the list published; every tag is read, the staging tags stay",
                outcomes: both_built.clone(),
                answers: Answers {
                    raced: Some("1.0"),
                    ..deleting
                },
                calls: [
                    &deleted_then_read[..3],
                    &["read tag 1.0"; 3][..],
                ]
                .concat(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "the list sha256:list of 127.0.0.1:5000/app was published under 1.0, latest (the tags have moved); \
                         tag 1.0 points at sha256:other-writer when read back: another writer moved it after the publish; latest still points at the list",
                        "hint: another build (or a push by hand) wrote to 1.0 after this one: see what 1.0 holds now with `mab inspect 127.0.0.1:5000/app:1.0`",
                        "then run `mab build --resume` to point them all at one list",
                    ],
                )),
                metadata: read_back_failed(
                    "tag 1.0 points at sha256:other-writer when read back: another writer moved it after the publish; latest still points at the list",
                ),
                said: vec![
                    "published 127.0.0.1:5000/app@sha256:list as 1.0, latest",
                    "staging tags mab-staging-linux-amd64, mab-staging-linux-arm64 remain in 127.0.0.1:5000/app: kept for `mab build --resume`",
                ],
                ..base()
            },
            Case {
                name: "read back: a tag read stale once is read again after a short wait, and the build succeeds",
                outcomes: both_built.clone(),
                answers: Answers {
                    stale: Some("latest"),
                    ..deleting
                },
                calls: [
                    &deleted_then_read[..3],
                    &["read tag latest"][..],
                    &deleted_then_read[3..],
                ]
                .concat(),
                result: Ok(stdout),
                metadata: both_published(),
                said: vec!["read back 127.0.0.1:5000/app@sha256:list: 1.0, latest point at it, linux/amd64, linux/arm64 served"],
                ..base()
            },
            Case {
                name: "read back: a list served as other bytes than pushed (without one of its platforms) is a runtime failure saying the registry served different content",
                outcomes: both_built.clone(),
                answers: Answers {
                    listed_without: Some("linux/arm64"),
                    ..deleting
                },
                calls: deleted_then_read[..4].to_vec(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "the list sha256:list of 127.0.0.1:5000/app was published under 1.0, latest (the tags have moved); \
                         the registry served different content for the list: what it served has digest sha256:",
                        "hint: the registry (or a cache or proxy in front of it) does not serve what it accepted: see what it serves with `mab inspect 127.0.0.1:5000/app:1.0`",
                    ],
                )),
                metadata: read_back_failed(&format!(
                    "the registry served different content for the list: what it served has digest {}",
                    sha256_digest(
                        &serde_json::to_vec(&json!({
                            "schemaVersion": 2,
                            "mediaType": mab_registry::DOCKER_MANIFEST_LIST,
                            "manifests": [{
                                "mediaType": DOCKER_MANIFEST,
                                "digest": "sha256:linux-amd64",
                                "size": 500,
                                "platform": {"architecture": "amd64", "os": "linux"},
                            }],
                        }))
                        .unwrap()
                    )
                )),
                said: vec!["staging tags mab-staging-linux-amd64, mab-staging-linux-arm64 remain in 127.0.0.1:5000/app: kept for `mab build --resume`"],
                ..base()
            },
            Case {
                name: "read back: a platform's image no longer served by its digest (404) is a runtime failure naming the platform and the digest; the list's digest is kept",
                outcomes: both_built.clone(),
                answers: Answers {
                    unserved: Some("linux/arm64"),
                    ..deleting
                },
                calls: deleted_then_read.clone(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "the registry no longer serves sha256:linux-arm64, the linux/arm64 image of the list (it answers 404 Not Found)",
                        "hint: the registry does not serve what it accepted",
                    ],
                )),
                metadata: read_back_failed(
                    "the registry no longer serves sha256:linux-arm64, the linux/arm64 image of the list (it answers 404 Not Found)",
                ),
                ..base()
            },
            Case {
                name: "read back: a platform's image that cannot be read (not a 404) is an unreadable list, naming the platform and the registry's answer; the list's digest is kept",
                outcomes: both_built.clone(),
                answers: Answers {
                    unreadable: Some("linux/amd64"),
                    ..deleting
                },
                calls: deleted_then_read[..9].to_vec(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "(the tags have moved); reading it back failed: the linux/amd64 image: \
                         reading sha256:linux-amd64 in 127.0.0.1:5000/app failed at 127.0.0.1:5000: the registry answered 500 Internal Server Error",
                        "hint: check that the registry is reachable, then see what the tags hold with `mab inspect 127.0.0.1:5000/app:1.0`",
                    ],
                )),
                metadata: read_back_failed(
                    "reading it back failed: the linux/amd64 image: reading sha256:linux-amd64 in 127.0.0.1:5000/app failed at 127.0.0.1:5000: the registry answered 500 Internal Server Error",
                ),
                ..base()
            },
            Case {
                name: "the publish fails: a runtime failure naming the registry; the staging tags stay; every platform is pushed, none published",
                outcomes: both_built.clone(),
                answers: Answers {
                    publish_fails: true,
                    ..deleting
                },
                calls: deleted_then_read[..1].to_vec(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "pushing the manifest list as latest in 127.0.0.1:5000/app failed at 127.0.0.1:5000",
                        "hint: check that the registry accepts pushes of manifest lists",
                    ],
                )),
                metadata: both_pushed(),
                said: vec!["staging tags mab-staging-linux-amd64, mab-staging-linux-arm64 remain in 127.0.0.1:5000/app: kept for `mab build --resume`"],
                ..base()
            },
            Case {
                name: "--no-push: no registry, nothing on stdout, every platform built, none missing",
                outcomes: both_built.clone(),
                push: false,
                result: Ok(""),
                metadata: document(
                    false,
                    &[],
                    vec![entry("linux/amd64", "built"), entry("linux/arm64", "built")],
                ),
                ..base()
            },
            Case {
                name: "--no-push and a failed platform: a runtime failure, the failed one missing",
                outcomes: vec![("linux/amd64", FailsBeforePush), ("linux/arm64", Built)],
                push: false,
                result: Err((
                    FailureKind::Runtime,
                    vec!["build failed for linux/amd64 (runner local); nothing was published"],
                )),
                metadata: document(
                    false,
                    &["linux/amd64"],
                    vec![
                        failed("linux/amd64", "failed", "build", "RUN false: exit code 1"),
                        entry("linux/arm64", "built"),
                    ],
                ),
                ..base()
            },
            Case {
                name: "the list holds the children in the order of the jobs",
                outcomes: vec![
                    ("linux/s390x", Built),
                    ("linux/amd64", Built),
                    ("linux/arm64", Built),
                ],
                calls: vec![
                    "publish sha256:linux-s390x, sha256:linux-amd64, sha256:linux-arm64 as 1.0, latest while publishing",
                    "read tag 1.0", "read tag latest", "read sha256:list",
                    "read tag mab-staging-linux-s390x", "delete mab-staging-linux-s390x",
                    "read tag mab-staging-linux-amd64", "delete mab-staging-linux-amd64",
                    "read tag mab-staging-linux-arm64", "delete mab-staging-linux-arm64",
                    "read sha256:linux-s390x",
                    "read sha256:linux-amd64",
                    "read sha256:linux-arm64",
                ],
                answers: deleting,
                result: Ok("127.0.0.1:5000/app@sha256:list\n"),
                metadata: published_metadata(&["linux/s390x", "linux/amd64", "linux/arm64"]),
                ..base()
            },
            Case {
                name: "unreachable before its build: the platform moves to its first native fallback and is published from there",
                outcomes: arm_down.clone(),
                fallbacks: arm_fallbacks(),
                calls: not_deleting.clone(),
                result: Ok(stdout),
                metadata: document(
                    true,
                    &[],
                    vec![entry("linux/amd64", "published"), moved_to("pi-2", false, UNREACHABLE_PI)],
                ),
                said: vec!["warning: linux/arm64 moved from runner `pi` to runner `pi-2` (native): cannot reach the Docker engine of pi: connection refused"],
                runs: Some(vec!["linux/amd64 on local", "linux/arm64 on pi", "linux/arm64 on pi-2"]),
                ..base()
            },
            Case {
                name: "the build stream broke and the engine fails a ping: the platform moves",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", EngineLost)],
                fallbacks: arm_fallbacks(),
                calls: not_deleting.clone(),
                result: Ok(stdout),
                metadata: document(
                    true,
                    &[],
                    vec![entry("linux/amd64", "published"), moved_to("pi-2", false, lost_pi)],
                ),
                said: vec!["warning: linux/arm64 moved from runner `pi` to runner `pi-2` (native): the connection to the Docker engine of pi broke during the build"],
                runs: Some(vec!["linux/amd64 on local", "linux/arm64 on pi", "linux/arm64 on pi-2"]),
                ..base()
            },
            Case {
                name: "the build stream broke but the engine still answers: not moved, a runner failure",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", StreamBroken)],
                fallbacks: arm_fallbacks(),
                calls: Vec::new(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi); nothing was published",
                        "hint: check runner `pi` (its host and engine) and run `mab build` again",
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        failed("linux/arm64", "failed", "runner", "the connection to the Docker engine of pi broke during the build: connection reset"),
                    ],
                ),
                ..base()
            },
            Case {
                name: "native fallbacks first, then emulated ones: both native runners down, the emulating one builds it",
                outcomes: arm_down.clone(),
                elsewhere: vec![("linux/arm64", "pi-2", Unreachable)],
                fallbacks: arm_fallbacks(),
                calls: not_deleting.clone(),
                result: Ok(stdout),
                metadata: document(
                    true,
                    &[],
                    vec![entry("linux/amd64", "published"), moved_to("laptop", true, UNREACHABLE_PI)],
                ),
                said: vec![
                    "warning: linux/arm64 moved from runner `pi` to runner `pi-2` (native): cannot reach the Docker engine of pi: connection refused",
                    "warning: linux/arm64 moved from runner `pi-2` to runner `laptop` (emulated): cannot reach the Docker engine of pi-2: connection refused",
                ],
                runs: Some(vec![
                    "linux/amd64 on local",
                    "linux/arm64 on laptop",
                    "linux/arm64 on pi",
                    "linux/arm64 on pi-2",
                ]),
                ..base()
            },
            Case {
                name: "every fallback fails too: the last failure, naming every runner tried",
                outcomes: arm_down.clone(),
                elsewhere: vec![
                    ("linux/arm64", "pi-2", Unreachable),
                    ("linux/arm64", "laptop", EngineLost),
                ],
                fallbacks: arm_fallbacks(),
                calls: Vec::new(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runners pi, pi-2, laptop); nothing was published",
                        "linux/arm64 on pi: cannot reach the Docker engine of pi: connection refused",
                        "linux/arm64 on pi-2: cannot reach the Docker engine of pi-2: connection refused",
                        "linux/arm64 on laptop: the connection to the Docker engine of laptop broke",
                        "hint: check runner `laptop` (its host and engine)",
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        with(
                            entry("linux/arm64", "failed"),
                            json!({
                                "runner": "laptop",
                                "emulated": true,
                                "error": error("runner", "the connection to the Docker engine of laptop broke during the build: connection reset; then the Docker engine of laptop did not answer GET /_ping: connection refused"),
                                "moved_from": "pi",
                                "reason": UNREACHABLE_PI,
                            }),
                        ),
                    ],
                ),
                said: vec![
                    "warning: linux/arm64 moved from runner `pi` to runner `pi-2` (native): cannot reach the Docker engine of pi: connection refused",
                    "warning: linux/arm64 moved from runner `pi-2` to runner `laptop` (emulated): cannot reach the Docker engine of pi-2: connection refused",
                ],
                runs: Some(vec![
                    "linux/amd64 on local",
                    "linux/arm64 on laptop",
                    "linux/arm64 on pi",
                    "linux/arm64 on pi-2",
                ]),
                ..base()
            },
            Case {
                name: "no fallback configured: the runner's failure, with the runner's hint",
                outcomes: arm_down.clone(),
                calls: Vec::new(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi); nothing was published",
                        "linux/arm64 on pi: cannot reach the Docker engine of pi: connection refused",
                        "hint: check runner `pi` (its host and engine) and run `mab build` again",
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        failed("linux/arm64", "failed", "runner", UNREACHABLE_PI),
                    ],
                ),
                ..base()
            },
            Case {
                name: "--no-fallback: no move; the build fails naming the runner, the hint names --no-fallback",
                outcomes: arm_down.clone(),
                fallbacks: arm_fallbacks(),
                fallback: Fallback::Refused,
                calls: Vec::new(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "error: build failed for linux/arm64 (runner pi); nothing was published",
                        "linux/arm64 on pi: cannot reach the Docker engine of pi: connection refused",
                        "hint: check runner `pi` with `mab runners check`, or let another runner build it: take --no-fallback off the command line",
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        failed("linux/arm64", "failed", "runner", UNREACHABLE_PI),
                    ],
                ),
                ..base()
            },
            Case {
                name: "a Dockerfile step failed: never moved, though fallbacks exist",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", FailsBeforePush)],
                fallbacks: arm_fallbacks(),
                calls: Vec::new(),
                result: Err((
                    FailureKind::Runtime,
                    vec!["build failed for linux/arm64 (runner pi); nothing was published", BUILD_HINT],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        failed("linux/arm64", "failed", "build", "RUN false: exit code 1"),
                    ],
                ),
                ..base()
            },
            Case {
                name: "stopped by its own time limit: never moved, cancelled",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", Hangs)],
                fallbacks: arm_fallbacks(),
                timeout: Some(60),
                calls: Vec::new(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi); nothing was published",
                        "linux/arm64 on pi: stopped after running for 1h on runner `pi`",
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        failed("linux/arm64", "cancelled", "runner", "stopped after running for 1h on runner `pi`, its time limit (`timeout` under [image])"),
                    ],
                ),
                ..base()
            },
            Case {
                name: "the deadline: the running job is cancelled, the one waiting for the runner's slot never started",
                outcomes: vec![("linux/s390x", Hangs), ("linux/ppc64le", Built)],
                deadline: Some(60),
                result: Err((
                    FailureKind::Runtime,
                    vec!["build failed for linux/s390x (runner mainframe), linux/ppc64le (runner mainframe); nothing was published"],
                )),
                metadata: document(
                    false,
                    &["linux/s390x", "linux/ppc64le"],
                    vec![
                        failed("linux/s390x", "cancelled", "runner", "stopped on runner `mainframe`: the build's deadline (--deadline 1h) came"),
                        failed("linux/ppc64le", "not_started", "runner", "not started: the build's deadline (--deadline 1h) came while it waited for a slot on runner `mainframe`"),
                    ],
                ),
                runs: Some(vec!["linux/s390x on mainframe"]),
                ..base()
            },
            Case {
                name: "a platform the plan moved: published, the move in its metadata",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", Built)],
                planned_move: Some(("linux/arm64", "arm-0", "ssh: connect to 127.0.0.1 port 1: connection refused")),
                calls: not_deleting.clone(),
                result: Ok(stdout),
                metadata: document(
                    true,
                    &[],
                    vec![
                        entry("linux/amd64", "published"),
                        with(
                            entry("linux/arm64", "published"),
                            json!({ "moved_from": "arm-0", "reason": "ssh: connect to 127.0.0.1 port 1: connection refused" }),
                        ),
                    ],
                ),
                ..base()
            },
            Case {
                name: "an engine that cannot set up a RUN step's network: a runner failure, hint network = host, not moved",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", NetworkSetup)],
                fallbacks: arm_fallbacks(),
                calls: Vec::new(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi); nothing was published",
                        "hint: the engine of runner `pi` could not set up networking for a RUN step: set `network = \"host\"` on that runner",
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        failed("linux/arm64", "failed", "runner", "runner `pi` could not give a RUN step its network: failed to create network mab0: could not add veth pair"),
                    ],
                ),
                ..base()
            },
            Case {
                name: "a push the registry refuses and a failed step: a registry and a build failure, hints grouped by cause",
                outcomes: vec![("linux/amd64", PushRefused), ("linux/arm64", FailsBeforePush)],
                fallbacks: arm_fallbacks(),
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/amd64 (runner local), linux/arm64 (runner pi); nothing was published",
                        "(the end of its log is shown with it) and run `mab build` again\nhint: mab hands the engines the credentials for 127.0.0.1:5000",
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        failed("linux/amd64", "failed", "registry", "unauthorized: authentication required"),
                        failed("linux/arm64", "failed", "build", "RUN false: exit code 1"),
                    ],
                ),
                ..base()
            },
            Case {
                name: "--allow-partial, one platform fails after its push: its staging tag goes, the others' list goes up under the tags, exit 1 naming it, the metadata has the list and the missing platform",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", FailsAfterPush)],
                allow_partial: true,
                answers: deleting,
                calls: vec![
                    "read tag mab-staging-linux-arm64",
                    "delete mab-staging-linux-arm64",
                    "publish sha256:linux-amd64 as 1.0, latest while publishing",
                    "read tag 1.0",
                    "read tag latest",
                    "read sha256:list",
                    "read tag mab-staging-linux-amd64",
                    "delete mab-staging-linux-amd64",
                    "read sha256:linux-amd64",
                ],
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi); published a partial list without it as 1.0, latest (--allow-partial)",
                        "hint: runner `pi` did not produce a linux/arm64 image",
                    ],
                )),
                metadata: document(
                    true,
                    &["linux/arm64"],
                    vec![
                        entry("linux/amd64", "published"),
                        with(
                            failed("linux/arm64", "failed", "runner", "the image is for linux/amd64"),
                            json!({ "digest": "sha256:linux-arm64" }),
                        ),
                    ],
                ),
                said: vec![
                    "published a partial list 127.0.0.1:5000/app@sha256:list as 1.0, latest, without linux/arm64",
                    "warning: linux/arm64 is missing from the partial list published as 1.0, latest (--allow-partial): it failed on runner `pi`: the image is for linux/amd64",
                ],
                ..base()
            },
            Case {
                name: "--allow-partial and every platform failed: nothing is published, the pushed staging tags go",
                outcomes: vec![("linux/amd64", FailsAfterPush), ("linux/arm64", FailsBeforePush)],
                allow_partial: true,
                answers: deleting,
                calls: vec![
                    "read tag mab-staging-linux-amd64",
                    "delete mab-staging-linux-amd64",
                ],
                result: Err((
                    FailureKind::Runtime,
                    vec!["build failed for linux/amd64 (runner local), linux/arm64 (runner pi); nothing was published"],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        with(
                            failed("linux/amd64", "failed", "runner", "the image is for linux/amd64"),
                            json!({ "digest": "sha256:linux-amd64" }),
                        ),
                        failed("linux/arm64", "failed", "build", "RUN false: exit code 1"),
                    ],
                ),
                ..base()
            },
            Case {
                name: "--allow-partial and the partial list's publish fails: a runtime failure naming the registry, nothing published",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", FailsBeforePush)],
                allow_partial: true,
                answers: Answers {
                    publish_fails: true,
                    ..Answers::default()
                },
                calls: vec!["publish sha256:linux-amd64 as 1.0, latest while publishing"],
                result: Err((
                    FailureKind::Runtime,
                    vec!["pushing the manifest list as latest"],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        failed("linux/arm64", "failed", "build", "RUN false: exit code 1"),
                    ],
                ),
                said: vec!["staging tag mab-staging-linux-amd64 remains in 127.0.0.1:5000/app: kept for `mab build --resume`"],
                ..base()
            },
            Case {
                name: "a moved platform that fails after its push on its fallback: its staging tag goes",
                outcomes: arm_down.clone(),
                elsewhere: vec![("linux/arm64", "pi-2", FailsAfterPush)],
                fallbacks: arm_fallbacks(),
                calls: vec!["read tag mab-staging-linux-arm64", "delete mab-staging-linux-arm64"],
                answers: deleting,
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runners pi, pi-2); nothing was published",
                        "hint: runner `pi-2` did not produce a linux/arm64 image",
                    ],
                )),
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        with(
                            entry("linux/arm64", "failed"),
                            json!({
                                "runner": "pi-2",
                                "digest": "sha256:linux-arm64",
                                "error": error("runner", "the image is for linux/amd64"),
                                "moved_from": "pi",
                                "reason": UNREACHABLE_PI,
                            }),
                        ),
                    ],
                ),
                said: vec!["warning: linux/arm64 moved from runner `pi` to runner `pi-2` (native): cannot reach the Docker engine of pi: connection refused"],
                runs: Some(vec!["linux/amd64 on local", "linux/arm64 on pi", "linux/arm64 on pi-2"]),
                ..base()
            },
        ]
    }

    #[tokio::test(start_paused = true)]
    async fn the_orchestration_decides_what_is_published_removed_and_reported() {
        let cases = cases();
        assert!(cases.len() >= 25, "{} scenarios", cases.len());
        for case in cases {
            let name = case.name;
            let jobs: Vec<JobSpec> = case
                .outcomes
                .iter()
                .map(|(platform, _)| JobSpec {
                    fallbacks: case
                        .fallbacks
                        .iter()
                        .filter(|(name, _)| name == platform)
                        .flat_map(|(_, runners)| runners)
                        .map(|(runner, emulated)| mab_plan::Candidate {
                            runner: (*runner).to_owned(),
                            emulated: *emulated,
                        })
                        .collect(),
                    moved_from: case
                        .planned_move
                        .filter(|(moved, _, _)| moved == platform)
                        .map(|(_, runner, reason)| mab_plan::Move {
                            runner: runner.to_owned(),
                            reason: reason.to_owned(),
                        }),
                    ..JobSpec::on(platform.parse().unwrap(), runner_of(platform))
                })
                .collect();
            let slots: HashMap<String, u32> = jobs
                .iter()
                .flat_map(|job| {
                    std::iter::once(job.runner.clone())
                        .chain(job.fallbacks.iter().map(|to| to.runner.clone()))
                })
                .map(|runner| (runner, 1))
                .collect();
            let tags = ["1.0".to_owned(), "latest".to_owned()];
            let minutes = |minutes: u64| std::time::Duration::from_secs(60 * minutes);
            let planned = Planned {
                image: IMAGE,
                jobs: &jobs,
                slots: &slots,
                tags: &tags,
                limits: Limits {
                    timeout: case.timeout.map(minutes),
                    timeout_from_flag: false,
                    deadline: case.deadline.map(|deadline| {
                        (
                            tokio::time::Instant::now() + minutes(deadline),
                            minutes(deadline),
                        )
                    }),
                },
                fallback: case.fallback,
                allow_partial: case.allow_partial,
                unplanned: &[],
                reused: &[],
                annotations: &EMPTY_ANNOTATIONS,
                annotations_configured: false,
            };
            let worker = FakeWorker {
                outcomes: case.outcomes.clone(),
                elsewhere: case.elsewhere.clone(),
                pushes: case.push,
                runs: Mutex::new(Vec::new()),
                control: None,
                lost: Arc::default(),
                oci: false,
            };
            let control = BuildControl::default();
            let registry = FakeRegistry::new(case.answers, &control);
            let (_directory, path, metadata) = empty_metadata_file();
            let reporter = Recorded::default();

            let result = run_and_publish(
                &planned,
                &worker,
                case.push.then_some(&registry),
                &metadata,
                &control,
                &reporter,
            )
            .await;

            assert_eq!(*registry.calls.lock().unwrap(), case.calls, "{name}");
            assert!(!control.publishing(), "{name}: publishing ends");
            match (&result, &case.result) {
                (Ok(outcome), Ok(expected)) => assert_eq!(outcome.stdout(), *expected, "{name}"),
                (Err(failure), Err((kind, phrases))) => {
                    assert_eq!(failure.kind, *kind, "{name}");
                    // Only a partial list is published by a failed build.
                    let digest = case.metadata["digest"].as_str();
                    assert_eq!(failure.digest.as_deref(), digest, "{name}");
                    let stdout = digest.map(|digest| format!("{IMAGE}@{digest}\n"));
                    assert_eq!(failure.stdout, stdout.unwrap_or_default(), "{name}");
                    assert_eq!(failure.kind.exit_code(), 1, "{name}");
                    for phrase in phrases {
                        assert!(
                            failure.report.matches(phrase).count() == 1,
                            "{name}: {phrase:?} not once in\n{}",
                            failure.report
                        );
                    }
                }
                (result, _) => panic!("{name}: unexpected {result:?}"),
            }
            let written: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(written, case.metadata, "{name}");
            let said = reporter.said();
            for phrase in &case.said {
                assert!(
                    said.iter().any(|line| line.contains(phrase)),
                    "{name}: {phrase:?} not in {said:#?}"
                );
            }
            // A tag left to another build is no news: nothing is said of
            // staging tags beyond what the case expects.
            let overwritten = case.answers.overwritten.is_some();
            for line in said
                .iter()
                .filter(|line| overwritten && line.contains("staging"))
            {
                assert!(
                    case.said.iter().any(|phrase| line.contains(phrase)),
                    "{name}: unexpected {line:?}"
                );
            }
            let moves = said
                .iter()
                .filter(|line| line.contains(" moved from runner "))
                .count();
            let expected_moves = case
                .said
                .iter()
                .filter(|line| line.contains(" moved from runner "))
                .count();
            assert_eq!(moves, expected_moves, "{name}: {said:#?}");
            let mut runs = worker.runs.lock().unwrap().clone();
            runs.sort();
            let expected_runs: Vec<String> = match &case.runs {
                Some(runs) => runs.iter().map(|run| (*run).to_owned()).collect(),
                None => {
                    let mut runs: Vec<String> = case
                        .outcomes
                        .iter()
                        .map(|(platform, _)| format!("{platform} on {}", runner_of(platform)))
                        .collect();
                    runs.sort();
                    runs
                }
            };
            assert_eq!(runs, expected_runs, "{name}");
        }
    }

    /// Through the whole build: OCI images make an OCI index that carries
    /// the labels' `org.opencontainers.image.*` keys (`[labels]` over the
    /// computed ones) and `[annotations]` over them; Docker images make a
    /// Docker manifest list without annotations, and only then does
    /// `[annotations]` get the warning that it is not published.
    #[tokio::test]
    async fn an_oci_index_carries_the_annotations_and_a_docker_list_says_it_cannot() {
        let facts = labels::SourceFacts {
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            version: Some("1.2.3".to_owned()),
            remote_url: Some("https://token@git.example.com/team/app.git".to_owned()),
            commit_time: Some(1_714_564_800),
        };
        let configured_labels = std::collections::BTreeMap::from([
            (labels::VERSION.to_owned(), "1.2.3-custom".to_owned()),
            ("team".to_owned(), "build".to_owned()),
        ]);
        let image_labels = labels::image_labels(&facts, None, &configured_labels);
        let platforms: Vec<mab_config::Platform> = ["linux/amd64", "linux/arm64"]
            .iter()
            .map(|platform| platform.parse().unwrap())
            .collect();
        let jobs = Jobs::on_planned_runners(&platforms);
        for (oci, configured) in [(true, true), (true, false), (false, true), (false, false)] {
            let name = format!("oci {oci}, [annotations] {configured}");
            let configured_annotations = match configured {
                true => std::collections::BTreeMap::from([
                    ("org.example.pipeline".to_owned(), "nightly".to_owned()),
                    (
                        labels::CREATED.to_owned(),
                        "2000-01-01T00:00:00Z".to_owned(),
                    ),
                ]),
                false => std::collections::BTreeMap::new(),
            };
            let annotations = labels::index_annotations(&image_labels, &configured_annotations);
            let planned = Planned {
                annotations: &annotations,
                annotations_configured: configured,
                ..jobs.planned(false, &[])
            };
            let control = BuildControl::default();
            let answers = Answers {
                oci,
                ..Answers::default()
            };
            let registry = FakeRegistry::new(answers, &control);
            let worker = FakeWorker {
                oci,
                ..FakeWorker::pushing(vec![
                    ("linux/amd64", Outcome::Built),
                    ("linux/arm64", Outcome::Built),
                ])
            };
            let (_directory, _path, metadata) = empty_metadata_file();
            let reporter = Recorded::default();
            let result = run_and_publish(
                &planned,
                &worker,
                Some(&registry),
                &metadata,
                &control,
                &reporter,
            )
            .await;
            assert!(result.is_ok(), "{name}: {result:?}");
            let (pushed, _) = registry.list.lock().unwrap().clone().expect("published");
            let list: serde_json::Value = serde_json::from_slice(&pushed).unwrap();
            match oci {
                true => {
                    assert_eq!(list["mediaType"], mab_registry::OCI_INDEX, "{name}");
                    let mut expected = json!({
                        "org.opencontainers.image.source": "https://git.example.com/team/app.git",
                        "org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
                        "org.opencontainers.image.created": "2024-05-01T12:00:00Z",
                        "org.opencontainers.image.version": "1.2.3-custom",
                    });
                    if configured {
                        expected["org.opencontainers.image.created"] =
                            json!("2000-01-01T00:00:00Z");
                        expected["org.example.pipeline"] = json!("nightly");
                    }
                    assert_eq!(list["annotations"], expected, "{name}");
                }
                false => {
                    assert_eq!(
                        list["mediaType"],
                        mab_registry::DOCKER_MANIFEST_LIST,
                        "{name}"
                    );
                    assert!(list.get("annotations").is_none(), "{name}: {list}");
                }
            }
            let warned = reporter
                .said()
                .iter()
                .filter(|line| line.contains("[annotations] in mab.toml are not published"))
                .count();
            assert_eq!(warned, usize::from(!oci && configured), "{name}");
        }
    }

    /// `--no-fallback` and a platform whose preferred runner was
    /// unreachable at planning: the job's failure on that runner, exit 1,
    /// and the metadata says so; the other platforms never started, on
    /// the runners they were planned on.
    #[test]
    fn a_platform_stranded_by_no_fallback_fails_as_its_job() {
        let (_directory, path, metadata) = empty_metadata_file();
        let platforms: Vec<mab_config::Platform> = ["linux/amd64", "linux/arm64"]
            .iter()
            .map(|platform| platform.parse().unwrap())
            .collect();
        let stranded_by = vec![(
            platforms[1].clone(),
            mab_plan::Move {
                runner: "pi".to_owned(),
                reason: UNREACHABLE_PI.to_owned(),
            },
        )];
        let tags = ["1.0".to_owned(), "latest".to_owned()];
        let reporter = Recorded::default();
        let connected: HashMap<String, Result<Connected, Unreachable>> = HashMap::from([(
            "pi".to_owned(),
            Err(Unreachable {
                kind: UnreachableKind::Engine,
                message: UNREACHABLE_PI.to_owned(),
                hint: Some(
                    "check that the engine runs and that its socket is the runner's `engine`"
                        .to_owned(),
                ),
            }),
        )]);
        let unstarted = before_jobs(&metadata, &platforms, &tags, &reporter);
        let error = PlanError::PreferredUnreachable {
            unreachable: stranded_by,
            planned: vec![mab_plan::Job::new(
                platforms[0].clone(),
                "local",
                false,
                "native linux/amd64 engine",
            )],
        };
        let failure = plan_failed(error.clone(), &connected, &unstarted);
        assert_eq!(
            plan_error_report(error, &connected).report,
            failure.report,
            "`mab plan` reports what the build does"
        );
        assert_eq!(failure.kind, FailureKind::Runtime);
        assert_eq!(
            failure.report,
            "error: build failed for linux/arm64 (runner pi); nothing was published\n  \
             | linux/arm64 on pi: cannot reach the Docker engine of pi: connection refused\n\
             hint: check runner `pi` with `mab runners check`, or let another runner build it: take --no-fallback off the command line, or `fallback = false` out of [image] in mab.toml, whichever is there\n\
             hint: check that the engine runs and that its socket is the runner's `engine`"
        );
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            written,
            document(
                false,
                &["linux/amd64", "linux/arm64"],
                vec![
                    entry("linux/amd64", "not_started"),
                    failed("linux/arm64", "failed", "runner", UNREACHABLE_PI),
                ],
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_connecting_and_planning() {
        let limit = std::time::Duration::from_secs(7200);
        let deadline = Some((tokio::time::Instant::now() + limit, limit));
        let slow = tokio::time::sleep(limit * 2);
        let doing = || ("connecting".to_owned(), "wait less".to_owned());
        let failure = before_deadline(deadline, doing, slow).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::Runtime);
        assert_eq!(
            failure.report,
            "error: the build's deadline (--deadline 2h) came while connecting; nothing was built\nhint: wait less"
        );
        let quick = async { 5 };
        assert_eq!(before_deadline(deadline, doing, quick).await.unwrap(), 5);
        assert_eq!(before_deadline(None, doing, async { 6 }).await.unwrap(), 6);
    }

    #[tokio::test]
    async fn push_rights_are_checked_before_building() {
        // (the registry's answer, the exit it makes, phrases of the report)
        let cases = [
            (PushRights::Allowed, None, vec![]),
            (
                PushRights::Denied,
                Some(FailureKind::Usage),
                vec![
                    "127.0.0.1:5000 does not allow anonymous users to push to 127.0.0.1:5000/app",
                    "hint: log in with `docker login 127.0.0.1:5000` as a user that may push to 127.0.0.1:5000/app",
                ],
            ),
            (
                PushRights::Unreachable,
                Some(FailureKind::Runtime),
                vec![
                    "cannot reach the registry 127.0.0.1:5000",
                    "hint: check that 127.0.0.1:5000 is up and that this machine reaches it",
                ],
            ),
            (
                PushRights::OtherAnswer,
                Some(FailureKind::Runtime),
                vec![
                    "starting a push in 127.0.0.1:5000/app failed at 127.0.0.1:5000",
                    "hint: check that 127.0.0.1:5000 accepts pushes; nothing was built",
                ],
            ),
        ];
        for (push_rights, kind, phrases) in cases {
            let answers = Answers {
                push_rights,
                ..Answers::default()
            };
            let registry = FakeRegistry::new(answers, &BuildControl::default());
            let result = check_push(&registry, REGISTRY).await;
            assert_eq!(*registry.calls.lock().unwrap(), ["check push"]);
            assert_eq!(result.as_ref().err().map(|failure| failure.kind), kind);
            if let Err(failure) = result {
                for phrase in phrases {
                    assert!(
                        failure.report.contains(phrase),
                        "{phrase:?} not in\n{}",
                        failure.report
                    );
                }
            }
        }
    }

    /// Where a build fails before any job ran, in the order `build` goes.
    enum Before {
        /// The registry's check answers so (with `--deadline 2h`).
        CheckPush(PushRights),
        /// `--no-push`: no check at all.
        NoPush,
        /// `--deadline 2h` came while connecting to the runners.
        DeadlineConnecting,
        /// The plan failed so, with these runners unreachable.
        Plan(PlanError, Vec<(&'static str, UnreachableKind)>),
        /// A usage error found after the file was created (`[image] name`).
        BadImage,
    }

    fn rejected(runner: &str, why: mab_plan::Why) -> mab_plan::Rejection {
        mab_plan::Rejection {
            runner: runner.to_owned(),
            why,
        }
    }

    fn connection_refused() -> mab_plan::Why {
        mab_plan::Why::Unreachable {
            reason: "connection refused".to_owned(),
        }
    }

    /// `--allow-partial` when planning fails for want of a reachable
    /// runner: the platforms the error names fail on that runner and the
    /// others are planned again; when none is left, or on a configuration
    /// error, the build fails as without the flag, the metadata written.
    #[test]
    fn allow_partial_plans_the_platforms_whose_runners_answer() {
        let platform = |text: &str| -> mab_config::Platform { text.parse().unwrap() };
        let down = |name: &str| PlanError::NoUsableRunner {
            platform: platform(name),
            rejected: vec![rejected(runner_of(name), connection_refused())],
        };
        let job = |name: &str| mab_plan::Job::new(platform(name), runner_of(name), false, "native");
        let all = [
            platform("linux/amd64"),
            platform("linux/arm64"),
            platform("linux/s390x"),
        ];
        let connected = HashMap::new();
        let reporter = Recorded::default();
        let tags = ["t1".to_owned()];
        // (name, the first error, which platforms each later plan fails
        // for, the platforms failed, the planned ones; or the exit kind)
        type Row = (
            &'static str,
            PlanError,
            &'static [&'static str],
            Result<(Vec<&'static str>, Vec<&'static str>), FailureKind>,
        );
        let rows: Vec<Row> = vec![
            (
                "one platform's only runner is down: the others are planned",
                down("linux/arm64"),
                &[],
                Ok((
                    vec!["linux/arm64 on pi"],
                    vec!["linux/amd64", "linux/s390x"],
                )),
            ),
            (
                "a second platform fails when planned again: both fail, the third is planned",
                down("linux/arm64"),
                &["linux/s390x"],
                Ok((
                    vec!["linux/arm64 on pi", "linux/s390x on mainframe"],
                    vec!["linux/amd64"],
                )),
            ),
            (
                "every platform's runner is down: nothing to publish",
                down("linux/amd64"),
                &["linux/arm64", "linux/s390x"],
                Err(FailureKind::Runtime),
            ),
            (
                "a configuration error stays exit 2",
                PlanError::NoRunner {
                    platforms: vec![platform("linux/arm64")],
                    offers: Vec::new(),
                },
                &[],
                Err(FailureKind::Usage),
            ),
        ];
        for (name, error, later, expected) in rows {
            let (_directory, path, file) = empty_metadata_file();
            let unstarted = before_jobs(&file, &all, &tags, &reporter);
            let planning = |platforms: &[mab_config::Platform]| match platforms
                .iter()
                .find(|platform| later.contains(&platform.to_string().as_str()))
            {
                Some(failing) => Err(down(&failing.to_string())),
                None => Ok(mab_plan::Plan {
                    jobs: platforms
                        .iter()
                        .map(|platform| job(&platform.to_string()))
                        .collect(),
                }),
            };
            let result = plan_partially(error, &planning, &connected, &unstarted);
            match (result, expected) {
                (Ok((plan, failures)), Ok((failed, planned))) => {
                    let got: Vec<String> = failures
                        .iter()
                        .map(|failure| {
                            format!("{} on {}", failure.job.platform, failure.job.runner)
                        })
                        .collect();
                    assert_eq!(got, failed, "{name}");
                    assert!(
                        failures
                            .iter()
                            .all(|failure| failure.kind == ErrorKind::Runner),
                        "{name}"
                    );
                    let jobs: Vec<String> = plan
                        .jobs
                        .iter()
                        .map(|job| job.platform.to_string())
                        .collect();
                    assert_eq!(jobs, planned, "{name}");
                    assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "{name}");
                }
                (Err(failure), Err(kind)) => {
                    assert_eq!(failure.kind, kind, "{name}");
                    let written: serde_json::Value =
                        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                    assert_eq!(written["digest"], serde_json::Value::Null, "{name}");
                    assert_eq!(
                        written["missing"],
                        json!(["linux/amd64", "linux/arm64", "linux/s390x"]),
                        "{name}"
                    );
                    if kind == FailureKind::Runtime {
                        assert!(
                            failure.report.starts_with("error: build failed for linux/amd64 (runner local), linux/arm64 (runner pi), linux/s390x (runner mainframe); nothing was published"),
                            "{name}: {}",
                            failure.report
                        );
                    }
                }
                (result, _) => panic!("{name}: unexpected {result:?}"),
            }
        }
    }

    /// Every failure after `--metadata-file` was created and before any job
    /// ran writes the whole file: no digest, every platform missing and
    /// `not_started`, the error on the platforms it concerns.
    #[tokio::test(start_paused = true)]
    async fn a_build_that_fails_before_any_job_still_writes_the_metadata() {
        let arm64: mab_config::Platform = "linux/arm64".parse().unwrap();
        let refused = UnreachableKind::Ssh(mab_ssh::ErrorKind::Refused);
        let ssh_config = UnreachableKind::Ssh(mab_ssh::ErrorKind::Config);
        let pi_down = || PlanError::NoUsableRunner {
            platform: arm64.clone(),
            rejected: vec![rejected("pi", connection_refused())],
        };
        let unreachable_registry = "cannot reach the registry 127.0.0.1:5000: refused";
        let no_runner_for_arm =
            "no runner can build linux/arm64: pi is unreachable (connection refused)";
        // (name, where it fails, exit kind, the error's kind and message on
        // each platform; `None`: no error there; no rows: nothing written)
        type Row = (
            &'static str,
            Before,
            Option<FailureKind>,
            Vec<Option<(&'static str, &'static str)>>,
        );
        let cases: Vec<Row> = vec![
            (
                "registry unreachable: the registry on every platform",
                Before::CheckPush(PushRights::Unreachable),
                Some(FailureKind::Runtime),
                vec![Some(("registry", unreachable_registry)); 2],
            ),
            (
                "push refused: exit 2, still the registry on every platform",
                Before::CheckPush(PushRights::Denied),
                Some(FailureKind::Usage),
                vec![Some(("registry", "127.0.0.1:5000 does not allow anonymous users to push to 127.0.0.1:5000/app: refused")); 2],
            ),
            (
                "another answer to the check: the registry on every platform",
                Before::CheckPush(PushRights::OtherAnswer),
                Some(FailureKind::Runtime),
                vec![Some(("registry", "starting a push in 127.0.0.1:5000/app failed at 127.0.0.1:5000: the registry answered 500 Internal Server Error")); 2],
            ),
            (
                "the deadline while checking push rights",
                Before::CheckPush(PushRights::Hangs),
                Some(FailureKind::Runtime),
                vec![Some(("registry", "the build's deadline (--deadline 2h) came while checking push rights at 127.0.0.1:5000; nothing was built")); 2],
            ),
            ("push allowed: nothing written yet", Before::CheckPush(PushRights::Allowed), None, vec![]),
            ("--no-push: no check, nothing written yet", Before::NoPush, None, vec![]),
            (
                "the deadline while connecting: the runners on every platform",
                Before::DeadlineConnecting,
                Some(FailureKind::Runtime),
                vec![Some(("runner", "the build's deadline (--deadline 2h) came while connecting to the runners (`pi` had not answered); nothing was built")); 2],
            ),
            (
                "every runner of a platform unreachable: the runner on that platform only",
                Before::Plan(pi_down(), vec![("pi", refused)]),
                Some(FailureKind::Runtime),
                vec![None, Some(("runner", no_runner_for_arm))],
            ),
            (
                "unreachable through a mistake in the ssh config: usage on that platform",
                Before::Plan(pi_down(), vec![("pi", ssh_config)]),
                Some(FailureKind::Usage),
                vec![None, Some(("usage", no_runner_for_arm))],
            ),
            (
                "--native-only and only an emulating runner: usage on that platform",
                Before::Plan(
                    PlanError::NoNativeRunner {
                        platform: arm64.clone(),
                        rejected: vec![rejected(
                            "local",
                            mab_plan::Why::EmulationRefused {
                                platform: arm64.clone(),
                            },
                        )],
                    },
                    vec![],
                ),
                Some(FailureKind::Usage),
                vec![None, Some(("usage", "no runner builds linux/arm64 natively, and emulation is off: local can only emulate linux/arm64"))],
            ),
            (
                "a bad image name: usage on every platform",
                Before::BadImage,
                Some(FailureKind::Usage),
                vec![Some(("usage", "not a repository")); 2],
            ),
        ];
        let platforms: Vec<mab_config::Platform> = ["linux/amd64", "linux/arm64"]
            .iter()
            .map(|platform| platform.parse().unwrap())
            .collect();
        let tags = ["1.0".to_owned(), "latest".to_owned()];
        let limit = std::time::Duration::from_secs(7200);
        for (name, before, kind, errors) in cases {
            let (_directory, path, metadata) = empty_metadata_file();
            let reporter = Recorded::default();
            let unstarted = before_jobs(&metadata, &platforms, &tags, &reporter);
            let deadline = Some((tokio::time::Instant::now() + limit, limit));
            let result: Result<(), Failure> = match before {
                Before::CheckPush(push_rights) => {
                    let answers = Answers {
                        push_rights,
                        ..Answers::default()
                    };
                    let registry = FakeRegistry::new(answers, &BuildControl::default());
                    check_registry(Some(&registry), REGISTRY, deadline, &unstarted).await
                }
                Before::NoPush => {
                    check_registry(None::<&FakeRegistry>, REGISTRY, deadline, &unstarted).await
                }
                Before::DeadlineConnecting => before_deadline(
                    deadline,
                    || {
                        (
                            "connecting to the runners (`pi` had not answered)".to_owned(),
                            "pass a later --deadline".to_owned(),
                        )
                    },
                    tokio::time::sleep(limit * 2),
                )
                .await
                .map_err(|failure| unstarted.fail(failure, ErrorKind::Runner, None)),
                Before::Plan(error, down) => {
                    let connected: HashMap<String, Result<Connected, Unreachable>> = down
                        .into_iter()
                        .map(|(runner, kind)| {
                            let unreachable = Unreachable {
                                kind,
                                message: "connection refused".to_owned(),
                                hint: None,
                            };
                            (runner.to_owned(), Err(unreachable))
                        })
                        .collect();
                    Err(plan_failed(error, &connected, &unstarted))
                }
                Before::BadImage => Err(unstarted.fail(
                    Failure::usage("not a repository", None),
                    ErrorKind::Usage,
                    None,
                )),
            };
            assert_eq!(
                result.as_ref().err().map(|failure| failure.kind),
                kind,
                "{name}"
            );
            let written = std::fs::read_to_string(&path).unwrap();
            if errors.is_empty() {
                assert_eq!(written, "", "{name}");
                continue;
            }
            let entries: Vec<serde_json::Value> = platforms
                .iter()
                .zip(&errors)
                .map(|(platform, error_on)| {
                    with(
                        entry(&platform.to_string(), "not_started"),
                        json!({
                            "runner": null,
                            "error": error_on.map(|(kind, message)| error(kind, message)),
                        }),
                    )
                })
                .collect();
            let written: serde_json::Value = serde_json::from_str(&written).unwrap();
            assert_eq!(
                written,
                document(false, &["linux/amd64", "linux/arm64"], entries),
                "{name}"
            );
        }
    }

    /// The registry calls of a build that publishes amd64 and arm64 on a
    /// registry that deletes tags, after the calls `before`: the publish,
    /// its read back (each tag, the list, each image), each staging tag
    /// read and deleted, each image read again.
    fn published_both_after(before: &[&'static str]) -> Vec<&'static str> {
        let mut calls = before.to_vec();
        calls.extend(read_back_around(&[
            "read tag mab-staging-linux-amd64",
            "delete mab-staging-linux-amd64",
            "read tag mab-staging-linux-arm64",
            "delete mab-staging-linux-arm64",
        ]));
        calls
    }

    /// The registry calls of publishing amd64 and arm64 under 1.0 and
    /// latest and reading the list back, around the calls of `removal`
    /// (the staging tags): the publish, each tag, the list, `removal`,
    /// each image.
    fn read_back_around(removal: &[&'static str]) -> Vec<&'static str> {
        [
            &[
                "publish sha256:linux-amd64, sha256:linux-arm64 as 1.0, latest while publishing",
                "read tag 1.0",
                "read tag latest",
                "read sha256:list",
            ][..],
            removal,
            &["read sha256:linux-amd64", "read sha256:linux-arm64"],
        ]
        .concat()
    }

    /// What a resume of `earlier` in `registry` decides, for the platforms
    /// of [`inputs`] without a deadline.
    async fn resumed(
        earlier: &metadata::Metadata,
        registry: &FakeRegistry,
        reporter: &Recorded,
    ) -> resume::Reuse {
        let platforms = inputs().platforms;
        resume::Resume::of(Some(earlier.clone()), &platforms, None)
            .decide(Some(registry), REGISTRY, &platforms, None, reporter)
            .await
            .unwrap()
    }

    /// One job per platform on its planned runner ([`runner_of`]), one
    /// slot each, for the tags `1.0, latest`.
    struct Jobs {
        jobs: Vec<JobSpec>,
        slots: HashMap<String, u32>,
        tags: [String; 2],
    }

    impl Jobs {
        fn on_planned_runners(platforms: &[mab_config::Platform]) -> Jobs {
            let jobs: Vec<JobSpec> = platforms
                .iter()
                .map(|platform| JobSpec::on(platform.clone(), runner_of(&platform.to_string())))
                .collect();
            let slots = jobs.iter().map(|job| (job.runner.clone(), 1)).collect();
            Jobs {
                jobs,
                slots,
                tags: ["1.0".to_owned(), "latest".to_owned()],
            }
        }

        /// The jobs planned without limits, with `reused` images beside them.
        fn planned<'a>(
            &'a self,
            allow_partial: bool,
            reused: &'a [(PlatformMetadata, Child)],
        ) -> Planned<'a> {
            Planned {
                image: IMAGE,
                jobs: &self.jobs,
                slots: &self.slots,
                tags: &self.tags,
                limits: Limits {
                    timeout: None,
                    timeout_from_flag: false,
                    deadline: None,
                },
                fallback: Fallback::Allowed,
                allow_partial,
                unplanned: &[],
                reused,
                annotations: &EMPTY_ANNOTATIONS,
                annotations_configured: false,
            }
        }
    }

    impl FakeWorker {
        /// Pushes, and ends each job on its planned runner as `outcomes` says.
        fn pushing(outcomes: Vec<(&'static str, Outcome)>) -> FakeWorker {
            FakeWorker {
                outcomes,
                elsewhere: Vec::new(),
                pushes: true,
                runs: Mutex::new(Vec::new()),
                control: None,
                lost: Arc::default(),
                oci: false,
            }
        }
    }

    /// An earlier build's document: each platform in `state` (with its
    /// digest when `pushed` or `published`), the inputs of these tests.
    fn earlier(states: &[(&str, &str)]) -> metadata::Metadata {
        let entries: Vec<serde_json::Value> = states
            .iter()
            .map(|(platform, state)| entry(platform, state))
            .collect();
        let missing: Vec<&str> = states
            .iter()
            .filter(|(_, state)| *state != "published")
            .map(|(platform, _)| *platform)
            .collect();
        let published = missing.is_empty();
        serde_json::from_value(document(published, &missing, entries)).unwrap()
    }

    /// A resume's decisions against the fakes: which platforms are reused
    /// (one read each, by digest), which are built (and on which runners:
    /// only theirs are contacted), what is published, said and recorded.
    #[tokio::test(start_paused = true)]
    async fn a_resume_reuses_what_the_registry_still_serves_and_builds_the_rest() {
        use Outcome::*;
        struct ResumeCase {
            name: &'static str,
            earlier: Vec<(&'static str, &'static str)>,
            gone: Option<&'static str>,
            allow_partial: bool,
            /// The platforms built now (whose runners alone are connected
            /// to), and how their jobs end.
            outcomes: Vec<(&'static str, Outcome)>,
            calls: Vec<&'static str>,
            metadata: serde_json::Value,
            said: Vec<&'static str>,
            failed: bool,
        }
        /// amd64 pushed and arm64 failed earlier; arm64 builds now.
        fn resume_case() -> ResumeCase {
            ResumeCase {
                name: "",
                earlier: vec![("linux/amd64", "pushed"), ("linux/arm64", "failed")],
                gone: None,
                allow_partial: false,
                outcomes: vec![("linux/arm64", Outcome::Built)],
                calls: Vec::new(),
                metadata: serde_json::Value::Null,
                said: Vec::new(),
                failed: false,
            }
        }
        let reused = |platform: &str, state: &str| {
            with(
                entry(platform, state),
                json!({ "seconds": null, "reused": true }),
            )
        };
        let cases = vec![
            ResumeCase {
                name: "amd64 pushed and still served, arm64 failed: only arm64 is built, the list holds both in mab.toml order",
                calls: published_both_after(&["describe sha256:linux-amd64"]),
                metadata: document(
                    true,
                    &[],
                    vec![reused("linux/amd64", "published"), entry("linux/arm64", "published")],
                ),
                said: vec![
                    "linux/amd64 reused from the earlier build (runner `local`): sha256:linux-amd64",
                    "published 127.0.0.1:5000/app@sha256:list as 1.0, latest",
                ],
                ..resume_case()
            },
            ResumeCase {
                name: "amd64's image gone from the registry: it is rebuilt with a warning",
                gone: Some("linux-amd64"),
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", Built)],
                calls: published_both_after(&["describe sha256:linux-amd64"]),
                metadata: published_metadata(&["linux/amd64", "linux/arm64"]),
                said: vec!["warning: linux/amd64 is rebuilt: the earlier build's image sha256:linux-amd64 cannot be reused from 127.0.0.1:5000/app: reading manifest sha256:linux-amd64 in 127.0.0.1:5000/app failed at 127.0.0.1:5000: the registry answered 404 Not Found"],
                ..resume_case()
            },
            ResumeCase {
                name: "platforms cancelled or never started have no digest: both are built, nothing is read, and that is said",
                earlier: vec![("linux/amd64", "cancelled"), ("linux/arm64", "not_started")],
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", Built)],
                calls: published_both_after(&[]),
                metadata: published_metadata(&["linux/amd64", "linux/arm64"]),
                said: vec!["warning: nothing to reuse: the earlier build pushed nothing; every platform is built"],
                ..resume_case()
            },
            ResumeCase {
                name: "an earlier build that succeeded: everything reused, no job, no runner, the list published under this run's tags",
                earlier: vec![("linux/amd64", "published"), ("linux/arm64", "published")],
                outcomes: Vec::new(),
                calls: published_both_after(&["describe sha256:linux-amd64", "describe sha256:linux-arm64"]),
                metadata: document(
                    true,
                    &[],
                    vec![reused("linux/amd64", "published"), reused("linux/arm64", "published")],
                ),
                said: vec![
                    "linux/amd64 reused from the earlier build (runner `local`)",
                    "linux/arm64 reused from the earlier build (runner `pi`)",
                ],
                ..resume_case()
            },
            ResumeCase {
                name: "arm64 fails again: nothing published, amd64 stays pushed and reused, so that the next resume reuses it too",
                outcomes: vec![("linux/arm64", FailsBeforePush)],
                calls: vec!["describe sha256:linux-amd64"],
                metadata: document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        reused("linux/amd64", "pushed"),
                        failed("linux/arm64", "failed", "build", "RUN false: exit code 1"),
                    ],
                ),
                failed: true,
                ..resume_case()
            },
            ResumeCase {
                name: "--allow-partial: arm64 fails again, the list of the reused amd64 alone is published",
                allow_partial: true,
                outcomes: vec![("linux/arm64", FailsBeforePush)],
                calls: vec![
                        "describe sha256:linux-amd64",
                        "publish sha256:linux-amd64 as 1.0, latest while publishing",
                        "read tag 1.0",
                        "read tag latest",
                        "read sha256:list",
                        "read tag mab-staging-linux-amd64",
                        "delete mab-staging-linux-amd64",
                        "read sha256:linux-amd64",
                    ],
                metadata: document(
                    true,
                    &["linux/arm64"],
                    vec![
                        reused("linux/amd64", "published"),
                        failed("linux/arm64", "failed", "build", "RUN false: exit code 1"),
                    ],
                ),
                said: vec!["warning: linux/arm64 is missing from the partial list published as 1.0, latest"],
                failed: true,
                ..resume_case()
            },
        ];
        let runners_directory = tempfile::tempdir().unwrap();
        let runners_path = runners_directory.path().join("runners.toml");
        std::fs::write(
            &runners_path,
            "[[runner]]\nname = \"local\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n\n\
             [[runner]]\nname = \"pi\"\nhost = \"pi.lan\"\nplatforms = [\"linux/arm64\"]\n",
        )
        .unwrap();
        let runners = mab_config::load_runners(&runners_path).unwrap();
        for case in cases {
            let name = case.name;
            let control = BuildControl::default();
            let registry = FakeRegistry::new(
                Answers {
                    gone: case.gone,
                    deletes_tags: true,
                    ..Answers::default()
                },
                &control,
            );
            let (_directory, path, metadata) = empty_metadata_file();
            let reporter = Recorded::default();
            let earlier = earlier(&case.earlier);

            let reuse = resumed(&earlier, &registry, &reporter).await;

            let built: Vec<&str> = case
                .outcomes
                .iter()
                .map(|(platform, _)| *platform)
                .collect();
            let to_build: Vec<String> = reuse.to_build.iter().map(ToString::to_string).collect();
            assert_eq!(to_build, built, "{name}");
            let contacted: Vec<&str> = prepare::runners_for(&runners, &reuse.to_build)
                .iter()
                .map(|runner| runner.name.as_str())
                .collect();
            let expected: Vec<&str> = built.iter().map(|p| runner_of(p)).collect();
            assert_eq!(
                contacted, expected,
                "{name}: only these runners are contacted"
            );
            let jobs = Jobs::on_planned_runners(&reuse.to_build);
            let worker = FakeWorker::pushing(case.outcomes.clone());
            let result = run_and_publish(
                &jobs.planned(case.allow_partial, &reuse.reused),
                &worker,
                Some(&registry),
                &metadata,
                &control,
                &reporter,
            )
            .await;

            let runs = worker.runs.lock().unwrap().clone();
            let expected_runs: Vec<String> = built
                .iter()
                .map(|platform| format!("{platform} on {}", runner_of(platform)))
                .collect();
            assert_eq!(
                runs, expected_runs,
                "{name}: a job for the built platforms alone"
            );
            let calls = registry.calls.lock().unwrap().clone();
            assert_eq!(calls, case.calls, "{name}");
            assert_eq!(result.is_err(), case.failed, "{name}: {result:?}");
            let written: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(written, case.metadata, "{name}");
            // The state file holds the same document.
            let state = std::fs::read_to_string(metadata.state.as_ref().unwrap()).unwrap();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&state).unwrap(),
                written,
                "{name}"
            );
            let said = reporter.said();
            for phrase in &case.said {
                assert!(
                    said.iter().any(|line| line.contains(phrase)),
                    "{name}: {phrase:?} not in {said:#?}"
                );
            }
            let reused_said = said
                .iter()
                .filter(|line| line.contains(" reused from the earlier build"))
                .count();
            assert_eq!(reused_said, reuse.reused.len(), "{name}: {said:#?}");
        }
    }

    /// A resume whose inputs changed is refused (exit 2), naming each
    /// change; tags are no input.
    #[test]
    fn a_resume_names_each_input_that_changed() {
        let earlier: metadata::Metadata =
            serde_json::from_value(document(false, &[], Vec::new())).unwrap();
        let read_from = Path::new("/state/builds/key.json");
        let check =
            |now: &Inputs| resume::check_inputs(&earlier, read_from, Path::new(PROJECT), now);
        assert!(check(&inputs()).is_ok());
        type Change = fn(&mut Inputs);
        let cases: Vec<(&str, Change, &str)> = vec![
            (
                "files, no entries recorded (an older document)",
                |inputs| {
                    inputs.context = "sha256:other".into();
                    inputs.context_entries.clear();
                },
                "the files sent changed",
            ),
            (
                "files, entries named",
                |inputs| {
                    inputs.context = "sha256:other".into();
                    let entries = &mut inputs.context_entries;
                    entries.insert("src/".into(), "sha256:src2".into());
                    entries.insert("README.md".into(), "sha256:readme".into());
                    entries.remove("Dockerfile");
                },
                "the files sent changed: Dockerfile (removed), README.md (added), src/",
            ),
            (
                "files, five entries named and the rest counted",
                |inputs| {
                    inputs.context = "sha256:other".into();
                    for name in ["a", "b", "c", "d", "e", "f", "g"] {
                        inputs.context_entries.insert(name.into(), "sha256:new".into());
                    }
                },
                "the files sent changed: a (added), b (added), c (added), d (added), e (added) and 2 more",
            ),
            (
                "the Dockerfile inside the context: named once",
                |inputs| {
                    inputs.context = "sha256:other".into();
                    inputs.dockerfile.digest = "sha256:other".into();
                },
                "the Dockerfile changed (Dockerfile)",
            ),
            (
                "dockerfile",
                |inputs| inputs.dockerfile.digest = "sha256:other".into(),
                "the Dockerfile changed (Dockerfile)",
            ),
            (
                "dockerfile path",
                |inputs| inputs.dockerfile.path = "build/Dockerfile".into(),
                "the Dockerfile changed: Dockerfile -> build/Dockerfile",
            ),
            (
                "build arg changed",
                |inputs| {
                    inputs.build_args.insert("VERSION".into(), "2".into());
                },
                "build arg VERSION changed",
            ),
            (
                "build arg added",
                |inputs| {
                    inputs.build_args.insert("DEBUG".into(), "".into());
                },
                "build arg DEBUG added",
            ),
            (
                "build arg removed",
                |inputs| inputs.build_args.clear(),
                "build arg VERSION removed",
            ),
            (
                "target",
                |inputs| inputs.target = Some("test".into()),
                "target changed: (the last stage) -> test",
            ),
            (
                "platforms",
                |inputs| inputs.platforms.truncate(1),
                "platforms changed: linux/amd64, linux/arm64 -> linux/amd64",
            ),
            (
                "labels: a new commit",
                |inputs| {
                    inputs.labels.insert(
                        "org.opencontainers.image.revision".into(),
                        "0123abcd".into(),
                    );
                    inputs.labels.insert("team".into(), "build".into());
                },
                "labels changed: org.opencontainers.image.revision, team",
            ),
            (
                "verify",
                |inputs| {
                    inputs.verify = Some(metadata::VerifyInput {
                        binaries: "warn".to_owned(),
                        ignore: vec!["/opt/**".to_owned()],
                    })
                },
                "[verify] changed: binaries = \"error\", ignore = [] -> binaries = \"warn\", ignore = [\"/opt/**\"]",
            ),
        ];
        for (name, change, phrase) in cases {
            let mut now = inputs();
            change(&mut now);
            let failure = check(&now).unwrap_err();
            assert_eq!(failure.kind, FailureKind::Usage, "{name}");
            assert!(
                failure.report.starts_with(&format!(
                    "error: cannot resume the earlier build of {PROJECT} (read from /state/builds/key.json): {phrase}\n"
                )),
                "{name}: {}",
                failure.report
            );
            assert!(
                failure
                    .report
                    .contains("hint: run `mab build` without --resume to rebuild every platform"),
                "{name}: {}",
                failure.report
            );
        }
        // A change to mab's own files sent with the context says how to
        // keep them out of it; no other change says so.
        let mut now = inputs();
        now.context = "sha256:other".into();
        now.context_entries
            .insert("mab.toml".into(), "sha256:settings".into());
        let report = check(&now).unwrap_err().report;
        assert!(
            report.contains(": the files sent changed: mab.toml (added)\n"),
            "{report}"
        );
        assert!(
            report.contains("hint: mab.toml is sent with the context like any file not in .dockerignore. To resume now, undo the change and give a fixed runners file elsewhere with --runners FILE; for later builds, list mab.toml and runners.toml in .dockerignore"),
            "{report}"
        );
        // Now left out by .dockerignore: only a build without --resume helps.
        let mut ignored = inputs();
        ignored.context = "sha256:other".into();
        let mut earlier_with_own = earlier.clone();
        earlier_with_own
            .inputs
            .context_entries
            .insert("mab.toml".into(), "sha256:settings".into());
        let report =
            resume::check_inputs(&earlier_with_own, read_from, Path::new(PROJECT), &ignored)
                .unwrap_err()
                .report;
        assert!(
            report.contains(": the files sent changed: mab.toml (removed)\n"),
            "{report}"
        );
        assert!(
            report.contains("hint: mab.toml left the context, so the earlier build's context differs from this one: run `mab build` once without --resume"),
            "{report}"
        );
        now.context_entries.remove("mab.toml");
        now.context_entries
            .insert("src/".into(), "sha256:src2".into());
        let report = check(&now).unwrap_err().report;
        assert!(!report.contains(".dockerignore"), "{report}");
        // Several changes are named together.
        let mut now = inputs();
        now.context = "sha256:other".into();
        now.target = Some("test".into());
        let report = check(&now).unwrap_err().report;
        assert!(
            report.contains("the files sent changed; target changed: (the last stage) -> test"),
            "{report}"
        );
        // The earlier build was another project's.
        let report = resume::check_inputs(&earlier, read_from, Path::new("/other/mab.toml"), &now)
            .unwrap_err()
            .report;
        assert!(
            report.starts_with("error: cannot resume the earlier build read from /state/builds/key.json, a build of another project (/project/mab.toml, not /other/mab.toml): the files sent changed;"),
            "{report}"
        );
    }

    /// A resume that stops before the registry is read (here at the check
    /// of push rights) keeps the platforms it would reuse `pushed` with
    /// their digests, so that the next resume still finds them; the
    /// others carry the failure.
    #[tokio::test]
    async fn a_resume_that_stops_early_keeps_what_it_would_reuse() {
        let (_directory, path, metadata) = empty_metadata_file();
        let reporter = Recorded::default();
        let earlier = earlier(&[("linux/amd64", "pushed"), ("linux/arm64", "failed")]);
        let platforms = inputs().platforms;
        let resume = resume::Resume::of(Some(earlier), &platforms, None);
        assert_eq!(resume.rest, platforms[1..]);
        let tags = ["1.0".to_owned(), "latest".to_owned()];
        let unstarted = BeforeJobs {
            reused: &resume.carried,
            ..before_jobs(&metadata, &resume.rest, &tags, &reporter)
        };
        let control = BuildControl::default();
        let registry = FakeRegistry::new(
            Answers {
                push_rights: PushRights::Unreachable,
                ..Answers::default()
            },
            &control,
        );

        let failure = check_registry(Some(&registry), REGISTRY, None, &unstarted)
            .await
            .unwrap_err();

        let message = "cannot reach the registry 127.0.0.1:5000: refused";
        assert!(
            failure.report.starts_with(&format!("error: {message}")),
            "{}",
            failure.report
        );
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let not_started = json!({
            "platform": "linux/arm64", "runner": null, "digest": null, "emulated": false,
            "seconds": null, "state": "not_started", "error": error("registry", message),
            "moved_from": null, "reason": null, "reused": false,
        });
        assert_eq!(
            written,
            document(
                false,
                &["linux/amd64", "linux/arm64"],
                vec![
                    with(
                        entry("linux/amd64", "pushed"),
                        json!({ "seconds": null, "reused": true })
                    ),
                    not_started,
                ],
            )
        );
    }

    /// A failed build on a registry that deletes an image with its last
    /// tag keeps the staging tag of the platform it verified, so that the
    /// resume chained to it finds that image and reuses it; the resume
    /// then removes the reused platform's staging tag with its own.
    #[tokio::test]
    async fn a_failed_build_keeps_what_its_resume_reuses_on_a_registry_that_loses_manifests() {
        use Outcome::*;
        let control = BuildControl::default();
        // The build: amd64 pushed and verified, arm64 pushed and rejected.
        let (registry, failed, (_directory, path, metadata)) = first_build(
            Answers {
                loses_manifests: true,
                ..Answers::default()
            },
            vec![("linux/amd64", Built), ("linux/arm64", FailsAfterPush)],
            &control,
        )
        .await;
        let platforms = inputs().platforms;
        assert!(failed.is_err());
        assert_eq!(
            std::mem::take(&mut *registry.calls.lock().unwrap()),
            [
                "read tag mab-staging-linux-arm64",
                "delete mab-staging-linux-arm64"
            ]
        );

        // The resume, from the metadata file the build wrote.
        let earlier: metadata::Metadata =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let reporter = Recorded::default();
        let reuse = resumed(&earlier, &registry, &reporter).await;
        assert_eq!(reuse.to_build, platforms[1..]);
        let result = run_and_publish(
            &Jobs::on_planned_runners(&reuse.to_build).planned(false, &reuse.reused),
            &FakeWorker {
                lost: registry.lost.clone(),
                ..FakeWorker::pushing(vec![("linux/arm64", Built)])
            },
            Some(&registry),
            &metadata,
            &control,
            &reporter,
        )
        .await;
        // The rebuilt arm64 is served again; the reused amd64 goes with
        // its staging tag, which the read back finds: the list is out,
        // but broken.
        let failure = result.unwrap_err();
        assert_eq!(failure.digest.as_deref(), Some("sha256:list"));
        assert!(
            failure.report.contains(
                "the registry no longer serves sha256:linux-amd64, the linux/amd64 image of the list (it answers 404 Not Found)"
            ),
            "{}",
            failure.report
        );
        assert_eq!(
            *registry.calls.lock().unwrap(),
            published_both_after(&["describe sha256:linux-amd64"])[..10]
        );
        let said = reporter.said();
        assert!(
            said.iter()
                .any(|line| line.starts_with("linux/amd64 reused from the earlier build")),
            "{said:#?}"
        );
    }

    /// A list not read back as published (a tag another writer moved)
    /// leaves its digest in the metadata, each platform `published` with
    /// its digest, and the staging tags kept: the `mab build --resume`
    /// its hint names reuses both images, builds nothing, publishes the
    /// list again and removes the staging tags.
    #[tokio::test(start_paused = true)]
    async fn a_resume_after_a_failed_read_back_publishes_again_without_building() {
        use Outcome::*;
        let control = BuildControl::default();
        let (_, failed, (_directory, path, metadata)) = first_build(
            Answers {
                raced: Some("1.0"),
                ..Answers::default()
            },
            vec![("linux/amd64", Built), ("linux/arm64", Built)],
            &control,
        )
        .await;
        assert_eq!(failed.unwrap_err().digest.as_deref(), Some("sha256:list"));

        let earlier: metadata::Metadata =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(earlier.digest.as_deref(), Some("sha256:list"));
        assert!(earlier.read_back_error.is_some());
        // The other writer is done: the resume publishes alone.
        let registry = FakeRegistry::new(
            Answers {
                deletes_tags: true,
                ..Answers::default()
            },
            &control,
        );
        let reporter = Recorded::default();
        let reuse = resumed(&earlier, &registry, &reporter).await;
        assert!(reuse.to_build.is_empty(), "{:?}", reuse.to_build);
        let worker = FakeWorker::pushing(Vec::new());
        let result = run_and_publish(
            &Jobs::on_planned_runners(&reuse.to_build).planned(false, &reuse.reused),
            &worker,
            Some(&registry),
            &metadata,
            &control,
            &reporter,
        )
        .await;
        assert_eq!(result.unwrap().stdout(), "127.0.0.1:5000/app@sha256:list\n");
        assert!(worker.runs.lock().unwrap().is_empty());
        assert_eq!(
            *registry.calls.lock().unwrap(),
            published_both_after(&["describe sha256:linux-amd64", "describe sha256:linux-arm64"])
        );
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(written.get("read_back_error").is_none(), "{written}");
    }

    /// A build of the platforms of [`inputs`], each job ending as
    /// `outcomes` says, on a registry that deletes tags, answering
    /// `answers` otherwise: the registry, the build's result, and the
    /// metadata file it wrote (for a resume).
    async fn first_build(
        answers: Answers,
        outcomes: Vec<(&'static str, Outcome)>,
        control: &BuildControl,
    ) -> (
        FakeRegistry,
        Result<BuildOutcome, Failure>,
        (tempfile::TempDir, std::path::PathBuf, MetadataFile),
    ) {
        let answers = Answers {
            deletes_tags: true,
            ..answers
        };
        let registry = FakeRegistry::new(answers, control);
        let file = empty_metadata_file();
        let result = run_and_publish(
            &Jobs::on_planned_runners(&inputs().platforms).planned(false, &[]),
            &FakeWorker::pushing(outcomes),
            Some(&registry),
            &file.2,
            control,
            &Recorded::default(),
        )
        .await;
        (registry, result, file)
    }

    /// A build of the platforms of [`inputs`] that a signal may stop.
    struct Signalled {
        control: BuildControl,
        registry: FakeRegistry,
        worker: FakeWorker,
        jobs: Jobs,
        _directory: tempfile::TempDir,
        path: std::path::PathBuf,
        metadata: MetadataFile,
    }

    impl Signalled {
        /// The jobs and the publish ([`run_and_publish`]), planned without
        /// limits.
        async fn run(&self) -> Result<BuildOutcome, Failure> {
            run_and_publish(
                &self.jobs.planned(false, &[]),
                &self.worker,
                Some(&self.registry),
                &self.metadata,
                &self.control,
                &Recorded::default(),
            )
            .await
        }
    }

    /// A registry answering `answers` and a worker that pushes and ends
    /// each job on its planned runner as `outcomes` says, sharing the
    /// control a signal sets; an empty metadata file.
    fn signalled(answers: Answers, outcomes: Vec<(&'static str, Outcome)>) -> Signalled {
        let control = BuildControl::default();
        let registry = FakeRegistry::new(answers, &control);
        let worker = FakeWorker {
            control: Some(control.clone()),
            ..FakeWorker::pushing(outcomes)
        };
        let (_directory, path, metadata) = empty_metadata_file();
        Signalled {
            control,
            registry,
            worker,
            jobs: Jobs::on_planned_runners(&inputs().platforms),
            _directory,
            path,
            metadata,
        }
    }

    /// A signal while amd64 is pushed and verified and arm64 still runs:
    /// arm64's job is dropped (`cancelled`), amd64 keeps its result
    /// (`pushed` with its digest) and its staging tag (nothing deleted),
    /// the metadata is written, nothing is published, and the build fails
    /// as the signal says (130, 143).
    #[tokio::test(start_paused = true)]
    async fn a_signal_stops_the_running_jobs_and_keeps_what_was_pushed() {
        use Outcome::*;
        for kind in [FailureKind::Interrupted, FailureKind::Terminated] {
            let answers = Answers {
                deletes_tags: true,
                ..Answers::default()
            };
            let build = signalled(
                answers,
                vec![("linux/amd64", Built), ("linux/arm64", Hangs)],
            );
            let signal = async {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                assert!(build.control.request_stop(kind));
            };
            let (result, ()) = tokio::join!(build.run(), signal);
            let failure = result.unwrap_err();
            assert_eq!(failure.kind, kind);
            assert_eq!(
                failure.report,
                Failure::stopped_after_jobs(kind, 1).report,
                "the report of a signal"
            );
            assert!(
                failure.report.contains(
                    "hint: 1 platform(s) were pushed and verified before the stop: `mab build --resume` builds only the others"
                ),
                "{}",
                failure.report
            );
            assert_eq!(
                *build.registry.calls.lock().unwrap(),
                Vec::<String>::new(),
                "no publish, and amd64's staging tag is kept"
            );
            let signal = match kind {
                FailureKind::Terminated => "terminated (SIGTERM)",
                _ => "interrupted (Ctrl-C)",
            };
            let written: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&build.path).unwrap()).unwrap();
            assert_eq!(
                written,
                document(
                    false,
                    &["linux/amd64", "linux/arm64"],
                    vec![
                        entry("linux/amd64", "pushed"),
                        failed(
                            "linux/arm64",
                            "cancelled",
                            "runner",
                            &format!("stopped on runner `pi`: {signal}")
                        ),
                    ],
                )
            );
        }
    }

    /// A signal before the jobs (here while the registry is asked for
    /// push rights) ends that phase at once: the metadata has every
    /// platform `not_started` without an error, and the build fails as the
    /// signal says.
    #[tokio::test(start_paused = true)]
    async fn a_signal_before_the_jobs_ends_the_build_at_once() {
        let control = BuildControl::default();
        let registry = FakeRegistry::new(
            Answers {
                push_rights: PushRights::Hangs,
                ..Answers::default()
            },
            &control,
        );
        let (_directory, path, metadata) = empty_metadata_file();
        let platforms = inputs().platforms;
        let tags = ["1.0".to_owned(), "latest".to_owned()];
        let reporter = Recorded::default();
        let unstarted = before_jobs(&metadata, &platforms, &tags, &reporter);
        let started = tokio::time::Instant::now();
        let checking = check_registry(Some(&registry), REGISTRY, None, &unstarted);
        let signal = async {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            control.request_stop(FailureKind::Terminated);
        };
        let (result, ()) = tokio::join!(unless_stopped(&control, &unstarted, checking), signal);
        assert_eq!(result.unwrap_err().kind, FailureKind::Terminated);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let not_started = |platform: &str| {
            with(
                entry(platform, "not_started"),
                json!({ "runner": null, "seconds": null }),
            )
        };
        assert_eq!(
            written,
            document(
                false,
                &["linux/amd64", "linux/arm64"],
                vec![not_started("linux/amd64"), not_started("linux/arm64")],
            )
        );
    }

    /// A Ctrl-C during the publish of the list is refused as a stop: the
    /// jobs' results stand and the publish finishes.
    #[tokio::test(start_paused = true)]
    async fn a_signal_during_the_publish_does_not_stop_the_build() {
        let (build, calls) = published_though_signalled(Answers {
            interrupted_while_publishing: true,
            ..Answers::default()
        })
        .await;
        assert_eq!(
            calls[..2],
            [
                "Ctrl-C: stop accepted false",
                "publish sha256:linux-amd64, sha256:linux-arm64 as 1.0, latest while publishing"
            ]
        );
        assert_eq!(build.control.stop_requested(), None);
        assert!(build.control.published());
    }

    /// Once every tag points at the list, a Ctrl-C is no longer held
    /// off: the stop is accepted during the read back (the signal
    /// handler then gives the build its grace to end), and the build,
    /// already past its jobs, reads the list back and ends.
    #[tokio::test(start_paused = true)]
    async fn a_signal_during_the_read_back_is_accepted() {
        let (build, calls) = published_though_signalled(Answers {
            interrupted_while_reading_back: true,
            ..Answers::default()
        })
        .await;
        assert_eq!(
            calls[..3],
            [
                "publish sha256:linux-amd64, sha256:linux-arm64 as 1.0, latest while publishing",
                "read tag 1.0",
                "Ctrl-C: stop accepted true",
            ]
        );
        assert_eq!(
            build.control.stop_requested(),
            Some(FailureKind::Interrupted)
        );
        assert!(build.control.published());
    }

    /// A build of amd64 and arm64 against a registry answering `answers`
    /// (a Ctrl-C while it publishes or reads back) that publishes all the
    /// same; the registry calls it made.
    async fn published_though_signalled(answers: Answers) -> (Signalled, Vec<String>) {
        use Outcome::*;
        let build = signalled(
            answers,
            vec![("linux/amd64", Built), ("linux/arm64", Built)],
        );
        let result = build.run().await;
        assert_eq!(result.unwrap().stdout(), "127.0.0.1:5000/app@sha256:list\n");
        let calls = build.registry.calls.lock().unwrap().clone();
        (build, calls)
    }
}
