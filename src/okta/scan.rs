//! One pass over a page's JSON text that notes where the projected values of each user are,
//! and checks the whole page on the way as strictly as serde_json does: what it accepts,
//! serde_json accepts, and a page serde_json reads whole, it reads.
//!
//! - Every string: no raw control character, only valid escapes (`\u` with four hex digits).
//! - The keys of the objects a projection looks into (the user, `profile`...) are decoded
//!   and must be valid text: UTF-8, no lone surrogate in their escapes.
//! - A kept value is checked as a full parse checks it (UTF-8, and surrogate escapes in pairs
//!   and 128 levels of nesting at most when it has escapes or nesting), since it is read so
//!   later; skipped strings are not decoded (as serde_json skips them).
//! - Numbers follow JSON's grammar; `true`, `false` and `null` are spelled out; nothing
//!   follows the page but whitespace.
//!
//! It exists because it is several times cheaper than driving serde_json's deserializer
//! through a projection (most of an Okta user is keys and short strings, and serde_json pays
//! per token); serde_json stays the reference its tests hold it to.

use std::fmt;

use super::projection::{Node, Span};

/// Why a page is not a JSON array of users, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError {
    what: String,
    line: usize,
    column: usize,
}

impl PageError {
    #[cold]
    pub(super) fn new(what: impl Into<String>, text: &[u8], at: usize) -> Self {
        let before = text.get(..at).unwrap_or(text);
        let line = 1 + before.iter().filter(|b| **b == b'\n').count();
        let column = 1 + before.iter().rev().take_while(|b| **b != b'\n').count();
        PageError {
            what: what.into(),
            line,
            column,
        }
    }

    /// The 1-based line of the byte where the page went wrong.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The 1-based column (in bytes) of the byte where the page went wrong.
    pub fn column(&self) -> usize {
        self.column
    }
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

impl std::error::Error for PageError {}

/// Reads `text`, a JSON array of at most `max_users` users, noting the spans of what `root`
/// keeps: `slots` spans per user, appended to `spans`. Returns how many users there are.
pub(super) fn scan_page(
    text: &[u8],
    root: &Node,
    slots: usize,
    spans: &mut Vec<Span>,
    max_users: usize,
) -> Result<usize, PageError> {
    let mut s = Scanner {
        text,
        at: 0,
        key: Vec::new(),
        open: Vec::new(),
    };
    s.whitespace();
    s.expect(b'[', "expected a JSON array of users")?;
    s.whitespace();
    let mut count = 0;
    if s.peek() == Some(b']') {
        s.at += 1;
    } else {
        loop {
            s.whitespace();
            if count == max_users {
                return Err(s.error(format!("more than the {max_users} users a page may hold")));
            }
            let first = spans.len();
            spans.resize(first + slots, Span::default());
            s.node(root, &mut spans[first..])?;
            count += 1;
            s.whitespace();
            match s.next() {
                Some(b',') => {}
                Some(b']') => break,
                Some(_) => return Err(s.error_before("expected `,` or `]`")),
                None => return Err(s.error("EOF while parsing a list")),
            }
        }
    }
    s.whitespace();
    if s.at < text.len() {
        return Err(s.error("trailing characters"));
    }
    Ok(count)
}

/// The byte offset in `text` of a 1-based line and column (as serde_json counts them).
fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let line_start = match line.checked_sub(2) {
        // After the (line - 1)-th newline.
        Some(newlines_before) => text
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(newlines_before)
            .map_or(0, |(i, _)| i + 1),
        None => 0,
    };
    (line_start + column.saturating_sub(1)).min(text.len())
}

struct Scanner<'t> {
    text: &'t [u8],
    at: usize,
    /// A key with escapes, decoded.
    key: Vec<u8>,
    /// The arrays (`[`) and objects (`{`) open around the value being skipped.
    open: Vec<u8>,
}

