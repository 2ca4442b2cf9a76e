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
    from_env(connect_timeout, request_timeout)?.build()
}

/// [`client`], but bodies come as the server sent them: a gzip body is inflated by
/// [`read_body_decoding`], not by reqwest (which zeroes a buffer for every piece it inflates and
/// passes each through several layers). A request on it asks for gzip itself, when it wants it.
pub fn client_undecoded(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    from_env(connect_timeout, request_timeout)?
        .no_gzip()
        .build()
}

/// [`builder`] with the process's environment.
fn from_env(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> reqwest::Result<reqwest::ClientBuilder> {
    builder(connect_timeout, request_timeout, &|name| {
        std::env::var(name).ok()
    })
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
    /// A `Content-Encoding` other than gzip or identity ([`read_body_decoding`] only).
    #[error("the response body is encoded as `{0}`, which this client does not read (only gzip)")]
    Encoding(String),
    /// A gzip body that does not inflate ([`read_body_decoding`] only).
    #[error("the response body is not valid gzip: {0}")]
    Corrupt(String),
}

/// Reads the whole body as it comes (decompressed by reqwest on a [`client`]; as sent on a
/// [`client_undecoded`], where a request that asks for no encoding gets none), refusing more
/// than `limit` bytes.
pub async fn read_body(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    // The declared length is the server's word, not a reason to reserve memory: the buffer
    // grows with what actually arrives.
    read_into(response, Vec::with_capacity(limit.min(8 * 1024)), limit).await
}

/// Reads the rest of the body as it comes onto the end of `body`, up to `limit` bytes in all.
async fn read_into(
    mut response: reqwest::Response,
    mut body: Vec<u8>,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads the whole body of a response from a [`client_undecoded`], inflated when it came with
/// `Content-Encoding: gzip` (as it comes when it came with none, or `identity`; any other
/// encoding is refused), refusing more than `limit` bytes of the *inflated* body: a gzip bomb
/// is refused as soon as its output passes `limit`, never inflated whole. Room is reserved at
/// once for `expected` bytes (capped by `limit`): the caller's own estimate, such as the size
/// of the last body of its kind, which saves growing the buffer step by step (and copying it
/// each time) for bodies of hundreds of KB.
pub async fn read_body_decoding(
    mut response: reqwest::Response,
    limit: usize,
    expected: usize,
) -> Result<Vec<u8>, BodyError> {
    let gzip = encoding(response.headers())? == Encoding::Gzip;
    // The declared length is the server's word, not a reason to reserve memory: the buffer
    // grows with what actually arrives.
    let mut body = Vec::with_capacity(limit.min(expected.max(8 * 1024)));
    if !gzip {
        return read_into(response, body, limit).await;
    }
    let mut gunzip = Gunzip::new(limit);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        gunzip.feed(&chunk, &mut body)?;
    }
    gunzip.finish()?;
    Ok(body)
}

/// What a body's `Content-Encoding` says to do with it.
#[derive(Debug, PartialEq)]
enum Encoding {
    Identity,
    Gzip,
}

/// The body's coding from its `Content-Encoding` (every value, each a list): none or only
/// `identity` is the body as it is, `gzip` (or `x-gzip`) alone is gzip, anything else (another
/// coding, or gzip on top of another) is refused, named.
fn encoding(headers: &reqwest::header::HeaderMap) -> Result<Encoding, BodyError> {
    let mut found = Encoding::Identity;
    for value in headers.get_all(reqwest::header::CONTENT_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| BodyError::Encoding(excerpt(value.as_bytes(), &[])))?;
        for coding in text.split(',').map(str::trim) {
            if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
                continue;
            }
            let is_gzip =
                coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip");
            if !is_gzip || found == Encoding::Gzip {
                return Err(BodyError::Encoding(excerpt(text.as_bytes(), &[])));
            }
            found = Encoding::Gzip;
        }
    }
    Ok(found)
}

/// A gzip stream inflated piece by piece, as it arrives, into one buffer that never holds more
/// than `limit` bytes (and one more, to know the stream has more than `limit`).
struct Gunzip {
    inflate: flate2::Decompress,
    limit: usize,
    ended: bool,
}

impl Gunzip {
    fn new(limit: usize) -> Gunzip {
        Gunzip {
            // 15: the largest window, which any gzip stream fits.
            inflate: flate2::Decompress::new_gzip(15),
            limit,
            ended: false,
        }
    }

