//! `mab plan`: which runner builds which platform, and why; where it goes
//! when that runner fails (its fallbacks), and which platforms the plan
//! moved off an unreachable runner, as `mab build` would.

use mab_config::{Platform, Runner};
use mab_plan::Fallback;
use serde::Serialize;

use crate::cli::{Format, PlanArgs};
use crate::environment::Environment;
use crate::failure::Failure;
use crate::ops::jobs::report_planned_moves;
use crate::ops::prepare;
use crate::progress::Reporter;

/// `mab plan --format json`.
#[derive(Serialize)]
struct PlanJson {
    /// Whether platforms may move to their fallbacks (`false` with
    /// `--no-fallback` or `fallback = false` under `[image]`).
    fallback: bool,
    platforms: Vec<PlatformJson>,
}

#[derive(Serialize)]
struct PlatformJson {
    platform: Platform,
    runner: String,
    emulated: bool,
    reason: String,
    /// The unreachable runner that would have built the platform, when
    /// the plan passed it over; `null` otherwise.
    moved_from: Option<MovedJson>,
    /// Where the platform goes when `runner` fails before its build
    /// starts, in order (native first, then emulated); empty when
    /// `fallback` is `false`.
    fallbacks: Vec<FallbackJson>,
    rejected: Vec<RejectedJson>,
}

#[derive(Serialize)]
struct MovedJson {
    runner: String,
    /// That runner's failure, as the connection or its engine reported it.
    reason: String,
}

#[derive(Serialize)]
struct FallbackJson {
    runner: String,
    emulated: bool,
}

#[derive(Serialize)]
struct RejectedJson {
    runner: String,
    why: String,
}

/// Returns what goes to stdout. Each platform the plan moved is also
/// reported as the warning `mab build` prints for it. With fallback off a
/// platform whose preferred runner is unreachable fails the plan with the
/// error `mab build` would give (exit 1).
pub async fn plan(
    args: &PlanArgs,
    environment: &Environment,
    shared: &std::sync::Arc<dyn Reporter>,
) -> Result<String, Failure> {
    let reporter = shared.as_ref();
    let loaded = prepare::load(&args.project, environment, reporter)?;
    let platforms = &loaded.project.platforms;
    let runners = prepare::runners_for(&loaded.runners, platforms);
    let connected = prepare::connect_all(
        &runners,
        environment,
        shared,
        &prepare::Connecting::default(),
    )
    .await;
    let fallback = if args.no_fallback || !loaded.project.fallback {
        Fallback::Refused
    } else {
        Fallback::Allowed
    };
    let plan = prepare::plan(
        platforms,
        loaded.emulation,
        fallback,
        &loaded.runners,
        &runners,
        &connected,
        // `mab plan` takes no --ssh.
        false,
    )
    .map_err(|error| super::build::plan_error_report(error, &connected))?;
    let json = PlanJson {
        fallback: fallback == Fallback::Allowed,
        platforms: plan
            .jobs
            .iter()
            .map(|job| PlatformJson {
                platform: job.platform.clone(),
                runner: job.runner.clone(),
                emulated: job.emulated,
                reason: job.reason.clone(),
                moved_from: job.moved_from.as_ref().map(|from| MovedJson {
                    runner: from.runner.clone(),
                    reason: from.reason.clone(),
                }),
                fallbacks: match fallback {
                    Fallback::Allowed => job
                        .fallbacks()
                        .into_iter()
                        .map(|to| FallbackJson {
                            runner: to.runner,
                            emulated: to.emulated,
                        })
                        .collect(),
                    Fallback::Refused => Vec::new(),
                },
                rejected: rejected(job, &runners),
            })
            .collect(),
    };
    report_planned_moves(&plan, reporter);
    Ok(match args.format {
        Format::Json => {
            serde_json::to_string_pretty(&json).expect("a plan always serialises") + "\n"
        }
        Format::Human => human(&json),
    })
}

/// Every runner asked but `job`'s own, in runners.toml order, and why it
/// was not chosen: the planner's [`mab_plan::Job::rejected`] for those that
/// list the platform, "does not serve PLATFORM" for the others
/// ([`rejected_among`]).
fn rejected(job: &mab_plan::Job, runners: &[&Runner]) -> Vec<RejectedJson> {
    rejected_among(&job.platform, &job.runner, job.rejected(), runners)
}

