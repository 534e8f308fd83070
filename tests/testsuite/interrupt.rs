//! Ctrl-C (SIGINT) or SIGTERM during a build: exit code 130 or 143, the
//! engine stops the running step once mab's connection is gone, and nothing
//! is published.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{require_lab, skopeo_exists, Home, Project};

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_interrupted_build_stops_and_publishes_nothing() {
    stopped_by("INT", 130, 347);
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_terminated_build_stops_and_publishes_nothing() {
    stopped_by("TERM", 143, 348);
}

/// Builds a step that sleeps `seconds` (a number no other test sleeps, so
/// that pgrep finds this build's step), sends mab `signal` once it runs,
/// and checks the exit code, that the step stops, and that nothing is
/// published.
fn stopped_by(signal: &str, expected: i32, seconds: u32) {
    let lab = require_lab!();
    let repository = lab.repository("interrupt");
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
    let home = Home::new(lab);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mab"))
        .args(["build", "--progress", "plain"])
        .current_dir(project.path())
        .env("HOME", home.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains("sleep") {
            break;
        }
        line.clear();
    }
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
    let interrupted = Instant::now();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(expected), "after SIG{signal}");
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "mab stops promptly"
    );

    // The engine stops the step once the connection is gone (LAB.md: about 2 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    while sleep_running(seconds) {
        assert!(
            Instant::now() < deadline,
            "the RUN step still runs after mab was interrupted"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !skopeo_exists(&format!("{repository}:latest")),
        "nothing was published"
    );
}

/// Whether the build's `RUN` step runs on this machine, seen with pgrep.
fn sleep_running(seconds: u32) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("busybox sleep {seconds}")])
        .output()
        .unwrap()
        .status
        .success()
}
