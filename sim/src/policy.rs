//! The autoscalers a run can be driven by, each with its one aggressiveness knob: their names,
//! settings and sweeps. How each acts is [`crate::autoscaler`]'s.

use crate::autoscaler::{Actuation, Autoscaler, HpaOnKvCache, ThisController};
pub use crate::peers::hindsight::BoundTarget;
use crate::peers::hindsight::{HindsightScaler, MissTable};
use crate::peers::keda_slo::KedaSloScaler;
use crate::peers::kpa::KpaScaler;
use crate::peers::saturation_v2::SaturationV2Scaler;
use crate::scenario::Scenario;
use wva_actors::messages::PolicySettings;
use wva_actors::policy::slo_capacity::DEFAULT_BUDGET_SHARE;
use wva_actors::policy::{Analyzer, OperatingMode};

/// Which autoscaler drives the replicas, with its one aggressiveness knob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// This controller with its default analyzer (`slo-capacity`), through an HPA on
    /// `inferno_desired_replicas` with the chart's behaviour; the knob is the share of the
    /// latency objectives the mean may use; `forecast`: sized for the demand forecast over the
    /// measured start-up time too (`wva-forecast`).
    Wva { budget_share: f64, forecast: bool },
    /// This controller with the seeds' saturation analyzer (CONTRACT section 3); the knob is
    /// `kvCacheThreshold`.
    WvaV1 { kv_cache_threshold: f64 },
    /// This controller in hybrid mode: the capacity analyzer arbitrated with the model-based
    /// optimizer.
    WvaHybrid,
    /// Upstream WVA v0.9's token-based analyzer with its cost-aware optimizer, through the
    /// chart's HPA; the knob is the scale-up threshold.
    SaturationV2 { scale_up_threshold: f64 },
    /// llm-d's SLO-aware KEDA setup; the knob is the target ratio.
    KedaSlo { target: f64 },
    /// A plain HPA on the mean KV-cache use of each variant's pods.
    HpaKv { target: f64 },
    /// Knative's pod autoscaler, on concurrency per pod.
    Kpa { target_concurrency: f64 },
    /// The hindsight bound: the schedule chosen with the whole load known in advance, at a
    /// price per missed request or within a budget; `mended`: how many times the plan was run
    /// and mended where it missed more than expected.
    Hindsight { target: BoundTarget, mended: u32 },
}

impl Default for Policy {
    fn default() -> Self {
        Self::Wva {
            budget_share: DEFAULT_BUDGET_SHARE,
            forecast: false,
        }
    }
}

/// How many times the bound's plan is run and mended by default.
pub const MENDED: u32 = 3;

