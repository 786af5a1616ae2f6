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
//! Parsing is strict about what we rely on and ignores fields we do not use,
//! such as `closureSize`, so newer Nix versions keep working. Every value that
//! ends up in a narinfo is validated here, where it is read, with an error
//! naming the store path and the field: store paths (and a deriver, which must
//! be a `.drv`), the NAR hash, [`Signature`]s and the [`ContentAddress`]. So a
//! signature carrying `\nURL: nar/<another NAR>` or a `ca` of `garbage` is an
//! error here, never a narinfo line.
//!
//! The JSON is read with serde into structs of borrowed, loosely typed fields
//! (`Loose`) and each entry is validated as soon as it is read, so reading
//! costs little more than the file and the result: the derivation's other
//! attributes in the attrs file and unknown fields are skipped unbuilt.
//!
//! ```
//! use make_binary_cache::input::Attrs;
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

pub mod nix;
pub mod shard;

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::compress::Compression;
use crate::format::content_address::ContentAddress;
use crate::format::hash::Sha256Hash;
use crate::format::signature::Signature;
use crate::format::store_path::StorePath;
use crate::input::shard::Shard;

/// What Nix knows about one store path: the facts a narinfo carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub path: StorePath,
    pub nar_hash: Sha256Hash,
    pub nar_size: u64,
    /// Sorted, and may contain `path` itself.
    pub references: Vec<StorePath>,
    /// A store path whose name ends in `.drv`.
    pub deriver: Option<StorePath>,
    pub signatures: Vec<Signature>,
    pub ca: Option<ContentAddress>,
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
    /// `priority`: the `Priority` of `nix-cache-info`.
    pub priority: Option<i32>,
    /// `wantMassQuery`: the `WantMassQuery` of `nix-cache-info`.
    pub want_mass_query: Option<bool>,
    /// `writeNarListing`: write `<hash part>.ls`.
    pub write_nar_listing: bool,
    /// `indexDebugInfo`: write `debuginfo/<build id>.debug`.
    pub index_debug_info: bool,
    /// `shard` and `shards`: write only this shard's part of the closure
    /// (see [`crate::input::shard`]); `None` for the whole closure.
    pub shard: Option<Shard>,
    /// `reuse`: earlier caches whose NARs may be copied (see [`crate::commands::build::reuse`]).
    pub reuse: Vec<PathBuf>,
}

impl Attrs {
    pub fn parse(json: &str, store_dir: &str) -> Result<Self> {
        let reader = Reader::new(store_dir);
        let raw = reader.read(json, |de, reader| de.deserialize_map(AttrsVisitor { reader }))?;

        let closure = raw.closure.ok_or_else(|| {
            anyhow!(
                "field `closure` is missing: the derivation must set `exportReferencesGraph.closure` \
                 with `__structuredAttrs = true`"
            )
        })?;
        let out = match raw.outputs {
            None => None,
            Some(outputs) => match outputs.out {
                Loose::Str(out) => Some(PathBuf::from(out.as_ref())),
                other => return Err(wrong("field `outputs.out`", "a string", &other)),
            },
        };
        let compression = match raw.compression {
            Loose::Missing | Loose::Null => None,
            Loose::Str(s) => Some(s.parse().map_err(|e: String| anyhow!("field `compression`: {e}"))?),
            other => bail!("field `compression` must be a string or null, not {}", other.kind()),
        };
        let compression_level = raw.compression_level.optional_integer("compressionLevel", "an integer")?;
        let max_memory = parse_max_memory(&raw.max_memory)?;
        let priority = raw.priority.optional_integer("priority", "an integer")?;
        let want_mass_query = match raw.want_mass_query {
            Loose::Missing | Loose::Null => None,
            Loose::Bool(b) => Some(b),
            v => bail!("field `wantMassQuery` must be a boolean or null, not {v}"),
        };
        let flag = |value: &Loose, field: &str| match value {
            Loose::Missing | Loose::Null => Ok(false),
            Loose::Bool(b) => Ok(*b),
            v => Err(anyhow!("field `{field}` must be a boolean, not {v}")),
        };
        let write_nar_listing = flag(&raw.write_nar_listing, "writeNarListing")?;
        let index_debug_info = flag(&raw.index_debug_info, "indexDebugInfo")?;
        let count = |value: &Loose, field: &str| value.optional_integer::<usize>(field, "a non-negative integer");
        let shard = match (count(&raw.shard, "shard")?, count(&raw.shards, "shards")?) {
            (None, None) => None,
            (Some(index), Some(count)) => Some(Shard::new(index, count)?),
            (Some(_), None) => bail!("field `shard` is given without `shards`"),
            (None, Some(_)) => bail!("field `shards` is given without `shard`"),
        };
        let reuse = match raw.reuse {
            Loose::Missing | Loose::Null => Vec::new(),
            Loose::List(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Loose::Str(dir) if !dir.is_empty() => Ok(PathBuf::from(dir.as_ref())),
                    Loose::Str(_) => Err(anyhow!("field `reuse`: element {i} must be a directory, not empty")),
                    other => Err(anyhow!("field `reuse`: element {i} must be a directory, not {}", other.kind())),
                })
                .collect::<Result<_>>()?,
            v => bail!("field `reuse` must be a list of directories, not {}", v.kind()),
        };
        Ok(Self {
            closure,
            out,
            compression,
            compression_level,
            max_memory,
            priority,
            want_mass_query,
            write_nar_listing,
            index_debug_info,
            shard,
            reuse,
        })
    }
}

/// Parses the output of `nix path-info --json --recursive`.
pub fn parse_path_info_json(json: &str, store_dir: &str) -> Result<Vec<PathInfo>> {
    let reader = Reader::new(store_dir);
    reader.read(json, |de, reader| de.deserialize_any(PathInfoVisitor { reader }))
}

