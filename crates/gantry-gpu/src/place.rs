//! Which GPUs a step gets: whole devices, each held by one step at a time.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::Gpu;
use crate::model::model_matches;

/// A request that fits this machine but not its free GPUs right now: the step waits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "waiting for {request}: {free} of the {eligible} GPU(s) that fit are free",
    request = describe_request(*.requested, *.memory_bytes, .model.as_deref())
)]
pub struct Unplaceable {
    pub requested: u32,
    pub memory_bytes: u64,
    pub model: Option<String>,
    /// GPUs of this machine that fit the request, free or not.
    pub eligible: u32,
    /// Of those, how many no step holds now.
    pub free: u32,
}

/// Picks `count` GPUs no step holds (`held`: NVML indexes) that are `model` (see
/// [`model_matches`]) and have at least `memory_bytes` (0: any), returned as NVML indexes in
/// ascending order.
///
/// Best fit: the GPUs with the least sufficient memory are taken first (ties: lowest index),
/// so a small request leaves the large GPUs to the steps that need them. GPUs in MIG mode are
/// never placed whole; a GPU whose memory is unknown (0) counts as large enough and is taken
/// last. `count == 0` places nothing.
pub fn place(
    gpus: &[Gpu],
    held: &BTreeSet<u32>,
    count: u32,
    memory_bytes: u64,
    model: Option<&str>,
) -> Result<Vec<u32>, Unplaceable> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let eligible: Vec<&Gpu> = gpus
        .iter()
        .filter(|g| fits(g, memory_bytes, model))
        .collect();
    let mut free: Vec<&Gpu> = eligible
        .iter()
        .copied()
        .filter(|g| !held.contains(&g.index))
        .collect();
    free.sort_by_key(|g| (g.memory_bytes == 0, g.memory_bytes, g.index));
    let wanted = usize::try_from(count).unwrap_or(usize::MAX);
    if free.len() < wanted {
        return Err(Unplaceable {
            requested: count,
            memory_bytes,
            model: model.map(str::to_owned),
            eligible: saturating_u32(eligible.len()),
            free: saturating_u32(free.len()),
        });
    }
    let mut picked: Vec<u32> = free[..wanted].iter().map(|g| g.index).collect();
    picked.sort_unstable();
    Ok(picked)
}

/// Why a request can never be placed on this machine, however long it waits; `None` when
/// enough GPUs fit it (held or not), or when it asks for none.
///
/// e.g. `requests 1 GPU of model h200 with 40 GiB but this machine has 2× NVIDIA A10 (24 GiB)`.
pub fn rejects(gpus: &[Gpu], count: u32, memory_bytes: u64, model: Option<&str>) -> Option<String> {
    if count == 0 {
        return None;
    }
    let eligible = gpus.iter().filter(|g| fits(g, memory_bytes, model)).count();
    if eligible >= usize::try_from(count).unwrap_or(usize::MAX) {
        return None;
    }
    let mut reason = format!(
        "requests {} but this machine has {}",
        describe_request(count, memory_bytes, model),
        describe_machine(gpus)
    );
    if eligible > 0 {
        let _ = write!(reason, " ({eligible} of them fit)");
    }
    Some(reason)
}

/// The `/dev/nvidiaN` minors of the GPUs with these NVML indexes, in the same order; indexes
/// this machine does not have are left out.
pub fn minors_of(gpus: &[Gpu], indexes: &[u32]) -> Vec<u32> {
    indexes
        .iter()
        .filter_map(|i| gpus.iter().find(|g| g.index == *i).map(|g| g.minor))
        .collect()
}

/// `1 GPU`, `2 GPUs of model h200`, `1 GPU of model h200 with 40 GiB`.
pub fn describe_request(count: u32, memory_bytes: u64, model: Option<&str>) -> String {
    let mut out = format!("{count} GPU{}", if count == 1 { "" } else { "s" });
    if let Some(model) = model {
        let _ = write!(out, " of model {model}");
    }
    if memory_bytes > 0 {
        let _ = write!(out, " with {}", format_bytes(memory_bytes));
    }
    out
}

fn fits(gpu: &Gpu, memory_bytes: u64, model: Option<&str>) -> bool {
    gpu.mig_mode != Some(true)
        && (gpu.memory_bytes == 0 || gpu.memory_bytes >= memory_bytes)
        && model.is_none_or(|m| model_matches(&gpu.name, m))
}

