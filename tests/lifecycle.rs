//! A cache's whole life: `gc` keeps a closure and removes the rest (on our
//! caches and on `nix copy`'s), safely beside our writers; `ls` and `diff`
//! say what caches hold, checked against the narinfos and against Nix.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

/// The fixture closure: a → b → c, tool; a → link (tests/fixtures/closure.nix).
struct Fixture {
    a: String,
    b: String,
}

fn fixture() -> Fixture {
    Fixture { a: build_fixture("", "a"), b: build_fixture("", "b") }
}

/// Every file under `dir` with its size, by relative path.
fn sizes(dir: &Path) -> BTreeMap<String, u64> {
    tree(dir).into_iter().filter(|(rel, _)| !rel.ends_with('/')).map(|(rel, bytes)| (rel, bytes.len() as u64)).collect()
}

fn gc(cache: &Path, keep: &[&Path]) -> Command {
    let mut cmd = ours();
    cmd.arg("gc");
    for path in keep {
        cmd.arg("--keep").arg(path);
    }
    cmd.arg(cache);
    cmd
}

/// Runs `cmd`, which must succeed, and returns its log (stderr).
fn log_of(cmd: &mut Command) -> String {
    let (ok, stdout, stderr) = run(cmd);
    assert!(ok, "{cmd:?} failed:\n{stdout}\n{stderr}");
    stderr
}

/// The bytes `gc` says it freed.
fn freed(log: &str) -> u64 {
    let summary = log.lines().find(|l| l.contains("bytes), in ")).unwrap_or_else(|| panic!("no summary in {log}"));
    let (_, rest) = summary.split_once("freed: ").unwrap();
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// gc keeps the closure of `b` (given as a `result` link to it) in `cache`,
/// a cache of `a`'s closure, and removes `a`, `link`, their NARs, listings,
/// an orphaned NAR and a temporary file of a dead run of ours; Nix then
/// substitutes `b` from it, and `verify` passes.
fn keeps_b(tmp: &TempDir, cache: &Path, fixture: &Fixture) {
    let closure_a = closure_of(&fixture.a);
    let closure_b = closure_of(&fixture.b);
    let gone: Vec<&String> = closure_a.iter().filter(|p| !closure_b.contains(p)).collect();
    assert_eq!(gone.len(), 2, "{closure_a:?} {closure_b:?}");
    fs::write(cache.join("nar/orphan.nar"), b"no narinfo names me").unwrap();
    fs::write(cache.join("nar/.x.nar.4242-7-0123456789abcdef.tmp"), b"a run died here").unwrap();
    fs::write(cache.join("left-alone.txt"), b"not ours to judge").unwrap();
    let result = tmp.join(format!("result-{}", cache.file_name().unwrap().to_string_lossy()));
    symlink(&fixture.b, &result).unwrap();
    let before = sizes(cache);

    // Nothing moves in a dry run, and it says what a real one frees.
    let dry = log_of(gc(cache, &[&result]).arg("--dry-run"));
    assert_eq!(sizes(cache), before, "--dry-run removed something");
    let log = log_of(&mut gc(cache, &[&result]));
    let after = sizes(cache);
    let removed: u64 = before.iter().filter(|(rel, _)| !after.contains_key(*rel)).map(|(_, size)| size).sum();
    assert_eq!(freed(&log), removed, "{log}");
    assert_eq!(freed(&dry), removed, "{dry}");
    assert!(log.contains("kept 3 store paths, removed 2 store paths"), "{log}");
    for path in &gone {
        let narinfo = format!("{}.narinfo", hash_part(path));
        assert!(before.contains_key(&narinfo) && !after.contains_key(&narinfo), "{path}: {log}");
        assert!(log.contains(path.as_str()), "{path} is not named in {log}");
    }
    for path in &closure_b {
        assert!(after.contains_key(&format!("{}.narinfo", hash_part(path))), "{path} was removed");
    }
    assert!(!after.contains_key("nar/orphan.nar") && !after.keys().any(|k| k.ends_with(".tmp")), "{after:?}");
    assert!(after.contains_key("left-alone.txt") && after.contains_key("nix-cache-info"));
    assert_eq!(after.keys().filter(|k| k.starts_with("nar/")).count(), 3, "{after:?}");
    let listings = |files: &BTreeMap<String, u64>| files.keys().filter(|k| k.ends_with(".ls")).count();
    assert_eq!(listings(&after), if listings(&before) > 0 { 3 } else { 0 }, "{after:?}");
    let verified = log_of(ours().arg("verify").arg(cache));
    assert!(verified.contains("3 store paths checked") && verified.contains("0 problems"), "{verified}");
    let store = tmp.join(format!("store-{}", cache.file_name().unwrap().to_string_lossy()));
    copy_closure_from(cache, &store, &[&fixture.b]);
    let (ok, _, stderr) = run(nix_cmd("nix")
        .args(["copy", "--no-require-sigs", "--from"])
        .arg(format!("file://{}", cache.display()))
        .arg("--to")
        .arg(tmp.join("store-of-a"))
        .arg(&fixture.a));
    assert!(!ok, "a is still in the cache after gc:\n{stderr}");
}

#[test]
fn gc_keeps_the_closure_and_removes_the_rest() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("gc");
    let fixture = fixture();
    let closure = path_info(&tmp, "closure.json", true, &[&fixture.a]);
    let ours_cache = tmp.join("ours");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&ours_cache).arg("--write-nar-listing"));
    keeps_b(&tmp, &ours_cache, &fixture);

    let nix_cache = tmp.join("nix-copy");
    run_ok(nix_cmd("nix").args(["copy", "--to"]).arg(format!("file://{}", nix_cache.display())).arg(&fixture.a));
    keeps_b(&tmp, &nix_cache, &fixture);
}

