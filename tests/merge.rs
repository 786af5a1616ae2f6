//! `make-binary-cache merge`, judged by real Nix where it can judge: merged
//! caches are substituted by `nix copy` into a fresh store that passes
//! `nix-store --verify --check-contents`; a merge of disjoint caches is byte
//! for byte the cache of their union; and every refusal (conflicting inputs,
//! a corrupted NAR, an unclosed result, disagreeing nix-cache-info, bad
//! flags) names what is wrong.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// `make-binary-cache merge --out OUT CACHE...`.
fn merge(out: &Path, caches: &[&Path]) -> Command {
    let mut cmd = ours();
    cmd.arg("merge").arg("--out").arg(out).args(caches);
    cmd
}

/// A cache of the closure file `closure`, written by our CLI with `extra` flags.
fn cli_cache(tmp: &TempDir, name: &str, closure: &Path, extra: &[&str]) -> PathBuf {
    let out = tmp.join(name);
    run_ok(ours().arg("--closure").arg(closure).arg("--out").arg(&out).arg("--no-sync").args(extra));
    out
}

/// The fixture's paths: (root a, b with its closure b/c/tool, link).
fn fixture() -> (String, String, String) {
    (build_fixture("", "a"), build_fixture("", "b"), build_fixture("", "link"))
}

/// Two disjoint caches whose union is the fixture closure: the closure of
/// b (b, c, tool), and a and link alone (partial: their references are in
/// the first).
fn disjoint_caches(tmp: &TempDir, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (a, b, link) = fixture();
    let lower = path_info(tmp, "lower.json", true, &[&b]);
    let upper = path_info(tmp, "upper.json", false, &[&a, &link]);
    let lower = cli_cache(tmp, &format!("lower{}", extra.join("")), &lower, extra);
    let mut upper_flags = vec!["--partial"];
    upper_flags.extend_from_slice(extra);
    let upper = cli_cache(tmp, &format!("upper{}", extra.join("")), &upper, &upper_flags);
    (lower, upper)
}

/// Writable copies of [`disjoint_caches`], in `tmp/a` and `tmp/b`, to change.
fn writable_disjoint_caches(tmp: &TempDir, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (lower, upper) = disjoint_caches(tmp, extra);
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    copy_tree(&lower, &a);
    copy_tree(&upper, &b);
    (a, b)
}

/// A writable copy of a cache, to damage.
fn copy_tree(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-r").arg(from).arg(to));
}

#[test]
fn disjoint_caches_merge_into_the_cache_of_their_union() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-union");
    let (root, _, _) = fixture();
    for extra in [&["--compression", "xz", "--write-nar-listing", "--index-debug-info"][..], &[]] {
        let (lower, upper) = disjoint_caches(&tmp, extra);
        let whole = path_info(&tmp, "whole.json", true, &[&root]);
        let whole = cli_cache(&tmp, &format!("whole{}", extra.join("")), &whole, extra);

        let merged = tmp.join(format!("merged{}", extra.join("")));
        let (ok, _, log) = run(merge(&merged, &[&upper, &lower]).arg("--no-sync"));
        assert!(ok, "{log}");
        assert_eq!(tree(&merged), tree(&whole), "{}", extra.join(" "));
        assert!(!log.contains("not copied"), "{log}");
        copy_closure_from(&merged, &tmp.join(format!("store{}", extra.join(""))), &[&root]);
        run_ok(ours().arg("verify").arg(&merged));
    }
}

#[test]
fn shards_of_a_closure_merge_into_the_cache_of_the_whole() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-shards");
    let (root, closure) = path_info_file(&tmp);
    let whole = cli_cache(&tmp, "whole", &closure, &[]);
    let paths = fs::read_to_string(&closure).unwrap();
    for shards in [2, 3, 7] {
        let mut parts = Vec::new();
        for shard in 0..shards {
            let attrs = tmp.join(format!("attrs-{shard}-of-{shards}.json"));
            fs::write(&attrs, shard_attrs(&paths, shard, shards)).unwrap();
            let out = tmp.join(format!("shard-{shard}-of-{shards}"));
            run_ok(ours().arg("--attrs").arg(&attrs).arg("--out").arg(&out).arg("--no-sync"));
            parts.push(out);
        }
        // Every store path is in exactly one shard.
        let narinfos: usize =
            parts.iter().map(|p| list_dir(p).iter().filter(|n| n.ends_with(".narinfo")).count()).sum();
        assert_eq!(narinfos, closure_of(&root).len());
        let merged = tmp.join(format!("merged-{shards}"));
        let parts: Vec<&Path> = parts.iter().map(PathBuf::as_path).collect();
        run_ok(&mut merge(&merged, &parts));
        assert_eq!(tree(&merged), tree(&whole), "{shards} shards");
    }
    copy_closure_from(&tmp.join("merged-3"), &tmp.join("store"), &[&root]);
}

