//! What `/readyz` reports, published by the control loop on a watch channel: the loop writes,
//! the probes read a snapshot, nothing is locked.

use serde::Serialize;
use tokio::sync::watch;

/// The controller's health as the probes show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The initial lists of VAs, Deployments, Pods and ConfigMaps are in.
    pub watches_synced: bool,
    pub leader: bool,
    /// A shadow instance (decides and logs; writes and publishes nothing a scaler reads).
    pub shadow: bool,
    /// The last metrics read worked.
    pub prometheus_ok: bool,
    /// Why the last read failed, when it did (the safety net decides meanwhile). Kept out of
    /// `/readyz`, which anyone who reaches the pod can read: the log has it.
    #[serde(skip)]
    pub prometheus_error: Option<String>,
    /// Cycles decided and published (counted when done, not when started).
    pub cycles: u64,
    /// Since when (RFC 3339) the watches cannot reach the API server, while they cannot.
    pub api_unreachable_since: Option<String>,
    /// Why the decision log is kept in memory only (its data directory cannot be opened).
    #[serde(skip)]
    pub decision_log_problem: Option<String>,
}

/// The loop's end of the channel.
pub type HealthSender = watch::Sender<Health>;
/// What the probes hold.
pub type HealthReceiver = watch::Receiver<Health>;

impl Health {
    /// The one-line summary `/readyz` leads with, and whether the pod is ready.
    pub fn summary(&self) -> (bool, String) {
        if !self.watches_synced {
            return (
                false,
                "not ready: waiting for the initial lists of VariantAutoscalings, Deployments and Pods".into(),
            );
        }
        // Still ready: the last published decisions stay published, which is what the HPA
        // needs while the API server is away.
        let text = if let Some(since) = &self.api_unreachable_since {
            format!(
                "ready, degraded: API server unreachable since {since}; decisions continue on the last known objects"
            )
        } else if self.decision_log_problem.is_some() {
            "ready, degraded: the decision log cannot be opened; deciding with an in-memory log (no history or restart recovery; the controller's log says why)".to_string()
        } else if !self.prometheus_ok && self.cycles > 0 {
            "ready, degraded: the Prometheus read failed; the safety net decides until it recovers (the controller's log says why)".to_string()
        } else if self.shadow {
            "ready: shadow instance (decides and logs; publishes only wva_shadow_* series, writes no status or Event)".to_string()
        } else if !self.leader {
            "ready: standing by (another instance holds the leader Lease)".to_string()
        } else {
            "ready".to_string()
        };
        (true, text)
    }
}
