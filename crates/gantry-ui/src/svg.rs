//! Charts as inline SVG: [`LineChart`] (metrics over steps or time, optional
//! log scale) and [`BarChart`] (per-feature drift with a threshold), plus the
//! pieces they are built from: [`nice_ticks`], [`decimate`], [`escape`].
//!
//! The markup uses these classes (the page's stylesheet colours them):
//!
//! | class | on |
//! |---|---|
//! | `chart line-chart`, `chart bar-chart` | the `<svg>` |
//! | `grid` | `<g>` of grid lines |
//! | `axis` | the two axis `<line>`s (no text inside) |
//! | `tick` | tick label `<text>` |
//! | `axis-label` | axis title `<text>` |
//! | `series series-N` | a series' `<path>` (N = index % 8) |
//! | `pt series-N` | point `<circle>` with a value tooltip |
//! | `legend`, `legend-item`, `swatch series-N` | legend `<g>`s and swatch `<rect>`s |
//! | `bar`, `bar over` | bar `<rect>` (`over`: above the threshold) |
//! | `bar-label` | bar label `<text>` |
//! | `threshold` | dashed threshold `<line>` |
//! | `empty` | the "no data" `<text>` |

use crate::format::{
    self, DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, TimeLabel, coord, escape_into, push_coord,
    sanitize_id, text_width, tick_labels,
};

pub use crate::format::{escape, format_number, format_time_ms};

/// How many series colours the stylesheet defines (`series-0` … `series-7`).
pub const SERIES_CLASSES: usize = 8;

/// Font size of tick labels and legend text, in px.
const FONT_PX: f64 = 11.0;
/// A series with at most this many points (after decimation) gets a hoverable
/// circle per point.
const MAX_POINT_TOOLTIPS: usize = 200;

/// Ticks and the step between them.
#[derive(Debug, Clone, PartialEq)]
struct Ticks {
    values: Vec<f64>,
    step: f64,
}

/// "Nice" axis ticks (1, 2, 2.5, 5 × 10^k steps) covering [min, max] with about `target` ticks.
///
/// The first tick is at or below `min` and the last at or above `max`; the
/// step is the one whose tick count is nearest `target` (at least 2), ties
/// going to the one that wastes least room. The values are the doubles
/// nearest the decimal ticks (`0.3`, not `0.30000000000000004`). `min` and
/// `max` may come in either order and be negative or of any magnitude;
/// `min == max` gets a range around the value (`0` → -1 … 1). Returns an
/// empty vector when either bound is NaN or infinite.
pub fn nice_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    linear_ticks(min, max, target)
        .map(|t| t.values)
        .unwrap_or_default()
}

fn linear_ticks(min: f64, max: f64, target: usize) -> Option<Ticks> {
    if !(min.is_finite() && max.is_finite()) {
        return None;
    }
    let target = target.clamp(2, 1000);
    const LIMIT: f64 = 1e300;
    let mut lo = min.min(max).clamp(-LIMIT, LIMIT);
    let mut hi = min.max(max).clamp(-LIMIT, LIMIT);
    let magnitude = lo.abs().max(hi.abs());
    if hi - lo <= magnitude * 1e-9 {
        // One value (or a range too narrow to label): pad around it.
        let centre = lo / 2.0 + hi / 2.0;
        let pad = if magnitude == 0.0 {
            1.0
        } else {
            magnitude * 0.1
        };
        lo = centre - pad;
        hi = centre + pad;
    }
    let raw = (hi - lo) / (target - 1) as f64;
    let k = raw.log10().floor() as i32;
    // (distance from target, room covered, mantissa, exponent, first, last)
    let mut best: Option<(f64, f64, i64, i32, i64, i64)> = None;
    for e in (k - 1)..=(k + 1) {
        // Steps as integer mantissa × 10^exp: 1, 2, 2.5, 5 × 10^e.
        for mantissa in [10i64, 20, 25, 50] {
            let exp = e - 1;
            let step = format::scaled(mantissa, exp);
            if !(step.is_finite() && step > 0.0) {
                continue;
            }
            let first = (lo / step + 1e-9).floor();
            let last = (hi / step - 1e-9).ceil();
            let count = last - first + 1.0;
            if !(2.0..=10_000.0).contains(&count) || first.abs() > 1e14 || last.abs() > 1e14 {
                continue;
            }
            let distance = (count - target as f64).abs();
            let covered = (last - first) * step;
            let better = match best {
                None => true,
                Some((d, c, ..)) => distance < d || (distance == d && covered < c),
            };
            if better {
                best = Some((distance, covered, mantissa, exp, first as i64, last as i64));
            }
        }
    }
    let Some((_, _, mantissa, exp, first, last)) = best else {
        return Some(Ticks {
            values: vec![lo, hi],
            step: hi - lo,
        });
    };
    Some(Ticks {
        values: (first..=last)
            .map(|i| format::scaled(i * mantissa, exp))
            .collect(),
        step: format::scaled(mantissa, exp),
    })
}

