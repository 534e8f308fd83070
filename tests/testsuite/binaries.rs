//! The binary check on the lab: an arm64 image holding the amd64 busybox
//! fails (or warns, or passes when ignored), nothing is published; a
//! correct three-platform build reports how many ELF files it checked,
//! counted here independently from the pushed layers (skopeo and tar);
//! a file deleted by a later layer is not checked; `--no-push` checks
//! the engine's image. Each test holds the SSH lock, as every test that
//! connects to the SSH runners does.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::{
    build_and_metadata, build_with_metadata, docker_on, image_dir, mab_with_env, require_lab,
    runner_a_for_arm64, sha256, skopeo_exists, skopeo_raw, ssh_lock, three_runners, Home, Lab,
    Project,
};

/// `e_machine` of x86-64 and AArch64 (System V gABI).
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// What the failure and the warning say of the amd64 busybox in an arm64 image.
const FOUND: &str =
    "/bin/busybox is ELF 64-bit LSB x86-64 executable, but linux/arm64 needs 64-bit LSB AArch64";

/// `e_machine` of the ELF file at `path`, read from its header here (the
/// test's premise, independent of mab).
fn e_machine(path: &Path) -> Option<u16> {
    let bytes = fs::read(path).ok()?;
    (bytes.len() > 20 && bytes.starts_with(b"\x7fELF") && bytes[5] == 1)
        .then(|| u16::from_le_bytes([bytes[18], bytes[19]]))
}

/// A `linux/arm64` project for `repository` built on runner-a whose
/// Dockerfile is `dockerfile`, with `verify` as its `[verify]` table.
fn arm64_project(lab: &Lab, repository: &str, dockerfile: &str, verify: &str) -> Project {
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64", "arm64"])
        .file("content.txt", &format!("{repository}\n"))
        .file("Dockerfile", dockerfile)
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/arm64\"]\n{verify}"),
        )
        .file("runners.toml", &runner_a_for_arm64(lab));
    project
}

/// An arm64 image whose only program is the amd64 busybox.
const HOST_BINARY: &str = "FROM scratch\nCOPY busybox/amd64 /bin/busybox\nCOPY content.txt /\n";

/// An arm64 image whose amd64 busybox under /opt/foreign is deleted by a
/// later layer (a whiteout).
const DELETED_LATER: &str =
    "FROM scratch\nCOPY busybox/arm64 /bin/busybox\nCOPY busybox/amd64 /opt/foreign/busybox\n\
     COPY content.txt /\nRUN [\"/bin/busybox\", \"rm\", \"-r\", \"/opt/foreign\"]\n";

