//! One job on one Docker engine: describe the engine, build an image for a
//! platform with BuildKit from a context directory on this machine, push it,
//! and report the pushed digest.
//!
//! The engine is reached through a [`Connect`] function that opens a byte
//! stream per request, so the same code drives a local socket and a socket
//! on a remote host behind an SSH channel. This crate knows nothing of SSH
//! or of other jobs.
//!
//! A build does what `docker build` does with BuildKit: it opens a BuildKit
//! session in which mab serves the context and the Dockerfile (see
//! `session` and `filesync`), then asks for the build with
//! `remote=client-session`. No tar is uploaded: the engine fetches the files
//! it needs, and on a warm cache only the ones that changed. The same
//! session serves the build's secrets (see `secrets`) and SSH agents (see
//! `sshforward`).
//!
//! Podman's API service has no such session: for it mab keeps a copy of
//! the context on the engine's host, brought up to date by
//! [`contextcopy::sync`] through commands run there ([`HostShell`];
//! [`LocalShell`] for this machine).

pub mod contextcopy;
mod filesync;
mod host;
mod leftover;
mod podman;
mod retry;
mod secrets;
mod session;
mod smoke;
mod sshforward;
mod transport;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io;
use std::pin::pin;

use bollard::auth::DockerCredentials;
use bollard::models::{BuildInfo, BuildInfoAux};
use bollard::query_parameters::{PushImageOptions, RemoveImageOptions};
use bollard::{ClientVersion, Docker};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use mab_config::Platform;
use mab_context::BuildContext;
use mab_events::Reporter;
use std::sync::Arc;

pub use contextcopy::{copy_key, ContextCopy, CopyError};
pub use host::{HostCommand, HostExit, HostFuture, HostShell, LocalShell, HOST_STDERR_KEPT};
pub use podman::finish_cleanups;
pub use retry::{MAX_DELAY, MIN_DELAY, TRIES};
pub use secrets::{SecretValue, Secrets};
pub use smoke::{
    escape_control_characters, finish_removals, Ended, LeftContainer, SmokeOutcome, SmokeRun,
    LINE_CHARS, OUTPUT_TAIL_LINES, STDERR_MARK, STDOUT_KEPT,
};
pub use sshforward::{ConnectAgent, SshAgent, SshAgents};
pub use transport::{tcp_connector, unix_connector, Connect, ConnectFuture, Io};

/// How many lines of build output are kept to show when a build fails.
const LOG_TAIL_LINES: usize = 40;

/// The newest API version whose types this client carries.
const NEWEST_API: (usize, usize) = (1, 53);

/// Seconds bollard waits for response headers (a build answers at once and
/// then streams; this only bounds a hung engine).
const REQUEST_TIMEOUT_SECONDS: u64 = 3600;

/// How long a request that does not stream (`/version`, `/info`,
/// `/_ping`, `GET /images/<ref>/json`, `POST /images/<ref>/tag`,
/// `DELETE /images/<ref>`) may take, answer included, before
/// it fails as [`EngineError::Timeout`]: an engine that accepts the
/// connection but never answers must not hang mab. The docker CLI has no
/// such limit; 30 s is far above what a healthy engine needs. A request
/// that timed out is not tried again (a hung engine stays hung); one that
/// failed at the connection is (see [`TRIES`]).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine of {engine}: {source}")]
    Connect {
        engine: String,
        #[source]
        source: io::Error,
    },
    #[error("the Docker engine of {engine} answered with an error: {message}")]
    Api { engine: String, message: String },
    /// A request that does not stream got no answer within
    /// [`REQUEST_TIMEOUT`].
    #[error("the Docker engine of {engine} did not answer {request} within {} s", .limit.as_secs())]
    Timeout {
        engine: String,
        /// The request, as `GET /version`.
        request: String,
        limit: std::time::Duration,
    },
    #[error("the build failed on {engine}: {message}")]
    BuildFailed {
        engine: String,
        message: String,
        /// The last lines of the build output.
        log_tail: Vec<String>,
        /// The step that failed, as BuildKit names it (`[build 2/3] RUN
        /// make`), when the engine said which.
        step: Option<String>,
    },
    /// The engine could not start a container's command (no such
    /// executable in the image, an exec format error).
    #[error("the Docker engine of {engine} could not start the command: {message}")]
    StartFailed { engine: String, message: String },
    #[error("pushing {reference} from {engine} failed: {message}")]
    PushFailed {
        engine: String,
        reference: String,
        message: String,
    },
    /// The context directory cannot be served (no Dockerfile, a bad
    /// `.dockerignore`).
    #[error(transparent)]
    Context(#[from] mab_context::ContextError),
    /// The copy of the context kept on a Podman engine's host could not be
    /// brought up to date ([`contextcopy::sync`]); nothing was built.
    /// [`CopyError::is_usage`] tells a fault of the context here from one
    /// of the host.
    #[error("{error}")]
    ContextCopy { engine: String, error: CopyError },
    /// A build's request got no answer at all: the stream to the engine
    /// (an SSH channel to its socket, or the socket) could not be opened,
    /// or the engine refused or reset it before answering. Nothing was
    /// built.
    #[error("the Docker engine of {engine} did not answer {request}: {message}")]
    NoAnswer {
        engine: String,
        /// The request, as `POST /build`.
        request: String,
        message: String,
    },
    /// A build's response stream ended without the build's result (the
    /// connection dropped or a line came cut short) and the engine does not
    /// hold the image: the build is lost. Or a smoke run's output or wait
    /// broke while its command ran.
    #[error("the connection to the Docker engine of {engine} broke during {during}: {message}")]
    StreamBroken {
        engine: String,
        /// What was going on: `the build`, `the smoke test`.
        during: &'static str,
        message: String,
    },
    /// Exporting an image failed: the engine refused, or the stream broke.
    #[error("exporting {reference} from the Docker engine of {engine} failed: {message}")]
    Export {
        engine: String,
        reference: String,
        message: String,
    },
    /// An exported image could not be written to its temporary file
    /// ([`Engine::export_image`]).
    #[error("could not spool {reference} from the Docker engine of {engine} to a temporary file: {source}")]
    Spool {
        engine: String,
        reference: String,
        #[source]
        source: io::Error,
    },
}

