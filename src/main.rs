use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use make_binary_cache::commands::build::{self, Settings};
use make_binary_cache::commands::{merge, sign, verify};
use make_binary_cache::compress::Compression;
use make_binary_cache::format::key::PublicKey;
use make_binary_cache::format::path_info::PathInfo;
use make_binary_cache::format::store_path::{self, StorePath};
use make_binary_cache::input::nix;
use make_binary_cache::input::shard::Shard;
use make_binary_cache::input::{self, Attrs};
use make_binary_cache::progress::{Mode, Progress};
use make_binary_cache::resources::{self, BudgetSource};
use make_binary_cache::text;

const HELP: &str = "\
make-binary-cache: write a flat-file Nix binary cache for a closure

Writes what `nix copy --to file://DIR` writes (nix-cache-info,
<hash>.narinfo, nar/<FileHash>.nar[.xz|.zst]) for the closure of some store
paths: a directory to copy to another machine, bind-mount into a container
or serve over HTTP, and use with `nix copy --from file://DIR` or
`--substituters file://DIR`. Every store path is serialised to a NAR by this
program, checked against the NarHash and NarSize Nix recorded, and
compressed; a path whose contents do not match fails the run, naming it.

USAGE:
    make-binary-cache --out DIR [OPTIONS] PATH...
        The closure of PATH...: store paths, files inside them, or symlinks
        to them such as nix-build's ./result. Finding the closure is the
        one thing Nix is asked: this runs
        `nix path-info --json --recursive PATH...`, so `nix` must be on the
        PATH (use --closure where it is not).

    make-binary-cache --closure FILE --out DIR [OPTIONS]
        The closure in FILE, the output of
        `nix path-info --json --recursive PATH...`, made here or on another
        machine; `--closure -` reads it from stdin.

    make-binary-cache --attrs FILE [--out DIR] [OPTIONS]
        The closure and settings in a structured-attrs file, as a builder
        receives it (for trying out a derivation's settings by hand).

    make-binary-cache
        As the builder of a derivation with __structuredAttrs = true and
        exportReferencesGraph.closure (what nix/default.nix makes): reads
        $NIX_ATTRS_JSON_FILE (or $NIX_BUILD_TOP/.attrs.json), writes to the
        `out` output, uses $NIX_BUILD_CORES workers (0: all cores), the
        `maxMemory` attribute as --max-memory and each of `reuse` as
        --reuse. With the attributes `shard` and `shards` (what
        mkBinaryCache's `shards` makes), writes only that shard's part of the
        closure (largest NARs first, each to the shard with the fewest NAR
        bytes so far), for `make-binary-cache merge`. Does not wait for the
        disk, as --no-sync: the output becomes a store path only when Nix
        registers it, and Nix decides whether build outputs are synced first.

    make-binary-cache sign --secret-key-file KEY [--out DEST] CACHE
        Sign the narinfos of a cache; see `make-binary-cache sign --help`.

    make-binary-cache verify [--public-key KEY]... CACHE
        Check every narinfo and NAR of a cache as a receiver would; see
        `make-binary-cache verify --help`.

    make-binary-cache merge --out DIR CACHE...
        Join caches (such as the shards of one closure) into a new one; see
        `make-binary-cache merge --help`.

    make-binary-cache help [sign|verify|merge]
        This text, or a subcommand's (the same as its --help).

WHAT TO PUT IN THE CACHE (one of):
    PATH...                   Store paths, or symlinks to them; see above.
    --closure FILE            The output of `nix path-info --json --recursive
                              PATH...`: the array of older Nix (2.8 here) or
                              the object keyed by store path of newer Nix.
                              `-` reads stdin.
    --attrs FILE              A structured-attrs JSON file with a `closure`
                              list. Its `outputs.out`, `compression`,
                              `compressionLevel`, `maxMemory`, `priority`,
                              `wantMassQuery`, `writeNarListing` and
                              `indexDebugInfo` and `reuse` are used unless
                              the options below override them (true ones and
                              --reuse add to them); `shard` and `shards` as
                              in a build.

    The closure must be whole: a reference that is neither in it nor
    already in DIR is an error, unless --partial.

WHERE AND HOW:
    --out DIR                 Where to write the cache; created if missing.
                              An existing cache is added to (runs may even
                              write into one DIR at the same time).
    --compression NAME        none, xz or zstd [default: zstd]. xz is the
                              smallest and slowest; none is byte for byte
                              what `nix copy --to 'file://DIR?compression=none'`
                              writes.
    --compression-level N     The compressor's level [default: its own:
                              xz 6 (0-9), zstd 3 (1-22)].
    --jobs N                  Worker threads [default: all cores]; never more
                              than the cores this process may use. The cache
                              is byte-identical whatever N is.
    --max-memory SIZE         Memory the compressors may use together; fewer
                              workers or compressor threads run to stay within
                              it. SIZE is bytes, or a number (fractions allowed)
                              with K, M, G or T, optionally followed by B or iB,
                              all powers of 1024: 512M, 1G, 1.5GiB.
                              [default: half the smaller of the cgroup's memory
                              limit and MemAvailable]. A store path that alone
                              needs more (xz -9 takes ~1 GiB a thread on large
                              NARs) is compressed alone with one thread.
    --partial                 Allow store paths whose references are neither
                              in the closure nor already in the cache: for an
                              overlay cache used together with another
                              substituter that has them. Without it, such a
                              closure is an error and nothing is written.
    --no-sync                 Do not wait for the disk: faster, but after a
                              power cut narinfos may point at lost NARs. For
                              throwaway caches. [default: a narinfo is named
                              only once its NAR is on disk, and the run ends
                              with everything on disk]

OPTIONAL FILES (as `nix copy` writes them when asked):
    --priority N              Write `Priority: N` to nix-cache-info: Nix
                              tries substituters in increasing priority
                              (0 when a cache names none; cache.nixos.org
                              has 40). An existing cache must already say
                              the same.
    --want-mass-query         Write `WantMassQuery: 1` to nix-cache-info, so
                              that Nix may query the cache for many paths at
                              once. An existing cache must already say so.
    --write-nar-listing       Also write <hash part>.ls, the JSON listing of
                              each NAR (what `nix copy --to
                              'file://DIR?write-nar-listing=true'` writes),
                              for tools that browse a cache without fetching
                              NARs (Nix 2.8 itself reads listings only from
                              its local-nar-cache).
    --index-debug-info        Also write debuginfo/<build id>.debug for each
                              lib/debug/.build-id/<xx>/<38 hex>.debug file in
                              the NARs (what index-debug-info=true writes),
                              for dwarffs; an existing entry is kept.

EARLIER CACHES:
    --reuse DIR               An earlier cache (ours, e.g. last night's) whose
                              compressed NARs may be copied instead of
                              compressing again; may be repeated (the first
                              that has a path wins). Only where DIR's
                              make-binary-cache.json matches this run's
                              settings (else the log says which field differs
                              and everything is compressed afresh), and only
                              for a narinfo of the same store path, NarHash
                              and NarSize. Store paths are still read and
                              checked; the copy is checked against the
                              narinfo's FileSize and FileHash, and a mismatch
                              (a damaged DIR) fails the run. The cache is
                              byte-identical to one written without --reuse.

OUTPUT:
    -q, --quiet               Print no progress: no bar, no per-path lines, no
                              totals. Errors and warnings still print.
    -h, --help                Print this help.
    -V, --version             Print the version.

    Progress goes to stderr. On a terminal, a progress bar: NAR bytes and
    store paths done of the total, throughput, time left, and the largest
    path in flight. Elsewhere (a build log, a pipe, a file), a line per store
    path written, and every 10 s a line for each path still being compressed
    (`compressing /nix/store/...-foo: 120 of 281 MiB`). The cache written is
    the same whatever is shown.

    The exit status is 0 when every store path is in the cache, and non-zero
    after an error naming the path, file or option and what to do; a failed
    path leaves no narinfo behind, and each option may be given once.

ENVIRONMENT:
    NIX_STORE                 The store directory [default: /nix/store].

EXAMPLES:
    Cache a build's closure, then prove that Nix substitutes from it into an
    empty store (Debian's Nix 2.8 needs
    `--extra-experimental-features nix-command` on `nix copy`):

        nix-build '<nixpkgs>' -A hello
        make-binary-cache --out ./cache --compression xz ./result
        nix copy --no-require-sigs --from file://$PWD/cache \\
            --to /tmp/store ./result
        nix-store --store /tmp/store --verify --check-contents

    The closure found on one machine, the cache written on another:

        nix path-info --json --recursive ./result > closure.json
        make-binary-cache --closure closure.json --out ./cache

    Sign it for use with require-sigs:

        nix-store --generate-binary-cache-key cache-1 sk.key pk.pub
        make-binary-cache sign --secret-key-file sk.key ./cache
";

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make-binary-cache: error: {e}");
            let mut said = e.to_string();
            for cause in e.chain().skip(1) {
                // Some errors repeat their source in their own text.
                let text = cause.to_string();
                if !said.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                said = text;
            }
            ExitCode::FAILURE
        }
    }
}

