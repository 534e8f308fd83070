//! Placeholder of the context copy kept on a Podman runner's host (the
//! real module replaces it).

use mab_context::BuildContext;

use crate::HostShell;

/// Where a project's context copy lives on a host, and what a sync moved.
#[derive(Clone, Debug)]
pub struct ContextCopy {
    pub root: String,
    pub lock: String,
    pub sent_bytes: u64,
    pub files: u64,
    pub changed: u64,
    pub removed: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CopyError(String);

impl CopyError {
    pub fn hint(&self) -> String {
        String::new()
    }
}

pub fn copy_key(_context: &BuildContext) -> String {
    String::new()
}

pub async fn sync(
    _host: &dyn HostShell,
    _context: &BuildContext,
    _key: &str,
) -> Result<ContextCopy, CopyError> {
    Err(CopyError("not yet".to_owned()))
}
