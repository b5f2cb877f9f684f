//! A raw-wire client for attacking a real peer: blocking sockets bound to a chosen loopback
//! source address (127/8 is all loopback, so 127.0.0.2 is "another host" to a server on
//! 127.0.0.1), frames written from the protocol's codec or byte by byte, and answers read with
//! a deadline, so a test can tell "closed at once" from "closed by a timeout" from "kept open".

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use peer_engine::manifest::FileId;
use peer_engine::wire::{ErrorCode, Frame, PeerId, VERSION};
use socket2::{Domain, Protocol, Socket, Type};
use tracker_proto::FileName;

/// How a read ended when no frame came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Nothing (or only part of a frame) arrived before the deadline.
    Quiet,
}

/// One connection of the attacker.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    pub opened: Instant,
}

impl Raw {
    /// Connects to `to` from `from` (an IP of ours; port chosen by the kernel).
    pub fn connect_from(from: IpAddr, to: SocketAddr) -> io::Result<Raw> {
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
        socket.bind(&SocketAddr::new(from, 0).into())?;
        socket.connect_timeout(&to.into(), Duration::from_secs(10))?;
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        Ok(Raw {
            stream,
            buf: BytesMut::new(),
            opened: Instant::now(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        self.stream.write_all(&out)
    }

    /// The next frame, or how the wait ended, within `limit`.
    pub fn read_frame(&mut self, limit: Duration) -> Result<Frame, End> {
        let deadline = Instant::now() + limit;
        loop {
            match Frame::check(&self.buf) {
                Ok(Some(n)) => {
                    let bytes: Bytes = self.buf.split_to(n).freeze();
                    return Ok(Frame::parse(bytes).expect("the server sends valid frames"));
                }
                Ok(None) => {}
                Err(e) => panic!("the server sent a bad frame header: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(End::Quiet);
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(End::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(End::Quiet)
                }
                Err(_) => return Err(End::Closed),
            }
        }
    }

    /// Reads frames until the server closes the connection or `limit` passes; returns the
    /// frames read and how it ended.
    pub fn drain(&mut self, limit: Duration) -> (Vec<Frame>, End) {
        let deadline = Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left) {
                Ok(f) => frames.push(f),
                Err(end) => return (frames, end),
            }
        }
    }

    /// Waits for the server to end the connection: the ERROR it sent last (if any), and how
    /// long after `since` the connection closed. Panics if it is still open after `limit`.
    pub fn refused(&mut self, limit: Duration) -> (Option<(ErrorCode, String)>, Duration) {
        let (frames, end) = self.drain(limit);
        assert_eq!(
            end,
            End::Closed,
            "the server kept the connection open for {limit:?}; it sent {frames:?}"
        );
        let error = frames.into_iter().rev().find_map(|f| match f {
            Frame::Error { code, message } => Some((code, message)),
            _ => None,
        });
        (error, self.opened.elapsed())
    }

    /// True when the server has closed the connection (reads nothing when it is open).
    pub fn is_closed(&mut self) -> bool {
        self.stream.set_nonblocking(true).expect("nonblocking");
        let mut chunk = [0u8; 4096];
        let closed = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        self.stream.set_nonblocking(false).expect("blocking");
        closed
    }

    /// Sends our HANDSHAKE for `name`/`id` and returns the server's answer: its HANDSHAKE
    /// (with its BITFIELD) or the frame it refused us with.
    pub fn handshake(
        &mut self,
        peer_id: PeerId,
        name: &str,
        id: FileId,
        listen: Option<SocketAddr>,
    ) -> Result<Greeting, Frame> {
        self.send(&hello(peer_id, name, id, listen))
            .expect("send handshake");
        let first = self
            .read_frame(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no answer to the handshake: {e:?}"));
        let Frame::Handshake { peer_id, .. } = first else {
            return Err(first);
        };
        match self.read_frame(Duration::from_secs(30)) {
            Ok(Frame::Bitfield(bits)) => Ok(Greeting { peer_id, bits }),
            other => panic!("expected the server's BITFIELD, got {other:?}"),
        }
    }

    /// Writes as much of `bytes` as the socket takes without waiting; returns how much, or the
    /// error once the server has closed (or reset) the connection.
    pub fn push(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.stream.set_nonblocking(true)?;
        let mut sent = 0;
        let result = loop {
            if sent == bytes.len() {
                break Ok(sent);
            }
            match self.stream.write(&bytes[sent..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(sent),
                Err(e) => break Err(e),
            }
        };
        self.stream.set_nonblocking(false)?;
        result
    }

    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// What a server says after our HANDSHAKE.
#[derive(Debug)]
pub struct Greeting {
    pub peer_id: PeerId,
    pub bits: Bytes,
}

/// Our HANDSHAKE frame.
pub fn hello(peer_id: PeerId, name: &str, id: FileId, listen: Option<SocketAddr>) -> Frame {
    Frame::Handshake {
        version: VERSION,
        peer_id,
        file_id: id,
        name: FileName::new(name).expect("valid name"),
        listen,
    }
}

/// The 5-byte header of a frame: LENGTH (type byte included) then TYPE.
pub fn header(len: u32, kind: u8) -> Vec<u8> {
    let mut h = len.to_be_bytes().to_vec();
    h.push(kind);
    h
}

/// Raises this process's open-file limit to at least `n` (up to the hard limit), so a test can
/// hold many connections; panics with the fix when the hard limit is lower.
pub fn allow_open_files(n: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files limit");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let soft: u64 = fields[3].parse().unwrap_or(u64::MAX);
    let hard: u64 = fields[4].parse().unwrap_or(u64::MAX);
    if soft >= n {
        return;
    }
    assert!(
        hard >= n,
        "this test holds {n} connections but the hard open-file limit is {hard} (raise it: ulimit -Hn)"
    );
    let status = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={hard}:{hard}"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(
        status.success(),
        "prlimit failed to raise the open-file limit"
    );
}
