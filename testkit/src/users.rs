//! Deterministic, realistic Okta users.
//!
//! Every generated user has the shape of the users in the recorded Okta traffic
//! (the HTTP recordings of Okta's own SDK tests): the same top-level keys in the same order, `null` spelled
//! out for empty attributes, `credentials` and `_links.self`, plus the usual enterprise profile
//! attributes (`department`, `title`, `costCenter`, `employeeNumber`, `manager`, ...).
//!
//! Everything about user `i` is a pure function of `i` (and of the base URL used in `_links`):
//!
//! | field | value |
//! |---|---|
//! | `id` | `format!("00u{:017}", i)` (20 characters, like Okta ids) |
//! | `status` | `"ACTIVE"` |
//! | `created` | 2022-01-01T00:00:00.000Z + `i` seconds |
//! | `lastUpdated` | 2025-01-01T00:00:00.000Z + `i` seconds (strictly increasing with `i`, see [`generated_last_updated`]) |
//! | `lastLogin` | `null` when `i % 7 == 0`, else 2025-06-01T00:00:00.000Z + `i` seconds |
//! | `profile.login`, `profile.email` | `format!("user{i}@example.com")`, or with [`Logins::Realistic`] `first.last@company.com` (see [`generated_login`]) |
//! | `profile.department` | `DEPARTMENTS[i % DEPARTMENTS.len()]` |
//! | `profile.title` | `TITLES[i % TITLES.len()]` |
//! | `profile.costCenter` | `null` when `i % 5 == 0`, else `format!("CC-{}", 100 + i % 20)` |
//! | `profile.employeeNumber` | `format!("{:07}", i)` |
//! | `profile.manager` | the login of user `i / 10 * 10` |
//!
//! With [`Logins::Realistic`], `firstName`, `lastName` and `displayName` are the names in the
//! login.

use std::io::Write as _;

/// Departments cycled through by generated users (`profile.department = DEPARTMENTS[i % 6]`).
pub const DEPARTMENTS: [&str; 6] = [
    "Engineering",
    "Sales",
    "Marketing",
    "Customer Success",
    "Finance",
    "Human Resources",
];

/// Titles cycled through by generated users (`profile.title = TITLES[i % 5]`).
pub const TITLES: [&str; 5] = [
    "Software Engineer",
    "Account Executive",
    "Product Manager",
    "Support Specialist",
    "Director",
];

const FIRST_NAMES: [&str; 8] = [
    "Alice", "Ben", "Janice", "John", "Isaac", "Tony", "Maria", "Wei",
];
const LAST_NAMES: [&str; 7] = [
    "Smith", "Richler", "Benson", "Richards", "Brock", "Johnson", "Garcia",
];
/// First names of [`Logins::Realistic`] users (100, all different).
const GIVEN_NAMES: [&str; 100] = [
    "Aaron", "Abigail", "Adam", "Aisha", "Alan", "Alice", "Amelia", "Andrea", "Anna", "Arjun",
    "Ben", "Bianca", "Brian", "Camila", "Carlos", "Chen", "Chloe", "Daniel", "David", "Diego",
    "Elena", "Emily", "Emma", "Ethan", "Fatima", "Felix", "Fiona", "Gabriel", "Grace", "Hannah",
    "Hugo", "Isaac", "Isabel", "Ivan", "Jack", "Jamal", "James", "Janice", "Jasmine", "John",
    "Jose", "Julia", "Kenji", "Kevin", "Laura", "Leo", "Liam", "Lucas", "Lucy", "Maria", "Mark",
    "Maya", "Mei", "Michael", "Mohammed", "Nadia", "Nathan", "Nina", "Noah", "Olga", "Oliver",
    "Omar", "Paul", "Pedro", "Priya", "Rachel", "Rahul", "Raj", "Rosa", "Ryan", "Sakura", "Samuel",
    "Sara", "Sean", "Sofia", "Sophie", "Stefan", "Tara", "Thomas", "Tom", "Tony", "Uma", "Victor",
    "Wei", "William", "Xavier", "Yara", "Yusuf", "Zoe", "Zara", "Hiro", "Ingrid", "Kwame", "Lena",
    "Marco", "Nora", "Oscar", "Ruth", "Simon", "Wendy",
];
/// Last names of [`Logins::Realistic`] users (100, all different).
const FAMILY_NAMES: [&str; 100] = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Chen",
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Singh",
    "Kumar",
    "Patel",
    "Shah",
    "Khan",
    "Ali",
    "Kim",
    "Park",
    "Tanaka",
    "Sato",
    "Suzuki",
    "Muller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Rossi",
    "Russo",
    "Ferrari",
    "Bianchi",
    "Dubois",
    "Moreau",
    "Laurent",
    "Silva",
    "Santos",
    "Oliveira",
    "Costa",
    "Pereira",
    "Ivanov",
    "Petrov",
    "Novak",
    "Kowalski",
    "Nowak",
    "Jensen",
    "Hansen",
    "Nielsen",
    "Larsen",
    "Berg",
    "Olsen",
    "Murphy",
    "Kelly",
    "OBrien",
    "Walsh",
    "Byrne",
    "Richler",
];

