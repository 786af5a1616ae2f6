//! A safe wrapper around the parts of liblzma that write an xz stream one
//! block at a time: the stream header, independently compressed blocks, the
//! index and the stream footer (xz file format 1.2.0, sections 2 to 4).
//!
//! With these, blocks of one stream can be compressed by any thread, in any
//! order, and put together afterwards (see [`crate::compress::blocks`]). Each block is
//! written exactly as liblzma's multi-threaded encoder (stream_encoder_mt.c,
//! `worker_encode`) writes it, so that a stream made here is byte for byte
//! the stream `lzma_stream_encoder_mt` makes from the same data, filters and
//! block size, whatever the number of threads:
//!
//! * the block header's size is reserved for the largest sizes a block can
//!   have (the block size in, `lzma_block_buffer_bound` of it out), then the
//!   header is written with the actual sizes and zero padding;
//! * a block whose compressed form does not fit in that bound is written as
//!   uncompressed LZMA2 chunks instead (`lzma_block_uncomp_encode`);
//! * the check is CRC64.
//!
//! liblzma-sys's hand-written bindings have no `lzma_block` nor index
//! functions, so they are declared here from lzma.h (`lzma/block.h`,
//! `lzma/index.h`); the symbols are in the liblzma that liblzma-sys links.
//!
//! ```
//! use make_binary_cache::compress::xz::{BlockEncoder, BlockSettings, stream_end, stream_header};
//! let settings = BlockSettings::new(6, 4096).unwrap().with_block_size(1 << 20).unwrap();
//! let mut out = stream_header().to_vec();
//! let mut block = Vec::new();
//! let sizes = BlockEncoder::new().encode(&settings, b"hello", &mut block).unwrap();
//! out.extend_from_slice(&block);
//! out.extend_from_slice(&stream_end(&[sizes]).unwrap());
//! let mut decoded = Vec::new();
//! std::io::copy(&mut liblzma::read::XzDecoder::new(&out[..]), &mut decoded).unwrap();
//! assert_eq!(decoded, b"hello");
//! ```

use std::io;
use std::os::raw::{c_uint, c_void};
use std::ptr;

use liblzma_sys::{
    LZMA_CHECK_CRC64, LZMA_FILTER_LZMA2, LZMA_FINISH, LZMA_OK, LZMA_STREAM_END, LZMA_VLI_UNKNOWN, lzma_allocator,
    lzma_bool, lzma_check, lzma_filter, lzma_options_lzma, lzma_ret, lzma_stream, lzma_stream_flags, lzma_vli,
};

/// The integrity check of every block: CRC64, as `xz` and Nix use.
const CHECK: lzma_check = LZMA_CHECK_CRC64;
/// The name of that check, for the manifest (see
/// [`crate::compress::Compression::describe_encoder`]), kept beside it.
pub const CHECK_NAME: &str = "crc64";

/// The size of the stream header and of the stream footer.
const STREAM_HEADER_SIZE: usize = 12;

/// `lzma_block` of lzma/block.h, version 0 and 1 fields.
#[repr(C)]
struct LzmaBlock {
    version: u32,
    header_size: u32,
    check: lzma_check,
    compressed_size: lzma_vli,
    uncompressed_size: lzma_vli,
    filters: *mut lzma_filter,
    raw_check: [u8; 64],
    reserved_ptr: [*mut c_void; 3],
    reserved_int: [u32; 2],
    reserved_vli: [lzma_vli; 6],
    reserved_enum: [c_uint; 4],
    ignore_check: lzma_bool,
    reserved_bool: [lzma_bool; 7],
}

/// `lzma_index` of lzma/index.h: opaque.
#[repr(C)]
struct LzmaIndex {
    _private: [u8; 0],
}

