//! `mab build --resume [FILE]`: finish an earlier build that failed by
//! rebuilding only what it did not push and verify (docs/publishing.md).
//!
//! The earlier build is read from the project's state file or from a
//! `--metadata-file` ([`load`]), its inputs must equal this build's
//! ([`check_inputs`]), and each platform it pushed is reused when the
//! registry still serves its digest ([`reuse`]). [`Resume`] wires these
//! steps for `build()` and its unit tests alike.

use std::path::{Path, PathBuf};

use mab_config::{Platform, SmokeTest};
use mab_registry::Child;

use crate::cli::BuildArgs;
use crate::environment::Environment;
use crate::failure::{Failure, FailureKind};
use crate::progress::{Event, Reporter};

use super::metadata::{
    given_path, state_inside_context, state_path, Inputs, Metadata, PlatformMetadata, State,
};
use super::publish::Registry;
use super::{before_deadline, slow_registry};

const REBUILD_HINT: &str = "run `mab build` without --resume to rebuild every platform";

/// `--resume` publishes, so `--no-push` cannot go with it (exit 2).
pub(super) fn check_resume_pushes(args: &BuildArgs) -> Result<(), Failure> {
    if args.resume.is_some() && args.no_push {
        return Err(Failure::usage(
            "--resume cannot go with --no-push: a resume publishes the full list",
            Some("drop --no-push to publish, or run `mab build --no-push` without --resume to only build"),
        ));
    }
    Ok(())
}

