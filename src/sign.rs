//! `make-binary-cache sign`: adds a signature to every narinfo of a cache, so
//! that Nix accepts the cache with `require-sigs = true` and the key in
//! `trusted-public-keys`.
//!
//! A signature vouches for a store path's NarHash, NarSize and references
//! (the [`fingerprint`]), not for the files of the cache. Nix checks the NAR
//! it unpacks against the NarHash, so a signed narinfo over a corrupt NAR is
//! no hole; but signing is the moment someone vouches for the cache, so
//! nothing is signed that was not checked first: every narinfo is parsed
//! strictly ([`ParsedNarInfo::parse`]), must be named after its store path,
//! and its NAR file must exist with the narinfo's FileSize and FileHash (and,
//! uncompressed, be the NAR itself: FileHash = NarHash). Only when every
//! narinfo passes is any of them written, so a refused cache is left as it
//! was (and a refused copy has no narinfo pointing at its NARs).
//!
//! Signatures already there are kept, except one by a key of the same name,
//! which is replaced; they are then written sorted and without duplicates, as
//! Nix keeps them (a `StringSet`). ed25519 signatures are deterministic, so
//! signing again gives the same bytes, and a narinfo whose text would not
//! change is not rewritten.
//!
//! Two ways:
//!
//! * in place: each narinfo is replaced atomically (written under a
//!   temporary name, then renamed over). A cache inside the store directory
//!   is refused even when writable (root can write into store paths): it
//!   would no longer match its NarHash.
//! * `--out DEST`: a signed copy, the usual case for a cache built by
//!   `mkBinaryCache`, which is a read-only store path. DEST gets every file
//!   of the cache: the NARs, copied by `std::fs::copy` (`copy_file_range` on
//!   Linux, which shares the blocks where the file system can reflink and
//!   copies inside the kernel elsewhere) and checked as copied, i.e. what is
//!   checked is what DEST serves; `nix-cache-info`, the directories Nix wants
//!   (`realisations/`, `log/`, …) and whatever else is there (`*.ls`
//!   listings); and the signed narinfos, last. DEST may be missing, empty, or
//!   already a cache of the same store directory.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use zeroize::Zeroizing;

use crate::atomic_file::{AtomicFile, syncfs};
use crate::cache::{count, human, per_second};
use crate::format::key::{SecretKey, fingerprint};
use crate::format::narinfo::{ParsedNarInfo, nar_file};
use crate::read_cache::{self, Expected, read_cache_info};

/// What a run did, for the closing log line.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Narinfos signed (all of them).
    pub narinfos: usize,
    /// Of those, the ones whose text changed (in the copy: differs from the
    /// original).
    pub changed: usize,
    /// Bytes of NAR files hashed.
    pub checked_bytes: u64,
    /// Other files copied to DEST.
    pub other_files: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} signed ({} unchanged), {} of NAR files checked, in {secs:.2} s ({})",
            count(self.narinfos, "narinfo"),
            self.narinfos - self.changed,
            human(self.checked_bytes),
            per_second(self.checked_bytes, self.elapsed)
        )?;
        if self.other_files > 0 {
            write!(f, "; {} copied", count(self.other_files, "other file"))?;
        }
        Ok(())
    }
}

/// Reads a secret key file as `nix-store --generate-binary-cache-key` writes
/// it. The file's text is wiped from memory once parsed.
pub fn read_secret_key(file: &Path) -> Result<SecretKey> {
    let mut text = Zeroizing::new(String::new());
    File::open(file)
        .and_then(|mut f| f.read_to_string(&mut text))
        .with_context(|| format!("reading the secret key file {}", file.display()))?;
    text.parse().map_err(|e: String| {
        anyhow!(
            "{}: {e}; --secret-key-file takes the secret key file that \
             `nix-store --generate-binary-cache-key NAME KEY PUB` writes to KEY",
            file.display()
        )
    })
}

/// What to do when the cache to sign is damaged: nothing was signed.
const DAMAGED: &str = "nothing was signed; `make-binary-cache verify CACHE` lists every problem of the cache";

