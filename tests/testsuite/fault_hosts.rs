//! Faults of runner hosts on the real lab, each on a spare host of the
//! test's own (`tests/lab/spare-host`), so that killing, freezing or
//! cutting it off never touches the shared runners: a burst of logins
//! that sshd throttles, an sshd killed before the build, an engine killed
//! mid-build, a link cut mid-build, an engine that never answers, a build
//! cancelled by SIGINT or SIGTERM while its step runs there. Each
//! checks the exit code, the message, the metadata, the registry (read
//! with skopeo) and that nothing is left running.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    free_slot_files, holders_under, list_architectures, mab_command, require_lab,
    runners_check_json, sha256, skopeo_exists, skopeo_raw, Home, Lab, Project, Run, SpareHost,
    SpareOptions,
};

/// The runners file entry of runner `name` on ssh alias `host` for
/// `platforms`, on the lab hosts' engine socket.
fn runner_entry(lab: &Lab, name: &str, host: &str, platforms: &[&str]) -> String {
    let platforms: Vec<String> = platforms.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "[[runner]]\nname = \"{name}\"\nhost = \"{host}\"\nplatforms = [{}]\nengine = \"unix://{}\"\n\n",
        platforms.join(", "),
        lab.get("RUNNER_A_ENGINE_SOCKET")
    )
}

/// The lines of an sshd log from line `from` on. Read lossily: sshd logs
/// what a client sent verbatim at times, which need not be UTF-8.
fn log_lines_since(path: &std::path::Path, from: usize) -> Vec<String> {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default())
        .lines()
        .skip(from)
        .map(str::to_owned)
        .collect()
}

/// Six runners on one spare sshd, each through an alias that makes its
/// connection its own, that lets only three logins be in
/// progress at once (`MaxStartups 3`): `mab runners check` connects to all
/// at once, sshd drops the connections over its limit (its log says so),
/// mab retries them (a warning per retry, naming the runner and the try)
/// and every runner is reachable; sshd accepted one login per runner.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_burst_of_logins_that_sshd_throttles_is_retried() {
    let lab = require_lab!();
    let spare = SpareHost::start(
        "throttled",
        SpareOptions {
            max_startups: Some("3"),
            ..SpareOptions::default()
        },
    );
    let home = Home::new(lab);
    let project = Project::new();
    let names: Vec<String> = (1..=6).map(|number| format!("burst-{number}")).collect();
    let mut runners = String::new();
    // Each alias a connection of its own (entries that resolve alike
    // share one): its own ConnectTimeout.
    for (index, name) in names.iter().enumerate() {
        spare.add_to(&home, name, &format!("    ConnectTimeout {}", 20 + index));
        runners.push_str(&runner_entry(lab, name, name, &["linux/amd64"]));
    }
    project.file("runners.toml", &runners);
    let host = spare.host();

    let run = runners_check_json(home.path(), project.path());

    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let checked = json["runners"].as_array().unwrap();
    assert_eq!(checked.len(), names.len(), "{json}");
    for runner in checked {
        assert_eq!(runner["ok"], true, "{runner}");
    }
    let retries: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains(": SSH connection failed (try "))
        .collect();
    assert!(!retries.is_empty(), "no retry reported: {run:?}");
    // Per runner, the tries that failed, in the order told: 1, then 2.
    let mut failed_tries: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for line in &retries {
        let runner = line
            .strip_prefix("warning: sshd of runner `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(runner, _)| runner)
            .unwrap_or_else(|| panic!("not a runner's retry: {line}"));
        assert!(names.iter().any(|name| name == runner), "{line}");
        let attempt = line
            .split_once("(try ")
            .and_then(|(_, rest)| rest.split_once(" of 3): "))
            .and_then(|(attempt, _)| attempt.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no `(try N of 3): ` in {line}"));
        assert!(line.contains("; retrying in "), "{line}");
        failed_tries.entry(runner).or_default().push(attempt);
    }
    for (runner, tries) in &failed_tries {
        assert!(
            *tries == [1] || *tries == [1, 2],
            "runner {runner} retried after tries {tries:?}: {run:?}"
        );
    }
    // No runner was given up: no error, nothing unreachable.
    assert!(
        !run.stderr
            .lines()
            .any(|line| line.starts_with("error") || line.to_lowercase().contains("unreachable")),
        "{run:?}"
    );
    let log = log_lines_since(&host.sshd_log, 0);
    let drops = log
        .iter()
        .filter(|line| line.contains("past MaxStartups"))
        .count();
    assert!(
        drops >= retries.len(),
        "{drops} drops in the log, {} retries",
        retries.len()
    );
    assert_eq!(host.logins(), names.len(), "{log:#?}");
}

/// Twenty-four runner entries on one spare host whose sshd allows
/// OpenSSH's default ten sessions per connection (`MaxSessions 10`): `mab
/// runners check` logs in once and runs each entry's probes (`df`, the slot
/// probe) over that connection, never more than ten at once, so sshd
/// refuses none and every entry is usable.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn many_entries_on_one_host_stay_within_its_sessions() {
    let lab = require_lab!();
    let spare = SpareHost::start(
        "sessions",
        SpareOptions {
            max_sessions: Some("10"),
            ..SpareOptions::default()
        },
    );
    let home = Home::new(lab);
    let project = Project::new();
    spare.add_to(&home, "spare", "");
    let runners: String = (1..=24)
        .map(|number| runner_entry(lab, &format!("entry-{number}"), "spare", &["linux/amd64"]))
        .collect();
    project.file("runners.toml", &runners);

    let run = runners_check_json(home.path(), project.path());

    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let checked = json["runners"].as_array().unwrap();
    assert_eq!(checked.len(), 24, "{json}");
    for runner in checked {
        assert_eq!(runner["ok"], true, "{runner}");
        assert!(runner["disk_free_bytes"].as_u64().unwrap() > 0, "{runner}");
        assert_eq!(runner["slots"]["in_use"], 0, "{runner}");
    }
    assert_eq!(spare.host().logins(), 1);
}

