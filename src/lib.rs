//! make-binary-cache: writes a flat-file Nix binary cache for a closure,
//! serialising, checking and compressing every store path itself.
//!
//! Data flows one way: [`input`] reads what Nix says about the closure
//! (path-info JSON, structured attrs, `nix path-info`), the builder
//! ([`commands::build`]) plans the work and runs each store path through
//! the pipeline (read → NAR → NarHash → [`compress`] → FileHash → file),
//! then names its [`format::narinfo`] once the NAR is checked and on disk
//! ([`durable`]).
//!
//! The layers, from the ground up (doc/architecture.md draws them):
//! * [`format`](mod@format): Nix's formats as pure code: no I/O, nothing of
//!   the crate outside it (a test in `format` fails if one does);
//! * [`compress`]: the compressors; [`cache`]: reading a cache that exists,
//!   every file beneath it; [`durable`]: naming files once complete and on
//!   disk; [`input`]: what goes in; [`workers`], [`resources`], [`text`];
//! * [`commands`]: one module per subcommand (`build`, `sign`, `verify`,
//!   `merge`); [`progress`] shows how a run goes; `main.rs` parses the
//!   command line, dispatches and reports.

pub mod cache;
pub mod commands;
pub mod compress;
pub mod durable;
pub mod format;
pub mod input;
pub mod progress;
pub mod resources;
pub mod text;
pub mod workers;
