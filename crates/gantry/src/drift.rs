//! `gantry drift REFERENCE CURRENT`: drift between two data sets, offline — the live
//! monitor's comparison, table and verdict for a pair of files (CSV, profile JSON, dataset
//! directory, or stored artifacts by digest).
//!
//! Three phases, each spread over the cores: read (both CSVs at once, with gantry-ml's
//! columnar reader), profile the reference (gantry-ml's profiler), compare every column
//! (gantry-monitor's per-feature drift). `--timings` prints how long each took.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use gantry_ml::MlError;
use gantry_ml::columnar::{self, Reading, Table};
use gantry_ml::dataset::{self, Dataset};
use gantry_ml::drift::{REFERENCE_BINS, REFERENCE_TOP, read_reference};
use gantry_ml::profile::Profile;
use gantry_monitor::offline::{self, DriftReport, DriftSettings};
use serde_json::Value;

use crate::cli::{DriftArgs, Global, ReportFormat};
use crate::exit::{self, coded};
use crate::home::Home;
use crate::monitor::{drift_row, prediction_line};
use crate::render::table;

/// `--fail-on-drift` and something drifted.
const DRIFT_FOUND: u8 = 1;

/// What a REFERENCE or CURRENT argument turned out to be.
enum Input {
    Csv(PathBuf),
    Profile(PathBuf),
    Dataset(PathBuf),
}

/// A named input: what to show for it and where it is.
struct Named {
    name: String,
    input: Input,
}

enum Current {
    Table(Table),
    Dataset(Dataset),
}

#[derive(Default)]
struct Timings {
    read: Duration,
    profile: Duration,
    compare: Duration,
    render: Duration,
}

pub async fn run(g: &Global, args: &DriftArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    if !(args.threshold > 0.0 && args.threshold.is_finite()) {
        return Err(coded(
            exit::USAGE,
            format!(
                "--threshold must be a PSI above 0, e.g. 0.2; found {}",
                args.threshold
            ),
        ));
    }
    let (reference, current) = locate(g, args).await?;
    let settings = DriftSettings {
        threshold: args.threshold,
        min_samples: args.min_samples,
        label: args.label.clone(),
        columns: (!args.columns.is_empty()).then(|| args.columns.clone()),
    };
    let mut timings = Timings::default();
    let (profile, current_data) = load(&reference, &current, &settings, &mut timings)?;

    let clock = Instant::now();
    let mut report = match &current_data {
        Current::Table(t) => offline::compare(&profile, t, &settings),
        Current::Dataset(d) => offline::compare(&profile, d, &settings),
    }
    .map_err(|e| coded(exit::USAGE, e.to_string()))?;
    timings.compare = clock.elapsed();
    report.reference = reference.name;
    report.current = current.name;

    let clock = Instant::now();
    let text = render(&report, args, &timings, started)?;
    timings.render = clock.elapsed();
    print!("{text}");
    if args.timings {
        eprintln!(
            "timings: read {} ms (both inputs at once), profile {} ms, compare {} ms, render {} ms, total {} ms",
            timings.read.as_millis(),
            timings.profile.as_millis(),
            timings.compare.as_millis(),
            timings.render.as_millis(),
            started.elapsed().as_millis()
        );
    }
    Ok(if args.fail_on_drift && report.any_drift() {
        DRIFT_FOUND
    } else {
        exit::OK
    })
}

/// REFERENCE and CURRENT from the positional paths and the digest flags.
async fn locate(g: &Global, args: &DriftArgs) -> anyhow::Result<(Named, Named)> {
    let wanted =
        usize::from(args.reference_digest.is_none()) + usize::from(args.current_digest.is_none());
    if args.paths.len() != wanted {
        return Err(coded(
            exit::USAGE,
            format!(
                "expected {wanted} path{} ({}), found {}: `gantry drift REFERENCE CURRENT`, or name either by --reference-digest / --current-digest",
                if wanted == 1 { "" } else { "s" },
                match (&args.reference_digest, &args.current_digest) {
                    (None, None) => "REFERENCE and CURRENT",
                    (Some(_), None) => "CURRENT",
                    (None, Some(_)) => "REFERENCE",
                    (Some(_), Some(_)) => "none",
                },
                args.paths.len()
            ),
        ));
    }
    let mut paths = args.paths.iter();
    let mut next = async |digest: &Option<String>, role: &str| -> anyhow::Result<Named> {
        match digest {
            Some(d) => from_digest(g, d, role).await,
            None => {
                let path = paths
                    .next()
                    .ok_or_else(|| coded(exit::USAGE, format!("missing the {role} path")))?;
                Ok(Named {
                    name: path.display().to_string(),
                    input: classify(path, role)?,
                })
            }
        }
    };
    let reference = next(&args.reference_digest, "reference").await?;
    let current = next(&args.current_digest, "current").await?;
    if let Input::Profile(p) = &current.input {
        return Err(profile_as_current(p));
    }
    Ok((reference, current))
}

