//! How many workers, how many compressor threads and how much memory a run
//! may use.
//!
//! Asking for more than the machine has is common and harmless elsewhere
//! (`NIX_BUILD_CORES` set for a big builder, `--jobs 64` in a script), so it
//! must not be harmful here: workers never outnumber the cores this process
//! may run on, and the compressors, whose memory grows with the level and
//! the number of threads (xz at level 9 takes ~1 GiB a thread), share a
//! memory budget. By default the budget is half of what the machine or the
//! cgroup can give (the smaller of the cgroup's limit and `MemAvailable`);
//! `--max-memory` or `maxMemory` set it.
//!
//! The planning is pure ([`plan`], [`fit`], [`default_budget`],
//! [`parse_size`]) and unit-tested; [`MemoryBudget`] shares the budget
//! between the workers while they run; [`system`] is the thin layer that
//! reads what the machine has from /proc and /sys.
//!
//! When one store path alone needs more than the budget, it is still
//! compressed, alone and with one thread, after a warning: a build that fails
//! on a small machine for a setting it cannot change would be worse, and the
//! budget is a target, not a hard limit the kernel would enforce (the cgroup
//! is that).
//!
//! ```
//! use make_binary_cache::resources::parse_size;
//! assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
//! assert_eq!(parse_size("512M"), Ok(512 << 20));
//! ```

use std::fmt;
use std::sync::{Condvar, Mutex};

use crate::compress::Compression;

/// What one worker's pipeline holds besides the compressor: the read buffer
/// of the dumper (256 KiB) and the buffers before the hasher (64 KiB) and the
/// file (128 KiB), rounded up.
pub const WORKER_OVERHEAD: u64 = 1 << 20;

/// The rest of the process (program, closure, stacks), taken off the budget
/// before the workers share it.
pub const BASE_OVERHEAD: u64 = 16 << 20;

/// Parses a memory size: a number of bytes, optionally with a fraction, and
/// an optional unit `K`, `M`, `G` or `T`, which may be followed by `B` or
/// `iB` (`512M`, `1G`, `1.5GiB`, `2048KB`, `1073741824`, `4096B`). Units are powers of
/// 1024 whichever way they are written, as memory is counted.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size {text:?}: expected a number of bytes with an optional unit K, M, G or T (e.g. 512M, 1.5GiB)"
        )
    };
    let digits_end = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let shift = match unit {
        "" | "B" => 0,
        _ => {
            let (prefix, suffix) = unit.split_at(unit.chars().next().map_or(0, char::len_utf8));
            if !["", "B", "iB"].contains(&suffix) {
                return Err(bad());
            }
            match prefix {
                "K" | "k" => 10,
                "M" => 20,
                "G" => 30,
                "T" => 40,
                _ => return Err(bad()),
            }
        }
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad());
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let mut bytes = whole.checked_mul(1 << shift).ok_or_else(bad)?;
    if !fraction.is_empty() {
        // Exact decimal arithmetic: 1.5G is 3 × 2^29, not a float's idea of it.
        let digits = u32::try_from(fraction.len()).map_err(|_| bad())?;
        let numerator: u128 = fraction.parse().map_err(|_| bad())?;
        let denominator = 10u128.checked_pow(digits).ok_or_else(bad)?;
        let part = u64::try_from(numerator * (1u128 << shift) / denominator).map_err(|_| bad())?;
        bytes = bytes.checked_add(part).ok_or_else(bad)?;
    }
    if bytes == 0 {
        return Err(format!("invalid size {text:?}: must be more than 0"));
    }
    Ok(bytes)
}

/// What compressing one NAR of `nar_size` bytes with `threads` threads takes:
/// the encoder (see [`Compression::encoder_memory`]) and the worker's buffers.
pub fn path_need(compression: Compression, level: Option<i32>, nar_size: u64, threads: u32) -> u64 {
    compression.encoder_memory(level, threads, nar_size).saturating_add(WORKER_OVERHEAD)
}

/// Where the memory budget came from, for the build log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetSource {
    /// `--max-memory` or `maxMemory`.
    Given,
    /// Half of the cgroup's memory limit.
    Cgroup,
    /// Half of `MemAvailable`.
    MemAvailable,
}

/// The default budget: half of the smaller of the cgroup's limit and
/// `MemAvailable`, leaving the rest to whatever else runs (other builds, the
/// page cache that reading the store fills). `None` when neither is known.
pub fn default_budget(cgroup_limit: Option<u64>, mem_available: Option<u64>) -> Option<(u64, BudgetSource)> {
    let known = [(cgroup_limit, BudgetSource::Cgroup), (mem_available, BudgetSource::MemAvailable)];
    known.into_iter().filter_map(|(bytes, source)| Some((bytes? / 2, source))).min_by_key(|&(bytes, _)| bytes)
}

