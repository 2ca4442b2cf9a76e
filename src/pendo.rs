//! The Pendo client: pushes one batch of visitor metadata and reads Pendo's accounting
//! (`updated`, `missing`, `errors`) from the answer; reads the visitor schema for `check`.
//! 429, 409 ("Operation in progress") and 5xx (after their `Retry-After`, when Pendo sends
//! one), network errors and unreadable 200s are retried; a 408 is returned at once for the
//! caller to split the batch.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::config::PendoSettings;
use crate::http;
use crate::metrics::{Metrics, Service};
use crate::retry::{Attempt, RetryPolicy, with_retry};

const KEY_HEADER: &str = "x-pendo-integration-key";
/// The largest answer read; a bigger one is refused rather than held in memory.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// What the run reads of Pendo's answer to a metadata push (`total` and `failed` follow from
/// these and what was sent). Absent fields and `null`s read as zero or empty.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PushResponse {
    #[serde(deserialize_with = "null_as_default")]
    pub updated: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub missing: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub errors: Vec<serde_json::Value>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A failed push or probe, in words.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PendoError {
    #[error(
        "Pendo rejected the integration key (HTTP 401): it is wrong or was revoked; create one \
         under Settings > Integrations > Integration Keys"
    )]
    Unauthorized,
    #[error(
        "Pendo refused the request (HTTP 403): the integration key lacks write access; create \
         a key with write access under Settings > Integrations > Integration Keys"
    )]
    Forbidden,
    #[error("Pendo could not finish the call within its time limit (HTTP 408)")]
    Timeout,
    #[error(
        "Pendo does not know the metadata field \"{field}\" (HTTP 400: {detail}): create it \
         under Settings > Data Mappings, or fix its name in [mapping]"
    )]
    UnknownField { field: String, detail: String },
    #[error("Pendo answered HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("cannot reach Pendo at {host}: {detail}")]
    Network { host: String, detail: String },
    #[error("Pendo sent an unreadable answer (HTTP {status}): {detail}")]
    Malformed { status: u16, detail: String },
}

impl PendoError {
    /// The failing HTTP status behind this error, or 0 when there was none (no response, or
    /// an answer that could not be read).
    pub fn http_status(&self) -> u16 {
        match self {
            PendoError::Unauthorized => 401,
            PendoError::Forbidden => 403,
            PendoError::Timeout => 408,
            PendoError::UnknownField { .. } => 400,
            PendoError::Status { status, .. } => *status,
            PendoError::Malformed { .. } | PendoError::Network { .. } => 0,
        }
    }
}