/// Ticks strictly for a time axis in unix ms, inside [lo, hi], at round
/// seconds, minutes, hours or days (UTC), with how to label them.
fn time_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, TimeLabel) {
    const STEPS: [f64; 36] = [
        1.0,
        2.0,
        5.0,
        10.0,
        20.0,
        50.0,
        100.0,
        200.0,
        500.0,
        SECOND_MS,
        2.0 * SECOND_MS,
        5.0 * SECOND_MS,
        10.0 * SECOND_MS,
        15.0 * SECOND_MS,
        30.0 * SECOND_MS,
        MINUTE_MS,
        2.0 * MINUTE_MS,
        5.0 * MINUTE_MS,
        10.0 * MINUTE_MS,
        15.0 * MINUTE_MS,
        30.0 * MINUTE_MS,
        HOUR_MS,
        2.0 * HOUR_MS,
        3.0 * HOUR_MS,
        6.0 * HOUR_MS,
        12.0 * HOUR_MS,
        DAY_MS,
        2.0 * DAY_MS,
        7.0 * DAY_MS,
        14.0 * DAY_MS,
        30.0 * DAY_MS,
        60.0 * DAY_MS,
        91.0 * DAY_MS,
        182.0 * DAY_MS,
        365.0 * DAY_MS,
        730.0 * DAY_MS,
    ];
    let target = target.max(2);
    let span = hi - lo;
    let label_for = |step: f64| {
        if step >= DAY_MS {
            TimeLabel::Date
        } else if span >= DAY_MS {
            TimeLabel::DayMinute
        } else if step >= MINUTE_MS {
            TimeLabel::Minute
        } else if step >= SECOND_MS {
            TimeLabel::Second
        } else {
            TimeLabel::Milli
        }
    };
    if span / (730.0 * DAY_MS) > target as f64 {
        // Decades and more: nice multiples of days.
        let ticks = linear_ticks(lo / DAY_MS, hi / DAY_MS, target)
            .map(|t| t.values)
            .unwrap_or_default();
        let values = ticks
            .into_iter()
            .map(|d| d.round() * DAY_MS)
            .filter(|&v| v >= lo && v <= hi)
            .collect();
        return (values, TimeLabel::Date);
    }
    let mut best: Option<(f64, f64)> = None; // (distance, step)
    for step in STEPS {
        let first = (lo / step).ceil();
        let last = (hi / step).floor();
        let count = last - first + 1.0;
        if count < 1.0 {
            continue;
        }
        let distance = (count - target as f64).abs() + if count < 2.0 { 1000.0 } else { 0.0 };
        if best.is_none_or(|(d, _)| distance <= d) {
            best = Some((distance, step));
        }
    }
    match best {
        Some((_, step)) => {
            let first = (lo / step).ceil() as i64;
            let last = (hi / step).floor() as i64;
            (
                (first..=last).map(|i| i as f64 * step).collect(),
                label_for(step),
            )
        }
        None => (vec![lo, hi], label_for(span)),
    }
}

