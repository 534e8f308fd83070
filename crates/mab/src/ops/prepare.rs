//! What `mab build` and `mab plan` share: finding and loading the project
//! and runners, connecting to the runners, and planning.

use std::collections::HashMap;
use std::path::PathBuf;

use futures_util::future::join_all;
use mab_config::{Platform, Project, Runner, RunnersFile};
use mab_context::{BuildContext, ContextError, ContextListing};
use mab_plan::{Capabilities, Emulation, Fallback, Plan, RunnerState};

use crate::cli::ProjectArgs;
use crate::environment::Environment;
use crate::failure::{Failure, FailureKind};
use crate::ops::connect::{self, connect, Connected, Hosts, Unreachable, UnreachableKind};
use crate::progress::{Event, Reporter};

/// The project and runners, loaded and checked against each other.
pub struct Loaded {
    pub project: Project,
    pub runners: RunnersFile,
    /// The platforms `mab.toml` lists, before `--platform` replaced them.
    pub manifest_platforms: Vec<Platform>,
    /// Refused by `--native-only` or `emulation = false` under `[image]`.
    pub emulation: Emulation,
}

/// Finds and loads `mab.toml` and the runners file; applies `--platform`.
/// Everything wrong here is a usage error (exit 2).
pub fn load(
    args: &ProjectArgs,
    environment: &Environment,
    reporter: &dyn Reporter,
) -> Result<Loaded, Failure> {
    let start = environment.start_dir(args.directory.as_deref());
    let manifest: PathBuf = match &args.manifest_path {
        Some(path) => start.join(path),
        None => mab_config::find_manifest(&start).ok_or_else(|| {
            Failure::usage(
                format!(
                    "could not find mab.toml in {} or any parent directory",
                    start.display()
                ),
                Some("run `mab init` to write one, or pass --manifest-path FILE or -C DIR"),
            )
        })?,
    };
    let mut project = mab_config::load_project(&manifest)?;
    let manifest_platforms = project.platforms.clone();
    if !args.platforms.is_empty() {
        project.platforms = super::platform_flags(&args.platforms, &mut project.warnings)?;
    }
    let manifest_dir = manifest.parent().map(PathBuf::from);
    let runners_path = mab_config::locate_runners(
        args.runners
            .as_ref()
            .map(|path| start.join(path))
            .as_deref(),
        environment.mab_runners.as_deref(),
        manifest_dir.as_deref(),
        environment.xdg_config_home.as_deref(),
        &environment.home,
    );
    let runners = match runners_path {
        Some(path) => mab_config::load_runners(&path)?,
        None => mab_config::implicit_runners(&project.platforms),
    };
    for warning in project.warnings.iter().chain(&runners.warnings) {
        reporter.report(Event::Warning {
            message: warning.clone(),
        });
    }
    check_served(&project.platforms, &runners)?;
    let emulation = if args.native_only || !project.emulation {
        Emulation::Refused
    } else {
        Emulation::Allowed
    };
    Ok(Loaded {
        project,
        runners,
        manifest_platforms,
        emulation,
    })
}

/// The build's files (context, Dockerfile, ignore file) and the context as
/// the engine will receive it, found before anything is contacted. A
/// problem with `context` or `dockerfile` points at that key of mab.toml.
pub fn build_context(project: &Project) -> Result<(BuildContext, ContextListing), Failure> {
    let located = |error: ContextError| context_failure(project, error);
    let context =
        BuildContext::locate(&project.context, project.dockerfile.as_deref()).map_err(located)?;
    let listing = context.scan().map_err(located)?;
    Ok((context, listing))
}

/// A problem with the build's files, pointing at the key of mab.toml it
/// comes from (`context`, `dockerfile`, `target`) when there is one.
pub(crate) fn context_failure(project: &Project, error: ContextError) -> Failure {
    let hint = error.hint().unwrap_or_default();
    let key = match &error {
        ContextError::ContextMissing { .. } | ContextError::ContextNotDirectory { .. } => {
            Some("context")
        }
        ContextError::DockerfileMissing { .. }
        | ContextError::DockerfileNotFile { .. }
        | ContextError::DockerfileLinkUnresolved { .. }
        | ContextError::DockerfileLinkDangling { .. } => Some("dockerfile"),
        ContextError::TargetMissing { .. } => Some("target"),
        ContextError::InvalidPattern { .. }
        | ContextError::NameNotUtf8 { .. }
        | ContextError::LinkTargetNotUtf8 { .. }
        | ContextError::Read { .. } => None,
    };
    match key {
        Some(key) => project.error_at(key, error.to_string(), &hint).into(),
        None => Failure::usage(error.to_string(), Some(&hint)),
    }
}

