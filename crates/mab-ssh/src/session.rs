//! One authenticated SSH connection and the channels opened on it.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelOpenFailure, ChannelStream, Preferred};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::auth;
use crate::destination::{Destination, StrictHostKeyChecking};
use crate::error::{HostRef, Route, SshError};
use crate::known_hosts::{self, Verdict};
use crate::retry::{self, Retries};

/// How long to wait for a host when the ssh config sets no `ConnectTimeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Authentication may involve an agent and several keys; give it more time.
const MIN_AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks the server's host key during the key exchange.
struct HostKeyChecker {
    host: Box<HostRef>,
    known_hosts_files: Vec<PathBuf>,
    home: PathBuf,
    policy: StrictHostKeyChecking,
    /// An unknown key that the policy lets through, to be recorded once the
    /// key exchange has completed.
    learnt: Arc<Mutex<Option<PublicKey>>>,
}

/// Why the key exchange stopped: a host key problem, or the protocol.
#[derive(Debug)]
enum HandshakeError {
    HostKey(Box<SshError>),
    Protocol(russh::Error),
}

impl From<russh::Error> for HandshakeError {
    fn from(error: russh::Error) -> Self {
        HandshakeError::Protocol(error)
    }
}

impl HostKeyChecker {
    fn check(&self, key: &PublicKeyOrCertificate) -> Result<(), SshError> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(SshError::HostCertificate {
                    host: self.host.clone(),
                })
            }
        };
        let (key_type, fingerprint) = known_hosts::describe(key);
        match known_hosts::verify(
            &self.host.host_name,
            self.host.port,
            key,
            &self.known_hosts_files,
        ) {
            Verdict::Known => {
                debug!(
                    "host key of {} is known: {key_type} {fingerprint}",
                    self.host
                );
                Ok(())
            }
            Verdict::Unknown if self.policy.learns_unknown_keys() => {
                // Another algorithm's key on record means the host changed
                // keys, not that it is new: that is for the user to confirm.
                let recorded = known_hosts::recorded_algorithms(
                    &self.host.host_name,
                    self.host.port,
                    &self.known_hosts_files,
                );
                if !recorded.is_empty() {
                    return Err(SshError::UnrecordedKeyType {
                        host: self.host.clone(),
                        key_type,
                        fingerprint,
                        recorded: recorded
                            .iter()
                            .map(|algorithm| algorithm.as_str().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        known_hosts: self.known_hosts_shown(),
                    });
                }
                debug!(
                    "host key of {} is not known; StrictHostKeyChecking lets it be learnt: {key_type} {fingerprint}",
                    self.host
                );
                *self
                    .learnt
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(key.clone());
                Ok(())
            }
            Verdict::Unknown => Err(SshError::UnknownHostKey {
                host: self.host.clone(),
                key_type,
                fingerprint,
                known_hosts: self.known_hosts_shown(),
            }),
            Verdict::Changed { file, line } => Err(SshError::ChangedHostKey {
                host: self.host.clone(),
                key_type,
                fingerprint,
                file_shown: known_hosts::shown_path(&file, &self.home),
                file,
                line,
            }),
            Verdict::Unreadable { file, message } => Err(SshError::KnownHosts {
                host: self.host.clone(),
                file,
                message,
            }),
        }
    }
}

impl HostKeyChecker {
    /// The known_hosts file that new keys go to, as the user would type it.
    fn known_hosts_shown(&self) -> String {
        self.known_hosts_files
            .first()
            .map(|file| known_hosts::shown_path(file, &self.home))
            .unwrap_or_else(|| "~/.ssh/known_hosts".to_string())
    }
}

/// Records a key that `StrictHostKeyChecking accept-new` let through, in the
/// first known_hosts file of `dest`. Trusting a new key is never silent: a
/// warning names the host, the key and the file, and so does a failure to
/// write it.
fn record_learnt_key(dest: &Destination, host: &HostRef, key: &PublicKey, home: &Path) {
    let file = dest
        .known_hosts_files
        .first()
        .cloned()
        .unwrap_or_else(|| home.join(".ssh").join("known_hosts"));
    let shown = known_hosts::shown_path(&file, home);
    let (key_type, fingerprint) = known_hosts::describe(key);
    match known_hosts::learn(&file, &host.host_name, host.port, key) {
        Ok(true) => warn!(
            "learnt the host key of {host} (StrictHostKeyChecking accept-new): \
             added its {key_type} key {fingerprint} to {shown}; \
             check that fingerprint against the host's own key"
        ),
        Ok(false) => debug!("{shown} already records the host key of {host}"),
        // As OpenSSH does, go on: the key was accepted for this connection.
        Err(error) => warn!(
            "cannot add the {key_type} host key {fingerprint} of {host} to {shown}: {error}; \
             the key is trusted for this connection only"
        ),
    }
}

impl client::Handler for HostKeyChecker {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.check(server_public_key)
            .map(|()| true)
            .map_err(|error| HandshakeError::HostKey(Box::new(error)))
    }
}

struct Inner {
    handle: Handle<HostKeyChecker>,
    destination: Destination,
    /// The sessions with the jump hosts, in chain order; the connection to
    /// the destination runs through them, so they live as long as it does.
    jumps: Vec<Handle<HostKeyChecker>>,
    /// The command channels ([`Session::exec`], [`Session::exec_held`])
    /// open at once, at most [`SESSION_CHANNELS`].
    commands: Arc<tokio::sync::Semaphore>,
}

/// How many command channels one connection holds open at once:
/// OpenSSH's sshd refuses more than `MaxSessions` (10 by default) per
/// connection, and counts a session until it has finished closing it on
/// its side, a little after mab saw the command end; eight leave room for
/// those. A command waits for one of the eight to end. Streams to the
/// engine's socket are not sessions and are not counted.
pub const SESSION_CHANNELS: usize = 8;

/// How many times a command channel is asked for when the host refuses it
/// as "connect failed": what OpenSSH's sshd answers (logging "no more
/// sessions") when the connection is at its `MaxSessions`. It still
/// counts a session whose close it has read until its next turn cleans it
/// up, so commands that end quickly, one after the other, can meet that
/// refusal for a moment though mab holds at most [`SESSION_CHANNELS`].
pub const SESSION_OPEN_TRIES: u32 = 5;
/// The wait before the second try at a refused command channel, doubled
/// before each later one (50, 100, 200, 400 ms).
const SESSION_OPEN_DELAY: Duration = Duration::from_millis(50);

