//! The fair queue: which waiting step (or run) is admitted next on a shared machine, and why
//! the others wait.
//!
//! Pure bookkeeping; the engine's scheduler wraps it with channels and GPU devices.
//!
//! * **Quotas** cap what one project holds at once (CPU, memory, GPUs) and how many of its
//!   runs are in flight. A request that can never fit its project's quota is refused up
//!   front ([`FairQueue::quota_rejects`]; the engine checks the machine's size); one that
//!   does not fit *now* waits.
//! * **Fair share** between projects (weighted fair queuing): each project accrues service
//!   as its requests are admitted — the request's dominant share of the machine (the largest
//!   of its CPU, memory and GPU fractions) divided by the project's weight — and the project
//!   that received the least goes next, so projects take turns whatever the order they
//!   submitted in, and a project of weight 2 gets two turns for one. A project that was idle
//!   starts at the least service of the active ones (no credit is banked while idle). Within
//!   a project: priority class, then submission order.
//! * **No starvation**: a request that does not fit may be passed by later ones that do
//!   (backfill), but only [`FairQueue::max_bypass`] times; after that it holds a reservation
//!   and nothing behind it is admitted (for a quota: nothing more of its project) until it
//!   fits. A step growing its memory after an OOM kill is never passed.

use crate::recommend::{fmt_cpu, fmt_memory};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// `fmt_cpu`, but nothing is `0`.
fn cpu(millis: u64) -> String {
    if millis == 0 {
        "0".into()
    } else {
        fmt_cpu(millis)
    }
}

/// CPU, memory and GPUs, in the units requests are made in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Amount {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u32,
}

impl Amount {
    fn add(&mut self, o: &Amount) {
        self.cpu_millis += o.cpu_millis;
        self.memory_bytes += o.memory_bytes;
        self.gpus += o.gpus;
    }

    fn sub(&mut self, o: &Amount) {
        self.cpu_millis = self.cpu_millis.saturating_sub(o.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_sub(o.memory_bytes);
        self.gpus = self.gpus.saturating_sub(o.gpus);
    }
}

/// What the machine offers at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u32,
    /// Steps running at once, whatever their requests.
    pub max_parallel: usize,
}

/// An admin's limits for one project. `None`: no limit of that kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub gpus: Option<u32>,
    /// Runs in flight at once (admitted and not finished).
    pub max_runs: Option<u32>,
    /// Fair-share weight (≥ 1): a project of weight 2 gets twice the share of one of weight 1.
    pub weight: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            cpu_millis: None,
            memory_bytes: None,
            gpus: None,
            max_runs: None,
            weight: 1,
        }
    }
}

/// Priority class of a run within its project.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub const NAMES: &'static str = "low, normal or high";

    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "low" => Some(Priority::Low),
            "normal" => Some(Priority::Normal),
            "high" => Some(Priority::High),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    /// The stored number (0, 1, 2).
    pub fn rank(self) -> i64 {
        self as i64
    }

    pub fn from_rank(n: i64) -> Priority {
        match n {
            i64::MIN..=0 => Priority::Low,
            1 => Priority::Normal,
            _ => Priority::High,
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The first step of a run: admitting it starts the run (counts against `max_runs`).
    StartRun,
    /// A further step of a running run.
    Step,
    /// More memory for a running step that was OOM-killed (not a new step).
    Grow,
}

/// A request waiting for admission.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    pub run_id: String,
    pub project: String,
    pub step: String,
    pub kind: Kind,
    pub priority: Priority,
    pub demand: Amount,
    /// With GPUs: the model words and per-device memory they must have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub gpu_memory_bytes: u64,
    /// When it started to wait (for display).
    pub since_ms: i64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a request waits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Wait {
    /// The project has its `max_runs` runs in flight.
    MaxRuns { in_flight: u32, max: u32 },
    /// The project's quota of `resource` is used up.
    Quota {
        resource: &'static str,
        used: String,
        limit: String,
        needs: String,
    },
    /// The machine has too little of `resource` free.
    Capacity {
        resource: &'static str,
        free: String,
        total: String,
        needs: String,
    },
    /// No free GPU matches (model, memory).
    Device { reason: String },
    /// Held back so that an earlier request that waited longest starts first.
    Reserved { run_id: String, step: String },
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::MaxRuns { in_flight, max } => write!(
                f,
                "quota: the project has {in_flight} of {max} runs in flight (max_runs)"
            ),
            Wait::Quota {
                resource,
                used,
                limit,
                needs,
            } => write!(
                f,
                "quota: the project uses {used} of its {limit} {resource}; needs {needs} more"
            ),
            Wait::Capacity {
                resource,
                free,
                total,
                needs,
            } => write!(
                f,
                "capacity: {free} of {total} {resource} free on this machine; needs {needs}"
            ),
            Wait::Device { reason } => write!(f, "capacity: {reason}"),
            Wait::Reserved { run_id, step } => write!(
                f,
                "reserved: held back for run {run_id} step {step}, which has waited longest"
            ),
        }
    }
}

