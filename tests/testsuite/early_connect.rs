//! `mab build` connects to the runners while it digests its inputs and
//! asks the registry (docs/runners.md, "One connection per host"): a
//! mistake in the flags or the environment contacts no runner, a build
//! that stops before its plan tells nothing about the runners, and the
//! runners' retries are told once the checks passed.

use crate::support::{free_port, mab, mab_with_env, require_lab, ssh_lock, Home, Project};

/// A runner entry on a host that refuses connections (nothing listens on
/// port 1): mab retries it, then finds it unreachable.
fn refusing_runner(name: &str, platform: &str) -> String {
    format!(
        "[[runner]]\nname = \"{name}\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"{platform}\"]\n\n"
    )
}

/// A project building `platforms` of `image` with `runners` as its
/// runners file.
fn project(image: &str, platforms: &str, runners: &str) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "early\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{image}\"\nplatforms = [{platforms}]\n"),
        )
        .file("runners.toml", runners);
    project
}

/// Whether a line of stderr speaks of a runner of the test (by name) or
/// its host: a retry, an unreachable runner, a move.
fn about_runners(line: &str) -> bool {
    [
        "runner `",
        "`gone`",
        "127.0.0.9",
        "SSH",
        "sshd",
        "unreachable",
    ]
    .iter()
    .any(|word| line.contains(word))
}

/// A variable set (`Some`) or removed (`None`) for one run of mab.
type Variable<'a> = (&'a str, Option<&'a str>);

/// A bad `--network`, or a malformed `SOURCE_DATE_EPOCH`, stops the build
/// at once (exit 2, the flag's or the variable's message and a hint)
/// before any runner is contacted: neither lab host's sshd logs a login,
/// and nothing about the runners (one of them refusing) is told.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_usage_error_found_before_the_plan_contacts_no_runner() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let runners = format!(
        "[[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{}\"\n\n\
         [[runner]]\nname = \"power\"\nhost = \"runner-b\"\nplatforms = [\"linux/ppc64le\"]\nengine = \"unix://{}\"\n\n{}",
        lab.get("RUNNER_A_ENGINE_SOCKET"),
        lab.get("RUNNER_B_ENGINE_SOCKET"),
        refusing_runner("gone", "linux/arm64"),
    );
    let project = project(
        &lab.repository("early-usage"),
        "\"linux/arm64\", \"linux/ppc64le\"",
        &runners,
    );
    let (runner_a, runner_b) = (lab.host("runner-a"), lab.host("runner-b"));
    let _ssh = ssh_lock();
    // (case, arguments, variables, the message)
    let cases: [(&str, &[&str], &[Variable], &str); 2] = [
        (
            "--network",
            &["build", "--tag", "t", "--network", "bridge"],
            &[],
            "error: --network `bridge` is not a network mode",
        ),
        (
            "SOURCE_DATE_EPOCH",
            &["build", "--tag", "t"],
            &[("SOURCE_DATE_EPOCH", Some("yesterday"))],
            "error: SOURCE_DATE_EPOCH is `yesterday`, not a whole number of seconds",
        ),
    ];
    for (case, arguments, variables, message) in cases {
        let before = (runner_a.logins(), runner_b.logins());
        let run = mab_with_env(home.path(), project.path(), arguments, variables);
        let after = (runner_a.logins(), runner_b.logins());
        assert_eq!(run.code, 2, "{case}: {run:?}");
        assert!(run.stderr.contains(message), "{case}: {run:?}");
        assert!(run.stderr.contains("\nhint: "), "{case}: {run:?}");
        assert!(run.stdout.is_empty(), "{case}: {run:?}");
        assert_eq!(after, before, "{case}: a runner was logged into: {run:?}");
        assert!(
            !run.stderr.lines().any(about_runners),
            "{case}: speaks of the runners: {run:?}"
        );
    }
}

/// The only runner refuses connections and the registry refuses them too:
/// the build stops with the registry's error (exit 1), told as soon as
/// the registry is given up, and nothing about the runner (its retries,
/// made meanwhile) is told.
#[test]
fn a_registry_failure_before_the_plan_tells_nothing_about_the_runners() {
    let image = format!("127.0.0.1:{}/tests/early-registry", free_port());
    let project = project(
        &image,
        "\"linux/amd64\"",
        &refusing_runner("gone", "linux/amd64"),
    );
    let home = tempfile::tempdir().unwrap();
    let run = mab(home.path(), project.path(), &["build", "--tag", "t"]);
    assert_eq!(run.code, 1, "{run:?}");
    let registry = image.split('/').next().unwrap();
    assert!(
        run.stderr
            .contains(&format!("error: cannot reach the registry {registry}: ")),
        "{run:?}"
    );
    assert!(run.stderr.contains("nothing was built"), "{run:?}");
    // The registry's own retries are told; the runner's are not.
    assert!(
        run.stderr.contains(&format!(
            "warning: {registry}: GET /v2/ failed (try 1 of 3)"
        )),
        "{run:?}"
    );
    let told: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| about_runners(line))
        .collect();
    assert!(told.is_empty(), "speaks of the runners: {told:?}\n{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

/// The runners' retries, held while the inputs are digested and the
/// registry is asked, are told once those checks passed: after the
/// warnings of the checks, once each. A runner that refuses connections
/// is retried (tries 1 and 2 told, before the plan) and passed over; the
/// build goes on the local runner and publishes under the computed tag.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn held_runner_retries_are_told_once_the_checks_passed() {
    let lab = require_lab!();
    let runners = format!(
        "[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nengine = \"{}\"\n\n{}",
        lab.get("LOCAL_ENGINE"),
        refusing_runner("gone", "linux/amd64"),
    );
    let repository = lab.repository("early-held");
    let project = project(&repository, "\"linux/amd64\"", &runners);
    let home = Home::new(lab);
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with(&format!("{repository}@sha256:")),
        "{run:?}"
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    let position = |needle: &str| {
        let found: Vec<usize> = (0..lines.len())
            .filter(|index| lines[*index].contains(needle))
            .collect();
        assert_eq!(found.len(), 1, "`{needle}` told once: {run:?}");
        found[0]
    };
    // A check's warning (the context is outside git: the tags), then the
    // retries, then the plan.
    let checked = position("the context is not in a git repository");
    let first = position("warning: sshd of runner `gone`: SSH connection failed (try 1 of 3)");
    let second = position("warning: sshd of runner `gone`: SSH connection failed (try 2 of 3)");
    let planned = position("linux/amd64 -> here: ");
    assert!(
        checked < first && first < second && second < planned,
        "{run:?}"
    );
    assert!(
        !lines.iter().any(|line| line.starts_with("error")),
        "{run:?}"
    );
}
