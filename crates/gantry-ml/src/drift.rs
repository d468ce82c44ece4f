//! `drift`: a dataset against a reference (a dataset or a profile), gating a
//! pipeline on drift the way `validate` gates on expectations.
//!
//! Declared here like every component (registry entry, options, docs) and
//! its I/O is done here (inputs read, report directory written, the gate);
//! the statistics live in gantry-monitor, which depends on this crate, so
//! they come in as a [`DriftReporter`] the caller links in
//! ([`crate::run_component_with`]; `gantry component drift` passes
//! gantry-monitor's).

use std::collections::BTreeMap;
use std::path::Path;

use crate::MlError;
use crate::components::{ComponentIo, ComponentOutcome};
use crate::dataset::{self, Dataset};
use crate::options::{OptionInfo, OptionKind, Options};
use crate::profile::{Profile, profile_dataset};

pub(crate) const NAME: &str = "drift";

/// PSI above which a column has drifted, unless `threshold` says otherwise.
pub const DEFAULT_THRESHOLD: f64 = 0.2;
/// Histogram bins and categories kept when a reference dataset is profiled
/// here: `builtin/profile`'s defaults.
pub const REFERENCE_BINS: usize = 10;
pub const REFERENCE_TOP: usize = 20;
pub const REPORT_HTML: &str = "report.html";

pub(crate) const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "fail_on_drift",
        kind: OptionKind::Bool,
        default: "false",
        description: "Fail the step when any compared column drifts; the error lists them and the step log holds the report.",
    },
    OptionInfo {
        name: "threshold",
        kind: OptionKind::Number,
        default: "0.2",
        description: "A column drifts when its PSI is above this (0.1–0.2 reads as moderate change, above 0.2 as significant).",
    },
    OptionInfo {
        name: "columns",
        kind: OptionKind::StringList,
        default: "all",
        description: "Compare only these columns of the reference.",
    },
    OptionInfo {
        name: "label",
        kind: OptionKind::String,
        default: "",
        description: "A column reported as the label / prediction (`prediction (label)`) instead of as a feature; its drift counts for `fail_on_drift` too.",
    },
];

pub(crate) const NOTES: &str = "\
`reference` is a dataset (profiled here with `profile`'s defaults: 10 bins, top 20 values) or the \
`profile` output of `builtin/profile`; `current` is a dataset. Each reference column is compared \
with the same column of `current` exactly as `gantry monitor` compares live traffic: numeric \
columns over the reference histogram's bins (PSI, Jensen–Shannon) and with a two-sample KS test \
against the profile's sample, categorical ones over the reference's top values plus `(other)` \
(PSI, Jensen–Shannon, chi²); a column with fewer than 30 values is `insufficient-data`. A current \
value that is not of the reference column's type counts as missing. `report` is a directory with \
`report.json` (`format: gantry.drift-report`: every column's statistics and bins, the verdict), \
`report.md` and `report.html` (one self-contained page with a histogram per column). Metrics: \
`columns`, `drifted`, `max_psi`, and `psi.<column>` for each column compared.";

/// What `with:` asks of the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct DriftOptions {
    pub fail_on_drift: bool,
    pub threshold: f64,
    /// `None`: every reference column.
    pub columns: Option<Vec<String>>,
    pub label: Option<String>,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            fail_on_drift: false,
            threshold: DEFAULT_THRESHOLD,
            columns: None,
            label: None,
        }
    }
}

/// The report in its three forms and what the gate and the metrics need.
#[derive(Clone, Debug, PartialEq)]
pub struct DriftFiles {
    pub json: Vec<u8>,
    pub markdown: String,
    pub html: String,
    /// One line for people.
    pub verdict: String,
    /// Columns that drifted (the label's name included when it did).
    pub drifted: Vec<String>,
    pub metrics: BTreeMap<String, f64>,
}

/// Compares `current` with `reference` and renders the report.
pub trait DriftReporter: Sync {
    fn report(
        &self,
        reference: &Profile,
        current: &Dataset,
        options: &DriftOptions,
    ) -> Result<DriftFiles, MlError>;
}

impl DriftOptions {
    fn from_options(opts: &Options) -> Result<Self, MlError> {
        let threshold = opts.number_or("threshold", DEFAULT_THRESHOLD)?;
        if !(threshold > 0.0 && threshold.is_finite()) {
            return Err(opts.error(format!(
                "`threshold` must be a PSI above 0, e.g. 0.2; found {threshold}"
            )));
        }
        Ok(DriftOptions {
            fail_on_drift: opts.bool("fail_on_drift", false)?,
            threshold,
            columns: opts.string_list("columns")?,
            label: opts.string("label")?,
        })
    }
}

/// Checks what can be checked before the run (from `validate_with`).
pub(crate) fn check_options(opts: &Options) -> Result<(), MlError> {
    DriftOptions::from_options(opts).map(|_| ())
}

/// The reference as a profile: a dataset directory is profiled here, a file
/// must be a profile.
pub fn read_reference(path: &Path) -> Result<Profile, MlError> {
    if path.is_dir() {
        let ds = dataset::read(path)?;
        Ok(profile_dataset(&ds, REFERENCE_BINS, REFERENCE_TOP))
    } else {
        Profile::load(path)
    }
}

pub(crate) fn run(
    io: &ComponentIo,
    opts: &Options,
    reporter: Option<&dyn DriftReporter>,
) -> Result<ComponentOutcome, MlError> {
    let reporter = reporter.ok_or_else(|| MlError::NotLinked {
        component: NAME.to_string(),
        hint: "its statistics live in gantry-monitor: run it as `gantry component drift` (the built-in image does)".to_string(),
    })?;
    let options = DriftOptions::from_options(opts)?;
    let reference = read_reference(&io.input("reference"))?;
    let current = dataset::read(&io.input("current"))?;
    let files = reporter.report(&reference, &current, &options)?;
    let dir = io.output_dir("report")?;
    for (name, bytes) in [
        (crate::evaluate::REPORT_JSON, files.json.as_slice()),
        (crate::evaluate::REPORT_MD, files.markdown.as_bytes()),
        (REPORT_HTML, files.html.as_bytes()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| MlError::io("write", &path, e))?;
    }
    if options.fail_on_drift && !files.drifted.is_empty() {
        return Err(MlError::DriftFound {
            verdict: files.verdict,
            report: files.markdown,
        });
    }
    Ok(ComponentOutcome {
        metrics: files.metrics,
        summary: files.markdown,
    })
}
