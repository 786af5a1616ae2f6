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
//! be a `.drv`), the NAR hash, [`Signature`](crate::format::signature::Signature)s and the [`ContentAddress`](crate::format::content_address::ContentAddress). So a
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

mod attrs;
mod complete;
mod json;
pub mod nix;
mod path_info;
pub mod shard;
#[cfg(test)]
mod tests;

pub use attrs::Attrs;
pub use complete::check_complete;
pub use path_info::parse_path_info_json;