/// A one-platform build (`linux/amd64`) whose runners are a spare host of
/// the test's own, `spare` (listed first, so planned first), and the
/// shared `runner-a` as `backup`. The Dockerfile's `RUN` step sleeps
/// `sleep` seconds (a number no other test sleeps, so that
/// [`sleeping`] sees only this build), or there is no `RUN` step.
struct Failover {
    spare: SpareHost,
    home: Home,
    project: Project,
    repository: String,
    sleep: Option<&'static str>,
    /// The PIDs of the `RUN` step on the spare host when the fault struck.
    on_spare: std::cell::RefCell<Vec<String>>,
}

/// The tag the failover builds publish.
const TAG: &str = "fault";

/// The ssh config lines that find a dead link within seconds: a keepalive
/// after 1 s of silence, the connection dropped when 2 go unanswered.
const FAST_KEEPALIVES: &str = "    ServerAliveInterval 1\n    ServerAliveCountMax 2\n";

impl Failover {
    /// `name`: the spare host's and the repository's; `ssh_options`: extra
    /// lines of the spare host's ssh config entry.
    fn new(lab: &Lab, name: &str, sleep: Option<&'static str>, ssh_options: &str) -> Failover {
        let failover = Failover::alone(lab, name, sleep, ssh_options);
        failover.project.file(
            "runners.toml",
            &format!(
                "{}{}",
                runner_entry(lab, "spare", "spare", &["linux/amd64"]),
                runner_entry(lab, "backup", "runner-a", &["linux/amd64"])
            ),
        );
        failover
    }

