//! What the tracker sends: `RESPONSE` / `ERROR` answers and unsolicited `PUNCH` notices.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::error::{hex_field, ErrorCode, ParseError};
use crate::page::{write_files_header, write_peers_header, PeersHeader};
use crate::render::{push_num, PageLine};
use crate::token::{datagram_text, parse_u32, parse_u64, truncated, Line};
use crate::transfer::SwarmStats;
use crate::types::{
    is_unicast, parse_peer_addr, AddrError, AnnounceIntervals, Cookie, FileId, FileInfo, FileName,
    FileSummary, ListedFile, PeerChunks, PeerEntry,
};

/// Largest datagram a client accepts from the tracker (the UDP payload limit).
pub const MAX_DATAGRAM_BYTES: usize = 65_507;

/// Any datagram the tracker sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerMessage {
    Response(Response),
    Punch(PunchNotice),
}

/// `PUNCH <FILENAME> <IP:PORT>`: peer `from` wants to open a TCP connection for `file` with the
/// receiver at the same time (simultaneous open); sent on behalf of a flag 8 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchNotice {
    pub file: FileName,
    pub from: SocketAddr,
}

/// An answer, with the `tid` of the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub tid: Option<u32>,
    pub kind: ResponseKind,
}

/// Which flag a bare `RESPONSE <flag> OK` acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    Chunks,
    Share,
    Exit,
    Punch,
}

impl Ack {
    fn flag(self) -> u8 {
        match self {
            Ack::Chunks => 3,
            Ack::Share => 4,
            Ack::Exit => 5,
            Ack::Punch => 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseKind {
    /// Flags 1 and 2: the file and one page of its peers; `next` is the offset of the next page.
    /// `intervals` is `None` when the tracker sent none (an older tracker).
    Peers {
        refresh: bool,
        file: FileSummary,
        intervals: Option<AnnounceIntervals>,
        next: Option<u32>,
        peers: Vec<PeerEntry>,
    },
    /// Flag 6: one page of the catalogue of `total` files.
    Files {
        total: u32,
        next: Option<u32>,
        files: Vec<ListedFile>,
    },
    /// Flag 7.
    File(FileSummary),
    /// Flags 3, 4, 5 and 8.
    Ok(Ack),
    /// Flag 9: the sender is known and its rows in `files` swarms were refreshed.
    Alive {
        files: u32,
    },
    /// Flag 10: the TURN relay the tracker offers, `None` when it offers none.
    Relay(Option<RelayOffer>),
    Error(ErrorReply),
}

/// A TURN server and short-lived credentials for it (`RESPONSE 10`, protocol.txt §5.2).
#[derive(Clone, PartialEq, Eq)]
pub struct RelayOffer {
    /// The TURN server's address (TCP).
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    /// Seconds the credentials stay valid.
    pub ttl: u32,
    /// IPs of the relayed addresses the tracker accepts in announcements (§1.7): a downloader
    /// knows a peer listed at one of them is relayed.
    pub relay_ips: Vec<IpAddr>,
}

impl fmt::Debug for RelayOffer {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayOffer")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("ttl", &self.ttl)
            .field("relay_ips", &self.relay_ips)
            .finish_non_exhaustive()
    }
}

/// Credentials travel as single tokens: printable ASCII without spaces, 1..=255 bytes.
fn credential_token(field: &'static str, value: &str) -> Result<String, ParseError> {
    if value.is_empty() || value.len() > 255 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ParseError::BadField {
            field,
            reason: "expected 1 to 255 printable ASCII characters".into(),
        });
    }
    Ok(value.to_owned())
}

