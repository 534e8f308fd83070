//! Retries of connections that a server dropped before it let us in: a
//! refused TCP connect, or a handshake reset or closed before
//! authentication, which is what sshd does to the connections over its
//! `MaxStartups` limit (sshd_config(5)) while a burst of logins is in
//! progress. The policy is mab's one ([`mab_events::retry`]): bounded
//! exponential backoff with jitter, [`TRIES`] tries.

use mab_events::retry::{dropped, policy, Notifier};
use mab_events::{Reporter, RetryTarget};

pub use mab_events::retry::{MAX_DELAY, MIN_DELAY, TRIES};

use crate::error::SshError;

/// Whether a failed connection is worth another try: the host was reached
/// but dropped us before authentication (a refused connect, a connection
/// reset, aborted, or closed before or during the handshake). Everything
/// else is not: a refused key or a host key problem would be refused
/// again, a name that does not resolve or a bad config does not change,
/// and a host that did not answer in time (`ConnectTimeout`) would make
/// each retry wait as long again.
pub(crate) fn transient(error: &SshError) -> bool {
    match error {
        SshError::Refused { .. } => true,
        SshError::Connect { source, .. } => dropped(source.kind()),
        SshError::Handshake { source, .. } => match source {
            russh::Error::IO(source) => dropped(source.kind()),
            russh::Error::HUP | russh::Error::Disconnect => true,
            _ => false,
        },
        _ => false,
    }
}

/// Who hears of retries, and as which runner.
#[derive(Clone, Copy)]
pub struct Retries<'a> {
    /// The runner's name, for [`RetryTarget::Ssh`].
    pub runner: &'a str,
    pub reporter: &'a dyn Reporter,
}

/// Runs `attempt` until it succeeds, fails for good ([`transient`] says
/// no) or [`TRIES`] tries have failed; each retry is reported as an
/// [`Event::Retry`] for `request` (`SSH connection`: the TCP connect and the handshake).
pub(crate) async fn retry<T, Attempt, Fut>(
    retries: Retries<'_>,
    request: &str,
    attempt: Attempt,
) -> Result<T, SshError>
where
    Attempt: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SshError>>,
{
    use backon::Retryable;
    let target = RetryTarget::Ssh {
        runner: retries.runner.to_owned(),
    };
    let notifier = Notifier::new(retries.reporter, target, request);
    attempt
        .retry(policy())
        .when(transient)
        .notify(|error, delay| notifier.retrying(delay, error.to_string()))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HostRef;
    use mab_events::{Event, Recorder};
    use std::io::Error as IoError;
    use std::io::ErrorKind as Io;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn host() -> Box<HostRef> {
        Box::new(HostRef::new("lab", "127.0.0.9", 2299))
    }

    #[test]
    fn dropped_connections_are_retried_refusals_of_us_are_not() {
        let connect = |kind: Io| SshError::Connect {
            host: host(),
            source: IoError::new(kind, "x"),
        };
        let handshake = |source: russh::Error| SshError::Handshake {
            host: host(),
            source,
        };
        let cases: Vec<(SshError, bool)> = vec![
            (SshError::Refused { host: host() }, true),
            (connect(Io::ConnectionReset), true),
            (connect(Io::ConnectionAborted), true),
            (connect(Io::HostUnreachable), false),
            (connect(Io::NetworkUnreachable), false),
            (
                handshake(russh::Error::IO(IoError::new(Io::ConnectionReset, "reset"))),
                true,
            ),
            (
                handshake(russh::Error::IO(IoError::new(Io::UnexpectedEof, "eof"))),
                true,
            ),
            (
                handshake(russh::Error::IO(IoError::new(Io::BrokenPipe, "pipe"))),
                true,
            ),
            (handshake(russh::Error::HUP), true),
            (handshake(russh::Error::Disconnect), true),
            (handshake(russh::Error::Version), false),
            (handshake(russh::Error::Kex), false),
            (handshake(russh::Error::WrongServerSig), false),
            (
                SshError::Timeout {
                    host: host(),
                    after: Duration::from_secs(10),
                    stage: "SSH handshake",
                },
                false,
            ),
            (
                SshError::Dns {
                    host: host(),
                    source: IoError::new(Io::NotFound, "no such host"),
                },
                false,
            ),
            (
                SshError::Auth {
                    host: host(),
                    user: "root".into(),
                    tried: vec!["~/.ssh/id_ed25519".into()],
                    skipped: vec![],
                },
                false,
            ),
            (
                SshError::NoKeys {
                    host: host(),
                    user: "root".into(),
                    skipped: vec![],
                },
                false,
            ),
            (
                SshError::UnknownHostKey {
                    host: host(),
                    key_type: "ssh-ed25519".into(),
                    fingerprint: "SHA256:abc".into(),
                    known_hosts: "~/.ssh/known_hosts".into(),
                },
                false,
            ),
            (
                SshError::ChangedHostKey {
                    host: host(),
                    key_type: "ssh-ed25519".into(),
                    fingerprint: "SHA256:abc".into(),
                    file: "/k".into(),
                    line: 1,
                    file_shown: "/k".into(),
                },
                false,
            ),
            (
                SshError::Config {
                    host: host(),
                    path: "/c".into(),
                    message: "bad".into(),
                },
                false,
            ),
            (
                SshError::InvalidDestination {
                    spec: "a b".into(),
                    source: mab_config::HostError::WhiteSpace,
                },
                false,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(transient(&error), expected, "{error:?}");
        }
    }

    /// Retries a connection that always fails with what `error` makes:
    /// how many tries were made, the last error and the events heard.
    async fn always_failing(error: fn() -> SshError) -> (u32, SshError, Vec<Event>) {
        let heard = Recorder::default();
        let tries = AtomicU32::new(0);
        let retries = Retries {
            runner: "pi",
            reporter: &heard,
        };
        let result: Result<(), SshError> = retry(retries, "SSH connection", || async {
            tries.fetch_add(1, Ordering::Relaxed);
            Err(error())
        })
        .await;
        let events = heard.events();
        (tries.into_inner(), result.unwrap_err(), events)
    }

    #[tokio::test]
    async fn a_refused_connection_is_tried_three_times_and_each_retry_reported() {
        let (tries, error, events) = always_failing(|| SshError::Refused { host: host() }).await;
        assert!(matches!(error, SshError::Refused { .. }));
        assert_eq!(tries, TRIES);
        assert_eq!(events.len(), 2, "{events:?}");
        for (index, event) in events.iter().enumerate() {
            let Event::Retry {
                target,
                request,
                attempt,
                tries,
                delay_ms,
                error,
            } = event
            else {
                panic!("{event:?}")
            };
            assert_eq!(
                target,
                &RetryTarget::Ssh {
                    runner: "pi".into()
                }
            );
            assert_eq!(request, "SSH connection");
            assert_eq!((*attempt, *tries), (index as u32 + 1, TRIES));
            assert!(*delay_ms <= MAX_DELAY.as_millis() as u64, "{delay_ms}");
            assert_eq!(error, "connection to `lab` (127.0.0.9:2299) was refused");
        }
    }

    #[tokio::test]
    async fn a_refused_key_is_tried_once() {
        let (tries, error, events) = always_failing(|| SshError::NoKeys {
            host: host(),
            user: "root".into(),
            skipped: vec![],
        })
        .await;
        assert!(matches!(error, SshError::NoKeys { .. }));
        assert_eq!(tries, 1);
        assert!(events.is_empty());
    }
}
