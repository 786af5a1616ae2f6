//! `--reuse`: NARs copied from earlier caches, judged by real Nix and by
//! comparison with fresh builds of the same closure, byte for byte.
//!
//! "Changed part of the closure": the fixture's closure plus one extra
//! single-file store path (`c` of the fixture built with another nonce),
//! which the next closure swaps for yet another one.

use std::fs;
use std::path::{Path, PathBuf};

use make_binary_cache::format::manifest::MIXED;

use crate::common::{
    TempDir, build_fixture, copy_closure_from, hash_part, nix_cmd, ours, path_info, run, run_fail, run_ok,
    skip_without_nix, tree,
};

/// `nix path-info --json --recursive` of the fixture and an extra path built
/// with `nonce`, written to `name` in `tmp`; returns the file and the roots.
fn closure_with(tmp: &TempDir, name: &str, nonce: &str) -> (PathBuf, Vec<String>) {
    let roots = vec![build_fixture("", "a"), build_fixture(nonce, "c")];
    (path_info(tmp, name, true, &roots), roots)
}

/// Runs our binary on `closure` into `out` with `args`; returns its stderr.
fn write(closure: &Path, out: &Path, args: &[&str]) -> String {
    let (ok, _, stderr) = run(ours().arg("--closure").arg(closure).arg("--out").arg(out).args(args));
    assert!(ok, "make-binary-cache failed:\n{stderr}");
    stderr
}

fn reuse_arg(dir: &Path) -> [&str; 2] {
    ["--reuse", dir.to_str().unwrap()]
}

#[test]
fn reused_caches_are_byte_identical_to_fresh_ones_and_substitute() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("reuse-identical");
    let (before, _) = closure_with(&tmp, "before.json", "reuse-before");
    let (after, roots) = closure_with(&tmp, "after.json", "reuse-after");
    for compression in ["xz", "zstd", "none"] {
        let c = ["--compression", compression];
        let earlier = tmp.join(format!("{compression}-earlier"));
        write(&before, &earlier, &c);
        let reused = tmp.join(format!("{compression}-reused"));
        let log = write(&after, &reused, &[&c[..], &reuse_arg(&earlier)].concat());
        // All of the fixture's 5 paths, not the new one.
        assert!(log.contains("6 store paths (5 NARs reused, 1 compressed)"), "{log}");
        assert_eq!(log.matches(", reused)").count(), 5, "{log}");
        let new_path = log.lines().find(|l| l.starts_with(&format!("copied {} (", roots[1]))).unwrap();
        assert!(!new_path.contains("reused") && !log.contains("afresh"), "{log}");
        let fresh = tmp.join(format!("{compression}-fresh"));
        write(&after, &fresh, &c);
        assert!(tree(&reused) == tree(&fresh), "{compression}: the reused cache differs from the fresh one");

        copy_closure_from(&reused, &tmp.join(format!("store-{compression}")), &roots);
        let (ok, _, verified) = run(ours().arg("verify").arg(&reused));
        assert!(ok && !verified.contains("warning:"), "{verified}");
    }
}

#[test]
fn another_level_is_not_reused_and_the_log_says_why() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("reuse-level");
    let (closure, _) = closure_with(&tmp, "closure.json", "reuse-level");
    let earlier = tmp.join("earlier");
    write(&closure, &earlier, &["--compression", "xz"]);
    let out = tmp.join("level-9");
    let log = write(
        &closure,
        &out,
        &[&["--compression", "xz", "--compression-level", "9"][..], &reuse_arg(&earlier)].concat(),
    );
    let manifest = earlier.join("make-binary-cache.json");
    let line = format!(
        "{}: made with other settings (compressionLevel: 6 there, 9 here): none of its NARs are reused",
        manifest.display()
    );
    assert_eq!(log.matches(&line).count(), 1, "{log}");
    assert!(log.contains("6 store paths (0 NARs reused, 6 compressed)"), "{log}");
    let fresh = tmp.join("fresh-9");
    write(&closure, &fresh, &["--compression", "xz", "--compression-level", "9"]);
    assert!(tree(&out) == tree(&fresh));
}

