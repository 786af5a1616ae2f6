//! The compressions a cache can use, named as Nix names them in narinfo
//! `Compression:` fields, and their streaming encoders.
//!
//! Both real compressors are set up so their output depends only on the data
//! and the level, never on how many threads run them: the cache is byte-for-byte
//! the same on a laptop and on a 64-core builder.
//!
//! * xz cuts the NAR into blocks of a size fixed by the level (the size
//!   liblzma's multi-threaded encoder picks for that preset) and compresses
//!   each on its own, in any worker (see [`crate::compress::blocks`]), writing the
//!   stream byte for byte as `lzma_stream_encoder_mt` would (see
//!   [`crate::compress::xz`]): its format depends on the block size and not on the
//!   number of threads. The check is CRC64, as `xz` and Nix use.
//! * zstd compresses a NAR of at most [`ZSTD_SINGLE_THREAD_MAX`] bytes in the
//!   calling thread (0 workers, no zstdmt) and a larger one with at least one
//!   worker: zstd's output with 0 workers differs from its output with 1 or
//!   more, which is identical for any count, so the choice depends on the NAR
//!   size alone, never on the threads available. Either way zstd is told the
//!   NAR size as a hint ([`zstd_size_hint`]), which picks smaller tables for
//!   small NARs as for a file of known size, but is not written to the frame.
//!
//! ```
//! use make_binary_cache::compress::Compression;
//! let c: Compression = "zstd".parse().unwrap();
//! assert_eq!((c.to_string(), c.extension()), ("zstd".to_string(), ".zst"));
//! ```

pub mod blocks;
pub mod xz;

use std::io::{self, Write};

use std::sync::Arc;

use zstd::zstd_safe::CParameter;

pub use crate::format::compression::{Compression, EncoderDescription};

use crate::compress::blocks::{BlockQueue, XzWriter};
use crate::compress::xz::{BlockEncoder, BlockSettings};

impl Compression {
    /// The level the compressor uses when none is given: the same defaults as
    /// the `xz` and `zstd` tools and as `nix copy`.
    pub fn default_level(self) -> i32 {
        match self {
            Self::None => 0,
            Self::Xz => 6,
            Self::Zstd => zstd::DEFAULT_COMPRESSION_LEVEL,
        }
    }

    /// Checks a user-supplied level against what the compressor accepts.
    pub fn check_level(self, level: i32) -> Result<(), String> {
        let range = match self {
            Self::None => return Err("compression \"none\" takes no level".into()),
            Self::Xz => 0..=9,
            Self::Zstd => zstd::compression_level_range(),
        };
        if range.contains(&level) {
            Ok(())
        } else {
            Err(format!("{self} levels range from {} to {}, not {level}", range.start(), range.end()))
        }
    }

    /// How many threads can work on one stream of `size` bytes at once: xz
    /// compresses its blocks in parallel, zstd its jobs (a few MiB each at the
    /// usual levels). More threads than this would only cost memory.
    pub fn useful_threads(self, size: u64, level: Option<i32>) -> u32 {
        let chunk = match self {
            Self::None => return 1,
            Self::Xz => u32::try_from(level.unwrap_or(self.default_level())).ok().and_then(xz_block_size),
            Self::Zstd if size <= ZSTD_SINGLE_THREAD_MAX => return 1,
            Self::Zstd => Some(8 << 20),
        };
        chunk.map_or(1, |chunk| u32::try_from(size.div_ceil(chunk.max(1))).unwrap_or(u32::MAX).max(1))
    }

