//! Gantry on Kubernetes.
//!
//! - [`names`]: DNS-1123 names and label values made from Gantry's names, without collisions.
//! - [`contract`]: what the runtime and the `gantry` binary inside a step's pod exchange (the
//!   plan in, the report out through the termination message).
//! - [`exported`]: how a step of an exported (Argo, KFP) workflow looks up Gantry's cache and
//!   reports to a Gantry server.
//! - [`pod`]: what every pod Gantry makes shares (security contexts, resources, egress).
//! - [`job`]: one step attempt as a `batch/v1` Job and its NetworkPolicy (pure).
//! - [`replica`]: a model replica as a Deployment, Service and NetworkPolicy (pure).
//! - [`runtime`]: [`KubeRuntime`], the engine's `Runtime` on a cluster's API (kube-rs).
//! - [`StepRuntime`]: this machine's OCI runtime or a cluster, whichever a process uses.

mod any;
pub mod contract;
pub mod control_plane;
pub mod exported;
pub mod job;
pub mod names;
pub mod pod;
pub mod replica;
pub mod runtime;

pub use any::StepRuntime;
pub use runtime::{KubeConfig, KubeRuntime, OwnerAlive};
