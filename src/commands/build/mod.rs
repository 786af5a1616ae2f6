//! The flat-file binary cache: its layout, and the per-path pipeline that fills it.
//!
//! ```text
//! <out>/nix-cache-info                 StoreDir: /nix/store [WantMassQuery: 1] [Priority: N]
//! <out>/make-binary-cache.json         how the NARs were made (see below)
//! <out>/<hash part>.narinfo            one per store path of the closure
//! <out>/nar/<FileHash>.nar[.xz|.zst]   the (compressed) NARs
//! <out>/realisations/ build-trace-v2/ log/ debuginfo/
//! <out>/<hash part>.ls                 with write_nar_listing: the NAR listing
//! <out>/debuginfo/<build id>.debug     with index_debug_info
//! ```
//!
//! The empty directories are there because Nix creates them when it opens a
//! `file://` cache, which fails on a read-only mount, and read-only mounts are
//! a main use of such a cache (`realisations/` became `build-trace-v2/` in Nix
//! 2.35, so both exist).
//!
//! Each store path goes through one pass: the file system walk produces the
//! NAR, which is hashed and counted (NarHash, NarSize), compressed, and hashed
//! and counted again (FileHash, FileSize) on its way to a file that has no
//! name yet. Only when the NAR matches the NarHash and NarSize Nix recorded is
//! the file given its final name (see [`crate::atomic_file`]), and only then
//! is its narinfo written, named only once complete too: a narinfo never
//! points at a missing, partial or unchecked NAR. Paths are processed by a
//! pool of workers, largest NAR first, so that a big path does not start last
//! and leave the other cores idle.
//!
//! Several runs may fill one directory at once, with the same settings or
//! not: every file is named atomically (see [`crate::atomic_file`]); a NAR
//! already there under its name (its FileHash) is kept when its size is
//! right (as Nix's `BinaryCacheStore::addToStore` keeps an existing NAR
//! file) and replaced when not; a narinfo replaces the old one, which pointed
//! at a NAR of its own; `nix-cache-info` is written only when missing, and an
//! existing one must be for the same store directory and hold the
//! `WantMassQuery` and `Priority` this run was given, if any (see
//! `check_cache_info_text`).
//!
//! The manifest (`make-binary-cache.json`, see [`crate::format::manifest`])
//! says how every NAR of the cache was made, which is what lets a later run
//! reuse them (see [`crate::reuse`]). So it is only written where that is
//! true, before anything else of the run:
//!
//! * into a new cache (no narinfo, no file in `nar/`);
//! * an existing one with the same settings is kept;
//! * an existing one that differs is replaced by
//!   [`MIXED`](crate::format::manifest::MIXED), which matches no run: the
//!   cache now holds NARs made two ways, and neither manifest would describe
//!   all of them. That file stays, so a manifest never comes back;
//! * a cache with NARs but no manifest (written by `nix copy` or by an
//!   older version) gets none, for the same reason.
//!
//! Concurrent runs: a manifest is created only where there is no such file
//! (`link`, which never replaces), and read again when another run created
//! it first; it is only ever replaced by `MIXED`, never removed. So of two
//! runs with different settings, the second replaces the first's, and a run
//! that found the cache empty cannot add a manifest after another has been
//! replaced. Unnamed NARs still being written (invisible in `nar/`) belong to
//! runs that settled the manifest before, so they are covered too. Writers
//! that know nothing of the manifest (`nix copy`, older versions) adding to
//! a new cache at the same moment are not. Each log line about the manifest
//! is returned in [`Summary::notes`].
//!
//! Durability: the narinfos of checked paths are written but wait unnamed in
//! a batch (see `NarInfoBatch`) until one `syncfs` has put them and their
//! NARs on disk, and are named only then; a last `syncfs` puts the narinfos'
//! names on disk before the run ends. After a power cut a narinfo is
//! therefore complete and points at a complete NAR, or is missing (a rerun
//! writes it); a run that exited 0 is on disk whole. `Settings::sync = false`
//! skips the waiting but not the order (a narinfo is still named only after
//! its NAR is complete, checked and named): for throwaway caches
//! (`--no-sync`), and in a Nix build (builder mode), where the cache is a
//! build output like any other. There it becomes a store path only when Nix
//! registers it, after the builder exits, so a crash before then leaves an
//! invalid path that Nix builds again; and whether an output is on disk when
//! it is registered is Nix's setting, off by default in every version:
//! Nix 2.8 calls `sync()` first only with `sync-before-registering`
//! (`LocalStore::registerValidPaths`, local-store.cc), and the
//! `fsync-store-paths` of Nix 2.25 covers what Nix itself writes from a NAR
//! (`LocalStore::addToStore`: substitution, `nix copy`), while
//! `registerOutputs` (derivation-builder.cc) registers an input-addressed
//! output such as ours without syncing it. Syncing in the builder would
//! make every build wait for the disk to protect one output among many.
//! An existing NAR is judged by its size only: one damaged without a change
//! of size (by a run that did not sync, cut by a power loss) is kept.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sha2::Digest;

use crate::atomic_file::{AtomicFile, FileSystems};
use crate::blocks::BlockQueue;
use crate::cache_dir::{self, CacheDir};
use crate::closure::PathInfo;
use crate::compression::{Compression, Contexts};
use crate::dump::Dumper;
use crate::format::cache_info::{self, CacheInfo};
use crate::format::hash::{HashingWriter, Sha256Hash};
use crate::format::listing::Listing;
use crate::format::manifest::{self, Manifest};
use crate::format::nar_reader::{Event, NarReader};
use crate::format::narinfo::NarInfo;
use crate::format::narinfo::{ParsedNarInfo, Settled, settle};
use crate::format::store_path::StorePath;
use crate::narinfos::{self, CacheLock};
use crate::resources::{MemoryBudget, path_need};
pub use crate::reuse::EarlierCaches;
use crate::reuse::Reusable;

/// The directories Nix expects in a `file://` cache besides `nar/`.
pub const EMPTY_DIRS: [&str; 4] = ["realisations", "build-trace-v2", "log", "debuginfo"];

