//! The `wva` commands: each command's arguments and what it does with them, one module each.
//! `main.rs` only parses and dispatches.

pub mod analyze;
pub mod crdgen;
pub mod diff;
pub mod emulate;
pub mod history;
pub mod replay;
pub mod run;
pub mod settings;
pub mod simulate;

use std::path::Path;
use std::process::ExitCode;

use wva_storage::LogError;
use wva_storage::datadir::{self, DataDirError, ReadableLog};

use crate::exit::INVALID_INPUT;

/// Prints a command's output, ending it with a newline. A reader that stops early (`| head`)
/// ends the output quietly, as it does for any Unix tool; another write error is said, with
/// exit status 1.
pub fn print_out(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let newline: &[u8] = if text.ends_with('\n') { b"" } else { b"\n" };
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(newline))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wva: cannot write the output: {e}");
            ExitCode::from(1)
        }
    }
}

/// The `--since` and `--until` of a command that reads a log, as a history filter's window;
/// the error names the flag.
pub fn time_window(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<wva_storage::HistoryFilter, String> {
    let now = crate::timefmt::wall_clock();
    let time = |flag: &str, t: Option<&str>| {
        t.map(|t| crate::timefmt::parse_time(t, now))
            .transpose()
            .map_err(|e| format!("{flag}: {e}"))
    };
    Ok(wva_storage::HistoryFilter {
        since: time("--since", since)?,
        until: time("--until", until)?,
        ..Default::default()
    })
}

/// A `--data-dir` to be written (created when missing): anything there must be a directory.
pub fn check_writable_data_dir(path: &Path) -> Result<(), String> {
    if path.exists() && !path.is_dir() {
        return Err(format!(
            "--data-dir: {} is not a directory (expected a data directory, created if missing)",
            path.display()
        ));
    }
    Ok(())
}

/// Opens a `--data-dir` to read its decision log; on failure, the message and the exit status:
/// 2 when the path names no decision log (bad input), 1 when one is there but cannot be read.
pub fn open_data_dir(path: &Path) -> Result<ReadableLog, (String, u8)> {
    let problem = if !path.exists() {
        Some("does not exist")
    } else if !path.is_dir() {
        Some("is not a directory")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err((
            format!(
                "--data-dir: {} {problem} (expected a data directory written by wva)",
                path.display()
            ),
            INVALID_INPUT,
        ));
    }
    datadir::open_for_reading(path).map_err(|e| {
        let code = match e {
            DataDirError::Log(LogError::NotALog { .. }) => INVALID_INPUT,
            _ => 1,
        };
        (format!("--data-dir: {e}"), code)
    })
}
