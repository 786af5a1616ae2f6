//! Helpers for the end-to-end tests that drive the real `nix` commands.
//! They shell out to Nix and inspect files (serde_json reads what Nix prints).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Settings for every Nix command the tests run: no network substituter
/// (Nix would retry an unreachable cache for seconds), the new CLI enabled,
/// no sandbox (the fixtures use /bin/sh from the host), long failure logs.
pub const NIX_CONFIG: &str = "substituters =\n\
    experimental-features = nix-command\n\
    sandbox = false\n\
    log-lines = 1000\n";

/// The repository root (where Cargo.toml, default.nix and nix/ live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `name` is an executable file in one of the PATH directories.
pub fn on_path(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        fs::metadata(dir.join(name)).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

/// The variable that lets the end-to-end tests be skipped on a machine
/// without Nix. Without it, a missing Nix fails them: a green `cargo test`
/// must mean that real Nix judged the caches.
pub const SKIP_NIX_TESTS_VAR: &str = "MAKE_BINARY_CACHE_SKIP_NIX_TESTS";

/// What to do when Nix is missing, for the failure message.
pub const INSTALL_NIX: &str = "install Nix (Debian/Ubuntu: `apt-get install nix-bin`; elsewhere see \
    https://nixos.org/download) so that nix-build, nix-store and nix are on PATH, \
    or set MAKE_BINARY_CACHE_SKIP_NIX_TESTS=1 to skip the tests that need it";

/// Whether the tests that need Nix should be skipped: false when Nix is on
/// PATH; true (printing a line that shows even without `--nocapture`) when it
/// is not and `MAKE_BINARY_CACHE_SKIP_NIX_TESTS=1` says to skip; otherwise
/// the test fails, saying how to install Nix.
pub fn skip_without_nix() -> bool {
    if on_path("nix-build") {
        return false;
    }
    if std::env::var_os(SKIP_NIX_TESTS_VAR).is_some_and(|v| v == "1") {
        skip_visibly(&format!("nix-build not on PATH and {SKIP_NIX_TESTS_VAR}=1"));
        return true;
    }
    panic!("this test needs Nix, and nix-build is not on PATH: {INSTALL_NIX}");
}

/// Say on the real stderr that the current test is skipped, and why. The test
/// harness captures `eprintln!`, not writes to the stderr handle, so the line
/// shows in a plain `cargo test` run.
pub fn skip_visibly(why: &str) {
    use std::io::Write;
    let name = std::thread::current().name().unwrap_or("?").to_string();
    let _ = writeln!(io::stderr().lock(), "SKIPPED {name}: {why}");
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A string unique to this call: process id, clock and a counter.
pub fn unique(label: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{label}-{}-{nanos}-{n}", std::process::id())
}

/// A directory under the system temp dir, removed on drop unless the test is
/// failing (then it is kept and its path printed, to look at).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(&format!("mbc-e2e-{label}")));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.path.display());
            return;
        }
        // Store paths copied into a chroot store are read-only.
        make_writable(&self.path);
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Give the owner write permission on every directory under `path`.
fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let mut perms = meta.permissions();
        perms.set_mode(perms.mode() | 0o700);
        let _ = fs::set_permissions(path, perms);
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}