    /// The most gzip a body of at most `limit` bytes takes: deflate's stored blocks add 5 bytes
    /// per 65,535, the gzip header and trailer a few (1 KiB leaves room for a name or a
    /// comment). More is refused, so that a stream that inflates to (almost) nothing is not read
    /// until the request times out.
    fn max_input(&self) -> u64 {
        let limit = u64::try_from(self.limit).unwrap_or(u64::MAX);
        limit.saturating_add(limit / 64).saturating_add(1024)
    }

    /// Inflates `input` (the next piece of the stream) onto the end of `out`.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), BodyError> {
        loop {
            // A full buffer may leave output pending in the inflater, even with all the input
            // taken: it is asked again with more room.
            let full = out.len() == out.capacity();
            if self.ended {
                return match input.is_empty() {
                    true => Ok(()),
                    false => Err(BodyError::Corrupt(
                        "more data follows the end of the gzip stream".into(),
                    )),
                };
            }
            if input.is_empty() && !full {
                return Ok(());
            }
            if full {
                // Room to grow by as much again (at least 32 KiB), but to one byte past the
                // limit at most: that byte, written, says the body is over it.
                let room = self.limit.saturating_add(1).saturating_sub(out.len());
                let more = out.len().max(32 * 1024).min(room);
                if more == 0 {
                    return Err(BodyError::TooLarge { limit: self.limit });
                }
                out.reserve_exact(more);
            }
            let (read, written) = (self.inflate.total_in(), out.len());
            let status = self
                .inflate
                .decompress_vec(input, out, flate2::FlushDecompress::None)
                .map_err(|e| BodyError::Corrupt(e.to_string()))?;
            if out.len() > self.limit {
                return Err(BodyError::TooLarge { limit: self.limit });
            }
            if self.inflate.total_in() > self.max_input() {
                return Err(BodyError::TooLarge { limit: self.limit });
            }
            let used = usize::try_from(self.inflate.total_in() - read).unwrap_or(input.len());
            input = input.get(used..).unwrap_or_default();
            if status == flate2::Status::StreamEnd {
                self.ended = true;
            } else if used == 0 && out.len() == written && !input.is_empty() {
                // Input and room, and nothing done with them: zlib answers that with an error
                // of its own; this is the fallback, never a loop.
                return Err(BodyError::Corrupt(
                    "the gzip stream makes no progress".into(),
                ));
            }
        }
    }

    /// The whole body has come: the gzip stream must have ended with it.
    fn finish(&self) -> Result<(), BodyError> {
        if self.ended {
            Ok(())
        } else {
            Err(BodyError::Corrupt(
                "the body ends before the gzip stream does (cut short)".into(),
            ))
        }
    }
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

    /// A server on 127.0.0.1 that answers 200 with `headers` (lines ending in CRLF) and `body`
    /// to anything.
    async fn serving(headers: &'static str, body: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\n{headers}content-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            }
        });
        url
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// A page-like text of `n` bytes that does not compress to nothing.
    fn text(n: usize) -> Vec<u8> {
        let unit = b"{\"id\":\"00u\",\"a\":1234567},";
        (0..n)
            .map(|i| unit[i % unit.len()] ^ ((i * i / 1000 % 7) as u8))
            .collect()
    }

    async fn fetch(
        headers: &'static str,
        body: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<u8>, BodyError> {
        let url = serving(headers, body).await;
        let secs = Duration::from_secs(5);
        let client = client_undecoded(secs, secs).unwrap();
        let response = client
            .get(&url)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip")
            .send()
            .await
            .unwrap();
        read_body_decoding(response, limit, 100).await
    }

    #[tokio::test]
    async fn gzip_and_identity_bodies_are_read_as_the_text_they_carry() {
        let page = text(300_000);
        for headers in [
            "content-encoding: gzip\r\n",
            "Content-Encoding: X-GZIP\r\n",
            "content-encoding: identity, gzip\r\n",
        ] {
            let got = fetch(headers, gzip(&page), 1 << 20).await.unwrap();
            assert!(got == page, "{headers}");
        }
        for headers in ["", "content-encoding: identity\r\n"] {
            let got = fetch(headers, page.clone(), 1 << 20).await.unwrap();
            assert!(got == page, "{headers}");
        }
        // Exactly the limit is still a body; one byte more is not.
        let got = fetch("content-encoding: gzip\r\n", gzip(&page), page.len()).await;
        assert_eq!(got.unwrap().len(), page.len());
        let over = fetch("content-encoding: gzip\r\n", gzip(&page), page.len() - 1).await;
        assert!(matches!(over, Err(BodyError::TooLarge { .. })), "{over:?}");
        let over = fetch("", page.clone(), page.len() - 1).await;
        assert!(matches!(over, Err(BodyError::TooLarge { .. })), "{over:?}");
    }

    #[tokio::test]
    async fn other_encodings_and_broken_gzip_are_refused_naming_why() {
        let page = text(10_000);
        let e = fetch("content-encoding: br\r\n", page.clone(), 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the response body is encoded as `br`, which this client does not read (only gzip)"
        );
        let e = fetch(
            "content-encoding: gzip, gzip\r\n",
            gzip(&gzip(&page)),
            1 << 20,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, BodyError::Encoding(c) if c == "gzip, gzip"),
            "{e:?}"
        );

        // Not gzip at all.
        let e = fetch("content-encoding: gzip\r\n", page.clone(), 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(e, BodyError::Corrupt(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("the response body is not valid gzip: "),
            "{e}"
        );
        // A byte of the deflate data changed: the CRC (or the deflate stream) says so.
        let mut flipped = gzip(&page);
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x55;
        let e = fetch("content-encoding: gzip\r\n", flipped, 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(e, BodyError::Corrupt(_)), "{e:?}");
        // Cut short, or followed by more.
        let whole = gzip(&page);
        let cut = whole[..whole.len() - 20].to_vec();
        let e = fetch("content-encoding: gzip\r\n", cut, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the response body is not valid gzip: the body ends before the gzip stream does \
             (cut short)"
        );
        let mut more = whole.clone();
        more.extend_from_slice(&whole);
        let e = fetch("content-encoding: gzip\r\n", more, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the response body is not valid gzip: more data follows the end of the gzip stream"
        );
    }

    #[test]
    fn a_gzip_stream_that_inflates_to_nothing_is_refused_by_its_own_size() {
        // A gzip header, then empty stored blocks, never the last one: no output at all.
        let mut stream = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let limit = 64 * 1024;
        let mut gunzip = Gunzip::new(limit);
        let mut out = Vec::new();
        let empty_block = [0u8, 0, 0, 0xff, 0xff];
        let mut refused = None;
        for _ in 0..10 * limit / empty_block.len() {
            stream.extend_from_slice(&empty_block);
            if let Err(e) = gunzip.feed(&stream, &mut out) {
                refused = Some(e);
                break;
            }
            stream.clear();
        }
        assert!(out.is_empty());
        assert!(
            matches!(refused, Some(BodyError::TooLarge { limit: 65_536 })),
            "{refused:?}"
        );
        assert!(gunzip.inflate.total_in() <= gunzip.max_input() + 10);
    }

    #[test]
    fn a_gzip_bomb_is_refused_before_it_is_inflated_past_the_limit() {
        // 16 MiB of zeros in about 16 KB (a test build compresses slowly).
        let bomb = gzip(&vec![0u8; 16 << 20]);
        let limit = 1 << 20;
        let mut gunzip = Gunzip::new(limit);
        let mut out = Vec::new();
        let mut refused = None;
        for piece in bomb.chunks(16 * 1024) {
            if let Err(e) = gunzip.feed(piece, &mut out) {
                refused = Some(e);
                break;
            }
        }
        assert!(
            matches!(refused, Some(BodyError::TooLarge { limit: 1_048_576 })),
            "{refused:?}"
        );
        assert!(out.capacity() <= limit + 1, "{}", out.capacity());
    }

    #[test]
    fn a_gzip_stream_inflates_the_same_whatever_its_pieces() {
        let page = text(200_000);
        let packed = gzip(&page);
        for size in [1, 7, 1000, 16 * 1024, packed.len()] {
            for room in [0, 100, page.len(), page.len() + 1] {
                let mut gunzip = Gunzip::new(page.len());
                let mut out = Vec::with_capacity(room);
                for piece in packed.chunks(size) {
                    gunzip.feed(piece, &mut out).unwrap();
                }
                gunzip.finish().unwrap();
                assert!(out == page, "pieces of {size}, room for {room}");
            }
        }
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
