//! The published list read back (docs/publishing.md#the-published-list-read-back),
//! on the real lab: after a good build the `read_back` event names what
//! skopeo reads from the registry; and another writer that really moves a
//! tag right after mab pushed it (the proxy of `registry_faults.rs`, which
//! points the tag at another manifest in the lab's registry) fails the
//! build with exit 1, naming the tag, where it points and the list
//! published. The same proxy answers `503` once to the reads of the list
//! and of an image of it (retried, the build succeeds), or `404` to an
//! image (exit 1 naming it, the list's digest kept). The registry is read
//! with skopeo, not through the proxy.

use crate::registry_faults::{build, names, project, FaultyProxy, ReadBackFault};
use std::io::{BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{mab_command, read_until, require_lab, sha256, skopeo_raw, Run};

/// The digests of a list's entries (raw bytes, as skopeo reads them), in
/// order.
fn entry_digests(list: &[u8]) -> Vec<String> {
    let list: serde_json::Value = serde_json::from_slice(list).unwrap();
    list["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|entry| entry["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// The digest of each platform's `pushed` event, in `mab.toml` order
/// (linux/amd64, linux/arm64).
fn pushed_digests(run: &Run) -> Vec<String> {
    ["linux/amd64", "linux/arm64"]
        .iter()
        .map(|platform| {
            let pushed = run.events_named("pushed");
            let event = pushed
                .iter()
                .find(|event| event["platform"] == *platform)
                .unwrap_or_else(|| panic!("{platform} pushed: {run:?}"));
            event["digest"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// A good two-platform build: one `read_back` event, after `published`,
/// naming the list's digest, both tags and both platforms; skopeo reads
/// that digest under each tag and the list's entries are the images the
/// engines pushed.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_published_list_is_read_back_and_the_registry_agrees() {
    let lab = require_lab!();
    let repository = lab.repository("read-back");
    let project = project(&repository);

    let run = build(&project, "json", &["1.0.0", "stable"]);

    assert_eq!(run.code, 0, "{run:?}");
    let digest = run.stdout.trim().rsplit_once('@').unwrap().1.to_owned();
    let events = run.events();
    let position = |name: &str| {
        events
            .iter()
            .position(|event| event["event"] == name)
            .unwrap_or_else(|| panic!("no {name} event: {run:?}"))
    };
    assert!(position("published") < position("read_back"), "{run:?}");
    let read_back = run.events_named("read_back");
    assert_eq!(
        read_back,
        [serde_json::json!({
            "schema": 1,
            "event": "read_back",
            "image": repository,
            "digest": digest,
            "tags": ["1.0.0", "stable"],
            "platforms": ["linux/amd64", "linux/arm64"],
        })],
        "{run:?}"
    );
    let list = skopeo_raw(&format!("{repository}:1.0.0"));
    assert_eq!(sha256(&list), digest);
    assert_eq!(skopeo_raw(&format!("{repository}:stable")), list);
    assert_eq!(entry_digests(&list), pushed_digests(&run));
    for child in entry_digests(&list) {
        assert_eq!(sha256(&skopeo_raw(&format!("{repository}@{child}"))), child);
    }
}

/// Another writer points `1.0.0` at the linux/amd64 image right after mab
/// pushed the list under it: the read back finds it (after reading the tag
/// again), exit 1, the message says the list was published under both
/// tags and that they have moved, names the tag and the digest it points
/// at (what skopeo reads there), and says that `stable` still points at
/// the list (as skopeo reads it), with a hint naming the moved tag and
/// `mab build --resume`; the list is published, so stdout and the
/// metadata keep its digest (both platforms `published`), with the
/// failure in `read_back_error`; the staging tags are kept for a resume.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_tag_another_writer_moved_after_the_publish_fails_the_build() {
    let lab = require_lab!();
    let proxy = FaultyProxy::racing(lab.registry(), "1.0.0");
    let (repository, image) = names(lab, "raced", &proxy);
    let project = project(&image);

    let run = build(&project, "json", &["1.0.0", "stable"]);

    assert_eq!(run.code, 1, "{run:?}");
    // The list by its digest, then each tag, each once: nothing retried.
    assert_eq!(proxy.list_puts(), 3, "{run:?}");
    let published = run.events_named("published");
    assert_eq!(published.len(), 1, "{run:?}");
    let list_digest = published[0]["digest"].as_str().unwrap().to_owned();
    assert!(run.events_named("read_back").is_empty(), "{run:?}");

    // The registry, read without the proxy: 1.0.0 holds the amd64 image,
    // stable the list mab published.
    let amd64 = pushed_digests(&run)[0].clone();
    assert_eq!(sha256(&skopeo_raw(&format!("{repository}:1.0.0"))), amd64);
    assert_eq!(
        sha256(&skopeo_raw(&format!("{repository}:stable"))),
        list_digest
    );

    let result = run.result_event();
    assert_eq!(result["digest"], list_digest.as_str(), "{result}");
    assert_eq!(run.stdout.trim(), format!("{image}@{list_digest}"));
    let message = result["error"]["message"].as_str().unwrap();
    let expected = format!(
        "the list {list_digest} of {image} was published under 1.0.0, stable (the tags have moved); \
         tag 1.0.0 points at {amd64} when read back: another writer moved it after the publish; \
         stable still points at the list"
    );
    assert_eq!(message, expected, "{result}");
    let hints = result["error"]["hints"].as_array().unwrap();
    let hint = hints[0].as_str().unwrap();
    assert!(
        hint.contains(&format!("`mab inspect {image}:1.0.0`")),
        "{result}"
    );
    assert!(hint.contains("`mab build --resume`"), "{result}");
    let kept = run.events_named("staging_tags_left");
    assert_eq!(kept.len(), 1, "{run:?}");
    assert_eq!(kept[0]["reason"], "kept_for_resume", "{run:?}");
    assert_eq!(
        kept[0]["tags"],
        serde_json::json!(["mab-staging-linux-amd64", "mab-staging-linux-arm64"]),
        "{run:?}"
    );

    let metadata: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join("metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["digest"], list_digest.as_str(), "{metadata}");
    assert_eq!(metadata["read_back_error"], expected.as_str(), "{metadata}");
    for platform in metadata["platforms"].as_array().unwrap() {
        assert_eq!(platform["state"], "published", "{metadata}");
    }
}

/// The metadata file `build` wrote into the project.
fn metadata_of(project: &crate::support::Project) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(project.path().join("metadata.json")).unwrap())
        .unwrap()
}

/// The proxy answers `503` to the first read of the list by its digest
/// (a `GET`) and to the first of the linux/arm64 image (a `HEAD`): each
/// is a `retry` event naming the proxy and that request, the build
/// succeeds (exit 0) with a `read_back` event naming the list, and the
/// metadata has the list's digest without `read_back_error`.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_read_back_the_registry_fails_once_is_retried() {
    let lab = require_lab!();
    let proxy = FaultyProxy::failing_read_back(lab.registry(), ReadBackFault::UnavailableOnce);
    let (repository, image) = names(lab, "read-back-retried", &proxy);
    let project = project(&image);

    let run = build(&project, "json", &["1.0.0", "stable"]);

    assert_eq!(run.code, 0, "{run:?}");
    let digest = run.stdout.trim().rsplit_once('@').unwrap().1.to_owned();
    let arm64 = pushed_digests(&run)[1].clone();
    let registry = format!("127.0.0.1:{}", proxy.port);
    let path = image.split_once('/').unwrap().1;
    let retried: Vec<String> = run
        .events_named("retry")
        .iter()
        .map(|retry| {
            assert_eq!(
                retry["target"],
                serde_json::json!({"kind": "registry", "registry": registry}),
                "{retry}"
            );
            assert!(
                retry["error"]
                    .as_str()
                    .unwrap()
                    .contains("503 Service Unavailable"),
                "{retry}"
            );
            retry["request"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        retried,
        [
            format!("GET /v2/{path}/manifests/{digest}"),
            format!("HEAD /v2/{path}/manifests/{arm64}"),
        ],
        "{run:?}"
    );
    let read_back = run.events_named("read_back");
    assert_eq!(read_back.len(), 1, "{run:?}");
    assert_eq!(read_back[0]["digest"], digest.as_str(), "{run:?}");
    assert_eq!(
        read_back[0]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"]),
        "{run:?}"
    );
    assert_eq!(sha256(&skopeo_raw(&format!("{repository}:1.0.0"))), digest);
    let metadata = metadata_of(&project);
    assert_eq!(metadata["digest"], digest.as_str(), "{metadata}");
    assert!(metadata.get("read_back_error").is_none(), "{metadata}");
}

/// The proxy answers `404` to every read of the linux/arm64 image once
/// the list is pushed: exit 1, the message says the list was published
/// under both tags and names the platform and its image's digest; stdout
/// and the metadata keep the list's digest (what skopeo reads under both
/// tags), with the message in `read_back_error`; no `read_back` event.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_image_of_the_list_not_served_fails_the_build_and_keeps_the_digest() {
    let lab = require_lab!();
    let proxy = FaultyProxy::failing_read_back(lab.registry(), ReadBackFault::ChildMissing);
    let (repository, image) = names(lab, "read-back-missing", &proxy);
    let project = project(&image);

    let run = build(&project, "json", &["1.0.0", "stable"]);

    assert_eq!(run.code, 1, "{run:?}");
    let arm64 = pushed_digests(&run)[1].clone();
    let result = run.result_event();
    let digest = result["digest"].as_str().unwrap().to_owned();
    assert_eq!(run.stdout.trim(), format!("{image}@{digest}"));
    let expected = format!(
        "the list {digest} of {image} was published under 1.0.0, stable (the tags have moved); \
         the registry no longer serves {arm64}, the linux/arm64 image of the list (it answers 404 Not Found)"
    );
    assert_eq!(result["error"]["message"], expected.as_str(), "{result}");
    assert!(run.events_named("read_back").is_empty(), "{run:?}");
    for tag in ["1.0.0", "stable"] {
        assert_eq!(sha256(&skopeo_raw(&format!("{repository}:{tag}"))), digest);
    }
    let metadata = metadata_of(&project);
    assert_eq!(metadata["digest"], digest.as_str(), "{metadata}");
    assert_eq!(metadata["read_back_error"], expected.as_str(), "{metadata}");
}

/// A Ctrl-C while the list is read back (the proxy holds its read): the
/// publish is over, so the stop is accepted rather than held off (no
/// "finishing the publish first"); the build gets its 5 s of grace, then
/// ends with exit 130 saying that the list was published (not "nothing
/// was published", nor that some tags may point at the new list); the
/// metadata file, written as soon as the tags were pushed, has the list's
/// digest, which skopeo reads under the tag.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_ctrl_c_during_the_read_back_is_not_held_off() {
    let lab = require_lab!();
    let proxy = FaultyProxy::failing_read_back(lab.registry(), ReadBackFault::Hold);
    let (repository, image) = names(lab, "read-back-interrupted", &proxy);
    let project = project(&image);
    let home = tempfile::tempdir().unwrap();
    let metadata = project.path().join("metadata.json");
    let mut child = mab_command(
        home.path(),
        project.path(),
        &[
            "build",
            "--progress",
            "json",
            "--metadata-file",
            metadata.to_str().unwrap(),
            "--tag",
            "1.0.0",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = read_until(&mut stderr, r#""event":"published""#);
    assert!(
        seen.contains(r#""event":"published""#),
        "published:\n{seen}"
    );
    // The tags are pushed; the read back now waits for the held list.
    std::thread::sleep(Duration::from_millis(500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let interrupted = Instant::now();
    stderr.read_to_string(&mut seen).unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let code = child.wait().unwrap().code().unwrap_or(-1);
    let waited = interrupted.elapsed();
    let run = Run {
        code,
        stdout,
        stderr: seen,
    };

    assert_eq!(run.code, 130, "{run:?}");
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(15)).contains(&waited),
        "the grace of 5 s, not the held read's 30 s: {waited:?}"
    );
    for warning in run.events_named("warning") {
        assert!(
            !warning["message"]
                .as_str()
                .unwrap()
                .contains("finishing the publish first"),
            "{warning}"
        );
    }
    let message = run.result_event()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        message,
        "interrupted after the list was published under every tag; reading it back (or removing the staging tags) did not finish",
        "{run:?}"
    );
    let digest = run.events_named("published")[0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sha256(&skopeo_raw(&format!("{repository}:1.0.0"))), digest);
    let written = metadata_of(&project);
    assert_eq!(written["digest"], digest.as_str(), "{written}");
}

/// The first read of `stable` after the publish finds it pointing at
/// another digest (the proxy answers its `HEAD` so, as a cache serving a
/// stale tag would): mab reads it again after a short wait and finds the
/// list, so the build succeeds (exit 0, a `read_back` event), with no
/// error; the proxy saw the tags read with `HEAD`, `stable` twice.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_tag_read_stale_once_is_read_again() {
    let lab = require_lab!();
    let proxy = FaultyProxy::failing_read_back(lab.registry(), ReadBackFault::StaleTag("stable"));
    let (_, image) = names(lab, "read-back-stale", &proxy);
    let project = project(&image);

    let run = build(&project, "json", &["1.0.0", "stable"]);

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.events_named("read_back").len(), 1, "{run:?}");
    let path = image.split_once('/').unwrap().1;
    let tag_reads: Vec<String> = proxy
        .reads_after_the_list()
        .into_iter()
        .filter(|read| {
            !read.contains("/manifests/sha256:") && !read.contains("/manifests/mab-staging-")
        })
        .collect();
    assert_eq!(
        tag_reads,
        [
            format!("HEAD /v2/{path}/manifests/1.0.0 HTTP/1.1"),
            format!("HEAD /v2/{path}/manifests/stable HTTP/1.1"),
            format!("HEAD /v2/{path}/manifests/stable HTTP/1.1"),
        ],
        "{run:?}"
    );
    assert!(metadata_of(&project).get("read_back_error").is_none());
}
