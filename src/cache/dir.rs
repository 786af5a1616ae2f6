//! A cache directory whose files are opened beneath it and nowhere else.
//!
//! Every file that `verify`, `sign`, `merge` and `--reuse` read from a cache
//! (narinfos, NARs, `.ls` listings, the manifest, `nix-cache-info`,
//! `debuginfo/` entries) comes through [`CacheDir`]: opened relative to the
//! directory, without following a symlink anywhere on the way (the file
//! itself, `nar/`, or any directory between), and only if it is a regular
//! file. So a symlink `nar/x.nar.xz → /etc/shadow` or `nar → /` reads
//! nothing outside the cache, and a FIFO is refused instead of waited for
//! (it is opened with `O_NONBLOCK`, then `fstat`ed). Small files are read
//! with a bound ([`CacheDir::read_small`]), so a listing linked to a huge
//! file, or a device, cannot exhaust memory.
//!
//! Linux's `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` does this in one
//! call; where the kernel lacks it or a sandbox forbids it, the path is
//! walked one component at a time with `O_NOFOLLOW`. The cache directory
//! itself may be a symlink (`./result` usually is): only what lies beneath
//! it is held to the rule.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The most a narinfo may have: Nix's own are a few hundred bytes, a path
/// with thousands of references some hundred KiB.
pub const MAX_NARINFO: u64 = 16 << 20;
/// The most a small file of ours or Nix's may have: `nix-cache-info`, the
/// manifest, a `debuginfo/` entry.
pub const MAX_SMALL_FILE: u64 = 1 << 20;

/// The most a NAR listing of a NAR of `nar_size` bytes may have: a listing
/// entry is never much longer than the NAR's framing of the same entry
/// (each name and size there takes 16 bytes or more), so twice the NAR and
/// a MiB is generous.
pub fn max_listing(nar_size: u64) -> u64 {
    nar_size.saturating_mul(2).saturating_add(1 << 20)
}

/// Why a file of the cache was not opened or read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{} is missing", .0.display())]
    Missing(PathBuf),
    #[error(
        "{} is a symlink, or a directory on its way is: a cache's files are read only inside it, never through a \
         symlink",
        .0.display()
    )]
    Symlink(PathBuf),
    #[error("{} is not a regular file but {}", .0.display(), .1)]
    NotRegular(PathBuf, &'static str),
    #[error("{} has more than {} bytes, more than such a file may have", .0.display(), .1)]
    TooLarge(PathBuf, u64),
    #[error("{} is not a plain path inside the cache", .0.display())]
    NotBeneath(PathBuf),
    #[error("reading {}: {}", .0.display(), .1)]
    Io(PathBuf, #[source] io::Error),
}

impl OpenError {
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing(_))
    }
}

/// A cache directory, held open.
#[derive(Debug)]
pub struct CacheDir {
    path: PathBuf,
    dir: OwnedFd,
}

/// Whether `openat2` works here; cleared at its first refusal.
static OPENAT2: AtomicBool = AtomicBool::new(true);