/// The earlier build `--resume` names: the metadata file `file` (relative
/// to `-C`), else the state of the last build of the project whose
/// `mab.toml` is `manifest` ([`state_path`]). Errors (exit 2): no state
/// for the project (also when none is kept, its state file being inside
/// the build context `context`), a file that cannot be read, an empty one
/// (its build was killed before it ended), or one that is not a
/// metadata document with `inputs`, or one with a platform's digest that
/// is not `sha256:` and 64 lowercase hex digits, each naming the file.
/// Returns the document and the path it was read from.
fn load(
    file: Option<&Path>,
    args: &BuildArgs,
    environment: &Environment,
    manifest: &Path,
    context: &Path,
) -> Result<(Metadata, PathBuf), Failure> {
    let (path, given) = match file {
        Some(file) => (given_path(args, environment, file), true),
        None => (state_path(environment, manifest), false),
    };
    if !given && state_inside_context(&path, context) {
        return Err(Failure::usage(
            format!(
                "nothing to resume: no state is kept for {}, as its state file {} would be inside the build context {}",
                manifest.display(),
                path.display(),
                context.display()
            ),
            Some("set XDG_STATE_HOME to a directory outside the build context, or resume from a --metadata-file with --resume FILE"),
        ));
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if !given && error.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::usage(
                format!(
                    "nothing to resume: no earlier build of {} (no state at {})",
                    manifest.display(),
                    path.display()
                ),
                Some("run `mab build`; --resume FILE resumes from the --metadata-file of a build run elsewhere"),
            ));
        }
        Err(error) => {
            return Err(Failure::usage(
                format!("cannot resume from {}: {error}", path.display()),
                Some(if given {
                    "pass the --metadata-file that the failed build wrote"
                } else {
                    "run `mab build` without --resume"
                }),
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(Failure::usage(
            format!(
                "cannot resume from {}: the file is empty: the build that was to write it did not end normally (killed with SIGKILL, stopped by a second Ctrl-C, or its machine stopped)",
                path.display()
            ),
            Some(if given {
                "run `mab build` without --resume; pass --resume FILE only with the --metadata-file of a build that ended, even by failing or by Ctrl-C/SIGTERM"
            } else {
                "run `mab build` without --resume"
            }),
        ));
    }
    let earlier: Metadata = serde_json::from_str(&text).map_err(|error| {
        Failure::usage(
            format!(
                "cannot resume from {}: it is not the metadata of a mab build: {error}",
                path.display()
            ),
            Some("pass the --metadata-file that the failed build wrote (one written by a mab that records `inputs`), or run `mab build` without --resume"),
        )
    })?;
    // Each digest goes into a registry request: only a well-formed one.
    for entry in &earlier.platforms {
        let Some(digest) = &entry.digest else {
            continue;
        };
        if !mab_context::is_sha256_digest(digest) {
            return Err(Failure::usage(
                format!(
                    "cannot resume from {}: the digest of {} is not `sha256:` and 64 lowercase hex digits: {digest}",
                    path.display(),
                    entry.platform
                ),
                Some("pass the --metadata-file that the failed build wrote, unchanged, or run `mab build` without --resume"),
            ));
        }
    }
    Ok((earlier, path))
}

/// What changed from `earlier` to `now`, one phrase each, in the order
/// of the fields: the files sent, the Dockerfile, each build argument,
/// the target, the platforms, the labels, `[verify]`. Empty when nothing did.
pub(super) fn changes(earlier: &Inputs, now: &Inputs) -> Vec<String> {
    let mut changes = Vec::new();
    let dockerfile_changed = earlier.dockerfile != now.dockerfile;
    if earlier.context != now.context {
        let named = changed_entries(&earlier.context_entries, &now.context_entries);
        match named {
            Some(named) if named.is_empty() && dockerfile_changed => {}
            Some(named) if !named.is_empty() => {
                changes.push(format!(
                    "the files sent changed: {}",
                    crate::ops::named_list(&named)
                ));
            }
            _ => changes.push("the files sent changed".to_owned()),
        }
    }
    if earlier.dockerfile.path != now.dockerfile.path {
        changes.push(format!(
            "the Dockerfile changed: {} -> {}",
            earlier.dockerfile.path.display(),
            now.dockerfile.path.display()
        ));
    } else if earlier.dockerfile.digest != now.dockerfile.digest {
        changes.push(format!(
            "the Dockerfile changed ({})",
            now.dockerfile.path.display()
        ));
    }
    let names: std::collections::BTreeSet<&String> = earlier
        .build_args
        .keys()
        .chain(now.build_args.keys())
        .collect();
    // Only names: the document holds the values' digests, never a value.
    for name in names {
        // mab itself adds the inline cache argument with a registry cache.
        let why = if name == super::cache::INLINE_CACHE_ARG {
            " ([cache] from = \"registry\" or --cache-from was turned on or off since)"
        } else {
            ""
        };
        match (earlier.build_args.get(name), now.build_args.get(name)) {
            (Some(before), Some(after)) if before != after => {
                changes.push(format!("build arg {name} changed"));
            }
            (Some(_), None) => changes.push(format!("build arg {name} removed{why}")),
            (None, Some(_)) => changes.push(format!("build arg {name} added{why}")),
            _ => {}
        }
    }
    if earlier.target != now.target {
        let show = |target: &Option<String>| {
            target
                .clone()
                .unwrap_or_else(|| "(the last stage)".to_owned())
        };
        changes.push(format!(
            "target changed: {} -> {}",
            show(&earlier.target),
            show(&now.target)
        ));
    }
    if earlier.platforms != now.platforms {
        let show = |platforms: &[Platform]| {
            platforms
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        changes.push(format!(
            "platforms changed: {} -> {}",
            show(&earlier.platforms),
            show(&now.platforms)
        ));
    }
    if earlier.labels != now.labels {
        let names: std::collections::BTreeSet<&String> =
            earlier.labels.keys().chain(now.labels.keys()).collect();
        let changed: Vec<&str> = names
            .into_iter()
            .filter(|name| earlier.labels.get(*name) != now.labels.get(*name))
            .map(String::as_str)
            .collect();
        changes.push(format!("labels changed: {}", changed.join(", ")));
    }
    if earlier.verify != now.verify {
        // The reused platforms were checked under the earlier one.
        let show = |verify: &Option<super::metadata::VerifyInput>| match verify {
            Some(verify) => format!(
                "binaries = \"{}\", ignore = {:?}",
                verify.binaries, verify.ignore
            ),
            None => "(no binary check)".to_owned(),
        };
        changes.push(format!(
            "[verify] changed: {} -> {}",
            show(&earlier.verify),
            show(&now.verify)
        ));
    }
    changes
}

/// The top-level entries of the context that differ from `earlier` to
/// `now`, by name, an added one as `README.md (added)`, a removed one as
/// `old/ (removed)`; `None` when either side has none recorded (too many
/// entries, or a document of an older mab), when nothing can be named.
fn changed_entries(
    earlier: &std::collections::BTreeMap<String, String>,
    now: &std::collections::BTreeMap<String, String>,
) -> Option<Vec<String>> {
    if earlier.is_empty() || now.is_empty() {
        return None;
    }
    let names: std::collections::BTreeSet<&String> = earlier.keys().chain(now.keys()).collect();
    Some(
        names
            .into_iter()
            .filter_map(|name| match (earlier.get(name), now.get(name)) {
                (Some(before), Some(after)) if before != after => Some(name.clone()),
                (Some(_), None) => Some(format!("{name} (removed)")),
                (None, Some(_)) => Some(format!("{name} (added)")),
                _ => None,
            })
            .collect(),
    )
}

/// What to do when mab's own files (`mab.toml`, the runners file next to
/// it) are among the context's top-level entries that changed from
/// `earlier` to `now`: list them in `.dockerignore`, or, when they are
/// gone from the context (now ignored), that only a build without
/// `--resume` records that. `None` when neither changed, or when either
/// side recorded no entries.
fn own_files_hint(earlier: &Inputs, now: &Inputs) -> Option<String> {
    if earlier.context_entries.is_empty() || now.context_entries.is_empty() {
        return None;
    }
    let own = [
        mab_config::project::MANIFEST_NAME,
        mab_config::runners::RUNNERS_FILE_NAME,
    ];
    let changed: Vec<&str> = own
        .into_iter()
        .filter(|name| earlier.context_entries.get(*name) != now.context_entries.get(*name))
        .collect();
    if changed.is_empty() {
        return None;
    }
    let runners = mab_config::runners::RUNNERS_FILE_NAME;
    if changed
        .iter()
        .all(|name| !now.context_entries.contains_key(*name))
    {
        return Some(format!(
            "{} left the context, so the earlier build's context differs from this one: run `mab build` once without --resume; resumes after it are no longer stopped by changes to mab's own settings",
            changed.join(" and ")
        ));
    }
    let (names, verb) = match changed.as_slice() {
        [one] => (*one, "is"),
        _ => ("mab.toml and runners.toml", "are"),
    };
    Some(format!(
        "{names} {verb} sent with the context like any file not in .dockerignore. To resume now, undo the change and give a fixed runners file elsewhere with --runners FILE; for later builds, list mab.toml and {runners} in .dockerignore so that mab's own settings (a runner, a time limit) are not part of what is built"
    ))
}

/// Refuses (exit 2) a resume whose inputs changed since the earlier build
/// (read from `read_from`), naming each change: a list must not mix images
/// built from different sources. The message names the file, and says so
/// when the earlier build was of another project than `manifest` (this
/// build's `mab.toml`).
pub(super) fn check_inputs(
    earlier: &Metadata,
    read_from: &Path,
    manifest: &Path,
    now: &Inputs,
) -> Result<(), Failure> {
    let changes = changes(&earlier.inputs, now);
    if changes.is_empty() {
        return Ok(());
    }
    let same = |one: &Path, other: &Path| {
        std::fs::canonicalize(one)
            .ok()
            .zip(std::fs::canonicalize(other).ok())
            .is_some_and(|(one, other)| one == other)
            || one == other
    };
    let which = if same(&earlier.project, manifest) {
        format!(
            "the earlier build of {} (read from {})",
            manifest.display(),
            read_from.display()
        )
    } else {
        format!(
            "the earlier build read from {}, a build of another project ({}, not {})",
            read_from.display(),
            earlier.project.display(),
            manifest.display()
        )
    };
    let mut hints = vec![format!(
        "{REBUILD_HINT}; a list must not mix images built from different sources"
    )];
    hints.extend(own_files_hint(&earlier.inputs, now));
    Err(Failure::new(
        FailureKind::Usage,
        &format!("cannot resume {which}: {}", changes.join("; ")),
        hints,
        &[],
    ))
}

/// What a resume takes over and what it builds.
#[derive(Debug, Default)]
pub(super) struct Reuse {
    /// The earlier build's entries of the platforms reused, with their
    /// images as the registry describes them now.
    pub(super) reused: Vec<(PlatformMetadata, Child)>,
    /// The platforms to build, in the order of `platforms`.
    pub(super) to_build: Vec<Platform>,
}

impl Reuse {
    /// The entries of the reused platforms, `pushed` (not yet published).
    pub(super) fn entries(&self) -> Vec<PlatformMetadata> {
        reused_entries(&self.reused, false)
    }
}

/// The entries of the `reused` platforms ([`PlatformMetadata::reused`]):
/// `published` once their list is, else `pushed`.
pub(super) fn reused_entries(
    reused: &[(PlatformMetadata, Child)],
    published: bool,
) -> Vec<PlatformMetadata> {
    reused
        .iter()
        .map(|(entry, _)| PlatformMetadata::reused(entry, published))
        .collect()
}

/// The entries of the earlier build's platforms among `platforms` that a
/// resume may reuse, as their entries stand until the registry is read
/// (`pushed`, marked `reused`): those it left `pushed` or `published`
/// with a digest, having passed `test` ([`untested`]). A resume that stops before reading the registry keeps
/// them so in its metadata, so that the next resume still finds them.
fn carried(
    earlier: &Metadata,
    platforms: &[Platform],
    test: Option<&SmokeTest>,
) -> Vec<PlatformMetadata> {
    platforms
        .iter()
        .filter_map(|platform| tested_candidate(earlier, platform, test))
        .map(|(entry, _)| PlatformMetadata::reused(entry, false))
        .collect()
}

/// The earlier build's entry of `platform` and its digest, when it left
/// the platform `pushed` or `published` with one.
fn candidate<'a>(
    earlier: &'a Metadata,
    platform: &Platform,
) -> Option<(&'a PlatformMetadata, &'a str)> {
    let entry = earlier.platforms.iter().find(|entry| {
        entry.platform == *platform && matches!(entry.state, State::Pushed | State::Published)
    })?;
    Some((entry, entry.digest.as_deref()?))
}

/// Why `entry` (pushed by the earlier build) cannot be reused untested
/// under `test`, the `[test]` in force (`None` without one, or with
/// `--no-test`): the earlier build did not run it (`--no-test`, or before
/// the table existed), or ran another `run` or `expect`. `None` when it
/// passed this test.
fn untested(entry: &PlatformMetadata, test: Option<&SmokeTest>) -> Option<&'static str> {
    let test = test?;
    match &entry.test {
        None => Some("the earlier build did not run [test] on it"),
        Some(run) if run.passed(test) => None,
        Some(_) => Some("the earlier build ran another [test] on it"),
    }
}

