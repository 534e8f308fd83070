//! The registry side of a build: each platform's descriptor as the registry
//! holds it, the check of its config's platform, the manifest list, and the
//! release tags. Knows nothing of SSH or engines.

mod client;
mod list;
pub mod tags;

pub use client::{
    is_loopback, load_credentials, registry_of, sha256_digest, Credentials, Repository,
};
pub use list::{
    check_platform, config_platform, manifest_list, Child, ConfigPlatform, PlatformMismatch,
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("`{image}` is not a valid image reference: {message}")]
    Reference { image: String, message: String },
    #[error("{action} failed at {registry}: {message}")]
    Request {
        registry: String,
        action: String,
        message: String,
    },
    #[error("cannot get credentials for {registry}: {message}")]
    Credentials { registry: String, message: String },
}
