//! The flat-file binary cache: its layout, and the per-path pipeline that fills it.
//!
//! ```text
//! <out>/nix-cache-info                 StoreDir: /nix/store
//! <out>/<hash part>.narinfo            one per store path of the closure
//! <out>/nar/<FileHash>.nar[.xz|.zst]   the (compressed) NARs
//! <out>/realisations/ build-trace-v2/ log/ debuginfo/
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

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sha2::Digest;

use crate::atomic_file::AtomicFile;
use crate::closure::PathInfo;
use crate::compression::{Compression, Contexts};
use crate::dump::Dumper;
use crate::format::hash::{HashingWriter, Sha256Hash};
use crate::format::narinfo::NarInfo;
use crate::format::store_path::StorePath;
use crate::resources::{MemoryBudget, path_need};

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
}

/// What one store path became.
#[derive(Debug, Clone)]
pub struct Written {
    pub nar_size: u64,
    pub file_size: u64,
}

/// Totals for the closing line of the build log.
#[derive(Debug, Clone)]
pub struct Summary {
    pub paths: usize,
    pub nar_bytes: u64,
    pub file_bytes: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} paths, {} of NAR in, {} out, in {secs:.2} s ({:.1} MB/s)",
            self.paths,
            human(self.nar_bytes),
            human(self.file_bytes),
            self.nar_bytes as f64 / 1e6 / secs.max(1e-9)
        )
    }
}

