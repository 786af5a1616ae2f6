//! Reading what Nix tells us about the closure.
//!
//! Two inputs describe the same thing, a list of store paths with their NAR
//! hash, NAR size and references:
//!
//! * the structured-attrs file a builder gets (`$NIX_ATTRS_JSON_FILE`), where
//!   `exportReferencesGraph.closure = rootPaths` becomes a top-level `closure`
//!   list next to the derivation's own attributes and `outputs`;
//! * `nix path-info --json --recursive`, an array of entries on older Nix and an
//!   object keyed by store path on newer Nix.
//!
//! Parsing is strict about what we rely on (every field is named in the error
//! along with the store path it belongs to) and ignores fields we do not use,
//! such as `closureSize` and `valid`, so newer Nix versions keep working.
//!
//! ```
//! use make_binary_cache::closure::Attrs;
//! let json = r#"{
//!   "outputs": {"out": "/nix/store/00000000000000000000000000000000-binary-cache"},
//!   "compression": "xz",
//!   "closure": [{"path": "/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a",
//!                "narHash": "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw",
//!                "narSize": 952, "references": [], "closureSize": 952}]
//! }"#;
//! let attrs = Attrs::parse(json, "/nix/store").unwrap();
//! assert_eq!(attrs.closure[0].nar_size, 952);
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use crate::compression::Compression;
use crate::format::hash::Sha256Hash;
use crate::format::store_path::StorePath;

/// What Nix knows about one store path: the facts a narinfo carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub path: StorePath,
    pub nar_hash: Sha256Hash,
    pub nar_size: u64,
    /// Sorted, and may contain `path` itself.
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    pub signatures: Vec<String>,
    pub ca: Option<String>,
}

/// The parts of a structured-attrs file we use.
#[derive(Debug)]
pub struct Attrs {
    pub closure: Vec<PathInfo>,
    /// `outputs.out`; absent when the file is not from a real build.
    pub out: Option<PathBuf>,
    pub compression: Option<Compression>,
    pub compression_level: Option<i32>,
    /// `maxMemory`: bytes, from an integer or a size such as "1.5G".
    pub max_memory: Option<u64>,
}

impl Attrs {
    pub fn parse(json: &str, store_dir: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json).context("not valid JSON")?;
        let top = value.as_object().ok_or_else(|| anyhow!("expected a JSON object at the top level"))?;

        let closure = match top.get("closure") {
            Some(Value::Array(entries)) => parse_entries(entries.iter(), store_dir)?,
            Some(_) => bail!("field `closure` must be a list of path infos"),
            None => bail!(
                "field `closure` is missing: the derivation must set `exportReferencesGraph.closure` \
                 with `__structuredAttrs = true`"
            ),
        };
        let out = match top.get("outputs") {
            None | Some(Value::Null) => None,
            Some(outputs) => Some(PathBuf::from(
                outputs
                    .get("out")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("field `outputs.out` must be a string"))?,
            )),
        };
        let compression = match top.get("compression") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.parse().map_err(|e: String| anyhow!("field `compression`: {e}"))?),
            Some(_) => bail!("field `compression` must be a string"),
        };
        let compression_level = match top.get("compressionLevel") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| anyhow!("field `compressionLevel` must be an integer or null, not {v}"))?,
            ),
        };
        let max_memory = parse_max_memory(top.get("maxMemory"))?;
        Ok(Self { closure, out, compression, compression_level, max_memory })
    }
}

/// Parses the output of `nix path-info --json --recursive`.
pub fn parse_path_info_json(json: &str, store_dir: &str) -> Result<Vec<PathInfo>> {
    let value: Value = serde_json::from_str(json).context("not valid JSON")?;
    match value {
        // Nix before 2.19: `[{"path": …, …}, …]`.
        Value::Array(entries) => parse_entries(entries.iter(), store_dir),
        // Newer Nix: `{"/nix/store/…": {…} | null, …}`, the path only as the key.
        Value::Object(by_path) => {
            let mut infos = Vec::with_capacity(by_path.len());
            for (path, entry) in &by_path {
                let Value::Object(fields) = entry else {
                    bail!("{path}: not a valid store path in this store (path-info gave {entry})");
                };
                let mut fields = fields.clone();
                fields.insert("path".into(), Value::String(path.clone()));
                infos.push(parse_entry(&fields, store_dir)?);
            }
            check_unique(infos)
        }
        _ => bail!("expected the JSON array or object that `nix path-info --json --recursive` prints"),
    }
}

