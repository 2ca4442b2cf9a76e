//! OAuth 2.0 for a [`FakeOkta`](crate::FakeOkta) acting as an Okta org whose API is accessed by a
//! service app: client credentials with a `private_key_jwt` client assertion, and DPoP
//! (RFC 9449) sender-constrained access tokens.
//!
//! Enabled by [`OktaOptions::oauth`](crate::OktaOptions::oauth). The org then serves
//! `POST {base}/oauth2/v1/token` and demands OAuth access tokens on the API routes (an `SSWS`
//! token answers 401 E0000011). Everything a real Okta verifies is verified: the client
//! assertion's signature (RS256 or ES256 with the registered public key), `iss`, `sub`, `aud`,
//! `exp` (at most one hour after `iat`), `jti` replay; the granted scopes; the DPoP proof's
//! `typ`, `alg`, embedded public `jwk`, signature, `htm`, `htu`, `iat`, `jti` replay, `nonce`
//! and, at the API, `ath` and the key binding of the token.
//!
//! Replay bookkeeping follows what Okta accepts: a client assertion's `jti` is used up when a
//! token is issued with it (a token request refused for any reason, `use_dpop_nonce` included,
//! does not use it up, so the usual retry after a nonce challenge may resend the same
//! assertion); a DPoP proof's `jti` is used up when the proof is accepted (at the token
//! endpoint: when a token is issued; at the API: when the proof passed every check, the
//! nonce included).
//!
//! Faults ([`TokenFault`]) are injected into token requests by number, before any check.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};

/// Path of the token endpoint of the org authorization server.
pub const TOKEN_PATH: &str = "/oauth2/v1/token";

/// The `client_assertion_type` of a `private_key_jwt` client assertion.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clock skew allowed on the `exp`/`iat` checks of client assertions and on a DPoP proof's
/// `iat`, in seconds.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// The lifetime of a token whose `expires_in` no clock can add: a hundred years.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// How a [`FakeOkta`](crate::FakeOkta) with [`OktaOptions::oauth`](crate::OktaOptions::oauth)
/// set authenticates its API clients: the registration of one OAuth service app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthOptions {
    /// The service app's client id: the `iss` and `sub` of its client assertions; default
    /// `"0oa-test-client"`.
    pub client_id: String,
    /// The registered client public key (RSA or EC P-256, SubjectPublicKeyInfo PEM, `BEGIN
    /// PUBLIC KEY`): client assertions must be signed RS256 (RSA) or ES256 (EC) with its
    /// private key; default [`keys::RSA_PUBLIC_PEM`](crate::keys::RSA_PUBLIC_PEM).
    pub public_key_pem: String,
    /// Whether token requests must carry a DPoP proof (Okta's default for new service apps);
    /// default true. When false, a request without a proof gets a `Bearer` token, one with a
    /// valid proof still a DPoP-bound one.
    pub require_dpop: bool,
    /// Whether the token endpoint demands a server nonce in the DPoP proof (`use_dpop_nonce`)
    /// before issuing a token; default true.
    pub token_nonce: bool,
    /// Whether the API demands a server nonce in the DPoP proof (401 `use_dpop_nonce`);
    /// default false.
    pub resource_nonce: bool,
    /// Scopes granted to the app; default `["okta.users.read", "okta.groups.read"]`.
    pub granted_scopes: Vec<String>,
    /// Lifetime of the access tokens issued (`expires_in`); default 3600 s. Any value is
    /// answered as it is, even one no clock can add (`Duration::from_secs(u64::MAX)`): such a
    /// token never expires here.
    pub token_lifetime: Duration,
    /// Whether the app has an admin role; default true. When false, API requests that pass
    /// every token check answer 403 E0000006.
    pub admin_role: bool,
    /// Faults to inject into token requests, by their number; default none.
    pub token_faults: Vec<TokenFault>,
    /// How far, in seconds, a DPoP proof's `iat` may be from the time it is received; default
    /// [`CLOCK_SKEW_SECS`]. Tests shorten it to see that proofs are made just before they are
    /// sent.
    pub proof_iat_window_secs: i64,
}

