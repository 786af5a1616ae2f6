//! Whether a closure is whole.

use anyhow::{Result, bail};

use crate::format::path_info::PathInfo;
use crate::format::store_path::StorePath;

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
