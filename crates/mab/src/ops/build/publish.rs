//! The registry side of a build: push rights checked before building, and
//! the staging tags removed after publishing (or after a failure).
//!
//! The orchestration and the worker reach the registry only through
//! [`Registry`], which [`Repository`] implements; the unit tests of
//! `ops/build` drive it with a fake.

use std::future::Future;

use mab_registry::{Child, RegistryError, Repository};

use crate::failure::Failure;
use crate::progress::{Event, Reporter};

/// The calls a build makes to the repository it publishes to; the methods
/// are [`Repository`]'s own, with its shapes and errors (each error names
/// the registry and the repository).
pub trait Registry: Sync {
    /// `registry/repository`, for messages.
    fn name(&self) -> String;

    /// Whether the registry answers and the credentials may push, before
    /// anything is built ([`Repository::check_push`]: `Unreachable`,
    /// `PushDenied`, or `Request` for any other answer).
    fn check_push(&self) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// The pushed manifest `digest` (`sha256:…`) as the registry serves it:
    /// media type, size and the platform its config names.
    fn describe(&self, digest: &str) -> impl Future<Output = Result<Child, RegistryError>> + Send;

    /// Pushes the list (`media_type`, `bytes`) by its digest, then under
    /// every tag in order; returns the list's digest. An error says which
    /// tags already moved.
    fn publish(
        &self,
        media_type: &str,
        bytes: &[u8],
        tags: &[String],
    ) -> impl Future<Output = Result<String, RegistryError>> + Send;

    /// The raw manifest at `tag_or_digest` and its digest.
    fn manifest(
        &self,
        tag_or_digest: &str,
    ) -> impl Future<Output = Result<(Vec<u8>, String), RegistryError>> + Send;

    /// Deletes `tag`; `Ok(false)` when the registry does not delete tags
    /// (OCI distribution 1.1 makes it optional).
    fn delete_tag(&self, tag: &str) -> impl Future<Output = Result<bool, RegistryError>> + Send;
}

impl Registry for Repository {
    fn name(&self) -> String {
        Repository::name(self)
    }

    async fn check_push(&self) -> Result<(), RegistryError> {
        Repository::check_push(self).await
    }

    async fn describe(&self, digest: &str) -> Result<Child, RegistryError> {
        Repository::describe(self, digest).await
    }

    async fn publish(
        &self,
        media_type: &str,
        bytes: &[u8],
        tags: &[String],
    ) -> Result<String, RegistryError> {
        Repository::publish(self, media_type, bytes, tags).await
    }

    async fn manifest(&self, tag_or_digest: &str) -> Result<(Vec<u8>, String), RegistryError> {
        Repository::manifest(self, tag_or_digest).await
    }

    async fn delete_tag(&self, tag: &str) -> Result<bool, RegistryError> {
        Repository::delete_tag(self, tag).await
    }
}

/// Before any runner is contacted: the registry answers and the
/// credentials allow a push to the repository, so that a long build does
/// not fail at its push (docs/publishing.md). An unreachable registry is a
/// runtime failure (exit 1); credentials that may not push are a
/// configuration error (exit 2), found before anything is built.
pub(super) async fn check_push(repository: &impl Registry, registry: &str) -> Result<(), Failure> {
    let hint_unreachable = format!(
        "check that {registry} is up and that this machine reaches it (the runners push there too); nothing was built"
    );
    let hint_denied = format!(
        "log in with `docker login {registry}` as a user that may push to {}; mab reads the credentials from ~/.docker/config.json",
        repository.name()
    );
    repository.check_push().await.map_err(|error| match error {
        mab_registry::RegistryError::PushDenied { .. } => {
            Failure::usage(error.to_string(), Some(&hint_denied))
        }
        mab_registry::RegistryError::Unreachable { .. } => {
            Failure::runtime(error.to_string(), Some(&hint_unreachable))
        }
        error => Failure::runtime(
            error.to_string(),
            Some(&format!(
                "check that {registry} accepts pushes; nothing was built"
            )),
        ),
    })
}

/// Deletes staging tags where the registry allows it; says where they remain.
/// Some registries delete the manifest itself when asked to delete a tag:
/// the published `children` are checked afterwards, loudly.
pub(super) async fn remove_staging_tags(
    repository: &impl Registry,
    tags: &[String],
    children: &[Child],
    reporter: &dyn Reporter,
) {
    let mut kept = Vec::new();
    let mut deleted = false;
    for tag in tags {
        match repository.delete_tag(tag).await {
            Ok(true) => deleted = true,
            Ok(false) => kept.push(tag.clone()),
            Err(error) => {
                reporter.report(Event::Warning {
                    message: error.to_string(),
                });
                kept.push(tag.clone());
            }
        }
    }
    if !kept.is_empty() {
        reporter.report(Event::StagingTagsLeft {
            image: repository.name().to_owned(),
            tags: kept,
        });
    }
    if !deleted {
        return;
    }
    for child in children {
        if let Err(error) = repository.manifest(&child.digest).await {
            reporter.report(Event::Warning {
                message: format!(
                    "after deleting the staging tags, {} no longer serves {} ({}): {error}; \
                     the registry deleted the manifest along with the tag, so the published list is broken",
                    repository.name(),
                    child.digest,
                    child.platform
                ),
            });
        }
    }
}
