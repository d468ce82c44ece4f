//! The control plane's manifests (`gantry kube manifests`): every object valid for Kubernetes
//! 1.30 and 1.33 (`kubernetes-validate --strict`, warnings fail) with each option, least
//! privilege in the Role and the pod, the golden file, the YAML read back by a real YAML
//! parser, and clear refusals.

#[path = "../../../testing/kube.rs"]
mod kube;
#[path = "../../../testing/skip.rs"]
mod skip;

use std::collections::BTreeSet;
use std::process::Command;

use gantry_kube::control_plane::{
    self, ControlPlane, HEALTH_PATH, ServiceType, Storage, manifests, to_yaml,
};
use gantry_kube::job::ArtifactEgress;
use serde_json::{Value, json};

const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn control_plane() -> ControlPlane {
    let image = format!("registry.example.com/gantry/builtin@{DIGEST}");
    let mut cp = ControlPlane::new(&image, &image, "s3://ml-artifacts/gantry");
    cp.namespace = "ml-team".into();
    cp.store = ArtifactEgress {
        cidrs: vec!["10.96.12.5/32".into()],
        ports: vec![9000],
    };
    cp
}

fn yaml(cp: &ControlPlane) -> String {
    to_yaml(&manifests(cp).expect("manifests"))
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {docs:#?}"))
}

fn server(docs: &[Value]) -> &Value {
    &find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn the_control_plane_is_valid_kubernetes_with_every_option() {
    let plain = control_plane();
    let mut claim = control_plane();
    claim.name = "gantry-prod".into();
    claim.storage = Storage::NewClaim {
        name: "gantry-home".into(),
        size_bytes: 20 << 30,
        storage_class: Some("standard".into()),
    };
    claim.service_type = ServiceType::NodePort(Some(30080));
    claim.image_pull_secrets = vec!["registry-credentials".into(), "mirror.creds".into()];
    claim.public_url = Some("https://gantry.example.com".into());
    claim.extra_args = vec!["--cpus".into(), "64".into()];
    let mut existing = control_plane();
    existing.storage = Storage::ExistingClaim("gantry-home".into());
    existing.service_type = ServiceType::LoadBalancer;
    existing.database = ArtifactEgress {
        cidrs: vec!["10.20.0.0/16".into(), "fd00:10::/64".into()],
        ports: vec![5432, 6432],
    };
    existing.api_server = ArtifactEgress {
        cidrs: vec!["172.18.0.2/32".into()],
        ports: vec![6443],
    };
    existing.registries.ports.clear();
    let mut sized = control_plane();
    sized.storage = Storage::EmptyDir {
        size_limit_bytes: Some(10 << 30),
    };
    sized.service_type = ServiceType::NodePort(None);
    sized.namespace = "1team".into();
    let all = [plain, claim, existing, sized];
    let texts: Vec<String> = all.iter().map(yaml).collect();
    let named: Vec<(String, &str)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("control-plane-{i}.yaml"), t.as_str()))
        .collect();
    let inputs: Vec<(&str, &str)> = named.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    if let Some(verdict) = kube::validate_kubernetes_many(&inputs)
        && let Err(report) = verdict
    {
        panic!("{report}");
    }
    // What each option changed.
    let docs = manifests(&all[1]).expect("claim");
    let pvc = find(&docs, "PersistentVolumeClaim");
    assert_eq!(
        pvc["spec"]["resources"]["requests"]["storage"],
        "21474836480"
    );
    assert_eq!(pvc["spec"]["storageClassName"], "standard");
    let pod = &find(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "gantry-home"
    );
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "registry-credentials"}, {"name": "mirror.creds"}])
    );
    let svc = find(&docs, "Service");
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30080);
    let c = server(&docs);
    assert_eq!(
        env(c, "GANTRY_KUBE_PULL_SECRETS").expect("pull secrets")["value"],
        "registry-credentials,mirror.creds"
    );
    let cmd: Vec<&str> = c["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        cmd.ends_with(&["--public-url", "https://gantry.example.com", "--cpus", "64"]),
        "{cmd:?}"
    );
    let docs = manifests(&all[2]).expect("existing");
    assert!(docs.iter().all(|d| d["kind"] != "PersistentVolumeClaim"));
    assert_eq!(find(&docs, "Service")["spec"]["type"], "LoadBalancer");
    let egress = &find(&docs, "NetworkPolicy")["spec"]["egress"];
    assert!(
        egress.as_array().expect("egress").iter().all(|r| r["ports"]
            .as_array()
            .is_none_or(|ps| ps.iter().all(|p| p["port"] != 443))),
        "no registries, the API server on 6443: nothing on 443 {egress:#}"
    );
    let docs = manifests(&all[3]).expect("sized");
    assert_eq!(
        find(&docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"],
        "10737418240"
    );
    assert!(
        find(&docs, "Service")["spec"]["ports"][0]
            .get("nodePort")
            .is_none()
    );
}

