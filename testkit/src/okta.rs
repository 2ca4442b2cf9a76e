//! A local Okta Users API, shaped after recorded Okta traffic.
//!
//! [`FakeOkta`] serves `GET /api/v1/users`, `GET /api/v1/users/{id or login}` (one user, any
//! status) and `GET /api/v1/groups/{id}/users` on 127.0.0.1 with
//! Okta's wire format: a JSON array body, `content-type: application/json;charset=UTF-8`, a
//! `date`, `x-okta-request-id`, the three `x-rate-limit-*` headers, lowercase `link` headers
//! (`rel="self"` always, `rel="next"` while users remain, absolute URLs with an opaque `after`
//! cursor), gzip when asked, and Okta error bodies (`errorCode`, `errorSummary`, `errorLink`,
//! `errorId`, `errorCauses`). Faults ([`OktaFault`]) are injected by request number.
//!
//! `filter` and `search` on `/api/v1/users` are parsed as Okta does: conditions combined with
//! `and`, `or` and parentheses (`and` binds tighter), operators case-insensitive; `filter`
//! accepts only `eq` on `status`, `id`, `profile.login`, `profile.email`, `profile.firstName`,
//! `profile.lastName` and `eq`/`gt`/`ge`/`lt`/`le` on `lastUpdated` (values case-sensitive);
//! `search` also accepts `eq`/`sw` on any `profile.*` attribute (`co` on the four name
//! attributes), `eq`/`gt`/`ge`/`lt`/`le` on `id`, `status`, `created`, `activated`,
//! `statusChanged` and `lastUpdated`, and `eq` on `type.id` (values case-insensitive).
//! Timestamps compare as instants. Anything else answers 400 E0000031 "Invalid search
//! criteria.". Group listings ignore both parameters. Without `filter` and `search`,
//! `/api/v1/users` omits users whose status is `DEPROVISIONED` (group listings do not).
//! Users can be changed while the server runs with [`FakeOkta::modify_user`] and
//! [`FakeOkta::touch_user`].

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::oauth::{OAuthOptions, OAuthState, TOKEN_PATH, TokenRequest};
use crate::query::{Expr, Mode, Subject};
use crate::stream::{CutBody, HugeBody};
use crate::users::{
    Logins, generated_last_updated, generated_user_with, write_generated_user,
    write_generated_user_with,
};

/// Where the users served by a [`FakeOkta`] come from.
#[derive(Debug, Clone, PartialEq)]
pub enum UserSource {
    /// `n` users made by [`crate::users::write_generated_user`] for indices `0..n`, rendered on
    /// the fly (no per-user allocation; fit for a million users).
    Generated(usize),
    /// Like [`Generated`](Self::Generated), but with realistic logins and emails
    /// ([`Logins::Realistic`]: `first.last@company.com`, in an order unrelated to the ids).
    GeneratedRealistic(usize),
    /// These exact user objects, served in this order.
    Explicit(Vec<serde_json::Value>),
}

impl UserSource {
    /// How many users the source holds.
    pub fn len(&self) -> usize {
        match self {
            UserSource::Generated(n) | UserSource::GeneratedRealistic(n) => *n,
            UserSource::Explicit(v) => v.len(),
        }
    }

    /// The kind of logins of generated users; `None` for explicit ones.
    pub fn logins(&self) -> Option<Logins> {
        match self {
            UserSource::Generated(_) => Some(Logins::Sequential),
            UserSource::GeneratedRealistic(_) => Some(Logins::Realistic),
            UserSource::Explicit(_) => None,
        }
    }

    /// Whether the source holds no user.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How the `link` relations of a page are laid out in the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkStyle {
    /// One `link` header line per relation (`rel="self"`, then `rel="next"`), as Okta sends.
    #[default]
    SeparateLines,
    /// One line `<..>; rel="self", <..>; rel="next"`, as some proxies produce.
    CommaJoined,
}

/// Configuration of a [`FakeOkta`].
#[derive(Debug, Clone)]
pub struct OktaOptions {
    /// Expected API token: requests must carry `Authorization: SSWS {token}`.
    pub token: String,
    /// The users served.
    pub users: UserSource,
    /// Group id -> indices into the user list, served at `/api/v1/groups/{id}/users`.
    pub groups: Vec<(String, Vec<usize>)>,
    /// Layout of the `link` headers.
    pub link_style: LinkStyle,
    /// Value of `x-rate-limit-limit` (requests per one-minute window); default 600.
    pub rate_limit: u32,
    /// The latency of a user-list response (benchmarks): the time from the request to the
    /// response's headers, the server's own work (the page, its gzip) included; default zero.
    pub page_delay: Duration,
    /// Keep [`page_delay`](Self::page_delay) close (a thread sleeps its last 2 ms: 100.21 ms
    /// median for 100 ms, measured from the handler's start) instead of tokio's timer, whose
    /// whole-millisecond ticks add about one to each page (101.19 ms): for benchmarks. Not with a paused clock (the thread's sleep is real time);
    /// default false.
    pub precise_page_delay: bool,
    /// Faults to inject, by request number.
    pub faults: Vec<OktaFault>,
    /// An enforced request budget per window of [`budget_window`](Self::budget_window); default
    /// `None`: nothing is enforced and the `x-rate-limit-*` headers count down
    /// [`rate_limit`](Self::rate_limit) per clock minute, as before. (The name says "per
    /// minute"; the window is [`budget_window`](Self::budget_window), 60 s unless shortened.)
    ///
    /// With `Some(n)`, windows are fixed windows anchored at the first request, not aligned to
    /// the clock: a window opens at the first request received while no window is open and
    /// lasts `budget_window`; the next window opens at the first request after it ended (so a
    /// test's burst of requests always falls in one window). Every request that passes the token
    /// check uses one unit (requests answered 401 use none; faulted requests do); the headers
    /// are `x-rate-limit-limit: n`, `x-rate-limit-remaining: n - used` and
    /// `x-rate-limit-reset` = the end of the window in UTC epoch seconds, rounded up to a whole
    /// second (so `reset - date` never undershoots the real wait). A request beyond the budget
    /// answers 429 with errorCode E0000047, `x-rate-limit-remaining: 0` and the window's reset,
    /// before any [`OktaFault`] of that request number is considered; it uses no budget and is
    /// recorded with status 429 and counted by [`FakeOkta::rate_limited_count`].
    pub budget_per_minute: Option<u32>,
    /// Length of a budget window (see [`budget_per_minute`](Self::budget_per_minute)); default
    /// 60 s. Tests shorten it (e.g. 2 s with a budget of 5). Values below 1 ms count as 1 ms.
    pub budget_window: Duration,
    /// OAuth 2.0 for a service app instead of the `SSWS` [`token`](Self::token); default `None`
    /// (`SSWS`, as before). With `Some`, the server also answers `POST /oauth2/v1/token`
    /// (client credentials, `private_key_jwt`, DPoP; see [`crate::oauth`]) and every other
    /// request must carry an access token it issued (`Authorization: DPoP …` with a `DPoP`
    /// proof, or `Authorization: Bearer …`); an `SSWS` token answers 401 E0000011.
    ///
    /// Token-endpoint requests are recorded in [`FakeOkta::token_requests`] only: they are not
    /// in [`FakeOkta::requests`], take no request number (so [`OktaFault`]s count API requests
    /// as without OAuth), use no [`budget_per_minute`](Self::budget_per_minute) and carry no
    /// `x-rate-limit-*` headers. API requests refused by the OAuth checks (401, 403) are
    /// recorded, use no budget and get no fault, like a wrong `SSWS` token.
    pub oauth: Option<OAuthOptions>,
    /// How far the org's clock is from this machine's, in seconds (negative: behind); default
    /// 0. It moves what the responses say of time: the `date` header and the
    /// `x-rate-limit-reset` epochs, as a real org's clock would differ from a client host's.
    pub clock_skew_secs: i64,
}

