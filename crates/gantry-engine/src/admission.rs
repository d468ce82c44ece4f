//! Admission control: never run more than the machine's declared capacity at once, shared
//! by every run of the engine, within each project's quota, fairly between projects.
//!
//! The decisions are `gantry_alloc::queue`'s (pure); this module adds the waiting (futures
//! that resolve when admitted) and the GPU devices each step holds.

use gantry_alloc::queue::{
    Amount, FairQueue, Kind, Priority, ProjectStanding, Quota, Request, Waiting,
};
use gantry_spec::Resources;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

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

/// The engine's admission: one [`FairQueue`] for every run this engine executes, so
/// concurrent runs share the machine's capacity (and a server's project quotas) instead of
/// each assuming all of it, plus the GPUs steps hold. Requests wait as [`Pending`] futures;
/// what they are granted is a [`Grant`] that gives everything back when dropped.
pub struct Scheduler {
    state: Mutex<State>,
    /// The machine's GPUs (NVML inventory); empty when unreadable.
    gpus: Arc<Vec<gantry_gpu::Gpu>>,
    /// GPUs are the cluster's to place (see [`Scheduler::for_cluster`]).
    cluster: bool,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scheduler")
    }
}

struct State {
    queue: FairQueue,
    waiters: HashMap<u64, oneshot::Sender<Grant>>,
    /// NVML indexes held by running steps.
    held_gpus: BTreeSet<u32>,
}

/// Where a run's queue stands, for `gantry queue`.
#[derive(Clone, Debug, Serialize)]
pub struct QueueSnapshot {
    pub capacity: QueueCapacity,
    pub used: Amount,
    pub running_steps: usize,
    pub waiting: Vec<Waiting>,
    pub projects: Vec<ProjectStanding>,
}

