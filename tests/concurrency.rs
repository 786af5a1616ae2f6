//! Integrity when several runs fill one cache directory at once, when the
//! directory belongs to another store, and when a run is killed midway;
//! judged by real Nix (`nix copy` from the cache into a fresh store, then
//! `nix-store --verify --check-contents` there) and by `nix-hash` (every
//! narinfo's FileHash and FileSize against its NAR file, which Nix itself
//! never checks).
//!
//! Runs "without O_TMPFILE" hide `/proc` (`unshare -m` and a tmpfs over
//! `/proc`), so that an unnamed file cannot be named and every file goes
//! through a temporary name; they skip, saying why, where `unshare` is not
//! permitted.
//!
//! Without `nix-build` on PATH every test fails, saying how to install Nix,
//! unless MAKE_BINARY_CACHE_SKIP_NIX_TESTS=1 (see `crate::common::skip_without_nix`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::{
    TempDir, closure_of, copy_closure_from, field, flat_hashes, hash_part, list_dir, nix_cmd, parse_narinfo, repo_root,
    run_fail, run_ok, skip_without_nix,
};

const BIN: &str = env!("CARGO_BIN_EXE_make-binary-cache");

/// A closure big enough for kills to land mid-run and for concurrent runs to
/// race on many names: 150 tiny paths, 4 paths of a few MB, the fixture.
const CLOSURE_NIX: &str = r#"
let
  system = builtins.currentSystem;
  fixture = (import (/. + root + "/tests/fixtures/closure.nix") { }).a;
  tiny = builtins.genList (i: builtins.toFile "concurrency-tiny-${toString i}" "tiny store path ${toString i}\n") 150;
  big = builtins.genList (i: derivation {
    name = "concurrency-big-${toString i}";
    inherit system;
    builder = "/bin/sh";
    args = [ "-c" "seq ${toString i} 3 1500000 > $out" ];
    PATH = "/usr/bin:/bin";
  }) 4;
in derivation {
  name = "concurrency-root";
  inherit system;
  builder = "/bin/sh";
  args = [ "-c" "echo $refs > $out" ];
  refs = tiny ++ big ++ [ fixture ];
}
"#;

/// The generated closure's root and its `nix path-info --json --recursive`
/// in a file; built once per test binary.
fn closure() -> &'static (String, PathBuf) {
    static CLOSURE: OnceLock<(String, PathBuf)> = OnceLock::new();
    CLOSURE.get_or_init(|| {
        let root = run_ok(
            nix_cmd("nix-build").args(["--no-out-link", "-E"]).arg(format!("{{ root }}: {CLOSURE_NIX}")).args([
                "--argstr",
                "root",
                repo_root().to_str().unwrap(),
            ]),
        );
        let json = run_ok(nix_cmd("nix").args(["path-info", "--json", "--recursive"]).arg(&root));
        // One file per closure, not per test run, so runs do not pile them
        // up; written under a unique name and renamed, for runs side by side.
        let file = std::env::temp_dir().join(format!("mbc-concurrency-closure-{}.json", hash_part(&root)));
        let temporary = std::env::temp_dir().join(crate::common::unique("mbc-concurrency-closure"));
        fs::write(&temporary, json).unwrap();
        fs::rename(&temporary, &file).unwrap();
        (root, file)
    })
}

/// Whether files can be made to go through temporary names by hiding
/// `/proc`; prints why not when they cannot.
fn can_hide_proc() -> bool {
    static CAN: OnceLock<bool> = OnceLock::new();
    *CAN.get_or_init(|| {
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", "mount -t tmpfs none /proc && ! test -e /proc/self/fd"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => true,
            Ok(out) => {
                eprintln!("skipping the runs without O_TMPFILE: {}", String::from_utf8_lossy(&out.stderr).trim());
                false
            }
            Err(e) => {
                eprintln!("skipping the runs without O_TMPFILE: unshare: {e}");
                false
            }
        }
    })
}

/// A run of ours over the generated closure into `out`; with `hide_proc`,
/// in a mount namespace where `/proc` is an empty tmpfs. `unshare` and `sh`
/// exec into ours, so killing the child kills our process.
fn ours(out: &Path, hide_proc: bool, args: &[&str]) -> Command {
    ours_with(&closure().1, out, hide_proc, args)
}

