//! `--help`: a subcommand's [`Page`] with its flags from the table, each
//! label in a column of its own and its text wrapped beside it.

use super::defs::{Command, Flag, Page};

/// The help is at most this wide.
pub const WIDTH: usize = 80;
/// Where a flag's text starts.
const TEXT_COLUMN: usize = 30;

/// `make-binary-cache` or `make-binary-cache sign`.
pub fn program(command: Command) -> String {
    match command.word() {
        None => "make-binary-cache".into(),
        Some(word) => format!("make-binary-cache {word}"),
    }
}

pub fn render(page: &Page) -> String {
    let mut out = format!("{}: {}\n\n{}\n", program(page.command), page.summary, page.head);
    for section in page.sections {
        out += &format!("{}:\n", section.heading);
        for flag in page.command.flags().filter(|flag| flag.section == section.heading) {
            out += &render_flag(flag);
        }
        if !section.after.is_empty() {
            for paragraph in section.after.split("\n\n") {
                out += "\n";
                for line in wrap(&paragraph.replace('\n', " "), WIDTH - 4) {
                    out += &format!("    {line}\n");
                }
            }
        }
        out += "\n";
    }
    out + page.tail
}

fn render_flag(flag: &Flag) -> String {
    let label = format!("    {}", flag.label());
    let mut lines = wrap(flag.doc, WIDTH - TEXT_COLUMN).into_iter();
    let mut out = if label.len() < TEXT_COLUMN {
        format!("{label:<TEXT_COLUMN$}{}\n", lines.next().unwrap_or_default())
    } else {
        format!("{label}\n")
    };
    for line in lines {
        out += &format!("{:TEXT_COLUMN$}{line}\n", "");
    }
    out
}

/// `text`'s words in lines of at most `width` columns (a longer word alone).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line += word;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_spaces_within_the_width() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("  aa   bb ", 80), ["aa bb"]);
        assert_eq!(wrap("abcdefgh ij", 4), ["abcdefgh", "ij"]);
        assert!(wrap("", 10).is_empty());
    }

    #[test]
    fn every_page_lists_each_of_its_flags_within_80_columns() {
        for command in Command::ALL {
            let help = render(command.page());
            for flag in command.flags() {
                let label = flag.label();
                assert!(
                    help.lines().any(|line| line.trim_start().starts_with(&label)),
                    "{command:?}'s help does not list {label}"
                );
            }
            for line in help.lines() {
                assert!(line.len() <= WIDTH, "{command:?}'s help is wider than {WIDTH} columns: {line}");
            }
        }
    }

    #[test]
    fn a_flag_text_starts_in_its_column() {
        let help = render(Command::Merge.page());
        assert!(
            help.contains("\n    --out DIR                 Where to write the merged cache: a missing or\n"),
            "{help}"
        );
        assert!(help.starts_with("make-binary-cache merge: join binary caches into a new one\n\nWrites to DIR"));
    }
}
