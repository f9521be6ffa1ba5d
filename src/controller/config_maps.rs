//! The three policy ConfigMaps as the control loop holds them, and the policy settings and
//! accelerator prices built from them. A watch relist that no longer holds a ConfigMap deletes
//! it; entries that do not parse are reported and skipped, the rest apply.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher;
use wva_actors::messages::PolicySettings;
use wva_actors::policy::slo_capacity::SloCapacityConfig;

use crate::config::settings::Settings;
use crate::config::{
    ACCELERATOR_COST_CONFIG_MAP, AcceleratorCosts, CAPACITY_CONFIG_MAP, CapacityScalingConfig,
    POOL_CONFIG_MAP, PoolConfig, SERVICE_CLASS_CONFIG_MAP, ServiceClasses,
};

/// The ConfigMaps the policy reads, by name.
pub const WATCHED_CONFIG_MAPS: [&str; 4] = [
    CAPACITY_CONFIG_MAP,
    ACCELERATOR_COST_CONFIG_MAP,
    SERVICE_CLASS_CONFIG_MAP,
    POOL_CONFIG_MAP,
];

/// What the policy is built from: the data of each watched ConfigMap that exists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigData {
    data: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// ConfigMaps seen since their watch's list started.
    relisting: Option<BTreeSet<&'static str>>,
}

/// The policy side of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub policy: PolicySettings,
    pub costs: AcceleratorCosts,
    /// How the accelerator pool is read, and its quotas.
    pub pool: PoolConfig,
    /// Skipped entries and warnings, each naming its ConfigMap first.
    pub problems: Vec<String>,
}

impl ConfigData {
    /// The data of ConfigMaps read from files (`wva simulate --config-map`); a name that is
    /// not one of the policy's ConfigMaps is an error naming the ones it could be.
    pub fn from_maps<'a>(
        maps: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    ) -> Result<Self, String> {
        let mut out = Self::default();
        for (name, data) in maps {
            let Some(known) = WATCHED_CONFIG_MAPS.into_iter().find(|n| *n == name) else {
                return Err(format!(
                    "ConfigMap {name:?}: expected the main ConfigMap or one of {}",
                    WATCHED_CONFIG_MAPS.join(", ")
                ));
            };
            out.data.insert(known, data.clone());
        }
        Ok(out)
    }

    /// The policy settings from the process settings and the ConfigMaps' data.
    pub fn policy(&self, settings: &Settings) -> PolicyConfig {
        let capacity = CapacityScalingConfig::from_data(self.data.get(CAPACITY_CONFIG_MAP));
        let costs = AcceleratorCosts::from_data(self.data.get(ACCELERATOR_COST_CONFIG_MAP));
        let classes = ServiceClasses::from_data(self.data.get(SERVICE_CLASS_CONFIG_MAP));
        let pool = PoolConfig::from_data(self.data.get(POOL_CONFIG_MAP));
        let mut problems: Vec<String> = capacity.warnings.clone();
        problems.extend(capacity.issues.iter().map(ToString::to_string));
        problems.extend(costs.issues.iter().map(ToString::to_string));
        problems.extend(classes.issues.iter().map(ToString::to_string));
        problems.extend(pool.issues.iter().map(ToString::to_string));
        PolicyConfig {
            policy: PolicySettings {
                scaling: capacity.scaling,
                mode: settings.mode,
                latency_targets: classes.latency_targets(),
                priorities: classes.priorities(),
                scale_to_zero: settings.scale_to_zero,
                analyzer: settings.analyzer,
                slo_capacity: SloCapacityConfig {
                    budget_share: settings.slo_budget_share,
                    forecast: settings.slo_forecast,
                    ..SloCapacityConfig::default()
                },
            },
            costs,
            pool,
            problems,
        }
    }

    /// Takes one watch event; returns the ConfigMaps whose data changed (`None`: deleted), and
    /// whether the event ended a relist (with the names it did not find).
    pub fn apply(&mut self, event: watcher::Event<ConfigMap>) -> ConfigChanges {
        use watcher::Event as E;
        let mut out = ConfigChanges::default();
        let known = |cm: &ConfigMap| {
            WATCHED_CONFIG_MAPS
                .into_iter()
                .find(|n| cm.metadata.name.as_deref() == Some(*n))
        };
        let mut updates: Vec<(&'static str, Option<BTreeMap<String, String>>)> = Vec::new();
        match event {
            E::Init => self.relisting = Some(BTreeSet::new()),
            E::InitApply(cm) | E::Apply(cm) => {
                if let Some(name) = known(&cm) {
                    if let Some(seen) = &mut self.relisting {
                        seen.insert(name);
                    }
                    updates.push((name, Some(cm.data.unwrap_or_default())));
                }
            }
            E::Delete(cm) => updates.extend(known(&cm).map(|name| (name, None))),
            E::InitDone => {
                let seen = self.relisting.take().unwrap_or_default();
                out.missing = WATCHED_CONFIG_MAPS
                    .into_iter()
                    .filter(|n| !seen.contains(n))
                    .collect();
                updates.extend(
                    out.missing
                        .iter()
                        .filter(|n| self.data.contains_key(*n))
                        .map(|n| (*n, None)),
                );
                out.relist_done = true;
            }
        }
        for (name, data) in updates {
            if self.data.get(name) == data.as_ref() {
                continue;
            }
            match data {
                Some(d) => self.data.insert(name, d),
                None => self.data.remove(name),
            };
            out.changed.push(name);
        }
        out
    }
}

/// What one ConfigMap watch event changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigChanges {
    pub changed: Vec<&'static str>,
    pub relist_done: bool,
    /// On a finished relist: the watched ConfigMaps that do not exist.
    pub missing: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str, key: &str, value: &str) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some([(key.to_string(), value.to_string())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_relist_without_a_configmap_deletes_it_and_names_the_missing_ones() {
        let mut c = ConfigData::default();
        use watcher::Event as E;
        assert_eq!(c.apply(E::Init), ConfigChanges::default());
        let a = c.apply(E::InitApply(cm(
            CAPACITY_CONFIG_MAP,
            "default",
            "kvCacheThreshold: 0.7",
        )));
        assert_eq!(a.changed, [CAPACITY_CONFIG_MAP]);
        let done = c.apply(E::InitDone);
        assert!(done.relist_done);
        assert_eq!(
            done.missing,
            [
                ACCELERATOR_COST_CONFIG_MAP,
                SERVICE_CLASS_CONFIG_MAP,
                POOL_CONFIG_MAP
            ]
        );
        // The same data again changes nothing; another ConfigMap is ignored.
        let same = c.apply(E::Apply(cm(
            CAPACITY_CONFIG_MAP,
            "default",
            "kvCacheThreshold: 0.7",
        )));
        assert!(same.changed.is_empty());
        assert!(c.apply(E::Apply(cm("other", "k", "v"))).changed.is_empty());
        // A relist that no longer holds it deletes it.
        c.apply(E::Init);
        let gone = c.apply(E::InitDone);
        assert_eq!(gone.changed, [CAPACITY_CONFIG_MAP]);
    }
}
