//! What both HTTP clients share: building the `reqwest` client, reading a body with a size cap,
//! quoting a server's answer in an error without ever quoting a secret, wording a network
//! failure, and reading `Retry-After`.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

/// The `User-Agent` sent to Okta and Pendo.
pub const USER_AGENT: &str = concat!("okta-pendo-sync/", env!("CARGO_PKG_VERSION"));

/// Builds a client: gzip, rustls, no redirects (a redirect could carry credentials elsewhere),
/// connect and whole-request timeouts.
pub fn client(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
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
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    // The declared length is the server's word, not a reason to reserve memory: the buffer
    // grows with what actually arrives.
    let mut body = Vec::with_capacity(limit.min(8 * 1024));
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
