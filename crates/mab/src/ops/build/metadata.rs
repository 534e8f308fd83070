//! `--metadata-file`: what the build published, or how far each platform
//! got when it failed, as JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mab_config::Platform;
use mab_events::ErrorKind;
use serde::{Deserialize, Serialize};

use crate::cli::BuildArgs;
use crate::environment::Environment;
use crate::failure::Failure;
use crate::ops::jobs::{Built, JobFailure, JobSpec, Stop, TestRun};
use crate::progress::{Event, Reporter};

/// The whole document: the `--metadata-file`, and the state of the last
/// build of a project that `--resume` reads (docs/publishing.md). Both are
/// written and read with this one type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Metadata {
    pub(super) image: String,
    /// The published list's digest: the list was pushed and every tag
    /// pointed at it; `null` when nothing was published.
    pub(super) digest: Option<String>,
    pub(super) media_type: Option<String>,
    /// Why the list, published as `digest`, was not read back as
    /// published (a tag moved by another writer, the list or an image not
    /// served as pushed): the error's message. Absent when it was, or when
    /// nothing was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) read_back_error: Option<String>,
    pub(super) tags: Vec<String>,
    /// buildx's `--metadata-file` keys, for tools that read that file:
    /// the list's digest, its descriptor, and its full references
    /// (`image:tag`, comma-separated); absent when nothing was published.
    #[serde(
        rename = "containerimage.digest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(super) containerimage_digest: Option<String>,
    #[serde(
        rename = "containerimage.descriptor",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(super) containerimage_descriptor: Option<Descriptor>,
    #[serde(
        rename = "image.name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(super) image_name: Option<String>,
    /// The platforms asked for that are not in the result: not published
    /// (not built, with `--no-push`); empty when the build succeeded.
    pub(super) missing: Vec<Platform>,
    pub(super) platforms: Vec<PlatformMetadata>,
    /// The absolute path of the project's `mab.toml` (what a state file
    /// is the state of).
    #[serde(default)]
    pub(super) project: PathBuf,
    /// What the build was built from.
    pub(super) inputs: Inputs,
}

/// An OCI content descriptor (`"containerimage.descriptor"`, as buildx
/// writes it): the list's media type, digest and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    pub(super) media_type: String,
    pub(super) digest: String,
    pub(super) size: u64,
}

/// The list a build published, for [`MetadataFile::write`].
#[derive(Clone, Copy, Debug)]
pub(super) struct ListWritten<'a> {
    pub(super) digest: &'a str,
    pub(super) media_type: &'a str,
    /// Its bytes' length.
    pub(super) size: u64,
}

/// What a build is built from (`"inputs"`): what a `--resume` must find
/// unchanged. Tags are not inputs: a resume may publish under others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Inputs {
    /// [`mab_context::content_digest`] of the files the context sends.
    pub(super) context: String,
    /// The digest of each top-level entry of the context, to name what
    /// changed ([`mab_context::ContentDigest::top_level`]); empty in a
    /// document of an older mab, or for a context with too many entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) context_entries: BTreeMap<String, String>,
    pub(super) dockerfile: DockerfileInput,
    /// The build arguments passed to every engine (`[image.args]` with
    /// `--build-arg` over them), each name to the `sha256:…` of its value
    /// (the value itself may be a secret, and the document is kept and
    /// uploaded).
    pub(super) build_args: BTreeMap<String, String>,
    /// The stage built; `null` for the last one.
    pub(super) target: Option<String>,
    /// The platforms asked for, in `mab.toml` order (after `--platform`).
    pub(super) platforms: Vec<Platform>,
    /// `[verify]` as written: a platform a resume reuses was checked (or
    /// not) under it, and is published unchecked again, so a resume under
    /// another `[verify]` is refused. `None` in a document of a mab
    /// without the binary check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) verify: Option<VerifyInput>,
    /// The labels every image gets (computed from the source, `[labels]`
    /// over them), as values: a label is public in the image anyway.
    /// Empty in a document of a mab without labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) labels: BTreeMap<String, String>,
}

/// `"verify"` of [`Inputs`]: `[verify] binaries` and `ignore` as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifyInput {
    /// `"error"`, `"warn"` or `"off"`.
    pub(super) binaries: String,
    pub(super) ignore: Vec<String>,
}

