//! Talking to the registry that holds the image: reading what the engines
//! pushed, pushing the list, pointing tags at it, removing staging tags.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mab_events::Reporter;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::credentials::Credentials;
use crate::list::{
    config_platform, list_entries, Child, ConfigPlatform, DOCKER_MANIFEST, OCI_MANIFEST,
};

/// A blob's bytes as they arrive ([`Repository::blob`]).
pub type Blob = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// One layer of an image manifest ([`Repository::layers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Its media type (`application/vnd.oci.image.layer.v1.tar+gzip`, ...).
    pub media_type: String,
    /// Its digest, `sha256:` and 64 hex digits.
    pub digest: String,
    /// Its size in bytes, as the manifest says.
    pub size: u64,
}
use crate::retry::{self, Fault};
use crate::RegistryError;

/// The `layers` of an image manifest (OCI image spec `manifest.md`: each
/// descriptor's `mediaType`, `digest` and `size` are required), in order.
/// A manifest without `layers` (an index, a schema 1 manifest), a layer
/// missing a field, or a digest of another algorithm than `sha256` (the
/// one mab verifies a blob by; OCI also registers `sha512`) is an error
/// saying so.
pub fn manifest_layers(manifest: &serde_json::Value) -> Result<Vec<Layer>, String> {
    let layers = manifest["layers"]
        .as_array()
        .ok_or("the manifest has no `layers`: it is not an image manifest")?;
    layers
        .iter()
        .enumerate()
        .map(|(index, layer)| {
            let missing = |name: &str| format!("layer {} has no `{name}`", index + 1);
            let text = |name: &str| {
                layer[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| missing(name))
            };
            let digest = text("digest")?;
            match digest.split_once(':') {
                Some(("sha256", _)) => {}
                Some((algorithm, _)) => {
                    return Err(format!(
                        "layer {digest} uses the digest algorithm `{algorithm}`; mab verifies sha256 digests only"
                    ))
                }
                None => return Err(format!("layer {} has the digest `{digest}`, which names no algorithm", index + 1)),
            }
            Ok(Layer {
                media_type: text("mediaType")?,
                digest,
                size: layer["size"].as_u64().ok_or_else(|| missing("size"))?,
            })
        })
        .collect()
}

/// Whether a registry host is on loopback, where Docker speaks plain HTTP.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry
            .rsplit_once(':')
            .map_or(registry, |(host, _port)| host)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// The registry host an image name points at (`docker.io` names resolve to
/// `index.docker.io`).
pub fn registry_of(image: &str) -> Result<String, RegistryError> {
    Ok(parse_reference(image)?.resolve_registry().to_owned())
}

fn parse_reference(image: &str) -> Result<Reference, RegistryError> {
    mab_config::project::parse_image_reference(image).map_err(|message| RegistryError::Reference {
        image: image.to_owned(),
        message,
    })
}

/// An image reference split by Docker's reference grammar
/// (distribution/reference, as `docker pull` reads it):
/// `[registry[:port]/]path[:tag][@sha256:digest]`, path components
/// lowercase (read by [`mab_config::project::parse_image_reference`]). A name without a registry is on Docker Hub (`docker.io`), a
/// single-component one under `library/`, as docker resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// The image name without tag or digest, as written
    /// (`127.0.0.1:5000/team/app`); what [`Repository::new`] takes.
    pub name: String,
    /// The registry host\[:port\] the name resolves to (`index.docker.io`
    /// for Docker Hub names).
    pub registry: String,
    /// The repository path in that registry (`team/app`, `library/alpine`).
    pub repository: String,
    /// The tag or digest to read: the digest when one is written, else the
    /// tag, else `latest`.
    pub tag_or_digest: String,
}

impl ImageReference {
    /// Parses `text`; a reference Docker refuses is
    /// [`RegistryError::Reference`].
    pub fn parse(text: &str) -> Result<ImageReference, RegistryError> {
        let reference = parse_reference(text)?;
        let suffix = match (reference.tag(), reference.digest()) {
            (_, Some(digest)) => format!("@{digest}"),
            (Some(tag), None) => format!(":{tag}"),
            (None, None) => String::new(),
        };
        let name = match (reference.tag(), reference.digest()) {
            (Some(tag), Some(digest)) => text.strip_suffix(&format!(":{tag}@{digest}")),
            _ => text.strip_suffix(&suffix),
        }
        .unwrap_or(text)
        .to_owned();
        Ok(ImageReference {
            name,
            registry: reference.resolve_registry().to_owned(),
            repository: reference.repository().to_owned(),
            tag_or_digest: reference
                .digest()
                .or(reference.tag())
                .unwrap_or("latest")
                .to_owned(),
        })
    }
}

/// One image repository in one registry.
pub struct Repository {
    client: Client,
    auth: RegistryAuth,
    /// The identity token of the credentials, exchanged for access tokens
    /// by [`Repository::refreshed_token`] instead of oci-client's flow.
    /// It is replaced by a new one when a token service's answer gives
    /// one (`refresh_token`), as OAuth2 refresh-token rotation asks.
    identity_token: Option<Mutex<String>>,
    /// Access tokens got with the identity token, by scope, with when they
    /// expire.
    access_tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Where the credentials came from ([`Credentials::origin`]).
    origin: String,
    http: reqwest::Client,
    registry: String,
    repository: String,
    scheme: &'static str,
    /// Gets an [`mab_events::Event::Retry`] before each retried request.
    reporter: Arc<dyn Reporter>,
}

