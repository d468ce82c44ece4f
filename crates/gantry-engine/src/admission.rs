//! Admission control: never run more than the machine's declared capacity at once.
//!
//! Pure bookkeeping so the scheduler's decisions can be unit-tested without containers.

use gantry_spec::Resources;
use serde::Serialize;

/// What the engine may use at once. Steps that do not fit wait in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u32,
    /// Upper bound on concurrently running steps, whatever their requests.
    pub max_parallel: usize,
}

impl Capacity {
    /// The machine's own capacity: all online CPUs and 80% of physical memory.
    pub fn detect() -> Capacity {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1);
        let memory = physical_memory_bytes().unwrap_or(2 << 30);
        Capacity {
            cpu_millis: cpus * 1000,
            memory_bytes: memory / 10 * 8,
            gpus: count_nvidia_gpus(),
            max_parallel: 64,
        }
    }

    /// Why a step can never run here, if it cannot.
    pub fn rejects(&self, r: &Resources) -> Option<String> {
        if r.cpu_millis > self.cpu_millis {
            return Some(format!(
                "requests {} CPU but the capacity is {} CPU",
                fmt_cpu(r.cpu_millis),
                fmt_cpu(self.cpu_millis)
            ));
        }
        if r.memory_bytes > self.memory_bytes {
            return Some(format!(
                "requests {} MiB of memory but the capacity is {} MiB",
                r.memory_bytes >> 20,
                self.memory_bytes >> 20
            ));
        }
        if r.gpu > self.gpus {
            return Some(format!(
                "requests {} GPU(s) but the capacity is {}",
                r.gpu, self.gpus
            ));
        }
        None
    }
}

pub(crate) fn fmt_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        format!("{}m", millis)
    }
}

fn physical_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn count_nvidia_gpus() -> u32 {
    (0..64)
        .take_while(|i| std::path::Path::new(&format!("/dev/nvidia{i}")).exists())
        .count() as u32
}

/// Running totals against a [`Capacity`].
#[derive(Debug)]
pub(crate) struct Admission {
    capacity: Capacity,
    cpu: u64,
    memory: u64,
    gpus: u32,
    running: usize,
}

impl Admission {
    pub(crate) fn new(capacity: Capacity) -> Admission {
        Admission {
            capacity,
            cpu: 0,
            memory: 0,
            gpus: 0,
            running: 0,
        }
    }

    /// Reserves the resources when they fit, and says whether they did.
    pub(crate) fn try_admit(&mut self, r: &Resources) -> bool {
        let fits = self.running < self.capacity.max_parallel
            && self.cpu + r.cpu_millis <= self.capacity.cpu_millis
            && self.memory + r.memory_bytes <= self.capacity.memory_bytes
            && self.gpus + r.gpu <= self.capacity.gpus;
        if fits {
            self.cpu += r.cpu_millis;
            self.memory += r.memory_bytes;
            self.gpus += r.gpu;
            self.running += 1;
        }
        fits
    }

    pub(crate) fn release(&mut self, r: &Resources) {
        self.cpu = self.cpu.saturating_sub(r.cpu_millis);
        self.memory = self.memory.saturating_sub(r.memory_bytes);
        self.gpus = self.gpus.saturating_sub(r.gpu);
        self.running = self.running.saturating_sub(1);
    }

    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpu: u64, mem_mib: u64) -> Resources {
        Resources {
            cpu_millis: cpu,
            memory_bytes: mem_mib << 20,
            gpu: 0,
        }
    }

    fn cap() -> Capacity {
        Capacity {
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
            gpus: 0,
            max_parallel: 3,
        }
    }

    #[test]
    fn admits_until_cpu_is_used_up_then_queues() {
        let mut a = Admission::new(cap());
        assert!(a.try_admit(&res(1000, 100)));
        assert!(a.try_admit(&res(500, 100)));
        assert!(!a.try_admit(&res(1000, 100)), "2.5 CPU > 2 CPU");
        assert!(a.try_admit(&res(500, 100)));
        assert_eq!(a.running(), 3);
        a.release(&res(1000, 100));
        assert!(a.try_admit(&res(1000, 100)));
    }

    #[test]
    fn memory_and_parallelism_bound_admission() {
        let mut a = Admission::new(cap());
        assert!(a.try_admit(&res(100, 600)));
        assert!(!a.try_admit(&res(100, 600)), "1200 MiB > 1024 MiB");
        assert!(a.try_admit(&res(100, 100)));
        assert!(a.try_admit(&res(100, 100)));
        assert!(!a.try_admit(&res(1, 1)), "max_parallel is 3");
    }

    #[test]
    fn rejects_steps_larger_than_the_machine() {
        let c = cap();
        assert!(c.rejects(&res(2000, 1024)).is_none());
        let msg = c.rejects(&res(4000, 10)).unwrap();
        assert!(msg.contains("4 CPU") && msg.contains("2 CPU"), "{msg}");
        assert!(c.rejects(&res(100, 4096)).unwrap().contains("4096 MiB"));
        let gpu = Resources {
            gpu: 1,
            ..res(100, 10)
        };
        assert!(c.rejects(&gpu).unwrap().contains("GPU"));
    }
}
