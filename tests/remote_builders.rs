//! `mkBinaryCache { shards = N; }` on remote builders over SSH, for real.
//!
//! Each builder is Debian's `sshd`, started here on 127.0.0.1 on a port of
//! its own, in a private mount namespace (`unshare -m`) whose `/nix` is an
//! empty directory of the test's and whose `/etc/nix` holds the test's
//! `nix.conf`: a second machine as far as Nix can tell, with its own store
//! and database, to which Nix must send every input over SSH. The host and
//! user keys are generated here; the client reads only the test's
//! `ssh_config` (`NIX_SSHOPTS=-F …`) and `--builders`, so nothing is written
//! to the real `~/.ssh` or `/etc/nix`. The daemons are stopped on drop, also
//! when the test fails.
//!
//! They need root (the bind mounts) and `sshd` (Debian: `openssh-server`,
//! which `.ci/run` installs): without root they are skipped, visibly;
//! without sshd they fail, naming the package.

use crate::common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One builder: an sshd in its own mount namespace, `/nix` from `root/nix`.
struct Builder {
    name: String,
    root: PathBuf,
    sshd: Child,
}

/// The builders of one test, with the client's `ssh_config`; every sshd is
/// stopped on drop.
struct Builders {
    ssh_config: PathBuf,
    machines: Vec<Builder>,
}

impl Builders {
    /// `count` builders named builder1 …, under `dir`; their Nix uses
    /// `nix_conf` besides the settings below.
    fn start(dir: &Path, count: usize, nix_conf: &str) -> Builders {
        let sshd = program("sshd", "openssh-server");
        let unshare = program("unshare", "util-linux");
        let key = |name: &str| {
            let file = dir.join(name);
            run_ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&file));
            file
        };
        let (host_key, user_key) = (key("host_key"), key("user_key"));
        let authorized = dir.join("authorized_keys");
        fs::copy(user_key.with_extension("pub"), &authorized).unwrap();
        let host_pub = fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let ssh_config = dir.join("ssh_config");
        let mut builders = Builders { ssh_config: ssh_config.clone(), machines: Vec::new() };
        let (mut client, mut known_hosts) = (String::new(), String::new());
        for i in 1..=count {
            let name = format!("builder{i}");
            let root = dir.join(&name);
            fs::create_dir_all(root.join("nix")).unwrap();
            fs::create_dir_all(root.join("etc-nix")).unwrap();
            // No build users: they are the kernel's, shared with this
            // machine, while each store keeps its own pool of them, and Nix
            // kills every process of a build user before it takes one: a
            // builder taking nixbld1 would kill our build running as nixbld1.
            let conf = format!("sandbox = false\nbuild-users-group =\n{nix_conf}");
            fs::write(root.join("etc-nix/nix.conf"), conf).unwrap();
            let (port, child) = start_sshd(&sshd, &unshare, &root, &host_key, &authorized);
            known_hosts += &format!("{name} {host_pub}");
            // HostKeyAlias: each builder's key is checked under its own name,
            // not 127.0.0.1's; BatchMode: a question would hang the build.
            client += &format!(
                "Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  HostKeyAlias {name}\n  \
                 IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  \
                 GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
                user_key.display(),
                dir.join("known_hosts").display()
            );
            builders.machines.push(Builder { name, root, sshd: child });
        }
        fs::write(dir.join("known_hosts"), known_hosts).unwrap();
        fs::write(&ssh_config, client).unwrap();
        // Each answers as Nix will reach it.
        for b in &builders.machines {
            run_ok(builders.ssh(&b.name).arg("nix-store --version"));
        }
        builders
    }

    /// `ssh` to `name` with the test's client configuration.
    fn ssh(&self, name: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(&self.ssh_config).arg(name).stdin(Stdio::null());
        cmd
    }

    /// `--builders`: every builder, one job each, so that the work spreads.
    fn spec(&self) -> String {
        let machines: Vec<String> =
            self.machines.iter().map(|b| format!("ssh://{} x86_64-linux - 1 1", b.name)).collect();
        machines.join("; ")
    }

    /// Whether builder `name`'s own store holds `store_path`.
    fn holds(&self, name: &str, store_path: &str) -> bool {
        let b = self.machines.iter().find(|b| b.name == name).unwrap_or_else(|| panic!("no builder {name}"));
        b.root.join(store_path.trim_start_matches('/')).exists()
    }

    /// `nix-build` with these builders and `--max-jobs 0`: nothing is built
    /// here. Returns the output path and Nix's log.
    fn nix_build(&self, nonce: &str, body: &str, extra: &[&str]) -> (PathBuf, String) {
        let mut cmd = nix_build_expr(&builder_bin(), nonce, body);
        cmd.args(["--max-jobs", "0", "--builders", &self.spec()]).args(extra);
        cmd.env("NIX_SSHOPTS", format!("-F {}", self.ssh_config.display()));
        let (ok, stdout, stderr) = run(&mut cmd);
        assert!(ok, "nix-build on the builders failed:\n{stderr}");
        (PathBuf::from(stdout.trim()), stderr)
    }
}

