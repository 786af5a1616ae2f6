//! Hostile input, judged by real Nix: a closure entry that tries to smuggle
//! narinfo lines through a signature (or a bogus `ca` or deriver) is refused
//! and leaves no narinfo behind, while real signatures and content addresses
//! come through intact: Nix substitutes the cache with `require-sigs = true`,
//! accepting signed paths by their `Sig:` and unsigned content-addressed paths
//! by their `CA:`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{
    NIX_CONFIG, TempDir, assert_store_holds, build_fixture, nix_cmd, ours, parse_narinfo, run, run_fail, run_ok,
    skip_without_nix, unique,
};
use serde_json::Value;

/// `nix path-info --json --recursive PATHS` (Nix 2.8: an array of entries).
fn path_info(paths: &[&str]) -> Vec<Value> {
    let json = run_ok(nix_cmd("nix").args(["path-info", "--json", "--recursive"]).args(paths));
    match serde_json::from_str(&json).unwrap() {
        Value::Array(entries) => entries,
        other => panic!("expected the array form of Nix 2.8, got {other}"),
    }
}

fn write_json(file: &Path, entries: &[Value]) {
    fs::write(file, serde_json::to_string(entries).unwrap()).unwrap();
}

/// The `.narinfo` files anywhere under `dir` (none when `dir` is missing).
fn narinfos(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(narinfos(&path));
        } else if path.extension().is_some_and(|e| e == "narinfo") {
            found.push(path);
        }
    }
    found
}

#[test]
fn smuggled_narinfo_lines_are_refused_and_nothing_is_written() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("hostile-refused");
    let root = build_fixture("", "a");
    let entries = path_info(&[&root]);
    assert!(entries.len() >= 2, "the fixture closure has several paths");
    let (victim, other) = (&entries[0], &entries[1]);
    let victim_path = victim["path"].as_str().unwrap();
    // What the attack of issue 6 looks like: another path's NAR, hash and size
    // after a line break, which Nix would read as overriding the real ones.
    let injection = format!(
        "k:s\nURL: nar/{}.nar\nNarHash: {}\nNarSize: {}",
        &other["path"].as_str().unwrap()[11..43],
        other["narHash"].as_str().unwrap(),
        other["narSize"]
    );
    let not_a_drv = other["path"].as_str().unwrap();
    let cases: [(&str, Value, &str); 5] = [
        ("signatures", Value::from(vec![injection.clone()]), "field `signatures`"),
        ("signatures", Value::from(vec![format!("{injection}\nSig: k:s")]), "field `signatures`"),
        ("ca", Value::from("garbage"), "field `ca`"),
        ("ca", Value::from(format!("text:sha256:{}", "0".repeat(52)) + "\nCA: x"), "field `ca`"),
        ("deriver", Value::from(not_a_drv), "field `deriver`"),
    ];
    for (i, (field, value, expected)) in cases.into_iter().enumerate() {
        let mut bad = entries.clone();
        bad[0][field] = value;
        let file = tmp.join(format!("bad-{i}.json"));
        write_json(&file, &bad);
        let out = tmp.join(format!("out-{i}"));
        let err = run_fail(ours().arg("--closure").arg(&file).arg("--out").arg(&out));
        assert!(
            err.contains(victim_path) && err.contains(expected),
            "case {i}: {err} lacks {victim_path} or {expected}"
        );
        assert_eq!(narinfos(&out), Vec::<PathBuf>::new(), "case {i} wrote narinfos");
    }
}

