//! `make-binary-cache sign`: adds a signature to every narinfo of a cache, so
//! that Nix accepts the cache with `require-sigs = true` and the key in
//! `trusted-public-keys`.
//!
//! A signature vouches for a store path's NarHash, NarSize and references
//! (the [`fingerprint`](crate::format::key::fingerprint)), not for the files of the cache. Nix checks the NAR
//! it unpacks against the NarHash, so a signed narinfo over a corrupt NAR is
//! no hole; but signing is the moment someone vouches for the cache, so
//! nothing is signed that was not checked first: every narinfo is parsed
//! strictly ([`NarInfo::parse`]), must be named after its store path,
//! and its NAR file must exist with the narinfo's FileSize and FileHash and
//! decompress to the NarSize and NarHash, a valid NAR
//! ([`read_cache::check`]). Only when every
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
//! * in place: each narinfo is replaced atomically (written unnamed, then
//!   renamed over), under the cache's lock and by the rule of
//!   [`crate::durable::narinfos`]: one that another run changed since it was read
//!   keeps that run's content and gets the signature only if it still
//!   describes the NAR file checked. A cache inside the store directory is
//!   refused even when writable (root can write into store paths): it would
//!   no longer match its NarHash.
//! * `--out DEST`: a signed copy, the usual case for a cache built by
//!   `mkBinaryCache`, which is a read-only store path. DEST gets every file
//!   of the cache: the NARs, copied with `copy_file_range` (which shares the
//!   blocks where the file system can reflink) into unnamed files, checked,
//!   and only then named, i.e. what is checked is what DEST serves;
//!   `nix-cache-info`, the directories Nix wants (`realisations/`, `log/`,
//!   …) and the other files (`*.ls` listings, `debuginfo/`), each copied the
//!   same way with mode 0644 (never the source's); and the signed narinfos,
//!   last, keeping the signatures of narinfos DEST already had for the same
//!   NARs. DEST may be missing, empty, or already a cache of the same store
//!   directory; a new or empty DEST is claimed by naming its
//!   `nix-cache-info`, which only one run can. The manifest stays true: DEST
//!   gets the cache's when it had no NARs, keeps its own when the same, and
//!   is marked mixed when NARs made another way (or of unknown making) join
//!   it.
//!
//! Every file of the cache is read through [`CacheDir`]: never through a
//! symlink, never a FIFO, never outside the cache; a symlink or any other
//! odd file in the cache fails the run before DEST gets a narinfo.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use zeroize::Zeroizing;

