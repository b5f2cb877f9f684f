//! The console's one-shot twins for scripts: `peer list`, `peer query`, `peer peers` and
//! `peer status`, in text and `--json`, with bad input; real tracker and peer processes.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{
    peer_cmd, random_file, recorded_chunks, run, start_seeder, start_tracker, stderr, stdout,
    wait_until, Proc, TempDir,
};

fn json(tracker: SocketAddr, dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = run(peer_cmd(tracker, dir).args(["--stun", "none"]).args(args));
    assert!(
        out.status.success(),
        "peer {args:?} failed: {}",
        stderr(&out)
    );
    serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("peer {args:?}: {e}: {}", stdout(&out)))
}

#[test]
fn list_query_and_peers_answer_in_text_and_json() {
    let tmp = TempDir::new("commands-tracker");
    let (_tracker, tracker) = start_tracker();
    let (seed_dir, probe) = (tmp.sub("seed"), tmp.sub("probe"));
    random_file(&tmp.join("song.ogg"), 5_000, 21);
    let (_seeder, serving) = start_seeder(
        tracker,
        &seed_dir,
        &tmp.join("song.ogg"),
        &["--stun", "none"],
    );

    let list = json(tracker, &probe, &["list", "--json"]);
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["files"][0]["name"], "song.ogg", "{list}");
    assert_eq!(list["files"][0]["size"], 5_000, "{list}");
    assert_eq!(list["files"][0]["chunks"], 3, "{list}");
    assert_eq!(list["files"][0]["seeders"], 1, "{list}");

    let query = json(tracker, &probe, &["query", "song.ogg", "--json"]);
    assert_eq!(query["chunk_size"], 2048, "{query}");
    assert!(
        query["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sha256:")),
        "{query}"
    );

    let peers = json(tracker, &probe, &["peers", "song.ogg", "--json"]);
    assert_eq!(peers["peers"][0]["addr"], serving.to_string(), "{peers}");
    assert_eq!(peers["peers"][0]["chunks"], "all", "{peers}");

    let text = stdout(&run(
        peer_cmd(tracker, &probe).args(["--stun", "none", "list"])
    ));
    assert!(
        text.contains("song.ogg") && text.contains("1 file"),
        "{text}"
    );

    for (args, says) in [
        (
            &["query", "missing.ogg"][..],
            "does not know a file named missing.ogg",
        ),
        (&["query", "etc/passwd"][..], "path separator"),
        (&["query", "../x"][..], "contains '..'"),
        (&["peers", ""][..], "file name is empty"),
    ] {
        let out = run(peer_cmd(tracker, &probe)
            .args(["--stun", "none"])
            .args(args));
        assert!(!out.status.success(), "peer {args:?} succeeded");
        assert!(
            stderr(&out).contains(says),
            "peer {args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn status_shows_a_stopped_download_with_its_resume_record() {
    let tmp = TempDir::new("commands-status");
    let (_tracker, tracker) = start_tracker();
    let (seed_dir, get_dir) = (tmp.sub("seed"), tmp.sub("get"));
    random_file(&tmp.join("slow.bin"), 4 << 20, 22);
    let (_seeder, _) = start_seeder(
        tracker,
        &seed_dir,
        &tmp.join("slow.bin"),
        &["--stun", "none", "--upload-rate", "262144"],
    );

    let mut get = Proc::spawn(
        "get",
        peer_cmd(tracker, &get_dir).args(["--stun", "none", "get", "slow.bin"]),
    );
    wait_until("some chunks are recorded", || {
        recorded_chunks(&get_dir, "slow.bin") > 0
    });
    get.kill();

    let status = json(tracker, &get_dir, &["status", "--json"]);
    let file = &status["files"][0];
    assert_eq!(file["name"], "slow.bin", "{status}");
    assert_eq!(file["state"], "stopped", "{status}");
    assert_eq!(file["chunks_total"], 2048, "{status}");
    let have = file["chunks_have"].as_u64().expect("chunks_have");
    assert!(have > 0 && have < 2048, "{status}");
    assert_eq!(status["daemon"], serde_json::Value::Null, "{status}");

    let text = stdout(&run(
        peer_cmd(tracker, &get_dir).args(["--stun", "none", "status"])
    ));
    assert!(
        text.contains("Stopped") && text.contains(&format!("{have}/2048")),
        "{text}"
    );
}
