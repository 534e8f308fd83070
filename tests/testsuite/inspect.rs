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

/// Publishes a `FROM scratch` image for linux/amd64 and linux/arm64 (from
/// the local engine) as `repository:tag`.
fn publish_two_platforms(home: &std::path::Path, repository: &str, tag: &str) {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", &format!("{repository}\n"))
        .two_platform_manifest(repository);
    let built = mab(
        home,
        project.path(),
        &["build", "--progress", "plain", "--tag", tag],
    );
    assert_eq!(built.code, 0, "{built:?}");
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn inspect_shows_what_the_registry_holds() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("inspect");
    let home = tempfile::tempdir().unwrap();
    publish_two_platforms(home.path(), &repository, "1.0");
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

/// An OCI image index carries its annotations through publishing: two
/// images made OCI manifests by skopeo (`--format oci`; the lab's Docker
/// engines push Docker manifests only), their index written by
/// `mab_registry::manifest_list` with annotations and published by the
/// registry client mab publishes with, then read back by skopeo and by
/// `mab inspect`.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_oci_index_keeps_its_annotations() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("oci-index");
    let home = tempfile::tempdir().unwrap();
    publish_two_platforms(home.path(), &repository, "docker");
    let docker_list: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&format!("{repository}:docker"))).unwrap();
    let mut oci_digests = Vec::new();
    for (index, entry) in docker_list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let source = format!("{repository}@{}", entry["digest"].as_str().unwrap());
        let target = format!("{repository}:oci-{index}");
        let copied = Command::new("skopeo")
            .args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--format",
                "oci",
            ])
            .arg(format!("docker://{source}"))
            .arg(format!("docker://{target}"))
            .output()
            .unwrap();
        assert!(copied.status.success(), "{copied:?}");
        oci_digests.push(sha256(&skopeo_raw(&target)));
    }
    let annotations = std::collections::BTreeMap::from([
        (
            "org.opencontainers.image.revision".to_owned(),
            "0123456789abcdef0123456789abcdef01234567".to_owned(),
        ),
        ("org.example.note".to_owned(), "kept".to_owned()),
    ]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (media_type, pushed) = runtime.block_on(async {
        let registry = mab_registry::Repository::new(&repository, None).unwrap();
        let mut children = Vec::new();
        for digest in &oci_digests {
            children.push(registry.describe(digest).await.unwrap());
        }
        assert!(mab_registry::carries_annotations(&children));
        let (media_type, bytes) = mab_registry::manifest_list(&children, &annotations);
        let digest = registry
            .publish(media_type, &bytes, &["oci".to_owned()])
            .await
            .unwrap();
        assert_eq!(digest, sha256(&bytes));
        (media_type, digest)
    });
    assert_eq!(media_type, mab_registry::OCI_INDEX);
    let raw = skopeo_raw(&format!("{repository}:oci"));
    assert_eq!(sha256(&raw), pushed);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["mediaType"], mab_registry::OCI_INDEX);
    assert_eq!(
        index["annotations"],
        serde_json::to_value(&annotations).unwrap()
    );

    let json: serde_json::Value = serde_json::from_str(&inspect(
        home.path(),
        &["--format", "json", &format!("{repository}:oci")],
    ))
    .unwrap();
    assert_eq!(json["media_type"], mab_registry::OCI_INDEX);
    assert_eq!(json["annotations"], index["annotations"]);
    for (image, digest) in json["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&oci_digests)
    {
        assert_eq!(image["digest"], digest.as_str());
        assert_eq!(image["media_type"], mab_registry::OCI_MANIFEST);
    }
    let text = inspect(home.path(), &[&format!("{repository}:oci")]);
    assert!(text.contains("\nannotations\n  org.example.note = kept\n  org.opencontainers.image.revision = 0123456789abcdef0123456789abcdef01234567\n"), "{text}");
}
