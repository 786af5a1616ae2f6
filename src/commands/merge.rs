//! `make-binary-cache merge`: joins several binary caches into a new one, as
//! the last step of a sharded build (see [`crate::input::shard`]) or for any caches
//! of ours (or of `nix copy`).
//!
//! The inputs are only read (they are usually store paths). Nothing is
//! taken unchecked:
//!
//! * every `<hash part>.narinfo` parses strictly ([`NarInfo::parse`],
//!   for the store directory its `nix-cache-info` names), is named after its
//!   store path, and its URL names a file inside its cache ([`nar_file`]);
//! * a store path in several inputs must have the same NAR there (NarHash,
//!   NarSize), references and content address; its narinfos are then joined
//!   (`join`: signatures united, a Deriver or CA kept where one input has
//!   it, the first input's NAR file), and each input's NAR file is checked,
//!   so the NARs agree too; otherwise the error names the store path, both
//!   inputs and what differs;
//! * every NAR file is copied and the copy, before it is named, must have
//!   the narinfo's FileSize and FileHash (and, uncompressed, NarSize and
//!   NarHash): what is checked is what the merged cache serves;
//! * the merged cache must be closed (every reference of every narinfo has a
//!   narinfo), as the builder requires of a closure, unless `partial`;
//! * the inputs' `nix-cache-info` must agree on `StoreDir`, `WantMassQuery`
//!   and `Priority`: a cache says one thing to Nix, and taking one input's
//!   word over another's would change silently how Nix uses the others'
//!   paths. The file is copied when all inputs have the same bytes, else
//!   written as the cache writer writes it ([`CacheInfo`]).
//!
//! Everything else is copied too: NAR listings (`<hash part>.ls`), the debug
//! info index (`debuginfo/`), any other file, each of which must be
//! byte-identical in the inputs that have it; except a `debuginfo/` entry,
//! which names one NAR among several that hold the same build id, where the
//! first input's is kept (as the writer keeps the first one written) and the
//! log says so. The manifest `make-binary-cache.json` (how the NARs were
//! made) is copied only when every input has the same one: the merged cache
//! then was made that way. Otherwise it gets none, and the log says so once.
//! NAR files under `nar/` that no narinfo names, and temporary files left by
//! killed runs (`.<name>.….tmp`), are not copied; the log counts them.
//!
//! Files are written as the cache writer writes them ([`AtomicFile`]: named
//! only once complete and, for NARs, checked), copied with `copy_file_range`
//! (`std::io::copy` between files), which shares the blocks where the file
//! system can reflink. The narinfos come last, after a `syncfs` has put
//! every NAR on disk, in batches as `sign` writes them (see
//! [`crate::commands::sign`]); `sync: false` (`--no-sync`) skips that, as
//! `mergeBinaryCaches` does: in a build, syncing is Nix's (see "Durability"
//! in [`crate::commands::build`]). `out` must be missing or empty: a merge writes a
//! new cache.
//!
//! Merged caches of the shards of a closure are byte-identical to the cache
//! of the whole closure with the same settings, as each store path's files
//! depend only on the path and the settings.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::cache::dir::{self as cache_dir, CacheDir, MAX_SMALL_FILE};
use crate::cache::read::{self as read_cache, Expected, read_cache_info_in};
use crate::durable::atomic_file::AtomicFile;
use crate::durable::lock::RunLock;
use crate::durable::narinfos::{NarInfoWrite, write_narinfos};
use crate::format::cache_info::{self, CacheInfo};
use crate::format::hash::{HashingWriter, Sha256Hash};
use crate::format::layout::EMPTY_DIRS;
use crate::format::manifest::FILE_NAME as MANIFEST;
use crate::format::narinfo::{NarInfo, nar_file};
use crate::format::store_path::StorePath;
use crate::text::{count, human, per_second};
use crate::workers::run_parallel;

/// How to merge.
#[derive(Debug, Clone)]
pub struct Options {
    /// Allow references that no input has a narinfo for.
    pub partial: bool,
    /// Put the NARs on disk before the narinfos naming them are named.
    pub sync: bool,
    /// Workers copying and checking NAR files.
    pub jobs: usize,
}

