//! The publisher: the metrics HPA and KEDA act on, in an owned Prometheus registry.
//!
//! One series per variant: desired, current and their ratio as gauges, and a counter of desired
//! changes by direction and reason. With a controller instance id every series carries
//! `controller_instance`. A variant that goes away takes its series with it, so an HPA never
//! acts on a stale value. When not active (not the leader), nothing is published.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use prometheus::core::Desc;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use tokio::sync::watch;
use wva_storage::VariantKey;

pub use crate::policy::outputs::{Life, Published, ScalingChange};

/// How long a retired variant's ended life is remembered: far longer than any cycle can be in
/// flight (a cycle's deadline is seconds to a minute), so that nothing it decided for that life
/// comes back, and short enough that a cluster that deletes variants all day keeps few.
const ENDED_LIFE_MEMORY: Duration = Duration::from_secs(600);

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

/// What a variant's series show: its accelerator label, the last values published, and the
/// count of desired changes per (direction, reason) its counter has used.
///
/// Values, not the `prometheus` crate's per-series objects: a labelled child of a `GaugeVec`
/// carries its own descriptor, label pairs and atomics (about 2.5 KB per variant over the six
/// families, 25 MB at 10,000 variants, measured with heaptrack); these take about 100 bytes and
/// the exposition is built from them when scraped.
#[derive(Debug, Clone, PartialEq)]
struct VariantSeries {
    /// The life whose values these are: an earlier life's never replace them.
    life: Life,
    accelerator: String,
    desired: u32,
    current: u32,
    safety_net: bool,
    metrics_missing: bool,
    changes: Vec<(ScalingKey, u64)>,
}

type ScalingKey = (&'static str, &'static str);

/// The published desired count of every variant, for readers that are not Prometheus (KEDA's
/// external scaler): the same values as the series, changed at the same moments.
pub type DesiredBoard = HashMap<VariantKey, u32>;

/// One published family: its name and help as validated by the `prometheus` crate.
#[derive(Debug)]
struct Family {
    desc: Desc,
    shows: Shows,
}

/// Which value of a variant a family shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shows {
    Desired,
    Current,
    Ratio,
    Changes,
    SafetyNet,
    MetricsMissing,
}

/// The publisher actor.
#[derive(Debug)]
pub struct Publisher {
    board: watch::Sender<DesiredBoard>,
    desired: Family,
    current: Family,
    ratio: Family,
    scaling: Family,
    safety_net: Family,
    metrics_missing: Family,
    controller_instance: Option<String>,
    /// What each variant's series show. A fast hasher: the map is read for every variant every
    /// cycle, and its keys are our own.
    series: HashMap<VariantKey, VariantSeries, foldhash::fast::RandomState>,
    /// Variants retired lately: the last life that ended for each, and when.
    ended: HashMap<VariantKey, (Life, Instant)>,
    active: bool,
    /// Says the publisher is gone when it is dropped (see [`crate::lifeline`]).
    alive: Option<crate::lifeline::PartGuard>,
}

impl Publisher {
    pub fn new(config: &PublisherConfig) -> Result<Self, prometheus::Error> {
        // `Desc::new` checks the names (a prefix that makes an invalid metric name is refused
        // here, before anything is published).
        let family = |name: String, help: &str, shows: Shows| -> prometheus::Result<Family> {
            let mut constant = HashMap::new();
            if let Some(id) = &config.controller_instance {
                constant.insert("controller_instance".to_string(), id.clone());
            }
            Ok(Family {
                desc: Desc::new(name, help.to_string(), Vec::new(), constant)?,
                shows,
            })
        };
        let prefixed = |name: &str| format!("{}_{name}", config.prefix);
        Ok(Self {
            board: watch::Sender::new(DesiredBoard::new()),
            desired: family(
                prefixed("desired_replicas"),
                "Replicas the autoscaler wants for the variant.",
                Shows::Desired,
            )?,
            current: family(
                prefixed("current_replicas"),
                "Replicas the variant's Deployment has.",
                Shows::Current,
            )?,
            ratio: family(
                prefixed("desired_ratio"),
                "Desired over current replicas (the desired count when current is 0).",
                Shows::Ratio,
            )?,
            scaling: family(
                prefixed("replica_scaling_total"),
                "Changes of the desired replica count.",
                Shows::Changes,
            )?,
            // Health of each variant's decision, under upstream's names whatever the prefix.
            safety_net: family(
                "wva_safety_net_active".into(),
                "1 while the safety net chooses the variant's desired count.",
                Shows::SafetyNet,
            )?,
            metrics_missing: family(
                "wva_metrics_missing".into(),
                "1 while no vLLM series matches the variant's pods.",
                Shows::MetricsMissing,
            )?,
            controller_instance: config.controller_instance.clone(),
            series: HashMap::default(),
            ended: HashMap::new(),
            active: true,
            alive: None,
        })
    }

