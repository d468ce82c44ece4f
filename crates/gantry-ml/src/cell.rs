//! Text → typed value parsing shared by csv-ingest, the dataset reader and the
//! serving path (`transform::apply` on JSON rows), so a value means the same
//! thing at training and at serving time.

/// One value as the encoders see it: every numeric-like type (int, float,
/// bool as 0/1, datetime as seconds since the epoch) is a number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Cell<'a> {
    Missing,
    Num(f64),
    Str(&'a str),
}

/// Parses `true/false/yes/no` (any case).
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

pub(crate) fn parse_int(text: &str) -> Option<i64> {
    text.parse::<i64>().ok()
}

/// A finite float; `inf`/`nan` spellings are not numbers here (`NaN` is a
/// missing marker by default).
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    let first = text.as_bytes().first()?;
    // Rust accepts "inf", "infinity", "nan": refuse anything not starting like a number.
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Milliseconds since the Unix epoch (UTC) for `YYYY-MM-DD`,
/// `YYYY-MM-DDTHH:MM[:SS[.fff]]` with `T` or a space, and an optional `Z`
/// or `±HH:MM` / `±HHMM` offset (none means UTC).
pub(crate) fn parse_datetime(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let mut ms = days * 86_400_000;
    let rest = &b[10..];
    if rest.is_empty() {
        return Some(ms);
    }
    if !(rest[0] == b'T' || rest[0] == b't' || rest[0] == b' ') || rest.len() < 6 {
        return None;
    }
    let time = &rest[1..];
    if time[2] != b':' {
        return None;
    }
    let hour = digits(&time[0..2])?;
    let minute = digits(&time[3..5])?;
    let mut pos = 5;
    let mut second = 0;
    let mut millis = 0;
    if time.get(pos) == Some(&b':') {
        second = digits(time.get(pos + 1..pos + 3)?)?;
        pos += 3;
        if time.get(pos) == Some(&b'.') || time.get(pos) == Some(&b',') {
            pos += 1;
            let start = pos;
            while time.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            if pos == start {
                return None;
            }
            // Keep milliseconds; finer digits are truncated.
            let frac = &time[start..pos];
            let mut value = 0;
            for i in 0..3 {
                value = value * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
            }
            millis = value;
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    ms += ((hour * 60 + minute) * 60 + second.min(59)) * 1000 + millis;
    let zone = &time[pos..];
    let offset_minutes = match zone {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let oh = digits(&[*h1, *h2])?;
            let om = digits(&[*m1, *m2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let total = oh * 60 + om;
            if *sign == b'+' { total } else { -total }
        }
        _ => return None,
    };
    Some(ms - offset_minutes * 60_000)
}

/// RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SSZ`, with `.mmm` when there are milliseconds.
pub(crate) fn format_datetime(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let secs = in_day / 1000;
    let millis = in_day % 1000;
    let (hh, mm, ss) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's days-from-civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_in_the_accepted_forms() {
        assert_eq!(parse_datetime("1970-01-01"), Some(0));
        assert_eq!(parse_datetime("1970-01-02"), Some(86_400_000));
        assert_eq!(
            parse_datetime("2024-02-29T12:30:00Z"),
            Some(1_709_209_800_000)
        );
        assert_eq!(parse_datetime("2024-02-29 12:30"), Some(1_709_209_800_000));
        assert_eq!(
            parse_datetime("2024-02-29T14:30:00+02:00"),
            Some(1_709_209_800_000)
        );
        assert_eq!(
            parse_datetime("2024-02-29T12:30:00.250Z"),
            Some(1_709_209_800_250)
        );
        assert_eq!(parse_datetime("1969-12-31T23:59:59Z"), Some(-1000));
        assert_eq!(parse_datetime("2023-02-29"), None);
        assert_eq!(parse_datetime("2024-13-01"), None);
        assert_eq!(parse_datetime("2024-01-01T25:00"), None);
        assert_eq!(parse_datetime("2024-01-01X"), None);
        assert_eq!(parse_datetime("20240101"), None);
        assert_eq!(parse_datetime("hello world"), None);
    }

    #[test]
    fn formatting_round_trips() {
        for text in [
            "2024-02-29T12:30:00Z",
            "1969-12-31T23:59:59Z",
            "2000-01-01T00:00:00.125Z",
            "1900-03-01T00:00:00Z",
        ] {
            let ms = parse_datetime(text).unwrap();
            assert_eq!(format_datetime(ms), text);
        }
    }

    #[test]
    fn numbers_and_bools() {
        assert_eq!(parse_float("1.5e3"), Some(1500.0));
        assert_eq!(parse_float(".5"), Some(0.5));
        assert_eq!(parse_float("inf"), None);
        assert_eq!(parse_float("NaN"), None);
        assert_eq!(parse_float("1e999"), None);
        assert_eq!(parse_int("-42"), Some(-42));
        assert_eq!(parse_int("4.0"), None);
        assert_eq!(parse_bool("YES"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("1"), None);
    }
}
