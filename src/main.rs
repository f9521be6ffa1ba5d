use std::process::ExitCode;

/// mimalloc instead of the system allocator: the cycle allocates and frees many small objects
/// from several threads (actor messages, records, label sets), where glibc's per-thread arenas
/// cost time and left resident memory far above what is live.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use wva::cli;
use wva::telemetry::{self, LogFormat};

/// Autoscaler for LLM inference servers: decides how many replicas each model variant needs from
/// the demand its vLLM servers see and what one replica carries within the latency objectives
/// (prefill and decode, learned from each variant's own servers; KV-cache and queue saturation
/// where that cannot be learned), and publishes the answer for HPA or KEDA.
#[derive(Debug, Parser)]
#[command(name = "wva", version)]
struct Cli {
    /// Log level or filter (e.g. debug, or wva=debug,kube=info) [default: RUST_LOG, else info].
    #[arg(long, global = true, env = "LOG_LEVEL")]
    log_level: Option<String>,
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller against the cluster of KUBECONFIG (or the in-cluster service
    /// account): watch VariantAutoscalings, read Prometheus every cycle, publish the desired
    /// replicas on the metrics endpoint, and write each VA's status. Every flag can also be set by
    /// the environment variable shown with it.
    Run(Box<cli::run::RunArgs>),
    /// Run the autoscaler against an emulated cluster in virtual time and report how it did.
    /// With no arguments: two variants of one model (A100 and H100) through a bursty day
    /// compressed into an hour.
    Simulate(Box<cli::simulate::SimulateArgs>),
    /// Serve emulated vLLM servers on local ports: `/metrics` for a real Prometheus to scrape and
    /// `/v1/completions` answering after the modelled latency, kept busy by a load shape or a
    /// trace. Prints the endpoints as one JSON line once every port is bound.
    Emulate(cli::emulate::EmulateArgs),
    /// Decide one model from its numbers: JSON in (a file, or - for stdin), decision JSON out.
    Analyze(cli::analyze::AnalyzeArgs),
    /// Write the VariantAutoscaling CRD to crds/ and to the Helm chart.
    Crdgen(cli::crdgen::CrdgenArgs),
    /// What was decided, when, from which inputs and why, newest last.
    History(cli::history::HistoryArgs),
    /// Feed the recorded inputs through today's policy (or another configuration or mode) and
    /// show every decision that would differ.
    Replay(cli::replay::ReplayArgs),
    /// Compare two decision logs (a main instance and its shadow, or two replays) by time and
    /// variant; exit status 3 when the candidate passes a --max-* limit.
    Diff(cli::diff::DiffArgs),
    /// Print the process settings the controller would run with, resolved from flags,
    /// environment and (optionally) the main ConfigMap; the bearer token is redacted.
    Settings(cli::settings::SettingsCommandArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = cli.log_level.as_deref();
    match cli.command {
        // A simulation logs in its own virtual time.
        Command::Simulate(_) => telemetry::init_with_clock(
            level,
            cli.log_format,
            telemetry::Clock(wva_sim::clock::now_ms),
        ),
        _ => telemetry::init(level, cli.log_format),
    }
    match cli.command {
        Command::Run(args) => cli::run::main(*args),
        Command::Simulate(args) => cli::simulate::main(*args),
        Command::Emulate(args) => cli::emulate::main(args),
        Command::Analyze(args) => cli::analyze::main(args),
        Command::Crdgen(args) => cli::crdgen::main(args),
        Command::History(args) => cli::history::main(args),
        Command::Replay(args) => cli::replay::main(args),
        Command::Diff(args) => cli::diff::main(args),
        Command::Settings(args) => cli::settings::main(args),
    }
}
