//! Helpers for the integration tests: the lab that `tests/lab/up` starts,
//! a home of the test's own for mab, projects in temporary directories,
//! running mab, and independent checks (skopeo, the docker CLI, sshd logs).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The lab's settings, read from `lab.env`.
pub struct Lab {
    values: HashMap<String, String>,
}

/// The lab that `tests/lab/up` started. A lab that is not up fails the
/// test: CI always runs the lab tests. Outside CI, `MAB_LAB=off` at build
/// time marks them ignored instead (`cfg(mab_lab_off)`, set by the build
/// script), so the harness lists each one by name as ignored.
pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let directory = std::env::var_os("MAB_LAB_DIR").unwrap_or_else(|| "/var/lib/mab-lab".into());
        let path = Path::new(&directory).join("lab.env");
        match fs::read_to_string(&path) {
            Ok(text) => Lab {
                values: text
                    .lines()
                    .filter_map(|line| line.split_once('='))
                    .map(|(key, value)| (key.to_owned(), value.to_owned()))
                    .collect(),
            },
            Err(error) => panic!(
                "the lab is not up ({} cannot be read: {error})\nhint: run tests/lab/up, or build the tests with MAB_LAB=off (outside CI) to mark the lab tests ignored",
                path.display()
            ),
        }
    })
}

/// `let lab = require_lab!();` at the top of a test that needs the lab
/// (marked `#[cfg_attr(mab_lab_off, ignore = "...")]`).
macro_rules! require_lab {
    () => {
        crate::support::lab()
    };
}
pub(crate) use require_lab;

/// A runner host of the lab.
pub struct Host {
    pub address: String,
    pub port: String,
    pub sshd_log: PathBuf,
    pub host_key: PathBuf,
}

impl Lab {
    pub fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .unwrap_or_else(|| panic!("lab.env has no {key}; run tests/lab/up again"))
    }

    pub fn registry(&self) -> &str {
        self.get("REGISTRY")
    }

    pub fn host(&self, name: &str) -> Host {
        let prefix = name.to_uppercase().replace('-', "_");
        let value = |suffix: &str| self.get(&format!("{prefix}_{suffix}")).to_owned();
        Host {
            address: value("ADDR"),
            port: value("PORT"),
            sshd_log: value("SSHD_LOG").into(),
            host_key: value("HOST_KEY").into(),
        }
    }

    /// Debian's docker CLI (20.10, with BuildKit) talking to the lab's local
    /// engine, the oracle for what `docker build` does; add the subcommand.
    pub fn docker_cli(&self) -> Command {
        let mut command = Command::new(self.get("DOCKER_CLI"));
        command
            .env("DOCKER_BUILDKIT", "1")
            .args(["-H", self.get("LOCAL_ENGINE")]);
        command
    }

    pub fn busybox(&self, architecture: &str) -> PathBuf {
        Path::new(self.get("BUSYBOX_DIR")).join(architecture)
    }

    /// A repository name no other test uses.
    pub fn repository(&self, test: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!(
            "{}/tests/{test}-{}-{nanos:x}",
            self.registry(),
            std::process::id()
        )
    }
}

/// Tests that count SSH logins in sshd logs, or that connect to the SSH
/// runners, hold this lock so that their connections can be told apart:
/// a mutex within this process and a file lock across processes (two test
/// runs at once on one lab).
pub struct SshLock {
    _thread: MutexGuard<'static, ()>,
    _file: fs::File,
}

pub fn ssh_lock() -> SshLock {
    static LOCK: Mutex<()> = Mutex::new(());
    let thread = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("mab-tests-ssh.lock"))
        .unwrap();
    file.lock().unwrap();
    SshLock {
        _thread: thread,
        _file: file,
    }
}

/// A home directory of the test's own: `.ssh/config` with the lab's hosts
/// as aliases, the lab's client key, and `known_hosts` with their keys.
pub struct Home {
    directory: tempfile::TempDir,
}

