//! The registry side of a build: push rights checked before building, and
//! the staging tags removed after publishing (or after a failure), each
//! only while it still points at this build's image.
//!
//! The orchestration and the worker reach the registry only through
//! [`Registry`], which [`Repository`] implements; the unit tests of
//! `ops/build` drive it with a fake.

use std::future::Future;

use mab_config::Platform;
use mab_registry::{Blob, Child, Layer, RegistryError, Repository};

use crate::failure::Failure;
use crate::ops::jobs::{Built, JobFailure};
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

    /// The digest `tag` points at now; `None` when there is no such tag
    /// ([`Repository::tag_digest`]).
    fn tag_digest(
        &self,
        tag: &str,
    ) -> impl Future<Output = Result<Option<String>, RegistryError>> + Send;

    /// Deletes `tag`; `Ok(false)` when the registry does not delete tags
    /// (OCI distribution 1.1 makes it optional).
    fn delete_tag(&self, tag: &str) -> impl Future<Output = Result<bool, RegistryError>> + Send;

    /// The layers of the image manifest `digest`, in order
    /// ([`Repository::layers`]).
    fn layers(
        &self,
        digest: &str,
    ) -> impl Future<Output = Result<Vec<Layer>, RegistryError>> + Send;

    /// The blob `digest` as a stream of its bytes ([`Repository::blob`]).
    fn blob(&self, digest: &str) -> impl Future<Output = Result<Blob, RegistryError>> + Send;
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

    async fn tag_digest(&self, tag: &str) -> Result<Option<String>, RegistryError> {
        Repository::tag_digest(self, tag).await
    }

    async fn delete_tag(&self, tag: &str) -> Result<bool, RegistryError> {
        Repository::delete_tag(self, tag).await
    }

    async fn layers(&self, digest: &str) -> Result<Vec<Layer>, RegistryError> {
        Repository::layers(self, digest).await
    }

    async fn blob(&self, digest: &str) -> Result<Blob, RegistryError> {
        Repository::blob(self, digest).await
    }
}

/// The tag each platform's image is pushed under before the list exists:
/// `mab-staging-<platform slug>` (`mab-staging-linux-arm64`), one per
/// platform in the repository, overwritten by every build of it
/// (docs/publishing.md). Nothing reads it by name after the push: the
/// image is read back, verified and listed by the digest its push gave.
pub(super) fn staging_tag(platform: &Platform) -> String {
    format!("mab-staging-{}", platform_slug(platform))
}

/// `linux/arm/v7` -> `linux-arm-v7`
pub(super) fn platform_slug(platform: &Platform) -> String {
    platform.to_string().replace('/', "-")
}

/// An image this build pushed: its staging tag and the manifest digest
/// the engine reported for the push.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Staged {
    pub(super) tag: String,
    pub(super) digest: String,
}

/// The images the jobs pushed, in job order: every job that built and
/// pushed, and every job that failed after its push (reading back or
/// verifying). A job stopped during its push has no digest and is left
/// out: its staging tag, if the push got that far, stays until the next
/// build of the platform overwrites it.
pub(super) fn staged(results: &[Result<Built, JobFailure>]) -> Vec<Staged> {
    results
        .iter()
        .filter_map(|result| match result {
            Ok(built) => Some((&built.job.platform, built.child.as_ref()?.digest.clone())),
            Err(failure) => Some((&failure.job.platform, failure.digest.clone()?)),
        })
        .map(|(platform, digest)| Staged::of(platform, digest))
        .collect()
}

impl Staged {
    /// The image `digest` of `platform` under its [`staging_tag`].
    pub(super) fn of(platform: &Platform, digest: String) -> Staged {
        Staged {
            tag: staging_tag(platform),
            digest,
        }
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
    let hint_denied = |anonymous: bool| {
        format!(
            "{} with `docker login {registry}` as a user that may push to {}; mab reads the credentials from DOCKER_AUTH_CONFIG, then the Docker configuration (~/.docker/config.json or $DOCKER_CONFIG)",
            if anonymous { "log in" } else { "check the password or token where it comes from (named above; `docker login` rewrites only the Docker configuration, which DOCKER_AUTH_CONFIG goes before): log in again" },
            repository.name()
        )
    };
    repository.check_push().await.map_err(|error| match error {
        mab_registry::RegistryError::PushDenied { anonymous, .. } => {
            Failure::usage(error.to_string(), Some(&hint_denied(anonymous)))
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

/// Deletes the `staged` tags where the registry allows it, each only while
/// it still points at the digest this build pushed: another build of the
/// image may have overwritten it since (or removed it), and then it is
/// left alone without a word. The first tag the registry refuses to delete
/// (Docker's registry answers 405) shows that it deletes no tags: the rest
/// are not read, and one [`Event::StagingTagsLeft`] names them all. A
/// failed read or deletion is a warning and the tag stays.
/// Some registries delete the manifest itself when asked to delete a tag:
/// the published `children` are checked afterwards, loudly.
pub(super) async fn remove_staging_tags(
    repository: &impl Registry,
    staged: &[Staged],
    children: &[Child],
    reporter: &dyn Reporter,
) {
    let mut kept = Vec::new();
    let mut deleted = false;
    let mut deletes_tags = true;
    for Staged { tag, digest } in staged {
        if !deletes_tags {
            kept.push(tag.clone());
            continue;
        }
        let outcome = match repository.tag_digest(tag).await {
            Ok(Some(current)) if current == *digest => repository.delete_tag(tag).await,
            // Overwritten or removed by another build: not ours to delete.
            Ok(_) => continue,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(true) => deleted = true,
            Ok(false) => {
                deletes_tags = false;
                kept.push(tag.clone());
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_tags_are_one_per_platform() {
        let cases = [
            ("linux/arm64", "mab-staging-linux-arm64"),
            ("linux/amd64", "mab-staging-linux-amd64"),
            ("linux/arm/v7", "mab-staging-linux-arm-v7"),
        ];
        for (platform, expected) in cases {
            assert_eq!(
                staging_tag(&platform.parse().unwrap()),
                expected,
                "{platform}"
            );
        }
    }
}
