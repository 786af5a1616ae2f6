//! Store paths: `<store dir>/<32 nix32 chars>-<name>`.
//!
//! The store directory itself (`$NIX_STORE`, normally `/nix/store`) goes into
//! `nix-cache-info` and every `StorePath:` line, so [`check_store_dir`] wants
//! it absolute and normalised, as Nix's `canonPath` would leave it.
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
//! assert_eq!(p.name(), "a");
//! use make_binary_cache::format::store_path::check_store_dir;
//! assert!(check_store_dir("/nix/store").is_ok());
//! assert!(check_store_dir("/nix/store/").is_err());
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
    pub fn parse(store_dir: &str, path: &str) -> Result<Self, Error> {
        let base = path
            .strip_prefix(store_dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| Error::NotInStore { path: path.to_owned(), store_dir: store_dir.to_owned() })?;
        validate_base_name(base).map_err(|why| Error::Invalid { path: path.to_owned(), why })?;
        Ok(Self { full: path.to_owned(), base_start: path.len() - base.len() })
    }

    /// The store directory it lies in.
    pub fn store_dir(&self) -> &str {
        &self.full[..self.base_start - 1]
    }

    /// `<hash>-<name>`, as narinfo `References:` lists it.
    pub fn base_name(&self) -> &str {
        &self.full[self.base_start..]
    }

    /// The 32-character hash, which names the narinfo file.
    pub fn hash_part(&self) -> &str {
        &self.base_name()[..HASH_LEN]
    }

    /// What follows `<hash>-`.
    pub fn name(&self) -> &str {
        &self.base_name()[HASH_LEN + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
}

/// Checks that `dir` can be a store directory: absolute, not `/`, without a
/// trailing slash, empty, `.` or `..` components, and without control
/// characters (it is written on a line of `nix-cache-info` and narinfo files).
pub fn check_store_dir(dir: &str) -> Result<(), StoreDirError> {
    if !dir.starts_with('/') {
        return Err(StoreDirError::Relative);
    }
    if dir == "/" {
        return Err(StoreDirError::Root);
    }
    if let Some(bad) = dir.chars().find(|c| c.is_control()) {
        return Err(StoreDirError::Control(bad));
    }
    if dir[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(StoreDirError::NotNormalised);
    }
    Ok(())
}

/// Why a string is not a store path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{path:?} is not in the store directory {store_dir}")]
    NotInStore { path: String, store_dir: String },
    #[error("{path:?} is not a valid store path: {why}")]
    Invalid { path: String, why: BaseNameError },
}

/// Why `<hash>-<name>` is not a store path's base name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseNameError {
    #[error("expected <32-character hash>-<name>")]
    Shape,
    #[error("hash part {0:?} is not nix32")]
    HashNotNix32(String),
    #[error("name must have 1 to {MAX_NAME_LEN} characters")]
    NameLength,
    #[error("name must not start with a dot")]
    LeadingDot,
    #[error("name contains the character {0:?}")]
    NameCharacter(char),
}

/// Why a directory cannot be a store directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreDirError {
    #[error("it must be an absolute path")]
    Relative,
    #[error("it must not be the root directory")]
    Root,
    #[error("it contains the control character {0:?}")]
    Control(char),
    #[error("it must be normalised: no trailing slash, no empty, `.` or `..` components")]
    NotNormalised,
}

fn validate_base_name(base: &str) -> Result<(), BaseNameError> {
    let (hash, name) = base
        .split_at_checked(HASH_LEN)
        .and_then(|(hash, rest)| Some((hash, rest.strip_prefix('-')?)))
        .ok_or(BaseNameError::Shape)?;
    if !hash.bytes().all(|b| nixbase32::digit(b).is_some()) {
        return Err(BaseNameError::HashNotNix32(hash.to_owned()));
    }
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(BaseNameError::NameLength);
    }
    if name.starts_with('.') {
        return Err(BaseNameError::LeadingDot);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '?' | '=');
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(BaseNameError::NameCharacter(bad));
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
            assert_eq!(sp.name(), &p[44..]);
        }
        // The longest name Nix allows (211 characters) is a store path.
        let longest = format!("/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-{}", "x".repeat(211));
        assert_eq!(StorePath::parse(STORE, &longest).unwrap().name().len(), 211);
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

    #[test]
    fn store_dirs_must_be_absolute_and_normalised() {
        for ok in ["/nix/store", "/tmp/store", "/a", "/x/.y/z..", "/with space/store"] {
            assert_eq!(check_store_dir(ok), Ok(()), "{ok:?}");
        }
        for (bad, why) in [
            ("", "absolute"),
            ("nix/store", "absolute"),
            ("./store", "absolute"),
            ("/", "root"),
            ("/nix/store/", "normalised"),
            ("//nix/store", "normalised"),
            ("/nix//store", "normalised"),
            ("/nix/./store", "normalised"),
            ("/nix/../store", "normalised"),
            ("/nix/store/.", "normalised"),
            ("/nix/store\nStoreDir: /evil", "control character '\\n'"),
            ("/nix/store\r", "control character '\\r'"),
            ("/nix/\0store", "control character '\\0'"),
        ] {
            let err = check_store_dir(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad:?}: {err:?} lacks {why:?}");
        }
    }
}