/// Every policy by name, in the order comparisons list them.
pub const POLICY_NAMES: [&str; 8] = [
    "wva",
    "wva-v1",
    "wva-hybrid",
    "saturation-v2",
    "keda-slo",
    "hpa-kv",
    "kpa",
    "hindsight",
];

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Wva {
                forecast: false, ..
            } => "wva",
            Self::Wva { forecast: true, .. } => "wva-forecast",
            Self::WvaV1 { .. } => "wva-v1",
            Self::WvaHybrid => "wva-hybrid",
            Self::SaturationV2 { .. } => "saturation-v2",
            Self::KedaSlo { .. } => "keda-slo",
            Self::HpaKv { .. } => "hpa-kv",
            Self::Kpa { .. } => "kpa",
            Self::Hindsight { .. } => "hindsight",
        }
    }

    /// A policy by name, with its default knob, or `name=setting` with another.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((name, setting)) = text.split_once('=') else {
            return Self::parse_name(text);
        };
        let policy = Self::parse_name(name)?;
        let Some((knob, _)) = policy.knob() else {
            return Err(format!(
                "{} has no setting to give, got {text:?}",
                policy.name()
            ));
        };
        match setting.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(policy.with_knob(v)),
            _ => Err(format!(
                "expected {name}=<{knob}, a number above 0>, got {text:?}"
            )),
        }
    }

    fn parse_name(name: &str) -> Result<Self, String> {
        match name.trim() {
            "wva" => Ok(Self::default()),
            "wva-forecast" => Ok(Self::Wva {
                budget_share: DEFAULT_BUDGET_SHARE,
                forecast: true,
            }),
            "wva-v1" => Ok(Self::WvaV1 {
                kv_cache_threshold: 0.8,
            }),
            "wva-hybrid" => Ok(Self::WvaHybrid),
            "saturation-v2" => Ok(Self::SaturationV2 {
                scale_up_threshold: 0.85,
            }),
            "keda-slo" => Ok(Self::KedaSlo { target: 0.55 }),
            "hpa-kv" => Ok(Self::HpaKv { target: 0.6 }),
            "kpa" => Ok(Self::Kpa {
                target_concurrency: 48.0,
            }),
            "hindsight" => Ok(Self::Hindsight {
                target: BoundTarget::Price(0.001),
                mended: MENDED,
            }),
            other => Err(format!(
                "expected one of {}, got {other:?}",
                POLICY_NAMES.join(", ")
            )),
        }
    }

    /// The knob's name and value (`None` for a policy without one).
    pub fn knob(&self) -> Option<(&'static str, f64)> {
        match *self {
            Self::Wva { budget_share, .. } => Some(("budget share", budget_share)),
            Self::WvaV1 { kv_cache_threshold } => Some(("kvCacheThreshold", kv_cache_threshold)),
            Self::WvaHybrid => None,
            Self::SaturationV2 { scale_up_threshold } => {
                Some(("scale-up threshold", scale_up_threshold))
            }
            Self::KedaSlo { target } => Some(("target ratio", target)),
            Self::HpaKv { target } => Some(("KV target", target)),
            Self::Kpa { target_concurrency } => Some(("target concurrency", target_concurrency)),
            Self::Hindsight {
                target: BoundTarget::Price(p),
                ..
            } => Some(("miss price", p)),
            Self::Hindsight {
                target: BoundTarget::Budget(b),
                ..
            } => Some(("budget", b)),
            Self::Hindsight {
                target: BoundTarget::Headroom(h),
                ..
            } => Some(("fleets of headroom", f64::from(h))),
            Self::Hindsight {
                target: BoundTarget::BudgetWithHeadroom(b),
                ..
            } => Some(("budget with headroom", b)),
            Self::Hindsight {
                target: BoundTarget::BudgetHeld(b),
                ..
            } => Some(("budget, held", b)),
            Self::Hindsight {
                target: BoundTarget::Searched(b),
                ..
            } => Some(("budget, searched", b)),
            Self::Hindsight {
                target: BoundTarget::Replayed(seed),
                ..
            } => Some(("replay of seed", f64::from(seed))),
        }
    }

    /// The same policy with another knob setting.
    pub fn with_knob(self, k: f64) -> Self {
        match self {
            Self::Wva { forecast, .. } => Self::Wva {
                budget_share: k,
                forecast,
            },
            Self::WvaV1 { .. } => Self::WvaV1 {
                kv_cache_threshold: k,
            },
            Self::WvaHybrid => Self::WvaHybrid,
            Self::SaturationV2 { .. } => Self::SaturationV2 {
                scale_up_threshold: k,
            },
            Self::KedaSlo { .. } => Self::KedaSlo { target: k },
            Self::HpaKv { .. } => Self::HpaKv { target: k },
            Self::Kpa { .. } => Self::Kpa {
                target_concurrency: k,
            },
            Self::Hindsight { target, mended } => Self::Hindsight {
                target: match target {
                    BoundTarget::Price(_) => BoundTarget::Price(k),
                    BoundTarget::Budget(_) => BoundTarget::Budget(k),
                    BoundTarget::Headroom(_) => BoundTarget::Headroom(k.round() as u32),
                    BoundTarget::BudgetWithHeadroom(_) => BoundTarget::BudgetWithHeadroom(k),
                    BoundTarget::BudgetHeld(_) => BoundTarget::BudgetHeld(k),
                    BoundTarget::Searched(_) => BoundTarget::Searched(k),
                    BoundTarget::Replayed(_) => BoundTarget::Replayed(k.round() as u32),
                },
                mended,
            },
        }
    }

    /// The knob settings a frontier sweeps, from the most careful to the boldest.
    pub fn sweep(&self) -> Vec<f64> {
        match self {
            Self::Wva { .. } => vec![0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0],
            Self::WvaV1 { .. } => vec![0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
            Self::WvaHybrid => vec![],
            Self::SaturationV2 { .. } => vec![0.45, 0.55, 0.65, 0.75, 0.85, 0.95],
            Self::KedaSlo { .. } => vec![0.25, 0.35, 0.45, 0.55, 0.7, 0.85],
            Self::HpaKv { .. } => vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            Self::Kpa { .. } => vec![8.0, 16.0, 24.0, 32.0, 48.0, 64.0],
            // From about the minimum fleet throughout to about every request it can serve.
            Self::Hindsight { .. } => vec![
                1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 1.0,
            ],
        }
    }

    /// Whether this controller's actors decide (and an HPA acts on what they publish).
    pub fn is_wva(&self) -> bool {
        matches!(
            self,
            Self::Wva { .. } | Self::WvaV1 { .. } | Self::WvaHybrid
        )
    }
}