/// Min/max decimation per pixel column, so that no spike is hidden.
///
/// Non-finite points are dropped and the rest sorted by x (stably) when
/// they are not already. When more than `4 × columns` remain they are
/// bucketed into `columns` equal-width x buckets over [x_min, x_max]; each
/// bucket keeps its first point, its min-y point, its max-y point and its
/// last point (each once, in x order). The output is sorted by x, at most
/// `4 × columns` long, and holds the global and every bucket's min and max.
/// `columns == 0` gives an empty vector.
pub fn decimate(points: &[(f64, f64)], columns: usize) -> Vec<(f64, f64)> {
    if columns == 0 {
        return Vec::new();
    }
    let mut pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if !pts.is_sorted_by(|a, b| a.0 <= b.0) {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    if pts.len() <= columns.saturating_mul(4) {
        return pts;
    }
    decimate_sorted(&pts, columns)
}

/// [`decimate`] for points already finite and sorted by x; `columns > 0`.
fn decimate_sorted(pts: &[(f64, f64)], columns: usize) -> Vec<(f64, f64)> {
    if columns == 0 {
        return Vec::new();
    }
    if pts.len() <= columns.saturating_mul(4) {
        return pts.to_vec();
    }
    let (Some(&(x0, _)), Some(&(x1, _))) = (pts.first(), pts.last()) else {
        return pts.to_vec();
    };
    // Halves, so that even ±f64::MAX ranges do not overflow.
    let half_span = x1 / 2.0 - x0 / 2.0;
    let cols = columns as f64;
    let bucket = |x: f64| -> usize {
        if half_span > 0.0 {
            (((x / 2.0 - x0 / 2.0) / half_span * cols) as usize).min(columns - 1)
        } else {
            0
        }
    };
    let mut out = Vec::with_capacity(columns * 4);
    let mut start = 0;
    while start < pts.len() {
        let b = bucket(pts[start].0);
        let (mut lo, mut hi) = (start, start);
        let mut end = start + 1;
        while end < pts.len() && bucket(pts[end].0) == b {
            if pts[end].1 < pts[lo].1 {
                lo = end;
            }
            if pts[end].1 > pts[hi].1 {
                hi = end;
            }
            end += 1;
        }
        let mut keep = [start, lo, hi, end - 1];
        keep.sort_unstable();
        let mut last = None;
        for i in keep {
            if last != Some(i) {
                out.push(pts[i]);
                last = Some(i);
            }
        }
        start = end;
    }
    out
}

/// One named line of a [`LineChart`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Shown in the legend and tooltips; empty → `series N`.
    pub name: String,
    /// (x, y) points; need not be sorted; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
}

/// What the x values of a [`LineChart`] are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XAxis {
    /// Plain numbers (steps, epochs): nice numeric ticks.
    #[default]
    Number,
    /// Unix milliseconds: ticks at round UTC times labelled `HH:MM`
    /// (`HH:MM:SS` for short spans, `MM-DD HH:MM` across days,
    /// `YYYY-MM-DD` when the ticks are days apart).
    TimeMs,
}

/// A line chart of one or more series.
///
/// `Default` gives 640 × 240 and no series; fill in the rest with struct
/// update syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Id prefix, unique on the page (reduced to `[A-Za-z0-9_-]`); the
    /// SVG's `<title>` gets the id `{id}-title`.
    pub id: String,
    /// Accessible title (the SVG's `<title>`; not drawn).
    pub title: String,
    /// Drawn under the x axis when not empty.
    pub x_label: String,
    /// Drawn, rotated, left of the y axis when not empty.
    pub y_label: String,
    /// Numbers or unix-ms timestamps.
    pub x_axis: XAxis,
    /// viewBox width (at least 160).
    pub width: u32,
    /// viewBox height (at least 100).
    pub height: u32,
    /// The lines; series N gets the classes `series series-{N % 8}`.
    pub series: Vec<Series>,
    /// Logarithmic y axis (decades); points with y <= 0 are left out. When
    /// no point is positive the axis stays linear.
    pub y_log: bool,
}

impl Default for LineChart {
    fn default() -> Self {
        LineChart {
            id: "chart".to_owned(),
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            x_axis: XAxis::Number,
            width: 640,
            height: 240,
            series: Vec::new(),
            y_log: false,
        }
    }
}

/// The plot rectangle and the data domain it shows.
#[derive(Debug, Clone, Copy)]
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    y_log: bool,
}

impl Frame {
    fn x(&self, x: f64) -> f64 {
        if self.x1 > self.x0 {
            self.left + (x - self.x0) / (self.x1 - self.x0) * self.width
        } else {
            self.left + self.width / 2.0
        }
    }

    fn y(&self, y: f64) -> f64 {
        let v = if self.y_log { y.log10() } else { y };
        if self.y1 > self.y0 {
            self.top + self.height - (v - self.y0) / (self.y1 - self.y0) * self.height
        } else {
            self.top + self.height / 2.0
        }
    }

