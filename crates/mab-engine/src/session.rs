//! A BuildKit session in which mab is the gRPC server, as the docker CLI is.
//!
//! `POST /session` with `Upgrade: h2c` turns a new connection to the engine
//! around: after `101 Switching Protocols` the engine is the HTTP/2 client
//! and calls the methods the request's `X-Docker-Expose-Session-Grpc-Method`
//! headers offer. mab offers the health check and FileSync's DiffCopy, over
//! which the engine fetches the build context and the Dockerfile.
//!
//! It also offers Auth's `Credentials`, so that BuildKit can pull a base
//! image from a registry that needs a login, with the credentials of the
//! coordinator's Docker configuration for that registry, as the docker CLI
//! does.
//!
//! And it offers the Secrets service's `GetSecret` (see `secrets`), which
//! a `RUN --mount=type=secret` step asks for its secret's value, and the
//! SSH service's `CheckAgent` and `ForwardAgent` (see `sshforward`), over
//! which a `RUN --mount=type=ssh` step talks to an SSH agent.

use std::future::Future;
use std::path::Path;

use bollard_buildkit_proto::health::health_check_response::ServingStatus;
use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::SecretsServer;
use bollard_buildkit_proto::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer;
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use bollard_buildkit_proto::moby::sshforward::v1::ssh_server::SshServer;
use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioExecutor;
use hyper_util::service::TowerToHyperService;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::filesync::{FileSyncService, Sources};
use crate::secrets::{Secrets, SecretsService};
use crate::sshforward::{SshAgents, SshService};
use crate::transport::{self, Connect};

const HEADER_UUID: &str = "X-Docker-Expose-Session-Uuid";
const HEADER_NAME: &str = "X-Docker-Expose-Session-Name";
const HEADER_SHARED_KEY: &str = "X-Docker-Expose-Session-Sharedkey";
const HEADER_METHOD: &str = "X-Docker-Expose-Session-Grpc-Method";

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("POST /session failed: {0}")]
    Request(String),
    #[error(
        "the engine refused a BuildKit session (POST /session answered {status}: {message}); \
         mab needs an engine whose BuildKit accepts client sessions (Docker 18.09 or newer)"
    )]
    Refused { status: StatusCode, message: String },
}

/// The identity of a session, as the engine sees it.
#[derive(Clone, Debug)]
pub(crate) struct SessionIdentity {
    /// Unique per build; the build request names it.
    pub(crate) id: String,
    /// A readable name (the context directory's name).
    pub(crate) name: String,
    /// Stable for one context directory on one machine, so that BuildKit
    /// finds what it received last time and asks only for what changed.
    pub(crate) shared_key: String,
}

impl SessionIdentity {
    pub(crate) fn for_context(id: String, context_dir: &Path) -> SessionIdentity {
        let absolute =
            std::fs::canonicalize(context_dir).unwrap_or_else(|_| context_dir.to_path_buf());
        let name = absolute
            .file_name()
            .map(|name| header_safe(&name.to_string_lossy()))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "context".to_owned());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let seed = format!("{}:{}", host.trim(), absolute.display());
        let digest = mab_registry::sha256_digest(seed.as_bytes());
        let shared_key = digest.trim_start_matches("sha256:").to_owned();
        SessionIdentity {
            id,
            name,
            shared_key,
        }
    }
}

/// Header values must be visible ASCII.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character.is_ascii_graphic() {
                character
            } else {
                '-'
            }
        })
        .collect()
}

/// The methods the session offers, as the engine calls them.
pub(crate) fn offered_methods() -> Vec<String> {
    vec![
        format!("/{}/Check", HealthServer::<Healthy>::NAME),
        format!("/{}/DiffCopy", FileSyncServer::<FileSyncService>::NAME),
        format!("/{}/Credentials", AuthServer::<Credentials>::NAME),
        format!("/{}/GetSecret", SecretsServer::<SecretsService>::NAME),
        format!("/{}/CheckAgent", SshServer::<SshService>::NAME),
        format!("/{}/ForwardAgent", SshServer::<SshService>::NAME),
    ]
}