/// An authenticated client for one Pendo subscription.
pub struct PendoClient {
    http: reqwest::Client,
    base: Url,
    push_url: Url,
    key: SecretString,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for PendoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendoClient")
            .field("push_url", &self.push_url.as_str())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl PendoClient {
    /// The client of `settings`' subscription. Pushes go to the metadata group's `value`
    /// endpoint, with `create=true` when visitors Pendo does not know are to be created.
    pub fn new(
        http: reqwest::Client,
        settings: &PendoSettings,
        create_missing: bool,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut push_url = settings.base_url.clone();
        if let Ok(mut segs) = push_url.path_segments_mut() {
            segs.clear().extend([
                "api",
                "v1",
                "metadata",
                "visitor",
                settings.metadata_group.as_str(),
                "value",
            ]);
        }
        if create_missing {
            push_url.query_pairs_mut().append_pair("create", "true");
        }
        PendoClient {
            http,
            base: settings.base_url.clone(),
            push_url,
            key: settings.integration_key.clone(),
            retry,
            metrics,
        }
    }

    /// Pushes one serialized batch. A 408 is returned at once (the caller splits the batch).
    pub async fn push(&self, body: bytes::Bytes) -> Result<PushResponse, PendoError> {
        with_retry(
            &self.retry,
            "pendo push",
            || self.metrics.retry(Service::Pendo),
            || async {
                let request = self
                    .http
                    .post(self.push_url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
                self.attempt(request, |bytes, status| {
                    serde_json::from_slice::<PushResponse>(bytes).map_err(|e| {
                        PendoError::Malformed {
                            status,
                            detail: format!(
                                "expected {{total, updated, failed, missing, errors}}: {e}"
                            ),
                        }
                    })
                })
                .await
            },
        )
        .await
    }

    /// One cheap authenticated call (`GET /api/v1/metadata/schema/visitor`), for `check`.
    pub async fn visitor_schema(&self) -> Result<serde_json::Value, PendoError> {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.clear()
                .extend(["api", "v1", "metadata", "schema", "visitor"]);
        }
        with_retry(
            &self.retry,
            "pendo schema",
            || self.metrics.retry(Service::Pendo),
            || async {
                self.attempt(self.http.get(url.clone()), |bytes, status| {
                    serde_json::from_slice(bytes).map_err(|e| PendoError::Malformed {
                        status,
                        detail: e.to_string(),
                    })
                })
                .await
            },
        )
        .await
    }

    /// One try of a call: the request with the integration key, and its answer as an
    /// [`Attempt`]; `parse` reads a 200's body.
    async fn attempt<T>(
        &self,
        request: reqwest::RequestBuilder,
        parse: impl Fn(&[u8], u16) -> Result<T, PendoError>,
    ) -> Attempt<T, PendoError> {
        let mut key = match HeaderValue::from_str(self.key.expose_secret()) {
            Ok(k) => k,
            Err(_) => return Attempt::Done(Err(PendoError::Unauthorized)),
        };
        key.set_sensitive(true);
        let sent = request.header(KEY_HEADER, key).send().await;
        self.metrics.request(
            Service::Pendo,
            sent.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Attempt::retry(self.network_error(http::describe(&e))),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(http::retry_after);
        let body = match http::read_body(response, MAX_RESPONSE_BYTES).await {
            Ok(b) => b,
            Err(e @ http::BodyError::TooLarge { .. }) => {
                return Attempt::Done(Err(PendoError::Malformed {
                    status: status.as_u16(),
                    detail: e.to_string(),
                }));
            }
            Err(e) => return Attempt::retry(self.network_error(e.to_string())),
        };
        self.classify(status, retry_after, &body, parse)
    }

    /// Pendo could not be reached, or the connection broke before the whole answer came.
    fn network_error(&self, detail: String) -> PendoError {
        PendoError::Network {
            host: self.base.origin().ascii_serialization(),
            detail,
        }
    }

    /// What an answer comes to: a 200 is parsed; 401, 403 and 408 are final (the caller splits
    /// a batch on 408); 429, 409 and 5xx are retried; anything else is final.
    fn classify<T>(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
        parse: impl Fn(&[u8], u16) -> Result<T, PendoError>,
    ) -> Attempt<T, PendoError> {
        let error = || PendoError::Status {
            status: status.as_u16(),
            detail: http::excerpt(body, &[&self.key]),
        };
        match status {
            // An unreadable 200 is retried: pushes are idempotent, and the retry's answer
            // gives the accounting.
            StatusCode::OK => match parse(body, 200) {
                Ok(v) => Attempt::Done(Ok(v)),
                Err(error) => Attempt::retry(error),
            },
            StatusCode::UNAUTHORIZED => Attempt::Done(Err(PendoError::Unauthorized)),
            StatusCode::FORBIDDEN => Attempt::Done(Err(PendoError::Forbidden)),
            StatusCode::REQUEST_TIMEOUT => Attempt::Done(Err(PendoError::Timeout)),
            // 409 "Operation in progress" is Pendo's answer to concurrent writes: transient.
            s if s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::CONFLICT
                || s.is_server_error() =>
            {
                let error = error();
                match retry_after {
                    // At least a second, whatever it says; only a 429 waits without using up an
                    // attempt (it is a queue, not a failure).
                    Some(wait) => Attempt::Wait {
                        reason: format!("{error} (Retry-After {} s)", wait.as_secs()),
                        error,
                        wait: wait.max(Duration::from_secs(1)),
                        counts: s != StatusCode::TOO_MANY_REQUESTS,
                    },
                    None => Attempt::retry(error),
                }
            }
            _ => Attempt::Done(Err(error())),
        }
    }
}

/// The mapped Pendo field a 400's text says Pendo does not know, if it says so: it names the
/// field (as a whole word) and says it is unknown, missing or undefined. A field that does not
/// exist fails every batch, so such a 400 stops the run.
pub fn unknown_field<'m>(detail: &str, mapping: &'m crate::mapping::Mapping) -> Option<&'m str> {
    const UNKNOWN: &[&str] = &[
        "unknown",
        "not found",
        "does not exist",
        "doesn't exist",
        "no such",
        "not defined",
        "undefined",
        "invalid field",
    ];
    let lower = detail.to_lowercase();
    if !UNKNOWN.iter().any(|w| lower.contains(w)) {
        return None;
    }
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    mapping
        .fields()
        .iter()
        .map(|f| f.field.as_str())
        .find(|field| {
            detail.match_indices(field).any(|(at, _)| {
                let before = detail[..at].chars().next_back();
                let after = detail[at + field.len()..].chars().next();
                !before.is_some_and(is_word) && !after.is_some_and(is_word)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_and_absent_fields_read_as_empty() {
        let r: PushResponse = serde_json::from_str(
            r#"{"total":2,"updated":2,"failed":0,"missing":null,"errors":null}"#,
        )
        .unwrap();
        assert_eq!(r.updated, 2);
        assert!(r.missing.is_empty() && r.errors.is_empty());
        let r: PushResponse = serde_json::from_str(r#"{"updated":1}"#).unwrap();
        assert_eq!(r.updated, 1);
    }

    #[test]
    fn a_400_naming_an_unknown_mapped_field_is_recognised() {
        use crate::mapping::{AttributePath, FieldMapping, Mapping, ValueType};
        let field = |name: &str| FieldMapping {
            field: name.into(),
            path: AttributePath::parse("profile.title").unwrap(),
            ty: ValueType::Text,
        };
        let m = Mapping::new(vec![field("title"), field("cost_center")]);
        let detail = r#"{"error":"unknown field \"custom.cost_center\""}"#;
        assert_eq!(unknown_field(detail, &m), Some("cost_center"));
        assert_eq!(
            unknown_field("Field 'title' does not exist", &m),
            Some("title")
        );
        // A field named only as part of a longer word is not it.
        assert_eq!(unknown_field("unknown field job_title", &m), None);
        // A 400 about a value, not about an unknown field.
        assert_eq!(unknown_field("title must be a string", &m), None);
        assert_eq!(unknown_field("bad request", &m), None);
    }
}
