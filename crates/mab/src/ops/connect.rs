//! Reaching a runner: one SSH connection per runner host, shared by the
//! entries that name it (or the local engine),
//! the engine behind it, and what the engine and host can build.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mab_config::{Runner, RunnerHost};
use mab_engine::{Connect, Engine, EngineInfo, EngineKind, Io};
use mab_events::Reporter;
use mab_ssh::{ConnectionKey, Destination, Retries, Session};

use crate::environment::Environment;

/// Prints every QEMU handler registered in binfmt_misc, each after a
/// `== NAME` line (a short read-only probe, run on the runner's host).
pub(crate) const BINFMT_PROBE: &str = "for f in /proc/sys/fs/binfmt_misc/qemu-*; do \
     [ -f \"$f\" ] || continue; echo \"== ${f##*/}\"; cat \"$f\"; done";

/// How long connecting to a runner and asking its engine may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The handlers of [`BINFMT_PROBE`]'s output that can run a build's
/// programs: enabled, and with the `F` flag (the interpreter is opened when
/// registered, so it works inside containers that do not hold it).
pub fn usable_handlers(probe_output: &str) -> Vec<String> {
    let mut usable = Vec::new();
    for block in probe_output.split("== ").skip(1) {
        let mut lines = block.lines();
        let Some(name) = lines.next().map(str::trim) else {
            continue;
        };
        let lines: Vec<&str> = lines.map(str::trim).collect();
        let enabled = lines.contains(&"enabled");
        let fixed = lines.iter().any(|line| {
            line.strip_prefix("flags:")
                .is_some_and(|flags| flags.contains('F'))
        });
        if enabled && fixed {
            usable.push(name.to_owned());
        }
    }
    usable
}

/// A runner mab is connected to.
#[derive(Clone)]
pub struct Connected {
    pub engine: Engine,
    /// The engine's address as mab reaches it (`unix:///var/run/docker.sock`,
    /// a socket on the runner's host for an SSH runner; `tcp://…` for a
    /// local one too), which keys the runner's slots on its host. For a
    /// runner without `engine` (and, for `local`, without `DOCKER_HOST`
    /// or a docker context), the socket [`engine_sockets`] found.
    pub engine_address: String,
    /// Whether `engine_address` was found by looking for a socket other
    /// than the default one ([`engine_sockets`]), which does not exist.
    pub engine_found: bool,
    pub info: EngineInfo,
    /// Entries of the host's `/proc/sys/fs/binfmt_misc` (`qemu-aarch64`, …).
    pub binfmt: Vec<String>,
    /// Kept so the connection lives as long as the runner is used.
    pub session: Option<Session>,
}

impl Connected {
    /// Whether the runner's SSH connection has ended (the host went away,
    /// the connection was reset), for it and every runner entry sharing
    /// it ([`Hosts`]); never for the local engine.
    pub fn connection_lost(&self) -> bool {
        self.session.as_ref().is_some_and(Session::is_closed)
    }

    /// Runs a short read-only command on the runner's host (over its SSH
    /// connection, or here for the local engine); its stdout when it
    /// succeeded.
    pub async fn probe(&self, command: &str) -> Option<String> {
        probe(self.session.as_ref(), command).await
    }
}

/// Runs `command` over `session`, or here without one: its stdout when it
/// succeeded ([`Connected::probe`]).
async fn probe(session: Option<&Session>, command: &str) -> Option<String> {
    match session {
        Some(session) => {
            let output = session.exec(command).await.ok()?;
            (output.status == 0).then(|| String::from_utf8_lossy(&output.stdout).into_owned())
        }
        None => {
            let output = tokio::process::Command::new("sh")
                .args(["-c", command])
                .output()
                .await
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
        }
    }
}

/// The SSH runner hosts of one command: one connection per host, shared by
/// every runner entry whose destination resolves to the same connection
/// ([`Destination::same_connection`]), so that a hundred entries naming two
/// hosts open two connections (an sshd resets connections beyond its
/// `MaxStartups`). The host's QEMU handlers are probed once too: they are
/// the host's, whatever engine socket an entry names. At most
/// [`CONNECTING_AT_ONCE`] runners are connected to at once.
pub struct Hosts {
    known: std::sync::Mutex<Known>,
    /// The turns of [`connect`]: a runner's time limit starts with its turn.
    turns: tokio::sync::Semaphore,
}

impl Default for Hosts {
    fn default() -> Hosts {
        Hosts {
            known: std::sync::Mutex::default(),
            turns: tokio::sync::Semaphore::new(CONNECTING_AT_ONCE),
        }
    }
}

/// How many runners one command connects to and probes at once. A fleet of
/// a hundred runners makes a hundred SSH key exchanges and engine probes;
/// started all at once on a small coordinator, the last ones would wait on
/// its CPU past their time limit (`PROBE_TIMEOUT`, 60 s) though each host
/// answers at once. Waiting for a turn does not count against that limit.
/// Thirty-two at once, as parallel-ssh's default.
pub const CONNECTING_AT_ONCE: usize = 32;

