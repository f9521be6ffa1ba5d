//! The watch streams of the control loop, merged into one: VariantAutoscalings (guarded, so one
//! malformed object cannot wedge the watch), Deployments, Pods (metadata only), the scalers
//! (HPAs, and KEDA's ScaledObjects when KEDA is installed) and the policy ConfigMaps. Watches
//! are namespaced when the controller is scoped to a namespace.

use std::time::Duration;

use backon::BackoffBuilder;
use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::watcher;

use super::inventory::{self, Change, Inventory, Kind};
use super::lws::LeaderWorkerSet;
use super::scalers::ScaledObject;
use crate::crd::VariantAutoscaling;

/// After a watch failure that is not an expired resource version, the first retry waits this
/// long; each further one twice as long, up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_millis(250);
/// The longest wait before a watch retries, so that the controller is back within seconds of
/// an API server's return.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// Whether a watch error says its resource version expired (410 Gone, as a watch event or as
/// the answer to the watch request): only a fresh list can continue.
pub fn expired(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 410,
        watcher::Error::WatchError(s) => s.code == 410,
        _ => false,
    }
}

/// Whether a watch error is a failure to reach the API server at all (no answer), as opposed
/// to an answer that refused the request.
pub fn unreachable(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => !matches!(e, kube::Error::Api(_)),
        _ => false,
    }
}

/// A watch that relists at once when its resource version expired (kube's watcher would retry
/// the expired version after its backoff), backs off only on other failures (from
/// [`RETRY_MIN`], at most [`RETRY_MAX`], reset by any success), and starts over if its stream
/// ever ends. Errors are still yielded, for counting and logging.
fn resilient<K>(
    api: Api<K>,
    config: watcher::Config,
) -> BoxStream<'static, watcher::Result<watcher::Event<K>>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let fresh = move || watcher(api.clone(), config.clone()).boxed();
    let retries = backon::ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_jitter()
        .without_max_times();
    let first = (fresh(), retries.build(), None::<Duration>);
    stream::unfold(first, move |(mut inner, mut backoff, delay)| {
        let fresh = fresh.clone();
        async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            loop {
                match inner.next().await {
                    Some(Ok(event)) => return Some((Ok(event), (inner, retries.build(), None))),
                    Some(Err(e)) if expired(&e) => {
                        return Some((Err(e), (fresh(), backoff, None)));
                    }
                    Some(Err(e)) => {
                        let wait = backoff.next().unwrap_or(RETRY_MAX);
                        return Some((Err(e), (inner, backoff, Some(wait))));
                    }
                    None => inner = fresh(),
                }
            }
        }
    })
    .boxed()
}

/// One event of any watched kind.
#[derive(Debug)]
pub enum Watched {
    Va(watcher::Event<DeserializeGuard<VariantAutoscaling>>),
    Deployment(Box<watcher::Event<Deployment>>),
    Pod(watcher::Event<PartialObjectMeta<Pod>>),
    ConfigMap(watcher::Event<ConfigMap>),
    Hpa(Box<watcher::Event<HorizontalPodAutoscaler>>),
    ScaledObject(Box<watcher::Event<DeserializeGuard<ScaledObject>>>),
    LeaderWorkerSet(Box<watcher::Event<DeserializeGuard<LeaderWorkerSet>>>),
    /// Nodes, for the accelerator pool.
    Node(Box<watcher::Event<Node>>),
    /// Pods bound to a node, cluster-wide, for what they hold of the accelerator pool.
    BoundPod(Box<watcher::Event<Pod>>),
}

impl Watched {
    /// The watched kind, for counting watch errors by resource.
    pub fn resource(&self) -> &'static str {
        match self {
            Self::Va(_) => "variantautoscalings",
            Self::Deployment(_) => "deployments",
            Self::Pod(_) => "pods",
            Self::ConfigMap(_) => "configmaps",
            Self::Hpa(_) => HPAS,
            Self::ScaledObject(_) => SCALED_OBJECTS,
            Self::LeaderWorkerSet(_) => LEADER_WORKER_SETS,
            Self::Node(_) => NODES,
            Self::BoundPod(_) => BOUND_PODS,
        }
    }
}

