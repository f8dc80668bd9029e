//! Problems found in manifests, each with the file, line and column it is about.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::yaml::Pos;

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

    fn push(&mut self, pos: Pos, severity: Severity, message: String) {
        self.out.push(Diagnostic {
            file: Arc::clone(&self.file),
            pos,
            severity,
            message,
        });
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
