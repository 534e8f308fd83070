//! Failover on the real lab: the first runner listed for the platforms
//! points at an address where nothing listens, the second is a lab runner.
//! The platforms move (the warning names both runners and the reason, the
//! metadata records it, the registry holds the list, read with skopeo);
//! with `--no-fallback` the build fails naming the runner, writes the
//! metadata with each platform's state and error, and leaves the
//! registry's tags as they were.

use std::fs;

use crate::support::{
    mab, require_lab, sha256, skopeo_raw, skopeo_tags, ssh_lock, Home, Lab, Project,
};

/// A port on 127.0.0.1 where nothing listens: bound, then let go.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A `FROM scratch` project for linux/amd64 and linux/386 (both native on
/// runner-b); `down` (nothing listens at its address) is listed before
/// `b` (runner-b) for both.
fn project(lab: &Lab, repository: &str, port: u16) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "failover\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/386\"]\n"
            ),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"down\"\nhost = \"root@127.0.0.1:{port}\"\nplatforms = [\"linux/amd64\", \"linux/386\"]\n\n\
                 [[runner]]\nname = \"b\"\nhost = \"runner-b\"\nplatforms = [\"linux/amd64\", \"linux/386\"]\nengine = \"unix://{b}\"\n",
                b = lab.get("RUNNER_B_ENGINE_SOCKET"),
            ),
        );
    project
}

/// `mab build --progress plain --metadata-file metadata.json ARGS`: the
/// run and the metadata file's JSON (written whether it failed or not).
fn build(
    home: &Home,
    project: &Project,
    arguments: &[&str],
) -> (crate::support::Run, serde_json::Value) {
    let metadata = project.path().join("metadata.json");
    let mut all = vec![
        "build",
        "--progress",
        "plain",
        "--metadata-file",
        metadata.to_str().unwrap(),
    ];
    all.extend_from_slice(arguments);
    let run = mab(home.path(), project.path(), &all);
    let json = serde_json::from_str(&fs::read_to_string(&metadata).unwrap())
        .unwrap_or_else(|error| panic!("the metadata file is JSON ({error}): {run:?}"));
    (run, json)
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn platforms_move_off_an_unreachable_runner_unless_fallback_is_off() {
    let lab = require_lab!();
    let repository = lab.repository("failover");
    let port = free_port();
    let project = project(lab, &repository, port);
    let home = Home::new(lab);
    let _ssh = ssh_lock();

    let (run, metadata) = build(&home, &project, &["--tag", "moved"]);
    assert_eq!(run.code, 0, "{run:?}");
    let platforms = metadata["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2, "{metadata:#}");
    let reason = platforms[0]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains(&format!("127.0.0.1:{port}")) && reason.contains("refused"),
        "{reason}"
    );
    for (entry, platform) in platforms.iter().zip(["linux/amd64", "linux/386"]) {
        assert_eq!(entry["platform"], platform, "{metadata:#}");
        assert_eq!(entry["runner"], "b", "{metadata:#}");
        assert_eq!(entry["state"], "published", "{metadata:#}");
        assert_eq!(entry["emulated"], false, "{metadata:#}");
        assert_eq!(entry["moved_from"], "down", "{metadata:#}");
        assert_eq!(entry["reason"], reason.as_str(), "{metadata:#}");
        assert_eq!(entry["error"], serde_json::Value::Null, "{metadata:#}");
        let warning = format!(
            "warning: {platform} moved from runner `down` to runner `b` (native): {reason}"
        );
        assert_eq!(
            run.stderr.lines().filter(|line| *line == warning).count(),
            1,
            "{warning:?} once in {run:?}"
        );
    }
    assert_eq!(metadata["missing"], serde_json::json!([]));

    // The registry holds the list under the tag, with both platforms' images
    // as the metadata names them.
    let raw = skopeo_raw(&format!("{repository}:moved"));
    assert_eq!(metadata["digest"], sha256(&raw), "{metadata:#}");
    let list: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let children: Vec<(String, String)> = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|child| {
            (
                child["platform"]["architecture"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                child["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        children,
        [
            (
                "amd64".to_owned(),
                platforms[0]["digest"].as_str().unwrap().to_owned()
            ),
            (
                "386".to_owned(),
                platforms[1]["digest"].as_str().unwrap().to_owned()
            ),
        ]
    );
    let tags_before = skopeo_tags(&repository);
    let list_before = sha256(&skopeo_raw(&format!("{repository}:moved")));

    // --no-fallback, and then `fallback = false` under [image]: exit 1
    // naming the runner, nothing built or published, the metadata written.
    let manifest = fs::read_to_string(project.path().join("mab.toml")).unwrap();
    let keyed = format!("{manifest}fallback = false\n");
    for (how, arguments, toml) in [
        (
            "--no-fallback",
            vec!["--tag", "stranded", "--no-fallback"],
            &manifest,
        ),
        ("fallback = false", vec!["--tag", "stranded"], &keyed),
    ] {
        project.file("mab.toml", toml);
        let (run, metadata) = build(&home, &project, &arguments);
        assert_eq!(run.code, 1, "{how}: {run:?}");
        let error = run
            .stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap_or_else(|| panic!("{how}: no error line in {run:?}"));
        assert_eq!(
            error,
            "error: build failed for linux/amd64 (runner down), linux/386 (runner down); nothing was published",
            "{how}"
        );
        for platform in ["linux/amd64", "linux/386"] {
            assert!(
                run.stderr
                    .contains(&format!("  | {platform} on down: {reason}")),
                "{how}: {run:?}"
            );
        }
        assert!(
            run.stderr.contains(
                "hint: check runner `down` with `mab runners check`, or leave out --no-fallback"
            ),
            "{how}: {run:?}"
        );
        assert!(
            !run.stderr.contains(" moved from runner "),
            "{how}: {run:?}"
        );
        assert!(
            !run.stderr.contains("job_started") && !run.stderr.contains("started ("),
            "{how}: nothing started: {run:?}"
        );
        assert_eq!(metadata["digest"], serde_json::Value::Null, "{how}");
        assert_eq!(
            metadata["missing"],
            serde_json::json!(["linux/amd64", "linux/386"]),
            "{how}"
        );
        for (entry, platform) in metadata["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .zip(["linux/amd64", "linux/386"])
        {
            assert_eq!(entry["platform"], platform, "{how}: {metadata:#}");
            assert_eq!(entry["runner"], "down", "{how}: {metadata:#}");
            assert_eq!(entry["state"], "failed", "{how}: {metadata:#}");
            assert_eq!(
                entry["error"],
                serde_json::json!({ "kind": "runner", "message": reason }),
                "{how}: {metadata:#}"
            );
            assert_eq!(entry["digest"], serde_json::Value::Null, "{how}");
            assert_eq!(entry["moved_from"], serde_json::Value::Null, "{how}");
        }
        assert_eq!(
            skopeo_tags(&repository),
            tags_before,
            "{how}: tags unchanged"
        );
        assert_eq!(
            sha256(&skopeo_raw(&format!("{repository}:moved"))),
            list_before,
            "{how}: the list unchanged"
        );
    }
}
