//! The pipeline's side of progress: what it tells an [`Observer`] adds up to
//! the closure, whatever the number of workers, so a progress bar ends at
//! its total and no path is shown in flight after it is done.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::common::{TempDir, path_info_file, skip_without_nix};
use make_binary_cache::commands::build::{self, Observer, Settings, Written};
use make_binary_cache::compress::Compression;
use make_binary_cache::format::path_info::PathInfo;
use make_binary_cache::input;

#[derive(Default)]
struct Counting {
    started: Mutex<Option<(usize, u64)>>,
    /// Per worker: the path it is on, and the NAR bytes it reported for it.
    in_flight: Mutex<BTreeMap<usize, (String, u64)>>,
    /// Per store path: the NAR bytes reported while it was in flight.
    finished: Mutex<BTreeMap<String, u64>>,
    bytes: AtomicU64,
    written: AtomicUsize,
}

impl Observer for Counting {
    fn started(&self, paths: usize, nar_bytes: u64) {
        assert!(self.started.lock().unwrap().replace((paths, nar_bytes)).is_none(), "started twice");
    }

    fn path_started(&self, worker: usize, info: &PathInfo) {
        let previous = self.in_flight.lock().unwrap().insert(worker, (info.path.to_string(), 0));
        assert!(previous.is_none(), "worker {worker} started {} while on {previous:?}", info.path);
    }

    fn nar_bytes(&self, worker: usize, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut in_flight = self.in_flight.lock().unwrap();
        in_flight.get_mut(&worker).unwrap_or_else(|| panic!("bytes from idle worker {worker}")).1 += bytes;
    }

    fn path_finished(&self, worker: usize) {
        let (path, bytes) = self.in_flight.lock().unwrap().remove(&worker).expect("finished what it started");
        assert!(self.finished.lock().unwrap().insert(path.clone(), bytes).is_none(), "{path} done twice");
    }

    fn path_written(&self, info: &PathInfo, written: &Written) {
        assert_eq!(written.nar_size, info.nar_size);
        let finished = self.finished.lock().unwrap();
        assert!(finished.contains_key(info.path.as_str()), "{} written before its worker finished it", info.path);
        self.written.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn the_observer_is_told_every_path_and_every_byte() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("progress-observer");
    let (_, file) = path_info_file(&tmp);
    let closure = input::parse_path_info_json(&fs::read_to_string(file).unwrap(), "/nix/store").unwrap();
    let total: u64 = closure.iter().map(|info| info.nar_size).sum();
    for (jobs, compression) in [(1, Compression::Xz), (3, Compression::Zstd), (2, Compression::None)] {
        let settings = Settings { jobs, sync: false, ..Settings::new("/nix/store".into(), compression) };
        let observer = Counting::default();
        let out = tmp.join(format!("cache-{jobs}"));
        let summary = build::write_cache(&closure, &out, &settings, &observer).unwrap();
        assert_eq!(*observer.started.lock().unwrap(), Some((closure.len(), total)));
        assert_eq!(observer.bytes.load(Ordering::Relaxed), total, "{jobs} workers");
        assert_eq!(summary.nar_bytes, total);
        assert!(observer.in_flight.lock().unwrap().is_empty(), "paths left in flight");
        let finished = observer.finished.into_inner().unwrap();
        for info in &closure {
            assert_eq!(finished.get(info.path.as_str()), Some(&info.nar_size), "{}: bytes reported", info.path);
        }
        assert_eq!(observer.written.load(Ordering::Relaxed), closure.len());
    }
}
