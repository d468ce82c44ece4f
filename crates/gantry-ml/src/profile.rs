//! The reference profile of a dataset: what monitoring compares live data with.
//!
//! Versioned serde type ([`Profile`], `format: gantry.profile`). Numeric
//! histograms store their bin edges so live values can be re-binned into the
//! same bins ([`Histogram::counts_of`]) for PSI / KS / Jensen–Shannon.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::MlError;
use crate::cell::{parse_bool, parse_datetime, parse_float};
use crate::components::{ComponentIo, ComponentOutcome, json_bytes};
use crate::dataset::{self, Column, ColumnType, Dataset};
use crate::options::{OptionInfo, OptionKind, Options};

pub(crate) const NAME: &str = "profile";

pub(crate) const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "bins",
        kind: OptionKind::Integer,
        default: "10",
        description: "Number of equal-width histogram bins between min and max of numeric columns (2–100).",
    },
    OptionInfo {
        name: "top",
        kind: OptionKind::Integer,
        default: "20",
        description: "How many most frequent values to keep per categorical/text/bool column (the rest are counted in `other`).",
    },
];

pub(crate) const NOTES: &str = "\
`profile` is a JSON file (`format: gantry.profile`, `format_version: 1`): total `rows` and per \
column `name`, `type`, `count` (non-missing), `missing`, `missing_fraction`, then for int, float \
and datetime columns `numeric` {`min`, `max`, `mean`, `std` (sample), `quantiles` at \
0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1 (linear interpolation), `histogram` \
{`edges`, `counts`}, `sample` (the sorted values when there are at most 1000, else 1000 of \
them taken evenly from the sorted values: index round(i·(n−1)/999); for KS tests)} \
(datetimes in seconds since the epoch), and for categorical, text and bool \
columns `categorical` {`distinct`, `top` [{`value`, `count`, `frequency`}], `other`}. \
Re-binning live data: a value below the first edge counts in the first bin, above the last edge \
in the last. `summary` is a markdown table of the same. Metrics: `rows`, `columns`, \
`missing_fraction` (of all cells).";

pub const FORMAT: &str = "gantry.profile";
pub const FORMAT_VERSION: u32 = 1;
pub const QUANTILES: [f64; 11] = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0];
/// Most values kept in [`NumericProfile::sample`].
pub const SAMPLE_SIZE: usize = 1000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub format: String,
    pub format_version: u32,
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Non-missing values.
    pub count: u64,
    pub missing: u64,
    pub missing_fraction: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<NumericProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categorical: Option<CategoricalProfile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NumericProfile {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single value.
    pub std: f64,
    pub quantiles: Vec<Quantile>,
    pub histogram: Histogram,
    /// Up to [`SAMPLE_SIZE`] sorted non-missing values spread evenly over the
    /// column (all of them when there are fewer), so monitoring can run a
    /// two-sample KS test against live data. Profiles written before this
    /// field existed have none; monitors then skip KS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantile {
    pub q: f64,
    pub value: f64,
}

/// Equal-width bins: `counts[i]` counts values in `[edges[i], edges[i+1])`,
/// the last bin closed on the right.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

impl Histogram {
    /// The bin of `value`; values outside the edges fall into the first or last bin.
    pub fn bin(&self, value: f64) -> usize {
        let bins = self.counts.len();
        if bins <= 1 || self.edges.len() < 2 {
            return 0;
        }
        // Inner edges (all but first and last) that are ≤ value = the bin index.
        let inner = &self.edges[1..self.edges.len() - 1];
        inner.partition_point(|e| *e <= value).min(bins - 1)
    }

