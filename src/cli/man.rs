//! The manual page, make-binary-cache(1), in roff (`--generate man`): the
//! same pages and flags as `--help`, one section per subcommand.

use super::defs::{Command, Flag, Page};
use super::help::program;

pub fn render() -> String {
    let build = Command::Build.page();
    let mut out = format!(
        ".TH MAKE-BINARY-CACHE 1 \"\" \"make-binary-cache {}\" \"User Commands\"\n\
         .SH NAME\n{} \\- {}\n.SH SYNOPSIS\n",
        env!("CARGO_PKG_VERSION"),
        program(Command::Build),
        escape(build.summary)
    );
    for command in Command::ALL {
        out += &format!(".B {}\n.RI [ OPTIONS ] \" {}\"\n.br\n", program(command), label(operand(command)));
    }
    out += ".SH DESCRIPTION\n";
    out += &page(build, ".SH");
    for command in Command::ALL.into_iter().skip(1) {
        let page_of = command.page();
        out += &format!(".SH \"{}\"\n{}\n", escape(&program(command).to_uppercase()), escape(page_of.summary));
        out += &page(page_of, ".SS");
    }
    out
}

fn operand(command: Command) -> &'static Flag {
    command.flags().find(|flag| flag.is_operand()).expect("every subcommand has an operand")
}

fn label(flag: &Flag) -> String {
    escape(&flag.label())
}

/// A page's text and flags; headings of its own text become `heading`.
fn page(page: &Page, heading: &str) -> String {
    let mut out = prose(page.head, heading);
    for section in page.sections {
        out += &format!("{heading} \"{}\"\n", escape(section.heading));
        for flag in page.command.flags().filter(|flag| flag.section == section.heading) {
            out += &format!(".TP\n.B {}\n{}\n", label(flag), escape(flag.doc));
        }
        for paragraph in section.after.split("\n\n").filter(|p| !p.is_empty()) {
            out += &format!(".PP\n{}\n", escape(&paragraph.replace('\n', " ")));
        }
    }
    out + &prose(page.tail, heading)
}

/// Help text as roff: `HEADING:` lines become headings, paragraphs at the
/// margin are filled, indented blocks (usage, lists, examples) kept as typed.
fn prose(text: &str, heading: &str) -> String {
    let mut out = String::new();
    for block in text.split("\n\n") {
        let mut lines: Vec<&str> = block.lines().filter(|line| !line.trim().is_empty()).collect();
        if lines.is_empty() {
            continue;
        }
        let first = lines[0];
        if first.ends_with(':') && first.chars().all(|c| c.is_ascii_uppercase() || c == ' ' || c == ':') {
            out += &format!("{heading} {}\n", first.trim_end_matches(':'));
            lines.remove(0);
            if lines.is_empty() {
                continue;
            }
        }
        if lines.iter().all(|line| !line.starts_with(' ')) {
            out += &format!(".PP\n{}\n", escape(&lines.join(" ")));
        } else {
            let indent = lines.iter().map(|line| line.len() - line.trim_start().len()).min().unwrap_or(0);
            out += ".PP\n.RS 4\n.nf\n";
            for line in lines {
                out += &escape(&line[indent..]);
                out += "\n";
            }
            out += ".fi\n.RE\n";
        }
    }
    out
}

/// Text as roff reads it literally: backslashes and hyphens escaped, a line
/// never starting with a control character.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') { format!("\\&{text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::super::defs::FLAGS;
    use super::*;

    #[test]
    fn the_page_documents_every_flag_and_subcommand() {
        let man = render();
        assert!(man.starts_with(".TH MAKE-BINARY-CACHE 1 "), "{man}");
        for flag in FLAGS {
            assert!(man.contains(&format!(".B {}\n", label(flag))), "man lacks {}", flag.label());
        }
        for word in ["SIGN", "VERIFY", "MERGE"] {
            assert!(man.contains(&format!(".SH \"MAKE\\-BINARY\\-CACHE {word}\"")), "man lacks {word}");
        }
        assert!(man.lines().all(|line| !line.starts_with('\'')), "a line starts with a quote");
    }

    #[test]
    fn text_is_escaped_for_roff() {
        assert_eq!(escape("--out a\\b"), "\\-\\-out a\\eb");
        assert_eq!(escape(".ls files"), "\\&.ls files");
    }
}
