//! From a registered model version to the container that serves it.
//!
//! * `builtin` and `onnx`: the built-in image (the running gantry binary) runs
//!   `gantry serve --model-dir /gantry …` with the model artifact mounted read-only at
//!   `/gantry`.
//! * `custom`: the artifact is a small JSON document naming an imported image that
//!   serves OIP v2 itself: `{"image": "my-server:1", "port": 9000, "args": [...],
//!   "env": ["K=V"]}` (args default to the image's entrypoint + cmd).
//!
//! Every replica runs as an unprivileged user (the image's own user when it is not root,
//! else 65534), read-only root, no capabilities, its own network namespace with only `lo`.

use super::{REPLICA_PORT, ServedModel, template};
use gantry_artifacts::ArtifactStore;
use gantry_engine::{BUILTIN_BINARY, Engine, ensure_builtin_image};
use gantry_kube::StepRuntime;
use gantry_runtime::{BindMount, Runtime};

use super::replica::RemoteReplica;
use gantry_spec::deployment::{DeploymentSpec, ModelTarget};
use gantry_store::Store;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where the model directory appears inside a built-in replica.
const MODEL_MOUNT: &str = "/gantry";
/// Unprivileged user replicas run as when the image names none (or root).
const NOBODY: u32 = 65534;
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The artifact of a `custom` model version.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomServer {
    pub image: String,
    pub port: u16,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
}

pub(crate) async fn served_model(
    engine: &Engine<StepRuntime>,
    store: &Store,
    artifacts: &ArtifactStore,
    deployment: &str,
    target: &ModelTarget,
    spec: &DeploymentSpec,
    work_dir: &Path,
) -> Result<ServedModel, String> {
    let version = store
        .get_model_version(&target.model, target.version)
        .await
        .map_err(|e| format!("model {}: {e}", target.label()))?;
    let reference_profile =
        gantry_engine::reference_profile_of(store, &target.model, target.version).await;
    let path = artifacts
        .materialize(&version.artifact_digest)
        .await
        .map_err(|e| format!("model {}: its artifact: {e}", target.label()))?;
    let deployment_dir = work_dir.to_path_buf();
    match version.flavor.as_str() {
        "builtin" | "onnx" => {
            let exe = engine
                .config()
                .builtin_exe
                .clone()
                .ok_or("this server has no gantry binary to build the built-in image from")?;
            let images = engine.images().clone();
            let exe2 = exe.clone();
            let rootfs = tokio::task::spawn_blocking(move || {
                let info = ensure_builtin_image(&images, &exe2).map_err(|e| e.to_string())?;
                images.rootfs(&info.digest).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
            let (mut schema, mut label, mut classification) = (None, None, false);
            // The built-in image's only empty directory is /gantry (the read-only rootfs
            // cannot grow mount points): the model directory is mounted there. A model that
            // is a single file gets a directory of its own holding (a link to) it.
            let model_dir = if path.is_dir() {
                path.clone()
            } else {
                let name = if version.flavor == "onnx" {
                    "model.onnx"
                } else {
                    gantry_ml::model::MODEL_FILE
                };
                let dir = work_dir.join(format!(
                    "model-{}",
                    version.artifact_digest.trim_start_matches("sha256:")
                ));
                let file = dir.join(name);
                if !file.exists() {
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                    if std::fs::hard_link(&path, &file).is_err() {
                        std::fs::copy(&path, &file)
                            .map_err(|e| format!("copying the model to {}: {e}", file.display()))?;
                    }
                }
                dir
            };
            let mount = BindMount {
                source: model_dir,
                destination: MODEL_MOUNT.into(),
                readonly: true,
            };
            if version.flavor == "builtin" {
                let model = gantry_ml::model::Model::load(&path)
                    .map_err(|e| format!("model {}: {e}", target.label()))?;
                schema = Some(model.input_schema());
                label = Some(model.label.clone());
                classification = model.task == gantry_ml::model::Task::Classification;
            }
            let args = vec![
                BUILTIN_BINARY.to_string(),
                "serve".into(),
                "--model-dir".into(),
                MODEL_MOUNT.into(),
                "--flavor".into(),
                version.flavor.clone(),
                "--name".into(),
                // Served under the deployment's name: paths pass through unchanged.
                deployment.to_string(),
                "--version".into(),
                target.version.to_string(),
                "--listen".into(),
                format!("127.0.0.1:{REPLICA_PORT}"),
            ];
            // On a cluster the pod fetches the model by digest and serves on its own address.
            let remote = engine.runtime().stages_artifacts().then(|| {
                let model_path = if path.is_dir() {
                    "model".to_string()
                } else if version.flavor == "onnx" {
                    "model/model.onnx".to_string()
                } else {
                    format!("model/{}", gantry_ml::model::MODEL_FILE)
                };
                let mut args = args.clone();
                if let Some(dir) = args.iter().position(|a| a == "--model-dir") {
                    args[dir + 1] = "/gantry/inputs/model".into();
                }
                if let Some(listen) = args.iter().position(|a| a == "--listen") {
                    args[listen + 1] = format!("0.0.0.0:{REPLICA_PORT}");
                }
                RemoteReplica {
                    image: None,
                    args,
                    model: Some((model_path, version.artifact_digest.clone())),
                }
            });
            let mut t = template(
                rootfs,
                args,
                vec![PATH_ENV.into(), "HOME=/tmp".into()],
                NOBODY,
                NOBODY,
                vec![mount],
                spec,
                REPLICA_PORT,
                deployment_dir,
                exe,
            );
            t.remote = remote;
            Ok(ServedModel {
                target: target.clone(),
                flavor: version.flavor.clone(),
                schema,
                label,
                classification,
                reference_profile,
                template: t,
            })
        }
        "custom" => {
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("model {}: reading its artifact: {e}", target.label()))?;
            let custom: CustomServer = serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "model {}: a custom model's artifact must be JSON like {{\"image\": \"my-server:1\", \"port\": 9000}}: {e}",
                    target.label()
                )
            })?;
            // Pulled when it names a registry and is not stored yet, then judged by the trust
            // policy before any replica starts.
            let info = engine
                .obtain_image(&custom.image, None)
                .await
                .map_err(|e| format!("model {}: image {}: {e}", target.label(), custom.image))?;
            check_image_trust(
                engine,
                store,
                deployment,
                &target.label(),
                &custom.image,
                &info.digest,
            )
            .await?;
            let images = engine.images().clone();
            let (info, rootfs, ids) = tokio::task::spawn_blocking(move || {
                let rootfs = images.rootfs(&info.digest).map_err(|e| e.to_string())?;
                let ids = match info.config.user.as_deref().filter(|u| !u.trim().is_empty()) {
                    Some(u) => Some(
                        images
                            .lookup_user(&info.digest, u)
                            .map_err(|e| e.to_string())?,
                    ),
                    None => None,
                };
                Ok::<_, String>((info, rootfs, ids))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("model {}: image {}: {e}", target.label(), custom.image))?;
            let (uid, gid) = match ids {
                Some((u, g)) if u != 0 => (u, g),
                _ => (NOBODY, NOBODY),
            };
            let args = if custom.args.is_empty() {
                info.config
                    .entrypoint
                    .iter()
                    .chain(&info.config.cmd)
                    .cloned()
                    .collect()
            } else {
                custom.args.clone()
            };
            if args.is_empty() {
                return Err(format!(
                    "model {}: image {} has no entrypoint or cmd; give `args` in the custom model",
                    target.label(),
                    custom.image
                ));
            }
            let mut env = info.config.env.clone();
            if !env.iter().any(|e| e.starts_with("PATH=")) {
                env.push(PATH_ENV.into());
            }
            env.extend(custom.env.iter().cloned());
            env.push(format!("GANTRY_MODEL_NAME={deployment}"));
            env.push(format!("GANTRY_MODEL_VERSION={}", target.version));
            env.push(format!("PORT={}", custom.port));
            let exe = engine
                .config()
                .builtin_exe
                .clone()
                .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
            let remote = if engine.runtime().stages_artifacts() {
                Some(RemoteReplica {
                    image: Some(
                        gantry_engine::pullable(&custom.image, &info.digest)
                            .map_err(|e| format!("model {}: {e}", target.label()))?,
                    ),
                    args: args.clone(),
                    model: None,
                })
            } else {
                None
            };
            let mut t = template(
                rootfs,
                args,
                env,
                uid,
                gid,
                Vec::new(),
                spec,
                custom.port,
                deployment_dir,
                exe,
            );
            t.remote = remote;
            Ok(ServedModel {
                target: target.clone(),
                flavor: "custom".into(),
                schema: None,
                label: None,
                classification: false,
                reference_profile,
                template: t,
            })
        }
        other => Err(format!(
            "model {}: flavor `{other}` cannot be deployed (builtin, onnx and custom can)",
            target.label()
        )),
    }
}

