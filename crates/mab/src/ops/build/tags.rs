//! What the build publishes under: the computed tags, and the rule that a
//! partial build never takes them.

use mab_config::{Platform, Project};
use mab_context::BuildContext;
use mab_registry::tags::Source;

use crate::cli::BuildArgs;
use crate::environment::Environment;
use crate::failure::Failure;
use crate::progress::{Event, Reporter};

/// A build of fewer platforms than `mab.toml` lists never publishes under
/// the computed tags (PRODUCT.md): they would replace the release's list
/// with a narrower one. Such a build needs `--tag` or `--no-push`; refused
/// (exit 2) before anything is contacted. `linux/arm64` and
/// `linux/arm64/v8` count as one platform.
pub(super) fn check_not_narrowing(
    project: &Project,
    manifest_platforms: &[Platform],
    args: &BuildArgs,
) -> Result<(), Failure> {
    if !args.tags.is_empty() || args.no_push {
        return Ok(());
    }
    let missing: Vec<String> = manifest_platforms
        .iter()
        .filter(|platform| !project.platforms.contains(platform))
        .map(Platform::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let building: Vec<String> = project.platforms.iter().map(Platform::to_string).collect();
    Err(Failure::usage(
        format!(
            "--platform {} leaves out {}, which {} lists: a partial build is not published under the computed tags, where it would replace the full release",
            building.join(","),
            missing.join(", "),
            project.manifest_path.display()
        ),
        Some("pass --tag TAG to publish under tags of your own, or --no-push to build without publishing"),
    ))
}

/// `--allow-partial` narrows the list to the platforms that succeeded, so
/// it needs `--tag` (issue 8, docs/publishing.md): the computed release
/// tags never point at a partial list. Refused (exit 2) before anything is
/// contacted or built.
pub(super) fn check_partial_has_tags(args: &BuildArgs) -> Result<(), Failure> {
    if !args.allow_partial || !args.tags.is_empty() {
        return Ok(());
    }
    Err(Failure::usage(
        "--allow-partial needs --tag: a partial list is never published under the computed tags, where it would replace the full release",
        Some("pass --tag TAG (repeatable) to name the tags the partial list goes under"),
    ))
}

/// The tags to publish under (docs/publishing.md), from the CI variables and
/// the repository holding the context; what `listing` sends (with the
/// Dockerfile and the ignore file) decides whether the tree is dirty. A
/// repository that cannot be read stops the build (exit 2, or 1 when a git
/// command failed unexpectedly), unless `--tag` gives the tags or
/// `--no-push` publishes nothing: then it is a warning, and with
/// `--no-push` alone no tags are recorded. The [`Source`] the tags were
/// computed from comes along (`None` outside git and CI, or when git could
/// not be read), with the checkout's [`crate::git::Provenance`] (`None`
/// outside git, or when git could not be read: then with a warning).
pub(super) fn release_tags(
    project: &Project,
    context: &BuildContext,
    listing: &mab_context::ContextListing,
    args: &BuildArgs,
    environment: &Environment,
    reporter: &dyn Reporter,
) -> Result<Release, Failure> {
    let ignore = context.ignore();
    let sent = crate::git::Sent {
        context: context.dir(),
        paths: context.sent_paths(listing).into_iter().collect(),
        would_send: &|relative| !ignore.is_excluded(&relative.to_string_lossy()),
    };
    let checkout = match crate::git::checkout(&sent) {
        Ok(checkout) => checkout,
        Err(error) if !args.tags.is_empty() => {
            reporter.report(Event::Warning {
                message: format!("{error}; the tags come from --tag, so the build goes on"),
            });
            None
        }
        Err(error) if args.no_push => {
            reporter.report(Event::Warning {
                message: format!(
                    "{error}; nothing is pushed (--no-push), so the build goes on without tags (the metadata file records none)"
                ),
            });
            return Ok(Release::default());
        }
        Err(error) => {
            let hint = error.hint();
            return Err(match error.is_configuration() {
                true => Failure::usage(error.to_string(), Some(&hint)),
                false => Failure::runtime(error.to_string(), Some(&hint)),
            });
        }
    };
    let pull_request_number = match environment.pull_request_target_number() {
        Ok(number) => number,
        Err(error) => {
            if args.tags.is_empty() {
                reporter.report(Event::Warning {
                    message: format!(
                        "GITHUB_EVENT_NAME is pull_request_target, but {error}; without the pull request's number the only computed tag is the commit's (never `latest` or a release tag)"
                    ),
                });
            }
            None
        }
    };
    let ci = environment.ci_variables(pull_request_number.as_deref());
    let source = mab_registry::tags::source(&ci, checkout.as_ref());
    let tags = mab_registry::tags::compute_tags(source.as_ref(), &project.extra_tags, &args.tags);
    for warning in tags.warnings {
        reporter.report(Event::Warning { message: warning });
    }
    let provenance = match checkout {
        Some(_) => crate::git::provenance(context.dir()).unwrap_or_else(|error| {
            reporter.report(Event::Warning {
                message: format!(
                    "{error}; the images go without the source's URL and commit time labels"
                ),
            });
            None
        }),
        None => None,
    };
    Ok(Release {
        tags: tags.tags,
        source,
        provenance,
    })
}

/// What [`release_tags`] found.
#[derive(Default)]
pub(super) struct Release {
    /// The tags to publish under.
    pub(super) tags: Vec<String>,
    /// What they were computed from.
    pub(super) source: Option<Source>,
    /// Where the checkout comes from, and when HEAD was committed.
    pub(super) provenance: Option<crate::git::Provenance>,
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The parsed `mab build ARGUMENTS`.
    fn build_args(arguments: &[&str]) -> BuildArgs {
        let mut all = vec!["mab", "build"];
        all.extend_from_slice(arguments);
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(all).unwrap();
        let crate::cli::Command::Build(args) = cli.command else {
            panic!("a build command");
        };
        *args
    }

    #[test]
    fn allow_partial_needs_tags() {
        // (flags, refused)
        let cases: &[(&[&str], bool)] = &[
            (&["--allow-partial"], true),
            (&["--allow-partial", "--no-push"], true),
            (&["--allow-partial", "--tag", "t1"], false),
            (&["--allow-partial", "--tag", "t1", "--tag", "t2"], false),
            (&[], false),
            (&["--tag", "t1"], false),
        ];
        for (flags, refused) in cases {
            let result = check_partial_has_tags(&build_args(flags));
            assert_eq!(result.is_err(), *refused, "{flags:?}");
            if let Err(failure) = result {
                assert_eq!(failure.kind, crate::failure::FailureKind::Usage);
                assert_eq!(failure.kind.exit_code(), 2);
                assert!(
                    failure.report.contains("\nhint: pass --tag"),
                    "{}",
                    failure.report
                );
            }
        }
    }

    #[test]
    fn a_partial_build_needs_tags_or_no_push() {
        let platforms = |texts: &[&str]| -> Vec<Platform> {
            texts.iter().map(|text| text.parse().unwrap()).collect()
        };
        // (manifest's platforms, --platform, extra flags, refused)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], bool);
        let cases: &[Case<'_>] = &[
            (&["linux/amd64", "linux/arm64"], &["linux/arm64"], &[], true),
            (
                &["linux/amd64", "linux/arm64"],
                &["linux/arm64"],
                &["--tag", "arm"],
                false,
            ),
            (
                &["linux/amd64", "linux/arm64"],
                &["linux/arm64"],
                &["--no-push"],
                false,
            ),
            (
                &["linux/amd64", "linux/arm64"],
                &["linux/arm64/v8", "linux/amd64"],
                &[],
                false,
            ),
            (
                &["linux/amd64"],
                &["linux/amd64", "linux/ppc64le"],
                &[],
                false,
            ),
            (
                &["linux/amd64", "linux/arm/v7"],
                &["linux/amd64", "linux/arm/v6"],
                &[],
                true,
            ),
        ];
        for (manifest, building, flags, refused) in cases {
            let args = build_args(flags);
            let project = Project {
                manifest_path: PathBuf::from("/project/mab.toml"),
                image: "127.0.0.1:5000/app".to_owned(),
                platforms: platforms(building),
                context: PathBuf::from("/project"),
                dockerfile: None,
                target: None,
                emulation: true,
                fallback: true,
                timeout: None,
                args: Default::default(),
                secrets: std::collections::BTreeMap::new(),
                extra_tags: Vec::new(),
                test: None,
                verify: Default::default(),
                cache: Default::default(),
                labels: Default::default(),
                annotations: Default::default(),
                warnings: Vec::new(),
            };
            let result = check_not_narrowing(&project, &platforms(manifest), &args);
            assert_eq!(
                result.is_err(),
                *refused,
                "{manifest:?} {building:?} {flags:?}"
            );
            if let Err(failure) = result {
                assert_eq!(failure.kind, crate::failure::FailureKind::Usage);
            }
        }
    }
}