/// [`candidate`], when it also passed `test` ([`untested`]).
fn tested_candidate<'a>(
    earlier: &'a Metadata,
    platform: &Platform,
    test: Option<&SmokeTest>,
) -> Option<(&'a PlatformMetadata, &'a str)> {
    candidate(earlier, platform).filter(|(entry, _)| untested(entry, test).is_none())
}

/// Which of `platforms` the earlier build already pushed and verified
/// (`pushed` or `published`, with a digest) and the registry still
/// serves by that digest for that platform: one read of each
/// ([`Registry::describe`]), each reported as [`Event::Reused`]. A digest
/// the registry no longer serves (or that cannot be read, or whose image
/// is not the platform's) is rebuilt, with a warning saying why, and so
/// is one that did not pass `test`, the `[test]` in force ([`untested`]:
/// nothing is published untested); so is every other platform (failed,
/// cancelled, not started). When the earlier build pushed nothing, one
/// warning says so and nothing is read.
async fn reuse(
    repository: &impl Registry,
    earlier: &Metadata,
    platforms: &[Platform],
    test: Option<&SmokeTest>,
    reporter: &dyn Reporter,
) -> Reuse {
    let mut reuse = Reuse::default();
    if platforms
        .iter()
        .all(|platform| candidate(earlier, platform).is_none())
    {
        reporter.report(Event::Warning {
            message: "nothing to reuse: the earlier build pushed nothing; every platform is built"
                .to_owned(),
        });
        reuse.to_build = platforms.to_vec();
        return reuse;
    }
    for platform in platforms {
        let Some((entry, digest)) = candidate(earlier, platform) else {
            reuse.to_build.push(platform.clone());
            continue;
        };
        if let Some(why) = untested(entry, test) {
            reporter.report(Event::Warning {
                message: format!(
                    "{platform} is rebuilt to run [test]: {why} (its image {digest} would be published untested)"
                ),
            });
            reuse.to_build.push(platform.clone());
            continue;
        }
        let why = match repository.describe(digest).await {
            Ok(child) => match mab_registry::check_platform(platform, &child.platform) {
                Ok(()) => {
                    reporter.report(Event::Reused {
                        platform: platform.clone(),
                        runner: entry.runner.clone(),
                        digest: digest.to_owned(),
                    });
                    reuse.reused.push((entry.clone(), child));
                    continue;
                }
                Err(error) => error.to_string(),
            },
            Err(error) => error.to_string(),
        };
        reporter.report(Event::Warning {
            message: format!(
                "{platform} is rebuilt: the earlier build's image {digest} cannot be reused from {}: {why}",
                repository.name()
            ),
        });
        reuse.to_build.push(platform.clone());
    }
    reuse
}

