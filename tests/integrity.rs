//! Issue 15's cases, each as it was found: `sign`, `verify`, `merge` and
//! `--reuse` never write a narinfo for bytes they did not check, never read
//! or copy a file from outside the cache, never drop a signature, and keep
//! the manifest true. Real Nix judges where it can.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// A key pair made by Nix: (secret key file, public key text).
fn generate_key(tmp: &TempDir, name: &str) -> (PathBuf, String) {
    let (secret, public) = (tmp.join(format!("{name}.sk")), tmp.join(format!("{name}.pk")));
    run_ok(nix_cmd("nix-store").args(["--generate-binary-cache-key", name]).arg(&secret).arg(&public));
    (secret, fs::read_to_string(&public).unwrap().trim().to_owned())
}

/// The fixture closure (root `a`) written by our CLI into `tmp/name` with `args`.
fn cache_of(tmp: &TempDir, name: &str, args: &[&str]) -> (String, PathBuf, PathBuf) {
    let root = build_fixture("", "a");
    let closure = tmp.join("closure.json");
    if !closure.exists() {
        path_info(tmp, "closure.json", true, &[&root]);
    }
    let cache = tmp.join(name);
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache).args(args));
    (root, cache, closure)
}

fn narinfo_of(cache: &Path, path: &str) -> PathBuf {
    cache.join(format!("{}.narinfo", hash_part(path)))
}

fn url_of(narinfo: &Path) -> String {
    field(&parse_narinfo(&fs::read_to_string(narinfo).unwrap()), "URL").to_owned()
}

fn sigs(narinfo: &Path) -> Vec<String> {
    fs::read_to_string(narinfo).unwrap().lines().filter_map(|l| l.strip_prefix("Sig: ")).map(str::to_owned).collect()
}

/// `nix copy --no-require-sigs` of `root` from `cache` into `store`, which
/// may fail: whether it did, and Nix's stderr.
fn nix_copy(cache: &Path, store: &Path, root: &str) -> (bool, String) {
    let (ok, _, stderr) = run(nix_cmd("nix")
        .args(["copy", "--no-require-sigs", "--from"])
        .arg(format!("file://{}", cache.display()))
        .arg("--to")
        .arg(store)
        .arg(root));
    (ok, stderr)
}

/// `nix copy` of `root` from `cache` into a fresh store, trusting only `key`.
fn nix_accepts_signed(cache: &Path, root: &str, key: &str, store: &Path) -> (bool, String) {
    let config = format!("{NIX_CONFIG}require-sigs = true\ntrusted-public-keys = {key}\n");
    let (ok, _, stderr) = run(nix_cmd("nix")
        .env("NIX_CONFIG", config)
        .args(["copy", "--from"])
        .arg(format!("file://{}", cache.display()))
        .arg("--to")
        .arg(store)
        .arg(root));
    (ok, stderr)
}

/// Case 1: a NAR file symlinked to a secret outside the cache: `sign --out`
/// fails naming it, and DEST gets no copy of the secret.
#[test]
fn sign_out_copies_nothing_from_outside_the_cache() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-sign-out-symlink");
    let (key, _) = generate_key(&tmp, "integrity-1");
    let (_, cache, _) = cache_of(&tmp, "cache", &[]);
    let victim = build_fixture("", "b");
    let url = url_of(&narinfo_of(&cache, &victim));
    let secret = tmp.join("secret.txt");
    fs::write(&secret, "the secret").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(cache.join(&url)).unwrap();
    symlink(&secret, cache.join(&url)).unwrap();

    let dest = tmp.join("dest");
    let err = run_fail(&mut sign(&key, Some(&dest), &cache));
    assert!(err.contains(&url) && err.contains("is a symlink"), "{err}");
    assert!(!dest.join(&url).exists(), "the secret was copied");
    for (rel, contents) in tree(&dest) {
        assert!(contents != b"the secret", "{rel} holds the secret");
    }
    // Nor is any narinfo written, in place or in the copy.
    assert!(fs::read_dir(&dest).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".narinfo")));
    let before = tree(&cache);
    run_fail(&mut sign(&key, None, &cache));
    assert!(tree(&cache) == before, "a refused cache was changed");
}

