//! The Okta client: reads `/api/v1/users` and `/api/v1/groups/{id}/users` page by page,
//! following only `Link: rel="next"` on the org's own origin (the credentials go nowhere else).
//! Requests are authenticated by [`auth`](super::auth) (an SSWS API token, or an OAuth 2.0
//! access token, DPoP-bound when the app demands it) and paced by [`pacer`](super::pacer) to the
//! sync's share of the org's rate limit. A 429 waits until `X-Rate-Limit-Reset` (measured against
//! the response's `Date`); 5xx, network errors and pages that do not parse are retried; a DPoP
//! nonce challenge or an expired token is answered at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, DATE, HeaderMap, LINK};
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use super::auth::{Auth, Credentials, OAuth, Retry, SetupError};
use super::link;
use super::pacer::{Budget, Pacer};
use super::projection::{Projection, Users};
use crate::config::{OktaCredentials, OktaSettings, UserScope};
use crate::http;
use crate::metrics::{Metrics, Service};
use crate::retry::{Attempt, RetryPolicy, with_retry};

/// The largest page body accepted at Okta's largest page (200 users): large user objects fit
/// many times over. Smaller pages get a proportionally smaller cap (see [`max_page_bytes`]).
const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;
/// Okta's largest page, the one [`MAX_PAGE_BYTES`] is sized for.
const LARGEST_PAGE: usize = 200;
/// The cap of the smallest pages.
const MIN_PAGE_BYTES: usize = 1024 * 1024;

/// The largest body accepted for a page of at most `page_size` users.
fn max_page_bytes(page_size: u32) -> usize {
    let users = (page_size as usize).clamp(1, LARGEST_PAGE);
    (MAX_PAGE_BYTES * users / LARGEST_PAGE).max(MIN_PAGE_BYTES)
}

/// A failure talking to Okta, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    #[error(
        "Okta rejected the API token (HTTP 401{}): the token is wrong, expired or revoked; \
         create a new one under Security > API > Tokens",
        code_suffix(.code)
    )]
    Unauthorized { code: String },
    #[error("Okta refused the request (HTTP 403{}): {}", code_suffix(.code), forbidden_advice(*.oauth, .what))]
    Forbidden {
        code: String,
        what: &'static str,
        oauth: bool,
    },
    #[error("cannot get an Okta access token: {what}")]
    OAuth { what: String },
    #[error("Okta answered HTTP {status} for {path}: {summary}")]
    Status {
        status: u16,
        path: String,
        summary: String,
    },
    #[error(
        "Okta's next-page link points to {found}, outside the org {org}: refused, the token is \
         only ever sent to the org"
    )]
    ForeignLink { found: String, org: String },
    #[error("Okta's next-page link is not a valid URL: {0}")]
    BadLink(String),
    #[error("cannot reach Okta at {org}: {detail}")]
    Network { org: String, detail: String },
    #[error("Okta sent a malformed page for {path}: {detail}")]
    Malformed { path: String, detail: String },
    #[error(
        "the system's random source failed: no unguessable ID (jti) for a client assertion or \
         DPoP proof could be made"
    )]
    Random(#[source] crate::signing::RandomError),
}

fn forbidden_advice(oauth: bool, what: &str) -> String {
    if oauth {
        format!(
            "the service app may not read {what}: assign it an admin role (Read-only \
             Administrator) under its Admin roles tab, and grant the matching okta.*.read scope"
        )
    } else {
        format!(
            "the token's administrator may not read {what}; give it the Read-only Administrator \
             role or a custom role with that permission"
        )
    }
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(", {code}")
    }
}

impl OktaError {
    /// The failing HTTP status behind this error, or 0 when there was none (no response, or a
    /// 200 whose body was unusable).
    pub fn http_status(&self) -> u16 {
        match self {
            OktaError::Unauthorized { .. } => 401,
            OktaError::Forbidden { .. } => 403,
            OktaError::Status { status, .. } => *status,
            _ => 0,
        }
    }
}

