//! End-to-end tests with real Nix: nix/ (mkBinaryCache and the package),
//! evaluated against tests/nixpkgs-stub, building caches of
//! tests/fixtures/closure.nix with the `make-binary-cache` binary that cargo
//! built for this test run, then reading them back with `nix copy` and
//! `nix-build --option substituters file://…`.
//!
//! Without `nix-build` on PATH every test fails, saying how to install Nix,
//! unless MAKE_BINARY_CACHE_SKIP_NIX_TESTS=1 (see `crate::common::skip_without_nix`).

use crate::common::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The NAR file suffix for a compression, as Nix names them.
fn nar_suffix(compression: &str) -> &'static str {
    match compression {
        "none" => ".nar",
        "xz" => ".nar.xz",
        "zstd" => ".nar.zst",
        other => panic!("unknown compression {other}"),
    }
}

// ---------------------------------------------------------------------------
// Fixture and stub, no builder needed.

#[test]
fn fixture_closure_has_every_kind_of_entry() {
    if skip_without_nix() {
        return;
    }
    let root = build_fixture("", "a");
    let b = build_fixture("", "b");
    let c = build_fixture("", "c");
    let tool = build_fixture("", "tool");
    let link = build_fixture("", "link");

    let mut expected = vec![root.clone(), b.clone(), c.clone(), tool.clone(), link.clone()];
    expected.sort();
    assert_eq!(closure_of(&root), expected);

    // The root refers to itself; b refers to c and tool.
    let refs = run_ok(nix_cmd("nix-store").args(["-q", "--references", &root]));
    assert!(refs.lines().any(|l| l == root), "no self-reference: {refs}");
    let refs_b = run_ok(nix_cmd("nix-store").args(["-q", "--references", &b]));
    assert!(refs_b.lines().any(|l| l == c), "b does not refer to c: {refs_b}");
    assert!(refs_b.lines().any(|l| l == tool), "b does not refer to tool: {refs_b}");

    let meta = |p: &str| fs::symlink_metadata(p).unwrap();
    assert!(meta(&c).is_file());
    assert_eq!(meta(&c).permissions().mode() & 0o111, 0);
    assert!(meta(&tool).is_file());
    assert_ne!(meta(&tool).permissions().mode() & 0o100, 0);
    assert!(meta(&link).file_type().is_symlink());
    let bp = Path::new(&b);
    assert!(meta(bp.join("dangling").to_str().unwrap()).file_type().is_symlink());
    assert!(!bp.join("dangling").exists());
    assert!(fs::read_dir(bp.join("empty")).unwrap().next().is_none());
    assert!(bp.join("share/deep/er/still/file").is_file());
    let names: Vec<Vec<u8>> =
        fs::read_dir(bp.join("share")).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    assert!(names.iter().any(|n| n == b"caf\xe9"), "no non-UTF-8 file name in {names:?}");
}

#[test]
fn stub_packages_a_prebuilt_binary() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("stub-pkg");
    let dummy = tmp.join("dummy-make-binary-cache");
    write_executable(&dummy, "#!/bin/sh\necho \"dummy builder $*\"\n").unwrap();

    let out = run_ok(&mut nix_build_expr(&dummy, "", "pkgs.callPackage (/. + root + \"/nix/package.nix\") { }"));
    let exe = Path::new(&out).join("bin/make-binary-cache");
    let ran = run_ok(std::process::Command::new(&exe).arg("hi"));
    assert_eq!(ran, "dummy builder hi");

    let version =
        run_ok(&mut nix_eval_expr(&dummy, "(pkgs.callPackage (/. + root + \"/nix/package.nix\") { }).version"));
    assert_eq!(version, format!("\"{}\"", env!("CARGO_PKG_VERSION")));
    let main = run_ok(&mut nix_eval_expr(
        &dummy,
        "(pkgs.callPackage (/. + root + \"/nix/package.nix\") { }).meta.mainProgram",
    ));
    assert_eq!(main, "\"make-binary-cache\"");
}

