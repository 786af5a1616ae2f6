//! `make-binary-cache verify`: checks a flat-file binary cache as a receiver
//! would want it checked, before trusting it.
//!
//! Nix has nothing for this: `nix store verify` checks store paths, not a
//! cache directory, and Nix never checks a narinfo's FileHash or FileSize
//! (only the NarHash and NarSize of what it unpacks, path by path, when it
//! substitutes). For every `<hash>.narinfo` of the cache this checks:
//!
//! * the narinfo parses strictly ([`NarInfo::parse`]) for the store
//!   directory that `nix-cache-info` names, and is named
//!   `<hash part of its StorePath>.narinfo`;
//! * its URL is a plain relative path inside the cache (no `..`, not
//!   absolute, no scheme), naming a regular file whose size and SHA-256 are
//!   the narinfo's FileSize and FileHash;
//! * that file decompresses (none, xz, zstd; streaming, in bounded memory,
//!   with nothing after the compressed stream) to exactly NarSize bytes with
//!   the NarHash, and those bytes are a well-formed NAR
//!   ([`crate::format::nar_reader`]);
//! * every reference has a narinfo in the cache: the cache is closed;
//! * with public keys, at least one of its signatures verifies under one of
//!   them (the [`fingerprint`](crate::format::key::fingerprint) Nix signs).
//!
//! Files in `nar/` that no narinfo names, and unknown files at the top of the
//! cache, are warnings only: they do no harm to Nix, but may be leftovers.
//! `make-binary-cache.json` (see [`crate::format::manifest`]) is known, and
//! a warning only when it does not parse.
//!
//! Every problem is reported, with the store path it concerns (or the file,
//! when there is no store path to name), not just the first; [`verify_cache`]
//! returns the totals. Store paths are checked in parallel, the largest
//! first. Each worker holds one read buffer and one decompressor: memory does
//! not grow with the size of a NAR or of the cache (but for the list of
//! narinfos).
//!
//! A `CA` must give the store path (checked as the narinfo is parsed, see
//! [`ContentAddress::check_path`](crate::format::content_address::ContentAddress::check_path)).
//! With `--public-key` content-addressed paths still need a signature like
//! any other, though Nix would take them without one.
//!
//! Every file is read through [`CacheDir`]: nothing outside the cache, no
//! FIFO, small files bounded. `debuginfo/` entries are checked (a problem
//! when one does not name a NAR of the cache), and a `.ls` listing that no
//! narinfo has is a warning.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::cache::dir::{CacheDir, Kind, MAX_NARINFO, MAX_SMALL_FILE, OpenError};
use crate::cache::read as read_cache;
use crate::compress::Compression;
use crate::durable::lock::RunLock;
use crate::format::cache_info;
use crate::format::key::PublicKey;
use crate::format::layout::EMPTY_DIRS;
use crate::format::listing::Listing;
use crate::format::manifest::{self, Manifest};
use crate::format::narinfo::{NarInfo, nar_file};
use crate::format::store_path::check_store_dir;
use crate::text::{count, human, per_second};

/// How to verify.
pub struct Options {
    /// Every store path must have a signature that verifies under one of
    /// these; none: signatures are not checked.
    pub public_keys: Vec<PublicKey>,
    /// Worker threads, at least 1; never more than the cores.
    pub jobs: usize,
}

/// Something wrong, or odd, in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// A problem makes the cache fail verification; a warning does not.
    pub severity: Severity,
    /// What it concerns: a store path, else a file of the cache.
    pub subject: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Problem,
    Warning,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let label = match self.severity {
            Severity::Problem => "problem",
            Severity::Warning => "warning",
        };
        write!(f, "{label}: {}: {}", self.subject, self.message)
    }
}

/// Totals for the closing line.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Narinfos found (each names one store path).
    pub paths: usize,
    pub nar_bytes: u64,
    pub file_bytes: u64,
    pub problems: usize,
    /// Of the problems, those of signatures alone (none by a given key,
    /// or one that does not verify): what `sign` or the right key mends.
    pub signature_problems: usize,
    pub warnings: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} checked, {} of NAR from {} of files in {secs:.2} s ({}): {}, {}",
            count(self.paths, "store path"),
            human(self.nar_bytes),
            human(self.file_bytes),
            per_second(self.nar_bytes, self.elapsed),
            count(self.problems, "problem"),
            count(self.warnings, "warning")
        )
    }
}

