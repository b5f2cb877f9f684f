//! Splitting one protocol line into its keyword, positional tokens and `key=value` fields.

use smallvec::SmallVec;

use crate::error::ParseError;

/// One line split into positional tokens and trailing `key=value` fields. Requests have at
/// most four positional tokens and a few fields, so both usually live inline: parsing is a
/// large part of what the tracker does per request, and two heap blocks were a tenth of it.
pub(crate) struct Line<'a> {
    pub positional: SmallVec<[&'a str; 4]>,
    fields: SmallVec<[(&'a str, &'a str); 4]>,
}

/// Checks size and encoding of a whole datagram and strips one trailing newline (what `echo`
/// and `nc` add when a person types a request).
pub(crate) fn datagram_text(datagram: &[u8], max: usize) -> Result<&str, ParseError> {
    if datagram.len() > max {
        return Err(ParseError::TooLong {
            len: datagram.len(),
            max,
        });
    }
    let text = std::str::from_utf8(datagram).map_err(|_| ParseError::NotUtf8)?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    Ok(text.strip_suffix('\r').unwrap_or(text))
}

impl<'a> Line<'a> {
    /// Splits `line`, which must start with `keyword`. Fields come after every positional token.
    pub fn split(line: &'a str, keyword: &'static str) -> Result<Self, ParseError> {
        match Line::split_any(line)? {
            (first, rest) if first == keyword => Ok(rest),
            _ => Err(ParseError::BadKeyword { expected: keyword }),
        }
    }

    /// Splits `line` into its first token and the rest.
    pub fn split_any(line: &'a str) -> Result<(&'a str, Self), ParseError> {
        let mut tokens = line.split(' ');
        let first = tokens.next().unwrap_or("");
        if first.is_empty() {
            return Err(ParseError::EmptyToken);
        }
        let mut positional = SmallVec::new();
        let mut fields: SmallVec<[(&str, &str); 4]> = SmallVec::new();
        for token in tokens {
            if token.is_empty() {
                return Err(ParseError::EmptyToken);
            }
            match token.bytes().position(|b| b == b'=') {
                Some(at) => {
                    let (key, value) = (&token[..at], &token[at + 1..]);
                    if fields.iter().any(|(k, _)| *k == key) {
                        return Err(ParseError::DuplicateField(truncated(key)));
                    }
                    fields.push((key, value));
                }
                None if fields.is_empty() => positional.push(token),
                None => return Err(ParseError::ExtraField(truncated(token))),
            }
        }
        Ok((first, Line { positional, fields }))
    }

    /// Removes and returns the field `key`, if present.
    pub fn take(&mut self, key: &str) -> Option<&'a str> {
        let i = self.fields.iter().position(|(k, _)| *k == key)?;
        Some(self.fields.remove(i).1)
    }

    /// Removes a required field.
    pub fn require(&mut self, key: &'static str) -> Result<&'a str, ParseError> {
        self.take(key).ok_or(ParseError::MissingField(key))
    }

    /// Fails on any field nobody took.
    pub fn finish(self) -> Result<(), ParseError> {
        match self.fields.first() {
            Some((k, v)) => Err(ParseError::ExtraField(truncated(&format!("{k}={v}")))),
            None => Ok(()),
        }
    }

    /// Checks the positional count is exactly `names.len()`, naming the first missing one.
    pub fn expect_positional(&self, names: &[&'static str]) -> Result<(), ParseError> {
        if let Some(extra) = self.positional.get(names.len()) {
            return Err(ParseError::ExtraField(truncated(extra)));
        }
        match names.get(self.positional.len()) {
            Some(missing) => Err(ParseError::MissingField(missing)),
            None => Ok(()),
        }
    }
}

/// A bounded copy of attacker-controlled text for error messages.
pub(crate) fn truncated(s: &str) -> String {
    s.chars().take(40).collect()
}

pub(crate) fn parse_u32(field: &'static str, s: &str) -> Result<u32, ParseError> {
    parse_u64(field, s)?
        .try_into()
        .map_err(|_| ParseError::BadNumber {
            field,
            value: truncated(s),
        })
}

pub(crate) fn parse_u64(field: &'static str, s: &str) -> Result<u64, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadNumber {
            field,
            value: truncated(s),
        });
    }
    s.parse().map_err(|_| ParseError::BadNumber {
        field,
        value: truncated(s),
    })
}