    /// The same build with the spare host as its only runner.
    fn alone(lab: &Lab, name: &str, sleep: Option<&'static str>, ssh_options: &str) -> Failover {
        let spare = SpareHost::start(name, SpareOptions::default());
        let home = Home::new(lab);
        spare.add_to(&home, "spare", ssh_options);
        let repository = lab.repository(name);
        let project = Project::new();
        let run_step = sleep
            .map(|seconds| format!("RUN [\"/bin/busybox\", \"sleep\", \"{seconds}\"]\n"))
            .unwrap_or_default();
        project.with_busybox(lab, &["amd64"]).file(
            "Dockerfile",
            &format!(
                "FROM scratch\nCOPY busybox/amd64 /bin/busybox\n{run_step}COPY content.txt /\n"
            ),
        );
        project.amd64_image(name, &repository);
        project.file(
            "runners.toml",
            &runner_entry(lab, "spare", "spare", &["linux/amd64"]),
        );
        Failover {
            spare,
            home,
            project,
            repository,
            sleep,
            on_spare: Default::default(),
        }
    }

    fn metadata_path(&self) -> std::path::PathBuf {
        self.project.path().join("metadata.json")
    }

    /// `mab build` with plain progress, the metadata file, host networking
    /// (the spare host's engine has no bridge), the runners file and
    /// `--tag fault`, plus `arguments`.
    fn command(&self, arguments: &[&str]) -> Command {
        self.command_with("plain", arguments)
    }

    /// [`command`](Self::command) with `--progress PROGRESS`.
    fn command_with(&self, progress: &str, arguments: &[&str]) -> Command {
        let metadata = self.metadata_path();
        let mut all = vec![
            "build",
            "--progress",
            progress,
            "--metadata-file",
            metadata.to_str().unwrap(),
            "--runners",
            "runners.toml",
            "--network",
            "host",
            "--tag",
            TAG,
        ];
        all.extend_from_slice(arguments);
        mab_command(self.home.path(), self.project.path(), &all)
    }

    fn run(&self, arguments: &[&str]) -> Run {
        Run::of(self.command(arguments).output().unwrap())
    }

    /// Starts the build, waits until its `RUN` step runs on the spare host,
    /// does `fault`, and waits for mab to end.
    fn run_with_fault_mid_build(&self, fault: impl FnOnce(&SpareHost)) -> Run {
        let seconds = self.sleep.expect("a RUN step to interrupt");
        let mut child = self.spawn();
        if !within(Duration::from_secs(60), || sleeping(seconds)) {
            let _ = child.kill();
            let run = Run::of(child.wait_with_output().unwrap());
            panic!("the RUN step did not start on the spare host within 60 s: {run:?}");
        }
        *self.on_spare.borrow_mut() = pids_of(&format!("busybox sleep {seconds}"));
        fault(&self.spare);
        Run::of(child.wait_with_output().unwrap())
    }

