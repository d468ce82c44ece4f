#![allow(clippy::unwrap_used)]

use super::*;
use crate::testutil::assert_clean_svg;

/// The step of `ticks`, checked to be 1, 2, 2.5 or 5 × 10^k and constant.
fn nice_step(ticks: &[f64]) -> f64 {
    assert!(ticks.len() >= 2, "{ticks:?}");
    let step = ticks[1] - ticks[0];
    assert!(step > 0.0, "{ticks:?}");
    for pair in ticks.windows(2) {
        let d = pair[1] - pair[0];
        assert!((d - step).abs() <= step * 1e-6, "uneven {ticks:?}");
    }
    let k = step.log10().floor();
    let mantissa = step / 10f64.powf(k);
    assert!(
        [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .any(|m| (mantissa - m).abs() < 1e-6),
        "step {step} of {ticks:?} is not nice"
    );
    // Every tick is a whole multiple of the step.
    for t in ticks {
        let q = t / step;
        assert!((q - q.round()).abs() < 1e-6, "{t} not on the {step} grid");
    }
    step
}

fn check_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    let ticks = nice_ticks(min, max, target);
    let step = nice_step(&ticks);
    let (lo, hi) = (min.min(max), min.max(max));
    let eps = step * 1e-9;
    assert!(
        ticks[0] <= lo + eps,
        "({min}, {max}): {ticks:?} does not cover the min"
    );
    assert!(
        *ticks.last().unwrap() >= hi - eps,
        "({min}, {max}): {ticks:?} does not cover the max"
    );
    // No wasted ticks: the range reaches into the first and last steps.
    if lo < hi {
        assert!(
            ticks[1] > lo - eps,
            "({min}, {max}): {ticks:?} starts too low"
        );
        assert!(
            ticks[ticks.len() - 2] < hi + eps,
            "({min}, {max}): {ticks:?} ends too high"
        );
    }
    // Nice steps are up to 2× apart, so the count can only be near.
    let n = ticks.len();
    assert!(
        2 * n >= target && n <= target + target / 2 + 1,
        "({min}, {max}) target {target}: {n} ticks {ticks:?}"
    );
    ticks
}

#[test]
fn ticks_are_nice_cover_and_count_near_target() {
    let ranges = [
        (0.0, 1.0),
        (0.0, 100.0),
        (-3.0, 7.0),
        (1e-9, 3e-9),
        (0.0, 1e12),
        (-1e12, -3.0),
        (0.001, 0.0013),
        (17.0, 17.5),
        (-0.5, 0.5),
        (1e6, 1e6 + 3.0),
        (3.7, 1.2),
        (0.1, 0.7),
        (-273.15, 5500.0),
        (1e-300, 5e-300),
        (1e295, 9e295),
    ];
    for (min, max) in ranges {
        for target in [3, 5, 8, 10] {
            check_ticks(min, max, target);
        }
    }
}

#[test]
fn ticks_for_the_named_cases() {
    assert_eq!(check_ticks(0.0, 1.0, 6), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    // One value: a range around it.
    let zero = check_ticks(0.0, 0.0, 5);
    assert!(
        zero.contains(&0.0) && zero[0] < 0.0 && *zero.last().unwrap() > 0.0,
        "{zero:?}"
    );
    let seven = check_ticks(7.0, 7.0, 5);
    assert!(seven[0] < 7.0 && *seven.last().unwrap() > 7.0, "{seven:?}");
    let negative = check_ticks(-3.0, 7.0, 5);
    assert!(negative.contains(&0.0), "{negative:?}");
    let tiny = check_ticks(1e-9, 3e-9, 5);
    assert_eq!(tiny, [1e-9, 1.5e-9, 2e-9, 2.5e-9, 3e-9]);
    let huge = check_ticks(0.0, 1e12, 5);
    assert_eq!(huge, [0.0, 2.5e11, 5e11, 7.5e11, 1e12]);
    // The decimal values themselves, not float noise.
    assert_eq!(nice_ticks(0.0, 0.3, 4), [0.0, 0.1, 0.2, 0.3]);
    assert!(nice_ticks(f64::NAN, 1.0, 5).is_empty());
    assert!(nice_ticks(0.0, f64::INFINITY, 5).is_empty());
    // Silly targets still give at least two ticks.
    assert!(nice_ticks(0.0, 1.0, 0).len() >= 2);
    assert!(nice_ticks(0.0, 1.0, 1).len() >= 2);
}

/// A small deterministic generator for the tests (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn decimation_keeps_a_spike_in_a_million_points() {
    let n = 1_000_000;
    let mut rng = Rng(7);
    let mut points: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, rng.unit())).collect();
    points[n / 2 + 17].1 = 1e9;
    points[n / 3].1 = -5.0;
    let out = decimate(&points, 600);
    assert!(out.len() <= 4 * 600, "{}", out.len());
    assert!(out.contains(&(n as f64 / 2.0 + 17.0, 1e9)));
    assert!(out.contains(&((n / 3) as f64, -5.0)));
    assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "x order");
    assert_eq!(out.first(), points.first());
    assert_eq!(out.last(), points.last());
}

