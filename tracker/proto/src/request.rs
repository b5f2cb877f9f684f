//! `REQUEST <FLAG> ...` datagrams: the typed value and its pure parse/format.

use std::fmt;
use std::net::SocketAddr;

use crate::error::{hex_field, ParseError};
use crate::pattern::NamePattern;
use crate::token::{datagram_text, parse_u32, parse_u64, Line};
use crate::transfer::{AnnounceEvent, ConnStats, Transfer};
use crate::types::{
    is_unicast, parse_peer_addr, AddrError, ChunkRanges, Cookie, FileId, FileInfo, FileName,
    PeerKey, DEFAULT_CHUNK_SIZE,
};

/// Largest request datagram the tracker reads; anything longer is answered with `TOO_LONG`.
pub const MAX_REQUEST_BYTES: usize = 1400;

/// A request with its envelope fields, which any flag may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Echoed in the response so a client can match retries (`tid=`).
    pub tid: Option<u32>,
    /// The sender's identity (`key=`); moves rows on an address change, refreshes liveness.
    pub key: Option<PeerKey>,
    /// Proof of address ownership handed out by the tracker (`cookie=`).
    pub cookie: Option<Cookie>,
    /// `punch=keep`: this announcement must not make the sender's socket the one PUNCH notices
    /// go to. A one-shot command of a peer whose daemon listens for them sends it (§1.7).
    pub keep_punch_path: bool,
    /// `event=`, `up=`, `down=`, `left=`: what the sender did with the file it announces
    /// (flags 1 and 2 with an address, 3, 4 and 5 with a file; `event=stopped` alone on flag 5
    /// without one). Empty on every other request.
    pub transfer: Transfer,
    /// `conns=`, `failed=`: the sender's connection figures (flag 9 only).
    pub conn_stats: ConnStats,
    pub kind: RequestKind,
}

/// What is asked, one variant per flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// Flag 1: the file's description and peer list (page starting at `offset`). With
    /// `announce`, the sender also joins the swarm, served at that address (protocol.txt §1.2).
    Peers {
        file: FileName,
        announce: Option<SocketAddr>,
        offset: u32,
    },
    /// Flag 2: the same list again, to refresh one a downloader already has.
    Refresh {
        file: FileName,
        announce: Option<SocketAddr>,
        offset: u32,
    },
    /// Flag 3: the sender now holds these chunks of `file`, served at `announce`.
    Chunks {
        file: FileName,
        chunks: ChunkRanges,
        announce: SocketAddr,
    },
    /// Flag 4: the sender shares (seeds) a complete file.
    Share {
        info: FileInfo,
        announce: SocketAddr,
    },
    /// Flag 5: the sender leaves one file's swarm, or every swarm when `file` is `None`.
    Exit {
        file: Option<FileName>,
        announce: SocketAddr,
    },
    /// Flag 6: the file catalogue, page starting at `offset`; with `pattern` (`match=`) only
    /// the names it matches.
    ListFiles {
        offset: u32,
        pattern: Option<NamePattern>,
    },
    /// Flag 7: one file's description and swarm counts.
    Query { file: FileName },
    /// Flag 8: ask the tracker to send `PUNCH <file> <me>` to `target`'s latest UDP address.
    Punch {
        file: FileName,
        target: SocketAddr,
        me: SocketAddr,
    },
    /// Flag 9: keep every row of the sender alive (and move them if `announce` changed).
    Heartbeat { announce: SocketAddr },
    /// Flag 10: the TURN relay this tracker offers, with credentials (§5).
    RelayOffer,
}

impl RequestKind {
    pub fn flag(&self) -> u8 {
        match self {
            RequestKind::Peers { .. } => 1,
            RequestKind::Refresh { .. } => 2,
            RequestKind::Chunks { .. } => 3,
            RequestKind::Share { .. } => 4,
            RequestKind::Exit { .. } => 5,
            RequestKind::ListFiles { .. } => 6,
            RequestKind::Query { .. } => 7,
            RequestKind::Punch { .. } => 8,
            RequestKind::Heartbeat { .. } => 9,
            RequestKind::RelayOffer => 10,
        }
    }

    /// The serving address this request announces, for flags that create or change rows.
    pub fn announce(&self) -> Option<SocketAddr> {
        match self {
            RequestKind::Chunks { announce, .. }
            | RequestKind::Share { announce, .. }
            | RequestKind::Exit { announce, .. }
            | RequestKind::Heartbeat { announce } => Some(*announce),
            RequestKind::Peers { announce, .. } | RequestKind::Refresh { announce, .. } => {
                *announce
            }
            RequestKind::Punch { me, .. } => Some(*me),
            _ => None,
        }
    }