/// [`ours`] over the closure in the path-info JSON file `closure`.
fn ours_with(closure: &Path, out: &Path, hide_proc: bool, args: &[&str]) -> Command {
    let mut cmd = if hide_proc {
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "sh", "-c", r#"mount -t tmpfs none /proc && exec "$@""#, "sh", BIN]);
        cmd
    } else {
        Command::new(BIN)
    };
    cmd.arg("--closure").arg(closure).arg("--out").arg(out).args(args);
    // Two workers unless the test asks otherwise: a flag may be given once.
    if !args.contains(&"--jobs") {
        cmd.args(["--jobs", "2"]);
    }
    cmd.env_remove("NIX_ATTRS_JSON_FILE").env_remove("NIX_BUILD_TOP").env_remove("NIX_STORE").stdin(Stdio::null());
    cmd
}

/// Settings for concurrent runs: compressions and levels mixed, so the runs
/// race to name different NARs for the same path (and the same NAR, for the
/// same settings).
const MIXED: [&[&str]; 4] = [
    &["--compression", "zstd", "--compression-level", "1"],
    &["--compression", "zstd", "--compression-level", "9"],
    &["--compression", "xz", "--compression-level", "0"],
    &["--compression", "zstd", "--compression-level", "1", "--no-sync"],
];

/// Starts the 4 [`MIXED`] runs at once, waits for all and asserts each
/// exited 0.
fn four_at_once(out: &Path, hide_proc: bool) {
    let children: Vec<(Child, String)> = MIXED
        .iter()
        .map(|args| {
            let mut cmd = ours(out, hide_proc, args);
            let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting make-binary-cache");
            (child, args.join(" "))
        })
        .collect();
    for (child, args) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "run with {args} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every narinfo in `cache` points at a NAR file whose size is its FileSize
/// and whose sha256 is its FileHash; returns the store paths they describe.
fn assert_narinfos_consistent(cache: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    let mut nar_files = Vec::new();
    let mut file_hashes = Vec::new();
    for name in list_dir(cache).into_iter().filter(|n| n.ends_with(".narinfo")) {
        let text = fs::read_to_string(cache.join(&name)).unwrap();
        let ni = parse_narinfo(&text);
        let path = field(&ni, "StorePath").to_string();
        assert_eq!(name, format!("{}.narinfo", hash_part(&path)), "{text}");
        let nar = cache.join(field(&ni, "URL"));
        let size = fs::metadata(&nar).unwrap_or_else(|e| panic!("{name} points at {}: {e}", nar.display())).len();
        assert_eq!(field(&ni, "FileSize"), size.to_string(), "{name}: FileSize is not the size of its NAR:\n{text}");
        file_hashes.push(field(&ni, "FileHash").trim_start_matches("sha256:").to_string());
        nar_files.push(nar);
        paths.push(path);
    }
    assert_eq!(flat_hashes(&nar_files), file_hashes, "a FileHash is not the hash of its NAR");
    paths.sort();
    paths
}

/// The whole closure is in `cache`, consistent, and real Nix substitutes it
/// into a fresh store and verifies its contents there.
fn assert_cache_complete(cache: &Path, tmp: &TempDir, store: &str) {
    let (root, _) = closure();
    assert_eq!(assert_narinfos_consistent(cache), closure_of(root));
    assert_eq!(fs::read_to_string(cache.join("nix-cache-info")).unwrap(), "StoreDir: /nix/store\n");
    copy_closure_from(cache, &tmp.join(store), &[root]);
}

fn four_runs_into_a_fresh_directory(hide_proc: bool) {
    let tmp = TempDir::new("four-fresh");
    let cache = tmp.join("cache");
    four_at_once(&cache, hide_proc);
    assert_cache_complete(&cache, &tmp, "store");
}

fn four_runs_into_an_existing_cache(hide_proc: bool) {
    let tmp = TempDir::new("four-existing");
    let cache = tmp.join("cache");
    run_ok(&mut ours(&cache, hide_proc, &[]));
    // Several rounds: the failures this guards against came at random.
    for round in 0..2 {
        four_at_once(&cache, hide_proc);
        assert_cache_complete(&cache, &tmp, &format!("store{round}"));
    }
}

#[test]
fn four_runs_into_a_fresh_directory_with_o_tmpfile() {
    if skip_without_nix() {
        return;
    }
    four_runs_into_a_fresh_directory(false);
}

#[test]
fn four_runs_into_a_fresh_directory_without_o_tmpfile() {
    if skip_without_nix() || !can_hide_proc() {
        return;
    }
    four_runs_into_a_fresh_directory(true);
}

#[test]
fn four_runs_into_an_existing_cache_with_o_tmpfile() {
    if skip_without_nix() {
        return;
    }
    four_runs_into_an_existing_cache(false);
}

#[test]
fn four_runs_into_an_existing_cache_without_o_tmpfile() {
    if skip_without_nix() || !can_hide_proc() {
        return;
    }
    four_runs_into_an_existing_cache(true);
}

/// Every file under `dir` with its contents and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let contents = if meta.is_dir() { Vec::new() } else { fs::read(&path).unwrap() };
            if meta.is_dir() {
                stack.push(path.clone());
            }
            files.insert(path, (contents, meta.modified().unwrap()));
        }
    }
    files
}

