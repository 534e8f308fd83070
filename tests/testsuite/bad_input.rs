//! Every bad input gets one clear message (file:line:col or the host, and
//! a hint) and the exit code PRODUCT.md gives it, before anything is built.
//! The messages are snapshots, so wording is reviewed like code.

use crate::support::{mab, Project, Run};

const DOCKERFILE: &str = "FROM scratch\nCOPY Dockerfile /\n";

fn project(manifest: &str) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", DOCKERFILE)
        .file("mab.toml", manifest);
    project
}

const GOOD_MANIFEST: &str =
    "[image]\nname = \"127.0.0.1:5000/tests/bad-input\"\nplatforms = [\"linux/amd64\"]\n";

/// Runs `mab ARGS` in the project with an empty home; returns the run with
/// the project's path replaced by `[PROJECT]`.
fn run(project: &Project, arguments: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut run = mab(home.path(), project.path(), arguments);
    let path = project.path().to_str().unwrap();
    run.stderr = run.stderr.replace(path, "[PROJECT]");
    run
}

/// The message, with warnings (which name temporary paths) kept.
fn check(name: &str, run: &Run, code: i32) {
    assert_eq!(run.code, code, "{name}: {run:?}");
    assert!(run.stdout.is_empty(), "{name}: nothing on stdout: {run:?}");
    assert!(!run.stderr.contains("panicked"), "{name}: {run:?}");
    assert!(run.stderr.contains("hint: "), "{name}: a hint: {run:?}");
    insta::assert_snapshot!(name, run.stderr.trim_end());
}

#[test]
fn malformed_mab_toml() {
    let project = project("[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"\n");
    let run = run(&project, &["build"]);
    assert!(run.stderr.contains("[PROJECT]/mab.toml:3:"), "{run:?}");
    check("malformed_mab_toml", &run, 2);
}

#[test]
fn unknown_platform_in_mab_toml() {
    let project = project(
        "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\", \"linux/arm46\"]\n",
    );
    let run = run(&project, &["build"]);
    assert!(run.stderr.contains("[PROJECT]/mab.toml:3:29"), "{run:?}");
    check("unknown_platform_in_mab_toml", &run, 2);
}

#[test]
fn unknown_platform_flag() {
    let project = project(GOOD_MANIFEST);
    check(
        "unknown_platform_flag",
        &run(
            &project,
            &["build", "--platform", "linux/amd64,linux/sparc"],
        ),
        2,
    );
}

#[test]
fn missing_dockerfile() {
    let project = Project::new();
    project.file("mab.toml", GOOD_MANIFEST);
    check(
        "missing_dockerfile",
        &run(&project, &["build", "--no-push"]),
        2,
    );
}

#[test]
fn no_manifest() {
    let project = Project::new();
    check("no_manifest", &run(&project, &["build"]), 2);
}

#[test]
fn malformed_runners_toml() {
    let project = project(GOOD_MANIFEST);
    project.file("runners.toml", "[[runner]]\nname = \"a\"\nhost = local\n");
    let run = run(&project, &["build"]);
    assert!(run.stderr.contains("[PROJECT]/runners.toml:3:"), "{run:?}");
    check("malformed_runners_toml", &run, 2);
}

#[test]
fn missing_runners_file() {
    let project = project(GOOD_MANIFEST);
    check(
        "missing_runners_file",
        &run(&project, &["build", "--runners", "nowhere.toml"]),
        2,
    );
}

#[test]
fn no_runner_for_a_platform() {
    let project = project(
        "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\", \"linux/s390x\"]\n",
    );
    project.file(
        "runners.toml",
        "[[runner]]\nname = \"arm\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"linux/arm64\"]\n\n\
         [[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n",
    );
    check("no_runner_for_a_platform", &run(&project, &["build"]), 2);
}

#[test]
fn unreachable_host() {
    let project = project("[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/arm64\"]\n");
    project.file(
        "runners.toml",
        "[[runner]]\nname = \"arm\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"linux/arm64\"]\n",
    );
    let run = run(&project, &["build"]);
    assert!(
        run.stderr.contains("127.0.0.9:1"),
        "names the host: {run:?}"
    );
    check("unreachable_host", &run, 1);
}

#[test]
fn bad_build_arg_and_tag() {
    let project = project(GOOD_MANIFEST);
    check(
        "bad_build_arg",
        &run(&project, &["build", "--build-arg", "NOVALUE"]),
        2,
    );
    check(
        "bad_tag",
        &run(&project, &["build", "--tag", "team/app:1.0"]),
        2,
    );
}
