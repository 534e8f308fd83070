//! `[test]`: each platform's image runs a command on the runner that built
//! it (natively, or under that runner's QEMU), with networking disabled,
//! before anything is published. Containers are found afterwards with the
//! docker CLI on each engine, by the `mab.image` label mab gives them;
//! tags with skopeo. Each test holds the SSH lock: its container checks
//! reach every runner over SSH, which tests counting logins must not see.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    build_and_metadata, build_with_metadata, docker_on, mab_command, require_lab, sha256,
    skopeo_exists, skopeo_raw, ssh_lock, Home, Lab, Project,
};

/// The engines the smoke tests run on.
const ENGINES: [&str; 3] = ["local", "runner-arm", "runner-b"];

/// A `FROM scratch` image of busybox for linux/amd64 (`here`, the local
/// engine), linux/arm64 (`arm`, runner-arm: an arm64 engine, native, over
/// SSH) and linux/ppc64le (`power`, runner-b: emulated with QEMU), with
/// `test` as its `[test]` table. No `RUN` step: runner-arm's engine
/// cannot give one a network.
fn project(lab: &Lab, repository: &str, test: &str) -> Project {
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64", "arm64", "ppc64le"])
        .file(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY busybox/${TARGETARCH} /bin/busybox\nCOPY machine/${TARGETARCH} /etc/machine\n",
        )
        // Each image's machine, as `uname -m` says it: [`machine_script`]
        // compares, which ties each image to the machine that runs it.
        .file("machine/amd64", "x86_64\n")
        .file("machine/arm64", "aarch64\n")
        .file("machine/ppc64le", "ppc64le\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\", \"linux/ppc64le\"]\n\n[test]\n{test}"
            ),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nengine = \"{local}\"\n\n\
                 [[runner]]\nname = \"arm\"\nhost = \"runner-arm\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{arm}\"\n\n\
                 [[runner]]\nname = \"power\"\nhost = \"runner-b\"\nplatforms = [\"linux/ppc64le\"]\nengine = \"unix://{b}\"\n",
                local = lab.get("LOCAL_ENGINE"),
                arm = lab.get("RUNNER_ARM_ENGINE_SOCKET"),
                b = lab.get("RUNNER_B_ENGINE_SOCKET"),
            ),
        );
    project
}

/// [`project`] for linux/amd64 only (`here`, the local engine).
fn amd64_project(lab: &Lab, repository: &str, test: &str) -> Project {
    let project = project(lab, repository, test);
    let manifest = std::fs::read_to_string(project.path().join("mab.toml")).unwrap();
    project.file(
        "mab.toml",
        &manifest.replace(
            "platforms = [\"linux/amd64\", \"linux/arm64\", \"linux/ppc64le\"]",
            "platforms = [\"linux/amd64\"]",
        ),
    );
    project
}

/// `[test] run` of a shell script in the image's busybox.
fn script(script: &str) -> String {
    format!(
        "run = [\"/bin/busybox\", \"sh\", \"-c\", {}]\n",
        serde_json::to_string(script).unwrap()
    )
}

/// Prints the machine the command runs on and the network interfaces it
/// sees, then `same machine` when that machine is the one the image was
/// built for (`/etc/machine`), and fails with code 3 (after a line on
/// stderr) on `failing_on`.
fn machine_script(failing_on: &str) -> String {
    script(&format!(
        "echo machine=$(/bin/busybox uname -m); \
         echo interfaces: $(/bin/busybox cut -d: -f1 /proc/net/dev | /bin/busybox tail -n +3); \
         if [ \"$(/bin/busybox uname -m)\" = \"$(/bin/busybox cat /etc/machine)\" ]; then echo same machine; fi; \
         if [ \"$(/bin/busybox uname -m)\" = {failing_on} ]; then echo 'not on this machine' >&2; exit 3; fi"
    ))
}

