//! The console as a person uses it: `peer` with no subcommand in a pseudo-terminal (rexpect),
//! menu numbers typed at the prompt, answers and background progress read off the screen, wrong
//! input included; then what the tracker lists once the console is gone.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;

use common::{peer_bin, peer_cmd, random_file, run, start_seeder, start_tracker, stdout, TempDir};
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

const PROMPT: &str = "peer> ";

/// Generous: a loaded 2-core machine, and an unreachable tracker costs the client's retries.
const TIMEOUT_MS: u64 = 120_000;

fn open_console(tracker: SocketAddr, dir: &Path) -> (PtySession, String) {
    let mut cmd = Command::new(peer_bin());
    cmd.arg("--tracker")
        .arg(tracker.to_string())
        .arg("--dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--stun", "none"])
        .env_remove("RUST_LOG");
    let options = Options::new()
        .timeout_ms(Some(TIMEOUT_MS))
        .strip_ansi_escape_codes(true);
    let mut console = spawn_with_options(cmd, options).expect("spawn the console in a pty");
    let (_, serving) = console
        .exp_regex(r"peer listening on [0-9.]+:[0-9]+")
        .expect("startup line");
    let serving = serving.trim_start_matches("peer listening on ").to_owned();
    console.exp_string("1  Download a file").expect("the menu");
    console.exp_string(PROMPT).expect("the prompt");
    (console, serving)
}

/// Types `line`, waits for `expect` and then for the next prompt.
fn choose(console: &mut PtySession, line: &str, expect: &str) {
    console.send_line(line).expect("type a line");
    console
        .exp_string(expect)
        .unwrap_or_else(|e| panic!("after typing {line:?}, expected {expect:?}: {e}"));
    console
        .exp_string(PROMPT)
        .unwrap_or_else(|e| panic!("no prompt after {line:?}: {e}"));
}

fn peers_of(tracker: SocketAddr, dir: &Path, name: &str) -> String {
    stdout(&run(
        peer_cmd(tracker, dir).args(["--stun", "none", "peers", name])
    ))
}

#[test]
fn console_menu_lists_queries_downloads_and_leaves() {
    let tmp = TempDir::new("console-menu");
    let (_tracker, tracker) = start_tracker();
    let (seed_dir, console_dir, probe_dir) =
        (tmp.sub("seed"), tmp.sub("console"), tmp.sub("probe"));
    let original = random_file(&tmp.join("movie.bin"), 300_000, 11);
    let (_seeder, _) = start_seeder(
        tracker,
        &seed_dir,
        &tmp.join("movie.bin"),
        &["--stun", "none"],
    );

    let (mut console, serving) = open_console(tracker, &console_dir);

    // Wrong input: a clear message and the prompt again.
    choose(&mut console, "9", "there is no choice 9: pick 1-7");
    choose(&mut console, "fetch", "unknown choice \"fetch\"");
    choose(&mut console, "6 extra", "6 (list) takes no argument");
    console.send_line("1").expect("type 1");
    console
        .exp_string("file name, .p2p file or magnet link: ")
        .expect("a prompt for what to download");
    choose(&mut console, "", "file name is empty");
    choose(&mut console, "7 a/b", "path separator");
    choose(
        &mut console,
        "7 nothere.bin",
        "does not know a file named nothere.bin",
    );

    // The tracker's view, through flags 6, 7 and 2.
    choose(&mut console, "6", "movie.bin");
    choose(
        &mut console,
        "7 movie.bin",
        "147 chunks of 2048 bytes, 1 seeder, 0 leechers",
    );
    choose(&mut console, "2 movie.bin", "seeder (147/147 chunks)");

    // A background download, its progress line above the prompt, then the tables.
    // The progress line is printed by a background task, so it may come before the answer.
    console.send_line("1 movie.bin").expect("type 1 movie.bin");
    let before = console
        .exp_string("downloading movie.bin (293.0 KiB, 147 chunks) from 1 peer")
        .expect("the download starts");
    if !before.contains("complete: movie.bin") {
        console
            .exp_string("complete: movie.bin")
            .expect("the completion line");
    }
    console
        .exp_string(PROMPT)
        .expect("the prompt after the download");
    choose(&mut console, "3", "147/147");
    choose(&mut console, "t", "Downloaded: 293.0 KiB");
    choose(&mut console, "s", &format!("listening on   {serving}"));
    choose(&mut console, "1 movie.bin", "movie.bin is already complete");
    assert_eq!(
        std::fs::read(console_dir.join("movie.bin")).expect("downloaded file"),
        original
    );
    assert!(
        peers_of(tracker, &probe_dir, "movie.bin").contains(&serving),
        "the console peer seeds"
    );

    // q sends flag 5: the tracker lists the seeder only.
    console.send_line("q").expect("type q");
    console
        .exp_string("left the swarm (flag 5 sent to the tracker)")
        .expect("the goodbye");
    console.exp_eof().expect("the console ends");
    let peers = peers_of(tracker, &probe_dir, "movie.bin");
    assert!(!peers.contains(&serving), "still listed after q:\n{peers}");
    assert!(peers.contains("1 seeder"), "{peers}");
}

