//! `make-binary-cache sign`, judged by real Nix: a signed cache is accepted by
//! `nix copy` with `require-sigs = true` and our public key trusted, and
//! refused when another key is trusted; signing in place and into a copy,
//! caches from the CLI and from `mkBinaryCache`, idempotence, other keys'
//! signatures, and the checks that refuse a cache.
//!
//! That a CLI cache keeps the signatures `nix path-info --json` reports is
//! tested in tests/hostile.rs (`real_signatures_and_content_addresses_survive_require_sigs`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;

/// A key pair made by Nix: (secret key file, public key text).
struct Key {
    secret: PathBuf,
    public: String,
}

fn generate_key(tmp: &TempDir, name: &str, label: &str) -> Key {
    let (secret, public) = (tmp.join(format!("{label}.sk")), tmp.join(format!("{label}.pk")));
    run_ok(nix_cmd("nix-store").args(["--generate-binary-cache-key", name]).arg(&secret).arg(&public));
    Key { secret, public: fs::read_to_string(&public).unwrap().trim().to_owned() }
}

/// The fixture closure's root and a zstd cache of it written by our CLI.
fn cli_cache(tmp: &TempDir, name: &str) -> (String, PathBuf) {
    let root = build_fixture("", "a");
    let closure = tmp.join("closure.json");
    if !closure.exists() {
        path_info(tmp, "closure.json", true, &[&root]);
    }
    let cache = tmp.join(name);
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache));
    (root, cache)
}

/// `nix copy` of `root` from `cache` into the fresh store `tmp/<store>`,
/// requiring signatures by `trusted` only. Returns whether it succeeded and
/// its stderr; on success the copied store is verified.
fn copy_requiring(cache: &Path, root: &str, trusted: &str, tmp: &TempDir, store: &str) -> (bool, String) {
    let store = tmp.join(store);
    let config = format!("{NIX_CONFIG}require-sigs = true\ntrusted-public-keys = {trusted}\n");
    let (ok, _, stderr) = run(nix_cmd("nix")
        .env("NIX_CONFIG", config)
        .args(["copy", "--from"])
        .arg(format!("file://{}", cache.display()))
        .arg("--to")
        .arg(&store)
        .arg(root));
    if ok {
        assert_store_holds(&store, &[root], &cache.display().to_string());
    }
    (ok, stderr)
}

/// Nix accepts `cache` trusting `key` and refuses it trusting `other`; so
/// does `make-binary-cache verify`.
fn assert_signed_by(cache: &Path, root: &str, key: &Key, other: &Key, tmp: &TempDir) {
    run_ok(ours().args(["verify", "--public-key", &key.public]).arg(cache));
    let err = run_fail(ours().args(["verify", "--public-key", &other.public]).arg(cache));
    // Another name, or the same name with another key (a replaced signature),
    // and what to do about it (issue 17, item 7).
    assert!(err.contains("no signature by a given key") || err.contains("does not verify"), "{err}");
    assert!(err.contains("signature problem") && err.contains("make-binary-cache sign --secret-key-file"), "{err}");
    assert!(!err.contains("rebuild it"), "{err}");
    // A key file given as a key is pointed at --public-key-file.
    let file = tmp.join(unique("pk"));
    fs::write(&file, &key.public).unwrap();
    let err = run_fail(ours().args(["verify", "--public-key"]).arg(&file).arg(cache));
    assert!(err.contains(&format!("use --public-key-file {}", file.display())), "{err}");
    run_ok(ours().args(["verify", "--public-key-file"]).arg(&file).arg(cache));
    let label = unique("store");
    let (ok, stderr) = copy_requiring(cache, root, &key.public, tmp, &format!("{label}-good"));
    assert!(ok, "nix copy with require-sigs and our key failed:\n{stderr}");
    let (ok, stderr) = copy_requiring(cache, root, &other.public, tmp, &format!("{label}-other"));
    assert!(!ok && stderr.contains("lacks a valid signature"), "another key was accepted:\n{stderr}");
}

fn narinfos(dir: &Path) -> Vec<PathBuf> {
    list_dir(dir).into_iter().filter(|n| n.ends_with(".narinfo")).map(|n| dir.join(n)).collect()
}

fn sigs(narinfo: &Path) -> Vec<String> {
    parse_narinfo(&fs::read_to_string(narinfo).unwrap()).remove("Sig").unwrap_or_default()
}

