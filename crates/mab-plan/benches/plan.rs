//! The planner at fleet size (target 6 of docs/performance.md): `mab_plan::plan` placing
//! N platform requests over M runners, through the crate's public API.
//!
//! Two benchmarks per size: `plan/NxM` times `plan` alone;
//! `plan_and_lists/NxM` times what `mab plan` does with it, `plan` and then
//! every job's `Job::fallbacks` and `Job::rejected` (`mab build` asks each
//! job for its fallbacks only).
//!
//! The fleet is made up, the same on every run: runners in blocks of ten,
//! five amd64 engines (some emulating arm64 and arm/v7 with QEMU handlers,
//! some listing arm64 with no handler for it, so unavailable), three arm64
//! engines (some emulating arm/v6), one ppc64le or s390x engine that emulates riscv64, and one that
//! cannot be reached; 1-4 job slots each. The requests cycle through the
//! platforms the fleet serves. Sizes: requests x runners, 100x10,
//! 1,000x100 and 10,000x1,000 (the target: < 100 ms for `plan`).
//! `tests/bench/planner` runs this and writes the figures of both
//! benchmarks into docs/performance.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mab_config::Platform;
use mab_plan::{plan, Capabilities, Emulation, Fallback, Plan, PlanError, RunnerState};

/// The platforms requested, in turn.
const REQUESTED: &[&str] = &[
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/386",
    "linux/arm/v6",
    "linux/ppc64le",
    "linux/riscv64",
];

/// The sizes measured: (platform requests, runners).
const SIZES: &[(usize, usize)] = &[(100, 10), (1_000, 100), (10_000, 1_000)];

fn platforms(texts: &[&str]) -> Vec<Platform> {
    texts
        .iter()
        .map(|text| text.parse().expect("a valid platform"))
        .collect()
}

/// Runner `index` of the made-up fleet.
fn runner(index: usize) -> RunnerState {
    let name = format!("runner-{index:04}");
    let jobs = 1 + (index % 4) as u32;
    let reachable = |machine: &str, handlers: &[&str], lists: &[&str]| RunnerState {
        name: name.clone(),
        jobs,
        platforms: platforms(lists),
        probe: Ok(Capabilities::detect(
            "linux",
            machine,
            &handlers
                .iter()
                .map(|handler| (*handler).to_owned())
                .collect::<Vec<_>>(),
        )),
    };
    match index % 10 {
        // amd64 engines: a third emulate arm64 and arm/v7, a third list
        // arm64 with no handler registered for it.
        0..=4 => match index % 3 {
            0 => reachable(
                "x86_64",
                &["qemu-aarch64", "qemu-arm"],
                &["linux/amd64", "linux/386", "linux/arm64", "linux/arm/v7"],
            ),
            1 => reachable("x86_64", &[], &["linux/amd64", "linux/arm64"]),
            _ => reachable("x86_64", &[], &["linux/amd64", "linux/386"]),
        },
        5..=7 if index % 2 == 1 => reachable(
            "aarch64",
            &["qemu-arm"],
            &["linux/arm64", "linux/arm/v7", "linux/arm/v6"],
        ),
        5..=7 => reachable(
            "aarch64",
            &["qemu-x86_64"],
            &["linux/arm64", "linux/arm/v7", "linux/amd64"],
        ),
        8 if (index / 10).is_multiple_of(2) => reachable(
            "ppc64le",
            &["qemu-riscv64"],
            &["linux/ppc64le", "linux/riscv64"],
        ),
        8 => reachable(
            "s390x",
            &["qemu-riscv64"],
            &["linux/s390x", "linux/riscv64"],
        ),
        _ => RunnerState {
            name,
            jobs,
            platforms: platforms(&["linux/amd64", "linux/arm64", "linux/ppc64le"]),
            probe: Err("connection to `127.0.0.1:2201` was refused".to_owned()),
        },
    }
}

/// `requests` platform requests and `runners` runners.
fn fleet(requests: usize, runners: usize) -> (Vec<Platform>, Vec<RunnerState>) {
    let pool = platforms(REQUESTED);
    let wanted = (0..requests)
        .map(|index| pool[index % pool.len()].clone())
        .collect();
    (wanted, (0..runners).map(runner).collect())
}

/// The plan of `wanted` over `fleet`, as mab makes it.
fn planned(wanted: &[Platform], fleet: &[RunnerState]) -> Result<Plan, PlanError> {
    plan(
        black_box(wanted),
        black_box(fleet),
        Emulation::Allowed,
        Fallback::Allowed,
    )
}

/// What a benchmark times, given the requests and the fleet; returns a
/// count of what it made, so that nothing is optimised away.
type Timed = fn(&[Platform], &[RunnerState]) -> usize;

/// The benchmarks: criterion's group name (`tests/bench/planner` reads the
/// figures by it) and what it times.
const BENCHMARKS: &[(&str, Timed)] = &[
    ("plan", planned_alone),
    ("plan_and_lists", planned_with_lists),
];

/// The plan alone: its number of jobs.
fn planned_alone(wanted: &[Platform], fleet: &[RunnerState]) -> usize {
    planned(wanted, fleet).map_or(0, |planned| planned.jobs.len())
}

/// The plan and every job's fallbacks and rejections (`mab plan`): the
/// number of fallbacks and rejections.
fn planned_with_lists(wanted: &[Platform], fleet: &[RunnerState]) -> usize {
    let planned = planned(wanted, fleet).expect("the fleet plans");
    planned
        .jobs
        .iter()
        .map(|job| black_box(job.fallbacks()).len() + black_box(job.rejected()).len())
        .sum()
}

fn planner(criterion: &mut Criterion) {
    let sizes: Vec<_> = SIZES
        .iter()
        .map(|&(requests, runners)| {
            let (wanted, fleet) = fleet(requests, runners);
            // The fleet must plan: a benchmark of an error path measures nothing.
            let planned = planned(&wanted, &fleet)
                .unwrap_or_else(|error| panic!("{requests}x{runners}: {error}"));
            assert_eq!(planned.jobs.len(), requests);
            // The jobs have fallbacks and rejections to build, or the
            // second benchmark would measure empty lists.
            assert!(planned_with_lists(&wanted, &fleet) >= requests);
            (format!("{requests}x{runners}"), (wanted, fleet))
        })
        .collect();
    for (group, timed) in BENCHMARKS {
        let mut group = criterion.benchmark_group(*group);
        for (name, input) in &sizes {
            group.bench_with_input(
                BenchmarkId::from_parameter(name),
                input,
                |bencher, (wanted, fleet)| bencher.iter(|| timed(wanted, fleet)),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, planner);
criterion_main!(benches);