impl CacheDir {
    /// Opens the directory `path` (following a symlink to it).
    pub fn open(path: &Path) -> io::Result<Self> {
        let c = cstring(path.as_os_str())?;
        // SAFETY: a valid NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just opened and owned by no one else.
        Ok(Self { path: path.to_owned(), dir: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// The directory as it was given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory itself, open (to `flock` or `syncfs` it).
    pub fn as_file(&self) -> io::Result<File> {
        Ok(File::from(self.dir.try_clone()?))
    }

    /// Opens the regular file `rel` beneath the cache for reading.
    pub fn open_file(&self, rel: &Path) -> Result<File, OpenError> {
        Ok(self.open_regular(rel)?.0)
    }

    /// The size of the regular file `name` at the top of the cache (not a
    /// symlink); `None` when there is no such file. One `fstatat`, where
    /// opening it would take three calls.
    pub fn regular_file_size(&self, name: &str) -> Option<u64> {
        let st = self.lstat(name)?;
        (st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(st.st_size as u64)
    }

    /// `fstatat` of the entry `name` at the top of the cache, not following
    /// a symlink; `None` when there is none.
    fn lstat(&self, name: &str) -> Option<libc::stat> {
        let c = cstring(OsStr::new(name)).ok()?;
        // SAFETY: plain data; filled by fstatat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: an open descriptor, a NUL-terminated name, a valid buffer.
        let rc = unsafe { libc::fstatat(self.dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        (rc == 0).then_some(st)
    }

    /// [`open_file`](Self::open_file), with its metadata.
    fn open_regular(&self, rel: &Path) -> Result<(File, std::fs::Metadata), OpenError> {
        let shown = self.path.join(rel);
        let fd = self
            .open_beneath(rel, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)
            .map_err(|e| refused(e, &self.path, shown.clone()))?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| OpenError::Io(shown.clone(), e))?;
        let kind = meta.file_type();
        if !kind.is_file() {
            let what = if kind.is_dir() {
                "a directory"
            } else if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_socket() {
                "a socket"
            } else if kind.is_char_device() || kind.is_block_device() {
                "a device"
            } else {
                "something else"
            };
            return Err(OpenError::NotRegular(shown, what));
        }
        Ok((file, meta))
    }

    /// The whole of the small file `rel`, which may have `max` bytes at most.
    pub fn read_small(&self, rel: &Path, max: u64) -> Result<Vec<u8>, OpenError> {
        let (file, meta) = self.open_regular(rel)?;
        self.read_open(file, meta.len(), rel, max)
    }

    /// [`read_text`](Self::read_text), with the file's [`Stamp`].
    pub fn read_text_stamped(&self, rel: &Path, max: u64) -> Result<(String, Stamp), OpenError> {
        let (file, meta) = self.open_regular(rel)?;
        let stamp = Stamp::of(&meta);
        Ok((self.utf8(rel, self.read_open(file, meta.len(), rel, max)?)?, stamp))
    }

    /// The [`Stamp`] of the entry `name` at the top of the cache, not
    /// following a symlink; `None` when there is none.
    pub fn stamp(&self, name: &str) -> Option<Stamp> {
        let st = self.lstat(name)?;
        Some(Stamp { ino: st.st_ino, size: st.st_size as u64, mtime: (st.st_mtime, st.st_mtime_nsec) })
    }

    /// [`read_small`](Self::read_small) as UTF-8 text.
    pub fn read_text(&self, rel: &Path, max: u64) -> Result<String, OpenError> {
        self.utf8(rel, self.read_small(rel, max)?)
    }

    /// All of `file`, opened as `rel`, at most `max` bytes of it; `size`
    /// (what fstat said) sizes the buffer, so that a small file takes two
    /// reads, the second finding its end.
    fn read_open(&self, file: File, size: u64, rel: &Path, max: u64) -> Result<Vec<u8>, OpenError> {
        let mut bytes = Vec::with_capacity(usize::try_from(size.min(max).saturating_add(1)).unwrap_or(0));
        file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| OpenError::Io(self.path.join(rel), e))?;
        if bytes.len() as u64 > max {
            return Err(OpenError::TooLarge(self.path.join(rel), max));
        }
        Ok(bytes)
    }

    /// The contents of `rel` as text.
    fn utf8(&self, rel: &Path, bytes: Vec<u8>) -> Result<String, OpenError> {
        String::from_utf8(bytes).map_err(|_| {
            OpenError::Io(self.path.join(rel), io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
        })
    }

    /// The entries of the directory `rel` beneath the cache (`""` for the
    /// cache itself), with their types as stored (a symlink is a symlink),
    /// in no order. A directory reached through a symlink is refused like a
    /// file.
    pub fn list(&self, rel: &Path) -> Result<Vec<(OsString, Kind)>, OpenError> {
        let shown = self.path.join(rel);
        let fd = if rel.as_os_str().is_empty() {
            openat(self.dir.as_raw_fd(), OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
        } else {
            self.open_beneath(rel, libc::O_RDONLY | libc::O_DIRECTORY)
        };
        let fd = fd.map_err(|e| match refused(e, &self.path, shown.clone()) {
            OpenError::Io(shown, e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                OpenError::NotRegular(shown, "no directory")
            }
            refused => refused,
        })?;
        read_dir_fd(fd).map_err(|e| OpenError::Io(shown, e))
    }

    /// The directory `rel` beneath the cache, open in its turn (reached
    /// through no symlink).
    pub fn open_dir(&self, rel: &Path) -> Result<CacheDir, OpenError> {
        let shown = self.path.join(rel);
        let dir = self
            .open_beneath(rel, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| refused(e, &self.path, shown.clone()))?;
        Ok(CacheDir { path: shown, dir })
    }

    /// Removes the file `rel` beneath the cache (a symlink itself, never
    /// what it points to) and returns the bytes it held: its size, or 0 when
    /// it was already gone (another run removed it).
    pub fn remove(&self, rel: &Path) -> Result<u64, OpenError> {
        let shown = self.path.join(rel);
        let (parent, name) = match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => (Some(self.open_dir(parent)?), name),
            (_, Some(name)) => (None, name),
            _ => return Err(OpenError::NotBeneath(shown)),
        };
        let at = parent.as_ref().map_or(self.dir.as_raw_fd(), |p| p.dir.as_raw_fd());
        let c = cstring(name).map_err(|e| OpenError::Io(shown.clone(), e))?;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, string and buffer.
        if unsafe { libc::fstatat(at, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOENT) { Ok(0) } else { Err(OpenError::Io(shown, e)) };
        }
        if Kind::of(st.st_mode) == Kind::Dir {
            return Err(OpenError::NotRegular(shown, "a directory"));
        }
        // SAFETY: valid descriptor and string.
        if unsafe { libc::unlinkat(at, c.as_ptr(), 0) } != 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOENT) { Ok(0) } else { Err(OpenError::Io(shown, e)) };
        }
        Ok(st.st_size as u64)
    }

    /// `openat` of `rel` beneath the directory with `flags`, following no
    /// symlink.
    fn open_beneath(&self, rel: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
        let mut parts = Vec::new();
        for part in rel.components() {
            match part {
                Component::Normal(name) => parts.push(name),
                Component::CurDir => {}
                _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
            }
        }
        let Some((last, dirs)) = parts.split_last() else { return Err(io::Error::from(io::ErrorKind::InvalidInput)) };
        let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        #[cfg(target_os = "linux")]
        if OPENAT2.load(Ordering::Relaxed) {
            let c = cstring(rel.as_os_str())?;
            // SAFETY: open_how is plain data; zero is its default.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = flags as u64;
            how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
            loop {
                // SAFETY: the descriptor is open, the path NUL-terminated,
                // `how` lives across the call and its size is passed.
                let fd = unsafe {
                    libc::syscall(
                        libc::SYS_openat2,
                        self.dir.as_raw_fd(),
                        c.as_ptr(),
                        &how as *const libc::open_how,
                        std::mem::size_of::<libc::open_how>(),
                    )
                };
                if fd >= 0 {
                    // SAFETY: a descriptor just opened and owned by no one else.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    // A rename raced the lookup: look again.
                    Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                    // No openat2 (before Linux 5.6), or a seccomp filter
                    // refusing it: walk instead, from now on.
                    Some(libc::ENOSYS) | Some(libc::EPERM) => {
                        OPENAT2.store(false, Ordering::Relaxed);
                        break;
                    }
                    _ => return Err(e),
                }
            }
        }
        let mut dir: Option<OwnedFd> = None;
        for name in dirs {
            let at = dir.as_ref().map_or(self.dir.as_raw_fd(), |d| d.as_raw_fd());
            dir = Some(openat(at, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW)?);
        }
        let at = dir.as_ref().map_or(self.dir.as_raw_fd(), |d| d.as_raw_fd());
        openat(at, last, flags)
    }
}

/// What a refused `open_beneath` of `shown`, beneath `root`, means.
fn refused(e: io::Error, root: &Path, shown: PathBuf) -> OpenError {
    // A symlink where a directory is wanted, on the walk's way or at its
    // end (the cache directory itself may be one); else a file on the way.
    let through_symlink = || shown.ancestors().take_while(|p| *p != root).any(|p| p.is_symlink());
    match e.raw_os_error() {
        Some(libc::ENOENT) => OpenError::Missing(shown),
        Some(libc::ELOOP | libc::EXDEV) => OpenError::Symlink(shown),
        Some(libc::ENOTDIR) if through_symlink() => OpenError::Symlink(shown),
        _ if e.kind() == io::ErrorKind::InvalidInput => OpenError::NotBeneath(shown),
        _ => OpenError::Io(shown, e),
    }
}

fn openat(at: libc::c_int, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstring(name)?;
    // SAFETY: `at` is an open descriptor, `c` NUL-terminated and alive.
    let fd = unsafe { libc::openat(at, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened and owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// The entries of the open directory `fd`, without `.` and `..`.
fn read_dir_fd(fd: OwnedFd) -> io::Result<Vec<(OsString, Kind)>> {
    // std's ReadDir wants a path, and `/proc/self/fd` may be hidden. An
    // entry whose type the file system does not store is `fstatat`ed.
    let raw = fd.as_raw_fd();
    // SAFETY: fdopendir takes ownership of a valid descriptor; from here
    // on it is closed by closedir, so `fd` must not close it too.
    let dir = unsafe { libc::fdopendir(raw) };
    if dir.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(fd);
    let mut entries = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; readdir reads the open stream.
        unsafe { *libc::__errno_location() = 0 };
        let entry = unsafe { libc::readdir(dir) };
        if entry.is_null() {
            let errno = io::Error::last_os_error();
            break if errno.raw_os_error() == Some(0) { Ok(()) } else { Err(errno) };
        }
        // SAFETY: readdir returned a valid entry, alive until the next call.
        let (name, d_type) = unsafe { (std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()), (*entry).d_type) };
        let name = name.to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let stored = match d_type {
            libc::DT_REG => Some(Kind::File),
            libc::DT_DIR => Some(Kind::Dir),
            libc::DT_LNK => Some(Kind::Symlink),
            libc::DT_UNKNOWN => None,
            _ => Some(Kind::Other),
        };
        if let Some(kind) = stored {
            entries.push((OsString::from_vec(name.to_vec()), kind));
            continue;
        }
        // SAFETY: the stream's descriptor is open.
        let at = unsafe { libc::dirfd(dir) };
        let cname = CString::new(name).expect("no NUL in a directory entry");
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, string and buffer.
        if unsafe { libc::fstatat(at, cname.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOENT) {
                continue; // Removed since it was listed.
            }
            break Err(e);
        }
        entries.push((OsString::from_vec(name.to_vec()), Kind::of(st.st_mode)));
    };
    // SAFETY: the stream is open and closed once.
    unsafe { libc::closedir(dir) };
    result?;
    Ok(entries)
}

/// Creates the directory `path` for a run that writes a cache there,
/// returning whether it was created (`false`: it existed). `flag` names the
/// option in messages. A dangling symlink or a file there is refused with
/// what it is.
pub fn create_new_dir(path: &Path, flag: &str) -> anyhow::Result<bool> {
    use anyhow::{Context, bail};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if path.is_dir() {
                return Ok(false);
            }
            match std::fs::read_link(path) {
                Ok(target) => bail!(
                    "{flag} {} is a symlink to {}, which is no directory: give a directory, or a path that does \
                     not exist yet",
                    path.display(),
                    target.display()
                ),
                Err(_) => bail!(
                    "{flag} {} exists and is not a directory: give a directory, or a path that does not exist yet",
                    path.display()
                ),
            }
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// `path` with its symlinks resolved as far as it exists, the rest joined
/// on: where a directory yet to be created would be, to compare with
/// another before anything is created.
pub fn resolve(path: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let path = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    let mut missing = Vec::new();
    let mut existing = path.as_path();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(real) => return Ok(missing.into_iter().rev().fold(real, |p, name| p.join(name))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    missing.push(name);
                    existing = parent;
                }
                _ => return Err(e).with_context(|| format!("resolving {}", path.display())),
            },
            Err(e) => return Err(e).with_context(|| format!("resolving {}", path.display())),
        }
    }
}

/// Creates the directories of `rel` beneath `root` (which exists), one at
/// a time, refusing any that is a symlink: what is written into a cache
/// stays inside it.
pub fn create_dirs_beneath(root: &Path, rel: &Path) -> anyhow::Result<()> {
    let mut dir = root.to_path_buf();
    for part in rel.components() {
        let Component::Normal(name) = part else { anyhow::bail!("{} is not a plain path", rel.display()) };
        dir.push(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = std::fs::symlink_metadata(&dir);
                if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                    anyhow::bail!(
                        "{} is a symlink or not a directory: a cache's files are written only inside it; remove it",
                        dir.display()
                    );
                }
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("creating {}", dir.display()))),
        }
    }
    Ok(())
}