impl Home {
    pub fn new(lab: &Lab) -> Home {
        let home = Home {
            directory: tempfile::tempdir().unwrap(),
        };
        let ssh = home.path().join(".ssh");
        fs::create_dir_all(&ssh).unwrap();
        let key = ssh.join("id_ed25519");
        fs::copy(lab.get("CLIENT_KEY"), &key).unwrap();
        let mut config = String::new();
        let mut known_hosts = String::new();
        for name in lab.get("HOSTS").split_whitespace() {
            let host = lab.host(name);
            config.push_str(&format!(
                "Host {name}\n    HostName {}\n    Port {}\n    User root\n    IdentityFile {}\n\n",
                host.address,
                host.port,
                key.display()
            ));
            known_hosts.push_str(&host.known_hosts_line());
        }
        fs::write(ssh.join("config"), config).unwrap();
        fs::write(ssh.join("known_hosts"), known_hosts).unwrap();
        home
    }

    pub fn path(&self) -> &Path {
        self.directory.path()
    }

    pub fn write_known_hosts(&self, text: &str) {
        fs::write(self.path().join(".ssh/known_hosts"), text).unwrap();
    }
}

impl Host {
    /// `[address]:port keytype key`
    pub fn known_hosts_line(&self) -> String {
        let public = fs::read_to_string(&self.host_key).unwrap();
        let mut fields = public.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        format!("[{}]:{} {kind} {key}\n", self.address, self.port)
    }

    /// How many logins sshd has accepted so far.
    pub fn logins(&self) -> usize {
        fs::read_to_string(&self.sshd_log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("Accepted publickey"))
            .count()
    }
}

/// A project in a temporary directory.
pub struct Project {
    directory: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project {
            directory: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.directory.path()
    }

    pub fn file(&self, relative: &str, contents: &str) -> &Project {
        let path = self.path().join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
        self
    }

