//! Platforms on a real runner: which ones a QEMU handler makes buildable
//! (every arm variant through `qemu-arm`, nothing without its handler), the
//! same answer from `mab plan` and `mab runners check`, and an `arm/v5`
//! image whose config says what Docker's own build of it says.
//!
//! runner-a is an x86-64 engine; the lab registers qemu-arm (with qemu-aarch64,
//! qemu-ppc64le, qemu-s390x) and not qemu-mips64el.

use std::fs;

use crate::support::{
    build_with_metadata, mab, require_lab, skopeo_config, skopeo_raw, ssh_lock, Home, Lab, Project,
};

const LISTED: [&str; 3] = ["linux/arm/v5", "linux/arm/v7", "linux/mips64le"];

/// A `FROM scratch` project for [`LISTED`], and a runners file where
/// runner-a (as `x86`) lists them all.
fn project(lab: &Lab, repository: &str) -> Project {
    let project = Project::new();
    let platforms = LISTED.map(|platform| format!("\"{platform}\"")).join(", ");
    project
        .file("hello.txt", "hello from every variant\n")
        .file("Dockerfile", "FROM scratch\nCOPY hello.txt /\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [{platforms}]\n"),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"x86\"\nhost = \"runner-a\"\nplatforms = [{platforms}]\nengine = \"unix://{socket}\"\n",
                socket = lab.get("RUNNER_A_ENGINE_SOCKET"),
            ),
        );
    // A fixed modification time, so that the layer holding hello.txt is the
    // same bytes in every run: an engine that has built it before answers
    // from its cache, whose layer keeps the time of that first build.
    fs::File::options()
        .write(true)
        .open(project.path().join("hello.txt"))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000))
        .unwrap();
    project
}

/// `docker build` with BuildKit (Debian's CLI) on the lab's local engine.
fn docker_cli(lab: &Lab, arguments: &[&str]) -> String {
    let output = lab
        .docker_cli()
        .args(arguments)
        .output()
        .expect("the docker CLI runs");
    assert!(
        output.status.success(),
        "docker {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn plan_and_check_agree_that_qemu_arm_runs_every_arm_variant() {
    let lab = require_lab!();
    // runner-a lists only the lab's QEMU handlers (its own view of
    // binfmt_misc, set up by tests/lab/host-main), whatever this machine
    // registers: qemu-arm, and not qemu-mips64el.
    let project = project(lab, "127.0.0.1:5000/tests/platforms-plan");
    let home = Home::new(lab);
    let _ssh = ssh_lock();

    // mips64le has no handler: the whole plan is a configuration error.
    let refused = mab(home.path(), project.path(), &["plan", "--format", "json"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert_eq!(refused.stdout, "", "{refused:?}");
    assert!(
        refused.stderr.contains(
            "error: no runner can build linux/mips64le: x86 lists linux/mips64le but its engine is linux/amd64 and no QEMU handler qemu-mips64el is registered\n"
        ),
        "{refused:?}"
    );
    assert!(
        refused
            .stderr
            .contains("hint: register the QEMU handler qemu-mips64el on a runner"),
        "{refused:?}"
    );

    let planned = mab(
        home.path(),
        project.path(),
        &[
            "plan",
            "--format",
            "json",
            "--platform",
            "linux/arm/v5,linux/arm/v7",
        ],
    );
    assert_eq!(planned.code, 0, "{planned:?}");
    let plan = planned.json();
    for (job, platform) in plan["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["linux/arm/v5", "linux/arm/v7"])
    {
        assert_eq!(
            job,
            &serde_json::json!({
                "platform": platform,
                "runner": "x86",
                "emulated": true,
                "reason": "emulated with QEMU (qemu-arm); no runner builds it natively",
                "moved_from": null,
                "fallbacks": [],
                "rejected": [],
            })
        );
    }

    let check = mab(
        home.path(),
        project.path(),
        &["runners", "check", "--format", "json"],
    );
    assert_eq!(check.code, 1, "mips64le is unavailable: {check:?}");
    let report = &check.json()["runners"][0];
    assert_eq!(
        report["platforms"],
        serde_json::json!({
            "linux/arm/v5": "emulated",
            "linux/arm/v7": "emulated",
            "linux/mips64le": "unavailable",
        }),
        "{report}"
    );
    assert_eq!(report["error_kind"], "engine", "{report}");
    assert_eq!(
        report["error"],
        "runner `x86` lists linux/mips64le but its engine is linux/amd64 and no QEMU handler qemu-mips64el is registered",
    );
    assert!(
        report["hint"]
            .as_str()
            .unwrap()
            .starts_with("register the QEMU handler(s) qemu-mips64el on that host"),
        "{report}"
    );
    // What check calls emulated, plan plans emulated on the same runner.
    let emulated: Vec<&str> = plan["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["emulated"] == true)
        .map(|job| job["platform"].as_str().unwrap())
        .collect();
    let check_emulated: Vec<&str> = report["platforms"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, support)| *support == "emulated")
        .map(|(platform, _)| platform.as_str())
        .collect();
    assert_eq!(emulated, check_emulated);
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_arm_v5_image_is_what_docker_builds_for_arm_v5() {
    let lab = require_lab!();
    let repository = lab.repository("platforms-armv5");
    let project = project(lab, &repository);
    let home = Home::new(lab);

    let (_, metadata) = {
        let _ssh = ssh_lock();
        build_with_metadata(
            home.path(),
            project.path(),
            &["--platform", "linux/arm/v5", "--tag", "v5"],
        )
    };
    let built = &metadata["platforms"][0];
    assert_eq!(metadata["platforms"].as_array().unwrap().len(), 1);
    assert_eq!(built["platform"], "linux/arm/v5", "{metadata}");
    assert_eq!(built["runner"], "x86", "{metadata}");
    assert_eq!(built["emulated"], true, "{metadata}");
    let digest = built["digest"].as_str().unwrap();

    // The image config, read by skopeo, and the list's entry for it.
    let config = skopeo_config(&format!("{repository}@{digest}"));
    let fields = |config: &serde_json::Value| {
        (
            config["os"].clone(),
            config["architecture"].clone(),
            config["variant"].clone(),
        )
    };
    assert_eq!(
        fields(&config),
        ("linux".into(), "arm".into(), "v5".into()),
        "{config}"
    );
    let list: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&format!("{repository}:v5"))).unwrap();
    assert_eq!(list["manifests"][0]["digest"], digest, "{list}");
    assert_eq!(
        list["manifests"][0]["platform"],
        serde_json::json!({"architecture": "arm", "os": "linux", "variant": "v5"}),
        "{list}"
    );

    // Docker's own build of the same project for the same platform.
    let oracle = format!("{repository}:docker-cli");
    let context = project.path().to_str().unwrap();
    docker_cli(
        lab,
        &[
            "build",
            "--quiet",
            "--platform",
            "linux/arm/v5",
            "-t",
            &oracle,
            context,
        ],
    );
    let inspected = docker_cli(lab, &["image", "inspect", &oracle]);
    docker_cli(lab, &["image", "rm", &oracle]);
    let docker: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    let docker = &docker[0];
    assert_eq!(
        (
            docker["Os"].clone(),
            docker["Architecture"].clone(),
            docker["Variant"].clone()
        ),
        fields(&config),
        "{docker}"
    );
    // The same files: one layer holding hello.txt, byte for byte.
    assert_eq!(
        docker["RootFS"]["Layers"], config["rootfs"]["diff_ids"],
        "{docker}\n{config}"
    );
}
