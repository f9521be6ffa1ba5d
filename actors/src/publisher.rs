//! The publisher: the metrics HPA and KEDA act on, in an owned Prometheus registry.
//!
//! One series per variant: desired, current and their ratio as gauges, and a counter of desired
//! changes by direction and reason. With a controller instance id every series carries
//! `controller_instance`. A variant that goes away takes its series with it, so an HPA never
//! acts on a stale value. When not active (not the leader), nothing is published.

use std::collections::{BTreeSet, HashMap};

use actix::prelude::*;
use prometheus::{CounterVec, Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use tokio::sync::watch;
use wva_storage::VariantKey;

pub use crate::policy::outputs::{Published, ScalingChange};

/// Names and constant labels of the published series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    /// `inferno` (what existing HPAs select) or `wva`.
    pub prefix: String,
    pub controller_instance: Option<String>,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            prefix: "inferno".into(),
            controller_instance: None,
        }
    }
}

/// A variant's series: its accelerator label, the (direction, reason) pairs its counter has
/// used, and the handles of its gauges (looked up by label values once, not every cycle).
#[derive(Debug)]
struct VariantSeries {
    accelerator: String,
    changes: BTreeSet<(&'static str, &'static str)>,
    desired: Gauge,
    current: Gauge,
    ratio: Gauge,
    safety_net: Gauge,
    metrics_missing: Gauge,
}

/// The published desired count of every variant, for readers that are not Prometheus (KEDA's
/// external scaler): the same values as the series, changed at the same moments.
pub type DesiredBoard = HashMap<VariantKey, u32>;

/// The publisher actor.
#[derive(Debug)]
pub struct Publisher {
    board: watch::Sender<DesiredBoard>,
    registry: Registry,
    desired: GaugeVec,
    current: GaugeVec,
    ratio: GaugeVec,
    scaling: CounterVec,
    safety_net: GaugeVec,
    metrics_missing: GaugeVec,
    /// Label values in use per variant, so that all of its series can be removed. A fast
    /// hasher: the map is read for every variant every cycle, and its keys are our own.
    series: HashMap<VariantKey, VariantSeries, foldhash::fast::RandomState>,
    active: bool,
    /// Says the publisher is gone when it is dropped (see [`crate::lifeline`]).
    alive: Option<crate::lifeline::PartGuard>,
}

const LABELS: [&str; 3] = ["variant_name", "namespace", "accelerator_type"];
const HEALTH_LABELS: [&str; 2] = ["variant_name", "namespace"];
const SCALING_LABELS: [&str; 5] = [
    "variant_name",
    "namespace",
    "accelerator_type",
    "direction",
    "reason",
];

