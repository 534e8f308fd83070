//! Builds and pushes on Podman's API service (`podman system service`).
//!
//! Podman has no BuildKit session: its build API (`POST
//! /v4.0.0/libpod/build`, Podman 4) takes the context as a tar body. So
//! that the context does not cross the SSH link whole on every build, mab
//! keeps a copy of it on the engine's host ([`crate::contextcopy`]: only
//! what changed is sent), and the tar is made there, from that copy, by a
//! command run on the host ([`HostShell`]) that sends it to the socket
//! with `curl`:
//!
//! ```text
//! tar -C COPY -cf - . -C WORK .mab-NONCE … | curl --unix-socket SOCKET -T - …/libpod/build?…
//! ```
//!
//! The Dockerfile and the build's secrets travel in the command's stdin (a
//! small tar unpacked into `WORK`, a directory in `/dev/shm` that only the
//! SSH user can read, removed when the command ends) and are added to the
//! body under names beginning with `.mab-NONCE`: the Dockerfile as
//! `.mab-NONCE/Dockerfile` (the `dockerfile` parameter), each secret as
//! `.mab-NONCE-sI`, which Podman moves out of the context before the build
//! (the `secrets` parameter's `src` is relative to the context). The
//! build's `excludes` parameter names `.mab-NONCE*`: so those never reach a
//! `COPY`, and, being not empty, it keeps Buildah from reading a
//! `.dockerignore` or `.containerignore` in the context (mab's own rules
//! already chose the copy's files; Buildah's matcher differs from
//! Docker's).
//!
//! A build that is dropped midway (Ctrl-C, a time limit, another
//! platform's failure) is stopped on the host: a client that goes away
//! leaves Buildah's `RUN` processes running (podman#28502, buildah#6786),
//! so every build runs its steps in a cgroup of its own (the
//! `cgroupparent` parameter, `mab-build-NONCE`), and the clean-up kills
//! the command, then every process in that cgroup, and removes `WORK`
//! ([`finish_cleanups`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use mab_context::BuildContext;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::contextcopy::{self, quoted as quote};
use crate::leftover::Leftovers;
use crate::{
    percent_encode, pushed_digest, response_message, transport, BuildEvent, BuildSpec, BuildStats,
    Engine, EngineError, HostCommand, HostShell, LogTail,
};

/// The media type Podman is asked to write images in (as `podman build`
/// does; without it, the build API writes no layer cache it can reuse).
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// How long a step's line waits for the next one before the step is told
/// as running: Buildah follows the line of a cached step with `--> Using
/// cache ID` at once, and a step that runs may print nothing for minutes.
const STEP_WAIT: Duration = Duration::from_millis(300);

/// Where the Dockerfile and the secrets wait on the host during a build: a
/// tmpfs on every Linux host.
const WORK_PARENT: &str = "/dev/shm";

/// The engine's host and its socket there, for a Podman engine.
#[derive(Clone)]
pub(crate) struct PodmanHost {
    pub(crate) shell: Arc<dyn HostShell>,
    /// The socket's path on that host (`/run/podman/podman.sock`).
    pub(crate) socket: String,
}

/// The names one build uses on the host, all made from one random nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Names {
    /// 16 hex digits.
    nonce: String,
}

impl Names {
    /// A random nonce from the operating system's generator. Errors: it
    /// could not be read (a guessable name would let another user of the
    /// host prepare the build's work directory).
    fn new() -> std::io::Result<Names> {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes)
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        Ok(Names {
            nonce: bytes.iter().map(|byte| format!("{byte:02x}")).collect(),
        })
    }

    /// `mab-build-NONCE`: the work directory's name and the cgroup's.
    fn tag(&self) -> String {
        format!("mab-build-{}", self.nonce)
    }

    /// The work directory on the host.
    fn work(&self) -> String {
        format!("{WORK_PARENT}/{}", self.tag())
    }

    /// The directory of the Dockerfile in the build's body.
    fn dockerfile_dir(&self) -> String {
        format!(".mab-{}", self.nonce)
    }

    /// The name of the `index`-th secret in the build's body.
    fn secret(&self, index: usize) -> String {
        format!(".mab-{}-s{index}", self.nonce)
    }

    /// A regular expression that matches the build's command lines but
    /// not its own text (so that `pkill -f` run by a command that holds it
    /// does not kill that command).
    fn pattern(&self) -> String {
        let tag = self.tag();
        let (first, rest) = tag.split_at(1);
        format!("[{first}]{rest}")
    }
}