    /// The publisher with the guard that reports its end.
    pub fn guarded(mut self, guard: crate::lifeline::PartGuard) -> Self {
        self.alive = Some(guard);
        self
    }

    fn families(&self) -> [&Family; 6] {
        [
            &self.desired,
            &self.current,
            &self.ratio,
            &self.scaling,
            &self.safety_net,
            &self.metrics_missing,
        ]
    }

    /// The names of every series the publisher can expose.
    pub fn series_names(&self) -> Vec<String> {
        self.families()
            .iter()
            .map(|f| f.desc.fq_name.clone())
            .collect()
    }

    /// A reader of the desired counts as published; take it before starting the actor.
    pub fn board(&self) -> watch::Receiver<DesiredBoard> {
        self.board.subscribe()
    }

    /// Whether a value may be published: not decided in a life that has ended or that a later
    /// one has replaced. A later life's first value forgets the ended one.
    fn admits(&mut self, p: &Published) -> bool {
        // Empty but for the minutes after a retirement, when `get` returns without hashing.
        if let Some(&(ended, _)) = self.ended.get(&p.variant) {
            if p.life <= ended {
                return false;
            }
            self.ended.remove(&p.variant);
        }
        self.series
            .get(&p.variant)
            .is_none_or(|series| series.life <= p.life)
    }

    fn publish(&mut self, p: &Published) {
        let series = match self.series.get_mut(&p.variant) {
            Some(series) if series.accelerator == p.accelerator => series,
            // New, or on another accelerator: the old series (and its counts) go, new ones come.
            _ => {
                let fresh = VariantSeries {
                    life: p.life,
                    accelerator: p.accelerator.clone(),
                    desired: 0,
                    current: 0,
                    safety_net: false,
                    metrics_missing: false,
                    changes: Vec::new(),
                };
                self.series.insert(p.variant.clone(), fresh);
                self.series.get_mut(&p.variant).expect("just inserted")
            }
        };
        series.life = p.life;
        series.set(p);
    }

    fn remove(&mut self, variant: &VariantKey) {
        self.board.send_if_modified(|b| b.remove(variant).is_some());
        self.series.remove(variant);
    }

    /// Removes a retired variant's series and remembers that `life` (and every earlier one)
    /// has ended, forgetting lives that ended long ago.
    fn retire(&mut self, variant: &VariantKey, life: Life) {
        self.remove(variant);
        let now = Instant::now();
        self.ended
            .retain(|_, (_, at)| now.duration_since(*at) < ENDED_LIFE_MEMORY);
        let ended = self.ended.entry(variant.clone()).or_insert((life, now));
        *ended = (ended.0.max(life), now);
    }

    /// The exposition in the Prometheus text format, families sorted by name and series by
    /// their labels' values, as the `prometheus` crate's registry orders them.
    fn text(&self) -> String {
        let variants: Vec<(&VariantKey, &VariantSeries)> = self.series.iter().collect();
        let mut families: Vec<MetricFamily> = self
            .families()
            .into_iter()
            .map(|family| self.family(family, &variants))
            .filter(|f| !f.get_metric().is_empty())
            .collect();
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::new();
        match TextEncoder::new().encode(&families, &mut buf) {
            Ok(()) => String::from_utf8(buf).unwrap_or_default(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the published metrics");
                String::new()
            }
        }
    }

