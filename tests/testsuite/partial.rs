//! `--allow-partial` on the real lab: a linux/amd64 + linux/arm64 build
//! whose only arm64 runner points at an address where nothing listens.
//! Without the flag nothing is published; with it (and `--tag`) the list
//! under the tag holds linux/amd64 alone (read with skopeo), the build
//! exits 1 and the metadata names linux/arm64 `missing`; without `--tag`
//! the flag is refused (exit 2) before anything is built.

use std::fs;

use crate::support::{
    free_port, list_architectures, mab, require_lab, sha256, skopeo_config, skopeo_raw,
    skopeo_tags, ssh_lock, Home, Project,
};

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn allow_partial_publishes_the_platforms_that_succeeded_under_the_tag() {
    let lab = require_lab!();
    let repository = lab.repository("partial");
    let port = free_port();
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "partial\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n"
            ),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"b\"\nhost = \"runner-b\"\nplatforms = [\"linux/amd64\"]\nengine = \"unix://{b}\"\n\n\
                 [[runner]]\nname = \"down\"\nhost = \"root@127.0.0.1:{port}\"\nplatforms = [\"linux/arm64\"]\n",
                b = lab.get("RUNNER_B_ENGINE_SOCKET"),
            ),
        );
    let home = Home::new(lab);
    let _ssh = ssh_lock();
    let metadata_path = project.path().join("metadata.json");
    let build = |arguments: &[&str]| {
        let _ = fs::remove_file(&metadata_path);
        let mut all = vec![
            "build",
            "--progress",
            "json",
            "--metadata-file",
            metadata_path.to_str().unwrap(),
        ];
        all.extend_from_slice(arguments);
        let run = mab(home.path(), project.path(), &all);
        let metadata: Option<serde_json::Value> = fs::read_to_string(&metadata_path)
            .ok()
            .map(|text| serde_json::from_str(&text).unwrap());
        (run, metadata)
    };

    // Without --allow-partial: exit 1, nothing published.
    let (run, metadata) = build(&["--tag", "t1"]);
    assert_eq!(run.code, 1, "{run:?}");
    let metadata = metadata.expect("the metadata file is written");
    assert_eq!(metadata["digest"], serde_json::Value::Null, "{metadata:#}");
    assert_eq!(
        metadata["missing"],
        serde_json::json!(["linux/amd64", "linux/arm64"]),
        "{metadata:#}"
    );
    assert_eq!(run.result_event()["digest"], serde_json::Value::Null);
    assert!(run.events_named("published").is_empty(), "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    assert!(
        !skopeo_tags(&repository).contains(&"t1".to_owned()),
        "nothing under t1"
    );

    // --allow-partial without --tag: refused before anything is built.
    let (run, metadata) = build(&["--allow-partial"]);
    assert_eq!(run.code, 2, "{run:?}");
    let result = run.result_event();
    assert!(
        result["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("--allow-partial needs --tag"),
        "{result}"
    );
    assert_eq!(
        result["error"]["hints"],
        serde_json::json!([
            "pass --tag TAG (repeatable) to name the tags the partial list goes under"
        ])
    );
    assert!(
        run.events_named("plan").is_empty() && run.events_named("job_started").is_empty(),
        "nothing planned or built: {run:?}"
    );
    assert!(metadata.is_none(), "no metadata file: {run:?}");
    assert!(!skopeo_tags(&repository).contains(&"t1".to_owned()));

    // --allow-partial --tag t1: the list of linux/amd64 alone, exit 1.
    let (run, metadata) = build(&["--allow-partial", "--tag", "t1"]);
    assert_eq!(run.code, 1, "{run:?}");
    let metadata = metadata.expect("the metadata file is written");
    let raw = skopeo_raw(&format!("{repository}:t1"));
    let list_digest = sha256(&raw);
    assert_eq!(list_architectures(&raw), ["amd64"]);
    assert_eq!(metadata["digest"], list_digest.as_str(), "{metadata:#}");
    assert_eq!(metadata["tags"], serde_json::json!(["t1"]));
    assert_eq!(metadata["missing"], serde_json::json!(["linux/arm64"]));
    let platforms = metadata["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2, "{metadata:#}");
    assert_eq!(platforms[0]["platform"], "linux/amd64");
    assert_eq!(platforms[0]["state"], "published");
    assert_eq!(platforms[0]["runner"], "b");
    let list: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let child = list["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(platforms[0]["digest"], child, "{metadata:#}");
    let config = skopeo_config(&format!("{repository}@{child}"));
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
    assert_eq!(platforms[1]["platform"], "linux/arm64");
    assert_eq!(platforms[1]["state"], "failed");
    assert_eq!(platforms[1]["runner"], "down");
    assert_eq!(platforms[1]["digest"], serde_json::Value::Null);
    assert_eq!(platforms[1]["error"]["kind"], "runner", "{metadata:#}");
    let reason = platforms[1]["error"]["message"].as_str().unwrap();
    assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");

    // What a script sees: stdout, the published event and the result.
    assert_eq!(run.stdout.trim(), format!("{repository}@{list_digest}"));
    let published = run.events_named("published");
    assert_eq!(published.len(), 1, "{run:?}");
    assert_eq!(published[0]["digest"], list_digest.as_str());
    assert_eq!(published[0]["tags"], serde_json::json!(["t1"]));
    assert_eq!(published[0]["missing"], serde_json::json!(["linux/arm64"]));
    let warnings: Vec<String> = run
        .events_named("warning")
        .iter()
        .map(|event| event["message"].as_str().unwrap().to_owned())
        .filter(|message| message.starts_with("linux/arm64 is missing from the partial list"))
        .collect();
    assert_eq!(warnings.len(), 1, "{run:?}");
    assert!(warnings[0].contains("runner `down`"), "{warnings:?}");
    let result = run.result_event();
    assert_eq!(result["exit_code"], 1);
    assert_eq!(result["digest"], list_digest.as_str());
    assert_eq!(
        result["error"]["message"],
        "build failed for linux/arm64 (runner down); published a partial list without it as t1 (--allow-partial)"
    );
    // No staging tag stays: the registry deletes tags, or mab said so.
    let tags = skopeo_tags(&repository);
    let mut expected = vec!["t1".to_owned()];
    for event in run.events_named("staging_tags_left") {
        for tag in event["tags"].as_array().unwrap() {
            expected.push(tag.as_str().unwrap().to_owned());
        }
    }
    expected.sort();
    assert_eq!(tags, expected, "{run:?}");
}