impl Drop for Builders {
    fn drop(&mut self) {
        for b in &mut self.machines {
            let _ = b.sshd.kill();
            let _ = b.sshd.wait();
        }
    }
}

/// sshd for the builder at `root`, in its mount namespace, on a free port of
/// 127.0.0.1; returns the port once it accepts connections.
fn start_sshd(sshd: &Path, unshare: &Path, root: &Path, host_key: &Path, authorized: &Path) -> (u16, Child) {
    let log = root.join("sshd.log");
    start_on_free_port(&format!("sshd for {}", root.display()), &log, Duration::from_secs(10), |port| {
        let config = root.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\n",
                host_key.display(),
                root.join("sshd.pid").display(),
                authorized.display()
            ),
        )
        .unwrap();
        // /run is a fresh tmpfs for sshd's privilege-separation directory;
        // `exec` makes sshd the child we stop.
        let script = format!(
            "mount --bind {root}/nix /nix && mount --bind {root}/etc-nix /etc/nix \
             && mount -t tmpfs tmpfs /run && mkdir /run/sshd && exec {sshd} -D -e -f {config}",
            root = root.display(),
            sshd = sshd.display(),
            config = config.display()
        );
        let file = fs::File::create(&log).unwrap();
        Command::new(unshare)
            .args(["--mount", "--propagation", "private", "sh", "-euc", &script])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap()
    })
}

/// Lines of Nix's log saying which builder built which derivation:
/// (`.drv` path, builder name).
fn built_on(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("building '")?;
            let (drv, rest) = rest.split_once("' on 'ssh://")?;
            let (machine, _) = rest.split_once('\'')?;
            Some((drv.to_string(), machine.to_string()))
        })
        .collect()
}

/// The output of a derivation (a `.drv` path), which must be valid here.
fn output_of(drv: &str) -> String {
    let out = run_ok(nix_cmd("nix-store").args(["--query", "--outputs", drv]));
    run_ok(nix_cmd("nix-store").args(["--check-validity", &out]));
    out
}

/// A nonce never used before (so that Nix must build every shard now), the
/// fixture's root built with it here, and its cache with `shards = 1`,
/// built here too, to compare with.
fn fresh_fixture(label: &str) -> (String, String, PathBuf) {
    let nonce = unique(label);
    let root = build_fixture(&nonce, "a");
    let body = "mkBinaryCache { rootPaths = [ fixture ]; }";
    let whole = PathBuf::from(run_ok(&mut nix_build_expr(&builder_bin(), &nonce, body)));
    (nonce, root, whole)
}

fn skip_without_root() -> bool {
    if is_root() {
        return false;
    }
    skip_visibly("remote builders need bind mounts in a private namespace, and so root (CI runs as root)");
    true
}

