//! Load for the emulated cluster: a request rate that changes over time (constant, ramp,
//! square-wave bursts, diurnal, a surge), arrivals that are Poisson or burstier (gamma
//! inter-arrival times with a coefficient of variation above 1, or clumps of requests arriving
//! together), token lengths from log-normal distributions, mixes of several populations, or the
//! replay of a recorded trace (`TIMESTAMP,ContextTokens,GeneratedTokens`).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Gamma, LogNormal, Poisson};

use super::server::Request;

/// Requests per second as a function of time.
#[derive(Debug, Clone, PartialEq)]
pub enum RateShape {
    Constant {
        rps: f64,
    },
    /// Linear from `from` to `to` over the run.
    Ramp {
        from: f64,
        to: f64,
    },
    /// `high` for the first `duty` fraction of every period, `low` for the rest.
    SquareWave {
        low: f64,
        high: f64,
        period_s: f64,
        duty: f64,
    },
    /// A sinusoid around `mean` with one trough and one peak per period.
    Diurnal {
        mean: f64,
        amplitude: f64,
        period_s: f64,
    },
    /// `base`, multiplied by `factor` from `start_s` for `len_s` (a step up and back down; a
    /// surge that lasts to the end when it outlasts the run).
    Surge {
        base: f64,
        factor: f64,
        start_s: f64,
        len_s: f64,
    },
    /// A diurnal curve with square-wave bursts on top (the built-in scenario's day).
    BurstyDay {
        mean: f64,
        amplitude: f64,
        period_s: f64,
        burst: f64,
        burst_every_s: f64,
        burst_len_s: f64,
    },
}

impl RateShape {
    pub fn rate(&self, t_s: f64, duration_s: f64) -> f64 {
        let tau = std::f64::consts::TAU;
        let r = match *self {
            Self::Constant { rps } => rps,
            Self::Ramp { from, to } => {
                from + (to - from) * (t_s / duration_s.max(1e-9)).clamp(0.0, 1.0)
            }
            Self::SquareWave {
                low,
                high,
                period_s,
                duty,
            } => {
                if (t_s % period_s) / period_s < duty {
                    high
                } else {
                    low
                }
            }
            Self::Diurnal {
                mean,
                amplitude,
                period_s,
            } => mean - amplitude * (tau * t_s / period_s).cos(),
            Self::Surge {
                base,
                factor,
                start_s,
                len_s,
            } => {
                if (start_s..start_s + len_s).contains(&t_s) {
                    base * factor
                } else {
                    base
                }
            }
            Self::BurstyDay {
                mean,
                amplitude,
                period_s,
                burst,
                burst_every_s,
                burst_len_s,
            } => {
                let base = mean - amplitude * (tau * t_s / period_s).cos();
                // Bursts in the middle of each interval, so that a run does not open with one.
                let phase = (t_s + burst_every_s / 2.0) % burst_every_s;
                base + if phase < burst_len_s { burst } else { 0.0 }
            }
        };
        r.max(0.0)
    }

