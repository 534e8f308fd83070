//! Running the planned jobs: every platform at once, at most `jobs` builds
//! per runner, and a publish only when every platform succeeded.
//!
//! The work itself is behind [`Worker`], so this logic is tested here
//! against a fake; the integration tests drive the real engines.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// One platform to build on one runner.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    pub platform: mab_config::Platform,
    pub runner: String,
    pub emulated: bool,
}

/// A platform built, pushed and verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Built {
    pub job: JobSpec,
    /// The registry's view of the image; `None` with `--no-push`.
    pub child: Option<mab_registry::Child>,
    pub seconds: f64,
}

/// A platform that failed.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFailure {
    pub job: JobSpec,
    /// The cause it is put down to, which decides its hint.
    pub kind: mab_events::ErrorKind,
    pub message: String,
    pub log_tail: Vec<String>,
    /// What to do about it.
    pub hint: String,
    /// Whether the image had been pushed (under its staging tag) already.
    pub pushed: bool,
}

pub trait Worker: Sync {
    /// Builds, pushes and verifies one platform.
    fn run(&self, job: &JobSpec) -> impl Future<Output = Result<Built, JobFailure>> + Send;

    /// Whether `job` began to push its image (so that a staging tag may
    /// exist), also when its run was stopped midway by a time limit and so
    /// returned nothing.
    fn push_started(&self, _job: &JobSpec) -> bool {
        false
    }
}

/// The time limits of a build's jobs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// How long one job may run, counted from when it gets its runner slot
    /// (`[image] timeout`, `--timeout`); `None` for no limit.
    pub timeout: Option<Duration>,
    /// When the whole build must be over (`--deadline`, counted from the
    /// start of `mab build`); `None` for none.
    pub deadline: Option<(Instant, Duration)>,
}

/// Runs every job concurrently, holding one of its runner's `slots` while
/// it runs. Results come back in the order of `jobs`.
///
/// A job still running `limits.timeout` after it got its slot, or when
/// `limits.deadline` comes (waiting for its slot included), is stopped by
/// dropping its future (which drops its engine connection, as Ctrl-C does,
/// so the engine cancels the build) and fails naming the limit. Such a
/// failure is counted as not pushed: a job stopped during its push may
/// leave its staging tag behind.
pub async fn run_all<W: Worker>(
    worker: &W,
    jobs: &[JobSpec],
    slots: &HashMap<String, u32>,
    limits: Limits,
) -> Vec<Result<Built, JobFailure>> {
    let semaphores: HashMap<&str, Arc<Semaphore>> = slots
        .iter()
        .map(|(runner, count)| {
            (
                runner.as_str(),
                Arc::new(Semaphore::new((*count).max(1) as usize)),
            )
        })
        .collect();
    join_all(jobs.iter().map(|job| {
        let semaphore = semaphores.get(job.runner.as_str()).cloned();
        async move {
            let deadline = limits.deadline.map(|(at, _)| at);
            let acquire = async {
                match &semaphore {
                    Some(semaphore) => Some(
                        semaphore
                            .acquire()
                            .await
                            .expect("the semaphore is never closed"),
                    ),
                    None => None,
                }
            };
            // A slot freed by a job the deadline stopped is no start.
            let permit = before(deadline, acquire)
                .await
                .filter(|_| deadline.is_none_or(|deadline| Instant::now() < deadline));
            let Some(_permit) = permit else {
                return Err(stopped(job, Stopped::DeadlineBeforeSlot, limits));
            };
            let timeout_at = limits.timeout.map(|timeout| Instant::now() + timeout);
            let (end, reason) = match (timeout_at, deadline) {
                (Some(timeout_at), Some(deadline)) if deadline < timeout_at => {
                    (Some(deadline), Stopped::Deadline)
                }
                (Some(timeout_at), _) => (Some(timeout_at), Stopped::Timeout),
                (None, deadline) => (deadline, Stopped::Deadline),
            };
            match before(end, worker.run(job)).await {
                Some(result) => result,
                None => Err(stopped(job, reason, limits)),
            }
        }
    }))
    .await
}

/// `future`'s output, or `None` when `end` comes first.
async fn before<T>(end: Option<Instant>, future: impl Future<Output = T>) -> Option<T> {
    match end {
        Some(end) => tokio::time::timeout_at(end, future).await.ok(),
        None => Some(future.await),
    }
}

