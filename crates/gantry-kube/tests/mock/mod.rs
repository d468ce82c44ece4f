//! A Kubernetes API server at the HTTP level, on 127.0.0.1, for the runtime's tests.
//!
//! It keeps Jobs, NetworkPolicies and Pods in memory. Creating a Job makes its first pod; each
//! list of pods plays the next status of that pod's script (the script is chosen by the step's
//! label), and when a pod's script ends with a disruption the Job "controller" makes the next
//! pod. Logs come from the script. Every request is recorded so tests can check what the
//! runtime asked for (delete options included).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const NS: &str = "ns";

/// What one step's pods do: one list of statuses per pod the Job gets.
#[derive(Clone, Debug, Default)]
pub struct Script {
    pub pods: Vec<Vec<Value>>,
    pub log: String,
}

#[derive(Debug, Default)]
pub struct Cluster {
    pub jobs: BTreeMap<String, Value>,
    pub policies: BTreeMap<String, Value>,
    pub pods: BTreeMap<String, Value>,
    /// Pod → (job, incarnation, index of the status it shows).
    progress: HashMap<String, (String, usize, usize)>,
    pub scripts: HashMap<String, Script>,
    /// `(method, path, query, body)` of every request.
    pub requests: Vec<(String, String, String, String)>,
    /// Every policy ever created (they are deleted at the end of a step).
    pub created_policies: Vec<Value>,
    pub created_jobs: Vec<Value>,
    /// apps/v1 Deployments and v1 Services (model replicas), by name.
    pub deployments: BTreeMap<String, Value>,
    pub services: BTreeMap<String, Value>,
    pub created_deployments: Vec<Value>,
}

pub type Shared = Arc<Mutex<Cluster>>;

pub struct MockApi {
    pub url: String,
    pub cluster: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockApi {
    pub async fn start() -> MockApi {
        let cluster: Shared = Arc::default();
        let app = Router::new()
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs",
                post(create_job).get(list_jobs),
            )
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
                get(get_job).delete(delete_job),
            )
            .route(
                "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
                post(create_policy).get(list_policies),
            )
            .route(
                "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
                axum::routing::delete(delete_policy),
            )
            .route(
                "/apis/apps/v1/namespaces/{ns}/deployments",
                post(create_deployment).get(list_deployments),
            )
            .route(
                "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
                axum::routing::delete(delete_deployment),
            )
            .route(
                "/api/v1/namespaces/{ns}/services",
                post(create_service).get(list_services),
            )
            .route(
                "/api/v1/namespaces/{ns}/services/{name}",
                axum::routing::delete(delete_service),
            )
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .layer(axum::middleware::from_fn_with_state(
                cluster.clone(),
                record,
            ))
            .with_state(cluster.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockApi { url, cluster, task }
    }

    pub fn script(&self, step_label: &str, script: Script) {
        self.lock().scripts.insert(step_label.to_string(), script);
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().expect("lock")
    }

    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("uri"));
        config.default_namespace = NS.into();
        kube::Client::try_from(config).expect("client")
    }

    /// The requests whose method and path match.
    pub fn requests(&self, method: &str, path_part: &str) -> Vec<(String, String)> {
        self.lock()
            .requests
            .iter()
            .filter(|(m, p, _, _)| m == method && p.contains(path_part))
            .map(|(_, _, q, b)| (q.clone(), b.clone()))
            .collect()
    }
}

async fn record(
    State(c): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 24)
        .await
        .unwrap_or_default();
    c.lock().expect("lock").requests.push((
        parts.method.to_string(),
        parts.uri.path().to_string(),
        parts.uri.query().unwrap_or("").to_string(),
        String::from_utf8_lossy(&bytes).into_owned(),
    ));
    let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    next.run(req).await
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Response {
    axum::Json(json!({
        "kind": kind, "apiVersion": api_version,
        "metadata": {"resourceVersion": "1"}, "items": items
    }))
    .into_response()
}

fn matches(selector: Option<&String>, obj: &Value) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels = &obj["metadata"]["labels"];
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k].as_str() == Some(v),
            // A bare key: the label exists.
            None => labels[term].is_string(),
        })
}

/// Which store of the cluster a kind lives in.
fn store_of<'a>(c: &'a mut Cluster, kind: &str) -> &'a mut BTreeMap<String, Value> {
    match kind {
        "Deployment" => &mut c.deployments,
        _ => &mut c.services,
    }
}

fn create_in(c: &Shared, kind: &str, body: &Bytes) -> Response {
    let obj: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut c = c.lock().expect("lock");
    if store_of(&mut c, kind).contains_key(&name) {
        return status(
            409,
            "AlreadyExists",
            &format!("{kind} {name} already exists"),
        );
    }
    let obj = with_meta(obj, &format!("uid-{kind}-{name}"));
    if kind == "Deployment" {
        c.created_deployments.push(obj.clone());
    }
    store_of(&mut c, kind).insert(name, obj.clone());
    (StatusCode::CREATED, axum::Json(obj)).into_response()
}