    /// One family's series for every variant.
    fn family(&self, family: &Family, variants: &[(&VariantKey, &VariantSeries)]) -> MetricFamily {
        let mut out = MetricFamily::default();
        out.set_name(family.desc.fq_name.clone());
        out.set_help(family.desc.help.clone());
        out.set_field_type(match family.shows {
            Shows::Changes => MetricType::COUNTER,
            _ => MetricType::GAUGE,
        });
        let metrics = out.mut_metric();
        for (variant, series) in variants {
            let names = [
                ("namespace", variant.namespace.as_str()),
                ("variant_name", variant.name.as_str()),
            ];
            let accelerator = ("accelerator_type", series.accelerator.as_str());
            let gauge = |extra: &[(&'static str, &str)], value: f64| {
                let mut m = self.metric(&names, extra);
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
                m
            };
            match family.shows {
                Shows::Desired => metrics.push(gauge(&[accelerator], f64::from(series.desired))),
                Shows::Current => metrics.push(gauge(&[accelerator], f64::from(series.current))),
                Shows::Ratio => metrics.push(gauge(&[accelerator], series.ratio())),
                Shows::SafetyNet => {
                    metrics.push(gauge(&[], f64::from(u8::from(series.safety_net))))
                }
                Shows::MetricsMissing => {
                    metrics.push(gauge(&[], f64::from(u8::from(series.metrics_missing))))
                }
                Shows::Changes => {
                    for ((direction, reason), count) in &series.changes {
                        let mut m = self.metric(
                            &names,
                            &[accelerator, ("direction", direction), ("reason", reason)],
                        );
                        let mut c = Counter::default();
                        c.set_value(*count as f64);
                        m.set_counter(c);
                        metrics.push(m);
                    }
                }
            }
        }
        // Every series of a family has the same label names, so values alone order them.
        metrics.sort_by(|x, y| label_values(x).cmp(label_values(y)));
        out
    }

    /// A series with these labels and the instance's, sorted by name as the format expects.
    fn metric(&self, names: &[(&'static str, &str)], extra: &[(&'static str, &str)]) -> Metric {
        let mut pairs: Vec<(&str, &str)> = names.iter().chain(extra).copied().collect();
        if let Some(id) = &self.controller_instance {
            pairs.push(("controller_instance", id.as_str()));
        }
        pairs.sort_unstable_by_key(|(name, _)| *name);
        Metric::from_label(
            pairs
                .into_iter()
                .map(|(name, value)| {
                    let mut l = LabelPair::default();
                    l.set_name(name.to_string());
                    l.set_value(value.to_string());
                    l
                })
                .collect(),
        )
    }
}

fn label_values(m: &Metric) -> impl Iterator<Item = &str> {
    m.get_label().iter().map(|l| l.value())
}

impl VariantSeries {
    /// Takes the values of what was decided, and counts a change of the desired count.
    fn set(&mut self, p: &Published) {
        self.desired = p.desired;
        self.current = p.current;
        self.safety_net = p.safety_net;
        self.metrics_missing = p.metrics_missing;
        if let Some(change) = &p.change {
            let key = (change.direction, change.reason);
            match self.changes.iter_mut().find(|(k, _)| *k == key) {
                Some((_, count)) => *count += 1,
                None => self.changes.push((key, 1)),
            }
        }
    }