/// Writes the cache for `closure` into `out`, calling `progress` once per
/// finished store path.
pub fn write_cache(
    closure: &[PathInfo],
    out: &Path,
    settings: &Settings,
    progress: impl Fn(&PathInfo, &Written) + Sync,
) -> Result<Summary> {
    let start = Instant::now();
    create_layout(out, &settings.store_dir)?;

    // Largest first: the last paths to start are then the quickest to finish.
    let mut plan: Vec<&PathInfo> = closure.iter().collect();
    plan.sort_by(|a, b| b.nar_size.cmp(&a.nar_size).then_with(|| a.path.cmp(&b.path)));

    let next = AtomicUsize::new(0);
    let unstarted_bytes = AtomicU64::new(plan.iter().map(|info| info.nar_size).sum());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let totals = Mutex::new((0u64, 0u64));
    let workers = settings.jobs.clamp(1, plan.len().max(1));
    let memory = MemoryBudget::new(settings.max_memory);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut dumper = Dumper::default();
                let mut contexts = Contexts::default();
                let mut reserved = 0;
                while !failed.load(Ordering::Relaxed) {
                    let Some(info) = plan.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let rest = unstarted_bytes.fetch_sub(info.nar_size, Ordering::Relaxed) - info.nar_size;
                    let wanted = compression_threads(info.nar_size, rest, settings);
                    let need =
                        |threads| path_need(settings.compression, settings.compression_level, info.nar_size, threads);
                    let threads = memory.reserve(&mut reserved, wanted, need, || contexts.release());
                    let result = write_path(info, out, settings, threads, &mut dumper, &mut contexts);
                    if !contexts.holds_memory() {
                        memory.release(&mut reserved);
                    }
                    match result {
                        Ok(written) => {
                            let mut t = totals.lock().unwrap();
                            t.0 += written.nar_size;
                            t.1 += written.file_size;
                            drop(t);
                            progress(info, &written);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
                contexts.release();
                memory.release(&mut reserved);
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    let (nar_bytes, file_bytes) = totals.into_inner().unwrap();
    Ok(Summary { paths: plan.len(), nar_bytes, file_bytes, elapsed: start.elapsed() })
}

/// Threads for compressing one NAR of `size` bytes when `rest` bytes of other
/// paths are still to start. One, while the other workers have enough work of
/// their own (more would only cost memory and switching); all the workers'
/// worth when this path alone would outlast the rest of the work, as a big
/// path does near the end or in a closure dominated by one big path. The
/// output is the same either way (see [`Compression::encoder`]).
fn compression_threads(size: u64, rest: u64, settings: &Settings) -> u32 {
    let others = settings.jobs.saturating_sub(1) as u64;
    if size.saturating_mul(others) <= rest {
        return 1;
    }
    let jobs = u32::try_from(settings.jobs).unwrap_or(u32::MAX);
    settings.compression.useful_threads(size, settings.compression_level).min(jobs)
}

fn create_layout(out: &Path, store_dir: &str) -> Result<()> {
    for dir in std::iter::once("nar").chain(EMPTY_DIRS) {
        let dir = out.join(dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomically(out, "nix-cache-info", format!("StoreDir: {store_dir}\n").as_bytes())
}

/// The per-path pipeline: walk → NAR → NarHash → compress → FileHash → file.
fn write_path(
    info: &PathInfo,
    out: &Path,
    settings: &Settings,
    threads: u32,
    dumper: &mut Dumper,
    contexts: &mut Contexts,
) -> Result<Written> {
    let compression = settings.compression;
    let nar_dir = out.join("nar");
    let (file, nar_hash, nar_size, file_hash, file_size) =
        compress_nar(info, &nar_dir, settings, threads, dumper, contexts)?;
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
    file.persist(&nar_name).with_context(|| format!("naming {}", nar_dir.join(&nar_name).display()))?;
    write_atomically(out, &narinfo.file_name(), text.as_bytes())?;
    Ok(Written { nar_size, file_size })
}

/// Streams the NAR of `info.path` through the compressor into a new, still
/// unnamed file in `nar_dir`, returning it with (NarHash, NarSize, FileHash,
/// FileSize).
fn compress_nar(
    info: &PathInfo,
    nar_dir: &Path,
    settings: &Settings,
    threads: u32,
    dumper: &mut Dumper,
    contexts: &mut Contexts,
) -> Result<(AtomicFile, Sha256Hash, u64, Sha256Hash, u64)> {
    let io_context = || format!("writing the NAR of {} in {}", info.path, nar_dir.display());
    let compression = settings.compression;
    let file = AtomicFile::create(nar_dir, &format!("{}.nar{}", info.path.hash_part(), compression.extension()))
        .with_context(io_context)?;
    // Uncompressed, the file is the NAR: hashing it twice would be waste.
    let nar_file = NarFile::new(file, compression != Compression::None);
    let encoder = compression
        .encoder(nar_file, settings.compression_level, threads, info.nar_size, contexts)
        .with_context(io_context)?;
    // Buffer the NAR's many small tokens before they reach the hasher and the
    // compressor; large file chunks pass straight through.
    let mut nar = BufWriter::with_capacity(64 * 1024, HashingWriter::new(encoder));
    dumper.dump(Path::new(info.path.as_str()), &mut nar).with_context(io_context)?;
    let (nar_hash, nar_size, encoder) =
        nar.into_inner().map_err(|e| anyhow!(e.into_error())).with_context(io_context)?.finish();
    let nar_file = encoder.finish().with_context(io_context)?;
    let (file, file_hash, file_size) = nar_file.finish().with_context(io_context)?;
    Ok((file, nar_hash, nar_size, file_hash.unwrap_or(nar_hash), file_size))
}

/// The file a NAR is written to: always counted, hashed when compressed.
struct NarFile {
    file: BufWriter<AtomicFile>,
    hasher: Option<sha2::Sha256>,
    size: u64,
}

impl NarFile {
    fn new(file: AtomicFile, hash: bool) -> Self {
        Self { file: BufWriter::with_capacity(128 * 1024, file), hasher: hash.then(sha2::Sha256::new), size: 0 }
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

/// Writes `contents` as `dir/name`, which is either absent or complete.
fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let context = || format!("writing {}", dir.join(name).display());
    let mut file = AtomicFile::create(dir, name).with_context(context)?;
    file.write_all(contents).with_context(context)?;
    file.persist(name).with_context(context)
}

/// Whether the cache in `out` already has `path`: its narinfo exists and its
/// `StorePath:` line names exactly that path (the file name is only the hash
/// part, which another name could share).
pub fn has_narinfo(out: &Path, path: &StorePath) -> bool {
    let file = out.join(format!("{}.narinfo", path.hash_part()));
    fs::read_to_string(file)
        .is_ok_and(|text| text.lines().any(|line| line.strip_prefix("StorePath: ") == Some(path.as_str())))
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
        Settings { store_dir: "/nix/store".into(), compression, compression_level: None, jobs, max_memory: None }
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
        let xz = settings(Compression::Xz, 4);
        const MIB: u64 = 1 << 20;
        // Plenty of other work: one thread each.
        assert_eq!(compression_threads(100 * MIB, 1000 * MIB, &xz), 1);
        // One big path and little else: as many threads as it has 24 MiB blocks, up to the jobs.
        assert_eq!(compression_threads(1000 * MIB, 10 * MIB, &xz), 4);
        assert_eq!(compression_threads(40 * MIB, 0, &xz), 2);
        // A path smaller than one block cannot use a second thread.
        assert_eq!(compression_threads(MIB, 0, &xz), 1);
        assert_eq!(compression_threads(1000 * MIB, 0, &settings(Compression::Xz, 1)), 1);
        assert_eq!(compression_threads(1000 * MIB, 0, &settings(Compression::None, 4)), 1);
    }
}