/// Which engine answers on a runner's socket, from its own `GET /version`
/// report: Podman's API service lists a component named `Podman Engine`
/// (`podman system service`, Podman 4 and later); any other engine is
/// taken for Docker's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// Docker's engine (dockerd), with BuildKit.
    Docker,
    /// Podman's API service (`podman system service`), building with
    /// Buildah (see `podman`).
    Podman,
}

impl EngineKind {
    /// `docker` or `podman`, as `mab runners check` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }

    /// The kind a `GET /version` answer (its JSON body) tells.
    pub fn of_version(version: &serde_json::Value) -> EngineKind {
        let podman = version["Components"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|component| component["Name"].as_str() == Some("Podman Engine"));
        match podman {
            true => EngineKind::Podman,
            false => EngineKind::Docker,
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an engine says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineInfo {
    /// Docker's engine or Podman's API service.
    pub kind: EngineKind,
    /// `linux`, as the engine reports it.
    pub os: String,
    /// The engine's machine architecture as it reports it (`x86_64`, `aarch64`).
    pub architecture: String,
    pub version: String,
    pub api_version: String,
    /// The engine's data root (`/var/lib/docker`), when it tells.
    pub root_dir: Option<String>,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildSpec {
    /// `repository:tag` the built image gets in the engine.
    pub image: String,
    /// The platform to build for; the build's `platform` parameter is its
    /// `Display` form (`linux/arm/v7`), as `docker build --platform` sends it.
    pub platform: Platform,
    pub target: Option<String>,
    pub args: BTreeMap<String, String>,
    /// Labels the image gets (its config's `Labels`), sent as the build's
    /// `labels` parameter (a JSON object, as `docker build --label` sends
    /// it; BuildKit takes them as `label:KEY` frontend options). Left out
    /// when empty.
    pub labels: BTreeMap<String, String>,
    /// Network mode of RUN steps: `default`, `host` or `none`.
    pub network: String,
    /// Images whose build cache the build may import, by digest
    /// (`REPO@sha256:…`), sent as the build's `cachefrom` parameter (a
    /// JSON array, as `docker build --cache-from` sends it; Docker 20.10's
    /// BuildKit reads each as a registry cache import, the inline cache
    /// metadata in the image's config, pulled by the engine with the
    /// credentials the session's Auth service gives). Left out when empty.
    pub cache_from: Vec<String>,
    /// Where the credentials the engine may ask for while it pulls base
    /// images come from (through the session's Auth service).
    pub credential_sources: Option<mab_registry::CredentialSources>,
    /// The build's secrets, served through the session for `RUN
    /// --mount=type=secret` steps (never written into the request).
    pub secrets: Secrets,
    /// The build's SSH agents, forwarded through the session for `RUN
    /// --mount=type=ssh` steps.
    pub ssh_agents: SshAgents,
}

/// Something that happened during a build, for progress output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildEvent {
    /// A build step started (`[2/3] RUN make`), or was found in the build
    /// cache (`cached`: it does not run). Each step is told once.
    Step { name: String, cached: bool },
    /// A line of a step's output.
    Log(String),
    /// Bytes of the context's files served to the engine so far (as
    /// [`BuildStats::context_bytes`]), told while they grow, at most
    /// every [`CONTEXT_EVERY`]: looked at as each part of the build's
    /// response arrives (BuildKit reports the context's transfer as it
    /// goes, so parts keep coming while it lasts).
    Context { sent: u64 },
    /// BuildKit could not import the build cache of `reference` (one of
    /// [`BuildSpec::cache_from`]): its vertex "importing cache manifest
    /// from REF" ended in `error`. BuildKit treats that as non-fatal (the
    /// build goes on without that cache, moby/buildkit's solver ignores
    /// a failed cache import), so only this event tells it. Told once per
    /// reference.
    CacheImportFailed { reference: String, error: String },
}

/// The name BuildKit gives the vertex that imports a cache source, followed
/// by the reference (moby/buildkit `solver/llbsolver`).
const CACHE_IMPORT_STEP: &str = "importing cache manifest from ";

/// How often at most [`BuildEvent::Context`] is told.
pub const CONTEXT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// What a build that ended well moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Bytes of file contents served from the context directory to the
    /// engine through the session: the files the build asked for after
    /// `.dockerignore`, each counted each time it was sent, and so the
    /// ignore file twice when it is in the context (the Dockerfile
    /// frontend reads it from the context on its own first, "[internal]
    /// load .dockerignore"). The Dockerfile read through the `dockerfile`
    /// source is not counted. BuildKit asks only for files it does not
    /// hold already for the same context directory, so a repeated build
    /// of an unchanged context may send none. On Podman's API service:
    /// the bytes the update of the host's copy of the context moved, both
    /// ways (`contextcopy::ContextCopy::sent_bytes`).
    pub context_bytes: u64,
}

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    connect: Connect,
    label: String,
    reporter: Arc<dyn Reporter>,
    kind: EngineKind,
    /// A Podman engine's host, for what an engine without a BuildKit
    /// session needs done there (see `podman`).
    podman: Option<podman::PodmanHost>,
}

impl Engine {
    /// Connects and agrees on an API version with the engine. `label`
    /// names the engine in messages and in the retries reported to
    /// `reporter` (the runner's name): every request that does not stream
    /// is tried again when it fails at the connection (see [`TRIES`]).
    pub async fn connect(
        connect: Connect,
        label: impl Into<String>,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Engine, EngineError> {
        let label = label.into();
        let (server_api, kind) = retry::request(&label, &*reporter, "GET /version", || {
            server_api_version(&connect)
        })
        .await?
        .map_err(|error| EngineError::Connect {
            engine: label.clone(),
            source: io::Error::other(error),
        })?
        .map_err(|source| EngineError::Connect {
            engine: label.clone(),
            source,
        })?;
        let version = std::cmp::min(server_api, NEWEST_API);
        let docker = Docker::connect_with_custom_transport(
            transport::bollard_transport(connect.clone()),
            Some("http://docker"),
            REQUEST_TIMEOUT_SECONDS,
            &ClientVersion {
                major_version: version.0,
                minor_version: version.1,
            },
        )
        .map_err(|error| api_error(&label, error))?;
        Ok(Engine {
            docker,
            connect,
            label,
            reporter,
            kind,
            podman: None,
        })
    }

    /// Which engine this is (from its `GET /version` answer at
    /// [`Engine::connect`]).
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// Whether it can build: a Docker engine always; Podman's API service
    /// only once given its host's commands ([`Engine::with_host`]).
    pub fn can_build(&self) -> bool {
        self.kind == EngineKind::Docker || self.podman.is_some()
    }

    /// The same engine, able to run commands on its host through `host`,
    /// where its socket is the file `socket` (`/run/podman/podman.sock`):
    /// what building on Podman's API service needs (see [`HostShell`]).
    /// Without it, a Podman engine's builds fail as [`EngineError::Api`].
    pub fn with_host(mut self, host: Arc<dyn HostShell>, socket: impl Into<String>) -> Engine {
        self.podman = Some(podman::PodmanHost {
            shell: host,
            socket: socket.into(),
        });
        self
    }

    /// A request that does not stream, with its time limit and retries
    /// ([`retry::request`]); the engine's own errors become
    /// [`EngineError::Api`].
    async fn request<T, Attempt, Fut>(&self, what: &str, attempt: Attempt) -> Result<T, EngineError>
    where
        Attempt: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, bollard::errors::Error>>,
    {
        retry::request(&self.label, &*self.reporter, what, attempt)
            .await?
            .map_err(|error| api_error(&self.label, error))
    }

    pub async fn describe(&self) -> Result<EngineInfo, EngineError> {
        let version = self
            .request("GET /version", || self.docker.version())
            .await?;
        let info = self.request("GET /info", || self.docker.info()).await?;
        Ok(EngineInfo {
            kind: self.kind,
            os: info
                .os_type
                .or(version.os)
                .unwrap_or_else(|| "linux".to_owned()),
            architecture: info.architecture.or(version.arch).unwrap_or_default(),
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            root_dir: info.docker_root_dir,
        })
    }

    /// Asks the engine whether it is there, for measuring a round trip.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.request("GET /_ping", || self.docker.ping())
            .await
            .map(drop)
    }

