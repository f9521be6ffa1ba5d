//! The loads a policy is judged on: the built-in hour, the real traces split into a training
//! and a validation set, and a zoo of synthetic shapes users have that neither set covers.
//!
//! Settings are chosen on training loads only; what the documentation and the release notes
//! report is measured on the validation set and the zoo. The split keeps the traces the first
//! analyzer was tuned on (the Azure pair) and one ServeGen trace in training, and puts the
//! shapes least like them in validation: a prefill-heavy load of very long prompts, a step of
//! tiny requests, on/off bursts of longer prompts, and a slow ramp of multimodal prompts.

use std::path::{Path, PathBuf};

use crate::load::{Arrivals, RateShape, SyntheticLoad, TokenLengths, mix, parse_trace};
use crate::scenario::{self, Scenario};
use crate::server::Request;

/// Which loads to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadSet {
    /// The loads settings may be chosen on.
    Training,
    /// Real traces no setting was chosen on.
    Validation,
    /// Synthetic shapes no setting was chosen on.
    Zoo,
    /// All of the above.
    All,
}

impl WorkloadSet {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "training" => Some(Self::Training),
            "validation" => Some(Self::Validation),
            "zoo" => Some(Self::Zoo),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Training => "training",
            Self::Validation => "validation",
            Self::Zoo => "zoo",
            Self::All => "all",
        }
    }
}

/// The real traces (read at run time from the traces directory, never part of this repository)
/// and the set each belongs to.
pub const TRACES: [(&str, WorkloadSet); 7] = [
    ("azure-llm-2023-code", WorkloadSet::Training),
    ("azure-llm-2023-conv", WorkloadSet::Training),
    ("servegen-m-small-spike", WorkloadSet::Training),
    ("mooncake-fast25-synthetic", WorkloadSet::Validation),
    ("servegen-m-small-step", WorkloadSet::Validation),
    (
        "servegen-m-small-longprompt-bursts",
        WorkloadSet::Validation,
    ),
    ("servegen-mm-image-ramp", WorkloadSet::Validation),
];

/// The name of the built-in hour.
pub const BUILTIN: &str = "builtin";

/// The prefix of a zoo workload's name (`zoo:prefill-heavy-surge`).
pub const ZOO_PREFIX: &str = "zoo:";

/// Where the traces are looked for when no directory is given: `WVA_TRACES_DIR`, else the
/// workplace's `../shared/traces` beside this repository.
pub fn default_traces_dir() -> PathBuf {
    std::env::var_os("WVA_TRACES_DIR")
        .map_or_else(|| PathBuf::from("../shared/traces"), PathBuf::from)
}

/// What a zoo workload is, in a line (for `--help` and the documentation).
pub const ZOO: [(&str, &str); 8] = [
    (
        "prefill-heavy-surge",
        "30 req/s of ~630-token prompts with a median output of one token, 4x for the last 20 minutes",
    ),
    (
        "decode-heavy",
        "reasoning-like: ~300-token prompts, outputs of ~1,500 tokens (heavy tail to 8,000), 2 to 6 req/s",
    ),
    (
        "long-context",
        "heavy-tailed prompts (median ~6k, tail to 100k tokens), short outputs, clumps of ~4.5 requests every 3 s",
    ),
    (
        "bursty-chat",
        "chat lengths, 20 req/s on average with gamma inter-arrivals of CV 3",
    ),
    (
        "ramp",
        "chat lengths, a ramp from 4 to 45 req/s over the hour",
    ),
    (
        "sharp-surge",
        "chat lengths, 12 req/s with a 5x surge for 10 minutes from minute 30",
    ),
    (
        "diurnal",
        "chat lengths, two compressed days: 4 to 36 req/s and back, twice",
    ),
    (
        "mix",
        "chat (80 %) and retrieval-augmented prompts of ~4,000 tokens (20 %) on a diurnal curve with bursts",
    ),
];

fn lengths(mean: f64, cv: f64, min: u32, max: u32) -> TokenLengths {
    TokenLengths { mean, cv, min, max }
}

fn chat() -> (TokenLengths, TokenLengths) {
    (lengths(800.0, 1.2, 4, 8_000), lengths(220.0, 1.0, 1, 2_000))
}

fn load(
    shape: RateShape,
    arrivals: Arrivals,
    (prompt, output): (TokenLengths, TokenLengths),
) -> SyntheticLoad {
    SyntheticLoad {
        shape,
        arrivals,
        prompt,
        output,
    }
}

