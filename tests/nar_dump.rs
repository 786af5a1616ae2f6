//! Our NAR serialisation against the reference, `nix-store --dump`, on trees
//! holding every corner case a NAR has.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use common::{TempDir, nix_cmd, skip_without_nix};
use make_binary_cache::dump::Dumper;

fn ours(path: &Path) -> Vec<u8> {
    let mut nar = Vec::new();
    Dumper::default().dump(path, &mut nar).unwrap_or_else(|e| panic!("dumping {}: {e:#}", path.display()));
    nar
}

fn nixs(path: &Path) -> Vec<u8> {
    let out = nix_cmd("nix-store").arg("--dump").arg(path).output().expect("running nix-store --dump");
    assert!(out.status.success(), "nix-store --dump {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn assert_same_nar(path: &Path) {
    let (ours, nixs) = (ours(path), nixs(path));
    assert!(
        ours == nixs,
        "NAR of {} differs from nix-store --dump ({} vs {} bytes)",
        path.display(),
        ours.len(),
        nixs.len()
    );
}

fn write(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn tree_with_every_corner_case() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("nar-tree");
    let root = tmp.join("root");
    fs::create_dir_all(root.join("dir/nested/deeper")).unwrap();
    fs::create_dir(root.join("empty-dir")).unwrap();
    write(&root.join("empty-file"), b"", 0o644);
    write(&root.join("exec"), b"#!/bin/sh\necho hi\n", 0o755);
    // Only the owner's execute bit makes a file executable in a NAR.
    write(&root.join("group-exec-only"), b"x", 0o654);
    write(&root.join("owner-exec-only"), b"x", 0o744);
    write(&root.join("read-only"), b"ro", 0o444);
    for len in [1, 7, 8, 9, 15, 16, 17, 1000] {
        write(&root.join(format!("len-{len}")), &vec![b'a' + (len % 26) as u8; len], 0o644);
    }
    // Larger than one read chunk, not a multiple of 8.
    let big: Vec<u8> = (0..(3 << 20) + 5).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    write(&root.join("dir/nested/deeper/big"), &big, 0o644);
    write(&root.join("dir/nested/file"), b"nested\n", 0o600);
    symlink("exec", root.join("link")).unwrap();
    symlink("dir/nested", root.join("link-to-dir")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    symlink("../../..", root.join("dir/nested/up")).unwrap();
    // Byte order, not locale order: uppercase before lowercase, `-` and `.` early.
    for name in ["B", "Z", "_", "a", "a-b", "a.b", "ab", "aB", "é", "~"] {
        write(&root.join(name), name.as_bytes(), 0o644);
    }
    // A name that is not UTF-8.
    write(&root.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1", 0o644);
    assert_same_nar(&root);
}

#[test]
fn single_file_and_symlink_roots() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("nar-roots");
    write(&tmp.join("plain"), b"a single regular file\n", 0o644);
    write(&tmp.join("script"), b"#!/bin/sh\n", 0o555);
    write(&tmp.join("empty"), b"", 0o444);
    symlink("/nix/store/does-not-exist", tmp.join("dangling")).unwrap();
    symlink("plain", tmp.join("link")).unwrap();
    fs::create_dir(tmp.join("empty-dir")).unwrap();
    for name in ["plain", "script", "empty", "dangling", "link", "empty-dir"] {
        assert_same_nar(&tmp.join(name));
    }
}

#[test]
fn special_files_are_errors_naming_them() {
    let tmp = TempDir::new("nar-special");
    let root = tmp.join("root");
    fs::create_dir(&root).unwrap();
    let socket = root.join("a-socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let err = format!("{:#}", Dumper::default().dump(&root, &mut Vec::new()).unwrap_err());
    assert!(err.contains(&socket.display().to_string()) && err.contains("socket"), "{err}");

    let fifo = tmp.join("a-fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("running mkfifo");
    assert!(status.success());
    let err = format!("{:#}", Dumper::default().dump(&fifo, &mut Vec::new()).unwrap_err());
    assert!(err.contains(&fifo.display().to_string()) && err.contains("FIFO"), "{err}");
}

#[test]
fn unreadable_and_missing_paths_are_errors_naming_them() {
    let tmp = TempDir::new("nar-missing");
    let missing = tmp.join("missing");
    let err = format!("{:#}", Dumper::default().dump(&missing, &mut Vec::new()).unwrap_err());
    assert!(err.contains(&missing.display().to_string()), "{err}");
}