/// A command for one of Nix's programs, with the test settings.
pub fn nix_cmd(program: &str) -> Command {
    // A test that forgot `skip_without_nix()` still fails with the advice,
    // not with "No such file or directory".
    assert!(on_path(program), "{program} is not on PATH: {INSTALL_NIX}");
    let mut cmd = Command::new(program);
    cmd.env("NIX_CONFIG", NIX_CONFIG).current_dir(repo_root()).stdin(Stdio::null());
    cmd
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

fn shell_quote(a: &OsStr) -> String {
    let s = a.to_string_lossy();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@".contains(c)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("running {}: {e}", describe(cmd)))
}

/// Run `cmd`, which must succeed; returns its trimmed stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!(
            "command failed ({}): {}\n--- stdout:\n{}\n--- stderr:\n{}",
            out.status,
            describe(cmd),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run `cmd`, which must fail; returns its stderr (and stdout after it).
pub fn run_fail(cmd: &mut Command) -> String {
    let out = output(cmd);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    if out.status.success() {
        panic!("command unexpectedly succeeded: {}\n--- output:\n{text}", describe(cmd));
    }
    text
}

/// Run `cmd` and return (success, stdout, stderr) without judging.
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = output(cmd);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Nix source that binds `pkgs` (the stub), `mkBinaryCache` (from nix/) and
/// `fixture` (tests/fixtures/closure.nix) and then evaluates `body`. Meant for
/// `-E`, with the arguments from [`prelude_args`].
pub fn with_prelude(body: &str) -> String {
    format!(
        r#"{{ root, bin, nonce ? "" }}:
let
  pkgs = import (/. + root + "/tests/nixpkgs-stub") {{ makeBinaryCacheBin = bin; }};
  mkBinaryCache = pkgs.callPackage (/. + root + "/nix") {{ }};
  fixtures = import (/. + root + "/tests/fixtures/closure.nix") {{ inherit nonce; }};
  fixture = fixtures.a;
in
{body}"#
    )
}

/// Adds `--argstr root/bin/nonce` for [`with_prelude`] expressions.
pub fn prelude_args<'a>(cmd: &'a mut Command, bin: &Path, nonce: &str) -> &'a mut Command {
    cmd.arg("--argstr")
        .arg("root")
        .arg(repo_root())
        .arg("--argstr")
        .arg("bin")
        .arg(bin)
        .arg("--argstr")
        .arg("nonce")
        .arg(nonce)
}

/// `nix-build` a [`with_prelude`] expression (no out link).
pub fn nix_build_expr(bin: &Path, nonce: &str, body: &str) -> Command {
    let mut cmd = nix_cmd("nix-build");
    cmd.arg("--no-out-link").arg("-E").arg(with_prelude(body));
    prelude_args(&mut cmd, bin, nonce);
    cmd
}

/// `nix-instantiate --eval --strict --json` of a [`with_prelude`] expression.
pub fn nix_eval_expr(bin: &Path, body: &str) -> Command {
    let mut cmd = nix_cmd("nix-instantiate");
    cmd.arg("--eval").arg("--strict").arg("--json").arg("-E").arg(with_prelude(body));
    prelude_args(&mut cmd, bin, "");
    cmd
}

/// Build the fixture closure (tests/fixtures/closure.nix) and return the
/// store path of attribute `attr` ("a" is the root).
pub fn build_fixture(nonce: &str, attr: &str) -> String {
    run_ok(
        nix_cmd("nix-build")
            .arg("--no-out-link")
            .arg(repo_root().join("tests/fixtures/closure.nix"))
            .arg("-A")
            .arg(attr)
            .arg("--argstr")
            .arg("nonce")
            .arg(nonce),
    )
}

/// The closure of a store path (in the real store), sorted.
pub fn closure_of(path: &str) -> Vec<String> {
    let mut v: Vec<String> = run_ok(nix_cmd("nix-store").arg("-qR").arg(path)).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// A narinfo file as its `Key: value` lines, keeping repeated keys.
pub fn parse_narinfo(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let (k, v) = line
            .split_once(": ")
            .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
            .unwrap_or_else(|| panic!("narinfo line without ': ': {line:?}\n{text}"));
        map.entry(k.to_string()).or_default().push(v.to_string());
    }
    map
}

/// The single value of `key` in a parsed narinfo.
pub fn field<'a>(info: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match info.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("narinfo field {key}: expected one value, got {other:?} in {info:?}"),
    }
}

/// The hash part of a store path: `/nix/store/<hash>-<name>` → `<hash>`.
pub fn hash_part(store_path: &str) -> &str {
    let base = store_path.rsplit('/').next().unwrap();
    &base[..32]
}

/// The base name of a store path.
pub fn base_name(store_path: &str) -> &str {
    store_path.rsplit('/').next().unwrap()
}

/// `nix-hash --type sha256 --flat --base32` of several files at once.
pub fn flat_hashes(files: &[PathBuf]) -> Vec<String> {
    if files.is_empty() {
        return Vec::new();
    }
    let out = run_ok(nix_cmd("nix-hash").args(["--type", "sha256", "--flat", "--base32"]).args(files));
    let v: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(v.len(), files.len(), "nix-hash output: {out}");
    v
}

