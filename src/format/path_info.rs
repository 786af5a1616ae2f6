//! The one record of a store path's facts: what Nix knows about it, and
//! what a narinfo says of it besides its file (see
//! [`NarInfo`](crate::format::narinfo::NarInfo), which is this record plus
//! the file fields). Read from Nix (`crate::input`) or from a cache
//! ([`NarInfo::parse`](crate::format::narinfo::NarInfo::parse)).

use crate::format::content_address::ContentAddress;
use crate::format::hash::Sha256Hash;
use crate::format::key;
use crate::format::signature::Signature;
use crate::format::store_path::StorePath;

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

impl PathInfo {
    /// What a signature of this path signs (see [`key::fingerprint`]).
    pub fn fingerprint(&self) -> String {
        key::fingerprint(&self.path, &self.nar_hash, self.nar_size, &self.references)
    }

    /// Whether `other` says the same of the store path as a signature
    /// vouches for: the same store path, NarHash, NarSize and references
    /// (the [fingerprint](crate::format::key::fingerprint)). Then the
    /// signatures of either are as valid on the other.
    pub fn same_fingerprint(&self, other: &PathInfo) -> bool {
        (&self.path, self.nar_hash, self.nar_size, &self.references)
            == (&other.path, other.nar_hash, other.nar_size, &other.references)
    }

    /// Adds the signatures of `other` (which must have the
    /// [same fingerprint](Self::same_fingerprint)) that this one lacks, kept
    /// sorted and without duplicates, as Nix keeps them (a `StringSet`).
    pub fn add_signatures_of(&mut self, other: &PathInfo) {
        debug_assert!(self.same_fingerprint(other), "signatures of another fingerprint");
        self.signatures.extend(other.signatures.iter().cloned());
        sort_signatures(&mut self.signatures);
    }
}

/// Sorts signatures as Nix writes them (by their text) and drops repeats.
pub fn sort_signatures(signatures: &mut Vec<Signature>) {
    signatures.sort_by_key(|s| s.to_string());
    signatures.dedup();
}