/// A fault injected into one token request. `request` is 0-based and counts the requests the
/// token endpoint receives (see [`FakeOkta::token_requests`](crate::FakeOkta::token_requests)).
/// A faulted request is answered before any check: it uses up no assertion, proof or nonce,
/// and is recorded with the status answered and `error` `Some("fault")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFault {
    /// The n-th token request answers `status` with an Okta error body (`errorCode`
    /// E0000009 for a 5xx).
    Status {
        /// 0-based token request number.
        request: usize,
        /// HTTP status to answer (an invalid code becomes 500).
        status: u16,
    },
    /// The n-th token request answers 429 with errorCode E0000047, `x-rate-limit-limit`,
    /// `x-rate-limit-remaining: 0` and `x-rate-limit-reset` = now + `reset_after_secs` as UTC
    /// epoch seconds, with a matching `date`.
    RateLimited {
        /// 0-based token request number.
        request: usize,
        /// Seconds from the response's `date` to `x-rate-limit-reset`.
        reset_after_secs: u64,
    },
    /// The n-th token request answers 200 with a body that is not a token response (an HTML
    /// page, as a proxy might send).
    NotATokenResponse {
        /// 0-based token request number.
        request: usize,
    },
    /// The n-th token request answers 200 with a `content-length` for a whole token response,
    /// sends half of it, then aborts the connection. Recorded with status 200.
    CutMidBody {
        /// 0-based token request number.
        request: usize,
    },
}

impl TokenFault {
    fn request(&self) -> usize {
        match self {
            TokenFault::Status { request, .. }
            | TokenFault::RateLimited { request, .. }
            | TokenFault::NotATokenResponse { request }
            | TokenFault::CutMidBody { request } => *request,
        }
    }

    fn status(&self) -> u16 {
        match self {
            TokenFault::Status { status, .. } => *status,
            TokenFault::RateLimited { .. } => 429,
            TokenFault::NotATokenResponse { .. } | TokenFault::CutMidBody { .. } => 200,
        }
    }
}

/// What the `n`-th token request answers under `fault`.
fn fault_response(fault: &TokenFault, n: usize, now: SystemTime) -> Response {
    let okta_error = |code: &str, summary: &str| {
        json!({
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": format!("oaetokenfault{n}"),
            "errorCauses": [],
        })
        .to_string()
    };
    let status = fault.status();
    let (content_type, payload) = match fault {
        TokenFault::Status { .. } if status >= 500 => (
            "application/json",
            okta_error("E0000009", "Service Unavailable"),
        ),
        TokenFault::Status { .. } => (
            "application/json",
            okta_error("E0000001", "Api validation failed"),
        ),
        TokenFault::RateLimited { .. } => (
            "application/json",
            okta_error(
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
            ),
        ),
        TokenFault::NotATokenResponse { .. } => (
            "text/html",
            "<html><body>Service temporarily unavailable</body></html>".to_owned(),
        ),
        TokenFault::CutMidBody { .. } => (
            "application/json",
            json!({
                "token_type": "DPoP",
                "expires_in": 3600,
                "access_token": "cut-before-it-arrived",
                "scope": "okta.users.read",
            })
            .to_string(),
        ),
    };
    let mut resp = match fault {
        TokenFault::CutMidBody { .. } => {
            let len = payload.len();
            let mut r = Response::new(Body::new(crate::stream::CutBody::new(payload.into_bytes())));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
        _ => Response::new(Body::from(payload)),
    };
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
        h.insert(header::DATE, v);
    }
    if let TokenFault::RateLimited {
        reset_after_secs, ..
    } = fault
    {
        let reset = epoch_secs(now).max(0) as u64 + reset_after_secs;
        h.insert("x-rate-limit-limit", HeaderValue::from(600u32));
        h.insert("x-rate-limit-remaining", HeaderValue::from(0u32));
        h.insert("x-rate-limit-reset", HeaderValue::from(reset));
    }
    resp
}

impl Default for OAuthOptions {
    fn default() -> Self {
        OAuthOptions {
            client_id: "0oa-test-client".to_owned(),
            public_key_pem: crate::keys::RSA_PUBLIC_PEM.to_owned(),
            require_dpop: true,
            token_nonce: true,
            resource_nonce: false,
            granted_scopes: vec!["okta.users.read".to_owned(), "okta.groups.read".to_owned()],
            token_lifetime: Duration::from_secs(3600),
            admin_role: true,
            token_faults: Vec::new(),
            proof_iat_window_secs: CLOCK_SKEW_SECS,
        }
    }
}