/// The names of the entries of a directory, sorted.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Write an executable file.
pub fn write_executable(path: &Path, contents: &str) -> io::Result<()> {
    fs::write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Our binary, for the Nix expressions (`makeBinaryCacheBin`).
pub fn builder_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_make-binary-cache"))
}

/// `make-binary-cache sign --secret-key-file KEY [--out DEST] CACHE`.
pub fn sign(key: &Path, out: Option<&Path>, cache: &Path) -> Command {
    let mut cmd = ours();
    cmd.arg("sign").arg("--secret-key-file").arg(key);
    if let Some(out) = out {
        cmd.arg("--out").arg(out);
    }
    cmd.arg(cache);
    cmd
}

/// Our binary, with none of the builder's environment, so it runs in CLI mode.
pub fn ours() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_make-binary-cache"));
    cmd.env_remove("NIX_ATTRS_JSON_FILE").env_remove("NIX_BUILD_TOP").env_remove("NIX_STORE");
    cmd
}

/// `nix path-info --json [--recursive] PATHS…`, what our CLI reads, written
/// to `name` in `tmp`; returns the file.
pub fn path_info<S: AsRef<OsStr>>(tmp: &TempDir, name: &str, recursive: bool, paths: &[S]) -> PathBuf {
    let mut cmd = nix_cmd("nix");
    cmd.args(["path-info", "--json"]);
    if recursive {
        cmd.arg("--recursive");
    }
    let file = tmp.join(name);
    fs::write(&file, run_ok(cmd.args(paths))).unwrap();
    file
}

/// [`path_info`] of the fixture closure, in `closure.json` in `tmp`;
/// returns the root and the file.
pub fn path_info_file(tmp: &TempDir) -> (String, PathBuf) {
    let root = build_fixture("", "a");
    let file = path_info(tmp, "closure.json", true, &[&root]);
    (root, file)
}

/// Builds the fixture's root (tests/fixtures/closure.nix, `a`) into the
/// chroot store `store` with `--max-jobs 0`, so that every path must come
/// from `caches` (asked in the order Nix gives them), and asserts that the
/// build gave `root` and that the store then holds its closure as the real
/// store does ([`assert_store_holds`]). Returns Nix's `-v` log, which names
/// the cache each path came from.
pub fn substitute_fixture(caches: &[&Path], store: &Path, root: &str) -> String {
    let substituters: Vec<String> = caches.iter().map(|c| format!("file://{}", c.display())).collect();
    let (ok, stdout, stderr) = run(nix_cmd("nix-build")
        .arg(repo_root().join("tests/fixtures/closure.nix"))
        .args(["-A", "a", "--no-out-link", "--max-jobs", "0", "-v"])
        .arg("--store")
        .arg(store)
        .args(["--option", "substituters", &substituters.join(" ")])
        .args(["--option", "require-sigs", "false"]));
    assert!(ok, "substitution from {substituters:?} failed:\n{stderr}");
    assert_eq!(stdout.trim(), root, "{stderr}");
    assert_store_holds(store, &[root], &substituters.join(" "));
    stderr
}

