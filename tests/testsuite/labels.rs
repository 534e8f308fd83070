//! The labels from the source on the lab: each platform's image, read back
//! with skopeo, carries `org.opencontainers.image.*` computed from the test
//! repository (git itself is the oracle for the commit and its time, `date`
//! for the RFC 3339 form) and `[labels]`; the Dockerfile sees `MAB_VERSION`
//! and `MAB_COMMIT`.

use std::path::Path;
use std::process::Command;

use crate::support::{require_lab, skopeo_config, skopeo_raw, Lab, Project};
use crate::tags::build;

/// Two platforms from the local engine (arm64 under QEMU), each image
/// holding `/v` with the build arguments' values, written by a busybox
/// `RUN` step.
const DOCKERFILE: &str = "FROM scratch\n\
ARG TARGETARCH\n\
COPY busybox/${TARGETARCH} /bin/busybox\n\
ARG MAB_VERSION\n\
ARG MAB_COMMIT\n\
RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo \\\"$MAB_VERSION $MAB_COMMIT\\\" > /v\"]\n";

/// The digest of each entry of the list at `reference`, with its
/// architecture.
fn entries(reference: &str) -> Vec<(String, String)> {
    let list: serde_json::Value = serde_json::from_slice(&skopeo_raw(reference)).unwrap();
    list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["platform"]["architecture"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                entry["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Runs `program ARGUMENTS`, which must succeed; its stdout, trimmed.
fn run(program: &str, arguments: &[&str]) -> String {
    let output = Command::new(program).args(arguments).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `/v` in the image at `reference`: its layers copied out with skopeo,
/// then read with tar.
fn file_v(reference: &str) -> String {
    let directory = tempfile::tempdir().unwrap();
    let copy = directory.path().join("image");
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("dir:{}", copy.display()),
        ],
    );
    for entry in std::fs::read_dir(&copy).unwrap() {
        let path = entry.unwrap().path();
        let output = Command::new("tar")
            .arg("-xzOf")
            .arg(&path)
            .arg("v")
            .output()
            .unwrap();
        if output.status.success() {
            return String::from_utf8(output.stdout).unwrap();
        }
    }
    panic!("no layer of {reference} holds /v");
}

/// The labels of the image config at `reference`.
fn labels(reference: &str) -> serde_json::Value {
    skopeo_config(reference)["config"]["Labels"].clone()
}

/// `seconds` since the epoch in RFC 3339 (UTC), as GNU date writes it.
fn rfc3339(seconds: &str) -> String {
    run(
        "date",
        &["-u", "-d", &format!("@{seconds}"), "+%Y-%m-%dT%H:%M:%SZ"],
    )
}

fn git_output(project: &Path, arguments: &[&str]) -> String {
    let mut all = vec!["-C", project.to_str().unwrap()];
    all.extend_from_slice(arguments);
    run("git", &all)
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn images_carry_labels_from_the_source_and_the_manifest() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("labels");
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64", "arm64"])
        .file("Dockerfile", DOCKERFILE)
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
                 [labels]\n\"org.example.team\" = \"build\"\n\"org.opencontainers.image.title\" = \"labels test\"\n\n\
                 [annotations]\n\"org.example.note\" = \"only on an OCI index\"\n"
            ),
        );
    let commit = project.commit_and_tag(&["v1.4.2"]);
    project.git(&[
        "remote",
        "add",
        "origin",
        "https://builder:s3cret-token@git.example.com/team/app.git",
    ]);
    let committed = git_output(project.path(), &["show", "-s", "--format=%ct", "HEAD"]);
    assert_eq!(commit, git_output(project.path(), &["rev-parse", "HEAD"]));

    let run = build(&project, &[], &[("SOURCE_DATE_EPOCH", None)]);
    assert!(
        run.stderr
            .contains("[annotations] in mab.toml are not published"),
        "a Docker manifest list has no annotations: {run:?}"
    );
    let list = format!("{repository}:1.4.2");
    let list_json: serde_json::Value = serde_json::from_slice(&skopeo_raw(&list)).unwrap();
    assert!(list_json.get("annotations").is_none(), "{list_json}");
    let images = entries(&list);
    assert_eq!(images.len(), 2);
    for (architecture, digest) in &images {
        let image = format!("{repository}@{digest}");
        let expected = serde_json::json!({
            "org.opencontainers.image.source": "https://git.example.com/team/app.git",
            "org.opencontainers.image.revision": commit,
            "org.opencontainers.image.created": rfc3339(&committed),
            "org.opencontainers.image.version": "1.4.2",
            "org.opencontainers.image.title": "labels test",
            "org.example.team": "build",
        });
        assert_eq!(labels(&image), expected, "{architecture}");
        assert_eq!(
            file_v(&image),
            format!("1.4.2 {commit}\n"),
            "{architecture}"
        );
    }
    assert!(!run.stderr.contains("s3cret-token"), "{run:?}");

    // SOURCE_DATE_EPOCH wins over the commit's time; a build argument given
    // in mab.toml's place (--build-arg) wins over mab's.
    let run = build(
        &project,
        &[
            "--tag",
            "epoch",
            "--platform",
            "linux/amd64",
            "--build-arg",
            "MAB_VERSION=mine",
        ],
        &[("SOURCE_DATE_EPOCH", Some("1700000000"))],
    );
    let image = format!(
        "{repository}@{}",
        entries(&format!("{repository}:epoch"))[0].1
    );
    let found = labels(&image);
    assert_eq!(
        found["org.opencontainers.image.created"], "2023-11-14T22:13:20Z",
        "{run:?}"
    );
    assert_eq!(file_v(&image), format!("mine {commit}\n"));
}

/// Outside git nothing is known of the source: no computed label, no
/// build argument (the Dockerfile's `ARG` stays empty), `[labels]` only.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn outside_git_only_the_manifests_labels() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("labels-outside-git");
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64"])
        .file("Dockerfile", DOCKERFILE)
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n\n[labels]\nteam = \"build\"\n"
            ),
        );
    build(&project, &["--tag", "t"], &[("SOURCE_DATE_EPOCH", None)]);
    let image = format!("{repository}@{}", entries(&format!("{repository}:t"))[0].1);
    assert_eq!(labels(&image), serde_json::json!({"team": "build"}));
    assert_eq!(file_v(&image), " \n");
}
