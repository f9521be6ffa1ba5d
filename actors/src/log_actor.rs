//! The decision log behind an actor: a one-thread `SyncArbiter`, the only place that blocks.
//! Errors are returned as text and logged by the caller; a failing log never stops a cycle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use wva_storage::{
    DecisionLog, History, HistoryFilter, LastGood, LogStats, Record, RecordedLearner,
    RetentionReport, Timestamp, VariantKey,
};

/// Owns the log. One thread: sled allows one opener, and appends stay in order.
pub struct LogActor {
    log: Arc<Mutex<Box<dyn DecisionLog>>>,
}

impl std::fmt::Debug for LogActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogActor").finish_non_exhaustive()
    }
}

impl Actor for LogActor {
    type Context = SyncContext<Self>;
}

impl LogActor {
    /// Starts the log actor on its own thread.
    pub fn start(log: Box<dyn DecisionLog>) -> Addr<LogActor> {
        let shared = Arc::new(Mutex::new(log));
        SyncArbiter::start(1, move || LogActor {
            log: Arc::clone(&shared),
        })
    }

    fn log(&self) -> MutexGuard<'_, Box<dyn DecisionLog>> {
        // A panic while holding the lock cannot leave the log half-written in a way the next
        // call cannot handle (every write is a whole record), so keep going.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

macro_rules! log_message {
    ($name:ident $( ( $($field:ty),* ) )?, $result:ty, |$actor:ident, $msg:ident| $body:expr) => {
        #[derive(Debug)]
        pub struct $name $( ( $(pub $field),* ) )?;
        impl Message for $name {
            type Result = $result;
        }
        impl Handler<$name> for LogActor {
            type Result = $result;
            fn handle(&mut self, $msg: $name, _: &mut SyncContext<Self>) -> $result {
                let $actor = self;
                $body
            }
        }
    };
}

log_message!(Append(Record), Result<u64, String>, |a, m| a.log().append(&m.0).map_err(|e| e.to_string()));
log_message!(AppendBatch(Vec<Record>), Result<u64, String>, |a, m| a
    .log()
    .append_batch(&m.0)
    .map_err(|e| e.to_string()));
log_message!(Flush, Result<(), String>, |a, _m| a.log().flush().map_err(|e| e.to_string()));
log_message!(EnforceRetention(Timestamp), Result<RetentionReport, String>, |a, m| a
    .log()
    .enforce_retention(m.0)
    .map_err(|e| e.to_string()));
log_message!(
    LoadLastGood,
    Result<BTreeMap<VariantKey, LastGood>, String>,
    |a, _m| a.log().last_good().map_err(|e| e.to_string())
);
log_message!(
    LastGoodOf(VariantKey),
    Result<Option<LastGood>, String>,
    |a, m| a.log().last_good_of(&m.0).map_err(|e| e.to_string())
);
log_message!(
    LearnerOf(VariantKey),
    Result<Option<RecordedLearner>, String>,
    |a, m| a.log().learner_of(&m.0).map_err(|e| e.to_string())
);
log_message!(Forget(VariantKey), Result<(), String>, |a, m| a.log().forget_variant(&m.0).map_err(|e| e.to_string()));
log_message!(ReadHistory(HistoryFilter), Result<History, String>, |a, m| a
    .log()
    .history(&m.0)
    .map_err(|e| e.to_string()));
log_message!(Stats, Result<LogStats, String>, |a, _m| Ok(a.log().stats()));