/// Reads one JSON document, keeping our own errors (which name the entry, the
/// store path and the field) apart from serde's, which cannot carry them.
struct Reader<'s> {
    store_dir: &'s str,
    /// Set when a value was rejected: the error to report.
    invalid: RefCell<Option<anyhow::Error>>,
    /// Set when serde failed inside a part we can name, e.g. `closure entry 3`.
    failed_in: RefCell<Option<String>>,
}

impl<'s> Reader<'s> {
    fn new(store_dir: &'s str) -> Self {
        Self { store_dir, invalid: RefCell::new(None), failed_in: RefCell::new(None) }
    }

    fn read<'de, T>(
        &self,
        json: &'de str,
        parse: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::StrRead<'de>>, &Self) -> serde_json::Result<T>,
    ) -> Result<T> {
        let mut de = serde_json::Deserializer::from_str(json);
        let result = parse(&mut de, self).and_then(|value| de.end().map(|()| value));
        result.map_err(|e| {
            if let Some(invalid) = self.invalid.take() {
                return invalid;
            }
            let syntax = e.is_syntax() || e.is_eof();
            let e = anyhow!(e);
            let e = match self.failed_in.take() {
                Some(part) => e.context(part),
                None => e,
            };
            if syntax { e.context("not valid JSON") } else { e }
        })
    }

    /// Records `error` as the reason to stop and returns the serde error that stops.
    fn reject<E: de::Error>(&self, error: anyhow::Error) -> E {
        *self.invalid.borrow_mut() = Some(error);
        E::custom("invalid value")
    }

    fn failed_in<E>(&self, part: impl FnOnce() -> String) -> impl FnOnce(E) -> E {
        move |e| {
            self.failed_in.borrow_mut().get_or_insert_with(part);
            e
        }
    }

    /// Entries of the array form, validated one by one as they are read.
    fn entries<'de, A: SeqAccess<'de>>(&self, mut seq: A) -> Result<Vec<PathInfo>, A::Error> {
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

/// A JSON value reduced to what validation needs: strings borrowed from the
/// input where they hold no escapes, lists kept, objects skipped unbuilt.
#[derive(Debug, Default)]
enum Loose<'a> {
    /// The field is absent (`#[serde(default)]`).
    #[default]
    Missing,
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(Cow<'a, str>),
    List(Vec<Loose<'a>>),
    Object,
}

impl Loose<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Unsigned(_) | Self::Signed(_) | Self::Float(_) => "a number",
            Self::Str(_) => "a string",
            Self::List(_) => "a list",
            Self::Object => "an object",
        }
    }

    fn integer(&self) -> Option<i64> {
        match *self {
            Self::Unsigned(n) => i64::try_from(n).ok(),
            Self::Signed(n) => Some(n),
            _ => None,
        }
    }

    /// An optional integer field as a `T`: `None` when missing or null, an
    /// error saying it must be `what` (or null) when it is no such `T`.
    fn optional_integer<T: TryFrom<i64>>(&self, field: &str, what: &str) -> Result<Option<T>> {
        match self {
            Self::Missing | Self::Null => Ok(None),
            v => v
                .integer()
                .and_then(|n| T::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| anyhow!("field `{field}` must be {what} or null, not {v}")),
        }
    }
}

/// The error for a field that is missing or holds the wrong kind of value.
fn wrong(field: impl fmt::Display, expected: &str, found: &Loose) -> anyhow::Error {
    match found {
        Loose::Missing => anyhow!("{field} is missing"),
        other => anyhow!("{field} must be {expected}, not {}", other.kind()),
    }
}

impl fmt::Display for Loose<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Unsigned(n) => write!(f, "{n}"),
            Self::Signed(n) => write!(f, "{n}"),
            Self::Float(n) => write!(f, "{n}"),
            Self::Str(s) => write!(f, "{s:?}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor(PhantomData))
    }
}

struct LooseVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LooseVisitor<'a> {
    type Value = Loose<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(b))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Loose::Unsigned(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Loose::Signed(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Loose::Float(n))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Loose::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Object)
    }
}

/// One path-info entry as read, before validation.
#[derive(Deserialize)]
struct RawEntry<'a> {
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

/// The attributes of a structured-attrs file we use; the derivation's other
/// attributes are skipped without being built.
#[derive(Default)]
struct RawAttrs<'a> {
    closure: Option<Vec<PathInfo>>,
    outputs: Option<RawOutputs<'a>>,
    compression: Loose<'a>,
    compression_level: Loose<'a>,
    max_memory: Loose<'a>,
    priority: Loose<'a>,
    want_mass_query: Loose<'a>,
    write_nar_listing: Loose<'a>,
    index_debug_info: Loose<'a>,
    shard: Loose<'a>,
    shards: Loose<'a>,
    reuse: Loose<'a>,
}

#[derive(Deserialize)]
struct RawOutputs<'a> {
    #[serde(borrow, default)]
    out: Loose<'a>,
}

struct AttrsVisitor<'r, 's> {
    reader: &'r Reader<'s>,
}

