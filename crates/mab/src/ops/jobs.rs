//! Running the planned jobs: every platform at once, at most `jobs` builds
//! per runner, a platform whose runner fails before its build starts moved
//! to its next fallback, and a publish only when every platform succeeded.
//!
//! The work itself is behind [`Worker`], so this logic is tested here
//! against a fake; the integration tests drive the real engines.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{join_all, BoxFuture};
use mab_events::ErrorKind;
use mab_plan::{Candidate, Fallback, Move};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::failure::FailureKind;
use crate::ops::publishing::BuildControl;
use crate::ops::slots::SlotError;
use crate::progress::{Event, Reporter};

/// One platform to build on one runner.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    /// The platform to build.
    pub platform: mab_config::Platform,
    /// The runner that builds it, by its name in `runners.toml`.
    pub runner: String,
    /// Whether `runner` builds it under QEMU emulation.
    pub emulated: bool,
    /// The runners the platform moves to, in order, when `runner` fails
    /// before its build starts ([`mab_plan::Job::fallbacks`]).
    pub fallbacks: Vec<Candidate>,
    /// The runner that lost the platform first (at planning, or on a
    /// failure that moved it), and why; `None` when it was never moved.
    pub moved_from: Option<Move>,
}

impl JobSpec {
    /// `platform` on `runner`, natively, with no fallbacks.
    pub fn on(platform: mab_config::Platform, runner: &str) -> JobSpec {
        JobSpec {
            platform,
            runner: runner.to_owned(),
            emulated: false,
            fallbacks: Vec::new(),
            moved_from: None,
        }
    }
}

/// A platform built, pushed and verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Built {
    pub job: JobSpec,
    /// The registry's view of the image; `None` with `--no-push`.
    pub child: Option<mab_registry::Child>,
    pub seconds: f64,
    /// The binary check's report (`[verify] binaries`); `None` when it
    /// is off.
    pub binaries: Option<mab_verify::Report>,
    /// Its smoke run (`[test]`), which passed; `None` without `[test]` or
    /// with `--no-test`.
    pub test: Option<TestRun>,
}

/// A smoke run whose command exited: its exit code, how long it ran,
/// whether it passed, and the `[test]` it ran (so that `--resume` can tell
/// whether an earlier build's platform passed the test now in force).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestRun {
    pub exit_code: i64,
    /// From the start request to the command's end.
    pub seconds: f64,
    /// Exit code 0 within the timeout, and `expect` matched. `false` in
    /// the document of a mab that did not record it.
    #[serde(default)]
    pub passed: bool,
    /// `[test] run` as it was (empty in an older document).
    #[serde(default)]
    pub run: Vec<String>,
    /// `[test] expect` as written, when it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

impl TestRun {
    /// A run of `test` that exited with `exit_code` after `seconds`.
    pub fn of(test: &mab_config::SmokeTest, exit_code: i64, seconds: f64, passed: bool) -> TestRun {
        TestRun {
            exit_code,
            seconds,
            passed,
            run: test.run.clone(),
            expect: test
                .expect
                .as_ref()
                .map(|expect| expect.0.as_str().to_owned()),
        }
    }

    /// Whether this run passed `test` as it is now (the same `run` and
    /// `expect`; a changed `timeout` does not matter to a run that
    /// passed).
    pub fn passed(&self, test: &mab_config::SmokeTest) -> bool {
        self.passed
            && self.run == test.run
            && self.expect.as_deref() == test.expect.as_ref().map(|expect| expect.0.as_str())
    }
}

/// A platform that failed.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFailure {
    /// The job as it last ran: `runner` is the last runner tried.
    pub job: JobSpec,
    pub message: String,
    pub log_tail: Vec<String>,
    /// What to do about it.
    pub hint: String,
    /// The cause it is put down to, which decides the hint.
    pub kind: ErrorKind,
    /// Whether the runner failed before the build started (its connection
    /// or engine), or its build stream broke and its engine then failed a
    /// ping: the platform may move to another runner. Never set for a
    /// failed Dockerfile step or a job stopped by a time limit.
    pub movable: bool,
    /// Whether the image had been pushed (under its staging tag) already.
    pub pushed: bool,
    /// The pushed image's manifest digest, when the job failed after its
    /// push (reading the image back or checking it).
    pub digest: Option<String>,
    /// Set when a time limit or a signal stopped the job rather than a
    /// failure.
    pub stopped: Option<Stop>,
    /// The runners tried before `job.runner`, each with its failure
    /// message, in order.
    pub earlier: Vec<(String, String)>,
    /// Its smoke run, when the failure is that its command exited non-zero
    /// or its output did not match `expect`.
    pub test: Option<TestRun>,
    /// The binary check's report, when the check failed the job.
    pub binaries: Option<mab_verify::Report>,
}

impl JobFailure {
    /// A failure of `job` on its runner, of `kind`: not movable, not
    /// pushed, not stopped, no earlier runners.
    pub fn new(job: &JobSpec, kind: ErrorKind, message: String, hint: String) -> JobFailure {
        JobFailure {
            job: job.clone(),
            message,
            log_tail: Vec::new(),
            hint,
            kind,
            movable: false,
            pushed: false,
            digest: None,
            stopped: None,
            earlier: Vec::new(),
            test: None,
            binaries: None,
        }
    }
}

/// How a time limit, or a signal ([`Worker::control`]), stopped a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// While it ran: the metadata's `"cancelled"`.
    Running,
    /// Before it ever got a runner slot: `"not_started"`.
    BeforeSlot,
}

/// A slot held on a runner's host ([`crate::ops::slots::HeldSlot`], fakes
/// in tests); dropping it frees the slot.
pub trait HostSlot: Send {
    /// Resolves when the slot is lost while held (the command holding it
    /// ended, its connection closed), with the error naming runner and
    /// host; pending for as long as it is held.
    fn lost(&mut self) -> BoxFuture<'_, SlotError>;

    /// Frees the slot and waits (a few seconds at most) until the host
    /// has freed it, so that the next job of this build on the runner does
    /// not find it still taken. Dropping the slot instead frees it in the
    /// background (a cancelled build).
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A slot on a runner's host held for one job ([`Worker::slot`]):
/// dropping it frees the slot.
pub struct SlotGuard(Option<Box<dyn HostSlot>>);

impl SlotGuard {
    /// No slot on the host to hold (a runner mab cannot reach, whose job
    /// fails on its own; fakes).
    pub fn none() -> SlotGuard {
        SlotGuard(None)
    }

    /// Holds `held` (whose drop frees the slot) until the guard is dropped.
    pub fn holding(held: impl HostSlot + 'static) -> SlotGuard {
        SlotGuard(Some(Box::new(held)))
    }

    /// [`HostSlot::release`] of the slot held, if any.
    async fn release(self) {
        if let Some(held) = self.0 {
            held.release().await;
        }
    }

    /// [`HostSlot::lost`] of the slot held; never resolves when none is.
    async fn lost(&mut self) -> SlotError {
        match &mut self.0 {
            Some(held) => held.lost().await,
            None => std::future::pending().await,
        }
    }
}

impl std::fmt::Debug for SlotGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SlotGuard")
            .field(&self.0.as_ref().map(|_| "held"))
            .finish()
    }
}

