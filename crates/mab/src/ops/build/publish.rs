//! The registry side of a build: push rights checked before building, the
//! published list read back, and the staging tags removed after publishing
//! (or after a failure), each only while it still points at this build's
//! image.
//!
//! The orchestration and the worker reach the registry only through
//! [`Registry`], which [`Repository`] implements; the unit tests of
//! `ops/build` drive it with a fake.

use std::future::Future;
use std::time::Duration;

use mab_config::Platform;
use mab_registry::{list_entries, Blob, Child, Layer, RegistryError, Repository};

use crate::failure::Failure;
use crate::ops::jobs::{Built, JobFailure};
use crate::progress::{Event, Reporter, StagingTagsReason};

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

    /// The raw manifest at `tag_or_digest` and its digest
    /// ([`Repository::manifest`]: `DigestMismatch` when it is read by a
    /// digest its bytes do not hash to).
    fn manifest(
        &self,
        tag_or_digest: &str,
    ) -> impl Future<Output = Result<(Vec<u8>, String), RegistryError>> + Send;

    /// The digest `reference` (a tag, or a digest) points at now; `None`
    /// when the registry has no such tag or manifest (404)
    /// ([`Repository::tag_digest`]: a `HEAD`, else a `GET`).
    fn tag_digest(
        &self,
        reference: &str,
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

    async fn tag_digest(&self, reference: &str) -> Result<Option<String>, RegistryError> {
        Repository::tag_digest(self, reference).await
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
/// are not read, and one [`Event::StagingTagsLeft`] names them all
/// ([`StagingTagsReason::NotDeleted`]). A failed read or deletion is a
/// warning and the tag stays. Some registries delete the manifest itself
/// along with its tag: after a publish, [`read_children_back`] runs after
/// this and finds that.
pub(super) async fn remove_staging_tags(
    repository: &impl Registry,
    staged: &[Staged],
    reporter: &dyn Reporter,
) {
    let mut kept = Vec::new();
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
            Ok(true) => {}
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
            reason: StagingTagsReason::NotDeleted,
        });
    }
}

/// How long to wait before each new read of a tag that does not point at
/// the list just published (or is missing): a registry behind a cache or
/// replicated storage may serve a stale tag for a moment after a push.
/// About 3.5 seconds in all before a tag counts as moved.
const STALE_READ_DELAYS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// The list this build published: what every read-back failure names.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PublishedList {
    /// `registry/repository`.
    pub(super) image: String,
    /// The list's digest (`sha256:…`).
    pub(super) digest: String,
    /// Every tag it was pushed under, in order.
    pub(super) tags: Vec<String>,
}

/// Reading the published list back found it otherwise than published
/// (docs/publishing.md#the-published-list-read-back). The list is out by
/// then, under every tag: each message starts by saying so.
#[derive(Debug, thiserror::Error)]
#[error(
    "the list {} of {} was published under {} (the tags have moved); {problem}",
    list.digest, list.image, list.tags.join(", ")
)]
pub(super) struct ReadBackError {
    pub(super) list: PublishedList,
    pub(super) problem: ReadBackProblem,
}

/// What [`ReadBackError`] found.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadBackProblem {
    /// Tags that point elsewhere than at the published list, read again
    /// after [`STALE_READ_DELAYS`]: another writer pushed to them after
    /// this build did. Each with the digest it points at, `None` when the
    /// tag is gone; `kept` are the tags that still point at the list.
    #[error("{}", tags_moved(moved, kept))]
    TagMoved {
        moved: Vec<(String, Option<String>)>,
        kept: Vec<String>,
    },
    /// The list read by its digest is served as bytes of another digest.
    #[error(
        "the registry served different content for the list: what it served has digest {served}"
    )]
    ListDiffers {
        /// The sha256 of the bytes served (`sha256:…`).
        served: String,
    },
    /// A platform's image manifest, named by the list, is not served by
    /// its digest: the registry answered 404 for it.
    #[error(
        "the registry no longer serves {digest}, the {platform} image of the list (it answers 404 Not Found)"
    )]
    ChildMissing { platform: Platform, digest: String },
    /// A read that failed otherwise (after its retries), or a list that is
    /// not one.
    #[error("reading it back failed: {message}")]
    Unreadable { message: String },
}

/// The message of [`ReadBackProblem::TagMoved`]: each moved tag and where
/// it points, and which tags still point at the list.
fn tags_moved(moved: &[(String, Option<String>)], kept: &[String]) -> String {
    let found: Vec<String> = moved
        .iter()
        .map(|(tag, found)| match found {
            Some(found) => format!("tag {tag} points at {found} when read back"),
            None => format!("tag {tag} points at nothing when read back (the tag is gone)"),
        })
        .collect();
    let them = if moved.len() == 1 { "it" } else { "them" };
    let kept = match kept {
        [] => "none of the tags still points at the list".to_owned(),
        [one] => format!("{one} still points at the list"),
        kept => format!("{} still point at the list", kept.join(", ")),
    };
    format!(
        "{}: another writer moved {them} after the publish; {kept}",
        found.join(", and ")
    )
}