    /// Reads a shape from the command line: `constant:RPS`, `ramp:FROM:TO`,
    /// `square:LOW:HIGH:PERIOD_S[:DUTY]` or `diurnal:MEAN:AMPLITUDE:PERIOD_S`. Rates are
    /// requests per second and must be finite and not negative.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut parts = spec.split(':');
        let kind = parts.next().unwrap_or_default();
        let numbers = parts
            .map(|p| {
                p.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("{spec:?}: expected a number >= 0, got {p:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let positive = |v: f64, what: &str| {
            if v > 0.0 {
                Ok(v)
            } else {
                Err(format!("{spec:?}: {what} must be > 0"))
            }
        };
        match (kind, numbers.as_slice()) {
            ("constant", [rps]) => Ok(Self::Constant { rps: *rps }),
            ("ramp", [from, to]) => Ok(Self::Ramp {
                from: *from,
                to: *to,
            }),
            ("square", [low, high, period]) | ("square", [low, high, period, _]) => {
                let duty = numbers.get(3).copied().unwrap_or(0.5);
                if duty > 1.0 {
                    return Err(format!("{spec:?}: duty must be between 0 and 1"));
                }
                Ok(Self::SquareWave {
                    low: *low,
                    high: *high,
                    period_s: positive(*period, "the period")?,
                    duty,
                })
            }
            ("diurnal", [mean, amplitude, period]) => Ok(Self::Diurnal {
                mean: *mean,
                amplitude: *amplitude,
                period_s: positive(*period, "the period")?,
            }),
            _ => Err(format!(
                "{spec:?}: expected constant:RPS, ramp:FROM:TO, square:LOW:HIGH:PERIOD_S[:DUTY] \
                 or diurnal:MEAN:AMPLITUDE:PERIOD_S"
            )),
        }
    }

    /// An upper bound of the rate, for thinning.
    fn max_rate(&self) -> f64 {
        match *self {
            Self::Constant { rps } => rps,
            Self::Ramp { from, to } => from.max(to),
            Self::SquareWave { low, high, .. } => low.max(high),
            Self::Diurnal {
                mean, amplitude, ..
            } => mean + amplitude.abs(),
            Self::Surge { base, factor, .. } => base * factor.max(1.0),
            Self::BurstyDay {
                mean,
                amplitude,
                burst,
                ..
            } => mean + amplitude.abs() + burst.max(0.0),
        }
    }
}

/// How arrivals are spread around the rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrivals {
    Poisson,
    /// Gamma inter-arrival times with this coefficient of variation (1 is Poisson).
    Gamma {
        cv: f64,
    },
    /// Requests in clumps that arrive together (a client sending a batch, an agent fanning
    /// out): clumps as a Poisson process at the rate divided by `mean_size`, each of
    /// 1 + Poisson(`mean_size` − 1) requests within the same 100 ms.
    Clumps {
        mean_size: f64,
    },
}

/// A token-length distribution: log-normal with this mean and coefficient of variation, clamped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLengths {
    pub mean: f64,
    pub cv: f64,
    pub min: u32,
    pub max: u32,
}

impl TokenLengths {
    fn distribution(&self) -> Option<LogNormal<f64>> {
        let sigma2 = (1.0 + self.cv * self.cv).ln();
        LogNormal::new(self.mean.max(1.0).ln() - sigma2 / 2.0, sigma2.sqrt()).ok()
    }
}

/// A synthetic load.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticLoad {
    pub shape: RateShape,
    pub arrivals: Arrivals,
    pub prompt: TokenLengths,
    pub output: TokenLengths,
}

impl SyntheticLoad {
    /// Every request of a run of `duration_s`, in arrival order. Same seed, same requests.
    pub fn generate(&self, duration_s: f64, seed: u64) -> Vec<Request> {
        let mut rng = StdRng::seed_from_u64(seed);
        let max_rate = self.shape.max_rate();
        let mut out = Vec::new();
        if max_rate <= 0.0 {
            return out;
        }
        let (prompt, output) = (self.prompt.distribution(), self.output.distribution());
        let draw = |d: &Option<LogNormal<f64>>, l: &TokenLengths, rng: &mut StdRng| match d {
            Some(d) => (d.sample(rng).round() as u32).clamp(l.min, l.max),
            None => l.mean as u32,
        };
        // Gamma gaps of mean 1 in "operational time", thinned against the varying rate; with
        // cv = 1 this is the classic thinning of a Poisson process. Clumps thin events at the
        // rate of clumps, each bringing several requests.
        let (cv, clump) = match self.arrivals {
            Arrivals::Poisson => (1.0, 1.0),
            Arrivals::Gamma { cv } => (cv.max(0.05), 1.0),
            Arrivals::Clumps { mean_size } => (1.0, mean_size.max(1.0)),
        };
        let shape_k = 1.0 / (cv * cv);
        let (Ok(gap), Ok(extra)) = (
            Gamma::new(shape_k, 1.0 / shape_k),
            Poisson::new((clump - 1.0).max(1e-9)),
        ) else {
            return out;
        };
        let event_rate = max_rate / clump;
        let mut t = 0.0f64;
        let mut id = 0u64;
        loop {
            t += gap.sample(&mut rng) / event_rate;
            if t >= duration_s {
                break;
            }
            let accept: f64 = rand::Rng::random(&mut rng);
            if accept * max_rate > self.shape.rate(t, duration_s) {
                continue;
            }
            let size = if clump > 1.0 {
                1 + extra.sample(&mut rng) as u64
            } else {
                1
            };
            for k in 0..size {
                let spread: f64 = if k == 0 {
                    0.0
                } else {
                    rand::Rng::random::<f64>(&mut rng) * 0.1
                };
                out.push(Request {
                    id,
                    arrival_ms: (t + spread) * 1e3,
                    prompt_tokens: draw(&prompt, &self.prompt, &mut rng),
                    output_tokens: draw(&output, &self.output, &mut rng),
                });
                id += 1;
            }
        }
        sort_by_arrival(&mut out);
        out
    }
}