#[test]
fn gc_removes_nothing_unless_the_whole_plan_holds() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("gc-refuses");
    let fixture = fixture();
    let closure = path_info(&tmp, "closure.json", true, &[&fixture.a]);
    let cache = tmp.join("cache");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache));
    let before = sizes(&cache);

    let elsewhere = "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-not-here";
    let err = run_fail(&mut gc(&cache, &[Path::new(elsewhere)]));
    assert!(err.contains(&format!("--keep {elsewhere}: not in")) && err.contains("nothing was removed"), "{err}");
    let err = run_fail(&mut gc(&cache, &[&tmp.join("closure.json")]));
    assert!(err.contains("neither a store path of /nix/store nor a symlink to one"), "{err}");
    let err = run_fail(ours().arg("gc").arg(&cache));
    assert!(err.contains("gc needs the store paths to keep"), "{err}");

    // A kept closure the cache does not hold whole.
    let c = closure_of(&fixture.b).into_iter().find(|p| p.ends_with("e2e-c-file")).unwrap();
    let c_narinfo = cache.join(format!("{}.narinfo", hash_part(&c)));
    let c_text = fs::read(&c_narinfo).unwrap();
    fs::remove_file(&c_narinfo).unwrap();
    let err = run_fail(&mut gc(&cache, &[Path::new(&fixture.b)]));
    assert!(err.contains(&format!("refers to {c}, which has no narinfo there")), "{err}");
    fs::write(&c_narinfo, &c_text).unwrap();
    // A narinfo that does not read.
    fs::write(cache.join("00000000000000000000000000000000.narinfo"), "garbage\n").unwrap();
    let err = run_fail(&mut gc(&cache, &[Path::new(&fixture.b)]));
    assert!(err.contains("00000000000000000000000000000000.narinfo") && err.contains("verify"), "{err}");
    fs::remove_file(cache.join("00000000000000000000000000000000.narinfo")).unwrap();
    assert_eq!(sizes(&cache), before);

    // --keep-file takes the paths one per line, as `nix-store -qR` prints them.
    let list = tmp.join("roots.txt");
    fs::write(&list, format!("# roots\n\n{}\n", closure_of(&fixture.b).join("\n"))).unwrap();
    let log = log_of(ours().arg("gc").arg("--keep-file").arg(&list).arg(&cache));
    assert!(log.contains("kept 3 store paths, removed 2 store paths"), "{log}");
}