impl<'de> Visitor<'de> for AttrsVisitor<'_, '_> {
    type Value = RawAttrs<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object at the top level")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let reader = self.reader;
        let mut attrs = RawAttrs::default();
        let mut seen: Vec<&'static str> = Vec::new();
        while let Some(key) = map.next_key::<Loose>()? {
            let Loose::Str(key) = key else { unreachable!("JSON object keys are strings") };
            let name = match &*key {
                "closure" => "closure",
                "outputs" => "outputs",
                "compression" => "compression",
                "compressionLevel" => "compressionLevel",
                "maxMemory" => "maxMemory",
                "priority" => "priority",
                "wantMassQuery" => "wantMassQuery",
                "writeNarListing" => "writeNarListing",
                "indexDebugInfo" => "indexDebugInfo",
                "shard" => "shard",
                "shards" => "shards",
                "reuse" => "reuse",
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if seen.contains(&name) {
                return Err(reader.reject(anyhow!("field `{name}` appears twice")));
            }
            seen.push(name);
            let failed_in = || reader.failed_in(move || format!("field `{name}`"));
            match name {
                "closure" => attrs.closure = Some(map.next_value_seed(ClosureSeed { reader }).map_err(failed_in())?),
                "outputs" => attrs.outputs = map.next_value().map_err(failed_in())?,
                "compression" => attrs.compression = map.next_value().map_err(failed_in())?,
                "compressionLevel" => attrs.compression_level = map.next_value().map_err(failed_in())?,
                "maxMemory" => attrs.max_memory = map.next_value().map_err(failed_in())?,
                "priority" => attrs.priority = map.next_value().map_err(failed_in())?,
                "wantMassQuery" => attrs.want_mass_query = map.next_value().map_err(failed_in())?,
                "writeNarListing" => attrs.write_nar_listing = map.next_value().map_err(failed_in())?,
                "indexDebugInfo" => attrs.index_debug_info = map.next_value().map_err(failed_in())?,
                "shard" => attrs.shard = map.next_value().map_err(failed_in())?,
                "reuse" => attrs.reuse = map.next_value().map_err(failed_in())?,
                _ => attrs.shards = map.next_value().map_err(failed_in())?,
            }
        }
        Ok(attrs)
    }
}

/// The attrs file's `closure` list.
struct ClosureSeed<'r, 's> {
    reader: &'r Reader<'s>,
}

