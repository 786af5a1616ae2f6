//! One module per subcommand: [`build`] writes a cache (the default, and
//! mkBinaryCache's builder), [`sign`] signs one, [`verify`] checks one,
//! [`merge`] joins several, [`ls`] lists one, [`diff`] compares two, [`gc`]
//! removes what is not kept. [`catalog`] reads a cache's narinfos for the
//! last three.

pub mod build;
pub mod catalog;
pub mod diff;
pub mod gc;
pub mod ls;
pub mod merge;
pub mod sign;
pub mod verify;
