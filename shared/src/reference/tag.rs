//! Image tags (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, as the distribution spec defines them).

use std::fmt;
use std::str::FromStr;

/// Longest tag the distribution specification allows.
const MAX_LEN: usize = 128;

/// A validated tag such as `v1.2.0` or `latest`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Tag(String);

impl From<Tag> for String {
    fn from(value: Tag) -> String {
        value.0
    }
}

impl TryFrom<String> for Tag {
    type Error = TagError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// Why a string is not a valid tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// The tag is the empty string.
    #[error("a tag cannot be empty")]
    Empty,
    /// The tag is longer than 128 characters.
    #[error("a tag has at most 128 characters, this one has {0}")]
    TooLong(usize),
    /// The first character is `.` or `-` (or anything else that is not a word character).
    #[error("a tag starts with a letter, a digit or `_`, not `{0}`")]
    BadStart(char),
    /// A character outside letters, digits, `_`, `.` and `-`.
    #[error("a tag uses only letters, digits, `_`, `.` and `-`, not `{0}`")]
    BadChar(char),
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Tag {
    /// A tag built by this module's siblings from text known to be valid (a digest's derived
    /// tags: `sha256-` and 64 hex digits, and a short suffix).
    pub(super) fn known_valid(text: String) -> Tag {
        debug_assert!(text.parse::<Tag>().is_ok(), "{text}");
        Tag(text)
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = s.chars();
        let first = chars.next().ok_or(TagError::Empty)?;
        if !is_word(first) {
            return Err(TagError::BadStart(first));
        }
        if let Some(bad) = chars.find(|&c| !(is_word(c) || c == '.' || c == '-')) {
            return Err(TagError::BadChar(bad));
        }
        if s.len() > MAX_LEN {
            return Err(TagError::TooLong(s.len()));
        }
        Ok(Tag(s.to_owned()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        for ok in ["v1.2.0", "latest", "_x", "0.11.4", "a-b_c.d"] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        assert_eq!("".parse::<Tag>(), Err(TagError::Empty));
        assert_eq!(".x".parse::<Tag>(), Err(TagError::BadStart('.')));
        assert_eq!("v1+2".parse::<Tag>(), Err(TagError::BadChar('+')));
        assert_eq!("a".repeat(129).parse::<Tag>(), Err(TagError::TooLong(129)));
        assert!("a".repeat(128).parse::<Tag>().is_ok());
    }

    proptest! {
        #[test]
        fn accepts_the_grammar(tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}") {
            prop_assert_eq!(tag.parse::<Tag>().map(|t| t.0), Ok(tag));
        }

        #[test]
        fn agrees_with_the_grammar_on_any_input(s in "\\PC{0,140}") {
            let first_ok = s.chars().next().is_some_and(is_word);
            let rest_ok = s.chars().skip(1).all(|c| is_word(c) || c == '.' || c == '-');
            let expected = first_ok && rest_ok && s.len() <= MAX_LEN;
            prop_assert_eq!(s.parse::<Tag>().is_ok(), expected);
        }
    }
}