    /// Builds `spec` with BuildKit from the files of `context` on this
    /// machine (its context directory, Dockerfile and ignore file).
    /// `on_event` sees each step and output line as it arrives.
    ///
    /// The context is served through a BuildKit session for as long as the
    /// build runs; the session is closed when this returns. Returns how
    /// many bytes of the context were served ([`BuildStats`]).
    pub async fn build(
        &self,
        spec: &BuildSpec,
        context: &BuildContext,
        mut on_event: impl FnMut(BuildEvent),
    ) -> Result<BuildStats, EngineError> {
        if self.kind == EngineKind::Podman {
            return self.podman_build(spec, context, on_event).await;
        }
        let sources = filesync::Sources::new(context);
        let context_bytes = sources.context_bytes();
        let dockerfile_name = context.dockerfile_name().to_owned();
        let identity =
            session::SessionIdentity::for_context(session_id(&spec.image), context.dir());
        let serve = session::open(
            &self.connect,
            &identity,
            sources,
            spec.credential_sources.clone(),
            spec.secrets.clone(),
            spec.ssh_agents.clone(),
        )
        .await
        .map_err(|error| match error {
            // It answered, with an error status.
            session::SessionError::Refused { .. } => EngineError::Api {
                engine: self.label.clone(),
                message: error.to_string(),
            },
            session::SessionError::Request(_) => EngineError::NoAnswer {
                engine: self.label.clone(),
                request: "POST /session".to_owned(),
                message: error.to_string(),
            },
        })?;

        let mut serve = pin!(serve);
        let mut build = pin!(self.follow_build(
            spec,
            &identity.id,
            &dockerfile_name,
            &context_bytes,
            &mut on_event
        ));
        let mut serving = true;
        loop {
            tokio::select! {
                result = &mut build => {
                    return result.map(|()| BuildStats {
                        context_bytes: context_bytes.load(std::sync::atomic::Ordering::Relaxed),
                    })
                }
                () = &mut serve, if serving => {
                    // The engine closed the session; the build's response
                    // says how that went.
                    serving = false;
                }
            }
        }
    }

