//! Reading a binary cache that exists, ours or Nix's, as `merge`, `sign`,
//! `verify` and `--reuse` do: what makes a directory a cache (its
//! `nix-cache-info`, see [`read_cache_info`]), and a NAR file checked
//! against what its narinfo says of it ([`check`]): the `FileSize` and
//! `FileHash` (which Nix itself never checks when it substitutes), and what
//! it decompresses to, in bounded memory ([`MAX_DECODER_MEMORY`]): exactly
//! `NarSize` bytes with the `NarHash`, a well-formed NAR. Compressed data
//! may come in several xz streams or zstd frames, as Nix reads them.
//! Messages name the file and the narinfo. Files are opened through
//! [`CacheDir`], never outside the cache.
//!
//! ```
//! # use make_binary_cache::cache::read::{Expected, check};
//! # use make_binary_cache::compress::Compression;
//! # use make_binary_cache::format::{hash::Sha256Hash, nar};
//! # use sha2::Digest;
//! # use std::io::Write;
//! # let dir = std::env::temp_dir().join(format!("mbc-read-cache-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let mut bytes = Vec::new();
//! let mut file = nar::open(&mut bytes)?.file(false, 5)?;
//! file.write_all(b"hello")?;
//! file.close()?;
//! let path = dir.join("x.nar");
//! std::fs::write(&path, &bytes)?;
//! let hash = Sha256Hash(sha2::Sha256::digest(&bytes).into());
//! let size = bytes.len() as u64;
//! let expected = Expected {
//!     file_size: size, file_hash: hash, compression: Compression::None, nar_hash: hash, nar_size: size,
//! };
//! let file = std::fs::File::open(&path)?;
//! check(&file, &path, "x.narinfo", &expected)?.unwrap();
//! let wrong = Expected { file_size: size + 1, ..expected };
//! let e = check(&file, &path, "x.narinfo", &wrong)?.unwrap_err();
//! assert!(e.ends_with(&format!("has {size} bytes, but x.narinfo says FileSize: {}", size + 1)), "{e}");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow, bail};
use sha2::Digest;

use crate::cache::dir::{CacheDir, MAX_NARINFO, MAX_SMALL_FILE};
use crate::compress::Compression;
use crate::format::cache_info;
use crate::format::hash::{HashingReader, Sha256Hash};
use crate::format::layout::NAR_DIR;
use crate::format::listing::Listing;
use crate::format::nar_reader::{Event, NarError, NarReader};
use crate::format::narinfo::{NarInfo, nar_file};
use crate::format::store_path::check_store_dir;

/// The text of `dir/nix-cache-info`, which makes `dir` a binary cache.
/// `named` is how `dir` was given, for the messages (`""`, `"--reuse "`).
pub fn read_cache_info(dir: &Path, named: &str) -> Result<String> {
    read_cache_info_in(&open(dir, named)?, named)
}

/// The cache directory `dir`, open; `named` as for [`read_cache_info`].
pub fn open(dir: &Path, named: &str) -> Result<CacheDir> {
    match CacheDir::open(dir) {
        Ok(cache) => Ok(cache),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("{named}{}: no such directory", dir.display()),
        Err(e) => Err(e).with_context(|| format!("{named}{}: opening the cache", dir.display())),
    }
}

/// [`read_cache_info`] of a cache already open.
pub fn read_cache_info_in(cache: &CacheDir, named: &str) -> Result<String> {
    match cache.read_text(Path::new(cache_info::FILE_NAME), MAX_SMALL_FILE) {
        Err(e) if e.is_missing() => bail!(
            "{named}{} is not a binary cache: it has no nix-cache-info; give the directory make-binary-cache or \
             `nix copy --to file://DIR` wrote",
            cache.path().display()
        ),
        result => Ok(result?),
    }
}

/// Whether the cache in `out` holds a narinfo or a NAR file (not counting
/// the temporary files of runs, whose names start with `.`).
pub fn has_nars(out: &Path) -> Result<bool> {
    let visible = |dir: &Path, narinfo_only: bool| -> Result<bool> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries {
            let name = entry.with_context(|| format!("reading {}", dir.display()))?.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') && (!narinfo_only || name.ends_with(".narinfo")) {
                return Ok(true);
            }
        }
        Ok(false)
    };
    Ok(visible(out, true)? || visible(&out.join(NAR_DIR), false)?)
}

