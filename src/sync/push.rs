//! Pushing one batch to Pendo: on a 408 or a 400 the batch is split in halves down to single
//! records, so what Pendo refuses fails alone; a refused key or field ends the run.

use serde_json::Value;

use crate::mapping::{Mapping, Record, write_batch};
use crate::pendo::{PendoClient, PendoError, PushResponse};

/// What pushing one batch (and its halves, after a 408) came to.
#[derive(Default)]
pub(super) struct BatchOutcome {
    pub(super) sent: u64,
    pub(super) accepted: Vec<Accepted>,
    pub(super) failed: Vec<(PendoError, Vec<String>)>,
    /// Pendo refused what every batch would carry (the key, a field): the run must stop.
    pub(super) refused: Option<PendoError>,
}

/// A (part of a) batch Pendo accepted: its answer, and the visitors sent with their hashes.
pub(super) struct Accepted {
    pub(super) response: PushResponse,
    pub(super) sent: Vec<(String, u64)>,
}

/// Pushes records; on a 408 splits them in halves and pushes each, down to single records.
/// The visitor IDs of records Pendo accepted move into the outcome (left empty in `records`).
pub(super) async fn push_records(
    pendo: &PendoClient,
    mapping: &Mapping,
    records: &mut [Record],
    hashes: &[u64],
    out: &mut BatchOutcome,
) {
    let mut body = Vec::new();
    write_batch(records, &mut body);
    match pendo.push(body.into()).await {
        Ok(response) => {
            out.sent += records.len() as u64;
            out.accepted.push(Accepted {
                response,
                sent: records
                    .iter_mut()
                    .zip(hashes)
                    .map(|(r, h)| (std::mem::take(&mut r.visitor_id), *h))
                    .collect(),
            });
        }
        Err(error @ (PendoError::Unauthorized | PendoError::Forbidden)) => {
            refuse(error, records, out);
        }
        Err(PendoError::Status {
            status: 400,
            detail,
        }) => match crate::pendo::unknown_field(&detail, mapping) {
            Some(field) => {
                let field = field.to_owned();
                refuse(PendoError::UnknownField { field, detail }, records, out);
            }
            None if records.len() > 1 => {
                let why = "Pendo refused the batch (HTTP 400)";
                split(pendo, mapping, records, hashes, out, why).await;
            }
            None => failed(
                PendoError::Status {
                    status: 400,
                    detail,
                },
                records,
                out,
            ),
        },
        Err(PendoError::Timeout) if records.len() > 1 => {
            let why = "Pendo answered 408 (call too long)";
            split(pendo, mapping, records, hashes, out, why).await;
        }
        Err(error) => failed(error, records, out),
    }
}

/// Pushes each half of `records` in turn (down to single records, through [`push_records`]),
/// so that what Pendo refuses or cannot finish in time fails alone.
async fn split(
    pendo: &PendoClient,
    mapping: &Mapping,
    records: &mut [Record],
    hashes: &[u64],
    out: &mut BatchOutcome,
    why: &str,
) {
    tracing::warn!(
        records = records.len(),
        "{why}: splitting the batch in halves to find what it refuses"
    );
    let mid = records.len() / 2;
    let (a, b) = records.split_at_mut(mid);
    let (ha, hb) = hashes.split_at(mid.min(hashes.len()));
    Box::pin(push_records(pendo, mapping, a, ha, out)).await;
    Box::pin(push_records(pendo, mapping, b, hb, out)).await;
}

/// Records a batch that was not delivered.
fn failed(error: PendoError, records: &[Record], out: &mut BatchOutcome) {
    tracing::warn!(records = records.len(), "batch not delivered: {error}");
    out.sent += records.len() as u64;
    out.failed.push((
        error,
        records.iter().map(|r| r.visitor_id.clone()).collect(),
    ));
}

/// Records a batch Pendo refused in a way every batch would be refused.
fn refuse(error: PendoError, records: &[Record], out: &mut BatchOutcome) {
    out.refused.get_or_insert_with(|| error.clone());
    failed(error, records, out);
}

/// One entry of the `errors` of Pendo's answer: the visitor it names, if any, and its text.
pub(super) fn pendo_error(e: &Value) -> (Option<String>, String) {
    let (visitor_id, text) = match e {
        Value::String(s) => (None, s.clone()),
        Value::Object(o) => (
            ["visitorId", "visitor_id", "id"]
                .iter()
                .find_map(|k| o.get(*k))
                .and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }),
            o.get("message")
                .or_else(|| o.get("error"))
                .or_else(|| o.get("reason"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| e.to_string()),
        ),
        other => (None, other.to_string()),
    };
    (visitor_id, text.chars().take(300).collect())
}
