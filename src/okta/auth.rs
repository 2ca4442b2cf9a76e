//! Authentication toward Okta: an SSWS API token, or OAuth 2.0 for a service app — client
//! credentials with a `private_key_jwt` client assertion, and DPoP-bound tokens (RFC 9449)
//! where the app demands them.
//!
//! With OAuth, the access token is fetched from `{org}/oauth2/v1/token`, cached, and renewed a
//! minute before it expires (and once more when the API says it expired). A token request
//! first goes without DPoP; when Okta answers that the app requires it ("The DPoP proof JWT
//! header is missing."), this and every later request carry a DPoP proof signed with a key
//! pair made for this process. Okta then binds the token to that key (`token_type` "DPoP"), and
//! every API request carries a fresh proof with `htm`, `htu` (no query), `iat`, `jti` and
//! `ath`. `use_dpop_nonce` challenges, from the token endpoint or the API, are answered with
//! the server's nonce. Apps that do not require DPoP get plain Bearer tokens.
//!
//! The token request is retried like every other request, with the same `[retry]` policy:
//! network errors, 5xx and a 200 that is not a token response after a back-off, a 429 after
//! its `X-Rate-Limit-Reset` (or `Retry-After`). A refusal (`invalid_client`, `invalid_scope`,
//! ...) is final and says what to change.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::Url;

use super::client::{OktaError, rate_limit_wait};
use crate::config::OAuthSettings;
use crate::http;
use crate::metrics::{Metrics, Service};
use crate::retry::{Attempt, RetryPolicy, with_retry};
use crate::signing::{self, Algorithm, EcPublicJwk, Header, PrivateKey};

