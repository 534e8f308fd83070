//! The errors of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading a build context.
///
/// The message is one sentence naming the path; [`ContextError::hint`] gives the
/// suggestion to print on a `hint:` line below it.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("the build context directory {} does not exist", path.display())]
    ContextMissing { path: PathBuf },

    #[error("the build context {} is not a directory", path.display())]
    ContextNotDirectory { path: PathBuf },

    #[error("the Dockerfile {} does not exist", path.display())]
    DockerfileMissing {
        path: PathBuf,
        context: PathBuf,
        /// A file of the same name in lowercase beside it (`dockerfile`
        /// for a named `Dockerfile`), which docker's frontend would read.
        lowercase: Option<PathBuf>,
    },

    /// A symlinked Dockerfile whose target does not exist at all.
    #[error(
        "the Dockerfile {} is a symlink to {}, which does not exist",
        dockerfile.display(),
        target.display()
    )]
    DockerfileLinkDangling {
        dockerfile: PathBuf,
        target: PathBuf,
    },

    #[error("the Dockerfile {} is not a regular file", path.display())]
    DockerfileNotFile { path: PathBuf },

    /// A symlinked Dockerfile whose target the engine cannot read: fsutil
    /// follows it only inside the directory the Dockerfile is sent from.
    #[error(
        "the Dockerfile {} is a symlink to {}, which the engine reads as {}, where there is no file",
        dockerfile.display(),
        target.display(),
        read_as.display()
    )]
    DockerfileLinkUnresolved {
        dockerfile: PathBuf,
        target: PathBuf,
        /// Where the link leads when followed inside `dir`, as fsutil does.
        read_as: PathBuf,
        /// The directory the Dockerfile is sent from.
        dir: PathBuf,
    },

    /// A name that would be sent is not UTF-8: BuildKit's file transfer
    /// carries names as protobuf strings, which must be UTF-8.
    #[error("the file name {} is not valid UTF-8", escaped(path))]
    NameNotUtf8 { path: PathBuf },

    /// A symlink that would be sent points at a name that is not UTF-8.
    #[error(
        "the symlink {} points at {}, a name that is not valid UTF-8",
        escaped(path),
        escaped(target)
    )]
    LinkTargetNotUtf8 { path: PathBuf, target: PathBuf },

    #[error("{}:{line}: invalid pattern `{pattern}`: {reason}", file.display())]
    InvalidPattern {
        file: PathBuf,
        line: usize,
        pattern: String,
        reason: String,
    },

    /// The stage to build is not one the Dockerfile names (BuildKit would
    /// fail with "target stage … could not be found").
    #[error(
        "the Dockerfile {} has no stage `{target}`{}",
        dockerfile.display(),
        describe_stages(stages)
    )]
    TargetMissing {
        dockerfile: PathBuf,
        target: String,
        /// The stage names it has, lowercased, in order.
        stages: Vec<String>,
    },

    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ContextError {
    /// A suggestion for the user, to be printed after `hint: `.
    pub fn hint(&self) -> Option<String> {
        match self {
            ContextError::ContextMissing { .. } | ContextError::ContextNotDirectory { .. } => Some(
                "create it, or set `context` in [image] to a directory; a relative path is read from the directory holding mab.toml"
                    .to_string(),
            ),
            ContextError::DockerfileMissing {
                lowercase: Some(lowercase),
                ..
            } => Some(format!(
                "there is {}: name it in `dockerfile` in [image] (a name given is taken as written; \
                 only without one does mab fall back to `dockerfile`)",
                lowercase.display()
            )),
            ContextError::DockerfileMissing { context, .. } => Some(format!(
                "write one, or set `dockerfile` in [image] to its path, relative to the context {} (it may lie outside it)",
                context.display()
            )),
            ContextError::DockerfileLinkDangling { .. } => Some(
                "create the file the link points at, or fix the link, or set `dockerfile` in [image] to the Dockerfile itself"
                    .to_string(),
            ),
            ContextError::DockerfileNotFile { .. } => Some(
                "set `dockerfile` in mab.toml to a file, relative to the context".to_string(),
            ),
            ContextError::DockerfileLinkUnresolved { dir, .. } => Some(format!(
                "the engine follows the link only inside {dir} (an absolute target is read from inside it too, as fsutil does): \
                 set `dockerfile` in [image] to the file the link points at, or make the link relative, to a file inside {dir}",
                dir = dir.display()
            )),
            ContextError::NameNotUtf8 { .. } | ContextError::LinkTargetNotUtf8 { .. } => Some(
                "rename it, or leave it out of the build with a line in the ignore file \
                 (BuildKit's file transfer carries names as UTF-8 strings, so mab cannot send it unchanged)"
                    .to_string(),
            ),
            ContextError::InvalidPattern { file, line, .. } => Some(format!(
                "fix line {line} of {}: patterns use `*`, `?`, `[...]`, `**` and a leading `!`; \
                 escape a literal `*`, `?`, `[` or `\\` with `\\`",
                file.file_name().map_or_else(|| file.display().to_string(), |name| name.to_string_lossy().into_owned())
            )),
            ContextError::TargetMissing { stages, .. } if stages.is_empty() => Some(
                "name a stage in the Dockerfile (`FROM IMAGE AS NAME`), or leave the target out to build the last stage"
                    .to_string(),
            ),
            ContextError::TargetMissing { .. } => Some(
                "give one of its stage names (a stage is chosen by name, not by number), or leave the target out to build the last stage"
                    .to_string(),
            ),
            ContextError::Read { .. } => {
                Some("check that the path exists and that mab may read it".to_string())
            }
        }
    }

    /// The path this error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            ContextError::ContextMissing { path }
            | ContextError::ContextNotDirectory { path }
            | ContextError::DockerfileMissing { path, .. }
            | ContextError::DockerfileNotFile { path }
            | ContextError::NameNotUtf8 { path }
            | ContextError::LinkTargetNotUtf8 { path, .. }
            | ContextError::Read { path, .. } => path,
            ContextError::DockerfileLinkUnresolved { dockerfile, .. }
            | ContextError::DockerfileLinkDangling { dockerfile, .. }
            | ContextError::TargetMissing { dockerfile, .. } => dockerfile,
            ContextError::InvalidPattern { file, .. } => file,
        }
    }
}

/// `; its stages are a, b` or `; it names no stage`.
fn describe_stages(stages: &[String]) -> String {
    if stages.is_empty() {
        "; it names no stage (`FROM IMAGE AS NAME`)".to_owned()
    } else {
        format!("; its stages are {}", stages.join(", "))
    }
}

/// A path as text, each byte that is not part of valid UTF-8 written as
/// `\xNN`, so that a name that is not UTF-8 can be read and told apart in a
/// message.
fn escaped(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut text = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}
