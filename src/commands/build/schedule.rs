//! Scheduling: the builder's workers take store paths largest NAR first, so
//! that a big path does not start last and leave the other cores idle, each
//! reserving its compressor's memory from the budget; xz workers with no
//! path left help with other paths' blocks (see [`crate::compress::blocks`]).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;

use crate::commands::build::dump::Dumper;
use crate::commands::build::durability::NarInfoBatch;
use crate::commands::build::layout::{already_there, create_layout};
use crate::commands::build::logs;
use crate::commands::build::pipeline::{Source, write_path};
use crate::commands::build::reuse::Reusable;
use crate::commands::build::{Observer, Settings, Summary};
use crate::compress::blocks::BlockQueue;
use crate::compress::{Compression, Contexts};
use crate::durable::lock::RunLock;
use crate::format::path_info::PathInfo;
use crate::resources::{MemoryBudget, path_need};
use crate::workers;

/// What becomes of one store path of the closure.
enum Lookup {
    /// Already in the cache as this run would write it: left alone.
    There,
    /// Copied from an earlier cache.
    Reuse(Reusable),
    /// Compressed here.
    Compress,
}

/// Writes the cache for `closure` into `out`, telling `observer` how it goes.
pub fn write_cache(closure: &[PathInfo], out: &Path, settings: &Settings, observer: &impl Observer) -> Result<Summary> {
    let start = Instant::now();
    // Largest first: the last paths to start are then the quickest to finish.
    let mut plan: Vec<&PathInfo> = closure.iter().collect();
    plan.sort_by(|a, b| b.nar_size.cmp(&a.nar_size).then_with(|| a.path.cmp(&b.path)));
    let layout = create_layout(out, &settings.cache_info(), &settings.manifest())?;
    let narinfos = NarInfoBatch::new(out, &settings.store_dir, settings.sync)?;
    // Held until the last narinfo is named: `gc` must not remove a NAR
    // before its narinfo is there to keep it, nor a path found there below.
    let _run = RunLock::shared(narinfos.cache(), |line| eprintln!("make-binary-cache: {line}"))?;
    // One pass on all workers, before any path is written: a damaged
    // earlier cache fails the run before it starts.
    let nar_dir = narinfos.cache().open_dir(Path::new("nar"))?;
    let lookups = workers::run_parallel(&plan, settings.jobs, |info| {
        if layout.same_settings && already_there(narinfos.cache(), &nar_dir, info, settings) {
            return Ok(Lookup::There);
        }
        Ok(match settings.reuse.find(info, settings.compression, &settings.store_dir)? {
            Some(reusable) => Lookup::Reuse(reusable),
            None => Lookup::Compress,
        })
    })?;
    let there = lookups.iter().filter(|l| matches!(l, Lookup::There)).count();
    let reused = lookups.iter().filter(|l| matches!(l, Lookup::Reuse(_))).count();
    let (plan, reusable): (Vec<&PathInfo>, Vec<Option<Reusable>>) = plan
        .into_iter()
        .zip(lookups)
        .filter_map(|(info, lookup)| match lookup {
            Lookup::There => None,
            Lookup::Reuse(reusable) => Some((info, Some(reusable))),
            Lookup::Compress => Some((info, None)),
        })
        .unzip();
    let notes = layout.note.into_iter().collect();

    // Only what is compressed counts: copying is quick.
    let unstarted_bytes =
        AtomicU64::new(plan.iter().zip(&reusable).filter(|(_, r)| r.is_none()).map(|(info, _)| info.nar_size).sum());
    observer.started(plan.len(), plan.iter().map(|info| info.nar_size).sum());
    let totals = Mutex::new((0u64, 0u64));
    let memory = MemoryBudget::new(settings.max_memory);
    // xz shares its blocks between the workers (see [`crate::compress::blocks`]).
    let blocks = (settings.compression == Compression::Xz).then(|| Arc::new(BlockQueue::default()));
    let (worked, naming) = std::thread::scope(|scope| {
        let namer = scope.spawn(|| narinfos.name_batches(observer));
        // The batch closes when every worker has stopped: paths checked
        // before a failure still get narinfos.
        let producing = narinfos.producer();
        let worked = workers::run(settings.jobs, plan.len(), |worker, queue| {
            let mut dumper = Dumper::default();
            let mut contexts = blocks.clone().map_or_else(Contexts::default, Contexts::sharing);
            let mut reserved = 0;
            loop {
                // Counted before taking a path, so that helpers never
                // leave while a path may still queue blocks.
                let _owner = blocks.as_ref().map(|blocks| blocks.owner());
                let Some(index) = queue.next() else { break };
                let info = plan[index];
                observer.path_started(worker, info);
                let on_nar = |bytes| observer.nar_bytes(worker, bytes);
                let result = if let Some(reusable) = &reusable[index] {
                    // No compressor: nothing to reserve.
                    write_path(info, out, settings, Source::Reuse(reusable), &mut dumper, &on_nar)
                } else {
                    let rest = unstarted_bytes.fetch_sub(info.nar_size, Ordering::Relaxed) - info.nar_size;
                    let wanted = match settings.compression {
                        // Blocks in flight, not threads: any idle worker
                        // helps with them (see [`crate::compress::blocks`]).
                        Compression::Xz => settings
                            .compression
                            .useful_threads(info.nar_size, settings.compression_level)
                            .min(u32::try_from(queue.workers()).unwrap_or(u32::MAX)),
                        _ => compression_threads(info.nar_size, rest, settings),
                    };
                    let need =
                        |threads| path_need(settings.compression, settings.compression_level, info.nar_size, threads);
                    let threads = memory.reserve(&mut reserved, wanted, need, || contexts.release());
                    let source = Source::Compress(threads, &mut contexts);
                    let result = write_path(info, out, settings, source, &mut dumper, &on_nar);
                    if !contexts.holds_memory() {
                        memory.release(&mut reserved);
                    }
                    result
                };
                observer.path_finished(worker);
                match result {
                    Ok(checked) => {
                        let mut t = totals.lock().unwrap();
                        t.0 += checked.written.nar_size;
                        t.1 += checked.written.file_size;
                        drop(t);
                        if !narinfos.add(info, checked) {
                            // Naming failed: the run fails with that error.
                            queue.stop();
                        }
                    }
                    Err(e) => queue.fail(e),
                }
            }
            if let Some(blocks) = &blocks
                && !queue.stopped()
            {
                // No paths left: compress other paths' blocks, within
                // the budget, holding nothing while waiting for them.
                contexts.release();
                memory.release(&mut reserved);
                let level = settings.compression_level;
                let reserved = std::cell::Cell::new(0);
                let afford = |nar_size| {
                    let mut mine = reserved.get();
                    let fits = memory.try_reserve(&mut mine, path_need(Compression::Xz, level, nar_size, 1));
                    reserved.set(mine);
                    fits
                };
                let rest = || {
                    let mut mine = reserved.take();
                    memory.release(&mut mine);
                };
                blocks.help(contexts.xz_encoder(), afford, rest);
                rest();
            }
            contexts.release();
            memory.release(&mut reserved);
        });
        drop(producing);
        (worked, namer.join().expect("the narinfo thread does not panic"))
    });
    let synced = narinfos.sync();
    worked?;
    naming?;
    synced?;
    let (nar_bytes, file_bytes) = totals.into_inner().unwrap();
    let mut notes: Vec<String> = notes;
    if let Some(log_dir) = &settings.logs_from {
        notes.push(logs::copy_logs(closure, out, log_dir, &settings.reuse, settings.jobs, settings.sync)?.to_string());
    }
    Ok(Summary {
        paths: plan.len() + there,
        there,
        reused: settings.reuse.given().then_some(reused),
        nar_bytes,
        file_bytes,
        elapsed: start.elapsed(),
        notes,
    })
}

