//! Property tests for the parsers that meet outside input: the `Link` header, attribute paths,
//! the mapping of arbitrary JSON users, and the rate-limit headers. None may panic, whatever
//! arrives; each must give the answer its definition says.
//!
//! Every property is an invariant, and the cases are drawn from a fixed seed so that CI runs
//! the same cases every time. To explore other cases locally, pick the seed and the count:
//! `PROPTEST_RNG_SEED=$RANDOM PROPTEST_CASES=20000 cargo test --test it properties::`. A failure
//! found that way is saved to `proptest-regressions/properties.txt`; commit it with the fix,
//! and every later run tries it first.

use std::time::Duration;

use std::sync::Arc;

use okta_pendo_sync::mapping::{
    AttributePath, FieldMapping, Mapping, OnNull, Unsendable, ValueType, coerce, write_batch,
};
use okta_pendo_sync::okta::client::rate_limit_wait;
use okta_pendo_sync::okta::link::next_link;
use okta_pendo_sync::okta::pacer::Budget;
use okta_pendo_sync::okta::projection::{Field, Projection, Users};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        // Numbers as Okta may write them, some beyond what an f64 or a u64 holds exactly.
        prop_oneof![
            Just("1.50"),
            Just("1e3"),
            Just("1.0E10"),
            Just("12345678901234567890123"),
            Just("-0"),
            Just("1e400"),
        ]
        .prop_map(|s| Value::Number(s.parse().unwrap())),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("2024-03-01T12:00:00.000Z"),
            Just("2021-06-01"),
            Just("1042"),
            Just("true"),
            Just(""),
            Just("  "),
            Just(" 12 "),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A user with values (any JSON, often absent) at the paths of [`fields`], and more around them.
fn user() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        "[a-z]{1,8}(\\.[a-z]{1,8})?@company\\.com".prop_map(Value::String),
        any::<u32>().prop_map(Value::from),
        prop_oneof![Just(""), Just("  "), Just(" a@company.com ")].prop_map(Value::from),
        json(),
    ];
    let at = || prop::option::weighted(0.8, json());
    (
        at(),
        at(),
        at(),
        at(),
        prop::option::weighted(0.9, id),
        json(),
    )
        .prop_map(|(a, ab, c, d, e, rest)| {
            let mut user = Map::new();
            user.insert("z".into(), rest);
            match (a, ab) {
                (_, Some(ab)) => {
                    user.insert("a".into(), serde_json::json!({"b": ab, "y": 1}));
                }
                (Some(a), None) => {
                    user.insert("a".into(), a);
                }
                (None, None) => {}
            }
            if let Some(c) = c {
                user.insert("b".into(), serde_json::json!({"x": [1], "c": c}));
            }
            for (k, v) in [("d", d), ("e", e)] {
                if let Some(v) = v {
                    user.insert(k.into(), v);
                }
            }
            Value::Object(user)
        })
}

/// Up to four mapped fields, of any type, at paths the users of [`user`] may have.
fn fields() -> impl Strategy<Value = Vec<FieldMapping>> {
    let ty = prop_oneof![
        Just(ValueType::Text),
        Just(ValueType::Number),
        Just(ValueType::Boolean),
        Just(ValueType::Date),
    ];
    let path = prop_oneof![Just("a"), Just("b.c"), Just("d"), Just("a.b"), Just("e")];
    prop::collection::vec((path, ty), 1..5).prop_map(|fields| {
        fields
            .into_iter()
            .enumerate()
            .map(|(i, (path, ty))| FieldMapping {
                field: format!("f{i}"),
                path: AttributePath::parse(path).unwrap(),
                ty,
            })
            .collect()
    })
}