#[test]
fn the_role_holds_exactly_what_the_server_calls_in_its_namespace() {
    let docs = manifests(&control_plane()).expect("manifests");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Service",
            "NetworkPolicy",
            "Deployment"
        ]
    );
    assert!(
        docs.iter()
            .all(|d| !d["kind"].as_str().unwrap_or("").starts_with("Cluster")),
        "nothing cluster-wide"
    );
    for d in &docs {
        assert_eq!(d["metadata"]["namespace"], "ml-team", "{d:#}");
        assert_eq!(
            d["metadata"]["labels"],
            json!({
                "app.kubernetes.io/component": "control-plane",
                "app.kubernetes.io/instance": "gantry",
                "app.kubernetes.io/managed-by": "gantry",
                "app.kubernetes.io/name": "gantry",
            })
        );
        // The step runtime's reaper deletes NetworkPolicies of dead owners: none here.
        assert!(d["metadata"].get("annotations").is_none(), "{d:#}");
    }
    let role = find(&docs, "Role");
    let mut rules = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let obj = rule.as_object().expect("rule");
        let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["apiGroups", "resources", "verbs"]),
            "no resourceNames or nonResourceURLs: {rule}"
        );
        for group in rule["apiGroups"].as_array().expect("groups") {
            for resource in rule["resources"].as_array().expect("resources") {
                for verb in rule["verbs"].as_array().expect("verbs") {
                    let (g, r, v) = (
                        group.as_str().expect("group"),
                        resource.as_str().expect("resource"),
                        verb.as_str().expect("verb"),
                    );
                    assert!(
                        !g.contains('*') && !r.contains('*') && !v.contains('*'),
                        "{rule}"
                    );
                    assert!(rules.insert(format!("{g}/{r}:{v}")), "twice: {g}/{r}:{v}");
                }
            }
        }
    }
    let mut want = BTreeSet::new();
    let mut grant = |g: &str, r: &str, verbs: &[&str]| {
        for v in verbs {
            want.insert(format!("{g}/{r}:{v}"));
        }
    };
    grant(
        "batch",
        "jobs",
        &["create", "get", "list", "watch", "delete"],
    );
    grant("", "pods", &["get", "list", "watch"]);
    grant("", "pods/log", &["get"]);
    grant(
        "networking.k8s.io",
        "networkpolicies",
        &["create", "get", "list", "delete"],
    );
    let replicas = ["create", "get", "list", "watch", "patch", "delete"];
    grant("apps", "deployments", &replicas);
    grant("", "services", &replicas);
    assert_eq!(rules, want, "no Secrets, no exec, nothing else");
    let binding = find(&docs, "RoleBinding");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gantry"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "gantry", "namespace": "ml-team"}])
    );
    assert_eq!(
        find(&docs, "ServiceAccount")["automountServiceAccountToken"],
        false
    );
}