/// The resource name of the HPA watch.
pub const HPAS: &str = "horizontalpodautoscalers";
/// The resource name of the ScaledObject watch.
pub const SCALED_OBJECTS: &str = "scaledobjects";
/// The resource name of the Node watch (the accelerator pool).
pub const NODES: &str = "nodes";
/// The resource name of the accelerator pool's watch of pods bound to nodes.
pub const BOUND_PODS: &str = "pods-bound";
/// The resource name of the LeaderWorkerSet watch.
pub const LEADER_WORKER_SETS: &str = "leaderworkersets";

/// The watched kinds the controller can do without: KEDA's and LeaderWorkerSet's CRDs may not
/// be installed, and RBAC written for older versions may not grant HPAs. While such a kind
/// cannot be listed it counts as listed and empty (VAs and Deployments still work), and its
/// watch keeps retrying.
pub fn optional_kind(resource: &str) -> Option<Kind> {
    match resource {
        SCALED_OBJECTS => Some(Kind::ScaledObject),
        LEADER_WORKER_SETS => Some(Kind::LeaderWorkerSet),
        HPAS => Some(Kind::HorizontalPodAutoscaler),
        _ => None,
    }
}

/// Why an optional kind cannot be listed, when it is one of the expected reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlisted {
    /// 404: the API is not served (a CRD not installed).
    NotServed,
    /// 403: the controller's RBAC does not grant it.
    Forbidden,
}

/// The expected reason a watch of an optional kind failed, if it is one.
pub fn unlisted(error: &watcher::Error) -> Option<Unlisted> {
    let code = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code,
        watcher::Error::WatchError(s) => s.code,
        _ => return None,
    };
    match code {
        404 => Some(Unlisted::NotServed),
        403 => Some(Unlisted::Forbidden),
        _ => None,
    }
}

/// A watch error, with the resource whose watch failed.
#[derive(Debug)]
pub struct WatchError {
    pub resource: &'static str,
    pub error: watcher::Error,
}

/// The merged stream of every watch.
pub type WatchStream = BoxStream<'static, Result<Watched, WatchError>>;

fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Every watch of the controller, merged. `namespace` scopes the watched objects; the
/// ConfigMaps are watched in the controller's own namespace; with `pool`, the Nodes and the
/// pods bound to them are watched cluster-wide, for the accelerator pool.
pub fn streams(
    client: &kube::Client,
    namespace: Option<&str>,
    pod_namespace: &str,
    pool: bool,
) -> WatchStream {
    let config = watcher::Config::default();
    let tag = |resource: &'static str| move |e| WatchError { resource, error: e };
    let vas = resilient(
        scoped::<DeserializeGuard<VariantAutoscaling>>(client, namespace),
        config.clone(),
    )
    .map(move |e| e.map(Watched::Va).map_err(tag("variantautoscalings")))
    .boxed();
    let deployments = resilient(scoped::<Deployment>(client, namespace), config.clone())
        .map(move |e| {
            e.map(|d| Watched::Deployment(Box::new(d)))
                .map_err(tag("deployments"))
        })
        .boxed();
    let pods = resilient(
        scoped::<PartialObjectMeta<Pod>>(client, namespace),
        config.clone(),
    )
    .map(move |e| e.map(Watched::Pod).map_err(tag("pods")))
    .boxed();
    let config_maps = resilient(
        Api::<ConfigMap>::namespaced(client.clone(), pod_namespace),
        config.clone(),
    )
    .map(move |e| e.map(Watched::ConfigMap).map_err(tag("configmaps")))
    .boxed();
    let hpas = resilient(
        scoped::<HorizontalPodAutoscaler>(client, namespace),
        config.clone(),
    )
    .map(move |e| e.map(|h| Watched::Hpa(Box::new(h))).map_err(tag(HPAS)))
    .boxed();
    // KEDA may be installed after the controller: until then this list fails with 404 (which
    // the loop reads as "no ScaledObjects") and is retried with the watch's backoff.
    let scaled_objects = resilient(
        scoped::<DeserializeGuard<ScaledObject>>(client, namespace),
        config.clone(),
    )
    .map(move |e| {
        e.map(|s| Watched::ScaledObject(Box::new(s)))
            .map_err(tag(SCALED_OBJECTS))
    })
    .boxed();
    let groups = resilient(
        scoped::<DeserializeGuard<LeaderWorkerSet>>(client, namespace),
        config.clone(),
    )
    .map(move |e| {
        e.map(|g| Watched::LeaderWorkerSet(Box::new(g)))
            .map_err(tag(LEADER_WORKER_SETS))
    })
    .boxed();
    let mut all = vec![
        vas,
        deployments,
        pods,
        config_maps,
        hpas,
        scaled_objects,
        groups,
    ];
    if pool {
        all.push(
            resilient(Api::<Node>::all(client.clone()), config.clone())
                .map(move |e| e.map(|n| Watched::Node(Box::new(n))).map_err(tag(NODES)))
                .boxed(),
        );
        // Finished pods hold nothing; the rest are kept only as their node and what they hold.
        let unfinished = config.fields("status.phase!=Succeeded,status.phase!=Failed");
        all.push(
            resilient(Api::<Pod>::all(client.clone()), unfinished)
                .map(move |e| {
                    e.map(|p| Watched::BoundPod(Box::new(p)))
                        .map_err(tag(BOUND_PODS))
                })
                .boxed(),
        );
    }
    stream::select_all(all).boxed()
}

