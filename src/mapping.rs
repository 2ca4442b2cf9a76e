//! Mapping: attribute paths, type coercion and the shape of a Pendo record. Pure, no I/O.
//!
//! An Okta user (JSON) becomes either a [`Record`] (a visitor ID and one value per mapped
//! field) or a reason it cannot be sent. Records are serialized straight into Pendo's wire
//! format by [`Mapping::write_batch`], with field names taken from the mapping, never copied per
//! user.
//!
//! A JSON number keeps the text Okta wrote it in (serde_json's `arbitrary_precision`): taken as
//! text (a text field, a visitor ID) it is sent digit for digit, and a number is sent as written.

use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::{Number, Value};

/// A dot-separated path from the root of the Okta user object: `status`, `profile.email`.
#[derive(Clone, PartialEq, Eq)]
pub struct AttributePath {
    raw: Box<str>,
    segments: Box<[Box<str>]>,
}

/// Why a string is not an attribute path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("the attribute path is empty")]
    Empty,
    #[error("\"{0}\" has an empty segment (two dots, or a dot at an end)")]
    EmptySegment(String),
    #[error("\"{0}\" contains whitespace")]
    Whitespace(String),
}

impl AttributePath {
    /// Parses `a.b.c`: non-empty segments, no whitespace.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        if raw.chars().any(char::is_whitespace) {
            return Err(PathError::Whitespace(raw.into()));
        }
        let segments: Box<[Box<str>]> = raw.split('.').map(Box::from).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(PathError::EmptySegment(raw.into()));
        }
        Ok(AttributePath {
            raw: raw.into(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The value at this path, or `None` when any segment is absent or not an object.
    pub fn lookup<'a>(&self, user: &'a Value) -> Option<&'a Value> {
        self.segments
            .iter()
            .try_fold(user, |v, seg| v.as_object()?.get(&**seg))
    }
}

impl fmt::Debug for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttributePath({})", self.raw)
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The Pendo type a field is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// Pendo `string`.
    Text,
    /// Pendo `number`.
    Number,
    /// Pendo `boolean`.
    Boolean,
    /// Pendo `time`: sent as milliseconds since the Unix epoch.
    Date,
}

impl ValueType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => ValueType::Text,
            "number" => ValueType::Number,
            "boolean" => ValueType::Boolean,
            "date" => ValueType::Date,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Text => "text",
            ValueType::Number => "number",
            ValueType::Boolean => "boolean",
            ValueType::Date => "date",
        }
    }
}

/// What to do with an attribute that is null or absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNull {
    /// Leave the field out: Pendo keeps what it had.
    Skip,
    /// Send `null`: Pendo clears the field.
    Clear,
}

/// One Pendo field fed from one Okta attribute.
#[derive(Debug, Clone)]
pub struct FieldMapping {
    pub field: String,
    pub path: AttributePath,
    pub ty: ValueType,
}

/// The `[mapping]` table, in field-name order.
#[derive(Debug, Clone)]
pub struct Mapping {
    fields: Vec<FieldMapping>,
}

/// A user ready to send: its visitor ID and, per mapped field, the value or `None` (left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub visitor_id: String,
    pub values: Vec<Option<Value>>,
}

impl Record {
    /// Adds one to `counts[i]` for each field `i` this record gives a value (not null).
    pub fn count_values(&self, counts: &mut [u64]) {
        for (n, v) in counts.iter_mut().zip(&self.values) {
            if v.as_ref().is_some_and(|v| !v.is_null()) {
                *n += 1;
            }
        }
    }
}

/// Why a user cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsendable {
    /// No usable value at `visitor_id_key`.
    NoVisitorId,
    /// A mapped attribute could not be read as its type.
    BadValue { visitor_id: String, message: String },
}

impl Mapping {
    /// Builds a mapping; fields are kept sorted by name so output is stable.
    pub fn new(mut fields: Vec<FieldMapping>) -> Self {
        fields.sort_by(|a, b| a.field.cmp(&b.field));
        Mapping { fields }
    }

    pub fn fields(&self) -> &[FieldMapping] {
        &self.fields
    }

