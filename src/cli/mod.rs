//! The `wva` commands: each command's arguments and what it does with them, one module each.
//! `main.rs` only parses and dispatches.

pub mod analyze;
pub mod crdgen;
pub mod emulate;
pub mod history;
pub mod replay;
pub mod run;
pub mod settings;
pub mod simulate;

use std::process::ExitCode;

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