    /// Counts of `values` over these bins (to compare live data with the reference).
    pub fn counts_of(&self, values: impl IntoIterator<Item = f64>) -> Vec<u64> {
        let mut counts = vec![0; self.counts.len().max(1)];
        for v in values {
            counts[self.bin(v)] += 1;
        }
        counts
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CategoricalProfile {
    pub distinct: u64,
    /// Most frequent first; ties by value.
    pub top: Vec<CategoryCount>,
    /// Count of values not in `top`.
    pub other: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CategoryCount {
    pub value: String,
    pub count: u64,
    /// Share of the non-missing values.
    pub frequency: f64,
}

/// Strings that mean "no value" in a served row: the same markers the
/// serving path (`transform::apply`) treats as missing.
const LIVE_MISSING_MARKERS: [&str; 5] = ["", "NA", "NaN", "?", "null"];

impl ColumnProfile {
    /// A live value (one cell of a served JSON row) on this column's numeric
    /// scale, read the way the serving path reads it so that monitoring
    /// compares like with like: numbers as they are, numeric strings parsed,
    /// datetimes (RFC 3339 text) as seconds since the epoch. `None` when the
    /// value is missing or is not a value of this column's type.
    pub fn live_number(&self, value: &Value) -> Option<f64> {
        if is_live_missing(value) {
            return None;
        }
        match (value, self.ty) {
            (Value::String(s), ColumnType::Datetime) => {
                parse_datetime(s.trim()).map(|ms| ms as f64 / 1000.0)
            }
            (Value::String(s), _) => parse_float(s.trim()),
            (Value::Number(n), _) => n.as_f64().filter(|x| x.is_finite()),
            _ => None,
        }
    }

    /// A live value as the text [`CategoricalProfile::top`] counts: strings
    /// trimmed, booleans (also `yes`/`no` text in a bool column) as
    /// `true`/`false`, numbers as JSON writes them. `None` when missing.
    pub fn live_text(&self, value: &Value) -> Option<String> {
        if is_live_missing(value) {
            return None;
        }
        match (value, self.ty) {
            (Value::Bool(b), _) => Some(b.to_string()),
            (Value::String(s), ColumnType::Bool) => parse_bool(s.trim()).map(|b| b.to_string()),
            (Value::String(s), _) => Some(s.trim().to_string()),
            (Value::Number(n), _) => Some(n.to_string()),
            _ => None,
        }
    }
}

fn is_live_missing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => LIVE_MISSING_MARKERS.contains(&s.trim()),
        _ => false,
    }
}

impl Profile {
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Reads a profile JSON file written by the `profile` component.
    pub fn load(path: &Path) -> Result<Self, MlError> {
        let text = fs::read_to_string(path).map_err(|e| MlError::io("read", path, e))?;
        let profile: Profile = serde_json::from_str(&text).map_err(|e| MlError::Json {
            path: path.to_path_buf(),
            source: e,
            hint: "pass the `profile` output of builtin/profile",
        })?;
        if profile.format != FORMAT || profile.format_version > FORMAT_VERSION {
            return Err(MlError::Data(format!(
                "{}: format {} version {} is not supported (this gantry reads {FORMAT} up to version {FORMAT_VERSION})",
                path.display(),
                profile.format,
                profile.format_version
            )));
        }
        Ok(profile)
    }

    /// A markdown table of the profile.
    pub fn to_markdown(&self) -> String {
        let mut md = format!(
            "{} rows, {} columns\n\n| column | type | missing | min | mean | std | max | top values |\n|---|---|---|---|---|---|---|---|\n",
            self.rows,
            self.columns.len()
        );
        for c in &self.columns {
            let (min, mean, std, max) = match &c.numeric {
                Some(n) if c.ty == ColumnType::Datetime => (
                    crate::cell::format_datetime((n.min * 1000.0) as i64),
                    String::new(),
                    String::new(),
                    crate::cell::format_datetime((n.max * 1000.0) as i64),
                ),
                Some(n) => (short(n.min), short(n.mean), short(n.std), short(n.max)),
                None => Default::default(),
            };
            let top = c.categorical.as_ref().map_or(String::new(), |cat| {
                let mut shown: Vec<String> = cat
                    .top
                    .iter()
                    .take(5)
                    .map(|t| format!("{} ({})", t.value, t.count))
                    .collect();
                if cat.distinct > 5 {
                    shown.push(format!("… {} distinct", cat.distinct));
                }
                shown.join(", ")
            });
            md.push_str(&format!(
                "| {} | {} | {} ({:.1}%) | {min} | {mean} | {std} | {max} | {top} |\n",
                c.name,
                c.ty,
                c.missing,
                c.missing_fraction * 100.0
            ));
        }
        md
    }
}

fn short(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) {
        format!("{x:.4e}")
    } else {
        format!("{:.4}", x)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Profiles every column of `dataset`.
pub fn profile_dataset(dataset: &Dataset, bins: usize, top: usize) -> Profile {
    Profile {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        rows: dataset.rows() as u64,
        columns: dataset
            .columns
            .iter()
            .map(|c| profile_column(c, bins, top))
            .collect(),
    }
}

fn profile_column(column: &Column, bins: usize, top: usize) -> ColumnProfile {
    let rows = column.len();
    let missing = column.missing_count();
    let count = rows - missing;
    let ty = column.ty();
    let numeric = matches!(
        ty,
        ColumnType::Int | ColumnType::Float | ColumnType::Datetime
    )
    .then(|| {
        let values: Vec<f64> = (0..rows).filter_map(|i| column.number(i)).collect();
        numeric_profile(values, bins)
    })
    .flatten();
    let categorical = (!numeric_type(ty)).then(|| {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..rows {
            if let Some(v) = column.text(i) {
                *counts.entry(v).or_default() += 1;
            }
        }
        categorical_profile(counts, count as u64, top)
    });
    ColumnProfile {
        name: column.name.clone(),
        ty,
        count: count as u64,
        missing: missing as u64,
        missing_fraction: if rows == 0 {
            0.0
        } else {
            missing as f64 / rows as f64
        },
        numeric,
        categorical,
    }
}

fn numeric_type(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::Int | ColumnType::Float | ColumnType::Datetime
    )
}

pub(crate) fn numeric_profile(mut values: Vec<f64>, bins: usize) -> Option<NumericProfile> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let min = values[0];
    let max = values[n - 1];
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let quantiles = QUANTILES
        .iter()
        .map(|&q| Quantile {
            q,
            value: quantile_sorted(&values, q),
        })
        .collect();
    let bins = if max > min { bins.max(1) } else { 1 };
    let width = (max - min) / bins as f64;
    let edges: Vec<f64> = (0..=bins)
        .map(|i| {
            if i == bins {
                max
            } else {
                min + width * i as f64
            }
        })
        .collect();
    let mut histogram = Histogram {
        edges,
        counts: vec![0; bins],
    };
    histogram.counts = histogram.counts_of(values.iter().copied());
    Some(NumericProfile {
        min,
        max,
        mean,
        std: var.sqrt(),
        quantiles,
        histogram,
        sample: even_sample(&values),
    })
}

