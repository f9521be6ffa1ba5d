//! `wva settings`: the process settings `wva run` would use.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::manifest::parse_config_maps;
use crate::config::settings::SettingsArgs;
use crate::exit::{INVALID_INPUT, fail};

/// Print the process settings the controller would run with, resolved from flags, environment
/// and (optionally) the main ConfigMap; the bearer token is redacted.
#[derive(Debug, clap::Args)]
pub struct SettingsCommandArgs {
    /// A manifest of the main ConfigMap, as you would kubectl apply it.
    #[arg(long)]
    pub config_map: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Box<SettingsArgs>,
}

pub fn main(args: SettingsCommandArgs) -> ExitCode {
    let data = match &args.config_map {
        None => None,
        Some(path) => {
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| parse_config_maps(&t));
            match parsed {
                Ok(mut cms) => Some(cms.swap_remove(0).data),
                Err(e) => {
                    return fail(
                        "settings",
                        &format!("{}: {e}", path.display()),
                        INVALID_INPUT,
                    );
                }
            }
        }
    };
    if let Some(data) = &data {
        let unknown = crate::config::settings::unknown_config_map_keys(data);
        if !unknown.is_empty() {
            let path = args
                .config_map
                .as_deref()
                .unwrap_or(std::path::Path::new("-"));
            return fail(
                "settings",
                &format!("{}: {}", path.display(), unknown.join("; ")),
                INVALID_INPUT,
            );
        }
    }
    for key in args.settings.ignored_config_map_keys(data.as_ref()) {
        eprintln!(
            "wva settings: warning: the ConfigMap sets {key}, ignored: PROMETHEUS_FROM_CONFIG_MAP=false takes the Prometheus connection from flags and environment only"
        );
    }
    match args.settings.resolve(data.as_ref()) {
        Ok(settings) => match serde_json::to_string_pretty(&settings.redacted()) {
            Ok(json) => super::print_out(&json),
            Err(e) => fail("settings", &e.to_string(), 1),
        },
        Err(e) => fail("settings", &e.to_string(), INVALID_INPUT),
    }
}
