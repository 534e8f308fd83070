//! Whether the registry is being changed right now: set while the manifest
//! list and its tags are pushed, so that an interrupt then waits for the
//! publish to finish rather than leave some tags moved and others not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared between a build and the interrupt handler (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct Publishing(Arc<AtomicBool>);

impl Publishing {
    /// Whether a publish is under way.
    pub fn in_progress(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Marks a publish as under way until the returned guard is dropped.
    pub fn start(&self) -> PublishingGuard<'_> {
        self.0.store(true, Ordering::SeqCst);
        PublishingGuard(self)
    }
}

/// Ends the publish it was returned for when dropped.
pub struct PublishingGuard<'a>(&'a Publishing);

impl Drop for PublishingGuard<'_> {
    fn drop(&mut self) {
        (self.0).0.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_lasts_as_long_as_its_guard() {
        let publishing = Publishing::default();
        let seen_by_the_handler = publishing.clone();
        assert!(!seen_by_the_handler.in_progress());
        {
            let _guard = publishing.start();
            assert!(seen_by_the_handler.in_progress());
        }
        assert!(!seen_by_the_handler.in_progress());
    }
}
