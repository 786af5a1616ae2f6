//! Reading a NAR back: a streaming validator that reports what the NAR holds.
//!
//! [`NarReader`] is a push parser: feed it the NAR in chunks of any size (it
//! implements [`Write`], so a decompressor can write straight into it while
//! something else hashes the same bytes) and it checks, as the bytes arrive,
//! everything that makes a NAR one Nix would accept and `nix-store --dump`
//! could have written (see [`crate::format::nar`] for the format):
//!
//! * the magic `nix-archive-1`, then exactly the grammar of Nix's own parser
//!   (`parse` in libutil's archive.cc): every token, in its place;
//! * every length prefix, and the zero padding after every string and file;
//! * node types (`regular`, `symlink`, `directory`), the `executable` marker
//!   followed by an empty string;
//! * entry names: non-empty, no `/` or NUL, not `.` or `..`, in strictly
//!   increasing byte order within a directory (Nix's rules);
//! * symlink targets: non-empty and free of NUL (no file system can hold
//!   another);
//! * nothing after the root node ends, and nothing missing when
//!   [`finish`](NarReader::finish) is called.
//!
//! An error says what is wrong, at which byte offset and in which entry
//! ([`NarError`]). File contents are counted, never buffered: memory stays
//! bounded whatever the NAR, as names and targets are limited to
//! [`MAX_NAME_LEN`] and [`MAX_TARGET_LEN`] bytes and paths inside the NAR to
//! [`MAX_PATH_LEN`] (limits no file system a NAR can be dumped from reaches;
//! Nix itself sets none and would fail creating such files).
//!
//! What the NAR holds comes out as [`Event`]s, in NAR order: every directory
//! (and where it ends), every regular file with its size, executable bit and
//! the offset of its contents in the NAR, every symlink with its target.
//! That is what a NAR listing (`<hash>.ls`, with `narOffset`) is made of.
//!
//! ```
//! use make_binary_cache::format::{nar, nar_reader::{Event, NarReader}};
//! use std::io::Write;
//!
//! let mut bytes = Vec::new();
//! let mut dir = nar::open(&mut bytes)?.directory()?;
//! let mut file = dir.entry(b"hello")?.file(true, 6)?;
//! file.write_all(b"world\n")?;
//! file.close()?;
//! dir.close()?;
//!
//! let mut files = Vec::new();
//! let mut reader = NarReader::new(|event| {
//!     if let Event::Regular { path, executable, size, offset } = event {
//!         files.push((path.to_string(), executable, size, offset));
//!     }
//! });
//! for chunk in bytes.chunks(5) {
//!     reader.feed(chunk)?;
//! }
//! assert_eq!(reader.finish()?, bytes.len() as u64);
//! let (_, _, size, offset) = &files[0];
//! assert_eq!(&bytes[*offset as usize..][..*size as usize], b"world\n");
//! assert_eq!(files[0].0, "hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::{self, Write};

/// The longest entry name accepted, in bytes. File systems allow 255 bytes
/// (Linux) to 765 (HFS+, 255 UTF-16 units); this leaves room.
pub const MAX_NAME_LEN: usize = 4096;

/// The longest symlink target accepted, in bytes: Linux's PATH_MAX, which
/// bounds what `readlink` can return.
pub const MAX_TARGET_LEN: usize = 4096;

/// The longest path of an entry inside the NAR (names joined by `/`), which
/// bounds the memory the reader keeps for the directories it is in.
pub const MAX_PATH_LEN: usize = 64 * 1024;

const MAGIC: &[u8] = b"nix-archive-1";

/// A keyword longer than this cannot be one the grammar expects.
const MAX_KEYWORD_LEN: usize = 16;

/// The path of an entry inside the NAR: its names from the root, joined by
/// `/`; empty for the root itself. Names need not be UTF-8.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EntryPath<'a>(&'a [u8]);

impl<'a> EntryPath<'a> {
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The names from the root down; none for the root.
    pub fn components(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// The entry's own name; `None` for the root.
    pub fn name(&self) -> Option<&'a [u8]> {
        self.components().last()
    }
}

/// Bytes that are not UTF-8 are shown escaped; the root is shown as `/`.
impl fmt::Display for EntryPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for EntryPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryPath({self})")
    }
}

/// What the NAR holds, reported as the reader gets to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A directory begins; its entries follow, each with its full path, in
    /// byte order, then [`Event::DirectoryEnd`] for the same path.
    Directory {
        path: EntryPath<'a>,
    },
    /// The directory at `path` has no more entries.
    DirectoryEnd {
        path: EntryPath<'a>,
    },
    /// A regular file of `size` bytes, whose contents are the NAR's bytes
    /// `offset..offset + size` (the listing's `narOffset`). Reported when its
    /// contents begin, before they are read: they are checked later only for
    /// their length and padding.
    Regular {
        path: EntryPath<'a>,
        executable: bool,
        size: u64,
        offset: u64,
    },
    Symlink {
        path: EntryPath<'a>,
        target: &'a [u8],
    },
}