    /// Sends the build request and follows its response to the end.
    async fn follow_build(
        &self,
        spec: &BuildSpec,
        session: &str,
        dockerfile_name: &str,
        context_bytes: &std::sync::atomic::AtomicU64,
        on_event: &mut impl FnMut(BuildEvent),
    ) -> Result<(), EngineError> {
        let uri = format!("/build?{}", build_query(spec, session, dockerfile_name));
        let request = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/x-tar")
            .body(Empty::<Bytes>::new())
            .map_err(|error| EngineError::Api {
                engine: self.label.clone(),
                message: format!("cannot write the build request: {error}"),
            })?;
        let response = transport::send(&self.connect, request)
            .await
            .map_err(|error| EngineError::NoAnswer {
                engine: self.label.clone(),
                request: "POST /build".to_owned(),
                message: error_message(error),
            })?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let text = transport::body_bytes(body).await;
            return Err(EngineError::Api {
                engine: self.label.clone(),
                message: format!("POST /build answered {status}: {}", response_message(&text)),
            });
        }

        let mut followed = Followed::default();
        let mut lines = JsonLines::default();
        // The context's bytes last told, and when.
        let mut told: (u64, Option<std::time::Instant>) = (0, None);
        loop {
            let sent = context_bytes.load(std::sync::atomic::Ordering::Relaxed);
            if sent != told.0 && told.1.is_none_or(|at| at.elapsed() >= CONTEXT_EVERY) {
                told = (sent, Some(std::time::Instant::now()));
                on_event(BuildEvent::Context { sent });
            }
            let chunk = match body.frame().await {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                Some(Err(error)) => {
                    return self
                        .after_broken_stream(&spec.image, error.to_string())
                        .await
                }
            };
            for line in lines.push(&chunk) {
                let info = match serde_json::from_slice::<BuildInfo>(&line) {
                    Ok(info) => info,
                    Err(error) => {
                        let message = format!(
                            "the engine sent a line that is not a build message ({error}): {}",
                            String::from_utf8_lossy(&line)
                        );
                        return self.after_broken_stream(&spec.image, message).await;
                    }
                };
                if let Some(message) = follow_line(info, &mut followed, on_event) {
                    return Err(EngineError::BuildFailed {
                        engine: self.label.clone(),
                        message,
                        log_tail: followed.log.into_lines(),
                        step: followed.failed_step,
                    });
                }
            }
        }
        if let Some(rest) = lines.rest() {
            let message = format!(
                "its last line was cut short: {}",
                String::from_utf8_lossy(&rest)
            );
            return self.after_broken_stream(&spec.image, message).await;
        }
        Ok(())
    }

    /// The build's response stream broke (the connection dropped, or its
    /// last line was cut short). The build may still have finished: the
    /// image's name is unique to this build, so if the engine has it, it
    /// was built; otherwise the build is lost.
    async fn after_broken_stream(&self, image: &str, error: String) -> Result<(), EngineError> {
        match self
            .request(&format!("GET /images/{image}/json"), || {
                self.docker.inspect_image(image)
            })
            .await
        {
            Ok(_) => {
                tracing::warn!(
                    "the build response from {} ended early ({error}), but {image} was built",
                    self.label
                );
                Ok(())
            }
            Err(_) => Err(EngineError::StreamBroken {
                engine: self.label.clone(),
                during: "the build",
                message: error,
            }),
        }
    }