/// One authenticated SSH connection, cheap to clone; many channels may be open on it at once.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("destination", &self.inner.destination)
            .field("closed", &self.inner.handle.is_closed())
            .field("jump_sessions", &self.inner.jumps.len())
            .finish()
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Opens a TCP connection to the first address of `host` that answers.
async fn open_tcp(host: &HostRef, timeout: Duration) -> Result<TcpStream, SshError> {
    let deadline = Instant::now() + timeout;
    let timed_out = |stage| SshError::Timeout {
        host: Box::new(host.clone()),
        after: timeout,
        stage,
    };
    let lookup = tokio::net::lookup_host((host.host_name.as_str(), host.port));
    let addresses: Vec<_> = match tokio::time::timeout_at(deadline, lookup).await {
        Err(_) => return Err(timed_out("resolving the host name")),
        Ok(Err(source)) => {
            return Err(SshError::Dns {
                host: Box::new(host.clone()),
                source,
            })
        }
        Ok(Ok(addresses)) => addresses.collect(),
    };
    let mut last_error = None;
    for address in addresses {
        match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await {
            Err(_) => return Err(timed_out("connecting")),
            Ok(Ok(stream)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    debug!("cannot disable Nagle's algorithm: {error}");
                }
                return Ok(stream);
            }
            Ok(Err(error)) => {
                debug!("connecting to {address} failed: {error}");
                last_error = Some(error);
            }
        }
    }
    Err(match last_error {
        None => SshError::Dns {
            host: Box::new(host.clone()),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "it has no address"),
        },
        Some(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => SshError::Refused {
            host: Box::new(host.clone()),
        },
        Some(source) => SshError::Connect {
            host: Box::new(host.clone()),
            source,
        },
    })
}

fn client_config(dest: &Destination) -> client::Config {
    let recorded =
        known_hosts::recorded_algorithms(&dest.host_name, dest.port, &dest.known_hosts_files);
    let mut preferred = Preferred::default();
    preferred.key = Cow::Owned(known_hosts::prefer_recorded(&preferred.key, &recorded));
    preferred.cipher = Cow::Owned(cipher_order(&preferred.cipher, aes_in_hardware()));
    // russh drops the connection when more than `keepalive_max` keepalives
    // went unanswered (ServerAliveCountMax, see `ServerAlive`).
    let keepalive = dest.server_alive.effective();
    client::Config {
        preferred,
        keepalive_interval: keepalive.map(|(interval, _)| interval),
        keepalive_max: keepalive.map_or(0, |(_, count)| count as usize),
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    }
}

/// The ciphers offered, best first: russh's own list and order, but with
/// `aes256-gcm@openssh.com` first when this CPU encrypts AES and computes
/// GCM's hash in hardware (`aes_hardware`), where it costs a fraction of
/// the CPU time of russh's first choice, `chacha20-poly1305@openssh.com`,
/// per byte sent. Both are AEAD ciphers that OpenSSH's client offers by
/// default; the server takes the first one it supports (RFC 4253, 7.1).
fn cipher_order(offered: &[russh::cipher::Name], aes_hardware: bool) -> Vec<russh::cipher::Name> {
    let mut order = offered.to_vec();
    let preferred = russh::cipher::AES_256_GCM;
    if aes_hardware {
        if let Some(place) = order.iter().position(|name| *name == preferred) {
            order.remove(place);
            order.insert(0, preferred);
        }
    }
    order
}