/// `2× NVIDIA A10 (24 GiB), 1× NVIDIA H100 80GB HBM3 (80 GiB, MIG mode)`, kinds in the order
/// they first appear; `no NVIDIA GPUs`.
fn describe_machine(gpus: &[Gpu]) -> String {
    let mut kinds: Vec<(&Gpu, usize)> = Vec::new();
    for gpu in gpus {
        let same = |k: &&mut (&Gpu, usize)| {
            k.0.name == gpu.name
                && k.0.memory_bytes == gpu.memory_bytes
                && k.0.mig_mode == gpu.mig_mode
        };
        match kinds.iter_mut().find(same) {
            Some(kind) => kind.1 += 1,
            None => kinds.push((gpu, 1)),
        }
    }
    if kinds.is_empty() {
        return "no NVIDIA GPUs".to_owned();
    }
    kinds
        .iter()
        .map(|(gpu, n)| {
            let memory = match gpu.memory_bytes {
                0 => "memory unknown".to_owned(),
                b => format_bytes(b),
            };
            let mig = if gpu.mig_mode == Some(true) {
                ", MIG mode"
            } else {
                ""
            };
            format!("{n}× {} ({memory}{mig})", gpu.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `40 GiB`, `22.5 GiB`, `512 MiB`.
fn format_bytes(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes >= GIB {
        if bytes.is_multiple_of(GIB) {
            format!("{} GiB", bytes / GIB)
        } else {
            format!("{:.1} GiB", bytes as f64 / GIB as f64)
        }
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn gpu(index: u32, name: &str, memory_gib: u64) -> Gpu {
        Gpu {
            index,
            minor: index + 10,
            uuid: format!("GPU-{index}"),
            name: name.into(),
            memory_bytes: memory_gib * GIB,
            mig_mode: Some(false),
            driver: Some("550.54.15".into()),
            mig_devices: Vec::new(),
        }
    }

    fn held(indexes: &[u32]) -> BTreeSet<u32> {
        indexes.iter().copied().collect()
    }

    /// 0: H100 80 GiB, 1: A10 24 GiB, 2: H100 80 GiB, 3: A10 24 GiB, 4: H200 141 GiB.
    fn mixed() -> Vec<Gpu> {
        vec![
            gpu(0, "NVIDIA H100 80GB HBM3", 80),
            gpu(1, "NVIDIA A10", 24),
            gpu(2, "NVIDIA H100 80GB HBM3", 80),
            gpu(3, "NVIDIA A10", 24),
            gpu(4, "NVIDIA H200", 141),
        ]
    }

    #[test]
    fn the_smallest_sufficient_gpus_are_taken_first() {
        let gpus = mixed();
        let none = held(&[]);
        assert_eq!(place(&gpus, &none, 1, 0, None), Ok(vec![1]));
        assert_eq!(place(&gpus, &none, 2, 0, None), Ok(vec![1, 3]));
        assert_eq!(place(&gpus, &none, 3, 0, None), Ok(vec![0, 1, 3]));
        assert_eq!(place(&gpus, &none, 1, 30 * GIB, None), Ok(vec![0]));
        assert_eq!(place(&gpus, &none, 1, 100 * GIB, None), Ok(vec![4]));
        assert_eq!(place(&gpus, &none, 1, 24 * GIB, None), Ok(vec![1]));
        assert_eq!(place(&gpus, &none, 0, 0, Some("b200")), Ok(vec![]));
        // Returned in index order whatever the memory order.
        assert_eq!(place(&gpus, &none, 5, 0, None), Ok(vec![0, 1, 2, 3, 4]));
    }

    #[test]
    fn held_gpus_and_other_models_are_skipped() {
        let gpus = mixed();
        assert_eq!(place(&gpus, &held(&[1]), 1, 0, None), Ok(vec![3]));
        assert_eq!(place(&gpus, &held(&[1, 3]), 1, 0, None), Ok(vec![0]));
        assert_eq!(place(&gpus, &held(&[0]), 1, 0, Some("h100")), Ok(vec![2]));
        assert_eq!(
            place(&gpus, &held(&[]), 2, 0, Some("h100-80gb")),
            Ok(vec![0, 2])
        );
        assert_eq!(place(&gpus, &held(&[]), 1, 0, Some("a10")), Ok(vec![1]));
        assert_eq!(place(&gpus, &held(&[]), 1, 0, Some("h200")), Ok(vec![4]));
    }

    #[test]
    fn a_request_that_does_not_fit_now_says_what_is_short() {
        let gpus = mixed();
        let err = place(&gpus, &held(&[0]), 2, 40 * GIB, Some("h100")).unwrap_err();
        assert_eq!(
            err,
            Unplaceable {
                requested: 2,
                memory_bytes: 40 * GIB,
                model: Some("h100".into()),
                eligible: 2,
                free: 1,
            }
        );
        assert_eq!(
            err.to_string(),
            "waiting for 2 GPUs of model h100 with 40 GiB: 1 of the 2 GPU(s) that fit are free"
        );
        let err = place(&gpus, &held(&[0, 1, 2, 3, 4]), 1, 0, None).unwrap_err();
        assert_eq!((err.eligible, err.free), (5, 0));
        assert_eq!(
            err.to_string(),
            "waiting for 1 GPU: 0 of the 5 GPU(s) that fit are free"
        );
    }

    #[test]
    fn gpus_in_mig_mode_are_not_placed_whole() {
        let mut gpus = mixed();
        gpus[4].mig_mode = Some(true);
        assert!(place(&gpus, &held(&[]), 1, 0, Some("h200")).is_err());
        assert_eq!(
            rejects(&gpus, 1, 0, Some("h200")).as_deref(),
            Some(
                "requests 1 GPU of model h200 but this machine has 2× NVIDIA H100 80GB HBM3 (80 GiB), 2× NVIDIA A10 (24 GiB), 1× NVIDIA H200 (141 GiB, MIG mode)"
            )
        );
        // A GPU without MIG support (None) is placed like one with MIG off.
        gpus[4].mig_mode = None;
        assert_eq!(place(&gpus, &held(&[]), 1, 0, Some("h200")), Ok(vec![4]));
    }

    #[test]
    fn unknown_memory_counts_as_enough_but_is_taken_last() {
        let mut gpus = vec![gpu(0, "NVIDIA L4", 0), gpu(1, "NVIDIA L4", 24)];
        assert_eq!(place(&gpus, &held(&[]), 1, 0, None), Ok(vec![1]));
        assert_eq!(place(&gpus, &held(&[1]), 1, 40 * GIB, None), Ok(vec![0]));
        assert_eq!(rejects(&gpus, 2, 20 * GIB, None), None);
        assert_eq!(rejects(&gpus, 1, 40 * GIB, None), None);
        assert_eq!(
            rejects(&gpus, 2, 40 * GIB, None).as_deref(),
            Some(
                "requests 2 GPUs with 40 GiB but this machine has 1× NVIDIA L4 (memory unknown), 1× NVIDIA L4 (24 GiB) (1 of them fit)"
            )
        );
        gpus.truncate(1);
        assert_eq!(
            rejects(&gpus, 2, 0, None).as_deref(),
            Some(
                "requests 2 GPUs but this machine has 1× NVIDIA L4 (memory unknown) (1 of them fit)"
            )
        );
    }

    #[test]
    fn rejects_says_why_a_request_can_never_fit() {
        let a10s = vec![gpu(0, "NVIDIA A10", 24), gpu(1, "NVIDIA A10", 24)];
        assert_eq!(
            rejects(&a10s, 1, 40 * GIB, Some("h200")).as_deref(),
            Some(
                "requests 1 GPU of model h200 with 40 GiB but this machine has 2× NVIDIA A10 (24 GiB)"
            )
        );
        assert_eq!(
            rejects(&a10s, 3, 0, None).as_deref(),
            Some("requests 3 GPUs but this machine has 2× NVIDIA A10 (24 GiB) (2 of them fit)")
        );
        assert_eq!(
            rejects(&a10s, 1, 30 * GIB, None).as_deref(),
            Some("requests 1 GPU with 30 GiB but this machine has 2× NVIDIA A10 (24 GiB)")
        );
        assert_eq!(
            rejects(&[], 1, 0, None).as_deref(),
            Some("requests 1 GPU but this machine has no NVIDIA GPUs")
        );
        // Held GPUs still count: waiting is not rejection.
        assert_eq!(rejects(&a10s, 2, 24 * GIB, Some("a10")), None);
        assert_eq!(rejects(&[], 0, 0, Some("h200")), None);
        let mut odd = gpu(0, "NVIDIA A10", 0);
        odd.memory_bytes = 23028 << 20;
        assert_eq!(
            rejects(&[odd], 1, 0, Some("a100")).as_deref(),
            Some("requests 1 GPU of model a100 but this machine has 1× NVIDIA A10 (22.5 GiB)")
        );
    }

    #[test]
    fn requests_and_sizes_read_naturally() {
        assert_eq!(describe_request(1, 0, None), "1 GPU");
        assert_eq!(describe_request(2, 0, Some("h200")), "2 GPUs of model h200");
        assert_eq!(
            describe_request(1, 512 << 20, Some("l4")),
            "1 GPU of model l4 with 512 MiB"
        );
        assert_eq!(format_bytes(40 * GIB), "40 GiB");
        assert_eq!(format_bytes(GIB + GIB / 2), "1.5 GiB");
        assert_eq!(format_bytes(1), "1 MiB");
    }

    #[test]
    fn minors_follow_the_indexes() {
        let gpus = mixed();
        assert_eq!(minors_of(&gpus, &[4, 0]), [14, 10]);
        assert_eq!(minors_of(&gpus, &[9, 2]), [12]);
        assert!(minors_of(&gpus, &[]).is_empty());
    }
}
