//! Configuration errors, and the map from a TOML document back to the lines an
//! administrator sees.
//!
//! Every error names the file, the line and the key, because the reader is someone
//! editing `/etc/calltap/calltap.toml` over ssh, not a Rust programmer. Syntax and
//! per-value errors come out of the deserializer with a byte span; checks that need
//! several keys at once (a duplicate operator id, a property whose type and source
//! disagree) run after deserializing and ask the [`Locator`] for the line of a key path.

use std::fmt::{self, Write as _};
use std::io;
use std::ops::Range;
use std::path::PathBuf;

use toml_edit::{ImDocument, Item, TableLike, Value};

/// Why a configuration could not be loaded. `Display` is one line meant for an
/// administrator, e.g.
/// `/etc/calltap/calltap.toml line 7: [api] listen: "127.0.0.1:99999" is not a socket address ...`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file itself could not be read.
    #[error("{}: cannot read the configuration: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A key is unknown, has a bad value, or disagrees with another key.
    #[error("{}{message}", at(.origin, .line, .key))]
    Invalid {
        origin: String,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
    /// A file named by a `*_file` key could not be read.
    #[error("{}cannot read {}: {source}", at(.origin, .line, .key), .file.display())]
    File {
        origin: String,
        line: Option<usize>,
        key: Option<String>,
        file: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ConfigError {
    /// The 1-based line in the configuration file the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { line, .. } | ConfigError::File { line, .. } => *line,
        }
    }

    /// The key the error is about, as displayed (`[api] listen`, `[[operators]] #2 id`).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { key, .. } | ConfigError::File { key, .. } => key.as_deref(),
        }
    }
}

fn at(origin: &str, line: &Option<usize>, key: &Option<String>) -> String {
    let mut out = origin.to_owned();
    if let Some(line) = line {
        let _ = write!(out, " line {line}");
    }
    out.push_str(": ");
    if let Some(key) = key {
        out.push_str(key);
        out.push_str(": ");
    }
    out
}

/// One step of a key path: a table key, or an index into an array (of tables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathSeg {
    Key(String),
    Index(usize),
}

/// Shorthand for a key step.
pub(crate) fn k(key: &str) -> PathSeg {
    PathSeg::Key(key.to_owned())
}

/// Renders a key path the way the file reads: `[api] listen`, `[[operators]] #2 id`,
/// `[capture] interfaces #3`, or a bare `name` at the top level.
pub(crate) fn display_path(path: &[PathSeg]) -> String {
    fn dotted(rest: &[PathSeg]) -> String {
        let mut out = String::new();
        for seg in rest {
            match seg {
                PathSeg::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        out.push_str(key);
                    } else {
                        let _ = write!(out, "{key:?}");
                    }
                }
                PathSeg::Index(i) => {
                    let _ = write!(out, " #{}", i + 1);
                }
            }
        }
        out
    }
    match path {
        [] => String::new(),
        [PathSeg::Key(only)] => dotted(&[PathSeg::Key(only.clone())]),
        [PathSeg::Key(section), PathSeg::Index(i), rest @ ..] => {
            let mut out = format!("[[{section}]] #{}", i + 1);
            if !rest.is_empty() {
                out.push(' ');
                out.push_str(dotted(rest).trim_start());
            }
            out
        }
        [PathSeg::Key(section), rest @ ..] => format!("[{section}] {}", dotted(rest)),
        [PathSeg::Index(_), ..] => dotted(path),
    }
}

