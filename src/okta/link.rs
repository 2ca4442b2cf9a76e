//! The `Link` response header (RFC 8288), as Okta pages with it: `<url>; rel="next"`, one link
//! per header line or several joined by commas on one line.

/// The target of the first `rel="next"` link among all `Link` header values, as written.
pub fn next_link<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    values
        .into_iter()
        .flat_map(links)
        .find(|(_, rels)| {
            rels.split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case("next"))
        })
        .map(|(target, _)| target)
}

/// Splits one header value into `(target, rel)` pairs; malformed pieces are skipped.
fn links(value: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = value;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            if rest.is_empty() {
                return None;
            }
            let Some(after_lt) = rest.strip_prefix('<') else {
                // Not a link: skip to the next comma outside quotes.
                rest = &rest[param_end(rest)..];
                continue;
            };
            let Some(close) = after_lt.find('>') else {
                rest = "";
                return None;
            };
            let target = after_lt[..close].trim();
            let params_start = &after_lt[close + 1..];
            let end = param_end(params_start);
            let params = &params_start[..end];
            rest = &params_start[end..];
            let rel = params
                .split(';')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("rel"))
                .map(|(_, v)| v.trim().trim_matches('"'))
                .unwrap_or("");
            return Some((target, rel));
        }
    })
}

/// The byte offset of the first comma outside double quotes (or the end).
fn param_end(s: &str) -> usize {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => return i,
            _ => {}
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separate_lines_as_okta_sends_them() {
        let lines = [
            r#"<https://test.okta.com/api/v1/users?limit=1>; rel="self""#,
            r#"<https://test.okta.com/api/v1/users?after=000usfdsyqnIjEmHNm4x6&limit=1>; rel="next""#,
        ];
        assert_eq!(
            next_link(lines),
            Some("https://test.okta.com/api/v1/users?after=000usfdsyqnIjEmHNm4x6&limit=1")
        );
    }

    #[test]
    fn one_comma_joined_line() {
        let line =
            r#"<https://a/x?limit=1>; rel="self", <https://a/x?after=b,c&limit=1>; rel="next""#;
        assert_eq!(next_link([line]), Some("https://a/x?after=b,c&limit=1"));
    }

    #[test]
    fn unquoted_and_multi_valued_rel() {
        assert_eq!(next_link(["<u1>; rel=next"]), Some("u1"));
        assert_eq!(
            next_link([r#"<u2>; title="a, b"; rel="prev next""#]),
            Some("u2")
        );
    }

    #[test]
    fn no_next() {
        assert_eq!(next_link([r#"<https://a/x>; rel="self""#]), None);
        assert_eq!(next_link(["garbage, more garbage"]), None);
        assert_eq!(next_link(["<unterminated; rel=next"]), None);
        assert_eq!(next_link(Vec::<&str>::new()), None);
    }
}