#[test]
fn cli_cache_signed_in_place_and_into_a_copy_passes_require_sigs() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("sign-cli");
    let key = generate_key(&tmp, "sign-test-1", "key");
    let other = generate_key(&tmp, "sign-other-1", "other");

    // Unsigned, Nix refuses it: the control for everything below.
    let (root, cache) = cli_cache(&tmp, "in-place");
    let (ok, stderr) = copy_requiring(&cache, &root, &key.public, &tmp, "store-unsigned");
    assert!(!ok && stderr.contains("lacks a valid signature"), "an unsigned cache was accepted:\n{stderr}");

    // The fixture may carry signatures from other tests (path-info passes
    // them on): ours is added to them.
    let unsigned: Vec<Vec<String>> = narinfos(&cache).iter().map(|f| sigs(f)).collect();
    let (ok, _, log) = run(&mut sign(&key.secret, None, &cache));
    assert!(ok, "{log}");
    // One unit on the line: MiB with MiB/s.
    let summary = format!("{} narinfos signed (0 unchanged), ", unsigned.len());
    assert!(log.contains(&summary) && log.trim_end().ends_with(" MiB/s)") && !log.contains("MB"), "{log}");
    for (file, before) in narinfos(&cache).iter().zip(unsigned) {
        let after = sigs(file);
        assert_eq!(after.len(), before.len() + 1, "{}: {after:?}", file.display());
        assert!(before.iter().all(|s| after.contains(s)), "{}: {after:?}", file.display());
        assert_eq!(after.iter().filter(|s| s.starts_with("sign-test-1:")).count(), 1, "{}", file.display());
    }
    assert_signed_by(&cache, &root, &key, &other, &tmp);

    // --out: the copy is signed, the original left exactly as it was.
    let (_, original) = cli_cache(&tmp, "original");
    let before = tree(&original);
    let copy = tmp.join("signed-copy");
    run_ok(&mut sign(&key.secret, Some(&copy), &original));
    assert_eq!(tree(&original), before, "sign --out changed the original");
    assert_signed_by(&copy, &root, &key, &other, &tmp);
    // Same files, only the narinfos differ, by their Sig line.
    let after = tree(&copy);
    let names = |t: &[(String, Vec<u8>)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&before));
    for ((name, signed), (_, unsigned)) in after.iter().zip(&before) {
        if name.ends_with(".narinfo") {
            let (signed, unsigned) = (String::from_utf8_lossy(signed), String::from_utf8_lossy(unsigned));
            let without_sig: String =
                signed.lines().filter(|l| !l.starts_with("Sig: ")).map(|l| format!("{l}\n")).collect();
            assert_eq!(without_sig, unsigned, "{name}");
        } else {
            assert!(signed == unsigned, "{name} differs in the copy");
        }
    }
    // The same signatures in both ways.
    for file in narinfos(&cache) {
        assert_eq!(fs::read(&file).unwrap(), fs::read(copy.join(file.file_name().unwrap())).unwrap());
    }
}

#[test]
fn mk_binary_cache_store_path_signed_into_a_copy() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("sign-nix-build");
    let key = generate_key(&tmp, "sign-test-1", "key");
    let other = generate_key(&tmp, "sign-other-1", "other");
    let root = build_fixture("", "a");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_make-binary-cache"));
    let cache = run_ok(&mut nix_build_expr(&bin, "", "mkBinaryCache { rootPaths = [ fixture ]; }"));
    let cache = Path::new(&cache);

    // In place would change a store path (root could): refused, untouched.
    let err = run_fail(&mut sign(&key.secret, None, cache));
    assert!(err.contains("is in the Nix store") && err.contains("use --out DEST"), "{err}");
    run_ok(nix_cmd("nix-store").arg("--verify-path").arg(cache));

    let copy = tmp.join("signed");
    run_ok(&mut sign(&key.secret, Some(&copy), cache));
    assert_signed_by(&copy, &root, &key, &other, &tmp);
    run_ok(nix_cmd("nix-store").arg("--verify-path").arg(cache));
    // The copy is ours to change: writable, and it can be signed again in place.
    assert!(!fs::metadata(copy.join("nix-cache-info")).unwrap().permissions().readonly());
    run_ok(&mut sign(&other.secret, None, &copy));
    assert_signed_by(&copy, &root, &other, &generate_key(&tmp, "sign-third-1", "third"), &tmp);
}