/// Publishes a correct arm64 image under `stable` first; returns the
/// digest the tag points at.
fn publish_stable(lab: &Lab, home: &Home, repository: &str) -> String {
    let good = arm64_project(
        lab,
        repository,
        "FROM scratch\nCOPY busybox/arm64 /bin/busybox\nCOPY content.txt /\n",
        "",
    );
    build_with_metadata(home.path(), good.path(), &["--tag", "stable"]);
    sha256(&skopeo_raw(&format!("{repository}:stable")))
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_host_binary_in_an_arm64_image_fails_and_publishes_nothing() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    assert_eq!(e_machine(&lab.busybox("amd64")), Some(EM_X86_64));
    let repository = lab.repository("binaries-error");
    let home = Home::new(lab);
    let stable_before = publish_stable(lab, &home, &repository);

    let project = arm64_project(lab, &repository, HOST_BINARY, "");
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &["--tag", "stable"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(FOUND), "{run:?}");
    assert!(
        run.stderr
            .contains("a stage on $BUILDPLATFORM copied a host binary")
            && run.stderr.contains("`[verify] ignore`"),
        "{run:?}"
    );
    assert!(run.stderr.contains("nothing was published"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(
        sha256(&skopeo_raw(&format!("{repository}:stable"))),
        stable_before,
        "the existing tag is unchanged"
    );
    let platform = &metadata["platforms"][0];
    assert_eq!(platform["state"], "failed", "{metadata}");
    assert_eq!(platform["error"]["kind"], "binaries", "{metadata}");
    assert_eq!(
        platform["binaries"],
        serde_json::json!({
            "checked": 1,
            "mismatches": [{
                "path": "/bin/busybox",
                "found": "ELF 64-bit LSB x86-64 executable",
                "expected": "64-bit LSB AArch64",
            }],
        })
    );
    // The check ran as its own phase, after the push and the verify
    // phase; failing, it ends in the job's failure, not in `check done`
    // (docs/progress.md).
    assert!(
        run.stderr.contains("[linux/arm64 arm] verify done in "),
        "{run:?}"
    );
    assert!(!run.stderr.contains("check done"), "{run:?}");
}

/// Several foreign programs: the message (also the metadata's
/// `error.message`) gives their count and the first, referring to no list;
/// the terminal lists them under it with a heading; the metadata holds
/// every one.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn several_host_binaries_are_counted_and_listed() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let repository = lab.repository("binaries-several");
    let home = Home::new(lab);
    let project = arm64_project(
        lab,
        &repository,
        "FROM scratch\nCOPY busybox/amd64 /bin/a\nCOPY busybox/amd64 /bin/b\nCOPY busybox/arm64 /bin/busybox\nCOPY content.txt /\n",
        "",
    );
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    let message = "the linux/arm64 image holds 2 programs of another architecture, but linux/arm64 needs 64-bit LSB AArch64: /bin/a is ELF 64-bit LSB x86-64 executable, and 1 more";
    // The image the check failed is kept on its runner, and named.
    let message = format!(
        "{message}; the image is kept on runner `arm` as {}",
        kept_image(&run.stderr, &repository)
    );
    let platform = &metadata["platforms"][0];
    assert_eq!(platform["error"]["message"], message, "{metadata}");
    assert!(
        run.stderr.contains(&format!(
            "  | linux/arm64 on arm: {message}\n  |     the 2 files:\n  |     /bin/a: ELF 64-bit LSB x86-64 executable\n  |     /bin/b: ELF 64-bit LSB x86-64 executable\n"
        )),
        "{run:?}"
    );
    assert_eq!(platform["binaries"]["checked"], 3, "{metadata}");
    let paths: Vec<_> = platform["binaries"]["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| finding["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["/bin/a", "/bin/b"], "{metadata}");
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn with_binaries_warn_the_image_is_published_with_a_warning() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let repository = lab.repository("binaries-warn");
    let home = Home::new(lab);
    let project = arm64_project(
        lab,
        &repository,
        HOST_BINARY,
        "[verify]\nbinaries = \"warn\"\n",
    );
    let (run, metadata) = build_with_metadata(home.path(), project.path(), &["--tag", "warned"]);
    assert!(
        run.stderr.contains(
            "warning: linux/arm64: 1 file of another architecture, but linux/arm64 needs 64-bit LSB AArch64 (`[verify] binaries = \"warn\"`): /bin/busybox is ELF 64-bit LSB x86-64 executable"
        ),
        "{run:?}"
    );
    // A check that warns ends well.
    assert!(
        run.stderr.contains("[linux/arm64 arm] check done in "),
        "{run:?}"
    );
    let list = sha256(&skopeo_raw(&format!("{repository}:warned")));
    assert_eq!(metadata["digest"], list.as_str());
    assert_eq!(metadata["platforms"][0]["binaries"]["checked"], 1);
    assert_eq!(
        metadata["platforms"][0]["binaries"]["mismatches"][0]["path"],
        "/bin/busybox"
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_ignored_file_is_published_silently() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let repository = lab.repository("binaries-ignore");
    let home = Home::new(lab);
    let project = arm64_project(
        lab,
        &repository,
        HOST_BINARY,
        "[verify]\nignore = [\"/bin/busybox\"]\n",
    );
    let (run, metadata) = build_with_metadata(home.path(), project.path(), &["--tag", "ignored"]);
    assert!(!run.stderr.contains("warning: linux/arm64"), "{run:?}");
    assert!(!run.stderr.contains("busybox is ELF"), "{run:?}");
    assert!(skopeo_exists(&format!("{repository}:ignored")));
    assert_eq!(
        metadata["platforms"][0]["binaries"],
        serde_json::json!({"checked": 0, "mismatches": []})
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_file_deleted_by_a_later_layer_is_not_checked() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let repository = lab.repository("binaries-whiteout");
    let home = Home::new(lab);
    let project = arm64_project(lab, &repository, DELETED_LATER, "");
    let (_, metadata) = build_with_metadata(home.path(), project.path(), &["--tag", "deleted"]);
    // The foreign file is in a layer of the published image, deleted by a
    // later one (read with skopeo: its layers, then tar's listing).
    let digest = metadata["platforms"][0]["digest"].as_str().unwrap();
    let listings = listings(&format!("{repository}@{digest}"));
    assert!(
        listings
            .iter()
            .any(|listing| listing.contains("opt/foreign/busybox")),
        "{listings:?}"
    );
    assert!(
        listings
            .iter()
            .any(|listing| listing.contains("opt/.wh.foreign")),
        "{listings:?}"
    );
    assert_eq!(
        metadata["platforms"][0]["binaries"],
        serde_json::json!({"checked": 1, "mismatches": []})
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn with_no_push_the_engines_image_is_checked() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let repository = lab.repository("binaries-no-push");
    let home = Home::new(lab);
    let project = arm64_project(lab, &repository, HOST_BINARY, "");
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &["--no-push"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(FOUND), "{run:?}");
    assert_eq!(metadata["platforms"][0]["error"]["kind"], "binaries");
    assert_eq!(metadata["platforms"][0]["binaries"]["checked"], 1);
    assert!(!skopeo_exists(&format!("{repository}:latest")));
}

/// The name a build gave its linux/arm64 image in the engine, from the
/// build log's `Successfully tagged REPOSITORY:mab-<build id>-linux-arm64`.
fn kept_image(stderr: &str, repository: &str) -> String {
    let prefix = format!("Successfully tagged {repository}:mab-");
    let start =
        stderr.find(&prefix).expect("a tagged image in the log") + prefix.len() - "mab-".len();
    let name = &stderr[start..];
    let end = name.find("-linux-arm64").expect("the arm64 image's name") + "-linux-arm64".len();
    format!("{repository}:{}", &name[..end])
}

/// An image without layers (`FROM scratch` and no file) has no programs:
/// with `--no-push` it passes with nothing checked, though `docker save`
/// refuses to export it.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn with_no_push_an_image_without_layers_passes() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let repository = lab.repository("binaries-no-layers");
    let home = Home::new(lab);
    let project = arm64_project(lab, &repository, "FROM scratch\nLABEL empty=yes\n", "");
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &["--no-push"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        metadata["platforms"][0]["binaries"],
        serde_json::json!({"checked": 0, "mismatches": []}),
        "{metadata}"
    );
    // The premise, from runner-a's engine: the image it kept has no layer.
    let inspect = docker_on(
        "runner-a",
        &[
            "image",
            "inspect",
            "--format",
            "{{len .RootFS.Layers}}",
            &format!("{repository}:mab-linux-arm64"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        "0",
        "{inspect:?}"
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn with_no_push_a_passing_image_is_spooled_in_tmpdir_and_nothing_is_left() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let repository = lab.repository("binaries-no-push-spool");
    let home = Home::new(lab);
    let project = arm64_project(lab, &repository, DELETED_LATER, "");
    let spool = tempfile::tempdir().unwrap();
    let metadata = project.path().join("metadata.json");
    let arguments = [
        "build",
        "--progress",
        "plain",
        "--no-push",
        "--metadata-file",
        metadata.to_str().unwrap(),
    ];
    let run = mab_with_env(
        home.path(),
        project.path(),
        &arguments,
        &[("TMPDIR", Some(spool.path().to_str().unwrap()))],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let metadata: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&metadata).unwrap()).unwrap();
    // The deleted foreign busybox is not counted: the whiteout applied.
    assert_eq!(
        metadata["platforms"][0]["binaries"],
        serde_json::json!({"checked": 1, "mismatches": []})
    );
    assert_eq!(
        fs::read_dir(spool.path()).unwrap().count(),
        0,
        "the spool leaves nothing in TMPDIR"
    );

    // A TMPDIR that cannot take the spool is named in the failure.
    let missing = spool.path().join("missing");
    let run = mab_with_env(
        home.path(),
        project.path(),
        &arguments,
        &[("TMPDIR", Some(missing.to_str().unwrap()))],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "to a temporary file in {} on this machine",
            missing.display()
        )),
        "{run:?}"
    );
    assert!(run.stderr.contains("set TMPDIR"), "{run:?}");
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_opaque_directory_hides_the_files_below_it() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let repository = lab.repository("binaries-opaque");
    let home = Home::new(lab);
    let project = arm64_project(
        lab,
        &repository,
        "FROM scratch\nCOPY busybox/arm64 /bin/busybox\nCOPY busybox/amd64 /opt/x/foreign\n\
         COPY content.txt /\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"rm -rf /opt/x && mkdir /opt/x && cp /bin/busybox /opt/x/tool\"]\n",
        "",
    );
    let (run, metadata) = build_with_metadata(home.path(), project.path(), &["--tag", "opaque"]);
    // The premise, from the pushed layers: the last one makes /opt/x
    // opaque over the layer holding the amd64 file.
    let digest = metadata["platforms"][0]["digest"].as_str().unwrap();
    let listings = listings(&format!("{repository}@{digest}"));
    assert!(
        listings
            .iter()
            .any(|listing| listing.contains("opt/x/foreign")),
        "{listings:?}"
    );
    assert!(
        listings
            .last()
            .is_some_and(|listing| listing.contains("opt/x/.wh..wh..opq")),
        "{listings:?}"
    );
    assert!(!run.stderr.contains("warning: linux/arm64"), "{run:?}");
    assert_eq!(
        metadata["platforms"][0]["binaries"],
        serde_json::json!({"checked": 2, "mismatches": []})
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_failed_smoke_test_keeps_the_binary_report() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let repository = lab.repository("binaries-then-test");
    let home = Home::new(lab);
    let project = arm64_project(
        lab,
        &repository,
        "FROM scratch\nCOPY busybox/arm64 /bin/busybox\nCOPY content.txt /\n",
        "[test]\nrun = [\"/bin/busybox\", \"false\"]\n",
    );
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &["--tag", "tested"]);
    assert_eq!(run.code, 1, "{run:?}");
    let platform = &metadata["platforms"][0];
    assert_eq!(platform["error"]["kind"], "test", "{metadata}");
    assert_eq!(
        platform["binaries"],
        serde_json::json!({"checked": 1, "mismatches": []}),
        "{metadata}"
    );
}

/// `tar -tvzf` of each layer of the image `reference`, in order.
fn listings(reference: &str) -> Vec<String> {
    let image = image_dir(reference);
    layers(image.path())
        .iter()
        .map(|layer| {
            let output = Command::new("tar")
                .arg("-tvzf")
                .arg(layer)
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .collect()
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_correct_three_platform_build_counts_its_elf_files() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    assert_eq!(e_machine(&lab.busybox("arm64")), Some(EM_AARCH64));
    let repository = lab.repository("binaries-three");
    let home = Home::new(lab);
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64", "arm64", "ppc64le"])
        .file("content.txt", &format!("{repository}\n"))
        .file(
            "Dockerfile",
            "FROM scratch AS build\nARG TARGETARCH\nCOPY busybox/${TARGETARCH} /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN [\"/bin/busybox\", \"cp\", \"/bin/busybox\", \"/bin/copy\"]\n\
             RUN [\"/bin/busybox\", \"ln\", \"/bin/busybox\", \"/bin/hard\"]\n\
             FROM scratch\nCOPY --from=build /bin /bin\nCOPY content.txt /\n",
        )
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\", \"linux/ppc64le\"]\n"
            ),
        )
        .file(
            "runners.toml",
            &three_runners(lab),
        );
    let (run, metadata) = build_with_metadata(home.path(), project.path(), &["--tag", "three"]);
    assert!(!run.stderr.contains("warning: linux/"), "{run:?}");
    let platforms = metadata["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 3);
    for platform in platforms {
        let digest = platform["digest"].as_str().unwrap();
        // The ELF files of the image's file system, counted from its
        // layers unpacked in order with tar (no whiteouts here).
        let reference = format!("{repository}@{digest}");
        // The premise: /bin/hard is a hard link to /bin/busybox in the
        // pushed layer (tar's listing says "link to").
        assert!(
            listings(&reference)
                .iter()
                .any(|listing| listing.contains("bin/hard link to bin/busybox")),
            "{:?}",
            listings(&reference)
        );
        let counted = elf_files(&reference);
        assert_eq!(
            counted,
            ["/bin/busybox", "/bin/copy", "/bin/hard"],
            "{platform}"
        );
        assert_eq!(
            platform["binaries"],
            serde_json::json!({"checked": counted.len(), "mismatches": []}),
            "{platform}"
        );
    }
}

/// The layer files of a skopeo `dir:` copy, in the manifest's order.
fn layers(directory: &Path) -> Vec<std::path::PathBuf> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(directory.join("manifest.json")).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .expect("an image manifest")
        .iter()
        .map(|layer| {
            let digest = layer["digest"].as_str().unwrap();
            directory.join(digest.trim_start_matches("sha256:"))
        })
        .collect()
}

/// The regular files starting with the ELF magic in the image `reference`,
/// its layers unpacked in order into a directory with tar, sorted.
fn elf_files(reference: &str) -> Vec<String> {
    let image = image_dir(reference);
    let root = tempfile::tempdir().unwrap();
    for layer in layers(image.path()) {
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(root.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut found = Vec::new();
    let mut pending = vec![root.path().to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in fs::read_dir(&directory).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() && fs::read(entry.path()).unwrap().starts_with(b"\x7fELF") {
                let path = entry.path();
                let relative = path.strip_prefix(root.path()).unwrap();
                found.push(format!("/{}", relative.display()));
            }
        }
    }
    found.sort();
    found
}