/// What a merge did, for the closing log line.
#[derive(Debug, Clone)]
pub struct Summary {
    pub inputs: usize,
    pub narinfos: usize,
    /// Store paths found in more than one input (checked to agree).
    pub shared: usize,
    pub nar_files: usize,
    pub nar_bytes: u64,
    pub other_files: usize,
    pub manifest: bool,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {} ({} in more than one input), {} ({}) copied and checked, {}, {}, in {:.2} s ({})",
            count(self.inputs, "input"),
            count(self.narinfos, "narinfo"),
            self.shared,
            count(self.nar_files, "NAR file"),
            human(self.nar_bytes),
            count(self.other_files, "other file"),
            if self.manifest { "manifest copied" } else { "no manifest" },
            self.elapsed.as_secs_f64(),
            per_second(self.nar_bytes, self.elapsed)
        )
    }
}

/// One narinfo of an input.
struct Entry {
    /// Which input.
    input: usize,
    /// `<hash part>.narinfo`.
    name: String,
    text: String,
    info: NarInfo,
}

/// What one input holds, read and parsed.
struct Input {
    dir: PathBuf,
    /// What its `nix-cache-info` names.
    store_dir: String,
    cache_info: String,
    narinfos: Vec<Entry>,
    manifest: Option<Vec<u8>>,
    /// Other files, relative to `dir`, NARs named by the narinfos included.
    files: BTreeSet<PathBuf>,
    /// Every directory, relative to `dir`.
    dirs: BTreeSet<PathBuf>,
    /// Hidden files: temporary files of killed runs.
    temporary: Vec<PathBuf>,
}

