//! `wva simulate`: the autoscaler against the emulated cluster, in virtual time.

use std::path::PathBuf;
use std::process::ExitCode;

use wva_sim::engine::{Policy, RunOptions};
use wva_sim::simulate::{SimulateRequest, compare, compare_table, render, simulate};

use crate::exit::{INVALID_INPUT, fail};

/// Run the autoscaler against an emulated cluster in virtual time and report how it did. With no
/// arguments: two variants of one model (A100 and H100) through a bursty day compressed into an
/// hour.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Seed of the generated load; the same seed gives the same run.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Virtual duration, e.g. 1h or 20m [default: 1h, or the trace's span].
    #[arg(long)]
    pub duration: Option<String>,
    /// Replay a CSV trace (TIMESTAMP,ContextTokens,GeneratedTokens) instead of the built-in load.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Divide the trace's inter-arrival times by this.
    #[arg(long, default_value_t = 1.0)]
    pub trace_speedup: f64,
    /// Where the report (summary.json, metrics.prom, plots) goes.
    #[arg(long, default_value = "wva-simulation-report")]
    pub report: PathBuf,
    /// Keep the decision log here, for `wva history` and `wva replay`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Emulate a Prometheus outage: every metrics read fails (the safety net decides).
    #[arg(long)]
    pub metrics_outage: bool,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Run virtual time at most this many times faster than real time (e.g. 60: an hour
    /// in a minute) instead of as fast as possible.
    #[arg(long)]
    pub pace: Option<f64>,
    /// The autoscaler to drive the replicas: wva-v1 (this controller, capacity analyzer),
    /// wva-hybrid (this controller in hybrid mode), hpa-kv (an HPA on
    /// KV-cache use) or kpa (Knative's concurrency autoscaler).
    #[arg(long, default_value = "wva-v1")]
    pub policy: String,
    /// Run the same load through several policies and print them side by side
    /// [default list: wva-v1,wva-hybrid,hpa-kv,kpa].
    #[arg(long, num_args = 0..=1, default_missing_value = "wva-v1,wva-hybrid,hpa-kv,kpa", value_delimiter = ',')]
    pub compare: Option<Vec<String>>,
}

pub fn main(args: SimulateArgs) -> ExitCode {
    match request(&args) {
        Ok((request, policies)) => run(&request, policies.as_deref()),
        Err(e) => fail("simulate", &e, INVALID_INPUT),
    }
}

/// The request the arguments describe, and the policies to compare if asked.
fn request(args: &SimulateArgs) -> Result<(SimulateRequest, Option<Vec<Policy>>), String> {
    let policy = Policy::parse(&args.policy).map_err(|e| format!("--policy: {e}"))?;
    let compare = args
        .compare
        .as_ref()
        .map(|names| names.iter().map(|n| Policy::parse(n)).collect())
        .transpose()
        .map_err(|e| format!("--compare: {e}"))?;
    if compare.is_some() && args.data_dir.is_some() {
        return Err(
            "--compare: cannot keep one decision log for several policies; drop --data-dir".into(),
        );
    }
    if args.pace.is_some_and(|p| !(p.is_finite() && p > 0.0)) {
        return Err("--pace: expected a number > 0".into());
    }
    let duration_s = args
        .duration
        .as_deref()
        .map(crate::config::parse_duration)
        .transpose()
        .map_err(|e| format!("--duration: {e}"))?
        .map(|d| d.as_secs_f64());
    if duration_s.is_some_and(|d| d < 60.0) {
        return Err("--duration: expected at least 1m".into());
    }
    let request = SimulateRequest {
        seed: args.seed,
        duration_s,
        trace: args.trace.clone(),
        trace_speedup: args.trace_speedup,
        report: args.report.clone(),
        options: RunOptions {
            policy,
            data_dir: args.data_dir.clone(),
            metrics_outage: args.metrics_outage,
            settings: Default::default(),
            progress: !args.no_progress,
            pace: args.pace,
        },
    };
    Ok((request, compare))
}

fn run(request: &SimulateRequest, policies: Option<&[Policy]>) -> ExitCode {
    if let Some(policies) = policies {
        return match compare(request, policies) {
            Ok(summaries) => super::print_out(&format!(
                "{}\nreports: {}/<policy>\n",
                compare_table(&summaries),
                request.report.display()
            )),
            Err(e) => fail("simulate", &e, 1),
        };
    }
    match simulate(request) {
        Ok((summary, _)) => super::print_out(&render(&summary, &request.report)),
        Err(e) => fail("simulate", &e, 1),
    }
}
