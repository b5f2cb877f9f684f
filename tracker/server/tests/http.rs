//! The HTTP front end of the real `tracker` binary (`--http`), over real sockets: seed 000's
//! API, the same swarms as UDP in both directions, the same trust rules, and bad input that
//! always gets a 4xx with the JSON error body.

mod common;

use std::net::SocketAddr;

use common::http::{get, post, request};
use common::{ask, udp, TrackerProcess};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

async fn register(http: SocketAddr, peer_id: &str, port: u16) -> String {
    let answer = post(
        http,
        "/api/peers/register",
        None,
        &json!({ "peer_id": peer_id, "port": port, "hostname": "test-host" }),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["ip"], "127.0.0.1");
    assert_eq!(body["port"], port);
    assert_eq!(body["next_heartbeat_in"], 30);
    body["session_token"].as_str().expect("a token").to_string()
}

/// A file's chunk hashes (seed 000's `chunks`) and its id, computed from real bytes.
fn describe(bytes: &[u8], chunk: usize) -> (Vec<Value>, String) {
    let mut manifest = Vec::new();
    let chunks = bytes
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let hash = Sha256::digest(c);
            manifest.extend_from_slice(&hash);
            json!({ "index": i, "hash": format!("sha256:{}", hex::encode(hash)), "size": c.len() })
        })
        .collect();
    (
        chunks,
        format!("sha256:{}", hex::encode(Sha256::digest(&manifest))),
    )
}

fn id(byte: u8) -> String {
    format!("sha256:{}", hex::encode([byte; 32]))
}

#[tokio::test]
async fn a_file_shared_over_udp_is_listed_over_http() {
    let (tracker, http) = TrackerProcess::start_http(&[]);
    let seeder = udp("127.0.0.1").await;
    let share = format!(
        "REQUEST 4 movie.mkv 3 0.0.0.0:7001 size=5000 id={} key={}",
        id(0x11),
        "aa".repeat(16)
    );
    assert_eq!(ask(&seeder, tracker.addr, &share).await, "RESPONSE 4 OK");
    let leecher = udp("127.0.0.1").await;
    // With its counters: the figures of protocol.txt 1.2 are listed over HTTP too.
    let report = "REQUEST 3 movie.mkv 0,2 127.0.0.1:7002 up=10 down=4096";
    assert_eq!(ask(&leecher, tracker.addr, report).await, "RESPONSE 3 OK");
    let other = format!(
        "REQUEST 4 notes.txt 1 0.0.0.0:7001 size=10 id={} key={}",
        id(0x22),
        "aa".repeat(16)
    );
    assert_eq!(ask(&seeder, tracker.addr, &other).await, "RESPONSE 4 OK");

    let files = get(http, "/api/files").await;
    assert_eq!(files.status, 200);
    assert_eq!(files.header("content-type"), Some("application/json"));
    let body = files.json();
    assert_eq!(body["total_files"], 2);
    assert_eq!(body["next_offset"], Value::Null);
    assert_eq!(
        body["files"][0],
        json!({ "hash": id(0x11), "name": "movie.mkv", "size": 5000, "chunk_size": 2048,
                "chunk_count": 3, "seeders": 1, "leechers": 1, "completed": 0,
                "bytes_up": 10, "bytes_down": 4096 })
    );
    assert_eq!(body["files"][1]["name"], "notes.txt");

    let matched = get(http, "/api/files?match=*.mkv").await.json();
    assert_eq!(matched["files"].as_array().unwrap().len(), 1);
    assert_eq!(matched["files"][0]["name"], "movie.mkv");
    let none = get(http, "/api/files?match=*.iso").await.json();
    assert_eq!(none["files"], json!([]));
    // The same filter over UDP (flag 6, match=).
    let listing = ask(&leecher, tracker.addr, "REQUEST 6 match=no?es.*").await;
    assert_eq!(
        listing,
        "RESPONSE 6 files=2\nnotes.txt size=10 chunks=1 seeders=1 leechers=0 completed=0 up=0 down=0"
    );

    let peers = get(http, &format!("/api/files/{}/peers", id(0x11))).await;
    assert_eq!(peers.status, 200, "{}", peers.text());
    let body = peers.json();
    assert_eq!(body["file_name"], "movie.mkv");
    assert_eq!(body["file_size"], 5000);
    assert_eq!(body["chunk_count"], 3);
    assert_eq!(
        body["peers"],
        json!([
            { "peer_id": "127.0.0.1:7001", "ip": "127.0.0.1", "port": 7001, "is_seeder": true,
              "have": 3, "chunk_ranges": "0-2", "chunks_available": [0, 1, 2] },
            { "peer_id": "127.0.0.1:7002", "ip": "127.0.0.1", "port": 7002, "is_seeder": false,
              "have": 2, "chunk_ranges": "0,2", "chunks_available": [0, 2] },
        ])
    );
    let missing = get(http, &format!("/api/files/{}/peers", id(0x33))).await;
    assert_eq!((missing.status, missing.error_code()), (404, 1002));
}