    /// The memory one encoder takes, with `threads` threads, to compress a
    /// stream of `input_size` bytes: what the libraries themselves compute
    /// for these settings, not a guess.
    ///
    /// * xz: `threads` is the number of blocks of the stream in flight at
    ///   once (see [`crate::compress::blocks`]). One block encoder
    ///   (`lzma_raw_encoder_memusage` of the filters [`Self::encoder`] uses,
    ///   dictionary sized to the input), the block read (no larger than the
    ///   input, since pages never written cost nothing) and its compressed
    ///   form (`lzma_block_buffer_bound`), and for a stream of several
    ///   blocks one `lzma_block_buffer_bound` more for each other block in
    ///   flight, which waits in the queue or, compressed, to be written.
    ///   Level 9 on a large NAR: ~1 GiB (674 MiB of match finder and
    ///   dictionary, the rest the 192 MiB block in and out), and 192 MiB more
    ///   for each other block in flight.
    /// * zstd, a NAR compressed in the calling thread: one streaming
    ///   context (`ZSTD_estimateCStreamSize_usingCParams`) for the largest
    ///   such NAR, since a worker's context, reused from path to path, keeps
    ///   the tables of the largest it has seen.
    /// * zstd with workers: the size of one worker's compression context
    ///   (`ZSTD_estimateCCtxSize_usingCParams`) for each thread, plus the
    ///   buffers zstdmt shares between them (zstdmt_compress.c: a round
    ///   buffer of the window or one job per thread, plus 3 jobs of slack,
    ///   and up to 2 × threads + 3 output buffers of `ZSTD_compressBound`
    ///   of a job), for the parameters of an unknown size (the largest).
    pub fn encoder_memory(self, level: Option<i32>, threads: u32, input_size: u64) -> u64 {
        let level = level.unwrap_or(self.default_level());
        let threads = threads.max(1);
        match self {
            Self::None => 0,
            Self::Xz => {
                let Some(settings) = xz_block_settings(level, input_size) else { return u64::MAX };
                let block = input_size.min(settings.block_size()).max(1);
                let bound = crate::compress::xz::block_bound(block);
                // Blocks of this stream in flight besides the one compressed here.
                let others = if input_size > settings.block_size() { u64::from(threads - 1) } else { 0 };
                settings.encoder_memory().saturating_add(block).saturating_add(bound.saturating_mul(1 + others))
            }
            Self::Zstd if input_size <= ZSTD_SINGLE_THREAD_MAX => zstd_single_thread_memory(level),
            Self::Zstd => zstd_memory(level, threads),
        }
    }

    /// Wraps `inner` in an encoder. `threads` (at least 1) may speed up large
    /// inputs; it never changes the output. `contexts` keeps what one stream
    /// leaves behind for the next, so that thousands of tiny store paths do
    /// not each pay for a fresh compressor.
    ///
    /// `input_size` is what will be written (a store path's NarSize): xz then
    /// uses no larger a dictionary than the input can fill, as the `xz` tool
    /// does for files of known size. The output only depends on the data, the
    /// level and that size, and tiny store paths do not each pay for setting
    /// up an 8 MiB dictionary's match finder.
    pub fn encoder<'c, W: Write>(
        self,
        inner: W,
        level: Option<i32>,
        threads: u32,
        input_size: u64,
        contexts: &'c mut Contexts,
    ) -> io::Result<Encoder<'c, W>> {
        let level = level.unwrap_or(self.default_level());
        let threads = threads.max(1);
        Ok(match self {
            Self::None => Encoder::None(inner),
            Self::Xz => {
                let settings = xz_block_settings(level, input_size).ok_or_else(|| invalid_level(level))?;
                let Contexts { xz, xz_out, blocks, .. } = contexts;
                let encoder = xz.get_or_insert_with(BlockEncoder::new);
                let in_flight = usize::try_from(threads).unwrap_or(usize::MAX);
                Encoder::Xz(XzWriter::new(inner, settings, input_size, encoder, xz_out, blocks.clone(), in_flight)?)
            }
            Self::Zstd => {
                let workers = zstd_workers(input_size, threads);
                // A reused context keeps its worker pool and buffers; its
                // parameters are set again for every stream. A context keeps
                // the buffers of as many workers as it once had: start afresh
                // when the count changes (0 included), so that what it holds
                // is what [`Self::encoder_memory`] says.
                if contexts.zstd_workers != workers {
                    contexts.zstd = None;
                    contexts.zstd_workers = workers;
                }
                let context = contexts.zstd.get_or_insert_with(zstd::zstd_safe::CCtx::create);
                for parameter in [
                    CParameter::CompressionLevel(level),
                    CParameter::NbWorkers(workers),
                    CParameter::SrcSizeHint(zstd_size_hint(input_size)),
                ] {
                    context
                        .set_parameter(parameter)
                        .map_err(|code| io::Error::other(format!("zstd: {}", zstd::zstd_safe::get_error_name(code))))?;
                }
                Encoder::Zstd(zstd::stream::write::Encoder::with_context(inner, context))
            }
        })
    }
}

