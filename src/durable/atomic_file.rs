//! Files that appear under their final name only once they are complete.
//!
//! A cache must never show a partial NAR or narinfo, so every file is written
//! first and named last. On Linux the file starts as an unnamed inode in its
//! directory (`O_TMPFILE`) and is given its name with `linkat`; elsewhere, or
//! where the file system or `/proc` does not allow that, it is written under a
//! temporary name and renamed. The unnamed way matters for speed: the inode
//! is allocated without holding the directory's lock, so workers creating
//! files side by side do not queue (and, in the kernel, spin) behind each
//! other, which on ext4 shortly after many deletions cost more than all the
//! hashing.
//!
//! Several runs may write into one directory at once, so a temporary name is
//! never shared: it carries the process id, a counter and a random number,
//! and is created with `O_EXCL` (a clash, however unlikely, picks another
//! name). A file is named either replacing what has that name
//! ([`AtomicFile::persist`], by `rename`, atomic for readers) or only if the
//! name is free ([`AtomicFile::persist_new`], by `link`, which never
//! replaces), so the caller can decide what to do with a file that another
//! run named first.
//!
//! A temporary name left by a killed process stays (its name starts with `.`,
//! which Nix never asks for); nothing here removes temporary files it did not
//! create, since a file of another process still running cannot be told from
//! a stale one.
//!
//! ```no_run
//! use std::io::Write;
//! use make_binary_cache::durable::atomic_file::AtomicFile;
//! let mut f = AtomicFile::create("/tmp/cache".as_ref(), "example")?;
//! f.write_all(b"StoreDir: /nix/store\n")?;
//! f.persist("nix-cache-info")?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io;

use anyhow::{Context, Result};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether an unnamed file can be named: `linkat` reaches it through
/// `/proc/self/fd`. Asked once, not for every file.
#[cfg(target_os = "linux")]
static PROC_FD: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| Path::new("/proc/self/fd").is_dir());

pub struct AtomicFile {
    file: File,
    dir: PathBuf,
    /// Where the file was written when it could not be unnamed; `None` once
    /// it has been persisted or when it is unnamed.
    temporary: Option<PathBuf>,
    /// Says in temporary names which file is being written, for people.
    label: String,
}

impl AtomicFile {
    /// Starts a file in `dir`; `label` goes into its temporary name, if it
    /// gets one.
    pub fn create(dir: &Path, label: &str) -> io::Result<Self> {
        Self::create_in(dir, label, true)
    }

    /// [`AtomicFile::create`], with `try_unnamed: false` to force the
    /// temporary-name way (for tests, which cannot otherwise reach it where
    /// `O_TMPFILE` works).
    fn create_in(dir: &Path, label: &str, try_unnamed: bool) -> io::Result<Self> {
        let label = label.to_owned();
        #[cfg(target_os = "linux")]
        if try_unnamed && *PROC_FD {
            // Readable too, so that a copy can be checked before it is named.
            let unnamed = OpenOptions::new().read(true).write(true).mode(0o644).custom_flags(libc::O_TMPFILE).open(dir);
            if let Ok(file) = unnamed {
                return Ok(Self { file, dir: dir.to_owned(), temporary: None, label });
            }
            // Not supported by this file system: fall back below.
        }
        #[cfg(not(target_os = "linux"))]
        let _ = try_unnamed;
        let (file, temporary) = with_temporary_name(dir, &label, |temporary| {
            OpenOptions::new().read(true).write(true).create_new(true).mode(0o644).open(temporary)
        })?;
        Ok(Self { file, dir: dir.to_owned(), temporary: Some(temporary), label })
    }

    /// Starts a file in `dir` holding a copy of `source`, copied with
    /// `copy_file_range` (`std::io::copy` between files), which shares the
    /// blocks where the file system can reflink. Not yet named: the caller
    /// checks the copy first.
    pub fn copy_of(dir: &Path, label: &str, mut source: &File) -> io::Result<Self> {
        let copy = Self::create(dir, label)?;
        io::copy(&mut source, &mut copy.as_file())?;
        Ok(copy)
    }

