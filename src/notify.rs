//! Webhook notifications (`[[notify.webhook]]`): when a run ends `failed`, `partial`, `held` or
//! `interrupted`, and once when a run succeeds after one that did not (a recovery), each
//! configured webhook is posted a message: Slack-compatible text, or the whole run record as
//! JSON. Delivery is tried again on 429, 5xx and network errors with the `[retry]` policy,
//! within [`DELIVERY_BUDGET`] for all webhooks at once; its outcome is logged and counted in
//! the metrics and never changes the run's status or exit code. A webhook's URL is a secret:
//! errors and logs name it `notify.webhook[N]`, and no error keeps the URL.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::config::{Webhook, WebhookFormat};
use crate::http;
use crate::metrics::Metrics;
use crate::report::{Mode, RunRecord, Status};
use crate::retry::{Attempt, RetryPolicy, with_retry};

/// How long setting up a connection to a webhook may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one post to a webhook may take, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long delivering one message to every webhook may take, retries included: a
/// notification delays the end of `sync`, the daemon's next run and its shutdown by at most
/// this.
pub const DELIVERY_BUDGET: Duration = Duration::from_secs(30);
/// The most of a webhook's answer read, to quote it in an error.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A run ended `failed`, `partial`, `held` or `interrupted`.
    RunFinished,
    /// A run succeeded after one that did not; carries how that one ended.
    Recovered(Status),
    /// `notify --test`.
    Test,
}

impl Event {
    /// The `event` of the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::RunFinished => "run_finished",
            Event::Recovered(_) => "recovered",
            Event::Test => "test",
        }
    }
}

/// Whether a finished run is worth a message: any run that did not succeed, and a success
/// whose `previous` run (the last one before it that was not a dry run) did not succeed. A
/// dry run never is, and never counts as a previous run.
pub fn event(record: &RunRecord, previous: Option<&RunRecord>) -> Option<Event> {
    if record.mode == Mode::DryRun {
        return None;
    }
    match (record.status, previous) {
        (Status::Succeeded, Some(p)) if p.status != Status::Succeeded => {
            Some(Event::Recovered(p.status))
        }
        (Status::Succeeded, _) => None,
        _ => Some(Event::RunFinished),
    }
}

/// One message, the same for every webhook but for its format.
#[derive(Debug, Clone)]
pub struct Message {
    pub event: Event,
    /// The name of the machine that ran it.
    pub host: String,
    /// The run it is about; none for a test message.
    pub run: Option<RunRecord>,
}

impl Message {
    /// The body posted to a webhook of `format`.
    pub fn body(&self, format: WebhookFormat) -> Value {
        match format {
            WebhookFormat::Slack => json!({ "text": self.text() }),
            WebhookFormat::Json => json!({
                "event": self.event.as_str(),
                "host": self.host,
                "run": self.run,
            }),
        }
    }

    /// The Slack text: what happened, where, the counts and the run's message.
    pub fn text(&self) -> String {
        let host = slack_escape(&self.host);
        let Some(r) = &self.run else {
            return format!(
                "okta-pendo-sync on {host}: test message (`okta-pendo-sync notify --test`); \
                 this webhook will be told when a run fails, is partial, held or \
                 interrupted, and when runs recover."
            );
        };
        let headline = match self.event {
            Event::Recovered(before) => format!(
                "okta-pendo-sync recovered on {host}: run {} succeeded (the previous run: {before})",
                r.id
            ),
            _ => format!("okta-pendo-sync run {} {} on {host}", r.id, r.status),
        };
        let c = &r.counts;
        format!(
            "{headline} ({} run, {}).\nread {}, sent {}, updated {}, failed {}, missing {}, \
             skipped {}\n{}",
            r.mode,
            r.trigger,
            c.okta_users_read,
            c.records_processed,
            c.users_updated,
            c.users_failed,
            c.users_missing,
            c.users_skipped,
            slack_escape(&r.message)
        )
    }
}

/// Slack reads `&`, `<` and `>` as markup: escaped, the text shows as written.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The name of this machine, for messages; `unknown` when it cannot be told.
pub fn host_name() -> String {
    #[cfg(unix)]
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    #[cfg(not(unix))]
    let name = std::env::var("COMPUTERNAME").unwrap_or_default();
    if name.trim().is_empty() {
        "unknown".to_owned()
    } else {
        name
    }
}