    /// The record a user becomes: its visitor ID and each field's coerced value (`None`: left
    /// out of the record). A user without a visitor ID, or with a value its type cannot take,
    /// cannot be sent, and says why.
    pub fn map_user(
        &self,
        user: &Value,
        visitor_id_key: &AttributePath,
        on_null: OnNull,
    ) -> Result<Record, Unsendable> {
        let visitor_id = visitor_id(user, visitor_id_key).ok_or(Unsendable::NoVisitorId)?;
        let mut values = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let value = match coerce(f.path.lookup(user), f.ty) {
                Ok(Some(v)) => Some(v),
                Ok(None) => match on_null {
                    OnNull::Skip => None,
                    OnNull::Clear => Some(Value::Null),
                },
                Err(why) => {
                    return Err(Unsendable::BadValue {
                        message: format!("{} ({}): {why}", f.field, f.path),
                        visitor_id,
                    });
                }
            };
            values.push(value);
        }
        Ok(Record { visitor_id, values })
    }

    /// Serializes records as Pendo's body: `[{"visitorId": …, "values": {…}}, …]`.
    pub fn write_batch(&self, records: &[Record], out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(
            out,
            &BatchSer {
                mapping: self,
                records,
            },
        )
    }

    /// A stable 64-bit hash of the values a record would set (xxh3 of their JSON): equal
    /// hashes mean nothing to push again.
    pub fn values_hash(&self, record: &Record) -> u64 {
        self.values_hash_in(record, &mut Vec::with_capacity(128))
    }

    /// [`values_hash`](Self::values_hash), serializing into `scratch` (cleared first): a
    /// buffer kept across records saves allocating one per record.
    pub fn values_hash_in(&self, record: &Record, scratch: &mut Vec<u8>) -> u64 {
        scratch.clear();
        let ser = RecordSer {
            mapping: self,
            record,
        };
        // Serializing values that are already JSON cannot fail.
        let _ = serde_json::to_writer(&mut *scratch, &ValuesSer(&ser));
        xxhash_rust::xxh3::xxh3_64(scratch)
    }

    /// Serializes one record as a JSON object (a line of `--dry-run` output).
    pub fn write_record(&self, record: &Record, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(
            out,
            &RecordSer {
                mapping: self,
                record,
            },
        )
    }
}

/// The visitor ID: a non-empty string, or a number written as text.
fn visitor_id(user: &Value, key: &AttributePath) -> Option<String> {
    match key.lookup(user)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Coerces an Okta attribute to a Pendo type. `Ok(None)` means "no value" (null, absent, or an
/// empty string for a non-text type).
pub fn coerce(value: Option<&Value>, ty: ValueType) -> Result<Option<Value>, String> {
    let value = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    if ty != ValueType::Text && value.as_str().is_some_and(|s| s.trim().is_empty()) {
        return Ok(None);
    }
    match ty {
        ValueType::Text => text(value).map(|s| Some(Value::String(s))),
        ValueType::Number => number(value).map(|n| Some(Value::Number(n))),
        ValueType::Boolean => boolean(value).map(|b| Some(Value::Bool(b))),
        ValueType::Date => date_millis(value).map(|ms| Some(Value::Number(ms.into()))),
    }
}

fn text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Array(items) => {
            let parts: Result<Vec<String>, String> = items
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| match v {
                    Value::Array(_) | Value::Object(_) => {
                        Err("a list holding lists or objects cannot be sent as text".to_owned())
                    }
                    scalar => text(scalar),
                })
                .collect();
            parts.map(|p| p.join(", "))
        }
        Value::Object(_) => Err("an object cannot be sent as text".into()),
        Value::Null => Ok(String::new()),
    }
}

/// A number as Okta wrote it (Pendo reads any JSON number), or a string read as one.
fn number(value: &Value) -> Result<Number, String> {
    match value {
        // Numbers keep their source text, which JSON allows beyond what a float can hold.
        Value::Number(n) if n.as_f64().is_none() => {
            Err(format!("{} is too large for a number", short(n.as_str())))
        }
        Value::Number(n) => Ok(n.clone()),
        Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                return Ok(i.into());
            }
            t.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .ok_or_else(|| format!("\"{}\" is not a number", short(s)))
        }
        other => Err(format!("{} is not a number", kind(other))),
    }
}

fn boolean(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" => Ok(false),
            _ => Err(format!("\"{}\" is not a boolean", short(s))),
        },
        Value::Number(n) => match n.as_i64() {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(format!("{n} is not a boolean (only 0 and 1 are)")),
        },
        other => Err(format!("{} is not a boolean", kind(other))),
    }
}

