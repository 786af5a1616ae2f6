//! From the flags given ([`LowArgs`]) to a validated plan for one
//! subcommand: values parsed, files read, combinations checked, defaults
//! filled in, so that a mistake is reported before anything is written.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::lowargs::LowArgs;
use crate::commands::build::{Job, Note, Settings};
use crate::commands::{gc, merge, sign, verify};
use crate::compress::Compression;
use crate::format::key::{PublicKey, SecretKey};
use crate::input::{self, Attrs, nix};
use crate::resources;

/// `make-binary-cache [--out DIR] ...`, or the builder of a Nix build.
pub struct Build {
    pub job: Job,
    /// What fitting the job to the machine said, for the log.
    pub notes: Vec<Note>,
    pub quiet: bool,
    /// Run by Nix as a derivation's builder (no arguments at all).
    pub in_build: bool,
}

pub struct Sign {
    pub cache: PathBuf,
    pub out: Option<PathBuf>,
    pub key: SecretKey,
    pub sync: bool,
    pub jobs: usize,
    pub store_dir: String,
}

pub struct Verify {
    pub cache: PathBuf,
    pub options: verify::Options,
}

pub struct Merge {
    pub caches: Vec<PathBuf>,
    pub out: PathBuf,
    pub options: merge::Options,
}

pub struct Ls {
    pub cache: PathBuf,
    pub json: bool,
    pub jobs: usize,
}

pub struct Diff {
    pub old: PathBuf,
    pub new: PathBuf,
    pub json: bool,
    pub jobs: usize,
}

pub struct Gc {
    pub cache: PathBuf,
    pub options: gc::Options,
}

pub fn build(args: LowArgs, store_dir: String) -> Result<Build> {
    if args.is_empty() {
        return builder(store_dir);
    }
    let mut compression = args.value("compression").map(parse_compression).transpose()?;
    let mut level = args.value("compression-level").map(|v| number(v, "--compression-level", "9")).transpose()?;
    let jobs = args.value("jobs").map(jobs).transpose()?;
    let mut max_memory = args
        .value("max-memory")
        .map(|v| resources::parse_size(&utf8(v, "--max-memory")?).map_err(|e| anyhow!("--max-memory: {e}")))
        .transpose()?;
    let mut priority = args.value("priority").map(|v| number(v, "--priority", "30")).transpose()?;
    let mut want_mass_query = args.switch("want-mass-query").then_some(true);
    let mut write_nar_listing = args.switch("write-nar-listing");
    let mut index_debug_info = args.switch("index-debug-info");
    let mut reuse: Vec<PathBuf> = args.values("reuse").into_iter().map(PathBuf::from).collect();
    let paths: Vec<PathBuf> = args.values("PATH").into_iter().map(PathBuf::from).collect();

    let mut shard = None;
    let (closure, attrs_out) = match (args.value("attrs"), args.value("closure"), paths.is_empty()) {
        (Some(file), None, true) => {
            let attrs = read_attrs(Path::new(file), &store_dir)?;
            compression = compression.or(attrs.compression);
            level = level.or(attrs.compression_level);
            max_memory = max_memory.or(attrs.max_memory);
            priority = priority.or(attrs.priority);
            want_mass_query = want_mass_query.or(attrs.want_mass_query);
            write_nar_listing |= attrs.write_nar_listing;
            index_debug_info |= attrs.index_debug_info;
            shard = attrs.shard;
            reuse.splice(0..0, attrs.reuse);
            (attrs.closure, attrs.out)
        }
        (None, Some(file), true) => {
            let file = Path::new(file);
            let (json, name) = if file == Path::new("-") {
                (std::io::read_to_string(std::io::stdin()).context("reading --closure - from stdin")?, "stdin".into())
            } else {
                (read(file)?, file.display().to_string())
            };
            let closure = input::parse_path_info_json(&json, &store_dir).with_context(|| {
                format!("reading path infos from {name}, which must be what `nix path-info --json --recursive` prints")
            })?;
            (closure, None)
        }
        (None, None, false) => {
            let store_paths = paths.iter().map(|p| nix::resolve(p, &store_dir)).collect::<Result<Vec<_>>>()?;
            let json = nix::path_info_json(&store_paths)?;
            let closure = input::parse_path_info_json(&json, &store_dir)
                .context("reading the output of `nix path-info --json --recursive`")?;
            (closure, None)
        }
        (None, None, true) => bail!(
            "nothing to put in the cache: name store paths (make-binary-cache --out DIR ./result), or give \
             --closure FILE or --attrs FILE; see --help"
        ),
        _ => bail!("give one of store paths, --closure FILE or --attrs FILE, not several; see --help"),
    };
    let out = args
        .value("out")
        .map(PathBuf::from)
        .or(attrs_out)
        .ok_or_else(|| anyhow!("--out DIR is required; see --help"))?;
    let logs_from = args
        .switch("include-logs")
        .then(|| std::env::var_os("NIX_LOG_DIR").map_or_else(|| PathBuf::from("/nix/var/log/nix"), PathBuf::from));
    let settings = Settings {
        sync: !args.switch("no-sync"),
        logs_from,
        priority,
        want_mass_query,
        write_nar_listing,
        index_debug_info,
        ..settings(store_dir, compression, level)?
    };
    let mut job = Job::new(closure, out, settings).sharded(shard);
    job.partial = args.switch("partial");
    job.reuse = reuse;
    let notes = job.fit(jobs.unwrap_or_else(resources::system::cores), max_memory);
    Ok(Build { job, notes, quiet: args.switch("quiet"), in_build: false })
}

