//! Shell completions made from the flag table (`--generate complete-bash`,
//! `complete-zsh`, `complete-fish`): subcommands, each subcommand's flags,
//! and for a flag's value or an operand what [`Complete`] says.

use super::defs::{Command, Complete, Flag, Kind};

const PROGRAM: &str = "make-binary-cache";

fn subcommands() -> Vec<&'static str> {
    Command::ALL.iter().filter_map(|c| c.word()).chain(["help"]).collect()
}

fn options(command: Command) -> impl Iterator<Item = &'static Flag> {
    command.flags().filter(|flag| !flag.is_operand())
}

fn operand(command: Command) -> &'static Flag {
    command.flags().find(|flag| flag.is_operand()).expect("every subcommand has an operand")
}

fn name(command: Command) -> &'static str {
    command.word().unwrap_or("build")
}

pub fn bash() -> String {
    let mut out = format!(
        "# bash completion for {PROGRAM}; made by `{PROGRAM} --generate complete-bash`.\n\
         _make_binary_cache() {{\n\
         \x20   local cur=\"${{COMP_WORDS[COMP_CWORD]}}\" prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\" cmd=build\n\
         \x20   case \"${{COMP_WORDS[1]}}\" in\n\
         \x20       {}) [ \"$COMP_CWORD\" -gt 1 ] && cmd=\"${{COMP_WORDS[1]}}\" ;;\n\
         \x20   esac\n\
         \x20   COMPREPLY=()\n\
         \x20   case \"$cmd:$prev\" in\n",
        subcommands().join("|")
    );
    for command in Command::ALL {
        for flag in options(command) {
            if let Kind::Value(_) = flag.kind {
                out +=
                    &format!("        {}:--{}) {}; return ;;\n", name(command), flag.name, bash_words(flag.complete));
            }
        }
    }
    out += "    esac\n    if [[ $cur == -* ]]; then\n        case $cmd in\n";
    for command in Command::ALL {
        let flags: Vec<String> = options(command)
            .flat_map(|flag| flag.short.map(|c| format!("-{c}")).into_iter().chain([format!("--{}", flag.name)]))
            .collect();
        out +=
            &format!("            {}) COMPREPLY=($(compgen -W '{}' -- \"$cur\")) ;;\n", name(command), flags.join(" "));
    }
    out += &format!(
        "        esac\n        return\n    fi\n    case $cmd in\n\
         \x20       help) COMPREPLY=($(compgen -W '{}' -- \"$cur\")) ;;\n",
        Command::ALL.iter().filter_map(|c| c.word()).collect::<Vec<_>>().join(" ")
    );
    for command in Command::ALL {
        let words = bash_words(operand(command).complete);
        if command == Command::Build {
            out += &format!(
                "        build) {words}\n            [ \"$COMP_CWORD\" -eq 1 ] && COMPREPLY+=($(compgen -W '{}' -- \"$cur\")) ;;\n",
                subcommands().join(" ")
            );
        } else {
            out += &format!("        {}) {words} ;;\n", name(command));
        }
    }
    out += &format!("    esac\n}}\ncomplete -o filenames -F _make_binary_cache {PROGRAM}\n");
    out
}

fn bash_words(complete: Complete) -> String {
    match complete {
        Complete::Nothing => "COMPREPLY=()".into(),
        Complete::File => "COMPREPLY=($(compgen -f -- \"$cur\"))".into(),
        Complete::Dir => "COMPREPLY=($(compgen -d -- \"$cur\"))".into(),
        Complete::Words(words) => format!("COMPREPLY=($(compgen -W '{}' -- \"$cur\"))", words.join(" ")),
    }
}

