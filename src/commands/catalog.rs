//! A cache as `ls`, `diff` and `gc` see it: its store directory and every
//! narinfo, read and checked (it parses, is named after its store path, its
//! URL names a file inside the cache), by store path. Reading one never
//! opens a NAR: that is `verify`'s work.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Result, anyhow, bail};

use crate::cache::dir::{CacheDir, Kind};
use crate::cache::read;
use crate::format::narinfo::NarInfo;
use crate::format::store_path::StorePath;
use crate::workers::run_parallel;

/// What to do about a narinfo that cannot be read.
const DAMAGED: &str = "the cache is damaged: `make-binary-cache verify` it";

pub struct Catalog {
    pub dir: CacheDir,
    pub store_dir: String,
    /// Every narinfo, by store path.
    pub narinfos: BTreeMap<StorePath, NarInfo>,
}

impl Catalog {
    /// Reads the cache at `path`, its narinfos by `jobs` workers.
    pub fn read(path: &Path, jobs: usize) -> Result<Self> {
        Self::of(read::open(path, "")?, jobs)
    }

    /// [`Catalog::read`] of a cache already open.
    pub fn of(dir: CacheDir, jobs: usize) -> Result<Self> {
        let path = dir.path();
        let text = read::read_cache_info_in(&dir, "")?;
        let store_dir = read::store_dir(path, &text)?.map(str::to_owned).ok_or_else(|| {
            anyhow!(
                "{}: no StoreDir: the store directory is unknown; add the line `StoreDir: /nix/store` (or the \
                 store the cache is for)",
                path.join("nix-cache-info").display()
            )
        })?;
        let mut names = Vec::new();
        for (name, kind) in dir.list(Path::new(""))? {
            let Some(name) = name.to_str().filter(|n| n.ends_with(".narinfo")) else { continue };
            if kind != Kind::File {
                bail!("{} is not a regular file; {DAMAGED}", path.join(name).display());
            }
            names.push(name.to_owned());
        }
        let infos = run_parallel(&names, jobs, |name| read::read_narinfo(&dir, name, &store_dir, DAMAGED))?;
        let narinfos = infos.into_iter().map(|(_, info)| (info.path.clone(), info)).collect();
        Ok(Self { dir, store_dir, narinfos })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// How many narinfos of the cache refer to each store path (a path's
    /// reference to itself does not count).
    pub fn referrers(&self) -> HashMap<&StorePath, usize> {
        let mut referrers: HashMap<&StorePath, usize> = self.narinfos.keys().map(|path| (path, 0)).collect();
        for info in self.narinfos.values() {
            for reference in info.references.iter().filter(|r| **r != info.path) {
                *referrers.entry(reference).or_default() += 1;
            }
        }
        referrers
    }
}