/// How to write the cache.
#[derive(Debug, Clone)]
pub struct Settings {
    pub store_dir: String,
    pub compression: Compression,
    /// `None`: the compressor's own default.
    pub compression_level: Option<i32>,
    /// Worker threads; at least 1.
    pub jobs: usize,
    /// What the compressors may take together (see [`crate::resources`]);
    /// `None`: no limit.
    pub max_memory: Option<u64>,
    /// Whether NARs must be on disk before their narinfos are named, and
    /// everything on disk before the run ends; `false` in a Nix build and
    /// with `--no-sync` (see the module documentation).
    pub sync: bool,
    /// What `nix-cache-info` says besides `StoreDir`; `None`: nothing.
    pub priority: Option<i32>,
    pub want_mass_query: Option<bool>,
    /// Write `<hash part>.ls`, the NAR listing (see [`crate::format::listing`]).
    pub write_nar_listing: bool,
    /// Write `debuginfo/<build id>.debug` for the NARs' debug info files.
    pub index_debug_info: bool,
    /// Earlier caches whose compressed NARs may be copied (see [`crate::reuse`]).
    pub reuse: EarlierCaches,
}

impl Settings {
    /// `compression` at its default level into a cache for `store_dir`, by
    /// one worker with no memory limit, synced, with nothing optional and
    /// nothing reused: the settings every other is a change of.
    pub fn new(store_dir: String, compression: Compression) -> Self {
        Self {
            store_dir,
            compression,
            compression_level: None,
            jobs: 1,
            max_memory: None,
            sync: true,
            priority: None,
            want_mass_query: None,
            write_nar_listing: false,
            index_debug_info: false,
            reuse: EarlierCaches::default(),
        }
    }

    /// What `nix-cache-info` says for these settings.
    pub fn cache_info(&self) -> CacheInfo<'_> {
        CacheInfo { store_dir: &self.store_dir, priority: self.priority, want_mass_query: self.want_mass_query }
    }

    /// The manifest of the NARs these settings write.
    pub fn manifest(&self) -> Manifest {
        Manifest::new(self.compression, self.compression.describe_encoder(self.compression_level))
    }
}

/// What one store path became.
#[derive(Debug, Clone)]
pub struct Written {
    pub nar_size: u64,
    pub file_size: u64,
    /// Copied from an earlier cache rather than compressed.
    pub reused: bool,
}

/// Totals for the closing line of the build log.
#[derive(Debug, Clone)]
pub struct Summary {
    pub paths: usize,
    /// NARs copied from earlier caches; `None` when none were given.
    pub reused: Option<usize>,
    pub nar_bytes: u64,
    pub file_bytes: u64,
    pub elapsed: Duration,
    /// Lines for the log: what became of the manifest, when not the obvious.
    pub notes: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(f, "{}", count(self.paths, "store path"))?;
        if let Some(reused) = self.reused {
            write!(f, " ({} reused, {} compressed)", count(reused, "NAR"), self.paths - reused)?;
        }
        write!(
            f,
            ", {} of NAR in, {} out, in {secs:.2} s ({})",
            human(self.nar_bytes),
            human(self.file_bytes),
            per_second(self.nar_bytes, self.elapsed)
        )
    }
}

/// What the pipeline tells whoever shows its progress (the binary's
/// [`crate::progress`]), which stays out of the pipeline itself. Every method
/// does nothing unless implemented. They are called from the workers: each
/// worker has a number below [`Settings::jobs`], and
/// [`nar_bytes`](Self::nar_bytes) is called for every chunk of every NAR, so
/// it must be cheap and take no lock (an atomic add will do).
pub trait Observer: Sync {
    /// Before the first path: how many paths, and NAR bytes, there are.
    fn started(&self, _paths: usize, _nar_bytes: u64) {}
    /// Worker `worker` starts on `info`.
    fn path_started(&self, _worker: usize, _info: &PathInfo) {}
    /// `bytes` more of the NAR worker `worker` is on went through the pipeline.
    fn nar_bytes(&self, _worker: usize, _bytes: u64) {}
    /// Worker `worker` is done with its path: checked, or failed.
    fn path_finished(&self, _worker: usize) {}
    /// The narinfo of `info` is named: the path is in the cache.
    fn path_written(&self, _info: &PathInfo, _written: &Written) {}
}

