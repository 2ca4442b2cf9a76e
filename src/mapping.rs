//! Mapping: attribute paths, type coercion and the shape of a Pendo record. Pure, no I/O.
//!
//! An Okta user, as a page's projection kept it, becomes either a [`Record`] (a visitor ID and
//! its entry of a Pendo body, written once) or a reason it cannot be sent. Values as Okta
//! usually writes them go from the page's text into the record without being built; the rest
//! goes through [`coerce`], which says what every value becomes.
//!
//! A JSON number keeps the text Okta wrote it in (serde_json's `arbitrary_precision`): taken as
//! text (a text field, a visitor ID) it is sent digit for digit, and a number is sent as written.

use std::fmt;

use std::sync::Arc;

use crate::okta::projection::{Field, Locator, Projection, User, Users, raw_str};
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

    /// Its segments, from the root.
    pub fn segments(&self) -> &[Box<str>] {
        &self.segments
    }

    /// The value at this path, or `None` when any segment is absent or not an object.
    pub fn lookup<'a>(&self, user: &'a Value) -> Option<&'a Value> {
        lookup_in(user, &self.segments)
    }
}

/// The value at these segments below `value`, or `None` when any is absent or not an object.
pub(crate) fn lookup_in<'a>(value: &'a Value, segments: &[Box<str>]) -> Option<&'a Value> {
    segments
        .iter()
        .try_fold(value, |v, seg| v.as_object()?.get(&**seg))
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
    /// Per field, its name as a JSON object key with its colon (`"department":`), written once.
    keys: Vec<Box<[u8]>>,
}

/// A user ready to send: its visitor ID, and its entry of a Pendo body
/// (`{"visitorId":…,"values":{…}}`), written once when the user is mapped; it is hashed,
/// batched and printed as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub visitor_id: String,
    json: Vec<u8>,
    /// Where the `values` object starts in `json` (it ends before the last byte).
    values_at: usize,
    /// The mapped fields (by their place in the mapping) the record gives a value (not null).
    present: FieldSet,
}

/// A set of mapped fields by their place in the mapping: a bit each, in a word for the usual
/// mapping, allocated only beyond 64 fields.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldSet {
    Word(u64),
    Words(Box<[u64]>),
}

impl FieldSet {
    fn new(fields: usize) -> Self {
        if fields <= 64 {
            FieldSet::Word(0)
        } else {
            FieldSet::Words(vec![0; fields.div_ceil(64)].into_boxed_slice())
        }
    }

    fn insert(&mut self, i: usize) {
        match self {
            FieldSet::Word(w) if i < 64 => *w |= 1 << i,
            FieldSet::Word(_) => {}
            FieldSet::Words(ws) => {
                if let Some(w) = ws.get_mut(i / 64) {
                    *w |= 1 << (i % 64);
                }
            }
        }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            FieldSet::Word(w) => i < 64 && w >> i & 1 == 1,
            FieldSet::Words(ws) => ws.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1),
        }
    }
}

impl Record {
    /// The record as Pendo gets it: `{"visitorId":…,"values":{…}}`.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The values it sets, as a JSON object: `{"department":"R&D",…}`.
    pub fn values_json(&self) -> &[u8] {
        self.json
            .get(self.values_at..self.json.len().saturating_sub(1))
            .unwrap_or_default()
    }

    /// A stable 64-bit hash of the values the record sets (xxh3 of their JSON): equal hashes
    /// mean nothing to push again.
    pub fn values_hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.values_json())
    }

    /// Adds one to `counts[i]` for each field `i` this record gives a value (not null).
    pub fn count_values(&self, counts: &mut [u64]) {
        for (i, n) in counts.iter_mut().enumerate() {
            if self.present.contains(i) {
                *n += 1;
            }
        }
    }
}

/// Serializes records as Pendo's body: `[{"visitorId": …, "values": {…}}, …]`.
pub fn write_batch(records: &[Record], out: &mut Vec<u8>) {
    out.reserve(records.iter().map(|r| r.json.len() + 1).sum::<usize>() + 1);
    out.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&record.json);
    }
    out.push(b']');
}

