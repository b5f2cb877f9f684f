//! Bad input gives clear errors and leaves nothing that looks like a complete file.

mod common;

use std::fs;

use common::*;

#[test]
fn bad_names_are_refused_before_anything_is_written() {
    let t = TempDir::new("bad-names");
    let (_tracker, tracker) = start_tracker();
    let leech = t.sub("leech");
    for (name, says) in [
        ("../etc", "'..'"),
        ("a/b", "path separator"),
        ("", "empty"),
        ("x.part", ".part"),
        (".hidden", "starts with '.'"),
    ] {
        let out = run(peer_cmd(tracker, &leech).args(["get", name]));
        assert!(!out.status.success(), "get {name:?} succeeded");
        assert!(
            stderr(&out).contains(says),
            "get {name:?}: expected {says:?} in:\n{}",
            stderr(&out)
        );
    }
    let long = "n".repeat(300);
    let out = run(peer_cmd(tracker, &leech).args(["get", &long]));
    assert!(stderr(&out).contains("longer than 255"), "{}", stderr(&out));
    let names: Vec<_> = fs::read_dir(&leech)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![".peer"], "files appeared: {names:?}");
}

#[test]
fn unknown_file_missing_file_and_unreachable_tracker_are_clear_errors() {
    let t = TempDir::new("errors");
    let (_tracker, tracker) = start_tracker();
    let dir = t.sub("d");
    let out = run(peer_cmd(tracker, &dir).args(["get", "nothing.bin"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not know a file named nothing.bin"),
        "{}",
        stderr(&out)
    );

    let out = run(peer_cmd(tracker, &dir)
        .arg("share")
        .arg(t.join("missing.bin")));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("missing.bin") && stderr(&out).contains("No such file"),
        "{}",
        stderr(&out)
    );

    // A port nobody answers on: bind, note it, release it.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run(peer_cmd(dead, &dir).args(["get", "x.bin"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));
    // Sharing while the tracker is unreachable fails and leaves no copy behind.
    random_file(&t.join("f.bin"), 10_000, 12);
    let out = run(peer_cmd(dead, &dir).arg("share").arg(t.join("f.bin")));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![".peer"], "files appeared: {names:?}");

    // A share "directory" that is a file.
    let out = run(peer_cmd(tracker, &t.join("f.bin")).args(["get", "x.bin"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("f.bin"), "{}", stderr(&out));
}

#[test]
fn other_content_under_a_shared_name_is_hash_mismatch() {
    let t = TempDir::new("mismatch");
    let (_tracker, tracker) = start_tracker();
    let a = t.sub("a");
    let b = t.sub("b");
    random_file(&a.join("f.bin"), 100_000, 7);
    let _seeder = start_seeder(tracker, &t.sub("s"), &a.join("f.bin"), &[]);
    random_file(&b.join("f.bin"), 100_000, 8);
    let dir = t.sub("d");
    let out = run(peer_cmd(tracker, &dir).arg("share").arg(b.join("f.bin")));
    assert!(
        !out.status.success(),
        "sharing other content under a taken name succeeded"
    );
    assert!(stderr(&out).contains("HASH_MISMATCH"), "{}", stderr(&out));
    assert!(
        !dir.join("f.bin").exists(),
        "the refused file was copied into the share dir"
    );

    // A local file of that name with other content is never overwritten by a download.
    fs::copy(b.join("f.bin"), dir.join("f.bin")).unwrap();
    let out = run(peer_cmd(tracker, &dir).args(["get", "f.bin"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("different file named f.bin"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read(dir.join("f.bin")).unwrap(),
        fs::read(b.join("f.bin")).unwrap()
    );
}
