//! The build context: which files a build sends, decided as `docker build`
//! (BuildKit and fsutil) decides. (mab-engine serves them to the engine
//! through the BuildKit session, file by file as the engine asks.)
//!
//! - [`BuildContext`] finds the Dockerfile (`Dockerfile`, else `dockerfile`;
//!   inside the context or not) and the ignore file that applies
//!   (`<Dockerfile>.dockerignore` before `.dockerignore`), and lists the
//!   context as the engine receives it.
//! - [`DockerIgnore`] parses an ignore file and decides paths the way moby's
//!   `patternmatcher` does (which is not how gitignore does it: `*.log` only
//!   matches at the root, `build/` also excludes a file named `build`, `!`
//!   re-includes below an excluded directory, the last matching line wins).
//! - [`stage_names`] reads the build stages a Dockerfile names, to check
//!   `target` before building.
//! - [`walk`] lists a directory as fsutil's sender does, with exclude and
//!   include patterns; [`follow_links`] follows the symlinks of `followpaths`.
//! - [`content_digest`] digests what a listing sends (paths, kinds, the
//!   executable bit, link targets, contents), to tell two builds' files apart.
//!
//! Known differences from Docker are listed in `docs/docker-build.md`: a
//! `\` before a letter is that letter (Go's regexp would read `\d` as a digit
//! class), `*` and `?` inside `[...]` are plain characters, and a name that
//! is not UTF-8 is refused instead of sent.

mod build_context;
mod digest;
mod error;
mod follow;
mod ignore;
mod pattern;
mod stages;
mod walk;

pub use build_context::{BuildContext, DEFAULT_DOCKERFILE};
pub use digest::{
    content_digest, is_sha256_digest, sha256_digest, ContentDigest, Sha256Stream, TOP_LEVEL_LIMIT,
};
pub use error::ContextError;
pub use follow::{follow_links, resolve_links};
pub use ignore::{DockerIgnore, DOCKERIGNORE};
pub use stages::{declared_args, stage_names, step_line, DeclaredArg};
pub use walk::{walk, walk_with_metadata, ContextEntry, ContextListing, EntryKind, Selection};
