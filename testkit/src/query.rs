//! Okta `filter` and `search` expressions for `GET /api/v1/users`: parsing and evaluation.
//!
//! Grammar (recursive descent; `and` binds tighter than `or`; `and`, `or` and the operators
//! are case-insensitive; property names are case-sensitive; values are double-quoted strings,
//! `\` escapes the next character):
//!
//! ```text
//! expr    := and_expr ( "or" and_expr )*
//! and_expr:= primary ( "and" primary )*
//! primary := "(" expr ")" | property operator "value"
//! ```
//!
//! What each mode accepts, as Okta documents it:
//!
//! * `filter`: `eq` on `status`, `id`, `profile.login`, `profile.email`, `profile.firstName`,
//!   `profile.lastName`; `eq`/`gt`/`ge`/`lt`/`le` on `lastUpdated`. Values compare
//!   case-sensitively.
//! * `search`: `eq`/`gt`/`ge`/`lt`/`le` on `id`, `status`, `created`, `activated`,
//!   `statusChanged`, `lastUpdated`; `eq` on `type.id`; `eq`/`sw` on any `profile.*` attribute
//!   (plus `co` on `profile.firstName`, `profile.lastName`, `profile.email`, `profile.login`).
//!   String values compare case-insensitively; an array attribute matches when one element
//!   does.
//!
//! Timestamp properties compare as instants (the value must be RFC 3339). Anything else is
//! rejected, which the server answers 400 E0000031 "Invalid search criteria.".

use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;

use serde_json::Value;

use crate::users::{
    Logins, generated_created_millis, generated_last_updated_millis, generated_profile_text,
    generated_user_with, parse_rfc3339_millis,
};

/// Which query parameter an expression comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Filter,
    Search,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Cond(Condition),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// One comparison `property operator "value"`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    prop: Prop,
    op: Op,
    value: String,
    /// The value as epoch milliseconds, for timestamp properties.
    millis: Option<i64>,
    /// Whether string values compare case-insensitively (search).
    ignore_case: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Prop {
    Id,
    Status,
    Created,
    Activated,
    StatusChanged,
    LastUpdated,
    TypeId,
    Profile(String),
}

impl Prop {
    fn parse(name: &str) -> Option<Prop> {
        Some(match name {
            "id" => Prop::Id,
            "status" => Prop::Status,
            "created" => Prop::Created,
            "activated" => Prop::Activated,
            "statusChanged" => Prop::StatusChanged,
            "lastUpdated" => Prop::LastUpdated,
            "type.id" => Prop::TypeId,
            _ => {
                let attr = name.strip_prefix("profile.")?;
                let valid = !attr.is_empty()
                    && attr
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !valid {
                    return None;
                }
                Prop::Profile(attr.to_owned())
            }
        })
    }

    fn is_time(&self) -> bool {
        matches!(
            self,
            Prop::Created | Prop::Activated | Prop::StatusChanged | Prop::LastUpdated
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
    Sw,
    Co,
}

impl Op {
    fn parse(word: &str) -> Option<Op> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "sw" => Op::Sw,
            "co" => Op::Co,
            _ => return None,
        })
    }

    fn is_order(self) -> bool {
        matches!(self, Op::Eq | Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }

    /// Whether `ordering` (subject vs value) satisfies an ordering operator.
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Sw | Op::Co => false,
        }
    }
}

/// Whether Okta accepts `op` on `prop` in `mode`.
fn allowed(mode: Mode, prop: &Prop, op: Op) -> bool {
    const NAMES: [&str; 4] = ["login", "email", "firstName", "lastName"];
    match mode {
        Mode::Filter => match prop {
            Prop::LastUpdated => op.is_order(),
            Prop::Id | Prop::Status => op == Op::Eq,
            Prop::Profile(a) => op == Op::Eq && NAMES.contains(&a.as_str()),
            _ => false,
        },
        Mode::Search => match prop {
            Prop::Profile(a) => {
                matches!(op, Op::Eq | Op::Sw) || (op == Op::Co && NAMES.contains(&a.as_str()))
            }
            Prop::TypeId => op == Op::Eq,
            _ => op.is_order(),
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Str(String),
    Open,
    Close,
}

/// Splits an expression into words, quoted strings and parentheses.
fn tokenize(expr: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' {
            chars.next();
            tokens.push(Token::Open);
        } else if c == ')' {
            chars.next();
            tokens.push(Token::Close);
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => s.push(chars.next()?),
                    other => s.push(other),
                }
            }
            tokens.push(Token::Str(s));
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || matches!(c, '"' | '(' | ')') {
                    break;
                }
                s.push(c);
                chars.next();
            }
            tokens.push(Token::Word(s));
        }
    }
    Some(tokens)
}