/// How generated users' logins and emails are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Logins {
    /// `user{i}@example.com`: logins follow the order of the user ids.
    #[default]
    Sequential,
    /// `first.last@company.com`, as real orgs have them, in an order unrelated to the user ids:
    /// user `i` gets the name of [`realistic_rank`]`(i)`, so consecutive ids get unrelated
    /// names. A name met again gets a digit suffix (`john.smith`, `john.smith2`, ...).
    Realistic,
}

/// How many first.last pairs [`Logins::Realistic`] has.
const NAME_PAIRS: u64 = (GIVEN_NAMES.len() * FAMILY_NAMES.len()) as u64;
/// [`realistic_rank`] shuffles the indices within blocks of 2^20.
const RANK_BITS: u32 = 20;
const RANK_MASK: u64 = (1 << RANK_BITS) - 1;

/// The rank whose name user `i` gets with [`Logins::Realistic`]: a bijection of the indices
/// that shuffles each block of 2^20 (1,048,576). A bijection, so no two users get the same
/// login; within a block, so the digit suffixes stay small (at most 105 below 2^20 users).
pub fn realistic_rank(i: usize) -> u64 {
    let i = i as u64;
    let mut x = i & RANK_MASK;
    // Each step is a bijection of 20-bit values: multiplying by an odd number and adding a
    // constant (modulo 2^20), then xoring with a right shift of itself.
    for (mul, add, shift) in [
        (0x9_e377, 0x3_b5c1, 11),
        (0xd_2b75, 0x7_f4a3, 9),
        (0x4_c1f3, 0x1_9b2d, 12),
    ] {
        x = x.wrapping_mul(mul).wrapping_add(add) & RANK_MASK;
        x ^= x >> shift;
    }
    (i & !RANK_MASK) | x
}

/// The names of user `i`: first, last, and how many users before it in rank order have the
/// same pair (0 for the first; only [`Logins::Realistic`] shows it, as a suffix).
fn names(i: usize, logins: Logins) -> (&'static str, &'static str, u64) {
    match logins {
        Logins::Sequential => (
            FIRST_NAMES[i % FIRST_NAMES.len()],
            LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()],
            0,
        ),
        Logins::Realistic => {
            let rank = realistic_rank(i);
            let pair = (rank % NAME_PAIRS) as usize;
            (
                GIVEN_NAMES[pair % GIVEN_NAMES.len()],
                FAMILY_NAMES[pair / GIVEN_NAMES.len()],
                rank / NAME_PAIRS,
            )
        }
    }
}

/// The login (and email) of generated user `i`: `user{i}@example.com`, or with
/// [`Logins::Realistic`] `first.last@company.com` in lower case, with the suffix `2`, `3`, ...
/// on the second, third, ... user of a first.last pair.
pub fn generated_login(i: usize, logins: Logins) -> String {
    let mut out = Vec::with_capacity(40);
    write_login(&mut out, i, logins);
    String::from_utf8(out).unwrap_or_default()
}

const CITIES: [(&str, &str, &str, &str); 4] = [
    ("San Francisco", "CA", "94107", "US"),
    ("New York", "NY", "10001", "US"),
    ("London", "England", "EC1A 1BB", "GB"),
    ("Chicago", "IL", "60601", "US"),
];