impl Publisher {
    pub fn new(config: &PublisherConfig) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| {
            let mut o = Opts::new(format!("{}_{name}", config.prefix), help);
            if let Some(id) = &config.controller_instance {
                o = o.const_label("controller_instance", id.clone());
            }
            o
        };
        let desired = GaugeVec::new(
            opts(
                "desired_replicas",
                "Replicas the autoscaler wants for the variant.",
            ),
            &LABELS,
        )?;
        let current = GaugeVec::new(
            opts("current_replicas", "Replicas the variant's Deployment has."),
            &LABELS,
        )?;
        let ratio = GaugeVec::new(
            opts(
                "desired_ratio",
                "Desired over current replicas (the desired count when current is 0).",
            ),
            &LABELS,
        )?;
        let scaling = CounterVec::new(
            opts(
                "replica_scaling_total",
                "Changes of the desired replica count.",
            ),
            &SCALING_LABELS,
        )?;
        // Health of each variant's decision, under upstream's names whatever the prefix.
        let wva_opts = |name: &str, help: &str| {
            let mut o = Opts::new(name, help);
            if let Some(id) = &config.controller_instance {
                o = o.const_label("controller_instance", id.clone());
            }
            o
        };
        let safety_net = GaugeVec::new(
            wva_opts(
                "wva_safety_net_active",
                "1 while the safety net chooses the variant's desired count.",
            ),
            &HEALTH_LABELS,
        )?;
        let metrics_missing = GaugeVec::new(
            wva_opts(
                "wva_metrics_missing",
                "1 while no vLLM series matches the variant's pods.",
            ),
            &HEALTH_LABELS,
        )?;
        registry.register(Box::new(safety_net.clone()))?;
        registry.register(Box::new(metrics_missing.clone()))?;
        registry.register(Box::new(desired.clone()))?;
        registry.register(Box::new(current.clone()))?;
        registry.register(Box::new(ratio.clone()))?;
        registry.register(Box::new(scaling.clone()))?;
        Ok(Self {
            board: watch::Sender::new(DesiredBoard::new()),
            registry,
            desired,
            current,
            ratio,
            scaling,
            safety_net,
            metrics_missing,
            series: HashMap::default(),
            active: true,
            alive: None,
        })
    }

    /// The publisher with the guard that reports its end.
    pub fn guarded(mut self, guard: crate::lifeline::PartGuard) -> Self {
        self.alive = Some(guard);
        self
    }

    /// The names of every series the publisher can expose.
    pub fn series_names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 6] = [
            &self.desired,
            &self.current,
            &self.ratio,
            &self.scaling,
            &self.safety_net,
            &self.metrics_missing,
        ];
        collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect()
    }

    /// A reader of the desired counts as published; take it before starting the actor.
    pub fn board(&self) -> watch::Receiver<DesiredBoard> {
        self.board.subscribe()
    }

    fn publish(&mut self, p: &Published) {
        match self.series.get_mut(&p.variant) {
            Some(series) if series.accelerator == p.accelerator => {
                series.set(p, &self.scaling);
                return;
            }
            // Another accelerator: its series go, new ones come.
            Some(_) => self.remove(&p.variant),
            None => {}
        }
        let labels = [
            p.variant.name.as_str(),
            p.variant.namespace.as_str(),
            p.accelerator.as_str(),
        ];
        let health = [labels[0], labels[1]];
        let mut series = VariantSeries {
            accelerator: p.accelerator.clone(),
            changes: BTreeSet::new(),
            desired: self.desired.with_label_values(&labels),
            current: self.current.with_label_values(&labels),
            ratio: self.ratio.with_label_values(&labels),
            safety_net: self.safety_net.with_label_values(&health),
            metrics_missing: self.metrics_missing.with_label_values(&health),
        };
        series.set(p, &self.scaling);
        self.series.insert(p.variant.clone(), series);
    }

    fn remove(&mut self, variant: &VariantKey) {
        self.board.send_if_modified(|b| b.remove(variant).is_some());
        let Some(VariantSeries {
            accelerator,
            changes,
            ..
        }) = self.series.remove(variant)
        else {
            return;
        };
        let labels = [
            variant.name.as_str(),
            variant.namespace.as_str(),
            accelerator.as_str(),
        ];
        // A series that is already gone is not an error here.
        let _ = self.desired.remove_label_values(&labels);
        let _ = self.current.remove_label_values(&labels);
        let _ = self.ratio.remove_label_values(&labels);
        let _ = self.safety_net.remove_label_values(&labels[..2]);
        let _ = self.metrics_missing.remove_label_values(&labels[..2]);
        for (direction, reason) in changes {
            let _ = self
                .scaling
                .remove_label_values(&[labels[0], labels[1], labels[2], direction, reason]);
        }
    }

    fn text(&self) -> String {
        let mut buf = Vec::new();
        match TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            Ok(()) => String::from_utf8(buf).unwrap_or_default(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the published metrics");
                String::new()
            }
        }
    }
}

