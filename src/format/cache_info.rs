//! `nix-cache-info`, the file at the root of a binary cache that says which
//! store it is for and how clients should use it.
//!
//! It is `Key: value` lines. Nix reads it in `BinaryCacheStore::init`
//! (binary-cache-store.cc), and this module reads it the same way: the text
//! is split at `\n`, empty lines skipped; a line is split at its first `:`,
//! the key taken as it is (` StoreDir` is another key) and the value trimmed;
//! a line without `:` is skipped, and so is a key Nix does not know. Nix
//! knows three:
//!
//! * `StoreDir`: the store directory the cache's paths are in; Nix refuses a
//!   cache for another one. Without it, Nix accepts the cache for any store.
//! * `WantMassQuery`: `1` is true, any other value false.
//! * `Priority`: an integer (C's `stoi`), lower is asked first.
//!
//! Stricter than Nix in one way: a key given twice is an error here, where
//! Nix checks every `StoreDir` line (so two different ones always fail) but
//! lets the last `WantMassQuery` or `Priority` win; which one counts is not
//! something a cache should leave to its reader. Nix itself only writes
//! `StoreDir: <store dir>`; [`CacheInfo::text`] writes the other two, when
//! set, in the order caches that set them serve them.
//!
//! ```
//! use make_binary_cache::format::cache_info::{CacheInfo, parse};
//! let text = CacheInfo { store_dir: "/nix/store", priority: Some(30), want_mass_query: Some(true) }.text();
//! assert_eq!(text, "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n");
//! let parsed = parse(&text).unwrap();
//! assert_eq!(parsed.store_dir.unwrap().value, "/nix/store");
//! assert_eq!(parsed.want_mass_query(), Some(true));
//! assert_eq!(parsed.priority.unwrap().value, "30");
//! ```

/// The name of the file, at the root of the cache.
pub const FILE_NAME: &str = "nix-cache-info";

/// What a `nix-cache-info` we write says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheInfo<'a> {
    pub store_dir: &'a str,
    pub priority: Option<i32>,
    pub want_mass_query: Option<bool>,
}

impl CacheInfo<'_> {
    /// The text of the file.
    pub fn text(&self) -> String {
        let mut text = format!("StoreDir: {}\n", self.store_dir);
        if let Some(want) = self.want_mass_query {
            text += &format!("WantMassQuery: {}\n", u8::from(want));
        }
        if let Some(priority) = self.priority {
            text += &format!("Priority: {priority}\n");
        }
        text
    }
}

/// The value of a known key and the line (from 1) it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'t> {
    pub line: usize,
    pub value: &'t str,
}

/// A `nix-cache-info` as Nix reads it, values as written (trimmed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed<'t> {
    pub store_dir: Option<Field<'t>>,
    pub want_mass_query: Option<Field<'t>>,
    pub priority: Option<Field<'t>>,
    /// Lines without a `:`, which Nix skips: line number and text.
    pub malformed: Vec<(usize, &'t str)>,
    /// Keys Nix does not know and ignores: line number and key.
    pub unknown: Vec<(usize, &'t str)>,
}

/// The keys Nix reads, in the order [`CacheInfo::text`] writes them.
pub const KEYS: [&str; 3] = ["StoreDir", "WantMassQuery", "Priority"];

impl<'t> Parsed<'t> {
    /// The field of `key`, one of [`KEYS`]; `None` for any other key.
    pub fn field(&self, key: &str) -> Option<Field<'t>> {
        match key {
            "StoreDir" => self.store_dir,
            "WantMassQuery" => self.want_mass_query,
            "Priority" => self.priority,
            _ => None,
        }
    }

    /// `WantMassQuery` as Nix takes it: true for `1`, false for anything else.
    pub fn want_mass_query(&self) -> Option<bool> {
        self.want_mass_query.map(|f| f.value == "1")
    }
}

/// Reads `text` as Nix does (see the module). Fails, naming the key and both
/// lines, when a known key is given twice.
pub fn parse(text: &str) -> Result<Parsed<'_>, Error> {
    let mut parsed = Parsed::default();
    for (n, line) in text.split('\n').enumerate() {
        let n = n + 1;
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            if !line.trim().is_empty() {
                parsed.malformed.push((n, line));
            }
            continue;
        };
        let slot = match key {
            "StoreDir" => &mut parsed.store_dir,
            "WantMassQuery" => &mut parsed.want_mass_query,
            "Priority" => &mut parsed.priority,
            _ => {
                parsed.unknown.push((n, key));
                continue;
            }
        };
        if let Some(first) = slot {
            return Err(Error::Twice { key: key.to_owned(), first: first.line, second: n });
        }
        *slot = Some(Field { line: n, value: value.trim() });
    }
    Ok(parsed)
}

