//! Walking RealtimeKit's paged listings (sessions, a session's participants) so that no entry is
//! skipped or visited twice, however the server pages: see [`ListingWalk`].

use super::{ListingPage, ListingQuery, RtkApi, RtkApiError};
use crate::domain::{ListedSession, Participant, SessionId};
use std::collections::HashSet;

/// One listing, page by page.
pub trait Pages {
    type Item: Listed;
    /// How errors name the listing, and its entries.
    const WHAT: &'static str;
    const ENTRIES: &'static str;
    async fn page(&self, page_no: u32) -> Result<ListingPage<Self::Item>, RtkApiError>;
}

/// An entry of a listing, known by a key.
pub trait Listed {
    fn key(&self) -> String;
}

impl Listed for ListedSession {
    fn key(&self) -> String {
        self.id.as_str().to_owned()
    }
}

impl Listed for Participant {
    fn key(&self) -> String {
        self.participant_id.clone()
    }
}

/// The app's ended sessions that a query picks.
pub struct SessionPages<'a> {
    pub api: &'a RtkApi,
    pub query: &'a ListingQuery,
}

impl Pages for SessionPages<'_> {
    type Item = ListedSession;
    const WHAT: &'static str = "the sessions listing";
    const ENTRIES: &'static str = "sessions";
    async fn page(&self, page_no: u32) -> Result<ListingPage<ListedSession>, RtkApiError> {
        self.api.list_sessions(self.query, page_no).await
    }
}

/// One session's participants.
pub struct ParticipantPages<'a> {
    pub api: &'a RtkApi,
    pub session: &'a SessionId,
}

impl Pages for ParticipantPages<'_> {
    type Item = Participant;
    const WHAT: &'static str = "the participants listing";
    const ENTRIES: &'static str = "participants";
    async fn page(&self, page_no: u32) -> Result<ListingPage<Participant>, RtkApiError> {
        self.api.list_participants(self.session, page_no).await
    }
}

/// Every participant of `session`, or why the walk failed (a shortfall included).
pub async fn all_participants(
    api: &RtkApi,
    session: &SessionId,
) -> Result<Vec<Participant>, RtkApiError> {
    let mut walk = ListingWalk::new(ParticipantPages { api, session });
    let mut participants = Vec::new();
    while let Some(page) = walk.next().await? {
        for why in &page.not_understood {
            tracing::warn!(session_id = %session, entry = %why, "a participant entry is not understood");
        }
        participants.extend(page.items);
    }
    if let Some(shortfall) = walk.shortfall() {
        return Err(RtkApiError::BadAnswer(shortfall.to_string()));
    }
    Ok(participants)
}

/// Walks a listing so that every entry it counts is visited once, whatever the
/// server's page base (0 or 1: the API reference allows both) and its cap on `per_page`:
/// - with `paging` (beside `data`), the first answer's `start_offset` says whether page 1 is
///   the first page or the second (then page 0 is fetched too); the walk goes on while it has
///   seen fewer than `total_count` rows, not while pages are full, since a capped server
///   answers short pages;
/// - without `paging`, it asks until a page comes back empty, and then for page 0, in case
///   the server counts from 0;
/// - sessions a page repeats (overlapping pages) are passed on once; a page that repeats the
///   one before it whole (a server that ignores `page_no`) ends the walk with an error.
///
/// [`ListingWalk::shortfall`] says, at the end, how many rows `total_count` promised that the
/// walk never saw (sessions that vanished mid-walk, a server that lies).
pub struct ListingWalk<P: Pages> {
    pages: P,
    next_page: u32,
    /// Page 0 is still to be asked for.
    page_zero_due: bool,
    page_zero_asked: bool,
    /// The forward walk (pages 1, 2, ...) is over.
    forward_done: bool,
    /// The entries seen, by key.
    seen: HashSet<String>,
    /// Entries seen that chatsink cannot use.
    unusable: u64,
    total: Option<u64>,
    previous: Option<Vec<String>>,
}

