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
//! Every losing candidate comes back as a [`Rejection`] saying why, and each
//! job carries its [`Job::fallbacks`]: where it goes if its runner fails
//! before its build starts.

use std::collections::HashMap;
use std::fmt;

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
        let engine = match &self.own {
            Some(own) => format!("its engine is {own}"),
            None => "its engine's architecture is unknown".to_owned(),
        };
        match platform.qemu_handler() {
            Some(handler) => format!("{engine} and no QEMU handler {handler} is registered"),
            None => format!("{engine} and QEMU cannot emulate {platform}"),
        }
    }
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub platform: Platform,
    pub runner: String,
    pub emulated: bool,
    /// A sentence: "native linux/arm64 engine".
    pub reason: String,
    /// The other runners that list the platform, and why they lost.
    pub rejected: Vec<Rejection>,
    /// The unreachable runner that would have built the platform, when the
    /// plan had to pass it over; `None` when the preferred runner builds it.
    pub moved_from: Option<Move>,
    /// Where the job goes when `runner` fails before its build starts, in
    /// order: the other reachable runners that list the platform and can
    /// build it, native ones first, then (when emulation is allowed)
    /// emulating ones, each group in runners.toml order.
    pub fallbacks: Vec<Candidate>,
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
    /// A sentence: "unreachable: connection refused", "emulation only; …".
    pub why: String,
    /// Whether the runner could not be reached (its probe failed), which
    /// makes a plan that fails for want of it a runtime failure.
    pub unreachable: bool,
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
        if rejected.iter().any(|rejection| rejection.unreachable) { "reachable " } else { "" },
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
                    .filter(|rejection| rejection.unreachable)
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
                rejected.iter().any(|rejection| rejection.unreachable)
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
        .map(|rejection| match rejection.why.strip_prefix(UNREACHABLE) {
            Some(why) => format!("{} is unreachable ({why})", rejection.runner),
            None => format!("{} {}", rejection.runner, rejection.why),
        })
        .collect();
    described.join("; ")
}

/// A runner that can build the platform being planned.
struct Contender<'a> {
    runner: &'a RunnerState,
    support: Support,
    free_slots: i64,
}

/// Every platform must be listed by some runner; `offers` are the runners'
/// names and the platforms each lists. Checked before any runner is
/// contacted, and again by [`plan`].
pub fn check_served(
    platforms: &[Platform],
    offers: &[(String, Vec<Platform>)],
) -> Result<(), PlanError> {
    let unserved: Vec<Platform> = platforms
        .iter()
        .filter(|platform| !offers.iter().any(|(_, listed)| listed.contains(platform)))
        .cloned()
        .collect();
    if unserved.is_empty() {
        return Ok(());
    }
    Err(PlanError::NoRunner {
        platforms: unserved,
        offers: offers.to_vec(),
    })
}

/// Assigns every platform to a runner; see the crate docs for the rules.
pub fn plan(
    platforms: &[Platform],
    runners: &[RunnerState],
    emulation: Emulation,
    fallback: Fallback,
) -> Result<Plan, PlanError> {
    let offers: Vec<(String, Vec<Platform>)> = runners
        .iter()
        .map(|runner| (runner.name.clone(), runner.platforms.clone()))
        .collect();
    check_served(platforms, &offers)?;
    // Each runner's place in runners.toml (names are unique there), so
    // that ordering by it does not search the list for every runner.
    let order: HashMap<&str, usize> = runners
        .iter()
        .enumerate()
        .map(|(at, runner)| (runner.name.as_str(), at))
        .collect();
    let mut assigned: HashMap<&str, u32> = HashMap::new();
    let mut jobs = Vec::with_capacity(platforms.len());
    let mut stranded = Vec::new();
    for platform in platforms {
        let candidates: Vec<&RunnerState> = runners
            .iter()
            .filter(|runner| runner.platforms.contains(platform))
            .collect();
        let mut rejected = Vec::new();
        let mut contenders = Vec::new();
        for runner in &candidates {
            match &runner.probe {
                Err(why) => rejected.push(Rejection {
                    runner: runner.name.clone(),
                    why: format!("{UNREACHABLE}{why}"),
                    unreachable: true,
                }),
                Ok(capabilities) => match capabilities.support(platform) {
                    Support::Unavailable => rejected.push(Rejection {
                        runner: runner.name.clone(),
                        why: format!(
                            "lists {platform} but {}",
                            capabilities.why_unavailable(platform)
                        ),
                        unreachable: false,
                    }),
                    Support::Emulated if emulation == Emulation::Refused => {
                        rejected.push(Rejection {
                            runner: runner.name.clone(),
                            why: format!("can only emulate {platform}"),
                            unreachable: false,
                        })
                    }
                    support => contenders.push(Contender {
                        runner,
                        support,
                        free_slots: i64::from(runner.jobs)
                            - i64::from(assigned.get(runner.name.as_str()).copied().unwrap_or(0)),
                    }),
                },
            }
        }

        // Stable: among equals the runner listed first stays first.
        contenders.sort_by_key(|contender| {
            (
                contender.support != Support::Native,
                std::cmp::Reverse(contender.free_slots),
            )
        });
        let Some((winner, losers)) = contenders.split_first() else {
            let platform = platform.clone();
            return Err(match emulation {
                Emulation::Allowed => PlanError::NoUsableRunner { platform, rejected },
                Emulation::Refused => PlanError::NoNativeRunner { platform, rejected },
            });
        };
        for loser in losers {
            rejected.push(Rejection {
                runner: loser.runner.name.clone(),
                why: lost_why(winner, loser),
                unreachable: false,
            });
        }
        for runner in runners
            .iter()
            .filter(|runner| !runner.platforms.contains(platform))
        {
            rejected.push(Rejection {
                runner: runner.name.clone(),
                why: format!("does not serve {platform}"),
                unreachable: false,
            });
        }
        // Report rejections in runners.toml order.
        rejected.sort_by_key(|rejection| order.get(rejection.runner.as_str()).copied());

        let emulated = winner.support == Support::Emulated;
        let moved_from = passed_over(&candidates, winner);
        if let (Some(moved), Fallback::Refused) = (&moved_from, fallback) {
            stranded.push((platform.clone(), moved.clone()));
            continue;
        }
        *assigned.entry(winner.runner.name.as_str()).or_default() += 1;
        jobs.push(Job {
            platform: platform.clone(),
            runner: winner.runner.name.clone(),
            emulated,
            reason: reason(platform, winner, &candidates),
            rejected,
            moved_from,
            fallbacks: fallbacks(&order, losers),
        });
    }
    if !stranded.is_empty() {
        return Err(PlanError::PreferredUnreachable {
            unreachable: stranded,
            planned: jobs,
        });
    }
    Ok(Plan { jobs })
}

