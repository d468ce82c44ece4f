use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Run machine-learning pipelines as least-privilege containers.
#[derive(Debug, Parser)]
#[command(name = "gantry", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Where Gantry keeps its database, images, artifacts and scratch space.
    #[arg(long, global = true, env = "GANTRY_HOME")]
    pub home: Option<PathBuf>,
    /// Metadata database URL (default: SQLite in GANTRY_HOME; postgres://… also works).
    #[arg(long, global = true, env = "GANTRY_DB", hide_env_values = true)]
    pub db: Option<String>,
    /// Where artifacts live: s3://bucket/prefix (AWS settings from the environment or
    /// ~/.aws; AWS_ENDPOINT_URL for MinIO, Ceph, moto) or a directory (default:
    /// GANTRY_HOME/artifacts).
    #[arg(
        long,
        global = true,
        env = "GANTRY_ARTIFACTS",
        value_name = "s3://BUCKET/PREFIX|DIR"
    )]
    pub artifacts: Option<String>,
    /// OCI runtime binary: runc (default), crun, youki, or a path.
    #[arg(long, global = true, env = "GANTRY_RUNTIME", default_value = "runc")]
    pub runtime: String,
    /// Talk to a `gantry server` at this URL instead of GANTRY_HOME (run, runs, show, logs,
    /// artifacts, artifact get, models, model show, model alias, deploy, promote, rollback,
    /// undeploy, deployments, monitor, feedback, token, audit).
    #[arg(long, global = true, env = "GANTRY_SERVER")]
    pub server: Option<String>,
    /// Bearer token for a server started with --auth.
    #[arg(long, global = true, env = "GANTRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A registry (`host` or `host:port`) that may be reached over plain HTTP; loopback
    /// registries always may. Repeatable, or comma-separated in the environment.
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "GANTRY_INSECURE_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub insecure_registries: Vec<String>,
    /// The image trust policy (default: GANTRY_HOME/policy.yaml when it exists).
    #[arg(long, global = true, env = "GANTRY_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Log format for Gantry's own diagnostics on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a pipeline file without running anything.
    Validate {
        file: PathBuf,
        /// Override a parameter: -p name=value (repeatable).
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Run a pipeline.
    Run(RunArgs),
    /// Export a pipeline to another orchestrator: an Argo Workflow (`--target argo`) or a
    /// Kubeflow Pipelines v2 pipeline spec (`--target kfp`), YAML on stdout or in --out. Steps
    /// keep Gantry's contract there: inputs and outputs by digest in the S3 store given by
    /// --artifacts / GANTRY_ARTIFACTS.
    Compile(CompileArgs),
    /// Gantry on Kubernetes.
    #[command(subcommand)]
    Kube(KubeCommand),
    /// Run a recorded run again: same spec snapshot, image digests, params and input data.
    Rerun {
        run: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// List runs, newest first.
    Runs {
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Show a run: steps, status, exit codes, cache hits, usage, artifacts, metrics.
    Show {
        run: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Cancel a run: a queued one leaves the queue without running, a running one has its
    /// steps stopped (recorded as cancelled). Through --server for runs a server executes.
    Cancel { run: String },
    /// Print a run's logs (optionally one step's); --follow waits for more.
    Logs {
        run: String,
        step: Option<String>,
        /// Wait for more lines until the run ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last N lines (of those --grep keeps), then any new ones with --follow.
        #[arg(long, short = 'n', value_name = "N")]
        tail: Option<u64>,
        /// Only lines matching this regular expression (Rust `regex` syntax).
        #[arg(long, short = 'g', value_name = "RE")]
        grep: Option<String>,
        /// Only lines captured since a duration ago (`10m`, `2h`) or a time
        /// (`2026-12-05T08:00:00Z`); to the 200 ms in which lines are batched.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
    },
    /// List the artifacts a run consumed and produced.
    Artifacts {
        run: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Work with one artifact.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// List images.
    Images {
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Work with images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Store credentials for a registry (GANTRY_HOME/auth.json, mode 0600). The password is
    /// read from --password-stdin, else asked for on the terminal.
    Login {
        registry: String,
        #[arg(long, short = 'u')]
        username: String,
        /// Read the password (or token) from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the credentials `gantry login` stored for a registry.
    Logout { registry: String },
    /// Signing keys for images.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The offline vulnerability database images are scanned against.
    #[command(subcommand)]
    Vulndb(VulndbCommand),
    /// List registered models.
    Models {
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Work with one registered model.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Create or change a deployment: which model versions serve under NAME, with canary and
    /// shadow, replicas, resources, prediction logging and monitoring. Flags left out keep
    /// their current value.
    Deploy(DeployArgs),
    /// Make a deployment's canary its primary model (it then takes all traffic).
    Promote {
        name: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Put a deployment back in the state before its last change.
    Rollback {
        name: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Stop serving a deployment (its revisions stay for the record).
    Undeploy {
        name: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// List deployments, or show one (NAME) with its replicas and revisions.
    Deployments {
        name: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Show a deployment's monitor, computed now: drift against the reference profile,
    /// performance over feedback labels, latency, errors and alerts.
    Monitor {
        name: String,
        /// Drift per hour instead of now: each hour's samples, prediction PSI and the features
        /// with the highest PSI, from the monitor's hourly buckets.
        #[arg(long)]
        history: bool,
        /// With --history: how many hours back (1–2160).
        #[arg(long, default_value_t = 72, requires = "history")]
        hours: i64,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Compare two data sets offline: the drift of every column of CURRENT against
    /// REFERENCE with the live monitor's statistics (PSI, Jensen–Shannon, KS, chi²), table
    /// and verdict. REFERENCE is a CSV, a `builtin/profile` JSON or a dataset directory;
    /// CURRENT a CSV or a dataset directory. Exit codes: 0 compared, 1 drift with
    /// --fail-on-drift, 2 bad input (CSV problems as file:line), 3 missing file or artifact.
    Drift(DriftArgs),
    /// Send ground truth for logged predictions: `feedback NAME REQUEST_ID LABEL` or
    /// `feedback NAME --file labels.jsonl`.
    Feedback(FeedbackArgs),
    /// Serve a registered model over the Open Inference Protocol v2 (no auth: loopback only).
    // `--version` names the model version here, not gantry's.
    #[command(disable_version_flag = true)]
    Serve(ServeArgs),
    /// Write an example project (real data) and run the whole workflow on it:
    /// ingest → profile → validate → clean → split → training sweep → select-best →
    /// evaluate → register.
    Demo {
        /// Where to write the example project.
        #[arg(long, default_value = "gantry-demo")]
        dir: PathBuf,
        /// Overwrite demo files that were edited.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Serve the REST API, the MLflow-compatible API and /metrics, running submitted
    /// pipelines on this machine.
    Server(ServerArgs),
    /// Manage API tokens (on GANTRY_HOME's store, or through --server as an admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Remove what no kept run, registered model version or deployment needs: artifacts,
    /// scratch directories of finished runs, logs and built-in images of runs past the
    /// retention, unused image files. Safe while runs execute; audited through --server.
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Keep runs that ended less than this long ago (and everything they use).
        #[arg(long, value_name = "DURATION", default_value = crate::gc::DEFAULT_OLDER_THAN)]
        older_than: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Show what uses the disk (artifacts, images, logs, scratch, database) and what gc
    /// would free.
    Df {
        #[arg(long, value_name = "DURATION", default_value = crate::gc::DEFAULT_OLDER_THAN)]
        older_than: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// What runs and deployments used and cost: CPU, memory and GPU hours requested and used,
    /// cache hits and what they saved, at the prices of GANTRY_HOME/config.yaml.
    Usage {
        /// Start of the window: a duration ago (7d, 12h) or a time (2026-12-01T00:00:00Z).
        #[arg(long, value_name = "DURATION|TIME", default_value = "7d")]
        since: String,
        /// End of the window (default: now).
        #[arg(long, value_name = "DURATION|TIME")]
        until: Option<String>,
        /// Group by project, pipeline, step, deployment or user.
        #[arg(long, default_value = "project")]
        by: String,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Recommend CPU and memory for each step of a pipeline from what its past runs used
    /// (p95 of peak memory and of cores used, × 1.2); --write patches the file.
    Recommend {
        file: PathBuf,
        /// Parameter overrides (k=v), as for `gantry run`: the steps' commands decide which
        /// history is theirs.
        #[arg(short = 'p', long = "param", value_name = "K=V")]
        params: Vec<String>,
        /// Write the recommendations into FILE (comments and layout kept).
        #[arg(long)]
        write: bool,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Show a server's queue: the runs and steps waiting for admission, in the order they
    /// will be considered, and why each waits (which quota or capacity is short); each
    /// project's use against its quota. Needs --server / GANTRY_SERVER.
    Queue {
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Projects' quotas on a server (admins set them).
    #[command(subcommand)]
    Project(ProjectCommand),
    /// List this machine's NVIDIA GPUs (model, memory, MIG mode, driver) and the running
    /// steps that hold GPUs.
    Gpus {
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Show the audit log of writes made through the server, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Print a bundled example data set as CSV (iris, breast_cancer, diabetes).
    Dataset { name: String },
    /// OCI hooks runc calls for the engine (not for people).
    #[command(subcommand, hide = true)]
    Hook(HookCommand),
    /// Inside a Kubernetes step pod: fetch the step's inputs (the init container).
    #[command(hide = true)]
    StepFetch,
    /// Inside a Kubernetes step pod: run the step's command as PID 1, then upload its outputs
    /// and report (the step container).
    #[command(hide = true)]
    StepExec {
        /// Stop the command after this long (SIGTERM, then SIGKILL after --grace-ms).
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long, default_value_t = 10_000)]
        grace_ms: u64,
        /// Also write each output's digest to DIR/<output> (workflow engines read them).
        #[arg(long)]
        digests_dir: Option<PathBuf>,
        /// Write one output's digest to a file of its own: OUTPUT=PATH (repeatable; Kubeflow
        /// Pipelines' output parameter files).
        #[arg(long, value_name = "OUTPUT=PATH")]
        digest_file: Vec<String>,
        /// The step plan as JSON, instead of GANTRY_STEP_PLAN (for workflow engines that
        /// substitute only arguments).
        #[arg(long)]
        plan: Option<String>,
        /// Fetch the plan's inputs first, in this process (no separate init container).
        #[arg(long)]
        fetch: bool,
        /// Set a variable for the command: KEY=VALUE (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The step's position in the plan and its name, SEQ:NAME (Kubeflow Pipelines with
        /// reports): sets GANTRY_STEP and GANTRY_STEP_SEQ as --env would.
        #[arg(long, value_name = "SEQ:NAME")]
        step: Option<String>,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// An exported workflow's exit handler (`gantry compile --report-to`): tell the Gantry
    /// server how the workflow ended. Never fails; says in its log what went wrong.
    #[command(hide = true)]
    StepEnd {
        /// The workflow's status (Argo's `{{workflow.status}}`).
        #[arg(
            long,
            required_unless_present = "kfp_status",
            conflicts_with = "kfp_status"
        )]
        status: Option<String>,
        /// What failed (Argo's `{{workflow.failures}}`, a JSON list).
        #[arg(long)]
        failures: Option<String>,
        /// KFP's final status of the pipeline's tasks, as JSON (`PipelineTaskFinalStatus`).
        #[arg(long)]
        kfp_status: Option<String>,
        /// The plan as JSON, instead of GANTRY_STEP_PLAN.
        #[arg(long)]
        plan: Option<String>,
    },
    /// Run a built-in component (this is what `uses: builtin/<name>` steps execute
    /// inside their container).
    #[command(hide = true)]
    Component {
        name: String,
        /// The step's `with:` values as a JSON object.
        #[arg(long, default_value = "{}")]
        with: String,
        #[arg(long, default_value = "/gantry/inputs")]
        inputs: PathBuf,
        #[arg(long, default_value = "/gantry/outputs")]
        outputs: PathBuf,
        #[arg(long, default_value = "/gantry/metrics.json")]
        metrics: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KubeCommand {
    /// Print the control plane's manifests (ServiceAccount, Role, RoleBinding, Service,
    /// NetworkPolicy, Deployment running `gantry server --auth --runtime kubernetes`) as YAML
    /// for `kubectl apply -f -`. The artifacts are --artifacts / GANTRY_ARTIFACTS (S3).
    Manifests(Box<KubeManifestsArgs>),
}

#[derive(Debug, clap::Args)]
pub struct KubeManifestsArgs {
    #[arg(long, env = "GANTRY_KUBE_NAMESPACE", default_value = "gantry")]
    pub namespace: String,
    /// The name of every object.
    #[arg(long, default_value = "gantry")]
    pub name: String,
    /// The built-in image in a registry, by digest: steps' fetch and built-in steps.
    #[arg(long, env = "GANTRY_KUBE_BUILTIN_IMAGE")]
    pub builtin_image: String,
    /// The server's image, by digest (default: the built-in image, a static gantry).
    #[arg(long)]
    pub image: Option<String>,
    /// The Secret holding GANTRY_DB (the server's only).
    #[arg(long, default_value = "gantry-db")]
    pub db_secret: String,
    /// The Secret holding the store's AWS_* keys (the server's and every step pod's).
    #[arg(
        long,
        env = "GANTRY_KUBE_ARTIFACTS_SECRET",
        default_value = "gantry-artifacts"
    )]
    pub artifacts_secret: String,
    /// clusterip, nodeport or loadbalancer.
    #[arg(long, default_value = "clusterip")]
    pub service_type: String,
    #[arg(long)]
    pub node_port: Option<u16>,
    #[arg(long, default_value_t = 80)]
    pub service_port: u16,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The server's CPU (requests = limits).
    #[arg(long, default_value = "1")]
    pub cpu: String,
    #[arg(long, default_value = "2Gi")]
    pub memory: String,
    /// GANTRY_HOME on this PersistentVolumeClaim (made here with --home-size).
    #[arg(long)]
    pub home_claim: Option<String>,
    #[arg(long)]
    pub home_size: Option<String>,
    #[arg(long)]
    pub storage_class: Option<String>,
    /// GANTRY_HOME on an emptyDir of at most this size.
    #[arg(long)]
    pub home_size_limit: Option<String>,
    /// The artifact store's addresses and ports (egress of the server and of step pods).
    #[arg(
        long = "store-cidr",
        env = "GANTRY_KUBE_STORE_CIDRS",
        value_delimiter = ','
    )]
    pub store_cidrs: Vec<String>,
    #[arg(
        long = "store-port",
        env = "GANTRY_KUBE_STORE_PORTS",
        value_delimiter = ','
    )]
    pub store_ports: Vec<u16>,
    #[arg(long = "db-cidr")]
    pub db_cidrs: Vec<String>,
    #[arg(long = "db-port")]
    pub db_ports: Vec<u16>,
    #[arg(long = "api-cidr")]
    pub api_cidrs: Vec<String>,
    #[arg(long = "api-port")]
    pub api_ports: Vec<u16>,
    #[arg(long = "registry-cidr")]
    pub registry_cidrs: Vec<String>,
    #[arg(long = "registry-port")]
    pub registry_ports: Vec<u16>,
    #[arg(
        long = "pull-secret",
        env = "GANTRY_KUBE_PULL_SECRETS",
        value_delimiter = ','
    )]
    pub pull_secrets: Vec<String>,
    #[arg(long)]
    pub public_url: Option<String>,
    /// More `gantry server` arguments (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    pub file: PathBuf,
    /// argo or kfp.
    #[arg(long)]
    pub target: String,
    /// Override a parameter: -p name=value (repeatable); the exported workflow keeps it as a
    /// parameter with this default unless it shapes the workflow (a matrix, a source).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// The built-in image in a registry, by digest (`gantry image push builtin REF`).
    #[arg(long, env = "GANTRY_KUBE_BUILTIN_IMAGE")]
    pub helper_image: Option<String>,
    /// The Workflow's namespace (Argo).
    #[arg(long, env = "GANTRY_KUBE_NAMESPACE")]
    pub namespace: Option<String>,
    /// The pods' service account (steps never get its token).
    #[arg(long)]
    pub service_account: Option<String>,
    /// The account of Argo's executor (its `wait` container); default: --service-account.
    #[arg(long)]
    pub executor_service_account: Option<String>,
    /// An image pull Secret (repeatable).
    #[arg(long = "pull-secret", value_name = "SECRET")]
    pub pull_secrets: Vec<String>,
    /// A Secret with the store's AWS_* keys, given to the fetch and the wrapper.
    #[arg(long, env = "GANTRY_KUBE_ARTIFACTS_SECRET")]
    pub artifacts_secret: Option<String>,
    /// Accept step images by tag (by default every image must be pinned by digest, so the
    /// workflow runs exactly what was reviewed).
    #[arg(long)]
    pub allow_tags: bool,
    /// The digest of a `path:` or `url:` input stored with `gantry upload`:
    /// STEP/INPUT=sha256:… (repeatable).
    #[arg(long = "input-digest", value_name = "STEP/INPUT=DIGEST")]
    pub input_digests: Vec<String>,
    /// Each step looks up Gantry's cache on this server and reports to it, which records the
    /// workflow's run with its lineage and metrics (the URL the cluster's pods reach).
    #[arg(long, value_name = "URL", requires = "report_token_secret")]
    pub report_to: Option<String>,
    /// The Secret whose key `token` holds an editor token of the pipeline's project, for
    /// --report-to (only the gantry wrapper gets it, never the step's command).
    #[arg(long, value_name = "SECRET", requires = "report_to")]
    pub report_token_secret: Option<String>,
    /// Write the YAML here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// createRuntime hook: tell the engine the step's namespaces exist (OCI state on stdin).
    NetnsReady {
        #[arg(long)]
        socket: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Show a model version: NAME (latest), NAME@VERSION or NAME@ALIAS.
    Show {
        reference: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Register a model file as a new version of NAME: an ONNX model, a built-in model
    /// directory, or a custom image that serves the Open Inference Protocol itself.
    Register(RegisterArgs),
    /// Point ALIAS (e.g. champion, staging) at VERSION of NAME.
    Alias {
        name: String,
        #[arg(value_name = "VERSION")]
        model_version: i64,
        alias: String,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub file: PathBuf,
    /// Override a parameter: -p name=value (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// With --server: never upload `path:` inputs; the server reads each from its data
    /// roots (`gantry server --data-root`). By default local files are uploaded (only
    /// what the server does not hold yet) and paths missing here are left to the server.
    #[arg(long)]
    pub no_upload: bool,
    /// Priority among the project's runs waiting for admission on a server: low, normal or
    /// high (between projects, fair share decides).
    #[arg(long, value_parser = ["low", "normal", "high"], default_value = "normal")]
    pub priority: String,
    /// With --server: print the run id once the server accepted (or queued) the run and
    /// exit, instead of following it.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run every step even when an identical earlier step run is cached.
    #[arg(long)]
    pub no_cache: bool,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    /// CPU capacity for this run's steps, e.g. 2 or 1500m (default: all CPUs).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Memory capacity for this run's steps, e.g. 8Gi (default: 80% of RAM).
    #[arg(long)]
    pub memory: Option<String>,
    /// GPUs steps may use at once (default: the NVIDIA devices found, /dev/nvidiaN).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Keep each step's scratch directory under GANTRY_HOME/work for debugging.
    #[arg(long)]
    pub keep_workdirs: bool,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Copy an artifact out of the store.
    Get {
        digest: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make an ECDSA P-256 key pair: NAME.key (PKCS#8 PEM, mode 0600) and NAME.pub.
    Generate {
        /// Path prefix of the files (default: ./gantry).
        #[arg(default_value = "gantry")]
        name: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VulndbCommand {
    /// Import OSV advisories: osv.dev's per-ecosystem all.zip, a directory of JSON records,
    /// one JSON file, or an http(s) URL of any of these.
    Import {
        source: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// What the database holds: version, records per ecosystem.
    Show {
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a docker-archive (`docker save`), an OCI layout (dir or tar) or a rootfs tar.
    Import {
        path: PathBuf,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Pull an image from a registry (`localhost:5000/team/trainer:1.4`, `…@sha256:…`).
    Pull {
        reference: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Push a stored image (name or digest; `builtin` for the image built-in steps run in) to
    /// a registry under REFERENCE, by digest.
    Push {
        local: String,
        reference: String,
        /// Also copy the signatures kept for the image (see `gantry image sign`).
        #[arg(long)]
        with_signatures: bool,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Sign an image in a registry with a cosign-compatible signature (stored under the tag
    /// `sha256-<hex>.sig` next to it, and kept in GANTRY_HOME).
    Sign {
        reference: String,
        /// The private key (PKCS#8 or SEC1 PEM, e.g. from `gantry key generate`).
        #[arg(long)]
        key: PathBuf,
        /// Sign and keep the signature locally only (push it later with `image push
        /// --with-signatures`).
        #[arg(long)]
        local: bool,
    },
    /// Check an image's cosign signatures with public keys (exit 0 when one verifies).
    Verify {
        reference: String,
        /// A public key (SPKI PEM, cosign.pub). Repeatable: any one verifying is enough.
        #[arg(long, required = true)]
        key: Vec<PathBuf>,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Scan an image for known vulnerabilities with the imported database
    /// (`gantry vulndb import`).
    Scan {
        reference: String,
        /// Exit 1 when a finding is at least this severe (low, medium, high, critical).
        #[arg(long)]
        fail_on: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Remove an image name (and the image once no name is left).
    Rm { reference: String },
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Collect garbage this often (`6h`, `1d`), as `gantry gc` would, each time in the audit
    /// log; off unless given.
    #[arg(long, value_name = "DURATION")]
    pub gc_interval: Option<String>,
    /// The retention of scheduled gc: runs that ended less than this long ago are kept.
    #[arg(long, value_name = "DURATION", default_value = crate::gc::DEFAULT_OLDER_THAN)]
    pub gc_older_than: String,
    /// Address to listen on. Anything but loopback needs --auth.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// A second address with the same API, for the Open Inference Protocol's gRPC clients
    /// (HTTP/2 without TLS; --listen answers gRPC too). Anything but loopback needs --auth.
    #[arg(long)]
    pub grpc_listen: Option<std::net::SocketAddr>,
    /// Require bearer tokens (create them with `gantry token create`).
    #[arg(long)]
    pub auth: bool,
    /// Listen on a non-loopback address without --auth (anyone who can reach it is admin).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// The URL clients reach this server at (default: http://LISTEN).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// CPU capacity for steps, e.g. 2 or 1500m (default: all CPUs).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Memory capacity for steps, e.g. 8Gi (default: 80% of RAM).
    #[arg(long)]
    pub memory: Option<String>,
    /// GPUs steps may use at once (default: the NVIDIA devices found).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// A directory whose files remote runs may name as `path:` inputs: NAME=DIR, or
    /// NAME=DIR:PROJECT[,PROJECT…] for some projects only. Repeatable. Without any, runs
    /// submitted here read no file of the server (clients upload their data).
    #[arg(long = "data-root", value_name = "NAME=DIR[:PROJECTS]")]
    pub data_roots: Vec<String>,
    /// The identity data-root files are opened as, UID[:GID] (default 65534:65534, nobody,
    /// when the server runs as root); `server` opens them as the server itself.
    #[arg(long, value_name = "UID[:GID]|server")]
    pub data_reader: Option<String>,
    /// Largest upload of one input (file or directory) accepted, in bytes.
    #[arg(long, default_value_t = gantry_server::DEFAULT_MAX_UPLOAD_BYTES)]
    pub max_upload_bytes: u64,
    /// Lets URL inputs, alert webhooks and image pulls reach an address the server otherwise refuses
    /// (loopback, link-local, private, unique-local): a CIDR (10.0.0.0/8, 127.0.0.1) or a
    /// host name (minio.internal, *.corp.example). Repeatable.
    #[arg(long = "allow-fetch", value_name = "CIDR|HOST")]
    pub allow_fetch: Vec<String>,
    /// A project whose steps may ask for `network: true` (the host's network); `*` for
    /// every project. Repeatable. Default: none.
    #[arg(long = "allow-network", value_name = "PROJECT")]
    pub allow_network: Vec<String>,
    /// A project whose steps may not use GPUs; `*` for every project. Repeatable.
    #[arg(long = "deny-gpu", value_name = "PROJECT")]
    pub deny_gpu: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Show or set a project's quota: concurrent CPU, memory and GPUs its running steps may
    /// hold, runs in flight, and its fair-share weight. Without a limit flag: show it (all
    /// projects' without PROJECT). A flag given replaces that limit only; `none` lifts it.
    /// Applies at once through --server; on GANTRY_HOME, a running server picks it up
    /// within 5 s.
    Quota {
        project: Option<String>,
        /// CPU, e.g. 8 or 1500m.
        #[arg(long, value_name = "CPU|none")]
        cpu: Option<String>,
        /// Memory, e.g. 32Gi.
        #[arg(long, value_name = "MEMORY|none")]
        memory: Option<String>,
        #[arg(long, value_name = "N|none")]
        gpus: Option<String>,
        /// Runs of the project admitted at once; more wait in the queue.
        #[arg(long, value_name = "N|none")]
        max_runs: Option<String>,
        /// Fair-share weight (default 1): weight 2 gets twice the share of weight 1.
        #[arg(long)]
        weight: Option<u32>,
        /// Remove the quota altogether.
        #[arg(long, conflicts_with_all = ["cpu", "memory", "gpus", "max_runs", "weight"])]
        clear: bool,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once and never stored.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["viewer", "editor", "admin"])]
        role: String,
        /// Scope the token to one project (a pipeline name).
        #[arg(long)]
        project: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Revoke a token by id or name.
    Revoke {
        /// The token's id or name.
        #[arg(value_name = "TOKEN")]
        id_or_name: String,
    },
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The deployment's name: it serves at /v2/models/NAME.
    pub name: String,
    /// The primary model: NAME@ALIAS, NAME@VERSION or NAME (its latest version).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// A canary model answering --weight percent of requests.
    #[arg(long, value_name = "MODEL", conflicts_with = "no_canary")]
    pub canary: Option<String>,
    /// Percent of requests the canary answers (1–99; default 10).
    #[arg(long, value_name = "PERCENT")]
    pub weight: Option<u8>,
    /// A shadow model: gets a copy of every request; its answers are logged, never returned.
    #[arg(long, value_name = "MODEL", conflicts_with = "no_shadow")]
    pub shadow: Option<String>,
    /// Remove the canary.
    #[arg(long)]
    pub no_canary: bool,
    /// Remove the shadow.
    #[arg(long)]
    pub no_shadow: bool,
    /// Replicas per model version (1–16).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// CPU per replica, e.g. 500m or 2.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory per replica, e.g. 256Mi.
    #[arg(long)]
    pub memory: Option<String>,
    /// Fraction of requests written to the prediction log (0–1).
    #[arg(long, value_name = "FRACTION")]
    pub sample_rate: Option<f64>,
    /// An alert rule, e.g. "psi > 0.2 for feature age" or "accuracy < 0.85" (repeatable;
    /// the rules given replace the current ones).
    #[arg(long = "rule", value_name = "RULE", conflicts_with = "no_rules")]
    pub rules: Vec<String>,
    /// Remove every alert rule.
    #[arg(long)]
    pub no_rules: bool,
    /// POST alerts here as JSON when they fire or resolve ("" removes it).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// How far back drift and latency look, e.g. 1h.
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Most predictions kept in the log.
    #[arg(long, value_name = "N")]
    pub max_predictions: Option<i64>,
    /// How long predictions are kept, e.g. 30d.
    #[arg(long, value_name = "DURATION")]
    pub retention: Option<String>,
    /// Refuse the change unless the deployment is at this revision (0: must not exist yet).
    #[arg(long, value_name = "REVISION")]
    pub expected_revision: Option<i64>,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// REFERENCE then CURRENT: CSV files (gzip too), a profile JSON (reference only) or
    /// dataset directories. Leave out the one given as --reference-digest/--current-digest.
    #[arg(value_name = "FILE", num_args = 0..=2)]
    pub paths: Vec<PathBuf>,
    /// The reference is this artifact of GANTRY_HOME (a dataset, a profile or a CSV file).
    #[arg(long, value_name = "DIGEST")]
    pub reference_digest: Option<String>,
    /// The current data is this artifact of GANTRY_HOME (a dataset or a CSV file).
    #[arg(long, value_name = "DIGEST")]
    pub current_digest: Option<String>,
    /// Compare this column as the label / prediction (`prediction (COL)`), not as a feature.
    #[arg(long, value_name = "COL")]
    pub label: Option<String>,
    /// Compare only these reference columns (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "COL")]
    pub columns: Vec<String>,
    /// A column drifts when its PSI is above this.
    #[arg(long, default_value_t = gantry_ml::drift::DEFAULT_THRESHOLD, value_name = "PSI")]
    pub threshold: f64,
    /// A column with fewer values than this is insufficient-data, not compared.
    #[arg(long, default_value_t = gantry_monitor::DEFAULT_MIN_SAMPLES, value_name = "N")]
    pub min_samples: usize,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: ReportFormat,
    /// Exit with code 1 when any column (the label included) drifted.
    #[arg(long)]
    pub fail_on_drift: bool,
    /// Print how long reading, profiling and comparing took to stderr (and add
    /// `timings_ms` to --output json).
    #[arg(long)]
    pub timings: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    #[default]
    Table,
    Json,
    Markdown,
    /// One self-contained page with a histogram per column.
    Html,
}

#[derive(Debug, Args)]
pub struct FeedbackArgs {
    /// The deployment that answered the requests.
    pub name: String,
    /// The request id the prediction was answered with.
    #[arg(required_unless_present = "file", requires = "label")]
    pub request_id: Option<String>,
    /// The true value: JSON when it parses (3, 2.5, true, "setosa"), else the text itself.
    pub label: Option<String>,
    /// The row of a batch request the label belongs to (default 0).
    #[arg(long, requires = "request_id")]
    pub row: Option<i64>,
    /// JSON Lines, one `{"request_id": …, "label": …}` (or `"labels": [...]` for every row of
    /// a batch) per line; - reads standard input.
    #[arg(long, conflicts_with_all = ["request_id", "label", "row"])]
    pub file: Option<PathBuf>,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The model's name in the registry.
    pub name: String,
    /// The model file or directory (onnx, builtin); none for custom.
    pub path: Option<PathBuf>,
    #[arg(long, value_parser = ["onnx", "builtin", "custom"])]
    pub flavor: String,
    /// Point this alias (e.g. staging) at the new version.
    #[arg(long)]
    pub alias: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// The training data's profile (`builtin/profile` output, JSON): drift is measured
    /// against it once the model is deployed.
    #[arg(long, value_name = "PROFILE.json")]
    pub reference_profile: Option<PathBuf>,
    /// custom: the imported image that serves the Open Inference Protocol v2.
    #[arg(long)]
    pub image: Option<String>,
    /// custom: the port the image's server listens on (it also gets it as $PORT).
    #[arg(long)]
    pub port: Option<u16>,
    /// custom: the command to run instead of the image's entrypoint (repeatable, in order).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// custom: an environment variable K=V (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A registered model: NAME, NAME@VERSION or NAME@ALIAS (from GANTRY_HOME's registry).
    #[arg(required_unless_present = "model_dir", conflicts_with = "model_dir")]
    pub model: Option<String>,
    /// Serve this model directory or file instead, without any store (what deployment
    /// replicas run); needs --flavor, --name and --version.
    #[arg(long, requires_all = ["flavor", "name", "version"])]
    pub model_dir: Option<PathBuf>,
    #[arg(long, value_parser = ["builtin", "onnx"], requires = "model_dir")]
    pub flavor: Option<String>,
    /// The name the model is served under (with --model-dir).
    #[arg(long, requires = "model_dir")]
    pub name: Option<String>,
    /// The version the model is served as (with --model-dir).
    #[arg(long, requires = "model_dir")]
    pub version: Option<String>,
    /// Address to listen on: loopback unless --insecure-listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Also serve the Open Inference Protocol's gRPC API (`inference.GRPCInferenceService`)
    /// on this address: loopback unless --insecure-listen.
    #[arg(long)]
    pub grpc_listen: Option<std::net::SocketAddr>,
    /// Listen on a non-loopback address (this server has no authentication).
    #[arg(long)]
    pub insecure_listen: bool,
}
