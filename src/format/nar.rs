//! The Nix ARchive format, written as a stream.
//!
//! A NAR is a canonical serialisation of a file system tree: only regular
//! files (with or without the executable bit), symlinks and directories, with
//! directory entries in byte order and no times, owners or other modes. Every
//! token is a string: its length as a little-endian u64, its bytes, and zero
//! padding to a multiple of 8. `nix-store --dump` is the reference for the bytes.
//!
//! The writer is a typestate: [`open`] gives the root [`Node`], a node becomes
//! exactly one of a symlink, a file ([`FileContents`], closed once all its bytes
//! are written) or a [`Directory`], whose entries are nodes again. Entry names
//! are checked (non-empty, no `/` or NUL, not `.` or `..`, strictly increasing),
//! so what comes out is always a NAR Nix would accept. This module does no I/O
//! of its own: the caller walks the file system (see [`crate::commands::build::dump`]).
//!
//! ```
//! use std::io::Write;
//! use make_binary_cache::format::nar;
//!
//! let mut buf = Vec::new();
//! let mut dir = nar::open(&mut buf)?.directory()?;
//! let mut file = dir.entry(b"hello")?.file(false, 6)?;
//! file.write_all(b"world\n")?;
//! file.close()?;
//! dir.entry(b"link")?.symlink(b"hello")?;
//! dir.close()?;
//! assert_eq!(buf.len() % 8, 0);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, Write};

const MAGIC: &[u8] = b"nix-archive-1";

/// Starts a NAR on `w` and returns its root node.
pub fn open<W: Write>(w: &mut W) -> io::Result<Node<'_, W>> {
    write_str(w, MAGIC)?;
    Ok(Node { w })
}

/// A node yet to be given a type. Dropping it unused leaves the NAR incomplete.
#[must_use = "a node must become a file, a symlink or a directory"]
pub struct Node<'w, W: Write> {
    w: &'w mut W,
}

impl<'w, W: Write> Node<'w, W> {
    pub fn symlink(self, target: &[u8]) -> io::Result<()> {
        if target.is_empty() || target.contains(&0) {
            return Err(invalid("a symlink target must be non-empty and free of NUL bytes"));
        }
        write_strs(self.w, &[b"(", b"type", b"symlink", b"target", target, b")"])
    }

    /// Starts a regular file of exactly `size` bytes, to be written through the
    /// returned [`FileContents`].
    pub fn file(self, executable: bool, size: u64) -> io::Result<FileContents<'w, W>> {
        write_strs(self.w, &[b"(", b"type", b"regular"])?;
        if executable {
            write_strs(self.w, &[b"executable", b""])?;
        }
        write_str(self.w, b"contents")?;
        self.w.write_all(&size.to_le_bytes())?;
        Ok(FileContents { w: self.w, size, left: size })
    }

    pub fn directory(self) -> io::Result<Directory<'w, W>> {
        write_strs(self.w, &[b"(", b"type", b"directory"])?;
        Ok(Directory { w: self.w, prev_name: None })
    }
}

/// The contents of a regular file being written; [`Write`] into it, then
/// [`close`](FileContents::close) it.
#[must_use = "file contents must be closed"]
pub struct FileContents<'w, W: Write> {
    w: &'w mut W,
    size: u64,
    left: u64,
}

impl<W: Write> FileContents<'_, W> {
    /// Ends the file; fails unless exactly the announced size was written.
    pub fn close(self) -> io::Result<()> {
        if self.left != 0 {
            return Err(invalid(&format!(
                "file announced as {} bytes ended after {}",
                self.size,
                self.size - self.left
            )));
        }
        write_padding(self.w, self.size)?;
        write_str(self.w, b")")
    }
}

impl<W: Write> Write for FileContents<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(invalid(&format!("file announced as {} bytes is longer", self.size)));
        }
        let n = self.w.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// A directory being written: add entries in strictly increasing byte order,
/// then [`close`](Directory::close) it.
#[must_use = "a directory must be closed"]
pub struct Directory<'w, W: Write> {
    w: &'w mut W,
    /// The previous entry's name; `Some` also means its `entry (` is still open.
    prev_name: Option<Vec<u8>>,
}

