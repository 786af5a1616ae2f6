//! Nix's own base-32 encoding ("nix32"), as used in store path hashes and in
//! `sha256:<nix32>` hash strings.
//!
//! It is not RFC 4648 base32: the alphabet omits `e`, `o`, `u` and `t`, and the
//! bytes are read from the end, so the first character of the string carries the
//! most significant bits of the *last* byte. A 32-byte SHA-256 becomes 52
//! characters, a 20-byte store path hash 32.
//!
//! ```
//! use make_binary_cache::format::nixbase32;
//! let bytes = [0xff; 20];
//! let s = nixbase32::encode(&bytes);
//! assert_eq!(s, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
//! assert_eq!(nixbase32::decode(&s, 20).unwrap(), bytes);
//! ```

/// The 32 characters of the alphabet, in digit order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// The value of each byte as a nix32 digit, `NOT_A_DIGIT` for the others:
/// one lookup, where a search of the alphabet was a tenth of the time spent
/// reading 100,000 narinfos.
const DIGITS: [u8; 256] = {
    let mut table = [NOT_A_DIGIT; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const NOT_A_DIGIT: u8 = 0xff;

/// The value of `c` as a nix32 digit, if it is one.
pub fn digit(c: u8) -> Option<u8> {
    Some(DIGITS[usize::from(c)]).filter(|&d| d != NOT_A_DIGIT)
}

/// Length of the encoding of `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    if n == 0 { 0 } else { (n * 8 - 1) / 5 + 1 }
}

/// Encodes `bytes` in nix32.
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        let low = u16::from(bytes[i]) >> j;
        let high = bytes.get(i + 1).map_or(0, |&next| u16::from(next) << (8 - j));
        out.push(char::from(ALPHABET[usize::from((low | high) & 0x1f)]));
    }
    out
}

/// Decodes a nix32 string that must encode exactly `n` bytes.
///
/// Strict: the length must match, every character must be in the alphabet, and
/// the padding bits of the first character must be zero, so every byte string
/// has exactly one accepted spelling.
pub fn decode(s: &str, n: usize) -> Result<Vec<u8>, DecodeError> {
    if s.len() != encoded_len(n) {
        return Err(DecodeError::Length { expected: encoded_len(n), got: s.len() });
    }
    let mut out = vec![0u8; n];
    for (pos, c) in s.bytes().rev().enumerate() {
        let digit = u16::from(digit(c).ok_or(DecodeError::Character(char::from(c)))?);
        let b = pos * 5;
        let (i, j) = (b / 8, b % 8);
        out[i] |= (digit << j) as u8;
        let carry = digit >> (8 - j);
        if i + 1 < n {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(DecodeError::Padding);
        }
    }
    Ok(out)
}

/// Why a nix32 string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("expected {expected} nix32 characters, got {got}")]
    Length { expected: usize, got: usize },
    #[error("{0:?} is not a nix32 character")]
    Character(char),
    #[error("nix32 string has non-zero padding bits")]
    Padding,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known pair from Nix itself: `nix-hash --type sha256 --to-base32` of the
    // SHA-256 of the empty string.
    const EMPTY_SHA256_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_SHA256_NIX32: &str = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn encodes_like_nix() {
        assert_eq!(encode(&hex(EMPTY_SHA256_HEX)), EMPTY_SHA256_NIX32);
    }

    #[test]
    fn decodes_like_nix() {
        assert_eq!(decode(EMPTY_SHA256_NIX32, 32).unwrap(), hex(EMPTY_SHA256_HEX));
    }

    #[test]
    fn round_trips_every_length() {
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&bytes), n).unwrap(), bytes);
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let length = DecodeError::Length { expected: 52, got: 1 }.to_string();
        assert!(length.contains("52") && length.contains('1'), "{length}");
        let character = DecodeError::Character('e').to_string();
        assert!(character.contains("'e'"), "{character}");
        assert!(DecodeError::Padding.to_string().contains("padding"));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode("0", 32), Err(DecodeError::Length { expected: 52, got: 1 }));
        let with_e = EMPTY_SHA256_NIX32.replacen('0', "e", 1);
        assert_eq!(decode(&with_e, 32), Err(DecodeError::Character('e')));
        // 52 characters hold 260 bits; the top 4 of the first character are padding.
        let padded = EMPTY_SHA256_NIX32.replacen('0', "z", 1);
        assert_eq!(decode(&padded, 32), Err(DecodeError::Padding));
    }
}
