//! make-binary-cache: writes a flat-file Nix binary cache for a closure,
//! serialising, checking and compressing every store path itself.
//!
//! Data flows one way: [`input`] reads what Nix says about the closure
//! (path-info JSON, structured attrs, `nix path-info`), the builder
//! ([`commands::build`]) plans the work and runs each store path through
//! the pipeline (read → NAR → NarHash → [`compress`] → FileHash → file),
//! then names its [`format::narinfo`] once the NAR is checked and on disk
//! ([`durable`]).
//!
//! The layers, from the ground up (doc/architecture.md draws them):
//! * [`format`](mod@format): Nix's formats as pure code: no I/O, nothing of
//!   the crate outside it (a test in `format` fails if one does);
//! * [`compress`]: the compressors; [`cache`]: reading a cache that exists,
//!   every file beneath it; [`durable`]: naming files once complete and on
//!   disk; [`input`]: what goes in; [`workers`], [`resources`], [`text`];
//! * [`commands`]: one module per subcommand (`build`, `sign`, `verify`,
//!   `merge`); [`progress`] shows how a run goes; [`cli`] turns the command
//!   line into a plan for one of them; `main.rs` parses, dispatches and
//!   reports.

pub mod cache;
pub mod cli;
pub mod commands;
pub mod compress;
pub mod durable;
pub mod format;
pub mod input;
pub mod progress;
pub mod resources;
pub mod text;
pub mod workers;

/// The layer rule of doc/architecture.md, kept by a test: each top-level
/// module uses only the modules below it (doc comments may point anywhere).
#[cfg(test)]
mod layers {
    /// Each module and what of the crate it may use.
    const LAYERS: &[(&str, &[&str])] = &[
        ("format", &[]),
        ("text", &[]),
        ("compress", &["format"]),
        ("resources", &["compress", "format"]),
        ("workers", &["resources"]),
        ("cache", &["compress", "format"]),
        // How many narinfos may wait open: the open-files limit.
        ("durable", &["cache", "format", "resources"]),
        ("input", &["compress", "format", "resources"]),
        // The builder's Observer is what progress shows.
        ("progress", &["commands", "format", "text"]),
        ("commands", &["cache", "compress", "durable", "format", "input", "resources", "text", "workers"]),
        // The command line: a plan for one of the commands.
        ("cli", &["commands", "compress", "format", "input", "resources"]),
    ];

    fn sources(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                sources(&entry.unwrap().path(), out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_path_buf());
        }
    }

    #[test]
    fn every_module_uses_only_the_layers_below_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        // Spelt in two, so that this test does not find itself.
        let prefix = ["crate", "::"].concat();
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut checked = 0;
        for file in &files {
            let relative = file.strip_prefix(&src).unwrap();
            let module = relative.iter().next().unwrap().to_str().unwrap().trim_end_matches(".rs");
            if matches!(module, "lib" | "main") {
                continue;
            }
            let Some((_, allowed)) = LAYERS.iter().find(|(name, _)| *name == module) else {
                panic!(
                    "src/{} belongs to no layer: add `{module}` to LAYERS and to doc/architecture.md",
                    relative.display()
                );
            };
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for (at, _) in code.match_indices(&prefix) {
                    let used: String = code[at + prefix.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        used == module || allowed.contains(&used.as_str()),
                        "src/{}:{}: `{module}` uses `{used}`, which is not below it: {line}",
                        relative.display(),
                        n + 1
                    );
                }
            }
            checked += 1;
        }
        assert!(checked >= 40, "only {checked} files under {}", src.display());
    }
}
