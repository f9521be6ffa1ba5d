//! The decision log behind an actor: a one-thread `SyncArbiter`, the only place that blocks.
//! Errors are returned to the caller, which logs them; a failing log never stops a cycle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;

use crate::lifeline::{Lifeline, PartGuard};
use wva_storage::{
    DecisionLog, History, HistoryFilter, LastGood, LogError, LogStats, Record, RecordedLearner,
    RetentionReport, Timestamp, VariantKey,
};

/// Owns the log. One thread: sled allows one opener, and appends stay in order.
pub struct LogActor {
    log: Arc<Mutex<Box<dyn DecisionLog>>>,
    /// Says the log is gone when the actor is dropped (a panic on its thread).
    _alive: Option<PartGuard>,
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
    /// Starts the log actor on its own thread; `lifeline`, when given, hears of its end.
    pub fn start(log: Box<dyn DecisionLog>, lifeline: Option<Lifeline>) -> Addr<LogActor> {
        let shared = Arc::new(Mutex::new(log));
        SyncArbiter::start(1, move || LogActor {
            log: Arc::clone(&shared),
            _alive: lifeline.as_ref().map(|l| l.guard("decision log")),
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

log_message!(Append(Record), Result<u64, LogError>, |a, m| a.log().append(&m.0));
log_message!(AppendBatch(Vec<Record>), Result<u64, LogError>, |a, m| a
.log()
.append_batch(&m.0)
);
log_message!(Flush, Result<(), LogError>, |a, _m| a.log().flush());
log_message!(EnforceRetention(Timestamp), Result<RetentionReport, LogError>, |a, m| a
.log()
.enforce_retention(m.0)
);
log_message!(
    LoadLastGood,
    Result<BTreeMap<VariantKey, LastGood>, LogError>,
    |a, _m| a.log().last_good()
);
log_message!(
    LastGoodOf(VariantKey),
    Result<Option<LastGood>, LogError>,
    |a, m| a.log().last_good_of(&m.0)
);
log_message!(
    LearnerOf(VariantKey),
    Result<Option<RecordedLearner>, LogError>,
    |a, m| a.log().learner_of(&m.0)
);
log_message!(Forget(VariantKey, Option<Timestamp>), Result<(), LogError>, |a, m| a
    .log()
    .forget_variant(&m.0, m.1));
// Compact records come back rebuilt in full, as every reader of the log sees them.
log_message!(ReadHistory(HistoryFilter), Result<History, LogError>, |a, m| {
    crate::compact::read_history(a.log().as_ref(), &m.0)
});
log_message!(Stats, Result<LogStats, LogError>, |a, _m| Ok(a.log().stats()));