/// Bytes read from a NAR file at a time.
const CHUNK: usize = 256 * 1024;

/// Verifies the cache in `cache`, calling `report` for every finding as it
/// is made (all findings about one store path at once). An error only when
/// the cache cannot be examined at all: not a directory, unreadable, no
/// valid `StoreDir` in `nix-cache-info`.
pub fn verify_cache(cache: &Path, options: &Options, report: impl Fn(&[Finding]) + Sync) -> Result<Summary> {
    let start = Instant::now();
    let cache = &read_cache::open(cache, "")?;
    // A `gc` meanwhile would make NARs vanish under the check.
    let _lock = RunLock::shared(cache, |line| eprintln!("make-binary-cache: {line}"))?;
    let problems = AtomicUsize::new(0);
    let warnings = AtomicUsize::new(0);
    let emit = |findings: &[Finding]| {
        if findings.is_empty() {
            return;
        }
        for f in findings {
            match f.severity {
                Severity::Problem => problems.fetch_add(1, Ordering::Relaxed),
                Severity::Warning => warnings.fetch_add(1, Ordering::Relaxed),
            };
        }
        report(findings);
    };

    let (store_dir, cache_info_findings) = read_cache_info(cache)?;
    emit(&cache_info_findings);
    let (narinfo_names, listings, top_findings) = list_top(cache)?;
    emit(&top_findings);
    if narinfo_names.is_empty() {
        emit(&[warning(
            cache.path().display().to_string(),
            "the cache has no narinfo files: there is nothing to verify",
        )]);
    }

    // Every narinfo parsed first: the closure and the nar/ listing need all.
    let mut infos = Vec::with_capacity(narinfo_names.len());
    // The NAR files narinfos name, refused ones included: their NARs are
    // accounted for by the problem already reported.
    let mut urls = BTreeSet::new();
    for name in &narinfo_names {
        match read_narinfo(cache, name, &store_dir) {
            Ok(info) => infos.push(info),
            Err((finding, url)) => {
                emit(&[finding]);
                if let Some(path) = url.as_deref().and_then(|u| nar_file(u).ok()) {
                    urls.insert(path.to_path_buf());
                }
            }
        }
    }
    let present: HashSet<&str> = infos.iter().map(|i| i.path.as_str()).collect();
    let listed: HashSet<&str> = listings.iter().map(String::as_str).collect();

    // Largest first, so that a big path does not start last.
    let mut plan: Vec<&NarInfo> = infos.iter().collect();
    plan.sort_by(|a, b| {
        (b.file_size.saturating_add(b.nar_size))
            .cmp(&a.file_size.saturating_add(a.nar_size))
            .then_with(|| a.path.cmp(&b.path))
    });
    for info in &plan {
        if let Ok(path) = nar_file(&info.url) {
            urls.insert(path.to_path_buf());
        }
    }

    let nar_bytes = AtomicU64::new(0);
    let signature_problems = AtomicUsize::new(0);
    let file_bytes = AtomicU64::new(0);
    crate::workers::run(options.jobs, plan.len(), |_, queue| {
        let mut buf = vec![0u8; CHUNK];
        while let Some(info) = queue.next().map(|i| plan[i]) {
            let mut problems = Vec::new();
            let (nar, file) = check_nar(cache, info, &listed, &mut buf, &mut problems);
            nar_bytes.fetch_add(nar, Ordering::Relaxed);
            file_bytes.fetch_add(file, Ordering::Relaxed);
            check_references(info, &present, &mut problems);
            let before = problems.len();
            check_signatures(info, &options.public_keys, &mut problems);
            let unsigned = problems[before..].iter().filter(|(s, _)| *s == Severity::Problem).count();
            signature_problems.fetch_add(unsigned, Ordering::Relaxed);
            let findings: Vec<Finding> = problems
                .into_iter()
                .map(|(severity, message)| Finding { severity, subject: info.path.to_string(), message })
                .collect();
            emit(&findings);
        }
    })?;

    emit(&reference_cycles(&infos));
    emit(&unnamed_nar_files(cache, &urls));
    let present_parts: HashSet<&str> = infos.iter().map(|i| i.path.hash_part()).collect();
    emit(&orphan_listings(&listings, &present_parts, cache));
    emit(&check_debug_info(cache, &urls));
    emit(&orphan_logs(cache, &infos));
    Ok(Summary {
        paths: narinfo_names.len(),
        nar_bytes: nar_bytes.into_inner(),
        file_bytes: file_bytes.into_inner(),
        problems: problems.into_inner(),
        signature_problems: signature_problems.into_inner(),
        warnings: warnings.into_inner(),
        elapsed: start.elapsed(),
    })
}

