//! `peer share DIR` and `peer get` of a directory, as a user types them with default flags:
//! a directory of 1,000 small files, nested folders and an empty file is shared in place and
//! comes back byte for byte by name, by its metainfo file and by its magnet link; a downloaded
//! directory is seeded in turn; a killed download resumes; directories holding links or FIFOs
//! and metainfo files with hostile paths are refused without writing anything outside --dir.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::{
    peer_cmd, random_file, recorded_chunks, run, start_daemon, start_seeder, start_tracker, stderr,
    stdout, summary, wait_until, Proc, TempDir,
};

/// Every file (with its bytes) and folder under `root`, by relative path: what `diff -r`
/// compares.
fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in fs::read_dir(at).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                assert!(meta.is_file(), "{} is not a regular file", path.display());
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn assert_same_tree(want: &Path, got: &Path) {
    let (w, g) = (tree(want), tree(got));
    assert_eq!(
        w.keys().collect::<Vec<_>>(),
        g.keys().collect::<Vec<_>>(),
        "{} and {} list other paths",
        want.display(),
        got.display()
    );
    for (path, bytes) in &w {
        assert!(g[path] == *bytes, "{path} differs");
    }
}

/// A directory `album` of 1,000 small files in nested folders, plus an empty file and an
/// empty folder.
fn album(at: &Path) -> PathBuf {
    let root = at.join("album");
    for i in 0..1000u64 {
        let folder = root
            .join(format!("disc{}", i % 7))
            .join(format!("side{}", i % 3));
        fs::create_dir_all(&folder).unwrap();
        random_file(
            &folder.join(format!("track{i}.bin")),
            (i as usize * 37) % 3000,
            i,
        );
    }
    fs::write(root.join("disc0/empty.txt"), b"").unwrap();
    fs::create_dir_all(root.join("disc3/empty-folder/inner")).unwrap();
    root
}

/// The value of the line of `out` starting with `prefix`.
fn line(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
        .trim()
        .to_owned()
}

