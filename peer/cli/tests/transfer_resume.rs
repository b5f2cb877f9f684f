//! `kill -9` of a downloader, then the same `peer get`: it continues from the verified chunks.

mod common;

use std::fs;

use common::*;

#[test]
fn kill_dash_nine_then_resume_without_refetching_verified_chunks() {
    let t = TempDir::new("resume");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("big.bin"), 16 << 20, 5);
    let _seeder = start_seeder(
        tracker,
        &t.sub("s"),
        &t.join("big.bin"),
        &["--upload-rate", "1500000"],
    );
    let leech = t.sub("leech");
    let mut getter = Proc::spawn(
        "leecher",
        peer_cmd(tracker, &leech).args(["get", "big.bin"]),
    );
    wait_until("some chunks recorded", || {
        recorded_chunks(&leech, "big.bin") >= 500
    });
    getter.kill();
    let recorded = recorded_chunks(&leech, "big.bin");
    assert!(recorded < 8192, "finished before the kill");
    assert!(
        !leech.join("big.bin").exists(),
        "a killed download left a complete-looking file"
    );

    let out = run(peer_cmd(tracker, &leech).args(["get", "big.bin"]));
    assert!(
        out.status.success(),
        "resumed get failed:\n{}",
        stderr(&out)
    );
    assert!(
        fs::read(leech.join("big.bin")).unwrap() == data,
        "resumed file differs"
    );
    let (fetched, _, resumed) = summary(&stdout(&out), "big.bin");
    assert!(
        resumed >= recorded,
        "resumed {resumed} < {recorded} recorded before the kill"
    );
    assert_eq!(
        fetched + resumed,
        8192,
        "verified chunks were fetched again"
    );
    assert!(
        !leech.join(".peer").join("big.bin.part.have").exists(),
        "resume record left behind"
    );
}
