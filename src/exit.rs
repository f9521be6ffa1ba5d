//! How commands end with an error: one line on stderr naming the command, and an exit status.

use std::process::ExitCode;

/// Exit status for input that cannot be used (a bad flag, setting or file).
pub const INVALID_INPUT: u8 = 2;

/// Exit status of `wva diff` when the candidate passes a limit it was given (a rollout gate).
pub const GATE_FAILED: u8 = 3;

/// Prints `wva <command>: <message>` on one line and returns `code`.
pub fn fail(command: &str, message: &str, code: u8) -> ExitCode {
    eprintln!("wva {command}: {}", one_line(message));
    ExitCode::from(code)
}

/// Collapses a message onto one line, so log collectors keep it whole.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
