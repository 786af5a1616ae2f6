//! Content addresses: how a content-addressed store path's name was computed,
//! the `CA:` line of a narinfo and the `ca` field of path-info JSON.
//!
//! The grammar is Nix's (`ContentAddress::parse`, formerly
//! `parseContentAddress`, in libstore's content-address.cc):
//!
//! ```text
//! text:sha256:<hash>           builtins.toFile and other text files
//! fixed:<algo>:<hash>          flat file hash (outputHashMode = "flat")
//! fixed:r:<algo>:<hash>        NAR hash (outputHashMode = "recursive", nix-store --add)
//! fixed:git:<algo>:<hash>      git tree hash (newer Nix, experimental git-hashing)
//! ```
//!
//! with `<algo>` one of md5, sha1, sha256, sha512 and `<hash>` in base16,
//! nix32 or base64 as its length says (never SRI). Nix 2.8 requires sha256
//! for `text:` (newer Nix no longer checks); we require it too, as every Nix
//! that writes `text:` uses sha256 and the narinfo must stay readable by
//! older Nix. `Display` renders the address as Nix's `renderContentAddress`
//! does, the hash in nix32: what `nix copy` writes after `CA:`.
//!
//! ```
//! use make_binary_cache::format::content_address::{ContentAddress, Method};
//! let hex = "fixed:r:sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
//! let ca: ContentAddress = hex.parse().unwrap();
//! assert_eq!(ca.method(), Method::Recursive);
//! assert_eq!(ca.to_string(), "fixed:r:sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
//! assert!("garbage".parse::<ContentAddress>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use crate::format::hash::{Hash, HashAlgorithm};

/// How the hashed contents were serialised.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Method {
    /// `text:`, a single non-executable file hashed as is.
    Text,
    /// `fixed:`, a single file hashed as is.
    Flat,
    /// `fixed:r:`, the NAR serialisation.
    Recursive,
    /// `fixed:git:`, the git tree or blob hash.
    Git,
}

impl Method {
    /// What precedes `<algo>:<hash>`.
    fn prefix(self) -> &'static str {
        match self {
            Self::Text => "text:",
            Self::Flat => "fixed:",
            Self::Recursive => "fixed:r:",
            Self::Git => "fixed:git:",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentAddress {
    method: Method,
    hash: Hash,
}

impl ContentAddress {
    /// `text:` addresses take only sha256 hashes.
    pub fn new(method: Method, hash: Hash) -> Result<Self, String> {
        if method == Method::Text && hash.algorithm() != HashAlgorithm::Sha256 {
            return Err(format!("a text content address uses sha256, not {}", hash.algorithm()));
        }
        Ok(Self { method, hash })
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn hash(&self) -> &Hash {
        &self.hash
    }
}

impl FromStr for ContentAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let fail = |why: String| format!("{s:?} is not a content address: {why}");
        let (prefix, rest) = s
            .split_once(':')
            .ok_or_else(|| fail("expected text:<algo>:<hash> or fixed:[r:|git:]<algo>:<hash>".into()))?;
        let (method, rest) = match prefix {
            "text" => (Method::Text, rest),
            "fixed" => {
                if let Some(rest) = rest.strip_prefix("r:") {
                    (Method::Recursive, rest)
                } else if let Some(rest) = rest.strip_prefix("git:") {
                    (Method::Git, rest)
                } else {
                    (Method::Flat, rest)
                }
            }
            _ => return Err(fail(format!("unknown prefix {prefix:?} (expected text or fixed)"))),
        };
        let (algorithm, digest) = rest.split_once(':').ok_or_else(|| fail("expected <algo>:<hash>".into()))?;
        let algorithm: HashAlgorithm = algorithm.parse().map_err(fail)?;
        let hash = Hash::parse_unprefixed(digest, algorithm).map_err(fail)?;
        Self::new(method, hash).map_err(fail)
    }
}

impl fmt::Display for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.method.prefix(), self.hash)
    }
}