#[tokio::test]
async fn a_file_announced_over_http_is_listed_over_udp() {
    let (tracker, http) = TrackerProcess::start_http(&[]);
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (chunks, file_id) = describe(&bytes, 2048);
    let token = register(http, "seeder-1", 7101).await;
    let heartbeat = post(
        http,
        "/api/peers/heartbeat",
        Some(&token),
        &json!({ "peer_id": "seeder-1" }),
    )
    .await;
    assert_eq!(
        heartbeat.json(),
        json!({ "success": true, "next_heartbeat_in": 30, "files": 0 })
    );
    let announce = json!({ "peer_id": "seeder-1", "file": {
        "name": "data.bin", "size": 5000, "hash": file_id, "chunk_size": 2048, "chunks": chunks } });
    let answer = post(http, "/api/files/announce", Some(&token), &announce).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json(),
        json!({ "success": true, "file_id": file_id })
    );

    let socket = udp("127.0.0.1").await;
    let listing = ask(&socket, tracker.addr, "REQUEST 1 data.bin").await;
    let mut lines = listing.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with(&format!(
            "RESPONSE 1 data.bin size=5000 chunks=3 chunk=2048 id={file_id} seeders=1 leechers=0"
        )),
        "{header}"
    );
    assert_eq!(lines.collect::<Vec<_>>(), ["127.0.0.1:7101 seeder"]);

    // A second HTTP peer reports chunks (flag 3); UDP sees its ranges.
    let leecher = register(http, "leecher-1", 7102).await;
    let report = post(
        http,
        &format!("/api/files/{file_id}/chunks"),
        Some(&leecher),
        &json!({ "peer_id": "leecher-1", "chunks": [1] }),
    )
    .await;
    assert_eq!(report.json(), json!({ "success": true }));
    let listing = ask(&socket, tracker.addr, "REQUEST 1 data.bin").await;
    assert!(
        listing.ends_with("127.0.0.1:7101 seeder\n127.0.0.1:7102 1"),
        "{listing}"
    );
    let beat = post(
        http,
        "/api/peers/heartbeat",
        Some(&leecher),
        &json!({ "peer_id": "leecher-1", "files_sharing": [file_id] }),
    )
    .await;
    assert_eq!(beat.json()["files"], 1);

    // The rows are keyed by the session: a keyless UDP announcement of that address is refused.
    let hijack = ask(&socket, tracker.addr, "REQUEST 5 127.0.0.1:7102").await;
    assert!(hijack.starts_with("ERROR 1201 FORBIDDEN"), "{hijack}");

    // Exit over HTTP: UDP no longer lists the peer.
    let exit = post(
        http,
        "/api/peers/exit",
        Some(&leecher),
        &json!({ "peer_id": "leecher-1", "file_hash": file_id }),
    )
    .await;
    assert_eq!(exit.json(), json!({ "success": true }));
    let listing = ask(&socket, tracker.addr, "REQUEST 1 data.bin").await;
    assert!(
        listing.ends_with("leechers=0 interval=30 min_interval=5\n127.0.0.1:7101 seeder"),
        "{listing}"
    );
    let beat = post(
        http,
        "/api/peers/heartbeat",
        Some(&leecher),
        &json!({ "peer_id": "leecher-1", "files_sharing": [file_id] }),
    )
    .await;
    assert_eq!((beat.status, beat.error_code()), (404, 1001));

    let stats = post(
        http,
        "/api/stats",
        Some(&token),
        &json!({ "peer_id": "seeder-1", "source": 100, "p2p": 4900, "conns": 2, "failConns": 1 }),
    )
    .await;
    assert_eq!(stats.json(), json!({ "success": true }));
}

