//! Pages of a listing (flags 1, 2 and 6) as the tracker builds them: the lines filled up to a
//! byte budget, each formatted once, then the header with `next=` and `tid=` in front. The text
//! is the same as [`Response`](crate::Response)'s `Display`.
//!
//! The lines of a page depend only on the listing, the page's offset and its byte budget, not
//! on the request's `tid` or on flag 1 against flag 2, so a tracker may keep them
//! ([`PageBody::lines`]) while the listing stays as it is and hand them to a later page of the
//! same offset and budget ([`PageBody::reuse`]) instead of walking the listing again.

use std::fmt;
use std::sync::Arc;

use crate::render::{push_num, push_summary, PageLine};
use crate::response::{write_next, write_tid, MAX_DATAGRAM_BYTES};
use crate::types::{AnnounceIntervals, FileSummary};

/// What the header of RESPONSE 1/2 says besides paging and `tid`.
#[derive(Debug, Clone, Copy)]
pub struct PeersHeader<'a> {
    pub refresh: bool,
    pub file: &'a FileSummary,
    pub intervals: Option<AnnounceIntervals>,
}

/// The header of RESPONSE 1/2 up to (not including) `next=`.
fn push_peers_head(out: &mut String, header: PeersHeader<'_>) {
    out.push_str(if header.refresh {
        "RESPONSE 2"
    } else {
        "RESPONSE 1"
    });
    push_summary(out, header.file);
    if let Some(i) = header.intervals {
        out.push_str(" interval=");
        push_num(out, i.interval);
        out.push_str(" min_interval=");
        push_num(out, i.min_interval);
    }
}

pub(crate) fn write_peers_header(
    f: &mut dyn fmt::Write,
    header: PeersHeader<'_>,
    next: Option<u32>,
    tid: Option<u32>,
) -> fmt::Result {
    let mut head = String::with_capacity(256);
    push_peers_head(&mut head, header);
    f.write_str(&head)?;
    write_next(f, next)?;
    write_tid(f, tid)
}

pub(crate) fn write_files_header(
    f: &mut dyn fmt::Write,
    total: u32,
    next: Option<u32>,
    tid: Option<u32>,
) -> fmt::Result {
    write!(f, "RESPONSE 6 files={total}")?;
    write_next(f, next)?;
    write_tid(f, tid)
}

/// `" next=4294967295"` and `" tid=4294967295"`: the widest paging fields, which every page
/// reserves room for.
const WIDEST_NEXT: usize = 16;
const WIDEST_TID: usize = 15;
/// `"RESPONSE 6 files=4294967295"`.
const WIDEST_FILES_HEAD: usize = 27;

/// The lines of one page of a listing (flags 1, 2, 6), filled up to a byte budget with each line
/// formatted once, and the header rendered once in front of them when the page is done.
pub struct PageBody {
    /// Flags 1 and 2: the header up to `next=`; empty for flag 6, whose header holds the file
    /// count the listing gives at the end.
    head: String,
    lines: Lines,
    /// Bytes the lines may take (every one with its leading newline).
    limit: usize,
}

/// The lines of a page: rendered here, or kept from an earlier page of the same listing.
enum Lines {
    Own(String),
    Kept(Arc<str>),
}

impl PageBody {
    /// A page whose whole answer, header included, must stay within `max` bytes; the header
    /// is reserved at its longest (`next=` and `tid=` at their widest values).
    pub fn for_peers(max: usize, header: PeersHeader<'_>, tid: Option<u32>) -> Self {
        let mut head = String::with_capacity(256);
        push_peers_head(&mut head, header);
        let reserve = head.len() + WIDEST_NEXT + tid.map_or(0, |_| WIDEST_TID);
        PageBody {
            head,
            lines: Lines::Own(String::new()),
            limit: max.saturating_sub(reserve),
        }
    }

    /// Like [`PageBody::for_peers`], for the catalogue.
    pub fn for_files(max: usize, tid: Option<u32>) -> Self {
        let reserve = WIDEST_FILES_HEAD + WIDEST_NEXT + tid.map_or(0, |_| WIDEST_TID);
        PageBody {
            head: String::new(),
            lines: Lines::Own(String::new()),
            limit: max.saturating_sub(reserve),
        }
    }

    /// The bytes this page's lines may take: with the offset, what they depend on besides the
    /// listing itself.
    pub fn budget(&self) -> usize {
        self.limit
    }

    /// The lines so far, each with its leading newline.
    pub fn lines(&self) -> &str {
        match &self.lines {
            Lines::Own(text) => text,
            Lines::Kept(text) => text,
        }
    }

    /// Takes `lines`, kept from an earlier page of the same listing, offset and budget, as this
    /// page's lines.
    pub fn reuse(&mut self, lines: Arc<str>) {
        self.lines = Lines::Kept(lines);
    }

    /// Appends `line` if it fits; `false` (and the page unchanged) when it does not.
    pub fn push(&mut self, line: &impl PageLine) -> bool {
        if let Lines::Kept(kept) = &self.lines {
            self.lines = Lines::Own(kept.to_string());
        }
        let Lines::Own(text) = &mut self.lines else {
            return false;
        };
        // Room for a whole page at the first line, not before: a page given kept lines
        // never fills its own.
        if text.capacity() == 0 {
            text.reserve(self.limit.min(MAX_DATAGRAM_BYTES));
        }
        let mark = text.len();
        text.push('\n');
        line.push_to(text);
        if text.len() > self.limit {
            text.truncate(mark);
            return false;
        }
        true
    }

    /// The answer to flag 1 or 2 with these lines (the header given to
    /// [`PageBody::for_peers`]).
    pub fn finish_peers(self, next: Option<u32>, tid: Option<u32>) -> String {
        let lines = self.lines();
        let mut out =
            String::with_capacity(self.head.len() + WIDEST_NEXT + WIDEST_TID + lines.len());
        out.push_str(&self.head);
        push_paging(&mut out, next, tid);
        out.push_str(lines);
        out
    }

    /// The answer to flag 6 with these lines.
    pub fn finish_files(self, total: u32, next: Option<u32>, tid: Option<u32>) -> String {
        let lines = self.lines();
        let mut out =
            String::with_capacity(WIDEST_FILES_HEAD + WIDEST_NEXT + WIDEST_TID + lines.len());
        out.push_str("RESPONSE 6 files=");
        push_num(&mut out, total);
        push_paging(&mut out, next, tid);
        out.push_str(lines);
        out
    }
}

/// ` next=N tid=T`, each when present, as `write_next` and `write_tid` write them.
fn push_paging(out: &mut String, next: Option<u32>, tid: Option<u32>) {
    if let Some(n) = next {
        out.push_str(" next=");
        push_num(out, n);
    }
    if let Some(t) = tid {
        out.push_str(" tid=");
        push_num(out, t);
    }
}