/// One request received at the token endpoint, with what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// When it arrived.
    pub at: SystemTime,
    /// Status answered (200, 400, 401 or 405; any with a [`TokenFault`]).
    pub status: u16,
    /// The OAuth `error` code answered (`invalid_client`, `use_dpop_nonce`, ...), or
    /// `"fault"` for a [`TokenFault`]; `None` on success.
    pub error: Option<String>,
    /// Whether a `DPoP` header was present.
    pub dpop: bool,
    /// The `nonce` claim of the DPoP proof, if a proof with one was sent (read even when the
    /// proof was refused).
    pub nonce: Option<String>,
    /// The requested scopes (the `scope` parameter split on spaces).
    pub scopes: Vec<String>,
}

/// An access token issued.
#[derive(Debug)]
struct IssuedToken {
    expires: SystemTime,
    scopes: Vec<String>,
    /// JWK SHA-256 thumbprint of the key the token is bound to (DPoP tokens only).
    jkt: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `jti`s of the client assertions that obtained a token.
    assertion_jtis: HashSet<String>,
    /// `jti`s of the DPoP proofs accepted, at both endpoints.
    proof_jtis: HashSet<String>,
    token_nonce: Option<String>,
    resource_nonce: Option<String>,
    tokens: HashMap<String, IssuedToken>,
    token_requests: Vec<TokenRequest>,
    verified_proofs: usize,
}

