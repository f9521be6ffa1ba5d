//! The decision side's own health series (CONTRACT section 16), with upstream v0.9's `wva_*`
//! names where the meaning is the same. The handles are cheap to clone and safe to use from any
//! thread; they are registered in the registry the controller's metrics endpoint serves (or in a
//! private one nobody reads, in the simulator and the tests).

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Durations of one model's decision, seconds.
const DECISION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Health series of the actors.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// `wva_model_decision_duration_seconds`: one model's cycle, from fan-out to outputs.
    pub model_decision_seconds: Histogram,
    /// `wva_decision_log_writes_total{result}`: appends and flushes, `ok`, `error` or `timeout`.
    pub log_writes: IntCounterVec,
    /// `wva_variant_actor_restarts_total`: variant actors restarted after refusing bad input.
    pub variant_restarts: IntCounter,
    /// `wva_scale_to_zero_blind_total`: model cycles held at their last good counts instead of
    /// going to zero, because the model could not be seen whole (CONTRACT section 7).
    pub scale_to_zero_blind: IntCounter,
    /// `wva_saturation_fallback_total`: model cycles in which `slo-capacity` could not learn
    /// some variant's capacity and the saturation analysis decided it (CONTRACT section 12).
    pub saturation_fallback: IntCounter,
    /// `wva_decisions_withheld_total`: decided counts logged but not published because the
    /// Lease (or the model's shard) was lost while their cycle ran (CONTRACT section 19).
    pub withheld: IntCounter,
    /// `wva_model_faults_total{fault}`: model cycles lost to a supervisor that panicked
    /// (`panicked`) or did not answer in time (`timed_out`); the model's counts hold and a fresh
    /// supervisor takes over (CONTRACT section 19).
    pub model_faults: IntCounterVec,
    /// `wva_accelerator_pool_gpus{accelerator}`: GPUs a limited pool gives the managed
    /// variants (CONTRACT section 20).
    pub pool_gpus: IntGaugeVec,
    /// `wva_accelerator_pool_granted_gpus{accelerator}`: of those, what the last cycle gave.
    pub pool_granted_gpus: IntGaugeVec,
    /// `wva_scarcity_cut_replicas{namespace,model}`: replicas a model wanted on limited
    /// accelerators and was not given in the last cycle (0: it got all it wanted).
    pub scarcity_cut: IntGaugeVec,
}

impl Telemetry {
    /// The series, registered in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let t = Self::unregistered()?;
        registry.register(Box::new(t.model_decision_seconds.clone()))?;
        registry.register(Box::new(t.log_writes.clone()))?;
        registry.register(Box::new(t.variant_restarts.clone()))?;
        registry.register(Box::new(t.scale_to_zero_blind.clone()))?;
        registry.register(Box::new(t.saturation_fallback.clone()))?;
        registry.register(Box::new(t.withheld.clone()))?;
        registry.register(Box::new(t.model_faults.clone()))?;
        registry.register(Box::new(t.pool_gpus.clone()))?;
        registry.register(Box::new(t.pool_granted_gpus.clone()))?;
        registry.register(Box::new(t.scarcity_cut.clone()))?;
        Ok(t)
    }

    /// The series, registered nowhere (simulations, tests).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        Ok(Self {
            model_decision_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "wva_model_decision_duration_seconds",
                    "Time to decide one model in a cycle: its variants' signals, the policy, the outputs.",
                )
                .buckets(DECISION_BUCKETS.to_vec()),
            )?,
            log_writes: IntCounterVec::new(
                Opts::new(
                    "wva_decision_log_writes_total",
                    "Decision-log appends and flushes, by result (ok, error).",
                ),
                &["result"],
            )?,
            variant_restarts: IntCounter::new(
                "wva_variant_actor_restarts_total",
                "Variant actors restarted after they refused their input.",
            )?,
            scale_to_zero_blind: IntCounter::new(
                "wva_scale_to_zero_blind_total",
                "Model cycles held at their last good counts instead of going to zero: no request series, or ready replicas that report nothing.",
            )?,
            saturation_fallback: IntCounter::new(
                "wva_saturation_fallback_total",
                "Model cycles in which slo-capacity could not learn a variant's capacity (no latency histograms, too little traffic) and the saturation analysis decided it.",
            )?,
            withheld: IntCounter::new(
                "wva_decisions_withheld_total",
                "Decided desired counts logged but not published, because the leader Lease or the model's shard was lost while their cycle ran.",
            )?,
            model_faults: IntCounterVec::new(
                Opts::new(
                    "wva_model_faults_total",
                    "Model cycles lost to a supervisor that panicked or did not answer in time; the model's counts held at last good and a fresh supervisor took over.",
                ),
                &["fault"],
            )?,
            pool_gpus: IntGaugeVec::new(
                Opts::new(
                    "wva_accelerator_pool_gpus",
                    "GPUs of a limited accelerator type the managed variants may hold: what the nodes offer, less what other pods hold, within any quota.",
                ),
                &["accelerator"],
            )?,
            pool_granted_gpus: IntGaugeVec::new(
                Opts::new(
                    "wva_accelerator_pool_granted_gpus",
                    "GPUs of a limited accelerator type the last cycle gave the managed variants.",
                ),
                &["accelerator"],
            )?,
            scarcity_cut: IntGaugeVec::new(
                Opts::new(
                    "wva_scarcity_cut_replicas",
                    "Replicas a model wanted on limited accelerators and was not given in the last cycle (0: it got all it wanted).",
                ),
                &["namespace", "model"],
            )?,
        })
    }
}
