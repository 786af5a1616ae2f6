//! The structured-attrs file a builder gets (`$NIX_ATTRS_JSON_FILE`).

use std::fmt;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::json::*;
use crate::compress::Compression;
use crate::format::path_info::PathInfo;
use crate::input::shard::Shard;

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
            Loose::Str(s) => Some(s.parse::<Compression>().map_err(|e| anyhow!("field `compression`: {e}"))?),
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
pub(crate) struct RawOutputs<'a> {
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

/// `maxMemory` in the attrs file: see [`crate::resources::parse_size`].
fn parse_max_memory(value: &Loose) -> Result<Option<u64>> {
    match value {
        Loose::Missing | Loose::Null => Ok(None),
        Loose::Str(s) => Ok(Some(crate::resources::parse_size(s).map_err(|e| anyhow!("field `maxMemory`: {e}"))?)),
        Loose::Unsigned(n) if *n > 0 => Ok(Some(*n)),
        v => bail!("field `maxMemory` must be null, a positive integer of bytes or a size string, not {v}"),
    }
}
