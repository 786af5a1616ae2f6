//! What the tests do on a machine without Nix: fail, saying how to install
//! it, unless MAKE_BINARY_CACHE_SKIP_NIX_TESTS=1, and then say they skip in
//! the normal output. Shown by running this test binary again, for the one
//! test below that needs Nix, with a PATH where there is none.

use crate::common::*;
use std::process::Command;

/// A test that needs Nix, as every end-to-end test starts.
#[test]
fn needs_nix() {
    if skip_without_nix() {
        return;
    }
    run_ok(nix_cmd("nix-store").arg("--version"));
}

/// This binary, running only [`needs_nix`], with an empty directory as PATH.
fn needs_nix_without_nix_on_path(tmp: &TempDir) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "without_nix::needs_nix", "--test-threads", "1"])
        .env("PATH", tmp.path())
        .env_remove(SKIP_NIX_TESTS_VAR)
        .env_remove("RUST_BACKTRACE");
    cmd
}

#[test]
fn without_nix_the_tests_fail_saying_how_to_install_it() {
    let tmp = TempDir::new("no-nix");
    let (ok, stdout, stderr) = run(&mut needs_nix_without_nix_on_path(&tmp));
    assert!(!ok, "passed without Nix:\n{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("apt-get install nix-bin") && all.contains("MAKE_BINARY_CACHE_SKIP_NIX_TESTS=1"), "{all}");

    // Any value but 1 does not skip.
    let (ok, _, _) = run(needs_nix_without_nix_on_path(&tmp).env(SKIP_NIX_TESTS_VAR, "yes"));
    assert!(!ok, "{SKIP_NIX_TESTS_VAR}=yes skipped");
}

#[test]
fn with_the_opt_out_they_skip_visibly() {
    let tmp = TempDir::new("no-nix-skip");
    let (ok, stdout, stderr) = run(needs_nix_without_nix_on_path(&tmp).env(SKIP_NIX_TESTS_VAR, "1"));
    assert!(ok, "{stdout}\n{stderr}");
    // Without --nocapture: the harness would hide an eprintln!.
    assert!(stderr.contains("SKIPPED without_nix::needs_nix: nix-build not on PATH"), "{stdout}\n{stderr}");
}
