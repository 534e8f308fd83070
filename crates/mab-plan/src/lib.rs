//! mab-plan: which runner builds which platform, and why.
//!
//! Pure: it takes what mab learnt about each runner ([`RunnerState`], filled
//! in by the binary from engine probes, or by hand in tests) and the
//! requested platforms, and returns one [`Job`] per platform. No tokio, no
//! network, no environment.
//!
//! The rules, per platform in the requested order:
//! 1. candidates are the runners that list the platform in runners.toml;
//! 2. a candidate whose probe failed is rejected as unreachable, one whose
//!    engine can neither run the platform natively nor emulate it with a
//!    registered QEMU handler is rejected as unavailable;
//! 3. native beats emulated; among equals the runner with the most free job
//!    slots wins, then the one listed first (so a platform keeps landing on
//!    the same runner and its warm cache);
//! 4. with [`Emulation::Refused`] (`--native-only`, `emulation = false`) a
//!    candidate that would emulate the platform is rejected too, so the
//!    platform is built natively or not at all ([`PlanError::NoNativeRunner`]).
//!
//! 5. a runner that lists the platform but could not be reached, and that
//!    would have been preferred (listed before the chosen runner, or the
//!    chosen runner only emulates the platform), means the platform
//!    *moved*: [`Job::moved_from`] names it and why. With
//!    [`Fallback::Refused`] (`--no-fallback`, `fallback = false`) such a
//!    platform is not planned at all ([`PlanError::PreferredUnreachable`]).
//!
//! Every losing candidate comes back from [`Job::rejected`] as a
//! [`Rejection`] saying why (a typed [`Why`], formatted when shown), and
//! [`Job::fallbacks`] says where a job goes if its runner fails before its
//! build starts. Both are built when asked, from what the plan kept once
//! per platform, so that planning a large fleet formats nothing per runner
//! (`cargo bench -p mab-plan`, `tests/bench/planner`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use mab_config::platform::{Platform, ARCHITECTURES};

/// What mab learnt about a runner before planning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerState {
    pub name: String,
    pub jobs: u32,
    /// The platforms listed for it in runners.toml.
    pub platforms: Vec<Platform>,
    /// What its engine can run, or why it could not be reached.
    pub probe: Result<Capabilities, String>,
}

/// What a runner's engine can build: its own platform, and the QEMU
/// handlers registered on its host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The engine's own platform, from the OS and machine it reports;
    /// `None` when mab does not know its architecture.
    pub own: Option<Platform>,
    /// The names of the usable QEMU handlers under
    /// `/proc/sys/fs/binfmt_misc` (`qemu-arm`).
    pub handlers: Vec<String>,
    /// Every platform the engine does not run natively counts as emulated,
    /// handler or not: the implicit local runner (PRODUCT.md).
    pub emulates_everything: bool,
    /// Why the runner cannot take any job of this build, whatever the
    /// platform: the build needs something its engine does not offer
    /// ("its engine is Podman's API service, which cannot forward an SSH
    /// agent (`--ssh`)"). `None` when it can.
    pub refused: Option<String>,
}

/// How a runner would build a platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Support {
    Native,
    Emulated,
    Unavailable,
}

impl Support {
    pub fn as_str(self) -> &'static str {
        match self {
            Support::Native => "native",
            Support::Emulated => "emulated",
            Support::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for Support {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Capabilities {
    /// From the engine's reported OS and architecture (`uname -m` style such
    /// as `aarch64`, or GOARCH style such as `arm64`) and the entry names
    /// under `/proc/sys/fs/binfmt_misc` (`qemu-aarch64`, or full paths).
    pub fn detect(os: &str, engine_arch: &str, binfmt_entries: &[String]) -> Capabilities {
        Capabilities {
            own: Platform::from_uname(os, engine_arch),
            handlers: binfmt_entries
                .iter()
                .map(|entry| entry.rsplit('/').next().unwrap_or(entry).trim().to_owned())
                .collect(),
            emulates_everything: false,
            refused: None,
        }
    }

    /// How this engine would build `platform` (PRODUCT.md's rule): native
    /// when its own architecture runs it ([`Platform::runs_natively_on`]),
    /// emulated when the QEMU handler that runs it
    /// ([`Platform::qemu_handler`]) is registered, unavailable otherwise.
    pub fn support(&self, platform: &Platform) -> Support {
        if self
            .own
            .as_ref()
            .is_some_and(|own| platform.runs_natively_on(own))
        {
            Support::Native
        } else if self.emulates_everything || self.handler_registered(platform) {
            Support::Emulated
        } else {
            Support::Unavailable
        }
    }

    fn handler_registered(&self, platform: &Platform) -> bool {
        platform
            .qemu_handler()
            .is_some_and(|handler| self.handlers.iter().any(|name| name == handler))
    }

    /// What the engine can build, for a runner that lists no platforms:
    /// each known architecture's default platform (`linux/arm/v7`) that is
    /// not unavailable, in the table's order.
    pub fn buildable(&self) -> Vec<Platform> {
        let os = self.own.as_ref().map_or("linux", Platform::os);
        ARCHITECTURES
            .iter()
            .map(|architecture| architecture.default_platform(os))
            .filter(|platform| self.support(platform) != Support::Unavailable)
            .collect()
    }

    /// Why the engine cannot build `platform`, naming the handler that
    /// would run it: "its engine is linux/amd64 and no QEMU handler
    /// qemu-mips64el is registered".
    pub fn why_unavailable(&self, platform: &Platform) -> String {
        unavailable(self.own.as_ref(), platform).to_string()
    }
}

/// Why an engine whose own platform is `engine` cannot build `platform`:
/// the words of [`Capabilities::why_unavailable`], written when shown.
fn unavailable<'a>(engine: Option<&'a Platform>, platform: &'a Platform) -> impl fmt::Display + 'a {
    struct Unavailable<'a>(Option<&'a Platform>, &'a Platform);
    impl fmt::Display for Unavailable<'_> {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            let Unavailable(engine, platform) = self;
            match engine {
                Some(own) => write!(formatter, "its engine is {own}")?,
                None => formatter.write_str("its engine's architecture is unknown")?,
            }
            match platform.qemu_handler() {
                Some(handler) => write!(formatter, " and no QEMU handler {handler} is registered"),
                None => write!(formatter, " and QEMU cannot emulate {platform}"),
            }
        }
    }
    Unavailable(engine, platform)
}

/// Whether a platform may be built under QEMU emulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Emulation {
    /// Emulated when no reachable runner builds the platform natively
    /// (PRODUCT.md's default).
    #[default]
    Allowed,
    /// Native only (`mab build --native-only`, `emulation = false` under
    /// `[image]` in mab.toml): a platform no runner builds natively is not
    /// planned at all.
    Refused,
}

/// Whether a platform may leave the runner it would have been built on
/// when that runner cannot be used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fallback {
    /// Another runner that lists the platform builds it (PRODUCT.md's
    /// default).
    #[default]
    Allowed,
    /// `mab build --no-fallback`, `fallback = false` under `[image]`: a
    /// platform whose preferred runner is unreachable fails instead.
    Refused,
}

/// One job per requested platform, in the requested order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub jobs: Vec<Job>,
}

/// Which runner builds a platform, and why.
///
/// The other runners that list the platform are kept once per platform
/// and shared by its jobs; [`Job::rejected`] and [`Job::fallbacks`] build
/// their lists when asked, so a plan of 10,000 platforms over 1,000
/// runners does not format a sentence for every pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub platform: Platform,
    pub runner: String,
    pub emulated: bool,
    /// A sentence: "native linux/arm64 engine".
    pub reason: String,
    /// The unreachable runner that would have built the platform, when the
    /// plan had to pass it over; `None` when the preferred runner builds it.
    pub moved_from: Option<Move>,
    /// The runners that list the platform.
    field: Arc<Field>,
    /// Where the plan's jobs went, shared by every job of the plan: the
    /// jobs planned before this one give each runner's free slots when it
    /// was planned.
    history: Arc<History>,
    /// This job's place in the plan's jobs.
    at: usize,
    /// The chosen runner's place in `field.contenders`.
    chosen: usize,
}

impl Job {
    /// A job of `platform` on `runner` with no other runner listing the
    /// platform (nothing rejected, no fallbacks): a plan made by hand.
    pub fn new(platform: Platform, runner: &str, emulated: bool, reason: &str) -> Job {
        let support = if emulated {
            Support::Emulated
        } else {
            Support::Native
        };
        let field = Field {
            entrants: vec![Entrant {
                runner: runner.to_owned(),
                standing: Standing::Contender(0),
            }],
            contenders: vec![Contender {
                entrant: 0,
                runner: 0,
                jobs: 0,
                support,
            }],
            fallback_order: Vec::new(),
            first_unreachable: None,
            pool: vec![0],
        };
        Job {
            platform,
            runner: runner.to_owned(),
            emulated,
            reason: reason.to_owned(),
            moved_from: None,
            field: Arc::new(field),
            history: Arc::new(History::new(&[0], 1)),
            at: 0,
            chosen: 0,
        }
    }