fn get(tracker: std::net::SocketAddr, dir: &Path, what: &str) -> String {
    let out = run(peer_cmd(tracker, dir).args(["get", what]));
    assert!(out.status.success(), "get {what}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn a_directory_of_a_thousand_files_comes_back_whole_by_name_metainfo_and_magnet() {
    let t = TempDir::new("dirs");
    let (_tracker, tracker) = start_tracker();
    let src = album(t.path());
    let seed = t.sub("seed");
    let (mut first_seeder, _) = start_daemon(tracker, &seed);
    let shared = run(peer_cmd(tracker, &seed).arg("share").arg(&src));
    assert!(shared.status.success(), "share: {}", stderr(&shared));
    let out = stdout(&shared);
    let metainfo = line(&out, "metainfo: ");
    let magnet = line(&out, "magnet: ");
    assert!(metainfo.ends_with("album.p2p"), "{out}");
    // Shared in place: nothing of the album is copied into --dir.
    assert!(!seed.join("album").exists());

    let by_name = t.sub("by-name");
    get(tracker, &by_name, "album");
    assert_same_tree(&src, &by_name.join("album"));
    assert!(!by_name.join("album.part").exists());
    let by_file = t.sub("by-file");
    get(tracker, &by_file, &metainfo);
    assert_same_tree(&src, &by_file.join("album"));
    let by_magnet = t.sub("by-magnet");
    get(tracker, &by_magnet, &magnet);
    assert_same_tree(&src, &by_magnet.join("album"));

    // The downloaded copy is seeded by a daemon on its directory: with two seeders, and then
    // with only the downloaded one left.
    let (_second_seeder, _) = start_daemon(tracker, &by_name);
    let both = t.sub("from-both");
    get(tracker, &both, "album");
    assert_same_tree(&src, &both.join("album"));
    assert!(first_seeder.terminate().success());
    let from_copy = t.sub("from-copy");
    get(tracker, &from_copy, &magnet);
    assert_same_tree(&src, &from_copy.join("album"));
}

#[test]
fn a_killed_directory_download_resumes_from_its_verified_chunks() {
    let t = TempDir::new("dirs-resume");
    let (_tracker, tracker) = start_tracker();
    let src = t.join("big");
    fs::create_dir_all(src.join("inner")).unwrap();
    for i in 0..4u64 {
        random_file(&src.join(format!("inner/part{i}.bin")), 4 << 20, 40 + i);
    }
    fs::write(src.join("zero"), b"").unwrap();
    let _seeder = start_seeder(tracker, &t.sub("s"), &src, &["--upload-rate", "1500000"]);
    let leech = t.sub("leech");
    let mut getter = Proc::spawn("leecher", peer_cmd(tracker, &leech).args(["get", "big"]));
    wait_until("some chunks recorded", || {
        recorded_chunks(&leech, "big") >= 500
    });
    getter.kill();
    let recorded = recorded_chunks(&leech, "big");
    assert!(recorded < 8192, "finished before the kill");
    assert!(
        !leech.join("big").exists(),
        "a killed download left a complete-looking directory"
    );
    // `peer status` shows the stopped download file by file.
    let (done, total, have) = files_status(tracker, &leech, "big");
    assert_eq!(total, 5);
    assert!(done < 5, "{done} of 5 files done before the end");
    assert_eq!(have, u64::from(recorded) * 2048);
    let out = get(tracker, &leech, "big");
    let (fetched, _, resumed) = summary(&out, "big");
    assert!(
        resumed >= recorded,
        "resumed {resumed} < {recorded} recorded"
    );
    assert_eq!(fetched + resumed, 8192);
    assert_same_tree(&src, &leech.join("big"));
    assert_eq!(files_status(tracker, &leech, "big"), (5, 5, 16 << 20));
}

/// Files complete, files in all and bytes verified of directory `name` as `peer status --json`
/// shows it.
fn files_status(tracker: std::net::SocketAddr, dir: &Path, name: &str) -> (u64, u64, u64) {
    let out = run(peer_cmd(tracker, dir).args(["status", "--json"]));
    assert!(out.status.success(), "status: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    let entry = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {v}"));
    assert_eq!(entry["directory"], true);
    let have = entry["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["have"].as_u64().unwrap())
        .sum();
    (
        entry["files_done"].as_u64().unwrap(),
        entry["files_total"].as_u64().unwrap(),
        have,
    )
}

#[test]
fn directories_holding_links_or_fifos_are_refused_naming_the_path() {
    let t = TempDir::new("dirs-refused");
    let (_tracker, tracker) = start_tracker();
    let dir = t.sub("dir");
    let linked = t.join("linked");
    fs::create_dir_all(linked.join("sub")).unwrap();
    fs::write(linked.join("ok.txt"), b"fine").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", linked.join("sub/passwd")).unwrap();
    let out = run(peer_cmd(tracker, &dir).arg("share").arg(&linked));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("sub/passwd") && err.contains("symbolic link"),
        "{err}"
    );
    let piped = t.join("piped");
    fs::create_dir_all(&piped).unwrap();
    fs::write(piped.join("ok.txt"), b"fine").unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(piped.join("queue"))
        .status()
        .unwrap();
    assert!(made.success());
    let out = run(peer_cmd(tracker, &dir).arg("share").arg(&piped));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("queue") && err.contains("special file"),
        "{err}"
    );
    let names: Vec<_> = fs::read_dir(dir.join(".peer"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("share"))
        .collect();
    assert!(names.is_empty(), "recorded: {names:?}");
}

#[test]
fn metainfo_with_hostile_paths_is_refused_and_nothing_is_written_outside_the_directory() {
    let t = TempDir::new("dirs-hostile");
    let (_tracker, tracker) = start_tracker();
    let dir = t.sub("dir");
    let id = format!("sha256:{}", "ab".repeat(32));
    let cases = [
        ("dotdot", "l2:..6:escapee", "'..'"),
        ("absolute", "l4:/etc6:passwde", "separator"),
        ("nested", "l3:a/b1:xe", "separator"),
    ];
    for (tag, path, why) in cases {
        let p2p = t.join(&format!("{tag}.p2p"));
        let info = format!(
            "d5:filesld6:lengthi5e4:path{path}ee4:name5:album12:piece lengthi2048e6:p2p id71:{id}e"
        );
        fs::write(&p2p, format!("d4:info{info}e")).unwrap();
        let out = run(peer_cmd(tracker, &dir).arg("get").arg(&p2p));
        assert!(!out.status.success(), "{tag}: accepted");
        let err = stderr(&out);
        assert!(err.contains(why), "{tag}: {err}");
    }
    let duplicate = t.join("duplicate.p2p");
    let info = format!(
        "d5:filesld6:lengthi5e4:pathl1:aeed6:lengthi5e4:pathl1:aeee4:name5:album12:piece lengthi2048e6:p2p id71:{id}e"
    );
    fs::write(&duplicate, format!("d4:info{info}e")).unwrap();
    let out = run(peer_cmd(tracker, &dir).arg("get").arg(&duplicate));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("twice"), "{}", stderr(&out));
    // Nothing beside the metainfo files appeared next to --dir, and nothing in it but state.
    let mut beside: Vec<String> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(
        beside,
        [
            "absolute.p2p",
            "dir",
            "dotdot.p2p",
            "duplicate.p2p",
            "nested.p2p"
        ]
    );
    let inside: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(inside, [".peer"]);
}
