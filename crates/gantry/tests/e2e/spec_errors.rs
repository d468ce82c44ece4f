//! A bad spec or bad parameter never starts anything and says where the problem is.

use crate::support::Gantry;

#[test]
fn spec_errors_name_file_line_and_column_and_exit_2() {
    let g = Gantry::empty();
    let cases = [
        (
            "unknown-key.yaml",
            "name: x\nsteps:\n  - name: a\n    image: busybox:1\n    comand: [true]\n",
            ":5:5",
            "comand",
        ),
        (
            "cycle.yaml",
            "name: x\nsteps:\n  - name: a\n    image: busybox:1\n    after: [b]\n  - name: b\n    image: busybox:1\n    after: [a]\n",
            "",
            "cycle",
        ),
        (
            "dangling.yaml",
            "name: x\nsteps:\n  - name: a\n    image: busybox:1\n    inputs: { d: nowhere.out }\n",
            ":5:",
            "nowhere",
        ),
        (
            "dup.yaml",
            "name: x\nsteps:\n  - name: a\n    image: busybox:1\n  - name: a\n    image: busybox:1\n",
            ":5:",
            "duplicate",
        ),
        (
            "quantity.yaml",
            "name: x\nsteps:\n  - name: a\n    image: busybox:1\n    resources: { memory: 2Gx }\n",
            ":5:",
            "2Gx",
        ),
        // Input files that are not there: found before the run, where they are written.
        (
            "no-file.yaml",
            "name: x\nsteps:\n  - name: a\n    image: busybox:1\n    inputs:\n      d: { path: ./data/absent.csv }\n",
            ":6:10",
            "/data/absent.csv does not exist",
        ),
        (
            "no-source.yaml",
            "name: x\nparams: { f: absent.csv }\nsteps:\n  - name: a\n    uses: builtin/csv-ingest\n    with: { source: \"${params.f}\" }\n",
            ":6:21",
            "absent.csv does not exist",
        ),
    ];
    for (name, text, loc, word) in cases {
        let file = g.write(name, text);
        for cmd in ["validate", "run"] {
            let out = g.run(&[cmd, file.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {name}: {err}");
            assert!(
                err.contains(&format!("{name}{loc}")),
                "{name}: expected location {loc} in:\n{err}"
            );
            assert!(
                err.to_lowercase().contains(&word.to_lowercase()),
                "{name}: expected '{word}' in:\n{err}"
            );
            assert!(
                !err.contains("/./"),
                "{name}: paths are shown resolved:\n{err}"
            );
        }
    }
    assert!(
        g.json(&["runs"]).as_array().unwrap().is_empty(),
        "no run was started"
    );
}

#[test]
fn bad_parameters_are_rejected_with_the_parameter_named() {
    let g = Gantry::empty();
    let file = g.write(
        "p.yaml",
        "name: x\nparams:\n  depth: 4\nsteps:\n  - name: a\n    image: busybox:1\n    command: [echo, '${params.depth}']\n",
    );
    let out = g.run(&["validate", file.to_str().unwrap(), "-p", "depth=deep"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("depth"));
    let out = g.run(&["validate", file.to_str().unwrap(), "-p", "width=3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("width"));
    let out = g.run(&["run", file.to_str().unwrap(), "-p", "depth"]);
    assert_eq!(out.status.code(), Some(2));
    g.ok(&["validate", file.to_str().unwrap(), "-p", "depth=6"]);
}

#[test]
fn unknown_runs_and_images_exit_3() {
    let g = Gantry::new();
    assert_eq!(g.run(&["show", "r-doesnotexist"]).status.code(), Some(3));
    assert_eq!(g.run(&["logs", "r-doesnotexist"]).status.code(), Some(3));
    let file = g.write(
        "missing.yaml",
        "name: x\nsteps:\n  - name: a\n    image: nothere:1\n",
    );
    let out = g.run(&["run", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothere"));
}
