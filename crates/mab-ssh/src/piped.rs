//! A command on the host with its stdin and stdout streamed both ways
//! ([`Session::exec_piped`]).

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
/// Nothing is buffered beyond one channel message: stdout is read from
/// the channel as the caller reads, and a write waits for the host's
/// channel window. The session's connection hands every channel's
/// messages over in turn, so a caller that writes much to stdin must read
/// stdout at the same time (`tokio::io::split`, a `join!`), as with a
/// local pipe; it need not read stderr, which is kept here (its last
/// [`STDERR_KEPT`] bytes). Once the command has exited or its channel has
/// closed, a write fails with `BrokenPipe` instead of waiting for a window
/// that will not open.
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
    /// A message of stdout not yet read to its end, and how far it was read.
    stdout: Vec<u8>,
    read: usize,
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
            stdout: Vec::new(),
            read: 0,
            stdout_ended: false,
            stderr: Vec::new(),
            status: None,
            signal: None,
            refused: false,
            blocked_write: None,
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
            if this.read < this.stdout.len() {
                let count = buf.remaining().min(this.stdout.len() - this.read);
                buf.put_slice(&this.stdout[this.read..this.read + count]);
                this.read += count;
                return Poll::Ready(Ok(()));
            }
            if this.stdout_ended || this.refused {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.poll_message(cx)) {
                Some(data) => {
                    this.stdout = data;
                    this.read = 0;
                }
                None => return Poll::Ready(Ok(())),
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
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                format!(
                    "`{}` on {} no longer reads its input",
                    this.command, this.host
                ),
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match this.writer.as_mut().poll_write(cx, buf) {
            Poll::Pending => {
                this.blocked_write = Some(cx.waker().clone());
                Poll::Pending
            }
            ready => ready,
        }
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