/// A build's resume, wired in one place for `mab build` and its tests:
/// the earlier build (none without `--resume`), what the metadata keeps
/// when the build stops before the registry is read, and what is reused.
pub(super) struct Resume {
    earlier: Option<Metadata>,
    /// The `[test]` in force (none with `--no-test`): a platform reused
    /// must have passed it.
    test: Option<SmokeTest>,
    /// The earlier build's entries that a resume may reuse ([`carried`]).
    pub(super) carried: Vec<PlatformMetadata>,
    /// The other platforms, in the order of `mab.toml`.
    pub(super) rest: Vec<Platform>,
}

impl Resume {
    /// With `--resume`: the earlier build ([`load`]), refused (exit 2)
    /// when its inputs differ from `inputs` ([`check_inputs`]). Read
    /// before the metadata file is written: it may be the same file.
    pub(super) fn start(
        args: &BuildArgs,
        environment: &Environment,
        project: &mab_config::Project,
        inputs: &Inputs,
    ) -> Result<Resume, Failure> {
        let earlier = match &args.resume {
            Some(file) => {
                let manifest = &project.manifest_path;
                let (earlier, read_from) = load(
                    file.as_deref(),
                    args,
                    environment,
                    manifest,
                    &project.context,
                )?;
                check_inputs(&earlier, &read_from, manifest, inputs)?;
                Some(earlier)
            }
            None => None,
        };
        let test = project.test.clone().filter(|_| !args.no_test);
        Ok(Resume::of(earlier, &project.platforms, test))
    }

