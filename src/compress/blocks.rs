//! xz block-level work sharing: every worker compresses blocks, of any
//! store path, so that no core idles while a block of some path waits.
//!
//! A store path's NAR is cut into blocks of the xz block size (24 MiB at
//! level 6), each compressed on its own (see [`crate::compress::xz`]) and written in
//! order by the worker reading that path ([`XzWriter`]). The blocks of a run
//! meet in one [`BlockQueue`]:
//!
//! * a worker reading a NAR fills a block; when it is full and nothing else
//!   of that path is in flight and no worker is idle, it compresses the
//!   block itself, with no queue traffic (a NAR of one block, the common
//!   case, never touches the queue);
//! * otherwise the block goes to the queue. The reading worker goes on
//!   reading its next block only while a worker is idle and its path has
//!   fewer blocks in flight than its bound (what the memory budget allows,
//!   at most the number of workers); else it compresses the oldest queued
//!   block itself, its own or another path's, or waits for its oldest block;
//! * a worker with no paths left ([`BlockQueue::help`]) takes the oldest
//!   queued block until no worker is on a path any more;
//! * finished blocks are written in order by their path's worker, which
//!   hashes the stream (FileHash) as before.
//!
//! The output does not depend on who compressed which block: each block's
//! bytes depend only on its data and the settings, and the stream is
//! byte-for-byte what liblzma's multi-threaded encoder writes.
//!
//! Memory: a worker holds one block encoder, the block it reads, the block
//! it compresses (in and out) and, while other workers help, the other
//! blocks of its path in flight, each either waiting in the queue or, once
//! compressed, waiting to be written (see
//! [`crate::compress::Compression::encoder_memory`]).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::compress::xz::{self, BlockEncoder, BlockSettings, BlockSizes};

/// The blocks of a run waiting for a worker, shared by all workers.
#[derive(Default)]
pub struct BlockQueue {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Workers in [`BlockQueue::help`] waiting for a block.
    idle: usize,
    /// Workers on a store path, which may still queue blocks.
    owners: usize,
}

/// A block to compress, and where its result goes.
struct Job {
    input: Vec<u8>,
    settings: BlockSettings,
    /// The NarSize of its store path, for the memory a helper needs.
    stream_size: u64,
    slot: Arc<Slot>,
}

/// A compressed block: its bytes, and what the index needs of it.
type Compressed = io::Result<(Vec<u8>, BlockSizes)>;

/// The result of one block, filled in by whoever compressed it.
#[derive(Default)]
struct Slot {
    result: Mutex<Option<Compressed>>,
    /// Its path failed: nobody will write it.
    cancelled: AtomicBool,
}

impl Slot {
    fn is_done(&self) -> bool {
        self.result.lock().unwrap().is_some()
    }
}

impl Job {
    fn run(self, encoder: &mut BlockEncoder) {
        if self.slot.cancelled.load(Ordering::Relaxed) {
            return;
        }
        let mut out = Vec::new();
        let result = encoder.encode(&self.settings, &self.input, &mut out).map(|sizes| (out, sizes));
        drop(self.input);
        *self.slot.result.lock().unwrap() = Some(result);
    }
}

/// A worker on a store path, from [`BlockQueue::owner`]; dropped when it is done.
pub struct Owner<'q>(&'q BlockQueue);

impl Drop for Owner<'_> {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().owners -= 1;
        self.0.changed.notify_all();
    }
}

impl BlockQueue {
    /// Counts the calling worker as on a store path until the guard is
    /// dropped: helpers wait for more blocks while any worker is.
    pub fn owner(&self) -> Owner<'_> {
        self.state.lock().unwrap().owners += 1;
        Owner(self)
    }

    /// For a worker with no store paths left: compresses the oldest queued
    /// block, again and again, until no worker is on a path. `afford` is
    /// asked, for the NarSize of the block's path, whether the memory budget
    /// allows it; when not, the block stays for its own worker and this one
    /// stops helping. Before waiting for blocks, the encoder is dropped and
    /// `rest` called to give back the memory reserved: a worker that waits
    /// must hold none, or another waiting for memory to start its path
    /// would wait for it forever.
    pub fn help(
        &self,
        encoder: &mut Option<BlockEncoder>,
        mut afford: impl FnMut(u64) -> bool,
        mut rest: impl FnMut(),
    ) {
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                if !afford(job.stream_size) {
                    state.jobs.push_front(job);
                    self.changed.notify_all();
                    return;
                }
                drop(state);
                job.run(encoder.get_or_insert_with(BlockEncoder::new));
                state = self.state.lock().unwrap();
                self.changed.notify_all();
                continue;
            }
            if state.owners == 0 {
                return;
            }
            if encoder.take().is_some() {
                rest();
            }
            state.idle += 1;
            state = self.changed.wait(state).unwrap();
            state.idle -= 1;
        }
    }
}