    /// The other runners that list the platform, and why each lost, in
    /// runners.toml order. Runners that do not list the platform are not
    /// in it (`mab plan` names them on a line of their own).
    ///
    /// Costs a pass over those runners, each one's free slots looked up in
    /// the plan's [`History`] (a binary search), whatever the job's place
    /// in the plan.
    pub fn rejected(&self) -> Vec<Rejection> {
        let free =
            |contender: &Contender| contender.jobs - self.history.before(contender.runner, self.at);
        let chosen = &self.field.contenders[self.chosen];
        let chosen_free = free(chosen);
        let chosen_name = &self.field.entrants[chosen.entrant].runner;
        self.field
            .entrants
            .iter()
            .filter_map(|entrant| {
                let why = match &entrant.standing {
                    Standing::Rejected(why) => why.clone(),
                    Standing::Contender(at) if *at == self.chosen => return None,
                    Standing::Contender(at) => {
                        let loser = &self.field.contenders[*at];
                        let free = free(loser);
                        let chosen = chosen_name.clone();
                        if loser.support == Support::Emulated && !self.emulated {
                            Why::EmulationOnly { chosen }
                        } else if free < chosen_free {
                            Why::FewerSlots {
                                chosen,
                                free: slots(free),
                                chosen_free: slots(chosen_free),
                            }
                        } else {
                            Why::ListedLater { chosen }
                        }
                    }
                };
                Some(Rejection {
                    runner: entrant.runner.clone(),
                    why,
                })
            })
            .collect()
    }

    /// Where the job goes when `runner` fails before its build starts, in
    /// order: the other reachable runners that list the platform and can
    /// build it, native ones first, then (when emulation is allowed)
    /// emulating ones, each group in runners.toml order.
    ///
    /// Costs a pass over the platform's contenders: the order is worked
    /// out once per platform, when it is planned.
    pub fn fallbacks(&self) -> Vec<Candidate> {
        let mut fallbacks = Vec::with_capacity(self.field.fallback_order.len());
        fallbacks.extend(
            self.field
                .fallback_order
                .iter()
                .filter(|at| **at != self.chosen)
                .map(|at| {
                    let contender = &self.field.contenders[*at];
                    Candidate {
                        runner: self.field.entrants[contender.entrant].runner.clone(),
                        emulated: contender.support == Support::Emulated,
                    }
                }),
        );
        fallbacks
    }
}

/// Where a plan's jobs went, indexed by runner: for each runner (its place
/// in the runners handed to [`plan`]) the places of its jobs in the plan's
/// order, ascending, so that the jobs planned on a runner before a given
/// job are counted with a binary search rather than a pass over the plan.
#[derive(Debug, Default, PartialEq, Eq)]
struct History {
    /// Runner `r`'s jobs are `places[starts[r]..starts[r + 1]]`; one more
    /// entry than there are runners.
    starts: Vec<usize>,
    /// The places of every job, grouped by runner.
    places: Vec<usize>,
}

impl History {
    /// From the runner of each job in the plan's order (`runners`: how
    /// many runners the plan was given), by a counting sort.
    fn new(history: &[usize], runners: usize) -> History {
        let mut starts = vec![0; runners + 1];
        for runner in history {
            starts[runner + 1] += 1;
        }
        for runner in 0..runners {
            starts[runner + 1] += starts[runner];
        }
        let mut next = starts.clone();
        let mut places = vec![0; history.len()];
        for (place, runner) in history.iter().enumerate() {
            places[next[*runner]] = place;
            next[*runner] += 1;
        }
        History { starts, places }
    }

    /// How many jobs were planned on `runner` before the job at `at`.
    fn before(&self, runner: usize, at: usize) -> i64 {
        let places = &self.places[self.starts[runner]..self.starts[runner + 1]];
        i64::try_from(places.partition_point(|place| *place < at)).unwrap_or(i64::MAX)
    }
}

/// Free job slots as shown: never below 0.
fn slots(free: i64) -> u32 {
    u32::try_from(free.max(0)).unwrap_or(u32::MAX)
}

/// A runner that lost a platform it would have built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// The runner's name.
    pub runner: String,
    /// Its failure, as the connection or the engine reported it
    /// ("connection refused").
    pub reason: String,
}

/// A runner that can take a platform over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub runner: String,
    /// Whether it builds the platform under QEMU emulation.
    pub emulated: bool,
}

/// A runner that lists a platform but was not chosen for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub runner: String,
    pub why: Why,
}

impl Rejection {
    /// Whether the runner could not be reached (its probe failed), which
    /// makes a plan that fails for want of it a runtime failure.
    pub fn unreachable(&self) -> bool {
        matches!(self.why, Why::Unreachable { .. })
    }
}

/// Why a runner that lists a platform was not chosen for it. `Display`
/// writes the sentence `mab plan` shows after the runner's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its probe failed: "unreachable: connection refused".
    Unreachable {
        /// The failure, as the connection or the engine reported it.
        reason: String,
    },
    /// Its engine can neither run the platform nor emulate it: "lists
    /// linux/arm64 but its engine is linux/amd64 and no QEMU handler
    /// qemu-aarch64 is registered" ([`Capabilities::why_unavailable`]).
    Unavailable {
        platform: Platform,
        /// The engine's own platform; `None` when its architecture is
        /// unknown.
        engine: Option<Platform>,
    },
    /// Emulation is refused ([`Emulation::Refused`]) and it would emulate
    /// the platform: "can only emulate linux/arm64".
    EmulationRefused { platform: Platform },
    /// It would emulate the platform and the chosen runner builds it
    /// natively: "emulation only; arm-01 builds it natively".
    EmulationOnly {
        /// The chosen runner.
        chosen: String,
    },
    /// It builds the platform as the chosen runner does, with fewer free
    /// job slots (its `jobs` less the jobs already planned on it, shown
    /// as 0 when below): "fewer free job slots than arm-01 (0 against 2)".
    FewerSlots {
        chosen: String,
        free: u32,
        chosen_free: u32,
    },
    /// It is as able as the chosen runner, which runners.toml lists
    /// before it: "as able as arm-01, which is listed first".
    ListedLater { chosen: String },
    /// The build needs what its engine does not offer
    /// ([`Capabilities::refused`]): "cannot take this build: its engine
    /// is Podman's API service, which cannot forward an SSH agent
    /// (`--ssh`)".
    Refused { reason: String },
}

impl fmt::Display for Why {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Unreachable { reason } => write!(formatter, "{UNREACHABLE}{reason}"),
            Why::Unavailable { platform, engine } => write!(
                formatter,
                "lists {platform} but {}",
                unavailable(engine.as_ref(), platform)
            ),
            Why::EmulationRefused { platform } => write!(formatter, "can only emulate {platform}"),
            Why::EmulationOnly { chosen } => {
                write!(formatter, "emulation only; {chosen} builds it natively")
            }
            Why::FewerSlots {
                chosen,
                free,
                chosen_free,
            } => write!(
                formatter,
                "fewer free job slots than {chosen} ({free} against {chosen_free})"
            ),
            Why::ListedLater { chosen } => {
                write!(formatter, "as able as {chosen}, which is listed first")
            }
            Why::Refused { reason } => write!(formatter, "cannot take this build: {reason}"),
        }
    }
}

/// Why no plan could be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No runner lists these platforms (each one, in the requested order):
    /// a configuration problem.
    #[error(
        "no runner serves {}{}",
        list_platforms(platforms),
        describe_offers(offers)
    )]
    NoRunner {
        platforms: Vec<Platform>,
        /// Each runner and the platforms it lists.
        offers: Vec<(String, Vec<Platform>)>,
    },
    /// Runners list the platform, but none of them can build it now.
    #[error("no runner can build {platform}: {}", describe_rejections(rejected))]
    NoUsableRunner {
        platform: Platform,
        rejected: Vec<Rejection>,
    },
    /// Emulation is refused ([`Emulation::Refused`]) and no runner that
    /// lists the platform builds it natively now: each would emulate it,
    /// cannot build it, or was unreachable.
    #[error(
        "no {}runner builds {platform} natively, and emulation is off: {}",
        if rejected.iter().any(|rejection| rejection.unreachable()) { "reachable " } else { "" },
        describe_rejections(rejected)
    )]
    NoNativeRunner {
        platform: Platform,
        rejected: Vec<Rejection>,
    },
    /// Fallback is refused ([`Fallback::Refused`]) and the runner each of
    /// these platforms would have been built on is unreachable (each
    /// platform with that runner's [`Move`], in the requested order).
    /// `planned` holds the jobs of the other platforms, as they were
    /// planned (what a build would have run).
    #[error("{}", describe_unreachable(unreachable))]
    PreferredUnreachable {
        unreachable: Vec<(Platform, Move)>,
        planned: Vec<Job>,
    },
}

