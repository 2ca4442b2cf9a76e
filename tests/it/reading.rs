//! Reading Okta listings with the next page already on its way: its request goes out while the
//! current page is still being handled, pages stay in order through retries, and a reader that
//! is dropped (a cancelled run) takes the page it fetched ahead with it. On paused tokio time:
//! durations here are the fake servers' added latency, never the machine's speed.

use crate::common::{Parts, Setup};

use std::sync::Arc;
use std::time::Duration;

use okta_pendo_sync::metrics::Metrics;
use okta_pendo_sync::okta::{OktaClient, Pages};
use okta_pendo_testkit::users::generated_user;
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaFault, OktaOptions, PendoOptions, UserSource};

/// Okta's latency per page.
const LATENCY: Duration = Duration::from_millis(100);
/// How long the consumer holds each page (mapping it, pushing it): less than a page's latency.
const HOLD: Duration = Duration::from_millis(60);
/// Five pages of 200.
const USERS: usize = 1000;
const PAGES: u32 = 5;

/// A started Okta server (with `faults` and `page_delay`), the Pendo server the config needs,
/// and the Okta client of that config, with `metrics`.
async fn client(
    faults: Vec<OktaFault>,
    page_delay: Duration,
    metrics: Arc<Metrics>,
) -> (FakeOkta, FakePendo, Setup, Arc<OktaClient>, Pages) {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(USERS),
        rate_limit: 100_000,
        page_delay,
        faults,
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            extra: "[retry]\nmax_attempts = 3\nbase_delay = \"50ms\"\nmax_delay = \"200ms\"",
            ..Parts::default()
        },
    );
    let settings = okta_pendo_sync::config::load(&setup.config)
        .unwrap()
        .settings;
    let clients = okta_pendo_sync::runner::clients(&settings, metrics).unwrap();
    let starts = clients.okta.start_urls(&settings.okta.scope, None);
    let pages = Pages::new(clients.okta.clone(), starts);
    (okta, pendo, setup, clients.okta, pages)
}

