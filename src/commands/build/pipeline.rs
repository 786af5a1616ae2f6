//! One store path through the pipeline (see [`super`]).

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use sha2::Digest;

use crate::commands::build::dump::Dumper;
use crate::commands::build::reuse::Reusable;
use crate::commands::build::{Settings, Written};
use crate::compress::{Compression, Contexts};
use crate::durable::atomic_file::AtomicFile;
use crate::format::hash::{HashingWriter, Sha256Hash};
use crate::format::listing::Listing;
use crate::format::nar_reader::{Event, NarReader};
use crate::format::narinfo::NarInfo;
use crate::format::path_info::PathInfo;

/// A store path whose NAR is checked and named, with its narinfo written
/// but not yet named.
pub(crate) struct Checked {
    pub(crate) narinfo: AtomicFile,
    /// What it says.
    pub(crate) text: String,
    pub(crate) narinfo_name: String,
    pub(crate) written: Written,
}

/// Where a path's compressed NAR comes from.
pub(crate) enum Source<'r, 'c> {
    /// Compressed here, with this many threads.
    Compress(u32, &'c mut Contexts),
    /// Copied from an earlier cache.
    Reuse(&'r Reusable),
}

/// The per-path pipeline: walk → NAR → NarHash → compress → FileHash → file,
/// then the narinfo, left for [`NarInfoBatch`] to name. With a NAR to reuse,
/// the walk only hashes, and the earlier cache's file is copied and checked.
pub(crate) fn write_path(
    info: &PathInfo,
    out: &Path,
    settings: &Settings,
    source: Source,
    dumper: &mut Dumper,
    on_nar: &dyn Fn(u64),
) -> Result<Checked> {
    let compression = settings.compression;
    let nar_dir = out.join("nar");
    let reused = matches!(source, Source::Reuse(_));
    let (file, nar_hash, nar_size, file_hash, file_size, listing) = match source {
        Source::Compress(threads, contexts) => {
            compress_nar(info, &nar_dir, settings, threads, dumper, contexts, on_nar)?
        }
        Source::Reuse(reusable) => {
            let (nar_hash, nar_size, _, listing) =
                dump_nar(info, &nar_dir, settings, io::sink(), TOKEN_BUFFER, dumper, on_nar)?;
            let label = format!("{}.nar{}", info.path.hash_part(), compression.extension());
            let file = reusable.copy(&nar_dir, &label).with_context(|| format!("reusing the NAR of {}", info.path))?;
            (file, nar_hash, nar_size, reusable.expected.file_hash, reusable.expected.file_size, listing)
        }
    };
    // Dropping `file` here discards it: nothing of it was ever named.
    if (nar_hash, nar_size) != (info.nar_hash, info.nar_size) {
        bail!(
            "{}: its contents do not match what Nix recorded: NAR hash {} and size {} expected, \
             but the store has NAR hash {nar_hash} and size {nar_size}; the store is corrupt \
             or changed (try `nix-store --verify --check-contents --repair`)",
            info.path,
            info.nar_hash,
            info.nar_size
        );
    }

    let nar_name = format!("{}.nar{}", file_hash.nix32(), compression.extension());
    let narinfo = NarInfo { info: info.clone(), url: format!("nar/{nar_name}"), compression, file_hash, file_size };
    // Rendered before the NAR is named: a refused narinfo leaves nothing behind.
    let text = narinfo.render().map_err(|e| anyhow!(e))?;
    name_nar(file, &nar_dir, &nar_name, file_size)
        .with_context(|| format!("naming {}", nar_dir.join(&nar_name).display()))?;
    if let Some(listing) = listing {
        write_listing(info, out, settings, &listing, &narinfo.url)?;
    }
    let narinfo_name = narinfo.file_name();
    let context = || format!("writing {}", out.join(&narinfo_name).display());
    let mut file = AtomicFile::create(out, &narinfo_name).with_context(context)?;
    file.write_all(text.as_bytes()).with_context(context)?;
    Ok(Checked { narinfo: file, text, narinfo_name, written: Written { nar_size, file_size, reused } })
}

/// Writes the NAR listing and debug info entries of a checked path, before
/// its narinfo is named: each atomically, the listing replacing an older one
/// (it lists the same NAR) and a debug info entry never replacing one, as
/// Nix's `addToStoreCommon` (binary-cache-store.cc) does.
fn write_listing(info: &PathInfo, out: &Path, settings: &Settings, listing: &Listing, nar_url: &str) -> Result<()> {
    if settings.write_nar_listing {
        let name = format!("{}.ls", info.path.hash_part());
        let context = || format!("writing the NAR listing of {} to {}", info.path, out.join(&name).display());
        let mut file = AtomicFile::create(out, &name).with_context(context)?;
        file.write_all(&listing.json()).with_context(context)?;
        file.persist(&name).with_context(context)?;
    }
    if settings.index_debug_info {
        let dir = out.join("debuginfo");
        for member in listing.debug_members() {
            let context =
                || format!("writing the debug info entry of {} to {}", info.path, dir.join(&member.key).display());
            let mut file = AtomicFile::create(&dir, &member.key).with_context(context)?;
            file.write_all(member.json(nar_url).as_bytes()).with_context(context)?;
            // An existing entry is kept: it may name a NAR of another store path.
            file.persist_new(&member.key).with_context(context)?;
        }
    }
    Ok(())
}

/// Names a NAR file after its FileHash. A file of that name is the same NAR,
/// written by an earlier or concurrent run, and is left alone; unless its
/// size is not `file_size`, when it is damaged (a run of an older version cut
/// by a power loss, or someone's editing) and replaced.
fn name_nar(file: AtomicFile, nar_dir: &Path, nar_name: &str, file_size: u64) -> io::Result<()> {
    let Some(file) = file.persist_new(nar_name)? else { return Ok(()) };
    match fs::metadata(nar_dir.join(nar_name)) {
        Ok(existing) if existing.len() == file_size => Ok(()),
        // Damaged, or removed since: replace it either way.
        _ => file.persist(nar_name),
    }
}

/// Streams the NAR of `info.path` through the compressor into a new, still
/// unnamed file in `nar_dir`, returning it with (NarHash, NarSize, FileHash,
/// FileSize); `on_nar` is told the size of every chunk of NAR on its way.
fn compress_nar(
    info: &PathInfo,
    nar_dir: &Path,
    settings: &Settings,
    threads: u32,
    dumper: &mut Dumper,
    contexts: &mut Contexts,
    on_nar: &dyn Fn(u64),
) -> Result<(AtomicFile, Sha256Hash, u64, Sha256Hash, u64, Option<Listing>)> {
    let io_context = || format!("writing the NAR of {} in {}", info.path, nar_dir.display());
    let compression = settings.compression;
    let file = AtomicFile::create(nar_dir, &format!("{}.nar{}", info.path.hash_part(), compression.extension()))
        .with_context(io_context)?;
    // Uncompressed, the file is the NAR: hashing it twice would be waste,
    // and so would buffering it twice. The buffer in front of the NarHash
    // then takes the file's size instead, so that write(2)s stay as few.
    let compressed = compression != Compression::None;
    let nar_file = NarFile::new(file, compressed);
    let buffer = if compressed { TOKEN_BUFFER } else { FILE_BUFFER };
    let encoder = compression
        .encoder(nar_file, settings.compression_level, threads, info.nar_size, contexts)
        .with_context(io_context)?;
    let (nar_hash, nar_size, encoder, listing) = dump_nar(info, nar_dir, settings, encoder, buffer, dumper, on_nar)?;
    let nar_file = encoder.finish().with_context(io_context)?;
    let (file, file_hash, file_size) = nar_file.finish().with_context(io_context)?;
    if settings.sync {
        // The disk writes this NAR while the next is compressed, instead of
        // all at the next syncfs, which would also wait for other programs'
        // writes to the file system.
        file.start_writeback();
    }
    Ok((file, nar_hash, nar_size, file_hash.unwrap_or(nar_hash), file_size, listing))
}

/// The buffer that gathers the NAR's many small tokens (and small files)
/// before they reach the NarHash and the compressor.
const TOKEN_BUFFER: usize = 64 * 1024;

/// The buffer in front of a NAR file: at most one write(2) per this much.
const FILE_BUFFER: usize = 128 * 1024;

/// Walks `info.path` into `inner` as a NAR, through a buffer of `buffer`
/// bytes, returning its NarHash and NarSize, `inner`, and the NAR's listing
/// when one is wanted.
fn dump_nar<W: Write>(
    info: &PathInfo,
    nar_dir: &Path,
    settings: &Settings,
    inner: W,
    buffer: usize,
    dumper: &mut Dumper,
    on_nar: &dyn Fn(u64),
) -> Result<(Sha256Hash, u64, W, Option<Listing>)> {
    let io_context = || format!("writing the NAR of {} in {}", info.path, nar_dir.display());
    // Buffer the NAR's many small tokens before they reach the hasher and the
    // compressor; large file chunks pass straight through.
    // The listing, when wanted, is read from the NAR as it is written.
    let mut listing = Listing::new();
    let wanted = settings.write_nar_listing || settings.index_debug_info;
    let reader = wanted.then(|| NarReader::new(|event| listing.event(event)));
    let tee = Tee { inner, reader, on_nar };
    let mut nar = BufWriter::with_capacity(buffer, HashingWriter::new(tee));
    dumper.dump(Path::new(info.path.as_str()), &mut nar).with_context(io_context)?;
    let (nar_hash, nar_size, tee) =
        nar.into_inner().map_err(|e| anyhow!(e.into_error())).with_context(io_context)?.finish();
    if let Some(reader) = tee.reader {
        reader.finish().map_err(|e| anyhow!("{}: listing its NAR: {e}", info.path))?;
    }
    Ok((nar_hash, nar_size, tee.inner, wanted.then_some(listing)))
}

/// Passes the NAR on to `inner` and, when there is one, to a [`NarReader`]
/// that builds its listing, and tells `on_nar` how much went.
struct Tee<'o, W, F> {
    inner: W,
    reader: Option<NarReader<F>>,
    on_nar: &'o dyn Fn(u64),
}

impl<W: Write, F: FnMut(Event)> Write for Tee<'_, W, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        (self.on_nar)(n as u64);
        if let Some(reader) = &mut self.reader {
            reader.feed(&buf[..n]).map_err(io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The file a NAR is written to: always counted; hashed and buffered when
/// compressed (uncompressed, it comes from a buffer already).
struct NarFile {
    file: BufWriter<AtomicFile>,
    hasher: Option<sha2::Sha256>,
    size: u64,
}

impl NarFile {
    fn new(file: AtomicFile, hash: bool) -> Self {
        // A BufWriter of no capacity passes every write straight through.
        let capacity = if hash { FILE_BUFFER } else { 0 };
        Self { file: BufWriter::with_capacity(capacity, file), hasher: hash.then(sha2::Sha256::new), size: 0 }
    }

    fn finish(self) -> io::Result<(AtomicFile, Option<Sha256Hash>, u64)> {
        let file = self.file.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok((file, self.hasher.map(|h| Sha256Hash(h.finalize().into())), self.size))
    }
}

impl Write for NarFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
