//! What both HTTP clients share: building the `reqwest` client (and the proxy it may use),
//! reading a body with a size cap, quoting a server's answer in an error without ever quoting a
//! secret, wording a network failure, and reading `Retry-After`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use reqwest::{NoProxy, Proxy};
use secrecy::{ExposeSecret, SecretString};

/// The `User-Agent` sent to Okta and Pendo.
pub const USER_AGENT: &str = concat!("okta-pendo-sync/", env!("CARGO_PKG_VERSION"));

/// Makes ring's rustls provider the process default, once: reqwest takes the default provider
/// when it builds a client's TLS config, and the binary carries no other. Every client is built
/// after this ([`client`], [`local_client`]).
fn install_crypto_provider() {
    // Err: a provider is installed already (by an earlier call); that one serves.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for the daemon's own server on this machine (`health`): no proxy, no redirect,
/// `timeout` for connecting and for the whole exchange.
pub fn local_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
}

/// Builds a client: gzip, rustls (ring), no redirects (a redirect could carry credentials elsewhere),
/// connect and whole-request timeouts, the proxy of the environment for https targets only
/// (see [`https_proxy`]), and `localhost` always resolved to the loopback addresses.
pub fn client(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    builder(connect_timeout, request_timeout, &|name| {
        std::env::var(name).ok()
    })?
    .build()
}

/// [`client`]'s builder, with the environment read through `env`.
fn builder(
    connect_timeout: Duration,
    request_timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
) -> reqwest::Result<reqwest::ClientBuilder> {
    // The only name allowed with http:// (config::is_loopback) never leaves the machine,
    // whatever DNS or /etc/hosts would say.
    let loopback = [
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
    ];
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .resolve_to_addrs("localhost", &loopback)
        // No proxy from the system's settings: HTTP_PROXY would see http:// credentials.
        .no_proxy();
    if let Some(proxy) = https_proxy(env)? {
        builder = builder.proxy(proxy);
    }
    Ok(builder)
}

/// The proxy for https targets: `HTTPS_PROXY`, else `ALL_PROXY` (either in lower case too),
/// minus the hosts of `NO_PROXY`. Loopback targets always go direct, and so does any http://
/// target (only loopback ones are allowed): a proxy would read their credentials in clear. A
/// proxy value that is not a URL fails here, at start.
fn https_proxy(env: &dyn Fn(&str) -> Option<String>) -> reqwest::Result<Option<Proxy>> {
    const LOOPBACK: &str = "localhost,127.0.0.0/8,::1";
    let first = |names: &[&str]| {
        names
            .iter()
            .filter_map(|n| env(n))
            .map(|v| v.trim().to_owned())
            .find(|v| !v.is_empty())
    };
    let Some(target) = first(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]) else {
        return Ok(None);
    };
    let direct = match first(&["NO_PROXY", "no_proxy"]) {
        Some(list) => format!("{list},{LOOPBACK}"),
        None => LOOPBACK.to_owned(),
    };
    let proxy = Proxy::https(target.as_str())?.no_proxy(NoProxy::from_string(&direct));
    Ok(Some(proxy))
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the response body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the connection failed while reading the body: {0}")]
    Read(#[source] reqwest::Error),
}

/// Reads the whole (decompressed) body, refusing more than `limit` bytes.
pub async fn read_body(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    read_body_expecting(response, limit, 0).await
}

/// [`read_body`], with room reserved at once for `expected` bytes (capped by `limit`): the
/// caller's own estimate, such as the size of the last body of its kind, which saves growing
/// the buffer step by step (and copying it each time) for bodies of hundreds of KB.
pub async fn read_body_expecting(
    mut response: reqwest::Response,
    limit: usize,
    expected: usize,
) -> Result<Vec<u8>, BodyError> {
    // The declared length is the server's word, not a reason to reserve memory: the buffer
    // grows with what actually arrives.
    let mut body = Vec::with_capacity(limit.min(expected.max(8 * 1024)));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A short, printable excerpt of a body, with every given secret blanked out.
pub fn excerpt(body: &[u8], secrets: &[&SecretString]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    for s in secrets {
        let s = s.expose_secret();
        if !s.is_empty() {
            text = text.replace(s, "[redacted]");
        }
    }
    let text = text.trim();
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        text.to_owned()
    }
}

