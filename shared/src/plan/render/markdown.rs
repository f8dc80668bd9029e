//! The Markdown form of a plan: a summary a bot can post on the pull request, per project.
//!
//! GitHub comments hold at most 65,536 characters, so each table stops after
//! [`MAX_ROWS`] rows and says how many more there are; the JSON form has everything.

use std::io::{self, BufWriter, Write};

use super::{count, tag_list};
use crate::plan::Plan;

/// Rows shown per table before "… and N more".
pub const MAX_ROWS: usize = 50;

/// Writes the plan as a pull-request comment.
pub fn write(plan: &Plan, out: &mut dyn Write) -> io::Result<()> {
    let mut out = BufWriter::new(out);
    let s = plan.summary();
    writeln!(out, "### Promotion plan\n")?;
    if plan.units.is_empty() {
        writeln!(out, "Nothing to promote.")?;
    } else {
        writeln!(
            out,
            "**{}** to promote from {}: {} into {}, {} to set.",
            count(s.units, "digest", "digests"),
            count(plan.projects.len(), "project", "projects"),
            count(s.edges, "copy", "copies"),
            count(s.repositories, "repository", "repositories"),
            count(s.tags, "tag", "tags"),
        )?;
    }
    for project in &plan.projects {
        writeln!(
            out,
            "\n#### `{}` → {}\n",
            project.project,
            count(project.destinations, "destination", "destinations")
        )?;
        writeln!(out, "| image | digest | tags | change | destinations |")?;
        writeln!(out, "|---|---|---|---|---|")?;
        for change in project.images.iter().take(MAX_ROWS) {
            let kind = if change.new_digest { "new" } else { "retag" };
            writeln!(
                out,
                "| `{}` | `{}` | {} | {kind} | {} |",
                change.image,
                change.digest.short(),
                tag_list(&change.tags),
                change.destinations
            )?;
        }
        more(&mut out, project.images.len())?;
    }
    if !plan.removals.is_empty() {
        writeln!(out, "\n#### ⚠️ No longer in the manifests\n")?;
        writeln!(
            out,
            "Allowed with `--allow-removal`. Production keeps these images: the promoter never deletes.\n"
        )?;
        writeln!(out, "| repository | digest | removed |")?;
        writeln!(out, "|---|---|---|")?;
        for r in plan.removals.iter().take(MAX_ROWS) {
            let what = if r.digest_removed { "digest" } else { "tags" };
            writeln!(
                out,
                "| `{}` | `{}` | {what}: {} |",
                r.repository,
                r.digest.short(),
                tag_list(&r.tags)
            )?;
        }
        more(&mut out, plan.removals.len())?;
    }
    out.flush()
}

fn more(out: &mut dyn Write, rows: usize) -> io::Result<()> {
    if rows > MAX_ROWS {
        writeln!(
            out,
            "\n…and {} more (see `promoter plan --output json`).",
            rows - MAX_ROWS
        )?;
    }
    Ok(())
}