    /// Starts [`command`](Self::command) with its output piped.
    fn spawn(&self) -> std::process::Child {
        self.command(&[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn metadata(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.metadata_path()).expect("the metadata file");
        serde_json::from_str(&text).unwrap()
    }

    /// The build succeeded on `backup` after the platform moved away from
    /// `spare`: the warning (with a reason holding `reason`), the metadata
    /// (`moved_from`, `reason`, `state`), a one-platform list under the
    /// tag in the registry, and nothing left running.
    fn assert_moved(&self, run: &Run, reason: &str) {
        assert_eq!(run.code, 0, "{run:?}");
        let prefix = "warning: linux/amd64 moved from runner `spare` to runner `backup` (native): ";
        let line = run
            .stderr
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("a move warning: {run:?}"));
        assert!(line.to_lowercase().contains(reason), "`{reason}` in {line}");

        let metadata = self.assert_published_on("backup");
        let platform = &metadata["platforms"][0];
        assert_eq!(platform["moved_from"], "spare", "{metadata}");
        assert!(
            platform["reason"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()
                .contains(reason),
            "{metadata}"
        );
        self.assert_nothing_left();
    }

    /// The metadata says `linux/amd64` was built on `runner` and published,
    /// and the registry holds the one-platform list under the tag with the
    /// digest the metadata gives; the metadata, for further checks.
    fn assert_published_on(&self, runner: &str) -> serde_json::Value {
        let metadata = self.metadata();
        let platform = &metadata["platforms"][0];
        assert_eq!(platform["platform"], "linux/amd64", "{metadata}");
        assert_eq!(platform["runner"], runner, "{metadata}");
        assert_eq!(platform["state"], "published", "{metadata}");
        let list = skopeo_raw(&format!("{}:{TAG}", self.repository));
        assert_eq!(metadata["digest"], sha256(&list).as_str(), "{metadata}");
        assert_eq!(list_architectures(&list), ["amd64"]);
        metadata
    }

    /// No mab of this test runs, and no `RUN` step of its build runs but
    /// the one that ran on the spare host when the fault struck (the guard
    /// stops that host's engine, and with it the step).
    fn assert_nothing_left(&self) {
        let metadata = self.metadata_path();
        assert!(
            !process_running(metadata.to_str().unwrap()),
            "a mab process of this test still runs"
        );
        if let Some(seconds) = self.sleep {
            let on_spare = self.on_spare.borrow();
            for pid in pids_of(&format!("busybox sleep {seconds}")) {
                assert!(
                    on_spare.contains(&pid),
                    "a RUN step still runs that was not on the spare host (pid {pid})"
                );
            }
        }
    }
}

/// The PIDs of the processes whose command line matches `pattern`.
fn pids_of(pattern: &str) -> Vec<String> {
    pgrep(&["-f", pattern])
}

/// The PIDs `pgrep ARGUMENTS` finds.
fn pgrep(arguments: &[&str]) -> Vec<String> {
    let output = Command::new("pgrep").args(arguments).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn process_running(pattern: &str) -> bool {
    !pids_of(pattern).is_empty()
}

/// Whether the `RUN` step that sleeps `seconds` runs (anywhere).
fn sleeping(seconds: &str) -> bool {
    process_running(&format!("busybox sleep {seconds}"))
}

/// The spare runner's sshd is dead before the build: its connection is
/// refused (and retried), and the platform moves to `backup`, which says
/// so and builds it. With `--no-fallback` the build fails naming the
/// runner, and nothing is published.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_runner_whose_sshd_was_killed_loses_its_platform() {
    let lab = require_lab!();
    let failover = Failover::new(lab, "sshd-killed", None, "");
    failover.spare.signal("SSHD_PID", "KILL");

    let refused = failover.run(&["--no-fallback"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("error: build failed for linux/amd64 (runner spare); nothing was published"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("hint: "), "{refused:?}");
    assert!(
        !skopeo_exists(&format!("{}:{TAG}", failover.repository)),
        "published with --no-fallback"
    );
    let metadata = failover.metadata();
    assert_eq!(metadata["digest"], serde_json::Value::Null, "{metadata}");
    assert_eq!(metadata["platforms"][0]["state"], "failed", "{metadata}");
    assert_eq!(
        metadata["platforms"][0]["error"]["kind"], "runner",
        "{metadata}"
    );

    let moved = failover.run(&[]);
    failover.assert_moved(&moved, "refused");
    assert!(
        moved
            .stderr
            .contains("warning: sshd of runner `spare`: SSH connection failed (try 1 of 3)"),
        "the refused connection is retried: {moved:?}"
    );

    // The same retries and move as typed events with `--progress json`.
    let json = Run::of(failover.command_with("json", &[]).output().unwrap());
    assert_eq!(json.code, 0, "{json:?}");
    let events: Vec<serde_json::Value> = json
        .stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let retries: Vec<&serde_json::Value> = events
        .iter()
        .filter(|event| event["event"] == "retry")
        .collect();
    assert_eq!(retries.len(), 2, "{json:?}");
    for (index, retry) in retries.iter().enumerate() {
        assert_eq!(retry["schema"], 1, "{retry}");
        assert_eq!(
            retry["target"],
            serde_json::json!({"kind": "ssh", "runner": "spare"}),
            "{retry}"
        );
        assert_eq!(retry["request"], "SSH connection", "{retry}");
        assert_eq!(
            (retry["attempt"].as_u64(), retry["tries"].as_u64()),
            (Some(index as u64 + 1), Some(3))
        );
        assert!(
            retry["error"].as_str().unwrap().contains("refused"),
            "{retry}"
        );
    }
    assert!(
        events.iter().any(|event| event["event"] == "moved"
            && event["from"] == "spare"
            && event["to"] == "backup"),
        "{json:?}"
    );
}

/// The spare runner's engine is killed while the build's `RUN` step runs:
/// the build stream breaks, the engine does not answer a ping, and the
/// platform moves to `backup` and is built there.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_runner_whose_engine_is_killed_mid_build_loses_its_platform() {
    let lab = require_lab!();
    let failover = Failover::new(lab, "engine-killed", Some("6.37"), "");

    let run = failover.run_with_fault_mid_build(|spare| spare.signal("DOCKERD_PID", "KILL"));

    failover.assert_moved(&run, "broke during the build");
    // The engine's socket is gone while its host's sshd still answers: the
    // ping is retried before the platform moves.
    assert!(
        run.stderr
            .contains("warning: engine of runner `spare`: GET /_ping failed (try 1 of 3)"),
        "{run:?}"
    );
}

/// The link to the spare runner is cut (its sshd port drops every packet)
/// while the `RUN` step runs; with `ServerAliveInterval 1` and
/// `ServerAliveCountMax 2` the connection is found dead within seconds,
/// the build stream ends with an error instead of hanging, and the
/// platform moves to `backup`.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_runner_whose_link_is_cut_mid_build_loses_its_platform() {
    let lab = require_lab!();
    let failover = Failover::new(lab, "link-cut", Some("12.39"), FAST_KEEPALIVES);
    let started = Instant::now();

    let run = failover.run_with_fault_mid_build(SpareHost::cut);

    failover.assert_moved(&run, "broke during the build");
    // Once the keepalives closed the connection, no request is retried on it.
    assert!(
        !run.stderr.contains("warning: engine of runner `spare`"),
        "{run:?}"
    );
    // The cut is found by keepalives in seconds; the step then runs again
    // on `backup`: about twice its 12 s, far from a hang.
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "{:?}",
        started.elapsed()
    );
}

/// The link to the only runner is cut while the `RUN` step runs: the
/// keepalives (`ServerAliveInterval 1`, `ServerAliveCountMax 2`) find the
/// connection dead within seconds, and the build fails naming the
/// platform and the runner instead of hanging; nothing is published.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_build_whose_only_runner_is_cut_off_fails_within_seconds() {
    let lab = require_lab!();
    let failover = Failover::alone(lab, "link-cut-alone", Some("40.41"), FAST_KEEPALIVES);
    let mut cut_at = None;

