//! The command line, the way ripgrep reads its own: every flag is defined
//! once in [`defs`] (name, value, help section, completion, text), and the
//! parser ([`lowargs`]), `--help` ([`help`]), the shells' completions
//! ([`complete`]) and the manual page ([`man`]) are made from that table.
//! [`hiargs`] turns what was given into a validated plan for one
//! subcommand; `main.rs` runs the plan and reports.
//!
//! Why not clap: measured on this machine (see doc/architecture.md), clap
//! with derive, `clap_complete` and `clap_mangen` adds ~13 s to a cold
//! release build and ~750 KB to the binary, and its generated help and
//! errors would replace texts that tests and users rely on; the table here
//! is a few hundred lines on top of `lexopt`, which was already used.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Result, anyhow, bail};

use crate::format::store_path;

pub mod complete;
pub mod defs;
pub mod help;
pub mod hiargs;
pub mod lowargs;
pub mod man;
mod pages;

use defs::Command;
use lowargs::Parsed;

/// What the command line asks for.
pub enum Invocation {
    /// Text for stdout: a help page, the version, completions, the manual.
    Print(String),
    Build(hiargs::Build),
    Sign(hiargs::Sign),
    Verify(hiargs::Verify),
    Merge(hiargs::Merge),
    Ls(hiargs::Ls),
    Diff(hiargs::Diff),
    Gc(hiargs::Gc),
}

/// Reads the arguments (without the program name) and the environment
/// they depend on (`NIX_STORE`; in a Nix build, the build's).
pub fn parse(args: Vec<OsString>) -> Result<Invocation> {
    let store_dir = store_dir()?;
    let first = args.first().and_then(|a| a.to_str());
    let command = match first {
        Some("help") => return help_word(args.get(1)),
        Some(word) => Command::ALL.into_iter().find(|c| c.word() == Some(word)).unwrap_or(Command::Build),
        None => Command::Build,
    };
    // A word that is no option, no subcommand and no path that exists: a
    // mistyped or unknown subcommand, not a store path to look for.
    if let Some(first) = first
        && command == Command::Build
        && !first.starts_with('-')
        && !first.contains('/')
        && !Path::new(first).exists()
    {
        bail!(
            "{first} is neither a subcommand ({}, help) nor a path that exists; see `make-binary-cache help`",
            words().join(", ")
        );
    }
    let rest = if command == Command::Build { args } else { args.into_iter().skip(1).collect() };
    let low = match lowargs::parse(command, rest).map_err(|e| usage(e, command))? {
        Parsed::Help(command) => return Ok(Invocation::Print(help::render(command.page()))),
        Parsed::Version => return Ok(Invocation::Print(format!("make-binary-cache {}\n", env!("CARGO_PKG_VERSION")))),
        Parsed::Args(low) => low,
    };
    Ok(match command {
        Command::Build => match low.value("generate") {
            Some(kind) => Invocation::Print(generate(&kind.to_string_lossy())?),
            None => Invocation::Build(hiargs::build(low, store_dir)?),
        },
        Command::Sign => Invocation::Sign(hiargs::sign(low, store_dir)?),
        Command::Verify => Invocation::Verify(hiargs::verify(low)?),
        Command::Merge => Invocation::Merge(hiargs::merge(low)?),
        Command::Ls => Invocation::Ls(hiargs::ls(low)?),
        Command::Diff => Invocation::Diff(hiargs::diff(low)?),
        Command::Gc => Invocation::Gc(hiargs::gc(low)?),
    })
}

fn words() -> Vec<&'static str> {
    Command::ALL.iter().filter_map(|c| c.word()).collect()
}

/// `make-binary-cache help [SUBCOMMAND]`.
fn help_word(subcommand: Option<&OsString>) -> Result<Invocation> {
    let command = match subcommand.map(|s| s.to_string_lossy()) {
        None => Command::Build,
        Some(word) => Command::ALL.into_iter().find(|c| c.word() == Some(&*word)).ok_or_else(|| {
            anyhow!("help {word}: there is no such subcommand; the subcommands are {}", words().join(", "))
        })?,
    };
    Ok(Invocation::Print(help::render(command.page())))
}

/// `--generate KIND`.
pub fn generate(kind: &str) -> Result<String> {
    Ok(match kind {
        "man" => man::render(),
        "complete-bash" => complete::bash(),
        "complete-zsh" => complete::zsh(),
        "complete-fish" => complete::fish(),
        _ => bail!("--generate {kind:?}: give man, complete-bash, complete-zsh or complete-fish"),
    })
}

/// A mistake the parser found (an unknown option, a missing value) is said
/// first, then where to look.
fn usage(e: anyhow::Error, command: Command) -> anyhow::Error {
    match e.downcast::<lexopt::Error>() {
        Ok(e) => anyhow!("{e}; see {}", command.help_hint()),
        Err(e) => e,
    }
}

/// `$NIX_STORE`, checked: it is written into every narinfo and `nix-cache-info`.
fn store_dir() -> Result<String> {
    let Some(value) = std::env::var_os("NIX_STORE") else {
        return Ok("/nix/store".into());
    };
    let dir = value.into_string().map_err(|v| anyhow!("NIX_STORE={v:?} is not valid UTF-8"))?;
    store_path::check_store_dir(&dir)
        .map_err(|why| anyhow!("NIX_STORE={dir:?} is not a valid store directory: {why}; unset it for /nix/store"))?;
    Ok(dir)
}