/// Whether this CPU has AES instructions and carry-less multiplication
/// (GCM's hash), which ring uses for AES-GCM when present.
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Runs the SSH handshake over `stream` (checking the host key the way
/// `dest` says), then authenticates.
async fn establish<S>(
    dest: &Destination,
    host: &HostRef,
    stream: S,
    home: &Path,
    timeout: Duration,
) -> Result<Handle<HostKeyChecker>, SshError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let boxed = || Box::new(host.clone());
    let learnt = Arc::new(Mutex::new(None));
    let checker = HostKeyChecker {
        host: boxed(),
        known_hosts_files: dest.known_hosts_files.clone(),
        home: home.to_path_buf(),
        policy: dest.strict_host_key_checking,
        learnt: learnt.clone(),
    };
    let config = client_config(dest);
    // The server takes the first of these that it supports (RFC 4253, 7.1).
    debug!(
        "ciphers offered to {host}: {}",
        config
            .preferred
            .cipher
            .iter()
            .map(|name| name.as_ref())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let handshake = client::connect_stream(Arc::new(config), stream, checker);
    let mut handle = match tokio::time::timeout(timeout, handshake).await {
        Err(_) => {
            return Err(SshError::Timeout {
                host: boxed(),
                after: timeout,
                stage: "SSH handshake",
            })
        }
        Ok(Err(HandshakeError::HostKey(error))) => return Err(*error),
        Ok(Err(HandshakeError::Protocol(source))) => {
            return Err(SshError::Handshake {
                host: boxed(),
                source,
            })
        }
        Ok(Ok(handle)) => handle,
    };
    let learnt = learnt
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(key) = learnt {
        record_learnt_key(dest, host, &key, home);
    }
    let auth_timeout = timeout.max(MIN_AUTH_TIMEOUT);
    match tokio::time::timeout(
        auth_timeout,
        auth::authenticate(&mut handle, dest, host, home),
    )
    .await
    {
        Err(_) => {
            return Err(SshError::Timeout {
                host: boxed(),
                after: auth_timeout,
                stage: "authentication",
            })
        }
        Ok(result) => result?,
    }
    debug!("authenticated to {host} as {}", dest.user);
    Ok(handle)
}

/// A TCP connection to `host` opened by the jump host `jump` (a
/// `direct-tcpip` channel), to run the next SSH session over.
async fn forward(
    jump_handle: &Handle<HostKeyChecker>,
    jump: &HostRef,
    host: &HostRef,
    timeout: Duration,
) -> Result<ChannelStream<client::Msg>, SshError> {
    let open = jump_handle.channel_open_direct_tcpip(
        host.host_name.clone(),
        u32::from(host.port),
        "127.0.0.1",
        0,
    );
    match tokio::time::timeout(timeout, open).await {
        Err(_) => Err(SshError::Timeout {
            host: Box::new(host.clone()),
            after: timeout,
            stage: "connecting through the jump host",
        }),
        Ok(Ok(channel)) => Ok(channel.into_stream()),
        Ok(Err(russh::Error::ChannelOpenFailure(failure))) => Err(SshError::JumpForward {
            host: Box::new(host.clone()),
            jump: Box::new(jump.clone()),
            prohibited: matches!(failure, ChannelOpenFailure::AdministrativelyProhibited),
            reason: forward_failure_reason(&failure),
        }),
        Ok(Err(source)) => Err(SshError::Connection {
            host: Box::new(jump.clone()),
            action: format!("opening a connection to {host}"),
            source,
        }),
    }
}

fn forward_failure_reason(failure: &ChannelOpenFailure) -> String {
    match failure {
        ChannelOpenFailure::AdministrativelyProhibited => {
            "forwarding is administratively prohibited".to_string()
        }
        ChannelOpenFailure::ConnectFailed => {
            "the connection failed (refused, unreachable, or the name does not resolve there)"
                .to_string()
        }
        ChannelOpenFailure::UnknownChannelType => {
            "the server does not support TCP forwarding".to_string()
        }
        ChannelOpenFailure::ResourceShortage => "the server is short of resources".to_string(),
        ChannelOpenFailure::Other { code, reason } => format!("{reason} (code {code})"),
    }
}

/// Dials `dest` (directly, or through the last of `jumps`) and sets up an
/// authenticated session with it.
async fn dial(
    dest: &Destination,
    host: &HostRef,
    jumps: &[(Handle<HostKeyChecker>, HostRef)],
    home: &Path,
) -> Result<Handle<HostKeyChecker>, SshError> {
    let timeout = dest.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    match jumps.last() {
        None => {
            let stream = open_tcp(host, timeout).await?;
            establish(dest, host, stream, home, timeout).await
        }
        Some((jump_handle, jump)) => {
            let stream = forward(jump_handle, jump, host, timeout).await?;
            establish(dest, host, stream, home, timeout).await
        }
    }
}

impl Session {
    /// Connects to `dest`, checks its host key and authenticates.
    ///
    /// With `dest.jumps`, connects to each jump host in turn (each one
    /// through the previous one, each with its own host key check and
    /// authentication) and reaches `dest` through the last.
    /// `home` is the user's home directory (default keys live in `<home>/.ssh`).
    ///
    /// A connection refused, or reset or closed before authentication (an
    /// sshd over its `MaxStartups`), is tried again, up to
    /// [`TRIES`](crate::TRIES) times with backoff, each retry reported to
    /// `retries` as an `Event::Retry` (see [`Retries`]); every other
    /// failure is returned at once.
    pub async fn connect(
        dest: &Destination,
        home: &Path,
        retries: Retries<'_>,
    ) -> Result<Session, SshError> {
        let count = dest.jumps.len();
        let mut jumps: Vec<(Handle<HostKeyChecker>, HostRef)> = Vec::with_capacity(count);
        for (index, hop) in dest.jumps.iter().enumerate() {
            let mut host = hop.host_ref();
            host.route = Route::Jump {
                index: index + 1,
                count,
                target: dest.alias.clone(),
            };
            let request = format!("SSH handshake with {host}");
            let handle = retry::retry(retries, &request, || dial(hop, &host, &jumps, home)).await?;
            jumps.push((handle, host));
        }
        let host = dest.host_ref();
        let handle = retry::retry(retries, "SSH connection", || {
            dial(dest, &host, &jumps, home)
        })
        .await?;
        Ok(Session {
            inner: Arc::new(Inner {
                handle,
                destination: dest.clone(),
                jumps: jumps.into_iter().map(|(handle, _)| handle).collect(),
                commands: Arc::new(tokio::sync::Semaphore::new(SESSION_CHANNELS)),
            }),
        })
    }

    /// The destination this session is connected to.
    pub fn destination(&self) -> &Destination {
        &self.inner.destination
    }

    /// Whether the connection has ended (the host went away or keepalives went unanswered).
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    fn connection_error(&self, action: String, source: russh::Error) -> SshError {
        SshError::Connection {
            host: self.inner.destination.host_ref().into(),
            action,
            source,
        }
    }

    /// A stream-local forward to the unix socket `socket_path` on the remote host.
    pub async fn open_unix_stream(&self, socket_path: &str) -> Result<SshStream, SshError> {
        match self
            .inner
            .handle
            .channel_open_direct_streamlocal(socket_path)
            .await
        {
            Ok(channel) => Ok(SshStream {
                inner: channel.into_stream(),
                joined: Vec::new(),
            }),
            Err(russh::Error::ChannelOpenFailure(failure)) => Err(SshError::UnixSocket {
                host: self.inner.destination.host_ref().into(),
                socket_path: socket_path.to_string(),
                failure,
            }),
            Err(source) => {
                Err(self.connection_error(format!("opening a stream to `{socket_path}`"), source))
            }
        }
    }

    /// A new session channel running `command`, once one of the
    /// connection's [`SESSION_CHANNELS`] is free. The channel is closed
    /// however it is let go ([`CommandChannel`]), also when the command
    /// cannot be started.
    pub(crate) async fn start(&self, command: &str) -> Result<CommandChannel, SshError> {
        let open = self.inner.commands.clone().acquire_owned().await.ok();
        let channel = self.open_session_channel(command).await.map_err(|source| {
            self.connection_error(format!("opening a channel to run `{command}`"), source)
        })?;
        let channel = CommandChannel {
            channel: Some(channel),
            open,
        };
        channel
            .get()
            .exec(true, command)
            .await
            .map_err(|source| self.connection_error(format!("running `{command}`"), source))?;
        Ok(channel)
    }

    /// A new session channel, asked for again (up to
    /// [`SESSION_OPEN_TRIES`] times, with a growing wait) while the host
    /// refuses it as "connect failed" (sshd at its `MaxSessions`).
    async fn open_session_channel(
        &self,
        command: &str,
    ) -> Result<russh::Channel<client::Msg>, russh::Error> {
        let mut delay = SESSION_OPEN_DELAY;
        let mut tries = 1;
        loop {
            match self.inner.handle.channel_open_session().await {
                Err(russh::Error::ChannelOpenFailure(ChannelOpenFailure::ConnectFailed))
                    if tries < SESSION_OPEN_TRIES =>
                {
                    debug!(
                        "{} refused a channel to run `{command}` (at its MaxSessions?); asking again in {delay:?}",
                        self.inner.destination.host_ref()
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    tries += 1;
                }
                result => return result,
            }
        }
    }

    /// Runs a short command and collects its exit status and output.
    pub async fn exec(&self, command: &str) -> Result<ExecOutput, SshError> {
        let exec_error = |reason: String| SshError::Exec {
            host: self.inner.destination.host_ref().into(),
            command: command.to_string(),
            reason,
        };
        let mut channel = self.start(command).await?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut status = None;
        let mut signal = None;
        while let Some(message) = channel.get_mut().wait().await {
            match message {
                ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => signal = Some(signal_name),
                ChannelMsg::Failure => {
                    return Err(exec_error("the host refused to run it".to_string()))
                }
                _ => {}
            }
        }
        channel.close().await;
        match (status, signal) {
            (Some(status), _) => Ok(ExecOutput {
                status,
                stdout,
                stderr,
            }),
            (None, Some(signal)) => Err(exec_error(format!("it was killed by signal {signal:?}"))),
            (None, None) if self.is_closed() => Err(exec_error(
                "the connection closed before the command finished".to_string(),
            )),
            (None, None) => Err(exec_error(
                "the host closed the channel without an exit status".to_string(),
            )),
        }
    }
}

impl Session {
    /// Starts `command` on the host and keeps it running for as long as
    /// the returned [`HeldCommand`] lives: its stdin stays open and idle,
    /// its stdout comes back line by line ([`HeldCommand::next_line`]).
    ///
    /// Dropping the [`HeldCommand`] (or [`HeldCommand::release`]) closes
    /// the channel; sshd then closes the command's stdin (RFC 4254,
    /// section 5.3), so a command that reads its stdin to its end (`cat`)
    /// ends too. When the connection itself dies, sshd ends the session
    /// the same way. No task or thread is kept per held command: the
    /// channel is served by the session's own connection task.
    ///
    /// Errors: [`SshError::Connection`] when the channel cannot be opened
    /// or the command cannot be started; [`SshError::Exec`] when the host
    /// refuses to run it.
    pub async fn exec_held(&self, command: &str) -> Result<HeldCommand, SshError> {
        let channel = self.start(command).await?;
        Ok(HeldCommand {
            channel: Some(channel),
            host: self.inner.destination.host_ref(),
            command: command.to_owned(),
            pending: Vec::new(),
            stderr: Vec::new(),
            session: self.clone(),
        })
    }
}

/// A command's session channel and its place among the connection's
/// [`SESSION_CHANNELS`], closed however it is let go: [`CommandChannel::close`]
/// sends the close, and a drop (a failure on the way, a caller that stopped
/// waiting) sends EOF and the close from a task of the current tokio
/// runtime (without one, the connection's end closes it). Until sshd reads
/// the close it counts the session against its `MaxSessions`, so the place
/// is given back only once the close has gone out: a channel opened after
/// it then finds this session ended.
pub(crate) struct CommandChannel {
    /// `None` once closed.
    channel: Option<russh::Channel<client::Msg>>,
    open: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl CommandChannel {
    /// The channel, open until [`CommandChannel::close`].
    pub(crate) fn get(&self) -> &russh::Channel<client::Msg> {
        self.channel
            .as_ref()
            .expect("a command channel is open until closed")
    }

    /// [`CommandChannel::get`], to read from.
    pub(crate) fn get_mut(&mut self) -> &mut russh::Channel<client::Msg> {
        self.channel
            .as_mut()
            .expect("a command channel is open until closed")
    }

    /// Sends EOF on the command's stdin (it reads to its end, then ends).
    async fn eof(&self) {
        let _ = self.get().eof().await;
    }

    /// Closes the channel, then gives its place back.
    async fn close(mut self) {
        if let Some(channel) = self.channel.take() {
            let _ = channel.close().await;
        }
        drop(self.open.take());
    }
}

impl Drop for CommandChannel {
    fn drop(&mut self) {
        let Some(channel) = self.channel.take() else {
            return;
        };
        let open = self.open.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = channel.eof().await;
                let _ = channel.close().await;
                drop(open);
            });
        }
    }
}