/// Case 2: a build into a signed cache keeps every signature; Nix with
/// `require-sigs` still takes the whole closure.
#[test]
fn adding_to_a_signed_cache_keeps_its_signatures() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-keep-sigs");
    let (key, public) = generate_key(&tmp, "integrity-2");
    let (root, cache, closure) = cache_of(&tmp, "cache", &[]);
    run_ok(&mut sign(&key, None, &cache));
    let signed = tree(&cache);
    // The same closure again, and then with another path: nothing unsigned.
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache));
    assert!(tree(&cache) == signed, "a build of the same closure changed a signed cache");
    let other = build_fixture("integrity-keep-sigs", "c");
    run_ok(ours().arg("--out").arg(&cache).arg(&root).arg(&other));
    for path in closure_of(&root) {
        assert_eq!(sigs(&narinfo_of(&cache, &path)).len(), 1, "{path} lost its signature");
    }
    let (ok, stderr) = nix_accepts_signed(&cache, &root, &public, &tmp.join("store"));
    assert!(ok, "{stderr}");
}

/// Case 2, concurrently: `sign` in place while builds loop into the cache
/// exits 0, and afterwards every narinfo is signed.
#[test]
fn sign_racing_builds_loses_no_signature() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-sign-race");
    let (key, public) = generate_key(&tmp, "integrity-3");
    let (root, cache, closure) = cache_of(&tmp, "cache", &["--no-sync"]);
    std::thread::scope(|scope| {
        let builds = scope.spawn(|| {
            for _ in 0..12 {
                run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache).args(["--no-sync", "--quiet"]));
            }
        });
        for _ in 0..3 {
            run_ok(sign(&key, None, &cache).arg("--no-sync"));
            std::thread::sleep(Duration::from_millis(20));
        }
        builds.join().unwrap();
    });
    for path in closure_of(&root) {
        assert_eq!(sigs(&narinfo_of(&cache, &path)).len(), 1, "{path} lost its signature");
    }
    run_ok(ours().args(["verify", "--public-key", &public]).arg(&cache));
}

/// Case 3: an earlier cache whose narinfo for `b` names `c`'s NAR file (its
/// FileHash and FileSize, so that they match) is damaged: `--reuse` fails
/// naming it instead of writing a narinfo for another path's bytes.
#[test]
fn reuse_checks_the_nar_it_copies() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-reuse-nar");
    let (_, earlier, closure) = cache_of(&tmp, "earlier", &["--compression", "xz"]);
    let (b, c) = (build_fixture("", "b"), build_fixture("", "c"));
    let (b_file, c_file) = (narinfo_of(&earlier, &b), narinfo_of(&earlier, &c));
    let (b_text, c_info) = (fs::read_to_string(&b_file).unwrap(), parse_narinfo(&fs::read_to_string(&c_file).unwrap()));
    let b_info = parse_narinfo(&b_text);
    let mut lied = b_text.clone();
    for key in ["URL", "FileHash", "FileSize"] {
        lied = lied.replace(&format!("{key}: {}\n", field(&b_info, key)), &format!("{key}: {}\n", field(&c_info, key)));
    }
    fs::write(&b_file, lied).unwrap();
    let out = tmp.join("new");
    let err = run_fail(
        ours()
            .arg("--closure")
            .arg(&closure)
            .arg("--out")
            .arg(&out)
            .args(["--compression", "xz", "--reuse"])
            .arg(&earlier),
    );
    assert!(err.contains("holds a NAR with hash") && err.contains("damaged") && err.contains(&b), "{err}");
    assert!(!narinfo_of(&out, &b).exists());
}