impl Compression {
    /// How [`Self::encoder`] sets the compressor up at `level`: what a later
    /// run must match to get the same bytes from the same NAR (see
    /// [`crate::format::manifest`]). It is built from the same constants and
    /// functions the encoder uses, so a change to the encoder shows up here,
    /// and so in the manifest, where it stops earlier caches from being
    /// reused. Thread counts are not in it: they never change the output.
    pub fn describe_encoder(self, level: Option<i32>) -> EncoderDescription {
        let level = level.unwrap_or(self.default_level());
        let owned = |pairs: &[(&'static str, &str)]| pairs.iter().map(|&(k, v)| (k, v.to_owned())).collect();
        match self {
            Self::None => EncoderDescription { level: None, parameters: Vec::new(), libraries: Vec::new() },
            Self::Xz => {
                let preset = u32::try_from(level).unwrap_or(u32::MAX);
                let dict = xz_preset_dict_size(preset).map_or("invalid".into(), |d| d.to_string());
                let block = xz_block_size(preset).map_or("invalid".into(), |b| b.to_string());
                let mut parameters: Vec<(&'static str, String)> = owned(&[
                    // What crate::compress::xz writes, byte for byte, whoever
                    // compresses the blocks; its format differs from the
                    // single-threaded encoder's (sizes in block headers).
                    ("encoder", "lzma_stream_encoder_mt"),
                    ("filters", "lzma2"),
                    ("preset", &level.to_string()),
                    ("extreme", "false"),
                    ("check", crate::compress::xz::CHECK_NAME),
                ]);
                parameters.push(("blockSize", block));
                parameters.push(("dictSize", format!("min({dict}, NarSize rounded up to a power of two, >= 4096)")));
                EncoderDescription { level: Some(level), parameters, libraries: vec![("liblzma", liblzma_version())] }
            }
            Self::Zstd => EncoderDescription {
                level: Some(level),
                parameters: vec![
                    // In the calling thread up to the limit; above it zstdmt,
                    // whose output is the same for any count >= 1 and
                    // differs from that of 0 workers.
                    ("nbWorkers", format!("0 up to {ZSTD_SINGLE_THREAD_MAX} bytes of NAR, >= 1 above")),
                    ("srcSizeHint", format!("NarSize, at most {}", zstd_size_hint(u64::MAX))),
                ]
                .into_iter()
                .chain(owned(&[
                    // Nothing else is set on the context: these are zstd's
                    // defaults, written down because they show in the frame.
                    ("checksumFlag", "0"),
                    ("contentSize", "not pledged"),
                    ("dictionary", "none"),
                    ("otherParameters", "libzstd defaults for the level"),
                ]))
                .collect(),
                libraries: vec![("libzstd", zstd::zstd_safe::version_string().to_owned())],
            },
        }
    }
}

/// liblzma's `lzma_version_string`: the library actually linked in.
fn liblzma_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string (lzma.h).
    let version = unsafe { std::ffi::CStr::from_ptr(liblzma_sys::lzma_version_string()) };
    version.to_string_lossy().into_owned()
}

/// The largest NAR zstd compresses in the calling thread, with no workers;
/// larger ones go to zstdmt with one worker or more. An output-changing
/// parameter: zstd's output with no workers differs from its output with
/// workers (which is the same for any number of them), so this depends on
/// the NAR size alone. 8 MiB is one zstdmt job at the default level (4 ×
/// its 2 MiB window): zstdmt cannot spread a smaller NAR over threads
/// anyway, and for the thousands of small store paths of a closure its job
/// hand-off, buffer copies and thread wake-ups cost more than compressing.
pub const ZSTD_SINGLE_THREAD_MAX: u64 = 8 << 20;

/// zstd's worker count for a NAR of `size` bytes: 0 (in the calling thread)
/// up to [`ZSTD_SINGLE_THREAD_MAX`], else `threads` (at least 1).
pub fn zstd_workers(size: u64, threads: u32) -> u32 {
    if size <= ZSTD_SINGLE_THREAD_MAX { 0 } else { threads.max(1) }
}

/// The size hint zstd gets (`ZSTD_c_srcSizeHint`): the NAR size, capped to
/// what the parameter holds. An output-changing parameter: zstd picks its
/// tables and window for that size, as for a file of known size (smaller and
/// quicker to set up for a small NAR), without writing the size to the frame.
pub fn zstd_size_hint(size: u64) -> u32 {
    u32::try_from(size).unwrap_or(u32::MAX).min(i32::MAX as u32)
}

/// The xz block settings for a stream of `input_size` bytes: the preset's
/// LZMA2 filter with a dictionary no larger than the input can fill, in
/// blocks of the preset's block size. `None` for a level outside 0 to 9.
fn xz_block_settings(level: i32, input_size: u64) -> Option<BlockSettings> {
    let preset = u32::try_from(level).ok()?;
    let preset_dict = xz_preset_dict_size(preset)?;
    let fitting = u32::try_from(input_size).unwrap_or(u32::MAX).max(4096).checked_next_power_of_two();
    let dict = fitting.map_or(preset_dict, |size| size.min(preset_dict));
    BlockSettings::new(preset, dict)?.with_block_size(xz_block_size(preset)?)
}