#[test]
fn the_server_pod_runs_least_privileged_with_health_probes() {
    let docs = manifests(&control_plane()).expect("manifests");
    let deploy = find(&docs, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(deploy["spec"]["strategy"], json!({"type": "Recreate"}));
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "gantry");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["enableServiceLinks"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65534);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none());
    let c = server(&docs);
    assert_eq!(
        c["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": 65534,
            "runAsNonRoot": true,
            "runAsUser": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
    assert_eq!(
        c["command"],
        json!([
            "/opt/gantry/bin/gantry",
            "server",
            "--auth",
            "--listen",
            "0.0.0.0:8080",
            "--runtime",
            "kubernetes"
        ])
    );
    assert_eq!(c["resources"]["requests"], c["resources"]["limits"]);
    assert_eq!(
        c["resources"]["limits"],
        json!({"cpu": "1000m", "memory": "2147483648"})
    );
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(
            c[probe]["httpGet"],
            json!({"path": HEALTH_PATH, "port": "http", "scheme": "HTTP"}),
            "{probe}"
        );
    }
    assert_eq!(HEALTH_PATH, "/healthz");
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 8080, "name": "http", "protocol": "TCP"}])
    );
    // The environment: the database URL from its own Secret, the store's keys from theirs,
    // the rest plain.
    assert_eq!(
        env(c, "GANTRY_DB").expect("db")["valueFrom"],
        json!({"secretKeyRef": {"key": "GANTRY_DB", "name": "gantry-db", "optional": false}})
    );
    assert_eq!(
        c["envFrom"],
        json!([{"secretRef": {"name": "gantry-artifacts", "optional": false}}])
    );
    assert_eq!(
        env(c, "GANTRY_KUBE_NAMESPACE").expect("ns")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    for (name, value) in [
        ("GANTRY_HOME", "/var/lib/gantry"),
        ("GANTRY_ARTIFACTS", "s3://ml-artifacts/gantry"),
        (
            "GANTRY_KUBE_BUILTIN_IMAGE",
            &format!("registry.example.com/gantry/builtin@{DIGEST}"),
        ),
        ("GANTRY_KUBE_ARTIFACTS_SECRET", "gantry-artifacts"),
        ("GANTRY_KUBE_STORE_CIDRS", "10.96.12.5/32"),
        ("GANTRY_KUBE_STORE_PORTS", "9000"),
    ] {
        assert_eq!(env(c, name).expect(name)["value"], value, "{name}");
    }
    assert!(env(c, "GANTRY_KUBE_PULL_SECRETS").is_none());
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert_eq!(mounts, ["/var/lib/gantry", "/tmp"]);
    assert_eq!(
        pod["volumes"],
        json!([{"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}])
    );
    // The Service and the policy.
    let svc = find(&docs, "Service");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}])
    );
    assert_eq!(
        svc["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    let policy = find(&docs, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{"ports": [{"port": 8080, "protocol": "TCP"}]}])
    );
    let egress = policy["spec"]["egress"].as_array().expect("egress");
    let ports = |r: &Value| -> Vec<i64> {
        r["ports"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["port"].as_i64()).collect())
            .unwrap_or_default()
    };
    assert_eq!(ports(&egress[0]), [53, 53], "DNS");
    assert_eq!(ports(&egress[1]), [443, 6443], "the API server");
    assert_eq!(ports(&egress[2]), [5432], "PostgreSQL");
    assert_eq!(ports(&egress[3]), [9000], "the store");
    assert_eq!(
        egress[3]["to"],
        json!([{"ipBlock": {"cidr": "10.96.12.5/32"}}])
    );
    assert_eq!(ports(&egress[4]), [443], "registries");
    assert_eq!(
        egress[5]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "model-replica"
    );
    assert_eq!(egress.len(), 6);
}

#[test]
fn the_control_plane_matches_its_golden_file() {
    let text = yaml(&control_plane());
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/control-plane.yaml");
    if std::env::var_os("GANTRY_BLESS").is_some() {
        std::fs::write(&golden, &text).expect("write golden");
    }
    let want = std::fs::read_to_string(&golden)
        .expect("tests/golden/control-plane.yaml (GANTRY_BLESS=1 writes it)");
    assert_eq!(
        text, want,
        "the control plane changed: review it, then GANTRY_BLESS=1 to accept"
    );
}

