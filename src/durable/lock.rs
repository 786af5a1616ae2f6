//! The advisory locks (`flock(2)`) runs of ours take on a cache.
//!
//! * [`CacheLock`], on the cache directory, orders the naming of narinfos
//!   (see [`crate::durable::narinfos`]): the builder holds it shared while it
//!   names a batch, `sign` and `merge` exclusively while they read, decide
//!   and name.
//! * [`RunLock`], on its `nar/` directory, keeps `gc` apart from everything
//!   that writes or reads the cache: every run of ours that adds NARs,
//!   rewrites narinfos or reads NARs (a build into it or reusing it, `sign`,
//!   `merge`, `verify`) holds it shared from before its first file until
//!   its last, `gc` exclusively while it decides and removes. So `gc` never
//!   removes a NAR whose narinfo a run is about to name, and a run never
//!   names a narinfo whose NAR `gc` removed. A writer waits for a `gc` (it
//!   is bounded); `gc` waits for writers only as long as it is told.
//!
//! Writers that are not ours (`nix copy`) take no lock. Where the file
//! system has no `flock` (some network file systems) there is no lock:
//! writers go on, and `gc` says it cannot tell whether a run is writing.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cache::dir::CacheDir;
use crate::format::layout::NAR_DIR;

/// Whether `flock` worked, would block, or the file system has none.
enum Flock {
    Taken,
    Busy,
    Unsupported,
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<Flock> {
    loop {
        // SAFETY: the descriptor is open for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(Flock::Taken);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(Flock::Busy),
            Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::EBADF | libc::EINVAL) => return Ok(Flock::Unsupported),
            _ => return Err(e),
        }
    }
}

/// An advisory lock on a cache directory, released when dropped.
pub struct CacheLock(#[allow(dead_code)] Option<File>);

impl CacheLock {
    /// Waits for the lock on `cache`, shared or `exclusive`. Where the file
    /// system has no `flock`, no lock: see the module documentation.
    pub fn take(cache: &CacheDir, exclusive: bool) -> Result<Self> {
        let dir = cache.as_file().with_context(|| format!("opening {}", cache.path().display()))?;
        let operation = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
        match flock(&dir, operation).with_context(|| format!("locking {}", cache.path().display()))? {
            Flock::Taken => Ok(Self(Some(dir))),
            Flock::Busy => unreachable!("a blocking flock does not return EWOULDBLOCK"),
            Flock::Unsupported => Ok(Self(None)),
        }
    }
}

/// The lock that keeps `gc` and the other runs on one cache apart (see the
/// module documentation), released when dropped.
#[derive(Debug)]
pub struct RunLock {
    file: Option<File>,
}

impl RunLock {
    /// Shared, for a run that writes or reads `cache` (which must have its
    /// `nar/` directory). Waits while a `gc` holds it, saying so once
    /// through `say`.
    pub fn shared(cache: &CacheDir, say: impl Fn(&str)) -> Result<Self> {
        let Some(file) = open_nar_dir(cache)? else { return Ok(Self { file: None }) };
        let shown = || format!("locking {}", cache.path().join(NAR_DIR).display());
        match flock(&file, libc::LOCK_SH | libc::LOCK_NB).with_context(shown)? {
            Flock::Taken => return Ok(Self { file: Some(file) }),
            Flock::Unsupported => return Ok(Self { file: None }),
            Flock::Busy => {}
        }
        say(&format!("waiting for `make-binary-cache gc` to finish in {}", cache.path().display()));
        match flock(&file, libc::LOCK_SH).with_context(shown)? {
            Flock::Taken => Ok(Self { file: Some(file) }),
            _ => Ok(Self { file: None }),
        }
    }

    /// Exclusive, for `gc`: waits at most `wait` for the runs that hold it
    /// shared. `Ok(None)` when the file system has no locks.
    pub fn exclusive(cache: &CacheDir, wait: Duration) -> Result<Option<Self>> {
        let Some(file) = open_nar_dir(cache)? else {
            bail!("{} has no {NAR_DIR}/ directory: there is nothing to collect", cache.path().display())
        };
        let start = Instant::now();
        loop {
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB)
                .with_context(|| format!("locking {}", cache.path().join(NAR_DIR).display()))?
            {
                Flock::Taken => return Ok(Some(Self { file: Some(file) })),
                Flock::Unsupported => return Ok(None),
                Flock::Busy if start.elapsed() >= wait => bail!(
                    "another run of make-binary-cache (a build, sign, merge, verify or a build reusing it) is using \
                     {} and still was after {} s: run gc when it has finished, or give --wait SECONDS",
                    cache.path().display(),
                    wait.as_secs()
                ),
                Flock::Busy => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Whether a lock is held (`false` where the file system has none).
    pub fn held(&self) -> bool {
        self.file.is_some()
    }
}

/// `cache/nar`, open, reached through no symlink; `None` when missing.
fn open_nar_dir(cache: &CacheDir) -> Result<Option<File>> {
    match cache.open_dir(Path::new(NAR_DIR)) {
        Ok(nar) => Ok(Some(nar.as_file().with_context(|| format!("opening {}", nar.path().display()))?)),
        Err(e) if e.is_missing() => Ok(None),
        Err(e) => Err(e.into()),
    }
}
