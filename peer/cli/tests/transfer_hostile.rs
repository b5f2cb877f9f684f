//! Hostile peers among honest ones: corrupt chunks, a wrong manifest, garbage frames, chunks it
//! claims and does not hold, chunks nobody asked for, a HAVE flood. The download still ends
//! byte-identical and every liar that was contacted is dropped.

mod common;

use std::fs;
use std::sync::atomic::Ordering;

use common::liar::{self, Lie};
use common::*;

#[test]
fn liars_are_dropped_and_the_file_still_arrives_intact() {
    let t = TempDir::new("hostile");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("f.bin"), 4 << 20, 6);
    let liars: Vec<_> = [
        Lie::CorruptChunks,
        Lie::WrongManifest,
        Lie::Garbage,
        Lie::FalseClaims,
        Lie::UnrequestedChunk,
        Lie::HaveFlood,
    ]
    .into_iter()
    .map(|lie| (lie, liar::start(tracker, "f.bin", data.clone(), lie)))
    .collect();
    // The honest seeder is slow so that the liars get requests too.
    let _honest = start_seeder(
        tracker,
        &t.sub("s"),
        &t.join("f.bin"),
        &["--upload-rate", "1000000"],
    );
    let leech = t.sub("leech");
    let out = run(peer_cmd(tracker, &leech).args(["get", "f.bin"]));
    let err = stderr(&out);
    assert!(out.status.success(), "get failed:\n{err}");
    assert!(
        fs::read(leech.join("f.bin")).unwrap() == data,
        "downloaded file differs"
    );
    for (lie, l) in &liars {
        assert!(
            l.connections.load(Ordering::Relaxed) > 0,
            "{lie:?} liar was never contacted"
        );
        assert!(
            err.contains(&format!("{}: dropped for f.bin", l.addr)),
            "{lie:?} liar not dropped:\n{err}"
        );
    }
}

#[test]
fn a_stalled_peer_is_dropped_and_its_chunks_fetched_elsewhere() {
    let t = TempDir::new("stalled");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("f.bin"), 2 << 20, 9);
    let silent = liar::start(tracker, "f.bin", data.clone(), Lie::Silent);
    let _honest = start_seeder(
        tracker,
        &t.sub("s"),
        &t.join("f.bin"),
        &["--upload-rate", "2000000"],
    );
    let leech = t.sub("leech");
    let out = run(peer_cmd(tracker, &leech).args(["get", "--stall-timeout", "2", "f.bin"]));
    let err = stderr(&out);
    assert!(out.status.success(), "get failed:\n{err}");
    assert!(
        fs::read(leech.join("f.bin")).unwrap() == data,
        "downloaded file differs"
    );
    assert!(
        silent.connections.load(Ordering::Relaxed) > 0,
        "the silent peer was never contacted"
    );
    let (_, peers, _) = summary(&stdout(&out), "f.bin");
    assert_eq!(peers, 1, "only the honest seeder delivered");
}
