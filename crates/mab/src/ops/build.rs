//! `mab build`: plan, build every platform on its runner, verify, publish.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use mab_config::{NetworkMode, Platform, Project, Runner};
use mab_context::BuildContext;
use mab_engine::{BuildEvent, BuildSpec};
use mab_registry::{Child, Repository};
use serde::Serialize;

use crate::cli::BuildArgs;
use crate::environment::Environment;
use crate::failure::Failure;
use crate::ops::connect::{Connected, Unreachable};
use crate::ops::jobs::{all_or_failures, pushed_jobs, run_all, Built, JobFailure, JobSpec, Worker};
use crate::ops::prepare;
use crate::ops::publishing::Publishing;
use crate::progress::{Event, Reporter};

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
    let worker = LiveWorker {
        project: &project,
        context: &context,
        build_id: build_id(),
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
    let results = run_all(&worker, &jobs, &slots).await;
    let built = match all_or_failures(results) {
        Ok(built) => built,
        Err(failures) => {
            if let Some(repository) = &repository {
                // Every platform that got as far as pushing left a staging tag.
                let staged: Vec<String> = pushed_jobs(&jobs, &failures)
                    .into_iter()
                    .map(|job| worker.staging_tag(&job.platform))
                    .collect();
                remove_staging_tags(repository, &staged, &[], reporter).await;
            }
            metadata.discard();
            return Err(failure_report(&failures));
        }
    };

    let Some(repository) = &repository else {
        reporter.report(Event::Note {
            message: format!(
                "built and verified {} platform(s); nothing was pushed (--no-push)",
                built.len()
            ),
        });
        metadata.write(&project, None, &tags, &built)?;
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
    let digest = repository.publish(media_type, &bytes, &tags).await.map_err(|error| {
        metadata.discard();
        Failure::runtime(
            error.to_string(),
            Some("check that the registry accepts pushes of manifest lists, then run `mab build` again"),
        )
    })?;
    reporter.report(Event::Note {
        message: format!(
            "published {}@{digest} as {}",
            project.image,
            tags.join(", ")
        ),
    });
    let staged: Vec<String> = built
        .iter()
        .map(|built| worker.staging_tag(&built.job.platform))
        .collect();
    remove_staging_tags(repository, &staged, &children, reporter).await;
    metadata.write(&project, Some((&digest, media_type)), &tags, &built)?;
    Ok(format!("{}@{digest}\n", project.image))
}

/// Before any runner is contacted: the registry answers and the
/// credentials allow a push to the repository, so that a long build does
/// not fail at its push (docs/publishing.md). An unreachable registry is a
/// runtime failure (exit 1); credentials that may not push are a
/// configuration error (exit 2), found before anything is built.
async fn check_push(repository: &Repository, registry: &str) -> Result<(), Failure> {
    let hint_unreachable = format!(
        "check that {registry} is up and that this machine reaches it (the runners push there too); nothing was built"
    );
    let hint_denied = format!(
        "log in with `docker login {registry}` as a user that may push to {}; mab reads the credentials from ~/.docker/config.json",
        repository.name()
    );
    repository.check_push().await.map_err(|error| match error {
        mab_registry::RegistryError::PushDenied { .. } => {
            Failure::usage(error.to_string(), Some(&hint_denied))
        }
        mab_registry::RegistryError::Unreachable { .. } => {
            Failure::runtime(error.to_string(), Some(&hint_unreachable))
        }
        error => Failure::runtime(
            error.to_string(),
            Some(&format!(
                "check that {registry} accepts pushes; nothing was built"
            )),
        ),
    })
}

/// `--build-arg`, `--target` and `--tag` over what mab.toml says.
fn apply_overrides(
    project: &mut Project,
    args: &BuildArgs,
    environment: &Environment,
) -> Result<(), Failure> {
    // As in docker's CLI, the last flag for a name wins, even a bare one
    // whose variable is unset; only the values then go over [image.args].
    let mut build_args = std::collections::BTreeMap::new();
    for argument in &args.build_args {
        let (name, value) = build_arg(argument, environment)?;
        build_args.insert(name, value);
    }
    for (name, value) in build_args {
        if let Some(value) = value {
            project.args.insert(name, value);
        }
    }
    if let Some(target) = &args.target {
        project.target = Some(target.clone());
    }
    for tag in &args.tags {
        if !mab_config::project::is_valid_tag(tag) {
            return Err(Failure::usage(
                format!("--tag `{tag}` is not a valid tag"),
                Some("a tag is a bare name such as `1.0` or `edge`: letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`"),
            ));
        }
    }
    Ok(())
}

/// A build of fewer platforms than `mab.toml` lists never publishes under
/// the computed tags (PRODUCT.md): they would replace the release's list
/// with a narrower one. Such a build needs `--tag` or `--no-push`; refused
/// (exit 2) before anything is contacted. `linux/arm64` and
/// `linux/arm64/v8` count as one platform.
fn check_not_narrowing(
    project: &Project,
    manifest_platforms: &[Platform],
    args: &BuildArgs,
) -> Result<(), Failure> {
    if !args.tags.is_empty() || args.no_push {
        return Ok(());
    }
    let missing: Vec<String> = manifest_platforms
        .iter()
        .filter(|platform| !project.platforms.contains(platform))
        .map(Platform::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let building: Vec<String> = project.platforms.iter().map(Platform::to_string).collect();
    Err(Failure::usage(
        format!(
            "--platform {} leaves out {}, which {} lists: a partial build is not published under the computed tags, where it would replace the full release",
            building.join(","),
            missing.join(", "),
            project.manifest_path.display()
        ),
        Some("pass --tag TAG to publish under tags of your own, or --no-push to build without publishing"),
    ))
}

/// One `--build-arg`, read as the docker CLI reads it (docker/cli
/// `opts.ValidateEnv`): `NAME=VALUE` is that value (`NAME=` an empty one);
/// a bare `NAME` takes the value of the variable `NAME` from mab's
/// environment, an empty one included, and has no value (`None`) when the
/// variable is unset, so that `[image.args]` or the Dockerfile's default
/// applies. Errors (exit 2): an empty name, or a variable that is not UTF-8.
fn build_arg(
    argument: &str,
    environment: &Environment,
) -> Result<(String, Option<String>), Failure> {
    let (name, value) = match argument.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (argument, None),
    };
    if name.trim().is_empty() {
        return Err(Failure::usage(
            format!("--build-arg `{argument}` has no name"),
            Some("write it as --build-arg NAME=VALUE, or --build-arg NAME to take the value of the variable NAME"),
        ));
    }
    if value.is_some() {
        return Ok((name.to_owned(), value));
    }
    let Some(value) = environment.variable(name) else {
        return Ok((name.to_owned(), None));
    };
    match value.to_str() {
        Some(value) => Ok((name.to_owned(), Some(value.to_owned()))),
        None => Err(Failure::usage(
            format!("--build-arg `{name}`: the variable {name} in the environment is not UTF-8"),
            Some("give the value on the command line: --build-arg NAME=VALUE"),
        )),
    }
}

/// The tags to publish under (docs/publishing.md), from the CI variables and
/// the repository holding the context; what `listing` sends (with the
/// Dockerfile and the ignore file) decides whether the tree is dirty. A
/// repository that cannot be read stops the build (exit 2, or 1 when a git
/// command failed unexpectedly), unless `--tag` gives the tags or
/// `--no-push` publishes nothing: then it is a warning, and with
/// `--no-push` alone no tags are recorded.
fn release_tags(
    project: &Project,
    context: &BuildContext,
    listing: &mab_context::ContextListing,
    args: &BuildArgs,
    environment: &Environment,
    reporter: &dyn Reporter,
) -> Result<Vec<String>, Failure> {
    // Already read without error by the scan that made `listing`.
    let ignore = context.ignore().unwrap_or_default();
    let sent = crate::git::Sent {
        context: context.dir(),
        paths: context.sent_paths(listing).into_iter().collect(),
        would_send: &|relative| !ignore.is_excluded(&relative.to_string_lossy()),
    };
    let checkout = match crate::git::checkout(&sent) {
        Ok(checkout) => checkout,
        Err(error) if !args.tags.is_empty() => {
            reporter.report(Event::Warning {
                message: format!("{error}; the tags come from --tag, so the build goes on"),
            });
            None
        }
        Err(error) if args.no_push => {
            reporter.report(Event::Warning {
                message: format!(
                    "{error}; nothing is pushed (--no-push), so the build goes on without tags (the metadata file records none)"
                ),
            });
            return Ok(Vec::new());
        }
        Err(error) => {
            let hint = error.hint();
            return Err(match error.is_configuration() {
                true => Failure::usage(error.to_string(), Some(&hint)),
                false => Failure::runtime(error.to_string(), Some(&hint)),
            });
        }
    };
    let pull_request_number = match environment.pull_request_target_number() {
        Ok(number) => number,
        Err(error) => {
            if args.tags.is_empty() {
                reporter.report(Event::Warning {
                    message: format!(
                        "GITHUB_EVENT_NAME is pull_request_target, but {error}; without the pull request's number the only computed tag is the commit's (never `latest` or a release tag)"
                    ),
                });
            }
            None
        }
    };
    let ci = environment.ci_variables(pull_request_number.as_deref());
    let source = mab_registry::tags::source(&ci, checkout.as_ref());
    let tags = mab_registry::tags::compute_tags(source.as_ref(), &project.extra_tags, &args.tags);
    for warning in tags.warnings {
        reporter.report(Event::Warning { message: warning });
    }
    Ok(tags.tags)
}

/// A build id: short, unique enough among concurrent builds of one image.
fn build_id() -> String {
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

/// `linux/arm/v7` -> `linux-arm-v7`
fn platform_slug(platform: &Platform) -> String {
    platform.to_string().replace('/', "-")
}

struct LiveWorker<'a> {
    project: &'a Project,
    /// The context, Dockerfile and ignore file every job sends.
    context: &'a BuildContext,
    build_id: String,
    runners: HashMap<String, &'a Runner>,
    connected: &'a HashMap<String, Result<Connected, Unreachable>>,
    repository: Option<&'a Repository>,
    credentials: Option<mab_registry::Credentials>,
    /// `--network`, over each runner's own `network`.
    network: Option<NetworkMode>,
    /// The Docker `config.json` with the registry credentials.
    registry_config: PathBuf,
    reporter: &'a dyn Reporter,
}

impl LiveWorker<'_> {
    /// The tag each platform's image is pushed under before the list exists.
    fn staging_tag(&self, platform: &Platform) -> String {
        format!("mab-{}-{}", self.build_id, platform_slug(platform))
    }

    async fn build_one(&self, job: &JobSpec) -> Result<Option<Child>, JobFailure> {
        let fail = |stage: Stage, message: String, log_tail: Vec<String>| JobFailure {
            pushed: matches!(stage, Stage::Verify | Stage::ReadBack),
            hint: stage.hint(job, &message, &self.project.image),
            job: job.clone(),
            message,
            log_tail,
        };
        let connected = match &self.connected[&job.runner] {
            Ok(connected) => connected,
            Err(unreachable) => {
                return Err(fail(Stage::Runner, unreachable.message.clone(), Vec::new()))
            }
        };
        let engine = &connected.engine;
        let staging_tag = self.staging_tag(&job.platform);
        let image = format!("{}:{staging_tag}", self.project.image);
        let spec = BuildSpec {
            image: image.clone(),
            platform: job.platform.clone(),
            target: self.project.target.clone(),
            args: self.project.args.clone(),
            network: self
                .network
                .unwrap_or(self.runners[&job.runner].network)
                .as_str()
                .to_owned(),
            registry_config: Some(self.registry_config.clone()),
        };
        let platform = job.platform.to_string();
        engine
            .build(&spec, self.context, |event| {
                let (platform, runner) = (platform.clone(), job.runner.clone());
                self.reporter.report(match event {
                    BuildEvent::Step(step) => Event::Step {
                        platform,
                        runner,
                        step,
                    },
                    BuildEvent::Log(line) => Event::Log {
                        platform,
                        runner,
                        line,
                    },
                })
            })
            .await
            .map_err(|error| match error {
                mab_engine::EngineError::BuildFailed {
                    message, log_tail, ..
                } => fail(Stage::Build, message, log_tail),
                other => fail(Stage::Runner, other.to_string(), Vec::new()),
            })?;

        let child = match self.repository {
            None => {
                let found = engine
                    .image_platform(&image)
                    .await
                    .map_err(|error| fail(Stage::Runner, error.to_string(), Vec::new()))?;
                mab_registry::check_platform(&job.platform, &found)
                    .map_err(|error| fail(Stage::Verify, error.to_string(), Vec::new()))?;
                None
            }
            Some(repository) => {
                let digest = engine
                    .push(&self.project.image, &staging_tag, self.credentials.as_ref())
                    .await
                    .map_err(|error| fail(Stage::Push, error.to_string(), Vec::new()))?;
                self.reporter.report(Event::Pushed {
                    platform: platform.clone(),
                    runner: job.runner.clone(),
                    digest: digest.clone(),
                });
                let child = repository
                    .describe(&digest)
                    .await
                    .map_err(|error| fail(Stage::ReadBack, error.to_string(), Vec::new()))?;
                mab_registry::check_platform(&job.platform, &child.platform)
                    .map_err(|error| fail(Stage::Verify, error.to_string(), Vec::new()))?;
                Some(child)
            }
        };
        Ok(child)
    }

    /// The engine keeps the newest image per platform under a stable name,
    /// `<image>:mab-<platform>`, so that repeated builds do not pile up
    /// staging tags there. Only tidying: a failure is a warning.
    async fn keep_image(&self, job: &JobSpec) {
        let Ok(connected) = &self.connected[&job.runner] else {
            return;
        };
        let image = format!("{}:{}", self.project.image, self.staging_tag(&job.platform));
        let kept_tag = format!("mab-{}", platform_slug(&job.platform));
        match connected
            .engine
            .tag(&image, &self.project.image, &kept_tag)
            .await
        {
            Ok(()) => connected.engine.remove_image(&image).await,
            Err(error) => self.reporter.report(Event::Warning {
                message: format!(
                    "could not keep {image} as {}:{kept_tag}: {error}",
                    self.project.image
                ),
            }),
        }
    }
}