/// The dictionary sizes of xz's presets 0 to 9 (xz(1), "Presets").
const XZ_PRESET_DICT_SIZES: [u32; 10] =
    [256 << 10, 1 << 20, 2 << 20, 4 << 20, 4 << 20, 8 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20];

fn xz_preset_dict_size(preset: u32) -> Option<u32> {
    XZ_PRESET_DICT_SIZES.get(usize::try_from(preset).ok()?).copied()
}

/// The block size liblzma picks for a preset (three times its dictionary,
/// at least 1 MiB), computed here rather than left to liblzma so that it is
/// visibly a function of the level alone.
fn xz_block_size(preset: u32) -> Option<u64> {
    xz_preset_dict_size(preset).map(|dict| (3 * u64::from(dict)).max(1 << 20))
}

/// See [`Compression::encoder_memory`]: the single-threaded context of a
/// worker, for the largest NAR it compresses in the calling thread.
fn zstd_single_thread_memory(level: i32) -> u64 {
    use zstd::zstd_safe::zstd_sys;
    // SAFETY: pure functions of plain values, as zstd.h documents them.
    let bytes = unsafe {
        let params = zstd_sys::ZSTD_getCParams(level, ZSTD_SINGLE_THREAD_MAX, 0);
        zstd_sys::ZSTD_estimateCStreamSize_usingCParams(params)
    };
    bytes as u64
}

/// See [`Compression::encoder_memory`].
fn zstd_memory(level: i32, threads: u32) -> u64 {
    use zstd::zstd_safe::zstd_sys;
    // SAFETY: pure functions of plain values, as zstd.h documents them.
    let (params, context) = unsafe {
        let params = zstd_sys::ZSTD_getCParams(level, 0, 0);
        (params, zstd_sys::ZSTD_estimateCCtxSize_usingCParams(params))
    };
    // zstdmt's ZSTDMT_computeTargetJobLog, taking the larger of its two
    // cases (with and without long-distance matching) and its 1 GiB cap.
    let job_log = (params.windowLog + 2).max(params.chainLog + 3).clamp(21, 30);
    let job = 1u64 << job_log;
    let job_output = zstd::zstd_safe::compress_bound(job as usize) as u64;
    let threads = u64::from(threads);
    threads * context as u64 + (1u64 << params.windowLog).max(threads * job) + 3 * job + (2 * threads + 3) * job_output
}

fn invalid_level(level: i32) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("invalid compression level {level}"))
}

/// Compressor state kept between streams, one per worker thread.
#[derive(Default)]
pub struct Contexts {
    zstd: Option<zstd::zstd_safe::CCtx<'static>>,
    /// The worker count `zstd` was set up with (0: the calling thread).
    zstd_workers: u32,
    /// The xz block encoder, and the buffer the blocks it compresses for
    /// the worker's own stream go to.
    xz: Option<BlockEncoder>,
    xz_out: Vec<u8>,
    /// Where xz blocks are shared with the other workers; `None`: each
    /// stream is compressed by its own worker alone.
    blocks: Option<Arc<BlockQueue>>,
}

impl Contexts {
    /// Contexts whose xz streams share their blocks through `queue`.
    pub fn sharing(queue: Arc<BlockQueue>) -> Self {
        Self { blocks: Some(queue), ..Self::default() }
    }

    /// The xz block encoder, if one is kept, for compressing other
    /// workers' blocks (see [`BlockQueue::help`]).
    pub fn xz_encoder(&mut self) -> &mut Option<BlockEncoder> {
        &mut self.xz
    }

    /// Frees what the compressors keep between streams.
    pub fn release(&mut self) {
        self.zstd = None;
        self.xz = None;
        self.xz_out = Vec::new();
    }

    /// Whether anything is kept between streams.
    pub fn holds_memory(&self) -> bool {
        self.zstd.is_some() || self.xz.is_some() || self.xz_out.capacity() > 0
    }
}