/// The containers with `repository`'s label on `engine`, removed or not.
fn containers(engine: &str, repository: &str) -> Vec<String> {
    let output = docker_on(
        engine,
        &[
            "ps",
            "--all",
            "--filter",
            &format!("label=mab.image={repository}"),
            "--format",
            "{{.ID}} {{.Status}} {{.Labels}}",
        ],
    );
    assert!(output.status.success(), "docker ps on {engine}: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn assert_no_container_left(repository: &str) {
    for engine in ENGINES {
        assert_eq!(
            containers(engine, repository),
            Vec::<String>::new(),
            "no smoke-test container left on {engine}"
        );
    }
}

/// The platforms whose `test` phase finished, as `PLATFORM on RUNNER`,
/// from the plain progress lines (`[linux/arm64 arm] test done in 0.4s`).
fn tested(stderr: &str) -> Vec<String> {
    let mut tested: Vec<String> = stderr
        .lines()
        .filter_map(|line| {
            let at = line.split_once("] test done in ")?.0.strip_prefix('[')?;
            let (platform, runner) = at.split_once(' ')?;
            Some(format!("{platform} on {runner}"))
        })
        .collect();
    tested.sort();
    tested
}

/// (a) A test whose `expect` matches passes on all three platforms, the
/// emulated one included; each platform's metadata records it, and no
/// container is left.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_passing_test_on_three_platforms() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-pass");
    // The machine must be one of the three and the only interface the
    // loopback one: the network is disabled.
    let test = format!(
        "{}expect = '(?m)^machine=(x86_64|aarch64|ppc64le)\\ninterfaces: lo\\nsame machine$'\ntimeout = \"2m\"\n",
        machine_script("none")
    );
    let project = project(lab, &repository, &test);
    let home = Home::new(lab);
    let (run, metadata) = build_with_metadata(home.path(), project.path(), &["--tag", "passed"]);
    assert_eq!(
        tested(&run.stderr),
        [
            "linux/amd64 on here",
            "linux/arm64 on arm",
            "linux/ppc64le on power"
        ],
        "{run:?}"
    );
    let platforms = metadata["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 3);
    for entry in platforms {
        assert_eq!(entry["state"], "published", "{entry}");
        assert_eq!(entry["test"]["exit_code"], 0, "{entry}");
        let seconds = entry["test"]["seconds"].as_f64().unwrap();
        assert!(seconds > 0.0 && seconds < 120.0, "{entry}");
        let emulated = entry["platform"] == "linux/ppc64le";
        assert_eq!(entry["emulated"], emulated, "{entry}");
    }
    let list = skopeo_raw(&format!("{repository}:passed"));
    assert_eq!(metadata["digest"], sha256(&list).as_str());
    assert_no_container_left(&repository);
}

/// (b) A command that fails on ppc64le only (emulated on runner-b): exit
/// 1 naming the platform, the runner, the command and its exit code, with
/// the output's end under the runner's name; the tag published before
/// (e: with `--no-test`, which skips the test) is unchanged, and no
/// container is left. (`expect` that does not match fails the same way.)
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_test_failing_on_one_platform_publishes_nothing() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-fail");
    let project = project(lab, &repository, &machine_script("ppc64le"));
    let home = Home::new(lab);

    // --no-test: nothing runs, the metadata has no `test`, the tag is published.
    let (skipped, metadata) = build_with_metadata(
        home.path(),
        project.path(),
        &["--tag", "stable", "--no-test"],
    );
    assert_eq!(tested(&skipped.stderr), Vec::<String>::new(), "{skipped:?}");
    for entry in metadata["platforms"].as_array().unwrap() {
        assert_eq!(entry["state"], "published", "{entry}");
        assert!(entry.get("test").is_none(), "{entry}");
    }
    let before = sha256(&skopeo_raw(&format!("{repository}:stable")));
    assert_no_container_left(&repository);

    // The same build with the test: ppc64le fails, the others pass.
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &["--tag", "stable"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("linux/ppc64le on power: [test] run = [\"/bin/busybox\",\"sh\",\"-c\",")
            && run
                .stderr
                .contains("exited with code 3 in the linux/ppc64le image on runner `power`"),
        "names the platform, runner, command and code: {run:?}"
    );
    // The output's end, under the runner's line.
    let shown = run
        .stderr
        .split("linux/ppc64le on power: [test]")
        .nth(1)
        .unwrap_or_default();
    assert!(
        shown.contains("    machine=ppc64le\n")
            && shown.contains("    interfaces: lo\n")
            && shown.contains("    stderr: not on this machine\n"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("hint: the command's output ends as shown"),
        "{run:?}"
    );
    assert_eq!(
        tested(&run.stderr),
        ["linux/amd64 on here", "linux/arm64 on arm"],
        "{run:?}"
    );
    let entries = metadata["platforms"].as_array().unwrap();
    let ppc = entries
        .iter()
        .find(|entry| entry["platform"] == "linux/ppc64le")
        .unwrap();
    assert_eq!(ppc["state"], "failed", "{ppc}");
    assert_eq!(ppc["error"]["kind"], "test", "{ppc}");
    assert_eq!(ppc["test"]["exit_code"], 3, "{ppc}");
    // The platforms that passed are pushed and tested, not published.
    for entry in entries
        .iter()
        .filter(|entry| entry["platform"] != "linux/ppc64le")
    {
        assert_eq!(entry["state"], "pushed", "{entry}");
        assert_eq!(entry["test"]["exit_code"], 0, "{entry}");
    }
    assert_eq!(metadata["digest"], serde_json::Value::Null);
    assert_eq!(
        sha256(&skopeo_raw(&format!("{repository}:stable"))),
        before,
        "the tag is unchanged"
    );
    assert_no_container_left(&repository);

    // An `expect` that only amd64's output matches fails the two others.
    let manifest = std::fs::read_to_string(project.path().join("mab.toml")).unwrap();
    project.file(
        "mab.toml",
        &format!(
            "{}expect = \"machine=x86_64\"\n",
            manifest.replace("= ppc64le ]", "= none ]")
        ),
    );
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &["--tag", "stable"]);
    assert_eq!(run.code, 1, "{run:?}");
    for entry in metadata["platforms"].as_array().unwrap() {
        // Every command exited 0; only amd64's output matched.
        assert_eq!(entry["test"]["exit_code"], 0, "{entry}");
        let kind = &entry["error"]["kind"];
        match entry["platform"].as_str().unwrap() {
            "linux/amd64" => assert!(kind.is_null(), "{entry}"),
            _ => assert_eq!(kind, "test", "{entry}"),
        }
    }
    for (platform, runner) in [("linux/arm64", "arm"), ("linux/ppc64le", "power")] {
        assert!(
            run.stderr.contains(&format!(
                "exited with code 0 in the {platform} image on runner `{runner}`, but its output did not match expect = 'machine=x86_64'"
            )),
            "{platform}: {run:?}"
        );
    }
    assert_eq!(tested(&run.stderr), ["linux/amd64 on here"], "{run:?}");
    assert_eq!(
        sha256(&skopeo_raw(&format!("{repository}:stable"))),
        before,
        "the tag is unchanged"
    );
    assert_no_container_left(&repository);
}

