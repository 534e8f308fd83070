//! Faults found before anything is built, on the real lab: each refused
//! run checks its exit code, its message, and that the registry's tags
//! (read with skopeo) did not change and no runner was asked to build.

use crate::support::{
    mab, require_lab, runners_check_json, sha256, skopeo_raw, skopeo_tags, Lab, Project, Run,
};

/// A `FROM scratch` project for the lab's local engine (the implicit
/// local runner, which emulates arm64 for a build without RUN steps).
fn project(repository: &str, platforms: &[&str]) -> Project {
    let project = Project::new();
    let platforms: Vec<String> = platforms.iter().map(|p| format!("\"{p}\"")).collect();
    project
        .file(
            "Dockerfile",
            "FROM scratch AS base\nCOPY content.txt /\n\nFROM base AS runtime\n",
        )
        .file("content.txt", "release\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [{}]\n",
                platforms.join(", ")
            ),
        );
    project
}

/// `mab build --progress json ARGS` with a home of its own.
fn build(project: &Project, arguments: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut all = vec!["build", "--progress", "json"];
    all.extend_from_slice(arguments);
    mab(home.path(), project.path(), &all)
}

/// Each tag of `repository` with the digest it points at, read with skopeo.
fn registry_state(repository: &str) -> Vec<(String, String)> {
    skopeo_tags(repository)
        .into_iter()
        .map(|tag| {
            let digest = sha256(&skopeo_raw(&format!("{repository}:{tag}")));
            (tag, digest)
        })
        .collect()
}

/// A refused run: the exit code, the words of its message and a hint, and
/// no job started (the progress events on stderr hold no `job_started`).
/// With `--progress json` the report is in the `result` event, stderr
/// holding only JSON; `mab plan` prints it as text.
fn assert_refused(run: &Run, code: i32, words: &[&str]) {
    assert_eq!(run.code, code, "{run:?}");
    let report = if run.stderr.starts_with('{') {
        let error = &run.result_event()["error"];
        let text = |field: &str| -> Vec<String> {
            error[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|line| line.as_str().unwrap().to_owned())
                .collect()
        };
        let hints = text("hints");
        assert!(!hints.is_empty(), "a hint: {run:?}");
        format!(
            "{}\n{}\n{}",
            error["message"].as_str().unwrap(),
            text("details").join("\n"),
            hints.join("\n")
        )
    } else {
        assert!(run.stderr.contains("hint: "), "{run:?}");
        run.stderr.clone()
    };
    for word in words {
        assert!(report.contains(word), "`{word}` in {run:?}");
    }
    assert!(
        !run.stderr.contains("\"job_started\""),
        "no job started: {run:?}"
    );
}

/// On a commit tagged `v1.0.0`, a one-platform build would have replaced
/// the two-platform release under `1.0.0`, the short sha and `latest`:
/// refused, every tag still on the release's list; with `--tag` it goes on.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn one_platform_build_on_a_tagged_commit_is_refused() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("partial-release");
    let project = project(&repository, &["linux/amd64", "linux/arm64"]);
    let commit = project.commit_and_tag(&["v1.0.0"]);

    let release = build(&project, &[]);
    assert_eq!(release.code, 0, "{release:?}");
    let published = registry_state(&repository);
    let tags: Vec<&str> = published.iter().map(|(tag, _)| tag.as_str()).collect();
    for tag in ["1.0.0", "latest", &commit[..8]] {
        assert!(tags.contains(&tag), "{tag} in {tags:?}");
    }
    let list: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&format!("{repository}:1.0.0"))).unwrap();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 2, "{list}");

    let refused = build(&project, &["--platform", "linux/arm64"]);
    assert_refused(
        &refused,
        2,
        &[
            "--platform linux/arm64 leaves out linux/amd64",
            "mab.toml",
            "--tag",
            "--no-push",
        ],
    );
    assert_eq!(registry_state(&repository), published);

    let tagged = build(
        &project,
        &["--platform", "linux/arm64", "--tag", "arm-only"],
    );
    assert_eq!(tagged.code, 0, "{tagged:?}");
    let after = registry_state(&repository);
    for (tag, digest) in &published {
        assert!(
            after.contains(&(tag.clone(), digest.clone())),
            "{tag} kept: {after:?}"
        );
    }
    assert!(after.iter().any(|(tag, _)| tag == "arm-only"), "{after:?}");
}