/// Does one platform's job on its runner: the seam between the decisions
/// here and the engines (the live worker in `ops::build`, fakes in tests).
pub trait Worker: Sync {
    /// Takes one of the runner's `jobs` slots on its host (`jobs` as this
    /// build's runners file gives it), shared with every other
    /// `mab build` that uses that host (docs/runners.md, "Slots"), waiting
    /// while all are taken; calls `busy` each time the host says they are
    /// (about once a second). A failure here (the host lacks `flock`, its
    /// connection failed while waiting) should be movable. By default there
    /// is nothing to hold.
    fn slot(
        &self,
        job: &JobSpec,
        jobs: u32,
        busy: &(dyn Fn() + Sync),
    ) -> impl Future<Output = Result<SlotGuard, JobFailure>> + Send {
        let _ = (job, jobs, busy);
        async { Ok(SlotGuard::none()) }
    }

    /// Builds, pushes and verifies one platform.
    fn run(&self, job: &JobSpec) -> impl Future<Output = Result<Built, JobFailure>> + Send;

    /// Whether `runner`'s SSH connection to its host has ended (the host
    /// went away, the connection was reset). The runner entries that
    /// share that connection (docs/runners.md, "One connection per
    /// host") have lost it too, so no job moves to one of them. By
    /// default no connection ends.
    fn connection_lost(&self, runner: &str) -> bool {
        let _ = runner;
        false
    }

    /// What a signal sets to stop the build ([`BuildControl`]): a job
    /// still waiting for a slot or running then is dropped, as a time
    /// limit drops it. By default nothing stops the jobs.
    fn control(&self) -> Option<&BuildControl> {
        None
    }
}

/// The time limits of a build's jobs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// How long one job may run, counted from when it gets its runner slot
    /// (`[image] timeout`, `--timeout`); `None` for no limit.
    pub timeout: Option<Duration>,
    /// Whether `timeout` was given as `--timeout` (else it is `timeout`
    /// under `[image]`), for the message of a job it stops.
    pub timeout_from_flag: bool,
    /// When the whole build must be over (`--deadline`, counted from the
    /// start of `mab build`); `None` for none.
    pub deadline: Option<(Instant, Duration)>,
}

/// Runs every job concurrently, holding one of its runner's `slots` while
/// it runs: first one of this build's own (so that a build never waits on
/// its host for itself), then one on the runner's host
/// ([`Worker::slot`]), shared with other builds; while the host has none
/// free, an [`Event::Waiting`] is reported when the wait begins and every
/// [`WAITING_EVERY`]. Results come back in the order of `jobs`.
///
/// A job still running `limits.timeout` after it got its host slot, or when
/// `limits.deadline` comes (waiting for its slots included), is stopped by
/// dropping its future (which drops its engine connection, as Ctrl-C does,
/// so the engine cancels the build) and fails naming the limit. Such a
/// failure is counted as not pushed: a job stopped during its push may
/// leave its staging tag behind. A stop asked for through
/// [`Worker::control`] (Ctrl-C, SIGTERM) drops the jobs still waiting or
/// running the same way; those that finished keep their results.
///
/// A [`JobFailure::movable`] failure moves the job to its next fallback
/// not yet tried (waiting for a slot there; the time limit counts afresh
/// on each runner), reported as a move. It passes over runners that failed
/// so for another job, and runners whose connection to their host has
/// ended ([`Worker::connection_lost`]): when a job's runner failed with its
/// connection, the other entries sharing that connection are skipped, while
/// a failure of its engine alone still lets the job move to them. When none
/// is left, or `fallback` is [`Fallback::Refused`], the job fails with its
/// last failure and the runners tried before.
pub async fn run_all<W: Worker>(
    worker: &W,
    jobs: &[JobSpec],
    slots: &HashMap<String, u32>,
    limits: Limits,
    fallback: Fallback,
    reporter: &dyn Reporter,
) -> Vec<Result<Built, JobFailure>> {
    let own = &OwnSlots::new(slots);
    // Runners that failed a job in a way that moves it: no other job moves
    // to them.
    let failed_runners: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    let failed_runners = &failed_runners;
    join_all(jobs.iter().map(|job| {
        run_with_fallbacks(worker, job, own, limits, fallback, failed_runners, reporter)
    }))
    .await
}

/// [`run_all`] for one job: runs it on its runner, then on each fallback
/// not yet tried that no job's failure ruled out (`failed_runners`, to
/// which a runner is added when it fails a job in a way that moves it) and
/// whose connection has not ended ([`Worker::connection_lost`]), while it
/// fails so and `fallback` allows.
async fn run_with_fallbacks<W: Worker>(
    worker: &W,
    job: &JobSpec,
    own: &OwnSlots<'_>,
    limits: Limits,
    fallback: Fallback,
    failed_runners: &Mutex<HashSet<String>>,
    reporter: &dyn Reporter,
) -> Result<Built, JobFailure> {
    let failed = || {
        failed_runners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    let mut attempt = job.clone();
    let mut next = job
        .fallbacks
        .iter()
        .filter(|candidate| candidate.runner != job.runner);
    let mut earlier: Vec<(String, String)> = Vec::new();
    loop {
        let result = run_once(worker, &attempt, own, limits, !earlier.is_empty(), reporter).await;
        let mut failure = match result {
            Ok(built) => return Ok(built),
            Err(failure) => failure,
        };
        // A job a time limit stopped was dropped midway: it could not say
        // so itself.
        if failure.stopped == Some(Stop::Running) {
            reporter.report(Event::JobFailed {
                platform: attempt.platform.clone(),
                runner: attempt.runner.clone(),
                kind: failure.kind,
                message: failure.message.clone(),
            });
        }
        if failure.movable {
            failed().insert(attempt.runner.clone());
        }
        let candidate = match fallback {
            Fallback::Allowed if failure.movable => next.find(|candidate| {
                !failed().contains(&candidate.runner) && !worker.connection_lost(&candidate.runner)
            }),
            _ => None,
        };
        let Some(candidate) = candidate else {
            if failure.movable && fallback == Fallback::Refused && !job.fallbacks.is_empty() {
                // The fallback hint first, then the runner's own.
                failure.hint = format!(
                    "{}\nhint: {}",
                    mab_plan::fallback_hint(&[failure.job.runner.as_str()]),
                    failure.hint
                );
            }
            failure.earlier = earlier;
            return Err(failure);
        };
        reporter.report(moved(
            &attempt.platform,
            &attempt.runner,
            candidate,
            &failure.message,
        ));
        earlier.push((attempt.runner.clone(), failure.message.clone()));
        attempt = JobSpec {
            runner: candidate.runner.clone(),
            emulated: candidate.emulated,
            moved_from: attempt.moved_from.clone().or(Some(Move {
                runner: attempt.runner.clone(),
                reason: failure.message,
            })),
            ..attempt
        };
    }
}

/// Reports every platform of `plan` that the plan moved off its
/// unreachable preferred runner, as [`moved`] events in job order (what
/// `mab build` and `mab plan` print as warnings).
pub fn report_planned_moves(plan: &mab_plan::Plan, reporter: &dyn Reporter) {
    for job in &plan.jobs {
        if let Some(from) = &job.moved_from {
            let to = Candidate {
                runner: job.runner.clone(),
                emulated: job.emulated,
            };
            reporter.report(moved(&job.platform, &from.runner, &to, &from.reason));
        }
    }
}

/// The event of `platform` moving from runner `from` to `to` because of
/// `reason` (the failure on `from`).
pub fn moved(platform: &mab_config::Platform, from: &str, to: &Candidate, reason: &str) -> Event {
    Event::Moved {
        platform: platform.clone(),
        from: from.to_owned(),
        to: to.runner.clone(),
        emulated: to.emulated,
        reason: reason.to_owned(),
    }
}

/// How often a job that waits for a slot on its runner's host says so
/// again.
pub const WAITING_EVERY: Duration = Duration::from_secs(10);

/// This build's own slots: per runner, its `jobs` (a semaphore of as many
/// permits) and the platforms whose jobs hold a slot on its host now.
struct OwnSlots<'a> {
    runners: HashMap<&'a str, (Arc<Semaphore>, u32)>,
    holding: Mutex<HashMap<String, Vec<mab_config::Platform>>>,
}

