//! Our NAR serialisation against the reference, `nix-store --dump`, on trees
//! holding every corner case a NAR has.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TempDir, nix_cmd, skip_without_nix};
use make_binary_cache::commands::build::dump::Dumper;

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

/// A NAR spelled out token by token, independently of the code under test.
fn tokens(ts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in ts {
        out.extend_from_slice(&(t.len() as u64).to_le_bytes());
        out.extend_from_slice(t);
        out.resize(out.len().div_ceil(8) * 8, 0);
    }
    out
}

/// `mkdirat` + `openat`: one level down without ever naming the full path,
/// which is longer than PATH_MAX in the deep tree below.
fn mkdir_open(parent: &OwnedFd, name: &[u8]) -> OwnedFd {
    let name = CString::new(name).unwrap();
    // SAFETY: valid descriptor and NUL-terminated name.
    assert_eq!(unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) }, 0, "{}", io::Error::last_os_error());
    // SAFETY: as above.
    let fd = unsafe { libc::openat(parent.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(fd >= 0, "{}", io::Error::last_os_error());
    // SAFETY: just opened, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[test]
fn tree_deeper_than_path_max() {
    let tmp = TempDir::new("nar-deep");
    let root = tmp.join("root");
    fs::create_dir(&root).unwrap();
    let levels: Vec<Vec<u8>> = (0..24).map(|i| format!("{i:02}-{}", "d".repeat(197)).into_bytes()).collect();
    let depth_bytes: usize = levels.iter().map(|l| l.len() + 1).sum();
    assert!(depth_bytes > 4096, "the tree must go beyond PATH_MAX");
    let mut dir = OwnedFd::from(fs::File::open(&root).unwrap());
    for level in &levels {
        dir = mkdir_open(&dir, level);
    }
    let leaf = CString::new("leaf").unwrap();
    // SAFETY: valid descriptor and NUL-terminated name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), leaf.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644) };
    assert!(fd >= 0, "{}", io::Error::last_os_error());
    // SAFETY: just opened, owned by nobody else.
    fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }).write_all(b"deep\n").unwrap();

    // nix-store --dump cannot judge here (it names every file by its full
    // path, which the kernel refuses), so the expected NAR is spelled out.
    let mut expected: Vec<&[u8]> = vec![b"nix-archive-1"];
    for level in &levels {
        expected.extend([&b"("[..], b"type", b"directory", b"entry", b"(", b"name", level, b"node"]);
    }
    expected.extend([&b"("[..], b"type", b"directory", b"entry", b"(", b"name", b"leaf", b"node"]);
    expected.extend([&b"("[..], b"type", b"regular", b"contents", b"deep\n", b")", b")", b")"]);
    for _ in &levels {
        expected.extend([&b")"[..], b")"]);
    }
    assert!(ours(&root) == tokens(&expected), "NAR of the deep tree differs from the expected one");
}

/// A NAR sink that runs `action` once, as soon as `trigger` has been written:
/// the dumper writes an entry's name before it opens the entry, so this
/// changes the tree at a chosen point of the walk.
struct SwapWhen<F: FnMut()> {
    out: Vec<u8>,
    trigger: Vec<u8>,
    action: Option<F>,
}

impl<F: FnMut()> Write for SwapWhen<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        if self.action.is_some() && self.out.windows(self.trigger.len()).any(|w| w == self.trigger) {
            (self.action.take().unwrap())();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn dump_swapping(root: &Path, trigger: &str, action: impl FnMut()) -> (anyhow::Result<()>, Vec<u8>) {
    let mut sink = SwapWhen { out: Vec::new(), trigger: trigger.as_bytes().to_vec(), action: Some(action) };
    let result = Dumper::default().dump(root, &mut sink);
    assert!(sink.action.is_none(), "the swap never happened");
    (result, sink.out)
}

/// A directory holding one file, `secret`, whose contents must never reach a NAR.
fn decoy(tmp: &TempDir) -> PathBuf {
    let decoy = tmp.join("decoy");
    fs::create_dir_all(decoy.join("inner")).unwrap();
    write(&decoy.join("secret"), b"SECRET CONTENTS", 0o644);
    write(&decoy.join("inner/file"), b"SECRET CONTENTS", 0o644);
    decoy
}

#[test]
fn directory_swapped_for_a_symlink_is_an_error_not_its_target() {
    let tmp = TempDir::new("nar-swap-dir");
    let decoy = decoy(&tmp);
    let root = tmp.join("root");
    fs::create_dir_all(root.join("victim")).unwrap();
    write(&root.join("victim/file"), b"original", 0o644);
    let victim = root.join("victim");
    let (result, out) = dump_swapping(&root, "victim", || {
        fs::rename(&victim, tmp.join("moved")).unwrap();
        symlink(&decoy, &victim).unwrap();
    });
    let err = format!("{:#}", result.expect_err("walked into a directory swapped for a symlink"));
    assert!(err.contains(&victim.display().to_string()), "{err}");
    assert!(!out.windows(6).any(|w| w == b"SECRET"), "read the symlink's target");
}

#[test]
fn file_swapped_for_a_symlink_is_an_error_not_its_target() {
    let tmp = TempDir::new("nar-swap-file");
    let decoy = decoy(&tmp);
    let root = tmp.join("root");
    fs::create_dir(&root).unwrap();
    let victim = root.join("victim");
    write(&victim, b"original", 0o644);
    let (result, out) = dump_swapping(&root, "victim", || {
        fs::remove_file(&victim).unwrap();
        symlink(decoy.join("secret"), &victim).unwrap();
    });
    let err = format!("{:#}", result.expect_err("read a file swapped for a symlink"));
    assert!(err.contains(&victim.display().to_string()), "{err}");
    assert!(!out.windows(6).any(|w| w == b"SECRET"), "read the symlink's target");
}

#[test]
fn ancestor_swapped_for_a_symlink_mid_walk_does_not_redirect_the_walk() {
    let tmp = TempDir::new("nar-swap-ancestor");
    let decoy = decoy(&tmp);
    let root = tmp.join("root");
    fs::create_dir_all(root.join("outer/inner")).unwrap();
    write(&root.join("outer/inner/file"), b"original", 0o644);
    let before = ours(&root);
    // Once `outer` is being listed, swap it: what is under it is read
    // through the directory already open, not through the symlink.
    let outer = root.join("outer");
    let (result, out) = dump_swapping(&root, "inner", || {
        fs::rename(&outer, tmp.join("moved")).unwrap();
        symlink(&decoy, &outer).unwrap();
    });
    result.unwrap();
    assert!(out == before, "the NAR changed when an ancestor was swapped for a symlink");
}