    /// Whether this request may carry a [`Transfer`]: it announces the sender in a swarm, or
    /// leaves every swarm (flag 5 without a file, where only `event=stopped` makes sense).
    pub fn reports_transfer(&self) -> bool {
        match self {
            RequestKind::Peers { announce, .. } | RequestKind::Refresh { announce, .. } => {
                announce.is_some()
            }
            RequestKind::Chunks { .. } | RequestKind::Share { .. } | RequestKind::Exit { .. } => {
                true
            }
            _ => false,
        }
    }
}

/// The rules between a request's flag and its `event=` (protocol.txt §1.2): `stopped` goes
/// with flag 5 only, flag 5 says nothing else, and flag 5 without a file has no file to count
/// bytes for.
fn check_transfer(kind: &RequestKind, transfer: &Transfer) -> Result<(), ParseError> {
    let bad = |reason: &str| ParseError::BadField {
        field: "event",
        reason: reason.into(),
    };
    match (kind, transfer.event) {
        (RequestKind::Exit { .. }, Some(AnnounceEvent::Started | AnnounceEvent::Completed)) => {
            Err(bad("flag 5 leaves a swarm: its event is stopped"))
        }
        (RequestKind::Exit { file: None, .. }, _)
            if transfer.has_counters() || transfer.left.is_some() =>
        {
            Err(ParseError::BadField {
                field: "up",
                reason: "byte counters name one file: send flag 5 with the file name".into(),
            })
        }
        (RequestKind::Exit { .. }, _) => Ok(()),
        (_, Some(AnnounceEvent::Stopped)) => Err(bad("event=stopped is sent with flag 5")),
        _ => Ok(()),
    }
}

impl Request {
    pub fn new(kind: RequestKind) -> Self {
        Request {
            tid: None,
            key: None,
            cookie: None,
            keep_punch_path: false,
            transfer: Transfer::default(),
            conn_stats: ConnStats::default(),
            kind,
        }
    }

    /// Parses one request datagram.
    pub fn parse(datagram: &[u8]) -> Result<Request, ParseError> {
        let text = datagram_text(datagram, MAX_REQUEST_BYTES)?;
        let mut line = Line::split(text, "REQUEST")?;
        let flag = match line.positional.first() {
            None => return Err(ParseError::MissingField("flag")),
            Some(f) => *f,
        };
        line.positional.remove(0);
        let tid = line.take("tid").map(|v| parse_u32("tid", v)).transpose()?;
        let key = line
            .take("key")
            .map(|v| v.parse().map_err(hex_field("key")))
            .transpose()?;
        let cookie = line
            .take("cookie")
            .map(|v| v.parse().map_err(hex_field("cookie")))
            .transpose()?;
        let keep_punch_path = match line.take("punch") {
            None => false,
            Some("keep") => true,
            Some(other) => {
                return Err(ParseError::BadField {
                    field: "punch",
                    reason: format!("{:?} is not `keep`", crate::token::truncated(other)),
                })
            }
        };
        // Padding lets a client without a cookie make its request big enough for the
        // tracker's cookie answer to pass the 3x amplification bound.
        line.take("pad");
        let kind = parse_kind(flag, &mut line)?;
        let transfer = if kind.reports_transfer() {
            Transfer::take(&mut line)?
        } else {
            Transfer::default()
        };
        check_transfer(&kind, &transfer)?;
        let conn_stats = if matches!(kind, RequestKind::Heartbeat { .. }) {
            ConnStats::take(&mut line)?
        } else {
            ConnStats::default()
        };
        line.finish()?;
        Ok(Request {
            tid,
            key,
            cookie,
            keep_punch_path,
            transfer,
            conn_stats,
            kind,
        })
    }

    /// The datagram text of this request.
    pub fn encode(&self) -> String {
        self.to_string()
    }
}

