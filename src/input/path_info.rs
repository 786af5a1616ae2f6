//! `nix path-info --json [--recursive]`, in the array form of older Nix
//! and the object form of newer Nix.

use std::fmt;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use super::json::*;
use crate::format::content_address::ContentAddress;
use crate::format::path_info::PathInfo;
use crate::format::store_path::StorePath;

/// Parses the output of `nix path-info --json --recursive`.
pub fn parse_path_info_json(json: &str, store_dir: &str) -> Result<Vec<PathInfo>> {
    let reader = Reader::new(store_dir);
    reader.read(json, |de, reader| de.deserialize_any(PathInfoVisitor { reader }))
}

/// One path-info entry as read, before validation.
#[derive(Deserialize)]
pub(crate) struct RawEntry<'a> {
    #[serde(borrow, default)]
    path: Loose<'a>,
    #[serde(borrow, default, rename = "narHash")]
    nar_hash: Loose<'a>,
    #[serde(borrow, default, rename = "narSize")]
    nar_size: Loose<'a>,
    #[serde(borrow, default)]
    references: Loose<'a>,
    #[serde(borrow, default)]
    deriver: Loose<'a>,
    #[serde(borrow, default)]
    signatures: Loose<'a>,
    #[serde(borrow, default)]
    ca: Loose<'a>,
    #[serde(borrow, default)]
    valid: Loose<'a>,
}

impl RawEntry<'_> {
    /// `key` is the store path the entry was listed under, in the object form.
    fn validate(self, key: Option<&str>, store_dir: &str) -> Result<PathInfo> {
        let path = match (key, &self.path) {
            (Some(key), Loose::Missing) => key,
            (Some(key), Loose::Str(p)) if p == key => key,
            (Some(key), other) => bail!("{key}: field `path` is {other}, not the store path it is listed under"),
            (None, Loose::Str(p)) => p,
            (None, other) => return Err(wrong("field `path`", "a string", other)),
        };
        let path = StorePath::parse(store_dir, path).map_err(|e| anyhow!("field `path`: {e}"))?;
        let field = |name: &str| format!("{path}: field `{name}`");
        if let Loose::Bool(false) = self.valid {
            bail!(
                "{path}: not a valid store path in this store (path-info says \"valid\": false); build or fetch \
                 it first (nix-build, nix-store --realise) and run nix path-info again"
            );
        }

        let nar_hash = match &self.nar_hash {
            Loose::Str(h) => h.parse().map_err(|e| anyhow!("{}: {h:?}: {e}", field("narHash")))?,
            other => return Err(wrong(field("narHash"), "a string", other)),
        };
        let nar_size = match &self.nar_size {
            Loose::Unsigned(n) => *n,
            other => return Err(wrong(field("narSize"), "a non-negative integer", other)),
        };
        let mut references = match &self.references {
            Loose::List(refs) => refs
                .iter()
                .map(|r| match r {
                    Loose::Str(r) => {
                        StorePath::parse(store_dir, r).map_err(|e| anyhow!("{}: {e}", field("references")))
                    }
                    other => bail!("{} must hold strings, not {}", field("references"), other.kind()),
                })
                .collect::<Result<Vec<_>>>()?,
            other => return Err(wrong(field("references"), "a list", other)),
        };
        references.sort();
        references.dedup();
        let deriver = match &self.deriver {
            Loose::Missing | Loose::Null => None,
            Loose::Str(d) => {
                let d = StorePath::parse(store_dir, d).map_err(|e| anyhow!("{}: {e}", field("deriver")))?;
                if !d.name().ends_with(".drv") {
                    bail!("{}: {d:?} is not a derivation: its name does not end in .drv", field("deriver"));
                }
                Some(d)
            }
            other => bail!("{} must be a string or null, not {}", field("deriver"), other.kind()),
        };
        let signatures = match &self.signatures {
            Loose::Missing | Loose::Null => Vec::new(),
            Loose::List(sigs) => sigs
                .iter()
                .map(|s| match s {
                    Loose::Str(s) => s.parse().map_err(|e| anyhow!("{}: {e}", field("signatures"))),
                    other => bail!("{} must hold strings, not {}", field("signatures"), other.kind()),
                })
                .collect::<Result<_>>()?,
            other => bail!("{} must be a list or null, not {}", field("signatures"), other.kind()),
        };
        let ca: Option<ContentAddress> = match &self.ca {
            Loose::Missing | Loose::Null => None,
            Loose::Str(ca) => Some(ca.parse().map_err(|e| anyhow!("{}: {e}", field("ca")))?),
            other => bail!("{} must be a string or null, not {}", field("ca"), other.kind()),
        };
        if let Some(ca) = &ca {
            ca.check_path(&path, &references).map_err(|e| anyhow!("{}: {e}; Nix would refuse it", field("ca")))?;
        }
        Ok(PathInfo { path, nar_hash, nar_size, references, deriver, signatures, ca })
    }
}

/// `nix path-info --json`: an array on Nix before 2.19, an object keyed by
/// store path on newer Nix (where `null` marks a path that is not valid).
struct PathInfoVisitor<'r, 's> {
    reader: &'r Reader<'s>,
}

impl<'de> Visitor<'de> for PathInfoVisitor<'_, '_> {
    type Value = Vec<PathInfo>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the JSON array or object that `nix path-info --json --recursive` prints")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.reader.entries(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let reader = self.reader;
        let mut infos = Vec::new();
        while let Some(key) = map.next_key::<Loose>()? {
            let Loose::Str(path) = key else { unreachable!("JSON object keys are strings") };
            let raw = map.next_value::<Option<RawEntry>>().map_err(reader.failed_in(|| format!("{path}")))?;
            let info = match raw {
                Some(raw) => raw.validate(Some(&path), reader.store_dir),
                None => Err(anyhow!(
                    "{path}: not a valid store path in this store (path-info gave null); build or fetch it first \
                     (nix-build, nix-store --realise) and run nix path-info again"
                )),
            };
            infos.push(info.map_err(|e| reader.reject(e))?);
        }
        check_unique(infos).map_err(|e| reader.reject(e))
    }
}

/// Sorts by store path. A path listed twice is harmless if both entries
/// agree; if they disagree, one of them is wrong and we cannot know which.
fn check_unique(mut infos: Vec<PathInfo>) -> Result<Vec<PathInfo>> {
    // In place, without the scratch space a stable sort takes: a closure can
    // have hundreds of thousands of entries, and equal paths must be equal
    // entries anyway.
    infos.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    if let Some(pair) = infos.windows(2).find(|pair| pair[0].path == pair[1].path && pair[0] != pair[1]) {
        bail!(
            "{}: listed twice with different information; give the output of one `nix path-info --json \
             --recursive` run",
            pair[0].path
        );
    }
    infos.dedup();
    Ok(infos)
}

impl Reader<'_> {
    /// Entries of the array form, validated one by one as they are read.
    pub(crate) fn entries<'de, A: SeqAccess<'de>>(&self, mut seq: A) -> Result<Vec<PathInfo>, A::Error> {
        let mut infos = Vec::new();
        let mut i = 0;
        while let Some(raw) = seq.next_element::<RawEntry>().map_err(self.failed_in(|| format!("closure entry {i}")))? {
            let info = raw.validate(None, self.store_dir).with_context(|| format!("closure entry {i}"));
            infos.push(info.map_err(|e| self.reject(e))?);
            i += 1;
        }
        check_unique(infos).map_err(|e| self.reject(e))
    }
}