impl Repository {
    /// `image` is the image name of `mab.toml` (`registry/namespace/name`).
    pub fn new(
        image: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Repository, RegistryError> {
        let reference = parse_reference(image)?;
        let registry = reference.resolve_registry().to_owned();
        let plain_http = is_loopback(&registry);
        let protocol = if plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let auth = match credentials {
            Some(Credentials {
                username: Some(username),
                password: Some(password),
                ..
            }) => RegistryAuth::Basic(username.clone(), password.clone()),
            _ => RegistryAuth::Anonymous,
        };
        Ok(Repository {
            client: Client::new(ClientConfig {
                protocol,
                // Its token request, bounded as the others are.
                connect_timeout: Some(REQUEST_TIMEOUT),
                read_timeout: Some(REQUEST_TIMEOUT),
                ..Default::default()
            }),
            auth,
            identity_token: credentials
                .and_then(|credentials| credentials.identity_token.clone())
                .map(Mutex::new),
            access_tokens: Mutex::new(HashMap::new()),
            origin: credentials.map_or_else(String::new, |credentials| credentials.origin.clone()),
            // Each read of an answer's body within the request time limit,
            // so that a blob streamed for longer is not cut off as long as
            // its bytes keep coming.
            http: reqwest::Client::builder()
                .read_timeout(REQUEST_TIMEOUT)
                .build()
                .map_err(|error| RegistryError::Request {
                    registry: registry.clone(),
                    action: "setting up the HTTP client".to_owned(),
                    message: error.to_string(),
                })?,
            registry,
            repository: reference.repository().to_owned(),
            scheme: if plain_http { "http" } else { "https" },
            reporter: Arc::new(mab_events::Silent),
        })
    }

    /// This repository, reporting each retried request to `reporter` (as
    /// [`mab_events::Event::Retry`] with a
    /// [`mab_events::RetryTarget::Registry`] target); without it retries
    /// are not reported.
    pub fn reporting_to(mut self, reporter: Arc<dyn Reporter>) -> Repository {
        self.reporter = reporter;
        self
    }

    /// `METHOD /v2/<repository>/<path>`, the request as a [retry
    /// event](mab_events::Event::Retry) names it.
    fn request_line(&self, method: &str, path: &str) -> String {
        format!("{method} /v2/{}/{path}", self.repository)
    }

    /// `registry/repository`, for messages.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    fn reference(&self, tag_or_digest: &str) -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_owned(),
            )
        } else {
            Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_owned(),
            )
        }
    }

    fn failed(&self, action: &str, error: impl std::fmt::Display) -> RegistryError {
        RegistryError::Request {
            registry: self.registry.clone(),
            action: format!("{action} in {}", self.name()),
            message: error.to_string(),
        }
    }

    /// `<scheme>://<registry>/v2/`, the API's base (OCI distribution spec,
    /// `end-1`), where a registry says whether and how to log in.
    fn base(&self) -> String {
        format!("{}://{}/v2/", self.scheme, self.registry)
    }

    /// `<scheme>://<registry>/v2/<repository>/<path>` (OCI distribution
    /// spec endpoints: `manifests/<reference>`, `blobs/<digest>`,
    /// `blobs/uploads/`).
    fn url(&self, path: &str) -> String {
        format!(
            "{}://{}/v2/{}/{path}",
            self.scheme, self.registry, self.repository
        )
    }

    /// One try of a request: the token for `operation` (where the registry
    /// uses tokens), then `request` with it, each within
    /// [`REQUEST_TIMEOUT`]. An answer whose status is not a success is a
    /// [`Fault::Answered`].
    async fn send(
        &self,
        operation: RegistryOperation,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Fault> {
        let token = self.token(operation).await?;
        succeeded(self.authorized(request, token.as_deref()), "the registry").await
    }

    /// One try of a `GET` of content addressed by `digest` (when it is
    /// one): its bytes, checked against the digest.
    async fn get(
        &self,
        path: &str,
        accept: &[&str],
        digest: Option<&str>,
    ) -> Result<Vec<u8>, Fault> {
        let request = self
            .http
            .get(self.url(path))
            .header(reqwest::header::ACCEPT, accept.join(", "));
        let response = self.send(RegistryOperation::Pull, request).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|error| Fault::transport(&error))?;
        match digest {
            Some(digest) if sha256_digest(&bytes) != digest => Err(Fault::Unusable {
                message: format!(
                    "the registry returned content with digest {}",
                    sha256_digest(&bytes)
                ),
            }),
            _ => Ok(bytes.to_vec()),
        }
    }

    /// [`retry::retry`] for this registry and its reporter: `request` as
    /// [`Repository::request_line`] gives it, the error naming `action`.
    async fn retrying<T, Fut>(
        &self,
        action: &str,
        request: &str,
        attempt: impl FnMut() -> Fut,
    ) -> Result<T, RegistryError>
    where
        Fut: std::future::Future<Output = Result<T, Fault>>,
    {
        retry::retry(&self.registry, request, self.reporter.as_ref(), attempt)
            .await
            .map_err(|failed| match failed.fault.status() {
                Some(404) => RegistryError::NotFound {
                    registry: self.registry.clone(),
                    action: format!("{action} in {}", self.name()),
                    message: failed.to_string(),
                },
                _ => self.failed(action, failed),
            })
    }

    /// The manifest `digest` as the registry holds it: its media type, size
    /// and the platform fields its image config holds. Each request is
    /// retried on transient faults (see [`retry`]).
    pub async fn describe(&self, digest: &str) -> Result<Child, RegistryError> {
        self.describe_with_config(digest)
            .await
            .map(|(child, _)| child)
    }

    /// [`Repository::describe`], with the image config's bytes as served
    /// (checked against the config's digest), for what else it says
    /// (`created`, `config.Labels`).
    pub async fn describe_with_config(
        &self,
        digest: &str,
    ) -> Result<(Child, Vec<u8>), RegistryError> {
        let reading = format!("reading manifest {digest}");
        let path = format!("manifests/{digest}");
        let bytes = self
            .retrying(&reading, &self.request_line("GET", &path), || {
                self.get(&path, &[DOCKER_MANIFEST, OCI_MANIFEST], Some(digest))
            })
            .await?;
        let manifest: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|error| self.failed(&format!("parsing manifest {digest}"), error))?;
        let media_type = manifest["mediaType"]
            .as_str()
            .unwrap_or(OCI_MANIFEST)
            .to_owned();
        let (config, platform) = self.image_config(digest, &manifest).await?;
        let image_size = std::iter::once(&manifest["config"])
            .chain(manifest["layers"].as_array().into_iter().flatten())
            .filter_map(|descriptor| descriptor["size"].as_u64())
            .sum();
        let child = Child {
            media_type,
            digest: digest.to_owned(),
            size: bytes.len() as u64,
            platform,
            image_size,
        };
        Ok((child, config))
    }

    /// The image config of the image manifest `manifest` (at `digest`), as
    /// served and checked against its digest, and the platform it names.
    async fn image_config(
        &self,
        digest: &str,
        manifest: &serde_json::Value,
    ) -> Result<(Vec<u8>, ConfigPlatform), RegistryError> {
        let config_digest = manifest["config"]["digest"].as_str().ok_or_else(|| {
            self.failed(&format!("parsing manifest {digest}"), "it names no config")
        })?;
        let path = format!("blobs/{config_digest}");
        let config = self
            .retrying(
                &format!("reading image config {config_digest}"),
                &self.request_line("GET", &path),
                || self.get(&path, &["*/*"], Some(config_digest)),
            )
            .await?;
        let platform = config_platform(&config).map_err(|error| {
            self.failed(&format!("parsing image config {config_digest}"), error)
        })?;
        Ok((config, platform))
    }

    /// The layers of the image manifest `digest`, in order (its `layers`
    /// descriptors, OCI image manifest and Docker manifest v2 schema 2
    /// alike: media type, digest, size; [`manifest_layers`]). Retried on
    /// transient faults. A manifest that is not an image manifest, or a
    /// layer without those fields or with another digest algorithm than
    /// sha256, is an error.
    pub async fn layers(&self, digest: &str) -> Result<Vec<Layer>, RegistryError> {
        let (bytes, _) = self.manifest(digest).await?;
        let action = format!("reading the layers of manifest {digest}");
        let manifest: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|error| self.failed(&action, error))?;
        manifest_layers(&manifest).map_err(|error| self.failed(&action, error))
    }

    /// The blob `digest` (`GET /v2/<repository>/blobs/<digest>`) as a
    /// byte stream, never held whole. Getting the answer is retried on
    /// transient faults as the other requests are; a connection lost while
    /// the body streams is an I/O error of the stream, not retried here: a
    /// reader that wants the blob whole asks for it again (the binary
    /// check reads such a layer again from its start, a new `blob`). Each
    /// read waits at most [`REQUEST_TIMEOUT`]. The
    /// bytes are checked against `digest` as they come: a stream read to
    /// its end whose digest differs ends with an I/O error saying so.
    pub async fn blob(&self, digest: &str) -> Result<Blob, RegistryError> {
        let path = format!("blobs/{digest}");
        let response = self
            .retrying(
                &format!("reading blob {digest}"),
                &self.request_line("GET", &path),
                || async {
                    let token = self.token(RegistryOperation::Pull).await?;
                    let request = self.authorized(self.http.get(self.url(&path)), token.as_deref());
                    let response = request
                        .send()
                        .await
                        .map_err(|error| Fault::transport(&error))?;
                    if !response.status().is_success() {
                        return Err(Fault::answered(response).await);
                    }
                    Ok(response)
                },
            )
            .await?;
        // The digest of what came, checked when the body ends.
        let state = (
            response.bytes_stream(),
            Some(mab_context::Sha256Stream::default()),
        );
        let expected = digest.to_owned();
        let stream = futures_util::stream::unfold(state, move |(mut body, mut hash)| {
            let expected = expected.clone();
            async move {
                let running = hash.as_mut()?;
                let item = match futures_util::StreamExt::next(&mut body).await {
                    Some(Ok(chunk)) => {
                        running.update(&chunk);
                        return Some((Ok(chunk), (body, hash)));
                    }
                    Some(Err(error)) => Err(std::io::Error::other(error)),
                    None if running.digest() == expected => return None,
                    None => Err(std::io::Error::other(format!(
                        "the registry sent content with digest {} for blob {expected}",
                        running.digest()
                    ))),
                };
                Some((item, (body, None)))
            }
        });
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(
            stream,
        ))))
    }

    /// Pushes the list once by its digest, then points every tag at it,
    /// each push retried on transient faults (see [`retry`]). Returns the
    /// list's digest.
    pub async fn publish(
        &self,
        media_type: &str,
        bytes: &[u8],
        tags: &[String],
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        let mut moved: Vec<&str> = Vec::new();
        for target in std::iter::once(&digest).chain(tags) {
            let pushed = retry::retry(
                &self.registry,
                &self.request_line("PUT", &format!("manifests/{target}")),
                self.reporter.as_ref(),
                || {
                    let request = self
                        .http
                        .put(self.url(&format!("manifests/{target}")))
                        .header(reqwest::header::CONTENT_TYPE, media_type)
                        .body(bytes.to_vec());
                    self.send(RegistryOperation::Push, request)
                },
            )
            .await;
            if let Err(failed) = pushed {
                // Say exactly which tags already point at the new list.
                let state = if moved.is_empty() {
                    "no tag was moved".to_owned()
                } else {
                    format!(
                        "tag(s) {} already point at the new list {digest}",
                        moved.join(", ")
                    )
                };
                return Err(self.failed(
                    &format!("pushing the manifest list as {target}"),
                    format!("{failed}; {state}"),
                ));
            }
            if target != &digest {
                moved.push(target);
            }
        }
        Ok(digest)
    }

    /// Checks, before anything is built, that the registry answers and
    /// that the credentials allow a push to the repository: it asks for a
    /// token with the push scope where the registry uses tokens, starts a
    /// blob upload (OCI distribution spec: `POST /v2/<name>/blobs/uploads/`,
    /// answered `202 Accepted` with the upload's `Location`) and cancels it
    /// (`DELETE <location>`), so that nothing stays in the registry. Each
    /// request gives up after [`CHECK_TIMEOUT`] and is retried on
    /// transient faults (see [`retry`]).
    ///
    /// Errors: [`RegistryError::Unreachable`] when the registry does not
    /// answer; [`RegistryError::PushDenied`] on 401 or 403, when the
    /// token service refuses the credentials, or when an identity token
    /// cannot be used there (no Bearer challenge); [`RegistryError::Request`]
    /// for any other answer.
    pub async fn check_push(&self) -> Result<(), RegistryError> {
        let base = self.base();
        let answered = retry::retry(
            &self.registry,
            "GET /v2/",
            self.reporter.as_ref(),
            || async {
                match self.http.get(&base).timeout(CHECK_TIMEOUT).send().await {
                    Ok(_) => Ok(()),
                    Err(error) => Err(Fault::transport(&error)),
                }
            },
        )
        .await;
        if let Err(failed) = answered {
            return Err(RegistryError::Unreachable {
                registry: self.registry.clone(),
                message: failed.to_string(),
            });
        }
        let action = "starting a push";
        let (response, token) = retry::retry(
            &self.registry,
            &self.request_line("POST", "blobs/uploads/"),
            self.reporter.as_ref(),
            || async {
                let token = self.token(RegistryOperation::Push).await?;
                let response = self
                    .authorized(self.http.post(self.url("blobs/uploads/")), token.as_deref())
                    .timeout(CHECK_TIMEOUT)
                    .send()
                    .await
                    .map_err(|error| Fault::transport(&error))?;
                if response.status() != reqwest::StatusCode::ACCEPTED {
                    return Err(Fault::answered(response).await);
                }
                Ok((response, token))
            },
        )
        .await
        .map_err(|failed| match (&failed.fault, failed.fault.status()) {
            (_, Some(401 | 403)) => self.push_denied(failed),
            // The identity token cannot be used with this registry.
            (Fault::Unusable { .. }, _) if self.identity_token.is_some() => {
                self.push_denied(failed)
            }
            _ => self.failed(action, failed),
        })?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|location| location.to_str().ok())
            .and_then(|location| response.url().join(location).ok());
        // Only tidying, not retried: an upload left open expires in the
        // registry.
        if let Some(location) = location {
            let cancelled = self
                .authorized(self.http.delete(location), token.as_deref())
                .timeout(CHECK_TIMEOUT)
                .send()
                .await;
            tracing::debug!("cancelling the upload in {}: {cancelled:?}", self.name());
        }
        Ok(())
    }

    fn push_denied(&self, message: impl std::fmt::Display) -> RegistryError {
        RegistryError::PushDenied {
            anonymous: matches!(self.auth, RegistryAuth::Anonymous)
                && self.identity_token.is_none(),
            registry: self.registry.clone(),
            repository: self.name(),
            whom: match &self.auth {
                RegistryAuth::Basic(username, _) => {
                    format!("`{username}` (from {})", self.origin)
                }
                _ if self.identity_token.is_some() => {
                    format!("the identity token from {}", self.origin)
                }
                _ => "anonymous users".to_owned(),
            },
            message: message.to_string(),
        }
    }

    /// The bearer token for `operation` on this repository, or `None` where
    /// the registry takes basic credentials or none. With an identity token,
    /// [`Repository::refreshed_token`]; else oci-client's token flow (the
    /// realm of the registry's Bearer challenge asked with
    /// `repository:NAME:pull` or `repository:NAME:pull,push`, with basic
    /// credentials when there are any, as docker/distribution's client).
    async fn token(&self, operation: RegistryOperation) -> Result<Option<String>, Fault> {
        match &self.identity_token {
            Some(_) => self.refreshed_token(operation).await,
            None => self
                .client
                .auth(&self.reference("latest"), &self.auth, operation)
                .await
                .map_err(Fault::oci),
        }
    }

    /// An access token for `operation` got with an identity token, as
    /// docker/distribution's client does for `identitytoken` credentials
    /// (`registry/client/auth/session.go`, `fetchTokenWithOAuth`): the realm
    /// and service of the registry's `WWW-Authenticate: Bearer` challenge
    /// (on `GET /v2/`), then `POST realm` with the form `grant_type=
    /// refresh_token`, `refresh_token`, `service`, `scope` and
    /// `client_id=mab`; the answer's `access_token` is kept for its
    /// `expires_in` seconds, at least [`MINIMUM_TOKEN_LIFETIME`], and a
    /// `refresh_token` in it replaces the identity token.
    /// `None` when `GET /v2/` succeeds: the registry needs no login, and
    /// requests go without a token (as docker's client when the ping asks
    /// for no challenge).
    ///
    /// Errors: `GET /v2/` answering anything but a success or `401` is
    /// [`Fault::Answered`] with its status (so a 5xx or 429 is retried); a
    /// `401` without a Bearer challenge (a registry that takes only basic
    /// credentials) is [`Fault::Unusable`]; a token service refusing the
    /// token is [`Fault::Answered`] with its status; an answer without an
    /// access token is [`Fault::Unusable`].
    async fn refreshed_token(&self, operation: RegistryOperation) -> Result<Option<String>, Fault> {
        let scope = match operation {
            RegistryOperation::Pull => format!("repository:{}:pull", self.repository),
            RegistryOperation::Push => format!("repository:{}:pull,push", self.repository),
        };
        if let Some((token, expires)) = self.lock_tokens().get(&scope) {
            if *expires > Instant::now() {
                return Ok(Some(token.clone()));
            }
        }
        let base = self.base();
        let answer = self
            .http
            .get(&base)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|error| Fault::transport(&error))?;
        if answer.status().is_success() {
            return Ok(None);
        }
        if answer.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Err(Fault::answered(answer).await);
        }
        let Some(challenge) = BearerChallenge::find(answer.headers()) else {
            return Err(Fault::Unusable {
                message: format!(
                    "an identity token needs a registry that answers with a Bearer challenge; {base} answered {} without one",
                    answer.status()
                ),
            });
        };
        let refresh_token = self.refresh_token();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("service", &challenge.service),
            ("scope", &scope),
            ("client_id", "mab"),
        ];
        let response = succeeded(
            self.http.post(&challenge.realm).form(&form),
            "the token service",
        )
        .await?;
        let unusable = || Fault::Unusable {
            message: format!("the token service {} gave no access_token", challenge.realm),
        };
        let bytes = response
            .bytes()
            .await
            .map_err(|error| Fault::transport(&error))?;
        let answer: TokenAnswer = serde_json::from_slice(&bytes).map_err(|_| unusable())?;
        if answer.access_token.is_empty() {
            return Err(unusable());
        }
        if let Some(rotated) = answer
            .refresh_token
            .clone()
            .filter(|token| !token.is_empty())
        {
            if let Some(current) = &self.identity_token {
                *current
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = rotated;
            }
        }
        self.lock_tokens().insert(
            scope,
            (
                answer.access_token.clone(),
                Instant::now() + answer.lifetime(),
            ),
        );
        Ok(Some(answer.access_token))
    }

    /// The identity token as it is now (empty without one).
    fn refresh_token(&self) -> String {
        self.identity_token
            .as_ref()
            .map(|token| {
                token
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default()
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.access_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `request` with the bearer token, else the basic credentials, if any.
    fn authorized(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match (token, &self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(username, password)) => {
                request.basic_auth(username, Some(password))
            }
            (None, _) => request,
        }
    }

    /// The raw manifest or list at `tag_or_digest`, and its digest (the
    /// sha256 of the bytes). Retried on transient faults (see [`retry`]).
    ///
    /// Errors: [`RegistryError::NotFound`] on a 404;
    /// [`RegistryError::DigestMismatch`] when `tag_or_digest` is a digest
    /// and the bytes served do not hash to it; [`RegistryError::Request`]
    /// for any other failure.
    pub async fn manifest(&self, tag_or_digest: &str) -> Result<(Vec<u8>, String), RegistryError> {
        let action = format!("reading {tag_or_digest}");
        let path = format!("manifests/{tag_or_digest}");
        let bytes = self
            .retrying(&action, &self.request_line("GET", &path), || {
                self.get(&path, &MANIFEST_TYPES, None)
            })
            .await?;
        let digest = sha256_digest(&bytes);
        if tag_or_digest.starts_with("sha256:") && digest != tag_or_digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                action: format!("{action} in {}", self.name()),
                served: digest,
            });
        }
        Ok((bytes, digest))
    }

    /// The images under `tag_or_digest` by platform, each as its manifest's
    /// digest: the entries of a manifest list or image index that name a
    /// platform, in the list's order; for a single image's manifest, that
    /// one image with the platform its config names. `None` when the
    /// registry has nothing there (404, also for a repository it does not
    /// know). For taking a platform's image out of a published list (the
    /// cache source of a build, `[cache] from = "registry"`). Each request
    /// is retried on transient faults (see [`retry`]).
    ///
    /// Errors: [`RegistryError::Unreachable`], [`RegistryError::Request`]
    /// (a list that cannot be read as one is a `Request` naming the
    /// reference), [`RegistryError::DigestMismatch`].
    pub async fn platform_images(
        &self,
        tag_or_digest: &str,
    ) -> Result<Option<Vec<(ConfigPlatform, String)>>, RegistryError> {
        let (bytes, digest) = match self.manifest(tag_or_digest).await {
            Ok(found) => found,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        // An image manifest is read here, without a second GET of it.
        let manifest = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
        let is_image = matches!(
            manifest["mediaType"].as_str(),
            Some(DOCKER_MANIFEST | OCI_MANIFEST)
        ) || manifest.get("config").is_some();
        if is_image {
            let (_, platform) = self.image_config(&digest, &manifest).await?;
            return Ok(Some(vec![(platform, digest)]));
        }
        let entries = list_entries(&bytes).map_err(|error| RegistryError::Request {
            registry: self.registry.clone(),
            action: format!("reading {tag_or_digest} in {}", self.name()),
            message: format!("it is neither an image manifest nor a list: {error}"),
        })?;
        Ok(Some(
            entries
                .into_iter()
                .filter_map(|entry| Some((entry.platform?, entry.digest)))
                .collect(),
        ))
    }

    /// Whether the registry knows this repository, as far as it says so:
    /// `false` when `GET /v2/<name>/tags/list?n=1` answers 404 with the
    /// error code `NAME_UNKNOWN` (distribution-spec, "Error Codes":
    /// "repository name not known to registry"). The Docker registry
    /// answers so there for a repository never pushed to, while its
    /// manifest requests answer `MANIFEST_UNKNOWN` either way. `true` for
    /// a tag list. Retried on transient faults (see [`retry`]).
    ///
    /// Errors: any other failure, a 404 without `NAME_UNKNOWN` as
    /// [`RegistryError::NotFound`].
    pub async fn is_known(&self) -> Result<bool, RegistryError> {
        let path = "tags/list?n=1";
        let listed = self
            .retrying("listing the tags", &self.request_line("GET", path), || {
                self.get(path, &["application/json"], None)
            })
            .await;
        match listed {
            Ok(_) => Ok(true),
            Err(error) if error.is_name_unknown() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The digest of the manifest `reference` (a tag, or a digest)
    /// resolves to now, `sha256:` and 64 hex digits, or `None` when the
    /// repository has none (404, as the OCI distribution spec answers an
    /// unknown tag or manifest). Asked with `HEAD`, whose
    /// `Docker-Content-Digest` header gives it (a registry counts no pull
    /// for a `HEAD`, where Docker Hub counts each manifest `GET`); when the
    /// answer has no such header, or the registry refuses `HEAD` (any 4xx
    /// but 404, or 501), a `GET` of the manifest gives the sha256 of its
    /// bytes. For deciding by digest whether a tag that other builds may
    /// move is still ours, and whether a manifest is still served.
    /// Each request is retried on transient faults (see [`retry`]).
    pub async fn tag_digest(&self, reference: &str) -> Result<Option<String>, RegistryError> {
        let path = format!("manifests/{reference}");
        let action = format!("reading {reference}");
        let headed = self
            .retrying(&action, &self.request_line("HEAD", &path), || async {
                let request = self
                    .http
                    .head(self.url(&path))
                    .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "));
                match self.send(RegistryOperation::Pull, request).await {
                    Ok(response) => Ok(Head::Found(content_digest(&response))),
                    Err(fault) if fault.status() == Some(404) => Ok(Head::Missing),
                    Err(fault) if matches!(fault.status(), Some(400..=499 | 501)) => {
                        tracing::debug!("{} refused HEAD {path}: {fault}", self.name());
                        Ok(Head::Refused)
                    }
                    Err(fault) => Err(fault),
                }
            })
            .await?;
        match headed {
            Head::Missing => return Ok(None),
            Head::Found(Some(digest)) => return Ok(Some(digest)),
            Head::Found(None) | Head::Refused => {}
        }
        self.retrying(&action, &self.request_line("GET", &path), || async {
            match self.get(&path, &MANIFEST_TYPES, None).await {
                Ok(bytes) => Ok(Some(sha256_digest(&bytes))),
                Err(fault) if fault.status() == Some(404) => Ok(None),
                Err(fault) => Err(fault),
            }
        })
        .await
    }

    /// Deletes a tag where the registry supports deleting tags (OCI
    /// distribution 1.1). Returns `false` when the registry refuses to
    /// delete by tag, which many do (the Docker registry among them).
    /// Retried on transient faults (see [`retry`]).
    pub async fn delete_tag(&self, tag: &str) -> Result<bool, RegistryError> {
        let deleted = self
            .retrying(
                &format!("deleting tag {tag}"),
                &self.request_line("DELETE", &format!("manifests/{tag}")),
                || async {
                    let request = self.http.delete(self.url(&format!("manifests/{tag}")));
                    match self.send(RegistryOperation::Push, request).await {
                        Ok(_) => Ok(true),
                        Err(fault) if matches!(fault.status(), Some(400 | 404 | 405)) => {
                            tracing::debug!("{} did not delete tag {tag}: {fault}", self.name());
                            Ok(false)
                        }
                        Err(fault) => Err(fault),
                    }
                },
            )
            .await?;
        Ok(deleted)
    }
}

/// `request` sent within [`REQUEST_TIMEOUT`]; an answer whose status is
/// not a success is a [`Fault::Answered`] that says `who` answered (`the
/// registry`, `the token service`).
async fn succeeded(
    request: reqwest::RequestBuilder,
    who: &str,
) -> Result<reqwest::Response, Fault> {
    let response = request
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|error| Fault::transport(&error))?;
    if !response.status().is_success() {
        return Err(Fault::answered_by(response, who).await);
    }
    Ok(response)
}

/// The answer of a token service to the refresh-token grant (the Docker
/// registry token specification, "Using the OAuth2 Token Endpoint"):
/// other members are ignored.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// Seconds; read leniently: a number in any JSON form, anything else
    /// counts as not given.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    /// A new refresh token, which replaces the one used.
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The shortest lifetime an access token is kept for, and the one of a
/// token whose answer gives none: 60 seconds, as docker/distribution's
/// client raises any shorter `expires_in` (`minimumTokenLifetimeSeconds`).
const MINIMUM_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl TokenAnswer {
    /// How long the access token is kept: `expires_in`, at least
    /// [`MINIMUM_TOKEN_LIFETIME`].
    fn lifetime(&self) -> Duration {
        let seconds = self.expires_in.as_ref().and_then(|value| {
            value.as_u64().or_else(|| {
                value
                    .as_f64()
                    .filter(|seconds| *seconds >= 0.0)
                    .map(|seconds| seconds as u64)
            })
        });
        seconds
            .map(Duration::from_secs)
            .unwrap_or(MINIMUM_TOKEN_LIFETIME)
            .max(MINIMUM_TOKEN_LIFETIME)
    }
}

/// The `realm` and `service` of a `WWW-Authenticate: Bearer` challenge
/// (RFC 6750 section 3, as the Docker registry token specification uses it).
#[derive(Debug, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: String,
}

