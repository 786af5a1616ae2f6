//! Every flag, defined once: its name, its value, the section of the help it
//! stands in, how a shell completes it, and its text. The parser
//! ([`super::lowargs`]), `--help` ([`super::help`]), the shells' completions
//! ([`super::complete`]) and the manual page ([`super::man`]) are all made
//! from this table; what a flag's value means is [`super::hiargs`]'s.

/// The program's subcommands; `Build` is the default (no subcommand word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Build,
    Sign,
    Verify,
    Merge,
    Ls,
    Diff,
    Gc,
}

impl Command {
    pub const ALL: [Command; 7] =
        [Command::Build, Command::Sign, Command::Verify, Command::Merge, Command::Ls, Command::Diff, Command::Gc];

    /// The word that selects it; `None` for the default.
    pub fn word(self) -> Option<&'static str> {
        match self {
            Command::Build => None,
            Command::Sign => Some("sign"),
            Command::Verify => Some("verify"),
            Command::Merge => Some("merge"),
            Command::Ls => Some("ls"),
            Command::Diff => Some("diff"),
            Command::Gc => Some("gc"),
        }
    }

    /// How the help refers to its own page: `--help` or `sign --help`.
    pub fn help_hint(self) -> String {
        match self.word() {
            None => "--help".into(),
            Some(word) => format!("{word} --help"),
        }
    }

    /// Its flags and operands, in the order its help lists them.
    pub fn flags(self) -> impl Iterator<Item = &'static Flag> {
        FLAGS.iter().filter(move |flag| flag.command == self)
    }
}

/// What a flag is on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--partial`: present or not.
    Switch,
    /// `--out DIR`: takes a value.
    Value(&'static str),
    /// `CACHE`: an operand, named for the help.
    Operand,
}

/// What a shell offers for a flag's value or an operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Complete {
    Nothing,
    File,
    Dir,
    Words(&'static [&'static str]),
}

/// One flag or operand of one subcommand.
#[derive(Debug)]
pub struct Flag {
    pub command: Command,
    /// Without the dashes (`out`); an operand's metavariable (`CACHE`).
    pub name: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
    /// May be given more than once; every other flag may be given once.
    pub repeatable: bool,
    /// The heading of the help section it stands in (see [`Page`]).
    pub section: &'static str,
    pub complete: Complete,
    /// One or more sentences, wrapped by whoever prints them.
    pub doc: &'static str,
}

impl Flag {
    pub fn is_operand(&self) -> bool {
        self.kind == Kind::Operand
    }

    /// How the help names it: `--out DIR`, `-q, --quiet`, `PATH...`.
    pub fn label(&self) -> String {
        let short = self.short.map(|c| format!("-{c}, ")).unwrap_or_default();
        match self.kind {
            Kind::Switch => format!("{short}--{}", self.name),
            Kind::Value(value) => format!("{short}--{} {value}", self.name),
            Kind::Operand if self.repeatable => format!("{}...", self.name),
            Kind::Operand => self.name.to_string(),
        }
    }

    /// Its first clause, for a shell's one-line description.
    pub fn summary(&self) -> &'static str {
        let end = [". ", "; ", " ["].iter().filter_map(|stop| self.doc.find(stop)).min().unwrap_or(self.doc.len());
        self.doc[..end].trim_end_matches('.')
    }
}

/// A subcommand's help page around its flags: `head` (what it does and its
/// usage), then one section per heading with the flags of that section and
/// the text after them, then `tail` (environment, examples).
#[derive(Debug)]
pub struct Page {
    pub command: Command,
    /// One line: what it does (the manual's NAME line).
    pub summary: &'static str,
    pub head: &'static str,
    pub sections: &'static [Section],
    pub tail: &'static str,
}

#[derive(Debug)]
pub struct Section {
    pub heading: &'static str,
    /// Text after the section's flags; may be empty.
    pub after: &'static str,
}

use Command::{Build, Diff, Gc, Ls, Merge, Sign, Verify};

const fn switch(command: Command, name: &'static str, section: &'static str, doc: &'static str) -> Flag {
    Flag {
        command,
        name,
        short: None,
        kind: Kind::Switch,
        repeatable: false,
        section,
        complete: Complete::Nothing,
        doc,
    }
}

const fn value(
    command: Command,
    name: &'static str,
    value: &'static str,
    complete: Complete,
    section: &'static str,
    doc: &'static str,
) -> Flag {
    Flag { command, name, short: None, kind: Kind::Value(value), repeatable: false, section, complete, doc }
}

const fn operand(
    command: Command,
    name: &'static str,
    repeatable: bool,
    section: &'static str,
    doc: &'static str,
) -> Flag {
    Flag { command, name, short: None, kind: Kind::Operand, repeatable, section, complete: Complete::Dir, doc }
}

