//! Builds `init/gantry-init.rs` as a static binary that `OciRuntime` installs and runs as PID 1 of
//! every container (see that file). It has no dependencies but `std`, so one `rustc` call does
//! it; `+crt-static` on the gnu targets links the C library in (static-pie), so the binary runs
//! in any image, with or without a libc of its own.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "init/gantry-init.rs";
    println!("cargo::rerun-if-changed={source}");
    println!("cargo::rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = out_dir.join("gantry-init");
    let status = Command::new(&rustc)
        .args(["--crate-name", "gantry_init", "--crate-type", "bin"])
        .args(["--edition", "2024", "--target", &target])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "debuginfo=0",
        ])
        .args(["-C", "strip=symbols", "-C", "target-feature=+crt-static"])
        .args(["-D", "warnings"])
        .arg("-o")
        .arg(&output)
        .arg(source)
        // Keep cargo's flags for the workspace (a wrapper's or RUSTFLAGS) out of this binary.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "building the static gantry-init failed ({s}); it needs the C library's static archive \
             (Debian: `apt install libc6-dev`)"
        ),
        Err(e) => panic!("cannot run {rustc:?} to build gantry-init: {e}"),
    }
    println!("cargo::rustc-env=GANTRY_INIT_BINARY={}", output.display());
}
