//! Showing how a run goes, on stderr: the [`Observer`] the binary hands to
//! [`crate::commands::build::write_cache`].
//!
//! Three ways ([`Mode`]):
//!
//! - **on a terminal** (stderr is one), a progress bar: NAR bytes and store
//!   paths done of the total, throughput, ETA, and the largest path in
//!   flight with how far it has got;
//! - **in a build log or a pipe**, one line per path written (`copied …`)
//!   as before, plus, every [`LOG_INTERVAL`], a line for each path that has
//!   been in flight that long (`compressing /nix/store/…-foo: 120 of 281
//!   MiB`), so a log never goes quiet for minutes on a big path;
//! - **quiet** (`--quiet`): nothing; errors and warnings are printed by the
//!   caller all the same.
//!
//! The workers only add to atomics per chunk of NAR and take one small lock
//! per path; a ticker thread of its own reads them and draws, so showing
//! progress costs the pipeline nothing measurable, and never changes what it
//! writes.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::commands::build::{Observer, Written};
use crate::format::path_info::PathInfo;
use crate::text::human;

/// How often a path still in flight gets a line in a log.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Overrides [`LOG_INTERVAL`], in milliseconds: for the tests, which need a
/// line for a path that takes a second, not ten. Not documented for users.
pub const LOG_INTERVAL_ENV: &str = "MAKE_BINARY_CACHE_LOG_INTERVAL_MS";

/// How often the bar is redrawn.
const BAR_INTERVAL: Duration = Duration::from_millis(100);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Log { interval: Duration },
    Quiet,
}

impl Mode {
    /// Quiet when asked; else a bar when stderr is a terminal, and log lines
    /// when it is not (a pipe, a file) or when the run is a Nix build
    /// (`in_build`). A builder's stderr *is* a terminal, but nobody watches
    /// it: Nix hands builders the slave side of a pseudo-terminal, so that
    /// they line-buffer, and copies what they print into the build log
    /// (`builderOut` in Nix's local-derivation-goal.hh), where a bar would
    /// leave a single last frame instead of a line per path.
    pub fn for_stderr(quiet: bool, in_build: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if !in_build && std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            let interval = std::env::var(LOG_INTERVAL_ENV).ok().and_then(|ms| ms.parse().ok());
            Mode::Log { interval: interval.map_or(LOG_INTERVAL, Duration::from_millis) }
        }
    }
}

/// The path a worker is on.
struct Current {
    path: String,
    nar_size: u64,
    since: Instant,
}

/// One worker's state: its path (set once per path) and the NAR bytes of it
/// done so far (added to per chunk).
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Current>>,
    bytes: AtomicU64,
}

/// The [`Observer`] that shows progress; see the module documentation.
pub struct Progress {
    mode: Mode,
    /// What is done to a NAR, for the log: `compressing`, or `writing`.
    verb: &'static str,
    slots: Vec<Slot>,
    total_paths: AtomicUsize,
    total_bytes: AtomicU64,
    done_paths: AtomicUsize,
    done_bytes: AtomicU64,
    bar: Option<ProgressBar>,
    /// When the run began: rates are averaged over the whole run.
    start: Instant,
    /// Set when the run is over: the ticker stops.
    stop: Mutex<bool>,
    stopped: Condvar,
}