/// Threads for compressing one NAR of `size` bytes when `rest` bytes of other
/// paths are still to start: its share of the workers, in proportion to its
/// part of the work left (rounded), and at least one. A path small next to
/// the rest gets one thread, while the other workers have enough work of
/// their own; a path that dominates what is left, as a big path does near the
/// end or in a closure of one big path, gets up to all the workers' worth.
/// Giving a path more threads than its share would only run more threads than
/// cores while the others still work, and cost memory (each zstdmt worker
/// holds its own context and job buffers). The output is the same either way
/// (see [`Compression::encoder`]). For zstd only: xz does not fix threads per
/// path but shares its blocks between the workers (see [`crate::compress::blocks`]).
fn compression_threads(size: u64, rest: u64, settings: &Settings) -> u32 {
    let jobs = settings.jobs.max(1) as u128;
    let (size_, left) = (u128::from(size), u128::from(size) + u128::from(rest));
    // round(size × jobs / left), in integers.
    let share = (2 * size_ * jobs + left).checked_div(2 * left).unwrap_or(1);
    let share = u32::try_from(share).unwrap_or(u32::MAX).max(1);
    settings.compression.useful_threads(size, settings.compression_level).min(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(compression: Compression, jobs: usize) -> Settings {
        Settings { jobs, ..Settings::new("/nix/store".into(), compression) }
    }

    #[test]
    fn compressor_threads_go_to_paths_that_would_outlast_the_rest() {
        let zstd = settings(Compression::Zstd, 4);
        const MIB: u64 = 1 << 20;
        // Plenty of other work: one thread each.
        assert_eq!(compression_threads(100 * MIB, 1000 * MIB, &zstd), 1);
        // One big path and little else: as many threads as it has 8 MiB jobs, up to the jobs.
        assert_eq!(compression_threads(1000 * MIB, 10 * MIB, &zstd), 4);
        assert_eq!(compression_threads(20 * MIB, 0, &zstd), 3);
        // A NAR zstd compresses in the calling thread cannot use a second one.
        assert_eq!(compression_threads(8 * MIB, 0, &zstd), 1);
        assert_eq!(compression_threads(1000 * MIB, 0, &settings(Compression::Zstd, 1)), 1);
        assert_eq!(compression_threads(1000 * MIB, 0, &settings(Compression::None, 4)), 1);
        // A path of about half of what is left: its share of 2 workers is 1
        // (one 100 MiB path beside 80 MiB of others), of 4 workers 2.
        assert_eq!(compression_threads(100 * MIB, 80 * MIB, &settings(Compression::Zstd, 2)), 1);
        assert_eq!(compression_threads(100 * MIB, 80 * MIB, &settings(Compression::Zstd, 4)), 2);
        assert_eq!(compression_threads(300 * MIB, 100 * MIB, &settings(Compression::Zstd, 2)), 2);
    }
}