/// Case 4: `sign --out` into a cache made with other settings marks its
/// manifest mixed instead of overwriting it with the source's.
#[test]
fn sign_out_keeps_the_manifest_true() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-manifest");
    let (key, _) = generate_key(&tmp, "integrity-4");
    let (_, level3, _) = cache_of(&tmp, "level3", &["--compression-level", "3"]);
    let (_, level19, _) = cache_of(&tmp, "level19", &["--compression-level", "19"]);
    let manifest = "make-binary-cache.json";
    let (m3, m19) =
        (fs::read_to_string(level3.join(manifest)).unwrap(), fs::read_to_string(level19.join(manifest)).unwrap());
    assert_ne!(m3, m19);
    run_ok(&mut sign(&key, Some(&level19), &level3));
    let now = fs::read_to_string(level19.join(manifest)).unwrap();
    assert!(now != m3 && now != m19 && now.contains("mixed"), "{now}");
    // A new DEST gets the source's manifest.
    let fresh = tmp.join("fresh");
    run_ok(&mut sign(&key, Some(&fresh), &level3));
    assert_eq!(fs::read_to_string(fresh.join(manifest)).unwrap(), m3);
}

/// Case 5: two merges into one new directory at once: never both succeed,
/// and the one that does leaves a cache that verifies.
#[test]
fn concurrent_merges_into_one_directory_claim_it_once() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-merge-race");
    let (_, zstd, _) = cache_of(&tmp, "zstd", &["--no-sync"]);
    let (_, xz, _) = cache_of(&tmp, "xz", &["--no-sync", "--compression", "xz"]);
    for round in 0..15 {
        let out = tmp.join(format!("out-{round}"));
        let merge = |input: &Path| {
            let mut cmd = ours();
            cmd.args(["merge", "--no-sync", "--out"]).arg(&out).arg(input);
            run(&mut cmd).0
        };
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| merge(&zstd));
            let b = scope.spawn(|| merge(&xz));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(!(a && b), "round {round}: both merges succeeded");
        if a || b {
            run_ok(ours().arg("verify").arg(&out));
        }
    }
}

/// Cases 7, 8 and 10: what `verify` refuses to read, or reads in bounds.
#[test]
fn verify_reads_nothing_outside_the_cache_and_never_hangs() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-verify-outside");
    let (_, cache, _) = cache_of(&tmp, "cache", &["--write-nar-listing"]);
    let verify = |cache: &Path| {
        let mut cmd = ours();
        cmd.arg("verify").arg(cache);
        run(&mut cmd)
    };
    assert!(verify(&cache).0);

    // `nar` itself a symlink to a good copy elsewhere: every NAR refused.
    let moved = tmp.join("cache-moved");
    let copy = tmp.join("copy");
    run_ok(Command::new("cp").arg("-a").arg(&cache).arg(&copy));
    fs::rename(copy.join("nar"), &moved).unwrap();
    symlink(&moved, copy.join("nar")).unwrap();
    let (ok, stdout, stderr) = verify(&copy);
    assert!(!ok && format!("{stdout}{stderr}").contains("is a symlink"), "{stdout}{stderr}");

    // A FIFO as a NAR file and a listing linked to /dev/zero: problems, at once.
    let victim = build_fixture("", "b");
    let url = url_of(&narinfo_of(&cache, &victim));
    fs::remove_file(cache.join(&url)).unwrap();
    run_ok(Command::new("mkfifo").arg(cache.join(&url)));
    let ls = cache.join(format!("{}.ls", hash_part(&victim)));
    fs::remove_file(&ls).unwrap();
    symlink("/dev/zero", &ls).unwrap();
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = verify(&cache);
    let said = format!("{stdout}{stderr}");
    assert!(!ok && said.contains("a FIFO") && said.contains(".ls: a symlink"), "{said}");
    assert!(started.elapsed() < Duration::from_secs(30), "verify took {:?}", started.elapsed());
}

