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
//! ```
//! use make_binary_cache::{compression::Compression, format::narinfo::NarInfo, format::store_path::StorePath};
//! let path = StorePath::parse("/nix/store", "/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a").unwrap();
//! let hash = "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw".parse().unwrap();
//! let info = NarInfo {
//!     store_path: &path, url: "nar/1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw.nar".into(),
//!     compression: Compression::None, file_hash: hash, file_size: 952, nar_hash: hash, nar_size: 952,
//!     references: &[], deriver: None, signatures: &[], ca: None,
//! };
//! assert!(info.render().unwrap().contains("\nReferences: \n"));
//! ```

use std::fmt::Write;

use crate::compression::Compression;
use crate::format::content_address::ContentAddress;
use crate::format::hash::Sha256Hash;
use crate::format::signature::Signature;
use crate::format::store_path::StorePath;

pub struct NarInfo<'a> {
    pub store_path: &'a StorePath,
    /// Relative to the cache root: `nar/<FileHash nix32>.nar<ext>`.
    pub url: String,
    pub compression: Compression,
    pub file_hash: Sha256Hash,
    pub file_size: u64,
    pub nar_hash: Sha256Hash,
    pub nar_size: u64,
    pub references: &'a [StorePath],
    pub deriver: Option<&'a StorePath>,
    pub signatures: &'a [Signature],
    pub ca: Option<&'a ContentAddress>,
}

impl NarInfo<'_> {
    /// `<hash part>.narinfo`, the file name Nix looks up.
    pub fn file_name(&self) -> String {
        format!("{}.narinfo", self.store_path.hash_part())
    }
}

impl NarInfo<'_> {
    /// The narinfo's text, or an error naming the store path and the field
    /// when a value holds a line break or NUL.
    pub fn render(&self) -> Result<String, String> {
        let mut text = String::with_capacity(512);
        let mut line = |key: &str, value: &dyn std::fmt::Display| -> Result<(), String> {
            let start = text.len();
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{key}: {value}");
            let value = &text[start + key.len() + 2..text.len() - 1];
            match value.chars().find(|c| matches!(c, '\n' | '\r' | '\0')) {
                Some(bad) => Err(format!(
                    "{}: narinfo field `{key}` would contain {bad:?}, which would break the narinfo: {value:?}",
                    self.store_path
                )),
                None => Ok(()),
            }
        };
        line("StorePath", self.store_path)?;
        line("URL", &self.url)?;
        line("Compression", &self.compression)?;
        line("FileHash", &self.file_hash)?;
        line("FileSize", &self.file_size)?;
        line("NarHash", &self.nar_hash)?;
        line("NarSize", &self.nar_size)?;
        let references: Vec<&str> = self.references.iter().map(StorePath::base_name).collect();
        line("References", &references.join(" "))?;
        if let Some(deriver) = self.deriver {
            line("Deriver", &deriver.base_name())?;
        }
        for sig in self.signatures {
            line("Sig", sig)?;
        }
        if let Some(ca) = self.ca {
            line("CA", ca)?;
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            store_path: &path,
            url: format!("nar/{}.nar.xz", file_hash.nix32()),
            compression: Compression::Xz,
            file_hash,
            file_size: 100,
            nar_hash,
            nar_size: 952,
            references: &refs,
            deriver: Some(&deriver),
            signatures: &[SIG.parse().unwrap()],
            ca: Some(&"fixed:r:sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw".parse().unwrap()),
        };
        assert_eq!(info.file_name(), "y2grnhdvfn46jk5m3g13m90yzbj9scgb.narinfo");
        assert_eq!(
            info.render().unwrap(),
            "StorePath: /nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b\n\
             URL: nar/0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.nar.xz\n\
             Compression: xz\n\
             FileHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
             FileSize: 100\n\
             NarHash: sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw\n\
             NarSize: 952\n\
             References: q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a y2grnhdvfn46jk5m3g13m90yzbj9scgb-b\n\
             Deriver: 0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-b.drv\n\
             Sig: cache.example.org-1:aItucb2jMEdvkqYZji7WOy01UemOpGXpZCYvu0qXLmVNaoV4Mj/41K8uzPznXew6f1YgBxjkdjZl/N3le94ZWA==\n\
             CA: fixed:r:sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw\n"
        );
    }

    #[test]
    fn refuses_values_that_would_break_lines() {
        let store = "/nix/store";
        let path = StorePath::parse(store, "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b").unwrap();
        let hash: Sha256Hash = "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw".parse().unwrap();
        let info = |url: &str| NarInfo {
            store_path: &path,
            url: url.into(),
            compression: Compression::None,
            file_hash: hash,
            file_size: 1,
            nar_hash: hash,
            nar_size: 1,
            references: &[],
            deriver: None,
            signatures: &[],
            ca: None,
        };
        assert!(info("nar/x.nar").render().is_ok());
        for (url, bad) in [("nar/x.nar\nNarSize: 2", "'\\n'"), ("nar/x\r.nar", "'\\r'"), ("nar/x\0.nar", "'\\0'")] {
            assert_eq!(
                info(url).render().unwrap_err(),
                format!(
                    "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b: narinfo field `URL` would contain {bad}, \
                     which would break the narinfo: {url:?}"
                )
            );
        }
        // A store directory nobody checked is caught too.
        let odd = StorePath::parse("/nix\nstore", "/nix\nstore/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b").unwrap();
        let err = NarInfo { store_path: &odd, ..info("nar/x.nar") }.render().unwrap_err();
        assert!(err.contains("narinfo field `StorePath` would contain '\\n'"), "{err}");
    }
}
