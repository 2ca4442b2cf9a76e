//! The optional HTTP endpoint of the daemon (`[server] listen`): `GET /healthz` says whether
//! the process and its scheduler are alive, `GET /metrics` gives the Prometheus metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
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

/// Binds `addr` (so a bad address fails at start) and returns the server future, which runs
/// until `stop` fires.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(Shared { metrics, clock });
    let serve = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    };
    Ok((local, serve))
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

async fn metrics_text(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}