/// Maps byte offsets to lines and key paths, and key paths to lines, for one document.
pub(crate) struct Locator<'a> {
    origin: &'a str,
    text: &'a str,
    /// `None` when the text is not valid TOML; errors then carry a line but no key.
    doc: Option<ImDocument<&'a str>>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(origin: &'a str, text: &'a str) -> Self {
        Locator {
            origin,
            text,
            doc: ImDocument::parse(text).ok(),
        }
    }

    pub(crate) fn origin(&self) -> &str {
        self.origin
    }

    fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error about `path`, placed on the line where that key is written (or, when the
    /// key is absent, on the line of the nearest enclosing table that is).
    pub(crate) fn error(&self, path: &[PathSeg], message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            line: self.line_of(path),
            key: (!path.is_empty()).then(|| display_path(path)),
            message: message.into(),
        }
    }

    /// A `*_file` key whose file could not be read.
    pub(crate) fn file_error(
        &self,
        path: &[PathSeg],
        file: PathBuf,
        source: io::Error,
    ) -> ConfigError {
        ConfigError::File {
            origin: self.origin.to_owned(),
            line: self.line_of(path),
            key: Some(display_path(path)),
            file,
            source,
        }
    }

    /// Turns a deserializer error (which carries a byte span) into one that names the
    /// line and the key found at that span.
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let message = err
            .message()
            .trim()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        // serde names the Rust type a table was expected for; the reader knows tables.
        let message = match message.find("expected struct ") {
            Some(at) => format!("{}expected a table", &message[..at]),
            None => message,
        };
        let (line, key) = match err.span() {
            Some(span) => {
                let path = self.path_at(span.start);
                (
                    Some(self.line_at(span.start)),
                    (!path.is_empty()).then(|| display_path(&path)),
                )
            }
            None => (None, None),
        };
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            line,
            key,
            message,
        }
    }

    /// The line of the deepest part of `path` present in the document.
    pub(crate) fn line_of(&self, path: &[PathSeg]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        deepest_in_table(doc.as_table(), path).map(|span| self.line_at(span.start))
    }

    /// The key path of the innermost key or value that covers `offset`.
    fn path_at(&self, offset: usize) -> Vec<PathSeg> {
        let mut path = Vec::new();
        if let Some(doc) = &self.doc {
            find_in_table(doc.as_table(), offset, &mut path);
        }
        path
    }
}

fn deepest_in_table(table: &dyn TableLike, path: &[PathSeg]) -> Option<Range<usize>> {
    let (PathSeg::Key(name), rest) = path.split_first()? else {
        return None;
    };
    let (key, item) = table.get_key_value(name)?;
    deepest_in_item(item, rest)
        .or_else(|| key.span())
        .or_else(|| item.span())
}

fn deepest_in_item(item: &Item, path: &[PathSeg]) -> Option<Range<usize>> {
    match path.split_first()? {
        (PathSeg::Key(_), _) => deepest_in_table(item.as_table_like()?, path),
        (PathSeg::Index(i), rest) => match item {
            Item::ArrayOfTables(tables) => {
                let table = tables.get(*i)?;
                deepest_in_table(table, rest).or_else(|| table.span())
            }
            Item::Value(Value::Array(values)) => {
                let value = values.get(*i)?;
                match value {
                    Value::InlineTable(table) => {
                        deepest_in_table(table, rest).or_else(|| value.span())
                    }
                    _ => value.span(),
                }
            }
            _ => None,
        },
    }
}

fn covers(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

fn find_in_table(table: &dyn TableLike, offset: usize, path: &mut Vec<PathSeg>) -> bool {
    for (name, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(name) else {
            continue;
        };
        path.push(PathSeg::Key(name.to_owned()));
        if covers(key.span(), offset) || find_in_item(item, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_item(item: &Item, offset: usize, path: &mut Vec<PathSeg>) -> bool {
    match item {
        Item::None => false,
        Item::Table(table) => find_in_table(table, offset, path) || covers(table.span(), offset),
        Item::ArrayOfTables(tables) => {
            for (i, table) in tables.iter().enumerate() {
                path.push(PathSeg::Index(i));
                if find_in_table(table, offset, path) || covers(table.span(), offset) {
                    return true;
                }
                path.pop();
            }
            false
        }
        Item::Value(value) => find_in_value(value, offset, path),
    }
}

fn find_in_value(value: &Value, offset: usize, path: &mut Vec<PathSeg>) -> bool {
    if !covers(value.span(), offset) {
        return false;
    }
    match value {
        Value::Array(values) => {
            for (i, v) in values.iter().enumerate() {
                path.push(PathSeg::Index(i));
                if find_in_value(v, offset, path) {
                    return true;
                }
                path.pop();
            }
        }
        Value::InlineTable(table) => {
            find_in_table(table, offset, path);
        }
        _ => {}
    }
    true
}

impl fmt::Display for PathSeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSeg::Key(key) => f.write_str(key),
            PathSeg::Index(i) => write!(f, "#{}", i + 1),
        }
    }
}
