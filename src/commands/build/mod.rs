//! The builder: writes the cache of a closure (`make-binary-cache --out DIR
//! PATH...`, and mkBinaryCache's builder).
//!
//! The work is split by concern: [`job`] is one run, fitted to the machine;
//! [`layout`] makes or checks the cache's directories, `nix-cache-info` and
//! manifest before anything else; [`schedule`] hands the store paths to the
//! workers, largest NAR first, within the memory budget; [`pipeline`] runs
//! one store path through read → NAR → NarHash → compress → FileHash → file
//! and writes its narinfo; [`durability`] names the narinfos once their NARs
//! are on disk. [`reuse`] copies NARs of earlier caches instead of
//! compressing them again; [`dump`] serialises a store path as
//! `nix-store --dump` does; [`logs`] copies build logs into `log/`.
//!
//! Each store path goes through one pass: the file system walk produces the
//! NAR, which is hashed and counted (NarHash, NarSize), compressed, and hashed
//! and counted again (FileHash, FileSize) on its way to a file that has no
//! name yet. Only when the NAR matches the NarHash and NarSize Nix recorded is
//! the file given its final name (see [`crate::durable::atomic_file`]), and only then
//! is its narinfo written, named only once complete too: a narinfo never
//! points at a missing, partial or unchecked NAR. Paths are processed by a
//! pool of workers, largest NAR first, so that a big path does not start last
//! and leave the other cores idle.

use std::time::Duration;

use crate::compress::Compression;
use crate::format::cache_info::CacheInfo;
use crate::format::manifest::Manifest;
use crate::format::path_info::PathInfo;
use crate::text::{count, human, per_second};

pub mod dump;
pub mod durability;
pub mod job;
pub mod layout;
pub mod logs;
pub mod pipeline;
pub mod reuse;
pub mod schedule;

pub use job::{Job, Note};
pub use layout::has_narinfo;
pub use reuse::EarlierCaches;
pub use schedule::write_cache;

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
    /// Earlier caches whose compressed NARs may be copied (see [`crate::commands::build::reuse`]).
    pub reuse: EarlierCaches,
    /// Nix's log directory to copy build logs from into `log/` (see
    /// [`logs`]); `None`: no logs.
    pub logs_from: Option<std::path::PathBuf>,
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
            logs_from: None,
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
    /// Paths the cache already had as this run would write them, left alone.
    pub there: usize,
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
        let written = self.paths - self.there;
        match (self.there, self.reused) {
            (0, None) => {}
            (0, Some(reused)) => write!(f, " ({} reused, {} compressed)", count(reused, "NAR"), written - reused)?,
            (there, None) => write!(f, " ({there} already in the cache, {written} written)")?,
            (there, Some(reused)) => write!(
                f,
                " ({there} already in the cache, {} reused, {} compressed)",
                count(reused, "NAR"),
                written - reused
            )?,
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
