//! `match=<GLOB>`: the catalogue filter of flag 6 and `GET /api/files?match=` (seed 002's name
//! pattern).
//!
//! A pattern is matched against every name of the catalogue, so its cost per name must stay
//! linear whatever a client sends: `*` splits the pattern into literal segments that are found
//! left to right (leftmost match first, which is exact for `*`-only globs: no backtracking), and
//! only a segment holding `?` is searched naively, bounded by the pattern's length limit.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Longest accepted pattern, in bytes: bounds the naive search of a `?` segment to
/// 64 x 255 byte comparisons per name.
pub const MAX_PATTERN_BYTES: usize = 64;

/// A glob over file names: `*` any run of characters (also none), `?` exactly one character,
/// anything else itself (case-sensitive, as file names are).
#[derive(Clone, PartialEq, Eq)]
pub struct NamePattern {
    text: Box<str>,
}

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    #[error("the pattern is empty (leave match= out to list every file)")]
    Empty,
    #[error("the pattern is longer than {MAX_PATTERN_BYTES} bytes")]
    TooLong,
    #[error("the pattern holds {0:?}, which no file name can contain")]
    BadChar(char),
}

impl NamePattern {
    pub fn new(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.len() > MAX_PATTERN_BYTES {
            return Err(PatternError::TooLong);
        }
        // Characters no name can hold would make a pattern that never matches: say so instead.
        if let Some(c) = text
            .chars()
            .find(|&c| matches!(c, '/' | '\\' | '=') || c.is_control() || c.is_whitespace())
        {
            return Err(PatternError::BadChar(c));
        }
        Ok(NamePattern { text: text.into() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let mut segments = self.text.split('*');
        let first = segments.next().unwrap_or("");
        let Some(mut rest) = strip_segment(name, first) else {
            return false;
        };
        let Some(last) = segments.next_back() else {
            // No `*`: the first segment must be the whole name.
            return rest.is_empty();
        };
        for middle in segments {
            match find_segment(rest, middle) {
                Some(after) => rest = after,
                None => return false,
            }
        }
        ends_with_segment(rest, last)
    }
}

/// `name` after `segment` when it starts with it.
fn strip_segment<'a>(name: &'a str, segment: &str) -> Option<&'a str> {
    let mut rest = name;
    for p in segment.chars() {
        let mut chars = rest.chars();
        let c = chars.next()?;
        if p != '?' && p != c {
            return None;
        }
        rest = chars.as_str();
    }
    Some(rest)
}

/// What follows the leftmost occurrence of `segment` in `name`.
fn find_segment<'a>(name: &'a str, segment: &str) -> Option<&'a str> {
    if !segment.contains('?') {
        let at = name.find(segment)?;
        return Some(&name[at + segment.len()..]);
    }
    let mut start = name;
    loop {
        if let Some(rest) = strip_segment(start, segment) {
            return Some(rest);
        }
        let mut chars = start.chars();
        chars.next()?;
        start = chars.as_str();
    }
}

/// Whether `name` ends with `segment` (`?` standing for one character).
fn ends_with_segment(name: &str, segment: &str) -> bool {
    let wanted = segment.chars().count();
    let have = name.chars().count();
    if have < wanted {
        return false;
    }
    let tail: &str = match name.char_indices().nth(have - wanted) {
        Some((at, _)) => &name[at..],
        None => "",
    };
    strip_segment(tail, segment).is_some_and(str::is_empty)
}

impl FromStr for NamePattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NamePattern::new(s)
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamePattern({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pattern: &str, name: &str) -> bool {
        NamePattern::new(pattern).unwrap().matches(name)
    }

    #[test]
    fn globs_match_as_a_shell_does() {
        assert!(m("*temps*", "daily-temps.csv"));
        assert!(m("*.mkv", "movie.mkv"));
        assert!(!m("*.mkv", "movie.mkv.part"));
        assert!(m("movie.mkv", "movie.mkv"));
        assert!(!m("movie", "movie.mkv"));
        assert!(m("m?vie.*", "movie.mkv"));
        assert!(m("*", "x"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("?", "é"));
        assert!(!m("??", "é"));
        assert!(m("*?é", "aé"));
        assert!(m("**", ""));
        assert!(!m("Movie*", "movie.mkv"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(NamePattern::new(""), Err(PatternError::Empty));
        assert_eq!(
            NamePattern::new(&"*".repeat(65)),
            Err(PatternError::TooLong)
        );
        assert_eq!(NamePattern::new("a/b"), Err(PatternError::BadChar('/')));
        assert_eq!(NamePattern::new("a b"), Err(PatternError::BadChar(' ')));
        assert_eq!(NamePattern::new("a=b"), Err(PatternError::BadChar('=')));
    }

    /// The reference semantics: a plain backtracking glob over characters.
    fn reference(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, _) => n.is_empty(),
            (Some('*'), _) => reference(&p[1..], n) || (!n.is_empty() && reference(p, &n[1..])),
            (Some(_), None) => false,
            (Some('?'), Some(_)) => reference(&p[1..], &n[1..]),
            (Some(a), Some(b)) => a == b && reference(&p[1..], &n[1..]),
        }
    }

    proptest! {
        #[test]
        fn matching_agrees_with_backtracking(p in "[ab*?é]{1,10}", n in "[abé]{0,12}") {
            let pc: Vec<char> = p.chars().collect();
            let nc: Vec<char> = n.chars().collect();
            prop_assert_eq!(m(&p, &n), reference(&pc, &nc), "{} vs {}", p, n);
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panic(p in "\\PC{0,80}", n in "\\PC{0,40}") {
            if let Ok(pattern) = NamePattern::new(&p) {
                let _ = pattern.matches(&n);
                prop_assert_eq!(pattern.to_string(), p);
            }
        }
    }
}