/// PyYAML (YAML 1.1, as kubectl's parser) reads back exactly the JSON the objects are.
#[test]
fn the_yaml_reads_back_as_the_same_objects() {
    let Some(python) = skip::unless_env(
        kube::JSONSCHEMA_PYTHON_ENV,
        "a python with PyYAML (the .venv-test of scripts/test.sh)",
    ) else {
        return;
    };
    let mut cp = control_plane();
    cp.public_url = Some("https://gantry.example.com:8443/a b?c=#d".into());
    cp.extra_args = vec![
        "--allow-fetch".into(),
        "10.0.0.0/8".into(),
        "--allow-network".into(),
        "*".into(),
        "--gc-interval".into(),
        "on".into(),
        "yes".into(),
        "0x1F".into(),
        "1:20".into(),
        "~".into(),
        "".into(),
        "- x".into(),
        "'q'".into(),
        "é ü\t\u{1}".into(),
    ];
    let mut docs = manifests(&cp).expect("manifests");
    docs.push(json!({"odd": [[1, [2, []]], {}, null, true, 1.5, -3, "null"], "@key": {"": ""}}));
    let text = to_yaml(&docs);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("docs.yaml");
    std::fs::write(&path, &text).expect("write");
    let out = Command::new(&python)
        .args([
            "-c",
            "import sys, json, yaml\nprint(json.dumps(list(yaml.safe_load_all(open(sys.argv[1], encoding='utf-8')))))",
        ])
        .arg(&path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back: Value = serde_json::from_slice(&out.stdout).expect("json from python");
    assert_eq!(back, Value::Array(docs), "{text}");
}

#[test]
fn what_kubernetes_or_the_server_would_refuse_is_refused_clearly() {
    let refused = |change: &dyn Fn(&mut ControlPlane), want: &str| {
        let mut cp = control_plane();
        change(&mut cp);
        let err = manifests(&cp).expect_err(want);
        assert!(err.contains(want), "{err:?} should say {want:?}");
    };
    refused(
        &|cp| cp.image = "registry.example.com/gantry/builtin:v1".into(),
        "image \"registry.example.com/gantry/builtin:v1\" must be pinned by digest",
    );
    refused(
        &|cp| cp.builtin_image = "builtin@sha256:abc".into(),
        "builtin image \"builtin@sha256:abc\" must be pinned by digest",
    );
    refused(
        &|cp| cp.namespace = "ML_Team".into(),
        "namespace \"ML_Team\" is not a valid namespace name",
    );
    refused(&|cp| cp.namespace = String::new(), "namespace \"\"");
    refused(
        &|cp| cp.name = "Gantry".into(),
        "name \"Gantry\" is not a valid name",
    );
    refused(
        &|cp| cp.artifacts = "/var/lib/gantry/artifacts".into(),
        "must be an S3 location",
    );
    refused(
        &|cp| cp.artifacts = "s3://".into(),
        "must be an S3 location",
    );
    refused(
        &|cp| cp.artifacts_secret = "gantry-db".into(),
        "keep GANTRY_DB in a Secret of its own",
    );
    refused(
        &|cp| cp.db_secret = "Gantry DB".into(),
        "db secret \"Gantry DB\" is not a valid Secret name",
    );
    refused(
        &|cp| cp.image_pull_secrets = vec!["-creds".into()],
        "image pull secret \"-creds\"",
    );
    refused(
        &|cp| cp.service_type = ServiceType::NodePort(Some(8080)),
        "node port 8080 is outside",
    );
    refused(&|cp| cp.memory_bytes = 1 << 20, "below 256 MiB");
    refused(&|cp| cp.cpu_millis = 0, "CPU must be more than 0");
    refused(
        &|cp| cp.store.cidrs = vec!["minio.gantry.svc".into()],
        "store: \"minio.gantry.svc\" is not a CIDR",
    );
    refused(
        &|cp| cp.store.ports.clear(),
        "the store needs at least one port",
    );
    refused(
        &|cp| {
            cp.storage = Storage::NewClaim {
                name: "home".into(),
                size_bytes: 0,
                storage_class: None,
            }
        },
        "size must be more than 0",
    );
    refused(
        &|cp| cp.storage = Storage::ExistingClaim("Home".into()),
        "claim \"Home\"",
    );
    refused(
        &|cp| cp.public_url = Some("gantry.example.com".into()),
        "must start with https://",
    );
    assert!(control_plane::ControlPlane::check(&control_plane()).is_ok());
}

#[test]
fn a_misspelt_field_in_the_control_plane_is_caught_by_the_validator() {
    let text =
        yaml(&control_plane()).replacen("readOnlyRootFilesystem", "readOnlyRootFilesytem", 1);
    let Some(verdict) = kube::validate_kubernetes(&text) else {
        return;
    };
    assert!(verdict.is_err(), "the validator accepted a misspelt field");
}