/// Why a user cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsendable {
    /// No usable value at `visitor_id_key`.
    NoVisitorId,
    /// A mapped attribute could not be read as its type.
    BadValue { visitor_id: String, message: String },
}

/// Where a page's users keep a mapping's attributes and the visitor ID: found once a page.
#[derive(Debug, Clone)]
pub struct Located {
    visitor_id: Locator,
    fields: Vec<Locator>,
}

impl Mapping {
    /// Builds a mapping; fields are kept sorted by name so output is stable.
    pub fn new(mut fields: Vec<FieldMapping>) -> Self {
        fields.sort_by(|a, b| a.field.cmp(&b.field));
        let keys = fields
            .iter()
            .map(|f| {
                let mut key = serde_json::to_vec(&f.field).unwrap_or_default();
                key.push(b':');
                key.into_boxed_slice()
            })
            .collect();
        Mapping { fields, keys }
    }

    pub fn fields(&self) -> &[FieldMapping] {
        &self.fields
    }

    /// The paths a user is read at for this mapping: each field's, then the visitor ID's.
    pub fn paths<'a>(
        &'a self,
        visitor_id_key: &'a AttributePath,
    ) -> impl Iterator<Item = &'a AttributePath> {
        self.fields
            .iter()
            .map(|f| &f.path)
            .chain(std::iter::once(visitor_id_key))
    }

    /// Where `users` keep this mapping's attributes and the visitor ID.
    pub fn locate(&self, users: &Users, visitor_id_key: &AttributePath) -> Located {
        Located {
            visitor_id: users.locate(visitor_id_key),
            fields: self.fields.iter().map(|f| users.locate(&f.path)).collect(),
        }
    }

    /// The record a user becomes: its visitor ID and each field's coerced value (left out, or
    /// null, when it has none, as `on_null` says). A user without a visitor ID, or with a
    /// value its type cannot take, cannot be sent, and says why.
    pub fn map(
        &self,
        user: &User<'_>,
        at: &Located,
        on_null: OnNull,
    ) -> Result<Record, Unsendable> {
        let visitor_id = visitor_id(user.get(&at.visitor_id)).ok_or(Unsendable::NoVisitorId)?;
        let mut json = Vec::with_capacity(48 + visitor_id.len() + 32 * self.fields.len());
        json.extend_from_slice(b"{\"visitorId\":");
        write_json(&mut json, visitor_id.as_str());
        json.extend_from_slice(b",\"values\":");
        let values_at = json.len();
        json.push(b'{');
        let mut present = FieldSet::new(self.fields.len());
        let mut empty = true;
        for (i, (f, key)) in self.fields.iter().zip(&self.keys).enumerate() {
            let mark = json.len();
            if !empty {
                json.push(b',');
            }
            json.extend_from_slice(key);
            let field = at.fields.get(i).map_or(Field::Absent, |at| user.get(at));
            match write_coerced(field, f.ty, &mut json) {
                Ok(true) => present.insert(i),
                Ok(false) => match on_null {
                    OnNull::Clear => json.extend_from_slice(b"null"),
                    OnNull::Skip => {
                        json.truncate(mark);
                        continue;
                    }
                },
                Err(why) => {
                    return Err(Unsendable::BadValue {
                        message: format!("{} ({}): {why}", f.field, f.path),
                        visitor_id,
                    });
                }
            }
            empty = false;
        }
        json.extend_from_slice(b"}}");
        Ok(Record {
            visitor_id,
            json,
            values_at,
            present,
        })
    }

    /// [`map`](Self::map) for one user given as a value (as `explain` has it): read as a run
    /// reads it, through a projection of this mapping's paths.
    pub fn map_user(
        &self,
        user: &Value,
        visitor_id_key: &AttributePath,
        on_null: OnNull,
    ) -> Result<Record, Unsendable> {
        let projection = Arc::new(Projection::of(self.paths(visitor_id_key)));
        // A value always serializes, and what serde_json writes it reads back.
        let users = Users::of_values(&projection, std::slice::from_ref(user))
            .map_err(|_| Unsendable::NoVisitorId)?;
        let at = self.locate(&users, visitor_id_key);
        match users.iter().next() {
            Some(u) => self.map(&u, &at, on_null),
            None => Err(Unsendable::NoVisitorId),
        }
    }
}

