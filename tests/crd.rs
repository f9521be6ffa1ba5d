//! The committed CRD files are generated from the types, and the schema is one a real API
//! server accepts (structural: every property typed; list maps keyed by required fields).

use std::path::Path;

use kube::CustomResourceExt;
use serde_json::Value;
use wva::crd::{CRD_PATHS, VariantAutoscaling, crd_yaml};

#[test]
fn committed_crds_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let want = crd_yaml().expect("renders");
    for p in CRD_PATHS {
        let have = std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(
            have == want,
            "{p} drifted from src/crd.rs: run `cargo run -- crdgen` and commit"
        );
    }
    let drift = wva::crdgen::drifted(root).expect("checks");
    assert!(drift.is_empty(), "{drift:?}");
}

#[test]
fn crdgen_check_reports_drift() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(wva::crdgen::drifted(dir.path()).expect("checks").len(), 2);
    wva::crdgen::write(dir.path()).expect("writes");
    assert!(wva::crdgen::drifted(dir.path()).expect("checks").is_empty());
    std::fs::write(dir.path().join(CRD_PATHS[1]), "edited").expect("write");
    assert_eq!(wva::crdgen::drifted(dir.path()).expect("checks").len(), 1);
}

fn schema() -> Value {
    let crd = serde_json::to_value(VariantAutoscaling::crd()).expect("serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Collects every schema node that lacks a type; a structural schema has none.
fn untyped(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else { return };
    let exempt = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if !obj.contains_key("type") && !exempt {
        out.push(path.to_string());
    }
    for forbidden in ["anyOf", "oneOf", "allOf", "$ref", "definitions", "$defs"] {
        if obj.contains_key(forbidden) {
            out.push(format!("{path} has {forbidden}"));
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            untyped(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        untyped(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        untyped(extra, &format!("{path}{{}}"), out);
    }
}

#[test]
fn schema_is_structural() {
    let mut problems = Vec::new();
    untyped(&schema(), "", &mut problems);
    assert!(problems.is_empty(), "not structural: {problems:?}");
}

#[test]
fn spec_fields_carry_their_rules() {
    let s = schema();
    let spec = &s["properties"]["spec"];
    assert_eq!(spec["required"], serde_json::json!(["modelID"]));
    let cost = &spec["properties"]["variantCost"];
    assert_eq!(cost["pattern"], r"^\d+(\.\d+)?$");
    assert_eq!(cost["default"], "10.0");
    assert_eq!(spec["properties"]["modelID"]["minLength"], 1);
    // A 1 MB model id (or one with control characters) is refused by the API server: it
    // would become decision-log keys and Event texts.
    let model = &spec["properties"]["modelID"];
    assert_eq!(model["maxLength"], 253);
    assert!(1_000_000 > model["maxLength"].as_u64().unwrap_or(0));
    assert_eq!(model["pattern"], r"^[^\x00-\x1f\x7f]+$");
    assert_eq!(
        spec["properties"]["scaleTargetRef"]["properties"]["name"]["maxLength"],
        253
    );
    let target = &spec["properties"]["scaleTargetRef"];
    assert_eq!(target["properties"]["kind"]["default"], "Deployment");
    assert_eq!(target["required"], serde_json::json!(["name"]));
    let acc = &spec["properties"]["modelProfile"]["properties"]["accelerators"]["items"];
    assert_eq!(acc["properties"]["accCount"]["minimum"], 1.0);
    // The accelerator becomes a label value of the published series.
    assert_eq!(acc["properties"]["acc"]["maxLength"], 63);
    assert_eq!(
        acc["properties"]["acc"]["pattern"],
        "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
    );
    assert_eq!(acc["properties"]["maxBatchSize"]["minimum"], 1.0);
    assert_eq!(
        acc["properties"]["perfParms"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
}

#[test]
fn conditions_are_a_list_map_keyed_by_type() {
    let s = schema();
    let conditions = &s["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    let required = conditions["items"]["required"]
        .as_array()
        .expect("required list");
    assert!(
        required.contains(&Value::from("type")),
        "a list-map key must be required"
    );
    let alloc = &s["properties"]["status"]["properties"]["desiredOptimizedAlloc"];
    assert!(
        alloc["required"].is_null(),
        "desiredOptimizedAlloc must accept {{}}"
    );
}

#[test]
fn names_subresource_and_printer_columns() {
    let crd = serde_json::to_value(VariantAutoscaling::crd()).expect("serializes");
    let spec = &crd["spec"];
    assert_eq!(crd["metadata"]["name"], wva::crd::CRD_NAME);
    assert_eq!(spec["group"], "llmd.ai");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["plural"], "variantautoscalings");
    assert_eq!(spec["names"]["singular"], "variantautoscaling");
    assert_eq!(spec["names"]["shortNames"], serde_json::json!(["va"]));
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Target",
            "Model",
            "Accelerator",
            "Current",
            "Desired",
            "Ready",
            "Reason",
            "Age"
        ]
    );
}

#[test]
fn an_old_object_with_perf_parms_still_parses() {
    let va: VariantAutoscaling = serde_yaml::from_str(
        "apiVersion: llmd.ai/v1alpha1\nkind: VariantAutoscaling\nmetadata:\n  name: llama-8b-autoscaler\nspec:\n  scaleTargetRef:\n    kind: Deployment\n    name: llama-8b\n  modelID: meta/llama-3.1-8b\n  variantCost: \"10.0\"\n  modelProfile:\n    accelerators:\n      - acc: A100\n        accCount: 1\n        perfParms:\n          decodeParms:\n            alpha: \"20.5\"\n            beta: \"0.41\"\n          prefillParms:\n            gamma: \"5.2\"\n            delta: \"0.1\"\n        maxBatchSize: 256\n",
    )
    .expect("parses");
    assert!(va.spec.has_perf_parms());
}