/// Why a NAR is not valid, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarError {
    /// Offset in the NAR of the token (or padding byte) that is wrong.
    pub offset: u64,
    /// The entry it is in, as [`EntryPath`] shows it.
    pub path: String,
    pub message: String,
}

impl fmt::Display for NarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid NAR at byte {} (in {}): {}", self.offset, self.path, self.message)
    }
}

impl std::error::Error for NarError {}

/// Checks a whole NAR held in memory.
pub fn validate(nar: &[u8]) -> Result<(), NarError> {
    let mut reader = NarReader::new(|_| {});
    reader.feed(nar)?;
    reader.finish().map(drop)
}

/// The streaming NAR validator; see the [module documentation](self).
pub struct NarReader<F> {
    on_event: F,
    /// Bytes consumed so far.
    offset: u64,
    /// What the bytes being read are.
    lex: Lex,
    /// What the grammar expects as the next string.
    expect: Expect,
    /// Where the string being read began (its length prefix).
    token_start: u64,
    /// The string being read, when it is buffered.
    token: Vec<u8>,
    /// The path of the current node.
    path: Vec<u8>,
    /// The directories the current node is in, innermost last.
    dirs: Vec<Dir>,
    /// The first error; every later call returns it again.
    failed: Option<NarError>,
}

struct Dir {
    /// Length of the directory's own path in `path`.
    path_len: usize,
    /// The name of its previous entry, which the next must sort after.
    last_name: Option<Vec<u8>>,
}

#[derive(Clone, Copy)]
enum Lex {
    /// A string's little-endian u64 length; `have` of its 8 bytes are in `buf`.
    Len { buf: [u8; 8], have: u8 },
    /// A string's bytes, `len` in all, collected in `token`.
    Str { len: usize },
    /// A file's contents, `left` bytes still to come, then `pad` bytes of padding.
    Contents { left: u64, pad: u8 },
    /// Zero padding, `left` bytes still to come.
    Pad { left: u8 },
}

/// The string the grammar expects next (Nix's parser, archive.cc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Magic,
    /// `(` opening a node.
    Open,
    /// `type`.
    Type,
    /// `regular`, `symlink` or `directory`.
    TypeValue,
    /// `executable` or `contents`, in a regular file.
    RegularTag,
    /// The empty string after `executable`.
    ExecutableValue,
    /// `contents`, after the executable marker.
    Contents,
    /// A file's contents; the bool is the executable bit.
    ContentsData(bool),
    /// `target`, in a symlink.
    Target,
    TargetValue,
    /// `)` closing a regular file or symlink.
    Close,
    /// `entry` or the `)` closing a directory.
    EntryOrClose,
    /// `(` opening an entry.
    EntryOpen,
    /// `name`.
    Name,
    NameValue,
    /// `node`.
    Node,
    /// `)` closing an entry.
    EntryClose,
    /// Nothing: the root node is complete.
    End,
}

impl Expect {
    /// What the error messages call the expected string.
    fn describe(self) -> &'static str {
        match self {
            Self::Magic => "the magic `nix-archive-1` (this is not a NAR)",
            Self::Open => "`(`",
            Self::Type => "`type`",
            Self::TypeValue => "a node type (`regular`, `symlink` or `directory`)",
            Self::RegularTag => "`executable` or `contents`",
            Self::ExecutableValue => "an empty string after `executable`",
            Self::Contents => "`contents`",
            Self::ContentsData(_) => "the file contents",
            Self::Target => "`target`",
            Self::TargetValue => "a symlink target",
            Self::Close => "`)`",
            Self::EntryOrClose => "`entry` or `)`",
            Self::EntryOpen => "`(`",
            Self::Name => "`name`",
            Self::NameValue => "an entry name",
            Self::Node => "`node`",
            Self::EntryClose => "`)`",
            Self::End => "the end of the NAR",
        }
    }

    fn max_len(self) -> usize {
        match self {
            Self::NameValue => MAX_NAME_LEN,
            Self::TargetValue => MAX_TARGET_LEN,
            _ => MAX_KEYWORD_LEN,
        }
    }
}

