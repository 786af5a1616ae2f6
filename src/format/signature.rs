//! Binary cache signatures: `<key name>:<base64 of the 64-byte ed25519 signature>`,
//! the value of a narinfo `Sig:` line and of an entry of `signatures` in
//! `nix path-info --json`.
//!
//! Nix splits a signature at its first `:` and wants exactly 64 bytes after it
//! (`verifyDetached` in libutil's signature code). We are stricter, because a
//! signature goes verbatim into a narinfo line: the key name must be non-empty
//! and free of `:`, whitespace and control characters, and the base64 must be
//! the canonical padded spelling of 64 bytes (88 characters ending in `==`).
//! So a parsed signature always prints back as exactly the text it came from,
//! and can never smuggle a line break (or another narinfo field) into a narinfo.
//!
//! ```
//! use make_binary_cache::format::signature::Signature;
//! let text = format!("cache.example.org-1:{}==", "A".repeat(86));
//! let sig: Signature = text.parse().unwrap();
//! assert_eq!(sig.key_name(), "cache.example.org-1");
//! assert_eq!(sig.bytes(), &[0u8; 64]);
//! assert_eq!(sig.to_string(), text);
//! assert!("k:s\nURL: nar/x.nar".parse::<Signature>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// An ed25519 signature made with the key called `key_name`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    key_name: String,
    bytes: [u8; Signature::LEN],
}

impl Signature {
    /// Bytes in an ed25519 signature (libsodium's `crypto_sign_BYTES`).
    pub const LEN: usize = 64;

    /// A signature by the key `key_name`, which must pass [`check_key_name`].
    pub fn new(key_name: &str, bytes: [u8; Self::LEN]) -> Result<Self, KeyNameError> {
        check_key_name(key_name)?;
        Ok(Self { key_name: key_name.to_owned(), bytes })
    }

    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    pub fn bytes(&self) -> &[u8; Self::LEN] {
        &self.bytes
    }
}

/// A key name as Nix uses it before the `:` of a key or signature, limited to
/// what can safely stand on a narinfo line: non-empty, without `:`, whitespace
/// or control characters.
pub fn check_key_name(name: &str) -> Result<(), KeyNameError> {
    if name.is_empty() {
        return Err(KeyNameError::Empty);
    }
    if let Some(bad) = name.chars().find(|&c| c == ':' || c.is_whitespace() || c.is_control()) {
        return Err(KeyNameError::Character { name: name.to_owned(), bad });
    }
    Ok(())
}

/// Why a name cannot name a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyNameError {
    #[error("the key name is empty")]
    Empty,
    #[error("the key name {name:?} contains the character {bad:?}")]
    Character { name: String, bad: char },
}

/// Why a `Sig:` value does not parse; each names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not of the form <key name>:<base64 signature>")]
    Form(String),
    #[error("{text:?}: {why}")]
    KeyName { text: String, why: KeyNameError },
    #[error(
        "{text:?}: the signature must be {} characters of base64 ({} bytes), not {}",
        base64::encoded_len(Signature::LEN, true).unwrap_or(0),
        Signature::LEN,
        text.split_once(':').map_or(0, |(_, b)| b.len())
    )]
    Length { text: String },
    #[error("{text:?}: the signature is not canonical base64: {why}")]
    Base64 { text: String, why: base64::DecodeError },
    #[error("{text:?}: the signature has {got} bytes")]
    Bytes { text: String, got: usize },
}

impl FromStr for Signature {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (name, base64) = s.split_once(':').ok_or_else(|| Error::Form(s.to_owned()))?;
        check_key_name(name).map_err(|why| Error::KeyName { text: s.to_owned(), why })?;
        // Length first: it bounds the work, and gives the clearer error.
        if base64.len() != base64::encoded_len(Self::LEN, true).unwrap_or(0) {
            return Err(Error::Length { text: s.to_owned() });
        }
        let bytes = STANDARD.decode(base64).map_err(|why| Error::Base64 { text: s.to_owned(), why })?;
        let bytes = bytes.try_into().map_err(|b: Vec<u8>| Error::Bytes { text: s.to_owned(), got: b.len() })?;
        Ok(Self { key_name: name.to_owned(), bytes })
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key_name, STANDARD.encode(self.bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped as cache.nixos.org signs (random bytes; tests/hostile.rs has
    // Nix verify signatures that went through here).
    const REAL: &str =
        "cache.nixos.org-1:aItucb2jMEdvkqYZji7WOy01UemOpGXpZCYvu0qXLmVNaoV4Mj/41K8uzPznXew6f1YgBxjkdjZl/N3le94ZWA==";

    #[test]
    fn parses_and_prints_back_unchanged() {
        let sig: Signature = REAL.parse().unwrap();
        assert_eq!(sig.key_name(), "cache.nixos.org-1");
        assert_eq!(sig.to_string(), REAL);
        let again = Signature::new(sig.key_name(), *sig.bytes()).unwrap();
        assert_eq!(again, sig);
    }

    #[test]
    fn rejects_anything_else() {
        let b64 = &REAL["cache.nixos.org-1:".len()..];
        let cases = [
            ("", "is not of the form"),
            ("no-colon", "is not of the form"),
            (&format!(":{b64}"), "the key name is empty"),
            (&format!("a b:{b64}"), "contains the character ' '"),
            (&format!("a\tb:{b64}"), "contains the character '\\t'"),
            (&format!("a\u{7f}:{b64}"), "contains the character '\\u{7f}'"),
            ("k:s", "must be 88 characters of base64 (64 bytes), not 1"),
            (&format!("k:{b64}\nURL: nar/x.nar"), "not 103"),
            (&format!("k:{}", &b64[..86]), "not 86"),
            (&format!("k:{}A=", &b64[..86]), "the signature has 65 bytes"),
            (&format!("k:{}=A", &b64[..86]), "not canonical base64"),
            (&format!("k:{}!==", &b64[..85]), "not canonical base64"),
            // The same 64 bytes with non-zero padding bits: Nix would accept it,
            // but it would not print back the same.
            (&format!("k:{}B==", &b64[..85]), "not canonical base64"),
            (&format!("k:{}\0==", &b64[..85]), "not canonical base64"),
            (&format!("k:x:{}", &b64[2..]), "not canonical base64"),
        ];
        for (s, expected) in cases {
            let err = s.parse::<Signature>().unwrap_err().to_string();
            assert!(err.contains(expected), "{s:?}: {err:?} lacks {expected:?}");
        }
        assert!(Signature::new("a:b", [0; 64]).is_err());
        assert!(Signature::new("a\nb", [0; 64]).is_err());
    }

    #[test]
    fn debug_shows_the_signature() {
        let sig: Signature = REAL.parse().unwrap();
        assert_eq!(format!("{sig:?}"), format!("Signature({REAL})"));
    }
}
