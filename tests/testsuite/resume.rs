//! `mab build --resume` on the real lab: linux/amd64 on runner-b,
//! linux/arm64 (emulated) on a spare host of the test's own, whose link
//! is cut while its `RUN` step runs, so that the build fails with amd64
//! pushed and nothing published. Once the link is mended, `--resume`
//! builds only arm64: runner-b's sshd logs no new login, and the list
//! (read with skopeo) holds the failed build's amd64 digest and the new
//! arm64 image. `--resume FILE` from the failed build's metadata does the
//! same in a fresh copy of the project with a home of its own; a resume
//! after the Dockerfile changed is refused (exit 2) and publishes nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{
    free_port, list_architectures, mab, mab_command, require_lab, skopeo_config, skopeo_exists,
    skopeo_raw, ssh_lock, Home, Lab, Project, Run, SpareHost, SpareOptions,
};

/// The arm64 `RUN` step sleeps this long (a number no other test uses, so
/// that the step can be found among the processes); amd64 skips it.
const SLEEP: &str = "12.37";

/// The arm64 step of the build stopped by SIGTERM: long enough that its
/// end within seconds of the signal is the engine stopping it.
const STOPPED_SLEEP: &str = "31.73";

/// Keepalives that find the cut link within seconds.
const FAST_KEEPALIVES: &str = "    ServerAliveInterval 1\n    ServerAliveCountMax 2\n";

/// The project: busybox for both architectures, a `RUN` step that sleeps
/// `sleep` seconds on arm64 only, and runners.toml with amd64 on runner-b
/// and arm64 on the ssh alias `spare`.
fn write_project(project: &Project, lab: &Lab, repository: &str, sleep: &str) {
    project
        .with_busybox(lab, &["amd64", "arm64"])
        .file(
            "Dockerfile",
            &format!(
                "FROM scratch\nARG TARGETARCH\nCOPY busybox/${{TARGETARCH}} /bin/busybox\n\
                 COPY busybox/${{TARGETARCH}} /bin/sh\n\
                 RUN if [ \"$TARGETARCH\" = arm64 ]; then /bin/busybox sleep {sleep}; fi\n\
                 COPY content.txt /\n"
            ),
        )
        .file("content.txt", "resume\n")
        .two_platform_manifest(repository)
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"b\"\nhost = \"runner-b\"\nplatforms = [\"linux/amd64\"]\nengine = \"unix://{b}\"\n\n\
                 [[runner]]\nname = \"spare\"\nhost = \"spare\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{a}\"\n",
                b = lab.get("RUNNER_B_ENGINE_SOCKET"),
                a = lab.get("RUNNER_A_ENGINE_SOCKET"),
            ),
        );
}

/// `mab build --progress json --runners runners.toml --network host`
/// (the spare host's engine has no bridge) `--metadata-file METADATA`
/// plus `arguments`.
fn arguments<'a>(metadata: &'a Path, arguments: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "build",
        "--progress",
        "json",
        "--runners",
        "runners.toml",
        "--network",
        "host",
        "--metadata-file",
        metadata.to_str().unwrap(),
    ];
    all.extend_from_slice(arguments);
    all
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Whether the arm64 `RUN` step that sleeps `sleep` seconds runs.
fn sleeping(sleep: &str) -> bool {
    let output = std::process::Command::new("pgrep")
        .args(["-f", &format!("busybox sleep {sleep}")])
        .output()
        .unwrap();
    !output.stdout.is_empty()
}

