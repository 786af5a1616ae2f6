//! Durability: how files are named only once complete ([`atomic_file`]),
//! put on disk (`syncfs` per file system), and how narinfos are named where
//! others may be writing ([`narinfos`]), under which locks ([`lock`]). The builder names its narinfos in
//! batches of its own on these ([`crate::commands::build::durability`]).

pub mod atomic_file;
pub mod lock;
pub mod narinfos;
