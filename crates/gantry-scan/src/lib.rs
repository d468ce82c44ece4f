//! gantry-scan: offline vulnerability scanning of unpacked images.
//!
//! Three steps, each usable on its own:
//!
//! 1. [`inventory`]`(rootfs: &Path) -> Result<Inventory, ScanError>` reads an unpacked image root
//!    filesystem (untrusted content): the OS from `etc/os-release`, Debian/Ubuntu packages from
//!    `var/lib/dpkg/status` and `var/lib/dpkg/status.d/*`, Alpine packages from
//!    `lib/apk/db/installed`, and Python distributions from `*.dist-info/METADATA` (and
//!    `*.egg-info`) under the usual `site-packages`/`dist-packages` directories. Symlinks are
//!    resolved confined to the rootfs; nothing outside it is ever read, and file sizes are capped.
//! 2. [`import`]`(db_dir: &Path, source: &Path) -> Result<ImportReport, ScanError>` merges OSV
//!    records (osv.dev's per-ecosystem `all.zip`, a directory of `*.json`, or one `.json` file
//!    holding a record or an array of records) into the offline database at `db_dir`. Bad records
//!    are skipped and reported, never fatal; withdrawn records are dropped; the database file is
//!    replaced atomically. [`Database::open`] loads it (`None` when nothing was imported);
//!    [`Database::version`] is a digest of its content.
//! 3. [`scan`]`(&Inventory, &Database) -> ScanReport` matches packages against the records with
//!    per-ecosystem version ordering ([`version::compare`]): Debian/Ubuntu (dpkg rules), Alpine
//!    (apk rules), PyPI (PEP 440) and SEMVER ranges. Findings carry a [`Severity`] computed from
//!    CVSS vectors (v3.x, v4.0, v2) or the distribution's own rating.
//!
//! Packages of Debian and Ubuntu are matched by *source* package name and source version (that
//! is how their advisories are written); Alpine packages by origin; PyPI by the PEP 503
//! normalized name.

mod confined;
mod cvss;
mod db;
mod error;
mod inventory;
mod matching;
mod osv;
mod severity;
pub mod version;

pub use db::{Database, ImportReport, Skipped, import};
pub use error::ScanError;
pub use inventory::{Inventory, OsInfo, Package, inventory};
pub use matching::{Finding, ScanReport, scan};
pub use severity::{ParseSeverityError, Severity};