/// The build whose arm64 step (sleeping `sleep` seconds) is interfered
/// with once amd64 finished and that step runs: `then` is called with
/// mab's process id (to cut the link, to signal mab); returns how mab
/// ended.
fn build_and_then_mid_arm64(
    home: &Home,
    project: &Project,
    metadata: &Path,
    sleep: &str,
    then: impl FnOnce(u32),
) -> Run {
    let mut child = mab_command(
        home.path(),
        project.path(),
        &arguments(metadata, &["--tag", "t1"]),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = Arc::clone(&lines);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                lines.lock().unwrap().push(line.unwrap());
            }
        })
    };
    let amd64_done =
        || {
            lines.lock().unwrap().iter().any(|line| {
                line.contains("\"event\":\"job_finished\"") && line.contains("linux/amd64")
            })
        };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(amd64_done() && sleeping(sleep)) {
        assert!(
            Instant::now() < deadline,
            "amd64 did not finish, or arm64's step did not start, within 60 s: {:#?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    then(child.id());
    let output = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let stderr = lines.lock().unwrap().join("\n");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    }
}

/// The list under `tag`: each entry's architecture and digest.
fn list_entries(repository: &str, tag: &str) -> Vec<(String, String)> {
    let raw = skopeo_raw(&format!("{repository}:{tag}"));
    let list: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let digests = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["digest"].as_str().unwrap().to_owned());
    list_architectures(&raw).into_iter().zip(digests).collect()
}