impl<'a> OwnSlots<'a> {
    /// The slots of `slots` (runner name to `jobs`, at least 1 each).
    fn new(slots: &'a HashMap<String, u32>) -> OwnSlots<'a> {
        OwnSlots {
            runners: slots
                .iter()
                .map(|(runner, count)| {
                    let permits = Arc::new(Semaphore::new((*count).max(1) as usize));
                    (runner.as_str(), (permits, *count))
                })
                .collect(),
            holding: Mutex::new(HashMap::new()),
        }
    }

    fn holding(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<mab_config::Platform>>> {
        self.holding
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This build's platforms that hold a slot on `runner`'s host now.
    fn holding_on(&self, runner: &str) -> Vec<mab_config::Platform> {
        self.holding().get(runner).cloned().unwrap_or_default()
    }

    /// Notes that `job` holds a slot on its runner's host until the
    /// returned guard is dropped.
    fn hold<'b>(&'b self, job: &'b JobSpec) -> Holding<'b> {
        self.holding()
            .entry(job.runner.clone())
            .or_default()
            .push(job.platform.clone());
        Holding { own: self, job }
    }
}

/// A job noted as holding a slot on its runner's host ([`OwnSlots::hold`]).
struct Holding<'b> {
    own: &'b OwnSlots<'b>,
    job: &'b JobSpec,
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        let mut holding = self.own.holding();
        if let Some(platforms) = holding.get_mut(&self.job.runner) {
            if let Some(index) = platforms.iter().position(|p| *p == self.job.platform) {
                platforms.remove(index);
            }
        }
    }
}

/// One try of `job` on its runner: waits for a slot of this build there,
/// then for one on the runner's host (reporting the wait), then runs it
/// under `limits`, the time limit counted from when it holds the host
/// slot. `moved` says whether it ran elsewhere before (a deadline that
/// comes while it waits then cancels it rather than leaving it unstarted).
/// The host slot is released (awaited) before this returns, and dropped
/// when this is dropped.
async fn run_once<W: Worker>(
    worker: &W,
    job: &JobSpec,
    own: &OwnSlots<'_>,
    limits: Limits,
    moved: bool,
    reporter: &dyn Reporter,
) -> Result<Built, JobFailure> {
    let (semaphore, jobs) = match own.runners.get(job.runner.as_str()) {
        Some((semaphore, jobs)) => (Some(semaphore.clone()), *jobs),
        None => (None, 1),
    };
    let deadline = limits.deadline.map(|(at, _)| at);
    let stop = worker.control();
    let not_started = || {
        if let Some(kind) = stop.and_then(BuildControl::stop_requested) {
            return by_signal(job, kind, Stop::BeforeSlot);
        }
        let reason = if moved {
            Stopped::Deadline
        } else {
            Stopped::DeadlineBeforeSlot
        };
        stopped(job, reason, limits)
    };
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
    let permit = before(deadline, stop, acquire)
        .await
        .filter(|_| deadline.is_none_or(|deadline| Instant::now() < deadline));
    let Some(_permit) = permit else {
        return Err(not_started());
    };
    let holding = || own.holding_on(&job.runner);
    let Some(host_slot) = before(
        deadline,
        stop,
        host_slot(worker, job, jobs, &holding, reporter),
    )
    .await
    else {
        return Err(not_started());
    };
    let mut host_slot = host_slot?;
    let _holding = own.hold(job);
    let timeout_at = limits.timeout.map(|timeout| Instant::now() + timeout);
    let (end, reason) = match (timeout_at, deadline) {
        (Some(timeout_at), Some(deadline)) if deadline < timeout_at => {
            (Some(deadline), Stopped::Deadline)
        }
        (Some(timeout_at), _) => (Some(timeout_at), Stopped::Timeout),
        (None, deadline) => (deadline, Stopped::Deadline),
    };
    // A slot lost mid-build no longer keeps other builds off the host:
    // the job stops, after at most [`SLOT_LOST_GRACE`] in which the build
    // may end by itself. Its requests most often share the connection
    // that closed, and their own failure says more (it may let the
    // platform move).
    let run = async {
        let run = worker.run(job);
        tokio::pin!(run);
        tokio::select! {
            biased;
            result = &mut run => result,
            error = host_slot.lost() => {
                match tokio::time::timeout(SLOT_LOST_GRACE, &mut run).await {
                    Ok(result) => result,
                    Err(_) => Err(slot_lost(job, &error, reporter)),
                }
            }
        }
    };
    let result = match before(end, stop, run).await {
        Some(result) => result,
        None => Err(match stop.and_then(BuildControl::stop_requested) {
            Some(kind) => by_signal(job, kind, Stop::Running),
            None => stopped(job, reason, limits),
        }),
    };
    // Freed before this build's own slot (`_permit`), which the next job
    // on the runner waits for.
    host_slot.release().await;
    result
}

/// How long a job whose host slot was lost may still end by itself
/// before it is stopped: the keepalives that found the slot's connection
/// dead find the build's own requests on it dead within the same second
/// or so.
const SLOT_LOST_GRACE: Duration = Duration::from_secs(5);

/// The failure of `job` whose host slot was lost while it ran and which
/// did not end within [`SLOT_LOST_GRACE`] (reported as such, the job
/// itself being stopped): a runner failure, not movable (its build may
/// have pushed already).
fn slot_lost(job: &JobSpec, error: &SlotError, reporter: &dyn Reporter) -> JobFailure {
    let failure = JobFailure::new(job, ErrorKind::Runner, error.to_string(), error.hint());
    reporter.report(Event::JobFailed {
        platform: job.platform.clone(),
        runner: job.runner.clone(),
        kind: failure.kind,
        message: failure.message.clone(),
    });
    failure
}

/// Takes `job`'s slot on its runner's host ([`Worker::slot`]); while the
/// host says every one of its `jobs` is taken, reports [`Event::Waiting`]
/// at once and then every [`WAITING_EVERY`], with `holding()`, this
/// build's platforms that hold a slot there.
async fn host_slot<W: Worker>(
    worker: &W,
    job: &JobSpec,
    jobs: u32,
    holding: &dyn Fn() -> Vec<mab_config::Platform>,
    reporter: &dyn Reporter,
) -> Result<SlotGuard, JobFailure> {
    let busy = tokio::sync::Notify::new();
    let said_busy = || busy.notify_one();
    let slot = worker.slot(job, jobs, &said_busy);
    tokio::pin!(slot);
    let mut since: Option<Instant> = None;
    let mut next = Instant::now();
    let waiting = |seconds: u64| Event::Waiting {
        platform: job.platform.clone(),
        runner: job.runner.clone(),
        jobs,
        seconds,
        holding: holding(),
    };
    loop {
        tokio::select! {
            result = &mut slot => return result,
            () = busy.notified(), if since.is_none() => {
                let now = Instant::now();
                since = Some(now);
                next = now + WAITING_EVERY;
                reporter.report(waiting(0));
            }
            () = tokio::time::sleep_until(next), if since.is_some() => {
                let waited = since.map_or(Duration::ZERO, |since| since.elapsed());
                next += WAITING_EVERY;
                reporter.report(waiting(waited.as_secs_f64().round() as u64));
            }
        }
    }
}

/// `future`'s output, or `None` when `end` comes first or `stop` is asked
/// to stop (before `future` starts: `None` at once; an output ready when
/// the stop comes wins over it).
async fn before<T>(
    end: Option<Instant>,
    stop: Option<&BuildControl>,
    future: impl Future<Output = T>,
) -> Option<T> {
    let limited = async {
        match end {
            Some(end) => tokio::time::timeout_at(end, future).await.ok(),
            None => Some(future.await),
        }
    };
    let Some(stop) = stop else {
        return limited.await;
    };
    // Nothing starts after a stop (a slot freed by a job it dropped).
    if stop.stop_requested().is_some() {
        return None;
    }
    tokio::select! {
        biased;
        output = limited => output,
        _ = stop.stopped() => None,
    }
}

/// The failure of a job that a signal (`kind`: Ctrl-C, SIGTERM) stopped
/// while it ran (`Stop::Running`, "cancelled") or waited for its slot
/// (`Stop::BeforeSlot`, "not_started").
fn by_signal(job: &JobSpec, kind: FailureKind, when: Stop) -> JobFailure {
    let signal = match kind {
        FailureKind::Terminated => "terminated (SIGTERM)",
        _ => "interrupted (Ctrl-C)",
    };
    let runner = &job.runner;
    let message = match when {
        Stop::Running => format!("stopped on runner `{runner}`: {signal}"),
        Stop::BeforeSlot => {
            format!("not started: {signal} while it waited for a slot on runner `{runner}`")
        }
    };
    JobFailure {
        stopped: Some(when),
        ..JobFailure::new(
            job,
            ErrorKind::Runner,
            message,
            "run `mab build --resume` to build the platforms that were not pushed".to_owned(),
        )
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
        (Stopped::Timeout, Some(timeout), _) => {
            let (limit, raise) = if limits.timeout_from_flag {
                ("--timeout", "pass a longer --timeout")
            } else {
                (
                    "`timeout` under [image]",
                    "raise `timeout` under [image] in mab.toml",
                )
            };
            (
                format!(
                    "stopped after running for {} on runner `{runner}`, its time limit ({limit})",
                    shown(timeout)
                ),
                format!(
                    "find out why the build is slow on runner `{runner}` (its log in the progress output), or {raise}"
                ),
            )
        }
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
                "find out why the build is slow on runner `{runner}` (its log in the progress output), or pass a later --deadline"
            ),
        ),
    };
    JobFailure {
        stopped: Some(match reason {
            Stopped::DeadlineBeforeSlot => Stop::BeforeSlot,
            Stopped::Timeout | Stopped::Deadline => Stop::Running,
        }),
        ..JobFailure::new(job, ErrorKind::Runner, message, hint)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use mab_events::Silent;

    /// Records how many jobs ran at once per runner; fails the platforms it
    /// is told to; takes 30 ms a job unless `durations` says otherwise.
    #[derive(Default)]
    struct FakeWorker {
        failing: Vec<String>,
        /// Runners whose engine cannot be reached: a job there fails at
        /// once, movable.
        down: Vec<&'static str>,
        /// Each run, `platform on runner at minute`, in start order.
        starts: Mutex<Vec<String>>,
        durations: Vec<(&'static str, Duration)>,
        /// The platforms whose job ran to its end.
        finished: Mutex<Vec<String>>,
        running: Mutex<HashMap<String, usize>>,
        peak: Mutex<HashMap<String, usize>>,
        total_peak: AtomicUsize,
        total_running: AtomicUsize,
        /// Runners (or platforms) whose host has no slot free for this
        /// long after a job (of that platform) asks for one (held by
        /// another build): the job waits.
        host_busy: Vec<(&'static str, Duration)>,
        /// Each host slot dropped, `platform on runner`, in order.
        released: Arc<Mutex<Vec<String>>>,
        /// `start PLATFORM` when a job starts, `free PLATFORM` when its
        /// host slot is freed, in order.
        sequence: Arc<Mutex<Vec<String>>>,
        /// Runners whose host slot is lost this long after it is taken.
        slot_lost: Vec<(&'static str, Duration)>,
        /// Runners whose connection breaks this long after a job starts:
        /// the job fails then, movable.
        breaks: Vec<(&'static str, Duration)>,
        /// Each runner's host, as (runner, host): runners of one host
        /// share its connection. A runner not listed has a host of its own.
        hosts: Vec<(&'static str, &'static str)>,
        /// Runners whose host's connection ends when a job starts there:
        /// the job fails at once, movable, and the connection stays lost.
        cut: Vec<&'static str>,
        /// The hosts whose connection has ended.
        lost: Mutex<HashSet<String>>,
    }

    impl FakeWorker {
        /// The host of `runner` ([`FakeWorker::hosts`]).
        fn host_of<'a>(&'a self, runner: &'a str) -> &'a str {
            self.hosts
                .iter()
                .find(|(name, _)| *name == runner)
                .map_or(runner, |(_, host)| host)
        }
    }

    /// A fake host slot, lost after `lost_after` when set. Like a real
    /// one, the host frees it a second after it is released or dropped:
    /// `release` waits for that, a drop does not. Records `name` in
    /// `released`, and `free PLATFORM` in `sequence`, when freed.
    struct FakeSlot {
        released: Arc<Mutex<Vec<String>>>,
        sequence: Arc<Mutex<Vec<String>>>,
        name: String,
        platform: String,
        runner: String,
        lost_after: Option<Duration>,
        freed: bool,
    }

    impl FakeSlot {
        /// Frees the slot on the fake host, a second from now.
        fn free(&mut self) -> impl Future<Output = ()> + Send + 'static {
            self.freed = true;
            let (released, sequence) = (self.released.clone(), self.sequence.clone());
            let (name, platform) = (self.name.clone(), self.platform.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                released.lock().unwrap().push(name);
                sequence.lock().unwrap().push(format!("free {platform}"));
            }
        }
    }

    impl HostSlot for FakeSlot {
        fn lost(&mut self) -> BoxFuture<'_, SlotError> {
            Box::pin(async {
                match self.lost_after {
                    Some(after) => tokio::time::sleep(after).await,
                    None => std::future::pending().await,
                }
                SlotError::Lost {
                    runner: self.runner.clone(),
                    host: format!("`{}-host`", self.runner),
                    reason: "the connection closed while it ran".to_owned(),
                }
            })
        }

        fn release(mut self: Box<Self>) -> BoxFuture<'static, ()> {
            Box::pin(self.free())
        }
    }

    impl Drop for FakeSlot {
        fn drop(&mut self) {
            if !self.freed {
                tokio::spawn(self.free());
            }
        }
    }

    impl Worker for FakeWorker {
        fn connection_lost(&self, runner: &str) -> bool {
            self.lost.lock().unwrap().contains(self.host_of(runner))
        }

        async fn slot(
            &self,
            job: &JobSpec,
            _jobs: u32,
            busy: &(dyn Fn() + Sync),
        ) -> Result<SlotGuard, JobFailure> {
            if let Some((_, wait)) = self
                .host_busy
                .iter()
                .find(|(name, _)| *name == job.runner || *name == job.platform.to_string())
            {
                // The host says so about once a second, as the script does.
                let free_at = Instant::now() + *wait;
                while Instant::now() < free_at {
                    busy();
                    tokio::time::sleep(Duration::from_secs(1).min(free_at - Instant::now())).await;
                }
            }
            Ok(SlotGuard::holding(FakeSlot {
                released: self.released.clone(),
                sequence: self.sequence.clone(),
                name: format!("{} on {}", job.platform, job.runner),
                platform: job.platform.to_string(),
                freed: false,
                runner: job.runner.clone(),
                lost_after: self
                    .slot_lost
                    .iter()
                    .find(|(runner, _)| *runner == job.runner)
                    .map(|(_, after)| *after),
            }))
        }

        async fn run(&self, job: &JobSpec) -> Result<Built, JobFailure> {
            self.sequence
                .lock()
                .unwrap()
                .push(format!("start {}", job.platform));
            self.starts.lock().unwrap().push(format!(
                "{} on {} at {}",
                job.platform,
                job.runner,
                (Instant::now() - *EPOCH.get().unwrap_or(&Instant::now())).as_secs() / 60
            ));
            if self.cut.contains(&job.runner.as_str()) {
                let host = self.host_of(&job.runner).to_owned();
                self.lost.lock().unwrap().insert(host.clone());
                return Err(JobFailure {
                    movable: true,
                    ..JobFailure::new(
                        job,
                        ErrorKind::Runner,
                        format!("the connection to {host} was reset"),
                        format!("check runner `{}`", job.runner),
                    )
                });
            }
            if self.down.contains(&job.runner.as_str()) {
                return Err(JobFailure {
                    movable: true,
                    ..JobFailure::new(
                        job,
                        ErrorKind::Runner,
                        format!("cannot reach the Docker engine of {}", job.runner),
                        format!("check runner `{}`", job.runner),
                    )
                });
            }
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
            if let Some((_, after)) = self.breaks.iter().find(|(name, _)| *name == job.runner) {
                tokio::time::sleep(*after).await;
                return Err(JobFailure {
                    movable: true,
                    ..JobFailure::new(
                        job,
                        ErrorKind::Runner,
                        format!("the connection to {} broke during the build", job.runner),
                        format!("check runner `{}`", job.runner),
                    )
                });
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
                    log_tail: vec!["false".to_owned()],
                    ..JobFailure::new(
                        job,
                        ErrorKind::Build,
                        "RUN false: exit code 1".to_owned(),
                        "fix the Dockerfile".to_owned(),
                    )
                });
            }
            Ok(Built {
                job: job.clone(),
                child: None,
                seconds: 0.03,
                test: None,
                binaries: None,
            })
        }
    }

    fn job(platform: &str, runner: &str) -> JobSpec {
        JobSpec::on(platform.parse().unwrap(), runner)
    }

    /// A job whose runner's connection ends moves past the entries that
    /// share it (`b`, on host `h` as `a` is) to one on another host; a
    /// failure of `a`'s engine alone still moves it to `b`. A job that
    /// fails later elsewhere does not move to `b` either.
    #[tokio::test(start_paused = true)]
    async fn a_lost_connection_fails_every_entry_that_shares_it() {
        // (what the row shows, runners cut, runners down, where each job
        // built, the starts)
        type Row<'a> = (
            &'a str,
            Vec<&'static str>,
            Vec<&'static str>,
            Vec<&'a str>,
            Vec<&'a str>,
        );
        let rows: Vec<Row<'_>> = vec![
            (
                "the connection of `a` ends: `b` shares it, `c` builds",
                vec!["a"],
                vec![],
                vec!["c"],
                vec!["linux/arm64 on a", "linux/arm64 on c"],
            ),
            (
                "the engine of `a` fails: `b` builds",
                vec![],
                vec!["a"],
                vec!["b"],
                vec!["linux/arm64 on a", "linux/arm64 on b"],
            ),
        ];
        for (name, cut, down, built_on, starts) in rows {
            let worker = FakeWorker {
                hosts: vec![("a", "h"), ("b", "h"), ("c", "k")],
                cut,
                down,
                ..FakeWorker::default()
            };
            let jobs = [moving("linux/arm64", "a", &["b", "c"])];
            let results = run_plainly(&worker, &jobs, &[("a", 1), ("b", 1), ("c", 1)]).await;
            let got: Vec<&str> = results
                .iter()
                .map(|result| result.as_ref().expect(name).job.runner.as_str())
                .collect();
            assert_eq!(got, built_on, "{name}");
            let mut started: Vec<String> = worker
                .starts
                .lock()
                .unwrap()
                .iter()
                .map(|line| line.rsplit_once(" at ").unwrap().0.to_owned())
                .collect();
            started.sort();
            assert_eq!(started, starts, "{name}");
        }

        // Another job, whose own runner `d` breaks a second later, passes
        // over `b` too: its connection ended with `a`'s.
        let worker = FakeWorker {
            hosts: vec![("a", "h"), ("b", "h"), ("c", "k"), ("d", "m")],
            cut: vec!["a"],
            breaks: vec![("d", Duration::from_secs(1))],
            ..FakeWorker::default()
        };
        let jobs = [
            moving("linux/arm64", "a", &["c"]),
            moving("linux/s390x", "d", &["b", "c"]),
        ];
        let results = run_plainly(&worker, &jobs, &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]).await;
        let got: Vec<&str> = results
            .iter()
            .map(|result| result.as_ref().expect("built on `c`").job.runner.as_str())
            .collect();
        assert_eq!(got, ["c", "c"]);
        let started = worker.starts.lock().unwrap().clone();
        assert!(
            !started.iter().any(|line| line.contains(" on b ")),
            "{started:?}"
        );
    }

    /// linux/arm64 on runner `b`, which may move to runner `a` (native).
    fn arm64_on_b_or_a() -> JobSpec {
        JobSpec {
            fallbacks: vec![Candidate {
                runner: "a".to_owned(),
                emulated: false,
            }],
            ..job("linux/arm64", "b")
        }
    }

    /// [`run_all`] of `jobs` with the `jobs` of `runners`, no limits,
    /// fallbacks allowed, nothing reported.
    async fn run_plainly(
        worker: &FakeWorker,
        jobs: &[JobSpec],
        runners: &[(&str, u32)],
    ) -> Vec<Result<Built, JobFailure>> {
        run_all(
            worker,
            jobs,
            &slots(runners),
            Limits::default(),
            Fallback::Allowed,
            &Silent,
        )
        .await
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
            Fallback::Allowed,
            &Silent,
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
            run_all(
                &worker,
                &jobs,
                &slots(&[("a", limit)]),
                Limits::default(),
                Fallback::Allowed,
                &Silent,
            )
            .await;
            assert_eq!(
                worker.peak.lock().unwrap()["a"],
                expected_peak,
                "jobs = {limit}"
            );
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// When the test's clock started, for the minutes in `starts`.
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

    /// `platform` on `runner`, moving to `fallbacks` (native) in order.
    fn moving(platform: &str, runner: &str, fallbacks: &[&str]) -> JobSpec {
        JobSpec {
            fallbacks: fallbacks
                .iter()
                .map(|runner| Candidate {
                    runner: (*runner).to_owned(),
                    emulated: false,
                })
                .collect(),
            ..job(platform, runner)
        }
    }

    /// Moves in [`run_all`]: a moved job waits for a slot of its fallback,
    /// its time limit counts afresh there, the deadline cancels it while it
    /// waits, and with fallback refused it stays and fails.
    #[tokio::test(start_paused = true)]
    async fn moved_jobs_wait_for_their_fallbacks_slot() {
        // (what the row shows, jobs, runners down, timeout and deadline in
        // minutes, fallback, each outcome, the starts)
        type Row<'a> = (
            &'a str,
            Vec<JobSpec>,
            Vec<&'static str>,
            (Option<u32>, Option<u32>),
            Fallback,
            Vec<&'a str>,
            Vec<&'a str>,
        );
        let rows: Vec<Row<'_>> = vec![
            (
                "the fallback's one slot is taken: the moved job starts when it frees",
                vec![job("linux/amd64", "b"), moving("linux/arm64", "a", &["b"])],
                vec!["a"],
                (None, None),
                Fallback::Allowed,
                vec!["ok on b", "ok on b, moved from a: cannot reach the Docker engine of a"],
                vec!["linux/amd64 on b at 0", "linux/arm64 on a at 0", "linux/arm64 on b at 30"],
            ),
            (
                "the time limit counts afresh on the fallback, after its wait",
                vec![job("linux/amd64", "b"), moving("linux/arm64", "a", &["b"])],
                vec!["a"],
                (Some(40), None),
                Fallback::Allowed,
                vec!["ok on b", "ok on b, moved from a: cannot reach the Docker engine of a"],
                vec!["linux/amd64 on b at 0", "linux/arm64 on a at 0", "linux/arm64 on b at 30"],
            ),
            (
                "the deadline comes while the moved job waits: cancelled, not unstarted",
                vec![job("linux/amd64", "b"), moving("linux/arm64", "a", &["b"])],
                vec!["a"],
                (None, Some(20)),
                Fallback::Allowed,
                vec![
                    "Running: stopped on runner `b`: the build's deadline (--deadline 20m) came",
                    "Running: stopped on runner `b`: the build's deadline (--deadline 20m) came",
                ],
                vec!["linux/amd64 on b at 0", "linux/arm64 on a at 0"],
            ),
            (
                "fallback refused: the job stays on its runner and fails, hinting --no-fallback",
                vec![job("linux/amd64", "b"), moving("linux/arm64", "a", &["b"])],
                vec!["a"],
                (None, None),
                Fallback::Refused,
                vec![
                    "ok on b",
                    "failed on a after []: cannot reach the Docker engine of a / check runner `a` with `mab runners check`, or let another runner build it: take --no-fallback off the command line, or `fallback = false` out of [image] in mab.toml, whichever is there\nhint: check runner `a`",
                ],
                vec!["linux/amd64 on b", "linux/arm64 on a"],
            ),
            (
                "two fallbacks down, the third builds; the failures are kept in order",
                vec![moving("linux/arm64", "a", &["b", "c", "d"])],
                vec!["a", "b", "c"],
                (None, None),
                Fallback::Allowed,
                vec!["ok on d, moved from a: cannot reach the Docker engine of a"],
                vec!["linux/arm64 on a at 0", "linux/arm64 on b at 0", "linux/arm64 on c at 0", "linux/arm64 on d at 0"],
            ),
            (
                "a runner that failed one platform is passed over by the others' moves",
                vec![
                    moving("linux/arm64", "a", &["c"]),
                    moving("linux/s390x", "b", &["a", "c"]),
                ],
                vec!["a", "b"],
                (None, None),
                Fallback::Allowed,
                vec![
                    "ok on c, moved from a: cannot reach the Docker engine of a",
                    "ok on c, moved from b: cannot reach the Docker engine of b",
                ],
                vec![
                    "linux/arm64 on a at 0",
                    "linux/arm64 on c at 0",
                    "linux/s390x on b at 0",
                    "linux/s390x on c at 30",
                ],
            ),
            (
                "every fallback down: the last failure, with the runners tried before",
                vec![moving("linux/arm64", "a", &["b"])],
                vec!["a", "b"],
                (None, None),
                Fallback::Allowed,
                vec!["failed on b after [a]: cannot reach the Docker engine of b / check runner `b`"],
                vec!["linux/arm64 on a at 0", "linux/arm64 on b at 0"],
            ),
        ];
        for (name, jobs, down, (timeout, deadline), fallback, outcomes, starts) in rows {
            let start = Instant::now();
            let _ = EPOCH.set(start);
            let epoch = *EPOCH.get().unwrap();
            let worker = FakeWorker {
                down,
                durations: vec![("linux/amd64", MINUTE * 30), ("linux/arm64", MINUTE * 30)],
                ..FakeWorker::default()
            };
            let limits = Limits {
                timeout: timeout.map(|minutes| MINUTE * minutes),
                timeout_from_flag: false,
                deadline: deadline.map(|minutes| (start + MINUTE * minutes, MINUTE * minutes)),
            };
            let slots = slots(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
            let results = run_all(&worker, &jobs, &slots, limits, fallback, &Silent).await;
            let got: Vec<String> = results
                .iter()
                .map(|result| match result {
                    Ok(built) => match &built.job.moved_from {
                        None => format!("ok on {}", built.job.runner),
                        Some(moved) => format!(
                            "ok on {}, moved from {}: {}",
                            built.job.runner, moved.runner, moved.reason
                        ),
                    },
                    Err(failure) if failure.stopped.is_some() => {
                        format!("{:?}: {}", failure.stopped.unwrap(), failure.message)
                    }
                    Err(failure) => {
                        let earlier: Vec<&str> = failure
                            .earlier
                            .iter()
                            .map(|(runner, _)| runner.as_str())
                            .collect();
                        format!(
                            "failed on {} after [{}]: {} / {}",
                            failure.job.runner,
                            earlier.join(", "),
                            failure.message,
                            failure.hint
                        )
                    }
                })
                .collect();
            for (got, expected) in got.iter().zip(&outcomes) {
                assert!(
                    got.starts_with(expected),
                    "{name}: {got:?} does not start with {expected:?}"
                );
            }
            assert_eq!(got.len(), outcomes.len(), "{name}");
            // Minutes from this row's start.
            let offset = (start - epoch).as_secs() / 60;
            let mut recorded: Vec<String> = worker
                .starts
                .lock()
                .unwrap()
                .iter()
                .map(|line| {
                    let (what, at) = line.rsplit_once(" at ").unwrap();
                    format!("{what} at {}", at.parse::<u64>().unwrap() - offset)
                })
                .collect();
            recorded.sort();
            let mut expected: Vec<String> =
                starts.iter().map(|start| (*start).to_owned()).collect();
            if expected.iter().all(|start| !start.contains(" at ")) {
                recorded = recorded
                    .into_iter()
                    .map(|line| line.rsplit_once(" at ").unwrap().0.to_owned())
                    .collect();
            }
            expected.sort();
            assert_eq!(recorded, expected, "{name}");
        }
    }

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
            timeout_from_flag: false,
            deadline: deadline.map(|minutes| {
                let limit = MINUTE * minutes as u32;
                (start + limit, limit)
            }),
        };
        let results = run_all(
            &worker,
            &specs,
            &slots(&runners),
            limits,
            Fallback::Allowed,
            &Silent,
        )
        .await;
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
            "stopped after running for 1h on runner `b`, its time limit (`timeout` under [image]) \
             / hint: find out why the build is slow on runner `b` (its log in the progress output), or raise `timeout` under [image] in mab.toml"
        );
        assert_eq!(finished, ["linux/amd64"], "the slow job is dropped");
        assert_eq!(minutes, 60, "stopped at its limit, not at its end");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_a_time_limit_stops_is_reported_as_failed() {
        let worker = FakeWorker {
            durations: vec![("linux/arm64", MINUTE * 120)],
            ..FakeWorker::default()
        };
        let heard = Heard::default();
        let limits = Limits {
            timeout: Some(MINUTE),
            ..Limits::default()
        };
        let jobs = [job("linux/arm64", "b")];
        let results = run_all(
            &worker,
            &jobs,
            &slots(&[("b", 1)]),
            limits,
            Fallback::Allowed,
            &heard,
        )
        .await;
        let failure = results[0].as_ref().unwrap_err();
        assert_eq!(
            *heard.0.lock().unwrap(),
            [Event::JobFailed {
                platform: "linux/arm64".parse().unwrap(),
                runner: "b".to_owned(),
                kind: ErrorKind::Runner,
                message: failure.message.clone(),
            }]
        );
    }

    #[test]
    fn a_time_limit_from_the_flag_is_named_as_the_flag() {
        let limits = Limits {
            timeout: Some(MINUTE),
            timeout_from_flag: true,
            deadline: None,
        };
        let failure = stopped(&job("linux/arm64", "b"), Stopped::Timeout, limits);
        assert_eq!(
            failure.message,
            "stopped after running for 1m on runner `b`, its time limit (--timeout)"
        );
        assert_eq!(
            failure.hint,
            "find out why the build is slow on runner `b` (its log in the progress output), or pass a longer --timeout"
        );
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
             / hint: find out why the build is slow on runner `a` (its log in the progress output), or pass a later --deadline";
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
        let results = run_plainly(&worker, &jobs, &[("a", 1), ("b", 1)]).await;
        assert!(results[0].is_ok(), "the other platform still finishes");
        let failures = all_or_failures(results).unwrap_err();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].job.runner, "b");
    }

    /// Keeps every event.
    #[derive(Default)]
    struct Heard(Mutex<Vec<Event>>);

    impl Reporter for Heard {
        fn report(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_waits_for_its_host_slot_and_its_time_limit_counts_from_it() {
        // Another build holds the host's slot for 30 minutes; the job
        // takes 40 under a 60-minute limit: it is not stopped at 60.
        let worker = FakeWorker {
            durations: vec![("linux/amd64", MINUTE * 40)],
            host_busy: vec![("a", MINUTE * 30 + Duration::from_secs(5))],
            ..FakeWorker::default()
        };
        let heard = Heard::default();
        let start = Instant::now();
        let limits = Limits {
            timeout: Some(MINUTE * 60),
            ..Limits::default()
        };
        let results = run_all(
            &worker,
            &[job("linux/amd64", "a")],
            &slots(&[("a", 1)]),
            limits,
            Fallback::Allowed,
            &heard,
        )
        .await;
        assert!(results[0].is_ok(), "{results:?}");
        assert_eq!(start.elapsed().as_secs() / 60, 70);
        assert_eq!(*worker.released.lock().unwrap(), ["linux/amd64 on a"]);
        // Told at once, then every 10 s: 30 minutes and 5 s of waiting.
        let waits: Vec<u64> = heard
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|event| match event {
                Event::Waiting {
                    platform,
                    runner,
                    jobs,
                    seconds,
                    holding,
                } => {
                    assert_eq!(
                        (platform.to_string().as_str(), runner.as_str(), *jobs),
                        ("linux/amd64", "a", 1)
                    );
                    assert!(holding.is_empty());
                    Some(*seconds)
                }
                _ => None,
            })
            .collect();
        let expected: Vec<u64> = (0..=180).map(|tick| tick * 10).collect();
        assert_eq!(waits, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_free_host_slot_is_taken_without_a_word() {
        let worker = FakeWorker::default();
        let heard = Heard::default();
        run_all(
            &worker,
            &[job("linux/amd64", "a")],
            &slots(&[("a", 1)]),
            Limits::default(),
            Fallback::Allowed,
            &heard,
        )
        .await;
        assert_eq!(*heard.0.lock().unwrap(), []);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_a_job_that_waits_for_its_host_slot() {
        let worker = FakeWorker {
            host_busy: vec![("power", MINUTE * 120)],
            ..FakeWorker::default()
        };
        let start = Instant::now();
        let limits = Limits {
            deadline: Some((start + MINUTE * 60, MINUTE * 60)),
            ..Limits::default()
        };
        let results = run_all(
            &worker,
            &[job("linux/ppc64le", "power")],
            &slots(&[("power", 1)]),
            limits,
            Fallback::Allowed,
            &Silent,
        )
        .await;
        let failure = results[0].as_ref().unwrap_err();
        assert_eq!(
            failure.message,
            "not started: the build's deadline (--deadline 1h) came while it waited for a slot on runner `power`"
        );
        assert_eq!(failure.stopped, Some(Stop::BeforeSlot));
        assert_eq!(start.elapsed().as_secs() / 60, 60);
        assert!(worker.starts.lock().unwrap().is_empty(), "it never ran");
    }

    #[tokio::test(start_paused = true)]
    async fn the_host_slot_is_released_however_the_job_ends() {
        let worker = FakeWorker {
            failing: vec!["linux/arm64".to_owned()],
            down: vec!["c"],
            durations: vec![("linux/ppc64le", MINUTE * 120)],
            ..FakeWorker::default()
        };
        let jobs = [
            job("linux/amd64", "a"),
            job("linux/arm64", "b"),
            JobSpec {
                fallbacks: vec![Candidate {
                    runner: "d".to_owned(),
                    emulated: false,
                }],
                ..job("linux/s390x", "c")
            },
            job("linux/ppc64le", "e"),
        ];
        let limits = Limits {
            timeout: Some(MINUTE * 60),
            ..Limits::default()
        };
        let results = run_all(
            &worker,
            &jobs,
            &slots(&[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)]),
            limits,
            Fallback::Allowed,
            &Silent,
        )
        .await;
        let outcomes: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(outcomes, [true, false, true, false]);
        let mut released = worker.released.lock().unwrap().clone();
        released.sort();
        assert_eq!(
            released,
            [
                "linux/amd64 on a",   // succeeded
                "linux/arm64 on b",   // failed
                "linux/ppc64le on e", // stopped by its time limit
                "linux/s390x on c",   // moved away
                "linux/s390x on d",   // built after the move
            ]
        );
    }

    /// A job whose connection breaks ends by itself a moment after its
    /// host slot is lost (on that same connection): its own failure
    /// decides, and the platform moves.
    #[tokio::test(start_paused = true)]
    async fn a_slot_lost_with_its_connection_lets_the_build_failure_decide() {
        let worker = FakeWorker {
            slot_lost: vec![("b", MINUTE * 5)],
            breaks: vec![("b", MINUTE * 5 + Duration::from_secs(1))],
            ..FakeWorker::default()
        };
        let jobs = [arm64_on_b_or_a()];
        let start = Instant::now();
        let results = run_plainly(&worker, &jobs, &[("a", 1), ("b", 1)]).await;
        let built = results[0].as_ref().expect("moved to `a` and built");
        assert_eq!(built.job.runner, "a");
        assert_eq!(worker.starts.lock().unwrap().len(), 2);
        let elapsed = start.elapsed();
        assert!(elapsed > MINUTE * 5 && elapsed < MINUTE * 5 + SLOT_LOST_GRACE);
    }

    /// A host slot lost mid-build (its holding command ended, its
    /// connection closed) stops the job within seconds: a runner failure naming
    /// runner and host, with a hint, not moved (it may have pushed), its
    /// slot released; the other runner's job is not touched.
    #[tokio::test(start_paused = true)]
    async fn a_slot_lost_mid_build_fails_its_job() {
        let worker = FakeWorker {
            durations: vec![("linux/arm64", MINUTE * 30)],
            slot_lost: vec![("b", MINUTE * 5)],
            ..FakeWorker::default()
        };
        let jobs = [job("linux/amd64", "a"), arm64_on_b_or_a()];
        let start = Instant::now();
        let results = run_plainly(&worker, &jobs, &[("a", 1), ("b", 1)]).await;
        assert_eq!(start.elapsed().as_secs() / 60, 5, "stopped when lost");
        assert!(results[0].is_ok());
        let failure = results[1].as_ref().unwrap_err();
        assert_eq!(failure.kind, ErrorKind::Runner);
        assert_eq!(
            failure.message,
            "runner `b` lost its build slot on host `b-host`: the connection closed while it ran"
        );
        assert!(
            failure.hint.contains("`mab runners check`"),
            "{}",
            failure.hint
        );
        assert!(!failure.movable);
        assert_eq!(failure.stopped, None);
        assert_eq!(failure.job.runner, "b", "not moved");
        assert!(!worker
            .finished
            .lock()
            .unwrap()
            .contains(&"linux/arm64".to_owned()));
        let mut released = worker.released.lock().unwrap().clone();
        released.sort();
        assert_eq!(released, ["linux/amd64 on a", "linux/arm64 on b"]);
    }

    /// A job's host slot is free on the host before this build's next job
    /// on that runner starts (which would otherwise find it taken and
    /// report a wait), and a slot held when the build's future is dropped
    /// (Ctrl-C) is freed all the same.
    #[tokio::test(start_paused = true)]
    async fn a_host_slot_is_free_before_the_next_job_on_its_runner_starts() {
        let worker = FakeWorker::default();
        let jobs = [job("linux/amd64", "a"), job("linux/arm64", "a")];
        let results = run_plainly(&worker, &jobs, &[("a", 1)]).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(
            *worker.sequence.lock().unwrap(),
            [
                "start linux/amd64",
                "free linux/amd64",
                "start linux/arm64",
                "free linux/arm64"
            ]
        );

        let worker = FakeWorker {
            durations: vec![("linux/amd64", MINUTE * 30)],
            ..FakeWorker::default()
        };
        let build = run_plainly(&worker, &jobs[..1], &[("a", 1)]);
        assert!(tokio::time::timeout(MINUTE, build).await.is_err());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            *worker.sequence.lock().unwrap(),
            ["start linux/amd64", "free linux/amd64"]
        );
    }

    /// A job that waits on its host while this build's other job on the
    /// runner holds a slot there names that job in its waiting events; a
    /// wait with none of this build's jobs there names none.
    #[tokio::test(start_paused = true)]
    async fn a_wait_names_this_builds_jobs_that_hold_a_slot_there() {
        let worker = FakeWorker {
            durations: vec![("linux/amd64", MINUTE * 10)],
            host_busy: vec![("linux/arm64", MINUTE)],
            ..FakeWorker::default()
        };
        let heard = Heard::default();
        let jobs = [job("linux/amd64", "a"), job("linux/arm64", "a")];
        let results = run_all(
            &worker,
            &jobs,
            &slots(&[("a", 2)]),
            Limits::default(),
            Fallback::Allowed,
            &heard,
        )
        .await;
        assert!(results.iter().all(Result::is_ok));
        let holding: Vec<Vec<String>> = heard
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|event| match event {
                Event::Waiting { holding, jobs, .. } => {
                    assert_eq!(*jobs, 2);
                    Some(holding.iter().map(ToString::to_string).collect())
                }
                _ => None,
            })
            .collect();
        assert!(!holding.is_empty());
        assert!(
            holding
                .iter()
                .all(|platforms| platforms == &["linux/amd64"]),
            "{holding:?}"
        );
    }

    /// Every job runs for an hour; `control` stops them.
    struct Stoppable {
        control: BuildControl,
    }

    impl Worker for Stoppable {
        fn control(&self) -> Option<&BuildControl> {
            Some(&self.control)
        }

        async fn run(&self, job: &JobSpec) -> Result<Built, JobFailure> {
            tokio::time::sleep(MINUTE * 60).await;
            Ok(Built {
                job: job.clone(),
                child: None,
                seconds: 3600.0,
                test: None,
                binaries: None,
            })
        }
    }

    /// A stop (SIGTERM) drops the running job (`cancelled`) and the one
    /// waiting for the runner's only slot (`not_started`) at once, each
    /// failure naming the signal and the runner.
    #[tokio::test(start_paused = true)]
    async fn a_stop_drops_the_running_and_the_waiting_jobs() {
        let worker = Stoppable {
            control: BuildControl::default(),
        };
        let jobs = [job("linux/amd64", "a"), job("linux/386", "a")];
        let started = Instant::now();
        let signal = async {
            tokio::time::sleep(MINUTE).await;
            assert!(worker.control.request_stop(FailureKind::Terminated));
        };
        let one_slot = slots(&[("a", 1)]);
        let (results, ()) = tokio::join!(
            run_all(
                &worker,
                &jobs,
                &one_slot,
                Limits::default(),
                Fallback::Allowed,
                &Silent,
            ),
            signal
        );
        assert_eq!(started.elapsed(), MINUTE);
        let ended: Vec<(Option<Stop>, String)> = results
            .into_iter()
            .map(|result| {
                let failure = result.unwrap_err();
                (failure.stopped, failure.message)
            })
            .collect();
        assert_eq!(
            ended,
            [
                (
                    Some(Stop::Running),
                    "stopped on runner `a`: terminated (SIGTERM)".to_owned()
                ),
                (
                    Some(Stop::BeforeSlot),
                    "not started: terminated (SIGTERM) while it waited for a slot on runner `a`"
                        .to_owned()
                ),
            ]
        );
    }
}