/// Deepest parenthesis nesting accepted (keeps the recursion bounded).
const MAX_DEPTH: usize = 32;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    mode: Mode,
    depth: usize,
}

impl Parser {
    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Option<Expr> {
        let mut terms = vec![self.and()?];
        while self.peek_keyword("or") {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Some(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Option<Expr> {
        let mut terms = vec![self.primary()?];
        while self.peek_keyword("and") {
            self.pos += 1;
            terms.push(self.primary()?);
        }
        Some(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn primary(&mut self) -> Option<Expr> {
        match self.next()? {
            Token::Open => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                let e = self.or()?;
                if self.next()? != Token::Close {
                    return None;
                }
                self.depth -= 1;
                Some(e)
            }
            Token::Word(name) => {
                let prop = Prop::parse(&name)?;
                let Token::Word(op) = self.next()? else {
                    return None;
                };
                let op = Op::parse(&op)?;
                let Token::Str(value) = self.next()? else {
                    return None;
                };
                if !allowed(self.mode, &prop, op) {
                    return None;
                }
                let millis = if prop.is_time() {
                    Some(parse_rfc3339_millis(&value)?)
                } else {
                    None
                };
                Some(Expr::Cond(Condition {
                    prop,
                    op,
                    value,
                    millis,
                    ignore_case: self.mode == Mode::Search,
                }))
            }
            Token::Str(_) | Token::Close => None,
        }
    }
}

/// Parses a `filter` or `search` expression; `None`: Okta's "Invalid search criteria.".
pub(crate) fn parse(expr: &str, mode: Mode) -> Option<Expr> {
    let mut p = Parser {
        tokens: tokenize(expr)?,
        pos: 0,
        mode,
        depth: 0,
    };
    let e = p.or()?;
    (p.pos == p.tokens.len()).then_some(e)
}

/// The user an expression is evaluated against.
pub(crate) enum Subject<'a> {
    /// A generated user not modified: common fields are computed, the rest rendered on demand.
    Generated {
        index: usize,
        base_url: &'a str,
        logins: Logins,
        full: OnceCell<Value>,
    },
    /// A user as JSON (explicit or modified).
    Json(&'a Value),
}

impl<'a> Subject<'a> {
    pub(crate) fn generated(index: usize, base_url: &'a str, logins: Logins) -> Subject<'a> {
        Subject::Generated {
            index,
            base_url,
            logins,
            full: OnceCell::new(),
        }
    }

    /// Whether the user's `status` is `DEPROVISIONED` (generated users are all `ACTIVE`).
    pub(crate) fn is_deprovisioned(&self) -> bool {
        match self {
            Subject::Generated { .. } => false,
            Subject::Json(v) => v.get("status").and_then(Value::as_str) == Some("DEPROVISIONED"),
        }
    }

    fn json(&self) -> &Value {
        match self {
            Subject::Generated {
                index,
                base_url,
                logins,
                full,
            } => full.get_or_init(|| generated_user_with(*index, base_url, *logins)),
            Subject::Json(v) => v,
        }
    }

    fn millis(&self, prop: &Prop) -> Option<i64> {
        if let Subject::Generated { index, .. } = self {
            match prop {
                Prop::LastUpdated => return Some(generated_last_updated_millis(*index)),
                Prop::Created => return Some(generated_created_millis(*index)),
                _ => {}
            }
        }
        node(self.json(), prop)?
            .as_str()
            .and_then(parse_rfc3339_millis)
    }

    /// Whether `test` holds for the property's text (for an array, for one of its elements).
    fn any_text(&self, prop: &Prop, test: &dyn Fn(&str) -> bool) -> bool {
        if let Subject::Generated { index, logins, .. } = self {
            let fast = match prop {
                Prop::Status => Some("ACTIVE".to_owned()),
                Prop::Id => Some(format!("00u{index:017}")),
                Prop::Profile(a) => generated_profile_text(*index, a, *logins),
                _ => None,
            };
            if let Some(s) = fast {
                return test(&s);
            }
        }
        match node(self.json(), prop) {
            Some(Value::Array(items)) => items
                .iter()
                .any(|x| scalar_text(x).is_some_and(|s| test(&s))),
            Some(x) => scalar_text(x).is_some_and(|s| test(&s)),
            None => false,
        }
    }
}

fn node<'v>(v: &'v Value, prop: &Prop) -> Option<&'v Value> {
    match prop {
        Prop::Id => v.get("id"),
        Prop::Status => v.get("status"),
        Prop::Created => v.get("created"),
        Prop::Activated => v.get("activated"),
        Prop::StatusChanged => v.get("statusChanged"),
        Prop::LastUpdated => v.get("lastUpdated"),
        Prop::TypeId => v.get("type")?.get("id"),
        Prop::Profile(a) => v.get("profile")?.get(a),
    }
}

fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

fn lower(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

impl Condition {
    fn text_matches(&self, s: &str) -> bool {
        let v = self.value.as_str();
        match (self.op, self.ignore_case) {
            (Op::Eq, false) => s == v,
            (Op::Eq, true) => lower(s).eq(lower(v)),
            (Op::Sw, false) => s.starts_with(v),
            (Op::Sw, true) => {
                let mut hay = lower(s);
                lower(v).all(|c| hay.next() == Some(c))
            }
            (Op::Co, false) => s.contains(v),
            (Op::Co, true) => s.to_lowercase().contains(&v.to_lowercase()),
            (op, false) => op.holds(s.cmp(v)),
            (op, true) => op.holds(lower(s).cmp(lower(v))),
        }
    }

    fn matches(&self, user: &Subject<'_>) -> bool {
        match self.millis {
            Some(t) => user
                .millis(&self.prop)
                .is_some_and(|v| self.op.holds(v.cmp(&t))),
            None => user.any_text(&self.prop, &|s| self.text_matches(s)),
        }
    }
}

impl Expr {
    /// Whether `user` satisfies the expression.
    pub(crate) fn matches(&self, user: &Subject<'_>) -> bool {
        match self {
            Expr::Cond(c) => c.matches(user),
            Expr::And(terms) => terms.iter().all(|t| t.matches(user)),
            Expr::Or(terms) => terms.iter().any(|t| t.matches(user)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::generated_last_updated;
    use serde_json::json;

    fn cond(prop: Prop, op: Op, value: &str, millis: Option<i64>, ignore_case: bool) -> Expr {
        Expr::Cond(Condition {
            prop,
            op,
            value: value.to_owned(),
            millis,
            ignore_case,
        })
    }

    #[test]
    fn grammar_and_precedence() {
        assert_eq!(
            parse(r#"status eq "ACTIVE""#, Mode::Filter),
            Some(cond(Prop::Status, Op::Eq, "ACTIVE", None, false))
        );
        let ts = "2025-01-01T00:00:00.000Z";
        let lu = || {
            cond(
                Prop::LastUpdated,
                Op::Gt,
                ts,
                Some(1_735_689_600_000),
                false,
            )
        };
        let st = |s: &str| cond(Prop::Status, Op::Eq, s, None, false);
        // and binds tighter than or.
        assert_eq!(
            parse(
                &format!(r#"lastUpdated gt "{ts}" and status eq "A" or status eq "B""#),
                Mode::Filter
            ),
            Some(Expr::Or(vec![Expr::And(vec![lu(), st("A")]), st("B")]))
        );
        assert_eq!(
            parse(
                &format!(r#"lastUpdated GT "{ts}" AND (status EQ "A" Or status eq "B")"#),
                Mode::Filter
            ),
            Some(Expr::And(vec![lu(), Expr::Or(vec![st("A"), st("B")])]))
        );
        assert_eq!(
            parse(
                &format!(r#"((status eq "A"))and(lastUpdated gt "{ts}")"#),
                Mode::Filter
            ),
            Some(Expr::And(vec![st("A"), lu()]))
        );
        assert!(parse(r#"lastUpdated ge "2025-01-01T00:00:00Z""#, Mode::Filter).is_some());
        assert!(parse(r#"profile.login eq "a@b.c""#, Mode::Filter).is_some());
        assert!(parse(r#"id eq "00u1""#, Mode::Filter).is_some());
        let deep = format!("{}status eq \"A\"{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(parse(&deep, Mode::Search), None);
        for bad in [
            "",
            "()",
            "status",
            r#"status eq ACTIVE"#,
            r#"status gt "ACTIVE""#,
            r#"profile.department eq "Sales""#,
            r#"profile.login sw "a""#,
            r#"created gt "2025-01-01T00:00:00.000Z""#,
            r#"lastUpdated gt "yesterday""#,
            r#"status eq "ACTIVE" and"#,
            r#"status eq "ACTIVE" or"#,
            r#"status eq "ACTIVE"#,
            r#"(status eq "ACTIVE""#,
            r#"status eq "ACTIVE")"#,
            r#"status eq "A" status eq "B""#,
            r#"not status eq "A""#,
            r#"Status eq "A""#,
        ] {
            assert_eq!(parse(bad, Mode::Filter), None, "{bad}");
        }
        for ok in [
            r#"profile.department eq "Sales""#,
            r#"profile.login sw "user1""#,
            r#"profile.firstName co "li""#,
            r#"created lt "2014-01-01T00:00:00.000Z""#,
            r#"profile.department eq "Engineering" and (created lt "2014-01-01T00:00:00.000Z" or status eq "ACTIVE")"#,
            r#"(status lt "STAGED" or status gt "STAGED")"#,
            r#"type.id eq "oty1""#,
        ] {
            assert!(parse(ok, Mode::Search).is_some(), "{ok}");
        }
        for bad in [
            r#"profile.department co "x""#,
            r#"profile.department gt "x""#,
            r#"created gt "x""#,
            r#"profile. eq "x""#,
        ] {
            assert_eq!(parse(bad, Mode::Search), None, "{bad}");
        }
    }

    fn matching(expr: &str, mode: Mode, users: &[Value]) -> Vec<usize> {
        let e = parse(expr, mode).unwrap();
        (0..users.len())
            .filter(|&i| e.matches(&Subject::Json(&users[i])))
            .collect()
    }

    fn matching_generated(expr: &str, mode: Mode, n: usize) -> Vec<usize> {
        let e = parse(expr, mode).unwrap();
        (0..n)
            .filter(|&i| e.matches(&Subject::generated(i, "http://x", Logins::Sequential)))
            .collect()
    }

    #[test]
    fn evaluation_on_generated_users() {
        let at40 = generated_last_updated(40);
        assert_eq!(
            matching_generated(&format!(r#"lastUpdated gt "{at40}""#), Mode::Filter, 100),
            (41..100).collect::<Vec<_>>()
        );
        assert_eq!(
            matching_generated(&format!(r#"lastUpdated ge "{at40}""#), Mode::Filter, 100),
            (40..100).collect::<Vec<_>>()
        );
        assert!(matching_generated(r#"status eq "STAGED""#, Mode::Filter, 50).is_empty());
        assert_eq!(
            matching_generated(r#"status eq "active""#, Mode::Search, 3),
            vec![0, 1, 2]
        );
        assert!(matching_generated(r#"status eq "active""#, Mode::Filter, 3).is_empty());
        assert_eq!(
            matching_generated(r#"profile.login eq "user7@example.com""#, Mode::Filter, 20),
            vec![7]
        );
        let realistic = crate::users::generated_login(7, Logins::Realistic);
        let e = parse(&format!(r#"profile.login eq "{realistic}""#), Mode::Filter).unwrap();
        let found: Vec<usize> = (0..20)
            .filter(|&i| e.matches(&Subject::generated(i, "http://x", Logins::Realistic)))
            .collect();
        assert_eq!(found, vec![7]);
        assert_eq!(
            matching_generated(r#"id eq "00u00000000000000003""#, Mode::Filter, 20),
            vec![3]
        );
        assert_eq!(
            matching_generated(r#"profile.department eq "SALES""#, Mode::Search, 14),
            vec![1, 7, 13]
        );
        // costCenter is not a fast field: the user is rendered.
        assert_eq!(
            matching_generated(r#"profile.costCenter eq "CC-101""#, Mode::Search, 30),
            vec![1, 21]
        );
        assert_eq!(
            matching_generated(
                r#"created lt "2022-01-01T00:00:03.000Z" and profile.login sw "USER""#,
                Mode::Search,
                10
            ),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn evaluation_on_json_users() {
        let users = vec![
            json!({"id": "a", "status": "STAGED", "lastUpdated": "2020-08-27T18:16:00.000Z",
                   "profile": {"login": "a@x", "firstName": "Alice", "tags": ["red", "blue"], "n": 5}}),
            json!({"id": "b", "status": "ACTIVE", "lastUpdated": "2022-05-05T18:15:44.000Z",
                   "profile": {"login": "b@x", "firstName": "Ben"}}),
            json!({"id": "c", "status": "STAGED"}),
            json!({"id": "d", "status": "DEPROVISIONED", "lastUpdated": "not a time"}),
        ];
        assert_eq!(
            matching(r#"status eq "STAGED""#, Mode::Filter, &users),
            vec![0, 2]
        );
        assert_eq!(
            matching(
                r#"lastUpdated gt "2021-01-01T00:00:00+01:00""#,
                Mode::Filter,
                &users
            ),
            vec![1]
        );
        assert_eq!(
            matching(
                r#"status eq "ACTIVE" or lastUpdated lt "2021-01-01T00:00:00.000Z""#,
                Mode::Filter,
                &users
            ),
            vec![0, 1]
        );
        assert_eq!(
            matching(r#"profile.tags eq "BLUE""#, Mode::Search, &users),
            vec![0]
        );
        assert_eq!(
            matching(r#"profile.n eq "5""#, Mode::Search, &users),
            vec![0]
        );
        assert_eq!(
            matching(r#"profile.firstName co "LI""#, Mode::Search, &users),
            vec![0]
        );
        assert_eq!(
            matching(
                r#"status lt "STAGED" or status gt "STAGED""#,
                Mode::Search,
                &users
            ),
            vec![1, 3]
        );
        assert!(Subject::Json(&users[3]).is_deprovisioned());
        assert!(!Subject::Json(&users[0]).is_deprovisioned());
        assert!(!Subject::generated(0, "x", Logins::Sequential).is_deprovisioned());
    }
}