/// What [`Hosts`] has met: each lookup is one hash, so that a fleet of a
/// thousand entries is not a thousand scans of a thousand.
#[derive(Default)]
struct Known {
    /// Each connection, by what makes it one ([`Destination::connection`]).
    connections: HashMap<ConnectionKey, Arc<Host>>,
    /// Each runner entry connected to over SSH, by its name.
    runners: HashMap<String, Entry>,
}

/// A runner entry of [`Known`]: its host, its `jobs`, the key of the
/// engine whose slots it takes ([`crate::ops::slots::engine_key`]), and the
/// host as it names it (`` `arm` (127.0.0.2:2222) ``).
struct Entry {
    host: Arc<Host>,
    jobs: u32,
    engine: String,
    named: String,
}

impl Hosts {
    /// The host `destination` reaches for `runner`, the one already met
    /// when an earlier destination is the same connection.
    fn host(&self, runner: &Runner, destination: &Destination) -> Arc<Host> {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let host = known
            .connections
            .entry(destination.connection())
            .or_default()
            .clone();
        let entry = Entry {
            host: host.clone(),
            jobs: runner.jobs,
            engine: crate::ops::slots::engine_key(
                runner
                    .engine
                    .as_deref()
                    .unwrap_or(mab_config::DEFAULT_ENGINE_SOCKET),
            ),
            named: destination.host_ref().to_string(),
        };
        known.runners.insert(runner.name.clone(), entry);
        host
    }

    /// Runner `name`'s engine is `address`, found on its host rather than
    /// the default socket its entry was counted with: its slots are that
    /// engine's.
    fn engine_found(&self, name: &str, address: &str) {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = known.runners.get_mut(name) {
            entry.engine = crate::ops::slots::engine_key(address);
        }
    }

    /// The hosts whose entries among `runners` (in runners-file order)
    /// give them more build slots than one connection holds at once
    /// ([`Crowded`]), in the order their first entry comes. Entries not
    /// connected to over SSH (local, or not yet met) count for nothing.
    pub fn crowded(&self, runners: &[&Runner]) -> Vec<Crowded> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entries = runners.iter().filter_map(|runner| {
            let entry = known.runners.get(&runner.name)?;
            Some(Listed {
                host: &entry.host,
                runner: runner.name.as_str(),
                jobs: entry.jobs,
                engine: entry.engine.as_str(),
                named: entry.named.as_str(),
            })
        });
        crowded(entries)
    }
}

/// One entry as [`crowded`] counts it.
struct Listed<'a, H> {
    host: &'a Arc<H>,
    runner: &'a str,
    jobs: u32,
    /// The key of the engine whose slots it takes.
    engine: &'a str,
    /// The host as the entry names it.
    named: &'a str,
}

/// Groups `entries` by host, in the order each host first comes, and keeps
/// the hosts where they can hold more than [`mab_ssh::SESSION_CHANNELS`]
/// slots at once, each named as its first entry names it. Entries naming
/// the same engine share its slot files (`slot-KEY-0`, `slot-KEY-1`, …,
/// docs/runners.md, "Slots"), so of those the largest `jobs` counts; the
/// engines of a host add up.
fn crowded<'a, H: 'a>(entries: impl Iterator<Item = Listed<'a, H>>) -> Vec<Crowded> {
    let mut groups: Vec<(Crowded, HashMap<&'a str, u32>)> = Vec::new();
    // Each host's place in `groups`, by the address of its one value.
    let mut places: HashMap<*const H, usize> = HashMap::new();
    for entry in entries {
        let index = *places.entry(Arc::as_ptr(entry.host)).or_insert_with(|| {
            let crowded = Crowded {
                host: entry.named.to_owned(),
                runners: Vec::new(),
                slots: 0,
            };
            groups.push((crowded, HashMap::new()));
            groups.len() - 1
        });
        let (crowded, engines) = &mut groups[index];
        crowded.runners.push((entry.runner.to_owned(), entry.jobs));
        let most = engines.entry(entry.engine).or_default();
        *most = (*most).max(entry.jobs);
    }
    groups
        .into_iter()
        .map(|(mut crowded, engines)| {
            crowded.slots = engines.values().map(|jobs| u64::from(*jobs)).sum();
            crowded
        })
        .filter(|crowded| crowded.slots > mab_ssh::SESSION_CHANNELS as u64)
        .collect()
}

/// A runner host whose entries' `jobs` add up to more build slots than
/// its one SSH connection holds at once ([`mab_ssh::SESSION_CHANNELS`]):
/// one build never runs more than that many builds there, the others
/// wait (docs/runners.md, "One connection per host").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crowded {
    /// The host as its first entry in the runners file names it, with its
    /// address (`` `arm` (127.0.0.2:2222) ``).
    pub host: String,
    /// The entries naming it, in runners-file order, each with its `jobs`.
    pub runners: Vec<(String, u32)>,
    /// The most slots they hold at once: the largest `jobs` of the entries
    /// of each engine, added up over the host's engines.
    pub slots: u64,
}

