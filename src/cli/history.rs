//! `wva history`: what was decided, when, from which inputs and why.

use std::path::PathBuf;
use std::process::ExitCode;

use wva_storage::HistoryFilter;

use crate::exit::{INVALID_INPUT, fail};
use crate::history::OutputFormat;

/// What was decided, when, from which inputs and why, newest last.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Data directory of the decision log.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Only this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only this model (modelID).
    #[arg(long)]
    pub model: Option<String>,
    /// Only this variant (VA name).
    #[arg(long)]
    pub va: Option<String>,
    /// From this time: RFC 3339, or a duration ago such as 2h.
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time: RFC 3339, or a duration ago.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Only the decisions that changed a desired count (ACTION is against the count published
    /// before, so a count held while the HPA waits to act is not repeated).
    #[arg(long)]
    pub changes: bool,
}

pub fn main(args: HistoryArgs) -> ExitCode {
    let filter = match super::time_window(args.since.as_deref(), args.until.as_deref()) {
        Ok(window) => HistoryFilter {
            namespace: args.namespace,
            model_id: args.model,
            variant: args.va,
            ..window
        },
        Err(e) => return fail("history", &e, INVALID_INPUT),
    };
    let readable = match super::open_data_dir(&args.data_dir) {
        Ok(r) => r,
        Err((e, code)) => return fail("history", &e, code),
    };
    match crate::history::render(&readable.log, &filter, args.format, args.changes) {
        Ok(text) => super::print_out(&text),
        Err(e) => fail("history", &e, 1),
    }
}
