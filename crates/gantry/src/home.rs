//! GANTRY_HOME: where the database, images, artifacts and scratch space live.

use crate::cli::Global;
use crate::exit::{self, coded};
use anyhow::Context;
use gantry_artifacts::ArtifactStore;
use gantry_engine::{Engine, EngineConfig};
use gantry_image::ImageStore;
use gantry_kube::StepRuntime;
use gantry_runtime::{OciRuntime, OciRuntimeConfig};
use gantry_store::Store;
use std::path::PathBuf;

pub struct Home {
    pub root: PathBuf,
    pub db_url: String,
    /// Registries reachable over plain HTTP besides loopback (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// `--policy`: the image trust policy (else GANTRY_HOME/policy.yaml when present).
    pub policy: Option<PathBuf>,
    /// `--artifacts` / GANTRY_ARTIFACTS: where artifacts live (else GANTRY_HOME/artifacts).
    pub artifacts: Option<gantry_artifacts::Location>,
}

impl Home {
    pub fn from_global(g: &Global) -> anyhow::Result<Home> {
        let root = match &g.home {
            Some(p) => p.clone(),
            None => {
                let base = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| {
                    coded(
                        exit::USAGE,
                        "neither GANTRY_HOME nor HOME is set; pass --home DIR",
                    )
                })?;
                base.join(".gantry")
            }
        };
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating GANTRY_HOME {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving GANTRY_HOME {}", root.display()))?;
        let db_url =
            g.db.clone()
                .unwrap_or_else(|| format!("sqlite://{}", root.join("gantry.db").display()));
        let artifacts = g
            .artifacts
            .as_deref()
            .filter(|a| !a.is_empty())
            .map(gantry_artifacts::Location::parse)
            .transpose()
            .map_err(|e| coded(exit::USAGE, format!("--artifacts / GANTRY_ARTIFACTS: {e}")))?;
        Ok(Home {
            root,
            db_url,
            insecure_registries: g.insecure_registries.clone(),
            policy: g.policy.clone(),
            artifacts,
        })
    }

    pub async fn store(&self) -> anyhow::Result<Store> {
        Store::connect(&self.db_url)
            .await
            .with_context(|| format!("opening the metadata store {}", redact(&self.db_url)))
    }

    /// GANTRY_HOME/config.yaml (the price table); the defaults when it does not exist.
    pub fn config(&self) -> anyhow::Result<gantry_alloc::Config> {
        gantry_alloc::Config::load(&self.root.join("config.yaml"))
            .map_err(|e| coded(exit::USAGE, e.to_string()))
    }

    pub fn images(&self) -> anyhow::Result<ImageStore> {
        Ok(ImageStore::open(&self.root.join("images"))?)
    }

    /// The image trust gate: `--policy` (which must exist) or GANTRY_HOME/policy.yaml (when
    /// it exists), and the vulnerability database in GANTRY_HOME/vulndb.
    pub fn trust(&self) -> anyhow::Result<std::sync::Arc<gantry_engine::trust::ImageTrust>> {
        let (path, optional) = match &self.policy {
            Some(p) => (p.clone(), false),
            None => (self.root.join("policy.yaml"), true),
        };
        let trust =
            gantry_engine::trust::ImageTrust::new(Some(path), optional, self.root.join("vulndb"))
                .map_err(|e| coded(exit::USAGE, e))?;
        Ok(std::sync::Arc::new(trust))
    }

    /// The artifact store: `--artifacts` (a bucket, with materialized copies cached under
    /// GANTRY_HOME/artifacts/materialized, or a directory), else GANTRY_HOME/artifacts.
    pub fn artifacts(&self) -> anyhow::Result<ArtifactStore> {
        let default = gantry_artifacts::Location::Local(self.root.join("artifacts"));
        let location = self.artifacts.as_ref().unwrap_or(&default);
        Ok(ArtifactStore::open(
            location,
            &self.root.join("artifacts").join("materialized"),
        )?)
    }

    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    /// The steps' runtime: `kubernetes` (a cluster, see `crate::kube`), else the OCI runtime
    /// binary of this machine (runc, crun, …).
    pub async fn runtime(&self, binary: &str) -> anyhow::Result<StepRuntime> {
        if binary == "kubernetes" {
            return Ok(StepRuntime::Kubernetes(
                crate::kube::runtime(self.artifacts.as_ref()).await?,
            ));
        }
        Ok(StepRuntime::Oci(self.oci_runtime(binary)?))
    }

    pub fn oci_runtime(&self, binary: &str) -> anyhow::Result<OciRuntime> {
        let cfg = OciRuntimeConfig {
            binary: PathBuf::from(binary),
            state_dir: self.root.join("runtime").join("state"),
            bundles_dir: self.root.join("runtime").join("bundles"),
            cgroup_parent: "gantry".into(),
        };
        Ok(OciRuntime::new(cfg)?)
    }

    pub async fn engine(
        &self,
        runtime_binary: &str,
        cfg: impl FnOnce(&mut EngineConfig),
    ) -> anyhow::Result<Engine<StepRuntime>> {
        let store = self.store().await?;
        let mut config = EngineConfig::new(self.work_dir());
        config.registry = Some(std::sync::Arc::new(crate::images::registry_client(self)?));
        config.trust = Some(self.trust()?);
        config.pull_progress = crate::images::Bars::new()
            .map(|b| b as std::sync::Arc<dyn gantry_image::registry::PullProgress>);
        cfg(&mut config);
        Ok(Engine::new(
            store,
            self.artifacts()?,
            self.images()?,
            self.runtime(runtime_binary).await?,
            config,
        ))
    }
}

/// Hides a password in a database URL before it is printed.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_the_terminal() {
        assert_eq!(
            redact("postgres://me:s3cret@db/x"),
            "postgres://me:***@db/x"
        );
        assert_eq!(redact("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(redact("sqlite:///a/b.db"), "sqlite:///a/b.db");
    }
}
