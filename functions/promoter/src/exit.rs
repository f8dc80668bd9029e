//! Exit codes, and diagnostics printed for people: what every command's outcome ends in.

use std::io::{self, Write};
use std::process::ExitCode;

use promoter::manifest::{self, Diagnostic};

/// Exit code 1: the manifests are invalid, or the plan was refused.
pub const INVALID: ExitCode = ExitCode::FAILURE;
/// Exit code 2: bad arguments or unreadable paths (as clap's own usage errors).
pub fn usage_error() -> ExitCode {
    ExitCode::from(2)
}

/// Prints diagnostics to stderr, then a count of errors.
pub fn print_diagnostics(diagnostics: &[Diagnostic]) {
    let mut stderr = io::stderr().lock();
    let mut errors = 0;
    for d in diagnostics {
        // A closed stderr leaves nothing to report to.
        let _ = writeln!(stderr, "{d}");
        errors += usize::from(d.severity == manifest::Severity::Error);
    }
    if errors > 0 {
        let _ = writeln!(
            stderr,
            "{errors} error{}",
            if errors == 1 { "" } else { "s" }
        );
    }
}
