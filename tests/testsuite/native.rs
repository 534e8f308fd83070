//! A runner whose engine is really arm64 (Debian's arm64 dockerd, run by the
//! lab under QEMU user emulation): detected as native, and preferred over an
//! x86-64 runner that would emulate arm64.

use crate::support::{
    build_with_metadata, docker_on, mab, require_lab, ssh_lock, Home, Lab, Project,
};

/// An arm64-only project; `x86` (runner-a, emulating) is listed before
/// `arm` (runner-arm, native) so that order alone would pick the wrong one.
fn arm_project(lab: &Lab, repository: &str, arm_network: &str) -> Project {
    let project = Project::new();
    project
        .with_busybox(lab, &["arm64"])
        .file(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY busybox/${TARGETARCH} /bin/busybox\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox uname -m > /machine\"]\n",
        )
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/arm64\"]\n"),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"x86\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{a}\"\n\n\
                 [[runner]]\nname = \"arm\"\nhost = \"runner-arm\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{arm}\"\nnetwork = \"{arm_network}\"\n",
                a = lab.get("RUNNER_A_ENGINE_SOCKET"),
                arm = lab.get("RUNNER_ARM_ENGINE_SOCKET"),
            ),
        );
    project
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn the_arm64_engine_is_native_and_chosen_over_emulation() {
    let lab = require_lab!();
    let repository = lab.repository("native");
    let project = arm_project(lab, &repository, "host");
    let home = Home::new(lab);
    let _ssh = ssh_lock();

    let check = mab(
        home.path(),
        project.path(),
        &["runners", "check", "--format", "json"],
    );
    assert_eq!(check.code, 0, "{check:?}");
    let json = check.json();
    let arm = &json["runners"][1];
    assert_eq!(arm["name"], "arm");
    assert_eq!(arm["arch"], "arm64", "{arm}");
    assert_eq!(arm["platforms"]["linux/arm64"], "native", "{arm}");
    assert_eq!(json["runners"][0]["platforms"]["linux/arm64"], "emulated");

    let plan = mab(home.path(), project.path(), &["plan", "--format", "json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let plan = plan.json();
    let job = &plan["platforms"][0];
    assert_eq!(
        (job["runner"].as_str(), job["emulated"].as_bool()),
        (Some("arm"), Some(false)),
        "{job}"
    );
    assert_eq!(job["rejected"][0]["runner"], "x86", "{job}");
    assert!(
        job["rejected"][0]["why"]
            .as_str()
            .unwrap()
            .contains("emulat"),
        "{job}"
    );

    let (_, metadata) = build_with_metadata(home.path(), project.path(), &[]);
    let built = &metadata["platforms"][0];
    assert_eq!(
        (built["runner"].as_str(), built["emulated"].as_bool()),
        (Some("arm"), Some(false)),
        "{built}"
    );
    let digest = built["digest"].as_str().unwrap();

    // Built and pushed by the arm64 engine, not by the x86 runner's.
    let kept = format!("{repository}:mab-linux-arm64");
    let on_arm = docker_on(
        "runner-arm",
        &[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}} {{.Architecture}}",
            &kept,
        ],
    );
    assert!(
        on_arm.status.success(),
        "{}",
        String::from_utf8_lossy(&on_arm.stderr)
    );
    let on_arm = String::from_utf8_lossy(&on_arm.stdout);
    assert!(
        on_arm.contains(digest) && on_arm.contains("arm64"),
        "{on_arm}"
    );
    assert!(
        !docker_on("runner-a", &["image", "inspect", &kept])
            .status
            .success(),
        "runner-a did not build it"
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn build_network_overrides_the_runner_network() {
    let lab = require_lab!();
    let repository = lab.repository("network");
    // With the bridge, this engine's RUN steps fail (its network hook cannot
    // run under emulation); `--network host` makes the same build work.
    let project = arm_project(lab, &repository, "default");
    let home = Home::new(lab);
    let _ssh = ssh_lock();
    let bridged = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain", "--no-push"],
    );
    assert_eq!(bridged.code, 1, "{bridged:?}");
    assert!(
        bridged.stderr.contains("linux/arm64 (runner arm)"),
        "{bridged:?}"
    );
    // A runner problem, not the Dockerfile's: the failure says so first,
    // and the hint says what to set.
    assert!(
        bridged
            .stderr
            .contains("linux/arm64 on arm: runner `arm` could not give a RUN step its network: "),
        "{bridged:?}"
    );
    assert!(
        bridged.stderr.contains(
            "hint: the engine of runner `arm` could not set up networking for a RUN step: set `network = \"host\"` on that runner"
        ),
        "{bridged:?}"
    );
    assert!(
        !bridged.stderr.contains("fix the Dockerfile"),
        "{bridged:?}"
    );
    let host = mab(
        home.path(),
        project.path(),
        &[
            "build",
            "--progress",
            "plain",
            "--no-push",
            "--network",
            "host",
        ],
    );
    assert_eq!(host.code, 0, "{host:?}");
    let bad = mab(
        home.path(),
        project.path(),
        &["build", "--network", "bridge"],
    );
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr
            .contains("--network `bridge` is not a network mode"),
        "{bad:?}"
    );
}