/// [`SAMPLE_SIZE`] values spread evenly over `sorted` (first and last
/// included), or all of them when there are no more: deterministic, so the
/// same data always gives the same profile bytes.
fn even_sample(sorted: &[f64]) -> Vec<f64> {
    let n = sorted.len();
    if n <= SAMPLE_SIZE {
        return sorted.to_vec();
    }
    let last = SAMPLE_SIZE - 1;
    (0..SAMPLE_SIZE)
        // round(i·(n−1)/last) in integers, free of float error (an exact half
        // cannot occur: 2·i·(n−1) is even, last·(2k+1) is odd).
        .map(|i| sorted[(2 * i * (n - 1) + last) / (2 * last)])
        .collect()
}

/// Linear interpolation between closest ranks (numpy's default).
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

pub(crate) fn categorical_profile(
    counts: BTreeMap<String, u64>,
    total: u64,
    top: usize,
) -> CategoricalProfile {
    let distinct = counts.len() as u64;
    let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
    // Stable sort over the BTreeMap order: ties stay sorted by value.
    ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
    let kept: Vec<CategoryCount> = ranked
        .iter()
        .take(top)
        .map(|(value, count)| CategoryCount {
            value: value.clone(),
            count: *count,
            frequency: if total == 0 {
                0.0
            } else {
                *count as f64 / total as f64
            },
        })
        .collect();
    let other = total - kept.iter().map(|c| c.count).sum::<u64>();
    CategoricalProfile {
        distinct,
        top: kept,
        other,
    }
}

