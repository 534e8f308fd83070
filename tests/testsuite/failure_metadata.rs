//! `--metadata-file` when `mab build` fails before any job ran, on the
//! real lab: a registry where nothing listens (refused before any job
//! starts, though the runners were connected to meanwhile), and a platform whose only
//! runner is unreachable (the plan fails). The file holds the whole
//! document each time: no digest, every platform missing and
//! `not_started`, the error on the platforms it concerns.

use crate::support::{
    build_and_metadata, free_port, require_lab, sha256, ssh_lock, Home, Lab, Project, Run,
};

/// A `FROM scratch` project of `image` for linux/amd64 and linux/386;
/// `b` (runner-b) lists linux/amd64 and, unless `only_down_for_386`, also
/// linux/386; `down` (nothing listens at its address) lists linux/386.
fn two_platforms(lab: &Lab, image: &str, only_down_for_386: bool) -> Project {
    let project = Project::new();
    let b_platforms = match only_down_for_386 {
        true => "\"linux/amd64\"",
        false => "\"linux/amd64\", \"linux/386\"",
    };
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "early\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{image}\"\nplatforms = [\"linux/amd64\", \"linux/386\"]\n"),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"b\"\nhost = \"runner-b\"\nplatforms = [{b_platforms}]\nengine = \"unix://{b}\"\n\n\
                 [[runner]]\nname = \"down\"\nhost = \"root@127.0.0.1:{port}\"\nplatforms = [\"linux/386\"]\n",
                b = lab.get("RUNNER_B_ENGINE_SOCKET"),
                port = free_port(),
            ),
        );
    project
}

/// The line of stderr starting `error: `, without it.
fn error_line(run: &Run) -> &str {
    run.stderr
        .lines()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or_else(|| panic!("no error line in {run:?}"))
}

/// The metadata file of a build of `image` under the tag `t` that
/// published nothing, with these entries for linux/amd64 and linux/386,
/// of `project`: the inputs are its own (the context's digest as the
/// file says, a `sha256:` one).
fn unpublished(
    project: &Project,
    metadata: &serde_json::Value,
    image: &str,
    entries: [serde_json::Value; 2],
) -> serde_json::Value {
    let context = metadata["inputs"]["context"].as_str().unwrap_or_default();
    assert!(context.starts_with("sha256:"), "{metadata:#}");
    let dockerfile = std::fs::read(project.path().join("Dockerfile")).unwrap();
    // Each top-level file's line as docs/publishing.md gives it (path,
    // kind, executable bit, no link target, content sha256), the
    // Dockerfile's own left out; the metadata file is not an input.
    let entry = |name: &str| {
        let content = std::fs::read(project.path().join(name)).unwrap();
        let hex = sha256(&content)["sha256:".len()..].to_owned();
        sha256(format!("{name}\0file\00\0\0{hex}\n").as_bytes())
    };
    serde_json::json!({
        "image": image, "digest": null, "media_type": null, "tags": ["t"],
        "missing": ["linux/amd64", "linux/386"],
        "platforms": entries,
        "project": project.path().join("mab.toml"),
        "inputs": {
            "context": context,
            "context_entries": {
                "Dockerfile": sha256(b""),
                "content.txt": entry("content.txt"),
                "mab.toml": entry("mab.toml"),
                "runners.toml": entry("runners.toml"),
            },
            "dockerfile": { "path": "Dockerfile", "digest": sha256(&dockerfile) },
            "build_args": {},
            "target": null,
            "platforms": ["linux/amd64", "linux/386"],
            "verify": {"binaries": "error", "ignore": []},
        },
    })
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_build_that_fails_before_any_job_writes_the_metadata() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let _ssh = ssh_lock();

    // The registry is stopped: nothing listens at the image's registry.
    let registry = format!("127.0.0.1:{}", free_port());
    let image = format!("{registry}/tests/stopped");
    let project = two_platforms(lab, &image, false);
    let (run, metadata) = build_and_metadata(home.path(), project.path(), &["--tag", "t"]);
    assert_eq!(run.code, 1, "{run:?}");
    let message = error_line(&run);
    assert!(
        message.starts_with(&format!("cannot reach the registry {registry}")),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains("] started ("),
        "no job started: {run:?}"
    );
    let expected_entry = |platform: &str, error: serde_json::Value| {
        serde_json::json!({
            "platform": platform, "runner": null, "digest": null, "emulated": false,
            "seconds": null, "state": "not_started", "error": error,
            "moved_from": null, "reason": null, "reused": false,
        })
    };
    let registry_error = serde_json::json!({ "kind": "registry", "message": message });
    assert_eq!(
        metadata,
        unpublished(
            &project,
            &metadata,
            &image,
            [
                expected_entry("linux/amd64", registry_error.clone()),
                expected_entry("linux/386", registry_error),
            ]
        )
    );

    // linux/386's only runner is unreachable: the plan fails (exit 1),
    // naming it; the error is on linux/386 only.
    let image = lab.repository("unplanned");
    let project = two_platforms(lab, &image, true);
    let (run, metadata) =
        build_and_metadata(home.path(), project.path(), &["--no-push", "--tag", "t"]);
    assert_eq!(run.code, 1, "{run:?}");
    let message = error_line(&run);
    assert!(
        message.starts_with("no runner can build linux/386: down is unreachable ("),
        "{run:?}"
    );
    assert_eq!(
        metadata,
        unpublished(
            &project,
            &metadata,
            &image,
            [
                expected_entry("linux/amd64", serde_json::Value::Null),
                expected_entry(
                    "linux/386",
                    serde_json::json!({ "kind": "runner", "message": message }),
                ),
            ]
        )
    );
}