fn parse_relay_offer(line: &mut Line<'_>) -> Result<Option<RelayOffer>, ParseError> {
    line.expect_positional(&["flag", "TURN server"])?;
    if line.positional[1] == "none" {
        return Ok(None);
    }
    let server = parse_peer_addr(line.positional[1])?;
    if server.ip().is_unspecified() {
        return Err(AddrError::Unspecified(server).into());
    }
    let username = credential_token("user", line.require("user")?)?;
    let password = credential_token("pass", line.require("pass")?)?;
    let ttl = parse_u32("ttl", line.require("ttl")?)?;
    let relay_ips = line
        .require("relay")?
        .split(',')
        .map(|ip| {
            ip.parse::<IpAddr>().map_err(|_| ParseError::BadField {
                field: "relay",
                reason: format!("{:?} is not an IP address", truncated(ip)),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(RelayOffer {
        server,
        username,
        password,
        ttl,
        relay_ips,
    }))
}

/// `ERROR <code> <NAME> <text>`, with a cookie when the code is `COOKIE_REQUIRED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub code: ErrorCode,
    text: String,
    pub cookie: Option<Cookie>,
}

impl ErrorReply {
    /// Builds a reply whose text is safe on one line: control characters become `?` and `=`
    /// becomes `:` so the text can never be mistaken for trailing fields.
    pub fn new(code: ErrorCode, text: &str) -> Self {
        let text = text
            .chars()
            .map(|c| match c {
                '=' => ':',
                c if c.is_control() => '?',
                c => c,
            })
            .collect::<String>()
            .split(' ')
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        ErrorReply {
            code,
            text,
            cookie: None,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.text.is_empty() {
            write!(f, ": {}", self.text)?;
        }
        Ok(())
    }
}

impl Response {
    pub fn new(tid: Option<u32>, kind: ResponseKind) -> Self {
        Response { tid, kind }
    }

    pub fn error(tid: Option<u32>, code: ErrorCode, text: &str) -> Self {
        Response {
            tid,
            kind: ResponseKind::Error(ErrorReply::new(code, text)),
        }
    }

    pub fn encode(&self) -> String {
        // The answer to most announcements (every flag 3 report), written without core::fmt.
        if let ResponseKind::Ok(ack) = self.kind {
            let mut text = String::with_capacity(32);
            text.push_str("RESPONSE ");
            push_num(&mut text, ack.flag());
            text.push_str(" OK");
            if let Some(tid) = self.tid {
                text.push_str(" tid=");
                push_num(&mut text, tid);
            }
            return text;
        }
        self.to_string()
    }
}

impl TrackerMessage {
    /// Parses one datagram received from the tracker.
    pub fn parse(datagram: &[u8]) -> Result<TrackerMessage, ParseError> {
        let text = datagram_text(datagram, MAX_DATAGRAM_BYTES)?;
        let mut lines = text.split('\n');
        let header = lines.next().unwrap_or("");
        if header.starts_with("PUNCH ") {
            let line = Line::split(header, "PUNCH")?;
            line.expect_positional(&["file name", "address"])?;
            let file = FileName::new(line.positional[0])?;
            let from = parse_peer_addr(line.positional[1])?;
            // A peer is told to connect there: only a unicast address makes sense.
            if !is_unicast(from.ip()) {
                return Err(AddrError::NotUnicast(from).into());
            }
            line.finish()?;
            if lines.next().is_some() {
                return Err(ParseError::ExtraField("second line".into()));
            }
            return Ok(TrackerMessage::Punch(PunchNotice { file, from }));
        }
        if header.starts_with("ERROR ") {
            if lines.next().is_some() {
                return Err(ParseError::ExtraField("second line".into()));
            }
            return parse_error(header).map(TrackerMessage::Response);
        }
        let mut line = Line::split(header, "RESPONSE")?;
        let tid = line.take("tid").map(|v| parse_u32("tid", v)).transpose()?;
        let flag = *line
            .positional
            .first()
            .ok_or(ParseError::MissingField("flag"))?;
        let kind = match flag {
            "1" | "2" => {
                line.expect_positional(&["flag", "file name"])?;
                let file = {
                    let name = line.positional[1];
                    parse_summary(&mut line, name)?
                };
                let intervals = parse_intervals(&mut line)?;
                let next = line
                    .take("next")
                    .map(|v| parse_u32("next", v))
                    .transpose()?;
                let peers = lines
                    .by_ref()
                    .map(parse_peer_line)
                    .collect::<Result<_, _>>()?;
                ResponseKind::Peers {
                    refresh: flag == "2",
                    file,
                    intervals,
                    next,
                    peers,
                }
            }
            "6" => {
                line.expect_positional(&["flag"])?;
                let total = parse_u32("files", line.require("files")?)?;
                let next = line
                    .take("next")
                    .map(|v| parse_u32("next", v))
                    .transpose()?;
                let files = lines
                    .by_ref()
                    .map(parse_listed_line)
                    .collect::<Result<_, _>>()?;
                ResponseKind::Files { total, next, files }
            }
            "7" => {
                line.expect_positional(&["flag", "file name"])?;
                let name = line.positional[1];
                let mut summary = parse_summary(&mut line, name)?;
                summary.stats = SwarmStats::take(&mut line)?;
                ResponseKind::File(summary)
            }
            "3" | "4" | "5" | "8" => {
                line.expect_positional(&["flag", "OK"])?;
                if line.positional[1] != "OK" {
                    return Err(ParseError::BadLine(truncated(header)));
                }
                ResponseKind::Ok(match flag {
                    "3" => Ack::Chunks,
                    "4" => Ack::Share,
                    "5" => Ack::Exit,
                    _ => Ack::Punch,
                })
            }
            "9" => {
                line.expect_positional(&["flag", "OK"])?;
                if line.positional[1] != "OK" {
                    return Err(ParseError::BadLine(truncated(header)));
                }
                ResponseKind::Alive {
                    files: parse_u32("files", line.require("files")?)?,
                }
            }
            "10" => ResponseKind::Relay(parse_relay_offer(&mut line)?),
            other => return Err(ParseError::UnknownFlag(truncated(other))),
        };
        line.finish()?;
        if !matches!(
            kind,
            ResponseKind::Peers { .. } | ResponseKind::Files { .. }
        ) && lines.next().is_some()
        {
            return Err(ParseError::ExtraField("second line".into()));
        }
        Ok(TrackerMessage::Response(Response { tid, kind }))
    }
}

fn parse_summary(line: &mut Line<'_>, name: &str) -> Result<FileSummary, ParseError> {
    let name = FileName::new(name)?;
    let size = parse_u64("size", line.require("size")?)?;
    let chunks = parse_u32("chunks", line.require("chunks")?)?;
    let chunk_size = parse_u32("chunk", line.require("chunk")?)?;
    let id: FileId = line.require("id")?.parse()?;
    let info = FileInfo::with_declared_chunks(name, size, chunk_size, chunks, id)?;
    let seeders = parse_u32("seeders", line.require("seeders")?)?;
    let leechers = parse_u32("leechers", line.require("leechers")?)?;
    Ok(FileSummary {
        info,
        seeders,
        leechers,
        stats: None,
    })
}

/// `interval=` and `min_interval=` come together or not at all.
fn parse_intervals(line: &mut Line<'_>) -> Result<Option<AnnounceIntervals>, ParseError> {
    match (line.take("interval"), line.take("min_interval")) {
        (None, None) => Ok(None),
        (Some(interval), Some(min_interval)) => Ok(Some(AnnounceIntervals {
            interval: parse_u32("interval", interval)?,
            min_interval: parse_u32("min_interval", min_interval)?,
        })),
        (Some(_), None) => Err(ParseError::MissingField("min_interval")),
        (None, Some(_)) => Err(ParseError::MissingField("interval")),
    }
}

fn parse_peer_line(text: &str) -> Result<PeerEntry, ParseError> {
    let (addr, chunks) = text
        .split_once(' ')
        .ok_or_else(|| ParseError::BadLine(truncated(text)))?;
    let addr = parse_peer_addr(addr)?;
    let chunks = if chunks == "seeder" {
        PeerChunks::Seeder
    } else if let Some(n) = chunks.strip_prefix("have=") {
        PeerChunks::Count(parse_u32("have", n)?)
    } else {
        PeerChunks::Ranges(chunks.parse()?)
    };
    Ok(PeerEntry { addr, chunks })
}

fn parse_listed_line(text: &str) -> Result<ListedFile, ParseError> {
    let (name, mut line) = Line::split_any(text)?;
    line.expect_positional(&[])?;
    let listed = ListedFile {
        name: FileName::new(name)?,
        size: parse_u64("size", line.require("size")?)?,
        chunks: parse_u32("chunks", line.require("chunks")?)?,
        seeders: parse_u32("seeders", line.require("seeders")?)?,
        leechers: parse_u32("leechers", line.require("leechers")?)?,
        stats: SwarmStats::take(&mut line)?,
    };
    line.finish()?;
    Ok(listed)
}

fn parse_error(header: &str) -> Result<Response, ParseError> {
    let bad = || ParseError::BadLine(truncated(header));
    let mut tokens: Vec<&str> = header.split(' ').collect();
    let mut tid = None;
    let mut cookie = None;
    while let Some(last) = tokens.last() {
        if let Some(v) = last.strip_prefix("tid=") {
            if tid.is_some() {
                return Err(ParseError::DuplicateField("tid".into()));
            }
            tid = Some(parse_u32("tid", v)?);
        } else if let Some(v) = last.strip_prefix("cookie=") {
            if cookie.is_some() {
                return Err(ParseError::DuplicateField("cookie".into()));
            }
            cookie = Some(v.parse().map_err(hex_field("cookie"))?);
        } else {
            break;
        }
        tokens.pop();
    }
    if tokens.len() < 3 {
        return Err(bad());
    }
    let code = parse_u32("error code", tokens[1])?;
    let code = u16::try_from(code)
        .ok()
        .and_then(ErrorCode::from_code)
        .ok_or_else(bad)?;
    if tokens[2] != code.name() {
        return Err(bad());
    }
    let text = tokens[3..].join(" ");
    let mut reply = ErrorReply::new(code, &text);
    if reply.text != text {
        return Err(bad());
    }
    reply.cookie = cookie;
    Ok(Response {
        tid,
        kind: ResponseKind::Error(reply),
    })
}

impl fmt::Display for PeerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&line_text(self))
    }
}