/// 2022-01-01T00:00:00Z
const CREATED_BASE: u64 = 1_640_995_200;
/// 2025-01-01T00:00:00Z
const UPDATED_BASE: u64 = 1_735_689_600;
/// 2025-06-01T00:00:00Z
const LOGIN_BASE: u64 = 1_748_736_000;

/// The `lastUpdated` of generated user `i`, in Okta's format (`2025-01-01T00:00:00.000Z` plus
/// `i` seconds). Strictly increasing with `i`, so `lastUpdated gt "<this for k>"` selects exactly
/// the users after `k`.
pub fn generated_last_updated(i: usize) -> String {
    let mut out = Vec::with_capacity(24);
    write_timestamp(&mut out, UPDATED_BASE + i as u64);
    String::from_utf8(out).unwrap_or_default()
}

/// `lastUpdated` of generated user `i` as epoch milliseconds (used by the filter evaluator).
pub(crate) fn generated_last_updated_millis(i: usize) -> i64 {
    (UPDATED_BASE as i64 + i as i64) * 1000
}

/// `created` of generated user `i` as epoch milliseconds (used by the search evaluator).
pub(crate) fn generated_created_millis(i: usize) -> i64 {
    (CREATED_BASE as i64 + i as i64) * 1000
}

/// The `profile.<attr>` of generated user `i` for the attributes that are never null and cheap
/// to compute (`login`, `email`, `firstName`, `lastName`, `displayName`, `department`, `title`,
/// `employeeNumber`, `manager`); `None` for any other attribute (the caller then renders the
/// whole user).
pub(crate) fn generated_profile_text(i: usize, attr: &str, logins: Logins) -> Option<String> {
    let (first, last, _) = names(i, logins);
    Some(match attr {
        "login" | "email" => generated_login(i, logins),
        "firstName" => first.to_owned(),
        "lastName" => last.to_owned(),
        "displayName" => format!("{first} {last}"),
        "department" => DEPARTMENTS[i % DEPARTMENTS.len()].to_owned(),
        "title" => TITLES[i % TITLES.len()].to_owned(),
        "employeeNumber" => format!("{i:07}"),
        "manager" => generated_login(i / 10 * 10, logins),
        _ => return None,
    })
}

/// `t` in Okta's timestamp format, `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds, truncated
/// towards the past), e.g. `2026-11-28T10:00:00.000Z`. Handy with
/// [`FakeOkta::touch_user`](crate::FakeOkta::touch_user).
pub fn okta_timestamp(t: std::time::SystemTime) -> String {
    let millis: i64 = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let m = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
            -i64::try_from(m).unwrap_or(i64::MAX)
        }
    };
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Deterministic realistic Okta user (about 1 KB of JSON, same shape as the recordings:
/// id, status, created, activated, statusChanged, lastLogin, lastUpdated, passwordChanged,
/// type {id}, profile {firstName, lastName, mobilePhone: null, secondEmail: null, login, email,
/// department, title, costCenter, employeeNumber, manager, city, countryCode, ...},
/// credentials {...}, _links {self {href}}).
///
/// Index `i` -> id = `format!("00u{:017}", i)` (20 chars), login = `format!("user{i}@example.com")`,
/// status `"ACTIVE"`; department cycles through [`DEPARTMENTS`]; `lastLogin` is null for every
/// 7th user (`i % 7 == 0`); `profile.costCenter` is null for every 5th user (`i % 5 == 0`).
/// `base_url` is used in `_links`. See the module docs for every field.
pub fn generated_user(i: usize, base_url: &str) -> serde_json::Value {
    generated_user_with(i, base_url, Logins::Sequential)
}

/// [`generated_user`] with the given kind of logins.
pub fn generated_user_with(i: usize, base_url: &str, logins: Logins) -> serde_json::Value {
    let mut out = Vec::with_capacity(1200);
    write_generated_user_with(&mut out, i, base_url, logins);
    serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)
}

/// Same as [`generated_user`] but appends the JSON text straight to `out` (used to render pages
/// fast, without a `serde_json::Value` per user).
pub fn write_generated_user(out: &mut Vec<u8>, i: usize, base_url: &str) {
    write_generated_user_with(out, i, base_url, Logins::Sequential);
}