/// Writes an xz stream to `inner`, block by block, sharing its blocks with
/// the other workers through a [`BlockQueue`] when there is one.
pub struct XzWriter<'c, W: Write> {
    inner: W,
    settings: BlockSettings,
    stream_size: u64,
    /// Bytes given to [`Write::write`] so far.
    consumed: u64,
    encoder: &'c mut BlockEncoder,
    /// The output of the blocks this worker compresses and writes at once.
    out: &'c mut Vec<u8>,
    queue: Option<Arc<BlockQueue>>,
    /// At most this many blocks of the stream in flight (at least 1).
    in_flight: usize,
    /// The block being read.
    block: Vec<u8>,
    /// The blocks in flight, oldest first.
    pending: Pending,
    /// What the index needs, for every block written.
    written: Vec<BlockSizes>,
}

impl<'c, W: Write> XzWriter<'c, W> {
    /// A stream of `stream_size` bytes (expected: more or fewer work too),
    /// with at most `in_flight` blocks in flight at once when sharing
    /// through `queue`. The stream header is written at once.
    pub fn new(
        mut inner: W,
        settings: BlockSettings,
        stream_size: u64,
        encoder: &'c mut BlockEncoder,
        out: &'c mut Vec<u8>,
        queue: Option<Arc<BlockQueue>>,
        in_flight: usize,
    ) -> io::Result<Self> {
        inner.write_all(&xz::stream_header())?;
        // The buffer kept from a larger stream before would hold more than
        // this stream's memory reservation counts.
        out.clear();
        out.shrink_to(xz::block_bound(stream_size.min(settings.block_size())).try_into().unwrap_or(usize::MAX));
        Ok(Self {
            inner,
            settings,
            stream_size,
            consumed: 0,
            encoder,
            out,
            queue,
            in_flight: in_flight.max(1),
            block: Vec::new(),
            pending: Pending::default(),
            written: Vec::new(),
        })
    }

    /// Writes the last block, waits for the others, writes the index and
    /// the footer, and hands back the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() {
            if self.pending.is_empty() {
                self.compress_and_write()?;
            } else {
                // Compressed here and now, written after the others.
                let slot = Arc::new(Slot::default());
                let input = std::mem::take(&mut self.block);
                Job { input, settings: self.settings, stream_size: self.stream_size, slot: slot.clone() }
                    .run(self.encoder);
                self.pending.push_back(slot);
            }
        }
        self.balance(true)?;
        let end = xz::stream_end(&self.written)?;
        self.inner.write_all(&end)?;
        Ok(self.inner)
    }

    /// Compresses the full block in this thread and writes it: nothing
    /// else of the stream is in flight.
    fn compress_and_write(&mut self) -> io::Result<()> {
        let sizes = self.encoder.encode(&self.settings, &self.block, self.out)?;
        self.block.clear();
        self.inner.write_all(self.out)?;
        self.written.push(sizes);
        Ok(())
    }

    fn block_full(&mut self) -> io::Result<()> {
        let share = match &self.queue {
            Some(queue) if self.in_flight > 1 => !self.pending.is_empty() || queue.state.lock().unwrap().idle > 0,
            _ => false,
        };
        if !share {
            return self.compress_and_write();
        }
        let queue = self.queue.clone().expect("sharing needs a queue");
        let slot = Arc::new(Slot::default());
        let input = std::mem::take(&mut self.block);
        let job = Job { input, settings: self.settings, stream_size: self.stream_size, slot: slot.clone() };
        self.pending.push_back(slot);
        queue.state.lock().unwrap().jobs.push_back(job);
        queue.changed.notify_all();
        self.balance(false)
    }

    /// Writes the finished blocks at the head of `pending`, then, until this
    /// worker may read on (or, `finishing`, until all are written),
    /// compresses queued blocks or waits for its own.
    fn balance(&mut self, finishing: bool) -> io::Result<()> {
        loop {
            self.write_ready()?;
            let Some(head) = self.pending.front().cloned() else { return Ok(()) };
            let queue = self.queue.clone().expect("blocks in flight come from a queue");
            let mut state = queue.state.lock().unwrap();
            let room = self.pending.len() < self.in_flight;
            let may_read = !finishing && room && state.idle > 0;
            if !may_read && let Some(job) = state.jobs.pop_front() {
                drop(state);
                job.run(self.encoder);
                queue.state.lock().map(|_| queue.changed.notify_all()).unwrap();
                continue;
            }
            if !finishing && room {
                return Ok(());
            }
            if !head.is_done() {
                drop(queue.changed.wait(state).unwrap());
            }
        }
    }

    /// Writes the blocks at the head of `pending` that are compressed.
    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(head) = self.pending.front() {
            let Some(result) = head.result.lock().unwrap().take() else { return Ok(()) };
            self.pending.pop_front();
            let (bytes, sizes) = result?;
            self.inner.write_all(&bytes)?;
            self.written.push(sizes);
        }
        Ok(())
    }
}