unsafe extern "C" {
    fn lzma_block_header_size(block: *mut LzmaBlock) -> lzma_ret;
    fn lzma_block_header_encode(block: *const LzmaBlock, out: *mut u8) -> lzma_ret;
    fn lzma_block_unpadded_size(block: *const LzmaBlock) -> lzma_vli;
    fn lzma_block_encoder(strm: *mut lzma_stream, block: *mut LzmaBlock) -> lzma_ret;
    fn lzma_block_buffer_bound(uncompressed_size: usize) -> usize;
    fn lzma_block_uncomp_encode(
        block: *mut LzmaBlock,
        input: *const u8,
        in_size: usize,
        out: *mut u8,
        out_pos: *mut usize,
        out_size: usize,
    ) -> lzma_ret;
    fn lzma_index_init(allocator: *const lzma_allocator) -> *mut LzmaIndex;
    fn lzma_index_end(i: *mut LzmaIndex, allocator: *const lzma_allocator);
    fn lzma_index_append(
        i: *mut LzmaIndex,
        allocator: *const lzma_allocator,
        unpadded_size: lzma_vli,
        uncompressed_size: lzma_vli,
    ) -> lzma_ret;
    fn lzma_index_size(i: *const LzmaIndex) -> lzma_vli;
    fn lzma_index_buffer_encode(i: *const LzmaIndex, out: *mut u8, out_pos: *mut usize, out_size: usize) -> lzma_ret;
}

/// An error naming the liblzma function and its return code (lzma/base.h).
fn error(function: &str, ret: lzma_ret) -> io::Error {
    let name = match ret {
        2 => "LZMA_NO_CHECK",
        3 => "LZMA_UNSUPPORTED_CHECK",
        4 => "LZMA_GET_CHECK",
        5 => "LZMA_MEM_ERROR",
        6 => "LZMA_MEMLIMIT_ERROR",
        7 => "LZMA_FORMAT_ERROR",
        8 => "LZMA_OPTIONS_ERROR",
        9 => "LZMA_DATA_ERROR",
        10 => "LZMA_BUF_ERROR",
        11 => "LZMA_PROG_ERROR",
        _ => "an unknown return code",
    };
    io::Error::other(format!("xz: {function} returned {name} ({ret})"))
}

fn check(function: &str, ret: lzma_ret) -> io::Result<()> {
    if ret == LZMA_OK { Ok(()) } else { Err(error(function, ret)) }
}

/// The largest a block of `size` bytes can be once compressed, headers and
/// check included (`lzma_block_buffer_bound`).
pub fn block_bound(size: u64) -> u64 {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    // SAFETY: a pure function of its argument; 0 means "too large".
    match unsafe { lzma_block_buffer_bound(size) } {
        0 => u64::MAX,
        bound => bound as u64,
    }
}

/// What decides a block's bytes besides its data: the LZMA2 preset, its
/// dictionary size, and the block size of the stream (which sets how much
/// room the block header is given and when a block counts as incompressible).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSettings {
    preset: u32,
    dict_size: u32,
    block_size: u64,
}

impl BlockSettings {
    /// LZMA2 at `preset` (0 to 9) with a `dict_size` dictionary, in blocks
    /// of `block_size` bytes; `None` for a preset liblzma does not know or a
    /// block size it cannot bound.
    pub fn new(preset: u32, dict_size: u32) -> Option<Self> {
        Self { preset, dict_size, block_size: 1 }.with_block_size(1)
    }