fn parse_kind(flag: &str, line: &mut Line<'_>) -> Result<RequestKind, ParseError> {
    let offset = |line: &mut Line<'_>| -> Result<u32, ParseError> {
        line.take("offset")
            .map_or(Ok(0), |v| parse_u32("offset", v))
    };
    Ok(match flag {
        "1" | "2" => {
            // The optional ADDR makes the request an announcement: the sender joins the swarm.
            let announce = if line.positional.len() >= 2 {
                line.expect_positional(&["file name", "address"])?;
                Some(parse_peer_addr(line.positional[1])?)
            } else {
                line.expect_positional(&["file name"])?;
                None
            };
            let file = FileName::new(line.positional[0])?;
            let offset = offset(line)?;
            if flag == "1" {
                RequestKind::Peers {
                    file,
                    announce,
                    offset,
                }
            } else {
                RequestKind::Refresh {
                    file,
                    announce,
                    offset,
                }
            }
        }
        "3" => {
            line.expect_positional(&["file name", "chunk list", "address"])?;
            RequestKind::Chunks {
                file: FileName::new(line.positional[0])?,
                chunks: line.positional[1].parse()?,
                announce: parse_peer_addr(line.positional[2])?,
            }
        }
        "4" => {
            line.expect_positional(&["file name", "chunk count", "address"])?;
            let name = FileName::new(line.positional[0])?;
            let chunks = parse_u32("chunk count", line.positional[1])?;
            let announce = parse_peer_addr(line.positional[2])?;
            let size = parse_u64("size", line.require("size")?)?;
            let id: FileId = line.require("id")?.parse()?;
            let chunk_size = line
                .take("chunk")
                .map_or(Ok(DEFAULT_CHUNK_SIZE), |v| parse_u32("chunk", v))?;
            let info = FileInfo::with_declared_chunks(name, size, chunk_size, chunks, id)?;
            RequestKind::Share { info, announce }
        }
        "5" => match line.positional.len() {
            0 => return Err(ParseError::MissingField("address")),
            1 => RequestKind::Exit {
                file: None,
                announce: parse_peer_addr(line.positional[0])?,
            },
            _ => {
                line.expect_positional(&["file name", "address"])?;
                RequestKind::Exit {
                    file: Some(FileName::new(line.positional[0])?),
                    announce: parse_peer_addr(line.positional[1])?,
                }
            }
        },
        "6" => {
            line.expect_positional(&[])?;
            let pattern = line
                .take("match")
                .map(|v| {
                    NamePattern::new(v).map_err(|e| ParseError::BadField {
                        field: "match",
                        reason: e.to_string(),
                    })
                })
                .transpose()?;
            RequestKind::ListFiles {
                offset: offset(line)?,
                pattern,
            }
        }
        "7" => {
            line.expect_positional(&["file name"])?;
            RequestKind::Query {
                file: FileName::new(line.positional[0])?,
            }
        }
        "8" => {
            line.expect_positional(&["file name", "target address", "own address"])?;
            let target = parse_peer_addr(line.positional[1])?;
            if target.ip().is_unspecified() {
                return Err(AddrError::Unspecified(target).into());
            }
            if !is_unicast(target.ip()) {
                return Err(AddrError::NotUnicast(target).into());
            }
            // MY ADDR may be unspecified (the source's IP), never multicast or broadcast.
            let me = parse_peer_addr(line.positional[2])?;
            if !me.ip().is_unspecified() && !is_unicast(me.ip()) {
                return Err(AddrError::NotUnicast(me).into());
            }
            RequestKind::Punch {
                file: FileName::new(line.positional[0])?,
                target,
                me,
            }
        }
        "9" => {
            line.expect_positional(&["address"])?;
            RequestKind::Heartbeat {
                announce: parse_peer_addr(line.positional[0])?,
            }
        }
        "10" => {
            line.expect_positional(&[])?;
            RequestKind::RelayOffer
        }
        other => return Err(ParseError::UnknownFlag(crate::token::truncated(other))),
    })
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "REQUEST {}", self.kind.flag())?;
        match &self.kind {
            RequestKind::Peers {
                file,
                announce,
                offset,
            }
            | RequestKind::Refresh {
                file,
                announce,
                offset,
            } => {
                write!(f, " {file}")?;
                if let Some(announce) = announce {
                    write!(f, " {announce}")?;
                }
                if *offset != 0 {
                    write!(f, " offset={offset}")?;
                }
            }
            RequestKind::Chunks {
                file,
                chunks,
                announce,
            } => write!(f, " {file} {chunks} {announce}")?,
            RequestKind::Share { info, announce } => write!(
                f,
                " {} {} {announce} size={} id={} chunk={}",
                info.name(),
                info.chunks(),
                info.size(),
                info.id(),
                info.chunk_size()
            )?,
            RequestKind::Exit { file, announce } => {
                if let Some(file) = file {
                    write!(f, " {file}")?;
                }
                write!(f, " {announce}")?;
            }
            RequestKind::ListFiles { offset, pattern } => {
                if *offset != 0 {
                    write!(f, " offset={offset}")?;
                }
                if let Some(pattern) = pattern {
                    write!(f, " match={pattern}")?;
                }
            }
            RequestKind::Query { file } => write!(f, " {file}")?,
            RequestKind::Punch { file, target, me } => write!(f, " {file} {target} {me}")?,
            RequestKind::Heartbeat { announce } => write!(f, " {announce}")?,
            RequestKind::RelayOffer => {}
        }
        write!(f, "{}{}", self.transfer, self.conn_stats)?;
        if self.keep_punch_path {
            f.write_str(" punch=keep")?;
        }
        if let Some(key) = &self.key {
            write!(f, " key={key}")?;
        }
        if let Some(cookie) = &self.cookie {
            write!(f, " cookie={cookie}")?;
        }
        if let Some(tid) = self.tid {
            write!(f, " tid={tid}")?;
        }
        Ok(())
    }
}
