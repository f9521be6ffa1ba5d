//! `wva replay`: recorded inputs through today's policy, or another configuration or mode.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wva_actors::policy::{Analyzer, OperatingMode};

use crate::config::manifest::parse_config_maps;
use crate::config::{CAPACITY_CONFIG_MAP, CapacityScalingConfig};
use crate::exit::{INVALID_INPUT, fail};
use crate::history::OutputFormat;
use crate::replay::ReplayOptions;

/// Feed the recorded inputs through today's policy (or another configuration or mode) and show
/// every decision that would differ.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Data directory of the decision log.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// A capacity-scaling-config ConfigMap manifest whose thresholds replace the recorded ones.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Decide in this mode instead of the recorded one.
    #[arg(long, value_parser = ["capacity-only", "hybrid"])]
    pub mode: Option<String>,
    /// Decide capacity mode with this analyzer (slo-capacity or saturation-v1) instead of the
    /// recorded one; slo-capacity needs cycles that recorded its inputs.
    #[arg(long)]
    pub analyzer: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

pub fn main(args: ReplayArgs) -> ExitCode {
    let options = match replay_options(
        args.config.as_deref(),
        args.mode.as_deref(),
        args.analyzer.as_deref(),
    ) {
        Ok(o) => o,
        Err(e) => return fail("replay", &e, INVALID_INPUT),
    };
    let readable = match super::open_data_dir(&args.data_dir) {
        Ok(r) => r,
        Err((e, code)) => return fail("replay", &e, code),
    };
    match crate::replay::replay(&readable.log, &options)
        .and_then(|report| crate::replay::render(&report, args.format))
    {
        Ok(text) => super::print_out(&text),
        Err(e) => fail("replay", &e.to_string(), 1),
    }
}

fn replay_options(
    config: Option<&Path>,
    mode: Option<&str>,
    analyzer: Option<&str>,
) -> Result<ReplayOptions, String> {
    let config = match config {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--config {}: {e}", path.display()))?;
            let maps = parse_config_maps(&text)
                .map_err(|e| format!("--config {}: {e}", path.display()))?;
            let map = match maps.iter().find(|m| m.name == CAPACITY_CONFIG_MAP) {
                Some(m) => m,
                None if maps.len() == 1 => &maps[0],
                None => {
                    return Err(format!(
                        "--config {}: expected a ConfigMap named {CAPACITY_CONFIG_MAP}",
                        path.display()
                    ));
                }
            };
            let parsed = CapacityScalingConfig::from_data(Some(&map.data));
            // A replay answers "what would this configuration have done": one with an entry
            // or key the controller would skip is not the configuration asked about.
            let problems: Vec<String> = parsed
                .warnings
                .iter()
                .cloned()
                .chain(parsed.issues.iter().map(ToString::to_string))
                .collect();
            if !problems.is_empty() {
                return Err(format!(
                    "--config {}: {}",
                    path.display(),
                    problems.join("; ")
                ));
            }
            Some(parsed.scaling)
        }
    };
    let mode = match mode {
        None => None,
        Some("capacity-only") => Some(OperatingMode::CapacityOnly),
        Some("hybrid") => Some(OperatingMode::Hybrid),
        Some(other) => {
            return Err(format!(
                "--mode: expected capacity-only or hybrid, got {other:?}"
            ));
        }
    };
    let analyzer = analyzer
        .map(Analyzer::parse)
        .transpose()
        .map_err(|e| format!("--analyzer: {e}"))?;
    Ok(ReplayOptions {
        config,
        mode,
        analyzer,
    })
}
