//! The one pool of worker threads: the builder, `sign`, `verify` and
//! `merge` each run their store paths on it. [`run`] starts the workers;
//! each takes items from one [`Queue`] until none is left or one failed.
//! What a worker does per item (and what it keeps between items: buffers,
//! compressor contexts, a memory reservation) is its caller's.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::Result;

/// The items of one run, handed out in order, and its first error.
pub struct Queue {
    next: AtomicUsize,
    len: usize,
    workers: usize,
    stopped: AtomicBool,
    first_error: Mutex<Option<anyhow::Error>>,
}

impl Queue {
    fn new(len: usize, workers: usize) -> Self {
        Self { next: AtomicUsize::new(0), len, workers, stopped: AtomicBool::new(false), first_error: Mutex::new(None) }
    }

    /// How many workers take from this queue.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The index of the next item to work on; `None` when all are taken or
    /// the run stopped.
    pub fn next(&self) -> Option<usize> {
        if self.stopped() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.len).then_some(i)
    }

    /// Stops the run with `e` (the first error is the one reported).
    pub fn fail(&self, e: anyhow::Error) {
        self.stopped.store(true, Ordering::Relaxed);
        self.first_error.lock().expect("no worker panics holding it").get_or_insert(e);
    }

    /// Stops the run for an error reported elsewhere.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Whether the run stopped: no new item is started.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// Runs `worker(index, queue)` on up to `jobs` threads (never more than the
/// cores, nor than `len`, at least one) over a queue of `len` items, and
/// returns the first error given to [`Queue::fail`].
pub fn run(jobs: usize, len: usize, worker: impl Fn(usize, &Queue) + Sync) -> Result<()> {
    let workers = jobs.min(crate::resources::system::cores()).clamp(1, len.max(1));
    let queue = Queue::new(len, workers);
    std::thread::scope(|scope| {
        for index in 0..workers {
            let (queue, worker) = (&queue, &worker);
            scope.spawn(move || worker(index, queue));
        }
    });
    match queue.first_error.into_inner().expect("workers are done") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs `work` over `items` on the pool, returning the results in the order
/// of `items`, or the first error, after which no new item is started.
pub fn run_parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    run(jobs, items.len(), |_, queue| {
        while let Some(i) = queue.next() {
            match work(&items[i]) {
                Ok(r) => results.lock().expect("no worker panics holding it")[i] = Some(r),
                Err(e) => queue.fail(e),
            }
        }
    })?;
    Ok(results.into_inner().expect("workers are done").into_iter().map(|r| r.expect("every item ran")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn parallel_results_keep_their_order_and_errors_stop_the_run() {
        let items: Vec<usize> = (0..100).collect();
        assert_eq!(run_parallel(&items, 4, |&i| Ok(i * 2)).unwrap(), (0..100).map(|i| i * 2).collect::<Vec<_>>());
        let err = run_parallel(&items, 4, |&i| if i == 42 { Err(anyhow!("item {i}")) } else { Ok(i) }).unwrap_err();
        assert_eq!(err.to_string(), "item 42");
        assert!(run_parallel(&Vec::<usize>::new(), 4, |&i| Ok(i)).unwrap().is_empty());
    }

    #[test]
    fn every_item_is_taken_once() {
        let taken: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        run(8, taken.len(), |_, queue| {
            while let Some(i) = queue.next() {
                taken[i].fetch_add(1, Ordering::Relaxed);
            }
        })
        .unwrap();
        assert!(taken.iter().all(|n| n.load(Ordering::Relaxed) == 1));
    }
}
