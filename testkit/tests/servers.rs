//! End-to-end checks of the fake servers over real HTTP.

use std::collections::HashSet;
use std::io::Read as _;

use okta_pendo_testkit::users::{generated_last_updated, okta_timestamp};
use okta_pendo_testkit::{
    ExistingVisitors, FakeOkta, FakePendo, LinkStyle, OktaFault, OktaOptions, PendoFault,
    PendoOptions, UserSource,
};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const AUTH: &str = "SSWS okta-test-token";

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// All `<url>; rel="x"` pairs of the `link` headers, whatever the layout.
fn links(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for value in headers.get_all("link") {
        for part in value.to_str().unwrap().split(", <") {
            let part = part.trim_start_matches('<');
            let (url, rel) = part.split_once(">; rel=").unwrap();
            out.push((url.to_owned(), rel.trim_matches('"').to_owned()));
        }
    }
    out
}

fn next_link(headers: &HeaderMap) -> Option<String> {
    links(headers)
        .into_iter()
        .find(|(_, rel)| rel == "next")
        .map(|(u, _)| u)
}

fn with_params(server: &FakeOkta, path: &str, params: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params(&format!("{}{path}", server.base_url()), params)
        .unwrap()
        .to_string()
}

async fn okta(users: UserSource) -> FakeOkta {
    FakeOkta::start(OktaOptions {
        users,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn pages_follow_link_headers_in_both_styles() {
    for style in [LinkStyle::SeparateLines, LinkStyle::CommaJoined] {
        let server = FakeOkta::start(OktaOptions {
            users: UserSource::Generated(450),
            link_style: style,
            ..Default::default()
        })
        .await;
        let http = client();
        let mut url = Some(format!("{}/api/v1/users?limit=200", server.base_url()));
        let mut sizes = Vec::new();
        let mut ids = Vec::new();
        let mut remaining = Vec::new();
        while let Some(u) = url.take() {
            let resp = http
                .get(&u)
                .header("Authorization", AUTH)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let h = resp.headers().clone();
            let lines = h.get_all("link").iter().count();
            match style {
                LinkStyle::SeparateLines => assert!(lines >= 1),
                LinkStyle::CommaJoined => assert_eq!(lines, 1),
            }
            let rels = links(&h);
            assert_eq!(rels[0], (u.clone(), "self".to_owned()));
            assert_eq!(h["content-type"], "application/json;charset=UTF-8");
            assert!(httpdate::parse_http_date(h["date"].to_str().unwrap()).is_ok());
            assert!(h.contains_key("x-okta-request-id"));
            assert_eq!(h["x-rate-limit-limit"], "600");
            assert!(
                h["x-rate-limit-reset"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    > 1_600_000_000
            );
            remaining.push(
                h["x-rate-limit-remaining"]
                    .to_str()
                    .unwrap()
                    .parse::<u32>()
                    .unwrap(),
            );
            let page: Vec<Value> = resp.json().await.unwrap();
            sizes.push(page.len());
            ids.extend(page.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
            url = next_link(&h);
            if let Some(next) = &url {
                assert!(next.starts_with(&format!("{}/api/v1/users?after=", server.base_url())));
                assert!(next.contains("limit=200"));
            }
        }
        assert_eq!(sizes, vec![200, 200, 50], "{style:?}");
        let expected: Vec<String> = (0..450).map(|i| format!("00u{i:017}")).collect();
        assert_eq!(ids, expected);
        // Decreasing per request within the minute window (it restarts at 599 on a new window).
        assert_eq!(remaining[0], 599);
        assert!(
            remaining
                .windows(2)
                .all(|w| w[1] + 1 == w[0] || w[1] == 599),
            "{remaining:?}"
        );
        assert_eq!(server.requests().len(), 3);
    }
}

#[tokio::test]
async fn limit_is_clamped_and_defaults_to_200() {
    let server = okta(UserSource::Generated(450)).await;
    let http = client();
    for (query, expected) in [
        ("limit=1000", 200),
        ("limit=0", 1),
        ("", 200),
        ("limit=7", 7),
    ] {
        let resp = http
            .get(format!("{}/api/v1/users?{query}", server.base_url()))
            .header("Authorization", AUTH)
            .send()
            .await
            .unwrap();
        let page: Vec<Value> = resp.json().await.unwrap();
        assert_eq!(page.len(), expected, "{query}");
    }
    let resp = http
        .get(format!("{}/api/v1/users?limit=abc", server.base_url()))
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn gzip_only_when_asked() {
    let server = okta(UserSource::Generated(30)).await;
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let url = format!("{}/api/v1/users?limit=10", server.base_url());

    let resp = raw
        .get(&url)
        .header("Authorization", AUTH)
        .header("Accept-Encoding", "gzip, deflate")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let bytes = resp.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    let page: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(page.len(), 10);

    let resp = raw
        .get(&url)
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert!(!resp.headers().contains_key("content-encoding"));
    let page: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(page.len(), 10);

    // A client that decodes gzip transparently.
    let page: Vec<Value> = client()
        .get(&url)
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page.len(), 10);

    let gz: Vec<bool> = server.requests().iter().map(|r| r.gzipped).collect();
    assert_eq!(gz, vec![true, false, true]);
    assert_eq!(
        server.requests()[0].accept_encoding.as_deref(),
        Some("gzip, deflate")
    );
}

#[tokio::test]
async fn wrong_or_missing_token_is_401() {
    let server = okta(UserSource::Generated(5)).await;
    let http = client();
    let url = format!("{}/api/v1/users", server.base_url());
    for auth in [Some("SSWS wrong"), Some("Bearer okta-test-token"), None] {
        let mut req = http.get(&url);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errorCode"], "E0000011");
        assert_eq!(body["errorSummary"], "Invalid token provided");
        assert_eq!(body["errorLink"], "E0000011");
        assert!(body["errorId"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(body["errorCauses"], json!([]));
    }
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 401, 401]);
    assert_eq!(
        server.requests()[0].authorization.as_deref(),
        Some("SSWS wrong")
    );
}

#[tokio::test]
async fn faults() {
    let server = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(10),
        faults: vec![
            OktaFault::Status {
                request: 0,
                status: 503,
            },
            OktaFault::RateLimited {
                request: 1,
                reset_after_secs: 5,
            },
            OktaFault::ForeignNextLink {
                request: 2,
                target: "http://127.0.0.1:9".into(),
            },
            OktaFault::Status {
                request: 3,
                status: 500,
            },
        ],
        ..Default::default()
    })
    .await;
    let http = client();
    let url = format!("{}/api/v1/users?limit=5", server.base_url());
    let get = || http.get(&url).header("Authorization", AUTH).send();

    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorSummary"], "Service Unavailable");
    assert!(body["errorCode"].is_string());

    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    assert_eq!(h["x-rate-limit-remaining"], "0");
    let date = httpdate::parse_http_date(h["date"].to_str().unwrap()).unwrap();
    let date = date
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reset: u64 = h["x-rate-limit-reset"].to_str().unwrap().parse().unwrap();
    assert_eq!(reset - date, 5);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000047");

    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 200);
    let next = next_link(resp.headers()).unwrap();
    assert!(
        next.starts_with("http://127.0.0.1:9/api/v1/users?after="),
        "{next}"
    );
    let page: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(page.len(), 5);

    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorSummary"], "Internal Server Error");

    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 200);
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 429, 200, 500, 200]);
}

