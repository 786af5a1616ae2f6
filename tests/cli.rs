//! The builder binary in CLI mode, judged by real Nix: its uncompressed cache
//! against the one `nix copy --to file://` writes, its integrity checks, its
//! determinism and its errors.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::{
    TempDir, build_fixture, closure_of, copy_closure_from, list_dir, nix_cmd, ours, path_info_file, repo_root, run,
    run_fail, run_ok, skip_without_nix, tree, write_attrs,
};

#[test]
fn uncompressed_cache_is_what_nix_copy_writes() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-vs-nix-copy");
    let (root, closure) = path_info_file(&tmp);
    let ours_dir = tmp.join("ours");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&ours_dir).args(["--compression", "none"]));
    let nix_dir = tmp.join("nix");
    run_ok(
        nix_cmd("nix").args(["copy", "--to"]).arg(format!("file://{}?compression=none", nix_dir.display())).arg(&root),
    );

    // Same narinfo files, byte for byte (FileHash, FileSize, References,
    // Deriver included), same NAR files.
    let written_by = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        tree(dir).into_iter().filter(|(name, _)| name.ends_with(".narinfo") || name.starts_with("nar/")).collect()
    };
    let (ours_files, nix_files) = (written_by(&ours_dir), written_by(&nix_dir));
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ours_files), names(&nix_files));
    for ((name, ours), (_, nixs)) in ours_files.iter().zip(&nix_files) {
        assert!(
            ours == nixs,
            "{name} differs:\n--- ours:\n{}\n--- nix copy:\n{}",
            String::from_utf8_lossy(ours),
            String::from_utf8_lossy(nixs)
        );
    }
    assert_eq!(fs::read_to_string(ours_dir.join("nix-cache-info")).unwrap(), "StoreDir: /nix/store\n");
}

#[test]
fn compressed_caches_substitute_into_a_fresh_store() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-substitute");
    let (root, closure) = path_info_file(&tmp);
    for compression in ["xz", "zstd"] {
        let cache = tmp.join(compression);
        run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache).args(["--compression", compression]));
        copy_closure_from(&cache, &tmp.join(format!("store-{compression}")), &[&root]);
    }
}

#[test]
fn a_cache_of_named_store_paths_and_result_symlinks() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-named-paths");
    let result = tmp.join("result");
    let root = run_ok(
        nix_cmd("nix-build")
            .arg(repo_root().join("tests/fixtures/closure.nix"))
            .args(["-A", "a", "--out-link"])
            .arg(&result),
    );
    // A store path that is itself a symlink, named directly: kept, not followed.
    let link = build_fixture("", "link");
    let cache = tmp.join("cache");
    let log = run(ours()
        .arg("--out")
        .arg(&cache)
        .args(["--compression", "xz"])
        .arg(&result)
        .arg(&link)
        .current_dir(tmp.path()));
    assert!(log.0, "{}", log.2);
    let narinfos = list_dir(&cache).into_iter().filter(|n| n.ends_with(".narinfo")).count();
    assert_eq!(narinfos, closure_of(&root).len(), "{}", log.2);
    copy_closure_from(&cache, &tmp.join("store"), &[&root, &link]);

    // A relative `result`, as a user types it.
    let cache = tmp.join("cache-relative");
    run_ok(ours().args(["--out", "cache-relative", "result"]).current_dir(tmp.path()));
    copy_closure_from(&cache, &tmp.join("store-relative"), &[&root]);
}

#[test]
fn closure_from_stdin() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-stdin");
    let root = build_fixture("", "a");
    let cache = tmp.join("cache");
    let script = "nix path-info --json --recursive \"$1\" | \"$2\" --closure - --out \"$3\"";
    run_ok(
        nix_cmd("sh")
            .args(["-ec", script, "sh"])
            .arg(&root)
            .arg(env!("CARGO_BIN_EXE_make-binary-cache"))
            .arg(&cache)
            .env_remove("NIX_BUILD_TOP")
            .env_remove("NIX_ATTRS_JSON_FILE"),
    );
    copy_closure_from(&cache, &tmp.join("store"), &[&root]);
}