impl ReadBackError {
    /// What the user can do about it, naming the image and a tag to
    /// inspect.
    pub(super) fn hint(&self) -> String {
        let PublishedList {
            image,
            digest,
            tags,
        } = &self.list;
        let resume = "`mab build --resume` publishes the same images again without building";
        match &self.problem {
            ReadBackProblem::TagMoved { moved, .. } => {
                let names: Vec<&str> = moved.iter().map(|(tag, _)| tag.as_str()).collect();
                // A tag that still points somewhere shows what the other
                // writer published; with every moved tag gone, the list
                // this build published is what there is to see.
                let inspect = match moved.iter().find(|(_, found)| found.is_some()) {
                    Some((tag, _)) => format!("see what {tag} holds now with `mab inspect {image}:{tag}`"),
                    None => format!("see what this build published with `mab inspect {image}@{digest}`"),
                };
                format!(
                    "another build (or a push by hand) wrote to {} after this one: {inspect}; \
                     let one build at a time publish these tags, then run `mab build --resume` to point them all at one list \
                     (it publishes the same images again without building)",
                    names.join(", ")
                )
            }
            ReadBackProblem::ListDiffers { .. } => format!(
                "the registry (or a cache or proxy in front of it) does not serve what it accepted: \
                 see what it serves with `mab inspect {image}:{}`, check its storage, then {resume}",
                tags[0]
            ),
            ReadBackProblem::ChildMissing { .. } => {
                "the registry does not serve what it accepted: check its storage and garbage collection \
                 (a collection running during the publish deletes manifests that no tag names yet, \
                 and some registries delete a manifest along with its tag), \
                 then run `mab build --resume`, which rebuilds the images no longer served"
                    .to_owned()
            }
            ReadBackProblem::Unreadable { .. } => format!(
                "check that the registry is reachable, then see what the tags hold with `mab inspect {image}:{}`; {resume}",
                tags[0]
            ),
        }
    }
}

/// Reads the list published as `list.digest` back from the registry,
/// after [`Registry::publish`] pushed it under `list.tags` (PRODUCT.md,
/// "What gets published"; the step users write with `docker buildx
/// imagetools inspect`): each tag must point at the list (read with
/// [`Registry::tag_digest`], in order; a tag that does not is read again
/// after each of [`STALE_READ_DELAYS`]); the list read by its digest must
/// be served as pushed. Returns the platform of each of its entries as
/// the list writes it (`os/architecture[/variant]`), in its order.
///
/// Errors ([`ReadBackError`]): [`ReadBackProblem::TagMoved`] naming every
/// tag that points elsewhere; [`ReadBackProblem::ListDiffers`] when the
/// list's bytes do not hash to its digest; [`ReadBackProblem::Unreadable`]
/// when a read fails after its retries or the list is not a list.
pub(super) async fn read_list_back(
    repository: &impl Registry,
    list: &PublishedList,
) -> Result<Vec<String>, ReadBackError> {
    let failed = |problem: ReadBackProblem| ReadBackError {
        list: list.clone(),
        problem,
    };
    let unreadable = |error: RegistryError| {
        failed(ReadBackProblem::Unreadable {
            message: error.to_string(),
        })
    };
    let mut moved = Vec::new();
    for tag in &list.tags {
        let found = repository.tag_digest(tag).await.map_err(unreadable)?;
        if found.as_deref() != Some(list.digest.as_str()) {
            moved.push((tag.clone(), found));
        }
    }
    for delay in STALE_READ_DELAYS {
        if moved.is_empty() {
            break;
        }
        tokio::time::sleep(delay).await;
        let mut still = Vec::new();
        for (tag, _) in moved {
            let found = repository.tag_digest(&tag).await.map_err(unreadable)?;
            if found.as_deref() != Some(list.digest.as_str()) {
                still.push((tag, found));
            }
        }
        moved = still;
    }
    if !moved.is_empty() {
        let kept = list
            .tags
            .iter()
            .filter(|tag| !moved.iter().any(|(moved, _)| moved == *tag))
            .cloned()
            .collect();
        return Err(failed(ReadBackProblem::TagMoved { moved, kept }));
    }
    let bytes = match repository.manifest(&list.digest).await {
        Ok((bytes, _)) => bytes,
        Err(RegistryError::DigestMismatch { served, .. }) => {
            return Err(failed(ReadBackProblem::ListDiffers { served }))
        }
        Err(error) => return Err(unreadable(error)),
    };
    let entries = list_entries(&bytes).map_err(|error| {
        failed(ReadBackProblem::Unreadable {
            message: format!("it is not a list: {error}"),
        })
    })?;
    Ok(entries
        .iter()
        .map(|entry| match &entry.platform {
            Some(platform) => match &platform.variant {
                Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
                None => format!("{}/{}", platform.os, platform.architecture),
            },
            None => "unknown".to_owned(),
        })
        .collect())
}