/// The `StoreDir` that `text`, read from `dir/nix-cache-info`, names, checked
/// as a store directory; `None` when it names none. Messages name the file.
pub fn store_dir<'t>(dir: &Path, text: &'t str) -> Result<Option<&'t str>> {
    let file = dir.join(cache_info::FILE_NAME);
    let parsed = cache_info::parse(text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let Some(store_dir) = parsed.store_dir.map(|f| f.value) else { return Ok(None) };
    check_store_dir(store_dir).map_err(|e| anyhow!("{}: StoreDir {store_dir:?}: {e}", file.display()))?;
    Ok(Some(store_dir))
}

/// Reads and checks the narinfo file `name` at the top of `cache`, for
/// `store_dir`: it parses, is named after its store path, and its URL names
/// a file inside the cache. Returns its text and what it says. Each message
/// names the file and ends with `hint` (what to do), when there is one.
pub fn read_narinfo(cache: &CacheDir, name: &str, store_dir: &str, hint: &str) -> Result<(String, NarInfo)> {
    let file = cache.path().join(name);
    let hint = if hint.is_empty() { String::new() } else { format!("; {hint}") };
    let text = cache.read_text(Path::new(name), MAX_NARINFO).map_err(|e| anyhow!("{e}{hint}"))?;
    let info = NarInfo::parse(store_dir, &text).map_err(|e| anyhow!("{}: {e}{hint}", file.display()))?;
    let expected = format!("{}.narinfo", info.path.hash_part());
    if name != expected {
        bail!("{}: the narinfo of {} must be named {expected}{hint}", file.display(), info.path);
    }
    nar_file(&info.url).map_err(|e| anyhow!("{}: {e}{hint}", file.display()))?;
    Ok((text, info))
}

/// What a narinfo says its NAR file is, and the NAR in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub file_size: u64,
    pub file_hash: Sha256Hash,
    pub compression: Compression,
    pub nar_hash: Sha256Hash,
    pub nar_size: u64,
}

impl Expected {
    pub fn of(info: &NarInfo) -> Self {
        Self {
            file_size: info.file_size,
            file_hash: info.file_hash,
            compression: info.compression,
            nar_hash: info.nar_hash,
            nar_size: info.nar_size,
        }
    }
}

/// The most memory one decompressor may take. zstd's decoders refuse a
/// window over 2^27 bytes by default (`ZSTD_WINDOWLOG_LIMIT_DEFAULT`; an
/// encoder needs `--long` or `--ultra -22` to go past it), and xz's largest
/// preset (`-9e`) needs 65 MiB to decode: a file that needs more is no
/// cache's, and a decompression bomb (a tiny xz file declaring a 1.5 GiB
/// dictionary) is refused at its header.
pub const MAX_DECODER_MEMORY: u64 = 160 << 20;

/// The largest zstd window decoded, as a power of two: zstd's default limit.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Whether `file` (shown as `shown`), read from its start whatever its
/// position, is what `narinfo` (a file name, or words like "the narinfo")
/// says: its size and FileHash, and what it decompresses to, the NarSize,
/// NarHash and a well-formed NAR. `Ok(Err(why))` with the first thing
/// wrong, `Err` when it cannot be read (or changes while it is). The size
/// is compared first: it costs nothing and catches a truncated file before
/// it is read.
pub fn check(file: &File, shown: &Path, narinfo: &str, expected: &Expected) -> Result<Result<(), String>> {
    check_listed(file, shown, narinfo, expected, None)
}

