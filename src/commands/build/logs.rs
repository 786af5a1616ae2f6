//! `--include-logs`: the build log of each store path with a `Deriver`,
//! copied from Nix's log directory into the cache's `log/<drv base name>`,
//! uncompressed, as `nix store copy-log` writes it (`BinaryCacheStore::
//! addBuildLog` in libstore), so that `nix log --store file://DIR PATH`
//! prints it on another machine. Nix keeps a log at
//! `<log dir>/drvs/<first 2 characters>/<rest of the drv base name>`,
//! bzip2-compressed (`.bz2`, `compress-build-log = true`, the default) or
//! not; where it has none, an earlier cache of `--reuse` may (`log/`). A
//! path without a log in either (substituted, not built here, or its log
//! collected) is counted, not an error.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cache::dir::create_dirs_beneath;
use crate::commands::build::reuse::EarlierCaches;
use crate::durable::atomic_file::{AtomicFile, FileSystems};
use crate::format::path_info::PathInfo;
use crate::format::store_path::StorePath;
use crate::text::count;
use crate::workers::run_parallel;

/// What became of the logs.
#[derive(Debug, Default)]
pub struct Logs {
    pub copied: usize,
    /// Of those, taken from an earlier cache.
    pub reused: usize,
    /// Derivations with no log in the log directory.
    pub missing: Vec<StorePath>,
    /// Store paths without a `Deriver`: nothing to look for.
    pub without_deriver: usize,
    pub log_dir: PathBuf,
}

impl std::fmt::Display for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "build logs: {} copied from {}", self.copied - self.reused, self.log_dir.display())?;
        if self.reused > 0 {
            write!(f, " and {} from earlier caches", self.reused)?;
        }
        if !self.missing.is_empty() {
            let named: Vec<&str> = self.missing.iter().take(3).map(StorePath::as_str).collect();
            let more = if self.missing.len() > 3 { ", …" } else { "" };
            write!(
                f,
                "; {} without a log there ({}{more})",
                count(self.missing.len(), "derivation"),
                named.join(", ")
            )?;
        }
        if self.without_deriver > 0 {
            write!(f, "; {} without a Deriver", count(self.without_deriver, "store path"))?;
        }
        Ok(())
    }
}

/// Copies the logs of `closure`'s derivations from `log_dir` into
/// `out/log`, each named once complete (and, with `sync`, on disk before
/// the run ends).
pub fn copy_logs(
    closure: &[PathInfo],
    out: &Path,
    log_dir: &Path,
    earlier: &EarlierCaches,
    jobs: usize,
    sync: bool,
) -> Result<Logs> {
    // One log per derivation, however many of its outputs are here.
    let derivers: BTreeMap<&str, &StorePath> =
        closure.iter().filter_map(|info| info.deriver.as_ref()).map(|d| (d.base_name(), d)).collect();
    let derivers: Vec<&StorePath> = derivers.into_values().collect();
    create_dirs_beneath(out, Path::new("log"))?;
    let log = out.join("log");
    let found = run_parallel(&derivers, jobs, |drv| copy_one(drv, log_dir, earlier, &log))?;
    if sync {
        FileSystems::of(&[&log])?.sync()?;
    }
    Ok(Logs {
        copied: found.iter().filter(|f| **f != Found::Nowhere).count(),
        reused: found.iter().filter(|f| **f == Found::Earlier).count(),
        missing: derivers
            .iter()
            .zip(&found)
            .filter(|(_, f)| **f == Found::Nowhere)
            .map(|(d, _)| (*d).clone())
            .collect(),
        without_deriver: closure.iter().filter(|info| info.deriver.is_none()).count(),
        log_dir: log_dir.to_owned(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Nix,
    Earlier,
    Nowhere,
}

/// Copies the log of `drv` into `log`, from Nix's log directory, else from
/// an earlier cache.
fn copy_one(drv: &StorePath, log_dir: &Path, earlier: &EarlierCaches, log: &Path) -> Result<Found> {
    let name = drv.base_name();
    let plain = log_dir.join("drvs").join(&name[..2]).join(&name[2..]);
    let compressed = plain.with_file_name(format!("{}.bz2", &name[2..]));
    let (source, mut reader, found): (PathBuf, Box<dyn Read>, Found) = match File::open(&compressed) {
        Ok(file) => (compressed, Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(file))), Found::Nix),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match File::open(&plain) {
            Ok(file) => (plain, Box::new(file), Found::Nix),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match earlier.build_log(name) {
                Some((shown, file)) => (shown, Box::new(file), Found::Earlier),
                None => return Ok(Found::Nowhere),
            },
            Err(e) => return Err(e).with_context(|| format!("reading {}", plain.display())),
        },
        Err(e) => return Err(e).with_context(|| format!("reading {}", compressed.display())),
    };
    let mut file = AtomicFile::create(log, name).with_context(|| format!("writing {}", log.join(name).display()))?;
    io::copy(&mut reader, &mut file).with_context(|| format!("copying the build log {}", source.display()))?;
    file.persist(name).with_context(|| format!("naming {}", log.join(name).display()))?;
    Ok(found)
}
