//! Reading listings page by page, in order, with the next page already on its way: its request
//! goes out as soon as the current page's `next` link is known, while the current page is
//! parsed and handed on. One page at most is fetched ahead. A `next` link that leads back to a
//! page of the listing already read (a paging loop) ends the read.

use std::collections::VecDeque;
use std::sync::Arc;

use url::Url;

use super::client::{Ahead, OktaClient, OktaError, Page};

/// How many earlier page URLs of a listing a `next` link is checked against (a paging loop).
const RECENT_PAGES: usize = 64;

/// The pages of one or more listings (one per start URL), read one after the other.
#[derive(Debug)]
pub struct Pages {
    okta: Arc<OktaClient>,
    starts: std::vec::IntoIter<Url>,
    /// The listing's next page, when it has one.
    next: Option<Url>,
    /// The first try at [`next`](Self::next), already under way.
    ahead: Option<Ahead>,
    /// The listing's pages read so far (the last [`RECENT_PAGES`]).
    recent: VecDeque<Url>,
    /// The error that ends the read after the page already returned (a refused link).
    failed: Option<OktaError>,
}

impl Pages {
    /// The pages of the listings at `starts`, in this order.
    pub fn new(okta: Arc<OktaClient>, starts: Vec<Url>) -> Self {
        Pages {
            okta,
            starts: starts.into_iter(),
            next: None,
            ahead: None,
            recent: VecDeque::with_capacity(RECENT_PAGES),
            failed: None,
        }
    }

    /// The next page (its `next` link already taken: [`Page::next`] is `Ok(None)`), `None` at
    /// the end, or the error that ends the read: then nothing more is read.
    pub async fn next_page(&mut self) -> Option<Result<Page, OktaError>> {
        if let Some(e) = self.failed.take() {
            return Some(Err(self.end(e)));
        }
        let url = match self.next.take() {
            Some(url) => url,
            None => {
                self.recent.clear();
                self.ahead = None;
                self.starts.next()?
            }
        };
        let recent = &self.recent;
        let read = self
            .okta
            .page_ahead(&url, self.ahead.take(), |n| {
                *n != url && !recent.contains(n)
            })
            .await;
        let (mut page, ahead) = match read {
            Ok(read) => read,
            Err(e) => return Some(Err(self.end(e))),
        };
        tracing::debug!(users = page.users.len(), path = url.path(), "okta page");
        match std::mem::replace(&mut page.next, Ok(None)) {
            Err(e) => self.failed = Some(e),
            Ok(Some(n)) if n == url || self.recent.contains(&n) => {
                self.failed = Some(OktaError::Malformed {
                    path: url.path().to_owned(),
                    detail: "its next link leads back to a page already read (a paging loop); \
                             reading stopped"
                        .into(),
                });
            }
            Ok(next) => {
                if self.recent.len() == RECENT_PAGES {
                    self.recent.pop_front();
                }
                self.recent.push_back(url);
                self.next = next;
                self.ahead = ahead;
            }
        }
        Some(Ok(page))
    }

    /// Ends the read with `e`: no listing is read further.
    fn end(&mut self, e: OktaError) -> OktaError {
        self.starts = Vec::new().into_iter();
        self.next = None;
        self.ahead = None;
        e
    }
}