    fn ratio(&self) -> f64 {
        if self.current == 0 {
            f64::from(self.desired)
        } else {
            f64::from(self.desired) / f64::from(self.current)
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
    fn handle(&mut self, mut msg: Publish, _: &mut Context<Self>) {
        if self.active {
            msg.0.retain(|p| self.admits(p));
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

/// A variant retired (its VA deleted, its Deployment gone): its series go, and nothing decided
/// in `life` or before it is published again.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Retire {
    pub variant: VariantKey,
    pub life: Life,
    /// The last cycle time its supervisor decided at: what the decision log forgets with it
    /// (a record decided by then and appended later brings nothing back).
    pub decided_up_to: Option<wva_storage::Timestamp>,
}

impl Handler<Retire> for Publisher {
    type Result = ();
    fn handle(&mut self, msg: Retire, _: &mut Context<Self>) {
        self.retire(&msg.variant, msg.life);
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
        self.series.get(&msg.0).map(|s| s.desired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(desired: u32, current: u32, change: Option<ScalingChange>) -> Published {
        Published {
            variant: VariantKey::new("ns", "v"),
            life: Life::default(),
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

    /// A publisher with the default names, started.
    fn started() -> Addr<Publisher> {
        Publisher::new(&PublisherConfig::default())
            .expect("publisher")
            .start()
    }

    /// Sends `values` to the publisher, then reads back the published desired count of the
    /// test's variant (`ns/v`).
    async fn publish_and_read(publisher: &Addr<Publisher>, values: Vec<Published>) -> Option<u32> {
        publisher.send(Publish(values)).await.expect("publisher");
        publisher
            .send(ReadDesired(VariantKey::new("ns", "v")))
            .await
            .expect("publisher")
    }

    /// The test's variant at `desired`, decided in `life`.
    fn in_life(desired: u32, life: Life) -> Published {
        Published {
            life,
            ..published(desired, 2, None)
        }
    }

    /// A cycle still in flight when its variant was retired (its VA deleted) lands after the
    /// retirement: its values must not bring the series back, for nothing would remove them
    /// again. A variant created again under the same name publishes from its new life, and a
    /// late value of the old life never replaces the new one's.
    #[actix_rt::test]
    async fn a_retired_lifes_late_values_never_come_back() {
        let publisher = started();
        let first = Life::begin();
        assert_eq!(
            publish_and_read(&publisher, vec![in_life(2, first)]).await,
            Some(2)
        );
        let retire = Retire {
            variant: VariantKey::new("ns", "v"),
            life: first,
            decided_up_to: None,
        };
        publisher.send(retire).await.expect("publisher");
        let late = publish_and_read(&publisher, vec![in_life(3, first)]).await;
        assert_eq!(late, None, "the retired life came back");
        let text = publisher.send(Gather).await.expect("publisher");
        assert!(!text.contains(r#"variant_name="v""#), "{text}");

        let second = Life::begin();
        let new = publish_and_read(&publisher, vec![in_life(1, second)]).await;
        assert_eq!(new, Some(1), "the new life is published");
        let old = publish_and_read(&publisher, vec![in_life(5, first)]).await;
        assert_eq!(old, Some(1), "the old life replaced the new");
    }

    /// Removing a variant's series without retiring it (its model's shard went to another
    /// replica) ends no life: when the shard comes back, the same life publishes again.
    #[actix_rt::test]
    async fn series_removed_without_retiring_come_back_with_the_same_life() {
        let publisher = started();
        let life = Life::begin();
        assert_eq!(
            publish_and_read(&publisher, vec![in_life(2, life)]).await,
            Some(2)
        );
        let key = VariantKey::new("ns", "v");
        publisher.send(Unpublish(key)).await.expect("publisher");
        assert_eq!(publish_and_read(&publisher, vec![]).await, None);
        assert_eq!(
            publish_and_read(&publisher, vec![in_life(2, life)]).await,
            Some(2)
        );
    }

    /// The exposition is what the `prometheus` crate's own registry writes for the same values
    /// (the form every existing scrape config and adapter rule was written against).
    #[test]
    fn the_exposition_is_the_registrys_byte_for_byte() {
        use prometheus::{CounterVec, GaugeVec, Opts, Registry};
        let config = PublisherConfig {
            prefix: "inferno".into(),
            controller_instance: Some("a".into()),
        };
        let mut p = Publisher::new(&config).expect("publisher");
        let up = ScalingChange {
            direction: "up",
            reason: "saturated",
        };
        let a = Published {
            variant: VariantKey::new("team \"b\"", "llama-8b"),
            ..published(3, 2, Some(up.clone()))
        };
        let b = Published {
            variant: VariantKey::new("ns", "granite"),
            accelerator: "H100".into(),
            safety_net: true,
            ..published(1, 0, None)
        };
        // Sorted by label values in label-name order: the accelerator first.
        let c = Published {
            variant: VariantKey::new("ns", "aaa"),
            accelerator: "Z100".into(),
            ..published(2, 2, None)
        };
        p.publish(&a);
        p.publish(&c);
        p.publish(&b);
        p.publish(&Published {
            change: Some(up),
            ..a.clone()
        });

        let registry = Registry::new();
        let opts =
            |name: &str, help: &str| Opts::new(name, help).const_label("controller_instance", "a");
        let gauges = [
            (
                "inferno_desired_replicas",
                "Replicas the autoscaler wants for the variant.",
            ),
            (
                "inferno_current_replicas",
                "Replicas the variant's Deployment has.",
            ),
            (
                "inferno_desired_ratio",
                "Desired over current replicas (the desired count when current is 0).",
            ),
        ]
        .map(|(n, h)| {
            GaugeVec::new(
                opts(n, h),
                &["variant_name", "namespace", "accelerator_type"],
            )
            .expect("the registry takes it")
        });
        let health = [
            (
                "wva_safety_net_active",
                "1 while the safety net chooses the variant's desired count.",
            ),
            (
                "wva_metrics_missing",
                "1 while no vLLM series matches the variant's pods.",
            ),
        ]
        .map(|(n, h)| {
            GaugeVec::new(opts(n, h), &["variant_name", "namespace"])
                .expect("the registry takes it")
        });
        let scaling = CounterVec::new(
            opts(
                "inferno_replica_scaling_total",
                "Changes of the desired replica count.",
            ),
            &[
                "variant_name",
                "namespace",
                "accelerator_type",
                "direction",
                "reason",
            ],
        )
        .expect("the registry takes it");
        for g in gauges.iter().chain(&health) {
            registry
                .register(Box::new(g.clone()))
                .expect("the registry takes it");
        }
        registry
            .register(Box::new(scaling.clone()))
            .expect("the registry takes it");
        for (v, ratio, safety) in [(&a, 1.5, 0.0), (&b, 1.0, 1.0), (&c, 1.0, 0.0)] {
            let labels = [
                v.variant.name.as_str(),
                v.variant.namespace.as_str(),
                v.accelerator.as_str(),
            ];
            gauges[0]
                .with_label_values(&labels)
                .set(f64::from(v.desired));
            gauges[1]
                .with_label_values(&labels)
                .set(f64::from(v.current));
            gauges[2].with_label_values(&labels).set(ratio);
            health[0].with_label_values(&labels[..2]).set(safety);
            health[1].with_label_values(&labels[..2]).set(0.0);
        }
        scaling
            .with_label_values(&["llama-8b", "team \"b\"", "L40S", "up", "saturated"])
            .inc_by(2.0);
        let mut expected = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut expected)
            .expect("the registry takes it");
        assert_eq!(
            p.text(),
            String::from_utf8(expected).expect("the registry takes it")
        );
    }
}