/// [`write_generated_user`] with the given kind of logins.
pub fn write_generated_user_with(out: &mut Vec<u8>, i: usize, base_url: &str, logins: Logins) {
    let n = i as u64;
    let (first, last, _) = names(i, logins);
    let (city, state, zip, country) = CITIES[i % CITIES.len()];
    let created = CREATED_BASE + n;

    out.extend_from_slice(b"{\"id\":\"");
    write_id(out, i);
    out.extend_from_slice(b"\",\"status\":\"ACTIVE\",\"created\":\"");
    write_timestamp(out, created);
    out.extend_from_slice(b"\",\"activated\":\"");
    write_timestamp(out, created + 60);
    out.extend_from_slice(b"\",\"statusChanged\":\"");
    write_timestamp(out, created + 60);
    out.extend_from_slice(b"\",\"lastLogin\":");
    if i.is_multiple_of(7) {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'"');
        write_timestamp(out, LOGIN_BASE + n);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"lastUpdated\":\"");
    write_timestamp(out, UPDATED_BASE + n);
    out.extend_from_slice(b"\",\"passwordChanged\":\"");
    write_timestamp(out, created + 3600);
    out.extend_from_slice(
        b"\",\"type\":{\"id\":\"oty1162QAr8hJjTaq0g4\"},\"profile\":{\"firstName\":\"",
    );
    out.extend_from_slice(first.as_bytes());
    out.extend_from_slice(b"\",\"lastName\":\"");
    out.extend_from_slice(last.as_bytes());
    out.extend_from_slice(b"\",\"mobilePhone\":null,\"secondEmail\":null,\"login\":\"");
    write_login(out, i, logins);
    out.extend_from_slice(b"\",\"email\":\"");
    write_login(out, i, logins);
    out.extend_from_slice(b"\",\"displayName\":\"");
    out.extend_from_slice(first.as_bytes());
    out.push(b' ');
    out.extend_from_slice(last.as_bytes());
    out.extend_from_slice(b"\",\"userType\":\"Employee\",\"organization\":\"Example Corp\",\"division\":\"R&D\",\"department\":\"");
    out.extend_from_slice(DEPARTMENTS[i % DEPARTMENTS.len()].as_bytes());
    out.extend_from_slice(b"\",\"title\":\"");
    out.extend_from_slice(TITLES[i % TITLES.len()].as_bytes());
    out.extend_from_slice(b"\",\"costCenter\":");
    if i.is_multiple_of(5) {
        out.extend_from_slice(b"null");
    } else {
        out.extend_from_slice(b"\"CC-");
        write_u64(out, 100 + n % 20);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"employeeNumber\":\"");
    write_padded(out, n, 7);
    out.extend_from_slice(b"\",\"manager\":\"");
    write_login(out, i / 10 * 10, logins);
    out.extend_from_slice(b"\",\"preferredLanguage\":\"en-US\",\"city\":\"");
    out.extend_from_slice(city.as_bytes());
    out.extend_from_slice(b"\",\"state\":\"");
    out.extend_from_slice(state.as_bytes());
    out.extend_from_slice(b"\",\"zipCode\":\"");
    out.extend_from_slice(zip.as_bytes());
    out.extend_from_slice(b"\",\"countryCode\":\"");
    out.extend_from_slice(country.as_bytes());
    out.extend_from_slice(b"\"},\"credentials\":{\"password\":{},\"emails\":[{\"value\":\"");
    write_login(out, i, logins);
    out.extend_from_slice(
        b"\",\"status\":\"VERIFIED\",\"type\":\"PRIMARY\"}],\"provider\":{\"type\":\"OKTA\",\"name\":\"OKTA\"}},\"_links\":{\"self\":{\"href\":\"",
    );
    write_json_str_content(out, base_url);
    out.extend_from_slice(b"/api/v1/users/");
    write_id(out, i);
    out.extend_from_slice(b"\"}}}");
}

fn write_id(out: &mut Vec<u8>, i: usize) {
    out.extend_from_slice(b"00u");
    write_padded(out, i as u64, 17);
}

