//! Reading a binary cache that exists, ours or Nix's, as `merge`, `sign`,
//! `verify` and `--reuse` do: what makes a directory a cache (its
//! `nix-cache-info`, see [`read_cache_info`]), and a NAR file checked
//! against what its narinfo says of it ([`check`]): the `FileSize` and
//! `FileHash` (which Nix itself never checks when it substitutes), and for
//! an uncompressed file, which is the NAR itself, the `NarSize` and
//! `NarHash` too. Messages name the file and the narinfo.
//!
//! ```
//! # use make_binary_cache::read_cache::{Expected, check};
//! # use make_binary_cache::format::hash::Sha256Hash;
//! # use sha2::Digest;
//! # let dir = std::env::temp_dir().join(format!("mbc-read-cache-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("x.nar.xz");
//! std::fs::write(&path, b"compressed bytes").unwrap();
//! let file_hash = Sha256Hash(sha2::Sha256::digest(b"compressed bytes").into());
//! let file = std::fs::File::open(&path).unwrap();
//! check(&file, &path, "x.narinfo", &Expected { file_size: 16, file_hash, nar: None }).unwrap().unwrap();
//! let wrong = Expected { file_size: 17, file_hash, nar: None };
//! let e = check(&file, &path, "x.narinfo", &wrong).unwrap().unwrap_err();
//! assert!(e.ends_with("has 16 bytes, but x.narinfo says FileSize: 17"), "{e}");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use sha2::Digest;

use crate::compression::Compression;
use crate::format::cache_info;
use crate::format::hash::Sha256Hash;
use crate::format::narinfo::ParsedNarInfo;
use crate::format::store_path::check_store_dir;

/// The text of `dir/nix-cache-info`, which makes `dir` a binary cache.
/// `named` is how `dir` was given, for the messages (`""`, `"--reuse "`).
pub fn read_cache_info(dir: &Path, named: &str) -> Result<String> {
    let file = dir.join(cache_info::FILE_NAME);
    match fs::read_to_string(&file) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() => {
            bail!("{named}{}: no such directory", dir.display())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "{named}{} is not a binary cache: it has no nix-cache-info; give the directory make-binary-cache or \
             `nix copy --to file://DIR` wrote",
            dir.display()
        ),
        result => result.with_context(|| format!("reading {}", file.display())),
    }
}

/// The `StoreDir` that `text`, read from `dir/nix-cache-info`, names, checked
/// as a store directory; `None` when it names none. Messages name the file.
pub fn store_dir<'t>(dir: &Path, text: &'t str) -> Result<Option<&'t str>> {
    let file = dir.join(cache_info::FILE_NAME);
    let parsed = cache_info::parse(text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let Some(store_dir) = parsed.store_dir.map(|f| f.value) else { return Ok(None) };
    check_store_dir(store_dir).map_err(|e| anyhow!("{}: StoreDir {store_dir:?}: {e}", file.display()))?;
    Ok(Some(store_dir))
}

/// What a narinfo says its NAR file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub file_size: u64,
    pub file_hash: Sha256Hash,
    /// `NarHash` and `NarSize`, when the file is the NAR itself
    /// (`Compression: none`).
    pub nar: Option<(Sha256Hash, u64)>,
}

impl Expected {
    pub fn of(info: &ParsedNarInfo) -> Self {
        let uncompressed = info.compression == Compression::None;
        Self {
            file_size: info.file_size,
            file_hash: info.file_hash,
            nar: uncompressed.then_some((info.nar_hash, info.nar_size)),
        }
    }
}

/// Whether `file` (shown as `shown`), read from its start whatever its
/// position, is what `narinfo` (a file name, or words like "the narinfo")
/// says: `Ok(Err(why))` when it is not, `Err` when it cannot be read (or
/// changes while it is). The size is compared first: it costs nothing and
/// catches a truncated file before it is read.
pub fn check(file: &File, shown: &Path, narinfo: &str, expected: &Expected) -> Result<Result<(), String>> {
    let size = file.metadata().with_context(|| format!("reading {}", shown.display()))?.len();
    if size != expected.file_size {
        return Ok(Err(format!(
            "{} has {size} bytes, but {narinfo} says FileSize: {}",
            shown.display(),
            expected.file_size
        )));
    }
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = match file.read_at(&mut buf, read) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", shown.display())),
        };
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    if read != expected.file_size {
        bail!("{} changed while being read: {read} bytes read, {} expected", shown.display(), expected.file_size);
    }
    let hash = Sha256Hash(hasher.finalize().into());
    if hash != expected.file_hash {
        return Ok(Err(format!(
            "{} has hash {hash}, but {narinfo} says FileHash: {}",
            shown.display(),
            expected.file_hash
        )));
    }
    if let Some((nar_hash, nar_size)) = expected.nar
        && (hash, read) != (nar_hash, nar_size)
    {
        return Ok(Err(format!(
            "{} is uncompressed but has hash {hash} and size {read}, while {narinfo} says NarHash: {nar_hash} and \
             NarSize: {nar_size}",
            shown.display(),
        )));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_nix_cache_info_is_no_cache() {
        let dir = std::env::temp_dir().join(format!("mbc-read-cache-info-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let e = read_cache_info(&dir, "--reuse ").unwrap_err().to_string();
        assert!(e.starts_with(&format!("--reuse {} is not a binary cache", dir.display())), "{e}");
        let e = read_cache_info(&dir.join("missing"), "").unwrap_err().to_string();
        assert!(e.ends_with("missing: no such directory"), "{e}");
        fs::write(dir.join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
        assert_eq!(read_cache_info(&dir, "").unwrap(), "StoreDir: /nix/store\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn size_hash_and_for_uncompressed_files_the_nar_are_checked() {
        let dir = std::env::temp_dir().join(format!("mbc-read-cache-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.nar");
        fs::write(&path, b"nar bytes").unwrap();
        let file = File::open(&path).unwrap();
        let hash = Sha256Hash(sha2::Sha256::digest(b"nar bytes").into());
        let other = Sha256Hash(sha2::Sha256::digest(b"other").into());
        let good = Expected { file_size: 9, file_hash: hash, nar: Some((hash, 9)) };
        check(&file, &path, "the narinfo", &good).unwrap().unwrap();
        let err = |expected: Expected| check(&file, &path, "the narinfo", &expected).unwrap().unwrap_err();
        let shown = path.display().to_string();
        let e = err(Expected { file_size: 8, ..good });
        assert!(e.starts_with(&shown) && e.contains("9 bytes, but the narinfo says FileSize: 8"), "{e}");
        let e = err(Expected { file_hash: other, ..good });
        assert!(e.starts_with(&shown) && e.contains(&format!("but the narinfo says FileHash: {other}")), "{e}");
        let e = err(Expected { nar: Some((other, 9)), ..good });
        assert!(e.contains("is uncompressed") && e.contains(&format!("NarHash: {other}")), "{e}");
        let e = err(Expected { nar: Some((hash, 10)), ..good });
        assert!(e.contains("NarSize: 10"), "{e}");
        // A file that cannot be read is another matter than a wrong one.
        let dir_file = File::open(&dir).unwrap();
        let dir_size = dir_file.metadata().unwrap().len();
        let e = check(&dir_file, &dir, "the narinfo", &Expected { file_size: dir_size, ..good }).unwrap_err();
        assert!(format!("{e:#}").starts_with(&format!("reading {}", dir.display())), "{e:#}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