    /// `mab.toml` for `repository` on linux/amd64 and linux/arm64, and
    /// `runners.toml` building linux/amd64 on the local engine (runner
    /// `here`) and linux/arm64 on runner-a's engine (runner `arm`).
    pub fn two_platforms(&self, lab: &Lab, repository: &str) -> &Project {
        self.two_platform_manifest(repository).file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nengine = \"{local}\"\n\n\
                 [[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{a}\"\n",
                local = lab.get("LOCAL_ENGINE"),
                a = lab.get("RUNNER_A_ENGINE_SOCKET"),
            ),
        )
    }

    /// `mab.toml` for `repository` on linux/amd64 and linux/arm64.
    pub fn two_platform_manifest(&self, repository: &str) -> &Project {
        self.file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n"
            ),
        )
    }

    /// Copies the lab's static busybox for each architecture into `busybox/`.
    /// `mab.toml` for a `linux/amd64` image published to `repository`,
    /// and `content.txt` holding `name` (a file of the test's own, so that
    /// no other build's cache holds its steps).
    pub fn amd64_image(&self, name: &str, repository: &str) -> &Project {
        self.file("content.txt", &format!("{name}\n"));
        self.file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n"),
        )
    }

    pub fn with_busybox(&self, lab: &Lab, architectures: &[&str]) -> &Project {
        let directory = self.path().join("busybox");
        fs::create_dir_all(&directory).unwrap();
        for architecture in architectures {
            fs::copy(lab.busybox(architecture), directory.join(architecture)).unwrap();
        }
        self
    }

    /// `git init`, commit everything, and tag the commit with each of `tags`.
    pub fn commit_and_tag(&self, tags: &[&str]) -> String {
        self.git(&["init", "-q"]);
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", "initial"]);
        for tag in tags {
            self.git(&["tag", tag]);
        }
        let output = self.git(&["rev-parse", "HEAD"]);
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Runs git in the project, with an identity for commits; it must succeed.
    pub fn git(&self, arguments: &[&str]) -> Output {
        let output = Command::new("git")
            .arg("-C")
            .arg(self.path())
            .args(arguments)
            .env("GIT_AUTHOR_NAME", "mab tests")
            .env("GIT_AUTHOR_EMAIL", "tests@example.com")
            .env("GIT_COMMITTER_NAME", "mab tests")
            .env("GIT_COMMITTER_EMAIL", "tests@example.com")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {arguments:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

/// A git repository holding the context that mab cannot read.
#[derive(Clone, Copy, Debug)]
pub enum GitProblem {
    /// Owned by another user (`chown -R nobody`); git refuses it unless
    /// `safe.directory` names it, and does not exempt root, as which the
    /// tests run.
    DubiousOwnership,
    /// A `.git` directory with a garbage `HEAD`.
    BrokenHead,
    /// A good repository, with no git on mab's `PATH`.
    GitMissing,
    /// `git init` without a commit.
    NoCommit,
    /// A committed repository whose `.git/index` is garbage: `git status`
    /// fails unexpectedly, a runtime failure rather than a configuration one.
    CorruptIndex,
}

impl GitProblem {
    pub const ALL: [GitProblem; 5] = [
        GitProblem::DubiousOwnership,
        GitProblem::BrokenHead,
        GitProblem::GitMissing,
        GitProblem::NoCommit,
        GitProblem::CorruptIndex,
    ];

    /// `dubious-ownership`, …
    pub fn name(self) -> &'static str {
        match self {
            GitProblem::DubiousOwnership => "dubious-ownership",
            GitProblem::BrokenHead => "broken-head",
            GitProblem::GitMissing => "git-missing",
            GitProblem::NoCommit => "no-commit",
            GitProblem::CorruptIndex => "corrupt-index",
        }
    }

    /// The exit code of `mab build` without `--tag` or `--no-push`: 2 for a
    /// repository or machine set up wrong, 1 for git failing unexpectedly.
    pub fn exit_code(self) -> i32 {
        match self {
            GitProblem::CorruptIndex => 1,
            _ => 2,
        }
    }

    /// Makes the problem in `project` (after its files are written); returns
    /// the variables to run mab with.
    pub fn make(self, project: &Project) -> Vec<(&'static str, Option<&'static str>)> {
        match self {
            GitProblem::DubiousOwnership => {
                project.commit_and_tag(&["v1.0.0"]);
                let status = Command::new("chown")
                    .args(["-R", "nobody"])
                    .arg(project.path())
                    .status()
                    .unwrap();
                assert!(status.success(), "chown -R nobody");
            }
            GitProblem::BrokenHead => {
                project.file(".git/HEAD", "garbage\n");
            }
            GitProblem::GitMissing => {
                project.commit_and_tag(&["v1.0.0"]);
                return vec![("PATH", Some("/nonexistent/mab-tests"))];
            }
            GitProblem::NoCommit => {
                project.git(&["init", "-q"]);
            }
            GitProblem::CorruptIndex => {
                project.commit_and_tag(&["v1.0.0"]);
                project.file(".git/index", "garbage\n");
            }
        }
        Vec::new()
    }
}

/// `runners.toml` building linux/arm64 on runner-a (runner `arm`),
/// linux/ppc64le on runner-b (`power`) and linux/amd64 on the local engine
/// (`here`).
pub fn three_runners(lab: &Lab) -> String {
    format!(
        "[[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{a}\"\n\n\
         [[runner]]\nname = \"power\"\nhost = \"runner-b\"\nplatforms = [\"linux/ppc64le\"]\nengine = \"unix://{b}\"\n\n\
         [[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nengine = \"{local}\"\n",
        a = lab.get("RUNNER_A_ENGINE_SOCKET"),
        b = lab.get("RUNNER_B_ENGINE_SOCKET"),
        local = lab.get("LOCAL_ENGINE"),
    )
}

/// `runners.toml` with one runner, `arm`, building linux/arm64 on
/// runner-a's engine.
pub fn runner_a_for_arm64(lab: &Lab) -> String {
    format!(
        "[[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{}\"\n",
        lab.get("RUNNER_A_ENGINE_SOCKET")
    )
}

/// The name [`podman_runner`] gives its runner.
pub const PODMAN_RUNNER: &str = "podman";

/// `runners.toml` with one runner, [`PODMAN_RUNNER`], on the lab's Podman
/// host (`PODMAN_HOST` in lab.env, runner-podman), building linux/ppc64le
/// (emulated) and linux/amd64. Its `host` is `root@ADDR:PORT`, the host's
/// own address rather than an ssh config alias. `engine = "ENGINE"` is
/// written only when given; without it mab looks for the engine on the host
/// itself, where the only socket is Podman's (`PODMAN_SOCKET`): the host's
/// `/run` is its own, so this machine's Docker socket is not seen there.
pub fn podman_runner(lab: &Lab, engine: Option<&str>) -> String {
    let host = lab.host(lab.get("PODMAN_HOST"));
    let mut entry = format!(
        "[[runner]]\nname = \"{PODMAN_RUNNER}\"\nhost = \"root@{}:{}\"\nplatforms = [\"linux/ppc64le\", \"linux/amd64\"]\n",
        host.address, host.port
    );
    if let Some(engine) = engine {
        entry.push_str(&format!("engine = \"{engine}\"\n"));
    }
    entry
}

/// The result of running mab.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The run that ended with `output`.
    pub fn of(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// stdout as JSON (for `--format json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {self:?}"))
    }
}

impl Run {
    /// The `--progress json` events on stderr. Every line must be one JSON
    /// object with `"schema": 1` (docs/progress.md): nothing else may be
    /// written there.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stderr
            .lines()
            .map(|line| {
                let event: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("not JSON ({error}): {line:?} in {self:?}"));
                assert_eq!(event["schema"], 1, "{line}");
                event
            })
            .collect()
    }

    /// The `result` event, which must be the last of [`Run::events`].
    pub fn result_event(&self) -> serde_json::Value {
        let last = self
            .events()
            .pop()
            .unwrap_or_else(|| panic!("no events: {self:?}"));
        assert_eq!(last["event"], "result", "the last event: {self:?}");
        assert_eq!(last["exit_code"], self.code, "{self:?}");
        last
    }

    /// The events of [`Run::events`] named `name` (`"phase_finished"`).
    pub fn events_named(&self, name: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|event| event["event"] == name)
            .collect()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "exit code {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs mab in `directory` with `home` as its HOME and none of the