/// Signs the cache in `cache` with `key`: in place when `out` is `None`,
/// else into the copy `out`. `jobs` workers check NAR files side by side.
/// `default_store_dir` is used when `nix-cache-info` names none, as Nix
/// then takes its own. `sync`: see `write_narinfos`.
pub fn sign_cache(
    cache: &Path,
    out: Option<&Path>,
    key: &SecretKey,
    jobs: usize,
    default_store_dir: &str,
    sync: bool,
) -> Result<Summary> {
    let start = Instant::now();
    let store_dir = cache_store_dir(cache)?.unwrap_or_else(|| default_store_dir.to_owned());
    // Read before DEST is made: a cache that does not parse leaves no trace.
    let narinfos = read_narinfos(cache, &store_dir)?;
    let dest = match out {
        Some(out) => {
            prepare_dest(cache, out, &store_dir)?;
            out
        }
        None => {
            check_in_place(cache, &store_dir)?;
            cache
        }
    };

    // Largest NAR first, so the last to start are the quickest to finish.
    let mut plan: Vec<&Entry> = narinfos.iter().collect();
    plan.sort_by(|a, b| b.info.file_size.cmp(&a.info.file_size).then_with(|| a.name.cmp(&b.name)));
    let signed = run_parallel(&plan, jobs, |entry| sign_one(entry, cache, out, key))?;

    let mut other_files = 0;
    if out.is_some() {
        let nars: BTreeSet<PathBuf> = narinfos.iter().map(|e| PathBuf::from(&e.info.url)).collect();
        other_files = copy_others(cache, dest, Path::new(""), &nars)?;
    }

    // Narinfos last: they are what makes the NARs reachable.
    let writes: Vec<(&str, &str)> = plan
        .iter()
        .zip(&signed)
        .filter(|(entry, text)| out.is_some() || text.as_str() != entry.text)
        .map(|(entry, text)| (entry.name.as_str(), text.as_str()))
        .collect();
    let changed = plan.iter().zip(&signed).filter(|(entry, text)| text.as_str() != entry.text).count();
    if !writes.is_empty() {
        write_narinfos(dest, &writes, sync, out.is_some())?;
    }
    Ok(Summary {
        narinfos: narinfos.len(),
        changed,
        checked_bytes: narinfos.iter().map(|e| e.info.file_size).sum(),
        other_files,
        elapsed: start.elapsed(),
    })
}

/// One narinfo of the cache, as read.
struct Entry {
    /// `<hash part>.narinfo`.
    name: String,
    text: String,
    info: ParsedNarInfo,
}

/// The `StoreDir` of `cache/nix-cache-info`; its absence means `cache` is no
/// cache. `None` when the file names no store directory.
fn cache_store_dir(cache: &Path) -> Result<Option<String>> {
    let text = read_cache_info(cache, "")?;
    Ok(read_cache::store_dir(cache, &text)?.map(str::to_owned))
}

/// Refuses to sign in place what must not or cannot be changed.
fn check_in_place(cache: &Path, store_dir: &str) -> Result<()> {
    let real = fs::canonicalize(cache).with_context(|| format!("resolving {}", cache.display()))?;
    if real.starts_with(store_dir) {
        bail!(
            "{} is in the Nix store ({}): signing it in place would change a store path; \
             use --out DEST to write a signed copy",
            cache.display(),
            real.display()
        );
    }
    // Asked up front, so that nothing is checked for minutes before failing.
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(real.as_os_str()))
        .map_err(|_| anyhow!("{}: the path contains a NUL byte", cache.display()))?;
    // SAFETY: a valid NUL-terminated string that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        let e = io::Error::last_os_error();
        bail!("{} cannot be signed in place ({e}); use --out DEST to write a signed copy", cache.display());
    }
    Ok(())
}

/// Makes `out` ready to receive the signed copy of `cache`: created when
/// missing; when not empty, it must be a cache of the same store directory
/// (and not `cache` itself).
fn prepare_dest(cache: &Path, out: &Path, store_dir: &str) -> Result<()> {
    let existed = fs::symlink_metadata(out).is_ok();
    let empty = match fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
    };
    // Compared once DEST exists, as only then can both be resolved.
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (real_cache, real_out) = (fs::canonicalize(cache), fs::canonicalize(out));
    let (real_cache, real_out) = (
        real_cache.with_context(|| format!("resolving {}", cache.display()))?,
        real_out.with_context(|| format!("resolving {}", out.display()))?,
    );
    if real_out.starts_with(&real_cache) {
        if !existed {
            let _ = fs::remove_dir(out);
        }
        if real_out == real_cache {
            bail!("--out {} is the cache itself; leave out --out to sign in place", out.display());
        }
        bail!(
            "--out {} is inside the cache {}: the copy would copy itself; choose a DEST outside it",
            out.display(),
            cache.display()
        );
    }
    if !empty {
        let theirs = match cache_store_dir(out) {
            Ok(dir) => dir,
            Err(e) => {
                bail!(
                    "--out {} is not empty and not a binary cache ({e:#}): refusing to write into it; choose a new \
                     or empty DEST",
                    out.display()
                )
            }
        };
        if theirs.as_deref().is_some_and(|dir| dir != store_dir) {
            bail!(
                "--out {} is a cache of the store {}, not of {store_dir}: refusing to mix them; choose a new or \
                 empty DEST",
                out.display(),
                theirs.unwrap_or_default()
            );
        }
    }
    fs::create_dir_all(out.join("nar")).with_context(|| format!("creating {}", out.join("nar").display()))?;
    // First, so that an interrupted run leaves a cache `sign --out` may
    // write into again (its narinfos are written last).
    copy_file(&cache.join("nix-cache-info"), &out.join("nix-cache-info"))
}