    /// The same, in blocks of `block_size` bytes.
    pub fn with_block_size(self, block_size: u64) -> Option<Self> {
        let settings = Self { block_size, ..self };
        (block_size > 0 && block_bound(block_size) != u64::MAX && settings.options().is_some()).then_some(settings)
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    fn options(&self) -> Option<lzma_options_lzma> {
        // SAFETY: lzma_options_lzma is plain data, valid all zero; the
        // preset function fills it in and returns true on an unknown preset.
        let mut options: lzma_options_lzma = unsafe { std::mem::zeroed() };
        if unsafe { liblzma_sys::lzma_lzma_preset(&mut options, self.preset) } != 0 {
            return None;
        }
        options.dict_size = self.dict_size;
        Some(options)
    }

    /// What one encoder takes to compress blocks with these settings: the
    /// match finder and dictionary (`lzma_raw_encoder_memusage`), not the
    /// buffers in and out.
    pub fn encoder_memory(&self) -> u64 {
        let Some(mut options) = self.options() else { return u64::MAX };
        let filters = filters(&mut options);
        // SAFETY: `filters` is a valid chain ending in LZMA_VLI_UNKNOWN,
        // pointing at `options`, which outlives the call.
        unsafe { liblzma_sys::lzma_raw_encoder_memusage(filters.as_ptr()) }
    }
}

/// The filter chain of one LZMA2 filter with `options`.
fn filters(options: &mut lzma_options_lzma) -> [lzma_filter; 2] {
    [
        lzma_filter { id: LZMA_FILTER_LZMA2, options: ptr::from_mut(options).cast() },
        lzma_filter { id: LZMA_VLI_UNKNOWN, options: ptr::null_mut() },
    ]
}

/// What the index needs to know of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSizes {
    pub unpadded: u64,
    pub uncompressed: u64,
}

/// The stream header: no flags but the CRC64 check.
pub fn stream_header() -> [u8; STREAM_HEADER_SIZE] {
    let mut out = [0; STREAM_HEADER_SIZE];
    // SAFETY: lzma_stream_flags is plain data, valid all zero (version 0);
    // `out` has the 12 bytes the function writes.
    unsafe {
        let mut flags: lzma_stream_flags = std::mem::zeroed();
        flags.check = CHECK;
        let ret = liblzma_sys::lzma_stream_header_encode(&flags, out.as_mut_ptr());
        debug_assert_eq!(ret, LZMA_OK, "version 0 with a valid check cannot fail");
    }
    out
}

/// The index of `blocks`, in order, and the stream footer: the end of the stream.
pub fn stream_end(blocks: &[BlockSizes]) -> io::Result<Vec<u8>> {
    /// Frees the index however this function returns.
    struct Index(*mut LzmaIndex);
    impl Drop for Index {
        fn drop(&mut self) {
            // SAFETY: allocated by lzma_index_init with the default allocator, freed once.
            unsafe { lzma_index_end(self.0, ptr::null()) }
        }
    }
    // SAFETY: the default allocator; null on failure, checked.
    let index = Index(unsafe { lzma_index_init(ptr::null()) });
    if index.0.is_null() {
        return Err(error("lzma_index_init", 5));
    }
    for block in blocks {
        // SAFETY: a valid index; liblzma checks the sizes.
        check("lzma_index_append", unsafe {
            lzma_index_append(index.0, ptr::null(), block.unpadded, block.uncompressed)
        })?;
    }
    // SAFETY: a valid index.
    let index_size = unsafe { lzma_index_size(index.0) };
    let index_len = usize::try_from(index_size).map_err(|_| error("lzma_index_size", 11))?;
    let mut out = vec![0; index_len + STREAM_HEADER_SIZE];
    let mut pos = 0;
    // SAFETY: `out` has room for the index (its size as liblzma gives it)
    // and the footer; `pos` is where to write.
    unsafe {
        check("lzma_index_buffer_encode", lzma_index_buffer_encode(index.0, out.as_mut_ptr(), &mut pos, index_len))?;
        let mut flags: lzma_stream_flags = std::mem::zeroed();
        flags.check = CHECK;
        flags.backward_size = index_size;
        check("lzma_stream_footer_encode", liblzma_sys::lzma_stream_footer_encode(&flags, out.as_mut_ptr().add(pos)))?;
    }
    Ok(out)
}

/// A block encoder, reused from block to block: liblzma keeps its match
/// finder between blocks with the same settings instead of allocating it
/// again, and frees it when dropped.
pub struct BlockEncoder {
    /// Boxed: liblzma keeps no pointer to it, but it is large and moves with
    /// the worker's state.
    stream: Box<lzma_stream>,
}

// SAFETY: the stream is only used through `&mut self`; liblzma's encoder
// state has no affinity to a thread.
unsafe impl Send for BlockEncoder {}

