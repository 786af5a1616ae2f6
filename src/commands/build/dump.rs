//! Serialising a path on disk to a NAR, as `nix-store --dump` does.
//!
//! The walk reads each file once, in chunks through one reusable buffer, so
//! memory stays flat whatever the size of the files. Anything a NAR cannot
//! hold (sockets, FIFOs, device files) is an error naming the file, never
//! skipped: a NAR missing a file would not match its NarHash anyway, and the
//! error says why.
//!
//! The walk never follows a symlink and never hands the kernel a path of more
//! than one component below the root: the root is opened once, and every file
//! and directory under it is opened relative to its parent directory's
//! descriptor with `O_NOFOLLOW`. A store path changed while it is walked (a
//! directory swapped for a symlink, say) thus gives an error, or the contents
//! it had, but never the contents of whatever a symlink points at; a tree is
//! not limited in depth by `PATH_MAX`; and the kernel looks up one name per
//! file, not every component of its full path. The full path is still kept,
//! for error messages only. Each directory being walked holds a descriptor
//! open, so the depth of a tree is bounded by the open-file limit instead.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::format::nar::{self, Node};

/// Context for errors on the output side, so that a full disk is not reported
/// as a problem with the store path being read.
const WRITING: &str = "writing the NAR";

/// How much of a file is read at a time; also the buffer directories are
/// listed into, large enough for most in one call.
const CHUNK: usize = 256 * 1024;

/// Serialises paths to NARs, keeping one read buffer for all of them so that
/// thousands of tiny store paths cost no allocation each.
pub struct Dumper {
    buf: Vec<u8>,
    /// The path of the file being read, for error messages only.
    path: PathBuf,
}

impl Default for Dumper {
    fn default() -> Self {
        Self { buf: vec![0; CHUNK], path: PathBuf::new() }
    }
}

impl Dumper {
    /// Writes the NAR of `path` (which need not be a store path) to `w`.
    pub fn dump<W: Write>(&mut self, path: &Path, w: &mut W) -> Result<()> {
        self.path.clear();
        self.path.push(path);
        let name = CString::new(path.as_os_str().as_bytes())
            .with_context(|| format!("{} contains a NUL byte", path.display()))?;
        let kind = stat_kind(libc::AT_FDCWD, &name).with_context(|| format!("reading {}", path.display()))?;
        let root = nar::open(w).context(WRITING)?;
        self.node(libc::AT_FDCWD, &name, kind, root)
    }

    /// Serialises the entry `name` of the directory `dir` (`AT_FDCWD` and the
    /// whole path for the root), whose type the caller has already learnt.
    fn node<W: Write>(&mut self, dir: RawFd, name: &CStr, kind: Kind, node: Node<'_, W>) -> Result<()> {
        match kind {
            Kind::Symlink => {
                let target = readlinkat(dir, name, &mut self.buf)
                    .with_context(|| format!("reading symlink {}", self.path.display()))?;
                node.symlink(target).with_context(|| format!("writing symlink {}", self.path.display()))
            }
            Kind::Directory => self.directory(dir, name, node),
            Kind::Regular => self.file(dir, name, node),
            Kind::Other(what) => {
                bail!("{} is a {what}: a NAR holds only regular files, directories and symlinks", self.path.display())
            }
        }
    }

    fn directory<W: Write>(&mut self, parent: RawFd, name: &CStr, node: Node<'_, W>) -> Result<()> {
        let context = |path: &Path| format!("reading directory {}", path.display());
        // O_NOFOLLOW: were the directory swapped for a symlink since its type
        // was read, this fails rather than walking the symlink's target.
        let dir = openat(parent, name, libc::O_DIRECTORY).with_context(|| context(&self.path))?;
        let mut entries = list(&dir, &mut self.buf).with_context(|| context(&self.path))?;
        // NAR order is byte order of the raw names, whatever their encoding.
        entries.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));

        let mut nar_dir = node.directory().context(WRITING)?;
        for entry in entries {
            let name = entry.name.as_bytes();
            self.path.push(OsStr::from_bytes(name));
            let node = nar_dir.entry(name).with_context(|| format!("adding {} to the NAR", self.path.display()))?;
            let kind = match entry.kind {
                Some(kind) => kind,
                // The file system does not say in the listing: ask.
                None => stat_kind(dir.as_raw_fd(), &entry.name)
                    .with_context(|| format!("reading {}", self.path.display()))?,
            };
            self.node(dir.as_raw_fd(), &entry.name, kind, node)?;
            self.path.pop();
        }
        nar_dir.close().context(WRITING)
    }

    fn file<W: Write>(&mut self, dir: RawFd, name: &CStr, node: Node<'_, W>) -> Result<()> {
        let reading = |path: &Path| format!("reading {}", path.display());
        // O_NONBLOCK so that a file swapped for a FIFO cannot hang the open;
        // the type check below then rejects it.
        let mut file =
            File::from(openat(dir, name, libc::O_NONBLOCK | libc::O_NOCTTY).with_context(|| reading(&self.path))?);
        // The descriptor's own metadata, so type, mode and size are those of
        // the file actually read.
        let meta = file.metadata().with_context(|| reading(&self.path))?;
        if !meta.file_type().is_file() {
            bail!("{} changed while being read: it is now a {}", self.path.display(), describe(meta.file_type()));
        }
        // The owner's execute bit alone decides, as in Nix.
        let executable = meta.permissions().mode() & 0o100 != 0;
        let mut contents = node.file(executable, meta.len()).context(WRITING)?;
        let mut left = meta.len();
        while left > 0 {
            let want = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut self.buf[..want]).with_context(|| reading(&self.path))?;
            if n == 0 {
                bail!("{} shrank while being read ({left} bytes missing)", self.path.display());
            }
            contents.write_all(&self.buf[..n]).context(WRITING)?;
            left -= n as u64;
        }
        contents.close().context(WRITING)
    }
}