impl VerifyInput {
    pub(super) fn of(verify: &mab_config::Verify) -> VerifyInput {
        let binaries = mab_config::Binaries::VALUES
            .iter()
            .find(|(_, binaries)| *binaries == verify.binaries)
            .map_or("error", |(name, _)| name);
        VerifyInput {
            binaries: binaries.to_owned(),
            ignore: verify.ignore.clone(),
        }
    }
}

/// `"dockerfile"` of [`Inputs`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DockerfileInput {
    /// Relative to the context directory when it is inside it, else to
    /// the directory of `mab.toml` (else absolute), so that the same
    /// project in another directory gives the same path.
    pub(super) path: PathBuf,
    /// `sha256:…` of its bytes.
    pub(super) digest: String,
}

impl Inputs {
    /// [`Inputs::of`] on a thread for blocking work: reading every file the
    /// context sends may take long, and meanwhile the task that runs the
    /// build must still see Ctrl-C or SIGTERM (which drop the build; the
    /// thread's work is then abandoned with the runtime).
    pub(super) async fn in_background(
        project: &mab_config::Project,
        context: &mab_context::BuildContext,
        listing: &mab_context::ContextListing,
        leave_out: Vec<PathBuf>,
    ) -> Result<Inputs, Failure> {
        let (project, context, listing) = (project.clone(), context.clone(), listing.clone());
        tokio::task::spawn_blocking(move || Inputs::of(&project, &context, &listing, &leave_out))
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    /// The inputs of a build of `project` (after the flags) whose context
    /// `context` sends `listing`, without the paths `leave_out` (relative
    /// to the context: [`OwnFiles`]). Errors: a file that cannot be read
    /// (exit 2, naming it).
    pub(super) fn of(
        project: &mab_config::Project,
        context: &mab_context::BuildContext,
        listing: &mab_context::ContextListing,
        leave_out: &[PathBuf],
    ) -> Result<Inputs, Failure> {
        let read_failure =
            |error: mab_context::ContextError| crate::ops::prepare::context_failure(project, error);
        let dockerfile = context.dockerfile();
        let inside = dockerfile.strip_prefix(context.dir()).ok();
        let digest = mab_context::content_digest(context.dir(), listing, leave_out, inside)
            .map_err(read_failure)?;
        let bytes = std::fs::read(dockerfile).map_err(|source| {
            read_failure(mab_context::ContextError::Read {
                path: dockerfile.to_path_buf(),
                source,
            })
        })?;
        let manifest_dir = project.manifest_path.parent().unwrap_or(Path::new("/"));
        let path = dockerfile
            .strip_prefix(context.dir())
            .or_else(|_| dockerfile.strip_prefix(manifest_dir))
            .unwrap_or(dockerfile)
            .to_path_buf();
        Ok(Inputs {
            context: digest.digest,
            context_entries: digest.top_level,
            dockerfile: DockerfileInput {
                path,
                digest: mab_context::sha256_digest(&bytes),
            },
            build_args: build_arg_digests(&project.args),
            target: project.target.clone(),
            platforms: project.platforms.clone(),
            verify: Some(VerifyInput::of(&project.verify)),
            labels: project.labels.clone(),
        })
    }

    /// Takes the build arguments and labels of `project` again, once the
    /// source's (`MAB_VERSION`, `MAB_COMMIT`, the `org.opencontainers.image.*`
    /// labels) are added to them.
    pub(super) fn take_source(&mut self, project: &mab_config::Project) {
        self.build_args = build_arg_digests(&project.args);
        self.labels = project.labels.clone();
    }
}

/// Each build arg's name to the `sha256:…` of its value's bytes
/// ([`Inputs::build_args`]).
fn build_arg_digests(args: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    args.iter()
        .map(|(name, value)| (name.clone(), mab_context::sha256_digest(value.as_bytes())))
        .collect()
}

/// How far a platform got (`"state"` in the metadata file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum State {
    /// In the published list.
    Published,
    /// Pushed under its staging tag, verified, but no list was published
    /// (another platform failed, or the publish did).
    Pushed,
    /// Built and verified with `--no-push`.
    Built,
    /// Failed on its (last) runner.
    Failed,
    /// Stopped by `timeout` or `--deadline` while it ran.
    Cancelled,
    /// Never got a runner slot (the deadline came first), or was not
    /// planned because another platform could not be.
    NotStarted,
}

