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

    /// Reserves `extra` more memory for a running step, when it fits.
    pub(crate) fn try_grow(&mut self, extra: u64) -> bool {
        let fits = self.memory + extra <= self.capacity.memory_bytes;
        if fits {
            self.memory += extra;
        }
        fits
    }

    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.running
    }
}

/// The GPUs a step was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Placement {
    /// NVML indexes (what the sampler reads).
    pub(crate) indexes: Vec<u32>,
    /// `/dev/nvidiaN` minors (what the container gets).
    pub(crate) minors: Vec<u32>,
    /// The devices' model name.
    pub(crate) model: Option<String>,
}

/// A run's [`Admission`] shared between its scheduler loop and its steps: a step that was
/// OOM-killed and may grow waits here for memory, and while it waits no new step is admitted
/// (the growing step goes first, so it cannot starve behind a stream of small ones).
#[derive(Debug)]
pub(crate) struct Gate {
    state: std::sync::Mutex<Admission>,
    /// The machine's GPUs and those held by running steps (NVML indexes).
    gpus: std::sync::Arc<Vec<gantry_gpu::Gpu>>,
    held_gpus: std::sync::Mutex<std::collections::BTreeSet<u32>>,
    freed: tokio::sync::Notify,
    growing: std::sync::atomic::AtomicUsize,
}

impl Gate {
    pub(crate) fn new(capacity: Capacity, gpus: std::sync::Arc<Vec<gantry_gpu::Gpu>>) -> Gate {
        Gate {
            state: std::sync::Mutex::new(Admission::new(capacity)),
            gpus,
            held_gpus: Default::default(),
            freed: tokio::sync::Notify::new(),
            growing: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Admission) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    pub(crate) fn capacity(&self) -> Capacity {
        self.with(|a| a.capacity)
    }

    /// Admits a step when its CPU, memory and GPUs fit; with GPUs, the devices it gets.
    pub(crate) fn try_admit(&self, r: &Resources) -> Option<Placement> {
        if self.growing.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            return None;
        }
        let mut held = self
            .held_gpus
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let placement = self.place(r, &held)?;
        if !self.with(|a| a.try_admit(r)) {
            return None;
        }
        held.extend(placement.indexes.iter().copied());
        Some(placement)
    }

    fn place(&self, r: &Resources, held: &std::collections::BTreeSet<u32>) -> Option<Placement> {
        if r.gpu == 0 {
            return Some(Placement::default());
        }
        if self.gpus.is_empty() {
            // Device nodes without an inventory (NVML unreadable): the first free minors.
            let capacity = self.capacity().gpus;
            let free: Vec<u32> = (0..capacity)
                .filter(|i| !held.contains(i))
                .take(r.gpu as usize)
                .collect();
            return (free.len() == r.gpu as usize).then(|| Placement {
                minors: free.clone(),
                indexes: free,
                model: None,
            });
        }
        let indexes = gantry_gpu::place(
            &self.gpus,
            held,
            r.gpu,
            r.gpu_memory_bytes,
            r.gpu_model.as_deref(),
        )
        .ok()?;
        let model = self
            .gpus
            .iter()
            .find(|g| Some(&g.index) == indexes.first())
            .map(|g| g.name.clone());
        Some(Placement {
            minors: gantry_gpu::minors_of(&self.gpus, &indexes),
            indexes,
            model,
        })
    }

    /// Why a step can never be placed here (GPU model or memory), if it cannot.
    pub(crate) fn rejects(&self, r: &Resources) -> Option<String> {
        if r.gpu == 0 {
            return None;
        }
        if self.gpus.is_empty() {
            return (r.gpu_model.is_some() || r.gpu_memory_bytes > 0).then(|| {
                format!(
                    "asks for {} but no GPU inventory could be read (NVIDIA driver / NVML missing)",
                    gantry_gpu::describe_request(r.gpu, r.gpu_memory_bytes, r.gpu_model.as_deref())
                )
            });
        }
        gantry_gpu::rejects(
            &self.gpus,
            r.gpu,
            r.gpu_memory_bytes,
            r.gpu_model.as_deref(),
        )
    }

    /// Gives back a finished step's resources, the memory it grew by and its GPUs.
    pub(crate) fn release(&self, r: &Resources, extra_memory: u64, gpus: &[u32]) {
        self.with(|a| {
            a.release(r);
            a.memory = a.memory.saturating_sub(extra_memory);
        });
        if let Ok(mut held) = self.held_gpus.lock() {
            for g in gpus {
                held.remove(g);
            }
        }
        self.freed.notify_waiters();
    }