/// The ids of generated users `0..n`, in Okta's order.
fn expected_ids(okta: &FakeOkta, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            generated_user(i, &okta.base_url())["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn ids(users: &okta_pendo_sync::okta::projection::Users) -> Vec<String> {
    users
        .values()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_next_page_is_requested_while_the_current_one_is_handled() {
    let (okta, _pendo, _setup, _client, mut pages) =
        client(vec![], LATENCY, Arc::new(Metrics::new())).await;
    let started = tokio::time::Instant::now();
    let mut read = Vec::new();
    let mut requested_while_held = Vec::new();
    for _ in 0..=PAGES {
        let Some(page) = pages.next_page().await else {
            break;
        };
        read.extend(ids(&page.unwrap().users));
        // The consumer holds the page; meanwhile Okta is asked for the next one.
        let seen = okta.request_count();
        let mut asked = false;
        for _ in 0..HOLD.as_millis() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            asked |= okta.request_count() > seen;
        }
        requested_while_held.push(asked);
    }
    assert_eq!(read, expected_ids(&okta, USERS), "every user, in order");
    assert_eq!(
        requested_while_held,
        [true, true, true, true, false],
        "the next page was requested while each page was held; after the last, nothing"
    );
    assert_eq!(okta.request_count(), PAGES as usize);
    // Handling overlaps Okta's latency: the pages take their latency and the last page's hold
    // (5 x 100 + 60 ms), not both for each page (5 x 160 ms).
    let took = started.elapsed();
    assert!(took >= LATENCY * PAGES + HOLD, "{took:?}");
    assert!(took < LATENCY * PAGES + HOLD * 2, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_page_read_again_comes_before_the_page_fetched_after_it() {
    // The second page's first answer (fetched ahead) is cut JSON, with good headers: its next
    // link is followed at once, then the page is read again, and the third page is used after
    // the second's retry, never before it and never fetched twice.
    let (okta, _pendo, _setup, _client, mut pages) = client(
        vec![OktaFault::MalformedJson { request: 1 }],
        LATENCY,
        Arc::new(Metrics::new()),
    )
    .await;
    let mut read = Vec::new();
    for _ in 0..=PAGES {
        let Some(page) = pages.next_page().await else {
            break;
        };
        read.extend(ids(&page.unwrap().users));
    }
    assert_eq!(
        read,
        expected_ids(&okta, USERS),
        "every user once, in order"
    );
    let paths: Vec<String> = okta
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert_eq!(paths.len(), PAGES as usize + 1, "one retry: {paths:#?}");
    let second = &paths[1];
    let third = &paths[2];
    assert_ne!(second, third, "{paths:#?}");
    assert_eq!(
        paths.iter().filter(|p| *p == second).count(),
        2,
        "{paths:#?}"
    );
    assert_eq!(
        paths.iter().filter(|p| *p == third).count(),
        1,
        "{paths:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_reader_drops_the_page_it_fetched_ahead() {
    let metrics = Arc::new(Metrics::new());
    let (okta, _pendo, _setup, _client, mut pages) = client(vec![], LATENCY, metrics.clone()).await;
    let first = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first.users.len(), 200);
    // The second page is on its way (Okta answers it after its latency).
    for _ in 0..LATENCY.as_millis() {
        if okta.request_count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(okta.request_count(), 2);
    drop(pages);
    tokio::time::sleep(LATENCY * 3).await;
    // The answer to the second request was never taken: only the first page's 200 counts.
    let text = metrics.render();
    assert!(
        text.contains("okta_pendo_sync_requests_total{service=\"okta\",status=\"200\"} 1\n"),
        "{text}"
    );
    assert_eq!(okta.request_count(), 2, "nothing more was asked");
}

/// How long the Okta server below holds the first page's body at most, waiting for the second
/// page's request.
const BODY_HELD_AT_MOST: Duration = Duration::from_secs(5);

#[tokio::test]
async fn the_next_page_is_requested_as_soon_as_its_link_arrives_before_the_body() {
    // An Okta that sends the first page's headers (its `next` link among them) at once and
    // holds the body until the second page is asked for (five seconds at most): a client that
    // waits for the whole first page asks for the second only after that.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (asked_tx, asked_rx) = tokio::sync::watch::channel(false);
    // Whether the second page was asked for while the first page's body was held.
    let (held_tx, held_rx) = tokio::sync::mpsc::channel::<bool>(1);
    let server_base = base.clone();
    let server = tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((mut conn, _)) = listener.accept().await else {
                break;
            };
            let (asked_tx, mut asked_rx) = (asked_tx.clone(), asked_rx.clone());
            let (held_tx, base) = (held_tx.clone(), server_base.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match conn.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                if head.contains("after=second") {
                    asked_tx.send_replace(true);
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 content-length: 2\r\n\r\n[]";
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.read(&mut buf).await;
                    return;
                }
                let body = serde_json::to_vec(&[generated_user(0, &base)]).unwrap();
                let headers = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     link: <{base}/api/v1/users?limit=200>; rel=\"self\"\r\n\
                     link: <{base}/api/v1/users?after=second&limit=200>; rel=\"next\"\r\n\r\n",
                    body.len()
                );
                conn.write_all(headers.as_bytes()).await.unwrap();
                conn.flush().await.unwrap();
                let asked =
                    tokio::time::timeout(BODY_HELD_AT_MOST, asked_rx.wait_for(|asked| *asked))
                        .await
                        .is_ok();
                let _ = held_tx.send(asked).await;
                let _ = conn.write_all(&body).await;
                let _ = conn.read(&mut buf).await;
            });
        }
    });

    let okta = FakeOkta::start(OktaOptions::default()).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, text.replace(&okta.base_url(), &base)).unwrap();
    let settings = okta_pendo_sync::config::load(&setup.config)
        .unwrap()
        .settings;
    let clients = okta_pendo_sync::runner::clients(&settings, Arc::new(Metrics::new())).unwrap();
    let starts = clients.okta.start_urls(&settings.okta.scope, None);
    let mut pages = Pages::new(clients.okta.clone(), starts);
    let first = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first.users.len(), 1);
    let second = pages.next_page().await.unwrap().unwrap();
    assert!(second.users.is_empty());
    assert!(pages.next_page().await.is_none());
    let mut held_rx = held_rx;
    let held = held_rx.recv().await;
    server.abort();
    assert_eq!(
        held,
        Some(true),
        "the second page was asked for while the first page's body was held"
    );
}