#[tokio::test]
async fn sessions_are_bound_to_their_peer_and_address() {
    let (_tracker, http) = TrackerProcess::start_http(&[]);
    // An address that is not the connection's IP is refused, as over UDP (§1.7).
    let foreign = post(
        http,
        "/api/peers/register",
        None,
        &json!({ "peer_id": "p", "ip": "10.9.8.7", "port": 7000 }),
    )
    .await;
    assert_eq!((foreign.status, foreign.error_code()), (403, 1201));
    let token = register(http, "p", 7000).await;
    let announce =
        |peer: &str| json!({ "peer_id": peer, "file": { "name": "f", "size": 1, "hash": id(1) } });
    let no_token = post(http, "/api/files/announce", None, &announce("p")).await;
    assert_eq!((no_token.status, no_token.error_code()), (401, 1102));
    let other_peer = post(http, "/api/files/announce", Some(&token), &announce("q")).await;
    assert_eq!((other_peer.status, other_peer.error_code()), (403, 1201));
    let mut forged = token.clone();
    let last = if forged.ends_with('0') { "1" } else { "0" };
    forged.replace_range(forged.len() - 1.., last);
    let forged = post(http, "/api/files/announce", Some(&forged), &announce("p")).await;
    assert_eq!((forged.status, forged.error_code()), (403, 1201));
    let garbage = post(
        http,
        "/api/peers/heartbeat",
        Some("not-hex"),
        &json!({ "peer_id": "p" }),
    )
    .await;
    assert_eq!((garbage.status, garbage.error_code()), (403, 1201));
    let ok = post(http, "/api/files/announce", Some(&token), &announce("p")).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_never_a_5xx() {
    let (mut tracker, http) = TrackerProcess::start_http(&[]);
    let token = register(http, "p", 7000).await;
    let t = Some(token.as_str());
    let file = |f: Value| json!({ "peer_id": "p", "file": f });
    let chunks_path = format!("/api/files/{}/chunks", id(9));
    let stars = format!("/api/files?match={}", "*".repeat(65));
    let cases: Vec<(&str, &str, Vec<u8>, u16, u64)> = vec![
        (
            "POST",
            "/api/files/announce",
            b"{not json".to_vec(),
            400,
            1100,
        ),
        ("POST", "/api/files/announce", b"".to_vec(), 400, 1100),
        (
            "POST",
            "/api/files/announce",
            file(json!({ "name": "f", "size": "big", "hash": id(1) }))
                .to_string()
                .into_bytes(),
            400,
            1110,
        ),
        (
            "POST",
            "/api/files/announce",
            file(json!({ "name": "../etc/passwd", "size": 1, "hash": id(1) }))
                .to_string()
                .into_bytes(),
            400,
            1105,
        ),
        (
            "POST",
            "/api/files/announce",
            file(json!({ "name": "f", "size": 1, "hash": "md5:00" }))
                .to_string()
                .into_bytes(),
            400,
            1110,
        ),
        (
            "POST",
            "/api/files/announce",
            file(json!({ "name": "f", "size": 1, "hash": id(1), "extra": 1 }))
                .to_string()
                .into_bytes(),
            400,
            1110,
        ),
        (
            "POST",
            "/api/files/announce",
            file(json!({ "name": "f", "size": 1, "hash": id(1), "chunk_size": 0 }))
                .to_string()
                .into_bytes(),
            400,
            1110,
        ),
        (
            "POST",
            "/api/files/announce",
            file(json!({ "name": "f", "size": 3, "hash": id(1),
            "chunks": [{ "index": 0, "hash": id(2), "size": 3 }] }))
            .to_string()
            .into_bytes(),
            409,
            1004,
        ),
        (
            "POST",
            "/api/files/announce",
            vec![b' '; 2 << 20],
            413,
            1108,
        ),
        (
            "POST",
            "/api/peers/register",
            br#"{"peer_id":"p","port":0}"#.to_vec(),
            400,
            1106,
        ),
        (
            "POST",
            "/api/peers/register",
            br#"{"peer_id":"p","port":70000}"#.to_vec(),
            400,
            1110,
        ),
        (
            "POST",
            "/api/peers/register",
            br#"{"peer_id":"a b","port":1}"#.to_vec(),
            400,
            1110,
        ),
        (
            "POST",
            "/api/peers/register",
            br#"{"peer_id":"p","port":1,"ip":"224.0.0.1"}"#.to_vec(),
            400,
            1106,
        ),
        (
            "POST",
            "/api/peers/register",
            br#"[1,2,3]"#.to_vec(),
            400,
            1110,
        ),
        ("GET", "/api/files?match=", Vec::new(), 400, 1110),
        ("GET", &stars, Vec::new(), 400, 1110),
        ("GET", "/api/files?match=a%2Fb", Vec::new(), 400, 1110),
        ("GET", "/api/files?offset=-1", Vec::new(), 400, 1110),
        ("GET", "/api/files?offset=999999999", Vec::new(), 400, 1104),
        ("GET", "/api/files?color=red", Vec::new(), 400, 1110),
        ("GET", "/api/files/not-a-hash/peers", Vec::new(), 400, 1110),
        (
            "POST",
            &chunks_path,
            br#"{"peer_id":"p","chunks":[]}"#.to_vec(),
            400,
            1107,
        ),
        (
            "POST",
            &chunks_path,
            br#"{"peer_id":"p","chunks":[5000000]}"#.to_vec(),
            400,
            1107,
        ),
        (
            "POST",
            &chunks_path,
            br#"{"peer_id":"p","chunks":[1]}"#.to_vec(),
            404,
            1002,
        ),
        ("GET", "/etc/passwd", Vec::new(), 404, 1100),
        ("GET", "/api/files/../../x", Vec::new(), 404, 1100),
        ("DELETE", "/api/files", Vec::new(), 405, 1100),
        ("GET", "/api/peers/register", Vec::new(), 405, 1100),
    ];
    for (method, path, body, status, code) in cases {
        let answer = request(http, method, path, t, &body).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (status, code),
            "{method} {path}: {}",
            answer.text()
        );
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
    }
    // A pattern with many wildcards against a long name is answered at once.
    let long = "a".repeat(250);
    let share = post(
        http,
        "/api/files/announce",
        t,
        &file(json!({ "name": long, "size": 1, "hash": id(3) })),
    )
    .await;
    assert_eq!(share.status, 200, "{}", share.text());
    let slow = get(http, &format!("/api/files?match={}b", "a*".repeat(30))).await;
    assert_eq!(slow.json()["files"], json!([]));
    assert!(tracker.alive(), "the tracker survived the bad input");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_served() {
    let (_tracker, http) = TrackerProcess::start_http(&[]);
    let answer = get(http, "/api/openapi.json").await;
    assert_eq!(answer.status, 200);
    let doc = answer.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 9, "{paths:?}");
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{file_hash}", &id(7));
            let answer = request(http, &method.to_uppercase(), &concrete, None, b"{}").await;
            // Served: never the router's "no such route" or "wrong method".
            assert!(
                answer.status != 405 && !(answer.status == 404 && answer.error_code() == 1100),
                "{method} {path} is documented but not served: {}",
                answer.text()
            );
            assert!(answer.status < 500, "{method} {path}: {}", answer.text());
        }
    }
}

