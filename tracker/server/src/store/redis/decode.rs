//! Reading the script's replies (the shapes are documented beside each operation in
//! store.lua). Anything else, whatever Redis holds, is a [`StoreError::Unavailable`] naming what
//! was wrong, never a panic.

use std::net::SocketAddr;

use redis::Value;
use tracker_proto::{
    ChunkRanges, FileId, FileInfo, FileName, FileSummary, ListedFile, PeerChunks, PeerEntry,
    SwarmStats,
};

use crate::store::{Done, Op, Page, StoreError};

fn bad(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("unexpected data in Redis: {what}"))
}

fn text(v: &Value) -> Result<&str, StoreError> {
    match v {
        Value::BulkString(b) => {
            std::str::from_utf8(b).map_err(|_| bad("a string that is not UTF-8"))
        }
        Value::SimpleString(s) => Ok(s),
        other => Err(bad(format!("{other:?} where a string was expected"))),
    }
}

fn int(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(n) => Ok(*n),
        other => text(other)?
            .parse()
            .map_err(|_| bad(format!("{other:?} where a number was expected"))),
    }
}

fn uint<T: TryFrom<i64>>(v: &Value) -> Result<T, StoreError> {
    let n = int(v)?;
    T::try_from(n).map_err(|_| bad(format!("{n} is out of range")))
}

fn addr(v: &Value) -> Result<SocketAddr, StoreError> {
    let s = text(v)?;
    s.parse()
        .map_err(|_| bad(format!("{s:?} is not an address")))
}

fn name(v: &Value) -> Result<FileName, StoreError> {
    let s = text(v)?;
    FileName::new(s).map_err(|e| bad(format!("file name {s:?}: {e}")))
}

/// The cap or quota names the stores share (the script sends the same words).
fn limit_name(s: &str, quota: bool) -> Result<&'static str, StoreError> {
    let names: &[&'static str] = if quota {
        &[
            "files created",
            "rows",
            "serving addresses",
            "bitfield memory",
            "peers in one swarm",
        ]
    } else {
        &[
            "files",
            "peers",
            "peers per file",
            "rows",
            "bitfield memory",
        ]
    };
    names
        .iter()
        .copied()
        .find(|n| *n == s)
        .ok_or_else(|| bad(format!("unknown limit {s:?}")))
}

fn error_of(items: &[Value]) -> StoreError {
    let field = |i: usize| items.get(i).unwrap_or(&Value::Nil);
    let kind = match text(field(1)) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let parsed = match kind {
        "file" => name(field(2)).map(StoreError::FileNotFound),
        "mismatch" => name(field(2)).map(StoreError::HashMismatch),
        "peer" => addr(field(2)).map(StoreError::PeerNotFound),
        "forbidden" => addr(field(2)).map(StoreError::Forbidden),
        "counters" => text(field(2)).map(|s| StoreError::Counters(s.to_string())),
        "range" => uint(field(2)).and_then(|chunk| {
            Ok(StoreError::ChunkOutOfRange {
                chunk,
                chunks: uint(field(3))?,
            })
        }),
        "capacity" => text(field(2)).and_then(|s| Ok(StoreError::Capacity(limit_name(s, false)?))),
        "quota" => text(field(2)).and_then(|s| Ok(StoreError::HostQuota(limit_name(s, true)?))),
        "unavailable" => text(field(2)).map(|s| StoreError::Unavailable(format!("Redis: {s}"))),
        other => Err(bad(format!("unknown error {other:?}"))),
    };
    parsed.unwrap_or_else(|e| e)
}

/// A file's summary from `size, chunk, id, seeders, members` at `items[at..]`, and with
/// `figures` its `completed, up, down` after them.
fn summary(
    file: &FileName,
    items: &[Value],
    at: usize,
    figures: bool,
) -> Result<FileSummary, StoreError> {
    let field = |i: usize| items.get(at + i).ok_or_else(|| bad("a reply cut short"));
    let id_text = text(field(2)?)?;
    let id: FileId = id_text
        .parse()
        .map_err(|_| bad(format!("file id {id_text:?}")))?;
    let info = FileInfo::new(file.clone(), uint(field(0)?)?, uint(field(1)?)?, id)
        .map_err(|e| bad(format!("record of {file}: {e}")))?;
    let seeders: u32 = uint(field(3)?)?;
    let members: u32 = uint(field(4)?)?;
    let stats = if figures {
        Some(SwarmStats {
            completed: uint(field(5)?)?,
            up: uint(field(6)?)?,
            down: uint(field(7)?)?,
        })
    } else {
        None
    };
    Ok(FileSummary {
        info,
        seeders,
        leechers: members.saturating_sub(seeders),
        stats,
    })
}

