//! Admission decisions of the fair queue under load: 1,000 queued runs from 20 projects
//! (some with quotas and weights, three priority classes, sizes from 250m to 8 CPU) on a
//! 64-CPU, 256 GiB, 8-GPU machine. Steps end one at a time in random order; after each end the
//! queue admits what now fits (`admit_next` until it says nothing fits). Every call is
//! timed: a "decision" is one call, admitting or not. Prints one JSON object.
//!
//! `cargo run --release -p gantry-alloc --example queue_bench [RUNS] [PROJECTS]`

use gantry_alloc::queue::{Amount, Capacity, FairQueue, Kind, Priority, Quota, Request};
use std::time::Instant;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let projects: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let mut rng = Lcg(42);
    let mut q = FairQueue::new(Capacity {
        cpu_millis: 64_000,
        memory_bytes: 256 << 30,
        gpus: 8,
        max_parallel: 64,
    });
    for p in 0..projects {
        if p % 3 == 0 {
            q.set_quota(
                &format!("p{p}"),
                Some(Quota {
                    cpu_millis: Some(16_000),
                    memory_bytes: Some(64 << 30),
                    gpus: Some(2),
                    max_runs: Some(8),
                    weight: 1 + (p % 2) as u32,
                }),
            );
        }
    }
    let cpus = [250, 500, 1000, 2000, 4000, 8000];
    for i in 0..runs {
        let project = format!("p{}", rng.pick(projects as u64));
        let priority = match rng.pick(10) {
            0 => Priority::High,
            1..=2 => Priority::Low,
            _ => Priority::Normal,
        };
        q.push(Request {
            run_id: format!("r-{i}"),
            project,
            step: "train".into(),
            kind: Kind::StartRun,
            priority,
            demand: Amount {
                cpu_millis: cpus[rng.pick(cpus.len() as u64) as usize],
                memory_bytes: (1 + rng.pick(16)) << 30,
                gpus: u32::from(rng.pick(20) == 0),
            },
            gpu_model: None,
            gpu_memory_bytes: 0,
            since_ms: 0,
        });
    }
    let mut times_ns: Vec<u128> = Vec::new();
    let mut running: Vec<Request> = Vec::new();
    let mut admitted = 0usize;
    let admit_all = |q: &mut FairQueue, running: &mut Vec<Request>, times: &mut Vec<u128>| {
        let mut n = 0;
        loop {
            let t = Instant::now();
            let next = q.admit_next(|_| Ok(()));
            times.push(t.elapsed().as_nanos());
            match next {
                Some((_, r)) => {
                    running.push(r);
                    n += 1;
                }
                None => return n,
            }
        }
    };
    let started = Instant::now();
    admitted += admit_all(&mut q, &mut running, &mut times_ns);
    let t = Instant::now();
    let snapshot = q.snapshot(|_| Ok(()));
    let snapshot_ms = t.elapsed().as_secs_f64() * 1e3;
    let waiting_at_start = snapshot.len();
    while !running.is_empty() {
        let r = running.swap_remove(rng.pick(running.len() as u64) as usize);
        q.release(&r.project, &r.demand, r.kind);
        q.run_ended(&r.project);
        admitted += admit_all(&mut q, &mut running, &mut times_ns);
    }
    let total_s = started.elapsed().as_secs_f64();
    times_ns.sort_unstable();
    let at = |p: f64| times_ns[((times_ns.len() as f64 - 1.0) * p) as usize] as f64 / 1e6;
    let mean = times_ns.iter().sum::<u128>() as f64 / times_ns.len() as f64 / 1e6;
    println!(
        "{{\"runs\": {runs}, \"projects\": {projects}, \"admitted\": {admitted}, \"waiting_after_first_fill\": {waiting_at_start}, \"decisions\": {}, \"mean_ms\": {mean:.4}, \"p50_ms\": {:.4}, \"p99_ms\": {:.4}, \"max_ms\": {:.4}, \"snapshot_ms\": {snapshot_ms:.3}, \"total_s\": {total_s:.3}}}",
        times_ns.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert_eq!(admitted, runs, "every run was admitted in the end");
}