use crate::cache::dir::{self as cache_dir, CacheDir, Kind, MAX_NARINFO, MAX_SMALL_FILE, Stamp};
use crate::cache::read::{self as read_cache, Expected, read_cache_info_in};
use crate::durable::atomic_file::AtomicFile;
use crate::durable::lock::RunLock;
use crate::durable::narinfos::{NarInfoWrite, write_narinfos};
use crate::format::key::SecretKey;
use crate::format::manifest;
use crate::format::narinfo::{NarInfo, nar_file, sort_signatures};
use crate::text::{count, human, per_second};
use crate::workers::run_parallel;

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
    text.parse().map_err(|e: crate::format::key::Error| {
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
/// then takes its own. `sync`: see [`write_narinfos`].
pub fn sign_cache(
    cache: &Path,
    out: Option<&Path>,
    key: &SecretKey,
    jobs: usize,
    default_store_dir: &str,
    sync: bool,
) -> Result<Summary> {
    let start = Instant::now();
    let source = read_cache::open(cache, "")?;
    let info_text = read_cache_info_in(&source, "")?;
    // Against `gc`, until every narinfo is named (see `crate::durable::lock`).
    let say = |line: &str| eprintln!("make-binary-cache: {line}");
    let _source_lock = RunLock::shared(&source, say)?;
    let store_dir = read_cache::store_dir(cache, &info_text)?.unwrap_or(default_store_dir).to_owned();
    // Read before DEST is made: a cache that does not parse leaves no trace.
    let narinfos = read_narinfos(&source, &store_dir)?;
    let dest = match out {
        Some(out) => Some(prepare_dest(cache, out, &store_dir, &info_text)?),
        None => {
            check_in_place(cache, &store_dir)?;
            None
        }
    };
    let _dest_lock = dest.as_ref().map(|dest| RunLock::shared(&dest.dir, say)).transpose()?;

    // Largest NAR first, so the last to start are the quickest to finish.
    let mut plan: Vec<&Entry> = narinfos.iter().collect();
    plan.sort_by(|a, b| b.info.file_size.cmp(&a.info.file_size).then_with(|| a.name.cmp(&b.name)));
    let signed = run_parallel(&plan, jobs, |entry| sign_one(entry, &source, dest.as_ref().map(|d| &d.dir), key))?;

    let mut other_files = 0;
    if let Some(dest) = &dest {
        let nars: BTreeSet<PathBuf> = narinfos.iter().map(|e| PathBuf::from(&e.info.url)).collect();
        other_files = copy_others(&source, &dest.dir, Path::new(""), &nars)?;
        settle_manifest(&source, dest)?;
    }

    // Narinfos last: they are what makes the NARs reachable.
    let changed = signed.iter().filter(|(_, changed)| *changed).count();
    let writes: Vec<NarInfoWrite> = plan
        .iter()
        .zip(&signed)
        .filter(|(_, (_, changed))| dest.is_some() || *changed)
        .map(|(entry, (info, _))| NarInfoWrite {
            name: &entry.name,
            info,
            // In place, what was read and checked; a copy's narinfo joins
            // whatever DEST has by the rule alone.
            read_as: dest.is_none().then_some((entry.text.as_str(), entry.stamp)),
        })
        .collect();
    let target = dest.as_ref().map_or(&source, |d| &d.dir);
    if !writes.is_empty() {
        write_narinfos(target, &store_dir, &writes, sync, dest.is_some())?;
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
    /// Which file it was read from.
    stamp: Stamp,
    /// Whether the cache has a `.ls` listing of its NAR.
    listed: bool,
    info: NarInfo,
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

/// DEST, ready to receive the signed copy.
struct Dest {
    dir: CacheDir,
    /// Whether it held a narinfo or NAR before this run.
    had_nars: bool,
}

/// Makes `out` ready to receive the signed copy of `cache`: created when
/// missing; when not empty, it must be a cache of the same store directory
/// (and not `cache` itself). A new or empty DEST is claimed by naming its
/// `nix-cache-info` (`info_text`, the cache's), which one run only can do.
fn prepare_dest(cache: &Path, out: &Path, store_dir: &str, info_text: &str) -> Result<Dest> {
    // Asked before anything is created: the cache may be writable.
    let real_cache = fs::canonicalize(cache).with_context(|| format!("resolving {}", cache.display()))?;
    let real_out = cache_dir::resolve(out)?;
    if real_out.starts_with(&real_cache) {
        if real_out == real_cache {
            bail!("--out {} is the cache itself; leave out --out to sign in place", out.display());
        }
        bail!(
            "--out {} is inside the cache {}: the copy would copy itself; choose a DEST outside it",
            out.display(),
            cache.display()
        );
    }
    cache_dir::create_new_dir(out, "--out")?;
    let dir = CacheDir::open(out).with_context(|| format!("opening {}", out.display()))?;
    let empty = dir.list(Path::new(""))?.is_empty();
    if !empty {
        check_dest_cache(&dir, store_dir)?;
    }
    let had_nars = crate::cache::read::has_nars(out)?;
    cache_dir::create_dirs_beneath(out, Path::new("nar"))?;
    // First, so that an interrupted run leaves a cache `sign --out` may
    // write into again (its narinfos are written last).
    let context = || format!("writing {}", out.join("nix-cache-info").display());
    let mut file = AtomicFile::create(out, "nix-cache-info").with_context(context)?;
    file.write_all(info_text.as_bytes()).with_context(context)?;
    if file.persist_new("nix-cache-info").with_context(context)?.is_some() {
        // There, or named by another run since: it must agree.
        check_dest_cache(&dir, store_dir)?;
    }
    Ok(Dest { dir, had_nars })
}

/// DEST, not empty, must be a cache of `store_dir`.
fn check_dest_cache(dir: &CacheDir, store_dir: &str) -> Result<()> {
    let out = dir.path();
    let theirs = read_cache_info_in(dir, "").and_then(|text| Ok(read_cache::store_dir(out, &text)?.map(str::to_owned)));
    let theirs = match theirs {
        Ok(theirs) => theirs,
        Err(e) => bail!(
            "--out {} is not empty and not a binary cache ({e:#}): refusing to write into it; choose a new or \
             empty DEST",
            out.display()
        ),
    };
    if let Some(theirs) = theirs.filter(|dir| dir != store_dir) {
        bail!(
            "--out {} is a cache of the store {theirs}, not of {store_dir}: refusing to mix them; choose a new or \
             empty DEST",
            out.display(),
        );
    }
    Ok(())
}

/// Every `*.narinfo` at the top of `cache`, parsed.
fn read_narinfos(cache: &CacheDir, store_dir: &str) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let top = cache.list(Path::new(""))?;
    let listings: std::collections::HashSet<&std::ffi::OsStr> =
        top.iter().map(|(name, _)| name.as_os_str()).filter(|n| n.to_string_lossy().ends_with(".ls")).collect();
    for (name, _) in &top {
        let Some(name) = name.to_str().filter(|n| n.ends_with(".narinfo")) else { continue };
        let file = cache.path().join(name);
        let (text, stamp) =
            cache.read_text_stamped(Path::new(name), MAX_NARINFO).map_err(|e| anyhow!("{e}; {DAMAGED}"))?;
        let info = NarInfo::parse(store_dir, &text).map_err(|e| anyhow!("{}: {e}; {DAMAGED}", file.display()))?;
        let expected = format!("{}.narinfo", info.path.hash_part());
        if name != expected {
            bail!("{}: the narinfo of {} must be named {expected}; {DAMAGED}", file.display(), info.path);
        }
        if info.nar_size == 0 {
            // Nix refuses to compute the fingerprint of an empty NAR: none exists.
            bail!("{}: NarSize is 0; {DAMAGED}", file.display());
        }
        nar_file(&info.url).map_err(|e| anyhow!("{}: {e}; {DAMAGED}", file.display()))?;
        let listed = listings.contains(std::ffi::OsStr::new(&format!("{}.ls", info.path.hash_part())));
        entries.push(Entry { name: name.to_owned(), text, stamp, listed, info });
    }
    if entries.is_empty() {
        bail!("{} has no narinfo files: there is nothing to sign", cache.path().display());
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Checks the NAR of `entry` (copying it to `out` first when given, and
/// naming the copy once checked) and returns the signed narinfo, and
/// whether its text differs from the one read.
fn sign_one(entry: &Entry, cache: &CacheDir, out: Option<&CacheDir>, key: &SecretKey) -> Result<(NarInfo, bool)> {
    let info = &entry.info;
    let narinfo_file = cache.path().join(&entry.name);
    let url = nar_file(&info.url).expect("checked when read");
    let shown = cache.path().join(url);
    let context = || format!("checking the NAR file of {}", narinfo_file.display());
    let source = cache.open_file(url).map_err(|e| anyhow!("{e}; {DAMAGED}")).with_context(context)?;
    match out {
        None => check_nar_file(cache, &source, &shown, entry).with_context(context)?,
        Some(out) => {
            let copy = copy_unnamed(&source, &shown, out.path(), url)?;
            check_nar_file(cache, copy.as_file(), &shown, entry).with_context(context)?;
            let name = url.file_name().expect("a file").to_string_lossy().into_owned();
            let target = out.path().join(url);
            // Replacing a file of that name: it may not be what was checked.
            copy.persist(&name).with_context(|| format!("naming {}", target.display()))?;
        }
    }
    let mut signed = info.clone();
    let signature = key.sign(&info.fingerprint());
    signed.signatures.retain(|s| s.key_name() != key.name());
    signed.signatures.push(signature);
    sort_signatures(&mut signed.signatures);
    let text = signed.render().map_err(|e| anyhow!("{}: {e}", narinfo_file.display()))?;
    let changed = text != entry.text;
    Ok((signed, changed))
}

/// The NAR file must be what the narinfo says, and its `.ls` listing, if
/// any, must list it (see [`read_cache::check_listed`]).
fn check_nar_file(cache: &CacheDir, file: &File, shown: &Path, entry: &Entry) -> Result<()> {
    let info = &entry.info;
    let listed = read_cache::read_listing(cache, info, entry.listed).map_err(|e| anyhow!("{e}; {DAMAGED}"))?;
    read_cache::check_listed(file, shown, "the narinfo", &Expected::of(info), listed.as_deref())?
        .map_err(|why| anyhow!("{why}; {DAMAGED}"))
}

/// A copy of `source` (shown as `shown`) at `out/rel`, not yet named, in a
/// directory created beneath `out` without following symlinks.
fn copy_unnamed(source: &File, shown: &Path, out: &Path, rel: &Path) -> Result<AtomicFile> {
    let target = out.join(rel);
    let context = || format!("copying {} to {}", shown.display(), target.display());
    let parent = rel.parent().unwrap_or(Path::new(""));
    cache_dir::create_dirs_beneath(out, parent).with_context(context)?;
    let label = rel.file_name().expect("a file").to_string_lossy();
    AtomicFile::copy_of(&out.join(parent), &label, source).with_context(context)
}

/// Copies everything under `cache/rel` but the narinfos, `nix-cache-info`,
/// the manifest, the NARs the narinfos name (`nars`, relative to the cache)
/// and hidden files (temporary files of runs) into `out/rel`. Returns the
/// number of files copied.
fn copy_others(cache: &CacheDir, out: &CacheDir, rel: &Path, nars: &BTreeSet<PathBuf>) -> Result<usize> {
    let mut copied = 0;
    let mut entries = cache.list(rel)?;
    entries.sort();
    for (name, kind) in entries {
        let rel = rel.join(&name);
        let shown = cache.path().join(&rel);
        let top = rel.parent() == Some(Path::new(""));
        let text = name.to_string_lossy();
        let ours = top && (text == "nix-cache-info" || text == manifest::FILE_NAME || text.ends_with(".narinfo"));
        if ours || text.starts_with('.') {
            continue;
        }
        match kind {
            Kind::Dir => {
                cache_dir::create_dirs_beneath(out.path(), &rel)?;
                copied += copy_others(cache, out, &rel, nars)?;
            }
            Kind::File if nars.contains(&rel) => {}
            Kind::File => {
                let source = cache.open_file(&rel)?;
                let copy = copy_unnamed(&source, &shown, out.path(), &rel)?;
                copy.persist(&text).with_context(|| format!("naming {}", out.path().join(&rel).display()))?;
                copied += 1;
            }
            Kind::Symlink | Kind::Other => bail!(
                "{} is {}: a binary cache has none such, and what it leads to is not copied; {DAMAGED}",
                shown.display(),
                if kind == Kind::Symlink { "a symlink" } else { "neither a file nor a directory" }
            ),
        }
    }
    Ok(copied)
}

/// Keeps DEST's manifest true of every NAR it now holds (see the module
/// documentation).
fn settle_manifest(source: &CacheDir, dest: &Dest) -> Result<()> {
    let rel = Path::new(manifest::FILE_NAME);
    let read = |dir: &CacheDir| match dir.read_text(rel, MAX_SMALL_FILE) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_missing() => Ok(None),
        Err(e) => Err(e),
    };
    let (theirs, ours) = (read(source)?, read(&dest.dir)?);
    let write = match (&theirs, &ours) {
        (_, Some(ours)) if theirs.as_ref() == Some(ours) || ours == manifest::MIXED => None,
        (_, Some(_)) => Some(manifest::MIXED),
        (Some(theirs), None) if !dest.had_nars => Some(theirs.as_str()),
        (_, None) => None,
    };
    if let Some(text) = write {
        let context = || format!("writing {}", dest.dir.path().join(rel).display());
        let mut file = AtomicFile::create(dest.dir.path(), manifest::FILE_NAME).with_context(context)?;
        file.write_all(text.as_bytes()).with_context(context)?;
        file.persist(manifest::FILE_NAME).with_context(context)?;
    }
    Ok(())
}
