//! `mab plan`: which runner builds which platform, and why.

use mab_config::Platform;
use serde::Serialize;

use crate::cli::{Format, PlanArgs};
use crate::environment::Environment;
use crate::failure::Failure;
use crate::ops::prepare;
use crate::progress::Reporter;

#[derive(Serialize)]
struct PlanJson {
    platforms: Vec<PlatformJson>,
}

#[derive(Serialize)]
struct PlatformJson {
    platform: Platform,
    runner: String,
    emulated: bool,
    reason: String,
    rejected: Vec<RejectedJson>,
}

#[derive(Serialize)]
struct RejectedJson {
    runner: String,
    why: String,
}

/// Returns what goes to stdout.
pub async fn plan(
    args: &PlanArgs,
    environment: &Environment,
    shared: &std::sync::Arc<dyn Reporter>,
) -> Result<String, Failure> {
    let reporter = shared.as_ref();
    let loaded = prepare::load(&args.project, environment, reporter)?;
    let platforms = &loaded.project.platforms;
    let runners = prepare::runners_for(&loaded.runners, platforms);
    let connected = prepare::connect_all(&runners, environment, shared).await;
    let plan = prepare::plan(
        platforms,
        loaded.emulation,
        mab_plan::Fallback::Allowed,
        &loaded.runners,
        &runners,
        &connected,
    )
    .map_err(|error| prepare::plan_failure(error, &connected))?;
    let json = PlanJson {
        platforms: plan
            .jobs
            .iter()
            .map(|job| PlatformJson {
                platform: job.platform.clone(),
                runner: job.runner.clone(),
                emulated: job.emulated,
                reason: job.reason.clone(),
                rejected: job
                    .rejected
                    .iter()
                    .map(|rejection| RejectedJson {
                        runner: rejection.runner.clone(),
                        why: rejection.why.clone(),
                    })
                    .collect(),
            })
            .collect(),
    };
    Ok(match args.format {
        Format::Json => {
            serde_json::to_string_pretty(&json).expect("a plan always serialises") + "\n"
        }
        Format::Human => human(&json),
    })
}

fn human(plan: &PlanJson) -> String {
    let mut out = String::new();
    for platform in &plan.platforms {
        out.push_str(&format!(
            "{:<16} -> {}: {}\n",
            platform.platform, platform.runner, platform.reason
        ));
        // Runners that do not serve the platform share one line.
        let not_serving = format!("does not serve {}", platform.platform);
        let (others, considered): (Vec<&RejectedJson>, Vec<&RejectedJson>) = platform
            .rejected
            .iter()
            .partition(|rejected| rejected.why == not_serving);
        for rejected in considered {
            out.push_str(&format!(
                "{:<16}    not {}: {}\n",
                "", rejected.runner, rejected.why
            ));
        }
        if !others.is_empty() {
            let names: Vec<&str> = others
                .iter()
                .map(|rejected| rejected.runner.as_str())
                .collect();
            out.push_str(&format!(
                "{:<16}    not serving it: {}\n",
                "",
                names.join(", ")
            ));
        }
    }
    out
}
