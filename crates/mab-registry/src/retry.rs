//! Retries of transient registry faults (docs/publishing.md, "When the
//! registry fails"): the one policy every request of a [`Repository`]
//! follows, and the one rule that says which failures are transient.
//!
//! [`Repository`]: crate::Repository

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use backon::Retryable;
use mab_events::retry::{policy, Notifier};
use mab_events::{Reporter, RetryTarget};

pub use mab_events::retry::{MAX_DELAY, MIN_DELAY, TRIES};
/// The longest `Retry-After` (RFC 9110, section 10.2.3) that is waited
/// for; a registry asking for more is retried after this long.
pub const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(10);

/// One failed try of a registry request, as far as retrying cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The registry answered, with another status than the one expected.
    Answered {
        /// The HTTP status code (`503`).
        status: u16,
        /// The `Retry-After` header, verbatim, when there was one.
        retry_after: Option<String>,
        /// What the registry said: the start of the body, or the client's
        /// message.
        message: String,
    },
    /// No whole answer came.
    NoAnswer {
        /// How the request failed.
        kind: NoAnswer,
        /// The client's error, with its causes.
        message: String,
    },
    /// The answer was unusable (content whose digest is not the one asked
    /// for, JSON that does not parse), or the request could not be made.
    Unusable {
        /// What was wrong.
        message: String,
    },
}

/// How a request that got no whole answer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoAnswer {
    /// The connection could not be made (refused, no route, a failed name
    /// lookup or TLS handshake).
    Connect,
    /// The request or its answer took longer than its time limit.
    Timeout,
    /// The connection broke during the request or its answer (reset,
    /// closed early).
    Interrupted,
    /// Anything else the HTTP client refused (a bad URL, a redirect
    /// loop): not a fault of the network.
    Other,
}

/// What to do about a [`Fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Try again, after at least `retry_after` when the registry asked for
    /// a delay.
    Transient { retry_after: Option<Duration> },
    /// Trying again would get the same answer.
    Permanent,
}

/// The body of an error answer in the registry's own words: `CODE:
/// message` for each error of an OCI error envelope (distribution-spec,
/// "Error Codes"; `{"errors":[{"code","message","detail"}]}`), joined by
/// `; `; any other body, its first 200 characters.
fn error_body(body: &str) -> String {
    let body = body.trim();
    match serde_json::from_str::<oci_client::errors::OciEnvelope>(body) {
        Ok(envelope) if !envelope.errors.is_empty() => envelope
            .errors
            .iter()
            .map(|error| {
                let code = serde_json::to_value(&error.code)
                    .ok()
                    .and_then(|code| code.as_str().map(str::to_owned))
                    .unwrap_or_default();
                format!("{code}: {}", error.message)
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => body.chars().take(200).collect(),
    }
}

impl Fault {
    /// A failure of the HTTP client to get an answer.
    pub(crate) fn transport(error: &reqwest::Error) -> Fault {
        let kind = if error.is_timeout() {
            NoAnswer::Timeout
        } else if error.is_connect() {
            NoAnswer::Connect
        } else if error.is_request() || error.is_body() || error.is_decode() {
            NoAnswer::Interrupted
        } else {
            NoAnswer::Other
        };
        Fault::NoAnswer {
            kind,
            message: with_causes(error),
        }
    }

    /// An answer of the registry with an unexpected status; reads the
    /// start of its body.
    pub(crate) async fn answered(response: reqwest::Response) -> Fault {
        Fault::answered_by(response, "the registry").await
    }

    /// An answer of `who` (`the registry`, `the token service`) with an
    /// unexpected status; reads the start of its body.
    pub(crate) async fn answered_by(response: reqwest::Response, who: &str) -> Fault {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let reason = response.status().to_string();
        let body = error_body(&response.text().await.unwrap_or_default());
        let message = if body.is_empty() {
            format!("{who} answered {reason}")
        } else {
            format!("{who} answered {reason}: {body}")
        };
        Fault::Answered {
            status,
            retry_after,
            message,
        }
    }

    /// A failure of oci-client (used for its token requests): its HTTP
    /// errors keep their kind, a refused authentication counts as `401`.
    pub(crate) fn oci(error: oci_client::errors::OciDistributionError) -> Fault {
        use oci_client::errors::OciDistributionError as Oci;
        match error {
            Oci::RequestError(error) => Fault::transport(&error),
            Oci::ServerError { code, message, .. } => Fault::Answered {
                status: code,
                retry_after: None,
                message: format!("the registry answered {code}: {message}"),
            },
            Oci::AuthenticationFailure(message) => Fault::Answered {
                status: 401,
                retry_after: None,
                message: format!("the token service refused the credentials: {message}"),
            },
            Oci::UnauthorizedError { url } => Fault::Answered {
                status: 401,
                retry_after: None,
                message: format!("the registry answered 401 Unauthorized for {url}"),
            },
            error => Fault::Unusable {
                message: with_causes(&error),
            },
        }
    }

    /// The HTTP status of an answer, `None` when there was none.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Fault::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Answered { message, .. }
            | Fault::NoAnswer { message, .. }
            | Fault::Unusable { message } => formatter.write_str(message),
        }
    }
}

