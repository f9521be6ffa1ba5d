//! `wva analyze`: the capacity policy on one model's numbers.

use std::io::Read;
use std::process::ExitCode;

use crate::exit::{INVALID_INPUT, fail};

/// Decide one model from its numbers: JSON in (a file, or - for stdin), decision JSON out.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Input file, or - to read standard input.
    pub input: String,
}

pub fn main(args: AnalyzeArgs) -> ExitCode {
    let input = args.input;
    let text = if input == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .map(|_| buf)
            .map_err(|e| format!("cannot read standard input: {e}"))
    } else {
        std::fs::read_to_string(&input).map_err(|e| format!("cannot read {input}: {e}"))
    };
    match text.and_then(|t| crate::analyze::run(&t)) {
        Ok(json) => super::print_out(&json),
        Err(message) => fail("analyze", &message, INVALID_INPUT),
    }
}