/// A builder's attrs file for one shard of the closure `path_info` (the
/// array `nix path-info --json` prints, which the attrs reader takes).
fn shard_attrs(path_info: &str, shard: usize, shards: usize) -> String {
    format!(r#"{{"closure":{},"shard":{shard},"shards":{shards}}}"#, path_info.trim())
}

#[test]
fn overlapping_caches_must_agree() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-overlap");
    let (root, closure) = path_info_file(&tmp);
    let whole = cli_cache(&tmp, "whole", &closure, &[]);
    let (lower, _) = disjoint_caches(&tmp, &[]);

    // The same paths written the same way: merged once each, checked in both.
    let merged = tmp.join("merged");
    let (ok, _, log) = run(&mut merge(&merged, &[&whole, &lower]));
    assert!(ok, "{log}");
    assert_eq!(tree(&merged), tree(&whole));
    assert!(log.contains("5 narinfos (3 in more than one input)"), "{log}");
    copy_closure_from(&merged, &tmp.join("store"), &[&root]);

    // The same store path compressed differently: the same NAR, so one
    // narinfo (the first input's file), and Nix takes the result.
    let b = build_fixture("", "b");
    let b_closure = path_info(&tmp, "b.json", true, &[&b]);
    let xz = cli_cache(&tmp, "lower-xz", &b_closure, &["--compression", "xz"]);
    let both = tmp.join("both");
    run_ok(&mut merge(&both, &[&whole, &xz]));
    run_ok(ours().arg("verify").arg(&both));
    copy_closure_from(&both, &tmp.join("store-both"), &[&root]);

    // Another NAR for the same store path: an error naming it, both inputs and the NarHashes.
    let other = tmp.join("other");
    copy_tree(&xz, &other);
    let narinfo = other.join(format!("{}.narinfo", hash_part(&b)));
    let text = fs::read_to_string(&narinfo).unwrap();
    let hash = text.lines().find_map(|l| l.strip_prefix("NarHash: ")).unwrap().to_owned();
    let forged = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    fs::write(&narinfo, text.replace(&hash, forged)).unwrap();
    let err = run_fail(&mut merge(&tmp.join("conflict"), &[&whole, &other]));
    assert!(err.contains(&format!("{b} is in both")) && err.contains("with different NARs"), "{err}");
    assert!(err.contains(&hash) && err.contains(forged), "{err}");
    assert!(err.contains(&whole.display().to_string()) && err.contains(&other.display().to_string()), "{err}");
}

/// Issue 17, item 5: a CLI cache and one whose narinfos lack the Deriver
/// (as mkBinaryCache's, from exportReferencesGraph), and a signed and an
/// unsigned copy of one cache, merge: signatures united, the Deriver kept.
#[test]
fn narinfos_of_the_same_nar_merge_whatever_their_deriver_and_signatures() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-join");
    let (root, closure) = path_info_file(&tmp);
    let whole = cli_cache(&tmp, "whole", &closure, &[]);
    let (secret, public) = (tmp.join("k.sk"), tmp.join("k.pk"));
    run_ok(nix_cmd("nix-store").args(["--generate-binary-cache-key", "merge-join-1"]).arg(&secret).arg(&public));
    let signed = tmp.join("signed");
    run_ok(ours().arg("sign").arg("--secret-key-file").arg(&secret).arg("--out").arg(&signed).arg(&whole));
    let underived = tmp.join("underived");
    copy_tree(&whole, &underived);
    for name in list_dir(&underived).iter().filter(|n| n.ends_with(".narinfo")) {
        let file = underived.join(name);
        let text = fs::read_to_string(&file).unwrap();
        let kept: String = text.lines().filter(|l| !l.starts_with("Deriver: ")).map(|l| format!("{l}\n")).collect();
        fs::write(&file, kept).unwrap();
    }
    let merged = tmp.join("merged");
    run_ok(&mut merge(&merged, &[&underived, &signed]));
    let public = fs::read_to_string(&public).unwrap();
    run_ok(ours().args(["verify", "--public-key", public.trim()]).arg(&merged));
    for name in list_dir(&whole).iter().filter(|n| n.ends_with(".narinfo")) {
        let text = fs::read_to_string(merged.join(name)).unwrap();
        let original = fs::read_to_string(whole.join(name)).unwrap();
        assert_eq!(text.contains("Deriver: "), original.contains("Deriver: "), "{name}: the Deriver was lost");
        assert!(text.contains("Sig: merge-join-1:"), "{name}: the signature was lost");
    }
    copy_closure_from(&merged, &tmp.join("store"), &[&root]);
}