/// variables that would change what it does from outside the test.
pub fn mab(home: &Path, directory: &Path, arguments: &[&str]) -> Run {
    mab_with_env(home, directory, arguments, &[])
}

/// The arguments of `mab runners check --runners runners.toml --format json`.
pub const RUNNERS_CHECK_JSON: &[&str] = &[
    "runners",
    "check",
    "--runners",
    "runners.toml",
    "--format",
    "json",
];

/// `mab runners check --runners runners.toml --format json` in `directory`.
pub fn runners_check_json(home: &Path, directory: &Path) -> Run {
    mab(home, directory, RUNNERS_CHECK_JSON)
}

/// The report of runner `name` in `mab runners check --format json`'s
/// `json`.
pub fn checked_runner(json: &serde_json::Value, name: &str) -> serde_json::Value {
    json["runners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|runner| runner["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {json}"))
        .clone()
}

/// The lines `output` (a running mab's stderr) gives up to the first one
/// that contains `needle`, that one included; all of them when none does.
pub fn read_until(output: &mut impl std::io::BufRead, needle: &str) -> String {
    let mut seen = String::new();
    let mut line = String::new();
    while output.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains(needle) {
            break;
        }
        line.clear();
    }
    seen
}

/// [`mab`] with these variables set (`Some`) or removed (`None`) on top.
pub fn mab_with_env(
    home: &Path,
    directory: &Path,
    arguments: &[&str],
    variables: &[(&str, Option<&str>)],
) -> Run {
    let mut command = mab_command(home, directory, arguments);
    for (name, value) in variables {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    Run::of(command.output().expect("mab runs"))
}

/// The command [`mab`] runs, for a test that starts mab and acts while it
/// runs (`spawn`, then `wait_with_output`).
pub fn mab_command(home: &Path, directory: &Path, arguments: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mab"));
    // A local runner's slots (docs/runners.md) in the home's own runtime
    // directory, as if each home were a machine of its own: builds of
    // other tests on this machine's engine do not take them.
    command
        .args(arguments)
        .current_dir(directory)
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home.join("run"));
    for name in [
        "DOCKER_HOST",
        "DOCKER_CONFIG",
        "DOCKER_AUTH_CONFIG",
        "MAB_RUNNERS",
        "XDG_CONFIG_HOME",
        "XDG_STATE_HOME",
        "GITHUB_REF",
        "GITHUB_SHA",
        "GITHUB_EVENT_NAME",
        "GITHUB_EVENT_PATH",
        "GITHUB_ACTIONS",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
        "CI_COMMIT_TAG",
        "CI_COMMIT_SHA",
        "CI_MERGE_REQUEST_IID",
        "SSH_AUTH_SOCK",
    ] {
        command.env_remove(name);
    }
    command
}

/// `mab build --progress plain --metadata-file … ARGS` in `directory`,
/// which must succeed; returns the run and the metadata file's JSON.
pub fn build_with_metadata(
    home: &Path,
    directory: &Path,
    arguments: &[&str],
) -> (Run, serde_json::Value) {
    let (run, json) = build_and_metadata(home, directory, arguments);
    assert_eq!(run.code, 0, "{run:?}");
    (run, json)
}