impl<W: Write> Directory<'_, W> {
    /// Starts the entry `name` and returns its node, which must be completed
    /// before the next entry.
    pub fn entry(&mut self, name: &[u8]) -> io::Result<Node<'_, W>> {
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
            return Err(invalid(&format!("invalid directory entry name {:?}", name.escape_ascii().to_string())));
        }
        if let Some(prev) = &self.prev_name {
            if name <= prev.as_slice() {
                return Err(invalid(&format!(
                    "directory entry {:?} is not after {:?}",
                    name.escape_ascii().to_string(),
                    prev.escape_ascii().to_string()
                )));
            }
            write_str(self.w, b")")?;
        }
        write_strs(self.w, &[b"entry", b"(", b"name", name, b"node"])?;
        self.prev_name = Some(name.to_vec());
        Ok(Node { w: self.w })
    }

    pub fn close(self) -> io::Result<()> {
        if self.prev_name.is_some() {
            write_str(self.w, b")")?;
        }
        write_str(self.w, b")")
    }
}

fn write_str<W: Write>(w: &mut W, s: &[u8]) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s)?;
    write_padding(w, s.len() as u64)
}

fn write_strs<W: Write>(w: &mut W, strs: &[&[u8]]) -> io::Result<()> {
    strs.iter().try_for_each(|s| write_str(w, s))
}

fn write_padding<W: Write>(w: &mut W, len: u64) -> io::Result<()> {
    let pad = (8 - len % 8) % 8;
    w.write_all(&[0; 8][..pad as usize])
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A NAR spelled out token by token, independently of the writer (and of
    /// the reader, whose tests use it too).
    pub(crate) fn tokens(ts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for t in ts {
            out.extend_from_slice(&(t.len() as u64).to_le_bytes());
            out.extend_from_slice(t);
            out.resize(out.len().div_ceil(8) * 8, 0);
        }
        out
    }

    #[test]
    fn single_file() {
        let mut buf = Vec::new();
        let mut f = open(&mut buf).unwrap().file(true, 5).unwrap();
        f.write_all(b"hello").unwrap();
        f.close().unwrap();
        let expected = tokens(&[MAGIC, b"(", b"type", b"regular", b"executable", b"", b"contents", b"hello", b")"]);
        assert_eq!(buf, expected);
    }

    #[test]
    fn directory_with_entries() {
        let mut buf = Vec::new();
        let mut dir = open(&mut buf).unwrap().directory().unwrap();
        dir.entry(b"a").unwrap().symlink(b"/nix/store/x").unwrap();
        dir.entry(b"b").unwrap().directory().unwrap().close().unwrap();
        dir.close().unwrap();
        let expected = tokens(&[
            MAGIC,
            b"(",
            b"type",
            b"directory",
            b"entry",
            b"(",
            b"name",
            b"a",
            b"node",
            b"(",
            b"type",
            b"symlink",
            b"target",
            b"/nix/store/x",
            b")",
            b")",
            b"entry",
            b"(",
            b"name",
            b"b",
            b"node",
            b"(",
            b"type",
            b"directory",
            b")",
            b")",
            b")",
        ]);
        assert_eq!(buf, expected);
    }

    #[test]
    fn rejects_what_a_nar_cannot_hold() {
        let mut buf = Vec::new();
        let mut dir = open(&mut buf).unwrap().directory().unwrap();
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(dir.entry(bad).is_err(), "accepted {bad:?}");
        }
        dir.entry(b"b").unwrap().symlink(b"x").unwrap();
        assert!(dir.entry(b"b").is_err(), "accepted a repeated name");
        assert!(dir.entry(b"a").is_err(), "accepted a name out of order");
    }

    #[test]
    fn rejects_empty_and_nul_symlink_targets() {
        let mut buf = Vec::new();
        assert!(open(&mut buf).unwrap().symlink(b"").is_err(), "accepted an empty target");
        assert!(open(&mut buf).unwrap().symlink(b"a\0b").is_err(), "accepted a NUL in the target");
    }

    /// Counts flushes, so that flushing through a node is seen to reach the
    /// underlying writer (which may be a compressor holding data back).
    struct CountFlushes<'a>(&'a std::cell::Cell<u32>);

    impl Write for CountFlushes<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            self.0.set(self.0.get() + 1);
            Ok(())
        }
    }

    #[test]
    fn file_contents_flush_the_underlying_writer() {
        let flushes = std::cell::Cell::new(0);
        let mut w = CountFlushes(&flushes);
        let mut f = open(&mut w).unwrap().file(false, 1).unwrap();
        f.write_all(b"x").unwrap();
        f.flush().unwrap();
        assert_eq!(flushes.get(), 1);
        f.close().unwrap();
    }

    #[test]
    fn file_size_is_enforced() {
        let mut buf = Vec::new();
        let mut short = open(&mut buf).unwrap().file(false, 4).unwrap();
        short.write_all(b"abc").unwrap();
        assert!(short.close().is_err());
        let mut long = open(&mut buf).unwrap().file(false, 2).unwrap();
        assert!(long.write_all(b"abc").is_err());
    }
}
