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
    DockerfileMissing { path: PathBuf, context: PathBuf },

    #[error("the Dockerfile {} is not a regular file", path.display())]
    DockerfileNotFile { path: PathBuf },

    #[error(
        "the Dockerfile {} is outside the build context {}",
        dockerfile.display(),
        context.display()
    )]
    DockerfileOutsideContext {
        dockerfile: PathBuf,
        context: PathBuf,
    },

    #[error("{}:{line}: invalid pattern `{pattern}`: {reason}", file.display())]
    InvalidPattern {
        file: PathBuf,
        line: usize,
        pattern: String,
        reason: String,
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
                "set `context` in mab.toml to an existing directory (relative to the directory holding mab.toml)"
                    .to_string(),
            ),
            ContextError::DockerfileMissing { context, .. } => Some(format!(
                "create the Dockerfile, or set `dockerfile` in mab.toml to its path relative to the context {}",
                context.display()
            )),
            ContextError::DockerfileNotFile { .. } => Some(
                "set `dockerfile` in mab.toml to a file, relative to the context".to_string(),
            ),
            ContextError::DockerfileOutsideContext { .. } => Some(
                "move the Dockerfile into the context directory, or set `context` in mab.toml to a directory that holds it"
                    .to_string(),
            ),
            ContextError::InvalidPattern { line, .. } => Some(format!(
                "fix line {line} of .dockerignore: patterns use `*`, `?`, `[...]`, `**` and a leading `!`; \
                 escape a literal `*`, `?`, `[` or `\\` with `\\`"
            )),
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
            | ContextError::Read { path, .. } => path,
            ContextError::DockerfileOutsideContext { dockerfile, .. } => dockerfile,
            ContextError::InvalidPattern { file, .. } => file,
        }
    }
}