    /// The file being written, open for reading and writing: to write into
    /// it as a `&File`, or to read back what was written.
    pub fn as_file(&self) -> &File {
        &self.file
    }

    /// Gives the file its final `name` in its directory, atomically replacing
    /// any file of that name.
    pub fn persist(mut self, name: &str) -> io::Result<()> {
        let target = self.dir.join(name);
        let temporary = match self.temporary.take() {
            Some(temporary) => temporary,
            None => match link_unnamed(&self.file, &target) {
                // linkat does not replace: link under a temporary name of
                // our own and rename that over the target.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    with_temporary_name(&self.dir, &self.label, |temporary| link_unnamed(&self.file, temporary))?.1
                }
                named => return named,
            },
        };
        fs::rename(&temporary, &target).inspect_err(|_| {
            let _ = fs::remove_file(&temporary);
        })
    }

    /// Gives the file its final `name` only if no file has that name; if one
    /// has, gives the file back, still unnamed (or under its temporary name),
    /// to be dropped or [`persist`](AtomicFile::persist)ed over it.
    pub fn persist_new(mut self, name: &str) -> io::Result<Option<Self>> {
        let target = self.dir.join(name);
        let linked = match &self.temporary {
            Some(temporary) => match fs::hard_link(temporary, &target) {
                // No hard links on this file system (FAT, some FUSE and
                // network file systems): look, then rename. A file named by
                // another writer between the two is replaced, which for the
                // same NAR or the same nix-cache-info changes nothing.
                Err(e) if no_hard_links(&e) => {
                    if target.try_exists()? {
                        return Ok(Some(self));
                    }
                    fs::rename(temporary, &target)?;
                    self.temporary = None;
                    return Ok(None);
                }
                linked => linked,
            },
            None => link_unnamed(&self.file, &target),
        };
        match linked {
            Ok(()) => {
                if let Some(temporary) = self.temporary.take() {
                    // The file is named; failing to drop the second name
                    // would leave only a stray hidden file.
                    let _ = fs::remove_file(temporary);
                }
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Some(self)),
            Err(e) => Err(e),
        }
    }
}

impl AtomicFile {
    /// Starts writing the file's data to disk without waiting for it
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the disk works
    /// while the caller goes on and a later [`syncfs`] finds little left to
    /// write. Advisory: errors are left for that `syncfs` to report.
    /// Elsewhere than on Linux, nothing.
    pub fn start_writeback(&self) {
        #[cfg(target_os = "linux")]
        // SAFETY: the descriptor is open for the duration of the call.
        unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

impl io::Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // An unnamed file vanishes with its descriptor; a named one must go.
        if let Some(temporary) = &self.temporary {
            let _ = fs::remove_file(temporary);
        }
    }
}

/// `syncfs(2)`: writes back the whole file system `dir` is on and waits for
/// it, data and directory entries alike; also what other processes wrote
/// there, such as a NAR a concurrent run named and this one kept. One call
/// for a batch of files costs far less than an `fsync` each.
#[cfg(target_os = "linux")]
pub fn syncfs(dir: &File) -> io::Result<()> {
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Without `syncfs`, `sync(2)` for all file systems.
#[cfg(not(target_os = "linux"))]
pub fn syncfs(_dir: &File) -> io::Result<()> {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::sync() };
    Ok(())
}

/// Directories on the file systems to sync, one open directory each, as
/// `syncfs` wants.
#[derive(Default)]
pub struct FileSystems(Vec<(PathBuf, File)>);