/// Every `*.narinfo` at the top of `cache`, parsed.
fn read_narinfos(cache: &Path, store_dir: &str) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for dirent in fs::read_dir(cache).with_context(|| format!("reading {}", cache.display()))? {
        let dirent = dirent.with_context(|| format!("reading {}", cache.display()))?;
        let name = dirent.file_name();
        let Some(name) = name.to_str().filter(|n| n.ends_with(".narinfo")) else { continue };
        let file = dirent.path();
        let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let info = ParsedNarInfo::parse(store_dir, &text).map_err(|e| anyhow!("{}: {e}; {DAMAGED}", file.display()))?;
        let expected = format!("{}.narinfo", info.store_path.hash_part());
        if name != expected {
            bail!("{}: the narinfo of {} must be named {expected}; {DAMAGED}", file.display(), info.store_path);
        }
        if info.nar_size == 0 {
            // Nix refuses to compute the fingerprint of an empty NAR: none exists.
            bail!("{}: NarSize is 0; {DAMAGED}", file.display());
        }
        nar_file(&info.url).map_err(|e| anyhow!("{}: {e}; {DAMAGED}", file.display()))?;
        entries.push(Entry { name: name.to_owned(), text, info });
    }
    if entries.is_empty() {
        bail!("{} has no narinfo files: there is nothing to sign", cache.display());
    }
    Ok(entries)
}

/// Checks the NAR of `entry` (copying it to `out` first when given) and
/// returns the narinfo's new text.
fn sign_one(entry: &Entry, cache: &Path, out: Option<&Path>, key: &SecretKey) -> Result<String> {
    let info = &entry.info;
    let narinfo_file = cache.join(&entry.name);
    let url = nar_file(&info.url).expect("checked when read");
    let source = cache.join(url);
    let checked = match out {
        None => source.clone(),
        Some(out) => {
            let target = out.join(url);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            copy_file(&source, &target)?;
            target
        }
    };
    check_nar_file(&checked, info).with_context(|| format!("checking the NAR file of {}", narinfo_file.display()))?;

    let mut signed = info.clone();
    let signature = key.sign(&fingerprint(&info.store_path, &info.nar_hash, info.nar_size, &info.references));
    signed.signatures.retain(|s| s.key_name() != key.name());
    signed.signatures.push(signature);
    signed.signatures.sort_by_key(|s| s.to_string());
    signed.signatures.dedup();
    signed.as_narinfo().render().map_err(|e| anyhow!("{}: {e}", narinfo_file.display()))
}

/// The NAR file must be what the narinfo says (see [`read_cache`]).
fn check_nar_file(file: &Path, info: &ParsedNarInfo) -> Result<()> {
    let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    read_cache::check(&f, file, "the narinfo", &Expected::of(info))?.map_err(|why| anyhow!("{why}; {DAMAGED}"))
}

/// Copies everything under `cache/rel` but the narinfos and the NARs they
/// name (`nars`, relative to the cache) into `out/rel`. Returns the number
/// of files copied.
fn copy_others(cache: &Path, out: &Path, rel: &Path, nars: &BTreeSet<PathBuf>) -> Result<usize> {
    let dir = cache.join(rel);
    let mut copied = 0;
    let mut names: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let (source, target) = (cache.join(&rel), out.join(&rel));
        let meta = fs::symlink_metadata(&source).with_context(|| format!("reading {}", source.display()))?;
        let top = rel.parent() == Some(Path::new(""));
        if top && (rel == Path::new("nix-cache-info") || name.to_string_lossy().ends_with(".narinfo")) {
            continue;
        }
        if meta.is_dir() {
            fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            copied += copy_others(cache, out, &rel, nars)?;
        } else if meta.is_file() {
            if !nars.contains(&rel) {
                copy_file(&source, &target)?;
                copied += 1;
            }
        } else if meta.file_type().is_symlink() {
            let link = fs::read_link(&source).with_context(|| format!("reading {}", source.display()))?;
            let _ = fs::remove_file(&target);
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("creating the symlink {}", target.display()))?;
            copied += 1;
        } else {
            bail!("{} is neither a file, a directory nor a symlink: a binary cache has none such", source.display());
        }
    }
    Ok(copied)
}

