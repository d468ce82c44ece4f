//! Text, number and date formatting shared by the charts and the DAG.

/// Escapes `s` for XML/HTML text and attribute values: `&`, `<`, `>`, `"`
/// and `'` become entities, and control characters XML forbids become
/// U+FFFD (tab, line feed and carriage return are kept).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    escape_into(&mut out, s);
    out
}

/// [`escape`], appended to `out`.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// The caller's id prefix reduced to `[A-Za-z0-9_-]` (anything else becomes
/// `-`), so it is safe in `id="…"` and `url(#…)`; empty becomes `svg`.
pub(crate) fn sanitize_id(id: &str) -> String {
    let out: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.is_empty() {
        "svg".to_owned()
    } else {
        out
    }
}

/// Appends a coordinate rounded to 0.1 (`12`, `12.5`, never `-0`), without
/// allocating: paths have thousands of them.
pub(crate) fn push_coord(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    let tenths = if v.is_finite() {
        (v * 10.0).round()
    } else {
        0.0
    };
    // Beyond ±1e15 tenths do not fit the integer path (and mean nothing on screen).
    if tenths.abs() >= 1e15 {
        // Writing to a String cannot fail.
        let _ = write!(out, "{}", tenths / 10.0);
        return;
    }
    let tenths = tenths as i64;
    if tenths < 0 {
        out.push('-');
    }
    let abs = tenths.unsigned_abs();
    let _ = write!(out, "{}", abs / 10);
    if !abs.is_multiple_of(10) {
        out.push('.');
        out.push(char::from(b'0' + (abs % 10) as u8));
    }
}

/// A coordinate rounded to 0.1, as text.
pub(crate) fn coord(v: f64) -> String {
    let mut s = String::new();
    push_coord(&mut s, v);
    s
}

/// Truncates `s` to at most `max` characters, the last being `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let count = s.chars().count();
    if count <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Rough width in pixels of `s` drawn at `font_px` in a proportional sans
/// font (about 0.6 em a character; good enough to size margins and boxes).
pub(crate) fn text_width(s: &str, font_px: f64) -> f64 {
    s.chars().count() as f64 * font_px * 0.6
}

/// `10^e` as exactly as f64 allows (exact for `0 <= e <= 22`).
pub(crate) fn pow10(e: i32) -> f64 {
    10f64.powi(e)
}

/// `n × 10^exp`, correctly rounded when `|exp| <= 22` and `n` is exact, so
/// that 3 × 10^-1 is the double nearest 0.3 (and prints as `0.3`).
pub(crate) fn scaled(n: i64, exp: i32) -> f64 {
    if exp >= 0 {
        n as f64 * pow10(exp)
    } else if exp >= -22 {
        n as f64 / pow10(-exp)
    } else {
        n as f64 * pow10(exp)
    }
}

const SUFFIXES: [&str; 5] = ["", "k", "M", "G", "T"];

/// Formats a value compactly for titles and tooltips: four significant
/// digits, trailing zeros dropped, `k`/`M`/`G`/`T` from 10 000 up,
/// scientific notation below 0.0001 and from 10^15; `0.30000000000000004`
/// is `0.3`, `1234` stays `1234`, `12345` is `12.35k`, `0.00001234` is
/// `1.234e-5`. NaN is `NaN`, infinities `∞` and `-∞`.
pub fn format_number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "∞" } else { "-∞" }.to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let a = v.abs();
    if !(1e-4..1e15).contains(&a) {
        return scientific(v, 4);
    }
    if a >= 1e4 {
        let mut idx = ((a.log10() / 3.0).floor() as usize).clamp(1, 4);
        loop {
            let s = fixed_significant(v / pow10(3 * idx as i32), 4);
            let int_digits = s
                .trim_start_matches('-')
                .split('.')
                .next()
                .map_or(0, str::len);
            if int_digits > 3 && idx < 4 {
                // 999 999 rounds to "1000k": say "1M" instead.
                idx += 1;
                continue;
            }
            return s + SUFFIXES[idx];
        }
    }
    fixed_significant(v, 4)
}