/// What a user must become by the rules of `coerce`, applied to the whole value: the visitor ID
/// and the record's JSON, or why it cannot be sent.
fn oracle(
    mapping: &Mapping,
    user: &Value,
    key: &AttributePath,
    on_null: OnNull,
) -> Result<(String, String), Unsendable> {
    let visitor_id = match key.lookup(user) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(Unsendable::NoVisitorId),
    };
    let mut values = Vec::new();
    for f in mapping.fields() {
        let name = serde_json::to_string(&f.field).unwrap();
        match coerce(f.path.lookup(user), f.ty) {
            Ok(Some(v)) => values.push(format!("{name}:{}", serde_json::to_string(&v).unwrap())),
            Ok(None) if on_null == OnNull::Clear => values.push(format!("{name}:null")),
            Ok(None) => {}
            Err(why) => {
                return Err(Unsendable::BadValue {
                    message: format!("{} ({}): {why}", f.field, f.path),
                    visitor_id,
                });
            }
        }
    }
    let json = format!(
        r#"{{"visitorId":{},"values":{{{}}}}}"#,
        serde_json::to_string(&visitor_id).unwrap(),
        values.join(",")
    );
    Ok((visitor_id, json))
}

/// The same JSON spelled otherwise, as another writer may: every character of every string and
/// key as a `\u` escape, and exponents as `1E3` rather than `1e+3`.
fn escaped_json(value: &impl serde::Serialize) -> Vec<u8> {
    struct Escaping;
    impl serde_json::ser::Formatter for Escaping {
        fn write_number_str<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            value: &str,
        ) -> std::io::Result<()> {
            w.write_all(value.replace("e+", "E").replace('e', "E").as_bytes())
        }
        fn write_string_fragment<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            fragment: &str,
        ) -> std::io::Result<()> {
            for unit in fragment.encode_utf16() {
                write!(w, "\\u{unit:04x}")?;
            }
            Ok(())
        }
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Escaping);
    value.serialize(&mut ser).unwrap();
    out
}

/// One edit of a page's text.
#[derive(Debug, Clone)]
enum Edit {
    Insert(u8),
    Replace(u8),
    Delete,
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![
        prop::sample::select(b"\"\\{}[],:-+.0123456789eEuntrfal \x01\x1f\x7f\xc3\xff".to_vec()),
        any::<u8>(),
    ];
    prop_oneof![
        byte.clone().prop_map(Edit::Insert),
        byte.prop_map(Edit::Replace),
        Just(Edit::Delete),
    ]
}

/// The cases CI runs: 512 per property from a fixed seed, unless `PROPTEST_CASES` or
/// `PROPTEST_RNG_SEED` say otherwise.
fn config() -> ProptestConfig {
    // The default reads the `PROPTEST_*` environment variables.
    let from_env = ProptestConfig::default();
    let set = |var: &str| std::env::var_os(var).is_some();
    ProptestConfig {
        cases: if set("PROPTEST_CASES") {
            from_env.cases
        } else {
            512
        },
        rng_seed: if set("PROPTEST_RNG_SEED") {
            from_env.rng_seed
        } else {
            RngSeed::Fixed(0x6f6b_7461_7065_6e64)
        },
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/properties.txt",
        ))),
        ..from_env
    }
}

