//! `mab build` end to end on the lab: two SSH runner hosts and the local
//! engine, the registry on loopback, QEMU for the foreign platforms. Results
//! are checked with skopeo, the docker CLI and the sshd logs, not with mab.

use crate::support::{
    build_with_metadata, config_platform_fields, docker_on, mab, require_lab, sha256,
    skopeo_config, skopeo_raw, ssh_lock, three_runners, Home, Lab, Project,
};

/// A multi-stage `FROM scratch` project whose image prints the platform it
/// was built for; `extra_run` is added to the build stage.
fn greeter(lab: &Lab, repository: &str, extra_run: &str) -> Project {
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64", "arm64", "ppc64le"])
        .file(
            "Dockerfile",
            &format!(
                "FROM scratch AS build\n\
                 ARG TARGETPLATFORM\n\
                 ARG TARGETARCH\n\
                 ARG GREETING\n\
                 COPY busybox/${{TARGETARCH}} /bin/busybox\n\
                 RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
                 RUN echo \"$GREETING $TARGETPLATFORM $TARGETARCH\" > /platform\n\
                 {extra_run}\n\
                 FROM scratch AS runtime\n\
                 COPY --from=build /bin/busybox /bin/busybox\n\
                 COPY --from=build /platform /platform\n\
                 ENTRYPOINT [\"/bin/busybox\", \"cat\", \"/platform\"]\n"
            ),
        )
        .file(".dockerignore", "*.tmp\n")
        .file("scratch.tmp", "not sent\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\", \"linux/ppc64le\"]\ntarget = \"runtime\"\n\n[image.args]\nGREETING = \"hello\"\n"
            ),
        )
        .file(
            "runners.toml",
            &three_runners(lab),
        );
    project
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn three_platforms_over_two_ssh_runners_and_the_local_engine() {
    let lab = require_lab!();
    let repository = lab.repository("e2e");
    let project = greeter(lab, &repository, "");
    let commit = project.commit_and_tag(&["v2.4.1"]);
    let home = Home::new(lab);
    let (runner_a, runner_b) = (lab.host("runner-a"), lab.host("runner-b"));

    let _ssh = ssh_lock();
    let logins_before = (runner_a.logins(), runner_b.logins());
    let (run, metadata) =
        build_with_metadata(home.path(), project.path(), &["--build-arg", "GREETING=hi"]);
    let logins_after = (runner_a.logins(), runner_b.logins());
    assert_eq!(
        (
            logins_after.0 - logins_before.0,
            logins_after.1 - logins_before.1
        ),
        (1, 1),
        "the build opens exactly one SSH connection per runner"
    );

    // The list, read back with skopeo.
    let short_commit = &commit[..8];
    let list_bytes = skopeo_raw(&format!("{repository}:2.4.1"));
    let list_digest = sha256(&list_bytes);
    assert_eq!(run.stdout.trim(), format!("{repository}@{list_digest}"));
    for tag in ["2.4.1", "latest", short_commit] {
        assert_eq!(
            sha256(&skopeo_raw(&format!("{repository}:{tag}"))),
            list_digest,
            "tag {tag} points at the list"
        );
    }
    let list: serde_json::Value = serde_json::from_slice(&list_bytes).unwrap();
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let entries = list["manifests"].as_array().unwrap();
    let platforms: Vec<String> = entries
        .iter()
        .map(|entry| {
            format!(
                "{}/{}",
                entry["platform"]["os"].as_str().unwrap(),
                entry["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64", "linux/ppc64le"]);

    // Each child: its config's architecture, where it was built, and what it prints.
    assert_eq!(metadata["digest"], list_digest.as_str());
    assert_eq!(metadata["image"], repository.as_str());
    let mut tags: Vec<&str> = metadata["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag.as_str().unwrap())
        .collect();
    tags.sort();
    let mut expected_tags = vec!["2.4.1", "latest", short_commit];
    expected_tags.sort();
    assert_eq!(tags, expected_tags);
    let built_on = [
        ("linux/amd64", "here", "local", "amd64"),
        ("linux/arm64", "arm", "runner-a", "arm64"),
        ("linux/ppc64le", "power", "runner-b", "ppc64le"),
    ];
    for (entry, (platform, runner, engine, architecture)) in entries.iter().zip(built_on) {
        let digest = entry["digest"].as_str().unwrap();
        let child = format!("{repository}@{digest}");
        assert_eq!(sha256(&skopeo_raw(&child)), digest);
        let config = skopeo_config(&child);
        assert_eq!(config["architecture"], architecture, "{platform}");
        assert_eq!(config["os"], "linux");
        // The entry's platform is the config's own fields, nothing added or dropped.
        assert_eq!(
            entry["platform"],
            config_platform_fields(&config),
            "{platform}"
        );

        let recorded = metadata["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["platform"] == platform)
            .unwrap_or_else(|| panic!("{platform} in the metadata"));
        assert_eq!(recorded["digest"], digest);
        assert_eq!(recorded["runner"], runner);
        assert_eq!(recorded["emulated"], platform != "linux/amd64");
        assert!(recorded["seconds"].as_f64().unwrap() > 0.0);

        // The runner's own engine holds the image it pushed.
        let inspect = docker_on(
            engine,
            &[
                "image",
                "inspect",
                "--format",
                "{{json .RepoDigests}}",
                &format!("{repository}:mab-{}", platform.replace('/', "-")),
            ],
        );
        assert!(
            inspect.status.success(),
            "{engine}: {}",
            String::from_utf8_lossy(&inspect.stderr)
        );
        assert!(
            String::from_utf8_lossy(&inspect.stdout).contains(digest),
            "{platform} was built on {engine}"
        );

        // The image from the registry runs and says what it was built for.
        let output = docker_on(
            "local",
            &[
                "run",
                "--rm",
                "--pull",
                "always",
                "--platform",
                platform,
                &child,
            ],
        );
        assert!(
            output.status.success(),
            "{platform}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("hi {platform} {architecture}")
        );
    }
    assert!(
        run.stderr.contains("[linux/arm64 arm]"),
        "plain progress names platform and runner:\n{}",
        run.stderr
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_platform_failing_publishes_nothing_and_names_runner_and_platform() {
    let lab = require_lab!();
    let repository = lab.repository("fails");
    let home = Home::new(lab);
    let _ssh = ssh_lock();

    let good = greeter(lab, &repository, "");
    let first = mab(
        home.path(),
        good.path(),
        &["build", "--progress", "plain", "--tag", "stable"],
    );
    assert_eq!(first.code, 0, "{first:?}");
    let stable_before = sha256(&skopeo_raw(&format!("{repository}:stable")));

    let failing = greeter(
        lab,
        &repository,
        "RUN if [ \"$TARGETARCH\" = ppc64le ]; then echo 'no ppc64le support here' >&2; exit 3; fi",
    );
    let run = mab(
        home.path(),
        failing.path(),
        &["build", "--progress", "plain", "--tag", "stable"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "error: build failed for linux/ppc64le (runner power); nothing was published"
        ),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("no ppc64le support here"),
        "the failed build's log tail is shown: {run:?}"
    );
    // The failed step, where the Dockerfile has it (line 8, the stage's
    // fourth step).
    assert!(
        run.stderr.contains("/Dockerfile:8: [build 4/4] RUN if [ "),
        "the failed step is named with its file and line: {run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(
        sha256(&skopeo_raw(&format!("{repository}:stable"))),
        stable_before,
        "the existing tag is unchanged"
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn without_a_runners_file_the_local_engine_builds_everything() {
    let lab = require_lab!();
    let repository = lab.repository("implicit");
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64", "s390x"])
        .file(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY busybox/${TARGETARCH} /bin/busybox\nRUN [\"/bin/busybox\", \"true\"]\n",
        )
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/s390x\"]\n"),
        );
    let home = tempfile::tempdir().unwrap();
    let (run, metadata) = build_with_metadata(home.path(), project.path(), &[]);
    assert!(
        run.stderr
            .contains("linux/s390x -> local: emulated with QEMU (qemu-s390x)"),
        "{run:?}"
    );
    let emulated: Vec<(String, bool)> = metadata["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|platform| {
            (
                platform["platform"].as_str().unwrap().to_owned(),
                platform["emulated"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        emulated,
        [
            ("linux/amd64".to_owned(), false),
            ("linux/s390x".to_owned(), true)
        ]
    );
    let config = skopeo_config(&format!(
        "{repository}@{}",
        metadata["platforms"][1]["digest"].as_str().unwrap()
    ));
    assert_eq!(config["architecture"], "s390x");
}
