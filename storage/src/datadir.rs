//! Opening a data directory's decision log: for writing (a controller or a simulation), and for
//! reading, also while a controller holds it.

use std::path::{Path, PathBuf};

use crate::{LogError, Retention, SledLog};

/// Why a data directory cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot make a temporary directory: {0}")]
    Temporary(std::io::Error),
    #[error("{path} is in use and cannot be copied: {source}")]
    Copy {
        path: String,
        source: std::io::Error,
    },
}

/// A decision log opened for reading. When the directory was in use, this reads a copy, which
/// lives as long as this value.
#[derive(Debug)]
pub struct ReadableLog {
    pub log: SledLog,
    /// Set when the log is a snapshot copy of a directory in use.
    pub snapshot: Option<tempfile::TempDir>,
}

/// Opens `dir` for reading; never creates a log and never moves one aside.
pub fn open_for_reading(dir: &Path) -> Result<ReadableLog, DataDirError> {
    match SledLog::open_for_inspection(dir) {
        Ok(log) => Ok(ReadableLog {
            log,
            snapshot: None,
        }),
        Err(LogError::InUse { .. }) => {
            // A running controller holds the lock: read a copy of its files. sled recovers a
            // copy taken mid-write the same way it recovers from a crash.
            let tmp = tempfile::tempdir().map_err(DataDirError::Temporary)?;
            let copy = tmp.path().join("log");
            copy_dir(dir, &copy).map_err(|source| DataDirError::Copy {
                path: dir.display().to_string(),
                source,
            })?;
            let log = SledLog::open_for_inspection(&copy)?;
            tracing::info!(data_dir = %dir.display(), "data directory in use by a running controller; reading a snapshot copy");
            Ok(ReadableLog {
                log,
                snapshot: Some(tmp),
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Opens (or creates) the decision log in `dir` for a process that writes to it. An unusable
/// log is moved aside by the storage layer; the second value then says where and why, for the
/// caller to report in its own way.
pub fn open_for_writing(dir: &Path) -> Result<(SledLog, Option<String>), LogError> {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (log, report) = SledLog::open(dir, Retention::default(), now_s)?;
    let moved = report.moved_aside.map(|aside| {
        format!(
            "the decision log in {} was unusable ({}); moved to {}",
            dir.display(),
            report.reason.unwrap_or_default(),
            aside.display()
        )
    });
    Ok((log, moved))
}