/// The requests of a zoo workload over `duration_s`, or `None` for an unknown name.
pub fn zoo_requests(name: &str, duration_s: f64, seed: u64) -> Option<Vec<Request>> {
    let d = duration_s;
    let synthetic = match name {
        "prefill-heavy-surge" => load(
            RateShape::Surge {
                base: 30.0,
                factor: 4.0,
                start_s: d * 2.0 / 3.0,
                len_s: d,
            },
            Arrivals::Poisson,
            // A mean of 2.5 tokens with a CV of 2 has a median of one token.
            (lengths(630.0, 0.5, 16, 4_000), lengths(2.5, 2.0, 1, 200)),
        ),
        "decode-heavy" => load(
            RateShape::Ramp { from: 2.0, to: 6.0 },
            Arrivals::Gamma { cv: 1.5 },
            (
                lengths(300.0, 1.0, 8, 4_000),
                lengths(1_500.0, 0.8, 16, 8_000),
            ),
        ),
        "long-context" => load(
            RateShape::Constant { rps: 1.5 },
            Arrivals::Clumps { mean_size: 4.5 },
            (
                lengths(9_000.0, 1.2, 256, 100_000),
                lengths(150.0, 1.0, 1, 1_000),
            ),
        ),
        "bursty-chat" => load(
            RateShape::Constant { rps: 20.0 },
            Arrivals::Gamma { cv: 3.0 },
            chat(),
        ),
        "ramp" => load(
            RateShape::Ramp {
                from: 4.0,
                to: 45.0,
            },
            Arrivals::Poisson,
            chat(),
        ),
        "sharp-surge" => load(
            RateShape::Surge {
                base: 12.0,
                factor: 5.0,
                start_s: d / 2.0,
                len_s: d / 6.0,
            },
            Arrivals::Poisson,
            chat(),
        ),
        "diurnal" => load(
            RateShape::Diurnal {
                mean: 20.0,
                amplitude: 16.0,
                period_s: d / 2.0,
            },
            Arrivals::Gamma { cv: 1.2 },
            chat(),
        ),
        "mix" => {
            let day = |mean: f64, amplitude: f64, burst: f64| RateShape::BurstyDay {
                mean,
                amplitude,
                period_s: d,
                burst,
                burst_every_s: d / 4.0,
                burst_len_s: d / 15.0,
            };
            return Some(mix(
                &[
                    load(day(16.0, 10.0, 10.0), Arrivals::Gamma { cv: 1.5 }, chat()),
                    load(
                        day(4.0, 2.5, 2.5),
                        Arrivals::Poisson,
                        (
                            lengths(4_000.0, 0.6, 256, 32_000),
                            lengths(300.0, 0.8, 1, 2_000),
                        ),
                    ),
                ],
                d,
                seed,
            ));
        }
        _ => return None,
    };
    Some(synthetic.generate(d, seed))
}

/// What to run and where the traces are.
#[derive(Debug, Clone)]
pub struct WorkloadSource {
    pub traces_dir: PathBuf,
    pub seed: u64,
    /// Virtual duration of synthetic loads (1 h when not given); traces last their span.
    pub duration_s: Option<f64>,
    pub trace_speedup: f64,
}

/// One workload by name: `builtin`, `zoo:NAME`, a trace of the split by name, or a path to a
/// trace file (named by its file stem).
pub fn workload(source: &WorkloadSource, name: &str) -> Result<(String, Scenario), String> {
    let hour = source.duration_s.unwrap_or(3_600.0);
    if name == BUILTIN {
        return Ok((BUILTIN.into(), scenario::builtin(hour, source.seed)));
    }
    if let Some(zoo) = name.strip_prefix(ZOO_PREFIX) {
        let requests = zoo_requests(zoo, hour, source.seed).ok_or_else(|| {
            format!(
                "{name}: expected one of {}",
                ZOO.iter()
                    .map(|(n, _)| format!("{ZOO_PREFIX}{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        return Ok((name.to_string(), scenario::trace(requests, Some(hour))));
    }
    let path = if TRACES.iter().any(|(t, _)| *t == name) {
        source.traces_dir.join(format!("{name}.csv"))
    } else {
        PathBuf::from(name)
    };
    trace_workload(&path, source)
}

fn trace_workload(path: &Path, source: &WorkloadSource) -> Result<(String, Scenario), String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (the traces are read from --traces-dir or WVA_TRACES_DIR, default ../shared/traces)",
            path.display()
        )
    })?;
    let requests =
        parse_trace(&text, source.trace_speedup).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into(),
    );
    Ok((name, scenario::trace(requests, source.duration_s)))
}

/// The names of a set's workloads, in a stable order.
pub fn names(set: WorkloadSet) -> Vec<String> {
    let traces = |wanted: WorkloadSet| {
        TRACES
            .iter()
            .filter(move |(_, s)| *s == wanted)
            .map(|(n, _)| (*n).to_string())
    };
    let zoo = || ZOO.iter().map(|(n, _)| format!("{ZOO_PREFIX}{n}"));
    match set {
        WorkloadSet::Training => std::iter::once(BUILTIN.to_string())
            .chain(traces(WorkloadSet::Training))
            .collect(),
        WorkloadSet::Validation => traces(WorkloadSet::Validation).collect(),
        WorkloadSet::Zoo => zoo().collect(),
        WorkloadSet::All => [
            WorkloadSet::Training,
            WorkloadSet::Validation,
            WorkloadSet::Zoo,
        ]
        .into_iter()
        .flat_map(names)
        .collect(),
    }
}