impl Default for OktaOptions {
    fn default() -> Self {
        OktaOptions {
            token: "okta-test-token".to_owned(),
            users: UserSource::Generated(0),
            groups: Vec::new(),
            link_style: LinkStyle::SeparateLines,
            rate_limit: 600,
            page_delay: Duration::ZERO,
            precise_page_delay: false,
            faults: Vec::new(),
            budget_per_minute: None,
            budget_window: Duration::from_secs(60),
            oauth: None,
            clock_skew_secs: 0,
        }
    }
}

/// How long a `Hang` fault keeps a request waiting before answering anyway (unless the server
/// is dropped first, which aborts it).
pub const HANG_DURATION: Duration = Duration::from_secs(300);

/// A fault injected into one request. `request` is 0-based and counts every request the
/// server receives (whatever its path); faults apply only to requests that passed the token
/// check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OktaFault {
    /// The n-th request answers `status` with an Okta error body.
    Status {
        /// 0-based request number.
        request: usize,
        /// HTTP status to answer (an invalid code becomes 500).
        status: u16,
    },
    /// The n-th request answers `status` with an Okta error body labelled
    /// `content-encoding: {coding}` (a proxy's error page, say, in an encoding not asked for).
    StatusInOtherEncoding {
        /// 0-based request number.
        request: usize,
        /// HTTP status to answer (an invalid code becomes 500).
        status: u16,
        /// The `content-encoding` sent, e.g. `br`.
        coding: String,
    },
    /// The n-th request answers 429 with errorCode E0000047, `x-rate-limit-remaining: 0` and
    /// `x-rate-limit-reset` = now + `reset_after_secs` as UTC epoch seconds, with a matching
    /// `date` (both taken from the same instant).
    RateLimited {
        /// 0-based request number.
        request: usize,
        /// Seconds from the response's `date` to `x-rate-limit-reset`.
        reset_after_secs: u64,
    },
    /// The n-th request answers its page normally but its `rel="next"` link points at `target`
    /// (a base URL like `"http://127.0.0.1:9999"`) instead of this server. The foreign link is
    /// sent even when the page is the last one.
    ForeignNextLink {
        /// 0-based request number.
        request: usize,
        /// Base URL the next link points at.
        target: String,
    },
    /// The n-th request answers its page normally but its `rel="next"` link is relative
    /// (`</api/v1/users?after=…&limit=…>`, no scheme or host), which RFC 8288 allows: a client
    /// resolves it against the page's URL.
    RelativeNextLink {
        /// 0-based request number.
        request: usize,
    },
    /// The n-th request answers its page normally but its `rel="next"` link is the request's
    /// own URL: a paging loop a client must notice rather than follow forever.
    LoopingNextLink {
        /// 0-based request number.
        request: usize,
    },
    /// The n-th request answers 200 with the normal page headers (links included) but a body
    /// that is not valid JSON: the page's JSON cut at half its length (at least `[`), e.g.
    /// `[{"id":"00u00000000000000000","status":"AC`. It is gzip-encoded when asked, so the
    /// client decodes it fine and fails on the JSON. Applies only when the request would have
    /// answered a page (200); otherwise the error is answered unchanged.
    MalformedJson {
        /// 0-based request number.
        request: usize,
    },
    /// The n-th request answers 200 with an Okta error object instead of the array of users:
    /// `{"errorCode":"E0000009","errorSummary":"Internal Server Error","errorLink":"E0000009",
    /// "errorId":"oae...","errorCauses":[]}`, with the normal headers and only a
    /// `rel="self"` link.
    NotAnArray {
        /// 0-based request number.
        request: usize,
    },
    /// The n-th request answers 200 whose body is a valid JSON array of generated users (the
    /// same shape as [`UserSource::Generated`], ids from `00u00000000000000000` on, whatever
    /// the configured users), padded with spaces before the closing `]` to exactly `bytes`
    /// bytes (at least 2: `[]`), with only a `rel="self"` link. The body is generated while it
    /// is sent, 64 KiB at a time, never held in memory. Without gzip it carries
    /// `content-length: bytes`; when the client asks for gzip it is gzip-encoded on the fly and
    /// sent chunked (no content-length), so `bytes` is the *decoded* size (a gzip bomb of
    /// sorts: a few KB on the wire per MB decoded). For a client's body-size cap.
    HugeBody {
        /// 0-based request number.
        request: usize,
        /// Length of the (decoded) body in bytes.
        bytes: usize,
    },
    /// The n-th request answers 200 whose body is `[0,0,0,...]`: a valid JSON array of zeros,
    /// `bytes` long (rounded down to an odd length, at least `[0]`), with only a `rel="self"`
    /// link. Valid JSON, but not one user: for a client that must bound a page by what Okta
    /// can send.
    ZeroFilled {
        /// 0-based request number.
        request: usize,
        /// Length of the body in bytes.
        bytes: usize,
    },
    /// The n-th request answers 200 whose body is a valid JSON array of `users` generated users
    /// (ids from `00u00000000000000000` on, as for [`OktaFault::HugeBody`]) whatever the
    /// request's `limit`, with only a `rel="self"` link: more users than a page may hold.
    OverfullPage {
        /// 0-based request number.
        request: usize,
        /// Users in the page.
        users: usize,
    },
    /// The n-th request is recorded (status 0) and then never answered: the handler waits
    /// [`HANG_DURATION`] (300 s) and only then answers 504 with an Okta error body. Dropping
    /// the server aborts the wait and closes the connection. For client timeouts.
    Hang {
        /// 0-based request number.
        request: usize,
    },
    /// The n-th request answers 200 with the page's headers and a `content-length` of the
    /// whole page, sends the first half of the page (never gzip-encoded, even when asked: no
    /// `content-encoding`), waits briefly so those bytes reach the client, then aborts the
    /// connection: the client sees an incomplete body. Recorded with status 200. Applies only
    /// when the request would have answered a page (200).
    CutMidBody {
        /// 0-based request number.
        request: usize,
    },
    /// The n-th request answers 200 with the page's headers and `content-encoding: gzip` (even
    /// when not asked), but the gzip stream is damaged: the page gzip-encoded, then a byte in
    /// the middle of its deflate data changed, so that it fails to inflate or its CRC fails.
    /// Applies only when the request would have answered a page (200).
    CorruptGzip {
        /// 0-based request number.
        request: usize,
    },
    /// The n-th request answers 200 with the page's headers and its body as it is, but labelled
    /// `content-encoding: {coding}` (whatever the request accepts). Applies only when the
    /// request would have answered a page (200).
    OtherEncoding {
        /// 0-based request number.
        request: usize,
        /// The `content-encoding` sent, e.g. `br`.
        coding: String,
    },
    /// The n-th request hits Okta's *concurrency* limit: 429 with errorCode E0000047,
    /// `x-rate-limit-limit: 0`, `x-rate-limit-remaining: 0` and `x-rate-limit-reset` = now +
    /// `reset_after_secs` (UTC epoch seconds, from the same instant as the `date`).
    ConcurrencyLimited {
        /// 0-based request number.
        request: usize,
        /// Seconds from the response's `date` to `x-rate-limit-reset`.
        reset_after_secs: u64,
    },
    /// The n-th request serves its page normally except that the user at `index` within the
    /// page (0-based; no effect when the page is shorter) keeps its `id` and `lastUpdated` but
    /// has wrong-typed fields: `"status": 42`, `"created": true`, `"lastLogin": ["x"]`,
    /// `"profile": "not an object"`, `"credentials": "none"`, `"_links": 7`. A user a client
    /// must skip rather than crash on. Applies only when the request answers a page.
    BadUser {
        /// 0-based request number.
        request: usize,
        /// 0-based position of the bad user within the page.
        index: usize,
    },
}