    let run = failover.run_with_fault_mid_build(|spare| {
        spare.cut();
        cut_at = Some(Instant::now());
    });

    let after_cut = cut_at.unwrap().elapsed();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("error: build failed for linux/amd64 (runner spare); nothing was published"),
        "{run:?}"
    );
    assert!(run.stderr.contains("hint: "), "{run:?}");
    // 1 s keepalives, 2 unanswered: the step's 40 s never ran out.
    assert!(after_cut < Duration::from_secs(15), "{after_cut:?}");
    assert!(
        !skopeo_exists(&format!("{}:{TAG}", failover.repository)),
        "published"
    );
    failover.assert_nothing_left();
}

/// The spare runner's engine is frozen (SIGSTOP): its sshd lets mab in and
/// forwards to the engine's socket, but the engine never answers. The
/// request gives up after its 30 s limit (once, not retried), and the
/// platform moves to `backup`.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_runner_whose_engine_never_answers_loses_its_platform() {
    let lab = require_lab!();
    let failover = Failover::new(lab, "engine-frozen", None, "");
    failover.spare.signal("DOCKERD_PID", "STOP");
    let started = Instant::now();

    let run = failover.run(&[]);

    let elapsed = started.elapsed();
    failover.assert_moved(&run, "did not answer");
    assert!(
        elapsed >= Duration::from_secs(29) && elapsed < Duration::from_secs(55),
        "one request limit, not three: {elapsed:?}"
    );
    assert!(
        !run.stderr.contains("(try 1 of 3)"),
        "a request that timed out is not retried: {run:?}"
    );
}