/// [`build_with_metadata`], failed or not: the metadata file must be there
/// and hold JSON.
pub fn build_and_metadata(
    home: &Path,
    directory: &Path,
    arguments: &[&str],
) -> (Run, serde_json::Value) {
    let metadata = directory.join("metadata.json");
    let mut all = vec![
        "build",
        "--progress",
        "plain",
        "--metadata-file",
        metadata.to_str().unwrap(),
    ];
    all.extend_from_slice(arguments);
    let run = mab(home, directory, &all);
    let text = fs::read_to_string(&metadata).unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("the metadata file is JSON ({error}): {text:?} {run:?}"));
    (run, json)
}

/// A port on 127.0.0.1 where nothing listens: bound, then let go.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The raw manifest (or list) at `reference`, read with skopeo.
pub fn skopeo_raw(reference: &str) -> Vec<u8> {
    let output = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The architectures of a manifest list's entries (its raw bytes, as
/// [`skopeo_raw`] reads them), in order.
pub fn list_architectures(list: &[u8]) -> Vec<String> {
    let list: serde_json::Value = serde_json::from_slice(list).unwrap();
    list["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|entry| {
            entry["platform"]["architecture"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Whether `reference` exists in the registry, asked with skopeo.
pub fn skopeo_exists(reference: &str) -> bool {
    Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs")
        .status
        .success()
}

/// The image config at `reference`, read with skopeo.
pub fn skopeo_config(reference: &str) -> serde_json::Value {
    let output = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--config"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo inspect --config {reference}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The platform fields of an image `config` (as [`skopeo_config`] reads
/// it) as a list entry holds them when copied verbatim: `architecture`,
/// `os`, and `variant` only when the config has one.
pub fn config_platform_fields(config: &serde_json::Value) -> serde_json::Value {
    let mut fields = serde_json::json!({
        "architecture": config["architecture"],
        "os": config["os"],
    });
    if let Some(variant) = config.get("variant") {
        fields["variant"] = variant.clone();
    }
    fields
}

/// `sha256:<hex>` of some bytes, computed with the sha256sum tool.
pub fn sha256(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

/// Runs Debian's docker CLI against one engine of the lab (`local` or a
/// runner host's name), through `tests/lab/docker-on`.
pub fn docker_on(target: &str, arguments: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lab/docker-on");
    Command::new(script)
        .arg(target)
        .args(arguments)
        .output()
        .expect("tests/lab/docker-on runs")
}

/// Runs Debian's podman as a remote client of the lab's Podman host
/// (`PODMAN_HOST`), through `tests/lab/podman-on`.
pub fn podman_on(lab: &Lab, arguments: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lab/podman-on");
    Command::new(script)
        .arg(lab.get("PODMAN_HOST"))
        .args(arguments)
        .output()
        .expect("tests/lab/podman-on runs")
}

/// The tags of `repository`, sorted, read with `skopeo list-tags`; none when
/// the repository does not exist yet.
pub fn skopeo_tags(repository: &str) -> Vec<String> {
    let output = Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{repository}"))
        .output()
        .expect("skopeo runs");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("404"),
            "skopeo list-tags {repository}: {stderr}"
        );
        return Vec::new();
    }
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut tags: Vec<String> = listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag.as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    tags
}

/// A disposable runner host of one test (`tests/lab/spare-host`): its own
/// sshd on a port of its own and, unless started without one, its own
/// engine, so that a test may kill, freeze or cut it off without touching
/// the shared hosts. Dropping it (also when the test panics) stops it,
/// removes its firewall rules and its data.
pub struct SpareHost {
    name: String,
    settings: HashMap<String, String>,
}

/// How a [`SpareHost`] is started.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpareOptions<'a> {
    /// No engine, only sshd (for handshake tests).
    pub no_engine: bool,
    /// sshd's `MaxStartups` (`start:rate:full`, or a number).
    pub max_startups: Option<&'a str>,
    /// sshd's `AllowStreamLocalForwarding no`: no channel to the engine.
    pub no_stream_forwarding: bool,
    /// sshd's `MaxSessions` (the lab hosts' 100 when `None`).
    pub max_sessions: Option<&'a str>,
}

impl SpareHost {
    /// Starts `spare-NAME-PID` (NAME unique to the test, PID this test
    /// process's, so that two test runs at once do not share a host).
    pub fn start(name: &str, options: SpareOptions<'_>) -> SpareHost {
        let name = format!("{name}-{}", std::process::id());
        let mut arguments = vec!["start", name.as_str()];
        if options.no_engine {
            arguments.push("--no-engine");
        }
        if let Some(spec) = options.max_startups {
            arguments.extend(["--max-startups", spec]);
        }
        if options.no_stream_forwarding {
            arguments.push("--no-stream-forwarding");
        }
        if let Some(count) = options.max_sessions {
            arguments.extend(["--max-sessions", count]);
        }
        let output = spare_host(&arguments);
        let settings = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        SpareHost { name, settings }
    }

    /// A setting printed by `spare-host start` (`PORT`, `DOCKERD_PID`, …).
    pub fn get(&self, key: &str) -> &str {
        self.settings
            .get(key)
            .unwrap_or_else(|| panic!("spare host {} has no {key}", self.name))
    }

    /// The host as the lab's [`Host`] describes its shared ones.
    pub fn host(&self) -> Host {
        Host {
            address: self.get("ADDR").to_owned(),
            port: self.get("PORT").to_owned(),
            sshd_log: self.get("SSHD_LOG").into(),
            host_key: self.get("HOST_KEY").into(),
        }
    }

    /// Adds this host to `home`'s ssh config as `alias` (the lab's client
    /// key, and `extra` option lines such as `    ServerAliveInterval 1\n`)
    /// and its key to `home`'s known_hosts.
    pub fn add_to(&self, home: &Home, alias: &str, extra: &str) {
        use std::io::Write;
        let ssh = home.path().join(".ssh");
        let entry = format!(
            "Host {alias}\n    HostName {}\n    Port {}\n    User root\n    IdentityFile {}\n{extra}\n",
            self.get("ADDR"),
            self.get("PORT"),
            ssh.join("id_ed25519").display()
        );
        let append = |file: &str, text: &str| {
            fs::OpenOptions::new()
                .append(true)
                .open(ssh.join(file))
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        };
        append("config", &entry);
        append("known_hosts", &self.host().known_hosts_line());
    }

    /// Sends `signal` (`KILL`, `STOP`) to the process whose PID is the
    /// setting `key` (`SSHD_PID`, `DOCKERD_PID`).
    pub fn signal(&self, key: &str, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.get(key))
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {key} of {}", self.name);
    }

    /// The cgroup parent its engine runs containers and build steps under
    /// (`/mab-spare-NAME`, as `tests/lab/spare-host` sets it).
    pub fn cgroup_parent(&self) -> String {
        format!("/mab-spare-{}", self.name)
    }

    /// The name of its engine's slot `number` in [`Self::slot_directory`].
    pub fn slot_file(&self, number: u32) -> String {
        slot_file(&format!("unix://{}", self.get("ENGINE_SOCKET")), number)
    }

    /// The directory where mab keeps its runner slots on this host:
    /// `$XDG_RUNTIME_DIR/mab-UID`, where the lab's sshd sets
    /// XDG_RUNTIME_DIR to the host's own `run` directory (`tests/lab/lib.sh`,
    /// `write_sshd_config`) and the lab's SSH user is the user running the
    /// tests ([`user_id`]).
    pub fn slot_directory(&self) -> PathBuf {
        Path::new(self.get("SSHD_LOG"))
            .with_file_name("run")
            .join(format!("mab-{}", user_id()))
    }

    /// The processes (PID and command line) that its sshd's sessions
    /// started and that still run: those whose environment holds the
    /// XDG_RUNTIME_DIR sshd sets for this host alone.
    pub fn session_processes(&self) -> Vec<String> {
        processes_with(&format!(
            "XDG_RUNTIME_DIR={}",
            self.slot_directory().parent().unwrap().display()
        ))
    }

    /// Drops every packet to and from its sshd port; dropping the guard
    /// removes the rules.
    pub fn cut(&self) {
        spare_host(&["cut", &self.name]);
    }

    /// Lets its sshd port's packets through again after [`cut`](Self::cut).
    pub fn mend(&self) {
        spare_host(&["mend", &self.name]);
    }
}

impl Drop for SpareHost {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lab/spare-host");
        let _ = Command::new(script).args(["stop", &self.name]).output();
    }
}

/// Runs `tests/lab/spare-host ARGUMENTS`, which must succeed.
fn spare_host(arguments: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lab/spare-host");
    let output = Command::new(script).args(arguments).output().unwrap();
    assert!(
        output.status.success(),
        "tests/lab/spare-host {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The processes (PID and command line) that hold a file under
/// `directory` open, seen in `/proc/*/fd`: a slot's holder keeps its slot
/// file open for as long as it holds the lock.
pub fn holders_under(directory: &Path) -> Vec<String> {
    processes_where(|process| {
        fs::read_dir(process.join("fd")).is_ok_and(|fds| {
            fds.filter_map(Result::ok)
                .filter_map(|fd| fs::read_link(fd.path()).ok())
                .any(|target| target.starts_with(directory))
        })
    })
}

/// The processes (PID and command line) whose `/proc/PID` directory
/// passes `test`.
fn processes_where(test: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_err() || !test(&entry.path()) {
            continue;
        }
        let command = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let command = String::from_utf8_lossy(&command).replace('\0', " ");
        found.push(format!("{pid} {}", command.trim()));
    }
    found
}

/// This process's user id, as `id -u` prints it.
pub fn user_id() -> String {
    let output = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The name of slot `number` of the engine at `engine` in a slot
/// directory, by the rule docs/runners.md gives: `slot-KEY-N`, KEY the
/// address without its scheme, every character but ASCII letters, digits,
/// `.` and `-` made `_`.
pub fn slot_file(engine: &str, number: u32) -> String {
    let endpoint = engine.split_once("://").map_or(engine, |(_, rest)| rest);
    let key: String = endpoint
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
            _ => '_',
        })
        .collect();
    format!("slot-{key}-{number}")
}

/// The entries of the slot directory `directory` (none when it does not
/// exist), each checked to be an empty `slot-KEY-N` file that `flock -n`
/// can lock now (no build holds it).
pub fn free_slot_files(directory: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(directory) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let number = name
            .strip_prefix("slot-")
            .and_then(|rest| rest.rsplit_once('-'))
            .map_or("", |(_, number)| number);
        assert!(
            !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()),
            "{name} in {}",
            directory.display()
        );
        let path = directory.join(name);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0, "{name} is empty");
        let status = Command::new("flock")
            .args(["-n"])
            .arg(&path)
            .arg("true")
            .status()
            .unwrap();
        assert!(status.success(), "{} is locked", path.display());
    }
    names
}

