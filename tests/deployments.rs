//! The deployments a flat-file cache is made for, done for real: a cache we
//! wrote, served over HTTP by nginx, bind-mounted read-only as a container
//! sees it, and copied elsewhere with `cp -r` and `rsync -a`; from each, real
//! Nix copies the closure into a fresh chroot store (`nix copy --from …`),
//! which must have had none of the paths before, and verifies it there
//! (`nix-store --verify --check-contents`, NarHashes against the real store).
//!
//! They need nginx (Debian: `nginx-light`) and rsync, and fail saying so
//! without them. The bind mount needs root (it runs in a private mount
//! namespace, `unshare -m`) and is skipped, visibly, otherwise. Without
//! `nix-build` on PATH every test fails, saying how to install Nix, unless
//! MAKE_BINARY_CACHE_SKIP_NIX_TESTS=1 (see `crate::common::skip_without_nix`).

use crate::common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The fixture closure written by our CLI into `tmp/cache`; returns the root
/// store path and the cache directory.
fn our_cache(tmp: &TempDir) -> (String, PathBuf) {
    let (root, closure) = path_info_file(tmp);
    let cache = tmp.join("cache");
    run_ok(ours().arg("--closure").arg(&closure).arg("--out").arg(&cache).args(["--compression", "zstd"]));
    (root, cache)
}

// ---------------------------------------------------------------------------
// HTTP, served by nginx

/// nginx serving one directory on 127.0.0.1, with its configuration, logs,
/// pid file and temporary directories under its own prefix (nothing from
/// /etc/nginx or /var). Stopped on drop, also when the test fails.
struct Nginx {
    child: Child,
    port: u16,
    prefix: PathBuf,
}

impl Nginx {
    fn serve(root: &Path, prefix: &Path) -> Nginx {
        let nginx = program("nginx", "nginx-light");
        fs::create_dir_all(prefix.join("tmp")).unwrap();
        let conf = prefix.join("nginx.conf");
        let error_log = prefix.join("error.log");
        let (port, child) = start_on_free_port("nginx", &error_log, Duration::from_secs(20), |port| {
            // As root, the master binds and the workers run as nobody, as in
            // a real deployment: the cache must be world-readable.
            let user = if is_root() { "user nobody nogroup;" } else { "" };
            let p = prefix.display();
            fs::write(
                &conf,
                format!(
                    "{user}
worker_processes 1;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {p}/access.log;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
",
                    root = root.display()
                ),
            )
            .unwrap();
            Command::new(&nginx)
                .arg("-p")
                .arg(prefix)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(&error_log)
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", nginx.display()))
        });
        Nginx { child, port, prefix: prefix.to_path_buf() }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn access_log(&self) -> String {
        fs::read_to_string(self.prefix.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers and exits (SIGKILL would
        // leave the workers behind).
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One GET over plain HTTP/1.0: the status line and the body.
fn http_get(port: u16, path: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of headers");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    (head.lines().next().unwrap_or("").to_string(), response[split + 4..].to_vec())
}

#[test]
fn served_by_nginx_and_copied_over_http() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("nginx");
    let (root, cache) = our_cache(&tmp);
    let server = Nginx::serve(&cache, &tmp.join("nginx"));

    // What nginx sends is the file we wrote.
    let (status, body) = http_get(server.port, "/nix-cache-info");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, fs::read(cache.join("nix-cache-info")).unwrap());

    copy_closure_from_url(&server.url(), &tmp.join("store"), &[&root]);

    // Nix fetched every narinfo and NAR of the closure from nginx.
    let log = server.access_log();
    for p in closure_of(&root) {
        let narinfo = format!("GET /{}.narinfo ", hash_part(&p));
        assert!(log.lines().any(|l| l.contains(&narinfo) && l.contains("\" 200 ")), "no {narinfo}in:\n{log}");
        let text = fs::read_to_string(cache.join(format!("{}.narinfo", hash_part(&p)))).unwrap();
        let url = field(&parse_narinfo(&text), "URL").to_string();
        assert!(log.contains(&format!("GET /{url} ")), "NAR {url} of {p} not fetched:\n{log}");
    }
}

// ---------------------------------------------------------------------------
// A read-only bind mount, as a container sees the cache

#[test]
fn read_only_bind_mount() {
    if skip_without_nix() {
        return;
    }
    if !is_root() {
        skip_visibly("a bind mount needs root (CI runs as root)");
        return;
    }
    let tmp = TempDir::new("ro-mount");
    let (root, cache) = our_cache(&tmp);
    let mnt = tmp.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let store = tmp.join("store");

    // In a private mount namespace, so the mount vanishes with the shell and
    // is never seen outside. The write probe shows the mount is read-only;
    // then Nix opens the cache there and copies from it.
    assert_store_lacks(&store, &[&root]);
    let script = r#"set -eu
mount --bind "$1" "$2"
mount -o remount,bind,ro "$2"
if touch "$2/probe" 2>/dev/null; then echo "$2 is writable" >&2; exit 1; fi
nix copy --no-require-sigs --from "file://$2" --to "$3" "$4"
"#;
    run_ok(
        Command::new("unshare")
            .env("NIX_CONFIG", NIX_CONFIG)
            .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(&cache)
            .arg(&mnt)
            .arg(&store)
            .arg(&root),
    );
    assert!(list_dir(&mnt).is_empty(), "the mount leaked out of its namespace");
    assert_store_holds(&store, &[&root], "a read-only bind mount");
}

// ---------------------------------------------------------------------------
// Copied to another directory

#[test]
fn copied_with_cp_r() {
    if skip_without_nix() {
        return;
    }
    let tmp = TempDir::new("cp-r");
    let (root, cache) = our_cache(&tmp);
    let copy = tmp.join("elsewhere/cache");
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    run_ok(Command::new("cp").arg("-r").arg(&cache).arg(&copy));
    assert_eq!(tree(&copy), tree(&cache));
    copy_closure_from_url(&format!("file://{}", copy.display()), &tmp.join("store"), &[&root]);
}

#[test]
fn copied_with_rsync() {
    if skip_without_nix() {
        return;
    }
    let rsync = program("rsync", "rsync");
    let tmp = TempDir::new("rsync");
    let (root, cache) = our_cache(&tmp);
    let copy = tmp.join("elsewhere/cache");
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    run_ok(Command::new(rsync).arg("-a").arg(format!("{}/", cache.display())).arg(&copy));
    assert_eq!(tree(&copy), tree(&cache));
    copy_closure_from_url(&format!("file://{}", copy.display()), &tmp.join("store"), &[&root]);
}
