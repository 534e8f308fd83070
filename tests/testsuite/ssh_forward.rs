//! `--ssh` on the lab's local engine and on runner-b over SSH: a `RUN
//! --mount=type=ssh` step lists the identities of the agent it is given
//! and has each sign, with a static client built here (`FROM scratch` has
//! no ssh-add): the coordinator's ssh-agent with `--ssh default` and with
//! `--ssh ID=SOCKET`, and an agent of mab's own with `--ssh ID=KEYFILE`.
//! All are read-only to the build: its request to remove every identity
//! is refused, and the coordinator's agent keeps its key.

use std::path::Path;
use std::process::{Command, Stdio};

use base64::prelude::{Engine, BASE64_STANDARD};

use crate::support::{keygen, mab_with_env, require_lab, ssh_lock, Home, Project};

/// Lists the identities of the agent at `$SSH_AUTH_SOCK` (request 11) as
/// `identity: BLOB COMMENT` lines (the public key blob in hex), asks it to
/// sign some data with each (request 13) and prints `sign answer: TYPE
/// ALGORITHM` (14 is a signature, with its algorithm's name), then asks it
/// to remove them all (request 19) and prints its answer's type (5 is a
/// failure).
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
static void put32(unsigned char *p, unsigned value) {
    p[0] = value >> 24; p[1] = value >> 16; p[2] = value >> 8; p[3] = value;
}
static unsigned char *exchange(int fd, const unsigned char *request, unsigned size) {
    unsigned char length[4];
    if (write(fd, request, size) != (ssize_t)size || whole(fd, length, 4)) exit(4);
    unsigned char *answer = malloc(be32(length) + 1);
    if (whole(fd, answer, be32(length))) exit(5);
    return answer;
}
static unsigned char *ask(int fd, unsigned char kind) {
    unsigned char request[5] = {0, 0, 0, 1, kind};
    return exchange(fd, request, 5);
}
static void sign(int fd, const unsigned char *blob, unsigned size) {
    static const char data[] = "data to sign";
    unsigned body = 1 + 4 + size + 4 + (sizeof data - 1) + 4;
    unsigned char *request = calloc(4 + body, 1), *p = request;
    put32(p, body); p += 4;
    *p++ = 13;
    put32(p, size); p += 4;
    memcpy(p, blob, size); p += size;
    put32(p, sizeof data - 1); p += 4;
    memcpy(p, data, sizeof data - 1);
    unsigned char *answer = exchange(fd, request, 4 + body);
    if (answer[0] == 14) {
        const unsigned char *signature = answer + 5;
        printf("sign answer: 14 %.*s\n", (int)be32(signature), signature + 4);
    } else {
        printf("sign answer: %d\n", answer[0]);
    }
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
        const unsigned char *key = answer + at + 4;
        printf("identity: ");
        for (unsigned byte = 0; byte < blob; byte++) printf("%02x", answer[at + 4 + byte]);
        at += 4 + blob;
        unsigned length = be32(answer + at);
        printf(" %.*s\n", (int)length, answer + at + 4);
        sign(fd, key, blob);
        at += 4 + length;
    }
    printf("remove-all answer: %d\n", ask(fd, 19)[0]);
    return 0;
}
"#;

/// The public key blob of the key file at `path`, in hex, from
/// `ssh-keygen -y`.
fn public_blob(path: &Path) -> String {
    let public = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(path)
        .output()
        .unwrap();
    assert!(public.status.success(), "{public:?}");
    let text = String::from_utf8(public.stdout).unwrap();
    let encoded = text.split_whitespace().nth(1).unwrap();
    let bytes = BASE64_STANDARD.decode(encoded).unwrap();
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
    keygen(&keys.path().join("in_agent"), &agent_comment, "");
    keygen(&keys.path().join("in_file"), "file-key", "");
    let agent = Agent::start(keys.path());
    agent.ssh_add(&[keys.path().join("in_agent").to_str().unwrap()]);

    // The nonce makes each step new to the engine's cache, so it runs.
    let dockerfile = |nanos: u128| {
        format!(
            "FROM scratch\nCOPY lister /lister\n\
             RUN --mount=type=ssh [\"/lister\", \"default {nanos}\"]\n\
             RUN --mount=type=ssh,id=mykey [\"/lister\", \"mykey {nanos}\"]\n\
             RUN --mount=type=ssh,id=sock [\"/lister\", \"sock {nanos}\"]\n"
        )
    };
    project.file("Dockerfile", &dockerfile(nanos)).file(
        "mab.toml",
        &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n"),
    );
    // The agent's key with its comment; the key file's key (mab's agent
    // keeps no comments); the agent's key again, through its socket.
    let agent_identity = format!(
        "{} {agent_comment}",
        public_blob(&keys.path().join("in_agent"))
    );
    let expected = [
        agent_identity.clone(),
        public_blob(&keys.path().join("in_file")),
        agent_identity,
    ];
    let key_flag = format!("mykey={}", keys.path().join("in_file").display());
    let socket_flag = format!("sock={}", agent.socket.display());
    let flags = [
        "--ssh",
        "default",
        "--ssh",
        &key_flag,
        "--ssh",
        &socket_flag,
    ];
    let check = |run: &crate::support::Run, place: &str| {
        assert_eq!(run.code, 0, "{place}: {run:?}");
        let identities: Vec<&str> = run
            .stderr
            .lines()
            .filter_map(|line| {
                line.split_once("identity: ")
                    .map(|(_, found)| found.trim_end())
            })
            .collect();
        assert_eq!(identities, expected, "{place}: {run:?}");
        // Each identity signs (answer 14) with its ed25519 key.
        let signatures = run.stderr.matches("sign answer: 14 ssh-ed25519").count();
        assert_eq!(signatures, 3, "{place}: every key signs: {run:?}");
        let refusals = run.stderr.matches("remove-all answer: 5").count();
        assert_eq!(
            refusals, 3,
            "{place}: the agents refuse to lose their keys: {run:?}"
        );
    };

    let home = tempfile::tempdir().unwrap();
    let mut arguments = vec!["build", "--no-push", "--progress", "plain"];
    arguments.extend(flags);
    let build = |home: &Path| {
        mab_with_env(
            home,
            project.path(),
            &arguments,
            &[("SSH_AUTH_SOCK", agent.socket.to_str())],
        )
    };
    check(&build(home.path()), "the local engine");

    // The same steps on runner-b, whose session is tunnelled over SSH; a
    // new nonce makes them run again.
    let nanos = nanos + 1;
    project
        .file(
            "Dockerfile",
            &dockerfile(nanos),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"b\"\nhost = \"runner-b\"\nplatforms = [\"linux/amd64\"]\nengine = \"unix://{}\"\n",
                lab.get("RUNNER_B_ENGINE_SOCKET")
            ),
        );
    let remote_home = Home::new(lab);
    let _ssh = ssh_lock();
    let remote = build(remote_home.path());
    check(&remote, "runner-b");
    assert!(
        remote.stderr.contains("linux/amd64 -> b: "),
        "built on runner-b: {remote:?}"
    );
    assert!(
        agent.ssh_add(&["-l"]).contains(&agent_comment),
        "the coordinator's agent keeps its key"
    );
    std::fs::remove_file(project.path().join("runners.toml")).unwrap();

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