#[test]
fn named_paths_that_nix_cannot_take_are_clear_errors() {
    let tmp = TempDir::new("cli-named-errors");
    let out = tmp.join("out");
    // Without Nix: what to do instead.
    let empty = tmp.join("no-nix-here");
    fs::create_dir(&empty).unwrap();
    let ghost = "/nix/store/00000000000000000000000000000000-not-there";
    let err = run_fail(ours().arg("--out").arg(&out).arg(ghost).env("PATH", &empty));
    assert!(
        err.contains("`nix` is not on the PATH") && err.contains("Install Nix") && err.contains("--closure FILE"),
        "{err}"
    );
    // Not in the store at all: said before Nix is asked.
    let file = tmp.join("file");
    fs::write(&file, "").unwrap();
    let err = run_fail(ours().arg("--out").arg(&out).arg(&file).env("PATH", &empty));
    assert!(err.contains(&file.display().to_string()) && err.contains("not in the Nix store (/nix/store)"), "{err}");
    // Both a closure file and paths.
    let err = run_fail(ours().arg("--out").arg(&out).arg("--closure").arg(&file).arg(ghost));
    assert!(err.contains("not several"), "{err}");
    assert!(!out.exists());
    if skip_without_nix() {
        return;
    }
    // Not valid: Nix's own error, then what to do.
    let err = run_fail(ours().arg("--out").arg(&out).arg(ghost));
    assert!(
        err.contains(&format!("path '{ghost}' is not valid")) && err.contains("nix-store --check-validity"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn wrong_nar_hash_or_size_fails_naming_the_path() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-corrupt");
    let (_, closure) = path_info_file(&tmp);
    let json = fs::read_to_string(&closure).unwrap();
    let entries: Vec<&str> = json.split("{\"path\":\"").skip(1).collect();
    let victim = &entries[0][..entries[0].find('"').unwrap()];
    let victim_hash = victim.trim_start_matches("/nix/store/").split('-').next().unwrap();

    // SRI of SHA-256("") instead of the real NarHash.
    let wrong_hash = replace_field(&json, victim, "narHash", "\"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"");
    let wrong_size = replace_field(&json, victim, "narSize", "8");
    for (what, bad_json) in [("hash", wrong_hash), ("size", wrong_size)] {
        let file = tmp.join(format!("bad-{what}.json"));
        fs::write(&file, bad_json).unwrap();
        let out = tmp.join(format!("out-{what}"));
        let err = run_fail(ours().arg("--closure").arg(&file).arg("--out").arg(&out).args(["--jobs", "1"]));
        assert!(err.contains(victim) && err.contains("do not match"), "wrong {what}: {err}");
        assert!(!out.join(format!("{victim_hash}.narinfo")).exists(), "a narinfo was written for {victim}");
        let leftovers: Vec<String> =
            list_dir(&out.join("nar")).into_iter().filter(|n| n.contains(victim_hash)).collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}

/// Replaces the value of `field` in the entry of `path` (the JSON is Nix's
/// one-line output, each entry starting with its "path").
fn replace_field(json: &str, path: &str, field: &str, value: &str) -> String {
    let start = json.find(&format!("{{\"path\":\"{path}\"")).unwrap();
    let key = format!("\"{field}\":");
    let at = start + json[start..].find(&key).unwrap() + key.len();
    let end = at + json[at..].find([',', '}']).unwrap();
    format!("{}{value}{}", &json[..at], &json[end..])
}

#[test]
fn output_is_identical_with_one_and_four_workers() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-jobs");
    let (_, closure) = path_info_file(&tmp);
    for compression in ["none", "xz", "zstd"] {
        let run = |jobs: &str| {
            let out = tmp.join(format!("{compression}-{jobs}"));
            run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&out).args([
                "--compression",
                compression,
                "--jobs",
                jobs,
            ]));
            tree(&out)
        };
        assert!(run("1") == run("4"), "{compression}: the cache depends on --jobs");
    }
}

#[test]
fn builder_mode_falls_back_to_build_top_attrs() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-builder-mode");
    let (_, closure) = path_info_file(&tmp);
    // Shaped like a builder's attrs: the closure as Nix 2.8 exports it has
    // nix32 hashes, but any accepted form will do for this test.
    let out = tmp.join("out");
    let attrs = format!(
        "{{\"closure\": {}, \"outputs\": {{\"out\": \"{}\"}}, \"compression\": \"xz\", \"compressionLevel\": 1}}",
        fs::read_to_string(&closure).unwrap(),
        out.display()
    );
    let build_top = tmp.join("build");
    fs::create_dir(&build_top).unwrap();
    fs::write(build_top.join(".attrs.json"), attrs).unwrap();
    let (ok, _, log) = run(ours()
        .env("NIX_ATTRS_JSON_FILE", "/build/.attrs.json-of-an-old-nix-outside-the-sandbox")
        .env("NIX_BUILD_TOP", &build_top)
        .env("NIX_BUILD_CORES", "0")
        .env("PATH", "/path-not-set"));
    assert!(ok, "{log}");
    // The build log: one line per path, then the totals.
    assert_eq!(log.lines().filter(|l| l.starts_with("copied /nix/store/")).count(), 5, "{log}");
    assert!(log.lines().last().unwrap().contains("done: 5 store paths, "), "{log}");
    let narinfos: Vec<String> = list_dir(&out).into_iter().filter(|n| n.ends_with(".narinfo")).collect();
    assert_eq!(narinfos.len(), 5, "{narinfos:?}");
    for n in narinfos {
        assert!(fs::read_to_string(out.join(n)).unwrap().contains("\nCompression: xz\n"));
    }
}