fn date_millis(value: &Value) -> Result<i64, String> {
    match value {
        Value::String(s) => {
            let t = s.trim();
            if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
                return Ok(dt.timestamp_millis());
            }
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .map(|d| {
                    d.and_time(chrono::NaiveTime::MIN)
                        .and_utc()
                        .timestamp_millis()
                })
                .map_err(|_| {
                    format!(
                        "\"{}\" is not a date (expected RFC 3339 or YYYY-MM-DD)",
                        short(s)
                    )
                })
        }
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not a whole number of milliseconds")),
        other => Err(format!("{} is not a date", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Bounds a user-supplied string quoted in a message.
fn short(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

struct BatchSer<'a> {
    mapping: &'a Mapping,
    records: &'a [Record],
}

impl Serialize for BatchSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.records.len()))?;
        for record in self.records {
            seq.serialize_element(&RecordSer {
                mapping: self.mapping,
                record,
            })?;
        }
        seq.end()
    }
}

struct RecordSer<'a> {
    mapping: &'a Mapping,
    record: &'a Record,
}

impl Serialize for RecordSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Record", 2)?;
        st.serialize_field("visitorId", &self.record.visitor_id)?;
        st.serialize_field("values", &ValuesSer(self))?;
        st.end()
    }
}

struct ValuesSer<'a>(&'a RecordSer<'a>);