/// The query of a libpod build of `spec` from a body that holds the
/// context, the Dockerfile as `.mab-NONCE/Dockerfile` and the secrets as
/// `.mab-NONCE-sI`. `cgroup_parent` places the build's steps.
fn build_query(spec: &BuildSpec, names: &Names, secrets: &[String], cgroup_parent: &str) -> String {
    let json = |value: serde_json::Value| value.to_string();
    let mut pairs: Vec<(&str, String)> = vec![
        ("t", spec.image.clone()),
        ("platform", spec.platform.to_string()),
        (
            "dockerfile",
            format!("{}/Dockerfile", names.dockerfile_dir()),
        ),
        (
            "excludes",
            json(serde_json::json!([format!("{}*", names.dockerfile_dir())])),
        ),
        ("layers", "true".to_owned()),
        // Intermediate containers go even when the build fails or is
        // stopped (else Buildah leaves its working containers in storage).
        ("rm", "true".to_owned()),
        ("forcerm", "true".to_owned()),
        ("outputformat", OCI_MANIFEST.to_owned()),
        ("buildargs", json(serde_json::json!(spec.args))),
        ("cgroupparent", cgroup_parent.to_owned()),
    ];
    if !spec.labels.is_empty() {
        pairs.push(("labels", json(serde_json::json!(spec.labels))));
    }
    if let Some(target) = &spec.target {
        pairs.push(("target", target.clone()));
    }
    match spec.network.as_str() {
        "host" => pairs.push((
            "nsoptions",
            json(serde_json::json!([{"Name": "network", "Host": true}])),
        )),
        // As `podman build --network none` asks for it: a network
        // namespace of its own, left unconfigured.
        "none" => {
            pairs.push(("nsoptions", json(serde_json::json!([{"Name": "network"}]))));
            pairs.push(("networkmode", "NetworkDisabled".to_owned()));
        }
        _ => {}
    }
    if !secrets.is_empty() {
        pairs.push(("secrets", json(serde_json::json!(secrets))));
    }
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Exit status of the build command when its work directory could not be
/// made or filled (another one of that name exists, `/dev/shm` is full).
const WORK_FAILED: u32 = 4;

/// Exit status of the build command when `tar` could not read the context
/// copy whole (the build's answer then describes a tar with files missing).
const COPY_UNREADABLE: u32 = 3;

/// Kills every process in the build's cgroup, three times over (a step may
/// be starting); `sh` text of [`build_script`] and [`cleanup_script`].
fn cgroup_kill(pattern: &str) -> String {
    format!(
        "for pass in 1 2 3; do \
           for f in /proc/[0-9]*/cgroup; do \
             if grep -q {pattern} \"$f\" 2>/dev/null; then \
               p=${{f#/proc/}}; kill -KILL \"${{p%/cgroup}}\" 2>/dev/null; \
             fi; \
           done; sleep 0.5; \
         done"
    )
}

/// The command that runs the build on the host, with `input` bytes (the
/// Dockerfile and the secrets, [`build_input`]) first on its stdin:
///
/// 1. makes the work directory (mode 0700; one that exists already is an
///    error, [`WORK_FAILED`]: never a directory someone else made) and
///    unpacks exactly `input` bytes of stdin there;
/// 2. sends the copy and those files to the build API (`tar` under a shared
///    lock on the copy, piped to `curl`, which prints the API's answer,
///    headers first), in the background;
/// 3. meanwhile a watcher reads the rest of stdin: when it ends before the
///    build did (mab dropped the command, or its connection closed), it
///    kills every process in the build's cgroup, then `curl`, so that the
///    build stops even when mab cannot come back to clean up;
/// 4. ends with `curl`'s status, or [`COPY_UNREADABLE`] when `tar` failed
///    (a file of the copy it could not read).
///
/// A background command's stdin is `/dev/null` in `sh`: the watcher reads
/// the command's stdin through descriptor 3.
fn build_script(
    copy: &contextcopy::ContextCopy,
    names: &Names,
    input: usize,
    members: &[String],
    socket: &str,
    query: &str,
) -> String {
    let work = quote(&names.work());
    let members: Vec<String> = members.iter().map(|member| quote(member)).collect();
    let url = quote(&format!("http://podman/v4.0.0/libpod/build?{query}"));
    let script = format!(
        "umask 077; W={work}; \
         mkdir -m 700 \"$W\" || exit {WORK_FAILED}; trap 'rm -rf \"$W\"' EXIT; \
         head -c {input} | tar -x -f - -C \"$W\" || exit {WORK_FAILED}; \
         exec 3<&0; \
         {{ flock -s {lock} tar -C {root} -cf - . -C \"$W\" {members} \
             || echo \"$?\" > \"$W/tar-failed\"; }} | \
         curl -sS -i --no-buffer -H 'Expect:' -H 'Content-Type: application/x-tar' \
         --unix-socket {socket} -X POST -T - {url} & \
         c=$!; \
         ( cat <&3 >/dev/null; {cgroup_kill}; kill -KILL \"$c\" ) >/dev/null 2>&1 & \
         w=$!; exec 3<&-; \
         wait \"$c\"; s=$?; kill \"$w\" 2>/dev/null; \
         if [ -s \"$W/tar-failed\" ]; then \
           echo \"tar could not read the context copy {root} whole (it exited with $(cat \"$W/tar-failed\"))\" >&2; \
           exit {COPY_UNREADABLE}; \
         fi; exit $s",
        lock = quote(&copy.lock),
        root = quote(&copy.root),
        members = members.join(" "),
        socket = quote(socket),
        cgroup_kill = cgroup_kill(&quote(&names.pattern())),
    );
    format!("sh -c {}", quote(&script))
}

/// The command that stops a build dropped midway, when mab can still reach
/// its host (the build's own watcher, [`build_script`], does the same when
/// the command's stdin ends): kills every process in the build's cgroup,
/// then its command (the shell, `tar` and `curl`, whose command lines name
/// the build's tag), removes the work directory, and fails, naming them,
/// when any of those processes is still there. It names the tag only
/// through [`Names::pattern`] (a regular expression for `pkill`, `pgrep`
/// and `grep`, a glob for `rm`), never as is: `pkill -f` would otherwise
/// find the clean-up's own shell.
fn cleanup_script(names: &Names) -> String {
    let pattern = quote(&names.pattern());
    let script = format!(
        "{cgroup_kill}; pkill -KILL -f {pattern} 2>/dev/null; sleep 0.5; \
         rm -rf {WORK_PARENT}/{glob}; \
         left=$(pgrep -f {pattern}; \
           for f in /proc/[0-9]*/cgroup; do \
             if grep -q {pattern} \"$f\" 2>/dev/null; then p=${{f#/proc/}}; echo \"${{p%/cgroup}}\"; fi; \
           done); \
         if [ -n \"$left\" ]; then echo \"processes still running:\" $left >&2; exit 1; fi",
        cgroup_kill = cgroup_kill(&pattern),
        // Letters, digits, `-` and a bracket expression: a glob as is.
        glob = names.pattern(),
    );
    format!("sh -c {}", quote(&script))
}

/// The stdin of a build command and what its query names of it.
struct BuildInput {
    /// A tar of the Dockerfile and the secrets, wiped when dropped.
    tar: zeroize::Zeroizing<Vec<u8>>,
    /// The names in the work directory to add to the build's tar.
    members: Vec<String>,
    /// The `secrets` parameter's entries (`id=ID,src=.mab-NONCE-sI`).
    secrets: Vec<String>,
}

/// The stdin of the build command: a tar of the Dockerfile (as
/// `.mab-NONCE/Dockerfile`) and of each secret (as `.mab-NONCE-sI`, mode
/// 0600), held in memory that is wiped when dropped.
fn build_input(dockerfile: &[u8], spec: &BuildSpec, names: &Names) -> std::io::Result<BuildInput> {
    // Room for every header and block up front: a buffer that grows
    // would leave copies of the secrets behind, unwiped.
    let values: usize = spec
        .secrets
        .iter()
        .map(|(_, value)| value.bytes().len())
        .sum();
    let entries = spec.secrets.iter().count() + 1;
    let mut tar = zeroize::Zeroizing::new(Vec::with_capacity(
        dockerfile.len() + values + entries * 1024 + 2048,
    ));
    let mut members = vec![names.dockerfile_dir()];
    let mut secrets = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut *tar);
        let mut append = |name: &str, mode: u32, bytes: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(mode);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, bytes)
        };
        append(
            &format!("{}/Dockerfile", names.dockerfile_dir()),
            0o644,
            dockerfile,
        )?;
        for (index, (id, value)) in spec.secrets.iter().enumerate() {
            // The `secrets` parameter is `id=ID,src=FILE`: a comma in the
            // id would end it.
            if id.contains(',') {
                return Err(std::io::Error::other(format!(
                    "the secret id `{id}` holds a comma, which Podman's build API cannot take"
                )));
            }
            let name = names.secret(index);
            append(&name, 0o600, value.bytes())?;
            secrets.push(format!("id={id},src={name}"));
            members.push(name);
        }
        builder.finish()?;
    }
    Ok(BuildInput {
        tar,
        members,
        secrets,
    })
}