/// (c) `sleep 30` with `timeout = "2s"` fails in about the timeout, says it
/// timed out, and leaves no container; the container was there while it
/// ran, found by the label this test looks for.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_test_that_times_out() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-timeout");
    let project = amd64_project(
        lab,
        &repository,
        "run = [\"/bin/busybox\", \"sleep\", \"30\"]\ntimeout = \"2s\"\n",
    );
    let home = Home::new(lab);
    let mut command = mab_command(
        home.path(),
        project.path(),
        &["build", "--progress", "plain", "--tag", "late"],
    );
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (mut seen, mut line) = (String::new(), String::new());
    let mut running = Vec::new();
    let mut test_started = None;
    while stderr.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains(" verify done in ") {
            test_started = Some(Instant::now());
            // The container is created now and runs for 2 s.
            while running.is_empty() && test_started.unwrap().elapsed() < Duration::from_secs(2) {
                running = containers("local", &repository);
            }
        }
        line.clear();
    }
    let code = child.wait().unwrap().code();
    let took = test_started.map(|started| started.elapsed());
    assert_eq!(code, Some(1), "{seen}");
    assert!(
        seen.contains("[test] run = [\"/bin/busybox\",\"sleep\",\"30\"] timed out after 2s in the linux/amd64 image on runner `here` and was killed"),
        "{seen}"
    );
    assert!(seen.contains("hint: raise [test] `timeout`"), "{seen}");
    let took = took.unwrap();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(15),
        "fails in about the timeout: {took:?}\n{seen}"
    );
    assert_eq!(running.len(), 1, "the container ran: {running:?}\n{seen}");
    assert!(running[0].contains("mab.build="), "{running:?}");
    assert!(!skopeo_exists(&format!("{repository}:late")));
    assert_no_container_left(&repository);
}

