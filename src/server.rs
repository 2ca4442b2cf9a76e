//! The optional HTTP endpoint of the daemon (`[server] listen`): `GET /healthz` says whether
//! the process and its scheduler are alive, `GET /metrics` gives the Prometheus metrics.
//!
//! Slow or idle clients cannot hold it: a request's headers must arrive within
//! [`Limits::header_timeout`], a connection lasts at most [`Limits::connection_lifetime`], and
//! at most [`Limits::max_connections`] are open at once (the next ones wait in the listen
//! backlog, holding no file descriptor of the process).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::schedule::Clock;

/// The scheduler wakes at least once a minute; this long without a beat means it is stuck.
pub const STALE_AFTER_SECS: i64 = 150;

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

/// What one client may take of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's headers must arrive within this, or the connection is closed.
    pub header_timeout: Duration,
    /// A connection is closed after this long (after its request in flight, if any).
    pub connection_lifetime: Duration,
    /// Connections served at once; more wait until one closes.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
            max_connections: 32,
        }
    }
}

/// Binds `addr` (so a bad address fails at start) and returns the server future, which runs
/// until `stop` fires; the default [`Limits`]. An unspecified address (`0.0.0.0`, `[::]`) is
/// warned about: it serves every network the machine is on.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    if addr.ip().is_unspecified() {
        tracing::warn!(
            listen = %addr,
            "server.listen is an unspecified address: /healthz and /metrics answer on every \
             network this machine is on; prefer 127.0.0.1 (or a single interface's address)"
        );
    }
    bind_with(addr, Limits::default(), metrics, clock, stop).await
}

/// [`bind`] with the given limits.
pub async fn bind_with(
    addr: SocketAddr,
    limits: Limits,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(Shared { metrics, clock });
    Ok((local, serve(listener, app, limits, stop)))
}

/// Accepts connections while a slot is free, until `stop` fires; then waits for the open
/// connections to finish.
async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let Some((stream, permit)) = accepted else {
            continue;
        };
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(stream, app, limits, stop).await;
            drop(permit);
        });
    }
    // Every slot back means every connection closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _closed = slots.acquire_many(all).await;
    Ok(())
}

/// Waits for a free slot, then for a connection. A failed accept (the process out of file
/// descriptors, a connection reset while queued) is logged and waited out briefly.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let permit = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, _)) => Some((stream, permit)),
        Err(e) => {
            tracing::warn!("the metrics server could not accept a connection: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// Serves one connection (HTTP/1.1) within the limits; at `stop` or at the end of its
/// lifetime it finishes the request in flight and closes.
async fn connection(stream: TcpStream, app: Router, limits: Limits, stop: CancellationToken) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let finished = tokio::select! {
        result = conn.as_mut() => Some(result),
        () = stop.cancelled() => None,
        () = tokio::time::sleep(limits.connection_lifetime) => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.header_timeout, conn).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!("a metrics server connection ended: {e}");
    }
}

async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    match s.metrics.since_heartbeat(s.clock.now()) {
        Some(age) if age <= STALE_AFTER_SECS => (StatusCode::OK, "ok\n".to_owned()),
        Some(age) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the scheduler has not run for {age} s\n"),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the scheduler has not started\n".to_owned(),
        ),
    }
}

/// OpenMetrics to a scraper that accepts it (Prometheus does), the classic text format to
/// any other client (curl, `promtool check metrics`).
async fn metrics_text(State(s): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
    let open = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if open {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            s.metrics.render(),
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.metrics.render_text(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::SystemClock;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The whole answer to a request sent on a new connection (the server closes it after).
    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_sent_requests_are_closed_and_cannot_starve_healthz() {
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            connection_lifetime: Duration::from_secs(60),
            max_connections: 4,
        };
        let stop = CancellationToken::new();
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let (addr, serve) = bind_with(
            addr,
            limits,
            Arc::new(Metrics::new()),
            Arc::new(SystemClock),
            stop.clone(),
        )
        .await
        .unwrap();
        let server = tokio::spawn(serve);
        // Three times as many slow clients as the server serves at once, each stopping
        // mid-headers.
        let mut slow = Vec::new();
        for _ in 0..12 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            slow.push(s);
        }
        let bound = Duration::from_secs(20);
        let answer = tokio::time::timeout(bound, get(addr, "/healthz"))
            .await
            .expect("/healthz answers despite the slow clients");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.ends_with("the scheduler has not started\n"),
            "{answer}"
        );
        for mut s in slow {
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(bound, s.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "a half-sent request was left open");
        }
        stop.cancel();
        tokio::time::timeout(bound, server)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}
