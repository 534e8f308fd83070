//! What the interrupt handler and a running build share: whether the
//! registry is being changed right now (the manifest list and its tags
//! being pushed, so that an interrupt then waits for the publish to finish
//! rather than leave some tags moved and others not), and whether a
//! signal asked the build to stop (so that it ends through its failure
//! path, writing the metadata a `--resume` reads).

use std::sync::Arc;

use tokio::sync::watch;

use crate::failure::FailureKind;

/// The state of [`BuildControl`]: a publish under way, a stop asked for.
/// The two exclude each other: a stop is refused during a publish, a
/// publish does not start after a stop.
#[derive(Clone, Copy, Debug, Default)]
struct State {
    publishing: bool,
    /// The list was pushed under every tag ([`PublishingGuard::published`]).
    published: bool,
    stop: Option<FailureKind>,
}

/// Shared between a build and the interrupt handler (cheap to clone).
#[derive(Clone, Debug)]
pub struct BuildControl(Arc<watch::Sender<State>>);

impl Default for BuildControl {
    fn default() -> BuildControl {
        BuildControl(Arc::new(watch::Sender::new(State::default())))
    }
}

impl BuildControl {
    /// Whether a publish is under way.
    pub fn publishing(&self) -> bool {
        self.0.borrow().publishing
    }

    /// Whether the list was pushed under every tag: a stop from then on
    /// ends a build whose list is out (its read back or the removal of
    /// its staging tags unfinished).
    pub fn published(&self) -> bool {
        self.0.borrow().published
    }

    /// Marks a publish as under way until the returned guard is dropped;
    /// `Err` with the signal's kind when a stop was asked for already (the
    /// build must then publish nothing).
    pub fn start_publish(&self) -> Result<PublishingGuard<'_>, FailureKind> {
        let mut refused = None;
        self.0.send_if_modified(|state| match state.stop {
            Some(kind) => {
                refused = Some(kind);
                false
            }
            None => {
                state.publishing = true;
                true
            }
        });
        match refused {
            Some(kind) => Err(kind),
            None => Ok(PublishingGuard(self)),
        }
    }

    /// Asks the build to stop because of `kind` (Ctrl-C, SIGTERM); the
    /// first request's kind is kept. Returns `false`, asking nothing, when
    /// a publish is under way.
    pub fn request_stop(&self, kind: FailureKind) -> bool {
        let mut accepted = false;
        self.0.send_if_modified(|state| {
            if state.publishing {
                return false;
            }
            accepted = true;
            let first = state.stop.is_none();
            state.stop.get_or_insert(kind);
            first
        });
        accepted
    }

    /// The kind of the stop asked for, if one was.
    pub fn stop_requested(&self) -> Option<FailureKind> {
        self.0.borrow().stop
    }

    /// Resolves, with its kind, once a stop is asked for (at once if one
    /// was already).
    pub async fn stopped(&self) -> FailureKind {
        let mut receiver = self.0.subscribe();
        let state = receiver
            .wait_for(|state| state.stop.is_some())
            .await
            .expect("the sender lives as long as self");
        state.stop.expect("waited for a stop")
    }
}

/// Ends the publish it was returned for when dropped.
pub struct PublishingGuard<'a>(&'a BuildControl);

impl PublishingGuard<'_> {
    /// Ends the publish, the list pushed under every tag
    /// ([`BuildControl::published`]).
    pub fn published(self) {
        self.0 .0.send_modify(|state| state.published = true);
    }
}

impl Drop for PublishingGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.send_modify(|state| state.publishing = false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_lasts_as_long_as_its_guard() {
        let control = BuildControl::default();
        let seen_by_the_handler = control.clone();
        assert!(!seen_by_the_handler.publishing());
        {
            let _guard = control.start_publish().unwrap();
            assert!(seen_by_the_handler.publishing());
        }
        assert!(!seen_by_the_handler.publishing());
        assert!(!seen_by_the_handler.published());
        control.start_publish().unwrap().published();
        assert!(!seen_by_the_handler.publishing());
        assert!(seen_by_the_handler.published());
        assert!(seen_by_the_handler.request_stop(FailureKind::Interrupted));
    }

    /// A stop is refused during a publish; once asked for, it keeps its
    /// first kind and no publish starts.
    #[tokio::test]
    async fn a_stop_and_a_publish_exclude_each_other() {
        let control = BuildControl::default();
        let handler = control.clone();
        {
            let _guard = control.start_publish().unwrap();
            assert!(!handler.request_stop(FailureKind::Interrupted));
            assert_eq!(control.stop_requested(), None);
        }
        assert!(handler.request_stop(FailureKind::Terminated));
        assert!(handler.request_stop(FailureKind::Interrupted));
        assert_eq!(control.stop_requested(), Some(FailureKind::Terminated));
        assert_eq!(control.stopped().await, FailureKind::Terminated);
        assert!(matches!(
            control.start_publish(),
            Err(FailureKind::Terminated)
        ));
        assert!(!control.publishing());
    }
}