/// Several populations of requests over the same run, each from its own load and seed, merged
/// in arrival order (ids renumbered).
pub fn mix(loads: &[SyntheticLoad], duration_s: f64, seed: u64) -> Vec<Request> {
    let mut out: Vec<Request> = loads
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.generate(duration_s, seed.wrapping_add(1_000_003 * i as u64)))
        .collect();
    sort_by_arrival(&mut out);
    out
}

/// Sorts by arrival (stable, so ties keep their order) and numbers the requests in that order.
fn sort_by_arrival(requests: &mut [Request]) {
    requests.sort_by(|a, b| a.arrival_ms.total_cmp(&b.arrival_ms));
    for (i, r) in requests.iter_mut().enumerate() {
        r.id = i as u64;
    }
}

/// One trace timestamp: `YYYY-MM-DD HH:MM:SS[.fffffff]` (as the Azure LLM inference traces
/// write it; read as UTC, a `T` for the space also accepted) or RFC 3339 with an offset
/// (`2023-11-16T18:17:03.98Z`, `...+01:00`).
pub fn parse_trace_time(text: &str) -> Option<jiff::Timestamp> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Some(at);
    }
    let civil: jiff::civil::DateTime = text.replacen(' ', "T", 1).parse().ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// What a trace's TIMESTAMP column accepts, for error messages and help.
pub const TRACE_TIME_FORMATS: &str =
    "YYYY-MM-DD HH:MM:SS[.fffffff] (UTC) or RFC 3339 such as 2023-11-16T18:17:03.98Z";

/// The columns of a trace, in order.
const TRACE_HEADER: [&str; 3] = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"];

/// One row of a trace, as serde reads it from the CSV record.
#[derive(Debug, serde::Deserialize)]
struct TraceRow {
    #[serde(rename = "TIMESTAMP")]
    timestamp: String,
    #[serde(rename = "ContextTokens")]
    context_tokens: u32,
    #[serde(rename = "GeneratedTokens")]
    generated_tokens: u32,
}

/// Reads a trace in the CSV form `TIMESTAMP,ContextTokens,GeneratedTokens` (timestamps as
/// [`parse_trace_time`] reads them, sorted). Arrival times are relative to the first row and
/// divided by `speedup`. Errors name the line and the column.
pub fn parse_trace(text: &str, speedup: f64) -> Result<Vec<Request>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| format!("line 1: cannot read the header: {e}"))?
        .clone();
    if header.is_empty() {
        return Err("line 1: expected the header TIMESTAMP,ContextTokens,GeneratedTokens, found an empty file".into());
    }
    if header.iter().ne(TRACE_HEADER) {
        return Err(format!(
            "line 1: expected the header TIMESTAMP,ContextTokens,GeneratedTokens, got {:?}",
            header.iter().collect::<Vec<_>>().join(",")
        ));
    }
    if !(speedup.is_finite() && speedup > 0.0) {
        return Err(format!("speedup: expected a number > 0, got {speedup}"));
    }
    let mut out = Vec::new();
    let mut first: Option<jiff::Timestamp> = None;
    let mut previous_ms = 0.0f64;
    for record in reader.records() {
        let record = record.map_err(|e| trace_error(&e))?;
        let n = record.position().map_or(0, csv::Position::line);
        let row: TraceRow = record.deserialize(Some(&header)).map_err(|e| {
            let field = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err.field().map_or(0, |f| f as usize),
                _ => 0,
            };
            let column = TRACE_HEADER.get(field).copied().unwrap_or("?");
            let got = record.get(field).unwrap_or("");
            format!("line {n}: {column}: expected a non-negative integer, got {got:?}")
        })?;
        let at = parse_trace_time(&row.timestamp).ok_or_else(|| {
            format!(
                "line {n}: TIMESTAMP: expected {TRACE_TIME_FORMATS}, got {:?}",
                row.timestamp
            )
        })?;
        let start = *first.get_or_insert(at);
        let offset_ms = at.duration_since(start).as_secs_f64() * 1e3 / speedup;
        if offset_ms + 1e-6 < previous_ms {
            return Err(format!(
                "line {n}: TIMESTAMP: expected rows sorted by time, {:?} is earlier than the row before",
                row.timestamp
            ));
        }
        previous_ms = offset_ms;
        out.push(Request {
            id: out.len() as u64,
            arrival_ms: offset_ms,
            prompt_tokens: row.context_tokens.max(1),
            output_tokens: row.generated_tokens.max(1),
        });
    }
    Ok(out)
}