impl BearerChallenge {
    /// The first `Bearer` challenge with a `realm` among `headers`' every
    /// `WWW-Authenticate` value (a registry may send Basic and Bearer
    /// challenges in separate headers or in one, RFC 9110 section 11.6.1),
    /// read by http-auth's challenge parser; `None` when there is none. A
    /// missing `service` is empty.
    fn find(headers: &reqwest::header::HeaderMap) -> Option<BearerChallenge> {
        headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| http_auth::ChallengeParser::new(value).map_while(Result::ok))
            .filter(|challenge| challenge.scheme.eq_ignore_ascii_case("bearer"))
            .find_map(|challenge| {
                let parameter = |name: &str| {
                    challenge
                        .params
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(name))
                        .map(|(_, value)| value.to_unescaped())
                };
                Some(BearerChallenge {
                    realm: parameter("realm")?,
                    service: parameter("service").unwrap_or_default(),
                })
            })
    }
}

/// What a `HEAD` of a manifest found.
enum Head {
    /// It is there; its `Docker-Content-Digest`, when the answer has one.
    Found(Option<String>),
    /// 404: no such tag or manifest.
    Missing,
    /// The registry does not answer `HEAD` for manifests.
    Refused,
}

/// The `Docker-Content-Digest` header of `response` (the distribution
/// spec's digest of the manifest served), when it is a well-formed
/// `sha256:` digest.
fn content_digest(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("docker-content-digest")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|digest| mab_context::is_sha256_digest(digest))
        .map(str::to_owned)
}

