//! A command on the host with its stdin and stdout streamed both ways
//! ([`Session::exec_piped`]).

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use futures_util::future::BoxFuture;
use russh::ChannelMsg;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{HostRef, SshError};
use crate::session::{CommandChannel, Session};

/// How much of a piped command's stderr is kept: its last 64 KiB.
pub const STDERR_KEPT: usize = 64 * 1024;

/// How much of a piped command's stdout a write that waits for the
/// channel's window takes in for later reads: 256 KiB.
pub const STDOUT_HELD: usize = 256 * 1024;

/// How a [`PipedCommand`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipedExit {
    /// Its exit status; `None` when it was killed by a signal or the host
    /// closed the channel without one.
    pub status: Option<u32>,
    /// The signal that killed it (`KILL`, `TERM`), when one did.
    pub signal: Option<String>,
    /// The last [`STDERR_KEPT`] bytes it wrote to stderr, lossily decoded
    /// as UTF-8.
    pub stderr: String,
}

/// Where the reading side of a piped command's channel is.
enum Reading {
    /// Between messages.
    Idle(CommandChannel),
    /// Waiting for the next message; the future owns the channel and gives
    /// it back with the message.
    Waiting(BoxFuture<'static, (CommandChannel, Option<ChannelMsg>)>),
    /// The host closed the channel (or it was closed here); no more
    /// messages.
    Ended,
}

/// A command started by [`Session::exec_piped`]: reading it reads the
/// command's stdout, writing it writes its stdin, `shutdown` sends EOF on
/// its stdin, and [`PipedCommand::finish`] waits for its exit.
///
/// Stdout is read from the channel as the caller reads, and a write waits
/// for the host's channel window. While a write waits, it takes in the
/// channel's messages itself, up to [`STDOUT_HELD`] bytes of stdout kept
/// for later reads, as a pipe's buffer would: so a command that ends, or
/// prints a little, while the caller only writes does not leave the write
/// waiting. The session's connection hands every channel's messages over
/// in turn, so a caller that writes much to a command that prints much
/// must read stdout at the same time (`tokio::io::split`, a `join!`), as
/// with a local pipe; it need not read stderr, which is kept here (its
/// last [`STDERR_KEPT`] bytes). Once the command has exited or its channel
/// has closed, a write fails with `BrokenPipe` instead of waiting for a
/// window that will not open.
///
/// Dropping it closes the channel (EOF on stdin, then the close) and gives
/// its place among the connection's
/// [`SESSION_CHANNELS`](crate::SESSION_CHANNELS) back; sshd then ends the
/// session as a closed `ssh` does (the command's stdin and stdout close; a
/// command that goes on without them is not killed).
pub struct PipedCommand {
    reading: Reading,
    writer: Pin<Box<dyn AsyncWrite + Send + Sync>>,
    /// EOF went out on stdin.
    stdin_closed: bool,
    /// Messages of stdout not yet read, the first of them read up to
    /// `read`, and their bytes not yet read.
    stdout: VecDeque<Vec<u8>>,
    read: usize,
    held: usize,
    /// EOF came on stdout.
    stdout_ended: bool,
    stderr: Vec<u8>,
    status: Option<u32>,
    signal: Option<String>,
    /// The host refused to run the command.
    refused: bool,
    /// A write waiting for the channel's window, woken when the command
    /// ends.
    blocked_write: Option<Waker>,
    /// A read waiting for stdout, woken when a write takes some in.
    blocked_read: Option<Waker>,
    host: HostRef,
    command: String,
    /// Kept so that the connection lives as long as the command.
    session: Session,
}

impl fmt::Debug for PipedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipedCommand")
            .field("host", &self.host)
            .field("command", &self.command)
            .field("stdin_closed", &self.stdin_closed)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts `command` on the host with its stdin and stdout piped: see
    /// [`PipedCommand`].
    ///
    /// Errors: [`SshError::Connection`] when the channel cannot be opened
    /// or the command cannot be started. (A host that refuses to run it
    /// shows in [`PipedCommand::finish`].)
    pub async fn exec_piped(&self, command: &str) -> Result<PipedCommand, SshError> {
        let channel = self.start(command).await?;
        let writer = Box::pin(channel.get().make_writer());
        Ok(PipedCommand {
            reading: Reading::Idle(channel),
            writer,
            stdin_closed: false,
            stdout: VecDeque::new(),
            read: 0,
            held: 0,
            stdout_ended: false,
            stderr: Vec::new(),
            status: None,
            signal: None,
            refused: false,
            blocked_write: None,
            blocked_read: None,
            host: self.destination().host_ref(),
            command: command.to_owned(),
            session: self.clone(),
        })
    }
}

impl PipedCommand {
    /// Whether the command has ended as far as its channel tells: it
    /// exited, was killed, was refused, or the channel closed.
    fn has_ended(&self) -> bool {
        self.status.is_some()
            || self.signal.is_some()
            || self.refused
            || matches!(self.reading, Reading::Ended)
    }