/// Whether a fault is worth another try. Transient: no connection,
/// a broken connection, a timeout, `408 Request Timeout`, `429 Too Many
/// Requests` and the 5xx statuses other than `501 Not Implemented` and
/// `505 HTTP Version Not Supported` (a server that cannot do it now, as
/// the Docker daemon and containerd retry them). Permanent: every other
/// 4xx (`401`/`403` refused credentials, `400 MANIFEST_INVALID`, `404`),
/// an unusable answer, and a request the client refused to make. A
/// `Retry-After` of delay-seconds or an HTTP-date is kept on `429` and
/// `503`, the statuses RFC 9110 gives it for.
pub(crate) fn classify(fault: &Fault) -> Verdict {
    let transient = Verdict::Transient { retry_after: None };
    match fault {
        Fault::NoAnswer { kind, .. } => match kind {
            NoAnswer::Connect | NoAnswer::Timeout | NoAnswer::Interrupted => transient,
            NoAnswer::Other => Verdict::Permanent,
        },
        Fault::Unusable { .. } => Verdict::Permanent,
        Fault::Answered {
            status,
            retry_after,
            ..
        } => match status {
            429 | 503 => Verdict::Transient {
                retry_after: retry_after
                    .as_deref()
                    .and_then(|value| parse_retry_after(value, SystemTime::now())),
            },
            501 | 505 => Verdict::Permanent,
            408 | 500..=599 => transient,
            _ => Verdict::Permanent,
        },
    }
}

/// A `Retry-After` value as a delay from `now`: delay-seconds (`120`) or
/// an HTTP-date (`Fri, 31 Dec 1999 23:59:59 GMT`, a date already past
/// being no delay); `None` when it is neither.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A request that failed for good: its last fault and how many tries were
/// made.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) fault: Fault,
    pub(crate) tries: u32,
}

impl fmt::Display for Failed {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.fault)?;
        if self.tries > 1 {
            write!(formatter, " (gave up after {} tries)", self.tries)?;
        }
        Ok(())
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or [`TRIES`]
/// tries have failed. Before each retry `reporter` gets an
/// [`Event::Retry`] naming the registry (its host), the `request`
/// (`GET /v2/app/manifests/sha256:…`), the try that failed and why, and the
/// delay: a `Retry-After` (up to [`RETRY_AFTER_LIMIT`]) when it is longer
/// than the backoff's.
pub(crate) async fn retry<T, Attempt, Fut>(
    registry: &str,
    request: &str,
    reporter: &dyn Reporter,
    attempt: Attempt,
) -> Result<T, Failed>
where
    Attempt: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Fault>>,
{
    let target = RetryTarget::Registry {
        registry: registry.to_owned(),
    };
    let notifier = Notifier::new(reporter, target, request);
    attempt
        .retry(policy())
        .when(|fault| classify(fault) != Verdict::Permanent)
        .adjust(|fault, delay| {
            let delay = delay?;
            Some(match classify(fault) {
                Verdict::Transient {
                    retry_after: Some(after),
                } => delay.max(after.min(RETRY_AFTER_LIMIT)),
                _ => delay,
            })
        })
        .notify(|fault, delay| notifier.retrying(delay, fault.to_string()))
        .await
        .map_err(|fault| Failed {
            fault,
            tries: notifier.retried() + 1,
        })
}