/// The set a workload belongs to, by name (`None` for a file outside the split).
pub fn set_of(name: &str) -> Option<WorkloadSet> {
    if name == BUILTIN {
        return Some(WorkloadSet::Training);
    }
    if name.starts_with(ZOO_PREFIX) {
        return Some(WorkloadSet::Zoo);
    }
    TRACES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Every workload of a set.
pub fn of_set(
    source: &WorkloadSource,
    set: WorkloadSet,
) -> Result<Vec<(String, Scenario)>, String> {
    names(set).iter().map(|n| workload(source, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> WorkloadSource {
        WorkloadSource {
            traces_dir: PathBuf::from("/nonexistent"),
            seed: 42,
            duration_s: None,
            trace_speedup: 1.0,
        }
    }

    fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q) as usize]
    }

    #[test]
    fn the_split_is_disjoint_and_covers_every_trace() {
        let training = names(WorkloadSet::Training);
        let validation = names(WorkloadSet::Validation);
        assert!(training.iter().all(|t| !validation.contains(t)));
        assert_eq!(training.len() + validation.len(), TRACES.len() + 1);
        assert_eq!(names(WorkloadSet::Zoo).len(), ZOO.len());
        assert_eq!(names(WorkloadSet::All).len(), TRACES.len() + 1 + ZOO.len());
        for n in names(WorkloadSet::All) {
            assert!(set_of(&n).is_some(), "{n}");
        }
        assert_eq!(
            set_of("mooncake-fast25-synthetic"),
            Some(WorkloadSet::Validation)
        );
        assert_eq!(set_of("my-own.csv"), None);
    }

    #[test]
    fn every_zoo_shape_generates_what_it_says() {
        for (name, _) in ZOO {
            let (_, s) = workload(&source(), &format!("{ZOO_PREFIX}{name}")).expect(name);
            assert!(!s.requests.is_empty(), "{name}");
            assert!(
                s.requests
                    .windows(2)
                    .all(|w| w[0].arrival_ms <= w[1].arrival_ms),
                "{name}"
            );
            assert_eq!(s.duration_s, 3_600.0);
        }
        let requests = |name| zoo_requests(name, 3_600.0, 7).expect(name);
        let rate_in = |r: &[Request], from_s: f64, to_s: f64| {
            r.iter()
                .filter(|q| q.arrival_ms >= from_s * 1e3 && q.arrival_ms < to_s * 1e3)
                .count() as f64
                / (to_s - from_s)
        };
        // Prefill-heavy: a median output of one token, a 4x surge in the last third.
        let p = requests("prefill-heavy-surge");
        let outputs: Vec<f64> = p.iter().map(|r| f64::from(r.output_tokens)).collect();
        assert_eq!(quantile(outputs, 0.5), 1.0);
        let (before, after) = (rate_in(&p, 600.0, 2_400.0), rate_in(&p, 2_500.0, 3_500.0));
        assert!(
            (before - 30.0).abs() < 1.5 && (after / before - 4.0).abs() < 0.3,
            "{before} {after}"
        );
        // Long context: prompts with a heavy tail, arrivals in clumps.
        let l = requests("long-context");
        let prompts: Vec<f64> = l.iter().map(|r| f64::from(r.prompt_tokens)).collect();
        let (median, p99) = (quantile(prompts.clone(), 0.5), quantile(prompts, 0.99));
        assert!(
            (4_000.0..9_000.0).contains(&median) && p99 > 4.0 * median,
            "{median} {p99}"
        );
        let together = l
            .windows(2)
            .filter(|w| w[1].arrival_ms - w[0].arrival_ms < 100.0)
            .count() as f64
            / l.len() as f64;
        assert!(together > 0.6, "{together}");
        // Decode-heavy: outputs far longer than prompts.
        let d = requests("decode-heavy");
        let mean = |f: &dyn Fn(&Request) -> u32| {
            d.iter().map(|r| f64::from(f(r))).sum::<f64>() / d.len() as f64
        };
        assert!(mean(&|r| r.output_tokens) > 3.0 * mean(&|r| r.prompt_tokens));
        // The mix holds both populations.
        let m = requests("mix");
        let long = m.iter().filter(|r| r.prompt_tokens > 2_500).count() as f64 / m.len() as f64;
        assert!((0.1..0.35).contains(&long), "{long}");
        // Same seed, same requests.
        assert_eq!(zoo_requests("mix", 600.0, 3), zoo_requests("mix", 600.0, 3));
    }

    #[test]
    fn unknown_names_and_missing_traces_say_what_was_expected() {
        let err = workload(&source(), "zoo:nope").expect_err("unknown");
        assert!(
            err.contains("expected one of zoo:prefill-heavy-surge"),
            "{err}"
        );
        let err = workload(&source(), "servegen-m-small-step").expect_err("missing");
        assert!(
            err.contains("/nonexistent/servegen-m-small-step.csv"),
            "{err}"
        );
        assert!(err.contains("--traces-dir"), "{err}");
        assert_eq!(
            WorkloadSet::parse("validation"),
            Some(WorkloadSet::Validation)
        );
        assert_eq!(WorkloadSet::parse("testing"), None);
    }
}
