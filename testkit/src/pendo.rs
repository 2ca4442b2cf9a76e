//! A local Pendo metadata API.
//!
//! [`FakePendo`] serves `POST /api/v1/metadata/visitor/{custom|agent}/value[?create=true]` and
//! `GET /api/v1/metadata/schema/visitor`, checks `x-pendo-integration-key` and `content-type`,
//! answers `{"total", "updated", "failed", "missing", "errors"}` like Pendo, and remembers what it
//! received for assertions. Faults ([`PendoFault`]) are injected by POST number.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

/// Which visitor IDs exist in the fake Pendo before any `create=true` call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExistingVisitors {
    /// Every visitor ID exists.
    #[default]
    All,
    /// Every visitor ID exists except these.
    Except(HashSet<String>),
    /// Only these visitor IDs exist.
    Only(HashSet<String>),
}

impl ExistingVisitors {
    fn contains(&self, id: &str) -> bool {
        match self {
            ExistingVisitors::All => true,
            ExistingVisitors::Except(s) => !s.contains(id),
            ExistingVisitors::Only(s) => s.contains(id),
        }
    }
}

/// Configuration of a [`FakePendo`].
#[derive(Debug, Clone)]
pub struct PendoOptions {
    /// Expected `x-pendo-integration-key`.
    pub key: String,
    /// Which visitor IDs exist in Pendo; default [`ExistingVisitors::All`].
    pub existing: ExistingVisitors,
    /// Keep received records for assertions; default true (benchmarks turn it off).
    pub record_values: bool,
    /// Also keep the raw body of every POST, byte for byte, in [`ReceivedBatch::body`];
    /// default false. For tests that compare exactly what was sent.
    pub record_bodies: bool,
    /// Added latency per POST; default zero.
    pub batch_delay: Duration,
    /// Faults to inject, by POST number.
    pub faults: Vec<PendoFault>,
    /// Body of `GET /api/v1/metadata/schema/visitor`; see [`default_schema`].
    pub schema: Value,
    /// Largest batch that "finishes in time"; default `None` (no limit). A POST whose body holds
    /// more records than this answers 408 Request Timeout (`{"error":"Request Timeout"}`), as
    /// Pendo does for calls that run past its 5-minute limit, and nothing of it is stored: a
    /// client must split the batch until the parts pass. Checked once the key, content type
    /// and body are accepted, after the [`PendoFault`]s (a fault on that POST number wins).
    pub max_batch_len: Option<usize>,
    /// Visitor IDs whose update always runs past the time limit: any POST holding one of them
    /// answers 408, however small. Default empty.
    pub slow_visitors: HashSet<String>,
    /// Visitor IDs whose record Pendo refuses: any POST holding one of them answers 400
    /// (`{"error":"visitor <id>: ..."}`) and stores nothing, however small. Default empty.
    pub refused_visitors: HashSet<String>,
    /// Visitor IDs Pendo accepts in a POST but fails to update: the 200 answer counts them in
    /// `failed`, not in `updated`, and names each in `errors` (`{"visitorId", "error"}`).
    /// Default empty.
    pub unconfirmed_visitors: HashSet<String>,
    /// Refuse a POST whose records set a field the [`schema`](Self::schema) does not have (or
    /// has deleted) in the POST's metadata group, with 400 `{"error":"unknown field
    /// \"<group>.<field>\" ..."}`, as Pendo refuses values for fields that were never created.
    /// Default false (any field is taken).
    pub enforce_schema: bool,
}

impl Default for PendoOptions {
    fn default() -> Self {
        PendoOptions {
            key: "pendo-test-key".to_owned(),
            existing: ExistingVisitors::All,
            record_values: true,
            record_bodies: false,
            batch_delay: Duration::ZERO,
            faults: Vec::new(),
            schema: default_schema(),
            max_batch_len: None,
            slow_visitors: HashSet::new(),
            refused_visitors: HashSet::new(),
            unconfirmed_visitors: HashSet::new(),
            enforce_schema: false,
        }
    }
}

fn field(kind: &str, display: &str) -> Value {
    json!({
        "Type": kind,
        "DisplayName": display,
        "IsDeleted": false,
        "IsCalculated": false,
        "ElementType": "",
        "ElementFormat": "",
        "Dirty": false,
        "isPerApp": false,
        "neverIndex": false
    })
}

