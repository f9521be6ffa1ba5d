//! `wva crdgen`: writes the generated CRD to `crds/` and to the chart, or checks for drift.

use std::path::{Path, PathBuf};

use crate::crd::{CRD_PATHS, crd_yaml};

/// Files whose content differs from the generated CRD.
pub fn drifted(root: &Path) -> Result<Vec<PathBuf>, String> {
    let want = crd_yaml().map_err(|e| format!("cannot render the CRD: {e}"))?;
    Ok(CRD_PATHS
        .iter()
        .map(|p| root.join(p))
        .filter(|p| std::fs::read_to_string(p).map_or(true, |have| have != want))
        .collect())
}

/// Writes the generated CRD to every location; returns the paths written.
pub fn write(root: &Path) -> Result<Vec<PathBuf>, String> {
    let yaml = crd_yaml().map_err(|e| format!("cannot render the CRD: {e}"))?;
    CRD_PATHS
        .iter()
        .map(|p| {
            let path = root.join(p);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            std::fs::write(&path, &yaml).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(path)
        })
        .collect()
}
