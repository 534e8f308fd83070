//! The registry side of a build: push rights checked before building, and
//! the staging tags removed after publishing (or after a failure).

use mab_registry::{Child, Repository};

use crate::failure::Failure;
use crate::progress::{Event, Reporter};

/// Before any runner is contacted: the registry answers and the
/// credentials allow a push to the repository, so that a long build does
/// not fail at its push (docs/publishing.md). An unreachable registry is a
/// runtime failure (exit 1); credentials that may not push are a
/// configuration error (exit 2), found before anything is built.
pub(super) async fn check_push(repository: &Repository, registry: &str) -> Result<(), Failure> {
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
    repository: &Repository,
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
        reporter.report(Event::Note {
            message: format!(
                "{} does not delete tags; staging tag(s) {} remain (see docs/publishing.md)",
                repository.name(),
                kept.join(", ")
            ),
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
