//! How numbers and windows read in messages and verdicts.

/// A value for people: integers as integers, others with up to four
/// decimals, tiny ones (p-values) in scientific notation.
pub fn format_value(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{}", x as i64);
    }
    if x.abs() < 1e-3 {
        return format!("{x:.2e}");
    }
    let fixed = format!("{x:.4}");
    fixed
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// `hour`, `5 minutes`, `24 hours`: what follows "over the last".
pub fn window_phrase(ms: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            unit.to_string()
        } else {
            format!("{n} {unit}s")
        }
    };
    if ms > 0 && ms % 3_600_000 == 0 {
        plural(ms / 3_600_000, "hour")
    } else if ms > 0 && ms % 60_000 == 0 {
        plural(ms / 60_000, "minute")
    } else if ms > 0 && ms % 1000 == 0 {
        plural(ms / 1000, "second")
    } else {
        format!("{ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_short() {
        assert_eq!(format_value(0.83), "0.83");
        assert_eq!(format_value(0.123456), "0.1235");
        assert_eq!(format_value(50.0), "50");
        assert_eq!(format_value(-2.0), "-2");
        assert_eq!(format_value(3.7e-6), "3.70e-6");
        assert_eq!(format_value(0.0), "0");
    }

    #[test]
    fn windows_read_as_words() {
        assert_eq!(window_phrase(3_600_000), "hour");
        assert_eq!(window_phrase(86_400_000), "24 hours");
        assert_eq!(window_phrase(300_000), "5 minutes");
        assert_eq!(window_phrase(1000), "second");
        assert_eq!(window_phrase(1500), "1500 ms");
    }
}
