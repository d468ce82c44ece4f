//! Importing images through the CLI, including a hostile one.

use crate::support::Gantry;

#[test]
fn images_are_listed_by_name_and_digest_and_a_malicious_tar_changes_nothing() {
    let g = Gantry::new();
    let list = g.json(&["images"]);
    let img = &list.as_array().unwrap()[0];
    assert_eq!(img["names"][0], "busybox:1");
    let digest = img["digest"].as_str().unwrap().to_string();

    // A step may name the image by digest.
    let file = g.write(
        "bydigest.yaml",
        &format!(
            "name: d\nsteps:\n  - name: a\n    image: \"{digest}\"\n    command: [\"true\"]\n"
        ),
    );
    let (code, _, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0);

    // A layer that writes outside its root is refused and leaves no trace.
    let evil = g.dir.path().join("evil.tar");
    {
        let f = std::fs::File::create(&evil).unwrap();
        let mut b = tar::Builder::new(f);
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses "..", so write the name bytes directly.
        h.as_old_mut().name[..13].copy_from_slice(b"../escape.txt");
        h.set_cksum();
        b.append(&h, &b"evil"[..]).unwrap();
        b.finish().unwrap();
    }
    let before = std::fs::read_dir(g.home.path().join("images/blobs/sha256"))
        .unwrap()
        .count();
    let out = g.run(&[
        "image",
        "import",
        evil.to_str().unwrap(),
        "--name",
        "evil:1",
    ]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("escape"), "{err}");
    let after = std::fs::read_dir(g.home.path().join("images/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(before, after);
    assert_eq!(g.json(&["images"]).as_array().unwrap().len(), 1);
    assert!(!g.dir.path().join("escape.txt").exists());
}
