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
//!   the file system can reflink) and the copy checked before it is named:
//!   its FileSize and FileHash, and what it decompresses to, the NarHash and
//!   NarSize this run computed from the store ([`read_cache::check`]). So a
//!   reused NAR is the bytes a fresh run would write, or the run says why;
//!   decompressing costs a fraction of compressing. Every file of an
//!   earlier cache is opened through [`CacheDir`], never outside it.
//!
//! A copy that does not match, a narinfo that does not parse or names a file
//! outside its cache, a NAR file missing: the earlier cache is damaged, and
//! the run fails naming the file, rather than quietly compressing afresh. A
//! nightly cache whose predecessor (likely still served to users) rots is
//! something to hear about; rerunning without `--reuse`, or after `make-binary-cache
//! verify` and a repair, is the way out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};

use crate::cache::dir::{CacheDir, MAX_NARINFO, MAX_SMALL_FILE};
use crate::cache::read::{self as read_cache, Expected, read_cache_info_in};
use crate::compress::Compression;
use crate::durable::atomic_file::AtomicFile;
use crate::durable::lock::RunLock;
use crate::format::cache_info;
use crate::format::manifest::{self, Manifest};
use crate::format::narinfo::{NarInfo, nar_file};
use crate::format::path_info::PathInfo;

/// The earlier caches whose NARs may be reused: those whose manifest is
/// this run's.
#[derive(Debug, Clone, Default)]
pub struct EarlierCaches {
    caches: Vec<Arc<CacheDir>>,
    /// How many were given, usable or not.
    given: usize,
    /// Held while the run may copy from them: a `gc` there would remove
    /// NARs under the copy (see `crate::durable::lock`).
    _locks: Arc<Vec<RunLock>>,
}

/// A compressed NAR of an earlier cache that this run may copy.
#[derive(Debug, Clone)]
pub struct Reusable {
    cache: Arc<CacheDir>,
    /// The narinfo that describes it, for errors.
    pub narinfo: PathBuf,
    /// The NAR file, relative to the cache.
    nar: PathBuf,
    /// What the narinfo says of it, with the NarHash and NarSize this run
    /// computes.
    pub expected: Expected,
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
        let mut locks = Vec::new();
        for dir in dirs {
            let info_file = dir.join(cache_info::FILE_NAME);
            let cache = read_cache::open(dir, "--reuse ")?;
            let text = read_cache_info_in(&cache, "--reuse ")?;
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
            match cache.read_text(Path::new(manifest::FILE_NAME), MAX_SMALL_FILE) {
                Ok(text) => match ours.compare(&text) {
                    Ok(()) => {
                        locks.push(RunLock::shared(&cache, |line| eprintln!("make-binary-cache: {line}"))?);
                        caches.push(Arc::new(cache))
                    }
                    Err(why) => notes.push(format!(
                        "{}: made with other settings ({why}): none of its NARs are reused, all are compressed \
                         afresh",
                        file.display()
                    )),
                },
                Err(e) if e.is_missing() => notes.push(format!(
                    "{} has no {} (written by `nix copy` or by an older version): none of its NARs are \
                     reused, all are compressed afresh",
                    dir.display(),
                    manifest::FILE_NAME
                )),
                Err(e) => return Err(e.into()),
            }
        }
        Ok((Self { caches, given: dirs.len(), _locks: Arc::new(locks) }, notes))
    }

    /// The build log `log/<drv>` of the first earlier cache that has one,
    /// open (read beneath the cache, never through a symlink): where Nix's
    /// log directory no longer has it, last night's cache may.
    pub fn build_log(&self, drv: &str) -> Option<(PathBuf, std::fs::File)> {
        let rel = Path::new("log").join(drv);
        self.caches.iter().find_map(|cache| cache.open_file(&rel).ok().map(|f| (cache.path().join(&rel), f)))
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
            let name = format!("{}.narinfo", info.path.hash_part());
            let narinfo = cache.path().join(&name);
            let text = match cache.read_text(Path::new(&name), MAX_NARINFO) {
                Err(e) if e.is_missing() => continue,
                result => result.map_err(|e| {
                    anyhow!("{e}: the earlier cache {} is damaged (see --reuse)", cache.path().display())
                })?,
            };
            let theirs = NarInfo::parse(store_dir, &text).map_err(|e| {
                anyhow!(
                    "{}: {e}: the earlier cache {} is damaged (see --reuse)",
                    narinfo.display(),
                    cache.path().display()
                )
            })?;
            // Another store path with the same hash part, or the same path
            // built again with other contents: not this NAR.
            if theirs.path != info.path || (theirs.nar_hash, theirs.nar_size) != (info.nar_hash, info.nar_size) {
                continue;
            }
            if theirs.compression != compression {
                bail!(
                    "{} says Compression: {}, but the manifest of {} says {compression}: the earlier cache is \
                     damaged (see --reuse)",
                    narinfo.display(),
                    theirs.compression,
                    cache.path().display()
                );
            }
            let url = nar_file(&theirs.url).map_err(|e| anyhow!("{}: {e}", narinfo.display()))?;
            return Ok(Some(Reusable {
                nar: url.to_owned(),
                cache: Arc::clone(cache),
                narinfo,
                expected: Expected { nar_hash: info.nar_hash, nar_size: info.nar_size, ..Expected::of(&theirs) },
            }));
        }
        Ok(None)
    }
}

impl Reusable {
    /// A copy of the NAR file in `dir` (not yet named, `label` for its
    /// temporary name), checked to be what the earlier narinfo says, with
    /// the NarHash and NarSize of the store path.
    pub fn copy(&self, dir: &Path, label: &str) -> Result<AtomicFile> {
        let damaged = |what: String| {
            anyhow!(
                "{what}; the earlier cache is damaged: check it with `make-binary-cache verify`, or build without \
                 reusing it"
            )
        };
        let shown = self.cache.path().join(&self.nar);
        let source = self
            .cache
            .open_file(&self.nar)
            .map_err(|e| damaged(format!("{e}, which {} names", self.narinfo.display())))?;
        let file = AtomicFile::copy_of(dir, label, &source)
            .with_context(|| format!("copying {} to {}", shown.display(), dir.display()))?;
        // What is checked is the copy, what this cache will serve.
        read_cache::check(file.as_file(), &shown, &self.narinfo.display().to_string(), &self.expected)
            .with_context(|| format!("reading back the copy of {}", shown.display()))?
            .map_err(damaged)?;
        Ok(file)
    }
}
