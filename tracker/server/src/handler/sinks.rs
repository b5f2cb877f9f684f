//! Where the store's listings go while it walks them (flags 1, 2 and 6): a datagram page of
//! text, or the typed entries of [`Listing`] for the HTTP front end. A text page that takes
//! every entry it is offered says so ([`PeerSink::page`], [`FileSink::page`]), so the
//! in-memory store can keep its lines and hand them to the next identical request.

use tracker_proto::{
    AnnounceIntervals, FileSummary, ListedFile, NamePattern, PageBody, PeerEntry, PeersHeader,
};

use super::typed::Listing;
use crate::store::{FileSink, PeerSink};

/// Where a listing's entries go while the store walks it: a datagram page, or typed entries.
pub(super) enum Body {
    Text(Option<PageBody>),
    Typed(Listing),
}

/// The page of a flag 1 or 2 answer, sized by the header of the counts the store sees as it
/// lists (made when the store first shows them).
pub(super) struct PeerText<'a> {
    pub(super) slot: &'a mut Option<PageBody>,
    pub(super) max: usize,
    pub(super) refresh: bool,
    pub(super) intervals: Option<AnnounceIntervals>,
    pub(super) tid: Option<u32>,
}

impl PeerText<'_> {
    fn body(&mut self, file: &FileSummary) -> &mut PageBody {
        let (max, tid) = (self.max, self.tid);
        let header = PeersHeader {
            refresh: self.refresh,
            file,
            intervals: self.intervals,
        };
        self.slot
            .get_or_insert_with(|| PageBody::for_peers(max, header, tid))
    }
}

impl PeerSink for PeerText<'_> {
    fn push(&mut self, file: &FileSummary, peer: &PeerEntry) -> bool {
        self.body(file).push(peer)
    }

    fn page(&mut self, file: &FileSummary) -> Option<&mut PageBody> {
        Some(self.body(file))
    }
}

/// Typed peers for the HTTP front end.
pub(super) struct PeerEntries<'a>(pub(super) &'a mut Listing);

impl PeerSink for PeerEntries<'_> {
    fn push(&mut self, _file: &FileSummary, peer: &PeerEntry) -> bool {
        self.0.push_peer(peer)
    }
}

/// A catalogue page (flag 6). A name the pattern does not match is passed over, so the store
/// goes on to the next one: a page fills with matching names only.
pub(super) struct FileText<'a> {
    pub(super) slot: &'a mut Option<PageBody>,
    pub(super) max: usize,
    pub(super) tid: Option<u32>,
    pub(super) pattern: Option<&'a NamePattern>,
}

impl FileText<'_> {
    fn body(&mut self) -> &mut PageBody {
        let (max, tid) = (self.max, self.tid);
        self.slot
            .get_or_insert_with(|| PageBody::for_files(max, tid))
    }
}

impl FileSink for FileText<'_> {
    fn push(&mut self, file: &ListedFile) -> bool {
        !wanted(self.pattern, file) || self.body().push(file)
    }

    fn page(&mut self) -> Option<&mut PageBody> {
        match self.pattern {
            None => Some(self.body()),
            Some(_) => None,
        }
    }
}

/// Typed catalogue lines for the HTTP front end, filtered like [`FileText`].
pub(super) struct FileEntries<'a> {
    pub(super) listing: &'a mut Listing,
    pub(super) pattern: Option<&'a NamePattern>,
}

impl FileSink for FileEntries<'_> {
    fn push(&mut self, file: &ListedFile) -> bool {
        !wanted(self.pattern, file) || self.listing.push_file(file)
    }
}

fn wanted(pattern: Option<&NamePattern>, file: &ListedFile) -> bool {
    pattern.is_none_or(|p| p.matches(file.name.as_str()))
}
