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
    #[arg(long, global = true, env = "GANTRY_DB")]
    pub db: Option<String>,
    /// OCI runtime binary: runc (default), crun, youki, or a path.
    #[arg(long, global = true, env = "GANTRY_RUNTIME", default_value = "runc")]
    pub runtime: String,
    /// Talk to a `gantry server` at this URL instead of GANTRY_HOME (run, runs, show, logs,
    /// artifacts, artifact get, models, model show, token, audit).
    #[arg(long, global = true, env = "GANTRY_SERVER")]
    pub server: Option<String>,
    /// Bearer token for a server started with --auth.
    #[arg(long, global = true, env = "GANTRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
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
    /// Print a run's logs (optionally one step's); --follow waits for more.
    Logs {
        run: String,
        step: Option<String>,
        #[arg(long, short = 'f')]
        follow: bool,
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
    /// List registered models.
    Models {
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Work with one registered model.
    #[command(subcommand)]
    Model(ModelCommand),
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
pub enum ImageCommand {
    /// Import a docker-archive (`docker save`), an OCI layout (dir or tar) or a rootfs tar.
    Import {
        path: PathBuf,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Remove an image name (and the image once no name is left).
    Rm { reference: String },
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on. Anything but loopback needs --auth.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
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