async fn from_digest(g: &Global, digest: &str, role: &str) -> anyhow::Result<Named> {
    let digest = if digest.starts_with("sha256:") {
        digest.to_string()
    } else {
        format!("sha256:{digest}")
    };
    let store = Home::from_global(g)?.artifacts()?;
    let found = store.stat(&digest).await.map_err(|e| match e {
        gantry_artifacts::ArtifactError::InvalidDigest { .. } => {
            coded(exit::USAGE, format!("--{role}-digest: {e}"))
        }
        other => anyhow::Error::new(other),
    })?;
    if found.is_none() {
        return Err(coded(
            exit::NOT_FOUND,
            format!("{role} artifact {digest} not found in GANTRY_HOME"),
        ));
    }
    let path = store.materialize(&digest).await?;
    Ok(Named {
        name: crate::render::short_digest(&digest),
        input: classify(&path, role)?,
    })
}

/// A directory with `schema.json` is a dataset; a file starting with `{` a profile;
/// any other file a CSV (gzip or not).
fn classify(path: &Path, role: &str) -> anyhow::Result<Input> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            exit::NOT_FOUND
        } else {
            exit::USAGE
        };
        coded(code, format!("{role} {}: {e}", path.display()))
    })?;
    if meta.is_dir() {
        if path.join(dataset::SCHEMA_FILE).is_file() {
            return Ok(Input::Dataset(path.to_path_buf()));
        }
        return Err(coded(
            exit::USAGE,
            format!(
                "{role} {}: a directory but not a dataset (no {}); pass a CSV file, a profile or a dataset directory",
                path.display(),
                dataset::SCHEMA_FILE
            ),
        ));
    }
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    let first = head[..n]
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace() && !matches!(b, 0xEF | 0xBB | 0xBF));
    Ok(if first == Some(b'{') {
        Input::Profile(path.to_path_buf())
    } else {
        Input::Csv(path.to_path_buf())
    })
}

/// The reference profile and the current data; CSVs are read at the same time.
fn load(
    reference: &Named,
    current: &Named,
    settings: &DriftSettings,
    timings: &mut Timings,
) -> anyhow::Result<(Profile, Current)> {
    let selected = |name: &str| {
        settings
            .columns
            .as_ref()
            .is_none_or(|cols| cols.iter().any(|c| c == name))
            || settings.label.as_deref() == Some(name)
    };
    let by_selection = |name: &str| {
        if selected(name) {
            Reading::Infer
        } else {
            Reading::Skip
        }
    };
    let clock = Instant::now();
    let (reference_read, current_read) = std::thread::scope(|s| {
        let worker = s.spawn(|| read_reference_input(&reference.input, &by_selection));
        let current_read = read_current_input(&current.input, &by_selection);
        let reference_read = worker
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (reference_read, current_read)
    });
    let reference_read = reference_read?;
    let mut current_data = current_read?;
    timings.read = clock.elapsed();

    let clock = Instant::now();
    let profile = match reference_read {
        ReferenceRead::Profile(p) => p,
        ReferenceRead::Table(t) => {
            check_columns(&t, settings, &reference.name)?;
            columnar::profile_table(&t, REFERENCE_BINS, REFERENCE_TOP)
        }
    };
    timings.profile = clock.elapsed();

    // A current column whose inferred type does not compare with the reference's
    // like live values do is read again as the reference's type (rare: a second pass).
    if let (Current::Table(table), Input::Csv(path)) = (&mut current_data, &current.input) {
        let misfits = offline::misfits(&profile, table);
        if !misfits.is_empty() {
            let clock = Instant::now();
            let again = columnar::read_csv(path, &|name| match profile.column(name) {
                Some(c) if misfits.iter().any(|m| m == name) => offline::reading_for(c),
                _ => Reading::Skip,
            })
            .map_err(input_error)?;
            table.replace_from(again);
            timings.read += clock.elapsed();
        }
    }
    Ok((profile, current_data))
}