/// Bytes that end the plain run of a string: `"`, `\`, and the control characters.
const fn string_stop(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// A mask with the high bit of the first byte of `word` (little-endian) that stops a string
/// set (bits above it may be set too).
fn stops_in(word: u64) -> u64 {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control
}

/// Where the plain run of a string that starts at `at` ends: the first `"`, `\` or control
/// character (or, with `ascii`, also the first byte beyond ASCII), or the end of the text.
/// Eight bytes at a time.
#[inline(always)]
fn plain_run_end(text: &[u8], mut at: usize, ascii: bool) -> usize {
    let beyond = if ascii { HIGHS } else { 0 };
    while let Some(chunk) = text.get(at..at + 8) {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or_default());
        let stops = stops_in(word) | (word & beyond);
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = text.get(at) {
        if string_stop(b) || (ascii && !b.is_ascii()) {
            return at;
        }
        at += 1;
    }
    text.len()
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    #[cold]
    fn error(&self, what: impl Into<String>) -> PageError {
        PageError::new(what, self.text, self.at)
    }

    /// An error about the byte just read.
    #[cold]
    fn error_before(&self, what: impl Into<String>) -> PageError {
        PageError::new(what, self.text, self.at.saturating_sub(1))
    }

    #[inline(always)]
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<(), PageError> {
        match self.next() {
            Some(found) if found == b => Ok(()),
            Some(_) => Err(self.error_before(what)),
            None => Err(self.error(what)),
        }
    }

    /// Reads the value at a node of the projection: a kept value's span is noted; an object
    /// is looked into; anything else is skipped (the paths through it find nothing).
    fn node(&mut self, node: &Node, spans: &mut [Span]) -> Result<(), PageError> {
        self.whitespace();
        if let Some(slot) = node.slot {
            let start = self.at;
            self.skip_value()?;
            self.check_kept(start)?;
            if let Some(span) = spans.get_mut(slot) {
                *span = Span {
                    start,
                    end: self.at,
                };
            }
            return Ok(());
        }
        // Met again (a repeated key): its last value is the one that counts.
        if let Some(below) = spans.get_mut(node.slots.clone()) {
            below.fill(Span::default());
        }
        if self.peek() != Some(b'{') {
            return self.skip_value();
        }
        self.at += 1;
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.whitespace();
            let child = self.key(node)?;
            self.whitespace();
            self.expect(b':', "expected `:`")?;
            match child {
                Some(child) => self.node(child, spans)?,
                None => self.skip_value()?,
            }
            self.whitespace();
            match self.next() {
                Some(b',') => {}
                Some(b'}') => return Ok(()),
                Some(_) => return Err(self.error_before("expected `,` or `}`")),
                None => return Err(self.error("EOF while parsing an object")),
            }
        }
    }

    /// A kept value (from `start` to here) must read as a full parse reads it, since it is
    /// read so later: valid UTF-8 and, when it has escapes or nesting, what serde_json's own
    /// parse checks there (a surrogate escape comes in a pair, 128 levels of nesting at most).
    fn check_kept(&self, start: usize) -> Result<(), PageError> {
        let kept = &self.text[start..self.at];
        let plain = !matches!(kept.first(), Some(b'[' | b'{')) && !kept.contains(&b'\\');
        if plain {
            if !kept.is_ascii() && std::str::from_utf8(kept).is_err() {
                return Err(PageError::new(
                    "invalid unicode code point",
                    self.text,
                    start,
                ));
            }
            return Ok(());
        }
        match serde_json::from_slice::<serde_json::Value>(kept) {
            Ok(_) => Ok(()),
            Err(e) => {
                let full = e.to_string();
                let place = format!(" at line {} column {}", e.line(), e.column());
                let what = full.strip_suffix(&place).unwrap_or(&full).to_owned();
                let at = start + offset_of(kept, e.line(), e.column());
                Err(PageError::new(what, self.text, at))
            }
        }
    }

    /// Reads an object key and finds what `node` keeps under it.
    fn key<'n>(&mut self, node: &'n Node) -> Result<Option<&'n Node>, PageError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("key must be a string"));
        }
        self.at += 1;
        let start = self.at;
        let end = plain_run_end(self.text, start, true);
        match self.text.get(end) {
            Some(b'"') => {
                self.at = end + 1;
                Ok(node.child(&self.text[start..end]))
            }
            Some(_) => self.decoded_key(node, start),
            None => {
                self.at = end;
                Err(self.error("EOF while parsing a string"))
            }
        }
    }

    /// A key with escapes or beyond ASCII: decoded, and checked as text.
    fn decoded_key<'n>(
        &mut self,
        node: &'n Node,
        start: usize,
    ) -> Result<Option<&'n Node>, PageError> {
        self.at = start;
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        let found = loop {
            match self.next() {
                None => break Err(self.error("EOF while parsing a string")),
                Some(b'"') => break Ok(()),
                Some(b'\\') => {
                    if let Err(e) = self.escape_into(&mut key) {
                        break Err(e);
                    }
                }
                Some(b) if b < 0x20 => {
                    break Err(self.error_before(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
                Some(b) => key.push(b),
            }
        };
        let child = match found {
            Ok(()) if std::str::from_utf8(&key).is_ok() => Ok(node.child(&key)),
            Ok(()) => Err(PageError::new(
                "invalid unicode code point",
                self.text,
                start,
            )),
            Err(e) => Err(e),
        };
        self.key = key;
        child
    }

    /// Decodes the escape after a `\` in a key, as serde_json reads a string's: a surrogate
    /// must come in a pair.
    fn escape_into(&mut self, out: &mut Vec<u8>) -> Result<(), PageError> {
        let decoded = match self.next() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let first = self.hex4()?;
                let code = match first {
                    0xD800..=0xDBFF => {
                        if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                            return Err(self.error("unexpected end of hex escape"));
                        }
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(self.error("lone leading surrogate in hex escape"));
                        }
                        0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.error("lone leading surrogate in hex escape"));
                    }
                    n => u32::from(n),
                };
                char::from_u32(code).ok_or_else(|| self.error("invalid unicode code point"))?
            }
            Some(_) => return Err(self.error_before("invalid escape")),
            None => return Err(self.error("EOF while parsing a string")),
        };
        let mut buf = [0; 4];
        out.extend_from_slice(decoded.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Result<u16, PageError> {
        let Some(digits) = self.text.get(self.at..self.at + 4) else {
            self.at = self.text.len();
            return Err(self.error("EOF while parsing a string"));
        };
        let mut n: u16 = 0;
        for d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid escape")),
            };
            n = n << 4 | u16::from(v);
        }
        self.at += 4;
        Ok(n)
    }

    /// Skips a string after its opening quote, checking it as serde_json skips one.
    #[inline(always)]
    fn skip_string(&mut self) -> Result<(), PageError> {
        loop {
            self.at = plain_run_end(self.text, self.at, false);
            match self.next() {
                Some(b'"') => return Ok(()),
                Some(b'\\') => match self.next() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => {
                        self.hex4()?;
                    }
                    Some(_) => return Err(self.error_before("invalid escape")),
                    None => return Err(self.error("EOF while parsing a string")),
                },
                Some(_) => {
                    return Err(self.error_before(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// Skips a number, checking JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn skip_number(&mut self) -> Result<(), PageError> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next() {
            Some(b'0') => {
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error_before("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), PageError> {
        for &expected in word {
            match self.next() {
                Some(b) if b == expected => {}
                Some(_) => return Err(self.error_before("expected ident")),
                None => return Err(self.error("EOF while parsing a value")),
            }
        }
        Ok(())
    }

    /// Skips an object key and its colon, after the object's `{` or a `,`.
    fn skip_key(&mut self) -> Result<(), PageError> {
        self.whitespace();
        if self.peek() != Some(b'"') {
            return Err(self.error("key must be a string"));
        }
        self.at += 1;
        self.skip_string()?;
        self.whitespace();
        self.expect(b':', "expected `:`")
    }

    /// Skips one value, however deep, checking it. Nested arrays and objects are followed on
    /// a stack of their own, so that no depth of nesting can overflow the call stack.
    fn skip_value(&mut self) -> Result<(), PageError> {
        self.open.clear();
        loop {
            self.whitespace();
            match self.peek() {
                None => return Err(self.error("EOF while parsing a value")),
                Some(b'"') => {
                    self.at += 1;
                    self.skip_string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.skip_number()?,
                Some(b'n') => self.literal(b"null")?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(open @ (b'[' | b'{')) => {
                    self.at += 1;
                    self.whitespace();
                    let close = if open == b'[' { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.at += 1;
                    } else {
                        self.open.push(open);
                        if open == b'{' {
                            self.skip_key()?;
                        }
                        continue;
                    }
                }
                Some(_) => return Err(self.error("expected value")),
            }
            // A value is complete: close what it completes, up to the next value.
            loop {
                let Some(&open) = self.open.last() else {
                    return Ok(());
                };
                self.whitespace();
                match (self.next(), open) {
                    (Some(b','), b'{') => {
                        self.skip_key()?;
                        break;
                    }
                    (Some(b','), _) => break,
                    (Some(b'}'), b'{') | (Some(b']'), b'[') => {
                        self.open.pop();
                    }
                    (None, b'{') => return Err(self.error("EOF while parsing an object")),
                    (None, _) => return Err(self.error("EOF while parsing a list")),
                    (Some(_), b'{') => return Err(self.error_before("expected `,` or `}`")),
                    (Some(_), _) => return Err(self.error_before("expected `,` or `]`")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde::de::IgnoredAny;
    use serde_json::Value;

    use crate::mapping::AttributePath;
    use crate::okta::projection::{Field, Projection, Users};

    /// Values serde_json may accept or refuse, each met where the scan skips it, keeps it, and
    /// looks into it: the scan must agree with serde_json every time.
    const VALUES: &[&[u8]] = &[
        b"0",
        b"-0",
        b"01",
        b"-",
        b"-01",
        b"1.",
        b".5",
        b"1.5",
        b"1e",
        b"1e+",
        b"1E5",
        b"1e-07",
        b"0.0e-0",
        b"1.e3",
        b"-1.5E+10",
        b"2x",
        b"+1",
        b"1_000",
        b"tru",
        b"true",
        b"nul",
        b"null",
        b"nulll",
        b"falsy",
        b"false",
        b"\"\"",
        b"\"a\\u12\"",
        b"\"a\\u12g4\"",
        b"\"\\x\"",
        b"\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
        b"\"\\ud800\"",
        b"\"\\udc00\\ud800\"",
        b"\"\\ud83d\\ude00\"",
        b"\"a\x01\"",
        b"\"a\x1f\"",
        b"\"a\x7f\"",
        b"\"\xc3\xa9\"",
        b"\"\xff\"",
        b"\"\xc3\"",
        b"\"unterminated",
        b"[",
        b"[1,]",
        b"[,1]",
        b"[1 2]",
        b"[[[]]]",
        b"[[[",
        b"]",
        b"{",
        b"{}",
        b"{\"a\":1,}",
        b"{\"a\" 1}",
        b"{1:2}",
        b"{\"a\":}",
        b"{\"a\":1 \"b\":2}",
        b"{\"a\":[1,{\"b\":null}],\"c\":\"d\"}",
        b"{\"\\ud800\":1}",
        b"{\"\xff\":1}",
        b"{\"a\x01\":1}",
        b"{\"a\\u0001\":1}",
        b"{\"a\":1}}",
        b"",
        b" ",
        b"\t\r\n 1 \n",
        b"{\"b\":1,\"b\":{\"c\":2}}",
        b"{\"b\":{\"c\":2},\"b\":3}",
    ];

    fn page(value: &[u8], at: &str) -> Vec<u8> {
        let mut text = b"[{\"id\":1,".to_vec();
        text.extend_from_slice(format!("\"{at}\":").as_bytes());
        text.extend_from_slice(value);
        text.extend_from_slice(b"},2]");
        text
    }

    #[test]
    fn the_scan_agrees_with_serde_json_value_by_value() {
        let paths: Vec<AttributePath> = ["kept", "b.c"]
            .iter()
            .map(|p| AttributePath::parse(p).unwrap())
            .collect();
        let projection = Arc::new(Projection::of(&paths));
        for value in VALUES {
            for at in ["skipped", "kept", "b"] {
                let text = page(value, at);
                let shown = String::from_utf8_lossy(&text).into_owned();
                let read = Users::parse(&projection, text.clone(), 10);
                let skipped = serde_json::from_slice::<Vec<IgnoredAny>>(&text);
                let whole = serde_json::from_slice::<Vec<Value>>(&text);
                if read.is_ok() {
                    assert!(skipped.is_ok(), "accepted what serde_json refuses: {shown}");
                }
                match &whole {
                    Ok(whole) => {
                        let users = read.unwrap_or_else(|e| panic!("{e}: {shown}"));
                        for path in &paths {
                            let got = match users.iter().next().unwrap().get(&users.locate(path)) {
                                Field::Absent => None,
                                Field::Raw(raw) => {
                                    Some(serde_json::from_str::<Value>(raw).unwrap())
                                }
                                Field::Value(v) => Some(v),
                            };
                            assert_eq!(got.as_ref(), path.lookup(&whole[0]), "{path} in {shown}");
                        }
                    }
                    // A skipped value is checked exactly as serde_json checks what it skips
                    // (its strings are not decoded); a kept one must also be UTF-8, and the
                    // keys of an object looked into must be text.
                    Err(_) if at == "skipped" => {
                        assert_eq!(read.is_ok(), skipped.is_ok(), "{shown}");
                    }
                    // A kept value is checked as a full parse checks it.
                    Err(_) if at == "kept" => assert!(read.is_err(), "{shown}"),
                    Err(_) => {}
                }
            }
        }
    }

    #[test]
    fn errors_say_where() {
        let projection = Arc::new(Projection::everything());
        let e = Users::parse(&projection, b"[1,\n  01]".to_vec(), 10).unwrap_err();
        assert_eq!((e.line(), e.column()), (2, 4), "{e}");
        assert_eq!(e.to_string(), "invalid number at line 2 column 4");
        let e = Users::parse(&projection, b"[1] x".to_vec(), 10).unwrap_err();
        assert_eq!(e.to_string(), "trailing characters at line 1 column 5");
        let e = Users::parse(&projection, b"[\"a\x01\"]".to_vec(), 10).unwrap_err();
        assert!(e.to_string().starts_with("control character"), "{e}");
        // A misspelt literal is named where it goes wrong, as serde_json names it.
        for text in [&br#"[{"e":"v","a":t}]"#[..], b"[nul]", b"[fals,1]"] {
            let e = Users::parse(&projection, text.to_vec(), 10).unwrap_err();
            let full = serde_json::from_slice::<Value>(text).unwrap_err();
            assert_eq!(e.to_string(), full.to_string());
        }
        let e = Users::parse(&projection, b"[tru".to_vec(), 10).unwrap_err();
        assert!(
            e.to_string().starts_with("EOF while parsing a value"),
            "{e}"
        );
        let e = Users::parse(&projection, b"[\"a\x01\"]".to_vec(), 10).unwrap_err();
        assert!(e.to_string().starts_with("control character"), "{e}");
        // A kept value is read later as a full parse reads it: refused now if it cannot be.
        let kept = Arc::new(Projection::of(&[AttributePath::parse("a").unwrap()]));
        let e = Users::parse(&kept, br#"[{"b":1,"a":"x\ud800y"}]"#.to_vec(), 10).unwrap_err();
        let full = serde_json::from_slice::<Value>(br#"[{"b":1,"a":"x\ud800y"}]"#).unwrap_err();
        assert_eq!(e.to_string(), full.to_string(), "where a full parse says");
        let deep = [
            &b"[{\"a\":"[..],
            &b"[".repeat(200),
            &b"]".repeat(200),
            b"}]",
        ]
        .concat();
        let e = Users::parse(&kept, deep, 10).unwrap_err();
        assert!(e.to_string().starts_with("recursion limit exceeded"), "{e}");
        let fine = br#"[{"a":"x\ud83d\ude00y","b":[[1]]},{"a":[[{"c":"\u00e9"}]]}]"#;
        assert_eq!(Users::parse(&kept, fine.to_vec(), 10).unwrap().len(), 2);
        // However deep, a value skipped is skipped without recursion.
        let deep = [
            &b"[{\"z\":"[..],
            &b"[".repeat(100_000),
            &b"]".repeat(100_000),
            b"}]",
        ]
        .concat();
        assert_eq!(Users::parse(&kept, deep, 10).unwrap().len(), 1);
    }
}