/// Writes the cache for `closure` into `out`, telling `observer` how it goes.
pub fn write_cache(closure: &[PathInfo], out: &Path, settings: &Settings, observer: &impl Observer) -> Result<Summary> {
    let start = Instant::now();
    // Largest first: the last paths to start are then the quickest to finish.
    let mut plan: Vec<&PathInfo> = closure.iter().collect();
    plan.sort_by(|a, b| b.nar_size.cmp(&a.nar_size).then_with(|| a.path.cmp(&b.path)));
    // Looked up before anything is written: a damaged earlier cache fails
    // the run before it starts.
    let reusable: Vec<Option<Reusable>> = plan
        .iter()
        .map(|info| settings.reuse.find(info, settings.compression, &settings.store_dir))
        .collect::<Result<_>>()?;
    let reused = reusable.iter().filter(|r| r.is_some()).count();

    let notes = create_layout(out, &settings.cache_info(), &settings.manifest())?.into_iter().collect();
    let narinfos = NarInfoBatch::new(out, &settings.store_dir, settings.sync)?;

    let next = AtomicUsize::new(0);
    // Only what is compressed counts: copying is quick.
    let unstarted_bytes =
        AtomicU64::new(plan.iter().zip(&reusable).filter(|(_, r)| r.is_none()).map(|(info, _)| info.nar_size).sum());
    observer.started(plan.len(), plan.iter().map(|info| info.nar_size).sum());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let totals = Mutex::new((0u64, 0u64));
    let workers = settings.jobs.clamp(1, plan.len().max(1));
    let memory = MemoryBudget::new(settings.max_memory);
    // xz shares its blocks between the workers (see [`crate::blocks`]).
    let blocks = (settings.compression == Compression::Xz).then(|| Arc::new(BlockQueue::default()));
    let naming = std::thread::scope(|scope| {
        let namer = scope.spawn(|| narinfos.name_batches(observer));
        // The batch closes when the last worker stops (and not before all
        // are spawned): paths checked before a failure still get narinfos.
        let spawning = narinfos.producer();
        for worker in 0..workers {
            let producer = narinfos.producer();
            let (plan, reusable, next, unstarted_bytes, failed, first_error, totals, memory, narinfos, blocks) = (
                &plan,
                &reusable,
                &next,
                &unstarted_bytes,
                &failed,
                &first_error,
                &totals,
                &memory,
                &narinfos,
                &blocks,
            );
            scope.spawn(move || {
                let _producer = producer;
                let mut dumper = Dumper::default();
                let mut contexts = blocks.clone().map_or_else(Contexts::default, Contexts::sharing);
                let mut reserved = 0;
                while !failed.load(Ordering::Relaxed) {
                    // Counted before taking a path, so that helpers never
                    // leave while a path may still queue blocks.
                    let _owner = blocks.as_ref().map(|queue| queue.owner());
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(info) = plan.get(index) else { break };
                    observer.path_started(worker, info);
                    let on_nar = |bytes| observer.nar_bytes(worker, bytes);
                    let result = if let Some(reusable) = &reusable[index] {
                        // No compressor: nothing to reserve.
                        write_path(info, out, settings, Source::Reuse(reusable), &mut dumper, &on_nar)
                    } else {
                        let rest = unstarted_bytes.fetch_sub(info.nar_size, Ordering::Relaxed) - info.nar_size;
                        let wanted = match settings.compression {
                            // Blocks in flight, not threads: any idle worker
                            // helps with them (see [`crate::blocks`]).
                            Compression::Xz => settings
                                .compression
                                .useful_threads(info.nar_size, settings.compression_level)
                                .min(u32::try_from(workers).unwrap_or(u32::MAX)),
                            _ => compression_threads(info.nar_size, rest, settings),
                        };
                        let need = |threads| {
                            path_need(settings.compression, settings.compression_level, info.nar_size, threads)
                        };
                        let threads = memory.reserve(&mut reserved, wanted, need, || contexts.release());
                        let source = Source::Compress(threads, &mut contexts);
                        let result = write_path(info, out, settings, source, &mut dumper, &on_nar);
                        if !contexts.holds_memory() {
                            memory.release(&mut reserved);
                        }
                        result
                    };
                    observer.path_finished(worker);
                    match result {
                        Ok(checked) => {
                            let mut t = totals.lock().unwrap();
                            t.0 += checked.written.nar_size;
                            t.1 += checked.written.file_size;
                            drop(t);
                            if !narinfos.add(info, checked) {
                                // Naming failed: the run fails with that error.
                                failed.store(true, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
                if let Some(queue) = blocks
                    && !failed.load(Ordering::Relaxed)
                {
                    // No paths left: compress other paths' blocks, within
                    // the budget, holding nothing while waiting for them.
                    contexts.release();
                    memory.release(&mut reserved);
                    let level = settings.compression_level;
                    let reserved = std::cell::Cell::new(0);
                    let afford = |nar_size| {
                        let mut mine = reserved.get();
                        let fits = memory.try_reserve(&mut mine, path_need(Compression::Xz, level, nar_size, 1));
                        reserved.set(mine);
                        fits
                    };
                    let rest = || {
                        let mut mine = reserved.take();
                        memory.release(&mut mine);
                    };
                    queue.help(contexts.xz_encoder(), afford, rest);
                    rest();
                }
                contexts.release();
                memory.release(&mut reserved);
            });
        }
        drop(spawning);
        namer.join().expect("the narinfo thread does not panic")
    });
    let synced = narinfos.sync();
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    naming?;
    synced?;
    let (nar_bytes, file_bytes) = totals.into_inner().unwrap();
    Ok(Summary {
        paths: plan.len(),
        reused: settings.reuse.given().then_some(reused),
        nar_bytes,
        file_bytes,
        elapsed: start.elapsed(),
        notes,
    })
}

/// Threads for compressing one NAR of `size` bytes when `rest` bytes of other
/// paths are still to start: its share of the workers, in proportion to its
/// part of the work left (rounded), and at least one. A path small next to
/// the rest gets one thread, while the other workers have enough work of
/// their own; a path that dominates what is left, as a big path does near the
/// end or in a closure of one big path, gets up to all the workers' worth.
/// Giving a path more threads than its share would only run more threads than
/// cores while the others still work, and cost memory (each zstdmt worker
/// holds its own context and job buffers). The output is the same either way
/// (see [`Compression::encoder`]). For zstd only: xz does not fix threads per
/// path but shares its blocks between the workers (see [`crate::blocks`]).
fn compression_threads(size: u64, rest: u64, settings: &Settings) -> u32 {
    let jobs = settings.jobs.max(1) as u128;
    let (size_, left) = (u128::from(size), u128::from(size) + u128::from(rest));
    // round(size × jobs / left), in integers.
    let share = (2 * size_ * jobs + left).checked_div(2 * left).unwrap_or(1);
    let share = u32::try_from(share).unwrap_or(u32::MAX).max(1);
    settings.compression.useful_threads(size, settings.compression_level).min(share)
}

/// Fails unless an existing `nix-cache-info` holding `text` agrees: the
/// same `StoreDir` (Nix refuses every path of a cache for another store
/// directory, so adding to it would only spoil it for its own store) or
/// none, and the `WantMassQuery` and `Priority` this run was given, as
/// Nix reads them. A setting this run was not given may be anything:
/// the cache is simply added to. A cache cannot say two things at once,
/// and rewriting what another run wrote would change it under its users.
fn check_cache_info_text(info: &CacheInfo, text: &str, file: &Path) -> Result<()> {
    let parsed = cache_info::parse(text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    if let Some(theirs) = parsed.store_dir.map(|f| f.value)
        && theirs != info.store_dir
    {
        bail!(
            "{} says this cache is for the store directory {theirs}, but this run writes paths of \
             {} ($NIX_STORE, by default /nix/store); a cache serves one store directory (Nix \
             refuses a cache for another): write to another directory",
            file.display(),
            info.store_dir
        );
    }
    if let Some(want) = info.want_mass_query {
        // As Nix: any value but `1` is false.
        let theirs = parsed.want_mass_query.map(|f| f.value);
        if parsed.want_mass_query() != Some(want) {
            bail!(
                "{} has {}, but this run was asked for WantMassQuery: {}: an existing cache keeps \
                 its settings; write to another directory or drop the setting",
                file.display(),
                theirs.map_or("no WantMassQuery".into(), |v| format!("WantMassQuery: {v}")),
                u8::from(want)
            );
        }
    }
    if let Some(priority) = info.priority {
        let theirs = parsed.priority.map(|f| f.value);
        if theirs.and_then(|v| cache_info::parse_priority(v).ok()) != Some(priority) {
            bail!(
                "{} has {}, but this run was asked for Priority: {priority}: an existing cache keeps \
                 its settings; write to another directory or drop the setting",
                file.display(),
                theirs.map_or("no Priority".into(), |v| format!("Priority: {v}")),
            );
        }
    }
    Ok(())
}

/// Creates the directories and `nix-cache-info`, or checks that an existing
/// `nix-cache-info` agrees with `info`, before writing anything; then
/// settles the manifest (see the module documentation), returning a line
/// for the log when it is not written or kept.
fn create_layout(out: &Path, info: &CacheInfo, manifest: &Manifest) -> Result<Option<String>> {
    check_out(out)?;
    let info_file = out.join("nix-cache-info");
    check_cache_info(out, info)?;
    let had_nars = has_nars(out)?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for dir in std::iter::once("nar").chain(EMPTY_DIRS) {
        cache_dir::create_dirs_beneath(out, Path::new(dir))?;
    }
    let context = || format!("writing {}", info_file.display());
    let mut file = AtomicFile::create(out, "nix-cache-info").with_context(context)?;
    file.write_all(info.text().as_bytes()).with_context(context)?;
    if file.persist_new("nix-cache-info").with_context(context)?.is_some() {
        // Another run created it since the check above.
        check_cache_info(out, info)?;
    }
    settle_manifest(out, manifest, had_nars)
}

/// `out` must be missing, a cache (it has `nix-cache-info`), or an empty
/// directory, but for what a run of ours leaves without `nix-cache-info`
/// (the layout's directories, the manifest, hidden temporary files): a
/// cache is never written among other files, such as a source tree.
fn check_out(out: &Path) -> Result<()> {
    match fs::metadata(out) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
        Ok(meta) if !meta.is_dir() => bail!(
            "--out {} exists and is not a directory: give a directory that is new, empty or a binary cache to add to",
            out.display()
        ),
        Ok(_) => {}
    }
    if fs::symlink_metadata(out.join("nix-cache-info")).is_ok() {
        return Ok(());
    }
    let entries = fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?;
    for entry in entries {
        let name = entry.with_context(|| format!("reading {}", out.display()))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "nar" || name == manifest::FILE_NAME || EMPTY_DIRS.contains(&name.as_ref())
        {
            continue;
        }
        bail!(
            "--out {} is not empty and has no nix-cache-info, so it is no binary cache (it holds {name}, among \
             others): refusing to write a cache among other files; give a new or empty directory, or a cache to add to",
            out.display()
        );
    }
    Ok(())
}

/// Writes, keeps or replaces the manifest of the cache in `out`, which held
/// NARs (or narinfos) before this run if `had_nars`.
fn settle_manifest(out: &Path, manifest: &Manifest, had_nars: bool) -> Result<Option<String>> {
    let file = out.join(manifest::FILE_NAME);
    let context = || format!("writing {}", file.display());
    // Twice at most: when another run creates it between our look and ours.
    for _ in 0..2 {
        match read_own(out, manifest::FILE_NAME)? {
            Some(theirs) if theirs == manifest::MIXED => {
                return Ok(Some(format!(
                    "{} says the cache holds NARs made with different settings: later runs will not reuse its NARs",
                    file.display()
                )));
            }
            Some(theirs) => {
                let Err(why) = manifest.compare(&theirs) else { return Ok(None) };
                let mut mixed = AtomicFile::create(out, manifest::FILE_NAME).with_context(context)?;
                mixed.write_all(manifest::MIXED.as_bytes()).with_context(context)?;
                mixed.persist(manifest::FILE_NAME).with_context(context)?;
                return Ok(Some(format!(
                    "{} was made with other settings ({why}): the cache now holds NARs made both ways, and the \
                     file says so instead; later runs will not reuse its NARs",
                    file.display()
                )));
            }
            None => {
                if had_nars {
                    return Ok(Some(format!(
                        "{} already holds NARs but no {} (written by `nix copy` or by an older version): none is \
                         written, as it would describe NARs it knows nothing of; later runs will not reuse its NARs",
                        out.display(),
                        manifest::FILE_NAME
                    )));
                }
                let mut new = AtomicFile::create(out, manifest::FILE_NAME).with_context(context)?;
                new.write_all(manifest.render().as_bytes()).with_context(context)?;
                if new.persist_new(manifest::FILE_NAME).with_context(context)?.is_none() {
                    return Ok(None);
                }
            }
        }
    }
    Ok(None)
}

/// Whether the cache in `out` holds a narinfo or a NAR file (not counting
/// the temporary files of runs, whose names start with `.`).
pub(crate) fn has_nars(out: &Path) -> Result<bool> {
    let visible = |dir: &Path, narinfo_only: bool| -> Result<bool> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries {
            let name = entry.with_context(|| format!("reading {}", dir.display()))?.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') && (!narinfo_only || name.ends_with(".narinfo")) {
                return Ok(true);
            }
        }
        Ok(false)
    };
    Ok(visible(out, true)? || visible(&out.join("nar"), false)?)
}

/// Fails unless the `nix-cache-info` of the cache in `out`, if it has one, agrees
/// with `info` (see [`check_cache_info_text`]).
fn check_cache_info(out: &Path, info: &CacheInfo) -> Result<()> {
    let Some(text) = read_own(out, "nix-cache-info")? else { return Ok(()) };
    check_cache_info_text(info, &text, &out.join("nix-cache-info"))
}

/// The small file `name` of the cache in `out`, read as every file of a
/// cache is (see [`CacheDir`]): never through a symlink, never a FIFO, in
/// bounds. `None` when `out` or the file does not exist.
fn read_own(out: &Path, name: &str) -> Result<Option<String>> {
    let cache = match CacheDir::open(out) {
        Ok(cache) => cache,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", out.display())),
    };
    match cache.read_small(Path::new(name), cache_dir::MAX_SMALL_FILE) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.is_missing() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A store path whose NAR is checked and named, with its narinfo written
/// but not yet named.
struct Checked {
    narinfo: AtomicFile,
    /// What it says.
    text: String,
    narinfo_name: String,
    written: Written,
}

/// Where a path's compressed NAR comes from.
enum Source<'r, 'c> {
    /// Compressed here, with this many threads.
    Compress(u32, &'c mut Contexts),
    /// Copied from an earlier cache.
    Reuse(&'r Reusable),
}

/// The per-path pipeline: walk → NAR → NarHash → compress → FileHash → file,
/// then the narinfo, left for [`NarInfoBatch`] to name. With a NAR to reuse,
/// the walk only hashes, and the earlier cache's file is copied and checked.
fn write_path(
    info: &PathInfo,
    out: &Path,
    settings: &Settings,
    source: Source,
    dumper: &mut Dumper,
    on_nar: &dyn Fn(u64),
) -> Result<Checked> {
    let compression = settings.compression;
    let nar_dir = out.join("nar");
    let reused = matches!(source, Source::Reuse(_));
    let (file, nar_hash, nar_size, file_hash, file_size, listing) = match source {
        Source::Compress(threads, contexts) => {
            compress_nar(info, &nar_dir, settings, threads, dumper, contexts, on_nar)?
        }
        Source::Reuse(reusable) => {
            let (nar_hash, nar_size, _, listing) =
                dump_nar(info, &nar_dir, settings, io::sink(), TOKEN_BUFFER, dumper, on_nar)?;
            let label = format!("{}.nar{}", info.path.hash_part(), compression.extension());
            let file = reusable.copy(&nar_dir, &label).with_context(|| format!("reusing the NAR of {}", info.path))?;
            (file, nar_hash, nar_size, reusable.expected.file_hash, reusable.expected.file_size, listing)
        }
    };
    // Dropping `file` here discards it: nothing of it was ever named.
    if (nar_hash, nar_size) != (info.nar_hash, info.nar_size) {
        bail!(
            "{}: its contents do not match what Nix recorded: NAR hash {} and size {} expected, \
             but the store has NAR hash {nar_hash} and size {nar_size}; the store is corrupt \
             or changed (try `nix-store --verify --check-contents --repair`)",
            info.path,
            info.nar_hash,
            info.nar_size
        );
    }

    let nar_name = format!("{}.nar{}", file_hash.nix32(), compression.extension());
    let narinfo = NarInfo {
        store_path: &info.path,
        url: format!("nar/{nar_name}"),
        compression,
        file_hash,
        file_size,
        nar_hash,
        nar_size,
        references: &info.references,
        deriver: info.deriver.as_ref(),
        signatures: &info.signatures,
        ca: info.ca.as_ref(),
    };
    // Rendered before the NAR is named: a refused narinfo leaves nothing behind.
    let text = narinfo.render().map_err(|e| anyhow!(e))?;
    name_nar(file, &nar_dir, &nar_name, file_size)
        .with_context(|| format!("naming {}", nar_dir.join(&nar_name).display()))?;
    if let Some(listing) = listing {
        write_listing(info, out, settings, &listing, &narinfo.url)?;
    }
    let narinfo_name = narinfo.file_name();
    let context = || format!("writing {}", out.join(&narinfo_name).display());
    let mut file = AtomicFile::create(out, &narinfo_name).with_context(context)?;
    file.write_all(text.as_bytes()).with_context(context)?;
    Ok(Checked { narinfo: file, text, narinfo_name, written: Written { nar_size, file_size, reused } })
}

/// Writes the NAR listing and debug info entries of a checked path, before
/// its narinfo is named: each atomically, the listing replacing an older one
/// (it lists the same NAR) and a debug info entry never replacing one, as
/// Nix's `addToStoreCommon` (binary-cache-store.cc) does.
fn write_listing(info: &PathInfo, out: &Path, settings: &Settings, listing: &Listing, nar_url: &str) -> Result<()> {
    if settings.write_nar_listing {
        let name = format!("{}.ls", info.path.hash_part());
        let context = || format!("writing the NAR listing of {} to {}", info.path, out.join(&name).display());
        let mut file = AtomicFile::create(out, &name).with_context(context)?;
        file.write_all(&listing.json()).with_context(context)?;
        file.persist(&name).with_context(context)?;
    }
    if settings.index_debug_info {
        let dir = out.join("debuginfo");
        for member in listing.debug_members() {
            let context =
                || format!("writing the debug info entry of {} to {}", info.path, dir.join(&member.key).display());
            let mut file = AtomicFile::create(&dir, &member.key).with_context(context)?;
            file.write_all(member.json(nar_url).as_bytes()).with_context(context)?;
            // An existing entry is kept: it may name a NAR of another store path.
            file.persist_new(&member.key).with_context(context)?;
        }
    }
    Ok(())
}

/// Names a NAR file after its FileHash. A file of that name is the same NAR,
/// written by an earlier or concurrent run, and is left alone; unless its
/// size is not `file_size`, when it is damaged (a run of an older version cut
/// by a power loss, or someone's editing) and replaced.
fn name_nar(file: AtomicFile, nar_dir: &Path, nar_name: &str, file_size: u64) -> io::Result<()> {
    let Some(file) = file.persist_new(nar_name)? else { return Ok(()) };
    match fs::metadata(nar_dir.join(nar_name)) {
        Ok(existing) if existing.len() == file_size => Ok(()),
        // Damaged, or removed since: replace it either way.
        _ => file.persist(nar_name),
    }
}

/// Streams the NAR of `info.path` through the compressor into a new, still
/// unnamed file in `nar_dir`, returning it with (NarHash, NarSize, FileHash,
/// FileSize); `on_nar` is told the size of every chunk of NAR on its way.
fn compress_nar(
    info: &PathInfo,
    nar_dir: &Path,
    settings: &Settings,
    threads: u32,
    dumper: &mut Dumper,
    contexts: &mut Contexts,
    on_nar: &dyn Fn(u64),
) -> Result<(AtomicFile, Sha256Hash, u64, Sha256Hash, u64, Option<Listing>)> {
    let io_context = || format!("writing the NAR of {} in {}", info.path, nar_dir.display());
    let compression = settings.compression;
    let file = AtomicFile::create(nar_dir, &format!("{}.nar{}", info.path.hash_part(), compression.extension()))
        .with_context(io_context)?;
    // Uncompressed, the file is the NAR: hashing it twice would be waste,
    // and so would buffering it twice. The buffer in front of the NarHash
    // then takes the file's size instead, so that write(2)s stay as few.
    let compressed = compression != Compression::None;
    let nar_file = NarFile::new(file, compressed);
    let buffer = if compressed { TOKEN_BUFFER } else { FILE_BUFFER };
    let encoder = compression
        .encoder(nar_file, settings.compression_level, threads, info.nar_size, contexts)
        .with_context(io_context)?;
    let (nar_hash, nar_size, encoder, listing) = dump_nar(info, nar_dir, settings, encoder, buffer, dumper, on_nar)?;
    let nar_file = encoder.finish().with_context(io_context)?;
    let (file, file_hash, file_size) = nar_file.finish().with_context(io_context)?;
    if settings.sync {
        // The disk writes this NAR while the next is compressed, instead of
        // all at the next syncfs, which would also wait for other programs'
        // writes to the file system.
        file.start_writeback();
    }
    Ok((file, nar_hash, nar_size, file_hash.unwrap_or(nar_hash), file_size, listing))
}

/// The buffer that gathers the NAR's many small tokens (and small files)
/// before they reach the NarHash and the compressor.
const TOKEN_BUFFER: usize = 64 * 1024;

/// The buffer in front of a NAR file: at most one write(2) per this much.
const FILE_BUFFER: usize = 128 * 1024;

/// Walks `info.path` into `inner` as a NAR, through a buffer of `buffer`
/// bytes, returning its NarHash and NarSize, `inner`, and the NAR's listing
/// when one is wanted.
fn dump_nar<W: Write>(
    info: &PathInfo,
    nar_dir: &Path,
    settings: &Settings,
    inner: W,
    buffer: usize,
    dumper: &mut Dumper,
    on_nar: &dyn Fn(u64),
) -> Result<(Sha256Hash, u64, W, Option<Listing>)> {
    let io_context = || format!("writing the NAR of {} in {}", info.path, nar_dir.display());
    // Buffer the NAR's many small tokens before they reach the hasher and the
    // compressor; large file chunks pass straight through.
    // The listing, when wanted, is read from the NAR as it is written.
    let mut listing = Listing::new();
    let wanted = settings.write_nar_listing || settings.index_debug_info;
    let reader = wanted.then(|| NarReader::new(|event| listing.event(event)));
    let tee = Tee { inner, reader, on_nar };
    let mut nar = BufWriter::with_capacity(buffer, HashingWriter::new(tee));
    dumper.dump(Path::new(info.path.as_str()), &mut nar).with_context(io_context)?;
    let (nar_hash, nar_size, tee) =
        nar.into_inner().map_err(|e| anyhow!(e.into_error())).with_context(io_context)?.finish();
    if let Some(reader) = tee.reader {
        reader.finish().map_err(|e| anyhow!("{}: listing its NAR: {e}", info.path))?;
    }
    Ok((nar_hash, nar_size, tee.inner, wanted.then_some(listing)))
}

/// Passes the NAR on to `inner` and, when there is one, to a [`NarReader`]
/// that builds its listing, and tells `on_nar` how much went.
struct Tee<'o, W, F> {
    inner: W,
    reader: Option<NarReader<F>>,
    on_nar: &'o dyn Fn(u64),
}

impl<W: Write, F: FnMut(Event)> Write for Tee<'_, W, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        (self.on_nar)(n as u64);
        if let Some(reader) = &mut self.reader {
            reader.feed(&buf[..n]).map_err(io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The file a NAR is written to: always counted; hashed and buffered when
/// compressed (uncompressed, it comes from a buffer already).
struct NarFile {
    file: BufWriter<AtomicFile>,
    hasher: Option<sha2::Sha256>,
    size: u64,
}

impl NarFile {
    fn new(file: AtomicFile, hash: bool) -> Self {
        // A BufWriter of no capacity passes every write straight through.
        let capacity = if hash { FILE_BUFFER } else { 0 };
        Self { file: BufWriter::with_capacity(capacity, file), hasher: hash.then(sha2::Sha256::new), size: 0 }
    }

    fn finish(self) -> io::Result<(AtomicFile, Option<Sha256Hash>, u64)> {
        let file = self.file.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok((file, self.hasher.map(|h| Sha256Hash(h.finalize().into())), self.size))
    }
}

impl Write for NarFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// How long a checked path's narinfo may wait for the `syncfs` that puts its
/// NAR on disk.
const BATCH_AGE: Duration = Duration::from_secs(1);

/// At most this many narinfos wait at once: each holds an open file. Workers
/// wait when it is reached, so it must not be small: with 256, 10,000 tiny
/// store paths made 40 `syncfs` calls, the workers waiting on each, instead
/// of one a second. The soft limit of open files (often 1024) is raised to
/// the hard one for this, and [`OTHER_FILES`] are left for the rest.
const BATCH_MAX: usize = 8192;

/// Open files kept free for the rest of the run: the walk (a descriptor per
/// directory level of each worker), NAR files, the store's files.
const OTHER_FILES: u64 = 512;

/// How many narinfos may wait at once, given the open-files limit.
pub(crate) fn batch_max() -> usize {
    let limit = crate::resources::system::raise_open_files_limit(BATCH_MAX as u64 + OTHER_FILES);
    usize::try_from(limit.saturating_sub(OTHER_FILES)).unwrap_or(BATCH_MAX).clamp(16, BATCH_MAX)
}

/// The narinfos of checked paths, named in batches once their NARs are on
/// disk.
///
/// Workers [`add`](Self::add) a written but unnamed narinfo as soon as its
/// NAR is named. One thread ([`name_batches`](Self::name_batches)) takes the
/// batch when its oldest narinfo has waited [`BATCH_AGE`] (or it holds
/// [`batch_max`] of them, or the run is over), calls `syncfs` once for all of it
/// (which puts both the NARs and the narinfos' contents on disk) and only
/// then names the narinfos; a last [`sync`](Self::sync) puts those names on
/// disk. One `syncfs` a second writes back little more than the kernel soon
/// would anyway and costs far less than an `fsync` per file; the workers go
/// on compressing meanwhile. Without `sync`, narinfos are named at once.
struct NarInfoBatch<'a> {
    out: &'a Path,
    /// The same, open, to read and lock.
    cache: CacheDir,
    store_dir: &'a str,
    /// A directory on each file system the cache spans (`out`, `out/nar`),
    /// to `syncfs`; empty without `sync`.
    file_systems: FileSystems,
    sync: bool,
    /// See [`batch_max`].
    max_waiting: usize,
    state: Mutex<BatchState<'a>>,
    changed: Condvar,
}

#[derive(Default)]
struct BatchState<'a> {
    waiting: Vec<(&'a PathInfo, Checked)>,
    /// Live [`Producer`]s: when the last goes, the batch is closed.
    producers: usize,
    /// When the oldest of `waiting` came.
    oldest: Option<Instant>,
    /// No more will come: name what waits and stop.
    closed: bool,
    /// Naming failed: what comes is dropped unnamed, and the run fails.
    broken: bool,
}

impl<'a> NarInfoBatch<'a> {
    fn new(out: &'a Path, store_dir: &'a str, sync: bool) -> Result<Self> {
        let cache = CacheDir::open(out).with_context(|| format!("opening {}", out.display()))?;
        let file_systems = if sync { FileSystems::of(&[out, &out.join("nar")])? } else { FileSystems::default() };
        let max_waiting = batch_max();
        Ok(Self {
            out,
            cache,
            store_dir,
            file_systems,
            sync,
            max_waiting,
            state: Mutex::default(),
            changed: Condvar::new(),
        })
    }

    /// Hands over the narinfo of `info`, whose NAR is named; `false` when
    /// naming has failed, and the narinfo is dropped.
    fn add(&self, info: &'a PathInfo, checked: Checked) -> bool {
        let mut state = self.state.lock().unwrap();
        while state.waiting.len() >= self.max_waiting && !state.broken {
            state = self.changed.wait(state).unwrap();
        }
        debug_assert!(!state.closed, "added to a closed batch");
        if state.broken {
            return false;
        }
        state.oldest.get_or_insert_with(Instant::now);
        state.waiting.push((info, checked));
        if !self.sync || state.waiting.len() == 1 || state.waiting.len() >= self.max_waiting {
            self.changed.notify_all();
        }
        true
    }

    /// One that may [`add`](Self::add): the batch closes, nothing more to
    /// come, when the last is dropped (also when its worker panics).
    fn producer(&self) -> Producer<'_, 'a> {
        let mut state = self.state.lock().unwrap();
        debug_assert!(!state.closed, "a producer of a closed batch");
        state.producers += 1;
        Producer(self)
    }

    /// Names batches of narinfos, each after a sync, until the batch is
    /// closed and all are named, telling `observer` of each path named.
    fn name_batches(&self, observer: &impl Observer) -> Result<()> {
        let age = if self.sync { BATCH_AGE } else { Duration::ZERO };
        loop {
            let (batch, last) = {
                let mut state = self.state.lock().unwrap();
                while !state.closed && state.waiting.len() < self.max_waiting {
                    let Some(oldest) = state.oldest else {
                        state = self.changed.wait(state).unwrap();
                        continue;
                    };
                    let left = age.saturating_sub(oldest.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    state = self.changed.wait_timeout(state, left).unwrap().0;
                }
                state.oldest = None;
                let batch = std::mem::take(&mut state.waiting);
                // Workers held back by `max_waiting` may go on.
                self.changed.notify_all();
                (batch, state.closed)
            };
            if let Err(e) = self.name(batch, observer) {
                self.state.lock().unwrap().broken = true;
                self.changed.notify_all();
                return Err(e);
            }
            if last {
                return Ok(());
            }
        }
    }

    fn name(&self, batch: Vec<(&PathInfo, Checked)>, observer: &impl Observer) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.sync()?;
        // Shared: builds only add, and may name side by side; `sign` waits.
        let _lock = CacheLock::take(&self.cache, false)?;
        for (info, Checked { narinfo, text, narinfo_name, written }) in batch {
            self.name_narinfo(narinfo, &text, &narinfo_name)
                .with_context(|| format!("writing {}", self.out.join(&narinfo_name).display()))?;
            observer.path_written(info, &written);
        }
        Ok(())
    }

    /// Names `narinfo` (saying `text`) by the rule of [`narinfos`]: where
    /// the cache has a narinfo of the same NAR, its signatures stay.
    fn name_narinfo(&self, narinfo: AtomicFile, text: &str, name: &str) -> Result<()> {
        let Some(ours) = narinfo.persist_new(name)? else { return Ok(()) };
        let current = narinfos::current(&self.cache, name);
        let parsed = ParsedNarInfo::parse(self.store_dir, text).map_err(|e| anyhow!("our own narinfo: {e}"))?;
        match settle(self.store_dir, &parsed, current.as_deref(), None) {
            Settled::Unchanged => Ok(()),
            Settled::Write(merged) if merged == text => Ok(ours.persist(name)?),
            Settled::Write(merged) => {
                let mut file = AtomicFile::create(self.out, name)?;
                file.write_all(merged.as_bytes())?;
                if self.sync {
                    // Written after the batch's syncfs: on disk before named.
                    file.as_file().sync_data()?;
                }
                Ok(file.persist(name)?)
            }
            Settled::Changed => unreachable!("nothing was read to have changed"),
        }
    }

    /// Puts everything written so far on the cache's file systems on disk.
    fn sync(&self) -> Result<()> {
        self.file_systems.sync()
    }
}

/// See [`NarInfoBatch::producer`].
struct Producer<'b, 'a>(&'b NarInfoBatch<'a>);

impl Drop for Producer<'_, '_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap();
        state.producers -= 1;
        if state.producers == 0 {
            state.closed = true;
            self.0.changed.notify_all();
        }
    }
}

/// Whether the cache in `out` already has `path`: its narinfo exists and its
/// `StorePath:` line names exactly that path (the file name is only the hash
/// part, which another name could share).
pub fn has_narinfo(out: &Path, path: &StorePath) -> bool {
    let file = out.join(format!("{}.narinfo", path.hash_part()));
    fs::read_to_string(file)
        .is_ok_and(|text| text.lines().any(|line| line.strip_prefix("StorePath: ") == Some(path.as_str())))
}

/// `1 store path`, `2 store paths`: a count and a noun that takes an `s`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// A throughput in the units of [`human`], so that a line never mixes MiB
/// with MB/s: `212.3 MiB/s`.
pub fn per_second(bytes: u64, elapsed: Duration) -> String {
    format!("{:.1} MiB/s", bytes as f64 / (1u64 << 20) as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// A byte count for people: `512 B`, `3.4 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(compression: Compression, jobs: usize) -> Settings {
        Settings { jobs, ..Settings::new("/nix/store".into(), compression) }
    }

    #[test]
    fn counts_and_rates_read_as_english_in_one_unit() {
        assert_eq!(count(1, "store path"), "1 store path");
        assert_eq!(count(0, "worker"), "0 workers");
        assert_eq!(count(2, "worker"), "2 workers");
        assert_eq!(per_second(3 << 20, Duration::from_secs(2)), "1.5 MiB/s");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }

    #[test]
    fn a_narinfo_counts_only_if_it_names_the_path() {
        let out = std::env::temp_dir().join(format!("mbc-has-narinfo-{}", std::process::id()));
        fs::create_dir_all(&out).unwrap();
        let path = StorePath::parse("/nix/store", "/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a").unwrap();
        assert!(!has_narinfo(&out, &path));
        let file = out.join("q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr.narinfo");
        fs::write(&file, "StorePath: /nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-other\nURL: x\n").unwrap();
        assert!(!has_narinfo(&out, &path));
        fs::write(&file, "StorePath: /nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a\nURL: x\n").unwrap();
        assert!(has_narinfo(&out, &path));
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn compressor_threads_go_to_paths_that_would_outlast_the_rest() {
        let zstd = settings(Compression::Zstd, 4);
        const MIB: u64 = 1 << 20;
        // Plenty of other work: one thread each.
        assert_eq!(compression_threads(100 * MIB, 1000 * MIB, &zstd), 1);
        // One big path and little else: as many threads as it has 8 MiB jobs, up to the jobs.
        assert_eq!(compression_threads(1000 * MIB, 10 * MIB, &zstd), 4);
        assert_eq!(compression_threads(20 * MIB, 0, &zstd), 3);
        // A NAR zstd compresses in the calling thread cannot use a second one.
        assert_eq!(compression_threads(8 * MIB, 0, &zstd), 1);
        assert_eq!(compression_threads(1000 * MIB, 0, &settings(Compression::Zstd, 1)), 1);
        assert_eq!(compression_threads(1000 * MIB, 0, &settings(Compression::None, 4)), 1);
        // A path of about half of what is left: its share of 2 workers is 1
        // (one 100 MiB path beside 80 MiB of others), of 4 workers 2.
        assert_eq!(compression_threads(100 * MIB, 80 * MIB, &settings(Compression::Zstd, 2)), 1);
        assert_eq!(compression_threads(100 * MIB, 80 * MIB, &settings(Compression::Zstd, 4)), 2);
        assert_eq!(compression_threads(300 * MIB, 100 * MIB, &settings(Compression::Zstd, 2)), 2);
    }

    #[test]
    fn an_existing_cache_for_another_store_dir_is_refused_before_anything_is_written() {
        let dir = std::env::temp_dir().join(format!("mbc-cache-info-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("nix-cache-info"), "StoreDir: /gnu/store\n").unwrap();
        let e = format!("{:#}", layout(&dir, &store("/nix/store")).unwrap_err());
        assert!(e.contains("nix-cache-info") && e.contains("/gnu/store") && e.contains("/nix/store"), "{e}");
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["nix-cache-info"]);
        assert_eq!(fs::read_to_string(dir.join("nix-cache-info")).unwrap(), "StoreDir: /gnu/store\n");

        // The same store directory, or none named: the cache is added to.
        layout(&dir, &store("/gnu/store")).unwrap();
        fs::write(dir.join("nix-cache-info"), "WantMassQuery: 1\n").unwrap();
        layout(&dir, &store("/nix/store")).unwrap();
        assert_eq!(fs::read_to_string(dir.join("nix-cache-info")).unwrap(), "WantMassQuery: 1\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    fn layout(dir: &Path, info: &CacheInfo) -> Result<Option<String>> {
        create_layout(dir, info, &settings(Compression::Zstd, 1).manifest())
    }

    fn store(store_dir: &str) -> CacheInfo<'_> {
        CacheInfo { store_dir, priority: None, want_mass_query: None }
    }

    #[test]
    fn an_existing_cache_with_other_settings_is_refused_before_anything_is_written() {
        let dir = std::env::temp_dir().join(format!("mbc-cache-info-settings-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let ours = CacheInfo { store_dir: "/nix/store", priority: Some(30), want_mass_query: Some(true) };
        for theirs in [
            "StoreDir: /nix/store\n",
            "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n",
            "StoreDir: /nix/store\nWantMassQuery: 0\nPriority: 30\n",
            "StoreDir: /nix/store\nPriority: 30\n",
        ] {
            fs::write(dir.join("nix-cache-info"), theirs).unwrap();
            let e = format!("{:#}", layout(&dir, &ours).unwrap_err());
            assert!(e.contains("nix-cache-info") && (e.contains("Priority") || e.contains("WantMassQuery")), "{e}");
            let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["nix-cache-info"], "{theirs}");
            assert_eq!(fs::read_to_string(dir.join("nix-cache-info")).unwrap(), theirs);
        }
        // The same settings, in any order and spacing: added to, unchanged.
        let same = "Priority:30\nStoreDir: /nix/store\nWantMassQuery: 1\n";
        fs::write(dir.join("nix-cache-info"), same).unwrap();
        layout(&dir, &ours).unwrap();
        assert_eq!(fs::read_to_string(dir.join("nix-cache-info")).unwrap(), same);
        // Settings not given accept whatever is there.
        layout(&dir, &store("/nix/store")).unwrap();
        // A new cache gets them.
        fs::remove_file(dir.join("nix-cache-info")).unwrap();
        layout(&dir, &ours).unwrap();
        assert_eq!(fs::read_to_string(dir.join("nix-cache-info")).unwrap(), ours.text());
        fs::remove_dir_all(&dir).unwrap();
    }
}
