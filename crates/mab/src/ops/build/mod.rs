//! `mab build`: plan, build every platform on its runner, verify, publish.

//!
//! The orchestration lives here; the rest is split by what it touches:
//! `overrides` (flags over `mab.toml`), `tags` (the tags to publish under
//! and the partial-build rule), `worker` (one platform's job on its
//! runner's engine), `publish` (the registry side: push rights, staging
//! tags) and `metadata` (`--metadata-file`).

mod metadata;
mod overrides;
mod publish;
mod tags;
mod worker;

use std::collections::HashMap;

use mab_registry::{Child, Repository};

use crate::cli::BuildArgs;
use crate::environment::Environment;
use crate::failure::Failure;
use crate::ops::jobs::{all_or_failures, pushed_jobs, run_all, JobFailure, JobSpec, Worker};
use crate::ops::prepare;
use crate::ops::publishing::Publishing;
use crate::progress::{Event, Reporter};

use metadata::MetadataFile;
use overrides::apply_overrides;
use publish::{check_push, remove_staging_tags, Registry};
use tags::{check_not_narrowing, release_tags};
use worker::{build_id, staging_tag, LiveWorker};

/// Runs the build; returns what goes to stdout.
/// `publishing` is set while the list and its tags are pushed, for the
/// interrupt handler.
pub async fn build(
    args: &BuildArgs,
    environment: &Environment,
    reporter: &dyn Reporter,
    publishing: &Publishing,
) -> Result<String, Failure> {
    let loaded = prepare::load(&args.project, environment, reporter)?;
    let mut project = loaded.project;
    apply_overrides(&mut project, args, environment)?;
    check_not_narrowing(&project, &loaded.manifest_platforms, args)?;
    let (context, listing) = prepare::build_context(&project)?;
    prepare::check_target(&project, &context, args.target.is_some())?;
    for warning in context.warnings() {
        reporter.report(Event::Warning {
            message: warning.clone(),
        });
    }
    let tags = release_tags(&project, &context, &listing, args, environment, reporter)?;
    let network = super::network_flag(args.network.as_deref())?;
    let metadata = MetadataFile::create(args, environment)?;
    let registry = mab_registry::registry_of(&project.image).map_err(|error| {
        Failure::usage(
            error.to_string(),
            Some("set [image] name to registry/namespace/name"),
        )
    })?;
    let credentials = mab_registry::load_credentials(
        &environment.docker_config_dir().join("config.json"),
        &registry,
    )
    .map_err(|error| {
        Failure::runtime(
            error.to_string(),
            Some("check ~/.docker/config.json and its credential helper"),
        )
    })?;
    let repository = if args.no_push {
        None
    } else {
        Some(
            Repository::new(&project.image, credentials.as_ref())
                .map_err(|error| Failure::usage(error.to_string(), None))?,
        )
    };

    if let Some(repository) = &repository {
        check_push(repository, &registry).await?;
    }

    let runners = prepare::runners_for(&loaded.runners, &project.platforms);
    let connected = prepare::connect_all(&runners, environment).await;
    let plan = prepare::plan(
        &project.platforms,
        loaded.emulation,
        &loaded.runners,
        &runners,
        &connected,
    )
    .map_err(|error| prepare::plan_failure(error, &connected))?;
    for job in &plan.jobs {
        reporter.report(Event::Note {
            message: format!("{} -> {}: {}", job.platform, job.runner, job.reason),
        });
    }
    reporter.report(Event::Note {
        message: format!(
            "building {} for {} platform(s) from {} file(s) in {}",
            project.image,
            plan.jobs.len(),
            listing.files,
            project.context.display()
        ),
    });

    let jobs: Vec<JobSpec> = plan
        .jobs
        .iter()
        .map(|job| JobSpec {
            platform: job.platform.clone(),
            runner: job.runner.clone(),
            emulated: job.emulated,
        })
        .collect();
    let slots: HashMap<String, u32> = runners
        .iter()
        .map(|runner| (runner.name.clone(), runner.jobs))
        .collect();
    let build_id = build_id();
    let worker = LiveWorker {
        project: &project,
        context: &context,
        build_id: build_id.clone(),
        runners: runners
            .iter()
            .map(|runner| (runner.name.clone(), *runner))
            .collect(),
        connected: &connected,
        repository: repository.as_ref(),
        credentials,
        network,
        registry_config: environment.docker_config_dir().join("config.json"),
        reporter,
    };
    let planned = Planned {
        image: &project.image,
        jobs: &jobs,
        slots: &slots,
        build_id: &build_id,
        tags: &tags,
    };
    run_and_publish(
        &planned,
        &worker,
        repository.as_ref(),
        &metadata,
        publishing,
        reporter,
    )
    .await
}

