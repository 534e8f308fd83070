//! Runners whose engine is Podman's API service: the lab's Podman host
//! (`runner-podman`, tests/lab/README.md), and a Podman service of a test's
//! own ([`PodmanService`]) for what is asked of the engine alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mab_engine::{Ended, Engine, EngineError, EngineKind, SmokeRun};

use crate::interrupt::{signal_when_sleeping, sleep_running};
use crate::support::{
    checked_runner, docker_on, mab, mab_command, podman_on, podman_runner, require_lab,
    runners_check_json, sha256, skopeo_exists, skopeo_raw, ssh_lock, Home, Lab, Project,
    PODMAN_RUNNER,
};

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn check_reaches_the_podman_host_when_its_engine_is_given() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let project = Project::new();
    let socket = format!("unix://{}", lab.get("PODMAN_SOCKET"));
    project.file("runners.toml", &podman_runner(lab, Some(&socket)));
    let host = lab.host(lab.get("PODMAN_HOST"));

    let _ssh = ssh_lock();
    let logins = host.logins();
    let run = runners_check_json(home.path(), project.path());
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let runners = json["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 1, "{json}");
    let runner = &runners[0];
    assert_eq!(runner["name"], PODMAN_RUNNER, "{runner}");
    assert_eq!(runner["ok"], true, "{runner}");
    assert_eq!(runner["arch"], "amd64", "{runner}");
    assert_eq!(runner["api_version"], "1.41", "{runner}");
    assert_eq!(runner["engine_kind"], "podman", "{runner}");
    assert_eq!(
        runner["platforms"],
        serde_json::json!({"linux/ppc64le": "emulated", "linux/amd64": "native"}),
        "{runner}"
    );
    // mab logged in to that host's sshd, and the engine it met there is the
    // Podman service that Podman's own client reaches in the host.
    assert!(host.logins() > logins, "no login in {:?}", host.sshd_log);
    let version = podman_on(lab, &["version", "--format", "{{.Server.Version}}"]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        runner["engine_version"],
        String::from_utf8_lossy(&version.stdout).trim(),
        "{runner}"
    );
}

/// Without `engine`, mab finds Podman's socket on the host, which has no
/// Docker socket (its `/run` is its own): the JSON report is the same as
/// with the socket given, the table names Podman's engine, and `-v` says
/// which socket was found and why.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn the_podman_socket_is_found_when_no_engine_is_given() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let project = Project::new();
    project.file("runners.toml", &podman_runner(lab, None));
    let _ssh = ssh_lock();
    let run = runners_check_json(home.path(), project.path());
    assert_eq!(run.code, 0, "{run:?}");
    let runner = checked_runner(&run.json(), PODMAN_RUNNER);
    assert_eq!(runner["ok"], true, "{runner}");
    assert_eq!(runner["engine_kind"], "podman", "{runner}");

    let verbose = mab(
        home.path(),
        project.path(),
        &["runners", "check", "--runners", "runners.toml", "-v"],
    );
    assert_eq!(verbose.code, 0, "{verbose:?}");
    let version = runner["engine_version"].as_str().unwrap();
    assert!(
        verbose
            .stdout
            .contains(&format!(" podman {version} (API 1.41) ")),
        "{verbose:?}"
    );
    assert!(
        verbose.stderr.contains(&format!(
            "runner `{PODMAN_RUNNER}`: podman engine at unix://{}, found by looking: the runner sets no `engine` and the default socket does not exist",
            lab.get("PODMAN_SOCKET")
        )),
        "{verbose:?}"
    );
}

/// Held by every test that builds on the Podman host, so that each sees
/// only its own build there (its processes, its bytes over that host's
/// sshd, its work directories).
fn podman_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `runners.toml` with the local engine (`here`, linux/amd64), runner-a
/// emulating linux/arm64 (`arm`), and the Podman host (`power`,
/// linux/ppc64le, its engine given).
fn docker_and_podman_runners(lab: &Lab) -> String {
    let host = lab.host(lab.get("PODMAN_HOST"));
    format!(
        "[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nengine = \"{local}\"\n\n\
         [[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{a}\"\n\n\
         [[runner]]\nname = \"power\"\nhost = \"root@{address}:{port}\"\nplatforms = [\"linux/ppc64le\"]\nengine = \"unix://{podman}\"\n",
        local = lab.get("LOCAL_ENGINE"),
        a = lab.get("RUNNER_A_ENGINE_SOCKET"),
        address = host.address,
        port = host.port,
        podman = lab.get("PODMAN_SOCKET"),
    )
}