    /// Pushes `repository:tag` and returns the manifest digest the engine
    /// reports for it.
    pub async fn push(
        &self,
        repository: &str,
        tag: &str,
        credentials: Option<&mab_registry::Credentials>,
    ) -> Result<String, EngineError> {
        if self.kind == EngineKind::Podman {
            return self.podman_push(repository, tag, credentials).await;
        }
        let reference = format!("{repository}:{tag}");
        let failed = |message: String| EngineError::PushFailed {
            engine: self.label.clone(),
            reference: reference.clone(),
            message,
        };
        let credentials = credentials.map(|credentials| DockerCredentials {
            username: credentials.username.clone(),
            password: credentials.password.clone(),
            identitytoken: credentials.identity_token.clone(),
            serveraddress: Some(credentials.server.clone()),
            ..Default::default()
        });
        let options = PushImageOptions {
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        let mut stream = self
            .docker
            .push_image(repository, Some(options), credentials);
        let mut digest = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|error| failed(error_message(error)))?;
            if let Some(found) = info.status.as_deref().and_then(pushed_digest) {
                digest = Some(found.to_owned());
            }
        }
        digest.ok_or_else(|| failed("the engine did not report the pushed digest".to_owned()))
    }

    /// The platform an image in the engine's store says it is: its
    /// config's os, architecture and variant as `docker image inspect`
    /// shows them, as written (an empty variant is none).
    pub async fn image_platform(
        &self,
        reference: &str,
    ) -> Result<mab_registry::ConfigPlatform, EngineError> {
        let image = self
            .request(&format!("GET /images/{reference}/json"), || {
                self.docker.inspect_image(reference)
            })
            .await?;
        Ok(mab_registry::ConfigPlatform {
            os: image.os.unwrap_or_default(),
            architecture: image.architecture.unwrap_or_default(),
            variant: image.variant.filter(|variant| !variant.is_empty()),
        })
    }

    /// How many layers an image in the engine's store has (its config's
    /// `rootfs.diff_ids`, as `docker image inspect` shows them): `0` for a
    /// `FROM scratch` image without files, which `docker save` refuses
    /// ("empty export - not implemented").
    pub async fn image_layer_count(&self, reference: &str) -> Result<usize, EngineError> {
        let image = self
            .request(&format!("GET /images/{reference}/json"), || {
                self.docker.inspect_image(reference)
            })
            .await?;
        Ok(image
            .root_fs
            .and_then(|root_fs| root_fs.layers)
            .map_or(0, |layers| layers.len()))
    }

    /// The image `reference` as `docker save` writes it (`GET
    /// /images/{name}/get`: a tar with `manifest.json`, the config and
    /// each layer as an uncompressed tar), spooled as it streams, never
    /// held in memory: the engine puts `manifest.json`, which gives the
    /// layers' order, after the layers. The spool is an unnamed temporary
    /// file ([`tempfile::tempfile`]: in `TMPDIR`, else `/tmp` on Unix,
    /// `GetTempPath` on Windows; unlinked at once on Unix, so nothing is
    /// left behind however mab ends), as large as the image uncompressed.
    /// Each chunk of the stream waits at most [`REQUEST_TIMEOUT`] (an
    /// engine that stops sending fails as [`EngineError::Timeout`]). An
    /// error answer or a stream that breaks is [`EngineError::Export`]; a
    /// file that cannot be written, [`EngineError::Spool`].
    pub async fn export_image(&self, reference: &str) -> Result<std::fs::File, EngineError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let spool_error = |source: io::Error| EngineError::Spool {
            engine: self.label.clone(),
            reference: reference.to_owned(),
            source,
        };
        let spool = tempfile::tempfile().map_err(spool_error)?;
        let mut file = tokio::fs::File::from_std(spool.try_clone().map_err(spool_error)?);
        let mut stream = self.docker.export_image(reference);
        loop {
            let next = tokio::time::timeout(REQUEST_TIMEOUT, stream.next())
                .await
                .map_err(|_| EngineError::Timeout {
                    engine: self.label.clone(),
                    request: format!("GET /images/{reference}/get"),
                    limit: REQUEST_TIMEOUT,
                })?;
            let Some(chunk) = next else {
                break;
            };
            let chunk = chunk.map_err(|error| EngineError::Export {
                engine: self.label.clone(),
                reference: reference.to_owned(),
                message: error.to_string(),
            })?;
            file.write_all(&chunk).await.map_err(spool_error)?;
        }
        file.flush().await.map_err(spool_error)?;
        Ok(spool)
    }

    /// Gives the image `source` the name `repository:tag` too.
    pub async fn tag(&self, source: &str, repository: &str, tag: &str) -> Result<(), EngineError> {
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(repository.to_owned()),
            tag: Some(tag.to_owned()),
        };
        self.request(&format!("POST /images/{source}/tag"), || {
            self.docker.tag_image(source, Some(options.clone()))
        })
        .await
    }

    /// Removes an image from the engine; failures are only logged, since
    /// this is tidying up.
    pub async fn remove_image(&self, reference: &str) {
        let options = RemoveImageOptions {
            noprune: false,
            force: false,
            ..Default::default()
        };
        let removed = self
            .request(&format!("DELETE /images/{reference}"), || {
                self.docker
                    .remove_image(reference, Some(options.clone()), None)
            })
            .await;
        if let Err(error) = removed {
            tracing::debug!("could not remove {reference} from {}: {error}", self.label);
        }
    }
}

/// Asks the engine which API version it speaks, without a version prefix,
/// so that engines older and newer than this client both answer, and which
/// engine it is. The outer error is the request's (to retry or not), the
/// inner one an answer that says no version.
async fn server_api_version(
    connect: &Connect,
) -> Result<io::Result<((usize, usize), EngineKind)>, bollard::errors::Error> {
    let request = http::Request::get("/version").body(Empty::<Bytes>::new())?;
    let response = transport::send(connect, request).await?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| bollard::errors::Error::HyperResponseError { err })?
        .to_bytes();
    Ok(api_version_of(status, &body))
}