#[test]
fn an_existing_cache_for_another_store_dir_is_refused_and_left_alone() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("other-store-dir");
    let cache = tmp.join("cache");
    fs::create_dir_all(cache.join("nar")).unwrap();
    fs::write(cache.join("nix-cache-info"), "StoreDir: /gnu/store\nWantMassQuery: 1\n").unwrap();
    fs::write(cache.join("0000000000000000000000000000000a.narinfo"), "StorePath: /gnu/store/…\n").unwrap();
    let before = snapshot(&cache);
    let error = run_fail(&mut ours(&cache, false, &[]));
    for needle in [cache.join("nix-cache-info").to_str().unwrap(), "/gnu/store", "/nix/store"] {
        assert!(error.contains(needle), "the error does not name {needle}:\n{error}");
    }
    assert_eq!(snapshot(&cache), before, "the run changed the directory");
}

/// Kills runs at several points, then reruns: after every kill each narinfo
/// in the cache points at a complete, matching NAR; after the rerun the cache
/// is complete. The kills alternate between O_TMPFILE and temporary names,
/// and between syncing and `--no-sync` (whose narinfos appear sooner, so
/// more kills land between a NAR and its narinfo).
///
/// A killed run with temporary names leaves them behind (`.<name>.<pid>-…
/// .tmp`, which Nix never reads); the rerun does not remove them, since it
/// cannot tell them from the files of a run still going, and is not confused
/// by them: its own temporary names are new.
#[test]
fn killed_runs_leave_a_cache_that_a_rerun_completes() {
    if skip_without_nix() {
        return;
    }
    let hide = can_hide_proc();
    let tmp = TempDir::new("killed");
    let cache = tmp.join("cache");
    // A run takes about 1 to 2 s (one worker): most kills land mid-run.
    let delays_ms = [0, 20, 100, 200, 350, 500, 700, 1000];
    let mut completed = 0;
    for (i, delay) in delays_ms.into_iter().enumerate() {
        let hide_proc = hide && i % 2 == 1;
        let args: &[&str] =
            if i % 4 < 2 { &["--compression", "xz", "--compression-level", "0"] } else { &["--no-sync"] };
        let mut child = ours(&cache, hide_proc, args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        // If it already finished, the kill does nothing and wait reports success.
        let _ = child.kill();
        if child.wait().unwrap().success() {
            completed += 1;
        }
        if cache.join("nix-cache-info").exists() {
            assert_eq!(fs::read_to_string(cache.join("nix-cache-info")).unwrap(), "StoreDir: /nix/store\n");
        }
        if cache.is_dir() {
            let narinfos = assert_narinfos_consistent(&cache).len();
            let temporaries = [cache.clone(), cache.join("nar")]
                .iter()
                .flat_map(|d| list_dir(d))
                .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
                .count();
            eprintln!("killed after {delay} ms: {narinfos} narinfos, {temporaries} temporary files left");
        }
    }
    eprintln!("{completed} of {} runs finished before their kill", delays_ms.len());
    run_ok(&mut ours(&cache, false, &[]));
    assert_cache_complete(&cache, &tmp, "store");
}

/// When one path fails, the narinfos of the paths checked before it, still
/// waiting for their sync, are written all the same, and the run fails
/// naming the path.
#[test]
fn paths_checked_before_a_failure_keep_their_narinfos() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("one-fails");
    let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&closure().1).unwrap()).unwrap();
    let mut entries = json.as_array().expect("Nix 2.8 path-info JSON is an array").clone();
    // The last path of the plan (largest NAR first, then by path): with one
    // worker, every other path is checked before this one fails.
    let victim = entries
        .iter_mut()
        .min_by_key(|e| (e["narSize"].as_u64().unwrap(), std::cmp::Reverse(e["path"].as_str().unwrap().to_string())))
        .unwrap();
    // SHA-256 of nothing, not this path's NAR.
    victim["narHash"] = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into();
    let victim = victim["path"].as_str().unwrap().to_string();
    let bad = tmp.join("bad.json");
    fs::write(&bad, serde_json::to_string(&entries).unwrap()).unwrap();

    let cache = tmp.join("cache");
    let error = run_fail(&mut ours_with(&bad, &cache, false, &["--jobs", "1"]));
    assert!(error.contains(&victim) && error.contains("do not match"), "{error}");
    let mut expected = closure_of(&closure().0);
    expected.retain(|p| *p != victim);
    assert_eq!(assert_narinfos_consistent(&cache), expected);
}

