//! Binary cache signing keys and the fingerprint they sign.
//!
//! Nix signs a store path by signing its [`fingerprint`] with ed25519. The
//! keys are text, `<key name>:<base64>`:
//!
//! * a [`SecretKey`] file, as `nix-store --generate-binary-cache-key NAME SK
//!   PK` writes it (and `secret-key-files` and `nix store sign --key-file`
//!   read it), holds libsodium's 64-byte secret key: the 32-byte seed, then
//!   the 32-byte public key;
//! * a [`PublicKey`], an entry of `trusted-public-keys`, holds the 32-byte
//!   public key.
//!
//! Both keep the key name, which is what a [`Signature`] names: Nix looks the
//! signature's key name up among the trusted keys (`verifyDetached` in
//! libutil), so a signature only verifies under a key of the same name.
//!
//! ed25519 is deterministic, so our signature of a fingerprint is the one Nix
//! (libsodium's `crypto_sign_detached`) makes, byte for byte; the tests hold
//! such a signature. Nothing here prints secret material: errors name the key
//! and what is wrong with it, never its bytes, and the secret key is wiped
//! from memory when dropped.
//!
//! ```
//! use make_binary_cache::format::key::{PublicKey, SecretKey};
//! let sk: SecretKey = "test-1:3IGrl1aQqG+eViR40XHS/wgwq0gLZKJZ+v8x+dl/sVnJRmaOSLc3m0y1SgPUGpXPDjMa3/8/TyTRFviCRGvN3w==\n"
//!     .parse()
//!     .unwrap();
//! let pk: PublicKey = "test-1:yUZmjki3N5tMtUoD1BqVzw4zGt//P08k0Rb4gkRrzd8=".parse().unwrap();
//! assert_eq!(sk.public_key(), pk);
//! let sig = sk.sign("1;/nix/store/…");
//! assert!(pk.verify("1;/nix/store/…", &sig));
//! assert!(!pk.verify("1;/nix/store/…!", &sig));
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::format::hash::Sha256Hash;
use crate::format::signature::{KeyNameError, Signature, check_key_name};
use crate::format::store_path::StorePath;

/// What a store path's signatures sign, as Nix's `ValidPathInfo::fingerprint`
/// (libstore's path-info.cc) makes it:
/// `1;<store path>;<NarHash as sha256:nix32>;<NarSize>;<references>`, the
/// references as full store paths, sorted, joined by `,` (Nix prints a
/// `StorePathSet`, ordered by base name).
///
/// Nix refuses a NarSize of 0 ("cannot calculate fingerprint"), as no NAR is
/// empty; callers must refuse it too rather than sign it.
///
/// ```
/// use make_binary_cache::format::{key::fingerprint, store_path::StorePath};
/// let p = |s: &str| StorePath::parse("/nix/store", s).unwrap();
/// let path = p("/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b");
/// let refs = [path.clone(), p("/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a")];
/// let hash = "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw".parse().unwrap();
/// assert_eq!(
///     fingerprint(&path, &hash, 952, &refs),
///     "1;/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b;sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw;952;\
///      /nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a,/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b"
/// );
/// ```
pub fn fingerprint(store_path: &StorePath, nar_hash: &Sha256Hash, nar_size: u64, references: &[StorePath]) -> String {
    let mut references: Vec<&StorePath> = references.iter().collect();
    references.sort_by(|a, b| a.base_name().cmp(b.base_name()));
    references.dedup();
    let references: Vec<&str> = references.iter().map(|r| r.as_str()).collect();
    format!("1;{store_path};{nar_hash};{nar_size};{}", references.join(","))
}

/// An ed25519 secret key with its name, from a secret key file.
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl SecretKey {
    /// libsodium's `crypto_sign_SECRETKEYBYTES`: seed then public key.
    const LEN: usize = 64;

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key that verifies this key's signatures, under the same name.
    pub fn public_key(&self) -> PublicKey {
        PublicKey { name: self.name.clone(), key: self.key.verifying_key() }
    }

    /// The signature of `fingerprint` (see [`fingerprint`]) by this key.
    pub fn sign(&self, fingerprint: &str) -> Signature {
        let bytes = self.key.sign(fingerprint.as_bytes()).to_bytes();
        Signature::new(&self.name, bytes).expect("the key name was checked when the key was parsed")
    }
}