/// Writes a string as JSON.
fn write_json(out: &mut Vec<u8>, s: &str) {
    // Writing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The visitor ID: a non-empty string, or a number written as text (as serde_json writes it).
fn visitor_id(field: Field<'_>) -> Option<String> {
    let id = match field {
        Field::Raw(raw) if plain_number(raw) => return Some(raw.to_owned()),
        Field::Raw(raw) if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
            return serde_json::from_str::<Number>(raw)
                .ok()
                .map(|n| n.to_string());
        }
        Field::Value(Value::Number(n)) => return Some(n.to_string()),
        other => other.text()?,
    };
    (!id.trim().is_empty()).then(|| id.into_owned())
}

/// A JSON number without an exponent: serde_json keeps its text as written (an exponent it
/// writes its own way, `1e+3`).
fn plain_number(raw: &str) -> bool {
    raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) && !raw.contains(['e', 'E'])
}

/// Writes a field's value coerced to `ty`: `Ok(true)` when it wrote one, `Ok(false)` when the
/// field has none (null, absent, or blank for a type other than text). The JSON a value is
/// written as is what serializing [`coerce`]'s result writes: values as Okta usually sends
/// them (strings without escapes, plain numbers, null) are written straight from the page's
/// text; anything else goes through [`coerce`].
fn write_coerced(field: Field<'_>, ty: ValueType, out: &mut Vec<u8>) -> Result<bool, String> {
    let value = match field {
        Field::Absent => return Ok(false),
        Field::Raw(raw) => {
            if let Some(written) = write_plain(raw, ty, out) {
                return Ok(written);
            }
            serde_json::from_str::<Value>(raw).map_err(|e| e.to_string())?
        }
        Field::Value(v) => v,
    };
    match coerce(Some(&value), ty)? {
        Some(v) => {
            // Serializing a value to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &v);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// [`write_coerced`] for the JSON text Okta usually sends, without building a value: `None`
/// leaves it to [`coerce`] (anything else, and anything that is refused, for its message).
fn write_plain(raw: &str, ty: ValueType, out: &mut Vec<u8>) -> Option<bool> {
    if raw == "null" {
        return Some(false);
    }
    if let Some(s) = raw_str(raw) {
        if ty == ValueType::Text {
            out.extend_from_slice(raw.as_bytes());
            return Some(true);
        }
        let t = s.trim();
        if t.is_empty() {
            return Some(false);
        }
        match ty {
            ValueType::Number => write_int(out, t.parse().ok()?),
            ValueType::Date => write_int(out, date_text(s).ok()?),
            ValueType::Boolean => write_bool(out, boolean_text(s).ok()?),
            ValueType::Text => {}
        }
        return Some(true);
    }
    if plain_number(raw) {
        match ty {
            ValueType::Text => {
                out.push(b'"');
                out.extend_from_slice(raw.as_bytes());
                out.push(b'"');
            }
            ValueType::Number if raw.parse::<f64>().is_ok_and(f64::is_finite) => {
                out.extend_from_slice(raw.as_bytes());
            }
            ValueType::Date => write_int(out, raw.parse().ok()?),
            ValueType::Number | ValueType::Boolean => return None,
        }
        return Some(true);
    }
    None
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
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
        Value::String(s) => boolean_text(s),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(format!("{n} is not a boolean (only 0 and 1 are)")),
        },
        other => Err(format!("{} is not a boolean", kind(other))),
    }
}

/// A boolean written as text: true/yes/1 or false/no/0, in any case.
fn boolean_text(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("\"{}\" is not a boolean", short(s))),
    }
}