#[test]
fn a_corrupted_nar_is_an_error_naming_it() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-corrupt");
    let (_, closure) = path_info_file(&tmp);
    let whole = cli_cache(&tmp, "whole", &closure, &[]);
    let broken = tmp.join("broken");
    copy_tree(&whole, &broken);
    // The largest NAR file, one byte changed, its size kept.
    let nar_dir = broken.join("nar");
    let mut nars: Vec<PathBuf> = list_dir(&nar_dir).iter().map(|n| nar_dir.join(n)).collect();
    nars.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let victim = nars.last().unwrap();
    let mut bytes = fs::read(victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(victim, bytes).unwrap();
    let victim_name = victim.file_name().unwrap().to_str().unwrap();

    // Alone, and as the second input of a path the first has intact.
    for (label, inputs) in [("alone", vec![broken.as_path()]), ("shared", vec![whole.as_path(), broken.as_path()])] {
        let out = tmp.join(format!("out-{label}"));
        let err = run_fail(&mut merge(&out, &inputs));
        assert!(err.contains(victim_name) && err.contains("but the narinfo says FileHash"), "{label}: {err}");
        assert!(err.contains(&broken.display().to_string()), "{label}: {err}");
        if label == "shared" {
            assert!(err.contains(&format!("which {} has too", whole.display())), "{err}");
        }
        // No narinfo points at anything.
        let narinfos = list_dir(&out).into_iter().filter(|n| n.ends_with(".narinfo")).count();
        assert_eq!(narinfos, 0, "{label}");
        if label == "alone" {
            // The bad copy was never named.
            assert!(!out.join("nar").join(victim_name).exists());
        }
    }
}

#[test]
fn an_unclosed_result_is_an_error_unless_partial() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-unclosed");
    let (root, _, _) = fixture();
    let (_, upper) = disjoint_caches(&tmp, &[]);
    let out = tmp.join("out");
    let err = run_fail(&mut merge(&out, &[&upper]));
    assert!(err.contains("would not be closed"), "{err}");
    // a and link both refer to b, which is not there.
    let b = build_fixture("", "b");
    assert!(err.contains(&format!("(in {}) refers to {b}, which no input has", upper.display())), "{err}");
    assert!(err.contains(&format!("{root} (in")) || err.contains("-e2e-link (in"), "{err}");
    assert!(!out.exists() || list_dir(&out).is_empty(), "something was written");
    run_ok(merge(&out, &[&upper]).arg("--partial"));
    assert_eq!(list_dir(&out).iter().filter(|n| n.ends_with(".narinfo")).count(), 2);
}

#[test]
fn the_manifest_is_copied_only_when_every_input_has_the_same() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-manifest");
    let (a, b) = writable_disjoint_caches(&tmp, &[]);
    let manifest = "make-binary-cache.json";
    let _ = fs::remove_file(a.join(manifest));
    let _ = fs::remove_file(b.join(manifest));

    fs::write(a.join(manifest), "{\"compression\":\"zstd\"}\n").unwrap();
    fs::write(b.join(manifest), "{\"compression\":\"zstd\"}\n").unwrap();
    let out = tmp.join("same");
    let log = run_ok(&mut merge(&out, &[&a, &b]));
    assert_eq!(fs::read(out.join(manifest)).unwrap(), fs::read(a.join(manifest)).unwrap());
    assert!(!log.contains(manifest), "{log}");

    fs::write(b.join(manifest), "{\"compression\":\"xz\"}\n").unwrap();
    let out = tmp.join("different");
    let (ok, _, log) = run(&mut merge(&out, &[&a, &b]));
    assert!(ok, "{log}");
    assert!(!out.join(manifest).exists());
    assert_eq!(log.matches(manifest).count(), 1, "said once: {log}");
    assert!(log.contains("have different ones"), "{log}");

    fs::remove_file(b.join(manifest)).unwrap();
    let out = tmp.join("missing");
    let (ok, _, log) = run(&mut merge(&out, &[&a, &b]));
    assert!(ok && !out.join(manifest).exists(), "{log}");
    assert!(log.contains(&format!("{} has one but {} has none", a.display(), b.display())), "{log}");
}