/// Where a platform's job failed, for the hint that goes with it.
#[derive(Clone, Copy)]
enum Stage {
    /// Reaching the runner or its engine.
    Runner,
    /// The Dockerfile's steps.
    Build,
    /// Pushing to the registry or reading the image back.
    Push,
    /// Reading the pushed image back from the registry.
    ReadBack,
    /// The image is not for the platform asked for.
    Verify,
}

impl Stage {
    fn hint(self, job: &JobSpec, message: &str, image: &str) -> String {
        let registry = image.split('/').next().unwrap_or(image);
        match self {
            Stage::Runner => format!(
                "check runner `{}` (its host and engine) and run `mab build` again",
                job.runner
            ),
            Stage::Build => {
                "the indented lines above end the failed build's log; fix the Dockerfile and run `mab build` again"
                    .to_owned()
            }
            Stage::Push if ["auth", "denied", "unauthorized"].iter().any(|word| message.contains(word)) => format!(
                "mab hands the engines the credentials for {registry} from ~/.docker/config.json; log in with `docker login {registry}`"
            ),
            Stage::Push => format!("check that {registry} is reachable from runner `{}` and accepts pushes", job.runner),
            Stage::ReadBack => format!("check that {registry} serves the image runner `{}` pushed", job.runner),
            Stage::Verify => format!(
                "runner `{}` did not produce a {} image: check that its engine honours the platform and that the final stage's FROM is not pinned to another platform",
                job.runner, job.platform
            ),
        }
    }
}