    /// The channel's next piece of stdout (`None` once the channel has
    /// closed or the host refused the command), keeping stderr and the
    /// exit as they come.
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        loop {
            let message = match std::mem::replace(&mut self.reading, Reading::Ended) {
                Reading::Ended => return Poll::Ready(None),
                Reading::Idle(mut channel) => {
                    self.reading = Reading::Waiting(Box::pin(async move {
                        let message = channel.get_mut().wait().await;
                        (channel, message)
                    }));
                    continue;
                }
                Reading::Waiting(mut waiting) => match waiting.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.reading = Reading::Waiting(waiting);
                        return Poll::Pending;
                    }
                    Poll::Ready((channel, Some(message))) => {
                        self.reading = Reading::Idle(channel);
                        message
                    }
                    // Dropping the channel sends the close and gives the
                    // place back (`CommandChannel`).
                    Poll::Ready((_channel, None)) => {
                        self.wake_blocked_write();
                        return Poll::Ready(None);
                    }
                },
            };
            match message {
                ChannelMsg::Data { data } => return Poll::Ready(Some(Vec::from(data))),
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    self.stderr.extend_from_slice(&data);
                    if self.stderr.len() > 2 * STDERR_KEPT {
                        self.stderr.drain(..self.stderr.len() - STDERR_KEPT);
                    }
                }
                ChannelMsg::Eof => self.stdout_ended = true,
                ChannelMsg::ExitStatus { exit_status } => {
                    self.status = Some(exit_status);
                    self.wake_blocked_write();
                }
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    self.signal = Some(format!("{signal_name:?}"));
                    self.wake_blocked_write();
                }
                // Nothing more comes for a refused command.
                ChannelMsg::Failure => {
                    self.refused = true;
                    self.wake_blocked_write();
                    return Poll::Ready(None);
                }
                _ => {}
            }
        }
    }

    /// The error of a write to a command that no longer reads its stdin.
    fn not_reading(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            format!(
                "`{}` on {} no longer reads its input",
                self.command, self.host
            ),
        )
    }

    /// Keeps a piece of stdout for a later read.
    fn hold(&mut self, data: Vec<u8>) {
        if !data.is_empty() {
            self.held += data.len();
            self.stdout.push_back(data);
        }
    }

    fn wake_blocked_read(&mut self) {
        if let Some(waker) = self.blocked_read.take() {
            waker.wake();
        }
    }

    fn wake_blocked_write(&mut self) {
        if let Some(waker) = self.blocked_write.take() {
            waker.wake();
        }
    }

    /// Closes stdin if it is still open, reads and drops what is left of
    /// stdout, and waits for the host to close the channel.
    ///
    /// Errors: [`SshError::Exec`] when the host refused to run the
    /// command, or the connection closed before it ended.
    pub async fn finish(mut self) -> Result<PipedExit, SshError> {
        if !self.stdin_closed {
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut self).await;
        }
        while !self.refused
            && std::future::poll_fn(|cx| self.poll_message(cx))
                .await
                .is_some()
        {}
        let stderr = {
            let start = self.stderr.len().saturating_sub(STDERR_KEPT);
            String::from_utf8_lossy(&self.stderr[start..]).into_owned()
        };
        let failed = |reason: &str| {
            let said = stderr.trim();
            SshError::Exec {
                host: Box::new(self.host.clone()),
                command: self.command.clone(),
                reason: match said.is_empty() {
                    true => reason.to_owned(),
                    false => format!("{reason}; it said: {said}"),
                },
            }
        };
        if self.refused {
            return Err(failed("the host refused to run it"));
        }
        if self.status.is_none() && self.signal.is_none() && self.session.is_closed() {
            return Err(failed("the connection closed before the command ended"));
        }
        Ok(PipedExit {
            status: self.status,
            signal: self.signal.clone(),
            stderr,
        })
    }
}

impl AsyncRead for PipedCommand {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(first) = this.stdout.front() {
                let count = buf.remaining().min(first.len() - this.read);
                buf.put_slice(&first[this.read..this.read + count]);
                this.read += count;
                this.held -= count;
                if this.read == first.len() {
                    this.stdout.pop_front();
                    this.read = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.stdout_ended || this.refused {
                return Poll::Ready(Ok(()));
            }
            match this.poll_message(cx) {
                Poll::Pending => {
                    this.blocked_read = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Poll::Ready(Some(data)) => this.hold(data),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncWrite for PipedCommand {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.stdin_closed || this.has_ended() {
            return Poll::Ready(Err(this.not_reading()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Poll::Ready(written) = this.writer.as_mut().poll_write(cx, buf) {
            return Poll::Ready(written);
        }
        // Waiting for the window: take in what the command says meanwhile.
        while this.held < STDOUT_HELD && !this.has_ended() {
            match this.poll_message(cx) {
                Poll::Ready(Some(data)) => {
                    this.hold(data);
                    this.wake_blocked_read();
                }
                Poll::Ready(None) => this.wake_blocked_read(),
                Poll::Pending => break,
            }
        }
        if this.has_ended() {
            this.wake_blocked_read();
            return Poll::Ready(Err(this.not_reading()));
        }
        this.blocked_write = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().writer.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.stdin_closed {
            return Poll::Ready(Ok(()));
        }
        ready!(this.writer.as_mut().poll_shutdown(cx))?;
        this.stdin_closed = true;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piped_command_is_a_stream_to_hand_on() {
        fn assert_stream<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>() {}
        assert_stream::<PipedCommand>();
    }
}