    fn right(&self) -> f64 {
        self.left + self.width
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

/// Opens the `<svg>` with its `<title>`.
fn open_svg(out: &mut String, id: &str, w: f64, h: f64, title: &str, class: &str) {
    let (w, h) = (coord(w), coord(h));
    out.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-labelledby=\"{id}-title\" class=\"{class}\" width=\"{w}\" height=\"{h}\" \
         font-family=\"system-ui, sans-serif\" font-size=\"11\"><title id=\"{id}-title\">"
    ));
    escape_into(out, title);
    out.push_str("</title>");
}

/// `<text class="empty">` in the middle of the picture.
fn push_empty(out: &mut String, w: f64, h: f64, text: &str) {
    out.push_str("<text class=\"empty\" x=\"");
    push_coord(out, w / 2.0);
    out.push_str("\" y=\"");
    push_coord(out, h / 2.0 + 4.0);
    out.push_str("\" text-anchor=\"middle\" fill=\"currentColor\">");
    escape_into(out, text);
    out.push_str("</text>");
}

fn push_line(out: &mut String, class: Option<&str>, x1: f64, y1: f64, x2: f64, y2: f64) {
    out.push_str("<line");
    if let Some(class) = class {
        out.push_str(" class=\"");
        out.push_str(class);
        out.push('"');
    }
    out.push_str(&format!(
        " x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"",
        coord(x1),
        coord(y1),
        coord(x2),
        coord(y2)
    ));
    if class.is_some() {
        out.push_str(" stroke=\"currentColor\"");
    }
    out.push_str("/>");
}

/// `<text>` with the given anchor and optional class.
fn push_text(out: &mut String, class: &str, x: f64, y: f64, anchor: &str, text: &str) {
    out.push_str(&format!(
        "<text class=\"{class}\" x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" fill=\"currentColor\">",
        coord(x),
        coord(y)
    ));
    escape_into(out, text);
    out.push_str("</text>");
}

/// The y ticks (as positions in the scale's own units: log10 for log
/// scales) with their labels.
fn y_axis_ticks(lo: f64, hi: f64, log: bool, target: usize) -> (Vec<f64>, Vec<String>) {
    if log {
        let mut e_lo = lo.log10().floor() as i32;
        let mut e_hi = hi.log10().ceil() as i32;
        if e_lo == e_hi {
            e_lo -= 1;
            e_hi += 1;
        }
        let decades = (e_hi - e_lo) as usize;
        let stride = decades.div_ceil(target.max(2) - 1).max(1) as i32;
        // Skipping decades: keep 10^0 among the ticks.
        let e_lo = e_lo.div_euclid(stride) * stride;
        let mut exps = vec![e_lo];
        while exps.last().is_some_and(|&e| e < e_hi) {
            exps.push(exps.last().map_or(e_hi, |&e| e + stride));
        }
        let labels = exps
            .iter()
            .map(|&e| format_number(format::scaled(1, e)))
            .collect();
        return (exps.into_iter().map(f64::from).collect(), labels);
    }
    match linear_ticks(lo, hi, target) {
        Some(t) => {
            let labels = tick_labels(&t.values, t.step);
            (t.values, labels)
        }
        None => (vec![lo, hi], vec![format_number(lo), format_number(hi)]),
    }
}

/// Ticks for the x axis inside [lo, hi] (numbers: the nice ticks may widen
/// the domain; the returned domain is the one to draw), thinned until the
/// labels fit `plot_w`.
fn x_axis_ticks(axis: XAxis, lo: f64, hi: f64, plot_w: f64) -> (f64, f64, Vec<f64>, Vec<String>) {
    let mut target = ((plot_w / 80.0) as usize).clamp(2, 12);
    loop {
        let (x0, x1, values, labels) = match axis {
            XAxis::Number => match linear_ticks(lo, hi, target) {
                Some(t) => {
                    let labels = tick_labels(&t.values, t.step);
                    let x0 = t.values.first().copied().unwrap_or(lo).min(lo);
                    let x1 = t.values.last().copied().unwrap_or(hi).max(hi);
                    (x0, x1, t.values, labels)
                }
                None => (lo, hi, Vec::new(), Vec::new()),
            },
            XAxis::TimeMs => {
                let (values, kind) = time_ticks(lo, hi, target);
                let labels = values
                    .iter()
                    .map(|&v| format::time_label(v, kind))
                    .collect();
                (lo, hi, values, labels)
            }
        };
        let widest = labels
            .iter()
            .map(|l| text_width(l, FONT_PX))
            .fold(0.0, f64::max);
        if target <= 2 || (widest + 14.0) * labels.len() as f64 <= plot_w {
            return (x0, x1, values, labels);
        }
        target -= 1;
    }
}