/// Case 10: `debuginfo/` entries are checked, orphan listings warned of.
#[test]
fn verify_checks_debug_info_and_orphan_listings() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-debuginfo");
    let (_, cache, _) = cache_of(&tmp, "cache", &[]);
    fs::write(cache.join("0123456789012345678901234567890123456789.debug"), "x").unwrap();
    let id = "0123456789abcdef0123456789abcdef01234567";
    fs::write(cache.join(format!("debuginfo/{id}.debug")), r#"{"archive":"../../../../etc/passwd","member":"x"}"#)
        .unwrap();
    fs::write(cache.join("debuginfo/garbage"), "garbage").unwrap();
    fs::write(cache.join("00000000000000000000000000000000.ls"), "{}").unwrap();
    let (ok, stdout, stderr) = run(ours().arg("verify").arg(&cache));
    let said = format!("{stdout}{stderr}");
    assert!(!ok, "{said}");
    assert!(said.contains(&format!("{id}.debug: its archive \"../../../../etc/passwd\"")), "{said}");
    assert!(said.contains("garbage: not a debug info entry"), "{said}");
    assert!(said.contains("00000000000000000000000000000000.ls: a NAR listing that no narinfo has"), "{said}");
}

/// Found by the mutation test: narinfos whose references form a cycle, which
/// Nix refuses to copy ("cycle detected"), fail `verify`.
#[test]
fn a_reference_cycle_fails_verify_as_nix_refuses_it() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-cycle");
    let (root, cache, _) = cache_of(&tmp, "cache", &[]);
    let leaf = narinfo_of(&cache, &build_fixture("", "c"));
    let text = fs::read_to_string(&leaf).unwrap();
    fs::write(&leaf, text.replace("References: \n", &format!("References: {}\n", base_name(&root)))).unwrap();
    let (ok, stdout, stderr) = run(ours().arg("verify").arg(&cache));
    assert!(!ok && format!("{stdout}{stderr}").contains("its references form a cycle"), "{stdout}{stderr}");
    let (ok, stderr) = nix_copy(&cache, &tmp.join("store"), &root);
    assert!(!ok && stderr.contains("cycle detected"), "{stderr}");
}

/// Case 9: a NAR stored as two concatenated xz streams, which Nix reads, is
/// valid: `verify` passes and Nix substitutes from the cache.
#[test]
fn concatenated_xz_streams_are_a_valid_nar_file() {
    if skip_without_nix() || !on_path("xz") {
        return skip_visibly("no xz");
    }
    let tmp = TempDir::new("integrity-two-streams");
    let (root, cache, _) = cache_of(&tmp, "cache", &["--compression", "xz"]);
    let victim = build_fixture("", "b");
    let narinfo = narinfo_of(&cache, &victim);
    let text = fs::read_to_string(&narinfo).unwrap();
    let info = parse_narinfo(&text);
    let out = Command::new("xz").arg("-dc").arg(cache.join(field(&info, "URL"))).output().unwrap();
    assert!(out.status.success());
    let nar = &out.stdout[..];
    let half = nar.len() / 2;
    let part = |bytes: &[u8], name: &str| {
        let file = tmp.join(name);
        fs::write(&file, bytes).unwrap();
        run_ok(Command::new("xz").arg("-kf").arg(&file));
        fs::read(tmp.join(format!("{name}.xz"))).unwrap()
    };
    let two = [part(&nar[..half], "one"), part(&nar[half..], "two")].concat();
    let file = tmp.join("two.nar.xz");
    fs::write(&file, &two).unwrap();
    let hash = run_ok(nix_cmd("nix-hash").args(["--flat", "--base32", "--type", "sha256"]).arg(&file));
    let url = format!("nar/{}.nar.xz", hash.trim());
    fs::rename(&file, cache.join(&url)).unwrap();
    let text = text
        .replace(field(&info, "URL"), &url)
        .replace(&format!("FileHash: {}", field(&info, "FileHash")), &format!("FileHash: sha256:{}", hash.trim()))
        .replace(&format!("FileSize: {}", field(&info, "FileSize")), &format!("FileSize: {}", two.len()));
    fs::write(&narinfo, text).unwrap();
    let (ok, stdout, stderr) = run(ours().arg("verify").arg(&cache));
    assert!(ok && !stdout.contains("problem"), "{stdout}{stderr}");
    copy_closure_from(&cache, &tmp.join("store"), &[&root]);
}

