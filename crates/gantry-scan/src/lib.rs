//! gantry-scan: offline vulnerability scanning of unpacked images.

mod severity;

pub use severity::{ParseSeverityError, Severity};