impl FileSystems {
    pub fn of(dirs: &[&Path]) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let mut handles: Vec<(PathBuf, File)> = Vec::new();
        let mut devices = Vec::new();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            let handle = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
            let device = handle.metadata().with_context(|| format!("reading {}", dir.display()))?.dev();
            if !devices.contains(&device) {
                devices.push(device);
                handles.push((dir.to_path_buf(), handle));
            }
        }
        Ok(Self(handles))
    }

    pub fn sync(&self) -> Result<()> {
        for (dir, handle) in &self.0 {
            syncfs(handle).with_context(|| format!("syncing the file system of {} to disk", dir.display()))?;
        }
        Ok(())
    }
}

/// Calls `create` with fresh temporary names in `dir` until one is free:
/// `.<label>.<pid>-<counter>-<random>.tmp`. The pid and counter keep this
/// process's names apart; the random part keeps apart processes that share
/// a pid, as builds in separate pid namespaces do.
fn with_temporary_name<T>(
    dir: &Path,
    label: &str,
    mut create: impl FnMut(&Path) -> io::Result<T>,
) -> io::Result<(T, PathBuf)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static RANDOM: std::sync::LazyLock<RandomState> = std::sync::LazyLock::new(RandomState::new);
    let mut attempts = 0;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let random = RANDOM.hash_one(n);
        let temporary = dir.join(format!(".{label}.{}-{n}-{random:016x}.tmp", std::process::id()));
        match create(&temporary) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            result => return result.map(|t| (t, temporary)),
        }
    }
}

/// Whether `name` is one of `with_temporary_name`'s: a file a run of ours
/// was writing when it died, which `gc` removes. Beside the writer, so that
/// the two cannot drift apart.
pub fn is_temporary_name(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else { return false };
    let Some((_, tail)) = inner.rsplit_once('.') else { return false };
    let parts: Vec<&str> = tail.split('-').collect();
    matches!(parts.as_slice(), [pid, n, random]
        if pid.bytes().all(|b| b.is_ascii_digit()) && n.bytes().all(|b| b.is_ascii_digit())
            && random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `link` failed because the file system has no hard links.
fn no_hard_links(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS))
        || e.kind() == io::ErrorKind::Unsupported
}