impl Worker for LiveWorker<'_> {
    async fn run(&self, job: &JobSpec) -> Result<Built, JobFailure> {
        let started = Instant::now();
        let (platform, runner) = (job.platform.to_string(), job.runner.clone());
        self.reporter.report(Event::Started {
            platform: platform.clone(),
            runner: runner.clone(),
            emulated: job.emulated,
        });
        match self.build_one(job).await {
            Ok(child) => {
                let seconds = started.elapsed().as_secs_f64();
                self.keep_image(job).await;
                self.reporter.report(Event::Done {
                    platform,
                    runner,
                    seconds,
                });
                Ok(Built {
                    job: job.clone(),
                    child,
                    seconds,
                })
            }
            Err(failure) => {
                self.reporter.report(Event::Failed {
                    platform,
                    runner,
                    message: failure.message.clone(),
                });
                Err(failure)
            }
        }
    }
}

/// Deletes staging tags where the registry allows it; says where they remain.
/// Some registries delete the manifest itself when asked to delete a tag:
/// the published `children` are checked afterwards, loudly.
async fn remove_staging_tags(
    repository: &Repository,
    tags: &[String],
    children: &[Child],
    reporter: &dyn Reporter,
) {
    let mut kept = Vec::new();
    let mut deleted = false;
    for tag in tags {
        match repository.delete_tag(tag).await {
            Ok(true) => deleted = true,
            Ok(false) => kept.push(tag.clone()),
            Err(error) => {
                reporter.report(Event::Warning {
                    message: error.to_string(),
                });
                kept.push(tag.clone());
            }
        }
    }
    if !kept.is_empty() {
        reporter.report(Event::Note {
            message: format!(
                "{} does not delete tags; staging tag(s) {} remain (see docs/publishing.md)",
                repository.name(),
                kept.join(", ")
            ),
        });
    }
    if !deleted {
        return;
    }
    for child in children {
        if let Err(error) = repository.manifest(&child.digest).await {
            reporter.report(Event::Warning {
                message: format!(
                    "after deleting the staging tags, {} no longer serves {} ({}): {error}; \
                     the registry deleted the manifest along with the tag, so the published list is broken",
                    repository.name(),
                    child.digest,
                    child.platform
                ),
            });
        }
    }
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

#[derive(Serialize)]
struct Metadata<'a> {
    image: &'a str,
    digest: Option<&'a str>,
    media_type: Option<&'a str>,
    tags: &'a [String],
    platforms: Vec<PlatformMetadata>,
}