/// A command the images do not hold cannot start on any of the three
/// platforms: each fails with the engine's reason and names where its image
/// is kept (which the engine holds), the report gives the hint once, and
/// no container is left.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_command_that_cannot_start() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-missing");
    let project = project(lab, &repository, "run = [\"/no/such/program\"]\n");
    let home = Home::new(lab);
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &["--tag", "never"]);
    assert_eq!(run.code, 1, "{run:?}");
    for ((platform, runner), engine) in [
        ("linux/amd64", "here"),
        ("linux/arm64", "arm"),
        ("linux/ppc64le", "power"),
    ]
    .into_iter()
    .zip(ENGINES)
    {
        let line = run
            .stderr
            .lines()
            .find(|line| line.contains(&format!("{platform} on {runner}: [test]")))
            .unwrap_or_else(|| panic!("{platform}: {run:?}"));
        assert!(
            line.contains(&format!("[test] run = [\"/no/such/program\"] could not start in the {platform} image on runner `{runner}`: "))
                && line.contains("no such file or directory"),
            "{line}"
        );
        // `<image>:mab-<build id>-<platform>`, the build id 12 hex digits.
        let (_, kept) = line
            .rsplit_once(&format!("; the image is kept on runner `{runner}` as "))
            .unwrap_or_else(|| panic!("names the kept image: {line}"));
        let build_id = kept
            .strip_prefix(&format!("{repository}:mab-"))
            .and_then(|rest| rest.strip_suffix(&format!("-{}", platform.replace('/', "-"))))
            .unwrap_or_else(|| panic!("{kept}"));
        assert!(
            build_id.len() == 12 && build_id.chars().all(|c| c.is_ascii_hexdigit()),
            "{kept}"
        );
        // The engine holds the image under that name.
        let inspected = docker_on(
            engine,
            &[
                "image",
                "inspect",
                "--format",
                "{{.Os}}/{{.Architecture}}",
                kept,
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&inspected.stdout).trim(),
            platform,
            "{engine}: {inspected:?}"
        );
        docker_on(engine, &["rmi", kept]);
    }
    assert_eq!(
        run.stderr
            .matches(
                "hint: check that each image holds the program `run` names, built for its platform"
            )
            .count(),
        1,
        "one hint for the three platforms: {run:?}"
    );
    for entry in metadata["platforms"].as_array().unwrap() {
        assert_eq!(entry["error"]["kind"], "test", "{entry}");
        assert!(entry.get("test").is_none(), "{entry}");
    }
    assert!(!skopeo_exists(&format!("{repository}:never")));
    assert_no_container_left(&repository);
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_interrupted_test_leaves_no_container() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-interrupt");
    let project = project(
        lab,
        &repository,
        "run = [\"/bin/busybox\", \"sleep\", \"120\"]\n",
    );
    let home = Home::new(lab);
    let mut command = mab_command(
        home.path(),
        project.path(),
        &[
            "build",
            "--progress",
            "plain",
            "--tag",
            "stopped",
            "--platform",
            "linux/arm64",
        ],
    );
    let mut child = command.stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while containers("runner-arm", &repository).is_empty() {
        assert!(Instant::now() < deadline, "the smoke test never started");
        assert!(child.try_wait().unwrap().is_none(), "mab ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(!skopeo_exists(&format!("{repository}:stopped")));
    assert_no_container_left(&repository);
}

/// The container while the test runs, as the engine describes it: `NAME
/// AUTOREMOVE LOGTYPE NETWORK` of the one container with `repository`'s
/// label on `engine`, once it is there (within `limit`).
fn running_container(engine: &str, repository: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(line) = containers(engine, repository).first() {
            let id = line.split_whitespace().next().unwrap().to_owned();
            let output = docker_on(
                engine,
                &[
                    "inspect",
                    "--format",
                    "{{.Name}} {{.HostConfig.AutoRemove}} {{.HostConfig.LogConfig.Type}} {{.HostConfig.NetworkMode}}",
                    &id,
                ],
            );
            if output.status.success() {
                return String::from_utf8_lossy(&output.stdout).trim().to_owned();
            }
        }
        assert!(Instant::now() < deadline, "the smoke test never started");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits up to `limit` until no container of `repository` is on any
/// engine, then checks that none is.
fn assert_containers_go(repository: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while ENGINES
        .iter()
        .any(|engine| !containers(engine, repository).is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_no_container_left(repository);
}

/// mab killed outright (SIGKILL, as a lost SSH link leaves it) while the
/// test runs: the engine removes the container itself once the command
/// ends (AutoRemove). The container is named `mab-<build id>-<platform>`,
/// keeps no log and has no network.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_killed_mab_leaves_no_container() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-killed");
    let project = amd64_project(
        lab,
        &repository,
        "run = [\"/bin/busybox\", \"sleep\", \"3\"]\n",
    );
    let home = Home::new(lab);
    let mut command = mab_command(
        home.path(),
        project.path(),
        &["build", "--progress", "plain", "--tag", "killed"],
    );
    let mut child = command.stderr(Stdio::null()).spawn().unwrap();
    let described = running_container("local", &repository, Duration::from_secs(120));
    let status = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
    let fields: Vec<&str> = described.split(' ').collect();
    assert_eq!(fields[1..], ["true", "none", "none"], "{described}");
    let name = fields[0].strip_prefix("/mab-").unwrap_or_default();
    let (id, slug) = name.split_once('-').unwrap_or_default();
    assert!(
        id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()) && slug == "linux-amd64",
        "{described}"
    );
    assert_containers_go(&repository, Duration::from_secs(20));
    assert!(!skopeo_exists(&format!("{repository}:killed")));
}

/// Text on standard error only does not match `expect`: the platform
/// fails, the line is shown marked `stderr:`, and the hint says that
/// `expect` reads standard output only.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn stderr_does_not_match_expect() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-stderr");
    let test = format!("{}expect = 'ready'\n", script("echo ready >&2"));
    let project = amd64_project(lab, &repository, &test);
    let home = Home::new(lab);
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &["--tag", "never"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("but its output did not match expect = 'ready'")
            && run.stderr.contains("    stderr: ready\n")
            && run
                .stderr
                .contains("hint: compare `expect` with the output shown: it is matched against standard output only"),
        "{run:?}"
    );
    assert_eq!(metadata["platforms"][0]["error"]["kind"], "test");
    assert_eq!(metadata["platforms"][0]["test"]["exit_code"], 0);
    assert!(!skopeo_exists(&format!("{repository}:never")));
    assert_no_container_left(&repository);
}

