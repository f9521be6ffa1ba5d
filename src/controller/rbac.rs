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