fn problem(subject: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding { severity: Severity::Problem, subject: subject.into(), message: message.into() }
}

fn warning(subject: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding { severity: Severity::Warning, subject: subject.into(), message: message.into() }
}

/// The `StoreDir` of `nix-cache-info`, which must be there and valid; the
/// other fields Nix reads (`WantMassQuery`, `Priority`) are checked too.
fn read_cache_info(cache: &CacheDir) -> Result<(String, Vec<Finding>)> {
    let file = cache.path().join("nix-cache-info");
    let text = read_cache::read_cache_info_in(cache, "")?;
    let subject = file.display().to_string();
    let parsed = cache_info::parse(&text).map_err(|e| anyhow!("{subject}: {e}"))?;
    // By line, as they stand in the file.
    let mut findings: Vec<(usize, Finding)> = Vec::new();
    for &(n, line) in &parsed.malformed {
        findings.push((n, problem(&subject, format!("line {n}: no `:` in {line:?}"))));
    }
    let values = [
        parsed.want_mass_query.map(|f| (f, cache_info::parse_want_mass_query(f.value).err())),
        parsed.priority.map(|f| (f, cache_info::parse_priority(f.value).err())),
    ];
    for (field, why) in values.into_iter().flatten() {
        if let Some(why) = why {
            findings.push((field.line, problem(&subject, format!("line {}: {why}", field.line))));
        }
    }
    for &(n, key) in &parsed.unknown {
        findings.push((n, warning(&subject, format!("line {n}: unknown field {key:?}, which Nix ignores"))));
    }
    findings.sort_by_key(|(n, _)| *n);
    let findings = findings.into_iter().map(|(_, f)| f).collect();
    let store_dir = parsed.store_dir.ok_or_else(|| {
        anyhow!(
            "{subject}: no StoreDir: the store directory is unknown; add the line `StoreDir: /nix/store` \
             (or the store the cache is for) and verify again"
        )
    })?;
    check_store_dir(store_dir.value)
        .map_err(|e| anyhow!("{subject}: line {}: StoreDir {:?}: {e}", store_dir.line, store_dir.value))?;
    let store_dir = store_dir.value.to_owned();
    Ok((store_dir, findings))
}

/// The narinfo file names at the top of the cache, sorted, the `.ls` file
/// names, and warnings about what else is there.
fn list_top(cache: &CacheDir) -> Result<(Vec<String>, Vec<String>, Vec<Finding>)> {
    let mut names = Vec::new();
    let mut listings = Vec::new();
    let mut findings = Vec::new();
    for (name, kind) in cache.list(Path::new(""))? {
        let shown = cache.path().join(&name).display().to_string();
        let Some(name) = name.to_str() else {
            findings.push(warning(shown, "not part of a binary cache"));
            continue;
        };
        let dir = name == "nar" || EMPTY_DIRS.contains(&name);
        let known = dir || name == manifest::FILE_NAME || name.ends_with(".narinfo") || name.ends_with(".ls");
        if kind == Kind::Symlink && known {
            // Read through, it would serve files from outside the cache.
            findings.push(problem(shown, "a symlink: a cache's files must be inside it"));
        } else if name.ends_with(".narinfo") {
            names.push(name.to_owned());
        } else if name == manifest::FILE_NAME {
            // Ours; Nix ignores it. Only `--reuse` reads it, and a garbled
            // one only stops reuse, so it is a warning.
            let checked = cache
                .read_text(Path::new(name), MAX_SMALL_FILE)
                .map_err(|e| e.to_string())
                .and_then(|t| Manifest::check(&t).map_err(|e| e.to_string()));
            if let Err(e) = checked {
                findings.push(warning(shown, format!("not a make-binary-cache manifest: {e}")));
            }
        } else if name.ends_with(".ls") {
            // NAR listings, as `nix copy` writes them with write-nar-listing.
            listings.push(name.to_owned());
        } else if !(name == "nix-cache-info" || dir) {
            findings.push(warning(shown, "not part of a binary cache"));
        }
    }
    names.sort();
    listings.sort();
    Ok((names, listings, findings))
}