/// A URL-ish target without the characters that delimit a link.
fn target() -> impl Strategy<Value = String> {
    "https://[a-z]{1,8}\\.example/[a-z0-9/?=&,;.%-]{0,30}"
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn link_parser_never_panics(values in prop::collection::vec(".{0,80}", 0..4)) {
        let _ = next_link(values.iter().map(String::as_str));
    }

    #[test]
    fn link_parser_finds_the_first_next_in_both_forms(
        links in prop::collection::vec((target(), prop_oneof![Just("self"), Just("next"), Just("prev")], any::<bool>()), 1..5),
    ) {
        let rendered: Vec<String> = links
            .iter()
            .map(|(t, rel, quoted)| if *quoted { format!("<{t}>; rel=\"{rel}\"") } else { format!("<{t}>; rel={rel}") })
            .collect();
        let expected = links.iter().find(|(_, rel, _)| *rel == "next").map(|(t, _, _)| t.as_str());
        // One header line per link, as Okta sends them.
        prop_assert_eq!(next_link(rendered.iter().map(String::as_str)), expected);
        // One comma-joined line, as some proxies send them.
        let joined = rendered.join(", ");
        prop_assert_eq!(next_link([joined.as_str()]), expected);
    }

    #[test]
    fn attribute_paths_parse_or_explain(raw in ".{0,40}") {
        match AttributePath::parse(&raw) {
            Ok(p) => {
                prop_assert_eq!(p.as_str(), raw.as_str());
                prop_assert!(!raw.is_empty() && !raw.split('.').any(str::is_empty));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn attribute_paths_find_what_is_there(
        segments in prop::collection::vec("[a-zA-Z_][a-zA-Z0-9_]{0,8}", 1..5),
        leaf in json(),
    ) {
        let path = AttributePath::parse(&segments.join(".")).unwrap();
        let mut user = leaf.clone();
        for seg in segments.iter().rev() {
            let mut m = Map::new();
            m.insert(seg.clone(), user);
            user = Value::Object(m);
        }
        prop_assert_eq!(path.lookup(&user), Some(&leaf));
    }

    #[test]
    fn any_json_user_maps_or_is_skipped_with_a_reason(user in json(), on_null in any::<bool>()) {
        let field = |name: &str, path: &str, ty| FieldMapping {
            field: name.into(),
            path: AttributePath::parse(path).unwrap(),
            ty,
        };
        let mapping = Mapping::new(vec![
            field("t", "a", ValueType::Text),
            field("n", "b", ValueType::Number),
            field("b", "c", ValueType::Boolean),
            field("d", "d", ValueType::Date),
            field("deep", "a.b.c", ValueType::Text),
        ]);
        let key = AttributePath::parse("e").unwrap();
        let on_null = if on_null { OnNull::Clear } else { OnNull::Skip };
        match mapping.map_user(&user, &key, on_null) {
            Ok(record) => {
                let mut out = Vec::new();
                write_batch(std::slice::from_ref(&record), &mut out);
                let back: Value = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(&back[0]["visitorId"], &Value::String(record.visitor_id.clone()));
                for (name, ty) in [("n", "number"), ("d", "number"), ("b", "boolean"), ("t", "string")] {
                    if let Some(v) = back[0]["values"].get(name) {
                        let ok = match ty {
                            "number" => v.is_number() || v.is_null(),
                            "boolean" => v.is_boolean() || v.is_null(),
                            _ => v.is_string() || v.is_null(),
                        };
                        prop_assert!(ok, "{} sent as {}", name, v);
                    }
                }
            }
            Err(Unsendable::NoVisitorId) => {
                let id = user.get("e");
                let usable = matches!(id, Some(Value::String(s)) if !s.trim().is_empty()) || matches!(id, Some(Value::Number(_)));
                prop_assert!(!usable);
            }
            Err(Unsendable::BadValue { message, .. }) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn a_run_maps_a_page_as_the_coercion_rules_say(
        user in user(),
        fields in fields(),
        on_null in any::<bool>(),
        escaped in any::<bool>(),
    ) {
        // The run reads the page's text through a projection and writes most values straight
        // from it; the oracle applies `coerce` to the whole value. Pages are written plainly
        // or with every string character escaped, which the run must read the same.
        let mapping = Mapping::new(fields);
        let key = AttributePath::parse("e").unwrap();
        let on_null = if on_null { OnNull::Clear } else { OnNull::Skip };
        let users = vec![user.clone()];
        let body = if escaped { escaped_json(&users) } else { serde_json::to_vec(&users).unwrap() };
        let projection = Arc::new(Projection::of(mapping.paths(&key)));
        let page = Users::parse(&projection, body, 1).unwrap();
        prop_assert_eq!(page.len(), 1);
        let at = mapping.locate(&page, &key);
        let read = page.iter().next().map(|u| mapping.map(&u, &at, on_null)).unwrap();
        let expected = oracle(&mapping, &user, &key, on_null);
        match (&read, &expected) {
            (Ok(record), Ok((visitor_id, json))) => {
                prop_assert_eq!(&record.visitor_id, visitor_id);
                prop_assert_eq!(String::from_utf8_lossy(record.json()), json.as_str());
            }
            _ => prop_assert_eq!(read.map(|r| r.visitor_id), expected.map(|(id, _)| id)),
        }
        // Explaining a user maps it the same way.
        let explained = mapping.map_user(&user, &key, on_null).map(|r| r.json().to_vec());
        let run = mapping.map(&page.iter().next().unwrap(), &at, on_null).map(|r| r.json().to_vec());
        prop_assert_eq!(explained, run);
    }

    #[test]
    fn a_page_is_read_as_strictly_as_serde_json_reads_it(
        users in prop::collection::vec(user(), 0..4),
        escaped in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), edit()), 0..3),
    ) {
        // A page, valid or broken by a few edits. What serde_json reads whole, the scan reads,
        // with the same values at the projected paths; what the scan accepts, serde_json
        // accepts too (skipping it).
        let mut text = if escaped { escaped_json(&users) } else { serde_json::to_vec(&users).unwrap() };
        for (at, edit) in edits {
            let at = at.index(text.len() + 1);
            match edit {
                Edit::Insert(b) => text.insert(at, b),
                Edit::Replace(b) if at < text.len() => text[at] = b,
                Edit::Delete if at < text.len() => {
                    text.remove(at);
                }
                Edit::Replace(_) | Edit::Delete => {}
            }
        }
        let paths: Vec<AttributePath> = ["a", "b.c", "d", "a.b", "e"]
            .iter()
            .map(|p| AttributePath::parse(p).unwrap())
            .collect();
        let projection = Arc::new(Projection::of(&paths));
        let read = Users::parse(&projection, text.clone(), usize::MAX);
        let shown = String::from_utf8_lossy(&text).into_owned();
        if let Ok(whole) = serde_json::from_slice::<Vec<Value>>(&text) {
            let users = read.as_ref().map_err(|e| format!("{e} in {shown}")).unwrap();
            prop_assert_eq!(users.len(), whole.len());
            for (user, value) in users.iter().zip(&whole) {
                for path in &paths {
                    let found = match user.get(&users.locate(path)) {
                        Field::Absent => None,
                        Field::Raw(raw) => Some(serde_json::from_str::<Value>(raw).unwrap()),
                        Field::Value(v) => Some(v),
                    };
                    prop_assert_eq!(found.as_ref(), path.lookup(value), "{} in {}", path, shown);
                }
            }
        }
        if read.is_ok() {
            let skipped = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&text);
            prop_assert!(skipped.is_ok(), "accepted what serde_json refuses: {}", shown);
        }
    }

    #[test]
    fn rate_limit_headers_never_panic(
        limit in ".{0,12}", remaining in ".{0,12}", reset in ".{0,12}", date in ".{0,40}",
    ) {
        let mut h = HeaderMap::new();
        for (k, v) in [("x-rate-limit-limit", &limit), ("x-rate-limit-remaining", &remaining), ("x-rate-limit-reset", &reset), ("date", &date)] {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k, v);
            }
        }
        let _ = rate_limit_wait(&h);
        if let Some(b) = Budget::from_headers(&h) {
            let _ = b.delay(0.5, Duration::ZERO);
        }
    }

    #[test]
    fn waits_stay_within_the_window(
        limit in 0u64..100_000, remaining in 0u64..100_000, window in 0u64..3_600,
        share in 0.01f64..=1.0, since_ms in 0u64..4_000_000,
    ) {
        let now = 1_700_000_000u64;
        let b = Budget { limit, remaining, reset: now + window, server_now: now };
        let d = b.delay(share, Duration::from_millis(since_ms));
        prop_assert!(d <= Duration::from_secs(window + 1), "{:?} for a {} s window", d, window);

        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-reset", HeaderValue::from(now + window));
        h.insert("date", HeaderValue::from_str(&httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(now))).unwrap());
        prop_assert_eq!(rate_limit_wait(&h), Duration::from_secs(window + 1));
    }
}
