//! The variant actor: the live state of one variant (its latency learner and ITL fit), fed the
//! signals of its pods, checked, each cycle.

use actix::prelude::*;
use std::sync::Arc;

use crate::messages::{PodSample, VariantKey, VariantSpec};
use crate::policy::ReplicaSignals;
use crate::policy::learner::{LatencyLearner, LatencyObservation};
use crate::policy::slo_capacity::{ItlFit, ServingSummary, TtftFit};

/// State of one variant: what it has learned of its latency. Its pods' signals pass through each
/// cycle (they are in the decision log, not kept here); its Deployment and its desired counts
/// are the supervisor's: the supervisor decides.
#[derive(Debug)]
pub struct VariantActor {
    spec: Arc<VariantSpec>,
    learner: LatencyLearner,
    itl_fit: ItlFit,
    ttft_fit: TtftFit,
}

impl VariantActor {
    pub fn new(spec: Arc<VariantSpec>) -> Self {
        Self {
            spec,
            learner: LatencyLearner::default(),
            itl_fit: ItlFit::default(),
            ttft_fit: TtftFit::default(),
        }
    }
}

impl Actor for VariantActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
    }
}

/// What the variant answers to a cycle's signals: the part of the policy's input only it knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Signals of its live pods.
    pub replicas: Vec<ReplicaSignals>,
    /// The latency learner after this cycle's observation (model-based modes only).
    pub learner: Option<LatencyLearner>,
    /// What its servers served, pooled, and its ITL fit after this cycle (when serving
    /// statistics are read).
    pub serving: Option<ServingSummary>,
    pub itl_fit: Option<ItlFit>,
    /// Its prefill line after this cycle (with the ITL fit).
    pub ttft_fit: Option<TtftFit>,
}

/// What a set of pods (a variant's, or a whole model's) served over the window, pooled: rates
/// add up, means are weighted by each pod's rate (a plain mean when nothing was served), the
/// batch and queues are means per pod. `None` when no pod reports serving statistics.
pub fn pool<'a>(pods: impl IntoIterator<Item = &'a PodSample>) -> Option<ServingSummary> {
    let reporting: Vec<_> = pods
        .into_iter()
        .filter_map(|p| p.serving.filter(|s| s.is_valid()).map(|s| (p, s)))
        .collect();
    if reporting.is_empty() {
        return None;
    }
    let n = reporting.len() as f64;
    let rate: f64 = reporting.iter().map(|(_, s)| s.request_rate_rps).sum();
    let mean = |f: &dyn Fn(&crate::messages::ServingStats) -> f64| {
        if rate > 0.0 {
            reporting
                .iter()
                .map(|(_, s)| f(s) * s.request_rate_rps)
                .sum::<f64>()
                / rate
        } else {
            reporting.iter().map(|(_, s)| f(s)).sum::<f64>() / n
        }
    };
    let per_pod = |f: &dyn Fn(&PodSample, &crate::messages::ServingStats) -> f64| {
        reporting.iter().map(|(p, s)| f(p, s)).sum::<f64>() / n
    };
    Some(ServingSummary {
        pods: reporting.len(),
        rate_rps: rate,
        mean_input_tokens: mean(&|s| s.mean_input_tokens),
        mean_output_tokens: mean(&|s| s.mean_output_tokens),
        ttft_ms: mean(&|s| s.ttft_ms),
        itl_ms: mean(&|s| s.itl_ms),
        batch: per_pod(&|p, _| p.running.unwrap_or(0.0)),
        waiting: per_pod(&|_, s| s.mean_waiting),
        waiting_end: per_pod(&|_, s| s.last_waiting),
    })
}

/// Why a variant actor refused a message and stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("variant {variant}: {problem}")]
pub struct VariantFault {
    pub variant: VariantKey,
    pub problem: String,
}

/// New signals for the cycle; answers with what the policy needs of the variant.
#[derive(Debug, Message)]
#[rtype(result = "Result<Observation, VariantFault>")]
pub struct Observe {
    pub variant: VariantKey,
    pub samples: Vec<PodSample>,
    /// Feed the latency learner (hybrid and model-only modes).
    pub learn: bool,
    /// Pool the serving statistics and feed the ITL fit (the `slo-capacity` analyzer).
    pub fit_itl: bool,
}

impl Handler<Observe> for VariantActor {
    type Result = Result<Observation, VariantFault>;

