//! The NVIDIA GPUs of this machine: what is there, which devices a step gets, how busy they are.
//!
//! ```text
//! discover() ──> [Gpu] ──place(held, count, memory, model)──> NVML indexes ──minors_of──> /dev/nvidiaN
//!                      └─rejects(count, memory, model)──> why a request can never fit here
//! Sampler::shared().sample(indexes) ──> [DeviceSample] ──GpuUsage::record──> mean, peak, idle share
//! ```
//!
//! Pure and unit-tested: model names ([`model_matches`], [`parse_mig_profile`]), placement
//! ([`place`], [`rejects`]), the usage accumulator ([`GpuUsage`]) and the parser of the driver's
//! `/proc/driver/nvidia/gpus/*/information` files. I/O: [`discover`] and [`Sampler`] talk to NVML
//! through `nvml-wrapper`, which loads `libnvidia-ml.so.1` at run time, so nothing links against
//! the driver; a machine without it gets no GPUs, quickly and without a message.

mod discover;
mod model;
mod place;
mod procfs;
mod sampler;
mod usage;

use serde::{Deserialize, Serialize};

pub use discover::discover;
pub use model::{model_matches, model_words, parse_mig_profile};
pub use place::{Unplaceable, describe_request, minors_of, place, rejects};
pub use sampler::Sampler;
pub use usage::{DeviceSample, GpuUsage, IDLE_BELOW_PERCENT};

/// One physical NVIDIA GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// NVML's index (PCI bus order): what [`place`] returns and [`Sampler::sample`] takes.
    pub index: u32,
    /// The `N` of `/dev/nvidiaN`, the device a container is given.
    pub minor: u32,
    /// `GPU-…`.
    pub uuid: String,
    /// As the driver names it, e.g. `NVIDIA H200`.
    pub name: String,
    /// Total memory; 0 when unknown (found without NVML), which placement treats as enough.
    pub memory_bytes: u64,
    /// `Some(true)` when MIG mode is on (the GPU is split and not placed whole); `None` when
    /// the GPU has no MIG or it could not be read.
    pub mig_mode: Option<bool>,
    /// The kernel driver's version, e.g. `550.54.15`.
    pub driver: Option<String>,
    /// The MIG devices the GPU is split into (empty unless MIG mode is on).
    pub mig_devices: Vec<MigDevice>,
}

/// One MIG device (a slice of a GPU in MIG mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigDevice {
    /// e.g. `1g.10gb`, see [`parse_mig_profile`].
    pub profile: String,
    /// `MIG-…`.
    pub uuid: String,
}

/// Why the GPUs of this machine could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("cannot list the GPUs through NVML ({what}): {reason}")]
    Nvml { what: &'static str, reason: String },

    #[error("cannot read GPU {index} through NVML ({what}): {reason}")]
    Device {
        index: u32,
        what: &'static str,
        reason: String,
    },

    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },

    #[error("unexpected contents in {path}: {reason}")]
    Procfs {
        path: std::path::PathBuf,
        reason: String,
    },
}
