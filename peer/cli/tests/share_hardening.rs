//! The share directory under abuse, as users and hostile peers meet it: a `.part` deleted or
//! replaced behind its resume record, two servers or two downloads of one name on a directory,
//! `kill -9`, a symbolic link to a private file, a file too large to share, the key's mode.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use common::*;
use peer_engine::manifest::{FileId, Manifest};
use peer_engine::wire::{ErrorCode, Frame, PeerId, VERSION};
use rexpect::reader::Options;
use rexpect::session::spawn_with_options;
use tracker_proto::FileName;

/// 4 MiB: 2048 chunks, about 4 s at the seeders' upload rate below.
const SIZE: usize = 4 << 20;
const CHUNKS: u32 = 2048;
const SLOW: &[&str] = &["--upload-rate", "1000000"];

/// What a peer's server answers first to a HANDSHAKE for `name` with id `id`.
fn first_answer(server: SocketAddr, name: &str, id: FileId) -> Frame {
    let mut stream = TcpStream::connect(server).expect("connect to the peer's server");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    let mut out = BytesMut::new();
    Frame::Handshake {
        version: VERSION,
        peer_id: PeerId::random(),
        file_id: id,
        name: FileName::new(name).expect("file name"),
        listen: None,
    }
    .encode(&mut out);
    stream.write_all(&out).expect("send HANDSHAKE");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(n) = Frame::check(&buf).expect("a valid frame") {
            return Frame::parse(Bytes::copy_from_slice(&buf[..n])).expect("a frame");
        }
        let got = stream.read(&mut chunk).expect("read the answer");
        assert!(got > 0, "the server closed without answering");
        buf.extend_from_slice(&chunk[..got]);
    }
}

fn assert_not_served(server: SocketAddr, name: &str, id: FileId, why: &str) {
    match first_answer(server, name, id) {
        Frame::Error { code, message } => {
            assert_eq!(code, ErrorCode::FileNotFound, "{why}: {message}");
            assert!(message.contains("not shared here"), "{why}: {message}");
        }
        other => panic!("{why}: served ({other:?})"),
    }
}

/// A `peer get NAME` into `dir` killed (-9) once it recorded some chunks.
fn interrupted_get(tracker: SocketAddr, dir: &Path, name: &str) -> u32 {
    let mut get = Proc::spawn("getter", peer_cmd(tracker, dir).args(["get", name]));
    wait_until("some chunks recorded", || recorded_chunks(dir, name) >= 100);
    get.kill();
    let recorded = recorded_chunks(dir, name);
    assert!(recorded < CHUNKS, "finished before the kill");
    recorded
}

#[test]
fn a_part_deleted_or_replaced_behind_its_record_is_not_served_and_its_download_starts_over() {
    let t = TempDir::new("hardening-part");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("big.bin"), SIZE, 21);
    let id = Manifest::from_data(&data, 2048).unwrap().id();
    let _seeder = start_seeder(tracker, &t.sub("seed"), &t.join("big.bin"), SLOW);

    // Deleted: the next `peer get` starts over (it used to recreate the .part as zeros, serve
    // the recorded chunks from it and fail every finish).
    let leech = t.sub("deleted");
    interrupted_get(tracker, &leech, "big.bin");
    fs::remove_file(leech.join("big.bin.part")).unwrap();
    let out = run(peer_cmd(tracker, &leech).args(["get", "big.bin"]));
    assert!(out.status.success(), "get failed:\n{}", stderr(&out));
    assert!(
        fs::read(leech.join("big.bin")).unwrap() == data,
        "file differs"
    );
    let (fetched, _, resumed) = summary(&stdout(&out), "big.bin");
    assert_eq!(
        (resumed, fetched),
        (0, CHUNKS),
        "chunks of the deleted .part were kept"
    );

    // Replaced by zeros of the right size: the daemon of the directory does not serve a single
    // "recorded" chunk of it, and the download keeps none of them.
    let leech = t.sub("replaced");
    interrupted_get(tracker, &leech, "big.bin");
    fs::remove_file(leech.join("big.bin.part")).unwrap();
    fs::write(leech.join("big.bin.part"), vec![0u8; SIZE]).unwrap();
    let (mut daemon, serving) = start_daemon(tracker, &leech);
    assert_not_served(serving, "big.bin", id, "a replaced .part");
    let out = run(peer_cmd(tracker, &leech).args(["get", "big.bin"]));
    assert!(out.status.success(), "get failed:\n{}", stderr(&out));
    assert!(
        fs::read(leech.join("big.bin")).unwrap() == data,
        "file differs"
    );
    let (_, _, resumed) = summary(&stdout(&out), "big.bin");
    assert_eq!(resumed, 0, "chunks of the replaced .part were kept");
    assert!(daemon.terminate().success());
}

