//! Smoke runs: one command in a container of a built image, on the engine
//! that built it, with networking disabled, and the container removed
//! afterwards whatever happens.
//!
//! The container is created with `NetworkDisabled` and the network mode
//! `none`: the engine then sets up no network at all for it, not even the
//! loopback-only namespace hook (`libnetwork-setkey`) that `docker run
//! --network none` still runs, which a `dockerd` under QEMU user emulation
//! cannot run (the hook re-executes the engine through `/proc/self/exe`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, LogsOptions, RemoveContainerOptions,
    StartContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use mab_config::Platform;

use crate::{api_error, Engine, EngineError, REQUEST_TIMEOUT};

/// How many bytes of the command's standard output are kept (its end) for
/// [`SmokeOutcome::stdout`].
pub const STDOUT_KEPT: usize = 64 * 1024;

/// How many lines of the command's output (standard output and error, as
/// the engine interleaves them) [`SmokeOutcome::output_tail`] holds.
pub const OUTPUT_TAIL_LINES: usize = 20;

/// A command to run in a container of an image.
#[derive(Clone, Debug)]
pub struct SmokeRun<'a> {
    /// The image, by a name or id the engine knows.
    pub image: &'a str,
    /// The platform of the image, sent with the create request as `docker
    /// run --platform` sends it.
    pub platform: &'a Platform,
    /// The argv: it becomes the container's `Entrypoint`, with an empty
    /// `Cmd`, replacing the image's own (as `docker run --entrypoint`).
    pub argv: &'a [String],
    /// How long the command may run, counted from its start; after it the
    /// container is killed.
    pub timeout: Duration,
    /// Labels of the container (`mab.build=<build id>`), so that one left
    /// behind can be found.
    pub labels: HashMap<String, String>,
}

/// How a smoke run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The command exited with this code (128 + N for a signal N).
    Exited(i64),
    /// It ran past its timeout and was killed.
    TimedOut,
}

/// What a smoke run did.
#[derive(Clone, Debug, PartialEq)]
pub struct SmokeOutcome {
    pub ended: Ended,
    /// The end of its standard output (at most [`STDOUT_KEPT`] bytes,
    /// invalid UTF-8 replaced).
    pub stdout: String,
    /// The last [`OUTPUT_TAIL_LINES`] non-blank lines of its output.
    pub output_tail: Vec<String>,
    /// From the start request to its end (or the timeout).
    pub seconds: f64,
}

/// Removals of containers that a dropped smoke run left to a task
/// ([`Engine::finish_removals`] waits for them).
#[derive(Clone, Default)]
pub(crate) struct Removals(Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>);

impl Removals {
    fn push(&self, task: tokio::task::JoinHandle<()>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
    }

    fn take(&self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// A created container that is removed (forced) when this is dropped
/// unless [`ContainerGuard::remove`] removed it: the removal then runs in a
/// task of the current runtime, tracked in the engine's [`Removals`].
struct ContainerGuard {
    engine: Engine,
    id: String,
    removed: bool,
}

impl ContainerGuard {
    async fn remove(mut self) -> Result<(), EngineError> {
        self.removed = true;
        self.engine.remove_container(&self.id).await
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (engine, id) = (self.engine.clone(), self.id.clone());
            let task = runtime.spawn(async move {
                if let Err(error) = engine.remove_container(&id).await {
                    tracing::warn!("could not remove container {id}: {error}");
                }
            });
            self.engine.removals.push(task);
        }
    }
}

/// The end of a byte stream, at most `limit` bytes.
struct Tail {
    bytes: VecDeque<u8>,
    limit: usize,
}

impl Tail {
    fn new(limit: usize) -> Tail {
        Tail {
            bytes: VecDeque::new(),
            limit,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.limit)..];
        let over = (self.bytes.len() + chunk.len()).saturating_sub(self.limit);
        self.bytes.drain(..over);
        self.bytes.extend(chunk);
    }

    fn text(&self) -> String {
        let (front, back) = self.bytes.as_slices();
        String::from_utf8_lossy(&[front, back].concat()).into_owned()
    }
}

/// The last `count` non-blank lines of `text`, without line ends.
fn last_lines(text: &str, count: usize) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .collect();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

impl Engine {
    /// Runs `run` in a new container: creates it (networking disabled,
    /// see the module's comment), starts it, waits for it up to
    /// `run.timeout` (then kills it), reads its output (bounded, see
    /// [`SmokeOutcome`]) and removes it, forced. The container is removed
    /// on every path: an error, the timeout, and when this future is
    /// dropped (then from a task, see [`Engine::finish_removals`]).
    ///
    /// Errors: [`EngineError::StartFailed`] when the engine cannot start
    /// the command (no such executable in the image, an exec format error);
    /// [`EngineError::Api`] for the other requests the engine refused, and
    /// [`EngineError::Timeout`] when creating the container, or reading
    /// its output, takes over [`REQUEST_TIMEOUT`]. Creating it is not tried
    /// again (a create that reached the engine would leave a second
    /// container); killing and removing it are, as other requests.
    pub async fn smoke_run(&self, run: &SmokeRun<'_>) -> Result<SmokeOutcome, EngineError> {
        let body = ContainerCreateBody {
            image: Some(run.image.to_owned()),
            entrypoint: Some(run.argv.to_vec()),
            cmd: Some(Vec::new()),
            network_disabled: Some(true),
            labels: Some(run.labels.clone()),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            tty: Some(false),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: None,
            platform: run.platform.to_string(),
        };
        let created = self
            .within_limit("POST /containers/create", async {
                self.docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(|error| api_error(&self.label, error))
            })
            .await?;
        let guard = ContainerGuard {
            engine: self.clone(),
            id: created.id,
            removed: false,
        };
        let outcome = self.run_container(&guard.id, run.timeout).await;
        let removed = guard.remove().await;
        let outcome = outcome?;
        removed?;
        Ok(outcome)
    }