/// One page of users and where the next one is.
#[derive(Debug)]
pub struct Page {
    /// The page's users, as the client's projection keeps them.
    pub users: Users,
    /// The next page, none at the end, or why its link was refused (the users of this page are
    /// still good).
    pub next: Result<Option<Url>, OktaError>,
    /// Okta's clock when it answered (the response's `Date`), if it sent a readable one.
    pub date: Option<chrono::DateTime<chrono::Utc>>,
}

/// A 200 whose body is read but not yet parsed.
struct Fetched {
    url: Url,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The first try at the next page, started as soon as the page before it had its headers (its
/// `next` link). At most one is held per listing; dropping it aborts the request (a cancelled
/// run reads no further).
pub struct Ahead {
    url: Url,
    task: JoinHandle<(Attempt<Fetched, OktaError>, u8)>,
    /// The headers of a 200, sent as soon as they arrive (before the body is read); closed
    /// without a value when the try ends otherwise.
    headers: Option<oneshot::Receiver<HeaderMap>>,
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ahead")
            .field("path", &self.url.path())
            .finish()
    }
}

impl Ahead {
    /// The headers of the page's 200 as soon as they came, `None` when the try brought none
    /// (another status, an error, a lost task) or when they were already taken.
    async fn headers(&mut self) -> Option<HeaderMap> {
        self.headers.take()?.await.ok()
    }

    /// The try's outcome, and its count of answered authentication challenges (which the
    /// page's later tries go on from). A try that was lost (its task failed) is made again now.
    async fn join(
        mut self,
        client: &OktaClient,
        auth_retries: &AtomicU8,
    ) -> Attempt<Fetched, OktaError> {
        match (&mut self.task).await {
            Ok((tried, answered)) => {
                auth_retries.store(answered, Ordering::Relaxed);
                tried
            }
            Err(_) => {
                let path = self.url.path().to_owned();
                client
                    .try_fetch(&self.url, &path, auth_retries, |_| ())
                    .await
            }
        }
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A try that brought a 200's body, or what the retry loop does instead.
fn body_of<T>(tried: Attempt<Fetched, OktaError>) -> Result<Fetched, Attempt<T, OktaError>> {
    match tried {
        Attempt::Done(Ok(fetched)) => Ok(fetched),
        Attempt::Done(Err(e)) => Err(Attempt::Done(Err(e))),
        Attempt::Retry { error, reason } => Err(Attempt::Retry { error, reason }),
        Attempt::Wait {
            error,
            wait,
            reason,
            counts,
        } => Err(Attempt::Wait {
            error,
            wait,
            reason,
            counts,
        }),
    }
}

/// Takes what `slot` holds (a poisoned lock still holds it).
fn take(slot: &std::sync::Mutex<Option<Ahead>>) -> Option<Ahead> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Puts `ahead` in `slot`.
fn put(slot: &std::sync::Mutex<Option<Ahead>>, ahead: Option<Ahead>) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = ahead;
}

/// A parse's outcome as a try: a page that does not parse may be a proxy's glitch, and reading
/// it again is harmless.
fn parsed<T>(page: Result<T, OktaError>) -> Attempt<T, OktaError> {
    match page {
        Err(error @ OktaError::Malformed { .. }) => Attempt::retry(error),
        other => Attempt::Done(other),
    }
}

/// An authenticated client for one Okta org.
pub struct OktaClient {
    http: reqwest::Client,
    org: Url,
    auth: Auth,
    retry: RetryPolicy,
    page_size: u32,
    pacer: Pacer,
    metrics: Arc<Metrics>,
    projection: Arc<Projection>,
    /// The size of the last page body read: room reserved for the next one.
    last_page_bytes: AtomicUsize,
}

impl std::fmt::Debug for OktaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaClient")
            .field("org", &self.org.as_str())
            .field("auth", &self.auth.describe())
            .finish()
    }
}

