//! One module per subcommand: [`build`] writes a cache (the default, and
//! mkBinaryCache's builder), [`sign`] signs one, [`verify`] checks one,
//! [`merge`] joins several, [`ls`] lists one, [`diff`] compares two, [`gc`]
//! removes what is not kept. [`catalog`] reads a cache's narinfos for the
//! last three.

pub mod build;
pub mod catalog;
pub mod diff;
pub mod gc;
pub mod ls;
pub mod merge;
pub mod sign;
pub mod verify;

/// The JSON that `ls --json` and `diff --json` print: indented, ending in a
/// line break.
fn json_text(value: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("strings and integers always serialise");
    text.push('\n');
    text
}