/// Clean-ups of dropped builds, left to tasks (what each stops):
/// [`finish_cleanups`] waits for them.
static CLEANUPS: Leftovers<String> = Leftovers::new();

/// Waits, up to `limit` in all, for the clean-ups of Podman builds that
/// were dropped midway (see the module's text); returns a warning for each
/// that failed or did not end in time. Call it before the runtime shuts
/// down (which would cancel the tasks).
pub async fn finish_cleanups(limit: Duration) -> Vec<String> {
    CLEANUPS
        .finish(limit, "it")
        .await
        .into_iter()
        .map(|(what, why)| {
            format!(
                "could not stop {what} ({why}); hint: look for its processes there with `pgrep -af mab-build-` and in its engine with `podman ps --external`"
            )
        })
        .collect()
}

/// Stops the build on its host when dropped before [`Armed::disarm`]: its
/// command, its steps' processes and its work directory (see
/// [`cleanup_script`]), in a task of the current runtime listed for
/// [`finish_cleanups`].
struct Armed {
    shell: Arc<dyn HostShell>,
    names: Names,
    label: String,
    armed: bool,
}

impl Armed {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (shell, script) = (self.shell.clone(), cleanup_script(&self.names));
        tracing::debug!("stopping build {} on {}", self.names.tag(), self.label);
        CLEANUPS.leave(
            format!("build {} on runner `{}`", self.names.tag(), self.label),
            async move {
                let command = shell
                    .start(&script)
                    .await
                    .map_err(|error| error.to_string())?;
                let exit = command.wait().await.map_err(|error| error.to_string())?;
                match exit.success() {
                    true => Ok(()),
                    false => Err(format!("the clean-up command said: {}", exit.stderr.trim())),
                }
            },
        );
    }
}

