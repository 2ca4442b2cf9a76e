//! Reading one table of the merged configuration key by key. Each value is taken once; a wrong
//! one becomes a [`Problem`] under its dotted key and reading goes on; whatever is left at the
//! end is an unknown key. One reader per kind of value: [`Section::take`] (anything serde
//! reads), [`Section::choice`] (one of a few names), [`Section::bounded`] (an integer in a
//! range), [`Section::duration`], [`Section::list`] and [`Section::secret`]; and one way to
//! fall back to a default or to call a key required: only when its value was absent, never
//! when it was there and wrong (that is reported already).

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Map, Value, ValueKind};
use secrecy::zeroize;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::{KEYS, Problem};

/// The longest duration any key accepts: longer is a typo, and would overflow timers.
const MAX_DURATION: Duration = Duration::from_secs(400 * 24 * 3600);

/// A setting written as one of a few names (`sync.on_null`, `log.format`, `pendo.region`, ...).
pub(super) trait Choice: Copy + 'static {
    /// Every value, in the order a message lists them.
    const ALL: &'static [Self];
    /// What a message calls the setting when it lists many names ("unknown region \"x\": use
    /// us, ..."); without it, the message is "must be \"a\" or \"b\", not \"x\"".
    const NOUN: Option<&'static str> = None;
    /// The name the file writes.
    fn name(self) -> &'static str;
}

/// Reads `raw` as one of `T`'s names; the error lists the names allowed.
pub(super) fn choose<T: Choice>(raw: &str) -> Result<T, String> {
    if let Some(value) = T::ALL.iter().copied().find(|v| v.name() == raw) {
        return Ok(value);
    }
    let names = T::ALL.iter().map(|v| v.name());
    Err(match T::NOUN {
        Some(noun) => format!("unknown {noun} \"{raw}\": use {}", or_list(names)),
        None => format!(
            "must be {}, not \"{raw}\"",
            or_list(names.map(|n| format!("\"{n}\"")))
        ),
    })
}

/// `a`, `a or b`, `a, b or c`.
fn or_list<T: Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    match items.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A secret sent in an HTTP header (a token, a key): printable ASCII only.
pub(super) fn header_secret(text: &str) -> Result<SecretString, String> {
    if text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        Ok(SecretString::from(text.to_owned()))
    } else {
        Err("contains characters that cannot be sent in an HTTP header".into())
    }
}

/// " (set in the environment)" for a value that came from there, else nothing.
pub(super) fn origin_note(value: &Value) -> &'static str {
    match value.origin() {
        Some(o) if o.contains("environment") => " (set in the environment)",
        _ => "",
    }
}

/// A table being taken apart key by key, with the problems found in it.
pub(super) struct Section {
    name: String,
    table: Map<String, Value>,
    problems: Vec<Problem>,
}

impl Section {
    /// Takes the table `name` out of `root`; absent, it reads as empty.
    pub(super) fn new(root: &mut Map<String, Value>, name: &str) -> Self {
        Section::of(name.to_owned(), root.remove(name))
    }

    fn of(name: String, value: Option<Value>) -> Self {
        let mut section = Section {
            name,
            table: Map::new(),
            problems: Vec::new(),
        };
        match value.map(|v| v.kind) {
            None => {}
            Some(ValueKind::Table(table)) => section.table = table,
            Some(_) => section.problems.push(Problem {
                key: section.name.clone(),
                message: "must be a table".into(),
            }),
        }
        section
    }

    /// The table `name` inside this one (`[okta.oauth]`), if the file has it.
    pub(super) fn subsection(&mut self, name: &str) -> Option<Section> {
        let value = self.table.remove(name)?;
        Some(Section::of(self.key(name), Some(value)))
    }

    /// Adds the problems of a subsection, its unknown keys among them.
    pub(super) fn absorb(&mut self, inner: Section) {
        self.problems.extend(inner.finish());
    }

    /// The dotted key, e.g. `okta.page_size`.
    pub(super) fn key(&self, key: &str) -> String {
        format!("{}.{}", self.name, key)
    }