#[test]
fn decimation_keeps_every_column_extreme() {
    let mut rng = Rng(42);
    let mut x = 0.0;
    let points: Vec<(f64, f64)> = (0..50_000)
        .map(|_| {
            x += rng.unit() * 3.0; // uneven spacing, some repeats of x
            (x.floor(), (rng.unit() - 0.5) * 100.0)
        })
        .collect();
    let columns = 137;
    let out = decimate(&points, columns);
    assert!(out.len() <= 4 * columns);
    assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
    let (x0, x1) = (points[0].0, points.last().unwrap().0);
    let bucket = |x: f64| {
        (((x / 2.0 - x0 / 2.0) / (x1 / 2.0 - x0 / 2.0) * columns as f64) as usize).min(columns - 1)
    };
    for b in 0..columns {
        let in_bucket: Vec<_> = points.iter().filter(|p| bucket(p.0) == b).collect();
        if in_bucket.is_empty() {
            continue;
        }
        let lo = in_bucket.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = in_bucket
            .iter()
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max);
        let kept: Vec<_> = out.iter().filter(|p| bucket(p.0) == b).collect();
        assert!(kept.iter().any(|p| p.1 == lo), "bucket {b} lost its min");
        assert!(kept.iter().any(|p| p.1 == hi), "bucket {b} lost its max");
        assert_eq!(kept.first().map(|p| **p), in_bucket.first().map(|p| **p));
        assert_eq!(kept.last().map(|p| **p), in_bucket.last().map(|p| **p));
    }
}

#[test]
fn decimation_edge_cases() {
    assert!(decimate(&[(1.0, 1.0)], 0).is_empty());
    assert!(decimate(&[], 10).is_empty());
    // Few points come back as they are (sorted, finite).
    let few = [
        (3.0, 1.0),
        (1.0, f64::NAN),
        (2.0, 5.0),
        (f64::INFINITY, 1.0),
        (0.0, -1.0),
    ];
    assert_eq!(decimate(&few, 10), [(0.0, -1.0), (2.0, 5.0), (3.0, 1.0)]);
    // Unsorted many points get sorted first.
    let many: Vec<(f64, f64)> = (0..1000)
        .rev()
        .map(|i| (i as f64, (i % 7) as f64))
        .collect();
    let out = decimate(&many, 10);
    assert!(out.len() <= 40);
    assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(out.iter().any(|p| p.1 == 6.0) && out.iter().any(|p| p.1 == 0.0));
    // All at one x: one bucket, four points at most.
    let same: Vec<(f64, f64)> = (0..100).map(|i| (5.0, i as f64)).collect();
    let out = decimate(&same, 3);
    assert!(out.len() <= 4 && out.contains(&(5.0, 0.0)) && out.contains(&(5.0, 99.0)));
    // Extreme x range does not overflow.
    let wide: Vec<(f64, f64)> = (0..100)
        .map(|i| (f64::MAX * (i as f64 / 50.0 - 1.0), i as f64))
        .collect();
    let out = decimate(&wide, 5);
    assert!(out.len() <= 20 && out.contains(&(-f64::MAX, 0.0)));
}

fn line(id: &str, series: Vec<Series>) -> LineChart {
    LineChart {
        id: id.to_owned(),
        title: "Loss <by> step & \"more\"".to_owned(),
        x_label: "step".to_owned(),
        y_label: "loss".to_owned(),
        series,
        ..LineChart::default()
    }
}

fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_owned(),
        points,
    }
}

#[test]
fn line_chart_structure() {
    let chart = line(
        "loss",
        vec![
            series(
                "train",
                (0..50)
                    .map(|i| (i as f64, 1.0 / (i as f64 + 1.0)))
                    .collect(),
            ),
            series(
                "val</svg><script>x</script>",
                (0..50)
                    .map(|i| (i as f64, 1.2 / (i as f64 + 1.0)))
                    .collect(),
            ),
        ],
    );
    let svg = chart.render();
    assert_clean_svg(&svg);
    assert!(svg.contains("role=\"img\" aria-labelledby=\"loss-title\""));
    assert!(
        svg.contains(
            "<title id=\"loss-title\">Loss &lt;by&gt; step &amp; &quot;more&quot;</title>"
        )
    );
    assert!(svg.contains("<path class=\"series series-0\""));
    assert!(svg.contains("<path class=\"series series-1\""));
    assert!(svg.contains("class=\"grid\""));
    assert!(svg.contains("class=\"legend\""));
    assert!(svg.contains("class=\"swatch series-1\""));
    assert!(svg.contains("val&lt;/svg&gt;&lt;script&gt;x&lt;/script&gt;"));
    assert!(
        svg.contains("<title>train: 50 points, y 0.02 … 1</title>"),
        "{svg}"
    );
    assert_eq!(svg.matches("<circle class=\"pt series-0\" ").count(), 50);
    assert!(svg.contains("<title>train: x=3, y=0.25</title>"));
    assert!(svg.contains(">step</text>") && svg.contains(">loss</text>"));
    // Tick labels without float noise.
    assert!(!svg.contains("0000000"), "{svg}");
}