/// The default visitor schema: a few `auto` fields, an empty `agent` group and the `custom`
/// fields department (string), title (string), okta_status (string), last_login (time),
/// employee_number (number) and is_manager (boolean).
pub fn default_schema() -> Value {
    json!({
        "auto": {
            "id": field("string", "Visitor ID"),
            "firstvisit": field("time", "First Visit"),
            "lastvisit": field("time", "Last Visit"),
            "lastbrowsername": field("string", "Last Browser Name"),
        },
        "agent": {},
        "custom": {
            "department": field("string", "Department"),
            "title": field("string", "Title"),
            "okta_status": field("string", "Okta Status"),
            "last_login": field("time", "Last Login"),
            "employee_number": field("number", "Employee Number"),
            "is_manager": field("boolean", "Is Manager"),
        }
    })
}

/// A fault injected into one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendoFault {
    /// The n-th POST (0-based, counting every POST received) answers `status` with a short
    /// JSON body (e.g. 500, 503, 429, 408, 400). Applies once the key and content type are
    /// accepted; nothing of the batch is stored.
    Status {
        /// 0-based POST number.
        request: usize,
        /// HTTP status to answer (an invalid code becomes 500).
        status: u16,
    },
    /// The n-th POST answers `status` (429 or 503, typically) with a `Retry-After: {secs}`
    /// header and a short JSON body; nothing of the batch is stored.
    RetryAfter {
        /// 0-based POST number.
        request: usize,
        /// HTTP status to answer (an invalid code becomes 500).
        status: u16,
        /// Value of the `Retry-After` header, in seconds.
        secs: u64,
    },
    /// The n-th POST answers 409 Conflict with `{"error":"Operation in progress"}`, Pendo's
    /// answer to concurrent writes; nothing of the batch is stored.
    Conflict {
        /// 0-based POST number.
        request: usize,
    },
    /// The n-th POST is recorded in [`FakePendo::batches`] as soon as it arrives (status 0,
    /// records and len filled) and is then not answered: the handler waits
    /// [`crate::HANG_DURATION`] (300 s) and only then answers 408 (updating the recorded
    /// status); nothing of the batch is stored. Dropping the server aborts the wait and closes
    /// the connection. For client timeouts.
    Hang {
        /// 0-based POST number.
        request: usize,
    },
    /// The n-th POST is applied like a normal one (visitors stored, counted in
    /// [`FakePendo::records_received`], recorded with status 200) but its 200 answer's body is
    /// not valid JSON: the real outcome object cut at half its length (e.g.
    /// `{"total":3,"updat`), still with `content-type: application/json`.
    MalformedJson {
        /// 0-based POST number.
        request: usize,
    },
}

impl PendoFault {
    fn request(&self) -> usize {
        match self {
            PendoFault::Status { request, .. }
            | PendoFault::RetryAfter { request, .. }
            | PendoFault::Conflict { request }
            | PendoFault::Hang { request }
            | PendoFault::MalformedJson { request } => *request,
        }
    }
}

/// One POST received by a [`FakePendo`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedBatch {
    /// Metadata group from the path (`"custom"` or `"agent"`; whatever the path said for a 404).
    pub group: String,
    /// Whether the query had `create=true`.
    pub create: bool,
    /// `(visitorId, values)` as received; empty when `record_values` is false or the body was
    /// not read (rejected before parsing) or not valid.
    pub records: Vec<(String, Map<String, Value>)>,
    /// Number of records in the body (0 if it was not read or not valid).
    pub len: usize,
    /// What the server answered.
    pub status: u16,
    /// The request body as received, when `record_bodies` is on (rejected POSTs included);
    /// `None` otherwise.
    pub body: Option<Vec<u8>>,
}