/// `gc` while our builds, `sign` and `merge` use the same cache, with
/// different timings: every run ends well or says it waited for the lock
/// too long, and the cache then verifies and substitutes.
#[test]
fn gc_beside_builds_sign_and_merge() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("gc-concurrent");
    let fixture = fixture();
    let closure = path_info(&tmp, "closure.json", true, &[&fixture.a]);
    let cache = tmp.join("cache");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache));
    let key = tmp.join("key.sk");
    run_ok(nix_cmd("nix-store").args(["--generate-binary-cache-key", "lifecycle-1"]).arg(&key).arg(tmp.join("key.pk")));
    for round in 0..4u64 {
        // Fresh store paths for each round's build, not to be kept.
        let extra = build_fixture(&format!("gc-round-{round}"), "a");
        let extra_closure = path_info(&tmp, &format!("extra-{round}.json"), true, &[&extra]);
        let spawn = |cmd: &mut Command| cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut children = Vec::new();
        let delay = std::time::Duration::from_millis(15 * round);
        let mut build = ours();
        build.arg("--closure").arg(&extra_closure).arg("--out").arg(&cache).args(["--compression", "xz"]);
        let mut sign_it = ours();
        sign_it.args(["sign", "--secret-key-file"]).arg(&key).arg(&cache);
        let mut merge_it = ours();
        merge_it.args(["merge", "--partial", "--out"]).arg(tmp.join(format!("merged-{round}"))).arg(&cache);
        let mut collect = gc(&cache, &[Path::new(&fixture.a)]);
        collect.args(["--wait", "30"]);
        // The order and the delay change which one gets the lock first.
        let mut commands = vec![("build", build), ("sign", sign_it), ("merge", merge_it), ("gc", collect)];
        commands.rotate_left(round as usize % 4);
        for (name, mut cmd) in commands {
            children.push((name, spawn(&mut cmd)));
            std::thread::sleep(delay);
        }
        for (name, child) in children {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() || stderr.contains("and still was after 30 s"),
                "round {round}: {name} failed:\n{stderr}"
            );
        }
        let verified = log_of(ours().arg("verify").arg(&cache));
        assert!(verified.contains(" 0 problems"), "round {round}: {verified}");
    }
    copy_closure_from(&cache, &tmp.join("store"), &[&fixture.a]);
}

#[test]
fn ls_says_what_the_narinfos_and_nix_say() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("ls");
    let fixture = fixture();
    let closure = path_info(&tmp, "closure.json", true, &[&fixture.a]);
    let cache = tmp.join("cache");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache));
    let json: serde_json::Value = serde_json::from_str(&run_ok(ours().args(["ls", "--json"]).arg(&cache))).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["storeDir"], "/nix/store");
    let paths = json["paths"].as_array().unwrap();
    let closure_a = closure_of(&fixture.a);
    assert_eq!(paths.iter().map(|p| p["path"].as_str().unwrap().to_owned()).collect::<Vec<_>>(), closure_a);

    // Against the narinfos, field by field.
    for entry in paths {
        let path = entry["path"].as_str().unwrap();
        let narinfo = parse_narinfo(&fs::read_to_string(cache.join(format!("{}.narinfo", hash_part(path)))).unwrap());
        for (json_key, narinfo_key) in
            [("narHash", "NarHash"), ("url", "URL"), ("compression", "Compression"), ("fileHash", "FileHash")]
        {
            assert_eq!(entry[json_key], field(&narinfo, narinfo_key), "{path}: {json_key}");
        }
        assert_eq!(entry["narSize"].to_string(), field(&narinfo, "NarSize"), "{path}");
        assert_eq!(entry["fileSize"].to_string(), field(&narinfo, "FileSize"), "{path}");
    }
    // Against Nix reading the cache.
    let nix_json = run_ok(
        nix_cmd("nix")
            .args(["path-info", "--json", "--recursive", "--store"])
            .arg(format!("file://{}", cache.display()))
            .arg(&fixture.a),
    );
    let nix: Vec<serde_json::Value> = serde_json::from_str(&nix_json).unwrap();
    for info in &nix {
        let entry = paths.iter().find(|p| p["path"] == info["path"]).unwrap();
        for key in ["narSize", "references", "deriver", "url"] {
            assert_eq!(entry[key], info[key], "{}: {key}", info["path"]);
        }
        assert_eq!(entry["fileSize"], info["downloadSize"], "{}", info["path"]);
    }
    // Referrers: the root has none; c is named by b only... and so on, as counted here.
    for entry in paths {
        let path = entry["path"].as_str().unwrap();
        let referrers = nix
            .iter()
            .filter(|i| i["path"] != path && i["references"].as_array().unwrap().iter().any(|r| r == path))
            .count();
        assert_eq!(entry["referrers"], referrers, "{path}");
    }
    assert_eq!(json["totals"]["paths"], closure_a.len());
    assert_eq!(json["totals"]["roots"], 1);
    let nar_total: u64 = nix.iter().map(|i| i["narSize"].as_u64().unwrap()).sum();
    assert_eq!(json["totals"]["narSize"], nar_total);

    let table = run_ok(ours().arg("ls").arg(&cache));
    assert!(table.starts_with("STORE PATH") && table.contains(&fixture.a), "{table}");
    let last = table.lines().last().unwrap();
    assert!(last.starts_with(&format!("{} store paths (1 referred to by no other): NAR", closure_a.len())), "{table}");
}