#[test]
fn out_must_be_new_empty_or_a_cache() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-out-kinds");
    let root = build_fixture("", "a");
    // A source tree: refused, and left as it was.
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("main.rs"), "fn main() {}\n").unwrap();
    let err = run_fail(ours().arg("--out").arg(&src).arg(&root));
    assert!(err.contains("is not empty and has no nix-cache-info") && err.contains("main.rs"), "{err}");
    assert_eq!(list_dir(&src), ["main.rs"]);
    // A regular file: named, not a bare "Not a directory".
    let file = tmp.join("file");
    fs::write(&file, "x").unwrap();
    let err = run_fail(ours().arg("--out").arg(&file).arg(&root));
    assert!(err.contains("exists and is not a directory"), "{err}");
    // New, empty, and an existing cache are all fine.
    let empty = tmp.join("empty");
    fs::create_dir_all(&empty).unwrap();
    for out in [tmp.join("new"), empty.clone(), empty] {
        run_ok(ours().arg("--out").arg(&out).arg(&root));
    }
}

#[test]
fn help_and_unknown_subcommands_are_not_store_paths() {
    let out = run_ok(ours().arg("help"));
    assert!(out.contains("make-binary-cache sign"), "{out}");
    let out = run_ok(ours().args(["help", "verify"]));
    assert!(out.contains("--public-key"), "{out}");
    let err = run_fail(ours().args(["frobnicate", "bash"]));
    assert!(
        err.contains("frobnicate is neither a subcommand (sign, verify, merge, ls, diff, gc, help) nor a path"),
        "{err}"
    );
    let err = run_fail(ours().args(["help", "frobnicate"]));
    assert!(err.contains("help frobnicate: there is no such subcommand"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = TempDir::new("cli-errors");
    let out = tmp.join("out");
    let missing = tmp.join("missing.json");
    let err = run_fail(ours().arg("--closure").arg(&missing).arg("--out").arg(&out));
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let garbage = tmp.join("garbage.json");
    fs::write(&garbage, "{not json").unwrap();
    let err = run_fail(ours().arg("--attrs").arg(&garbage).arg("--out").arg(&out));
    assert!(err.contains(&garbage.display().to_string()) && err.contains("JSON"), "{err}");

    let err = run_fail(ours().arg("--closure").arg(&garbage).arg("--out").arg(&out).args(["--compression", "gzip"]));
    assert!(err.contains("gzip") && err.contains("\"none\", \"xz\", \"zstd\""), "{err}");

    let empty = tmp.join("empty.json");
    fs::write(&empty, "[]").unwrap();
    let err = run_fail(ours().arg("--closure").arg(&empty).arg("--out").arg(&out).args([
        "--compression",
        "xz",
        "--compression-level",
        "12",
    ]));
    assert!(err.contains("compression level") && err.contains("12"), "{err}");

    // A well-formed entry for a store path that does not exist.
    let ghost = "/nix/store/00000000000000000000000000000000-not-there";
    let ghost_json = tmp.join("ghost.json");
    fs::write(
        &ghost_json,
        format!(r#"[{{"path":"{ghost}","narHash":"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=","narSize":8,"references":[]}}]"#),
    )
    .unwrap();
    let err = run_fail(ours().arg("--closure").arg(&ghost_json).arg("--out").arg(&out));
    assert!(err.contains(ghost), "{err}");

    let err = run_fail(&mut ours());
    assert!(err.contains("nothing to put in the cache") && err.contains("not a Nix build"), "{err}");
}

/// The first line of an error: what went wrong, then what to do.
fn first_line(err: &str) -> &str {
    err.lines().next().unwrap_or_default()
}

#[test]
fn command_line_mistakes_say_the_cause_first_and_once() {
    for (args, expected) in [
        (&["--frobnicate"][..], "error: invalid option '--frobnicate'; see --help"),
        (&["sign", "--frobnicate"], "error: invalid option '--frobnicate'; see sign --help"),
        (&["verify", "--frobnicate"], "error: invalid option '--frobnicate'; see verify --help"),
        (&["--out"], "error: missing argument for option '--out'; see --help"),
        (
            &["--compression-level", "abc"],
            "error: --compression-level \"abc\": invalid digit found in string; give a whole number, e.g. \
             --compression-level 9",
        ),
        (&["--jobs", "0"], "error: --jobs 0: give at least 1, or leave --jobs out to use all cores"),
        (&["verify", "--jobs", "x", "c"], "error: --jobs \"x\": invalid digit found in string; give a whole number"),
        (&["--priority", "high"], "error: --priority \"high\": invalid digit found in string; give a whole number"),
        (&["--quiet", "--quiet"], "error: --quiet is given more than once; give it once"),
    ] {
        let err = run_fail(ours().args(args));
        assert!(first_line(&err).starts_with(&format!("make-binary-cache: {expected}")), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: the cause is said once: {err}");
    }
    let err = run_fail(ours().args(["--out", "x"]));
    assert!(first_line(&err).contains("nothing to put in the cache: name store paths"), "{err}");
    let err = run_fail(ours().args(["verify", "--public-key", "k:abc", "x"]));
    assert!(first_line(&err).starts_with("make-binary-cache: error: --public-key: "), "{err}");
    assert!(err.contains("the text of the PUB file that `nix-store --generate-binary-cache-key"), "{err}");
    let err = run_fail(ours().args(["verify", "--public-key-file", "/dev/null", "x"]));
    assert!(err.contains("/dev/null: ") && err.contains("the text of the PUB file"), "{err}");
    let err = run_fail(ours().args(["--out", "x", "y"]).env("NIX_STORE", "/nix/store/"));
    assert!(
        err.contains("NIX_STORE=\"/nix/store/\" is not a valid store directory") && err.contains("unset it"),
        "{err}"
    );
}

#[test]
fn errors_say_what_to_do() {
    let tmp = TempDir::new("cli-what-to-do");
    let garbage = tmp.join("garbage.json");
    fs::write(&garbage, "{not json").unwrap();
    let err = run_fail(ours().arg("--closure").arg(&garbage).arg("--out").arg(tmp.join("out")));
    assert!(err.contains("which must be what `nix path-info --json --recursive` prints"), "{err}");

    // Builder mode: attrs without an `out` output, a NIX_BUILD_CORES that is no number.
    let attrs = tmp.join("attrs.json");
    fs::write(&attrs, r#"{"closure": []}"#).unwrap();
    let err = run_fail(ours().env("NIX_ATTRS_JSON_FILE", &attrs));
    assert!(err.contains("`outputs.out` is missing: the derivation must have an `out` output"), "{err}");
    write_attrs(&attrs, "[]", &tmp.join("out"));
    let err = run_fail(ours().env("NIX_ATTRS_JSON_FILE", &attrs).env("NIX_BUILD_CORES", "many"));
    assert!(err.contains("NIX_BUILD_CORES must be a number (0 for all cores)"), "{err}");

    // sign and verify: not a cache, a key that is not one, a cache without StoreDir.
    let not_cache = tmp.join("not-a-cache");
    fs::create_dir(&not_cache).unwrap();
    let key = tmp.join("key");
    fs::write(&key, "not a key").unwrap();
    // (sign says the same: tests/sign.rs.)
    let err = run_fail(ours().arg("verify").arg(&not_cache));
    assert!(err.contains("it has no nix-cache-info; give the directory make-binary-cache"), "{err}");
    fs::write(not_cache.join("nix-cache-info"), "WantMassQuery: 1\n").unwrap();
    let err = run_fail(ours().arg("verify").arg(&not_cache));
    assert!(err.contains("no StoreDir") && err.contains("add the line `StoreDir: /nix/store`"), "{err}");
    let err = run_fail(ours().args(["sign", "--secret-key-file"]).arg(&key).arg(&not_cache));
    assert!(err.contains("nix-store --generate-binary-cache-key NAME KEY PUB"), "{err}");
}

#[test]
fn help_and_version() {
    let help = run_ok(ours().arg("--help"));
    assert!(help.contains("--closure FILE") && help.contains("nix path-info --json --recursive"), "{help}");
    // Every way in, every option, and the commands the tests above run.
    for needle in [
        "make-binary-cache --out DIR [OPTIONS] PATH...",
        "`--closure -` reads it from stdin",
        "-q, --quiet",
        "every 10 s a line for each path still being compressed",
        "make-binary-cache --out ./cache --compression xz ./result",
        "nix copy --no-require-sigs --from file://$PWD/cache",
        "nix-store --store /tmp/store --verify --check-contents",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }
    let options = ["--attrs", "--out", "--compression ", "--compression-level", "--jobs", "--max-memory", "--partial"];
    let more = ["--no-sync", "--priority", "--want-mass-query", "--write-nar-listing", "--index-debug-info"];
    for option in options.into_iter().chain(more) {
        assert!(help.lines().any(|l| l.trim_start().starts_with(option)), "--help does not describe {option}");
    }
    assert!(help.lines().all(|l| l.len() <= 80), "--help is wider than 80 columns");
    let version = run_ok(ours().arg("--version"));
    assert_eq!(version, format!("make-binary-cache {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn full_disk_is_an_error_and_leaves_no_dangling_narinfo() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-full-disk");
    let (_, closure) = path_info_file(&tmp);
    let out = tmp.join("tiny");
    fs::create_dir(&out).unwrap();
    // A file system too small for the closure's NARs (the largest is ~190 KiB).
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=128k", "tmpfs"]).arg(&out).status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipping: cannot mount a tmpfs here (not root?)");
        return;
    }
    let result = std::panic::catch_unwind(|| {
        let err =
            run_fail(ours().arg("--closure").arg(&closure).arg("--out").arg(&out).args(["--compression", "none"]));
        assert!(err.contains("No space left on device") && err.contains(&out.display().to_string()), "{err}");
        for name in list_dir(&out).into_iter().filter(|n| n.ends_with(".narinfo")) {
            let narinfo = fs::read_to_string(out.join(&name)).unwrap();
            let url = narinfo.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap();
            assert!(out.join(url).is_file(), "{name} points at the missing {url}");
        }
    });
    let _ = Command::new("umount").arg(&out).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A store path of 4 MiB that does not compress: a second or so of xz, long
/// enough for progress lines at the tests' interval of 10 ms.
fn big_path() -> String {
    run_ok(nix_cmd("nix-build").arg("--no-out-link").arg("-E").arg(
        r#"derivation {
             name = "mbc-e2e-big";
             system = builtins.currentSystem;
             builder = "/bin/sh";
             args = [ "-c" "head -c 4194304 /dev/urandom > $out" ];
             PATH = "/usr/bin:/bin";
           }"#,
    ))
}

const LOG_INTERVAL_ENV: &str = "MAKE_BINARY_CACHE_LOG_INTERVAL_MS";

#[test]
fn a_log_gets_a_line_while_a_long_path_is_compressed() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-progress-log");
    let big = big_path();
    let (ok, stdout, log) = run(ours()
        .arg("--out")
        .arg(tmp.join("cache"))
        .args(["--compression", "xz", "--jobs", "1"])
        .arg(&big)
        .env(LOG_INTERVAL_ENV, "10"));
    assert!(ok && stdout.is_empty(), "{log}");
    let line = log.lines().find(|l| l.starts_with(&format!("compressing {big}: "))).unwrap_or_else(|| panic!("{log}"));
    assert!(line.ends_with(" of 4.0 MiB"), "{line}");
    assert!(log.lines().any(|l| l.starts_with(&format!("copied {big} (NAR 4.0 MiB, file "))), "{log}");
    // One store path, one worker, and one unit on the line: MiB with MiB/s.
    assert!(log.lines().next().unwrap().contains(" writing 1 store path to ") && log.contains(", 1 worker, "), "{log}");
    let done = log.lines().last().unwrap();
    assert!(done.starts_with("make-binary-cache: done: 1 store path, 4.0 MiB of NAR in, "), "{log}");
    assert!(done.ends_with(" MiB/s)") && !done.contains("MB"), "{done}");
}

#[test]
fn quiet_prints_nothing_on_success() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-quiet");
    let (root, _) = path_info_file(&tmp);
    let (ok, stdout, stderr) =
        run(ours().arg("--quiet").arg("--out").arg(tmp.join("cache")).arg(&root).env(LOG_INTERVAL_ENV, "1"));
    assert!(ok, "{stderr}");
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""));
    // Errors still print.
    let err = run_fail(ours().arg("--quiet").arg("--out").arg(tmp.join("cache")).arg(tmp.join("nothing")));
    assert!(err.contains("nothing: no such file or directory"), "{err}");
}

