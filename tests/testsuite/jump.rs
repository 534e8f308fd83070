//! A runner reachable only through a jump host (`ProxyJump`): the lab puts
//! it in a network namespace that only the jump host's namespace can reach.

use crate::support::{mab, require_lab, ssh_lock, Home, Project};

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_runner_behind_a_jump_host() {
    let lab = require_lab!();
    let (jump, hidden) = (lab.host("jump"), lab.host("runner-hidden"));
    let home = Home::new(lab);
    let ssh = home.path().join(".ssh");
    let key = ssh.join("id_ed25519");
    let mut config = std::fs::read_to_string(ssh.join("config")).unwrap();
    config.push_str(&format!(
        "Host jump\n    HostName {}\n    Port {}\n    User root\n    IdentityFile {key}\n\n\
         Host hidden\n    HostName {}\n    Port {}\n    User root\n    IdentityFile {key}\n    ProxyJump jump\n",
        jump.address,
        jump.port,
        hidden.address,
        hidden.port,
        key = key.display()
    ));
    std::fs::write(ssh.join("config"), config).unwrap();
    home.write_known_hosts(&format!(
        "{}{}",
        jump.known_hosts_line(),
        hidden.known_hosts_line()
    ));

    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nARG TARGETPLATFORM\nCOPY Dockerfile /$TARGETPLATFORM\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{}\"\nplatforms = [\"linux/amd64\"]\n", lab.repository("jump")),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"hidden\"\nhost = \"hidden\"\nplatforms = [\"linux/amd64\"]\nengine = \"unix://{}\"\n",
                lab.get("RUNNER_HIDDEN_ENGINE_SOCKET")
            ),
        );

    let _ssh = ssh_lock();
    let check = mab(
        home.path(),
        project.path(),
        &["runners", "check", "--format", "json"],
    );
    assert_eq!(check.code, 0, "{check:?}");
    let json = check.json();
    assert_eq!(
        json["runners"][0]["platforms"]["linux/amd64"], "native",
        "{json}"
    );

    // The build goes through the jump host: one login there and one on the
    // hidden host, the hidden host reached by a forward from the jump host.
    let forwards = |log: &str| log.matches("target 10.213.0.2 port 2222").count();
    let jump_log_before = std::fs::read_to_string(&jump.sshd_log).unwrap();
    let (jump_before, hidden_before) = (jump.logins(), hidden.logins());
    let build = mab(
        home.path(),
        project.path(),
        &["build", "--no-push", "--progress", "plain"],
    );
    assert_eq!(build.code, 0, "{build:?}");
    assert_eq!(
        (jump.logins() - jump_before, hidden.logins() - hidden_before),
        (1, 1),
        "{build:?}"
    );
    let jump_log_after = std::fs::read_to_string(&jump.sshd_log).unwrap();
    assert_eq!(
        forwards(&jump_log_after) - forwards(&jump_log_before),
        1,
        "one forward to the hidden host"
    );

    // Without the jump host, the hidden host cannot be reached at all.
    let direct = std::fs::read_to_string(ssh.join("config"))
        .unwrap()
        .replace("    ProxyJump jump\n", "");
    std::fs::write(ssh.join("config"), direct).unwrap();
    let unreachable = mab(
        home.path(),
        project.path(),
        &["runners", "check", "--format", "json"],
    );
    assert_eq!(unreachable.code, 1, "{unreachable:?}");
    let json = unreachable.json();
    assert_eq!(json["runners"][0]["ok"], false, "{json}");
}