impl PlanError {
    /// What to do about it, for a `hint:` line.
    pub fn hint(&self) -> String {
        match self {
            PlanError::NoRunner { platforms, .. } => format!(
                "add a runner for {} with `mab runners add`, or leave {} out with `--platform` (a build of fewer platforms than mab.toml lists is published only under `--tag`, or not at all with `--no-push`)",
                list_platforms(platforms),
                if platforms.len() == 1 { "it" } else { "them" }
            ),
            PlanError::NoUsableRunner { rejected, .. } if self.is_unreachable() => {
                let names: Vec<&str> = rejected.iter().map(|r| r.runner.as_str()).collect();
                format!(
                    "check the runners with `mab runners check` ({})",
                    names.join(", ")
                )
            }
            PlanError::NoUsableRunner { platform, rejected }
                if rejected
                    .iter()
                    .any(|rejection| matches!(rejection.why, Why::Refused { .. })) =>
            {
                format!(
                    "build {platform} without what those runners' engines lack (e.g. leave out --ssh), or add a {platform} runner whose engine offers it (a Docker engine) with `mab runners add`"
                )
            }
            PlanError::NoUsableRunner { platform, .. } => match platform.qemu_handler() {
                Some(handler) => format!(
                    "register the QEMU handler {handler} on a runner (qemu-user-static), or add a native {platform} runner with `mab runners add`"
                ),
                None => format!("add a native {platform} runner with `mab runners add`"),
            },
            PlanError::NoNativeRunner { platform, rejected } => {
                let allow = "or allow emulation: leave out --native-only (and `emulation = false` under [image] in mab.toml)";
                let unreachable: Vec<&str> = rejected
                    .iter()
                    .filter(|rejection| rejection.unreachable())
                    .map(|rejection| rejection.runner.as_str())
                    .collect();
                if unreachable.is_empty() {
                    format!("add a native {platform} runner with `mab runners add`, {allow}")
                } else {
                    format!(
                        "check the runners with `mab runners check` ({}), {allow}",
                        unreachable.join(", ")
                    )
                }
            }
            PlanError::PreferredUnreachable { unreachable, .. } => {
                let mut names: Vec<&str> = Vec::new();
                for (_, moved) in unreachable {
                    if !names.contains(&moved.runner.as_str()) {
                        names.push(&moved.runner);
                    }
                }
                fallback_hint(&names)
            }
        }
    }

    /// The platforms the error is about, in the requested order.
    pub fn platforms(&self) -> Vec<Platform> {
        match self {
            PlanError::NoRunner { platforms, .. } => platforms.clone(),
            PlanError::NoUsableRunner { platform, .. }
            | PlanError::NoNativeRunner { platform, .. } => vec![platform.clone()],
            PlanError::PreferredUnreachable { unreachable, .. } => unreachable
                .iter()
                .map(|(platform, _)| platform.clone())
                .collect(),
        }
    }

    /// Whether some runner that could have built the platform was
    /// unreachable: a runtime failure rather than a configuration one.
    /// Under [`Emulation::Refused`] an unreachable runner counts as the
    /// native one (its engine's architecture is not known without a probe).
    pub fn is_unreachable(&self) -> bool {
        match self {
            PlanError::NoRunner { .. } => false,
            PlanError::PreferredUnreachable { .. } => true,
            PlanError::NoUsableRunner { rejected, .. }
            | PlanError::NoNativeRunner { rejected, .. } => {
                rejected.iter().any(|rejection| rejection.unreachable())
            }
        }
    }
}

const UNREACHABLE: &str = "unreachable: ";

/// The hint for a platform that stayed on its failed `runners` because
/// fallback is off: check them, or let another runner build it.
pub fn fallback_hint(runners: &[&str]) -> String {
    let named: Vec<String> = runners.iter().map(|name| format!("`{name}`")).collect();
    format!(
        "check runner {} with `mab runners check`, or let another runner build it: take --no-fallback off the command line, or `fallback = false` out of [image] in mab.toml, whichever is there",
        named.join(", ")
    )
}

fn describe_unreachable(unreachable: &[(Platform, Move)]) -> String {
    let described: Vec<String> = unreachable
        .iter()
        .map(|(platform, moved)| {
            format!(
                "{platform} stays on runner `{}`, which is unreachable ({}), as fallback is off",
                moved.runner, moved.reason
            )
        })
        .collect();
    described.join("; ")
}

fn list_platforms(platforms: &[Platform]) -> String {
    let names: Vec<String> = platforms.iter().map(Platform::to_string).collect();
    names.join(", ")
}

fn describe_offers(offers: &[(String, Vec<Platform>)]) -> String {
    if offers.is_empty() {
        return "; no runners are configured".to_owned();
    }
    let described: Vec<String> = offers
        .iter()
        .map(|(runner, platforms)| {
            let platforms: Vec<String> = platforms.iter().map(Platform::to_string).collect();
            format!("{runner} offers {}", platforms.join(", "))
        })
        .collect();
    format!("; {}", described.join("; "))
}

fn describe_rejections(rejected: &[Rejection]) -> String {
    let described: Vec<String> = rejected
        .iter()
        .map(|rejection| match &rejection.why {
            Why::Unreachable { reason } => {
                format!("{} is unreachable ({reason})", rejection.runner)
            }
            why => format!("{} {why}", rejection.runner),
        })
        .collect();
    described.join("; ")
}

/// The runners that list one platform, worked out once per platform and
/// shared by the jobs of every request for it.
#[derive(Debug, PartialEq, Eq)]
struct Field {
    /// Each runner that lists the platform, in runners.toml order.
    entrants: Vec<Entrant>,
    /// The entrants that can build the platform, in runners.toml order.
    contenders: Vec<Contender>,
    /// Places in `contenders`: native ones, then emulated ones, each group
    /// in runners.toml order (the order of [`Job::fallbacks`]).
    fallback_order: Vec<usize>,
    /// The first entrant (its place in `entrants`) that was unreachable.
    first_unreachable: Option<usize>,
    /// The contenders a job is chosen from, as places in `contenders`:
    /// the native ones, or the emulating ones when none is native, in
    /// runners.toml order.
    pool: Vec<usize>,
}

#[derive(Debug, PartialEq, Eq)]
struct Entrant {
    runner: String,
    standing: Standing,
}

#[derive(Debug, PartialEq, Eq)]
enum Standing {
    /// It cannot take the platform, whatever else is planned.
    Rejected(Why),
    /// It can: its place in [`Field::contenders`].
    Contender(usize),
}

#[derive(Debug, PartialEq, Eq)]
struct Contender {
    /// Its place in [`Field::entrants`].
    entrant: usize,
    /// Its place in the runners handed to [`plan`].
    runner: usize,
    /// Its job slots ([`RunnerState::jobs`]).
    jobs: i64,
    /// Native or emulated.
    support: Support,
}

impl Field {
    fn new(platform: &Platform, runners: &[RunnerState], emulation: Emulation) -> Field {
        let mut entrants = Vec::new();
        let mut contenders = Vec::new();
        let mut first_unreachable = None;
        for (index, runner) in runners.iter().enumerate() {
            if !runner.platforms.contains(platform) {
                continue;
            }
            let rejected = match &runner.probe {
                Err(reason) => {
                    first_unreachable.get_or_insert(entrants.len());
                    Some(Why::Unreachable {
                        reason: reason.clone(),
                    })
                }
                Ok(Capabilities {
                    refused: Some(reason),
                    ..
                }) => Some(Why::Refused {
                    reason: reason.clone(),
                }),
                Ok(capabilities) => match capabilities.support(platform) {
                    Support::Unavailable => Some(Why::Unavailable {
                        platform: platform.clone(),
                        engine: capabilities.own.clone(),
                    }),
                    Support::Emulated if emulation == Emulation::Refused => {
                        Some(Why::EmulationRefused {
                            platform: platform.clone(),
                        })
                    }
                    support => {
                        contenders.push(Contender {
                            entrant: entrants.len(),
                            runner: index,
                            jobs: i64::from(runner.jobs),
                            support,
                        });
                        None
                    }
                },
            };
            entrants.push(Entrant {
                runner: runner.name.clone(),
                standing: match rejected {
                    Some(why) => Standing::Rejected(why),
                    None => Standing::Contender(contenders.len() - 1),
                },
            });
        }
        let mut fallback_order: Vec<usize> = (0..contenders.len()).collect();
        // Stable: each group stays in runners.toml order.
        fallback_order.sort_by_key(|at| contenders[*at].support != Support::Native);
        let native = |at: &usize| contenders[*at].support == Support::Native;
        let pool = if fallback_order.first().is_some_and(native) {
            fallback_order.iter().copied().filter(native).collect()
        } else {
            fallback_order.clone()
        };
        Field {
            entrants,
            contenders,
            fallback_order,
            first_unreachable,
            pool,
        }
    }

