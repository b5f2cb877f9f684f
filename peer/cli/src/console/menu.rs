//! The console's menu and the parse of what the user types into a typed choice.
//!
//! The numbers are the tracker protocol's flags (1-7), so a user who read the protocol finds
//! the same numbers here; letters cover what the protocol has no flag for. A choice may carry
//! its argument on the same line (`1 movie.bin`), otherwise the console prompts for it. Parsing
//! is pure and total: every line maps to a choice or to an error whose text tells the user what
//! to type instead. File names are parsed into [`peer_engine::name::ShareName`] once a choice is
//! complete, the rule the rest of the peer applies.

use std::fmt;

/// What the user picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// 1: download a file by name, in the background.
    Download(Option<String>),
    /// 2: ask the tracker for a fresh peer list of a file.
    Refresh(Option<String>),
    /// 3: the chunk reports and progress of local files.
    Progress,
    /// 4: share a file (a path on disk).
    Share(Option<String>),
    /// 5: tell the tracker we leave, then quit.
    Exit,
    /// 6: the files the tracker knows.
    List,
    /// 7: one file's details and peers.
    Query(Option<String>),
    /// `s`: this peer's addresses, tracker, directory.
    Status,
    /// `t`: session statistics.
    Statistics,
    /// `h` or `?`: the menu again.
    Help,
    /// `q`: same as 5: leaving without flag 5 would leave stale rows at the tracker.
    Quit,
}

/// Why a line is not a choice; the `Display` text is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChoiceError {
    /// A number outside the menu.
    WrongNumber(String),
    /// A word that is no choice.
    Unknown(String),
    /// An argument given to a choice that takes none.
    UnexpectedArgument {
        choice: &'static str,
        argument: String,
    },
}

const PICK: &str = "pick 1-7, s (status), t (statistics), h (help) or q (quit)";

impl fmt::Display for ChoiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChoiceError::WrongNumber(n) => write!(f, "there is no choice {n}: {PICK}"),
            ChoiceError::Unknown(word) => write!(f, "unknown choice \"{word}\": {PICK}"),
            ChoiceError::UnexpectedArgument { choice, argument } => {
                write!(f, "{choice} takes no argument (got \"{argument}\")")
            }
        }
    }
}

impl std::error::Error for ChoiceError {}

/// The menu as printed at start and on `h`.
pub const MENU: &str = concat!(
    "  1  Download a file               (flag 1)\n",
    "  2  Refresh a file's peer list    (flag 2)\n",
    "  3  Show chunk reports/progress   (flag 3)\n",
    "  4  Share a new file              (flag 4)\n",
    "  5  Exit the swarm and quit       (flag 5)\n",
    "  6  List files on the tracker     (flag 6)\n",
    "  7  Query a file                  (flag 7)\n",
    "  s  Status    t  Statistics    h  Help    q  Quit\n",
);

/// Parses one input line. `Ok(None)` for a blank line: the prompt simply comes back, as in a shell.
pub fn parse_choice(line: &str) -> Result<Option<Choice>, ChoiceError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (line, ""),
    };
    let argument = (!rest.is_empty()).then(|| rest.to_owned());
    let no_argument = |choice: Choice, label: &'static str| match &argument {
        None => Ok(Some(choice)),
        Some(argument) => Err(ChoiceError::UnexpectedArgument {
            choice: label,
            argument: argument.clone(),
        }),
    };
    match word.to_ascii_lowercase().as_str() {
        "1" | "download" | "get" => Ok(Some(Choice::Download(argument))),
        "2" | "refresh" => Ok(Some(Choice::Refresh(argument))),
        "3" | "progress" => no_argument(Choice::Progress, "3 (progress)"),
        "4" | "share" => Ok(Some(Choice::Share(argument))),
        "5" | "exit" => no_argument(Choice::Exit, "5 (exit)"),
        "6" | "list" | "ls" => no_argument(Choice::List, "6 (list)"),
        "7" | "query" => Ok(Some(Choice::Query(argument))),
        "s" | "status" => no_argument(Choice::Status, "s (status)"),
        "t" | "stats" | "statistics" => no_argument(Choice::Statistics, "t (statistics)"),
        "h" | "?" | "help" | "menu" => Ok(Some(Choice::Help)),
        "q" | "quit" => no_argument(Choice::Quit, "q (quit)"),
        w if w.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') => {
            Err(ChoiceError::WrongNumber(word.to_owned()))
        }
        _ => Err(ChoiceError::Unknown(word.chars().take(40).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_map_to_protocol_flags() {
        assert_eq!(parse_choice("1"), Ok(Some(Choice::Download(None))));
        assert_eq!(
            parse_choice(" 2  a.bin "),
            Ok(Some(Choice::Refresh(Some("a.bin".into()))))
        );
        assert_eq!(parse_choice("3"), Ok(Some(Choice::Progress)));
        assert_eq!(
            parse_choice("4 /tmp/my file"),
            Ok(Some(Choice::Share(Some("/tmp/my file".into()))))
        );
        assert_eq!(parse_choice("5"), Ok(Some(Choice::Exit)));
        assert_eq!(parse_choice("6"), Ok(Some(Choice::List)));
        assert_eq!(
            parse_choice("7 x"),
            Ok(Some(Choice::Query(Some("x".into()))))
        );
        assert_eq!(parse_choice("S"), Ok(Some(Choice::Status)));
        assert_eq!(parse_choice("t"), Ok(Some(Choice::Statistics)));
        assert_eq!(parse_choice("?"), Ok(Some(Choice::Help)));
        assert_eq!(parse_choice("quit"), Ok(Some(Choice::Quit)));
        assert_eq!(
            parse_choice("download a"),
            Ok(Some(Choice::Download(Some("a".into()))))
        );
    }

    #[test]
    fn blank_lines_are_no_choice() {
        assert_eq!(parse_choice(""), Ok(None));
        assert_eq!(parse_choice(" \t "), Ok(None));
    }

    #[test]
    fn wrong_input_says_what_to_type() {
        for n in ["0", "8", "99", "-1", "1.5", "12345678901234567890"] {
            let err = parse_choice(n).unwrap_err();
            assert_eq!(err, ChoiceError::WrongNumber(n.into()));
            assert!(err.to_string().contains("pick 1-7"), "{err}");
        }
        let err = parse_choice("fetch x").unwrap_err();
        assert_eq!(err.to_string(), format!("unknown choice \"fetch\": {PICK}"));
        let err = parse_choice("6 extra").unwrap_err();
        assert!(err.to_string().contains("takes no argument"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(line in "\\PC*") {
            let _ = parse_choice(&line);
        }
    }
}
