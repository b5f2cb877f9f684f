//! `peer get` shows its progress while it works, as a user sees it: bars redrawn in place in a
//! terminal (a pseudo-terminal here), progress lines on stderr when the output is a pipe; stdout
//! keeps its summary lines either way.

mod common;

use std::process::Command;

use common::*;
use rexpect::reader::Options;
use rexpect::session::spawn_with_options;

const MIB: usize = 1 << 20;

#[test]
fn get_draws_bars_in_a_terminal_and_prints_lines_into_a_pipe() {
    let t = TempDir::new("progress");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("big.bin"), 8 * MIB, 41);
    let small = random_file(&t.join("small.bin"), MIB, 42);
    // A slow seeder (1 MB/s per connection), so each download lasts seconds.
    let seed = t.sub("seed");
    let _a = start_seeder(
        tracker,
        &seed,
        &t.join("big.bin"),
        &["--upload-rate", "1000000"],
    );
    let _b = start_seeder(
        tracker,
        &t.sub("seed2"),
        &t.join("small.bin"),
        &["--upload-rate", "1000000"],
    );

    // Into a pipe: a line when each download starts and at tenths, on stderr.
    let piped = t.sub("piped");
    let out = run(peer_cmd(tracker, &piped).args(["get", "big.bin"]));
    assert!(out.status.success(), "get failed: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("started: big.bin  "),
        "no start line in:\n{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("big.bin  ") && l.contains("/4096 chunks  down ")),
        "no progress line in:\n{err}"
    );
    assert!(
        stdout(&out).contains("downloaded big.bin "),
        "{}",
        stdout(&out)
    );
    assert!(std::fs::read(piped.join("big.bin")).unwrap() == data);

    // In a terminal: a bar per file and one for the total, then the summaries.
    let term = t.sub("term");
    let mut cmd = Command::new(peer_bin());
    cmd.arg("--tracker")
        .arg(tracker.to_string())
        .arg("--dir")
        .arg(&term)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--stun",
            "none",
            "get",
            "big.bin",
            "small.bin",
        ])
        .env("TERM", "xterm")
        .env_remove("RUST_LOG");
    let options = Options::new()
        .timeout_ms(Some(PATIENCE.as_millis() as u64))
        .strip_ansi_escape_codes(true);
    let mut get = spawn_with_options(cmd, options).expect("spawn get in a pty");
    get.exp_regex(
        r"big\.bin +\[[=> ]+\] +[0-9]+% +[0-9.]+ [KM]i?B / 8\.00 MiB +[0-9.]+ [KM]iB/s  ETA [0-9]",
    )
    .expect("a bar with percent, bytes, rate and ETA");
    get.exp_regex(r"total \(2 files\) +\[[=> ]+\] +[0-9]+%")
        .expect("a total bar");
    get.exp_string("downloaded small.bin ")
        .expect("the summary of small.bin");
    get.exp_eof().expect("get ends");
    assert!(std::fs::read(term.join("big.bin")).unwrap() == data);
    assert!(std::fs::read(term.join("small.bin")).unwrap() == small);
}

/// Hashing what `peer share` shares takes about a second per GiB; a large share shows how far it
/// has got, in a pipe and in a terminal, instead of nothing until `shared`.
#[test]
fn share_shows_its_hashing_progress_in_a_pipe_and_in_a_terminal() {
    let t = TempDir::new("hash-progress");
    let (_tracker, tracker) = start_tracker();
    // 8 GiB that take no disk (sparse); 1 MiB chunks keep its manifest small.
    let big = t.join("big.bin");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(8 << 30))
        .expect("sparse file");

    let mut piped = Proc::spawn(
        "share (piped)",
        peer_cmd(tracker, &t.sub("piped"))
            .args(["share", "--chunk-size", "1048576"])
            .arg(&big),
    );
    piped.wait_line("shared big.bin ");
    piped.kill();
    let mut err = String::new();
    if let Some(mut e) = piped.child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
    }
    assert!(
        err.lines().any(|l| l.starts_with("hashing big.bin: ")
            && l.contains("% (")
            && l.contains(" of 8.00 GiB, ")
            && l.ends_with(" left)")),
        "no hashing line in:\n{err}"
    );

    let mut cmd = Command::new(peer_bin());
    cmd.arg("--tracker")
        .arg(tracker.to_string())
        .arg("--dir")
        .arg(t.sub("term"))
        .args(["--listen", "127.0.0.1:0", "--stun", "none"])
        .args(["share", "--chunk-size", "1048576"])
        .arg(&big)
        .env("TERM", "xterm")
        .env_remove("RUST_LOG");
    let options = Options::new()
        .timeout_ms(Some(PATIENCE.as_millis() as u64))
        .strip_ansi_escape_codes(true);
    let mut share = spawn_with_options(cmd, options).expect("spawn share in a pty");
    share
        .exp_regex(r"hashing big\.bin \[[=> ]+\] +[0-9]+% +[0-9.]+ [KMG]i?B / 8\.00 GiB")
        .expect("a hashing bar with percent and bytes");
    share.exp_string("shared big.bin ").expect("shared");
}
