//! The GPUs the kernel driver lists under `/proc/driver/nvidia`, for machines where NVML
//! (`libnvidia-ml.so.1`, a user-space part of the driver) cannot be loaded.

use std::path::Path;

use crate::{Gpu, GpuError};

/// What one `gpus/<bus>/information` file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Information {
    pub model: String,
    pub uuid: String,
    pub minor: u32,
    /// `0000:18:00.0`; NVML numbers GPUs in this order.
    pub bus: String,
    /// `GPU Excluded: Yes`: the driver keeps it from use.
    pub excluded: bool,
}

/// Parses the `Key: value` lines of an `information` file.
pub(crate) fn parse_information(text: &str) -> Result<Information, String> {
    let field = |name: &str| {
        text.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim().to_owned())
    };
    let required = |name: &str| {
        field(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("no `{name}:` line"))
    };
    let model = required("Model")?;
    let uuid = required("GPU UUID")?;
    let minor_text = required("Device Minor")?;
    let minor = minor_text
        .parse()
        .map_err(|_| format!("`Device Minor: {minor_text}` is not a number"))?;
    Ok(Information {
        model,
        uuid,
        minor,
        bus: required("Bus Location")?.to_ascii_lowercase(),
        excluded: field("GPU Excluded").is_some_and(|v| v.eq_ignore_ascii_case("yes")),
    })
}

/// The driver version in `/proc/driver/nvidia/version`: the first dotted number of the
/// `NVRM version:` line.
pub(crate) fn parse_driver_version(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("NVRM version:"))?;
    line.split_whitespace()
        .find(|w| {
            w.contains('.')
                && w.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && w.bytes().next().is_some_and(|b| b.is_ascii_digit())
        })
        .map(str::to_owned)
}

/// Every GPU under `driver` (normally `/proc/driver/nvidia`), numbered in bus order like NVML.
/// Memory and MIG mode are not listed there: they stay unknown (0, `None`).
pub(crate) fn read_gpus(driver: &Path) -> Result<Vec<Gpu>, GpuError> {
    let dir = driver.join("gpus");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GpuError::Io { path, source }
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(&dir))?;
        let path = entry.path().join("information");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let info = parse_information(&text).map_err(|reason| GpuError::Procfs { path, reason })?;
        if !info.excluded {
            found.push(info);
        }
    }
    found.sort_by(|a, b| a.bus.cmp(&b.bus));
    let driver_version = std::fs::read_to_string(driver.join("version"))
        .ok()
        .and_then(|t| parse_driver_version(&t));
    Ok(found
        .into_iter()
        .zip(0u32..)
        .map(|(info, index)| Gpu {
            index,
            minor: info.minor,
            uuid: info.uuid,
            name: info.model,
            memory_bytes: 0,
            mig_mode: None,
            driver: driver_version.clone(),
            mig_devices: Vec::new(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H100: &str = "Model: \t\t NVIDIA H100 80GB HBM3
IRQ:   \t\t 0
GPU UUID: \t GPU-5e2b9e3f-1a07-1b3c-d4ff-0e0a9f3f6c2b
Video BIOS: \t 96.00.74.00.0d
Bus Type: \t PCIe
DMA Size: \t 52 bits
DMA Mask: \t 0xfffffffffffff
Bus Location: \t 0000:9A:00.0
Device Minor: \t 3
GPU Firmware: \t 550.54.15
GPU Excluded:\t No
";

    const VERSION: &str = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build  (dvs-builder@U16-I1-N08-12-3)  Tue Mar  5 22:15:33 UTC 2024
GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)
";

    #[test]
    fn an_information_file_gives_model_uuid_minor_and_bus() {
        assert_eq!(
            parse_information(H100),
            Ok(Information {
                model: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-5e2b9e3f-1a07-1b3c-d4ff-0e0a9f3f6c2b".into(),
                minor: 3,
                bus: "0000:9a:00.0".into(),
                excluded: false,
            })
        );
        let excluded = H100.replace("GPU Excluded:\t No", "GPU Excluded:\t Yes");
        assert!(parse_information(&excluded).unwrap().excluded);
        // Older drivers have no `GPU Excluded` line.
        let old = H100.replace("GPU Excluded:\t No\n", "");
        assert!(!parse_information(&old).unwrap().excluded);
    }

    #[test]
    fn a_missing_or_bad_field_is_named() {
        let no_minor = H100.replace("Device Minor: \t 3\n", "");
        assert_eq!(
            parse_information(&no_minor),
            Err("no `Device Minor:` line".into())
        );
        let bad_minor = H100.replace("Device Minor: \t 3", "Device Minor: \t three");
        assert_eq!(
            parse_information(&bad_minor),
            Err("`Device Minor: three` is not a number".into())
        );
        let empty_uuid = H100.replace("GPU-5e2b9e3f-1a07-1b3c-d4ff-0e0a9f3f6c2b", "");
        assert_eq!(
            parse_information(&empty_uuid),
            Err("no `GPU UUID:` line".into())
        );
    }

    #[test]
    fn the_driver_version_comes_from_the_nvrm_line() {
        assert_eq!(parse_driver_version(VERSION).as_deref(), Some("550.54.15"));
        let proprietary = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n";
        assert_eq!(
            parse_driver_version(proprietary).as_deref(),
            Some("535.104.05")
        );
        assert_eq!(parse_driver_version("GCC version: 12.2.0\n"), None);
    }

    #[test]
    fn gpus_are_read_from_the_driver_directory_in_bus_order() {
        let root = tempfile::tempdir().unwrap();
        let driver = root.path();
        assert!(read_gpus(driver).unwrap().is_empty());
        let write = |bus: &str, text: &str| {
            let dir = driver.join("gpus").join(bus);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("information"), text).unwrap();
        };
        write("0000:9a:00.0", H100);
        write(
            "0000:18:00.0",
            &H100
                .replace("0000:9A:00.0", "0000:18:00.0")
                .replace("Device Minor: \t 3", "Device Minor: \t 0")
                .replace("5e2b9e3f", "00000000"),
        );
        write(
            "0000:20:00.0",
            &H100
                .replace("0000:9A:00.0", "0000:20:00.0")
                .replace("GPU Excluded:\t No", "GPU Excluded:\t Yes"),
        );
        std::fs::write(driver.join("version"), VERSION).unwrap();
        let gpus = read_gpus(driver).unwrap();
        let summary: Vec<(u32, u32, &str)> = gpus
            .iter()
            .map(|g| (g.index, g.minor, g.uuid.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (0, 0, "GPU-00000000-1a07-1b3c-d4ff-0e0a9f3f6c2b"),
                (1, 3, "GPU-5e2b9e3f-1a07-1b3c-d4ff-0e0a9f3f6c2b"),
            ]
        );
        assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpus[0].memory_bytes, 0);
        assert_eq!(gpus[0].mig_mode, None);
        assert_eq!(gpus[1].driver.as_deref(), Some("550.54.15"));

        write("0000:30:00.0", "Model: x\n");
        let err = read_gpus(driver).unwrap_err();
        assert!(
            err.to_string().contains("0000:30:00.0/information")
                && err.to_string().contains("no `GPU UUID:` line"),
            "{err}"
        );
    }
}