/// [`check`], and when `listed` (the text of the store path's `.ls` NAR
/// listing) is given, that it lists the NAR (see [`same_listing`]).
pub fn check_listed(
    file: &File,
    shown: &Path,
    narinfo: &str,
    expected: &Expected,
    listed: Option<&[u8]>,
) -> Result<Result<(), String>> {
    let size = file.metadata().with_context(|| format!("reading {}", shown.display()))?.len();
    if size != expected.file_size {
        return Ok(Err(format!(
            "{} has {size} bytes, but {narinfo} says FileSize: {}",
            shown.display(),
            expected.file_size
        )));
    }
    thread_local! {
        // One per thread: a fresh zeroed buffer per NAR file was a tenth of
        // the work on 100,000 tiny ones.
        static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; CHUNK]);
    }
    let listing = listed.map(|_| Rc::new(RefCell::new(Listing::new())));
    let found =
        BUF.with_borrow_mut(|buf| examine(file, size, expected.compression, expected.nar_size, listing.clone(), buf));
    if let Err(e) = &found.read {
        bail!("reading {}: {e}", shown.display());
    }
    if found.file_size != expected.file_size {
        bail!("{} changed while being read: {} bytes read, {} expected", shown.display(), found.file_size, size);
    }
    let shown = shown.display();
    let compression = expected.compression;
    let why = if found.file_hash != expected.file_hash {
        format!("{shown} has hash {}, but {narinfo} says FileHash: {}", found.file_hash, expected.file_hash)
    } else if let Err(e) = &found.decoded {
        format!("decompressing {shown} ({compression}): {}", decoding_error(e))
    } else if found.too_long {
        format!("{shown} decompresses to more than the NarSize {narinfo} gives, {}", expected.nar_size)
    } else if let Err(e) = &found.structure {
        format!("{shown} does not hold a valid NAR: {e}")
    } else if found.trailing > 0 {
        format!("{shown} has {} bytes after the end of its {compression} data", found.trailing)
    } else if (found.nar_hash, found.nar_size) != (expected.nar_hash, expected.nar_size) {
        format!(
            "{shown} holds a NAR with hash {} and size {}, while {narinfo} says NarHash: {} and NarSize: {}",
            found.nar_hash, found.nar_size, expected.nar_hash, expected.nar_size
        )
    } else if let (Some(listed), Some(listing)) = (listed, listing)
        && !same_listing(listed, &listing.borrow().json())
    {
        format!("the NAR listing of {narinfo} does not list the NAR in {shown}")
    } else {
        return Ok(Ok(()));
    };
    Ok(Err(why))
}

/// Whether a `.ls` file lists the same NAR as `ours`: byte for byte as Nix
/// 2.8 writes it, or, for other writers, the same JSON once an
/// `"executable":false` (which newer Nix writes and 2.8 leaves out) is
/// dropped; JSON objects compare whatever their key order.
pub fn same_listing(listed: &[u8], ours: &[u8]) -> bool {
    fn normal(v: &mut serde_json::Value) {
        if let serde_json::Value::Object(map) = v {
            if map.get("executable") == Some(&serde_json::Value::Bool(false)) {
                map.remove("executable");
            }
            map.values_mut().for_each(normal);
        }
    }
    if listed == ours {
        return true;
    }
    let parse = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).ok();
    match (parse(listed), parse(ours)) {
        (Some(mut a), Some(mut b)) => {
            normal(&mut a);
            normal(&mut b);
            a == b
        }
        _ => false,
    }
}

