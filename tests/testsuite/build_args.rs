//! `--build-arg` against the docker CLI: Debian's docker 20.10 (BuildKit)
//! and `mab build --no-push` build the same `FROM scratch` Dockerfile on the
//! lab's local engine with the same flags and environment, and the label
//! that records the argument's value must be the same in both images.

use crate::support::{docker_on, mab_with_env, require_lab, Lab, Project};

const DOCKERFILE: &str = "FROM scratch\nARG NAME=default\nLABEL name=$NAME\n";

/// The `name` label of `image` on the lab's local engine.
fn label(image: &str) -> String {
    let output = docker_on(
        "local",
        &[
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"name\"}}",
            image,
        ],
    );
    assert!(
        output.status.success(),
        "inspect {image}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

/// `DOCKER_BUILDKIT=1 docker build FLAGS -t IMAGE .` with `NAME` set to
/// `name` or unset.
fn docker_build(lab: &Lab, project: &Project, flags: &[&str], name: Option<&str>, image: &str) {
    let mut command = lab.docker_cli();
    command
        .current_dir(project.path())
        .args(["build", "--quiet"])
        .args(flags)
        .args(["-t", image, "."]);
    match name {
        Some(value) => command.env("NAME", value),
        None => command.env_remove("NAME"),
    };
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "docker build {flags:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One build of the same Dockerfile by mab and by the docker CLI.
struct Case {
    name: &'static str,
    /// `NAME` in `[image.args]`.
    manifest_value: Option<&'static str>,
    mab_flags: &'static [&'static str],
    /// What the docker CLI needs for the same build (mab.toml's value
    /// becomes a flag).
    docker_flags: &'static [&'static str],
    /// The variable `NAME` in the environment of both.
    variable: Option<&'static str>,
    /// The label both images must carry.
    expected: &'static str,
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn build_args_match_the_docker_cli() {
    let lab = require_lab!();
    let repository = lab.repository("build-args");
    let home = tempfile::tempdir().unwrap();
    let cases = [
        Case {
            name: "bare name, variable set (over mab.toml)",
            manifest_value: Some("from-toml"),
            mab_flags: &["--build-arg", "NAME"],
            docker_flags: &["--build-arg", "NAME"],
            variable: Some("from-env"),
            expected: "from-env",
        },
        Case {
            name: "bare name, variable unset: the Dockerfile's default",
            manifest_value: None,
            mab_flags: &["--build-arg", "NAME"],
            docker_flags: &["--build-arg", "NAME"],
            variable: None,
            expected: "default",
        },
        Case {
            name: "bare name, variable unset: mab.toml's value stays",
            manifest_value: Some("from-toml"),
            mab_flags: &["--build-arg", "NAME"],
            docker_flags: &["--build-arg", "NAME=from-toml"],
            variable: None,
            expected: "from-toml",
        },
        Case {
            name: "bare name, variable set but empty",
            manifest_value: Some("from-toml"),
            mab_flags: &["--build-arg", "NAME"],
            docker_flags: &["--build-arg", "NAME"],
            variable: Some(""),
            expected: "",
        },
        Case {
            name: "NAME= is an empty value, whatever the environment",
            manifest_value: None,
            mab_flags: &["--build-arg", "NAME="],
            docker_flags: &["--build-arg", "NAME="],
            variable: Some("from-env"),
            expected: "",
        },
        Case {
            name: "the last flag wins, a bare unset one too",
            manifest_value: None,
            mab_flags: &["--build-arg", "NAME=first", "--build-arg", "NAME"],
            docker_flags: &["--build-arg", "NAME=first", "--build-arg", "NAME"],
            variable: None,
            expected: "default",
        },
    ];
    for (index, case) in cases.iter().enumerate() {
        let project = Project::new();
        let args = case
            .manifest_value
            .map(|value| format!("\n[image.args]\nNAME = \"{value}\"\n"))
            .unwrap_or_default();
        project.file("Dockerfile", DOCKERFILE).file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n{args}"),
        );
        let mut arguments = vec!["build", "--no-push", "--progress", "plain"];
        arguments.extend_from_slice(case.mab_flags);
        let run = mab_with_env(
            home.path(),
            project.path(),
            &arguments,
            &[("NAME", case.variable)],
        );
        assert_eq!(run.code, 0, "{}: {run:?}", case.name);
        let by_mab = label(&format!("{repository}:mab-linux-amd64"));

        let docker_image = format!("{repository}:docker-{index}");
        docker_build(
            lab,
            &project,
            case.docker_flags,
            case.variable,
            &docker_image,
        );
        let by_docker = label(&docker_image);
        docker_on("local", &["image", "rm", &docker_image]);

        assert_eq!(by_docker, case.expected, "{}: docker's value", case.name);
        assert_eq!(by_mab, by_docker, "{}: mab's value is docker's", case.name);
    }
}