/// Case 10: `merge --out` at a dangling symlink says so.
#[test]
fn merge_out_at_a_dangling_symlink_is_named() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-dangling");
    let (_, cache, _) = cache_of(&tmp, "cache", &[]);
    let out = tmp.join("out");
    symlink(tmp.join("nowhere"), &out).unwrap();
    let err = run_fail(ours().args(["merge", "--out"]).arg(&out).arg(&cache));
    assert!(err.contains("is a symlink to") && err.contains("nowhere"), "{err}");
}

/// Case 6: a `CA` that does not give the store path is refused, by the
/// builder (in the closure it reads) and by `verify` (in a narinfo), as Nix
/// refuses it ("claims to be content-addressed but isn't").
#[test]
fn a_content_address_must_give_its_store_path() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-ca");
    let (_, cache, closure) = cache_of(&tmp, "cache", &[]);
    let victim = build_fixture("", "b");
    let mut json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&closure).unwrap()).unwrap();
    let entries = json.as_array_mut().expect("Nix 2.8 prints a list");
    let entry = entries.iter_mut().find(|e| e["path"] == victim.as_str()).unwrap();
    let narinfo = narinfo_of(&cache, &victim);
    let text = fs::read_to_string(&narinfo).unwrap();
    let hash = field(&parse_narinfo(&text), "NarHash").to_owned();
    entry["ca"] = serde_json::Value::String(format!("fixed:r:{hash}"));
    let lying = tmp.join("lying.json");
    fs::write(&lying, serde_json::to_string(&json).unwrap()).unwrap();
    let err = run_fail(ours().arg("--closure").arg(&lying).arg("--out").arg(tmp.join("out")));
    assert!(err.contains(&victim) && err.contains("gives the store path") && err.contains("Nix would refuse"), "{err}");

    fs::write(&narinfo, format!("{text}CA: fixed:r:{hash}\n")).unwrap();
    let (ok, stdout, stderr) = run(ours().arg("verify").arg(&cache));
    let said = format!("{stdout}{stderr}");
    assert!(!ok && said.contains("field `CA`") && said.contains("gives the store path"), "{said}");
    let (ok, stderr) = nix_copy(&cache, &tmp.join("store"), &victim);
    assert!(!ok, "Nix took it:\n{stderr}");
}

/// One change to a valid cache directory.
#[derive(Debug, Clone)]
enum Mutation {
    /// File number `.0` (of the cache's files, sorted) replaced by a symlink
    /// to an identical copy outside the cache.
    Symlink(usize),
    /// Replaced by a FIFO.
    Fifo(usize),
    /// Cut to `.1` per mille of its length.
    Truncate(usize, u16),
    /// One bit flipped at `.1` per mille of its length.
    Flip(usize, u16, u8),
    /// Narinfo number `.0` renamed to the name of narinfo `.1`.
    Rename(usize, usize),
    /// Field `.1` of narinfo `.0` given the value it has in narinfo `.2`.
    Swap(usize, usize, usize),
}

const SWAPPED: [&str; 6] = ["URL", "FileHash", "FileSize", "NarHash", "NarSize", "References"];

fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
    use proptest::prelude::*;
    prop_oneof![
        any::<usize>().prop_map(Mutation::Symlink),
        any::<usize>().prop_map(Mutation::Fifo),
        (any::<usize>(), 0..1000u16).prop_map(|(f, at)| Mutation::Truncate(f, at)),
        (any::<usize>(), 0..1000u16, 0..8u8).prop_map(|(f, at, bit)| Mutation::Flip(f, at, bit)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Rename(a, b)),
        (any::<usize>(), 0..SWAPPED.len(), any::<usize>()).prop_map(|(a, f, b)| Mutation::Swap(a, f, b)),
    ]
}

/// The regular files of `dir`, relative, sorted; read without following a
/// symlink or opening a FIFO that an earlier mutation left.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(dir.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            let rel = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(rel);
            } else if kind.is_file() {
                found.push(rel);
            }
        }
    }
    found.sort();
    found
}

/// Applies `m` to the cache `dir`; `outside` is a directory beside it.
/// Returns whether the mutation put a symlink or FIFO in the cache.
fn apply(m: &Mutation, dir: &Path, outside: &Path) -> bool {
    // Not nix-cache-info: verify holds it to more than Nix does (a StoreDir).
    let all: Vec<PathBuf> = files(dir).into_iter().filter(|f| f != Path::new("nix-cache-info")).collect();
    let narinfos: Vec<&PathBuf> = all.iter().filter(|f| f.to_string_lossy().ends_with(".narinfo")).collect();
    let pick = |i: usize| dir.join(&all[i % all.len()]);
    match *m {
        Mutation::Symlink(i) => {
            let file = pick(i);
            let copy = outside.join(format!("copy-{}", file.file_name().unwrap().to_string_lossy()));
            fs::copy(&file, &copy).unwrap();
            fs::remove_file(&file).unwrap();
            symlink(&copy, &file).unwrap();
            true
        }
        Mutation::Fifo(i) => {
            let file = pick(i);
            fs::remove_file(&file).unwrap();
            run_ok(Command::new("mkfifo").arg(&file));
            true
        }
        Mutation::Truncate(i, at) => {
            let file = pick(i);
            let bytes = fs::read(&file).unwrap();
            fs::write(&file, &bytes[..bytes.len() * at as usize / 1000]).unwrap();
            false
        }
        Mutation::Flip(i, at, bit) => {
            let file = pick(i);
            let mut bytes = fs::read(&file).unwrap();
            if !bytes.is_empty() {
                let at = (bytes.len() - 1) * at as usize / 1000;
                bytes[at] ^= 1 << bit;
                fs::write(&file, bytes).unwrap();
            }
            false
        }
        Mutation::Rename(a, b) => {
            let (a, b) = (dir.join(narinfos[a % narinfos.len()]), dir.join(narinfos[b % narinfos.len()]));
            fs::rename(a, b).unwrap();
            false
        }
        Mutation::Swap(a, f, b) => {
            let (a, b) = (dir.join(narinfos[a % narinfos.len()]), dir.join(narinfos[b % narinfos.len()]));
            let key = SWAPPED[f];
            let (text, other) = (fs::read_to_string(&a).unwrap(), fs::read_to_string(&b).unwrap());
            let value = |t: &str| t.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap().to_owned();
            fs::write(&a, text.replace(&value(&text), &value(&other))).unwrap();
            false
        }
    }
}