    /// Records "`key`: `message`".
    pub(super) fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: self.key(key),
            message: message.into(),
        });
    }

    /// Whether a problem with `key` is on the list already.
    fn reported(&self, key: &str) -> bool {
        let key = self.key(key);
        self.problems.iter().any(|p| p.key == key)
    }

    /// Whether the table has `key`, without taking it.
    pub(super) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Records an error as a problem with `key`.
    pub(super) fn check<T>(&mut self, key: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.problem(key, message)).ok()
    }

    /// A key without a value: `default`, unless its value was there and wrong.
    pub(super) fn defaulted<T>(&self, key: &str, default: T) -> Option<T> {
        (!self.reported(key)).then_some(default)
    }

    /// `value`, or "`key`: `message`" when it is missing, unless its value was there and wrong.
    pub(super) fn required<T>(&mut self, key: &str, value: Option<T>, message: &str) -> Option<T> {
        if value.is_none() && !self.reported(key) {
            self.problem(key, message);
        }
        value
    }

    /// Removes a key's value. Every key the loader asks for must be listed in [`KEYS`] (a
    /// key inside an array of tables without its index: `notify.webhook.url`).
    fn remove(&mut self, key: &str) -> Option<Value> {
        debug_assert!(
            KEYS.contains(&without_indexes(&self.key(key)).as_str()),
            "{} is missing from config::KEYS",
            self.key(key)
        );
        self.table.remove(key)
    }

    /// The array of tables `name` inside this one (`[[notify.webhook]]`), each table a section
    /// named with its place counted from 1 (`notify.webhook[1]`); empty when absent, `None`
    /// when it is not an array of tables (recorded).
    pub(super) fn tables(&mut self, name: &str) -> Option<Vec<Section>> {
        let Some(value) = self.table.remove(name) else {
            return Some(Vec::new());
        };
        let items = match value.kind {
            ValueKind::Array(items) => items,
            _ => {
                let message = format!(
                    "must be an array of tables: write [[{}]] tables in the file (they cannot be \
                     set from the environment)",
                    self.key(name)
                );
                self.problem(name, message);
                return None;
            }
        };
        let key = self.key(name);
        Some(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| Section::of(format!("{key}[{}]", i + 1), Some(item)))
                .collect(),
        )
    }

    /// Takes a value; absent or of the wrong type (recorded), `None`.
    pub(super) fn take<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.remove(key)?;
        let origin = origin_note(&value);
        match T::deserialize(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(key, format!("{}{origin}", type_message(&e)));
                None
            }
        }
    }

    /// Takes a value, or `default` when the key is absent.
    pub(super) fn take_or<T: DeserializeOwned>(&mut self, key: &str, default: T) -> Option<T> {
        match self.take(key) {
            Some(v) => Some(v),
            None => self.defaulted(key, default),
        }
    }

    /// One of `T`'s names, or `default` when the key is absent.
    pub(super) fn choice<T: Choice>(&mut self, key: &str, default: T) -> Option<T> {
        match self.take::<String>(key) {
            Some(raw) => self.check(key, choose(&raw)),
            None => self.defaulted(key, default),
        }
    }

    /// An integer within `range`, or `default` when the key is absent.
    pub(super) fn bounded<T: TryFrom<i64>>(
        &mut self,
        key: &str,
        default: i64,
        range: RangeInclusive<i64>,
    ) -> Option<T> {
        let n = self.take_or(key, default)?;
        match T::try_from(n) {
            Ok(v) if range.contains(&n) => Some(v),
            _ => {
                let (min, max) = range.into_inner();
                self.problem(key, format!("must be between {min} and {max}, not {n}"));
                None
            }
        }
    }

    /// A duration written like `"500ms"`, `"30s"`, `"5m"` or `"1h 30m"`, more than zero and at
    /// most 400 days; or `default` when the key is absent.
    pub(super) fn duration(&mut self, key: &str, default: Duration) -> Option<Duration> {
        let Some(raw) = self.take::<String>(key) else {
            return self.defaulted(key, default);
        };
        let parsed = match humantime::parse_duration(raw.trim()) {
            Ok(d) if d > MAX_DURATION => Err(format!("\"{raw}\" is longer than 400 days")),
            Ok(d) if d.is_zero() => Err("must be more than zero".into()),
            Ok(d) => Ok(d),
            Err(e) => Err(format!(
                "\"{raw}\" is not a duration like \"30s\", \"5m\" or \"500ms\": {e}"
            )),
        };
        self.check(key, parsed)
    }

    /// A list of strings, given as a TOML array or, from the environment, comma-separated;
    /// `None` when absent or wrong (recorded).
    pub(super) fn list(&mut self, key: &str) -> Option<Vec<String>> {
        let value = self.remove(key)?;
        let items = match value.kind {
            ValueKind::String(text) => Ok(text
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()),
            ValueKind::Array(values) => values
                .into_iter()
                .map(|v| match v.kind {
                    ValueKind::String(x) if !x.trim().is_empty() => Ok(x.trim().to_owned()),
                    _ => Err("every entry must be a non-empty string".to_owned()),
                })
                .collect(),
            _ => Err("must be a list of strings".into()),
        };
        self.check(key, items)
    }

    /// A secret given inline (`key`) or in a file (`key_file`), exactly one of them, trimmed,
    /// then read by `parse`. No message quotes the value, `parse`'s errors included.
    pub(super) fn secret<T, E: std::fmt::Display>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let file_key = format!("{key}_file");
        let inline = match self.remove(key).map(|v| v.kind) {
            None => None,
            Some(ValueKind::String(s)) => Some(SecretString::from(s)),
            Some(_) => {
                self.problem(key, "must be a string (value not shown)");
                None
            }
        };
        let file: Option<PathBuf> = self.take(&file_key);
        let (from, raw) = match (inline, file) {
            (Some(_), Some(_)) => {
                let both = format!(
                    "set either {} or {}, not both",
                    self.key(key),
                    self.key(&file_key)
                );
                self.problem(key, both);
                return None;
            }
            (Some(s), None) => (key, s),
            (None, Some(path)) => match read_secret_file(&path) {
                Ok(s) if s.expose_secret().trim().is_empty() => {
                    self.problem(&file_key, format!("{} is empty", path.display()));
                    return None;
                }
                Ok(s) => (file_key.as_str(), s),
                Err(message) => {
                    self.problem(&file_key, message);
                    return None;
                }
            },
            (None, None) => {
                let message = format!("is required (or {})", self.key(&file_key));
                return self.required(key, None, &message);
            }
        };
        let text = raw.expose_secret().trim();
        if text.is_empty() {
            self.problem(from, "is empty");
            return None;
        }
        let parsed = parse(text).map_err(|why| format!("{why} (value not shown)"));
        self.check(from, parsed)
    }

    /// The problems found, then one for each key nobody asked for.
    pub(super) fn finish(self) -> Vec<Problem> {
        let mut problems = self.problems;
        for (key, value) in self.table {
            problems.push(Problem {
                key: format!("{}.{key}", self.name),
                message: format!("unknown key{}", origin_note(&value)),
            });
        }
        problems
    }
}