#[tokio::test]
async fn filter_and_search() {
    let server = okta(UserSource::Generated(450)).await;
    let http = client();
    let filter = format!(
        "lastUpdated gt \"{}\" and status eq \"ACTIVE\"",
        generated_last_updated(399)
    );
    for param in ["filter", "search"] {
        let mut url = Some(
            reqwest::Url::parse_with_params(
                &format!("{}/api/v1/users", server.base_url()),
                &[("limit", "20"), (param, filter.as_str())],
            )
            .unwrap()
            .to_string(),
        );
        let mut ids = Vec::new();
        let mut pages = 0;
        while let Some(u) = url.take() {
            let resp = http
                .get(&u)
                .header("Authorization", AUTH)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            url = next_link(resp.headers());
            if let Some(next) = &url {
                assert!(
                    next.contains(&format!("&{param}=lastUpdated%20gt%20%22")),
                    "{next}"
                );
            }
            let page: Vec<Value> = resp.json().await.unwrap();
            ids.extend(
                page.iter()
                    .map(|u| u["profile"]["login"].as_str().unwrap().to_owned()),
            );
            pages += 1;
        }
        assert_eq!(pages, 3);
        let expected: Vec<String> = (400..450).map(|i| format!("user{i}@example.com")).collect();
        assert_eq!(ids, expected);
    }

    for bad in [
        "status gt \"ACTIVE\"",
        "profile.department eq \"Sales\"",
        "status eq \"ACTIVE\" or",
    ] {
        let resp = http
            .get(with_params(&server, "/api/v1/users", &[("filter", bad)]))
            .header("Authorization", AUTH)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errorCode"], "E0000031");
        assert_eq!(body["errorSummary"], "Invalid search criteria.");
    }
}

#[tokio::test]
async fn groups_and_explicit_users() {
    let users = vec![
        json!({"id": "00ua", "status": "ACTIVE", "lastUpdated": "2022-05-05T18:15:44.000Z", "profile": {"login": "a@example.com"}}),
        json!({"id": "00ub", "status": "STAGED", "lastUpdated": "2020-08-27T18:16:00.000Z", "profile": {"login": "b@example.com"}}),
        json!({"id": "00uc", "status": "ACTIVE", "lastUpdated": "2023-01-01T00:00:00.000Z", "profile": {"login": "c@example.com"}}),
    ];
    let server = FakeOkta::start(OktaOptions {
        users: UserSource::Explicit(users.clone()),
        groups: vec![("00g1".into(), vec![0, 2])],
        ..Default::default()
    })
    .await;
    let http = client();
    let get = |path: String| {
        http.get(format!("{}{path}", server.base_url()))
            .header("Authorization", AUTH)
            .send()
    };

    let resp = get("/api/v1/users".into()).await.unwrap();
    assert!(next_link(resp.headers()).is_none());
    let page: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(page, users);

    let resp = get("/api/v1/groups/00g1/users?limit=1".into())
        .await
        .unwrap();
    let next = next_link(resp.headers()).unwrap();
    assert!(next.starts_with(&format!(
        "{}/api/v1/groups/00g1/users?after=",
        server.base_url()
    )));
    let page: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(page[0]["id"], "00ua");
    let resp = http
        .get(&next)
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert!(next_link(resp.headers()).is_none());
    let page: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["id"], "00uc");

    let resp = get("/api/v1/groups/00gnope/users".into()).await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000007");
    assert_eq!(
        body["errorSummary"],
        "Not found: Resource not found: 00gnope (UserGroup)"
    );

    let resp = http
        .get(with_params(
            &server,
            "/api/v1/users",
            &[("filter", "status eq \"STAGED\"")],
        ))
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    let page: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(page, vec![users[1].clone()]);
}

