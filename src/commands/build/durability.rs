//!
//! Durability of the builder's narinfos: the narinfos of checked paths are written but wait unnamed in
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

use std::io::Write;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::cache::dir::CacheDir;
use crate::commands::build::Observer;
use crate::commands::build::pipeline::Checked;
use crate::durable::atomic_file::{AtomicFile, FileSystems};
use crate::durable::narinfos::{self, CacheLock};
use crate::format::narinfo::{NarInfo, Settled, settle};
use crate::format::path_info::PathInfo;

/// How long a checked path's narinfo may wait for the `syncfs` that puts its
/// NAR on disk.
const BATCH_AGE: Duration = Duration::from_secs(1);

/// Without syncing, how long a narinfo may wait to be named: long enough
/// that the namer wakes once per many tiny paths, not once per path.
const UNSYNCED_AGE: Duration = Duration::from_millis(10);

/// The narinfos of checked paths, named in batches once their NARs are on
/// disk.
///
/// Workers [`add`](Self::add) a written but unnamed narinfo as soon as its
/// NAR is named. One thread ([`name_batches`](Self::name_batches)) takes the
/// batch when its oldest narinfo has waited [`BATCH_AGE`] (or it holds
/// [`narinfos::batch_max`] of them, or the run is over), calls `syncfs` once for all of it
/// (which puts both the NARs and the narinfos' contents on disk) and only
/// then names the narinfos; a last [`sync`](Self::sync) puts those names on
/// disk. One `syncfs` a second writes back little more than the kernel soon
/// would anyway and costs far less than an `fsync` per file; the workers go
/// on compressing meanwhile. Without `sync`, narinfos are named after
/// [`UNSYNCED_AGE`].
pub(crate) struct NarInfoBatch<'a> {
    out: &'a Path,
    /// The same, open, to read and lock.
    cache: CacheDir,
    store_dir: &'a str,
    /// A directory on each file system the cache spans (`out`, `out/nar`),
    /// to `syncfs`; empty without `sync`.
    file_systems: FileSystems,
    sync: bool,
    /// See [`narinfos::batch_max`].
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
    pub(crate) fn new(out: &'a Path, store_dir: &'a str, sync: bool) -> Result<Self> {
        let cache = CacheDir::open(out).with_context(|| format!("opening {}", out.display()))?;
        let file_systems = if sync { FileSystems::of(&[out, &out.join("nar")])? } else { FileSystems::default() };
        let max_waiting = narinfos::batch_max();
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

    /// The cache the narinfos go to, open.
    pub(crate) fn cache(&self) -> &CacheDir {
        &self.cache
    }

    /// Hands over the narinfo of `info`, whose NAR is named; `false` when
    /// naming has failed, and the narinfo is dropped.
    pub(crate) fn add(&self, info: &'a PathInfo, checked: Checked) -> bool {
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
        if state.waiting.len() == 1 || state.waiting.len() >= self.max_waiting {
            self.changed.notify_all();
        }
        true
    }

    /// One that may [`add`](Self::add): the batch closes, nothing more to
    /// come, when the last is dropped (also when its worker panics).
    pub(crate) fn producer(&self) -> Producer<'_, 'a> {
        let mut state = self.state.lock().unwrap();
        debug_assert!(!state.closed, "a producer of a closed batch");
        state.producers += 1;
        Producer(self)
    }

    /// Names batches of narinfos, each after a sync, until the batch is
    /// closed and all are named, telling `observer` of each path named.
    pub(crate) fn name_batches(&self, observer: &impl Observer) -> Result<()> {
        let age = if self.sync { BATCH_AGE } else { UNSYNCED_AGE };
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
        let parsed = NarInfo::parse(self.store_dir, text).map_err(|e| anyhow!("our own narinfo: {e}"))?;
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
    pub(crate) fn sync(&self) -> Result<()> {
        self.file_systems.sync()
    }
}

/// See [`NarInfoBatch::producer`].
pub(crate) struct Producer<'b, 'a>(&'b NarInfoBatch<'a>);

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