#[test]
fn console_survives_an_unreachable_tracker_and_leaves_on_sigterm() {
    let tmp = TempDir::new("console-down");
    // A port nobody answers on: bound, then released.
    let silent = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port");
    let (mut console, _) = open_console(silent, &tmp.sub("console"));
    console.send_line("6").expect("type 6");
    console
        .exp_regex("error: [^\r\n]*tracker")
        .expect("a clear error about the tracker");
    console
        .exp_string(PROMPT)
        .expect("the prompt after the error");
    choose(&mut console, "h", "7  Query a file");

    let (_tracker, tracker) = start_tracker();
    let dir = tmp.sub("console2");
    let (mut console, serving) = open_console(tracker, &dir);
    let shared = tmp.join("notes.txt");
    random_file(&shared, 5_000, 12);
    console.send_line("4").expect("type 4");
    console
        .exp_string("path of the file to share: ")
        .expect("a prompt for the path");
    choose(
        &mut console,
        shared.to_str().expect("utf-8 path"),
        "shared notes.txt",
    );
    let probe = tmp.sub("probe");
    assert!(peers_of(tracker, &probe, "notes.txt").contains(&serving));

    console
        .process_mut()
        .signal(rexpect::process::Signal::SIGTERM)
        .expect("SIGTERM");
    console
        .exp_string("left the swarm (flag 5 sent to the tracker)")
        .expect("the goodbye on SIGTERM");
    console.exp_eof().expect("the console ends");
    assert!(
        !peers_of(tracker, &probe, "notes.txt").contains(&serving),
        "still listed after SIGTERM"
    );
}

#[test]
fn console_shows_live_progress_while_the_prompt_stays_usable() {
    let tmp = TempDir::new("console-progress");
    let (_tracker, tracker) = start_tracker();
    let (seed_dir, console_dir) = (tmp.sub("seed"), tmp.sub("console"));
    let original = random_file(&tmp.join("big.bin"), 8 << 20, 13);
    // A slow seeder (1 MiB/s), so the download lasts long enough to be watched.
    let (_seeder, _) = start_seeder(
        tracker,
        &seed_dir,
        &tmp.join("big.bin"),
        &["--stun", "none", "--upload-rate", "1048576"],
    );

    let (mut console, _) = open_console(tracker, &console_dir);
    console.send_line("1 big.bin").expect("type 1 big.bin");
    // The start line comes from a background task: before or after the answer.
    let before = console
        .exp_string("downloading big.bin (8.0 MiB, 4096 chunks) from 1 peer")
        .expect("the download starts");
    if !before.contains("started: big.bin") {
        console
            .exp_string("started: big.bin")
            .expect("a start line");
    }
    console
        .exp_string(PROMPT)
        .expect("the prompt during the download");
    // While it runs, the menu still answers; the table shows it downloading.
    choose(&mut console, "3", "Downloading");
    console
        .exp_regex(r"big\.bin  [0-9]+\.[0-9]%  [0-9]+/4096 chunks  down [0-9.]+ [KM]iB/s  up [^ ]+ [^ ]+  ETA [0-9]")
        .expect("a progress line with percent, chunks, rates and ETA");
    console
        .exp_string("complete: big.bin (8.0 MiB, 4096 chunks verified")
        .expect("the completion line");
    console.exp_string(PROMPT).expect("the prompt is redrawn");
    assert_eq!(
        std::fs::read(console_dir.join("big.bin")).expect("downloaded file"),
        original
    );
    console.send_line("q").expect("type q");
    console.exp_eof().expect("the console ends");
}