/// The Podman runner alone (`power`, linux/ppc64le).
fn podman_only_runner(lab: &Lab) -> String {
    let host = lab.host(lab.get("PODMAN_HOST"));
    format!(
        "[[runner]]\nname = \"power\"\nhost = \"root@{}:{}\"\nplatforms = [\"linux/ppc64le\"]\nengine = \"unix://{}\"\n",
        host.address,
        host.port,
        lab.get("PODMAN_SOCKET"),
    )
}

/// A project of `platforms` published to `repository`, whose image holds
/// busybox for its architecture and `/arch`, what `uname -m` said in its
/// `RUN` step (under QEMU: the emulated machine).
fn arch_project(lab: &Lab, repository: &str, platforms: &[&str]) -> Project {
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64", "arm64", "ppc64le"])
        .file(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY busybox/${TARGETARCH} /bin/busybox\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox uname -m > /arch\"]\n",
        )
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [{}]\n",
                platforms
                    .iter()
                    .map(|platform| format!("\"{platform}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    project
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_list_with_a_podman_child_is_an_oci_index_and_every_image_runs() {
    let lab = require_lab!();
    let _podman = podman_lock();
    let repository = lab.repository("podman-three");
    let project = arch_project(
        lab,
        &repository,
        &["linux/amd64", "linux/arm64", "linux/ppc64le"],
    );
    project.file("runners.toml", &docker_and_podman_runners(lab));
    let home = Home::new(lab);
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain", "--tag", "v1"],
    );
    assert_eq!(run.code, 0, "{run:?}");

    // skopeo reads an OCI index whose children keep their own media types:
    // Podman's OCI manifest, the Docker engines' Docker manifests.
    let list: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&format!("{repository}:v1"))).unwrap();
    assert_eq!(
        list["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{list}"
    );
    let children = list["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 3, "{list}");
    for child in children {
        let architecture = child["platform"]["architecture"].as_str().unwrap();
        let digest = child["digest"].as_str().unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&skopeo_raw(&format!("{repository}@{digest}"))).unwrap();
        let expected = match architecture {
            "ppc64le" => "application/vnd.oci.image.manifest.v1+json",
            _ => "application/vnd.docker.distribution.manifest.v2+json",
        };
        assert_eq!(
            manifest["mediaType"], expected,
            "{architecture}: {manifest}"
        );
        assert_eq!(child["mediaType"], expected, "{architecture}: {list}");

        // Each image runs (this machine's engine pulls it by digest, under
        // QEMU for the foreign ones) and was built for its platform.
        let uname = match architecture {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            other => other,
        };
        let reference = format!("{repository}@{digest}");
        let printed = run_in_image(&format!("linux/{architecture}"), &reference, "cat /arch");
        assert_eq!(printed.trim(), uname, "{architecture}");
    }
    // The Podman image was built by the Podman host's engine.
    let images = podman_on(lab, &["images", "--format", "{{.Repository}}"]);
    assert!(
        String::from_utf8_lossy(&images.stdout).contains(&repository),
        "{images:?}"
    );
}

/// An nftables table of one test's own that counts the bytes sent to a
/// host's sshd (address and port), removed when dropped.
struct SentToSshd {
    table: String,
}

impl SentToSshd {
    fn start(table: &str, address: &str, port: &str) -> SentToSshd {
        let _ = nft(&["delete", "table", "inet", table], None);
        let rules = format!(
            "table inet {table} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n    ip daddr {address} tcp dport {port} counter\n  }}\n}}\n"
        );
        let added = nft(&["-f", "-"], Some(&rules));
        assert!(added.status.success(), "nft: {added:?}");
        SentToSshd {
            table: table.to_owned(),
        }
    }

    /// The bytes counted since the table was added.
    fn bytes(&self) -> u64 {
        let listed = nft(&["-j", "list", "table", "inet", &self.table], None);
        assert!(listed.status.success(), "nft: {listed:?}");
        let listing: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        listing["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|item| item.get("rule"))
            .flat_map(|rule| rule["expr"].as_array().unwrap())
            .find_map(|expression| expression["counter"]["bytes"].as_u64())
            .expect("a counter")
    }
}

impl Drop for SentToSshd {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "inet", &self.table], None);
    }
}

