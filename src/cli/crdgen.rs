//! `wva crdgen`: the CRD YAML from the Rust types.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::exit::fail;

/// Write the VariantAutoscaling CRD to crds/ and to the Helm chart.
#[derive(Debug, clap::Args)]
pub struct CrdgenArgs {
    /// Only check that the committed files match the types; exit 1 when they drift.
    #[arg(long)]
    pub check: bool,
    /// Repository root to write under.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
}

pub fn main(args: CrdgenArgs) -> ExitCode {
    let root = args.root.as_path();
    if !args.check {
        return match crate::crdgen::write(root) {
            Ok(paths) => super::print_out(
                &paths
                    .iter()
                    .map(|p| format!("wrote {}\n", p.display()))
                    .collect::<String>(),
            ),
            Err(e) => fail("crdgen", &e, 1),
        };
    }
    match crate::crdgen::drifted(root) {
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
        Err(e) => fail("crdgen", &e, 1),
    }
}
