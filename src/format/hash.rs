//! Digests as Nix writes them.
//!
//! [`Sha256Hash`] is a NAR or file hash: `sha256:<nix32>` in narinfo files and
//! in the builder's closure JSON, and also `sha256:<hex>` and SRI
//! `sha256-<base64>` where other tools print them (`nix path-info --json`
//! prints SRI). [`Hash`](struct@Hash) is a digest of any algorithm Nix knows (md5, sha1,
//! sha256, sha512), as a content address carries it.
//!
//! ```
//! use make_binary_cache::format::hash::{Hash, HashAlgorithm, Sha256Hash};
//! let sri: Sha256Hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".parse().unwrap();
//! assert_eq!(sri.to_string(), "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
//! let md5 = Hash::parse_unprefixed("d41d8cd98f00b204e9800998ecf8427e", HashAlgorithm::Md5).unwrap();
//! assert_eq!(md5.to_string(), "md5:3y8bwfr609h3lh9ch0izcqq7fl");
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use sha2::Digest;

use crate::format::nixbase32;

/// A SHA-256 digest. `Display` gives Nix's canonical `sha256:<nix32>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Hash(pub [u8; 32]);

impl Sha256Hash {
    pub fn nix32(&self) -> String {
        nixbase32::encode(&self.0)
    }
}

impl fmt::Display for Sha256Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.nix32())
    }
}

impl fmt::Debug for Sha256Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a hash does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Nix32(#[from] nixbase32::DecodeError),
    #[error("invalid hexadecimal digest")]
    Hex,
    #[error("a sha256 digest has 52 (nix32) or 64 (hex) characters, not {0}")]
    Sha256Length(usize),
    #[error("invalid base64 in SRI hash: {0}")]
    Sri(base64::DecodeError),
    #[error("expected sha256:<nix32>, sha256:<hex> or sha256-<base64>")]
    Form,
    #[error("unknown hash algorithm {0:?} (expected md5, sha1, sha256 or sha512)")]
    UnknownAlgorithm(String),
    #[error("a {algorithm} digest has {} bytes, not {got}", algorithm.size())]
    DigestSize { algorithm: HashAlgorithm, got: usize },
    #[error("invalid {encoding} {algorithm} hash {hash:?}{}", why.as_ref().map(|w| format!(": {w}")).unwrap_or_default())]
    Encoding { encoding: &'static str, algorithm: HashAlgorithm, hash: String, why: Option<String> },
    #[error(
        "{hash:?} has the wrong length for a {algorithm} hash: {} (base16), {} (nix32) or {} (base64) characters \
         expected, not {}",
        2 * algorithm.size(),
        nixbase32::encoded_len(algorithm.size()),
        base64::encoded_len(algorithm.size(), true).unwrap_or(0),
        hash.len()
    )]
    Length { algorithm: HashAlgorithm, hash: String },
}

impl FromStr for Sha256Hash {
    type Err = Error;

    /// Accepts `sha256:<nix32>`, `sha256:<hex>` and SRI `sha256-<base64>`.
    /// Other algorithms are rejected: Nix has hashed NARs with SHA-256 only.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bytes = if let Some(digest) = s.strip_prefix("sha256:") {
            match digest.len() {
                52 => nixbase32::decode(digest, 32)?,
                64 => decode_hex(digest).ok_or(Error::Hex)?,
                n => return Err(Error::Sha256Length(n)),
            }
        } else if let Some(digest) = s.strip_prefix("sha256-") {
            base64::engine::general_purpose::STANDARD.decode(digest).map_err(Error::Sri)?
        } else {
            return Err(Error::Form);
        };
        let digest: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| Error::DigestSize { algorithm: HashAlgorithm::Sha256, got: b.len() })?;
        Ok(Self(digest))
    }
}

