//! The registry side of a build: push rights checked before building, the
//! published list read back, and the staging tags removed after publishing
//! (or after a failure), each only while it still points at this build's
//! image.
//!
//! The orchestration and the worker reach the registry only through
//! [`Registry`], which [`Repository`] implements; the unit tests of
//! `ops/build` drive it with a fake.

use std::future::Future;

use mab_config::Platform;
use mab_registry::{list_entries, Blob, Child, Layer, RegistryError, Repository};

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

/// What reading the published list back found: the list as the registry
/// serves it is not the one this build published, or lacks a part of it
/// (docs/publishing.md#the-published-list-read-back).
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadBackError {
    /// Tags that point elsewhere than at the published list: another
    /// writer pushed to them after this build did (`found` is the digest
    /// they point at, `None` when the tag is gone).
    #[error("{}", tag_moved(image, published, tags, moved))]
    TagMoved {
        image: String,
        /// The list's digest (`sha256:…`).
        published: String,
        /// Every tag the list was pushed under, in order.
        tags: Vec<String>,
        /// Each tag that points elsewhere, and the digest it points at.
        moved: Vec<(String, Option<String>)>,
    },
    /// The list read by its digest has no entry for a published platform
    /// with the digest its image was pushed as.
    #[error(
        "the list {list} of {image}, read back by its digest, has no {platform} entry for {digest}"
    )]
    PlatformMissing {
        image: String,
        list: String,
        platform: Platform,
        /// The platform's image manifest digest that the list should name.
        digest: String,
    },
    /// A platform's image manifest, named by the list, is not served by
    /// its digest.
    #[error("{image} does not serve {digest}, the {platform} image of the list {list}: {error}")]
    ChildMissing {
        image: String,
        list: String,
        platform: Platform,
        digest: String,
        error: RegistryError,
    },
    /// The list itself could not be read back, or is not a list.
    #[error("reading back the list {list} of {image}: {message}")]
    Unreadable {
        image: String,
        list: String,
        message: String,
    },
}

/// The message of [`ReadBackError::TagMoved`]: each moved tag and where
/// it points, and which tags still point at the new list.
fn tag_moved(
    image: &str,
    published: &str,
    tags: &[String],
    moved: &[(String, Option<String>)],
) -> String {
    let found: Vec<String> = moved
        .iter()
        .map(|(tag, found)| match found {
            Some(found) => format!("tag {tag} of {image} points at {found}"),
            None => format!("tag {tag} of {image} points at nothing (the tag is gone)"),
        })
        .collect();
    let kept: Vec<&str> = tags
        .iter()
        .filter(|tag| !moved.iter().any(|(moved, _)| moved == *tag))
        .map(String::as_str)
        .collect();
    let kept = match kept.as_slice() {
        [] => "none of them still does".to_owned(),
        kept => format!("{} still point(s) at it", kept.join(", ")),
    };
    format!(
        "{}, not at the list {published} this build published: another writer moved it after the publish; \
         the tags had all been pushed to point at the new list ({}), so they have moved, and {kept}",
        found.join("; "),
        tags.join(", ")
    )
}

impl ReadBackError {
    /// What the user can do about it.
    pub(super) fn hint(&self) -> String {
        match self {
            ReadBackError::TagMoved { image, moved, .. } => format!(
                "another build (or a push by hand) wrote to {} after this one: see what it holds now with `mab inspect {image}:{}`, \
                 let one build at a time publish these tags, then run `mab build` again to point them all at one list",
                moved.iter().map(|(tag, _)| tag.as_str()).collect::<Vec<_>>().join(", "),
                moved[0].0
            ),
            ReadBackError::PlatformMissing { .. } | ReadBackError::ChildMissing { .. } => {
                "the registry does not serve what it accepted: check its storage and garbage collection \
                 (a collection running during the publish deletes manifests that no tag names yet), then run `mab build` again"
                    .to_owned()
            }
            ReadBackError::Unreadable { .. } => {
                "check that the registry is reachable, then see what the tags hold with `mab inspect`".to_owned()
            }
        }
    }
}