impl Progress {
    /// Runs `work` with a [`Progress`] for `jobs` workers shown in `mode`,
    /// the ticker running beside it; the bar is cleared when `work` returns,
    /// before its result (or error) is printed.
    pub fn run<T>(mode: Mode, jobs: usize, compressed: bool, work: impl FnOnce(&Progress) -> T) -> T {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                // Two lines: a store path name does not fit beside the bar on 80 columns.
                ProgressStyle::with_template(
                    "[{elapsed_precise}] [{bar:30}] {binary_bytes}/{binary_total_bytes} ({prefix})\n{wide_msg}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar
        });
        let progress = Progress {
            mode,
            verb: if compressed { "compressing" } else { "writing" },
            slots: (0..jobs.max(1)).map(|_| Slot::default()).collect(),
            total_paths: AtomicUsize::new(0),
            total_bytes: AtomicU64::new(0),
            done_paths: AtomicUsize::new(0),
            done_bytes: AtomicU64::new(0),
            bar,
            start: Instant::now(),
            stop: Mutex::new(false),
            stopped: Condvar::new(),
        };
        let progress = &progress;
        let result = std::thread::scope(|scope| {
            let ticker = match mode {
                Mode::Bar => Some(scope.spawn(move || progress.tick_every(BAR_INTERVAL, Progress::draw_bar))),
                Mode::Log { interval } => {
                    Some(scope.spawn(move || progress.tick_every(interval, |p| p.log_long_paths(interval))))
                }
                Mode::Quiet => None,
            };
            // Stops the ticker even when `work` panics, so that the scope ends.
            struct StopOnDrop<'p>(&'p Progress);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    *self.0.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
                    self.0.stopped.notify_all();
                }
            }
            let stop = StopOnDrop(progress);
            let result = work(progress);
            drop(stop);
            if let Some(ticker) = ticker {
                ticker.join().expect("the progress ticker does not panic");
            }
            result
        });
        if let Some(bar) = &progress.bar {
            bar.finish_and_clear();
        }
        result
    }

    /// Calls `tick` every `interval` until the run is over.
    fn tick_every(&self, interval: Duration, tick: impl Fn(&Self)) {
        let mut stop = self.stop.lock().unwrap();
        loop {
            stop = self.stopped.wait_timeout(stop, interval).unwrap().0;
            if *stop {
                return;
            }
            tick(self);
        }
    }

    fn draw_bar(&self) {
        let Some(bar) = &self.bar else { return };
        let (total, done) = (self.total_bytes.load(Ordering::Relaxed), self.done_bytes.load(Ordering::Relaxed));
        bar.set_length(total);
        bar.set_position(done);
        bar.set_prefix(rate_and_eta(done, total, self.start.elapsed()));
        let paths =
            format!("{}/{} paths", self.done_paths.load(Ordering::Relaxed), self.total_paths.load(Ordering::Relaxed));
        // The largest path in flight: the one the end of the run waits for.
        let largest = self
            .slots
            .iter()
            .filter_map(|slot| {
                let current = slot.current.lock().unwrap();
                current.as_ref().map(|c| (c.nar_size, c.path.clone(), slot.bytes.load(Ordering::Relaxed)))
            })
            .max();
        bar.set_message(match largest {
            Some((size, path, done)) => format!("{paths}; largest in flight: {} ({})", name_of(&path), of(done, size)),
            None => paths,
        });
    }

    /// A line for each path in flight for at least `interval`.
    fn log_long_paths(&self, interval: Duration) {
        let mut lines = String::new();
        for slot in &self.slots {
            let current = slot.current.lock().unwrap();
            if let Some(c) = current.as_ref().filter(|c| c.since.elapsed() >= interval) {
                let done = slot.bytes.load(Ordering::Relaxed);
                lines += &format!("{} {}: {}\n", self.verb, c.path, of(done, c.nar_size));
            }
        }
        let _ = std::io::stderr().write_all(lines.as_bytes());
    }
}

impl Observer for Progress {
    fn started(&self, paths: usize, nar_bytes: u64) {
        self.total_paths.store(paths, Ordering::Relaxed);
        self.total_bytes.store(nar_bytes, Ordering::Relaxed);
        self.draw_bar();
    }

    fn path_started(&self, worker: usize, info: &PathInfo) {
        if self.mode == Mode::Quiet {
            return;
        }
        let slot = &self.slots[worker];
        slot.bytes.store(0, Ordering::Relaxed);
        let current = Current { path: info.path.to_string(), nar_size: info.nar_size, since: Instant::now() };
        *slot.current.lock().unwrap() = Some(current);
    }