/// `"error"` of a platform: the cause and the failure's message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct ErrorMetadata {
    kind: ErrorKind,
    message: String,
}

/// One platform of the metadata file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct PlatformMetadata {
    pub(super) platform: Platform,
    /// The runner it was built on (last tried, when it failed); `null`
    /// when it was not planned.
    pub(super) runner: Option<String>,
    /// The image manifest's digest in the registry, once pushed.
    pub(super) digest: Option<String>,
    pub(super) emulated: bool,
    /// How long its job took on `runner`; `null` when it did not finish
    /// (or did not run in this build: `reused`).
    pub(super) seconds: Option<f64>,
    pub(super) state: State,
    error: Option<ErrorMetadata>,
    /// The runner that lost the platform first, and why ([`JobSpec::moved_from`]).
    moved_from: Option<String>,
    reason: Option<String>,
    /// `--resume`: taken by its digest from the earlier build, not built
    /// by this one (`runner`, `emulated` and `moved_from` are the earlier
    /// build's).
    #[serde(default)]
    pub(super) reused: bool,
    /// Its smoke run (`[test]`): `{"exit_code", "seconds"}` when its
    /// command exited (0 when it passed); absent without `[test]`, with
    /// `--no-test`, and when it timed out or could not start (`error`
    /// says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) test: Option<TestRun>,
    /// The binary check (`[verify] binaries`); absent when it is off or
    /// did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binaries: Option<BinariesMetadata>,
    /// The image whose build cache its build imported (`[cache] from =
    /// "registry"`, `--cache-from`), `REPO@sha256:…`; absent when it had
    /// none (no registry cache, or none found: a warning said why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) cache_from: Option<String>,
}

/// `"binaries"` of a platform: how many ELF files were checked, and those
/// that do not fit the platform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct BinariesMetadata {
    checked: u64,
    mismatches: Vec<mab_verify::Finding>,
}

impl BinariesMetadata {
    fn of(report: Option<&mab_verify::Report>) -> Option<BinariesMetadata> {
        report.map(|report| BinariesMetadata {
            checked: report.checked,
            mismatches: report.mismatches.clone(),
        })
    }
}

impl PlatformMetadata {
    fn of(job: &JobSpec, state: State) -> PlatformMetadata {
        let moved = job.moved_from.as_ref();
        PlatformMetadata {
            platform: job.platform.clone(),
            runner: Some(job.runner.clone()),
            digest: None,
            emulated: job.emulated,
            seconds: None,
            state,
            error: None,
            moved_from: moved.map(|moved| moved.runner.clone()),
            reason: moved.map(|moved| moved.reason.clone()),
            reused: false,
            test: None,
            binaries: None,
            cache_from: None,
        }
    }

    /// An entry of an earlier build's platform taken over by `--resume`:
    /// `pushed` until the list is `published`, without `seconds`, marked
    /// `reused`.
    pub(super) fn reused(earlier: &PlatformMetadata, published: bool) -> PlatformMetadata {
        PlatformMetadata {
            seconds: None,
            state: if published {
                State::Published
            } else {
                State::Pushed
            },
            error: None,
            reused: true,
            ..earlier.clone()
        }
    }

    /// A platform whose job ended well: `published` says whether its list
    /// went up; without a pushed image (`--no-push`) it is `built`.
    pub(super) fn built(built: &Built, published: bool) -> PlatformMetadata {
        let state = match (&built.child, published) {
            (None, _) => State::Built,
            (Some(_), true) => State::Published,
            (Some(_), false) => State::Pushed,
        };
        PlatformMetadata {
            digest: built.child.as_ref().map(|child| child.digest.clone()),
            seconds: Some(built.seconds),
            test: built.test.clone(),
            binaries: BinariesMetadata::of(built.binaries.as_ref()),
            ..PlatformMetadata::of(&built.job, state)
        }
    }