/// The runners of `runners` but `chosen`, in their order, each with why it
/// was not chosen for `platform`: its entry of `rejections` (the
/// planner's, matched by runner name, whatever their order) when it lists
/// the platform, "does not serve PLATFORM" when it does not. A runner that
/// lists the platform and has no rejection is left out; a rejection of a
/// runner not among `runners` comes last, as the planner gave it.
fn rejected_among(
    platform: &Platform,
    chosen: &str,
    rejections: Vec<mab_plan::Rejection>,
    runners: &[&Runner],
) -> Vec<RejectedJson> {
    let mut unmatched: Vec<Option<mab_plan::Rejection>> =
        rejections.into_iter().map(Some).collect();
    let mut take = |name: &str| {
        unmatched
            .iter_mut()
            .find(|rejection| rejection.as_ref().is_some_and(|r| r.runner == name))
            .and_then(Option::take)
    };
    let mut listed: Vec<RejectedJson> = runners
        .iter()
        .filter(|runner| runner.name != chosen)
        .filter_map(|runner| match runner.platforms.contains(platform) {
            true => take(&runner.name).map(RejectedJson::from),
            false => Some(RejectedJson {
                runner: runner.name.clone(),
                why: format!("does not serve {platform}"),
            }),
        })
        .collect();
    listed.extend(unmatched.into_iter().flatten().map(RejectedJson::from));
    listed
}

impl From<mab_plan::Rejection> for RejectedJson {
    fn from(rejection: mab_plan::Rejection) -> RejectedJson {
        RejectedJson {
            runner: rejection.runner,
            why: rejection.why.to_string(),
        }
    }
}