/// Merges the caches `inputs` into the new cache `out`, calling `log` for
/// what a user should know (files not copied, entries that lost).
pub fn merge_caches(inputs: &[PathBuf], out: &Path, options: &Options, log: impl Fn(&str)) -> Result<Summary> {
    let start = Instant::now();
    if inputs.is_empty() {
        bail!("nothing to merge: no input caches");
    }
    let caches: Vec<CacheDir> = inputs.iter().map(|dir| read_cache::open(dir, "")).collect::<Result<_>>()?;
    // Against `gc` in an input or in DIR (see `crate::durable::lock`).
    let _input_locks = caches.iter().map(|cache| RunLock::shared(cache, &log)).collect::<Result<Vec<_>>>()?;
    let read: Vec<Input> =
        caches.iter().enumerate().map(|(i, cache)| read_input(cache, i)).collect::<Result<Vec<_>>>()?;
    let cache_info = agreed_cache_info(&read)?;

    // One narinfo per store path; the same store path must be the same everywhere.
    let mut narinfos: BTreeMap<&str, &Entry> = BTreeMap::new();
    // Store paths whose narinfos differ but describe the same NAR: joined.
    let mut joined: BTreeMap<&str, NarInfo> = BTreeMap::new();
    let mut shared: Vec<(&Entry, &Entry)> = Vec::new();
    for entry in read.iter().flat_map(|input| &input.narinfos) {
        match narinfos.get(entry.name.as_str()) {
            None => {
                narinfos.insert(&entry.name, entry);
            }
            Some(first) if first.text == entry.text => shared.push((first, entry)),
            Some(first) => {
                let info = joined.entry(&entry.name).or_insert_with(|| first.info.clone());
                join(info, &entry.info).map_err(|why| {
                    anyhow!(
                        "{} is in both {} and {}, {why}",
                        entry.info.path,
                        read[first.input].dir.join(&first.name).display(),
                        read[entry.input].dir.join(&entry.name).display()
                    )
                })?;
                shared.push((first, entry));
            }
        }
    }
    if !options.partial {
        check_closed(&narinfos, &read)?;
    }

    // One copy of each NAR file; narinfos naming one file must agree on it.
    let mut nars: BTreeMap<&Path, &Entry> = BTreeMap::new();
    for entry in narinfos.values() {
        let url = nar_file(&entry.info.url).expect("checked when read");
        if let Some(first) = nars.insert(url, entry) {
            let (a, b) = (&first.info, &entry.info);
            if (a.file_hash, a.file_size, a.compression) != (b.file_hash, b.file_size, b.compression) {
                bail!(
                    "{} and {} both name the NAR file {} but disagree on its FileHash, FileSize or Compression",
                    read[first.input].dir.join(&first.name).display(),
                    read[entry.input].dir.join(&entry.name).display(),
                    url.display()
                );
            }
        }
    }
    for (input, not_copied) in read.iter().map(|input| (input, strays(input))) {
        if let Some(first) = not_copied.first() {
            log(&format!(
                "{}: {} files under nar/ that no narinfo names are not copied (such as {})",
                input.dir.display(),
                not_copied.len(),
                first.display()
            ));
        }
        if let Some(first) = input.temporary.first() {
            log(&format!(
                "{}: {} temporary files of killed runs are not copied (such as {})",
                input.dir.display(),
                input.temporary.len(),
                first.display()
            ));
        }
    }
    let others = other_files(&read, &caches, &nars, &log)?;
    let manifest = agreed_manifest(&read, &log);

    let out_dir = prepare_out(out, &read, &cache_info)?;
    let _out_lock = RunLock::shared(&out_dir, &log)?;

    // NARs (checked as copied), the other inputs' NARs of shared paths
    // (checked where they are), and the other files, side by side.
    let mut work: Vec<Work> = nars.iter().map(|(url, entry)| Work::Nar(url, entry)).collect();
    work.extend(shared.iter().map(|&(first, entry)| Work::Shared(first, entry)));
    work.extend(others.iter().map(|(rel, &input)| Work::Other(rel, input)));
    if let Some(input) = manifest {
        work.push(Work::Other(Path::new(MANIFEST), input));
    }
    run_parallel(&work, options.jobs, |item| match *item {
        Work::Nar(url, entry) => {
            copy_nar(&caches[entry.input], out, url, entry, has_listing(&read[entry.input], entry))
        }
        Work::Shared(first, entry) => {
            let input = &read[entry.input].dir;
            let rel = nar_file(&entry.info.url).expect("checked when read");
            let source = input.join(rel);
            let file = caches[entry.input].open_file(rel)?;
            let listed =
                read_cache::read_listing(&caches[entry.input], &entry.info, has_listing(&read[entry.input], entry))?;
            read_cache::check_listed(&file, &source, "the narinfo", &Expected::of(&entry.info), listed.as_deref())
                .and_then(|r| r.map_err(|why| anyhow!(why)))
                .with_context(|| {
                    format!(
                        "checking the NAR file of {} ({}, which {} has too)",
                        input.join(&entry.name).display(),
                        entry.info.path,
                        read[first.input].dir.display()
                    )
                })
        }
        Work::Other(rel, input) => copy_file(&caches[input], out, rel),
    })?;

    // Last, once every NAR is on disk: what makes the NARs reachable.
    let writes: Vec<NarInfoWrite> = narinfos
        .values()
        .map(|e| NarInfoWrite { name: &e.name, info: joined.get(e.name.as_str()).unwrap_or(&e.info), read_as: None })
        .collect();
    let store_dir = read[0].store_dir.as_str();
    write_narinfos(&out_dir, store_dir, &writes, options.sync, true)?;
    Ok(Summary {
        inputs: read.len(),
        narinfos: narinfos.len(),
        shared: shared.len(),
        nar_files: nars.len(),
        nar_bytes: nars.values().map(|e| e.info.file_size).sum(),
        other_files: others.len(),
        manifest: manifest.is_some(),
        elapsed: start.elapsed(),
    })
}

/// One piece of the copying.
enum Work<'a> {
    /// Copy and check the NAR file `url` that `entry` names.
    Nar(&'a Path, &'a Entry),
    /// Check the NAR file of a store path whose narinfo another input
    /// (`.0`) has too, and whose NAR is copied from there.
    Shared(&'a Entry, &'a Entry),
    /// Copy a file (relative path) from an input.
    Other(&'a Path, usize),
}