impl Serialize for ValuesSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let RecordSer { mapping, record } = self.0;
        let mut map = s.serialize_map(None)?;
        for (f, v) in mapping.fields.iter().zip(&record.values) {
            if let Some(v) = v {
                map.serialize_entry(&f.field, v)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(s: &str) -> AttributePath {
        AttributePath::parse(s).unwrap()
    }

    fn mapping(fields: &[(&str, &str, ValueType)]) -> Mapping {
        Mapping::new(
            fields
                .iter()
                .map(|(f, p, t)| FieldMapping {
                    field: (*f).into(),
                    path: path(p),
                    ty: *t,
                })
                .collect(),
        )
    }

    #[test]
    fn paths_parse_and_look_up() {
        assert_eq!(AttributePath::parse(""), Err(PathError::Empty));
        assert!(AttributePath::parse("profile..x").is_err());
        assert!(AttributePath::parse(".x").is_err());
        assert!(AttributePath::parse("a b").is_err());
        let user = json!({"status": "ACTIVE", "profile": {"email": "a@b", "n": null}});
        assert_eq!(path("status").lookup(&user), Some(&json!("ACTIVE")));
        assert_eq!(path("profile.email").lookup(&user), Some(&json!("a@b")));
        assert_eq!(path("profile.n").lookup(&user), Some(&Value::Null));
        assert_eq!(path("profile.missing").lookup(&user), None);
        assert_eq!(path("status.deeper").lookup(&user), None);
    }

    #[test]
    fn coercion_rules() {
        use ValueType::*;
        let c = |v: Value, t| coerce(Some(&v), t);
        assert_eq!(c(json!("x"), Text), Ok(Some(json!("x"))));
        assert_eq!(c(json!(12), Text), Ok(Some(json!("12"))));
        assert_eq!(c(json!(true), Text), Ok(Some(json!("true"))));
        assert_eq!(c(json!(["a", "b"]), Text), Ok(Some(json!("a, b"))));
        assert!(c(json!({"a": 1}), Text).is_err());
        assert_eq!(c(json!("42"), Number), Ok(Some(json!(42))));
        assert_eq!(c(json!(" 4.5 "), Number), Ok(Some(json!(4.5))));
        assert_eq!(c(json!(7), Number), Ok(Some(json!(7))));
        assert!(c(json!("n/a"), Number).is_err());
        assert!(c(json!("NaN"), Number).is_err());
        assert_eq!(c(json!(""), Number), Ok(None));
        assert_eq!(c(json!("TRUE"), Boolean), Ok(Some(json!(true))));
        assert_eq!(c(json!(0), Boolean), Ok(Some(json!(false))));
        assert!(c(json!("maybe"), Boolean).is_err());
        assert_eq!(
            c(json!("2020-08-27T18:16:00.000Z"), Date),
            Ok(Some(json!(1_598_552_160_000_i64)))
        );
        assert_eq!(c(json!("1970-01-02"), Date), Ok(Some(json!(86_400_000))));
        assert!(c(json!("last tuesday"), Date).is_err());
        assert_eq!(coerce(None, Date), Ok(None));
        assert_eq!(coerce(Some(&Value::Null), Text), Ok(None));
    }

    #[test]
    fn numbers_are_coerced_from_the_text_okta_wrote() {
        use ValueType::*;
        let n = |text: &str| Value::Number(text.parse().unwrap());
        let c = |text: &str, t| coerce(Some(&n(text)), t);
        // Text keeps every digit; a number is sent as written.
        for lit in [
            "1.50",
            "1e+3",
            "12345678901234567890123",
            "-0",
            "4.544825338742835e-116",
        ] {
            assert_eq!(c(lit, Text), Ok(Some(json!(lit))));
            assert_eq!(c(lit, Number), Ok(Some(n(lit))));
        }
        assert_eq!(
            c("1e400", Number),
            Err("1e+400 is too large for a number".into())
        );
        assert_eq!(c("1e400", Text), Ok(Some(json!("1e+400"))));
        assert_eq!(c("1", Boolean), Ok(Some(json!(true))));
        assert_eq!(c("0", Boolean), Ok(Some(json!(false))));
        assert!(c("1.0", Boolean).is_err());
        assert!(c("2", Boolean).is_err());
        assert_eq!(c("86400000", Date), Ok(Some(json!(86_400_000))));
        assert_eq!(c("-5", Date), Ok(Some(json!(-5))));
        assert!(c("1e3", Date).is_err());
        assert!(c("1.5", Date).is_err());
        assert!(c("12345678901234567890123", Date).is_err());
        // A string read as a number is written the shortest way, as before.
        assert_eq!(coerce(Some(&json!("1.50")), Number), Ok(Some(json!(1.5))));
        // The hash of a number is the hash of its text.
        let m = mapping(&[("a", "x", Number)]);
        let rec = Record {
            visitor_id: "v".into(),
            values: vec![Some(n("1.50"))],
        };
        assert_eq!(
            m.values_hash(&rec),
            xxhash_rust::xxh3::xxh3_64(br#"{"a":1.50}"#)
        );
    }

    #[test]
    fn map_user_with_both_null_rules() {
        let m = mapping(&[
            ("department", "profile.department", ValueType::Text),
            ("last_login", "lastLogin", ValueType::Date),
        ]);
        let user = json!({"lastLogin": null, "profile": {"login": "a@x", "department": "R&D"}});
        let key = path("profile.login");
        let skip = m.map_user(&user, &key, OnNull::Skip).unwrap();
        let mut out = Vec::new();
        m.write_record(&skip, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"visitorId":"a@x","values":{"department":"R&D"}}"#
        );
        let clear = m.map_user(&user, &key, OnNull::Clear).unwrap();
        let mut out = Vec::new();
        m.write_batch(&[clear], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[{"visitorId":"a@x","values":{"department":"R&D","last_login":null}}]"#
        );
    }

    #[test]
    fn values_hash_follows_the_values_only() {
        let m = mapping(&[("a", "x", ValueType::Text), ("b", "y", ValueType::Number)]);
        let rec = |id: &str, a: Value, b: Option<Value>| Record {
            visitor_id: id.into(),
            values: vec![Some(a), b],
        };
        let h = m.values_hash(&rec("v1", json!("x"), Some(json!(1))));
        assert_eq!(h, m.values_hash(&rec("v2", json!("x"), Some(json!(1)))));
        assert_ne!(h, m.values_hash(&rec("v1", json!("x"), Some(json!(2)))));
        assert_ne!(h, m.values_hash(&rec("v1", json!("x"), None)));
        assert_ne!(h, m.values_hash(&rec("v1", json!("x"), Some(Value::Null))));
        // Stable across builds: state files keep these.
        assert_eq!(
            m.values_hash(&rec("v", json!("x"), None)),
            xxhash_rust::xxh3::xxh3_64(br#"{"a":"x"}"#)
        );
    }

    #[test]
    fn unsendable_users() {
        let m = mapping(&[("n", "profile.n", ValueType::Number)]);
        let key = path("profile.login");
        for user in [
            json!({"profile": {}}),
            json!({"profile": {"login": null}}),
            json!({"profile": {"login": "  "}}),
            json!({"profile": {"login": {"x": 1}}}),
            json!([1, 2]),
        ] {
            assert_eq!(
                m.map_user(&user, &key, OnNull::Skip),
                Err(Unsendable::NoVisitorId)
            );
        }
        let bad = json!({"profile": {"login": "a", "n": "twelve"}});
        match m.map_user(&bad, &key, OnNull::Skip) {
            Err(Unsendable::BadValue {
                visitor_id,
                message,
            }) => {
                assert_eq!(visitor_id, "a");
                assert!(message.contains("\"twelve\" is not a number"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