/// A date written as text (RFC 3339, or YYYY-MM-DD for midnight UTC), in Unix milliseconds.
fn date_text(s: &str) -> Result<i64, String> {
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

fn date_millis(value: &Value) -> Result<i64, String> {
    match value {
        Value::String(s) => date_text(s),
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
        let rec = m
            .map_user(
                &json!({"x": n("1.50"), "id": "v"}),
                &path("id"),
                OnNull::Skip,
            )
            .unwrap();
        assert_eq!(rec.values_json(), br#"{"a":1.50}"#);
        assert_eq!(
            rec.values_hash(),
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
        assert_eq!(
            String::from_utf8_lossy(skip.json()),
            r#"{"visitorId":"a@x","values":{"department":"R&D"}}"#
        );
        let mut counts = [0, 0];
        skip.count_values(&mut counts);
        assert_eq!(counts, [1, 0]);
        let clear = m.map_user(&user, &key, OnNull::Clear).unwrap();
        let mut counts = [0, 0];
        clear.count_values(&mut counts);
        assert_eq!(counts, [1, 0], "a null sent is not a value");
        let mut out = Vec::new();
        write_batch(&[skip, clear], &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"[{"visitorId":"a@x","values":{"department":"R&D"}},"#,
                r#"{"visitorId":"a@x","values":{"department":"R&D","last_login":null}}]"#
            )
        );
        // Nothing to send still makes an object; a visitor ID is written as JSON escapes it.
        let odd = json!({"profile": {"login": "a\"b\u{1}"}});
        let rec = m.map_user(&odd, &key, OnNull::Skip).unwrap();
        assert_eq!(rec.visitor_id, "a\"b\u{1}");
        assert_eq!(
            String::from_utf8_lossy(rec.json()),
            r#"{"visitorId":"a\"b\u0001","values":{}}"#
        );
    }

    #[test]
    fn values_are_counted_however_many_fields_there_are() {
        for n in [1, 63, 64, 65, 130] {
            let names: Vec<String> = (0..n).map(|i| format!("f{i:03}")).collect();
            let fields: Vec<(&str, &str, ValueType)> = names
                .iter()
                .map(|name| (name.as_str(), name.as_str(), ValueType::Text))
                .collect();
            let m = mapping(&fields);
            let given: Vec<usize> = [0, 1, 62, 63, 64, 65, 129]
                .into_iter()
                .filter(|i| *i < n)
                .collect();
            let mut user = json!({"login": "a@company.com"});
            for i in &given {
                user[&names[*i]] = json!("x");
            }
            let rec = m.map_user(&user, &path("login"), OnNull::Clear).unwrap();
            let mut counts = vec![0; n];
            rec.count_values(&mut counts);
            let counted: Vec<usize> = (0..n).filter(|i| counts[*i] == 1).collect();
            assert_eq!(counted, given, "{n} fields");
        }
    }

    #[test]
    fn values_hash_follows_the_values_only() {
        let m = mapping(&[("a", "x", ValueType::Text), ("b", "y", ValueType::Number)]);
        let hash = |id: &str, user: Value, on_null| {
            let mut user = user;
            user["id"] = json!(id);
            m.map_user(&user, &path("id"), on_null)
                .unwrap()
                .values_hash()
        };
        let h = hash("v1", json!({"x": "x", "y": 1}), OnNull::Skip);
        assert_eq!(h, hash("v2", json!({"x": "x", "y": 1}), OnNull::Skip));
        assert_eq!(h, hash("v2", json!({"x": "x", "y": "1"}), OnNull::Skip));
        assert_ne!(h, hash("v1", json!({"x": "x", "y": 2}), OnNull::Skip));
        assert_ne!(h, hash("v1", json!({"x": "x"}), OnNull::Skip));
        assert_ne!(h, hash("v1", json!({"x": "x"}), OnNull::Clear));
        // Stable across builds: state files keep these.
        assert_eq!(
            hash("v", json!({"x": "x"}), OnNull::Skip),
            xxhash_rust::xxh3::xxh3_64(br#"{"a":"x"}"#)
        );
        assert_eq!(
            hash("v", json!({"x": "x", "y": 2}), OnNull::Skip),
            xxhash_rust::xxh3::xxh3_64(br#"{"a":"x","b":2}"#)
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
