//! Naming narinfos in a cache that others may be writing to, without losing
//! a signature.
//!
//! A narinfo is the last file of a store path to be named, and the one that
//! carries its signatures. Every way of ours to name one (the builder,
//! `merge`, `sign`, `--reuse`) follows one rule, [`settle`]: a narinfo already
//! there that describes the same NAR keeps its signatures, whatever writes
//! next. Runs that name narinfos at the same moment are kept apart by an
//! advisory lock on the cache directory ([`CacheLock`], `flock(2)`): the
//! builder holds it shared while it names a batch (builders only add, so
//! they may name side by side), `sign` and `merge` exclusively while they
//! read what is there, decide and name. So `sign` never renames its narinfo
//! over one a build wrote after `sign` read it, and a build never drops a
//! signature `sign` just added.
//!
//! Writers that are not ours (`nix copy`) take no lock; `nix copy` never
//! replaces a narinfo that is there, so it loses no signature either. On a
//! file system without `flock` (some network file systems), runs go
//! unlocked: each still follows the rule, and only a build naming the same
//! narinfo in the instant between `sign` reading and renaming it can undo
//! that one signature.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cache::dir::{CacheDir, MAX_NARINFO, Stamp};
use crate::durable::atomic_file::{AtomicFile, FileSystems};
pub use crate::durable::lock::CacheLock;
use crate::format::narinfo::{NarInfo, Settled, settle};

/// At most this many narinfos wait to be named at once, in a build or in
/// [`write_narinfos`]: each holds an open file. It must not be small, as
/// every batch waits for a `syncfs`: with 256, 10,000 tiny store paths made
/// 40 `syncfs` calls in a build, the workers waiting on each, and a merge of
/// 100,000 made 391. The soft limit of open files (often 1024) is raised to
/// the hard one for this, and [`OTHER_FILES`] are left for the rest.
const BATCH_MAX: usize = 8192;

/// Open files kept free for the rest of the run: the walk (a descriptor per
/// directory level of each worker), NAR files, the store's files.
const OTHER_FILES: u64 = 512;

/// How many narinfos may wait at once, given the open-files limit.
pub fn batch_max() -> usize {
    let limit = crate::resources::system::raise_open_files_limit(BATCH_MAX as u64 + OTHER_FILES);
    usize::try_from(limit.saturating_sub(OTHER_FILES)).unwrap_or(BATCH_MAX).clamp(16, BATCH_MAX)
}

/// Narinfos [`write_narinfos`] names after one `syncfs` when it rewrites
/// what is there.
const REWRITE_BATCH: usize = 256;

/// A narinfo to name: its file name, what it says, and, for `sign`, the
/// text it was read as (see [`settle`]).
pub struct NarInfoWrite<'a> {
    pub name: &'a str,
    pub info: &'a NarInfo,
    /// The text it was read as, and the file's stamp then.
    pub read_as: Option<(&'a str, Stamp)>,
}

/// The narinfo named `name` in `cache` now, if any. One that cannot be
/// read as a narinfo (a symlink, a FIFO, garbage) is none: it is replaced.
pub fn current(cache: &CacheDir, name: &str) -> Option<String> {
    cache.read_text(Path::new(name), MAX_NARINFO).ok()
}

/// Names each of `writes` in `cache` by the rule of [`settle`], holding the
/// cache's lock exclusively. With `sync`: `syncfs` first puts what was
/// copied into the cache (if `copied`) on disk, then each batch of
/// narinfos is written, synced, and only then named, and a last `syncfs`
/// puts the names on disk. After a power cut a narinfo is then its old self
/// or its new self, never empty, and never points at a NAR not on disk.
///
/// Returns how many were written (the others said what they would). A
/// narinfo that another run changed since it was read (`read_as`) to
/// describe another NAR file is not touched, and fails the call once the
/// others are named.
pub fn write_narinfos(
    cache: &CacheDir,
    store_dir: &str,
    writes: &[NarInfoWrite],
    sync: bool,
    copied: bool,
) -> Result<usize> {
    let dir = cache.path();
    let file_systems = if sync { FileSystems::of(&[dir, &dir.join("nar")])? } else { FileSystems::default() };
    if copied {
        file_systems.sync()?;
    }
    let _lock = CacheLock::take(cache, true)?;
    let mut changed = Vec::new();
    let mut written = 0;
    // Rewriting narinfos that exist (`sign` in place), 8,192 pending inodes cost
    // ~5 s more system time at 100,000 than batches of 256, for no time
    // saved; writing new ones (`merge`, `sign --out`), fewer syncs save a fifth.
    let batch = if copied { batch_max() } else { REWRITE_BATCH };
    for batch in writes.chunks(batch) {
        let mut files = Vec::with_capacity(batch.len());
        for write in batch {
            // Unchanged since read (the same file): no need to read it again.
            let current = match write.read_as {
                Some((text, stamp)) if cache.stamp(write.name) == Some(stamp) => Some(text.to_owned()),
                _ => current(cache, write.name),
            };
            let expected = write.read_as.map(|(text, _)| text);
            let text = match settle(store_dir, write.info, current.as_deref(), expected) {
                Settled::Unchanged => continue,
                Settled::Changed => {
                    changed.push(write.name);
                    continue;
                }
                Settled::Write(text) => text,
            };
            let context = || format!("writing {}", dir.join(write.name).display());
            let mut file = AtomicFile::create(dir, write.name).with_context(context)?;
            file.write_all(text.as_bytes()).with_context(context)?;
            files.push((write.name, file));
        }
        file_systems.sync()?;
        written += files.len();
        for (name, file) in files {
            file.persist(name).with_context(|| format!("naming {}", dir.join(name).display()))?;
        }
    }
    file_systems.sync()?;
    if let Some(first) = changed.first() {
        bail!(
            "{} changed while this run read it ({} narinfo(s) in all): another run wrote another NAR for its store \
             path meanwhile, so it was left as that run wrote it; run again",
            dir.join(first).display(),
            changed.len()
        );
    }
    Ok(written)
}