    /// The resume of `earlier` (none: a plain build) for `platforms`,
    /// under `test`, the `[test]` in force.
    pub(super) fn of(
        earlier: Option<Metadata>,
        platforms: &[Platform],
        test: Option<SmokeTest>,
    ) -> Resume {
        let carried = earlier
            .as_ref()
            .map(|earlier| carried(earlier, platforms, test.as_ref()))
            .unwrap_or_default();
        let rest = platforms
            .iter()
            .filter(|platform| !carried.iter().any(|entry| entry.platform == **platform))
            .cloned()
            .collect();
        Resume {
            earlier,
            test,
            carried,
            rest,
        }
    }

    /// What the build reuses and builds: with an earlier build and a
    /// `repository` (at `registry`, the host) to read, [`reuse`] within
    /// `deadline` (`--deadline`: when, and the limit as given; a runtime
    /// failure naming the registry when it comes first); otherwise every
    /// one of `platforms` is built.
    pub(super) async fn decide(
        &self,
        repository: Option<&impl Registry>,
        registry: &str,
        platforms: &[Platform],
        deadline: Option<(tokio::time::Instant, std::time::Duration)>,
        reporter: &dyn Reporter,
    ) -> Result<Reuse, Failure> {
        let (Some(earlier), Some(repository)) = (&self.earlier, repository) else {
            return Ok(Reuse {
                reused: Vec::new(),
                to_build: platforms.to_vec(),
            });
        };
        before_deadline(
            deadline,
            || slow_registry(registry, "reading the earlier build's images"),
            reuse(repository, earlier, platforms, self.test.as_ref(), reporter),
        )
        .await
    }
}