#[test]
fn the_cache_is_the_same_whatever_the_progress_mode() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-progress-modes");
    let (root, _) = path_info_file(&tmp);
    let big = big_path();
    let args = |out: &Path| -> Vec<String> {
        ["--out", &out.display().to_string(), "--compression", "xz", "--jobs", "2", &root, &big]
            .map(String::from)
            .to_vec()
    };
    let (quiet, log, bar) = (tmp.join("quiet"), tmp.join("log"), tmp.join("bar"));
    run_ok(ours().arg("--quiet").args(args(&quiet)));
    run_ok(ours().args(args(&log)).env(LOG_INTERVAL_ENV, "10"));
    // On a terminal: `script` runs it on a pseudo-terminal.
    let command = std::iter::once(env!("CARGO_BIN_EXE_make-binary-cache").to_string())
        .chain(args(&bar))
        .collect::<Vec<_>>()
        .join(" ");
    let screen = run_ok(Command::new("script").args(["-qec", &command, "/dev/null"]).env_remove("NIX_BUILD_TOP"));
    assert!(screen.contains(" paths") && screen.contains("MiB/s"), "no progress bar on the terminal: {screen}");
    assert!(!screen.contains("copied /nix/store/"), "per-path lines under the bar: {screen}");
    let quiet_tree = tree(&quiet);
    assert!(quiet_tree == tree(&log), "the cache differs between --quiet and a log");
    assert!(quiet_tree == tree(&bar), "the cache differs between --quiet and a progress bar");
}