/// A dotted key without the indexes of arrays of tables: `notify.webhook[2].url` reads
/// `notify.webhook.url`.
fn without_indexes(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

/// The largest secret file read: a PEM key is a few KiB, a token far less.
pub(super) const MAX_SECRET_FILE: usize = 64 * 1024;

/// Reads a secret file (`*_file`): a regular file of at most [`MAX_SECRET_FILE`] bytes of
/// UTF-8. It is opened without waiting (a FIFO would block until a writer came) and its type
/// is checked on the open file, so a FIFO, a device such as `/dev/zero` or a folder is refused
/// before anything is read. The bytes go into one buffer allocated once, wiped when dropped;
/// the text is handed back as a [`SecretString`], wiped alike. Errors name the path, never
/// the content.
pub(crate) fn read_secret_file(path: &Path) -> Result<SecretString, String> {
    use std::io::Read;
    use zeroize::Zeroizing;

    let shown = path.display();
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    #[cfg(not(unix))]
    {
        // No way to open without blocking: look before opening.
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("{shown} is {}", not_regular(&meta.file_type())));
        }
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is {}", not_regular(&meta.file_type())));
    }
    let too_large = || {
        format!(
            "{shown} is larger than {} KiB, too large for a secret file (one token or key)",
            MAX_SECRET_FILE / 1024
        )
    };
    if meta.len() > MAX_SECRET_FILE as u64 {
        return Err(too_large());
    }
    // One byte more than allowed, to tell a file that grew past the cap since it was looked at.
    let mut buf = Zeroizing::new(vec![0u8; MAX_SECRET_FILE + 1]);
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read {shown}: {e}")),
        }
    }
    if len > MAX_SECRET_FILE {
        return Err(too_large());
    }
    let text = std::str::from_utf8(&buf[..len])
        .map_err(|_| format!("cannot read {shown}: it is not UTF-8 text"))?;
    Ok(SecretString::from(text.to_owned()))
}

/// "a FIFO", "a device", ...: what a path that is not a regular file is.
fn not_regular(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO, not a regular file";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device, not a regular file";
        }
        if kind.is_socket() {
            return "a socket, not a regular file";
        }
    }
    if kind.is_dir() {
        "a folder, not a regular file"
    } else {
        "not a regular file"
    }
}