/// Checks a successful resume: exit 0; amd64 reused by the failed build's
/// digest (a `reused` event, no job, runner-b not logged into); arm64
/// built on the spare host; the list under `tag` holds both, amd64 with
/// that digest and arm64 with the one the metadata names, its config
/// arm64; the metadata has both `published`, amd64 `reused`.
fn assert_resumed(
    lab: &Lab,
    run: &Run,
    runner_b_logins: usize,
    repository: &str,
    tag: &str,
    amd64_digest: &str,
    metadata: &serde_json::Value,
) {
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        lab.host("runner-b").logins(),
        runner_b_logins,
        "runner-b was not contacted: {run:?}"
    );
    let reused = run.events_named("reused");
    assert_eq!(reused.len(), 1, "{run:?}");
    assert_eq!(reused[0]["platform"], "linux/amd64");
    assert_eq!(reused[0]["runner"], "b");
    assert_eq!(reused[0]["digest"], amd64_digest);
    let started: Vec<String> = run
        .events_named("job_started")
        .iter()
        .map(|event| format!("{} on {}", event["platform"], event["runner"]).replace('"', ""))
        .collect();
    assert_eq!(started, ["linux/arm64 on spare"], "{run:?}");
    let platforms = metadata["platforms"].as_array().unwrap();
    assert_eq!(metadata["missing"], serde_json::json!([]), "{metadata:#}");
    assert_eq!(platforms[0]["platform"], "linux/amd64");
    assert_eq!(platforms[0]["state"], "published");
    assert_eq!(platforms[0]["reused"], true);
    assert_eq!(platforms[0]["digest"], amd64_digest);
    assert_eq!(platforms[0]["runner"], "b");
    assert_eq!(platforms[1]["platform"], "linux/arm64");
    assert_eq!(platforms[1]["state"], "published");
    assert_eq!(platforms[1]["reused"], false);
    let arm64_digest = platforms[1]["digest"].as_str().unwrap();
    assert_eq!(
        list_entries(repository, tag),
        [
            ("amd64".to_owned(), amd64_digest.to_owned()),
            ("arm64".to_owned(), arm64_digest.to_owned()),
        ],
        "{run:?}"
    );
    let config = skopeo_config(&format!("{repository}@{arm64_digest}"));
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(
        run.stdout.trim(),
        format!("{repository}@{}", metadata["digest"].as_str().unwrap())
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_resume_builds_only_what_failed_and_reuses_the_rest_by_digest() {
    let lab = require_lab!();
    let spare = SpareHost::start("resume", SpareOptions::default());
    let repository = lab.repository("resume");
    let project = Project::new();
    write_project(&project, lab, &repository, SLEEP);
    let home = Home::new(lab);
    spare.add_to(&home, "spare", FAST_KEEPALIVES);
    let outside = tempfile::tempdir().unwrap();
    let failed_metadata = outside.path().join("failed.json");
    let _ssh = ssh_lock();

    // arm64's only runner is cut off mid-build: nothing is published.
    let run = build_and_then_mid_arm64(&home, &project, &failed_metadata, SLEEP, |_| spare.cut());
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!skopeo_exists(&format!("{repository}:t1")), "{run:?}");
    let failed = read_json(&failed_metadata);
    let platforms = failed["platforms"].as_array().unwrap();
    assert_eq!(platforms[0]["state"], "pushed", "{failed:#}");
    assert_eq!(platforms[1]["state"], "failed", "{failed:#}");
    assert_eq!(platforms[1]["runner"], "spare", "{failed:#}");
    let amd64_digest = platforms[0]["digest"].as_str().unwrap().to_owned();
    // The image the failed build pushed is the amd64 one.
    let config = skopeo_config(&format!("{repository}@{amd64_digest}"));
    assert_eq!(config["architecture"], "amd64");
    let inputs = &failed["inputs"];
    assert!(inputs["context"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(inputs["dockerfile"]["path"], "Dockerfile");

    // The runner is back: --resume builds arm64 alone.
    spare.mend();
    let runner_b_logins = lab.host("runner-b").logins();
    let spare_logins = spare.host().logins();
    resume_under_t1(
        lab,
        &home,
        &project,
        outside.path(),
        &repository,
        &amd64_digest,
    );
    assert!(
        spare.host().logins() > spare_logins,
        "arm64 was built there"
    );

    // --resume FILE in a fresh copy of the project, with a home (and so a
    // state directory) of its own: the same. As in CI, the file resumed
    // from is the one the resume writes its own metadata to.
    let copy = Project::new();
    write_project(&copy, lab, &repository, SLEEP);
    let fresh_home = Home::new(lab);
    spare.add_to(&fresh_home, "spare", FAST_KEEPALIVES);
    let copied_metadata = outside.path().join("copy.json");
    std::fs::copy(&failed_metadata, &copied_metadata).unwrap();
    let run = mab(
        fresh_home.path(),
        copy.path(),
        &arguments(
            &copied_metadata,
            &["--resume", copied_metadata.to_str().unwrap(), "--tag", "t2"],
        ),
    );
    let metadata = read_json(&copied_metadata);
    assert_resumed(
        lab,
        &run,
        runner_b_logins,
        &repository,
        "t2",
        &amd64_digest,
        &metadata,
    );

    // The Dockerfile changed since: refused before anything is contacted.
    let dockerfile = std::fs::read_to_string(project.path().join("Dockerfile")).unwrap();
    project.file(
        "Dockerfile",
        &format!("{dockerfile}COPY content.txt /again\n"),
    );
    let spare_logins = spare.host().logins();
    let refused_metadata = outside.path().join("refused.json");
    let run = mab(
        home.path(),
        project.path(),
        &arguments(&refused_metadata, &["--resume", "--tag", "t3"]),
    );
    assert_eq!(run.code, 2, "{run:?}");
    let message = run.result_event()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.ends_with("the Dockerfile changed (Dockerfile)"),
        "{message}"
    );
    assert!(!skopeo_exists(&format!("{repository}:t3")), "{run:?}");
    assert!(!refused_metadata.exists(), "no metadata file: {run:?}");
    assert_eq!(lab.host("runner-b").logins(), runner_b_logins);
    assert_eq!(spare.host().logins(), spare_logins);
}

/// SIGTERM (a CI job's time limit) once amd64 is pushed and verified while
/// arm64's step runs: exit 143, the metadata has amd64 `pushed` with its
/// digest (its image, read back with skopeo, is amd64) and arm64
/// `cancelled`, nothing is published, the arm64 step is gone within 10 s.
/// `--resume` (from the state the stopped build wrote) then reuses amd64
/// by that digest without contacting runner-b and builds arm64.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_build_stopped_by_sigterm_is_resumed() {
    let lab = require_lab!();
    let spare = SpareHost::start("stop", SpareOptions::default());
    let repository = lab.repository("stopped-resume");
    let project = Project::new();
    write_project(&project, lab, &repository, STOPPED_SLEEP);
    let home = Home::new(lab);
    spare.add_to(&home, "spare", FAST_KEEPALIVES);
    let outside = tempfile::tempdir().unwrap();
    let stopped_metadata = outside.path().join("stopped.json");
    let _ssh = ssh_lock();

    let mut signalled = None;
    let run = build_and_then_mid_arm64(&home, &project, &stopped_metadata, STOPPED_SLEEP, |pid| {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        signalled = Some(Instant::now());
    });
    let signalled = signalled.unwrap();
    assert_eq!(run.code, 143, "{run:?}");
    assert_eq!(
        run.result_event()["error"]["message"],
        "terminated; nothing was published"
    );
    while sleeping(STOPPED_SLEEP) {
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "the arm64 step still runs 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!skopeo_exists(&format!("{repository}:t1")), "{run:?}");
    let stopped = read_json(&stopped_metadata);
    let platforms = stopped["platforms"].as_array().unwrap();
    assert_eq!(stopped["digest"], serde_json::Value::Null, "{stopped:#}");
    assert_eq!(platforms[0]["platform"], "linux/amd64", "{stopped:#}");
    assert_eq!(platforms[0]["state"], "pushed", "{stopped:#}");
    assert_eq!(platforms[1]["platform"], "linux/arm64", "{stopped:#}");
    assert_eq!(platforms[1]["state"], "cancelled", "{stopped:#}");
    assert_eq!(platforms[1]["runner"], "spare", "{stopped:#}");
    assert_eq!(
        platforms[1]["error"]["message"], "stopped on runner `spare`: terminated (SIGTERM)",
        "{stopped:#}"
    );
    let amd64_digest = platforms[0]["digest"].as_str().unwrap().to_owned();
    let config = skopeo_config(&format!("{repository}@{amd64_digest}"));
    assert_eq!(config["architecture"], "amd64");

    resume_under_t1(
        lab,
        &home,
        &project,
        outside.path(),
        &repository,
        &amd64_digest,
    );
}

/// `mab build --resume --tag t1` in `project`, its metadata file in
/// `outside`, checked by [`assert_resumed`] (runner-b's logins counted
/// from just before it).
fn resume_under_t1(
    lab: &Lab,
    home: &Home,
    project: &Project,
    outside: &Path,
    repository: &str,
    amd64_digest: &str,
) {
    let runner_b_logins = lab.host("runner-b").logins();
    let resumed_metadata = outside.join("resumed.json");
    let run = mab(
        home.path(),
        project.path(),
        &arguments(&resumed_metadata, &["--resume", "--tag", "t1"]),
    );
    let metadata = read_json(&resumed_metadata);
    assert_resumed(
        lab,
        &run,
        runner_b_logins,
        repository,
        "t1",
        amd64_digest,
        &metadata,
    );
}

/// The metadata file inside the project, as a CI job may write it: the
/// failed build writes it there, and the resume that reads it (and writes
/// its own there) is not refused for it: neither `--metadata-file` nor
/// `--resume FILE` counts among the files sent. Each run warns once that
/// the file is sent to the runners. On the local engine, linux/amd64's
/// `RUN` step outlasts `--timeout` (not an input) so that the build fails
/// with linux/arm64 pushed; the resume, without the limit, reuses arm64
/// by digest (read back with skopeo) and builds amd64.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_metadata_file_inside_the_project_does_not_stop_its_resume() {
    let lab = require_lab!();
    let repository = lab.repository("resume-inside");
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64"])
        .file(
            "Dockerfile",
            "FROM scratch AS build-amd64\nCOPY busybox/amd64 /bin/busybox\nCOPY busybox/amd64 /bin/sh\n\
             COPY content.txt /\nRUN /bin/busybox sleep 8\n\n\
             FROM scratch AS build-arm64\n\n\
             FROM build-${TARGETARCH}\nCOPY content.txt /\n",
        )
        // Its own content, so that no cached step outlasts the limit.
        .file("content.txt", &format!("{repository}\n"))
        .two_platform_manifest(&repository);
    let home = Home::new(lab);
    let build = |arguments: &[&str]| {
        let mut all = vec![
            "build",
            "--progress",
            "json",
            "--metadata-file",
            "build.json",
        ];
        all.extend_from_slice(arguments);
        mab(home.path(), project.path(), &all)
    };
    let warned = |run: &Run| {
        run.events_named("warning")
            .iter()
            .filter(|event| {
                let message = event["message"].as_str().unwrap();
                message.starts_with("the metadata file build.json is inside the build context")
                    && message.contains("hint: write it outside the context")
            })
            .count()
    };

    let run = build(&["--timeout", "4s", "--tag", "t1"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(warned(&run), 1, "{run:?}");
    let failed = read_json(&project.path().join("build.json"));
    let platforms = failed["platforms"].as_array().unwrap();
    assert_eq!(platforms[0]["state"], "cancelled", "{failed:#}");
    assert_eq!(platforms[1]["state"], "pushed", "{failed:#}");
    let arm64_digest = platforms[1]["digest"].as_str().unwrap().to_owned();
    assert!(!skopeo_exists(&format!("{repository}:t1")), "{run:?}");

    let run = build(&["--resume", "build.json", "--tag", "t1"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(warned(&run), 1, "{run:?}");
    let reused = run.events_named("reused");
    assert_eq!(reused.len(), 1, "{run:?}");
    assert_eq!(reused[0]["digest"], arm64_digest.as_str());
    let resumed = read_json(&project.path().join("build.json"));
    let amd64_digest = resumed["platforms"][0]["digest"].as_str().unwrap();
    assert_eq!(
        list_entries(&repository, "t1"),
        [
            ("amd64".to_owned(), amd64_digest.to_owned()),
            ("arm64".to_owned(), arm64_digest),
        ],
        "{run:?}"
    );
    let config = skopeo_config(&format!("{repository}@{amd64_digest}"));
    assert_eq!(config["architecture"], "amd64");
}

/// `--resume FILE --metadata-file FILE`, as in CI, stopped while it
/// waits for the registry (one that accepts the connection and never
/// answers) by SIGTERM: FILE, read at the start and checked for writing
/// without being emptied, is written whole again by the stopped build
/// (exit 143), the platform it would reuse still `pushed` with its digest.
/// Then the same resume refused at the registry (nothing listens) writes
/// it whole again, the same way.
#[test]
fn a_resume_stopped_at_the_registry_leaves_its_file_whole() {
    let on = on_free_port();
    let (port, project, home, file) = (on.port, &on.project, &on.home, &on.file);
    let file_text = file.to_str().unwrap();
    let resume = ["build", "--resume", file_text, "--metadata-file", file_text];

    let run = mab(
        home.path(),
        project.path(),
        &["build", "--metadata-file", file_text],
    );
    assert_eq!(run.code, 1, "{run:?}");
    // As if amd64 had been pushed and verified.
    let mut earlier = read_json(file);
    let digest = format!("sha256:{}", "a".repeat(64));
    earlier["platforms"][0]["state"] = "pushed".into();
    earlier["platforms"][0]["digest"] = digest.as_str().into();
    let earlier_text = earlier.to_string();
    std::fs::write(file, &earlier_text).unwrap();

    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    assert_eq!(
        signalled_at_the_registry(&listener, home.path(), project, &resume, "TERM"),
        Some(143)
    );
    let still_resumable = |written: &serde_json::Value| {
        let platforms = written["platforms"].as_array().unwrap();
        assert_eq!(platforms[0]["platform"], "linux/amd64", "{written:#}");
        assert_eq!(platforms[0]["state"], "pushed", "{written:#}");
        assert_eq!(platforms[0]["digest"], digest.as_str(), "{written:#}");
        assert_eq!(platforms[1]["state"], "not_started", "{written:#}");
        assert_eq!(written["inputs"], earlier["inputs"], "{written:#}");
    };
    still_resumable(&read_json(file));
    drop(listener);

    let run = mab(home.path(), project.path(), &resume);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("cannot reach the registry 127.0.0.1:{port}")),
        "{run:?}"
    );
    still_resumable(&read_json(file));
}

/// A project whose registry is a free port on 127.0.0.1, a home, and a
/// metadata file's path outside the project.
struct OnPort {
    port: u16,
    project: Project,
    home: tempfile::TempDir,
    _outside: tempfile::TempDir,
    /// `build.json`, not there yet.
    file: std::path::PathBuf,
}

/// [`OnPort`] on a port where nothing listens yet.
fn on_free_port() -> OnPort {
    let port = free_port();
    let outside = tempfile::tempdir().unwrap();
    OnPort {
        port,
        project: project_on_port(port),
        home: tempfile::tempdir().unwrap(),
        file: outside.path().join("build.json"),
        _outside: outside,
    }
}

/// A two-platform project whose image is on 127.0.0.1:`port`.
fn project_on_port(port: u16) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "stopped\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"127.0.0.1:{port}/stopped\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n"
            ),
        );
    project
}