/// Joins into `ours` the narinfo `theirs` of the same store path from
/// another input, as a user expects of one store path in two caches: the
/// same NAR (NarHash, NarSize), references and content address (when both
/// have one) make one narinfo, whatever else differs. Signatures are
/// united, the Deriver and CA kept where one input has them, and the NAR
/// file is the first input's (the other's is checked all the same). What
/// differs otherwise is said.
fn join(ours: &mut NarInfo, theirs: &NarInfo) -> Result<(), String> {
    if (ours.nar_hash, ours.nar_size) != (theirs.nar_hash, theirs.nar_size) {
        return Err(format!(
            "with different NARs (NarHash {} and {}): a store path has one NAR; was it built twice, \
             not reproducibly? Merge caches of one build of it",
            ours.nar_hash, theirs.nar_hash
        ));
    }
    if ours.references != theirs.references {
        return Err("with different references: one of the two narinfos is wrong; verify both caches".into());
    }
    if let (Some(a), Some(b)) = (&ours.ca, &theirs.ca)
        && a != b
    {
        return Err(format!("with different content addresses ({a} and {b})"));
    }
    ours.add_signatures_of(theirs);
    if ours.deriver.is_none() {
        ours.deriver = theirs.deriver.clone();
    }
    if ours.ca.is_none() {
        ours.ca = theirs.ca;
    }
    Ok(())
}

/// Reads the narinfos, `nix-cache-info` and the list of files of input
/// number `index`.
fn read_input(cache: &CacheDir, index: usize) -> Result<Input> {
    let dir = cache.path();
    let cache_info = read_cache_info_in(cache, "")?;
    let store_dir = read_cache::store_dir(dir, &cache_info)?.ok_or_else(|| {
        anyhow!(
            "{} names no StoreDir: which store its narinfos are for is unknown",
            dir.join(cache_info::FILE_NAME).display()
        )
    })?;

    let mut input = Input {
        dir: dir.to_owned(),
        store_dir: store_dir.to_owned(),
        cache_info: cache_info.clone(),
        narinfos: Vec::new(),
        manifest: None,
        files: BTreeSet::new(),
        dirs: BTreeSet::new(),
        temporary: Vec::new(),
    };
    walk(dir, Path::new(""), &mut input)?;
    for rel in std::mem::take(&mut input.files) {
        let name = rel.to_str().filter(|n| rel.parent() == Some(Path::new("")) && n.ends_with(".narinfo"));
        if let Some(name) = name {
            let (text, info) = read_cache::read_narinfo(cache, name, store_dir, "")?;
            input.narinfos.push(Entry { input: index, name: name.to_owned(), text, info });
        } else if rel == Path::new(MANIFEST) {
            input.manifest = Some(cache.read_small(Path::new(MANIFEST), MAX_SMALL_FILE)?);
        } else if rel != Path::new("nix-cache-info") {
            input.files.insert(rel);
        }
    }
    Ok(input)
}

/// Lists the files and directories under `root/rel` into `input`.
fn walk(root: &Path, rel: &Path, input: &mut Input) -> Result<()> {
    let dir = root.join(rel);
    for dirent in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let dirent = dirent.with_context(|| format!("reading {}", dir.display()))?;
        let rel = rel.join(dirent.file_name());
        let kind = dirent.file_type().with_context(|| format!("reading {}", root.join(&rel).display()))?;
        if dirent.file_name().to_string_lossy().starts_with('.') && kind.is_file() {
            input.temporary.push(rel);
        } else if kind.is_dir() {
            walk(root, &rel, input)?;
            input.dirs.insert(rel);
        } else if kind.is_file() {
            input.files.insert(rel);
        } else {
            bail!("{} is neither a file nor a directory: a binary cache has none such", root.join(&rel).display());
        }
    }
    Ok(())
}

