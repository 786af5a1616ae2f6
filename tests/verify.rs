//! `make-binary-cache verify` on caches written by us and by real
//! `nix copy`, intact and tampered with in every way a cache can go wrong;
//! signatures made by real `nix store sign`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{
    TempDir, build_fixture, closure_of, copy_closure_from, flat_hashes, hash_part, list_dir, nix_cmd, ours, run,
    run_fail, run_ok, skip_without_nix,
};

fn verify(cache: &Path) -> Command {
    let mut cmd = ours();
    cmd.arg("verify").arg(cache);
    cmd
}

/// The fixture closure: its root, and every path by attribute.
struct Fixture {
    root: String,
    /// A single file, referenced by `b`.
    c: String,
    /// A directory with a file (`share/big.txt`) big enough to compress.
    b: String,
}

fn fixture() -> Fixture {
    Fixture { root: build_fixture("", "a"), c: build_fixture("", "c"), b: build_fixture("", "b") }
}

/// A cache of the fixture closure written by our builder.
fn our_cache(tmp: &TempDir, fixture: &Fixture, compression: &str) -> PathBuf {
    let closure = tmp.join("closure.json");
    if !closure.exists() {
        let json = run_ok(nix_cmd("nix").args(["path-info", "--json", "--recursive"]).arg(&fixture.root));
        fs::write(&closure, json).unwrap();
    }
    let out = tmp.join(format!("ours-{compression}"));
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&out).args(["--compression", compression]));
    out
}

/// A copy of `cache` to tamper with.
fn copy(cache: &Path, to: &Path) -> PathBuf {
    run_ok(Command::new("cp").arg("-r").arg(cache).arg(to));
    to.to_path_buf()
}

fn narinfo_file(cache: &Path, store_path: &str) -> PathBuf {
    cache.join(format!("{}.narinfo", hash_part(store_path)))
}

fn narinfo_field(cache: &Path, store_path: &str, key: &str) -> String {
    let text = fs::read_to_string(narinfo_file(cache, store_path)).unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{key}: "))).unwrap().to_owned()
}

/// Replaces the value of `key` in the narinfo of `store_path`.
fn set_narinfo_field(cache: &Path, store_path: &str, key: &str, value: &str) {
    let file = narinfo_file(cache, store_path);
    let text = fs::read_to_string(&file).unwrap();
    let old = format!("{key}: {}\n", narinfo_field(cache, store_path, key));
    assert!(text.contains(&old));
    fs::write(&file, text.replace(&old, &format!("{key}: {value}\n"))).unwrap();
}

fn nar_path(cache: &Path, store_path: &str) -> PathBuf {
    cache.join(narinfo_field(cache, store_path, "URL"))
}

/// Runs verify, which must fail; its output must name `store_path` on a
/// problem line saying each of `what`.
fn fails_naming(cache: &Path, store_path: &str, what: &[&str]) -> String {
    let out = run_fail(&mut verify(cache));
    for w in what {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("problem: {store_path}")) && l.contains(w)),
            "no problem line for {store_path} saying {w:?}:\n{out}"
        );
    }
    assert!(out.contains("is not a valid binary cache") && out.contains("rebuild it, or copy it again"), "{out}");
    out
}

fn passes(cmd: &mut Command) -> String {
    let (ok, _, err) = run(cmd);
    assert!(ok, "verify failed:\n{err}");
    assert!(err.contains(" 0 problems"), "{err}");
    err
}

#[test]
fn caches_written_by_us_and_by_nix_copy_pass() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("verify-good");
    let fixture = fixture();
    let paths = closure_of(&fixture.root).len();
    let mut caches: Vec<PathBuf> = ["none", "xz", "zstd"].iter().map(|c| our_cache(&tmp, &fixture, c)).collect();
    for (name, query) in [("nix-xz", ""), ("nix-none", "?compression=none")] {
        let dir = tmp.join(name);
        run_ok(
            nix_cmd("nix").args(["copy", "--to"]).arg(format!("file://{}{query}", dir.display())).arg(&fixture.root),
        );
        caches.push(dir);
    }
    for cache in caches {
        let log = passes(&mut verify(&cache));
        assert!(log.contains(&format!("{paths} store paths checked")) && log.contains("0 warnings"), "{log}");
        // Real Nix agrees the cache is good: the closure substitutes from it.
        let store = tmp.join(format!("store-{}", cache.file_name().unwrap().to_string_lossy()));
        copy_closure_from(&cache, &store, &[&fixture.root]);
    }
}

