//! The optional files of a cache, judged by real Nix: `nix-cache-info`'s
//! `Priority` and `WantMassQuery`, the NAR listings (`<hash>.ls`) and the
//! debug info index (`debuginfo/`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{
    TempDir, build_fixture, closure_of, nix_cmd, ours, path_info_file, run_fail, run_ok, skip_without_nix,
    substitute_fixture,
};

#[test]
fn priority_and_want_mass_query_are_written_and_nix_uses_the_priority() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cache-info");
    let (root, closure) = path_info_file(&tmp);
    let late = tmp.join("late");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&late).args([
        "--priority",
        "90",
        "--want-mass-query",
    ]));
    // As NIX-FORMATS.md documents what Nix reads, in the order caches serve it.
    assert_eq!(
        fs::read_to_string(late.join("nix-cache-info")).unwrap(),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 90\n"
    );
    let plain = tmp.join("plain");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&plain));
    assert_eq!(fs::read_to_string(plain.join("nix-cache-info")).unwrap(), "StoreDir: /nix/store\n");

    // Nix 2.8 orders substituters by priority, lower first (a store without
    // one has 0): the late cache, though listed first, is asked last, and
    // every path comes from the plain one. Listed alone, it still serves.
    let log = substitute_fixture(&[&late, &plain], &tmp.join("store"), &root);
    for path in closure_of(&root) {
        let from = format!("copying path '{path}' from 'file://{}'", plain.display());
        assert!(log.contains(&from), "{from} missing from:\n{log}");
    }
    let log = substitute_fixture(&[&late], &tmp.join("store2"), &root);
    for path in closure_of(&root) {
        let from = format!("copying path '{path}' from 'file://{}'", late.display());
        assert!(log.contains(&from), "{from} missing from:\n{log}");
    }
}

#[test]
fn an_existing_cache_with_other_settings_is_an_error_and_left_alone() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cache-info-clash");
    let (_, closure) = path_info_file(&tmp);
    let cache = tmp.join("cache");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache).args(["--priority", "30"]));
    let before = fs::read_dir(&cache).unwrap().count();
    let err = run_fail(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache).args(["--priority", "31"]));
    assert!(err.contains("Priority: 30") && err.contains("Priority: 31") && err.contains("nix-cache-info"), "{err}");
    let err = run_fail(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache).arg("--want-mass-query"));
    assert!(err.contains("WantMassQuery"), "{err}");
    assert_eq!(fs::read_to_string(cache.join("nix-cache-info")).unwrap(), "StoreDir: /nix/store\nPriority: 30\n");
    assert_eq!(fs::read_dir(&cache).unwrap().count(), before);
    // The same setting, or none: added to.
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache).args(["--priority", "30"]));
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache));

    let err = run_fail(ours().arg("--closure").arg(&closure).arg("--out").arg(tmp.join("x")).args(["--priority", "x"]));
    assert!(err.contains("--priority"), "{err}");
}

#[test]
fn mk_binary_cache_passes_priority_and_want_mass_query() {
    if skip_without_nix() {
        return;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_make-binary-cache"));
    let nonce = crate::common::unique("cache-info-nix");
    let body =
        r#"mkBinaryCache { rootPaths = [ fixture ]; compression = "none"; priority = 20; wantMassQuery = true; }"#;
    let out = run_ok(&mut crate::common::nix_build_expr(&bin, &nonce, body));
    assert_eq!(
        fs::read_to_string(Path::new(&out).join("nix-cache-info")).unwrap(),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 20\n"
    );
    for (bad, msg) in [
        (r#"priority = "20";"#, "priority must be null or an integer"),
        ("wantMassQuery = 1;", "wantMassQuery must be null or a bool"),
        ("writeNarListing = null;", "writeNarListing must be a bool"),
        (r#"indexDebugInfo = "yes";"#, "indexDebugInfo must be a bool"),
    ] {
        let mut cmd = nix_cmd("nix-instantiate");
        cmd.arg("-E").arg(crate::common::with_prelude(&format!("mkBinaryCache {{ rootPaths = [ fixture ]; {bad} }}")));
        crate::common::prelude_args(&mut cmd, &bin, "");
        let err = run_fail(&mut cmd);
        assert!(err.contains(msg), "{bad}: {err}");
    }
}

const BUILD_ID: &str = "abcdef0123456789abcdef0123456789abcdef01";

/// A store path (added with `nix-store --add`) holding a debug info file
/// under `lib/debug/.build-id`, a look-alike that is not one, and names
/// that need escaping in JSON.
fn debug_path(tmp: &TempDir) -> String {
    let dir = tmp.join("mbc-optional-debug");
    let ids = dir.join("lib/debug/.build-id/ab");
    fs::create_dir_all(&ids).unwrap();
    fs::write(ids.join(format!("{}.debug", &BUILD_ID[2..])), "ELF?").unwrap();
    fs::write(ids.join("not-a-build-id.debug"), "no").unwrap();
    fs::write(dir.join("q\"u\\o\te\nx\u{1}"), "odd name").unwrap();
    std::os::unix::fs::symlink("lib/\"debug\"", dir.join("link")).unwrap();
    run_ok(nix_cmd("nix-store").arg("--add").arg(&dir))
}

/// Every file under `dir` whose name ends in `suffix`, with its contents.
fn files(dir: &Path, suffix: &str) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap()))
        .collect();
    found.sort();
    found
}