    fn nar_bytes(&self, worker: usize, bytes: u64) {
        if self.mode == Mode::Quiet {
            return;
        }
        self.slots[worker].bytes.fetch_add(bytes, Ordering::Relaxed);
        self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn path_finished(&self, worker: usize) {
        if self.mode == Mode::Quiet {
            return;
        }
        *self.slots[worker].current.lock().unwrap() = None;
    }

    fn path_written(&self, info: &PathInfo, written: &Written) {
        self.done_paths.fetch_add(1, Ordering::Relaxed);
        if let Mode::Log { .. } = self.mode {
            // One write per line so lines from workers do not interleave.
            let line = format!(
                "copied {} (NAR {}, file {}{})\n",
                info.path,
                human(written.nar_size),
                human(written.file_size),
                if written.reused { ", reused" } else { "" }
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// `done of total` in the unit of `total`: `120 of 281 MiB`.
fn of(done: u64, total: u64) -> String {
    let total_text = human(total);
    let Some((_, unit)) = total_text.split_once(' ') else { return total_text };
    let scale = match unit {
        "KiB" => 1u64 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => 1,
    };
    let (done, total) = (done as f64 / scale as f64, total as f64 / scale as f64);
    if scale == 1 {
        format!("{done} of {total} B")
    } else if total >= 100.0 {
        format!("{done:.0} of {total:.0} {unit}")
    } else {
        format!("{done:.1} of {total:.1} {unit}")
    }
}

/// The rate and time left, from the average over the whole run: xz takes
/// a NAR in blocks of tens of MiB, so bytes come in jumps seconds apart,
/// and a rate over the last moments (indicatif's) fell towards 0 B/s and an
/// ETA of years between them. With every byte read, what is left is the
/// compression of the last blocks: "finishing", not "ETA 0s".
fn rate_and_eta(done: u64, total: u64, elapsed: Duration) -> String {
    if done == 0 || elapsed < Duration::from_secs(1) {
        return "starting".into();
    }
    let rate = crate::text::per_second(done, elapsed);
    if done >= total {
        return format!("{rate}, finishing");
    }
    let left = elapsed.as_secs_f64() * (total - done) as f64 / done as f64;
    let left = left.round() as u64;
    let eta = match left {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, s / 60 % 60),
    };
    format!("{rate}, ETA {eta}")
}

/// `foo-1.0` of `/nix/store/<hash>-foo-1.0`, for a bar that is short of room.
fn name_of(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.get(33..).filter(|_| base.as_bytes().get(32) == Some(&b'-')).unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_in_the_unit_of_the_total() {
        assert_eq!(of(120 << 20, 281 << 20), "120 of 281 MiB");
        assert_eq!(of(3 << 19, 10 << 20), "1.5 of 10.0 MiB");
        assert_eq!(of(0, 2 << 30), "0.0 of 2.0 GiB");
        assert_eq!(of(5, 100), "5 of 100 B");
    }

    #[test]
    fn the_rate_is_the_runs_average_and_the_end_says_finishing() {
        let s = Duration::from_secs;
        assert_eq!(rate_and_eta(0, 100 << 20, s(5)), "starting");
        // 24 MiB in 10 s, then nothing for 8 s more: the rate halves, no
        // more (the filed bar showed 2 B/s and an ETA of 7 years).
        assert_eq!(rate_and_eta(24 << 20, 96 << 20, s(10)), "2.4 MiB/s, ETA 30s");
        assert_eq!(rate_and_eta(24 << 20, 96 << 20, s(18)), "1.3 MiB/s, ETA 54s");
        assert_eq!(rate_and_eta(1 << 20, 600 << 20, s(10)), "0.1 MiB/s, ETA 1h 39m");
        assert_eq!(rate_and_eta(10 << 20, 30 << 20, s(60)), "0.2 MiB/s, ETA 2m 00s");
        assert_eq!(rate_and_eta(522 << 20, 522 << 20, s(100)), "5.2 MiB/s, finishing");
    }

    #[test]
    fn the_bar_shows_names_without_hashes() {
        assert_eq!(name_of("/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-foo-1.0"), "foo-1.0");
        assert_eq!(name_of("odd"), "odd");
    }
}
