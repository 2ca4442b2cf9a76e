//! Reading only what a run needs from each Okta user: a page is parsed into users that keep
//! just the attributes on the mapped paths (plus `id` and `status`), skipping the rest without
//! building it. A full user object is about 1 KB; a run reads a handful of its fields.
//!
//! Numbers keep the text Okta wrote (serde_json's `arbitrary_precision`), so a value read here
//! is the same, digit for digit, as one read by a full parse.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::mapping::AttributePath;

/// The attribute paths to keep, as a tree of object keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    /// Keep this value whole (a path ends here).
    whole: bool,
    /// The keys to look into, each once, in the order first named. A handful at most: a scan
    /// that compares lengths first beats a tree of strings here.
    children: Vec<(String, Projection)>,
}

impl Projection {
    /// Keeps everything (no projection).
    pub fn everything() -> Self {
        Projection {
            whole: true,
            children: Vec::new(),
        }
    }

    /// Keeps the values at these paths, and everything below them.
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a AttributePath>) -> Self {
        let mut root = Projection::default();
        for path in paths {
            let mut node = &mut root;
            for seg in path.as_str().split('.') {
                let at = match node.children.iter().position(|(k, _)| k == seg) {
                    Some(at) => at,
                    None => {
                        node.children.push((seg.to_owned(), Projection::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            node.whole = true;
        }
        root
    }

    /// Parses a page (a JSON array of users), keeping only the projected attributes.
    pub fn parse_page(&self, body: &[u8]) -> serde_json::Result<Vec<Value>> {
        self.parse_users(body, usize::MAX)
    }

    /// Parses a page as Okta sends it, at most `max_users` users (the request's `limit`),
    /// keeping only the projected attributes. One element too many stops the parse there: a
    /// page of tiny elements (`[0,0,0,...]`) cannot turn into millions of values.
    pub fn parse_users(&self, body: &[u8], max_users: usize) -> serde_json::Result<Vec<Value>> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let users = de.deserialize_seq(PageVisitor {
            projection: self,
            max_users,
        })?;
        de.end()?;
        Ok(users)
    }
}

struct PageVisitor<'p> {
    projection: &'p Projection,
    max_users: usize,
}

impl<'de> Visitor<'de> for PageVisitor<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of users")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut users = Vec::with_capacity(self.max_users.min(1000));
        while let Some(user) = seq.next_element_seed(self.projection)? {
            if users.len() == self.max_users {
                return Err(A::Error::custom(format_args!(
                    "more than the {} users a page may hold",
                    self.max_users
                )));
            }
            users.push(user);
        }
        Ok(users)
    }
}

impl Projection {
    /// What to keep of the value under `key` (its raw bytes), if anything.
    fn child(&self, key: &[u8]) -> Option<(&str, &Projection)> {
        self.children
            .iter()
            .find(|(k, _)| k.len() == key.len() && k.as_bytes() == key)
            .map(|(k, p)| (k.as_str(), p))
    }
}

impl<'de> DeserializeSeed<'de> for &Projection {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.whole {
            serde::Deserialize::deserialize(d)
        } else {
            d.deserialize_any(Projector(self))
        }
    }
}

/// The key under which serde_json's deserializer, built with `arbitrary_precision`, hands a
/// number to `visit_map`: a one-entry map from this key to the number's text. serde_json's own
/// `Value` reads it the same way (and so also takes an object whose first key is this for a
/// number); the unit tests below fail if serde_json ever changes it.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Builds a value, keeping only the projected keys of objects.
struct Projector<'p>(&'p Projection);

/// An object key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// An object key as the bytes it decodes to (escapes resolved), borrowed from the input when it
/// has none: looked up without building a `str`. It is still checked as a JSON string is: no
/// control character in it, and valid UTF-8 (at once when it is plain ASCII, as keys are).
struct RawKey<'de>(Cow<'de, [u8]>);