/// The order that makes a cache survive a power cut, read from the system
/// calls (a power cut itself cannot be staged here): every narinfo is named
/// after a `syncfs` that came after its NAR was named, and a `syncfs` comes
/// after the last narinfo; with `--no-sync`, no `syncfs` at all. Skipped
/// without `strace`. Covers both ways of naming: `linkat` of an unnamed
/// file, and `link`/`rename` of a temporary name (with `/proc` hidden).
#[test]
fn narinfos_are_named_only_after_their_nars_are_synced() {
    if skip_without_nix() {
        return;
    }
    if !crate::common::on_path("strace") {
        eprintln!("skipping: strace not found");
        return;
    }
    let ways = if can_hide_proc() { vec![false, true] } else { vec![false] };
    for hide_proc in ways {
        for sync in [true, false] {
            let tmp = TempDir::new("synced");
            let cache = tmp.join("cache");
            let trace = tmp.join("trace");
            let args: &[&str] = if sync { &[] } else { &["--no-sync"] };
            let run = ours(&cache, hide_proc, args);
            let mut cmd = Command::new("strace");
            cmd.args(["-f", "-qq", "-e", "trace=syncfs,linkat,link,rename,renameat,renameat2", "-o"])
                .arg(&trace)
                .arg(run.get_program())
                .args(run.get_args())
                .env_remove("NIX_STORE");
            run_ok(&mut cmd);
            let (syncs, order_kept, synced_at_end) = narinfo_order(&fs::read_to_string(&trace).unwrap(), &cache);
            let what = format!("sync: {sync}, /proc hidden: {hide_proc}");
            if sync {
                assert!(syncs > 0 && order_kept && synced_at_end, "{what}: {syncs} syncfs, order kept: {order_kept}");
            } else {
                assert_eq!(syncs, 0, "{what}");
            }
        }
    }
}