/// The OAuth side of a fake Okta org.
pub(crate) struct OAuthState {
    opts: OAuthOptions,
    key: DecodingKey,
    alg: Algorithm,
    base_url: String,
    token_url: String,
    rng: SystemRandom,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthState")
            .field("client_id", &self.opts.client_id)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why an API request is refused, before it is served.
pub(crate) struct ApiDenial {
    pub status: u16,
    pub www_authenticate: Option<String>,
    pub dpop_nonce: Option<String>,
}

impl ApiDenial {
    fn new(status: u16, scheme: &str, error: &str, description: &str) -> ApiDenial {
        ApiDenial {
            status,
            www_authenticate: Some(format!(
                "{scheme} error=\"{error}\", error_description=\"{description}\""
            )),
            dpop_nonce: None,
        }
    }
}

/// A DPoP proof whose signature and request-bound claims were verified.
struct VerifiedProof {
    jkt: String,
    jti: String,
    nonce: Option<String>,
}

/// A token-endpoint refusal: status, OAuth error code, description.
type TokenError = (u16, &'static str, String);

impl OAuthState {
    pub(crate) fn new(opts: OAuthOptions, base_url: &str) -> std::io::Result<OAuthState> {
        // With exactly one crypto feature enabled the provider is chosen by itself; should
        // feature unification enable both, pick aws-lc-rs rather than panic.
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        }
        let pem = opts.public_key_pem.as_bytes();
        let (key, alg) = match DecodingKey::from_rsa_pem(pem) {
            Ok(k) => (k, Algorithm::RS256),
            Err(_) => match DecodingKey::from_ec_pem(pem) {
                Ok(k) => (k, Algorithm::ES256),
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "fake Okta: OAuthOptions::public_key_pem is not an RSA or EC public key: {e}"
                        ),
                    ));
                }
            },
        };
        Ok(OAuthState {
            opts,
            key,
            alg,
            base_url: base_url.to_owned(),
            token_url: format!("{base_url}{TOKEN_PATH}"),
            rng: SystemRandom::new(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn random(&self, bytes: usize) -> String {
        let mut buf = vec![0u8; bytes];
        if self.rng.fill(&mut buf).is_err() {
            // Never happens in practice; fall back on the clock rather than panic.
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
            }
        }
        URL_SAFE_NO_PAD.encode(buf)
    }

    pub(crate) fn token_requests(&self) -> Vec<TokenRequest> {
        self.lock().token_requests.clone()
    }

    pub(crate) fn verified_proofs(&self) -> usize {
        self.lock().verified_proofs
    }

    pub(crate) fn expire_tokens(&self) {
        let now = SystemTime::now();
        for t in self.lock().tokens.values_mut() {
            t.expires = t.expires.min(now);
        }
    }

    pub(crate) fn rotate_nonces(&self) {
        let (a, b) = (self.random(24), self.random(24));
        let mut inner = self.lock();
        inner.token_nonce = Some(a);
        inner.resource_nonce = Some(b);
    }

    /// Answers a request to [`TOKEN_PATH`] and records it.
    pub(crate) fn token_endpoint(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Response {
        let proofs: Vec<&HeaderValue> = headers.get_all("dpop").iter().collect();
        let proof = proofs.first().and_then(|v| v.to_str().ok());
        let form = parse_form(body);
        let scopes: Vec<String> = form
            .get("scope")
            .and_then(|v| v.last())
            .map(|s| {
                s.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let proof_nonce = proof
            .and_then(jwt_parts)
            .and_then(|(_, c)| c.get("nonce").and_then(Value::as_str).map(str::to_owned));
        {
            let mut inner = self.lock();
            let n = inner.token_requests.len();
            if let Some(fault) = self.opts.token_faults.iter().find(|f| f.request() == n) {
                inner.token_requests.push(TokenRequest {
                    at: now,
                    status: fault.status(),
                    error: Some("fault".to_owned()),
                    dpop: !proofs.is_empty(),
                    nonce: proof_nonce,
                    scopes,
                });
                return fault_response(fault, n, now);
            }
        }

        let mut nonce_header = None;
        let outcome = self.issue(
            method,
            headers,
            &form,
            &proofs,
            proof,
            &scopes,
            now,
            &mut nonce_header,
        );

        let (status, body) = match &outcome {
            Ok(body) => (200, body.clone()),
            Err((status, error, description)) => (
                *status,
                json!({ "error": error, "error_description": description }),
            ),
        };
        self.lock().token_requests.push(TokenRequest {
            at: now,
            status,
            error: outcome.as_ref().err().map(|(_, e, _)| (*e).to_owned()),
            dpop: !proofs.is_empty(),
            nonce: proof_nonce,
            scopes,
        });

        let mut resp = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
            h.insert(header::DATE, v);
        }
        if let Some(nonce) = nonce_header
            && let Ok(v) = HeaderValue::from_str(&nonce)
        {
            h.insert("dpop-nonce", v);
        }
        resp
    }

    /// The checks of the token endpoint, in Okta's order; the token response on success.
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        method: &Method,
        headers: &HeaderMap,
        form: &HashMap<String, Vec<String>>,
        proofs: &[&HeaderValue],
        proof: Option<&str>,
        scopes: &[String],
        now: SystemTime,
        nonce_header: &mut Option<String>,
    ) -> Result<Value, TokenError> {
        let invalid_request = |d: &str| Err((400, "invalid_request", d.to_owned()));
        let invalid_client = |d: &str| Err((401, "invalid_client", d.to_owned()));
        let invalid_proof = |d: &str| Err((400, "invalid_dpop_proof", d.to_owned()));
        if method != Method::POST {
            return Err((
                405,
                "invalid_request",
                "The token endpoint only accepts POST.".to_owned(),
            ));
        }
        let form_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_type {
            return invalid_request("The request must be application/x-www-form-urlencoded.");
        }
        if let Some((name, _)) = form.iter().find(|(_, v)| v.len() > 1) {
            return invalid_request(&format!("The '{name}' parameter is repeated."));
        }
        let param = |name: &str| form.get(name).and_then(|v| v.first()).map(String::as_str);
        if param("grant_type") != Some("client_credentials") {
            return invalid_request("The 'grant_type' parameter must be 'client_credentials'.");
        }
        if param("client_assertion_type") != Some(JWT_BEARER_ASSERTION_TYPE) {
            return invalid_request(&format!(
                "The 'client_assertion_type' parameter must be '{JWT_BEARER_ASSERTION_TYPE}'."
            ));
        }
        let now_secs = epoch_secs(now);

        // 2. The client assertion (replay checked below, under the lock).
        let Some(assertion) = param("client_assertion").filter(|a| !a.is_empty()) else {
            return invalid_client("The client_assertion is missing.");
        };
        if param("client_id").is_some_and(|id| id != self.opts.client_id) {
            return invalid_client("The client_id does not match the client_assertion.");
        }
        let assertion_jti = match self.check_assertion(assertion, now_secs) {
            Ok(jti) => jti,
            Err(d) => return invalid_client(d),
        };
        // The proof's own checks need no state: run them before locking.
        let window = self.opts.proof_iat_window_secs;
        let verified =
            proof.map(|p| verify_proof(p, "POST", &self.token_url, None, now_secs, window));

        let mut inner = self.lock();
        if inner.assertion_jtis.contains(&assertion_jti) {
            return invalid_client("The client_assertion token has already been used.");
        }

        // 3. Scopes.
        if scopes.is_empty() {
            return Err((
                400,
                "invalid_scope",
                "The 'scope' parameter is required.".to_owned(),
            ));
        }
        let refused: Vec<&str> = scopes
            .iter()
            .filter(|s| !self.opts.granted_scopes.contains(s))
            .map(String::as_str)
            .collect();
        if !refused.is_empty() {
            return Err((
                400,
                "invalid_scope",
                format!(
                    "The following scopes are not allowed: {}",
                    refused.join(", ")
                ),
            ));
        }

        // 4. DPoP.
        let jkt = if proofs.is_empty() {
            if self.opts.require_dpop {
                return invalid_proof("The DPoP proof JWT header is missing.");
            }
            None
        } else if proofs.len() > 1 {
            return invalid_proof("Exactly one DPoP proof JWT header is allowed.");
        } else {
            let p = match verified {
                Some(Ok(p)) => p,
                Some(Err(d)) => return invalid_proof(d),
                // A DPoP header that is not even visible ASCII.
                None => return invalid_proof("The DPoP proof JWT is malformed."),
            };
            if inner.proof_jtis.contains(&p.jti) {
                return invalid_proof("The DPoP proof JWT has already been used.");
            }
            if self.opts.token_nonce {
                let current = inner
                    .token_nonce
                    .get_or_insert_with(|| self.random(24))
                    .clone();
                if p.nonce.as_deref() != Some(current.as_str()) {
                    *nonce_header = Some(current);
                    return Err((
                        400,
                        "use_dpop_nonce",
                        "Authorization server requires nonce in DPoP proof.".to_owned(),
                    ));
                }
            }
            inner.proof_jtis.insert(p.jti);
            Some(p.jkt)
        };

        // 5. Issue.
        inner.assertion_jtis.insert(assertion_jti);
        let token = self.random(48);
        let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
        inner.tokens.insert(
            token.clone(),
            IssuedToken {
                expires: now
                    .checked_add(self.opts.token_lifetime)
                    .unwrap_or(now + NEVER),
                scopes: scopes.to_vec(),
                jkt,
            },
        );
        Ok(json!({
            "token_type": token_type,
            "expires_in": self.opts.token_lifetime.as_secs(),
            "access_token": token,
            "scope": scopes.join(" "),
        }))
    }

    /// Verifies a client assertion but for replay; its `jti` when valid.
    fn check_assertion(&self, assertion: &str, now: i64) -> Result<String, &'static str> {
        let Some((_, claims)) = jwt_parts(assertion) else {
            return Err("The client_assertion token is malformed.");
        };
        if verify_signature(assertion, &self.key, self.alg).is_err() {
            return Err("The client_assertion signature is invalid.");
        }
        let id = Some(self.opts.client_id.as_str());
        if claims.get("iss").and_then(Value::as_str) != id
            || claims.get("sub").and_then(Value::as_str) != id
        {
            return Err("The client_assertion iss or sub is invalid.");
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.token_url,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&self.token_url)),
            _ => false,
        };
        if !aud_ok {
            return Err("The client_assertion token has an invalid audience.");
        }
        let Some(exp) = claims.get("exp").and_then(numeric) else {
            return Err("The client_assertion token is missing the exp claim.");
        };
        if exp + CLOCK_SKEW_SECS <= now {
            return Err("The client_assertion token is expired.");
        }
        let Some(iat) = claims.get("iat").and_then(numeric) else {
            return Err("The client_assertion token is missing the iat claim.");
        };
        if iat > now + CLOCK_SKEW_SECS {
            return Err("The client_assertion token was issued in the future.");
        }
        if exp - iat > 3600 {
            return Err("The client_assertion token has an expiration too far in the future.");
        }
        if let Some(nbf) = claims.get("nbf").and_then(numeric)
            && nbf > now + CLOCK_SKEW_SECS
        {
            return Err("The client_assertion token is not yet valid.");
        }
        match claims.get("jti").and_then(Value::as_str) {
            Some(jti) if !jti.is_empty() => Ok(jti.to_owned()),
            _ => Err("The client_assertion token is missing the jti claim."),
        }
    }

    /// Checks the OAuth credentials of an API request (any path but [`TOKEN_PATH`]), counting
    /// and using up its DPoP proof when accepted.
    pub(crate) fn check_api(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<(), ApiDenial> {
        let default_scheme = if self.opts.require_dpop {
            "DPoP"
        } else {
            "Bearer"
        };
        let invalid = |scheme: &str| {
            Err(ApiDenial::new(
                401,
                scheme,
                "invalid_token",
                "The access token is invalid.",
            ))
        };
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (scheme, token) = authorization.split_once(' ').unwrap_or((authorization, ""));
        let token = token.trim();
        let dpop_scheme = if scheme.eq_ignore_ascii_case("DPoP") {
            true
        } else if scheme.eq_ignore_ascii_case("Bearer") {
            false
        } else {
            return invalid(default_scheme);
        };
        let scheme = if dpop_scheme { "DPoP" } else { "Bearer" };
        if token.is_empty() {
            return invalid(scheme);
        }
        let proofs: Vec<&HeaderValue> = headers.get_all("dpop").iter().collect();
        let htu = format!("{}{path}", self.base_url);
        let verified = match proofs.as_slice() {
            [one] if dpop_scheme => Some(match one.to_str() {
                Ok(p) => verify_proof(
                    p,
                    method.as_str(),
                    &htu,
                    Some(&ath(token)),
                    epoch_secs(now),
                    self.opts.proof_iat_window_secs,
                ),
                Err(_) => Err("The DPoP proof JWT is malformed."),
            }),
            _ => None,
        };

        let mut inner = self.lock();
        let Some(issued) = inner.tokens.get(token) else {
            return invalid(scheme);
        };
        let (bound, scopes) = (issued.jkt.clone(), issued.scopes.clone());
        let expired = now >= issued.expires;
        match (&bound, dpop_scheme) {
            (Some(_), false) => {
                return Err(ApiDenial::new(
                    401,
                    "DPoP",
                    "invalid_token",
                    "The access token is DPoP-bound; use the DPoP authorization scheme.",
                ));
            }
            (None, true) => {
                return Err(ApiDenial::new(
                    401,
                    "Bearer",
                    "invalid_token",
                    "The access token is not DPoP-bound; use the Bearer authorization scheme.",
                ));
            }
            _ => {}
        }
        if expired {
            return Err(ApiDenial::new(
                401,
                scheme,
                "invalid_token",
                "The access token is expired.",
            ));
        }
        if let Some(jkt) = bound {
            let bad = |d: &str| Err(ApiDenial::new(401, "DPoP", "invalid_dpop_proof", d));
            let proof = match (proofs.len(), verified) {
                (0, _) => return bad("The DPoP proof JWT header is missing."),
                (1, Some(Ok(p))) => p,
                (1, Some(Err(d))) => return bad(d),
                _ => return bad("Exactly one DPoP proof JWT header is allowed."),
            };
            if proof.jkt != jkt {
                return bad("The DPoP proof JWT key does not match the access token binding.");
            }
            if inner.proof_jtis.contains(&proof.jti) {
                return bad("The DPoP proof JWT has already been used.");
            }
            if self.opts.resource_nonce {
                let current = inner
                    .resource_nonce
                    .get_or_insert_with(|| self.random(24))
                    .clone();
                if proof.nonce.as_deref() != Some(current.as_str()) {
                    let mut d = ApiDenial::new(
                        401,
                        "DPoP",
                        "use_dpop_nonce",
                        "Resource server requires nonce in DPoP proof",
                    );
                    d.dpop_nonce = Some(current);
                    return Err(d);
                }
            }
            inner.proof_jtis.insert(proof.jti);
            inner.verified_proofs += 1;
        }
        drop(inner);

        let needed: &[&str] = if path == "/api/v1/users" || path.starts_with("/api/v1/users/") {
            &["okta.users.read"]
        } else if path.starts_with("/api/v1/groups/") {
            &["okta.groups.read", "okta.users.read"]
        } else {
            &[]
        };
        if needed.iter().any(|n| !scopes.iter().any(|s| s == n)) {
            return Err(ApiDenial::new(
                403,
                "Bearer",
                "insufficient_scope",
                "The access token provided does not contain the required scopes.",
            ));
        }
        if !self.opts.admin_role {
            return Err(ApiDenial {
                status: 403,
                www_authenticate: None,
                dpop_nonce: None,
            });
        }
        Ok(())
    }
}

