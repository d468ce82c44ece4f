//! Resource quantities and durations as people write them in Kubernetes-style specs.
//!
//! Parsed with integer arithmetic so that `0.1` cores is exactly 100 millicores.

use std::time::Duration;

/// A non-negative decimal `digits / 10^scale`.
struct Decimal {
    digits: u128,
    scale: u32,
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    // 30 digits keep `digits * 2^60` far below u128::MAX.
    if !all_digits(int) || !all_digits(frac) || int.len() + frac.len() > 30 {
        return None;
    }
    let digits = format!("{int}{frac}").parse().ok()?;
    Some(Decimal {
        digits,
        scale: u32::try_from(frac.len()).ok()?,
    })
}

/// CPU in millicores: `"2"` → 2000, `"0.5"` → 500, `"500m"` → 500. Must be above zero.
pub fn parse_cpu(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "invalid cpu quantity '{s}': expected cores such as 2 or 0.5, or millicores such as 500m"
        )
    };
    let millis: u128 = if let Some(m) = t.strip_suffix('m') {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) || m.len() > 30 {
            return Err(bad());
        }
        m.parse().map_err(|_| bad())?
    } else {
        let d = parse_decimal(t).ok_or_else(bad)?;
        let scaled = d.digits * 1000;
        let div = 10u128.pow(d.scale);
        if scaled % div != 0 {
            return Err(format!(
                "invalid cpu quantity '{s}': the smallest unit is one millicore (0.001)"
            ));
        }
        scaled / div
    };
    if millis == 0 {
        return Err(format!(
            "invalid cpu quantity '{s}': must be greater than zero"
        ));
    }
    u64::try_from(millis).map_err(|_| format!("invalid cpu quantity '{s}': too large"))
}

const MEMORY_UNITS: &[(&str, u128)] = &[
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

/// Memory in bytes: `"512Mi"`, `"2Gi"`, `"1G"`, `"1000k"`, `"1048576"`. Must be above zero.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let d = parse_decimal(number).ok_or_else(|| {
        format!("invalid memory quantity '{s}': expected a number with a unit such as 512Mi or 2Gi")
    })?;
    let multiplier = if unit.is_empty() {
        1
    } else {
        MEMORY_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                format!(
                    "invalid memory quantity '{s}': unknown unit '{unit}' (use Ki, Mi, Gi, Ti, Pi, Ei or k, M, G, T, P, E)"
                )
            })?
    };
    let div = 10u128.pow(d.scale);
    // A fraction of a byte rounds up: asking for slightly more never under-provisions.
    let bytes = (d.digits * multiplier).div_ceil(div);
    if bytes == 0 {
        return Err(format!(
            "invalid memory quantity '{s}': must be greater than zero"
        ));
    }
    u64::try_from(bytes).map_err(|_| format!("invalid memory quantity '{s}': too large"))
}

/// `"30s"`, `"20m"`, `"1h30m"`, `"500ms"`, `"2d"`; a plain integer is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "invalid duration '{s}': expected a number with units such as 30s, 20m, 1h30m or 500ms"
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map(Duration::from_secs).map_err(|_| bad());
    }
    let mut rest = t;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(bad());
        }
        let (number, tail) = rest.split_at(digits_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(bad()),
            other => {
                return Err(format!(
                    "invalid duration '{s}': unknown unit '{other}' (use ms, s, m, h or d)"
                ));
            }
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total_ms = n
            .checked_mul(per_unit)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("invalid duration '{s}': too large"))?;
        rest = tail;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_accepts_cores_and_millicores() {
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("0.1"), Ok(100));
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("1.25"), Ok(1250));
        assert_eq!(parse_cpu(".5"), Ok(500));
    }

    #[test]
    fn cpu_rejects_garbage_zero_and_sub_millicore() {
        for bad in [
            "abc", "", "m", "-1", "0", "0m", "0.0", "1.5m", "2 cores", "1e3",
        ] {
            let err = parse_cpu(bad).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
        assert!(parse_cpu("0.0005").unwrap_err().contains("millicore"));
        assert!(parse_cpu("0").unwrap_err().contains("greater than zero"));
    }

    #[test]
    fn memory_accepts_binary_and_decimal_units() {
        assert_eq!(parse_memory("512Mi"), Ok(512 << 20));
        assert_eq!(parse_memory("2Gi"), Ok(2 << 30));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("1000k"), Ok(1_000_000));
        assert_eq!(parse_memory("1048576"), Ok(1_048_576));
        assert_eq!(parse_memory("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_memory("1Ei"), Ok(1 << 60));
    }

    #[test]
    fn memory_rejects_unknown_units_zero_and_overflow() {
        let err = parse_memory("2Gx").unwrap_err();
        assert!(err.contains("unknown unit 'Gx'"), "{err}");
        assert!(
            parse_memory("0Mi")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(parse_memory("abc").is_err());
        assert!(parse_memory("Mi").is_err());
        assert!(parse_memory("512mi").is_err());
        assert!(parse_memory("-1Gi").is_err());
        assert!(parse_memory("100Ei").unwrap_err().contains("too large"));
    }

    #[test]
    fn durations_combine_units_and_default_to_seconds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m500ms"), Ok(Duration::from_millis(60_500)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn durations_reject_garbage() {
        for bad in ["", "abc", "10x", "h", "1.5h", "-3s", "1h 30m", "30 s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
        assert!(
            parse_duration("10x")
                .unwrap_err()
                .contains("unknown unit 'x'")
        );
        assert!(
            parse_duration("99999999999999999d")
                .unwrap_err()
                .contains("too large")
        );
    }
}