#[test]
fn real_signatures_and_content_addresses_survive_require_sigs() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("hostile-sigs");
    let nonce = unique("hostile-sigs");
    let root = build_fixture(&nonce, "a");

    // Content-addressed paths of every kind Nix 2.8 makes: recursive and flat
    // fixed-output, and text (builtins.toFile).
    let src = tmp.join("ca-src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/file"), format!("ca tree {nonce}\n")).unwrap();
    fs::write(src.join("flat"), format!("ca flat {nonce}\n")).unwrap();
    let add_fixed = |args: &[&str], p: &Path| run_ok(nix_cmd("nix-store").arg("--add-fixed").args(args).arg(p));
    let ca_tree = add_fixed(&["--recursive", "sha256"], &src);
    let ca_flat = add_fixed(&["sha1"], &src.join("flat"));
    let ca_text = run_ok(
        nix_cmd("nix-instantiate")
            .args(["--eval", "--read-write-mode", "-E"])
            .arg(format!("builtins.toFile \"hostile-text\" \"{nonce}\"")),
    )
    .trim_matches('"')
    .to_string();

    // Sign the fixture closure and the text path; the fixed-output paths stay
    // unsigned, so Nix can accept them only by checking their CA.
    let (sk, pk) = (tmp.join("sk"), tmp.join("pk"));
    run_ok(nix_cmd("nix-store").args(["--generate-binary-cache-key", "hostile-test-1"]).arg(&sk).arg(&pk));
    run_ok(nix_cmd("nix").args(["store", "sign", "--key-file"]).arg(&sk).arg("-r").arg(&root).arg(&ca_text));
    let public_key = fs::read_to_string(&pk).unwrap();

    let roots = [root.as_str(), &ca_tree, &ca_flat, &ca_text];
    let entries = path_info(&roots);
    let by_path = |path: &str| entries.iter().find(|e| e["path"] == path).unwrap().clone();
    assert!(by_path(&root)["signatures"].as_array().is_some_and(|s| !s.is_empty()));
    for ca_path in [&ca_tree, &ca_flat, &ca_text] {
        assert!(by_path(ca_path)["ca"].is_string(), "{ca_path} has no ca");
    }
    let closure = tmp.join("closure.json");
    write_json(&closure, &entries);
    let cache = tmp.join("cache");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache));

    // Every narinfo has exactly the keys Nix writes, each once except Sig.
    let known = ["StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize", "References"];
    let optional = ["Deriver", "Sig", "CA"];
    let written = narinfos(&cache);
    assert_eq!(written.len(), entries.len());
    for file in &written {
        let info = parse_narinfo(&fs::read_to_string(file).unwrap());
        for key in info.keys() {
            assert!(known.contains(&key.as_str()) || optional.contains(&key.as_str()), "{file:?}: unknown key {key}");
        }
        for (key, values) in &info {
            assert!(key == "Sig" || values.len() == 1, "{file:?}: {key} appears {} times", values.len());
        }
        for key in known {
            assert!(info.contains_key(key), "{file:?} lacks {key}");
        }
        let entry = by_path(&info["StorePath"][0]);
        assert_eq!(info.get("CA").map(|v| v[0].as_str()), entry["ca"].as_str(), "{file:?}");
        let sigs: Vec<&str> =
            entry["signatures"].as_array().map_or(Vec::new(), |s| s.iter().map(|s| s.as_str().unwrap()).collect());
        assert_eq!(info.get("Sig").map_or(Vec::new(), |v| v.iter().map(String::as_str).collect()), sigs);
    }

    // Nix, requiring signatures from our key only, substitutes all of it.
    let strict_config = format!("{NIX_CONFIG}require-sigs = true\ntrusted-public-keys = {public_key}\n");
    let copy = |cache: &Path, store: &Path, paths: &[&str]| {
        let mut cmd = nix_cmd("nix");
        cmd.env("NIX_CONFIG", &strict_config)
            .args(["copy", "--from"])
            .arg(format!("file://{}", cache.display()))
            .arg("--to")
            .arg(store)
            .args(paths);
        run(&mut cmd)
    };
    let store = tmp.join("store");
    let (ok, _, stderr) = copy(&cache, &store, &roots);
    assert!(ok, "nix copy with require-sigs failed:\n{stderr}");
    assert_store_holds(&store, &roots, "the cache signed by our key");

    // The controls: the same closure without its signatures is refused, and
    // so is an unsigned path with a well-formed but wrong CA, so the copy
    // above did check both.
    let unsigned: Vec<Value> = entries
        .iter()
        .cloned()
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("signatures");
            e
        })
        .collect();
    let unsigned_file = tmp.join("unsigned.json");
    write_json(&unsigned_file, &unsigned);
    let unsigned_cache = tmp.join("unsigned-cache");
    run_ok(ours().arg("--closure").arg(&unsigned_file).arg("--out").arg(&unsigned_cache));
    let (ok, _, stderr) = copy(&unsigned_cache, &tmp.join("store-unsigned"), &[&root]);
    assert!(!ok && stderr.contains("lacks a valid signature"), "unsigned copy was not refused:\n{stderr}");

    let wrong_ca = vec![{
        let mut e = by_path(&ca_tree);
        e["ca"] = Value::from(format!("fixed:r:sha256:{}", "1".repeat(52)));
        e
    }];
    let wrong_ca_file = tmp.join("wrong-ca.json");
    write_json(&wrong_ca_file, &wrong_ca);
    // A CA that does not give the store path (which Nix would refuse as
    // "lacks a valid signature") is refused before anything is written.
    let wrong_ca_cache = tmp.join("wrong-ca-cache");
    let err = run_fail(ours().arg("--closure").arg(&wrong_ca_file).arg("--out").arg(&wrong_ca_cache));
    assert!(err.contains(&ca_tree) && err.contains("gives the store path"), "{err}");
    assert!(!wrong_ca_cache.join(format!("{}.narinfo", &ca_tree["/nix/store/".len()..][..32])).exists());
}

