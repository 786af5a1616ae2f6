//! The NAR listing (`<hash part>.ls`) and the debug info index
//! (`debuginfo/<build id>.debug`) a cache may hold besides the NARs, built
//! from the [`Event`]s of a [`NarReader`](crate::format::nar_reader::NarReader).
//!
//! The listing is the JSON `nix copy --to 'file://D?write-nar-listing=true'`
//! writes (Nix's `listNar` in nar-accessor.cc, rendered by Nix 2.8's own JSON
//! writer in libutil's json.cc): compact, no trailing newline,
//! `{"version":1,"root":NODE}` where NODE is one of
//!
//! * `{"type":"directory","entries":{NAME:NODE,…}}`, entries in NAR (byte) order;
//! * `{"type":"regular","size":N,"executable":true,"narOffset":N}`, with
//!   `executable` only when true (Nix 2.8; newer Nix always writes it);
//! * `{"type":"symlink","target":"…"}`.
//!
//! Strings are written as Nix 2.8 writes them: `"` and `\` escaped with a
//! backslash, `\n`, `\r`, `\t` spelt so, other bytes below 0x20 as `\u00XX`,
//! every other byte as is (so a name that is not UTF-8 stays so, as in Nix).
//!
//! The debug info index (`index-debug-info=true`, Nix's `addToStoreCommon`
//! in binary-cache-store.cc) names every regular file
//! `lib/debug/.build-id/<2 hex>/<38 hex>.debug` of the NAR.
//!
//! ```
//! use make_binary_cache::format::listing::Listing;
//! use make_binary_cache::format::{nar, nar_reader::NarReader};
//! use std::io::Write;
//!
//! let mut bytes = Vec::new();
//! let mut dir = nar::open(&mut bytes)?.directory()?;
//! let mut file = dir.entry(b"hello")?.file(true, 6)?;
//! file.write_all(b"world\n")?;
//! file.close()?;
//! dir.close()?;
//!
//! let mut listing = Listing::new();
//! let mut reader = NarReader::new(|event| listing.event(event));
//! reader.feed(&bytes)?;
//! reader.finish()?;
//! assert_eq!(
//!     listing.json(),
//!     br#"{"version":1,"root":{"type":"directory","entries":{"hello":{"type":"regular","size":6,"executable":true,"narOffset":264}}}}"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::format::nar_reader::{EntryPath, Event};

/// A NAR listing being built, event by event, with the debug info members
/// met on the way.
#[derive(Debug, Clone)]
pub struct Listing {
    json: Vec<u8>,
    /// For each directory open around the current entry: whether an entry
    /// has been written in it yet.
    open: Vec<bool>,
    debug_members: Vec<DebugMember>,
}

/// A `lib/debug/.build-id/<xx>/<38 hex>.debug` file of the NAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugMember {
    /// `<xx><38 hex>.debug`: the name of its file in `debuginfo/`.
    pub key: String,
    /// Its path in the NAR, without a leading `/`.
    pub member: String,
}