impl<F: FnMut(Event<'_>)> NarReader<F> {
    /// A reader that calls `on_event` for everything the NAR holds.
    pub fn new(on_event: F) -> Self {
        Self {
            on_event,
            offset: 0,
            lex: Lex::Len { buf: [0; 8], have: 0 },
            expect: Expect::Magic,
            token_start: 0,
            token: Vec::new(),
            path: Vec::new(),
            dirs: Vec::new(),
            failed: None,
        }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next bytes of the NAR. After an error, returns it again and
    /// reads nothing more.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), NarError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !bytes.is_empty() {
            let consumed = match self.step(bytes) {
                Ok(n) => n,
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            };
            bytes = &bytes[consumed..];
        }
        Ok(())
    }

    /// Ends the NAR: an error unless the root node is complete. Returns the
    /// NAR's size.
    pub fn finish(self) -> Result<u64, NarError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.expect == Expect::End && matches!(self.lex, Lex::Len { have: 0, .. }) {
            return Ok(self.offset);
        }
        let what = match self.lex {
            Lex::Contents { left, .. } => format!("{left} bytes of file contents"),
            Lex::Pad { left } => format!("{left} bytes of padding"),
            Lex::Len { .. } | Lex::Str { .. } => self.expect.describe().to_owned(),
        };
        Err(self.error_at(self.offset, format!("the NAR ends early, still expecting {what}")))
    }

    /// Consumes a prefix of `bytes` (at least one byte) and advances.
    fn step(&mut self, bytes: &[u8]) -> Result<usize, NarError> {
        match &mut self.lex {
            Lex::Len { buf, have } => {
                if self.expect == Expect::End {
                    return Err(self.error_at(self.offset, "trailing bytes after the end of the NAR".into()));
                }
                if *have == 0 {
                    self.token_start = self.offset;
                }
                let n = (8 - usize::from(*have)).min(bytes.len());
                buf[usize::from(*have)..][..n].copy_from_slice(&bytes[..n]);
                *have += n as u8;
                let (complete, len) = (*have == 8, u64::from_le_bytes(*buf));
                self.offset += n as u64;
                if complete {
                    self.start_string(len)?;
                }
                Ok(n)
            }
            Lex::Str { len } => {
                let len = *len;
                let n = (len - self.token.len()).min(bytes.len());
                self.token.extend_from_slice(&bytes[..n]);
                self.offset += n as u64;
                if self.token.len() == len {
                    self.end_string(len as u64)?;
                }
                Ok(n)
            }
            Lex::Contents { left, pad } => {
                let n = (*left).min(bytes.len() as u64);
                *left -= n;
                let (done, pad) = (*left == 0, *pad);
                self.offset += n;
                if done {
                    self.lex = Lex::Pad { left: pad };
                    self.expect = Expect::Close;
                    self.after_padding();
                }
                Ok(n as usize)
            }
            Lex::Pad { left } => {
                let n = usize::from(*left).min(bytes.len());
                if let Some(i) = bytes[..n].iter().position(|&b| b != 0) {
                    let at = self.offset + i as u64;
                    return Err(self.error_at(at, format!("padding byte is {:#04x}, not zero", bytes[i])));
                }
                *left -= n as u8;
                self.offset += n as u64;
                self.after_padding();
                Ok(n)
            }
        }
    }

    /// A string of `len` bytes begins: file contents are streamed, anything
    /// else is collected, if it can be what the grammar expects.
    fn start_string(&mut self, len: u64) -> Result<(), NarError> {
        if let Expect::ContentsData(executable) = self.expect {
            let offset = self.offset;
            (self.on_event)(Event::Regular { path: EntryPath(&self.path), executable, size: len, offset });
            self.lex = Lex::Contents { left: len, pad: padding(len) };
            if len == 0 {
                self.lex = Lex::Pad { left: 0 };
                self.expect = Expect::Close;
                self.after_padding();
            }
            return Ok(());
        }
        if len > self.expect.max_len() as u64 {
            let limit = match self.expect {
                Expect::NameValue | Expect::TargetValue => format!(" (at most {} bytes)", self.expect.max_len()),
                _ => String::new(),
            };
            return Err(
                self.token_error(format!("expected {}{limit}, found a string of {len} bytes", self.expect.describe()))
            );
        }
        self.token.clear();
        self.lex = Lex::Str { len: len as usize };
        if len == 0 {
            self.end_string(0)?;
        }
        Ok(())
    }

    /// The string in `token` is complete; its padding comes next.
    fn end_string(&mut self, len: u64) -> Result<(), NarError> {
        self.lex = Lex::Pad { left: padding(len) };
        let token = std::mem::take(&mut self.token);
        let result = self.on_token(&token);
        self.token = token;
        self.after_padding();
        result
    }

    /// Once padding is complete, the next string's length follows.
    fn after_padding(&mut self) {
        if let Lex::Pad { left: 0 } = self.lex {
            self.lex = Lex::Len { buf: [0; 8], have: 0 };
        }
    }

    /// Advances the grammar over one complete string.
    fn on_token(&mut self, token: &[u8]) -> Result<(), NarError> {
        let keyword = |expected: &[u8]| token == expected;
        self.expect = match self.expect {
            Expect::Magic if keyword(MAGIC) => Expect::Open,
            Expect::Open if keyword(b"(") => Expect::Type,
            Expect::Type if keyword(b"type") => Expect::TypeValue,
            Expect::TypeValue if keyword(b"regular") => Expect::RegularTag,
            Expect::TypeValue if keyword(b"symlink") => Expect::Target,
            Expect::TypeValue if keyword(b"directory") => {
                (self.on_event)(Event::Directory { path: EntryPath(&self.path) });
                self.dirs.push(Dir { path_len: self.path.len(), last_name: None });
                Expect::EntryOrClose
            }
            Expect::RegularTag if keyword(b"executable") => Expect::ExecutableValue,
            Expect::RegularTag if keyword(b"contents") => Expect::ContentsData(false),
            Expect::ExecutableValue if token.is_empty() => Expect::Contents,
            Expect::Contents if keyword(b"contents") => Expect::ContentsData(true),
            Expect::Target if keyword(b"target") => Expect::TargetValue,
            Expect::TargetValue => {
                if token.is_empty() {
                    return Err(self.token_error("the symlink target is empty".into()));
                }
                if token.contains(&0) {
                    return Err(self.token_error(format!("the symlink target {} contains NUL", shown(token))));
                }
                (self.on_event)(Event::Symlink { path: EntryPath(&self.path), target: token });
                Expect::Close
            }
            Expect::Close if keyword(b")") => self.node_done(),
            Expect::EntryOrClose if keyword(b")") => {
                (self.on_event)(Event::DirectoryEnd { path: EntryPath(&self.path) });
                self.dirs.pop();
                self.node_done()
            }
            Expect::EntryOrClose if keyword(b"entry") => Expect::EntryOpen,
            Expect::EntryOpen if keyword(b"(") => Expect::Name,
            Expect::Name if keyword(b"name") => Expect::NameValue,
            Expect::NameValue => {
                self.enter(token)?;
                Expect::Node
            }
            Expect::Node if keyword(b"node") => Expect::Open,
            Expect::EntryClose if keyword(b")") => {
                let dir = self.dirs.last().expect("an entry is inside a directory");
                self.path.truncate(dir.path_len);
                Expect::EntryOrClose
            }
            Expect::ExecutableValue => {
                return Err(self.token_error(format!(
                    "the executable marker must be followed by an empty string, not {}",
                    shown(token)
                )));
            }
            expect => {
                return Err(self.token_error(format!("expected {}, found {}", expect.describe(), shown(token))));
            }
        };
        Ok(())
    }

    /// A directory entry called `name` begins: checks the name and its order.
    fn enter(&mut self, name: &[u8]) -> Result<(), NarError> {
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
            return Err(self.token_error(format!(
                "invalid entry name {} (names are non-empty, without `/` or NUL, and not `.` or `..`)",
                shown(name)
            )));
        }
        let dir = self.dirs.last().expect("an entry is inside a directory");
        if let Some(last) = &dir.last_name
            && name <= last.as_slice()
        {
            let why = if name == last.as_slice() { "repeats" } else { "comes after" };
            return Err(self.token_error(format!(
                "entry {} {why} the entry {} (entries must be in strictly increasing byte order)",
                shown(name),
                shown(last)
            )));
        }
        let new_len = self.path.len() + usize::from(!self.path.is_empty()) + name.len();
        if new_len > MAX_PATH_LEN {
            return Err(self.token_error(format!(
                "entry {}: the path inside the NAR would be longer than {MAX_PATH_LEN} bytes",
                shown(name)
            )));
        }
        let dir = self.dirs.last_mut().expect("an entry is inside a directory");
        match &mut dir.last_name {
            Some(last) => {
                last.clear();
                last.extend_from_slice(name);
            }
            None => dir.last_name = Some(name.to_vec()),
        }
        if !self.path.is_empty() {
            self.path.push(b'/');
        }
        self.path.extend_from_slice(name);
        Ok(())
    }

    /// A node is complete: its entry closes next, or the NAR ends.
    fn node_done(&self) -> Expect {
        if self.dirs.is_empty() { Expect::End } else { Expect::EntryClose }
    }

    fn token_error(&self, message: String) -> NarError {
        self.error_at(self.token_start, message)
    }

    fn error_at(&self, offset: u64, message: String) -> NarError {
        NarError { offset, path: EntryPath(&self.path).to_string(), message }
    }
}

