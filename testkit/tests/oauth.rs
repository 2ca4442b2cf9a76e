//! The fake Okta as an OAuth 2.0 org: client credentials with `private_key_jwt`, DPoP-bound and
//! Bearer tokens, nonces, scopes, the admin role, and every refusal a client bug should meet.
//! The client is written here, with jsonwebtoken and aws-lc-rs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsBigEndian as _;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use okta_pendo_testkit::{FakeOkta, OAuthOptions, OktaOptions, UserSource, keys};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CLIENT_ID: &str = "0oa-test-client";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const SCOPES: &str = "okta.users.read okta.groups.read";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ath(token: &str) -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

/// A compact JWS of exactly this header and these claims (for proofs jsonwebtoken's `Header`
/// cannot express, like a `jwk` with a private member).
fn raw_jws(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

/// A DPoP key: a fresh P-256 key pair, its public JWK and the private `d` (for the "private
/// key in the proof" test).
struct DpopKey {
    key: EncodingKey,
    jwk: Value,
    d: String,
}

impl DpopKey {
    fn new() -> DpopKey {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let point = pair.public_key().as_ref();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        });
        let d = b64(pair.private_key().as_be_bytes().unwrap().as_ref());
        DpopKey {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
            d,
        }
    }

    fn claims(htm: &str, htu: &str, nonce: Option<&str>, token: Option<&str>) -> Value {
        let mut claims = json!({ "jti": unique("proof"), "htm": htm, "htu": htu, "iat": now() });
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        if let Some(t) = token {
            claims["ath"] = ath(t).into();
        }
        claims
    }

    /// A proof made with jsonwebtoken's own `Header`, as a client would.
    fn proof(&self, htm: &str, htu: &str, nonce: Option<&str>, token: Option<&str>) -> String {
        self.proof_of(&Self::claims(htm, htu, nonce, token))
    }

    fn proof_of(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".to_owned());
        header.jwk = Some(serde_json::from_value::<Jwk>(self.jwk.clone()).unwrap());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// A proof whose header is `header` exactly.
    fn raw_proof(&self, header: &Value, claims: &Value) -> String {
        raw_jws(header, claims, &self.key, Algorithm::ES256)
    }
}