/// Why a message was not delivered. No variant holds the webhook's URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("the webhook answered HTTP {status}{detail}")]
    Status { status: u16, detail: String },
    #[error("cannot reach the webhook: {0}")]
    Network(String),
    #[error("not delivered within {} s", DELIVERY_BUDGET.as_secs())]
    OutOfTime,
}

/// What became of the message to one webhook.
#[derive(Debug)]
pub struct Delivery {
    /// `notify.webhook[N]`.
    pub webhook: String,
    pub format: WebhookFormat,
    pub result: Result<(), NotifyError>,
}

/// Posts `message` to every webhook at once, each retried with `retry`, all within
/// [`DELIVERY_BUDGET`]; counts each outcome in `metrics` and logs it. Returns the outcomes in
/// the webhooks' order.
pub async fn send(
    webhooks: &[Webhook],
    retry: RetryPolicy,
    message: &Message,
    metrics: &Metrics,
) -> Vec<Delivery> {
    let client = match http::client(CONNECT_TIMEOUT, REQUEST_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            let why = NotifyError::Client(http::describe(&e.without_url()));
            return webhooks
                .iter()
                .map(|w| delivered(w, message, Err(why.clone()), metrics))
                .collect();
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, webhook) in webhooks.iter().enumerate() {
        let client = client.clone();
        let webhook = Arc::new(webhook.clone());
        let body = Arc::new(message.body(webhook.format));
        tasks.spawn(async move {
            let post = post(&client, &webhook, &body, &retry);
            let result = tokio::time::timeout(DELIVERY_BUDGET, post)
                .await
                .unwrap_or(Err(NotifyError::OutOfTime));
            (i, result)
        });
    }
    let mut results: Vec<Option<Result<(), NotifyError>>> = vec![None; webhooks.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, result)) = joined
            && let Some(slot) = results.get_mut(i)
        {
            *slot = Some(result);
        }
    }
    webhooks
        .iter()
        .zip(results)
        .map(|(w, result)| {
            let result = result.unwrap_or(Err(NotifyError::OutOfTime));
            delivered(w, message, result, metrics)
        })
        .collect()
}

/// Logs and counts one outcome.
fn delivered(
    webhook: &Webhook,
    message: &Message,
    result: Result<(), NotifyError>,
    metrics: &Metrics,
) -> Delivery {
    let name = webhook.name();
    let format = webhook.format.as_str();
    let event = message.event.as_str();
    match &result {
        Ok(()) => tracing::info!(webhook = %name, format, event, "{name} ({format}) notified"),
        Err(e) => tracing::warn!(
            webhook = %name,
            format,
            event,
            "{name} ({format}): the notification was not delivered: {e}"
        ),
    }
    metrics.notification(result.is_ok());
    Delivery {
        webhook: name,
        format: webhook.format,
        result,
    }
}

/// One message to one webhook, tried again on 429, 5xx and network errors.
async fn post(
    client: &reqwest::Client,
    webhook: &Webhook,
    body: &Value,
    retry: &RetryPolicy,
) -> Result<(), NotifyError> {
    let name = webhook.name();
    with_retry(retry, &name, || (), || attempt(client, webhook, body)).await
}

async fn attempt(
    client: &reqwest::Client,
    webhook: &Webhook,
    body: &Value,
) -> Attempt<(), NotifyError> {
    let sent = client
        .post(webhook.url.expose_secret())
        .json(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        // reqwest's errors carry the URL: dropped before anything shows them.
        Err(e) => return Attempt::retry(NotifyError::Network(http::describe(&e.without_url()))),
    };
    let status = response.status();
    if status.is_success() {
        return Attempt::Done(Ok(()));
    }
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(http::retry_after);
    let answer = http::read_body(response, MAX_ANSWER_BYTES)
        .await
        .map(|b| http::excerpt(&b, &[&webhook.url]))
        .unwrap_or_default();
    let error = NotifyError::Status {
        status: status.as_u16(),
        detail: if answer.is_empty() {
            String::new()
        } else {
            format!(": {answer}")
        },
    };
    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
        return Attempt::Done(Err(error));
    }
    match wait {
        Some(wait) => Attempt::Wait {
            reason: error.to_string(),
            error,
            wait,
            counts: true,
        },
        None => Attempt::retry(error),
    }
}