/// The merged cache's `nix-cache-info`: the inputs' own when they are all
/// the same, else the writer's text for the settings they agree on.
fn agreed_cache_info(inputs: &[Input]) -> Result<String> {
    let first = &inputs[0];
    if inputs.iter().all(|input| input.cache_info == first.cache_info) {
        return Ok(first.cache_info.clone());
    }
    let file = |input: &Input| input.dir.join(cache_info::FILE_NAME);
    let parsed = inputs
        .iter()
        .map(|input| cache_info::parse(&input.cache_info).map_err(|e| anyhow!("{}: {e}", file(input).display())))
        .collect::<Result<Vec<_>>>()?;
    for key in cache_info::KEYS {
        let value = |p: &cache_info::Parsed<'_>| p.field(key).map(|f| f.value.to_owned());
        if let Some(other) = (1..inputs.len()).find(|&i| value(&parsed[i]) != value(&parsed[0])) {
            let show = |p: &cache_info::Parsed<'_>| value(p).map_or(format!("no {key}"), |v| format!("{key}: {v}"));
            bail!(
                "{} has {} but {} has {}: a merged cache can say only one (merge caches written with the same \
                 settings)",
                file(first).display(),
                show(&parsed[0]),
                file(&inputs[other]).display(),
                show(&parsed[other])
            );
        }
    }
    let ours = &parsed[0];
    let store_dir = ours.store_dir.expect("checked when read").value;
    let priority = ours
        .priority
        .map(|f| cache_info::parse_priority(f.value).map_err(|e| anyhow!("{}: {e}", file(first).display())))
        .transpose()?;
    Ok(CacheInfo { store_dir, priority, want_mass_query: ours.want_mass_query() }.text())
}

/// The input whose manifest the merged cache gets: the first, when every
/// input has this same manifest.
fn agreed_manifest(inputs: &[Input], log: &impl Fn(&str)) -> Option<usize> {
    let first = inputs[0].manifest.as_ref();
    let differs = inputs.iter().find(|input| input.manifest.as_ref() != first);
    match (first, differs) {
        (Some(_), None) => Some(0),
        (None, None) => None,
        (_, Some(other)) => {
            let (with, without) = if first.is_none() { (other, &inputs[0]) } else { (&inputs[0], other) };
            let why = if first.is_none() || other.manifest.is_none() {
                format!("{} has one but {} has none", with.dir.display(), without.dir.display())
            } else {
                format!("{} and {} have different ones", inputs[0].dir.display(), other.dir.display())
            };
            log(&format!(
                "{MANIFEST} is not copied: {why}, so the merged cache records no settings (later builds cannot \
                 reuse its NARs)"
            ));
            None
        }
    }
}

/// Every reference of every narinfo must have a narinfo.
fn check_closed(narinfos: &BTreeMap<&str, &Entry>, inputs: &[Input]) -> Result<()> {
    let present: BTreeSet<&StorePath> = narinfos.values().map(|e| &e.info.path).collect();
    let mut missing = narinfos
        .values()
        .flat_map(|entry| entry.info.references.iter().filter(|r| !present.contains(r)).map(move |r| (entry, r)));
    let Some((entry, reference)) = missing.next() else { return Ok(()) };
    let more: BTreeSet<&StorePath> = missing.map(|(_, r)| r).filter(|r| *r != reference).collect();
    let others = if more.is_empty() { String::new() } else { format!(" (and {} more missing references)", more.len()) };
    bail!(
        "the merged cache would not be closed: {} (in {}) refers to {reference}, which no input has{others}; \
         merge all the caches of the closure, or use --partial for a cache that leaves the missing paths to \
         another substituter",
        entry.info.path,
        inputs[entry.input].dir.display()
    )
}

/// Files under `nar/` of `input` that none of its narinfos names.
fn strays(input: &Input) -> Vec<&Path> {
    let named: BTreeSet<&Path> = input.narinfos.iter().map(|e| nar_file(&e.info.url).expect("checked")).collect();
    input.files.iter().map(PathBuf::as_path).filter(|f| f.starts_with("nar") && !named.contains(f)).collect()
}

