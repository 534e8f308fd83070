//! The registry side of a build: each platform's descriptor as the registry
//! holds it, the check of its config's platform, the manifest list, and the
//! release tags. Knows nothing of SSH or engines.

mod client;
mod credentials;
mod list;
pub mod retry;
pub mod tags;

pub use client::{
    is_loopback, registry_of, sha256_digest, Blob, ImageReference, Layer, Repository,
};
pub use credentials::{CredentialSources, Credentials, DOCKER_HUB_SERVER, HELPER_TIMEOUT};
pub use list::{
    carries_annotations, check_platform, config_platform, list_entries, list_media_type,
    manifest_list, Child, ConfigPlatform, ListEntry, PlatformMismatch, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};

/// A failure talking to a registry or reading what it needs for that; each
/// names the image or registry involved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An image name that is not a reference Docker accepts
    /// (`[registry/]repository`).
    #[error("`{image}` is not a valid image reference: {message}")]
    Reference {
        /// The image name as given.
        image: String,
        /// Why the reference parser refused it.
        message: String,
    },
    /// A registry request failed or returned something unusable.
    #[error("{action} failed at {registry}: {message}")]
    Request {
        /// The registry host (`127.0.0.1:5000`).
        registry: String,
        /// What was being done, naming the repository (`reading manifest
        /// sha256:… in team/app`).
        action: String,
        /// The registry's or client's error.
        message: String,
    },
    /// The registry answered `404 Not Found` (after any retries): it has
    /// no such manifest, blob or tag (OCI distribution spec). The message
    /// reads as [`RegistryError::Request`]'s.
    #[error("{action} failed at {registry}: {message}")]
    NotFound {
        /// The registry host (`127.0.0.1:5000`).
        registry: String,
        /// What was being done, naming the repository.
        action: String,
        /// The registry's answer.
        message: String,
    },
    /// Content read by its digest whose bytes do not hash to that digest:
    /// the registry served something else than what was asked for.
    #[error("{action} failed at {registry}: the registry returned content with digest {served}")]
    DigestMismatch {
        /// The registry host (`127.0.0.1:5000`).
        registry: String,
        /// What was being done, naming the digest asked for and the
        /// repository (`reading sha256:… in team/app`).
        action: String,
        /// The sha256 of what was served (`sha256:…`).
        served: String,
    },
    /// The registry did not answer (connection refused, no such host, a
    /// timeout): nothing reached it.
    #[error("cannot reach the registry {registry}: {message}")]
    Unreachable {
        /// The registry host (`127.0.0.1:5000`).
        registry: String,
        /// The connection error, with its causes.
        message: String,
    },
    /// The registry answered, but refused to start a push to the
    /// repository with the credentials mab has (HTTP 401 or 403, or a
    /// token service that refused them). With credentials, a 401 is most
    /// often a wrong password or an expired token, and a 403 a user that
    /// may not push: the message says both, as registries differ.
    #[error(
        "{registry} does not allow {whom} to push to {repository}{}: {message}",
        if *.anonymous { "" } else { " (a bad password, an expired token, or a user that may not push there)" }
    )]
    PushDenied {
        /// No credentials were sent.
        anonymous: bool,
        /// The registry host (`127.0.0.1:5001`).
        registry: String,
        /// `registry/repository`.
        repository: String,
        /// `` `mab` (from ORIGIN) ``, `the identity token from ORIGIN` or
        /// `anonymous users`, ORIGIN as [`Credentials::origin`].
        whom: String,
        /// The registry's answer.
        message: String,
    },
    /// The Docker configuration or its credential helper could not give
    /// credentials.
    #[error("cannot get credentials for {registry}: {message}")]
    Credentials {
        /// The registry the credentials were looked up for, as
        /// [`Credentials::server`] holds it (`127.0.0.1:5001`, or
        /// [`DOCKER_HUB_SERVER`] for Docker Hub).
        registry: String,
        /// The cause, naming the configuration (file, variable or helper).
        message: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// A credential helper that failed (exited non-zero, not saying it
    /// has no credentials) or gave no answer within
    /// [`credentials::HELPER_TIMEOUT`]: not a mistake in the configuration,
    /// as the cause may pass (a locked keychain, a slow secret service).
    #[error("cannot get credentials for {registry}: {message}")]
    CredentialHelper {
        /// The registry, as [`Credentials::server`] holds it.
        registry: String,
        /// What the helper did, naming it and where it is configured.
        message: String,
        /// What to do about it, naming the helper.
        hint: String,
    },
    /// `DOCKER_AUTH_CONFIG` or a Docker `config.json` that cannot be read as
    /// a Docker configuration.
    #[error("{origin} {message}")]
    CredentialsConfig {
        /// `DOCKER_AUTH_CONFIG` or the file's path.
        origin: String,
        /// Why, with line and column; never the text itself.
        message: String,
        /// What to do about it: fix the JSON, or make the file readable.
        hint: &'static str,
    },
}

impl RegistryError {
    /// Whether this is a 404 whose answer has the error code
    /// `NAME_UNKNOWN` (distribution-spec, "Error Codes": the registry knows
    /// no repository of that name), as the registry's message keeps it
    /// (`NAME_UNKNOWN: repository name not known to registry`).
    pub fn is_name_unknown(&self) -> bool {
        matches!(self, RegistryError::NotFound { message, .. } if message.contains("NAME_UNKNOWN: "))
    }

    /// What the user can do about a credentials error
    /// ([`RegistryError::Credentials`], [`RegistryError::CredentialHelper`],
    /// [`RegistryError::CredentialsConfig`]); `None` for the others.
    pub fn credentials_hint(&self) -> Option<&str> {
        match self {
            RegistryError::Credentials { hint, .. }
            | RegistryError::CredentialsConfig { hint, .. } => Some(hint),
            RegistryError::CredentialHelper { hint, .. } => Some(hint),
            _ => None,
        }
    }
}