#[test]
fn one_series_has_no_legend_and_a_point_is_a_circle() {
    let svg = line("a", vec![series("only", vec![(0.0, 1.0), (1.0, 2.0)])]).render();
    assert_clean_svg(&svg);
    assert!(!svg.contains("legend"));
    let svg = line("b", vec![series("dot", vec![(5.0, 3.0)])]).render();
    assert_clean_svg(&svg);
    assert!(!svg.contains("<path class=\"series"));
    assert!(svg.contains("<circle class=\"pt series-0\""));
    assert!(svg.contains("dot: 1 point, y 3 … 3 (x=5)"));
}

#[test]
fn empty_charts_say_no_data() {
    for chart in [
        line("e", vec![]),
        line(
            "e",
            vec![series("nan", vec![(f64::NAN, 1.0), (1.0, f64::INFINITY)])],
        ),
    ] {
        let svg = chart.render();
        assert_clean_svg(&svg);
        assert!(svg.contains(">no data</text>"));
    }
    let svg = BarChart {
        id: "b".into(),
        ..BarChart::default()
    }
    .render();
    assert_clean_svg(&svg);
    assert!(svg.contains(">no data</text>"));
}

#[test]
fn big_series_is_decimated_without_point_circles() {
    let points: Vec<(f64, f64)> = (0..100_000)
        .map(|i| (i as f64, ((i * 7919) % 1000) as f64))
        .collect();
    let chart = LineChart {
        width: 400,
        ..line("big", vec![series("noise", points)])
    };
    let svg = chart.render();
    assert_clean_svg(&svg);
    assert!(!svg.contains("class=\"pt "));
    assert!(svg.len() < 60_000, "{} bytes", svg.len());
    assert!(svg.contains("noise: 100000 points, y 0 … 999"));
    // Large x ticks get a suffix.
    assert!(
        svg.contains(">50k</text>") || svg.contains(">40k</text>"),
        "{svg}"
    );
}

#[test]
fn series_classes_wrap_at_eight() {
    let all: Vec<Series> = (0..10)
        .map(|i| series(&format!("s{i}"), vec![(0.0, i as f64), (1.0, 1.0)]))
        .collect();
    let svg = line("ten", all).render();
    assert_clean_svg(&svg);
    assert!(svg.contains("<path class=\"series series-7\""));
    assert_eq!(svg.matches("<path class=\"series series-0\"").count(), 2);
    assert!(!svg.contains("series-8"));
}

#[test]
fn time_axis_labels() {
    let start = 1_700_000_000_000.0; // 2023-11-14 22:13:20 UTC
    let hour: Vec<(f64, f64)> = (0..60)
        .map(|i| (start + i as f64 * 60_000.0, i as f64))
        .collect();
    let svg = LineChart {
        x_axis: XAxis::TimeMs,
        ..line("t", vec![series("qps", hour)])
    }
    .render();
    assert_clean_svg(&svg);
    assert!(
        svg.contains(">22:30</text>") || svg.contains(">22:20</text>"),
        "{svg}"
    );
    assert!(svg.contains("x=2023-11-14 22:14:20"), "{svg}");
    let days: Vec<(f64, f64)> = (0..30)
        .map(|i| (start + i as f64 * 86_400_000.0, i as f64))
        .collect();
    let svg = LineChart {
        x_axis: XAxis::TimeMs,
        ..line("d", vec![series("daily", days)])
    }
    .render();
    assert_clean_svg(&svg);
    assert!(svg.contains(">2023-11-"), "{svg}");
    let one = LineChart {
        x_axis: XAxis::TimeMs,
        ..line("o", vec![series("one", vec![(start, 1.0)])])
    };
    assert_clean_svg(&one.render());
}

