//! Asking the installed Nix about store paths named on the command line.
//!
//! `make-binary-cache --out DIR PATH…` makes the common case one command: the
//! arguments (store paths, or symlinks to them such as nix-build's `result`)
//! are resolved to store paths here, and `nix path-info --json --recursive`
//! is run on them; its output goes to the same reader as `--closure FILE`
//! (see [`crate::input::parse_path_info_json`]), whichever of its two forms
//! the installed Nix prints. This is the only place the program runs Nix; the
//! builder and `--closure`/`--attrs` never do.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};

use crate::format::store_path::StorePath;

/// Symlinks followed before giving up, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// The store path `arg` names: a store path, a file inside one (which names
/// that store path, as in Nix), or a chain of symlinks that leads into the
/// store, like nix-build's `result`. Links are followed only until the path
/// is inside the store, as Nix's `Store::followLinksToStore` (store-api.cc)
/// does: a store path that is itself a symlink is kept, not followed.
pub fn resolve(arg: &Path, store_dir: &str) -> Result<StorePath> {
    let hint = "name a store path (e.g. what `nix-build --no-out-link` prints) or a symlink to one, such as \
                nix-build's ./result";
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let start = normalise(&cwd.join(arg));
    let mut path = start.clone();
    for _ in 0..MAX_LINKS {
        if let Some(base) = in_store(&path, store_dir) {
            let full = format!("{store_dir}/{base}");
            return StorePath::parse(store_dir, &full).map_err(|e| anyhow!("{}: {e}", arg.display()));
        }
        let meta = match path.symlink_metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound && path == start => {
                bail!("{}: no such file or directory; {hint}", arg.display())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                bail!("{}: it leads to {}, which does not exist; {hint}", arg.display(), path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if !meta.file_type().is_symlink() {
            bail!("{}: not in the Nix store ({store_dir}), nor a symlink into it; {hint}", arg.display());
        }
        let target = path.read_link().with_context(|| format!("reading the symlink {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        path = normalise(&dir.join(target));
    }
    bail!("{}: more than {MAX_LINKS} symlinks deep; {hint}", arg.display())
}

/// The first component under `store_dir` of the absolute, normalised `path`,
/// if it lies inside it.
fn in_store(path: &Path, store_dir: &str) -> Option<String> {
    let rest = path.strip_prefix(store_dir).ok()?;
    let first = rest.components().next()?;
    Some(first.as_os_str().to_string_lossy().into_owned())
}

/// `..` and `.` removed without asking the file system, as Nix's `canonPath`.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The arguments of `nix path-info` after the program name: `nix-command` is
/// still experimental in Nix 2.8 (Debian's), and naming it is harmless where
/// it is not.
pub const PATH_INFO_ARGS: [&str; 5] =
    ["path-info", "--json", "--recursive", "--extra-experimental-features", "nix-command"];

/// Runs `nix path-info --json --recursive` on `paths` and returns what it
/// prints. Anything Nix prints on stderr when it succeeds (warnings) is passed
/// on to ours; when it fails, its own error is in ours, with what to do.
pub fn path_info_json(paths: &[StorePath]) -> Result<String> {
    let mut command = Command::new("nix");
    command.args(PATH_INFO_ARGS).args(paths.iter().map(StorePath::as_str));
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let shown = format!(
        "nix {} {}",
        PATH_INFO_ARGS.join(" "),
        paths.iter().map(StorePath::as_str).collect::<Vec<_>>().join(" ")
    );
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "cannot read the closure of the store paths given: `nix` is not on the PATH. Install Nix \
             (e.g. Debian's nix-bin package), or run `nix path-info --json --recursive PATH…` where Nix is \
             and pass its output with --closure FILE"
        ),
        Err(e) => return Err(e).with_context(|| format!("running {shown}")),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let said = stderr.trim_end();
        let said = if said.is_empty() { "(it printed nothing on stderr)".into() } else { said.replace('\n', "\n    ") };
        bail!(
            "`{shown}` failed ({}):\n    {said}\nEvery PATH must be a valid path of this Nix store: build or fetch \
             it first (nix-build, nix-store --realise), and check it with `nix-store --check-validity PATH`",
            output.status
        );
    }
    if !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    String::from_utf8(output.stdout).map_err(|_| anyhow!("`{shown}` printed something that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_without_the_file_system() {
        assert_eq!(normalise(Path::new("/a/./b/../c/")), Path::new("/a/c"));
        assert_eq!(normalise(Path::new("/../x")), Path::new("/x"));
    }

    #[test]
    fn a_file_inside_a_store_path_names_the_store_path() {
        let p = Path::new("/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a/bin/x");
        assert_eq!(in_store(p, "/nix/store").as_deref(), Some("q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a"));
        assert_eq!(in_store(Path::new("/nix/storex/a"), "/nix/store"), None);
        assert_eq!(in_store(Path::new("/nix/store"), "/nix/store"), None);
    }

    #[test]
    fn symlinks_are_followed_into_the_store_and_no_further() {
        let dir = std::env::temp_dir().join(format!("mbc-nix-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store_path = "/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a";
        // result -> r2 -> the store path (which need not exist: Nix judges that).
        std::os::unix::fs::symlink(store_path, dir.join("r2")).unwrap();
        std::os::unix::fs::symlink("r2", dir.join("result")).unwrap();
        assert_eq!(resolve(&dir.join("result"), "/nix/store").unwrap().as_str(), store_path);
        assert_eq!(resolve(&Path::new(store_path).join("bin/x"), "/nix/store").unwrap().as_str(), store_path);
        // Not in the store: the message says what to name instead.
        std::fs::write(dir.join("file"), "").unwrap();
        let e = format!("{:#}", resolve(&dir.join("file"), "/nix/store").unwrap_err());
        assert!(e.contains("file: not in the Nix store (/nix/store)") && e.contains("./result"), "{e}");
        let e = format!("{:#}", resolve(&dir.join("missing"), "/nix/store").unwrap_err());
        assert!(e.contains("missing: no such file or directory; name a store path"), "{e}");
        std::os::unix::fs::symlink("gone", dir.join("dangling")).unwrap();
        let e = format!("{:#}", resolve(&dir.join("dangling"), "/nix/store").unwrap_err());
        assert!(
            e.contains(&format!("dangling: it leads to {}, which does not exist", dir.join("gone").display())),
            "{e}"
        );
        std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
        let e = format!("{:#}", resolve(&dir.join("loop"), "/nix/store").unwrap_err());
        assert!(e.contains("symlinks deep"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