    /// The rejections that stand whatever is planned, as a failed plan
    /// reports them when no runner can take the platform.
    fn rejected(&self) -> Vec<Rejection> {
        self.entrants
            .iter()
            .filter_map(|entrant| match &entrant.standing {
                Standing::Rejected(why) => Some(Rejection {
                    runner: entrant.runner.clone(),
                    why: why.clone(),
                }),
                Standing::Contender(_) => None,
            })
            .collect()
    }
}

/// Every platform must be listed by some runner; `offers` are the runners'
/// names and the platforms each lists. Checked before any runner is
/// contacted, and again by [`plan`].
pub fn check_served(
    platforms: &[Platform],
    offers: &[(String, Vec<Platform>)],
) -> Result<(), PlanError> {
    let listed: HashSet<&Platform> = offers.iter().flat_map(|(_, listed)| listed).collect();
    match unserved(platforms, &listed) {
        None => Ok(()),
        Some(unserved) => Err(PlanError::NoRunner {
            platforms: unserved,
            offers: offers.to_vec(),
        }),
    }
}

/// The platforms not in `listed`, in the requested order; `None` when
/// every one is there.
fn unserved(platforms: &[Platform], listed: &HashSet<&Platform>) -> Option<Vec<Platform>> {
    let unserved: Vec<Platform> = platforms
        .iter()
        .filter(|platform| !listed.contains(platform))
        .cloned()
        .collect();
    (!unserved.is_empty()).then_some(unserved)
}

/// Assigns every platform to a runner; see the crate docs for the rules.
///
/// Each distinct platform's runners are worked out once, then each request
/// costs a pass over the runners that list it: 10,000 requests over 1,000
/// runners take milliseconds (`cargo bench -p mab-plan`).
pub fn plan(
    platforms: &[Platform],
    runners: &[RunnerState],
    emulation: Emulation,
    fallback: Fallback,
) -> Result<Plan, PlanError> {
    let listed: HashSet<&Platform> = runners
        .iter()
        .flat_map(|runner| &runner.platforms)
        .collect();
    if let Some(unserved) = unserved(platforms, &listed) {
        return Err(PlanError::NoRunner {
            platforms: unserved,
            offers: runners
                .iter()
                .map(|runner| (runner.name.clone(), runner.platforms.clone()))
                .collect(),
        });
    }
    let mut fields: HashMap<&Platform, Arc<Field>> = HashMap::new();
    // Jobs planned on each runner, by its place in `runners`.
    let mut assigned: Vec<i64> = vec![0; runners.len()];
    let mut jobs = Vec::with_capacity(platforms.len());
    let mut history = Vec::with_capacity(platforms.len());
    let mut stranded = Vec::new();
    // Each job's until the plan is made.
    let unfinished = Arc::new(History::default());
    for platform in platforms {
        let field = Arc::clone(
            fields
                .entry(platform)
                .or_insert_with(|| Arc::new(Field::new(platform, runners, emulation))),
        );
        // Native first (the pool), then the most free slots; among equals
        // the first listed.
        let mut best: Option<(usize, i64)> = None;
        for at in &field.pool {
            let contender = &field.contenders[*at];
            let free = contender.jobs - assigned[contender.runner];
            if best.is_none_or(|(_, most)| free > most) {
                best = Some((*at, free));
            }
        }
        let Some((chosen, _)) = best else {
            let platform = platform.clone();
            let rejected = field.rejected();
            return Err(match emulation {
                Emulation::Allowed => PlanError::NoUsableRunner { platform, rejected },
                Emulation::Refused => PlanError::NoNativeRunner { platform, rejected },
            });
        };
        let winner = &field.contenders[chosen];
        let state = &runners[winner.runner];
        let emulated = winner.support == Support::Emulated;
        let moved_from = passed_over(&field, winner);
        if let (Some(moved), Fallback::Refused) = (&moved_from, fallback) {
            stranded.push((platform.clone(), moved.clone()));
            continue;
        }
        assigned[winner.runner] += 1;
        history.push(winner.runner);
        jobs.push(Job {
            platform: platform.clone(),
            runner: state.name.clone(),
            emulated,
            reason: reason(
                platform,
                winner.support,
                state,
                field.first_unreachable.is_some(),
            ),
            moved_from,
            history: Arc::clone(&unfinished),
            at: history.len() - 1,
            chosen,
            field,
        });
    }
    let history = Arc::new(History::new(&history, runners.len()));
    for job in &mut jobs {
        job.history = Arc::clone(&history);
    }
    if !stranded.is_empty() {
        return Err(PlanError::PreferredUnreachable {
            unreachable: stranded,
            planned: jobs,
        });
    }
    Ok(Plan { jobs })
}

/// The first unreachable runner (in runners.toml order) that would have
/// been preferred to `winner`: listed before it, or any one when `winner`
/// only emulates the platform (an unreachable runner's architecture is
/// unknown, so it may have been native).
fn passed_over(field: &Field, winner: &Contender) -> Option<Move> {
    let first = field.first_unreachable?;
    if first > winner.entrant && winner.support != Support::Emulated {
        return None;
    }
    let runner = &field.entrants[first].runner;
    let Standing::Rejected(Why::Unreachable { reason }) = &field.entrants[first].standing else {
        return None;
    };
    Some(Move {
        runner: runner.clone(),
        reason: reason.clone(),
    })
}

