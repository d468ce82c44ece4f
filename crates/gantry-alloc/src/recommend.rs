//! Right-sizing: what a step should request, from what its past runs used.

use std::fmt;

use gantry_spec::{ImageRef, PlannedStep};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Successful runs needed before Gantry recommends anything.
pub const MIN_HISTORY: usize = 3;
/// Headroom over the 95th percentile.
pub const HEADROOM: f64 = 1.2;
/// A request this many times what was used is worth a warning.
pub const WASTE_FACTOR: u64 = 4;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The history key of a step: runs of the same pipeline's step with the same image (as
/// written) and command (and `with:` for built-in components) are comparable.
pub fn usage_key(pipeline: &str, step: &PlannedStep) -> String {
    let declared = step
        .sweep
        .as_ref()
        .map_or(step.name.as_str(), |s| s.step.as_str());
    let image = match &step.image {
        ImageRef::Image(r) => r.clone(),
        ImageRef::Builtin(b) => format!("builtin/{b}"),
    };
    let with = serde_json::to_string(&step.with).unwrap_or_default();
    let mut h = Sha256::new();
    for part in [pipeline, declared, image.as_str(), with.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for arg in &step.command {
        h.update(arg.as_bytes());
        h.update([0]);
    }
    format!("u{}", &hex::encode(h.finalize())[..32])
}

/// One past attempt of a step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub requested_cpu_millis: u64,
    pub requested_memory_bytes: u64,
    pub peak_memory_bytes: u64,
    pub cpu_micros: u64,
    pub wall_ms: u64,
    pub succeeded: bool,
    pub oom_killed: bool,
}

impl Sample {
    /// Mean cores used over the attempt, in millicores.
    pub fn used_cpu_millis(&self) -> u64 {
        self.cpu_micros.checked_div(self.wall_ms).unwrap_or(0)
    }
}

/// What a recommendation rests on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Successful runs considered.
    pub runs: usize,
    pub peak_memory_max: u64,
    pub peak_memory_p95: u64,
    pub cpu_millis_p95: u64,
    pub cpu_millis_max: u64,
    /// The largest memory request that was OOM-killed, if any was.
    pub oom_killed_at: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub evidence: Evidence,
}

/// Why there is no recommendation yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotEnoughHistory {
    pub runs: usize,
    pub needed: usize,
}

impl fmt::Display for NotEnoughHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} successful run(s) with usage recorded, {} needed",
            self.runs, self.needed
        )
    }
}

/// Memory = p95 of peak × 1.2 and CPU = p95 of the cores used × 1.2, each rounded up to a
/// sensible quantity; memory never at or below a request that was OOM-killed.
pub fn recommend(samples: &[Sample]) -> Result<Recommendation, NotEnoughHistory> {
    let ok: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.succeeded && s.wall_ms > 0)
        .collect();
    if ok.len() < MIN_HISTORY {
        return Err(NotEnoughHistory {
            runs: ok.len(),
            needed: MIN_HISTORY,
        });
    }
    let mut peaks: Vec<u64> = ok.iter().map(|s| s.peak_memory_bytes).collect();
    let mut cpus: Vec<u64> = ok.iter().map(|s| s.used_cpu_millis()).collect();
    let peak_p95 = percentile(&mut peaks, 95);
    let cpu_p95 = percentile(&mut cpus, 95);
    let oom_killed_at = samples
        .iter()
        .filter(|s| s.oom_killed)
        .map(|s| s.requested_memory_bytes)
        .max();
    let mut memory = round_memory((peak_p95 as f64 * HEADROOM) as u64);
    if let Some(killed) = oom_killed_at {
        memory = memory.max(round_memory(killed + 1));
    }
    Ok(Recommendation {
        cpu_millis: round_cpu((cpu_p95 as f64 * HEADROOM) as u64),
        memory_bytes: memory,
        evidence: Evidence {
            runs: ok.len(),
            peak_memory_max: peaks.last().copied().unwrap_or(0),
            peak_memory_p95: peak_p95,
            cpu_millis_p95: cpu_p95,
            cpu_millis_max: cpus.last().copied().unwrap_or(0),
            oom_killed_at,
        },
    })
}