/// Keepalives (`ServerAliveInterval 1`, `ServerAliveCountMax 2`) spare a
/// healthy build whose `RUN` step is silent for longer than they allow
/// without an answer (8 s against 2 s): sshd answers them while the step
/// runs, so the build stays on `spare`, nothing is retried or moved, and
/// the list is published.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn keepalives_spare_a_long_silent_build() {
    let lab = require_lab!();
    let failover = Failover::new(lab, "keepalive-long", Some("8.47"), FAST_KEEPALIVES);
    let started = Instant::now();

    let run = failover.run(&[]);

    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "the RUN step did not run: {:?}",
        started.elapsed()
    );
    assert!(!run.stderr.contains(" moved from "), "{run:?}");
    assert!(!run.stderr.contains("failed (try "), "{run:?}");
    let metadata = failover.assert_published_on("spare");
    assert_eq!(
        metadata["platforms"][0]["moved_from"],
        serde_json::Value::Null,
        "{metadata}"
    );
    failover.assert_nothing_left();
}

/// A runner whose sshd lets mab in but refuses every channel to the
/// engine's socket (`AllowStreamLocalForwarding no`). OpenSSH answers such
/// a channel with `connect failed`, as for a missing socket, not with
/// `administratively prohibited` (which mab would not retry): the engine
/// request is tried 3 times, each refusal in sshd's log, and the runner is
/// then unusable, its engine named as the cause and forwarding as a
/// possible reason.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_runner_whose_sshd_refuses_stream_forwarding_is_unusable() {
    let lab = require_lab!();
    let spare = SpareHost::start(
        "no-forwarding",
        SpareOptions {
            no_engine: true,
            no_stream_forwarding: true,
            ..SpareOptions::default()
        },
    );
    let home = Home::new(lab);
    let project = Project::new();
    spare.add_to(&home, "spare", "");
    project.file(
        "runners.toml",
        &runner_entry(lab, "spare", "spare", &["linux/amd64"]),
    );

    let run = runners_check_json(home.path(), project.path());

    let json = run.json();
    let runner = &json["runners"][0];
    assert_eq!(
        (runner["ok"].clone(), runner["error_kind"].clone()),
        (serde_json::json!(false), serde_json::json!("engine")),
        "{json}"
    );
    let error = runner["error"].as_str().unwrap();
    assert!(
        error.contains("refused to forward to the unix socket")
            && error.contains("sshd does not allow stream-local forwarding"),
        "{json}"
    );
    let retries: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| {
            line.starts_with("warning: engine of runner `spare`: GET /version failed (try ")
        })
        .collect();
    assert_eq!(retries.len(), 2, "{run:?}");
    let refusals = log_lines_since(&spare.host().sshd_log, 0)
        .iter()
        .filter(|line| line.contains("refused streamlocal port forward"))
        .count();
    assert_eq!(refusals, 3, "{run:?}");
    assert_eq!(spare.host().logins(), 1);
}

