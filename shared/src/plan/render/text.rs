//! The plain-text form of a plan: a summary line, then each unit and its destinations.

use std::io::{self, BufWriter, Write};

use super::{count, tag_list};
use crate::plan::Plan;

/// Writes the plan for a person at a terminal.
pub fn write(plan: &Plan, out: &mut dyn Write) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let s = plan.summary();
    if plan.units.is_empty() {
        writeln!(out, "Nothing to promote.")?;
    } else {
        writeln!(
            out,
            "Plan: {} to promote, {} into {}, {} to set.",
            count(s.units, "digest", "digests"),
            count(s.edges, "copy", "copies"),
            count(s.repositories, "repository", "repositories"),
            count(s.tags, "tag", "tags"),
        )?;
    }
    for unit in &plan.units {
        writeln!(out, "\n{}@{}  (unit {})", unit.source, unit.digest, unit.id)?;
        for d in &unit.destinations {
            writeln!(out, "  -> {}  tags: {}", d.repository, tag_list(&d.tags))?;
        }
        if let Some(checked) = plan.check_of(&unit.source, &unit.digest) {
            for v in &checked.report.verdicts {
                writeln!(
                    out,
                    "  policy {}: {} ({})",
                    v.rule.as_str(),
                    v.status(),
                    v.detail
                )?;
            }
        }
    }
    if !plan.removals.is_empty() {
        writeln!(
            out,
            "\nNo longer in the manifests ({}; allowed, and production keeps them):",
            count(plan.removals.len(), "removal", "removals")
        )?;
        for r in &plan.removals {
            let what = if r.digest_removed {
                "digest"
            } else {
                "tags only"
            };
            writeln!(
                out,
                "  {}@{}  {what}, tags: {}",
                r.repository,
                r.digest,
                tag_list(&r.tags)
            )?;
        }
    }
    out.flush()
}
