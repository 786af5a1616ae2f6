//! narinfo files: what a binary cache says about one store path.
//!
//! Fields come in the order Nix's `NarInfo::to_string` writes them, each as
//! `Key: value` on its own line. `References:` is written even when empty
//! (Nix writes `References: ` then), because that is what Nix writes and what
//! other readers expect.
//!
//! Every value is checked again as it is written: one holding a line break or
//! NUL would let a value add or override fields (a `Sig:` value ending in
//! `\nURL: nar/<other>.nar` points Nix at another path's NAR), so rendering
//! is fallible and refuses it, naming the store path and the field. The
//! parsers upstream (store paths, [`Signature`], [`ContentAddress`]) already
//! refuse such values; this is the second line of defence.
//!
//! [`NarInfo::parse`] reads a narinfo back, strictly: every line must be
//! a field Nix writes, each once (but `Sig`), every value well-formed. It is
//! what `sign` and `verify` read caches with, ours and `nix copy`'s alike.
//!
//! ```
//! use make_binary_cache::compress::Compression;
//! use make_binary_cache::format::{narinfo::NarInfo, path_info::PathInfo, store_path::StorePath};
//! let path = StorePath::parse("/nix/store", "/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a").unwrap();
//! let hash = "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw".parse().unwrap();
//! let info = PathInfo {
//!     path, nar_hash: hash, nar_size: 952, references: vec![], deriver: None, signatures: vec![], ca: None,
//! };
//! let narinfo = NarInfo {
//!     info, url: "nar/1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw.nar".into(),
//!     compression: Compression::None, file_hash: hash, file_size: 952,
//! };
//! assert!(narinfo.render().unwrap().contains("\nReferences: \n"));
//! ```

use std::fmt::Write;
use std::path::{Component, Path};
use std::str::FromStr;

use crate::format::compression::{Compression, UnknownCompression};
use crate::format::content_address::{self, ContentAddress};
use crate::format::hash::{self, Sha256Hash};
use crate::format::path_info::PathInfo;
pub use crate::format::path_info::sort_signatures;
use crate::format::signature::{self, Signature};
use crate::format::store_path::{self, StorePath};

/// A narinfo: the path's [`PathInfo`] plus the fields of its NAR file.
/// It derefs to the [`PathInfo`], so `narinfo.nar_hash` reads as Nix says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    pub info: PathInfo,
    /// Relative to the cache root: `nar/<FileHash nix32>.nar<ext>`.
    pub url: String,
    pub compression: Compression,
    pub file_hash: Sha256Hash,
    pub file_size: u64,
}

impl std::ops::Deref for NarInfo {
    type Target = PathInfo;
    fn deref(&self) -> &PathInfo {
        &self.info
    }
}

impl std::ops::DerefMut for NarInfo {
    fn deref_mut(&mut self) -> &mut PathInfo {
        &mut self.info
    }
}

impl NarInfo {
    /// `<hash part>.narinfo`, the file name Nix looks up.
    pub fn file_name(&self) -> String {
        format!("{}.narinfo", self.path.hash_part())
    }
}

impl NarInfo {
    /// The narinfo's text, or an error naming the store path and the field
    /// when a value holds a line break or NUL.
    pub fn render(&self) -> Result<String, Error> {
        let mut text = String::with_capacity(512);
        let mut line = |key: &'static str, value: &dyn std::fmt::Display| -> Result<(), Error> {
            let start = text.len();
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{key}: {value}");
            let value = &text[start + key.len() + 2..text.len() - 1];
            match value.chars().find(|c| matches!(c, '\n' | '\r' | '\0')) {
                Some(bad) => Err(Error::Unrenderable { path: self.path.clone(), key, bad, value: value.to_owned() }),
                None => Ok(()),
            }
        };
        line("StorePath", &self.path)?;
        line("URL", &self.url)?;
        line("Compression", &self.compression)?;
        line("FileHash", &self.file_hash)?;
        line("FileSize", &self.file_size)?;
        line("NarHash", &self.nar_hash)?;
        line("NarSize", &self.nar_size)?;
        let references: Vec<&str> = self.references.iter().map(StorePath::base_name).collect();
        line("References", &references.join(" "))?;
        if let Some(deriver) = &self.deriver {
            line("Deriver", &deriver.base_name())?;
        }
        for sig in &self.signatures {
            line("Sig", sig)?;
        }
        if let Some(ca) = &self.ca {
            line("CA", ca)?;
        }
        Ok(text)
    }
}