/// The lab's local engine is amd64 and emulates arm64: with `--native-only`
/// (or `emulation = false`) the arm64 platform is refused before anything
/// is built (exit 2); with a runner listed for arm64 that is unreachable,
/// which may be the native one, it is a runtime failure (exit 1). Nothing
/// reaches the registry; without the flag the same plan emulates arm64.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn native_only_refuses_an_emulated_plan() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("native-only");
    let project = project(&repository, &["linux/amd64", "linux/arm64"]);
    let local = format!(
        "[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\nengine = \"{}\"\n",
        lab.get("LOCAL_ENGINE")
    );
    project.file("runners.toml", &local);
    project.commit_and_tag(&[]);
    let refusal = "no runner builds linux/arm64 natively, and emulation is off: here can only emulate linux/arm64";

    let refused = build(&project, &["--native-only"]);
    assert_refused(&refused, 2, &[refusal, "add a native linux/arm64 runner"]);
    assert_eq!(registry_state(&repository), Vec::new());

    let home = tempfile::tempdir().unwrap();
    let planned = mab(home.path(), project.path(), &["plan", "--format", "json"]);
    assert_eq!(planned.code, 0, "{planned:?}");
    assert_eq!(
        planned.json()["platforms"][1]["emulated"],
        true,
        "{planned:?}"
    );
    let planned = mab(home.path(), project.path(), &["plan", "--native-only"]);
    assert_refused(&planned, 2, &[refusal]);

    let manifest = std::fs::read_to_string(project.path().join("mab.toml")).unwrap();
    project.file("mab.toml", &format!("{manifest}emulation = false\n"));
    let refused = build(&project, &[]);
    assert_refused(&refused, 2, &[refusal]);
    assert_eq!(registry_state(&repository), Vec::new());

    // Nothing listens on this loopback port: the runner is unreachable.
    project.file(
        "runners.toml",
        &format!("[[runner]]\nname = \"arm-down\"\nhost = \"root@127.0.0.1:1\"\nplatforms = [\"linux/arm64\"]\n\n{local}"),
    );
    let refused = build(&project, &["--no-push"]);
    assert_refused(
        &refused,
        1,
        &[
            "no reachable runner builds linux/arm64 natively",
            "arm-down is unreachable",
            "mab runners check` (arm-down)",
        ],
    );
    assert_eq!(registry_state(&repository), Vec::new());
}

