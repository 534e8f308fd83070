//! Running the planned jobs: every platform at once, at most `jobs` builds
//! per runner, and a publish only when every platform succeeded.
//!
//! The work itself is behind [`Worker`], so this logic is tested here
//! against a fake; the integration tests drive the real engines.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::Semaphore;

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
}

/// Runs every job concurrently, holding one of its runner's `slots` while
/// it runs. Results come back in the order of `jobs`.
pub async fn run_all<W: Worker>(
    worker: &W,
    jobs: &[JobSpec],
    slots: &HashMap<String, u32>,
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
            let _permit = match &semaphore {
                Some(semaphore) => Some(
                    semaphore
                        .acquire()
                        .await
                        .expect("the semaphore is never closed"),
                ),
                None => None,
            };
            worker.run(job).await
        }
    }))
    .await
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
pub fn pushed_jobs<'a>(jobs: &'a [JobSpec], failures: &[JobFailure]) -> Vec<&'a JobSpec> {
    jobs.iter()
        .filter(|job| {
            failures
                .iter()
                .find(|failure| &failure.job == *job)
                .is_none_or(|failure| failure.pushed)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    /// Records how many jobs ran at once per runner; fails the platforms it is told to.
    #[derive(Default)]
    struct FakeWorker {
        failing: Vec<String>,
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
            tokio::time::sleep(Duration::from_millis(30)).await;
            *self.running.lock().unwrap().get_mut(&job.runner).unwrap() -= 1;
            self.total_running.fetch_sub(1, Ordering::SeqCst);
            if self.failing.contains(&job.platform.to_string()) {
                return Err(JobFailure {
                    job: job.clone(),
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
        let results = run_all(&worker, &jobs, &slots(&[("a", 1), ("b", 1), ("c", 1)])).await;
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
            run_all(&worker, &jobs, &slots(&[("a", limit)])).await;
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
            message: String::new(),
            log_tail: Vec::new(),
            hint: String::new(),
            pushed,
        };
        let cases: [(Vec<JobFailure>, &[&str]); 3] = [
            (vec![failure(1, false)], &["linux/amd64", "linux/s390x"]),
            (
                vec![failure(1, true)],
                &["linux/amd64", "linux/arm64", "linux/s390x"],
            ),
            (vec![failure(0, false), failure(2, false)], &["linux/arm64"]),
        ];
        for (failures, expected) in cases {
            let pushed: Vec<String> = pushed_jobs(&jobs, &failures)
                .iter()
                .map(|job| job.platform.to_string())
                .collect();
            assert_eq!(pushed, expected);
        }
    }

    #[tokio::test]
    async fn one_failure_fails_the_whole_build() {
        let worker = FakeWorker {
            failing: vec!["linux/arm64".to_owned()],
            ..FakeWorker::default()
        };
        let jobs = [job("linux/amd64", "a"), job("linux/arm64", "b")];
        let results = run_all(&worker, &jobs, &slots(&[("a", 1), ("b", 1)])).await;
        assert!(results[0].is_ok(), "the other platform still finishes");
        let failures = all_or_failures(results).unwrap_err();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].job.runner, "b");
    }
}