/// The hash algorithms Nix knows (`parseHashType` in libutil's hash.cc).
/// Newer Nix also has blake3 behind an experimental feature; Nix 2.8 and the
/// Nix versions most caches serve do not, so neither do we.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum HashAlgorithm {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl HashAlgorithm {
    /// The name Nix prints and parses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Bytes in a digest.
    pub fn size(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

impl FromStr for HashAlgorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        [Self::Md5, Self::Sha1, Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| Error::UnknownAlgorithm(s.to_owned()))
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A digest of any [`HashAlgorithm`]. `Display` gives `<algo>:<nix32>`, as
/// Nix's `Hash::to_string(Base32, true)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash {
    algorithm: HashAlgorithm,
    /// The first `algorithm.size()` bytes are the digest, the rest zero.
    bytes: [u8; 64],
}

impl Hash {
    /// `digest` must have `algorithm.size()` bytes.
    pub fn new(algorithm: HashAlgorithm, digest: &[u8]) -> Result<Self, Error> {
        if digest.len() != algorithm.size() {
            return Err(Error::DigestSize { algorithm, got: digest.len() });
        }
        let mut bytes = [0; 64];
        bytes[..digest.len()].copy_from_slice(digest);
        Ok(Self { algorithm, bytes })
    }

    /// Parses a digest without its `<algo>:` prefix, telling the encoding by
    /// the length as Nix's `Hash::parseNonSRIUnprefixed` does: base16 (either
    /// case), nix32, or padded base64. SRI is not accepted there, so neither
    /// here. Unlike Nix we want base64 to be canonical (Nix skips newlines in
    /// it and stops at the first `=`); we print the hash in nix32 anyway.
    pub fn parse_unprefixed(s: &str, algorithm: HashAlgorithm) -> Result<Self, Error> {
        let n = algorithm.size();
        let invalid = |encoding, why: Option<String>| Error::Encoding { encoding, algorithm, hash: s.to_owned(), why };
        let digest = if s.len() == 2 * n {
            decode_hex(s).ok_or_else(|| invalid("base16", None))?
        } else if s.len() == nixbase32::encoded_len(n) {
            nixbase32::decode(s, n).map_err(|e| invalid("nix32", Some(e.to_string())))?
        } else if s.len() == base64::encoded_len(n, true).unwrap_or(0) {
            base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| invalid("base64", Some(e.to_string())))?
        } else {
            return Err(Error::Length { algorithm, hash: s.to_owned() });
        };
        Self::new(algorithm, &digest)
    }

    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    pub fn digest(&self) -> &[u8] {
        &self.bytes[..self.algorithm.size()]
    }

    pub fn nix32(&self) -> String {
        nixbase32::encode(self.digest())
    }
}