/// A local fake Pendo on 127.0.0.1. Serves until dropped.
#[derive(Debug)]
pub struct FakePendo {
    base_url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakePendo {
    /// Starts a server on 127.0.0.1 with an ephemeral port.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start(opts: PendoOptions) -> FakePendo {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        match Self::start_on(addr, opts).await {
            Ok(server) => server,
            Err(e) => panic!("fake Pendo: cannot bind 127.0.0.1:0: {e}"),
        }
    }

    /// Starts a server on `addr`.
    pub async fn start_on(
        addr: std::net::SocketAddr,
        opts: PendoOptions,
    ) -> std::io::Result<FakePendo> {
        let (listener, base_url) = crate::server::bind(addr).await?;
        let schema = serde_json::to_vec(&opts.schema).unwrap_or_else(|_| b"{}".to_vec());
        let shared = Arc::new(Shared {
            opts,
            schema,
            state: Mutex::new(Inner::default()),
        });
        let router = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
            .with_state(shared.clone());
        let task = crate::server::spawn(listener, router);
        Ok(FakePendo {
            base_url,
            shared,
            task,
        })
    }

    /// `"http://127.0.0.1:PORT"`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Every POST received so far, in arrival order, rejected ones included.
    pub fn batches(&self) -> Vec<ReceivedBatch> {
        self.shared.lock().batches.clone()
    }

    /// Current stored values of a visitor (merged over all successful updates), when
    /// `record_values` is on.
    pub fn visitor(&self, id: &str) -> Option<Map<String, Value>> {
        self.shared.lock().visitors.get(id).cloned()
    }

    /// The visitors `create=true` calls created (those `existing` did not already contain).
    pub fn created(&self) -> HashSet<String> {
        self.shared.lock().created.clone()
    }

    /// How many POSTs were received (all statuses).
    pub fn post_count(&self) -> usize {
        self.shared.lock().posts
    }

    /// Sum of `len` over accepted (200) batches.
    pub fn records_received(&self) -> usize {
        self.shared.lock().records_received
    }
}

impl Drop for FakePendo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    opts: PendoOptions,
    schema: Vec<u8>,
    state: Mutex<Inner>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Inner {
    posts: usize,
    records_received: usize,
    batches: Vec<ReceivedBatch>,
    visitors: HashMap<String, Map<String, Value>>,
    /// Visitors created by `create=true` that `existing` did not already contain.
    created: HashSet<String>,
}

#[derive(Serialize)]
struct Outcome {
    total: usize,
    updated: usize,
    failed: usize,
    missing: Vec<String>,
    errors: Vec<Value>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "visitorId")]
    visitor_id: String,
    values: Map<String, Value>,
}

fn reply(status: u16, body: impl Serialize) -> Response {
    let mut resp = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: u16, message: &str) -> Response {
    reply(status, json!({ "error": message }))
}

fn key_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(given) = headers.get("x-pendo-integration-key") else {
        return false;
    };
    let (given, expected) = (given.as_bytes(), shared.opts.key.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if path == "/api/v1/metadata/schema/visitor" {
        if method != Method::GET {
            return error(405, "method not allowed");
        }
        if !key_ok(&shared, &headers) {
            return error(401, "invalid integration key");
        }
        let mut resp = Response::new(Body::from(shared.schema.clone()));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return resp;
    }
    let Some(group) = path
        .strip_prefix("/api/v1/metadata/visitor/")
        .and_then(|rest| rest.strip_suffix("/value"))
    else {
        return error(404, "not found");
    };
    if method != Method::POST {
        return error(405, "method not allowed");
    }
    let create = uri.query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "create" && v.eq_ignore_ascii_case("true"))
    });

    let n = {
        let mut st = shared.lock();
        st.posts += 1;
        st.posts - 1
    };
    let mut batch = ReceivedBatch {
        group: group.to_owned(),
        create,
        records: Vec::new(),
        len: 0,
        status: 0,
        body: shared.opts.record_bodies.then(|| body.to_vec()),
    };
    let (status, response) = match answer(&shared, n, group, &headers, &body, create, &mut batch) {
        Answer::Now(status, response) => (status, response),
        Answer::Hang => {
            let index = {
                let mut st = shared.lock();
                st.batches.push(batch);
                st.batches.len() - 1
            };
            tokio::time::sleep(crate::HANG_DURATION).await;
            if let Some(b) = shared.lock().batches.get_mut(index) {
                b.status = 408;
            }
            return error(408, "Request Timeout");
        }
    };
    batch.status = status;
    if !shared.opts.batch_delay.is_zero() {
        tokio::time::sleep(shared.opts.batch_delay).await;
    }
    {
        let mut st = shared.lock();
        if status == 200 {
            st.records_received += batch.len;
        }
        st.batches.push(batch);
    }
    response
}

/// What to answer a POST.
enum Answer {
    /// This status and response, at once.
    Now(u16, Response),
    /// Nothing (`PendoFault::Hang`).
    Hang,
}

/// A `(status, error body)` answer.
fn now(status: u16, message: &str) -> Answer {
    Answer::Now(status, error(status, message))
}

/// Canonical reason of `status`, or "error".
fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