/// What the lines of a Buildah build's output told so far.
#[derive(Default)]
struct Steps {
    log: LogTail,
    /// A step whose line came, not yet told (the next line says whether
    /// it was found in the cache: `--> Using cache ID`).
    pending: Option<String>,
    /// The last step told.
    current: Option<String>,
    /// Text of the `stream` messages after their last `\n`.
    partial: String,
}

impl Steps {
    /// Takes the text of one `stream` message.
    fn stream(&mut self, text: &str, on_event: &mut impl FnMut(BuildEvent)) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.line(line.trim_end(), on_event);
        }
    }

    fn line(&mut self, line: &str, on_event: &mut impl FnMut(BuildEvent)) {
        if line.trim().is_empty() {
            return;
        }
        self.log.push(line);
        if let Some(step) = self.pending.take() {
            let cached = line.starts_with("--> Using cache ");
            on_event(BuildEvent::Step {
                name: step.clone(),
                cached,
            });
            self.current = Some(step);
            if cached {
                return;
            }
        }
        if is_step(line) {
            self.pending = Some(line.to_owned());
            return;
        }
        on_event(BuildEvent::Log(line.to_owned()));
    }

    /// Tells the step whose line came as running (not cached), if any.
    fn tell_pending(&mut self, on_event: &mut impl FnMut(BuildEvent)) {
        if let Some(step) = self.pending.take() {
            on_event(BuildEvent::Step {
                name: step.clone(),
                cached: false,
            });
            self.current = Some(step);
        }
    }

    /// Tells what is still held (the output ended).
    fn flush(&mut self, on_event: &mut impl FnMut(BuildEvent)) {
        let rest = std::mem::take(&mut self.partial);
        self.line(rest.trim_end(), on_event);
        self.tell_pending(on_event);
    }
}

/// Whether a line of Buildah's output starts a step (`STEP 2/3: COPY …`,
/// `[1/2] STEP 1/4: FROM …`).
fn is_step(line: &str) -> bool {
    let rest = match line.strip_prefix('[') {
        Some(labelled) => match labelled.split_once("] ") {
            Some((_, rest)) => rest,
            None => return false,
        },
        None => line,
    };
    rest.strip_prefix("STEP ")
        .and_then(|rest| rest.split_once(": "))
        .and_then(|(position, _)| position.split_once('/'))
        .is_some_and(|(index, total)| index.parse::<u32>().is_ok() && total.parse::<u32>().is_ok())
}