impl VariantSeries {
    /// Sets the values of a variant's series from what was decided.
    fn set(&mut self, p: &Published, scaling: &CounterVec) {
        self.desired.set(f64::from(p.desired));
        self.current.set(f64::from(p.current));
        let ratio = if p.current == 0 {
            f64::from(p.desired)
        } else {
            f64::from(p.desired) / f64::from(p.current)
        };
        self.ratio.set(ratio);
        self.safety_net.set(f64::from(u8::from(p.safety_net)));
        self.metrics_missing
            .set(f64::from(u8::from(p.metrics_missing)));
        if let Some(change) = &p.change {
            scaling
                .with_label_values(&[
                    p.variant.name.as_str(),
                    p.variant.namespace.as_str(),
                    p.accelerator.as_str(),
                    change.direction,
                    change.reason,
                ])
                .inc();
            self.changes.insert((change.direction, change.reason));
        }
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// Publish the values of some variants.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Publish(pub Vec<Published>);

impl Handler<Publish> for Publisher {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        if self.active {
            for p in &msg.0 {
                self.publish(p);
            }
            // The board's readers are told once per batch, not once per variant.
            self.board.send_if_modified(|b| {
                msg.0.iter().fold(false, |changed, p| {
                    if b.get(&p.variant) == Some(&p.desired) {
                        return changed;
                    }
                    b.insert(p.variant.clone(), p.desired);
                    true
                })
            });
        }
    }
}

/// Remove every series of a variant.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unpublish(pub VariantKey);

impl Handler<Unpublish> for Publisher {
    type Result = ();
    fn handle(&mut self, msg: Unpublish, _: &mut Context<Self>) {
        self.remove(&msg.0);
    }
}

/// Start or stop publishing (leader election). Stopping removes every series at once.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetActive(pub bool);

impl Handler<SetActive> for Publisher {
    type Result = ();
    fn handle(&mut self, msg: SetActive, _: &mut Context<Self>) {
        self.active = msg.0;
        if !self.active {
            let all: Vec<VariantKey> = self.series.keys().cloned().collect();
            for v in all {
                self.remove(&v);
            }
        }
    }
}

/// The metrics in the Prometheus text format.
#[derive(Debug, Message)]
#[rtype(result = "String")]
pub struct Gather;

impl Handler<Gather> for Publisher {
    type Result = String;
    fn handle(&mut self, _: Gather, _: &mut Context<Self>) -> String {
        self.text()
    }
}

/// The published desired count of one variant, if any.
#[derive(Debug, Message)]
#[rtype(result = "Option<u32>")]
pub struct ReadDesired(pub VariantKey);

impl Handler<ReadDesired> for Publisher {
    type Result = Option<u32>;
    fn handle(&mut self, msg: ReadDesired, _: &mut Context<Self>) -> Option<u32> {
        self.series.get(&msg.0).map(|s| s.desired.get() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(desired: u32, current: u32, change: Option<ScalingChange>) -> Published {
        Published {
            variant: VariantKey::new("ns", "v"),
            accelerator: "L40S".into(),
            desired,
            current,
            baseline: current,
            change,
            safety_net: false,
            metrics_missing: false,
        }
    }

    #[test]
    fn ratio_is_the_desired_count_when_current_is_zero() {
        let mut p = Publisher::new(&PublisherConfig::default()).expect("publisher");
        p.publish(&published(2, 0, None));
        let text = p.text();
        assert!(text.contains(r#"inferno_desired_ratio{accelerator_type="L40S",namespace="ns",variant_name="v"} 2"#), "{text}");
        p.publish(&published(1, 4, None));
        assert!(p.text().contains(
            r#"inferno_desired_ratio{accelerator_type="L40S",namespace="ns",variant_name="v"} 0.25"#
        ));
    }

    #[test]
    fn the_prefix_switch_renames_every_series() {
        let mut p = Publisher::new(&PublisherConfig {
            prefix: "wva".into(),
            controller_instance: None,
        })
        .expect("publisher");
        p.publish(&published(
            3,
            2,
            Some(ScalingChange {
                direction: "down",
                reason: "spare-capacity",
            }),
        ));
        let text = p.text();
        for name in [
            "wva_desired_replicas",
            "wva_current_replicas",
            "wva_desired_ratio",
            "wva_replica_scaling_total",
        ] {
            assert!(text.contains(name), "{name} missing in {text}");
        }
        assert!(!text.contains("inferno_"), "{text}");
        assert!(
            text.contains(r#"direction="down""#) && text.contains(r#"reason="spare-capacity""#),
            "{text}"
        );
    }

    #[test]
    fn a_new_accelerator_label_replaces_the_old_series() {
        let mut p = Publisher::new(&PublisherConfig::default()).expect("publisher");
        p.publish(&published(1, 1, None));
        p.publish(&Published {
            accelerator: "H100".into(),
            ..published(1, 1, None)
        });
        let text = p.text();
        assert!(!text.contains("L40S"), "{text}");
        assert!(text.contains("H100"), "{text}");
    }
}
