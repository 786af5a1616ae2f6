//! The formats of Nix this program reads and writes, as pure code: no I/O, no
//! file system, no clock. Each module opens with what the format is and an
//! example, and is tested against bytes real Nix wrote.
//!
//! * [`nixbase32`]: Nix's base-32 alphabet and bit order.
//! * [`hash`]: digests in the spellings Nix prints.
//! * [`content_address`]: `text:`/`fixed:` content addresses (`CA:`).
//! * [`store_path`]: `<store dir>/<hash>-<name>`, and the store directory itself.
//! * [`nar`]: the Nix ARchive, written as a stream.
//! * [`nar_reader`]: a NAR read back as a stream, validated, its entries reported.
//! * [`listing`]: the NAR listing (`<hash>.ls`) and the debug info index.
//! * [`compression`]: the names Nix gives compressions, and what decides an encoder's bytes.
//! * [`narinfo`]: what a binary cache says about one store path.
//! * [`cache_info`]: `nix-cache-info`, what a cache says about itself.
//! * [`manifest`]: `make-binary-cache.json`, how a cache's NARs were made.
//! * [`signature`]: `<key name>:<base64>` ed25519 signatures.
//! * [`key`]: ed25519 secret and public keys, and the fingerprint they sign.
//! * [`path_info`]: the one record of a store path's facts.
//! * [`layout`]: the names of a cache's directories.
//!
//! Each module that can refuse input has its own error enum (`thiserror`),
//! whose variants say what was wrong and carry what the message names; the
//! messages are what users read, so tests compare them.

pub mod cache_info;
pub mod compression;
pub mod content_address;
pub mod hash;
pub mod key;
pub mod layout;
pub mod listing;
pub mod manifest;
pub mod nar;
pub mod nar_reader;
pub mod narinfo;
pub mod nixbase32;
pub mod path_info;
pub mod signature;
pub mod store_path;

/// The layer rule, kept by a test: no module of `format` uses anything of
/// this crate outside `format` (doc comments may point there).
#[cfg(test)]
mod layer {
    #[test]
    fn format_imports_nothing_outside_itself() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/format");
        // Spelt in two, so that this test does not find itself.
        let (path_start, inside, up) =
            (["crate", "::"].concat(), ["crate", "::format"].concat(), ["super", "::super"].concat());
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                let outside = code.match_indices(&path_start).any(|(at, _)| !code[at..].starts_with(&inside))
                    || code.contains(&up);
                assert!(!outside, "{}:{}: {line}", path.display(), n + 1);
            }
            checked += 1;
        }
        assert!(checked >= 14, "only {checked} files in {}", dir.display());
    }

    /// Errors are typed: no function outside the tests returns a `String`
    /// as its error.
    #[test]
    fn format_errors_are_typed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/format");
        let stringly = [", ", "String>"].concat();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in code.lines().enumerate() {
                assert!(
                    !(line.contains("Result<") && line.contains(&stringly)),
                    "{}:{}: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}