/// A streaming encoder for one of the compressions.
pub enum Encoder<'c, W: Write> {
    None(W),
    Xz(XzWriter<'c, W>),
    Zstd(zstd::stream::write::Encoder<'c, W>),
}

impl<W: Write> Encoder<'_, W> {
    /// Writes the end of the stream and hands back the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Self::None(w) => Ok(w),
            Self::Xz(e) => e.finish(),
            Self::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::None(w) => w.write(buf),
            Self::Xz(e) => e.write(buf),
            Self::Zstd(e) => e.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::None(w) => w.write_all(buf),
            Self::Xz(e) => e.write_all(buf),
            Self::Zstd(e) => e.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::None(w) => w.flush(),
            Self::Xz(e) => e.flush(),
            Self::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liblzma::stream::{Filters, LzmaOptions};

    fn compress(c: Compression, level: Option<i32>, data: &[u8], threads: u32) -> Vec<u8> {
        compress_with(&mut Contexts::default(), c, level, data, threads)
    }

    fn compress_with(
        contexts: &mut Contexts,
        c: Compression,
        level: Option<i32>,
        data: &[u8],
        threads: u32,
    ) -> Vec<u8> {
        let mut e = c.encoder(Vec::new(), level, threads, data.len() as u64, contexts).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn reused_contexts_change_nothing() {
        let (small, large) = (sample(100_000), sample(20 << 20));
        let mut contexts = Contexts::default();
        for c in Compression::ALL {
            // Different levels and thread counts one after the other on one context.
            // Low levels for the large input: xz at level 6 would take a while.
            for (data, level, threads) in
                [(&large, Some(1), 2), (&small, None, 1), (&large, Some(2), 2), (&small, Some(1), 1)]
            {
                let level = level.filter(|_| c != Compression::None);
                assert!(
                    compress_with(&mut contexts, c, level, data, threads) == compress(c, level, data, threads),
                    "{c} level {level:?} threads {threads}: a reused context changed the output"
                );
            }
        }
    }

    /// Several xz blocks and zstd jobs' worth of compressible, not trivially
    /// repetitive bytes.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 1;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 7 == 0 { (x >> 24) as u8 } else { b"nix store paths "[i % 16] }
            })
            .collect()
    }

    #[test]
    fn names_and_extensions_are_nixs() {
        let table: Vec<_> = Compression::ALL.iter().map(|c| (c.name(), c.extension())).collect();
        assert_eq!(table, [("none", ""), ("xz", ".xz"), ("zstd", ".zst")]);
        assert!("gzip".parse::<Compression>().unwrap_err().to_string().contains("\"none\", \"xz\", \"zstd\""));
    }

    #[test]
    fn output_does_not_depend_on_threads() {
        // xz level 1 has 3 MiB blocks and zstd level 3 jobs of a few MiB, so this
        // is many blocks and jobs, spread differently over 1, 2 and 4 threads.
        let data = sample(24 << 20);
        for (c, level) in [(Compression::Xz, Some(1)), (Compression::Zstd, None)] {
            let one = compress(c, level, &data, 1);
            assert!(one.len() < data.len() / 2, "{c} did not compress");
            for threads in [2, 4] {
                assert!(one == compress(c, level, &data, threads), "{c} output differs with {threads} threads");
            }
        }
    }

    #[test]
    fn round_trips_through_the_reference_decoders() {
        let data = sample(3 << 20);
        let xz = compress(Compression::Xz, None, &data, 2);
        let mut decoded = Vec::new();
        io::copy(&mut liblzma::read::XzDecoder::new(&xz[..]), &mut decoded).unwrap();
        assert!(decoded == data);
        assert!(zstd::decode_all(&compress(Compression::Zstd, None, &data, 2)[..]).unwrap() == data);
    }

    #[test]
    fn xz_block_sizes_are_the_ones_liblzma_picks() {
        // This also checks the preset dictionary table, from which both come.
        for preset in 0..=9 {
            let mut filters = Filters::new();
            filters.lzma2(&LzmaOptions::new_preset(preset).unwrap());
            assert_eq!(xz_block_size(preset), Some(filters.mt_block_size()), "preset {preset}");
        }
        assert_eq!(xz_block_size(10), None);
    }

    #[test]
    fn xz_memory_is_liblzmas_figure_for_the_input() {
        const MIB: u64 = 1 << 20;
        let big = Compression::Xz.encoder_memory(Some(9), 1, 1 << 30);
        // xz(1): "-9 … CompMem 674 MiB" for the match finder and dictionary,
        // then 192 MiB blocks in and two out.
        assert!((674 * MIB..1300 * MIB).contains(&big), "{big}");
        // A second block in flight: one more block's worth, not another encoder.
        let two = Compression::Xz.encoder_memory(Some(9), 2, 1 << 30);
        assert!((big + 192 * MIB..big + 200 * MIB).contains(&two), "{two}");
        // A small NAR gets a small dictionary and small buffers.
        assert!(Compression::Xz.encoder_memory(Some(9), 1, MIB) < 64 * MIB);
        assert_eq!(Compression::None.encoder_memory(None, 4, 1 << 30), 0);
    }

    #[test]
    fn zstd_memory_bounds_what_the_context_holds() {
        // Above and at the single-threaded limit, and a small NAR after a
        // larger one on the same context (which keeps the larger tables).
        let (large, limit) = (sample(40 << 20), sample(ZSTD_SINGLE_THREAD_MAX as usize));
        for (level, threads) in [(1, 1), (3, 1), (3, 2), (3, 4), (9, 2)] {
            let mut contexts = Contexts::default();
            for data in [&large, &limit, &limit[..100_000]] {
                compress_with(&mut contexts, Compression::Zstd, Some(level), data, threads);
                let held = contexts.zstd.as_ref().unwrap().sizeof() as u64;
                let estimate = Compression::Zstd.encoder_memory(Some(level), threads, data.len() as u64);
                eprintln!(
                    "zstd level {level} threads {threads} {} bytes: holds {held}, estimate {estimate}",
                    data.len()
                );
                assert!(held <= estimate, "level {level}, {threads} threads: holds {held}, estimate {estimate}");
            }
        }
    }

    #[test]
    fn zstd_threads_follow_the_nar_size_alone() {
        assert_eq!(zstd_workers(ZSTD_SINGLE_THREAD_MAX, 4), 0);
        assert_eq!(zstd_workers(ZSTD_SINGLE_THREAD_MAX + 1, 1), 1);
        assert_eq!(zstd_workers(ZSTD_SINGLE_THREAD_MAX + 1, 3), 3);
        assert_eq!(Compression::Zstd.useful_threads(ZSTD_SINGLE_THREAD_MAX, None), 1);
        assert_eq!(zstd_size_hint(5 << 30), i32::MAX as u32);
        // At the limit and just above it: the same output whatever the threads.
        for len in [ZSTD_SINGLE_THREAD_MAX as usize, ZSTD_SINGLE_THREAD_MAX as usize + 1] {
            let data = sample(len);
            let one = compress(Compression::Zstd, None, &data, 1);
            assert!(one == compress(Compression::Zstd, None, &data, 3), "{len} bytes");
            assert!(zstd::decode_all(&one[..]).unwrap() == data);
        }
    }

    #[test]
    fn the_description_is_what_the_encoders_write() {
        let data = sample(100_000);
        let xz = compress(Compression::Xz, None, &data, 1);
        let described = Compression::Xz.describe_encoder(None);
        assert_eq!(described.level, Some(6));
        let parameter =
            |d: &EncoderDescription, key: &str| d.parameters.iter().find(|(k, _)| *k == key).unwrap().1.clone();
        // The stream header's flags name the check (xz file format 2.1.1.2: 0x04 is CRC64).
        assert_eq!((&xz[..6], xz[7]), (&b"\xfd7zXZ\0"[..], 0x04));
        assert_eq!(parameter(&described, "check"), "crc64");
        assert_eq!(parameter(&described, "blockSize"), (24u64 << 20).to_string());
        assert!(described.libraries[0].1.starts_with("5."), "{:?}", described.libraries);

        let zstd = compress(Compression::Zstd, Some(5), &data, 1);
        let described = Compression::Zstd.describe_encoder(Some(5));
        assert_eq!(described.level, Some(5));
        // The frame header descriptor (RFC 8878 3.1.1.1.1): no content size
        // (flag 0, not single segment), no checksum, no dictionary.
        assert_eq!(&zstd[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(zstd[4] & 0b1110_0111, 0, "descriptor {:#010b}", zstd[4]);
        assert_eq!(parameter(&described, "checksumFlag"), "0");
        assert_eq!(described.libraries, [("libzstd", zstd::zstd_safe::version_string().to_owned())]);

        let none = Compression::None.describe_encoder(None);
        assert_eq!((none.level, none.parameters.len(), none.libraries.len()), (None, 0, 0));
    }

    #[test]
    fn levels_are_checked() {
        assert!(Compression::Xz.check_level(9).is_ok());
        assert!(Compression::Xz.check_level(10).is_err());
        assert!(Compression::Zstd.check_level(19).is_ok());
        assert!(Compression::Zstd.check_level(23).is_err());
        assert!(Compression::None.check_level(1).is_err());
    }
}