/// Which file a name held when it was read: a file replaced since (every
/// writer of ours, and `nix copy`, replaces by rename) has another inode,
/// one written in place another size or time. Cheaper to compare than the
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self { ino: meta.ino(), size: meta.size(), mtime: (meta.mtime(), meta.mtime_nsec()) }
    }
}

/// What a directory entry is, as stored: a symlink is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device: nothing a cache has.
    Other,
}

impl Kind {
    fn of(mode: libc::mode_t) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Self::File,
            libc::S_IFDIR => Self::Dir,
            libc::S_IFLNK => Self::Symlink,
            _ => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mbc-cache-dir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("cache/nar/sub")).unwrap();
        fs::write(dir.join("secret"), b"secret").unwrap();
        fs::write(dir.join("cache/nar/x.nar"), b"nar").unwrap();
        dir
    }

    /// Both ways: openat2, and the walk with `O_NOFOLLOW` (forced).
    fn each_way(test: impl Fn()) {
        test();
        OPENAT2.store(false, Ordering::Relaxed);
        test();
        OPENAT2.store(true, Ordering::Relaxed);
    }

    #[test]
    fn nothing_outside_the_cache_is_opened() {
        let dir = scratch("outside");
        symlink(dir.join("secret"), dir.join("cache/nar/link.nar")).unwrap();
        symlink(dir.join("cache/nar"), dir.join("cache/nar2")).unwrap();
        symlink(&dir, dir.join("cache/nar/sub/up")).unwrap();
        let cache = CacheDir::open(&dir.join("cache")).unwrap();
        each_way(|| {
            assert_eq!(fs::read_to_string(dir.join("cache/nar/x.nar")).unwrap(), "nar");
            let mut read = String::new();
            cache.open_file(Path::new("nar/x.nar")).unwrap().read_to_string(&mut read).unwrap();
            assert_eq!(read, "nar");
            for rel in ["nar/link.nar", "nar2/x.nar", "nar/sub/up/secret"] {
                let e = cache.open_file(Path::new(rel)).unwrap_err();
                assert!(matches!(e, OpenError::Symlink(_)), "{rel}: {e}");
                assert!(e.to_string().contains("is a symlink, or a directory on its way is"), "{e}");
            }
            for rel in ["../secret", "/etc/passwd", "nar/../../secret", ""] {
                let e = cache.open_file(Path::new(rel)).unwrap_err();
                assert!(matches!(e, OpenError::NotBeneath(_)), "{rel}: {e}");
            }
            assert!(cache.open_file(Path::new("nar/none.nar")).unwrap_err().is_missing());
            let e = cache.open_file(Path::new("nar")).unwrap_err();
            assert!(e.to_string().ends_with("nar is not a regular file but a directory"), "{e}");
            assert!(matches!(cache.list(Path::new("nar2")), Err(OpenError::Symlink(_))));
        });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fifo_is_refused_not_waited_for_and_small_files_are_bounded() {
        let dir = scratch("fifo");
        let fifo = CString::new(dir.join("cache/nar/f.nar").into_os_string().into_vec()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        fs::write(dir.join("cache/big.narinfo"), vec![b'x'; 101]).unwrap();
        let cache = CacheDir::open(&dir.join("cache")).unwrap();
        each_way(|| {
            let e = cache.open_file(Path::new("nar/f.nar")).unwrap_err();
            assert!(e.to_string().ends_with("f.nar is not a regular file but a FIFO"), "{e}");
            let e = cache.read_small(Path::new("big.narinfo"), 100).unwrap_err();
            assert!(e.to_string().ends_with("big.narinfo has more than 100 bytes, more than such a file may have"));
            assert_eq!(cache.read_small(Path::new("big.narinfo"), 101).unwrap().len(), 101);
        });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn listings_show_symlinks_as_symlinks() {
        let dir = scratch("list");
        symlink(dir.join("secret"), dir.join("cache/nar/link.nar")).unwrap();
        let cache = CacheDir::open(&dir.join("cache")).unwrap();
        each_way(|| {
            let mut top = cache.list(Path::new("")).unwrap();
            top.sort();
            assert_eq!(top, [(OsString::from("nar"), Kind::Dir)]);
            let mut nar = cache.list(Path::new("nar")).unwrap();
            nar.sort();
            let expected = [("link.nar", Kind::Symlink), ("sub", Kind::Dir), ("x.nar", Kind::File)];
            assert_eq!(nar, expected.map(|(n, k)| (OsString::from(n), k)));
        });
        fs::remove_dir_all(&dir).unwrap();
    }
}
