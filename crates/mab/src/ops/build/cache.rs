//! `[cache] from = "registry"` and `--cache-from REF`: the cache source of
//! each platform's build, taken from the previously published list
//! (docs/configuration.md#cache).

use std::collections::BTreeMap;
use std::time::Duration;

use mab_config::{CacheFrom, Platform, Project};

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

/// For tests only: overrides [`LOOKUP_LIMIT`], in whole seconds, so that a
/// registry that never answers can be tried in a test in less time. Not a
/// setting: not in the configuration docs, and may go away.
const LOOKUP_LIMIT_TEST_VAR: &str = "MAB_TEST_CACHE_LOOKUP_SECONDS";

/// [`LOOKUP_LIMIT`], or [`LOOKUP_LIMIT_TEST_VAR`]'s whole seconds when it
/// holds a number.
fn lookup_limit(environment: &Environment) -> Duration {
    environment
        .variable(LOOKUP_LIMIT_TEST_VAR)
        .and_then(|seconds| seconds.to_str()?.parse().ok())
        .map_or(LOOKUP_LIMIT, Duration::from_secs)
}

/// `--cache-from REF` over `[cache]` (as `from = "registry"` with
/// `ref = REF`), then, when a registry cache is in use, the build argument
/// [`INLINE_CACHE_ARG`]` = 1` unless the build arguments set it already:
/// every image pushed carries the cache metadata the next build imports.
/// Errors: a `REF` that is not an image reference (exit 2).
pub(super) fn apply_cache_flag(
    project: &mut Project,
    cache_from: Option<&str>,
) -> Result<(), Failure> {
    if let Some(reference) = cache_from {
        mab_config::project::parse_image_reference(reference).map_err(|error| {
            Failure::usage(
                format!("--cache-from `{reference}` is not a valid image reference: {error}"),
                Some("name the published list to take the cache from as [registry[:port]/]path[:tag] or path@sha256:DIGEST, e.g. --cache-from registry.example.com/team/app:main"),
            )
        })?;
        project.cache = mab_config::Cache {
            from: CacheFrom::Registry,
            reference: Some(reference.to_owned()),
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

/// [`cache_reference`], with a warning naming what to set when a registry
/// cache is asked for but there is no reference to read (no `ref`, and
/// the build publishes under no tag: `--no-push` outside a git repository).
pub(super) fn reference_to_read(
    project: &Project,
    tags: &[String],
    reporter: &dyn Reporter,
) -> Option<String> {
    let reference = cache_reference(project, tags);
    if reference.is_none() && project.cache.from == CacheFrom::Registry {
        let image = &project.image;
        reporter.report(Event::Warning {
            message: format!(
                "building without a cache source: [cache] from = \"registry\" has no list to read, as no `ref` is set and this build has no tag of {image} to read under; hint: set `ref = \"{image}:latest\"` under [cache] in mab.toml, or pass --cache-from {image}:TAG"
            ),
        });
    }
    reference
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
    let limit = lookup_limit(environment);
    let found = tokio::time::timeout(
        limit,
        platform_images(reference, environment, registry, credentials),
    )
    .await;
    let images = match found {
        Err(_) => {
            warn(format!(
                "the registry of {reference} did not answer within {} s; hint: check that this host reaches that registry (`curl https://REGISTRY/v2/`), or point `ref` under [cache] (or --cache-from) at one it reaches",
                limit.as_secs()
            ));
            return BTreeMap::new();
        }
        Ok(Err(error)) => {
            let hint = error
                .credentials_hint()
                .map_or_else(|| lookup_hint(&error), str::to_owned);
            warn(format!("cannot read {reference}: {error}; hint: {hint}"));
            return BTreeMap::new();
        }
        Ok(Ok(None)) => {
            warn(format!(
                "nothing is published at {reference} (as on the first build with a registry cache); hint: {}",
                nothing_published_hint(reference)
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

/// The image name of `reference` (without tag or digest), or `reference`
/// itself when it does not parse.
fn image_name(reference: &str) -> String {
    mab_registry::ImageReference::parse(reference)
        .map_or_else(|_| reference.to_owned(), |parsed| parsed.name)
}

/// The hint when nothing is published at `reference`: to read the last
/// build's list under `latest`, unless that is what is read already; then
/// the builds that publish under it give the next ones their source.
fn nothing_published_hint(reference: &str) -> String {
    let latest = format!("{}:latest", image_name(reference));
    if reference == latest {
        format!("a build that publishes under {latest} (with the tag `latest`) gives the next builds their cache source; until then each platform builds from its runner's own cache")
    } else {
        format!("set `ref = \"{latest}\"` under [cache] in mab.toml to read the last build's list")
    }
}

/// The hint of a cache source that could not be read for a reason other
/// than its credentials.
fn lookup_hint(error: &mab_registry::RegistryError) -> String {
    match error {
        mab_registry::RegistryError::Unreachable { .. } => "check that this host reaches that registry, or point `ref` under [cache] (or --cache-from) at one it reaches".to_owned(),
        _ => "check that `ref` under [cache] (or --cache-from) names a list or an image that this build's credentials may read (`mab inspect REF` shows what is there)".to_owned(),
    }
}

/// The image name of `reference` and its images by platform
/// ([`mab_registry::Repository::platform_images`]), `None` when nothing is
/// there. Read with `image_credentials` when its registry is
/// `image_registry`, else with what `environment` gives for it.
///
/// Errors: a reference that does not parse, credentials that cannot be
/// read ([`crate::ops::lookup_credentials`]), and the registry's errors.
async fn platform_images(
    reference: &str,
    environment: &Environment,
    image_registry: &str,
    image_credentials: Option<&mab_registry::Credentials>,
) -> Result<
    Option<(String, Vec<(mab_registry::ConfigPlatform, String)>)>,
    mab_registry::RegistryError,
> {
    let parsed = mab_registry::ImageReference::parse(reference)?;
    let looked_up;
    let credentials = if parsed.registry == image_registry {
        image_credentials
    } else {
        looked_up = crate::ops::lookup_credentials(environment, &parsed.registry)
            .await?
            .1;
        looked_up.as_ref()
    };
    let repository = mab_registry::Repository::new(&parsed.name, credentials)?;
    let images = repository.platform_images(&parsed.tag_or_digest).await?;
    Ok(images.map(|images| (parsed.name, images)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With nothing under a tag, the hint names `latest`, but not when
    /// `latest` is what was read.
    #[test]
    fn the_hint_of_nothing_published_does_not_repeat_the_reference() {
        let other = nothing_published_hint("127.0.0.1:5000/team/app:1.2.0");
        assert_eq!(
            other,
            "set `ref = \"127.0.0.1:5000/team/app:latest\"` under [cache] in mab.toml to read the last build's list"
        );
        let latest = nothing_published_hint("127.0.0.1:5000/team/app:latest");
        assert!(!latest.contains("set `ref"), "{latest}");
        assert!(
            latest.starts_with("a build that publishes under 127.0.0.1:5000/team/app:latest"),
            "{latest}"
        );
    }

    #[test]
    fn the_flag_and_the_manifest_give_the_reference_and_the_argument() {
        let digest = format!("sha256:{}", "c".repeat(64));
        let pinned = format!("127.0.0.1:5001/team/base@{digest}");
        // (mab.toml's extra sections, --cache-from, tags) ->
        // (reference read, BUILDKIT_INLINE_CACHE)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a [&'a str],
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: [Case; 8] = [
            ("", None, &["1.0"], None, None),
            ("[cache]\nfrom = \"none\"\n", None, &["1.0"], None, None),
            (
                "[cache]\nfrom = \"registry\"\n",
                None,
                &["1.0", "latest"],
                Some("127.0.0.1:5000/app:1.0"),
                Some("1"),
            ),
            ("[cache]\nfrom = \"registry\"\n", None, &[], None, Some("1")),
            (
                "[cache]\nfrom = \"registry\"\nref = \"127.0.0.1:5000/other:main\"\n",
                None,
                &["1.0"],
                Some("127.0.0.1:5000/other:main"),
                Some("1"),
            ),
            ("", Some(&pinned), &[], Some(&pinned), Some("1")),
            (
                "[cache]\nfrom = \"registry\"\nref = \"127.0.0.1:5000/other:main\"\n",
                Some("127.0.0.1:5000/app:main"),
                &["1.0"],
                Some("127.0.0.1:5000/app:main"),
                Some("1"),
            ),
            (
                "[image.args]\nBUILDKIT_INLINE_CACHE = \"0\"\n[cache]\nfrom = \"registry\"\n",
                None,
                &["1.0"],
                Some("127.0.0.1:5000/app:1.0"),
                Some("0"),
            ),
        ];
        for (sections, flag, tags, reference, argument) in cases {
            let text = format!(
                "[image]\nname = \"127.0.0.1:5000/app\"\nplatforms = [\"linux/amd64\"]\n{sections}"
            );
            let mut project =
                mab_config::parse_project(std::path::Path::new("/p/mab.toml"), &text).unwrap();
            apply_cache_flag(&mut project, flag).unwrap();
            let tags: Vec<String> = tags.iter().map(|tag| tag.to_string()).collect();
            assert_eq!(
                cache_reference(&project, &tags).as_deref(),
                reference,
                "{sections} {flag:?}"
            );
            assert_eq!(
                project.args.get(INLINE_CACHE_ARG).map(String::as_str),
                argument,
                "{sections} {flag:?}"
            );
        }
    }

    #[test]
    fn a_flag_that_is_no_reference_is_usage() {
        let text = "[image]\nname = \"127.0.0.1:5000/app\"\nplatforms = [\"linux/amd64\"]\n";
        let mut project =
            mab_config::parse_project(std::path::Path::new("/p/mab.toml"), text).unwrap();
        let failure = apply_cache_flag(&mut project, Some("Team/App:main")).unwrap_err();
        assert_eq!(failure.kind, crate::failure::FailureKind::Usage);
        assert!(
            failure.report.contains("--cache-from `Team/App:main`"),
            "{}",
            failure.report
        );
        assert_eq!(project.cache.from, CacheFrom::None);
        assert!(!project.args.contains_key(INLINE_CACHE_ARG));
    }

    #[test]
    fn a_list_entry_matches_as_a_pushed_image_is_checked() {
        // arm without a variant is arm/v7, arm64/v8 is arm64 (containerd).
        let config = |architecture: &str, variant: Option<&str>| mab_registry::ConfigPlatform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        };
        for (platform, found, matches) in [
            ("linux/arm/v7", config("arm", None), true),
            ("linux/arm/v6", config("arm", None), false),
            ("linux/arm64", config("arm64", Some("v8")), true),
            ("linux/amd64", config("arm64", None), false),
        ] {
            let platform: Platform = platform.parse().unwrap();
            assert_eq!(
                mab_registry::check_platform(&platform, &found).is_ok(),
                matches,
                "{platform} {found:?}"
            );
        }
    }
}