/// `nft ARGS`, with `input` on its stdin.
fn nft(arguments: &[&str], input: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(arguments)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft runs (tests/lab/up installs it)");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_rebuild_after_one_changed_file_sends_under_one_percent_of_the_context() {
    let lab = require_lab!();
    let _podman = podman_lock();
    let repository = lab.repository("podman-rebuild");
    let project = arch_project(lab, &repository, &["linux/ppc64le"]);
    project.file("runners.toml", &podman_only_runner(lab));
    // 1,000 files of 8 KiB each, of this test's own.
    let unique = std::process::id();
    for index in 0..1000 {
        let line = format!("{unique} file {index}\n");
        project.file(
            &format!("data/{:02}/{index}.txt", index % 50),
            &line.repeat(8192 / line.len() + 1)[..8192],
        );
    }
    project.file(
        "Dockerfile",
        "FROM scratch\nCOPY busybox/ppc64le /bin/busybox\nCOPY data /data\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox find /data -type f | /bin/busybox wc -l > /count\"]\n",
    );
    let context: u64 = 1000 * 8192 + std::fs::metadata(lab.busybox("ppc64le")).unwrap().len() * 3;
    let home = Home::new(lab);
    let host = lab.host(lab.get("PODMAN_HOST"));
    let build = || {
        mab(
            home.path(),
            project.path(),
            &["build", "--progress", "json", "--tag", "v1"],
        )
    };

    let first = build();
    assert_eq!(first.code, 0, "{first:?}");
    project.file("data/07/7.txt", "changed\n");
    let counted = SentToSshd::start(
        &format!("mab_test_{unique}"),
        &host.address,
        &host.port.to_string(),
    );
    let second = build();
    let sent = counted.bytes();
    assert_eq!(second.code, 0, "{second:?}");
    // Everything mab sent to the host's sshd for the whole rebuild (the
    // session, the engine's requests, the copy's update) is under 1% of the
    // context.
    assert!(
        sent * 100 < context,
        "{sent} bytes went to the Podman host for a rebuild of a {context}-byte context"
    );
    // mab's own count of the context's bytes says the same.
    let sent_by_mab: Vec<u64> = second
        .events_named("context_sent")
        .iter()
        .filter_map(|event| event["bytes"].as_u64())
        .collect();
    assert!(
        sent_by_mab.iter().all(|bytes| bytes * 100 < context) && !sent_by_mab.is_empty(),
        "{sent_by_mab:?}"
    );
    // The rebuilt image holds the changed file and all 1,000.
    let printed = run_in_image(
        "linux/ppc64le",
        &format!("{repository}:v1"),
        "cat /count /data/07/7.txt",
    );
    assert_eq!(printed, "1000\nchanged\n");
}

/// What `script` prints, run by busybox's `sh` in the image `reference` of
/// `platform` on this machine's engine (which pulls it from the registry,
/// under QEMU for a foreign platform); it must succeed.
fn run_in_image(platform: &str, reference: &str, script: &str) -> String {
    let ran = docker_on(
        "local",
        &[
            "run",
            "--rm",
            "--platform",
            platform,
            reference,
            "/bin/busybox",
            "sh",
            "-c",
            script,
        ],
    );
    assert!(ran.status.success(), "{platform} {reference}: {ran:?}");
    String::from_utf8_lossy(&ran.stdout).into_owned()
}

/// The work directories of builds on the Podman host (`/dev/shm` is this
/// machine's: the hosts share it).
fn work_directories() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("mab-build-"))
        .collect()
}

/// Buildah's working containers in the Podman host's storage.
fn working_containers(lab: &Lab) -> Vec<String> {
    podman_lines(
        lab,
        &[
            "ps",
            "--all",
            "--external",
            "--format",
            "{{.ID}} {{.Names}}",
        ],
    )
}

