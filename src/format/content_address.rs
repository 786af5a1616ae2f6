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

use sha2::Digest;

use crate::format::hash::{self, Hash, HashAlgorithm};
use crate::format::nixbase32;
use crate::format::store_path::StorePath;

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
    pub fn new(method: Method, hash: Hash) -> Result<Self, Error> {
        if method == Method::Text && hash.algorithm() != HashAlgorithm::Sha256 {
            return Err(Error::TextNotSha256(hash.algorithm()));
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

impl ContentAddress {
    /// Whether `path`, with `references` (itself among them when it refers
    /// to itself), is the store path Nix computes from this address, its
    /// name and references (`makeFixedOutputPath` and `makeTextPath` in
    /// libstore's store-api.cc). A narinfo whose `CA` says otherwise is one
    /// Nix refuses ("claims to be content-addressed but isn't"). The error
    /// says what differs.
    pub fn check_path(&self, path: &StorePath, references: &[StorePath]) -> Result<(), Error> {
        let store_dir = path.store_dir();
        let has_self = references.contains(path);
        // In the order of Nix's StorePathSet: by base name.
        let mut others: Vec<&StorePath> = references.iter().filter(|r| *r != path).collect();
        others.sort_by(|a, b| a.base_name().cmp(b.base_name()));
        let with_references = |kind: &str| {
            let mut kind = kind.to_owned();
            for r in &others {
                kind.push(':');
                kind.push_str(r.as_str());
            }
            if has_self {
                kind.push_str(":self");
            }
            kind
        };
        let sha256 = |bytes: &[u8]| -> [u8; 32] { sha2::Sha256::digest(bytes).into() };
        let (kind, inner) = match self.method {
            Method::Text if has_self => return Err(Error::TextSelfReference),
            Method::Text => (with_references("text"), self.hash.digest().try_into().expect("sha256, checked")),
            Method::Recursive if self.hash.algorithm() == HashAlgorithm::Sha256 => {
                (with_references("source"), self.hash.digest().try_into().expect("a sha256 digest"))
            }
            Method::Git => return Err(Error::Git),
            Method::Flat | Method::Recursive => {
                if !references.is_empty() {
                    return Err(Error::FixedReferences(self.method.prefix()));
                }
                let recursive = if self.method == Method::Recursive { "r:" } else { "" };
                let inner = format!("fixed:out:{recursive}{}:{}:", self.hash.algorithm(), hex(self.hash.digest()));
                ("output:out".to_owned(), sha256(inner.as_bytes()))
            }
        };
        let fingerprint = format!("{kind}:sha256:{}:{store_dir}:{}", hex(&inner), path.name());
        let digest = sha256(fingerprint.as_bytes());
        let mut compressed = [0u8; 20];
        for (i, byte) in digest.iter().enumerate() {
            compressed[i % 20] ^= byte;
        }
        let expected = format!("{store_dir}/{}-{}", nixbase32::encode(&compressed), path.name());
        if expected != path.as_str() {
            return Err(Error::Mismatch {
                address: self.to_string(),
                references: references.len(),
                expected,
                path: path.to_string(),
            });
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a content address does not parse, or does not give its store path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{text:?} is not a content address: {why}")]
    Parse { text: String, why: Box<Error> },
    #[error("expected text:<algo>:<hash> or fixed:[r:|git:]<algo>:<hash>")]
    Shape,
    #[error("unknown prefix {0:?} (expected text or fixed)")]
    Prefix(String),
    #[error("expected <algo>:<hash>")]
    AlgorithmAndHash,
    #[error("{0}")]
    Hash(#[from] hash::Error),
    #[error("a text content address uses sha256, not {0}")]
    TextNotSha256(HashAlgorithm),
    #[error("a text content address cannot refer to itself")]
    TextSelfReference,
    #[error("git content addresses (experimental in Nix) cannot be checked here")]
    Git,
    #[error("a {0} content address cannot have references")]
    FixedReferences(&'static str),
    #[error("{address} with {} gives the store path {expected}, not {path}", match references {
        0 => "no references".to_owned(),
        n => format!("{n} references"),
    })]
    Mismatch { address: String, references: usize, expected: String, path: String },
}

impl FromStr for ContentAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let fail = |why: Error| Error::Parse { text: s.to_owned(), why: Box::new(why) };
        let (prefix, rest) = s.split_once(':').ok_or_else(|| fail(Error::Shape))?;
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
            _ => return Err(fail(Error::Prefix(prefix.to_owned()))),
        };
        let (algorithm, digest) = rest.split_once(':').ok_or_else(|| fail(Error::AlgorithmAndHash))?;
        let algorithm: HashAlgorithm = algorithm.parse().map_err(|e: hash::Error| fail(e.into()))?;
        let hash = Hash::parse_unprefixed(digest, algorithm).map_err(|e| fail(e.into()))?;
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
            assert!(err.to_string().contains(expected), "{s:?}: {err:?} lacks {expected:?}");
        }
    }

    /// Paths added to Nix 2.8 here (`nix-store --add`, `--add-fixed sha1`,
    /// `--add-fixed --recursive sha512`, `builtins.toFile`, one referring to
    /// another), as `nix path-info --json` gives them.
    #[test]
    fn the_store_path_is_the_one_nix_computes() {
        let cases: [(&str, &str, &[&str]); 5] = [
            (
                "/nix/store/pi8axnzkz80qa3x5smwjwxcc9n9hjik0-h",
                "fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
                &[],
            ),
            ("/nix/store/5mf5dyjbh0w3mslg73vqv02666fzr95b-h", "fixed:sha1:iwjz551fyw0cxcjgf4l6c879zabd6wpm", &[]),
            (
                "/nix/store/fmgfkw4p24gw8y7ygslncnvimx9k2z65-hd",
                "fixed:r:sha512:2f10r1rgd6rkknsrxpycgfvgdq3hb54lr6q2xbbmz3h2k15j80y9a2ykc1jhv3gybnm102v0g93sncqxdgf0ankq39ykfb692sabnbk",
                &[],
            ),
            (
                "/nix/store/hxk820apsjsq6709id0vbfsikipvfka6-t",
                "text:sha256:193s6bfb4ncbr0d3rpb177cac43b2z2h3afxi7grcswgci346hwg",
                &[],
            ),
            (
                "/nix/store/rm188s9rvmwz8wfh11a4cfyxlbc0d4cb-t2",
                "text:sha256:14pb2l9isrq8jhwjfcdvzz4cl5g9xjq9n4z09315ms2igi63q1rk",
                &["/nix/store/12wigjpizrn8axaqxj288q1b751qmwya-a"],
            ),
        ];
        let path = |p: &str| StorePath::parse("/nix/store", p).unwrap();
        for (p, ca, refs) in cases {
            let ca: ContentAddress = ca.parse().unwrap();
            let refs: Vec<StorePath> = refs.iter().map(|r| path(r)).collect();
            ca.check_path(&path(p), &refs).unwrap_or_else(|e| panic!("{p}: {e}"));
            // Another name, or a reference more, is another path.
            let renamed = p.replace("-h", "-i").replace("-t", "-u");
            assert!(ca.check_path(&path(&renamed), &refs).is_err(), "{renamed}");
            let mut more = refs.clone();
            more.push(path("/nix/store/12wigjpizrn8axaqxj288q1b751qmwyb-b"));
            assert!(ca.check_path(&path(p), &more).is_err(), "{p} with another reference");
        }
        // The issue's case: a CA on a path that is not content-addressed.
        let ca: ContentAddress = "fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw".parse().unwrap();
        let e = ca.check_path(&path("/nix/store/qvwdpxbvi51z19a9lq2jw6xpq2by2a1z-h"), &[]).unwrap_err();
        assert!(e.to_string().contains("gives the store path /nix/store/pi8axnzkz80qa3x5smwjwxcc9n9hjik0-h"), "{e}");
    }

    #[test]
    fn debug_shows_the_content_address() {
        let ca: ContentAddress = FROM_NIX[1].parse().unwrap();
        assert!(format!("{ca:?}").contains(FROM_NIX[1]), "{ca:?}");
    }
}