/// The entries of `log/` (build logs, `--include-logs`): each must be a
/// file named after a narinfo's `Deriver` (else a warning: `nix log` never
/// finds it), never a symlink (Nix would serve what it points to).
fn orphan_logs(cache: &CacheDir, infos: &[NarInfo]) -> Vec<Finding> {
    let entries = match cache.list(Path::new("log")) {
        Ok(entries) => entries,
        Err(e) if e.is_missing() => return Vec::new(),
        Err(e) => return vec![problem(cache.path().join("log").display().to_string(), e.to_string())],
    };
    let derivers: HashSet<&str> = infos.iter().filter_map(|i| i.deriver.as_ref()).map(|d| d.base_name()).collect();
    let mut findings = Vec::new();
    for (name, kind) in entries {
        let shown = cache.path().join("log").join(&name).display().to_string();
        match kind {
            Kind::Symlink => findings.push(problem(shown, "a symlink: a cache's files must be inside it")),
            Kind::File if derivers.contains(name.to_string_lossy().as_ref()) => {}
            Kind::File => findings.push(warning(shown, "a build log of a derivation no narinfo names as its Deriver")),
            _ => findings.push(warning(shown, "not part of a binary cache")),
        }
    }
    findings
}

/// Warnings for `.ls` listings of store paths that have no narinfo.
fn orphan_listings(listings: &[String], present: &HashSet<&str>, cache: &CacheDir) -> Vec<Finding> {
    listings
        .iter()
        .filter(|name| !present.contains(name.trim_end_matches(".ls")))
        .map(|name| warning(cache.path().join(name).display().to_string(), "a NAR listing that no narinfo has"))
        .collect()
}

/// The entries of `debuginfo/`, as `index-debug-info` writes them for dwarffs:
/// each `<40 hex digits>.debug`, a JSON object whose `archive` is
/// `../<URL>` of a NAR file a narinfo names and whose `member` is that build
/// id's file, `lib/debug/.build-id/<2>/<38>.debug`.
fn check_debug_info(cache: &CacheDir, urls: &BTreeSet<PathBuf>) -> Vec<Finding> {
    let entries = match cache.list(Path::new("debuginfo")) {
        Ok(entries) => entries,
        Err(e) if e.is_missing() => return Vec::new(),
        Err(e) => return vec![problem(cache.path().join("debuginfo").display().to_string(), e.to_string())],
    };
    let mut findings = Vec::new();
    for (name, _) in entries {
        let rel = Path::new("debuginfo").join(&name);
        let shown = cache.path().join(&rel).display().to_string();
        let id = name.to_str().and_then(|n| n.strip_suffix(".debug"));
        let Some(id) = id.filter(|id| id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit())) else {
            findings.push(problem(shown, "not a debug info entry: its name must be a build id and `.debug`"));
            continue;
        };
        let entry = match cache.read_text(&rel, MAX_SMALL_FILE) {
            Ok(text) => text,
            Err(e) => {
                findings.push(problem(shown, e.to_string()));
                continue;
            }
        };
        let parsed: Option<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&entry).ok();
        let field = |key: &str| parsed.as_ref().and_then(|m| m.get(key)).and_then(|v| v.as_str());
        let member = format!("lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..]);
        let why = match (field("archive"), field("member")) {
            (None, _) | (_, None) => "not JSON with the strings `archive` and `member`".to_owned(),
            (Some(archive), _)
                if !archive
                    .strip_prefix("../")
                    .and_then(|url| nar_file(url).ok())
                    .is_some_and(|rel| urls.contains(rel)) =>
            {
                format!("its archive {archive:?} is not `../` and a NAR file that a narinfo of the cache names")
            }
            (_, Some(m)) if m != member => format!("its member {m:?} is not {member:?}, the file of its build id"),
            _ => continue,
        };
        findings.push(problem(shown, why));
    }
    findings.sort_by(|a, b| a.subject.cmp(&b.subject));
    findings
}