/// The status of the first response `curl -i` printed (`HTTP/1.1 200 OK`);
/// interim `1xx` responses are skipped by the caller.
fn status_of(line: &str) -> Option<u16> {
    let mut words = line.split_whitespace();
    words.next()?.strip_prefix("HTTP/")?;
    words.next()?.parse().ok()
}

impl Engine {
    /// The Podman host access, or the error that says it is missing.
    fn podman_host(&self) -> Result<&PodmanHost, EngineError> {
        self.podman.as_ref().ok_or_else(|| EngineError::Api {
            engine: self.label.clone(),
            message: "this is Podman's API service, and building there needs commands on its host, which this connection cannot run".to_owned(),
        })
    }

    /// The cgroup parent of a build's steps: a plain path under Podman's
    /// `cgroupfs` manager, a `slice:prefix:name` triple under `systemd`
    /// (runc's form for it). Both contain [`Names::tag`].
    async fn cgroup_parent(&self, names: &Names) -> String {
        let request = http::Request::get("/v4.0.0/libpod/info").body(Empty::<Bytes>::new());
        let manager = match request {
            Ok(request) => match transport::send(&self.connect, request).await {
                Ok(response) => response
                    .into_body()
                    .collect()
                    .await
                    .ok()
                    .and_then(|body| {
                        serde_json::from_slice::<serde_json::Value>(&body.to_bytes()).ok()
                    })
                    .and_then(|info| info["host"]["cgroupManager"].as_str().map(str::to_owned)),
                Err(_) => None,
            },
            Err(_) => None,
        };
        match manager.as_deref() {
            Some("systemd") => format!("{}.slice:mab:{}", names.tag(), names.nonce),
            _ => names.tag(),
        }
    }

    /// [`Engine::build`] on Podman's API service (see the module's text).
    pub(crate) async fn podman_build(
        &self,
        spec: &BuildSpec,
        context: &BuildContext,
        mut on_event: impl FnMut(BuildEvent),
    ) -> Result<BuildStats, EngineError> {
        let host = self.podman_host()?.clone();
        if !spec.ssh_agents.is_empty() {
            return Err(EngineError::Api {
                engine: self.label.clone(),
                message: "Podman's build API cannot forward an SSH agent (`--ssh`)".to_owned(),
            });
        }
        for reference in &spec.cache_from {
            on_event(BuildEvent::CacheImportFailed {
                reference: reference.clone(),
                error: "Podman's build API does not read BuildKit's registry cache".to_owned(),
            });
        }
        let dockerfile = std::fs::read(context.dockerfile()).map_err(|error| EngineError::Api {
            engine: self.label.clone(),
            message: format!("cannot read {}: {error}", context.dockerfile().display()),
        })?;
        let key = contextcopy::copy_key(context);
        let copy = contextcopy::sync(&*host.shell, context, &key)
            .await
            .map_err(|error| EngineError::ContextCopy {
                engine: self.label.clone(),
                error,
            })?;
        on_event(BuildEvent::Context {
            sent: copy.sent_bytes,
        });

        let api_error = |message: String| EngineError::Api {
            engine: self.label.clone(),
            message,
        };
        let names = Names::new()
            .map_err(|error| api_error(format!("cannot draw a name for the build: {error}")))?;
        let input = build_input(&dockerfile, spec, &names).map_err(|error| {
            api_error(format!(
                "cannot write the build's Dockerfile and secrets: {error}"
            ))
        })?;
        let cgroup_parent = self.cgroup_parent(&names).await;
        let query = build_query(spec, &names, &input.secrets, &cgroup_parent);
        let script = build_script(
            &copy,
            &names,
            input.tar.len(),
            &input.members,
            &host.socket,
            &query,
        );
        let no_answer = |message: String| EngineError::NoAnswer {
            engine: self.label.clone(),
            request: "POST /libpod/build".to_owned(),
            message,
        };
        // Armed before the command starts: a drop while it starts leaves
        // nothing running either.
        let mut armed = Armed {
            shell: host.shell.clone(),
            names: names.clone(),
            label: self.label.clone(),
            armed: true,
        };
        let mut command = match host.shell.start(&script).await {
            Ok(command) => command,
            Err(error) => {
                armed.disarm();
                return Err(no_answer(error.to_string()));
            }
        };
        // The command's stdin stays open after the input: its end tells
        // the build's watcher on the host to stop the build.
        if let Err(error) = command.write_all(&input.tar).await {
            let said = command
                .wait()
                .await
                .map(|exit| exit.stderr.trim().to_owned())
                .unwrap_or_default();
            return Err(no_answer(format!(
                "cannot send the Dockerfile to the build command ({error}): {said}"
            )));
        }
        drop(input);

        let result = self.follow_podman_build(command, &mut on_event).await;
        if !matches!(result, Err(EngineError::StreamBroken { .. })) {
            armed.disarm();
        }
        result.map(|()| BuildStats {
            context_bytes: copy.sent_bytes,
        })
    }

