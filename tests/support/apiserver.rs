//! A scripted Kubernetes API server for reconcile tests: a `kube::Client` over a tower-test mock
//! service, answered from an in-memory object store. Lists and watches (streamed, line by
//! line, as the real server does), gets, creates, replaces with resourceVersion checks,
//! server-side-apply patches of status, Events, Leases, TokenReviews and SubjectAccessReviews.
//! Every write is recorded for the test to assert on.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A resource the fake serves: its URL group prefix and plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Res {
    pub prefix: &'static str,
    pub plural: &'static str,
    pub list_kind: &'static str,
}

pub const VA: Res = Res {
    prefix: "/apis/llmd.ai/v1alpha1",
    plural: "variantautoscalings",
    list_kind: "VariantAutoscalingList",
};
pub const DEPLOYMENT: Res = Res {
    prefix: "/apis/apps/v1",
    plural: "deployments",
    list_kind: "DeploymentList",
};
pub const POD: Res = Res {
    prefix: "/api/v1",
    plural: "pods",
    list_kind: "PodList",
};
pub const CONFIG_MAP: Res = Res {
    prefix: "/api/v1",
    plural: "configmaps",
    list_kind: "ConfigMapList",
};
pub const LEASE: Res = Res {
    prefix: "/apis/coordination.k8s.io/v1",
    plural: "leases",
    list_kind: "LeaseList",
};
pub const HPA: Res = Res {
    prefix: "/apis/autoscaling/v2",
    plural: "horizontalpodautoscalers",
    list_kind: "HorizontalPodAutoscalerList",
};
pub const SCALED_OBJECT: Res = Res {
    prefix: "/apis/keda.sh/v1alpha1",
    plural: "scaledobjects",
    list_kind: "ScaledObjectList",
};
pub const LWS: Res = Res {
    prefix: "/apis/leaderworkerset.x-k8s.io/v1",
    plural: "leaderworkersets",
    list_kind: "LeaderWorkerSetList",
};
pub const NODE: Res = Res {
    prefix: "/api/v1",
    plural: "nodes",
    list_kind: "NodeList",
};
const ALL: [Res; 9] = [
    VA,
    DEPLOYMENT,
    POD,
    CONFIG_MAP,
    LEASE,
    HPA,
    SCALED_OBJECT,
    LWS,
    NODE,
];

/// A write the controller made.
#[derive(Debug, Clone)]
pub struct Write {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

struct Watcher {
    res: Res,
    namespace: Option<String>,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct Store {
    objects: BTreeMap<(Res, String, String), Value>,
    version: u64,
    watchers: Vec<Watcher>,
    writes: Vec<Write>,
    /// Paths of every request, for scoping checks.
    requests: Vec<String>,
    crd_installed: bool,
    /// KEDA's CRD: until installed, ScaledObject requests are 404 as on a cluster without KEDA.
    keda_installed: bool,
    /// The LeaderWorkerSet CRD, likewise.
    lws_installed: bool,
    /// Resources the controller's RBAC does not grant: 403.
    forbidden: Vec<Res>,
    /// The API server is down: every request fails to connect.
    down: bool,
    /// Watch requests still to answer 410 Gone ("too old resource version").
    expire_next_watches: usize,
    /// The store's version when the server last came back: a watch from an older resource
    /// version is 410 Gone, as from a restarted API server whose watch cache is empty.
    restarted_at: u64,
    /// Every change with its version, so that a watch from a resource version replays what
    /// it missed, as the API server's watch cache does (the newest [`HISTORY`] only; a watch
    /// from before them is 410 Gone, as from a real one).
    history: std::collections::VecDeque<(u64, Res, String, Bytes)>,
    /// Not recording writes and requests (long runs: the soak).
    quiet: bool,
    /// Status writes answer this code after this delay, while set.
    status_fault: Option<(u16, Duration)>,
    /// token -> username; allowed users for GET /metrics.
    tokens: BTreeMap<String, String>,
    allowed: Vec<String>,
}

/// The fake API server.
#[derive(Clone)]
pub struct FakeApi {
    store: Arc<Mutex<Store>>,
}

fn res_of(path: &str) -> Option<(Res, Option<String>, Option<String>, bool)> {
    // -> (resource, namespace, name, status subresource)
    for res in ALL {
        let Some(rest) = path.strip_prefix(res.prefix) else {
            continue;
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            [p] if *p == res.plural => return Some((res, None, None, false)),
            ["namespaces", ns, p] if *p == res.plural => {
                return Some((res, Some(ns.to_string()), None, false));
            }
            ["namespaces", ns, p, name] if *p == res.plural => {
                return Some((res, Some(ns.to_string()), Some(name.to_string()), false));
            }
            ["namespaces", ns, p, name, "status"] if *p == res.plural => {
                return Some((res, Some(ns.to_string()), Some(name.to_string()), true));
            }
            _ => {}
        }
    }
    None
}

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes).boxed_unsync())
        .unwrap()
}