/// Reads the list published as `digest` back from the registry, after
/// [`Registry::publish`] pushed it under `tags` (PRODUCT.md, "What gets
/// published"; the step users write with `docker buildx imagetools
/// inspect`): each tag must point at `digest` (read in order, each once);
/// the list read by its digest must have an entry for each of the
/// `children`, with its platform (normalised, so `linux/arm64/v8` counts
/// as `linux/arm64`) and its digest; and each child's manifest must be
/// served by its digest. Returns the platforms read back, in list order.
///
/// Errors: [`ReadBackError::TagMoved`] naming every tag that points
/// elsewhere (all tags are read first); then the first platform missing
/// or child not served; [`ReadBackError::Unreadable`] when a read fails
/// or the list is not a list.
pub(super) async fn read_back(
    repository: &impl Registry,
    digest: &str,
    tags: &[String],
    children: &[Child],
) -> Result<Vec<Platform>, ReadBackError> {
    let image = repository.name();
    let unreadable = |message: String| ReadBackError::Unreadable {
        image: image.clone(),
        list: digest.to_owned(),
        message,
    };
    let mut moved = Vec::new();
    for tag in tags {
        let found = repository
            .tag_digest(tag)
            .await
            .map_err(|error| unreadable(error.to_string()))?;
        if found.as_deref() != Some(digest) {
            moved.push((tag.clone(), found));
        }
    }
    if !moved.is_empty() {
        return Err(ReadBackError::TagMoved {
            image,
            published: digest.to_owned(),
            tags: tags.to_vec(),
            moved,
        });
    }
    let (bytes, _) = repository
        .manifest(digest)
        .await
        .map_err(|error| unreadable(error.to_string()))?;
    let entries =
        list_entries(&bytes).map_err(|error| unreadable(format!("it is not a list: {error}")))?;
    for child in children {
        let platform = child.platform.platform();
        let listed = entries.iter().any(|entry| {
            entry.digest == child.digest
                && entry
                    .platform
                    .as_ref()
                    .is_some_and(|listed| listed.platform() == platform)
        });
        if !listed {
            return Err(ReadBackError::PlatformMissing {
                image,
                list: digest.to_owned(),
                platform,
                digest: child.digest.clone(),
            });
        }
    }
    for child in children {
        if let Err(error) = repository.manifest(&child.digest).await {
            return Err(ReadBackError::ChildMissing {
                image,
                list: digest.to_owned(),
                platform: child.platform.platform(),
                digest: child.digest.clone(),
                error,
            });
        }
    }
    Ok(children
        .iter()
        .map(|child| child.platform.platform())
        .collect())
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

    #[test]
    fn a_moved_tag_is_named_with_where_it_points_and_the_tags_still_on_the_list() {
        let tags: Vec<String> = ["1.0", "abcd1234", "latest"].map(str::to_owned).to_vec();
        let error = ReadBackError::TagMoved {
            image: "127.0.0.1:5000/app".to_owned(),
            published: "sha256:list".to_owned(),
            tags: tags.clone(),
            moved: vec![
                ("1.0".to_owned(), Some("sha256:other".to_owned())),
                ("latest".to_owned(), None),
            ],
        };
        assert_eq!(
            error.to_string(),
            "tag 1.0 of 127.0.0.1:5000/app points at sha256:other; \
             tag latest of 127.0.0.1:5000/app points at nothing (the tag is gone), \
             not at the list sha256:list this build published: another writer moved it after the publish; \
             the tags had all been pushed to point at the new list (1.0, abcd1234, latest), so they have moved, \
             and abcd1234 still point(s) at it"
        );
        assert!(error.hint().starts_with(
            "another build (or a push by hand) wrote to 1.0, latest after this one: \
                          see what it holds now with `mab inspect 127.0.0.1:5000/app:1.0`"
        ));
        let all = ReadBackError::TagMoved {
            image: "127.0.0.1:5000/app".to_owned(),
            published: "sha256:list".to_owned(),
            tags: vec!["1.0".to_owned()],
            moved: vec![("1.0".to_owned(), Some("sha256:other".to_owned()))],
        };
        assert!(
            all.to_string()
                .ends_with("so they have moved, and none of them still does"),
            "{all}"
        );
    }
}
