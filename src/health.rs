//! The `health` command: asks the daemon's own `/healthz` (at the config's `[server] listen`)
//! and turns the answer into an exit code, so that a container's health check needs nothing but
//! the binary. It reads only `server.listen` from the config: a probe must not fail because a
//! secret file is unreadable or another setting is being edited.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::config;
use crate::http;

/// The most read of a `/healthz` answer (it is one short line).
const MAX_BODY_BYTES: usize = 4096;

/// Why the daemon was not found healthy. [`HealthError::exit_code`] tells a config problem
/// (nothing could be asked) from an unhealthy or unreachable daemon.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot read server.listen from the config {}: {problem}", path.display())]
    Config {
        path: std::path::PathBuf,
        problem: String,
    },
    #[error(
        "no server is configured: set [server] listen in {} (e.g. \"127.0.0.1:9184\") to serve \
         /healthz",
        path.display()
    )]
    NoServer { path: std::path::PathBuf },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("{url}: no answer within {} ms", timeout.as_millis())]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{url} answered {status}: {body}")]
    Unhealthy {
        url: String,
        status: u16,
        body: String,
    },
}

impl HealthError {
    /// 78 (EX_CONFIG) when nothing could be asked because of the config, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            HealthError::Config { .. } | HealthError::NoServer { .. } => crate::app::EXIT_CONFIG,
            _ => crate::app::EXIT_FAILURE,
        }
    }
}

/// The address to ask for a server listening on `listen`: an unspecified address (`0.0.0.0`,
/// `[::]`) listens on loopback too, so loopback of the same family is asked.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Reads `server.listen` from the config at `path` and asks its `/healthz`, waiting at most
/// `timeout` for the whole answer. `Ok` carries the URL asked, which answered 200.
pub async fn check(path: &Path, timeout: Duration) -> Result<String, HealthError> {
    let listen = config::server_listen(path).map_err(|e| HealthError::Config {
        path: path.to_owned(),
        problem: e
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    let Some(listen) = listen else {
        return Err(HealthError::NoServer {
            path: path.to_owned(),
        });
    };
    probe(target(listen), timeout).await
}

/// GETs `http://{addr}/healthz`: `Ok` (the URL) on 200, the reason otherwise.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<String, HealthError> {
    let url = format!("http://{addr}/healthz");
    // Straight to the address, the whole exchange within `timeout`.
    let client =
        http::local_client(timeout).map_err(|e| HealthError::Client(http::describe(&e)))?;
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            HealthError::Timeout {
                url: url.clone(),
                timeout,
            }
        } else {
            HealthError::Unreachable {
                url: url.clone(),
                detail: http::describe(&e),
            }
        }
    };
    let response = client.get(&url).send().await.map_err(failed)?;
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(url);
    }
    let body = match http::read_body(response, MAX_BODY_BYTES).await {
        Ok(body) => http::excerpt(&body, &[]),
        Err(e) => e.to_string(),
    };
    Err(HealthError::Unhealthy { url, status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_asked_on_loopback_of_their_family() {
        let cases = [
            ("0.0.0.0:9184", "127.0.0.1:9184"),
            ("[::]:9184", "[::1]:9184"),
            ("127.0.0.1:80", "127.0.0.1:80"),
            ("10.1.2.3:9184", "10.1.2.3:9184"),
            ("[fe80::1]:9184", "[fe80::1]:9184"),
        ];
        for (listen, asked) in cases {
            let listen: SocketAddr = listen.parse().unwrap();
            assert_eq!(target(listen).to_string(), asked, "{listen}");
        }
    }

    #[test]
    fn config_problems_are_78_and_answers_1() {
        let path = std::path::PathBuf::from("c.toml");
        assert_eq!(HealthError::NoServer { path }.exit_code(), 78);
        let unhealthy = HealthError::Unhealthy {
            url: "u".into(),
            status: 503,
            body: "b".into(),
        };
        assert_eq!(unhealthy.exit_code(), 1);
    }
}