fn status_error(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(
        StatusCode::from_u16(code).unwrap(),
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code}),
    )
}

fn meta_key(obj: &Value) -> (String, String) {
    (
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

impl FakeApi {
    pub fn new() -> Self {
        let store = Store {
            crd_installed: true,
            ..Default::default()
        };
        Self {
            store: Arc::new(Mutex::new(store)),
        }
    }

    /// A client whose every request this fake answers.
    pub fn client(&self) -> kube::Client {
        let (service, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let me = me.clone();
                tokio::spawn(async move {
                    if me.store.lock().unwrap().down {
                        send.send_error("connection refused (the fake API server is down)");
                        return;
                    }
                    let response = me.serve(request).await;
                    send.send_response(response);
                });
            }
        });
        kube::Client::new(service, "default")
    }

    /// Status writes fail with `code` after `delay` until `heal_status_writes`.
    pub fn fail_status_writes(&self, code: u16, delay: Duration) {
        self.store.lock().unwrap().status_fault = Some((code, delay));
    }

    pub fn heal_status_writes(&self) {
        self.store.lock().unwrap().status_fault = None;
    }

    pub fn set_crd_installed(&self, installed: bool) {
        self.store.lock().unwrap().crd_installed = installed;
    }

    /// Takes the API server down (every request fails to connect, open watches end) or brings
    /// it back.
    pub fn set_down(&self, down: bool) {
        let mut s = self.store.lock().unwrap();
        s.down = down;
        if down {
            s.watchers.clear();
        } else {
            s.restarted_at = s.version;
        }
    }

    /// Answers the next `n` watch requests with 410 Gone, as an API server whose watch cache
    /// no longer has the resource version asked for.
    pub fn expire_next_watches(&self, n: usize) {
        self.store.lock().unwrap().expire_next_watches = n;
    }

    /// Ends every open watch with a 410 `Expired` error event, as after an etcd compaction.
    pub fn expire_open_watches(&self) {
        let mut s = self.store.lock().unwrap();
        let line = serde_json::to_vec(&json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "too old resource version: 1 (99)", "reason": "Expired", "code": 410}}))
        .unwrap();
        let mut line = line;
        line.push(b'\n');
        for w in s.watchers.drain(..) {
            let _ = w.tx.send(Bytes::from(line.clone()));
        }
    }

    /// Ends every open watch stream (the server closed the connection).
    pub fn end_open_watches(&self) {
        self.store.lock().unwrap().watchers.clear();
    }

    /// Stops recording writes and requests, for runs too long to keep them all.
    pub fn quiet(&self) {
        self.store.lock().unwrap().quiet = true;
    }

    /// Answers 403 for every request on `res`, as when RBAC does not grant it.
    pub fn forbid(&self, res: Res) {
        self.store.lock().unwrap().forbidden.push(res);
    }

    /// Grants `res` again after [`FakeApi::forbid`].
    pub fn allow(&self, res: Res) {
        self.store.lock().unwrap().forbidden.retain(|r| *r != res);
    }

    /// Installs the LeaderWorkerSet CRD; absent by default.
    pub fn set_lws_installed(&self, installed: bool) {
        self.store.lock().unwrap().lws_installed = installed;
    }

    /// Installs (or removes) KEDA's ScaledObject CRD; absent by default.
    pub fn set_keda_installed(&self, installed: bool) {
        let mut s = self.store.lock().unwrap();
        s.keda_installed = installed;
        if !installed {
            // Open watches end, as the API server ends them when a CRD is deleted.
            s.watchers.retain(|w| w.res != SCALED_OBJECT);
        }
    }

    /// A bearer token that authenticates as `user`; `allowed` users may GET /metrics.
    pub fn add_token(&self, token: &str, user: &str, allowed: bool) {
        let mut s = self.store.lock().unwrap();
        s.tokens.insert(token.into(), user.into());
        if allowed {
            s.allowed.push(user.into());
        }
    }

    /// Creates or replaces an object, notifying watchers.
    pub fn apply(&self, res: Res, mut obj: Value) {
        let mut s = self.store.lock().unwrap();
        s.version += 1;
        let rv = s.version.to_string();
        obj["metadata"]["resourceVersion"] = json!(rv);
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("uid-{rv}"));
        }
        if obj["metadata"]["generation"].is_null() {
            obj["metadata"]["generation"] = json!(1);
        }
        let (ns, name) = meta_key(&obj);
        let existed = s
            .objects
            .insert((res, ns.clone(), name), obj.clone())
            .is_some();
        notify(
            &mut s,
            res,
            &ns,
            if existed { "MODIFIED" } else { "ADDED" },
            &obj,
        );
    }

    pub fn delete(&self, res: Res, namespace: &str, name: &str) {
        let mut s = self.store.lock().unwrap();
        if let Some(mut obj) = s
            .objects
            .remove(&(res, namespace.to_string(), name.to_string()))
        {
            s.version += 1;
            obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
            notify(&mut s, res, namespace, "DELETED", &obj);
        }
    }

    pub fn get(&self, res: Res, namespace: &str, name: &str) -> Option<Value> {
        self.store
            .lock()
            .unwrap()
            .objects
            .get(&(res, namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub fn writes(&self) -> Vec<Write> {
        self.store.lock().unwrap().writes.clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.store.lock().unwrap().requests.clone()
    }

    /// Status patches of one VA, oldest first.
    pub fn statuses(&self, namespace: &str, name: &str) -> Vec<Value> {
        let path = format!(
            "{}/namespaces/{namespace}/{}/{name}/status",
            VA.prefix, VA.plural
        );
        self.writes()
            .into_iter()
            .filter(|w| w.method == "PATCH" && w.path == path)
            .map(|w| w.body)
            .collect()
    }

    /// Events (events.k8s.io) created about an object, as (type, reason, note).
    pub fn events_about(&self, name: &str) -> Vec<(String, String, String)> {
        self.writes()
            .into_iter()
            .filter(|w| w.method == "POST" && w.path.contains("/events"))
            .filter(|w| w.body["regarding"]["name"] == name)
            .map(|w| {
                (
                    w.body["type"].as_str().unwrap_or("").to_string(),
                    w.body["reason"].as_str().unwrap_or("").to_string(),
                    w.body["note"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Open watches.
    pub fn watch_count(&self) -> usize {
        let mut s = self.store.lock().unwrap();
        s.watchers.retain(|w| !w.tx.is_closed());
        s.watchers.len()
    }

    /// Waits until `n` watches are open.
    pub async fn wait_watches(&self, n: usize) {
        let start = Instant::now();
        while self.watch_count() < n {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{} watches open, wanted {n}",
                self.watch_count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn serve(&self, request: Request<kube::client::Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = body.collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or("").to_string();
        let method = parts.method.as_str().to_string();
        let fault = self.store.lock().unwrap().status_fault;
        if let Some((code, delay)) =
            fault.filter(|_| method == "PATCH" && path.ends_with("/status"))
        {
            tokio::time::sleep(delay).await;
            return status_error(code, "InternalError", "injected status-write failure");
        }
        self.answer(path, query, method, body)
    }

    fn answer(&self, path: String, query: String, method: String, body: Value) -> Response<Body> {
        let mut s = self.store.lock().unwrap();
        if !s.quiet {
            s.requests.push(format!("{method} {path}?{query}"));
        }
        if method != "GET" && !s.quiet {
            s.writes.push(Write {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                body: body.clone(),
            });
        }
        if path == "/apis/llmd.ai/v1alpha1" {
            return if s.crd_installed {
                respond(
                    StatusCode::OK,
                    &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "llmd.ai/v1alpha1",
                        "resources": [{"name": "variantautoscalings", "singularName": "variantautoscaling", "namespaced": true, "kind": "VariantAutoscaling", "verbs": ["get", "list", "watch"]}]}),
                )
            } else {
                status_error(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            };
        }
        if path.ends_with("/tokenreviews") {
            let token = body["spec"]["token"].as_str().unwrap_or("");
            let status = match s.tokens.get(token) {
                Some(user) => {
                    json!({"authenticated": true, "user": {"username": user, "groups": ["system:authenticated"]}})
                }
                None => json!({"authenticated": false}),
            };
            let mut answer = body.clone();
            answer["status"] = status;
            return respond(StatusCode::CREATED, &answer);
        }
        if path.ends_with("/subjectaccessreviews") {
            let user = body["spec"]["user"].as_str().unwrap_or("");
            let allowed = s.allowed.iter().any(|u| u == user)
                && body["spec"]["nonResourceAttributes"]
                    == json!({"path": "/metrics", "verb": "get"});
            let mut answer = body.clone();
            answer["status"] = json!({"allowed": allowed});
            return respond(StatusCode::CREATED, &answer);
        }
        if path.contains("/events") {
            let mut answer = body.clone();
            answer["metadata"]["resourceVersion"] = json!("1");
            return respond(StatusCode::CREATED, &answer);
        }
        let Some((res, ns, name, status_sub)) = res_of(&path) else {
            return status_error(404, "NotFound", &format!("no route for {method} {path}"));
        };
        if s.forbidden.contains(&res) {
            return status_error(403, "Forbidden", &format!("{} is forbidden", res.plural));
        }
        if (res == SCALED_OBJECT && !s.keda_installed) || (res == LWS && !s.lws_installed) {
            return status_error(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
        match (method.as_str(), name) {
            ("GET", None) if query.contains("watch=true") && s.expire_next_watches > 0 => {
                s.expire_next_watches -= 1;
                status_error(410, "Expired", "too old resource version")
            }
            ("GET", None)
                if query.contains("watch=true")
                    && resource_version(&query).is_some_and(|rv| {
                        rv < s.restarted_at
                            || s.history
                                .front()
                                .is_some_and(|(oldest, ..)| rv + 1 < *oldest)
                    }) =>
            {
                status_error(410, "Expired", "too old resource version")
            }
            ("GET", None) if query.contains("watch=true") => {
                let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
                // What happened since the version the watch starts from comes first.
                if let Some(from) = resource_version(&query) {
                    for (_, _, _, line) in s.history.iter().filter(|(v, r, n, _)| {
                        *v > from && *r == res && ns.as_ref().is_none_or(|ns| ns == n)
                    }) {
                        let _ = tx.send(line.clone());
                    }
                }
                s.watchers.push(Watcher {
                    res,
                    namespace: ns,
                    tx,
                });
                let stream = futures_util::stream::poll_fn(move |cx| {
                    rx.poll_recv(cx)
                        .map(|b| b.map(|b| Ok::<_, Infallible>(http_body::Frame::data(b))))
                });
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(http_body_util::StreamBody::new(stream).boxed_unsync())
                    .unwrap()
            }
            ("GET", None) => {
                let items: Vec<Value> = s
                    .objects
                    .iter()
                    .filter(|((r, n, _), _)| *r == res && ns.as_ref().is_none_or(|ns| ns == n))
                    .map(|(_, v)| v.clone())
                    .collect();
                respond(
                    StatusCode::OK,
                    &json!({"kind": res.list_kind, "apiVersion": "v1", "metadata": {"resourceVersion": s.version.to_string()}, "items": items}),
                )
            }
            ("GET", Some(name)) => {
                match s.objects.get(&(res, ns.unwrap_or_default(), name.clone())) {
                    Some(obj) => respond(StatusCode::OK, obj),
                    None => status_error(
                        404,
                        "NotFound",
                        &format!("{} \"{name}\" not found", res.plural),
                    ),
                }
            }
            ("POST", None) => {
                let key = (
                    res,
                    ns.clone().unwrap_or_default(),
                    body["metadata"]["name"].as_str().unwrap_or("").to_string(),
                );
                if s.objects.contains_key(&key) {
                    return status_error(409, "AlreadyExists", "already exists");
                }
                drop(s);
                let mut obj = body.clone();
                obj["metadata"]["namespace"] = json!(key.1);
                self.apply(res, obj);
                respond(StatusCode::CREATED, &self.get(res, &key.1, &key.2).unwrap())
            }
            ("PUT", Some(name)) => {
                let key = (res, ns.clone().unwrap_or_default(), name.clone());
                let Some(current) = s.objects.get(&key) else {
                    return status_error(404, "NotFound", "not found");
                };
                if current["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"] {
                    return status_error(409, "Conflict", "the object has been modified");
                }
                drop(s);
                self.apply(res, body.clone());
                respond(StatusCode::OK, &self.get(res, &key.1, &key.2).unwrap())
            }
            ("PATCH", Some(name)) if status_sub => {
                let key = (res, ns.clone().unwrap_or_default(), name.clone());
                let Some(current) = s.objects.get(&key).cloned() else {
                    return status_error(404, "NotFound", "not found");
                };
                drop(s);
                let mut obj = current;
                obj["status"] = body["status"].clone();
                self.apply(res, obj);
                respond(StatusCode::OK, &self.get(res, &key.1, &key.2).unwrap())
            }
            _ => status_error(405, "MethodNotAllowed", &format!("{method} {path}")),
        }
    }
}

/// Changes kept for watches to replay.
const HISTORY: usize = 20_000;

/// The `resourceVersion` parameter of a query string, as a number.
fn resource_version(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("resourceVersion="))
        .and_then(|v| v.parse().ok())
}

fn notify(s: &mut Store, res: Res, namespace: &str, kind: &str, obj: &Value) {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap();
    line.push(b'\n');
    let line = Bytes::from(line);
    let version = s.version;
    if s.history.len() >= HISTORY {
        s.history.pop_front();
    }
    s.history
        .push_back((version, res, namespace.to_string(), line.clone()));
    s.watchers.retain(|w| {
        if w.res != res || w.namespace.as_deref().is_some_and(|n| n != namespace) {
            return !w.tx.is_closed();
        }
        w.tx.send(line.clone()).is_ok()
    });
}

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Object builders.

pub fn va(namespace: &str, name: &str, model: &str, target: Option<&str>, labels: Value) -> Value {
    let mut spec = json!({"modelID": model, "variantCost": "10.0"});
    if let Some(t) = target {
        spec["scaleTargetRef"] = json!({"kind": "Deployment", "name": t});
    }
    json!({
        "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    })
}

pub fn deployment(
    namespace: &str,
    name: &str,
    replicas: i32,
    labels: Value,
    node_selector: Value,
) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "vllm", "image": "vllm"}], "nodeSelector": node_selector}},
        },
        "status": {"replicas": replicas, "readyReplicas": replicas},
    })
}

/// An HPA on a Deployment, with annotations.
pub fn hpa(namespace: &str, name: &str, target: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1, "maxReplicas": 8,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": "wva_desired_replicas", "selector": {"matchLabels": {"variant_name": name}}},
                "target": {"type": "AverageValue", "averageValue": "1"}}}],
        },
    })
}

