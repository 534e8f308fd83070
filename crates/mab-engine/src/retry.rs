//! Retries of the engine requests that do not stream (`GET /version`,
//! `/info`, `/_ping`, `GET /images/<ref>/json`, `POST /images/<ref>/tag`,
//! `DELETE /images/<ref>`) when they fail at the connection in a way that
//! may pass: the stream to the engine was refused (a socket nothing
//! listens on, an SSH channel the server could not connect or was short
//! of resources for) or broke before the answer (reset, closed). The
//! policy is mab's one ([`mab_events::retry`]): bounded exponential
//! backoff with jitter, [`TRIES`] tries. A request that got no answer
//! within [`REQUEST_TIMEOUT`] is not retried: a hung engine stays hung,
//! and three waits would triple the time before the platform moves to
//! another runner (docs/what-happens-when.md).

use std::future::Future;

use backon::Retryable;
use mab_events::retry::{dropped, policy, Notifier};
use mab_events::{Reporter, RetryTarget};

pub use mab_events::retry::{MAX_DELAY, MIN_DELAY, TRIES};

use crate::{EngineError, REQUEST_TIMEOUT};

/// How one try ended badly.
enum Failure {
    /// No answer within [`REQUEST_TIMEOUT`].
    TimedOut,
    /// The request failed, at the connection or with the engine's answer.
    Failed(bollard::errors::Error),
}

/// Whether a failed request failed at the connection in a way another try
/// may get past ([`dropped`]; a [`Connect`](crate::Connect) function
/// gives `ConnectionRefused` for an SSH channel sshd could not connect to
/// the socket or was short of resources for, `PermissionDenied` for one
/// it refuses to open): every error of the
/// [`Connect`](crate::Connect) function arrives as an I/O error, and a
/// stream that broke before the whole answer as hyper's error with an I/O
/// cause, or as a message that was cut short. Not retried: an answer of
/// the engine (`404 No such image`), an answer that does not parse, a
/// request that could not be written, and every other I/O error kind.
pub(crate) fn connection_level(error: &bollard::errors::Error) -> bool {
    use bollard::errors::Error;
    match error {
        Error::IOError { err } => dropped(err.kind()),
        Error::HyperResponseError { err } => {
            err.is_incomplete_message()
                || err.is_closed()
                || err.is_canceled()
                || io_source(err).is_some_and(dropped)
        }
        _ => false,
    }
}

/// The kind of the I/O error among `error`'s causes, if there is one.
fn io_source(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = cause.source();
    }
    None
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
    let target = RetryTarget::Engine {
        runner: label.to_owned(),
    };
    let notifier = Notifier::new(reporter, target, what);
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
        if let Failure::Failed(error) = failure {
            notifier.retrying(delay, crate::error_message_of(error));
        }
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
    use mab_events::{Event, Recorder};
    use std::io::ErrorKind as Io;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
            (io(Io::ConnectionReset), true),
            (io(Io::ConnectionAborted), true),
            (io(Io::UnexpectedEof), true),
            (io(Io::BrokenPipe), true),
            (io(Io::NotConnected), false),
            (io(Io::PermissionDenied), false),
            (io(Io::NotFound), false),
            (io(Io::Unsupported), false),
            (io(Io::TimedOut), false),
            (io(Io::Other), false),
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

    /// Real HTTP failures of the engine transport: a socket that refuses
    /// connections (its listener is gone) and an engine that closes the
    /// connection without an answer are tried three times; a path with no
    /// socket is a wrong path, tried once.
    #[tokio::test]
    async fn a_refused_or_dropped_engine_is_tried_three_times() {
        let directory = tempfile::tempdir().unwrap();
        let missing = directory.path().join("missing.sock");
        let refusing = directory.path().join("refusing.sock");
        drop(std::os::unix::net::UnixListener::bind(&refusing).unwrap());
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
        let cases = [
            (missing, Some(Io::NotFound), 1, 0),
            (refusing, Some(Io::ConnectionRefused), TRIES as usize, 0),
            (dropping, None, TRIES as usize, TRIES as usize),
        ];
        for (socket, kind, expected_tries, connections) in cases {
            accepted.store(0, Ordering::SeqCst);
            let connect = crate::unix_connector(&socket);
            let heard = Recorder::default();
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
            if let Some(kind) = kind {
                assert!(
                    matches!(&error, bollard::errors::Error::IOError { err } if err.kind() == kind),
                    "{socket:?}: {error:?}"
                );
            }
            assert_eq!(tries.load(Ordering::SeqCst), expected_tries, "{socket:?}");
            assert_eq!(accepted.load(Ordering::SeqCst), connections, "{socket:?}");
            let events = heard.events();
            let summary: Vec<(RetryTarget, String, u32, u32)> = events
                .iter()
                .map(|event| match event {
                    Event::Retry {
                        target,
                        request,
                        attempt,
                        tries,
                        ..
                    } => (target.clone(), request.clone(), *attempt, *tries),
                    other => panic!("not a retry: {other:?}"),
                })
                .collect();
            let engine = RetryTarget::Engine {
                runner: "pi".into(),
            };
            let expected: Vec<(RetryTarget, String, u32, u32)> = (1..expected_tries as u32)
                .map(|attempt| (engine.clone(), "GET /_ping".to_owned(), attempt, TRIES))
                .collect();
            assert_eq!(summary, expected, "{socket:?}");
        }
        server.abort();
    }

    /// A request without an answer in time is given up at once.
    #[tokio::test(start_paused = true)]
    async fn a_timeout_is_not_retried() {
        let heard = Recorder::default();
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
        assert!(heard.events().is_empty());
    }
}