/// Builder mode: everything comes from the build environment.
fn builder(store_dir: String) -> Result<Build> {
    let build_top = std::env::var_os("NIX_BUILD_TOP");
    let attrs_env = std::env::var_os("NIX_ATTRS_JSON_FILE");
    if build_top.is_none() && attrs_env.is_none() {
        bail!(
            "nothing to put in the cache: name store paths (make-binary-cache --out DIR ./result), or give \
             --closure FILE or --attrs FILE; see --help (without arguments, make-binary-cache is a Nix \
             builder, but this is not a Nix build: there is no $NIX_ATTRS_JSON_FILE or $NIX_BUILD_TOP)"
        );
    }
    // Before Nix 2.15, $NIX_ATTRS_JSON_FILE named a path outside the sandbox,
    // while the file was always also at $NIX_BUILD_TOP/.attrs.json.
    let candidates: Vec<PathBuf> =
        attrs_env.map(PathBuf::from).into_iter().chain(build_top.map(|t| Path::new(&t).join(".attrs.json"))).collect();
    let attrs_file = candidates.iter().find(|p| p.exists()).ok_or_else(|| {
        let names: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        anyhow!("no structured attrs file at {}: the derivation must set __structuredAttrs = true", names.join(" or "))
    })?;
    let attrs = read_attrs(attrs_file, &store_dir)?;
    let out = attrs.out.ok_or_else(|| {
        anyhow!("{}: field `outputs.out` is missing: the derivation must have an `out` output", attrs_file.display())
    })?;
    let jobs = build_cores()?;
    let settings = Settings {
        // `out` is a store path only once Nix registers it, after we exit,
        // and whether it is on disk first is Nix's to decide, as for every
        // build output (see "Durability" in doc/architecture.md): waiting
        // for the disk here would only slow the build.
        sync: false,
        priority: attrs.priority,
        want_mass_query: attrs.want_mass_query,
        write_nar_listing: attrs.write_nar_listing,
        index_debug_info: attrs.index_debug_info,
        ..settings(store_dir, attrs.compression, attrs.compression_level)?
    };
    let mut job = Job::new(attrs.closure, out, settings).sharded(attrs.shard);
    job.reuse = attrs.reuse;
    let notes = job.fit(jobs, attrs.max_memory);
    Ok(Build { job, notes, quiet: false, in_build: true })
}

pub fn sign(args: LowArgs, store_dir: String) -> Result<Sign> {
    let key_file =
        args.value("secret-key-file").ok_or_else(|| anyhow!("--secret-key-file KEY is required; see sign --help"))?;
    let cache =
        args.value("CACHE").ok_or_else(|| anyhow!("the CACHE directory to sign is required; see sign --help"))?;
    Ok(Sign {
        key: sign::read_secret_key(Path::new(key_file))?,
        cache: cache.into(),
        out: args.value("out").map(PathBuf::from),
        sync: !args.switch("no-sync"),
        jobs: resources::system::cores(),
        store_dir,
    })
}

/// What a public key is, for the errors of --public-key and --public-key-file.
const PUBLIC_KEY: &str = "give the public key as in trusted-public-keys, the text of the PUB file that \
                          `nix-store --generate-binary-cache-key NAME KEY PUB` writes";

pub fn verify(args: LowArgs) -> Result<Verify> {
    let mut public_keys = Vec::new();
    for value in args.values("public-key") {
        let text = utf8(value, "--public-key")?;
        public_keys.push(text.parse::<PublicKey>().map_err(|e| {
            if Path::new(&text).is_file() {
                anyhow!("--public-key takes the key itself, and {text} is a file: use --public-key-file {text}")
            } else {
                anyhow!("--public-key: {e}; {PUBLIC_KEY}")
            }
        })?);
    }
    for file in args.values("public-key-file") {
        let file = Path::new(file);
        let text = read(file)?;
        public_keys.push(text.parse::<PublicKey>().map_err(|e| anyhow!("{}: {e}; {PUBLIC_KEY}", file.display()))?);
    }
    let cache =
        args.value("CACHE").ok_or_else(|| anyhow!("the CACHE directory to verify is required; see verify --help"))?;
    if args.switch("require-sigs") && public_keys.is_empty() {
        bail!("--require-sigs needs at least one --public-key or --public-key-file to check signatures with");
    }
    let jobs = args.value("jobs").map(jobs).transpose()?.unwrap_or_else(resources::system::cores);
    Ok(Verify { cache: cache.into(), options: verify::Options { public_keys, jobs } })
}