/// `v` with `sig` significant digits in fixed notation, zeros trimmed.
fn fixed_significant(v: f64, sig: i32) -> String {
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (sig - 1 - magnitude).clamp(0, 20) as usize;
    trim_zeros(format!("{v:.decimals$}"))
}

/// `v` in scientific notation with `sig` significant digits, zeros trimmed
/// (`1e-9`, `2.5e-9`, `1.234e15`).
pub(crate) fn scientific(v: f64, sig: usize) -> String {
    let s = format!("{:.*e}", sig.saturating_sub(1), v);
    match s.split_once('e') {
        Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa.to_owned())),
        None => s,
    }
}

/// Drops trailing zeros after a decimal point (and the point itself), and
/// turns `-0` into `0`.
pub(crate) fn trim_zeros(mut s: String) -> String {
    if s.contains('.') {
        let keep = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(keep);
    }
    if s == "-0" { "0".to_owned() } else { s }
}

/// The fewest decimals that show multiples of `step` exactly.
pub(crate) fn decimals_for(step: f64) -> usize {
    let step = step.abs();
    if !step.is_finite() || step == 0.0 {
        return 0;
    }
    for d in 0..=15 {
        let s = step * pow10(d);
        if (s - s.round()).abs() <= 1e-6 * s {
            return d as usize;
        }
    }
    15
}

/// Labels for axis ticks that are multiples of `step`: all with the same
/// scale (`k`, `M`, `G`, `T`, chosen by the largest tick from 10 000 up) and
/// just the decimals the step needs; scientific notation when the ticks are
/// all below 0.001 or reach 10^15. Zero is always `0`.
pub(crate) fn tick_labels(values: &[f64], step: f64) -> Vec<String> {
    let max_abs = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if max_abs == 0.0 || !max_abs.is_finite() {
        return values.iter().map(|&v| format_number(v)).collect();
    }
    if !(1e-3..1e15).contains(&max_abs) {
        // Enough digits to tell neighbouring ticks apart.
        let digits = (max_abs.log10().floor() - step.abs().log10().floor()) as i64 + 2;
        let sig = digits.clamp(1, 17) as usize;
        return values
            .iter()
            .map(|&v| {
                if v == 0.0 {
                    "0".to_owned()
                } else {
                    scientific(v, sig)
                }
            })
            .collect();
    }
    let idx = if max_abs >= 1e4 {
        ((max_abs.log10() / 3.0).floor() as usize).clamp(1, 4)
    } else {
        0
    };
    let scale = pow10(3 * idx as i32);
    let decimals = decimals_for(step / scale);
    values
        .iter()
        .map(|&v| {
            if v == 0.0 {
                return "0".to_owned();
            }
            let s = trim_zeros(format!("{:.*}", decimals, v / scale));
            if s == "0" { s } else { s + SUFFIXES[idx] }
        })
        .collect()
}

pub(crate) const SECOND_MS: f64 = 1_000.0;
pub(crate) const MINUTE_MS: f64 = 60.0 * SECOND_MS;
pub(crate) const HOUR_MS: f64 = 60.0 * MINUTE_MS;
pub(crate) const DAY_MS: f64 = 24.0 * HOUR_MS;

/// A UTC instant split into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub milli: u32,
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The proleptic Gregorian date `days` days after 1970-01-01.
pub(crate) fn date_from_days(days: i64) -> (i64, u32, u32) {
    // The Gregorian calendar repeats every 400 years, which hold exactly
    // 146 097 days; so 1970-01-01 + k × 146 097 days is 1 January of the
    // year 1970 + 400k. Walk the rest year by year, then month by month.
    const CYCLE_DAYS: i64 = 146_097;
    let mut year = 1970 + 400 * days.div_euclid(CYCLE_DAYS);
    let mut rest = days.rem_euclid(CYCLE_DAYS);
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if rest < len {
            break;
        }
        rest -= len;
        year += 1;
    }
    let mut month = 1;
    while month < 12 {
        let len = days_in_month(year, month);
        if rest < len {
            break;
        }
        rest -= len;
        month += 1;
    }
    (year, month, rest as u32 + 1)
}

