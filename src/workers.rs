//! One pool of worker threads for the subcommands that go over a cache's
//! store paths (`sign`, `merge`): the builder and `verify` schedule their own
//! (largest first, with progress), on the same cores.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::Result;

/// Runs `work` over `items` on up to `jobs` threads (never more than the
/// cores), returning the results in the order of `items`, or the first
/// error, after which no new item is started.
pub fn run_parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let workers = jobs.min(crate::resources::system::cores()).clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    match work(item) {
                        Ok(r) => results.lock().expect("no worker panics holding it")[i] = Some(r),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("no worker panics holding it").get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("workers are done") {
        return Err(e);
    }
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
}