/// A series' points that can be drawn: finite, y > 0 on a log scale, sorted by x.
fn drawable(points: &[(f64, f64)], log: bool) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!log || y > 0.0))
        .collect();
    if !pts.is_sorted_by(|a, b| a.0 <= b.0) {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    pts
}

/// Legend items laid out in rows across `width`: (x, row) of each item and
/// the number of rows.
fn legend_layout(names: &[String], width: f64) -> (Vec<(f64, usize)>, usize) {
    let mut placed = Vec::with_capacity(names.len());
    let (mut x, mut row) = (8.0, 0);
    for name in names {
        let item_w = 14.0 + text_width(name, FONT_PX) + 14.0;
        if x > 8.0 && x + item_w > width - 8.0 {
            x = 8.0;
            row += 1;
        }
        placed.push((x, row));
        x += item_w;
    }
    (placed, row + 1)
}

impl LineChart {
    /// Draws the chart: grid and nice ticks on both axes, axis labels, one
    /// `<path class="series series-N">` per series (decimated to the plot's
    /// pixel width, with a `<title>` of its name, point count and y range),
    /// a `<circle class="pt series-N">` with a value tooltip per point for
    /// series of at most 200 drawn points, a legend when there is more than
    /// one series, or a "no data" text when nothing is drawable.
    pub fn render(&self) -> String {
        let id = sanitize_id(&self.id);
        let w = f64::from(self.width.clamp(160, 20_000));
        let h = f64::from(self.height.clamp(100, 20_000));
        let mut out = String::with_capacity(4096);
        open_svg(&mut out, &id, w, h, &self.title, "chart line-chart");

        let log = self.y_log
            && self
                .series
                .iter()
                .flat_map(|s| &s.points)
                .any(|&(x, y)| x.is_finite() && y.is_finite() && y > 0.0);
        let pts: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| drawable(&s.points, log))
            .collect();
        let mut x_lo = f64::INFINITY;
        let mut x_hi = f64::NEG_INFINITY;
        let mut y_lo = f64::INFINITY;
        let mut y_hi = f64::NEG_INFINITY;
        for &(x, y) in pts.iter().flatten() {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y);
        }
        if !x_lo.is_finite() {
            push_empty(&mut out, w, h, "no data");
            out.push_str("</svg>");
            return out;
        }
        let names: Vec<String> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if s.name.is_empty() {
                    format!("series {}", i + 1)
                } else {
                    s.name.clone()
                }
            })
            .collect();

        // Vertical layout: legend rows, plot, tick labels, x label.
        let show_legend = self.series.len() > 1;
        let (legend_items, legend_rows) = if show_legend {
            legend_layout(&names, w)
        } else {
            (Vec::new(), 0)
        };
        let top = 10.0 + legend_rows as f64 * 18.0;
        let bottom = 22.0 + if self.x_label.is_empty() { 0.0 } else { 16.0 };
        let plot_h = (h - top - bottom).max(20.0);

        let y_target = ((plot_h / 30.0) as usize).clamp(2, 10);
        let (y_ticks, y_labels) = y_axis_ticks(y_lo, y_hi, log, y_target);
        let y0 = y_ticks.first().copied().unwrap_or(0.0);
        let y1 = y_ticks.last().copied().unwrap_or(1.0);

        // Horizontal layout: y label, tick labels, plot.
        let widest_y = y_labels
            .iter()
            .map(|l| text_width(l, FONT_PX))
            .fold(0.0, f64::max);
        let left = 8.0 + if self.y_label.is_empty() { 0.0 } else { 16.0 } + widest_y + 6.0;
        let right = 16.0;
        let plot_w = (w - left - right).max(20.0);

        let (mut x_lo, mut x_hi) = (x_lo, x_hi);
        if x_lo == x_hi {
            let pad = match self.x_axis {
                XAxis::TimeMs => MINUTE_MS,
                XAxis::Number => 0.0,
            };
            x_lo -= pad;
            x_hi += pad;
        }
        let (x0, x1, x_ticks, x_labels) = x_axis_ticks(self.x_axis, x_lo, x_hi, plot_w);

        let frame = Frame {
            left,
            top,
            width: plot_w,
            height: plot_h,
            x0,
            x1,
            y0,
            y1,
            y_log: log,
        };

        // Grid.
        out.push_str("<g class=\"grid\" stroke=\"currentColor\" stroke-width=\"0.5\">");
        for &t in &y_ticks {
            let y = frame.y(if log { format::pow10(t as i32) } else { t });
            push_line(&mut out, None, frame.left, y, frame.right(), y);
        }
        for &t in &x_ticks {
            let x = frame.x(t);
            push_line(&mut out, None, x, frame.top, x, frame.bottom());
        }
        out.push_str("</g>");

        // Axes, tick labels, axis labels.
        push_line(
            &mut out,
            Some("axis"),
            frame.left,
            frame.bottom(),
            frame.right(),
            frame.bottom(),
        );
        push_line(
            &mut out,
            Some("axis"),
            frame.left,
            frame.top,
            frame.left,
            frame.bottom(),
        );
        for (&t, label) in y_ticks.iter().zip(&y_labels) {
            let y = frame.y(if log { format::pow10(t as i32) } else { t });
            push_text(&mut out, "tick", frame.left - 5.0, y + 4.0, "end", label);
        }
        for (&t, label) in x_ticks.iter().zip(&x_labels) {
            let x = frame.x(t);
            let half = text_width(label, FONT_PX) / 2.0;
            // Keep the end labels inside the picture.
            let x = x.min(w - half - 2.0).max(half + 2.0);
            push_text(&mut out, "tick", x, frame.bottom() + 15.0, "middle", label);
        }
        if !self.x_label.is_empty() {
            push_text(
                &mut out,
                "axis-label",
                frame.left + plot_w / 2.0,
                h - 6.0,
                "middle",
                &self.x_label,
            );
        }
        if !self.y_label.is_empty() {
            out.push_str(&format!(
                "<text class=\"axis-label\" transform=\"translate(14 {}) rotate(-90)\" \
                 text-anchor=\"middle\" fill=\"currentColor\">",
                coord(frame.top + plot_h / 2.0)
            ));
            escape_into(&mut out, &self.y_label);
            out.push_str("</text>");
        }

        // Legend.
        if show_legend {
            out.push_str("<g class=\"legend\">");
            for (i, (name, &(x, row))) in names.iter().zip(&legend_items).enumerate() {
                let y = 6.0 + row as f64 * 18.0;
                out.push_str(&format!(
                    "<g class=\"legend-item\"><rect class=\"swatch series-{}\" x=\"{}\" y=\"{}\" \
                     width=\"10\" height=\"10\" rx=\"2\" fill=\"currentColor\"/>",
                    i % SERIES_CLASSES,
                    coord(x),
                    coord(y)
                ));
                push_text(&mut out, "legend-text", x + 14.0, y + 9.0, "start", name);
                out.push_str("</g>");
            }
            out.push_str("</g>");
        }

        // Series.
        let columns = plot_w.round().max(1.0) as usize;
        for (i, (series_pts, name)) in pts.iter().zip(&names).enumerate() {
            if series_pts.is_empty() {
                continue;
            }
            let class = i % SERIES_CLASSES;
            let (lo, hi) = series_pts
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, y)| {
                    (lo.min(y), hi.max(y))
                });
            let summary = format!(
                "{name}: {} point{}, y {} … {}",
                series_pts.len(),
                if series_pts.len() == 1 { "" } else { "s" },
                format_number(lo),
                format_number(hi)
            );
            if let [(x, y)] = series_pts.as_slice() {
                out.push_str(&format!(
                    "<circle class=\"pt series-{class}\" cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"currentColor\"><title>",
                    coord(frame.x(*x)),
                    coord(frame.y(*y))
                ));
                escape_into(&mut out, &summary);
                out.push_str(&format!(" (x={})", self.format_x(*x)));
                out.push_str("</title></circle>");
                continue;
            }
            let kept = decimate_sorted(series_pts, columns);
            out.push_str(&format!(
                "<path class=\"series series-{class}\" fill=\"none\" stroke=\"currentColor\" \
                 stroke-width=\"1.5\" stroke-linejoin=\"round\" d=\""
            ));
            let mut last = String::new();
            for (k, &(x, y)) in kept.iter().enumerate() {
                let point = format!("{},{}", coord(frame.x(x)), coord(frame.y(y)));
                if point == last {
                    continue;
                }
                out.push_str(match k {
                    0 => "M",
                    1 => "L",
                    _ => " ",
                });
                out.push_str(&point);
                last = point;
            }
            out.push_str("\"><title>");
            escape_into(&mut out, &summary);
            out.push_str("</title></path>");
            if kept.len() <= MAX_POINT_TOOLTIPS {
                out.push_str("<g class=\"pts\">");
                for &(x, y) in &kept {
                    out.push_str(&format!(
                        "<circle class=\"pt series-{class}\" cx=\"{}\" cy=\"{}\" r=\"2\" fill=\"currentColor\"><title>",
                        coord(frame.x(x)),
                        coord(frame.y(y))
                    ));
                    escape_into(&mut out, name);
                    out.push_str(&format!(
                        ": x={}, y={}</title></circle>",
                        self.format_x(x),
                        format_number(y)
                    ));
                }
                out.push_str("</g>");
            }
        }
        out.push_str("</svg>");
        out
    }

    /// An x value as tooltips show it.
    fn format_x(&self, x: f64) -> String {
        match self.x_axis {
            XAxis::Number => format_number(x),
            XAxis::TimeMs => format_time_ms(x),
        }
    }
}

