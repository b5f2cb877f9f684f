//! The lines of a listing's last text page, kept while the listing stays as it is, so the next
//! request for the same page copies bytes instead of walking the listing and rendering every
//! line again (under load most flag 1 and flag 6 answers repeat the one before them).
//!
//! The lines depend on the listing, the page's offset and its byte budget only (the header,
//! with `tid=` and the counts, is rendered for every answer), so a kept page is keyed by offset
//! and budget and forgotten on any change of the listing: the owner of the listing calls
//! [`Kept::forget`] wherever it changes (a swarm's `FileEntry::swarm_mut`, the catalogue's
//! `relist`), under the same lock as the change and as the reads that fill or reuse it.

use std::sync::Arc;

use tracker_proto::PageBody;

/// At most one kept page; empty until a page is kept and after every change.
#[derive(Default)]
pub(super) struct Kept(Option<KeptPage>);

struct KeptPage {
    offset: u32,
    budget: usize,
    lines: Arc<str>,
    next: Option<u32>,
}

impl Kept {
    /// Gives `page` the kept lines when they are for `offset` and the page's budget; the
    /// offset of the page after them then (`Some(None)`: they reach the end of the listing).
    pub(super) fn reuse(&self, offset: u32, page: &mut PageBody) -> Option<Option<u32>> {
        let kept = self.0.as_ref()?;
        if kept.offset != offset || kept.budget != page.budget() {
            return None;
        }
        page.reuse(Arc::clone(&kept.lines));
        Some(kept.next)
    }

    /// Keeps the lines of `page`, just listed from `offset`, which end before `next`.
    pub(super) fn keep(&mut self, offset: u32, page: &PageBody, next: Option<u32>) {
        self.0 = Some(KeptPage {
            offset,
            budget: page.budget(),
            lines: Arc::from(page.lines()),
            next,
        });
    }

    /// The listing changed: nothing kept shows it any more.
    pub(super) fn forget(&mut self) {
        self.0 = None;
    }
}