impl Default for BlockEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockEncoder {
    pub fn new() -> Self {
        // SAFETY: LZMA_STREAM_INIT is all zero.
        Self { stream: Box::new(unsafe { std::mem::zeroed() }) }
    }

    /// Compresses `input` (at most the block size) into one whole block in
    /// `out` (cleared first), as the multi-threaded encoder would.
    pub fn encode(&mut self, settings: &BlockSettings, input: &[u8], out: &mut Vec<u8>) -> io::Result<BlockSizes> {
        if input.len() as u64 > settings.block_size {
            return Err(io::Error::other(format!(
                "xz: a block of {} bytes is larger than the block size {}",
                input.len(),
                settings.block_size
            )));
        }
        let mut options = settings.options().ok_or_else(|| error("lzma_lzma_preset", 8))?;
        let mut filters = filters(&mut options);
        // The sizes of the largest block, for the header's room, as
        // worker_encode sets them.
        let limit = block_bound(settings.block_size);
        // SAFETY: lzma_block is plain data, valid all zero (version 0).
        let mut block: LzmaBlock = unsafe { std::mem::zeroed() };
        block.check = CHECK;
        block.compressed_size = limit;
        block.uncompressed_size = settings.block_size;
        block.filters = filters.as_mut_ptr();
        // SAFETY: `block` is valid and points at `filters`, which point at
        // `options`; all outlive this function, where the encoding ends.
        check("lzma_block_header_size", unsafe { lzma_block_header_size(&mut block) })?;
        check("lzma_block_encoder", unsafe { lzma_block_encoder(&mut *self.stream, &mut block) })?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let header_size = block.header_size as usize;
        out.clear();
        out.reserve_exact(block_bound(input.len() as u64).min(limit as u64) as usize);
        out.resize(header_size, 0);
        self.stream.next_in = input.as_ptr();
        self.stream.avail_in = input.len();
        let finished = loop {
            if out.len() == out.capacity() {
                if out.len() >= limit {
                    // Incompressible: worker_encode's output buffer is full.
                    break false;
                }
                out.reserve_exact((out.len() / 2).max(4096).min(limit - out.len()));
            }
            let room = out.capacity().min(limit) - out.len();
            // SAFETY: `room` bytes after `out.len()` are allocated; liblzma
            // writes at most `avail_out` bytes and says how many it did.
            let ret = unsafe {
                self.stream.next_out = out.as_mut_ptr().add(out.len());
                self.stream.avail_out = room;
                let ret = liblzma_sys::lzma_code(&mut *self.stream, LZMA_FINISH);
                out.set_len(out.len() + room - self.stream.avail_out);
                ret
            };
            match ret {
                LZMA_STREAM_END => break true,
                LZMA_OK => continue,
                ret => return Err(error("lzma_code", ret)),
            }
        };
        // No pointer to `input` may outlive this call.
        self.stream.next_in = ptr::null();
        self.stream.avail_in = 0;
        if finished {
            // SAFETY: the encoder has set the actual sizes in `block`; the
            // header goes into the `header_size` bytes reserved for it.
            check("lzma_block_header_encode", unsafe { lzma_block_header_encode(&block, out.as_mut_ptr()) })?;
        } else {
            out.clear();
            let bound = block_bound(input.len() as u64) as usize;
            out.reserve_exact(bound);
            let mut pos = 0;
            // SAFETY: `out` has `bound` bytes of room, what the function
            // needs for `input`; it reports how many it wrote in `pos`.
            unsafe {
                check(
                    "lzma_block_uncomp_encode",
                    lzma_block_uncomp_encode(
                        &mut block,
                        input.as_ptr(),
                        input.len(),
                        out.as_mut_ptr(),
                        &mut pos,
                        bound,
                    ),
                )?;
                out.set_len(pos);
            }
        }
        // SAFETY: `block` holds the sizes of a finished block.
        let unpadded = unsafe { lzma_block_unpadded_size(&block) };
        if unpadded == 0 {
            return Err(error("lzma_block_unpadded_size", 11));
        }
        Ok(BlockSizes { unpadded, uncompressed: block.uncompressed_size })
    }
}