/// Opens the session and returns the future that serves it. The session
/// lasts as long as that future is polled; dropping it closes the
/// connection, which ends the session on the engine's side.
pub(crate) async fn open(
    connect: &Connect,
    identity: &SessionIdentity,
    sources: Sources,
    credential_sources: Option<mab_registry::CredentialSources>,
    secrets: Secrets,
    agents: SshAgents,
) -> Result<impl Future<Output = ()> + Send + 'static, SessionError> {
    let mut request = http::Request::post("/session")
        .header(UPGRADE, "h2c")
        .header(CONNECTION, "Upgrade");
    for (name, value) in [
        (HEADER_UUID, &identity.id),
        (HEADER_NAME, &identity.name),
        (HEADER_SHARED_KEY, &identity.shared_key),
    ] {
        let value = HeaderValue::from_str(value)
            .map_err(|error| SessionError::Request(format!("{name}: {error}")))?;
        request = request.header(name, value);
    }
    for method in offered_methods() {
        request = request.header(HEADER_METHOD, method);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|error| SessionError::Request(error.to_string()))?;
    let response = transport::send(connect, request)
        .await
        .map_err(|error| SessionError::Request(error.to_string()))?;
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = transport::body_bytes(response.into_body()).await;
        return Err(SessionError::Refused {
            status,
            message: crate::response_message(&body),
        });
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|error| SessionError::Request(format!("the upgrade failed: {error}")))?;

    let routes = Routes::new(HealthServer::new(Healthy))
        .add_service(FileSyncServer::new(FileSyncService::new(sources)))
        .add_service(AuthServer::new(Credentials { credential_sources }))
        .add_service(SecretsServer::new(SecretsService { secrets }))
        .add_service(SshServer::new(SshService::new(agents)))
        .prepare();
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(upgraded, TowerToHyperService::new(routes));
    let label = identity.id.clone();
    Ok(async move {
        if let Err(error) = connection.await {
            tracing::debug!("BuildKit session {label} ended: {error}");
        }
    })
}

/// The Auth service: registry credentials from the coordinator's sources
/// ([`mab_registry::CredentialSources`]), for the registries the engine
/// pulls base images from.
#[derive(Clone)]
pub(crate) struct Credentials {
    credential_sources: Option<mab_registry::CredentialSources>,
}

#[tonic::async_trait]
impl Auth for Credentials {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let found = match self.credential_sources.clone() {
            // Reading them may run a credential helper: off the async threads.
            Some(sources) => tokio::task::spawn_blocking(move || sources.lookup(&host))
                .await
                .map_err(|error| Status::internal(error.to_string()))?
                .map_err(|error| Status::unavailable(error.to_string()))?,
            None => None,
        };
        // No entry: empty credentials, and the pull goes on anonymously.
        let response = match found {
            Some(credentials) => match credentials.identity_token {
                Some(token) => CredentialsResponse {
                    username: String::new(),
                    secret: token,
                },
                None => CredentialsResponse {
                    username: credentials.username.unwrap_or_default(),
                    secret: credentials.password.unwrap_or_default(),
                },
            },
            None => CredentialsResponse::default(),
        };
        Ok(Response::new(response))
    }

    async fn fetch_token(
        &self,
        _request: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented("only Credentials is offered"))
    }

    async fn get_token_authority(
        &self,
        _request: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("only Credentials is offered"))
    }

    async fn verify_token_authority(
        &self,
        _request: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("only Credentials is offered"))
    }
}

/// The health service: the engine checks the session is alive.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Healthy;

#[tonic::async_trait]
impl Health for Healthy {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("only Check is offered"))
    }

    type WatchStream = futures_util::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("only Check is offered"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_health_diffcopy_credentials_secrets_and_ssh() {
        assert_eq!(
            offered_methods(),
            [
                "/grpc.health.v1.Health/Check",
                "/moby.filesync.v1.FileSync/DiffCopy",
                "/moby.filesync.v1.Auth/Credentials",
                "/moby.buildkit.secrets.v1.Secrets/GetSecret",
                "/moby.sshforward.v1.SSH/CheckAgent",
                "/moby.sshforward.v1.SSH/ForwardAgent",
            ]
        );
    }

    #[test]
    fn the_shared_key_is_stable_per_directory() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let first = SessionIdentity::for_context("a".to_owned(), one.path());
        let again = SessionIdentity::for_context("b".to_owned(), one.path());
        let other = SessionIdentity::for_context("c".to_owned(), two.path());
        assert_eq!(first.shared_key, again.shared_key);
        assert_ne!(first.shared_key, other.shared_key);
        assert_eq!(first.shared_key.len(), 64);
        assert_eq!(header_safe("grüß dir"), "gr---dir");
    }
}