impl<'de> DeserializeSeed<'de> for ClosureSeed<'_, '_> {
    type Value = Vec<PathInfo>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ClosureSeed<'_, '_> {
    type Value = Vec<PathInfo>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of path infos")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.reader.entries(seq)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Content-addressed (`CA` below, referring to itself and to `B`).
    const A: &str = "/nix/store/sqz3s1nwrsy2y0436d6wg9hw7abfpqf0-a";
    const B: &str = "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b";
    const HASH: &str = "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw";
    /// What an invalid path's error says to do.
    const HINT: &str = "; build or fetch it first (nix-build, nix-store --realise) and run nix path-info again";
    const SIG: &str =
        "cache.example.org-1:aItucb2jMEdvkqYZji7WOy01UemOpGXpZCYvu0qXLmVNaoV4Mj/41K8uzPznXew6f1YgBxjkdjZl/N3le94ZWA==";

    // Shaped as Nix 2.8 writes the builder's attrs file.
    fn attrs_json() -> String {
        format!(
            r#"{{"closure":[
                {{"closureSize":1072,"narHash":"{HASH}","narSize":952,"path":"{B}","references":["{A}","{B}"]}},
                {{"closureSize":120,"narHash":"{HASH}","narSize":120,"path":"{A}","references":["{A}","{B}"],
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
        assert_eq!(a.ca.unwrap().to_string(), format!("fixed:r:sha256:{}", &HASH[7..]));
        assert_eq!(b.nar_hash.to_string(), HASH);
    }

    #[test]
    fn parses_both_path_info_forms() {
        let sri = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let array = format!(
            r#"[{{"path":"{A}","narHash":"{sri}","narSize":8,"references":[],"deriver":null,"signatures":["{SIG}"]}}]"#
        );
        let object = format!(
            r#"{{"{A}":{{"narHash":"{sri}","narSize":8,"references":[],"deriver":null,"signatures":["{SIG}"],"ca":null}}}}"#
        );
        let from_array = parse_path_info_json(&array, "/nix/store").unwrap();
        let from_object = parse_path_info_json(&object, "/nix/store").unwrap();
        assert_eq!(from_array, from_object);
        assert_eq!(from_array[0].signatures, [SIG.parse().unwrap()]);
    }

    fn attrs_error(json: &str) -> String {
        format!("{:#}", Attrs::parse(json, "/nix/store").unwrap_err())
    }

    #[test]
    fn object_form_entries_may_repeat_their_path() {
        let object = format!(r#"{{"{A}":{{"path":"{A}","narHash":"{HASH}","narSize":8,"references":[]}}}}"#);
        assert_eq!(parse_path_info_json(&object, "/nix/store").unwrap()[0].path.as_str(), A);
    }

    #[test]
    fn escaped_strings_read_like_plain_ones() {
        // JSON may escape `/`; such strings cannot be borrowed from the input.
        let escaped = A.replace('/', "\\/");
        let json = format!(r#"[{{"path":"{escaped}","narHash":"{HASH}","narSize":8,"references":["{escaped}"]}}]"#);
        let info = &parse_path_info_json(&json, "/nix/store").unwrap()[0];
        assert_eq!((info.path.as_str(), info.references[0].as_str()), (A, A));
    }

    #[test]
    fn compression_level_may_be_negative() {
        let level = |v: &str| Attrs::parse(&format!(r#"{{"closure":[],"compressionLevel":{v}}}"#), "/nix/store");
        assert_eq!(level("9").unwrap().compression_level, Some(9));
        assert_eq!(level("-5").unwrap().compression_level, Some(-5));
    }

    #[test]
    fn errors_name_the_entry_they_are_in() {
        let entry = format!(r#"{{"path":"{A}","narHash":"{HASH}","narSize":8,"references":[]}}"#);
        let json = format!(r#"[{entry},{entry},{{"path":"{B}"}}]"#);
        let err = format!("{:#}", parse_path_info_json(&json, "/nix/store").unwrap_err());
        assert!(err.starts_with("closure entry 2: "), "{err}");
    }

    #[test]
    fn priority_and_want_mass_query_are_typed() {
        let parse = |v: &str| Attrs::parse(&format!(r#"{{"closure":[],{v}}}"#), "/nix/store");
        let attrs = parse(r#""priority":30,"wantMassQuery":true"#).unwrap();
        assert_eq!((attrs.priority, attrs.want_mass_query), (Some(30), Some(true)));
        let attrs = parse(r#""priority":null,"wantMassQuery":null"#).unwrap();
        assert_eq!((attrs.priority, attrs.want_mass_query), (None, None));
        let attrs = parse(r#""writeNarListing":true,"indexDebugInfo":false"#).unwrap();
        assert_eq!((attrs.write_nar_listing, attrs.index_debug_info), (true, false));
        for (bad, field) in [
            (r#""priority":"30""#, "`priority`"),
            (r#""priority":1.5"#, "`priority`"),
            (r#""wantMassQuery":1"#, "`wantMassQuery`"),
            (r#""writeNarListing":"yes""#, "`writeNarListing`"),
            (r#""indexDebugInfo":0"#, "`indexDebugInfo`"),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(field), "{bad}: {err}");
        }
    }

    #[test]
    fn shard_and_shards_come_together_and_are_checked() {
        let parse = |v: &str| Attrs::parse(&format!(r#"{{"closure":[]{v}}}"#), "/nix/store");
        assert_eq!(parse("").unwrap().shard, None);
        assert_eq!(parse(r#","shard":null,"shards":null"#).unwrap().shard, None);
        assert_eq!(parse(r#","shard":1,"shards":3"#).unwrap().shard, Some(Shard { index: 1, count: 3 }));
        for (bad, expected) in [
            (r#","shard":0"#, "`shard` is given without `shards`"),
            (r#","shards":2"#, "`shards` is given without `shard`"),
            (r#","shard":2,"shards":2"#, "`shard` must be below `shards` (2)"),
            (r#","shard":0,"shards":0"#, "`shards` must be at least 1"),
            (r#","shard":-1,"shards":2"#, "`shard` must be a non-negative integer"),
            (r#","shard":0,"shards":"2""#, "`shards` must be a non-negative integer"),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn reuse_is_a_list_of_directories() {
        let parse = |v: &str| Attrs::parse(&format!(r#"{{"closure":[],{v}}}"#), "/nix/store");
        assert!(parse(r#""priority":null"#).unwrap().reuse.is_empty());
        let attrs = parse(r#""reuse":["/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-cache","/srv/c"]"#).unwrap();
        assert_eq!(attrs.reuse, [PathBuf::from("/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-cache"), "/srv/c".into()]);
        for (bad, says) in [
            (r#""reuse":"/srv/c""#, "field `reuse` must be a list of directories, not a string"),
            (r#""reuse":["/srv/c",1]"#, "field `reuse`: element 1 must be a directory, not a number"),
            (r#""reuse":[""]"#, "field `reuse`: element 0 must be a directory, not empty"),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn max_memory_is_a_size_or_bytes() {
        let max_memory = |v: &str| Attrs::parse(&format!(r#"{{"closure":[],"maxMemory":{v}}}"#), "/nix/store");
        assert_eq!(max_memory("null").unwrap().max_memory, None);
        assert_eq!(max_memory(r#""1G""#).unwrap().max_memory, Some(1 << 30));
        assert_eq!(max_memory("4096").unwrap().max_memory, Some(4096));
        for bad in ["0", "-1", "true", r#""lots""#, "1.5"] {
            let err = format!("{:#}", max_memory(bad).unwrap_err());
            assert!(err.contains("`maxMemory`"), "{bad}: {err}");
        }
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
        assert!(attrs_error("{").contains("not valid JSON"));
        assert!(attrs_error("[]").contains("expected a JSON object at the top level"));
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
        assert!(err.contains("listed twice") && err.contains("give the output of one `nix path-info"), "{err}");
    }

    /// A valid entry of the array form with `changes` applied (`None` removes
    /// the field).
    fn entry_with(changes: &[(&str, Option<serde_json::Value>)]) -> String {
        use serde_json::json;
        let mut entry = json!({
            "path": A, "narHash": HASH, "narSize": 952, "references": [A, B],
            "deriver": D, "signatures": [SIG], "ca": CA,
        });
        for (field, value) in changes {
            match value {
                Some(v) => entry[*field] = v.clone(),
                None => drop(entry.as_object_mut().unwrap().remove(*field)),
            }
        }
        format!("[{entry}]")
    }

    const D: &str = "/nix/store/0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-a.drv";
    const CA: &str = "fixed:r:sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw";

    #[test]
    fn the_valid_entry_of_the_table_parses() {
        let [info] = &parse_path_info_json(&entry_with(&[]), "/nix/store").unwrap()[..] else { panic!() };
        assert_eq!(info.deriver.as_ref().unwrap().as_str(), D);
        assert_eq!(info.signatures[0].to_string(), SIG);
        assert_eq!(info.ca.unwrap().to_string(), CA);
    }

    #[test]
    fn hostile_entries_are_refused_naming_path_and_field() {
        use serde_json::{Value, json};
        let b64 = &SIG["cache.example.org-1:".len()..];
        let other_nar = "nar/0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.nar";
        let injection = format!(
            "k:s\nURL: {other_nar}\nNarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\nNarSize: 8"
        );
        let s = |v: &str| Some(Value::String(v.to_owned()));
        let e0 = "closure entry 0: ";
        type Changes<'a> = Vec<(&'a str, Option<Value>)>;
        let cases: Vec<(Changes, String)> = vec![
            // The signature injection of issue 6, and its variants.
            (
                vec![("signatures", Some(json!([injection])))],
                format!(
                    "{e0}{A}: field `signatures`: {injection:?}: the signature must be 88 characters of base64 \
                     (64 bytes), not {}",
                    injection.len() - "k:".len()
                ),
            ),
            (
                vec![("signatures", Some(json!([format!("{SIG}\nURL: {other_nar}")])))],
                format!(
                    "{e0}{A}: field `signatures`: {:?}: the signature must be 88 characters of base64 (64 bytes), \
                     not {}",
                    format!("{SIG}\nURL: {other_nar}"),
                    88 + "\nURL: ".len() + other_nar.len()
                ),
            ),
            (
                vec![("signatures", Some(json!([format!("URL x\nk:{b64}")])))],
                format!(
                    "{e0}{A}: field `signatures`: {:?}: the key name \"URL x\\nk\" contains the character ' '",
                    format!("URL x\nk:{b64}")
                ),
            ),
            (
                vec![("signatures", Some(json!([format!("k\n:{b64}")])))],
                format!(
                    "{e0}{A}: field `signatures`: {:?}: the key name \"k\\n\" contains the character '\\n'",
                    format!("k\n:{b64}")
                ),
            ),
            (
                vec![("signatures", Some(json!([format!("k\0:{b64}")])))],
                format!(
                    "{e0}{A}: field `signatures`: {:?}: the key name \"k\\0\" contains the character '\\0'",
                    format!("k\0:{b64}")
                ),
            ),
            (
                vec![("signatures", Some(json!([format!("k:{}\n=", &b64[..86])])))],
                format!(
                    "{e0}{A}: field `signatures`: {:?}: the signature is not canonical base64: Invalid symbol 10, \
                     offset 86.",
                    format!("k:{}\n=", &b64[..86])
                ),
            ),
            (
                vec![("signatures", Some(json!([format!(":{b64}")])))],
                format!("{e0}{A}: field `signatures`: {:?}: the key name is empty", format!(":{b64}")),
            ),
            (
                vec![("signatures", s("k:s"))],
                format!("{e0}{A}: field `signatures` must be a list or null, not a string"),
            ),
            (
                vec![("signatures", Some(json!([1])))],
                format!("{e0}{A}: field `signatures` must hold strings, not a number"),
            ),
            (
                vec![("signatures", Some(json!(["k:s"])))],
                format!(
                    "{e0}{A}: field `signatures`: \"k:s\": the signature must be 88 characters of base64 (64 bytes), \
                     not 1"
                ),
            ),
            // Content addresses.
            (
                vec![("ca", s("garbage"))],
                format!(
                    "{e0}{A}: field `ca`: \"garbage\" is not a content address: expected text:<algo>:<hash> or \
                     fixed:[r:|git:]<algo>:<hash>"
                ),
            ),
            (
                vec![("ca", s(""))],
                format!(
                    "{e0}{A}: field `ca`: \"\" is not a content address: expected text:<algo>:<hash> or \
                     fixed:[r:|git:]<algo>:<hash>"
                ),
            ),
            (
                vec![("ca", s(&format!("{CA}\nURL: {other_nar}")))],
                format!(
                    "{e0}{A}: field `ca`: {:?} is not a content address: {:?} has the wrong length for a sha256 \
                     hash: 64 (base16), 52 (nix32) or 44 (base64) characters expected, not {}",
                    format!("{CA}\nURL: {other_nar}"),
                    format!("{}\nURL: {other_nar}", &CA[15..]),
                    52 + "\nURL: ".len() + other_nar.len()
                ),
            ),
            (
                vec![("ca", s(&format!("{}\n", &CA[..CA.len() - 1])))],
                format!(
                    "{e0}{A}: field `ca`: {:?} is not a content address: invalid nix32 sha256 hash {:?}: \
                     '\\n' is not a nix32 character",
                    format!("{}\n", &CA[..CA.len() - 1]),
                    format!("{}\n", &CA[15..CA.len() - 1])
                ),
            ),
            (
                vec![("ca", s(&format!("{}\0", &CA[..CA.len() - 1])))],
                format!(
                    "{e0}{A}: field `ca`: {:?} is not a content address: invalid nix32 sha256 hash {:?}: \
                     '\\0' is not a nix32 character",
                    format!("{}\0", &CA[..CA.len() - 1]),
                    format!("{}\0", &CA[15..CA.len() - 1])
                ),
            ),
            (
                vec![("ca", s("fixed:r:sha256-R7aF4gUsRhN3r44sBqPGK0U7ZYtUJc+8QLSqYxiQtJs="))],
                format!(
                    "{e0}{A}: field `ca`: \"fixed:r:sha256-R7aF4gUsRhN3r44sBqPGK0U7ZYtUJc+8QLSqYxiQtJs=\" is not a \
                     content address: expected <algo>:<hash>"
                ),
            ),
            (
                vec![("ca", s(&format!("fixed:r:sha1:{}", &CA[15..])))],
                format!(
                    "{e0}{A}: field `ca`: \"fixed:r:sha1:{}\" is not a content address: \"{}\" has the wrong length \
                     for a sha1 hash: 40 (base16), 32 (nix32) or 28 (base64) characters expected, not 52",
                    &CA[15..],
                    &CA[15..]
                ),
            ),
            (
                vec![("ca", s(&format!("text:sha512:{}", &CA[15..])))],
                format!(
                    "{e0}{A}: field `ca`: \"text:sha512:{}\" is not a content address: \"{}\" has the wrong length \
                     for a sha512 hash: 128 (base16), 103 (nix32) or 88 (base64) characters expected, not 52",
                    &CA[15..],
                    &CA[15..]
                ),
            ),
            (
                vec![("ca", s("text:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs"))],
                format!(
                    "{e0}{A}: field `ca`: \"text:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs\" is not a content address: \
                     a text content address uses sha256, not sha1"
                ),
            ),
            (
                vec![("ca", s(&format!("fixed:r:sha257:{}", &CA[15..])))],
                format!(
                    "{e0}{A}: field `ca`: \"fixed:r:sha257:{}\" is not a content address: unknown hash algorithm \
                     \"sha257\" (expected md5, sha1, sha256 or sha512)",
                    &CA[15..]
                ),
            ),
            (
                vec![("ca", s("fixed:r:sha256"))],
                format!("{e0}{A}: field `ca`: \"fixed:r:sha256\" is not a content address: expected <algo>:<hash>"),
            ),
            (
                vec![("ca", s(&format!("source:{}", &CA[6..])))],
                format!(
                    "{e0}{A}: field `ca`: \"source:{}\" is not a content address: unknown prefix \"source\" \
                     (expected text or fixed)",
                    &CA[6..]
                ),
            ),
            (vec![("ca", Some(json!(1)))], format!("{e0}{A}: field `ca` must be a string or null, not a number")),
            (
                vec![("ca", Some(json!({"x": CA})))],
                format!("{e0}{A}: field `ca` must be a string or null, not an object"),
            ),
            // Derivers.
            (
                vec![("deriver", s(B))],
                format!("{e0}{A}: field `deriver`: {B:?} is not a derivation: its name does not end in .drv"),
            ),
            (
                vec![("deriver", s(&format!("{D}\nSig: {SIG}")))],
                format!(
                    "{e0}{A}: field `deriver`: {:?} is not a valid store path: name contains the character '\\n'",
                    format!("{D}\nSig: {SIG}")
                ),
            ),
            (
                vec![("deriver", s(&format!("{D}\0")))],
                format!(
                    "{e0}{A}: field `deriver`: {:?} is not a valid store path: name contains the character '\\0'",
                    format!("{D}\0")
                ),
            ),
            (
                vec![("deriver", s("/tmp/x.drv"))],
                format!("{e0}{A}: field `deriver`: \"/tmp/x.drv\" is not in the store directory /nix/store"),
            ),
            (
                vec![("deriver", s(""))],
                format!("{e0}{A}: field `deriver`: \"\" is not in the store directory /nix/store"),
            ),
            (
                vec![("deriver", s("/nix/store/0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-.drv"))],
                format!(
                    "{e0}{A}: field `deriver`: \"/nix/store/0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-.drv\" is not a valid \
                     store path: name must not start with a dot"
                ),
            ),
            (
                vec![("deriver", Some(json!(true)))],
                format!("{e0}{A}: field `deriver` must be a string or null, not a boolean"),
            ),
            // The path.
            (
                vec![("path", s(&format!("{A}\nURL: {other_nar}")))],
                format!(
                    "{e0}field `path`: {:?} is not a valid store path: name contains the character '\\n'",
                    format!("{A}\nURL: {other_nar}")
                ),
            ),
            (
                vec![("path", s(&format!("{A}\0")))],
                format!(
                    "{e0}field `path`: {:?} is not a valid store path: name contains the character '\\0'",
                    format!("{A}\0")
                ),
            ),
            (
                vec![("path", s("/nix/store/x"))],
                format!(
                    "{e0}field `path`: \"/nix/store/x\" is not a valid store path: expected <32-character hash>-<name>"
                ),
            ),
            (vec![("path", None)], format!("{e0}field `path` is missing")),
            (vec![("path", Some(json!(null)))], format!("{e0}field `path` must be a string, not null")),
            (vec![("path", Some(json!([A])))], format!("{e0}field `path` must be a string, not a list")),
            // The NAR hash and size.
            (
                vec![("narHash", s(&format!("{HASH}\nNarSize: 8")))],
                format!(
                    "{e0}{A}: field `narHash`: {:?}: a sha256 digest has 52 (nix32) or 64 (hex) characters, not 63",
                    format!("{HASH}\nNarSize: 8")
                ),
            ),
            (
                vec![("narHash", s(&format!("{}\0", &HASH[..HASH.len() - 1])))],
                format!(
                    "{e0}{A}: field `narHash`: {:?}: '\\0' is not a nix32 character",
                    format!("{}\0", &HASH[..HASH.len() - 1])
                ),
            ),
            (
                vec![("narHash", s("md5:3y8bwfr609h3lh9ch0izcqq7fl"))],
                format!(
                    "{e0}{A}: field `narHash`: \"md5:3y8bwfr609h3lh9ch0izcqq7fl\": expected sha256:<nix32>, \
                     sha256:<hex> or sha256-<base64>"
                ),
            ),
            (vec![("narHash", None)], format!("{e0}{A}: field `narHash` is missing")),
            (vec![("narHash", Some(json!(5)))], format!("{e0}{A}: field `narHash` must be a string, not a number")),
            (
                vec![("narSize", Some(json!(-1)))],
                format!("{e0}{A}: field `narSize` must be a non-negative integer, not a number"),
            ),
            (
                vec![("narSize", Some(json!(1.5)))],
                format!("{e0}{A}: field `narSize` must be a non-negative integer, not a number"),
            ),
            (
                vec![("narSize", s("952"))],
                format!("{e0}{A}: field `narSize` must be a non-negative integer, not a string"),
            ),
            (vec![("narSize", None)], format!("{e0}{A}: field `narSize` is missing")),
            // References.
            (
                vec![("references", Some(json!([format!("{B}\nURL: {other_nar}")])))],
                format!(
                    "{e0}{A}: field `references`: {:?} is not a valid store path: name contains the character '\\n'",
                    format!("{B}\nURL: {other_nar}")
                ),
            ),
            (
                vec![("references", Some(json!([format!("{B}\0")])))],
                format!(
                    "{e0}{A}: field `references`: {:?} is not a valid store path: name contains the character '\\0'",
                    format!("{B}\0")
                ),
            ),
            (
                vec![("references", Some(json!([format!("{B} {A}")])))],
                format!(
                    "{e0}{A}: field `references`: {:?} is not a valid store path: name contains the character ' '",
                    format!("{B} {A}")
                ),
            ),
            (vec![("references", s(A))], format!("{e0}{A}: field `references` must be a list, not a string")),
            (
                vec![("references", Some(json!([[A]])))],
                format!("{e0}{A}: field `references` must hold strings, not a list"),
            ),
            (vec![("references", None)], format!("{e0}{A}: field `references` is missing")),
            // Nix's own marks of an invalid path.
            (
                vec![("valid", Some(json!(false)))],
                format!("{e0}{A}: not a valid store path in this store (path-info says \"valid\": false){HINT}"),
            ),
        ];
        for (changes, expected) in cases {
            let json = entry_with(&changes);
            let err = format!("{:#}", parse_path_info_json(&json, "/nix/store").unwrap_err());
            assert_eq!(err, expected, "for {json}");
        }
    }

    #[test]
    fn hostile_documents_are_refused() {
        let entry = format!(r#"{{"narHash":"{HASH}","narSize":1,"references":[]}}"#);
        let cases = [
            (format!(r#"{{"{A}":null}}"#), format!("{A}: not a valid store path in this store (path-info gave null){HINT}")),
            (
                format!(r#"{{"{A}":{{"path":"{B}","narHash":"{HASH}","narSize":1,"references":[]}}}}"#),
                format!("{A}: field `path` is \"{B}\", not the store path it is listed under"),
            ),
            (format!(r#"{{"{A}\n":{entry}}}"#), format!("field `path`: \"{A}\\n\" is not a valid store path: name contains the character '\\n'")),
            (format!(r#"[{entry}]"#), "closure entry 0: field `path` is missing".into()),
            (format!(r#"[{{"path":"{A}","path":"{A}"}}]"#), "closure entry 0: duplicate field `path` at line 1 column 63".into()),
            ("[1]".to_string(), "closure entry 0: invalid type: integer `1`, expected struct RawEntry at line 1 column 2".into()),
            ("[] x".into(), "not valid JSON: trailing characters at line 1 column 4".into()),
            ("\"x\"".into(), "invalid type: string \"x\", expected the JSON array or object that `nix path-info --json --recursive` prints at line 1 column 3".into()),
        ];
        for (json, expected) in cases {
            let err = format!("{:#}", parse_path_info_json(&json, "/nix/store").unwrap_err());
            assert_eq!(err, expected, "for {json}");
        }
        let attrs_cases = [
            (r#"{"closure":[],"closure":[]}"#.to_string(), "field `closure` appears twice".to_string()),
            (
                r#"{"closure":{}}"#.into(),
                "field `closure`: invalid type: map, expected a list of path infos at line 1 column 11".into(),
            ),
            (
                r#"{"closure":[],"outputs":"x"}"#.into(),
                "field `outputs`: invalid type: string \"x\", expected struct RawOutputs at line 1 column 27".into(),
            ),
            (
                r#"{"closure":[],"outputs":{"out":1}}"#.into(),
                "field `outputs.out` must be a string, not a number".into(),
            ),
            (r#"{"closure":[],"outputs":{}}"#.into(), "field `outputs.out` is missing".into()),
            (
                r#"{"closure":[],"compression":"xz\n"}"#.into(),
                "field `compression`: unknown compression \"xz\\n\": expected one of \"none\", \"xz\", \"zstd\"".into(),
            ),
            (
                format!(r#"{{"closure":[{{"path":"{A}","ca":"garbage"}}]}}"#),
                format!("closure entry 0: {A}: field `narHash` is missing"),
            ),
        ];
        for (json, expected) in attrs_cases {
            assert_eq!(attrs_error(&json), expected, "for {json}");
        }
    }
}

/// Random mutations of a valid closure must never panic, and whatever parses
/// must render to a narinfo that reads back as exactly what was parsed.
#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::format::narinfo::NarInfo;

    const STORE: &str = "/nix/store";
    const FIELDS: [&str; 8] = ["path", "narHash", "narSize", "references", "deriver", "signatures", "ca", "valid"];
    const SNIPPETS: [&str; 16] =
        ["\n", "\\n", "\r", "\\r", "\0", "\\u0000", "\"", "\\\"", ":", ": ", ",", "{", "]", "null", " ", "\\u2028"];

    fn valid_closure() -> Value {
        let (a, b) = ("/nix/store/sqz3s1nwrsy2y0436d6wg9hw7abfpqf0-a", "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b");
        let sig = "cache.example.org-1:aItucb2jMEdvkqYZji7WOy01UemOpGXpZCYvu0qXLmVNaoV4Mj/41K8uzPznXew6f1YgBxjkdjZl/N3le94ZWA==";
        json!([
            {"path": a, "narHash": "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "narSize": 120,
             "references": [a, b], "ca": "fixed:r:sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw",
             "signatures": [sig], "valid": true},
            {"path": b, "narHash": "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw", "narSize": 952,
             "references": [a, b], "deriver": "/nix/store/0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-b.drv",
             "signatures": [sig, sig.replace("cache.example.org-1", "other-key")], "closureSize": 1072},
        ])
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Remove { entry: usize, field: usize },
        Retype { entry: usize, field: usize, value: usize },
        Flip { at: usize, bits: u8 },
        Insert { at: usize, snippet: usize },
        Delete { at: usize },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (0..2usize, 0..FIELDS.len()).prop_map(|(entry, field)| Mutation::Remove { entry, field }),
            (0..2usize, 0..FIELDS.len(), 0..6usize).prop_map(|(entry, field, value)| Mutation::Retype {
                entry,
                field,
                value
            }),
            (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
            (any::<usize>(), 0..SNIPPETS.len()).prop_map(|(at, snippet)| Mutation::Insert { at, snippet }),
            any::<usize>().prop_map(|at| Mutation::Delete { at }),
        ]
    }

    /// The JSON text after `mutations`; structural ones apply before the
    /// textual ones.
    fn mutate(mutations: &[Mutation], object_form: bool) -> String {
        let mut closure = valid_closure();
        for m in mutations {
            match *m {
                Mutation::Remove { entry, field } => {
                    closure[entry].as_object_mut().unwrap().remove(FIELDS[field]);
                }
                Mutation::Retype { entry, field, value } => {
                    let values = [json!(null), json!(7), json!(-1), json!("x"), json!(["x"]), json!({"x": 1})];
                    closure[entry][FIELDS[field]] = values[value].clone();
                }
                _ => {}
            }
        }
        if object_form {
            let mut by_path = serde_json::Map::new();
            for (i, mut entry) in closure.as_array().unwrap().clone().into_iter().enumerate() {
                let key = match entry.as_object_mut().unwrap().remove("path") {
                    Some(Value::String(p)) => p,
                    _ => format!("/nix/store/entry-{i}"),
                };
                by_path.insert(key, entry);
            }
            closure = Value::Object(by_path);
        }
        let mut bytes = serde_json::to_vec(&closure).unwrap();
        for m in mutations {
            match *m {
                Mutation::Flip { at, bits } => {
                    let at = at % bytes.len();
                    bytes[at] ^= bits;
                }
                Mutation::Insert { at, snippet } => {
                    let at = at % (bytes.len() + 1);
                    bytes.splice(at..at, SNIPPETS[snippet].bytes());
                }
                Mutation::Delete { at } if !bytes.is_empty() => {
                    bytes.remove(at % bytes.len());
                }
                _ => {}
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Renders `info` as a narinfo and reads it back, checking the keys.
    fn round_trip(info: &PathInfo) {
        let narinfo = NarInfo {
            store_path: &info.path,
            url: format!("nar/{}.nar", info.nar_hash.nix32()),
            compression: Compression::None,
            file_hash: info.nar_hash,
            file_size: info.nar_size,
            nar_hash: info.nar_hash,
            nar_size: info.nar_size,
            references: &info.references,
            deriver: info.deriver.as_ref(),
            signatures: &info.signatures,
            ca: info.ca.as_ref(),
        };
        let text = narinfo.render().expect("a parsed path info always renders");
        let mut fields: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for line in text.strip_suffix('\n').unwrap().split('\n') {
            let (key, value) = line.split_once(": ").unwrap_or_else(|| panic!("line without ': ': {line:?}"));
            fields.entry(key).or_default().push(value);
        }
        let one = |key: &str| match fields.get(key).map(Vec::as_slice) {
            Some([value]) => *value,
            other => panic!("{key}: {other:?} in {text}"),
        };
        assert_eq!(one("StorePath"), info.path.as_str());
        assert_eq!(one("NarHash"), info.nar_hash.to_string());
        assert_eq!(one("NarSize"), info.nar_size.to_string());
        for key in ["URL", "Compression", "FileHash", "FileSize"] {
            one(key);
        }
        let references: Vec<StorePath> = match one("References") {
            "" => Vec::new(),
            refs => refs.split(' ').map(|r| StorePath::parse(STORE, &format!("{STORE}/{r}")).unwrap()).collect(),
        };
        assert_eq!(references, info.references);
        let deriver = fields.contains_key("Deriver").then(|| one("Deriver"));
        assert_eq!(deriver, info.deriver.as_ref().map(StorePath::base_name));
        let sigs: Vec<Signature> =
            fields.get("Sig").map_or(Vec::new(), |v| v.iter().map(|s| s.parse().unwrap()).collect());
        assert_eq!(sigs, info.signatures);
        let ca = fields.contains_key("CA").then(|| one("CA").parse::<ContentAddress>().unwrap());
        assert_eq!(ca, info.ca);
        let known = ["StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize", "References"];
        for key in fields.keys() {
            assert!(known.contains(key) || ["Deriver", "Sig", "CA"].contains(key), "unknown key {key:?}");
        }
    }

    #[test]
    fn the_unmutated_closure_round_trips() {
        for object_form in [false, true] {
            let infos = parse_path_info_json(&mutate(&[], object_form), STORE).unwrap();
            assert_eq!(infos.len(), 2);
            infos.iter().for_each(round_trip);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn mutated_closures_never_panic_and_what_parses_round_trips(
            mutations in proptest::collection::vec(mutation(), 1..4),
            object_form in any::<bool>(),
        ) {
            let json = mutate(&mutations, object_form);
            if let Ok(infos) = parse_path_info_json(&json, STORE) {
                infos.iter().for_each(round_trip);
            }
            let _ = Attrs::parse(&format!(r#"{{"closure":{json}}}"#), STORE);
        }
    }
}

/// `maxMemory` in the attrs file: see [`crate::resources::parse_size`].
fn parse_max_memory(value: &Loose) -> Result<Option<u64>> {
    match value {
        Loose::Missing | Loose::Null => Ok(None),
        Loose::Str(s) => Ok(Some(crate::resources::parse_size(s).map_err(|e| anyhow!("field `maxMemory`: {e}"))?)),
        Loose::Unsigned(n) if *n > 0 => Ok(Some(*n)),
        v => bail!("field `maxMemory` must be null, a positive integer of bytes or a size string, not {v}"),
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

    /// Content-addressed (`CA` below, referring to itself and to `B`).
    const A: &str = "/nix/store/sqz3s1nwrsy2y0436d6wg9hw7abfpqf0-a";
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