/// What a directory entry is, as far as a NAR cares.
#[derive(Clone, Copy)]
enum Kind {
    Regular,
    Directory,
    Symlink,
    /// Something a NAR cannot hold, described for the error message.
    Other(&'static str),
}

impl Kind {
    fn from_mode(mode: libc::mode_t) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::Regular,
            libc::S_IFDIR => Kind::Directory,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFSOCK => Kind::Other("socket"),
            libc::S_IFIFO => Kind::Other("FIFO"),
            libc::S_IFBLK => Kind::Other("block device"),
            libc::S_IFCHR => Kind::Other("character device"),
            _ => Kind::Other("file of unknown type"),
        }
    }

    /// The type a directory listing gives, if it gives one.
    fn from_d_type(d_type: u8) -> Option<Kind> {
        Some(match d_type {
            libc::DT_REG => Kind::Regular,
            libc::DT_DIR => Kind::Directory,
            libc::DT_LNK => Kind::Symlink,
            libc::DT_SOCK => Kind::Other("socket"),
            libc::DT_FIFO => Kind::Other("FIFO"),
            libc::DT_BLK => Kind::Other("block device"),
            libc::DT_CHR => Kind::Other("character device"),
            _ => return None,
        })
    }
}

fn describe(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_socket() {
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

/// One entry of a directory listing.
struct Entry {
    name: CString,
    /// `None` when the file system does not report types in listings.
    kind: Option<Kind>,
}

/// Opens `name` in `dir` for reading, never following a symlink.
fn openat(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is either
    // AT_FDCWD or a descriptor the caller holds open.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The type of `name` in `dir`, not following a symlink.
fn stat_kind(dir: RawFd, name: &CStr) -> io::Result<Kind> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and outlives the call; `st` is valid
    // for writes of a `struct stat`.
    let rc = unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it filled `st`.
    Ok(Kind::from_mode(unsafe { st.assume_init() }.st_mode))
}

/// The target of the symlink `name` in `dir`, read into `buf`.
fn readlinkat<'b>(dir: RawFd, name: &CStr, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    // SAFETY: `name` is NUL-terminated and outlives the call; `buf` is valid
    // for writes of `buf.len()` bytes.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    if n == buf.len() {
        // Possibly truncated; no file system allows targets this long.
        return Err(io::Error::new(io::ErrorKind::InvalidData, "symlink target too long"));
    }
    Ok(&buf[..n])
}

/// The entries of `dir` but `.` and `..`, in the order the file system gives
/// them, listed through `buf`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn list(dir: &OwnedFd, buf: &mut [u8]) -> io::Result<Vec<Entry>> {
    // The layout of struct linux_dirent64 (getdents64(2)): d_ino u64, d_off
    // i64, d_reclen u16, d_type u8, then the NUL-terminated name.
    const RECLEN: usize = 16;
    const TYPE: usize = 18;
    const NAME: usize = 19;
    let mut entries = Vec::new();
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        if n == 0 {
            return Ok(entries);
        }
        let mut records = &buf[..n];
        while !records.is_empty() {
            let reclen = records.get(RECLEN..RECLEN + 2).map_or(0, |r| usize::from(u16::from_ne_bytes([r[0], r[1]])));
            let Some(record) = records.get(..reclen).filter(|_| reclen > NAME) else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed getdents64 record"));
            };
            let name = CStr::from_bytes_until_nul(&record[NAME..])
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "unterminated name in getdents64 record"))?;
            if !matches!(name.to_bytes(), b"." | b"..") {
                entries.push(Entry { name: name.to_owned(), kind: Kind::from_d_type(record[TYPE]) });
            }
            records = &records[reclen..];
        }
    }
}

/// The entries of `dir` but `.` and `..`, in the order the file system gives
/// them. Portable but slower: `fdopendir` allocates its own buffer.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn list(dir: &OwnedFd, _buf: &mut [u8]) -> io::Result<Vec<Entry>> {
    // fdopendir takes the descriptor over; the walk still needs `dir`.
    // SAFETY: `dir` is open for the duration of the call.
    let dup = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a descriptor owned by nobody else; on success it
    // belongs to the stream, closed by closedir below.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `dup` is still ours to close.
        unsafe { libc::close(dup) };
        return Err(err);
    }
    let mut entries = Vec::new();
    let result = loop {
        // readdir signals an error only through errno, with a null return
        // like the end of the directory: clear errno first to tell them apart.
        // SAFETY: errno is thread-local; `stream` is a valid, open stream.
        let entry = unsafe {
            *errno_location() = 0;
            libc::readdir(stream)
        };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            break if err.raw_os_error() == Some(0) { Ok(()) } else { Err(err) };
        }
        // SAFETY: readdir returned a valid entry, whose name is NUL-terminated
        // and lives until the next readdir call; it is copied before that.
        let (name, d_type) = unsafe { (CStr::from_ptr((*entry).d_name.as_ptr()), (*entry).d_type) };
        if !matches!(name.to_bytes(), b"." | b"..") {
            entries.push(Entry { name: name.to_owned(), kind: Kind::from_d_type(d_type) });
        }
    };
    // SAFETY: `stream` is valid and not used after this.
    unsafe { libc::closedir(stream) };
    result.map(|()| entries)
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: always safe to call; returns this thread's errno.
    unsafe { libc::__error() }
}

#[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: always safe to call; returns this thread's errno.
    unsafe { libc::__errno() }
}