#[test]
fn diff_says_what_was_added_removed_and_changed() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("diff");
    let fixture = fixture();
    let closure = path_info(&tmp, "closure.json", true, &[&fixture.a]);
    let old = tmp.join("old");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&old));
    // The same store paths, another compression: the same contents.
    let xz = tmp.join("xz");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&xz).args(["--compression", "xz"]));
    let (same, stdout, _) = run(ours().args(["diff", "--json"]).arg(&old).arg(&xz));
    assert!(same, "{stdout}");

    // NEW: b's closure only (a and link removed), c with another NarHash,
    // and a path of another closure added.
    let new = tmp.join("new");
    fs::create_dir_all(&new).unwrap();
    for (rel, bytes) in tree(&old) {
        if rel.ends_with('/') {
            fs::create_dir_all(new.join(&rel)).unwrap();
        } else {
            fs::write(new.join(&rel), bytes).unwrap();
        }
    }
    run_ok(&mut gc(&new, &[Path::new(&fixture.b)]));
    let c = closure_of(&fixture.b).into_iter().find(|p| p.ends_with("e2e-c-file")).unwrap();
    let c_narinfo = new.join(format!("{}.narinfo", hash_part(&c)));
    let text = fs::read_to_string(&c_narinfo).unwrap();
    let old_hash = field(&parse_narinfo(&text), "NarHash").to_owned();
    let new_hash = format!("sha256:{}", "1".repeat(52));
    fs::write(&c_narinfo, text.replace(&old_hash, &new_hash)).unwrap();
    let other = build_fixture("diff-added", "c");
    let other_json = path_info(&tmp, "other.json", true, &[&other]);
    run_ok(ours().arg("--closure").arg(&other_json).arg("--out").arg(&new));

    let out = ours().args(["diff", "--json"]).arg(&old).arg(&new).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names = |key: &str| -> Vec<String> {
        let mut v: Vec<String> =
            diff[key].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names("added"), vec![other.clone()]);
    let mut removed: Vec<String> =
        closure_of(&fixture.a).into_iter().filter(|p| !closure_of(&fixture.b).contains(p)).collect();
    removed.sort();
    assert_eq!(names("removed"), removed);
    assert_eq!(names("changed"), vec![c.clone()]);
    assert_eq!(diff["changed"][0]["old"]["narHash"], old_hash);
    assert_eq!(diff["changed"][0]["new"]["narHash"], new_hash);
    assert_eq!(diff["unchanged"], 2);
    let text = String::from_utf8(ours().arg("diff").arg(&old).arg(&new).output().unwrap().stdout).unwrap();
    assert!(text.contains(&format!("+ {other}")) && text.contains(&format!("~ {c}")), "{text}");
    assert!(text.contains("1 store path added") && text.contains("2 removed") && text.contains("1 changed"), "{text}");
    // Trouble is 2, as for diff(1).
    let trouble = ours().arg("diff").arg(&old).arg(tmp.join("missing")).output().unwrap();
    assert_eq!(trouble.status.code(), Some(2));
    let err = run_fail(ours().arg("diff").arg(&old));
    assert!(err.contains("diff takes two caches, OLD and NEW, not 1"), "{err}");
}

