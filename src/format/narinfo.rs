//! narinfo files: what a binary cache says about one store path.
//!
//! Fields come in the order Nix's `NarInfo::to_string` writes them, each as
//! `Key: value` on its own line. `References:` is written even when empty
//! (Nix writes `References: ` then), because that is what Nix writes and what
//! other readers expect.
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
//! assert!(info.to_string().contains("\nReferences: \n"));
//! ```

use std::fmt;

use crate::compression::Compression;
use crate::format::hash::Sha256Hash;
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
    pub signatures: &'a [String],
    pub ca: Option<&'a str>,
}

impl NarInfo<'_> {
    /// `<hash part>.narinfo`, the file name Nix looks up.
    pub fn file_name(&self) -> String {
        format!("{}.narinfo", self.store_path.hash_part())
    }
}

impl fmt::Display for NarInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "StorePath: {}", self.store_path)?;
        writeln!(f, "URL: {}", self.url)?;
        writeln!(f, "Compression: {}", self.compression)?;
        writeln!(f, "FileHash: {}", self.file_hash)?;
        writeln!(f, "FileSize: {}", self.file_size)?;
        writeln!(f, "NarHash: {}", self.nar_hash)?;
        writeln!(f, "NarSize: {}", self.nar_size)?;
        let references: Vec<&str> = self.references.iter().map(StorePath::base_name).collect();
        writeln!(f, "References: {}", references.join(" "))?;
        if let Some(deriver) = self.deriver {
            writeln!(f, "Deriver: {}", deriver.base_name())?;
        }
        for sig in self.signatures {
            writeln!(f, "Sig: {sig}")?;
        }
        if let Some(ca) = self.ca {
            writeln!(f, "CA: {ca}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            signatures: &["cache.example.org-1:c2ln".to_string()],
            ca: Some("fixed:r:sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw"),
        };
        assert_eq!(info.file_name(), "y2grnhdvfn46jk5m3g13m90yzbj9scgb.narinfo");
        assert_eq!(
            info.to_string(),
            "StorePath: /nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b\n\
             URL: nar/0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.nar.xz\n\
             Compression: xz\n\
             FileHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
             FileSize: 100\n\
             NarHash: sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw\n\
             NarSize: 952\n\
             References: q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a y2grnhdvfn46jk5m3g13m90yzbj9scgb-b\n\
             Deriver: 0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-b.drv\n\
             Sig: cache.example.org-1:c2ln\n\
             CA: fixed:r:sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw\n"
        );
    }
}