/// A waiting request as [`FairQueue::snapshot`] shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Waiting {
    pub ticket: u64,
    /// 1 = next in line.
    pub position: usize,
    #[serde(flatten)]
    pub request: Request,
    pub wait: Wait,
    /// How many times later requests went first.
    pub bypassed: u32,
}

/// One project's standing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProjectStanding {
    pub project: String,
    pub quota: Option<Quota>,
    pub used: Amount,
    pub runs_in_flight: u32,
    pub waiting: usize,
    /// Dominant share of the machine in use, per weight (0–1 for weight 1).
    pub share: f64,
}

#[derive(Clone, Debug, Default)]
struct Project {
    quota: Option<Quota>,
    used: Amount,
    runs: u32,
    /// Dominant share of what was admitted so far, per weight.
    served: f64,
    waiting: usize,
}

impl Project {
    fn weight(&self) -> f64 {
        f64::from(self.quota.as_ref().map_or(1, |q| q.weight.max(1)))
    }
}

#[derive(Clone, Debug)]
struct Entry {
    req: Request,
    bypassed: u32,
}

/// Default for [`FairQueue::max_bypass`].
pub const DEFAULT_MAX_BYPASS: u32 = 8;

/// Admission with quotas, fair share and no starvation. Tickets are submission order.
#[derive(Debug)]
pub struct FairQueue {
    capacity: Capacity,
    /// How many later requests may go before one that does not fit; then it reserves.
    pub max_bypass: u32,
    used: Amount,
    running: usize,
    projects: BTreeMap<String, Project>,
    waiting: BTreeMap<u64, Entry>,
    next_ticket: u64,
}

/// Why a request would be held back, or that it fits.
enum Check {
    Fits,
    Quota(Wait),
    Capacity(Wait),
    MaxRuns(Wait),
}

