//! The decision log on disk (sled). Opening never crash-loops: a database that cannot be opened
//! or read as a decision log is moved aside to `<dir>.corrupt-<unix seconds>`, reported loudly,
//! and a new, empty log takes its place. A database locked by another process is left alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::SledBackend;
use crate::log::{Log, Unusable};
use crate::{LogError, Retention};

/// A decision log on disk.
pub type SledLog = Log<SledBackend>;

/// sled's page cache. Its default (1 GiB) is far more than a log that is written once and read
/// rarely needs; this keeps the controller's resident memory small.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// What happened while opening.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Where an unusable database was moved, if one was.
    pub moved_aside: Option<PathBuf>,
    /// Why it was unusable.
    pub reason: Option<String>,
}

enum Failure {
    InUse(String),
    Unusable(String),
    Other(LogError),
}

/// How long `open` waits for a lock held by another opener before calling the directory in use.
/// sled releases its lock from a background thread shortly after the database is dropped, and a
/// controller that restarts may find its predecessor still exiting.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// The same for read-only inspection, which reads a copy instead of waiting long.
const INSPECTION_LOCK_WAIT: Duration = Duration::from_millis(300);

/// Opens, retrying while the lock is held, for up to `wait`.
fn open_waiting(dir: &Path, retention: Retention, wait: Duration) -> Result<SledLog, Failure> {
    let deadline = Instant::now() + wait;
    loop {
        match try_open(dir, retention) {
            Err(Failure::InUse(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(25))
            }
            other => return other,
        }
    }
}

fn try_open(dir: &Path, retention: Retention) -> Result<SledLog, Failure> {
    let config = sled::Config::new().path(dir).cache_capacity(CACHE_BYTES);
    // sled may panic on some malformed files instead of returning an error; treat that as an
    // unusable database too.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
        .map_err(|_| Failure::Unusable("sled panicked while opening it".into()))?;
    let db = match opened {
        Ok(db) => db,
        Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
            return Err(Failure::InUse(e.to_string()));
        }
        Err(
            e @ (sled::Error::Corruption { .. }
            | sled::Error::Unsupported(_)
            | sled::Error::ReportableBug(_)),
        ) => {
            return Err(Failure::Unusable(e.to_string()));
        }
        Err(sled::Error::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData
                || e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            return Err(Failure::Unusable(e.to_string()));
        }
        Err(e) => return Err(Failure::Other(e.into())),
    };
    let backend = SledBackend::new(db).map_err(Failure::Other)?;
    match Log::load(backend, retention) {
        Ok(Ok(log)) => Ok(log),
        Ok(Err(Unusable(reason))) => Err(Failure::Unusable(reason)),
        Err(LogError::Storage(e)) => Err(Failure::Unusable(e.to_string())),
        Err(e) => Err(Failure::Other(e)),
    }
}

impl Log<SledBackend> {
    /// Opens (or creates) the log in `dir`. `now_unix_secs` names a moved-aside database.
    pub fn open(
        dir: &Path,
        retention: Retention,
        now_unix_secs: u64,
    ) -> Result<(Self, OpenReport), LogError> {
        let err = |message: String| LogError::Open {
            path: dir.display().to_string(),
            message,
        };
        match open_waiting(dir, retention, LOCK_WAIT) {
            Ok(log) => Ok((log, OpenReport::default())),
            Err(Failure::InUse(detail)) => Err(LogError::InUse {
                path: dir.display().to_string(),
                detail,
            }),
            Err(Failure::Other(e)) => Err(e),
            Err(Failure::Unusable(reason)) => {
                let aside = aside_path(dir, now_unix_secs);
                std::fs::rename(dir, &aside).map_err(|e| {
                    err(format!(
                        "unusable ({reason}) and cannot be moved aside to {}: {e}",
                        aside.display()
                    ))
                })?;
                tracing::error!(
                    path = %dir.display(),
                    moved_to = %aside.display(),
                    %reason,
                    "decision log unusable: moved aside, starting with an empty log; the safety net falls back to the VA status"
                );
                match try_open(dir, retention) {
                    Ok(log) => Ok((
                        log,
                        OpenReport {
                            moved_aside: Some(aside),
                            reason: Some(reason),
                        },
                    )),
                    Err(Failure::InUse(m) | Failure::Unusable(m)) => Err(err(m)),
                    Err(Failure::Other(e)) => Err(e),
                }
            }
        }
    }

    /// Opens an existing log to read it (`wva history`, `wva replay`): never creates one, never
    /// moves anything aside.
    pub fn open_for_inspection(dir: &Path) -> Result<Self, LogError> {
        let err = |message: String| LogError::Open {
            path: dir.display().to_string(),
            message,
        };
        if !dir.join("conf").exists() && !dir.join("db").exists() {
            return Err(LogError::NotALog {
                path: dir.display().to_string(),
            });
        }
        match open_waiting(dir, Retention::default(), INSPECTION_LOCK_WAIT) {
            Ok(log) => Ok(log),
            Err(Failure::InUse(detail)) => Err(LogError::InUse {
                path: dir.display().to_string(),
                detail,
            }),
            Err(Failure::Unusable(reason)) => Err(err(format!("unusable: {reason}"))),
            Err(Failure::Other(e)) => Err(e),
        }
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, LogError> {
        self.backend.size_on_disk()
    }
}

/// `<dir>.corrupt-<secs>`, with a counter if that name is taken.
fn aside_path(dir: &Path, secs: u64) -> PathBuf {
    let base = format!("{}.corrupt-{secs}", dir.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}
