//! Host keys: an unknown or changed key is refused with a message that says
//! how to fix it, and nothing is built.

use crate::support::{mab, require_lab, ssh_lock, Home, Project};

fn project_on_runner_a(repository: &str, socket: &str) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY Dockerfile /\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/arm64\"]\n"),
        )
        .file(
            "runners.toml",
            &format!("[[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{socket}\"\n"),
        );
    project
}

#[test]
fn an_unknown_host_key_is_refused() {
    let lab = require_lab!();
    let project = project_on_runner_a(
        &lab.repository("unknown-key"),
        lab.get("RUNNER_A_ENGINE_SOCKET"),
    );
    let home = Home::new(lab);
    home.write_known_hosts("");
    let _ssh = ssh_lock();
    let before = lab.host("runner-a").logins();
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("127.0.0.2:2222"), "{run:?}");
    assert!(run.stderr.contains("not known"), "{run:?}");
    assert!(
        run.stderr.contains("SHA256:"),
        "the fingerprint is shown: {run:?}"
    );
    assert!(
        run.stderr.contains("hint: ") && run.stderr.contains("ssh-keyscan -p 2222 127.0.0.2"),
        "{run:?}"
    );
    assert_eq!(lab.host("runner-a").logins(), before, "no login happened");
    assert_eq!(
        std::fs::read_to_string(home.path().join(".ssh/known_hosts")).unwrap(),
        "",
        "the key was not learnt"
    );
}

#[test]
fn a_changed_host_key_is_refused() {
    let lab = require_lab!();
    let project = project_on_runner_a(
        &lab.repository("changed-key"),
        lab.get("RUNNER_A_ENGINE_SOCKET"),
    );
    let home = Home::new(lab);
    // runner-b's key recorded for runner-a: to mab, runner-a's key changed.
    let wrong = lab
        .host("runner-b")
        .known_hosts_line()
        .replace("[127.0.0.3]", "[127.0.0.2]");
    home.write_known_hosts(&wrong);
    let _ssh = ssh_lock();
    let before = lab.host("runner-a").logins();
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("127.0.0.2:2222"), "{run:?}");
    assert!(run.stderr.to_lowercase().contains("changed"), "{run:?}");
    assert!(
        run.stderr.contains("known_hosts"),
        "names the file: {run:?}"
    );
    assert!(
        run.stderr.contains("ssh-keygen") && run.stderr.contains("-R '[127.0.0.2]:2222'"),
        "{run:?}"
    );
    assert_eq!(lab.host("runner-a").logins(), before, "no login happened");
    assert_eq!(
        std::fs::read_to_string(home.path().join(".ssh/known_hosts")).unwrap(),
        wrong,
        "known_hosts untouched"
    );
}