/// A network failure in words, without the URL (the caller names the service).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response was cut off or undecodable"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// `Retry-After` as seconds or as an HTTP date (a date already past is no wait).
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A "proxy" on 127.0.0.1 that records the first line of what reaches it and answers 502.
    async fn recording_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                log.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or("").to_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        (url, seen)
    }

    /// A server on 127.0.0.1 that answers 200 `direct` to anything.
    async fn origin() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\ndirect")
                    .await;
            }
        });
        addr
    }

    fn env(
        pairs: &'static [(&'static str, &'static str)],
        proxy: &str,
    ) -> impl Fn(&str) -> Option<String> {
        let proxy = proxy.to_owned();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.replace("PROXY", &proxy))
        }
    }

    fn build(
        env: &dyn Fn(&str) -> Option<String>,
        direct: &[(&str, SocketAddr)],
    ) -> reqwest::Client {
        let secs = Duration::from_secs(5);
        let mut b = builder(secs, secs, env).unwrap();
        for (host, addr) in direct {
            b = b.resolve(host, *addr);
        }
        b.build().unwrap()
    }

    #[tokio::test]
    async fn loopback_and_http_targets_never_go_through_a_proxy() {
        let (proxy, seen) = recording_proxy().await;
        let origin = origin().await;
        let everything = env(
            &[
                ("HTTP_PROXY", "PROXY"),
                ("http_proxy", "PROXY"),
                ("HTTPS_PROXY", "PROXY"),
                ("ALL_PROXY", "PROXY"),
                ("all_proxy", "PROXY"),
            ],
            &proxy,
        );
        let client = build(&everything, &[]);
        for url in [
            format!("http://{origin}/api/v1/users"),
            format!("http://localhost:{}/api/v1/users", origin.port()),
        ] {
            let r = client.get(&url).send().await.unwrap();
            assert_eq!(r.text().await.unwrap(), "direct", "{url}");
        }
        // https to a loopback address: straight to it (the TLS handshake then fails there).
        let https = format!("https://127.0.0.1:{}/", origin.port());
        assert!(client.get(&https).send().await.is_err());
        assert!(
            seen.lock().unwrap().is_empty(),
            "{:?}",
            seen.lock().unwrap()
        );
    }

    #[tokio::test]
    async fn https_targets_use_https_proxy_or_all_proxy_but_not_no_proxy_hosts() {
        let (proxy, seen) = recording_proxy().await;
        let origin = origin().await;
        for vars in [
            &[("HTTPS_PROXY", "PROXY")][..],
            &[("all_proxy", "PROXY")][..],
        ] {
            let client = build(&env(vars, &proxy), &[]);
            let sent = client
                .get("https://acme.okta.example/api/v1/users")
                .send()
                .await;
            assert!(sent.is_err(), "the recording proxy refuses the tunnel");
        }
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["CONNECT acme.okta.example:443 HTTP/1.1"; 2]
        );
        // A NO_PROXY host goes direct (here: to the local origin, which speaks no TLS).
        seen.lock().unwrap().clear();
        let vars = &[("HTTPS_PROXY", "PROXY"), ("NO_PROXY", "okta.example")][..];
        let client = build(&env(vars, &proxy), &[("acme.okta.example", origin)]);
        let url = format!("https://acme.okta.example:{}/", origin.port());
        assert!(client.get(&url).send().await.is_err());
        assert!(
            seen.lock().unwrap().is_empty(),
            "{:?}",
            seen.lock().unwrap()
        );
        // HTTP_PROXY alone is not used at all.
        let client = build(
            &env(&[("HTTP_PROXY", "PROXY")], &proxy),
            &[("acme.okta.example", origin)],
        );
        assert!(client.get(&url).send().await.is_err());
        assert!(
            seen.lock().unwrap().is_empty(),
            "{:?}",
            seen.lock().unwrap()
        );
        // A proxy value that is no URL fails at start.
        let bad = |name: &str| (name == "HTTPS_PROXY").then(|| "http://[bad".to_owned());
        assert!(builder(Duration::from_secs(1), Duration::from_secs(1), &bad).is_err());
    }

    #[test]
    fn excerpt_blanks_secrets_and_bounds_length() {
        let key = SecretString::from("s3cr3t".to_owned());
        let body = format!("bad key s3cr3t {}", "x".repeat(1000));
        let e = excerpt(body.as_bytes(), &[&key]);
        assert!(!e.contains("s3cr3t"));
        assert!(e.contains("[redacted]"));
        assert!(e.chars().count() <= 301);
    }

    #[test]
    fn retry_after_in_both_forms() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = retry_after(&later).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        assert_eq!(retry_after("soon"), None);
    }
}