impl OktaClient {
    /// The client of `settings`' org. With OAuth credentials its token requests share `retry`
    /// and `metrics` with the API's; setting that up is the only thing that can fail here.
    pub fn new(
        http: reqwest::Client,
        settings: &OktaSettings,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SetupError> {
        let auth = match &settings.credentials {
            OktaCredentials::Ssws(token) => Auth::Ssws(token.clone()),
            OktaCredentials::OAuth(o) => Auth::OAuth(Box::new(OAuth::new(
                http.clone(),
                &settings.org_url,
                o,
                retry,
                metrics.clone(),
            )?)),
        };
        Ok(OktaClient {
            http,
            org: settings.org_url.clone(),
            auth,
            retry,
            page_size: settings.page_size,
            pacer: Pacer::new(settings.rate_limit_share),
            metrics,
            projection: Arc::new(Projection::everything()),
            last_page_bytes: AtomicUsize::new(0),
        })
    }

    /// Keeps only these attributes of each user (the rest is skipped while parsing).
    pub fn with_projection(mut self, projection: Projection) -> Self {
        self.projection = Arc::new(projection);
        self
    }

    /// How the client authenticates, in words.
    pub fn auth_description(&self) -> String {
        self.auth.describe()
    }

    /// The first page URL of each listing the scope needs (one per group, else one). With
    /// `changed_since` (an Okta timestamp), user listings ask only for users updated after it,
    /// combined with the scope's own filter or search; group listings take no filter and are
    /// read in full.
    pub fn start_urls(&self, scope: &UserScope, changed_since: Option<&str>) -> Vec<Url> {
        let limit = self.page_size.to_string();
        let changed = changed_since.map(|t| format!("lastUpdated gt \"{t}\""));
        let combine = |own: &str| match &changed {
            Some(c) => format!("({own}) and {c}"),
            None => own.to_owned(),
        };
        let users = |extra: Option<(&str, String)>| {
            let mut url = self
                .org
                .join("api/v1/users")
                .unwrap_or_else(|_| self.org.clone());
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("limit", &limit);
                if let Some((k, v)) = extra {
                    q.append_pair(k, &v);
                }
            }
            url
        };
        match scope {
            UserScope::All => vec![users(changed.clone().map(|c| ("filter", c)))],
            UserScope::Filter(f) => vec![users(Some(("filter", combine(f))))],
            UserScope::Search(q) => vec![users(Some(("search", combine(q))))],
            UserScope::Groups(ids) => ids
                .iter()
                .map(|id| {
                    let mut url = self.org.clone();
                    if let Ok(mut segs) = url.path_segments_mut() {
                        segs.clear().extend(["api", "v1", "groups", id, "users"]);
                    }
                    url.query_pairs_mut().append_pair("limit", &limit);
                    url
                })
                .collect(),
        }
    }

    /// Fetches one page, retrying what is transient.
    pub async fn page(&self, url: &Url) -> Result<Page, OktaError> {
        let path = url.path().to_owned();
        let auth_retries = AtomicU8::new(0);
        with_retry(
            &self.retry,
            "okta page",
            || self.metrics.retry(Service::Okta),
            || async {
                let tried = self.try_fetch(url, &path, &auth_retries, |_| ()).await;
                let fetched = match body_of(tried) {
                    Ok(fetched) => fetched,
                    Err(not_a_page) => return not_a_page,
                };
                let next = self.next_of(&fetched);
                parsed(self.parse_page(fetched, next, &path))
            },
        )
        .await
    }

    /// One cheap authenticated call (`GET /api/v1/users?limit=1`), for `check`.
    pub async fn probe(&self) -> Result<(), OktaError> {
        let mut url = self
            .org
            .join("api/v1/users")
            .unwrap_or_else(|_| self.org.clone());
        url.query_pairs_mut().append_pair("limit", "1");
        self.page(&url).await.map(|_| ())
    }

    /// One cheap call on a group the run reads (`GET /api/v1/groups/{id}/users?limit=1`, the
    /// run's own URL for it), for `check`.
    pub async fn probe_group(&self, id: &str) -> Result<(), OktaError> {
        let scope = UserScope::Groups(vec![id.to_owned()]);
        for mut url in self.start_urls(&scope, None) {
            url.query_pairs_mut().clear().append_pair("limit", "1");
            self.page(&url).await?;
        }
        Ok(())
    }

