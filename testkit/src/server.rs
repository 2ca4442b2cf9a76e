//! The accept loop shared by both fake servers.
//!
//! Every connection task lives in a `JoinSet` owned by the accept task, so aborting the accept
//! task (what the servers' `Drop` does) also closes every open connection, keep-alive ones
//! included: after a drop, the port is really gone.

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Binds `addr` and returns the listener and the base URL (`http://IP:PORT`, no trailing slash;
/// an unspecified IP is reported as 127.0.0.1).
pub(crate) async fn bind(addr: std::net::SocketAddr) -> std::io::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(addr).await?;
    let mut local = listener.local_addr()?;
    if local.ip().is_unspecified() {
        local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok((listener, format!("http://{local}")))
}

/// Serves `router` on `listener` until the returned task is aborted.
pub(crate) fn spawn(listener: TcpListener, router: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        // Out of file descriptors and the like: back off briefly.
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(router.clone());
                    connections.spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}