#[test]
fn listings_and_debug_info_are_what_nix_copy_writes() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("listing");
    let root = build_fixture("", "a");
    let debug = debug_path(&tmp);
    let json = run_ok(nix_cmd("nix").args(["path-info", "--json", "--recursive"]).arg(&root).arg(&debug));
    let closure = tmp.join("closure.json");
    fs::write(&closure, json).unwrap();

    let ours_dir = tmp.join("ours");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&ours_dir).args([
        "--compression",
        "none",
        "--write-nar-listing",
        "--index-debug-info",
    ]));
    let nix_dir = tmp.join("nix");
    run_ok(
        nix_cmd("nix")
            .args(["copy", "--to"])
            .arg(format!("file://{}?compression=none&write-nar-listing=true&index-debug-info=true", nix_dir.display()))
            .arg(&root)
            .arg(&debug),
    );
    // Byte for byte: Nix 2.8's listing has a fixed key order.
    let listings = files(&nix_dir, ".ls");
    assert_eq!(listings.len(), closure_of(&root).len() + 1);
    assert_eq!(files(&ours_dir, ".ls"), listings);
    let index = files(&nix_dir.join("debuginfo"), "");
    assert_eq!(index.len(), 1, "{index:?}");
    assert_eq!(index[0].0, format!("{BUILD_ID}.debug"));
    assert_eq!(files(&ours_dir.join("debuginfo"), ""), index);

    // `nix store ls` works on our cache as on Nix's. (Nix 2.8 reads `.ls`
    // only from its local-nar-cache, not from the cache: it fetches the NAR,
    // so this shows the cache is browsable, not that the listing is read.)
    for path in [&root, &debug] {
        let ls = |dir: &Path| {
            run_ok(
                nix_cmd("nix")
                    .args(["--extra-experimental-features", "nix-command", "store", "ls", "-R", "-l"])
                    .arg("--store")
                    .arg(format!("file://{}", dir.display()))
                    .arg(path),
            )
        };
        let theirs = ls(&nix_dir);
        assert!(!theirs.is_empty());
        assert_eq!(ls(&ours_dir), theirs, "{path}");
    }

    // `verify` checks the listings against the NARs: Nix's and ours pass, a
    // listing with a wrong offset does not.
    run_ok(ours().arg("verify").arg(&nix_dir));
    run_ok(ours().arg("verify").arg(&ours_dir));
    let (name, text) = &files(&ours_dir, ".ls")[0];
    let text = String::from_utf8_lossy(text).into_owned();
    let wrong = text.replacen("\"narOffset\":", "\"narOffset\":1", 1);
    let wrong = if wrong == text { text.replacen("\"target\":\"", "\"target\":\"x", 1) } else { wrong };
    assert_ne!(wrong, text);
    fs::write(ours_dir.join(name), wrong).unwrap();
    let err = run_fail(ours().arg("verify").arg(&ours_dir));
    assert!(err.contains(&format!("{name} does not list the NAR")), "{err}");
    fs::write(ours_dir.join(name), &text).unwrap();

    // An existing debug info entry is kept, as Nix keeps it.
    let entry = ours_dir.join("debuginfo").join(&index[0].0);
    fs::write(&entry, "theirs").unwrap();
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&ours_dir).args([
        "--compression",
        "none",
        "--index-debug-info",
    ]));
    assert_eq!(fs::read_to_string(&entry).unwrap(), "theirs");
}
