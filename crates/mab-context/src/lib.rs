//! The build context: the context directory filtered by `.dockerignore` with
//! Docker's own matching rules. (mab-engine serves it to the engine through
//! the BuildKit session, file by file as the engine asks.)
//!
//! - [`DockerIgnore`] parses `.dockerignore` and decides paths the way moby's
//!   `patternmatcher` does (which is not how gitignore does it: `*.log` only
//!   matches at the root, `build/` also excludes a file named `build`, `!`
//!   re-includes below an excluded directory, the last matching line wins).
//! - [`context_entries`] / [`scan_context`] list what is sent, always including
//!   the Dockerfile and `.dockerignore`, with totals for progress output.
//!
//! Known differences from Docker: a `\` before a letter is that letter (Go's
//! regexp would read `\d` as a digit class), `*` and `?` inside `[...]` are
//! plain characters, hard links are sent as separate copies, and sockets,
//! FIFOs and devices are left out.

mod error;
mod ignore;
mod pattern;
mod walk;

pub use error::ContextError;
pub use ignore::{DockerIgnore, DOCKERIGNORE};
pub use walk::{
    context_entries, dockerfile_in_context, scan_context, ContextEntry, ContextListing, EntryKind,
};
