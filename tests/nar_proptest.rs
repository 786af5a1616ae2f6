//! Random trees serialise byte for byte as `nix-store --dump` serialises them.
//!
//! The trees hold what a NAR's corner cases are made of: names that are not
//! UTF-8 or whose byte order differs from their order as strings, file sizes
//! on either side of the 8-byte padding and of the dumper's read chunk,
//! executable bits and other modes, symlinks (dangling, absolute, not UTF-8),
//! empty directories and nesting, and roots that are a lone file or symlink.
//! Real Nix is the judge; a failure prints the smallest tree that shows it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::common::{TempDir, nix_cmd, skip_without_nix, unique};
use make_binary_cache::commands::build::dump::Dumper;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};

#[derive(Debug, Clone)]
enum Tree {
    /// Contents are `size` bytes derived from `seed`, so that shrinking
    /// works on two numbers rather than on the bytes.
    File {
        mode: u32,
        size: usize,
        seed: u8,
    },
    Symlink(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, Tree>),
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<Vec<u8>> = [
        &b"a"[..],
        b"B",
        b"Z",
        b"_",
        b"~",
        b"a-b",
        b"a.b",
        b"ab",
        b"aB",
        b".hidden",
        b"...",
        "é".as_bytes(),
        "z\u{e9}".as_bytes(),
        b"caf\xe9",
        b"\xff",
        b"\x80x",
        b"with space",
        b"new\nline",
    ]
    .iter()
    .map(|n| n.to_vec())
    .collect();
    // Bytes chosen so that string, locale and byte orders disagree.
    let alphabet = b"aAzZ09-._~ \x01\x7f\x80\xc3\xa9\xe9\xff".to_vec();
    prop_oneof![select(fixed), prop::collection::vec(select(alphabet), 1..12)]
        .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => select(vec![0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25]),
        4 => 0..300usize,
        // Around the dumper's 256 KiB read chunk.
        1 => select(vec![4096, 65_537, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 9]),
    ]
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<Vec<u8>> =
        [&b"a"[..], b"../a", b".", b"..", b"/", b"/nix/store/does-not-exist", b"/etc/hostname", b"dir/", b"caf\xe9"]
            .iter()
            .map(|t| t.to_vec())
            .chain(std::iter::once(b"long/".repeat(60)))
            .collect();
    let alphabet = b"ab./~\xe9\xff".to_vec();
    prop_oneof![select(fixed), prop::collection::vec(select(alphabet), 1..20)]
}

fn tree() -> impl Strategy<Value = Tree> {
    let mode = select(vec![0o644, 0o755, 0o600, 0o700, 0o744, 0o654, 0o444, 0o555]);
    let leaf = prop_oneof![
        3 => (mode, size(), any::<u8>()).prop_map(|(mode, size, seed)| Tree::File { mode, size, seed }),
        2 => target().prop_map(Tree::Symlink),
        1 => Just(Tree::Dir(BTreeMap::new())),
    ];
    leaf.prop_recursive(4, 24, 6, |inner| prop::collection::btree_map(name(), inner, 0..6).prop_map(Tree::Dir))
}

fn contents(size: usize, seed: u8) -> Vec<u8> {
    (0..size).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(u32::from(seed)) >> 13) as u8).collect()
}

fn create(path: &Path, tree: &Tree) {
    match tree {
        Tree::File { mode, size, seed } => {
            fs::write(path, contents(*size, *seed)).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(*mode)).unwrap();
        }
        Tree::Symlink(target) => symlink(OsStr::from_bytes(target), path).unwrap(),
        Tree::Dir(entries) => {
            fs::create_dir(path).unwrap();
            for (name, child) in entries {
                create(&path.join(OsStr::from_bytes(name)), child);
            }
        }
    }
}

#[test]
fn random_trees_dump_like_nix_store() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("nar-proptest");
    // One dumper for all cases, as a worker reuses one for many store paths.
    let dumper = RefCell::new(Dumper::default());
    // Each case runs nix-store once: 64 small trees keep this to seconds.
    // No regression file: TestRunner alone does not know this source file.
    let mut runner = TestRunner::new(Config { cases: 64, failure_persistence: None, ..Config::default() });
    let result = runner.run(&tree(), |tree| {
        let root = tmp.join(unique("case"));
        create(&root, &tree);
        let mut ours = Vec::new();
        dumper.borrow_mut().dump(&root, &mut ours).unwrap_or_else(|e| panic!("dumping {}: {e:#}", root.display()));
        let out = nix_cmd("nix-store").arg("--dump").arg(&root).output().expect("running nix-store --dump");
        prop_assert!(out.status.success(), "nix-store --dump: {}", String::from_utf8_lossy(&out.stderr));
        prop_assert!(
            ours == out.stdout,
            "NAR differs from nix-store --dump ({} vs {} bytes)",
            ours.len(),
            out.stdout.len()
        );
        if fs::symlink_metadata(&root).unwrap().is_dir() {
            fs::remove_dir_all(&root).unwrap();
        } else {
            fs::remove_file(&root).unwrap();
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