/// How long [`HeldCommand::release`] waits for the command to end.
pub const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// A command started by [`Session::exec_held`], held running until this is
/// dropped or [released](HeldCommand::release).
pub struct HeldCommand {
    /// `None` once released; a drop closes it ([`CommandChannel`]).
    channel: Option<CommandChannel>,
    host: HostRef,
    command: String,
    /// Bytes of stdout after its last complete line.
    pending: Vec<u8>,
    /// What the command wrote to stderr so far.
    stderr: Vec<u8>,
    /// Kept so that the connection lives as long as the command is held.
    session: Session,
}

impl fmt::Debug for HeldCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldCommand")
            .field("host", &self.host)
            .field("command", &self.command)
            .field("released", &self.channel.is_none())
            .finish_non_exhaustive()
    }
}

impl HeldCommand {
    /// The next line the command printed on stdout, without its `\n`
    /// (lossily decoded as UTF-8).
    ///
    /// Errors: [`SshError::Exec`] when the command ended (its exit status
    /// or signal, and its stderr, in the reason), the host closed the
    /// channel, or the connection ended, before another whole line came.
    pub async fn next_line(&mut self) -> Result<String, SshError> {
        let mut status = None;
        loop {
            if let Some(end) = self.pending.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let Some(channel) = self.channel.as_mut() else {
                return Err(self.ended("it was released".to_owned()));
            };
            match channel.get_mut().wait().await {
                Some(ChannelMsg::Data { data }) => self.pending.extend_from_slice(&data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    self.stderr.extend_from_slice(&data)
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    status = Some(format!("it exited with status {exit_status}"))
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    status = Some(format!("it was killed by signal {signal_name:?}"))
                }
                Some(ChannelMsg::Failure) => {
                    return Err(self.ended("the host refused to run it".to_owned()))
                }
                Some(_) => {}
                None => {
                    let reason = match status.take() {
                        Some(status) => status,
                        None if self.session.is_closed() => {
                            "the connection closed while it ran".to_owned()
                        }
                        None => "the host closed the channel".to_owned(),
                    };
                    return Err(self.ended(reason));
                }
            }
        }
    }