/// Decides the answer to POST number `n` and applies an accepted batch.
fn answer(
    shared: &Shared,
    n: usize,
    group: &str,
    headers: &HeaderMap,
    body: &[u8],
    create: bool,
    batch: &mut ReceivedBatch,
) -> Answer {
    if group != "custom" && group != "agent" {
        return now(404, "unknown metadata group");
    }
    if !key_ok(shared, headers) {
        return now(401, "invalid integration key");
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return now(415, "content-type must be application/json");
    }
    let records: Vec<Record> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let msg =
                format!("body must be a JSON array of {{\"visitorId\", \"values\"}} objects: {e}");
            return now(400, &msg);
        }
    };
    if let Some(bad) = records.iter().find(|r| {
        r.values
            .values()
            .any(|v| matches!(v, Value::Array(_) | Value::Object(_)))
    }) {
        let msg = format!(
            "values of visitor {} must be strings, numbers, booleans or null",
            bad.visitor_id
        );
        return now(400, &msg);
    }
    if shared.opts.enforce_schema {
        let fields = shared.opts.schema.get(group).and_then(Value::as_object);
        let known = |name: &str| {
            fields
                .and_then(|f| f.get(name))
                .is_some_and(|d| d.get("IsDeleted") != Some(&Value::Bool(true)))
        };
        if let Some(name) = records
            .iter()
            .flat_map(|r| r.values.keys())
            .find(|name| !known(name))
        {
            let msg = format!(
                "unknown field \"{group}.{name}\": no such visitor metadata field in this subscription"
            );
            return now(400, &msg);
        }
    }
    if let Some(r) = records
        .iter()
        .find(|r| shared.opts.refused_visitors.contains(r.visitor_id.as_str()))
    {
        let msg = format!("visitor {}: metadata values refused", r.visitor_id);
        return now(400, &msg);
    }
    batch.len = records.len();
    if shared.opts.record_values {
        batch.records = records
            .iter()
            .map(|r| (r.visitor_id.clone(), r.values.clone()))
            .collect();
    }
    let fault = shared.opts.faults.iter().find(|f| f.request() == n);
    match fault {
        Some(PendoFault::Status { status, .. }) => {
            let status = StatusCode::from_u16(*status).map_or(500, |s| s.as_u16());
            return now(status, reason(status));
        }
        Some(PendoFault::RetryAfter { status, secs, .. }) => {
            let status = StatusCode::from_u16(*status).map_or(500, |s| s.as_u16());
            let mut resp = error(status, reason(status));
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            return Answer::Now(status, resp);
        }
        Some(PendoFault::Conflict { .. }) => return now(409, "Operation in progress"),
        Some(PendoFault::Hang { .. }) => return Answer::Hang,
        Some(PendoFault::MalformedJson { .. }) | None => {}
    }
    if shared
        .opts
        .max_batch_len
        .is_some_and(|max| records.len() > max)
        || records
            .iter()
            .any(|r| shared.opts.slow_visitors.contains(r.visitor_id.as_str()))
    {
        return now(408, "Request Timeout");
    }

    let total = records.len();
    let mut missing = Vec::new();
    let mut errors = Vec::new();
    {
        let mut st = shared.lock();
        for r in records {
            if shared
                .opts
                .unconfirmed_visitors
                .contains(r.visitor_id.as_str())
            {
                errors.push(json!({
                    "visitorId": r.visitor_id,
                    "error": "update failed",
                }));
                continue;
            }
            let exists =
                shared.opts.existing.contains(&r.visitor_id) || st.created.contains(&r.visitor_id);
            if !exists {
                if !create {
                    missing.push(r.visitor_id);
                    continue;
                }
                st.created.insert(r.visitor_id.clone());
            }
            if shared.opts.record_values {
                st.visitors
                    .entry(r.visitor_id)
                    .or_default()
                    .extend(r.values);
            }
        }
    }
    let updated = total - missing.len() - errors.len();
    // A struct keeps Pendo's key order (total, updated, failed, missing, errors).
    let body = Outcome {
        total,
        updated,
        failed: total - updated,
        missing,
        errors,
    };
    if matches!(fault, Some(PendoFault::MalformedJson { .. })) {
        let mut text = serde_json::to_vec(&body).unwrap_or_default();
        text.truncate(text.len() / 2);
        let mut resp = Response::new(Body::from(text));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Answer::Now(200, resp);
    }
    Answer::Now(200, reply(200, body))
}
