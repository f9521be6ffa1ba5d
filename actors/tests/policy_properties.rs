//! CONTRACT section 12 checked on generated situations, for both analyzers: more load never
//! gives fewer replicas, a model keeps at least one replica (scale to zero aside), and missing
//! or erroring data never scales anything down.

use proptest::prelude::*;
use wva_actors::policy::cycle::{CycleDecision, CycleInputs, decide_cycle};
use wva_actors::policy::slo_capacity::{
    CapacityVariant, ItlFit, ServingSummary, SloCapacityConfig,
};
use wva_actors::policy::{Analyzer, ReplicaSignals, Thresholds, VariantInput};

/// A model of one to three variants, each with its replicas' signals.
fn situation() -> impl Strategy<Value = Vec<VariantInput>> {
    let replica = (0.0..=1.0f64, 0.0..30.0f64).prop_map(|(kv, q)| (kv, q));
    let variant = (
        1.0..100.0f64,
        prop::collection::vec(replica, 0..6),
        // A previous desired count of 0 comes only from scale to zero, which is off here.
        prop::option::of(1u32..8),
        0u32..3,
    );
    prop::collection::vec(variant, 1..4).prop_map(|vs| {
        vs.into_iter()
            .enumerate()
            .map(|(i, (cost, signals, previous, pending))| {
                let ready = signals.len() as u32;
                VariantInput {
                    name: format!("v{i}"),
                    cost,
                    accelerator: "H100".into(),
                    current_replicas: ready + pending,
                    ready_replicas: ready,
                    previous_desired: previous,
                    replicas: signals
                        .into_iter()
                        .enumerate()
                        .map(|(k, (kv, q))| ReplicaSignals {
                            pod: format!("v{i}-{k}"),
                            kv_cache_usage: Some(kv),
                            queue_length: Some(q),
                        })
                        .collect(),
                }
            })
            .collect()
    })
}

/// `slo-capacity`'s view of the variants: what each served, and a learned ITL line.
fn views(variants: &[VariantInput], rate_per_pod: f64) -> Vec<CapacityVariant> {
    variants
        .iter()
        .map(|v| {
            let pods = v.replicas.len();
            let mut fit = ItlFit::default();
            for k in 1..=6 {
                let rps = f64::from(k) * 0.5;
                fit.observe(&ServingSummary {
                    pods: 1,
                    rate_rps: rps,
                    mean_input_tokens: 800.0,
                    mean_output_tokens: 200.0,
                    ttft_ms: 80.0,
                    itl_ms: 8.0 + 4.0 * rps,
                    batch: 4.0 * rps,
                    waiting: 0.0,
                    waiting_end: 0.0,
                });
            }
            CapacityVariant {
                input: v.clone(),
                serving: (pods > 0).then_some(ServingSummary {
                    pods,
                    rate_rps: rate_per_pod * pods as f64,
                    mean_input_tokens: 800.0,
                    mean_output_tokens: 200.0,
                    ttft_ms: 100.0,
                    itl_ms: 8.0 + 4.0 * rate_per_pod,
                    batch: 4.0 * rate_per_pod,
                    waiting: 0.0,
                    waiting_end: 0.0,
                }),
                fit,
                prefill_fit: Default::default(),
                role: Default::default(),
                max_batch: 256,
                min_replicas: None,
                max_replicas: None,
                recent: Vec::new(),
            }
        })
        .collect()
}

fn decide(
    analyzer: Analyzer,
    variants: &[VariantInput],
    rate_per_pod: f64,
    error: Option<&str>,
    held: Option<f64>,
) -> CycleDecision {
    let views = views(variants, rate_per_pod);
    let config = SloCapacityConfig::default();
    decide_cycle(CycleInputs {
        metrics_error: error,
        analyzer,
        slo_capacity: (analyzer == Analyzer::SloCapacity).then_some((views.as_slice(), &config)),
        held_requests: held,
        ..CycleInputs::capacity(&Thresholds::default(), variants)
    })
}

fn total(d: &CycleDecision) -> u32 {
    d.decision.variants.iter().map(|t| t.target).sum()
}

/// The same situation under more load: every queue longer, every KV cache fuller.
fn busier(variants: &[VariantInput], extra_queue: f64, extra_kv: f64) -> Vec<VariantInput> {
    let mut out = variants.to_vec();
    for r in out.iter_mut().flat_map(|v| v.replicas.iter_mut()) {
        r.queue_length = r.queue_length.map(|q| q + extra_queue);
        r.kv_cache_usage = r.kv_cache_usage.map(|kv| (kv + extra_kv).min(1.0));
    }
    out
}

const ANALYZERS: [Analyzer; 2] = [Analyzer::SaturationV1, Analyzer::SloCapacity];

proptest! {
    // A fixed seed: the suite explores the same 256 cases every run, so that it fails only on a
    // change (wider runs: raise `cases` and change the seed locally).
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0001),
        ..ProptestConfig::default()
    })]

    /// Monotone in the demand signals: queues, KV caches, requests held by the scheduler. (The
    /// completion rate is not one of them: it is also what `slo-capacity` learns capacity from.)
    #[test]
    fn more_load_never_gives_fewer_replicas(
        variants in situation(),
        rate in 0.0..6.0f64,
        extra_queue in 0.0..20.0f64,
        extra_kv in 0.0..0.5f64,
        held in 0.0..50.0f64,
        extra_held in 0.0..50.0f64,
    ) {
        for analyzer in ANALYZERS {
            let before = total(&decide(analyzer, &variants, rate, None, Some(held)));
            let more = busier(&variants, extra_queue, extra_kv);
            let after = total(&decide(analyzer, &more, rate, None, Some(held + extra_held)));
            prop_assert!(after >= before, "{analyzer:?}: {before} -> {after}");
        }
    }

    #[test]
    fn a_model_keeps_at_least_one_replica(variants in situation(), rate in 0.0..6.0f64) {
        for analyzer in ANALYZERS {
            let d = decide(analyzer, &variants, rate, None, None);
            prop_assert!(total(&d) >= 1, "{analyzer:?}: {:?}", d.decision.variants);
        }
    }

    #[test]
    fn missing_or_erroring_data_never_scales_down(variants in situation(), rate in 0.0..6.0f64) {
        let blind: Vec<VariantInput> = variants
            .iter()
            .map(|v| {
                let mut v = v.clone();
                for r in &mut v.replicas {
                    r.kv_cache_usage = None;
                    r.queue_length = None;
                }
                v
            })
            .collect();
        for analyzer in ANALYZERS {
            for (inputs, error) in [(&variants, Some("Prometheus unreachable")), (&blind, None)] {
                let d = decide(analyzer, inputs, rate, error, None);
                for (t, v) in d.decision.variants.iter().zip(inputs.iter()) {
                    let held = v.previous_desired.unwrap_or(v.current_replicas);
                    prop_assert!(
                        t.target >= held,
                        "{:?} {:?}: {} < {}: {}", analyzer, error, t.target, held, t.reason
                    );
                }
            }
        }
    }
}