/// Runs mab with `arguments` in `project`, its registry `listener` taking
/// the connection and never answering, and sends it `signal` once it
/// connected; returns its exit code (`None` when a signal ended it).
fn signalled_at_the_registry(
    listener: &std::net::TcpListener,
    home: &Path,
    project: &Project,
    arguments: &[&str],
    signal: &str,
) -> Option<i32> {
    let mut child = mab_command(home, project.path(), arguments)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_connection, _) = listener.accept().unwrap();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait().unwrap().code()
}

/// A build killed with SIGKILL (while it waits for a registry that never
/// answers) leaves its `--metadata-file` empty, never an older build's
/// document; a resume from it says that the file is empty (exit 2).
#[test]
fn a_killed_build_leaves_its_metadata_file_empty() {
    let on = on_free_port();
    let (port, project, home, file) = (on.port, &on.project, &on.home, &on.file);
    let file_text = file.to_str().unwrap();
    std::fs::write(file, "{\"written by\": \"an older build\"}\n").unwrap();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let build = ["build", "--metadata-file", file_text];
    assert_eq!(
        signalled_at_the_registry(&listener, home.path(), project, &build, "KILL"),
        None
    );
    assert_eq!(std::fs::read_to_string(file).unwrap(), "");
    drop(listener);

    let run = mab(
        home.path(),
        project.path(),
        &["build", "--resume", file_text],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "error: cannot resume from {file_text}: the file is empty"
        )),
        "{run:?}"
    );
}

/// A `--no-push` build keeps no state, as it can never be resumed: the
/// state the last pushing build left stays byte for byte, and without
/// one `--resume` finds nothing to resume (exit 2). On the local engine.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_no_push_build_keeps_no_state() {
    let lab = require_lab!();
    let repository = lab.repository("resume-no-push");
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "no push\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n"),
        );
    let home = Home::new(lab);
    let states = home.path().join(".local/state/mab/builds");
    let state_files = || -> Vec<std::path::PathBuf> {
        match std::fs::read_dir(&states) {
            Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    };

    let run = mab(home.path(), project.path(), &["build", "--no-push"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(state_files(), Vec::<std::path::PathBuf>::new());
    let run = mab(home.path(), project.path(), &["build", "--resume"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("nothing to resume: no earlier build of"),
        "{run:?}"
    );

    let run = mab(home.path(), project.path(), &["build", "--tag", "t1"]);
    assert_eq!(run.code, 0, "{run:?}");
    let files = state_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let pushed = std::fs::read(&files[0]).unwrap();
    let run = mab(home.path(), project.path(), &["build", "--no-push"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), pushed);
}