    fn handle(&mut self, msg: Observe, ctx: &mut Context<Self>) -> Self::Result {
        // The adapters guarantee these; a breach means a bug upstream. Stop rather than decide
        // on bad data: the supervisor restarts the actor from the decision log.
        let problem = if msg.variant != self.spec.key {
            Some(format!("received signals routed for {}", msg.variant))
        } else {
            msg.samples.iter().find_map(|s| {
                let bad_kv = s
                    .kv_cache_usage
                    .is_some_and(|kv| !(kv.is_finite() && (0.0..=1.0).contains(&kv)));
                let bad_queue = s.queue_length.is_some_and(|q| !(q.is_finite() && q >= 0.0));
                if s.deployment != self.spec.deployment {
                    Some(format!(
                        "pod {} belongs to {}, not {}",
                        s.pod, s.deployment, self.spec.deployment
                    ))
                } else if bad_kv || bad_queue {
                    Some(format!(
                        "pod {} has invalid signals (kv {:?}, queue {:?})",
                        s.pod, s.kv_cache_usage, s.queue_length
                    ))
                } else {
                    None
                }
            })
        };
        if let Some(problem) = problem {
            ctx.stop();
            return Err(VariantFault {
                variant: self.spec.key.clone(),
                problem,
            });
        }
        let pool = pool(&msg.samples);
        // The hybrid learner's state is recorded every cycle, so replay needs no rounding.
        if msg.learn
            && let Some(o) = pool.as_ref().and_then(LatencyObservation::of)
        {
            self.learner.observe(&o);
        }
        // Rounded to the precision the log keeps, before `slo-capacity` decides from them.
        let serving = pool.filter(|_| msg.fit_itl).map(crate::precision::serving);
        if let Some(s) = &serving {
            self.itl_fit.observe(s);
            self.ttft_fit.observe(s);
        }
        Ok(Observation {
            replicas: msg
                .samples
                .into_iter()
                .map(|p| {
                    crate::precision::replica(ReplicaSignals {
                        pod: p.pod,
                        kv_cache_usage: p.kv_cache_usage,
                        queue_length: p.queue_length,
                    })
                })
                .collect(),
            learner: msg.learn.then(|| self.learner.clone()),
            serving,
            itl_fit: msg.fit_itl.then_some(self.itl_fit),
            ttft_fit: msg.fit_itl.then_some(self.ttft_fit),
        })
    }
}

/// The VA changed (cost, accelerator, status).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateSpec(pub Arc<VariantSpec>);

impl Handler<UpdateSpec> for VariantActor {
    type Result = ();
    fn handle(&mut self, msg: UpdateSpec, _: &mut Context<Self>) {
        self.spec = msg.0;
    }
}

/// Stop: the variant is no longer managed, or is being replaced.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopVariant;

impl Handler<StopVariant> for VariantActor {
    type Result = ();
    fn handle(&mut self, _: StopVariant, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// A learner state recovered from the decision log. Kept only if it knows more than what the
/// actor learned since it started.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RestoreLearner(pub LatencyLearner);

impl Handler<RestoreLearner> for VariantActor {
    type Result = ();
    fn handle(&mut self, msg: RestoreLearner, _: &mut Context<Self>) {
        if msg.0.samples().0 > self.learner.samples().0 {
            self.learner = msg.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::ServingStats;

    fn pod(name: &str, rate: f64, input: f64, itl: f64, running: f64) -> PodSample {
        PodSample {
            pod: name.into(),
            deployment: "d".into(),
            kv_cache_usage: Some(0.3),
            queue_length: Some(2.0),
            running: Some(running),
            serving: Some(ServingStats {
                request_rate_rps: rate,
                mean_input_tokens: input,
                mean_output_tokens: 100.0,
                ttft_ms: 80.0,
                itl_ms: itl,
                mean_waiting: 2.0,
                last_waiting: 2.0,
            }),
        }
    }

    #[test]
    fn pods_pool_by_rate_and_bad_statistics_are_no_sample() {
        let mut broken = pod("c", 5.0, 900.0, 30.0, 10.0);
        broken.serving = broken.serving.map(|s| ServingStats {
            itl_ms: f64::NAN,
            ..s
        });
        let mut infinite = pod("d", 1.0, 100.0, 10.0, 1.0);
        infinite.serving = infinite.serving.map(|s| ServingStats {
            request_rate_rps: f64::INFINITY,
            ..s
        });
        let pods = [
            pod("a", 3.0, 1000.0, 20.0, 8.0),
            pod("b", 1.0, 200.0, 40.0, 4.0),
            broken,
            infinite,
        ];
        let pool = pool(&pods).expect("two pods report");
        assert_eq!(pool.pods, 2, "NaN and infinite statistics are not samples");
        assert_eq!(pool.rate_rps, 4.0);
        assert_eq!(pool.mean_input_tokens, (3.0 * 1000.0 + 200.0) / 4.0);
        assert_eq!(pool.itl_ms, (3.0 * 20.0 + 40.0) / 4.0);
        assert_eq!(pool.batch, 6.0, "batch and queue are per-pod means");
        assert_eq!(pool.waiting, 2.0);
        let o = LatencyObservation::of(&pool).expect("served something");
        assert_eq!(o.rate_rps, 2.0, "the learner sees the rate per replica");
        assert!(super::pool(&pods[2..]).is_none());
    }
}