/// Issue 17, item 9: a store path given to `rootPaths` as a plain string
/// (no context) is taken as that store path, closure and all.
#[test]
fn root_paths_may_be_store_paths_as_strings() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("root-string");
    let root = build_fixture("", "a");
    let cache = run_ok(&mut nix_build_expr(
        &builder_bin(),
        "",
        &format!(r#"mkBinaryCache {{ rootPaths = [ "{root}" ]; name = "from-a-string"; }}"#),
    ));
    copy_closure_from(Path::new(&cache), &tmp.join("store"), &[&root]);
}

#[test]
fn cache_derivation_runs_the_builder_directly() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("drv");
    let dummy = tmp.join("dummy");
    write_executable(&dummy, "#!/bin/sh\nexit 1\n").unwrap();

    let checks = run_ok(&mut nix_eval_expr(
        &dummy,
        r#"let
  c = mkBinaryCache { rootPaths = [ fixture ]; };
  o = c.override { compression = "xz"; compressionLevel = 3; };
  d = c.override (old: { rootPaths = old.rootPaths ++ [ fixtures.c ]; });
in {
  builderIsOurs = builtins.match "/nix/store/[^/]+-make-binary-cache-[^/]+/bin/make-binary-cache" c.builder != null;
  noArgs = c.args == [ ];
  structured = c.__structuredAttrs;
  graph = c.exportReferencesGraph.closure == [ fixture ];
  defaults = c.compression == "zstd" && c.compressionLevel == null && c.name == "binary-cache";
  local = c.preferLocalBuild;
  overridden = o.compression == "xz" && o.compressionLevel == 3 && o.drvPath != c.drvPath;
  overrideFn = d.exportReferencesGraph.closure == [ fixture fixtures.c ];
  described = builtins.isString c.meta.description;
}"#,
    ));
    assert_eq!(
        checks,
        r#"{"builderIsOurs":true,"defaults":true,"described":true,"graph":true,"local":true,"noArgs":true,"overridden":true,"overrideFn":true,"structured":true}"#
    );

    // And in the .drv itself: the builder is our program, without a shell.
    let drv = run_ok(&mut {
        let mut cmd = nix_cmd("nix-instantiate");
        cmd.arg("-E").arg(with_prelude("mkBinaryCache { rootPaths = [ fixture ]; }"));
        prelude_args(&mut cmd, &dummy, "");
        cmd
    });
    let shown = run_ok(nix_cmd("nix").args(["show-derivation", &drv]));
    assert!(shown.contains("/bin/make-binary-cache\",") && !shown.contains("\"/bin/sh\""), "{shown}");
    assert!(shown.contains("\"__json\""), "not structured: {shown}");
}

