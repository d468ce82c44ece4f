//! NVML, opened once per process: the devices, and their utilization and memory over time.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use crate::model::parse_mig_profile;
use crate::{DeviceSample, Gpu, GpuError, MigDevice};

/// `nvmlDeviceGetMigMode`'s value for MIG mode on (`NVML_DEVICE_MIG_ENABLE`).
const MIG_ENABLED: u32 = 1;

/// The process's NVML session. NVML is initialised on the first [`Sampler::shared`] and kept
/// for the life of the process; on a machine without the NVIDIA driver nothing is loaded and
/// every sample is empty.
pub struct Sampler {
    nvml: Result<Nvml, String>,
}

static SHARED: OnceLock<Arc<Sampler>> = OnceLock::new();

impl Sampler {
    /// The one sampler of this process, opened on the first call.
    pub fn shared() -> Arc<Sampler> {
        SHARED.get_or_init(|| Arc::new(Sampler::open())).clone()
    }

    fn open() -> Sampler {
        if !driver_present() {
            return Sampler {
                nvml: Err("no NVIDIA driver".to_owned()),
            };
        }
        Sampler {
            nvml: Nvml::init().map_err(|e| match e {
                NvmlError::LibloadingError(e) => format!("cannot load libnvidia-ml.so.1: {e}"),
                e => format!("cannot initialise NVML: {e}"),
            }),
        }
    }

    /// Why there is no NVML here (`no NVIDIA driver`, a library that would not load); `None`
    /// when it is open.
    pub fn unavailable(&self) -> Option<&str> {
        self.nvml.as_ref().err().map(String::as_str)
    }

    /// Utilization and memory in use of the GPUs with these NVML indexes; a GPU that cannot be
    /// read (or NVML being unavailable) leaves its sample out.
    pub fn sample(&self, indexes: &[u32]) -> Vec<DeviceSample> {
        let Ok(nvml) = &self.nvml else {
            return Vec::new();
        };
        indexes
            .iter()
            .filter_map(|&index| {
                let device = nvml.device_by_index(index).ok()?;
                let utilization = device.utilization_rates().ok()?;
                let memory = device.memory_info().ok()?;
                Some(DeviceSample {
                    index,
                    utilization_percent: utilization.gpu,
                    memory_used_bytes: memory.used,
                })
            })
            .collect()
    }

    /// Every GPU NVML sees; `None` when NVML is unavailable.
    pub(crate) fn devices(&self) -> Option<Result<Vec<Gpu>, GpuError>> {
        self.nvml.as_ref().ok().map(devices)
    }
}

/// The kernel driver is loaded (or its devices are passed in): only then is NVML worth loading.
pub(crate) fn driver_present() -> bool {
    Path::new("/proc/driver/nvidia").exists() || Path::new("/dev/nvidiactl").exists()
}

fn devices(nvml: &Nvml) -> Result<Vec<Gpu>, GpuError> {
    let driver = nvml.sys_driver_version().ok();
    let count = nvml.device_count().map_err(|e| GpuError::Nvml {
        what: "device count",
        reason: e.to_string(),
    })?;
    let mut gpus = Vec::new();
    for index in 0..count {
        let fail = |what: &'static str| {
            move |e: NvmlError| GpuError::Device {
                index,
                what,
                reason: e.to_string(),
            }
        };
        let device = nvml.device_by_index(index).map_err(fail("handle"))?;
        // Not every GPU has MIG; one whose mode cannot be read is placed like one with it off.
        let mig_mode = device.mig_mode().ok().map(|m| m.current == MIG_ENABLED);
        let mut mig_devices = Vec::new();
        if mig_mode == Some(true) {
            for slot in 0..device.mig_device_count().unwrap_or(0) {
                // Unused slots answer NotFound.
                let Ok(mig) = device.mig_device_by_index(slot) else {
                    continue;
                };
                let name = mig.name().map_err(fail("MIG device name"))?;
                mig_devices.push(MigDevice {
                    profile: parse_mig_profile(&name).unwrap_or(name),
                    uuid: mig.uuid().map_err(fail("MIG device uuid"))?,
                });
            }
        }
        gpus.push(Gpu {
            index,
            minor: device.minor_number().map_err(fail("minor number"))?,
            uuid: device.uuid().map_err(fail("uuid"))?,
            name: device.name().map_err(fail("name"))?,
            memory_bytes: device.memory_info().map_err(fail("memory"))?.total,
            mig_mode,
            driver: driver.clone(),
            mig_devices,
        });
    }
    Ok(gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_driver_nvml_is_not_loaded_and_samples_are_empty() {
        let sampler = Sampler::shared();
        assert!(Arc::ptr_eq(&sampler, &Sampler::shared()), "opened once");
        if driver_present() {
            // A GPU machine: whatever NVML says, sampling an index it lacks gives nothing.
            assert!(sampler.sample(&[u32::MAX]).is_empty());
            return;
        }
        assert_eq!(sampler.unavailable(), Some("no NVIDIA driver"));
        assert!(sampler.sample(&[0, 1]).is_empty());
        assert!(sampler.devices().is_none());
    }
}
