//! `wva diff`: two decision logs compared by time and variant, with an exit status for gating a
//! rollout on the comparison.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::diff::DiffReport;
use crate::exit::{GATE_FAILED, INVALID_INPUT, fail};
use crate::history::{OutputFormat, table};

/// Compare two decision logs (a main instance and its shadow, or two replays) by time and
/// variant: where the desired counts differ, by how much, the replica-hours and cost each way,
/// and both reasons. Exit status 3 when a --max-* limit is passed.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// Data directory of the log compared against (the main instance).
    pub base: PathBuf,
    /// Data directory of the log compared with it (the shadow, or a canary).
    pub candidate: PathBuf,
    /// From this time: RFC 3339, or a duration ago such as 2h.
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time: RFC 3339, or a duration ago.
    #[arg(long)]
    pub until: Option<String>,
    /// Exit 3 when the candidate costs more than the base by over this many percent.
    #[arg(long)]
    pub max_cost_increase: Option<f64>,
    /// Exit 3 when the candidate decided more than this many times to scale a saturated
    /// variant below its current replicas.
    #[arg(long)]
    pub max_saturated_scale_downs: Option<usize>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

pub fn main(args: DiffArgs) -> ExitCode {
    if let Some(p) = args.max_cost_increase
        && !p.is_finite()
    {
        return fail(
            "diff",
            &format!("--max-cost-increase: expected a percentage, got {p}"),
            INVALID_INPUT,
        );
    }
    let filter = match super::time_window(args.since.as_deref(), args.until.as_deref()) {
        Ok(f) => f,
        Err(e) => return fail("diff", &e, INVALID_INPUT),
    };
    let mut histories = Vec::new();
    for dir in [&args.base, &args.candidate] {
        let readable = match super::open_data_dir(dir) {
            Ok(r) => r,
            Err((e, code)) => return fail("diff", &e, code),
        };
        match wva_actors::compact::read_history(&readable.log, &filter) {
            Ok(h) => histories.push(h.records),
            Err(e) => return fail("diff", &format!("{}: {e}", dir.display()), 1),
        }
    }
    let report = crate::diff::diff(&histories[0], &histories[1]);
    let text = match args.format {
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(t) => t,
            Err(e) => return fail("diff", &e.to_string(), 1),
        },
        OutputFormat::Table => render(&report),
    };
    let printed = super::print_out(&text);
    match gate(&report, &args) {
        Some(why) => fail("diff", &why, GATE_FAILED),
        None => printed,
    }
}

/// Why the candidate does not pass the limits given, if it does not.
fn gate(report: &DiffReport, args: &DiffArgs) -> Option<String> {
    let change = report.cost_change_percent();
    if let Some(limit) = args.max_cost_increase
        && change > limit
    {
        return Some(format!(
            "the candidate costs {change:.1} % more than the base, over --max-cost-increase {limit}"
        ));
    }
    if let Some(limit) = args.max_saturated_scale_downs
        && report.candidate.saturated_scale_downs > limit
    {
        return Some(format!(
            "the candidate scaled a saturated variant down {} times, over --max-saturated-scale-downs {limit}",
            report.candidate.saturated_scale_downs
        ));
    }
    None
}

fn render(report: &DiffReport) -> String {
    let mut out = String::new();
    if !report.differences.is_empty() {
        let mut rows = vec![
            [
                "FROM",
                "TO",
                "VARIANT",
                "BASE",
                "CANDIDATE",
                "REPLICA-H",
                "BASE REASON",
                "CANDIDATE REASON",
            ]
            .map(String::from),
        ];
        for d in &report.differences {
            rows.push([
                d.from.clone(),
                d.to.clone(),
                d.variant.clone(),
                d.base.to_string(),
                d.candidate.to_string(),
                format!("{:+.3}", d.replica_hours),
                d.base_reason.clone(),
                d.candidate_reason.clone(),
            ]);
        }
        out.push_str(&table(&rows));
        out.push('\n');
    }
    for (which, names) in [
        ("only in the base", &report.only_in_base),
        ("only in the candidate", &report.only_in_candidate),
    ] {
        if !names.is_empty() {
            out.push_str(&format!("{which}: {}\n", names.join(", ")));
        }
    }
    out.push_str(&format!(
        "base: {:.2} replica-h, cost {:.2}, {} saturated scale-downs; candidate: {:.2} replica-h, cost {:.2} ({:+.1} %), {} saturated scale-downs\n",
        report.base.replica_hours,
        report.base.cost,
        report.base.saturated_scale_downs,
        report.candidate.replica_hours,
        report.candidate.cost,
        report.cost_change_percent(),
        report.candidate.saturated_scale_downs,
    ));
    out.push_str(&format!(
        "compared {} variants: {} stretches differ (candidate higher {:.2} replica-h, lower {:.2} replica-h)",
        report.variants,
        report.differences.len(),
        report.more_replica_hours,
        report.fewer_replica_hours,
    ));
    out
}
