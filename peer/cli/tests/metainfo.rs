//! Metainfo files and magnet links between real processes, the way a user passes them around:
//! `peer share` writes NAME.p2p and prints a magnet link, `peer show` prints the file, `peer get`
//! takes either (with no --tracker: the one they name), and every bad one fails clearly without
//! writing anything.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::*;

/// `peer` for `dir` as a user types it after receiving a link: no --tracker (the link or file
/// names it), serving on an ephemeral loopback port, no STUN on loopback.
fn user_cmd(dir: &Path) -> Command {
    let mut c = Command::new(peer_bin());
    c.arg("--dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--stun", "none"])
        .env_remove("PEER_TRACKER")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("info".into()),
        );
    c
}

/// Starts `peer share FILE` and returns it with the metainfo path and magnet link it printed.
fn share(tracker: SocketAddr, dir: &Path, file: &Path) -> (Proc, String, String) {
    let (mut seeder, _) = start_seeder(tracker, dir, file, &[]);
    let metainfo = seeder.wait_line("metainfo: ");
    let magnet = seeder.wait_line("magnet: ");
    (seeder, metainfo, magnet)
}

/// Names of the entries of `dir` but the peer's state directory.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".peer")
        .collect();
    names.sort();
    names
}

#[test]
fn share_writes_a_metainfo_and_a_magnet_link_that_get_downloads() {
    let t = TempDir::new("metainfo-get");
    let (_tracker, tracker) = start_tracker();
    let seed = t.sub("seed");
    let data = random_file(&t.join("movie.bin"), 300_000, 31);
    let (_seeder, metainfo, magnet) = share(tracker, &seed, &t.join("movie.bin"));

    let p2p = seed.join("movie.bin.p2p");
    assert_eq!(Path::new(&metainfo), p2p);
    let id = run(peer_cmd(tracker, &t.sub("probe")).args(["query", "movie.bin", "--json"]));
    let id: serde_json::Value = serde_json::from_str(stdout(&id).trim()).expect("query json");
    let id = id["id"].as_str().expect("id").to_owned();
    assert_eq!(
        magnet,
        format!("magnet:?xt=urn:p2p:{}&dn=movie.bin&tr=p2p://{tracker}", id)
    );
    // Any bencode decoder reads it: BEP 3's keys where a BitTorrent user looks for them.
    let bytes = fs::read(&p2p).expect("metainfo written");
    let text = String::from_utf8_lossy(&bytes);
    for key in [
        "8:announce",
        "13:announce-list",
        "4:infod",
        "6:lengthi300000e",
        "4:name9:movie.bin",
        "12:piece lengthi2048e",
    ] {
        assert!(text.contains(key), "{key} missing from {text}");
    }

    // `peer show`, as transmission-show prints a torrent; it needs no tracker or directory.
    let out = run(Command::new(peer_bin()).arg("show").arg(&p2p));
    assert!(out.status.success(), "show failed: {}", stderr(&out));
    let shown = stdout(&out);
    for line in [
        "Name: movie.bin".to_owned(),
        format!("Hash: {id}"),
        format!("Magnet: {magnet}"),
        "Piece Count: 147".to_owned(),
        "Piece Size: 2.0 KiB".to_owned(),
        format!("p2p://{tracker}"),
        "movie.bin (293.0 KiB)".to_owned(),
    ] {
        assert!(shown.contains(&line), "{line:?} missing from:\n{shown}");
    }
    let out = run(Command::new(peer_bin()).arg("show").arg("--json").arg(&p2p));
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("show json");
    assert_eq!(json["id"], id.as_str(), "{json}");
    assert_eq!(json["pieces"], 147, "{json}");
    assert_eq!(json["magnet"], magnet.as_str(), "{json}");
    assert_eq!(json["files"][0]["length"], 300_000, "{json}");

    // A magnet link shows what it carries.
    let out = run(Command::new(peer_bin()).args(["show", &magnet]));
    assert!(out.status.success(), "show MAGNET failed: {}", stderr(&out));
    let shown = stdout(&out);
    for line in [
        "Name: movie.bin".to_owned(),
        format!("Hash: {id}"),
        format!("p2p://{tracker}"),
    ] {
        assert!(shown.contains(&line), "{line:?} missing from:\n{shown}");
    }
    let out = run(Command::new(peer_bin()).args(["show", "--json", &magnet]));
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(json["trackers"][0][0], format!("p2p://{tracker}"), "{json}");

    // The metainfo beside the file is never shared: the tracker lists the one file.
    let list = run(peer_cmd(tracker, &t.sub("probe")).args(["list", "--json"]));
    let list: serde_json::Value = serde_json::from_str(stdout(&list).trim()).expect("list");
    assert_eq!(list["total"], 1, "{list}");

    // The magnet link alone, pasted by someone who has nothing else.
    let a = t.sub("a");
    let out = run(user_cmd(&a).args(["get", &magnet]));
    assert!(out.status.success(), "get MAGNET failed: {}", stderr(&out));
    assert!(fs::read(a.join("movie.bin")).unwrap() == data, "differs");
    let (fetched, _, _) = summary(&stdout(&out), "movie.bin");
    assert!(fetched >= 147, "{fetched} chunks");

    // The .p2p file, mailed to someone else.
    let mailed = t.sub("mail").join("movie.bin.p2p");
    fs::copy(&p2p, &mailed).expect("copy metainfo");
    let b = t.sub("b");
    let out = run(user_cmd(&b).arg("get").arg(&mailed).arg("--json"));
    assert!(
        out.status.success(),
        "get FILE.p2p failed: {}",
        stderr(&out)
    );
    let got = stdout(&out);
    let got: serde_json::Value =
        serde_json::from_str(got.lines().last().unwrap_or_default()).expect("get json");
    assert_eq!(got["name"], "movie.bin", "{got}");
    assert_eq!(got["id"], id.as_str(), "{got}");
    assert!(fs::read(b.join("movie.bin")).unwrap() == data, "differs");
    assert_eq!(entries(&b), ["movie.bin"]);
}