const fn repeatable(flag: Flag) -> Flag {
    Flag { repeatable: true, ..flag }
}

const fn short(c: char, flag: Flag) -> Flag {
    Flag { short: Some(c), ..flag }
}

const WHAT: &str = "WHAT TO PUT IN THE CACHE (one of)";
const HOW: &str = "WHERE AND HOW";
const FILES: &str = "OPTIONAL FILES (as `nix copy` writes them when asked)";
const EARLIER: &str = "EARLIER CACHES";
const OUTPUT: &str = "OUTPUT";
const OPTIONS: &str = "OPTIONS";
const OPERANDS: &str = "OPERANDS";

const JOBS: &str = "Worker threads [default: all cores]; never more than the cores this process may use.";
const READERS: &str = "Workers reading narinfos [default: all cores].";
const HELP: &str = "Print this help.";

/// Every flag of every subcommand, each once, in the order of the help.
pub static FLAGS: &[Flag] = &[
    // make-binary-cache [--out DIR] ...
    Flag {
        complete: Complete::File,
        ..operand(Build, "PATH", true, WHAT, "Store paths, or symlinks to them; see above.")
    },
    value(
        Build,
        "closure",
        "FILE",
        Complete::File,
        WHAT,
        "The output of `nix path-info --json --recursive PATH...`: the array of older Nix (2.8 here) or the \
         object keyed by store path of newer Nix. `-` reads stdin.",
    ),
    value(
        Build,
        "attrs",
        "FILE",
        Complete::File,
        WHAT,
        "A structured-attrs JSON file with a `closure` list. Its `outputs.out`, `compression`, \
         `compressionLevel`, `maxMemory`, `priority`, `wantMassQuery`, `writeNarListing`, `indexDebugInfo` and \
         `reuse` are used unless the options below override them (true ones and --reuse add to them); `shard` \
         and `shards` as in a build.",
    ),
    value(
        Build,
        "out",
        "DIR",
        Complete::Dir,
        HOW,
        "Where to write the cache; created if missing. An existing cache is added to (runs may even write into \
         one DIR at the same time); an existing directory that is not a cache must be empty.",
    ),
    value(
        Build,
        "compression",
        "NAME",
        Complete::Words(&["none", "xz", "zstd"]),
        HOW,
        "none, xz or zstd [default: zstd]. xz is the smallest and slowest; none is byte for byte what \
         `nix copy --to 'file://DIR?compression=none'` writes.",
    ),
    value(
        Build,
        "compression-level",
        "N",
        Complete::Nothing,
        HOW,
        "The compressor's level [default: its own: xz 6 (0-9), zstd 3 (1-22)].",
    ),
    value(
        Build,
        "jobs",
        "N",
        Complete::Nothing,
        HOW,
        "Worker threads [default: all cores]; never more than the cores this process may use. The cache is byte-identical whatever N is.",
    ),
    value(
        Build,
        "max-memory",
        "SIZE",
        Complete::Nothing,
        HOW,
        "Memory the compressors may use together; fewer workers or compressor threads run to stay within it. \
         SIZE is bytes, or a number (fractions allowed) with K, M, G or T, optionally followed by B or iB, all \
         powers of 1024: 512M, 1G, 1.5GiB. [default: half the smaller of the cgroup's memory limit and \
         MemAvailable]. A store path that alone needs more (xz -9 takes ~1 GiB a thread on large NARs) is \
         compressed alone with one thread.",
    ),
    switch(
        Build,
        "partial",
        HOW,
        "Allow store paths whose references are neither in the closure nor already in the cache: for an overlay \
         cache used together with another substituter that has them. Without it, such a closure is an error and \
         nothing is written.",
    ),
    switch(
        Build,
        "no-sync",
        HOW,
        "Do not wait for the disk: faster, but after a power cut narinfos may point at lost NARs. For throwaway \
         caches. [default: a narinfo is named only once its NAR is on disk, and the run ends with everything on \
         disk]",
    ),
    value(
        Build,
        "priority",
        "N",
        Complete::Nothing,
        FILES,
        "Write `Priority: N` to nix-cache-info: Nix tries substituters in increasing priority (0 when a cache \
         names none; cache.nixos.org has 40). An existing cache must already say the same.",
    ),
    switch(
        Build,
        "want-mass-query",
        FILES,
        "Write `WantMassQuery: 1` to nix-cache-info, so that Nix may query the cache for many paths at once. An \
         existing cache must already say so.",
    ),
    switch(
        Build,
        "write-nar-listing",
        FILES,
        "Also write <hash part>.ls, the JSON listing of each NAR (what `nix copy --to \
         'file://DIR?write-nar-listing=true'` writes), for tools that browse a cache without fetching NARs (Nix \
         2.8 itself reads listings only from its local-nar-cache).",
    ),
    switch(
        Build,
        "index-debug-info",
        FILES,
        "Also write debuginfo/<build id>.debug for each lib/debug/.build-id/<xx>/<38 hex>.debug file in the \
         NARs (what index-debug-info=true writes), for dwarffs; an existing entry is kept.",
    ),
    switch(
        Build,
        "include-logs",
        FILES,
        "Also copy the build log of each store path's derivation from Nix's log directory ($NIX_LOG_DIR, else \
         /nix/var/log/nix) into log/<derivation>, uncompressed, as `nix store copy-log` writes it, so that \
         `nix log --store file://DIR PATH` shows it on another machine. A derivation without a log there is \
         counted in the summary, not an error.",
    ),
    repeatable(value(
        Build,
        "reuse",
        "DIR",
        Complete::Dir,
        EARLIER,
        "An earlier cache (ours, e.g. last night's) whose compressed NARs may be copied instead of compressing \
         again; may be repeated (the first that has a path wins). Only where DIR's make-binary-cache.json matches \
         this run's settings (else the log says which field differs and everything is compressed afresh), and \
         only for a narinfo of the same store path, NarHash and NarSize. Store paths are still read and checked; \
         the copy is checked against the narinfo's FileSize and FileHash, and a mismatch (a damaged DIR) fails \
         the run. The cache is byte-identical to one written without --reuse.",
    )),
    short(
        'q',
        switch(
            Build,
            "quiet",
            OUTPUT,
            "Print no progress: no bar, no per-path lines, no totals. Errors and warnings still print.",
        ),
    ),
    value(
        Build,
        "generate",
        "KIND",
        Complete::Words(&["man", "complete-bash", "complete-zsh", "complete-fish"]),
        OUTPUT,
        "Print the manual page (man) or a shell's completions (complete-bash, complete-zsh, complete-fish) \
         and exit.",
    ),
    short('h', switch(Build, "help", OUTPUT, HELP)),
    short('V', switch(Build, "version", OUTPUT, "Print the version.")),
    // make-binary-cache sign ...
    value(
        Sign,
        "secret-key-file",
        "KEY",
        Complete::File,
        OPTIONS,
        "A secret key file, as written by `nix-store --generate-binary-cache-key NAME KEY PUB` (the same file \
         Nix's `secret-key-files` takes).",
    ),
    value(
        Sign,
        "out",
        "DEST",
        Complete::Dir,
        OPTIONS,
        "Write a signed copy of CACHE to DEST instead of signing CACHE in place: the NAR files and every other \
         file are copied, the narinfos signed. DEST is created if missing; if it exists and is not empty it must \
         be a cache of the same store directory. Needed when CACHE is read-only, e.g. the store path \
         mkBinaryCache builds (a cache in the Nix store is never changed in place).",
    ),
    switch(
        Sign,
        "no-sync",
        OPTIONS,
        "Do not wait for the disk: faster, but after a power cut a narinfo may name a NAR whose copy was lost. \
         [default: copied NARs and new narinfos are on disk before a narinfo is named]",
    ),
    short('h', switch(Sign, "help", OPTIONS, HELP)),
    operand(Sign, "CACHE", false, OPERANDS, "The cache whose narinfos to sign."),
    // make-binary-cache verify ...
    repeatable(value(
        Verify,
        "public-key",
        "KEY",
        Complete::Nothing,
        OPTIONS,
        "A public key, as in Nix's trusted-public-keys: <name>:<base64 of 32 bytes> (what \
         `nix-store --generate-binary-cache-key` writes to its public key file). May be repeated: a signature by \
         any of them will do.",
    )),
    repeatable(value(
        Verify,
        "public-key-file",
        "FILE",
        Complete::File,
        OPTIONS,
        "A file holding one such key. May be repeated.",
    )),
    switch(
        Verify,
        "require-sigs",
        OPTIONS,
        "Insist on signatures. They are required as soon as a key is given, so this only makes that explicit; \
         without a key it is an error, as there would be nothing to check them with.",
    ),
    value(Verify, "jobs", "N", Complete::Nothing, OPTIONS, JOBS),
    short('h', switch(Verify, "help", OPTIONS, HELP)),
    operand(Verify, "CACHE", false, OPERANDS, "The cache to check."),
    // make-binary-cache merge ...
    value(
        Merge,
        "out",
        "DIR",
        Complete::Dir,
        OPTIONS,
        "Where to write the merged cache: a missing or empty directory.",
    ),
    switch(
        Merge,
        "partial",
        OPTIONS,
        "Allow references that no CACHE has: for an overlay cache used together with another substituter that \
         has them.",
    ),
    switch(
        Merge,
        "no-sync",
        OPTIONS,
        "Do not wait for the disk: faster, but after a power cut narinfos may point at lost NARs. [default: NARs \
         are on disk before the narinfos naming them are named]",
    ),
    value(
        Merge,
        "jobs",
        "N",
        Complete::Nothing,
        OPTIONS,
        "Workers copying and checking NAR files [default: $NIX_BUILD_CORES in a build, else all cores].",
    ),
    short('h', switch(Merge, "help", OPTIONS, HELP)),
    operand(Merge, "CACHE", true, OPERANDS, "The caches to join, in order: the first CACHE's debuginfo/ entry wins."),
    // make-binary-cache ls ...
    switch(
        Ls,
        "json",
        OPTIONS,
        "Print JSON for scripts instead of a table: the form described in doc/ls-diff-gc.md, which only grows.",
    ),
    value(Ls, "jobs", "N", Complete::Nothing, OPTIONS, READERS),
    short('h', switch(Ls, "help", OPTIONS, HELP)),
    operand(Ls, "CACHE", false, OPERANDS, "The cache to list."),
    // make-binary-cache diff ...
    switch(
        Diff,
        "json",
        OPTIONS,
        "Print JSON for scripts instead of lines: the form described in doc/ls-diff-gc.md, which only grows.",
    ),
    value(Diff, "jobs", "N", Complete::Nothing, OPTIONS, READERS),
    short('h', switch(Diff, "help", OPTIONS, HELP)),
    operand(Diff, "CACHE", true, OPERANDS, "OLD and NEW: the two caches to compare, in that order."),
    // make-binary-cache gc ...
    repeatable(value(
        Gc,
        "keep",
        "PATH",
        Complete::File,
        OPTIONS,
        "A store path to keep with its closure: the path itself (it need not exist on this machine), a file in \
         it, or a symlink to it such as ./result. May be repeated.",
    )),
    repeatable(value(
        Gc,
        "keep-file",
        "FILE",
        Complete::File,
        OPTIONS,
        "A file of store paths to keep, one per line (blank lines and lines starting with # are skipped), as \
         `nix-store -qR` or a list of roots gives them. May be repeated.",
    )),
    switch(Gc, "dry-run", OPTIONS, "Print what would be removed and the bytes it would free; remove nothing."),
    value(
        Gc,
        "wait",
        "SECONDS",
        Complete::Nothing,
        OPTIONS,
        "How long to wait for runs of make-binary-cache using the cache (builds into it or reusing it, sign, \
         merge, verify) to finish before giving up [default: 60].",
    ),
    value(Gc, "jobs", "N", Complete::Nothing, OPTIONS, READERS),
    short('h', switch(Gc, "help", OPTIONS, HELP)),
    operand(Gc, "CACHE", false, OPERANDS, "The cache to collect garbage in; it must be writable."),
];