/// The stage to build (`--target` when `from_flag`, else `target` of
/// mab.toml) must be one the Dockerfile names: refused before anything is
/// contacted (exit 2), rather than by every engine once the build is sent.
pub fn check_target(
    project: &Project,
    context: &BuildContext,
    from_flag: bool,
) -> Result<(), Failure> {
    let Some(target) = &project.target else {
        return Ok(());
    };
    context.check_target(target).map_err(|error| match error {
        ContextError::TargetMissing { .. } if from_flag => Failure::usage(
            format!("--target {target}: {error}"),
            error.hint().as_deref(),
        ),
        error => context_failure(project, error),
    })
}

/// Every platform must be listed by some runner: found before connecting.
fn check_served(platforms: &[Platform], runners: &RunnersFile) -> Result<(), Failure> {
    let offers: Vec<(String, Vec<Platform>)> = runners
        .runners
        .iter()
        .map(|runner| (runner.name.clone(), runner.platforms.clone()))
        .collect();
    mab_plan::check_served(platforms, &offers).map_err(|error| {
        let file = runners.path.as_ref().map_or_else(
            || "the implicit local runner".to_owned(),
            |path| path.display().to_string(),
        );
        Failure::usage(
            format!("{error} (runners from {file})"),
            Some(&error.hint()),
        )
    })
}

/// The runners that list at least one of the platforms.
pub fn runners_for<'a>(runners: &'a RunnersFile, platforms: &[Platform]) -> Vec<&'a Runner> {
    runners
        .runners
        .iter()
        .filter(|runner| {
            runner
                .platforms
                .iter()
                .any(|platform| platforms.contains(platform))
        })
        .collect()
}

/// The runners [`connect_all`] has not heard back from yet, by name, so
/// that a deadline that comes first can name them.
#[derive(Default)]
pub struct Connecting(std::sync::Mutex<Vec<String>>);

impl Connecting {
    /// The runners still being connected to, in `runners.toml` order.
    pub fn pending(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, names: Vec<String>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = names;
    }

    fn answered(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|pending| pending != name);
    }
}

/// Connects to the runners concurrently, one SSH connection per host
/// ([`Hosts`]), keeping `connecting` up to date with those that have not
/// answered yet; retries go to `reporter`, and so does a warning for each
/// host given more build slots than its connection holds at once
/// ([`connect::warn_crowded`]).
pub async fn connect_all(
    runners: &[&Runner],
    environment: &Environment,
    reporter: &std::sync::Arc<dyn Reporter>,
    connecting: &Connecting,
) -> HashMap<String, Result<Connected, Unreachable>> {
    connecting.set(runners.iter().map(|runner| runner.name.clone()).collect());
    let hosts = Hosts::default();
    let hosts = &hosts;
    let results = join_all(runners.iter().map(|runner| async move {
        let result = connect(runner, environment, reporter, hosts).await;
        connecting.answered(&runner.name);
        result
    }))
    .await;
    connect::warn_crowded(hosts, runners, reporter.as_ref());
    runners
        .iter()
        .map(|runner| runner.name.clone())
        .zip(results)
        .collect()
}

/// The runners' connections started before the build's inputs are read
/// and the registry is asked, so that the handshakes and probes run while
/// the context is digested ([`EarlyConnect::start`]). What the connections
/// report (retries) is held back until [`EarlyConnect::finish`], so that a
/// usage error found meanwhile is the only thing told. Dropping it stops
/// the connecting (a build that fails before its plan).
pub struct EarlyConnect {
    names: Vec<String>,
    connecting: std::sync::Arc<Connecting>,
    held: std::sync::Arc<HeldUntilPlan>,
    task: tokio::task::JoinHandle<HashMap<String, Result<Connected, Unreachable>>>,
}

impl EarlyConnect {
    /// Starts [`connect_all`] on `runners` on a task of its own, its
    /// events held back from `reporter`.
    pub fn start(
        runners: Vec<Runner>,
        environment: &Environment,
        reporter: &std::sync::Arc<dyn Reporter>,
    ) -> EarlyConnect {
        let names = runners.iter().map(|runner| runner.name.clone()).collect();
        let connecting = std::sync::Arc::new(Connecting::default());
        let held = std::sync::Arc::new(HeldUntilPlan {
            held: std::sync::Mutex::new(Some(Vec::new())),
            reporter: reporter.clone(),
        });
        let environment = environment.clone();
        let task = tokio::spawn({
            let connecting = connecting.clone();
            let reporter: std::sync::Arc<dyn Reporter> = held.clone();
            async move {
                let runners: Vec<&Runner> = runners.iter().collect();
                connect_all(&runners, &environment, &reporter, &connecting).await
            }
        });
        EarlyConnect {
            names,
            connecting,
            held,
            task,
        }
    }

    /// Whether these connections are to `runners`, the ones the plan
    /// needs, in the same order.
    pub fn serves(&self, runners: &[&Runner]) -> bool {
        self.names
            .iter()
            .eq(runners.iter().map(|runner| &runner.name))
    }

