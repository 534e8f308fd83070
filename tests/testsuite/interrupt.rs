//! Ctrl-C (SIGINT) or SIGTERM during a build: exit code 130 or 143, the
//! engine stops the running step once mab's connection is gone, the
//! runner's slot is free, and nothing is published. A job over its time
//! limit is stopped the same way.

use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    free_slot_files, holders_under, mab_command, processes_with, read_until, require_lab,
    skopeo_exists, slot_file, user_id, Home, Lab, Project,
};

/// A project whose one `RUN` step sleeps `seconds` (a number no other test
/// sleeps, so that [`sleep_running`] sees only this build), built on the
/// lab's local engine as runner `here`, published to `repository`.
pub(crate) fn sleeping_project(lab: &Lab, repository: &str, seconds: &str) -> Project {
    let project = Project::new();
    project.with_busybox(lab, &["amd64"]).file(
        "Dockerfile",
        &format!("FROM scratch\nCOPY busybox/amd64 /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"{seconds}\"]\n"),
    );
    project.file(
        "mab.toml",
        &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n"),
    );
    project.file(
        "runners.toml",
        &format!("[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nengine = \"{}\"\n", lab.get("LOCAL_ENGINE")),
    );
    project
}

/// Once `child` (`mab build` of a [`sleeping_project`] sleeping `seconds`,
/// its stderr piped) tells of the `RUN` step and the step runs, sends it
/// `signal` (`INT`, `TERM`); returns its exit code and when the signal was
/// sent.
pub(crate) fn signal_when_sleeping(
    child: &mut Child,
    seconds: &str,
    signal: &str,
) -> (Option<i32>, Instant) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let seen = read_until(&mut stderr, "sleep");
    assert!(seen.contains("sleep"), "the RUN step started:\n{seen}");
    let started = Instant::now();
    while !sleep_running(seconds) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the RUN step never showed up as a process"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    (child.wait().unwrap().code(), signalled)
}

/// Waits up to 20 s for the engine to stop the `RUN` step that sleeps
/// `seconds` (LAB.md: about 2 s after the connection is gone).
fn assert_step_stops(seconds: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sleep_running(seconds) {
        assert!(
            Instant::now() < deadline,
            "the RUN step still runs after mab dropped its connection"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_interrupted_build_stops_and_publishes_nothing() {
    stopped_by("INT", 130, "347");
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_terminated_build_stops_and_publishes_nothing() {
    stopped_by("TERM", 143, "349");
}

/// Sends mab `signal` once the build's step (sleeping `seconds`) runs, and
/// checks the exit code, that the step stops, and that nothing is
/// published.
fn stopped_by(signal: &str, expected: i32, seconds: &str) {
    let lab = require_lab!();
    let repository = lab.repository("interrupt");
    let project = sleeping_project(lab, &repository, seconds);
    let home = Home::new(lab);
    // The local runner's slots, in a directory of this test's own.
    let runtime = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mab"))
        .args(["build", "--progress", "plain"])
        .current_dir(project.path())
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", runtime.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, interrupted) = signal_when_sleeping(&mut child, seconds, signal);
    assert_eq!(code, Some(expected), "after SIG{signal}");
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "mab stops promptly"
    );

    assert_step_stops(seconds);
    assert!(
        !skopeo_exists(&format!("{repository}:latest")),
        "nothing was published"
    );
    // The slot was held, and is free: its file is there, no process holds
    // it or runs with this runtime directory (the slot script), and
    // `flock -n` takes it.
    let slots = runtime.path().join(format!("mab-{}", user_id()));
    assert_eq!(holders_under(&slots), Vec::<String>::new());
    let marker = format!("XDG_RUNTIME_DIR={}", runtime.path().display());
    assert_eq!(processes_with(&marker), Vec::<String>::new());
    let engine =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
    assert_eq!(free_slot_files(&slots), [slot_file(&engine, 0)]);
}

/// `--timeout 15s` and a step that sleeps for minutes: the job is stopped
/// after its limit, the engine stops the step, the build fails naming the
/// platform, the runner and the limit, and nothing is published.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_job_over_its_time_limit_is_stopped_and_publishes_nothing() {
    let lab = require_lab!();
    let repository = lab.repository("time-limit");
    let project = sleeping_project(lab, &repository, "348");
    let home = Home::new(lab);
    let started = Instant::now();
    let arguments = ["build", "--progress", "plain", "--timeout", "15s"];
    let child = mab_command(home.path(), project.path(), &arguments)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The step must really run before the limit stops it.
    while !sleep_running("348") {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the RUN step never showed up as a process before the time limit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sleep"), "the RUN step started:\n{stderr}");
    assert!(
        stderr.contains("build failed for linux/amd64 (runner here); nothing was published"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "linux/amd64 on here: stopped after running for 15s on runner `here`, its time limit"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: find out why the build is slow on runner `here`"),
        "{stderr}"
    );
    assert!(
        (Duration::from_secs(15)..Duration::from_secs(70)).contains(&elapsed),
        "stopped after its limit, long before the step's end: {elapsed:?}"
    );
    assert_step_stops("348");
    assert!(
        !skopeo_exists(&format!("{repository}:latest")),
        "nothing was published"
    );
}

/// Whether the build's `RUN` step that sleeps `seconds` runs on this
/// machine, seen with pgrep.
pub(crate) fn sleep_running(seconds: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("busybox sleep {seconds}")])
        .output()
        .unwrap()
        .status
        .success()
}

/// SIGTERM while mab digests a large context (a 1 GiB sparse file, read
/// in full for the digest a resume compares) ends mab within seconds with
/// 143: the digest runs off the task that watches for signals. The signal
/// is sent once mab has read 64 MiB (its `rchar` in /proc), before
/// anything is contacted.
#[test]
fn a_signal_during_the_context_digest_is_honoured() {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY big /\n")
        .file(
        "mab.toml",
        "[image]\nname = \"127.0.0.1:5000/tests/digest-signal\"\nplatforms = [\"linux/amd64\"]\n",
    );
    std::fs::File::create(project.path().join("big"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut child = mab_command(home.path(), project.path(), &["build", "--no-push"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let read = || -> u64 {
        std::fs::read_to_string(format!("/proc/{}/io", child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("rchar: ")?.parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while read() < 64 << 20 {
        assert!(Instant::now() < deadline, "mab did not start reading");
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    let took = signalled.elapsed();
    assert_eq!(code, Some(143));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