/// The API version a `GET /version` answer gives, and the engine's kind.
fn api_version_of(
    status: http::StatusCode,
    body: &[u8],
) -> io::Result<((usize, usize), EngineKind)> {
    if !status.is_success() {
        return Err(io::Error::other(format!(
            "GET /version answered {status}: {}",
            String::from_utf8_lossy(body).trim()
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(io::Error::other)?;
    let version = value
        .get("ApiVersion")
        .and_then(|version| version.as_str())
        .and_then(parse_api_version)
        .ok_or_else(|| io::Error::other("the engine did not report its API version"))?;
    Ok((version, EngineKind::of_version(&value)))
}

fn parse_api_version(text: &str) -> Option<(usize, usize)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Finds the digest in a push status line such as
/// `mab-1234-linux-arm64: digest: sha256:abcd… size: 528`.
pub fn pushed_digest(status: &str) -> Option<&str> {
    let rest = &status[status.find("digest: ")? + "digest: ".len()..];
    let digest = rest.split_whitespace().next()?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit())).then_some(digest)
}

/// The query of a BuildKit build whose context and Dockerfile come from the
/// session.
fn build_query(spec: &BuildSpec, session: &str, dockerfile_name: &str) -> String {
    let buildargs = serde_json::to_string(&spec.args).unwrap_or_else(|_| "{}".to_owned());
    let platform = spec.platform.to_string();
    let mut pairs = vec![
        ("version", "2"),
        ("session", session),
        ("remote", "client-session"),
        ("dockerfile", dockerfile_name),
        ("t", spec.image.as_str()),
        ("platform", platform.as_str()),
        ("buildargs", buildargs.as_str()),
        ("networkmode", spec.network.as_str()),
        ("rm", "1"),
    ];
    if let Some(target) = spec.target.as_deref().filter(|target| !target.is_empty()) {
        pairs.push(("target", target));
    }
    let labels = serde_json::to_string(&spec.labels).unwrap_or_else(|_| "{}".to_owned());
    if !spec.labels.is_empty() {
        pairs.push(("labels", labels.as_str()));
    }
    let cache_from = serde_json::to_string(&spec.cache_from).unwrap_or_else(|_| "[]".to_owned());
    if !spec.cache_from.is_empty() {
        pairs.push(("cachefrom", cache_from.as_str()));
    }
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// What a build's response told so far: the tail of its log, and the
/// steps already announced (by vertex digest: BuildKit repeats a vertex in
/// every status update while it runs).
#[derive(Default)]
struct Followed {
    log: LogTail,
    announced: HashSet<String>,
    /// The last step that ended in an error.
    failed_step: Option<String>,
    /// The cache sources whose import failed ([`BuildEvent::CacheImportFailed`]).
    import_failed: HashSet<String>,
}

/// Handles one message of a build's response: output lines and steps go to
/// the log and to `on_event`, each step once (when it is first seen started,
/// or found cached). Returns the error message when the message reports that
/// the build failed.
fn follow_line(
    info: BuildInfo,
    followed: &mut Followed,
    on_event: &mut impl FnMut(BuildEvent),
) -> Option<String> {
    let log = &mut followed.log;
    if let Some(text) = info.stream {
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            log.push(line);
            on_event(BuildEvent::Log(line.to_owned()));
        }
    }
    if let Some(BuildInfoAux::BuildKit(status)) = info.aux {
        for vertex in status.vertexes {
            // A quick step may start and complete within one update.
            let telling = vertex.cached || vertex.started.is_some();
            if telling && followed.announced.insert(vertex.digest.clone()) {
                on_event(BuildEvent::Step {
                    name: vertex.name.clone(),
                    cached: vertex.cached,
                });
            }
            if vertex.error.is_empty() {
                continue;
            }
            if let Some(reference) = vertex.name.strip_prefix(CACHE_IMPORT_STEP) {
                // Not the build's failure: BuildKit goes on without it.
                if followed.import_failed.insert(reference.to_owned()) {
                    log.push(&format!("{}: {}", vertex.name, vertex.error));
                    on_event(BuildEvent::CacheImportFailed {
                        reference: reference.to_owned(),
                        error: vertex.error.clone(),
                    });
                }
                continue;
            }
            log.push(&format!("{}: {}", vertex.name, vertex.error));
            followed.failed_step = Some(vertex.name.clone());
        }
        for entry in status.logs {
            for line in String::from_utf8_lossy(&entry.msg).lines() {
                if !line.trim().is_empty() {
                    log.push(line);
                    on_event(BuildEvent::Log(line.to_owned()));
                }
            }
        }
    }
    info.error_detail
        .and_then(|detail| detail.message)
        .filter(|message| !message.is_empty())
}

/// The lines of a JSON-lines body as its chunks arrive.
#[derive(Default)]
struct JsonLines {
    pending: Vec<u8>,
}

impl JsonLines {
    /// Adds a chunk and returns the complete, non-blank lines it finished.
    fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            if !line.trim_ascii().is_empty() {
                lines.push(line);
            }
        }
        lines
    }

    /// What is left after the last newline: a whole message when the body
    /// ends without one, or a line cut short.
    fn rest(self) -> Option<Vec<u8>> {
        (!self.pending.trim_ascii().is_empty()).then_some(self.pending)
    }
}

/// The message of an engine's error body (`{"message": ...}`), or the body.
pub(crate) fn response_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

/// A BuildKit session id: unique per build, readable in engine logs.
fn session_id(image: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let safe: String = image
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character
            } else {
                '-'
            }
        })
        .collect();
    format!("mab-{safe}-{nanos:x}")
}

fn api_error(label: &str, error: bollard::errors::Error) -> EngineError {
    EngineError::Api {
        engine: label.to_owned(),
        message: error_message(error),
    }
}

pub(crate) fn error_message(error: bollard::errors::Error) -> String {
    error_text(&error)
}

