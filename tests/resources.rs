//! The builder binary's guard rails, judged from outside: flags that would be
//! silently misread, bounded workers and memory, incomplete closures.

mod common;

use std::process::Command;

use common::{TempDir, run_fail};

fn ours() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_make-binary-cache"));
    cmd.env_remove("NIX_ATTRS_JSON_FILE").env_remove("NIX_BUILD_TOP").env_remove("NIX_STORE");
    cmd
}

#[test]
fn empty_out_and_repeated_flags_are_errors() {
    let tmp = TempDir::new("flags");
    let closure = tmp.join("closure.json");
    std::fs::write(&closure, "[]").unwrap();

    let err = run_fail(ours().current_dir(tmp.path()).arg("--closure").arg(&closure).args(["--out", ""]));
    assert!(err.contains("--out must not be empty"), "{err}");
    assert_eq!(common::list_dir(tmp.path()), ["closure.json"], "something was written into the current directory");

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
}