/// The files besides narinfos, NARs and the manifest, each with the input
/// it is copied from: the same file in several inputs must be the same,
/// but for `debuginfo/` entries, where the first input's is kept.
fn other_files<'a>(
    inputs: &'a [Input],
    caches: &[CacheDir],
    nars: &BTreeMap<&Path, &Entry>,
    log: &impl Fn(&str),
) -> Result<BTreeMap<&'a Path, usize>> {
    let mut files: BTreeMap<&Path, usize> = BTreeMap::new();
    let mut kept = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        for rel in &input.files {
            if nars.contains_key(rel.as_path()) || rel.starts_with("nar") {
                continue;
            }
            let Some(&first) = files.get(rel.as_path()) else {
                files.insert(rel, i);
                continue;
            };
            let (a, b) = (inputs[first].dir.join(rel), input.dir.join(rel));
            if file_hash(&caches[first], rel)? == file_hash(&caches[i], rel)? {
                continue;
            }
            if rel.starts_with("debuginfo") {
                kept.push((a, b));
            } else {
                bail!(
                    "{} and {} differ: a file of the same name must be the same in every input",
                    a.display(),
                    b.display()
                );
            }
        }
    }
    if let Some((a, b)) = kept.first() {
        log(&format!(
            "{} debug info entries differ between inputs (the same build id in several store paths); the first \
             input's is kept, such as {} over {}",
            kept.len(),
            a.display(),
            b.display()
        ));
    }
    Ok(files)
}

/// Makes `out` a new cache layout holding `cache_info`: it must be missing
/// or empty, and not inside an input. It is claimed by naming its
/// `nix-cache-info`, which only one run can do, so two merges into one new
/// directory never both go on.
fn prepare_out(out: &Path, inputs: &[Input], cache_info: &str) -> Result<CacheDir> {
    let not_empty =
        || anyhow!("--out {} is not empty: merge writes a new cache into a missing or empty directory", out.display());
    if fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(not_empty());
    }
    // Asked before anything is created: an input may be writable.
    let real_out = cache_dir::resolve(out)?;
    for input in inputs {
        let real = fs::canonicalize(&input.dir).with_context(|| format!("resolving {}", input.dir.display()))?;
        if real_out.starts_with(&real) {
            bail!("--out {} is inside the input {}: the merge would copy itself", out.display(), input.dir.display());
        }
    }
    cache_dir::create_new_dir(out, "--out")?;
    let out_dir = CacheDir::open(out).with_context(|| format!("opening {}", out.display()))?;
    let context = || format!("writing {}", out.join("nix-cache-info").display());
    let mut file = AtomicFile::create(out, "nix-cache-info").with_context(context)?;
    file.write_all(cache_info.as_bytes()).with_context(context)?;
    if file.persist_new("nix-cache-info").with_context(context)?.is_some() {
        // Another run claimed it between our look and now.
        return Err(not_empty());
    }
    let dirs = inputs.iter().flat_map(|input| input.dirs.iter().map(PathBuf::as_path));
    for dir in dirs.chain(["nar"].into_iter().chain(EMPTY_DIRS).map(Path::new)) {
        cache_dir::create_dirs_beneath(out, dir)?;
    }
    Ok(out_dir)
}

/// The SHA-256 of the file `rel` of `cache`, read through it.
fn file_hash(cache: &CacheDir, rel: &Path) -> Result<Sha256Hash> {
    let mut file = cache.open_file(rel)?;
    let mut hasher = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", cache.path().join(rel).display()))?;
    Ok(hasher.finish().0)
}

/// Copies the NAR file `url` of `entry` from `input` to `out`, named only
/// once the copy is checked against the narinfo (and its listing, when
/// `listed`).
fn copy_nar(input: &CacheDir, out: &Path, url: &Path, entry: &Entry, listed: bool) -> Result<()> {
    let source = input.path().join(url);
    let target = out.join(url);
    let copy = copy_unnamed(input, url, out)?;
    let listed = read_cache::read_listing(input, &entry.info, listed)?;
    read_cache::check_listed(copy.as_file(), &source, "the narinfo", &Expected::of(&entry.info), listed.as_deref())
        .and_then(|r| r.map_err(|why| anyhow!(why)))
        .with_context(|| {
            format!("checking the NAR file of {} ({})", input.path().join(&entry.name).display(), entry.info.path)
        })?;
    let name = target.file_name().expect("a file").to_string_lossy().into_owned();
    copy.persist(&name).with_context(|| format!("naming {}", target.display()))
}