impl Crowded {
    /// The warning `mab plan`, `mab build` and `mab runners check` print
    /// for it, with its hint.
    pub fn warning(&self) -> String {
        let most = mab_ssh::SESSION_CHANNELS;
        let named: Vec<String> = self
            .runners
            .iter()
            .map(|(runner, jobs)| format!("`{runner}` (jobs = {jobs})"))
            .collect();
        format!(
            "host {} is given {} build slots at once by runners {}, but one SSH connection holds at most {most} at once: at most {most} builds run at once on that host, the others wait for a free slot; \
             hint: lower the `jobs` of those runners so that at most {most} are held at once (entries naming the same engine share its slots: the largest `jobs` of them counts)",
            self.host,
            self.slots,
            crate::ops::named_list(&named),
        )
    }
}

/// Reports a warning ([`Crowded::warning`]) for each host of
/// [`Hosts::crowded`].
pub fn warn_crowded(hosts: &Hosts, runners: &[&Runner], reporter: &dyn Reporter) {
    for crowded in hosts.crowded(runners) {
        reporter.report(mab_events::Event::Warning {
            message: crowded.warning(),
        });
    }
}

/// One runner host of [`Hosts`]: its connection and its handlers, each
/// set up once by the first runner that needs it, the others waiting for
/// it.
#[derive(Default)]
struct Host {
    session: tokio::sync::OnceCell<Result<Session, Unreachable>>,
    binfmt: tokio::sync::OnceCell<Vec<String>>,
}

impl Host {
    /// The connection, opened by the first caller; a failure is every
    /// entry's failure (its retries were reported under the first
    /// caller's runner).
    async fn session(
        &self,
        destination: &Destination,
        home: &std::path::Path,
        retries: Retries<'_>,
    ) -> Result<Session, Unreachable> {
        self.session
            .get_or_init(|| async {
                Session::connect(destination, home, retries)
                    .await
                    .map_err(Unreachable::from)
            })
            .await
            .clone()
    }

    /// The usable QEMU handlers ([`usable_handlers`]), probed once over
    /// `session`; none when the probe fails.
    async fn binfmt(&self, session: &Session) -> Vec<String> {
        self.binfmt
            .get_or_init(|| async {
                usable_handlers(&probe(Some(session), BINFMT_PROBE).await.unwrap_or_default())
            })
            .await
            .clone()
    }
}

/// Why a runner could not be reached.
#[derive(Clone, Debug)]
pub struct Unreachable {
    pub kind: UnreachableKind,
    pub message: String,
    pub hint: Option<String>,
}

/// Why a runner could not be used, as `mab runners check --format json`
/// names it in `error_kind` (PRODUCT.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnreachableKind {
    /// The SSH side: `dns`, `refused`, `timeout`, `host_key`, `auth`, or
    /// `config` (a mistake in the user's ssh config for the host, a usage
    /// error). Never `Other`, which is the engine's side.
    Ssh(mab_ssh::ErrorKind),
    /// The host answered, but its engine (or a probe) did not.
    Engine,
}

impl UnreachableKind {
    /// The name in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            UnreachableKind::Ssh(kind) => kind.as_str(),
            UnreachableKind::Engine => "engine",
        }
    }
}

impl From<mab_ssh::ErrorKind> for UnreachableKind {
    /// The SSH side's kind; `Other` (the session is up but the engine
    /// socket or a probe failed) is the engine's side.
    fn from(kind: mab_ssh::ErrorKind) -> UnreachableKind {
        match kind {
            mab_ssh::ErrorKind::Other => UnreachableKind::Engine,
            kind => UnreachableKind::Ssh(kind),
        }
    }
}

impl From<mab_ssh::SshError> for Unreachable {
    fn from(error: mab_ssh::SshError) -> Unreachable {
        let kind = UnreachableKind::from(error.kind());
        Unreachable {
            kind,
            hint: error.hint(),
            message: error.to_string(),
        }
    }
}

impl From<mab_engine::EngineError> for Unreachable {
    fn from(error: mab_engine::EngineError) -> Unreachable {
        let hint = match error {
            // It took the connection, so the socket is right.
            mab_engine::EngineError::Timeout { .. } => {
                "the engine accepted the connection but did not answer: check that it is healthy (`docker info` on that host) and restart it if it hangs"
            }
            _ => "check that the engine runs and that its socket is the runner's `engine`",
        };
        Unreachable {
            kind: UnreachableKind::Engine,
            message: error.to_string(),
            hint: Some(hint.to_owned()),
        }
    }
}

/// Connects to a runner's engine and asks what it can build. An SSH
/// runner's connection, and the QEMU handlers of its host, come from
/// `hosts`: runners whose destinations are the same connection
/// ([`Destination::same_connection`]) share one. Retried handshakes and
/// engine requests (now and for as long as the engine is used) are
/// reported to `reporter`. It waits for its turn among the
/// [`CONNECTING_AT_ONCE`] runners being connected to first; its time limit
/// (`PROBE_TIMEOUT`) starts with its turn.
pub async fn connect(
    runner: &Runner,
    environment: &Environment,
    reporter: &Arc<dyn Reporter>,
    hosts: &Hosts,
) -> Result<Connected, Unreachable> {
    let connecting = async {
        match &runner.host {
            RunnerHost::Local => connect_local(runner, environment, reporter).await,
            RunnerHost::Ssh(spec) => connect_ssh(runner, spec, environment, reporter, hosts).await,
        }
    };
    // The semaphore is never closed.
    let _turn = hosts.turns.acquire().await.ok();
    tokio::time::timeout(PROBE_TIMEOUT, connecting)
        .await
        .unwrap_or_else(|_| {
            Err(Unreachable {
                kind: UnreachableKind::Ssh(mab_ssh::ErrorKind::Timeout),
                message: format!(
                    "connecting to runner `{}` and asking its engine what it runs took more than {} s",
                    runner.name,
                    PROBE_TIMEOUT.as_secs()
                ),
                hint: Some("check the runner with `mab runners check` and its engine with `docker info` on that host".to_owned()),
            })
        })
}