/// The job's reason: "native linux/arm64 engine", or why it is emulated
/// (`any_unreachable`: some runner listing the platform was unreachable).
fn reason(
    platform: &Platform,
    support: Support,
    winner: &RunnerState,
    any_unreachable: bool,
) -> String {
    let capabilities = winner.probe.as_ref().ok();
    let own = capabilities.and_then(|capabilities| capabilities.own.as_ref());
    match support {
        Support::Native => match own {
            Some(own) if own != platform => format!("native {own} engine runs {platform}"),
            _ => format!("native {platform} engine"),
        },
        _ => {
            let why = if any_unreachable {
                "no native runner is reachable"
            } else {
                "no runner builds it natively"
            };
            let registered =
                capabilities.is_some_and(|capabilities| capabilities.handler_registered(platform));
            match platform.qemu_handler() {
                Some(handler) if registered => format!("emulated with QEMU ({handler}); {why}"),
                // The implicit local runner counts every foreign platform as
                // emulated; say when its host cannot run one.
                Some(handler) => format!(
                    "emulated, but no QEMU handler {handler} is registered on this host, so RUN steps will fail; {why}"
                ),
                None => format!(
                    "emulated, but QEMU cannot run {platform}, so RUN steps will fail; {why}"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(text: &str) -> Platform {
        text.parse().unwrap()
    }

    fn platforms(texts: &[&str]) -> Vec<Platform> {
        texts.iter().map(|text| platform(text)).collect()
    }

    fn handlers(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    /// A reachable runner: its engine's `uname -m` and registered handlers.
    fn runner(name: &str, jobs: u32, lists: &[&str], arch: &str, qemu: &[&str]) -> RunnerState {
        RunnerState {
            name: name.to_owned(),
            jobs,
            platforms: platforms(lists),
            probe: Ok(Capabilities::detect("linux", arch, &handlers(qemu))),
        }
    }

    #[test]
    fn a_runner_whose_engine_lacks_what_the_build_needs_is_passed_over() {
        let reason = "its engine is Podman's API service, which cannot forward an SSH agent (`--ssh`) to a build";
        let mut podman = runner("podman", 1, &["linux/arm64"], "x86_64", &["qemu-aarch64"]);
        if let Ok(capabilities) = &mut podman.probe {
            capabilities.refused = Some(reason.to_owned());
        }
        let docker = runner("docker", 1, &["linux/arm64"], "x86_64", &["qemu-aarch64"]);
        let wanted = platforms(&["linux/arm64"]);
        let runners = [podman.clone(), docker];
        let planned = plan(&wanted, &runners, Emulation::Allowed, Fallback::Allowed).unwrap();
        assert_eq!(planned.jobs[0].runner, "docker");
        assert_eq!(
            planned.jobs[0].rejected(),
            [Rejection {
                runner: "podman".to_owned(),
                why: Why::Refused {
                    reason: reason.to_owned()
                },
            }]
        );
        let alone = plan(&wanted, &[podman], Emulation::Allowed, Fallback::Allowed).unwrap_err();
        assert_eq!(
            alone.to_string(),
            format!("no runner can build linux/arm64: podman cannot take this build: {reason}")
        );
        assert!(alone.hint().contains("leave out --ssh"), "{}", alone.hint());
    }

    /// An amd64 runner with `jobs` slots that emulates linux/arm64.
    fn laptop(jobs: u32) -> RunnerState {
        runner(
            "laptop",
            jobs,
            &["linux/amd64", "linux/arm64"],
            "x86_64",
            &["qemu-aarch64"],
        )
    }

    fn unreachable(name: &str, lists: &[&str], why: &str) -> RunnerState {
        RunnerState {
            name: name.to_owned(),
            jobs: 1,
            platforms: platforms(lists),
            probe: Err(why.to_owned()),
        }
    }

    #[test]
    fn detects_capabilities() {
        // (uname -m, binfmt_misc entries, engine's own platform, handlers)
        type Case<'a> = (&'a str, &'a [&'a str], Option<&'a str>, &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            ("x86_64", &[], Some("linux/amd64"), &[]),
            ("amd64", &["qemu-arm"], Some("linux/amd64"), &["qemu-arm"]),
            (
                "aarch64",
                &["/proc/sys/fs/binfmt_misc/qemu-x86_64 "],
                Some("linux/arm64"),
                &["qemu-x86_64"],
            ),
            ("armv7l", &[], Some("linux/arm/v7"), &[]),
            ("sparc64", &["qemu-riscv64"], None, &["qemu-riscv64"]),
        ];
        for (arch, entries, own, registered) in cases {
            let capabilities = Capabilities::detect("linux", arch, &handlers(entries));
            assert_eq!(capabilities.own, own.map(platform), "{arch}");
            assert_eq!(capabilities.handlers, handlers(registered), "{arch}");
            assert!(!capabilities.emulates_everything);
        }
    }

    #[test]
    fn support_levels() {
        // (uname -m, registered handlers, platform, support)
        let cases = [
            (
                "x86_64",
                &["qemu-aarch64"][..],
                "linux/amd64",
                Support::Native,
            ),
            ("x86_64", &[], "linux/amd64/v2", Support::Native),
            ("x86_64", &[], "linux/amd64/v4", Support::Native),
            ("x86_64", &[], "linux/386", Support::Native),
            (
                "x86_64",
                &["qemu-aarch64"],
                "linux/arm64",
                Support::Emulated,
            ),
            (
                "x86_64",
                &["qemu-aarch64"],
                "linux/arm64/v8",
                Support::Emulated,
            ),
            (
                "x86_64",
                &["qemu-aarch64"],
                "linux/arm64/v8.2",
                Support::Emulated,
            ),
            (
                "x86_64",
                &["qemu-aarch64"],
                "linux/ppc64le",
                Support::Unavailable,
            ),
            (
                "x86_64",
                &["qemu-aarch64"],
                "linux/arm/v7",
                Support::Unavailable,
            ),
            (
                "x86_64",
                &["qemu-x86_64"],
                "windows/amd64",
                Support::Unavailable,
            ),
            ("x86_64", &["qemu-arm"], "linux/arm/v5", Support::Emulated),
            ("x86_64", &["qemu-arm"], "linux/arm/v8", Support::Emulated),
            ("aarch64", &[], "linux/arm64/v8.2", Support::Native),
            ("aarch64", &[], "linux/arm64/v9", Support::Native),
            ("aarch64", &[], "linux/arm/v7", Support::Unavailable),
            ("aarch64", &["qemu-arm"], "linux/arm/v7", Support::Emulated),
            (
                "aarch64",
                &["qemu-x86_64"],
                "linux/amd64/v3",
                Support::Emulated,
            ),
            (
                "aarch64",
                &["qemu-x86_64"],
                "linux/386",
                Support::Unavailable,
            ),
            ("armv7l", &[], "linux/arm/v5", Support::Native),
            ("armv7l", &[], "linux/arm/v8", Support::Unavailable),
            (
                "sparc64",
                &["qemu-riscv64"],
                "linux/riscv64",
                Support::Emulated,
            ),
            ("sparc64", &[], "linux/s390x", Support::Unavailable),
        ];
        for (arch, registered, text, expected) in cases {
            let capabilities = Capabilities::detect("linux", arch, &handlers(registered));
            assert_eq!(
                capabilities.support(&platform(text)),
                expected,
                "{text} on {arch} with {registered:?}"
            );
        }
    }

    /// Every architecture and variant mab accepts: emulated on an engine
    /// that does not run it natively exactly when its own handler is
    /// registered, unavailable (naming that handler) otherwise.
    #[test]
    fn every_platform_is_emulated_through_its_handler() {
        let every_handler: Vec<&str> = ARCHITECTURES
            .iter()
            .filter_map(|architecture| architecture.qemu_handler)
            .collect();
        let mut checked = 0;
        for architecture in ARCHITECTURES {
            for wanted in architecture.platforms("linux") {
                // An engine that does not run it natively.
                let engine = if wanted.runs_natively_on(&platform("linux/amd64")) {
                    "aarch64"
                } else {
                    "x86_64"
                };
                let others: Vec<&str> = every_handler
                    .iter()
                    .copied()
                    .filter(|handler| Some(*handler) != architecture.qemu_handler)
                    .collect();
                let lists = [wanted.to_string()];
                let lists: Vec<&str> = lists.iter().map(String::as_str).collect();
                let without = runner("r", 1, &lists, engine, &others);
                let error = plan(
                    std::slice::from_ref(&wanted),
                    &[without],
                    Emulation::Allowed,
                    Fallback::Allowed,
                )
                .unwrap_err();
                match architecture.qemu_handler {
                    Some(handler) => {
                        let mut all = others.clone();
                        all.push(handler);
                        let with = runner("r", 1, &lists, engine, &all);
                        let job = &plan(
                            std::slice::from_ref(&wanted),
                            &[with],
                            Emulation::Allowed,
                            Fallback::Allowed,
                        )
                        .unwrap_or_else(|error| panic!("{wanted}: {error}"))
                        .jobs[0];
                        assert!(job.emulated, "{wanted}");
                        assert_eq!(
                            job.reason,
                            format!("emulated with QEMU ({handler}); no runner builds it natively"),
                            "{wanted}"
                        );
                        assert!(
                            error.to_string().ends_with(&format!(
                                "r lists {wanted} but its engine is {} and no QEMU handler {handler} is registered",
                                platform(&format!("linux/{engine}")),
                            )),
                            "{wanted}: {error}"
                        );
                        assert!(
                            error.hint().starts_with(&format!(
                                "register the QEMU handler {handler} on a runner"
                            )),
                            "{wanted}: {}",
                            error.hint()
                        );
                    }
                    None => {
                        assert!(
                            error
                                .to_string()
                                .ends_with(&format!("and QEMU cannot emulate {wanted}")),
                            "{wanted}: {error}"
                        );
                        assert_eq!(
                            error.hint(),
                            format!("add a native {wanted} runner with `mab runners add`")
                        );
                    }
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 35);
    }

    #[test]
    fn arm_variants_share_one_handler() {
        let capabilities = Capabilities::detect("linux", "x86_64", &handlers(&["qemu-arm"]));
        for text in [
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
        ] {
            assert_eq!(
                capabilities.support(&platform(text)),
                Support::Emulated,
                "{text}"
            );
        }
        let mips =
            Capabilities::detect("linux", "x86_64", &handlers(&["qemu-mips", "qemu-mipsel"]));
        assert_eq!(mips.support(&platform("linux/mips")), Support::Emulated);
        assert_eq!(mips.support(&platform("linux/mipsle")), Support::Emulated);
        assert_eq!(
            mips.support(&platform("linux/mips64le")),
            Support::Unavailable
        );
    }

    #[test]
    fn the_implicit_runner_emulates_every_foreign_platform() {
        let capabilities = Capabilities {
            emulates_everything: true,
            ..Capabilities::detect("linux", "x86_64", &[])
        };
        assert_eq!(
            capabilities.support(&platform("linux/386")),
            Support::Native
        );
        assert_eq!(
            capabilities.support(&platform("linux/mips64le")),
            Support::Emulated
        );
        let state = RunnerState {
            name: "local".to_owned(),
            jobs: 1,
            platforms: vec![platform("linux/mips64le")],
            probe: Ok(capabilities.clone()),
        };
        let job = &plan(
            &[platform("linux/mips64le")],
            &[state],
            Emulation::Allowed,
            Fallback::Allowed,
        )
        .unwrap()
        .jobs[0];
        assert!(job.emulated);
        assert_eq!(
            job.reason,
            "emulated, but no QEMU handler qemu-mips64el is registered on this host, so RUN steps will fail; no runner builds it natively"
        );
    }

    #[test]
    fn buildable_lists_each_architecture_once() {
        let capabilities = Capabilities::detect(
            "linux",
            "x86_64",
            &handlers(&["qemu-arm", "qemu-s390x", "status"]),
        );
        assert_eq!(
            capabilities.buildable(),
            platforms(&["linux/amd64", "linux/386", "linux/arm/v7", "linux/s390x"])
        );
    }

    /// What a job should look like: (runner, emulated, reason, [(rejected runner, why)]).
    type Expected<'a> = (&'a str, bool, &'a str, &'a [(&'a str, &'a str)]);

    #[test]
    fn plans() {
        // (what the case shows, requested platforms, runners, one expected job per platform)
        type Case<'a> = (&'a str, Vec<&'a str>, Vec<RunnerState>, Vec<Expected<'a>>);
        let cases: Vec<Case<'_>> = vec![
            (
                "native preferred over emulation",
                vec!["linux/arm64"],
                vec![
                    runner("laptop", 4, &["linux/amd64", "linux/arm64"], "x86_64", &["qemu-aarch64"]),
                    runner("arm-01", 1, &["linux/arm64"], "aarch64", &[]),
                ],
                vec![(
                    "arm-01",
                    false,
                    "native linux/arm64 engine",
                    &[("laptop", "emulation only; arm-01 builds it natively")],
                )],
            ),
            (
                "emulated fallback when the native runner is down",
                vec!["linux/arm64"],
                vec![
                    unreachable("arm-01", &["linux/arm64"], "connection refused"),
                    runner("laptop", 1, &["linux/amd64", "linux/arm64"], "x86_64", &["qemu-aarch64"]),
                ],
                vec![(
                    "laptop",
                    true,
                    "emulated with QEMU (qemu-aarch64); no native runner is reachable",
                    &[("arm-01", "unreachable: connection refused")],
                )],
            ),
            (
                "emulated when nobody is native",
                vec!["linux/ppc64le"],
                vec![runner("laptop", 1, &["linux/ppc64le"], "x86_64", &["qemu-ppc64le"])],
                vec![(
                    "laptop",
                    true,
                    "emulated with QEMU (qemu-ppc64le); no runner builds it natively",
                    &[],
                )],
            ),
            (
                "unavailable runner is rejected",
                vec!["linux/ppc64le"],
                vec![
                    runner("laptop", 1, &["linux/ppc64le"], "x86_64", &[]),
                    runner("power9", 1, &["linux/ppc64le"], "ppc64le", &[]),
                ],
                vec![(
                    "power9",
                    false,
                    "native linux/ppc64le engine",
                    &[(
                        "laptop",
                        "lists linux/ppc64le but its engine is linux/amd64 and no QEMU handler qemu-ppc64le is registered",
                    )],
                )],
            ),
            (
                "386 runs natively on amd64",
                vec!["linux/386"],
                vec![runner("laptop", 1, &["linux/386"], "x86_64", &[])],
                vec![("laptop", false, "native linux/amd64 engine runs linux/386", &[])],
            ),
            (
                "jobs balance across equal runners",
                vec!["linux/amd64", "linux/386", "linux/arm64"],
                vec![
                    runner("x86-a", 1, &["linux/amd64", "linux/386", "linux/arm64"], "x86_64", &["qemu-aarch64"]),
                    runner("x86-b", 2, &["linux/amd64", "linux/386", "linux/arm64"], "x86_64", &["qemu-aarch64"]),
                ],
                vec![
                    (
                        "x86-b",
                        false,
                        "native linux/amd64 engine",
                        &[("x86-a", "fewer free job slots than x86-b (1 against 2)")],
                    ),
                    (
                        "x86-a",
                        false,
                        "native linux/amd64 engine runs linux/386",
                        &[("x86-b", "as able as x86-a, which is listed first")],
                    ),
                    (
                        "x86-b",
                        true,
                        "emulated with QEMU (qemu-aarch64); no runner builds it natively",
                        &[("x86-a", "fewer free job slots than x86-b (0 against 1)")],
                    ),
                ],
            ),
            (
                "ties go to the runner listed first, every time",
                vec!["linux/arm64"],
                vec![
                    runner("arm-b", 1, &["linux/arm64"], "aarch64", &[]),
                    runner("arm-a", 1, &["linux/arm64"], "aarch64", &[]),
                ],
                vec![(
                    "arm-b",
                    false,
                    "native linux/arm64 engine",
                    &[("arm-a", "as able as arm-b, which is listed first")],
                )],
            ),
            (
                "native wins even when busier",
                vec!["linux/arm64", "linux/arm64/v8"],
                vec![
                    runner("laptop", 8, &["linux/arm64"], "x86_64", &["qemu-aarch64"]),
                    runner("arm-01", 1, &["linux/arm64"], "aarch64", &[]),
                ],
                vec![
                    (
                        "arm-01",
                        false,
                        "native linux/arm64 engine",
                        &[("laptop", "emulation only; arm-01 builds it natively")],
                    ),
                    (
                        "arm-01",
                        false,
                        "native linux/arm64 engine",
                        &[("laptop", "emulation only; arm-01 builds it natively")],
                    ),
                ],
            ),
            (
                "requested order is kept",
                vec!["linux/ppc64le", "linux/amd64"],
                vec![
                    runner("laptop", 1, &["linux/amd64"], "x86_64", &[]),
                    runner("power9", 1, &["linux/ppc64le"], "ppc64le", &[]),
                ],
                vec![
                    // Runners that do not list a platform are not rejections of it.
                    ("power9", false, "native linux/ppc64le engine", &[]),
                    ("laptop", false, "native linux/amd64 engine", &[]),
                ],
            ),
        ];
        for (name, wanted, runners, expected) in cases {
            let plan = plan(
                &platforms(&wanted),
                &runners,
                Emulation::Allowed,
                Fallback::Allowed,
            )
            .unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(plan.jobs.len(), expected.len(), "{name}");
            for ((job, wanted), (runner, emulated, reason, rejected)) in
                plan.jobs.iter().zip(&wanted).zip(expected)
            {
                assert_eq!(job.platform, platform(wanted), "{name}");
                assert_eq!(job.runner, runner, "{name}: {wanted}");
                assert_eq!(job.emulated, emulated, "{name}: {wanted}");
                assert_eq!(job.reason, reason, "{name}: {wanted}");
                let got: Vec<(String, String, bool)> = job
                    .rejected()
                    .iter()
                    .map(|rejection| {
                        let why = rejection.why.to_string();
                        (rejection.runner.clone(), why, rejection.unreachable())
                    })
                    .collect();
                let rejected: Vec<(String, String, bool)> = rejected
                    .iter()
                    .map(|(runner, why)| {
                        let unreachable = why.starts_with(UNREACHABLE);
                        ((*runner).to_owned(), (*why).to_owned(), unreachable)
                    })
                    .collect();
                assert_eq!(got, rejected, "{name}: {wanted}");
            }
        }
    }

    #[test]
    fn no_runner_lists_the_platform() {
        let runners = [
            runner("laptop", 1, &["linux/amd64", "linux/arm64"], "x86_64", &[]),
            runner("power9", 1, &["linux/ppc64le"], "ppc64le", &[]),
        ];
        let error = plan(
            &platforms(&["linux/amd64", "linux/s390x"]),
            &runners,
            Emulation::Allowed,
            Fallback::Allowed,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "no runner serves linux/s390x; laptop offers linux/amd64, linux/arm64; power9 offers linux/ppc64le"
        );
        assert_eq!(
            error.hint(),
            "add a runner for linux/s390x with `mab runners add`, or leave it out with `--platform` (a build of fewer platforms than mab.toml lists is published only under `--tag`, or not at all with `--no-push`)"
        );
        assert!(!error.is_unreachable());
        assert!(
            matches!(error, PlanError::NoRunner { ref platforms, .. } if platforms == &[platform("linux/s390x")])
        );

        // Every platform no runner lists is named at once.
        let error = plan(
            &platforms(&["linux/riscv64", "linux/amd64", "linux/s390x"]),
            &runners,
            Emulation::Allowed,
            Fallback::Allowed,
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("no runner serves linux/riscv64, linux/s390x; laptop offers"),
            "{error}"
        );
        assert_eq!(
            error.hint(),
            "add a runner for linux/riscv64, linux/s390x with `mab runners add`, or leave them out with `--platform` (a build of fewer platforms than mab.toml lists is published only under `--tag`, or not at all with `--no-push`)"
        );

        let error = plan(
            &platforms(&["linux/amd64"]),
            &[],
            Emulation::Allowed,
            Fallback::Allowed,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "no runner serves linux/amd64; no runners are configured"
        );
    }

    #[test]
    fn every_candidate_rejected() {
        let cases: Vec<(Vec<RunnerState>, &str, &str, bool)> = vec![
            (
                vec![unreachable("arm-01", &["linux/arm64"], "connection refused")],
                "no runner can build linux/arm64: arm-01 is unreachable (connection refused)",
                "check the runners with `mab runners check` (arm-01)",
                true,
            ),
            (
                vec![runner("laptop", 1, &["linux/arm64"], "x86_64", &[])],
                "no runner can build linux/arm64: laptop lists linux/arm64 but its engine is linux/amd64 and no QEMU handler qemu-aarch64 is registered",
                "register the QEMU handler qemu-aarch64 on a runner",
                false,
            ),
        ];
        for (runners, message, hint, is_unreachable) in cases {
            let error = plan(
                &platforms(&["linux/arm64"]),
                &runners,
                Emulation::Allowed,
                Fallback::Allowed,
            )
            .unwrap_err();
            assert_eq!(error.to_string(), message);
            assert!(error.hint().starts_with(hint), "{}", error.hint());
            assert_eq!(error.is_unreachable(), is_unreachable);
        }
    }

    /// `Emulation::Refused`: a native runner still wins; an emulated plan is
    /// refused, as a runtime failure only when a listed runner was
    /// unreachable (it may be the native one).
    #[test]
    fn native_only() {
        let laptop = || laptop(1);
        let arm = || runner("arm-01", 1, &["linux/arm64"], "aarch64", &[]);
        let arm_down = || unreachable("arm-01", &["linux/arm64"], "connection refused");
        let plain = || runner("plain", 1, &["linux/arm64"], "x86_64", &[]);
        let implicit = || RunnerState {
            probe: Ok(Capabilities {
                emulates_everything: true,
                ..Capabilities::detect("linux", "x86_64", &[])
            }),
            ..runner("local", 1, &["linux/amd64", "linux/arm64"], "x86_64", &[])
        };
        // (what the case shows, runners, the plan's runner or the error's message, hint's start, is_unreachable)
        type Case<'a> = (
            &'a str,
            Vec<RunnerState>,
            Result<&'a str, &'a str>,
            &'a str,
            bool,
        );
        let cases: Vec<Case<'_>> = vec![
            ("native runner wins", vec![laptop(), arm()], Ok("arm-01"), "", false),
            (
                "only an emulating runner",
                vec![laptop()],
                Err("no runner builds linux/arm64 natively, and emulation is off: laptop can only emulate linux/arm64"),
                "add a native linux/arm64 runner with `mab runners add`, or allow emulation",
                false,
            ),
            (
                "the implicit local runner",
                vec![implicit()],
                Err("no runner builds linux/arm64 natively, and emulation is off: local can only emulate linux/arm64"),
                "add a native linux/arm64 runner",
                false,
            ),
            (
                "emulating runner and one that cannot build it",
                vec![laptop(), plain()],
                Err("no runner builds linux/arm64 natively, and emulation is off: laptop can only emulate linux/arm64; plain lists linux/arm64 but its engine is linux/amd64 and no QEMU handler qemu-aarch64 is registered"),
                "add a native linux/arm64 runner",
                false,
            ),
            (
                "the native runner is down",
                vec![arm_down(), laptop()],
                Err("no reachable runner builds linux/arm64 natively, and emulation is off: arm-01 is unreachable (connection refused); laptop can only emulate linux/arm64"),
                "check the runners with `mab runners check` (arm-01), or allow emulation",
                true,
            ),
        ];
        for (name, runners, expected, hint, is_unreachable) in cases {
            let result = plan(
                &platforms(&["linux/arm64"]),
                &runners,
                Emulation::Refused,
                Fallback::Allowed,
            );
            match (result, expected) {
                (Ok(plan), Ok(runner)) => {
                    assert_eq!(plan.jobs[0].runner, runner, "{name}");
                    assert!(!plan.jobs[0].emulated, "{name}");
                }
                (Err(error), Err(message)) => {
                    assert_eq!(error.to_string(), message, "{name}");
                    assert!(error.hint().starts_with(hint), "{name}: {}", error.hint());
                    assert_eq!(error.is_unreachable(), is_unreachable, "{name}");
                }
                (result, expected) => panic!("{name}: {result:?}, expected {expected:?}"),
            }
            // Allowed, every case plans.
            assert!(
                plan(
                    &platforms(&["linux/arm64"]),
                    &runners,
                    Emulation::Allowed,
                    Fallback::Allowed
                )
                .is_ok(),
                "{name}"
            );
        }
    }

    /// Plan-time failover: which unreachable runner a platform moved from,
    /// its fallbacks in order, and `Fallback::Refused` failing instead.
    #[test]
    fn failover() {
        let laptop = || laptop(4);
        let arm = |name: &str| runner(name, 1, &["linux/arm64"], "aarch64", &[]);
        let down = |name: &str| unreachable(name, &["linux/arm64"], "connection refused");
        /// (runner, emulated, moved from, fallbacks as (runner, emulated))
        type Planned<'a> = (&'a str, bool, Option<&'a str>, Vec<(&'a str, bool)>);
        // (what the case shows, runners, emulation, the job or the error's message and hint)
        type Case<'a> = (
            &'a str,
            Vec<RunnerState>,
            Emulation,
            Result<Planned<'a>, (&'a str, &'a str)>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "all reachable: no move, the others are fallbacks, native first",
                vec![laptop(), arm("arm-a"), arm("arm-b")],
                Emulation::Allowed,
                Ok((
                    "arm-a",
                    false,
                    None,
                    vec![("arm-b", false), ("laptop", true)],
                )),
            ),
            (
                "the first native runner is down: moved to the next native one",
                vec![down("arm-a"), arm("arm-b"), laptop()],
                Emulation::Allowed,
                Ok(("arm-b", false, Some("arm-a"), vec![("laptop", true)])),
            ),
            (
                "the only native runner is down: moved to an emulating one",
                vec![laptop(), down("arm-a")],
                Emulation::Allowed,
                Ok(("laptop", true, Some("arm-a"), vec![])),
            ),
            (
                "a down runner listed after a native winner is no move",
                vec![arm("arm-a"), down("arm-b")],
                Emulation::Allowed,
                Ok(("arm-a", false, None, vec![])),
            ),
            (
                "native only: emulating runners are no fallbacks",
                vec![down("arm-a"), laptop(), arm("arm-b")],
                Emulation::Refused,
                Ok(("arm-b", false, Some("arm-a"), vec![])),
            ),
            (
                "the first of two down runners is named",
                vec![down("arm-a"), down("arm-b"), arm("arm-c")],
                Emulation::Allowed,
                Ok(("arm-c", false, Some("arm-a"), vec![])),
            ),
        ];
        for (name, runners, emulation, expected) in cases {
            let wanted = platforms(&["linux/arm64"]);
            let allowed = plan(&wanted, &runners, emulation, Fallback::Allowed);
            let refused = plan(&wanted, &runners, emulation, Fallback::Refused);
            let (runner, emulated, moved, fallbacks) = expected.unwrap();
            let job = &allowed
                .unwrap_or_else(|error| panic!("{name}: {error}"))
                .jobs[0];
            assert_eq!(job.runner, runner, "{name}");
            assert_eq!(job.emulated, emulated, "{name}");
            assert_eq!(
                job.moved_from,
                moved.map(|from| Move {
                    runner: from.to_owned(),
                    reason: "connection refused".to_owned(),
                }),
                "{name}"
            );
            let fallbacks: Vec<Candidate> = fallbacks
                .into_iter()
                .map(|(runner, emulated)| Candidate {
                    runner: runner.to_owned(),
                    emulated,
                })
                .collect();
            assert_eq!(job.fallbacks(), fallbacks, "{name}");
            match (moved, refused) {
                (None, Ok(plan)) => assert_eq!(&plan.jobs[0], job, "{name}"),
                (Some(from), Err(error)) => {
                    assert_eq!(
                        error.to_string(),
                        format!("linux/arm64 stays on runner `{from}`, which is unreachable (connection refused), as fallback is off"),
                        "{name}"
                    );
                    assert_eq!(
                        error.hint(),
                        format!("check runner `{from}` with `mab runners check`, or let another runner build it: take --no-fallback off the command line, or `fallback = false` out of [image] in mab.toml, whichever is there"),
                        "{name}"
                    );
                    assert!(error.is_unreachable(), "{name}");
                }
                (_, refused) => panic!("{name}: with fallback refused: {refused:?}"),
            }
        }
    }

    /// With fallback refused, every stranded platform is named at once and
    /// the others are not planned.
    #[test]
    fn no_fallback_names_every_stranded_platform() {
        let runners = [
            unreachable("pi", &["linux/arm64", "linux/arm/v7"], "no route to host"),
            runner(
                "laptop",
                2,
                &["linux/amd64", "linux/arm64", "linux/arm/v7"],
                "x86_64",
                &["qemu-aarch64", "qemu-arm"],
            ),
        ];
        let error = plan(
            &platforms(&["linux/amd64", "linux/arm64", "linux/arm/v7"]),
            &runners,
            Emulation::Allowed,
            Fallback::Refused,
        )
        .unwrap_err();
        let stranded = |text: &str| {
            (
                platform(text),
                Move {
                    runner: "pi".to_owned(),
                    reason: "no route to host".to_owned(),
                },
            )
        };
        let PlanError::PreferredUnreachable {
            unreachable,
            planned,
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(
            *unreachable,
            [stranded("linux/arm64"), stranded("linux/arm/v7")]
        );
        let planned: Vec<(String, &str)> = planned
            .iter()
            .map(|job| (job.platform.to_string(), job.runner.as_str()))
            .collect();
        assert_eq!(planned, [("linux/amd64".to_owned(), "laptop")]);
        assert_eq!(
            error.hint(),
            "check runner `pi` with `mab runners check`, or let another runner build it: take --no-fallback off the command line, or `fallback = false` out of [image] in mab.toml, whichever is there"
        );
    }

    /// A made-up random number sequence (xorshift64), the same on every run.
    struct Dice(u64);

    impl Dice {
        /// A number in `0..below`.
        fn roll(&mut self, below: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            usize::try_from(self.0 % below as u64).unwrap()
        }
    }

    /// The platforms the random fleets list and are asked for.
    const RANDOM_PLATFORMS: &[&str] = &[
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
        "linux/386",
        "linux/riscv64",
        "linux/s390x",
    ];

    /// A random fleet of `size` runners, named uniquely: random listed
    /// platforms, engine, handlers and slots; some unreachable, some the
    /// implicit local runner.
    fn random_fleet(dice: &mut Dice, size: usize) -> Vec<RunnerState> {
        const MACHINES: &[&str] = &["x86_64", "aarch64", "armv7l", "s390x", "sparc64"];
        const HANDLERS: &[&str] = &["qemu-aarch64", "qemu-arm", "qemu-riscv64", "qemu-x86_64"];
        (0..size)
            .map(|index| {
                let lists: Vec<&str> = RANDOM_PLATFORMS
                    .iter()
                    .copied()
                    .filter(|_| dice.roll(2) == 0)
                    .collect();
                let qemu: Vec<&str> = HANDLERS
                    .iter()
                    .copied()
                    .filter(|_| dice.roll(2) == 0)
                    .collect();
                let machine = MACHINES[dice.roll(MACHINES.len())];
                let jobs = u32::try_from(dice.roll(4)).unwrap();
                let name = format!("runner-{index}");
                let mut state = runner(&name, jobs, &lists, machine, &qemu);
                match dice.roll(8) {
                    0 => state.probe = Err(format!("{name}: connection refused")),
                    1 => {
                        if let Ok(capabilities) = &mut state.probe {
                            capabilities.emulates_everything = true;
                        }
                    }
                    _ => {}
                }
                state
            })
            .collect()
    }

    /// [`Job::rejected`] worked out from the runners and the jobs planned
    /// before `jobs[at]`, in the plain way: a count of those jobs per
    /// runner, and the rules of [`Why`].
    fn reference_rejected(
        runners: &[RunnerState],
        jobs: &[Job],
        at: usize,
        emulation: Emulation,
    ) -> Vec<Rejection> {
        let job = &jobs[at];
        let free = |name: &str| {
            let state = runners.iter().find(|state| state.name == name).unwrap();
            let planned = jobs[..at].iter().filter(|job| job.runner == name).count();
            i64::from(state.jobs) - i64::try_from(planned).unwrap()
        };
        let chosen_free = free(&job.runner);
        runners
            .iter()
            .filter(|state| state.platforms.contains(&job.platform) && state.name != job.runner)
            .map(|state| {
                let why = match &state.probe {
                    Err(reason) => Why::Unreachable {
                        reason: reason.clone(),
                    },
                    Ok(capabilities) => match capabilities.support(&job.platform) {
                        Support::Unavailable => Why::Unavailable {
                            platform: job.platform.clone(),
                            engine: capabilities.own.clone(),
                        },
                        Support::Emulated if emulation == Emulation::Refused => {
                            Why::EmulationRefused {
                                platform: job.platform.clone(),
                            }
                        }
                        Support::Emulated if !job.emulated => Why::EmulationOnly {
                            chosen: job.runner.clone(),
                        },
                        _ if free(&state.name) < chosen_free => Why::FewerSlots {
                            chosen: job.runner.clone(),
                            free: slots(free(&state.name)),
                            chosen_free: slots(chosen_free),
                        },
                        _ => Why::ListedLater {
                            chosen: job.runner.clone(),
                        },
                    },
                };
                Rejection {
                    runner: state.name.clone(),
                    why,
                }
            })
            .collect()
    }

    /// [`Job::fallbacks`] worked out from the runners: the reachable ones
    /// but the job's own that list the platform and can build it, native
    /// ones first, then the emulating ones unless emulation is refused.
    fn reference_fallbacks(
        runners: &[RunnerState],
        job: &Job,
        emulation: Emulation,
    ) -> Vec<Candidate> {
        let able = |wanted: Support| {
            runners
                .iter()
                .filter(move |state| {
                    state.name != job.runner
                        && state.platforms.contains(&job.platform)
                        && state
                            .probe
                            .as_ref()
                            .is_ok_and(|capabilities| capabilities.support(&job.platform) == wanted)
                })
                .map(move |state| Candidate {
                    runner: state.name.clone(),
                    emulated: wanted == Support::Emulated,
                })
        };
        let emulated: Vec<Candidate> = match emulation {
            Emulation::Allowed => able(Support::Emulated).collect(),
            Emulation::Refused => Vec::new(),
        };
        able(Support::Native).chain(emulated).collect()
    }

    /// On random fleets, every job's rejections and fallbacks are those of
    /// the plain reference, under each emulation and fallback setting.
    #[test]
    fn lists_match_a_plain_reference_on_random_fleets() {
        let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
        let pool = platforms(RANDOM_PLATFORMS);
        let mut checked = (0, 0, 0);
        for round in 0..200 {
            let size = 1 + dice.roll(12);
            let runners = random_fleet(&mut dice, size);
            let wanted: Vec<Platform> = (0..1 + dice.roll(30))
                .map(|_| pool[dice.roll(pool.len())].clone())
                .collect();
            for emulation in [Emulation::Allowed, Emulation::Refused] {
                for fallback in [Fallback::Allowed, Fallback::Refused] {
                    let jobs = match plan(&wanted, &runners, emulation, fallback) {
                        Ok(plan) => plan.jobs,
                        Err(PlanError::PreferredUnreachable { planned, .. }) => planned,
                        Err(_) => continue,
                    };
                    for (at, job) in jobs.iter().enumerate() {
                        let case = format!(
                            "round {round}, {emulation:?}, {fallback:?}, job {at} ({})",
                            job.platform
                        );
                        let rejected = job.rejected();
                        assert_eq!(
                            rejected,
                            reference_rejected(&runners, &jobs, at, emulation),
                            "{case}"
                        );
                        let fallbacks = job.fallbacks();
                        assert_eq!(
                            fallbacks,
                            reference_fallbacks(&runners, job, emulation),
                            "{case}"
                        );
                        checked.0 += 1;
                        checked.1 += rejected.len();
                        checked.2 += fallbacks.len();
                    }
                }
            }
        }
        // The fleets made plans with rejections and fallbacks to compare.
        assert!(
            checked.0 > 1_000 && checked.1 > 1_000 && checked.2 > 1_000,
            "{checked:?}"
        );
    }
}