/// Runs `cmd` under `timeout`, so that a command waiting on a FIFO fails the
/// test instead of hanging it. Returns whether it succeeded, and what it said.
fn bounded(cmd: &mut Command) -> (bool, String) {
    let mut timed = Command::new("timeout");
    timed.arg("60").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed.output().unwrap();
    assert_ne!(out.status.code(), Some(124), "{cmd:?} hung");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Random mutations of a valid cache (files replaced by symlinks to
/// identical copies outside, FIFOs, truncations, flipped bits, renamed and
/// edited narinfos) never make `verify` pass a cache Nix rejects, nor make
/// `sign --out`, `merge` or `--reuse` produce a cache that does not verify,
/// that Nix rejects, or that differs from a fresh build; and with a symlink
/// or FIFO in it, `verify` fails and the others either fail or leave it out.
#[test]
fn mutated_caches_never_pass_unchecked() {
    use proptest::test_runner::{Config, TestRunner};
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("integrity-mutations");
    let (key, _) = generate_key(&tmp, "integrity-5");
    let (root, pristine, closure) = cache_of(&tmp, "pristine", &["--compression", "xz", "--write-nar-listing"]);
    let fresh = tree(&pristine);
    let round = std::cell::Cell::new(0);
    // The same cases on every run (CI must not flake); more by hand with
    // MBC_MUTATION_CASES, from another seed with MBC_MUTATION_SEED.
    let cases = std::env::var("MBC_MUTATION_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(24);
    let seed: u64 = std::env::var("MBC_MUTATION_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or(15);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed_bytes);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = proptest::collection::vec(mutation(), 1..3);
    runner
        .run(&strategy, |mutations| {
            let n = round.get();
            round.set(n + 1);
            let dir = tmp.join(format!("round-{n}"));
            let (cache, outside) = (dir.join("cache"), dir.join("outside"));
            fs::create_dir_all(&outside).unwrap();
            run_ok(Command::new("cp").arg("-a").arg(&pristine).arg(&cache));
            let mut odd = false;
            for m in &mutations {
                odd |= apply(m, &cache, &outside);
            }
            let nix_takes = |c: &Path, store: &str| {
                let (ok, stderr) = nix_copy(c, &dir.join(store), &root);
                if !ok {
                    eprintln!("nix copy from {}: {stderr}", c.display());
                }
                ok && run(nix_cmd("nix-store")
                    .arg("--store")
                    .arg(dir.join(store))
                    .args(["--verify", "--check-contents"]))
                .0
            };

            let (verified, said) = bounded(ours().arg("verify").arg(&cache));
            if odd {
                assert!(!verified, "{mutations:?}: verify passed a cache with a symlink or FIFO:\n{said}");
            }
            if verified {
                assert!(nix_takes(&cache, "store-verified"), "{mutations:?}: verify passed what Nix rejects:\n{said}");
            }
            // What sign and merge write describes only checked bytes: its
            // only problems can be the references they copy as they are
            // (a dangling one, a cycle), and none where the cache verified.
            let only_reference_problems = |said: &str| {
                said.lines()
                    .filter(|l| l.starts_with("problem:"))
                    .all(|l| l.contains("which has no (valid) narinfo") || l.contains("its references form a cycle"))
            };
            for (what, out) in [("sign --out", dir.join("signed")), ("merge", dir.join("merged"))] {
                let wrote = if what == "merge" {
                    bounded(ours().args(["merge", "--no-sync", "--partial", "--out"]).arg(&out).arg(&cache)).0
                } else {
                    bounded(sign(&key, Some(&out), &cache).arg("--no-sync")).0
                };
                if !wrote {
                    continue;
                }
                let (ok, said) = bounded(ours().arg("verify").arg(&out));
                assert!(ok || only_reference_problems(&said), "{mutations:?}: {what} wrote unchecked bytes:\n{said}");
                if verified {
                    assert!(ok, "{mutations:?}: {what} of a valid cache does not verify:\n{said}");
                    assert!(nix_takes(&out, &format!("store-{what}")), "{mutations:?}: Nix rejects what {what} wrote");
                }
            }
            let reused = dir.join("reused");
            let reuse = bounded(
                ours()
                    .arg("--closure")
                    .arg(&closure)
                    .arg("--out")
                    .arg(&reused)
                    .args(["--compression", "xz", "--write-nar-listing", "--no-sync", "--reuse"])
                    .arg(&cache),
            );
            if reuse.0 {
                assert!(
                    tree(&reused) == fresh,
                    "{mutations:?}: --reuse wrote another cache than a fresh build:\n{}",
                    reuse.1
                );
            }
            let _ = fs::remove_dir_all(&dir);
            Ok(())
        })
        .unwrap();
}
