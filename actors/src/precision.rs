//! The precision signals are decided and recorded at. Every signal the policy reads is rounded
//! to a fixed unit when it comes in, far below anything a decision turns on: a thousandth of
//! the KV cache, a hundredth of a request waiting or running, a thousandth of a request per
//! second (a minute's window counts requests in sixtieths), a tenth of a token, a hundredth of
//! a millisecond of latency. Coarser was tried and moved decisions on the clumped code trace:
//! a tenth of a millisecond its default point (28.69 against 27.42), a tenth of a request one
//! of its cautious settings (38.26 against 28.39). What the decision log keeps as whole numbers
//! of these units is then exactly what the policy saw, and replay from it is exact; a float's
//! full mantissa is noise at this scale, and costs eight bytes a signal that do not compress.

use wva_storage::Units;

use crate::policy::ReplicaSignals;
use crate::policy::slo_capacity::ServingSummary;

/// Units per whole: KV-cache use (a fraction of the cache).
pub const KV_CACHE: f64 = 1e3;
/// Units per request: queue lengths, batches, waiting requests.
pub const REQUESTS: f64 = 1e2;
/// Units per request per second.
pub const RATE: f64 = 1e3;
/// Units per token.
pub const TOKENS: f64 = 1e1;
/// Units per millisecond.
pub const MILLIS: f64 = 1e2;

/// Largest magnitude, in units, that converts both ways exactly (a float's 53-bit mantissa).
const EXACT_UNITS: f64 = 9_007_199_254_740_992.0;

/// `value × scale` rounded to a whole number, when a float holds it exactly.
fn whole(value: f64, scale: f64) -> Option<f64> {
    let scaled = (value * scale).round();
    (scaled.is_finite() && scaled.abs() < EXACT_UNITS).then_some(scaled)
}

/// `value` rounded to the unit `1 / scale`; a value that is not finite passes unchanged (the
/// policy's checks refuse it, and the log keeps it in full).
pub fn rounded(value: f64, scale: f64) -> f64 {
    whole(value, scale).map_or(value, |scaled| scaled / scale)
}

/// A rounded value as whole units; `None` when it cannot be held exactly (not finite, or not a
/// whole number of units: a value that did not come through [`rounded`]).
pub fn units(value: f64, scale: f64) -> Option<Units> {
    let n = whole(value, scale)? as Units;
    (self::value(n, scale) == value).then_some(n)
}

/// Whole units back as the value the policy saw.
pub fn value(units: Units, scale: f64) -> f64 {
    units as f64 / scale
}

/// A pod's signals at the recorded precision.
pub fn replica(mut r: ReplicaSignals) -> ReplicaSignals {
    r.kv_cache_usage = r.kv_cache_usage.map(|kv| rounded(kv, KV_CACHE));
    r.queue_length = r.queue_length.map(|q| rounded(q, REQUESTS));
    r
}

/// What a variant's servers served, at the recorded precision.
pub fn serving(s: ServingSummary) -> ServingSummary {
    ServingSummary {
        pods: s.pods,
        rate_rps: rounded(s.rate_rps, RATE),
        mean_input_tokens: rounded(s.mean_input_tokens, TOKENS),
        mean_output_tokens: rounded(s.mean_output_tokens, TOKENS),
        ttft_ms: rounded(s.ttft_ms, MILLIS),
        itl_ms: rounded(s.itl_ms, MILLIS),
        batch: rounded(s.batch, REQUESTS),
        waiting: rounded(s.waiting, REQUESTS),
        waiting_end: rounded(s.waiting_end, REQUESTS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rounded_value_converts_to_units_and_back_exactly() {
        for (v, scale) in [
            (0.022557881382810, KV_CACHE),
            (41.653_219_7, RATE),
            (1_234.567_89, MILLIS),
            (0.0, REQUESTS),
            (18_000.04, TOKENS),
            (7.0e9, RATE),
        ] {
            let r = rounded(v, scale);
            assert!((r - v).abs() <= 0.5 / scale + f64::EPSILON * v.abs());
            let n = units(r, scale).expect("a rounded value is whole units");
            assert_eq!(value(n, scale).to_bits(), r.to_bits(), "{v} at {scale}");
        }
    }

    #[test]
    fn values_that_are_not_whole_units_are_refused() {
        assert_eq!(units(0.123_456_789, KV_CACHE), None, "not rounded");
        assert_eq!(units(f64::NAN, RATE), None);
        assert_eq!(units(f64::INFINITY, RATE), None);
        assert!(
            rounded(f64::NAN, RATE).is_nan(),
            "passed through for the checks"
        );
        assert_eq!(
            rounded(1e300, RATE),
            1e300,
            "too large to round is left as it is"
        );
    }
}
