//! Registry credentials come from the home's `.docker/config.json`, reach
//! the runner engines for the push, and are never printed or written out.

use std::process::Command;

use crate::support::{mab, require_lab, ssh_lock, Home, Project};

const PASSWORD_BASE64: &str = "bWFiOm1hYi1zZWNyZXQ="; // mab:mab-secret

fn project(repository: &str, socket: &str) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nARG TARGETARCH\nCOPY Dockerfile /$TARGETARCH\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n"),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{socket}\"\n\n\
                 [[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n"
            ),
        );
    project
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn credentials_reach_the_engines_and_are_never_shown() {
    let lab = require_lab!();
    let repository = format!(
        "{}/{}",
        lab.get("AUTH_REGISTRY"),
        lab.repository("auth").split_once('/').unwrap().1
    );
    let project = project(&repository, lab.get("RUNNER_A_ENGINE_SOCKET"));
    let home = Home::new(lab);
    let _ssh = ssh_lock();

    // Without credentials the push is refused before anything is built.
    let refused = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain"],
    );
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("does not allow anonymous users to push"),
        "{refused:?}"
    );

    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    std::fs::write(
        home.path().join(".docker/config.json"),
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{PASSWORD_BASE64}\"}}}}}}",
            lab.get("AUTH_REGISTRY")
        ),
    )
    .unwrap();
    let metadata = project.path().join("metadata.json");
    let run = mab(
        home.path(),
        project.path(),
        &[
            "build",
            "--progress",
            "json",
            "--tag",
            "1.0",
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let written = std::fs::read_to_string(&metadata).unwrap();
    for secret in [lab.get("AUTH_PASSWORD"), PASSWORD_BASE64] {
        assert!(
            !run.stderr.contains(secret)
                && !run.stdout.contains(secret)
                && !written.contains(secret)
        );
    }

    let credentials = format!("{}:{}", lab.get("AUTH_USER"), lab.get("AUTH_PASSWORD"));
    let inspect = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            "--creds",
            &credentials,
        ])
        .arg(format!("docker://{repository}:1.0"))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 2);

    // A build whose base image is that private list pulls it with the same
    // credentials, on each runner; without them the pull is refused.
    let derived = Project::new();
    derived
        .file(
            "Dockerfile",
            &format!("FROM {repository}:1.0\nCOPY Dockerfile /derived\n"),
        )
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
                lab.repository("derived")
            ),
        );
    std::fs::copy(
        project.path().join("runners.toml"),
        derived.path().join("runners.toml"),
    )
    .unwrap();
    let pulled = mab(
        home.path(),
        derived.path(),
        &["build", "--no-push", "--progress", "plain"],
    );
    assert_eq!(pulled.code, 0, "{pulled:?}");
    for secret in [lab.get("AUTH_PASSWORD"), PASSWORD_BASE64] {
        assert!(!pulled.stderr.contains(secret));
    }
    std::fs::remove_file(home.path().join(".docker/config.json")).unwrap();
    let anonymous = mab(
        home.path(),
        derived.path(),
        &["build", "--no-push", "--progress", "plain"],
    );
    assert_eq!(anonymous.code, 1, "{anonymous:?}");
    assert!(
        anonymous.stderr.to_lowercase().contains("unauthorized")
            || anonymous.stderr.contains("401"),
        "{anonymous:?}"
    );
}
