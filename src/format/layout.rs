//! The names of a flat-file binary cache's directories.

/// The directory of the NAR files.
pub const NAR_DIR: &str = "nar";

/// The directories Nix expects in a `file://` cache besides `nar/`: it
/// creates them when it opens one, which fails on a read-only mount, so a
/// cache has them from the start (`realisations/` became `build-trace-v2/`
/// in Nix 2.35, so both exist).
pub const EMPTY_DIRS: [&str; 4] = ["realisations", "build-trace-v2", "log", "debuginfo"];