/// After the staging tags are removed ([`remove_staging_tags`]): each of
/// the `children` of the published list must still be served by its
/// digest ([`Registry::tag_digest`], a `HEAD`). A registry that deletes a
/// manifest along with its tag fails here.
///
/// Errors ([`ReadBackError`]): [`ReadBackProblem::ChildMissing`] for the
/// first child the registry answers 404 for; [`ReadBackProblem::Unreadable`]
/// when a read fails after its retries, or a child is served as another
/// digest.
pub(super) async fn read_children_back(
    repository: &impl Registry,
    list: &PublishedList,
    children: &[Child],
) -> Result<(), ReadBackError> {
    for child in children {
        let problem = match repository.tag_digest(&child.digest).await {
            Ok(Some(served)) if served == child.digest => continue,
            Ok(Some(served)) => ReadBackProblem::Unreadable {
                message: format!(
                    "{} (the {} image) is served as {served}",
                    child.digest,
                    child.platform.platform()
                ),
            },
            Ok(None) => ReadBackProblem::ChildMissing {
                platform: child.platform.platform(),
                digest: child.digest.clone(),
            },
            Err(error) => ReadBackProblem::Unreadable {
                message: format!("the {} image: {error}", child.platform.platform()),
            },
        };
        return Err(ReadBackError {
            list: list.clone(),
            problem,
        });
    }
    Ok(())
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

    fn published(tags: &[&str]) -> PublishedList {
        PublishedList {
            image: "127.0.0.1:5000/app".to_owned(),
            digest: "sha256:list".to_owned(),
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        }
    }

    #[test]
    fn a_moved_tag_is_named_with_where_it_points_and_the_tags_still_on_the_list() {
        let error = ReadBackError {
            list: published(&["1.0", "abcd1234", "latest"]),
            problem: ReadBackProblem::TagMoved {
                moved: vec![
                    ("1.0".to_owned(), Some("sha256:other".to_owned())),
                    ("latest".to_owned(), None),
                ],
                kept: vec!["abcd1234".to_owned()],
            },
        };
        assert_eq!(
            error.to_string(),
            "the list sha256:list of 127.0.0.1:5000/app was published under 1.0, abcd1234, latest (the tags have moved); \
             tag 1.0 points at sha256:other when read back, \
             and tag latest points at nothing when read back (the tag is gone): \
             another writer moved them after the publish; abcd1234 still points at the list"
        );
        assert!(
            error.hint().starts_with(
                "another build (or a push by hand) wrote to 1.0, latest after this one: \
                 see what 1.0 holds now with `mab inspect 127.0.0.1:5000/app:1.0`"
            ),
            "{}",
            error.hint()
        );
        assert!(error.hint().contains("`mab build --resume`"));
        let gone = ReadBackError {
            list: published(&["1.0", "latest"]),
            problem: ReadBackProblem::TagMoved {
                moved: vec![("1.0".to_owned(), None)],
                kept: vec!["latest".to_owned()],
            },
        };
        assert!(
            gone.hint().contains(
                "see what this build published with `mab inspect 127.0.0.1:5000/app@sha256:list`"
            ),
            "{}",
            gone.hint()
        );
        let all = ReadBackError {
            list: published(&["1.0", "latest"]),
            problem: ReadBackProblem::TagMoved {
                moved: vec![
                    ("1.0".to_owned(), Some("sha256:other".to_owned())),
                    ("latest".to_owned(), Some("sha256:other".to_owned())),
                ],
                kept: Vec::new(),
            },
        };
        assert!(
            all.to_string().ends_with(
                "another writer moved them after the publish; none of the tags still points at the list"
            ),
            "{all}"
        );
    }

    #[test]
    fn every_read_back_failure_says_the_list_is_published_and_its_hint_names_a_tag() {
        let problems = [
            ReadBackProblem::ListDiffers {
                served: "sha256:other".to_owned(),
            },
            ReadBackProblem::ChildMissing {
                platform: "linux/arm64".parse().unwrap(),
                digest: "sha256:arm".to_owned(),
            },
            ReadBackProblem::Unreadable {
                message: "reading sha256:list failed".to_owned(),
            },
        ];
        for problem in problems {
            let error = ReadBackError {
                list: published(&["1.0", "latest"]),
                problem,
            };
            assert!(
                error.to_string().starts_with(
                    "the list sha256:list of 127.0.0.1:5000/app was published under 1.0, latest (the tags have moved); "
                ),
                "{error}"
            );
            assert!(
                error.hint().contains("`mab build --resume`"),
                "{}",
                error.hint()
            );
            if !matches!(error.problem, ReadBackProblem::ChildMissing { .. }) {
                assert!(
                    error
                        .hint()
                        .contains("`mab inspect 127.0.0.1:5000/app:1.0`"),
                    "{}",
                    error.hint()
                );
            }
        }
    }
}