/// The first unreachable candidate (in runners.toml order) that would have
/// been preferred to `winner`: listed before it, or any one when `winner`
/// only emulates the platform (an unreachable runner's architecture is
/// unknown, so it may have been native).
fn passed_over(candidates: &[&RunnerState], winner: &Contender<'_>) -> Option<Move> {
    let winner_at = candidates
        .iter()
        .position(|runner| runner.name == winner.runner.name)
        .unwrap_or(candidates.len());
    candidates
        .iter()
        .enumerate()
        .find_map(|(at, runner)| match &runner.probe {
            Err(why) if at < winner_at || winner.support == Support::Emulated => Some(Move {
                runner: runner.name.clone(),
                reason: why.clone(),
            }),
            _ => None,
        })
}

/// The losing contenders as fallbacks: native ones, then emulated ones,
/// each group in runners.toml order (`order`: each runner's place there).
fn fallbacks(order: &HashMap<&str, usize>, losers: &[Contender<'_>]) -> Vec<Candidate> {
    let mut ordered: Vec<&Contender<'_>> = losers.iter().collect();
    ordered.sort_by_key(|loser| {
        (
            loser.support != Support::Native,
            order.get(loser.runner.name.as_str()).copied(),
        )
    });
    ordered
        .into_iter()
        .map(|loser| Candidate {
            runner: loser.runner.name.clone(),
            emulated: loser.support == Support::Emulated,
        })
        .collect()
}

fn lost_why(winner: &Contender<'_>, loser: &Contender<'_>) -> String {
    let name = &winner.runner.name;
    if loser.support == Support::Emulated && winner.support == Support::Native {
        format!("emulation only; {name} builds it natively")
    } else if loser.free_slots < winner.free_slots {
        format!(
            "fewer free job slots than {name} ({} against {})",
            loser.free_slots.max(0),
            winner.free_slots.max(0)
        )
    } else {
        format!("as able as {name}, which is listed first")
    }
}

fn reason(platform: &Platform, winner: &Contender<'_>, candidates: &[&RunnerState]) -> String {
    let capabilities = winner.runner.probe.as_ref().ok();
    let own = capabilities.and_then(|capabilities| capabilities.own.as_ref());
    match winner.support {
        Support::Native => match own {
            Some(own) if own != platform => format!("native {own} engine runs {platform}"),
            _ => format!("native {platform} engine"),
        },
        _ => {
            let any_unreachable = candidates.iter().any(|runner| runner.probe.is_err());
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
                    ("power9", false, "native linux/ppc64le engine", &[("laptop", "does not serve linux/ppc64le")]),
                    ("laptop", false, "native linux/amd64 engine", &[("power9", "does not serve linux/amd64")]),
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
                let rejected: Vec<Rejection> = rejected
                    .iter()
                    .map(|(runner, why)| Rejection {
                        runner: (*runner).to_owned(),
                        why: (*why).to_owned(),
                        unreachable: why.starts_with(UNREACHABLE),
                    })
                    .collect();
                assert_eq!(job.rejected, rejected, "{name}: {wanted}");
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
            assert_eq!(job.fallbacks, fallbacks, "{name}");
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
}