/// The image `reference` copied from the registry with skopeo into a
/// temporary directory (`dir:` layout: `manifest.json`, `version` and a
/// file per blob named by its hex digest).
pub fn image_dir(reference: &str) -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    let output = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", directory.path().display()))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo copy {reference}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    directory
}

/// The file the image `reference` holds at `path` (its last layer that
/// has it), read from the registry with skopeo and tar, independently of
/// mab.
pub fn image_file(reference: &str, path: &str) -> String {
    let directory = image_dir(reference);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(directory.path().join("manifest.json")).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().expect("an image manifest");
    for layer in layers.iter().rev() {
        let digest = layer["digest"].as_str().unwrap();
        let blob = directory.path().join(digest.trim_start_matches("sha256:"));
        let output = Command::new("tar")
            .arg("-xzOf")
            .arg(&blob)
            .arg(path)
            .output()
            .unwrap();
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
    }
    panic!("no layer of {reference} holds {path}");
}

/// The processes (PID and command line) whose environment holds
/// `variable` (`NAME=VALUE`), read from `/proc/*/environ`.
pub fn processes_with(variable: &str) -> Vec<String> {
    processes_where(|process| {
        fs::read(process.join("environ")).is_ok_and(|environment| {
            environment
                .split(|byte| *byte == 0)
                .any(|held| held == variable.as_bytes())
        })
    })
}

/// Writes the credential helper `docker-credential-NAME` (a shell script
/// with `script` after `#!/bin/sh`) into `home`'s `bin`, and returns a
/// `PATH` with that directory first.
pub fn credential_helper_script(home: &Path, name: &str, script: &str) -> String {
    let bin = home.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let helper = bin.join(format!("docker-credential-{name}"));
    fs::write(&helper, format!("#!/bin/sh\n{script}")).unwrap();
    fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Makes an ed25519 key at `path` with ssh-keygen, with `comment` and
/// `passphrase` (empty for none).
pub fn keygen(path: &Path, comment: &str, passphrase: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", comment, "-N", passphrase, "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen {}", path.display());
}