async fn connect_local(
    runner: &Runner,
    environment: &Environment,
    reporter: &Arc<dyn Reporter>,
) -> Result<Connected, Unreachable> {
    let (address, engine_found) = match local_engine_address(runner.engine.as_deref(), environment)
    {
        Some(address) => (address, false),
        None => {
            let search = search_here(&environment.runtime_dir().display().to_string());
            found_socket(runner, "this machine", search)?
        }
    };
    let connector = local_connector(&address)?;
    let engine = Engine::connect(connector, runner.name.clone(), reporter.clone()).await?;
    // A Podman engine builds from a copy of the context on its host: here,
    // when its socket is.
    let engine = match (engine.kind(), address.strip_prefix("unix://")) {
        (EngineKind::Podman, Some(socket)) => {
            let socket = socket.to_owned();
            engine.with_host(super::host::local_host(), socket)
        }
        _ => engine,
    };
    // This machine's handlers matter only when the engine runs here.
    let probing = async {
        match address.starts_with("unix://") {
            true => usable_handlers(&probe(None, BINFMT_PROBE).await.unwrap_or_default()),
            false => Vec::new(),
        }
    };
    let (info, binfmt) = tokio::join!(engine.describe(), probing);
    Ok(Connected {
        engine,
        engine_address: address,
        engine_found,
        info: info?,
        binfmt,
        session: None,
    })
}