impl fmt::Display for ListedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&line_text(self))
    }
}

fn line_text(line: &impl PageLine) -> String {
    let mut text = String::new();
    line.push_to(&mut text);
    text
}

pub(crate) fn write_summary(f: &mut dyn fmt::Write, s: &FileSummary) -> fmt::Result {
    let mut text = String::with_capacity(192);
    crate::render::push_summary(&mut text, s);
    f.write_str(&text)
}

pub(crate) fn write_tid(f: &mut dyn fmt::Write, tid: Option<u32>) -> fmt::Result {
    match tid {
        Some(t) => write!(f, " tid={t}"),
        None => Ok(()),
    }
}

pub(crate) fn write_next(f: &mut dyn fmt::Write, next: Option<u32>) -> fmt::Result {
    match next {
        Some(n) => write!(f, " next={n}"),
        None => Ok(()),
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ResponseKind::Peers {
                refresh,
                file,
                intervals,
                next,
                peers,
            } => {
                let header = PeersHeader {
                    refresh: *refresh,
                    file,
                    intervals: *intervals,
                };
                write_peers_header(f, header, *next, self.tid)?;
                for p in peers {
                    write!(f, "\n{p}")?;
                }
                Ok(())
            }
            ResponseKind::Files { total, next, files } => {
                write_files_header(f, *total, *next, self.tid)?;
                for l in files {
                    write!(f, "\n{l}")?;
                }
                Ok(())
            }
            ResponseKind::File(s) => {
                f.write_str("RESPONSE 7")?;
                write_summary(f, s)?;
                if let Some(stats) = &s.stats {
                    write!(f, "{stats}")?;
                }
                write_tid(f, self.tid)
            }
            ResponseKind::Ok(ack) => {
                write!(f, "RESPONSE {} OK", ack.flag())?;
                write_tid(f, self.tid)
            }
            ResponseKind::Alive { files } => {
                write!(f, "RESPONSE 9 OK files={files}")?;
                write_tid(f, self.tid)
            }
            ResponseKind::Relay(None) => {
                f.write_str("RESPONSE 10 none")?;
                write_tid(f, self.tid)
            }
            ResponseKind::Relay(Some(offer)) => {
                write!(
                    f,
                    "RESPONSE 10 {} user={} pass={} ttl={} relay=",
                    offer.server, offer.username, offer.password, offer.ttl
                )?;
                for (i, ip) in offer.relay_ips.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{ip}")?;
                }
                write_tid(f, self.tid)
            }
            ResponseKind::Error(e) => {
                write!(f, "ERROR {} {}", e.code.code(), e.code.name())?;
                if !e.text.is_empty() {
                    write!(f, " {}", e.text)?;
                }
                if let Some(c) = e.cookie {
                    write!(f, " cookie={c}")?;
                }
                write_tid(f, self.tid)
            }
        }
    }
}

impl fmt::Display for PunchNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PUNCH {} {}", self.file, self.from)
    }
}