/// Every file under `dir` with its contents, by relative path (directories
/// end in `/`), sorted.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                files.push((rel + "/", Vec::new()));
                stack.push(path);
            } else {
                files.push((rel, fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// Real Nix's judgement of a cache at `from` (a store URL: `file://…`,
/// `http://…`): `nix copy --no-require-sigs` of `roots` into the chroot store
/// `store`, which must hold none of their closure before, then
/// [`assert_store_holds`] there.
pub fn copy_closure_from_url<S: AsRef<str>>(from: &str, store: &Path, roots: &[S]) {
    let roots: Vec<&str> = roots.iter().map(AsRef::as_ref).collect();
    assert_store_lacks(store, &roots);
    run_ok(nix_cmd("nix").args(["copy", "--no-require-sigs", "--from", from, "--to"]).arg(store).args(&roots));
    assert_store_holds(store, &roots, from);
}

/// [`copy_closure_from_url`] from the cache directory `cache`.
pub fn copy_closure_from<S: AsRef<str>>(cache: &Path, store: &Path, roots: &[S]) {
    copy_closure_from_url(&format!("file://{}", cache.display()), store, roots);
}

/// Assert that the chroot store `store` holds no path of the closure of
/// `roots` (in the real store), so that a copy into it brings them all.
pub fn assert_store_lacks<S: AsRef<str>>(store: &Path, roots: &[S]) {
    let roots: Vec<&str> = roots.iter().map(AsRef::as_ref).collect();
    let closure = run_ok(nix_cmd("nix-store").arg("-qR").args(&roots));
    let invalid = run_ok(
        nix_cmd("nix-store")
            .arg("--store")
            .arg(store)
            .args(["--check-validity", "--print-invalid"])
            .args(closure.lines()),
    );
    assert_eq!(invalid, closure, "{} already holds some of the closure before copying", store.display());
}

/// Assert that the chroot store `store` passes `nix-store --verify
/// --check-contents` and holds the closure of `roots`, each path with the
/// NarHash, NarSize, references and content address it has in the real store
/// (`from` names where it came from, for the message).
pub fn assert_store_holds<S: AsRef<str>>(store: &Path, roots: &[S], from: &str) {
    let roots: Vec<&str> = roots.iter().map(AsRef::as_ref).collect();
    run_ok(nix_cmd("nix-store").arg("--store").arg(store).args(["--verify", "--check-contents"]));
    // What Nix records of a path and a cache carries; not the deriver,
    // registration time or signatures, which differ by how it was copied.
    let recorded = |store: Option<&Path>| -> Vec<[serde_json::Value; 5]> {
        let mut cmd = nix_cmd("nix");
        cmd.args(["path-info", "--json", "--recursive"]);
        if let Some(s) = store {
            cmd.arg("--store").arg(s);
        }
        let json = run_ok(cmd.args(&roots));
        let infos: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        let mut v: Vec<_> = infos
            .into_iter()
            .map(|i| ["path", "narHash", "narSize", "references", "ca"].map(|k| i[k].clone()))
            .collect();
        v.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
        v
    };
    assert_eq!(recorded(Some(store)), recorded(None), "{} after copying from {from}", store.display());
}

/// Writes to `file` the structured attrs a Nix build of mkBinaryCache hands
/// its builder: `closure_json` (path-info JSON text) and the output `out`.
pub fn write_attrs(file: &Path, closure_json: &str, out: &Path) {
    let out = serde_json::to_string(out.to_str().unwrap()).unwrap();
    fs::write(file, format!(r#"{{"closure": {}, "outputs": {{"out": {out}}}}}"#, closure_json.trim())).unwrap();
}

/// The full path of a program on PATH, or in /usr/sbin (not on every user's
/// PATH); a missing one fails the test, naming the Debian package.
pub fn program(name: &str, package: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        .unwrap_or_default();
    on_path
        .or_else(|| Some(Path::new("/usr/sbin").join(name)).filter(|f| f.is_file()))
        .unwrap_or_else(|| panic!("this test needs {name}: install it (Debian: `apt-get install {package}`)"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Starts a server on a free port of 127.0.0.1 and returns the port once it
/// accepts connections: `spawn(port)` writes its configuration and starts
/// it. Another process may take the port between our probe and the
/// server's bind: then the server exits at once and another port is tried,
/// five in all. `what` names it and `log` is its log, for the message when
/// it exits or is not listening within `patience`.
pub fn start_on_free_port(
    what: &str,
    log: &Path,
    patience: std::time::Duration,
    mut spawn: impl FnMut(u16) -> std::process::Child,
) -> (u16, std::process::Child) {
    use std::time::{Duration, Instant};
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = spawn(port);
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let said = fs::read_to_string(log).unwrap_or_default();
                last_error = format!("{what} exited ({status}) on port {port}:\n{said}");
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (port, child);
            }
            if Instant::now() > deadline {
                last_error = format!("{what} not listening on port {port} after {} s", patience.as_secs());
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{what} did not start: {last_error}");
}