/// The outcome of [`plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Worker threads to start, at least 1.
    pub workers: usize,
    /// What was asked for, when more than the cores available.
    pub capped_from: Option<usize>,
    /// The largest single-path need, when it exceeds the budget (those paths
    /// run alone with one thread).
    pub over_budget: Option<u64>,
}

/// How many workers to start for `requested` workers on `cores` cores, given
/// the NAR sizes of the closure and what a path of a given NAR size needs
/// with a given number of compressor threads (`need`, [`WORKER_OVERHEAD`]
/// included). Workers beyond the number of paths, or beyond what the budget
/// allows even for the smallest paths, would only wait.
pub fn plan(
    requested: usize,
    cores: usize,
    budget: Option<u64>,
    nar_sizes: &[u64],
    need: impl Fn(u64, u32) -> u64,
) -> Plan {
    let cores = cores.max(1);
    let capped_from = (requested > cores).then_some(requested);
    let mut workers = requested.clamp(1, cores).min(nar_sizes.len().max(1));
    let mut over_budget = None;
    if let Some(budget) = budget {
        let limit = budget.saturating_sub(BASE_OVERHEAD);
        let smallest = nar_sizes.iter().copied().min().unwrap_or(0);
        let fitting = limit / need(smallest, 1).max(1);
        workers = workers.min(usize::try_from(fitting).unwrap_or(usize::MAX)).max(1);
        let largest = nar_sizes.iter().copied().max().unwrap_or(0);
        over_budget = Some(need(largest, 1)).filter(|&n| n > limit);
    }
    Plan { workers, capped_from, over_budget }
}

/// What a worker may do with a path, given the memory the other workers hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Go with this many threads (at most the ones wanted).
    Threads(u32),
    /// Wait for other workers to free memory.
    Wait,
    /// Nothing else is running and one thread is already too much: go with
    /// one thread anyway.
    Alone,
}

/// The most threads, up to `wanted`, whose `need` fits in `limit` next to
/// what the other workers hold (`held_by_others`).
pub fn fit(limit: u64, held_by_others: u64, wanted: u32, need: impl Fn(u32) -> u64) -> Fit {
    let free = limit.saturating_sub(held_by_others);
    match (1..=wanted.max(1)).rev().find(|&threads| need(threads) <= free) {
        Some(threads) => Fit::Threads(threads),
        None if held_by_others == 0 => Fit::Alone,
        None => Fit::Wait,
    }
}

/// The budget shared by the workers while they run. Each worker holds a
/// reservation for the path it compresses (and, for zstd, for the context it
/// keeps between paths), set by [`MemoryBudget::reserve`].
pub struct MemoryBudget {
    /// `None`: no budget, every reservation fits.
    limit: Option<u64>,
    held: Mutex<u64>,
    freed: Condvar,
}

impl MemoryBudget {
    pub fn new(budget: Option<u64>) -> Self {
        Self { limit: budget.map(|b| b.saturating_sub(BASE_OVERHEAD)), held: Mutex::new(0), freed: Condvar::new() }
    }

    /// Replaces the worker's reservation `mine` with one for the next path,
    /// with as many of the `wanted` threads as fit, and returns that number.
    /// Before waiting for other workers, the worker gives back what it holds,
    /// calling `free_state` to drop what its compressors keep: a worker never
    /// waits while holding memory, so when all wait, none holds any and one
    /// goes ahead alone.
    pub fn reserve(&self, mine: &mut u64, wanted: u32, need: impl Fn(u32) -> u64, free_state: impl FnOnce()) -> u32 {
        let Some(limit) = self.limit else {
            return wanted.max(1);
        };
        let mut free_state = Some(free_state);
        let mut held = self.held.lock().unwrap();
        loop {
            let threads = match fit(limit, *held - *mine, wanted, &need) {
                Fit::Threads(threads) => threads,
                Fit::Alone => 1,
                Fit::Wait if *mine > 0 => {
                    if let Some(free_state) = free_state.take() {
                        free_state();
                    }
                    *held -= std::mem::take(mine);
                    self.freed.notify_all();
                    continue;
                }
                Fit::Wait => {
                    held = self.freed.wait(held).unwrap();
                    continue;
                }
            };
            let new = need(threads);
            *held = *held - *mine + new;
            *mine = new;
            return threads;
        }
    }

    /// Raises the worker's reservation `mine` to `need` if that fits next
    /// to what the others hold, without waiting; `false` when it does not
    /// (`mine` is then unchanged). A reservation already as large fits.
    pub fn try_reserve(&self, mine: &mut u64, need: u64) -> bool {
        let Some(limit) = self.limit else { return true };
        if *mine >= need {
            return true;
        }
        let mut held = self.held.lock().unwrap();
        if *held - *mine + need > limit {
            return false;
        }
        *held = *held - *mine + need;
        *mine = need;
        true
    }