pub(crate) fn run(io: &ComponentIo, opts: &Options) -> Result<ComponentOutcome, MlError> {
    let bins = opts.count("bins", 10, 2)?;
    if bins > 100 {
        return Err(opts.error(format!("`bins` must be at most 100, found {bins}")));
    }
    let top = opts.count("top", 20, 1)?;
    let ds = dataset::read(&io.input("dataset"))?;
    let profile = profile_dataset(&ds, bins, top);
    io.write_file_output("profile", &json_bytes(&profile)?)?;
    let summary = profile.to_markdown();
    io.write_file_output("summary", summary.as_bytes())?;
    let cells = (ds.rows() * ds.columns.len()) as f64;
    let missing: u64 = profile.columns.iter().map(|c| c.missing).sum();
    let mut metrics = BTreeMap::new();
    metrics.insert("rows".to_string(), ds.rows() as f64);
    metrics.insert("columns".to_string(), ds.columns.len() as f64);
    metrics.insert(
        "missing_fraction".to_string(),
        if cells == 0.0 {
            0.0
        } else {
            missing as f64 / cells
        },
    );
    Ok(ComponentOutcome { metrics, summary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::ColumnData;

    #[test]
    fn numeric_statistics_match_hand_computed_values() {
        let p = numeric_profile(vec![4.0, 1.0, 3.0, 2.0, 5.0], 4).unwrap();
        assert_eq!((p.min, p.max, p.mean), (1.0, 5.0, 3.0));
        assert!((p.std - 2.5f64.sqrt()).abs() < 1e-12);
        let q = |q: f64| p.quantiles.iter().find(|x| x.q == q).unwrap().value;
        assert_eq!(q(0.5), 3.0);
        assert_eq!(q(0.25), 2.0);
        assert!((q(0.01) - 1.04).abs() < 1e-12);
        assert_eq!(p.histogram.edges, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        // [1,2) [2,3) [3,4) [4,5]
        assert_eq!(p.histogram.counts, vec![1, 1, 1, 2]);
        // Live values outside the reference range land in the end bins.
        assert_eq!(p.histogram.counts_of([-10.0, 2.5, 99.0]), vec![1, 1, 0, 1]);
        assert_eq!(p.sample, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn a_large_column_keeps_an_even_sorted_sample_of_1000() {
        // 0, 1, …, 2000 shuffled: n − 1 = 2000, so index i·2000/999 rounded.
        let values: Vec<f64> = (0..=2000).map(|i| ((i * 7919) % 2001) as f64).collect();
        let p = numeric_profile(values, 10).unwrap();
        assert_eq!(p.sample.len(), SAMPLE_SIZE);
        assert_eq!(p.sample[0], 0.0);
        assert_eq!(p.sample[999], 2000.0);
        // 2000/999 = 2.002 → 2; 1000/999 → 1; 500·2000/999 = 1001.001 → 1001;
        // 998·2000/999 = 1997.998 → 1998.
        assert_eq!(p.sample[1], 2.0);
        assert_eq!(p.sample[500], 1001.0);
        assert_eq!(p.sample[998], 1998.0);
        assert!(p.sample.windows(2).all(|w| w[0] <= w[1]));
        let odd: Vec<f64> = (0..1500).map(f64::from).collect();
        let p = numeric_profile(odd, 10).unwrap();
        // 1·1499/999 = 1.5005 → 2; 333·1499/999 = 499.666 → 500; 666·1499/999 = 999.33 → 999.
        assert_eq!(
            (p.sample[1], p.sample[333], p.sample[666]),
            (2.0, 500.0, 999.0)
        );
    }

    #[test]
    fn live_values_read_like_the_serving_path() {
        use serde_json::json;
        let column = |ty| ColumnProfile {
            name: "c".to_string(),
            ty,
            count: 0,
            missing: 0,
            missing_fraction: 0.0,
            numeric: None,
            categorical: None,
        };
        let float = column(ColumnType::Float);
        assert_eq!(float.live_number(&json!(2.5)), Some(2.5));
        assert_eq!(float.live_number(&json!(" 3 ")), Some(3.0));
        assert_eq!(float.live_number(&json!("NA")), None);
        assert_eq!(float.live_number(&json!("inf")), None);
        assert_eq!(float.live_number(&json!("abc")), None);
        assert_eq!(float.live_number(&json!(true)), None);
        let datetime = column(ColumnType::Datetime);
        assert_eq!(
            datetime.live_number(&json!("1970-01-02T00:00:01Z")),
            Some(86_401.0)
        );
        let boolean = column(ColumnType::Bool);
        assert_eq!(boolean.live_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(boolean.live_text(&json!("No")).as_deref(), Some("false"));
        let categorical = column(ColumnType::Categorical);
        assert_eq!(
            categorical.live_text(&json!(" red ")).as_deref(),
            Some("red")
        );
        assert_eq!(categorical.live_text(&json!(3)).as_deref(), Some("3"));
        assert_eq!(categorical.live_text(&json!("?")), None);
        assert_eq!(categorical.live_text(&Value::Null), None);
    }

    #[test]
    fn a_profile_without_a_sample_still_reads() {
        let json = r#"{"min":1,"max":2,"mean":1.5,"std":0.7,"quantiles":[],"histogram":{"edges":[1,2],"counts":[2]}}"#;
        let p: NumericProfile = serde_json::from_str(json).unwrap();
        assert!(p.sample.is_empty());
        assert!(!serde_json::to_string(&p).unwrap().contains("sample"));
    }

    #[test]
    fn a_constant_column_has_one_bin() {
        let p = numeric_profile(vec![7.0, 7.0], 10).unwrap();
        assert_eq!(p.histogram.edges, vec![7.0, 7.0]);
        assert_eq!(p.histogram.counts, vec![2]);
        assert_eq!(p.std, 0.0);
    }

    #[test]
    fn categories_are_ranked_and_counted() {
        let ds = Dataset::new(vec![Column::new(
            "c",
            ColumnData::Categorical(
                ["b", "a", "b", "c", "a", "b"]
                    .iter()
                    .map(|s| Some(s.to_string()))
                    .chain([None])
                    .collect(),
            ),
        )])
        .unwrap();
        let p = profile_dataset(&ds, 10, 2);
        let c = &p.columns[0];
        assert_eq!((c.count, c.missing), (6, 1));
        let cat = c.categorical.as_ref().unwrap();
        assert_eq!(cat.distinct, 3);
        assert_eq!(cat.top[0].value, "b");
        assert_eq!(cat.top[0].count, 3);
        assert!((cat.top[0].frequency - 0.5).abs() < 1e-12);
        assert_eq!(cat.top[1].value, "a");
        assert_eq!(cat.other, 1);
        assert!(c.numeric.is_none());
    }
}
