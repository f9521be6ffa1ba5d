//! The controller's tasks and what happens when one dies. A critical task (the control loop,
//! the Lease, the HTTP servers) that ends while the controller is not stopping ends the process
//! with an error, so Kubernetes restarts the pod instead of leaving a half-alive controller that
//! says ready. A restartable task (the status writer) is started again, and counted.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounterVec;
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How a critical task ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {task} task {how}")]
pub struct TaskEnded {
    pub task: &'static str,
    pub how: String,
}

/// The running instance of a restartable task, for tests that kill it.
pub type Current = Arc<Mutex<Option<AbortHandle>>>;

/// The critical tasks of a running controller, and the restartable ones (for tests).
#[derive(Debug, Default)]
pub struct Critical {
    set: JoinSet<&'static str>,
    /// Test hooks: the abort handles by name.
    handles: Vec<(&'static str, AbortHandle)>,
    restartable: Vec<(&'static str, Current)>,
}

impl Critical {
    pub fn spawn(&mut self, task: &'static str, run: impl Future<Output = ()> + Send + 'static) {
        let handle = self.set.spawn(
            async move {
                run.await;
                task
            }
            .instrument(tracing::info_span!("task", task)),
        );
        self.handles.push((task, handle));
    }

    /// Lets `kill` reach a restartable task.
    pub fn track(&mut self, task: &'static str, current: Current) {
        self.restartable.push((task, current));
    }

    /// Resolves when the first task ends, saying which and how; pending forever with no tasks.
    pub async fn first_ended(&mut self) -> TaskEnded {
        match self.set.join_next().await {
            Some(Ok(task)) => TaskEnded {
                task,
                how: "ended".into(),
            },
            Some(Err(e)) => TaskEnded {
                task: self.name_of(&e),
                how: describe(&e),
            },
            None => std::future::pending().await,
        }
    }

    fn name_of(&self, e: &JoinError) -> &'static str {
        self.handles
            .iter()
            .find(|(_, h)| h.id() == e.id())
            .map_or("unknown", |(name, _)| name)
    }

    /// Waits for every task to end, at most `limit`.
    pub async fn join_all(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            while self.set.join_next().await.is_some() {}
        })
        .await;
    }

    /// Aborts a task, as if it had died: for tests of what the process does then.
    #[doc(hidden)]
    pub fn kill(&self, task: &str) -> bool {
        let mut any = false;
        for (_, h) in self.handles.iter().filter(|(n, _)| *n == task) {
            h.abort();
            any = true;
        }
        for (_, current) in self.restartable.iter().filter(|(n, _)| *n == task) {
            if let Some(h) = current.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                h.abort();
                any = true;
            }
        }
        any
    }
}

fn describe(e: &JoinError) -> String {
    if e.is_panic() {
        "panicked".into()
    } else {
        "was cancelled".into()
    }
}

/// Runs a task made by `start` until `stop`; when it ends or panics before that, logs it,
/// counts it in `restarts{task}`, and starts it again after `backoff`.
pub async fn restarting<F, Fut>(
    task: &'static str,
    restarts: IntCounterVec,
    stop: CancellationToken,
    backoff: Duration,
    current: Current,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let handle = tokio::spawn(start().instrument(tracing::info_span!("task", task)));
        let abort = handle.abort_handle();
        *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(abort.clone());
        let ended = tokio::select! {
            ended = handle => ended,
            () = stop.cancelled() => {
                abort.abort();
                return;
            }
        };
        if stop.is_cancelled() {
            return;
        }
        let how = match ended {
            Ok(()) => "ended".to_string(),
            Err(e) => describe(&e),
        };
        tracing::error!(task, how, "task died; restarting it");
        restarts.with_label_values(&[task]).inc();
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn the_first_critical_task_to_end_is_named_with_how_it_ended() {
        let mut critical = Critical::default();
        critical.spawn("loop", std::future::pending());
        critical.spawn("server", async {
            panic!("boom");
        });
        let ended = critical.first_ended().await;
        assert_eq!(ended.task, "server");
        assert_eq!(ended.how, "panicked");
        assert!(critical.kill("loop"));
        let ended = critical.first_ended().await;
        assert_eq!((ended.task, ended.how.as_str()), ("loop", "was cancelled"));
        assert_eq!(ended.to_string(), "the loop task was cancelled");
    }

    #[tokio::test]
    async fn a_restartable_task_is_started_again_and_counted_until_stopped() {
        let restarts = IntCounterVec::new(Opts::new("r", "r"), &["task"]).expect("counter");
        let runs = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let supervisor = tokio::spawn(restarting(
            "writer",
            restarts.clone(),
            stop.clone(),
            Duration::from_millis(1),
            Current::default(),
            {
                let runs = Arc::clone(&runs);
                move || {
                    let n = runs.fetch_add(1, Ordering::SeqCst);
                    async move {
                        match n {
                            0 => panic!("first run dies"),
                            1 => {} // second run ends
                            _ => std::future::pending().await,
                        }
                    }
                }
            },
        ));
        while runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(restarts.with_label_values(&["writer"]).get(), 2);
        stop.cancel();
        supervisor.await.expect("supervisor ends on stop");
    }

    use prometheus::Opts;
}