    /// What the command wrote to stderr so far (lossily decoded).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn ended(&self, reason: String) -> SshError {
        let stderr = self.stderr();
        let stderr = stderr.trim();
        SshError::Exec {
            host: Box::new(self.host.clone()),
            command: self.command.clone(),
            reason: if stderr.is_empty() {
                reason
            } else {
                format!("{reason}; it said: {stderr}")
            },
        }
    }

    /// Ends the command and waits until it has: sends EOF on its stdin,
    /// waits for its exit status (or signal) or for the host to close the
    /// channel, at most [`RELEASE_WAIT`], then closes the channel. A
    /// command that exits on EOF (`cat`) has ended when this returns, so
    /// whatever it held on the host (a `flock`) is free; one that does not
    /// is left to the channel's close.
    pub async fn release(mut self) {
        if let Some(mut channel) = self.channel.take() {
            channel.eof().await;
            let ended = async {
                loop {
                    match channel.get_mut().wait().await {
                        Some(ChannelMsg::ExitStatus { .. } | ChannelMsg::ExitSignal { .. })
                        | None => break,
                        Some(_) => {}
                    }
                }
            };
            let _ = tokio::time::timeout(RELEASE_WAIT, ended).await;
            channel.close().await;
        }
    }
}

/// A byte stream to a remote unix socket, carried by one SSH channel.
///
/// Full duplex; `shutdown` sends EOF to the remote side while reads go on,
/// and dropping the stream closes the channel. A vectored write goes out as
/// one channel message (see [`poll_write_joined`]).
pub struct SshStream {
    inner: ChannelStream<client::Msg>,
    /// The joined bytes of the last vectored write; reused.
    joined: Vec<u8>,
}

impl fmt::Debug for SshStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshStream").finish_non_exhaustive()
    }
}