fn list_in(c: &Shared, kind: &str, q: &HashMap<String, String>) -> Response {
    let mut c = c.lock().expect("lock");
    let items = store_of(&mut c, kind)
        .values()
        .filter(|o| matches(q.get("labelSelector"), o))
        .cloned()
        .collect();
    let (list_kind, version) = if kind == "Deployment" {
        ("DeploymentList", "apps/v1")
    } else {
        ("ServiceList", "v1")
    };
    list(list_kind, version, items)
}

fn delete_in(c: &Shared, kind: &str, name: &str) -> Response {
    match store_of(&mut c.lock().expect("lock"), kind).remove(name) {
        Some(o) => axum::Json(o).into_response(),
        None => status(404, "NotFound", &format!("{kind} {name} not found")),
    }
}

async fn create_deployment(State(c): State<Shared>, body: Bytes) -> Response {
    create_in(&c, "Deployment", &body)
}

async fn list_deployments(
    State(c): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_in(&c, "Deployment", &q)
}

async fn delete_deployment(
    State(c): State<Shared>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    delete_in(&c, "Deployment", &name)
}

async fn create_service(State(c): State<Shared>, body: Bytes) -> Response {
    create_in(&c, "Service", &body)
}

async fn list_services(
    State(c): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_in(&c, "Service", &q)
}

async fn delete_service(
    State(c): State<Shared>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    delete_in(&c, "Service", &name)
}

fn with_meta(mut obj: Value, uid: &str) -> Value {
    obj["metadata"]["uid"] = json!(uid);
    obj["metadata"]["resourceVersion"] = json!("1");
    obj["metadata"]["creationTimestamp"] = json!("2026-12-05T12:00:00Z");
    obj
}

async fn create_job(State(c): State<Shared>, body: Bytes) -> Response {
    let job: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    let name = job["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut c = c.lock().expect("lock");
    if c.jobs.contains_key(&name) {
        return status(
            409,
            "AlreadyExists",
            &format!("jobs.batch \"{name}\" already exists"),
        );
    }
    let job = with_meta(job, &format!("uid-{name}"));
    c.created_jobs.push(job.clone());
    c.jobs.insert(name.clone(), job.clone());
    make_pod(&mut c, &name, 0);
    (StatusCode::CREATED, axum::Json(job)).into_response()
}

/// The Job controller: pod `incarnation` of `job`, from the Job's template.
fn make_pod(c: &mut Cluster, job: &str, incarnation: usize) {
    let Some(j) = c.jobs.get(job) else { return };
    let template = &j["spec"]["template"];
    let step = template["metadata"]["labels"]["gantry.dev/step"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let Some(script) = c.scripts.get(&step) else {
        return;
    };
    if incarnation >= script.pods.len() {
        return;
    }
    let name = format!("{job}-{incarnation}");
    let mut labels = template["metadata"]["labels"].clone();
    labels["job-name"] = json!(job);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": NS, "labels": labels,
            "creationTimestamp": format!("2026-12-05T12:00:{incarnation:02}Z"),
        },
        "spec": template["spec"].clone(),
        "status": {"phase": "Pending"},
    });
    c.progress
        .insert(name.clone(), (job.to_string(), incarnation, 0));
    c.pods.insert(name, pod);
}

async fn get_job(State(c): State<Shared>, Path((_ns, name)): Path<(String, String)>) -> Response {
    match c.lock().expect("lock").jobs.get(&name) {
        Some(j) => axum::Json(j.clone()).into_response(),
        None => status(404, "NotFound", &format!("jobs.batch \"{name}\" not found")),
    }
}

async fn list_jobs(State(c): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let c = c.lock().expect("lock");
    let items = c
        .jobs
        .values()
        .filter(|j| matches(q.get("labelSelector"), j))
        .cloned()
        .collect();
    list("JobList", "batch/v1", items)
}

async fn delete_job(
    State(c): State<Shared>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    let mut c = c.lock().expect("lock");
    match c.jobs.remove(&name) {
        Some(job) => {
            c.pods
                .retain(|_, p| p["metadata"]["labels"]["job-name"] != json!(name));
            axum::Json(job).into_response()
        }
        None => status(404, "NotFound", &format!("jobs.batch \"{name}\" not found")),
    }
}