#[test]
fn cache_written_by_nix_copy_signed_into_a_copy() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("sign-nix-copy");
    let key = generate_key(&tmp, "sign-test-1", "key");
    let other = generate_key(&tmp, "sign-other-1", "other");
    let root = build_fixture("", "a");
    let cache = tmp.join("nix-copy");
    run_ok(
        nix_cmd("nix")
            .args(["copy", "--to"])
            .arg(format!("file://{}?compression=xz&write-nar-listing=true", cache.display()))
            .arg(&root),
    );
    let listings: Vec<String> = list_dir(&cache).into_iter().filter(|n| n.ends_with(".ls")).collect();
    assert!(!listings.is_empty(), "nix copy wrote no NAR listings");

    let copy = tmp.join("signed");
    run_ok(&mut sign(&key.secret, Some(&copy), &cache));
    assert_signed_by(&copy, &root, &key, &other, &tmp);
    for name in listings {
        assert_eq!(fs::read(copy.join(&name)).unwrap(), fs::read(cache.join(&name)).unwrap(), "{name}");
    }
}

#[test]
fn signing_is_idempotent_and_keeps_other_keys() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("sign-idempotent");
    let a = generate_key(&tmp, "sign-a-1", "a");
    let b = generate_key(&tmp, "sign-b-1", "b");
    let nobody = generate_key(&tmp, "sign-nobody-1", "nobody");
    let (root, cache) = cli_cache(&tmp, "cache");
    let unsigned: Vec<usize> = narinfos(&cache).iter().map(|f| sigs(f).len()).collect();

    run_ok(&mut sign(&a.secret, None, &cache));
    let once = tree(&cache);
    run_ok(sign(&a.secret, None, &cache).arg("--no-sync"));
    assert!(tree(&cache) == once, "signing twice changed the cache");
    let copy = tmp.join("copy");
    run_ok(sign(&a.secret, Some(&copy), &cache).arg("--no-sync"));
    assert!(tree(&copy) == once, "a signed copy of a signed cache differs from it");

    // Another key's signature is added beside A's, which is kept as it was.
    run_ok(&mut sign(&b.secret, None, &cache));
    for (file, unsigned) in narinfos(&cache).iter().zip(unsigned) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let a_only = sigs(&copy.join(&name));
        let both = sigs(file);
        assert_eq!(both.len(), unsigned + 2, "{name}: {both:?}");
        assert!(a_only.iter().all(|s| both.contains(s)), "{name}: a signature was lost: {both:?}");
    }
    assert_signed_by(&cache, &root, &a, &nobody, &tmp);
    assert_signed_by(&cache, &root, &b, &nobody, &tmp);

    // A new key under A's name replaces A's signature: only the new one verifies.
    let a2 = generate_key(&tmp, "sign-a-1", "a2");
    run_ok(&mut sign(&a2.secret, None, &cache));
    for file in narinfos(&cache) {
        let all = sigs(&file);
        assert_eq!(all.iter().filter(|s| s.starts_with("sign-a-1:")).count(), 1, "{}: {all:?}", file.display());
    }
    assert_signed_by(&cache, &root, &a2, &a, &tmp);
}

