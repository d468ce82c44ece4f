//! The page model every UI page is built from: a few kinds of sections (key/values, tables,
//! charts, forms, logs) rendered by one template, so every page looks and behaves alike and
//! everything user-controlled is escaped by the template engine. Charts and DAGs arrive as
//! SVG from `gantry-ui`, which escapes their text itself.

use askama::Template;

/// The navigation bar: who is logged in and what they may see.
#[derive(Clone, Debug)]
pub struct Nav {
    pub user: String,
    pub role: &'static str,
    pub project: Option<String>,
    /// Whether the server has `--auth` (then a logout button is shown).
    pub auth: bool,
    pub admin: bool,
    /// Which top-level section is current.
    pub current: &'static str,
}

impl Nav {
    pub fn items(&self) -> Vec<(&'static str, &'static str, bool)> {
        let mut items = vec![
            ("Runs", "/runs", self.current == "runs"),
            ("Experiments", "/experiments", self.current == "experiments"),
            ("Models", "/models", self.current == "models"),
            ("Deployments", "/deployments", self.current == "deployments"),
            ("Images", "/images", self.current == "images"),
        ];
        if self.admin {
            items.push(("Audit", "/audit", self.current == "audit"));
        }
        items
    }
}

#[derive(Clone, Debug, Default)]
pub struct Link {
    pub text: String,
    pub href: String,
}

impl Link {
    pub fn new(text: impl Into<String>, href: impl Into<String>) -> Link {
        Link {
            text: text.into(),
            href: href.into(),
        }
    }
}

/// One table cell or value: text, optionally a link, a CSS class and a tooltip.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    pub class: String,
    pub title: Option<String>,
}