/// Nearest-rank percentile; sorts `values`.
fn percentile(values: &mut [u64], p: u64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = (p as usize * values.len()).div_ceil(100).max(1);
    values[rank.min(values.len()) - 1]
}

/// Up to 64Mi steps below 1Gi, 256Mi steps below 8Gi, whole Gi above; at least 64Mi.
pub fn round_memory(bytes: u64) -> u64 {
    let step = if bytes <= GIB {
        64 * MIB
    } else if bytes <= 8 * GIB {
        256 * MIB
    } else {
        GIB
    };
    bytes.div_ceil(step).max(1) * step
}

/// Up to 100m steps below one core, 250m steps above; at least 100m.
pub fn round_cpu(millis: u64) -> u64 {
    let step = if millis <= 1000 { 100 } else { 250 };
    millis.div_ceil(step).max(1) * step
}

/// What the last runs say about a request that is far above use: `Some(message)` when each
/// of the last [`MIN_HISTORY`] successful runs used a quarter or less of what was asked, and
/// the surplus matters (≥ 256Mi of memory, or ≥ 500m of CPU over at least 10 s).
pub fn wasteful(samples: &[Sample], cpu_millis: u64, memory_bytes: u64) -> Option<String> {
    let last: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.succeeded && s.wall_ms > 0)
        .take(MIN_HISTORY)
        .collect();
    if last.len() < MIN_HISTORY {
        return None;
    }
    let peak = last.iter().map(|s| s.peak_memory_bytes).max().unwrap_or(0);
    let cpu = last.iter().map(|s| s.used_cpu_millis()).max().unwrap_or(0);
    let mut said = Vec::new();
    if memory_bytes >= WASTE_FACTOR * peak.max(1) && memory_bytes - peak >= 256 * MIB {
        said.push(format!(
            "memory {} but its last {} runs peaked at {}",
            fmt_memory(memory_bytes),
            last.len(),
            fmt_memory(peak)
        ));
    }
    let long = last.iter().all(|s| s.wall_ms >= 10_000);
    if long && cpu_millis >= WASTE_FACTOR * cpu.max(1) && cpu_millis - cpu >= 500 {
        said.push(format!(
            "{} CPU but its last {} runs used at most {}",
            fmt_cpu(cpu_millis),
            last.len(),
            fmt_cpu(cpu)
        ));
    }
    (!said.is_empty()).then(|| said.join("; "))
}

/// `512Mi`, `2Gi`, `1536Mi`, `900Ki`.
pub fn fmt_memory(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{}Gi", bytes / GIB)
    } else if bytes >= MIB {
        format!("{}Mi", bytes.div_ceil(MIB))
    } else {
        format!("{}Ki", bytes.div_ceil(1024))
    }
}