    /// Waits until `extra` more memory is reserved for a running step; false when cancelled.
    pub(crate) async fn grow(
        &self,
        extra: u64,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> bool {
        use std::sync::atomic::Ordering;
        self.growing.fetch_add(1, Ordering::SeqCst);
        let granted = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.with(|a| a.try_grow(extra)) {
                break true;
            }
            tokio::select! {
                _ = &mut freed => {}
                _ = cancel.cancelled() => break false,
            }
        };
        self.growing.fetch_sub(1, Ordering::SeqCst);
        granted
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
            ..Resources::default()
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
    fn a_growing_step_waits_for_memory_and_goes_first() {
        let gate = std::sync::Arc::new(Gate::new(cap(), Default::default()));
        assert!(gate.try_admit(&res(100, 512)).is_some());
        assert!(gate.try_admit(&res(100, 400)).is_some());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cancel = tokio_util::sync::CancellationToken::new();
            let g = std::sync::Arc::clone(&gate);
            let c = cancel.clone();
            // The first step was OOM-killed and wants 512 MiB more: only 112 MiB are free.
            let growing = tokio::spawn(async move { g.grow(512 << 20, &c).await });
            tokio::task::yield_now().await;
            assert!(!growing.is_finished());
            assert!(
                gate.try_admit(&res(1, 1)).is_none(),
                "nothing new while a step grows"
            );
            gate.release(&res(100, 400), 0, &[]);
            assert!(growing.await.unwrap());
            assert!(
                gate.try_admit(&res(1, 200)).is_none(),
                "1024 MiB held by the grown step"
            );
            gate.release(&res(100, 512), 512 << 20, &[]);
            assert!(gate.try_admit(&res(1, 1024)).is_some());
            // Cancelled while waiting: no memory is reserved and admission goes on.
            let g = std::sync::Arc::clone(&gate);
            let c = cancel.clone();
            let waiting = tokio::spawn(async move { g.grow(1, &c).await });
            tokio::task::yield_now().await;
            cancel.cancel();
            assert!(!waiting.await.unwrap());
            gate.release(&res(1, 1024), 0, &[]);
            assert!(gate.try_admit(&res(1, 1024)).is_some());
        });
    }

    fn gpu(index: u32, name: &str, gib: u64) -> gantry_gpu::Gpu {
        gantry_gpu::Gpu {
            index,
            minor: index + 10,
            uuid: format!("GPU-{index}"),
            name: name.into(),
            memory_bytes: gib << 30,
            mig_mode: None,
            driver: None,
            mig_devices: Vec::new(),
        }
    }

    #[test]
    fn steps_get_distinct_matching_gpus_and_give_them_back() {
        let c = Capacity { gpus: 3, ..cap() };
        let gpus = std::sync::Arc::new(vec![
            gpu(0, "NVIDIA A10", 24),
            gpu(1, "NVIDIA H200", 141),
            gpu(2, "NVIDIA H200", 141),
        ]);
        let gate = Gate::new(c, gpus);
        let h200 = Resources {
            gpu: 1,
            gpu_model: Some("h200".into()),
            gpu_memory_bytes: 40 << 30,
            ..res(100, 10)
        };
        let a = gate.try_admit(&h200).unwrap();
        assert_eq!((a.indexes.clone(), a.minors.clone()), (vec![1], vec![11]));
        assert_eq!(a.model.as_deref(), Some("NVIDIA H200"));
        let b = gate.try_admit(&h200).unwrap();
        assert_eq!(b.indexes, [2], "not the device the first step holds");
        assert!(gate.try_admit(&h200).is_none(), "both H200s are held");
        // Any GPU: the A10 is left.
        let any = Resources {
            gpu: 1,
            ..res(100, 10)
        };
        assert_eq!(gate.try_admit(&any).unwrap().indexes, [0]);
        gate.release(&h200, 0, &a.indexes);
        assert_eq!(gate.try_admit(&h200).unwrap().indexes, [1]);
        // Never placeable here: said before the run starts.
        let big = Resources {
            gpu_memory_bytes: 200 << 30,
            ..h200.clone()
        };
        assert!(gate.rejects(&big).is_some());
        assert!(gate.rejects(&h200).is_none());
        let a100 = Resources {
            gpu_model: Some("a100".into()),
            ..h200
        };
        assert!(gate.rejects(&a100).is_some());
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
