//! `peer share PATH` of a file outside --dir, as a user does it: shared where it lies (never
//! copied), still served after the daemon restarts, withdrawn once it changes on disk; chunk
//! sizes chosen with --chunk-size or grown for large files; what cannot be shared refused.

mod common;

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::raw::Raw;
use common::{
    peer_cmd, random_file, run, start_daemon, start_tracker, stderr, stdout, wait_until, Proc,
    TempDir,
};
use peer_engine::manifest::Manifest;
use peer_engine::wire::{ErrorCode, Frame, PeerId};

/// The serving addresses the tracker lists for `name`.
fn listed(tracker: SocketAddr, probe: &Path, name: &str) -> Vec<String> {
    let out = run(peer_cmd(tracker, probe).args(["peers", name, "--json"]));
    if !out.status.success() {
        return Vec::new();
    }
    let value: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    value["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .map(|p| p["addr"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn get(tracker: SocketAddr, dir: &Path, name: &str) {
    let out = run(peer_cmd(tracker, dir).args(["get", name]));
    assert!(out.status.success(), "get {name}: {}", stderr(&out));
}

#[test]
fn a_file_outside_the_directory_is_seeded_in_place_across_restarts_until_it_changes() {
    let t = TempDir::new("in-place");
    let (_tracker, tracker) = start_tracker();
    let (dir, elsewhere, probe) = (t.sub("dir"), t.sub("elsewhere"), t.sub("probe"));
    let original = elsewhere.join("film.bin");
    let data = random_file(&original, 300_000, 31);
    let id = Manifest::from_data(&data, 2048).unwrap().id();

    let (mut daemon, serving) = start_daemon(tracker, &dir);
    let shared = run(peer_cmd(tracker, &dir).arg("share").arg(&original));
    assert!(shared.status.success(), "share: {}", stderr(&shared));
    assert!(
        stdout(&shared).contains("through the daemon"),
        "{}",
        stdout(&shared)
    );
    // Seeded where it is: nothing of its size appears in --dir.
    assert!(!dir.join("film.bin").exists(), "the file was copied");
    let used: u64 = fs::read_dir(dir.join(".peer"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(used < 100_000, "{used} bytes of state for a 300 kB file");
    let first = t.sub("first");
    get(tracker, &first, "film.bin");
    assert_eq!(fs::read(first.join("film.bin")).unwrap(), data);

    // A restart serves it again from its record, with no `peer share` typed.
    assert!(daemon.terminate().success());
    let (mut daemon, serving_again) = start_daemon(tracker, &dir);
    wait_until("the restarted daemon announces film.bin", || {
        listed(tracker, &probe, "film.bin") == [serving_again.to_string()]
    });
    let second = t.sub("second");
    get(tracker, &second, "film.bin");
    assert_eq!(fs::read(second.join("film.bin")).unwrap(), data);
    let status = run(peer_cmd(tracker, &dir).args(["status", "--json"]));
    let status: serde_json::Value = serde_json::from_str(stdout(&status).trim()).unwrap();
    assert_eq!(status["files"][0]["name"], "film.bin", "{status}");
    assert_eq!(status["files"][0]["size"], 300_000, "{status}");

    // The user edits the file: the daemon withdraws it and never serves the new bytes under
    // the old manifest.
    fs::OpenOptions::new()
        .append(true)
        .open(&original)
        .unwrap()
        .write_all(b"edited")
        .unwrap();
    wait_until("the tracker stops listing the changed file", || {
        listed(tracker, &probe, "film.bin").is_empty()
    });
    let mut raw = Raw::connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), serving_again).unwrap();
    match raw.handshake(PeerId::random(), "film.bin", id, None) {
        Err(Frame::Error { code, message }) => {
            assert_eq!(code, ErrorCode::FileNotFound, "{message}")
        }
        Err(other) => panic!("unexpected answer {other:?}"),
        Ok(_) => panic!("the changed file is still served"),
    }
    assert!(daemon.terminate().success());
    // Nor after a restart.
    let (mut daemon, serving_third) = start_daemon(tracker, &dir);
    std::thread::sleep(Duration::from_secs(2));
    assert!(listed(tracker, &probe, "film.bin").is_empty());
    let mut raw = Raw::connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), serving_third).unwrap();
    assert!(
        raw.handshake(PeerId::random(), "film.bin", id, None)
            .is_err(),
        "served after a restart"
    );
    assert!(daemon.terminate().success());
    let _ = serving;
}

#[test]
fn chunk_sizes_are_chosen_or_grown_and_checked() {
    let t = TempDir::new("in-place-chunks");
    let (_tracker, tracker) = start_tracker();
    let (dir, elsewhere) = (t.sub("dir"), t.sub("elsewhere"));
    let data = random_file(&elsewhere.join("big-chunks.bin"), 100_000, 32);

    let bad = run(peer_cmd(tracker, &dir)
        .args(["share", "--chunk-size", "3000"])
        .arg(elsewhere.join("big-chunks.bin")));
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("power of two between 1024 and 1048576"),
        "{}",
        stderr(&bad)
    );

    let mut seeder = Proc::spawn(
        "seeder",
        peer_cmd(tracker, &dir)
            .args(["share", "--chunk-size", "8192"])
            .arg(elsewhere.join("big-chunks.bin")),
    );
    seeder.wait_line("shared ");
    let query = run(peer_cmd(tracker, &dir).args(["query", "big-chunks.bin", "--json"]));
    let query: serde_json::Value = serde_json::from_str(stdout(&query).trim()).unwrap();
    assert_eq!(query["chunk_size"], 8192, "{query}");
    assert_eq!(query["chunks"], 13, "{query}");
    let leech = t.sub("leech");
    get(tracker, &leech, "big-chunks.bin");
    assert_eq!(fs::read(leech.join("big-chunks.bin")).unwrap(), data);
    assert!(seeder.terminate().success());

    // 9 GiB, sparse: 2048-byte chunks would be too many; refused before any hashing.
    let huge = elsewhere.join("huge.bin");
    fs::File::create(&huge).unwrap().set_len(9 << 30).unwrap();
    let out = run(peer_cmd(tracker, &dir)
        .args(["share", "--chunk-size", "2048"])
        .arg(&huge));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("at most 4194304") && stderr(&out).contains("larger --chunk-size"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn links_empty_directories_and_special_files_are_refused() {
    let t = TempDir::new("in-place-kinds");
    let (_tracker, tracker) = start_tracker();
    let (dir, elsewhere) = (t.sub("dir"), t.sub("elsewhere"));
    random_file(&elsewhere.join("real.bin"), 1000, 33);
    std::os::unix::fs::symlink(elsewhere.join("real.bin"), elsewhere.join("link.bin")).unwrap();
    fs::create_dir(elsewhere.join("folder")).unwrap();
    let fifo = elsewhere.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (path, want) in [
        (elsewhere.join("link.bin"), "a symbolic link"),
        (
            elsewhere.join("folder"),
            "an empty directory (a share needs at least one file)",
        ),
        (fifo, "not a regular file"),
        (elsewhere.join("missing.bin"), "No such file"),
    ] {
        let out = run(peer_cmd(tracker, &dir).arg("share").arg(&path));
        assert!(!out.status.success(), "{} was shared", path.display());
        assert!(
            stderr(&out).contains(want),
            "{}: {}",
            path.display(),
            stderr(&out)
        );
    }
    assert!(fs::read_dir(dir.join(".peer")).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".share")));
}