#[test]
fn a_second_server_of_a_directory_is_refused_until_the_first_is_killed() {
    let t = TempDir::new("hardening-daemon");
    let (_tracker, tracker) = start_tracker();
    let dir = t.sub("dir");
    random_file(&dir.join("f.bin"), 10_000, 22);
    let (mut first, at) = start_daemon(tracker, &dir);

    let second = run(peer_cmd(tracker, &dir).arg("daemon"));
    let err = stderr(&second);
    assert!(!second.status.success(), "a second daemon started");
    assert!(
        err.contains("already serves") && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );
    // The console and a foreground `peer share` are servers too; `share` goes through the
    // daemon instead.
    let share = run(peer_cmd(tracker, &dir).arg("share").arg(dir.join("f.bin")));
    assert!(share.status.success(), "{}", stderr(&share));
    assert!(
        stdout(&share).contains(&format!("through the daemon at {at}")),
        "{}",
        stdout(&share)
    );

    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let status = stdout(&run(peer_cmd(tracker, &dir).arg("status")));
    assert!(status.contains("no daemon serves it"), "{status}");
    let (mut again, _) = start_daemon(tracker, &dir);
    assert!(again.terminate().success());
}

#[test]
fn a_second_download_of_a_name_is_refused_until_the_first_is_killed() {
    let t = TempDir::new("hardening-get");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("big.bin"), SIZE, 23);
    let _seeder = start_seeder(tracker, &t.sub("seed"), &t.join("big.bin"), SLOW);
    let leech = t.sub("leech");

    let mut first = Proc::spawn(
        "first get",
        peer_cmd(tracker, &leech).args(["get", "big.bin"]),
    );
    wait_until("the first get records chunks", || {
        recorded_chunks(&leech, "big.bin") > 0
    });
    let second = run(peer_cmd(tracker, &leech).args(["get", "big.bin"]));
    let err = stderr(&second);
    assert!(!second.status.success(), "a second get of big.bin ran");
    assert!(
        err.contains("big.bin is already being downloaded into")
            && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "the refusal waited for the first download"
    );

    // The console's 1 is refused the same way.
    let mut cmd = std::process::Command::new(peer_bin());
    cmd.arg("--tracker")
        .arg(tracker.to_string())
        .arg("--dir")
        .arg(&leech)
        .args(["--listen", "127.0.0.1:0", "--stun", "none"])
        .env_remove("RUST_LOG");
    let options = Options::new()
        .timeout_ms(Some(PATIENCE.as_millis() as u64))
        .strip_ansi_escape_codes(true);
    let mut console = spawn_with_options(cmd, options).expect("spawn the console");
    console.exp_string("peer> ").expect("the prompt");
    console.send_line("1 big.bin").expect("type 1");
    console
        .exp_string("big.bin is already being downloaded into")
        .expect("the console refuses a second download");
    console.exp_string("peer> ").expect("the prompt again");
    console.send_line("q").expect("type q");
    console.exp_eof().expect("the console ends");

    first.kill();
    let out = run(peer_cmd(tracker, &leech).args(["get", "big.bin"]));
    assert!(
        out.status.success(),
        "get after kill -9 failed:\n{}",
        stderr(&out)
    );
    assert!(
        fs::read(leech.join("big.bin")).unwrap() == data,
        "file differs"
    );
}

#[test]
fn a_link_to_a_file_outside_the_directory_is_never_served() {
    let t = TempDir::new("hardening-link");
    let (_tracker, tracker) = start_tracker();
    let secret = random_file(&t.join("secret.bin"), 5_000, 24);
    let secret_id = Manifest::from_data(&secret, 2048).unwrap().id();
    let dir = t.sub("dir");
    random_file(&dir.join("public.bin"), 5_000, 25);
    std::os::unix::fs::symlink(t.join("secret.bin"), dir.join("secret.bin")).unwrap();
    let (mut daemon, serving) = start_daemon(tracker, &dir);

    let probe = t.sub("probe");
    wait_until("the daemon announces public.bin", || {
        stdout(&run(peer_cmd(tracker, &probe).arg("list"))).contains("public.bin")
    });
    let listed = stdout(&run(peer_cmd(tracker, &probe).arg("list")));
    assert!(
        !listed.contains("secret.bin"),
        "the link was announced:\n{listed}"
    );
    assert_not_served(serving, "secret.bin", secret_id, "a link to a private file");

    let share = run(peer_cmd(tracker, &dir)
        .arg("share")
        .arg(dir.join("secret.bin")));
    assert!(!share.status.success(), "the link was shared");
    assert!(
        stderr(&share).contains("a symbolic link"),
        "{}",
        stderr(&share)
    );
    assert!(daemon.terminate().success());
}

#[test]
fn the_key_file_is_readable_by_its_owner_only() {
    let t = TempDir::new("hardening-key");
    let (_tracker, tracker) = start_tracker();
    let dir = t.sub("dir");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert!(run(peer_cmd(tracker, &dir).arg("status")).status.success());
    let key = dir.join(".peer/key");
    assert_eq!(mode(&key), 0o600);
    let saved = fs::read(&key).unwrap();

    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(run(peer_cmd(tracker, &dir).arg("status")).status.success());
    assert_eq!(
        mode(&key),
        0o600,
        "a key readable by others was not tightened"
    );
    assert_eq!(fs::read(&key).unwrap(), saved, "the key changed");
}
