//! `make-binary-cache gc --keep PATH... CACHE`: removes from a cache every
//! store path outside the closure of the paths to keep, computed from the
//! cache's own narinfos (`References:`), so it works where none of those
//! paths exist; then every file no kept narinfo needs: NARs, NAR listings,
//! `debuginfo/` entries, build logs, and the temporary files of runs that
//! died.
//!
//! Nothing is removed unless the whole plan holds: every path to keep is in
//! the cache with its whole closure, and every narinfo reads. Narinfos go
//! first, and are on disk gone (`syncfs`) before any NAR goes, so a reader
//! never finds a narinfo whose NAR is missing (a NAR it already started
//! downloading may vanish under it). Runs of ours that write into the cache
//! are kept out by its [`RunLock`] for as long as `gc` decides and removes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use crate::cache::dir::{Kind, MAX_SMALL_FILE};
use crate::cache::read;
use crate::commands::catalog::Catalog;
use crate::durable::atomic_file::{FileSystems, is_temporary_name};
use crate::durable::lock::RunLock;
use crate::format::layout::NAR_DIR;
use crate::format::narinfo::nar_file;
use crate::format::store_path::StorePath;
use crate::text::{count, human};

pub struct Options {
    /// Store paths, or symlinks to them (`result`), as given.
    pub keep: Vec<PathBuf>,
    /// Only say what would be removed.
    pub dry_run: bool,
    /// How long to wait for runs writing into the cache.
    pub wait: Duration,
    pub jobs: usize,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub kept: usize,
    pub removed_paths: usize,
    /// Files removed besides narinfos.
    pub removed_files: usize,
    /// Bytes of every file removed, narinfos included.
    pub bytes: u64,
    pub dry_run: bool,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would remove" } else { "removed" };
        write!(
            f,
            "kept {}, {verb} {} and {} ({} freed: {} bytes), in {:.2} s",
            count(self.kept, "store path"),
            count(self.removed_paths, "store path"),
            count(self.removed_files, "other file"),
            human(self.bytes),
            self.bytes,
            self.elapsed.as_secs_f64()
        )
    }
}

/// A file to remove, relative to the cache, and why (for the log).
struct Removal {
    rel: PathBuf,
    what: String,
}