/// In a Nix build, whether the output is on disk before Nix registers it is
/// Nix's setting (see "Durability" in src/cache.rs): builder mode makes no
/// `syncfs`, `sync_file_range` or other sync call, while the CLI, given the
/// same structured attrs with `--attrs`, makes both. The two caches are
/// byte-identical, and real Nix substitutes the builder's. Skipped without
/// `strace`.
#[test]
fn builder_mode_leaves_syncing_to_nix() {
    if skip_without_nix() {
        return;
    }
    if !crate::common::on_path("strace") {
        eprintln!("skipping: strace not found");
        return;
    }
    let tmp = TempDir::new("builder-sync");
    let (built, cli) = (tmp.join("built"), tmp.join("cli"));
    let attrs = tmp.join("attrs.json");
    crate::common::write_attrs(&attrs, &fs::read_to_string(&closure().1).unwrap(), &built);
    // Every call that waits for the disk or starts its writeback.
    let sync_calls = |run: &mut Command, trace: &Path| -> BTreeMap<String, usize> {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-e", "trace=syncfs,sync_file_range,fsync,fdatasync,sync,msync", "-o"])
            .arg(trace)
            .arg(run.get_program())
            .args(run.get_args());
        for (key, value) in run.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        run_ok(&mut cmd);
        let mut calls = BTreeMap::new();
        // One line per call names it with `(`: whole, or its unfinished start.
        for line in fs::read_to_string(trace).unwrap().lines() {
            let call = line.split_whitespace().nth(1).and_then(|c| c.split_once('(')).map(|(name, _)| name);
            if let Some(name) = call {
                *calls.entry(name.to_string()).or_default() += 1;
            }
        }
        calls
    };

    let mut builder = Command::new(BIN);
    builder
        .env("NIX_ATTRS_JSON_FILE", &attrs)
        .env("NIX_BUILD_CORES", "2")
        .env_remove("NIX_BUILD_TOP")
        .env_remove("NIX_STORE")
        .stdin(Stdio::null());
    let in_build = sync_calls(&mut builder, &tmp.join("trace-builder"));
    assert!(in_build.is_empty(), "builder mode made sync calls: {in_build:?}");

    let mut by_hand = Command::new(BIN);
    by_hand.arg("--attrs").arg(&attrs).arg("--out").arg(&cli).args(["--jobs", "2"]);
    by_hand.env_remove("NIX_ATTRS_JSON_FILE").env_remove("NIX_BUILD_TOP").env_remove("NIX_STORE").stdin(Stdio::null());
    let on_cli = sync_calls(&mut by_hand, &tmp.join("trace-cli"));
    assert!(on_cli.get("syncfs") > Some(&0) && on_cli.get("sync_file_range") > Some(&0), "the CLI: {on_cli:?}");

    assert!(
        crate::common::tree(&built) == crate::common::tree(&cli),
        "builder mode and the CLI wrote different caches"
    );
    copy_closure_from(&built, &tmp.join("store"), &[&closure().0]);
}

/// From an strace log of a run into `cache`: the number of successful
/// `syncfs` calls, whether every narinfo was named after a `syncfs` that
/// followed the naming of its NAR, and whether a `syncfs` followed the last
/// narinfo.
fn narinfo_order(trace: &str, cache: &Path) -> (usize, bool, bool) {
    // Calls interrupted by another thread's are logged in two pieces.
    let mut pending: BTreeMap<&str, String> = BTreeMap::new();
    let mut calls = Vec::new();
    for line in trace.lines() {
        let pid = line.split_whitespace().next().unwrap_or("");
        if let Some((start, _)) = line.split_once(" <unfinished ...>") {
            pending.insert(pid, start.to_string());
        } else if let Some((_, end)) = line.split_once(" resumed>") {
            calls.push(pending.remove(pid).unwrap_or_default() + end);
        } else {
            calls.push(line.to_string());
        }
    }
    let (mut syncs, mut last_sync, mut last_narinfo) = (0, None, None);
    let mut nar_named_at = BTreeMap::new();
    let mut order_kept = true;
    for (i, call) in calls.iter().enumerate().filter(|(_, c)| c.trim_end().ends_with("= 0")) {
        if call.contains("syncfs(") {
            syncs += 1;
            last_sync = Some(i);
            continue;
        }
        // The target is the last quoted path of link, linkat and rename*.
        let Some(target) = call.rsplit('"').nth(1) else { continue };
        let name = target.rsplit('/').next().unwrap();
        if name.starts_with('.') {
            continue; // a temporary name
        }
        if target.contains("/nar/") {
            nar_named_at.insert(name.to_string(), i);
        } else if name.ends_with(".narinfo") {
            last_narinfo = Some(i);
            let text = fs::read_to_string(cache.join(name)).unwrap();
            let nar = field(&parse_narinfo(&text), "URL").trim_start_matches("nar/").to_string();
            order_kept &= matches!((nar_named_at.get(&nar), last_sync), (Some(n), Some(s)) if *n < s);
        }
    }
    (syncs, order_kept, last_sync > last_narinfo)
}