    /// A platform whose job failed or was stopped.
    pub(super) fn failed(failure: &JobFailure) -> PlatformMetadata {
        let state = match failure.stopped {
            None => State::Failed,
            Some(Stop::Running) => State::Cancelled,
            Some(Stop::BeforeSlot) => State::NotStarted,
        };
        PlatformMetadata {
            digest: failure.digest.clone(),
            binaries: BinariesMetadata::of(failure.binaries.as_ref()),
            error: Some(ErrorMetadata {
                kind: failure.kind,
                message: failure.message.clone(),
            }),
            test: failure.test.clone(),
            ..PlatformMetadata::of(&failure.job, state)
        }
    }

    /// A platform planned as `job` that never ran: the plan failed for
    /// another platform.
    pub(super) fn not_started(job: &JobSpec) -> PlatformMetadata {
        PlatformMetadata::of(job, State::NotStarted)
    }

    /// A platform that was not planned: the build failed before any job
    /// ran (at the registry's check, while connecting, at planning), with
    /// `error` (its cause, the failure's message) when the failure
    /// concerns this platform.
    pub(super) fn not_planned(
        platform: &Platform,
        error: Option<(ErrorKind, &str)>,
    ) -> PlatformMetadata {
        PlatformMetadata {
            runner: None,
            error: error.map(|(kind, message)| ErrorMetadata {
                kind,
                message: message.to_owned(),
            }),
            ..PlatformMetadata::of(&JobSpec::on(platform.clone(), ""), State::NotStarted)
        }
    }
}

/// What the metadata file of a build that fails before any job ran needs:
/// the file, the image, the platforms asked for and the tags.
pub(super) struct BeforeJobs<'a> {
    pub(super) file: &'a MetadataFile,
    pub(super) image: &'a str,
    /// The platforms to build, in the order of `mab.toml` (after
    /// `--platform`); with `--resume`, without those `reused`.
    pub(super) platforms: &'a [Platform],
    /// `--resume`: the earlier build's entries of the platforms reused,
    /// kept as they are (`pushed`) so that a later resume reuses them too.
    pub(super) reused: &'a [PlatformMetadata],
    pub(super) tags: &'a [String],
    pub(super) reporter: &'a dyn Reporter,
}

impl BeforeJobs<'_> {
    /// Writes the metadata file for `failure`, which stopped the build
    /// before any job ran, and returns it: every platform `not_started`
    /// without a runner, `"digest": null`, every platform `missing`; the
    /// platforms `on` (every one when `None`) carry `"error"` with `kind`
    /// and the failure's message (its first line, without `error: `).
    /// A file that cannot be written is a warning.
    pub(super) fn fail(
        &self,
        failure: Failure,
        kind: ErrorKind,
        on: Option<&[Platform]>,
    ) -> Failure {
        let message = failure.report.lines().next().unwrap_or_default();
        let message = message.strip_prefix("error: ").unwrap_or(message);
        let states: Vec<PlatformMetadata> = self
            .platforms
            .iter()
            .map(|platform| {
                let concerned = on.is_none_or(|on| on.contains(platform));
                PlatformMetadata::not_planned(platform, concerned.then_some((kind, message)))
            })
            .collect();
        self.write(&states);
        failure
    }

    /// Writes the file with `platforms` as they are (and the reused ones,
    /// in the order of `mab.toml`) and no list; a failure to write it is a
    /// warning, as the build's own failure is the one reported.
    pub(super) fn write(&self, platforms: &[PlatformMetadata]) {
        let platforms = self.file.in_order(platforms, self.reused);
        self.file
            .write_failed(self.image, self.tags, &platforms, self.reporter);
    }
}

/// `--metadata-file`, resolved against `-C` and created before anything
/// is built, so that an unwritable path fails first (exit 2), not after
/// publishing; and the project's state file for `--resume`, written with
/// the same document.
pub(super) struct MetadataFile {
    /// Where to write; `None` without `--metadata-file`.
    pub(super) path: Option<PathBuf>,
    /// The state file ([`state_path`]); `None` with `--no-push`, and when
    /// it would be inside the build context.
    pub(super) state: Option<PathBuf>,
    /// The absolute path of `mab.toml`.
    pub(super) project: PathBuf,
    pub(super) inputs: Inputs,
    /// The platforms in the order of `mab.toml` (after `--platform`).
    pub(super) order: Vec<Platform>,
    /// GitHub Actions' observer, given each document written (for
    /// `$GITHUB_OUTPUT`); `None` outside GitHub Actions.
    pub(super) github: Option<std::sync::Arc<crate::github::Actions>>,
    /// Each platform's imported cache source (`"cache_from"`): set by its
    /// job once its build ran and BuildKit imported the source without an
    /// error ([`mab_engine::BuildEvent::CacheImportFailed`]); a platform
    /// that never started, or whose import failed, has none.
    pub(super) cache_imported: std::sync::Mutex<BTreeMap<Platform, String>>,
}