#[tokio::test]
async fn dropping_the_server_closes_it() {
    let server = okta(UserSource::Generated(1)).await;
    let http = client();
    let url = format!("{}/api/v1/users", server.base_url());
    assert_eq!(
        http.get(&url)
            .header("Authorization", AUTH)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    drop(server);
    tokio::task::yield_now().await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(
        http.get(&url)
            .header("Authorization", AUTH)
            .send()
            .await
            .is_err()
    );
}

async fn post(
    http: &reqwest::Client,
    pendo: &FakePendo,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, Value) {
    let resp = http
        .post(format!("{}{path}", pendo.base_url()))
        .header("x-pendo-integration-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn pendo_accounting_create_and_errors() {
    let pendo = FakePendo::start(PendoOptions {
        existing: ExistingVisitors::Except(HashSet::from(["b".to_owned(), "c".to_owned()])),
        faults: vec![PendoFault::Status {
            request: 4,
            status: 503,
        }],
        ..Default::default()
    })
    .await;
    let http = client();
    let custom = "/api/v1/metadata/visitor/custom/value";
    let batch = json!([
        {"visitorId": "a", "values": {"department": "Sales", "is_manager": true}},
        {"visitorId": "b", "values": {"department": "Finance"}},
        {"visitorId": "c", "values": {"department": null}},
    ]);

    // 0: b and c are missing.
    let (status, body) = post(&http, &pendo, custom, "pendo-test-key", &batch).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"total": 3, "updated": 1, "failed": 2, "missing": ["b", "c"], "errors": []})
    );

    // 1: create=true creates them.
    let (status, body) = post(
        &http,
        &pendo,
        &format!("{custom}?create=true"),
        "pendo-test-key",
        &batch,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["updated"], 3);
    assert_eq!(body["missing"], json!([]));

    // 2: from then on they exist.
    let later = json!([{"visitorId": "b", "values": {"title": "Director", "employee_number": 7}}]);
    let (_, body) = post(&http, &pendo, custom, "pendo-test-key", &later).await;
    assert_eq!(
        body,
        json!({"total": 1, "updated": 1, "failed": 0, "missing": [], "errors": []})
    );
    let b = pendo.visitor("b").unwrap();
    assert_eq!(
        Value::Object(b),
        json!({"department": "Finance", "title": "Director", "employee_number": 7})
    );
    assert_eq!(pendo.visitor("c").unwrap()["department"], Value::Null);
    assert!(pendo.visitor("zzz").is_none());

    // 3: wrong key.
    let (status, _) = post(&http, &pendo, custom, "nope", &later).await;
    assert_eq!(status, 401);

    // 4: injected fault; nothing stored.
    let (status, _) = post(
        &http,
        &pendo,
        custom,
        "pendo-test-key",
        &json!([{"visitorId": "a", "values": {"title": "X"}}]),
    )
    .await;
    assert_eq!(status, 503);
    assert!(pendo.visitor("a").unwrap().get("title").is_none());

    // 5: malformed body; 6: unknown group; 7: wrong content type.
    let (status, _) = post(
        &http,
        &pendo,
        custom,
        "pendo-test-key",
        &json!({"visitorId": "a"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &http,
        &pendo,
        "/api/v1/metadata/visitor/nope/value",
        "pendo-test-key",
        &later,
    )
    .await;
    assert_eq!(status, 404);
    let resp = http
        .post(format!("{}{custom}", pendo.base_url()))
        .header("x-pendo-integration-key", "pendo-test-key")
        .header("content-type", "text/plain")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    let batches = pendo.batches();
    let statuses: Vec<u16> = batches.iter().map(|b| b.status).collect();
    assert_eq!(statuses, vec![200, 200, 200, 401, 503, 400, 404, 415]);
    assert_eq!(batches[0].group, "custom");
    assert!(!batches[0].create && batches[1].create);
    assert_eq!(batches[0].len, 3);
    assert_eq!(batches[0].records[1].0, "b");
    assert_eq!(pendo.post_count(), 8);
    assert_eq!(pendo.records_received(), 7);
}

#[tokio::test]
async fn pendo_schema_and_key() {
    let pendo = FakePendo::start(PendoOptions {
        record_values: false,
        ..Default::default()
    })
    .await;
    let http = client();
    let url = format!("{}/api/v1/metadata/schema/visitor", pendo.base_url());
    let resp = http
        .get(&url)
        .header("x-pendo-integration-key", "pendo-test-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let schema: Value = resp.json().await.unwrap();
    assert_eq!(schema["custom"]["department"]["Type"], "string");
    assert_eq!(schema["custom"]["last_login"]["Type"], "time");
    assert_eq!(schema["custom"]["employee_number"]["Type"], "number");
    assert_eq!(schema["custom"]["is_manager"]["Type"], "boolean");
    assert_eq!(schema["custom"]["is_manager"]["IsDeleted"], false);
    assert!(schema["agent"].is_object() && schema["auto"].is_object());
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    let (status, body) = post(
        &http,
        &pendo,
        "/api/v1/metadata/visitor/agent/value",
        "pendo-test-key",
        &json!([{"visitorId": "a", "values": {"x": 1}}]),
    )
    .await;
    assert_eq!((status, body["updated"].as_u64()), (200, Some(1)));
    assert!(pendo.batches()[0].records.is_empty());
    assert_eq!(pendo.batches()[0].len, 1);
    assert!(pendo.visitor("a").is_none());
    assert_eq!(pendo.records_received(), 1);
}

/// Reads a response body chunk by chunk: the bytes received, and whether it ended in an error.
async fn read_chunks(mut resp: reqwest::Response) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    // Bounded: a page is a few KB, and the fault closes the connection.
    for _ in 0..10_000 {
        match resp.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => return (got, false),
            Err(_) => return (got, true),
        }
    }
    panic!("body never ended");
}

