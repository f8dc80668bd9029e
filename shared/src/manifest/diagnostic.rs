//! Problems found in manifests, each with the file, line and column it is about.
//!
//! Messages quote what the file says (names, tags, digests, keys), and a file may say a lot: a
//! one-megabyte name would otherwise be echoed whole. [`FileDiagnostics`], through which every
//! diagnostic is made, cuts each quoted value (the text between two `` ` `` or `"`, or a long
//! unquoted run) to [`MAX_VALUE_CHARS`] characters and a whole message to
//! [`MAX_MESSAGE_CHARS`], marking each cut with `…`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::yaml::Pos;

/// The most characters of one quoted value a message shows; a longer one is cut, with `…`.
///
/// One more than the longest valid value (a full repository name has at most 255 characters),
/// so that every value a person may need to read whole is shown whole.
pub const MAX_VALUE_CHARS: usize = 256;

/// The most characters of a whole message (a message quoting many values is cut, with `…`).
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The manifests are invalid: nothing may be promoted.
    Error,
    /// Worth knowing, but the manifests are valid (e.g. a deprecated field).
    Warning,
}

/// One problem, printed as `FILE:LINE:COL: message` (warnings as `FILE:LINE:COL: warning: …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: Arc<Path>,
    /// Where in the file.
    pub pos: Pos,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in a sentence.
    pub message: String,
}

impl Diagnostic {
    /// The key diagnostics are sorted by: file, line, column, errors first, then message.
    pub fn sort_key(&self) -> (&Path, Pos, Severity, &str) {
        (&self.file, self.pos, self.severity, &self.message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Pos { line, col } = self.pos;
        write!(f, "{}:{line}:{col}: ", self.file.display())?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Collects the diagnostics of one file.
pub struct FileDiagnostics<'a> {
    file: Arc<Path>,
    out: &'a mut Vec<Diagnostic>,
}

impl<'a> FileDiagnostics<'a> {
    /// Collects into `out`, for `file`.
    pub fn new(file: Arc<Path>, out: &'a mut Vec<Diagnostic>) -> Self {
        FileDiagnostics { file, out }
    }

    /// The file these diagnostics are about.
    pub fn file(&self) -> &Arc<Path> {
        &self.file
    }

    /// Records an error at `pos`.
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, Severity::Error, message.into());
    }

    /// Records a warning at `pos`.
    pub fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, Severity::Warning, message.into());
    }

    /// How many errors have been recorded so far (in any file): compare before and after
    /// reading something to know whether it had errors.
    pub fn errors(&self) -> usize {
        self.out
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    fn push(&mut self, pos: Pos, severity: Severity, message: String) {
        self.out.push(Diagnostic {
            file: Arc::clone(&self.file),
            pos,
            severity,
            message: clip(message),
        });
    }
}

/// `message` with every span between quote characters (`` ` `` or `"`) cut to
/// [`MAX_VALUE_CHARS`], then the whole cut to [`MAX_MESSAGE_CHARS`]; each cut ends in `…`.
///
/// Spans are split at every quote character, paired or not, so a value holding quotes is cut
/// piece by piece; the final bound holds whatever the value holds.
fn clip(message: String) -> String {
    if message.len() <= MAX_VALUE_CHARS {
        return message;
    }
    let mut out = String::with_capacity(MAX_MESSAGE_CHARS + 8);
    let mut rest = message.as_str();
    while let Some(at) = rest.find(['`', '"']) {
        push_cut(&mut out, &rest[..at], MAX_VALUE_CHARS);
        // Quote characters are one byte long.
        out.push_str(&rest[at..=at]);
        rest = &rest[at + 1..];
        if out.len() > 4 * MAX_MESSAGE_CHARS {
            // Plenty to cut from: a value made of many short quoted pieces.
            rest = "";
            break;
        }
    }
    push_cut(&mut out, rest, MAX_VALUE_CHARS);
    let mut clipped = String::with_capacity(MAX_MESSAGE_CHARS + 8);
    push_cut(&mut clipped, &out, MAX_MESSAGE_CHARS);
    clipped
}

/// Appends `text`, or its first `max` characters and `…` when it is longer.
fn push_cut(out: &mut String, text: &str, max: usize) {
    match text.char_indices().nth(max) {
        Some((end, _)) => {
            out.push_str(&text[..end]);
            out.push('…');
        }
        None => out.push_str(text),
    }
}

/// Sorts diagnostics by file, line and column, and drops exact duplicates.
pub fn sort(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    diagnostics.dedup();
}

/// True when any diagnostic is an error.
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(|d| d.severity == Severity::Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(message: String) -> String {
        let mut out = Vec::new();
        FileDiagnostics::new(Arc::from(Path::new("m.yaml")), &mut out)
            .error(Pos { line: 1, col: 1 }, message);
        out.remove(0).message
    }

    #[test]
    fn short_messages_are_kept() {
        let message = "invalid tag `.v1`: a tag starts with a letter".to_owned();
        assert_eq!(one(message.clone()), message);
    }

    #[test]
    fn long_values_are_cut_with_an_ellipsis() {
        let name = "a".repeat(1 << 20);
        let message = one(format!(
            "invalid image name `{name}`: too long, see `{name}`"
        ));
        let cut = format!("{}…", "a".repeat(MAX_VALUE_CHARS));
        assert_eq!(
            message,
            format!("invalid image name `{cut}`: too long, see `{cut}`")
        );
        // Unquoted, and in double quotes.
        let number = "1".repeat(5000);
        assert_eq!(
            one(format!("found the number {number}")),
            format!("found the number {}…", &number[..MAX_VALUE_CHARS - 17])
        );
        // A value as long as the longest valid one is shown whole.
        let longest = format!("`{}`", "r".repeat(MAX_VALUE_CHARS));
        assert_eq!(one(longest.clone()), longest);
        let quoted = one(format!("found the text \"{number}\"."));
        assert!(quoted.ends_with("1…\"."), "{quoted}");
        // Multi-byte characters are cut at a character boundary.
        let wide = one(format!("`{}`", "é".repeat(300)));
        assert_eq!(wide.chars().count(), MAX_VALUE_CHARS + 3);
    }

    #[test]
    fn a_message_of_many_quoted_pieces_is_bounded() {
        let pieces = "`ab`".repeat(1 << 18);
        let message = one(format!("value {pieces} is wrong"));
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
    }
}