/// Reads and parses one narinfo; a problem names the store path when the
/// text has a `StorePath:` line, else the file, and comes with the text's
/// `URL:`, if any.
fn read_narinfo(cache: &CacheDir, name: &str, store_dir: &str) -> Result<NarInfo, (Finding, Option<String>)> {
    let file = cache.path().join(name);
    let text = cache
        .read_text(Path::new(name), MAX_NARINFO)
        .map_err(|e| (problem(file.display().to_string(), e.to_string()), None))?;
    let url = || text.lines().find_map(|l| l.strip_prefix("URL: ")).map(str::to_owned);
    let subject = || {
        let path = text.lines().find_map(|l| l.strip_prefix("StorePath: "));
        match path {
            Some(path) => format!("{path} ({name})"),
            None => file.display().to_string(),
        }
    };
    let info = NarInfo::parse(store_dir, &text).map_err(|e| (problem(subject(), e.to_string()), url()))?;
    let expected = format!("{}.narinfo", info.path.hash_part());
    if name != expected {
        return Err((problem(subject(), format!("its narinfo is named {name}, not {expected}")), url()));
    }
    Ok(info)
}

/// Reads the NAR file of `info`, checking its size and hash, decompresses it,
/// checks the NAR's size, hash and structure. Returns the NAR and file bytes
/// read.
fn check_nar(
    cache: &CacheDir,
    info: &NarInfo,
    listings: &HashSet<&str>,
    buf: &mut [u8],
    problems: &mut Vec<(Severity, String)>,
) -> (u64, u64) {
    let mut fail = |message: String| problems.push((Severity::Problem, message));
    let url = &info.url;
    let rel = match nar_file(url) {
        Ok(rel) => rel,
        Err(e) => {
            fail(e.to_string());
            return (0, 0);
        }
    };
    let file = match cache.open_file(rel) {
        Ok(file) => file,
        Err(OpenError::Missing(_)) => {
            fail(format!("its NAR file {url} is missing"));
            return (0, 0);
        }
        Err(e) => {
            fail(format!("its NAR file: {e}"));
            return (0, 0);
        }
    };

    let compression = info.compression;
    // A NAR listing, when there is one, is checked against the NAR as it is read.
    let ls_name = format!("{}.ls", info.path.hash_part());
    let listed = match read_cache::read_listing(cache, info, listings.contains(ls_name.as_str())) {
        Ok(listed) => listed,
        Err(e) => {
            fail(format!("its NAR listing: {e}"));
            None
        }
    };
    let listing = listed.is_some().then(|| Rc::new(RefCell::new(Listing::new())));
    let found = read_cache::examine(&file, info.file_size, compression, info.nar_size, listing.clone(), buf);
    let file_size = found.file_size;
    if let Err(e) = &found.read {
        fail(format!("reading {url}: {e}"));
        return (found.nar_size, file_size);
    }

    // Uncompressed, FileSize and NarSize (FileHash and NarHash) are the same
    // fact when the narinfo agrees with itself: said once.
    let same_size = compression == Compression::None && info.file_size == info.nar_size;
    let same_hash = compression == Compression::None && info.file_hash == info.nar_hash;
    if file_size != info.file_size {
        let field = if same_size { "FileSize and NarSize" } else { "FileSize" };
        fail(format!("{field}: the narinfo says {}, but {url} has {file_size} bytes", info.file_size));
    }
    if found.file_hash != info.file_hash {
        let field = if same_hash { "FileHash and NarHash" } else { "FileHash" };
        fail(format!("{field}: the narinfo says {}, but {url} has {}", info.file_hash, found.file_hash));
    }
    let nar_size = found.nar_size;
    if let Err(e) = &found.decoded {
        fail(format!("decompressing {url} ({compression}): {}", read_cache::decoding_error(e)));
        return (nar_size, file_size);
    }
    if found.too_long {
        fail(format!("NarSize: the narinfo says {}, but {url} decompresses to more", info.nar_size));
        return (nar_size, file_size);
    }
    if let Err(e) = &found.structure {
        // Read only up to the first bad byte: its size and hash say nothing.
        fail(format!("{url}: {e}"));
        return (nar_size, file_size);
    }
    if found.trailing > 0 {
        fail(format!("{url} has {} bytes after the end of its {compression} data", found.trailing));
    }
    if nar_size != info.nar_size && !(same_size && file_size != info.file_size) {
        fail(format!("NarSize: the narinfo says {}, but {url} decompresses to {nar_size} bytes", info.nar_size));
    }
    let nar_hash = found.nar_hash;
    if nar_hash != info.nar_hash && !(same_hash && found.file_hash != info.file_hash) {
        fail(format!("NarHash: the narinfo says {}, but the NAR in {url} has {nar_hash}", info.nar_hash));
    }
    if let (Some(listed), Some(listing)) = (listed, listing)
        && nar_hash == info.nar_hash
        && !read_cache::same_listing(&listed, &listing.borrow().json())
    {
        fail(format!("{ls_name} does not list the NAR in {url}"));
    }
    (nar_size, file_size)
}