fn header_u64(h: &HeaderMap, name: &str) -> u64 {
    h[name].to_str().unwrap().parse().unwrap()
}

fn date_secs(h: &HeaderMap) -> u64 {
    httpdate::parse_http_date(h["date"].to_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn okta_body_faults() {
    let server = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(10),
        faults: vec![
            OktaFault::MalformedJson { request: 0 },
            OktaFault::NotAnArray { request: 1 },
            OktaFault::BadUser {
                request: 2,
                index: 1,
            },
            OktaFault::CutMidBody { request: 3 },
            OktaFault::CutMidBody { request: 4 },
            // Not a page: no effect.
            OktaFault::MalformedJson { request: 6 },
        ],
        ..Default::default()
    })
    .await;
    let http = client();
    let url = format!("{}/api/v1/users?limit=5", server.base_url());
    let get = || http.get(&url).header("Authorization", AUTH).send();

    // 0: 200, normal headers, gzip-decodable, not JSON.
    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert!(next_link(&h).is_some());
    assert_eq!(h["x-rate-limit-limit"], "600");
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("[{\"id\":\"00u00000000000000000\""),
        "{text}"
    );
    assert!(serde_json::from_str::<Value>(&text).is_err());
    assert!(server.requests()[0].gzipped);

    // 1: an object instead of the array.
    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(next_link(resp.headers()).is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000009");
    assert!(body.is_object());

    // 2: one wrong-typed user among good ones.
    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(next_link(resp.headers()).is_some());
    let page: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(page.len(), 5);
    let bad = &page[1];
    assert_eq!(bad["id"], "00u00000000000000001");
    assert_eq!(bad["lastUpdated"], generated_last_updated(1));
    assert_eq!(bad["status"], 42);
    assert_eq!(bad["profile"], "not an object");
    assert_eq!(bad["lastLogin"], json!(["x"]));
    for (k, u) in page.iter().enumerate().filter(|(k, _)| *k != 1) {
        assert_eq!(u["status"], "ACTIVE");
        assert_eq!(u["id"], format!("00u{k:017}"));
        assert!(u["profile"].is_object());
    }

    // 3 (gzip asked) and 4 (not asked): headers announce the whole page, half arrives, then
    // the connection is cut.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    for accept in ["gzip", "identity"] {
        let resp = raw
            .get(&url)
            .header("Authorization", AUTH)
            .header("Accept-Encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(!resp.headers().contains_key("content-encoding"));
        let announced = header_u64(resp.headers(), "content-length") as usize;
        let (got, failed) = read_chunks(resp).await;
        assert!(failed, "the body must end in an error");
        assert!(!got.is_empty() && got.len() < announced, "{}", got.len());
        assert!(got.starts_with(b"[{\"id\":\"00u00000000000000000\""));
    }

    // 5: normal again; 6: a 404 stays a 404.
    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Vec<Value>>().await.unwrap().len(), 5);
    let resp = http
        .get(format!("{}/api/v1/nope", server.base_url()))
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.json::<Value>().await.is_ok());

    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 200, 404]);
    assert_eq!(server.rate_limited_count(), 0);
}

#[tokio::test]
async fn okta_huge_body_is_streamed() {
    const SIZE: usize = 3_000_000;
    let server = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(3),
        faults: vec![
            OktaFault::HugeBody {
                request: 0,
                bytes: SIZE,
            },
            OktaFault::HugeBody {
                request: 1,
                bytes: SIZE,
            },
            OktaFault::HugeBody {
                request: 2,
                bytes: 1 << 40,
            },
            OktaFault::HugeBody {
                request: 3,
                bytes: 1,
            },
        ],
        ..Default::default()
    })
    .await;
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let url = format!("{}/api/v1/users", server.base_url());

    // Plain: exact content-length, a valid array of users.
    let resp = raw
        .get(&url)
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header_u64(resp.headers(), "content-length"), SIZE as u64);
    assert!(next_link(resp.headers()).is_none());
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(bytes.len(), SIZE);
    let page: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    assert!(page.len() > 2000, "{}", page.len());
    assert_eq!(page[0]["id"], "00u00000000000000000");

    // Gzip: chunked, small on the wire, SIZE once decoded.
    let resp = raw
        .get(&url)
        .header("Authorization", AUTH)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert!(!resp.headers().contains_key("content-length"));
    let wire = resp.bytes().await.unwrap();
    assert!(wire.len() < SIZE / 4, "{}", wire.len());
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&wire[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded.len(), SIZE);
    assert!(serde_json::from_slice::<Vec<Value>>(&decoded).is_ok());

    // A terabyte: a capped client reads a little and gives up.
    let mut resp = raw
        .get(&url)
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(header_u64(resp.headers(), "content-length"), 1 << 40);
    let mut read = 0;
    while read < 1_000_000 {
        read += resp.chunk().await.unwrap().unwrap().len();
    }
    drop(resp);

    // Below the minimum: "[]".
    let resp = raw
        .get(&url)
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "[]");
    let gz: Vec<bool> = server.requests().iter().map(|r| r.gzipped).collect();
    assert_eq!(gz, vec![false, true, false, false]);
}