/// Which limit stopped a job.
#[derive(Clone, Copy)]
enum Stopped {
    Timeout,
    Deadline,
    /// The deadline came while the job waited for its runner slot.
    DeadlineBeforeSlot,
}

/// The failure of a job that a limit stopped.
fn stopped(job: &JobSpec, reason: Stopped, limits: Limits) -> JobFailure {
    let shown = |limit: Duration| humantime::format_duration(limit).to_string();
    let runner = &job.runner;
    let (message, hint) = match (reason, limits.timeout, limits.deadline) {
        (Stopped::Timeout, Some(timeout), _) => (
            format!(
                "stopped after running for {} on runner `{runner}`, its time limit (`timeout` under [image], or --timeout)",
                shown(timeout)
            ),
            format!(
                "find out why the build is slow on runner `{runner}` (its log above), or raise `timeout` under [image] in mab.toml or pass a longer --timeout"
            ),
        ),
        (Stopped::DeadlineBeforeSlot, _, Some((_, deadline))) => (
            format!(
                "not started: the build's deadline (--deadline {}) came while it waited for a slot on runner `{runner}`",
                shown(deadline)
            ),
            format!(
                "pass a later --deadline, or give runner `{runner}` more `jobs` or the platform another runner"
            ),
        ),
        (_, _, deadline) => (
            format!(
                "stopped on runner `{runner}`: the build's deadline (--deadline {}) came",
                deadline.map_or_else(String::new, |(_, deadline)| shown(deadline))
            ),
            format!(
                "find out why the build is slow on runner `{runner}` (its log above), or pass a later --deadline"
            ),
        ),
    };
    JobFailure {
        job: job.clone(),
        kind: mab_events::ErrorKind::Runner,
        message,
        log_tail: Vec::new(),
        hint,
        pushed: false,
    }
}

/// Splits results into the built platforms, or all failures when any failed.
pub fn all_or_failures(
    results: Vec<Result<Built, JobFailure>>,
) -> Result<Vec<Built>, Vec<JobFailure>> {
    let mut built = Vec::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(done) => built.push(done),
            Err(failure) => failures.push(failure),
        }
    }
    if failures.is_empty() {
        Ok(built)
    } else {
        Err(failures)
    }
}