/// Every reference must have a narinfo in the cache.
fn check_references(info: &NarInfo, present: &HashSet<&str>, problems: &mut Vec<(Severity, String)>) {
    for reference in &info.references {
        if !present.contains(reference.as_str()) {
            problems.push((
                Severity::Problem,
                format!("it references {reference}, which has no (valid) narinfo in the cache"),
            ));
        }
    }
}

/// A problem for each reference cycle among the narinfos (a path referring
/// to itself is no cycle): no store can hold one, and Nix refuses to copy
/// such a closure ("cycle detected").
fn reference_cycles(infos: &[NarInfo]) -> Vec<Finding> {
    use std::collections::HashMap;
    let index: HashMap<&str, usize> = infos.iter().enumerate().map(|(i, info)| (info.path.as_str(), i)).collect();
    let edges: Vec<Vec<usize>> = infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            info.references.iter().filter_map(|r| index.get(r.as_str()).copied()).filter(|&j| j != i).collect()
        })
        .collect();
    // 0: not seen, 1: on the current path, 2: done.
    let mut state = vec![0u8; infos.len()];
    let mut findings = Vec::new();
    for start in 0..infos.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let Some(&to) = edges[node].get(*next) else {
                state[node] = 2;
                stack.pop();
                continue;
            };
            *next += 1;
            match state[to] {
                0 => {
                    state[to] = 1;
                    stack.push((to, 0));
                }
                1 => {
                    let from = stack.iter().position(|&(n, _)| n == to).expect("on the path");
                    let cycle: Vec<&str> = stack[from..]
                        .iter()
                        .map(|&(n, _)| infos[n].path.as_str())
                        .chain([infos[to].path.as_str()])
                        .collect();
                    findings.push(problem(
                        infos[to].path.to_string(),
                        format!(
                            "its references form a cycle ({}); Nix refuses to copy such a closure",
                            cycle.join(" → ")
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    findings
}

/// With keys, one signature at least must verify under one of them, as Nix
/// requires with `require-sigs` (ValidPathInfo::checkSignatures).
fn check_signatures(info: &NarInfo, keys: &[PublicKey], problems: &mut Vec<(Severity, String)>) {
    if keys.is_empty() {
        return;
    }
    let fingerprint = info.fingerprint();
    let mut bad = Vec::new();
    let mut good = false;
    for sig in &info.signatures {
        match keys.iter().find(|k| k.name() == sig.key_name()) {
            Some(key) if key.verify(&fingerprint, sig) => good = true,
            Some(_) => bad.push(sig.key_name()),
            None => {}
        }
    }
    let bad_message = || {
        format!(
            "the signature by {} does not verify (NarHash, NarSize or references changed, or a forged Sig)",
            bad.join(", ")
        )
    };
    if good {
        if !bad.is_empty() {
            problems.push((Severity::Warning, bad_message()));
        }
        return;
    }
    let message = if !bad.is_empty() {
        bad_message()
    } else if info.signatures.is_empty() {
        "it has no signature".to_owned()
    } else {
        let names: Vec<&str> = info.signatures.iter().map(|s| s.key_name()).collect();
        format!("it has no signature by a given key, only by {}", names.join(", "))
    };
    problems.push((Severity::Problem, message));
}

/// Warnings for files in `nar/` that no narinfo names.
fn unnamed_nar_files(cache: &CacheDir, named: &BTreeSet<PathBuf>) -> Vec<Finding> {
    let entries = match cache.list(Path::new("nar")) {
        Ok(entries) => entries,
        Err(e) if e.is_missing() => return Vec::new(),
        Err(e) => return vec![problem(cache.path().join("nar").display().to_string(), e.to_string())],
    };
    let mut findings: Vec<Finding> = entries
        .into_iter()
        .map(|(name, _)| Path::new("nar").join(name))
        .filter(|rel| !named.contains(rel))
        .map(|rel| warning(cache.path().join(&rel).display().to_string(), "no narinfo names this file"))
        .collect();
    findings.sort_by(|a, b| a.subject.cmp(&b.subject));
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::key::SecretKey;
    use std::fs;

    const NARINFO: &str = "StorePath: /nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b\n\
        URL: nar/0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.nar\n\
        Compression: none\n\
        FileHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
        FileSize: 100\n\
        NarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
        NarSize: 100\n\
        References: q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a y2grnhdvfn46jk5m3g13m90yzbj9scgb-b\n";

    /// Generated with `nix-store --generate-binary-cache-key` for these tests.
    const SK: &str = "test-1:3IGrl1aQqG+eViR40XHS/wgwq0gLZKJZ+v8x+dl/sVnJRmaOSLc3m0y1SgPUGpXPDjMa3/8/TyTRFviCRGvN3w==";

    fn signed_by(keys: &[&SecretKey]) -> NarInfo {
        let mut info = NarInfo::parse("/nix/store", NARINFO).unwrap();
        let fp = info.fingerprint();
        info.signatures = keys.iter().map(|k| k.sign(&fp)).collect();
        info
    }

    fn sig_findings(info: &NarInfo, keys: &[PublicKey]) -> Vec<(Severity, String)> {
        let mut found = Vec::new();
        check_signatures(info, keys, &mut found);
        found
    }

    #[test]
    fn one_valid_signature_by_a_given_key_is_needed() {
        let sk: SecretKey = SK.parse().unwrap();
        let pk = sk.public_key();
        let just_pk = std::slice::from_ref(&pk);
        let other: PublicKey = "other-1:yUZmjki3N5tMtUoD1BqVzw4zGt//P08k0Rb4gkRrzd8=".parse().unwrap();
        let good = signed_by(&[&sk]);
        assert_eq!(sig_findings(&good, just_pk), []);
        assert_eq!(sig_findings(&good, &[other.clone(), pk.clone()]), []);
        assert_eq!(sig_findings(&signed_by(&[]), &[]), [], "no keys: nothing checked");

        let problem = |info: &NarInfo, keys: &[PublicKey]| {
            let found = sig_findings(info, keys);
            assert!(matches!(found.as_slice(), [(Severity::Problem, _)]), "{found:?}");
            found[0].1.clone()
        };
        assert_eq!(problem(&signed_by(&[]), just_pk), "it has no signature");
        assert_eq!(problem(&good, &[other]), "it has no signature by a given key, only by test-1");
        // The signature no longer covers what the narinfo says.
        let mut changed = good.clone();
        changed.nar_size += 1;
        assert!(problem(&changed, just_pk).starts_with("the signature by test-1 does not verify"));
        changed.references.pop();
        assert!(problem(&changed, just_pk).starts_with("the signature by test-1 does not verify"));
        // A bad signature beside a good one: Nix accepts the path, we warn.
        let mut both = good.clone();
        let fp = changed.fingerprint();
        both.signatures.push(sk.sign(&fp));
        let found = sig_findings(&both, &[pk]);
        assert!(matches!(found.as_slice(), [(Severity::Warning, m)] if m.contains("does not verify")), "{found:?}");
    }

    #[test]
    fn nix_cache_info_is_read_as_nix_reads_it() {
        let dir = std::env::temp_dir().join(format!("mbc-verify-cache-info-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let read = |text: &str| {
            fs::write(dir.join("nix-cache-info"), text).unwrap();
            read_cache_info(&CacheDir::open(&dir).unwrap()).map_err(|e| e.to_string())
        };
        let (store, findings) = read("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n").unwrap();
        assert_eq!((store.as_str(), findings.len()), ("/nix/store", 0));
        let (_, findings) = read("StoreDir:/gnu/store\nWantMassQuery: yes\nPriority: high\nColour: blue\n").unwrap();
        let shown: Vec<String> = findings.iter().map(|f| format!("{:?} {}", f.severity, f.message)).collect();
        assert_eq!(
            shown,
            [
                "Problem line 2: WantMassQuery must be 0 or 1, not \"yes\"",
                "Problem line 3: Priority must be a whole number, not \"high\"",
                "Warning line 4: unknown field \"Colour\", which Nix ignores",
            ]
        );
        assert!(read("Priority: 1\n").unwrap_err().contains("no StoreDir"));
        assert!(read("StoreDir: /nix/store/\n").unwrap_err().contains("normalised"));
        assert!(read("StoreDir: /a\nStoreDir: /a\n").unwrap_err().contains("StoreDir appears twice"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