/// Regression: Nix runs a builder on a pseudo-terminal and copies what it
/// prints into the build log, so a progress bar there left one last frame
/// after `done:` and no line per store path. Builder mode logs lines even on
/// a terminal.
#[test]
fn a_build_log_gets_a_line_per_path_although_stderr_is_a_terminal() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cli-builder-on-a-pty");
    let (root, closure) = path_info_file(&tmp);
    let attrs = tmp.join("attrs.json");
    write_attrs(&attrs, &fs::read_to_string(closure).unwrap(), &tmp.join("cache"));
    let screen = run_ok(
        Command::new("script")
            .args(["-qec", env!("CARGO_BIN_EXE_make-binary-cache"), "/dev/null"])
            .env("NIX_ATTRS_JSON_FILE", &attrs)
            .env_remove("NIX_BUILD_TOP"),
    );
    assert!(screen.contains(&format!("copied {root} (NAR ")), "no line per store path: {screen}");
    // indicatif redraws its bar with escape sequences; log lines have none.
    assert!(!screen.contains('\x1b'), "a progress bar in the build log: {screen:?}");
}

/// A shell or tool the completion and manual tests run; .ci/run installs them.
fn tool(name: &str) -> Command {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    assert!(found.status.success(), "{name} is not installed: apt-get install zsh fish groff-base (see .ci/run)");
    Command::new(name)
}