    /// Gives back the worker's reservation once its compressors hold nothing.
    pub fn release(&self, mine: &mut u64) {
        if self.limit.is_some() && *mine > 0 {
            *self.held.lock().unwrap() -= std::mem::take(mine);
            self.freed.notify_all();
        }
    }
}

impl fmt::Display for BudgetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Given => "as given",
            Self::Cgroup => "half the cgroup's memory limit",
            Self::MemAvailable => "half of MemAvailable",
        })
    }
}

/// Reading what the machine gives this process. Everything here degrades to
/// "unknown" rather than failing: a missing /proc or cgroup file only means
/// that limit is not known.
pub mod system {
    use std::fs;

    /// The cores this process may run on: `available_parallelism` honours the
    /// affinity mask and the cgroup's CPU quota.
    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// Raises this process's soft limit of open files to its hard limit (at
    /// most `wanted`), as a program holding many files open should, and
    /// returns the soft limit then in force (1024, the usual default, when it
    /// cannot be read).
    pub fn raise_open_files_limit(wanted: u64) -> u64 {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `limit` is a valid rlimit to write to.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return 1024;
        }
        let target = limit.rlim_max.min(wanted as libc::rlim_t);
        if target > limit.rlim_cur {
            let raised = libc::rlimit { rlim_cur: target, rlim_max: limit.rlim_max };
            // SAFETY: `raised` is a valid rlimit; raising the soft limit up to
            // the hard one needs no privilege.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = target;
            }
        }
        // rlim_t is u64 on Linux but not everywhere.
        #[allow(clippy::unnecessary_cast)]
        let soft = limit.rlim_cur as u64;
        soft
    }

    /// `MemAvailable` from /proc/meminfo, in bytes.
    pub fn mem_available() -> Option<u64> {
        parse_mem_available(&fs::read_to_string("/proc/meminfo").ok()?)
    }

    pub(crate) fn parse_mem_available(meminfo: &str) -> Option<u64> {
        let line = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
        let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
        kib.checked_mul(1024)
    }

    /// The tightest memory limit of this process's cgroup and its ancestors:
    /// cgroup v2 `memory.max` ("max": none), else cgroup v1
    /// `memory.limit_in_bytes` (a huge number: none). The cgroup's path in
    /// /proc/self/cgroup is relative to the cgroup root, which a container
    /// may mount as its own root, so the mount's top directory is tried too.
    pub fn cgroup_memory_limit() -> Option<u64> {
        let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
        let mut limits = Vec::new();
        for line in cgroups.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let (root, file) = match controllers {
                "" => ("/sys/fs/cgroup", "memory.max"),
                c if c.split(',').any(|c| c == "memory") => ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
                _ => continue,
            };
            let mut dir = path.trim_end_matches('/').to_owned();
            loop {
                if let Some(limit) = read_limit(&format!("{root}{dir}/{file}")) {
                    limits.push(limit);
                }
                match dir.rfind('/') {
                    Some(slash) => dir.truncate(slash),
                    None => break,
                }
            }
        }
        limits.into_iter().min()
    }

    /// The default budget on this machine (see [`super::default_budget`]).
    pub fn default_budget() -> Option<(u64, super::BudgetSource)> {
        super::default_budget(cgroup_memory_limit(), mem_available())
    }

    fn read_limit(file: &str) -> Option<u64> {
        parse_limit(&fs::read_to_string(file).ok()?)
    }

    pub(crate) fn parse_limit(text: &str) -> Option<u64> {
        let bytes: u64 = text.trim().parse().ok()?;
        // cgroup v1 says "no limit" with the largest page-aligned i64.
        (bytes < 1 << 62).then_some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        for (text, bytes) in [
            ("1073741824", GIB),
            ("512M", 512 * MIB),
            ("512MB", 512 * MIB),
            ("512MiB", 512 * MIB),
            ("1G", GIB),
            ("1.5GiB", 3 * GIB / 2),
            ("2048K", 2 * MIB),
            ("2048k", 2 * MIB),
            ("1T", 1024 * GIB),
            ("0.5K", 512),
            ("4096B", 4096),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in
            ["", "G", "1.G", ".5G", "1X", "1 G", "-1G", "1.5.5G", "0", "0M", "99999999999T", "1GG", "1iB", "1Gi", "1μB"]
        {
            assert!(parse_size(text).is_err(), "{text:?} was accepted");
        }
        assert!(parse_size("1X").unwrap_err().contains("1.5GiB"));
    }

    #[test]
    fn default_budget_is_half_the_tighter_limit() {
        assert_eq!(default_budget(Some(4 * GIB), Some(10 * GIB)), Some((2 * GIB, BudgetSource::Cgroup)));
        assert_eq!(default_budget(Some(4 * GIB), Some(2 * GIB)), Some((GIB, BudgetSource::MemAvailable)));
        assert_eq!(default_budget(None, Some(2 * GIB)), Some((GIB, BudgetSource::MemAvailable)));
        assert_eq!(default_budget(None, None), None);
    }

    /// A compressor needing 100 MiB a thread plus the NAR size.
    fn need(size: u64, threads: u32) -> u64 {
        u64::from(threads) * (100 * MIB + size) + WORKER_OVERHEAD
    }

    #[test]
    fn workers_are_at_most_the_cores_the_paths_and_what_the_budget_allows() {
        let sizes = [MIB; 100];
        let p = plan(10_000, 2, None, &sizes, need);
        assert_eq!(p, Plan { workers: 2, capped_from: Some(10_000), over_budget: None });
        assert_eq!(plan(1, 8, None, &sizes, need).workers, 1);
        assert_eq!(plan(8, 8, None, &sizes[..3], need), Plan { workers: 3, capped_from: None, over_budget: None });
        assert_eq!(plan(8, 8, None, &[], need).workers, 1);
        // 16 MiB of base, then 102 MiB a worker: 3 fit in 330 MiB.
        assert_eq!(plan(8, 8, Some(330 * MIB), &sizes, need).workers, 3);
        // Not even one fits: one worker, and say how much the largest needs.
        let p = plan(8, 8, Some(50 * MIB), &[MIB, 10 * MIB], need);
        assert_eq!(p, Plan { workers: 1, capped_from: None, over_budget: Some(need(10 * MIB, 1)) });
    }

    #[test]
    fn threads_are_cut_to_fit_next_to_the_other_workers() {
        let per_thread = |threads: u32| u64::from(threads) * 100;
        assert_eq!(fit(1000, 0, 4, per_thread), Fit::Threads(4));
        assert_eq!(fit(1000, 750, 4, per_thread), Fit::Threads(2));
        assert_eq!(fit(1000, 950, 4, per_thread), Fit::Wait);
        assert_eq!(fit(50, 0, 4, per_thread), Fit::Alone);
        assert_eq!(fit(1000, 0, 0, per_thread), Fit::Threads(1));
    }

    #[test]
    fn workers_share_the_budget_and_never_deadlock() {
        use std::sync::atomic::{AtomicU64, Ordering};
        // 16 MiB of base; 300 MiB for the workers, which each want 2 × 100 MiB.
        let budget = MemoryBudget::new(Some(316 * MIB));
        let (in_use, peak) = (AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|scope| {
            for worker in 0..4 {
                let (budget, in_use, peak) = (&budget, &in_use, &peak);
                scope.spawn(move || {
                    let mut mine = 0;
                    for path in 0..20 {
                        // Every other path holds its memory into the next, as a zstd context does.
                        let threads = budget.reserve(&mut mine, 2, |t| u64::from(t) * 100 * MIB, || {});
                        let now = in_use.fetch_add(mine, Ordering::SeqCst) + mine;
                        peak.fetch_max(now, Ordering::SeqCst);
                        assert!((1..=2).contains(&threads), "worker {worker}: {threads}");
                        std::thread::yield_now();
                        in_use.fetch_sub(mine, Ordering::SeqCst);
                        if path % 2 == 0 {
                            budget.release(&mut mine);
                        }
                    }
                    budget.release(&mut mine);
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 300 * MIB, "{}", peak.load(Ordering::SeqCst));
        assert_eq!(*budget.held.lock().unwrap(), 0);
        // Raising a reservation without waiting: only when it fits.
        let mut mine = 0;
        assert!(budget.try_reserve(&mut mine, 200 * MIB) && mine == 200 * MIB);
        let mut other = 0;
        assert!(!budget.try_reserve(&mut other, 200 * MIB) && other == 0);
        assert!(budget.try_reserve(&mut mine, 100 * MIB) && mine == 200 * MIB);
        budget.release(&mut mine);
        // A path larger than the whole budget still runs.
        let mut mine = 0;
        assert_eq!(budget.reserve(&mut mine, 4, |t| u64::from(t) * GIB, || {}), 1);
        assert_eq!(mine, GIB);
    }

    #[test]
    fn proc_and_sys_files_are_read_as_the_kernel_writes_them() {
        let meminfo = "MemTotal:       32871652 kB\nMemFree:  1 kB\nMemAvailable:   24307784 kB\n";
        assert_eq!(system::parse_mem_available(meminfo), Some(24_307_784 * 1024));
        assert_eq!(system::parse_mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(system::parse_limit("max\n"), None);
        assert_eq!(system::parse_limit("9223372036854771712\n"), None);
        assert_eq!(system::parse_limit("1073741824\n"), Some(GIB));
    }
}