/// Our content address grammar against Nix's own parser: each spelling goes
/// into the `CA:` line of a narinfo that Nix then reads (`nix path-info
/// --store file://…`); Nix must accept exactly what we accept and print it as
/// we render it. `fixed:git:` is left out: newer Nix knows it, Nix 2.8 does not.
#[test]
fn content_addresses_parse_as_nix_parses_them() {
    use make_binary_cache::format::content_address::ContentAddress;

    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("hostile-ca-grammar");
    let root = build_fixture("", "a");
    let closure = tmp.join("closure.json");
    write_json(&closure, &path_info(&[&root]));
    let cache = tmp.join("cache");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache).args(["--compression", "none"]));
    let name = format!("{}.narinfo", &root["/nix/store/".len()..][..32]);
    let narinfo = fs::read_to_string(cache.join(&name)).unwrap();

    let hex = |algo: &str| run_ok(nix_cmd("nix-hash").args(["--type", algo, "--flat"]).arg(&closure));
    let to = |base: &str, algo: &str, hex: &str| {
        run_ok(nix_cmd("nix").args(["hash", &format!("to-{base}"), "--type", algo, hex]))
    };
    // (An empty `CA:` line is no CA to Nix; we never write one, and refuse
    // `"ca": ""`, which Nix never writes.)
    let mut cases = vec!["garbage".to_string(), "fixed:r:sha256".into(), "text:sha256:".into(), "fixed:".into()];
    for algo in ["md5", "sha1", "sha256", "sha512"] {
        let hex = hex(algo);
        let (nix32, base64) = (to("base32", algo, &hex), to("base64", algo, &hex));
        for digest in [&hex, &hex.to_uppercase(), &nix32, &base64] {
            cases.extend([format!("fixed:{algo}:{digest}"), format!("fixed:r:{algo}:{digest}")]);
        }
        cases.extend([
            format!("text:{algo}:{nix32}"),
            format!("fixed:r:{algo}-{base64}"),
            format!("fixed:r:{algo}:{algo}-{base64}"),
            format!("fixed:r:{algo}:{}", &nix32[1..]),
            format!("fixed:r:{algo}:z{}", &nix32[1..]),
            format!("fixed:r:{algo}:{}g", &hex[1..]),
            format!("fixed:r:r:{algo}:{nix32}"),
            format!("fixed:r:{}:{nix32}", algo.to_uppercase()),
        ]);
        if algo == "sha256" {
            // Only newer Nix knows blake3 (experimental); a 32-byte digest.
            cases.push(format!("fixed:r:blake3:{nix32}"));
        }
    }
    for (i, ca) in cases.iter().enumerate() {
        let dir = tmp.join(format!("cache-{i}"));
        fs::create_dir_all(&dir).unwrap();
        fs::copy(cache.join("nix-cache-info"), dir.join("nix-cache-info")).unwrap();
        let without_ca: String = narinfo.lines().filter(|l| !l.starts_with("CA:")).map(|l| format!("{l}\n")).collect();
        fs::write(dir.join(&name), format!("{without_ca}CA: {ca}\n")).unwrap();
        let (nix_ok, stdout, stderr) = run(nix_cmd("nix")
            .args(["path-info", "--json", "--store"])
            .arg(format!("file://{}", dir.display()))
            .arg(&root));
        let ours = ca.parse::<ContentAddress>();
        assert_eq!(ours.is_ok(), nix_ok, "{ca:?}: we say {ours:?}, Nix says {stdout}{stderr}");
        if let Ok(ours) = ours {
            let printed: Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(printed[0]["ca"], ours.to_string(), "{ca:?}");
        }
    }
}
