//! Host keys: an unknown or changed key is refused with a message that says
//! how to fix it, no login happens, and known_hosts is left as it was.

use crate::support::{mab, require_lab, runner_a_for_arm64, ssh_lock, Home, Lab, Project, Run};

/// Builds for linux/arm64 on runner-a with `known_hosts` as the home's
/// known_hosts; checks the refusal left no trace, and returns the run.
fn build_with_known_hosts(lab: &Lab, test: &str, known_hosts: &str) -> Run {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY Dockerfile /\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{}\"\nplatforms = [\"linux/arm64\"]\n",
                lab.repository(test)
            ),
        )
        .file("runners.toml", &runner_a_for_arm64(lab));
    let home = Home::new(lab);
    home.write_known_hosts(known_hosts);
    let _ssh = ssh_lock();
    let before = lab.host("runner-a").logins();
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("127.0.0.2:2222"),
        "names the host: {run:?}"
    );
    assert!(run.stderr.contains("hint: "), "{run:?}");
    assert_eq!(lab.host("runner-a").logins(), before, "no login happened");
    let after = std::fs::read_to_string(home.path().join(".ssh/known_hosts")).unwrap();
    assert_eq!(after, known_hosts, "known_hosts is untouched");
    run
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_unknown_host_key_is_refused() {
    let lab = require_lab!();
    let run = build_with_known_hosts(lab, "unknown-key", "");
    assert!(run.stderr.contains("not known"), "{run:?}");
    assert!(
        run.stderr.contains("SHA256:"),
        "the fingerprint is shown: {run:?}"
    );
    assert!(
        run.stderr.contains("ssh-keyscan -p 2222 127.0.0.2"),
        "{run:?}"
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_changed_host_key_is_refused() {
    let lab = require_lab!();
    // runner-b's key recorded for runner-a: to mab, runner-a's key changed.
    let wrong = lab
        .host("runner-b")
        .known_hosts_line()
        .replace("[127.0.0.3]", "[127.0.0.2]");
    let run = build_with_known_hosts(lab, "changed-key", &wrong);
    assert!(run.stderr.contains("CHANGED"), "{run:?}");
    assert!(
        run.stderr.contains("known_hosts line 1"),
        "names the file and line: {run:?}"
    );
    assert!(
        run.stderr.contains("ssh-keygen") && run.stderr.contains("-R '[127.0.0.2]:2222'"),
        "{run:?}"
    );
}
