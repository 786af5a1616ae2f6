//! The Nix packaging around the program, built with real Nix against the
//! stand-in for nixpkgs (tests/nixpkgs-stub): `passthru.tests` of nix/
//! (nix/tests.nix), the flake at the repository root, the example in
//! examples/, and the manual page's list of arguments.
//!
//! Without `nix-build` on PATH every test fails, saying how to install Nix,
//! unless MAKE_BINARY_CACHE_SKIP_NIX_TESTS=1 (see `crate::common::skip_without_nix`).

use crate::common::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

/// `nix` with flakes enabled, which Nix 2.8 still calls experimental.
fn nix_flakes() -> Command {
    let mut cmd = nix_cmd("nix");
    cmd.args(["--extra-experimental-features", "nix-command flakes"]);
    cmd
}

// ---------------------------------------------------------------------------
// passthru.tests (nix/tests.nix)

#[test]
fn passthru_tests_substitute_from_caches_into_a_fresh_store() {
    if skip_without_nix() {
        return;
    }
    let out = run_ok(&mut nix_build_expr(&builder_bin(), "", "(mkBinaryCache { rootPaths = [ ]; }).tests.substitutes"));
    assert_eq!(fs::read_to_string(&out).unwrap(), "substituted and verified from 3 caches\n");
}

/// The test derivation must be able to fail: a "cache" with only
/// nix-cache-info (written by a stand-in builder) fails it.
#[test]
fn passthru_tests_fail_on_a_cache_that_lacks_the_paths() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("passthru-broken");
    let dummy = tmp.join("empty-cache-builder");
    // A structured-attrs builder gets its outputs in .attrs.sh (bash arrays);
    // with arguments (the package's --generate), it prints nothing.
    write_executable(
        &dummy,
        "#!/bin/bash\nset -eu\n[ $# = 0 ] || exit 0\n. \"$NIX_BUILD_TOP/.attrs.sh\"\n/bin/mkdir \"${outputs[out]}\"\n\
         echo 'StoreDir: /nix/store' > \"${outputs[out]}/nix-cache-info\"\n",
    )
    .unwrap();
    let err = run_fail(&mut nix_build_expr(&dummy, "", "(mkBinaryCache { rootPaths = [ ]; }).tests.substitutes"));
    assert!(err.contains("substituting from") && err.contains("mkbinarycache-test-root"), "{err}");
}

// ---------------------------------------------------------------------------
// The flake

/// Copy `src` to `dst` (files, directories, symlinks, modes), leaving out the
/// entries of the top directory named in `skip` and `result*` links.
fn copy_tree(src: &Path, dst: &Path, skip: &[&str]) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) || name.starts_with("result") {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        let meta = fs::symlink_metadata(&from).unwrap();
        if meta.file_type().is_symlink() {
            symlink(fs::read_link(&from).unwrap(), &to).unwrap();
        } else if meta.is_dir() {
            copy_tree(&from, &to, &[]);
        } else {
            fs::copy(&from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        }
    }
}

/// A copy of the repository and of the stub (with our binary in it, where
/// the stub's `makeBinaryCacheBin` default finds it) as `path:` flakes: Nix
/// 2.8 copies a flake's whole directory to the store, and a `git+file:` flake
/// needs a git checkout with the new files committed.
struct Flakes {
    _tmp: TempDir,
    repo: String,
    stub: String,
}

impl Flakes {
    fn new() -> Flakes {
        let tmp = TempDir::new("flake");
        copy_tree(&repo_root(), &tmp.join("repo"), &["target", ".git"]);
        copy_tree(&repo_root().join("tests/nixpkgs-stub"), &tmp.join("stub"), &[]);
        fs::copy(builder_bin(), tmp.join("stub/make-binary-cache")).unwrap();
        let repo = format!("path:{}", tmp.join("repo").display());
        let stub = format!("path:{}", tmp.join("stub").display());
        Flakes { _tmp: tmp, repo, stub }
    }

    /// `nix <args…>` with nixpkgs overridden by the stub.
    fn nix(&self, args: &[&str]) -> Command {
        let mut cmd = nix_flakes();
        cmd.args(args).args(["--override-input", "nixpkgs", &self.stub, "--no-write-lock-file"]);
        cmd
    }

    fn attr(&self, attr: &str) -> String {
        format!("{}#{attr}", self.repo)
    }
}

fn current_system() -> String {
    run_ok(nix_cmd("nix").args(["eval", "--impure", "--raw", "--expr", "builtins.currentSystem"]))
}

