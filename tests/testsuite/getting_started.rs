//! docs/getting-started.md, run as a new user runs it: every command of its
//! `sh` blocks, in order, on the lab; then the published list is read back
//! with skopeo and run with the local engine.

use std::path::Path;
use std::process::Command;

use crate::support::{docker_on, list_architectures, require_lab, sha256, skopeo_raw, ssh_lock};

/// The ```sh blocks of a Markdown text, in order.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == "```sh" => current = Some(String::new()),
            Some(_) if line.trim_start().starts_with("```") => blocks.push(current.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The guide's first block installs mab and starts the lab, which the test
/// suite has done (`tests/run` starts the lab; the test runs the `mab` it
/// built): it is checked to be exactly that, and every later block runs.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn every_command_of_the_guide_runs() {
    let lab = require_lab!();
    assert_eq!(
        lab.get("REGISTRY"),
        "127.0.0.1:5000",
        "the guide's registry"
    );
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let guide = std::fs::read_to_string(top.join("docs/getting-started.md")).unwrap();
    let blocks = sh_blocks(&guide);
    assert_eq!(
        blocks[0],
        "cargo install --locked --path crates/mab\ntests/lab/up\n"
    );
    assert!(blocks.len() >= 4, "{blocks:?}");

    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mab = Path::new(env!("CARGO_BIN_EXE_mab"));
    let path = format!(
        "{}:{}",
        mab.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let script = format!("set -euxo pipefail\n{}", blocks[1..].concat());
    let _ssh = ssh_lock();
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", path)
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the guide failed:\n{stdout}\n{stderr}"
    );

    // The list under 1.0 holds the three platforms, and `mab build`
    // printed its digest.
    let list = skopeo_raw("127.0.0.1:5000/getting-started/hello:1.0");
    let digest = sha256(&list);
    assert!(
        stdout.contains(&format!("127.0.0.1:5000/getting-started/hello@{digest}")),
        "{stdout}"
    );
    assert_eq!(list_architectures(&list), ["amd64", "arm64", "ppc64le"]);
    // The runners the guide registered built them: this machine's engine
    // runs the amd64 image from the registry.
    let reference = format!("127.0.0.1:5000/getting-started/hello@{digest}");
    let run = docker_on("local", &["run", "--rm", "--network", "none", &reference]);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "hello from a container\n"
    );
    // `mab runners list` showed the three runners the guide added.
    for runner in ["here", "arm", "power"] {
        assert!(
            stdout
                .lines()
                .any(|line| line.starts_with(&format!("{runner} "))),
            "{runner}: {stdout}"
        );
    }
}