fn write_login(out: &mut Vec<u8>, i: usize, logins: Logins) {
    match logins {
        Logins::Sequential => {
            out.extend_from_slice(b"user");
            write_u64(out, i as u64);
            out.extend_from_slice(b"@example.com");
        }
        Logins::Realistic => {
            let (first, last, repeat) = names(i, logins);
            out.extend(first.bytes().map(|b| b.to_ascii_lowercase()));
            out.push(b'.');
            out.extend(last.bytes().map(|b| b.to_ascii_lowercase()));
            if repeat > 0 {
                write_u64(out, repeat + 1);
            }
            out.extend_from_slice(b"@company.com");
        }
    }
}

/// Appends the decimal digits of `v`.
fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[pos..]);
}

/// Appends `v` left-padded with zeros to at least `width` digits.
fn write_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut digits = 1;
    let mut t = v / 10;
    while t > 0 {
        digits += 1;
        t /= 10;
    }
    for _ in digits..width {
        out.push(b'0');
    }
    write_u64(out, v);
}

/// Appends `s` escaped as the inside of a JSON string.
pub(crate) fn write_json_str_content(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
}

/// Appends `secs` (UTC epoch seconds) as `YYYY-MM-DDTHH:MM:SS.000Z`, Okta's timestamp format.
pub(crate) fn write_timestamp(out: &mut Vec<u8>, secs: u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    write_padded(out, y.max(0) as u64, 4);
    out.push(b'-');
    write_padded(out, m as u64, 2);
    out.push(b'-');
    write_padded(out, d as u64, 2);
    out.push(b'T');
    write_padded(out, rem / 3600, 2);
    out.push(b':');
    write_padded(out, rem % 3600 / 60, 2);
    out.push(b':');
    write_padded(out, rem % 60, 2);
    out.extend_from_slice(b".000Z");
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) -> days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 timestamp (`2025-01-01T00:00:00.000Z`, `...+02:00`, fractional seconds
/// optional) into UTC epoch milliseconds.
pub(crate) fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let y = num(0, 4)?;
    let mo = num(5, 7)?;
    let d = num(8, 10)?;
    let h = num(11, 13)?;
    let mi = num(14, 16)?;
    let sec = num(17, 19)?;
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut pos = 19;
    let mut millis = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == start {
            return None;
        }
        let frac = &s[start..pos.min(start + 3)];
        millis = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_secs = match b.get(pos)? {
        b'Z' | b'z' if pos + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let oh = num(pos + 1, pos + 3)?;
            let om = num(pos + 4, pos + 6)?;
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_determinism() {
        let u = generated_user(12, "http://127.0.0.1:1");
        assert_eq!(u["id"], "00u00000000000000012");
        assert_eq!(u["id"].as_str().map(str::len), Some(20));
        assert_eq!(u["status"], "ACTIVE");
        assert_eq!(u["profile"]["login"], "user12@example.com");
        assert_eq!(u["profile"]["email"], "user12@example.com");
        assert!(u["profile"]["mobilePhone"].is_null());
        assert!(u["profile"]["secondEmail"].is_null());
        assert_eq!(u["profile"]["department"], DEPARTMENTS[0]);
        assert_eq!(u["profile"]["costCenter"], "CC-112");
        assert_eq!(u["lastUpdated"], "2025-01-01T00:00:12.000Z");
        assert_eq!(u["created"], "2022-01-01T00:00:12.000Z");
        assert_eq!(
            u["_links"]["self"]["href"],
            "http://127.0.0.1:1/api/v1/users/00u00000000000000012"
        );
        assert!(generated_user(14, "x")["lastLogin"].is_null());
        assert!(generated_user(15, "x")["profile"]["costCenter"].is_null());
        assert_eq!(generated_user(1, "x")["profile"]["department"], "Sales");
        assert_eq!(generated_user(12, "http://127.0.0.1:1"), u);
        let mut buf = Vec::new();
        write_generated_user(&mut buf, 123_456, "http://127.0.0.1:12345");
        assert!(
            (900..1400).contains(&buf.len()),
            "user is {} bytes",
            buf.len()
        );
    }

    #[test]
    fn timestamps_round_trip() {
        for secs in [0u64, 951_782_400, 1_735_689_600, 4_102_444_799] {
            let mut out = Vec::new();
            write_timestamp(&mut out, secs);
            let s = String::from_utf8(out).unwrap();
            assert_eq!(parse_rfc3339_millis(&s), Some(secs as i64 * 1000), "{s}");
        }
        assert_eq!(
            parse_rfc3339_millis("2025-01-01T02:00:00.5+02:00"),
            Some(1_735_689_600_500)
        );
        assert_eq!(parse_rfc3339_millis("2025-01-01"), None);
        assert_eq!(parse_rfc3339_millis("2025-01-01T00:00:00"), None);
        assert_eq!(generated_last_updated(61), "2025-01-01T00:01:01.000Z");
    }

    #[test]
    fn okta_timestamps() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(okta_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_860_000_123) + Duration::from_micros(999);
        assert_eq!(okta_timestamp(t), "2026-11-28T10:00:00.123Z");
        assert_eq!(
            parse_rfc3339_millis(&okta_timestamp(t)),
            Some(1_795_860_000_123)
        );
        assert_eq!(
            okta_timestamp(UNIX_EPOCH - Duration::from_micros(1)),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(
            okta_timestamp(UNIX_EPOCH + Duration::from_secs(1_735_689_600)),
            generated_last_updated(0)
        );
    }

    #[test]
    fn fast_profile_fields_match_the_rendered_user() {
        for (i, logins) in [0, 1, 13, 57, 999, 123_456]
            .into_iter()
            .flat_map(|i| [(i, Logins::Sequential), (i, Logins::Realistic)])
        {
            let u = generated_user_with(i, "x", logins);
            for attr in [
                "login",
                "email",
                "firstName",
                "lastName",
                "displayName",
                "department",
                "title",
                "employeeNumber",
                "manager",
            ] {
                assert_eq!(
                    generated_profile_text(i, attr, logins).as_deref(),
                    u["profile"][attr].as_str(),
                    "{i} {attr} {logins:?}"
                );
            }
            assert_eq!(generated_profile_text(i, "costCenter", logins), None);
            assert_eq!(
                Some(generated_created_millis(i)),
                u["created"].as_str().and_then(parse_rfc3339_millis)
            );
        }
    }

    #[test]
    fn realistic_logins_are_unique_names_in_no_order() {
        let n = 300_000;
        let logins: Vec<String> = (0..n)
            .map(|i| generated_login(i, Logins::Realistic))
            .collect();
        let distinct: std::collections::HashSet<&str> = logins.iter().map(String::as_str).collect();
        assert_eq!(distinct.len(), n, "two users share a login");
        // first.last, a suffix only on repeats, all lower case.
        let u = generated_user_with(4242, "x", Logins::Realistic);
        let login = u["profile"]["login"].as_str().unwrap();
        let first = u["profile"]["firstName"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase();
        let last = u["profile"]["lastName"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase();
        let rest = login.strip_prefix(&format!("{first}.{last}")).unwrap();
        let suffix = rest.strip_suffix("@company.com").unwrap();
        assert!(
            suffix.is_empty() || suffix.parse::<u64>().unwrap() >= 2,
            "{login}"
        );
        assert_eq!(u["profile"]["email"], login);
        assert_eq!(u["credentials"]["emails"][0]["value"], login);
        assert_eq!(
            u["profile"]["manager"].as_str(),
            Some(generated_login(4240, Logins::Realistic).as_str())
        );
        // Both the unsuffixed and suffixed forms occur, and suffixes stay small.
        assert!(
            logins
                .iter()
                .any(|l| !l.split('@').next().unwrap().ends_with(char::is_numeric))
        );
        assert!(logins.iter().any(|l| l.contains("2@")));
        assert!(logins.iter().all(|l| l.len() < 40), "a long login");
        // In id order, logins go up about as often as down: the order is unrelated.
        let ups = logins.windows(2).filter(|w| w[0] < w[1]).count();
        let share = ups as f64 / (n - 1) as f64;
        assert!((0.45..0.55).contains(&share), "{share}");
        // The old generator is unchanged.
        assert_eq!(generated_login(7, Logins::Sequential), "user7@example.com");
    }
}