impl DebugMember {
    /// The contents of `debuginfo/<key>` for a NAR file at `nar_url`
    /// (`nar/<file>`, relative to the cache), as Nix writes it (nlohmann's
    /// `dump()`, keys sorted).
    pub fn json(&self, nar_url: &str) -> String {
        // Both strings are hex digits, `/`, `.` and the URL's base-32 and
        // extension: nothing to escape.
        format!(r#"{{"archive":"../{nar_url}","member":"{}"}}"#, self.member)
    }
}

impl Default for Listing {
    fn default() -> Self {
        Self::new()
    }
}

impl Listing {
    pub fn new() -> Self {
        Self { json: br#"{"version":1,"root":"#.to_vec(), open: Vec::new(), debug_members: Vec::new() }
    }

    /// Takes the next event of the NAR.
    pub fn event(&mut self, event: Event) {
        match event {
            Event::Directory { path } => {
                self.key(path);
                self.json.extend_from_slice(br#"{"type":"directory","entries":{"#);
                self.open.push(false);
            }
            Event::DirectoryEnd { .. } => {
                self.json.extend_from_slice(b"}}");
                self.open.pop();
            }
            Event::Regular { path, executable, size, offset } => {
                self.key(path);
                let exec = if executable { r#","executable":true"# } else { "" };
                let node = format!(r#"{{"type":"regular","size":{size}{exec},"narOffset":{offset}}}"#);
                self.json.extend_from_slice(node.as_bytes());
                if let Some(member) = debug_member(path) {
                    self.debug_members.push(member);
                }
            }
            Event::Symlink { path, target } => {
                self.key(path);
                self.json.extend_from_slice(br#"{"type":"symlink","target":"#);
                write_string(&mut self.json, target);
                self.json.push(b'}');
            }
        }
    }

    /// `"name":` before an entry of the current directory; nothing for the root.
    fn key(&mut self, path: EntryPath) {
        let (Some(name), Some(written)) = (path.name(), self.open.last_mut()) else { return };
        if *written {
            self.json.push(b',');
        }
        *written = true;
        write_string(&mut self.json, name);
        self.json.push(b':');
    }

    /// The listing's bytes, once the NAR has ended.
    pub fn json(&self) -> Vec<u8> {
        let mut json = self.json.clone();
        json.push(b'}');
        json
    }

    /// The debug info files of the NAR, in NAR order.
    pub fn debug_members(&self) -> &[DebugMember] {
        &self.debug_members
    }
}

/// A JSON string as Nix 2.8's `toJSON` writes one (see the module documentation).
fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..0x20 => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// The debug member at `path`, if it is one: exactly
/// `lib/debug/.build-id/<xx>/<yyy>.debug` with `xx` two and `yyy` 38
/// lower-case hex digits, as Nix's regexes `^[0-9a-f]{2}$` and
/// `^[0-9a-f]{38}\.debug$` (binary-cache-store.cc). Only regular files count.
fn debug_member(path: EntryPath) -> Option<DebugMember> {
    let parts: Vec<&[u8]> = path.components().collect();
    let [b"lib", b"debug", b".build-id", dir, file] = parts.as_slice() else { return None };
    let hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let stem = file.strip_suffix(b".debug")?;
    if dir.len() != 2 || !hex(dir) || stem.len() != 38 || !hex(stem) {
        return None;
    }
    let (dir, file) = (std::str::from_utf8(dir).ok()?, std::str::from_utf8(file).ok()?);
    Some(DebugMember { key: format!("{dir}{file}"), member: format!("lib/debug/.build-id/{dir}/{file}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::nar_reader::NarReader;

    fn listing(nar: &[u8]) -> Listing {
        let mut listing = Listing::new();
        let mut reader = NarReader::new(|event| listing.event(event));
        reader.feed(nar).unwrap();
        reader.finish().unwrap();
        listing
    }

    fn nar_of(build: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> Vec<u8> {
        let mut bytes = Vec::new();
        build(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn strings_are_escaped_as_nix_2_8_writes_them() {
        let mut out = Vec::new();
        write_string(&mut out, b"a\"b\\c\nd\re\tf\x01g\x1f/\xe9");
        assert_eq!(out, b"\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001f/\xe9\"");
    }

    #[test]
    fn a_symlink_root_and_debug_members() {
        use std::io::Write;
        let nar = nar_of(|b| crate::format::nar::open(b)?.symlink(b"/x\"y"));
        assert_eq!(listing(&nar).json(), br#"{"version":1,"root":{"type":"symlink","target":"/x\"y"}}"#);

        let id = "0123456789abcdef0123456789abcdef012345";
        let nar = nar_of(|b| {
            let mut root = crate::format::nar::open(b)?.directory()?;
            let mut lib = root.entry(b"lib")?.directory()?;
            let mut debug = lib.entry(b"debug")?.directory()?;
            let mut ids = debug.entry(b".build-id")?.directory()?;
            let mut ab = ids.entry(b"ab")?.directory()?;
            let mut f = ab.entry(format!("{id}.debug").as_bytes())?.file(false, 1)?;
            f.write_all(b"x")?;
            f.close()?;
            ab.entry(b"short.debug")?.symlink(b"x")?;
            ab.close()?;
            ids.close()?;
            debug.close()?;
            lib.close()?;
            root.close()
        });
        let members = listing(&nar).debug_members().to_vec();
        assert_eq!(
            members,
            [DebugMember { key: format!("ab{id}.debug"), member: format!("lib/debug/.build-id/ab/{id}.debug") }]
        );
        assert_eq!(
            members[0].json("nar/x.nar"),
            format!(r#"{{"archive":"../nar/x.nar","member":"lib/debug/.build-id/ab/{id}.debug"}}"#)
        );
    }
}