#[test]
fn bash_completes_subcommands_flags_and_their_values() {
    let tmp = TempDir::new("complete-bash");
    let script = tmp.join("make-binary-cache.bash");
    fs::write(&script, run_ok(ours().args(["--generate", "complete-bash"]))).unwrap();
    // What bash offers after the words of each line, the cursor on the last.
    let cases = [
        ("make-binary-cache si", "sign"),
        ("make-binary-cache verify --public-key-f", "--public-key-file"),
        ("make-binary-cache --compression z", "zstd"),
        ("make-binary-cache merge --j", "--jobs"),
        ("make-binary-cache help ve", "verify"),
        ("make-binary-cache --wr", "--write-nar-listing"),
    ];
    for (line, expected) in cases {
        let out = tool("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({line}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _make_binary_cache; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let offered = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && offered.lines().any(|l| l == expected), "{line}: {offered:?} lacks {expected}");
    }
}

#[test]
fn fish_completes_subcommands_flags_and_their_values() {
    let tmp = TempDir::new("complete-fish");
    let script = tmp.join("make-binary-cache.fish");
    fs::write(&script, run_ok(ours().args(["--generate", "complete-fish"]))).unwrap();
    let cases = [
        ("make-binary-cache si", "sign"),
        ("make-binary-cache sign --sec", "--secret-key-file"),
        ("make-binary-cache --compression ", "xz"),
        ("make-binary-cache verify --req", "--require-sigs"),
    ];
    for (line, expected) in cases {
        let out = tool("fish")
            .arg("--no-config")
            .arg("-c")
            .arg(format!("source {}; complete -C '{line}'", script.display()))
            .output()
            .unwrap();
        let offered = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = offered.lines().map(|l| l.split('\t').next().unwrap()).collect();
        assert!(out.status.success() && words.contains(&expected), "{line}: {offered:?} lacks {expected}");
    }
    // Flags of one subcommand are not offered for another.
    let out = tool("fish")
        .arg("--no-config")
        .arg("-c")
        .arg(format!("source {}; complete -C 'make-binary-cache verify --'", script.display()))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("--secret-key-file"));
}