/// A ScaledObject on a Deployment, with annotations.
pub fn scaled_object(namespace: &str, name: &str, target: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "scaleTargetRef": {"name": target},
            "minReplicaCount": 1, "maxReplicaCount": 5,
            "triggers": [{"type": "prometheus", "metadata": {"query": "wva_desired_replicas", "threshold": "1"}}],
        },
    })
}

/// A LeaderWorkerSet of `groups` groups of `size` pods, all ready, with its accelerator.
pub fn leader_worker_set(namespace: &str, name: &str, groups: i32, size: i32, gpu: &str) -> Value {
    let template = json!({"spec": {"containers": [{"name": "vllm", "image": "vllm"}], "nodeSelector": {"nvidia.com/gpu.product": gpu}}});
    json!({
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": groups, "leaderWorkerTemplate": {"size": size, "leaderTemplate": template, "workerTemplate": template}},
        "status": {"replicas": groups, "readyReplicas": groups},
    })
}

/// Pod `index` (0 leads) of group `group` of a LeaderWorkerSet, labelled as LWS labels them.
pub fn group_pod(namespace: &str, lws: &str, group: usize, index: usize) -> Value {
    let name = if index == 0 {
        format!("{lws}-{group}")
    } else {
        format!("{lws}-{group}-{index}")
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {
            "leaderworkerset.sigs.k8s.io/name": lws,
            "leaderworkerset.sigs.k8s.io/group-index": group.to_string(),
            "leaderworkerset.sigs.k8s.io/worker-index": index.to_string(),
        }},
    })
}

