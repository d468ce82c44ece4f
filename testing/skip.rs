//! Skipping a test whose component is missing (PostgreSQL, a Python with mlflow, ...).
//!
//! Under a plain `cargo test` such a test says what it lacks and returns; scripts/test.sh sets
//! `GANTRY_TEST_REQUIRE_ALL=1`, and then the same test fails instead, naming what to set or
//! install, so a broken setup can never pass as a row of "ok".
//!
//! One file for every crate's tests, included with `#[path = ".../testing/skip.rs"]`.

// Not every test binary that includes this uses both functions.
#![allow(dead_code)]

pub const REQUIRE_ALL_ENV: &str = "GANTRY_TEST_REQUIRE_ALL";

/// Call just before returning from a test that cannot run: `missing` says what is absent and
/// how to provide it. Panics when `GANTRY_TEST_REQUIRE_ALL` is set.
#[track_caller]
pub fn because(missing: &str) {
    let required = std::env::var_os(REQUIRE_ALL_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{missing} ({REQUIRE_ALL_ENV} is set, so this test may not be skipped)"
    );
    eprintln!("skipped: {missing}");
}

/// The value of the environment variable `var`, or None after [`because`] when it is unset or
/// empty; `what` says what it should name.
#[track_caller]
pub fn unless_env(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            because(&format!("{var} is not set: set it to {what}"));
            None
        }
    }
}