/// `^` and `$` without `(?m)` are the ends of the output, its last line
/// end removed as `$(...)` does: `^version 2\.0$` matches what `echo
/// "version 2.0"` prints (the platform is published) and not two lines.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_anchored_expect_matches_a_one_line_output() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-anchored");
    let expect = "expect = '^version 2\\.0$'\n";
    let test = format!("{}{expect}", script("echo 'version 2.0'"));
    let project = amd64_project(lab, &repository, &test);
    let home = Home::new(lab);
    let (run, metadata) = build_with_metadata(home.path(), project.path(), &["--tag", "anchored"]);
    assert_eq!(tested(&run.stderr), ["linux/amd64 on here"], "{run:?}");
    assert_eq!(metadata["platforms"][0]["state"], "published");
    assert!(skopeo_exists(&format!("{repository}:anchored")));

    // A second line: `$` is the end of the whole output.
    let test = format!("{}{expect}", script("echo 'version 2.0'; echo done"));
    let project = amd64_project(lab, &repository, &test);
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &["--tag", "never"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains(r"but its output did not match expect = '^version 2\.0$'")
            && run
                .stderr
                .contains("add `(?m)` for `^` and `$` to match at each line"),
        "{run:?}"
    );
    assert_eq!(metadata["platforms"][0]["error"]["kind"], "test");
    assert!(!skopeo_exists(&format!("{repository}:never")));
    assert_no_container_left(&repository);
}