/// A planned build, as [`run_and_publish`] takes it.
struct Planned<'a> {
    /// `[image] name` (`registry/namespace/name`).
    image: &'a str,
    /// One per platform, in the order of `mab.toml`.
    jobs: &'a [JobSpec],
    /// How many jobs each runner (by name) runs at once.
    slots: &'a HashMap<String, u32>,
    /// Names this build's staging tags ([`worker::staging_tag`]).
    build_id: &'a str,
    /// The tags to publish the list under.
    tags: &'a [String],
}

/// The decisions after planning: runs every job through `worker`; when any
/// platform failed, removes the staging tags of those that were pushed,
/// discards the metadata file and fails (exit 1) naming each platform and
/// runner with its log tail, publishing nothing. With `repository` `None`
/// (`--no-push`) writes the metadata with no digests and returns nothing
/// for stdout. Otherwise publishes the list of the children in job order
/// under `planned.tags` (with `publishing` set, so that an interrupt waits
/// for it; a failure is exit 1 naming the registry, the staging tags then
/// stay), removes the staging tags, writes the metadata and returns
/// `image@digest` and a newline for stdout.
async fn run_and_publish<W: Worker, R: Registry>(
    planned: &Planned<'_>,
    worker: &W,
    repository: Option<&R>,
    metadata: &MetadataFile,
    publishing: &Publishing,
    reporter: &dyn Reporter,
) -> Result<String, Failure> {
    let results = run_all(worker, planned.jobs, planned.slots).await;
    let built = match all_or_failures(results) {
        Ok(built) => built,
        Err(failures) => {
            if let Some(repository) = repository {
                // Every platform that got as far as pushing left a staging tag.
                let staged: Vec<String> = pushed_jobs(planned.jobs, &failures)
                    .into_iter()
                    .map(|job| staging_tag(planned.build_id, &job.platform))
                    .collect();
                remove_staging_tags(repository, &staged, &[], reporter).await;
            }
            metadata.discard();
            return Err(failure_report(&failures));
        }
    };

    let Some(repository) = repository else {
        reporter.report(Event::Note {
            message: format!(
                "built and verified {} platform(s); nothing was pushed (--no-push)",
                built.len()
            ),
        });
        metadata.write(planned.image, None, planned.tags, &built)?;
        return Ok(String::new());
    };
    let children: Vec<Child> = built
        .iter()
        .filter_map(|built| built.child.clone())
        .collect();
    let (media_type, bytes) = mab_registry::manifest_list(&children);
    // From here on the registry changes: a Ctrl-C waits for the build to
    // end rather than leave some tags moved and others not.
    let _publishing = publishing.start();
    let digest = repository.publish(media_type, &bytes, planned.tags).await.map_err(|error| {
        metadata.discard();
        Failure::runtime(
            error.to_string(),
            Some("check that the registry accepts pushes of manifest lists, then run `mab build` again"),
        )
    })?;
    reporter.report(Event::Note {
        message: format!(
            "published {}@{digest} as {}",
            planned.image,
            planned.tags.join(", ")
        ),
    });
    let staged: Vec<String> = built
        .iter()
        .map(|built| staging_tag(planned.build_id, &built.job.platform))
        .collect();
    remove_staging_tags(repository, &staged, &children, reporter).await;
    metadata.write(
        planned.image,
        Some((&digest, media_type)),
        planned.tags,
        &built,
    )?;
    Ok(format!("{}@{digest}\n", planned.image))
}

/// The report for failed platforms: each with its runner and log tail.
fn failure_report(failures: &[JobFailure]) -> Failure {
    let mut details = Vec::new();
    for failure in failures {
        details.push(format!(
            "{} on {}: {}",
            failure.job.platform, failure.job.runner, failure.message
        ));
        details.extend(failure.log_tail.iter().map(|line| format!("    {line}")));
    }
    let mut hints: Vec<&str> = Vec::new();
    for failure in failures {
        if !hints.contains(&failure.hint.as_str()) {
            hints.push(&failure.hint);
        }
    }
    let names: Vec<String> = failures
        .iter()
        .map(|failure| format!("{} (runner {})", failure.job.platform, failure.job.runner))
        .collect();
    Failure::runtime_with_details(
        format!(
            "build failed for {}; nothing was published",
            names.join(", ")
        ),
        Some(&hints.join("\nhint: ")),
        &details,
    )
}