#[test]
fn damaged_nars_are_caught() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("verify-damaged");
    let fixture = fixture();
    let none = our_cache(&tmp, &fixture, "none");
    let zstd = our_cache(&tmp, &fixture, "zstd");
    let xz = our_cache(&tmp, &fixture, "xz");
    let b = &fixture.b;

    // Truncated, uncompressed and compressed.
    for (cache, what) in [
        (&none, &["FileSize and NarSize", "FileHash and NarHash", "the NAR ends early"][..]),
        (&zstd, &["FileSize", "FileHash", "decompressing"][..]),
        (&xz, &["FileSize", "FileHash", "decompressing"][..]),
    ] {
        let bad = copy(cache, &tmp.join(format!("truncated-{}", cache.file_name().unwrap().to_string_lossy())));
        let nar = nar_path(&bad, b);
        let len = fs::metadata(&nar).unwrap().len();
        fs::OpenOptions::new().write(true).open(&nar).unwrap().set_len(len - 100).unwrap();
        fails_naming(&bad, b, what);
    }

    // One flipped byte in the middle of the file.
    for (cache, what) in [
        (&none, &["FileHash and NarHash"][..]),
        (&zstd, &["FileHash: the narinfo says"][..]),
        (&xz, &["FileHash: the narinfo says"][..]),
    ] {
        let bad = copy(cache, &tmp.join(format!("flipped-{}", cache.file_name().unwrap().to_string_lossy())));
        let nar = nar_path(&bad, b);
        let mut bytes = fs::read(&nar).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        fs::write(&nar, bytes).unwrap();
        let out = fails_naming(&bad, b, what);
        // Only b is damaged.
        let problems: Vec<&str> = out.lines().filter(|l| l.starts_with("problem:")).collect();
        assert!(problems.iter().all(|l| l.starts_with(&format!("problem: {b}:"))), "{out}");
    }
}

/// A tampered NAR whose narinfo was given the matching FileHash and
/// FileSize (and URL): only the NarHash can tell.
#[test]
fn a_tampered_nar_with_a_matching_file_hash_is_caught_by_the_nar_hash() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("verify-nar-hash");
    let fixture = fixture();
    let b = &fixture.b;
    for compression in ["none", "zstd"] {
        let bad = copy(&our_cache(&tmp, &fixture, compression), &tmp.join(format!("tampered-{compression}")));
        let old_nar = nar_path(&bad, b);
        let mut nar = fs::read(&old_nar).unwrap();
        if compression == "zstd" {
            nar = zstd::decode_all(&nar[..]).unwrap();
        }
        // A change inside a file's contents keeps the NAR well-formed.
        let at = nar.windows(9).position(|w| w == b"line 1000").unwrap();
        nar[at + 5] = b'9';
        let file = if compression == "zstd" { zstd::encode_all(&nar[..], 3).unwrap() } else { nar };
        fs::remove_file(&old_nar).unwrap();
        let scratch = bad.join("nar/scratch");
        fs::write(&scratch, &file).unwrap();
        let hash = flat_hashes(std::slice::from_ref(&scratch)).remove(0);
        let ext = if compression == "zstd" { ".zst" } else { "" };
        let url = format!("nar/{hash}.nar{ext}");
        fs::rename(&scratch, bad.join(&url)).unwrap();
        set_narinfo_field(&bad, b, "URL", &url);
        set_narinfo_field(&bad, b, "FileHash", &format!("sha256:{hash}"));
        set_narinfo_field(&bad, b, "FileSize", &file.len().to_string());
        let out = fails_naming(&bad, b, &["NarHash: the narinfo says"]);
        assert!(!out.contains("FileHash") && !out.contains("FileSize"), "{out}");
        assert_eq!(out.lines().filter(|l| l.starts_with("problem:")).count(), 1, "{out}");
    }
}

