//! Work that a value dropped midway (a job stopped by a signal or a time
//! limit) leaves to a task: removing a smoke-test container, stopping a
//! Podman build on its host. A drop cannot wait, so the work runs in a task
//! of the current runtime, listed process-wide, and mab waits for the list
//! before it exits (the runtime's shutdown would cancel the tasks).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;

/// A task left running, and its error (why its work failed).
type Task = JoinHandle<Result<(), String>>;

/// A process-wide list of such tasks, each with what it does (`T`).
pub(crate) struct Leftovers<T> {
    tasks: Mutex<Vec<(T, Task)>>,
}

impl<T> Leftovers<T> {
    pub(crate) const fn new() -> Leftovers<T> {
        Leftovers {
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Runs `work` (its error: why it failed) in a task of the current
    /// runtime and lists it with `what`; without a runtime nothing runs.
    pub(crate) fn leave(
        &self,
        what: T,
        work: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = runtime.spawn(work);
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((what, task));
    }

    /// Waits, up to `limit` in all, for the listed tasks (taking them off
    /// the list); returns each that failed, with its error, or did not end
    /// in time (aborted; its why is "`SUBJECT` did not end within LIMIT").
    pub(crate) async fn finish(&self, limit: Duration, subject: &str) -> Vec<(T, String)> {
        let pending = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let deadline = tokio::time::Instant::now() + limit;
        let mut left = Vec::new();
        for (what, mut task) in pending {
            let why = match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(Ok(()))) => continue,
                Ok(Ok(Err(why))) => why,
                Ok(Err(error)) => error.to_string(),
                Err(_elapsed) => {
                    task.abort();
                    format!("{subject} did not end within {limit:?}")
                }
            };
            left.push((what, why));
        }
        left
    }
}
