//! Durability: how files are named only once complete ([`atomic_file`]),
//! put on disk (`syncfs` per file system), and how narinfos are named where
//! others may be writing ([`narinfos`], for `sign` and `merge`; [`batch`],
//! for the builder's stream of checked paths).

pub mod atomic_file;
pub mod batch;
pub mod narinfos;