/// Feeds one watch event of the three object kinds to the inventory (ConfigMaps are the
/// loop's). List start and end mark the relist.
pub fn to_inventory(inv: &mut Inventory, event: Watched) -> Vec<Change> {
    match event {
        Watched::Va(e) => lifecycle(
            inv,
            Kind::VariantAutoscaling,
            e,
            Inventory::va_applied,
            |inv, va| {
                let (ns, name) = match &va.0 {
                    Ok(v) => inventory::id(&v.metadata),
                    Err(i) => inventory::id(&i.metadata),
                };
                inv.va_deleted(&ns, &name)
            },
        ),
        Watched::Deployment(e) => lifecycle(
            inv,
            Kind::Deployment,
            *e,
            |inv, d| inv.deployment_applied(&d),
            |inv, d| {
                let (ns, name) = inventory::id(&d.metadata);
                inv.deployment_deleted(&ns, &name)
            },
        ),
        Watched::Pod(e) => lifecycle(
            inv,
            Kind::Pod,
            e,
            |inv, p| {
                inv.pod_applied(&p.metadata);
                Vec::new()
            },
            |inv, p| {
                let (ns, name) = inventory::id(&p.metadata);
                inv.pod_deleted(&ns, &name);
                Vec::new()
            },
        ),
        Watched::Hpa(e) => lifecycle(
            inv,
            Kind::HorizontalPodAutoscaler,
            *e,
            |inv, h| inv.hpa_applied(&h),
            |inv, h| {
                let (ns, name) = inventory::id(&h.metadata);
                inv.scaler_deleted(Kind::HorizontalPodAutoscaler, &ns, &name)
            },
        ),
        Watched::ScaledObject(e) => lifecycle(
            inv,
            Kind::ScaledObject,
            *e,
            Inventory::scaled_object_applied,
            |inv, s| {
                let (ns, name) = match &s.0 {
                    Ok(s) => inventory::id(&s.metadata),
                    Err(i) => inventory::id(&i.metadata),
                };
                inv.scaler_deleted(Kind::ScaledObject, &ns, &name)
            },
        ),
        Watched::LeaderWorkerSet(e) => lifecycle(
            inv,
            Kind::LeaderWorkerSet,
            *e,
            Inventory::lws_applied,
            |inv, g| {
                let (ns, name) = match &g.0 {
                    Ok(g) => inventory::id(&g.metadata),
                    Err(i) => inventory::id(&i.metadata),
                };
                inv.lws_deleted(&ns, &name)
            },
        ),
        // The control loop's, not the inventory's.
        Watched::ConfigMap(_) | Watched::Node(_) | Watched::BoundPod(_) => Vec::new(),
    }
}

fn lifecycle<K>(
    inv: &mut Inventory,
    kind: Kind,
    event: watcher::Event<K>,
    applied: impl FnOnce(&mut Inventory, K) -> Vec<Change>,
    deleted: impl FnOnce(&mut Inventory, K) -> Vec<Change>,
) -> Vec<Change> {
    use watcher::Event as E;
    match event {
        E::Init => {
            inv.relist_started(kind);
            Vec::new()
        }
        E::InitApply(obj) | E::Apply(obj) => applied(inv, obj),
        E::InitDone => inv.relist_done(kind),
        E::Delete(obj) => deleted(inv, obj),
    }
}
