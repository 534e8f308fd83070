//! Staging tags on the lab: one per platform in the repository, however
//! many builds ran, on a registry that does not delete tags (the lab's
//! Docker registry answers 405). Read back with skopeo and the engines'
//! docker CLI, not with mab.

use crate::support::{
    docker_on, mab, require_lab, sha256, skopeo_raw, skopeo_tags, ssh_lock, Home, Lab, Project,
};

/// A two-platform `FROM scratch` project (linux/amd64 on the local engine,
/// linux/arm64 on runner-a) whose image holds `content.txt`; no `RUN`, so
/// each build is one cached base and one small copy.
fn project(lab: &Lab, repository: &str) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .two_platforms(lab, repository);
    project
}

/// The tags `engine` holds for `repository`, sorted (earlier builds'
/// images that lost their name, listed as `<none>`, left out).
fn engine_tags(engine: &str, repository: &str) -> Vec<String> {
    let listed = docker_on(engine, &["image", "ls", "--format", "{{.Tag}}", repository]);
    assert!(
        listed.status.success(),
        "{engine}: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let mut tags: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|tag| *tag != "<none>")
        .map(str::to_owned)
        .collect();
    tags.sort();
    tags
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn ten_builds_leave_one_staging_tag_per_platform() {
    let lab = require_lab!();
    let repository = lab.repository("staging");
    let project = project(lab, &repository);
    let home = Home::new(lab);
    let _ssh = ssh_lock();

    let mut release_tags = Vec::new();
    for build in 0..10 {
        // New content each time: every build pushes new images, so each
        // overwrites the staging tags the build before it left.
        project.file("content.txt", &format!("build {build}\n"));
        let tag = format!("b{build}");
        let run = mab(
            home.path(),
            project.path(),
            &["build", "--progress", "plain", "--tag", &tag],
        );
        assert_eq!(run.code, 0, "build {build}: {run:?}");
        assert_eq!(
            run.stderr.matches("staging tags ").count(),
            1,
            "build {build} says once which staging tags remain: {run:?}"
        );
        assert!(
            run.stderr.contains(&format!(
                "staging tags mab-staging-linux-amd64, mab-staging-linux-arm64 remain in {repository}: \
                 the registry did not delete them"
            )),
            "build {build}: {run:?}"
        );
        release_tags.push(tag);
    }

    let mut expected = release_tags.clone();
    expected.extend([
        "mab-staging-linux-amd64".to_owned(),
        "mab-staging-linux-arm64".to_owned(),
    ]);
    expected.sort();
    assert_eq!(skopeo_tags(&repository), expected);

    // Each staging tag points at the last build's image of its platform,
    // the one its list holds; the first build's list still holds its own.
    let list_of = |tag: &str| -> serde_json::Value {
        serde_json::from_slice(&skopeo_raw(&format!("{repository}:{tag}"))).unwrap()
    };
    let last = list_of("b9");
    let first = list_of("b0");
    for (index, architecture) in ["amd64", "arm64"].iter().enumerate() {
        let child = last["manifests"][index]["digest"].as_str().unwrap();
        assert_eq!(
            last["manifests"][index]["platform"]["architecture"],
            *architecture
        );
        let staged = sha256(&skopeo_raw(&format!(
            "{repository}:mab-staging-linux-{architecture}"
        )));
        assert_eq!(staged, child, "linux/{architecture}");
        let earlier = first["manifests"][index]["digest"].as_str().unwrap();
        assert_ne!(earlier, child, "linux/{architecture}: the builds differ");
        assert_eq!(
            sha256(&skopeo_raw(&format!("{repository}@{earlier}"))),
            earlier,
            "the first build's image is still served by its digest"
        );
    }

    // Each engine keeps one name for the image: `mab-<platform>`, neither
    // a build's own name nor the staging tag.
    assert_eq!(engine_tags("local", &repository), ["mab-linux-amd64"]);
    assert_eq!(engine_tags("runner-a", &repository), ["mab-linux-arm64"]);
}
