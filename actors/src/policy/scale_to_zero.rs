//! Scale to zero: when a model may go to zero replicas, and when the controller cannot tell.
//!
//! Zero takes a serving model down, so it needs positive evidence that nobody is served: the
//! model's request series read and flat over the retention window, while every ready pod of
//! the model is seen this cycle. A missing series while pods are ready is not idleness but
//! blindness (a scrape that fails, a relabelling that drops the series): the last good count
//! holds, and the status says why.

use super::decision::VariantInput;

/// The model's request count over its retention window, as read for scale to zero.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestCount {
    /// `sum(increase(vllm:request_success_total[retention]))` for the model.
    Read(f64),
    /// No series at all for the model in the window: nobody served it, or nobody can see it.
    NoSeries,
    Failed(String),
}

/// What the cycle can see of the model's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sight {
    /// Ready replicas over the model's variants (the Deployments' view).
    pub ready: u32,
    /// Replicas that reported a saturation signal this cycle (Prometheus' view).
    pub reporting: u32,
}

impl Sight {
    pub fn of(variants: &[VariantInput]) -> Self {
        Self {
            ready: variants.iter().map(|v| v.ready_replicas).sum(),
            reporting: variants
                .iter()
                .flat_map(|v| &v.replicas)
                .filter(|r| r.kv_cache_usage.is_some() || r.queue_length.is_some())
                .count() as u32,
        }
    }
}

/// What scale to zero says of a model this cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum ZeroVerdict {
    /// Every variant goes to zero, with why.
    Zero(String),
    /// The analysis decides as usual (scale to zero is off, or the model served requests).
    Keep(String),
    /// The model might be idle, but part of it cannot be seen: hold the last good count.
    Blind(String),
}

/// Whether scale to zero takes every variant of the model to 0 this cycle.
pub fn scale_to_zero(enabled: bool, count: Option<&RequestCount>, sight: Sight) -> ZeroVerdict {
    if !enabled {
        return ZeroVerdict::Keep("scale to zero is off".into());
    }
    let unseen = sight.ready.saturating_sub(sight.reporting);
    match count {
        Some(RequestCount::Read(n)) if *n > 0.0 => {
            ZeroVerdict::Keep(format!("{n:.0} requests in the retention window"))
        }
        Some(RequestCount::Read(_)) if unseen > 0 => ZeroVerdict::Blind(format!(
            "no request counted in the retention window, but {unseen} of {} ready replicas report no signals; the controller cannot tell idle from unseen",
            sight.ready
        )),
        Some(RequestCount::Read(_)) => {
            ZeroVerdict::Zero("no successful request in the retention window".into())
        }
        Some(RequestCount::NoSeries) if sight.ready > 0 => ZeroVerdict::Blind(format!(
            "no request series for the model in the retention window while {} replicas are ready: their scrape may be failing, so the controller cannot tell idle from unseen",
            sight.ready
        )),
        Some(RequestCount::NoSeries) => ZeroVerdict::Zero(
            "no request series for the model in the retention window, and no ready replica".into(),
        ),
        Some(RequestCount::Failed(e)) => {
            ZeroVerdict::Keep(format!("request count unavailable ({e}); targets kept"))
        }
        None => ZeroVerdict::Keep("request count not read; targets kept".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sight(ready: u32, reporting: u32) -> Sight {
        Sight { ready, reporting }
    }

    fn zero(v: &ZeroVerdict) -> bool {
        matches!(v, ZeroVerdict::Zero(_))
    }

    fn blind(v: &ZeroVerdict) -> bool {
        matches!(v, ZeroVerdict::Blind(_))
    }

    #[test]
    fn on_off_and_error() {
        let all = sight(2, 2);
        let idle = RequestCount::Read(0.0);
        assert!(!zero(&scale_to_zero(false, Some(&idle), all)));
        assert!(zero(&scale_to_zero(true, Some(&idle), all)));
        assert!(!zero(&scale_to_zero(
            true,
            Some(&RequestCount::Read(3.0)),
            all
        )));
        let failed = RequestCount::Failed("timeout".into());
        let v = scale_to_zero(true, Some(&failed), all);
        assert!(
            matches!(&v, ZeroVerdict::Keep(why) if why.contains("targets kept")),
            "{v:?}"
        );
        assert!(matches!(
            scale_to_zero(true, None, all),
            ZeroVerdict::Keep(_)
        ));
    }

    #[test]
    fn a_missing_series_with_ready_replicas_is_blind_not_idle() {
        let v = scale_to_zero(true, Some(&RequestCount::NoSeries), sight(6, 6));
        assert!(blind(&v), "{v:?}");
        // Even when their other series are gone too.
        assert!(blind(&scale_to_zero(
            true,
            Some(&RequestCount::NoSeries),
            sight(6, 0)
        )));
        // Nothing ready: nothing serves, so nothing is taken down.
        assert!(zero(&scale_to_zero(
            true,
            Some(&RequestCount::NoSeries),
            sight(0, 0)
        )));
    }

    #[test]
    fn a_flat_count_needs_every_ready_replica_seen() {
        let idle = RequestCount::Read(0.0);
        let v = scale_to_zero(true, Some(&idle), sight(3, 2));
        assert!(
            matches!(&v, ZeroVerdict::Blind(why) if why.contains("1 of 3 ready")),
            "{v:?}"
        );
        assert!(zero(&scale_to_zero(true, Some(&idle), sight(3, 3))));
        // Blind never matters while requests are counted.
        assert!(matches!(
            scale_to_zero(true, Some(&RequestCount::Read(5.0)), sight(3, 0)),
            ZeroVerdict::Keep(_)
        ));
    }
}
