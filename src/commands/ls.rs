//! `make-binary-cache ls`: what a cache holds, read from its narinfos alone
//! (no NAR is opened): every store path with its NarSize, FileSize,
//! compression, references, signers and how many of the cache's narinfos
//! refer to it (a root: none), then the totals. As a table for people, or
//! as JSON for scripts, whose form is stable (doc/ls-diff-gc.md).

use serde::Serialize;

use crate::commands::catalog::Catalog;
use crate::format::narinfo::NarInfo;
use crate::text::{count, human};

/// One store path of the cache, as `--json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub path: String,
    pub nar_hash: String,
    pub nar_size: u64,
    pub url: String,
    pub compression: String,
    pub file_hash: String,
    pub file_size: u64,
    pub references: Vec<String>,
    pub deriver: Option<String>,
    pub signatures: Vec<String>,
    /// The key names of `signatures`.
    pub signers: Vec<String>,
    pub ca: Option<String>,
    /// How many other narinfos of the cache name it among their references.
    pub referrers: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub paths: usize,
    /// Store paths no other narinfo refers to.
    pub roots: usize,
    pub nar_size: u64,
    pub file_size: u64,
}

/// The whole of `ls --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    /// The form of this JSON; a change that is not an addition bumps it.
    pub version: u32,
    pub store_dir: String,
    /// By store path.
    pub paths: Vec<Entry>,
    pub totals: Totals,
}

pub fn list(catalog: &Catalog) -> Listing {
    let referrers = catalog.referrers();
    let paths: Vec<Entry> = catalog.narinfos.values().map(|info| entry(info, referrers[&info.path])).collect();
    let totals = Totals {
        paths: paths.len(),
        roots: paths.iter().filter(|e| e.referrers == 0).count(),
        nar_size: paths.iter().map(|e| e.nar_size).sum(),
        file_size: paths.iter().map(|e| e.file_size).sum(),
    };
    Listing { version: 1, store_dir: catalog.store_dir.clone(), paths, totals }
}

fn entry(info: &NarInfo, referrers: usize) -> Entry {
    Entry {
        path: info.path.to_string(),
        nar_hash: info.nar_hash.to_string(),
        nar_size: info.nar_size,
        url: info.url.clone(),
        compression: info.compression.to_string(),
        file_hash: info.file_hash.to_string(),
        file_size: info.file_size,
        references: info.references.iter().map(ToString::to_string).collect(),
        deriver: info.deriver.as_ref().map(ToString::to_string),
        signatures: info.signatures.iter().map(ToString::to_string).collect(),
        signers: info.signatures.iter().map(|s| s.key_name().to_owned()).collect(),
        ca: info.ca.as_ref().map(ToString::to_string),
        referrers,
    }
}

impl Listing {
    pub fn json(&self) -> String {
        super::json_text(self)
    }

    /// A table: one line per store path, then the totals.
    pub fn table(&self) -> String {
        let header = ["STORE PATH", "NAR SIZE", "FILE SIZE", "COMPRESSION", "REFERENCES", "REFERRERS", "SIGNED BY"];
        let rows: Vec<[String; 7]> = self
            .paths
            .iter()
            .map(|e| {
                let signers = if e.signers.is_empty() { "-".to_owned() } else { e.signers.join(",") };
                [
                    e.path.clone(),
                    human(e.nar_size),
                    human(e.file_size),
                    e.compression.clone(),
                    e.references.len().to_string(),
                    e.referrers.to_string(),
                    signers,
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let line = |cells: [&str; 7]| {
            let mut line = String::new();
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                // The path and the signers to the left, numbers to the right.
                match i {
                    0 => line += &format!("{cell:<width$}"),
                    6 => line += &format!("  {cell}"),
                    3 => line += &format!("  {cell:<width$}"),
                    _ => line += &format!("  {cell:>width$}"),
                }
            }
            line.trim_end().to_owned() + "\n"
        };
        let mut text = line(header);
        for row in &rows {
            text += &line(row.each_ref().map(String::as_str));
        }
        let t = &self.totals;
        text += &format!(
            "{} ({} referred to by no other): NAR {}, files {}\n",
            count(t.paths, "store path"),
            t.roots,
            human(t.nar_size),
            human(t.file_size)
        );
        text
    }
}