impl<'de> serde::Deserialize<'de> for RawKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawKeyVisitor;
        impl<'de> Visitor<'de> for RawKeyVisitor {
            type Value = RawKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            // As written: a control character in it is an error, as in any JSON string.
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<RawKey<'de>, E> {
                if v.iter().any(|b| *b < 0x20) {
                    return Err(E::custom("control character in an object key"));
                }
                checked_utf8(v)?;
                Ok(RawKey(Cow::Borrowed(v)))
            }
            // With its escapes resolved (they may stand for control characters).
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RawKey<'de>, E> {
                checked_utf8(v)?;
                Ok(RawKey(Cow::Owned(v.to_vec())))
            }
            // serde_json hands a number's private key to `visit_map` as a string.
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<RawKey<'de>, E> {
                Ok(RawKey(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawKey<'de>, E> {
                Ok(RawKey(Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        d.deserialize_bytes(RawKeyVisitor)
    }
}

/// Valid UTF-8, checked at once for plain ASCII.
fn checked_utf8<E: serde::de::Error>(v: &[u8]) -> Result<(), E> {
    if v.is_ascii() || std::str::from_utf8(v).is_ok() {
        Ok(())
    } else {
        Err(E::custom("invalid unicode code point in an object key"))
    }
}

impl<'de> Visitor<'de> for Projector<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut first = true;
        while let Some(RawKey(key)) = map.next_key::<RawKey<'de>>()? {
            if first && *key == *NUMBER_TOKEN.as_bytes() {
                let text: Cow<'de, str> = map.next_value::<Key<'de>>()?.0;
                return text
                    .parse::<Number>()
                    .map(Value::Number)
                    .map_err(A::Error::custom);
            }
            first = false;
            match self.0.child(&key) {
                Some((name, child)) => {
                    let value = map.next_value_seed(child)?;
                    out.insert(name.to_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    // Anything but an object is kept as it is: a path that expected an object finds nothing
    // there, exactly as it would in the whole value.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(p: &[&str]) -> Vec<AttributePath> {
        p.iter().map(|s| AttributePath::parse(s).unwrap()).collect()
    }

    #[test]
    fn keeps_only_the_projected_paths() {
        let ps = paths(&["id", "profile.login", "profile.department", "lastLogin"]);
        let proj = Projection::of(&ps);
        let body = br#"[{"id":"00u1","status":"ACTIVE","lastLogin":null,
            "profile":{"login":"a@x","department":"R&D","title":"T","mobilePhone":null},
            "credentials":{"password":{},"emails":[{"value":"a@x"}]},"_links":{"self":{"href":"h"}}},
            {"id":"00u2","profile":"not an object","lastLogin":["x"]}]"#;
        let users = proj.parse_page(body).unwrap();
        assert_eq!(
            users,
            vec![
                json!({"id":"00u1","lastLogin":null,"profile":{"login":"a@x","department":"R&D"}}),
                json!({"id":"00u2","profile":"not an object","lastLogin":["x"]}),
            ]
        );
    }

    #[test]
    fn escaped_keys_and_whole_subtrees() {
        let proj = Projection::of(&paths(&["pro\u{e9}file", "a"]));
        let users = proj
            .parse_page(br#"[{"pro\u00e9file":{"x":[1,{"y":2}]},"a":{"b":{"c":true}},"z":1}]"#)
            .unwrap();
        assert_eq!(
            users,
            vec![json!({"pro\u{e9}file":{"x":[1,{"y":2}]},"a":{"b":{"c":true}}})]
        );
    }

    /// Numbers as Okta may write them (some beyond what an `f64` or a `u64` holds exactly), and
    /// the text they are read as: every digit kept; only an exponent is written the one way
    /// serde_json writes it (`e`, with its sign).
    const LITERALS: [(&str, &str); 14] = [
        ("1.50", "1.50"),
        ("1e3", "1e+3"),
        ("1E-3", "1e-3"),
        ("1.0E10", "1.0e+10"),
        ("12345678901234567890123", "12345678901234567890123"),
        ("-0", "-0"),
        ("-0.0", "-0.0"),
        ("4.544825338742835e-116", "4.544825338742835e-116"),
        ("0.1", "0.1"),
        ("18446744073709551616", "18446744073709551616"),
        ("-9223372036854775809", "-9223372036854775809"),
        ("1e400", "1e+400"),
        ("7", "7"),
        ("-12", "-12"),
    ];

    #[test]
    fn numbers_keep_the_text_okta_wrote_on_every_path() {
        // `deep.x` expects an object at `deep` and finds a number: the projector itself reads it.
        let proj = Projection::of(&paths(&["n", "profile.t", "deep.x"]));
        for (lit, read) in LITERALS {
            let body = format!(
                r#"[{{"n":{lit},"profile":{{"t":[{lit}],"skip":{lit}}},"deep":{lit},"z":{lit}}}]"#
            );
            let full: Vec<Value> = serde_json::from_str(&body).unwrap();
            let projected = proj.parse_page(body.as_bytes()).unwrap();
            let whole = Projection::everything()
                .parse_page(body.as_bytes())
                .unwrap();
            assert_eq!(whole, full, "{lit}");
            let expected = format!(r#"[{{"deep":{read},"n":{read},"profile":{{"t":[{read}]}}}}]"#);
            assert_eq!(serde_json::to_string(&projected).unwrap(), expected);
            assert_eq!(projected[0]["deep"], full[0]["deep"], "{lit}");
        }
    }

    #[test]
    fn a_number_taken_as_text_is_sent_as_written_whichever_parser_read_it() {
        use crate::mapping::{FieldMapping, Mapping, OnNull, ValueType};
        let key = AttributePath::parse("profile.employeeNumber").unwrap();
        let mapping = Mapping::new(vec![FieldMapping {
            field: "code".into(),
            path: AttributePath::parse("profile.code").unwrap(),
            ty: ValueType::Text,
        }]);
        let proj = Projection::of(mapping.fields().iter().map(|f| &f.path).chain([&key]));
        for (lit, read) in LITERALS {
            let body = format!(r#"[{{"profile":{{"employeeNumber":{lit},"code":{lit}}}}}]"#);
            let full: Vec<Value> = serde_json::from_str(&body).unwrap();
            let projected = proj.parse_page(body.as_bytes()).unwrap();
            for user in [&full[0], &projected[0]] {
                let record = mapping.map_user(user, &key, OnNull::Skip).unwrap();
                assert_eq!(record.visitor_id, read);
                assert_eq!(record.values, vec![Some(Value::String(read.to_owned()))]);
                let mut out = Vec::new();
                mapping.write_batch(&[record], &mut out).unwrap();
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    format!(r#"[{{"visitorId":"{read}","values":{{"code":"{read}"}}}}]"#)
                );
            }
        }
    }

    #[test]
    fn keys_are_checked_as_json_strings_even_when_skipped() {
        // A key no path names is skipped with its value, but it must still be a JSON string:
        // no raw control character, valid UTF-8, no lone surrogate in its escapes.
        let proj = Projection::of(&paths(&["id", "profile.login"]));
        let bad: [&[u8]; 6] = [
            b"[{\"id\":\"a\",\"sk\x01ip\":1}]",
            b"[{\"id\":\"a\",\"profile\":{\"sk\x1fip\":1}}]",
            b"[{\"id\":\"a\",\"sk\xffip\":1}]",
            b"[{\"id\":\"a\",\"profile\":{\"\xc3\":1}}]",
            b"[{\"id\":\"a\",\"sk\\ud800ip\":1}]",
            b"[{\"id\":\"a\",\"sk\\u00e9\xffip\":1}]",
        ];
        for body in bad {
            assert!(
                serde_json::from_slice::<Value>(body).is_err(),
                "a full parse refuses it too: {}",
                String::from_utf8_lossy(body)
            );
            assert!(
                proj.parse_page(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Escapes and non-ASCII keys that are fine stay fine, kept or skipped.
        let body = "[{\"id\":\"a\",\"cl\u{e9}\":1,\"\\u00e9t\\u00e9\":2,\"tab\\tkey\":3,\"profile\":{\"log\\u0069n\":\"\u{e9}\"}}]";
        assert_eq!(
            proj.parse_page(body.as_bytes()).unwrap(),
            vec![json!({"id": "a", "profile": {"login": "\u{e9}"}})]
        );
    }

    #[test]
    fn bad_pages_are_errors() {
        let proj = Projection::everything();
        assert!(proj.parse_page(br#"{"errorCode":"E0000009"}"#).is_err());
        assert!(proj.parse_page(br#"[{"id":"#).is_err());
        assert!(proj.parse_page(br#"[] trailing"#).is_err());
        assert_eq!(proj.parse_page(b"[]").unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn a_page_holds_no_more_users_than_its_limit() {
        // Two hundred thousand elements: refused at the 201st, not read to the end.
        let numbers = format!("[{}0]", "0,".repeat(200_000));
        for proj in [Projection::everything(), Projection::of(&paths(&["id"]))] {
            let e = proj.parse_users(numbers.as_bytes(), 200).unwrap_err();
            assert!(e.to_string().contains("more than the 200 users"), "{e}");
            assert_eq!(e.column(), 403, "refused at the 201st element: {e}");
            let three = br#"[{"id":"a"},"not an object",{"id":"c"}]"#;
            assert_eq!(proj.parse_users(three, 3).unwrap().len(), 3);
            let e = proj.parse_users(three, 2).unwrap_err();
            assert!(e.to_string().contains("more than the 2 users"), "{e}");
        }
    }
}
