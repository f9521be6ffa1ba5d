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

/// Prints a command's output, ending it with a newline.
pub fn print_out(text: &str) -> ExitCode {
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    ExitCode::SUCCESS
}