#[test]
fn zsh_completion_is_a_valid_script_naming_every_subcommand() {
    let tmp = TempDir::new("complete-zsh");
    let script = tmp.join("_make-binary-cache");
    let text = run_ok(ours().args(["--generate", "complete-zsh"]));
    assert!(text.starts_with("#compdef make-binary-cache"), "{text}");
    fs::write(&script, &text).unwrap();
    // Completion itself needs zsh's line editor; the syntax is what can be checked here.
    let out = tool("zsh").arg("-n").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for word in ["sign)", "verify)", "merge)", "--secret-key-file", "--public-key-file", "--reuse"] {
        assert!(text.contains(word), "zsh completion lacks {word}");
    }
}

#[test]
fn the_manual_page_renders_without_warnings() {
    let tmp = TempDir::new("man");
    let page = tmp.join("make-binary-cache.1");
    fs::write(&page, run_ok(ours().args(["--generate", "man"]))).unwrap();
    let out = tool("groff").args(["-man", "-Tutf8", "-ww", "-z"]).arg(&page).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tool("groff").args(["-man", "-Tascii", "-P-cbou"]).arg(&page).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in
        ["SYNOPSIS", "--secret-key-file", "--public-key-file", "--write-nar-listing", "MAKE-BINARY-CACHE MERGE"]
    {
        assert!(text.replace('\u{2010}', "-").contains(needle), "the manual lacks {needle}");
    }
    let err = run_fail(ours().args(["--generate", "pdf"]));
    assert!(err.contains("--generate \"pdf\": give man, complete-bash"), "{err}");
}