impl FairQueue {
    pub fn new(capacity: Capacity) -> FairQueue {
        FairQueue {
            capacity,
            max_bypass: DEFAULT_MAX_BYPASS,
            used: Amount::default(),
            running: 0,
            projects: BTreeMap::new(),
            waiting: BTreeMap::new(),
            next_ticket: 1,
        }
    }

    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// What running steps hold now.
    pub fn used(&self) -> Amount {
        self.used
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Sets (or with `None` lifts) a project's quota. Takes effect at the next admission.
    pub fn set_quota(&mut self, project: &str, quota: Option<Quota>) {
        self.projects.entry(project.to_owned()).or_default().quota = quota;
    }

    pub fn quota(&self, project: &str) -> Option<&Quota> {
        self.projects.get(project)?.quota.as_ref()
    }

    /// Why a request of `project` for `demand` can never be admitted under its project's
    /// quota, if it cannot. (Whether it fits the machine at all is the caller's check:
    /// the engine's capacity says it in its own units.)
    pub fn quota_rejects(&self, project: &str, demand: &Amount) -> Option<String> {
        let q = self.quota(project)?;
        if let Some(limit) = q.cpu_millis.filter(|l| demand.cpu_millis > *l) {
            return Some(format!(
                "requests {} CPU but project {project}'s quota is {} CPU",
                fmt_cpu(demand.cpu_millis),
                fmt_cpu(limit)
            ));
        }
        if let Some(limit) = q.memory_bytes.filter(|l| demand.memory_bytes > *l) {
            return Some(format!(
                "requests {} of memory but project {project}'s quota is {}",
                fmt_memory(demand.memory_bytes),
                fmt_memory(limit)
            ));
        }
        if let Some(limit) = q.gpus.filter(|l| demand.gpus > *l) {
            return Some(format!(
                "requests {} GPU(s) but project {project}'s quota is {limit}",
                demand.gpus
            ));
        }
        if q.max_runs == Some(0) {
            return Some(format!(
                "project {project}'s quota allows no runs (max_runs 0)"
            ));
        }
        None
    }

    /// The most memory a step of `project` can ever hold (the machine's or the quota's).
    pub fn memory_limit(&self, project: &str) -> u64 {
        let quota = self.quota(project).and_then(|q| q.memory_bytes);
        quota.map_or(self.capacity.memory_bytes, |q| {
            q.min(self.capacity.memory_bytes)
        })
    }

    /// Queues a request; the ticket orders it among equals (smaller: earlier).
    pub fn push(&mut self, req: Request) -> u64 {
        let ticket = self.next_ticket;
        self.push_at(ticket, req);
        ticket
    }

    /// Queues a request under a given ticket (a queue restored after a restart keeps its
    /// order); later [`push`](Self::push)es get larger tickets.
    pub fn push_at(&mut self, ticket: u64, req: Request) {
        self.next_ticket = self.next_ticket.max(ticket + 1);
        // A project that had nothing going banks no credit while idle: it starts at the
        // least service of the projects that are active.
        let floor = self
            .projects
            .values()
            .filter(|p| p.waiting > 0 || p.runs > 0 || p.used != Amount::default())
            .map(|p| p.served)
            .fold(f64::INFINITY, f64::min);
        let p = self.projects.entry(req.project.clone()).or_default();
        let idle = p.waiting == 0 && p.runs == 0 && p.used == Amount::default();
        if idle && floor.is_finite() && p.served < floor {
            p.served = floor;
        }
        p.waiting += 1;
        self.waiting.insert(ticket, Entry { req, bypassed: 0 });
    }

    /// Takes a request out of the queue (cancelled); None when it is not waiting.
    pub fn withdraw(&mut self, ticket: u64) -> Option<Request> {
        let e = self.waiting.remove(&ticket)?;
        if let Some(p) = self.projects.get_mut(&e.req.project) {
            p.waiting = p.waiting.saturating_sub(1);
        }
        Some(e.req)
    }

    /// Gives back what an admitted request held: `kind` as admitted (a `Grow` holds no
    /// step slot).
    pub fn release(&mut self, project: &str, demand: &Amount, kind: Kind) {
        self.used.sub(demand);
        if kind != Kind::Grow {
            self.running = self.running.saturating_sub(1);
        }
        if let Some(p) = self.projects.get_mut(project) {
            p.used.sub(demand);
        }
    }

    /// Gives back `idle`, a part of what an admitted request of `project` holds that it does
    /// not use for now (an OOM-killed step's memory while it waits to grow): free for others,
    /// and no longer counted as service, since the step's [`Kind::Grow`] request will ask for
    /// it again together with the growth.
    pub fn release_idle(&mut self, project: &str, idle: &Amount) {
        self.used.sub(idle);
        let share = self.dominant(idle);
        if let Some(p) = self.projects.get_mut(project) {
            p.used.sub(idle);
            p.served = (p.served - share / p.weight()).max(0.0);
        }
    }

    /// A run admitted with a [`Kind::StartRun`] request has ended.
    pub fn run_ended(&mut self, project: &str) {
        if let Some(p) = self.projects.get_mut(project) {
            p.runs = p.runs.saturating_sub(1);
        }
    }

    fn dominant(&self, a: &Amount) -> f64 {
        let frac = |used: f64, total: f64| if total > 0.0 { used / total } else { 0.0 };
        let c = &self.capacity;
        frac(a.cpu_millis as f64, c.cpu_millis as f64)
            .max(frac(a.memory_bytes as f64, c.memory_bytes as f64))
            .max(frac(f64::from(a.gpus), f64::from(c.gpus)))
    }

    fn share(&self, p: &Project) -> f64 {
        self.dominant(&p.used) / p.weight()
    }

    /// Tickets in the order they are considered: growing steps first; then, turn by turn,
    /// the head of the project that received the least service so far (per weight; ties:
    /// the higher priority, then the earlier ticket), each turn adding the head's share to
    /// its project's service — the order they would be admitted in if all fitted.
    fn order(&self) -> Vec<u64> {
        use std::cmp::Reverse;
        use std::collections::VecDeque;
        let mut out: Vec<u64> = Vec::with_capacity(self.waiting.len());
        let mut lines: BTreeMap<&str, Vec<(Reverse<Priority>, u64)>> = BTreeMap::new();
        for (t, e) in &self.waiting {
            if e.req.kind == Kind::Grow {
                out.push(*t);
            } else {
                lines
                    .entry(e.req.project.as_str())
                    .or_default()
                    .push((Reverse(e.req.priority), *t));
            }
        }
        /// One project's waiting requests in its own order, and its service so far.
        struct Line {
            served: f64,
            weight: f64,
            queue: VecDeque<(Reverse<Priority>, u64)>,
        }
        let mut lines: Vec<Line> = lines
            .into_iter()
            .map(|(name, mut v)| {
                v.sort();
                let (served, weight) = self
                    .projects
                    .get(name)
                    .map_or((0.0, 1.0), |p| (p.served, p.weight()));
                Line {
                    served,
                    weight,
                    queue: VecDeque::from(v),
                }
            })
            .collect();
        loop {
            let best = lines
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.queue.front().map(|h| (i, l.served, *h)))
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)));
            let Some((i, _, (_, ticket))) = best else {
                return out;
            };
            let line = &mut lines[i];
            line.queue.pop_front();
            let demand = &self.waiting[&ticket].req.demand;
            line.served += self.dominant(demand).max(1e-6) / line.weight;
            out.push(ticket);
        }
    }

    fn check(&self, r: &Request) -> Check {
        let d = &r.demand;
        let p = self.projects.get(&r.project);
        if let Some(q) = p.and_then(|p| p.quota.as_ref()) {
            let runs = p.map_or(0, |p| p.runs);
            if r.kind == Kind::StartRun
                && let Some(max) = q.max_runs.filter(|m| runs >= *m)
            {
                return Check::MaxRuns(Wait::MaxRuns {
                    in_flight: runs,
                    max,
                });
            }
            let used = p.map(|p| p.used).unwrap_or_default();
            if let Some(limit) = q.cpu_millis.filter(|l| used.cpu_millis + d.cpu_millis > *l) {
                return Check::Quota(Wait::Quota {
                    resource: "CPU",
                    used: cpu(used.cpu_millis),
                    limit: fmt_cpu(limit),
                    needs: fmt_cpu(d.cpu_millis),
                });
            }
            if let Some(limit) = q
                .memory_bytes
                .filter(|l| used.memory_bytes + d.memory_bytes > *l)
            {
                return Check::Quota(Wait::Quota {
                    resource: "memory",
                    used: fmt_memory(used.memory_bytes),
                    limit: fmt_memory(limit),
                    needs: fmt_memory(d.memory_bytes),
                });
            }
            if let Some(limit) = q.gpus.filter(|l| used.gpus + d.gpus > *l) {
                return Check::Quota(Wait::Quota {
                    resource: "GPUs",
                    used: used.gpus.to_string(),
                    limit: limit.to_string(),
                    needs: d.gpus.to_string(),
                });
            }
        }
        let c = &self.capacity;
        if r.kind != Kind::Grow && self.running >= c.max_parallel {
            return Check::Capacity(Wait::Capacity {
                resource: "parallel step slots",
                free: "0".into(),
                total: c.max_parallel.to_string(),
                needs: "1".into(),
            });
        }
        if self.used.cpu_millis + d.cpu_millis > c.cpu_millis {
            return Check::Capacity(Wait::Capacity {
                resource: "CPU",
                free: cpu(c.cpu_millis.saturating_sub(self.used.cpu_millis)),
                total: fmt_cpu(c.cpu_millis),
                needs: fmt_cpu(d.cpu_millis),
            });
        }
        if self.used.memory_bytes + d.memory_bytes > c.memory_bytes {
            return Check::Capacity(Wait::Capacity {
                resource: "memory",
                free: fmt_memory(c.memory_bytes.saturating_sub(self.used.memory_bytes)),
                total: fmt_memory(c.memory_bytes),
                needs: fmt_memory(d.memory_bytes),
            });
        }
        if self.used.gpus + d.gpus > c.gpus {
            return Check::Capacity(Wait::Capacity {
                resource: "GPUs",
                free: c.gpus.saturating_sub(self.used.gpus).to_string(),
                total: c.gpus.to_string(),
                needs: d.gpus.to_string(),
            });
        }
        Check::Fits
    }

    /// Walks the queue in order and returns the first request that may go now, with the
    /// tickets it passes (capacity-blocked ones, and quota-blocked ones of its project), or
    /// the reasons of everything when `explain` is set.
    fn scan(
        &self,
        device: &mut dyn FnMut(&Request) -> Result<(), String>,
        mut explain: Option<&mut Vec<(u64, Wait)>>,
    ) -> Option<(u64, Vec<u64>)> {
        let mut passed_capacity: Vec<u64> = Vec::new();
        let mut passed_quota: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        let mut reserved_all: Option<u64> = None;
        let mut reserved_projects: HashSet<&str> = HashSet::new();
        let mut project_holder: BTreeMap<&str, u64> = BTreeMap::new();
        for t in self.order() {
            let e = &self.waiting[&t];
            let r = &e.req;
            let holder = reserved_all.or_else(|| {
                reserved_projects
                    .contains(r.project.as_str())
                    .then(|| project_holder[r.project.as_str()])
            });
            let check = self.check(r);
            let wait = match check {
                Check::MaxRuns(w) => Some(w),
                Check::Quota(w) => {
                    if holder.is_none() {
                        passed_quota.entry(&r.project).or_default().push(t);
                        if r.kind == Kind::Grow || e.bypassed >= self.max_bypass {
                            reserved_projects.insert(&r.project);
                            project_holder.insert(&r.project, t);
                        }
                    }
                    Some(w)
                }
                Check::Capacity(w) => {
                    if holder.is_none() {
                        passed_capacity.push(t);
                        if r.kind == Kind::Grow || e.bypassed >= self.max_bypass {
                            reserved_all = Some(t);
                        }
                    }
                    Some(w)
                }
                Check::Fits => match holder {
                    Some(h) => {
                        let by = &self.waiting[&h].req;
                        Some(Wait::Reserved {
                            run_id: by.run_id.clone(),
                            step: by.step.clone(),
                        })
                    }
                    None => match device(r) {
                        Ok(()) => {
                            if explain.is_none() {
                                let mut passed = passed_capacity;
                                passed.extend(
                                    passed_quota.remove(r.project.as_str()).unwrap_or_default(),
                                );
                                return Some((t, passed));
                            }
                            None
                        }
                        Err(reason) => {
                            passed_capacity.push(t);
                            if e.bypassed >= self.max_bypass {
                                reserved_all = Some(t);
                            }
                            Some(Wait::Device { reason })
                        }
                    },
                },
            };
            if let (Some(out), Some(w)) = (explain.as_deref_mut(), wait) {
                out.push((t, w));
            }
        }
        None
    }

    /// Admits the next request that may go now, if any: its resources are counted as held
    /// until [`release`](Self::release). `device` says whether a GPU request can be placed
    /// now (and why not).
    pub fn admit_next(
        &mut self,
        mut device: impl FnMut(&Request) -> Result<(), String>,
    ) -> Option<(u64, Request)> {
        let (ticket, passed) = self.scan(&mut device, None)?;
        for t in passed {
            if let Some(e) = self.waiting.get_mut(&t) {
                e.bypassed += 1;
            }
        }
        let e = self.waiting.remove(&ticket)?;
        let r = e.req;
        self.used.add(&r.demand);
        if r.kind != Kind::Grow {
            self.running += 1;
        }
        let dominant = self.dominant(&r.demand);
        let p = self.projects.entry(r.project.clone()).or_default();
        p.used.add(&r.demand);
        p.waiting = p.waiting.saturating_sub(1);
        if r.kind == Kind::StartRun {
            p.runs += 1;
        }
        // Service counts in machine shares; a request of nothing still counts a little, so
        // projects of tiny steps take turns too.
        p.served += dominant.max(1e-6) / p.weight();
        Some((ticket, r))
    }

    /// Every waiting request in the order it would be considered, with why it waits.
    pub fn snapshot(&self, mut device: impl FnMut(&Request) -> Result<(), String>) -> Vec<Waiting> {
        let mut reasons = Vec::new();
        self.scan(&mut device, Some(&mut reasons));
        let reasons: BTreeMap<u64, Wait> = reasons.into_iter().collect();
        self.order()
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let e = &self.waiting[&t];
                Waiting {
                    ticket: t,
                    position: i + 1,
                    request: e.req.clone(),
                    // Only a request that was about to be admitted has no reason; a snapshot
                    // is taken after admission, so that is a moment's race.
                    wait: reasons.get(&t).cloned().unwrap_or(Wait::Capacity {
                        resource: "turn",
                        free: "-".into(),
                        total: "-".into(),
                        needs: "-".into(),
                    }),
                    bypassed: e.bypassed,
                }
            })
            .collect()
    }

    /// Each project that has a quota, holds something or waits.
    pub fn standings(&self) -> Vec<ProjectStanding> {
        self.projects
            .iter()
            .filter(|(_, p)| {
                p.quota.is_some() || p.waiting > 0 || p.runs > 0 || p.used != Amount::default()
            })
            .map(|(name, p)| ProjectStanding {
                project: name.clone(),
                quota: p.quota.clone(),
                used: p.used,
                runs_in_flight: p.runs,
                waiting: p.waiting,
                share: self.share(p),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;

    fn cap(cpu: u64) -> Capacity {
        Capacity {
            cpu_millis: cpu * 1000,
            memory_bytes: 64 * GI,
            gpus: 0,
            max_parallel: 64,
        }
    }

    fn req(run: &str, project: &str, kind: Kind, cpu_millis: u64) -> Request {
        Request {
            run_id: run.into(),
            project: project.into(),
            step: "s".into(),
            kind,
            priority: Priority::Normal,
            demand: Amount {
                cpu_millis,
                memory_bytes: GI,
                gpus: 0,
            },
            gpu_model: None,
            gpu_memory_bytes: 0,
            since_ms: 0,
        }
    }

    fn no_devices(_: &Request) -> Result<(), String> {
        Ok(())
    }

    /// Admits everything that may go now; the runs admitted, in order.
    fn drain(q: &mut FairQueue) -> Vec<(String, Request)> {
        let mut out = Vec::new();
        while let Some((_, r)) = q.admit_next(no_devices) {
            out.push((r.run_id.clone(), r));
        }
        out
    }

    fn finish(q: &mut FairQueue, r: &Request) {
        q.release(&r.project, &r.demand, r.kind);
        if r.kind == Kind::StartRun {
            q.run_ended(&r.project);
        }
    }

    /// Runs one request at a time to the end, returning the admission order.
    fn serial_order(q: &mut FairQueue) -> Vec<String> {
        let mut order = Vec::new();
        loop {
            let admitted = drain(q);
            if admitted.is_empty() {
                return order;
            }
            for (id, r) in admitted {
                order.push(id);
                finish(q, &r);
            }
        }
    }

    #[test]
    fn projects_take_turns_instead_of_first_come_first_served() {
        let mut q = FairQueue::new(cap(1));
        for i in 1..=4 {
            q.push(req(&format!("a{i}"), "a", Kind::StartRun, 1000));
        }
        q.push(req("b1", "b", Kind::StartRun, 1000));
        q.push(req("b2", "b", Kind::StartRun, 1000));
        assert_eq!(
            serial_order(&mut q),
            ["a1", "b1", "a2", "b2", "a3", "a4"],
            "b's runs were submitted after all of a's and still alternate with them"
        );
    }

    #[test]
    fn a_heavier_weight_gets_more_turns() {
        let mut q = FairQueue::new(cap(1));
        q.set_quota(
            "a",
            Some(Quota {
                weight: 2,
                ..Quota::default()
            }),
        );
        for i in 1..=4 {
            q.push(req(&format!("a{i}"), "a", Kind::StartRun, 1000));
            q.push(req(&format!("b{i}"), "b", Kind::StartRun, 1000));
        }
        let order = serial_order(&mut q);
        assert_eq!(order, ["a1", "b1", "a2", "b2", "a3", "a4", "b3", "b4"]);
        // Over the first six turns a had twice as many as b.
    }

    #[test]
    fn the_shown_order_is_the_order_of_admission() {
        let mut q = FairQueue::new(cap(1));
        q.push(req("a1", "a", Kind::StartRun, 1000));
        let a1 = drain(&mut q).remove(0).1;
        q.push(req("a2", "a", Kind::StartRun, 1000));
        q.push(req("a3", "a", Kind::StartRun, 1000));
        let mut hi = req("a4", "a", Kind::StartRun, 1000);
        hi.priority = Priority::High;
        q.push(hi);
        q.push(req("b1", "b", Kind::StartRun, 1000));
        q.push(req("b2", "b", Kind::StartRun, 1000));
        let shown: Vec<String> = q
            .snapshot(no_devices)
            .into_iter()
            .map(|w| {
                assert_eq!(
                    w.wait.to_string(),
                    "capacity: 0 of 1 CPU free on this machine; needs 1"
                );
                w.request.run_id
            })
            .collect();
        assert_eq!(shown, ["a4", "b1", "a2", "b2", "a3"]);
        finish(&mut q, &a1);
        assert_eq!(serial_order(&mut q), shown);
    }

    #[test]
    fn priority_orders_runs_within_a_project_only() {
        let mut q = FairQueue::new(cap(1));
        q.push(req("a1", "a", Kind::StartRun, 1000));
        q.push(req("a2", "a", Kind::StartRun, 1000));
        let mut hi = req("a3", "a", Kind::StartRun, 1000);
        hi.priority = Priority::High;
        q.push(hi);
        let mut b_hi = req("b1", "b", Kind::StartRun, 1000);
        b_hi.priority = Priority::High;
        q.push(b_hi);
        q.push(req("b2", "b", Kind::StartRun, 1000));
        // a3 jumps a1 and a2 within a; b's high priority does not jump a's turn.
        assert_eq!(serial_order(&mut q), ["a3", "b1", "a1", "b2", "a2"]);
    }

    #[test]
    fn quotas_hold_a_project_back_and_say_which() {
        let mut q = FairQueue::new(cap(8));
        q.set_quota(
            "a",
            Some(Quota {
                cpu_millis: Some(2000),
                max_runs: Some(3),
                ..Quota::default()
            }),
        );
        q.push(req("a1", "a", Kind::StartRun, 1500));
        q.push(req("a2", "a", Kind::StartRun, 1000));
        q.push(req("a3", "a", Kind::StartRun, 500));
        q.push(req("b1", "b", Kind::StartRun, 4000));
        let admitted: Vec<String> = drain(&mut q).into_iter().map(|a| a.0).collect();
        assert_eq!(
            admitted,
            ["a1", "b1", "a3"],
            "a3 backfills a's quota, a2 does not fit it"
        );
        let w = q.snapshot(no_devices);
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].wait.to_string(),
            "quota: the project uses 2 of its 2 CPU; needs 1 more"
        );
        // With two runs in flight, a further run waits for max_runs even if CPU is free.
        q.set_quota(
            "a",
            Some(Quota {
                cpu_millis: Some(2000),
                max_runs: Some(2),
                ..Quota::default()
            }),
        );
        q.release("a", &req("", "", Kind::StartRun, 1500).demand, Kind::Step);
        q.push(req("a4", "a", Kind::StartRun, 100));
        let admitted: Vec<String> = drain(&mut q).into_iter().map(|a| a.0).collect();
        assert!(admitted.is_empty(), "{admitted:?}");
        let w = q.snapshot(no_devices);
        assert!(
            w.iter().all(|w| matches!(
                w.wait,
                Wait::MaxRuns {
                    in_flight: 2,
                    max: 2
                }
            )),
            "{w:?}"
        );
        // A step of a running run is not a new run: it only needs CPU.
        q.push(req("a1", "a", Kind::Step, 500));
        let admitted: Vec<String> = drain(&mut q).into_iter().map(|a| a.0).collect();
        assert_eq!(admitted, ["a1"]);
        q.run_ended("a");
        let admitted: Vec<String> = drain(&mut q).into_iter().map(|a| a.0).collect();
        assert_eq!(admitted, ["a2"], "a2 came first and now fits");
    }

    #[test]
    fn a_quota_is_read_at_every_admission() {
        let mut q = FairQueue::new(cap(8));
        q.set_quota(
            "a",
            Some(Quota {
                cpu_millis: Some(1000),
                ..Quota::default()
            }),
        );
        q.push(req("a1", "a", Kind::StartRun, 1000));
        q.push(req("a2", "a", Kind::StartRun, 1000));
        assert_eq!(drain(&mut q).len(), 1);
        q.set_quota("a", None);
        assert_eq!(drain(&mut q).len(), 1, "the quota was lifted");
    }

    #[test]
    fn too_large_requests_are_refused_up_front_with_the_reason() {
        let mut q = FairQueue::new(cap(2));
        q.set_quota(
            "a",
            Some(Quota {
                cpu_millis: Some(1000),
                memory_bytes: Some(2 * GI),
                gpus: Some(0),
                ..Quota::default()
            }),
        );
        let d = |cpu, mem, gpus| Amount {
            cpu_millis: cpu,
            memory_bytes: mem,
            gpus,
        };
        assert_eq!(q.quota_rejects("b", &d(4000, GI, 0)), None, "no quota");
        assert_eq!(
            q.quota_rejects("a", &d(1500, GI, 0)).as_deref(),
            Some("requests 1500m CPU but project a's quota is 1 CPU")
        );
        assert_eq!(
            q.quota_rejects("a", &d(500, 3 * GI, 0)).as_deref(),
            Some("requests 3Gi of memory but project a's quota is 2Gi")
        );
        assert_eq!(q.quota_rejects("a", &d(500, GI, 0)), None);
        assert_eq!(q.quota_rejects("b", &d(1500, GI, 0)), None);
        assert_eq!(q.memory_limit("a"), 2 * GI);
        assert_eq!(q.memory_limit("b"), 64 * GI);
    }

    #[test]
    fn a_large_request_is_passed_only_max_bypass_times() {
        let mut q = FairQueue::new(cap(4));
        q.max_bypass = 3;
        // Two projects keep the machine busy with small steps; c's large one must still run.
        q.push(req("a0", "a", Kind::StartRun, 1000));
        q.push(req("b0", "b", Kind::StartRun, 1000));
        let mut running: Vec<Request> = drain(&mut q).into_iter().map(|a| a.1).collect();
        assert_eq!(running.len(), 2);
        q.push(req("big", "c", Kind::StartRun, 4000));
        let mut i = 0;
        let mut big_admitted_after = None;
        while i < 50 {
            i += 1;
            q.push(req(&format!("a{i}"), "a", Kind::Step, 1000));
            q.push(req(&format!("b{i}"), "b", Kind::Step, 1000));
            // One running step ends per round: there is always a small one that fits.
            let done = running.remove(0);
            finish(&mut q, &done);
            let admitted = drain(&mut q);
            if admitted.iter().any(|(id, _)| id == "big") {
                big_admitted_after = Some(i);
                break;
            }
            running.extend(admitted.into_iter().map(|a| a.1));
            if running.is_empty() {
                break;
            }
        }
        let rounds = big_admitted_after.expect("the large request starved");
        assert!(rounds <= 8, "admitted after {rounds} rounds");
        let waiting = q.snapshot(no_devices);
        assert!(waiting.iter().all(|w| w.request.run_id != "big"));
    }

    #[test]
    fn a_reservation_is_shown_as_the_reason() {
        let mut q = FairQueue::new(cap(2));
        q.max_bypass = 0;
        q.push(req("a1", "a", Kind::StartRun, 1000));
        assert_eq!(drain(&mut q).len(), 1);
        q.push(req("big", "b", Kind::StartRun, 2000));
        q.push(req("c1", "c", Kind::StartRun, 1000));
        assert!(drain(&mut q).is_empty(), "c1 would delay big");
        let w = q.snapshot(no_devices);
        assert_eq!(w[0].request.run_id, "big");
        assert_eq!(
            w[1].wait.to_string(),
            "reserved: held back for run big step s, which has waited longest"
        );
    }

    #[test]
    fn a_growing_step_goes_before_everything_and_holds_no_slot() {
        let mut q = FairQueue::new(Capacity {
            max_parallel: 1,
            ..cap(2)
        });
        q.push(req("a1", "a", Kind::StartRun, 1000));
        let a1 = drain(&mut q).remove(0).1;
        q.push(req("b1", "b", Kind::StartRun, 500));
        let mut grow = req("a1", "a", Kind::Grow, 0);
        grow.demand.memory_bytes = 8 * GI;
        q.push(grow.clone());
        let admitted = drain(&mut q);
        assert_eq!(admitted.len(), 1);
        assert_eq!(admitted[0].1.kind, Kind::Grow, "no step slot needed");
        assert_eq!(q.used().memory_bytes, GI + 8 * GI);
        finish(&mut q, &admitted[0].1);
        finish(&mut q, &a1);
        assert_eq!(drain(&mut q).len(), 1);
    }

    #[test]
    fn a_step_growing_on_its_idle_memory_is_served_only_the_growth() {
        let mut q = FairQueue::new(cap(2));
        q.push(req("a1", "a", Kind::StartRun, 1000));
        let a1 = drain(&mut q).remove(0).1;
        let before = q.projects["a"].served;
        // The step gives back its 1 GiB while it waits, and asks for 3 GiB: 2 GiB more.
        q.release_idle(
            "a",
            &Amount {
                memory_bytes: GI,
                ..Amount::default()
            },
        );
        assert_eq!(q.used().memory_bytes, 0);
        let mut grow = req("a1", "a", Kind::Grow, 0);
        grow.demand.memory_bytes = 3 * GI;
        q.push(grow);
        let admitted = drain(&mut q);
        assert_eq!(admitted.len(), 1);
        assert_eq!(q.used().memory_bytes, 3 * GI);
        let growth = q.dominant(&Amount {
            memory_bytes: 2 * GI,
            ..Amount::default()
        });
        assert!(
            (q.projects["a"].served - before - growth).abs() < 1e-12,
            "served {} after {before}, growth {growth}",
            q.projects["a"].served
        );
        finish(&mut q, &admitted[0].1);
        let mut rest = a1;
        rest.demand.memory_bytes = 0;
        finish(&mut q, &rest);
        assert_eq!(q.used(), Amount::default());
    }

    #[test]
    fn withdrawn_requests_leave_no_trace() {
        let mut q = FairQueue::new(cap(1));
        q.push(req("a1", "a", Kind::StartRun, 1000));
        let t = q.push(req("a2", "a", Kind::StartRun, 1000));
        assert_eq!(drain(&mut q).len(), 1);
        assert_eq!(q.withdraw(t).map(|r| r.run_id), Some("a2".into()));
        assert_eq!(q.withdraw(t), None);
        assert!(q.is_empty());
        let s = q.standings();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].waiting, 0);
        assert_eq!(s[0].runs_in_flight, 1);
    }

    #[test]
    fn gpu_placement_failures_wait_with_the_device_reason() {
        let mut q = FairQueue::new(Capacity { gpus: 2, ..cap(4) });
        let mut g = req("a1", "a", Kind::StartRun, 1000);
        g.demand.gpus = 1;
        q.push(g);
        let got = q.admit_next(|_| Err("no free GPU matches model h100".into()));
        assert!(got.is_none());
        let w = q.snapshot(|_| Err("no free GPU matches model h100".into()));
        assert_eq!(
            w[0].wait.to_string(),
            "capacity: no free GPU matches model h100"
        );
    }

    #[test]
    fn a_restored_queue_keeps_its_order() {
        let mut q = FairQueue::new(cap(1));
        q.push_at(7, req("later", "a", Kind::StartRun, 1000));
        q.push_at(3, req("earlier", "a", Kind::StartRun, 1000));
        let t = q.push(req("new", "a", Kind::StartRun, 1000));
        assert_eq!(t, 8);
        assert_eq!(serial_order(&mut q), ["earlier", "later", "new"]);
    }

    #[test]
    fn priorities_parse_and_round_trip() {
        for p in [Priority::Low, Priority::Normal, Priority::High] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
            assert_eq!(Priority::from_rank(p.rank()), p);
        }
        assert_eq!(Priority::parse("urgent"), None);
    }
}
