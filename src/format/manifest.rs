//! `make-binary-cache.json`: how the NARs of a cache were made.
//!
//! A compressed NAR is a function of the NAR and of how it was compressed:
//! the compression, its level, every encoder setting that changes the bytes
//! (see [`Compression::describe_encoder`]), and the compressor library's
//! version. The manifest records all of them, with this program's version,
//! in the cache's root. A later run whose own manifest is the same may copy
//! a NAR of that cache instead of compressing the store path again, and gets
//! the bytes a fresh compression would give. This is what `--reuse` relies
//! on; nothing else reads the manifest (Nix ignores the file; `merge` copies
//! it as opaque bytes).
//!
//! The text is canonical, so that two runs with the same settings write the
//! same bytes and a cache stays byte-identical from run to run: pretty JSON,
//! the keys in a fixed order (the fields below in this order, the keys of
//! `encoder` and `libraries` sorted), one trailing newline. Whether NAR
//! listings or the debug info index were written is not in it: they do not
//! change the NARs, and a cache added to by runs that differ only there stays
//! reusable.
//!
//! The claim a manifest makes is "every NAR in this cache was made so"; when
//! a cache is written and when it is kept is [`crate::commands::build`]'s business.
//! When a run with other settings adds to a cache, its manifest is replaced
//! by [`MIXED`], which claims nothing and, unlike a missing file, stays: no
//! later run can mistake the cache for one with no NARs yet and write a
//! manifest of its own.
//!
//! ```
//! use make_binary_cache::compress::Compression;
//! use make_binary_cache::format::manifest::Manifest;
//! let ours = Manifest::new(Compression::Xz, Compression::Xz.describe_encoder(None));
//! let text = ours.render();
//! assert!(text.starts_with("{\n  \"manifestVersion\": 1,\n  \"tool\": \"make-binary-cache\",\n"));
//! assert!(text.ends_with("}\n"));
//! assert_eq!(ours.compare(&text), Ok(()));
//! let level_9 = Manifest::new(Compression::Xz, Compression::Xz.describe_encoder(Some(9)));
//! assert_eq!(level_9.compare(&text).unwrap_err().to_string(), "compressionLevel: 6 there, 9 here");
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::format::compression::{Compression, EncoderDescription};

/// The manifest's file name in the cache root.
pub const FILE_NAME: &str = "make-binary-cache.json";

/// Raised when the manifest's meaning changes (not when a field's value
/// does): a manifest of another version never matches.
pub const VERSION: u32 = 1;

/// The whole text of `make-binary-cache.json` in a cache whose NARs were
/// made with different settings: it matches no manifest.
pub const MIXED: &str =
    "{\n  \"manifestVersion\": 1,\n  \"mixed\": \"the NARs of this cache were made with different settings\"\n}\n";

/// The fields, in the order they are written.
const FIELDS: [&str; 7] =
    ["manifestVersion", "tool", "toolVersion", "compression", "compressionLevel", "encoder", "libraries"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manifest {
    pub manifest_version: u32,
    /// `make-binary-cache`.
    pub tool: String,
    /// This program's version (`CARGO_PKG_VERSION`): it decides how the
    /// encoders are driven.
    pub tool_version: String,
    /// As in narinfo `Compression:` fields.
    pub compression: String,
    /// The level in effect, the default filled in; `null` for `none`.
    pub compression_level: Option<i32>,
    /// Every encoder setting that changes the bytes, by name.
    pub encoder: BTreeMap<String, String>,
    /// Compressor library → version.
    pub libraries: BTreeMap<String, String>,
}

impl Manifest {
    /// The manifest of NARs compressed with `compression` as `encoder` says.
    pub fn new(compression: Compression, encoder: EncoderDescription) -> Self {
        let owned = |pairs: Vec<(&str, String)>| pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Self {
            manifest_version: VERSION,
            tool: "make-binary-cache".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            compression: compression.name().into(),
            compression_level: encoder.level,
            encoder: owned(encoder.parameters),
            libraries: owned(encoder.libraries),
        }
    }

    /// The canonical text.
    pub fn render(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("strings and integers always serialise");
        text.push('\n');
        text
    }

    /// Whether `text` is a manifest or [`MIXED`]: what `verify` checks.
    pub fn check(text: &str) -> Result<(), Error> {
        if text == MIXED { Ok(()) } else { Self::parse(text).map(drop) }
    }

    /// Parses a manifest strictly: every field there, none unknown.
    pub fn parse(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))
    }

    /// Whether the manifest `text` (another cache's) describes NARs made as
    /// `self` makes them: `Err` names the first field that differs, with
    /// both values (`compressionLevel: 9 there, 6 here`), or says why the
    /// text is no manifest. The values are compared, not the bytes, so that
    /// the answer does not depend on formatting.
    pub fn compare(&self, text: &str) -> Result<(), Error> {
        let theirs: Value = serde_json::from_str(text).map_err(|e| Error::NotJson(e.to_string()))?;
        let Value::Object(theirs) = theirs else { return Err(Error::NotAnObject) };
        if theirs.contains_key("mixed") {
            return Err(Error::Mixed);
        }
        let Value::Object(ours) = serde_json::to_value(self).expect("a manifest serialises") else {
            unreachable!("a manifest is an object")
        };
        // The version first: the rest of another version's manifest may mean something else.
        for key in FIELDS {
            differ(key, theirs.get(key), ours.get(key))?;
        }
        if let Some(key) = theirs.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(Error::Unknown(key.clone()));
        }
        Ok(())
    }
}