#[test]
fn nix_cache_info_must_agree() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-info");
    let (a, b) = writable_disjoint_caches(&tmp, &[]);
    fs::write(b.join("nix-cache-info"), "StoreDir: /nix/store\nPriority: 10\n").unwrap();
    let err = run_fail(&mut merge(&tmp.join("out"), &[&a, &b]));
    assert!(err.contains("has no Priority") && err.contains("has Priority: 10"), "{err}");
    // The same settings in other words: merged, written as the writer writes them.
    fs::write(a.join("nix-cache-info"), "StoreDir: /nix/store\nPriority: 10\n").unwrap();
    fs::write(b.join("nix-cache-info"), "StoreDir:/nix/store\nPriority:  10\n").unwrap();
    let out = tmp.join("agreed");
    run_ok(&mut merge(&out, &[&a, &b]));
    assert_eq!(fs::read_to_string(out.join("nix-cache-info")).unwrap(), "StoreDir: /nix/store\nPriority: 10\n");
}

#[test]
fn bad_arguments_are_errors() {
    let tmp = TempDir::new("merge-args");
    let empty = tmp.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "--out DIR is required"),
        (vec!["--out", "x"], "at least one CACHE"),
        (vec!["--out", "x", "--out", "y", "c"], "--out is given more than once"),
        (vec!["--out", "x", "--partial", "--partial", "c"], "--partial is given more than once"),
        (vec!["--out", "", "c"], "--out must not be empty"),
        (vec!["--out", "x", "--jobs", "0", "c"], "--jobs 0: give at least 1"),
        (vec!["--out", "x", "--bogus", "c"], "see merge --help"),
    ];
    for (args, expected) in cases {
        let err = run_fail(ours().arg("merge").args(&args).current_dir(tmp.path()));
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let err = run_fail(ours().arg("merge").arg("--out").arg(tmp.join("o")).arg(&empty));
    assert!(err.contains("is not a binary cache: it has no nix-cache-info"), "{err}");
    let help = run_ok(ours().args(["merge", "--help"]));
    assert!(help.contains("USAGE:") && help.contains("--partial"), "{help}");
    let top = run_ok(ours().arg("--help"));
    assert!(top.contains("make-binary-cache merge --out DIR CACHE..."), "{top}");
}

#[test]
fn the_output_must_be_new() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-out");
    let (lower, upper) = disjoint_caches(&tmp, &[]);
    let err = run_fail(&mut merge(&lower, &[&lower, &upper]));
    assert!(err.contains("is not empty"), "{err}");
    let inside = lower.join("log").join("merged");
    let err = run_fail(&mut merge(&inside, &[&lower, &upper]));
    assert!(err.contains("is inside the input"), "{err}");
    // Nothing is created inside the input on the way, not even a parent.
    let before = tree(&lower);
    let deeper = lower.join("a").join("b").join("merged");
    let err = run_fail(&mut merge(&deeper, &[&lower, &upper]));
    assert!(err.contains("is inside the input"), "{err}");
    assert!(tree(&lower) == before, "merge created directories inside its input");
}

// ---------------------------------------------------------------------------
// End to end: mkBinaryCache { shards = N; } and mergeBinaryCaches through
// nix-build, with the stand-in nixpkgs (tests/nixpkgs-stub).

/// `nix-build` of a [`with_prelude`] expression with two jobs of one core,
/// as the shards would run on a small machine; returns the output path.
fn nix_build(body: &str) -> PathBuf {
    PathBuf::from(run_ok(nix_build_expr(&builder_bin(), "", body).args(["--max-jobs", "2", "--cores", "1"])))
}

#[test]
fn sharded_mk_binary_cache_is_byte_identical_to_the_unsharded_one() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("e2e-shards");
    let root = build_fixture("", "a");
    for (compression, settings) in [("xz", "compressionLevel = 1; writeNarListing = true;"), ("zstd", "")] {
        let args = format!(r#"rootPaths = [ fixture ]; compression = "{compression}"; {settings}"#);
        let whole = nix_build(&format!("mkBinaryCache {{ {args} }}"));
        for shards in [2, 3] {
            let merged = nix_build(&format!("mkBinaryCache {{ {args} shards = {shards}; }}"));
            assert_ne!(merged, whole);
            assert_eq!(tree(&merged), tree(&whole), "{compression}, {shards} shards");
        }
        let merged = nix_build(&format!("mkBinaryCache {{ {args} shards = 2; }}"));
        copy_closure_from(&merged, &tmp.join(format!("store-{compression}")), &[&root]);
        run_ok(nix_cmd("nix-store").arg("--verify-path").arg(&merged));
        if compression == "zstd" {
            substitute_fixture(&[&merged], &tmp.join("substituted"), &root);
        }
    }
}

