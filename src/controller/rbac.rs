//! The exact API access the controller needs, as data: the Helm chart's roles and the docs are
//! checked against it. Each rule says why it is needed.

/// One RBAC rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub api_group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// The objects the rule is limited to (empty: all); [`LEASE_NAME`] stands for the Lease.
    pub names: &'static [&'static str],
    pub why: &'static str,
}

/// Stands for the leader-election Lease's name (`LEADER_ELECTION_ID`) in [`Rule::names`].
pub const LEASE_NAME: &str = "$LEADER_ELECTION_ID";

/// Rules over the watched namespaces (a ClusterRole, or a Role in the one watched namespace).
pub const WATCHED: &[Rule] = &[
    Rule {
        api_group: "llmd.ai",
        resources: &["variantautoscalings"],
        verbs: &["get", "list", "watch"],
        names: &[],
        why: "the VAs to manage (get: the guides check access with `kubectl auth can-i get`)",
    },
    Rule {
        api_group: "llmd.ai",
        resources: &["variantautoscalings/status"],
        verbs: &["patch"],
        names: &[],
        why: "server-side apply of the VA status",
    },
    Rule {
        api_group: "apps",
        resources: &["deployments"],
        verbs: &["list", "watch"],
        names: &[],
        why: "replicas of each variant, discovery mode",
    },
    Rule {
        api_group: "",
        resources: &["pods"],
        verbs: &["list", "watch"],
        names: &[],
        why: "live pods of each Deployment, to drop series of pods that are gone",
    },
    Rule {
        api_group: "autoscaling",
        resources: &["horizontalpodautoscalers"],
        verbs: &["list", "watch"],
        names: &[],
        why: "HPAs annotated llm-d.ai/managed (variants without a VA), and the bounds of every variant",
    },
    Rule {
        api_group: "keda.sh",
        resources: &["scaledobjects"],
        verbs: &["list", "watch"],
        names: &[],
        why: "ScaledObjects annotated llm-d.ai/managed, and bounds; ignored until KEDA is installed",
    },
    Rule {
        api_group: "leaderworkerset.x-k8s.io",
        resources: &["leaderworkersets"],
        verbs: &["list", "watch"],
        names: &[],
        why: "LeaderWorkerSets as scale targets (groups); ignored until their CRD is installed",
    },
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        names: &[],
        why: "Events on VAs, annotated HPAs and ScaledObjects, and ConfigMaps",
    },
];

/// Rules in the controller's own namespace (a Role).
pub const OWN_NAMESPACE: &[Rule] = &[
    Rule {
        api_group: "",
        resources: &["configmaps"],
        verbs: &["get", "list", "watch"],
        names: &[],
        why: "the configuration ConfigMaps, reloaded live",
    },
    Rule {
        api_group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["create"],
        names: &[],
        why: "leader election: the Lease is created once (create cannot be limited by name)",
    },
    Rule {
        api_group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["get", "update"],
        names: &[LEASE_NAME],
        why: "leader election: read and renew its own Lease only",
    },
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        names: &[],
        why: "Events on invalid ConfigMaps",
    },
];

/// Added in the controller's own namespace when the models are spread over shards
/// (`--shards` above 1).
pub const SHARDED: &[Rule] = &[Rule {
    api_group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "list", "update"],
    names: &[],
    why: "shards: list the shard and membership Leases and renew the ones held (their names follow the shard count and the replica, so they cannot be listed here)",
}];

/// Cluster-wide, when the accelerator pool is read from the cluster (`WVA_ACCELERATOR_POOL`):
/// a ClusterRole even when the controller is scoped to a namespace, since the pool is shared.
pub const POOL: &[Rule] = &[
    Rule {
        api_group: "",
        resources: &["nodes"],
        verbs: &["list", "watch"],
        names: &[],
        why: "accelerator pool: what each node can allocate, of which accelerator type",
    },
    Rule {
        api_group: "",
        resources: &["pods"],
        verbs: &["list", "watch"],
        names: &[],
        why: "accelerator pool: what the pods of every namespace hold on their nodes",
    },
];

/// Cluster-wide rules that exist only at cluster scope (a ClusterRole even when namespaced).
pub const CLUSTER: &[Rule] = &[
    Rule {
        api_group: "authentication.k8s.io",
        resources: &["tokenreviews"],
        verbs: &["create"],
        names: &[],
        why: "authenticate scrapers of the metrics endpoint",
    },
    Rule {
        api_group: "authorization.k8s.io",
        resources: &["subjectaccessreviews"],
        verbs: &["create"],
        names: &[],
        why: "authorize scrapers of the metrics endpoint (GET /metrics)",
    },
];

/// The rules as a YAML `rules:` list (for docs and the chart); `lease` is how the Lease's name
/// is written.
pub fn rules_yaml(rules: &[Rule], lease: &str) -> String {
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
        if !r.names.is_empty() {
            out.push_str(&format!(
                "  resourceNames: [{}]\n",
                r.names
                    .iter()
                    .map(|x| if *x == LEASE_NAME {
                        lease.to_string()
                    } else {
                        format!("\"{x}\"")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

/// How the docs write the Lease's name.
pub const DOCS_LEASE_NAME: &str = "\"<LEADER_ELECTION_ID>\"";
/// How the chart writes it.
pub const CHART_LEASE_NAME: &str = "{{ include \"wva.leaseName\" . }}";

/// Where the chart takes the rules from: a template file of named definitions, generated by
/// [`chart_rules_template`] (a test keeps it in sync).
pub const CHART_RULES_TEMPLATE: &str =
    "charts/workload-variant-autoscaler/templates/controller/_rbac_rules.tpl";

/// The Helm template that defines `wva.rules.watched`, `wva.rules.own` and `wva.rules.cluster`.
pub fn chart_rules_template() -> String {
    let mut out = String::from(
        "{{/* Generated from src/controller/rbac.rs (WVA_BLESS=1 cargo test -p wva rbac). Do not edit. */}}\n",
    );
    for (name, rules) in [
        ("watched", WATCHED),
        ("own", OWN_NAMESPACE),
        ("sharded", SHARDED),
        ("pool", POOL),
        ("cluster", CLUSTER),
    ] {
        out.push_str(&format!(
            "\n{{{{- define \"wva.rules.{name}\" -}}}}\n{}{{{{- end -}}}}\n",
            rules_yaml(rules, CHART_LEASE_NAME)
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
            ("SHARDED_RULES", SHARDED),
            ("POOL_RULES", POOL),
            ("CLUSTER_RULES", CLUSTER),
        ] {
            let yaml = rules_yaml(rules, DOCS_LEASE_NAME);
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

    /// The chart's roles include these rules from a generated template; regenerate it with
    /// `WVA_BLESS=1 cargo test -p wva rbac`.
    #[test]
    fn the_chart_takes_exactly_these_rules() {
        let path = format!("{}/{CHART_RULES_TEMPLATE}", env!("CARGO_MANIFEST_DIR"));
        let expected = chart_rules_template();
        if std::fs::read_to_string(&path).ok().as_deref() != Some(expected.as_str()) {
            assert!(
                std::env::var_os("WVA_BLESS").is_some(),
                "{CHART_RULES_TEMPLATE} differs from rbac.rs; run with WVA_BLESS=1"
            );
            std::fs::write(&path, expected).expect("write the chart's rules");
        }
    }
}
