//! Runners whose engine is Podman's API service: the lab's Podman host
//! (`runner-podman`, tests/lab/README.md).

use crate::support::{
    podman_on, podman_runner, require_lab, runners_check_json, ssh_lock, Home, Project,
    PODMAN_RUNNER,
};

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn check_reaches_the_podman_host_when_its_engine_is_given() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let project = Project::new();
    let socket = format!("unix://{}", lab.get("PODMAN_SOCKET"));
    project.file("runners.toml", &podman_runner(lab, Some(&socket)));
    let host = lab.host(lab.get("PODMAN_HOST"));

    let _ssh = ssh_lock();
    let logins = host.logins();
    let run = runners_check_json(home.path(), project.path());
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let runners = json["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 1, "{json}");
    let runner = &runners[0];
    assert_eq!(runner["name"], PODMAN_RUNNER, "{runner}");
    assert_eq!(runner["ok"], true, "{runner}");
    assert_eq!(runner["arch"], "amd64", "{runner}");
    assert_eq!(runner["api_version"], "1.41", "{runner}");
    assert_eq!(
        runner["platforms"],
        serde_json::json!({"linux/ppc64le": "emulated", "linux/amd64": "native"}),
        "{runner}"
    );
    // mab logged in to that host's sshd, and the engine it met there is the
    // Podman service that Podman's own client reaches in the host.
    assert!(host.logins() > logins, "no login in {:?}", host.sshd_log);
    let version = podman_on(lab, &["version", "--format", "{{.Server.Version}}"]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        runner["engine_version"],
        String::from_utf8_lossy(&version.stdout).trim(),
        "{runner}"
    );
}