/// Copies `source` to `target` so that `target` is either absent, its old
/// self or complete: the copy is made under a temporary name in the same
/// directory, then renamed. The copy is made writable by its owner, as the
/// source is often a read-only store path.
fn copy_file(source: &Path, target: &Path) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique: two narinfos may name the same NAR file, copied side by side.
    static COPIES: AtomicUsize = AtomicUsize::new(0);
    let n = COPIES.fetch_add(1, Ordering::Relaxed);
    let temporary = dir.join(format!(".{name}.{}-{n}.sign-tmp", std::process::id()));
    let context = || format!("copying {} to {}", source.display(), target.display());
    let result = (|| {
        let _ = fs::remove_file(&temporary);
        fs::copy(source, &temporary)?;
        let mode = fs::metadata(&temporary)?.permissions().mode();
        fs::set_permissions(&temporary, fs::Permissions::from_mode((mode | 0o644) & 0o755))?;
        fs::rename(&temporary, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result.with_context(context)
}

/// Narinfos named at once, at most: each waits, written but unnamed, for the
/// `syncfs` that puts it on disk, and holds a descriptor until then.
const BATCH: usize = 256;

/// Writes each `(name, text)` as `dir/name`, atomically replacing the old
/// narinfo. With `sync`, as the cache writer does: `syncfs` first puts the
/// NARs copied (if `copied`) on disk, then each batch of narinfos is
/// written, synced, and only then named, and a last `syncfs` puts the names
/// on disk.
/// After a power cut a narinfo is then its old self or its new self, never
/// empty, and never points at a NAR not on disk; a run that exited 0 is on
/// disk whole.
pub(crate) fn write_narinfos(dir: &Path, writes: &[(&str, &str)], sync: bool, copied: bool) -> Result<()> {
    let file_systems = if sync { FileSystems::of(&[dir, &dir.join("nar")])? } else { FileSystems::default() };
    if copied {
        file_systems.sync()?;
    }
    for batch in writes.chunks(BATCH) {
        let mut files = Vec::with_capacity(batch.len());
        for &(name, text) in batch {
            let context = || format!("writing {}", dir.join(name).display());
            let mut file = AtomicFile::create(dir, &format!("{name}.sign")).with_context(context)?;
            file.write_all(text.as_bytes()).with_context(context)?;
            files.push((name, file));
        }
        file_systems.sync()?;
        for (name, file) in files {
            file.persist(name).with_context(|| format!("naming {}", dir.join(name).display()))?;
        }
    }
    file_systems.sync()
}

/// The file systems of some directories, one open directory each, to sync.
#[derive(Default)]
struct FileSystems(Vec<(PathBuf, File)>);

impl FileSystems {
    fn of(dirs: &[&Path]) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let mut handles: Vec<(PathBuf, File)> = Vec::new();
        let mut devices = Vec::new();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            let handle = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
            let device = handle.metadata().with_context(|| format!("reading {}", dir.display()))?.dev();
            if !devices.contains(&device) {
                devices.push(device);
                handles.push((dir.to_path_buf(), handle));
            }
        }
        Ok(Self(handles))
    }

    fn sync(&self) -> Result<()> {
        for (dir, handle) in &self.0 {
            syncfs(handle).with_context(|| format!("syncing the file system of {} to disk", dir.display()))?;
        }
        Ok(())
    }
}

/// Runs `work` over `items` on up to `jobs` threads (never more than the
/// cores), returning the results in the order of `items`, or the first
/// error, after which no new item is started.
pub(crate) fn run_parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let workers = jobs.min(crate::resources::system::cores()).clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    match work(item) {
                        Ok(r) => results.lock().expect("no worker panics holding it")[i] = Some(r),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("no worker panics holding it").get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("workers are done") {
        return Err(e);
    }
    Ok(results.into_inner().expect("workers are done").into_iter().map(|r| r.expect("every item ran")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_results_keep_their_order_and_errors_stop_the_run() {
        let items: Vec<usize> = (0..100).collect();
        assert_eq!(run_parallel(&items, 4, |&i| Ok(i * 2)).unwrap(), (0..100).map(|i| i * 2).collect::<Vec<_>>());
        let err = run_parallel(&items, 4, |&i| if i == 42 { Err(anyhow!("item {i}")) } else { Ok(i) }).unwrap_err();
        assert_eq!(err.to_string(), "item 42");
        assert!(run_parallel(&Vec::<usize>::new(), 4, |&i| Ok(i)).unwrap().is_empty());
    }
}
