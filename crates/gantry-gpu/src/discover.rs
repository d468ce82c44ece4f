//! What GPUs this machine has.

use std::path::Path;

use crate::sampler::{Sampler, driver_present};
use crate::{Gpu, GpuError, procfs};

/// The NVIDIA GPUs of this machine, in NVML index order.
///
/// Without the NVIDIA driver: `Ok` and empty, at once (nothing is loaded). With it, NVML
/// (`libnvidia-ml.so.1`) lists the GPUs with memory and MIG state; when that library cannot
/// be loaded, `/proc/driver/nvidia/gpus/*/information` still gives names, UUIDs and device
/// minors (memory unknown).
pub fn discover() -> Result<Vec<Gpu>, GpuError> {
    if !driver_present() {
        return Ok(Vec::new());
    }
    match Sampler::shared().devices() {
        Some(found) => found,
        None => procfs::read_gpus(Path::new("/proc/driver/nvidia")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_matches_the_driver_being_there() {
        let gpus = discover().unwrap();
        if !driver_present() {
            assert!(gpus.is_empty());
            return;
        }
        // A GPU machine: each device is a real one, numbered from 0, with its own minor.
        for (i, gpu) in gpus.iter().enumerate() {
            assert_eq!(gpu.index as usize, i);
            assert!(gpu.uuid.starts_with("GPU-"), "{gpu:?}");
            assert!(!gpu.name.is_empty());
            assert!(
                Path::new(&format!("/dev/nvidia{}", gpu.minor)).exists(),
                "{gpu:?}"
            );
        }
    }
}
