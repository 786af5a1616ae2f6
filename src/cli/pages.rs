//! The help pages' text around the flags: what each subcommand does, its
//! usage, environment and examples. The flags themselves are in
//! [`super::defs`]. Lines are at most 80 columns; indented lines are kept as
//! they are in the manual page too.

use super::defs::{Command, Page, Section};

impl Command {
    /// Its help page (the flags come from the table).
    pub fn page(self) -> &'static Page {
        match self {
            Command::Build => &BUILD,
            Command::Sign => &SIGN,
            Command::Verify => &VERIFY,
            Command::Merge => &MERGE,
            Command::Ls => &LS,
            Command::Diff => &DIFF,
            Command::Gc => &GC,
        }
    }
}

pub static BUILD: Page = Page {
    command: Command::Build,
    summary: "write a flat-file Nix binary cache for a closure",
    head: "\
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

    make-binary-cache ls [--json] CACHE
        What a cache holds; see `make-binary-cache ls --help`.

    make-binary-cache diff [--json] OLD NEW
        What differs between two caches; see `make-binary-cache diff --help`.

    make-binary-cache gc --keep PATH... [--dry-run] CACHE
        Remove what is outside the closure of the paths to keep; see
        `make-binary-cache gc --help`.

    make-binary-cache help [SUBCOMMAND]
        This text, or a subcommand's (the same as its --help).
",
    sections: &[
        Section {
            heading: "WHAT TO PUT IN THE CACHE (one of)",
            after: "\
The closure must be whole: a reference that is neither in it nor
already in DIR is an error, unless --partial.",
        },
        Section { heading: "WHERE AND HOW", after: "" },
        Section { heading: "OPTIONAL FILES (as `nix copy` writes them when asked)", after: "" },
        Section { heading: "EARLIER CACHES", after: "" },
        Section {
            heading: "OUTPUT",
            after: "\
Progress goes to stderr. On a terminal, a progress bar: NAR bytes and
store paths done of the total, throughput, time left, and the largest
path in flight. Elsewhere (a build log, a pipe, a file), a line per store
path written, and every 10 s a line for each path still being compressed
(`compressing /nix/store/...-foo: 120 of 281 MiB`). The cache written is
the same whatever is shown.

The exit status is 0 when every store path is in the cache, and non-zero
after an error naming the path, file or option and what to do; a failed
path leaves no narinfo behind, and each option may be given once.",
        },
    ],
    tail: "\
ENVIRONMENT:
    NIX_STORE                 The store directory [default: /nix/store].
    NIX_LOG_DIR               Nix's log directory, for --include-logs
                              [default: /nix/var/log/nix].

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
",
};

pub static SIGN: Page = Page {
    command: Command::Sign,
    summary: "sign the narinfos of a binary cache",
    head: "\
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
    make-binary-cache sign --secret-key-file KEY [OPTIONS] CACHE
",
    sections: &[
        Section {
            heading: "OPTIONS",
            after: "\
Without --out, each narinfo is replaced atomically in CACHE, which must be
writable and outside the Nix store.",
        },
        Section { heading: "OPERANDS", after: "" },
    ],
    tail: "\
ENVIRONMENT:
    NIX_STORE                 The store directory, if CACHE's nix-cache-info
                              names none [default: /nix/store].

EXAMPLE:
    nix-store --generate-binary-cache-key cache.example.org-1 sk.key pk.pub
    make-binary-cache sign --secret-key-file sk.key --out ./signed \\
        $(nix-build -A myBinaryCache)
    nix copy --from file://$PWD/signed \\
        --option trusted-public-keys \"$(cat pk.pub)\" ./result
",
};

pub static VERIFY: Page = Page {
    command: Command::Verify,
    summary: "check a flat-file binary cache before trusting it",
    head: "\
Checks every <hash>.narinfo of CACHE, whoever wrote the cache
(make-binary-cache, mkBinaryCache, `nix copy --to file://DIR`). Nix itself
never checks FileHash or FileSize, and `nix store verify` checks store
paths, not a cache. For every narinfo:

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

Files in nar/ that no narinfo names, build logs in log/ of a derivation no
narinfo names as its Deriver, and other unknown files, are warnings
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
",
    sections: &[Section { heading: "OPTIONS", after: "" }, Section { heading: "OPERANDS", after: "" }],
    tail: "\
EXAMPLE:
    make-binary-cache verify --public-key \"$(cat pk.pub)\" ./cache
",
};