/// The config crate's type errors name the key and value; keep only what went wrong.
fn type_message(e: &config::ConfigError) -> String {
    match e {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Two {
        A,
        B,
    }

    impl Choice for Two {
        const ALL: &'static [Self] = &[Two::A, Two::B];
        fn name(self) -> &'static str {
            match self {
                Two::A => "a",
                Two::B => "b",
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Many(&'static str);

    impl Choice for Many {
        const ALL: &'static [Self] = &[Many("x"), Many("y"), Many("z")];
        const NOUN: Option<&'static str> = Some("letter");
        fn name(self) -> &'static str {
            self.0
        }
    }

    fn section(name: &str, toml: &str) -> Section {
        let root = config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize::<Map<String, Value>>()
            .unwrap();
        Section::of(name.into(), Some(Value::new(None, root)))
    }

    #[test]
    fn choices_name_what_is_allowed() {
        assert_eq!(choose::<Two>("b"), Ok(Two::B));
        assert_eq!(
            choose::<Two>("c").unwrap_err(),
            "must be \"a\" or \"b\", not \"c\""
        );
        assert_eq!(choose::<Many>("z"), Ok(Many("z")));
        assert_eq!(
            choose::<Many>("Z").unwrap_err(),
            "unknown letter \"Z\": use x, y or z"
        );
    }

    #[test]
    fn defaults_only_for_absent_keys() {
        let mut s = section("okta", "page_size = \"many\"\nrequest_timeout = 3\n");
        // Wrong: no default, and one problem.
        assert_eq!(s.bounded::<u32>("page_size", 200, 1..=200), None);
        assert_eq!(s.duration("request_timeout", Duration::from_secs(1)), None);
        // Absent: the default.
        let connect = s.duration("connect_timeout", Duration::from_secs(1));
        assert_eq!(connect, Some(Duration::from_secs(1)));
        assert_eq!(s.take_or("filter", "x".to_owned()), Some("x".to_owned()));
        let problems = s.finish();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["okta.page_size", "okta.request_timeout"],
            "{problems:?}"
        );
    }

    #[test]
    fn bounded_integers_say_their_range() {
        let mut s = section("pendo", "batch_size = 0\nconcurrency = 5000000000\n");
        assert_eq!(s.bounded::<u32>("batch_size", 500, 1..=10_000), None);
        // In the range but not in the type: refused alike.
        assert_eq!(s.bounded::<u32>("concurrency", 4, 1..=i64::MAX), None);
        let problems = s.finish();
        assert_eq!(problems[0].message, "must be between 1 and 10000, not 0");
        assert_eq!(
            problems[1].message,
            format!("must be between 1 and {}, not 5000000000", i64::MAX)
        );
    }

    /// Reads `okta.api_token_file = path` and returns the one problem it draws, if any.
    fn secret_file_problem(path: &Path) -> Option<Problem> {
        let toml = format!("api_token_file = \"{}\"\n", path.display());
        let mut s = section("okta", &toml);
        let token = s.secret("api_token", header_secret);
        let problems = s.finish();
        assert_eq!(token.is_some(), problems.is_empty(), "{problems:?}");
        assert!(problems.len() <= 1, "{problems:?}");
        problems.into_iter().next()
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_are_regular_files_only() {
        // A device: refused without reading (read, /dev/zero would fill the memory).
        let p = secret_file_problem(Path::new("/dev/zero")).unwrap();
        assert_eq!(p.key, "okta.api_token_file");
        assert_eq!(p.message, "/dev/zero is a device, not a regular file");

        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            secret_file_problem(dir.path()).unwrap().message,
            format!("{} is a folder, not a regular file", dir.path().display())
        );

        let fifo = dir.path().join("token.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // A writer that opens the FIFO and closes it at once: a reader that waited for one
        // would see it end empty (and not hang the test); a reader that never waits does not
        // need it, and a reader opened below lets it go.
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(fifo).map(drop))
        };
        let p = secret_file_problem(&fifo).unwrap();
        assert_eq!(
            p.message,
            format!("{} is a FIFO, not a regular file", fifo.display())
        );
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _release = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&fifo)
                .unwrap();
            writer.join().unwrap().unwrap();
        }
    }

    #[test]
    fn secret_files_are_capped_at_64_kib() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        // At the cap: read whole (a long token is still a token).
        std::fs::write(&path, "a".repeat(MAX_SECRET_FILE)).unwrap();
        assert!(secret_file_problem(&path).is_none());
        // One byte more: refused, naming the key and the path, not the content.
        std::fs::write(&path, "a".repeat(MAX_SECRET_FILE + 1)).unwrap();
        let p = secret_file_problem(&path).unwrap();
        assert_eq!(p.key, "okta.api_token_file");
        assert_eq!(
            p.message,
            format!(
                "{} is larger than 64 KiB, too large for a secret file (one token or key)",
                path.display()
            )
        );
    }

    #[test]
    fn required_only_when_not_reported() {
        let mut s = section("okta", "org_url = [1]\n");
        let url = s.take::<String>("org_url");
        assert_eq!(s.required("org_url", url, "is required"), None);
        let filter = s.take::<String>("filter");
        assert_eq!(s.required("filter", filter, "is required"), None);
        let problems = s.finish();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["okta.org_url", "okta.filter"], "{problems:?}");
        assert!(problems[0].message.starts_with("expected"), "{problems:?}");
        assert_eq!(problems[1].message, "is required");
    }
}