/// The plan for people: per platform `PLATFORM -> RUNNER: REASON`, then,
/// indented, the runner it moved from and why, its fallbacks in order
/// (`none` when it has none, `off` when fallback is off), and the runners
/// not chosen with why (those that do not list it on one line).
fn human(plan: &PlanJson) -> String {
    let mut out = String::new();
    for platform in &plan.platforms {
        out.push_str(&format!(
            "{:<16} -> {}: {}\n",
            platform.platform, platform.runner, platform.reason
        ));
        let mut line = |text: String| out.push_str(&format!("{:<16}    {text}\n", ""));
        if let Some(from) = &platform.moved_from {
            line(format!(
                "moved from runner `{}`, which is unreachable: {}",
                from.runner, from.reason
            ));
        }
        let fallbacks: Vec<String> = platform
            .fallbacks
            .iter()
            .map(|to| {
                let how = if to.emulated { "emulated" } else { "native" };
                format!("{} ({how})", to.runner)
            })
            .collect();
        line(match (plan.fallback, fallbacks.is_empty()) {
            (false, _) => "fallbacks: off (--no-fallback, or fallback = false)".to_owned(),
            (true, true) => "fallbacks: none".to_owned(),
            (true, false) => format!("fallbacks: {}", fallbacks.join(", ")),
        });
        // Runners that do not serve the platform share one line.
        let not_serving = format!("does not serve {}", platform.platform);
        let (others, considered): (Vec<&RejectedJson>, Vec<&RejectedJson>) = platform
            .rejected
            .iter()
            .partition(|rejected| rejected.why == not_serving);
        for rejected in considered {
            line(format!("not {}: {}", rejected.runner, rejected.why));
        }
        if !others.is_empty() {
            let names: Vec<&str> = others
                .iter()
                .map(|rejected| rejected.runner.as_str())
                .collect();
            line(format!("not serving it: {}", names.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(
        name: &str,
        runner: &str,
        moved_from: Option<(&str, &str)>,
        fallbacks: &[(&str, bool)],
        rejected: &[(&str, &str)],
    ) -> PlatformJson {
        PlatformJson {
            platform: name.parse().unwrap(),
            runner: runner.to_owned(),
            emulated: false,
            reason: format!("native {name} engine"),
            moved_from: moved_from.map(|(runner, reason)| MovedJson {
                runner: runner.to_owned(),
                reason: reason.to_owned(),
            }),
            fallbacks: fallbacks
                .iter()
                .map(|(runner, emulated)| FallbackJson {
                    runner: (*runner).to_owned(),
                    emulated: *emulated,
                })
                .collect(),
            rejected: rejected
                .iter()
                .map(|(runner, why)| RejectedJson {
                    runner: (*runner).to_owned(),
                    why: (*why).to_owned(),
                })
                .collect(),
        }
    }

    const REFUSED: &str = "connection to `127.0.0.1:2201` was refused";

    fn runner(name: &str, platforms: &[&str]) -> Runner {
        Runner {
            name: name.to_owned(),
            host: mab_config::RunnerHost::Local,
            platforms: platforms.iter().map(|p| p.parse().unwrap()).collect(),
            engine: None,
            jobs: 1,
            network: mab_config::NetworkMode::Default,
        }
    }

    #[test]
    fn rejections_are_matched_to_runners_by_name() {
        let runners = [
            runner("down", &["linux/amd64"]),
            runner("arm", &["linux/arm64"]),
            runner("b", &["linux/amd64"]),
            runner("c", &["linux/amd64"]),
            runner("local", &["linux/amd64", "linux/arm64"]),
        ];
        let runners: Vec<&Runner> = runners.iter().collect();
        let rejection = |runner: &str, why: mab_plan::Why| mab_plan::Rejection {
            runner: runner.to_owned(),
            why,
        };
        let unreachable = || mab_plan::Why::Unreachable {
            reason: REFUSED.to_owned(),
        };
        let listed_later = || mab_plan::Why::ListedLater {
            chosen: "b".to_owned(),
        };
        let emulation_only = || mab_plan::Why::EmulationOnly {
            chosen: "b".to_owned(),
        };
        let expected = [
            ("down", format!("unreachable: {REFUSED}")),
            ("arm", "does not serve linux/amd64".to_owned()),
            ("c", "as able as b, which is listed first".to_owned()),
            ("local", "emulation only; b builds it natively".to_owned()),
        ];
        let platform: Platform = "linux/amd64".parse().unwrap();
        // (case, the planner's rejections, in the order it gives them)
        let cases = [
            (
                "in runners.toml order",
                vec![
                    rejection("down", unreachable()),
                    rejection("c", listed_later()),
                    rejection("local", emulation_only()),
                ],
            ),
            (
                "in another order",
                vec![
                    rejection("local", emulation_only()),
                    rejection("c", listed_later()),
                    rejection("down", unreachable()),
                ],
            ),
        ];
        for (case, rejections) in cases {
            let listed: Vec<(String, String)> =
                rejected_among(&platform, "b", rejections, &runners)
                    .into_iter()
                    .map(|rejected| (rejected.runner, rejected.why))
                    .collect();
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(runner, why)| ((*runner).to_owned(), why.clone()))
                .collect();
            assert_eq!(listed, expected, "{case}");
        }

        // A runner the planner gave no reason for is left out; a reason
        // for a runner not asked is kept, last.
        let listed: Vec<String> = rejected_among(
            &platform,
            "b",
            vec![
                rejection("elsewhere", unreachable()),
                rejection("c", listed_later()),
            ],
            &runners,
        )
        .into_iter()
        .map(|rejected| rejected.runner)
        .collect();
        assert_eq!(listed, ["arm", "c", "elsewhere"]);
    }

    #[test]
    fn the_plan_shows_moves_and_fallbacks_in_order() {
        // (name, fallback on, the platforms, the rendering)
        let cases = [
            (
                "moved off an unreachable runner, native fallback before emulated",
                true,
                vec![
                    platform(
                        "linux/amd64",
                        "b",
                        Some(("down", REFUSED)),
                        &[("c", false), ("local", true)],
                        &[
                            ("down", &format!("unreachable: {REFUSED}")),
                            ("c", "as able as b, which is listed first"),
                            ("local", "emulation only; b builds it natively"),
                            ("arm", "does not serve linux/amd64"),
                        ],
                    ),
                    platform("linux/arm64", "arm", None, &[], &[("b", "does not serve linux/arm64"), ("c", "does not serve linux/arm64")]),
                ],
                "linux/amd64      -> b: native linux/amd64 engine\n\
                 \x20                   moved from runner `down`, which is unreachable: connection to `127.0.0.1:2201` was refused\n\
                 \x20                   fallbacks: c (native), local (emulated)\n\
                 \x20                   not down: unreachable: connection to `127.0.0.1:2201` was refused\n\
                 \x20                   not c: as able as b, which is listed first\n\
                 \x20                   not local: emulation only; b builds it natively\n\
                 \x20                   not serving it: arm\n\
                 linux/arm64      -> arm: native linux/arm64 engine\n\
                 \x20                   fallbacks: none\n\
                 \x20                   not serving it: b, c\n",
            ),
            (
                "fallback off: no fallbacks, said so",
                false,
                vec![platform("linux/amd64", "b", None, &[], &[("c", "as able as b, which is listed first")])],
                "linux/amd64      -> b: native linux/amd64 engine\n\
                 \x20                   fallbacks: off (--no-fallback, or fallback = false)\n\
                 \x20                   not c: as able as b, which is listed first\n",
            ),
        ];
        for (name, fallback, platforms, expected) in cases {
            let plan = PlanJson {
                fallback,
                platforms,
            };
            assert_eq!(human(&plan), expected, "{name}");
        }
    }

    #[test]
    fn the_json_plan_names_the_move_and_the_fallbacks() {
        let plan = PlanJson {
            fallback: true,
            platforms: vec![platform(
                "linux/amd64",
                "b",
                Some(("down", REFUSED)),
                &[("c", false), ("local", true)],
                &[],
            )],
        };
        assert_eq!(
            serde_json::to_value(&plan).unwrap(),
            serde_json::json!({
                "fallback": true,
                "platforms": [{
                    "platform": "linux/amd64",
                    "runner": "b",
                    "emulated": false,
                    "reason": "native linux/amd64 engine",
                    "moved_from": { "runner": "down", "reason": REFUSED },
                    "fallbacks": [
                        { "runner": "c", "emulated": false },
                        { "runner": "local", "emulated": true },
                    ],
                    "rejected": [],
                }],
            })
        );
    }
}