#[test]
fn flake_check_builds_the_checks_against_the_stub() {
    if skip_without_nix() {
        return;
    }
    let flakes = Flakes::new();
    let (ok, stdout, stderr) = run(&mut flakes.nix(&["flake", "check", &flakes.repo]));
    assert!(ok, "nix flake check failed:\n{stdout}\n{stderr}");

    // The checks are what they say: the end-to-end test and the package.
    let system = current_system();
    let names = run_ok(&mut flakes.nix(&[
        "eval",
        "--json",
        &flakes.attr(&format!("checks.{system}")),
        "--apply",
        "builtins.attrNames",
    ]));
    assert_eq!(names, r#"["make-binary-cache","mkBinaryCache"]"#);
    let built = run_ok(&mut flakes.nix(&[
        "build",
        "--no-link",
        "--json",
        &flakes.attr(&format!("checks.{system}.mkBinaryCache")),
    ]));
    let out = built.split("\"out\":\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_else(|| panic!("{built}"));
    assert_eq!(fs::read_to_string(out).unwrap(), "substituted and verified from 3 caches\n");
}

#[test]
fn flake_package_overlay_and_formatter() {
    if skip_without_nix() {
        return;
    }
    let flakes = Flakes::new();
    let system = current_system();

    // packages.<system>.default is the program.
    let tmp = TempDir::new("flake-pkg");
    let link = tmp.join("result");
    run_ok(&mut flakes.nix(&["build", "--out-link", link.to_str().unwrap(), &flakes.attr("default")]));
    let version = run_ok(Command::new(link.join("bin/make-binary-cache")).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    // With the completions and the manual page it makes, where nixpkgs' installShellFiles puts them.
    let share = link.join("share");
    for (file, generate) in [
        ("bash-completion/completions/make-binary-cache.bash", "complete-bash"),
        ("zsh/site-functions/_make-binary-cache", "complete-zsh"),
        ("fish/vendor_completions.d/make-binary-cache.fish", "complete-fish"),
        ("man/man1/make-binary-cache.1", "man"),
    ] {
        let installed = fs::read_to_string(share.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(installed.trim_end(), run_ok(ours().args(["--generate", generate])), "{file}");
    }
    let named = run_ok(&mut flakes.nix(&[
        "eval",
        "--raw",
        &flakes.attr(&format!("packages.{system}.make-binary-cache.outPath")),
    ]));
    assert_eq!(fs::read_link(&link).unwrap(), Path::new(&named));

    // The overlay adds the program and the function; legacyPackages has both.
    let added = run_ok(&mut flakes.nix(&[
        "eval",
        "--json",
        &flakes.attr("overlays.default"),
        "--apply",
        "o: builtins.attrNames (o { } { })",
    ]));
    assert_eq!(added, r#"["make-binary-cache","mergeBinaryCaches","mkBinaryCache"]"#);
    let cache_drv = run_ok(&mut flakes.nix(&[
        "eval",
        "--raw",
        &flakes.attr(&format!("legacyPackages.{system}")),
        "--apply",
        "p: (p.mkBinaryCache { rootPaths = [ p.make-binary-cache ]; compression = \"xz\"; }).drvPath",
    ]));
    assert!(cache_drv.ends_with("-binary-cache.drv"), "{cache_drv}");

    // The formatter is a derivation (the stub's says nixfmt is not there).
    let fmt = run_ok(&mut flakes.nix(&["eval", "--raw", &flakes.attr(&format!("formatter.{system}.name"))]));
    assert_eq!(fmt, "nixfmt-not-in-nixpkgs-stub");
}

// ---------------------------------------------------------------------------
// examples/

/// examples/hello-cache, built as its comment says (with the binary cargo
/// built for this run), then substituted into a fresh store and run there.
#[test]
fn hello_cache_example_builds_and_substitutes() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("example");
    let example = repo_root().join("examples/hello-cache");
    let build = |attr: Option<&str>| {
        let mut cmd = nix_cmd("nix-build");
        cmd.arg(&example).arg("--no-out-link").arg("--arg").arg("makeBinaryCacheBin").arg(builder_bin());
        if let Some(a) = attr {
            cmd.args(["-A", a]);
        }
        run_ok(&mut cmd)
    };
    let cache = build(None);
    let hello = build(Some("hello"));
    assert!(Path::new(&cache).join(format!("{}.narinfo", hash_part(&hello))).is_file());

    let store = tmp.join("store");
    copy_closure_from(Path::new(&cache), &store, &[&hello]);
    let exe = format!("{}{hello}/bin/hello", store.display());
    assert_eq!(run_ok(&mut Command::new(exe)), "Hello from a binary cache");

    // Without the program built, the error says what to do.
    let err = run_fail(nix_cmd("nix-instantiate").arg(&example).args([
        "--arg",
        "makeBinaryCacheBin",
        "/nonexistent/make-binary-cache",
    ]));
    assert!(err.contains("/nonexistent/make-binary-cache does not exist: run `cargo build --release` first"), "{err}");
}

// ---------------------------------------------------------------------------
// doc/

/// The documented inputs under the heading with anchor `anchor` in the
/// manual page: each entry's name, whether it is marked _optional_, and its
/// `_Default value:_` (the Nix text between backticks), if any.
fn documented_inputs(anchor: &str) -> Vec<(String, bool, Option<String>)> {
    let doc = fs::read_to_string(repo_root().join("doc/mkBinaryCache.section.md")).unwrap();
    let mut lines = doc.lines().skip_while(|l| !(l.starts_with('#') && l.contains(&format!("{{#{anchor}}}"))));
    assert!(lines.next().is_some(), "no heading {{#{anchor}}} in doc/mkBinaryCache.section.md");
    let mut inputs: Vec<(String, bool, Option<String>)> = Vec::new();
    for line in lines.take_while(|l| !l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix('`')
            && let Some((name, kind)) = rest.split_once("` (")
        {
            inputs.push((name.to_string(), kind.contains("_optional_"), None));
        } else if let Some(default) = line.trim().strip_prefix("_Default value:_ `") {
            let default = default.split_once('`').map(|(d, _)| d.to_string());
            inputs.last_mut().expect("a default before any input").2 = default;
        }
    }
    assert!(!inputs.is_empty(), "no inputs under {{#{anchor}}}");
    inputs
}

/// `builtins.functionArgs` of a function from nix/ (through the stand-in's
/// callPackage, as users get it): each argument and whether it has a default.
fn function_args(expr: &str) -> Vec<(String, bool)> {
    let json = run_ok(&mut nix_eval_expr(
        &builder_bin(),
        &format!("builtins.attrValues (builtins.mapAttrs (n: d: [ n d ]) (pkgs.lib.functionArgs ({expr})))"),
    ));
    json.trim_start_matches("[[")
        .trim_end_matches("]]")
        .split("],[")
        .map(|pair| {
            let (name, default) = pair.split_once(',').unwrap();
            (name.trim_matches('"').to_string(), default == "true")
        })
        .collect()
}

#[test]
fn manual_documents_every_argument_of_mk_binary_cache() {
    if skip_without_nix() {
        return;
    }
    let documented = documented_inputs("sec-pkgs-binary-cache-inputs");
    let args = function_args("mkBinaryCache");
    for (name, has_default) in &args {
        let entry = documented.iter().find(|(n, _, _)| n == name);
        let Some((_, optional, default)) = entry else {
            panic!("mkBinaryCache argument `{name}` is not under Inputs in doc/mkBinaryCache.section.md");
        };
        assert_eq!(optional, has_default, "`{name}`: _optional_ in the manual must match a default in nix/");
        assert_eq!(default.is_some(), *has_default, "`{name}`: a _Default value:_ exactly when nix/ has a default");
    }
    for (name, _, _) in &documented {
        assert!(
            args.iter().any(|(n, _)| n == name),
            "the manual documents `{name}`, which mkBinaryCache does not take"
        );
    }

    // The documented defaults are the ones the derivation gets.
    let compare: Vec<String> = documented
        .iter()
        .filter_map(|(name, _, default)| default.as_ref().map(|d| (name, d)))
        .map(|(name, d)| format!(r#"(if c ? {name} && c.{name} != ({d}) then "{name}" else null)"#))
        .collect();
    let wrong = run_ok(&mut nix_eval_expr(
        &builder_bin(),
        &format!(
            "let c = mkBinaryCache {{ rootPaths = [ ]; }}; in builtins.filter (x: x != null) [ {} ]",
            compare.join(" ")
        ),
    ));
    assert_eq!(wrong, "[]", "documented defaults that differ from the derivation's attributes");
}

#[test]
fn manual_documents_every_argument_of_merge_binary_caches() {
    if skip_without_nix() {
        return;
    }
    let documented = documented_inputs("sec-pkgs-merge-binary-caches-inputs");
    if !repo_root().join("nix/merge.nix").exists() {
        skip_visibly("nix/merge.nix (mergeBinaryCaches) is not in this tree yet; its manual entry is unchecked");
        return;
    }
    for (name, has_default) in function_args("pkgs.callPackage (/. + root + \"/nix/merge.nix\") { }") {
        let entry = documented.iter().find(|(n, _, _)| *n == name);
        let Some((_, optional, _)) = entry else {
            panic!("mergeBinaryCaches argument `{name}` is not under its Inputs in doc/mkBinaryCache.section.md");
        };
        assert_eq!(*optional, has_default, "`{name}`: _optional_ in the manual must match a default in nix/merge.nix");
    }
}

/// `rust-version` in Cargo.toml (and the README's "Rust 1.88 or newer") is
/// what the locked dependencies need: no older toolchain builds them.
#[test]
fn rust_version_is_what_the_locked_dependencies_need() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    let packages = metadata["packages"].as_array().unwrap();
    let ours = packages.iter().find(|p| p["name"] == "make-binary-cache").unwrap()["rust_version"].as_str().unwrap();
    let (needed, by) = packages
        .iter()
        .filter_map(|p| Some((p["rust_version"].as_str()?, p["name"].as_str()?)))
        .max_by_key(|(v, _)| version(v))
        .unwrap();
    assert_eq!(version(ours), version(needed), "rust-version is {ours}, but {by} needs {needed}");
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(readme.contains(&format!("Rust {ours} or newer")), "the README names another Rust version");
}