#[tokio::test]
async fn okta_concurrency_limit() {
    let server = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(3),
        faults: vec![OktaFault::ConcurrencyLimited {
            request: 0,
            reset_after_secs: 3,
        }],
        ..Default::default()
    })
    .await;
    let http = client();
    let url = format!("{}/api/v1/users", server.base_url());
    let resp = http
        .get(&url)
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    assert_eq!(h["x-rate-limit-limit"], "0");
    assert_eq!(h["x-rate-limit-remaining"], "0");
    assert_eq!(header_u64(&h, "x-rate-limit-reset") - date_secs(&h), 3);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000047");
    assert_eq!(
        body["errorSummary"],
        "API call exceeded rate limit due to too many requests."
    );
    let resp = http
        .get(&url)
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-rate-limit-limit"], "600");
    assert_eq!(server.rate_limited_count(), 1);
}

#[tokio::test]
async fn okta_enforced_budget() {
    let server = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(3),
        budget_per_minute: Some(5),
        budget_window: std::time::Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let http = client();
    let url = format!("{}/api/v1/users", server.base_url());
    let get = |auth: &'static str| http.get(&url).header("Authorization", auth).send();

    let mut seen = Vec::new();
    for _ in 0..7 {
        let resp = get(AUTH).await.unwrap();
        let h = resp.headers().clone();
        assert_eq!(h["x-rate-limit-limit"], "5");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        if status == 429 {
            assert_eq!(body["errorCode"], "E0000047");
        } else {
            assert!(body.is_array());
        }
        seen.push((
            status,
            header_u64(&h, "x-rate-limit-remaining"),
            header_u64(&h, "x-rate-limit-reset"),
            date_secs(&h),
        ));
    }
    let statuses: Vec<u16> = seen.iter().map(|s| s.0).collect();
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429, 429]);
    let remaining: Vec<u64> = seen.iter().map(|s| s.1).collect();
    assert_eq!(remaining, vec![4, 3, 2, 1, 0, 0, 0]);
    let reset = seen[0].2;
    assert!(seen.iter().all(|s| s.2 == reset), "{seen:?}");
    assert!((1..=3).contains(&(reset - seen[6].3)), "{seen:?}");
    assert_eq!(server.rate_limited_count(), 2);
    let recorded: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(recorded, statuses);

    // A wrong token is answered 401 and uses no budget.
    let resp = get("SSWS wrong").await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-rate-limit-remaining"], "0");

    // Wait for the reset, as a client would (bounded: at most about 3 s).
    let reset_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(reset);
    if let Ok(wait) = reset_at.duration_since(std::time::SystemTime::now()) {
        assert!(wait <= std::time::Duration::from_secs(3));
        tokio::time::sleep(wait).await;
    }
    let resp = get(AUTH).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-rate-limit-remaining"], "4");
    assert!(header_u64(resp.headers(), "x-rate-limit-reset") >= reset + 2);
    assert_eq!(server.rate_limited_count(), 2);
}

#[tokio::test]
async fn okta_hang_until_timeout_or_drop() {
    let server = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(3),
        faults: vec![
            OktaFault::Hang { request: 0 },
            OktaFault::Hang { request: 2 },
        ],
        ..Default::default()
    })
    .await;
    let url = format!("{}/api/v1/users", server.base_url());
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let err = impatient
        .get(&url)
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(server.requests()[0].status, 0);

    // Others are still served meanwhile.
    let http = client();
    let resp = http
        .get(&url)
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A patient client waits until the server is dropped, then sees the connection close.
    let pending = tokio::spawn({
        let http = http.clone();
        let url = url.clone();
        async move { http.get(&url).header("Authorization", AUTH).send().await }
    });
    for _ in 0..200 {
        if server.request_count() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(server.request_count(), 3);
    let started = std::time::Instant::now();
    drop(server);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), pending)
        .await
        .expect("the hanging request ends once the server is dropped")
        .unwrap();
    assert!(outcome.is_err());
}