impl NarInfo {
    /// Parses the text of a narinfo for a store in `store_dir`. Stricter than
    /// Nix, which skips unknown keys and takes the last of repeated ones: in a
    /// cache we check, either means something wrote what it should not have.
    /// The error names the line.
    pub fn parse(store_dir: &str, text: &str) -> Result<Self, Error> {
        let body = text.strip_suffix('\n').ok_or(Error::NoFinalLineBreak)?;
        let mut fields: [Option<&str>; FIELDS.len()] = Default::default();
        let mut signatures = Vec::new();
        for (n, line) in body.split('\n').enumerate() {
            let n = n + 1;
            let (key, value) =
                line.split_once(": ").ok_or_else(|| Error::NoSeparator { line: n, text: line.to_owned() })?;
            if key == "Sig" {
                signatures.push(value.parse::<Signature>().map_err(|why| Error::Signature { line: n, why })?);
                continue;
            }
            let slot = FIELDS
                .iter()
                .position(|&k| k == key)
                .ok_or_else(|| Error::UnknownField { line: n, key: key.to_owned() })?;
            if fields[slot].replace(value).is_some() {
                return Err(Error::Twice { line: n, key: FIELDS[slot] });
            }
        }
        let field = |key: &'static str| -> Result<&str, Error> {
            let slot = FIELDS.iter().position(|&k| k == key).expect("a known field");
            fields[slot].ok_or(Error::Missing(key))
        };
        fn parsed<T: FromStr>(key: &'static str, value: &str) -> Result<T, Error>
        where
            T::Err: Into<FieldError>,
        {
            value.parse().map_err(|e: T::Err| Error::Field { key, why: e.into() })
        }
        let in_store = |key: &'static str, base: &str| {
            StorePath::parse(store_dir, &format!("{store_dir}/{base}")).map_err(|e| Error::Field { key, why: e.into() })
        };

        let store_path = StorePath::parse(store_dir, field("StorePath")?)
            .map_err(|e| Error::Field { key: "StorePath", why: e.into() })?;
        let url = field("URL")?;
        if url.is_empty() || url.contains(char::is_whitespace) {
            return Err(Error::Field { key: "URL", why: FieldError::Url(url.to_owned()) });
        }
        let mut references = match field("References")? {
            "" => Vec::new(),
            list => list.split(' ').map(|base| in_store("References", base)).collect::<Result<Vec<_>, _>>()?,
        };
        references.sort();
        let deriver = match fields[FIELDS.iter().position(|&k| k == "Deriver").expect("a known field")] {
            // What Nix writes when it did not know the deriver.
            None | Some("unknown-deriver") => None,
            Some(base) => Some(in_store("Deriver", base)?),
        };
        let ca = match fields[FIELDS.len() - 1] {
            None => None,
            Some(ca) => Some(parsed::<ContentAddress>("CA", ca)?),
        };
        if let Some(ca) = &ca {
            ca.check_path(&store_path, &references).map_err(|e| Error::Field { key: "CA", why: e.into() })?;
        }
        Ok(Self {
            info: PathInfo {
                path: store_path,
                nar_hash: parsed("NarHash", field("NarHash")?)?,
                nar_size: parsed("NarSize", field("NarSize")?)?,
                references,
                deriver,
                signatures,
                ca,
            },
            url: url.to_owned(),
            compression: parsed("Compression", field("Compression")?)?,
            file_hash: parsed("FileHash", field("FileHash")?)?,
            file_size: parsed("FileSize", field("FileSize")?)?,
        })
    }

    /// Whether `other` also describes the same NAR file: the same URL,
    /// Compression, FileHash and FileSize.
    pub fn same_file(&self, other: &NarInfo) -> bool {
        (&self.url, self.compression, self.file_hash, self.file_size)
            == (&other.url, other.compression, other.file_hash, other.file_size)
    }
}

/// What to put under a narinfo's name, given what is there now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// What is there already says it: leave it.
    Unchanged,
    /// Write this text.
    Write(String),
    /// What is there changed since it was read (`expected` of [`settle`]),
    /// and describes another NAR file: another run wrote it meanwhile.
    Changed,
}