/// 200 MB of output with exit code 0 passes within its timeout: mab reads
/// the output as it comes (keeping its end) and the engine logs none of it.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_test_with_large_output_passes() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-large");
    let test = format!(
        "{}expect = '(?m)^y\\ndone$'\ntimeout = \"60s\"\n",
        script("/bin/busybox yes | /bin/busybox head -c 200000000; echo done")
    );
    let project = amd64_project(lab, &repository, &test);
    let home = Home::new(lab);
    let (run, metadata) = build_with_metadata(home.path(), project.path(), &["--tag", "large"]);
    assert_eq!(tested(&run.stderr), ["linux/amd64 on here"], "{run:?}");
    let entry = &metadata["platforms"][0];
    assert_eq!(entry["test"]["exit_code"], 0, "{entry}");
    assert!(entry["test"]["seconds"].as_f64().unwrap() < 60.0, "{entry}");
    assert!(skopeo_exists(&format!("{repository}:large")));
    assert_no_container_left(&repository);
}

/// The job's time limit (`--timeout`) ends the job while its test runs:
/// the dropped run's container is removed before mab exits.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn the_job_time_limit_during_a_test_leaves_no_container() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-job-limit");
    let project = amd64_project(
        lab,
        &repository,
        "run = [\"/bin/busybox\", \"sleep\", \"120\"]\ntimeout = \"5m\"\n",
    );
    let home = Home::new(lab);
    let (run, _metadata) = build_and_metadata(
        home.path(),
        project.path(),
        &["--tag", "limited", "--timeout", "15s"],
    );
    // The image builds in a few seconds (no RUN step), so the limit
    // stopped the job in its test, which sleeps for 120 s.
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "linux/amd64 on here: stopped after running for 15s on runner `here`, its time limit (--timeout)"
        ),
        "{run:?}"
    );
    assert!(!skopeo_exists(&format!("{repository}:limited")));
    // Removed before mab exited: no waiting here.
    assert_no_container_left(&repository);
}

/// A platform an earlier build published with `--no-test` is not reused
/// untested by `--resume`: it is rebuilt and tested, and its metadata says
/// the test passed; a resume of that build then reuses it.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_resume_tests_what_was_built_without_the_test() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-resume");
    let project = amd64_project(lab, &repository, &script("echo ok"));
    let home = Home::new(lab);
    let (first, _) = build_with_metadata(home.path(), project.path(), &["--no-test", "--tag", "a"]);
    assert_eq!(tested(&first.stderr), Vec::<String>::new(), "{first:?}");
    let (resumed, metadata) =
        build_with_metadata(home.path(), project.path(), &["--resume", "--tag", "b"]);
    assert!(
        resumed.stderr.contains(
            "linux/amd64 is rebuilt to run [test]: the earlier build did not run [test] on it"
        ),
        "{resumed:?}"
    );
    assert_eq!(
        tested(&resumed.stderr),
        ["linux/amd64 on here"],
        "{resumed:?}"
    );
    let entry = &metadata["platforms"][0];
    assert_eq!(entry["reused"], false, "{entry}");
    assert_eq!(entry["test"]["passed"], true, "{entry}");
    assert_eq!(entry["test"]["run"][0], "/bin/busybox", "{entry}");
    let (again, metadata) =
        build_with_metadata(home.path(), project.path(), &["--resume", "--tag", "c"]);
    assert_eq!(tested(&again.stderr), Vec::<String>::new(), "{again:?}");
    assert_eq!(metadata["platforms"][0]["reused"], true, "{again:?}");
    assert_no_container_left(&repository);
}

/// The timeout on an SSH runner (runner-arm): the command is killed in
/// about its timeout over the SSH link as well, and no container is left.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_test_that_times_out_on_an_ssh_runner() {
    let _ssh = ssh_lock();
    let lab = require_lab!();
    let repository = lab.repository("smoke-timeout-ssh");
    let project = project(
        lab,
        &repository,
        "run = [\"/bin/busybox\", \"sleep\", \"30\"]\ntimeout = \"2s\"\n",
    );
    let home = Home::new(lab);
    let started = Instant::now();
    let (run, metadata) = build_and_metadata(
        home.path(),
        project.path(),
        &["--tag", "late", "--platform", "linux/arm64"],
    );
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("[test] run = [\"/bin/busybox\",\"sleep\",\"30\"] timed out after 2s in the linux/arm64 image on runner `arm` and was killed"),
        "{run:?}"
    );
    assert!(took < Duration::from_secs(25), "{took:?}");
    assert_eq!(metadata["platforms"][0]["error"]["kind"], "test");
    assert!(!skopeo_exists(&format!("{repository}:late")));
    assert_no_container_left(&repository);
}