    /// One user by Okta id or login (`GET /api/v1/users/{id}`, the login URL-encoded), whole
    /// (no projection), its numbers as Okta wrote them; `None` when Okta knows no such user
    /// (404). Retried, paced and authenticated as every page is.
    pub async fn user(&self, id_or_login: &str) -> Result<Option<Value>, OktaError> {
        let mut url = self.org.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.clear().extend(["api", "v1", "users", id_or_login]);
        }
        let path = url.path().to_owned();
        let auth_retries = AtomicU8::new(0);
        with_retry(
            &self.retry,
            "okta user",
            || self.metrics.retry(Service::Okta),
            || self.try_user(&url, &path, &auth_retries),
        )
        .await
    }

    /// Fetches one page, retrying what is transient, and starts fetching the page after it as
    /// soon as its link is known (before this one is parsed): the returned [`Ahead`] is that
    /// next page's first try, to hand back with its URL on the next call. `ahead` is used only
    /// when it is for `url`; `follow` says whether a next link may be fetched ahead (a link the
    /// caller will refuse is not requested). When this page must be fetched again (its body was
    /// unusable), the page fetched after it waits: it is used after the retry, in order, if the
    /// retry links to the same URL, and dropped (aborted) otherwise.
    pub async fn page_ahead(
        self: &Arc<Self>,
        url: &Url,
        ahead: Option<Ahead>,
        follow: impl Fn(&Url) -> bool,
    ) -> Result<(Page, Option<Ahead>), OktaError> {
        let path = url.path().to_owned();
        let auth_retries = AtomicU8::new(0);
        let mut ahead = ahead.filter(|a| a.url == *url);
        // The next page, fetched ahead by a try of this one that had to be made again.
        let waiting: std::sync::Mutex<Option<Ahead>> = std::sync::Mutex::new(None);
        with_retry(
            &self.retry,
            "okta page",
            || self.metrics.retry(Service::Okta),
            || {
                let first = ahead.take();
                let (path, auth_retries, follow, waiting) =
                    (&path, &auth_retries, &follow, &waiting);
                async move {
                    // The next page's request goes out as soon as this page's headers name it,
                    // while this page's body is still on its way.
                    let start_next = |headers: &HeaderMap| {
                        if let Ok(Some(n)) = self.next_in(url, headers)
                            && follow(&n)
                        {
                            put(waiting, Some(self.ahead_for(waiting, &n)));
                        }
                    };
                    let tried = match first {
                        Some(mut first) => {
                            if let Some(headers) = first.headers().await {
                                start_next(&headers);
                            }
                            first.join(self, auth_retries).await
                        }
                        None => self.try_fetch(url, path, auth_retries, start_next).await,
                    };
                    let fetched = match body_of(tried) {
                        Ok(fetched) => fetched,
                        Err(not_a_page) => return not_a_page,
                    };
                    let next = self.next_of(&fetched);
                    let after = match &next {
                        Ok(Some(n)) if follow(n) => Some(self.ahead_for(waiting, n)),
                        _ => {
                            // A page fetched ahead for a link this page does not have: dropped.
                            drop(take(waiting));
                            None
                        }
                    };
                    match self.parse_page(fetched, next, path) {
                        Ok(page) => Attempt::Done(Ok((page, after))),
                        Err(e) => {
                            put(waiting, after);
                            parsed(Err(e))
                        }
                    }
                }
            },
        )
        .await
    }

    /// The users whose `profile.{attribute}` equals `value` (Okta's `search`, which ignores
    /// case), at most `limit`, and whether Okta has more.
    pub async fn search_users(
        &self,
        attribute: &str,
        value: &str,
        limit: u32,
    ) -> Result<(Vec<Value>, bool), OktaError> {
        let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
        let mut url = self
            .org
            .join("api/v1/users")
            .unwrap_or_else(|_| self.org.clone());
        url.query_pairs_mut()
            .append_pair("search", &format!("profile.{attribute} eq \"{quoted}\""))
            .append_pair("limit", &limit.min(self.page_size).to_string());
        let page = self.page(&url).await?;
        Ok((page.users.values(), matches!(page.next, Ok(Some(_)))))
    }

    /// One try at one user: as [`try_page`](Self::try_page), but the body is one object.
    async fn try_user(
        &self,
        url: &Url,
        path: &str,
        auth_retries: &AtomicU8,
    ) -> Attempt<Option<Value>, OktaError> {
        self.pace().await;
        let credentials = match self.auth.credentials("GET", url).await {
            Ok(c) => c,
            Err(e) => return Attempt::Done(Err(e)),
        };
        let response = match self.send(url, credentials).await {
            Ok(r) => r,
            Err(error) => return Attempt::retry(error),
        };
        let status = response.status();
        let headers = response.headers().clone();
        self.pacer.observe(&headers);
        let read = http::read_body_decoding(response, MIN_PAGE_BYTES, 0).await;
        let body = match self.answer_body(status, read, path) {
            Ok(body) => body,
            Err(again) => return again,
        };
        match status {
            StatusCode::OK => match serde_json::from_slice::<Value>(&body) {
                Ok(user @ Value::Object(_)) => Attempt::Done(Ok(Some(user))),
                Ok(_) => Attempt::Done(Err(OktaError::Malformed {
                    path: path.into(),
                    detail: format!("expected a user object, got {}", json_kind(&body)),
                })),
                Err(e) => Attempt::retry(OktaError::Malformed {
                    path: path.into(),
                    detail: format!("not a user: {e}"),
                }),
            },
            StatusCode::NOT_FOUND => Attempt::Done(Ok(None)),
            _ => match self.auth_challenge(status, &headers, auth_retries) {
                Some(again) => again,
                None => self.refusal(status, &headers, &body, path),
            },
        }
    }

    /// The try at `next` that `waiting` holds, else a new one; one `waiting` held for another
    /// page is dropped (aborted).
    fn ahead_for(self: &Arc<Self>, waiting: &std::sync::Mutex<Option<Ahead>>, next: &Url) -> Ahead {
        match take(waiting) {
            Some(w) if w.url == *next => w,
            _ => self.fetch_ahead(next.clone()),
        }
    }

    /// Starts the first try at the page at `url` in a task of its own.
    fn fetch_ahead(self: &Arc<Self>, url: Url) -> Ahead {
        let client = Arc::clone(self);
        let target = url.clone();
        let (sender, headers) = oneshot::channel();
        let task = tokio::spawn(async move {
            let auth_retries = AtomicU8::new(0);
            let path = target.path().to_owned();
            let tried = client
                .try_fetch(&target, &path, &auth_retries, |h| {
                    let _ = sender.send(h.clone());
                })
                .await;
            (tried, auth_retries.into_inner())
        });
        Ahead {
            url,
            task,
            headers: Some(headers),
        }
    }

    /// One try at a page: the pacer's pause, the credentials, the request, and its answer as an
    /// [`Attempt`]: a 200's body still to be parsed, or why not. A 200's headers are handed to
    /// `on_headers` as soon as they arrive, before the body is read.
    async fn try_fetch(
        &self,
        url: &Url,
        path: &str,
        auth_retries: &AtomicU8,
        on_headers: impl FnOnce(&HeaderMap),
    ) -> Attempt<Fetched, OktaError> {
        // The pause first: the credentials (a DPoP proof's `iat`) are as fresh as the request.
        self.pace().await;
        let credentials = match self.auth.credentials("GET", url).await {
            Ok(c) => c,
            Err(e) => return Attempt::Done(Err(e)),
        };
        let response = match self.send(url, credentials).await {
            Ok(r) => r,
            Err(error) => return Attempt::retry(error),
        };
        let status = response.status();
        let headers = response.headers().clone();
        self.pacer.observe(&headers);
        if status == StatusCode::OK {
            on_headers(&headers);
        }
        // Pages are alike in size: room for the last one's size and an eighth more.
        let last = self.last_page_bytes.load(Ordering::Relaxed);
        let expected = last.saturating_add(last / 8);
        let limit = max_page_bytes(self.page_size);
        let read = http::read_body_decoding(response, limit, expected).await;
        let body = match self.answer_body(status, read, path) {
            Ok(body) => body,
            Err(again) => return again,
        };
        if status == StatusCode::OK {
            self.last_page_bytes.store(body.len(), Ordering::Relaxed);
            return Attempt::Done(Ok(Fetched {
                url: url.clone(),
                headers,
                body,
            }));
        }
        if let Some(again) = self.auth_challenge(status, &headers, auth_retries) {
            return again;
        }
        self.refusal(status, &headers, &body, path)
    }

    /// Waits as long as the pacer asks (at most `max_rate_limit_wait`): only when this sync's
    /// share of the rate limit is spent, until the window resets.
    async fn pace(&self) {
        let pause = self.pacer.delay().min(self.retry.max_rate_limit_wait);
        if !pause.is_zero() {
            tracing::info!(
                pause_ms = pause.as_millis() as u64,
                "this sync's share of the Okta rate limit is spent: waiting for the window to reset"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// Sends the GET with its credentials and counts it in the metrics (with its status, when
    /// an answer came).
    async fn send(
        &self,
        url: &Url,
        credentials: Credentials,
    ) -> Result<reqwest::Response, OktaError> {
        let mut request = self
            .http
            .get(url.clone())
            .header(AUTHORIZATION, credentials.authorization)
            .header(ACCEPT, "application/json")
            // Inflated by http::read_body_decoding, not by reqwest (see http::client_undecoded).
            .header(ACCEPT_ENCODING, "gzip");
        if let Some(proof) = credentials.dpop {
            request = request.header("DPoP", proof);
        }
        let sent = request.send().await;
        self.metrics.request(
            Service::Okta,
            sent.as_ref().ok().map(|r| r.status().as_u16()),
        );
        sent.map_err(|e| self.network_error(http::describe(&e)))
    }

    /// An answer's body, or what the try comes to when it could not be read. The body of an
    /// answer other than a 200 only adds detail to its status: one in an encoding this client
    /// does not read, or a gzip stream that does not inflate, reads as empty and the status
    /// decides (a 503 is retried, a 429 waits).
    fn answer_body<T>(
        &self,
        status: StatusCode,
        read: Result<Vec<u8>, http::BodyError>,
        path: &str,
    ) -> Result<Vec<u8>, Attempt<T, OktaError>> {
        match read {
            Ok(body) => Ok(body),
            Err(http::BodyError::Encoding(_) | http::BodyError::Corrupt(_))
                if status != StatusCode::OK =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(self.unread_body(e, path)),
        }
    }

    /// A body that could not be read: one over the size cap or in an encoding this client
    /// does not read is final (it would be again), a connection lost on the way or a gzip
    /// stream that does not inflate (a proxy's glitch?) is retried.
    fn unread_body<T>(&self, e: http::BodyError, path: &str) -> Attempt<T, OktaError> {
        let malformed = |e: http::BodyError| OktaError::Malformed {
            path: path.into(),
            detail: e.to_string(),
        };
        match e {
            http::BodyError::TooLarge { .. } | http::BodyError::Encoding(_) => {
                Attempt::Done(Err(malformed(e)))
            }
            http::BodyError::Corrupt(_) => Attempt::retry(malformed(e)),
            http::BodyError::Read(_) => Attempt::retry(self.network_error(e.to_string())),
        }
    }

    /// The org could not be reached, or the connection broke before the whole answer came.
    fn network_error(&self, detail: String) -> OktaError {
        OktaError::Network {
            org: self.org.origin().ascii_serialization(),
            detail,
        }
    }

    /// A DPoP nonce challenge, or a token that expired: the request goes again at once with the
    /// new nonce or a new token, twice at most per page so that a server that keeps asking
    /// ends in the refusal itself.
    fn auth_challenge<T>(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        auth_retries: &AtomicU8,
    ) -> Option<Attempt<T, OktaError>> {
        let again = self.auth.answer(status.as_u16(), headers);
        if again == Retry::No || auth_retries.fetch_add(1, Ordering::Relaxed) >= 2 {
            return None;
        }
        let reason = match again {
            Retry::Nonce => "Okta asks for a new DPoP nonce",
            _ => "Okta says the access token expired; fetching a new one",
        };
        Some(Attempt::Wait {
            error: OktaError::Unauthorized {
                code: String::new(),
            },
            wait: Duration::ZERO,
            reason: reason.into(),
            counts: false,
        })
    }

    /// Any other answer: 401 and 403 are final and say what to change, a 429 waits for the rate
    /// limit's reset, a 5xx is retried after a back-off, anything else is final.
    fn refusal<T>(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        path: &str,
    ) -> Attempt<T, OktaError> {
        let (code, summary) = okta_error_body(body, &self.auth.secrets());
        let error = |summary| OktaError::Status {
            status: status.as_u16(),
            path: path.into(),
            summary,
        };
        match status {
            StatusCode::UNAUTHORIZED => Attempt::Done(Err(OktaError::Unauthorized { code })),
            StatusCode::FORBIDDEN => Attempt::Done(Err(OktaError::Forbidden {
                code,
                what: if path.contains("/groups/") {
                    "groups and their members"
                } else {
                    "users"
                },
                oauth: matches!(self.auth, Auth::OAuth(_)),
            })),
            StatusCode::TOO_MANY_REQUESTS => {
                // A limit of 0 is Okta's concurrent-request limit, not the per-minute one.
                let kind = if Budget::from_headers(headers).is_some_and(|b| b.limit == 0) {
                    "concurrent-request limit"
                } else {
                    "rate limit"
                };
                Attempt::Wait {
                    reason: format!("Okta {kind} reached (429 {code}); waiting for its reset"),
                    error: error(summary),
                    wait: rate_limit_wait(headers),
                    counts: false,
                }
            }
            s if s.is_server_error() => Attempt::retry(error(summary)),
            _ => Attempt::Done(Err(error(summary))),
        }
    }

    /// A 200's next link (resolved and checked), known from its headers alone.
    fn next_of(&self, fetched: &Fetched) -> Result<Option<Url>, OktaError> {
        self.next_in(&fetched.url, &fetched.headers)
    }

    /// The `next` link in the headers of the page at `url`, checked as [`next_of`] does.
    fn next_in(&self, url: &Url, headers: &HeaderMap) -> Result<Option<Url>, OktaError> {
        let links = headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok());
        link::next_link(links)
            .map(|raw| self.checked_next(url, raw))
            .transpose()
    }

    /// A 200's body read as users (only the projected attributes), with its next link and its
    /// `Date`. A page is what Okta sends: an array of at most `page_size` users.
    fn parse_page(
        &self,
        fetched: Fetched,
        next: Result<Option<Url>, OktaError>,
        path: &str,
    ) -> Result<Page, OktaError> {
        let malformed = |detail: String| OktaError::Malformed {
            path: path.into(),
            detail,
        };
        let date = fetched
            .headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(chrono::DateTime::<chrono::Utc>::from);
        let body = fetched.body;
        let is_array = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'[');
        if !is_array {
            return Err(malformed(format!(
                "expected a JSON array of users, got {}",
                json_kind(&body)
            )));
        }
        let users = Users::parse(&self.projection, body, self.page_size as usize)
            .map_err(|e| malformed(format!("not a page of users: {e}")))?;
        Ok(Page { users, next, date })
    }

    /// Resolves a next link (relative to the page it came with) and refuses it unless it is on
    /// the org's scheme, host and port.
    fn checked_next(&self, page_url: &Url, raw: &str) -> Result<Url, OktaError> {
        let url = page_url
            .join(raw)
            .map_err(|e| OktaError::BadLink(format!("{e}")))?;
        if url.origin() != self.org.origin() {
            return Err(OktaError::ForeignLink {
                found: url.origin().ascii_serialization(),
                org: self.org.origin().ascii_serialization(),
            });
        }
        Ok(url)
    }
}