const SIGN_HELP: &str = "\
make-binary-cache sign: sign the narinfos of a binary cache

Adds a `Sig:` line to every <hash>.narinfo of CACHE, made with the secret key
in KEY, so that Nix accepts the cache with `require-sigs = true` when the
matching public key is in `trusted-public-keys`. Any flat-file cache can be
signed: one written by make-binary-cache or mkBinaryCache, or by
`nix copy --to file://DIR`.

Nothing is signed unchecked: every narinfo must parse, be named after its
store path, and its NAR file must exist with the narinfo's FileSize and
FileHash. If any of them fails, no narinfo is written (CACHE is left as it
was; DEST may hold copied NAR files, but no narinfo naming them).

Signatures already there are kept, except one by a key of the same name,
which is replaced. Signing again with the same key changes nothing.

USAGE:
    make-binary-cache sign --secret-key-file KEY [--out DEST] [--no-sync] CACHE

OPTIONS:
    --secret-key-file KEY     A secret key file, as written by
                              `nix-store --generate-binary-cache-key NAME KEY PUB`
                              (the same file Nix's `secret-key-files` takes).
    --out DEST                Write a signed copy of CACHE to DEST instead of
                              signing CACHE in place: the NAR files and every
                              other file are copied, the narinfos signed.
                              DEST is created if missing; if it exists and is
                              not empty it must be a cache of the same store
                              directory. Needed when CACHE is read-only, e.g.
                              the store path mkBinaryCache builds (a cache in
                              the Nix store is never changed in place).
    --no-sync                 Do not wait for the disk: faster, but after a
                              power cut a narinfo may name a NAR whose copy
                              was lost. [default: copied NARs and new
                              narinfos are on disk before a narinfo is named]
    -h, --help                Print this help.

Without --out, each narinfo is replaced atomically in CACHE, which must be
writable and outside the Nix store.

ENVIRONMENT:
    NIX_STORE                 The store directory, if CACHE's nix-cache-info
                              names none [default: /nix/store].

EXAMPLE:
    nix-store --generate-binary-cache-key cache.example.org-1 sk.key pk.pub
    make-binary-cache sign --secret-key-file sk.key --out ./signed \\
        $(nix-build -A myBinaryCache)
    nix copy --from file://$PWD/signed \\
        --option trusted-public-keys \"$(cat pk.pub)\" ./result
";

/// `make-binary-cache sign ...`: parses its arguments and runs [`make_binary_cache::commands::sign`].
fn sign_main(args: Vec<OsString>, store_dir: &str) -> Result<()> {
    use lexopt::prelude::*;

    let (mut key_file, mut out, mut cache) = (None::<PathBuf>, None::<PathBuf>, None::<PathBuf>);
    let mut no_sync = None::<()>;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("secret-key-file") => {
                set_once(&mut key_file, "--secret-key-file", non_empty(parser.value()?, "--secret-key-file")?)?
            }
            Long("out") => set_once(&mut out, "--out", non_empty(parser.value()?, "--out")?)?,
            Long("no-sync") => set_once(&mut no_sync, "--no-sync", ())?,
            Value(value) => {
                if cache.is_some() {
                    bail!("sign takes one CACHE directory; see sign --help");
                }
                cache = Some(non_empty(value, "CACHE")?);
            }
            Short('h') | Long("help") => {
                print!("{SIGN_HELP}");
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let key_file = key_file.ok_or_else(|| anyhow!("--secret-key-file KEY is required; see sign --help"))?;
    let cache = cache.ok_or_else(|| anyhow!("the CACHE directory to sign is required; see sign --help"))?;
    let key = sign::read_secret_key(&key_file)?;
    let summary = sign::sign_cache(&cache, out.as_deref(), &key, all_cores(), store_dir, no_sync.is_none())?;
    let dest = out.as_deref().unwrap_or(&cache);
    eprintln!("make-binary-cache: signed {} with key {}: {summary}", dest.display(), key.name());
    Ok(())
}

const VERIFY_HELP: &str = "\
make-binary-cache verify: check a flat-file binary cache before trusting it

Checks every <hash>.narinfo of CACHE, whoever wrote the cache (make-binary-cache,
mkBinaryCache, `nix copy --to file://DIR`). Nix itself never checks FileHash
or FileSize, and `nix store verify` checks store paths, not a cache. For
every narinfo:

  - it parses, with only the fields Nix writes, for the store directory
    named by the cache's nix-cache-info (which must name one), and is named
    <hash part of its StorePath>.narinfo;
  - its URL names a file inside the cache (relative, no `..`), with the
    narinfo's FileSize and FileHash;
  - that file decompresses (none, xz, zstd) to exactly NarSize bytes with
    the NarHash, and those bytes are a well-formed NAR: every token and its
    padding, entry names and their order, symlink targets, nothing trailing;
  - every store path it references has a narinfo in the cache;
  - its NAR listing <hash part>.ls, if there is one, lists that NAR (byte
    for byte as Nix 2.8 writes it, or the same JSON for other writers);
  - with --public-key: at least one of its signatures verifies under one of
    the keys given.

Files in nar/ that no narinfo names, and other unknown files, are warnings
(make-binary-cache.json, the manifest our caches carry, is known: a warning
only if it does not parse).
A compression other than none, xz and zstd (bzip2, br, ...) is a problem: it
cannot be checked. Content-addressed paths need a signature like any other
when keys are given (Nix accepts them unsigned if their CA matches the store
path, which is not checked here).

Every problem is printed with its store path, then a summary line; the exit
status is non-zero if there was any problem. Store paths are checked in
parallel, in bounded memory.

USAGE:
    make-binary-cache verify [OPTIONS] CACHE

OPTIONS:
    --public-key KEY          A public key, as in Nix's trusted-public-keys:
                              <name>:<base64 of 32 bytes> (what
                              `nix-store --generate-binary-cache-key` writes
                              to its public key file). May be repeated: a
                              signature by any of them will do.
    --public-key-file FILE    A file holding one such key. May be repeated.
    --require-sigs            Insist on signatures. They are required as soon
                              as a key is given, so this only makes that
                              explicit; without a key it is an error, as
                              there would be nothing to check them with.
    --jobs N                  Worker threads [default: all cores]; never more
                              than the cores this process may use.
    -h, --help                Print this help.

EXAMPLE:
    make-binary-cache verify --public-key \"$(cat pk.pub)\" ./cache
";

/// What a public key is, for the errors of --public-key and --public-key-file.
const PUBLIC_KEY: &str = "give the public key as in trusted-public-keys, the text of the PUB file that \
                          `nix-store --generate-binary-cache-key NAME KEY PUB` writes";

/// `make-binary-cache verify ...`: parses its arguments, runs
/// [`make_binary_cache::commands::verify`] and prints what it finds.
fn verify_main(args: Vec<OsString>) -> Result<()> {
    use lexopt::prelude::*;

    let (mut cache, mut jobs, mut require_sigs) = (None::<PathBuf>, None::<usize>, None::<()>);
    let mut public_keys = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("public-key") => {
                let text = parser.value()?.string()?;
                let parsed = text.parse::<PublicKey>().map_err(|e| {
                    if Path::new(&text).is_file() {
                        anyhow!("--public-key takes the key itself, and {text} is a file: use --public-key-file {text}")
                    } else {
                        anyhow!("--public-key: {e}; {PUBLIC_KEY}")
                    }
                })?;
                public_keys.push(parsed);
            }
            Long("public-key-file") => {
                let file = non_empty(parser.value()?, "--public-key-file")?;
                let text = read(&file)?;
                public_keys
                    .push(text.parse::<PublicKey>().map_err(|e| anyhow!("{}: {e}; {PUBLIC_KEY}", file.display()))?);
            }
            Long("require-sigs") => set_once(&mut require_sigs, "--require-sigs", ())?,
            Long("jobs") => set_once(&mut jobs, "--jobs", jobs_value(&mut parser)?)?,
            Value(value) => {
                if cache.is_some() {
                    bail!("verify takes one CACHE directory; see verify --help");
                }
                cache = Some(non_empty(value, "CACHE")?);
            }
            Short('h') | Long("help") => {
                print!("{VERIFY_HELP}");
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let cache = cache.ok_or_else(|| anyhow!("the CACHE directory to verify is required; see verify --help"))?;
    if require_sigs.is_some() && public_keys.is_empty() {
        bail!("--require-sigs needs at least one --public-key or --public-key-file to check signatures with");
    }
    let options = verify::Options { public_keys, jobs: jobs.unwrap_or_else(all_cores) };
    let summary = verify::verify_cache(&cache, &options, |findings| {
        // One write for all of a path's findings, so that workers do not interleave.
        let text: String = findings.iter().map(|f| format!("{f}\n")).collect();
        let _ = std::io::stderr().write_all(text.as_bytes());
    })
    .with_context(|| format!("verifying {}", cache.display()))?;
    eprintln!("make-binary-cache: verify {}: {summary}", cache.display());
    if summary.problems > 0 {
        const SIGN: &str = "sign it with `make-binary-cache sign --secret-key-file KEY`, or give the public key that \
                            signed it (--public-key, --public-key-file; on the receiving side, trusted-public-keys)";
        let others = summary.problems - summary.signature_problems;
        if others == 0 {
            bail!("{}: {} (see above); {SIGN}", cache.display(), text::count(summary.problems, "signature problem"));
        }
        let signatures = match summary.signature_problems {
            0 => String::new(),
            n => format!("; for the {}, {SIGN}", text::count(n, "signature problem")),
        };
        bail!(
            "{} is not a valid binary cache: {} (see above); rebuild it, or copy it again from where it came \
             from{signatures}",
            cache.display(),
            text::count(others, "problem")
        );
    }
    Ok(())
}

const MERGE_HELP: &str = "\
make-binary-cache merge: join binary caches into a new one

Writes to DIR one cache holding every store path of the CACHEs: the caches
of the shards of one closure (what mkBinaryCache's `shards` builds), or any
caches of ours or of `nix copy`. The CACHEs are only read; they may be
store paths.

Nothing is taken unchecked: every narinfo must parse, be named after its
store path and name a NAR file inside its cache; every NAR file is copied
(with copy_file_range, so reflinked where the file system can) and the copy
must have the narinfo's FileSize and FileHash before it is named. A store
path in several CACHEs must have byte-identical narinfos and NARs there,
else the error names it and both CACHEs. The CACHEs' nix-cache-info must
agree on StoreDir, WantMassQuery and Priority. The merged cache must be
closed: every reference of every narinfo has a narinfo (see --partial).

NAR listings (<hash>.ls), the debug info index (debuginfo/; for a build id
in several CACHEs the first CACHE's entry is kept) and other files are
copied too; a file in several CACHEs must be the same. The manifest
make-binary-cache.json is copied only when every CACHE has the same one.
NAR files no narinfo names and temporary files of killed runs are not
copied (the log says how many).

Merging the shards of a closure gives the very cache, byte for byte, that
one build of the whole closure with the same settings gives.

USAGE:
    make-binary-cache merge --out DIR [--partial] [--no-sync] [--jobs N] CACHE...

OPTIONS:
    --out DIR                 Where to write the merged cache: a missing or
                              empty directory.
    --partial                 Allow references that no CACHE has: for an
                              overlay cache used together with another
                              substituter that has them.
    --no-sync                 Do not wait for the disk: faster, but after a
                              power cut narinfos may point at lost NARs.
                              [default: NARs are on disk before the narinfos
                              naming them are named]
    --jobs N                  Workers copying and checking NAR files
                              [default: $NIX_BUILD_CORES in a build, else
                              all cores].
    -h, --help                Print this help.

EXAMPLE:
    make-binary-cache merge --out ./cache ./result-shard-0 ./result-shard-1
    make-binary-cache verify ./cache
";

/// `make-binary-cache merge ...`: parses its arguments and runs [`make_binary_cache::commands::merge`].
fn merge_main(args: Vec<OsString>) -> Result<()> {
    use lexopt::prelude::*;

    let (mut out, mut partial, mut no_sync, mut jobs) = (None::<PathBuf>, None::<()>, None::<()>, None::<usize>);
    let mut caches = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("out") => set_once(&mut out, "--out", non_empty(parser.value()?, "--out")?)?,
            Long("partial") => set_once(&mut partial, "--partial", ())?,
            Long("no-sync") => set_once(&mut no_sync, "--no-sync", ())?,
            Long("jobs") => set_once(&mut jobs, "--jobs", jobs_value(&mut parser)?)?,
            Value(value) => caches.push(non_empty(value, "CACHE")?),
            Short('h') | Long("help") => {
                print!("{MERGE_HELP}");
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let out = out.ok_or_else(|| anyhow!("--out DIR is required; see merge --help"))?;
    if caches.is_empty() {
        bail!("at least one CACHE to merge is required; see merge --help");
    }
    // In a build (mergeBinaryCaches), the cores Nix gives it.
    let jobs = match jobs {
        Some(n) => n,
        None => build_cores()?,
    };
    let options = merge::Options { partial: partial.is_some(), sync: no_sync.is_none(), jobs };
    eprintln!("make-binary-cache: merging {} into {}", text::count(caches.len(), "cache"), out.display());
    let summary = merge::merge_caches(&caches, &out, &options, |line| {
        let _ = std::io::stderr().write_all(format!("make-binary-cache: {line}\n").as_bytes());
    })
    .with_context(|| format!("merging into {}", out.display()))?;
    eprintln!("make-binary-cache: merged into {}: {summary}", out.display());
    Ok(())
}

/// Everything a run needs, whichever mode it came from.
struct Job {
    closure: Vec<PathInfo>,
    out: PathBuf,
    settings: Settings,
    /// Where the memory budget came from, for the log.
    memory_note: String,
    /// --partial: references may be missing from the closure and the cache.
    partial: bool,
    /// --quiet: no progress, no per-path lines, no totals.
    quiet: bool,
    /// With a shard: which, and the store paths of the closure the other
    /// shards write (present as far as completeness goes).
    shard: Option<(Shard, BTreeSet<StorePath>)>,
    /// --reuse: earlier caches, opened once the settings are known.
    reuse: Vec<PathBuf>,
}

impl Job {
    /// Keeps only `shard`'s part of the closure, when there is a shard.
    fn sharded(mut self, shard: Option<Shard>) -> Self {
        if let Some(shard) = shard {
            let part = make_binary_cache::input::shard::part(std::mem::take(&mut self.closure), shard, |info| {
                (&info.path, info.nar_size)
            });
            self.closure = part.paths;
            self.shard = Some((shard, part.elsewhere));
        }
        self
    }
}

fn try_main() -> Result<()> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let store_dir = store_dir()?;
    if args.first().is_some_and(|a| a == "sign") {
        return sign_main(args.into_iter().skip(1).collect(), &store_dir).map_err(|e| usage(e, "sign --help"));
    }
    if args.first().is_some_and(|a| a == "verify") {
        return verify_main(args.into_iter().skip(1).collect()).map_err(|e| usage(e, "verify --help"));
    }
    if args.first().is_some_and(|a| a == "merge") {
        return merge_main(args.into_iter().skip(1).collect()).map_err(|e| usage(e, "merge --help"));
    }
    if args.first().is_some_and(|a| a == "help") {
        let text = match args.get(1).and_then(|a| a.to_str()) {
            None => HELP,
            Some("sign") => SIGN_HELP,
            Some("verify") => VERIFY_HELP,
            Some("merge") => MERGE_HELP,
            Some(other) => {
                bail!("help {other}: there is no such subcommand; the subcommands are sign, verify and merge")
            }
        };
        print!("{text}");
        return Ok(());
    }
    // A word that is no option, no subcommand and no path that exists: a
    // mistyped or unknown subcommand, not a store path to look for.
    if let Some(first) = args.first().and_then(|a| a.to_str())
        && !first.starts_with('-')
        && !first.contains('/')
        && !Path::new(first).exists()
    {
        bail!(
            "{first} is neither a subcommand (sign, verify, merge, help) nor a path that exists; see \
             `make-binary-cache help`"
        );
    }
    let in_build = args.is_empty();
    let mut job = if in_build {
        builder_job(store_dir)?
    } else {
        match cli_job(args, store_dir).map_err(|e| usage(e, "--help"))? {
            Some(job) => job,
            None => return Ok(()),
        }
    };

    if !job.partial {
        let elsewhere = |path: &StorePath| job.shard.as_ref().is_some_and(|(_, others)| others.contains(path));
        input::check_complete(&job.closure, |path| elsewhere(path) || build::has_narinfo(&job.out, path))
            .with_context(|| format!("writing to {}", job.out.display()))?;
    }
    let (earlier, notes) = build::EarlierCaches::open(&job.reuse, &job.settings.manifest(), &job.settings.store_dir)?;
    for note in notes {
        eprintln!("make-binary-cache: {note}");
    }
    job.settings.reuse = earlier;
    let settings = &job.settings;
    if !job.quiet {
        let shard = match &job.shard {
            Some((shard, others)) => {
                format!(" ({shard}; {} in the other shards)", text::count(others.len(), "store path"))
            }
            None => String::new(),
        };
        eprintln!(
            "make-binary-cache: writing {}{shard} to {} ({} compression, {}, {})",
            text::count(job.closure.len(), "store path"),
            job.out.display(),
            settings.compression,
            text::count(settings.jobs, "worker"),
            job.memory_note
        );
    }
    let compressed = settings.compression != Compression::None;
    let summary = Progress::run(Mode::for_stderr(job.quiet, in_build), settings.jobs, compressed, |progress| {
        build::write_cache(&job.closure, &job.out, settings, progress)
    })?;
    if !job.quiet {
        for note in &summary.notes {
            eprintln!("make-binary-cache: {note}");
        }
        eprintln!("make-binary-cache: done: {summary}");
    }
    Ok(())
}

/// Builder mode: everything comes from the build environment.
fn builder_job(store_dir: String) -> Result<Job> {
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
        // build output (see "Durability" in `cache`): waiting for the disk
        // here would only slow the build.
        sync: false,
        priority: attrs.priority,
        want_mass_query: attrs.want_mass_query,
        write_nar_listing: attrs.write_nar_listing,
        index_debug_info: attrs.index_debug_info,
        ..settings(store_dir, attrs.compression, attrs.compression_level)?
    };
    let job = Job {
        closure: attrs.closure,
        out,
        settings,
        memory_note: String::new(),
        partial: false,
        quiet: false,
        shard: None,
        reuse: attrs.reuse,
    };
    Ok(bounded(job.sharded(attrs.shard), jobs, attrs.max_memory))
}

/// CLI mode; `None` when the arguments asked for --help or --version.
fn cli_job(args: Vec<OsString>, store_dir: String) -> Result<Option<Job>> {
    use lexopt::prelude::*;

    let (mut attrs_file, mut closure_file, mut out) = (None::<PathBuf>, None::<PathBuf>, None::<PathBuf>);
    let (mut compression, mut level, mut jobs) = (None::<Compression>, None::<i32>, None::<usize>);
    let mut max_memory = None::<u64>;
    let mut partial = None::<()>;
    let (mut no_sync, mut quiet) = (None::<()>, None::<()>);
    let (mut priority, mut want_mass_query) = (None::<i32>, None::<bool>);
    let (mut write_nar_listing, mut index_debug_info) = (None::<()>, None::<()>);
    let mut paths = Vec::<PathBuf>::new();
    let mut reuse = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("attrs") => set_once(&mut attrs_file, "--attrs", non_empty(parser.value()?, "--attrs")?)?,
            Long("closure") => set_once(&mut closure_file, "--closure", non_empty(parser.value()?, "--closure")?)?,
            Long("out") => set_once(&mut out, "--out", non_empty(parser.value()?, "--out")?)?,
            Long("compression") => {
                let value = parser.value()?.string()?.parse().map_err(|e: String| anyhow!("--compression: {e}"))?;
                set_once(&mut compression, "--compression", value)?
            }
            Long("compression-level") => {
                set_once(&mut level, "--compression-level", number(&mut parser, "--compression-level", "9")?)?
            }
            Long("jobs") => set_once(&mut jobs, "--jobs", jobs_value(&mut parser)?)?,
            Long("max-memory") => {
                let size =
                    resources::parse_size(&parser.value()?.string()?).map_err(|e| anyhow!("--max-memory: {e}"))?;
                set_once(&mut max_memory, "--max-memory", size)?
            }
            Long("partial") => set_once(&mut partial, "--partial", ())?,
            Long("no-sync") => set_once(&mut no_sync, "--no-sync", ())?,
            Short('q') | Long("quiet") => set_once(&mut quiet, "--quiet", ())?,
            Long("priority") => set_once(&mut priority, "--priority", number(&mut parser, "--priority", "30")?)?,
            Long("want-mass-query") => set_once(&mut want_mass_query, "--want-mass-query", true)?,
            Long("write-nar-listing") => set_once(&mut write_nar_listing, "--write-nar-listing", ())?,
            Long("index-debug-info") => set_once(&mut index_debug_info, "--index-debug-info", ())?,
            // Repeatable: several earlier caches may each hold some paths.
            Long("reuse") => reuse.push(non_empty(parser.value()?, "--reuse")?),
            Value(path) => paths.push(non_empty(path, "PATH")?),
            Short('h') | Long("help") => {
                print!("{HELP}");
                return Ok(None);
            }
            Short('V') | Long("version") => {
                println!("make-binary-cache {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }

    let mut shard = None;
    let (closure, attrs_out) = match (attrs_file, closure_file, paths.is_empty()) {
        (Some(file), None, true) => {
            let attrs = read_attrs(&file, &store_dir)?;
            compression = compression.or(attrs.compression);
            level = level.or(attrs.compression_level);
            max_memory = max_memory.or(attrs.max_memory);
            priority = priority.or(attrs.priority);
            want_mass_query = want_mass_query.or(attrs.want_mass_query);
            if attrs.write_nar_listing {
                write_nar_listing = Some(());
            }
            if attrs.index_debug_info {
                index_debug_info = Some(());
            }
            shard = attrs.shard;
            reuse.splice(0..0, attrs.reuse);
            (attrs.closure, attrs.out)
        }
        (None, Some(file), true) => {
            let (json, name) = if file == Path::new("-") {
                (std::io::read_to_string(std::io::stdin()).context("reading --closure - from stdin")?, "stdin".into())
            } else {
                (read(&file)?, file.display().to_string())
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
    let out = out.or(attrs_out).ok_or_else(|| anyhow!("--out DIR is required; see --help"))?;
    let settings = Settings {
        sync: no_sync.is_none(),
        priority,
        want_mass_query,
        write_nar_listing: write_nar_listing.is_some(),
        index_debug_info: index_debug_info.is_some(),
        ..settings(store_dir, compression, level)?
    };
    let job = Job {
        closure,
        out,
        settings,
        memory_note: String::new(),
        partial: partial.is_some(),
        quiet: quiet.is_some(),
        shard: None,
        reuse,
    };
    Ok(Some(bounded(job.sharded(shard), jobs.unwrap_or_else(all_cores), max_memory)))
}

/// Fits the workers asked for into the cores and the memory budget, saying
/// in the log what was cut and why.
fn bounded(mut job: Job, requested: usize, max_memory: Option<u64>) -> Job {
    let budget = match max_memory {
        Some(bytes) => Some((bytes, BudgetSource::Given)),
        None => resources::system::default_budget(),
    };
    let (compression, level) = (job.settings.compression, job.settings.compression_level);
    let sizes: Vec<u64> = job.closure.iter().map(|info| info.nar_size).collect();
    let cores = resources::system::cores();
    let plan = resources::plan(requested, cores, budget.map(|(bytes, _)| bytes), &sizes, |size, threads| {
        resources::path_need(compression, level, size, threads)
    });
    if let Some(requested) = plan.capped_from.filter(|_| !job.quiet) {
        let available = if cores == 1 { "only 1 core is".to_string() } else { format!("only {cores} cores are") };
        eprintln!("make-binary-cache: {requested} workers asked for, but {available} available: using {cores}");
    }
    if let (Some(need), Some((bytes, _))) = (plan.over_budget, budget) {
        eprintln!(
            "make-binary-cache: warning: the largest store path needs {} to compress with {compression}, more than \
             the memory budget of {}: such paths are compressed alone, with one thread (see --max-memory)",
            text::human(need),
            text::human(bytes)
        );
    }
    job.settings.jobs = plan.workers;
    job.settings.max_memory = budget.map(|(bytes, _)| bytes);
    job.memory_note = match budget {
        Some((bytes, source)) => format!("memory budget {} ({source})", text::human(bytes)),
        None => "no memory budget".into(),
    };
    job
}

fn settings(store_dir: String, compression: Option<Compression>, level: Option<i32>) -> Result<Settings> {
    let compression = compression.unwrap_or(Compression::Zstd);
    if let Some(level) = level {
        compression.check_level(level).map_err(|e| anyhow!("compression level: {e}; see --help"))?;
    }
    // `jobs` and `max_memory` are set by `bounded`.
    Ok(Settings { compression_level: level, ..Settings::new(store_dir, compression) })
}

/// `$NIX_STORE`, checked: it is written into every narinfo and `nix-cache-info`.
fn store_dir() -> Result<String> {
    let Some(value) = std::env::var_os("NIX_STORE") else {
        return Ok("/nix/store".into());
    };
    let dir = value.into_string().map_err(|v| anyhow!("NIX_STORE={v:?} is not valid UTF-8"))?;
    store_path::check_store_dir(&dir)
        .map_err(|why| anyhow!("NIX_STORE={dir:?} is not a valid store directory: {why}; unset it for /nix/store"))?;
    Ok(dir)
}

fn read_attrs(file: &Path, store_dir: &str) -> Result<Attrs> {
    Attrs::parse(&read(file)?, store_dir).with_context(|| format!("reading structured attrs from {}", file.display()))
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

fn all_cores() -> usize {
    resources::system::cores()
}

/// The workers a Nix build asks for: `$NIX_BUILD_CORES`, where 0 or unset
/// means all cores.
fn build_cores() -> Result<usize> {
    let Ok(cores) = std::env::var("NIX_BUILD_CORES") else { return Ok(all_cores()) };
    match cores.trim().parse::<usize>() {
        Ok(0) => Ok(all_cores()),
        Ok(n) => Ok(n),
        Err(_) => bail!("NIX_BUILD_CORES must be a number (0 for all cores), not {cores:?}"),
    }
}

/// The value of `flag`, a whole number; `example` for the message.
fn number<T: std::str::FromStr>(parser: &mut lexopt::Parser, flag: &str, example: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let value = parser.value()?;
    let text = value.to_string_lossy();
    text.parse().map_err(|e| anyhow!("{flag} {text:?}: {e}; give a whole number, e.g. {flag} {example}"))
}

/// `--jobs N`: at least 1.
fn jobs_value(parser: &mut lexopt::Parser) -> Result<usize> {
    match number(parser, "--jobs", "4")? {
        0 => bail!("--jobs 0: give at least 1, or leave --jobs out to use all cores"),
        n => Ok(n),
    }
}

/// A command-line mistake found by the parser (an unknown option, a missing
/// value) is said first, then where to look.
fn usage(e: anyhow::Error, help: &str) -> anyhow::Error {
    match e.downcast::<lexopt::Error>() {
        Ok(e) => anyhow!("{e}; see {help}"),
        Err(e) => e,
    }
}

/// A flag given twice is most likely a mistake (an edited command line, a
/// wrapper adding its own): which one was meant cannot be known, so neither is
/// silently dropped.
fn set_once<T>(slot: &mut Option<T>, flag: &str, value: T) -> Result<()> {
    if slot.is_some() {
        bail!("{flag} is given more than once; give it once");
    }
    *slot = Some(value);
    Ok(())
}

/// An empty path would silently mean the current directory.
fn non_empty(value: OsString, flag: &str) -> Result<PathBuf> {
    if value.is_empty() {
        bail!("{flag} must not be empty");
    }
    Ok(value.into())
}