    /// Starts the created container `id`, waits for its end up to
    /// `timeout` (killing it then) and reads its output.
    async fn run_container(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<SmokeOutcome, EngineError> {
        let started = Instant::now();
        let ran = tokio::time::timeout(timeout, async {
            self.docker
                .start_container(id, None::<StartContainerOptions>)
                .await
                .map_err(|error| EngineError::StartFailed {
                    engine: self.label.clone(),
                    message: crate::error_message(error),
                })?;
            self.wait_container(id).await
        })
        .await;
        let seconds = started.elapsed().as_secs_f64();
        let ended = match ran {
            Ok(code) => Ended::Exited(code?),
            Err(_elapsed) => {
                let options = KillContainerOptions {
                    signal: "KILL".to_owned(),
                };
                // A container that ended meanwhile cannot be killed: the
                // removal that follows is forced anyway.
                let killed = self
                    .request(&format!("POST /containers/{id}/kill"), || {
                        self.docker.kill_container(id, Some(options.clone()))
                    })
                    .await;
                if let Err(error) = killed {
                    tracing::debug!("could not kill container {id}: {error}");
                }
                Ended::TimedOut
            }
        };
        let (stdout, output) = self
            .within_limit(
                &format!("GET /containers/{id}/logs"),
                self.container_output(id),
            )
            .await?;
        Ok(SmokeOutcome {
            ended,
            stdout: stdout.text(),
            output_tail: last_lines(&output.text(), OUTPUT_TAIL_LINES),
            seconds,
        })
    }

    /// `request` (named `what`, as `POST /containers/create`), given up
    /// as [`EngineError::Timeout`] after [`REQUEST_TIMEOUT`]; not tried
    /// again.
    async fn within_limit<T>(
        &self,
        what: &str,
        request: impl std::future::Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        tokio::time::timeout(REQUEST_TIMEOUT, request)
            .await
            .map_err(|_elapsed| EngineError::Timeout {
                engine: self.label.clone(),
                request: what.to_owned(),
                limit: REQUEST_TIMEOUT,
            })?
    }

    /// The exit code of container `id` once it stopped running.
    async fn wait_container(&self, id: &str) -> Result<i64, EngineError> {
        let mut waited = self.docker.wait_container(id, None::<WaitContainerOptions>);
        match waited.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit as an error.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(error)) => Err(api_error(&self.label, error)),
            None => Err(EngineError::Api {
                engine: self.label.clone(),
                message: format!("waiting for container {id} gave no exit code"),
            }),
        }
    }

    /// The end of the standard output of container `id`, and the end of
    /// its whole output.
    async fn container_output(&self, id: &str) -> Result<(Tail, Tail), EngineError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let (mut stdout, mut output) = (Tail::new(STDOUT_KEPT), Tail::new(STDOUT_KEPT));
        let mut logs = self.docker.logs(id, Some(options));
        while let Some(item) = logs.next().await {
            match item.map_err(|error| api_error(&self.label, error))? {
                LogOutput::StdOut { message } => {
                    stdout.push(&message);
                    output.push(&message);
                }
                LogOutput::StdErr { message } | LogOutput::Console { message } => {
                    output.push(&message)
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        Ok((stdout, output))
    }

    /// Removes container `id`, forced (a running one is killed), with its
    /// anonymous volumes; a container that is gone already counts as
    /// removed.
    pub async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let removed = self
            .request(&format!("DELETE /containers/{id}"), || {
                self.docker.remove_container(id, Some(options.clone()))
            })
            .await;
        match removed {
            Err(EngineError::Api { message, .. }) if message.contains("No such container") => {
                Ok(())
            }
            other => other,
        }
    }

    /// Waits for the removals of containers that dropped smoke runs left
    /// to tasks (a build stopped by a time limit or a signal), so that none
    /// is left behind when mab exits.
    pub async fn finish_removals(&self) {
        for task in self.removals.take() {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_end_of_the_output() {
        let mut tail = Tail::new(8);
        tail.push(b"abc");
        tail.push(b"defghij");
        assert_eq!(tail.text(), "cdefghij");
        tail.push(b"0123456789");
        assert_eq!(tail.text(), "23456789");
        assert_eq!(
            last_lines("a\n\nb  \nc\nd\n", 2),
            vec!["c".to_owned(), "d".to_owned()]
        );
        assert_eq!(last_lines("one\r\n", 5), vec!["one".to_owned()]);
    }
}