/// `docker build --target TARGET -q .` on the lab's local engine: whether
/// it succeeded, and its stderr.
fn docker_build_target(lab: &Lab, project: &Project, target: &str) -> (bool, String) {
    let output = lab
        .docker_cli()
        .args(["build", "-q", "--target", target, "."])
        .current_dir(project.path())
        .output()
        .expect("the docker CLI runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A `target` the Dockerfile does not name is refused before anything is
/// built, as the docker CLI (the oracle) refuses it once the build is sent;
/// the stage names compare case-insensitively, as there, and a stage's
/// number is no name. The registry is not touched.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn wrong_target_is_refused_before_building() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("wrong-target");
    let project = project(&repository, &["linux/amd64"]);
    project.commit_and_tag(&[]);

    for target in ["runtim", "0", "1"] {
        let (built, stderr) = docker_build_target(lab, &project, target);
        assert!(!built, "docker refuses --target {target}");
        assert!(
            stderr.contains(&format!("target stage {target} could not be found")),
            "{stderr}"
        );
        let refused = build(&project, &["--target", target]);
        assert_refused(
            &refused,
            2,
            &[&format!("--target {target}: the Dockerfile {}/Dockerfile has no stage `{target}`; its stages are base, runtime", project.path().display())],
        );
    }
    let manifest = std::fs::read_to_string(project.path().join("mab.toml")).unwrap();
    project.file("mab.toml", &format!("{manifest}target = \"release\"\n"));
    let refused = build(&project, &["--no-push"]);
    assert_refused(&refused, 2, &["has no stage `release`", "mab.toml:4:10"]);
    assert_eq!(registry_state(&repository), Vec::new());

    // Docker accepts a stage name in another case: so does mab.
    let (built, stderr) = docker_build_target(lab, &project, "RunTime");
    assert!(built, "{stderr}");
    project.file("mab.toml", &manifest);
    let accepted = build(&project, &["--no-push", "--target", "RunTime"]);
    assert_eq!(accepted.code, 0, "{accepted:?}");
}

/// The images of `repository` on the lab's local engine, by the docker CLI.
fn local_images(lab: &Lab, repository: &str) -> String {
    let output = lab
        .docker_cli()
        .args(["image", "ls", "--quiet", repository])
        .output()
        .expect("the docker CLI runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A registry that does not answer (nothing listens on that loopback
/// port; the shared lab registry stays up) stops the build before any job
/// starts: exit 1, naming the registry, and the local engine never built
/// an image for the repository.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn stopped_registry_is_found_before_building() {
    let lab: &Lab = require_lab!();
    let repository = format!(
        "127.0.0.1:5999/{}",
        lab.repository("registry-stopped")
            .split_once('/')
            .unwrap()
            .1
    );
    let project = project(&repository, &["linux/amd64"]);
    project.commit_and_tag(&["v1.0.0"]);

    let refused = build(&project, &[]);
    assert_refused(
        &refused,
        1,
        &[
            "cannot reach the registry 127.0.0.1:5999",
            "Connection refused",
            "nothing was built",
        ],
    );
    assert_eq!(local_images(lab, &repository), "", "nothing was built");

    // --no-push needs no registry: the same build goes on.
    let built = build(&project, &["--no-push"]);
    assert_eq!(built.code, 0, "{built:?}");
    assert_ne!(
        local_images(lab, &repository),
        "",
        "built without the registry"
    );
}

/// Credentials that may not push to the repository (a wrong password for
/// the lab's registry with htpasswd auth, or none) are a configuration
/// error found before anything is built: exit 2, naming the registry and
/// the user; nothing is published. The check itself leaves nothing in an
/// open registry: a build that then fails publishes no tag.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn credentials_that_may_not_push_are_refused_before_building() {
    let lab: &Lab = require_lab!();
    let registry = lab.get("AUTH_REGISTRY");
    let repository = format!(
        "{registry}/{}",
        lab.repository("push-denied").split_once('/').unwrap().1
    );
    let project = project(&repository, &["linux/amd64"]);
    project.commit_and_tag(&["v1.0.0"]);
    let home = tempfile::tempdir().unwrap();
    let run = |arguments: &[&str]| {
        let mut all = vec!["build", "--progress", "json"];
        all.extend_from_slice(arguments);
        mab(home.path(), project.path(), &all)
    };

    let refused = run(&[]);
    assert_refused(
        &refused,
        2,
        &[
            &format!("{registry} does not allow anonymous users to push to {repository}"),
            "docker login",
        ],
    );
    // base64("mab:wrong")
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    std::fs::write(
        home.path().join(".docker/config.json"),
        format!("{{\"auths\":{{\"{registry}\":{{\"auth\":\"bWFiOndyb25n\"}}}}}}"),
    )
    .unwrap();
    let refused = run(&[]);
    assert_refused(
        &refused,
        2,
        &[
            &format!(
                "{registry} does not allow `mab` (from {}/.docker/config.json) to push to {repository} (a bad password, an expired token, or a user that may not push there)",
                home.path().display()
            ),
            "401",
            "log in again with `docker login",
        ],
    );
    assert!(
        !refused.stderr.contains("wrong"),
        "no password shown: {refused:?}"
    );
    assert_eq!(local_images(lab, &repository), "", "nothing was built");

    let open = lab.repository("push-check");
    let failing = Project::new();
    failing.file("Dockerfile", "FROM scratch\nRUN true\n").file(
        "mab.toml",
        &format!("[image]\nname = \"{open}\"\nplatforms = [\"linux/amd64\"]\n"),
    );
    failing.commit_and_tag(&[]);
    let failed = build(&failing, &[]);
    assert_eq!(
        failed.code, 1,
        "the build fails after the check: {failed:?}"
    );
    assert!(failed.stderr.contains("\"job_started\""), "{failed:?}");
    assert_eq!(registry_state(&open), Vec::new());
}

/// A local runner whose engine socket accepts connections and never
/// answers (as a hung dockerd does): `mab runners check` gives up on it
/// after the 30 s engine request limit, naming the runner and the request,
/// rather than hanging or waiting for the probe's 60 s backstop.
#[test]
fn an_engine_that_never_answers_is_reported_within_its_request_limit() {
    let directory = tempfile::tempdir().unwrap();
    let socket = directory.path().join("hung.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // Accepts every connection and keeps it open, reading nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let project = Project::new();
    project.file(
        "runners.toml",
        &format!(
            "[[runner]]\nname = \"hung\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nengine = \"unix://{}\"\n",
            socket.display()
        ),
    );
    let home = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let run = runners_check_json(home.path(), project.path());
    let seconds = started.elapsed().as_secs_f64();
    assert!((29.0..40.0).contains(&seconds), "took {seconds} s: {run:?}");
    assert_eq!(run.code, 1, "{run:?}");
    let json = run.json();
    let hung = &json["runners"][0];
    assert_eq!(hung["name"], "hung", "{json}");
    assert_eq!(
        (hung["ok"].clone(), hung["error_kind"].clone()),
        (false.into(), "engine".into()),
        "{hung}"
    );
    assert_eq!(
        hung["error"], "the Docker engine of hung did not answer GET /version within 30 s",
        "{hung}"
    );
    assert!(
        hung["hint"]
            .as_str()
            .unwrap()
            .contains("accepted the connection but did not answer"),
        "{hung}"
    );
}