/// Form parameters, every value of each (to notice repeats).
fn parse_form(body: &[u8]) -> HashMap<String, Vec<String>> {
    let mut form: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        form.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    form
}

fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A JSON number claim as whole seconds (fractions dropped).
fn numeric(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// base64url(SHA-256(token)): the `ath` of a DPoP proof for `token`.
pub(crate) fn ath(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The decoded header and claims of a compact JWS, both JSON objects.
fn jwt_parts(token: &str) -> Option<(Map<String, Value>, Map<String, Value>)> {
    let mut parts = token.split('.');
    let (h, c, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let object = |part: &str| match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    };
    Some((object(h)?, object(c)?))
}

/// Verifies the signature of `token` with `key` and `alg` only (no claim checked).
fn verify_signature(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
) -> jsonwebtoken::errors::Result<()> {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(token, key, &validation).map(|_| ())
}

/// Members of a JWK that belong to a private or symmetric key.
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Verifies a DPoP proof but for `jti` replay and `nonce`; its `iat` must be within
/// `iat_window` seconds of `now`.
fn verify_proof(
    proof: &str,
    htm: &str,
    htu: &str,
    ath: Option<&str>,
    now: i64,
    iat_window: i64,
) -> Result<VerifiedProof, &'static str> {
    let Some((header, claims)) = jwt_parts(proof) else {
        return Err("The DPoP proof JWT is malformed.");
    };
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err("The DPoP proof JWT header 'typ' must be 'dpop+jwt'.");
    }
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => Algorithm::ES256,
        Some("RS256") => Algorithm::RS256,
        _ => return Err("The DPoP proof JWT header 'alg' is not supported (ES256 or RS256)."),
    };
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err("The DPoP proof JWT header 'jwk' is missing.");
    };
    if PRIVATE_JWK_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err("The DPoP proof JWT header 'jwk' must not contain a private key.");
    }
    let member = |m: &str| jwk.get(m).and_then(Value::as_str);
    let coordinate_ok = |m: &str| {
        member(m)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .is_some_and(|b| b.len() == 32)
    };
    let shape_ok = match alg {
        Algorithm::ES256 => {
            member("kty") == Some("EC")
                && member("crv") == Some("P-256")
                && coordinate_ok("x")
                && coordinate_ok("y")
        }
        _ => member("kty") == Some("RSA") && member("n").is_some() && member("e").is_some(),
    };
    let parsed: Option<Jwk> = serde_json::from_value(Value::Object(jwk.clone())).ok();
    let (Some(jwk), true) = (parsed, shape_ok) else {
        return Err("The DPoP proof JWT header 'jwk' is not a valid public key for its 'alg'.");
    };
    let Ok(key) = DecodingKey::from_jwk(&jwk) else {
        return Err("The DPoP proof JWT header 'jwk' is not a valid public key for its 'alg'.");
    };
    if verify_signature(proof, &key, alg).is_err() {
        return Err("The DPoP proof JWT signature is invalid.");
    }
    if claims.get("htm").and_then(Value::as_str) != Some(htm) {
        return Err("The DPoP proof JWT 'htm' claim does not match the request method.");
    }
    if claims.get("htu").and_then(Value::as_str) != Some(htu) {
        return Err("The DPoP proof JWT 'htu' claim does not match the request URL.");
    }
    match claims.get("iat").and_then(numeric) {
        Some(iat) if (iat - now).abs() <= iat_window => {}
        _ => {
            return Err(
                "The DPoP proof JWT 'iat' claim is missing or not within the allowed window.",
            );
        }
    }
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() => j.to_owned(),
        _ => return Err("The DPoP proof JWT 'jti' claim is missing."),
    };
    if let Some(expected) = ath
        && claims.get("ath").and_then(Value::as_str) != Some(expected)
    {
        return Err("The DPoP proof JWT 'ath' claim does not match the access token.");
    }
    let Ok(jkt) = jwk.thumbprint(ThumbprintHash::SHA256) else {
        return Err("The DPoP proof JWT header 'jwk' is not a valid public key for its 'alg'.");
    };
    let nonce = claims
        .get("nonce")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(VerifiedProof { jkt, jti, nonce })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ath_is_base64url_sha256() {
        // RFC 9449, section 7.1 example.
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn thumbprint_matches_rfc7638() {
        // RFC 7638, section 3.1 example.
        let jwk: Jwk = serde_json::from_value(json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn jwt_parts_rejects_garbage() {
        assert!(jwt_parts("a.b").is_none());
        assert!(jwt_parts("a.b.c.d").is_none());
        assert!(jwt_parts("!!.!!.x").is_none());
    }
}
