//! A local incoming-webhook receiver (Slack's, or any that takes a JSON POST).
//!
//! [`FakeWebhook`] takes `POST` on one secret path (like Slack's
//! `/services/T000/B000/XXXX`), answers `ok` with 200 as Slack does, `404 no_service` on any
//! other path, and remembers every POST it received, in order, for assertions. Faults
//! ([`WebhookOptions::statuses`]) are answered by POST number, or for every POST when the
//! receiver is down ([`WebhookOptions::down`]).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::Value;
use tokio::task::JoinHandle;

/// Configuration of a [`FakeWebhook`].
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// The path taken, secret token included; default `/services/T000/B000/<token>`.
    pub path: String,
    /// Statuses answered to the first POSTs, in order (e.g. `[500]`: the first POST answers
    /// 500, the next ones 200). Default none.
    pub statuses: Vec<u16>,
    /// Answer every POST with 503: a receiver that stays down. Default false.
    pub down: bool,
}

impl WebhookOptions {
    /// A receiver on `/services/T000/B000/{token}`.
    pub fn with_token(token: &str) -> Self {
        WebhookOptions {
            path: format!("/services/T000/B000/{token}"),
            statuses: Vec::new(),
            down: false,
        }
    }
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions::with_token("XXXXXXXXXXXXXXXXXXXXXXXX")
    }
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct ReceivedPost {
    /// The path it was sent to.
    pub path: String,
    /// Its `content-type`, if any.
    pub content_type: Option<String>,
    /// Its body parsed as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
    /// The status answered.
    pub status: u16,
}

/// A running webhook receiver; stops when dropped.
pub struct FakeWebhook {
    base_url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    opts: WebhookOptions,
    received: Mutex<Vec<ReceivedPost>>,
}

impl FakeWebhook {
    /// Starts a receiver on 127.0.0.1 (a free port).
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start(opts: WebhookOptions) -> FakeWebhook {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let (listener, base_url) = match crate::server::bind(addr).await {
            Ok(bound) => bound,
            Err(e) => panic!("fake webhook: cannot bind 127.0.0.1:0: {e}"),
        };
        let shared = Arc::new(Shared {
            opts,
            received: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let task = crate::server::spawn(listener, router);
        FakeWebhook {
            base_url,
            shared,
            task,
        }
    }

    /// The URL to configure: `http://127.0.0.1:PORT` and the secret path.
    pub fn url(&self) -> String {
        format!("{}{}", self.base_url, self.shared.opts.path)
    }

    /// Every POST received so far, in arrival order, failed ones included.
    pub fn received(&self) -> Vec<ReceivedPost> {
        self.shared.lock().clone()
    }

    /// The bodies of the POSTs answered 200, in arrival order.
    pub fn delivered(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|p| p.status == 200)
            .map(|p| p.body)
            .collect()
    }
}

impl Drop for FakeWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ReceivedPost>> {
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "invalid_method");
    }
    if uri.path() != shared.opts.path {
        return answer(StatusCode::NOT_FOUND, "no_service");
    }
    let mut received = shared.lock();
    let n = received.len();
    let status = if shared.opts.down {
        503
    } else {
        shared.opts.statuses.get(n).copied().unwrap_or(200)
    };
    received.push(ReceivedPost {
        path: uri.path().to_owned(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status,
    });
    drop(received);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    answer(
        status,
        if status == StatusCode::OK {
            "ok"
        } else {
            "error"
        },
    )
}

/// A plain-text answer, as Slack's incoming webhooks give.
fn answer(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}