#[test]
fn refuses_what_it_cannot_check() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("sign-refuses");
    let key = generate_key(&tmp, "sign-test-1", "key");
    let (_, cache) = cli_cache(&tmp, "cache");
    let before = tree(&cache);

    // The largest NAR, one byte longer: FileSize no longer matches.
    let mut nars: Vec<PathBuf> = list_dir(&cache.join("nar")).into_iter().map(|n| cache.join("nar").join(n)).collect();
    nars.sort_by_key(|n| fs::metadata(n).unwrap().len());
    let nar = nars.last().unwrap().clone();
    let original = fs::read(&nar).unwrap();
    let mut longer = original.clone();
    longer.push(0);
    fs::write(&nar, &longer).unwrap();
    let err = run_fail(&mut sign(&key.secret, None, &cache));
    assert!(err.contains(&nar.display().to_string()) && err.contains("FileSize"), "{err}");
    assert!(err.contains("nothing was signed; `make-binary-cache verify CACHE` lists every problem"), "{err}");
    // Nothing was signed, not even the narinfos whose NARs are fine.
    for file in narinfos(&cache) {
        assert!(!sigs(&file).iter().any(|s| s.starts_with("sign-test-1:")), "{} was signed", file.display());
    }
    let err = run_fail(&mut sign(&key.secret, Some(&tmp.join("copy")), &cache));
    assert!(err.contains("FileSize"), "{err}");
    assert!(narinfos(&tmp.join("copy")).is_empty());

    // Same size, other bytes: FileHash.
    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    fs::write(&nar, &flipped).unwrap();
    let err = run_fail(&mut sign(&key.secret, None, &cache));
    assert!(err.contains(&nar.display().to_string()) && err.contains("FileHash"), "{err}");

    // Missing.
    fs::remove_file(&nar).unwrap();
    let err = run_fail(&mut sign(&key.secret, None, &cache));
    assert!(err.contains(&nar.display().to_string()), "{err}");
    fs::write(&nar, &original).unwrap();
    assert!(tree(&cache) == before);

    // A narinfo that does not parse is named.
    let narinfo = narinfos(&cache)[0].clone();
    let text = fs::read_to_string(&narinfo).unwrap();
    fs::write(&narinfo, text.replace("NarSize: ", "NarSize: x")).unwrap();
    let err = run_fail(&mut sign(&key.secret, None, &cache));
    assert!(err.contains(&narinfo.display().to_string()) && err.contains("NarSize"), "{err}");
    assert!(err.contains("nothing was signed"), "{err}");
    let err = run_fail(&mut sign(&key.secret, Some(&tmp.join("never-made")), &cache));
    assert!(err.contains("NarSize") && !tmp.join("never-made").exists(), "{err}");
    fs::write(&narinfo, &text).unwrap();

    // Not a cache; a DEST that is something else.
    let not_cache = tmp.join("not-a-cache");
    fs::create_dir_all(&not_cache).unwrap();
    let err = run_fail(&mut sign(&key.secret, None, &not_cache));
    assert!(err.contains("is not a binary cache: it has no nix-cache-info; give the directory"), "{err}");
    fs::write(not_cache.join("precious"), "keep me").unwrap();
    let err = run_fail(&mut sign(&key.secret, Some(&not_cache), &cache));
    assert!(err.contains("is not empty and not a binary cache") && err.contains("choose a new or empty DEST"), "{err}");
    let other_store = tmp.join("other-store");
    fs::create_dir_all(&other_store).unwrap();
    fs::write(other_store.join("nix-cache-info"), "StoreDir: /gnu/store\n").unwrap();
    let err = run_fail(&mut sign(&key.secret, Some(&other_store), &cache));
    assert!(err.contains("is a cache of the store /gnu/store") && err.contains("choose a new or empty DEST"), "{err}");

    // DEST is the cache, or inside it (the copy would copy itself).
    let err = run_fail(&mut sign(&key.secret, Some(&cache), &cache));
    assert!(err.contains("is the cache itself"), "{err}");
    let err = run_fail(&mut sign(&key.secret, Some(&cache.join("nar/../signed")), &cache));
    assert!(err.contains("is inside the cache") && err.contains("choose a DEST outside it"), "{err}");
    let err = run_fail(&mut sign(&key.secret, Some(&cache.join("a/b/signed")), &cache));
    assert!(err.contains("is inside the cache"), "{err}");
    assert!(tree(&cache) == before);

    // A key whose halves disagree, and a missing key file.
    let secret = fs::read_to_string(&key.secret).unwrap();
    let bad_key = tmp.join("bad.sk");
    let public_b64 = key.public.split_once(':').unwrap().1;
    let other_public = generate_key(&tmp, "x", "x").public.split_once(':').unwrap().1.to_owned();
    let (name, b64) = secret.trim().split_once(':').unwrap();
    // Replace the public half (the last 32 bytes) by re-encoding with another public key.
    let mixed = mix_secret(b64, &other_public);
    assert_ne!(public_b64, other_public);
    fs::write(&bad_key, format!("{name}:{mixed}")).unwrap();
    let err = run_fail(&mut sign(&bad_key, None, &cache));
    assert!(err.contains("is not the public key"), "{err}");
    assert!(!err.contains(&b64[..16]), "the error shows the secret key: {err}");
    let err = run_fail(&mut sign(&tmp.join("missing.sk"), None, &cache));
    assert!(err.contains("missing.sk"), "{err}");
    assert!(tree(&cache) == before);
}

/// `seed_b64` is base64 of seed ‖ public key; returns base64 of seed ‖ `public_b64`.
fn mix_secret(secret_b64: &str, public_b64: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(secret_b64).unwrap();
    bytes.truncate(32);
    bytes.extend(engine.decode(public_b64).unwrap());
    engine.encode(bytes)
}

#[test]
fn help_reads_like_documentation() {
    let help = run_ok(ours().args(["sign", "--help"]));
    for needle in ["--secret-key-file KEY", "--out DEST", "--no-sync", "require-sigs", "trusted-public-keys", "EXAMPLE"]
    {
        assert!(help.contains(needle), "sign --help lacks {needle:?}:\n{help}");
    }
    assert!(run_ok(ours().arg("--help")).contains("make-binary-cache sign"));
    let err = run_fail(ours().args(["sign", "somewhere"]));
    assert!(err.contains("--secret-key-file KEY is required"), "{err}");
    let err = run_fail(ours().args(["sign", "--secret-key-file", "k", "a", "b"]));
    assert!(err.contains("takes one CACHE;"), "{err}");
}