/// Splits unix milliseconds (rounded to the millisecond) into UTC fields.
pub(crate) fn utc(ms: f64) -> Utc {
    // ±8.64e15 ms is the ECMAScript date range (±273 790 years).
    let total = ms.round().clamp(-8.64e15, 8.64e15) as i64;
    let day_ms = 86_400_000;
    let (year, month, day) = date_from_days(total.div_euclid(day_ms));
    let in_day = total.rem_euclid(day_ms);
    Utc {
        year,
        month,
        day,
        hour: (in_day / 3_600_000) as u32,
        minute: (in_day / 60_000 % 60) as u32,
        second: (in_day / 1000 % 60) as u32,
        milli: (in_day % 1000) as u32,
    }
}

/// Formats unix milliseconds as UTC `YYYY-MM-DD HH:MM:SS`, with `.mmm`
/// appended when the milliseconds are not zero. Not finite: as
/// [`format_number`] would.
pub fn format_time_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return format_number(ms);
    }
    let t = utc(ms);
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    if t.milli != 0 {
        s.push_str(&format!(".{:03}", t.milli));
    }
    s
}

/// How much of a timestamp an axis label shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeLabel {
    /// `YYYY-MM-DD`
    Date,
    /// `MM-DD HH:MM`
    DayMinute,
    /// `HH:MM`
    Minute,
    /// `HH:MM:SS`
    Second,
    /// `HH:MM:SS.mmm`
    Milli,
}