/// A client assertion signed with `pem` (RSA or EC PKCS#8), claims adjusted by `tweak`.
fn assertion_with(okta: &FakeOkta, pem: &str, tweak: impl FnOnce(&mut Value)) -> String {
    let t = now();
    let mut claims = json!({
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": format!("{}/oauth2/v1/token", okta.base_url()),
        "iat": t,
        "exp": t + 300,
        "jti": unique("assertion"),
    });
    tweak(&mut claims);
    let (key, alg) = match EncodingKey::from_rsa_pem(pem.as_bytes()) {
        Ok(k) => (k, Algorithm::RS256),
        Err(_) => (
            EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            Algorithm::ES256,
        ),
    };
    let mut header = Header::new(alg);
    header.kid = Some("any-kid".to_owned());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn assertion(okta: &FakeOkta) -> String {
    assertion_with(okta, keys::RSA_PRIVATE_PEM, |_| {})
}

fn token_url(okta: &FakeOkta) -> String {
    format!("{}/oauth2/v1/token", okta.base_url())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// One token request; `scope` None leaves the parameter out.
async fn token_request(
    okta: &FakeOkta,
    assertion: &str,
    scope: Option<&str>,
    proof: Option<String>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let mut req = http().post(token_url(okta)).form(&form);
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    (status, headers, resp.json().await.unwrap())
}

/// The whole token dance with `key`: a proof without nonce, the `use_dpop_nonce` answer, the
/// same request again with the nonce. Returns the access token.
async fn dpop_token(okta: &FakeOkta, key: &DpopKey) -> String {
    let url = token_url(okta);
    let a = assertion(okta);
    let (status, headers, body) = token_request(
        okta,
        &a,
        Some(SCOPES),
        Some(key.proof("POST", &url, None, None)),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "use_dpop_nonce");
    assert_eq!(
        body["error_description"],
        "Authorization server requires nonce in DPoP proof."
    );
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_owned();
    // The same client assertion again: a nonce challenge does not use it up.
    let (status, _, body) = token_request(
        okta,
        &a,
        Some(SCOPES),
        Some(key.proof("POST", &url, Some(&nonce), None)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn oauth_okta(oauth: OAuthOptions) -> FakeOkta {
    FakeOkta::start(OktaOptions {
        users: UserSource::Generated(450),
        groups: vec![("00g1".to_owned(), (0..30).collect())],
        oauth: Some(oauth),
        ..Default::default()
    })
    .await
}

async fn get(
    url: &str,
    authorization: &str,
    proof: Option<String>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = http().get(url).header("Authorization", authorization);
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

/// A DPoP GET of `path_and_query`, the proof's `htu` being the URL without its query.
async fn dpop_get(
    okta: &FakeOkta,
    key: &DpopKey,
    token: &str,
    path_and_query: &str,
    nonce: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let url = format!("{}{path_and_query}", okta.base_url());
    let htu = url.split('?').next().unwrap();
    let proof = key.proof("GET", htu, nonce, Some(token));
    get(&url, &format!("DPoP {token}"), Some(proof)).await
}

fn www_authenticate(headers: &reqwest::header::HeaderMap) -> &str {
    headers["www-authenticate"].to_str().unwrap()
}

fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers.get_all("link").iter().find_map(|v| {
        let v = v.to_str().unwrap();
        v.ends_with("rel=\"next\"")
            .then(|| v[1..v.find('>').unwrap()].to_owned())
    })
}

#[tokio::test]
async fn dpop_happy_path_with_token_nonce_and_paged_listing() {
    let okta = oauth_okta(OAuthOptions::default()).await;
    let key = DpopKey::new();
    let token = dpop_token(&okta, &key).await;

    // Page through the 450 users with a fresh proof per request; htu never has the query.
    let mut url = format!("{}/api/v1/users?limit=200", okta.base_url());
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let htu = url.split('?').next().unwrap().to_owned();
        let proof = key.proof("GET", &htu, None, Some(&token));
        let (status, headers, body) = get(&url, &format!("DPoP {token}"), Some(proof)).await;
        assert_eq!(status, 200, "{body}");
        assert!(headers.contains_key("x-rate-limit-remaining"));
        seen += body.as_array().unwrap().len();
        pages += 1;
        match next_link(&headers) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!((seen, pages), (450, 3));
    assert_eq!(okta.verified_proofs(), 3);

    // A group listing (needs okta.groups.read too).
    let (status, _, body) = dpop_get(&okta, &key, &token, "/api/v1/groups/00g1/users", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 30);
    assert_eq!(okta.verified_proofs(), 4);

    // Token requests: the challenge, then the token.
    let t = okta.token_requests();
    assert_eq!(t.len(), 2);
    assert_eq!(
        (
            t[0].status,
            t[0].error.as_deref(),
            t[0].dpop,
            t[0].nonce.is_none()
        ),
        (400, Some("use_dpop_nonce"), true, true)
    );
    assert_eq!(
        (t[1].status, t[1].error.as_deref(), t[1].dpop),
        (200, None, true)
    );
    assert!(t[1].nonce.is_some());
    assert_eq!(t[1].scopes, ["okta.users.read", "okta.groups.read"]);
    // The token endpoint is not among the API requests, which record the header as sent.
    let api = okta.requests();
    assert_eq!(api.len(), 4);
    assert_eq!(
        api[0].authorization.as_deref(),
        Some(&*format!("DPoP {token}"))
    );

    // The token response itself.
    let url = token_url(&okta);
    let nonce = t[1].nonce.clone().unwrap();
    let proof = key.proof("POST", &url, Some(&nonce), None);
    let (status, headers, body) = token_request(
        &okta,
        &assertion(&okta),
        Some("okta.users.read"),
        Some(proof),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "okta.users.read");
    assert!(body["access_token"].as_str().unwrap().len() >= 32);

    // SSWS is refused when OAuth is on.
    let users = format!("{}/api/v1/users", okta.base_url());
    let (status, _, body) = get(&users, "SSWS okta-test-token", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "E0000011");
}

#[tokio::test]
async fn resource_nonce_is_challenged_then_required() {
    let okta = oauth_okta(OAuthOptions {
        resource_nonce: true,
        ..Default::default()
    })
    .await;
    let key = DpopKey::new();
    let token = dpop_token(&okta, &key).await;

    let (status, headers, body) = dpop_get(&okta, &key, &token, "/api/v1/users", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "E0000011");
    assert_eq!(
        www_authenticate(&headers),
        "DPoP error=\"use_dpop_nonce\", error_description=\"Resource server requires nonce in DPoP proof\""
    );
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_owned();
    assert_eq!(okta.verified_proofs(), 0);

    let (status, _, body) = dpop_get(&okta, &key, &token, "/api/v1/users", Some(&nonce)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = dpop_get(&okta, &key, &token, "/api/v1/users", Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, _, _) = dpop_get(&okta, &key, &token, "/api/v1/users", Some(&nonce)).await;
    assert_eq!(status, 200);
    assert_eq!(okta.verified_proofs(), 2);

    // Rotated: the old nonce is challenged with a new one.
    okta.rotate_nonces();
    let (status, headers, _) = dpop_get(&okta, &key, &token, "/api/v1/users", Some(&nonce)).await;
    assert_eq!(status, 401);
    let fresh = headers["dpop-nonce"].to_str().unwrap().to_owned();
    assert_ne!(fresh, nonce);
    let (status, _, _) = dpop_get(&okta, &key, &token, "/api/v1/users", Some(&fresh)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bearer_mode_without_proof() {
    let okta = oauth_okta(OAuthOptions {
        require_dpop: false,
        ..Default::default()
    })
    .await;
    let (status, _, body) = token_request(&okta, &assertion(&okta), Some(SCOPES), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let users = format!("{}/api/v1/users?limit=5", okta.base_url());
    let (status, _, body) = get(&users, &format!("Bearer {token}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 5);
    assert_eq!(okta.verified_proofs(), 0);
    let t = okta.token_requests();
    assert_eq!((t.len(), t[0].dpop), (1, false));

    // A Bearer token under the DPoP scheme is refused.
    let key = DpopKey::new();
    let proof = key.proof(
        "GET",
        &format!("{}/api/v1/users", okta.base_url()),
        None,
        Some(&token),
    );
    let (status, headers, _) = get(&users, &format!("DPoP {token}"), Some(proof)).await;
    assert_eq!(status, 401);
    assert!(www_authenticate(&headers).contains("error=\"invalid_token\""));
    // An unknown token.
    let (status, headers, body) = get(&users, "Bearer nope", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "E0000011");
    assert_eq!(
        www_authenticate(&headers),
        "Bearer error=\"invalid_token\", error_description=\"The access token is invalid.\""
    );

    // Even when not required, a valid proof binds the token (token nonce still demanded).
    let url = token_url(&okta);
    let a = assertion(&okta);
    let (status, headers, _) = token_request(
        &okta,
        &a,
        Some(SCOPES),
        Some(key.proof("POST", &url, None, None)),
    )
    .await;
    assert_eq!(status, 400);
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_owned();
    let proof = key.proof("POST", &url, Some(&nonce), None);
    let (status, _, body) = token_request(&okta, &a, Some(SCOPES), Some(proof)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
}

#[tokio::test]
async fn client_assertion_failures_are_invalid_client() {
    let okta = oauth_okta(OAuthOptions {
        require_dpop: false,
        ..Default::default()
    })
    .await;
    let aud = format!("{}/oauth2/v1/token", okta.base_url());
    let t = now();
    let cases: Vec<(String, &str)> = vec![
        (
            assertion_with(&okta, keys::RSA_OTHER_PRIVATE_PEM, |_| {}),
            "The client_assertion signature is invalid.",
        ),
        (
            assertion_with(&okta, keys::EC_PRIVATE_PEM, |_| {}),
            "The client_assertion signature is invalid.",
        ),
        (
            assertion_with(&okta, keys::RSA_PRIVATE_PEM, |c| {
                c["iat"] = (t - 900).into();
                c["exp"] = (t - 600).into();
            }),
            "The client_assertion token is expired.",
        ),
        (
            assertion_with(&okta, keys::RSA_PRIVATE_PEM, |c| {
                c["aud"] = okta.base_url().into();
            }),
            "The client_assertion token has an invalid audience.",
        ),
        (
            assertion_with(&okta, keys::RSA_PRIVATE_PEM, |c| {
                c["aud"] = format!("{aud}/").into();
            }),
            "The client_assertion token has an invalid audience.",
        ),
        (
            assertion_with(&okta, keys::RSA_PRIVATE_PEM, |c| {
                c["iss"] = "0oa-someone-else".into();
            }),
            "The client_assertion iss or sub is invalid.",
        ),
        (
            assertion_with(&okta, keys::RSA_PRIVATE_PEM, |c| {
                c["sub"] = "0oa-someone-else".into();
            }),
            "The client_assertion iss or sub is invalid.",
        ),
        (
            assertion_with(&okta, keys::RSA_PRIVATE_PEM, |c| {
                c["exp"] = (t + 3700).into();
            }),
            "The client_assertion token has an expiration too far in the future.",
        ),
        (
            assertion_with(&okta, keys::RSA_PRIVATE_PEM, |c| {
                c.as_object_mut().unwrap().remove("iat");
            }),
            "The client_assertion token is missing the iat claim.",
        ),
        (
            assertion_with(&okta, keys::RSA_PRIVATE_PEM, |c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            "The client_assertion token is missing the jti claim.",
        ),
        (
            "not-a-jwt".to_owned(),
            "The client_assertion token is malformed.",
        ),
    ];
    for (a, description) in &cases {
        let (status, _, body) = token_request(&okta, a, Some(SCOPES), None).await;
        assert_eq!(status, 401, "{description}: {body}");
        assert_eq!(body["error"], "invalid_client", "{description}");
        assert_eq!(body["error_description"], *description);
    }

    // Within the 60 s skew an expired-looking assertion passes.
    let skewed = assertion_with(&okta, keys::RSA_PRIVATE_PEM, |c| {
        c["exp"] = (t - 30).into();
        c["iat"] = (t - 330).into();
    });
    let (status, _, body) = token_request(&okta, &skewed, Some(SCOPES), None).await;
    assert_eq!(status, 200, "{body}");

    // Replay: the same assertion a second time.
    let a = assertion(&okta);
    let (status, _, _) = token_request(&okta, &a, Some(SCOPES), None).await;
    assert_eq!(status, 200);
    let (status, _, body) = token_request(&okta, &a, Some(SCOPES), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(
        body["error_description"],
        "The client_assertion token has already been used."
    );
    let recorded = okta.token_requests();
    assert_eq!(recorded.len(), cases.len() + 3);
    assert_eq!(
        recorded.last().unwrap().error.as_deref(),
        Some("invalid_client")
    );

    // Grant and assertion types.
    let resp = http()
        .post(token_url(&okta))
        .form(&[
            ("grant_type", "password"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion(&okta)),
            ("scope", SCOPES),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    let resp = http()
        .post(token_url(&okta))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", &assertion(&okta)),
            ("scope", SCOPES),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn ec_registered_key_signs_es256_assertions() {
    let okta = oauth_okta(OAuthOptions {
        public_key_pem: keys::EC_PUBLIC_PEM.to_owned(),
        require_dpop: false,
        ..Default::default()
    })
    .await;
    let a = assertion_with(&okta, keys::EC_PRIVATE_PEM, |_| {});
    let (status, _, body) = token_request(&okta, &a, Some(SCOPES), None).await;
    assert_eq!(status, 200, "{body}");
    let rsa = assertion(&okta);
    let (status, _, body) = token_request(&okta, &rsa, Some(SCOPES), None).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["error_description"],
        "The client_assertion signature is invalid."
    );
}

#[tokio::test]
async fn scopes_must_be_granted() {
    let okta = oauth_okta(OAuthOptions {
        require_dpop: false,
        granted_scopes: vec!["okta.users.read".to_owned()],
        ..Default::default()
    })
    .await;
    let (status, _, body) = token_request(&okta, &assertion(&okta), Some(SCOPES), None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_scope");
    assert_eq!(
        body["error_description"],
        "The following scopes are not allowed: okta.groups.read"
    );
    let (status, _, body) = token_request(&okta, &assertion(&okta), None, None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_scope");

    // A users-only token may list users, not group members.
    let (status, _, body) =
        token_request(&okta, &assertion(&okta), Some("okta.users.read"), None).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let auth = format!("Bearer {token}");
    let (status, _, _) = get(&format!("{}/api/v1/users", okta.base_url()), &auth, None).await;
    assert_eq!(status, 200);
    let groups = format!("{}/api/v1/groups/00g1/users", okta.base_url());
    let (status, headers, body) = get(&groups, &auth, None).await;
    assert_eq!(status, 403);
    assert_eq!(body["errorCode"], "E0000006");
    assert!(www_authenticate(&headers).starts_with("Bearer error=\"insufficient_scope\""));
}

#[tokio::test]
async fn token_endpoint_requires_a_valid_proof() {
    let okta = oauth_okta(OAuthOptions::default()).await;
    let key = DpopKey::new();
    let url = token_url(&okta);

    let (status, _, body) = token_request(&okta, &assertion(&okta), Some(SCOPES), None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_dpop_proof");
    assert_eq!(
        body["error_description"],
        "The DPoP proof JWT header is missing."
    );

    let wrong_htu = key.proof(
        "POST",
        &format!("{}/oauth2/v1/token/", okta.base_url()),
        None,
        None,
    );
    let (status, _, body) =
        token_request(&okta, &assertion(&okta), Some(SCOPES), Some(wrong_htu)).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    assert_eq!(
        body["error_description"],
        "The DPoP proof JWT 'htu' claim does not match the request URL."
    );

    let wrong_htm = key.proof("GET", &url, None, None);
    let (status, _, body) =
        token_request(&okta, &assertion(&okta), Some(SCOPES), Some(wrong_htm)).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );

    let claims = DpopKey::claims("POST", &url, None, None);
    let mut header = json!({ "typ": "JWT", "alg": "ES256", "jwk": key.jwk });
    let (_, _, body) = token_request(
        &okta,
        &assertion(&okta),
        Some(SCOPES),
        Some(key.raw_proof(&header, &claims)),
    )
    .await;
    assert_eq!(
        body["error_description"],
        "The DPoP proof JWT header 'typ' must be 'dpop+jwt'."
    );
    header["typ"] = "dpop+jwt".into();
    header["jwk"]["d"] = key.d.clone().into();
    let (status, _, body) = token_request(
        &okta,
        &assertion(&okta),
        Some(SCOPES),
        Some(key.raw_proof(&header, &claims)),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        "The DPoP proof JWT header 'jwk' must not contain a private key."
    );
    // Signed by another key than the embedded one.
    let other = DpopKey::new();
    let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": other.jwk });
    let (_, _, body) = token_request(
        &okta,
        &assertion(&okta),
        Some(SCOPES),
        Some(key.raw_proof(&header, &claims)),
    )
    .await;
    assert_eq!(
        body["error_description"],
        "The DPoP proof JWT signature is invalid."
    );
    // Stale iat.
    let mut stale = DpopKey::claims("POST", &url, None, None);
    stale["iat"] = (now() - 600).into();
    let (_, _, body) = token_request(
        &okta,
        &assertion(&okta),
        Some(SCOPES),
        Some(key.proof_of(&stale)),
    )
    .await;
    assert_eq!(body["error"], "invalid_dpop_proof");
    // A wrong nonce is challenged like a missing one.
    let (status, headers, body) = token_request(
        &okta,
        &assertion(&okta),
        Some(SCOPES),
        Some(key.proof("POST", &url, Some("made-up"), None)),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("use_dpop_nonce"))
    );
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_owned();
    // A proof accepted once cannot obtain a second token.
    let proof = key.proof("POST", &url, Some(&nonce), None);
    let (status, _, _) =
        token_request(&okta, &assertion(&okta), Some(SCOPES), Some(proof.clone())).await;
    assert_eq!(status, 200);
    let (status, _, body) =
        token_request(&okta, &assertion(&okta), Some(SCOPES), Some(proof)).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        "The DPoP proof JWT has already been used."
    );
}

#[tokio::test]
async fn api_proofs_are_bound_to_request_token_and_key() {
    let okta = oauth_okta(OAuthOptions::default()).await;
    let key = DpopKey::new();
    let token = dpop_token(&okta, &key).await;
    let users = format!("{}/api/v1/users", okta.base_url());
    let auth = format!("DPoP {token}");
    let expect_bad = |headers: &reqwest::header::HeaderMap, description: &str| {
        assert_eq!(
            www_authenticate(headers),
            format!("DPoP error=\"invalid_dpop_proof\", error_description=\"{description}\"")
        );
    };

    let (status, headers, body) = get(&users, &auth, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "E0000011");
    expect_bad(&headers, "The DPoP proof JWT header is missing.");

    // htu with the query, or another path.
    let with_query = key.proof("GET", &format!("{users}?limit=2"), None, Some(&token));
    let (status, headers, _) = get(&format!("{users}?limit=2"), &auth, Some(with_query)).await;
    assert_eq!(status, 401);
    expect_bad(
        &headers,
        "The DPoP proof JWT 'htu' claim does not match the request URL.",
    );
    let other_path = key.proof(
        "GET",
        &format!("{}/api/v1/groups", okta.base_url()),
        None,
        Some(&token),
    );
    let (status, _, _) = get(&users, &auth, Some(other_path)).await;
    assert_eq!(status, 401);

    let wrong_htm = key.proof("POST", &users, None, Some(&token));
    let (status, headers, _) = get(&users, &auth, Some(wrong_htm)).await;
    assert_eq!(status, 401);
    expect_bad(
        &headers,
        "The DPoP proof JWT 'htm' claim does not match the request method.",
    );

    let bad_ath = key.proof("GET", &users, None, Some("another-token"));
    let (status, headers, _) = get(&users, &auth, Some(bad_ath)).await;
    assert_eq!(status, 401);
    expect_bad(
        &headers,
        "The DPoP proof JWT 'ath' claim does not match the access token.",
    );
    let no_ath = key.proof("GET", &users, None, None);
    let (status, _, _) = get(&users, &auth, Some(no_ath)).await;
    assert_eq!(status, 401);

    let other = DpopKey::new();
    let other_key = other.proof("GET", &users, None, Some(&token));
    let (status, headers, _) = get(&users, &auth, Some(other_key)).await;
    assert_eq!(status, 401);
    expect_bad(
        &headers,
        "The DPoP proof JWT key does not match the access token binding.",
    );

    let good = key.proof("GET", &users, None, Some(&token));
    let (status, _, _) = get(&users, &auth, Some(good.clone())).await;
    assert_eq!(status, 200);
    let (status, headers, _) = get(&users, &auth, Some(good)).await;
    assert_eq!(status, 401);
    expect_bad(&headers, "The DPoP proof JWT has already been used.");

    // The DPoP-bound token under the Bearer scheme.
    let (status, headers, _) = get(&users, &format!("Bearer {token}"), None).await;
    assert_eq!(status, 401);
    assert!(www_authenticate(&headers).starts_with("DPoP error=\"invalid_token\""));
    // An unknown DPoP token.
    let fake = key.proof("GET", &users, None, Some("nope"));
    let (status, headers, _) = get(&users, "DPoP nope", Some(fake)).await;
    assert_eq!(status, 401);
    assert_eq!(
        www_authenticate(&headers),
        "DPoP error=\"invalid_token\", error_description=\"The access token is invalid.\""
    );

    assert_eq!(okta.verified_proofs(), 1);
    // Refused requests are recorded, with their status.
    let recorded = okta.requests();
    assert_eq!(recorded.len(), 11);
    assert_eq!(recorded.iter().filter(|r| r.status == 200).count(), 1);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let okta = oauth_okta(OAuthOptions::default()).await;
    let key = DpopKey::new();
    let token = dpop_token(&okta, &key).await;
    let (status, _, _) = dpop_get(&okta, &key, &token, "/api/v1/users?limit=1", None).await;
    assert_eq!(status, 200);
    okta.expire_tokens();
    let (status, headers, body) =
        dpop_get(&okta, &key, &token, "/api/v1/users?limit=1", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "E0000011");
    assert_eq!(
        www_authenticate(&headers),
        "DPoP error=\"invalid_token\", error_description=\"The access token is expired.\""
    );
    // A new token works.
    let fresh = dpop_token(&okta, &key).await;
    let (status, _, _) = dpop_get(&okta, &key, &fresh, "/api/v1/users?limit=1", None).await;
    assert_eq!(status, 200);

    // Short-lived Bearer tokens expire by themselves.
    let okta = oauth_okta(OAuthOptions {
        require_dpop: false,
        token_lifetime: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let (_, _, body) = token_request(&okta, &assertion(&okta), Some(SCOPES), None).await;
    assert_eq!(body["expires_in"], 1);
    let auth = format!("Bearer {}", body["access_token"].as_str().unwrap());
    let users = format!("{}/api/v1/users", okta.base_url());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, headers, _) = get(&users, &auth, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        www_authenticate(&headers),
        "Bearer error=\"invalid_token\", error_description=\"The access token is expired.\""
    );
}

#[tokio::test]
async fn without_admin_role_the_api_answers_403() {
    let okta = oauth_okta(OAuthOptions {
        admin_role: false,
        ..Default::default()
    })
    .await;
    let key = DpopKey::new();
    let token = dpop_token(&okta, &key).await;
    let (status, headers, body) = dpop_get(&okta, &key, &token, "/api/v1/users", None).await;
    assert_eq!(status, 403);
    assert_eq!(body["errorCode"], "E0000006");
    assert_eq!(
        body["errorSummary"],
        "You do not have permission to perform the requested action"
    );
    assert!(!headers.contains_key("www-authenticate"));
    assert_eq!(okta.verified_proofs(), 1);
}

#[tokio::test]
async fn rs256_proofs_without_token_nonce() {
    let okta = oauth_okta(OAuthOptions {
        token_nonce: false,
        ..Default::default()
    })
    .await;
    let key = EncodingKey::from_rsa_pem(keys::RSA_OTHER_PRIVATE_PEM.as_bytes()).unwrap();
    let jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    let proof = |htm: &str, htu: &str, token: Option<&str>| {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("dpop+jwt".to_owned());
        header.jwk = Some(jwk.clone());
        jsonwebtoken::encode(&header, &DpopKey::claims(htm, htu, None, token), &key).unwrap()
    };
    let (status, _, body) = token_request(
        &okta,
        &assertion(&okta),
        Some(SCOPES),
        Some(proof("POST", &token_url(&okta), None)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap();
    let users = format!("{}/api/v1/users", okta.base_url());
    let (status, _, body) = get(
        &users,
        &format!("DPoP {token}"),
        Some(proof("GET", &users, Some(token))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(okta.verified_proofs(), 1);
    let t = okta.token_requests();
    assert_eq!((t.len(), t[0].status, t[0].nonce.clone()), (1, 200, None));
}
