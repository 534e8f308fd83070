//! Retries of the engine requests that do not stream (`GET /version`,
//! `/info`, `/_ping`, image inspect, tag, remove) when they fail at the
//! connection: the stream to the engine could not be opened (an SSH
//! channel refused, a socket that refuses connections) or broke before
//! the answer (reset, closed). The policy is the registry's
//! (docs/publishing.md): bounded exponential backoff with jitter,
//! [`TRIES`] tries. A request that got no answer within
//! [`REQUEST_TIMEOUT`] is not retried: a hung engine stays hung, and three
//! waits would triple the time before the platform moves to another
//! runner (docs/what-happens-when.md).

use std::future::Future;
use std::io::ErrorKind as Io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use mab_events::{Event, Reporter, RetryTarget};

use crate::{EngineError, REQUEST_TIMEOUT};

/// How many times a request is tried, the first try included.
pub const TRIES: u32 = 3;
/// The delay before the first retry; each next one doubles, with jitter.
pub const MIN_DELAY: Duration = Duration::from_millis(200);
/// The longest delay between two tries.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// How one try ended badly.
enum Failure {
    /// No answer within [`REQUEST_TIMEOUT`].
    TimedOut,
    /// The request failed, at the connection or with the engine's answer.
    Failed(bollard::errors::Error),
}

/// Whether a failed request failed at the connection, so that another try
/// may get through: the stream could not be opened (every error of the
/// [`Connect`](crate::Connect) function arrives as an I/O error), or it was
/// reset or closed before the whole answer came. Not retried: a
/// [`Connect`](crate::Connect) error of kind `NotConnected` (what carries
/// the streams has ended for good, as an SSH connection that closed), an
/// answer of the engine (`404 No such image`), an answer that does not
/// parse, or a request that could not be written.
pub(crate) fn connection_level(error: &bollard::errors::Error) -> bool {
    use bollard::errors::Error;
    match error {
        Error::IOError { err } => err.kind() != Io::NotConnected,
        Error::HyperResponseError { err } => {
            err.is_incomplete_message()
                || err.is_closed()
                || err.is_canceled()
                || io_source(err).is_some_and(|kind| {
                    matches!(
                        kind,
                        Io::ConnectionRefused
                            | Io::ConnectionReset
                            | Io::ConnectionAborted
                            | Io::BrokenPipe
                            | Io::UnexpectedEof
                    )
                })
        }
        _ => false,
    }
}

/// The kind of the I/O error among `error`'s causes, if there is one.
fn io_source(error: &(dyn std::error::Error + 'static)) -> Option<Io> {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = cause.source();
    }
    None
}

/// The backoff between tries: exponential from [`MIN_DELAY`] to
/// [`MAX_DELAY`] with jitter, [`TRIES`] tries in all.
fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_max_times(TRIES as usize - 1)
        .with_jitter()
}