    /// Reads the build command's output (`curl -i`: the status line and
    /// headers, then the JSON lines) to its end.
    async fn follow_podman_build(
        &self,
        command: Box<dyn HostCommand>,
        on_event: &mut impl FnMut(BuildEvent),
    ) -> Result<(), EngineError> {
        let mut reader = BufReader::new(command);
        let mut status = None;
        let mut line = Vec::new();
        let mut steps = Steps::default();
        let mut answer = Vec::new();
        let broken = |message: String| EngineError::StreamBroken {
            engine: self.label.clone(),
            during: "the build",
            message,
        };
        // Headers: until the blank line after a final (not 1xx) status.
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|error| broken(error.to_string()))?;
            if read == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if let Some(code) = status_of(text) {
                status = Some(code);
            } else if text.is_empty() && status.is_some_and(|code| code >= 200) {
                break;
            }
        }
        let Some(status) = status else {
            let exit = reader.into_inner().wait().await;
            let said = exit
                .map(|exit| exit.stderr.trim().to_owned())
                .unwrap_or_else(|error| error.to_string());
            return Err(EngineError::NoAnswer {
                engine: self.label.clone(),
                request: "POST /libpod/build".to_owned(),
                message: format!("the build command on the host got no answer from the socket: {said}; hint: check that `curl`, `tar` and `flock` are installed there and that the socket is the engine's"),
            });
        };
        let mut failure = None;
        loop {
            line.clear();
            // A step whose line came is told as running once no line
            // follows at once (a cached one is followed at once by
            // `--> Using cache`). Bytes of a line read before the wait
            // ended stay in `line` for the next read.
            let read = loop {
                let reading = reader.read_until(b'\n', &mut line);
                if steps.pending.is_none() {
                    break reading.await;
                }
                match tokio::time::timeout(STEP_WAIT, reading).await {
                    Ok(read) => break read,
                    Err(_) => steps.tell_pending(on_event),
                }
            }
            .map_err(|error| broken(error.to_string()))?;
            if read == 0 {
                break;
            }
            if status != 200 {
                answer.extend_from_slice(&line);
                continue;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let message: serde_json::Value = serde_json::from_slice(&line).map_err(|error| {
                broken(format!(
                    "the engine sent a line that is not a build message ({error}): {}",
                    String::from_utf8_lossy(&line).trim_end()
                ))
            })?;
            if let Some(text) = message["stream"].as_str() {
                steps.stream(text, on_event);
            }
            let error = message["errorDetail"]["message"]
                .as_str()
                .or(message["error"].as_str())
                .filter(|error| !error.is_empty());
            if let Some(error) = error {
                failure = Some(error.trim().to_owned());
            }
        }
        steps.flush(on_event);
        let exit = reader
            .into_inner()
            .wait()
            .await
            .map_err(|error| broken(error.to_string()))?;
        if exit.status == Some(COPY_UNREADABLE) {
            // Whatever the build made, it lacked files of the context.
            return Err(EngineError::Api {
                engine: self.label.clone(),
                message: format!(
                    "{}; the build's result is not used (make the context's files readable by their owner, or leave them out with .dockerignore)",
                    exit.stderr.trim()
                ),
            });
        }
        if status != 200 {
            return Err(EngineError::Api {
                engine: self.label.clone(),
                message: format!(
                    "POST /libpod/build answered {status}: {}",
                    response_message(&answer)
                ),
            });
        }
        if let Some(message) = failure {
            if let Some(step) = &steps.current {
                steps.log.push(&format!("{step}: {message}"));
            }
            return Err(EngineError::BuildFailed {
                engine: self.label.clone(),
                message,
                log_tail: steps.log.into_lines(),
                step: steps.current,
            });
        }
        if !exit.success() {
            return Err(broken(format!(
                "the build command on the host ended with status {:?}: {}",
                exit.status,
                exit.stderr.trim()
            )));
        }
        Ok(())
    }

    /// [`Engine::push`] on Podman's API service: its Docker-compatible
    /// push, with `tlsVerify=false` for a registry on loopback (where
    /// Docker's engine speaks plain HTTP on its own, and Podman does not)
    /// and the credentials in `X-Registry-Auth` for this request only.
    pub(crate) async fn podman_push(
        &self,
        repository: &str,
        tag: &str,
        credentials: Option<&mab_registry::Credentials>,
    ) -> Result<String, EngineError> {
        use base64::Engine as _;
        let reference = format!("{repository}:{tag}");
        let failed = |message: String| EngineError::PushFailed {
            engine: self.label.clone(),
            reference: reference.clone(),
            message,
        };
        let registry = repository.split('/').next().unwrap_or_default();
        let mut query = format!("tag={}", percent_encode(tag));
        if repository.contains('/') && mab_registry::is_loopback(registry) {
            query.push_str("&tlsVerify=false");
        }
        let mut request = http::Request::post(format!("/v1.41/images/{}/push?{query}", repository));
        if let Some(credentials) = credentials {
            let auth = serde_json::json!({
                "username": credentials.username,
                "password": credentials.password,
                "identitytoken": credentials.identity_token,
                "serveraddress": credentials.server,
            });
            let encoded = base64::engine::general_purpose::URL_SAFE.encode(auth.to_string());
            request = request.header("X-Registry-Auth", encoded);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|error| failed(format!("cannot write the push request: {error}")))?;
        let response = transport::send(&self.connect, request)
            .await
            .map_err(|error| failed(crate::error_message(error)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| failed(error.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(failed(format!(
                "the engine answered {status}: {}",
                response_message(&body)
            )));
        }
        let mut digest = None;
        for line in body.split(|byte| *byte == b'\n') {
            let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(error) = message["error"].as_str().filter(|error| !error.is_empty()) {
                return Err(failed(error.trim().to_owned()));
            }
            if let Some(found) = message["status"].as_str().and_then(pushed_digest) {
                digest = Some(found.to_owned());
            }
        }
        digest.ok_or_else(|| failed("the engine did not report the pushed digest".to_owned()))
    }
}

/// The secrets of a build, by id, for tests.
#[cfg(test)]
fn secrets(values: &[(&str, &str)]) -> crate::Secrets {
    use std::collections::BTreeMap;
    crate::Secrets::new(
        values
            .iter()
            .map(|(id, value)| {
                (
                    (*id).to_owned(),
                    crate::SecretValue::new(value.as_bytes().to_vec()),
                )
            })
            .collect::<BTreeMap<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn names() -> Names {
        Names {
            nonce: "0123456789abcdef".to_owned(),
        }
    }

    fn spec() -> BuildSpec {
        BuildSpec {
            image: "127.0.0.1:5000/app:mab-1-linux-ppc64le".to_owned(),
            platform: "linux/ppc64le".parse().unwrap(),
            target: Some("final".to_owned()),
            args: BTreeMap::from([("GREETING".to_owned(), "hello world".to_owned())]),
            labels: BTreeMap::new(),
            network: "host".to_owned(),
            cache_from: Vec::new(),
            credential_sources: None,
            secrets: secrets(&[("token", "s3cret")]),
            ssh_agents: crate::SshAgents::default(),
        }
    }

    fn decoded(query: &str) -> BTreeMap<String, String> {
        query
            .split('&')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap();
                let mut bytes = Vec::new();
                let mut rest = value.as_bytes();
                while let Some((&byte, tail)) = rest.split_first() {
                    if byte == b'%' {
                        let hex = std::str::from_utf8(&tail[..2]).unwrap();
                        bytes.push(u8::from_str_radix(hex, 16).unwrap());
                        rest = &tail[2..];
                    } else {
                        bytes.push(byte);
                        rest = tail;
                    }
                }
                (name.to_owned(), String::from_utf8(bytes).unwrap())
            })
            .collect()
    }

    #[test]
    fn the_build_query_hides_mabs_own_files_and_turns_off_buildahs_ignore_file() {
        let query = decoded(&build_query(
            &spec(),
            &names(),
            &["id=token,src=.mab-0123456789abcdef-s0".to_owned()],
            "mab-build-0123456789abcdef",
        ));
        assert_eq!(query["dockerfile"], ".mab-0123456789abcdef/Dockerfile");
        assert_eq!(query["excludes"], r#"[".mab-0123456789abcdef*"]"#);
        assert_eq!(query["platform"], "linux/ppc64le");
        assert_eq!(query["t"], "127.0.0.1:5000/app:mab-1-linux-ppc64le");
        assert_eq!(query["buildargs"], r#"{"GREETING":"hello world"}"#);
        assert_eq!(query["target"], "final");
        assert_eq!(query["nsoptions"], r#"[{"Host":true,"Name":"network"}]"#);
        assert_eq!(
            query["secrets"],
            r#"["id=token,src=.mab-0123456789abcdef-s0"]"#
        );
        assert_eq!(query["cgroupparent"], "mab-build-0123456789abcdef");
        assert_eq!(query["layers"], "true");
        assert_eq!(query["forcerm"], "true");
        assert_eq!(query["outputformat"], OCI_MANIFEST);
        assert!(!query.contains_key("labels"));
    }

    #[test]
    fn the_build_input_holds_the_dockerfile_and_each_secret() {
        let BuildInput {
            tar: input,
            members,
            secrets,
        } = build_input(b"FROM scratch\n", &spec(), &names()).unwrap();
        assert_eq!(
            members,
            [".mab-0123456789abcdef", ".mab-0123456789abcdef-s0"]
        );
        assert_eq!(secrets, ["id=token,src=.mab-0123456789abcdef-s0"]);
        let mut archive = tar::Archive::new(&input[..]);
        let entries: Vec<(String, u32, String)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
                (
                    entry.path().unwrap().to_str().unwrap().to_owned(),
                    entry.header().mode().unwrap(),
                    text,
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                (
                    ".mab-0123456789abcdef/Dockerfile".to_owned(),
                    0o644,
                    "FROM scratch\n".to_owned()
                ),
                (
                    ".mab-0123456789abcdef-s0".to_owned(),
                    0o600,
                    "s3cret".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_cleanup_never_names_the_build_as_is() {
        let names = names();
        assert_eq!(names.pattern(), "[m]ab-build-0123456789abcdef");
        let cleanup = cleanup_script(&names);
        assert!(cleanup.contains("pkill -KILL -f"));
        assert!(cleanup.contains("/dev/shm/"));
        assert!(!cleanup.contains(&names.tag()), "{cleanup}");
    }

    #[tokio::test]
    async fn the_cleanup_kills_the_builds_processes_and_not_itself() {
        let names = Names::new().unwrap();
        // A process whose command line names the build, as its `curl`'s does.
        let mut build = std::process::Command::new("bash")
            .args(["-c", &format!("exec -a {}-curl sleep 300", names.tag())])
            .spawn()
            .unwrap();
        std::fs::create_dir_all(names.work()).unwrap();
        let command = crate::LocalShell
            .start(&cleanup_script(&names))
            .await
            .unwrap();
        let exit = command.wait().await.unwrap();
        assert!(exit.success(), "{exit:?}");
        let status = build.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(!std::path::Path::new(&names.work()).exists());
    }

    #[test]
    fn buildah_steps_are_told_once_with_their_cache() {
        let mut steps = Steps::default();
        let mut events = Vec::new();
        let mut on_event = |event| events.push(event);
        for text in [
            "STEP 1/3: FROM scratch\n",
            "STEP 2/3: COPY busybox /bin/busybox\n--> Using cache 4057\n",
            "--> 4057\n",
            "STEP 3/3: RUN [\"/bin/busybox\",\"true\"]\n",
            "hello",
            " world\n",
            "COMMIT x\n",
        ] {
            steps.stream(text, &mut on_event);
        }
        steps.flush(&mut on_event);
        let step = |name: &str, cached| BuildEvent::Step {
            name: name.to_owned(),
            cached,
        };
        assert_eq!(
            events,
            [
                step("STEP 1/3: FROM scratch", false),
                step("STEP 2/3: COPY busybox /bin/busybox", true),
                BuildEvent::Log("--> 4057".to_owned()),
                step("STEP 3/3: RUN [\"/bin/busybox\",\"true\"]", false),
                BuildEvent::Log("hello world".to_owned()),
                BuildEvent::Log("COMMIT x".to_owned()),
            ]
        );
        assert_eq!(
            steps.current.as_deref(),
            Some("STEP 3/3: RUN [\"/bin/busybox\",\"true\"]")
        );
    }

    #[test]
    fn step_lines_and_statuses_are_recognised() {
        assert!(is_step("STEP 1/3: FROM scratch"));
        assert!(is_step("[2/2] STEP 4/4: RUN make"));
        assert!(!is_step("STEP x/3: FROM scratch"));
        assert!(!is_step("--> Using cache 1234"));
        assert_eq!(status_of("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_of("HTTP/1.1 100 Continue"), Some(100));
        assert_eq!(status_of("{\"stream\":\"x\"}"), None);
    }
}
