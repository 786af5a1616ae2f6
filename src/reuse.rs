//! Reusing the compressed NARs of earlier caches (`--reuse DIR`, mkBinaryCache's
//! `reuse`).
//!
//! Most of a closure rebuilt every night has not changed since the last
//! night, and compressing it again (with xz, most of the time of a build) gives
//! the same bytes as last time. So, for each store path of the closure, an
//! earlier cache may supply its compressed NAR:
//!
//! * only a cache whose [manifest] is the same as
//!   this run's: same compression, level, encoder settings, tool and library
//!   versions, so that its NARs are the bytes this run would write. A cache
//!   with another manifest (or one saying its NARs are mixed), or none
//!   (written by `nix copy`), supplies nothing, and [`EarlierCaches::open`] says so
//!   once, naming the cache and the field that differs;
//! * only for a narinfo of the same store path with the NarHash and NarSize
//!   Nix recorded for it. The store path is still read and its NAR checked
//!   against them as ever (cheap next to compressing); only compression is
//!   skipped;
//! * the NAR file is copied (`copy_file_range`, which shares the blocks where
//!   the file system can reflink) and the copy checked against the narinfo's
//!   FileSize and FileHash before it is named.
//!
//! A copy that does not match, a narinfo that does not parse or names a file
//! outside its cache, a NAR file missing: the earlier cache is damaged, and
//! the run fails naming the file, rather than quietly compressing afresh. A
//! nightly cache whose predecessor (likely still served to users) rots is
//! something to hear about; rerunning without `--reuse`, or after `make-binary-cache
//! verify` and a repair, is the way out.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::atomic_file::AtomicFile;
use crate::closure::PathInfo;
use crate::compression::Compression;
use crate::format::cache_info;
use crate::format::hash::Sha256Hash;
use crate::format::manifest::{self, Manifest};
use crate::format::narinfo::{ParsedNarInfo, nar_file};
use crate::read_cache::{self, Expected, read_cache_info};

/// The earlier caches whose NARs may be reused: those whose manifest is
/// this run's.
#[derive(Debug, Clone, Default)]
pub struct EarlierCaches {
    caches: Vec<PathBuf>,
    /// How many were given, usable or not.
    given: usize,
}

/// A compressed NAR of an earlier cache that this run may copy.
#[derive(Debug, Clone)]
pub struct Reusable {
    /// The narinfo that describes it, for errors.
    pub narinfo: PathBuf,
    /// The NAR file.
    pub nar: PathBuf,
    pub file_hash: Sha256Hash,
    pub file_size: u64,
}

impl EarlierCaches {
    /// Opens `dirs` for a run that writes NARs as `ours` says, for the store
    /// directory `store_dir`. Returns the caches that can supply NARs and one
    /// line for the log about each that cannot. A directory that is not a
    /// binary cache at all is an error (a mistyped path should not silently
    /// cost a full rebuild).
    pub fn open(dirs: &[PathBuf], ours: &Manifest, store_dir: &str) -> Result<(Self, Vec<String>)> {
        let mut caches = Vec::new();
        let mut notes = Vec::new();
        for dir in dirs {
            let info_file = dir.join(cache_info::FILE_NAME);
            let text = read_cache_info(dir, "--reuse ")?;
            let parsed = cache_info::parse(&text).map_err(|e| anyhow!("{}: {e}", info_file.display()))?;
            if let Some(theirs) = parsed.store_dir.map(|f| f.value)
                && theirs != store_dir
            {
                notes.push(format!(
                    "{} is a cache for the store directory {theirs}, not {store_dir}: none of its NARs are reused",
                    dir.display(),
                ));
                continue;
            }
            let file = dir.join(manifest::FILE_NAME);
            match fs::read_to_string(&file) {
                Ok(text) => match ours.compare(&text) {
                    Ok(()) => caches.push(dir.clone()),
                    Err(why) => notes.push(format!(
                        "{}: made with other settings ({why}): none of its NARs are reused, all are compressed \
                         afresh",
                        file.display()
                    )),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => notes.push(format!(
                    "{} has no {} (written by `nix copy` or by an older version): none of its NARs are \
                     reused, all are compressed afresh",
                    dir.display(),
                    manifest::FILE_NAME
                )),
                Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
            }
        }
        Ok((Self { caches, given: dirs.len() }, notes))
    }

    /// Whether any earlier cache was given, usable or not.
    pub fn given(&self) -> bool {
        self.given > 0
    }

    /// The NAR of `info` in the first earlier cache that has it: a narinfo
    /// for the same store path, with its NarHash, NarSize and this run's
    /// `compression`. `None` when no cache has it.
    pub fn find(&self, info: &PathInfo, compression: Compression, store_dir: &str) -> Result<Option<Reusable>> {
        for cache in &self.caches {
            let narinfo = cache.join(format!("{}.narinfo", info.path.hash_part()));
            let text = match fs::read_to_string(&narinfo) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                result => result.with_context(|| format!("reading {}", narinfo.display()))?,
            };
            let theirs = ParsedNarInfo::parse(store_dir, &text).map_err(|e| {
                anyhow!("{}: {e}: the earlier cache {} is damaged (see --reuse)", narinfo.display(), cache.display())
            })?;
            // Another store path with the same hash part, or the same path
            // built again with other contents: not this NAR.
            if theirs.store_path != info.path || (theirs.nar_hash, theirs.nar_size) != (info.nar_hash, info.nar_size) {
                continue;
            }
            if theirs.compression != compression {
                bail!(
                    "{} says Compression: {}, but the manifest of {} says {compression}: the earlier cache is \
                     damaged (see --reuse)",
                    narinfo.display(),
                    theirs.compression,
                    cache.display()
                );
            }
            let url = nar_file(&theirs.url).map_err(|e| anyhow!("{}: {e}", narinfo.display()))?;
            return Ok(Some(Reusable {
                nar: cache.join(url),
                narinfo,
                file_hash: theirs.file_hash,
                file_size: theirs.file_size,
            }));
        }
        Ok(None)
    }
}

impl Reusable {
    /// A copy of the NAR file in `dir` (not yet named, `label` for its
    /// temporary name), checked to have the FileSize and FileHash the
    /// earlier narinfo gives.
    pub fn copy(&self, dir: &Path, label: &str) -> Result<AtomicFile> {
        let damaged = |what: String| {
            anyhow!(
                "{what}; the earlier cache is damaged: check it with `make-binary-cache verify`, or build without \
                 reusing it"
            )
        };
        let source = File::open(&self.nar)
            .with_context(|| format!("opening {}, which {} names", self.nar.display(), self.narinfo.display()))?;
        let file = AtomicFile::copy_of(dir, label, &source)
            .with_context(|| format!("copying {} to {}", self.nar.display(), dir.display()))?;
        // What is checked is the copy, what this cache will serve.
        let expected = Expected { file_size: self.file_size, file_hash: self.file_hash, nar: None };
        read_cache::check(file.as_file(), &self.nar, &self.narinfo.display().to_string(), &expected)
            .with_context(|| format!("reading back the copy of {}", self.nar.display()))?
            .map_err(damaged)?;
        Ok(file)
    }
}