/// `Err` naming `key` (and, inside objects, the nested key) when the two
/// values differ.
fn differ(key: &str, theirs: Option<&Value>, ours: Option<&Value>) -> Result<(), Error> {
    match (theirs, ours) {
        (Some(Value::Object(theirs)), Some(Value::Object(ours))) => {
            let keys: std::collections::BTreeSet<&String> = theirs.keys().chain(ours.keys()).collect();
            for nested in keys {
                differ(&format!("{key}.{nested}"), theirs.get(nested), ours.get(nested))?;
            }
            Ok(())
        }
        (theirs, ours) if theirs == ours => Ok(()),
        (theirs, ours) => {
            let show = |v: Option<&Value>| v.map_or("missing".to_owned(), Value::to_string);
            Err(Error::Differs { key: key.to_owned(), theirs: show(theirs), ours: show(ours) })
        }
    }
}

/// Why a text is no manifest, or another cache's manifest differs from ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// serde_json's message: where and what.
    #[error("{0}")]
    Json(String),
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("its NARs were made with different settings")]
    Mixed,
    #[error("{0}: there, but unknown here")]
    Unknown(String),
    #[error("{key}: {theirs} there, {ours} here")]
    Differs { key: String, theirs: String, ours: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xz(level: Option<i32>) -> Manifest {
        Manifest::new(Compression::Xz, Compression::Xz.describe_encoder(level))
    }

    #[test]
    fn the_text_is_canonical() {
        let manifest = xz(None);
        let text = manifest.render();
        assert_eq!(text, xz(Some(6)).render(), "the default level is written as the level it is");
        assert_eq!(Manifest::parse(&text).unwrap(), manifest);
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  \"") && !l.starts_with("    "))
            .map(|l| l.trim_start().split('"').nth(1).unwrap())
            .collect();
        assert_eq!(keys, FIELDS);
        assert!(text.ends_with("}\n") && !text.ends_with("\n\n"));
        // A golden excerpt: the values a reader checks by eye.
        for line in [
            "  \"compression\": \"xz\",\n  \"compressionLevel\": 6,\n",
            "    \"blockSize\": \"25165824\",\n    \"check\": \"crc64\",\n",
            &format!("  \"toolVersion\": \"{}\",\n", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        let none = Manifest::new(Compression::None, Compression::None.describe_encoder(None)).render();
        assert!(none.contains("\"compressionLevel\": null,\n  \"encoder\": {},\n  \"libraries\": {}\n"), "{none}");
    }

    #[test]
    fn compare_names_the_first_difference() {
        let ours = xz(None);
        assert_eq!(ours.compare(&ours.render()), Ok(()));
        // Formatting does not matter, values do.
        let compact = serde_json::to_string(&ours).unwrap();
        assert_eq!(ours.compare(&compact), Ok(()));
        let zstd = Manifest::new(Compression::Zstd, Compression::Zstd.describe_encoder(None)).render();
        assert_eq!(
            ours.compare(&zstd).map_err(|e| e.to_string()),
            Err("compression: \"zstd\" there, \"xz\" here".into())
        );
        let old_lib = ours.render().replace(&ours.libraries["liblzma"], "5.2.5");
        assert_eq!(
            ours.compare(&old_lib).map_err(|e| e.to_string()),
            Err(format!("libraries.liblzma: \"5.2.5\" there, \"{}\" here", ours.libraries["liblzma"]))
        );
        let old_tool = ours.render().replace(env!("CARGO_PKG_VERSION"), "0.0.1");
        assert!(ours.compare(&old_tool).unwrap_err().to_string().starts_with("toolVersion: \"0.0.1\" there"));
        let other_check = ours.render().replace("crc64", "sha256");
        assert_eq!(
            ours.compare(&other_check).map_err(|e| e.to_string()),
            Err("encoder.check: \"sha256\" there, \"crc64\" here".into())
        );
        let future = ours.render().replace("\"manifestVersion\": 1", "\"manifestVersion\": 2");
        assert_eq!(ours.compare(&future).map_err(|e| e.to_string()), Err("manifestVersion: 2 there, 1 here".into()));
        let extra = ours.render().replacen('{', "{\"threads\": 4,", 1);
        assert_eq!(ours.compare(&extra).map_err(|e| e.to_string()), Err("threads: there, but unknown here".into()));
        let missing = ours.render().replace("    \"extreme\": \"false\",\n", "");
        assert_eq!(
            ours.compare(&missing).map_err(|e| e.to_string()),
            Err("encoder.extreme: missing there, \"false\" here".into())
        );
        assert!(ours.compare("garbage").unwrap_err().to_string().starts_with("not JSON"));
        assert_eq!(ours.compare("[1]").map_err(|e| e.to_string()), Err("not a JSON object".into()));
        assert!(Manifest::parse(&extra).is_err());
        assert_eq!(
            ours.compare(MIXED).map_err(|e| e.to_string()),
            Err("its NARs were made with different settings".into())
        );
        assert_eq!(Manifest::check(MIXED), Ok(()));
        assert_eq!(Manifest::check(&ours.render()), Ok(()));
        assert!(Manifest::check(&extra).is_err());
        assert!(serde_json::from_str::<Value>(MIXED).is_ok());
    }
}
