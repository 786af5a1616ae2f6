//! Store paths: `<store dir>/<32 nix32 chars>-<name>`.
//!
//! Parsing is strict, with the rules Nix applies (`checkName` in libstore):
//! the hash part is 32 nix32 characters, the name is 1 to 211 characters of
//! `[A-Za-z0-9+-._?=]` and does not start with a dot. Every path we write a
//! narinfo for passes through here, so a narinfo name or `References:` entry
//! can never be something Nix would refuse.
//!
//! ```
//! use make_binary_cache::format::store_path::StorePath;
//! let p = StorePath::parse("/nix/store", "/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a").unwrap();
//! assert_eq!(p.hash_part(), "q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr");
//! assert_eq!(p.base_name(), "q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a");
//! ```

use std::fmt;

use crate::format::nixbase32;

const HASH_LEN: usize = 32;
const MAX_NAME_LEN: usize = 211;

/// A validated store path, kept as its full absolute spelling.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath {
    full: String,
    base_start: usize,
}

impl StorePath {
    /// Parses `path`, which must lie directly inside `store_dir`.
    pub fn parse(store_dir: &str, path: &str) -> Result<Self, String> {
        let base = path
            .strip_prefix(store_dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| format!("{path:?} is not in the store directory {store_dir}"))?;
        validate_base_name(base).map_err(|why| format!("{path:?} is not a valid store path: {why}"))?;
        Ok(Self { full: path.to_owned(), base_start: path.len() - base.len() })
    }

    /// `<hash>-<name>`, as narinfo `References:` lists it.
    pub fn base_name(&self) -> &str {
        &self.full[self.base_start..]
    }

    /// The 32-character hash, which names the narinfo file.
    pub fn hash_part(&self) -> &str {
        &self.base_name()[..HASH_LEN]
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
}

fn validate_base_name(base: &str) -> Result<(), String> {
    let (hash, name) = base
        .split_at_checked(HASH_LEN)
        .and_then(|(hash, rest)| Some((hash, rest.strip_prefix('-')?)))
        .ok_or("expected <32-character hash>-<name>")?;
    if !hash.bytes().all(|b| nixbase32::ALPHABET.contains(&b)) {
        return Err(format!("hash part {hash:?} is not nix32"));
    }
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("name must have 1 to {MAX_NAME_LEN} characters"));
    }
    if name.starts_with('.') {
        return Err("name must not start with a dot".into());
    }
    if let Some(bad) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(c))) {
        return Err(format!("name contains the character {bad:?}"));
    }
    Ok(())
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.full, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "/nix/store";

    #[test]
    fn accepts_real_store_paths() {
        for p in [
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b",
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-hello-2.12.1",
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-a+b_c?d=e.drv",
        ] {
            let sp = StorePath::parse(STORE, p).unwrap();
            assert_eq!(sp.as_str(), p);
            assert_eq!(sp.hash_part(), "y2grnhdvfn46jk5m3g13m90yzbj9scgb");
        }
        let custom = StorePath::parse("/tmp/store", "/tmp/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b").unwrap();
        assert_eq!(custom.base_name(), "y2grnhdvfn46jk5m3g13m90yzbj9scgb-b");
    }

    #[test]
    fn rejects_what_nix_rejects() {
        let long = format!("/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-{}", "x".repeat(212));
        for p in [
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb",
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-",
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scge-b",
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scg-bb",
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-.b",
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-a b",
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-a/b",
            "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-é",
            "/nix/storey2grnhdvfn46jk5m3g13m90yzbj9scgb-b",
            "/gnu/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b",
            "y2grnhdvfn46jk5m3g13m90yzbj9scgb-b",
            &long,
        ] {
            assert!(StorePath::parse(STORE, p).is_err(), "accepted {p:?}");
        }
    }
}
