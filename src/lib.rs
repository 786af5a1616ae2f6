//! make-binary-cache: writes a flat-file Nix binary cache for a closure,
//! serialising, checking and compressing every store path itself.
//!
//! Data flows one way: [`closure`] reads what Nix says about the closure,
//! [`cache`] plans the work and runs each store path through the pipeline
//! ([`dump`] → [`format::nar`] → [`format::hash`] → [`compression`] → file),
//! then writes its [`format::narinfo`]. The modules under [`format`](mod@format) are
//! pure: they do no I/O of their own and use nothing of the crate outside
//! `format` (a test in `format` fails if one does). [`sign`] adds signatures to a cache already
//! written; [`verify`] checks a cache, whoever wrote it. [`reuse`] copies the
//! compressed NARs of earlier caches made with the same settings (as their
//! [`format::manifest`] says) instead of compressing again. [`shard`] splits
//! a closure among several builds, and [`merge`] joins their caches (or any
//! of ours) into one. [`nix`] asks the installed Nix for the closure of store
//! paths named on the command line; [`progress`] shows how a run goes.
//! [`read_cache`] reads a cache that exists, for `merge`, `sign`, `verify`
//! and [`reuse`], every file through [`cache_dir`], which opens nothing
//! outside the cache; [`narinfos`] is the one rule for naming a narinfo
//! where one may be (signatures are kept) and the lock our writers share;
//! [`workers`] the worker pool of `sign` and `merge`.

pub mod atomic_file;
pub mod blocks;
pub mod cache;
pub mod cache_dir;
pub mod closure;
pub mod compression;
pub mod dump;
pub mod format;
pub mod merge;
pub mod narinfos;
pub mod nix;
pub mod progress;
pub mod read_cache;
pub mod resources;
pub mod reuse;
pub mod shard;
pub mod sign;
pub mod verify;
pub mod workers;
pub mod xz;
