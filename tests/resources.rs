//! The builder binary's guard rails, judged from outside: flags that would be
//! silently misread, bounded workers and memory, incomplete closures.

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::{TempDir, copy_closure_from, nix_cmd, ours, path_info, run, run_fail, run_ok, skip_without_nix};

#[test]
fn empty_out_and_repeated_flags_are_errors() {
    let tmp = TempDir::new("flags");
    let closure = tmp.join("closure.json");
    fs::write(&closure, "[]").unwrap();

    let err = run_fail(ours().current_dir(tmp.path()).arg("--closure").arg(&closure).args(["--out", ""]));
    assert!(err.contains("--out must not be empty"), "{err}");
    assert_eq!(
        crate::common::list_dir(tmp.path()),
        ["closure.json"],
        "something was written into the current directory"
    );

    let out = tmp.join("out");
    for (flag, first, second) in [
        ("--out", out.to_str().unwrap(), out.to_str().unwrap()),
        ("--closure", closure.to_str().unwrap(), closure.to_str().unwrap()),
        ("--compression", "xz", "zstd"),
        ("--compression-level", "1", "2"),
        ("--jobs", "1", "2"),
    ] {
        let mut cmd = ours();
        if flag != "--closure" {
            cmd.arg("--closure").arg(&closure);
        }
        if flag != "--out" {
            cmd.arg("--out").arg(&out);
        }
        let err = run_fail(cmd.args([flag, first, flag, second]));
        assert!(err.contains(&format!("{flag} is given more than once")), "{flag}: {err}");
    }
    assert!(!out.exists(), "a cache was written despite the errors");

    let err = run_fail(ours().arg("--closure").arg(&closure).arg("--out").arg(&out).args(["--max-memory", "lots"]));
    assert!(err.contains("--max-memory") && err.contains("\"lots\""), "{err}");
    let help = run_ok(ours().arg("--help"));
    for documented in ["--max-memory SIZE", "1.5GiB", "powers of 1024", "--partial"] {
        assert!(help.contains(documented), "{documented} missing from --help");
    }
}

/// Text files added to the store with `nix-store --add`, their closure as
/// `nix path-info --json` prints it, in a file.
fn store_files(tmp: &TempDir, label: &str, sizes: &[usize]) -> PathBuf {
    let mut paths = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        // Compressible but not trivially (xz at level 9 is slow on both
        // random and very repetitive data), and different in every file.
        let mut text = String::with_capacity(size + 32);
        let mut n = (i as u64 + 1) * 1_000_000_007;
        while text.len() < size {
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            text.push_str(&format!("{label} line {} of file {i}\n", n >> 44));
        }
        text.truncate(size);
        let file = tmp.join(format!("{label}-{i}.txt"));
        fs::write(&file, text).unwrap();
        paths.push(run_ok(nix_cmd("nix-store").arg("--add").arg(&file)));
    }
    let closure = tmp.join(format!("{label}.json"));
    fs::write(&closure, run_ok(nix_cmd("nix").args(["path-info", "--json"]).args(&paths))).unwrap();
    closure
}

/// Runs `cmd` to completion and returns (success, stderr, peak RSS in bytes),
/// as GNU time reads it from wait4's ru_maxrss. Not wait4 of our own child:
/// a child spawned by this (large, multi-threaded) test process starts with
/// this process's high-water mark, which a parallel test can push past the
/// budget (seen here: 121 MiB for a run that stays under 100 MiB alone); one
/// forked by the small `time` starts from that.
fn run_measured(cmd: &mut Command) -> (bool, String, u64) {
    let dir = TempDir::new("rss");
    let report = dir.join("time");
    let mut timed = Command::new("/usr/bin/time");
    timed.arg("-f").arg("%M").arg("-o").arg(&report).arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    let mut child = timed.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("GNU time (/usr/bin/time)");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let ok = child.wait().unwrap().success();
    let text = fs::read_to_string(&report).unwrap();
    // With -o, time writes "Command exited with non-zero status N" first on failure.
    let kib: u64 = text.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("time: {text:?}"));
    (ok, stderr, kib * 1024)
}

#[test]
fn memory_budget_bounds_peak_rss() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("max-memory");
    // Three NARs for which xz -9 needs ~60 MiB each (4 MiB dictionaries),
    // and small ones that fit next to one of them; the budget leaves room
    // for one large path at a time, where two workers would otherwise
    // compress two at once.
    const MIB: usize = 1 << 20;
    let closure = store_files(&tmp, "mem", &[3 * MIB + MIB / 2, 3 * MIB + MIB / 3, 3 * MIB + MIB / 4, 100_000, 90_000]);
    let xz9 = |budget: &str| {
        let out = tmp.join(format!("out-{budget}"));
        let (ok, log, peak) = run_measured(ours().arg("--closure").arg(&closure).arg("--out").arg(&out).args([
            "--jobs",
            "16",
            "--compression",
            "xz",
            "--compression-level",
            "9",
            "--max-memory",
            budget,
        ]));
        assert!(ok, "{log}");
        let narinfos = crate::common::list_dir(&out).into_iter().filter(|n| n.ends_with(".narinfo")).count();
        assert_eq!(narinfos, 5);
        eprintln!("--max-memory {budget}: peak RSS {:.1} MiB", peak as f64 / MIB as f64);
        (log, peak)
    };
    let (log, peak) = xz9("100M");
    assert!(log.contains("memory budget 100.0 MiB (as given)"), "{log}");
    assert!(peak < 100 * MIB as u64, "peak RSS {peak} over the 100 MiB budget\n{log}");
    // The estimates are upper bounds (liblzma counts every buffer in full),
    // so the bound shows best against a run where it does not bind: with two
    // cores, two large paths are then compressed at once.
    if std::thread::available_parallelism().map_or(1, usize::from) >= 2 {
        let (_, unbounded) = xz9("1G");
        assert!(unbounded > peak + 16 * MIB as u64, "1G: {unbounded}, 100M: {peak}: the budget changed nothing");
    }
}