/// The controller's settings under a policy: its analyzer or mode, and the knob.
pub fn policy_settings(base: &PolicySettings, policy: Policy, configured: bool) -> PolicySettings {
    let mut s = base.clone();
    match policy {
        Policy::Wva { .. } if configured => {}
        Policy::Wva {
            budget_share,
            forecast,
        } => {
            s.analyzer = Analyzer::SloCapacity;
            s.slo_capacity.budget_share = budget_share;
            s.slo_capacity.forecast = forecast;
        }
        Policy::WvaV1 { kv_cache_threshold } => {
            s.analyzer = Analyzer::SaturationV1;
            let t = &mut s.scaling.default.thresholds;
            t.kv_cache_threshold = kv_cache_threshold;
            t.kv_spare_trigger = t.kv_spare_trigger.min(kv_cache_threshold);
        }
        Policy::WvaHybrid => {
            s.analyzer = Analyzer::SaturationV1;
            s.mode = OperatingMode::Hybrid;
        }
        _ => {}
    }
    s
}

/// The autoscaler a policy runs as on `scenario`.
pub fn autoscaler(
    policy: Policy,
    scenario: &Scenario,
    hindsight: Option<&MissTable>,
) -> Result<Box<dyn Autoscaler>, String> {
    let through_chart = Actuation::Hpa {
        target_average_value: scenario.hpa.target_average_value,
        behavior: scenario.hpa.behavior.clone(),
    };
    Ok(match policy {
        Policy::Wva { .. } | Policy::WvaV1 { .. } | Policy::WvaHybrid => Box::new(ThisController {
            actuation: through_chart,
        }),
        Policy::SaturationV2 { scale_up_threshold } => Box::new(SaturationV2Scaler::new(
            scale_up_threshold,
            scenario.variants.len(),
            through_chart,
        )),
        // KEDA's HPA on the per-replica ratio, with the chart's behaviour.
        Policy::KedaSlo { target } => Box::new(KedaSloScaler::new(
            target,
            scenario.variants.len(),
            scenario.hpa.behavior.clone(),
        )),
        Policy::HpaKv { target } => Box::new(HpaOnKvCache { target }),
        Policy::Kpa { target_concurrency } => Box::new(KpaScaler::new(
            target_concurrency,
            scenario.variants.iter().map(|v| v.max_replicas).collect(),
        )),
        Policy::Hindsight {
            target: BoundTarget::Replayed(seed),
            ..
        } => {
            return Err(format!(
                "replay of seed {seed}: a replay starts from its seed's run, which the bound's \
                 rounds make (wva_sim::bound::run_rounds)"
            ));
        }
        Policy::Hindsight { target, .. } => {
            let table = MissTable::given_or_measured(hindsight, scenario)?;
            let first = scenario.initial_replicas();
            Box::new(HindsightScaler::new(
                table.fleets(&table.plan_for(target, &first)),
                scenario.startup_s * 1e3,
                scenario.control_interval_s * 1e3,
            ))
        }
    })
}
