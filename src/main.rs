//! `make-binary-cache`: parses the command line ([`cli`]), runs the
//! subcommand it asks for, and reports: progress, summaries, and an error
//! with its causes and a non-zero exit status.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use make_binary_cache::cli::{self, Invocation, hiargs};
use make_binary_cache::commands::catalog::Catalog;
use make_binary_cache::commands::{build, diff, gc, ls, merge, sign, verify};
use make_binary_cache::compress::Compression;
use make_binary_cache::progress::{Mode, Progress};
use make_binary_cache::text;

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("make-binary-cache: error: {e}");
            let mut said = e.to_string();
            for cause in e.chain().skip(1) {
                // Some errors repeat their source in their own text.
                let text = cause.to_string();
                if !said.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                said = text;
            }
            // diff(1)'s convention: 1 says the caches differ.
            if std::env::args().nth(1).is_some_and(|a| a == "diff") { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

fn try_main() -> Result<ExitCode> {
    match cli::parse(std::env::args_os().skip(1).collect())? {
        Invocation::Print(text) => print!("{text}"),
        Invocation::Build(plan) => run_build(plan)?,
        Invocation::Sign(plan) => run_sign(plan)?,
        Invocation::Verify(plan) => run_verify(plan)?,
        Invocation::Merge(plan) => run_merge(plan)?,
        Invocation::Ls(plan) => {
            let listing = ls::list(&Catalog::read(&plan.cache, plan.jobs)?);
            print(&if plan.json { listing.json() } else { listing.table() })?;
        }
        Invocation::Diff(plan) => {
            let (old, new) = (Catalog::read(&plan.old, plan.jobs)?, Catalog::read(&plan.new, plan.jobs)?);
            let diff = diff::diff(&old, &new)?;
            print(&if plan.json { diff.json() } else { diff.text() })?;
            if diff.differ() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Invocation::Gc(plan) => {
            let summary = gc::collect(&plan.cache, &plan.options, say)
                .with_context(|| format!("collecting garbage in {}", plan.cache.display()))?;
            say(&format!("gc {}: {summary}", plan.cache.display()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to stdout; a closed pipe (`| head`) ends the output quietly.
fn print(text: &str) -> Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

fn say(line: &str) {
    // One write per line, so that workers' lines do not interleave.
    let _ = std::io::stderr().write_all(format!("make-binary-cache: {line}\n").as_bytes());
}

fn run_build(plan: hiargs::Build) -> Result<()> {
    let hiargs::Build { mut job, notes, quiet, in_build } = plan;
    let report = |notes: Vec<build::Note>| {
        for note in notes.into_iter().filter(|note| note.always || !quiet) {
            say(&note.text);
        }
    };
    report(notes);
    report(job.prepare()?);
    if !quiet {
        say(&job.describe());
    }
    let settings = &job.settings;
    let compressed = settings.compression != Compression::None;
    let summary = Progress::run(Mode::for_stderr(quiet, in_build), settings.jobs, compressed, |progress| {
        build::write_cache(&job.closure, &job.out, settings, progress)
    })?;
    if !quiet {
        for note in &summary.notes {
            say(note);
        }
        say(&format!("done: {summary}"));
    }
    Ok(())
}

fn run_sign(plan: hiargs::Sign) -> Result<()> {
    let summary = sign::sign_cache(&plan.cache, plan.out.as_deref(), &plan.key, plan.jobs, &plan.store_dir, plan.sync)?;
    let dest = plan.out.as_deref().unwrap_or(&plan.cache);
    say(&format!("signed {} with key {}: {summary}", dest.display(), plan.key.name()));
    Ok(())
}

fn run_verify(plan: hiargs::Verify) -> Result<()> {
    let cache = &plan.cache;
    let summary = verify::verify_cache(cache, &plan.options, |findings| {
        // One write for all of a path's findings, so that workers do not interleave.
        let text: String = findings.iter().map(|f| format!("{f}\n")).collect();
        let _ = std::io::stderr().write_all(text.as_bytes());
    })
    .with_context(|| format!("verifying {}", cache.display()))?;
    say(&format!("verify {}: {summary}", cache.display()));
    if summary.problems > 0 {
        const SIGN: &str = "sign it with `make-binary-cache sign --secret-key-file KEY`, or give the public key that \
                            signed it (--public-key, --public-key-file; on the receiving side, trusted-public-keys)";
        let others = summary.problems - summary.signature_problems;
        if others == 0 {
            bail!("{}: {} (see above); {SIGN}", cache.display(), text::count(summary.problems, "signature problem"));
        }
        let signatures = match summary.signature_problems {
            0 => String::new(),
            n => format!("; for the {}, {SIGN}", text::count(n, "signature problem")),
        };
        bail!(
            "{} is not a valid binary cache: {} (see above); rebuild it, or copy it again from where it came \
             from{signatures}",
            cache.display(),
            text::count(others, "problem")
        );
    }
    Ok(())
}

fn run_merge(plan: hiargs::Merge) -> Result<()> {
    let out = &plan.out;
    say(&format!("merging {} into {}", text::count(plan.caches.len(), "cache"), out.display()));
    let summary = merge::merge_caches(&plan.caches, out, &plan.options, say)
        .with_context(|| format!("merging into {}", out.display()))?;
    say(&format!("merged into {}: {summary}", out.display()));
    Ok(())
}