#[test]
fn workers_are_capped_at_the_cores_available() {
    let tmp = TempDir::new("cores");
    let closure = tmp.join("closure.json");
    fs::write(&closure, "[]").unwrap();
    let (ok, _, log) =
        run(ours().arg("--closure").arg(&closure).arg("--out").arg(tmp.join("out")).args(["--jobs", "10000"]));
    assert!(ok, "{log}");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let available = if cores == 1 { "only 1 core is".to_string() } else { format!("only {cores} cores are") };
    assert!(log.contains(&format!("10000 workers asked for, but {available} available")), "{log}");

    // In a build, NIX_BUILD_CORES is capped the same way.
    let out = tmp.join("built");
    let attrs = tmp.join("attrs.json");
    crate::common::write_attrs(&attrs, "[]", &out);
    let (ok, _, log) = run(ours().env("NIX_ATTRS_JSON_FILE", &attrs).env("NIX_BUILD_CORES", "10000"));
    assert!(ok, "{log}");
    assert!(log.contains("10000 workers asked for"), "{log}");
}

fn narinfos(dir: &std::path::Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    crate::common::list_dir(dir).into_iter().filter(|n| n.ends_with(".narinfo")).collect()
}

#[test]
fn incomplete_closures_fail_unless_partial_or_already_cached() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("complete");
    let root = crate::common::build_fixture("", "a");
    let (b, link) = (crate::common::build_fixture("", "b"), crate::common::build_fixture("", "link"));
    let only_root = path_info(&tmp, "root.json", false, &[&root]);

    // The mistake: the root without its references.
    let out = tmp.join("out");
    let err = run_fail(ours().arg("--closure").arg(&only_root).arg("--out").arg(&out));
    let (first, second) = if b < link { (&b, &link) } else { (&link, &b) };
    assert!(err.contains(&format!("{root} refers to {first}")), "{err}");
    assert!(err.contains("and 1 more") && err.contains("nix path-info --json --recursive"), "{err}");
    assert!(!err.contains(second.as_str()), "{err}");
    assert!(narinfos(&out).is_empty() && !out.join("nar").exists(), "something was written");

    // An overlay cache, on purpose.
    let overlay = tmp.join("overlay");
    run_ok(ours().arg("--closure").arg(&only_root).arg("--out").arg(&overlay).arg("--partial"));
    assert_eq!(narinfos(&overlay), [format!("{}.narinfo", crate::common::hash_part(&root))]);

    // A second run adds the rest, which is complete by itself.
    let rest = path_info(&tmp, "rest.json", true, &[&b, &link]);
    run_ok(ours().arg("--closure").arg(&rest).arg("--out").arg(&overlay));
    assert_eq!(narinfos(&overlay).len(), 5);

    // The other order: the rest first, then the root alone, whose references
    // are then in the cache.
    let cache = tmp.join("cache");
    run_ok(ours().arg("--closure").arg(&rest).arg("--out").arg(&cache));
    assert_eq!(narinfos(&cache).len(), 4);
    run_ok(ours().arg("--closure").arg(&only_root).arg("--out").arg(&cache));
    assert_eq!(narinfos(&cache).len(), 5);

    // Real Nix agrees both are whole.
    for dir in [overlay, cache] {
        let store = tmp.join(format!("store-{}", dir.file_name().unwrap().to_str().unwrap()));
        copy_closure_from(&dir, &store, &[&root]);
    }
}

#[test]
fn a_budget_too_small_for_one_path_still_writes_the_cache_and_says_so() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("tiny-budget");
    let root = crate::common::build_fixture("", "a");
    let closure = path_info(&tmp, "closure.json", true, &[&root]);
    let out = tmp.join("out");
    let (ok, _, log) = run(ours().arg("--closure").arg(&closure).arg("--out").arg(&out).args([
        "--compression",
        "xz",
        "--compression-level",
        "9",
        "--max-memory",
        "17M",
    ]));
    assert!(ok, "{log}");
    assert!(log.contains("more than the memory budget of 17.0 MiB") && log.contains("alone, with one thread"), "{log}");
    assert!(log.contains("(xz compression, 1 worker"), "{log}");
    assert_eq!(narinfos(&out).len(), 5);
}