/// The capacity the queue admits against.
#[derive(Clone, Debug, Serialize)]
pub struct QueueCapacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u32,
    pub max_parallel: usize,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Scheduler {
    pub fn new(capacity: Capacity, gpus: Arc<Vec<gantry_gpu::Gpu>>) -> Arc<Scheduler> {
        Self::with_placement(capacity, gpus, false)
    }

    /// For a runtime whose cluster places GPUs itself (Kubernetes): GPUs are counted against
    /// the capacity only, never given device numbers, and no model or memory is refused here.
    pub fn for_cluster(capacity: Capacity) -> Arc<Scheduler> {
        Self::with_placement(capacity, Arc::new(Vec::new()), true)
    }

    fn with_placement(
        capacity: Capacity,
        gpus: Arc<Vec<gantry_gpu::Gpu>>,
        cluster: bool,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            cluster,
            state: Mutex::new(State {
                queue: FairQueue::new(gantry_alloc::queue::Capacity {
                    cpu_millis: capacity.cpu_millis,
                    memory_bytes: capacity.memory_bytes,
                    gpus: capacity.gpus,
                    max_parallel: capacity.max_parallel,
                }),
                waiters: HashMap::new(),
                held_gpus: BTreeSet::new(),
            }),
            gpus,
        })
    }

    /// Sets or lifts a project's quota; waiting requests it now lets through are admitted.
    pub fn set_quota(self: &Arc<Self>, project: &str, quota: Option<Quota>) {
        let orphans = {
            let mut st = lock(&self.state);
            st.queue.set_quota(project, quota);
            self.dispatch(&mut st)
        };
        drop(orphans);
    }

    pub fn quota(&self, project: &str) -> Option<Quota> {
        lock(&self.state).queue.quota(project).cloned()
    }

    /// Why a step of `project` asking for `r` can never run here under the project's quota
    /// or on the GPUs found, if it cannot (the machine's size is [`Capacity::rejects`]).
    pub fn rejects(&self, project: &str, r: &Resources) -> Option<String> {
        if let Some(reason) = lock(&self.state).queue.quota_rejects(project, &amount(r)) {
            return Some(reason);
        }
        self.rejects_devices(r)
    }

    /// The most memory a step of `project` may grow to.
    pub fn memory_limit(&self, project: &str) -> u64 {
        lock(&self.state).queue.memory_limit(project)
    }

    /// Queues `req` (under `ticket` when restoring a queue's order); the returned future
    /// resolves once it is admitted. Dropping it withdraws the request.
    pub fn request(self: &Arc<Self>, req: Request, ticket: Option<u64>) -> Pending {
        self.enqueue(req, ticket, 0)
    }

    /// [`Scheduler::request`], giving back `idle_memory` that `req`'s step holds (within the
    /// same admission pass, so nothing else takes it first).
    fn enqueue(self: &Arc<Self>, req: Request, ticket: Option<u64>, idle_memory: u64) -> Pending {
        let (tx, rx) = oneshot::channel();
        let (ticket, orphans) = {
            let mut st = lock(&self.state);
            if idle_memory > 0 {
                let idle = Amount {
                    memory_bytes: idle_memory,
                    ..Amount::default()
                };
                st.queue.release_idle(&req.project, &idle);
            }
            let ticket = match ticket {
                Some(t) => {
                    st.queue.push_at(t, req);
                    t
                }
                None => st.queue.push(req),
            };
            st.waiters.insert(ticket, tx);
            (ticket, self.dispatch(&mut st))
        };
        drop(orphans);
        Pending {
            sched: Arc::clone(self),
            ticket,
            rx,
            done: false,
        }
    }

    /// Each project's standing (quota, what it holds, runs in flight, how many wait),
    /// without ordering the queue: what metrics and the quota sync need.
    pub fn standings(&self) -> Vec<ProjectStanding> {
        lock(&self.state).queue.standings()
    }

    /// The queue now: what waits, in order, and why; each project's standing.
    pub fn snapshot(&self) -> QueueSnapshot {
        let st = lock(&self.state);
        let cap = st.queue.capacity();
        let held = &st.held_gpus;
        let waiting = st
            .queue
            .snapshot(|r| self.place(cap.gpus, r, held).map(|_| ()));
        QueueSnapshot {
            capacity: QueueCapacity {
                cpu_millis: cap.cpu_millis,
                memory_bytes: cap.memory_bytes,
                gpus: cap.gpus,
                max_parallel: cap.max_parallel,
            },
            used: st.queue.used(),
            running_steps: st.queue.running(),
            waiting,
            projects: st.queue.standings(),
        }
    }

    /// Admits what may go now and hands each its grant. Returns grants nobody waits for any
    /// more, to be dropped (released) once the lock is gone.
    fn dispatch(self: &Arc<Self>, st: &mut State) -> Vec<Grant> {
        let mut orphans = Vec::new();
        loop {
            let cap_gpus = st.queue.capacity().gpus;
            let State {
                queue, held_gpus, ..
            } = &mut *st;
            let held: &BTreeSet<u32> = held_gpus;
            let Some((ticket, req)) =
                queue.admit_next(|r| self.place(cap_gpus, r, held).map(|_| ()))
            else {
                return orphans;
            };
            let placement = self
                .place(cap_gpus, &req, &st.held_gpus)
                .unwrap_or_default();
            st.held_gpus.extend(placement.indexes.iter().copied());
            let grant = Grant {
                sched: Arc::clone(self),
                project: req.project,
                kind: req.kind,
                demand: req.demand,
                placement,
                run_slot: req.kind == Kind::StartRun,
                released: false,
            };
            match st.waiters.remove(&ticket) {
                Some(tx) => {
                    if let Err(g) = tx.send(grant) {
                        orphans.push(g);
                    }
                }
                None => orphans.push(grant),
            }
        }
    }

    /// The devices a GPU request gets now, or why none.
    fn place(&self, capacity: u32, r: &Request, held: &BTreeSet<u32>) -> Result<Placement, String> {
        let count = r.demand.gpus;
        if count == 0 {
            return Ok(Placement::default());
        }
        if self.gpus.is_empty() {
            // Device nodes without an inventory (NVML unreadable): the first free minors.
            let free: Vec<u32> = (0..capacity)
                .filter(|i| !held.contains(i))
                .take(count as usize)
                .collect();
            if free.len() < count as usize {
                return Err(format!(
                    "{} of {capacity} GPU(s) free; needs {count}",
                    free.len()
                ));
            }
            return Ok(Placement {
                minors: free.clone(),
                indexes: free,
                model: None,
            });
        }
        let indexes = gantry_gpu::place(
            &self.gpus,
            held,
            count,
            r.gpu_memory_bytes,
            r.gpu_model.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        let model = self
            .gpus
            .iter()
            .find(|g| Some(&g.index) == indexes.first())
            .map(|g| g.name.clone());
        Ok(Placement {
            minors: gantry_gpu::minors_of(&self.gpus, &indexes),
            indexes,
            model,
        })
    }

    /// Why a step can never be placed here (GPU model or memory), if it cannot.
    fn rejects_devices(&self, r: &Resources) -> Option<String> {
        if r.gpu == 0 || self.cluster {
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

    fn release(self: &Arc<Self>, g: &Grant) {
        let orphans = {
            let mut st = lock(&self.state);
            st.queue.release(&g.project, &g.demand, g.kind);
            for i in &g.placement.indexes {
                st.held_gpus.remove(i);
            }
            if g.run_slot {
                st.queue.run_ended(&g.project);
            }
            self.dispatch(&mut st)
        };
        drop(orphans);
    }

    fn withdraw(self: &Arc<Self>, ticket: u64) {
        let orphans = {
            let mut st = lock(&self.state);
            st.waiters.remove(&ticket);
            st.queue.withdraw(ticket);
            // A withdrawn request may have held a reservation.
            self.dispatch(&mut st)
        };
        drop(orphans);
    }
}

/// The resources of a step as the queue counts them.
pub(crate) fn amount(r: &Resources) -> Amount {
    Amount {
        cpu_millis: r.cpu_millis,
        memory_bytes: r.memory_bytes,
        gpus: r.gpu,
    }
}

/// A request of `kind` for step `step` of run `run_id`.
pub(crate) fn step_request(
    run_id: &str,
    project: &str,
    step: &str,
    kind: Kind,
    priority: Priority,
    r: &Resources,
) -> Request {
    Request {
        run_id: run_id.to_owned(),
        project: project.to_owned(),
        step: step.to_owned(),
        kind,
        priority,
        demand: amount(r),
        gpu_model: r.gpu_model.clone(),
        gpu_memory_bytes: r.gpu_memory_bytes,
        since_ms: crate::now_ms(),
    }
}

/// A request waiting for admission; resolves to its [`Grant`]. Dropped unresolved, it
/// leaves the queue.
pub struct Pending {
    sched: Arc<Scheduler>,
    ticket: u64,
    rx: oneshot::Receiver<Grant>,
    done: bool,
}

impl Pending {
    /// Its place in submission order (kept when the queue is restored).
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    /// The grant, if it was admitted already.
    pub fn try_take(&mut self) -> Option<Grant> {
        let g = self.rx.try_recv().ok()?;
        self.done = true;
        Some(g)
    }
}

impl Future for Pending {
    type Output = Grant;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Grant> {
        match std::pin::Pin::new(&mut self.rx).poll(cx) {
            std::task::Poll::Ready(Ok(g)) => {
                self.done = true;
                std::task::Poll::Ready(g)
            }
            // The sender lives in the scheduler until it is used or this is dropped.
            std::task::Poll::Ready(Err(_)) | std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            // Withdrawn under the lock; a grant already in the channel is released when
            // the channel drops, after the lock is gone.
            self.sched.withdraw(self.ticket);
        }
    }
}

/// Resources held by an admitted step (and, for the first step of a run, the run's place
/// among its project's runs in flight). Dropping it gives them back.
pub struct Grant {
    sched: Arc<Scheduler>,
    project: String,
    kind: Kind,
    demand: Amount,
    pub(crate) placement: Placement,
    run_slot: bool,
    released: bool,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("project", &self.project)
            .field("kind", &self.kind)
            .field("demand", &self.demand)
            .finish()
    }
}

impl Grant {
    /// The run's slot among its project's runs in flight (held by the first step's grant),
    /// so that it lasts as long as the run rather than the step.
    pub(crate) fn take_run_slot(&mut self) -> Option<RunSlot> {
        if !std::mem::take(&mut self.run_slot) {
            return None;
        }
        Some(RunSlot {
            sched: Arc::clone(&self.sched),
            project: self.project.clone(),
        })
    }

    /// Waits until `extra` more memory is reserved for this step (an OOM-killed attempt
    /// retried with more); it goes before every other request. False when cancelled.
    ///
    /// The killed attempt has ended, so the memory the step holds is idle while it waits: it
    /// is given back and the grown total asked for. Two steps growing at once then never
    /// wait on each other's idle memory (each holding half of the machine, say).
    pub(crate) async fn grow(
        &mut self,
        run_id: &str,
        step: &str,
        extra: u64,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let req = Request {
            run_id: run_id.to_owned(),
            project: self.project.clone(),
            step: step.to_owned(),
            kind: Kind::Grow,
            priority: Priority::High,
            demand: Amount {
                memory_bytes: self.demand.memory_bytes + extra,
                ..Amount::default()
            },
            gpu_model: None,
            gpu_memory_bytes: 0,
            since_ms: crate::now_ms(),
        };
        let idle = std::mem::take(&mut self.demand.memory_bytes);
        let pending = self.sched.enqueue(req, None, idle);
        let mut more = tokio::select! {
            g = pending => g,
            _ = cancel.cancelled() => return false,
        };
        // One grant for the step from now on: released together, as a step.
        more.released = true;
        self.demand.memory_bytes += more.demand.memory_bytes;
        true
    }

    /// The most memory this step may grow to.
    pub(crate) fn memory_limit(&self) -> u64 {
        self.sched.memory_limit(&self.project)
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if !self.released {
            self.released = true;
            let sched = Arc::clone(&self.sched);
            sched.release(self);
        }
    }
}

/// A run's place among its project's runs in flight; given back when dropped.
pub(crate) struct RunSlot {
    sched: Arc<Scheduler>,
    project: String,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        let orphans = {
            let mut st = lock(&self.sched.state);
            st.queue.run_ended(&self.project);
            self.sched.dispatch(&mut st)
        };
        drop(orphans);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_alloc::queue::Wait;

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

    fn ask(s: &Arc<Scheduler>, run: &str, project: &str, kind: Kind, r: &Resources) -> Pending {
        s.request(
            step_request(run, project, "s", kind, Priority::Normal, r),
            None,
        )
    }

    #[tokio::test]
    async fn steps_of_concurrent_runs_share_one_capacity() {
        let s = Scheduler::new(cap(), Default::default());
        let mut a = ask(&s, "r-a", "p", Kind::StartRun, &res(1500, 100));
        let a = a.try_take().expect("fits at once");
        // Another run of another project: 1 CPU does not fit beside 1.5 CPU.
        let mut b = ask(&s, "r-b", "q", Kind::StartRun, &res(1000, 100));
        assert!(b.try_take().is_none());
        let snap = s.snapshot();
        assert_eq!(snap.waiting.len(), 1);
        assert_eq!(
            snap.waiting[0].wait.to_string(),
            "capacity: 500m of 2 CPU free on this machine; needs 1"
        );
        drop(a);
        let b = tokio::time::timeout(std::time::Duration::from_secs(5), b)
            .await
            .expect("admitted once the first step gave its CPU back");
        assert_eq!(s.snapshot().used.cpu_millis, 1000);
        drop(b);
        assert_eq!(s.snapshot().used, Amount::default());
        assert_eq!(s.snapshot().running_steps, 0);
    }

    #[tokio::test]
    async fn a_dropped_request_leaves_the_queue_and_a_run_slot_outlives_its_step() {
        let s = Scheduler::new(cap(), Default::default());
        s.set_quota(
            "p",
            Some(Quota {
                max_runs: Some(1),
                ..Quota::default()
            }),
        );
        let mut first = ask(&s, "r-1", "p", Kind::StartRun, &res(100, 10))
            .try_take()
            .unwrap();
        let slot = first
            .take_run_slot()
            .expect("the first step holds the run's slot");
        drop(first);
        let mut second = ask(&s, "r-2", "p", Kind::StartRun, &res(100, 10));
        assert!(
            second.try_take().is_none(),
            "max_runs 1: r-1 is still in flight"
        );
        assert!(matches!(
            s.snapshot().waiting[0].wait,
            Wait::MaxRuns {
                in_flight: 1,
                max: 1
            }
        ));
        let third = ask(&s, "r-3", "p", Kind::StartRun, &res(100, 10));
        drop(third);
        assert_eq!(s.snapshot().waiting.len(), 1, "the dropped request is gone");
        drop(slot);
        assert!(second.try_take().is_some(), "r-1 ended");
    }

    #[tokio::test]
    async fn a_growing_step_waits_for_memory_and_goes_first() {
        let s = Scheduler::new(cap(), Default::default());
        let mut big = ask(&s, "r", "p", Kind::StartRun, &res(100, 512))
            .try_take()
            .unwrap();
        let other = ask(&s, "r", "p", Kind::Step, &res(100, 400))
            .try_take()
            .unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        // The first step was OOM-killed and wants 512 MiB more: only 112 MiB are free.
        let s2 = Arc::clone(&s);
        let c = cancel.clone();
        let growing = tokio::spawn(async move {
            let ok = big.grow("r", "s", 512 << 20, &c).await;
            (ok, big)
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!growing.is_finished());
        let mut small = ask(&s2, "r2", "q", Kind::StartRun, &res(1, 1));
        assert!(small.try_take().is_none(), "nothing new while a step grows");
        drop(other);
        let (ok, big) = growing.await.unwrap();
        assert!(ok);
        assert_eq!(s.snapshot().used.memory_bytes, 1024 << 20);
        assert!(
            small.try_take().is_none(),
            "the grown step holds all the memory"
        );
        drop(big);
        let small = small.try_take();
        assert!(small.is_some());
        assert_eq!(
            s.snapshot().used.memory_bytes,
            1 << 20,
            "grown memory given back"
        );
        drop(small);
        // Cancelled while waiting: no memory is reserved and admission goes on.
        let mut g = ask(&s, "r3", "p", Kind::StartRun, &res(1, 1000))
            .try_take()
            .unwrap();
        let c = cancel.clone();
        let waiting = tokio::spawn(async move { g.grow("r3", "s", 512 << 20, &c).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        cancel.cancel();
        assert!(!waiting.await.unwrap());
        assert_eq!(s.snapshot().used.memory_bytes, 0);
        assert!(s.snapshot().waiting.is_empty());
    }

    #[tokio::test]
    async fn two_steps_growing_at_once_do_not_wait_on_each_other() {
        let s = Scheduler::new(cap(), Default::default());
        let take = |run: &str| ask(&s, run, "p", Kind::StartRun, &res(100, 512)).try_take();
        let (a, b) = (take("r-a").unwrap(), take("r-b").unwrap());
        assert_eq!(s.snapshot().used.memory_bytes, 1024 << 20, "all the memory");
        // Both were OOM-killed and want to double: only one grown step fits at a time.
        let cancel = tokio_util::sync::CancellationToken::new();
        let grown = |mut g: Grant, run: &'static str| {
            let c = cancel.clone();
            tokio::spawn(async move {
                let ok = g.grow(run, "s", 512 << 20, &c).await;
                (ok, g)
            })
        };
        let (first, second) = (grown(a, "r-a"), grown(b, "r-b"));
        let wait = std::time::Duration::from_secs(5);
        let (ok, a) = tokio::time::timeout(wait, first)
            .await
            .expect("the first grows on the memory both held idle")
            .unwrap();
        assert!(ok);
        assert_eq!(a.demand.memory_bytes, 1024 << 20);
        assert!(!second.is_finished(), "the second waits for the first");
        assert_eq!(s.snapshot().waiting.len(), 1);
        drop(a);
        let (ok, b) = tokio::time::timeout(wait, second)
            .await
            .expect("the second grows once the first is done")
            .unwrap();
        assert!(ok);
        assert_eq!(s.snapshot().used.memory_bytes, 1024 << 20);
        drop(b);
        assert_eq!(s.snapshot().used, Amount::default());
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

    #[tokio::test]
    async fn steps_get_distinct_matching_gpus_and_give_them_back() {
        let c = Capacity { gpus: 3, ..cap() };
        let gpus = Arc::new(vec![
            gpu(0, "NVIDIA A10", 24),
            gpu(1, "NVIDIA H200", 141),
            gpu(2, "NVIDIA H200", 141),
        ]);
        let s = Scheduler::new(c, gpus);
        let h200 = Resources {
            gpu: 1,
            gpu_model: Some("h200".into()),
            gpu_memory_bytes: 40 << 30,
            ..res(100, 10)
        };
        let a = ask(&s, "r1", "p", Kind::StartRun, &h200)
            .try_take()
            .unwrap();
        assert_eq!(
            (a.placement.indexes.clone(), a.placement.minors.clone()),
            (vec![1], vec![11])
        );
        assert_eq!(a.placement.model.as_deref(), Some("NVIDIA H200"));
        let b = ask(&s, "r2", "q", Kind::StartRun, &h200)
            .try_take()
            .unwrap();
        assert_eq!(
            b.placement.indexes,
            [2],
            "not the device the first step holds"
        );
        let mut third = ask(&s, "r3", "q", Kind::Step, &h200);
        assert!(third.try_take().is_none(), "both H200s are held");
        let why = s.snapshot().waiting[0].wait.to_string();
        assert!(why.contains("0 of the 2 GPU(s) that fit are free"), "{why}");
        // Any GPU: the A10 is left.
        let any = Resources {
            gpu: 1,
            ..res(100, 10)
        };
        let mut any = ask(&s, "r4", "p", Kind::Step, &any);
        assert_eq!(any.try_take().unwrap().placement.indexes, [0]);
        drop(a);
        assert_eq!(third.try_take().unwrap().placement.indexes, [1]);
        // Never placeable here: said before the run starts.
        let big = Resources {
            gpu_memory_bytes: 200 << 30,
            ..h200.clone()
        };
        assert!(s.rejects("p", &big).is_some());
        assert!(s.rejects("p", &h200).is_none());
        let a100 = Resources {
            gpu_model: Some("a100".into()),
            ..h200
        };
        assert!(s.rejects("p", &a100).is_some());
    }

    #[test]
    fn rejects_steps_larger_than_the_machine_or_the_quota() {
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
        let s = Scheduler::new(c, Default::default());
        s.set_quota(
            "p",
            Some(Quota {
                cpu_millis: Some(500),
                ..Quota::default()
            }),
        );
        assert_eq!(
            s.rejects("p", &res(1000, 10)).as_deref(),
            Some("requests 1 CPU but project p's quota is 500m CPU")
        );
        assert!(s.rejects("q", &res(1000, 10)).is_none());
    }
}