async fn connect_ssh(
    runner: &Runner,
    spec: &str,
    environment: &Environment,
    reporter: &Arc<dyn Reporter>,
    hosts: &Hosts,
) -> Result<Connected, Unreachable> {
    let destination = Destination::resolve(spec, &environment.home)?;
    let retries = Retries {
        runner: &runner.name,
        reporter: reporter.as_ref(),
    };
    let host = hosts.host(runner, &destination);
    let session = host
        .session(&destination, &environment.home, retries)
        .await?;
    let (engine_address, engine_found, opened) = match &runner.engine {
        Some(engine) => (engine.clone(), false, None),
        None => ssh_engine_socket(runner, &session, &destination).await?,
    };
    if engine_found {
        hosts.engine_found(&runner.name, &engine_address);
    }
    let Some(socket) = engine_address.strip_prefix("unix://").map(str::to_owned) else {
        return Err(Unreachable {
            kind: UnreachableKind::Engine,
            message: format!(
                "runner `{}` names engine `{engine_address}`, but over SSH only unix sockets are supported",
                runner.name
            ),
            hint: Some("set `engine = \"unix:///var/run/docker.sock\"` (the socket's path on that host)".to_owned()),
        });
    };
    let channel_session = session.clone();
    let socket_path = socket.clone();
    // The default socket's stream opened while looking for the engine
    // serves the first request.
    let opened = Arc::new(std::sync::Mutex::new(opened));
    let connector: Connect = Arc::new(move || {
        let session = channel_session.clone();
        let socket = socket.clone();
        let opened = opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        Box::pin(async move {
            if let Some(stream) = opened {
                return Ok(Box::new(stream) as Box<dyn Io>);
            }
            // The kind decides whether the engine request is tried again
            // (`mab_events::retry::dropped`); a closed session opens no more
            // channels, so no retry helps.
            let stream = session.open_unix_stream(&socket).await.map_err(|error| {
                let kind = if session.is_closed() {
                    std::io::ErrorKind::NotConnected
                } else {
                    error.io_kind()
                };
                std::io::Error::new(kind, error)
            })?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    });
    let engine = Engine::connect(connector, runner.name.clone(), reporter.clone()).await?;
    // A Podman engine builds from a copy of the context on its host, kept
    // and read through commands over the same connection.
    let engine = match engine.kind() {
        EngineKind::Podman => engine.with_host(super::host::ssh_host(session.clone()), socket_path),
        EngineKind::Docker => engine,
    };
    let (info, binfmt) = tokio::join!(engine.describe(), host.binfmt(&session));
    Ok(Connected {
        engine,
        engine_address,
        engine_found,
        info: info?,
        binfmt,
        session: Some(session),
    })
}

/// The engine of an SSH runner whose `engine` is not set, as its address,
/// whether it was found by looking ([`Connected::engine_found`]), and the
/// stream already opened to it. The default socket comes first and costs
/// nothing more: its stream serves the engine's first request. Only when
/// sshd cannot connect to it (no such socket, or nothing listening) is the
/// host asked, once, for the first socket of [`engine_sockets`] that
/// exists ([`search_script`]). When that is the default one, or the host
/// cannot be asked, the default stays, and connecting to it says why it
/// failed. Errors: no socket of the list exists on the host.
async fn ssh_engine_socket(
    runner: &Runner,
    session: &Session,
    destination: &Destination,
) -> Result<(String, bool, Option<mab_ssh::SshStream>), Unreachable> {
    let default = mab_config::DEFAULT_ENGINE_SOCKET;
    let path = default.trim_start_matches("unix://");
    let refused = match session.open_unix_stream(path).await {
        Ok(stream) => return Ok((default.to_owned(), false, Some(stream))),
        Err(error) => error.io_kind() == std::io::ErrorKind::ConnectionRefused,
    };
    if !refused {
        return Ok((default.to_owned(), false, None));
    }
    let Some(output) = probe(Some(session), &search_script()).await else {
        return Ok((default.to_owned(), false, None));
    };
    let host = format!("host {}", destination.host_ref());
    let (address, found) = found_socket(runner, &host, parse_search(&output))?;
    Ok((address, found, None))
}

/// The local engine as named (PRODUCT.md): the runner's `engine`, else
/// `DOCKER_HOST`, else the current docker context; `None` when none names
/// one, and the engine is then the first socket of [`engine_sockets`] on
/// this machine (the default socket first). `CONTAINER_HOST` (Podman's
/// remote client's variable) is not read: it often names an `ssh://`
/// service, and a local Podman service is found at its usual socket.
pub fn local_engine_address(engine: Option<&str>, environment: &Environment) -> Option<String> {
    if let Some(engine) = engine {
        return Some(engine.to_owned());
    }
    if let Some(host) = &environment.docker_host {
        return Some(host.clone());
    }
    docker_context_host(&environment.docker_config_dir())
}

/// The engine sockets looked for, in this order, on a runner whose
/// `engine` is not set (for `local`, when neither `DOCKER_HOST` nor a
/// docker context names one either): Docker's default socket, Podman's
/// for root (`podman.socket`), Podman's rootless one, and rootless
/// Docker's. `runtime_dir` is the user's runtime directory on that host
/// (`$XDG_RUNTIME_DIR`, else `/run/user/UID`).
pub fn engine_sockets(runtime_dir: &str) -> [String; 4] {
    [
        mab_config::DEFAULT_ENGINE_SOCKET
            .trim_start_matches("unix://")
            .to_owned(),
        "/run/podman/podman.sock".to_owned(),
        format!("{runtime_dir}/podman/podman.sock"),
        format!("{runtime_dir}/docker.sock"),
    ]
}

/// What looking for an engine socket found: the paths looked at, in
/// [`engine_sockets`] order, up to the first that is a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketSearch {
    /// The paths that are not sockets (missing, or not readable).
    pub missing: Vec<String>,
    /// The first that is one, if any.
    pub found: Option<String>,
}

/// The `sh` script that looks for [`engine_sockets`] on a runner's host:
/// `found PATH` for the first socket, after `missing PATH` for each one
/// before it (a path the user may not look into counts as missing).
fn search_script() -> String {
    let runtime = "${XDG_RUNTIME_DIR:-/run/user/$(id -u)}";
    let candidates: Vec<String> = engine_sockets(runtime)
        .iter()
        .map(|path| format!("\"{path}\""))
        .collect();
    format!(
        "for socket in {}; do if [ -S \"$socket\" ]; then echo \"found $socket\"; exit 0; fi; echo \"missing $socket\"; done",
        candidates.join(" ")
    )
}

/// [`search_script`]'s output read.
fn parse_search(output: &str) -> SocketSearch {
    let mut search = SocketSearch {
        missing: Vec::new(),
        found: None,
    };
    for line in output.lines() {
        if let Some(path) = line.strip_prefix("missing ") {
            search.missing.push(path.to_owned());
        } else if let Some(path) = line.strip_prefix("found ") {
            search.found = Some(path.to_owned());
            break;
        }
    }
    search
}

/// [`engine_sockets`] looked for on this machine.
fn search_here(runtime_dir: &str) -> SocketSearch {
    search_paths(engine_sockets(runtime_dir))
}

/// `paths` looked at on this machine, in order, up to the first socket.
fn search_paths(paths: impl IntoIterator<Item = String>) -> SocketSearch {
    use std::os::unix::fs::FileTypeExt;
    let mut search = SocketSearch {
        missing: Vec::new(),
        found: None,
    };
    for path in paths {
        let socket =
            std::fs::metadata(&path).is_ok_and(|metadata| metadata.file_type().is_socket());
        if socket {
            search.found = Some(path);
            break;
        }
        search.missing.push(path);
    }
    search
}

/// The engine address `search` found on `host` (`host `arm``, `this
/// machine`), and whether it is another than the default socket; the
/// choice is logged. Errors: it found none, naming every path looked at.
fn found_socket(
    runner: &Runner,
    host: &str,
    search: SocketSearch,
) -> Result<(String, bool), Unreachable> {
    let Some(path) = search.found else {
        return Err(Unreachable {
            kind: UnreachableKind::Engine,
            message: format!(
                "runner `{}` sets no `engine`, and {host} has no engine socket at {}",
                runner.name,
                search.missing.join(", ")
            ),
            hint: Some(
                "start the engine there (Docker's, or Podman's API service: `systemctl enable --now podman.socket`), or set the runner's `engine` to its socket (`engine = \"unix:///path/to/engine.sock\"`)"
                    .to_owned(),
            ),
        });
    };
    let other = !search.missing.is_empty();
    if other {
        tracing::info!(
            "runner `{}` sets no `engine`: using unix://{path} on {host}, the first engine socket there ({} not found)",
            runner.name,
            search.missing.join(", ")
        );
    }
    Ok((format!("unix://{path}"), other))
}

/// The engine of the current docker context, as the docker CLI stores it:
/// `currentContext` in `config.json`, its endpoint in
/// `contexts/meta/<sha256 of the name>/meta.json`.
fn docker_context_host(config_dir: &std::path::Path) -> Option<String> {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config_dir.join("config.json")).ok()?).ok()?;
    let name = config["currentContext"].as_str()?;
    if name.is_empty() || name == "default" {
        return None;
    }
    let hashed = mab_registry::sha256_digest(name.as_bytes());
    let directory: PathBuf = config_dir
        .join("contexts/meta")
        .join(hashed.trim_start_matches("sha256:"));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(directory.join("meta.json")).ok()?).ok()?;
    meta["Endpoints"]["docker"]["Host"]
        .as_str()
        .map(str::to_owned)
}

