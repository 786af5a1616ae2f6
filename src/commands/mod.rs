//! One module per subcommand: [`build`] writes a cache (the default, and
//! mkBinaryCache's builder), [`sign`] signs one, [`verify`] checks one,
//! [`merge`] joins several.

pub mod build;
pub mod merge;
pub mod sign;
pub mod verify;