fn chunks_of(kind: &Value, value: &Value) -> Result<PeerChunks, StoreError> {
    Ok(match text(kind)? {
        "S" => PeerChunks::Seeder,
        "C" => PeerChunks::Count(uint(value)?),
        "R" => {
            let s = text(value)?;
            let ranges = s
                .split(',')
                .map(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect::<Option<Vec<(u32, u32)>>>()
                .and_then(ChunkRanges::from_sorted)
                .ok_or_else(|| bad(format!("chunk ranges {s:?}")))?;
            PeerChunks::Ranges(ranges)
        }
        other => return Err(bad(format!("holding kind {other:?}"))),
    })
}

/// Where listing stopped: `-1` is the end.
fn stop(v: &Value) -> Result<Option<u32>, StoreError> {
    let n = int(v)?;
    Ok((n >= 0).then(|| u32::try_from(n).unwrap_or(u32::MAX)))
}

/// The answer to `op` from its script reply.
///
/// A catalogue page that a front end's name filter thinned out may need more lines than the
/// script estimated: `more(from, factor)` asks Redis for the catalogue from index `from` with
/// `factor` times the page's budget, until the page is full or the catalogue ends.
pub(super) fn done(
    op: &mut Op<'_>,
    reply: &Value,
    more: &mut dyn FnMut(u32, usize) -> Result<Value, StoreError>,
) -> Result<Done, StoreError> {
    let items = ok_items(reply)?;
    let field = |i: usize| items.get(i).ok_or_else(|| bad("a reply cut short"));
    Ok(match op {
        Op::Share { .. } | Op::Report { .. } | Op::Exit { .. } => Done::Ok,
        Op::Heartbeat { .. } => Done::Alive(uint(field(1)?)?),
        Op::Query { file } => Done::File(summary(file, items, 1, true)?),
        Op::PunchTarget { .. } => Done::PunchTo(addr(field(1)?)?),
        Op::Peers { file, sink, .. } => {
            let head = summary(file, items, 1, false)?;
            let mut next = stop(field(6)?)?;
            for peer in items[7..].chunks(4) {
                let [index, at, kind, value] = peer else {
                    return Err(bad("a peer line cut short"));
                };
                let entry = PeerEntry {
                    addr: addr(at)?,
                    chunks: chunks_of(kind, value)?,
                };
                if !sink.push(&head, &entry) {
                    next = Some(uint(index)?);
                    break;
                }
            }
            Done::Peers(Page { head, next })
        }
        Op::Files { offset, sink } => {
            // The count is the one at this request's place in its batch; lines read on may
            // show what later requests of the batch changed.
            let (total, mut state) = files(items, *offset, &mut **sink)?;
            let mut factor = 1usize;
            loop {
                match state {
                    Catalogue::Done(next) => break Done::Files(Page { head: total, next }),
                    Catalogue::More(from) => {
                        factor = factor.saturating_mul(8);
                        let reply = more(from, factor)?;
                        state = files(ok_items(&reply)?, from, &mut **sink)?.1;
                    }
                }
            }
        }
    })
}

/// Where a catalogue page stands after one reply.
#[derive(Debug, PartialEq, Eq)]
enum Catalogue {
    /// Finished: the page is full (the sink refused a line there) or the catalogue ended.
    Done(Option<u32>),
    /// Every line Redis sent was taken or skipped by the sink (a front end's name filter
    /// skipped some), and Redis stopped at this index because the lines it sent would have
    /// filled the page: the page may still take lines from there.
    More(u32),
}

/// Offers the catalogue lines of a `files` reply (a call that started at index `start`) to
/// `sink`; the file count and where the page stands.
fn files(
    items: &[Value],
    start: u32,
    sink: &mut dyn crate::store::FileSink,
) -> Result<(u32, Catalogue), StoreError> {
    let field = |i: usize| items.get(i).ok_or_else(|| bad("a reply cut short"));
    let total = uint(field(1)?)?;
    let stopped = stop(field(2)?)?;
    for (i, file) in items[3..].chunks(8).enumerate() {
        let [n, size, chunks, seeders, leechers, completed, up, down] = file else {
            return Err(bad("a catalogue line cut short"));
        };
        let listed = ListedFile {
            name: name(n)?,
            size: uint(size)?,
            chunks: uint(chunks)?,
            seeders: uint(seeders)?,
            leechers: uint(leechers)?,
            stats: Some(SwarmStats {
                completed: uint(completed)?,
                up: uint(up)?,
                down: uint(down)?,
            }),
        };
        if !sink.push(&listed) {
            return Ok((total, Catalogue::Done(Some(start.saturating_add(i as u32)))));
        }
    }
    Ok((
        total,
        match stopped {
            Some(at) => Catalogue::More(at),
            None => Catalogue::Done(None),
        },
    ))
}

/// The items of a successful reply, or the error it carries.
fn ok_items(reply: &Value) -> Result<&[Value], StoreError> {
    let items = match reply {
        Value::Array(items) => items.as_slice(),
        Value::ServerError(e) => {
            return Err(StoreError::Unavailable(format!("Redis refused: {e:?}")))
        }
        other => return Err(bad(format!("{other:?} where a reply array was expected"))),
    };
    match items.first().map(text).transpose()? {
        Some("ok") => Ok(items),
        Some("err") => Err(error_of(items)),
        other => Err(bad(format!("reply tagged {other:?}"))),
    }
}

/// How many peers one expiry call freed.
pub(super) fn expired(reply: &Value) -> Result<usize, StoreError> {
    let Value::Array(items) = reply else {
        return Err(bad(format!("{reply:?} where a reply array was expected")));
    };
    match items.first().map(text).transpose()? {
        Some("ok") => uint(items.get(1).unwrap_or(&Value::Nil)),
        Some("err") => Err(error_of(items)),
        other => Err(bad(format!("reply tagged {other:?}"))),
    }
}