/// Where the state of the last build of the project whose `mab.toml` is
/// `manifest` is kept: `<state dir>/builds/<key>.json`, the key the first
/// 16 hex digits of the sha256 of the canonical path of `mab.toml`
/// ([`Environment::state_dir`]: `$XDG_STATE_HOME/mab`, else
/// `~/.local/state/mab`).
pub(super) fn state_path(environment: &Environment, manifest: &Path) -> PathBuf {
    let canonical = std::fs::canonicalize(manifest).unwrap_or_else(|_| manifest.to_path_buf());
    let digest = mab_context::sha256_digest(canonical.as_os_str().as_encoded_bytes());
    let key = &digest["sha256:".len().."sha256:".len() + 16];
    environment
        .state_dir()
        .join("builds")
        .join(format!("{key}.json"))
}

/// Whether the state file `state` is inside the build context `context`
/// (where it would be sent to every runner and change the context), both
/// compared canonicalized ([`canonical`]: symlinks and `..` resolved, for
/// the part that exists), so that neither a symlinked home nor a `..` in
/// a path hides it.
pub(super) fn state_inside_context(state: &Path, context: &Path) -> bool {
    canonical(state).starts_with(canonical(context))
}

/// A path given on `mab build`'s command line (`--metadata-file`,
/// `--resume FILE`), resolved against `-C` as every such path is.
pub(super) fn given_path(args: &BuildArgs, environment: &Environment, path: &Path) -> PathBuf {
    environment
        .start_dir(args.project.directory.as_deref())
        .join(path)
}