#[test]
fn shards_built_on_two_ssh_builders_merge_into_the_unsharded_cache() {
    if skip_without_nix() || skip_without_root() {
        return;
    }
    let tmp = TempDir::new("remote-shards");
    let (nonce, root, whole) = fresh_fixture("remote-shards");

    let builders = Builders::start(tmp.path(), 2, "substituters =\n");
    let (merged, log) = builders.nix_build(&nonce, "mkBinaryCache { rootPaths = [ fixture ]; shards = 4; }", &[]);

    // Every shard and the merge were built on a builder (`--max-jobs 0`
    // allows nothing here); its store holds the output, and ours got it back.
    let built = built_on(&log);
    let mut names: Vec<&str> = built.iter().map(|(drv, _)| base_name(drv).split_once('-').unwrap().1).collect();
    names.sort();
    let mut expected: Vec<String> = (0..4).map(|k| format!("binary-cache-shard-{k}-of-4.drv")).collect();
    expected.push("binary-cache.drv".into());
    expected.sort();
    assert_eq!(names, expected, "{log}");
    for (drv, machine) in &built {
        let out = output_of(drv);
        assert!(builders.holds(machine, &out), "{machine} built {drv} but does not hold {out}:\n{log}");
    }
    // The builders' stores are their own: the cache built here is not there.
    for b in &builders.machines {
        assert!(!builders.holds(&b.name, &whole.display().to_string()), "{} holds {}", b.name, whole.display());
    }
    assert_eq!(
        merged,
        PathBuf::from(output_of(&built.iter().find(|(d, _)| d.ends_with("-binary-cache.drv")).unwrap().0))
    );

    assert_eq!(tree(&merged), tree(&whole), "4 shards on two builders against shards = 1");
    copy_closure_from(&merged, &tmp.join("store"), &[&root]);
}

#[test]
fn builders_use_substitutes_take_the_closure_from_a_signed_cache_of_ours() {
    if skip_without_nix() || skip_without_root() {
        return;
    }
    let tmp = TempDir::new("remote-substitutes");
    let (nonce, root, whole) = fresh_fixture("remote-substitutes");
    // The shards' inputs: the closure and our program, in a cache of ours,
    // signed; the builders trust the key and nothing else.
    let program = run_ok(&mut nix_build_expr(
        &builder_bin(),
        &nonce,
        "(mkBinaryCache { rootPaths = [ fixture ]; }).make-binary-cache",
    ));
    let inputs = path_info(&tmp, "inputs.json", true, &[&root, &program]);
    let unsigned = tmp.join("unsigned");
    run_ok(ours().arg("--closure").arg(&inputs).arg("--out").arg(&unsigned));
    let secret = tmp.join("secret");
    let public = tmp.join("public");
    run_ok(nix_cmd("nix-store").args(["--generate-binary-cache-key", "builders-test-1"]).arg(&secret).arg(&public));
    let cache = tmp.join("cache");
    run_ok(&mut sign(&secret, Some(&cache), &unsigned));
    let conf = format!(
        "substituters = file://{}\ntrusted-public-keys = {}\n",
        cache.display(),
        fs::read_to_string(&public).unwrap().trim()
    );

    let builders = Builders::start(tmp.path(), 2, &conf);
    let (merged, log) = builders.nix_build(
        &nonce,
        "mkBinaryCache { rootPaths = [ fixture ]; shards = 2; }",
        &["--builders-use-substitutes"],
    );

    let built = built_on(&log);
    assert_eq!(built.len(), 3, "two shards and the merge, each on a builder:\n{log}");
    let closure = closure_of(&root);
    for (drv, machine) in &built {
        if !drv.contains("-shard-") {
            continue;
        }
        // The builder of a shard holds its inputs, which it fetched itself.
        for p in closure.iter().chain([&program]) {
            assert!(builders.holds(machine, p), "{machine} built {drv} without {p}:\n{log}");
        }
    }
    for p in closure.iter().chain([&program]) {
        assert!(!log.contains(&format!("copying path '{p}' to 'ssh://")), "{p} was sent, not substituted:\n{log}");
    }
    assert_eq!(tree(&merged), tree(&whole), "2 shards on builders that substitute against shards = 1");
    copy_closure_from(&merged, &tmp.join("store"), &[&root]);
}