pub static MERGE: Page = Page {
    command: Command::Merge,
    summary: "join binary caches into a new one",
    head: "\
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
    make-binary-cache merge --out DIR [OPTIONS] CACHE...
",
    sections: &[Section { heading: "OPTIONS", after: "" }, Section { heading: "OPERANDS", after: "" }],
    tail: "\
EXAMPLE:
    make-binary-cache merge --out ./cache ./result-shard-0 ./result-shard-1
    make-binary-cache verify ./cache
",
};

pub static LS: Page = Page {
    command: Command::Ls,
    summary: "list what a binary cache holds",
    head: "\
Lists every store path of CACHE from its narinfos alone (no NAR is read):
its NarSize, FileSize and compression, how many store paths it refers to,
how many of the cache's narinfos refer to it (none: a root of the cache),
and who signed it; then the totals. Works on any flat-file cache (ours,
mkBinaryCache's, `nix copy`'s). A narinfo that does not read is an error
naming it; `make-binary-cache verify` checks the NARs too.

USAGE:
    make-binary-cache ls [--json] CACHE
",
    sections: &[Section { heading: "OPTIONS", after: "" }, Section { heading: "OPERANDS", after: "" }],
    tail: "\
EXAMPLE:
    make-binary-cache ls ./cache
    make-binary-cache ls --json ./cache \\
        | jq '.paths[] | select(.referrers == 0) | .path'
",
};

pub static DIFF: Page = Page {
    command: Command::Diff,
    summary: "compare two binary caches",
    head: "\
Compares the narinfos of OLD and NEW: the store paths NEW adds (+), those
it lacks (-), and those both hold with different contents (~: the same
store path with another NarHash, a build that is not reproducible). The
compression, the NAR files and the signatures may differ: the same NarHash
is the same contents. No NAR is read.

The exit status is 0 when the caches hold the same store paths with the
same contents, 1 when they differ, 2 on an error.

USAGE:
    make-binary-cache diff [--json] OLD NEW
",
    sections: &[Section { heading: "OPTIONS", after: "" }, Section { heading: "OPERANDS", after: "" }],
    tail: "\
EXAMPLE:
    make-binary-cache diff ./last-night ./tonight
",
};

pub static GC: Page = Page {
    command: Command::Gc,
    summary: "remove from a binary cache what is not kept",
    head: "\
Keeps the closure of the store paths given (--keep, --keep-file), computed
from CACHE's own narinfos, so the paths need not exist on this machine, and
removes every other narinfo; then every NAR file, NAR listing (.ls),
debuginfo/ entry and build log (log/) that no kept narinfo needs, and the
temporary files of runs of make-binary-cache that died. Other files are
left alone. Works on any flat-file cache (ours, mkBinaryCache's, `nix
copy`'s), which must be writable: a cache in the Nix store is collected by
Nix's own garbage collector.

Nothing is removed unless every path to keep is in CACHE with its whole
closure and every narinfo reads. Narinfos go first and are gone on disk
before any NAR goes: a reader never finds a narinfo whose NAR is missing
(a NAR it is already downloading may vanish under it). Runs of
make-binary-cache that write into CACHE or read it (builds into it or
reusing it, sign, merge, verify) hold a lock that gc takes exclusively:
they wait for gc, and gc waits for them up to --wait. Writers that are not
ours, such as `nix copy`, take no lock: do not run them into CACHE while gc
runs, or a path they add may lose its NAR.

Prints each store path and file removed, then what was kept and the bytes
freed.

USAGE:
    make-binary-cache gc --keep PATH... [--keep-file FILE]... [OPTIONS] CACHE
",
    sections: &[Section { heading: "OPTIONS", after: "" }, Section { heading: "OPERANDS", after: "" }],
    tail: "\
EXAMPLE:
    make-binary-cache gc --dry-run --keep ./result ./cache
    make-binary-cache gc --keep-file roots.txt /srv/cache
",
};