/// The value of one series in a Prometheus text page.
fn series(page: &str, name_and_labels: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {name_and_labels} in\n{page}"))
        .parse()
        .expect("an integer value")
}

#[tokio::test]
async fn metrics_count_both_front_ends_and_the_swarms() {
    let (tracker, http) = TrackerProcess::start_http(&[]);
    let socket = udp("127.0.0.1").await;
    let share = format!("REQUEST 4 a.bin 2 0.0.0.0:7201 size=4000 id={}", id(0x44));
    assert_eq!(ask(&socket, tracker.addr, &share).await, "RESPONSE 4 OK");
    assert!(ask(&socket, tracker.addr, "REQUEST 7 nosuch")
        .await
        .starts_with("ERROR 1002"));
    assert!(ask(&socket, tracker.addr, "HELLO")
        .await
        .starts_with("ERROR 1100"));
    let report = "REQUEST 3 a.bin 0 127.0.0.1:7202";
    assert_eq!(ask(&socket, tracker.addr, report).await, "RESPONSE 3 OK");
    let token = register(http, "p", 7203).await;
    let announce =
        json!({ "peer_id": "p", "file": { "name": "b.bin", "size": 10, "hash": id(0x55) } });
    assert_eq!(
        post(http, "/api/files/announce", Some(&token), &announce)
            .await
            .status,
        200
    );
    let stats = json!({ "peer_id": "p", "source": 100, "p2p": 4900, "conns": 3, "failConns": 1 });
    assert_eq!(
        post(http, "/api/stats", Some(&token), &stats).await.status,
        200
    );
    assert_eq!(get(http, "/nope").await.status, 404);

    let answer = get(http, "/metrics").await;
    assert_eq!(answer.status, 200);
    assert!(answer
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let page = answer.text();
    assert_eq!(series(&page, "tracker_udp_requests_total{flag=\"4\"}"), 1);
    assert_eq!(series(&page, "tracker_udp_requests_total{flag=\"3\"}"), 1);
    assert_eq!(
        series(&page, "tracker_udp_requests_total{flag=\"malformed\"}"),
        1
    );
    assert_eq!(
        series(
            &page,
            "tracker_errors_total{front=\"udp\",code=\"1002\",name=\"FILE_NOT_FOUND\"}"
        ),
        1
    );
    assert_eq!(
        series(
            &page,
            "tracker_errors_total{front=\"udp\",code=\"1100\",name=\"BAD_REQUEST\"}"
        ),
        1
    );
    assert_eq!(
        series(
            &page,
            "tracker_errors_total{front=\"http\",code=\"1100\",name=\"BAD_REQUEST\"}"
        ),
        1
    );
    assert_eq!(
        series(
            &page,
            "tracker_http_requests_total{route=\"/api/peers/register\",status=\"200\"}"
        ),
        1
    );
    assert_eq!(
        series(
            &page,
            "tracker_http_requests_total{route=\"unmatched\",status=\"404\"}"
        ),
        1
    );
    assert_eq!(series(&page, "tracker_swarms"), 2);
    assert_eq!(series(&page, "tracker_seeders"), 2);
    assert_eq!(series(&page, "tracker_leechers"), 1);
    assert_eq!(series(&page, "tracker_swarm_peers"), 3);
    assert_eq!(series(&page, "tracker_tracked_bytes"), 4010);
    assert_eq!(
        series(&page, "tracker_reported_bytes_total{from=\"p2p\"}"),
        4900
    );
    assert_eq!(
        series(&page, "tracker_reported_bytes_total{from=\"source\"}"),
        100
    );
    assert_eq!(
        series(
            &page,
            "tracker_reported_connections_total{outcome=\"failed\"}"
        ),
        1
    );
    assert_eq!(
        series(&page, "tracker_withheld_answers_total{reason=\"cookie\"}"),
        0
    );
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').expect("name value");
        assert!(value.parse::<u64>().is_ok(), "{line}");
    }

    // Answers withheld by the cookie rule (every source must prove its address here).
    let (strict, http) = TrackerProcess::start_http(&["--require-cookies"]);
    let padded = format!("REQUEST 6 pad={}", "x".repeat(40));
    assert!(ask(&socket, strict.addr, &padded)
        .await
        .starts_with("ERROR 1200 COOKIE_REQUIRED"));
    let page = get(http, "/metrics").await.text();
    assert_eq!(
        series(&page, "tracker_withheld_answers_total{reason=\"cookie\"}"),
        1
    );
}