/// `path` with its nearest existing ancestor canonicalized (symlinks
/// resolved) and the rest, which does not exist yet, appended as it is;
/// `path` itself when not even `/` can be read.
pub(super) fn canonical(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            return rest
                .iter()
                .rev()
                .fold(canonical, |path, part| path.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// The files a build names on its command line that are inside its
/// context directory, relative to it, both sides canonicalized
/// ([`canonical`]): they are not inputs ([`Inputs::of`] leaves them out),
/// as the build writes the metadata file itself and reads the other.
#[derive(Debug, Default)]
pub(super) struct OwnFiles {
    /// `--metadata-file`, when it is inside the context.
    pub(super) metadata: Option<PathBuf>,
    /// `--resume FILE`, when it is inside the context.
    pub(super) resume: Option<PathBuf>,
}

impl OwnFiles {
    /// Those of `args` inside the context directory `context`.
    pub(super) fn of(args: &BuildArgs, environment: &Environment, context: &Path) -> OwnFiles {
        let context = canonical(context);
        let inside = |given: Option<&Path>| {
            let path = canonical(&given_path(args, environment, given?));
            Some(path.strip_prefix(&context).ok()?.to_path_buf())
        };
        OwnFiles {
            metadata: inside(args.metadata_file.as_deref()),
            resume: inside(args.resume.as_ref().and_then(Option::as_deref)),
        }
    }

    /// Both, as [`mab_context::content_digest`] leaves them out.
    pub(super) fn paths(&self) -> Vec<PathBuf> {
        self.metadata.iter().chain(&self.resume).cloned().collect()
    }
}

impl MetadataFile {
    /// Checks that the `--metadata-file`, if one is given, can be written,
    /// and empties it (creating it), so that a build killed before it ends
    /// (SIGKILL) never leaves an older build's document there; when it is
    /// the `--resume FILE` this build reads (the same file, canonically),
    /// it is only checked ([`check_writable`]) and left as it is. A state
    /// file that would be inside the build context (where it would be sent
    /// and change the context) is not written, with a warning. Errors: a
    /// path that cannot be written (exit 2).
    pub(super) fn create(
        args: &BuildArgs,
        environment: &Environment,
        project: &mab_config::Project,
        inputs: Inputs,
        reporter: &dyn Reporter,
    ) -> Result<MetadataFile, Failure> {
        let state = state_path(environment, &project.manifest_path);
        // A `--no-push` build can never be resumed: it keeps no state (and
        // leaves the last pushing build's in place).
        let state = if args.no_push {
            None
        } else if state_inside_context(&state, &project.context) {
            reporter.report(Event::Warning {
                message: format!(
                    "the state of this build is not kept: {} is inside the build context {} (set XDG_STATE_HOME elsewhere); `mab build --resume FILE` still resumes from a --metadata-file",
                    state.display(),
                    project.context.display()
                ),
            });
            None
        } else {
            Some(state)
        };
        let mut file = MetadataFile {
            path: None,
            state,
            project: project.manifest_path.clone(),
            inputs,
            order: project.platforms.clone(),
            github: None,
            cache_imported: Default::default(),
        };
        let Some(given) = &args.metadata_file else {
            return Ok(file);
        };
        let path = given_path(args, environment, given);
        let resumed_from = args
            .resume
            .as_ref()
            .and_then(Option::as_deref)
            .map(|file| canonical(&given_path(args, environment, file)));
        let checked = if resumed_from == Some(canonical(&path)) {
            check_writable(&path)
        } else {
            check_writable(&path).and_then(|()| std::fs::File::create(&path).map(drop))
        };
        checked.map_err(|error| {
            Failure::usage(
                format!("cannot write the metadata file {}: {error}", path.display()),
                Some("point --metadata-file at a writable path"),
            )
        })?;
        file.path = Some(path);
        Ok(file)
    }

    /// `platforms` with `reused` among them, in the order of `mab.toml`;
    /// a platform not in that order (none is) goes last. Those of
    /// `platforms` get their imported cache source ([`MetadataFile::cache_imported`]);
    /// the reused keep the earlier build's.
    pub(super) fn in_order(
        &self,
        platforms: &[PlatformMetadata],
        reused: &[PlatformMetadata],
    ) -> Vec<PlatformMetadata> {
        let imported = self
            .cache_imported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<PlatformMetadata> = platforms
            .iter()
            .map(|entry| PlatformMetadata {
                cache_from: imported.get(&entry.platform).cloned(),
                ..entry.clone()
            })
            .chain(reused.iter().cloned())
            .collect();
        if !reused.is_empty() {
            self.sort_in_order(&mut all, |entry| &entry.platform);
        }
        all
    }

    /// Sorts `items` by the position of their `platform` in the order of
    /// `mab.toml` (stable; a platform not in it goes last).
    pub(super) fn sort_in_order<T>(&self, items: &mut [T], platform: impl Fn(&T) -> &Platform) {
        items.sort_by_key(|item| {
            self.order
                .iter()
                .position(|listed| listed == platform(item))
                .unwrap_or(usize::MAX)
        });
    }

    /// Writes the file of a build that failed: no list, `platforms` as
    /// they are. A failure to write it is a warning through `reporter`, as
    /// the build's own failure is the one reported.
    pub(super) fn write_failed(
        &self,
        image: &str,
        tags: &[String],
        platforms: &[PlatformMetadata],
        reporter: &dyn Reporter,
    ) {
        if let Err(failure) = self.write(image, None, tags, platforms, None, reporter) {
            reporter.report(Event::Warning {
                message: failure.report.trim_start_matches("error: ").to_owned(),
            });
        }
    }

    /// Writes the file: the list (`digest`, media type) when one was
    /// published, with the `read_back_error` of a list not read back as
    /// published, and each platform in job order; `"missing"` holds those
    /// not `published` (not `built`, with `--no-push`). The same document
    /// goes to the state file (atomically: a temporary file renamed over
    /// it); a failure there is a warning through `reporter`, as only a
    /// later `--resume` needs it.
    pub(super) fn write(
        &self,
        image: &str,
        list: Option<ListWritten<'_>>,
        tags: &[String],
        platforms: &[PlatformMetadata],
        read_back_error: Option<&str>,
        reporter: &dyn Reporter,
    ) -> Result<(), Failure> {
        let metadata = Metadata {
            image: image.to_owned(),
            digest: list.map(|list| list.digest.to_owned()),
            media_type: list.map(|list| list.media_type.to_owned()),
            read_back_error: read_back_error.map(str::to_owned),
            tags: tags.to_vec(),
            containerimage_digest: list.map(|list| list.digest.to_owned()),
            containerimage_descriptor: list.map(|list| Descriptor {
                media_type: list.media_type.to_owned(),
                digest: list.digest.to_owned(),
                size: list.size,
            }),
            image_name: list.map(|_| {
                let names: Vec<String> = tags.iter().map(|tag| format!("{image}:{tag}")).collect();
                names.join(",")
            }),
            missing: platforms
                .iter()
                .filter(|platform| !matches!(platform.state, State::Published | State::Built))
                .map(|platform| platform.platform.clone())
                .collect(),
            platforms: platforms.to_vec(),
            project: self.project.clone(),
            inputs: self.inputs.clone(),
        };
        let json =
            serde_json::to_string_pretty(&metadata).expect("metadata always serialises") + "\n";
        if let Some(github) = &self.github {
            github.metadata_written(&json);
        }
        if let Some(state) = &self.state {
            if let Err(error) = write_atomically(state, &json) {
                reporter.report(Event::Warning {
                    message: format!(
                        "could not write the state of this build to {} (a later `mab build --resume` needs it): {error}; hint: make {} writable (or set XDG_STATE_HOME to a writable directory), or pass --metadata-file and resume with `--resume FILE`",
                        state.display(),
                        state.parent().unwrap_or(state).display()
                    ),
                });
            }
        }
        let Some(path) = &self.path else {
            return Ok(());
        };
        write_atomically(path, &json).map_err(|error| {
            Failure::runtime(
                format!(
                    "could not write the metadata file {}: {error}",
                    path.display()
                ),
                None,
            )
        })
    }
}

/// Writes `text` to `path` through a temporary file in the same directory
/// (created with its parents), flushed to disk and renamed over it, so
/// that a reader never sees half a document, nor an empty one after a
/// crash. The metadata file and the state file are both written so.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let directory = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory)?;
    let mut file = tempfile::NamedTempFile::new_in(directory)?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

/// Whether [`write_atomically`] can write `path`, without touching it: a
/// temporary file can be created in its directory (then removed), and
/// `path` is not a directory. Errors: the directory's (missing, not
/// writable), or `path` being a directory.
fn check_writable(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "it is a directory",
        ));
    }
    let directory = path.parent().unwrap_or(Path::new("."));
    tempfile::NamedTempFile::new_in(directory)?.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state file is keyed by the project's canonical `mab.toml` path:
    /// the same project (also through a symlink) gives the same file,
    /// another project another.
    #[test]
    fn the_state_file_is_keyed_by_the_canonical_path_of_mab_toml() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path().canonicalize().unwrap();
        for project in ["one", "two"] {
            std::fs::create_dir(root.join(project)).unwrap();
            std::fs::write(root.join(project).join("mab.toml"), "").unwrap();
        }
        std::os::unix::fs::symlink(root.join("one"), root.join("link")).unwrap();
        let environment = Environment {
            xdg_state_home: Some("/state".into()),
            ..Environment::default()
        };
        let state = |project: &str| state_path(&environment, &root.join(project).join("mab.toml"));
        let one = state("one");
        let name = one.file_name().unwrap().to_str().unwrap();
        assert_eq!(one.parent().unwrap(), Path::new("/state/mab/builds"));
        assert!(
            name.len() == "0123456789abcdef.json".len()
                && name.ends_with(".json")
                && name[..16].chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
        assert_eq!(state("link"), one);
        assert_ne!(state("two"), one);
    }

    /// `"binaries"` holds every mismatch, past the 20 the terminal lists
    /// (docs/verify.md), and not the compatibility target's warnings.
    #[test]
    fn the_binaries_metadata_holds_every_mismatch() {
        let finding = |index: usize| mab_verify::Finding {
            path: format!("/bin/t{index:02}"),
            found: "ELF 64-bit LSB x86-64 executable".to_owned(),
            expected: "64-bit LSB AArch64".to_owned(),
        };
        let report = mab_verify::Report {
            checked: 30,
            mismatches: (0..26).map(finding).collect(),
            warnings: vec![finding(99)],
            note: None,
        };
        let metadata = BinariesMetadata::of(Some(&report)).unwrap();
        assert_eq!(metadata.checked, 30);
        assert_eq!(metadata.mismatches, report.mismatches);
        assert_eq!(BinariesMetadata::of(None), None);
    }

    /// The check of the metadata file's path leaves a file that is there
    /// as it is (it may be the `--resume FILE` being read), and creates
    /// none; a missing directory, or a directory at the path, is refused.
    #[test]
    fn checking_the_metadata_file_touches_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let existing = directory.path().join("build.json");
        std::fs::write(&existing, "{\"kept\": true}").unwrap();
        check_writable(&existing).unwrap();
        assert_eq!(
            std::fs::read_to_string(&existing).unwrap(),
            "{\"kept\": true}"
        );
        let new = directory.path().join("new.json");
        check_writable(&new).unwrap();
        assert!(!new.exists());
        let names: Vec<_> = std::fs::read_dir(directory.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        assert!(check_writable(&directory.path().join("missing/build.json")).is_err());
        assert!(check_writable(directory.path()).is_err());
    }

    /// Build args are kept as digests of their values, never the values.
    #[test]
    fn build_args_are_kept_as_digests() {
        let args: BTreeMap<String, String> = [
            ("NPM_TOKEN".to_owned(), "s3cret".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]
        .into();
        let digests = build_arg_digests(&args);
        assert_eq!(
            digests["EMPTY"],
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(digests["NPM_TOKEN"], mab_context::sha256_digest(b"s3cret"));
        assert!(!serde_json::to_string(&digests).unwrap().contains("s3cret"));
    }

    /// The state directory inside the context is found through a symlink
    /// or a `..`, also when it does not exist yet.
    #[test]
    fn a_state_directory_inside_the_context_is_found_canonically() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("project")).unwrap();
        std::os::unix::fs::symlink(root.join("project"), root.join("link")).unwrap();
        let state = root.join("link/state/mab/builds/0123456789abcdef.json");
        assert!(state_inside_context(&state, &root.join("project")));
        assert!(state_inside_context(
            &root.join("project/state/x.json"),
            &root.join("project/../link")
        ));
        assert!(!state_inside_context(
            &root.join("state/x.json"),
            &root.join("project")
        ));
        // `project-2` is not inside `project`.
        assert!(!state_inside_context(
            &root.join("project-2/x.json"),
            &root.join("project")
        ));
    }

    /// The document reads back as it was written: one type for both.
    #[test]
    fn the_document_reads_back() {
        let directory = tempfile::tempdir().unwrap();
        let file = MetadataFile {
            path: Some(directory.path().join("metadata.json")),
            state: Some(directory.path().join("state/builds/key.json")),
            project: "/project/mab.toml".into(),
            inputs: Inputs {
                context: "sha256:c".to_owned(),
                context_entries: BTreeMap::new(),
                dockerfile: DockerfileInput {
                    path: "Dockerfile".into(),
                    digest: "sha256:d".to_owned(),
                },
                build_args: BTreeMap::new(),
                target: Some("release".to_owned()),
                platforms: vec!["linux/arm64".parse().unwrap()],
                verify: None,
                labels: BTreeMap::new(),
            },
            order: vec!["linux/arm64".parse().unwrap()],
            github: None,
            cache_imported: Default::default(),
        };
        let job = JobSpec::on("linux/arm64".parse().unwrap(), "pi");
        let entry = PlatformMetadata::not_started(&job);
        file.write(
            "127.0.0.1:5000/app",
            None,
            &[],
            std::slice::from_ref(&entry),
            None,
            &mab_events::Silent,
        )
        .unwrap();
        for path in [file.path.as_ref().unwrap(), file.state.as_ref().unwrap()] {
            let read: Metadata =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            assert_eq!(read.inputs, file.inputs);
            assert_eq!(read.platforms, std::slice::from_ref(&entry));
            assert_eq!(read.project, file.project);
        }
    }
}
