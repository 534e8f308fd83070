//! Commands on a runner's host over its SSH connection (what a Podman
//! runner's context copy is kept with), against runner-a: `cat` gives back
//! several MiB written while its output is read, a command's exit status
//! and stderr come back, and a context copy synced there twice moves
//! little the second time.

use std::time::Duration;

use mab::ops::host::ssh_host;
use mab_engine::contextcopy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{require_lab, ssh_lock, Home, Project};

/// A session with runner-a, as `home`'s ssh config names it.
async fn runner_a(home: &Home) -> mab_ssh::Session {
    let destination = mab_ssh::Destination::resolve("runner-a", home.path()).unwrap();
    let recorder = mab_events::Recorder::default();
    let retries = mab_ssh::Retries {
        runner: "runner-a",
        reporter: &recorder,
    };
    mab_ssh::Session::connect(&destination, home.path(), retries)
        .await
        .unwrap()
}

#[tokio::test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
async fn commands_over_ssh_stream_both_ways() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let home = Home::new(lab);
    let host = ssh_host(runner_a(&home).await);
    assert_eq!(host.name(), "root@127.0.0.2:2222");

    // 8 MiB through `cat`, far more than a channel's window, written
    // while its output is read.
    let input: Vec<u8> = (0..8 * 1024 * 1024u32).map(|n| (n % 253) as u8).collect();
    let command = host.start("cat").await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(command);
    let write = async {
        writer.write_all(&input).await.unwrap();
        writer.shutdown().await.unwrap();
    };
    let mut output = Vec::new();
    let (_, read) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(write, reader.read_to_end(&mut output))
    })
    .await
    .expect("cat gave everything back within a minute");
    read.unwrap();
    assert!(output == input, "cat gave back {} bytes", output.len());
    let exit = reader.unsplit(writer).wait().await.unwrap();
    assert_eq!((exit.status, exit.stderr.as_str()), (Some(0), ""));

    // Exit status and stderr; unread stdout does not hold the wait up.
    let command = host
        .start("head -c 3000000 /dev/zero; echo 'no such thing' >&2; exit 7")
        .await
        .unwrap();
    let exit = command.wait().await.unwrap();
    assert_eq!(exit.status, Some(7));
    assert_eq!(exit.stderr, "no such thing\n");

    // A command that reads nothing: writing to it fails once it has
    // ended (as its output, read meanwhile, tells), rather than waiting.
    let command = host.start("exit 0").await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(command);
    let big = vec![0u8; 16 * 1024 * 1024];
    let mut output = Vec::new();
    let (written, _) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(writer.write_all(&big), reader.read_to_end(&mut output))
    })
    .await
    .expect("the write gave up");
    assert!(written.is_err(), "16 MiB went to a command that had ended");
    let command = reader.unsplit(writer);
    assert_eq!(command.wait().await.unwrap().status, Some(0));

    // The same without reading: the waiting write notices the end itself,
    // and what the command printed is still there to read.
    let mut command = host.start("echo bye; exit 0").await.unwrap();
    let written = tokio::time::timeout(Duration::from_secs(60), command.write_all(&big))
        .await
        .expect("the write gave up");
    assert!(written.is_err(), "16 MiB went to a command that had ended");
    let mut said = String::new();
    command.read_to_string(&mut said).await.unwrap();
    assert_eq!(said, "bye\n");
    assert_eq!(command.wait().await.unwrap().status, Some(0));
}

#[tokio::test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
#[expect(clippy::print_stdout, reason = "the figures measured")]
async fn a_context_copy_over_ssh_sends_only_changes() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    let home = Home::new(lab);
    let host = ssh_host(runner_a(&home).await);
    let project = Project::new();
    project.file("Dockerfile", "FROM scratch\nCOPY . /\n");
    project.file(".dockerignore", "ignored\n");
    project.file("ignored", "never sent");
    for number in 0..100 {
        project.file(
            &format!("src/file{number:03}"),
            &format!("{number}").repeat(4000),
        );
    }
    let context = mab_context::BuildContext::locate(project.path(), None).unwrap();
    let key = format!("test-{}-{:x}", std::process::id(), rand_suffix());
    let first = contextcopy::sync(&*host, &context, &key).await.unwrap();
    let second = contextcopy::sync(&*host, &context, &key).await.unwrap();
    project.file("src/file042", "changed");
    let third = contextcopy::sync(&*host, &context, &key).await.unwrap();
    println!(
        "over SSH, 100 files: first sync {} bytes, unchanged {} bytes, one file changed {} bytes",
        first.sent_bytes, second.sent_bytes, third.sent_bytes
    );
    assert_eq!((second.changed, third.changed), (0, 1));
    assert!(second.sent_bytes < 15_000, "{}", second.sent_bytes);

    // What the copy holds on the host, and its contents.
    let listing = format!(
        "cd '{}' && find . -type f | sort && cat src/file042",
        third.root
    );
    let mut command = host.start(&listing).await.unwrap();
    let mut text = String::new();
    command.read_to_string(&mut text).await.unwrap();
    assert!(command.wait().await.unwrap().success());
    assert!(
        text.starts_with("./.dockerignore\n./Dockerfile\n./src/file000\n"),
        "{text}"
    );
    assert!(!text.contains("./ignored"), "{text}");
    assert!(text.ends_with("./src/file099\nchanged"), "{text}");
    let root = third.root.trim_end_matches("/files");
    let cleanup = host.start(&format!("rm -rf '{root}'")).await.unwrap();
    assert!(cleanup.wait().await.unwrap().success());
}

/// Nanoseconds of the clock, to keep copies of runs apart.
fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