/// The rule for naming a narinfo in a cache that may hold one for the same
/// store path (`current`, its text, `None` when there is none): a narinfo
/// describing the same NAR keeps its signatures, so that building, merging,
/// reusing or signing into a signed cache never drops one.
///
/// * None there: `ours`.
/// * `current` has the same fingerprint (store path, NarHash, NarSize,
///   references): `ours` with the signatures of both, or nothing to do when
///   that is what is there.
/// * Otherwise `ours` replaces it (the store path was built again with other
///   contents: its signatures vouch for another NAR); unless `expected` (the
///   text the caller read, and checked the NAR file of) is given and
///   `current` is not it, when only a narinfo of the same fingerprint *and*
///   the same NAR file may be joined, and anything else is [`Settled::Changed`];
///   when `current` is still `expected`, `ours` (made from it) is written as
///   it is.
pub fn settle(store_dir: &str, ours: &NarInfo, current: Option<&str>, expected: Option<&str>) -> Settled {
    let render = |info: &NarInfo| info.render().expect("a parsed narinfo renders");
    let Some(current) = current else { return Settled::Write(render(ours)) };
    let changed = expected.is_some_and(|expected| expected != current);
    if expected.is_some() && !changed {
        // `ours` was made from what is there: it says what to keep (a
        // signature by a key of the same name is replaced, not joined).
        let text = render(ours);
        return if text == current { Settled::Unchanged } else { Settled::Write(text) };
    }
    match NarInfo::parse(store_dir, current).ok() {
        Some(theirs) if ours.same_fingerprint(&theirs) && (!changed || ours.same_file(&theirs)) => {
            let mut merged = ours.clone();
            merged.add_signatures_of(&theirs);
            let text = render(&merged);
            if text == current { Settled::Unchanged } else { Settled::Write(text) }
        }
        _ if changed => Settled::Changed,
        _ => Settled::Write(render(ours)),
    }
}

/// A narinfo's URL as a path inside the cache: relative, without `.` or
/// `..`, no scheme, so that a narinfo cannot make `sign` or `verify` read
/// (or copy) a file outside the cache. Pure: it only looks at the text.
pub fn nar_file(url: &str) -> Result<&Path, Error> {
    let path = Path::new(url);
    if url.contains("://") || url.contains('\0') {
        return Err(Error::NotAFile(url.to_owned()));
    }
    if path.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::NotRelative(url.to_owned()));
    }
    Ok(path)
}

