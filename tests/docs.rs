//! The commands README.md, CONTRIBUTING.md and doc/ tell people to type,
//! run as typed.
//!
//! Every ```console and ```shellSession block is run by bash, block by block
//! in the order of its file, in a fresh copy of the repository (its tracked
//! and new files, as a clone with the changes at hand would have), inside a
//! private mount namespace whose /tmp is an empty tmpfs (the blocks write
//! /tmp/store and the like), with HOME and cargo's install root in that
//! /tmp, so nothing of the user's is touched but the Nix store, which the
//! commands are about. The copy lives in /var/tmp; the repository's
//! target/docs is bind-mounted as its target/, so the dependencies are
//! built once. `$ ` lines are commands (a line ending in `\`
//! continues); the other lines are output, and each one without `…` must
//! be among what the block printed. A block right after
//! `<!-- not run: REASON -->` is not run; the test lists it with its reason.
//!
//! Afterwards every store path in the closure of the GC roots the blocks
//! left (./result and the like) is checked with `nix-store --verify-path`,
//! its contents against the NarHash Nix recorded: a command that damages the
//! store (as `nix copy --from file://$PWD/result` once did, with `result`
//! pointing at a store path) fails here. Not the whole store: a developer's
//! holds gigabytes of benchmark corpora the blocks never touch.

use crate::common::*;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The documents whose blocks are run, in this order.
const DOCUMENTS: &[&str] = &[
    "README.md",
    "CONTRIBUTING.md",
    "doc/mkBinaryCache.section.md",
    "doc/guarantees.md",
    "doc/performance.md",
    "doc/ls-diff-gc.md",
    "doc/nix-versions.md",
    "doc/architecture.md",
    "doc/testing.md",
];

#[derive(Debug)]
struct Block {
    /// `README.md:35`, for messages.
    at: String,
    script: String,
    /// Output lines the block must print.
    expected: Vec<String>,
    /// Why it is not run, if it is not.
    not_run: Option<String>,
}

/// The console blocks of a Markdown text.
fn blocks(name: &str, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        let indent = lines[i].len() - fence.len();
        if !matches!(fence, "```console" | "```shellSession") {
            i += 1;
            continue;
        }
        let not_run = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| l.trim().strip_prefix("<!-- not run: ")?.strip_suffix(" -->"))
            .map(str::to_owned);
        let at = format!("{name}:{}", i + 1);
        let (mut script, mut expected, mut continued) = (String::new(), Vec::new(), false);
        i += 1;
        while i < lines.len() && lines[i].trim_start() != "```" {
            let line = lines[i].get(indent..).unwrap_or(lines[i].trim_start());
            if continued || line.starts_with("$ ") {
                let command = if continued { line } else { &line[2..] };
                script += command;
                script += "\n";
                continued = command.trim_end().ends_with('\\');
            } else if !line.trim().is_empty() && !line.contains('…') {
                expected.push(line.trim_end().to_owned());
            }
            i += 1;
        }
        assert!(!script.is_empty(), "{at}: a console block without a `$ ` command");
        found.push(Block { at, script, expected, not_run });
        i += 1;
    }
    found
}

#[test]
fn blocks_are_read_as_commands_and_output() {
    let text = "x\n<!-- not run: needs nixpkgs -->\n```console\n$ a \\\n    b\nout…\n\n   out\n```\n\n   ```console\n   $ c\n   d\n   ```\n";
    let found = blocks("X.md", text);
    assert_eq!(found.len(), 2);
    assert_eq!((found[0].at.as_str(), found[0].script.as_str()), ("X.md:3", "a \\\n    b\n"));
    assert_eq!(found[0].expected, ["   out"]);
    assert_eq!(found[0].not_run.as_deref(), Some("needs nixpkgs"));
    assert_eq!(
        (found[1].script.as_str(), found[1].expected.clone(), found[1].not_run.is_none()),
        ("c\n", vec!["d".to_owned()], true)
    );
}