/// What the engine said (a stream's or an answer's message), else the
/// error's own message.
fn error_text(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// [`error_message`] of an error that is kept, with the causes it does not
/// already quote (hyper's own message does not say why a connection ended).
pub(crate) fn error_message_of(error: &bollard::errors::Error) -> String {
    use std::error::Error as _;
    let mut message = error_text(error);
    let mut source = error.source();
    while let Some(cause) = source {
        // A cause that an outer message already quotes is not repeated.
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    message
}

/// The last lines of build output.
#[derive(Default)]
struct LogTail {
    lines: VecDeque<String>,
}

impl LogTail {
    fn push(&mut self, line: &str) {
        if self.lines.len() == LOG_TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.trim_end().to_owned());
    }

    fn into_lines(self) -> Vec<String> {
        self.lines.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_digest_in_a_push_status_line() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let cases = [
            (
                format!("mab-1-linux-arm64: digest: {digest} size: 528"),
                Some(digest.as_str()),
            ),
            ("Pushed".to_owned(), None),
            ("latest: digest: sha256:short size: 1".to_owned(), None),
            (format!("digest: {digest}"), Some(digest.as_str())),
        ];
        for (line, expected) in &cases {
            assert_eq!(pushed_digest(line), *expected, "{line}");
        }
    }

    /// A retried request that does not stream is named by its HTTP
    /// method and path, as the engine gets it without the API version and
    /// the query (docs/progress.md): an engine that answers `GET /version`
    /// and closes every other connection unanswered.
    #[tokio::test]
    async fn retries_name_the_http_request() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let directory = tempfile::tempdir().unwrap();
        let socket = directory.path().join("engine.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        let server = tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                let mut reader = BufReader::new(connection);
                let mut line = String::new();
                if reader.read_line(&mut line).await.is_err() {
                    continue;
                }
                if !line.starts_with("GET /version ") {
                    log.lock().unwrap().push(line.trim_end().to_owned());
                    continue;
                }
                let mut header = String::new();
                while reader.read_line(&mut header).await.unwrap_or(0) > 2 {
                    header.clear();
                }
                let body = r#"{"ApiVersion":"1.43"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = reader.get_mut().write_all(answer.as_bytes()).await;
            }
        });
        let recorder = Arc::new(mab_events::Recorder::default());
        let engine = Engine::connect(unix_connector(&socket), "pi", recorder.clone())
            .await
            .unwrap();
        let error = engine.image_platform("app:1").await.unwrap_err();
        assert!(
            error.to_string().starts_with("the Docker engine of pi"),
            "{error}"
        );
        assert!(engine.tag("app:1", "registry/app", "v1").await.is_err());
        engine.remove_image("app:1").await;
        server.abort();

        let retried: Vec<String> = recorder
            .events()
            .into_iter()
            .map(|event| match event {
                mab_events::Event::Retry { request, .. } => request,
                other => panic!("not a retry: {other:?}"),
            })
            .collect();
        let expected = [
            "GET /images/app:1/json",
            "POST /images/app:1/tag",
            "DELETE /images/app:1",
        ];
        let twice: Vec<&str> = expected.iter().flat_map(|request| [*request; 2]).collect();
        assert_eq!(retried, twice);
        // What the engine got: each request three times, under /v1.43.
        let received: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                let mut parts = line.split(' ');
                let method = parts.next().unwrap();
                let target = parts.next().unwrap();
                let path = target.split('?').next().unwrap();
                format!("{method} {}", path.strip_prefix("/v1.43").unwrap_or(path))
            })
            .collect();
        let thrice: Vec<&str> = expected.iter().flat_map(|request| [*request; 3]).collect();
        assert_eq!(received, thrice);
    }

    #[test]
    fn a_version_report_naming_the_podman_engine_is_podmans() {
        let podman = br#"{"Components":[{"Name":"Podman Engine","Version":"4.3.1"},{"Name":"Conmon"}],"Version":"4.3.1","ApiVersion":"1.41"}"#;
        let docker = br#"{"Components":[{"Name":"Engine","Version":"20.10.24"},{"Name":"containerd"}],"Version":"20.10.24","ApiVersion":"1.41"}"#;
        let bare = br#"{"Version":"20.10.24","ApiVersion":"1.41"}"#;
        let ok = http::StatusCode::OK;
        assert_eq!(
            api_version_of(ok, podman).unwrap(),
            ((1, 41), EngineKind::Podman)
        );
        assert_eq!(
            api_version_of(ok, docker).unwrap(),
            ((1, 41), EngineKind::Docker)
        );
        assert_eq!(
            api_version_of(ok, bare).unwrap(),
            ((1, 41), EngineKind::Docker)
        );
    }

    #[test]
    fn parses_api_versions() {
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert_eq!(parse_api_version("1.x"), None);
        assert_eq!(parse_api_version("141"), None);
    }

    fn spec() -> BuildSpec {
        BuildSpec {
            image: "127.0.0.1:5000/app:mab-1-linux-arm64".to_owned(),
            platform: "linux/arm64".parse().unwrap(),
            target: None,
            args: BTreeMap::from([("GREETING".to_owned(), "hello world".to_owned())]),
            labels: BTreeMap::new(),
            network: "host".to_owned(),
            cache_from: Vec::new(),
            credential_sources: None,
            secrets: Secrets::default(),
            ssh_agents: SshAgents::default(),
        }
    }

    #[test]
    fn the_build_query_names_the_session_and_its_dockerfile() {
        let query = build_query(&spec(), "mab-s1", "Dockerfile");
        assert_eq!(
            query,
            "version=2&session=mab-s1&remote=client-session&dockerfile=Dockerfile\
             &t=127.0.0.1%3A5000%2Fapp%3Amab-1-linux-arm64&platform=linux%2Farm64\
             &buildargs=%7B%22GREETING%22%3A%22hello%20world%22%7D&networkmode=host&rm=1"
        );
        // (target, query ends with)
        let cases = [
            (Some("runtime"), "&rm=1&target=runtime"),
            (Some(""), "&rm=1"),
            (None, "&rm=1"),
        ];
        for (target, end) in cases {
            let spec = BuildSpec {
                target: target.map(str::to_owned),
                ..spec()
            };
            assert!(build_query(&spec, "s", "D").ends_with(end), "{target:?}");
        }
        let cached = BuildSpec {
            cache_from: vec![format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64))],
            ..spec()
        };
        assert!(build_query(&cached, "s", "D").ends_with(&format!(
            "&rm=1&cachefrom=%5B%22127.0.0.1%3A5000%2Fapp%40sha256%3A{}%22%5D",
            "a".repeat(64)
        )));
        let spec = BuildSpec {
            labels: BTreeMap::from([(
                "org.opencontainers.image.revision".to_owned(),
                "abc".to_owned(),
            )]),
            ..spec()
        };
        assert!(build_query(&spec, "s", "D")
            .ends_with("&rm=1&labels=%7B%22org.opencontainers.image.revision%22%3A%22abc%22%7D"));
    }

    #[test]
    fn json_lines_are_split_across_chunks() {
        // (chunks, lines, rest)
        let cases: &[(&[&str], &[&str], Option<&str>)] = &[
            (
                &["{\"a\":1}\n{\"b\"", ":2}\n"],
                &["{\"a\":1}\n", "{\"b\":2}\n"],
                None,
            ),
            (&["{\"a\":1}\r\n\n  \n"], &["{\"a\":1}\r\n"], None),
            (&["{\"a\":1}"], &[], Some("{\"a\":1}")),
            (&["{\"a\":1}\n{\"cut"], &["{\"a\":1}\n"], Some("{\"cut")),
        ];
        for &(chunks, expected, rest) in cases {
            let mut lines = JsonLines::default();
            let mut found = Vec::new();
            for chunk in chunks {
                found.extend(lines.push(chunk.as_bytes()));
            }
            let found: Vec<String> = found
                .into_iter()
                .map(|line| String::from_utf8(line).unwrap())
                .collect();
            assert_eq!(found, expected, "{chunks:?}");
            assert_eq!(
                lines
                    .rest()
                    .map(|rest| String::from_utf8(rest).unwrap())
                    .as_deref(),
                rest
            );
        }
    }

    #[test]
    fn build_messages_become_events_and_errors() {
        use bollard_buildkit_proto::google::protobuf::Timestamp;
        use bollard_buildkit_proto::moby::buildkit::v1::{StatusResponse, Vertex, VertexLog};
        let copy = Vertex {
            digest: "sha256:copy".to_owned(),
            name: "[1/3] COPY . /".to_owned(),
            started: Some(Timestamp::default()),
            ..Default::default()
        };
        let status = StatusResponse {
            vertexes: vec![
                Vertex {
                    digest: "sha256:base".to_owned(),
                    name: "[internal] load metadata".to_owned(),
                    cached: true,
                    ..Default::default()
                },
                copy.clone(),
                Vertex {
                    digest: "sha256:run".to_owned(),
                    name: "[2/3] RUN false".to_owned(),
                    error: "exit code: 1".to_owned(),
                    ..Default::default()
                },
            ],
            logs: vec![VertexLog {
                msg: b"compiling\n\nlinking\n".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        };
        // BuildKit repeats a running vertex in the next update, here
        // completed.
        let again = StatusResponse {
            vertexes: vec![Vertex {
                completed: Some(Timestamp::default()),
                ..copy
            }],
            ..Default::default()
        };
        let messages = [
            BuildInfo {
                stream: Some("Step 1\n\n".to_owned()),
                ..Default::default()
            },
            BuildInfo {
                aux: Some(BuildInfoAux::BuildKit(status)),
                ..Default::default()
            },
            BuildInfo {
                aux: Some(BuildInfoAux::BuildKit(again)),
                ..Default::default()
            },
        ];
        let mut followed = Followed::default();
        let mut events = Vec::new();
        for message in messages {
            assert_eq!(
                follow_line(message, &mut followed, &mut |event| events.push(event)),
                None
            );
        }
        let step = |name: &str, cached: bool| BuildEvent::Step {
            name: name.to_owned(),
            cached,
        };
        assert_eq!(
            events,
            [
                BuildEvent::Log("Step 1".to_owned()),
                step("[internal] load metadata", true),
                step("[1/3] COPY . /", false),
                BuildEvent::Log("compiling".to_owned()),
                BuildEvent::Log("linking".to_owned()),
            ]
        );
        assert_eq!(followed.failed_step.as_deref(), Some("[2/3] RUN false"));
        assert_eq!(
            followed.log.into_lines(),
            [
                "Step 1",
                "[2/3] RUN false: exit code: 1",
                "compiling",
                "linking"
            ]
        );
        let failed: BuildInfo = serde_json::from_str(
            r#"{"errorDetail":{"message":"failed to solve: exit code: 1"},"error":"failed"}"#,
        )
        .unwrap();
        let mut followed = Followed::default();
        assert_eq!(
            follow_line(failed, &mut followed, &mut |_| {}).as_deref(),
            Some("failed to solve: exit code: 1")
        );
    }

    #[test]
    fn a_failed_cache_import_is_told_once_and_is_not_the_failed_step() {
        use bollard_buildkit_proto::moby::buildkit::v1::{StatusResponse, Vertex};
        let reference = format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64));
        let import = Vertex {
            digest: "sha256:import".to_owned(),
            name: format!("importing cache manifest from {reference}"),
            error: "unexpected status: 401 Unauthorized".to_owned(),
            ..Default::default()
        };
        let update = || BuildInfo {
            aux: Some(BuildInfoAux::BuildKit(StatusResponse {
                vertexes: vec![import.clone()],
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut followed = Followed::default();
        let mut events = Vec::new();
        for message in [update(), update()] {
            assert_eq!(
                follow_line(message, &mut followed, &mut |event| events.push(event)),
                None
            );
        }
        assert_eq!(
            events,
            [BuildEvent::CacheImportFailed {
                reference: reference.clone(),
                error: "unexpected status: 401 Unauthorized".to_owned(),
            }]
        );
        assert_eq!(followed.failed_step, None);
        assert_eq!(
            followed.log.into_lines(),
            [format!(
                "importing cache manifest from {reference}: unexpected status: 401 Unauthorized"
            )]
        );
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            response_message(br#"{"message":"no such image"}"#),
            "no such image"
        );
        assert_eq!(
            response_message(b"404 page not found\n"),
            "404 page not found"
        );
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let mut tail = LogTail::default();
        for number in 0..100 {
            tail.push(&format!("line {number}"));
        }
        let lines = tail.into_lines();
        assert_eq!(lines.len(), LOG_TAIL_LINES);
        assert_eq!(lines.last().map(String::as_str), Some("line 99"));
        assert_eq!(lines.first().map(String::as_str), Some("line 60"));
    }
}