/// An error and its causes, `outer: inner: innermost` (reqwest's own
/// message names only the URL, its cause says what went wrong).
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use mab_events::{Event, Recorder};
    use std::sync::atomic::{AtomicU32, Ordering};

    fn answered(status: u16, retry_after: Option<&str>) -> Fault {
        Fault::Answered {
            status,
            retry_after: retry_after.map(str::to_owned),
            message: String::new(),
        }
    }

    #[test]
    fn an_error_body_is_read_as_the_registry_words() {
        let envelope = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"x","Action":"push"}]},{"code":"DENIED","message":"no"}]}"#;
        assert_eq!(
            error_body(envelope),
            "UNAUTHORIZED: authentication required; DENIED: no"
        );
        assert_eq!(
            error_body("  <html>bad gateway</html>\n"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_body(&"x".repeat(300)).len(), 200);
        assert_eq!(error_body(r#"{"errors":[]}"#), r#"{"errors":[]}"#);
    }

    fn no_answer(kind: NoAnswer) -> Fault {
        Fault::NoAnswer {
            kind,
            message: String::new(),
        }
    }

    #[test]
    fn transient_and_permanent_faults() {
        let transient = Verdict::Transient { retry_after: None };
        let after = |seconds| Verdict::Transient {
            retry_after: Some(Duration::from_secs(seconds)),
        };
        let cases = [
            (no_answer(NoAnswer::Connect), transient),
            (no_answer(NoAnswer::Timeout), transient),
            (no_answer(NoAnswer::Interrupted), transient),
            (no_answer(NoAnswer::Other), Verdict::Permanent),
            (answered(500, None), transient),
            (answered(502, None), transient),
            (answered(503, None), transient),
            (answered(503, Some("3")), after(3)),
            (answered(504, None), transient),
            (answered(429, None), transient),
            (answered(429, Some(" 120 ")), after(120)),
            (answered(429, Some("soon")), transient),
            (answered(500, Some("3")), transient),
            (answered(408, None), transient),
            (answered(501, None), Verdict::Permanent),
            (answered(505, None), Verdict::Permanent),
            (answered(400, None), Verdict::Permanent),
            (answered(401, None), Verdict::Permanent),
            (answered(403, None), Verdict::Permanent),
            (answered(404, None), Verdict::Permanent),
            (answered(405, None), Verdict::Permanent),
            (
                Fault::Unusable {
                    message: "the registry returned content with another digest".into(),
                },
                Verdict::Permanent,
            ),
        ];
        for (fault, expected) in cases {
            assert_eq!(classify(&fault), expected, "{fault:?}");
        }
    }

    #[test]
    fn oci_client_errors_keep_their_kind() {
        use oci_client::errors::OciDistributionError as Oci;
        let cases = [
            (
                Oci::ServerError {
                    code: 503,
                    url: "u".into(),
                    message: "busy".into(),
                },
                Some(503),
                Verdict::Transient { retry_after: None },
            ),
            (
                Oci::AuthenticationFailure("bad password".into()),
                Some(401),
                Verdict::Permanent,
            ),
            (
                Oci::UnauthorizedError { url: "u".into() },
                Some(401),
                Verdict::Permanent,
            ),
            (
                Oci::RegistryTokenDecodeError("not JSON".into()),
                None,
                Verdict::Permanent,
            ),
        ];
        for (error, status, verdict) in cases {
            let fault = Fault::oci(error);
            assert_eq!(fault.status(), status, "{fault:?}");
            assert_eq!(classify(&fault), verdict, "{fault:?}");
        }
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let cases = [
            ("0", Some(Duration::ZERO)),
            ("7", Some(Duration::from_secs(7))),
            (
                "Sun, 06 Nov 1994 08:50:07 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(Duration::ZERO)),
            ("-1", None),
            ("1.5", None),
            ("tomorrow", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value}");
        }
    }

    /// What the HTTP client's own errors are classified as: a port nothing
    /// listens on, a server that closes the connection without answering,
    /// and one that answers too late.
    #[tokio::test]
    async fn client_errors_are_connect_interrupted_or_timeout() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = format!("http://{}/v2/", closed.local_addr().unwrap());
        drop(closed);
        let hanging_up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hang_up = format!("http://{}/v2/", hanging_up.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((connection, _)) = hanging_up.accept().await {
                drop(connection);
            }
        });
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slow = format!("http://{}/v2/", silent.local_addr().unwrap());
        let client = reqwest::Client::new();
        let cases = [
            (refused, NoAnswer::Connect),
            (hang_up, NoAnswer::Interrupted),
            (slow, NoAnswer::Timeout),
        ];
        for (url, expected) in cases {
            let error = client
                .get(&url)
                .timeout(Duration::from_millis(300))
                .send()
                .await
                .unwrap_err();
            let fault = Fault::transport(&error);
            assert!(
                matches!(&fault, Fault::NoAnswer { kind, .. } if *kind == expected),
                "{url}: {fault:?}"
            );
            assert_eq!(classify(&fault), Verdict::Transient { retry_after: None });
        }
        drop(silent);
    }

    /// Retries a request that always fails with `fault`: how many times
    /// it was tried, and the error.
    async fn always_failing(fault: Fault) -> (u32, Failed) {
        let tries = AtomicU32::new(0);
        let result: Result<(), Failed> = retry(
            "registry",
            "PUT /v2/app/manifests/latest",
            &mab_events::Silent,
            || async {
                tries.fetch_add(1, Ordering::Relaxed);
                Err(fault.clone())
            },
        )
        .await;
        (tries.load(Ordering::Relaxed), result.unwrap_err())
    }

    #[tokio::test]
    async fn a_transient_fault_is_tried_three_times_then_given_up() {
        let (tries, failed) = always_failing(answered(503, None)).await;
        assert_eq!((tries, failed.tries), (TRIES, TRIES));
        assert!(failed.to_string().ends_with("(gave up after 3 tries)"));
    }

    #[tokio::test]
    async fn each_retry_is_reported_as_a_typed_event() {
        let reporter = Recorder::default();
        let tries = AtomicU32::new(0);
        let result = retry(
            "127.0.0.1:5000",
            "PUT /v2/app/manifests/latest",
            &reporter,
            || async {
                match tries.fetch_add(1, Ordering::Relaxed) {
                    0 => Err(Fault::Answered {
                        status: 503,
                        retry_after: None,
                        message: "the registry answered 503 Service Unavailable".to_owned(),
                    }),
                    1 => Err(no_answer(NoAnswer::Interrupted)),
                    _ => Ok(()),
                }
            },
        )
        .await;
        assert!(result.is_ok());
        let events = reporter.events();
        let summary: Vec<(u32, u32, String)> = events
            .iter()
            .map(|event| match event {
                Event::Retry {
                    target: RetryTarget::Registry { registry },
                    request,
                    attempt,
                    tries,
                    delay_ms,
                    error,
                } => {
                    assert_eq!(registry, "127.0.0.1:5000");
                    assert_eq!(request, "PUT /v2/app/manifests/latest");
                    assert!(
                        (MIN_DELAY.as_millis() as u64 / 2..=MAX_DELAY.as_millis() as u64 * 2)
                            .contains(delay_ms),
                        "{delay_ms}"
                    );
                    (*attempt, *tries, error.clone())
                }
                other => panic!("not a registry retry: {other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    1,
                    3,
                    "the registry answered 503 Service Unavailable".to_owned()
                ),
                (2, 3, String::new()),
            ]
        );
    }

    #[tokio::test]
    async fn a_permanent_fault_is_tried_once() {
        let (tries, failed) = always_failing(answered(401, None)).await;
        assert_eq!((tries, failed.tries), (1, 1));
        assert!(!failed.to_string().contains("gave up"));
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_the_backoff_is_waited_for() {
        let start = std::time::Instant::now();
        let tries = std::cell::Cell::new(0);
        let result = retry(
            "registry",
            "PUT /v2/app/manifests/latest",
            &mab_events::Silent,
            || async {
                tries.set(tries.get() + 1);
                if tries.get() == 1 {
                    Err(answered(429, Some("1")))
                } else {
                    Ok(tries.get())
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 2);
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
}