impl Cell {
    pub fn text(t: impl Into<String>) -> Cell {
        Cell {
            text: t.into(),
            ..Cell::default()
        }
    }
    pub fn link(t: impl Into<String>, href: impl Into<String>) -> Cell {
        Cell {
            text: t.into(),
            href: Some(href.into()),
            ..Cell::default()
        }
    }
    /// A value that does not exist (shown as "—", never as 0).
    pub fn missing() -> Cell {
        Cell {
            text: "—".into(),
            class: "missing".into(),
            title: Some("missing".into()),
            ..Cell::default()
        }
    }
    /// A status badge.
    pub fn status(s: &str) -> Cell {
        Cell {
            text: s.to_owned(),
            class: format!("badge status-{}", css_token(s)),
            ..Cell::default()
        }
    }
    pub fn class(mut self, c: impl Into<String>) -> Cell {
        let c = c.into();
        if self.class.is_empty() {
            self.class = c;
        } else {
            self.class = format!("{} {c}", self.class);
        }
        self
    }
    pub fn title(mut self, t: impl Into<String>) -> Cell {
        self.title = Some(t.into());
        self
    }
    pub fn num(v: Option<f64>) -> Cell {
        match v {
            Some(v) => Cell::text(fmt_number(v)).class("num").title(v.to_string()),
            None => Cell::missing(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Header {
    pub text: String,
    /// A link that sorts by this column.
    pub href: Option<String>,
    /// "ascending", "descending" or "" (for aria-sort).
    pub sorted: &'static str,
}

impl Header {
    pub fn new(t: impl Into<String>) -> Header {
        Header {
            text: t.into(),
            ..Header::default()
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Row {
    pub cells: Vec<Cell>,
    pub class: String,
    /// A checkbox (name, value, checked) in front of the row, for forms that select rows.
    pub select: Option<(String, String, bool)>,
}

impl Row {
    pub fn new(cells: Vec<Cell>) -> Row {
        Row {
            cells,
            ..Row::default()
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    pub caption: String,
    pub headers: Vec<Header>,
    pub rows: Vec<Row>,
    /// Shown instead of an empty table.
    pub empty: String,
    pub selectable: bool,
}

impl Table {
    pub fn new(caption: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            caption: caption.into(),
            headers: headers.iter().map(|h| Header::new(*h)).collect(),
            rows: Vec::new(),
            empty: "Nothing here yet.".into(),
            selectable: false,
        }
    }
    pub fn empty(mut self, text: impl Into<String>) -> Table {
        self.empty = text.into();
        self
    }
    pub fn push(&mut self, cells: Vec<Cell>) {
        self.rows.push(Row::new(cells));
    }
}

/// A form field.
#[derive(Clone, Debug, Default)]
pub struct Input {
    pub name: String,
    pub label: String,
    pub value: String,
    /// "text", "number", "select", "hidden", "password", "datetime-local".
    pub kind: &'static str,
    pub options: Vec<(String, String)>,
    pub placeholder: String,
}

impl Input {
    pub fn text(name: &str, label: &str, value: &str, placeholder: &str) -> Input {
        Input {
            name: name.into(),
            label: label.into(),
            value: value.into(),
            kind: "text",
            placeholder: placeholder.into(),
            ..Input::default()
        }
    }
    pub fn hidden(name: &str, value: &str) -> Input {
        Input {
            name: name.into(),
            value: value.into(),
            kind: "hidden",
            ..Input::default()
        }
    }
    /// A select; `options` are (value, label), the first "" means "any".
    pub fn select(name: &str, label: &str, value: &str, options: Vec<(String, String)>) -> Input {
        Input {
            name: name.into(),
            label: label.into(),
            value: value.into(),
            kind: "select",
            options,
            ..Input::default()
        }
    }
}

/// A form: GET forms filter (their state ends up in the URL), POST forms change something.
#[derive(Clone, Debug, Default)]
pub struct Form {
    pub action: String,
    pub post: bool,
    pub inputs: Vec<Input>,
    pub button: String,
    /// "danger" for destructive actions.
    pub class: String,
    /// A line shown next to the button.
    pub note: String,
    /// For GET forms: a link that clears the filters.
    pub reset: Option<String>,
}

impl Form {
    pub fn post(action: impl Into<String>, button: impl Into<String>) -> Form {
        Form {
            action: action.into(),
            post: true,
            button: button.into(),
            ..Form::default()
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LogLine {
    pub id: i64,
    pub step: String,
    pub stream: String,
    pub time: String,
    pub text: String,
}

/// Log lines, optionally followed live over SSE (the script appends new lines).
#[derive(Clone, Debug, Default)]
pub struct LogView {
    pub lines: Vec<LogLine>,
    /// The SSE URL that continues after the last line, while the run is live.
    pub live: Option<String>,
    pub show_step: bool,
}

#[derive(Clone, Debug)]
pub enum Section {
    /// A heading with an anchor id.
    Heading(String, String),
    Text(String),
    /// A notice: (class, text) — class "error", "warn" or "info".
    Notice(String, String),
    KeyValues(Vec<(String, Cell)>),
    Table(Table),
    /// A table inside a GET form whose rows have checkboxes (compare runs).
    SelectTable(Form, Table),
    /// Trusted SVG from `gantry-ui` (it escapes every text it draws).
    Svg(String),
    /// Several charts side by side.
    Charts(Vec<String>),
    Forms(Vec<Form>),
    Pager(Pager),
    Log(LogView),
    /// Preformatted text: (label, text).
    Pre(String, String),
    Links(Vec<Link>),
}

#[derive(Clone, Debug, Default)]
pub struct Pager {
    pub first: Option<String>,
    pub next: Option<String>,
    pub info: String,
}

/// A whole page.
#[derive(Template)]
#[template(path = "page.html")]
pub struct Page {
    pub title: String,
    pub nav: Nav,
    pub crumbs: Vec<Link>,
    /// A status badge next to the heading (text, class) and, while the run is live, the SSE
    /// URL that reports its end.
    pub badge: Option<Cell>,
    pub live_status: Option<String>,
    pub sections: Vec<Section>,
    pub asset_version: &'static str,
}

impl Page {
    pub fn new(nav: Nav, title: impl Into<String>) -> Page {
        Page {
            title: title.into(),
            nav,
            crumbs: Vec::new(),
            badge: None,
            live_status: None,
            sections: Vec::new(),
            asset_version: super::assets::VERSION,
        }
    }
    pub fn push(&mut self, s: Section) {
        self.sections.push(s);
    }
    pub fn heading(&mut self, text: &str, id: &str) {
        self.sections
            .push(Section::Heading(text.to_owned(), id.to_owned()));
    }
}

/// The login page (no navigation: nobody is logged in yet).
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub next: String,
    pub error: String,
    pub asset_version: &'static str,
}

/// A string reduced to `[a-z0-9-]`, for CSS class names built from data.
pub fn css_token(s: &str) -> String {
    s.chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A number for a table: integers as they are, others with 4 significant digits.
pub fn fmt_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let a = v.abs();
    if !(1e-4..1e6).contains(&a) {
        return format!("{v:.3e}");
    }
    let digits = 4 - (a.log10().floor() as i32 + 1);
    let s = format!("{:.*}", digits.max(0) as usize, v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// UTC `YYYY-MM-DD HH:MM:SS` of a Unix time in ms.
pub fn fmt_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

pub fn fmt_opt_time(ms: Option<i64>) -> Cell {
    match ms {
        Some(ms) => Cell::text(fmt_time(ms)).class("time"),
        None => Cell::missing(),
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` (UTC) into ms.
pub fn parse_time(s: &str) -> Option<i64> {
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (hh, mm) = match time {
        Some(t) => {
            let mut p = t.split(':');
            let hh: i64 = p.next()?.parse().ok()?;
            let mm: i64 = p.next().unwrap_or("0").parse().ok()?;
            if !(0..24).contains(&hh) || !(0..60).contains(&mm) {
                return None;
            }
            (hh, mm)
        }
        None => (0, 0),
    };
    // Days from civil (inverse of civil_from_days).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60) * 1000)
}

pub fn fmt_duration_ms(ms: i64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let s = ms as f64 / 1000.0;
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let total = ms / 1000;
    if total < 3600 {
        return format!("{} min {} s", total / 60, total % 60);
    }
    format!("{} h {} min", total / 3600, (total % 3600) / 60)
}

pub fn fmt_bytes(b: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Percent-encodes a query value or path segment (everything but unreserved characters).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from pairs, empty values left out: `?a=1&b=x`.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_format() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00");
        assert_eq!(fmt_time(1_796_400_000_000), "2026-12-04 16:00:00");
        let t = parse_time("2026-12-04T16:00").unwrap();
        assert_eq!(t, 1_796_400_000_000);
        assert_eq!(parse_time("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_time("2024-13-01"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn numbers_and_sizes_are_short() {
        assert_eq!(fmt_number(3.0), "3");
        assert_eq!(fmt_number(0.912345), "0.9123");
        assert_eq!(fmt_number(123.456), "123.5");
        assert_eq!(fmt_number(1e-7), "1.000e-7");
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(3 << 20), "3.0 MiB");
        assert_eq!(fmt_duration_ms(1500), "1.5 s");
        assert_eq!(fmt_duration_ms(125_000), "2 min 5 s");
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            query(&[("q", "a b&c"), ("x", ""), ("p", "é")]),
            "?q=a%20b%26c&p=%C3%A9"
        );
        assert_eq!(css_token("Failed <x>"), "failed--x-");
    }
}
