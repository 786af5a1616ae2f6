//! SHA-256 digests as Nix writes them: `sha256:<nix32>` in narinfo files and in
//! the builder's closure JSON, and also `sha256:<hex>` and SRI `sha256-<base64>`
//! where other tools print them (`nix path-info --json` prints SRI).
//!
//! ```
//! use make_binary_cache::format::hash::Sha256Hash;
//! let sri: Sha256Hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".parse().unwrap();
//! assert_eq!(sri.to_string(), "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
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

impl FromStr for Sha256Hash {
    type Err = String;

    /// Accepts `sha256:<nix32>`, `sha256:<hex>` and SRI `sha256-<base64>`.
    /// Other algorithms are rejected: Nix has hashed NARs with SHA-256 only.
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = if let Some(digest) = s.strip_prefix("sha256:") {
            match digest.len() {
                52 => nixbase32::decode(digest, 32).map_err(|e| e.to_string())?,
                64 => decode_hex(digest).ok_or("invalid hexadecimal digest")?,
                n => return Err(format!("a sha256 digest has 52 (nix32) or 64 (hex) characters, not {n}")),
            }
        } else if let Some(digest) = s.strip_prefix("sha256-") {
            base64::engine::general_purpose::STANDARD
                .decode(digest)
                .map_err(|e| format!("invalid base64 in SRI hash: {e}"))?
        } else {
            return Err("expected sha256:<nix32>, sha256:<hex> or sha256-<base64>".into());
        };
        let digest: [u8; 32] =
            bytes.try_into().map_err(|b: Vec<u8>| format!("a sha256 digest has 32 bytes, not {}", b.len()))?;
        Ok(Self(digest))
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

    pub fn written(&self) -> u64 {
        self.written
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
}