/// `2`, `500m`.
pub fn fmt_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) && millis > 0 {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(peak_mib: u64, cpu_millis: u64) -> Sample {
        Sample {
            requested_cpu_millis: 1000,
            requested_memory_bytes: 4 * GIB,
            peak_memory_bytes: peak_mib * MIB,
            cpu_micros: cpu_millis * 60_000,
            wall_ms: 60_000,
            succeeded: true,
            oom_killed: false,
        }
    }

    #[test]
    fn too_little_history_is_said() {
        let e = recommend(&[ok(100, 500), ok(100, 500)]).err();
        assert_eq!(e, Some(NotEnoughHistory { runs: 2, needed: 3 }));
        assert_eq!(
            e.map(|e| e.to_string()).unwrap_or_default(),
            "2 successful run(s) with usage recorded, 3 needed"
        );
    }

    #[test]
    fn memory_is_p95_of_peak_with_headroom_rounded_up() -> Result<(), NotEnoughHistory> {
        // Peaks 100..=300 MiB (21 runs): p95 (nearest rank 20 of 21) = 290 MiB; × 1.2 = 348
        // MiB → 384Mi. CPU used 500m..=700m: p95 690m × 1.2 = 828m → 900m.
        let samples: Vec<Sample> = (0..21).map(|i| ok(100 + 10 * i, 500 + 10 * i)).collect();
        let r = recommend(&samples)?;
        assert_eq!(r.evidence.runs, 21);
        assert_eq!(r.evidence.peak_memory_p95, 290 * MIB);
        assert_eq!(r.evidence.peak_memory_max, 300 * MIB);
        assert_eq!(r.memory_bytes, 384 * MIB);
        assert_eq!(r.evidence.cpu_millis_p95, 690);
        assert_eq!(r.cpu_millis, 900);
        Ok(())
    }

    #[test]
    fn never_below_a_request_that_was_oom_killed() -> Result<(), NotEnoughHistory> {
        let mut samples = vec![ok(100, 100), ok(100, 100), ok(100, 100)];
        samples.push(Sample {
            requested_memory_bytes: 512 * MIB,
            succeeded: false,
            oom_killed: true,
            ..ok(512, 100)
        });
        let r = recommend(&samples)?;
        assert_eq!(r.evidence.oom_killed_at, Some(512 * MIB));
        assert_eq!(r.memory_bytes, 576 * MIB, "the next 64Mi step above 512Mi");
        // Failed runs are not evidence of use.
        assert_eq!(r.evidence.runs, 3);
        Ok(())
    }

    #[test]
    fn quantities_round_to_sensible_steps() {
        assert_eq!(round_memory(0), 64 * MIB);
        assert_eq!(round_memory(65 * MIB), 128 * MIB);
        assert_eq!(round_memory(GIB + 1), GIB + 256 * MIB);
        assert_eq!(round_memory(9 * GIB + 1), 10 * GIB);
        assert_eq!(round_cpu(0), 100);
        assert_eq!(round_cpu(1001), 1250);
        assert_eq!(fmt_memory(384 * MIB), "384Mi");
        assert_eq!(fmt_memory(2 * GIB), "2Gi");
        assert_eq!(fmt_cpu(1500), "1500m");
        assert_eq!(fmt_cpu(2000), "2");
    }

    #[test]
    fn waste_is_flagged_only_when_it_matters() {
        let runs = [ok(100, 900), ok(120, 900), ok(110, 900)];
        let w = wasteful(&runs, 1000, 4 * GIB).unwrap_or_default();
        assert_eq!(w, "memory 4Gi but its last 3 runs peaked at 120Mi");
        // A default-sized request over a tiny step: 512Mi vs 1 MiB is < 256Mi of surplus? No:
        // it is 511Mi of surplus, but 300Mi requested over 100Mi is under 4×.
        assert_eq!(wasteful(&runs, 1000, 300 * MIB), None);
        // CPU: 4 cores requested, 900m used over a minute.
        let w = wasteful(&runs, 4000, 128 * MIB).unwrap_or_default();
        assert_eq!(w, "4 CPU but its last 3 runs used at most 900m");
        // Short steps never reach steady CPU use: not flagged.
        let short: Vec<Sample> = runs
            .iter()
            .map(|s| Sample {
                wall_ms: 500,
                cpu_micros: 100_000,
                ..*s
            })
            .collect();
        assert_eq!(wasteful(&short, 4000, 128 * MIB), None);
        assert_eq!(wasteful(&runs[..2], 1000, 4 * GIB), None);
    }

    fn key_of(yaml_step: &str) -> String {
        let text = format!("name: p\nsteps:\n  {yaml_step}\n");
        let pipeline = gantry_spec::parse("p.yaml", std::path::Path::new("."), &text)
            .unwrap_or_else(|e| panic!("{e}"));
        let plan =
            gantry_spec::plan(&pipeline, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
        usage_key(&plan.pipeline, &plan.steps[0])
    }

    #[test]
    fn usage_keys_follow_image_command_and_with_not_resources() {
        let a = key_of("- { name: s, image: busybox, command: [sh, -c, x] }");
        assert_eq!(
            a,
            key_of(
                "- { name: s, image: busybox, command: [sh, -c, x], resources: { memory: 2Gi } }"
            )
        );
        assert_ne!(
            a,
            key_of("- { name: s, image: alpine, command: [sh, -c, x] }")
        );
        assert_ne!(
            a,
            key_of("- { name: s, image: busybox, command: [sh, -c, y] }")
        );
        assert_ne!(
            a,
            key_of("- { name: t, image: busybox, command: [sh, -c, x] }")
        );
        // Arguments are not concatenated ambiguously.
        assert_ne!(
            key_of("- { name: s, image: busybox, command: [ab, c] }"),
            key_of("- { name: s, image: busybox, command: [a, bc] }")
        );
    }
}