/// The checks below, applied to caches that real Nix writes (`nix copy --to
/// file://…`), must pass: this keeps the test oracle honest. Nix 2.8 does not
/// create build-trace-v2/ and debuginfo/, so those are added by hand.
#[test]
fn checks_accept_caches_written_by_real_nix() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("reference");
    let root = build_fixture("", "a");
    for compression in ["none", "xz", "zstd"] {
        let cache = tmp.join(format!("cache-{compression}"));
        let cache = cache.to_str().unwrap();
        run_ok(nix_cmd("nix").args(["copy", "--to", &format!("file://{cache}?compression={compression}"), &root]));
        for dir in ["build-trace-v2", "debuginfo"] {
            fs::create_dir_all(Path::new(cache).join(dir)).unwrap();
        }
        check_cache(cache, &root, compression);
        let sub = TempDir::new(&format!("reference-{compression}"));
        copy_closure_from(Path::new(cache), &sub.join("store"), &[&root]);
        if compression == "zstd" {
            substitute_fixture(&[Path::new(cache)], &sub.join("store2"), &root);
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation errors.

fn eval_error(args: &str) -> String {
    let tmp = TempDir::new("eval-err");
    let dummy = tmp.join("dummy");
    write_executable(&dummy, "#!/bin/sh\nexit 1\n").unwrap();
    let mut cmd = nix_cmd("nix-instantiate");
    cmd.arg("-E").arg(with_prelude(&format!("mkBinaryCache {args}")));
    prelude_args(&mut cmd, &dummy, "");
    run_fail(&mut cmd)
}

#[test]
fn unknown_compression_is_an_evaluation_error() {
    if skip_without_nix() {
        return;
    }
    let err = eval_error(r#"{ rootPaths = [ fixture ]; compression = "gzip"; }"#);
    for word in ["compression", "\"none\"", "\"xz\"", "\"zstd\"", "gzip"] {
        assert!(err.contains(word), "{word} missing from: {err}");
    }
}

#[test]
fn wrong_argument_types_are_evaluation_errors() {
    if skip_without_nix() {
        return;
    }
    let err = eval_error(r#"{ rootPaths = "x"; }"#);
    assert!(err.contains("rootPaths"), "{err}");
    assert!(err.contains("list"), "{err}");

    let err = eval_error(r#"{ rootPaths = [ fixture ]; compressionLevel = "9"; }"#);
    assert!(err.contains("compressionLevel"), "{err}");

    let err = eval_error(r#"{ rootPaths = [ fixture ]; name = 3; }"#);
    assert!(err.contains("name must be a string"), "{err}");

    let err = eval_error(r#"{ rootPaths = [ fixture ]; compression = 3; }"#);
    assert!(err.contains("compression must be one of"), "{err}");

    let err = eval_error("{ rootPaths = [ 1 ]; }");
    assert!(err.contains("rootPaths"), "{err}");

    let err = eval_error("{ }");
    assert!(err.contains("rootPaths"), "{err}");

    let err = eval_error(r#"{ rootPaths = [ fixture ]; reuse = "x"; }"#);
    assert!(err.contains("reuse must be a list of earlier caches"), "{err}");
    let err = eval_error("{ rootPaths = [ fixture ]; reuse = [ 1 ]; }");
    assert!(err.contains("every element of reuse"), "{err}");
}

#[test]
fn max_memory_reaches_the_builder_and_bad_values_are_evaluation_errors() {
    if skip_without_nix() {
        return;
    }
    for bad in [r#""lots""#, "-1", "0", "1.5", r#""1 G""#, "[ ]"] {
        let err = eval_error(&format!("{{ rootPaths = [ fixture ]; maxMemory = {bad}; }}"));
        assert!(err.contains("maxMemory must be null, a positive integer of bytes or a size"), "{bad}: {err}");
    }
    for (given, logged) in [(r#""64M""#, "64.0 MiB"), ("100000000", "95.4 MiB")] {
        let body = format!("mkBinaryCache {{ rootPaths = [ fixture ]; maxMemory = {given}; }}");
        let (ok, _, log) = run(&mut nix_build_expr(&builder_bin(), &unique("max-memory"), &body));
        assert!(ok && log.contains(&format!("memory budget {logged} (as given)")), "{given}: {log}");
    }
}

#[test]
fn top_level_default_nix_evaluates_with_given_pkgs() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("toplevel");
    let dummy = tmp.join("dummy");
    write_executable(&dummy, "#!/bin/sh\nexit 1\n").unwrap();
    let expr = r#"{ root, bin }:
let
  pkgs = import (/. + root + "/tests/nixpkgs-stub") { makeBinaryCacheBin = bin; };
  top = import (/. + root + "/default.nix") { inherit pkgs; };
  fixture = import (/. + root + "/tests/fixtures/closure.nix") { };
in
(top.mkBinaryCache { rootPaths = [ fixture top.make-binary-cache ]; compression = "none"; })"#;
    let drv = run_ok(
        nix_cmd("nix-instantiate")
            .arg("-E")
            .arg(expr)
            .arg("--argstr")
            .arg("root")
            .arg(repo_root())
            .arg("--argstr")
            .arg("bin")
            .arg(&dummy),
    );
    assert!(drv.starts_with("/nix/store/") && drv.ends_with("-binary-cache.drv"), "{drv}");
}

// ---------------------------------------------------------------------------
// Building caches with the real builder.

/// Build a cache with `body` (a [`with_prelude`] expression), returning the
/// cache's store path.
fn build_cache(nonce: &str, body: &str) -> String {
    run_ok(&mut nix_build_expr(&builder_bin(), nonce, body))
}

/// Everything we can check about a cache directory holding `root`'s closure.
fn check_cache(cache: &str, root: &str, compression: &str) {
    let cache = Path::new(cache);
    let closure = closure_of(root);

    // Layout.
    let info = fs::read_to_string(cache.join("nix-cache-info")).unwrap();
    assert!(info.lines().any(|l| l == "StoreDir: /nix/store"), "nix-cache-info: {info:?}");
    for dir in ["nar", "realisations", "build-trace-v2", "log", "debuginfo"] {
        assert!(cache.join(dir).is_dir(), "{dir}/ missing in {}", cache.display());
    }

    // One narinfo per path of the closure, nothing else.
    let narinfos: BTreeSet<String> = list_dir(cache).into_iter().filter(|n| n.ends_with(".narinfo")).collect();
    let expected: BTreeSet<String> = closure.iter().map(|p| format!("{}.narinfo", hash_part(p))).collect();
    assert_eq!(narinfos, expected);

    let mut urls = BTreeSet::new();
    let mut nar_files = Vec::new();
    let mut file_hashes = Vec::new();
    for path in &closure {
        let file = cache.join(format!("{}.narinfo", hash_part(path)));
        let text = fs::read_to_string(&file).unwrap();
        let ni = parse_narinfo(&text);

        assert_eq!(field(&ni, "StorePath"), path, "{text}");
        assert_eq!(field(&ni, "Compression"), compression, "{text}");

        // NarHash, NarSize and References as the store has them.
        let nar_hash = run_ok(nix_cmd("nix-store").args(["-q", "--hash", path]));
        assert_eq!(field(&ni, "NarHash"), nar_hash, "{text}");
        let nar_size = run_ok(nix_cmd("nix-store").args(["-q", "--size", path]));
        assert_eq!(field(&ni, "NarSize"), nar_size, "{text}");
        let mut refs: Vec<String> = run_ok(nix_cmd("nix-store").args(["-q", "--references", path]))
            .lines()
            .map(|r| base_name(r).to_string())
            .collect();
        refs.sort();
        assert_eq!(field(&ni, "References"), refs.join(" "), "{text}");

        // URL named after the FileHash, with the compression's suffix.
        let file_hash = field(&ni, "FileHash");
        let hash32 = file_hash.strip_prefix("sha256:").unwrap_or_else(|| panic!("FileHash not sha256:…: {text}"));
        let url = field(&ni, "URL");
        assert_eq!(url, format!("nar/{hash32}{}", nar_suffix(compression)), "{text}");
        urls.insert(url.trim_start_matches("nar/").to_string());

        let nar = cache.join(url);
        let size = fs::metadata(&nar).unwrap_or_else(|e| panic!("{}: {e}", nar.display())).len();
        assert_eq!(field(&ni, "FileSize"), size.to_string(), "{text}");
        file_hashes.push(hash32.to_string());

        // Uncompressed NARs are exactly what Nix serialises.
        if compression == "none" {
            let dump = std::process::Command::new("nix-store").args(["--dump", path]).output().unwrap();
            assert!(dump.status.success());
            assert!(fs::read(&nar).unwrap() == dump.stdout, "NAR of {path} differs from nix-store --dump");
        }
        nar_files.push(nar);
    }
    // FileHash is what Nix never checks: the sha256 of the file.
    assert_eq!(flat_hashes(&nar_files), file_hashes, "FileHash mismatch");
    // No stray NAR files.
    let in_nar: BTreeSet<String> = list_dir(&cache.join("nar")).into_iter().collect();
    assert_eq!(in_nar, urls);
}

/// The cache is a store path, read-only for everyone but root: Nix must have
/// found every directory it wants (it creates missing ones when it opens a
/// `file://` cache, which as root would silently modify the store path).
fn assert_cache_untouched(cache: &str) {
    run_ok(nix_cmd("nix-store").args(["--verify-path", cache]));
}

#[test]
fn cache_without_compression() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("none");
    let root = build_fixture("", "a");
    let cache = build_cache("", r#"mkBinaryCache { rootPaths = [ fixture ]; compression = "none"; }"#);
    check_cache(&cache, &root, "none");
    copy_closure_from(Path::new(&cache), &tmp.join("store"), &[&root]);
    assert_cache_untouched(&cache);
}

#[test]
fn cache_with_xz_via_override() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("xz");
    let root = build_fixture("", "a");
    let cache = build_cache(
        "",
        r#"(mkBinaryCache { rootPaths = [ fixture ]; compression = "none"; }).override {
             compression = "xz";
             compressionLevel = 1;
           }"#,
    );
    check_cache(&cache, &root, "xz");
    copy_closure_from(Path::new(&cache), &tmp.join("store"), &[&root]);
    assert_cache_untouched(&cache);
}

#[test]
fn cache_with_zstd_default_and_substitution() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("zstd");
    let root = build_fixture("", "a");
    let cache = build_cache("", "mkBinaryCache { rootPaths = [ fixture ]; }");
    check_cache(&cache, &root, "zstd");
    copy_closure_from(Path::new(&cache), &tmp.join("store"), &[&root]);
    substitute_fixture(&[Path::new(&cache)], &tmp.join("store2"), &root);
    assert_cache_untouched(&cache);
}

#[test]
fn cache_of_several_roots_sharing_paths() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("roots");
    let root = build_fixture("", "a");
    // b and c are also in a's closure: each path must appear once.
    let cache = build_cache(
        "",
        r#"mkBinaryCache {
             name = "two-roots";
             rootPaths = [ fixtures.b fixture fixtures.c ];
             compression = "zstd";
             compressionLevel = 19;
           }"#,
    );
    assert!(cache.ends_with("-two-roots"), "{cache}");
    check_cache(&cache, &root, "zstd");
    copy_closure_from(Path::new(&cache), &tmp.join("store"), &[&root]);
    assert_cache_untouched(&cache);
}

#[test]
fn reuse_copies_an_earlier_caches_nars_and_nix_substitutes_from_the_result() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("reuse");
    let root = build_fixture("", "a");
    // The fixture stays; one extra path changes from the previous cache to
    // this one (a new nonce each run, so that the build runs and logs).
    let nonce = unique("reuse");
    let expr = |reuse: &str| {
        format!(
            r#"let
  stable = import (/. + root + "/tests/fixtures/closure.nix") {{ }};
  changing = n: (import (/. + root + "/tests/fixtures/closure.nix") {{ nonce = n; }}).c;
  previous = mkBinaryCache {{ name = "previous"; rootPaths = [ stable.a (changing "reuse-previous") ]; compression = "xz"; }};
in
mkBinaryCache {{ rootPaths = [ stable.a (changing nonce) ]; compression = "xz"; {reuse} }}"#
        )
    };
    let (ok, cache, log) = run(&mut nix_build_expr(&builder_bin(), &nonce, &expr("reuse = [ previous ];")));
    assert!(ok, "{log}");
    assert!(log.contains("6 store paths (5 NARs reused, 1 compressed)"), "{log}");
    let cache = cache.trim();
    let fresh = build_cache(&nonce, &expr(""));
    assert_ne!(cache, fresh);
    assert!(tree(Path::new(cache)) == tree(Path::new(&fresh)), "the reused cache differs from the fresh one");
    copy_closure_from(Path::new(cache), &tmp.join("store"), &[&root]);
    substitute_fixture(&[Path::new(cache)], &tmp.join("store2"), &root);
    assert_cache_untouched(cache);
}

#[test]
fn corrupted_store_path_fails_the_build() {
    if skip_without_nix() {
        return;
    }
    let nonce = unique("corrupt");
    let root = build_fixture(&nonce, "a");
    let victim = build_fixture(&nonce, "c");
    let fresh = closure_of(&root);

    // Our own throwaway path: append a byte behind Nix's back.
    let mut perms = fs::metadata(&victim).unwrap().permissions();
    let original_mode = perms.mode();
    perms.set_mode(original_mode | 0o200);
    fs::set_permissions(&victim, perms.clone()).unwrap();
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&victim).unwrap();
        f.write_all(b"!").unwrap();
    }
    perms.set_mode(original_mode);
    fs::set_permissions(&victim, perms).unwrap();

    let mut cmd =
        nix_build_expr(&builder_bin(), &nonce, r#"mkBinaryCache { rootPaths = [ fixture ]; compression = "none"; }"#);
    let (ok, stdout, stderr) = run(&mut cmd);

    // Whatever happened, get rid of the corrupted paths.
    let _ = run(nix_cmd("nix-store").arg("--delete").args(&fresh));

    assert!(!ok, "building a cache of a corrupted path succeeded: {stdout}\n{stderr}");
    assert!(stderr.contains(&victim), "the error does not name the corrupted path {victim}:\n{stderr}");
}
