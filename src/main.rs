use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wva::config::manifest::parse_config_maps;
use wva::config::settings::SettingsArgs;
use wva::telemetry::{self, LogFormat};
use wva::{analyze, crdgen};

/// Autoscaler for LLM inference servers: decides how many replicas each model variant needs from
/// vLLM's KV-cache and queue saturation, and publishes the answer for HPA or KEDA.
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
    /// Decide one model from its numbers: JSON in (a file, or - for stdin), decision JSON out.
    Analyze {
        /// Input file, or - to read standard input.
        input: String,
    },
    /// Write the VariantAutoscaling CRD to crds/ and to the Helm chart.
    Crdgen {
        /// Only check that the committed files match the types; exit 1 when they drift.
        #[arg(long)]
        check: bool,
        /// Repository root to write under.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Print the process settings the controller would run with, resolved from flags,
    /// environment and (optionally) the main ConfigMap; the bearer token is redacted.
    Settings {
        /// A manifest of the main ConfigMap, as you would kubectl apply it.
        #[arg(long)]
        config_map: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_level.as_deref(), cli.log_format);
    match cli.command {
        Command::Analyze { input } => run_analyze(&input),
        Command::Crdgen { check, root } => run_crdgen(check, &root),
        Command::Settings {
            config_map,
            settings,
        } => run_settings(config_map.as_deref(), &settings),
    }
}

/// Exit status for input that cannot be used.
const INVALID_INPUT: u8 = 2;

fn run_analyze(input: &str) -> ExitCode {
    let text = if input == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .map(|_| buf)
            .map_err(|e| format!("cannot read standard input: {e}"))
    } else {
        std::fs::read_to_string(input).map_err(|e| format!("cannot read {input}: {e}"))
    };
    match text.and_then(|t| analyze::run(&t)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("wva analyze: {}", one_line(&message));
            ExitCode::from(INVALID_INPUT)
        }
    }
}

fn run_crdgen(check: bool, root: &std::path::Path) -> ExitCode {
    if check {
        match crdgen::drifted(root) {
            Ok(drift) if drift.is_empty() => ExitCode::SUCCESS,
            Ok(drift) => {
                for p in drift {
                    eprintln!(
                        "wva crdgen: {} differs from the types; run `wva crdgen`",
                        p.display()
                    );
                }
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("wva crdgen: {e}");
                ExitCode::FAILURE
            }
        }
    } else {
        match crdgen::write(root) {
            Ok(paths) => {
                for p in paths {
                    println!("wrote {}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wva crdgen: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

fn run_settings(config_map: Option<&std::path::Path>, args: &SettingsArgs) -> ExitCode {
    let data = match config_map {
        None => None,
        Some(path) => {
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| parse_config_maps(&t));
            match parsed {
                Ok(mut cms) => Some(cms.swap_remove(0).data),
                Err(e) => {
                    eprintln!("wva settings: {}: {}", path.display(), one_line(&e));
                    return ExitCode::from(INVALID_INPUT);
                }
            }
        }
    };
    match args.resolve(data.as_ref()) {
        Ok(settings) => match serde_json::to_string_pretty(&settings.redacted()) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wva settings: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("wva settings: {e}");
            ExitCode::from(INVALID_INPUT)
        }
    }
}

/// Error messages go out on one line, so log collectors keep them whole.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