/// One request received by a [`FakeOkta`], with what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// When it arrived.
    pub at: SystemTime,
    /// HTTP method.
    pub method: String,
    /// Path and query, as received.
    pub path_and_query: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Accept-Encoding` header, if any.
    pub accept_encoding: Option<String>,
    /// Status answered (0 while the answer is still being prepared).
    pub status: u16,
    /// Whether the body was gzip-encoded.
    pub gzipped: bool,
    /// The `filter` query parameter, percent-decoded (`+` as a space), if present (the last
    /// one when repeated), whatever the path.
    pub filter: Option<String>,
    /// The `search` query parameter, decoded the same way, if present.
    pub search: Option<String>,
}

/// A local fake Okta org on 127.0.0.1. Serves until dropped.
#[derive(Debug)]
pub struct FakeOkta {
    base_url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeOkta {
    /// Starts a server on 127.0.0.1 with an ephemeral port.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start(opts: OktaOptions) -> FakeOkta {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        match Self::start_on(addr, opts).await {
            Ok(server) => server,
            Err(e) => panic!("fake Okta: cannot bind 127.0.0.1:0: {e}"),
        }
    }

    /// Starts a server on `addr`.
    pub async fn start_on(
        addr: std::net::SocketAddr,
        opts: OktaOptions,
    ) -> std::io::Result<FakeOkta> {
        let (listener, base_url) = crate::server::bind(addr).await?;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(listener.local_addr()?.port());
        let oauth = match opts.oauth {
            Some(o) => Some(OAuthState::new(o, &base_url)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            base_url: base_url.clone(),
            oauth,
            expected_auth: format!("SSWS {}", opts.token),
            users: opts.users,
            groups: opts.groups.into_iter().collect(),
            link_style: opts.link_style,
            rate_limit: opts.rate_limit,
            page_delay: opts.page_delay,
            precise_page_delay: opts.precise_page_delay,
            faults: opts.faults,
            budget: opts.budget_per_minute,
            budget_window: opts.budget_window.max(Duration::from_millis(1)),
            clock_skew_secs: opts.clock_skew_secs,
            seed,
            state: Mutex::new(Inner::default()),
            overrides: Mutex::new(HashMap::new()),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let task = crate::server::spawn(listener, router);
        Ok(FakeOkta {
            base_url,
            shared,
            task,
        })
    }

    /// `"http://127.0.0.1:PORT"`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// How many 429s were answered so far, whatever the cause: the enforced budget
    /// ([`OktaOptions::budget_per_minute`]), [`OktaFault::RateLimited`],
    /// [`OktaFault::ConcurrencyLimited`] or [`OktaFault::Status`] with 429.
    pub fn rate_limited_count(&self) -> usize {
        self.shared.lock().rate_limited
    }

    /// Modifies user `index` (a position in [`OktaOptions::users`], for both
    /// [`UserSource::Generated`] and [`UserSource::Explicit`]): `f` receives the user's current
    /// JSON (as last modified, else as configured or generated) and the result replaces the
    /// user from then on: pages render it (keys then in `serde_json`'s map order), `filter` and
    /// `search` evaluate against it (`status`, `lastUpdated`, `created`, `profile.*`, ...), and
    /// a `status` of `DEPROVISIONED` hides it from unfiltered `/api/v1/users` listings. The
    /// user keeps its position in the listing and in the groups.
    ///
    /// `f` runs under the server's lock of modified users: it must not call back into this
    /// server.
    ///
    /// # Panics
    /// If `index` is not below the number of users.
    pub fn modify_user(&self, index: usize, f: impl FnOnce(&mut serde_json::Value)) {
        let total = self.shared.users.len();
        assert!(
            index < total,
            "fake Okta: modify_user({index}) but there are {total} users"
        );
        let mut overrides = self.shared.lock_overrides();
        let user = overrides
            .entry(index)
            .or_insert_with(|| self.shared.original_user(index));
        f(user);
    }

    /// Shorthand for [`modify_user`](Self::modify_user) that sets `lastUpdated` to `at` (an
    /// Okta timestamp like `"2026-11-28T10:00:00.000Z"`, see
    /// [`users::okta_timestamp`](crate::users::okta_timestamp)) and `profile.title` to `title`
    /// (creating `profile` if it is missing or not an object). A user that is not a JSON object
    /// is left as is.
    ///
    /// # Panics
    /// If `index` is not below the number of users.
    pub fn touch_user(&self, index: usize, at: &str, title: &str) {
        self.modify_user(index, |user| {
            let Some(obj) = user.as_object_mut() else {
                return;
            };
            obj.insert("lastUpdated".to_owned(), at.into());
            let profile = obj
                .entry("profile")
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if !profile.is_object() {
                *profile = serde_json::Value::Object(serde_json::Map::new());
            }
            if let Some(p) = profile.as_object_mut() {
                p.insert("title".to_owned(), title.into());
            }
        });
    }

    /// Every request received at the token endpoint (`POST /oauth2/v1/token`) so far, in
    /// arrival order; empty without [`OktaOptions::oauth`].
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared
            .oauth
            .as_ref()
            .map(OAuthState::token_requests)
            .unwrap_or_default()
    }

    /// Expires every access token issued so far, from now on (a token expiring mid-run): the
    /// API then answers 401 `invalid_token` "The access token is expired." to them. Tokens
    /// issued later are unaffected. No effect without [`OktaOptions::oauth`].
    pub fn expire_tokens(&self) {
        if let Some(o) = &self.shared.oauth {
            o.expire_tokens();
        }
    }

    /// How many DPoP proofs the API accepted so far (every check passed, the resource nonce
    /// included, whatever the scope and admin-role checks then answered); token-endpoint
    /// proofs are not counted. 0 without [`OktaOptions::oauth`].
    pub fn verified_proofs(&self) -> usize {
        self.shared
            .oauth
            .as_ref()
            .map_or(0, OAuthState::verified_proofs)
    }

    /// Replaces the server's DPoP nonces (token endpoint and API) with fresh ones, as a real
    /// server does from time to time: proofs carrying a previous nonce are then challenged
    /// (`use_dpop_nonce`) with the new one. No effect without [`OktaOptions::oauth`].
    pub fn rotate_nonces(&self) {
        if let Some(o) = &self.shared.oauth {
            o.rotate_nonces();
        }
    }

    /// The current JSON of user `index` (as modified by [`modify_user`](Self::modify_user),
    /// else as configured or generated); `None` when `index` is out of range.
    pub fn user(&self, index: usize) -> Option<serde_json::Value> {
        if index >= self.shared.users.len() {
            return None;
        }
        if let Some(v) = self.shared.lock_overrides().get(&index) {
            return Some(v.clone());
        }
        Some(self.shared.original_user(index))
    }
}

impl Drop for FakeOkta {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    base_url: String,
    /// OAuth instead of `SSWS`, when configured.
    oauth: Option<OAuthState>,
    expected_auth: String,
    users: UserSource,
    groups: HashMap<String, Vec<usize>>,
    link_style: LinkStyle,
    rate_limit: u32,
    page_delay: Duration,
    precise_page_delay: bool,
    faults: Vec<OktaFault>,
    budget: Option<u32>,
    budget_window: Duration,
    clock_skew_secs: i64,
    seed: u64,
    state: Mutex<Inner>,
    /// Users replaced by `FakeOkta::modify_user`, by index. Consulted per user only when
    /// non-empty.
    overrides: Mutex<HashMap<usize, serde_json::Value>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Shared")
            .field("base_url", &self.base_url)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_overrides(&self) -> std::sync::MutexGuard<'_, HashMap<usize, serde_json::Value>> {
        self.overrides.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// User `index` as configured (explicit) or generated, ignoring modifications.
    fn original_user(&self, index: usize) -> serde_json::Value {
        match (&self.users, self.users.logins()) {
            (UserSource::Explicit(v), _) => {
                v.get(index).cloned().unwrap_or(serde_json::Value::Null)
            }
            (_, logins) => generated_user_with(index, &self.base_url, logins.unwrap_or_default()),
        }
    }

    /// Pseudo-random alphanumeric id of `len` characters, derived from `n`.
    fn random_id(&self, prefix: &str, n: u64, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut x = self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut s = String::with_capacity(prefix.len() + len);
        s.push_str(prefix);
        for _ in 0..len {
            // splitmix64
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            s.push(ALPHABET[(z % 62) as usize] as char);
        }
        s
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<RecordedRequest>,
    window_minute: u64,
    window_used: u32,
    /// Start of the open budget window, if any.
    budget_start: Option<SystemTime>,
    /// Budget used in the open window.
    budget_used: u32,
    /// 429s answered.
    rate_limited: usize,
}

/// What a route answers, before encoding.
struct Reply {
    status: u16,
    body: Vec<u8>,
    links: Vec<String>,
    /// Overrides of the rate-limit headers (remaining, reset), for the 429 fault.
    rate_override: Option<(u32, u64)>,
    /// Override of `x-rate-limit-limit`, for the concurrency-limit fault.
    limit_override: Option<u32>,
    /// A body sent differently from `body`.
    special: Option<Special>,
    /// Extra response headers (`www-authenticate`, `dpop-nonce`).
    headers: Vec<(&'static str, String)>,
    /// Not sent before this instant (`page_delay`): the time the page took to make, render and
    /// gzip counts in the delay, as a real server's latency includes its own work.
    not_before: Option<tokio::time::Instant>,
}

/// Bodies that are not sent as one buffer.
enum Special {
    /// `OktaFault::HugeBody`: generated while sent, this many bytes.
    Huge(usize),
    /// `OktaFault::CutMidBody`: `body` is announced whole, half of it is sent.
    Cut,
    /// `OktaFault::CorruptGzip`: `body` gzip-encoded, then damaged.
    CorruptGzip,
    /// `OktaFault::OtherEncoding`: `body` as it is, labelled with this coding.
    Labelled(String),
}

impl Reply {
    fn ok(body: Vec<u8>, links: Vec<String>) -> Reply {
        Reply {
            status: 200,
            body,
            links,
            rate_override: None,
            limit_override: None,
            special: None,
            headers: Vec::new(),
            not_before: None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OktaError<'a> {
    error_code: &'a str,
    error_summary: &'a str,
    error_link: &'a str,
    error_id: &'a str,
    error_causes: [(); 0],
}

fn error_reply(shared: &Shared, n: usize, status: u16, code: &str, summary: &str) -> Reply {
    let id = shared.random_id("oae", n as u64 ^ 0x5555, 22);
    let body = serde_json::to_vec(&OktaError {
        error_code: code,
        error_summary: summary,
        error_link: code,
        error_id: &id,
        error_causes: [],
    })
    .unwrap_or_default();
    Reply {
        status,
        body,
        links: Vec::new(),
        rate_override: None,
        limit_override: None,
        special: None,
        headers: Vec::new(),
        not_before: None,
    }
}

/// The Okta error Okta sends for `status` when nothing more specific applies.
fn generic_error(shared: &Shared, n: usize, status: u16) -> Reply {
    let (code, summary) = match status {
        400 => ("E0000001", "Api validation failed"),
        401 => ("E0000011", "Invalid token provided"),
        403 => (
            "E0000006",
            "You do not have permission to perform the requested action",
        ),
        404 => ("E0000007", "Not found: Resource not found"),
        405 => (
            "E0000022",
            "The endpoint does not support the provided HTTP method",
        ),
        429 => (
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
        ),
        500 => ("E0000009", "Internal Server Error"),
        502 => ("E0000009", "Bad Gateway"),
        503 => ("E0000009", "Service Unavailable"),
        504 => ("E0000009", "Gateway Timeout"),
        s if s >= 500 => ("E0000009", "Internal Server Error"),
        _ => ("E0000001", "Api validation failed"),
    };
    error_reply(shared, n, status, code, summary)
}

fn header_string(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Constant-time comparison, so the token check leaks nothing through timing.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// `t` on the org's clock ([`OktaOptions::clock_skew_secs`] away from this machine's).
fn org_clock(shared: &Shared, t: SystemTime) -> SystemTime {
    let skew = Duration::from_secs(shared.clock_skew_secs.unsigned_abs());
    if shared.clock_skew_secs < 0 {
        t.checked_sub(skew).unwrap_or(t)
    } else {
        t.checked_add(skew).unwrap_or(t)
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = SystemTime::now();
    if let Some(oauth) = &shared.oauth
        && uri.path() == TOKEN_PATH
    {
        return oauth.token_endpoint(&method, &headers, &body, now);
    }
    let now_secs = org_clock(&shared, now)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let authorization = header_string(&headers, header::AUTHORIZATION);
    let accept_encoding = header_string(&headers, header::ACCEPT_ENCODING);
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| uri.path().to_owned());

    let (filter, search) = filter_and_search(uri.query().unwrap_or(""));

    let (authorized, denial) = match &shared.oauth {
        Some(oauth) => match oauth.check_api(&method, uri.path(), &headers, now) {
            Ok(()) => (true, None),
            Err(d) => (false, Some(d)),
        },
        None => (
            authorization
                .as_deref()
                .is_some_and(|a| same_secret(a.as_bytes(), shared.expected_auth.as_bytes())),
            None,
        ),
    };
    let (n, limit, remaining, reset, over_budget) = {
        let mut st = shared.lock();
        let n = st.requests.len();
        st.requests.push(RecordedRequest {
            at: now,
            method: method.to_string(),
            path_and_query: path_and_query.clone(),
            authorization: authorization.clone(),
            accept_encoding: accept_encoding.clone(),
            status: 0,
            gzipped: false,
            filter,
            search,
        });
        let minute = now_secs / 60;
        if st.window_minute != minute {
            st.window_minute = minute;
            st.window_used = 0;
        }
        st.window_used = st.window_used.saturating_add(1);
        match shared.budget {
            None => (
                n,
                shared.rate_limit,
                shared.rate_limit.saturating_sub(st.window_used),
                (minute + 1) * 60,
                false,
            ),
            Some(budget) => {
                let start = match st.budget_start {
                    Some(start) if now < start + shared.budget_window => start,
                    _ => {
                        st.budget_start = Some(now);
                        st.budget_used = 0;
                        now
                    }
                };
                let over = authorized && st.budget_used >= budget;
                if authorized && !over {
                    st.budget_used += 1;
                }
                (
                    n,
                    budget,
                    budget.saturating_sub(st.budget_used),
                    epoch_secs_ceil(org_clock(&shared, start + shared.budget_window)),
                    over,
                )
            }
        }
    };

    let reply = if let Some(d) = denial {
        let mut r = generic_error(&shared, n, d.status);
        r.headers
            .extend(d.www_authenticate.map(|v| ("www-authenticate", v)));
        r.headers.extend(d.dpop_nonce.map(|v| ("dpop-nonce", v)));
        r
    } else if !authorized {
        generic_error(&shared, n, 401)
    } else if over_budget {
        let mut r = generic_error(&shared, n, 429);
        r.rate_override = Some((0, reset));
        r
    } else {
        route(&shared, n, &method, &uri, &path_and_query, now_secs).await
    };

    let wants_gzip = accept_encoding
        .as_deref()
        .is_some_and(|a| a.to_ascii_lowercase().contains("gzip"));
    let mut content_length = None;
    let mut other_encoding = None;
    let not_before = reply.not_before;
    let extra_headers = reply.headers;
    let (body, gzip) = match reply.special {
        None => {
            let gzip = !reply.body.is_empty() && wants_gzip;
            let body = if gzip {
                gzip_bytes(&reply.body)
            } else {
                reply.body
            };
            (Body::from(body), gzip)
        }
        Some(Special::Huge(bytes)) => (
            Body::new(HugeBody::new(bytes, &shared.base_url, wants_gzip)),
            wants_gzip,
        ),
        Some(Special::Cut) => {
            content_length = Some(reply.body.len());
            (Body::new(CutBody::new(reply.body)), false)
        }
        Some(Special::CorruptGzip) => {
            let mut body = gzip_bytes(&reply.body);
            // Past the 10-byte header, before the 8-byte trailer.
            let middle = 10 + body.len().saturating_sub(18) / 2;
            if let Some(b) = body.get_mut(middle) {
                *b ^= 0x5a;
            }
            (Body::from(body), true)
        }
        Some(Special::Labelled(coding)) => {
            if let Ok(v) = HeaderValue::from_str(&coding) {
                other_encoding = Some(v);
            }
            (Body::from(reply.body), false)
        }
    };
    match not_before {
        Some(at) if shared.precise_page_delay => sleep_until_precisely(at).await,
        Some(at) => tokio::time::sleep_until(at).await,
        None => {}
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);

    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(org_clock(&shared, now))) {
        h.insert(header::DATE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&shared.random_id("", n as u64, 27)) {
        h.insert("x-okta-request-id", v);
    }
    let (remaining, reset) = reply.rate_override.unwrap_or((remaining, reset));
    let limit = reply.limit_override.unwrap_or(limit);
    h.insert("x-rate-limit-limit", HeaderValue::from(limit));
    h.insert("x-rate-limit-remaining", HeaderValue::from(remaining));
    h.insert("x-rate-limit-reset", HeaderValue::from(reset));
    match shared.link_style {
        LinkStyle::SeparateLines => {
            for link in &reply.links {
                if let Ok(v) = HeaderValue::from_str(link) {
                    h.append(header::LINK, v);
                }
            }
        }
        LinkStyle::CommaJoined => {
            if !reply.links.is_empty()
                && let Ok(v) = HeaderValue::from_str(&reply.links.join(", "))
            {
                h.insert(header::LINK, v);
            }
        }
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    for (name, value) in extra_headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(coding) = other_encoding {
        h.insert(header::CONTENT_ENCODING, coding);
    }
    if let Some(len) = content_length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }

    {
        let mut st = shared.lock();
        if let Some(r) = st.requests.get_mut(n) {
            r.status = status.as_u16();
            r.gzipped = gzip;
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            st.rate_limited += 1;
        }
    }
    resp
}

/// The decoded `filter` and `search` parameters of a query string (the last of each).
fn filter_and_search(query: &str) -> (Option<String>, Option<String>) {
    let (mut filter, mut search) = (None, None);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "filter" => filter = Some(value.into_owned()),
            "search" => search = Some(value.into_owned()),
            _ => {}
        }
    }
    (filter, search)
}

/// `t` as UTC epoch seconds, rounded up.
fn epoch_secs_ceil(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    if enc.write_all(body).is_err() {
        return body.to_vec();
    }
    enc.finish().unwrap_or_default()
}

async fn route(
    shared: &Shared,
    n: usize,
    method: &Method,
    uri: &Uri,
    path_and_query: &str,
    now_secs: u64,
) -> Reply {
    for fault in &shared.faults {
        match fault {
            OktaFault::Status { request, status } if *request == n => {
                return generic_error(shared, n, *status);
            }
            OktaFault::StatusInOtherEncoding {
                request,
                status,
                coding,
            } if *request == n => {
                let mut r = generic_error(shared, n, *status);
                r.special = Some(Special::Labelled(coding.clone()));
                return r;
            }
            OktaFault::RateLimited {
                request,
                reset_after_secs,
            } if *request == n => {
                let mut r = generic_error(shared, n, 429);
                r.rate_override = Some((0, now_secs.saturating_add(*reset_after_secs)));
                return r;
            }
            OktaFault::ConcurrencyLimited {
                request,
                reset_after_secs,
            } if *request == n => {
                let mut r = generic_error(shared, n, 429);
                r.rate_override = Some((0, now_secs.saturating_add(*reset_after_secs)));
                r.limit_override = Some(0);
                return r;
            }
            OktaFault::Hang { request } if *request == n => {
                tokio::time::sleep(HANG_DURATION).await;
                return generic_error(shared, n, 504);
            }
            OktaFault::NotAnArray { request } if *request == n => {
                let mut r = generic_error(shared, n, 500);
                r.status = 200;
                r.links = vec![self_link(shared, path_and_query)];
                return r;
            }
            OktaFault::HugeBody { request, bytes } if *request == n => {
                let mut r = Reply::ok(Vec::new(), vec![self_link(shared, path_and_query)]);
                r.special = Some(Special::Huge(*bytes));
                return r;
            }
            OktaFault::ZeroFilled { request, bytes } if *request == n => {
                let zeros = (bytes.saturating_sub(1) / 2).max(1);
                let mut body = Vec::with_capacity(zeros * 2 + 1);
                body.push(b'[');
                for i in 0..zeros {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.push(b'0');
                }
                body.push(b']');
                return Reply::ok(body, vec![self_link(shared, path_and_query)]);
            }
            OktaFault::OverfullPage { request, users } if *request == n => {
                let mut body = vec![b'['];
                for i in 0..*users {
                    if i > 0 {
                        body.push(b',');
                    }
                    write_generated_user(&mut body, i, &shared.base_url);
                }
                body.push(b']');
                return Reply::ok(body, vec![self_link(shared, path_and_query)]);
            }
            _ => {}
        }
    }
    let mut reply = serve_page(shared, n, method, uri, path_and_query).await;
    if reply.status != 200 {
        return reply;
    }
    for fault in &shared.faults {
        match fault {
            OktaFault::MalformedJson { request } if *request == n => {
                let keep = (reply.body.len() / 2).max(1).min(reply.body.len());
                reply.body.truncate(keep);
                return reply;
            }
            OktaFault::CutMidBody { request } if *request == n => {
                reply.special = Some(Special::Cut);
                return reply;
            }
            OktaFault::CorruptGzip { request } if *request == n => {
                reply.special = Some(Special::CorruptGzip);
                return reply;
            }
            OktaFault::OtherEncoding { request, coding } if *request == n => {
                reply.special = Some(Special::Labelled(coding.clone()));
                return reply;
            }
            _ => {}
        }
    }
    reply
}

fn self_link(shared: &Shared, path_and_query: &str) -> String {
    format!("<{}{}>; rel=\"self\"", shared.base_url, path_and_query)
}

/// The page (or error) a user-list request answers, `BadUser` and `ForeignNextLink` applied.
async fn serve_page(
    shared: &Shared,
    n: usize,
    method: &Method,
    uri: &Uri,
    path_and_query: &str,
) -> Reply {
    let foreign = shared.faults.iter().find_map(|f| match f {
        OktaFault::ForeignNextLink { request, target } if *request == n => Some(target.as_str()),
        _ => None,
    });
    let bad_user = shared.faults.iter().find_map(|f| match f {
        OktaFault::BadUser { request, index } if *request == n => Some(*index),
        _ => None,
    });
    let relative = shared
        .faults
        .iter()
        .any(|f| matches!(f, OktaFault::RelativeNextLink { request } if *request == n));
    let looping = shared
        .faults
        .iter()
        .any(|f| matches!(f, OktaFault::LoopingNextLink { request } if *request == n));

    let path = uri.path();
    if let Some(key) = path
        .strip_prefix("/api/v1/users/")
        .filter(|k| !k.is_empty() && !k.contains('/'))
    {
        if method != Method::GET {
            return generic_error(shared, n, 405);
        }
        return one_user(shared, n, &percent_decode(key));
    }
    let group = path
        .strip_prefix("/api/v1/groups/")
        .and_then(|rest| rest.strip_suffix("/users"))
        .filter(|id| !id.is_empty() && !id.contains('/'));
    if path != "/api/v1/users" && group.is_none() {
        let summary = format!("Not found: Resource not found: {path} ({method})");
        return error_reply(shared, n, 404, "E0000007", &summary);
    }
    if method != Method::GET {
        return generic_error(shared, n, 405);
    }
    let query = match ListQuery::parse(uri.query().unwrap_or(""), group.is_none()) {
        Ok(q) => q,
        Err(QueryError::Validation(what)) => {
            let summary = format!("Api validation failed: {what}");
            return error_reply(shared, n, 400, "E0000001", &summary);
        }
        Err(QueryError::Criteria) => {
            return error_reply(shared, n, 400, "E0000031", "Invalid search criteria.");
        }
    };
    let members = match group {
        Some(id) => match shared.groups.get(id) {
            Some(m) => Some(m.as_slice()),
            None => {
                let summary = format!("Not found: Resource not found: {id} (UserGroup)");
                return error_reply(shared, n, 404, "E0000007", &summary);
            }
        },
        None => None,
    };
    let not_before = tokio::time::Instant::now() + shared.page_delay;
    let mut reply = list_page(
        shared,
        path,
        path_and_query,
        members,
        &query,
        NextLinkFault {
            foreign,
            relative,
            looping,
        },
        bad_user,
    );
    if !shared.page_delay.is_zero() {
        reply.not_before = Some(not_before);
    }
    reply
}

/// Sleeps until `at`, a fraction of a millisecond late as a rule: tokio's timer, whose ticks
/// are whole milliseconds, sleeps the bulk; a thread's sleep the rest.
async fn sleep_until_precisely(at: tokio::time::Instant) {
    tokio::time::sleep_until(at.checked_sub(Duration::from_millis(2)).unwrap_or(at)).await;
    let rest = at.saturating_duration_since(tokio::time::Instant::now());
    if !rest.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

/// `GET /api/v1/users/{id}`: the user whose `id` is `key` or whose `profile.login` is `key`
/// (ignoring case, as Okta compares logins), whatever its status, as one JSON object; else
/// Okta's 404 (E0000007). Users are looked through in order (fine at test sizes).
fn one_user(shared: &Shared, n: usize, key: &str) -> Reply {
    let overrides = shared.lock_overrides();
    let found = (0..shared.users.len())
        .map(|u| {
            overrides
                .get(&u)
                .cloned()
                .unwrap_or_else(|| shared.original_user(u))
        })
        .find(|user| {
            let field = |path: &[&str]| {
                path.iter()
                    .try_fold(user, |v, k| v.get(*k))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            field(&["id"]).as_deref() == Some(key)
                || field(&["profile", "login"]).is_some_and(|l| l.eq_ignore_ascii_case(key))
        });
    drop(overrides);
    match found {
        Some(user) => Reply::ok(serde_json::to_vec(&user).unwrap_or_default(), Vec::new()),
        None => {
            let summary = format!("Not found: Resource not found: {key} (User)");
            error_reply(shared, n, 404, "E0000007", &summary)
        }
    }
}

/// Decodes `%XX` escapes of a path segment (anything else is kept as it is).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a page's `next` link is bent by a fault.
struct NextLinkFault<'a> {
    foreign: Option<&'a str>,
    relative: bool,
    looping: bool,
}

fn list_page(
    shared: &Shared,
    path: &str,
    path_and_query: &str,
    members: Option<&[usize]>,
    q: &ListQuery,
    next_fault: NextLinkFault<'_>,
    bad_user: Option<usize>,
) -> Reply {
    let NextLinkFault {
        foreign,
        relative,
        looping,
    } = next_fault;
    let total = shared.users.len();
    let seq_len = members.map_or(total, <[usize]>::len);
    let user_at = |pos: usize| members.map_or(pos, |m| m[pos]);
    // Held while the page is built (no await below): modifications land between pages.
    let overrides_guard = shared.lock_overrides();
    let overrides = (!overrides_guard.is_empty()).then_some(&*overrides_guard);
    let modified = |u: usize| overrides.and_then(|o| o.get(&u));
    let subject = |u: usize| -> Subject<'_> {
        if let Some(v) = modified(u) {
            return Subject::Json(v);
        }
        match (&shared.users, shared.users.logins()) {
            (UserSource::Explicit(v), _) => Subject::Json(&v[u]),
            (_, logins) => Subject::generated(u, &shared.base_url, logins.unwrap_or_default()),
        }
    };
    // Okta omits DEPROVISIONED users from `/api/v1/users` unless a filter or search is given;
    // group listings return every member.
    let hide_deprovisioned = members.is_none() && q.filter.is_none() && q.search.is_none();
    let wanted = |u: usize| {
        if u >= total {
            return false;
        }
        if q.exprs.is_empty() && !hide_deprovisioned {
            return true;
        }
        let s = subject(u);
        !(hide_deprovisioned && s.is_deprovisioned()) && q.exprs.iter().all(|e| e.matches(&s))
    };

    let mut page = Vec::with_capacity(q.limit.min(seq_len.saturating_sub(q.start)));
    let mut pos = q.start;
    while pos < seq_len && page.len() < q.limit {
        let u = user_at(pos);
        pos += 1;
        if wanted(u) {
            page.push(u);
        }
    }
    // Is anything left? Skip ahead to the next match so the cursor points at it.
    while pos < seq_len && !wanted(user_at(pos)) {
        pos += 1;
    }
    let more = pos < seq_len;

    let mut body = Vec::with_capacity(page.len() * 1200 + 2);
    body.push(b'[');
    for (k, &u) in page.iter().enumerate() {
        if k > 0 {
            body.push(b',');
        }
        if bad_user == Some(k) {
            write_bad_user(&mut body, &shared.users, modified(u), u);
            continue;
        }
        if let Some(v) = modified(u) {
            if serde_json::to_writer(&mut body, v).is_err() {
                body.extend_from_slice(b"null");
            }
            continue;
        }
        match &shared.users {
            UserSource::Generated(_) => write_generated_user(&mut body, u, &shared.base_url),
            UserSource::GeneratedRealistic(_) => {
                write_generated_user_with(&mut body, u, &shared.base_url, Logins::Realistic)
            }
            UserSource::Explicit(v) => {
                if serde_json::to_writer(&mut body, &v[u]).is_err() {
                    body.extend_from_slice(b"null");
                }
            }
        }
    }
    body.push(b']');

    let mut links = vec![self_link(shared, path_and_query)];
    if looping {
        let own = format!("<{}{path_and_query}>; rel=\"next\"", shared.base_url);
        links.push(own);
        return Reply::ok(body, links);
    }
    let next_base = match foreign {
        Some(target) => Some(target.trim_end_matches('/')),
        None if more && relative => Some(""),
        None if more => Some(shared.base_url.as_str()),
        None => None,
    };
    if let Some(base) = next_base {
        let mut link = format!("<{base}{path}?after=");
        link.push_str(&encode_cursor(pos));
        link.push_str("&limit=");
        link.push_str(&q.limit.to_string());
        if let Some(f) = &q.filter {
            link.push_str("&filter=");
            percent_encode_into(&mut link, f);
        }
        if let Some(s) = &q.search {
            link.push_str("&search=");
            percent_encode_into(&mut link, s);
        }
        link.push_str(">; rel=\"next\"");
        links.push(link);
    }
    Reply::ok(body, links)
}

/// Writes the wrong-typed stand-in for user `u` of `OktaFault::BadUser`: its real `id` and
/// `lastUpdated` (when they are strings; those of the modified user when it was modified),
/// everything else of the wrong type.
fn write_bad_user(
    out: &mut Vec<u8>,
    users: &UserSource,
    modified: Option<&serde_json::Value>,
    u: usize,
) {
    let json = match (modified, users) {
        (Some(v), _) => Some(v),
        (None, UserSource::Explicit(v)) => v.get(u),
        (None, UserSource::Generated(_) | UserSource::GeneratedRealistic(_)) => None,
    };
    let (id, last_updated) = match json {
        None => (Some(format!("00u{u:017}")), Some(generated_last_updated(u))),
        Some(v) => {
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
            (field("id"), field("lastUpdated"))
        }
    };
    let mut user = serde_json::Map::new();
    if let Some(id) = id {
        user.insert("id".into(), id.into());
    }
    user.insert("status".into(), 42.into());
    user.insert("created".into(), true.into());
    user.insert("lastLogin".into(), serde_json::json!(["x"]));
    if let Some(t) = last_updated {
        user.insert("lastUpdated".into(), t.into());
    }
    user.insert("profile".into(), "not an object".into());
    user.insert("credentials".into(), "none".into());
    user.insert("_links".into(), 7.into());
    if serde_json::to_writer(&mut *out, &user).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// The cursor is opaque to clients; here it encodes the position of the next user.
fn encode_cursor(pos: usize) -> String {
    format!("00c{pos:x}")
}

fn decode_cursor(s: &str) -> Option<usize> {
    usize::from_str_radix(s.strip_prefix("00c")?, 16).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters (spaces become `%20`).
fn percent_encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

struct ListQuery {
    limit: usize,
    start: usize,
    filter: Option<String>,
    search: Option<String>,
    /// The parsed filter and search (both must match when both are given).
    exprs: Vec<Expr>,
}

enum QueryError {
    Validation(&'static str),
    Criteria,
}

impl ListQuery {
    fn parse(query: &str, allow_filter: bool) -> Result<ListQuery, QueryError> {
        let mut q = ListQuery {
            limit: 200,
            start: 0,
            filter: None,
            search: None,
            exprs: Vec::new(),
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "limit" => {
                    let l: i64 = value
                        .trim()
                        .parse()
                        .map_err(|_| QueryError::Validation("limit"))?;
                    q.limit = l.clamp(1, 200) as usize;
                }
                "after" => {
                    q.start = decode_cursor(&value).ok_or(QueryError::Validation("after"))?;
                }
                "filter" if allow_filter => q.filter = Some(value.into_owned()),
                "search" if allow_filter => q.search = Some(value.into_owned()),
                _ => {}
            }
        }
        let parsed = q
            .filter
            .iter()
            .map(|f| (f, Mode::Filter))
            .chain(q.search.iter().map(|s| (s, Mode::Search)));
        for (expr, mode) in parsed {
            q.exprs
                .push(crate::query::parse(expr, mode).ok_or(QueryError::Criteria)?);
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_and_encoding() {
        assert_eq!(decode_cursor(&encode_cursor(123_456)), Some(123_456));
        assert_eq!(decode_cursor("bogus"), None);
        let mut s = String::new();
        percent_encode_into(&mut s, r#"status eq "ACTIVE""#);
        assert_eq!(s, "status%20eq%20%22ACTIVE%22");
    }
}