#[test]
fn time_ticks_are_round() {
    let start = 1_700_000_000_000.0;
    let (ticks, kind) = time_ticks(start, start + 3.0 * 3_600_000.0, 6);
    assert_eq!(kind, TimeLabel::Minute);
    assert!(ticks.len() >= 3 && ticks.len() <= 8, "{ticks:?}");
    assert!(ticks.iter().all(|t| t % 1_800_000.0 == 0.0), "{ticks:?}");
    let (ticks, kind) = time_ticks(start, start + 2.0 * 86_400_000.0, 6);
    assert_eq!(kind, TimeLabel::DayMinute);
    assert!(ticks.iter().all(|t| t % 3_600_000.0 == 0.0));
    let (ticks, kind) = time_ticks(start, start + 90.0 * 86_400_000.0, 6);
    assert_eq!(kind, TimeLabel::Date);
    assert!(ticks.iter().all(|t| t % 86_400_000.0 == 0.0));
    let (ticks, kind) = time_ticks(start, start + 10_000.0, 5);
    assert_eq!(kind, TimeLabel::Second);
    assert!(ticks.len() >= 3);
    let (ticks, kind) = time_ticks(0.0, 1e14, 5); // three millennia
    assert_eq!(kind, TimeLabel::Date);
    assert!(ticks.len() >= 2, "{ticks:?}");
}

#[test]
fn log_scale() {
    let points: Vec<(f64, f64)> = (0..100)
        .map(|i| (i as f64, 10f64.powf(-(i as f64) / 20.0)))
        .collect();
    let mut with_bad = points.clone();
    with_bad.push((100.0, 0.0));
    with_bad.push((101.0, -1.0));
    let svg = LineChart {
        y_log: true,
        ..line("log", vec![series("lr", with_bad)])
    }
    .render();
    assert_clean_svg(&svg);
    for label in [">1</text>", ">0.01</text>", ">0.0001</text>"] {
        assert!(svg.contains(label), "{label} in {svg}");
    }
    assert!(svg.contains("lr: 100 points"));
    // Nothing positive: linear.
    let svg = LineChart {
        y_log: true,
        ..line("lin", vec![series("neg", vec![(0.0, -1.0), (1.0, -2.0)])])
    }
    .render();
    assert_clean_svg(&svg);
    assert!(svg.contains("class=\"series series-0\""));
}

#[test]
fn tiny_and_constant_values() {
    let svg = line("tiny", vec![series("eps", vec![(0.0, 1e-9), (1.0, 3e-9)])]).render();
    assert_clean_svg(&svg);
    assert!(svg.contains(">2e-9</text>"), "{svg}");
    let svg = line(
        "flat",
        vec![series("flat", vec![(0.0, 0.95), (1.0, 0.95), (2.0, 0.95)])],
    )
    .render();
    assert_clean_svg(&svg);
    assert!(
        svg.contains(">0.95</text>") || svg.contains(">0.9</text>"),
        "{svg}"
    );
}

#[test]
fn ids_are_sanitized_in_the_output() {
    let svg = line(
        "x\" onload=\"alert(1)",
        vec![series("a", vec![(0.0, 1.0), (1.0, 2.0)])],
    )
    .render();
    assert_clean_svg(&svg);
    assert!(svg.contains("aria-labelledby=\"x--onload--alert-1--title\""));
}

#[test]
fn bar_chart_with_threshold() {
    let chart = BarChart {
        id: "psi".into(),
        title: "PSI by feature".into(),
        labels: vec![
            "age".into(),
            "income & <debt>".into(),
            "a_very_long_feature_name_indeed".into(),
        ],
        values: vec![0.05, 0.31, f64::NAN],
        y_label: "PSI".into(),
        threshold: Some(0.2),
        ..BarChart::default()
    };
    let svg = chart.render();
    assert_clean_svg(&svg);
    assert_eq!(svg.matches("<rect class=\"bar").count(), 2);
    assert!(svg.contains("<rect class=\"bar\" "));
    assert!(svg.contains("<rect class=\"bar over\" "));
    assert!(svg.contains("<title>income &amp; &lt;debt&gt;: 0.31 (over threshold)</title>"));
    assert!(svg.contains("<line class=\"threshold\""));
    assert!(svg.contains("stroke-dasharray=\"4 3\""));
    assert!(svg.contains("<title>threshold: 0.2</title>"));
    assert!(svg.contains(">age</text>"));
    // Axis reaches the threshold and zero.
    assert!(svg.contains(">0</text>"));
}

#[test]
fn crowded_bars_slant_and_thin_their_labels() {
    let n = 120;
    let chart = BarChart {
        id: "many".into(),
        labels: (0..n).map(|i| format!("feature_number_{i}")).collect(),
        values: (0..n).map(|i| (i as f64 - 50.0) / 100.0).collect(),
        threshold: Some(0.25),
        ..BarChart::default()
    };
    let svg = chart.render();
    assert_clean_svg(&svg);
    assert!(svg.contains("rotate(-45)"));
    let shown = svg.matches("class=\"bar-label\"").count();
    assert!(shown < n && shown > 10, "{shown}");
    assert_eq!(svg.matches("<rect class=\"bar").count(), n);
    // Negative values hang below zero.
    assert!(svg.contains(">-0.5</text>"), "{svg}");
}
