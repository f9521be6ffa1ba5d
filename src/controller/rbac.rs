//! The exact API access the controller needs, as data: the Helm chart's roles and the docs are
//! checked against it. Each rule says why it is needed.

/// One RBAC rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub api_group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub why: &'static str,
}

/// Rules over the watched namespaces (a ClusterRole, or a Role in the one watched namespace).
pub const WATCHED: &[Rule] = &[
    Rule {
        api_group: "llmd.ai",
        resources: &["variantautoscalings"],
        verbs: &["get", "list", "watch"],
        why: "the VAs to manage",
    },
    Rule {
        api_group: "llmd.ai",
        resources: &["variantautoscalings/status"],
        verbs: &["get", "patch", "update"],
        why: "server-side apply of the VA status",
    },
    Rule {
        api_group: "apps",
        resources: &["deployments"],
        verbs: &["get", "list", "watch"],
        why: "replicas of each variant, discovery mode",
    },
    Rule {
        api_group: "",
        resources: &["pods"],
        verbs: &["get", "list", "watch"],
        why: "live pods of each Deployment, to drop series of pods that are gone",
    },
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        why: "Events on VAs and ConfigMaps",
    },
];

/// Rules in the controller's own namespace (a Role).
pub const OWN_NAMESPACE: &[Rule] = &[
    Rule {
        api_group: "",
        resources: &["configmaps"],
        verbs: &["get", "list", "watch"],
        why: "the configuration ConfigMaps, reloaded live",
    },
    Rule {
        api_group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["get", "create", "update"],
        why: "leader election",
    },
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        why: "Events on invalid ConfigMaps",
    },
];

/// Cluster-wide rules that exist only at cluster scope (a ClusterRole even when namespaced).
pub const CLUSTER: &[Rule] = &[
    Rule {
        api_group: "authentication.k8s.io",
        resources: &["tokenreviews"],
        verbs: &["create"],
        why: "authenticate scrapers of the metrics endpoint",
    },
    Rule {
        api_group: "authorization.k8s.io",
        resources: &["subjectaccessreviews"],
        verbs: &["create"],
        why: "authorize scrapers of the metrics endpoint (GET /metrics)",
    },
];

/// The rules as a YAML `rules:` list (for docs and the chart).
pub fn rules_yaml(rules: &[Rule]) -> String {
    let mut out = String::new();
    for r in rules {
        out.push_str(&format!("# {}\n", r.why));
        out.push_str(&format!("- apiGroups: [\"{}\"]\n", r.api_group));
        out.push_str(&format!(
            "  resources: [{}]\n",
            r.resources
                .iter()
                .map(|x| format!("\"{x}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push_str(&format!(
            "  verbs: [{}]\n",
            r.verbs
                .iter()
                .map(|x| format!("\"{x}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/running.md carries these rules verbatim; regenerate with
    /// `WVA_BLESS=1 cargo test -p wva rbac`.
    #[test]
    fn the_docs_list_exactly_these_rules() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/running.md");
        let text = std::fs::read_to_string(path).expect("docs/running.md");
        let mut expected = text.clone();
        for (marker, rules) in [
            ("WATCHED_RULES", WATCHED),
            ("OWN_NAMESPACE_RULES", OWN_NAMESPACE),
            ("CLUSTER_RULES", CLUSTER),
        ] {
            let yaml = rules_yaml(rules);
            let yaml = yaml.trim_end();
            if let Some(at) = expected.find(&format!("```yaml\n{marker}\n```")) {
                expected
                    .replace_range(at..at + marker.len() + 12, &format!("```yaml\n{yaml}\n```"));
            }
            assert!(
                expected.contains(yaml),
                "docs/running.md does not list the {marker}; run with WVA_BLESS=1"
            );
        }
        if expected != text {
            assert!(
                std::env::var_os("WVA_BLESS").is_some(),
                "docs/running.md has placeholders; run with WVA_BLESS=1"
            );
            std::fs::write(path, expected).expect("write docs/running.md");
        }
    }
}