#[test]
fn edited_narinfos_and_missing_references_are_caught() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("verify-narinfo");
    let fixture = fixture();
    let zstd = our_cache(&tmp, &fixture, "zstd");
    let (b, c) = (&fixture.b, &fixture.c);

    // c is referenced by b: without its narinfo the cache is not closed.
    let bad = copy(&zstd, &tmp.join("no-c"));
    fs::remove_file(narinfo_file(&bad, c)).unwrap();
    let out = fails_naming(&bad, b, &[&format!("it references {c}, which has no (valid) narinfo")]);
    // c's NAR is now named by no narinfo: a warning.
    assert!(out.contains("warning:") && out.contains("no narinfo names this file"), "{out}");

    // NarHash edited (SHA-256 of the empty string).
    let bad = copy(&zstd, &tmp.join("nar-hash"));
    set_narinfo_field(&bad, c, "NarHash", "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
    fails_naming(&bad, c, &["NarHash: the narinfo says sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"]);

    // NarSize edited: too small stops decompression there; too large is short.
    let bad = copy(&zstd, &tmp.join("nar-size"));
    let size: u64 = narinfo_field(&bad, b, "NarSize").parse().unwrap();
    set_narinfo_field(&bad, b, "NarSize", &(size - 8).to_string());
    set_narinfo_field(&bad, c, "NarSize", &(size + 8).to_string());
    let out = fails_naming(&bad, b, &["decompresses to more"]);
    assert!(out.contains(&format!("problem: {c}: NarSize")), "{out}");

    // A narinfo under another path's name, an unknown field, a URL leaving
    // the cache: each named, all reported in one run.
    let bad = copy(&zstd, &tmp.join("odd"));
    fs::rename(narinfo_file(&bad, c), bad.join("00000000000000000000000000000000.narinfo")).unwrap();
    let text = fs::read_to_string(narinfo_file(&bad, b)).unwrap();
    fs::write(narinfo_file(&bad, b), format!("{text}System: x86_64-linux\n")).unwrap();
    let root_nar = narinfo_field(&bad, &fixture.root, "URL");
    set_narinfo_field(&bad, &fixture.root, "URL", "../../etc/passwd");
    let out = run_fail(&mut verify(&bad));
    for expected in [
        format!("problem: {c} (00000000000000000000000000000000.narinfo): its narinfo is named"),
        format!("problem: {b} ({}.narinfo): line ", hash_part(b)),
        "unknown field `System`".to_owned(),
        format!("problem: {}: URL \"../../etc/passwd\" is not a plain relative path", fixture.root),
    ] {
        assert!(out.contains(&expected), "{expected:?} not in:\n{out}");
    }
    // The NARs of refused narinfos are accounted for by their problems; the
    // root's NAR is no longer named.
    let unnamed: Vec<&str> = out.lines().filter(|l| l.contains("no narinfo names this file")).collect();
    assert!(matches!(unnamed.as_slice(), [line] if line.contains(&root_nar)), "{out}");
}

#[test]
fn signatures_are_checked_with_public_keys() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("verify-sigs");
    let fixture = fixture();
    let key = |name: &str, label: &str| {
        let (secret, public) = (tmp.join(format!("{label}.sk")), tmp.join(format!("{label}.pk")));
        run_ok(nix_cmd("nix-store").args(["--generate-binary-cache-key", name]).arg(&secret).arg(&public));
        (secret, fs::read_to_string(public).unwrap())
    };
    let (secret, public) = key("test-1", "good");
    let (_, other_name) = key("other-1", "other");
    let (_, same_name_other_key) = key("test-1", "impostor");

    let unsigned = our_cache(&tmp, &fixture, "zstd");
    let signed = copy(&unsigned, &tmp.join("signed"));
    run_ok(
        nix_cmd("nix")
            .args(["store", "sign", "--store"])
            .arg(format!("file://{}", signed.display()))
            .arg("--key-file")
            .arg(&secret)
            .arg("-r")
            .arg(&fixture.root),
    );
    // Real Nix accepts the signatures.
    run_ok(
        nix_cmd("nix")
            .args(["copy", "--option", "require-sigs", "true", "--option", "trusted-public-keys"])
            .arg(public.trim())
            .arg("--from")
            .arg(format!("file://{}", signed.display()))
            .arg("--to")
            .arg(tmp.join("store"))
            .arg(&fixture.root),
    );

    passes(verify(&signed).arg("--public-key").arg(public.trim()).arg("--require-sigs"));
    passes(verify(&signed).arg("--public-key").arg(&other_name).arg("--public-key").arg(&public));
    passes(verify(&signed).arg("--public-key-file").arg(tmp.join("good.pk")));
    // Without keys, signatures are not looked at.
    passes(&mut verify(&unsigned));

    let root = &fixture.root;
    let out = run_fail(verify(&unsigned).arg("--public-key").arg(&public));
    assert!(out.contains(&format!("problem: {root}: it has no signature")), "{out}");
    let out = run_fail(verify(&signed).arg("--public-key").arg(&other_name));
    assert!(out.contains(&format!("problem: {root}: it has no signature by a given key, only by test-1")), "{out}");
    let out = run_fail(verify(&signed).arg("--public-key").arg(&same_name_other_key));
    assert!(out.contains(&format!("problem: {root}: the signature by test-1 does not verify")), "{out}");
    // Every path of the closure is reported, not only the first.
    let paths = closure_of(root).len();
    assert_eq!(out.lines().filter(|l| l.contains("does not verify")).count(), paths, "{out}");

    // A signed narinfo whose references were changed: the signature no longer
    // covers it (and the reference is missing too).
    let bad = copy(&signed, &tmp.join("edited-refs"));
    let refs = narinfo_field(&bad, &fixture.b, "References");
    set_narinfo_field(&bad, &fixture.b, "References", &format!("{refs} 00000000000000000000000000000000-x"));
    let out = run_fail(verify(&bad).arg("--public-key").arg(&public));
    assert!(out.contains(&format!("problem: {}: the signature by test-1 does not verify", fixture.b)), "{out}");

    let err = run_fail(verify(&signed).arg("--require-sigs"));
    assert!(err.contains("--require-sigs needs at least one --public-key"), "{err}");
    let err = run_fail(verify(&signed).args(["--public-key", "test-1:short"]));
    assert!(err.contains("--public-key") && err.contains("test-1"), "{err}");
}

