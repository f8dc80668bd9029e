//! The Markdown form of a plan: a summary a bot can post on the pull request, per project.
//!
//! GitHub comments hold at most 65,536 characters, so each table stops after
//! [`MAX_ROWS`] rows and says how many more there are; the JSON form has everything.

use std::io::{self, BufWriter, Write};

use super::{count, tag_list};
use crate::manifest::policy::Rule;
use crate::plan::{Checked, ImageChange, Plan, ProjectChanges};

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
        policy_table(plan, project, &mut out)?;
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
    if plan.policy_refuses() {
        writeln!(
            out,
            "\n❌ **A digest fails a `require` rule of its project's policy: it will not be promoted.**"
        )?;
    }
    out.flush()
}

/// The project's new digests checked against its policy: one row per digest, one column per
/// rule (pass, warn or fail, and what was found).
fn policy_table(plan: &Plan, project: &ProjectChanges, out: &mut dyn Write) -> io::Result<()> {
    let checked: Vec<(&ImageChange, &Checked)> = project
        .images
        .iter()
        .filter_map(|c| Some((c, plan.check_of(&c.source, &c.digest)?)))
        .collect();
    let Some((_, first)) = checked.first() else {
        return Ok(());
    };
    let refused = checked.iter().filter(|(_, c)| c.report.refuses()).count();
    writeln!(
        out,
        "\n**Policy** (`{}`): {} checked, {} refused.\n",
        first.report.policy,
        count(checked.len(), "digest", "digests"),
        refused
    )?;
    writeln!(
        out,
        "| image | digest | signature | provenance | vulnerabilities |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    for (change, c) in checked.iter().take(MAX_ROWS) {
        let cell = |rule| match c.report.verdict(rule) {
            None => "—".to_owned(),
            Some(v) => {
                let mark = match v.status() {
                    "pass" => "✅ pass",
                    "warn" => "⚠️ warn",
                    _ => "❌ fail",
                };
                format!("{mark}: {}", v.detail.replace('|', "\\|"))
            }
        };
        writeln!(
            out,
            "| `{}` | `{}` | {} | {} | {} |",
            change.image,
            change.digest.short(),
            cell(Rule::Signature),
            cell(Rule::Provenance),
            cell(Rule::Vulnerabilities)
        )?;
    }
    more(out, checked.len())
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