#[test]
fn bad_metainfo_files_and_magnet_links_fail_clearly_and_write_nothing() {
    let t = TempDir::new("metainfo-bad");
    let (_tracker, tracker) = start_tracker();
    random_file(&t.join("movie.bin"), 20_000, 32);
    let (_seeder, metainfo, magnet) = share(tracker, &t.sub("seed"), &t.join("movie.bin"));
    let good = fs::read(&metainfo).expect("metainfo");
    let id = magnet
        .split("sha256:")
        .nth(1)
        .and_then(|r| r.get(..64))
        .expect("hex id")
        .to_owned();
    let zeros = "0".repeat(64);
    let files = t.sub("files");
    let write = |name: &str, bytes: &[u8]| {
        let p = files.join(name);
        fs::write(&p, bytes).expect("write bad metainfo");
        p.to_str().expect("utf-8").to_owned()
    };
    let dir_info = |path: &str| {
        format!(
            "d8:announce{}:p2p://{tracker}4:infod5:filesld6:lengthi1e4:pathl{path}eee4:name9:movie.bin12:piece lengthi2048e6:p2p id71:sha256:{zeros}ee",
            format!("p2p://{tracker}").len()
        )
    };
    let other_id = String::from_utf8(good.clone())
        .expect("ascii metainfo")
        .replace(&id, &zeros);
    let cases: Vec<(String, &str)> = vec![
        (
            write("garbage.p2p", b"this is not bencode"),
            "is not a valid metainfo file",
        ),
        (write("cut.p2p", &good[..good.len() / 2]), "not bencode"),
        (write("list.p2p", b"li1ei2ee"), "expected a dictionary"),
        (
            write("dotdot.p2p", dir_info("2:..1:x").as_bytes()),
            "info.files[0].path",
        ),
        (
            write("absolute.p2p", dir_info("11:/etc/passwd").as_bytes()),
            "path separator",
        ),
        (
            write("empty-part.p2p", dir_info("0:").as_bytes()),
            "info.files[0].path",
        ),
        (
            write("other.p2p", other_id.as_bytes()),
            "another file under that name",
        ),
        (
            "/nonexistent/x.p2p".into(),
            "cannot read /nonexistent/x.p2p",
        ),
        (
            "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=movie.bin".into(),
            "BitTorrent info hash",
        ),
        ("magnet:?xt=urn:sha1:abc&dn=movie.bin".into(), "unknown xt"),
        ("magnet:?dn=movie.bin".into(), "no xt="),
        (format!("magnet:?xt=urn:p2p:sha256:{id}"), "no dn="),
        (
            format!("magnet:?xt=urn:p2p:sha256:{id}&dn=../movie.bin"),
            "dn",
        ),
        (
            format!("magnet:?xt=urn:p2p:sha256:{zeros}&dn=movie.bin&tr=p2p://{tracker}"),
            "another file under that name",
        ),
    ];
    let leech = t.sub("leech");
    for (given, says) in &cases {
        let out = run(peer_cmd(tracker, &leech).args(["get", given]));
        assert!(!out.status.success(), "get {given} succeeded");
        let err = stderr(&out);
        assert!(err.contains(says), "get {given}: {says:?} not in:\n{err}");
    }
    assert!(entries(&leech).is_empty(), "written: {:?}", entries(&leech));
    let out = run(Command::new(peer_bin())
        .arg("show")
        .arg(files.join("dotdot.p2p")));
    assert!(!out.status.success(), "show accepted a path with ..");
    assert!(
        stderr(&out).contains("is not a valid metainfo file"),
        "{}",
        stderr(&out)
    );
    let out = run(Command::new(peer_bin()).args(["show", "magnet:?xt=urn:sha1:abc"]));
    assert!(
        !out.status.success() && stderr(&out).contains("unknown xt"),
        "{}",
        stderr(&out)
    );
    // Nothing appeared beside the bad files or above the share directory either.
    assert!(!files.join("x").exists() && !t.join("x").exists());

    // One bad target among good ones fails alone; the good one is still downloaded.
    let out = run(peer_cmd(tracker, &leech).args(["get", "magnet:?xt=urn:foo", &magnet]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("1 of 2 downloads failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(entries(&leech), ["movie.bin"]);
}

#[test]
fn a_peer_handing_out_another_metainfo_is_refused_and_an_honest_one_used() {
    let t = TempDir::new("metainfo-liar");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("movie.bin"), 50_000, 33);
    let liar = liar::start(tracker, "movie.bin", data.clone(), liar::Lie::WrongMetainfo);
    let manifest = peer_engine::manifest::Manifest::from_data(&data, 2048).expect("manifest");
    let magnet = format!(
        "magnet:?xt=urn:p2p:{}&dn=movie.bin&tr=p2p://{tracker}",
        manifest.id()
    );

    // The liar is the only source: the download fails, naming the lie, before writing.
    let leech = t.sub("leech");
    let out = run(user_cmd(&leech).args(["get", &magnet]));
    assert!(!out.status.success(), "a lying metainfo was accepted");
    let err = stderr(&out);
    assert!(
        err.contains("no peer gave a metainfo matching") && err.contains("metainfo names"),
        "{err}"
    );
    assert!(liar.connections.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert!(entries(&leech).is_empty(), "written: {:?}", entries(&leech));

    // With an honest seeder in the swarm too, the same command gets the file.
    let (_seeder, _) = start_seeder(tracker, &t.sub("seed"), &t.join("movie.bin"), &[]);
    let out = run(user_cmd(&leech).args(["get", &magnet]));
    assert!(out.status.success(), "get failed: {}", stderr(&out));
    assert!(
        fs::read(leech.join("movie.bin")).unwrap() == data,
        "differs"
    );
}
