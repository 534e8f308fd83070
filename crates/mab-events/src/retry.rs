//! The one retry policy of mab (docs/publishing.md, "When the registry
//! fails"): registry requests, SSH handshakes and the engine requests that
//! do not stream are tried [`TRIES`] times with bounded exponential
//! backoff and jitter, and each retry is told as an [`Event::Retry`]. Which
//! failures are worth another try is each crate's own rule.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::ExponentialBuilder;

use crate::{Event, Reporter, RetryTarget};

/// How many times a request is tried, the first try included.
pub const TRIES: u32 = 3;
/// The delay before the first retry; each next one doubles, with jitter.
pub const MIN_DELAY: Duration = Duration::from_millis(200);
/// The longest delay between two tries the backoff gives.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// The backoff between tries: exponential from [`MIN_DELAY`] to
/// [`MAX_DELAY`] with full jitter (backon's), at most `TRIES - 1` retries.
pub fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_max_times(TRIES as usize - 1)
        .with_jitter()
}

/// Whether an I/O error of kind `kind` is of a connection the other side
/// refused or dropped, which another try may get past: refused, reset,
/// aborted, or closed early (`UnexpectedEof`, `BrokenPipe`). Every other
/// kind is for good as far as SSH and the engine go: `NotConnected` (what
/// carries the streams has ended), `PermissionDenied`, `NotFound`,
/// `Unsupported`, `TimedOut` (each try would wait as long again), `Other`.
pub fn dropped(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as Io;
    matches!(
        kind,
        Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::UnexpectedEof
            | Io::BrokenPipe
    )
}

/// The event that tells of a retry: try `attempt` (counted from 1) of
/// `request` (`PUT /v2/app/manifests/latest`, `GET /_ping`,
/// `SSH handshake`) to `target` failed with `error`, and the next try comes
/// after `delay` (reported in whole milliseconds).
pub fn event(
    target: RetryTarget,
    request: &str,
    attempt: u32,
    delay: Duration,
    error: String,
) -> Event {
    Event::Retry {
        target,
        request: request.to_owned(),
        attempt,
        tries: TRIES,
        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        error,
    }
}

/// Counts the failed tries of one request and reports each retry to a
/// [`Reporter`]. An atomic counter rather than a `Cell`, so that the
/// retrying future stays `Send`.
pub struct Notifier<'a> {
    reporter: &'a dyn Reporter,
    target: RetryTarget,
    request: &'a str,
    failed: AtomicU32,
}

impl<'a> Notifier<'a> {
    /// A notifier for `request` to `target`, no try failed yet.
    pub fn new(reporter: &'a dyn Reporter, target: RetryTarget, request: &'a str) -> Self {
        Notifier {
            reporter,
            target,
            request,
            failed: AtomicU32::new(0),
        }
    }

    /// A try failed with `error` and the next comes after `delay`: counts
    /// it and reports the [`event`].
    pub fn retrying(&self, delay: Duration, error: String) {
        let attempt = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        self.reporter.report(event(
            self.target.clone(),
            self.request,
            attempt,
            delay,
            error,
        ));
    }

    /// How many tries were retried so far.
    pub fn retried(&self) -> u32 {
        self.failed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recorder;

    #[test]
    fn each_retry_is_numbered_from_one() {
        let recorder = Recorder::default();
        let target = RetryTarget::Engine {
            runner: "pi".to_owned(),
        };
        let notifier = Notifier::new(&recorder, target.clone(), "GET /_ping");
        notifier.retrying(Duration::from_millis(250), "reset".to_owned());
        notifier.retrying(Duration::from_micros(1_999_999), "refused".to_owned());
        assert_eq!(notifier.retried(), 2);
        assert_eq!(
            recorder.events(),
            [
                Event::Retry {
                    target: target.clone(),
                    request: "GET /_ping".to_owned(),
                    attempt: 1,
                    tries: 3,
                    delay_ms: 250,
                    error: "reset".to_owned(),
                },
                Event::Retry {
                    target,
                    request: "GET /_ping".to_owned(),
                    attempt: 2,
                    tries: 3,
                    delay_ms: 1999,
                    error: "refused".to_owned(),
                },
            ]
        );
    }
}