impl Drop for BlockEncoder {
    fn drop(&mut self) {
        // SAFETY: a stream initialised by lzma_block_encoder, or all zero,
        // which lzma_end accepts.
        unsafe { liblzma_sys::lzma_end(&mut *self.stream) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liblzma::stream::{Check, Filters, LzmaOptions, MtStreamBuilder};
    use std::io::Write;

    /// The stream liblzma's multi-threaded encoder writes.
    fn reference(preset: u32, dict_size: u32, block_size: u64, threads: u32, data: &[u8]) -> Vec<u8> {
        let mut options = LzmaOptions::new_preset(preset).unwrap();
        options.dict_size(dict_size);
        let mut filters = Filters::new();
        filters.lzma2(&options);
        let mut builder = MtStreamBuilder::new();
        builder.filters(filters).threads(threads).block_size(block_size).check(Check::Crc64);
        let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), builder.encoder().unwrap());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn ours(settings: &BlockSettings, data: &[u8]) -> Vec<u8> {
        let mut out = stream_header().to_vec();
        let mut encoder = BlockEncoder::new();
        let mut block = Vec::new();
        let mut sizes = Vec::new();
        for chunk in data.chunks(settings.block_size() as usize) {
            sizes.push(encoder.encode(settings, chunk, &mut block).unwrap());
            out.extend_from_slice(&block);
        }
        out.extend_from_slice(&stream_end(&sizes).unwrap());
        out
    }

    fn sample(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 5 == 0 { (x >> 24) as u8 } else { b"closure of store paths"[i % 22] }
            })
            .collect()
    }

    fn random(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn blocks_are_byte_identical_to_the_multi_threaded_encoder() {
        // Level 1: 1 MiB dictionary, 3 MiB blocks, quick enough for a test.
        let block = 3u64 << 20;
        let b = block as usize;
        let settings = BlockSettings::new(1, 1 << 20).unwrap().with_block_size(block).unwrap();
        let mut mixed = sample(b, 1);
        mixed.extend(random(b / 2));
        mixed.extend(sample(b, 2));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("one byte", vec![7]),
            ("compressible", sample(100_000, 3)),
            ("random", random(200_000)),
            ("random, several blocks", random(2 * b + 12_345)),
            ("exactly one block", sample(b, 4)),
            ("one block and a byte", sample(b + 1, 5)),
            ("many blocks, mixed", mixed),
            ("zeros", vec![0; b + 100]),
        ];
        for (what, data) in &cases {
            let expected = reference(1, 1 << 20, block, 2, data);
            assert!(ours(&settings, data) == expected, "{what}: differs from lzma_stream_encoder_mt");
        }
        // A small dictionary, as for a small NAR, at the default level.
        let data = sample(5000, 6);
        let settings = BlockSettings::new(6, 8192).unwrap().with_block_size(24 << 20).unwrap();
        assert!(ours(&settings, &data) == reference(6, 8192, 24 << 20, 1, &data));
    }

    #[test]
    fn errors_name_the_function_and_code() {
        let settings = BlockSettings::new(1, 1 << 20).unwrap().with_block_size(4).unwrap();
        let e = BlockEncoder::new().encode(&settings, b"too long", &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("block size"), "{e}");
        assert!(error("lzma_code", 5).to_string().contains("lzma_code returned LZMA_MEM_ERROR (5)"));
        assert!(BlockSettings::new(10, 1 << 20).is_none());
        // A dictionary below liblzma's minimum.
        let bad = BlockSettings::new(6, 1).unwrap().with_block_size(100).unwrap();
        let e = BlockEncoder::new().encode(&bad, b"x", &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("LZMA_OPTIONS_ERROR"), "{e}");
    }

    #[test]
    fn memory_is_liblzmas_figure() {
        // xz(1): preset 6 compresses with 94 MiB.
        let m = BlockSettings::new(6, 8 << 20).unwrap().encoder_memory();
        assert!((90 << 20..100 << 20).contains(&m), "{m}");
        assert!(block_bound(24 << 20) > 24 << 20);
    }
}
