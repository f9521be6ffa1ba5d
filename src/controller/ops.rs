//! The controller's own health series (CONTRACT section 16), beside the desired-replica series:
//! upstream v0.9's `wva_*` names where the meaning is the same (`wva_optimization_duration_seconds`,
//! `wva_models_processed`, `wva_metrics_collection_*`), ours elsewhere. One registry holds these
//! and the actors' (`wva_actors::telemetry`); the metrics endpoint serves it after the
//! publisher's page.

use std::sync::{LazyLock, Once};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use wva_actors::telemetry::Telemetry;

/// `wva_panics_total`: panics anywhere in the process, counted by the hook [`count_panics`]
/// installs. One per process, whatever registries serve it.
static PANICS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "wva_panics_total",
        "Panics anywhere in the controller process (each also logged); a model's supervisor that panicked is replaced, a shared part that panicked ends the process.",
    )
    .unwrap_or_else(|e| panic!("a fixed, valid series name: {e}"))
});

/// Counts every panic and logs it through `tracing` (so it is in the structured log with its
/// place), then lets the default hook print it. Installed once per process.
pub fn count_panics() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.inc();
            tracing::error!(panic = %info, "panic");
            default(info);
        }));
    });
}

/// Panics counted so far in this process.
pub fn panics_counted() -> u64 {
    PANICS.get()
}

/// The handles; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ops {
    registry: Registry,
    pub actors: Telemetry,
    /// `wva_optimization_duration_seconds{status}`: one cycle, read to published.
    pub cycle_seconds: HistogramVec,
    /// `wva_models_processed` and `wva_variants_processed` in the last cycle.
    pub models: IntGauge,
    pub variants: IntGauge,
    /// `wva_metrics_collection_duration_seconds`: the cycle's batched Prometheus read.
    pub read_seconds: Histogram,
    /// `wva_metrics_collection_errors_total{query_type,reason}`.
    pub read_errors: IntCounterVec,
    /// `wva_status_writes_total{result}`: VA status writes (ok, conflict, error, timeout, dropped).
    pub status_writes: IntCounterVec,
    /// `wva_events_total{result}`: Kubernetes Events published (ok, error, timeout, dropped).
    pub events: IntCounterVec,
    /// `wva_watch_errors_total{resource}`: watch failures (each is retried with backoff).
    pub watch_errors: IntCounterVec,
    /// `wva_task_restarts_total{task}`: controller tasks restarted after they died.
    pub task_restarts: IntCounterVec,
    build_info: IntGaugeVec,
}

const CYCLE_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

impl Ops {
    pub fn new(reconcile_interval_s: f64) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let cycle_seconds = HistogramVec::new(
            HistogramOpts::new(
                "wva_optimization_duration_seconds",
                "Duration of a decision cycle (metrics read, every model decided, outputs applied), by status (success, error).",
            )
            .buckets(CYCLE_BUCKETS.to_vec()),
            &["status"],
        )?;
        registry.register(Box::new(cycle_seconds.clone()))?;
        let read_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "wva_metrics_collection_duration_seconds",
                "Duration of the cycle's batched Prometheus read (all queries together).",
            )
            .buckets(CYCLE_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(read_seconds.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "wva_build_info",
                "The running controller's version (value 1).",
            ),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let interval = prometheus::Gauge::new(
            "wva_config_optimization_interval_seconds",
            "The decision cycle's interval.",
        )?;
        registry.register(Box::new(interval.clone()))?;
        interval.set(reconcile_interval_s);
        registry.register(Box::new(PANICS.clone()))?;
        Ok(Self {
            actors: Telemetry::new(&registry)?,
            cycle_seconds,
            models: gauge("wva_models_processed", "Models decided in the last cycle.")?,
            variants: gauge(
                "wva_variants_processed",
                "Variants decided in the last cycle.",
            )?,
            read_seconds,
            read_errors: counter(
                "wva_metrics_collection_errors_total",
                "Prometheus queries that failed, by signal and kind of failure.",
                &["query_type", "reason"],
            )?,
            status_writes: counter(
                "wva_status_writes_total",
                "VariantAutoscaling status writes, by result.",
                &["result"],
            )?,
            events: counter(
                "wva_events_total",
                "Kubernetes Events published, by result.",
                &["result"],
            )?,
            watch_errors: counter(
                "wva_watch_errors_total",
                "Watch failures by resource; the watch retries with backoff.",
                &["resource"],
            )?,
            task_restarts: counter(
                "wva_task_restarts_total",
                "Controller tasks restarted after they ended or panicked.",
                &["task"],
            )?,
            build_info,
            registry,
        })
    }

    /// The names of every series this registry can expose (with the actors'), whether or not
    /// they have a value yet: what the chart's alerts and dashboard may refer to.
    pub fn series_names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let a = &self.actors;
        let collectors: [&dyn Collector; 18] = [
            &self.cycle_seconds,
            &self.models,
            &self.variants,
            &self.read_seconds,
            &self.read_errors,
            &self.status_writes,
            &self.events,
            &self.watch_errors,
            &self.task_restarts,
            &a.model_decision_seconds,
            &a.log_writes,
            &a.variant_restarts,
            &a.scale_to_zero_blind,
            &a.saturation_fallback,
            &a.withheld,
            &a.model_faults,
            &*PANICS,
            &self.build_info,
        ];
        let mut names: Vec<String> = collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect();
        names.push("wva_config_optimization_interval_seconds".into());
        names
    }

    /// The series in the text format.
    pub fn text(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode the controller's health series");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
