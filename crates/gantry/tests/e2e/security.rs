//! The least-privilege defaults, observed from inside a step run by the engine.

use crate::support::{Gantry, step};

#[test]
fn every_step_runs_unprivileged_read_only_and_offline_by_default() {
    let g = Gantry::new();
    let file = g.write(
        "probe.yaml",
        r#"
name: probe
steps:
  - name: probe
    image: busybox:1
    command:
      - sh
      - -c
      - |
        o=/gantry/outputs/facts
        echo "uid=$(id -u) gid=$(id -g)" > $o
        grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status >> $o
        if touch /etc/evil 2>/dev/null; then echo "rootfs=writable" >> $o; else echo "rootfs=read-only" >> $o; fi
        if touch /tmp/ok 2>/dev/null; then echo "tmp=writable" >> $o; else echo "tmp=read-only" >> $o; fi
        echo "ifaces=$(ls /sys/class/net | tr '\n' ' ')" >> $o
        if echo x > /gantry/inputs/nope 2>/dev/null; then echo "inputs=writable" >> $o; else echo "inputs=protected" >> $o; fi
    outputs: [facts]
  - name: online
    image: busybox:1
    network: true
    command: [sh, -c, 'ls /sys/class/net | tr "\n" " " > /gantry/outputs/ifaces']
    outputs: [ifaces]
"#,
    );
    let (code, s, stderr) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{s:#}\n{stderr}");
    let out = tempfile::tempdir().unwrap();
    let get = |digest: &str| {
        let p = g.ok(&[
            "artifact",
            "get",
            digest,
            "--out",
            out.path().to_str().unwrap(),
        ]);
        std::fs::read_to_string(p.trim()).unwrap()
    };
    let facts = get(step(&s, "probe")["outputs"]["facts"].as_str().unwrap());
    assert!(facts.contains("uid=65534 gid=65534"), "{facts}");
    for cap in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(
            facts.contains(&format!("{cap}:\t0000000000000000")),
            "{cap}: {facts}"
        );
    }
    assert!(facts.contains("NoNewPrivs:\t1"), "{facts}");
    assert!(facts.contains("Seccomp:\t2"), "{facts}");
    assert!(facts.contains("rootfs=read-only"), "{facts}");
    assert!(facts.contains("tmp=writable"), "{facts}");
    assert!(
        facts.contains("ifaces=lo \n") || facts.contains("ifaces=lo\n"),
        "{facts}"
    );
    assert!(facts.contains("inputs=protected"), "{facts}");
    let online = get(step(&s, "online")["outputs"]["ifaces"].as_str().unwrap());
    assert_ne!(
        online.trim(),
        "lo",
        "network: true shares the host's interfaces"
    );
}

#[test]
fn a_step_cannot_smuggle_host_files_out_through_symlinks() {
    let g = Gantry::new();
    let file = g.write(
        "smuggle.yaml",
        r#"
name: smuggle
steps:
  - name: link-file
    image: busybox:1
    command: [ln, -s, /etc/shadow, /gantry/outputs/secret]
    outputs: [secret]
  - name: link-in-dir
    image: busybox:1
    command: [sh, -c, 'mkdir /gantry/outputs/d && ln -s /etc/shadow /gantry/outputs/d/secret']
    outputs: [d]
  - name: link-metrics
    image: busybox:1
    command: [ln, -s, /etc/shadow, /gantry/metrics.json]
"#,
    );
    let (code, s, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 1);
    assert_eq!(step(&s, "link-file")["status"], "failed");
    assert_eq!(step(&s, "link-in-dir")["status"], "failed");
    assert_eq!(step(&s, "link-metrics")["status"], "succeeded");
    let show = g.show(s["run_id"].as_str().unwrap());
    assert!(
        step(&show, "link-metrics")["metrics"]
            .as_object()
            .unwrap()
            .is_empty()
    );
    let logs = g.ok(&["logs", s["run_id"].as_str().unwrap(), "link-metrics"]);
    assert!(logs.contains("ignored /gantry/metrics.json"), "{logs}");

    // The step owns /gantry: replacing outputs/ by a symlink to a host directory must not
    // make Gantry move (or read) the host's files into the store.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("victim"), "host data").unwrap();
    let swap = g.write(
        "swap.yaml",
        &format!(
            r#"
name: swap
steps:
  - name: swap-outputs
    image: busybox:1
    command: [sh, -c, 'mv /gantry/outputs /gantry/mine && ln -s {} /gantry/outputs']
    outputs: [victim]
"#,
            host.path().display()
        ),
    );
    let (code, s, _) = g.run_pipeline(&swap, &[]);
    assert_eq!(code, 1);
    let swapped = step(&s, "swap-outputs");
    assert_eq!(swapped["status"], "failed");
    assert!(
        swapped["reason"]
            .as_str()
            .unwrap()
            .contains("/gantry/outputs was replaced"),
        "{swapped:#}"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("victim")).unwrap(),
        "host data"
    );
}