/// What a body that is not an array looks like, from its first byte: it is not parsed (it could
/// be anything, of any size).
fn json_kind(body: &[u8]) -> &'static str {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => "an empty body",
        Some(b'{') => "an object",
        Some(b'"') => "a string",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(_) => "something that is not JSON",
    }
}

/// Okta's error body: `errorCode` and `errorSummary`, or a short excerpt of whatever came.
fn okta_error_body(body: &[u8], secrets: &[&SecretString]) -> (String, String) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct OktaErrorBody {
        error_code: Option<String>,
        error_summary: Option<String>,
    }
    match serde_json::from_slice::<OktaErrorBody>(body) {
        Ok(b) => {
            let code = b.error_code.unwrap_or_default();
            let summary = b.error_summary.unwrap_or_default();
            (
                http::excerpt(code.as_bytes(), secrets),
                http::excerpt(summary.as_bytes(), secrets),
            )
        }
        Err(_) => (String::new(), http::excerpt(body, secrets)),
    }
}

/// How long to wait after a 429: until `X-Rate-Limit-Reset`, counted from the response's `Date`
/// (the server's clock, not ours), plus one second for the header's rounding.
pub fn rate_limit_wait(headers: &HeaderMap) -> Duration {
    let reset = headers
        .get("x-rate-limit-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let now = headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or_else(SystemTime::now);
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    match reset {
        Some(reset) => Duration::from_secs(reset.saturating_sub(now).saturating_add(1)),
        None => Duration::from_secs(60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn wait_is_measured_against_the_servers_date() {
        // The recorded Okta response: Date 18:19:48 GMT, reset 1598552424 (18:20:24).
        let h = headers(&[
            ("date", "Thu, 27 Aug 2020 18:19:48 GMT"),
            ("x-rate-limit-reset", "1598552424"),
        ]);
        assert_eq!(rate_limit_wait(&h), Duration::from_secs(37));
        let past = headers(&[
            ("date", "Thu, 27 Aug 2020 18:30:00 GMT"),
            ("x-rate-limit-reset", "1598552424"),
        ]);
        assert_eq!(rate_limit_wait(&past), Duration::from_secs(1));
        assert_eq!(rate_limit_wait(&headers(&[])), Duration::from_secs(60));
    }

    #[test]
    fn a_client_that_cannot_be_set_up_says_why_in_a_typed_error() {
        use crate::config::{OAuthSettings, Timeouts};
        use crate::signing::PrivateKey;
        use okta_pendo_testkit::keys;

        // An org URL no path can be joined to: the token endpoint cannot be built.
        let settings = OktaSettings {
            org_url: Url::parse("mailto:okta@example.com").unwrap(),
            credentials: OktaCredentials::OAuth(OAuthSettings {
                client_id: "0oa1".into(),
                private_key: PrivateKey::from_pem(keys::EC_PRIVATE_PEM).unwrap(),
                key_id: None,
                scopes: vec!["okta.users.read".into()],
            }),
            scope: UserScope::All,
            page_size: 200,
            rate_limit_share: 0.5,
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                request: Duration::from_secs(1),
            },
        };
        let metrics = Arc::new(Metrics::new());
        let e = OktaClient::new(
            reqwest::Client::new(),
            &settings,
            RetryPolicy::default(),
            metrics,
        )
        .unwrap_err();
        assert!(matches!(e, SetupError::TokenUrl(_)), "{e:?}");
        assert_eq!(
            crate::runner::ClientError::Okta(e).to_string(),
            "cannot set up the Okta client: cannot build the token URL: relative URL with a \
             cannot-be-a-base base"
        );
    }
}
