//! [`StepRuntime`]: the runtime a Gantry process was started with, one machine's OCI runtime
//! or a Kubernetes cluster, behind the one [`Runtime`] the engine is generic over.

use gantry_runtime::{LogBlock, OciRuntime, Runtime, RuntimeError, StepOutcome, StepRequest};

use crate::KubeRuntime;

pub enum StepRuntime {
    Oci(OciRuntime),
    Kubernetes(KubeRuntime),
}

impl StepRuntime {
    /// The OCI runtime, when steps run on this machine.
    pub fn oci(&self) -> Option<&OciRuntime> {
        match self {
            StepRuntime::Oci(r) => Some(r),
            StepRuntime::Kubernetes(_) => None,
        }
    }
}

impl Runtime for StepRuntime {
    fn name(&self) -> &'static str {
        match self {
            StepRuntime::Oci(r) => r.name(),
            StepRuntime::Kubernetes(r) => r.name(),
        }
    }

    fn stages_artifacts(&self) -> bool {
        match self {
            StepRuntime::Oci(r) => r.stages_artifacts(),
            StepRuntime::Kubernetes(r) => r.stages_artifacts(),
        }
    }

    async fn run(
        &self,
        req: StepRequest,
        logs: tokio::sync::mpsc::Sender<LogBlock>,
    ) -> Result<StepOutcome, RuntimeError> {
        match self {
            StepRuntime::Oci(r) => r.run(req, logs).await,
            StepRuntime::Kubernetes(r) => r.run(req, logs).await,
        }
    }

    async fn reap_leftovers(&self) -> Result<usize, RuntimeError> {
        match self {
            StepRuntime::Oci(r) => r.reap_leftovers().await,
            StepRuntime::Kubernetes(r) => r.reap_leftovers().await,
        }
    }
}
