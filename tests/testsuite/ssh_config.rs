//! `~/.ssh/config` as users already have it: `Include`, `Host` patterns with
//! wildcards and negation, `StrictHostKeyChecking accept-new` learning a new
//! key (and only a new one).

use crate::support::{mab, require_lab, runners_check_json, ssh_lock, Home, Project};

/// A runners file with runner-b under the alias `build-b`.
fn runners_on_runner_b(socket: &str) -> Project {
    let project = Project::new();
    project.file(
        "runners.toml",
        &format!("[[runner]]\nname = \"power\"\nhost = \"build-b\"\nplatforms = [\"linux/ppc64le\"]\nengine = \"unix://{socket}\"\n"),
    );
    project
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn include_patterns_and_accept_new() {
    let lab = require_lab!();
    let runner_b = lab.host("runner-b");
    let home = Home::new(lab);
    let ssh = home.path().join(".ssh");
    // The alias comes from an included file; User and IdentityFile from
    // pattern blocks, one of them excluding this host by negation.
    std::fs::create_dir_all(ssh.join("config.d")).unwrap();
    std::fs::write(
        ssh.join("config"),
        format!(
            "Include config.d/*.conf\n\n\
             Host build-* !build-x\n    User root\n    IdentityFile {key}\n    StrictHostKeyChecking accept-new\n\n\
             Host *\n    User nobody\n    StrictHostKeyChecking yes\n",
            key = ssh.join("id_ed25519").display()
        ),
    )
    .unwrap();
    std::fs::write(
        ssh.join("config.d/lab.conf"),
        format!(
            "Host build-b\n    HostName {}\n    Port {}\n",
            runner_b.address, runner_b.port
        ),
    )
    .unwrap();
    home.write_known_hosts("");
    let project = runners_on_runner_b(lab.get("RUNNER_B_ENGINE_SOCKET"));

    let _ssh = ssh_lock();
    let run = runners_check_json(home.path(), project.path());
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    assert_eq!(json["runners"][0]["ok"], true, "{json}");
    assert_eq!(
        json["runners"][0]["platforms"]["linux/ppc64le"], "emulated",
        "{json}"
    );
    let learnt = std::fs::read_to_string(ssh.join("known_hosts")).unwrap();
    assert_eq!(
        learnt.trim(),
        runner_b.known_hosts_line().trim(),
        "accept-new recorded the key"
    );

    // A changed key is refused even with accept-new, and not replaced.
    let wrong = lab
        .host("runner-a")
        .known_hosts_line()
        .replace("[127.0.0.2]", &format!("[{}]", runner_b.address));
    home.write_known_hosts(&wrong);
    let refused = runners_check_json(home.path(), project.path());
    assert_eq!(refused.code, 1, "{refused:?}");
    let json = refused.json();
    assert_eq!(json["runners"][0]["error_kind"], "host_key", "{json}");
    assert_eq!(
        std::fs::read_to_string(ssh.join("known_hosts")).unwrap(),
        wrong
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn without_accept_new_an_unknown_key_is_not_learnt() {
    let lab = require_lab!();
    let runner_b = lab.host("runner-b");
    let home = Home::new(lab);
    let ssh = home.path().join(".ssh");
    std::fs::write(
        ssh.join("config"),
        format!(
            "Host build-b\n    HostName {}\n    Port {}\n    User root\n    IdentityFile {}\n",
            runner_b.address,
            runner_b.port,
            ssh.join("id_ed25519").display()
        ),
    )
    .unwrap();
    home.write_known_hosts("");
    let project = runners_on_runner_b(lab.get("RUNNER_B_ENGINE_SOCKET"));
    let _ssh = ssh_lock();
    let run = mab(
        home.path(),
        project.path(),
        &["runners", "check", "--runners", "runners.toml"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is not known"), "{run:?}");
    assert!(
        run.stderr.contains("hint: verify the fingerprint"),
        "{run:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ssh.join("known_hosts")).unwrap(),
        ""
    );
}