    /// The runners not yet answered ([`Connecting`]).
    pub fn connecting(&self) -> std::sync::Arc<Connecting> {
        self.connecting.clone()
    }

    /// Tells the events held back, then waits for every runner's answer
    /// (telling further events as they come).
    pub async fn finish(mut self) -> HashMap<String, Result<Connected, Unreachable>> {
        self.held.release();
        match (&mut self.task).await {
            Ok(connected) => connected,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

impl Drop for EarlyConnect {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A reporter that holds events back until [`HeldUntilPlan::release`],
/// then passes them on as they come.
struct HeldUntilPlan {
    held: std::sync::Mutex<Option<Vec<Event>>>,
    reporter: std::sync::Arc<dyn Reporter>,
}

impl HeldUntilPlan {
    fn release(&self) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in held.take().unwrap_or_default() {
            self.reporter.report(event);
        }
    }
}

impl Reporter for HeldUntilPlan {
    fn report(&self, event: Event) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match held.as_mut() {
            Some(events) => events.push(event),
            None => {
                drop(held);
                self.reporter.report(event);
            }
        }
    }
}

/// What a connected runner's engine can build: its own platform and the
/// QEMU handlers its host reported.
pub fn capabilities(connected: &Connected) -> Capabilities {
    Capabilities::detect(
        &connected.info.os,
        &connected.info.architecture,
        &connected.binfmt,
    )
}

/// Why a connected runner cannot take this build at all: its engine is
/// Podman's API service reached otherwise than through a unix socket (no
/// host commands for its context copy), or the build forwards SSH agents
/// (`--ssh`), which Podman's build API has no way to do.
fn refused(connected: &Connected, ssh_agents: bool) -> Option<String> {
    if !connected.engine.can_build() {
        return Some(format!(
            "its engine is Podman's API service at {}, which mab can build on only through a unix socket on the runner's host (it keeps a copy of the context there); name that socket in `engine`",
            connected.engine_address
        ));
    }
    (ssh_agents && connected.info.kind == mab_engine::EngineKind::Podman).then(|| {
        "its engine is Podman's API service, which cannot forward an SSH agent (`--ssh`) to a build".to_owned()
    })
}

/// The plan over what the runners reported, emulating a platform only
/// when `emulation` allows it, and passing over an unreachable preferred
/// runner only when `fallback` allows it. The implicit local runner
/// (no runners file) emulates every platform its engine does not run
/// natively, as PRODUCT.md promises, handlers or not: without one, only a
/// `RUN` step fails, with the engine's own message.
///
/// A runner whose engine lacks what the build needs (`ssh_agents`: the
/// build forwards SSH agents, which Podman's API service cannot) is
/// refused for every platform ([`Capabilities::refused`]), so the plan
/// says so before anything is built.
pub fn plan(
    platforms: &[Platform],
    emulation: Emulation,
    fallback: Fallback,
    runners: &RunnersFile,
    chosen: &[&Runner],
    connected: &HashMap<String, Result<Connected, Unreachable>>,
    ssh_agents: bool,
) -> Result<Plan, mab_plan::PlanError> {
    let implicit = runners.path.is_none();
    let states: Vec<RunnerState> = chosen
        .iter()
        .map(|runner| RunnerState {
            name: runner.name.clone(),
            jobs: runner.jobs,
            platforms: runner.platforms.clone(),
            probe: match &connected[&runner.name] {
                Ok(connected) => Ok(Capabilities {
                    emulates_everything: implicit,
                    refused: refused(connected, ssh_agents),
                    ..capabilities(connected)
                }),
                Err(unreachable) => Err(unreachable.message.clone()),
            },
        })
        .collect();
    mab_plan::plan(platforms, &states, emulation, fallback)
}

/// A plan that cannot be made once runners were asked: a runtime failure
/// when runners are unreachable (exit 1), a configuration error when the
/// runners that list a platform cannot build it or the ssh config for one
/// is wrong (exit 2).
pub fn plan_failure(
    error: mab_plan::PlanError,
    connected: &HashMap<String, Result<Connected, Unreachable>>,
) -> Failure {
    let mut hints: Vec<String> = connected
        .values()
        .filter_map(|result| result.as_ref().err())
        .filter_map(|unreachable| unreachable.hint.clone())
        .collect();
    hints.push(error.hint());
    let misconfigured = connected.values().any(|result| {
        result.as_ref().is_err_and(|unreachable| {
            unreachable.kind == UnreachableKind::Ssh(mab_ssh::ErrorKind::Config)
        })
    });
    let kind = if error.is_unreachable() && !misconfigured {
        FailureKind::Runtime
    } else {
        FailureKind::Usage
    };
    Failure::new(kind, &error.to_string(), hints, &[])
}