/// The `.ls` NAR listing of `info`'s store path in `cache`, if it has one;
/// bounded by what a listing of its NarSize may have. `listed`: whether the
/// cache's directory listing shows one (looking a missing file up costs, at
/// 100,000 paths); `false` reads nothing.
pub fn read_listing(
    cache: &CacheDir,
    info: &NarInfo,
    listed: bool,
) -> Result<Option<Vec<u8>>, crate::cache::dir::OpenError> {
    if !listed {
        return Ok(None);
    }
    let (name, nar_size) = (format!("{}.ls", info.path.hash_part()), info.nar_size);
    match cache.read_small(Path::new(&name), crate::cache::dir::max_listing(nar_size)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_missing() => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a decompressor's error means for a user.
pub fn decoding_error(e: &io::Error) -> String {
    let inner = e.get_ref().and_then(|e| e.downcast_ref::<liblzma::stream::Error>());
    if matches!(inner, Some(liblzma::stream::Error::MemLimit)) {
        return format!(
            "it needs more than {} MiB of memory to decompress (a dictionary larger than any xz preset's)",
            MAX_DECODER_MEMORY >> 20
        );
    }
    let text = e.to_string();
    if text.contains("Frame requires too much memory") {
        return format!(
            "{text} (a window larger than {} MiB, which zstd refuses by default)",
            1 << (ZSTD_WINDOW_LOG_MAX - 20)
        );
    }
    text
}

/// Bytes read from a NAR file at a time.
pub const CHUNK: usize = 256 * 1024;

/// What a NAR file holds, as read by [`examine`].
pub struct Examined {
    /// Whether the file could be read; when not, the rest is partial.
    pub read: io::Result<()>,
    pub file_size: u64,
    pub file_hash: Sha256Hash,
    /// Whether it decompressed; its error when not.
    pub decoded: io::Result<()>,
    /// It decompressed to more than the NarSize allowed, and was cut there.
    pub too_long: bool,
    /// Bytes after the end of the compressed data.
    pub trailing: u64,
    /// The NAR's size and hash, as far as it was read.
    pub nar_size: u64,
    pub nar_hash: Sha256Hash,
    /// Whether it is a well-formed NAR; decompression stops at its first
    /// bad byte.
    pub structure: Result<(), NarError>,
}

/// Reads all of `file` from its start (whatever its position), hashing it,
/// decompressing it with `compression` in bounded memory, and feeding the
/// NAR, at most `nar_size` bytes of it, to the NAR validator and to
/// `listing`, if given. `buf` is the decompressor's output buffer;
/// `size_hint`, the file's size as far as known, sizes the read buffer.
pub fn examine(
    file: &File,
    size_hint: u64,
    compression: Compression,
    nar_size: u64,
    listing: Option<Rc<RefCell<Listing>>>,
    buf: &mut [u8],
) -> Examined {
    // Uncompressed, the file is the NAR: one hash serves for both.
    let mut sink = NarSink::new(nar_size, compression != Compression::None, listing);
    // Sized to the file: most NAR files are small, and a buffer of CHUNK
    // bytes for each is fresh pages for each.
    let capacity = usize::try_from(size_hint).unwrap_or(CHUNK).clamp(4096, CHUNK);
    let mut source = BufReader::with_capacity(capacity, HashingReader::new(PositionalReader { file, offset: 0 }));
    let decoded = match compression {
        Compression::None => pump(&mut source, &mut sink, buf),
        Compression::Xz => {
            match liblzma::stream::Stream::new_stream_decoder(MAX_DECODER_MEMORY, liblzma::stream::CONCATENATED) {
                Ok(stream) => pump(&mut liblzma::bufread::XzDecoder::new_stream(&mut source, stream), &mut sink, buf),
                Err(e) => Err(e.into()),
            }
        }
        Compression::Zstd => zstd::stream::read::Decoder::with_buffer(&mut source)
            .and_then(|mut decoder| {
                decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Ok(decoder)
            })
            .and_then(|mut decoder| pump(&mut decoder, &mut sink, buf)),
    };
    // The rest of the file, for FileSize and FileHash, and to see whether
    // anything follows the compressed data.
    let mut trailing = 0u64;
    let read = loop {
        match source.fill_buf() {
            Ok([]) => break Ok(()),
            Ok(bytes) => {
                let n = bytes.len();
                trailing += n as u64;
                source.consume(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    let (file_hash, file_size) = source.into_inner().finish();
    // A read error of the file itself is the file's, not the decoder's.
    let (read, decoded) = match (read, decoded) {
        (Err(e), _) => (Err(e), Ok(())),
        (Ok(()), Err(e)) if e.get_ref().is_some_and(|inner| inner.is::<ReadError>()) => (Err(e), Ok(())),
        (Ok(()), decoded) => (Ok(()), decoded),
    };
    let (nar_hash, nar_size, too_long, structure) = sink.finish();
    Examined {
        read,
        file_size,
        file_hash,
        decoded,
        too_long,
        trailing: if compression == Compression::None { 0 } else { trailing },
        nar_size,
        nar_hash: nar_hash.unwrap_or(file_hash),
        structure,
    }
}

/// Copies everything `from` gives into `sink`, until the end, or until the
/// sink has more than it wants or sees a NAR that is not one.
fn pump(from: &mut impl Read, sink: &mut NarSink, buf: &mut [u8]) -> io::Result<()> {
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if !sink.take(&buf[..n]) {
            return Ok(());
        }
    }
}

/// What the NAR validator does with what it reads: build the listing, or
/// nothing.
type OnEvent = Box<dyn FnMut(Event<'_>)>;

/// Where the NAR goes: counted, hashed (unless the file's hash is the NAR's),
/// and read by the NAR validator, up to the NarSize the narinfo announces.
struct NarSink {
    hasher: Option<sha2::Sha256>,
    size: u64,
    limit: u64,
    too_long: bool,
    reader: NarReader<OnEvent>,
    error: Option<NarError>,
}

impl NarSink {
    fn new(limit: u64, hash: bool, listing: Option<Rc<RefCell<Listing>>>) -> Self {
        let on_event: OnEvent = match listing {
            Some(listing) => Box::new(move |event| listing.borrow_mut().event(event)),
            None => Box::new(|_| {}),
        };
        Self {
            hasher: hash.then(sha2::Sha256::new),
            size: 0,
            limit,
            too_long: false,
            reader: NarReader::new(on_event),
            error: None,
        }
    }

    /// Takes the next bytes; `false` once there are more than the limit or
    /// the NAR is invalid, which bounds the work a decompression bomb or a
    /// garbage NAR can cause.
    fn take(&mut self, bytes: &[u8]) -> bool {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            self.too_long = true;
            return false;
        }
        if let Some(h) = &mut self.hasher {
            h.update(bytes);
        }
        if let Err(e) = self.reader.feed(bytes) {
            self.error = Some(e);
            return false;
        }
        true
    }

    /// (NarHash if hashed, NarSize, whether it went over the limit, the
    /// NAR's structure).
    fn finish(self) -> (Option<Sha256Hash>, u64, bool, Result<(), NarError>) {
        let structure = match self.error {
            Some(e) => Err(e),
            None if self.too_long => Ok(()),
            None => self.reader.finish().map(drop),
        };
        (self.hasher.map(|h| Sha256Hash(h.finalize().into())), self.size, self.too_long, structure)
    }
}

/// Reads a file from an offset of its own, whatever the file's position.
struct PositionalReader<'f> {
    file: &'f File,
    offset: u64,
}

/// A read error of the file, told apart from the decoder's errors.
#[derive(Debug)]
struct ReadError(io::Error);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ReadError {}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, self.offset) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::new(e.kind(), ReadError(e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::nar;
    use std::fs;
    use std::io::Write;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mbc-read-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_directory_without_nix_cache_info_is_no_cache() {
        let dir = scratch("info");
        let e = read_cache_info(&dir, "--reuse ").unwrap_err().to_string();
        assert!(e.starts_with(&format!("--reuse {} is not a binary cache", dir.display())), "{e}");
        let e = read_cache_info(&dir.join("missing"), "").unwrap_err().to_string();
        assert!(e.ends_with("missing: no such directory"), "{e}");
        fs::write(dir.join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
        assert_eq!(read_cache_info(&dir, "").unwrap(), "StoreDir: /nix/store\n");
        // Not read through a symlink.
        fs::remove_file(dir.join("nix-cache-info")).unwrap();
        fs::write(dir.join("elsewhere"), "StoreDir: /nix/store\n").unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("nix-cache-info")).unwrap();
        let e = format!("{:#}", read_cache_info(&dir, "").unwrap_err());
        assert!(e.contains("nix-cache-info is a symlink"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    fn nar_of(contents: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut file = nar::open(&mut bytes).unwrap().file(false, contents.len() as u64).unwrap();
        file.write_all(contents).unwrap();
        file.close().unwrap();
        bytes
    }

    fn sha(bytes: &[u8]) -> Sha256Hash {
        Sha256Hash(sha2::Sha256::digest(bytes).into())
    }

    /// `check` of `file_bytes` as a NAR file of `compression` holding `nar`.
    fn check_bytes(file_bytes: &[u8], compression: Compression, nar: &[u8]) -> Result<(), String> {
        let dir = scratch(&format!("check-{}", sha(file_bytes).nix32()));
        let path = dir.join("f");
        fs::write(&path, file_bytes).unwrap();
        let expected = Expected {
            file_size: file_bytes.len() as u64,
            file_hash: sha(file_bytes),
            compression,
            nar_hash: sha(nar),
            nar_size: nar.len() as u64,
        };
        let result = check(&File::open(&path).unwrap(), &path, "the narinfo", &expected).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        result
    }

    fn xz(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        io::copy(&mut liblzma::read::XzEncoder::new(bytes, 6), &mut out).unwrap();
        out
    }

    #[test]
    fn every_field_and_the_nar_inside_are_checked() {
        let good = nar_of(b"hello");
        let other = nar_of(b"other");
        check_bytes(&good, Compression::None, &good).unwrap();
        check_bytes(&xz(&good), Compression::Xz, &good).unwrap();
        check_bytes(&zstd::encode_all(&good[..], 3).unwrap(), Compression::Zstd, &good).unwrap();
        // FileHash right, NarHash wrong: what `--reuse` and `sign` used to pass.
        let e = check_bytes(&xz(&other), Compression::Xz, &good).unwrap_err();
        assert!(e.contains("holds a NAR with hash") && e.contains(&format!("NarHash: {}", sha(&good))), "{e}");
        let e = check_bytes(&other, Compression::None, &good).unwrap_err();
        assert!(e.contains("holds a NAR with hash"), "{e}");
        let e = check_bytes(b"not xz at all", Compression::Xz, &good).unwrap_err();
        assert!(e.contains("decompressing") && e.contains("(xz)"), "{e}");
        let e = check_bytes(&xz(b"nix-archive-2 garbage"), Compression::Xz, &good).unwrap_err();
        assert!(e.contains("does not hold a valid NAR"), "{e}");
        let longer = nar_of(b"hello, and more");
        let e = check_bytes(&xz(&longer), Compression::Xz, &good).unwrap_err();
        assert!(e.contains("decompresses to more than the NarSize"), "{e}");
        let mut trailing = xz(&good);
        trailing.extend_from_slice(b"junk");
        let e = check_bytes(&trailing, Compression::Xz, &good).unwrap_err();
        assert!(e.contains("decompressing"), "{e}");
        let mut trailing = zstd::encode_all(&good[..], 3).unwrap();
        trailing.extend_from_slice(b"junk");
        assert!(check_bytes(&trailing, Compression::Zstd, &good).is_err());
    }

    /// Nix reads concatenated xz streams and zstd frames; so do we.
    #[test]
    fn several_streams_and_frames_are_one_nar() {
        let good = nar_of(b"hello, in two parts");
        let (a, b) = good.split_at(21);
        let two_xz = [xz(a), xz(b)].concat();
        check_bytes(&two_xz, Compression::Xz, &good).unwrap();
        let two_zstd = [zstd::encode_all(a, 3).unwrap(), zstd::encode_all(b, 19).unwrap()].concat();
        check_bytes(&two_zstd, Compression::Zstd, &good).unwrap();
    }

    /// A tiny xz file that declares a 1.5 GiB dictionary is refused at its
    /// header, not decompressed into memory.
    #[test]
    fn a_decompression_bomb_is_refused_at_its_header() {
        let mut options = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
        options.dict_size(1536 << 20);
        let stream = liblzma::stream::Stream::new_lzma_encoder(&options).map(drop);
        let _ = stream;
        let mut filters = liblzma::stream::Filters::new();
        filters.lzma2(&options);
        let encoder = liblzma::stream::Stream::new_stream_encoder(&filters, liblzma::stream::Check::Crc64).unwrap();
        let mut bomb = Vec::new();
        io::copy(&mut liblzma::read::XzEncoder::new_stream(&vec![0u8; 1 << 16][..], encoder), &mut bomb).unwrap();
        let good = nar_of(b"hello");
        let e = check_bytes(&bomb, Compression::Xz, &good).unwrap_err();
        assert!(e.contains("needs more than 160 MiB of memory to decompress"), "{e}");
    }
}
