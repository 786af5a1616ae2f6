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
//!
//! Several runs may fill one directory at once, with the same settings or
//! not: every file is named atomically (see [`crate::durable::atomic_file`]); a NAR
//! already there under its name (its FileHash) is kept when its size is
//! right (as Nix's `BinaryCacheStore::addToStore` keeps an existing NAR
//! file) and replaced when not; a narinfo replaces the old one, which pointed
//! at a NAR of its own, unless it already says what this run would (see
//! `already_there`: then the store path is left as it is, unread);
//! `nix-cache-info` is written only when missing, and an existing one must
//! be for the same store directory and hold the
//! `WantMassQuery` and `Priority` this run was given, if any (see
//! `check_cache_info_text`).
//!
//! The manifest (`make-binary-cache.json`, see [`crate::format::manifest`])
//! says how every NAR of the cache was made, which is what lets a later run
//! reuse them (see [`crate::commands::build::reuse`]). So it is only written where that is
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
//! is returned in [`Summary::notes`](super::Summary::notes).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use crate::cache::dir::{self as cache_dir, CacheDir};
use crate::cache::read::has_nars;
use crate::durable::atomic_file::AtomicFile;
use crate::format::cache_info::{self, CacheInfo};
use crate::format::layout::EMPTY_DIRS;
use crate::format::manifest::{self, Manifest};
use crate::format::narinfo::{NarInfo, nar_file};
use crate::format::path_info::PathInfo;
use crate::format::store_path::StorePath;

use super::Settings;

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
/// settles the manifest (see the module documentation).
pub(crate) fn create_layout(out: &Path, info: &CacheInfo, manifest: &Manifest) -> Result<Layout> {
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
    let mut names = Vec::new();
    for entry in fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        names.push(entry.with_context(|| format!("reading {}", out.display()))?.file_name());
    }
    // Another run may have made it a cache since the look above (its
    // narinfos only come after its nix-cache-info).
    if names.iter().any(|name| name == "nix-cache-info") {
        return Ok(());
    }
    for name in &names {
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

/// What [`create_layout`] found.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    /// A line for the log when the manifest is not written or kept.
    pub(crate) note: Option<String>,
    /// The cache already had this run's manifest: its NARs were made by
    /// runs of ours with these settings, and [`already_there`] may keep them.
    pub(crate) same_settings: bool,
}

/// Writes, keeps or replaces the manifest of the cache in `out`, which held
/// NARs (or narinfos) before this run if `had_nars`.
pub(crate) fn settle_manifest(out: &Path, manifest: &Manifest, had_nars: bool) -> Result<Layout> {
    let note = |line: String| Ok(Layout { note: Some(line), same_settings: false });
    let file = out.join(manifest::FILE_NAME);
    let context = || format!("writing {}", file.display());
    // Twice at most: when another run creates it between our look and ours.
    for _ in 0..2 {
        match read_own(out, manifest::FILE_NAME)? {
            Some(theirs) if theirs == manifest::MIXED => {
                return note(format!(
                    "{} says the cache holds NARs made with different settings: later runs will not reuse its NARs",
                    file.display()
                ));
            }
            Some(theirs) => {
                let Err(why) = manifest.compare(&theirs) else {
                    return Ok(Layout { note: None, same_settings: had_nars });
                };
                let mut mixed = AtomicFile::create(out, manifest::FILE_NAME).with_context(context)?;
                mixed.write_all(manifest::MIXED.as_bytes()).with_context(context)?;
                mixed.persist(manifest::FILE_NAME).with_context(context)?;
                return note(format!(
                    "{} was made with other settings ({why}): the cache now holds NARs made both ways, and the \
                     file says so instead; later runs will not reuse its NARs",
                    file.display()
                ));
            }
            None => {
                if had_nars {
                    return note(format!(
                        "{} already holds NARs but no {} (written by `nix copy` or by an older version): none is \
                         written, as it would describe NARs it knows nothing of; later runs will not reuse its NARs",
                        out.display(),
                        manifest::FILE_NAME
                    ));
                }
                let mut new = AtomicFile::create(out, manifest::FILE_NAME).with_context(context)?;
                new.write_all(manifest.render().as_bytes()).with_context(context)?;
                if new.persist_new(manifest::FILE_NAME).with_context(context)?.is_none() {
                    return Ok(Layout::default());
                }
            }
        }
    }
    Ok(Layout::default())
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

/// Whether `info` is already in the cache `cache` (`nar_dir` its `nar/`), which had this run's
/// manifest before it ([`Layout::same_settings`]), as this run would write
/// it: its narinfo says what ours would (the NAR file fields aside, which
/// the same settings make the same; signatures there stay, as
/// [`crate::format::narinfo::settle`] keeps them)
/// and names a NAR file of its FileSize, and its NAR listing is there if one
/// is wanted. Then the run leaves it as it is, as `nix copy` leaves a path
/// the cache has, and neither reads the store path nor writes a file for it:
/// what makes updating a large cache in place cheap. The NAR is judged by
/// its size, as [`super::pipeline`] judges an existing NAR; `verify` reads
/// it. Anything unreadable or different is written afresh, as before; with
/// debug info wanted (its entries are only known from the NAR), everything is.
pub(crate) fn already_there(cache: &CacheDir, nar_dir: &CacheDir, info: &PathInfo, settings: &Settings) -> bool {
    if settings.index_debug_info {
        return false;
    }
    let name = format!("{}.narinfo", info.path.hash_part());
    let Ok(text) = cache.read_text(Path::new(&name), cache_dir::MAX_NARINFO) else { return false };
    let Ok(theirs) = NarInfo::parse(&settings.store_dir, &text) else { return false };
    let ours = NarInfo {
        info: info.clone(),
        url: theirs.url.clone(),
        compression: settings.compression,
        file_hash: theirs.file_hash,
        file_size: theirs.file_size,
    };
    if !info.same_fingerprint(&theirs.info) {
        return false;
    }
    // What naming ours would leave: ours with the
    // signatures there; the same text, or it is written afresh.
    let mut merged = ours;
    merged.add_signatures_of(&theirs);
    if merged.render().ok().as_deref() != Some(text.as_str()) {
        return false;
    }
    // Ours are all `nar/<FileHash>.nar…`; a URL of another shape is written afresh.
    let nar_there = nar_file(&theirs.url)
        .ok()
        .and_then(|nar| nar.strip_prefix("nar").ok()?.to_str())
        .filter(|name| !name.contains('/'))
        .is_some_and(|name| nar_dir.regular_file_size(name) == Some(theirs.file_size));
    let listing_there =
        !settings.write_nar_listing || cache.open_file(Path::new(&format!("{}.ls", info.path.hash_part()))).is_ok();
    nar_there && listing_there
}

/// Whether the cache in `out` already has `path`: its narinfo exists and its
/// `StorePath:` line names exactly that path (the file name is only the hash
/// part, which another name could share).
pub fn has_narinfo(out: &Path, path: &StorePath) -> bool {
    let file = out.join(format!("{}.narinfo", path.hash_part()));
    fs::read_to_string(file)
        .is_ok_and(|text| text.lines().any(|line| line.strip_prefix("StorePath: ") == Some(path.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::commands::build::Settings;
    use crate::compress::Compression;

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
        create_layout(dir, info, &Settings::new("/nix/store".into(), Compression::Zstd).manifest()).map(|l| l.note)
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