/// After a run is recorded: the message it deserves, if any, to every webhook. Returns when
/// every webhook was told or given up on (within [`DELIVERY_BUDGET`]).
pub async fn after_run(
    webhooks: &[Webhook],
    retry: RetryPolicy,
    record: &RunRecord,
    previous: Option<&RunRecord>,
    metrics: &Metrics,
) {
    if webhooks.is_empty() {
        return;
    }
    let Some(event) = event(record, previous) else {
        return;
    };
    let message = Message {
        event,
        host: host_name(),
        run: Some(record.clone()),
    };
    send(webhooks, retry, &message, metrics).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Trigger;

    fn run(status: Status, mode: Mode) -> RunRecord {
        let mut r = RunRecord::not_started(Trigger::Schedule, "x".into());
        r.status = status;
        r.mode = mode;
        r
    }

    #[test]
    fn which_runs_deserve_a_message() {
        let ok = run(Status::Succeeded, Mode::Full);
        for s in [
            Status::Failed,
            Status::Partial,
            Status::Held,
            Status::Interrupted,
        ] {
            let bad = run(s, Mode::Incremental);
            assert_eq!(event(&bad, None), Some(Event::RunFinished), "{s}");
            assert_eq!(event(&bad, Some(&ok)), Some(Event::RunFinished), "{s}");
            assert_eq!(event(&bad, Some(&bad)), Some(Event::RunFinished), "{s}");
            // A success after it is a recovery, once: the next success follows a success.
            assert_eq!(event(&ok, Some(&bad)), Some(Event::Recovered(s)), "{s}");
            // A dry run never notifies.
            assert_eq!(event(&run(s, Mode::DryRun), Some(&ok)), None, "{s}");
        }
        assert_eq!(event(&ok, Some(&ok)), None);
        assert_eq!(event(&ok, None), None);
    }

    /// A webhook that takes connections and never answers: every webhook together still gets
    /// no more than the delivery budget (on paused time), and the failure is counted.
    #[tokio::test(start_paused = true)]
    async fn a_webhook_that_never_answers_is_given_up_within_the_budget() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let hooks = [Webhook {
            index: 1,
            url: format!("http://{addr}/services/T/B/HUNG").into(),
            format: WebhookFormat::Slack,
        }];
        let patient = RetryPolicy {
            max_attempts: 100,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(3600),
            ..RetryPolicy::default()
        };
        let metrics = Metrics::new();
        let message = Message {
            event: Event::Test,
            host: "box1".into(),
            run: None,
        };
        let started = tokio::time::Instant::now();
        let sent = send(&hooks, patient, &message, &metrics).await;
        let took = started.elapsed();
        assert!(
            took >= DELIVERY_BUDGET && took < DELIVERY_BUDGET + Duration::from_secs(1),
            "{took:?}"
        );
        assert!(matches!(sent[0].result, Err(NotifyError::OutOfTime)));
        assert_eq!(sent[0].webhook, "notify.webhook[1]");
        let text = metrics.render();
        assert!(
            text.contains("okta_pendo_sync_notifications_total{outcome=\"failed\"} 1"),
            "{text}"
        );
        held.abort();
    }

    #[test]
    fn bodies_of_both_formats() {
        let mut r = run(Status::Partial, Mode::Full);
        r.id = 7;
        r.counts.okta_users_read = 10;
        r.counts.records_processed = 8;
        r.counts.users_updated = 6;
        r.counts.users_failed = 2;
        r.counts.users_missing = 1;
        r.counts.users_skipped = 2;
        r.message = "2 of 8 <failed> & more".into();
        let m = Message {
            event: Event::RunFinished,
            host: "box1".into(),
            run: Some(r.clone()),
        };
        let slack = m.body(WebhookFormat::Slack);
        assert_eq!(
            slack["text"],
            "okta-pendo-sync run 7 partial on box1 (full run, schedule).\nread 10, sent 8, \
             updated 6, failed 2, missing 1, skipped 2\n2 of 8 &lt;failed&gt; &amp; more"
        );
        let body = m.body(WebhookFormat::Json);
        assert_eq!(body["event"], "run_finished");
        assert_eq!(body["host"], "box1");
        assert_eq!(body["run"], serde_json::to_value(&r).unwrap());

        let back = Message {
            event: Event::Recovered(Status::Held),
            ..m
        };
        let text = back.text();
        assert!(
            text.starts_with(
                "okta-pendo-sync recovered on box1: run 7 succeeded (the previous run: held)"
            ),
            "{text}"
        );
        assert_eq!(back.body(WebhookFormat::Json)["event"], "recovered");
        let test = Message {
            event: Event::Test,
            host: "box1".into(),
            run: None,
        };
        assert_eq!(test.body(WebhookFormat::Json)["run"], Value::Null);
        assert!(test.text().contains("test message"));
    }
}
