//! The integration tests: one test binary (Cargo.toml sets `autotests =
//! false`), so that the crate is linked into one executable instead of one
//! per file. Each module is one concern; `common` holds their helpers.
//! Real Nix is the judge wherever it can be.

mod common;

mod cli;
mod concurrency;
mod deployments;
mod docs;
mod e2e_nix;
mod hostile;
mod integrity;
mod lifecycle;
mod merge;
mod nar_dump;
mod nar_proptest;
mod optional_files;
mod packaging;
mod progress;
mod remote_builders;
mod resources;
mod reuse;
mod sign;
mod verify;
mod without_nix;
