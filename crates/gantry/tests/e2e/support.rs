//! A tiny fixture: a temporary GANTRY_HOME with busybox imported, a folder for
//! pipeline files, and helpers that run the real `gantry` binary.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_gantry");

/// Imports `busybox:1` into the home.
pub fn import_busybox(g: Gantry) -> Gantry {
    g.ok(&[
        "image",
        "import",
        crate::busybox::tar().to_str().unwrap(),
        "--name",
        "busybox:1",
    ]);
    g
}

pub struct Gantry {
    pub home: tempfile::TempDir,
    pub dir: tempfile::TempDir,
}

impl Gantry {
    /// A fresh home with `busybox:1` imported.
    pub fn new() -> Gantry {
        import_busybox(Gantry::empty())
    }

    pub fn empty() -> Gantry {
        Gantry {
            home: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("GANTRY_HOME", self.home.path())
            .env("GANTRY_RETRY_BASE", "50ms")
            .env_remove("GANTRY_DB")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and requires exit code 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "gantry {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// `gantry run FILE --output json ARGS`: (exit code, summary, stderr).
    pub fn run_pipeline(&self, file: &Path, extra: &[&str]) -> (i32, Value, String) {
        let mut args = vec!["run", file.to_str().unwrap(), "--output", "json"];
        args.extend(extra);
        let out = self.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "no JSON summary ({e}); exit {:?}\nstdout:\n{}\nstderr:\n{stderr}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code().unwrap_or(-1), v, stderr)
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts a long-running `gantry ARGS` (a server) and returns it with the URL it
    /// announces on its first line of stdout.
    pub fn spawn_listening(&self, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
        let mut c = self.command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in the first line of `gantry {args:?}`: {line:?}"))
            .to_string();
        (child, url)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn show(&self, run: &str) -> Value {
        self.json(&["show", run])
    }

    /// Container ids runc still knows about in this home.
    pub fn runc_containers(&self) -> Vec<String> {
        let out = Command::new("runc")
            .arg("--root")
            .arg(self.home.path().join("runtime/state"))
            .args(["list", "-q"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect()
    }
}

pub fn step<'a>(summary_or_show: &'a Value, name: &str) -> &'a Value {
    summary_or_show["steps"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {summary_or_show:#}"))
}

/// Step-run records of one step in `gantry show --output json`, one per attempt.
pub fn attempts<'a>(show: &'a Value, name: &str) -> Vec<&'a Value> {
    show["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == name)
        .collect()
}

pub fn wait_until(what: &str, f: impl FnMut() -> bool) {
    assert!(eventually(f), "timed out waiting for {what}");
}

/// Polls `f` for up to 60 s; says whether it became true.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !f() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    true
}

/// Bytes as text, for messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `stdout + stderr` of a finished command, for failure messages.
pub fn both(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// The names in `dir` (empty when it does not exist).
pub fn names_in(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The digests `gantry images` lists.
pub fn image_digests(g: &Gantry) -> Vec<String> {
    g.json(&["images"])
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"].as_str().unwrap().to_string())
        .collect()
}

impl Gantry {
    /// Runs `gantry ARGS` with `DOCKER_CONFIG=docker_config` (so only the credentials a test
    /// puts there are found) and `stdin` fed in.
    pub fn run_with_docker_config(
        &self,
        args: &[&str],
        docker_config: &Path,
        stdin: Option<&str>,
    ) -> Output {
        use std::io::Write;
        let mut c = self.command(args);
        c.env("DOCKER_CONFIG", docker_config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// `gantry --server URL ARGS…`: (exit code, stdout, stderr).
    pub fn remote(&self, url: &str, args: &[&str]) -> (i32, String, String) {
        let out = self
            .command(&[&["--server", url], args].concat())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }
}

/// A spawned `gantry` (a run, a server) killed when the test ends, even by a failed
/// assertion.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Waits for the process to end on its own.
    pub fn wait(mut self) -> std::process::Output {
        let child = std::mem::replace(
            &mut self.0,
            std::process::Command::new("true").spawn().unwrap(),
        );
        child.wait_with_output().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