fn parse_entries<'a>(entries: impl Iterator<Item = &'a Value>, store_dir: &str) -> Result<Vec<PathInfo>> {
    let infos = entries
        .enumerate()
        .map(|(i, entry)| {
            let fields = entry.as_object().ok_or_else(|| anyhow!("closure entry {i} is not an object"))?;
            parse_entry(fields, store_dir).with_context(|| format!("closure entry {i}"))
        })
        .collect::<Result<Vec<_>>>()?;
    check_unique(infos)
}

fn parse_entry(fields: &Map<String, Value>, store_dir: &str) -> Result<PathInfo> {
    let path = match fields.get("path") {
        Some(Value::String(p)) => StorePath::parse(store_dir, p).map_err(|e| anyhow!("field `path`: {e}"))?,
        Some(_) => bail!("field `path` must be a string"),
        None => bail!("field `path` is missing"),
    };
    let in_path = |field: &str| format!("{path}: field `{field}`");

    let nar_hash = match fields.get("narHash") {
        Some(Value::String(h)) => h.parse().map_err(|e| anyhow!("{}: {e}", in_path("narHash")))?,
        Some(_) => bail!("{} must be a string", in_path("narHash")),
        None => bail!("{} is missing", in_path("narHash")),
    };
    let nar_size = match fields.get("narSize") {
        Some(v) => v.as_u64().ok_or_else(|| anyhow!("{} must be a non-negative integer", in_path("narSize")))?,
        None => bail!("{} is missing", in_path("narSize")),
    };
    let mut references = match fields.get("references") {
        Some(Value::Array(refs)) => refs
            .iter()
            .map(|r| {
                r.as_str()
                    .ok_or_else(|| anyhow!("{} must hold strings", in_path("references")))
                    .and_then(|r| StorePath::parse(store_dir, r).map_err(|e| anyhow!("{}: {e}", in_path("references"))))
            })
            .collect::<Result<Vec<_>>>()?,
        Some(_) => bail!("{} must be a list", in_path("references")),
        None => bail!("{} is missing", in_path("references")),
    };
    references.sort();
    references.dedup();
    let deriver = match fields.get("deriver") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => {
            Some(StorePath::parse(store_dir, d).map_err(|e| anyhow!("{}: {e}", in_path("deriver")))?)
        }
        Some(_) => bail!("{} must be a string", in_path("deriver")),
    };
    let signatures = match fields.get("signatures") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(sigs)) => sigs
            .iter()
            .map(|s| {
                s.as_str().map(str::to_owned).ok_or_else(|| anyhow!("{} must hold strings", in_path("signatures")))
            })
            .collect::<Result<_>>()?,
        Some(_) => bail!("{} must be a list", in_path("signatures")),
    };
    let ca = match fields.get("ca") {
        None | Some(Value::Null) => None,
        Some(Value::String(ca)) if !ca.is_empty() && !ca.contains('\n') => Some(ca.clone()),
        Some(_) => bail!("{} must be a non-empty one-line string", in_path("ca")),
    };
    Ok(PathInfo { path, nar_hash, nar_size, references, deriver, signatures, ca })
}