/// A vertical bar chart (per-feature drift scores, say), with an optional
/// dashed threshold line.
///
/// `Default` gives 640 × 240 and no bars.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Id prefix, unique on the page (reduced to `[A-Za-z0-9_-]`).
    pub id: String,
    /// Accessible title (the SVG's `<title>`; not drawn).
    pub title: String,
    /// One label per bar, drawn under it (slanted and shortened when
    /// crowded; the full label is in the bar's `<title>`).
    pub labels: Vec<String>,
    /// One value per bar; non-finite values draw no bar.
    pub values: Vec<f64>,
    /// viewBox width (at least 160).
    pub width: u32,
    /// viewBox height (at least 100).
    pub height: u32,
    /// Drawn, rotated, left of the y axis when not empty.
    pub y_label: String,
    /// Draws a dashed `<line class="threshold">` at this value and gives the
    /// bars above it the classes `bar over`.
    pub threshold: Option<f64>,
}

impl Default for BarChart {
    fn default() -> Self {
        BarChart {
            id: "bars".to_owned(),
            title: String::new(),
            labels: Vec::new(),
            values: Vec::new(),
            width: 640,
            height: 240,
            y_label: String::new(),
            threshold: None,
        }
    }
}

impl BarChart {
    /// Draws the chart: y grid and ticks (the axis always includes 0 and the
    /// threshold), one `<rect class="bar">` per finite value with a
    /// `<title>` of its label and value, labels under the bars, the
    /// threshold line; "no data" when there are no finite values.
    pub fn render(&self) -> String {
        let id = sanitize_id(&self.id);
        let w = f64::from(self.width.clamp(160, 20_000));
        let h = f64::from(self.height.clamp(100, 20_000));
        let mut out = String::with_capacity(4096);
        open_svg(&mut out, &id, w, h, &self.title, "chart bar-chart");
        let n = self.labels.len().max(self.values.len());
        let finite = self.values.iter().copied().filter(|v| v.is_finite());
        let threshold = self.threshold.filter(|t| t.is_finite());
        let (mut lo, mut hi) = (0.0f64, 0.0f64);
        let mut any = false;
        for v in finite.chain(threshold) {
            lo = lo.min(v);
            hi = hi.max(v);
            any = true;
        }
        if !any || !self.values.iter().any(|v| v.is_finite()) {
            push_empty(&mut out, w, h, "no data");
            out.push_str("</svg>");
            return out;
        }

        const MAX_LABEL_CHARS: usize = 18;
        let labels: Vec<&str> = (0..n)
            .map(|i| self.labels.get(i).map_or("", String::as_str))
            .collect();
        let longest = labels
            .iter()
            .map(|l| text_width(&format::truncate(l, MAX_LABEL_CHARS), FONT_PX))
            .fold(0.0, f64::max);

        let top = 10.0;
        // First guess at the plot width for deciding whether labels slant.
        let guess_w = w - 60.0;
        let slot_guess = guess_w / n.max(1) as f64;
        let slanted = longest + 6.0 > slot_guess;
        // At 45° a label of width w takes w·sin 45° below the axis.
        let bottom = if slanted { 18.0 + longest * 0.71 } else { 22.0 };
        let plot_h = (h - top - bottom).max(20.0);
        let y_target = ((plot_h / 30.0) as usize).clamp(2, 10);
        let (y_ticks, y_labels) = y_axis_ticks(lo, hi, false, y_target);
        let y0 = y_ticks.first().copied().unwrap_or(lo);
        let y1 = y_ticks.last().copied().unwrap_or(hi);
        let widest_y = y_labels
            .iter()
            .map(|l| text_width(l, FONT_PX))
            .fold(0.0, f64::max);
        let left = 8.0 + if self.y_label.is_empty() { 0.0 } else { 16.0 } + widest_y + 6.0;
        // Slanted labels hang left of their bar: leave room for the first.
        let left = if slanted {
            left.max(longest * 0.71 - 4.0)
        } else {
            left
        };
        let plot_w = (w - left - 12.0).max(20.0);
        let frame = Frame {
            left,
            top,
            width: plot_w,
            height: plot_h,
            x0: 0.0,
            x1: n as f64,
            y0,
            y1,
            y_log: false,
        };

        out.push_str("<g class=\"grid\" stroke=\"currentColor\" stroke-width=\"0.5\">");
        for &t in &y_ticks {
            let y = frame.y(t);
            push_line(&mut out, None, frame.left, y, frame.right(), y);
        }
        out.push_str("</g>");
        let zero = frame.y(0.0);
        push_line(
            &mut out,
            Some("axis"),
            frame.left,
            zero,
            frame.right(),
            zero,
        );
        push_line(
            &mut out,
            Some("axis"),
            frame.left,
            frame.top,
            frame.left,
            frame.bottom(),
        );
        for (&t, label) in y_ticks.iter().zip(&y_labels) {
            push_text(
                &mut out,
                "tick",
                frame.left - 5.0,
                frame.y(t) + 4.0,
                "end",
                label,
            );
        }
        if !self.y_label.is_empty() {
            out.push_str(&format!(
                "<text class=\"axis-label\" transform=\"translate(14 {}) rotate(-90)\" \
                 text-anchor=\"middle\" fill=\"currentColor\">",
                coord(frame.top + plot_h / 2.0)
            ));
            escape_into(&mut out, &self.y_label);
            out.push_str("</text>");
        }

        let slot = plot_w / n as f64;
        let bar_w = (slot * 0.7).max(1.0);
        // Neighbouring 45° labels are slot·sin 45° apart: label every k-th
        // bar so that they are a line height apart.
        let every = if slanted {
            (18.0 / slot).ceil().max(1.0) as usize
        } else {
            1
        };
        out.push_str("<g class=\"bars\">");
        for (i, label) in labels.iter().enumerate() {
            let centre = frame.left + slot * (i as f64 + 0.5);
            if let Some(&v) = self.values.get(i).filter(|v| v.is_finite()) {
                let (ya, yb) = (frame.y(v), zero);
                let over = threshold.is_some_and(|t| v > t);
                out.push_str(&format!(
                    "<rect class=\"bar{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"currentColor\"><title>",
                    if over { " over" } else { "" },
                    coord(centre - bar_w / 2.0),
                    coord(ya.min(yb)),
                    coord(bar_w),
                    coord((ya - yb).abs())
                ));
                escape_into(&mut out, label);
                out.push_str(": ");
                out.push_str(&format_number(v));
                if over {
                    out.push_str(" (over threshold)");
                }
                out.push_str("</title></rect>");
            }
            if i % every != 0 || label.is_empty() {
                continue;
            }
            let shown = format::truncate(label, MAX_LABEL_CHARS);
            let y = frame.bottom() + 14.0;
            if slanted {
                out.push_str(&format!(
                    "<text class=\"bar-label\" transform=\"translate({} {}) rotate(-45)\" \
                     text-anchor=\"end\" fill=\"currentColor\">",
                    coord(centre + 3.0),
                    coord(y - 4.0)
                ));
                escape_into(&mut out, &shown);
                out.push_str("</text>");
            } else {
                push_text(&mut out, "bar-label", centre, y, "middle", &shown);
            }
        }
        out.push_str("</g>");
        if let Some(t) = threshold {
            let y = frame.y(t);
            out.push_str(&format!(
                "<line class=\"threshold\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"currentColor\" \
                 stroke-dasharray=\"4 3\"><title>threshold: {}</title></line>",
                coord(frame.left),
                coord(y),
                coord(frame.right()),
                coord(y),
                escape(&format_number(t))
            ));
        }
        out.push_str("</svg>");
        out
    }
}

#[cfg(test)]
#[path = "svg_tests.rs"]
mod tests;
