//! `make-binary-cache diff OLD NEW`: the store paths NEW adds to OLD, those
//! it lacks, and those both hold with different contents (the same store
//! path, another NarHash: a build that is not reproducible), from the
//! narinfos alone. Compression, URL and signatures may differ between the
//! two: the same NarHash is the same store path contents.

use anyhow::{Result, bail};
use serde::Serialize;

use crate::commands::catalog::Catalog;
use crate::format::narinfo::NarInfo;
use crate::text::{count, human};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    pub nar_hash: String,
    pub nar_size: u64,
    pub file_size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub path: String,
    #[serde(flatten)]
    pub side: Side,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Changed {
    pub path: String,
    pub old: Side,
    pub new: Side,
}

/// The whole of `diff --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// The form of this JSON; a change that is not an addition bumps it.
    pub version: u32,
    /// In NEW, not in OLD; each list by store path.
    pub added: Vec<Entry>,
    /// In OLD, not in NEW.
    pub removed: Vec<Entry>,
    pub changed: Vec<Changed>,
    /// Store paths both hold with the same NarHash.
    pub unchanged: usize,
}

fn side(info: &NarInfo) -> Side {
    Side { nar_hash: info.nar_hash.to_string(), nar_size: info.nar_size, file_size: info.file_size }
}

fn entry(info: &NarInfo) -> Entry {
    Entry { path: info.path.to_string(), side: side(info) }
}

pub fn diff(old: &Catalog, new: &Catalog) -> Result<Diff> {
    if old.store_dir != new.store_dir {
        bail!(
            "{} is a cache of {} and {} of {}: they cannot hold the same store paths",
            old.path().display(),
            old.store_dir,
            new.path().display(),
            new.store_dir
        );
    }
    let mut result = Diff { version: 1, added: Vec::new(), removed: Vec::new(), changed: Vec::new(), unchanged: 0 };
    for (path, info) in &old.narinfos {
        match new.narinfos.get(path) {
            None => result.removed.push(entry(info)),
            Some(theirs) if theirs.nar_hash == info.nar_hash && theirs.nar_size == info.nar_size => {
                result.unchanged += 1
            }
            Some(theirs) => result.changed.push(Changed { path: path.to_string(), old: side(info), new: side(theirs) }),
        }
    }
    result.added =
        new.narinfos.iter().filter(|(path, _)| !old.narinfos.contains_key(*path)).map(|(_, i)| entry(i)).collect();
    Ok(result)
}

impl Diff {
    pub fn differ(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty())
    }

    pub fn json(&self) -> String {
        super::json_text(self)
    }

    /// `+ path  size`, `- path  size`, `~ path  old NarHash → new`, then the counts.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for e in &self.added {
            text += &format!("+ {}  {}\n", e.path, human(e.side.nar_size));
        }
        for e in &self.removed {
            text += &format!("- {}  {}\n", e.path, human(e.side.nar_size));
        }
        for c in &self.changed {
            text += &format!(
                "~ {}  NarHash {} → {}, NarSize {} → {}\n",
                c.path,
                c.old.nar_hash,
                c.new.nar_hash,
                human(c.old.nar_size),
                human(c.new.nar_size)
            );
        }
        let sum = |entries: &[Entry]| human(entries.iter().map(|e| e.side.nar_size).sum());
        text += &format!(
            "{} added ({}), {} removed ({}), {} changed, {} the same\n",
            count(self.added.len(), "store path"),
            sum(&self.added),
            self.removed.len(),
            sum(&self.removed),
            self.changed.len(),
            self.unchanged
        );
        text
    }
}