impl fmt::Debug for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ca` of paths added to Nix 2.8 here, as `nix path-info --json` prints it:
    // `nix-store --add-fixed sha256 F`, `--add-fixed --recursive sha256 D`,
    // `--add-fixed sha1 F`, `--add-fixed --recursive md5 D`,
    // `--add-fixed sha512 F`, and `builtins.toFile`.
    const FROM_NIX: [&str; 6] = [
        "fixed:sha256:0a149fyy50fhvzb45pbhdm5gpcasn6wrmrxybxmhr686xx2j20g8",
        "fixed:r:sha256:153lrrn6j41n86y4px2bdhc5aiqjmhpvq7r5nfg6nqizxxdh226d",
        "fixed:sha1:9galppwma8s7nnqfi0p21nzf0fb7hx6s",
        "fixed:r:md5:66vs6yfhmnvjjn7khbfywigbs7",
        "fixed:sha512:3apdjg1igs2lcmywn3q1kqcv7pbkh5skgia064611g8c6qbzsvcmmvpwvc758jm7r7agg7m8aywb075nw552sjc82f0n6krbqr6r34j",
        "text:sha256:19cbk5kiyb8vy72k62acgav8d08dldqzmdk6jslbkmry9d43hlwv",
    ];

    #[test]
    fn what_nix_writes_prints_back_unchanged() {
        for s in FROM_NIX {
            let ca: ContentAddress = s.parse().unwrap();
            assert_eq!(ca.to_string(), s);
        }
    }

    #[test]
    fn every_encoding_renders_in_nix32() {
        // The empty file's digests (see hash.rs): base16 of either case,
        // nix32 and base64 all mean the same address.
        let nix32 = "fixed:git:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs";
        for s in [
            "fixed:git:sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "fixed:git:sha1:DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
            nix32,
            "fixed:git:sha1:2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
        ] {
            let ca: ContentAddress = s.parse().unwrap();
            assert_eq!((ca.method(), ca.hash().algorithm()), (Method::Git, HashAlgorithm::Sha1));
            assert_eq!(ca.to_string(), nix32);
        }
    }

    #[test]
    fn rejects_what_nix_rejects() {
        let nix32 = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
        let cases = [
            ("garbage".to_string(), "expected text:<algo>:<hash>"),
            (String::new(), "expected text:<algo>:<hash>"),
            (format!("sha256:{nix32}"), "unknown prefix \"sha256\""),
            (format!("Fixed:r:sha256:{nix32}"), "unknown prefix \"Fixed\""),
            ("fixed:r:sha256".into(), "expected <algo>:<hash>"),
            ("fixed:".into(), "expected <algo>:<hash>"),
            (format!("fixed:r:SHA256:{nix32}"), "unknown hash algorithm \"SHA256\""),
            (format!("fixed:r:blake3:{nix32}"), "unknown hash algorithm \"blake3\""),
            (format!("fixed:r:r:sha256:{nix32}"), "unknown hash algorithm \"r\""),
            (format!("fixed:git:r:sha256:{nix32}"), "unknown hash algorithm \"r\""),
            (format!("text:r:sha256:{nix32}"), "unknown hash algorithm \"r\""),
            (format!("fixed:sha256-{nix32}"), "expected <algo>:<hash>"),
            ("fixed:r:sha256:sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into(), "wrong length"),
            (format!("fixed:r:sha256:{nix32}\nURL: nar/x.nar"), "wrong length"),
            (format!("fixed:r:sha256:{}\n", &nix32[1..]), "invalid nix32"),
            (format!("fixed:r:sha256:{}\0", &nix32[1..]), "invalid nix32"),
            (format!("fixed:r:sha256:{nix32}:"), "wrong length"),
            (format!("fixed:r:sha1:{nix32}"), "wrong length for a sha1 hash"),
            (
                format!("text:sha1:{}", "143xibwh31h9bvxzalr0sjvbbvpa6ffs"),
                "a text content address uses sha256, not sha1",
            ),
            ("text:md5:d41d8cd98f00b204e9800998ecf8427e".into(), "uses sha256, not md5"),
        ];
        for (s, expected) in cases {
            let err = s.parse::<ContentAddress>().unwrap_err();
            assert!(err.contains(expected), "{s:?}: {err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn debug_shows_the_content_address() {
        let ca: ContentAddress = FROM_NIX[1].parse().unwrap();
        assert!(format!("{ca:?}").contains(FROM_NIX[1]), "{ca:?}");
    }
}