/// The media types asked for when reading a manifest by tag or digest: a
/// list or index and an image manifest, Docker's and OCI's.
const MANIFEST_TYPES: [&str; 4] = [
    crate::list::DOCKER_MANIFEST_LIST,
    crate::list::OCI_INDEX,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
];

/// How long each of [`Repository::check_push`]'s own requests may take
/// (`GET /v2/`, the upload's `POST` and `DELETE`). The token requests made
/// before the `POST` are each limited by [`REQUEST_TIMEOUT`] instead.
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long each other HTTP request of a [`Repository`] may take, each on
/// its own: one try of a request with an identity token makes up to three
/// (`GET /v2/` for the challenge, `POST` to the token service, then the
/// request), each within this limit; oci-client's token request (basic
/// credentials) gets it as its connect and read timeouts (each read, not
/// the whole answer). A timeout is retried.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `sha256:<hex>` of some bytes: the one helper, kept with the context's
/// digests.
pub use mab_context::sha256_digest;

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn image_references_follow_dockers_grammar() {
        let digest_ref = format!("127.0.0.1:5000/team/app@{DIGEST}");
        let tag_digest_ref = format!("127.0.0.1:5000/team/app:1.0@{DIGEST}");
        let accepted = [
            (
                "127.0.0.1:5000/team/app:1.0",
                "127.0.0.1:5000/team/app",
                "127.0.0.1:5000",
                "team/app",
                "1.0",
            ),
            (
                "127.0.0.1:5000/team/app",
                "127.0.0.1:5000/team/app",
                "127.0.0.1:5000",
                "team/app",
                "latest",
            ),
            (
                "localhost:5000/app:v1",
                "localhost:5000/app",
                "localhost:5000",
                "app",
                "v1",
            ),
            (
                "registry.example.com/a/b/c",
                "registry.example.com/a/b/c",
                "registry.example.com",
                "a/b/c",
                "latest",
            ),
            (
                "alpine:3.19",
                "alpine",
                "index.docker.io",
                "library/alpine",
                "3.19",
            ),
            (
                "team/app",
                "team/app",
                "index.docker.io",
                "team/app",
                "latest",
            ),
            (
                "docker.io/team/app",
                "docker.io/team/app",
                "index.docker.io",
                "team/app",
                "latest",
            ),
            (
                "a.b/x_y__z.w-v--u:T_a.g-1",
                "a.b/x_y__z.w-v--u",
                "a.b",
                "x_y__z.w-v--u",
                "T_a.g-1",
            ),
            (
                digest_ref.as_str(),
                "127.0.0.1:5000/team/app",
                "127.0.0.1:5000",
                "team/app",
                DIGEST,
            ),
            (
                tag_digest_ref.as_str(),
                "127.0.0.1:5000/team/app",
                "127.0.0.1:5000",
                "team/app",
                DIGEST,
            ),
        ];
        for (text, name, registry, repository, tag_or_digest) in accepted {
            assert_eq!(
                ImageReference::parse(text).expect(text),
                ImageReference {
                    name: name.to_owned(),
                    registry: registry.to_owned(),
                    repository: repository.to_owned(),
                    tag_or_digest: tag_or_digest.to_owned(),
                },
                "{text}"
            );
        }
        let refused = [
            "",
            "Team/App",
            "Team/app",
            "registry.example.com/Team/app",
            "team//app",
            "team/app/",
            "-team/app",
            "team/app:",
            "team/app:-bad",
            "team/app:has/slash",
            "team/app@sha256:short",
            "team/app@md5:0123",
            "team app",
        ];
        for text in refused {
            assert!(
                matches!(
                    ImageReference::parse(text),
                    Err(RegistryError::Reference { .. })
                ),
                "{text} was accepted"
            );
        }
    }

    #[test]
    fn loopback_registries_are_recognised() {
        let cases = [
            ("127.0.0.1:5000", true),
            ("127.1.2.3", true),
            ("localhost:5000", true),
            ("localhost", true),
            ("[::1]:5000", true),
            ("registry.example.com", false),
            ("10.0.0.1:5000", false),
            ("index.docker.io", false),
        ];
        for (registry, expected) in cases {
            assert_eq!(is_loopback(registry), expected, "{registry}");
        }
    }

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// A registry on loopback that answers each connection with the next
    /// of `answers` (the last one again when they run out), each a status
    /// line and headers, then `\r\n\r\n` and a body if any, `{address}`
    /// standing for its own `host:port`; returns that and the requests it
    /// got.
    async fn canned_registry(answers: &[&str]) -> (String, Arc<Mutex<Vec<String>>>) {
        let answers: Vec<String> = answers.iter().map(|answer| answer.to_string()).collect();
        let index = Mutex::new(0);
        answering(move |_| {
            let mut index = index.lock().unwrap();
            let answer = answers[(*index).min(answers.len() - 1)].clone();
            *index += 1;
            answer
        })
        .await
    }

    /// A registry on loopback that answers each connection with what
    /// `answer` gives for its request (the whole text), as
    /// [`canned_registry`] does.
    async fn answering(
        answer: impl Fn(&str) -> String + Send + 'static,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let own = address.clone();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                // The head, then as many bytes as its Content-Length says.
                let mut request = Vec::new();
                let mut buffer = [0; 4096];
                loop {
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|value| value.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                    match connection.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let answer = answer(&text).replace("{address}", &address);
                seen.lock().unwrap().push(text);
                let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
                let length = body.len();
                let _ = connection
                    .write_all(
                        format!(
                            "{head}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}"
                        )
                        .as_bytes(),
                    )
                    .await;
            }
        });
        (own, requests)
    }

    /// `tag_digest` asks with `HEAD` and takes `Docker-Content-Digest`;
    /// without that header, or when `HEAD` is refused, it reads the
    /// manifest with `GET` and hashes it; a 404 is `None` either way.
    #[tokio::test]
    async fn tag_digests_come_from_head_and_else_from_the_manifest() {
        const BODY: &str = r#"{"schemaVersion":2}"#;
        let hashed = sha256_digest(BODY.as_bytes());
        let header = format!("sha256:{}", "ab".repeat(32));
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nDocker-Content-Digest: {digest}",
                Some(&header),
                false,
            ),
            ("HTTP/1.1 200 OK", Some(&hashed), true),
            ("HTTP/1.1 405 Method Not Allowed", Some(&hashed), true),
            ("HTTP/1.1 404 Not Found", None, false),
        ];
        for (head, expected, gets) in cases {
            let answer = head.replace("{digest}", &header);
            let (registry, requests) = answering(move |request| {
                if request.starts_with("HEAD /v2/team/app/manifests/") {
                    answer.clone()
                } else if request.starts_with("GET /v2/team/app/manifests/") {
                    format!("HTTP/1.1 200 OK\r\n\r\n{BODY}")
                } else {
                    "HTTP/1.1 200 OK".to_owned()
                }
            })
            .await;
            let repository = Repository::new(&format!("{registry}/team/app"), None).unwrap();
            let found = repository.tag_digest("1.0").await.unwrap();
            assert_eq!(found.as_ref(), expected, "{head}");
            let manifest_gets = requests
                .lock()
                .unwrap()
                .iter()
                .filter(|request| request.starts_with("GET /v2/team/app/manifests/1.0"))
                .count();
            assert_eq!(manifest_gets, usize::from(gets), "{head}");
        }
    }

    /// A manifest read by its digest whose bytes hash to another is a
    /// `DigestMismatch` naming what was served; a 404 is `NotFound`.
    #[tokio::test]
    async fn manifests_read_by_digest_are_checked_and_a_404_is_not_found() {
        let asked = format!("sha256:{}", "cd".repeat(32));
        let (registry, _) = canned_registry(&["HTTP/1.1 200 OK\r\n\r\n{}"]).await;
        let repository = Repository::new(&format!("{registry}/team/app"), None).unwrap();
        match repository.manifest(&asked).await {
            Err(RegistryError::DigestMismatch { served, .. }) => {
                assert_eq!(served, sha256_digest(b"{}"))
            }
            other => panic!("{other:?}"),
        }
        let (registry, _) = canned_registry(&["HTTP/1.1 404 Not Found"]).await;
        let repository = Repository::new(&format!("{registry}/team/app"), None).unwrap();
        let error = repository.manifest(&asked).await.unwrap_err();
        assert!(matches!(error, RegistryError::NotFound { .. }), "{error:?}");
        assert!(error.to_string().contains("404"), "{error}");
    }

    fn with_identity_token(registry: &str) -> Repository {
        let credentials = Credentials {
            server: registry.to_owned(),
            username: None,
            password: None,
            identity_token: Some("refresh".to_owned()),
            origin: "config.json".to_owned(),
        };
        Repository::new(&format!("{registry}/team/app"), Some(&credentials)).unwrap()
    }

    /// A manifest's layers are its descriptors in order; a blob is the
    /// answer's body as a stream, fetched with the same auth flow (each
    /// request after its `GET /v2/`).
    #[tokio::test]
    async fn layers_and_blobs_are_read() {
        use tokio::io::AsyncReadExt;
        let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:a","size":10},{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:b","size":20}]}"#;
        let digest = sha256_digest(manifest.as_bytes());
        let (registry, requests) = canned_registry(&[
            "HTTP/1.1 200 OK",
            &format!("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n{manifest}"),
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK\r\n\r\nthe layer's bytes",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK\r\n\r\nthe layer's bytes",
        ])
        .await;
        let repository = Repository::new(&format!("{registry}/team/app"), None).unwrap();
        let layers = repository.layers(&digest).await.unwrap();
        assert_eq!(
            layers,
            [
                Layer {
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
                    digest: "sha256:a".to_owned(),
                    size: 10,
                },
                Layer {
                    media_type: "application/vnd.oci.image.layer.v1.tar+zstd".to_owned(),
                    digest: "sha256:b".to_owned(),
                    size: 20,
                },
            ]
        );
        let blob_digest = sha256_digest(b"the layer's bytes");
        let mut blob = repository.blob(&blob_digest).await.unwrap();
        let mut bytes = String::new();
        blob.read_to_string(&mut bytes).await.unwrap();
        assert_eq!(bytes, "the layer's bytes");
        // Other bytes than the digest says end in an error.
        let mut blob = repository.blob("sha256:a").await.unwrap();
        let error = blob.read_to_string(&mut String::new()).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("the registry sent content with digest {blob_digest} for blob sha256:a")
        );
        let requests = requests.lock().unwrap();
        assert!(
            requests[3].starts_with(&format!("GET /v2/team/app/blobs/{blob_digest} ")),
            "{requests:?}"
        );
    }

    #[test]
    fn a_manifests_layers_need_every_field_and_sha256() {
        let layer = r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:a","size":10}"#;
        let cases = [
            (format!(r#"{{"layers":[{layer}]}}"#), Ok(1)),
            (r#"{"layers":[]}"#.to_owned(), Ok(0)),
            (
                r#"{"manifests":[]}"#.to_owned(),
                Err("the manifest has no `layers`: it is not an image manifest"),
            ),
            (
                r#"{"layers":[{"mediaType":"x","digest":"sha256:a"}]}"#.to_owned(),
                Err("layer 1 has no `size`"),
            ),
            (
                r#"{"layers":[{"mediaType":"x","size":1}]}"#.to_owned(),
                Err("layer 1 has no `digest`"),
            ),
            (
                r#"{"layers":[{"mediaType":"x","digest":"sha512:ab","size":1}]}"#.to_owned(),
                Err("layer sha512:ab uses the digest algorithm `sha512`; mab verifies sha256 digests only"),
            ),
        ];
        for (manifest, expected) in cases {
            let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
            let layers = manifest_layers(&manifest);
            match expected {
                Ok(count) => assert_eq!(layers.unwrap().len(), count, "{manifest}"),
                Err(message) => assert_eq!(layers.unwrap_err(), message, "{manifest}"),
            }
        }
    }

    /// The identity-token flow by what `GET /v2/` answers: a success needs
    /// no token; 503 and 429 are faults that are retried; a 401 with only a
    /// Basic challenge cannot take the token, and the push check says the
    /// token is refused.
    #[tokio::test]
    async fn identity_tokens_follow_the_registrys_answer() {
        let (open, _) = canned_registry(&["HTTP/1.1 200 OK"]).await;
        let repository = with_identity_token(&open);
        assert_eq!(
            repository.refreshed_token(RegistryOperation::Pull).await,
            Ok(None)
        );
        for status in ["503 Service Unavailable", "429 Too Many Requests"] {
            let (busy, _) = canned_registry(&[&format!("HTTP/1.1 {status}")]).await;
            let fault = with_identity_token(&busy)
                .refreshed_token(RegistryOperation::Pull)
                .await
                .unwrap_err();
            assert_eq!(fault.status(), Some(status[..3].parse().unwrap()));
            assert!(
                matches!(retry::classify(&fault), retry::Verdict::Transient { .. }),
                "{fault:?}"
            );
        }
        let (basic, _) = canned_registry(&[
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"Registry\"",
        ])
        .await;
        let repository = with_identity_token(&basic);
        let fault = repository
            .refreshed_token(RegistryOperation::Push)
            .await
            .unwrap_err();
        assert!(matches!(fault, Fault::Unusable { .. }), "{fault:?}");
        assert!(
            matches!(
                repository.check_push().await,
                Err(RegistryError::PushDenied { ref whom, .. })
                    if whom == "the identity token from config.json"
            ),
            "a registry without a Bearer challenge refuses the token"
        );
    }

    /// Token lifetimes as docker/distribution's client keeps them: at least
    /// 60 seconds, 60 when not given or not a number.
    #[test]
    fn access_tokens_live_at_least_a_minute() {
        let lifetime = |json: &str| {
            serde_json::from_str::<TokenAnswer>(json)
                .unwrap()
                .lifetime()
                .as_secs()
        };
        assert_eq!(lifetime(r#"{"access_token":"a","expires_in":300}"#), 300);
        assert_eq!(lifetime(r#"{"access_token":"a","expires_in":300.0}"#), 300);
        assert_eq!(lifetime(r#"{"access_token":"a","expires_in":5}"#), 60);
        assert_eq!(lifetime(r#"{"access_token":"a"}"#), 60);
        assert_eq!(lifetime(r#"{"access_token":"a","expires_in":"300"}"#), 60);
        assert_eq!(lifetime(r#"{"access_token":"a","expires_in":null}"#), 60);
    }

    /// A refresh token in the token service's answer replaces the identity
    /// token for the next exchange; the access token is kept by scope.
    #[tokio::test]
    async fn rotated_refresh_tokens_are_used() {
        let challenge = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{address}/token\",service=\"lab\"";
        let granted = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"access_token\":\"a\",\"expires_in\":\"soon\",\"refresh_token\":\"rotated\"}";
        let (address, requests) = canned_registry(&[challenge, granted, challenge, granted]).await;
        let repository = with_identity_token(&address);
        for operation in [
            RegistryOperation::Pull,
            RegistryOperation::Pull,
            RegistryOperation::Push,
        ] {
            assert_eq!(
                repository.refreshed_token(operation).await,
                Ok(Some("a".to_owned()))
            );
        }
        let requests = requests.lock().unwrap();
        let posts: Vec<&String> = requests
            .iter()
            .filter(|request| request.starts_with("POST /token"))
            .collect();
        assert_eq!(posts.len(), 2, "the pull token was kept: {requests:#?}");
        assert!(
            posts[0].ends_with(
                "grant_type=refresh_token&refresh_token=refresh&service=lab&scope=repository%3Ateam%2Fapp%3Apull&client_id=mab"
            ),
            "{}",
            posts[0]
        );
        assert!(
            posts[1].contains("refresh_token=rotated&")
                && posts[1].contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush"),
            "{}",
            posts[1]
        );
    }

    #[test]
    fn bearer_challenges_are_read() {
        let find = |values: &[&str]| {
            let mut headers = reqwest::header::HeaderMap::new();
            for value in values {
                headers.append(reqwest::header::WWW_AUTHENTICATE, value.parse().unwrap());
            }
            BearerChallenge::find(&headers)
        };
        assert_eq!(
            find(&[
                r#"Bearer realm="http://127.0.0.1:5003/token",service="mab \"lab\"",scope="repository:a:pull""#
            ]),
            Some(BearerChallenge {
                realm: "http://127.0.0.1:5003/token".into(),
                service: "mab \"lab\"".into(),
            })
        );
        let auth_example = Some(BearerChallenge {
            realm: "https://auth.example/token".into(),
            service: String::new(),
        });
        assert_eq!(
            find(&[r#"bearer realm="https://auth.example/token""#]),
            auth_example
        );
        // Separate Basic and Bearer headers, and both in one.
        assert_eq!(
            find(&[
                r#"Basic realm="Registry""#,
                r#"Bearer realm="https://auth.example/token""#
            ]),
            auth_example
        );
        assert_eq!(
            find(&[r#"Basic realm="Registry", Bearer realm="https://auth.example/token""#]),
            auth_example
        );
        assert_eq!(find(&[r#"Basic realm="Registry""#]), None);
        assert_eq!(find(&[r#"Bearer service="x""#]), None);
        assert_eq!(find(&[]), None);
    }
}