/// Pages asked for at most in one walk: far beyond any real listing at 100 a page, so a server
/// that never ends its listing cannot keep a walk going for ever.
const MAX_PAGES: u32 = 100_000;

impl<P: Pages> ListingWalk<P> {
    pub fn new(pages: P) -> Self {
        Self {
            pages,
            next_page: 1,
            page_zero_due: false,
            page_zero_asked: false,
            forward_done: false,
            seen: Default::default(),
            unusable: 0,
            total: None,
            previous: None,
        }
    }

    /// The next page's new rows, or `None` once the walk is over.
    pub async fn next(&mut self) -> Result<Option<ListingPage<P::Item>>, RtkApiError> {
        loop {
            if self.page_zero_due {
                self.page_zero_due = false;
                self.page_zero_asked = true;
                match self.pages.page(0).await {
                    Ok(page) => return Ok(Some(self.keep_new(page))),
                    // Without `paging` page 0 was a guess: a server counting from 1 may refuse it.
                    Err(RtkApiError::Status(400..=499) | RtkApiError::NotFound(_))
                        if self.total.is_none() =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                }
            }
            if self.forward_done {
                return Ok(None);
            }
            let page_no = self.next_page;
            if page_no > MAX_PAGES {
                return Err(RtkApiError::BadAnswer(format!(
                    "{} did not end within {MAX_PAGES} pages",
                    P::WHAT
                )));
            }
            let page = self.pages.page(page_no).await?;
            self.next_page += 1;
            let ids: Vec<String> = page.items.iter().map(Listed::key).collect();
            if !ids.is_empty() && self.previous.as_ref() == Some(&ids) {
                return Err(RtkApiError::BadAnswer(format!(
                    "{} answered page {page_no} with page {}'s {} again; its paging is not understood",
                    P::WHAT,
                    page_no - 1,
                    P::ENTRIES
                )));
            }
            self.previous = Some(ids);
            match page.paging {
                Some(paging) => {
                    self.total = Some(paging.total_count);
                    // Page 1 did not start the listing: the server counts pages from 0.
                    if page_no == 1 && paging.start_offset > 0 && !self.page_zero_asked {
                        self.page_zero_due = true;
                    }
                }
                None if page.entries == 0 => {
                    self.forward_done = true;
                    self.page_zero_due = !self.page_zero_asked;
                }
                None => {}
            }
            let page = self.keep_new(page);
            if let Some(total) = self.total {
                let seen_all = self.rows_seen() >= total;
                let past_the_end = page.paging.is_some_and(|p| p.end_offset + 1 >= total);
                if page.entries == 0 || seen_all || past_the_end && !self.page_zero_due {
                    self.forward_done = true;
                }
            }
            return Ok(Some(page));
        }
    }

    /// `page` with the rows an earlier page had already given left out.
    fn keep_new(&mut self, mut page: ListingPage<P::Item>) -> ListingPage<P::Item> {
        page.items.retain(|item| self.seen.insert(item.key()));
        self.unusable += page.not_understood.len() as u64;
        page.entries = page.items.len() + page.not_understood.len();
        page
    }

    fn rows_seen(&self) -> u64 {
        self.seen.len() as u64 + self.unusable
    }

    /// `(total_count, rows seen)` when the walk saw fewer rows than the listing counted.
    pub fn shortfall(&self) -> Option<Shortfall> {
        let total = self.total?;
        let seen = self.rows_seen();
        (seen < total).then_some(Shortfall {
            listing: P::WHAT,
            entries: P::ENTRIES,
            total,
            seen,
        })
    }
}

/// A listing walk that ended short of the listing's own `total_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub listing: &'static str,
    pub entries: &'static str,
    pub total: u64,
    pub seen: u64,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} counted {} {} but its pages held {} ({} missing: {} that vanished while it was paged through, or a listing that pages in a way chatsink does not follow)",
            self.listing,
            self.total,
            self.entries,
            self.seen,
            self.total - self.seen,
            self.entries
        )
    }
}