/// Applies the trust policy to a custom model's image; records the decision on the deployment
/// and in the audit log; a denial is an error naming the rule and the reasons.
async fn check_image_trust(
    engine: &Engine<StepRuntime>,
    store: &Store,
    deployment: &str,
    item: &str,
    reference: &str,
    digest: &str,
) -> Result<(), String> {
    let Some(trust) = &engine.config().trust else {
        return Ok(());
    };
    let images = std::sync::Arc::new(engine.images().clone());
    let Some(decision) = trust
        .check(
            &images,
            engine.config().registry.as_deref(),
            store,
            reference,
            digest,
            false,
        )
        .await
    else {
        return Ok(());
    };
    let outcome = match decision.outcome {
        gantry_trust::Outcome::Allow => "allow",
        gantry_trust::Outcome::Warn => "warn",
        gantry_trust::Outcome::Deny => "deny",
    };
    let now = gantry_engine::now_ms();
    let record = gantry_store::ImageDecisionRecord {
        subject_kind: "deployment".into(),
        subject_id: deployment.to_string(),
        item: item.to_string(),
        reference: reference.to_string(),
        digest: digest.to_string(),
        outcome: outcome.into(),
        rule: decision.rule.clone(),
        reasons: decision.reasons.clone(),
        ts_ms: now,
    };
    store
        .record_image_decisions(std::slice::from_ref(&record))
        .await
        .map_err(|e| e.to_string())?;
    let detail = serde_json::json!({
        "reference": reference,
        "digest": digest,
        "outcome": outcome,
        "rule": decision.rule,
        "reasons": decision.reasons,
    });
    store
        .append_audit(
            "server",
            &format!("image.{outcome}"),
            &format!("deployment {deployment}/{item}"),
            &detail,
            now,
        )
        .await
        .map_err(|e| e.to_string())?;
    if decision.permits() {
        if outcome == "warn" {
            tracing::warn!("deployment {deployment}: image {reference}: {decision}");
        }
        Ok(())
    } else {
        Err(format!(
            "model {item}: image {reference} is denied by the image trust policy: {decision}"
        ))
    }
}