/// A row the CSV reader could not take, named by its line.
fn trace_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { pos, len, .. } => format!(
            "line {}: expected 3 comma-separated fields, got {len}",
            pos.as_ref().map_or(0, csv::Position::line)
        ),
        _ => match e.position() {
            Some(pos) => format!("line {}: {e}", pos.line()),
            None => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shapes_parse_from_the_command_line() {
        assert_eq!(
            RateShape::parse("constant:2.5"),
            Ok(RateShape::Constant { rps: 2.5 })
        );
        assert_eq!(
            RateShape::parse("square:1:10:60"),
            Ok(RateShape::SquareWave {
                low: 1.0,
                high: 10.0,
                period_s: 60.0,
                duty: 0.5
            })
        );
        assert!(matches!(
            RateShape::parse("ramp:1:4"),
            Ok(RateShape::Ramp { .. })
        ));
        assert!(matches!(
            RateShape::parse("diurnal:5:3:600"),
            Ok(RateShape::Diurnal { .. })
        ));
        let err = RateShape::parse("constant:-1").expect_err("negative");
        assert!(err.contains("expected a number >= 0"), "{err}");
        assert!(
            RateShape::parse("square:1:2:0")
                .expect_err("zero period")
                .contains("period")
        );
        assert!(
            RateShape::parse("sawtooth:1")
                .expect_err("unknown shape")
                .contains("expected constant:RPS")
        );
    }

    use super::*;

    fn load(shape: RateShape, arrivals: Arrivals) -> SyntheticLoad {
        SyntheticLoad {
            shape,
            arrivals,
            prompt: TokenLengths {
                mean: 800.0,
                cv: 1.0,
                min: 1,
                max: 16_000,
            },
            output: TokenLengths {
                mean: 200.0,
                cv: 1.0,
                min: 1,
                max: 4_000,
            },
        }
    }

    #[test]
    fn rates_and_means_come_out_as_specified() {
        let l = load(RateShape::Constant { rps: 10.0 }, Arrivals::Poisson);
        let reqs = l.generate(3_600.0, 7);
        let rate = reqs.len() as f64 / 3_600.0;
        assert!((rate - 10.0).abs() < 0.3, "{rate}");
        let mean_prompt =
            reqs.iter().map(|r| f64::from(r.prompt_tokens)).sum::<f64>() / reqs.len() as f64;
        assert!((mean_prompt - 800.0).abs() < 40.0, "{mean_prompt}");
        assert!(reqs.windows(2).all(|w| w[0].arrival_ms <= w[1].arrival_ms));
    }

    #[test]
    fn same_seed_same_requests() {
        let l = load(
            RateShape::Diurnal {
                mean: 5.0,
                amplitude: 4.0,
                period_s: 600.0,
            },
            Arrivals::Gamma { cv: 2.0 },
        );
        assert_eq!(l.generate(600.0, 1), l.generate(600.0, 1));
        assert_ne!(l.generate(600.0, 1), l.generate(600.0, 2));
    }

    #[test]
    fn gamma_arrivals_are_burstier_than_poisson() {
        let cv_of = |arrivals| {
            let reqs = load(RateShape::Constant { rps: 20.0 }, arrivals).generate(1_800.0, 3);
            let gaps: Vec<f64> = reqs
                .windows(2)
                .map(|w| w[1].arrival_ms - w[0].arrival_ms)
                .collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
            var.sqrt() / mean
        };
        let (poisson, bursty) = (cv_of(Arrivals::Poisson), cv_of(Arrivals::Gamma { cv: 3.0 }));
        assert!((poisson - 1.0).abs() < 0.1, "{poisson}");
        assert!(bursty > 2.0, "{bursty}");
    }

    #[test]
    fn shapes() {
        let sq = RateShape::SquareWave {
            low: 1.0,
            high: 9.0,
            period_s: 100.0,
            duty: 0.25,
        };
        assert_eq!(sq.rate(10.0, 1e3), 9.0);
        assert_eq!(sq.rate(30.0, 1e3), 1.0);
        let ramp = RateShape::Ramp {
            from: 0.0,
            to: 10.0,
        };
        assert_eq!(ramp.rate(50.0, 100.0), 5.0);
        let day = RateShape::Diurnal {
            mean: 5.0,
            amplitude: 5.0,
            period_s: 100.0,
        };
        assert!(day.rate(0.0, 1e3) < 1e-9 && (day.rate(50.0, 1e3) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn trace_rows_become_requests() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04.0319600,3180,8\n2023-11-16 18:17:05.9799600,110,0\n";
        let reqs = parse_trace(text, 1.0).expect("parses");
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0].arrival_ms, 0.0);
        assert!((reqs[1].arrival_ms - 52.0).abs() < 1e-6);
        assert_eq!(reqs[2].output_tokens, 1, "at least one output token");
        let fast = parse_trace(text, 2.0).expect("parses");
        assert!((fast[2].arrival_ms - 1_000.0).abs() < 1e-6);
    }

    /// Issue 18: RFC 3339 timestamps (with `Z` or an offset) read as the same instants as the
    /// Azure form, so a trace exported by another tool needs no rewriting.
    #[test]
    fn rfc_3339_timestamps_are_read_too() {
        let azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,10,10\n2023-11-16 18:17:04.0319600,10,10\n";
        let rfc = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16T18:17:03.97996Z,10,10\n2023-11-16T19:17:04.03196+01:00,10,10\n";
        let (a, r) = (
            parse_trace(azure, 1.0).expect("azure"),
            parse_trace(rfc, 1.0).expect("rfc 3339"),
        );
        assert_eq!(r.len(), 2);
        assert!(
            (a[1].arrival_ms - r[1].arrival_ms).abs() < 1e-6,
            "{a:?} {r:?}"
        );
        assert_eq!(
            parse_trace_time("2023-11-16T18:17:03Z"),
            parse_trace_time("2023-11-16 18:17:03")
        );
    }

    #[test]
    fn bad_trace_rows_name_the_line_and_column() {
        let head = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
        let ok = "2023-11-16 18:17:03.9799600,10,10\n";
        let cases = [
            (
                format!("{head}{ok}2023-11-16 18:17:04,abc,3\n"),
                "line 3: ContextTokens",
            ),
            (
                format!("{head}{ok}2023-11-16 18:17:04,3,-1\n"),
                "line 3: GeneratedTokens",
            ),
            (format!("{head}{ok}yesterday,3,3\n"), "line 3: TIMESTAMP"),
            (
                format!("{head}{ok}2023-11-16 18:17:04,3\n"),
                "line 3: expected 3",
            ),
            (
                format!("{head}{ok}2023-11-16 18:17:01,3,3\n"),
                "line 3: TIMESTAMP: expected rows sorted",
            ),
            ("time,in,out\n".to_string(), "line 1: expected the header"),
            (String::new(), "line 1"),
        ];
        for (text, expected) in cases {
            let err = parse_trace(&text, 1.0).expect_err(&text);
            assert!(err.starts_with(expected), "{err}");
        }
    }

    /// The shared traces' exact form: seven fractional digits, no newline after the last row,
    /// an hour of arrivals; every row but the header is a request, in order.
    #[test]
    fn a_trace_in_the_shared_form_parses_whole() {
        let mut text = String::from("TIMESTAMP,ContextTokens,GeneratedTokens");
        for i in 0..3_600u32 {
            let (m, sec) = (i / 60, i % 60);
            text.push_str(&format!(
                "\n2025-01-01 00:{m:02}:{sec:02}.1234567,{},{}",
                100 + i,
                i % 7
            ));
        }
        let reqs = parse_trace(&text, 1.0).expect("parses");
        assert_eq!(reqs.len(), 3_600);
        let span_min = reqs.last().map_or(0.0, |r| r.arrival_ms) / 60_000.0;
        assert!((59.9..60.0).contains(&span_min), "{span_min} minutes");
        assert_eq!(reqs[3_599].prompt_tokens, 3_699);
        assert_eq!(reqs[7].output_tokens, 1, "a zero output is one token");
    }
}
