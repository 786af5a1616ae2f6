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
//! ```no_run
//! use std::io::Write;
//! use make_binary_cache::atomic_file::AtomicFile;
//! let mut f = AtomicFile::create("/tmp/cache".as_ref(), "example")?;
//! f.write_all(b"StoreDir: /nix/store\n")?;
//! f.persist("nix-cache-info")?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
    /// Unique within `dir`, for the fallback's temporary name.
    label: String,
}

impl AtomicFile {
    /// Starts a file in `dir`. `label` must be unique among the files being
    /// written in `dir` at the same time.
    pub fn create(dir: &Path, label: &str) -> io::Result<Self> {
        let label = label.to_owned();
        #[cfg(target_os = "linux")]
        if *PROC_FD {
            let unnamed = OpenOptions::new().write(true).mode(0o644).custom_flags(libc::O_TMPFILE).open(dir);
            if let Ok(file) = unnamed {
                return Ok(Self { file, dir: dir.to_owned(), temporary: None, label });
            }
            // Not supported by this file system: fall back below.
        }
        let temporary = temporary_path(dir, &label);
        let file = File::create(&temporary)?;
        Ok(Self { file, dir: dir.to_owned(), temporary: Some(temporary), label })
    }

    /// Gives the file its final `name` in its directory, replacing any file
    /// of that name.
    pub fn persist(mut self, name: &str) -> io::Result<()> {
        let target = self.dir.join(name);
        match self.temporary.take() {
            Some(temporary) => fs::rename(&temporary, &target),
            None => match link_unnamed(&self.file, &target) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // linkat does not replace: link under a temporary name and rename over.
                    let temporary = temporary_path(&self.dir, &self.label);
                    let _ = fs::remove_file(&temporary);
                    link_unnamed(&self.file, &temporary)?;
                    fs::rename(&temporary, &target)
                }
                result => result,
            },
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

/// The name a file has while being written when it cannot be unnamed, or
/// while it replaces another.
fn temporary_path(dir: &Path, label: &str) -> PathBuf {
    dir.join(format!(".{label}.tmp"))
}

fn link_unnamed(file: &File, target: &Path) -> io::Result<()> {
    let source = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL in a /proc path");
    let target = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::linkat(libc::AT_FDCWD, source.as_ptr(), libc::AT_FDCWD, target.as_ptr(), libc::AT_SYMLINK_FOLLOW)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mbc-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn appears_only_when_persisted_and_replaces() {
        let dir = scratch("persist");
        fs::write(dir.join("target"), b"old").unwrap();
        let mut f = AtomicFile::create(&dir, "t").unwrap();
        f.write_all(b"new contents").unwrap();
        assert_eq!(fs::read(dir.join("target")).unwrap(), b"old");
        f.persist("target").unwrap();
        assert_eq!(fs::read(dir.join("target")).unwrap(), b"new contents");
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["target"], "temporary files left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dropped_without_persisting_leaves_nothing() {
        let dir = scratch("drop");
        let mut f = AtomicFile::create(&dir, "t").unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