#[test]
fn a_damaged_earlier_cache_fails_the_run_naming_the_file() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("reuse-damaged");
    let (closure, _) = closure_with(&tmp, "closure.json", "reuse-damaged");
    let earlier = tmp.join("earlier");
    write(&closure, &earlier, &["--compression", "xz"]);
    // b: its NAR is no other path's (the two `c` have the same contents, so one NAR file).
    let victim = build_fixture("", "b");
    let narinfo = earlier.join(format!("{}.narinfo", hash_part(&victim)));
    let text = fs::read_to_string(&narinfo).unwrap();
    let url = text.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap();
    let nar = earlier.join(url);
    let original = fs::read(&nar).unwrap();

    // The same size, one byte changed: only the FileHash can tell.
    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    for (damage, bytes, says) in
        [("flipped", flipped, "FileHash"), ("truncated", original[..original.len() - 1].to_vec(), "FileSize")]
    {
        fs::write(&nar, &bytes).unwrap();
        let out = tmp.join(damage);
        let err = run_fail(
            ours()
                .arg("--closure")
                .arg(&closure)
                .arg("--out")
                .arg(&out)
                .args(["--compression", "xz"])
                .args(reuse_arg(&earlier)),
        );
        for word in [nar.to_str().unwrap(), narinfo.to_str().unwrap(), says, "damaged", victim.as_str()] {
            assert!(err.contains(word), "{damage}: {word:?} not in:\n{err}");
        }
        // Nothing names a copy of the damaged file.
        assert!(!out.join(format!("{}.narinfo", hash_part(&victim))).exists(), "{damage}");
        assert!(!out.join(url).exists(), "{damage}");
    }
    fs::write(&nar, &original).unwrap();

    // A narinfo that does not parse is damage too.
    fs::write(&narinfo, text.replace("NarSize: ", "NarSize: x")).unwrap();
    let err = run_fail(
        ours()
            .arg("--closure")
            .arg(&closure)
            .arg("--out")
            .arg(tmp.join("garbled"))
            .args(reuse_arg(&earlier))
            .args(["--compression", "xz"]),
    );
    assert!(err.contains(narinfo.to_str().unwrap()) && err.contains("NarSize"), "{err}");
}

#[test]
fn caches_without_our_manifest_are_not_reused_and_never_get_one() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("reuse-nix-copy");
    let (closure, roots) = closure_with(&tmp, "closure.json", "reuse-nix-copy");
    let theirs = tmp.join("nix-copy");
    run_ok(
        nix_cmd("nix").args(["copy", "--to"]).arg(format!("file://{}?compression=xz", theirs.display())).args(&roots),
    );
    let out = tmp.join("out");
    let log = write(&closure, &out, &[&["--compression", "xz"][..], &reuse_arg(&theirs)].concat());
    assert!(log.contains(&format!("{} has no make-binary-cache.json", theirs.display())), "{log}");
    // A mistyped --reuse is an error naming it, not a silent full rebuild.
    let missing = tmp.join("no-such-cache");
    let err = run_fail(
        ours().arg("--closure").arg(&closure).arg("--out").arg(tmp.join("out-missing")).args(reuse_arg(&missing)),
    );
    assert!(err.contains(&format!("--reuse {}: no such directory", missing.display())), "{err}");
    let not_a_cache = tmp.join("not-a-cache");
    fs::create_dir_all(&not_a_cache).unwrap();
    let err = run_fail(
        ours().arg("--closure").arg(&closure).arg("--out").arg(tmp.join("out-other")).args(reuse_arg(&not_a_cache)),
    );
    assert!(err.contains("is not a binary cache: it has no nix-cache-info"), "{err}");
    assert!(log.contains("(0 NARs reused, 6 compressed)"), "{log}");

    // Added to by us, a nix copy cache gets no manifest: it would claim NARs
    // we did not make.
    let log = write(&closure, &theirs, &["--compression", "xz"]);
    assert!(log.contains("already holds NARs but no make-binary-cache.json"), "{log}");
    assert!(!theirs.join("make-binary-cache.json").exists());
    let log = write(&closure, &tmp.join("again"), &[&["--compression", "xz"][..], &reuse_arg(&theirs)].concat());
    assert!(log.contains("(0 NARs reused"), "{log}");
}

#[test]
fn the_manifest_stays_only_while_it_describes_every_nar() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("reuse-manifest");
    let (closure, _) = closure_with(&tmp, "closure.json", "reuse-manifest");
    let out = tmp.join("out");
    let manifest = out.join("make-binary-cache.json");
    write(&closure, &out, &["--compression", "xz"]);
    let first = fs::read(&manifest).unwrap();
    // The same settings, again and elsewhere: the same bytes.
    write(&closure, &out, &["--compression", "xz", "--jobs", "1"]);
    assert!(fs::read(&manifest).unwrap() == first);
    write(&closure, &tmp.join("other"), &["--compression", "xz"]);
    assert!(fs::read(tmp.join("other/make-binary-cache.json")).unwrap() == first);
    // Other settings added to it: the cache holds NARs made two ways.
    let log = write(&closure, &out, &["--compression", "zstd"]);
    assert!(
        log.contains("made with other settings (compression: \"xz\" there, \"zstd\" here): the cache now"),
        "{log}"
    );
    assert_eq!(fs::read_to_string(&manifest).unwrap(), MIXED);
    // And no manifest comes back; nor is it reused.
    let log = write(&closure, &out, &["--compression", "xz"]);
    assert!(log.contains("says the cache holds NARs made with different settings"), "{log}");
    assert_eq!(fs::read_to_string(&manifest).unwrap(), MIXED);
    let log = write(&closure, &tmp.join("again"), &[&["--compression", "xz"][..], &reuse_arg(&out)].concat());
    assert!(log.contains("(its NARs were made with different settings)") && log.contains("(0 NARs reused"), "{log}");
    // verify knows the file (the NARs of the zstd run, no longer named, are warnings).
    let (ok, _, verified) = run(ours().arg("verify").arg(&out));
    assert!(ok && !verified.contains("make-binary-cache.json"), "{verified}");
    let (ok, _, verified) = run(ours().arg("verify").arg(tmp.join("other")));
    assert!(ok && !verified.contains("warning:"), "{verified}");
}