#[test]
fn console_shares_with_a_magnet_link_and_downloads_from_one() {
    let tmp = TempDir::new("console-magnet");
    let (_tracker, tracker) = start_tracker();
    let (seed_dir, leech_dir) = (tmp.sub("seed"), tmp.sub("leech"));
    let original = random_file(&tmp.join("notes.txt"), 30_000, 14);

    // Choice 4 writes the metainfo and prints the magnet link to pass on.
    let (mut seeder, _) = open_console(tracker, &seed_dir);
    seeder
        .send_line(&format!("4 {}", tmp.join("notes.txt").display()))
        .expect("type 4 PATH");
    seeder
        .exp_string("shared notes.txt")
        .expect("the share answer");
    let metainfo = seed_dir.join("notes.txt.p2p");
    seeder
        .exp_string(&format!("metainfo: {}", metainfo.display()))
        .expect("the metainfo path");
    let (_, magnet) = seeder
        .exp_regex(r"magnet:\?xt=urn:p2p:sha256:[0-9a-f]{64}&dn=notes\.txt&tr=p2p://[0-9.]+:[0-9]+")
        .expect("the magnet link");
    seeder.exp_string(PROMPT).expect("the prompt");
    assert!(metainfo.is_file());

    // Choice 1 takes the link as it was pasted; a BitTorrent link is refused clearly.
    let (mut leecher, _) = open_console(tracker, &leech_dir);
    choose(
        &mut leecher,
        "1 magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=notes.txt",
        "a BitTorrent info hash",
    );
    leecher
        .send_line(&format!("1 {magnet}"))
        .expect("type 1 MAGNET");
    let before = leecher
        .exp_string("downloading notes.txt")
        .expect("the download starts");
    if !before.contains("complete: notes.txt") {
        leecher
            .exp_string("complete: notes.txt")
            .expect("the completion line");
    }
    leecher.exp_string(PROMPT).expect("the prompt");
    assert_eq!(
        std::fs::read(leech_dir.join("notes.txt")).expect("downloaded file"),
        original
    );
    // And the metainfo file, by its path.
    choose(
        &mut leecher,
        &format!("1 {}", metainfo.display()),
        "notes.txt is already complete",
    );
    for console in [&mut leecher, &mut seeder] {
        console.send_line("q").expect("type q");
        console.exp_eof().expect("the console ends");
    }
}

#[test]
fn console_shares_a_directory_and_shows_its_progress_file_by_file() {
    let tmp = TempDir::new("console-dir");
    let (_tracker, tracker) = start_tracker();
    let (seed_dir, leech_dir) = (tmp.sub("seed"), tmp.sub("leech"));
    let album = tmp.join("album");
    std::fs::create_dir_all(album.join("cd2")).expect("folders");
    let one = random_file(&album.join("one.bin"), 5_000, 21);
    let two = random_file(&album.join("cd2/two.bin"), 7_000, 22);
    std::fs::write(album.join("cd2/empty"), b"").expect("empty file");

    let (mut seeder, _) = open_console(tracker, &seed_dir);
    choose(
        &mut seeder,
        &format!("4 {}", album.display()),
        "shared album",
    );
    let (mut leecher, _) = open_console(tracker, &leech_dir);
    leecher.send_line("1 album").expect("type 1 album");
    let before = leecher
        .exp_string("downloading album")
        .expect("the download starts");
    if !before.contains("complete: album") {
        leecher
            .exp_string("complete: album")
            .expect("the completion line");
    }
    leecher.exp_string(PROMPT).expect("the prompt");
    choose(&mut leecher, "3", "album/: 3/3 files complete");
    assert_eq!(std::fs::read(leech_dir.join("album/one.bin")).unwrap(), one);
    assert_eq!(
        std::fs::read(leech_dir.join("album/cd2/two.bin")).unwrap(),
        two
    );
    assert!(leech_dir.join("album/cd2/empty").is_file());
    for console in [&mut leecher, &mut seeder] {
        console.send_line("q").expect("type q");
        console.exp_eof().expect("the console ends");
    }
}
