//! The command line as given: which flags of the table, with which values,
//! in order. Only what the table says is checked here (a known flag, a
//! value where one is due, not empty, given once unless repeatable); what
//! the values mean is [`super::hiargs`]'s.

use std::ffi::OsString;

use anyhow::{Result, bail};

use super::defs::{Command, Flag, Kind, find};
use super::help::program;

pub struct LowArgs {
    pub command: Command,
    /// Each flag given, with its value (empty for a switch), in order.
    given: Vec<(&'static Flag, OsString)>,
}

/// What was asked for, if not a run.
pub enum Parsed {
    Args(LowArgs),
    Help(Command),
    Version,
}

/// Parses `args` (after the subcommand word, if any) as `command`'s flags.
/// `--help` and `--version` end the parse where they stand.
pub fn parse(command: Command, args: Vec<OsString>) -> Result<Parsed> {
    use lexopt::prelude::*;

    let operand = command.flags().find(|flag| flag.is_operand());
    let mut given: Vec<(&'static Flag, OsString)> = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        let flag = match &arg {
            Long(name) => find(command, name).filter(|flag| !flag.is_operand()),
            Short(c) => command.flags().find(|flag| flag.short == Some(*c)),
            Value(_) => operand,
        };
        let Some(flag) = flag else { return Err(arg.unexpected().into()) };
        let operand_value = if let Value(value) = arg { Some(value) } else { None };
        let value = match (operand_value, flag.kind) {
            (Some(value), _) => value,
            (None, Kind::Switch) => OsString::new(),
            (None, _) => parser.value()?,
        };
        match flag.name {
            "help" if flag.kind == Kind::Switch => return Ok(Parsed::Help(command)),
            "version" if flag.kind == Kind::Switch => return Ok(Parsed::Version),
            _ => {}
        }
        if !flag.repeatable && given.iter().any(|(other, _)| std::ptr::eq(*other, flag)) {
            if flag.is_operand() {
                bail!("{} takes one {}; see {}", program(command), flag.name, command.help_hint());
            }
            bail!("--{} is given more than once; give it once", flag.name);
        }
        if flag.kind != Kind::Switch && value.is_empty() {
            let name = if flag.is_operand() { flag.name.to_string() } else { format!("--{}", flag.name) };
            bail!("{name} must not be empty");
        }
        given.push((flag, value));
    }
    Ok(Parsed::Args(LowArgs { command, given }))
}

impl LowArgs {
    fn flag(&self, name: &str) -> &'static Flag {
        find(self.command, name).unwrap_or_else(|| panic!("{:?} has no flag {name} in the table", self.command))
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &OsString> {
        let flag = self.flag(name);
        self.given.iter().filter(move |(f, _)| std::ptr::eq(*f, flag)).map(|(_, value)| value)
    }

    pub fn switch(&self, name: &str) -> bool {
        self.all(name).next().is_some()
    }

    /// The value of a flag given at most once.
    pub fn value(&self, name: &str) -> Option<&OsString> {
        self.all(name).next()
    }

    /// Every value of a repeatable flag or operand, in order.
    pub fn values(&self, name: &str) -> Vec<&OsString> {
        self.all(name).collect()
    }

    /// Nothing at all was given.
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::defs::FLAGS;
    use super::*;

    fn parse_words(command: Command, words: &[&str]) -> Result<Parsed> {
        parse(command, words.iter().map(OsString::from).collect())
    }

    fn args(parsed: Result<Parsed>) -> LowArgs {
        match parsed.unwrap() {
            Parsed::Args(args) => args,
            _ => panic!("not arguments"),
        }
    }

    /// Each flag of the table is accepted as its kind says, and refused a
    /// second time unless it may be repeated.
    #[test]
    fn every_flag_parses_as_the_table_defines_it() {
        for flag in FLAGS.iter().filter(|f| !matches!(f.name, "help" | "version")) {
            let mut words: Vec<String> = match flag.kind {
                Kind::Switch => vec![format!("--{}", flag.name)],
                Kind::Value(_) => vec![format!("--{}", flag.name), "x".into()],
                Kind::Operand => vec!["x".into()],
            };
            let once = args(parse_words(flag.command, &words.iter().map(String::as_str).collect::<Vec<_>>()));
            assert_eq!(once.all(flag.name).count(), 1, "{}", flag.name);
            words.extend(words.clone());
            let twice = parse_words(flag.command, &words.iter().map(String::as_str).collect::<Vec<_>>());
            match twice {
                Ok(Parsed::Args(twice)) => {
                    assert!(flag.repeatable, "{} may be given once", flag.name);
                    assert_eq!(twice.values(flag.name).len(), 2);
                }
                Err(e) => assert!(!flag.repeatable, "{}: {e}", flag.name),
                Ok(_) => panic!("{}", flag.name),
            }
        }
    }

    #[test]
    fn mistakes_are_named() {
        let err = |command, words: &[&str]| parse_words(command, words).err().unwrap().to_string();
        assert_eq!(err(Command::Build, &["--quiet", "-q"]), "--quiet is given more than once; give it once");
        assert_eq!(err(Command::Sign, &["a", "b"]), "make-binary-cache sign takes one CACHE; see sign --help");
        assert_eq!(err(Command::Build, &["--out", ""]), "--out must not be empty");
        assert_eq!(err(Command::Merge, &[""]), "CACHE must not be empty");
        assert_eq!(err(Command::Verify, &["--out", "x"]), "invalid option '--out'");
        assert_eq!(err(Command::Build, &["--out"]), "missing argument for option '--out'");
        assert_eq!(err(Command::Build, &["--partial=yes"]), "unexpected argument for option '--partial': \"yes\"");
    }

    #[test]
    fn help_and_version_end_the_parse() {
        assert!(matches!(parse_words(Command::Sign, &["-h", "--bogus"]), Ok(Parsed::Help(Command::Sign))));
        assert!(matches!(parse_words(Command::Build, &["--out", "x", "-V"]), Ok(Parsed::Version)));
        assert!(parse_words(Command::Build, &["--bogus", "-V"]).is_err());
    }
}