pub fn zsh() -> String {
    let mut out = format!(
        "#compdef {PROGRAM}\n# zsh completion for {PROGRAM}; made by `{PROGRAM} --generate complete-zsh`.\n\n\
         _make_binary_cache() {{\n\
         \x20   if (( CURRENT == 2 )) && [[ $words[2] != -* ]]; then\n\
         \x20       _alternative 'subcommands:subcommand:({})' 'paths:store path:_files'\n\
         \x20       return\n\
         \x20   fi\n\
         \x20   local cmd=build\n\
         \x20   case $words[2] in\n\
         \x20       {}) cmd=$words[2]; shift words; (( CURRENT-- )) ;;\n\
         \x20   esac\n\
         \x20   case $cmd in\n",
        subcommands().join(" "),
        subcommands().join("|")
    );
    for command in Command::ALL {
        out += &format!("        {})\n            _arguments -s \\\n", name(command));
        for flag in options(command) {
            out += &format!("                {} \\\n", zsh_spec(flag));
        }
        let operand = operand(command);
        let times = if operand.repeatable { "*" } else { "" };
        out += &format!(
            "                '{times}:{}:{}'\n            ;;\n",
            operand.name.to_lowercase(),
            zsh_action(operand.complete)
        );
    }
    out += &format!(
        "        help) _values subcommand {} ;;\n    esac\n}}\n\n_make_binary_cache \"$@\"\n",
        Command::ALL.iter().filter_map(|c| c.word()).collect::<Vec<_>>().join(" ")
    );
    out
}

fn zsh_spec(flag: &Flag) -> String {
    // Inside '…[…]': a quote ends the word, brackets end the description.
    let summary = flag.summary().replace('\'', "'\\''").replace('[', "(").replace(']', ")").replace(':', "\\:");
    let value = match flag.kind {
        Kind::Value(value) => format!(":{}:{}", value.to_lowercase(), zsh_action(flag.complete)),
        _ => String::new(),
    };
    let times = if flag.repeatable { "*" } else { "" };
    match flag.short {
        Some(c) => format!("'(-{c} --{name})'{{-{c},--{name}}}'[{summary}]{value}'", name = flag.name),
        None => format!("'{times}--{}[{summary}]{value}'", flag.name),
    }
}

fn zsh_action(complete: Complete) -> String {
    match complete {
        Complete::Nothing => " ".into(),
        Complete::File => "_files".into(),
        Complete::Dir => "_files -/".into(),
        Complete::Words(words) => format!("({})", words.join(" ")),
    }
}

pub fn fish() -> String {
    let words: Vec<&str> = Command::ALL.iter().filter_map(|c| c.word()).collect();
    let mut out = format!(
        "# fish completion for {PROGRAM}; made by `{PROGRAM} --generate complete-fish`.\n\
         complete -c {PROGRAM} -n '__fish_use_subcommand' -a '{}' -d 'subcommand'\n\
         complete -c {PROGRAM} -n '__fish_seen_subcommand_from help' -f -a '{}'\n",
        subcommands().join(" "),
        words.join(" ")
    );
    for command in Command::ALL {
        let condition = match command.word() {
            Some(word) => format!("__fish_seen_subcommand_from {word}"),
            None => format!("not __fish_seen_subcommand_from {}", subcommands().join(" ")),
        };
        for flag in options(command) {
            let short = flag.short.map(|c| format!(" -s {c}")).unwrap_or_default();
            let value = match (flag.kind, flag.complete) {
                (Kind::Switch, _) => String::new(),
                (_, Complete::Nothing) => " -x".into(),
                (_, Complete::File) => " -r -F".into(),
                (_, Complete::Dir) => " -x -a '(__fish_complete_directories)'".into(),
                (_, Complete::Words(words)) => format!(" -x -a '{}'", words.join(" ")),
            };
            let summary = flag.summary().replace('\\', "\\\\").replace('\'', "\\'");
            out += &format!("complete -c {PROGRAM} -n '{condition}'{short} -l {}{value} -d '{summary}'\n", flag.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::defs::FLAGS;
    use super::*;

    #[test]
    fn every_flag_is_offered_by_every_shell() {
        let (bash, zsh, fish) = (bash(), zsh(), fish());
        for flag in FLAGS.iter().filter(|f| !f.is_operand()) {
            let long = format!("--{}", flag.name);
            assert!(bash.contains(&format!(" {long}")) || bash.contains(&format!("'{long}")), "bash: {long}");
            assert!(zsh.contains(&long), "zsh: {long}");
            assert!(fish.contains(&format!("-l {}", flag.name)), "fish: {long}");
        }
    }
}