/// The flag `--name` (or `-short`, or the operand) of `command`.
pub fn find(command: Command, name: &str) -> Option<&'static Flag> {
    command.flags().find(|flag| flag.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flag_is_defined_once_per_subcommand() {
        for command in Command::ALL {
            let mut names: Vec<&str> = command.flags().map(|f| f.name).collect();
            let mut shorts: Vec<char> = command.flags().filter_map(|f| f.short).collect();
            let (all, all_shorts) = (names.len(), shorts.len());
            names.sort();
            names.dedup();
            shorts.sort();
            shorts.dedup();
            assert_eq!((names.len(), shorts.len()), (all, all_shorts), "{command:?} defines a flag twice");
            assert!(command.flags().filter(|f| f.is_operand()).count() == 1, "{command:?}: one operand");
        }
    }

    #[test]
    fn every_flag_stands_in_a_section_of_its_page_and_says_what_it_does() {
        for flag in FLAGS {
            let page = flag.command.page();
            assert!(
                page.sections.iter().any(|s| s.heading == flag.section),
                "{}: section {:?} is not on {:?}'s page",
                flag.name,
                flag.section,
                flag.command
            );
            assert!(flag.doc.len() > 10 && !flag.doc.contains("  "), "{}: doc {:?}", flag.name, flag.doc);
            assert!(!flag.summary().is_empty() && flag.summary().len() < flag.doc.len() + 1, "{}", flag.name);
            let long_names_are_lowercase =
                flag.is_operand() || flag.name.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            assert!(long_names_are_lowercase, "{}", flag.name);
        }
    }

    #[test]
    fn summaries_end_at_the_first_sentence() {
        let out = find(Command::Build, "out").unwrap();
        assert_eq!(out.summary(), "Where to write the cache");
        assert_eq!(find(Command::Build, "compression-level").unwrap().summary(), "The compressor's level");
        assert_eq!(find(Command::Sign, "help").unwrap().summary(), "Print this help");
        assert_eq!(find(Command::Build, "out").unwrap().label(), "--out DIR");
        assert_eq!(find(Command::Build, "quiet").unwrap().label(), "-q, --quiet");
        assert_eq!(find(Command::Build, "PATH").unwrap().label(), "PATH...");
    }
}
