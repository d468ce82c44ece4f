//! How busy a step kept its GPUs: samples in, a summary out.

use serde::{Deserialize, Serialize};

/// A sample below this utilization counts as idle.
pub const IDLE_BELOW_PERCENT: u32 = 10;

/// One reading of one GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSample {
    /// NVML index.
    pub index: u32,
    /// Share of the last sample period in which a kernel ran, 0..=100.
    pub utilization_percent: u32,
    pub memory_used_bytes: u64,
}

/// The GPU usage of one step: every sample of every one of its GPUs, accumulated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuUsage {
    /// Device samples recorded (a step with 2 GPUs adds 2 per tick).
    pub samples: u64,
    /// Sum of their utilization percentages.
    pub utilization_sum: u64,
    /// Samples below [`IDLE_BELOW_PERCENT`].
    pub idle_samples: u64,
    /// The most memory any one of the step's GPUs had in use (per GPU, like `gpu.memory`).
    pub peak_memory_used_bytes: u64,
}

impl GpuUsage {
    pub fn record(&mut self, sample: &DeviceSample) {
        let utilization = sample.utilization_percent.min(100);
        self.samples += 1;
        self.utilization_sum += u64::from(utilization);
        if utilization < IDLE_BELOW_PERCENT {
            self.idle_samples += 1;
        }
        self.peak_memory_used_bytes = self.peak_memory_used_bytes.max(sample.memory_used_bytes);
    }

    pub fn record_all(&mut self, samples: &[DeviceSample]) {
        for sample in samples {
            self.record(sample);
        }
    }

    /// Mean utilization over all samples, 0..=100; `None` before the first.
    pub fn mean_utilization_percent(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.utilization_sum as f64 / self.samples as f64)
    }

    /// Share of samples below [`IDLE_BELOW_PERCENT`], 0..=1; `None` before the first.
    pub fn idle_fraction(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.idle_samples as f64 / self.samples as f64)
    }

    /// Adds another accumulator's samples (e.g. one per attempt).
    pub fn merge(&mut self, other: &GpuUsage) {
        self.samples += other.samples;
        self.utilization_sum += other.utilization_sum;
        self.idle_samples += other.idle_samples;
        self.peak_memory_used_bytes = self
            .peak_memory_used_bytes
            .max(other.peak_memory_used_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(index: u32, utilization_percent: u32, memory_mib: u64) -> DeviceSample {
        DeviceSample {
            index,
            utilization_percent,
            memory_used_bytes: memory_mib << 20,
        }
    }

    #[test]
    fn nothing_recorded_has_no_mean_and_no_idle_share() {
        let u = GpuUsage::default();
        assert_eq!(u.mean_utilization_percent(), None);
        assert_eq!(u.idle_fraction(), None);
        assert_eq!(u.peak_memory_used_bytes, 0);
    }

    #[test]
    fn mean_peak_and_idle_share_over_every_device_sample() {
        let mut u = GpuUsage::default();
        // Two GPUs, three ticks.
        u.record_all(&[s(0, 0, 100), s(1, 5, 300)]);
        u.record_all(&[s(0, 90, 2000), s(1, 10, 500)]);
        u.record_all(&[s(0, 95, 1500), s(1, 100, 700)]);
        assert_eq!(u.samples, 6);
        assert_eq!(u.mean_utilization_percent(), Some(50.0));
        // 0 and 5 are idle; exactly 10 is not.
        assert_eq!(u.idle_fraction(), Some(2.0 / 6.0));
        assert_eq!(u.peak_memory_used_bytes, 2000 << 20);
    }

    #[test]
    fn readings_over_100_percent_are_clamped() {
        let mut u = GpuUsage::default();
        u.record(&s(0, 250, 1));
        assert_eq!(u.mean_utilization_percent(), Some(100.0));
        assert_eq!(u.idle_fraction(), Some(0.0));
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let all = [s(0, 3, 10), s(0, 40, 900), s(1, 70, 50), s(1, 8, 20)];
        let mut one = GpuUsage::default();
        one.record_all(&all);
        let (mut a, mut b) = (GpuUsage::default(), GpuUsage::default());
        a.record_all(&all[..1]);
        b.record_all(&all[1..]);
        a.merge(&b);
        assert_eq!(a, one);
        assert_eq!(one.idle_fraction(), Some(0.5));
        assert_eq!(one.peak_memory_used_bytes, 900 << 20);
    }
}