#[test]
fn merge_binary_caches_joins_overlapping_caches() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("e2e-merge-fn");
    let root = build_fixture("", "a");
    let whole = nix_build("mkBinaryCache { rootPaths = [ fixture ]; }");
    // b's closure is inside a's: the shared paths must agree, and do.
    let merged = nix_build(
        r#"let mergeBinaryCaches = pkgs.callPackage (/. + root + "/nix/merge.nix") { }; in
           mergeBinaryCaches {
             name = "joined";
             caches = [ (mkBinaryCache { rootPaths = [ fixtures.b ]; name = "lower"; })
                        (mkBinaryCache { rootPaths = [ fixture ]; }) ];
           }"#,
    );
    assert!(merged.to_str().unwrap().ends_with("-joined"), "{}", merged.display());
    assert_eq!(tree(&merged), tree(&whole));
    copy_closure_from(&merged, &tmp.join("store"), &[&root]);

    // Caches written with other settings hold the same NARs: they merge
    // (the first input's files), and Nix takes the result.
    let mixed = nix_build(
        r#"let mergeBinaryCaches = pkgs.callPackage (/. + root + "/nix/merge.nix") { }; in
           mergeBinaryCaches {
             caches = [ (mkBinaryCache { rootPaths = [ fixtures.b ]; compression = "none"; })
                        (mkBinaryCache { rootPaths = [ fixture ]; }) ];
           }"#,
    );
    run_ok(ours().arg("verify").arg(&mixed));
    copy_closure_from(&mixed, &tmp.join("store-mixed"), &[&root]);
}

#[test]
fn shard_derivations_are_what_the_builder_and_nix_need() {
    if skip_without_nix() {
        return;
    }
    let checks = run_ok(&mut nix_eval_expr(
        &builder_bin(),
        r#"let
  one = mkBinaryCache { rootPaths = [ fixture ]; };
  same = mkBinaryCache { rootPaths = [ fixture ]; shards = 1; };
  two = mkBinaryCache { rootPaths = [ fixture ]; compression = "xz"; shards = 2; };
  s = two.caches;
  over = one.override { shards = 3; };
  top = import (/. + root + "/default.nix") { inherit pkgs; };
in {
  oneIsToday = one.drvPath == same.drvPath && !(one ? shard);
  count = builtins.length s == 2 && builtins.length over.caches == 3;
  numbered = map (d: [ d.shard d.shards d.name ]) s == [ [ 0 2 "binary-cache-shard-0-of-2" ] [ 1 2 "binary-cache-shard-1-of-2" ] ];
  sameSettings = builtins.all (d: d.compression == "xz" && d.exportReferencesGraph.closure == [ fixture ] && d.__structuredAttrs) s;
  remoteOk = builtins.all (d: !d.preferLocalBuild) s && two.preferLocalBuild;
  mergeArgs = builtins.head two.args == "merge" && builtins.elemAt two.args 1 == "--no-sync"
    && builtins.length two.args == 6;
  named = two.name == "binary-cache";
  passthru = two.rootPaths == [ fixture ] && two ? make-binary-cache;
  exported = top ? mergeBinaryCaches && top ? mkBinaryCache;
  mergeOverride = (top.mergeBinaryCaches { caches = s; }).override { name = "renamed"; } ? caches
    && ((top.mergeBinaryCaches { caches = s; }).override { name = "renamed"; }).name == "renamed";
}"#,
    ));
    assert_eq!(
        checks,
        r#"{"count":true,"exported":true,"mergeArgs":true,"mergeOverride":true,"named":true,"numbered":true,"oneIsToday":true,"passthru":true,"remoteOk":true,"sameSettings":true}"#
    );
}

