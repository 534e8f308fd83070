//! `[cache] from = "registry"` and `--cache-from REF`: the cache source of
//! each platform's build, taken from the previously published list
//! (docs/configuration.md#cache).

use std::collections::BTreeMap;
use std::time::Duration;

use mab_config::{CacheFrom, Platform, Project};

use crate::cli::BuildArgs;
use crate::environment::Environment;
use crate::failure::Failure;
use crate::progress::{Event, Reporter};

/// The build argument that makes Docker's BuildKit write inline cache
/// metadata into the image's config (moby's builder-next turns it into an
/// `inline` cache export, the only one Docker 20.10's `/build` offers).
pub(super) const INLINE_CACHE_ARG: &str = "BUILDKIT_INLINE_CACHE";

/// How long reading the cache source may take, retries included; after
/// it the build goes on without it, with a warning.
const LOOKUP_LIMIT: Duration = Duration::from_secs(30);

/// `--cache-from REF` over `[cache]` (as `from = "registry"` with
/// `ref = REF`), then, when a registry cache is in use, the build argument
/// [`INLINE_CACHE_ARG`]` = 1` unless the build arguments set it already:
/// every image pushed carries the cache metadata the next build imports.
/// Errors: a `REF` that is not an image reference (exit 2).
pub(super) fn apply_cache_flag(project: &mut Project, args: &BuildArgs) -> Result<(), Failure> {
    if let Some(reference) = &args.cache_from {
        mab_config::project::parse_image_reference(reference).map_err(|error| {
            Failure::usage(
                format!("--cache-from `{reference}` is not a valid image reference: {error}"),
                Some("name the published list to take the cache from as [registry[:port]/]path[:tag] or path@sha256:DIGEST, e.g. --cache-from registry.example.com/team/app:main"),
            )
        })?;
        project.cache = mab_config::Cache {
            from: CacheFrom::Registry,
            reference: Some(reference.clone()),
        };
    }
    if project.cache.from == CacheFrom::Registry {
        project
            .args
            .entry(INLINE_CACHE_ARG.to_owned())
            .or_insert_with(|| "1".to_owned());
    }
    Ok(())
}

/// The reference whose images are the cache sources: `ref` (or
/// `--cache-from`), else the list under the first of `tags` in the
/// image's repository; `None` without a registry cache, or without tags.
pub(super) fn cache_reference(project: &Project, tags: &[String]) -> Option<String> {
    if project.cache.from != CacheFrom::Registry {
        return None;
    }
    match &project.cache.reference {
        Some(reference) => Some(reference.clone()),
        None => tags.first().map(|tag| format!("{}:{tag}", project.image)),
    }
}

/// The cache source of each of `platforms`: its image in the list (or the
/// image) at `reference`, as `NAME@sha256:…` ([`mab_registry::Repository::platform_images`],
/// matched with [`mab_registry::check_platform`]). Read with the
/// credentials `environment` gives for its registry (`credentials` when it
/// is `registry`, the image's). Never fails: a reference with nothing
/// under it, a platform the list lacks, credentials that cannot be read or
/// a registry that does not answer within [`LOOKUP_LIMIT`] is a warning
/// naming the reference and the platforms, which are then built without
/// a cache source.
pub(super) async fn cache_sources(
    reference: &str,
    platforms: &[Platform],
    environment: &Environment,
    (registry, credentials): (&str, Option<&mab_registry::Credentials>),
    reporter: &dyn Reporter,
) -> BTreeMap<Platform, String> {
    let named = || {
        platforms
            .iter()
            .map(Platform::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let warn = |why: String| {
        reporter.report(Event::Warning {
            message: format!("building {} without a cache source: {why}", named()),
        });
    };
    let found = tokio::time::timeout(
        LOOKUP_LIMIT,
        platform_images(reference, environment, registry, credentials),
    )
    .await;
    let images = match found {
        Err(_) => {
            warn(format!(
                "the registry of {reference} did not answer within {} s",
                LOOKUP_LIMIT.as_secs()
            ));
            return BTreeMap::new();
        }
        Ok(Err(message)) => {
            warn(format!("cannot read {reference}: {message}"));
            return BTreeMap::new();
        }
        Ok(Ok(None)) => {
            warn(format!(
                "nothing is published at {reference} (as on the first build with a registry cache)"
            ));
            return BTreeMap::new();
        }
        Ok(Ok(Some(images))) => images,
    };
    let mut sources = BTreeMap::new();
    for platform in platforms {
        let image = images
            .1
            .iter()
            .find(|(found, _)| mab_registry::check_platform(platform, found).is_ok());
        match image {
            Some((_, digest)) => {
                sources.insert(platform.clone(), format!("{}@{digest}", images.0));
            }
            None => {
                let listed: Vec<String> = images
                    .1
                    .iter()
                    .map(|(found, _)| found.platform().to_string())
                    .collect();
                reporter.report(Event::Warning {
                    message: format!(
                        "building {platform} without a cache source: {reference} has no image for it (it has {})",
                        if listed.is_empty() {
                            "none with a platform".to_owned()
                        } else {
                            listed.join(", ")
                        }
                    ),
                });
            }
        }
    }
    sources
}

/// The image name of `reference` and its images by platform
/// ([`mab_registry::Repository::platform_images`]), `None` when nothing is
/// there; the error is a sentence.
async fn platform_images(
    reference: &str,
    environment: &Environment,
    image_registry: &str,
    image_credentials: Option<&mab_registry::Credentials>,
) -> Result<Option<(String, Vec<(mab_registry::ConfigPlatform, String)>)>, String> {
    let parsed =
        mab_registry::ImageReference::parse(reference).map_err(|error| error.to_string())?;
    let registry = mab_registry::registry_of(&parsed.name).map_err(|error| error.to_string())?;
    let looked_up;
    let credentials = if registry == image_registry {
        image_credentials
    } else {
        looked_up = crate::ops::registry_credentials(environment, &registry)
            .await
            .map_err(|failure| {
                failure
                    .report
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_owned()
            })?
            .1;
        looked_up.as_ref()
    };
    let repository = mab_registry::Repository::new(&parsed.name, credentials)
        .map_err(|error| error.to_string())?;
    let images = repository
        .platform_images(&parsed.tag_or_digest)
        .await
        .map_err(|error| error.to_string())?;
    Ok(images.map(|images| (parsed.name, images)))
}
