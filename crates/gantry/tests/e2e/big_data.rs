//! Big data through a pipeline: a step printing a million lines, a log over its cap, a log
//! followed while it grows and read back after `gantry` is killed.

use crate::support::{Gantry, KillOnDrop, eventually, step};

fn run_id(summary: &serde_json::Value) -> String {
    summary["run_id"].as_str().unwrap().to_owned()
}

fn seq(from: u64, to: u64) -> String {
    (from..=to).map(|i| format!("{i}\n")).collect()
}

#[test]
fn a_million_lines_arrive_whole_and_in_order_and_can_be_tailed_and_searched() {
    let g = Gantry::new();
    let file = g.write(
        "million.yaml",
        r#"
name: million
steps:
  - name: count
    image: busybox:1
    command: [sh, -c, 'seq 1 1000000; echo to stderr >&2']
"#,
    );
    let (code, summary, stderr) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{summary:#}\n{stderr}");
    let run = run_id(&summary);

    let out = g.run(&["logs", &run, "count"]);
    assert!(out.status.success());
    // stdout and stderr are two pipes: where the stderr line lands among the stdout lines is
    // not defined, but it is there once, whole, and stdout is seq's output byte for byte.
    let stored = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stored.matches("to stderr\n").count(), 1);
    let stdout_only = stored.replacen("to stderr\n", "", 1);
    assert!(
        stdout_only == seq(1, 1_000_000),
        "stdout differs from seq's output ({} bytes vs {})",
        stdout_only.len(),
        seq(1, 1_000_000).len()
    );
    let last = |n: usize| -> String {
        let lines: Vec<&str> = stored.lines().collect();
        lines[lines.len() - n..]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect()
    };
    // The same through a server: whole chunks per event, byte for byte.
    let (server, url) = g.spawn_listening(&["server", "--listen", "127.0.0.1:0"], &[]);
    let _server = KillOnDrop(server);
    let (code, remote_log, err) = g.remote(&url, &["logs", &run, "count"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        remote_log == stored,
        "the log read through the server differs ({} bytes)",
        remote_log.len()
    );
    let (_, tail, _) = g.remote(
        &url,
        &["logs", &run, "count", "--tail", "2", "--grep", "^9"],
    );
    assert_eq!(tail, "999998\n999999\n");
    // Every step's log, each line prefixed with its step.
    let all = g.ok(&["logs", &run]);
    let first: String = stored
        .lines()
        .take(2)
        .map(|l| format!("[count] {l}\n"))
        .collect();
    assert!(all.starts_with(&first), "{}", &all[..40]);
    let prefixed: String = last(2).lines().map(|l| format!("[count] {l}\n")).collect();
    assert!(all.ends_with(&prefixed), "{}", &all[all.len() - 60..]);
    assert_eq!(
        all.len(),
        stored.len() + "[count] ".len() * stored.lines().count()
    );

    assert_eq!(g.ok(&["logs", &run, "count", "--tail", "3"]), last(3));
    assert_eq!(
        g.ok(&["logs", &run, "count", "--grep", "^99999[0-3]$"]),
        "999990\n999991\n999992\n999993\n"
    );
    assert_eq!(
        g.ok(&["logs", &run, "count", "--grep", "7$", "--tail", "2"]),
        "999987\n999997\n"
    );
    assert_eq!(g.ok(&["logs", &run, "count", "--tail", "0"]), "");
    // --since: a duration ago keeps everything just written; a time to come keeps nothing.
    assert_eq!(
        g.ok(&["logs", &run, "count", "--since", "1h", "--tail", "1"]),
        last(1)
    );
    assert_eq!(
        g.ok(&["logs", &run, "count", "--since", "2999-01-01T00:00:00Z"]),
        ""
    );
    for (args, what) in [
        (vec!["--grep", "("], "bad --grep pattern"),
        (
            vec!["--since", "yesterday-ish"],
            "bad --since 'yesterday-ish'",
        ),
    ] {
        let mut all = vec!["logs", run.as_str(), "count"];
        all.extend(args);
        let out = g.run(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(what), "{all:?}: {err}");
    }
    // A closed pipe ends the command quietly.
    let mut child = g
        .command(&["logs", &run, "count"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    // Like any Unix filter: exit 0, or SIGPIPE's quiet death, and nothing on stderr.
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.code() == Some(0) || out.status.signal() == Some(13),
        "{:?}",
        out.status
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_log_over_its_cap_keeps_its_head_and_tail_and_says_what_it_dropped() {
    let g = Gantry::new();
    let file = g.write(
        "capped.yaml",
        r#"
name: capped
steps:
  - name: chatty
    image: busybox:1
    command: [sh, -c, 'seq 1 200000']
    logs: { max: 64Ki }
"#,
    );
    let (code, summary, stderr) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{summary:#}\n{stderr}");
    let log = g.ok(&["logs", &run_id(&summary), "chatty"]);
    let lines: Vec<&str> = log.lines().collect();
    let marker = lines
        .iter()
        .position(|l| l.starts_with("[gantry] the log reached its cap (logs.max = 64Ki)"))
        .unwrap_or_else(|| panic!("no marker in {} lines", lines.len()));
    let head: Vec<u64> = lines[..marker].iter().map(|l| l.parse().unwrap()).collect();
    let tail: Vec<u64> = lines[marker + 1..]
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    // The head starts at the first line and the tail ends at the last, each without gaps.
    assert_eq!(head[0], 1);
    assert!(head.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(*tail.last().unwrap(), 200_000);
    assert!(tail.windows(2).all(|w| w[1] == w[0] + 1));
    let dropped = tail[0] - head.last().unwrap() - 1;
    assert!(
        lines[marker].contains(&format!("{dropped} lines (")),
        "{}",
        lines[marker]
    );
    // What is kept is about the cap: each half within a chunk (4Ki here) of its 32Ki.
    let bytes = |v: &[u64]| v.iter().map(|n| n.to_string().len() + 1).sum::<usize>();
    for (half, kept) in [("head", bytes(&head)), ("tail", bytes(&tail))] {
        assert!(
            (28 << 10..=(36 << 10) + 64).contains(&kept),
            "{half}: {kept} bytes kept"
        );
    }
}

#[test]
fn a_log_is_followed_while_it_grows_and_survives_a_killed_gantry() {
    let g = Gantry::new();
    let file = g.write(
        "slow.yaml",
        r#"
name: slow
steps:
  - name: ticker
    image: busybox:1
    command: [sh, -c, 'i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo "tick $i"; sleep 0.1; done']
  - name: flood
    image: busybox:1
    after: [ticker]
    command: [sh, -c, 'i=0; while true; do i=$((i+1)); echo $i; done']
"#,
    );
    let mut child = KillOnDrop(
        g.command(&["run", file.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut run = String::new();
    assert!(
        eventually(|| {
            let runs = g.json(&["runs"]);
            match runs[0]["id"].as_str() {
                Some(id) => {
                    run = id.to_owned();
                    true
                }
                None => false,
            }
        }),
        "the run never started"
    );
    // --follow prints the ticker's lines as they come and returns when the step is over
    // (the run goes on with the next step).
    let followed = g.ok(&["logs", &run, "ticker", "--follow"]);
    let want: String = (1..=20).map(|i| format!("tick {i}\n")).collect();
    // The follower may have started before the step: it still sees every line once.
    assert_eq!(
        followed.lines().filter(|l| l.starts_with("tick")).count(),
        20
    );
    assert!(followed.ends_with(&want), "{followed}");

    // The flood step prints as fast as it can; gantry is killed while it does.
    assert!(
        eventually(|| {
            let show = g.show(&run);
            step(&show, "flood")["status"] == "running"
                && g.ok(&["logs", &run, "flood", "--tail", "1"])
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
                    > 10_000
        }),
        "the flood step never got going"
    );
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    // What was stored before the kill reads back as a whole prefix of the output.
    let log = g.ok(&["logs", &run, "flood"]);
    let numbers: Vec<u64> = log.lines().map(|l| l.parse().unwrap()).collect();
    assert!(numbers.len() > 10_000, "{} lines", numbers.len());
    assert_eq!(numbers[0], 1);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
    // The next run reaps the orphaned container.
    let quick = g.write(
        "quick.yaml",
        "name: quick\nsteps:\n  - name: a\n    image: busybox:1\n    command: [\"true\"]\n",
    );
    let (code, _, _) = g.run_pipeline(&quick, &[]);
    assert_eq!(code, 0);
    assert!(g.runc_containers().is_empty());
}

fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn a_large_file_is_handed_to_the_next_step_without_a_copy() {
    let g = Gantry::new();
    let file = g.write(
        "handoff.yaml",
        r#"
name: handoff
steps:
  - name: produce
    image: busybox:1
    command: [sh, -c, 'dd if=/dev/zero of=/gantry/outputs/big bs=1M count=64 2>/dev/null && stat -c "inode %i" /gantry/outputs/big']
    outputs: [big]
  - name: consume
    image: busybox:1
    inputs: { big: produce.big }
    command: [sh, -c, 'stat -c "inode %i links %h" ${inputs.big}; wc -c < ${inputs.big}; echo x >> ${inputs.big} || echo read-only']
"#,
    );
    let (code, summary, stderr) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{summary:#}\n{stderr}");
    let run = run_id(&summary);
    let digest = step(&summary, "produce")["outputs"]["big"]
        .as_str()
        .unwrap()
        .to_owned();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let artifacts = g.home.path().join("artifacts");
    let stored = inode(&artifacts.join("objects/sha256").join(hex));
    assert_eq!(inode(&artifacts.join("materialized").join(hex)), stored);

    // The producer's file is the stored object, and the consumer read that same inode.
    let produced = g.ok(&["logs", &run, "produce"]);
    assert_eq!(produced.trim(), format!("inode {stored}"));
    let consumed = g.ok(&["logs", &run, "consume"]);
    let mut lines = consumed.lines();
    assert_eq!(lines.next().unwrap(), format!("inode {stored} links 2"));
    assert_eq!(lines.next().unwrap().trim(), (64 << 20).to_string());
    assert!(consumed.contains("read-only"), "{consumed}");
    assert_eq!(
        std::fs::metadata(artifacts.join("objects/sha256").join(hex))
            .unwrap()
            .len(),
        64 << 20,
        "the consumer could not append to its input"
    );
}

/// Unmounts the tmpfs a test mounted, even when it fails.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_during_capture_fails_the_step_and_leaves_nothing_half_written() {
    let g = Gantry::empty();
    let status = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=40m",
            "gantry-test",
            g.home.path().to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "mounting a tmpfs for GANTRY_HOME (these tests run as root)"
    );
    let _mount = Tmpfs(g.home.path().to_owned());
    let g = crate::support::import_busybox(g);
    let spec = |mb: u32| {
        format!(
            r#"
name: full
steps:
  - name: fill
    image: busybox:1
    command: [sh, -c, 'mkdir /gantry/outputs/data && dd if=/dev/zero of=/gantry/outputs/data/blob bs=1M count={mb} 2>/dev/null']
    outputs: [data]
"#
        )
    };
    // 24 MiB written by the step fit; packing them into the store needs 24 more.
    let file = g.write("full.yaml", &spec(24));
    let (code, summary, stderr) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 1, "{summary:#}\n{stderr}");
    let fill = step(&summary, "fill");
    assert_eq!(fill["status"], "failed");
    let reason = fill["reason"].as_str().unwrap();
    assert!(
        reason.contains("no space left on device while storing") && reason.contains("outputs/data"),
        "{reason}"
    );
    let show = g.show(&run_id(&summary));
    assert_eq!(step(&show, "fill")["reason"], reason);
    let artifacts = g.home.path().join("artifacts");
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(artifacts.join(dir))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(names("tmp").is_empty(), "{:?}", names("tmp"));
    let meta_before = names("objects/meta");

    // Once there is room (a smaller output), the same pipeline runs.
    let file = g.write("full.yaml", &spec(8));
    let (code, summary, stderr) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{summary:#}\n{stderr}");
    let digest = step(&summary, "fill")["outputs"]["data"].as_str().unwrap();
    let meta_after = names("objects/meta");
    assert_eq!(meta_after.len(), meta_before.len() + 1);
    assert!(meta_after.contains(&format!("{}.json", &digest["sha256:".len()..])));
}

/// Makes everything stored in the home look older than gc's one-minute grace.
fn age_home(g: &Gantry) {
    let home = g.home.path();
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["artifacts/objects/meta", "work"] {
        for e in std::fs::read_dir(home.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            paths.push(e.path());
        }
    }
    if paths.is_empty() {
        return;
    }
    let status = std::process::Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg("2 hours ago")
        .args(&paths)
        .status()
        .unwrap();
    assert!(status.success());
}

fn stored(g: &Gantry, digest: &str) -> bool {
    g.home
        .path()
        .join("artifacts/objects/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
        .exists()
}

#[test]
fn gc_removes_only_what_no_kept_run_uses_while_a_run_goes_on_and_the_cache_still_hits() {
    let g = Gantry::new();
    let old = g.write(
        "old.yaml",
        r#"
name: old
steps:
  - name: make
    image: busybox:1
    command: [sh, -c, 'echo "old log line"; echo old-bytes > /gantry/outputs/x']
    outputs: [x]
"#,
    );
    let (code, old_run, stderr) = g.run_pipeline(&old, &["--keep-workdirs"]);
    assert_eq!(code, 0, "{stderr}");
    let old_id = run_id(&old_run);
    let old_x = step(&old_run, "make")["outputs"]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(g.home.path().join("work").join(&old_id).is_dir());
    std::thread::sleep(std::time::Duration::from_secs(5));

    // A run in progress whose step reads its input after gc has run.
    g.write("data/in.txt", "live input\n");
    let live = g.write(
        "live.yaml",
        r#"
name: live
steps:
  - name: wait
    image: busybox:1
    inputs: { data: { path: data } }
    command: [sh, -c, 'sleep 8; cat ${inputs.data}/in.txt']
"#,
    );
    let live_child = KillOnDrop(
        g.command(&["run", live.to_str().unwrap(), "--output", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    crate::support::wait_until("the live step to run", || {
        let runs = g.json(&["runs"]);
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["pipeline"] == "live")
            && !g.runc_containers().is_empty()
    });

    // A recent run, kept by the retention.
    let keep = g.write(
        "keep.yaml",
        r#"
name: keep
steps:
  - name: produce
    image: busybox:1
    command: [sh, -c, 'echo kept-bytes > /gantry/outputs/x; mkdir /gantry/outputs/d; echo in-dir > /gantry/outputs/d/f']
    outputs: [x, d]
  - name: use
    image: busybox:1
    inputs: { x: produce.x }
    command: [sh, -c, 'cat ${inputs.x}']
"#,
    );
    let (code, kept_run, stderr) = g.run_pipeline(&keep, &[]);
    assert_eq!(code, 0, "{stderr}");
    let kept_outputs = step(&kept_run, "produce")["outputs"].clone();
    age_home(&g);

    // A dry run says what would go and removes nothing.
    let dry = g.json(&["gc", "--dry-run", "--older-than", "3s"]);
    assert_eq!(dry["dry_run"], true);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert_eq!(
        dry["artifacts"]["count"],
        1,
        "{dry:#}\nnow {now_ms}\n{:#}",
        g.json(&["runs"])
    );
    assert_eq!(dry["scratch"]["count"], 1, "{dry:#}");
    assert!(dry["logs"]["count"].as_u64().unwrap() >= 1, "{dry:#}");
    assert!(stored(&g, &old_x));
    let df = g.json(&["df", "--older-than", "3s"]);
    assert!(df["artifacts"]["count"].as_u64().unwrap() >= 4, "{df:#}");
    assert_eq!(df["reclaimable"]["artifacts"], dry["artifacts"], "{df:#}");
    assert!(df["logs"]["bytes"].as_u64().unwrap() > 0);
    assert!(df["database_bytes"].as_u64().unwrap() > 0);
    let table = g.ok(&["df", "--older-than", "3s"]);
    assert!(
        table.contains("GC WOULD FREE") && table.contains("scratch"),
        "{table}"
    );

    let report = g.json(&["gc", "--older-than", "3s"]);
    assert_eq!(report["artifacts"], dry["artifacts"], "{report:#}");
    // The old run's output, log and scratch directory are gone; its record stays.
    assert!(!stored(&g, &old_x));
    let out = tempfile::tempdir().unwrap();
    let got = g.run(&[
        "artifact",
        "get",
        &old_x,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(!got.status.success());
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(err.contains("not in the store"), "{err}");
    assert_eq!(g.ok(&["logs", &old_id]), "");
    assert!(!g.home.path().join("work").join(&old_id).exists());
    assert_eq!(g.show(&old_id)["status"], "succeeded");
    // Everything the kept run and the live run use is still there.
    for digest in kept_outputs.as_object().unwrap().values() {
        assert!(stored(&g, digest.as_str().unwrap()), "{digest}");
    }
    assert!(
        g.ok(&["logs", &run_id(&kept_run), "use"])
            .contains("kept-bytes")
    );
    let live_out = live_child.wait();
    assert!(
        live_out.status.success(),
        "{}",
        String::from_utf8_lossy(&live_out.stderr)
    );
    let live_summary: serde_json::Value = serde_json::from_slice(&live_out.stdout).unwrap();
    assert!(
        g.ok(&["logs", &run_id(&live_summary), "wait"])
            .contains("live input")
    );

    // The kept pipeline is still fully cached; the collected one runs again.
    let (code, again, _) = g.run_pipeline(&keep, &[]);
    assert_eq!(code, 0);
    assert_eq!(again["cache_hits"], 2, "{again:#}");
    let (code, rerun, _) = g.run_pipeline(&old, &[]);
    assert_eq!(code, 0);
    assert_eq!(rerun["cache_hits"], 0, "{rerun:#}");
    assert_eq!(step(&rerun, "make")["outputs"]["x"], old_x.as_str());
    assert!(stored(&g, &old_x));
}

#[test]
fn a_server_collects_on_its_schedule_and_audits_it() {
    let g = Gantry::new();
    let file = g.write(
        "once.yaml",
        "name: once\nsteps:\n  - name: a\n    image: busybox:1\n    command: [sh, -c, 'echo gone > /gantry/outputs/x']\n    outputs: [x]\n",
    );
    let (code, summary, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0);
    let x = step(&summary, "a")["outputs"]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(std::time::Duration::from_secs(2));
    age_home(&g);
    let (server, url) = g.spawn_listening(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--gc-interval",
            "1s",
            "--gc-older-than",
            "1s",
        ],
        &[],
    );
    let _server = KillOnDrop(server);
    let (code, df, err) = g.remote(&url, &["df", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let df: serde_json::Value = serde_json::from_str(&df).unwrap();
    assert!(df["artifacts"]["count"].as_u64().is_some(), "{df:#}");
    crate::support::wait_until("the scheduled gc", || !stored(&g, &x));
    let audit = g.json(&["audit"]);
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "gc")
        .unwrap_or_else(|| panic!("no gc in the audit log: {audit:#}"));
    assert_eq!(entry["principal"], "gc-schedule");
    assert!(
        entry["detail"]["freed_bytes"].as_u64().unwrap() > 0,
        "{entry:#}"
    );
    // A gc through the API, as an admin, is audited under the caller's name.
    let (code, out, err) = g.remote(&url, &["gc", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["dry_run"], false);
    let audit = g.json(&["audit"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "gc" && a["principal"] == "local"),
        "{audit:#}"
    );
}
