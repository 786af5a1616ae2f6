//! One run of the builder, however it was asked for (the command line, a
//! structured-attrs file, a Nix build): the closure, where it goes and how,
//! fitted to this machine's cores and memory before anything is written.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{EarlierCaches, Settings, has_narinfo};
use crate::format::path_info::PathInfo;
use crate::format::store_path::StorePath;
use crate::input::{self, shard::Shard};
use crate::resources::{self, BudgetSource};
use crate::text;

/// Everything a run needs.
pub struct Job {
    pub closure: Vec<PathInfo>,
    pub out: PathBuf,
    pub settings: Settings,
    /// --partial: references may be missing from the closure and the cache.
    pub partial: bool,
    /// With a shard: which, and the store paths of the closure the other
    /// shards write (present as far as completeness goes).
    pub shard: Option<(Shard, BTreeSet<StorePath>)>,
    /// --reuse: earlier caches, opened by [`Job::prepare`] once the settings
    /// are final.
    pub reuse: Vec<PathBuf>,
    /// Where the memory budget came from, for the log.
    memory_note: String,
}

/// A line for the log about how a run was set up.
pub struct Note {
    pub text: String,
    /// Printed even with --quiet: a warning, or why --reuse reuses nothing.
    pub always: bool,
}

impl Job {
    pub fn new(closure: Vec<PathInfo>, out: PathBuf, settings: Settings) -> Self {
        Self {
            closure,
            out,
            settings,
            partial: false,
            shard: None,
            reuse: Vec::new(),
            memory_note: "no memory budget".into(),
        }
    }

    /// Keeps only `shard`'s part of the closure, when there is a shard.
    pub fn sharded(mut self, shard: Option<Shard>) -> Self {
        if let Some(shard) = shard {
            let part = input::shard::part(std::mem::take(&mut self.closure), shard, |info| (&info.path, info.nar_size));
            self.closure = part.paths;
            self.shard = Some((shard, part.elsewhere));
        }
        self
    }

    /// Fits the `requested` workers into the cores and the memory budget
    /// (`max_memory`, else the machine's default), saying what was cut and why.
    pub fn fit(&mut self, requested: usize, max_memory: Option<u64>) -> Vec<Note> {
        let budget = match max_memory {
            Some(bytes) => Some((bytes, BudgetSource::Given)),
            None => resources::system::default_budget(),
        };
        let (compression, level) = (self.settings.compression, self.settings.compression_level);
        let sizes: Vec<u64> = self.closure.iter().map(|info| info.nar_size).collect();
        let cores = resources::system::cores();
        let plan = resources::plan(requested, cores, budget.map(|(bytes, _)| bytes), &sizes, |size, threads| {
            resources::path_need(compression, level, size, threads)
        });
        let mut notes = Vec::new();
        if let Some(requested) = plan.capped_from {
            let available = if cores == 1 { "only 1 core is".to_string() } else { format!("only {cores} cores are") };
            notes.push(Note {
                text: format!("{requested} workers asked for, but {available} available: using {cores}"),
                always: false,
            });
        }
        if let (Some(need), Some((bytes, _))) = (plan.over_budget, budget) {
            notes.push(Note {
                text: format!(
                    "warning: the largest store path needs {} to compress with {compression}, more than the memory \
                     budget of {}: such paths are compressed alone, with one thread (see --max-memory)",
                    text::human(need),
                    text::human(bytes)
                ),
                always: true,
            });
        }
        self.settings.jobs = plan.workers;
        self.settings.max_memory = budget.map(|(bytes, _)| bytes);
        self.memory_note = match budget {
            Some((bytes, source)) => format!("memory budget {} ({source})", text::human(bytes)),
            None => "no memory budget".into(),
        };
        notes
    }

    /// Checks that the closure is whole (unless --partial) and opens the
    /// earlier caches of --reuse; what they say goes to the log.
    pub fn prepare(&mut self) -> Result<Vec<Note>> {
        if !self.partial {
            let elsewhere = |path: &StorePath| self.shard.as_ref().is_some_and(|(_, others)| others.contains(path));
            input::check_complete(&self.closure, |path| elsewhere(path) || has_narinfo(&self.out, path))
                .with_context(|| format!("writing to {}", self.out.display()))?;
        }
        let (earlier, notes) = EarlierCaches::open(&self.reuse, &self.settings.manifest(), &self.settings.store_dir)?;
        self.settings.reuse = earlier;
        Ok(notes.into_iter().map(|text| Note { text, always: true }).collect())
    }

    /// What the run is about to do, for the log.
    pub fn describe(&self) -> String {
        let shard = match &self.shard {
            Some((shard, others)) => {
                format!(" ({shard}; {} in the other shards)", text::count(others.len(), "store path"))
            }
            None => String::new(),
        };
        format!(
            "writing {}{shard} to {} ({} compression, {}, {})",
            text::count(self.closure.len(), "store path"),
            self.out.display(),
            self.settings.compression,
            text::count(self.settings.jobs, "worker"),
            self.memory_note
        )
    }
}
