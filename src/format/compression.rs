//! The compressions a cache can use, as Nix names them: the `Compression:`
//! field of a narinfo and the extension of a NAR file. Pure: the encoders,
//! their levels and their memory are `crate::compress`'s, which adds
//! them to [`Compression`]; what of an encoder decides its bytes is an
//! [`EncoderDescription`], which the [manifest](super::manifest) records.
//!
//! ```
//! use make_binary_cache::format::compression::Compression;
//! let c: Compression = "zstd".parse().unwrap();
//! assert_eq!((c.to_string(), c.extension()), ("zstd".to_string(), ".zst"));
//! assert!("gzip".parse::<Compression>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 3] = [Compression::None, Compression::Xz, Compression::Zstd];

    /// The `Compression:` value in a narinfo.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
        }
    }

    /// What Nix appends to `nar/<FileHash>.nar`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Xz => ".xz",
            Self::Zstd => ".zst",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Self, UnknownCompression> {
        Self::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| UnknownCompression(s.to_owned()))
    }
}

/// A compression we do not write (bzip2, br, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?}: expected one of \"none\", \"xz\", \"zstd\"")]
pub struct UnknownCompression(pub String);

/// Everything besides the data that decides an encoder's output bytes, as
/// `Compression::describe_encoder` (in `crate::compress`) reports it for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderDescription {
    /// The level in effect (the default filled in); `None` for `none`.
    pub level: Option<i32>,
    /// Each setting that changes the bytes, by name.
    pub parameters: Vec<(&'static str, String)>,
    /// The compressor libraries linked in, with their versions: a new
    /// version may compress the same data to other bytes.
    pub libraries: Vec<(&'static str, String)>,
}
