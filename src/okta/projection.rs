//! Reading only what a run needs from each Okta user. A page is parsed once, and for each user
//! the projection notes where, in the page's text, the value at each mapped path is (plus `id`
//! and `status`); everything else is skipped without being built. Nothing is copied out of
//! the page: a full user is about 1 KB, a run reads a handful of its values, and it reads them
//! as the JSON text Okta wrote (numbers digit for digit).
//!
//! The page is read in one pass by [`scan`](super::scan), which checks it as strictly as
//! serde_json does (its syntax, every string's escapes and control characters, the keys it
//! looks up, and what is kept as a full parse checks it); a value found here reads the same as
//! in a full parse.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use super::scan::PageError;
use super::scan::scan_page;
use crate::mapping::{AttributePath, lookup_in};

/// The attribute paths to keep, as a tree of object keys. Each kept value has a slot: its
/// place among a user's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    root: Node,
    /// How many values each user keeps.
    slots: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Node {
    /// Keep this value whole, in this slot (a path ends here; a longer path through it is read
    /// from it).
    pub(super) slot: Option<usize>,
    /// The keys to look into, each once, in the order first named. A handful at most: a scan
    /// that compares lengths first beats a tree of strings here.
    children: Vec<(Box<str>, Node)>,
    /// The slots at and below this node. A key met twice in an object counts as its last
    /// value, as in a full parse: meeting the node again clears them first.
    pub(super) slots: Range<usize>,
}

/// Where a path's value is among a user's kept values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// In this slot.
    Slot(usize),
    /// Below the value in this slot, at these keys (a path through a value kept whole).
    Within(usize, Box<[Box<str>]>),
    /// Nowhere: the projection does not read this path.
    NotRead,
}

impl Projection {
    /// Keeps everything: each user whole, in slot 0.
    pub fn everything() -> Self {
        Projection {
            root: Node {
                slot: Some(0),
                children: Vec::new(),
                slots: 0..1,
            },
            slots: 1,
        }
    }