enum ReferenceRead {
    Profile(Profile),
    Table(Table),
}

fn read_reference_input(
    input: &Input,
    reading: &(dyn Fn(&str) -> Reading + Sync),
) -> anyhow::Result<ReferenceRead> {
    Ok(match input {
        Input::Csv(path) => {
            ReferenceRead::Table(columnar::read_csv(path, reading).map_err(input_error)?)
        }
        Input::Profile(path) | Input::Dataset(path) => {
            ReferenceRead::Profile(read_reference(path).map_err(input_error)?)
        }
    })
}

fn read_current_input(
    input: &Input,
    reading: &(dyn Fn(&str) -> Reading + Sync),
) -> anyhow::Result<Current> {
    Ok(match input {
        Input::Csv(path) => Current::Table(columnar::read_csv(path, reading).map_err(input_error)?),
        Input::Dataset(path) => Current::Dataset(dataset::read(path).map_err(input_error)?),
        Input::Profile(path) => return Err(profile_as_current(path)),
    })
}

fn profile_as_current(path: &Path) -> anyhow::Error {
    coded(
        exit::USAGE,
        format!(
            "current {}: a profile holds summaries only; the current data must be a CSV file or a dataset directory",
            path.display()
        ),
    )
}

/// `--columns` and `--label` must name reference columns (all of them, read or not).
fn check_columns(table: &Table, settings: &DriftSettings, name: &str) -> anyhow::Result<()> {
    let wanted = settings
        .columns
        .iter()
        .flatten()
        .map(|c| ("--columns", c))
        .chain(settings.label.iter().map(|l| ("--label", l)));
    for (flag, column) in wanted {
        if table.column(column).is_none() {
            return Err(coded(
                exit::USAGE,
                format!(
                    "{flag} {column}: the reference {name} has no such column; its columns are: {}",
                    table
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Exit code 3 for a file that is not there, 5 for other I/O, 2 for bad content.
fn input_error(e: MlError) -> anyhow::Error {
    let code = match &e {
        MlError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            exit::NOT_FOUND
        }
        MlError::Io { .. } => exit::INTERNAL,
        _ => exit::USAGE,
    };
    coded(code, e.to_string())
}

fn render(
    report: &DriftReport,
    args: &DriftArgs,
    timings: &Timings,
    started: Instant,
) -> anyhow::Result<String> {
    Ok(match args.output {
        ReportFormat::Json => {
            let mut v = serde_json::to_value(report)?;
            if args.timings
                && let Value::Object(map) = &mut v
            {
                map.insert(
                    "timings_ms".to_string(),
                    serde_json::json!({
                        "read": timings.read.as_secs_f64() * 1000.0,
                        "profile": timings.profile.as_secs_f64() * 1000.0,
                        "compare": timings.compare.as_secs_f64() * 1000.0,
                        "before_output": started.elapsed().as_secs_f64() * 1000.0,
                    }),
                );
            }
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
        ReportFormat::Markdown => offline::to_markdown(report),
        ReportFormat::Html => offline::to_html(report),
        ReportFormat::Table => render_table(report)?,
    })
}

/// The live monitor's drift table and verdict, with the two inputs named on top.
fn render_table(report: &DriftReport) -> anyhow::Result<String> {
    let mut out = format!(
        "reference {}: {} rows\ncurrent   {}: {} rows\ndrift     when PSI > {}\n",
        report.reference,
        report.reference_rows,
        report.current,
        report.current_rows,
        gantry_monitor::format_value(report.threshold)
    );
    if !report.drift.is_empty() {
        out.push_str("\ndrift\n");
        let mut t = table(&["FEATURE", "PSI", "JS", "KS p", "MISSING", "STATUS"]);
        for d in &report.drift {
            t.add_row(drift_row(&serde_json::to_value(d)?));
        }
        out.push_str(&format!("{t}\n"));
    }
    if let Some(p) = &report.prediction_drift {
        out.push_str(&prediction_line(&serde_json::to_value(p)?));
    }
    if !report.unmatched.is_empty() {
        out.push_str(&format!(
            "not compared (not in the reference): {}\n",
            report.unmatched.join(", ")
        ));
    }
    out.push_str(&format!("\n{}\n", report.verdict));
    Ok(out)
}
