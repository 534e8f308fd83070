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
use crate::ops::jobs::{
    all_or_failures, pushed_jobs, run_all, JobFailure, JobSpec, Limits, Worker,
};
use crate::ops::prepare;
use crate::ops::publishing::Publishing;
use crate::progress::{Event, Reporter};

use metadata::MetadataFile;
use overrides::{apply_overrides, time_limit};
use publish::{check_push, remove_staging_tags, Registry};
use tags::{check_not_narrowing, release_tags};
use worker::{build_id, staging_tag, LiveWorker};

/// Runs the build; returns what goes to stdout.
/// `publishing` is set while the list and its tags are pushed, for the
/// interrupt handler.
pub async fn build(
    args: &BuildArgs,
    environment: &Environment,
    shared: &std::sync::Arc<dyn Reporter>,
    publishing: &Publishing,
) -> Result<String, Failure> {
    let reporter = shared.as_ref();
    let started = tokio::time::Instant::now();
    let loaded = prepare::load(&args.project, environment, reporter)?;
    let mut project = loaded.project;
    apply_overrides(&mut project, args, environment)?;
    let deadline = match &args.deadline {
        Some(deadline) => {
            let limit = time_limit("--deadline", deadline)?;
            Some((started + limit, limit))
        }
        None => None,
    };
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
        before_deadline(
            deadline,
            "checking push rights",
            check_push(repository, &registry),
        )
        .await??;
    }

    let runners = prepare::runners_for(&loaded.runners, &project.platforms);
    let connected = before_deadline(
        deadline,
        "connecting to the runners",
        prepare::connect_all(&runners, environment, shared),
    )
    .await?;
    let plan = prepare::plan(
        &project.platforms,
        loaded.emulation,
        &loaded.runners,
        &runners,
        &connected,
    )
    .map_err(|error| prepare::plan_failure(error, &connected))?;
    reporter.report(Event::Plan {
        image: project.image.clone(),
        context_files: listing.files,
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
        registry: &registry,
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
        pushes_started: std::sync::Mutex::new(Vec::new()),
    };
    let planned = Planned {
        image: &project.image,
        jobs: &jobs,
        slots: &slots,
        build_id: &build_id,
        tags: &tags,
        limits: Limits {
            timeout: project.timeout,
            deadline,
        },
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

/// `future`'s output, or a runtime failure when `deadline` (`--deadline`:
/// when, and the limit as given) comes first, saying that it came while
/// `doing` and that nothing was built.
async fn before_deadline<T>(
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
    doing: &str,
    future: impl std::future::Future<Output = T>,
) -> Result<T, Failure> {
    let Some((at, limit)) = deadline else {
        return Ok(future.await);
    };
    tokio::time::timeout_at(at, future).await.map_err(|_| {
        Failure::runtime(
            format!(
                "the build's deadline (--deadline {}) came while {doing}; nothing was built",
                humantime::format_duration(limit)
            ),
            Some(
                "pass a later --deadline, or check why the runners and the registry answer slowly",
            ),
        )
    })
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
    /// The jobs' time limits.
    limits: Limits,
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
    let results = run_all(worker, planned.jobs, planned.slots, planned.limits).await;
    let built = match all_or_failures(results) {
        Ok(built) => built,
        Err(failures) => {
            if let Some(repository) = repository {
                // Every platform that got as far as pushing left a staging
                // tag, also one stopped by a time limit during its push.
                let staged: Vec<String> = pushed_jobs(planned.jobs, &failures, worker)
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
    reporter.report(Event::Published {
        image: planned.image.to_owned(),
        digest: digest.clone(),
        tags: planned.tags.to_vec(),
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use mab_registry::{ConfigPlatform, RegistryError, DOCKER_MANIFEST};
    use serde_json::json;

    use super::*;
    use crate::failure::FailureKind;
    use crate::ops::jobs::Built;

    const REGISTRY: &str = "127.0.0.1:5000";
    const IMAGE: &str = "127.0.0.1:5000/app";

    /// How the fake worker ends a platform's job.
    #[derive(Clone, Copy)]
    enum Outcome {
        Built,
        /// The Dockerfile's steps fail: nothing was pushed.
        FailsBeforePush,
        /// Pushed under its staging tag, then the image is not the platform's.
        FailsAfterPush,
    }

    /// Ends each platform's job as its table row says; pushes unless `--no-push`.
    struct FakeWorker {
        outcomes: Vec<(&'static str, Outcome)>,
        pushes: bool,
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
        }
    }

    impl Worker for FakeWorker {
        async fn run(&self, job: &JobSpec) -> Result<Built, JobFailure> {
            let platform = job.platform.to_string();
            let (_, outcome) = self
                .outcomes
                .iter()
                .find(|(name, _)| *name == platform)
                .expect("every job has a row");
            let failure = |pushed: bool, message: &str, hint: &str| JobFailure {
                job: job.clone(),
                kind: if pushed {
                    mab_events::ErrorKind::Runner
                } else {
                    mab_events::ErrorKind::Build
                },
                message: message.to_owned(),
                log_tail: vec![format!("#5 RUN false ({platform})")],
                hint: hint.to_owned(),
                pushed,
            };
            match outcome {
                Outcome::Built => Ok(Built {
                    job: job.clone(),
                    child: self.pushes.then(|| child(&platform)),
                    seconds: 2.5,
                }),
                Outcome::FailsBeforePush => Err(failure(
                    false,
                    "RUN false: exit code 1",
                    "fix the Dockerfile",
                )),
                Outcome::FailsAfterPush => Err(failure(
                    true,
                    "the image is not for the platform",
                    "check the runner's engine",
                )),
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
        /// The manifest went along with its tag.
        loses_manifests: bool,
    }

    /// Records every call, naming the tags and digests involved.
    struct FakeRegistry {
        answers: Answers,
        /// To record whether a publish ran with the publishing state set.
        publishing: Publishing,
        calls: Mutex<Vec<String>>,
    }

    impl FakeRegistry {
        fn new(answers: Answers, publishing: &Publishing) -> FakeRegistry {
            FakeRegistry {
                answers,
                publishing: publishing.clone(),
                calls: Mutex::new(Vec::new()),
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
            }
        }

        async fn describe(&self, digest: &str) -> Result<Child, RegistryError> {
            self.record(format!("describe {digest}"));
            Err(self.refused("reading"))
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
            let state = match self.publishing.in_progress() {
                true => "while publishing",
                false => "NOT marked as publishing",
            };
            self.record(format!(
                "publish {} as {} {state}",
                children.join(", "),
                tags.join(", ")
            ));
            match self.answers.publish_fails {
                true => Err(self.refused("pushing the manifest list as latest")),
                false => Ok("sha256:list".to_owned()),
            }
        }

        async fn manifest(&self, tag_or_digest: &str) -> Result<(Vec<u8>, String), RegistryError> {
            self.record(format!("read {tag_or_digest}"));
            match self.answers.loses_manifests {
                true => Err(self.refused(&format!("reading {tag_or_digest}"))),
                false => Ok((Vec::new(), tag_or_digest.to_owned())),
            }
        }

        async fn delete_tag(&self, tag: &str) -> Result<bool, RegistryError> {
            self.record(format!("delete {tag}"));
            match self.answers.delete_fails {
                true => Err(self.refused(&format!("deleting tag {tag}"))),
                false => Ok(self.answers.deletes_tags),
            }
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
        /// The notes and warnings, prefixed `note: ` or `warning: `.
        fn said(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|event| match event {
                    Event::Published {
                        image,
                        digest,
                        tags,
                    } => Some(format!(
                        "note: published {image}@{digest} as {}",
                        tags.join(", ")
                    )),
                    Event::StagingTagsLeft { image, tags } => Some(format!(
                        "note: {image} does not delete tags; staging tag(s) {} remain",
                        tags.join(", ")
                    )),
                    Event::Warning { message } => Some(format!("warning: {message}")),
                    _ => None,
                })
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
        outcomes: Vec<(&'static str, Outcome)>,
        /// `false`: `--no-push`, no registry at all.
        push: bool,
        answers: Answers,
        /// The registry calls, in order.
        calls: Vec<&'static str>,
        /// stdout, or the failure's kind and phrases its report holds once each.
        result: Result<&'static str, (FailureKind, Vec<&'static str>)>,
        /// The metadata file's JSON; `None` when no file is left.
        metadata: Option<serde_json::Value>,
        /// Phrases of notes and warnings.
        said: Vec<&'static str>,
    }

    fn platform_metadata(platform: &str, pushed: bool) -> serde_json::Value {
        json!({
            "platform": platform,
            "runner": runner_of(platform),
            "digest": pushed.then(|| child(platform).digest),
            "emulated": false,
            "seconds": 2.5,
        })
    }

    fn published_metadata(platforms: &[&str]) -> serde_json::Value {
        json!({
            "image": IMAGE,
            "digest": "sha256:list",
            "media_type": mab_registry::DOCKER_MANIFEST_LIST,
            "tags": ["1.0", "latest"],
            "platforms": platforms.iter().map(|platform| platform_metadata(platform, true)).collect::<Vec<_>>(),
        })
    }

    fn cases() -> Vec<Case> {
        use Outcome::*;
        let both_built = vec![("linux/amd64", Built), ("linux/arm64", Built)];
        let deleting = Answers {
            deletes_tags: true,
            ..Answers::default()
        };
        let published =
            "publish sha256:linux-amd64, sha256:linux-arm64 as 1.0, latest while publishing";
        let deleted_then_read = vec![
            published,
            "delete mab-b1-linux-amd64",
            "delete mab-b1-linux-arm64",
            "read sha256:linux-amd64",
            "read sha256:linux-arm64",
        ];
        let stdout = "127.0.0.1:5000/app@sha256:list\n";
        let both_published = || Some(published_metadata(&["linux/amd64", "linux/arm64"]));
        vec![
            Case {
                name: "every platform built: the list goes up under the tags, the staging tags go",
                outcomes: both_built.clone(),
                push: true,
                answers: deleting,
                calls: deleted_then_read.clone(),
                result: Ok(stdout),
                metadata: both_published(),
                said: vec!["note: published 127.0.0.1:5000/app@sha256:list as 1.0, latest"],
            },
            Case {
                name: "a registry that does not delete tags: the staging tags are said to remain",
                outcomes: both_built.clone(),
                push: true,
                answers: Answers::default(),
                calls: deleted_then_read[..3].to_vec(),
                result: Ok(stdout),
                metadata: both_published(),
                said: vec!["note: 127.0.0.1:5000/app does not delete tags; staging tag(s) mab-b1-linux-amd64, mab-b1-linux-arm64 remain"],
            },
            Case {
                name: "a tag deletion that fails is a warning and the tag remains; the build still succeeds",
                outcomes: both_built.clone(),
                push: true,
                answers: Answers {
                    delete_fails: true,
                    ..Answers::default()
                },
                calls: deleted_then_read[..3].to_vec(),
                result: Ok(stdout),
                metadata: both_published(),
                said: vec![
                    "warning: deleting tag mab-b1-linux-amd64 in 127.0.0.1:5000/app failed at 127.0.0.1:5000",
                    "staging tag(s) mab-b1-linux-amd64, mab-b1-linux-arm64 remain",
                ],
            },
            Case {
                name: "a registry that deletes the manifest with its tag: the broken list is reported",
                outcomes: both_built.clone(),
                push: true,
                answers: Answers {
                    loses_manifests: true,
                    ..deleting
                },
                calls: deleted_then_read.clone(),
                result: Ok(stdout),
                metadata: both_published(),
                said: vec![
                    "warning: after deleting the staging tags, 127.0.0.1:5000/app no longer serves sha256:linux-arm64 (linux/arm64 ",
                    "the published list is broken",
                ],
            },
            Case {
                name: "a platform fails before its push: nothing is published, only the others' staging tags go",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", FailsBeforePush)],
                push: true,
                answers: deleting,
                calls: vec!["delete mab-b1-linux-amd64"],
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi); nothing was published",
                        "linux/arm64 on pi: RUN false: exit code 1",
                        "    #5 RUN false (linux/arm64)",
                        "hint: fix the Dockerfile",
                    ],
                )),
                metadata: None,
                said: vec![],
            },
            Case {
                name: "a platform fails after its push: its staging tag goes too",
                outcomes: vec![("linux/amd64", Built), ("linux/arm64", FailsAfterPush)],
                push: true,
                answers: deleting,
                calls: vec!["delete mab-b1-linux-amd64", "delete mab-b1-linux-arm64"],
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi); nothing was published",
                        "hint: check the runner's engine",
                    ],
                )),
                metadata: None,
                said: vec![],
            },
            Case {
                name: "one platform fails before and one after its push: the pushed ones lose their staging tags, both are named",
                outcomes: vec![
                    ("linux/amd64", Built),
                    ("linux/arm64", FailsAfterPush),
                    ("linux/s390x", FailsBeforePush),
                ],
                push: true,
                answers: Answers::default(),
                calls: vec!["delete mab-b1-linux-amd64", "delete mab-b1-linux-arm64"],
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/arm64 (runner pi), linux/s390x (runner mainframe); nothing was published",
                        "hint: check the runner's engine\nhint: fix the Dockerfile",
                    ],
                )),
                metadata: None,
                said: vec!["staging tag(s) mab-b1-linux-amd64, mab-b1-linux-arm64 remain"],
            },
            Case {
                name: "every platform fails before pushing: the registry is not touched, the hint is given once",
                outcomes: vec![("linux/amd64", FailsBeforePush), ("linux/arm64", FailsBeforePush)],
                push: true,
                answers: deleting,
                calls: vec![],
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "build failed for linux/amd64 (runner local), linux/arm64 (runner pi); nothing was published",
                        "    #5 RUN false (linux/amd64)",
                        "    #5 RUN false (linux/arm64)",
                        "hint: fix the Dockerfile",
                    ],
                )),
                metadata: None,
                said: vec![],
            },
            Case {
                name: "the publish fails: a runtime failure naming the registry; the staging tags stay",
                outcomes: both_built.clone(),
                push: true,
                answers: Answers {
                    publish_fails: true,
                    ..deleting
                },
                calls: vec![published],
                result: Err((
                    FailureKind::Runtime,
                    vec![
                        "pushing the manifest list as latest in 127.0.0.1:5000/app failed at 127.0.0.1:5000",
                        "hint: check that the registry accepts pushes of manifest lists",
                    ],
                )),
                metadata: None,
                said: vec![],
            },
            Case {
                name: "--no-push: no registry, nothing on stdout, metadata without digests",
                outcomes: both_built.clone(),
                push: false,
                answers: Answers::default(),
                calls: vec![],
                result: Ok(""),
                metadata: Some(json!({
                    "image": IMAGE,
                    "digest": null,
                    "media_type": null,
                    "tags": ["1.0", "latest"],
                    "platforms": [
                        platform_metadata("linux/amd64", false),
                        platform_metadata("linux/arm64", false),
                    ],
                })),
                said: vec![],
            },
            Case {
                name: "--no-push and a failed platform: a runtime failure, no metadata file",
                outcomes: vec![("linux/amd64", FailsBeforePush), ("linux/arm64", Built)],
                push: false,
                answers: Answers::default(),
                calls: vec![],
                result: Err((
                    FailureKind::Runtime,
                    vec!["build failed for linux/amd64 (runner local); nothing was published"],
                )),
                metadata: None,
                said: vec![],
            },
            Case {
                name: "the list holds the children in the order of the jobs",
                outcomes: vec![
                    ("linux/s390x", Built),
                    ("linux/amd64", Built),
                    ("linux/arm64", Built),
                ],
                push: true,
                answers: Answers::default(),
                calls: vec![
                    "publish sha256:linux-s390x, sha256:linux-amd64, sha256:linux-arm64 as 1.0, latest while publishing",
                    "delete mab-b1-linux-s390x",
                    "delete mab-b1-linux-amd64",
                    "delete mab-b1-linux-arm64",
                ],
                result: Ok("127.0.0.1:5000/app@sha256:list\n"),
                metadata: Some(published_metadata(&["linux/s390x", "linux/amd64", "linux/arm64"])),
                said: vec![],
            },
        ]
    }

    #[tokio::test]
    async fn the_orchestration_decides_what_is_published_removed_and_reported() {
        for case in cases() {
            let name = case.name;
            let jobs: Vec<JobSpec> = case
                .outcomes
                .iter()
                .map(|(platform, _)| JobSpec {
                    platform: platform.parse().unwrap(),
                    runner: runner_of(platform).to_owned(),
                    emulated: false,
                })
                .collect();
            let slots: HashMap<String, u32> =
                jobs.iter().map(|job| (job.runner.clone(), 1)).collect();
            let tags = ["1.0".to_owned(), "latest".to_owned()];
            let planned = Planned {
                image: IMAGE,
                jobs: &jobs,
                slots: &slots,
                build_id: "b1",
                tags: &tags,
                limits: Limits::default(),
            };
            let worker = FakeWorker {
                outcomes: case.outcomes.clone(),
                pushes: case.push,
            };
            let publishing = Publishing::default();
            let registry = FakeRegistry::new(case.answers, &publishing);
            let directory = tempfile::tempdir().unwrap();
            let path = directory.path().join("metadata.json");
            // As `MetadataFile::create` leaves it: created, empty.
            std::fs::write(&path, "").unwrap();
            let metadata = MetadataFile {
                path: Some(path.clone()),
            };
            let reporter = Recorded::default();

            let result = run_and_publish(
                &planned,
                &worker,
                case.push.then_some(&registry),
                &metadata,
                &publishing,
                &reporter,
            )
            .await;

            assert_eq!(*registry.calls.lock().unwrap(), case.calls, "{name}");
            assert!(!publishing.in_progress(), "{name}: publishing ends");
            match (&result, &case.result) {
                (Ok(stdout), Ok(expected)) => assert_eq!(stdout, expected, "{name}"),
                (Err(failure), Err((kind, phrases))) => {
                    assert_eq!(failure.kind, *kind, "{name}");
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
            match &case.metadata {
                Some(expected) => {
                    let written: serde_json::Value =
                        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                    assert_eq!(&written, expected, "{name}");
                }
                None => assert!(!path.exists(), "{name}: the metadata file is removed"),
            }
            let said = reporter.said();
            for phrase in &case.said {
                assert!(
                    said.iter().any(|line| line.contains(phrase)),
                    "{name}: {phrase:?} not in {said:#?}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_connecting_and_planning() {
        let limit = std::time::Duration::from_secs(7200);
        let deadline = Some((tokio::time::Instant::now() + limit, limit));
        let slow = tokio::time::sleep(limit * 2);
        let failure = before_deadline(deadline, "connecting to the runners", slow)
            .await
            .unwrap_err();
        assert_eq!(failure.kind, FailureKind::Runtime);
        assert!(
            failure.report.contains(
                "the build's deadline (--deadline 2h) came while connecting to the runners; nothing was built"
            ),
            "{}",
            failure.report
        );
        assert!(failure.report.contains("hint: pass a later --deadline"));
        let quick = async { 5 };
        assert_eq!(
            before_deadline(deadline, "planning", quick).await.unwrap(),
            5
        );
        assert_eq!(
            before_deadline(None, "planning", async { 6 })
                .await
                .unwrap(),
            6
        );
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
            let registry = FakeRegistry::new(answers, &Publishing::default());
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
}