    /// Keeps the values at these paths, and everything below them.
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a AttributePath>) -> Self {
        let mut root = Node::default();
        for path in paths {
            let mut node = &mut root;
            for seg in path.segments() {
                let at = match node.children.iter().position(|(k, _)| k == seg) {
                    Some(at) => at,
                    None => {
                        node.children.push((seg.clone(), Node::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            node.slot = Some(0);
        }
        let slots = root.number(0);
        Projection { root, slots }
    }

    /// Where the value at `path` is kept.
    pub fn locate(&self, path: &AttributePath) -> Locator {
        let segments = path.segments();
        let mut node = &self.root;
        for (i, seg) in segments.iter().enumerate() {
            if let Some(slot) = node.slot {
                return Locator::Within(slot, segments[i..].into());
            }
            match node.children.iter().find(|(k, _)| k == seg) {
                Some((_, child)) => node = child,
                None => return Locator::NotRead,
            }
        }
        node.slot.map_or(Locator::NotRead, Locator::Slot)
    }
}

impl Node {
    /// Numbers the kept values below this node in order from `next`, dropping the paths below
    /// a value kept whole; returns the next free slot.
    fn number(&mut self, next: usize) -> usize {
        let end = if self.slot.is_some() {
            self.children.clear();
            self.slot = Some(next);
            next + 1
        } else {
            self.children
                .iter_mut()
                .fold(next, |at, (_, child)| child.number(at))
        };
        self.slots = next..end;
        end
    }

    /// What to keep of the value under `key` (its raw bytes), if anything.
    pub(super) fn child(&self, key: &[u8]) -> Option<&Node> {
        self.children
            .iter()
            .find(|(k, _)| k.as_bytes() == key)
            .map(|(_, n)| n)
    }
}

/// Where a kept value is in the page's text; empty when the user has none there (a JSON value
/// is never empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) end: usize,
}

/// The users of one page, read through a projection: the page's text, and for each user where
/// each of its kept values is in it.
#[derive(Debug)]
pub struct Users {
    projection: Arc<Projection>,
    body: Vec<u8>,
    /// `projection.slots` spans per user.
    spans: Vec<Span>,
    count: usize,
}

/// A kept value of one user.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'u> {
    /// The user has no value there.
    Absent,
    /// The JSON text of the value, as the page has it.
    Raw(&'u str),
    /// The value, read out of a larger value kept whole.
    Value(Value),
}

impl<'u> Field<'u> {
    /// The value as text, when it is a JSON string (its escapes resolved; borrowed from the
    /// page when it has none).
    pub fn text(self) -> Option<Cow<'u, str>> {
        match self {
            Field::Raw(raw) => match raw_str(raw) {
                Some(text) => Some(Cow::Borrowed(text)),
                None if raw.starts_with('"') => serde_json::from_str(raw).ok().map(Cow::Owned),
                None => None,
            },
            Field::Value(Value::String(s)) => Some(Cow::Owned(s)),
            Field::Value(_) | Field::Absent => None,
        }
    }
}

/// The text of a JSON string literal that has no escapes: it reads as it is written.
pub fn raw_str(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// One user of a page.
#[derive(Debug, Clone, Copy)]
pub struct User<'u> {
    users: &'u Users,
    spans: &'u [Span],
}

impl Users {
    /// Parses a page as Okta sends it (a JSON array of users), at most `max_users` users (the
    /// request's `limit`), noting where the projected values are. One element too many stops
    /// the parse there: a page of tiny elements (`[0,0,0,...]`) cannot turn into millions of
    /// users.
    pub fn parse(
        projection: &Arc<Projection>,
        body: Vec<u8>,
        max_users: usize,
    ) -> Result<Self, PageError> {
        let mut spans = Vec::with_capacity(projection.slots * max_users.min(1000));
        let count = scan_page(
            &body,
            &projection.root,
            projection.slots,
            &mut spans,
            max_users,
        )?;
        Ok(Users {
            projection: projection.clone(),
            body,
            spans,
            count,
        })
    }

    /// Users given as values, read through `projection` as a page holding them would be.
    pub fn of_values(projection: &Arc<Projection>, users: &[Value]) -> Result<Self, PageError> {
        let text = serde_json::to_vec(users)
            .map_err(|e| PageError::new(format!("cannot write the users: {e}"), b"", 0))?;
        Users::parse(projection, text, users.len())
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Where the value at `path` is kept.
    pub fn locate(&self, path: &AttributePath) -> Locator {
        self.projection.locate(path)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = User<'_>> {
        let per_user = self.projection.slots;
        (0..self.count).map(move |i| User {
            users: self,
            spans: &self.spans[i * per_user..(i + 1) * per_user],
        })
    }

    /// Each user as a value holding what was kept of it; an object on the way to a kept value
    /// is there when something below it was kept.
    pub fn values(&self) -> Vec<Value> {
        self.iter().map(|u| u.to_value()).collect()
    }
}

impl<'u> User<'u> {
    /// The JSON text in `slot`, if the user has a value there.
    pub fn raw(&self, slot: usize) -> Option<&'u str> {
        let span = *self.spans.get(slot)?;
        if span.start == span.end {
            return None;
        }
        // The scan checked it as UTF-8 already: this only makes it a `str`, and cannot fail.
        std::str::from_utf8(self.users.body.get(span.start..span.end)?).ok()
    }

    /// The value `at` (found by [`Users::locate`]).
    pub fn get(&self, at: &Locator) -> Field<'u> {
        match at {
            Locator::Slot(slot) => self.raw(*slot).map_or(Field::Absent, Field::Raw),
            Locator::Within(slot, rest) => self
                .raw(*slot)
                .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
                .and_then(|whole| lookup_in(&whole, rest).cloned())
                .map_or(Field::Absent, Field::Value),
            Locator::NotRead => Field::Absent,
        }
    }

    /// What was kept of this user, as a value.
    pub fn to_value(&self) -> Value {
        self.value_of(&self.users.projection.root)
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    fn value_of(&self, node: &Node) -> Option<Value> {
        if let Some(slot) = node.slot {
            return serde_json::from_str(self.raw(slot)?).ok();
        }
        let object: Map<String, Value> = node
            .children
            .iter()
            .filter_map(|(k, child)| Some((k.to_string(), self.value_of(child)?)))
            .collect();
        (!object.is_empty()).then_some(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(p: &[&str]) -> Vec<AttributePath> {
        p.iter().map(|s| AttributePath::parse(s).unwrap()).collect()
    }

    trait ParsePage {
        fn parse_page(&self, body: &[u8]) -> Result<Vec<Value>, PageError>;
        fn parse_users(&self, body: &[u8], max: usize) -> Result<Users, PageError>;
    }

    impl ParsePage for Projection {
        /// What a page keeps, as values.
        fn parse_page(&self, body: &[u8]) -> Result<Vec<Value>, PageError> {
            Ok(self.parse_users(body, usize::MAX)?.values())
        }
        fn parse_users(&self, body: &[u8], max: usize) -> Result<Users, PageError> {
            Users::parse(&Arc::new(self.clone()), body.to_vec(), max)
        }
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
                // A path through what is not an object finds nothing.
                json!({"id":"00u2","lastLogin":["x"]}),
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
            let expected = format!(r#"[{{"n":{read},"profile":{{"t":[{read}]}}}}]"#);
            assert_eq!(serde_json::to_string(&projected).unwrap(), expected);
            let users = proj.parse_users(body.as_bytes(), 1).unwrap();
            let user = users.iter().next().unwrap();
            let n = users.locate(&paths(&["n"])[0]);
            assert_eq!(user.get(&n), Field::Raw(lit), "the text as Okta wrote it");
            let deep = users.locate(&paths(&["deep.x"])[0]);
            assert_eq!(user.get(&deep), Field::Absent);
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
            let users = proj.parse_users(body.as_bytes(), 1).unwrap();
            let at = mapping.locate(&users, &key);
            let from_page = mapping.map(&users.iter().next().unwrap(), &at, OnNull::Skip);
            for record in [mapping.map_user(&full[0], &key, OnNull::Skip), from_page] {
                let record = record.unwrap();
                assert_eq!(record.visitor_id, read);
                let mut out = Vec::new();
                crate::mapping::write_batch(&[record], &mut out);
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
            assert_eq!(
                e.column(),
                402,
                "refused where the 201st element starts: {e}"
            );
            let three = br#"[{"id":"a"},"not an object",{"id":"c"}]"#;
            assert_eq!(proj.parse_users(three, 3).unwrap().len(), 3);
            let e = proj.parse_users(three, 2).unwrap_err();
            assert!(e.to_string().contains("more than the 2 users"), "{e}");
        }
    }
}