/// Whether `linkat(fd, "", …, AT_EMPTY_PATH)` names an unnamed file here:
/// it needs `CAP_DAC_READ_SEARCH` (so not as a build user), and is cleared
/// at the first refusal.
#[cfg(target_os = "linux")]
static EMPTY_PATH_LINK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn link_unnamed(file: &File, target: &Path) -> io::Result<()> {
    let target = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // The descriptor itself, where allowed: the kernel then resolves no
    // `/proc/self/fd/N` path (a procfs lookup and its dentries per file,
    // ~9 % of the CPU time of a closure of 10,000 tiny store paths).
    #[cfg(target_os = "linux")]
    if EMPTY_PATH_LINK.load(Ordering::Relaxed) {
        // SAFETY: the descriptor is open; both strings are NUL-terminated
        // and outlive the call.
        let rc = unsafe {
            libc::linkat(file.as_raw_fd(), c"".as_ptr(), libc::AT_FDCWD, target.as_ptr(), libc::AT_EMPTY_PATH)
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // Without the capability the kernel answers ENOENT (or EPERM, or
        // EINVAL where the flag is unknown): use /proc from now on.
        if !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EPERM | libc::EINVAL)) {
            return Err(e);
        }
        EMPTY_PATH_LINK.store(false, Ordering::Relaxed);
    }
    let source = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL in a /proc path");
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::linkat(libc::AT_FDCWD, source.as_ptr(), libc::AT_FDCWD, target.as_ptr(), libc::AT_SYMLINK_FOLLOW)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_of_ours_are_told_from_others() {
        assert!(is_temporary_name(".abc.narinfo.1234-5-0123456789abcdef.tmp"));
        assert!(is_temporary_name(".nix-cache-info.77-0-fedcba9876543210.tmp"));
        assert!(!is_temporary_name(".gitignore"));
        assert!(!is_temporary_name(".x.1234-5-0123.tmp"));
        assert!(!is_temporary_name("x.1234-5-0123456789abcdef.tmp"));
        // What the writer names, the reader knows.
        let (_, written) = with_temporary_name(&std::env::temp_dir(), "abc.narinfo", |_| Ok(())).unwrap();
        assert!(is_temporary_name(written.file_name().unwrap().to_str().unwrap()), "{}", written.display());
    }
    use std::io::Write;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mbc-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    /// Both ways of writing: unnamed where the system allows it, and the
    /// temporary-name fallback, forced.
    const WAYS: [bool; 2] = [true, false];

    #[test]
    fn appears_only_when_persisted_and_replaces() {
        for unnamed in WAYS {
            let dir = scratch(&format!("persist-{unnamed}"));
            fs::write(dir.join("target"), b"old").unwrap();
            let mut f = AtomicFile::create_in(&dir, "t", unnamed).unwrap();
            f.write_all(b"new contents").unwrap();
            assert_eq!(fs::read(dir.join("target")).unwrap(), b"old");
            f.persist("target").unwrap();
            assert_eq!(fs::read(dir.join("target")).unwrap(), b"new contents");
            assert_eq!(names(&dir), ["target"], "temporary files left behind");
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn persist_new_never_replaces_and_gives_the_file_back() {
        for unnamed in WAYS {
            let dir = scratch(&format!("persist-new-{unnamed}"));
            let mut f = AtomicFile::create_in(&dir, "t", unnamed).unwrap();
            f.write_all(b"first").unwrap();
            assert!(f.persist_new("target").unwrap().is_none());
            let mut g = AtomicFile::create_in(&dir, "t", unnamed).unwrap();
            g.write_all(b"second").unwrap();
            let g = g.persist_new("target").unwrap().expect("the name is taken");
            assert_eq!(fs::read(dir.join("target")).unwrap(), b"first");
            // Given back, it can still replace the file.
            g.persist("target").unwrap();
            assert_eq!(fs::read(dir.join("target")).unwrap(), b"second");
            assert_eq!(names(&dir), ["target"], "temporary files left behind");
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn dropped_without_persisting_leaves_nothing() {
        for unnamed in WAYS {
            let dir = scratch(&format!("drop-{unnamed}"));
            let mut f = AtomicFile::create_in(&dir, "t", unnamed).unwrap();
            f.write_all(b"partial").unwrap();
            drop(f);
            assert_eq!(names(&dir), Vec::<String>::new());
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// Writers with the same label racing for the same names: each file is
    /// complete whoever wins, and no writer fails or loses its temporary
    /// file to another (as when temporary names were shared).
    #[test]
    fn concurrent_writers_with_one_label_do_not_collide() {
        for unnamed in WAYS {
            let dir = scratch(&format!("race-{unnamed}"));
            std::thread::scope(|scope| {
                for writer in 0..8u8 {
                    let dir = &dir;
                    scope.spawn(move || {
                        for round in 0..50 {
                            let contents = vec![writer; 1000 + round];
                            let mut f = AtomicFile::create_in(dir, "same", unnamed).unwrap();
                            f.write_all(&contents).unwrap();
                            f.persist("replaced").unwrap();
                            let mut f = AtomicFile::create_in(dir, "same", unnamed).unwrap();
                            f.write_all(&contents).unwrap();
                            let _ = f.persist_new(&format!("first-{round}")).unwrap();
                        }
                    });
                }
            });
            let mut expected = vec!["replaced".to_string()];
            expected.extend((0..50).map(|r| format!("first-{r}")));
            expected.sort();
            assert_eq!(names(&dir), expected);
            for name in expected {
                let data = fs::read(dir.join(&name)).unwrap();
                assert!(data.len() >= 1000 && data.iter().all(|&b| b == data[0]), "{name} is torn");
            }
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}