fn local_connector(address: &str) -> Result<Connect, Unreachable> {
    if let Some(path) = address.strip_prefix("unix://") {
        return Ok(mab_engine::unix_connector(path));
    }
    if let Some(host) = address.strip_prefix("tcp://") {
        return Ok(mab_engine::tcp_connector(host.trim_end_matches('/')));
    }
    Err(Unreachable {
        kind: UnreachableKind::Engine,
        message: format!("the local engine address `{address}` is not supported"),
        hint: Some("use unix:///path/to/docker.sock or tcp://host:port".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enabled_handlers_with_the_fix_flag_are_usable() {
        let output = "== qemu-aarch64\nenabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\n\
                      == qemu-ppc64le\ndisabled\ninterpreter /x\nflags: POF\n\
                      == qemu-s390x\nenabled\ninterpreter /x\nflags: P\n\
                      == qemu-riscv64\nenabled\nflags: F\n";
        assert_eq!(usable_handlers(output), ["qemu-aarch64", "qemu-riscv64"]);
        assert!(usable_handlers("").is_empty());
    }

    fn entry(name: &str, jobs: u32) -> Runner {
        Runner {
            name: name.to_owned(),
            host: RunnerHost::Ssh(name.to_owned()),
            platforms: Vec::new(),
            engine: None,
            jobs,
            network: mab_config::NetworkMode::default(),
        }
    }

    /// `alias`, resolved to `address` port 22 as user `builder`.
    fn destination(alias: &str, address: &str) -> Destination {
        Destination {
            alias: alias.to_owned(),
            host_name: address.to_owned(),
            port: 22,
            user: "builder".to_owned(),
            identity_files: Vec::new(),
            identities_only: false,
            known_hosts_files: Vec::new(),
            connect_timeout: None,
            strict_host_key_checking: mab_ssh::StrictHostKeyChecking::default(),
            server_alive: mab_ssh::ServerAlive::default(),
            jumps: Vec::new(),
        }
    }

    /// The build slots of the entries that share one connection are
    /// counted per host, whatever name each entry reaches it by: entries
    /// naming one engine share its slots (the largest `jobs` counts), a
    /// host's engines add up, and a host is crowded beyond
    /// [`mab_ssh::SESSION_CHANNELS`], not at it.
    #[test]
    fn slots_are_counted_per_connection() {
        // (what the row shows, entries as (name, alias, address, jobs,
        // engine), the crowded hosts as (host, slots, entries))
        type Row<'a> = (
            &'a str,
            Vec<(&'a str, &'a str, &'a str, u32, &'a str)>,
            Vec<(&'a str, u64, Vec<&'a str>)>,
        );
        let (one, two) = (
            "unix:///var/run/docker.sock",
            "unix:///run/user/1000/docker.sock",
        );
        let rows: Vec<Row<'_>> = vec![
            (
                "5 + 5 on two engines of one host, named two ways",
                vec![
                    ("a", "arm", "127.0.0.2", 5, one),
                    ("b", "arm-too", "127.0.0.2", 5, two),
                ],
                vec![("`arm` (127.0.0.2:22)", 10, vec!["a", "b"])],
            ),
            (
                "5 + 5 naming one engine share its 5 slots",
                vec![
                    ("a", "arm", "127.0.0.2", 5, one),
                    ("b", "arm-too", "127.0.0.2", 5, one),
                ],
                vec![],
            ),
            (
                "6 + 6 on one engine and 3 on another: 9",
                vec![
                    ("a", "arm", "127.0.0.2", 6, one),
                    ("b", "arm", "127.0.0.2", 6, one),
                    ("c", "arm", "127.0.0.2", 3, two),
                ],
                vec![("`arm` (127.0.0.2:22)", 9, vec!["a", "b", "c"])],
            ),
            (
                "4 + 4 on two engines: room for both",
                vec![
                    ("a", "arm", "127.0.0.2", 4, one),
                    ("b", "arm", "127.0.0.2", 4, two),
                ],
                vec![],
            ),
            (
                "one entry with 8",
                vec![("a", "arm", "127.0.0.2", 8, one)],
                vec![],
            ),
            (
                "one entry with 9",
                vec![("a", "arm", "127.0.0.2", 9, one)],
                vec![("`arm` (127.0.0.2:22)", 9, vec!["a"])],
            ),
            (
                "5 on each of two hosts",
                vec![
                    ("a", "arm", "127.0.0.2", 5, one),
                    ("p", "power", "127.0.0.3", 5, one),
                ],
                vec![],
            ),
            (
                "two crowded hosts, in the order of their first entries",
                vec![
                    ("p1", "power", "127.0.0.3", 6, one),
                    ("a1", "arm", "127.0.0.2", 6, one),
                    ("a2", "arm", "127.0.0.2", 6, two),
                    ("p2", "power", "127.0.0.3", 6, two),
                ],
                vec![
                    ("`power` (127.0.0.3:22)", 12, vec!["p1", "p2"]),
                    ("`arm` (127.0.0.2:22)", 12, vec!["a1", "a2"]),
                ],
            ),
        ];
        for (name, entries, expected) in rows {
            let hosts = Hosts::default();
            let runners: Vec<Runner> = entries
                .iter()
                .map(|(runner, _, _, jobs, engine)| Runner {
                    engine: Some((*engine).to_owned()),
                    ..entry(runner, *jobs)
                })
                .collect();
            // Met in another order than the file's, as connecting goes.
            for ((_, alias, address, _, _), runner) in entries.iter().zip(&runners).rev() {
                hosts.host(runner, &destination(alias, address));
            }
            // An entry not reached over SSH counts for nothing.
            let local = entry("local", 100);
            let mut listed: Vec<&Runner> = runners.iter().collect();
            listed.push(&local);
            let got: Vec<(String, u64, Vec<String>)> = hosts
                .crowded(&listed)
                .into_iter()
                .map(|crowded| {
                    let names = crowded
                        .runners
                        .iter()
                        .map(|(name, _)| name.clone())
                        .collect();
                    (crowded.host.clone(), crowded.slots, names)
                })
                .collect();
            let expected: Vec<(String, u64, Vec<String>)> = expected
                .into_iter()
                .map(|(host, slots, names)| {
                    (
                        host.to_owned(),
                        slots,
                        names.into_iter().map(str::to_owned).collect(),
                    )
                })
                .collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    /// Entries without `engine` share the default socket's slots until
    /// one's engine is found at another socket: then the engines add up.
    #[test]
    fn a_found_engine_counts_as_its_own() {
        let hosts = Hosts::default();
        let runners = [entry("a", 5), entry("b", 5)];
        for runner in &runners {
            hosts.host(runner, &destination("arm", "127.0.0.2"));
        }
        let listed: Vec<&Runner> = runners.iter().collect();
        assert!(hosts.crowded(&listed).is_empty());
        hosts.engine_found("b", "unix:///run/podman/podman.sock");
        let crowded = hosts.crowded(&listed);
        assert_eq!(
            crowded
                .iter()
                .map(|crowded| crowded.slots)
                .collect::<Vec<_>>(),
            [10]
        );
    }

    #[test]
    fn a_crowded_host_is_named_with_its_entries_and_a_hint() {
        let two = Crowded {
            host: "`arm` (127.0.0.2:22)".to_owned(),
            runners: vec![("a".to_owned(), 5), ("b".to_owned(), 5)],
            slots: 10,
        };
        assert_eq!(
            two.warning(),
            "host `arm` (127.0.0.2:22) is given 10 build slots at once by runners `a` (jobs = 5), `b` (jobs = 5), \
             but one SSH connection holds at most 8 at once: at most 8 builds run at once on that host, \
             the others wait for a free slot; \
             hint: lower the `jobs` of those runners so that at most 8 are held at once \
             (entries naming the same engine share its slots: the largest `jobs` of them counts)"
        );
        // A fleet's entries are counted past the first few.
        let many = Crowded {
            host: "`arm` (127.0.0.2:22)".to_owned(),
            runners: (0..12).map(|index| (format!("arm-{index}"), 1)).collect(),
            slots: 12,
        };
        let warning = many.warning();
        assert!(
            warning.contains("by runners `arm-0` (jobs = 1), `arm-1` (jobs = 1), `arm-2` (jobs = 1), `arm-3` (jobs = 1), `arm-4` (jobs = 1) and 7 more, "),
            "{warning}"
        );
        assert!(
            warning.contains("given 12 build slots at once"),
            "{warning}"
        );
    }

    /// The sockets are looked for in a fixed order, the rootless ones in
    /// the runtime directory given.
    #[test]
    fn engine_sockets_come_in_order() {
        assert_eq!(
            engine_sockets("/run/user/1000"),
            [
                "/var/run/docker.sock",
                "/run/podman/podman.sock",
                "/run/user/1000/podman/podman.sock",
                "/run/user/1000/docker.sock",
            ]
        );
    }

    /// The first path that is a socket is found; files, directories and
    /// missing paths before it are missing, and nothing after it is
    /// looked at.
    #[test]
    fn the_first_socket_is_found() {
        let directory = tempfile::tempdir().unwrap();
        let path = |name: &str| directory.path().join(name).display().to_string();
        std::fs::write(path("file.sock"), "").unwrap();
        std::fs::create_dir(path("directory.sock")).unwrap();
        let _first = std::os::unix::net::UnixListener::bind(path("first.sock")).unwrap();
        let _second = std::os::unix::net::UnixListener::bind(path("second.sock")).unwrap();
        let names = [
            "missing.sock",
            "file.sock",
            "directory.sock",
            "first.sock",
            "second.sock",
        ];
        assert_eq!(
            search_paths(names.map(path)),
            SocketSearch {
                missing: vec![
                    path("missing.sock"),
                    path("file.sock"),
                    path("directory.sock")
                ],
                found: Some(path("first.sock")),
            }
        );
        assert_eq!(
            search_paths(["missing.sock", "file.sock"].map(path)),
            SocketSearch {
                missing: vec![path("missing.sock"), path("file.sock")],
                found: None,
            }
        );
    }

    /// The script run on a runner's host finds what mab finds here, for
    /// the same runtime directory, `$XDG_RUNTIME_DIR` or `/run/user/UID`.
    #[test]
    fn the_host_script_looks_as_mab_does_here() {
        let runtime = tempfile::tempdir().unwrap();
        std::fs::create_dir(runtime.path().join("podman")).unwrap();
        let _podman =
            std::os::unix::net::UnixListener::bind(runtime.path().join("podman/podman.sock"))
                .unwrap();
        let output = std::process::Command::new("sh")
            .args(["-c", &search_script()])
            .env("XDG_RUNTIME_DIR", runtime.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let runtime = runtime.path().display().to_string();
        let searched = parse_search(&String::from_utf8(output.stdout).unwrap());
        assert_eq!(searched, search_here(&runtime));
        // The rootless Podman socket is there, whatever else this machine has.
        assert!(searched.found.is_some(), "{searched:?}");

        let output = std::process::Command::new("sh")
            .args(["-c", &search_script()])
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap();
        let uid = rustix::process::getuid().as_raw();
        assert_eq!(
            parse_search(&String::from_utf8(output.stdout).unwrap()),
            search_here(&format!("/run/user/{uid}"))
        );
    }

    #[test]
    fn no_socket_is_an_error_naming_every_path_looked_at() {
        let runner = entry("builder", 1);
        let search = SocketSearch {
            missing: engine_sockets("/run/user/1000").to_vec(),
            found: None,
        };
        let error = found_socket(&runner, "host `arm` (127.0.0.2:22)", search).unwrap_err();
        assert_eq!(error.kind, UnreachableKind::Engine);
        assert_eq!(
            error.message,
            "runner `builder` sets no `engine`, and host `arm` (127.0.0.2:22) has no engine socket at \
             /var/run/docker.sock, /run/podman/podman.sock, /run/user/1000/podman/podman.sock, /run/user/1000/docker.sock"
        );
        assert!(error.hint.unwrap().contains("set the runner's `engine`"));
        // Found after the default: another socket than the default.
        let search = SocketSearch {
            missing: vec!["/var/run/docker.sock".to_owned()],
            found: Some("/run/podman/podman.sock".to_owned()),
        };
        assert_eq!(
            found_socket(&runner, "this machine", search).unwrap(),
            ("unix:///run/podman/podman.sock".to_owned(), true)
        );
        let search = SocketSearch {
            missing: Vec::new(),
            found: Some("/var/run/docker.sock".to_owned()),
        };
        assert_eq!(
            found_socket(&runner, "this machine", search).unwrap(),
            ("unix:///var/run/docker.sock".to_owned(), false)
        );
    }

    #[test]
    fn local_engine_lookup_order() {
        let home = tempfile::tempdir().unwrap();
        let mut environment = Environment {
            home: home.path().to_owned(),
            ..Environment::default()
        };
        assert_eq!(local_engine_address(None, &environment), None);

        let docker = home.path().join(".docker");
        let name_hash = mab_registry::sha256_digest(b"lab");
        let meta = docker
            .join("contexts/meta")
            .join(name_hash.trim_start_matches("sha256:"));
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(docker.join("config.json"), r#"{"currentContext":"lab"}"#).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"lab","Endpoints":{"docker":{"Host":"unix:///run/lab.sock"}}}"#,
        )
        .unwrap();
        assert_eq!(
            local_engine_address(None, &environment).as_deref(),
            Some("unix:///run/lab.sock")
        );

        environment.docker_host = Some("tcp://127.0.0.1:2375".to_owned());
        assert_eq!(
            local_engine_address(None, &environment).as_deref(),
            Some("tcp://127.0.0.1:2375")
        );
        assert_eq!(
            local_engine_address(Some("unix:///x.sock"), &environment).as_deref(),
            Some("unix:///x.sock")
        );
    }
}