#[tokio::test]
async fn pendo_new_faults_and_batch_size_limit() {
    let pendo = FakePendo::start(PendoOptions {
        faults: vec![
            PendoFault::RetryAfter {
                request: 0,
                status: 429,
                secs: 7,
            },
            PendoFault::RetryAfter {
                request: 1,
                status: 503,
                secs: 2,
            },
            PendoFault::Conflict { request: 2 },
            PendoFault::MalformedJson { request: 3 },
            // A fault wins over the size limit.
            PendoFault::Conflict { request: 6 },
        ],
        max_batch_len: Some(2),
        ..Default::default()
    })
    .await;
    let http = client();
    let url = format!("{}/api/v1/metadata/visitor/custom/value", pendo.base_url());
    let two = json!([
        {"visitorId": "a", "values": {"title": "A"}},
        {"visitorId": "b", "values": {"title": "B"}},
    ]);
    let three = json!([
        {"visitorId": "a", "values": {"title": "A3"}},
        {"visitorId": "b", "values": {"title": "B3"}},
        {"visitorId": "c", "values": {"title": "C3"}},
    ]);
    let send = |body: &Value| {
        http.post(&url)
            .header("x-pendo-integration-key", "pendo-test-key")
            .json(body)
            .send()
    };

    let resp = send(&two).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let resp = send(&two).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "2");
    let resp = send(&two).await.unwrap();
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"error": "Operation in progress"}));
    assert!(pendo.visitor("a").is_none());

    // 3: applied, but the answer is not JSON.
    let resp = send(&two).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("{\"total\":2"), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());
    assert_eq!(pendo.visitor("a").unwrap()["title"], "A");

    // 4: too big: 408, nothing stored; 5: a smaller one passes; 6: the fault wins.
    let resp = send(&three).await.unwrap();
    assert_eq!(resp.status(), 408);
    assert_eq!(pendo.visitor("a").unwrap()["title"], "A");
    assert!(pendo.visitor("c").is_none());
    let resp = send(&json!([{"visitorId": "c", "values": {"title": "C"}}]))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["updated"], 1);
    let resp = send(&three).await.unwrap();
    assert_eq!(resp.status(), 409);

    let batches = pendo.batches();
    let statuses: Vec<u16> = batches.iter().map(|b| b.status).collect();
    assert_eq!(statuses, vec![429, 503, 409, 200, 408, 200, 409]);
    let lens: Vec<usize> = batches.iter().map(|b| b.len).collect();
    assert_eq!(lens, vec![2, 2, 2, 2, 3, 1, 3]);
    assert_eq!(pendo.records_received(), 3);
    assert_eq!(pendo.post_count(), 7);
}

#[tokio::test]
async fn pendo_hang_until_timeout_or_drop() {
    let pendo = FakePendo::start(PendoOptions {
        faults: vec![
            PendoFault::Hang { request: 0 },
            PendoFault::Hang { request: 2 },
        ],
        ..Default::default()
    })
    .await;
    let url = format!("{}/api/v1/metadata/visitor/custom/value", pendo.base_url());
    let batch = json!([{"visitorId": "a", "values": {"title": "A"}}]);
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let err = impatient
        .post(&url)
        .header("x-pendo-integration-key", "pendo-test-key")
        .json(&batch)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let recorded = pendo.batches();
    assert_eq!(recorded.len(), 1);
    assert_eq!((recorded[0].status, recorded[0].len), (0, 1));
    assert!(pendo.visitor("a").is_none());

    let http = client();
    let (status, _) = post(
        &http,
        &pendo,
        "/api/v1/metadata/visitor/custom/value",
        "pendo-test-key",
        &batch,
    )
    .await;
    assert_eq!(status, 200);

    let pending = tokio::spawn({
        let http = http.clone();
        let url = url.clone();
        let batch = batch.clone();
        async move {
            http.post(&url)
                .header("x-pendo-integration-key", "pendo-test-key")
                .json(&batch)
                .send()
                .await
        }
    });
    for _ in 0..200 {
        if pendo.batches().len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let statuses: Vec<u16> = pendo.batches().iter().map(|b| b.status).collect();
    assert_eq!(statuses, vec![0, 200, 0]);
    let started = std::time::Instant::now();
    drop(pendo);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), pending)
        .await
        .expect("the hanging request ends once the server is dropped")
        .unwrap();
    assert!(outcome.is_err());
}

/// Every user of a listing, following `next` links (at most 50 pages).
async fn list_all(server: &FakeOkta, path: &str, params: &[(&str, &str)]) -> Vec<Value> {
    let http = client();
    let mut url = Some(with_params(server, path, params));
    let mut users = Vec::new();
    for _ in 0..50 {
        let Some(u) = url.take() else {
            return users;
        };
        let resp = http
            .get(&u)
            .header("Authorization", AUTH)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{u}");
        url = next_link(resp.headers());
        let page: Vec<Value> = resp.json().await.unwrap();
        users.extend(page);
    }
    panic!("more than 50 pages");
}

