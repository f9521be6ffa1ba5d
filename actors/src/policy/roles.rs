//! Disaggregated serving: the variants of a model may be prefill servers, decode servers, or
//! both (`llm-d.ai/role`). A prefill variant cannot stand in for a decode one, so each role is
//! decided apart, on the signals that say how loaded that role is:
//! - prefill on waiting prompt work: its waiting queue (its KV cache only holds prompts on their
//!   way to a decode server, and does not say it is full of work);
//! - decode on its KV cache and on requests waiting for a place in its running batch;
//! - `both` as an ordinary variant.
//!
//! Each role is decided as a model of its own. With `slo-capacity`, prefill servers are sized
//! on the prefill line (prompt tokens per second within the TTFT budget) and decode servers
//! on the ITL line, each learned from the role's own servers; otherwise, and where a line
//! cannot be learned, by the capacity analysis of section 3 (its thresholds, its cost
//! preference among the role's variants). The model-based optimizer describes servers that do
//! both phases, so it decides only models without roles.

use serde::{Deserialize, Serialize};

use super::decision::VariantInput;

/// The label (on a Deployment, its pod template, or a LeaderWorkerSet) that names a role.
pub const ROLE_LABEL: &str = "llm-d.ai/role";

/// What a variant's servers do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Prefill and decode: an ordinary server.
    #[default]
    Both,
    Prefill,
    Decode,
}

impl Role {
    /// Reads a label value; anything else than `prefill` or `decode` is an ordinary server.
    pub fn from_label(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some("prefill") => Self::Prefill,
            Some("decode") => Self::Decode,
            _ => Self::Both,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Both => "both",
            Self::Prefill => "prefill",
            Self::Decode => "decode",
        }
    }

    /// The role's view of a variant's signals: a prefill server is judged on its queue alone.
    pub fn signals(self, variant: &VariantInput) -> VariantInput {
        let mut v = variant.clone();
        if self == Self::Prefill {
            for r in &mut v.replicas {
                // Still a reporting replica when it reported a KV figure and no queue.
                r.queue_length = r.queue_length.or(r.kv_cache_usage.map(|_| 0.0));
                r.kv_cache_usage = None;
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::super::saturation::ReplicaSignals;
    use super::*;

    #[test]
    fn the_label_names_the_role_and_prefill_is_judged_on_its_queue() {
        assert_eq!(Role::from_label(Some("prefill")), Role::Prefill);
        assert_eq!(Role::from_label(Some("decode")), Role::Decode);
        assert_eq!(Role::from_label(Some("both")), Role::Both);
        assert_eq!(Role::from_label(Some("other")), Role::Both);
        assert_eq!(Role::from_label(None), Role::Both);
        let v = VariantInput {
            name: "p".into(),
            cost: 1.0,
            accelerator: "H100".into(),
            current_replicas: 1,
            ready_replicas: 1,
            previous_desired: None,
            replicas: vec![ReplicaSignals {
                pod: "p-0".into(),
                kv_cache_usage: Some(0.95),
                queue_length: None,
            }],
        };
        let seen = Role::Prefill.signals(&v);
        assert_eq!(seen.replicas[0].kv_cache_usage, None);
        assert_eq!(seen.replicas[0].queue_length, Some(0.0));
        assert_eq!(Role::Decode.signals(&v), v);
    }
}