/// A path listed twice is harmless if both entries agree; if they disagree, one
/// of them is wrong and we cannot know which.
fn check_unique(infos: Vec<PathInfo>) -> Result<Vec<PathInfo>> {
    let mut by_path: BTreeMap<StorePath, PathInfo> = BTreeMap::new();
    for info in infos {
        match by_path.get(&info.path) {
            Some(seen) if *seen != info => bail!("{}: listed twice with different information", info.path),
            Some(_) => {}
            None => {
                by_path.insert(info.path.clone(), info);
            }
        }
    }
    Ok(by_path.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a";
    const B: &str = "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b";
    const HASH: &str = "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw";

    // Shaped as Nix 2.8 writes the builder's attrs file.
    fn attrs_json() -> String {
        format!(
            r#"{{"closure":[
                {{"closureSize":1072,"narHash":"{HASH}","narSize":952,"path":"{B}","references":["{A}","{B}"]}},
                {{"closureSize":120,"narHash":"{HASH}","narSize":120,"path":"{A}","references":[],
                  "valid":true,"ca":"fixed:r:sha256:{}", "somethingNew":{{"x":1}}}}],
              "compression":"xz","compressionLevel":null,"name":"binary-cache",
              "outputs":{{"out":"/nix/store/00000000000000000000000000000000-binary-cache"}}}}"#,
            &HASH[7..]
        )
    }

    #[test]
    fn parses_builder_attrs() {
        let attrs = Attrs::parse(&attrs_json(), "/nix/store").unwrap();
        assert_eq!(attrs.compression, Some(Compression::Xz));
        assert_eq!(attrs.compression_level, None);
        assert_eq!(attrs.out.unwrap().to_str().unwrap(), "/nix/store/00000000000000000000000000000000-binary-cache");
        // Sorted by path, references sorted, `ca` kept, unknown fields ignored.
        let [a, b] = &attrs.closure[..] else { panic!("expected two entries") };
        assert_eq!((a.path.as_str(), b.path.as_str()), (A, B));
        assert_eq!(b.references.iter().map(StorePath::as_str).collect::<Vec<_>>(), [A, B]);
        assert_eq!(a.ca.as_deref(), Some(&*format!("fixed:r:sha256:{}", &HASH[7..])));
        assert_eq!(b.nar_hash.to_string(), HASH);
    }

    #[test]
    fn parses_both_path_info_forms() {
        let sri = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let array = format!(
            r#"[{{"path":"{A}","narHash":"{sri}","narSize":8,"references":[],"deriver":null,"signatures":["k:s"]}}]"#
        );
        let object = format!(
            r#"{{"{A}":{{"narHash":"{sri}","narSize":8,"references":[],"deriver":null,"signatures":["k:s"],"ca":null}}}}"#
        );
        let from_array = parse_path_info_json(&array, "/nix/store").unwrap();
        let from_object = parse_path_info_json(&object, "/nix/store").unwrap();
        assert_eq!(from_array, from_object);
        assert_eq!(from_array[0].signatures, ["k:s"]);
    }

    fn attrs_error(json: &str) -> String {
        format!("{:#}", Attrs::parse(json, "/nix/store").unwrap_err())
    }

    #[test]
    fn errors_name_the_field_and_the_path() {
        let entry = |fields: &str| format!(r#"{{"closure":[{{"path":"{A}",{fields}}}]}}"#);
        let cases = [
            (entry(r#""narSize":1,"references":[]"#), "`narHash` is missing"),
            (entry(r#""narHash":"sha256:abc","narSize":1,"references":[]"#), "`narHash`"),
            (entry(&format!(r#""narHash":"{HASH}","narSize":-1,"references":[]"#)), "`narSize` must be"),
            (entry(&format!(r#""narHash":"{HASH}","narSize":1,"references":["/tmp/x"]"#)), "`references`"),
            (entry(&format!(r#""narHash":"{HASH}","narSize":1"#)), "`references` is missing"),
        ];
        for (json, expected) in cases {
            let err = attrs_error(&json);
            assert!(err.contains(expected) && err.contains(A), "{err:?} lacks {expected:?} or the path");
        }
        assert!(attrs_error("{}").contains("`closure` is missing"));
        assert!(attrs_error("[").contains("not valid JSON"));
        assert!(attrs_error(r#"{"closure":[],"compression":"gzip"}"#).contains("gzip"));
        assert!(attrs_error(r#"{"closure":[],"compressionLevel":"9"}"#).contains("compressionLevel"));
        assert!(attrs_error(r#"{"closure":[{"path":"/nix/store/x"}]}"#).contains("not a valid store path"));
    }

    #[test]
    fn conflicting_duplicates_are_an_error() {
        let json = format!(
            r#"[{{"path":"{A}","narHash":"{HASH}","narSize":1,"references":[]}},
                {{"path":"{A}","narHash":"{HASH}","narSize":2,"references":[]}}]"#
        );
        let err = format!("{:#}", parse_path_info_json(&json, "/nix/store").unwrap_err());
        assert!(err.contains("listed twice"), "{err}");
    }
}

/// `maxMemory` in the attrs file: see [`crate::resources::parse_size`].
fn parse_max_memory(value: Option<&Value>) -> Result<Option<u64>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            Ok(Some(crate::resources::parse_size(s).map_err(|e| anyhow!("field `maxMemory`: {e}"))?))
        }
        Some(v) => match v.as_u64().filter(|&n| n > 0) {
            Some(n) => Ok(Some(n)),
            None => bail!("field `maxMemory` must be null, a positive integer of bytes or a size string, not {v}"),
        },
    }
}

/// Checks that the closure is one: every reference of every path is in it,
/// or `is_cached` (the cache being written to already has it). A cache with
/// a path but not its references looks fine but cannot be copied from: Nix
/// substitutes a path's references first and fails on the missing one. The
/// usual cause is `nix path-info --json` without `--recursive`.
pub fn check_complete(closure: &[PathInfo], is_cached: impl Fn(&StorePath) -> bool) -> Result<()> {
    let listed: std::collections::BTreeSet<&StorePath> = closure.iter().map(|info| &info.path).collect();
    let mut missing = closure.iter().flat_map(|info| {
        info.references.iter().filter(|r| !listed.contains(r) && !is_cached(r)).map(move |r| (&info.path, r))
    });
    let Some((path, reference)) = missing.next() else { return Ok(()) };
    let more = missing.map(|(_, r)| r).collect::<std::collections::BTreeSet<_>>();
    let more = more.iter().filter(|r| **r != reference).count();
    let others = if more > 0 { format!(" (and {more} more missing references)") } else { String::new() };
    bail!(
        "the closure is incomplete: {path} refers to {reference}, which is neither in it nor already in the \
         cache{others}; give the whole closure (`nix path-info --json --recursive`), or use --partial for a \
         cache that leaves the missing paths to another substituter"
    )
}

#[cfg(test)]
mod completeness_tests {
    use super::*;

    fn info(path: &str, references: &[&str]) -> PathInfo {
        let parse = |p: &str| StorePath::parse("/nix/store", p).unwrap();
        PathInfo {
            path: parse(path),
            nar_hash: "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw".parse().unwrap(),
            nar_size: 8,
            references: references.iter().map(|r| parse(r)).collect(),
            deriver: None,
            signatures: Vec::new(),
            ca: None,
        }
    }

    const A: &str = "/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a";
    const B: &str = "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b";
    const C: &str = "/nix/store/00000000000000000000000000000000-c";

    #[test]
    fn every_reference_must_be_in_the_closure_or_the_cache() {
        let nothing_cached = |_: &StorePath| false;
        // Self-references and references within the closure are fine.
        assert!(check_complete(&[info(A, &[A, B]), info(B, &[])], nothing_cached).is_ok());
        let err = check_complete(&[info(A, &[A, B, C])], nothing_cached).unwrap_err().to_string();
        assert!(err.contains(&format!("{A} refers to {B}")), "{err}");
        assert!(err.contains("and 1 more") && err.contains("--recursive") && err.contains("--partial"), "{err}");
        // Already in the cache: fine.
        assert!(check_complete(&[info(A, &[A, B, C])], |p: &StorePath| p.as_str() != A).is_ok());
        let err = check_complete(&[info(A, &[B, C])], |p: &StorePath| p.as_str() == B).unwrap_err().to_string();
        assert!(err.contains(&format!("{A} refers to {C}")) && !err.contains("more"), "{err}");
    }
}