fn ids(users: &[Value]) -> Vec<String> {
    users
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

fn gen_ids(indices: impl IntoIterator<Item = usize>) -> Vec<String> {
    indices.into_iter().map(|i| format!("00u{i:017}")).collect()
}

async fn status_of(server: &FakeOkta, param: &str, expr: &str) -> (u16, Value) {
    let resp = client()
        .get(with_params(server, "/api/v1/users", &[(param, expr)]))
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn modified_users_change_pages_and_filter_results() {
    let server = okta(UserSource::Generated(50)).await;
    let at = "2026-11-28T10:00:00.000Z";
    server.touch_user(10, at, "Chief Technology Officer");
    server.modify_user(20, |u| u["status"] = json!("LOCKED_OUT"));
    server.modify_user(21, |u| {
        u["status"] = json!("RECOVERY");
        u["lastUpdated"] = json!("2024-01-01T00:00:00.000Z");
    });
    server.modify_user(30, |u| u["status"] = json!("RECOVERY"));
    // A second modification starts from the first.
    server.modify_user(30, |u| u["profile"]["department"] = json!("Legal"));

    let all = list_all(&server, "/api/v1/users", &[("limit", "7")]).await;
    assert_eq!(ids(&all), gen_ids(0..50));
    assert_eq!(all[10]["lastUpdated"], at);
    assert_eq!(all[10]["profile"]["title"], "Chief Technology Officer");
    assert_eq!(all[10]["profile"]["login"], "user10@example.com");
    assert_eq!(all[11]["profile"]["title"], "Account Executive");
    assert_eq!(
        (
            all[30]["status"].as_str(),
            all[30]["profile"]["department"].as_str()
        ),
        (Some("RECOVERY"), Some("Legal"))
    );
    assert_eq!(server.user(10).unwrap(), all[10]);
    assert_eq!(server.user(11).unwrap(), all[11]);
    assert!(server.user(50).is_none());

    let recent = list_all(
        &server,
        "/api/v1/users",
        &[("filter", "lastUpdated gt \"2026-01-01T00:00:00.000Z\"")],
    )
    .await;
    assert_eq!(ids(&recent), gen_ids([10]));
    assert_eq!(recent[0]["profile"]["title"], "Chief Technology Officer");

    let after45 = generated_last_updated(45);
    let expr = format!("(status eq \"ACTIVE\") and lastUpdated gt \"{after45}\"");
    let found = list_all(
        &server,
        "/api/v1/users",
        &[("filter", &expr), ("limit", "2")],
    )
    .await;
    assert_eq!(ids(&found), gen_ids([10, 46, 47, 48, 49]));

    let after15 = generated_last_updated(15);
    for expr in [
        format!(
            "lastUpdated gt \"{after15}\" and (status eq \"LOCKED_OUT\" or status eq \"RECOVERY\")"
        ),
        format!(
            "lastUpdated GT \"{after15}\" AND (status EQ \"LOCKED_OUT\" Or status eq \"RECOVERY\")"
        ),
        format!(
            "(status eq \"RECOVERY\" or status eq \"LOCKED_OUT\") and lastUpdated ge \"{after15}\""
        ),
    ] {
        for param in ["filter", "search"] {
            let found = list_all(&server, "/api/v1/users", &[(param, &expr)]).await;
            assert_eq!(ids(&found), gen_ids([20, 30]), "{param}={expr}");
        }
    }
    // `or` binds looser than `and`.
    let expr = format!(
        "status eq \"RECOVERY\" or status eq \"LOCKED_OUT\" and lastUpdated gt \"{after15}\""
    );
    let found = list_all(&server, "/api/v1/users", &[("filter", &expr)]).await;
    assert_eq!(ids(&found), gen_ids([20, 21, 30]));

    // A timestamp from okta_timestamp compares as an instant.
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_860_000);
    assert_eq!(okta_timestamp(t), at);
    let expr = format!("lastUpdated eq \"{}\"", "2026-11-28T11:00:00+01:00");
    assert_eq!(
        ids(&list_all(&server, "/api/v1/users", &[("filter", &expr)]).await),
        gen_ids([10])
    );

    // Explicit users are modifiable too.
    let explicit = okta(UserSource::Explicit(vec![
        json!({"id": "00ua", "status": "ACTIVE", "lastUpdated": "2022-05-05T18:15:44.000Z", "profile": {"login": "a@example.com"}}),
        json!({"id": "00ub", "status": "ACTIVE", "lastUpdated": "2022-05-05T18:15:44.000Z", "profile": {"login": "b@example.com"}}),
    ]))
    .await;
    explicit.touch_user(1, "2026-01-02T03:04:05.678Z", "Director");
    let page = list_all(&explicit, "/api/v1/users", &[]).await;
    assert_eq!(page[1]["lastUpdated"], "2026-01-02T03:04:05.678Z");
    assert_eq!(
        page[1]["profile"],
        json!({"login": "b@example.com", "title": "Director"})
    );
    let found = list_all(
        &explicit,
        "/api/v1/users",
        &[("filter", "lastUpdated gt \"2026-01-02T03:04:05.677Z\"")],
    )
    .await;
    assert_eq!(ids(&found), ["00ub"]);
}

#[tokio::test]
async fn filter_is_limited_to_what_okta_allows_and_search_is_wider() {
    let server = okta(UserSource::Generated(30)).await;
    for bad in [
        "profile.department eq \"Sales\"",
        "profile.login sw \"user1\"",
        "status eq \"ACTIVE\" and created gt \"2022-01-01T00:00:00.000Z\"",
        "(status eq \"ACTIVE\"",
        "status eq \"ACTIVE\" or (profile.title eq \"Director\")",
    ] {
        let (status, body) = status_of(&server, "filter", bad).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["errorCode"], "E0000031");
        assert_eq!(body["errorSummary"], "Invalid search criteria.");
    }
    let (status, body) =
        status_of(&server, "filter", "profile.login eq \"user3@example.com\"").await;
    assert_eq!(status, 200);
    assert_eq!(ids(body.as_array().unwrap()), gen_ids([3]));

    let sales = list_all(
        &server,
        "/api/v1/users",
        &[("search", "profile.department eq \"Sales\"")],
    )
    .await;
    assert_eq!(ids(&sales), gen_ids([1, 7, 13, 19, 25]));
    // Search values are case-insensitive, operators too.
    let sales = list_all(
        &server,
        "/api/v1/users",
        &[(
            "search",
            "profile.department EQ \"sales\" and profile.login SW \"USER1\"",
        )],
    )
    .await;
    assert_eq!(ids(&sales), gen_ids([1, 13, 19]));
    let mixed = list_all(
        &server,
        "/api/v1/users",
        &[("search", "profile.department eq \"Sales\" and (created lt \"2022-01-01T00:00:05.000Z\" or profile.title eq \"Director\")")],
    )
    .await;
    assert_eq!(ids(&mixed), gen_ids([1, 19]));
    // Filter values are case-sensitive.
    let (status, body) = status_of(&server, "filter", "status eq \"active\"").await;
    assert_eq!((status, body), (200, json!([])));
    let (status, body) = status_of(&server, "search", "profile.department co \"ale\"").await;
    assert_eq!(status, 400);
    assert_eq!(body["errorCode"], "E0000031");
}