/// Bytes a NAR writer fed `bytes` can take: all of them, or an
/// [`io::ErrorKind::InvalidData`] error carrying the [`NarError`].
impl<F: FnMut(Event<'_>)> Write for NarReader<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.feed(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn padding(len: u64) -> u8 {
    ((8 - len % 8) % 8) as u8
}

/// A string from the NAR for an error message: quoted, escaped, cut short.
fn shown(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let cut = &bytes[..bytes.len().min(MAX)];
    let more = if bytes.len() > MAX { "…" } else { "" };
    format!("`{}`{more}", cut.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::nar;
    use crate::format::nar::tests::tokens;

    /// Every event, owned, for comparisons.
    #[derive(Debug, PartialEq, Eq)]
    enum Ev {
        Dir(String),
        End(String),
        File(String, bool, u64, u64),
        Link(String, Vec<u8>),
    }

    fn events(nar: &[u8], chunk: usize) -> Result<Vec<Ev>, NarError> {
        let mut out = Vec::new();
        let mut reader = NarReader::new(|e| {
            out.push(match e {
                Event::Directory { path } => Ev::Dir(path.to_string()),
                Event::DirectoryEnd { path } => Ev::End(path.to_string()),
                Event::Regular { path, executable, size, offset } => {
                    Ev::File(path.to_string(), executable, size, offset)
                }
                Event::Symlink { path, target } => Ev::Link(path.to_string(), target.to_vec()),
            })
        });
        for c in nar.chunks(chunk.max(1)) {
            reader.feed(c)?;
        }
        assert_eq!(reader.finish()?, nar.len() as u64);
        Ok(out)
    }

    /// A tree with every kind of node, written by our writer.
    fn sample() -> Vec<u8> {
        let mut buf = Vec::new();
        let mut root = nar::open(&mut buf).unwrap().directory().unwrap();
        let mut f = root.entry(b"a").unwrap().file(false, 3).unwrap();
        f.write_all(b"abc").unwrap();
        f.close().unwrap();
        let mut bin = root.entry(b"bin").unwrap().directory().unwrap();
        let mut f = bin.entry(b"run").unwrap().file(true, 8).unwrap();
        f.write_all(b"#!/bin/x").unwrap();
        f.close().unwrap();
        bin.entry(b"z").unwrap().symlink(b"../a").unwrap();
        bin.close().unwrap();
        root.entry(b"caf\xe9").unwrap().file(false, 0).unwrap().close().unwrap();
        root.entry(b"empty").unwrap().directory().unwrap().close().unwrap();
        root.close().unwrap();
        buf
    }

    #[test]
    fn reports_what_the_writer_wrote_in_any_chunking() {
        let nar = sample();
        let expected = events(&nar, nar.len()).unwrap();
        let offset_of = |content: &[u8]| nar.windows(content.len()).position(|w| w == content).unwrap() as u64;
        assert_eq!(
            expected,
            [
                Ev::Dir("/".into()),
                Ev::File("a".into(), false, 3, offset_of(b"abc")),
                Ev::Dir("bin".into()),
                Ev::File("bin/run".into(), true, 8, offset_of(b"#!/bin/x")),
                Ev::Link("bin/z".into(), b"../a".to_vec()),
                Ev::End("bin".into()),
                Ev::File("caf\\xe9".into(), false, 0, expected_zero_offset(&nar)),
                Ev::Dir("empty".into()),
                Ev::End("empty".into()),
                Ev::End("/".into()),
            ]
        );
        for chunk in [1, 2, 3, 7, 8, 9, 64] {
            assert_eq!(events(&nar, chunk).unwrap(), expected, "chunks of {chunk}");
        }
    }

    /// The empty file's contents begin right after its length prefix, which
    /// follows the `contents` token after `caf\xe9`'s node header.
    fn expected_zero_offset(nar: &[u8]) -> u64 {
        let name = tokens(&[b"caf\xe9"]);
        let at = nar.windows(name.len()).position(|w| w == name.as_slice()).unwrap();
        let header = tokens(&[b"node", b"(", b"type", b"regular", b"contents"]);
        (at + name.len() + header.len() + 8) as u64
    }

    #[test]
    fn single_file_and_symlink_roots() {
        let file = tokens(&[MAGIC, b"(", b"type", b"regular", b"contents", b"hello", b")"]);
        assert_eq!(events(&file, 3).unwrap(), [Ev::File("/".into(), false, 5, 96)]);
        let link = tokens(&[MAGIC, b"(", b"type", b"symlink", b"target", b"/nix/store/x", b")"]);
        assert_eq!(events(&link, 5).unwrap(), [Ev::Link("/".into(), b"/nix/store/x".to_vec())]);
    }

    /// A NAR the reader must refuse, and what the error must say.
    fn refused(nar: &[u8], offset: u64, path: &str, message: &str) {
        for chunk in [1, 5, nar.len()] {
            let err = events(nar, chunk).unwrap_err();
            assert!(err.message.contains(message), "{message:?} not in {err}");
            assert_eq!((err.offset, err.path.as_str()), (offset, path), "{err}");
        }
    }

    /// Concatenated token lists.
    fn cat(parts: &[&[&'static [u8]]]) -> Vec<&'static [u8]> {
        parts.concat()
    }

    const DIR: &[&[u8]] = &[MAGIC, b"(", b"type", b"directory"];
    const REGULAR: &[&[u8]] = &[MAGIC, b"(", b"type", b"regular"];
    const SYMLINK: &[&[u8]] = &[MAGIC, b"(", b"type", b"symlink", b"target"];

    /// A directory entry holding a symlink: 12 tokens of 16 bytes for a
    /// name of up to 8 bytes.
    fn entry(name: &'static [u8]) -> Vec<&'static [u8]> {
        vec![b"entry", b"(", b"name", name, b"node", b"(", b"type", b"symlink", b"target", b"t", b")", b")"]
    }

    #[test]
    fn every_malformation_is_caught() {
        // Offsets: the magic takes 24 bytes, `directory` and `executable`
        // 24, every other keyword 16; a directory's first entry starts at 80.
        refused(b"", 0, "/", "ends early, still expecting the magic");
        refused(&tokens(&[b"nix-archive-2"]), 0, "/", "expected the magic `nix-archive-1`");
        refused(&[0xff; 8], 0, "/", "expected the magic `nix-archive-1` (this is not a NAR), found a string of");
        refused(&tokens(&[MAGIC, b"["]), 24, "/", "expected `(`, found `[`");
        refused(&tokens(&[MAGIC, b"(", b"kind"]), 40, "/", "expected `type`, found `kind`");
        refused(
            &tokens(&[MAGIC, b"(", b"type", b"fifo"]),
            56,
            "/",
            "expected a node type (`regular`, `symlink` or `directory`), found `fifo`",
        );

        // Regular files.
        refused(
            &tokens(&cat(&[REGULAR, &[b"executable", b"x"]])),
            96,
            "/",
            "must be followed by an empty string, not `x`",
        );
        refused(
            &tokens(&cat(&[REGULAR, &[b"executable", b"", b"executable"]])),
            104,
            "/",
            "expected `contents`, found `executable`",
        );
        refused(&tokens(&cat(&[REGULAR, &[b"size"]])), 72, "/", "expected `executable` or `contents`, found `size`");
        refused(&tokens(&cat(&[REGULAR, &[b"contents", b"abc", b"("]])), 104, "/", "expected `)`, found `(`");
        refused(&tokens(&cat(&[REGULAR, &[b"contents", b"abc"]])), 104, "/", "ends early, still expecting `)`");
        refused(&tokens(&cat(&[REGULAR, &[b"contents"]])), 88, "/", "ends early, still expecting the file contents");
        // Contents (at 96..99) cut short, and padding (99..104) that is not zero.
        let full = tokens(&cat(&[REGULAR, &[b"contents", b"abc", b")"]]));
        refused(&full[..97], 97, "/", "ends early, still expecting 2 bytes of file contents");
        refused(&full[..100], 100, "/", "ends early, still expecting 4 bytes of padding");
        let mut bad_pad = full.clone();
        bad_pad[101] = 1;
        refused(&bad_pad, 101, "/", "padding byte is 0x01, not zero");
        let mut bad_pad = tokens(&[MAGIC]);
        bad_pad[22] = b' ';
        refused(&bad_pad, 22, "/", "padding byte is 0x20, not zero");
        // Trailing bytes after a complete NAR.
        let mut trailing = full.clone();
        trailing.push(0);
        refused(&trailing, full.len() as u64, "/", "trailing bytes after the end of the NAR");
        let mut trailing = full.clone();
        trailing.extend(tokens(&[b")"]));
        refused(&trailing, full.len() as u64, "/", "trailing bytes after the end of the NAR");

        // Symlinks.
        refused(&tokens(&cat(&[SYMLINK, &[b"", b")"]])), 88, "/", "the symlink target is empty");
        refused(&tokens(&cat(&[SYMLINK, &[b"a\0b", b")"]])), 88, "/", "the symlink target `a\\x00b` contains NUL");
        let long_target = vec![b'x'; MAX_TARGET_LEN + 1];
        refused(
            &tokens(&[MAGIC, b"(", b"type", b"symlink", b"target", &long_target]),
            88,
            "/",
            "expected a symlink target (at most 4096 bytes), found a string of 4097 bytes",
        );
        refused(&tokens(&[MAGIC, b"(", b"type", b"symlink", b"path"]), 72, "/", "expected `target`, found `path`");

        // Directories: entry names, their byte order, the entry structure.
        for (bad, why) in [
            (&b""[..], "invalid entry name ``"),
            (b".", "invalid entry name `.`"),
            (b"..", "invalid entry name `..`"),
            (b"a/b", "invalid entry name `a/b`"),
            (b"a\0", "invalid entry name `a\\x00`"),
        ] {
            refused(&tokens(&cat(&[DIR, &entry(bad)])), 128, "/", why);
        }
        let second_name = 80 + 192 + 48;
        let two = |a, b| tokens(&cat(&[DIR, &entry(a), &entry(b), &[b")"]]));
        refused(&two(b"b", b"a"), second_name, "/", "entry `a` comes after the entry `b`");
        refused(&two(b"b", b"b"), second_name, "/", "entry `b` repeats the entry `b`");
        // Byte order, not string order: "B" (0x42) sorts before "a" (0x61).
        refused(&two(b"a", b"B"), second_name, "/", "entry `B` comes after the entry `a`");
        assert!(validate(&two(b"B", b"a")).is_ok());
        refused(&tokens(&cat(&[DIR, &[b"file"]])), 80, "/", "expected `entry` or `)`, found `file`");
        refused(&tokens(&cat(&[DIR, &[b"entry", b"["]])), 96, "/", "expected `(`, found `[`");
        refused(&tokens(&cat(&[DIR, &[b"entry", b"(", b"nom"]])), 112, "/", "expected `name`, found `nom`");
        refused(
            &tokens(&cat(&[DIR, &[b"entry", b"(", b"name", b"x", b"nude"]])),
            144,
            "x",
            "expected `node`, found `nude`",
        );
        refused(&tokens(&cat(&[DIR, &entry(b"x")[..11], &[b"entry"]])), 256, "x", "expected `)`, found `entry`");
        refused(&tokens(&cat(&[DIR, &entry(b"x")])), 272, "/", "ends early, still expecting `entry` or `)`");
        let long_name = vec![b'n'; MAX_NAME_LEN + 1];
        refused(
            &tokens(&[MAGIC, b"(", b"type", b"directory", b"entry", b"(", b"name", &long_name]),
            128,
            "/",
            "expected an entry name (at most 4096 bytes), found a string of 4097 bytes",
        );
        // A file inside a directory: the error names it.
        let nested = tokens(&cat(&[
            DIR,
            &[b"entry", b"(", b"name", b"f", b"node", b"(", b"type", b"regular", b"contents", b"x", b"]"],
        ]));
        refused(&nested, 80 + 16 * 10, "f", "expected `)`, found `]`");

        // A huge length where a keyword belongs is refused at once, without
        // waiting for (or buffering) its bytes.
        let mut huge = tokens(&[MAGIC]);
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        refused(&huge, 24, "/", &format!("expected `(`, found a string of {} bytes", u64::MAX));
        // A length cut short.
        refused(&tokens(&[MAGIC])[..5], 5, "/", "ends early, still expecting the magic");
    }

    #[test]
    fn paths_nested_too_deep_are_refused() {
        // Directories nested until the path would exceed MAX_PATH_LEN.
        let name = vec![b'd'; 255];
        let mut ts: Vec<&[u8]> = vec![MAGIC, b"(", b"type", b"directory"];
        let depth = MAX_PATH_LEN / 256 + 1;
        for _ in 0..depth {
            ts.extend([&b"entry"[..], b"(", b"name", &name, b"node", b"(", b"type", b"directory"]);
        }
        let err = events(&tokens(&ts), 4096).unwrap_err();
        assert!(err.message.contains("longer than 65536 bytes"), "{err}");
    }

    #[test]
    fn errors_are_sticky_and_the_write_impl_carries_them() {
        let mut reader = NarReader::new(|_| {});
        let err = reader.write_all(&tokens(&[b"nope"])).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let inner = err.into_inner().unwrap().downcast::<NarError>().unwrap();
        assert_eq!(inner.offset, 0);
        assert_eq!(reader.feed(b"more").unwrap_err(), *inner);
        assert_eq!(reader.finish().unwrap_err(), *inner);
        assert!(validate(&sample()).is_ok());
    }

    mod properties {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Tree {
            File { executable: bool, contents: Vec<u8> },
            Symlink(Vec<u8>),
            Dir(BTreeMap<Vec<u8>, Tree>),
        }

        /// A directory being rebuilt: its path and the entries so far.
        type OpenDir = (Vec<u8>, BTreeMap<Vec<u8>, Tree>);

        fn name() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'B'), Just(b'.'), Just(0xe9u8)], 1..4),
                proptest::collection::vec(any::<u8>(), 1..12),
            ]
            .prop_filter("a valid name", |n| n != b"." && n != b".." && !n.contains(&b'/') && !n.contains(&0))
        }

        fn tree() -> impl Strategy<Value = Tree> {
            let leaf = prop_oneof![
                (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40))
                    .prop_map(|(executable, contents)| Tree::File { executable, contents }),
                proptest::collection::vec(1u8..=255, 1..20).prop_map(Tree::Symlink),
            ];
            leaf.prop_recursive(4, 40, 6, |inner| {
                proptest::collection::btree_map(name(), inner, 0..6).prop_map(Tree::Dir)
            })
        }

        fn write(tree: &Tree, node: nar::Node<'_, Vec<u8>>) {
            match tree {
                Tree::File { executable, contents } => {
                    let mut f = node.file(*executable, contents.len() as u64).unwrap();
                    f.write_all(contents).unwrap();
                    f.close().unwrap();
                }
                Tree::Symlink(target) => node.symlink(target).unwrap(),
                Tree::Dir(entries) => {
                    let mut dir = node.directory().unwrap();
                    for (name, child) in entries {
                        write(child, dir.entry(name).unwrap());
                    }
                    dir.close().unwrap();
                }
            }
        }

        /// The tree back from the reader's events, with file contents cut
        /// out of the NAR at the offsets the events give.
        fn rebuild(nar: &[u8], chunk: usize) -> Result<Tree, NarError> {
            let mut stack: Vec<OpenDir> = Vec::new();
            let mut root = None;
            let mut place = |stack: &mut Vec<OpenDir>, path: EntryPath, node: Tree| match stack.last_mut() {
                Some((_, entries)) => {
                    entries.insert(path.name().unwrap().to_vec(), node);
                }
                None => root = Some(node),
            };
            let mut reader = NarReader::new(|e| match e {
                Event::Directory { path } => stack.push((path.as_bytes().to_vec(), BTreeMap::new())),
                Event::DirectoryEnd { path } => {
                    let (own, entries) = stack.pop().unwrap();
                    assert_eq!(own, path.as_bytes());
                    place(&mut stack, path, Tree::Dir(entries));
                }
                Event::Regular { path, executable, size, offset } => {
                    // A flipped byte can announce more than the NAR holds;
                    // the reader refuses that once the NAR ends.
                    let range = usize::try_from(offset).ok().zip(usize::try_from(size).ok());
                    let contents = range.and_then(|(o, s)| nar.get(o..o.checked_add(s)?)).unwrap_or_default().to_vec();
                    place(&mut stack, path, Tree::File { executable, contents });
                }
                Event::Symlink { path, target } => place(&mut stack, path, Tree::Symlink(target.to_vec())),
            });
            for c in nar.chunks(chunk) {
                reader.feed(c)?;
            }
            reader.finish()?;
            Ok(root.unwrap())
        }

        fn same(a: &Tree, b: &Tree) -> bool {
            match (a, b) {
                (Tree::File { executable: e1, contents: c1 }, Tree::File { executable: e2, contents: c2 }) => {
                    e1 == e2 && c1 == c2
                }
                (Tree::Symlink(t1), Tree::Symlink(t2)) => t1 == t2,
                (Tree::Dir(d1), Tree::Dir(d2)) => {
                    d1.len() == d2.len() && d1.iter().zip(d2).all(|((n1, t1), (n2, t2))| n1 == n2 && same(t1, t2))
                }
                _ => false,
            }
        }

        fn nar_of(tree: &Tree) -> Vec<u8> {
            let mut buf = Vec::new();
            write(tree, nar::open(&mut buf).unwrap());
            buf
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn written_trees_read_back(tree in tree(), chunk in 1usize..100) {
                let nar = nar_of(&tree);
                let back = rebuild(&nar, chunk).unwrap();
                prop_assert!(same(&tree, &back), "{tree:?} came back as {back:?}");
            }

            #[test]
            fn every_proper_prefix_is_refused(tree in tree(), cut in any::<prop::sample::Index>()) {
                let nar = nar_of(&tree);
                let len = cut.index(nar.len());
                prop_assert!(validate(&nar[..len]).is_err());
            }

            #[test]
            fn flipped_bytes_never_panic(tree in tree(), at in any::<prop::sample::Index>(), bits in 1u8..=255, chunk in 1usize..64) {
                let mut nar = nar_of(&tree);
                let i = at.index(nar.len());
                nar[i] ^= bits;
                // Either outcome is fine (a flip inside file contents or a
                // name can leave a valid NAR); what matters is no panic.
                let _ = rebuild(&nar, chunk);
            }
        }
    }
}