/// Runs the request `attempt` makes, each try within [`REQUEST_TIMEOUT`],
/// until it is answered, fails other than at the connection, times out, or
/// [`TRIES`] tries failed at the connection; each retry is reported to
/// `reporter` as an [`Event::Retry`] for the engine of runner `label`.
/// A timeout is [`EngineError::Timeout`]; the request's last error is
/// returned inside `Ok` for the caller to word.
pub(crate) async fn request<T, Attempt, Fut>(
    label: &str,
    reporter: &dyn Reporter,
    what: &str,
    mut attempt: Attempt,
) -> Result<Result<T, bollard::errors::Error>, EngineError>
where
    Attempt: FnMut() -> Fut,
    Fut: Future<Output = Result<T, bollard::errors::Error>>,
{
    let failed = AtomicU32::new(0);
    let result = (|| {
        let request = attempt();
        async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
                Err(_) => Err(Failure::TimedOut),
                Ok(Err(error)) => Err(Failure::Failed(error)),
                Ok(Ok(answer)) => Ok(answer),
            }
        }
    })
    .retry(policy())
    .when(|failure| matches!(failure, Failure::Failed(error) if connection_level(error)))
    .notify(|failure, delay| {
        let Failure::Failed(error) = failure else {
            return;
        };
        let attempt = failed.fetch_add(1, Ordering::Relaxed) + 1;
        reporter.report(Event::Retry {
            target: RetryTarget::Engine {
                runner: label.to_owned(),
            },
            request: what.to_owned(),
            attempt,
            tries: TRIES,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error: crate::error_message_of(error),
        });
    })
    .await;
    match result {
        Ok(answer) => Ok(Ok(answer)),
        Err(Failure::Failed(error)) => Ok(Err(error)),
        Err(Failure::TimedOut) => Err(EngineError::Timeout {
            engine: label.to_owned(),
            request: what.to_owned(),
            limit: REQUEST_TIMEOUT,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Heard(Mutex<Vec<Event>>);

    impl Reporter for Heard {
        fn report(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    fn io(kind: Io) -> bollard::errors::Error {
        bollard::errors::Error::IOError {
            err: std::io::Error::new(kind, "x"),
        }
    }

    #[test]
    fn connection_failures_are_retried_answers_are_not() {
        use bollard::errors::Error;
        let cases = [
            (io(Io::ConnectionRefused), true),
            (io(Io::Other), true),
            (io(Io::NotConnected), false),
            (
                Error::DockerResponseServerError {
                    status_code: 404,
                    message: "No such image".into(),
                },
                false,
            ),
            (
                Error::DockerResponseServerError {
                    status_code: 500,
                    message: "engine failure".into(),
                },
                false,
            ),
            (
                Error::JsonDataError {
                    message: "expected value".into(),
                    column: 1,
                },
                false,
            ),
            (Error::RequestTimeoutError, false),
        ];
        for (error, expected) in cases {
            assert_eq!(connection_level(&error), expected, "{error:?}");
        }
    }

    /// Real HTTP failures of the engine transport: a socket nothing
    /// listens on (the connect fails), and an engine that closes the
    /// connection without an answer.
    #[tokio::test]
    async fn a_refused_or_dropped_engine_is_tried_three_times() {
        let directory = tempfile::tempdir().unwrap();
        let missing = directory.path().join("missing.sock");
        let dropping = directory.path().join("dropping.sock");
        let listener = tokio::net::UnixListener::bind(&dropping).unwrap();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(connection);
            }
        });
        for (socket, connections) in [(missing, 0), (dropping, TRIES as usize)] {
            accepted.store(0, Ordering::SeqCst);
            let connect = crate::unix_connector(&socket);
            let heard = Heard::default();
            let tries = AtomicUsize::new(0);
            let result = request("pi", &heard, "GET /_ping", || {
                tries.fetch_add(1, Ordering::SeqCst);
                let request = http::Request::get("/_ping")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap();
                let connect = connect.clone();
                async move { crate::transport::send(&connect, request).await.map(drop) }
            })
            .await;
            let error = result.expect("no timeout").expect_err("no engine");
            assert!(connection_level(&error), "{socket:?}: {error:?}");
            assert_eq!(tries.load(Ordering::SeqCst), TRIES as usize);
            assert_eq!(accepted.load(Ordering::SeqCst), connections);
            let events = heard.0.lock().unwrap();
            assert_eq!(events.len(), 2, "{events:?}");
            let Event::Retry {
                target,
                request,
                attempt,
                ..
            } = &events[1]
            else {
                panic!("{events:?}")
            };
            assert_eq!(
                target,
                &RetryTarget::Engine {
                    runner: "pi".into()
                }
            );
            assert_eq!((request.as_str(), *attempt), ("GET /_ping", 2));
        }
        server.abort();
    }

    /// A request without an answer in time is given up at once.
    #[tokio::test(start_paused = true)]
    async fn a_timeout_is_not_retried() {
        let heard = Heard::default();
        let tries = AtomicUsize::new(0);
        let result: Result<Result<(), _>, _> = request("pi", &heard, "GET /info", || {
            tries.fetch_add(1, Ordering::SeqCst);
            std::future::pending()
        })
        .await;
        let error = result.expect_err("a timeout");
        assert!(matches!(error, EngineError::Timeout { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "the Docker engine of pi did not answer GET /info within 30 s"
        );
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        assert!(heard.0.lock().unwrap().is_empty());
    }
}
