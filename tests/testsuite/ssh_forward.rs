//! `--ssh` on the lab's local engine: a `RUN --mount=type=ssh` step lists
//! the identities of the agent it is given, with a static client built
//! here (`FROM scratch` has no ssh-add): the coordinator's ssh-agent with
//! `--ssh default`, and an agent of mab's own with `--ssh ID=KEYFILE`.
//! Both are read-only to the build: its request to remove every identity
//! is refused, and the coordinator's agent keeps its key.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{mab_with_env, require_lab, Project};

/// Lists the identities of the agent at `$SSH_AUTH_SOCK` (request 11) as
/// `identity: BLOB COMMENT` lines (the public key blob in hex), then asks it to remove them all (request 19)
/// and prints its answer's type (5 is a failure).
const LISTER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
static int whole(int fd, unsigned char *buffer, size_t size) {
    size_t done = 0;
    while (done < size) {
        ssize_t got = read(fd, buffer + done, size - done);
        if (got <= 0) return -1;
        done += got;
    }
    return 0;
}
static unsigned be32(const unsigned char *p) { return (p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
static unsigned char *ask(int fd, unsigned char kind) {
    unsigned char request[5] = {0, 0, 0, 1, kind}, length[4];
    if (write(fd, request, 5) != 5 || whole(fd, length, 4)) exit(4);
    unsigned char *answer = malloc(be32(length));
    if (whole(fd, answer, be32(length))) exit(5);
    return answer;
}
int main(void) {
    const char *path = getenv("SSH_AUTH_SOCK");
    if (!path) { puts("no SSH_AUTH_SOCK"); return 2; }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un address = {0};
    address.sun_family = AF_UNIX;
    strncpy(address.sun_path, path, sizeof address.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof address)) { perror("connect"); return 3; }
    unsigned char *answer = ask(fd, 11);
    if (answer[0] != 12) { printf("answer %d\n", answer[0]); return 6; }
    unsigned count = be32(answer + 1), at = 5;
    for (unsigned i = 0; i < count; i++) {
        unsigned blob = be32(answer + at);
        printf("identity: ");
        for (unsigned byte = 0; byte < blob; byte++) printf("%02x", answer[at + 4 + byte]);
        at += 4 + blob;
        unsigned length = be32(answer + at);
        printf(" %.*s\n", (int)length, answer + at + 4);
        at += 4 + length;
    }
    printf("remove-all answer: %d\n", ask(fd, 19)[0]);
    return 0;
}
"#;

/// A key made by ssh-keygen, without passphrase, with `comment`.
fn keygen(path: &Path, comment: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The public key blob of the key file at `path`, in hex, from
/// `ssh-keygen -y` (its base64 decoded by coreutils).
fn public_blob(path: &Path) -> String {
    let public = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(path)
        .output()
        .unwrap();
    assert!(public.status.success(), "{public:?}");
    let text = String::from_utf8(public.stdout).unwrap();
    let encoded = text.split_whitespace().nth(1).unwrap().to_owned();
    let mut decode = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    decode
        .stdin
        .take()
        .unwrap()
        .write_all(encoded.as_bytes())
        .unwrap();
    let bytes = decode.wait_with_output().unwrap().stdout;
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `ssh-agent -D` on a socket of the test's own, stopped when dropped.
struct Agent {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Agent {
    fn start(directory: &Path) -> Agent {
        let socket = directory.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Agent { child, socket }
    }

    /// `ssh-add ARGS` against this agent.
    fn ssh_add(&self, arguments: &[&str]) -> String {
        let output = Command::new("ssh-add")
            .args(arguments)
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .unwrap();
        assert!(output.status.success(), "ssh-add {arguments:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn run_steps_reach_the_forwarded_agents() {
    let lab = require_lab!();
    let repository = lab.repository("ssh-forward");
    let project = Project::new();
    project.file("lister.c", LISTER);
    let built = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(project.path().join("lister"))
        .arg(project.path().join("lister.c"))
        .output()
        .unwrap();
    assert!(built.status.success(), "gcc: {built:?}");

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let keys = tempfile::tempdir().unwrap();
    let agent_comment = format!("agent-key-{nanos:x}");
    keygen(&keys.path().join("in_agent"), &agent_comment);
    keygen(&keys.path().join("in_file"), "file-key");
    let agent = Agent::start(keys.path());
    agent.ssh_add(&[keys.path().join("in_agent").to_str().unwrap()]);

    // The nonce makes each step new to the engine's cache, so it runs.
    project
        .file(
            "Dockerfile",
            &format!(
                "FROM scratch\nCOPY lister /lister\n\
                 RUN --mount=type=ssh [\"/lister\", \"default {nanos}\"]\n\
                 RUN --mount=type=ssh,id=mykey [\"/lister\", \"mykey {nanos}\"]\n"
            ),
        )
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n"),
        );
    let home = tempfile::tempdir().unwrap();
    let key_flag = format!("mykey={}", keys.path().join("in_file").display());
    let run = mab_with_env(
        home.path(),
        project.path(),
        &[
            "build",
            "--no-push",
            "--progress",
            "plain",
            "--ssh",
            "default",
            "--ssh",
            &key_flag,
        ],
        &[("SSH_AUTH_SOCK", agent.socket.to_str())],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let identities: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|line| {
            line.split_once("identity: ")
                .map(|(_, found)| found.trim_end())
        })
        .collect();
    // The agent's key with its comment; the key file's key (mab's agent
    // keeps no comments).
    let expected = [
        format!(
            "{} {agent_comment}",
            public_blob(&keys.path().join("in_agent"))
        ),
        public_blob(&keys.path().join("in_file")),
    ];
    assert_eq!(identities, expected, "{run:?}");
    let refusals = run.stderr.matches("remove-all answer: 5").count();
    assert_eq!(
        refusals, 2,
        "both agents refuse to lose their keys: {run:?}"
    );
    assert!(
        agent.ssh_add(&["-l"]).contains(&agent_comment),
        "the coordinator's agent keeps its key"
    );

    // `--ssh default` with no agent: exit 2 before anything is built.
    let refused = mab_with_env(
        home.path(),
        project.path(),
        &["build", "--no-push", "--ssh", "default"],
        &[],
    );
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("SSH_AUTH_SOCK is not set"),
        "{refused:?}"
    );
}
