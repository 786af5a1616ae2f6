//! The optional files of a cache, judged by real Nix: `nix-cache-info`'s
//! `Priority` and `WantMassQuery`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TempDir, build_fixture, closure_of, nix_cmd, repo_root, run, run_fail, run_ok, skip_without_nix};

fn ours() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_make-binary-cache"));
    cmd.env_remove("NIX_ATTRS_JSON_FILE").env_remove("NIX_BUILD_TOP").env_remove("NIX_STORE");
    cmd
}

/// `nix path-info --json --recursive` of the fixture closure, written to a file.
fn path_info_file(tmp: &TempDir) -> (String, PathBuf) {
    let root = build_fixture("", "a");
    let json = run_ok(nix_cmd("nix").args(["path-info", "--json", "--recursive"]).arg(&root));
    let file = tmp.join("closure.json");
    fs::write(&file, json).unwrap();
    (root, file)
}

/// Substitutes the fixture closure into a fresh store from `substituters`
/// (in that order) and returns Nix's log, which names the cache each path
/// came from.
fn substitute(substituters: &[&Path], store: &Path) -> String {
    let list: Vec<String> = substituters.iter().map(|d| format!("file://{}", d.display())).collect();
    let (ok, _, stderr) = run(nix_cmd("nix-build")
        .arg(repo_root().join("tests/fixtures/closure.nix"))
        .args(["-A", "a", "--no-out-link", "--max-jobs", "0", "-v"])
        .arg("--store")
        .arg(store)
        .args(["--option", "substituters", &list.join(" ")])
        .args(["--option", "require-sigs", "false"]));
    assert!(ok, "substitution failed:\n{stderr}");
    stderr
}

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
    let log = substitute(&[&late, &plain], &tmp.join("store"));
    for path in closure_of(&root) {
        let from = format!("copying path '{path}' from 'file://{}'", plain.display());
        assert!(log.contains(&from), "{from} missing from:\n{log}");
    }
    let log = substitute(&[&late], &tmp.join("store2"));
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
    let nonce = common::unique("cache-info-nix");
    let body =
        r#"mkBinaryCache { rootPaths = [ fixture ]; compression = "none"; priority = 20; wantMassQuery = true; }"#;
    let out = run_ok(&mut common::nix_build_expr(&bin, &nonce, body));
    assert_eq!(
        fs::read_to_string(Path::new(&out).join("nix-cache-info")).unwrap(),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 20\n"
    );
    for (bad, msg) in [
        (r#"priority = "20";"#, "priority must be null or an integer"),
        ("wantMassQuery = 1;", "wantMassQuery must be null or a bool"),
    ] {
        let mut cmd = nix_cmd("nix-instantiate");
        cmd.arg("-E").arg(common::with_prelude(&format!("mkBinaryCache {{ rootPaths = [ fixture ]; {bad} }}")));
        common::prelude_args(&mut cmd, &bin, "");
        let err = run_fail(&mut cmd);
        assert!(err.contains(msg), "{bad}: {err}");
    }
}