/// A token is renewed this long before it expires.
const RENEW_EARLY: Duration = Duration::from_secs(60);
/// How long a client assertion is valid, in seconds (Okta takes at most an hour).
const ASSERTION_LIFETIME: u64 = 300;
/// Token requests one attempt may make while Okta asks for DPoP or a new nonce.
const DPOP_EXCHANGES: usize = 4;
/// The largest token response read (a real one is a few KB).
const MAX_TOKEN_RESPONSE_BYTES: usize = 1024 * 1024;
/// The longest lifetime believed of a token, whatever `expires_in` says (Okta's longest is a
/// day): a token is fetched again at least this often.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Why the OAuth client could not be set up, before any request.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot build the token URL: {0}")]
    TokenUrl(#[source] url::ParseError),
    #[error("cannot make a DPoP key pair: {0}")]
    DpopKeyPair(#[source] signing::SignError),
}

/// The headers that authenticate one API request.
pub struct Credentials {
    pub authorization: HeaderValue,
    pub dpop: Option<HeaderValue>,
}

/// How requests to Okta are authenticated: an SSWS API token, or a service app's access token.
pub enum Auth {
    Ssws(SecretString),
    OAuth(Box<OAuth>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Auth {
    /// The mode in words, for `check` and logs.
    pub fn describe(&self) -> String {
        match self {
            Auth::Ssws(_) => "SSWS API token".into(),
            Auth::OAuth(o) => {
                let kind = match *o.lock_nonces() {
                    Nonces {
                        bound: Some(true), ..
                    } => "DPoP-bound token",
                    Nonces {
                        bound: Some(false), ..
                    } => "Bearer token",
                    _ => "token not fetched yet",
                };
                format!("OAuth 2.0 service app {} ({kind})", o.client_id)
            }
        }
    }

    /// The secrets to blank out of anything quoted from a response.
    pub fn secrets(&self) -> Vec<&SecretString> {
        match self {
            Auth::Ssws(token) => vec![token],
            Auth::OAuth(_) => Vec::new(),
        }
    }

    /// The headers for a request; with OAuth, a token is fetched first if needed.
    pub async fn credentials(&self, method: &str, url: &Url) -> Result<Credentials, OktaError> {
        match self {
            Auth::Ssws(token) => {
                let text = Zeroizing::new(format!("SSWS {}", token.expose_secret()));
                let mut value =
                    HeaderValue::from_str(&text).map_err(|_| OktaError::Unauthorized {
                        code: "the token holds characters not allowed in a header".into(),
                    })?;
                value.set_sensitive(true);
                Ok(Credentials {
                    authorization: value,
                    dpop: None,
                })
            }
            Auth::OAuth(o) => o.credentials(method, url).await,
        }
    }

    /// Looks at an API answer: stores a new DPoP nonce. Returns whether the request should be
    /// sent again at once (a nonce challenge, or a token that expired and was dropped).
    pub fn answer(&self, status: u16, headers: &HeaderMap) -> Retry {
        match self {
            Auth::Ssws(_) => Retry::No,
            Auth::OAuth(o) => o.answer(status, headers),
        }
    }
}

/// What an API answer asks of the next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing to answer: the response stands.
    No,
    /// The API demands a (new) DPoP nonce: send again with it.
    Nonce,
    /// The token expired: it was dropped; send again with a new one.
    NewToken,
}

/// What the DPoP exchange has learnt so far.
#[derive(Default)]
struct Nonces {
    /// The token endpoint's latest nonce.
    token: Option<String>,
    /// The API's latest nonce (a resource server keeps its own).
    resource: Option<String>,
    /// Whether the current token is DPoP-bound (None before the first token).
    bound: Option<bool>,
    /// The app requires DPoP: send proofs to the token endpoint.
    dpop_required: bool,
}

/// An access token, whether it is DPoP-bound, and when to fetch the next one.
struct Cached {
    token: SecretString,
    dpop: bool,
    renew_at: Instant,
}

/// The OAuth 2.0 client credentials of a service app.
pub struct OAuth {
    http: reqwest::Client,
    token_url: Url,
    client_id: String,
    key: PrivateKey,
    key_id: Option<String>,
    scopes: Vec<String>,
    dpop: DpopKey,
    token: tokio::sync::Mutex<Option<Cached>>,
    nonces: Mutex<Nonces>,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
}

/// The per-process DPoP key pair (P-256).
struct DpopKey {
    key: PrivateKey,
    jwk: EcPublicJwk,
}

impl DpopKey {
    fn generate() -> Result<Self, SetupError> {
        let (key, jwk) = PrivateKey::generate_p256().map_err(SetupError::DpopKeyPair)?;
        Ok(DpopKey { key, jwk })
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

#[derive(Serialize)]
struct ProofClaims<'a> {
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    token_type: String,
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize, Default)]
struct OAuthErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A `jti`: 128 bits from the system's random source, in hex. Okta refuses a `jti` it has
/// seen before, so it must never repeat, not even across processes started at the same moment,
/// nor be guessable by whoever would spend it first: not a job for a seeded fast generator.
fn random_id() -> Result<String, OktaError> {
    signing::random_id().map_err(OktaError::Random)
}

/// The URL without query or fragment, as `htu` wants it.
fn htu(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

impl OAuth {
    /// The client of one service app; its token requests are retried under `retry` and counted
    /// in `metrics` as Okta requests.
    pub fn new(
        http: reqwest::Client,
        org: &Url,
        settings: &OAuthSettings,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SetupError> {
        let token_url = org.join("oauth2/v1/token").map_err(SetupError::TokenUrl)?;
        Ok(OAuth {
            http,
            token_url,
            client_id: settings.client_id.clone(),
            key: settings.private_key.clone(),
            key_id: settings.key_id.clone(),
            scopes: settings.scopes.clone(),
            dpop: DpopKey::generate()?,
            token: tokio::sync::Mutex::new(None),
            nonces: Mutex::new(Nonces::default()),
            retry,
            metrics,
        })
    }

    /// The DPoP state. A lock poisoned by a panic elsewhere is taken over: every write to it
    /// sets one field, so it is never left half-changed.
    fn lock_nonces(&self) -> std::sync::MutexGuard<'_, Nonces> {
        self.nonces.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A `private_key_jwt` client assertion for the token endpoint, signed with the app's key.
    fn assertion(&self) -> Result<String, OktaError> {
        let now = unix_now();
        let header = Header {
            typ: "JWT",
            alg: self.key.algorithm(),
            kid: self.key_id.as_deref(),
            jwk: None,
        };
        let aud = self.token_url.as_str();
        let claims = AssertionClaims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud,
            iat: now,
            exp: now + ASSERTION_LIFETIME,
            jti: random_id()?,
        };
        self.key
            .jwt(&header, &claims)
            .map_err(|e| OktaError::OAuth {
                what: format!("cannot sign the client assertion: {e}"),
            })
    }

    /// A DPoP proof for one request; with a token, it carries the token's hash (`ath`), as API
    /// requests need.
    fn proof(
        &self,
        method: &str,
        url: &Url,
        nonce: Option<&str>,
        token: Option<&SecretString>,
    ) -> Result<HeaderValue, OktaError> {
        let header = Header {
            typ: "dpop+jwt",
            alg: Algorithm::ES256,
            kid: None,
            jwk: Some(&self.dpop.jwk),
        };
        let target = htu(url);
        let claims = ProofClaims {
            htm: method,
            htu: &target,
            iat: unix_now(),
            jti: random_id()?,
            nonce,
            ath: token.map(|t| signing::sha256_b64url(t.expose_secret().as_bytes())),
        };
        let jwt = self
            .dpop
            .key
            .jwt(&header, &claims)
            .map_err(|e| OktaError::OAuth {
                what: format!("cannot sign a DPoP proof: {e}"),
            })?;
        HeaderValue::from_str(&jwt).map_err(|_| OktaError::OAuth {
            what: "a DPoP proof is not a valid header".into(),
        })
    }

    /// The token (fetched first if none is fresh), and a proof when the token is DPoP-bound.
    async fn credentials(&self, method: &str, url: &Url) -> Result<Credentials, OktaError> {
        let (token, dpop) = self.token().await?;
        let scheme = if dpop { "DPoP" } else { "Bearer" };
        let text = Zeroizing::new(format!("{scheme} {}", token.expose_secret()));
        let mut authorization = HeaderValue::from_str(&text).map_err(|_| OktaError::OAuth {
            what: "Okta's access token is not a valid header".into(),
        })?;
        authorization.set_sensitive(true);
        let proof = if dpop {
            let nonce = self.lock_nonces().resource.clone();
            Some(self.proof(method, url, nonce.as_deref(), Some(&token))?)
        } else {
            None
        };
        Ok(Credentials {
            authorization,
            dpop: proof,
        })
    }

    /// The cached token, or a new one.
    async fn token(&self) -> Result<(SecretString, bool), OktaError> {
        let mut cache = self.token.lock().await;
        if let Some(c) = cache.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok((c.token.clone(), c.dpop));
        }
        let fresh = self.fetch_token().await?;
        let out = (fresh.token.clone(), fresh.dpop);
        *cache = Some(fresh);
        Ok(out)
    }

    /// Asks the token endpoint until it issues a token, retrying what is transient.
    async fn fetch_token(&self) -> Result<Cached, OktaError> {
        with_retry(
            &self.retry,
            "okta token",
            || self.metrics.retry(Service::Okta),
            || self.try_token(),
        )
        .await
    }

    /// One attempt at a token: a request, and more while Okta says that the app requires
    /// DPoP or asks for a new nonce.
    async fn try_token(&self) -> Attempt<Cached, OktaError> {
        for _ in 0..DPOP_EXCHANGES {
            let (nonce, with_proof) = {
                let n = self.lock_nonces();
                (n.token.clone(), n.dpop_required)
            };
            let request = match self.token_request(nonce.as_deref(), with_proof) {
                Ok(r) => r,
                Err(e) => return Attempt::Done(Err(e)),
            };
            let sent = request.send().await;
            self.metrics.request(
                Service::Okta,
                sent.as_ref().ok().map(|r| r.status().as_u16()),
            );
            let response = match sent {
                Ok(r) => r,
                Err(e) => return self.network_failure(http::describe(&e)),
            };
            let status = response.status();
            let headers = response.headers().clone();
            // The body holds the access token: wiped once read.
            let body = match http::read_body(response, MAX_TOKEN_RESPONSE_BYTES).await {
                Ok(b) => Zeroizing::new(b),
                Err(e) => return self.network_failure(e.to_string()),
            };
            if status == reqwest::StatusCode::OK {
                // A 200 that is not a token response may be a proxy's glitch: ask again.
                return match self.token_response(&body) {
                    Ok(cached) => Attempt::Done(Ok(cached)),
                    Err(error) => Attempt::retry(error),
                };
            }
            let err: OAuthErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            if !self.dpop_step(&err, &headers, with_proof) {
                return self.token_refusal(status, &headers, &err, &body);
            }
        }
        Attempt::Done(Err(OktaError::OAuth {
            what: "Okta kept asking for another DPoP proof at the token endpoint".into(),
        }))
    }

    /// The token request: the client credentials grant with a fresh client assertion, and a
    /// DPoP proof (with the token endpoint's nonce, if it gave one) once the app requires DPoP.
    fn token_request(
        &self,
        nonce: Option<&str>,
        with_proof: bool,
    ) -> Result<reqwest::RequestBuilder, OktaError> {
        let assertion = self.assertion()?;
        let scope = self.scopes.join(" ");
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        let mut request = self
            .http
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        if with_proof {
            request = request.header("DPoP", self.proof("POST", &self.token_url, nonce, None)?);
        }
        Ok(request)
    }

    /// The token endpoint could not be reached, or the connection broke before the whole
    /// answer came: retried after a back-off.
    fn network_failure(&self, detail: String) -> Attempt<Cached, OktaError> {
        let error = OktaError::Network {
            org: self.token_url.origin().ascii_serialization(),
            detail,
        };
        Attempt::Retry {
            reason: format!("token request: {error}"),
            error,
        }
    }

    /// Whether a refusal is a step of the DPoP exchange, answered by asking again at once: the
    /// app requires DPoP (proofs are sent from now on), or the endpoint wants a new nonce (kept
    /// for the next proof).
    fn dpop_step(&self, err: &OAuthErrorBody, headers: &HeaderMap, with_proof: bool) -> bool {
        match err.error.as_str() {
            "invalid_dpop_proof" if !with_proof && err.error_description.contains("missing") => {
                tracing::debug!("the app requires DPoP; sending proofs from now on");
                self.lock_nonces().dpop_required = true;
                true
            }
            "use_dpop_nonce" => match headers.get("dpop-nonce").and_then(|v| v.to_str().ok()) {
                Some(nonce) => {
                    self.lock_nonces().token = Some(nonce.to_owned());
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    /// Any other answer of the token endpoint: a 429 waits for the rate limit's reset, a 5xx
    /// is retried (after its `Retry-After`, if it sent one), anything else is final and says
    /// what to change.
    fn token_refusal(
        &self,
        status: reqwest::StatusCode,
        headers: &HeaderMap,
        err: &OAuthErrorBody,
        body: &[u8],
    ) -> Attempt<Cached, OktaError> {
        let error = token_error(status.as_u16(), err, &self.scopes, body);
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(http::retry_after);
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            // Okta's rate-limit headers, as for the API; else Retry-After.
            let wait = match retry_after {
                Some(wait) if !headers.contains_key("x-rate-limit-reset") => wait,
                _ => rate_limit_wait(headers),
            };
            Attempt::Wait {
                reason: "Okta rate limit reached at the token endpoint (429); waiting for its \
                         reset"
                    .into(),
                error,
                wait,
                counts: false,
            }
        } else if status.is_server_error() {
            match retry_after {
                Some(wait) => Attempt::Wait {
                    reason: format!("{error} (Retry-After {} s)", wait.as_secs()),
                    error,
                    wait: wait.max(Duration::from_secs(1)),
                    counts: true,
                },
                None => Attempt::retry(error),
            }
        } else {
            Attempt::Done(Err(error))
        }
    }

    /// Reads a 200 of the token endpoint, and notes whether the token is DPoP-bound.
    fn token_response(&self, body: &[u8]) -> Result<Cached, OktaError> {
        let t: TokenResponse = serde_json::from_slice(body).map_err(|e| OktaError::Malformed {
            path: self.token_url.path().to_owned(),
            detail: format!("not a token response: {e}"),
        })?;
        let dpop = t.token_type.eq_ignore_ascii_case("DPoP");
        self.lock_nonces().bound = Some(dpop);
        tracing::debug!(
            token_type = %t.token_type,
            expires_in = t.expires_in,
            "obtained an Okta access token"
        );
        let now = Instant::now();
        Ok(Cached {
            token: SecretString::from(t.access_token),
            dpop,
            renew_at: renew_at(now, t.expires_in),
        })
    }

    /// See [`Auth::answer`]: the API's nonce is kept whatever the status.
    fn answer(&self, status: u16, headers: &HeaderMap) -> Retry {
        if let Some(n) = headers.get("dpop-nonce").and_then(|v| v.to_str().ok()) {
            self.lock_nonces().resource = Some(n.to_owned());
        }
        if status != 401 {
            return Retry::No;
        }
        let challenge = headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        if challenge.contains("use_dpop_nonce") {
            return Retry::Nonce;
        }
        if challenge.contains("invalid_token") {
            // Drop the token; the next try fetches a new one.
            if let Ok(mut cache) = self.token.try_lock() {
                *cache = None;
            }
            return Retry::NewToken;
        }
        Retry::No
    }
}

/// When a token that Okta says lives `expires_in` seconds is renewed: [`RENEW_EARLY`] before
/// it expires, believing at most [`MAX_TOKEN_LIFETIME`] (a huge `expires_in` cannot overflow
/// the clock).
fn renew_at(now: Instant, expires_in: u64) -> Instant {
    let lifetime = Duration::from_secs(expires_in).min(MAX_TOKEN_LIFETIME);
    now.checked_add(lifetime.saturating_sub(RENEW_EARLY))
        .unwrap_or(now)
}

/// A token endpoint error, in words that say what to change in Okta. The server's words are
/// quoted as an excerpt: one line, bounded.
fn token_error(status: u16, e: &OAuthErrorBody, scopes: &[String], body: &[u8]) -> OktaError {
    let desc = http::excerpt(e.error_description.as_bytes(), &[]);
    let desc = if desc.is_empty() {
        String::new()
    } else {
        format!(": {desc}")
    };
    let what = match e.error.as_str() {
        "invalid_client" => format!(
            "Okta rejected the client assertion (invalid_client{desc}). Check okta.oauth.client_id, \
             that the public key registered for the app (Client Credentials > Public keys) matches \
             okta.oauth.private_key_file and okta.oauth.key_id, and that this machine's clock is right"
        ),
        "invalid_scope" => format!(
            "Okta refused the scopes {} (invalid_scope{desc}). Grant them to the app under \
             Okta API Scopes, or set okta.oauth.scopes",
            scopes.join(" ")
        ),
        "invalid_dpop_proof" => format!(
            "Okta rejected the DPoP proof (invalid_dpop_proof{desc}). If the app should not use \
             DPoP, clear \"Require Demonstrating Proof of Possession (DPoP) header in token \
             requests\" in its General Settings"
        ),
        "unauthorized_client" => format!(
            "Okta does not allow this app the client credentials grant (unauthorized_client{desc}): \
             create it as an API Services app"
        ),
        "" => format!(
            "the token request failed with HTTP {status}: {}",
            http::excerpt(body, &[])
        ),
        other => format!(
            "the token request failed ({}{desc})",
            http::excerpt(other.as_bytes(), &[])
        ),
    };
    OktaError::OAuth { what }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_expires_in_is_clamped_not_an_overflow() {
        let now = Instant::now();
        let day = MAX_TOKEN_LIFETIME - RENEW_EARLY;
        assert_eq!(renew_at(now, u64::MAX), now + day);
        assert_eq!(renew_at(now, u64::MAX / 1000), now + day);
        assert_eq!(renew_at(now, 3600), now + Duration::from_secs(3540));
        assert_eq!(renew_at(now, 10), now);
    }

    #[test]
    fn the_token_endpoints_words_are_quoted_on_one_bounded_line() {
        let err = OAuthErrorBody {
            error: "weird\nerror".into(),
            error_description: format!("line one\r\nFAKE LOG LINE {}", "x".repeat(1000)),
        };
        for e in [
            err.clone_with("invalid_client"),
            err.clone_with("weird\nerror"),
        ] {
            let text = token_error(400, &e, &[], b"").to_string();
            assert!(!text.contains(['\n', '\r']), "{text}");
            assert!(text.contains("line oneFAKE LOG LINE"), "{text}");
            assert!(text.chars().count() < 700, "{text}");
        }
    }

    impl OAuthErrorBody {
        fn clone_with(&self, error: &str) -> OAuthErrorBody {
            OAuthErrorBody {
                error: error.into(),
                error_description: self.error_description.clone(),
            }
        }
    }

    #[test]
    fn htu_drops_query_and_fragment() {
        let u = Url::parse("https://a.okta.com/api/v1/users?limit=200&after=x#f").unwrap();
        assert_eq!(htu(&u), "https://a.okta.com/api/v1/users");
        let u = Url::parse("http://127.0.0.1:8080/oauth2/v1/token").unwrap();
        assert_eq!(htu(&u), "http://127.0.0.1:8080/oauth2/v1/token");
    }

    #[test]
    fn dpop_keys_have_a_public_jwk_only() {
        let k = DpopKey::generate().unwrap();
        let jwk = serde_json::to_value(&k.jwk).unwrap();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert!(jwk.get("d").is_none());
        assert_eq!(k.key.algorithm(), Algorithm::ES256);
    }
}
