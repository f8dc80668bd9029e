//! Printing a plan: `text` for people at a terminal, `json` for machines (a stable schema,
//! documented in the README and at [`SCHEMA`]), and `markdown` for a bot to post on the pull request.

mod json;
mod markdown;
mod text;

use std::io::{self, Write};

pub use json::SCHEMA;

use super::Plan;

/// The output formats of `promoter plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable text (the default).
    Text,
    /// JSON, in the schema [`SCHEMA`].
    Json,
    /// A Markdown summary for a pull-request comment.
    Markdown,
}

/// Writes `plan` to `out` in `format`.
pub fn render(plan: &Plan, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Text => text::write(plan, out),
        Format::Json => json::write(plan, out),
        Format::Markdown => markdown::write(plan, out),
    }
}

/// "1 unit" / "2 units".
fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// Tags as `a, b` (or `-` for none).
fn tag_list<T: std::fmt::Display>(tags: &[T]) -> String {
    if tags.is_empty() {
        return "-".to_owned();
    }
    tags.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
