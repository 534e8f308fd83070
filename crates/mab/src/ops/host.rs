//! Commands on a runner's engine host, as mab-engine asks for them
//! ([`mab_engine::HostShell`]): over the runner's SSH connection for a
//! remote runner, as `sh -c` child processes for the `local` one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mab_engine::{HostCommand, HostExit, HostFuture, HostShell, LocalShell};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The host of a runner reached over `session`: each command runs in a
/// session channel of its own ([`mab_ssh::Session::exec_piped`]), by the
/// SSH user's login shell.
pub fn ssh_host(session: mab_ssh::Session) -> Arc<dyn HostShell> {
    Arc::new(SshHost { session })
}

/// This machine, for the `local` runner ([`LocalShell`]).
pub fn local_host() -> Arc<dyn HostShell> {
    Arc::new(LocalShell)
}

struct SshHost {
    session: mab_ssh::Session,
}

impl HostShell for SshHost {
    fn start<'a>(&'a self, script: &'a str) -> HostFuture<'a, io::Result<Box<dyn HostCommand>>> {
        Box::pin(async move {
            let piped = self
                .session
                .exec_piped(script)
                .await
                .map_err(io::Error::other)?;
            let command: Box<dyn HostCommand> = Box::new(SshCommand(piped));
            Ok(command)
        })
    }

    fn name(&self) -> String {
        self.session.destination().to_string()
    }
}

/// A command of [`SshHost`]; its errors carry the [`mab_ssh::SshError`]
/// (host, command, hint) as their inner error.
struct SshCommand(mab_ssh::PipedCommand);

impl AsyncRead for SshCommand {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SshCommand {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl HostCommand for SshCommand {
    fn wait(self: Box<Self>) -> HostFuture<'static, io::Result<HostExit>> {
        Box::pin(async move {
            let exit = self.0.finish().await.map_err(io::Error::other)?;
            Ok(HostExit {
                status: exit.status,
                stderr: exit.stderr,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The local host runs `sh -c`: stdin in, stdout out, exit status and
    /// stderr at the end.
    #[tokio::test]
    async fn the_local_host_runs_scripts() {
        let host = local_host();
        assert_eq!(host.name(), "this machine");
        let mut command = host
            .start("read line; echo \"got $line\"; echo done >&2; exit 4")
            .await
            .unwrap();
        command.write_all(b"hello\n").await.unwrap();
        command.shutdown().await.unwrap();
        let mut output = String::new();
        command.read_to_string(&mut output).await.unwrap();
        assert_eq!(output, "got hello\n");
        let exit = command.wait().await.unwrap();
        assert_eq!(
            exit,
            HostExit {
                status: Some(4),
                stderr: "done\n".to_owned()
            }
        );
    }
}