#[derive(Serialize)]
struct PlatformMetadata {
    platform: Platform,
    runner: String,
    digest: Option<String>,
    emulated: bool,
    seconds: f64,
}

/// `--metadata-file`, resolved against `-C` and created before anything
/// is built, so that an unwritable path fails first (exit 2), not after
/// publishing.
struct MetadataFile {
    path: Option<PathBuf>,
}

impl MetadataFile {
    fn create(args: &BuildArgs, environment: &Environment) -> Result<MetadataFile, Failure> {
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

    /// The build failed: no metadata file is left behind.
    fn discard(&self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }

    fn write(
        &self,
        project: &Project,
        list: Option<(&str, &str)>,
        tags: &[String],
        built: &[Built],
    ) -> Result<(), Failure> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let metadata = Metadata {
            image: &project.image,
            digest: list.map(|(digest, _)| digest),
            media_type: list.map(|(_, media_type)| media_type),
            tags,
            platforms: built
                .iter()
                .map(|built| PlatformMetadata {
                    platform: built.job.platform.clone(),
                    runner: built.job.runner.clone(),
                    digest: built.child.as_ref().map(|child| child.digest.clone()),
                    emulated: built.job.emulated,
                    seconds: built.seconds,
                })
                .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_read_as_the_docker_cli_reads_them() {
        let environment = Environment {
            variables: [("SET", "from env"), ("EMPTY", "")].into_iter().collect(),
            ..Environment::default()
        };
        let cases = [
            ("NAME=value", "NAME", Some("value")),
            ("NAME=", "NAME", Some("")),
            ("NAME=a=b", "NAME", Some("a=b")),
            ("SET=given", "SET", Some("given")),
            ("SET", "SET", Some("from env")),
            ("EMPTY", "EMPTY", Some("")),
            ("UNSET", "UNSET", None),
        ];
        for (argument, name, value) in cases {
            assert_eq!(
                build_arg(argument, &environment).unwrap(),
                (name.to_owned(), value.map(str::to_owned)),
                "{argument}"
            );
        }
        for argument in ["=value", " =value", ""] {
            let failure = build_arg(argument, &environment).unwrap_err();
            assert_eq!(
                failure.kind,
                crate::failure::FailureKind::Usage,
                "{argument}"
            );
        }
    }

    #[test]
    fn build_arg_flags_go_over_the_manifest_the_last_one_winning() {
        let environment = Environment {
            variables: [("SET", "from env")].into_iter().collect(),
            ..Environment::default()
        };
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "mab",
            "build",
            "--build-arg",
            "KEPT",
            "--build-arg",
            "SET",
            "--build-arg",
            "DROPPED=x",
            "--build-arg",
            "DROPPED",
            "--build-arg",
            "NEW=1",
        ])
        .unwrap();
        let crate::cli::Command::Build(args) = cli.command else {
            panic!("a build command");
        };
        let mut project = Project {
            manifest_path: PathBuf::from("/project/mab.toml"),
            image: "127.0.0.1:5000/app".to_owned(),
            platforms: Vec::new(),
            context: PathBuf::from("/project"),
            dockerfile: None,
            target: None,
            emulation: true,
            args: [
                ("KEPT", "manifest"),
                ("SET", "manifest"),
                ("DROPPED", "manifest"),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
            extra_tags: Vec::new(),
            warnings: Vec::new(),
        };
        apply_overrides(&mut project, &args, &environment).unwrap();
        let expected: Vec<(&str, &str)> = vec![
            ("DROPPED", "manifest"),
            ("KEPT", "manifest"),
            ("NEW", "1"),
            ("SET", "from env"),
        ];
        let found: Vec<(&str, &str)> = project
            .args
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_partial_build_needs_tags_or_no_push() {
        let platforms = |texts: &[&str]| -> Vec<Platform> {
            texts.iter().map(|text| text.parse().unwrap()).collect()
        };
        // (manifest's platforms, --platform, extra flags, refused)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], bool);
        let cases: &[Case<'_>] = &[
            (&["linux/amd64", "linux/arm64"], &["linux/arm64"], &[], true),
            (
                &["linux/amd64", "linux/arm64"],
                &["linux/arm64"],
                &["--tag", "arm"],
                false,
            ),
            (
                &["linux/amd64", "linux/arm64"],
                &["linux/arm64"],
                &["--no-push"],
                false,
            ),
            (
                &["linux/amd64", "linux/arm64"],
                &["linux/arm64/v8", "linux/amd64"],
                &[],
                false,
            ),
            (
                &["linux/amd64"],
                &["linux/amd64", "linux/ppc64le"],
                &[],
                false,
            ),
            (
                &["linux/amd64", "linux/arm/v7"],
                &["linux/amd64", "linux/arm/v6"],
                &[],
                true,
            ),
        ];
        for (manifest, building, flags, refused) in cases {
            let mut arguments = vec!["mab", "build"];
            arguments.extend_from_slice(flags);
            let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(arguments).unwrap();
            let crate::cli::Command::Build(args) = cli.command else {
                panic!("a build command");
            };
            let project = Project {
                manifest_path: PathBuf::from("/project/mab.toml"),
                image: "127.0.0.1:5000/app".to_owned(),
                platforms: platforms(building),
                context: PathBuf::from("/project"),
                dockerfile: None,
                target: None,
                emulation: true,
                args: Default::default(),
                extra_tags: Vec::new(),
                warnings: Vec::new(),
            };
            let result = check_not_narrowing(&project, &platforms(manifest), &args);
            assert_eq!(
                result.is_err(),
                *refused,
                "{manifest:?} {building:?} {flags:?}"
            );
            if let Err(failure) = result {
                assert_eq!(failure.kind, crate::failure::FailureKind::Usage);
            }
        }
    }
}