pub fn merge(args: LowArgs) -> Result<Merge> {
    let out = args.value("out").ok_or_else(|| anyhow!("--out DIR is required; see merge --help"))?;
    let caches: Vec<PathBuf> = args.values("CACHE").into_iter().map(PathBuf::from).collect();
    if caches.is_empty() {
        bail!("at least one CACHE to merge is required; see merge --help");
    }
    // In a build (mergeBinaryCaches), the cores Nix gives it.
    let jobs = match args.value("jobs") {
        Some(value) => jobs(value)?,
        None => build_cores()?,
    };
    let options = merge::Options { partial: args.switch("partial"), sync: !args.switch("no-sync"), jobs };
    Ok(Merge { caches, out: out.into(), options })
}

pub fn ls(args: LowArgs) -> Result<Ls> {
    let cache = args.value("CACHE").ok_or_else(|| anyhow!("the CACHE to list is required; see ls --help"))?;
    Ok(Ls { cache: cache.into(), json: args.switch("json"), jobs: jobs_or_cores(&args)? })
}

pub fn diff(args: LowArgs) -> Result<Diff> {
    let caches = args.values("CACHE");
    let [old, new] = caches.as_slice() else {
        bail!("diff takes two caches, OLD and NEW, not {}; see diff --help", caches.len());
    };
    Ok(Diff { old: old.into(), new: new.into(), json: args.switch("json"), jobs: jobs_or_cores(&args)? })
}

pub fn gc(args: LowArgs) -> Result<Gc> {
    let cache = args.value("CACHE").ok_or_else(|| anyhow!("the CACHE to collect is required; see gc --help"))?;
    let mut keep: Vec<PathBuf> = args.values("keep").into_iter().map(PathBuf::from).collect();
    for file in args.values("keep-file") {
        let file = Path::new(file);
        for line in read(file)?.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                keep.push(line.into());
            }
        }
    }
    if keep.is_empty() {
        bail!(
            "gc needs the store paths to keep (--keep PATH, --keep-file FILE): without them it would remove \
             everything; see gc --help"
        );
    }
    let wait = match args.value("wait") {
        Some(value) => number(value, "--wait", "600")?,
        None => 60,
    };
    let options = gc::Options {
        keep,
        dry_run: args.switch("dry-run"),
        wait: std::time::Duration::from_secs(wait),
        jobs: jobs_or_cores(&args)?,
    };
    Ok(Gc { cache: cache.into(), options })
}

/// `--jobs N`, else all cores.
fn jobs_or_cores(args: &LowArgs) -> Result<usize> {
    Ok(args.value("jobs").map(jobs).transpose()?.unwrap_or_else(resources::system::cores))
}

fn settings(store_dir: String, compression: Option<Compression>, level: Option<i32>) -> Result<Settings> {
    let compression = compression.unwrap_or(Compression::Zstd);
    if let Some(level) = level {
        compression.check_level(level).map_err(|e| anyhow!("compression level: {e}; see --help"))?;
    }
    // `jobs` and `max_memory` are set by `Job::fit`.
    Ok(Settings { compression_level: level, ..Settings::new(store_dir, compression) })
}

fn parse_compression(value: &OsString) -> Result<Compression> {
    utf8(value, "--compression")?.parse().map_err(|e| anyhow!("--compression: {e}"))
}

fn read_attrs(file: &Path, store_dir: &str) -> Result<Attrs> {
    Attrs::parse(&read(file)?, store_dir).with_context(|| format!("reading structured attrs from {}", file.display()))
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

fn utf8(value: &OsString, flag: &str) -> Result<String> {
    value.to_str().map(str::to_string).ok_or_else(|| anyhow!("{flag} {value:?} is not valid UTF-8"))
}

/// The workers a Nix build asks for: `$NIX_BUILD_CORES`, where 0 or unset
/// means all cores.
fn build_cores() -> Result<usize> {
    let Ok(cores) = std::env::var("NIX_BUILD_CORES") else { return Ok(resources::system::cores()) };
    match cores.trim().parse::<usize>() {
        Ok(0) => Ok(resources::system::cores()),
        Ok(n) => Ok(n),
        Err(_) => bail!("NIX_BUILD_CORES must be a number (0 for all cores), not {cores:?}"),
    }
}

/// The value of `flag`, a whole number; `example` for the message.
fn number<T: std::str::FromStr>(value: &OsString, flag: &str, example: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let text = value.to_string_lossy();
    text.parse().map_err(|e| anyhow!("{flag} {text:?}: {e}; give a whole number, e.g. {flag} {example}"))
}

/// `--jobs N`: at least 1.
fn jobs(value: &OsString) -> Result<usize> {
    match number(value, "--jobs", "4")? {
        0 => bail!("--jobs 0: give at least 1, or leave --jobs out to use all cores"),
        n => Ok(n),
    }
}