/// Whether `input` has a `.ls` listing of the NAR of `entry`.
fn has_listing(input: &Input, entry: &Entry) -> bool {
    input.files.contains(Path::new(&format!("{}.ls", entry.info.path.hash_part())))
}

/// Copies `input/rel` to `out/rel`, named once complete.
fn copy_file(input: &CacheDir, out: &Path, rel: &Path) -> Result<()> {
    let target = out.join(rel);
    let copy = copy_unnamed(input, rel, out)?;
    let name = target.file_name().expect("a file").to_string_lossy().into_owned();
    copy.persist(&name).with_context(|| format!("naming {}", target.display()))
}

/// A copy of `input/rel` in `out/rel`'s directory, not yet named, written
/// with `copy_file_range`.
fn copy_unnamed(input: &CacheDir, rel: &Path, out: &Path) -> Result<AtomicFile> {
    let target = out.join(rel);
    let context = || format!("copying {} to {}", input.path().join(rel).display(), target.display());
    let parent = rel.parent().unwrap_or(Path::new(""));
    cache_dir::create_dirs_beneath(out, parent).with_context(context)?;
    let label = target.file_name().expect("a file").to_string_lossy();
    let from = input.open_file(rel)?;
    AtomicFile::copy_of(&out.join(parent), &label, &from).with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(dir: &str, cache_info: &str, manifest: Option<&[u8]>) -> Input {
        Input {
            dir: dir.into(),
            store_dir: "/nix/store".into(),
            cache_info: cache_info.into(),
            narinfos: Vec::new(),
            manifest: manifest.map(<[u8]>::to_vec),
            files: BTreeSet::new(),
            dirs: BTreeSet::new(),
            temporary: Vec::new(),
        }
    }

    #[test]
    fn cache_info_must_agree_and_is_kept_when_identical() {
        let same = [input("a", "StoreDir: /nix/store\n", None), input("b", "StoreDir: /nix/store\n", None)];
        assert_eq!(agreed_cache_info(&same).unwrap(), "StoreDir: /nix/store\n");
        // The same settings written differently: the writer's text.
        let reordered = [
            input("a", "StoreDir: /nix/store\nPriority: 30\nWantMassQuery: 1\n", None),
            input("b", "StoreDir:/nix/store\nWantMassQuery: 1\nPriority: 30\n", None),
        ];
        assert_eq!(agreed_cache_info(&reordered).unwrap(), "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n");
        for (b, expected) in [
            (
                "StoreDir: /gnu/store\n",
                "a/nix-cache-info has StoreDir: /nix/store but b/nix-cache-info has StoreDir: /gnu/store",
            ),
            ("StoreDir: /nix/store\nPriority: 10\n", "has no Priority but b/nix-cache-info has Priority: 10"),
            (
                "StoreDir: /nix/store\nWantMassQuery: 0\n",
                "has no WantMassQuery but b/nix-cache-info has WantMassQuery: 0",
            ),
        ] {
            let err =
                agreed_cache_info(&[input("a", "StoreDir: /nix/store\n", None), input("b", b, None)]).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn the_manifest_is_copied_only_when_all_inputs_have_the_same() {
        let logged = std::cell::RefCell::new(Vec::<String>::new());
        let log = |line: &str| logged.borrow_mut().push(line.to_owned());
        let m = |x: Option<&[u8]>, y: Option<&[u8]>| {
            agreed_manifest(&[input("a", "", x), input("b", "", y), input("c", "", x)], &log)
        };
        assert_eq!(m(Some(b"{}"), Some(b"{}")), Some(0));
        assert_eq!(m(None, None), None);
        assert!(logged.borrow().is_empty());
        assert_eq!(m(Some(b"{}"), Some(b"{ }")), None);
        assert_eq!(m(Some(b"{}"), None), None);
        assert_eq!(m(None, Some(b"{}")), None);
        let logged = logged.into_inner();
        assert_eq!(logged.len(), 3, "{logged:?}");
        assert!(logged[0].contains("a and b have different ones"), "{logged:?}");
        assert!(logged[1].contains("a has one but b has none"), "{logged:?}");
        assert!(logged[2].contains("b has one but a has none"), "{logged:?}");
    }
}
