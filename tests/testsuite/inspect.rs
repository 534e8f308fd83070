//! `mab inspect` against a list mab published on the lab, compared with
//! what skopeo reads from the registry: the list's bytes (`--raw`), media
//! type, digest and size, and each image's manifest size, image size and
//! created time.

use std::process::Command;

use crate::support::{mab, require_lab, sha256, skopeo_config, skopeo_raw, Lab, Project};

/// `mab inspect ARGUMENTS`, which must succeed; its stdout.
fn inspect(home: &std::path::Path, arguments: &[&str]) -> String {
    let mut all = vec!["inspect"];
    all.extend_from_slice(arguments);
    let run = mab(home, std::path::Path::new("/"), &all);
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
}

/// The image size skopeo's raw manifest gives: its config's and layers'
/// sizes.
fn image_size(manifest: &serde_json::Value) -> u64 {
    std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|descriptor| descriptor["size"].as_u64().unwrap())
        .sum()
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn inspect_shows_what_the_registry_holds() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("inspect");
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", &format!("{repository}\n"))
        .two_platform_manifest(&repository);
    let home = tempfile::tempdir().unwrap();
    let built = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain", "--tag", "1.0"],
    );
    assert_eq!(built.code, 0, "{built:?}");
    let reference = format!("{repository}:1.0");
    let raw = skopeo_raw(&reference);
    let list: serde_json::Value = serde_json::from_slice(&raw).unwrap();

    // --raw: the bytes exactly as served.
    assert_eq!(
        inspect(home.path(), &["--raw", &reference]).as_bytes(),
        &raw[..]
    );

    let json: serde_json::Value =
        serde_json::from_str(&inspect(home.path(), &["--format", "json", &reference])).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["reference"], reference.as_str());
    assert_eq!(json["name"], repository.as_str());
    assert_eq!(json["media_type"], list["mediaType"]);
    assert_eq!(json["digest"], sha256(&raw).as_str());
    assert_eq!(json["size"], raw.len());
    assert_eq!(json["list"], true);
    assert_eq!(json["annotations"], serde_json::json!({}));
    let entries = list["manifests"].as_array().unwrap();
    let images = json["platforms"].as_array().unwrap();
    assert_eq!(images.len(), entries.len());
    assert_eq!(images.len(), 2);
    for (image, entry) in images.iter().zip(entries) {
        let digest = entry["digest"].as_str().unwrap();
        let child = format!("{repository}@{digest}");
        let manifest_bytes = skopeo_raw(&child);
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        let config = skopeo_config(&child);
        assert_eq!(image["digest"], digest);
        assert_eq!(image["media_type"], manifest["mediaType"]);
        assert_eq!(image["os"], entry["platform"]["os"]);
        assert_eq!(image["architecture"], entry["platform"]["architecture"]);
        assert_eq!(image["manifest_size"], manifest_bytes.len());
        assert_eq!(image["image_size"], image_size(&manifest));
        assert_eq!(image["created"], config["created"]);
    }

    // The human form: a header, the list's media type and digest, a row
    // per platform.
    let text = inspect(home.path(), &[&reference]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("{repository}@{}", sha256(&raw)));
    assert_eq!(
        lines[1],
        format!(
            "list         {} ({} bytes)",
            list["mediaType"].as_str().unwrap(),
            raw.len()
        )
    );
    assert_eq!(lines[2], "annotations  none");
    for image in images {
        let row = lines
            .iter()
            .find(|line| line.contains(image["digest"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{text}"));
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields[0], image["platform"].as_str().unwrap(), "{text}");
        assert_eq!(fields[2], image["manifest_size"].to_string(), "{text}");
        assert_eq!(fields[3], image["image_size"].to_string(), "{text}");
    }

    // A single image, by its digest.
    let digest = entries[1]["digest"].as_str().unwrap();
    let single = format!("{repository}@{digest}");
    let json: serde_json::Value =
        serde_json::from_str(&inspect(home.path(), &["--format", "json", &single])).unwrap();
    assert_eq!(json["list"], false);
    assert_eq!(json["digest"], digest);
    assert_eq!(json["platforms"][0]["digest"], digest);
    assert_eq!(json["platforms"][0]["architecture"], "arm64");
    let skopeo = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{single}"))
        .output()
        .unwrap();
    let skopeo: serde_json::Value = serde_json::from_slice(&skopeo.stdout).unwrap();
    assert_eq!(json["platforms"][0]["created"], skopeo["Created"]);
}
