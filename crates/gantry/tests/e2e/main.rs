//! End-to-end stories: the real `gantry` binary, real runc containers on a busybox
//! rootfs, SQLite and the local artifact store in a temporary GANTRY_HOME.

#![allow(clippy::unwrap_used)] // test fixtures: a failed setup step should panic loudly

#[path = "../../../../testing/browser.rs"]
mod browser;
#[path = "../../../../testing/busybox.rs"]
mod busybox;
#[path = "../../../../testing/kube.rs"]
mod kube;
#[path = "../../../gantry-kube/tests/mock/mod.rs"]
mod kube_mock;
#[path = "../../../../testing/moto.rs"]
mod moto;
#[path = "../../../../testing/skip.rs"]
mod skip;
mod support;
#[path = "../../../../testing/registry.rs"]
mod test_registry;

mod big_data;
mod compile;
mod crash;
mod deploy;
mod drift;
mod failures;
mod hello;
mod images;
mod kube_pod;
mod kube_run;
mod ml;
mod queue;
mod registry;
mod registry_protocol;
mod remote_access;
mod s3;
mod security;
mod server;
mod spec_errors;
mod trust;
mod trust_server;
mod ui;
mod usage;
