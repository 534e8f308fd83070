//! One job on one Docker engine: describe the engine, build an image for a
//! platform with BuildKit from a streamed context, push it, and report the
//! pushed digest.
//!
//! The engine is reached through a [`Connect`] function that opens a byte
//! stream per request, so the same code drives a local socket and a socket
//! on a remote host behind an SSH channel. This crate knows nothing of SSH
//! or of other jobs.

mod transport;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;

use bollard::auth::DockerCredentials;
use bollard::models::BuildInfoAux;
use bollard::query_parameters::{
    BuildImageOptions, BuilderVersion, PushImageOptions, RemoveImageOptions,
};
use bollard::{ClientVersion, Docker};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Empty};

pub use transport::{tcp_connector, unix_connector, Connect, ConnectFuture, Io};

/// How many lines of build output are kept to show when a build fails.
const LOG_TAIL_LINES: usize = 40;

/// The newest API version whose types this client carries.
const NEWEST_API: (usize, usize) = (1, 53);

/// Seconds bollard waits for response headers (a build answers at once and
/// then streams; this only bounds a hung engine).
const REQUEST_TIMEOUT_SECONDS: u64 = 3600;

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
    #[error("the build failed on {engine}: {message}")]
    BuildFailed {
        engine: String,
        message: String,
        /// The last lines of the build output.
        log_tail: Vec<String>,
    },
    #[error("pushing {reference} from {engine} failed: {message}")]
    PushFailed {
        engine: String,
        reference: String,
        message: String,
    },
}

/// What an engine says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineInfo {
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
    /// Normalised platform string, such as `linux/arm64`.
    pub platform: String,
    /// Dockerfile path inside the context, `/`-separated.
    pub dockerfile: String,
    pub target: Option<String>,
    pub args: BTreeMap<String, String>,
    /// Network mode of RUN steps: `default`, `host` or `none`.
    pub network: String,
}

/// Something that happened during a build, for progress output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildEvent {
    /// A build step started (`[2/3] RUN make`).
    Step(String),
    /// A line of a step's output.
    Log(String),
}

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    label: String,
}