#[test]
fn bad_shards_and_caches_are_evaluation_errors() {
    if skip_without_nix() {
        return;
    }
    let eval_error = |body: &str| run_fail(&mut nix_eval_expr(&builder_bin(), &format!("({body}).drvPath")));
    for (bad, shown) in [("0", "0"), ("-2", "-2"), (r#""2""#, r#""2""#), ("1.5", "of type float")] {
        let err = eval_error(&format!("mkBinaryCache {{ rootPaths = [ fixture ]; shards = {bad}; }}"));
        assert!(err.contains(&format!("mkBinaryCache: shards must be a positive integer, but it is {shown}")), "{err}");
    }
    let merge = r#"(pkgs.callPackage (/. + root + "/nix/merge.nix") { })"#;
    for (args, expected) in [
        ("{ caches = [ ]; }", "caches must not be empty"),
        (
            r#"{ caches = "x"; }"#,
            r#"caches must be a list of binary caches (derivations or store paths), but it is "x""#,
        ),
        ("{ caches = [ 1 ]; }", "every element of caches must be a derivation or a store path"),
        ("{ caches = [ fixture ]; name = 1; }", "name must be a string"),
    ] {
        let err = eval_error(&format!("{merge} {args}"));
        assert!(err.contains(&format!("mergeBinaryCaches: {expected}")), "{args}: {err}");
    }
}

#[test]
fn other_files_must_agree_but_debug_info_entries_keep_the_first() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-others");
    let (a, b) = writable_disjoint_caches(&tmp, &["--write-nar-listing"]);
    // Left behind by others: a NAR no narinfo names, a killed run's temporary file.
    fs::write(a.join("nar/stray.nar"), b"x").unwrap();
    fs::write(b.join("nar/.x.nar.1-2-3.tmp"), b"x").unwrap();
    // One build id in two store paths: each cache points at its own NAR.
    fs::write(a.join("debuginfo/0123.debug"), r#"{"archive":"../nar/a.nar","member":"x"}"#).unwrap();
    fs::write(b.join("debuginfo/0123.debug"), r#"{"archive":"../nar/b.nar","member":"x"}"#).unwrap();
    let out = tmp.join("out");
    let (ok, _, log) = run(&mut merge(&out, &[&a, &b]));
    assert!(ok, "{log}");
    assert_eq!(fs::read(out.join("debuginfo/0123.debug")).unwrap(), fs::read(a.join("debuginfo/0123.debug")).unwrap());
    assert!(log.contains("1 debug info entries differ between inputs"), "{log}");
    assert!(log.contains("1 files under nar/ that no narinfo names are not copied (such as nar/stray.nar)"), "{log}");
    assert!(log.contains("1 temporary files of killed runs are not copied"), "{log}");
    assert!(!out.join("nar/stray.nar").exists() && !out.join("nar/.x.nar.1-2-3.tmp").exists());
    // Every listing came along.
    let listings = |dir: &Path| list_dir(dir).into_iter().filter(|n| n.ends_with(".ls")).count();
    assert_eq!(listings(&out), listings(&a) + listings(&b));
    assert_eq!(listings(&out), 5);

    // The same listing name with other contents is an error naming both files.
    let ls = list_dir(&a).into_iter().find(|n| n.ends_with(".ls")).unwrap();
    fs::write(b.join(&ls), "{}").unwrap();
    let err = run_fail(&mut merge(&tmp.join("out2"), &[&a, &b]));
    assert!(err.contains(&format!("{} and {} differ", a.join(&ls).display(), b.join(&ls).display())), "{err}");
}

#[test]
fn a_cache_written_by_nix_copy_merges_with_ours() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("merge-nix-copy");
    let (root, b, _) = fixture();
    let (_, upper) = disjoint_caches(&tmp, &["--compression", "none"]);
    let theirs = tmp.join("theirs");
    run_ok(nix_cmd("nix").args(["copy", "--to"]).arg(format!("file://{}?compression=none", theirs.display())).arg(&b));
    let whole = path_info(&tmp, "whole.json", true, &[&root]);
    let whole = cli_cache(&tmp, "whole", &whole, &["--compression", "none"]);
    let merged = tmp.join("merged");
    run_ok(&mut merge(&merged, &[&theirs, &upper]));
    // nix copy's cache has no manifest, so the merge cannot claim one.
    assert!(!merged.join("make-binary-cache.json").exists());
    fs::remove_file(whole.join("make-binary-cache.json")).unwrap();
    // Uncompressed, our cache is byte for byte what nix copy writes: so is the merge.
    assert_eq!(tree(&merged), tree(&whole));
    copy_closure_from(&merged, &tmp.join("store"), &[&root]);
}