async fn create_policy(State(c): State<Shared>, body: Bytes) -> Response {
    let policy: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    let name = policy["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut c = c.lock().expect("lock");
    if c.policies.contains_key(&name) {
        return status(409, "AlreadyExists", "exists");
    }
    let policy = with_meta(policy, &format!("uid-np-{name}"));
    c.created_policies.push(policy.clone());
    c.policies.insert(name, policy.clone());
    (StatusCode::CREATED, axum::Json(policy)).into_response()
}

async fn list_policies(
    State(c): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let c = c.lock().expect("lock");
    let items = c
        .policies
        .values()
        .filter(|p| matches(q.get("labelSelector"), p))
        .cloned()
        .collect();
    list("NetworkPolicyList", "networking.k8s.io/v1", items)
}

async fn delete_policy(
    State(c): State<Shared>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    match c.lock().expect("lock").policies.remove(&name) {
        Some(p) => axum::Json(p).into_response(),
        None => status(404, "NotFound", "not found"),
    }
}

/// Each list moves every pod one status further along its script.
async fn list_pods(State(c): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut c = c.lock().expect("lock");
    let names: Vec<String> = c.pods.keys().cloned().collect();
    for name in names {
        let Some((job, incarnation, index)) = c.progress.get(&name).cloned() else {
            continue;
        };
        let step = c.pods[&name]["metadata"]["labels"]["gantry.dev/step"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let Some((len, st)) = c
            .scripts
            .get(&step)
            .and_then(|s| s.pods.get(incarnation))
            .map(|statuses| (statuses.len(), statuses.get(index).cloned()))
        else {
            continue;
        };
        if let Some(st) = st {
            if let Some(pod) = c.pods.get_mut(&name) {
                pod["status"] = st.clone();
            }
            c.progress
                .insert(name.clone(), (job.clone(), incarnation, index + 1));
            // The last status of a pod that was disrupted: the controller makes the next one.
            if index + 1 == len
                && st["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "DisruptionTarget"))
            {
                make_pod(&mut c, &job, incarnation + 1);
            }
        }
    }
    let items = c
        .pods
        .values()
        .filter(|p| matches(q.get("labelSelector"), p))
        .cloned()
        .collect();
    list("PodList", "v1", items)
}

async fn pod_log(
    State(c): State<Shared>,
    Path((_ns, name)): Path<(String, String)>,
    method: Method,
) -> Response {
    let _ = method;
    let c = c.lock().expect("lock");
    let Some(pod) = c.pods.get(&name) else {
        return status(404, "NotFound", "no pod");
    };
    let step = pod["metadata"]["labels"]["gantry.dev/step"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let log = c
        .scripts
        .get(&step)
        .map(|s| s.log.clone())
        .unwrap_or_default();
    log.into_response()
}

// Pod statuses for scripts.

pub fn pending() -> Value {
    json!({"phase": "Pending"})
}

pub fn unschedulable(message: &str) -> Value {
    json!({"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message
    }]})
}

pub fn init_waiting(reason: &str, message: &str) -> Value {
    json!({"phase": "Pending", "initContainerStatuses": [{
        "name": "fetch", "image": "registry.test/gantry@sha256:aaaa", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}
    }]})
}

pub fn step_waiting(reason: &str, message: &str) -> Value {
    json!({"phase": "Pending",
        "initContainerStatuses": [init_done()],
        "containerStatuses": [{
            "name": "step", "image": "registry.test/app@sha256:bbbb", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}
    }]})
}

fn init_done() -> Value {
    json!({"name": "fetch", "image": "registry.test/gantry@sha256:aaaa", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}})
}

pub fn init_failed(code: i32, message: &str) -> Value {
    json!({"phase": "Failed", "initContainerStatuses": [{
        "name": "fetch", "image": "registry.test/gantry@sha256:aaaa", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": "Error", "message": message}}
    }]})
}

pub fn running() -> Value {
    json!({"phase": "Running",
        "initContainerStatuses": [init_done()],
        "containerStatuses": [{
            "name": "step", "image": "registry.test/app@sha256:bbbb", "imageID": "", "ready": true,
            "restartCount": 0, "state": {"running": {"startedAt": "2026-12-05T12:00:01Z"}}
    }]})
}

pub fn ended(code: i32, reason: &str, message: Option<&str>) -> Value {
    let mut terminated = json!({"exitCode": code, "reason": reason});
    if let Some(m) = message {
        terminated["message"] = json!(m);
    }
    json!({"phase": if code == 0 { "Succeeded" } else { "Failed" },
        "initContainerStatuses": [init_done()],
        "containerStatuses": [{
            "name": "step", "image": "registry.test/app@sha256:bbbb", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": terminated}
    }]})
}

pub fn pod_failed(reason: &str, message: &str) -> Value {
    json!({"phase": "Failed", "reason": reason, "message": message,
        "initContainerStatuses": [init_done()],
        "containerStatuses": [{
            "name": "step", "image": "registry.test/app@sha256:bbbb", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"running": {"startedAt": "2026-12-05T12:00:01Z"}}
    }]})
}

pub fn disrupted(message: &str) -> Value {
    json!({"phase": "Failed", "reason": "Evicted", "message": message,
        "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "message": message}],
        "initContainerStatuses": [init_done()],
        "containerStatuses": [{
            "name": "step", "image": "registry.test/app@sha256:bbbb", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 143, "reason": "Error"}}
    }]})
}