impl AsyncRead for SshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        poll_write_joined(Pin::new(&mut this.inner), &mut this.joined, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The most bytes of a vectored write joined into one write: OpenSSH's
/// largest channel packet for a forwarded stream (`CHAN_TCP_PACKET_DEFAULT`
/// in its `channels.h`). A channel's writer sends at most the peer's
/// maximum packet size per message anyway.
const JOINED_WRITE: usize = 32 * 1024;

/// A vectored write of `bufs` to `inner` as one write of the slices joined
/// (up to [`JOINED_WRITE`] bytes, in `joined`), so that a channel sends them
/// in one SSH packet. Without it, a writer that asks for vectored writes (an
/// HTTP/2 connection: a frame's 9-byte header, then its payload) has every
/// slice sent in a packet of its own, each encrypted and MACed apart.
///
/// `inner` reports how many of the joined bytes it took, a prefix of them,
/// which is what is returned: nothing is dropped or reordered. A russh
/// channel writer that returns `Pending` keeps the message it made of the
/// bytes of that call and sends them on the next call; the caller repeats
/// the same bytes then (the `AsyncWrite` contract), so joining them again
/// gives the same prefix. Writing nothing returns 0 without a write (the
/// channel refuses an empty one).
fn poll_write_joined<W: AsyncWrite>(
    inner: Pin<&mut W>,
    joined: &mut Vec<u8>,
    cx: &mut Context<'_>,
    bufs: &[std::io::IoSlice<'_>],
) -> Poll<std::io::Result<usize>> {
    let mut slices = bufs.iter().filter(|slice| !slice.is_empty());
    let Some(first) = slices.next() else {
        return Poll::Ready(Ok(0));
    };
    if first.len() >= JOINED_WRITE {
        return inner.poll_write(cx, first);
    }
    joined.clear();
    joined.extend_from_slice(first);
    for slice in slices {
        let room = JOINED_WRITE - joined.len();
        if room == 0 {
            break;
        }
        joined.extend_from_slice(&slice[..slice.len().min(room)]);
    }
    inner.poll_write(cx, joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_stream<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>() {}
    fn assert_shared<T: Clone + Send + Sync + 'static>() {}

    #[test]
    fn types_fit_their_users() {
        assert_stream::<SshStream>();
        fn assert_send<T: Send + Sync + 'static>() {}
        assert_send::<HeldCommand>();
        assert_shared::<Session>();
    }

    /// A channel writer as russh's: each write becomes one message of at
    /// most `max` bytes, made from the bytes of the call; every other
    /// call returns `Pending` holding its message and reports it on the
    /// next call, whatever that call passes.
    struct Messages {
        max: usize,
        held: Option<usize>,
        sent: Vec<Vec<u8>>,
    }

    impl AsyncWrite for Messages {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            if let Some(taken) = self.held.take() {
                return Poll::Ready(Ok(taken));
            }
            let taken = buf.len().min(self.max);
            self.sent.push(buf[..taken].to_vec());
            if self.sent.len() % 2 == 1 {
                self.held = Some(taken);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(taken))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Writes `parts` with vectored writes until all are taken, as an
    /// HTTP/2 connection writes its frames; the messages sent.
    async fn write_joined(parts: &[Vec<u8>], max: usize) -> Vec<Vec<u8>> {
        let mut writer = Messages {
            max,
            held: None,
            sent: Vec::new(),
        };
        let mut joined = Vec::new();
        let total: usize = parts.iter().map(Vec::len).sum();
        let mut written = 0;
        while written < total {
            let mut skip = written;
            let mut slices = Vec::new();
            for part in parts {
                let from = skip.min(part.len());
                skip -= from;
                slices.push(std::io::IoSlice::new(&part[from..]));
            }
            let taken = std::future::poll_fn(|cx| {
                poll_write_joined(Pin::new(&mut writer), &mut joined, cx, &slices)
            })
            .await
            .expect("write");
            assert!(taken > 0);
            written += taken;
        }
        let nothing = std::future::poll_fn(|cx| {
            poll_write_joined(Pin::new(&mut writer), &mut joined, cx, &[])
        })
        .await
        .expect("an empty write");
        assert_eq!(nothing, 0);
        writer.sent
    }

    #[tokio::test]
    async fn vectored_writes_are_joined_into_one_message_in_order() {
        let part = |len: usize, seed: usize| -> Vec<u8> {
            (0..len).map(|n| ((n * 7 + seed) % 251) as u8).collect()
        };
        // Frames of HTTP/2: a 9-byte header, then 16 KiB of payload; an
        // empty slice; a slice larger than a joined write.
        let frame = 16 * 1024;
        let parts = vec![
            part(9, 1),
            part(frame, 2),
            Vec::new(),
            part(9, 3),
            part(frame, 4),
            part(9, 5),
            part(JOINED_WRITE + 100, 6),
            part(3, 7),
        ];
        let whole = parts.concat();
        for max in [JOINED_WRITE, 1000, 7] {
            let sent = write_joined(&parts, max).await;
            assert_eq!(sent.concat(), whole, "max {max}: bytes lost or reordered");
            assert!(sent.iter().all(|message| message.len() <= max), "max {max}");
        }
        // One message holds a header and its payload, and more.
        let sent = write_joined(&parts, JOINED_WRITE).await;
        assert_eq!(sent[0].len(), JOINED_WRITE);
        assert_eq!(sent[0][..9 + frame], whole[..9 + frame]);
    }

    #[test]
    fn aes_gcm_is_offered_first_only_with_aes_in_hardware() {
        use russh::cipher::{AES_256_GCM, CHACHA20_POLY1305};
        let default = Preferred::default().cipher.to_vec();
        assert_eq!(default[0], CHACHA20_POLY1305);
        assert_eq!(cipher_order(&default, false), default);
        let order = cipher_order(&default, true);
        assert_eq!(order[0], AES_256_GCM);
        assert_eq!(order[1], CHACHA20_POLY1305);
        let mut same = order.clone();
        same.sort_by_key(|name| name.as_ref().to_owned());
        let mut expected = default.clone();
        expected.sort_by_key(|name| name.as_ref().to_owned());
        assert_eq!(same, expected, "the same ciphers, reordered");
        // A list without AES-GCM stays as it is.
        assert_eq!(
            cipher_order(&[CHACHA20_POLY1305], true),
            [CHACHA20_POLY1305]
        );
    }

    fn host() -> HostRef {
        HostRef::new("lab", "127.0.0.9", 2299)
    }

    fn destination(alias: &str, port: u16, timeout: Option<Duration>) -> Destination {
        Destination {
            alias: alias.into(),
            host_name: "127.0.0.1".into(),
            port,
            user: "nobody".into(),
            identity_files: vec![],
            identities_only: true,
            known_hosts_files: vec![],
            connect_timeout: timeout,
            strict_host_key_checking: StrictHostKeyChecking::Yes,
            server_alive: Default::default(),
            jumps: vec![],
        }
    }

    fn silent() -> Retries<'static> {
        Retries {
            runner: "lab",
            reporter: &mab_events::Silent,
        }
    }

    #[tokio::test]
    async fn connect_timeout_covers_a_silent_host_and_names_the_hop() {
        // Accepts connections and never says a word, like a host whose sshd hangs.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let held = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                connections.push(connection);
            }
        });
        let one_second = Some(Duration::from_secs(1));
        let behind = Destination {
            jumps: vec![destination("bastion", port, one_second)],
            ..destination("inner", 1, None)
        };
        let cases = [
            (
                destination("silent", port, one_second),
                format!("`silent` (127.0.0.1:{port}) did not answer within 1 s (SSH handshake)"),
            ),
            // The jump host's own ConnectTimeout applies, and the message names the hop.
            (
                behind,
                format!(
                    "`bastion` (127.0.0.1:{port}, the jump host for `inner`) did not answer \
                     within 1 s (SSH handshake)"
                ),
            ),
        ];
        let home = tempfile::tempdir().expect("temp dir");
        for (dest, message) in cases {
            let started = std::time::Instant::now();
            let error = Session::connect(&dest, home.path(), silent())
                .await
                .expect_err("a silent host");
            assert_eq!(error.kind(), crate::ErrorKind::Timeout, "{error}");
            assert_eq!(error.to_string(), message);
            let elapsed = started.elapsed();
            assert!(
                elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
                "{elapsed:?}"
            );
        }
        held.abort();
    }

    /// What sshd does to a connection over its `MaxStartups`: closed
    /// before its banner, reset, or closed after the banner. Each is
    /// retried: three connections, then the last error; a refused connect
    /// too.
    #[tokio::test]
    async fn dropped_handshakes_are_tried_three_times() {
        #[derive(Clone, Copy, Debug)]
        enum Drop {
            BeforeBanner,
            Reset,
            AfterBanner,
        }
        for how in [Drop::BeforeBanner, Drop::Reset, Drop::AfterBanner] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("address").port();
            let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = accepted.clone();
            let server = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                while let Ok((mut connection, _)) = listener.accept().await {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    match how {
                        Drop::BeforeBanner => {}
                        // SO_LINGER 0: closing sends a reset (and cannot block).
                        #[allow(deprecated)]
                        Drop::Reset => connection.set_linger(Some(Duration::ZERO)).expect("linger"),
                        Drop::AfterBanner => {
                            let _ = connection.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
                        }
                    }
                }
            });
            let home = tempfile::tempdir().expect("temp dir");
            let dest = destination("throttled", port, Some(Duration::from_secs(5)));
            let error = Session::connect(&dest, home.path(), silent())
                .await
                .expect_err("every connection is dropped");
            assert!(retry::transient(&error), "{how:?}: {error:?}");
            assert_eq!(
                accepted.load(std::sync::atomic::Ordering::SeqCst),
                retry::TRIES as usize,
                "{how:?}"
            );
            server.abort();
        }
        let heard = mab_events::Recorder::default();
        let retries = Retries {
            runner: "closed",
            reporter: &heard,
        };
        let home = tempfile::tempdir().expect("temp dir");
        let error = Session::connect(&destination("closed", 1, None), home.path(), retries)
            .await
            .expect_err("nothing listens on port 1");
        assert_eq!(error.kind(), crate::ErrorKind::Refused, "{error}");
        assert_eq!(heard.events().len(), 2);
    }

    #[tokio::test]
    async fn refused_and_unresolvable_hosts() {
        // Port 1 on a loopback address nothing listens on.
        let refused = HostRef::new("closed", "127.0.0.1", 1);
        let error = open_tcp(&refused, Duration::from_secs(5))
            .await
            .expect_err("nothing listens on port 1");
        assert_eq!(error.kind(), crate::ErrorKind::Refused, "{error}");
        assert_eq!(
            error.to_string(),
            "connection to `closed` (127.0.0.1:1) was refused"
        );

        let unresolvable = HostRef::new("nowhere.invalid", "nowhere.invalid", 22);
        let error = open_tcp(&unresolvable, Duration::from_secs(5))
            .await
            .expect_err(".invalid never resolves");
        assert_eq!(error.kind(), crate::ErrorKind::Dns, "{error}");
        assert!(
            error
                .to_string()
                .starts_with("cannot resolve the host name of `nowhere.invalid:22`"),
            "{error}"
        );
    }

    /// Collects what a test's tracing subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The warnings `action` logs, one per line.
    fn warnings_of(action: impl FnOnce()) -> Vec<String> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, action);
        let bytes = captured
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Learning a key under `accept-new` is never silent: a warning names
    /// the host, the key type, the fingerprint and the file; so does a
    /// known_hosts file that cannot be written.
    #[test]
    fn learnt_keys_are_announced() {
        const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIALhTKmvu8V3wV3hjue892lxPCF9OQwPDf2RA6JYoRLs";
        const FINGERPRINT: &str = "SHA256:n/5Y4aiKvTa0vb7H59haJ0DE19Q4LE0BpmH/+km0eCM";
        let key = russh::keys::parse_public_key_base64(KEY).expect("test key");
        let home = tempfile::tempdir().expect("temp dir");
        let home = home.path();
        // A file where the known_hosts file's directory should be.
        std::fs::write(home.join("blocker"), "").expect("write");
        let learning = home.join(".ssh/known_hosts");
        let unwritable = home.join("blocker/known_hosts");
        // (known_hosts file, warnings, the parts each warning names)
        let cases: [(&Path, usize, &[&str]); 3] = [
            (
                &learning,
                1,
                &[
                    "WARN",
                    "`lab` (127.0.0.9:2299)",
                    "ssh-ed25519",
                    FINGERPRINT,
                    "~/.ssh/known_hosts",
                    "accept-new",
                ],
            ),
            // Already recorded: nothing new to say.
            (&learning, 0, &[]),
            (
                &unwritable,
                1,
                &[
                    "WARN",
                    "cannot add",
                    "`lab` (127.0.0.9:2299)",
                    "ssh-ed25519",
                    FINGERPRINT,
                    "~/blocker/known_hosts",
                    "this connection only",
                ],
            ),
        ];
        for (file, count, parts) in cases {
            let dest = Destination {
                known_hosts_files: vec![file.to_path_buf()],
                ..destination("lab", 2299, None)
            };
            let warnings = warnings_of(|| record_learnt_key(&dest, &host(), &key, home));
            assert_eq!(warnings.len(), count, "{file:?}: {warnings:?}");
            for warning in &warnings {
                for part in parts {
                    assert!(warning.contains(part), "{part} missing in: {warning}");
                }
            }
        }
        let recorded = std::fs::read_to_string(&learning).expect("known_hosts was written");
        assert_eq!(recorded, format!("[127.0.0.9]:2299 ssh-ed25519 {KEY}\n"));
    }

    /// A stand-in for sshd: takes any key and every session channel,
    /// refuses every command (`refuse`) or leaves it running without a
    /// word, and adds a permit to `closed` for each channel the client
    /// closes.
    struct Commands {
        refuse: bool,
        closed: Arc<tokio::sync::Semaphore>,
        /// How many session channels are still to be refused as "connect
        /// failed", as sshd does at its `MaxSessions`.
        refused_opens: Arc<std::sync::atomic::AtomicU32>,
    }

    impl russh::server::Handler for Commands {
        type Error = russh::Error;

        async fn auth_publickey(
            &mut self,
            _user: &str,
            _key: russh::server::VerifiedPublicKey<'_>,
        ) -> Result<russh::server::Auth, Self::Error> {
            Ok(russh::server::Auth::Accept)
        }

        async fn channel_open_session(
            &mut self,
            _channel: russh::Channel<russh::server::Msg>,
            reply: russh::server::ChannelOpenHandle,
            _session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            use std::sync::atomic::Ordering;
            let refused = self
                .refused_opens
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
            match refused {
                true => reply.reject(ChannelOpenFailure::ConnectFailed).await,
                false => reply.accept().await,
            }
            Ok(())
        }

        async fn exec_request(
            &mut self,
            channel: russh::ChannelId,
            _command: &[u8],
            session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            if self.refuse {
                session.channel_failure(channel)?;
            }
            Ok(())
        }

        async fn channel_close(
            &mut self,
            _channel: russh::ChannelId,
            _session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            self.closed.add_permits(1);
            Ok(())
        }
    }

    /// A [`Session`] with a [`Commands`] server on a loopback port, and
    /// the server's count of closed channels.
    async fn commands_session(refuse: bool, home: &Path) -> (Session, Arc<tokio::sync::Semaphore>) {
        commands_session_refusing(refuse, 0, home).await
    }

    /// [`commands_session`] whose server refuses its first
    /// `refused_opens` session channels as "connect failed".
    async fn commands_session_refusing(
        refuse: bool,
        refused_opens: u32,
        home: &Path,
    ) -> (Session, Arc<tokio::sync::Semaphore>) {
        use russh::keys::ssh_key::{private::Ed25519Keypair, LineEnding};
        use russh::keys::PrivateKey;
        let key = |seed: u8| PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]));
        let client_key = home.join("id_ed25519");
        std::fs::write(
            &client_key,
            key(1)
                .to_openssh(LineEnding::LF)
                .expect("encode the key")
                .as_bytes(),
        )
        .expect("write the key");
        let config = Arc::new(russh::server::Config {
            keys: vec![key(2)],
            ..russh::server::Config::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let closed = Arc::new(tokio::sync::Semaphore::new(0));
        let handler = Commands {
            refuse,
            closed: closed.clone(),
            refused_opens: Arc::new(std::sync::atomic::AtomicU32::new(refused_opens)),
        };
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let running = russh::server::run_stream(config, stream, handler)
                .await
                .expect("serve");
            let _ = running.await;
        });
        let dest = Destination {
            identity_files: vec![client_key],
            known_hosts_files: vec![home.join("known_hosts")],
            strict_host_key_checking: StrictHostKeyChecking::AcceptNew,
            ..destination("commands", port, Some(Duration::from_secs(5)))
        };
        let session = Session::connect(&dest, home, silent())
            .await
            .expect("connect to the stand-in");
        (session, closed)
    }

    /// A command's channel is closed when the host refuses the command,
    /// and when the caller stops waiting for it, so that sshd stops
    /// counting it against its `MaxSessions`; its place among the
    /// [`SESSION_CHANNELS`] comes back with the close.
    #[tokio::test]
    async fn channels_are_closed_on_every_way_out() {
        let closes = |closed: Arc<tokio::sync::Semaphore>, count: u32| async move {
            tokio::time::timeout(Duration::from_secs(5), closed.acquire_many(count))
                .await
                .expect("the channels were closed")
                .expect("open")
                .forget();
        };
        let home = tempfile::tempdir().expect("temp dir");
        let (session, closed) = commands_session(true, home.path()).await;
        // More refusals than the connection holds channels: each gave its
        // place back.
        for _ in 0..SESSION_CHANNELS + 2 {
            let error = session.exec("true").await.expect_err("refused");
            assert!(
                error.to_string().contains("the host refused to run it"),
                "{error}"
            );
        }
        closes(closed.clone(), SESSION_CHANNELS as u32 + 2).await;
        let error = session.exec_held("cat").await.map(drop);
        assert!(error.is_ok(), "started: {error:?}");
        closes(closed, 1).await;

        let home = tempfile::tempdir().expect("temp dir");
        let (session, closed) = commands_session(false, home.path()).await;
        for _ in 0..SESSION_CHANNELS + 2 {
            let waited =
                tokio::time::timeout(Duration::from_millis(100), session.exec("sleep 100"));
            assert!(waited.await.is_err(), "the command never ends");
        }
        closes(closed, SESSION_CHANNELS as u32 + 2).await;
    }

    /// A command channel that the host refuses as "connect failed" (sshd
    /// at its `MaxSessions`) is asked for again: refused one time fewer
    /// than [`SESSION_OPEN_TRIES`], the command runs (the stand-in
    /// refuses it, after opening its channel); refused as many times, the
    /// refusal is the error.
    #[tokio::test]
    async fn refused_session_channels_are_asked_for_again() {
        let home = tempfile::tempdir().expect("temp dir");
        let (session, _) =
            commands_session_refusing(true, SESSION_OPEN_TRIES - 1, home.path()).await;
        let error = session
            .exec("true")
            .await
            .expect_err("the command is refused");
        assert!(
            error.to_string().contains("the host refused to run it"),
            "the channel was opened: {error}"
        );

        let home = tempfile::tempdir().expect("temp dir");
        let (session, _) = commands_session_refusing(true, SESSION_OPEN_TRIES, home.path()).await;
        let error = session.exec("true").await.expect_err("no channel");
        assert!(
            error
                .to_string()
                .contains("opening a channel to run `true`"),
            "{error}"
        );
    }

    /// A piped command's channel is closed when the host refuses it (the
    /// refusal is what `finish` says) and when it is dropped.
    #[tokio::test]
    async fn piped_commands_close_their_channels() {
        let home = tempfile::tempdir().expect("temp dir");
        let (session, closed) = commands_session(true, home.path()).await;
        let piped = session.exec_piped("cat").await.expect("started");
        let error = piped.finish().await.expect_err("refused");
        assert!(
            error.to_string().contains("the host refused to run it"),
            "{error}"
        );
        let dropped = session.exec_piped("cat").await.expect("started");
        drop(dropped);
        tokio::time::timeout(Duration::from_secs(5), closed.acquire_many(2))
            .await
            .expect("both channels were closed")
            .expect("open")
            .forget();
    }

    #[test]
    fn host_key_errors_say_how_to_fix_them() {
        let unknown = SshError::UnknownHostKey {
            host: host().into(),
            key_type: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
            known_hosts: "~/.ssh/known_hosts".into(),
        };
        assert_eq!(unknown.kind(), crate::ErrorKind::HostKey);
        assert_eq!(
            unknown.to_string(),
            "the host key of `lab` (127.0.0.9:2299) is not known: its ssh-ed25519 key has fingerprint SHA256:abc"
        );
        assert_eq!(
            unknown.hint().as_deref(),
            Some("verify the fingerprint, then add the key with: ssh-keyscan -p 2299 127.0.0.9 >> ~/.ssh/known_hosts")
        );

        let changed = SshError::ChangedHostKey {
            host: host().into(),
            key_type: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
            file: PathBuf::from("/home/u/.ssh/known_hosts"),
            line: 7,
            file_shown: "~/.ssh/known_hosts".into(),
        };
        assert_eq!(changed.kind(), crate::ErrorKind::HostKey);
        let message = changed.to_string();
        assert!(
            message.contains("/home/u/.ssh/known_hosts line 7"),
            "{message}"
        );
        assert!(message.contains("may be an attack"), "{message}");
        let hint = changed.hint().unwrap_or_default();
        assert!(
            hint.ends_with("ssh-keygen -f ~/.ssh/known_hosts -R '[127.0.0.9]:2299'"),
            "{hint}"
        );
    }
}