/// A `Priority` value: a whole number that fits Nix's `int`. (Nix's `stoi`
/// would also take `30abc` as 30; that is refused here.)
pub fn parse_priority(value: &str) -> Result<i32, Error> {
    value.parse::<i32>().map_err(|_| Error::Priority(value.to_owned()))
}

/// A `WantMassQuery` value as we write it: `0` or `1`. (Nix takes any value
/// but `1` as false.)
pub fn parse_want_mass_query(value: &str) -> Result<bool, Error> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(Error::WantMassQuery(value.to_owned())),
    }
}

/// Why a `nix-cache-info` or one of its values is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{key} appears twice (lines {first} and {second})")]
    Twice { key: String, first: usize, second: usize },
    #[error("Priority must be a whole number, not {0:?}")]
    Priority(String),
    #[error("WantMassQuery must be 0 or 1, not {0:?}")]
    WantMassQuery(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(line: usize, value: &str) -> Option<Field<'_>> {
        Some(Field { line, value })
    }

    #[test]
    fn what_nix_writes_and_what_we_write() {
        let nix = parse("StoreDir: /nix/store\n").unwrap();
        assert_eq!(nix, Parsed { store_dir: field(1, "/nix/store"), ..Parsed::default() });
        let ours = CacheInfo { store_dir: "/gnu/store", priority: Some(-5), want_mass_query: Some(false) };
        let text = ours.text();
        assert_eq!(text, "StoreDir: /gnu/store\nWantMassQuery: 0\nPriority: -5\n");
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.store_dir, field(1, "/gnu/store"));
        assert_eq!(parsed.want_mass_query(), Some(false));
        assert_eq!(parse_priority(parsed.priority.unwrap().value), Ok(-5));
        let plain = CacheInfo { store_dir: "/nix/store", priority: None, want_mass_query: None };
        assert_eq!(plain.text(), "StoreDir: /nix/store\n");
    }

    #[test]
    fn lines_are_read_as_nix_reads_them() {
        let text =
            "WantMassQuery: yes\n\nStoreDir:/gnu/store  \r\n  \nno colon here\n StoreDir: /other\nColour: blue\n";
        let parsed = parse(text).unwrap();
        // The value is trimmed (the `\r` too, as Nix's trim does); the key is not.
        assert_eq!(parsed.store_dir, field(3, "/gnu/store"));
        assert_eq!(parsed.want_mass_query, field(1, "yes"));
        assert_eq!(parsed.want_mass_query(), Some(false));
        assert_eq!(parsed.priority, None);
        assert_eq!(parsed.malformed, [(5, "no colon here")]);
        assert_eq!(parsed.unknown, [(6, " StoreDir"), (7, "Colour")]);
        assert_eq!(parse("").unwrap(), Parsed::default());
        assert_eq!(KEYS.map(|k| parsed.field(k).map(|f| f.line)), [Some(3), Some(1), None]);
        // The value runs from the first `:`.
        assert_eq!(parse("Priority: 1:2").unwrap().priority, field(1, "1:2"));
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        assert_eq!(
            parse("StoreDir: /a\nStoreDir: /a\n").unwrap_err().to_string(),
            "StoreDir appears twice (lines 1 and 2)"
        );
        assert!(
            parse("Priority: 1\nStoreDir: /a\nPriority: 2\n")
                .unwrap_err()
                .to_string()
                .contains("Priority appears twice")
        );
        // Unknown keys may repeat: Nix ignores them.
        assert_eq!(parse("X: 1\nX: 2\n").unwrap().unknown, [(1, "X"), (2, "X")]);
    }

    #[test]
    fn values_are_checked_strictly() {
        assert_eq!(parse_priority("40"), Ok(40));
        assert_eq!(parse_priority("-1"), Ok(-1));
        for bad in ["", "high", "30abc", "99999999999"] {
            assert!(parse_priority(bad).unwrap_err().to_string().contains("whole number"), "{bad}");
        }
        assert_eq!(parse_want_mass_query("1"), Ok(true));
        assert_eq!(parse_want_mass_query("0"), Ok(false));
        assert!(parse_want_mass_query("true").unwrap_err().to_string().contains("0 or 1"));
    }
}
