//! ConfigMap manifests read from files, exactly as a user would `kubectl apply` them.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The parts of a ConfigMap manifest this project reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigMapManifest {
    pub name: String,
    pub data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<Metadata>,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Metadata {
    name: Option<String>,
}

/// Reads every ConfigMap in a (possibly multi-document) YAML manifest.
pub fn parse_config_maps(text: &str) -> Result<Vec<ConfigMapManifest>, String> {
    let mut out = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            serde_yaml::Value::deserialize(de).map_err(|e| format!("document {}: {e}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let doc: Doc = serde_path_to_error::deserialize(value)
            .map_err(|e| format!("document {}: {}: {}", i + 1, e.path(), e.inner()))?;
        let kind = doc.kind.unwrap_or_default();
        if kind != "ConfigMap" || doc.api_version.as_deref() != Some("v1") {
            return Err(format!(
                "document {}: kind: expected apiVersion v1, kind ConfigMap, got {:?}",
                i + 1,
                kind
            ));
        }
        let name = doc.metadata.and_then(|m| m.name).ok_or_else(|| {
            format!(
                "document {}: metadata.name: expected the ConfigMap's name",
                i + 1
            )
        })?;
        out.push(ConfigMapManifest {
            name,
            data: doc.data,
        });
    }
    if out.is_empty() {
        return Err("expected a ConfigMap manifest, found no document".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_and_several_documents() {
        let one = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capacity-scaling-config\n  namespace: wva\ndata:\n  default: |\n    kvCacheThreshold: 0.7\n";
        let cms = parse_config_maps(one).expect("parses");
        assert_eq!(cms[0].name, "capacity-scaling-config");
        assert_eq!(cms[0].data["default"], "kvCacheThreshold: 0.7\n");
        let two = format!("{one}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n");
        assert_eq!(parse_config_maps(&two).expect("parses").len(), 2);
    }

    #[test]
    fn names_what_is_wrong() {
        let err = parse_config_maps("apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n")
            .expect_err("not a ConfigMap");
        assert!(err.contains("kind: expected"), "{err}");
        let err = parse_config_maps("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
            .expect_err("no name");
        assert!(err.contains("metadata.name"), "{err}");
        let err = parse_config_maps(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: [1]\n",
        )
        .expect_err("bad data");
        assert!(err.contains("data.a"), "{err}");
        assert!(parse_config_maps("").is_err());
    }
}