#[tokio::test]
async fn deprovisioned_users_are_omitted_only_from_unfiltered_user_lists() {
    let server = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(6),
        groups: vec![("00g1".into(), vec![1, 2, 3])],
        ..Default::default()
    })
    .await;
    server.modify_user(2, |u| u["status"] = json!("DEPROVISIONED"));
    server.modify_user(5, |u| u["status"] = json!("DEPROVISIONED"));

    let all = list_all(&server, "/api/v1/users", &[("limit", "2")]).await;
    assert_eq!(ids(&all), gen_ids([0, 1, 3, 4]));
    // No page ends on a dangling `next` that would only hold deprovisioned users.
    let pages: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(pages, vec![200, 200]);

    for (param, expr) in [
        ("filter", "status eq \"DEPROVISIONED\""),
        ("search", "status eq \"deprovisioned\""),
    ] {
        let found = list_all(&server, "/api/v1/users", &[(param, expr)]).await;
        assert_eq!(ids(&found), gen_ids([2, 5]), "{param}");
        assert!(found.iter().all(|u| u["status"] == "DEPROVISIONED"));
    }
    let everyone = list_all(
        &server,
        "/api/v1/users",
        &[("filter", "lastUpdated ge \"2025-01-01T00:00:00.000Z\"")],
    )
    .await;
    assert_eq!(ids(&everyone), gen_ids(0..6));

    let members = list_all(&server, "/api/v1/groups/00g1/users", &[]).await;
    assert_eq!(ids(&members), gen_ids([1, 2, 3]));

    // Reactivated: listed again.
    server.modify_user(2, |u| u["status"] = json!("ACTIVE"));
    let all = list_all(&server, "/api/v1/users", &[]).await;
    assert_eq!(ids(&all), gen_ids([0, 1, 2, 3, 4]));
}

#[tokio::test]
async fn recorded_requests_hold_decoded_filter_and_search() {
    let server = okta(UserSource::Generated(3)).await;
    let http = client();
    let base = server.base_url();
    for url in [
        format!("{base}/api/v1/users?limit=2&filter=status%20eq%20%22ACTIVE%22"),
        format!(
            "{base}/api/v1/users?search=profile.login+sw+%22user%22&filter=id%20eq%20%2200u1%22"
        ),
        format!("{base}/api/v1/users"),
        format!("{base}/api/v1/users?filter=profile.department%20eq%20%22x%22"),
    ] {
        http.get(&url)
            .header("Authorization", AUTH)
            .send()
            .await
            .unwrap();
    }
    let got: Vec<(Option<String>, Option<String>, u16)> = server
        .requests()
        .into_iter()
        .map(|r| (r.filter, r.search, r.status))
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        got,
        vec![
            (s("status eq \"ACTIVE\""), None, 200),
            (s("id eq \"00u1\""), s("profile.login sw \"user\""), 200),
            (None, None, 200),
            (s("profile.department eq \"x\""), None, 400),
        ]
    );
}

#[tokio::test]
async fn realistic_users_are_served_and_found_by_login() {
    use okta_pendo_testkit::users::{Logins, generated_login, generated_user_with};
    let server = okta(UserSource::GeneratedRealistic(300)).await;
    let page: Vec<Value> = client()
        .get(with_params(&server, "/api/v1/users", &[("limit", "200")]))
        .header("authorization", AUTH)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page.len(), 200);
    for (i, user) in page.iter().enumerate() {
        assert_eq!(user["id"], format!("00u{i:017}"));
        assert_eq!(
            user["profile"]["login"].as_str(),
            Some(generated_login(i, Logins::Realistic).as_str())
        );
        assert_eq!(
            user,
            &generated_user_with(i, &server.base_url(), Logins::Realistic)
        );
    }
    assert_eq!(server.user(7), Some(page[7].clone()));
    // Okta's filter on the login finds the one user who has it.
    let login = generated_login(257, Logins::Realistic);
    let found: Vec<Value> = client()
        .get(with_params(
            &server,
            "/api/v1/users",
            &[("filter", &format!("profile.login eq \"{login}\""))],
        ))
        .header("authorization", AUTH)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], format!("00u{:017}", 257));
}
