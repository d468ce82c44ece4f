//! A hostile rootfs: symlinks that point outside must never make the scanner read host files.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::*;
use gantry_scan::inventory;

#[test]
fn symlinks_out_of_the_rootfs_read_nothing_outside_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let outside = dir.path().join("outside");
    fs::create_dir_all(outside.join("site-packages/evil-1.0.dist-info"))?;
    fs::write(outside.join("os-release"), "ID=evil\nVERSION_ID=1\n")?;
    fs::write(
        outside.join("status"),
        "Package: evil\nStatus: install ok installed\nVersion: 1\n",
    )?;
    fs::write(
        outside.join("site-packages/evil-1.0.dist-info/METADATA"),
        "Name: evil\nVersion: 1.0\n",
    )?;
    let root = dir.path().join("rootfs");
    fs::create_dir_all(root.join("etc"))?;
    fs::create_dir_all(root.join("var/lib/dpkg"))?;
    fs::create_dir_all(root.join("lib/apk/db"))?;
    fs::create_dir_all(root.join("usr/lib/python3.11"))?;
    fs::create_dir_all(root.join("opt/venv/lib/python3.11/site-packages"))?;
    let outside_abs = outside.to_string_lossy().into_owned();
    // Relative links climbing past the root, and absolute host paths.
    symlink(
        "/../../../../../../outside/os-release",
        root.join("etc/os-release"),
    )?;
    symlink(
        format!("{outside_abs}/os-release"),
        root.join("usr/lib/os-release"),
    )?;
    symlink(
        "../../../../outside/status",
        root.join("var/lib/dpkg/status"),
    )?;
    symlink(
        format!("{outside_abs}/status"),
        root.join("lib/apk/db/installed"),
    )?;
    symlink(
        format!("{outside_abs}/status"),
        root.join("var/lib/dpkg/status.d"),
    )?;
    symlink(
        format!("{outside_abs}/site-packages"),
        root.join("usr/lib/python3.11/site-packages"),
    )?;
    symlink(
        format!("{outside_abs}/site-packages/evil-1.0.dist-info"),
        root.join("opt/venv/lib/python3.11/site-packages/evil-1.0.dist-info"),
    )?;
    symlink(outside_abs.clone(), root.join("opt/escape"))?;
    symlink("loop-b", root.join("etc/loop-a"))?;
    symlink("loop-a", root.join("etc/loop-b"))?;

    let inv = inventory(&root)?;

    assert!(inv.os.is_none(), "{:?}", inv.os);
    assert!(inv.packages.is_empty(), "{:?}", inv.packages);
    Ok(())
}

#[test]
fn links_that_stay_inside_are_followed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("rootfs");
    fs::create_dir_all(root.join("etc"))?;
    fs::create_dir_all(root.join("usr/lib"))?;
    fs::create_dir_all(root.join("data"))?;
    fs::write(
        root.join("usr/lib/os-release"),
        "ID=alpine\nVERSION_ID=3.20.3\n",
    )?;
    // Absolute links are relative to the rootfs, as inside a container.
    symlink("/usr/lib/os-release", root.join("etc/os-release"))?;
    fs::write(root.join("data/installed"), "P:musl\nV:1.2.5-r0\no:musl\n")?;
    fs::create_dir_all(root.join("lib/apk"))?;
    symlink("/data", root.join("lib/apk/db"))?;

    let inv = inventory(&root)?;

    assert_eq!(
        inv.os.and_then(|o| o.ecosystem).as_deref(),
        Some("Alpine:v3.20")
    );
    assert_eq!(inv.packages.len(), 1);
    assert_eq!(inv.packages[0].origin, "data/installed");
    Ok(())
}

#[test]
fn a_rootfs_that_is_not_a_directory_is_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("file");
    fs::write(&file, "x")?;
    assert!(inventory(&file).is_err());
    assert!(inventory(&dir.path().join("missing")).is_err());
    Ok(())
}