#[tokio::test]
async fn files_restored_from_state_are_found_by_hash() {
    let dir = common::TempDir::new("http-state");
    let state = dir.file("state");
    let (mut first, _) = TrackerProcess::start_http(&["--state", &state]);
    let socket = udp("127.0.0.1").await;
    let share = format!("REQUEST 4 kept.iso 1 0.0.0.0:7301 size=100 id={}", id(0x66));
    assert_eq!(ask(&socket, first.addr, &share).await, "RESPONSE 4 OK");
    assert!(first.terminate(), "the tracker saved and stopped");
    let (_second, http) = TrackerProcess::start_http(&["--state", &state]);
    let peers = get(http, &format!("/api/files/{}/peers", id(0x66))).await;
    assert_eq!(peers.status, 200, "{}", peers.text());
    assert_eq!(peers.json()["peers"][0]["peer_id"], "127.0.0.1:7301");
}

/// A client that sends no request, or never finishes its headers, loses its connection (10 s
/// by default), so slow clients cannot hold the tracker's connection slots.
#[tokio::test]
async fn slow_clients_are_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_tracker, http) = TrackerProcess::start_http(&[]);
    let closed_within = |payload: &'static [u8]| async move {
        let mut stream = tokio::net::TcpStream::connect(http).await.expect("connect");
        stream.write_all(payload).await.expect("send");
        let mut buf = [0u8; 256];
        // Closed (0 bytes, or a reset), never answered with a request that was not made.
        let read = tokio::time::timeout(std::time::Duration::from_secs(60), stream.read(&mut buf))
            .await
            .expect("the tracker keeps a slow client's connection open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    };
    tokio::join!(
        closed_within(b""),
        closed_within(b"GET / HTTP/1.1\r\nHost: x\r\n")
    );
    // The tracker still answers others.
    assert_eq!(get(http, "/api/summary").await.status, 200);
}

/// One host may hold only its share (10 %) of the 1024 connection slots: past it, its requests
/// get 429 with 1202, and the slots come back when its connections close.
#[tokio::test]
async fn one_host_cannot_take_every_connection() {
    let (_tracker, http) = TrackerProcess::start_http(&[]);
    let mut held = Vec::new();
    for _ in 0..103 {
        held.push(tokio::net::TcpStream::connect(http).await.expect("connect"));
    }
    // Every held connection is accepted before the next one is refused.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        let answer = get(http, "/api/summary").await;
        if answer.status == 429 {
            assert_eq!(answer.error_code(), 1202);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never refused: {}",
            answer.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(held);
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while get(http, "/api/summary").await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "slots never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