/// The repository's tracked and untracked (not ignored) files, copied to `dst`.
fn checkout(dst: &Path) {
    let root = repo_root();
    let listed = run_ok(Command::new("git").arg("-C").arg(&root).args(["ls-files", "-co", "--exclude-standard"]));
    for name in listed.lines() {
        let (from, to) = (root.join(name), dst.join(name));
        let Ok(meta) = fs::symlink_metadata(&from) else { continue }; // deleted, not yet committed
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        if meta.file_type().is_symlink() {
            symlink(fs::read_link(&from).unwrap(), &to).unwrap();
        } else {
            fs::copy(&from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        }
    }
}

#[test]
fn the_documented_commands_run_as_typed() {
    if skip_without_nix() {
        return;
    }
    let root = repo_root();
    let mut all = Vec::new();
    for name in DOCUMENTS {
        all.extend(blocks(name, &fs::read_to_string(root.join(name)).unwrap()));
    }
    for name in fs::read_dir(root.join("doc")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()) {
        assert!(DOCUMENTS.contains(&format!("doc/{name}").as_str()), "doc/{name} is not in DOCUMENTS");
    }
    let (skipped, run): (Vec<&Block>, Vec<&Block>) = all.iter().partition(|b| b.not_run.is_some());
    for block in &skipped {
        eprintln!("not run: {} ({})", block.at, block.not_run.as_deref().unwrap());
    }
    assert!(run.len() >= 10, "only {} blocks to run: {run:?}", run.len());

    // Outside /tmp, which the namespace replaces (the repository itself may
    // be under /tmp: its target/ is bind-mounted in before /tmp is hidden).
    let work = PathBuf::from("/var/tmp").join(format!("mbc-docs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let (repo, out) = (work.join("repo"), work.join("out"));
    checkout(&repo);
    fs::create_dir_all(&out).unwrap();
    // The checkout builds into target/docs of the repository, kept between
    // runs: the dependencies are built once. Not target/ itself, whose
    // release binary (the benchmark's) a build of the copy would replace.
    let target = root.join("target/docs");
    fs::create_dir_all(repo.join("target")).unwrap();
    fs::create_dir_all(&target).unwrap();
    for (n, block) in run.iter().enumerate() {
        fs::write(out.join(format!("{n:03}.sh")), &block.script).unwrap();
    }
    let real_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{real_home}/.cargo"));
    let rustup_home = std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{real_home}/.rustup"));
    let driver = r#"
set -eu
mount --bind "$3" "$1/target"
mount -t tmpfs tmpfs /tmp
mkdir -p /tmp/home /tmp/cargo-root/bin
export HOME=/tmp/home CARGO_INSTALL_ROOT=/tmp/cargo-root PATH="/tmp/cargo-root/bin:$PATH"
cd "$1"
set +e
for script in "$2"/*.sh; do
    bash -e "$script" > "${script%.sh}.out" 2> "${script%.sh}.err"
    status=$?
    echo "$status" > "${script%.sh}.status"
    [ "$status" = 0 ] || exit 0
done
"#;
    let driver_file = work.join("driver.sh");
    fs::write(&driver_file, driver).unwrap();
    fs::set_permissions(&driver_file, fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh"])
        .arg(&driver_file)
        .arg(&repo)
        .arg(&out)
        .arg(&target)
        .env("CARGO_HOME", cargo_home)
        .env("RUSTUP_HOME", rustup_home)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("NIX_STORE");
    run_ok(&mut command);

    for (n, block) in run.iter().enumerate() {
        let read = |ext: &str| fs::read_to_string(out.join(format!("{n:03}.{ext}"))).unwrap_or_default();
        let status = read("status");
        assert_eq!(
            status.trim(),
            "0",
            "{} failed (exit status {:?}):\n{}\n--- stdout:\n{}\n--- stderr:\n{}",
            block.at,
            status.trim(),
            block.script,
            read("out"),
            read("err")
        );
        let printed = read("out");
        for line in &block.expected {
            assert!(printed.lines().any(|l| l.trim() == line.trim()), "{}: {line:?} not printed:\n{printed}", block.at);
        }
    }

    // Nothing the commands did damaged the store paths they left roots to.
    let roots: Vec<PathBuf> = fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| fs::read_link(p).is_ok_and(|t| t.starts_with("/nix/store")))
        .collect();
    assert!(roots.len() >= 3, "expected ./result and others: {roots:?}");
    let closure = run_ok(Command::new("nix-store").arg("-qR").args(&roots));
    let paths: Vec<&str> = closure.lines().collect();
    run_ok(Command::new("nix-store").arg("--verify-path").args(&paths));
    fs::remove_dir_all(&work).unwrap();
}