#[cfg(test)]
mod test_tests {
    use super::*;

    fn entry(test: serde_json::Value) -> PlatformMetadata {
        let mut entry = serde_json::json!({
            "platform": "linux/arm64",
            "runner": "pi",
            "digest": "sha256:arm64",
            "emulated": false,
            "seconds": 3.0,
            "state": "published",
        });
        if !test.is_null() {
            entry["test"] = test;
        }
        serde_json::from_value(entry).unwrap()
    }

    /// A platform the earlier build pushed is reused under a `[test]` only
    /// when it passed that very test (its `run` and `expect`); without a
    /// test in force (none, or `--no-test`) anything pushed is.
    #[test]
    fn only_a_platform_that_passed_the_test_in_force_is_reused() {
        let test = SmokeTest {
            run: vec!["/app".to_owned(), "--version".to_owned()],
            expect: Some("^v2".parse().unwrap()),
            timeout: std::time::Duration::from_secs(60),
        };
        let passed = serde_json::json!({"exit_code": 0, "seconds": 1.0, "passed": true, "run": ["/app", "--version"], "expect": "^v2"});
        let cases = [
            (
                serde_json::Value::Null,
                Some("the earlier build did not run [test] on it"),
            ),
            (passed.clone(), None),
            // Exit code 0 but `expect` did not match: no pass.
            (
                serde_json::json!({"exit_code": 0, "seconds": 1.0, "passed": false, "run": ["/app", "--version"], "expect": "^v2"}),
                Some("the earlier build ran another [test] on it"),
            ),
            // An older document: no `passed`, no `run`.
            (
                serde_json::json!({"exit_code": 0, "seconds": 1.0}),
                Some("the earlier build ran another [test] on it"),
            ),
            (
                serde_json::json!({"exit_code": 0, "seconds": 1.0, "passed": true, "run": ["/app"], "expect": "^v2"}),
                Some("the earlier build ran another [test] on it"),
            ),
        ];
        for (recorded, why) in cases {
            let entry = entry(recorded.clone());
            assert_eq!(untested(&entry, Some(&test)), why, "{recorded}");
            assert_eq!(untested(&entry, None), None, "{recorded}");
        }
    }
}