/// The PIDs of the processes in a cgroup whose path starts with `parent`
/// (any hierarchy), as `tests/lab/spare-host` finds its host's leftovers.
fn pids_under_cgroup(parent: &str) -> Vec<String> {
    let needle = format!(":{parent}/");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("cgroup"))
                .is_ok_and(|cgroup| cgroup.contains(&needle))
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The client ports of the logins sshd accepted so far, from its log
/// (`Accepted publickey for root from 127.0.0.1 port 35940 ssh2: …`).
fn accepted_ports(sshd_log: &std::path::Path) -> Vec<String> {
    log_lines_since(sshd_log, 0)
        .iter()
        .filter(|line| line.starts_with("Accepted publickey"))
        .filter_map(|line| line.split(" port ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The PIDs of the children of process `parent`.
fn pids_of_children(parent: &str) -> Vec<String> {
    pgrep(&["-P", parent])
}

/// Waits up to `limit` for `done`; whether it came true.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// The entries named `*mab*` in the SSH user's runtime and temporary
/// directories on the spare host, listed over SSH as that user, but the
/// test suite's own (`mab-tests-*`, such as its SSH lock file; the spare
/// host shares this machine's `/tmp`).
fn mab_files_on(failover: &Failover) -> Vec<String> {
    let output = failover
        .ssh(&[
            "for d in \"${XDG_RUNTIME_DIR:-/run/user/$(id -u)}\" \"${TMPDIR:-/tmp}\" /var/tmp; do \
             [ -d \"$d\" ] && ls -a \"$d\" | sed \"s|^|$d/|\"; done | grep -i mab | grep -v /mab-tests- || true",
        ]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

impl Failover {
    /// Runs `command` on the spare host over SSH, as mab logs in there.
    fn ssh(&self, command: &[&str]) -> std::process::Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.home.path().join(".ssh/config"))
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.home.path().join(".ssh/known_hosts").display()
            ))
            .args(["-o", "BatchMode=yes", "spare"])
            .args(command)
            .output()
            .unwrap()
    }

    /// The containers of the spare host's engine (`docker ps -a`), asked
    /// on the host itself.
    fn containers(&self) -> Vec<String> {
        let socket = format!("unix://{}", self.spare.get("ENGINE_SOCKET"));
        let output = self.ssh(&["docker", "-H", &socket, "ps", "-aq"]);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// SIGINT to mab while the only platform's `RUN` step runs on a runner
/// over SSH: exit 130, nothing published, and nothing of mab's left on the
/// runner (see [`cancelled_by`]).
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_interrupted_remote_build_leaves_nothing_on_the_runner() {
    cancelled_by("INT", 130, "21.53");
}

/// As [`an_interrupted_remote_build_leaves_nothing_on_the_runner`], with
/// SIGTERM: exit 143.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_terminated_remote_build_leaves_nothing_on_the_runner() {
    cancelled_by("TERM", 143, "22.57");
}

/// Builds on a spare runner of its own whose `RUN` step sleeps `seconds`,
/// sends mab `signal` once the step runs under the host's cgroup parent,
/// and checks: exit code `expected`, the report says nothing was
/// published; within 10 s no process is left under the host's cgroup
/// parent, sshd logged every login of mab's as ended and none of its
/// per-connection processes is left (one ran before the signal); the engine holds
/// no container; the tag is absent from the registry; no mab of this test
/// runs; the runner's slot is free (no process holds its file, none of an
/// SSH session there runs, `flock -n` takes it, `mab runners check` counts
/// none in use); no new `*mab*` entry in the SSH user's runtime or
/// temporary directories but the slot directory.
fn cancelled_by(signal: &str, expected: i32, seconds: &'static str) {
    let lab = require_lab!();
    let failover = Failover::alone(
        lab,
        &format!("cancel-{}", signal.to_lowercase()),
        Some(seconds),
        "",
    );
    let files_before = mab_files_on(&failover);
    let host = failover.spare.host();
    let logins_before = accepted_ports(&host.sshd_log);
    let cgroup = failover.spare.cgroup_parent();
    let step = format!("busybox sleep {seconds}");
    let step_on_host = || {
        pids_under_cgroup(&cgroup)
            .iter()
            .any(|pid| pids_of(&step).contains(pid))
    };

    let mut child = failover.spawn();
    if !within(Duration::from_secs(60), step_on_host) {
        let _ = child.kill();
        let run = Run::of(child.wait_with_output().unwrap());
        panic!("the RUN step did not run under {cgroup} within 60 s: {run:?}");
    }
    assert!(
        !pids_of_children(failover.spare.get("SSHD_PID")).is_empty(),
        "mab's SSH connection has no sshd process on the host"
    );
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let run = Run::of(child.wait_with_output().unwrap());

    assert_eq!(run.code, expected, "after SIG{signal}: {run:?}");
    let how = if signal == "INT" {
        "interrupted"
    } else {
        "terminated"
    };
    assert!(
        run.stderr
            .contains(&format!("error: {how}; nothing was published")),
        "{run:?}"
    );
    assert!(
        within(Duration::from_secs(10), || pids_under_cgroup(&cgroup)
            .is_empty()),
        "processes left under {cgroup} 10 s after SIG{signal}: {:?}",
        pids_under_cgroup(&cgroup)
    );
    // Every connection mab opened (sshd logs `Accepted publickey … port P`)
    // ended: sshd logs how (`Connection closed by … port P`, `Disconnected
    // from user root … port P`, `Read error from remote host … port P:
    // Connection reset by peer`), and none of its per-connection processes
    // (children of the listening sshd) is left.
    let connections_ended = || {
        let log = log_lines_since(&host.sshd_log, 0);
        let ports: Vec<String> = accepted_ports(&host.sshd_log)
            .into_iter()
            .filter(|port| !logins_before.contains(port))
            .collect();
        !ports.is_empty()
            && ports.iter().all(|port| {
                let (at_end, before_reason) = (format!(" port {port}"), format!(" port {port}:"));
                log.iter().any(|line| {
                    [
                        "Connection closed by",
                        "Connection reset by",
                        "Disconnected from",
                        "Read error from remote host",
                    ]
                    .iter()
                    .any(|ending| line.starts_with(ending))
                        && (line.ends_with(&at_end) || line.contains(&before_reason))
                })
            })
            && pids_of_children(failover.spare.get("SSHD_PID")).is_empty()
    };
    assert!(
        within(
            Duration::from_secs(10).saturating_sub(signalled.elapsed()),
            connections_ended
        ),
        "mab's SSH connections did not end (logins before: {logins_before:?}; sshd's children: {:?}): {:#?}",
        pids_of_children(failover.spare.get("SSHD_PID")),
        log_lines_since(&host.sshd_log, 0)
    );
    assert_eq!(
        failover.containers(),
        Vec::<String>::new(),
        "containers left"
    );
    assert!(
        !skopeo_exists(&format!("{}:{TAG}", failover.repository)),
        "published after SIG{signal}"
    );
    assert!(
        !process_running(failover.metadata_path().to_str().unwrap()),
        "a mab process of this test still runs"
    );
    // The slot is free, and nothing of mab's holds it or runs there.
    let slots = failover.spare.slot_directory();
    assert!(
        within(Duration::from_secs(10), || holders_under(&slots).is_empty()
            && failover.spare.session_processes().is_empty()),
        "the slot is still held, or a process of mab's session runs: {:?} {:?}",
        holders_under(&slots),
        failover.spare.session_processes()
    );
    assert_eq!(free_slot_files(&slots), [failover.spare.slot_file(0)]);
    let check = runners_check_json(failover.home.path(), failover.project.path());
    assert_eq!(
        check.json()["runners"][0]["slots"],
        serde_json::json!({"jobs": 1, "in_use": 0}),
        "{check:?}"
    );
    // Only the slot directory is new there (its files stay, empty).
    let files_after: Vec<String> = mab_files_on(&failover)
        .into_iter()
        .filter(|file| std::path::Path::new(file) != slots)
        .collect();
    assert_eq!(files_after, files_before, "files of mab's left");
}