/// Why a key does not parse. No variant holds the key's bytes or text: it
/// may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the {what} is not of the form <key name>:<base64 key>")]
    Form { what: &'static str },
    #[error("the {what}'s name: {why}")]
    Name { what: &'static str, why: KeyNameError },
    #[error("{what} {name:?} is empty after its name")]
    Empty { what: &'static str, name: String },
    #[error("{what} {name:?}: the key is not valid base64")]
    Base64 { what: &'static str, name: String },
    #[error("{what} {name:?}: the key has {got} bytes, not {expected}")]
    Length { what: &'static str, name: String, got: usize, expected: usize },
    #[error("secret key {0:?} is corrupt: its second half is not the public key of its first half (the seed)")]
    Corrupt(String),
    #[error("public key {0:?}: its 32 bytes are not a point of ed25519")]
    NotAPoint(String),
}

impl FromStr for SecretKey {
    type Err = Error;

    /// Parses the text of a secret key file. Trailing whitespace (a final
    /// line break added by an editor) is ignored; anything else is refused
    /// with an error that names the key but never shows its bytes.
    fn from_str(text: &str) -> Result<Self, Error> {
        let what = "secret key";
        let (name, base64) = split_key(text.trim_end(), what)?;
        let bytes = Zeroizing::new(decode(base64, Self::LEN, what, name)?);
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[..32]);
        let key = SigningKey::from_bytes(&seed);
        // libsodium keeps the public key beside the seed and signs with that
        // copy, so a file whose halves disagree would make signatures that
        // verify under neither key.
        if key.verifying_key().as_bytes()[..] != bytes[32..] {
            return Err(Error::Corrupt(name.to_owned()));
        }
        Ok(Self { name: name.to_owned(), key })
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret: the public half is enough to tell keys apart.
        write!(f, "SecretKey({} for {})", self.name, self.public_key())
    }
}

/// An ed25519 public key with its name, as `trusted-public-keys` lists it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl PublicKey {
    const LEN: usize = 32;

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `signature` is this key's signature of `fingerprint`. A
    /// signature by a key of another name never verifies, as in Nix, which
    /// picks the key by the signature's name.
    ///
    /// Verification is strict, as libsodium's `crypto_sign_verify_detached`
    /// is: a non-canonical `S`, or a small-order `R` or public key, is refused.
    pub fn verify(&self, fingerprint: &str, signature: &Signature) -> bool {
        signature.key_name() == self.name
            && self
                .key
                .verify_strict(fingerprint.as_bytes(), &ed25519_dalek::Signature::from_bytes(signature.bytes()))
                .is_ok()
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    /// Parses `<name>:<base64 of 32 bytes>`; surrounding whitespace is
    /// ignored (a key file ending in a line break).
    fn from_str(text: &str) -> Result<Self, Error> {
        let what = "public key";
        let (name, base64) = split_key(text.trim(), what)?;
        let bytes = decode(base64, Self::LEN, what, name)?;
        let bytes: [u8; Self::LEN] = bytes.try_into().expect("decode checked the length");
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| Error::NotAPoint(name.to_owned()))?;
        Ok(Self { name: name.to_owned(), key })
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, STANDARD.encode(self.key.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// Splits `<name>:<base64>` at the first `:` as Nix's `Key` constructor does,
/// and checks the name as [`Signature`] does, since it will name signatures.
/// The error does not quote `text`: it may be a secret.
fn split_key<'a>(text: &'a str, what: &'static str) -> Result<(&'a str, &'a str), Error> {
    let (name, base64) = text.split_once(':').ok_or(Error::Form { what })?;
    check_key_name(name).map_err(|why| Error::Name { what, why })?;
    if base64.is_empty() {
        return Err(Error::Empty { what, name: name.to_owned() });
    }
    Ok((name, base64))
}

/// Decodes canonical padded base64 of exactly `len` bytes, of the key `name`;
/// the error never shows the input.
fn decode(base64: &str, len: usize, what: &'static str, name: &str) -> Result<Vec<u8>, Error> {
    let bytes = STANDARD.decode(base64).map_err(|_| Error::Base64 { what, name: name.to_owned() })?;
    if bytes.len() != len {
        let got = bytes.len();
        // Wipe what may be a secret of the wrong length before dropping it.
        drop(Zeroizing::new(bytes));
        return Err(Error::Length { what, name: name.to_owned(), got, expected: len });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A throwaway key pair and signatures made by real Nix 2.8:
    //
    //   nix-store --generate-binary-cache-key make-binary-cache-test-1 sk pk
    //   R=$(nix-build --no-out-link tests/fixtures/closure.nix -A a --argstr nonce sign-test-vector)
    //   nix copy --no-check-sigs --to /tmp/tv/store $R
    //   nix store sign --store /tmp/tv/store --key-file sk -r $R
    //   nix path-info --store /tmp/tv/store --json -r $R
    //
    // (the key file has no final line break; the test adds one.)
    const SK: &str = "make-binary-cache-test-1:3IGrl1aQqG+eViR40XHS/wgwq0gLZKJZ+v8x+dl/sVnJRmaOSLc3m0y1SgPUGpXPDjMa3/8/TyTRFviCRGvN3w==";
    const PK: &str = "make-binary-cache-test-1:yUZmjki3N5tMtUoD1BqVzw4zGt//P08k0Rb4gkRrzd8=";

    struct Vector {
        path: &'static str,
        nar_hash: &'static str,
        nar_size: u64,
        references: &'static [&'static str],
        signature: &'static str,
    }

    /// From `nix path-info --json`: a path referring to itself and others, in
    /// the order Nix lists them, and a path without references.
    const VECTORS: [Vector; 2] = [
        Vector {
            path: "/nix/store/9prxp416mp7fyf9lg6h588s28640i3z6-e2e-a-root",
            nar_hash: "sha256-FPgKvAcDPb2hYnz64jjQWNtCizb58zx29mG3VwgY6YM=",
            nar_size: 464,
            references: &[
                "/nix/store/5l6wbawsrjcfzvnllyhvmknl86ihvxni-e2e-link",
                "/nix/store/9prxp416mp7fyf9lg6h588s28640i3z6-e2e-a-root",
                "/nix/store/b14a5386sb5zk67zh7j3bw4v0abq3s19-e2e-b-tree",
            ],
            signature: "make-binary-cache-test-1:JM3Wx/drnEvQztKlI3RgZNZhCi0wCNcoM8/4m7OveHcL3KZCtc0Kb7gN0SImr0HKTSsYzoKld92Rhzr0fe92Dg==",
        },
        Vector {
            path: "/nix/store/wfy263cadfzz0a1ir94g1x4mk1fdavnq-e2e-tool",
            nar_hash: "sha256-H/4xaAnt4xYcEd5Sm+pavuQ/7q6Mu+cpvVW6DAsDJr0=",
            nar_size: 168,
            references: &[],
            signature: "make-binary-cache-test-1:ZBBFsMpISfURB3bf3+ZNNIvrEtVAGQGBprsFyVFko9yE1VgmhlsjPTLLEBIreIA1clGHIuuA8zFyYjFduHHhDQ==",
        },
    ];

    fn store_path(s: &str) -> StorePath {
        StorePath::parse("/nix/store", s).unwrap()
    }

    fn fingerprint_of(v: &Vector) -> String {
        let refs: Vec<StorePath> = v.references.iter().rev().map(|r| store_path(r)).collect();
        fingerprint(&store_path(v.path), &v.nar_hash.parse().unwrap(), v.nar_size, &refs)
    }

    #[test]
    fn fingerprint_is_nixs() {
        assert_eq!(
            fingerprint_of(&VECTORS[0]),
            "1;/nix/store/9prxp416mp7fyf9lg6h588s28640i3z6-e2e-a-root;\
             sha256:10z93045gdv1yrv3rwzr6s5l5nsqs0wf5ykwcahvsg830yy0my0l;464;\
             /nix/store/5l6wbawsrjcfzvnllyhvmknl86ihvxni-e2e-link,\
             /nix/store/9prxp416mp7fyf9lg6h588s28640i3z6-e2e-a-root,\
             /nix/store/b14a5386sb5zk67zh7j3bw4v0abq3s19-e2e-b-tree"
        );
        assert!(fingerprint_of(&VECTORS[1]).ends_with(";168;"));
    }

    #[test]
    fn our_signatures_are_nixs_byte_for_byte() {
        let sk: SecretKey = format!("{SK}\n").parse().unwrap();
        let pk: PublicKey = PK.parse().unwrap();
        assert_eq!(sk.public_key(), pk);
        assert_eq!(sk.public_key().to_string(), PK);
        for v in &VECTORS {
            let nixs: Signature = v.signature.parse().unwrap();
            let fp = fingerprint_of(v);
            assert!(pk.verify(&fp, &nixs), "Nix's signature of {} does not verify", v.path);
            assert_eq!(sk.sign(&fp), nixs, "{}", v.path);
            assert!(!pk.verify(&format!("{fp}x"), &nixs));
        }
    }

    #[test]
    fn verify_wants_the_same_key_name() {
        let sk: SecretKey = SK.parse().unwrap();
        let sig = sk.sign("fp");
        let renamed: PublicKey = PK.replace("make-binary-cache-test-1", "other-1").parse().unwrap();
        assert!(!renamed.verify("fp", &sig));
        let other_sig = Signature::new("other-1", *sig.bytes()).unwrap();
        assert!(renamed.verify("fp", &other_sig));
        assert!(!sk.public_key().verify("fp", &other_sig));
        let mut flipped = *sig.bytes();
        flipped[10] ^= 1;
        assert!(!sk.public_key().verify("fp", &Signature::new(sk.name(), flipped).unwrap()));
    }

    #[test]
    fn refuses_bad_keys_without_showing_them() {
        let b64 = &SK["make-binary-cache-test-1:".len()..];
        // The seed with another key's public half.
        let mut mixed = STANDARD.decode(b64).unwrap();
        mixed[40] ^= 1;
        let mixed = format!("k:{}", STANDARD.encode(&mixed));
        let cases = [
            (String::new(), "not of the form"),
            (b64.to_owned(), "not of the form"),
            (format!(":{b64}"), "the key name is empty"),
            (format!(" k:{b64}"), "contains the character ' '"),
            ("k:".to_owned(), "\"k\" is empty after its name"),
            (format!("k:{}", &b64[..86]), "secret key \"k\": the key is not valid base64"),
            (format!("k:{b64}\nk:{b64}"), "not valid base64"),
            (format!("k:{}", &PK[25..]), "the key has 32 bytes, not 64"),
            (mixed, "secret key \"k\" is corrupt: its second half is not the public key"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<SecretKey>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err:?} lacks {expected:?}");
            assert!(!err.contains(&b64[..20]) && !err.contains(&b64[50..70]), "{err:?} shows the key");
        }
        let sk: SecretKey = SK.parse().unwrap();
        let debug = format!("{sk:?}");
        assert_eq!(debug, format!("SecretKey(make-binary-cache-test-1 for {PK})"));

        for (text, expected) in [
            (format!("k:{b64}"), "public key \"k\": the key has 64 bytes, not 32"),
            ("k:yUZmjki3N5tMtUoD1BqVzw4zGt//P08k0Rb4gkRrzd9=".to_owned(), "not valid base64"),
            ("nokey".to_owned(), "not of the form"),
        ] {
            let err = text.parse::<PublicKey>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err:?} lacks {expected:?}");
        }
        let pk: PublicKey = format!("{PK}\n").parse().unwrap();
        assert_eq!(pk.to_string(), PK);
    }
}