/// `--include-logs` copies a derivation's build log into `log/`, `nix log`
/// reads it from the cache, a path without one is counted, and `gc` removes
/// the logs of what it removes.
#[test]
fn build_logs_travel_with_the_cache() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("logs");
    let nonce = unique("logs");
    let line = format!("a line of the build log {nonce}");
    let expr = format!(
        r#"builtins.derivation {{ name = "logged"; system = builtins.currentSystem; builder = "/bin/sh";
            args = [ "-c" "echo '{line}'; echo done > $out" ]; }}"#
    );
    let logged = run_ok(nix_cmd("nix-build").args(["--no-out-link", "-E", &expr]));
    let file = tmp.join("plain.txt");
    fs::write(&file, &nonce).unwrap();
    let added = run_ok(nix_cmd("nix-store").arg("--add").arg(&file));
    let closure = path_info(&tmp, "closure.json", false, &[&logged, &added]);

    let cache = tmp.join("cache");
    let log = log_of(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache).arg("--include-logs"));
    assert!(log.contains("build logs: 1 copied from") && log.contains("1 store path without a Deriver"), "{log}");
    let printed =
        run_ok(nix_cmd("nix").args(["log", "--store"]).arg(format!("file://{}", cache.display())).arg(&logged));
    assert!(printed.contains(&line), "nix log printed {printed:?}");
    assert_eq!(list_dir(&cache.join("log")).len(), 1);
    // verify knows log/: a log no narinfo's Deriver names is a warning.
    let stray = cache.join("log/00000000000000000000000000000000-stray.drv");
    fs::write(&stray, "a log of nothing here\n").unwrap();
    let verified = log_of(ours().arg("verify").arg(&cache));
    assert!(
        verified.contains("-stray.drv: a build log of a derivation no narinfo names") && verified.contains("1 warning"),
        "{verified}"
    );
    fs::remove_file(&stray).unwrap();

    // Another log directory, without that log: counted, not an error.
    let empty = tmp.join("no-logs");
    fs::create_dir_all(&empty).unwrap();
    let other = tmp.join("other");
    let log = log_of(
        ours().env("NIX_LOG_DIR", &empty).arg("--closure").arg(&closure).arg("--out").arg(&other).arg("--include-logs"),
    );
    assert!(log.contains("1 derivation without a log there (/nix/store/"), "{log}");
    assert!(list_dir(&other.join("log")).is_empty());
    // Where Nix has no log, an earlier cache of --reuse may.
    let third = tmp.join("third");
    let log = log_of(
        ours()
            .env("NIX_LOG_DIR", &empty)
            .arg("--closure")
            .arg(&closure)
            .arg("--out")
            .arg(&third)
            .arg("--include-logs")
            .arg("--reuse")
            .arg(&cache),
    );
    assert!(log.contains("build logs: 0 copied from") && log.contains("and 1 from earlier caches"), "{log}");
    assert_eq!(tree(&third.join("log")), tree(&cache.join("log")));

    // gc takes the log with the path whose derivation it belongs to.
    let gc_log = log_of(&mut gc(&cache, &[Path::new(&added)]));
    assert!(gc_log.contains("removing log/"), "{gc_log}");
    assert!(list_dir(&cache.join("log")).is_empty());
    let verified = log_of(ours().arg("verify").arg(&cache));
    assert!(verified.contains("1 store path checked") && verified.contains(" 0 problems"), "{verified}");
}