impl From<Sha256Hash> for Hash {
    fn from(h: Sha256Hash) -> Self {
        let mut bytes = [0; 64];
        bytes[..32].copy_from_slice(&h.0);
        Self { algorithm: HashAlgorithm::Sha256, bytes }
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.nix32())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// Hashes and counts what passes through it on the way to `inner`, so a digest
/// and a size come out of the same single pass that writes the data.
pub struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    written: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: sha2::Sha256::new(), written: 0 }
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The digest and byte count of everything written, and the inner writer.
    pub fn finish(self) -> (Sha256Hash, u64, W) {
        (Sha256Hash(self.hasher.finalize().into()), self.written, self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts what is read through it: [`HashingWriter`]'s
/// counterpart, for NARs read back from a cache.
pub struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    read: u64,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: sha2::Sha256::new(), read: 0 }
    }

    /// The digest and byte count of everything read.
    pub fn finish(self) -> (Sha256Hash, u64) {
        (Sha256Hash(self.hasher.finalize().into()), self.read)
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The three spellings of SHA-256("") that Nix prints (checked with
    // `nix-hash --to-base32` and `nix hash to-sri`).
    const NIX32: &str = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    const HEX: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const SRI: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn parses_every_form_to_the_same_digest() {
        let expected = Sha256Hash(sha2::Sha256::digest(b"").into());
        for s in [NIX32, HEX, SRI] {
            assert_eq!(s.parse::<Sha256Hash>().unwrap(), expected, "{s}");
        }
        assert_eq!(expected.to_string(), NIX32);
    }

    #[test]
    fn rejects_bad_hashes() {
        for bad in [
            "",
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
            "md5:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
            "sha512-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF==",
            "sha256-!!!!",
        ] {
            assert!(bad.parse::<Sha256Hash>().is_err(), "accepted {bad:?}");
        }
    }

    // Digests of "" in each algorithm, spelled as Nix 2.8 prints them:
    // `nix-hash --type ALGO --flat EMPTY` (base16), `nix-hash --type ALGO
    // --to-base32 HEX`, and `nix hash to-base64 --type ALGO HEX`.
    const EMPTY: [(HashAlgorithm, &str, &str, &str); 4] = [
        (
            HashAlgorithm::Md5,
            "d41d8cd98f00b204e9800998ecf8427e",
            "3y8bwfr609h3lh9ch0izcqq7fl",
            "1B2M2Y8AsgTpgAmY7PhCfg==",
        ),
        (
            HashAlgorithm::Sha1,
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "143xibwh31h9bvxzalr0sjvbbvpa6ffs",
            "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
        ),
        (
            HashAlgorithm::Sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        ),
        (
            HashAlgorithm::Sha512,
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
            "0zdl9zrg8r3i9c1g90lgg9ip5ijzv3yhz91i0zzn3r8ap9ws784gkp9dk9j3aglhgf1amqb0pj21mh7h1nxcl18akqvvf7ggqsy30yg",
            "z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
        ),
    ];

    #[test]
    fn parses_each_algorithm_in_each_encoding() {
        for (algorithm, hex, nix32, base64) in EMPTY {
            let expected = Hash::parse_unprefixed(hex, algorithm).unwrap();
            assert_eq!(expected.digest().len(), algorithm.size());
            assert_eq!(expected.to_string(), format!("{algorithm}:{nix32}"));
            for s in [hex.to_uppercase().as_str(), nix32, base64] {
                assert_eq!(Hash::parse_unprefixed(s, algorithm).unwrap(), expected, "{s}");
            }
            assert_eq!(algorithm.name().parse::<HashAlgorithm>().unwrap(), algorithm);
        }
        let sha256 = Sha256Hash(sha2::Sha256::digest(b"").into());
        assert_eq!(Hash::from(sha256), Hash::parse_unprefixed(EMPTY[2].1, HashAlgorithm::Sha256).unwrap());
    }

    #[test]
    fn rejects_bad_unprefixed_hashes() {
        let (_, hex, nix32, base64) = EMPTY[2];
        let sha256 = HashAlgorithm::Sha256;
        for bad in [
            "",
            &hex[1..],
            &format!("{}g", &hex[1..]),
            &format!("{}e", &nix32[1..]),
            // Non-zero padding bits in the first nix32 character.
            &format!("z{}", &nix32[1..]),
            &format!("sha256-{base64}"),
            &format!("{}\n", &base64[..43]),
            &format!("{}V=", &base64[..42]),
        ] {
            assert!(Hash::parse_unprefixed(bad, sha256).is_err(), "accepted {bad:?}");
        }
        // The length decides the encoding: a sha1 hash is not a valid sha256 one.
        assert!(Hash::parse_unprefixed(EMPTY[1].1, sha256).is_err());
        assert!("blake3".parse::<HashAlgorithm>().is_err());
        assert!("SHA256".parse::<HashAlgorithm>().is_err());
    }

    #[test]
    fn hashing_writer_hashes_and_counts() {
        use std::io::Write;
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (hash, size, inner) = w.finish();
        assert_eq!(hash, Sha256Hash(sha2::Sha256::digest(b"hello world").into()));
        assert_eq!(size, 11);
        assert_eq!(inner, b"hello world");
    }

    #[test]
    fn debug_is_nixs_spelling() {
        let sha256: Sha256Hash = NIX32.parse().unwrap();
        assert_eq!(format!("{sha256:?}"), NIX32);
        assert_eq!(format!("{:?}", Hash::from(sha256)), format!("{}", Hash::from(sha256)));
        assert!(format!("{:?}", Hash::from(sha256)).contains(&NIX32[7..]));
    }

    #[test]
    fn hashing_writer_flushes_what_it_wraps() {
        use std::io::Write;
        let mut w = HashingWriter::new(std::io::BufWriter::new(Vec::new()));
        w.write_all(b"abc").unwrap();
        w.flush().unwrap();
        assert_eq!(w.get_mut().get_ref().as_slice(), b"abc");
    }
}