#[test]
fn an_extra_nar_file_is_only_a_warning() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("verify-extra");
    let fixture = fixture();
    let cache = our_cache(&tmp, &fixture, "xz");
    let extra = cache.join("nar/leftover.nar.xz");
    fs::File::create(&extra).unwrap().write_all(b"not referenced").unwrap();
    let log = passes(&mut verify(&cache));
    assert!(log.contains(&format!("warning: {}: no narinfo names this file", extra.display())), "{log}");
    assert!(log.contains("0 problems, 1 warning\n"), "{log}");
    assert!(list_dir(&cache.join("nar")).contains(&"leftover.nar.xz".to_owned()));
}

#[test]
fn not_a_cache_and_bad_arguments() {
    let tmp = TempDir::new("verify-args");
    let err = run_fail(&mut verify(&tmp.join("missing")));
    assert!(err.contains("no such directory"), "{err}");
    let err = run_fail(&mut verify(tmp.path()));
    assert!(err.contains("has no nix-cache-info"), "{err}");
    fs::write(tmp.join("nix-cache-info"), "StoreDir: nix/store\n").unwrap();
    let err = run_fail(&mut verify(tmp.path()));
    assert!(err.contains("StoreDir \"nix/store\"") && err.contains("absolute"), "{err}");
    fs::write(tmp.join("nix-cache-info"), "WantMassQuery: 1\n").unwrap();
    let err = run_fail(&mut verify(tmp.path()));
    assert!(err.contains("no StoreDir"), "{err}");
    let err = run_fail(ours().arg("verify"));
    assert!(err.contains("CACHE directory to verify is required"), "{err}");
    let err = run_fail(ours().args(["verify", "a", "b"]));
    assert!(err.contains("takes one CACHE;"), "{err}");
    let err = run_fail(ours().args(["verify", "--jobs", "0", "a"]));
    assert!(err.contains("--jobs 0: give at least 1"), "{err}");
    let help = run_ok(ours().args(["verify", "--help"]));
    assert!(help.contains("--public-key KEY") && help.contains("FileHash"), "{help}");
    assert!(run_ok(ours().arg("--help")).contains("make-binary-cache verify"));
}

/// The NAR reader on what real `nix-store --dump` writes: every entry it
/// reports is in the store path, with the contents at the offset it gives.
#[test]
fn the_nar_reader_reads_what_nix_dumps() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;

    use make_binary_cache::format::nar_reader::{Event, NarReader};

    if skip_without_nix() {
        return;
    }
    let fixture = fixture();
    for store_path in closure_of(&fixture.root) {
        let nar = nix_cmd("nix-store").arg("--dump").arg(&store_path).output().unwrap().stdout;
        let root = Path::new(&store_path);
        let on_disk = |path: &[u8]| {
            if path.is_empty() { root.to_path_buf() } else { root.join(std::ffi::OsStr::from_bytes(path)) }
        };
        let mut entries = 0;
        let mut reader = NarReader::new(|event| {
            entries += 1;
            match event {
                Event::Directory { path } => assert!(fs::symlink_metadata(on_disk(path.as_bytes())).unwrap().is_dir()),
                Event::DirectoryEnd { .. } => entries -= 1,
                Event::Regular { path, executable, size, offset } => {
                    let file = on_disk(path.as_bytes());
                    let contents = fs::read(&file).unwrap();
                    assert_eq!(&nar[offset as usize..][..size as usize], &contents[..], "{}", file.display());
                    let mode = fs::symlink_metadata(&file).unwrap().permissions().mode();
                    assert_eq!(executable, mode & 0o100 != 0, "{}", file.display());
                }
                Event::Symlink { path, target } => {
                    assert_eq!(fs::read_link(on_disk(path.as_bytes())).unwrap().as_os_str().as_bytes(), target)
                }
            }
        });
        for chunk in nar.chunks(1000) {
            reader.feed(chunk).unwrap();
        }
        assert_eq!(reader.finish().unwrap(), nar.len() as u64);
        let on_disk_count = run_ok(Command::new("find").arg(&store_path)).lines().count();
        assert_eq!(entries, on_disk_count, "{store_path}");
    }
}