impl<W: Write> Write for XzWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let block_size = usize::try_from(self.settings.block_size()).unwrap_or(usize::MAX);
        if self.block.capacity() == 0 {
            // As large as the rest of the NAR, if it is as long as expected.
            let left = self.stream_size.saturating_sub(self.consumed).max(64 * 1024);
            self.block.reserve_exact(usize::try_from(left).unwrap_or(usize::MAX).min(block_size));
        }
        let n = buf.len().min(block_size - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.consumed += n as u64;
        if self.block.len() == block_size {
            self.block_full()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks are only complete at their end: nothing to flush early.
        Ok(())
    }
}

/// The blocks of a stream in flight, oldest first; cancelled when the
/// stream is dropped unfinished (its path failed), so that no worker
/// compresses what nobody will write.
#[derive(Default)]
struct Pending(VecDeque<Arc<Slot>>);

impl Drop for Pending {
    fn drop(&mut self) {
        for slot in &self.0 {
            slot.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

impl std::ops::Deref for Pending {
    type Target = VecDeque<Arc<Slot>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Pending {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 3 == 0 { (x >> 24) as u8 } else { b"store path"[i % 10] }
            })
            .collect()
    }

    fn stream(data: &[u8], settings: BlockSettings, queue: Option<Arc<BlockQueue>>, in_flight: usize) -> Vec<u8> {
        let (mut encoder, mut out) = (BlockEncoder::new(), Vec::new());
        let mut w =
            XzWriter::new(Vec::new(), settings, data.len() as u64, &mut encoder, &mut out, queue, in_flight).unwrap();
        // Odd-sized writes, as the NAR comes.
        for chunk in data.chunks(100_003) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn shared_blocks_make_the_same_stream() {
        // Level 0: 256 KiB dictionary, 1 MiB blocks.
        let settings = BlockSettings::new(0, 256 << 10).unwrap().with_block_size(1 << 20).unwrap();
        let inputs: Vec<Vec<u8>> = (0..4).map(|i| sample((3 << 20) + i * 300_001, i as u32)).collect();
        let alone: Vec<Vec<u8>> = inputs.iter().map(|d| stream(d, settings, None, 1)).collect();
        let queue = Arc::new(BlockQueue::default());
        let shared: Vec<Vec<u8>> = std::thread::scope(|scope| {
            // Two owners at a time beside two helpers that wait for their blocks.
            let owners: Vec<_> = inputs
                .chunks(2)
                .map(|pair| {
                    let owner = queue.owner();
                    let queue = queue.clone();
                    scope.spawn(move || {
                        let out = pair.iter().map(|d| stream(d, settings, Some(queue.clone()), 3)).collect::<Vec<_>>();
                        drop(owner);
                        out
                    })
                })
                .collect();
            for _ in 0..2 {
                let queue = queue.clone();
                scope.spawn(move || queue.help(&mut None, |_| true, || {}));
            }
            owners.into_iter().flat_map(|o| o.join().unwrap()).collect()
        });
        for (i, (a, b)) in alone.iter().zip(&shared).enumerate() {
            assert!(a == b, "stream {i} differs when its blocks are shared");
            let mut decoded = Vec::new();
            io::copy(&mut liblzma::read::XzDecoder::new(&b[..]), &mut decoded).unwrap();
            assert!(decoded == inputs[i]);
        }
        assert!(queue.state.lock().unwrap().jobs.is_empty());
    }
}
