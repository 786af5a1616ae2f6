//! Serialising a path on disk to a NAR, as `nix-store --dump` does.
//!
//! The walk reads each file once, in chunks through one reusable buffer, so
//! memory stays flat whatever the size of the files. Anything a NAR cannot
//! hold (sockets, FIFOs, device files) is an error naming the file, never
//! skipped: a NAR missing a file would not match its NarHash anyway, and the
//! error says why.

use std::ffi::OsString;
use std::fs::{self, File, FileType};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::format::nar::{self, Node};

/// Context for errors on the output side, so that a full disk is not reported
/// as a problem with the store path being read.
const WRITING: &str = "writing the NAR";

/// How much of a file is read at a time.
const CHUNK: usize = 256 * 1024;

/// Serialises paths to NARs, keeping one read buffer for all of them so that
/// thousands of tiny store paths cost no allocation each.
pub struct Dumper {
    buf: Vec<u8>,
}

impl Default for Dumper {
    fn default() -> Self {
        Self { buf: vec![0; CHUNK] }
    }
}

impl Dumper {
    /// Writes the NAR of `path` (which need not be a store path) to `w`.
    pub fn dump<W: Write>(&mut self, path: &Path, w: &mut W) -> Result<()> {
        let file_type = fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?.file_type();
        let root = nar::open(w).context(WRITING)?;
        dump_node(path, file_type, root, &mut self.buf)
    }
}

fn dump_node<W: Write>(path: &Path, file_type: FileType, node: Node<'_, W>, buf: &mut [u8]) -> Result<()> {
    if file_type.is_symlink() {
        let target = fs::read_link(path).with_context(|| format!("reading symlink {}", path.display()))?;
        node.symlink(target.as_os_str().as_bytes()).with_context(|| format!("writing symlink {}", path.display()))
    } else if file_type.is_dir() {
        dump_directory(path, node, buf)
    } else if file_type.is_file() {
        dump_file(path, node, buf).with_context(|| format!("reading {}", path.display()))
    } else {
        bail!(
            "{} is a {}: a NAR holds only regular files, directories and symlinks",
            path.display(),
            describe(file_type)
        )
    }
}

fn dump_directory<W: Write>(path: &Path, node: Node<'_, W>, buf: &mut [u8]) -> Result<()> {
    let context = || format!("reading directory {}", path.display());
    let mut entries: Vec<(OsString, FileType)> = fs::read_dir(path)
        .with_context(context)?
        .map(|entry| {
            let entry = entry?;
            Ok((entry.file_name(), entry.file_type()?))
        })
        .collect::<io::Result<_>>()
        .with_context(context)?;
    // NAR order is byte order of the raw names, whatever their encoding.
    entries.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));

    let mut dir = node.directory().context(WRITING)?;
    for (name, file_type) in entries {
        let child = path.join(&name);
        let node = dir.entry(name.as_bytes()).with_context(|| format!("adding {} to the NAR", child.display()))?;
        dump_node(&child, file_type, node, buf)?;
    }
    dir.close().context(WRITING)
}

fn dump_file<W: Write>(path: &Path, node: Node<'_, W>, buf: &mut [u8]) -> Result<()> {
    let reading = || format!("reading {}", path.display());
    let mut file = File::open(path).with_context(reading)?;
    let meta = file.metadata().with_context(reading)?;
    // The owner's execute bit alone decides, as in Nix.
    let executable = meta.permissions().mode() & 0o100 != 0;
    let mut contents = node.file(executable, meta.len()).context(WRITING)?;
    let mut left = meta.len();
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want]).with_context(reading)?;
        if n == 0 {
            bail!("{} shrank while being read ({left} bytes missing)", path.display());
        }
        contents.write_all(&buf[..n]).context(WRITING)?;
        left -= n as u64;
    }
    contents.close().context(WRITING)
}

fn describe(file_type: FileType) -> &'static str {
    if file_type.is_socket() {
        "socket"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_char_device() {
        "character device"
    } else {
        "file of unknown type"
    }
}