/// A time axis label.
pub(crate) fn time_label(ms: f64, kind: TimeLabel) -> String {
    let t = utc(ms);
    match kind {
        TimeLabel::Date => format!("{:04}-{:02}-{:02}", t.year, t.month, t.day),
        TimeLabel::DayMinute => {
            format!("{:02}-{:02} {:02}:{:02}", t.month, t.day, t.hour, t.minute)
        }
        TimeLabel::Minute => format!("{:02}:{:02}", t.hour, t.minute),
        TimeLabel::Second => format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
        TimeLabel::Milli => format!(
            "{:02}:{:02}:{:02}.{:03}",
            t.hour, t.minute, t.second, t.milli
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_all_five_and_controls() {
        assert_eq!(escape(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
        assert_eq!(
            escape("</svg><script>alert(1)</script>"),
            "&lt;/svg&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(escape("tab\tnl\nnul\u{0}"), "tab\tnl\nnul\u{fffd}");
        assert_eq!(escape("ünïcødé →"), "ünïcødé →");
    }

    #[test]
    fn ids_are_sanitized() {
        assert_eq!(sanitize_id("loss chart\"><x"), "loss-chart---x");
        assert_eq!(sanitize_id(""), "svg");
        assert_eq!(sanitize_id("run_1-loss"), "run_1-loss");
    }

    #[test]
    fn coords_are_compact() {
        assert_eq!(coord(12.0), "12");
        assert_eq!(coord(12.04), "12");
        assert_eq!(coord(12.25), "12.3");
        assert_eq!(coord(-0.01), "0");
        assert_eq!(coord(-3.5), "-3.5");
        assert_eq!(coord(f64::NAN), "0");
        assert_eq!(coord(-0.25), "-0.3");
        assert_eq!(coord(0.04), "0");
        assert_eq!(coord(1e20), "100000000000000000000");
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(format_number(0.1 + 0.2), "0.3");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(1234.0), "1234");
        assert_eq!(format_number(12345.0), "12.35k");
        assert_eq!(format_number(-2_500_000.0), "-2.5M");
        assert_eq!(format_number(999_999.0), "1M");
        assert_eq!(format_number(3e9), "3G");
        assert_eq!(format_number(1e12), "1T");
        assert_eq!(format_number(0.000_012_34), "1.234e-5");
        assert_eq!(format_number(2e15), "2e15");
        assert_eq!(format_number(0.123_456), "0.1235");
        assert_eq!(format_number(f64::NAN), "NaN");
        assert_eq!(format_number(f64::NEG_INFINITY), "-∞");
    }

    #[test]
    fn tick_labels_share_a_scale() {
        assert_eq!(
            tick_labels(&[0.0, 0.1, 0.2, 0.30000000000000004], 0.1),
            ["0", "0.1", "0.2", "0.3"]
        );
        assert_eq!(tick_labels(&[0.0, 0.25, 0.5], 0.25), ["0", "0.25", "0.5"]);
        assert_eq!(
            tick_labels(&[0.0, 2.5e11, 5e11, 7.5e11, 1e12], 2.5e11),
            ["0", "0.25T", "0.5T", "0.75T", "1T"]
        );
        assert_eq!(
            tick_labels(&[0.0, 5000.0, 10000.0], 5000.0),
            ["0", "5k", "10k"]
        );
        assert_eq!(tick_labels(&[1000.0, 2000.0], 1000.0), ["1000", "2000"]);
        assert_eq!(
            tick_labels(&[1e-9, 1.5e-9, 2e-9], 5e-10),
            ["1e-9", "1.5e-9", "2e-9"]
        );
        assert_eq!(tick_labels(&[-5.0, 0.0, 5.0], 5.0), ["-5", "0", "5"]);
    }

    #[test]
    fn dates_from_days() {
        assert_eq!(date_from_days(0), (1970, 1, 1));
        assert_eq!(date_from_days(-1), (1969, 12, 31));
        assert_eq!(date_from_days(11_016), (2000, 2, 29));
        assert_eq!(date_from_days(11_017), (2000, 3, 1));
        assert_eq!(date_from_days(20_088), (2024, 12, 31));
        assert_eq!(date_from_days(-719_468), (0, 3, 1));
        assert_eq!(date_from_days(2_932_896), (9999, 12, 31));
        // Every day follows the one before.
        let mut prev = date_from_days(-800_000);
        for d in -799_999..800_000 {
            let cur = date_from_days(d);
            let next_in_month = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(
                cur == next_in_month || cur == next_month || cur == next_year,
                "{prev:?} -> {cur:?}"
            );
            assert!(cur.2 as i64 <= days_in_month(cur.0, cur.1));
            prev = cur;
        }
    }

    #[test]
    fn times_format_in_utc() {
        assert_eq!(format_time_ms(0.0), "1970-01-01 00:00:00");
        assert_eq!(format_time_ms(1_700_000_000_000.0), "2023-11-14 22:13:20");
        assert_eq!(
            format_time_ms(1_700_000_000_123.0),
            "2023-11-14 22:13:20.123"
        );
        assert_eq!(format_time_ms(-1.0), "1969-12-31 23:59:59.999");
        assert_eq!(time_label(1_700_000_000_000.0, TimeLabel::Minute), "22:13");
        assert_eq!(
            time_label(1_700_000_000_000.0, TimeLabel::Date),
            "2023-11-14"
        );
        assert_eq!(
            time_label(1_700_000_000_000.0, TimeLabel::DayMinute),
            "11-14 22:13"
        );
        assert_eq!(
            time_label(1_700_000_000_000.0, TimeLabel::Second),
            "22:13:20"
        );
        assert_eq!(
            time_label(1_700_000_000_042.0, TimeLabel::Milli),
            "22:13:20.042"
        );
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate("äöü", 2), "ä…");
    }
}