/// The lines `podman ARGUMENTS` prints about the Podman host, after it
/// succeeded.
fn podman_lines(lab: &Lab, arguments: &[&str]) -> Vec<String> {
    let listed = podman_on(lab, arguments);
    assert!(listed.status.success(), "{listed:?}");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_failing_platform_on_podman_leaves_the_tags_as_they_were() {
    let lab = require_lab!();
    let _podman = podman_lock();
    let repository = lab.repository("podman-failing");
    let project = arch_project(lab, &repository, &["linux/amd64", "linux/ppc64le"]);
    project.file("runners.toml", &docker_and_podman_runners(lab));
    let home = Home::new(lab);
    let build = || {
        mab(
            home.path(),
            project.path(),
            &["build", "--progress", "plain", "--tag", "v1"],
        )
    };
    let first = build();
    assert_eq!(first.code, 0, "{first:?}");
    let before = skopeo_raw(&format!("{repository}:v1"));
    let containers = working_containers(lab);

    // The RUN step fails on ppc64le only, on the Podman runner.
    project.file(
        "Dockerfile",
        "FROM scratch\nARG TARGETARCH\nCOPY busybox/${TARGETARCH} /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"test $(/bin/busybox uname -m) != ppc64le\"]\n",
    );
    let second = build();
    assert_eq!(second.code, 1, "{second:?}");
    assert!(
        second
            .stderr
            .contains("build failed for linux/ppc64le (runner power); nothing was published"),
        "{second:?}"
    );
    // The error names the Dockerfile's line of the step Buildah ran.
    assert!(
        second.stderr.contains("Dockerfile:4: STEP 4/4: RUN"),
        "{second:?}"
    );
    assert_eq!(
        skopeo_raw(&format!("{repository}:v1")),
        before,
        "v1 is unchanged"
    );
    // The failed build left no working container and no work directory.
    assert_eq!(working_containers(lab), containers);
    assert_eq!(work_directories(), Vec::<String>::new());
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn ctrl_c_stops_the_podman_build_and_what_it_ran() {
    stopped_on_podman("INT", Some(130), "353");
}

/// mab killed outright (SIGKILL) runs no clean-up of its own: the build's
/// watcher on the host sees its command's stdin end when sshd closes the
/// dead connection's session, and stops the build.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_killed_mab_leaves_nothing_running_on_the_podman_host() {
    stopped_on_podman("KILL", None, "354");
}

/// Sends mab `signal` once its build's `RUN` step (sleeping `seconds`)
/// runs on the Podman host, and checks the exit code, and that the step,
/// the build's work directory and Buildah's working container are gone
/// from the host, and nothing is published.
fn stopped_on_podman(signal: &str, code: Option<i32>, seconds: &str) {
    let lab = require_lab!();
    let _podman = podman_lock();
    let repository = lab.repository("podman-interrupt");
    let project = Project::new();
    project
        .with_busybox(lab, &["ppc64le"])
        .file(
            "Dockerfile",
            &format!("FROM scratch\nCOPY busybox/ppc64le /bin/busybox\nCOPY content.txt /\nRUN [\"/bin/busybox\", \"sleep\", \"{seconds}\"]\n"),
        )
        // A file of this run's own, so that no earlier build's cache
        // holds the sleeping step.
        .file("content.txt", &format!("{repository}\n"))
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/ppc64le\"]\n"),
        )
        .file("runners.toml", &podman_only_runner(lab));
    let home = Home::new(lab);
    let containers = working_containers(lab);
    let mut child = mab_command(
        home.path(),
        project.path(),
        &["build", "--progress", "plain"],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let (exit, signalled) = signal_when_sleeping(&mut child, seconds, signal);
    assert_eq!(exit, code, "after SIG{signal}");
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "mab stops promptly"
    );
    // The step stops on the host (Podman alone would leave it running),
    // and no work directory and no working container is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sleep_running(seconds)
        || !work_directories().is_empty()
        || working_containers(lab) != containers
    {
        assert!(
            Instant::now() < deadline,
            "after SIG{signal}: the step runs: {}, work directories {:?}, working containers {:?}",
            sleep_running(seconds),
            work_directories(),
            working_containers(lab)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        !skopeo_exists(&format!("{repository}:latest")),
        "nothing was published"
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_secret_reaches_a_podman_build_and_stays_out_of_the_image_and_the_host() {
    let lab = require_lab!();
    let _podman = podman_lock();
    let repository = lab.repository("podman-secret");
    // A value of this run's own, looked for on the host afterwards.
    let secret = format!("podman-s3cret-{}", repository.rsplit('-').next().unwrap());
    let project = Project::new();
    project
        .with_busybox(lab, &["ppc64le"])
        .file(
            "Dockerfile",
            "FROM scratch AS build\nCOPY busybox/ppc64le /bin/busybox\nCOPY content.txt /\n\
             RUN --mount=type=secret,id=token [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sha256sum < /run/secrets/token > /seen\"]\n\
             FROM build AS final\nARG GREETING\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $GREETING > /greeting; /bin/busybox ip -o link | /bin/busybox wc -l > /links\"]\n\
             FROM final AS unused\nRUN [\"/bin/busybox\", \"false\"]\n",
        )
        .file("token.txt", &secret)
        // Steps of this run's own: a cached step would not read the secret.
        .file("content.txt", &repository)
        .file(".dockerignore", "token.txt\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/ppc64le\"]\ntarget = \"final\"\n"),
        )
        .file("runners.toml", &podman_only_runner(lab));
    let home = Home::new(lab);
    let run = mab(
        home.path(),
        project.path(),
        &[
            "build",
            "--progress",
            "plain",
            "--tag",
            "v1",
            "--secret",
            "id=token,src=token.txt",
            "--build-arg",
            "GREETING=hello podman",
            "--network",
            "none",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let output = run_in_image(
        "linux/ppc64le",
        &format!("{repository}:v1"),
        "cat /seen /greeting /links; ls /run/secrets 2>&1; true",
    );
    // The secret was read, the build argument given, the target built (not
    // the failing stage after it), and with --network none only the
    // loopback interface was there.
    // (The image holds the secret's digest, never the secret.)
    let digest = sha256(secret.as_bytes());
    let expected = format!(
        "{}  -\nhello podman\n1\n",
        digest.trim_start_matches("sha256:")
    );
    assert!(output.starts_with(&expected), "{output}");
    assert!(!output.contains("token"), "{output}");
    // Nothing of the build is left in the host's tmpfs, and the secret is
    // in no file the context copy holds.
    assert_eq!(work_directories(), Vec::<String>::new());
    let found = std::process::Command::new("grep")
        .args(["-rl", &secret])
        .arg(format!("{}/runner-podman", lab.get("LAB_DIR")))
        .arg("/root/.cache/mab")
        .output()
        .unwrap();
    assert_eq!(
        found.status.code(),
        Some(1),
        "found, or grep failed: {found:?}"
    );
}

/// Smoke-test containers on the Podman host, by name.
fn smoke_containers(lab: &Lab) -> Vec<String> {
    podman_lines(
        lab,
        &[
            "ps",
            "--all",
            "--filter",
            "label=mab.build",
            "--format",
            "{{.Names}}",
        ],
    )
}

/// `[test]` on a platform built on the Podman host runs there, in the
/// image built, emulated, without a network, and leaves no container
/// there; a failing one fails its platform with the command's exit code
/// and output.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn the_smoke_test_runs_on_the_podman_host() {
    let lab = require_lab!();
    let _podman = podman_lock();
    let repository = lab.repository("podman-smoke");
    let project = arch_project(lab, &repository, &["linux/ppc64le"]);
    project.file("runners.toml", &podman_only_runner(lab));
    let manifest = std::fs::read_to_string(project.path().join("mab.toml")).unwrap();
    let with_test = |script: &str| {
        format!(
            "{manifest}\n[test]\nrun = [\"/bin/busybox\", \"sh\", \"-c\", '{script}']\n\
             expect = '(?m)^machine=ppc64le\\narch=ppc64le\\ninterfaces: lo$'\n"
        )
    };
    let script = "echo machine=$(/bin/busybox uname -m); echo arch=$(/bin/busybox cat /arch); \
                  echo interfaces: $(/bin/busybox cut -d: -f1 /proc/net/dev | /bin/busybox tail -n +3)";
    project.file("mab.toml", &with_test(script));
    let home = Home::new(lab);
    let build = || {
        mab(
            home.path(),
            project.path(),
            &["build", "--progress", "plain", "--tag", "smoke"],
        )
    };
    let passed = build();
    assert_eq!(passed.code, 0, "{passed:?}");
    assert!(
        passed
            .stderr
            .contains("[linux/ppc64le power] test done in "),
        "{passed:?}"
    );
    assert_eq!(smoke_containers(lab), Vec::<String>::new());

    project.file(
        "mab.toml",
        &with_test(&format!("{script}; echo failing >&2; exit 3")),
    );
    let failed = build();
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed
            .stderr
            .contains("exited with code 3 in the linux/ppc64le image on runner `power`")
            && failed.stderr.contains("    stderr: failing\n"),
        "{failed:?}"
    );
    assert_eq!(smoke_containers(lab), Vec::<String>::new());
}

/// A `podman system service` of the test's own, stopped (and its storage
/// removed) when dropped.
struct PodmanService {
    directory: tempfile::TempDir,
    service: Child,
}

impl PodmanService {
    /// Starts the service and waits (up to 30 s) until it answers.
    fn start() -> PodmanService {
        let directory = tempfile::Builder::new()
            .prefix("mab-podman-")
            .tempdir()
            .unwrap();
        let mut podman = PodmanService {
            service: Command::new("podman")
                .args(PodmanService::storage(directory.path()))
                .args(["system", "service", "--time", "0"])
                .arg(format!(
                    "unix://{}",
                    directory.path().join("podman.sock").display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("podman runs (the lab installs it)"),
            directory,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !podman.answers() {
            assert!(Instant::now() < deadline, "podman's service never answered");
            if let Ok(Some(status)) = podman.service.try_wait() {
                panic!("podman's service ended at once: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        podman
    }

    /// The storage options of the service and of `podman` commands on it:
    /// its own root and run root, and the `vfs` driver, so that nothing
    /// is left mounted to remove afterwards.
    fn storage(directory: &Path) -> Vec<String> {
        vec![
            format!("--root={}", directory.join("root").display()),
            format!("--runroot={}", directory.join("run").display()),
            "--storage-driver=vfs".to_owned(),
        ]
    }

    fn socket(&self) -> PathBuf {
        self.directory.path().join("podman.sock")
    }

    fn answers(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
    }

    /// `podman ARGUMENTS` on the service's storage; its stdout, after it
    /// succeeded.
    fn podman(&self, arguments: &[&str]) -> String {
        let output = Command::new("podman")
            .args(PodmanService::storage(self.directory.path()))
            .args(arguments)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "podman {arguments:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Builds `image`, the lab's static busybox for `architecture` alone,
    /// for `linux/ARCHITECTURE` (`FROM scratch`: nothing runs, nothing is
    /// pulled).
    fn busybox_image(&self, lab: &Lab, image: &str, architecture: &str) {
        let context = tempfile::tempdir().unwrap();
        std::fs::copy(lab.busybox(architecture), context.path().join("busybox")).unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\n",
        )
        .unwrap();
        self.podman(&[
            "build",
            "--quiet",
            "--platform",
            &format!("linux/{architecture}"),
            "--tag",
            image,
            &context.path().display().to_string(),
        ]);
    }

    /// The names of the containers the service holds, running or not.
    fn containers(&self) -> Vec<String> {
        self.podman(&["ps", "--all", "--format", "{{.Names}}"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A connected engine on the service.
    async fn engine(&self) -> Engine {
        let reporter: Arc<dyn mab_events::Reporter> = Arc::new(mab_events::Silent);
        Engine::connect(
            mab_engine::unix_connector(self.socket().display().to_string()),
            "podman",
            reporter,
        )
        .await
        .expect("the Podman service answers")
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
    }
}

/// `/bin/busybox sh -c SCRIPT`.
fn busybox_sh(script: &str) -> Vec<String> {
    ["/bin/busybox", "sh", "-c", script]
        .map(str::to_owned)
        .to_vec()
}

/// A smoke run on Podman: created through the libpod API (the compat
/// create's rlimits cannot be set by a service that may not raise its
/// limits, as on the lab's machines), its exit code, output and
/// platform as on Docker's engine, a timeout that kills it, no network,
/// and no container left.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn smoke_runs_on_podman() {
    let lab = require_lab!();
    let podman = PodmanService::start();
    podman.busybox_image(lab, "localhost/mab-smoke:amd64", "amd64");
    podman.busybox_image(lab, "localhost/mab-smoke:arm64", "arm64");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let engine = podman.engine().await;
        assert_eq!(engine.kind(), EngineKind::Podman);
        let amd64: mab_config::Platform = "linux/amd64".parse().unwrap();
        let labels = HashMap::from([("mab.build".to_owned(), "podman-test".to_owned())]);
        let argv = busybox_sh(
            "echo out; echo err >&2; \
             echo interfaces: $(/bin/busybox cut -d: -f1 /proc/net/dev | /bin/busybox tail -n +3); \
             exit 3",
        );
        let run = SmokeRun {
            image: "localhost/mab-smoke:amd64",
            name: "mab-podman-test-exit",
            platform: &amd64,
            argv: &argv,
            timeout: Duration::from_secs(60),
            labels: labels.clone(),
        };
        let outcome = engine.smoke_run(&run).await.expect("the run ends");
        assert_eq!(outcome.ended, Ended::Exited(3), "{outcome:?}");
        assert!(outcome.stdout.starts_with("out\n"), "{outcome:?}");
        assert!(
            outcome.stdout.contains("interfaces: lo\n"),
            "only the loopback: {outcome:?}"
        );
        assert!(
            outcome.output_tail.contains(&"stderr: err".to_owned()),
            "{outcome:?}"
        );

        // The image's own platform, emulated.
        let arm64: mab_config::Platform = "linux/arm64".parse().unwrap();
        let argv = ["/bin/busybox".to_owned(), "uname".to_owned(), "-m".to_owned()];
        let outcome = engine
            .smoke_run(&SmokeRun {
                image: "localhost/mab-smoke:arm64",
                name: "mab-podman-test-arm64",
                platform: &arm64,
                argv: &argv,
                ..run.clone()
            })
            .await
            .expect("the run ends");
        assert_eq!(
            (outcome.ended, outcome.stdout.as_str()),
            (Ended::Exited(0), "aarch64\n"),
            "{outcome:?}"
        );

        // Killed at its timeout.
        let argv = busybox_sh("echo started; /bin/busybox sleep 60");
        let started = Instant::now();
        let outcome = engine
            .smoke_run(&SmokeRun {
                name: "mab-podman-test-timeout",
                argv: &argv,
                timeout: Duration::from_secs(2),
                ..run.clone()
            })
            .await
            .expect("the run ends");
        assert_eq!(outcome.ended, Ended::TimedOut, "{outcome:?}");
        assert_eq!(outcome.stdout, "started\n", "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "{outcome:?}");

        // A command the image does not hold cannot start.
        let argv = ["/bin/no-such-command".to_owned()];
        let error = engine
            .smoke_run(&SmokeRun {
                name: "mab-podman-test-missing",
                argv: &argv,
                ..run.clone()
            })
            .await
            .expect_err("no such command");
        assert!(
            matches!(&error, EngineError::StartFailed { message, .. } if message.contains("no-such-command")),
            "{error:?}"
        );
    });
    assert_eq!(podman.containers(), Vec::<String>::new());
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_podman_push_uses_the_coordinators_credentials_and_leaves_none_on_the_host() {
    let lab = require_lab!();
    let _podman = podman_lock();
    let registry = lab.get("AUTH_REGISTRY");
    let repository = lab
        .repository("podman-auth")
        .replacen(lab.registry(), registry, 1);
    let project = arch_project(lab, &repository, &["linux/ppc64le"]);
    project.file("runners.toml", &podman_only_runner(lab));
    let home = Home::new(lab);
    let (user, password) = (lab.get("AUTH_USER"), lab.get("AUTH_PASSWORD"));
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    std::fs::write(
        home.path().join(".docker/config.json"),
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain", "--tag", "v1"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    // The registry holds it (read with the same credentials)...
    let read = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw", "--creds"])
        .arg(format!("{user}:{password}"))
        .arg(format!("docker://{repository}:v1"))
        .output()
        .unwrap();
    assert!(read.status.success(), "{read:?}");
    // ...and Podman on the host holds no login for it, nor does any file of
    // the host's hold the password.
    let login = podman_on(lab, &["login", "--get-login", registry]);
    assert!(!login.status.success(), "{login:?}");
    // (Auth files hold `user:password` in base64.)
    let found = std::process::Command::new("grep")
        .args(["-rlF", "-e", password, "-e", &auth])
        .arg(format!("{}/runner-podman", lab.get("LAB_DIR")))
        .output()
        .unwrap();
    assert_eq!(
        found.status.code(),
        Some(1),
        "found, or grep failed: {found:?}"
    );
}

/// Ctrl-C while a smoke test runs on the Podman host: mab removes its
/// container (killing the command first) before it exits, as on Docker.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn ctrl_c_during_a_smoke_test_on_podman_removes_its_container() {
    let lab = require_lab!();
    let _podman = podman_lock();
    let repository = lab.repository("podman-smoke-stop");
    let project = arch_project(lab, &repository, &["linux/ppc64le"]);
    project.file("runners.toml", &podman_only_runner(lab));
    let manifest = std::fs::read_to_string(project.path().join("mab.toml")).unwrap();
    project.file(
        "mab.toml",
        &format!(
            "{manifest}\n[test]\nrun = [\"/bin/busybox\", \"sleep\", \"981\"]\ntimeout = \"5m\"\n"
        ),
    );
    let home = Home::new(lab);
    let child = mab_command(
        home.path(),
        project.path(),
        &["build", "--progress", "plain"],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let started = Instant::now();
    while !sleep_running("981") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the smoke test never showed up as a process"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let signalled = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(signalled.elapsed() < Duration::from_secs(10), "{stderr}");
    assert!(!stderr.contains("could not remove"), "{stderr}");
    assert!(!sleep_running("981"), "the smoke test's command still runs");
    assert_eq!(smoke_containers(lab), Vec::<String>::new());
}

/// mab's reading of the ignore files decides what a Podman build sees, and
/// Buildah applies none of its own on top: with a Dockerfile-specific
/// ignore file (`app.Dockerfile.dockerignore`, which Docker reads instead
/// of `.dockerignore`), a file that only `.dockerignore` leaves out is in
/// the build, as with `docker build`; a file the specific one leaves out
/// is not.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn only_mabs_ignore_rules_decide_what_a_podman_build_sees() {
    let lab = require_lab!();
    let _podman = podman_lock();
    let repository = lab.repository("podman-ignore");
    let project = Project::new();
    project
        .with_busybox(lab, &["ppc64le"])
        .file(
            "app.Dockerfile",
            "FROM scratch\nCOPY busybox/ppc64le /bin/busybox\nCOPY . /context\n",
        )
        .file(".dockerignore", "kept.txt\n")
        .file("app.Dockerfile.dockerignore", "left-out.txt\nbusybox/amd64\n")
        .file("kept.txt", &format!("{repository}\n"))
        .file("left-out.txt", "no\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/ppc64le\"]\ndockerfile = \"app.Dockerfile\"\n"
            ),
        )
        .file("runners.toml", &podman_only_runner(lab));
    let home = Home::new(lab);
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain", "--tag", "v1"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let listed = run_in_image(
        "linux/ppc64le",
        &format!("{repository}:v1"),
        "cd /context && /bin/busybox ls -a | /bin/busybox sort",
    );
    let names: Vec<&str> = listed.lines().collect();
    assert!(names.contains(&"kept.txt"), "{listed}");
    assert!(names.contains(&".dockerignore"), "{listed}");
    assert!(!names.contains(&"left-out.txt"), "{listed}");
    // Nothing of mab's own reaches the image either.
    assert!(
        !names.iter().any(|name| name.starts_with(".mab-")),
        "{listed}"
    );
}