/// The jobs whose image reached the registry (under its staging tag):
/// every job that succeeded, and those that failed after pushing.
pub fn pushed_jobs<'a, W: Worker>(
    jobs: &'a [JobSpec],
    failures: &[JobFailure],
    worker: &W,
) -> Vec<&'a JobSpec> {
    jobs.iter()
        .filter(|job| {
            failures
                .iter()
                .find(|failure| &failure.job == *job)
                .is_none_or(|failure| failure.pushed || worker.push_started(job))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    /// Records how many jobs ran at once per runner; fails the platforms it
    /// is told to; takes 30 ms a job unless `durations` says otherwise.
    #[derive(Default)]
    struct FakeWorker {
        failing: Vec<String>,
        durations: Vec<(&'static str, Duration)>,
        /// The platforms whose job ran to its end.
        finished: Mutex<Vec<String>>,
        running: Mutex<HashMap<String, usize>>,
        peak: Mutex<HashMap<String, usize>>,
        total_peak: AtomicUsize,
        total_running: AtomicUsize,
    }

    impl Worker for FakeWorker {
        async fn run(&self, job: &JobSpec) -> Result<Built, JobFailure> {
            {
                let mut running = self.running.lock().unwrap();
                let count = running.entry(job.runner.clone()).or_default();
                *count += 1;
                let mut peak = self.peak.lock().unwrap();
                let best = peak.entry(job.runner.clone()).or_default();
                *best = (*best).max(*count);
                let total = self.total_running.fetch_add(1, Ordering::SeqCst) + 1;
                self.total_peak.fetch_max(total, Ordering::SeqCst);
            }
            let platform = job.platform.to_string();
            let duration = self
                .durations
                .iter()
                .find(|(name, _)| *name == platform)
                .map_or(Duration::from_millis(30), |(_, duration)| *duration);
            tokio::time::sleep(duration).await;
            self.finished.lock().unwrap().push(platform);
            *self.running.lock().unwrap().get_mut(&job.runner).unwrap() -= 1;
            self.total_running.fetch_sub(1, Ordering::SeqCst);
            if self.failing.contains(&job.platform.to_string()) {
                return Err(JobFailure {
                    job: job.clone(),
                    kind: mab_events::ErrorKind::Build,
                    message: "RUN false: exit code 1".to_owned(),
                    log_tail: vec!["false".to_owned()],
                    hint: "fix the Dockerfile".to_owned(),
                    pushed: false,
                });
            }
            Ok(Built {
                job: job.clone(),
                child: None,
                seconds: 0.03,
            })
        }
    }

    fn job(platform: &str, runner: &str) -> JobSpec {
        JobSpec {
            platform: platform.parse().unwrap(),
            runner: runner.to_owned(),
            emulated: false,
        }
    }

    fn slots(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs
            .iter()
            .map(|(runner, count)| (runner.to_string(), *count))
            .collect()
    }

    #[tokio::test]
    async fn jobs_on_different_runners_run_at_once() {
        let worker = FakeWorker::default();
        let jobs = [
            job("linux/amd64", "a"),
            job("linux/arm64", "b"),
            job("linux/ppc64le", "c"),
        ];
        let results = run_all(
            &worker,
            &jobs,
            &slots(&[("a", 1), ("b", 1), ("c", 1)]),
            Limits::default(),
        )
        .await;
        assert_eq!(worker.total_peak.load(Ordering::SeqCst), 3);
        let built = all_or_failures(results).unwrap();
        let platforms: Vec<String> = built
            .iter()
            .map(|built| built.job.platform.to_string())
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64", "linux/ppc64le"]);
    }

    #[tokio::test]
    async fn a_runner_runs_at_most_its_jobs_at_once() {
        let cases = [(1, 1), (2, 2), (5, 3)];
        for (limit, expected_peak) in cases {
            let worker = FakeWorker::default();
            let jobs = [
                job("linux/amd64", "a"),
                job("linux/arm64", "a"),
                job("linux/s390x", "a"),
            ];
            run_all(&worker, &jobs, &slots(&[("a", limit)]), Limits::default()).await;
            assert_eq!(
                worker.peak.lock().unwrap()["a"],
                expected_peak,
                "jobs = {limit}"
            );
        }
    }

    #[test]
    fn staging_tags_to_remove_after_a_failure() {
        let jobs = [
            job("linux/amd64", "a"),
            job("linux/arm64", "b"),
            job("linux/s390x", "c"),
        ];
        let failure = |index: usize, pushed: bool| JobFailure {
            job: jobs[index].clone(),
            kind: mab_events::ErrorKind::Build,
            message: String::new(),
            log_tail: Vec::new(),
            hint: String::new(),
            pushed,
        };
        /// A worker that began pushing the platforms it lists.
        struct Pushing(&'static [&'static str]);
        impl Worker for Pushing {
            async fn run(&self, job: &JobSpec) -> Result<Built, JobFailure> {
                unreachable!("only asked whether {} pushed", job.platform)
            }
            fn push_started(&self, job: &JobSpec) -> bool {
                self.0.contains(&job.platform.to_string().as_str())
            }
        }
        // (failures, pushes started, staging tags to remove)
        let cases: [(Vec<JobFailure>, &[&str], &[&str]); 4] = [
            (
                vec![failure(1, false)],
                &[],
                &["linux/amd64", "linux/s390x"],
            ),
            (
                vec![failure(1, true)],
                &[],
                &["linux/amd64", "linux/arm64", "linux/s390x"],
            ),
            (
                vec![failure(0, false), failure(2, false)],
                &[],
                &["linux/arm64"],
            ),
            // Stopped by a time limit while pushing: its tag may exist.
            (
                vec![failure(0, false), failure(2, false)],
                &["linux/s390x"],
                &["linux/arm64", "linux/s390x"],
            ),
        ];
        for (failures, started, expected) in cases {
            let pushed: Vec<String> = pushed_jobs(&jobs, &failures, &Pushing(started))
                .iter()
                .map(|job| job.platform.to_string())
                .collect();
            assert_eq!(pushed, expected);
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// Runs `jobs` (platform, runner, minutes it takes) on runners of one
    /// slot each under `limits` (the deadline in minutes from now); returns
    /// each platform's outcome (`ok`, or the failure's message and hint),
    /// the platforms that ran to their end, and the minutes it took.
    async fn limited(
        jobs: &[(&'static str, &str, u64)],
        timeout: Option<u64>,
        deadline: Option<u64>,
    ) -> (Vec<String>, Vec<String>, u64) {
        let worker = FakeWorker {
            durations: jobs
                .iter()
                .map(|(platform, _, minutes)| (*platform, MINUTE * *minutes as u32))
                .collect(),
            ..FakeWorker::default()
        };
        let specs: Vec<JobSpec> = jobs
            .iter()
            .map(|(platform, runner, _)| job(platform, runner))
            .collect();
        let runners: Vec<(&str, u32)> = jobs.iter().map(|(_, runner, _)| (*runner, 1)).collect();
        let start = Instant::now();
        let limits = Limits {
            timeout: timeout.map(|minutes| MINUTE * minutes as u32),
            deadline: deadline.map(|minutes| {
                let limit = MINUTE * minutes as u32;
                (start + limit, limit)
            }),
        };
        let results = run_all(&worker, &specs, &slots(&runners), limits).await;
        let outcomes = results
            .into_iter()
            .map(|result| match result {
                Ok(_) => "ok".to_owned(),
                Err(failure) => {
                    assert!(!failure.pushed);
                    format!("{} / hint: {}", failure.message, failure.hint)
                }
            })
            .collect();
        let finished = worker.finished.lock().unwrap().clone();
        (outcomes, finished, start.elapsed().as_secs() / 60)
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_over_its_time_limit_is_stopped_and_fails() {
        let (outcomes, finished, minutes) = limited(
            &[("linux/amd64", "a", 10), ("linux/arm64", "b", 120)],
            Some(60),
            None,
        )
        .await;
        assert_eq!(outcomes[0], "ok");
        assert_eq!(
            outcomes[1],
            "stopped after running for 1h on runner `b`, its time limit (`timeout` under [image], or --timeout) \
             / hint: find out why the build is slow on runner `b` (its log above), or raise `timeout` under [image] in mab.toml or pass a longer --timeout"
        );
        assert_eq!(finished, ["linux/amd64"], "the slow job is dropped");
        assert_eq!(minutes, 60, "stopped at its limit, not at its end");
    }

    #[tokio::test(start_paused = true)]
    async fn the_time_limit_does_not_count_the_wait_for_a_slot() {
        // One slot: the second job starts after 40 minutes and takes 40.
        let (outcomes, finished, minutes) = limited(
            &[("linux/amd64", "a", 40), ("linux/arm64", "a", 40)],
            Some(60),
            None,
        )
        .await;
        assert_eq!(outcomes, ["ok", "ok"]);
        assert_eq!(finished.len(), 2);
        assert_eq!(minutes, 80);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_running_and_waiting_jobs() {
        // One slot on `a`, a deadline after 60 minutes: the first job ends
        // at 40, the second is stopped at 60, the third never starts; the
        // job on `b` is stopped by the deadline before its own time limit.
        let (outcomes, finished, minutes) = limited(
            &[
                ("linux/amd64", "a", 40),
                ("linux/arm64", "a", 40),
                ("linux/s390x", "a", 40),
                ("linux/ppc64le", "b", 90),
            ],
            Some(80),
            Some(60),
        )
        .await;
        assert_eq!(outcomes[0], "ok");
        let stopped = "stopped on runner `a`: the build's deadline (--deadline 1h) came \
             / hint: find out why the build is slow on runner `a` (its log above), or pass a later --deadline";
        assert_eq!(outcomes[1], stopped);
        assert_eq!(
            outcomes[2],
            "not started: the build's deadline (--deadline 1h) came while it waited for a slot on runner `a` \
             / hint: pass a later --deadline, or give runner `a` more `jobs` or the platform another runner"
        );
        assert_eq!(outcomes[3], stopped.replace("`a`", "`b`"));
        assert_eq!(finished, ["linux/amd64"]);
        assert_eq!(minutes, 60);
    }

    #[tokio::test]
    async fn one_failure_fails_the_whole_build() {
        let worker = FakeWorker {
            failing: vec!["linux/arm64".to_owned()],
            ..FakeWorker::default()
        };
        let jobs = [job("linux/amd64", "a"), job("linux/arm64", "b")];
        let results = run_all(
            &worker,
            &jobs,
            &slots(&[("a", 1), ("b", 1)]),
            Limits::default(),
        )
        .await;
        assert!(results[0].is_ok(), "the other platform still finishes");
        let failures = all_or_failures(results).unwrap_err();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].job.runner, "b");
    }
}