/// Why a narinfo does not parse or render, or its URL names no file of the
/// cache. Parse errors name the line or the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the narinfo does not end with a line break")]
    NoFinalLineBreak,
    #[error("line {line}: no `: ` in {text:?}")]
    NoSeparator { line: usize, text: String },
    #[error("line {line}: unknown field `{key}`")]
    UnknownField { line: usize, key: String },
    #[error("line {line}: field `{key}` appears twice")]
    Twice { line: usize, key: &'static str },
    #[error("line {line}: field `Sig`: {why}")]
    Signature { line: usize, why: signature::Error },
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{key}`: {why}")]
    Field { key: &'static str, why: FieldError },
    #[error("{path}: narinfo field `{key}` would contain {bad:?}, which would break the narinfo: {value:?}")]
    Unrenderable { path: StorePath, key: &'static str, bad: char, value: String },
    #[error("URL {0:?} is not a file of the cache")]
    NotAFile(String),
    #[error("URL {0:?} is not a plain relative path inside the cache")]
    NotRelative(String),
}

/// Why the value of a narinfo field is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{0}")]
    StorePath(#[from] store_path::Error),
    #[error("{0}")]
    Hash(#[from] hash::Error),
    #[error("{0}")]
    ContentAddress(#[from] content_address::Error),
    #[error("{0}")]
    Compression(#[from] UnknownCompression),
    #[error("{0}")]
    Number(#[from] std::num::ParseIntError),
    #[error("{0:?} is not a URL")]
    Url(String),
}

/// The fields a narinfo may have besides `Sig`, in the order Nix writes them;
/// `CA` last.
const FIELDS: [&str; 10] =
    ["StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize", "References", "Deriver", "CA"];

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "StorePath: /nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b\n\
        URL: nar/0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.nar\n\
        Compression: none\n\
        FileHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
        FileSize: 100\n\
        NarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
        NarSize: 100\n\
        References: \n";

    fn with_sigs(text: &str, sigs: &[&str]) -> String {
        let mut text = text.to_owned();
        for sig in sigs {
            text.push_str(&format!("Sig: {sig}\n"));
        }
        text
    }

    #[test]
    fn settling_keeps_the_signatures_of_the_same_nar_and_only_those() {
        let other = SIG.replace("cache.example.org-1", "other.example.org-1");
        let (a, b) = (SIG, other.as_str());
        let parse = |t: &str| NarInfo::parse("/nix/store", t).unwrap();
        let ours = parse(PLAIN);
        assert_eq!(settle("/nix/store", &ours, None, None), Settled::Write(PLAIN.to_owned()));
        assert_eq!(settle("/nix/store", &ours, Some(PLAIN), None), Settled::Unchanged);
        // A signed narinfo of the same NAR stays signed.
        let signed = with_sigs(PLAIN, &[a]);
        assert_eq!(settle("/nix/store", &ours, Some(&signed), None), Settled::Unchanged);
        // Ours with another signature, the current one with one of its own: both.
        let both = with_sigs(PLAIN, &[a, b]);
        assert_eq!(settle("/nix/store", &parse(&with_sigs(PLAIN, &[b])), Some(&signed), None), Settled::Write(both));
        // The same NarHash in another file (other compression): still joined.
        let other_file = signed.replace("Compression: none", "Compression: xz");
        let joined = settle("/nix/store", &ours, Some(&other_file), None);
        assert_eq!(joined, Settled::Write(with_sigs(PLAIN, &[a])));
        // Another NAR for the store path: ours replaces it, signatures and all.
        let rebuilt = signed.replace("NarSize: 100", "NarSize: 101");
        assert_eq!(settle("/nix/store", &ours, Some(&rebuilt), None), Settled::Write(PLAIN.to_owned()));
        assert_eq!(settle("/nix/store", &ours, Some("garbage"), None), Settled::Write(PLAIN.to_owned()));
        // Signing what was read: a concurrent change of the file is refused,
        // a concurrent signature joined.
        let mine = parse(&with_sigs(PLAIN, &[b]));
        assert_eq!(settle("/nix/store", &mine, Some(&other_file), Some(PLAIN)), Settled::Changed);
        assert_eq!(settle("/nix/store", &mine, Some(&rebuilt), Some(PLAIN)), Settled::Changed);
        assert_eq!(settle("/nix/store", &mine, Some(&signed), Some(PLAIN)), Settled::Write(with_sigs(PLAIN, &[a, b])));
    }

    const SIG: &str =
        "cache.example.org-1:aItucb2jMEdvkqYZji7WOy01UemOpGXpZCYvu0qXLmVNaoV4Mj/41K8uzPznXew6f1YgBxjkdjZl/N3le94ZWA==";

    #[test]
    fn writes_fields_in_nixs_order() {
        let store = "/nix/store";
        let path = StorePath::parse(store, "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b").unwrap();
        let refs = [StorePath::parse(store, "/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a").unwrap(), path.clone()];
        let deriver = StorePath::parse(store, "/nix/store/0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-b.drv").unwrap();
        let nar_hash: Sha256Hash = "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw".parse().unwrap();
        let file_hash: Sha256Hash = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73".parse().unwrap();
        let info = NarInfo {
            info: PathInfo {
                path,
                nar_hash,
                nar_size: 952,
                references: refs.to_vec(),
                deriver: Some(deriver),
                signatures: vec![SIG.parse().unwrap()],
                ca: Some("fixed:r:sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw".parse().unwrap()),
            },
            url: format!("nar/{}.nar.xz", file_hash.nix32()),
            compression: Compression::Xz,
            file_hash,
            file_size: 100,
        };
        assert_eq!(info.file_name(), "y2grnhdvfn46jk5m3g13m90yzbj9scgb.narinfo");
        // What `nix copy` writes, and the CA line after the signatures.
        assert_eq!(
            info.render().unwrap(),
            format!("{NIX_COPY}CA: fixed:r:sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw\n")
        );
    }

    #[test]
    fn refuses_values_that_would_break_lines() {
        let store = "/nix/store";
        let path = StorePath::parse(store, "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b").unwrap();
        let hash: Sha256Hash = "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw".parse().unwrap();
        let info = |url: &str| NarInfo {
            info: PathInfo {
                path: path.clone(),
                nar_hash: hash,
                nar_size: 1,
                references: vec![],
                deriver: None,
                signatures: vec![],
                ca: None,
            },
            url: url.into(),
            compression: Compression::None,
            file_hash: hash,
            file_size: 1,
        };
        assert!(info("nar/x.nar").render().is_ok());
        for (url, bad) in [("nar/x.nar\nNarSize: 2", "'\\n'"), ("nar/x\r.nar", "'\\r'"), ("nar/x\0.nar", "'\\0'")] {
            assert_eq!(
                info(url).render().unwrap_err().to_string(),
                format!(
                    "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b: narinfo field `URL` would contain {bad}, \
                     which would break the narinfo: {url:?}"
                )
            );
        }
        // A store directory nobody checked is caught too.
        let odd = StorePath::parse("/nix\nstore", "/nix\nstore/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b").unwrap();
        let mut odd_info = info("nar/x.nar");
        odd_info.path = odd;
        let err = odd_info.render().unwrap_err().to_string();
        assert!(err.contains("narinfo field `StorePath` would contain '\\n'"), "{err}");
    }

    /// A narinfo as Nix 2.8's `nix copy --to file://…?compression=xz` wrote it.
    const NIX_COPY: &str = "StorePath: /nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b\n\
        URL: nar/0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.nar.xz\n\
        Compression: xz\n\
        FileHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
        FileSize: 100\n\
        NarHash: sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw\n\
        NarSize: 952\n\
        References: q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a y2grnhdvfn46jk5m3g13m90yzbj9scgb-b\n\
        Deriver: 0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-b.drv\n\
        Sig: cache.example.org-1:aItucb2jMEdvkqYZji7WOy01UemOpGXpZCYvu0qXLmVNaoV4Mj/41K8uzPznXew6f1YgBxjkdjZl/N3le94ZWA==\n";

    #[test]
    fn parses_what_nix_writes_and_renders_it_back() {
        let info = NarInfo::parse("/nix/store", NIX_COPY).unwrap();
        assert_eq!(info.path.as_str(), "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b");
        assert_eq!((info.compression, info.file_size, info.nar_size), (Compression::Xz, 100, 952));
        let refs: Vec<&str> = info.references.iter().map(StorePath::base_name).collect();
        assert_eq!(refs, ["q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a", "y2grnhdvfn46jk5m3g13m90yzbj9scgb-b"]);
        assert_eq!(info.deriver.as_ref().map(StorePath::base_name), Some("0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-b.drv"));
        assert_eq!(info.signatures[0].key_name(), "cache.example.org-1");
        assert_eq!(info.ca, None);
        let rendered = info.render().unwrap();
        assert_eq!(rendered, NIX_COPY);
        assert_eq!(NarInfo::parse("/nix/store", &rendered).unwrap(), info);
        let unsorted = NIX_COPY.replace(
            "q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a y2grnhdvfn46jk5m3g13m90yzbj9scgb-b",
            "y2grnhdvfn46jk5m3g13m90yzbj9scgb-b q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a",
        );
        assert_eq!(NarInfo::parse("/nix/store", &unsorted).unwrap(), info);
        let unknown = NIX_COPY.replace("Deriver: 0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-b.drv", "Deriver: unknown-deriver");
        assert_eq!(NarInfo::parse("/nix/store", &unknown).unwrap().deriver, None);
    }

    #[test]
    fn parse_refuses_what_should_not_be_there() {
        let cases = [
            (NIX_COPY.trim_end().to_owned(), "the narinfo does not end with a line break"),
            (NIX_COPY.replace("Compression: xz\n", ""), "field `Compression` is missing"),
            (NIX_COPY.replace("NarSize: 952\n", ""), "field `NarSize` is missing"),
            (NIX_COPY.replace("NarSize: 952", "NarSize: 952\nNarSize: 953"), "line 8: field `NarSize` appears twice"),
            (NIX_COPY.replace("FileSize: 100", "FileSize: -1"), "field `FileSize`"),
            (NIX_COPY.replace("FileSize: 100", "System: x86_64-linux"), "line 5: unknown field `System`"),
            (NIX_COPY.replace("FileSize: 100", "FileSize:100"), "line 5: no `: `"),
            (NIX_COPY.replace("Compression: xz", "Compression: bzip2"), "field `Compression`: unknown compression"),
            (NIX_COPY.replace("NarHash: sha256:1", "NarHash: sha256:x"), "field `NarHash`"),
            (NIX_COPY.replace("URL: nar/", "URL: nar /"), "field `URL`"),
            (NIX_COPY.replace("References: q8", "References: /nix/store/q8"), "field `References`"),
            (NIX_COPY.replace("b.drv", "b .drv"), "field `Deriver`"),
            (NIX_COPY.replace("Sig: cache.example.org-1:", "Sig: cache.example.org-1:x"), "line 10: field `Sig`"),
            (format!("{NIX_COPY}CA: garbage\n"), "field `CA`"),
            (NIX_COPY.replace("StorePath: /nix/store/", "StorePath: /gnu/store/"), "field `StorePath`"),
        ];
        for (text, expected) in cases {
            let err = NarInfo::parse("/nix/store", &text).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    #[test]
    fn nar_urls_stay_inside_the_cache() {
        assert_eq!(nar_file("nar/x.nar.zst").unwrap(), Path::new("nar/x.nar.zst"));
        for bad in ["/etc/passwd", "../x.nar", "nar/../../x", "./nar/x", "https://example.org/nar/x", "nar/\0"] {
            assert!(nar_file(bad).is_err(), "{bad:?} accepted");
        }
    }
}