impl Engine {
    /// Connects and agrees on an API version with the engine. `label`
    /// names the engine in messages (the runner's name).
    pub async fn connect(
        connect: Connect,
        label: impl Into<String>,
    ) -> Result<Engine, EngineError> {
        let label = label.into();
        let server_api =
            server_api_version(&connect)
                .await
                .map_err(|source| EngineError::Connect {
                    engine: label.clone(),
                    source,
                })?;
        let version = std::cmp::min(server_api, NEWEST_API);
        let docker = Docker::connect_with_custom_transport(
            transport::bollard_transport(connect),
            Some("http://docker"),
            REQUEST_TIMEOUT_SECONDS,
            &ClientVersion {
                major_version: version.0,
                minor_version: version.1,
            },
        )
        .map_err(|error| api_error(&label, error))?;
        Ok(Engine { docker, label })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub async fn describe(&self) -> Result<EngineInfo, EngineError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|error| api_error(&self.label, error))?;
        let info = self
            .docker
            .info()
            .await
            .map_err(|error| api_error(&self.label, error))?;
        Ok(EngineInfo {
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
        self.docker
            .ping()
            .await
            .map(drop)
            .map_err(|error| api_error(&self.label, error))
    }

    /// Builds `spec` with BuildKit from a tar stream of the context.
    /// `on_event` sees each step and output line as it arrives.
    pub async fn build(
        &self,
        spec: &BuildSpec,
        context: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
        mut on_event: impl FnMut(BuildEvent),
    ) -> Result<(), EngineError> {
        let options = BuildImageOptions {
            dockerfile: spec.dockerfile.clone(),
            t: Some(spec.image.clone()),
            platform: spec.platform.clone(),
            target: spec.target.clone().unwrap_or_default(),
            buildargs: Some(spec.args.clone().into_iter().collect::<HashMap<_, _>>()),
            networkmode: Some(spec.network.clone()),
            rm: true,
            version: BuilderVersion::BuilderBuildKit,
            session: Some(session_id(&spec.image)),
            ..Default::default()
        };
        let mut log = LogTail::default();
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_try_stream(context)));
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(EngineError::BuildFailed {
                        engine: self.label.clone(),
                        message: error,
                        log_tail: log.into_lines(),
                    })
                }
                Err(error) => return self.after_broken_stream(&spec.image, error).await,
            };
            if let Some(text) = info.stream {
                for line in text.lines().filter(|line| !line.trim().is_empty()) {
                    log.push(line);
                    on_event(BuildEvent::Log(line.to_owned()));
                }
            }
            if let Some(BuildInfoAux::BuildKit(status)) = info.aux {
                for vertex in status.vertexes {
                    if vertex.started.is_some() && vertex.completed.is_none() {
                        on_event(BuildEvent::Step(vertex.name.clone()));
                    }
                    if !vertex.error.is_empty() {
                        log.push(&format!("{}: {}", vertex.name, vertex.error));
                    }
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
        }
        Ok(())
    }

    /// The build's response stream broke (the connection dropped, or its
    /// last line was cut short). The build may still have finished: the
    /// image's name is unique to this build, so if the engine has it, it
    /// was built; otherwise the build is lost.
    async fn after_broken_stream(
        &self,
        image: &str,
        error: bollard::errors::Error,
    ) -> Result<(), EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => {
                tracing::warn!(
                    "the build response from {} ended early ({error}), but {image} was built",
                    self.label
                );
                Ok(())
            }
            Err(_) => Err(EngineError::Api {
                engine: self.label.clone(),
                message: format!("the connection to the engine broke during the build: {error}"),
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

    /// The platform fields of an image in the engine's store:
    /// (os, architecture, variant).
    pub async fn image_platform(
        &self,
        reference: &str,
    ) -> Result<(String, String, Option<String>), EngineError> {
        let image = self
            .docker
            .inspect_image(reference)
            .await
            .map_err(|error| api_error(&self.label, error))?;
        Ok((
            image.os.unwrap_or_default(),
            image.architecture.unwrap_or_default(),
            image.variant.filter(|variant| !variant.is_empty()),
        ))
    }

    /// Gives the image `source` the name `repository:tag` too.
    pub async fn tag(&self, source: &str, repository: &str, tag: &str) -> Result<(), EngineError> {
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(repository.to_owned()),
            tag: Some(tag.to_owned()),
        };
        self.docker
            .tag_image(source, Some(options))
            .await
            .map_err(|error| api_error(&self.label, error))
    }

    /// Removes an image from the engine; failures are only logged, since
    /// this is tidying up.
    pub async fn remove_image(&self, reference: &str) {
        let options = RemoveImageOptions {
            noprune: false,
            force: false,
            ..Default::default()
        };
        if let Err(error) = self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            tracing::debug!("could not remove {reference} from {}: {error}", self.label);
        }
    }
}

/// Asks the engine which API version it speaks, without a version prefix,
/// so that engines older and newer than this client both answer.
async fn server_api_version(connect: &Connect) -> io::Result<(usize, usize)> {
    let request = http::Request::get("/version")
        .body(Empty::<Bytes>::new())
        .map_err(io::Error::other)?;
    let response = transport::send(connect, request)
        .await
        .map_err(io::Error::other)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    if !status.is_success() {
        return Err(io::Error::other(format!(
            "GET /version answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(io::Error::other)?;
    value
        .get("ApiVersion")
        .and_then(|version| version.as_str())
        .and_then(parse_api_version)
        .ok_or_else(|| io::Error::other("the engine did not report its API version"))
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

fn error_message(error: bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerStreamError { error } => error,
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    }
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

    #[test]
    fn parses_api_versions() {
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert_eq!(parse_api_version("1.x"), None);
        assert_eq!(parse_api_version("141"), None);
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