pub fn collect(cache: &Path, options: &Options, say: impl Fn(&str)) -> Result<Summary> {
    let start = Instant::now();
    let dir = read::open(cache, "")?;
    let lock =
        if options.dry_run { Some(RunLock::shared(&dir, &say)?) } else { RunLock::exclusive(&dir, options.wait)? };
    if !lock.as_ref().is_some_and(RunLock::held) {
        say(&format!(
            "warning: the file system of {} has no locks: make sure no build, sign or merge writes into it meanwhile",
            cache.display()
        ));
    }
    let catalog = Catalog::of(dir, options.jobs)?;
    let roots = options
        .keep
        .iter()
        .map(|given| resolve_keep(given, &catalog.store_dir))
        .collect::<Result<BTreeSet<StorePath>>>()?;
    let kept = closure(&catalog, &roots)?;

    let mut narinfos = Vec::new();
    for (path, info) in &catalog.narinfos {
        if !kept.contains(path) {
            narinfos.push(Removal {
                rel: PathBuf::from(format!("{}.narinfo", path.hash_part())),
                what: format!("{path} ({}, {})", human(info.nar_size), info.url),
            });
        }
    }
    let others = unneeded_files(&catalog, &kept)?;

    let mut summary = Summary {
        kept: kept.len(),
        removed_paths: narinfos.len(),
        removed_files: others.len(),
        dry_run: options.dry_run,
        ..Summary::default()
    };
    let verb = if options.dry_run { "would remove" } else { "removing" };
    for removal in narinfos.iter().chain(&others) {
        say(&format!("{verb} {}", removal.what));
    }
    if options.dry_run {
        for removal in narinfos.iter().chain(&others) {
            summary.bytes += std::fs::symlink_metadata(cache.join(&removal.rel)).map_or(0, |m| m.len());
        }
    } else {
        let file_systems = FileSystems::of(&[cache, &cache.join(NAR_DIR)])?;
        let remove = |removals: &[Removal]| -> Result<u64> {
            let mut bytes = 0;
            for removal in removals {
                bytes += catalog.dir.remove(&removal.rel)?;
            }
            Ok(bytes)
        };
        // Narinfos (and their listings) first, gone on disk before any NAR is.
        let (listings, rest): (Vec<Removal>, Vec<Removal>) =
            others.into_iter().partition(|r| r.rel.extension().is_some_and(|e| e == "ls"));
        summary.bytes += remove(&narinfos)? + remove(&listings)?;
        file_systems.sync()?;
        summary.bytes += remove(&rest)?;
        file_systems.sync()?;
    }
    drop(lock);
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// The store path `given` names: a store path of `store_dir` (or a file in
/// one), or a symlink to one such as `./result`. The path need not exist.
fn resolve_keep(given: &Path, store_dir: &str) -> Result<StorePath> {
    let mut path = given.to_path_buf();
    for _ in 0..40 {
        if let Ok(rest) = path.strip_prefix(store_dir)
            && let Some(base) = rest.components().next()
        {
            let full = format!("{store_dir}/{}", base.as_os_str().to_string_lossy());
            return StorePath::parse(store_dir, &full).map_err(|e| anyhow!("--keep {}: {e}", given.display()));
        }
        match std::fs::read_link(&path) {
            Ok(target) => path = path.parent().unwrap_or(Path::new("")).join(target),
            Err(_) => break,
        }
    }
    bail!("--keep {}: neither a store path of {store_dir} nor a symlink to one (such as ./result)", given.display())
}

/// The closure of `roots` in the cache; every root and every reference must
/// have a narinfo there.
fn closure(catalog: &Catalog, roots: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
    let nothing = "nothing was removed";
    let mut kept = BTreeSet::new();
    let mut todo: Vec<(&StorePath, Option<&StorePath>)> = roots.iter().map(|r| (r, None)).collect();
    while let Some((path, referrer)) = todo.pop() {
        if kept.contains(path) {
            continue;
        }
        let Some(info) = catalog.narinfos.get(path) else {
            match referrer {
                None => bail!("--keep {path}: not in {}; {nothing}", catalog.path().display()),
                Some(referrer) => bail!(
                    "{} is not whole: {referrer} refers to {path}, which has no narinfo there, so the closure of \
                     the paths to keep is not in it; {nothing} (`make-binary-cache verify` it)",
                    catalog.path().display()
                ),
            }
        };
        kept.insert(path.clone());
        todo.extend(info.references.iter().map(|r| (r, Some(path))));
    }
    Ok(kept)
}

/// The files besides narinfos that no kept narinfo needs.
fn unneeded_files(catalog: &Catalog, kept: &BTreeSet<StorePath>) -> Result<Vec<Removal>> {
    let kept_infos = || kept.iter().map(|path| &catalog.narinfos[path]);
    let nar_files: BTreeSet<PathBuf> =
        kept_infos().map(|info| nar_file(&info.url).map(Path::to_path_buf)).collect::<Result<_, _>>()?;
    let hash_parts: BTreeSet<&str> = kept.iter().map(StorePath::hash_part).collect();
    let derivers: BTreeSet<&str> =
        kept_infos().filter_map(|info| info.deriver.as_ref()).map(StorePath::base_name).collect();
    let mut removals = Vec::new();
    let mut remove = |rel: PathBuf, what: String| removals.push(Removal { rel, what });

    let listing = |rel: &Path| catalog.dir.list(rel).map_err(anyhow::Error::from);
    for (name, kind) in listing(Path::new(""))? {
        let name = name.to_string_lossy().into_owned();
        if kind == Kind::File
            && (is_temporary_name(&name) || name.strip_suffix(".ls").is_some_and(|h| !hash_parts.contains(h)))
        {
            remove(PathBuf::from(&name), name);
        }
    }
    let mut nar_dir: BTreeMap<PathBuf, Kind> = BTreeMap::new();
    match catalog.dir.list(Path::new(NAR_DIR)) {
        Ok(entries) => nar_dir.extend(entries.into_iter().map(|(name, kind)| (Path::new(NAR_DIR).join(name), kind))),
        Err(e) if e.is_missing() => {}
        Err(e) => return Err(e.into()),
    }
    for (rel, kind) in nar_dir {
        if kind == Kind::File && !nar_files.contains(&rel) {
            let what = rel.display().to_string();
            remove(rel, what);
        }
    }
    let mut sweep = |dir: &str, keep: &dyn Fn(&str, &Path) -> bool| -> Result<()> {
        let entries = match catalog.dir.list(Path::new(dir)) {
            Ok(entries) => entries,
            Err(e) if e.is_missing() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for (name, kind) in entries {
            let rel = Path::new(dir).join(&name);
            let name = name.to_string_lossy();
            if kind == Kind::File && (is_temporary_name(&name) || !keep(&name, &rel)) {
                let what = rel.display().to_string();
                remove(rel, what);
            }
        }
        Ok(())
    };
    sweep("debuginfo", &|_, rel| debuginfo_kept(catalog, rel, &nar_files))?;
    sweep("log", &|name, _| derivers.contains(name))?;
    Ok(removals)
}

/// Whether `debuginfo/<build id>.debug` names a kept NAR file; an entry
/// that cannot be read is kept (it is not ours to judge here).
fn debuginfo_kept(catalog: &Catalog, rel: &Path, nar_files: &BTreeSet<PathBuf>) -> bool {
    let Ok(text) = catalog.dir.read_text(rel, MAX_SMALL_FILE) else { return true };
    let archive = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("archive").and_then(|a| a.as_str()).map(str::to_owned));
    match archive.as_deref().and_then(|a| a.strip_prefix("../")) {
        Some(url) => nar_file(url).is_ok_and(|file| nar_files.contains(file)),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_names_store_paths_and_links_to_them() {
        let store = "/nix/store";
        let path = "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b";
        assert_eq!(resolve_keep(Path::new(path), store).unwrap().as_str(), path);
        assert_eq!(resolve_keep(Path::new(&format!("{path}/bin/b")), store).unwrap().as_str(), path);
        let dir = std::env::temp_dir().join(format!("mbc-gc-keep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(path, dir.join("result")).unwrap();
        assert_eq!(resolve_keep(&dir.join("result"), store).unwrap().as_str(), path);
        let err = resolve_keep(&dir, store).unwrap_err().to_string();
        assert!(err.contains("neither a store path of /nix/store nor a symlink to one"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