/// A pod owned by the Deployment through its ReplicaSet `<deployment>-abc12`.
pub fn pod(namespace: &str, deployment: &str, index: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{deployment}-abc12-{index}"), "namespace": namespace,
            "labels": {"app": deployment, "pod-template-hash": "abc12"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-abc12"), "uid": "rs", "controller": true}],
        },
    })
}

/// A ready node offering `gpus` accelerators of type `product` (the GPU feature discovery label).
pub fn gpu_node(name: &str, product: &str, gpus: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product}},
        "status": {
            "allocatable": {"cpu": "64", "nvidia.com/gpu": gpus.to_string()},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

/// `pod`, running on `node` and holding `gpus` accelerators.
pub fn on_node(mut pod: Value, node: &str, gpus: u32) -> Value {
    pod["spec"] = json!({
        "nodeName": node,
        "containers": [{"name": "c", "image": "vllm", "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}],
    });
    pod["status"] = json!({"phase": "Running"});
    pod
}

pub fn config_map(namespace: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data})
}

/// A metrics source for controller tests: every live pod of a managed Deployment reports
/// KV-cache use 0.3, an empty queue and 8 running requests, for the model `model_of(deployment)`.
pub fn scripted_metrics(model_of: fn(&str) -> &'static str) -> wva::controller::MetricsSource {
    scripted_signals(model_of, 0.3, 0.0)
}

/// A metrics source giving every indexed pod this KV-cache use and waiting queue.
pub fn scripted_signals(
    model_of: fn(&str) -> &'static str,
    kv: f64,
    waiting: f64,
) -> wva::controller::MetricsSource {
    use wva_actors::messages::{Metrics, MetricsSnapshot, ModelKey, PodSample};
    Arc::new(move |_plan, pods| {
        let mut snapshot = MetricsSnapshot::default();
        for ((ns, pod), deployment) in pods {
            snapshot
                .by_model
                .entry(ModelKey::new(ns, model_of(&deployment)))
                .or_default()
                .push(PodSample {
                    pod,
                    deployment,
                    kv_cache_usage: Some(kv),
                    queue_length: Some(waiting),
                    running: Some(8.0),
                    serving: None,
                });
        }
        Box::pin(async move {
            wva::poller::PollReport {
                metrics: Metrics::Read(Arc::new(snapshot)),
                kv_sources: Vec::new(),
                warnings: Vec::new(),
                failures: Vec::new(),
            }
        })
    })
}

/// A metrics source whose every read fails, as when Prometheus is down.
pub fn failing_metrics() -> wva::controller::MetricsSource {
    Arc::new(|_plan, _pods| {
        Box::pin(async {
            wva::poller::PollReport {
                metrics: wva_actors::messages::Metrics::Failed(
                    "Prometheus unreachable: connection refused".into(),
                ),
                kv_sources: Vec::new(),
                warnings: Vec::new(),
                failures: Vec::new(),
            }
        })
    })
}