#[test]
fn concurrent_runs_leave_a_manifest_only_when_all_had_the_same_settings() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("reuse-concurrent");
    let (closure, _) = closure_with(&tmp, "closure.json", "reuse-concurrent");
    let reference = tmp.join("reference");
    write(&closure, &reference, &["--compression", "xz"]);
    let expected = fs::read(reference.join("make-binary-cache.json")).unwrap();
    for (name, compressions) in [("same", ["xz", "xz", "xz", "xz"]), ("mixed", ["xz", "zstd", "xz", "zstd"])] {
        let out = tmp.join(name);
        let children: Vec<_> = compressions
            .iter()
            .map(|c| {
                ours()
                    .arg("--closure")
                    .arg(&closure)
                    .arg("--out")
                    .arg(&out)
                    .args(["--compression", c, "--no-sync"])
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        }
        let manifest = fs::read(out.join("make-binary-cache.json")).ok();
        match name {
            "same" => assert!(manifest.as_deref() == Some(&expected[..]), "{name}"),
            _ => assert!(manifest.as_deref() == Some(MIXED.as_bytes()), "{name}: a manifest claims NARs made two ways"),
        }
    }
}

/// (inode, modification time) of every file of `dir`, by name.
fn stamps(dir: &Path) -> std::collections::BTreeMap<String, (u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    for sub in ["", "nar"] {
        for entry in fs::read_dir(dir.join(sub)).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_file() {
                out.insert(format!("{sub}/{}", entry.file_name().to_string_lossy()), (meta.ino(), meta.mtime_nsec()));
            }
        }
    }
    out
}

#[test]
fn a_cache_updated_in_place_leaves_what_it_has_alone_and_equals_a_fresh_one() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("reuse-in-place");
    let (before, _) = closure_with(&tmp, "before.json", "in-place-before");
    let (after, roots) = closure_with(&tmp, "after.json", "in-place-after");
    let served = tmp.join("served");
    write(&before, &served, &[]);
    // Signed since: the update must keep the signatures it does not touch.
    let key = tmp.join("key");
    run_ok(nix_cmd("nix-store").args(["--generate-binary-cache-key", "in-place-1"]).arg(&key).arg(tmp.join("key.pub")));
    run_ok(&mut crate::common::sign(&key, None, &served));
    let old = stamps(&served);

    let log = write(&after, &served, &reuse_arg(&served));
    // The fixture's 5 paths are there; the new one is compressed.
    assert!(log.contains("6 store paths (5 already in the cache, 0 NARs reused, 1 compressed)"), "{log}");
    assert_eq!(log.matches("\ncopied ").count() + usize::from(log.starts_with("copied ")), 1, "{log}");
    let new = stamps(&served);
    for (name, stamp) in &old {
        assert_eq!(new.get(name), Some(stamp), "{name} was rewritten");
    }
    // Without --reuse too, and then nothing is written at all.
    let log = write(&after, &served, &[]);
    assert!(log.contains("6 store paths (6 already in the cache, 0 written)"), "{log}");

    // What a fresh build of the second closure holds, and the signatures.
    let fresh = tmp.join("fresh");
    write(&after, &fresh, &[]);
    let (served_tree, fresh_tree) = (tree(&served), tree(&fresh));
    let narinfos = |t: &[(String, Vec<u8>)]| -> Vec<String> {
        t.iter().filter(|(n, _)| n.ends_with(".narinfo")).map(|(n, _)| n.clone()).collect()
    };
    assert!(narinfos(&fresh_tree).iter().all(|n| narinfos(&served_tree).contains(n)));
    for (name, text) in served_tree.iter().filter(|(n, _)| n.ends_with(".narinfo")) {
        let text = String::from_utf8_lossy(text);
        let was_there = old.contains_key(&format!("/{name}"));
        assert_eq!(text.contains("Sig: in-place-1:"), was_there, "{name}: {text}");
    }
    copy_closure_from(&served, &tmp.join("store"), &roots);

    // A narinfo that says something else is written afresh, not kept.
    let victim = served.join(format!("{}.narinfo", hash_part(&roots[0])));
    let good = fs::read_to_string(&victim).unwrap();
    let references = good.lines().find(|l| l.starts_with("References: ")).unwrap();
    fs::write(&victim, good.replace(references, "References: ")).unwrap();
    let log = write(&after, &served, &[]);
    assert!(log.contains("6 store paths (5 already in the cache, 1 written)"), "{log}");
    let mended = fs::read_to_string(&victim).unwrap();
    assert!(mended.contains(references), "{mended}");
}
