//! Adding a digest and tags to a manifest file in place, as a maintainer would by hand: the
//! tag joins the digest's entry, or a digest entry joins the image, or the image is appended;
//! every other byte (comments, order, indentation, quoting, line endings) is kept.
//!
//! Pure: it takes the file's text and what the loader read from it (positions of images and
//! digest entries), and returns the new text. Edits are line based: a tag list is edited when
//! it is a flow list on its digest's line (`"sha256:…": ["v1"]`, the layout of every real
//! images.yaml), and a new line is indented like its neighbours. Any other layout is refused
//! with its line, never guessed at.

use std::collections::BTreeSet;

use super::Image;
use crate::reference::{Digest, ImageName, Tag};

/// What to add: tags for a digest of an image.
#[derive(Clone, Debug)]
pub struct Addition {
    /// The image (its name below the registries).
    pub image: ImageName,
    /// The digest.
    pub digest: Digest,
    /// Its tags (none: the digest only).
    pub tags: Vec<Tag>,
}

/// The outcome of an edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edited {
    /// Everything was there already: the file is unchanged.
    Unchanged,
    /// The new text, and what was added, for people (`image: tag → digest`).
    Changed {
        /// The whole new file.
        text: String,
        /// One line per thing added.
        added: Vec<String>,
    },
}

/// Why an addition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The tag already names another digest of the image.
    #[error(
        "tag `{tag}` of image `{image}` already names {other}; a tag names one digest (use a new tag)"
    )]
    TagElsewhere {
        /// The tag.
        tag: Tag,
        /// The image.
        image: ImageName,
        /// The digest it names.
        other: Digest,
        /// Where that digest's entry is.
        line: u32,
    },
    /// The entry is laid out in a way this edit does not handle.
    #[error("{reason}; add it by hand")]
    Layout {
        /// Where.
        line: u32,
        /// What is unusual.
        reason: String,
    },
}

impl EditError {
    /// The line the refusal is about.
    pub fn line(&self) -> u32 {
        match self {
            EditError::TagElsewhere { line, .. } | EditError::Layout { line, .. } => *line,
        }
    }
}

/// Adds `addition` to `text`, the file the loader read as `images` (its images, with their
/// digests merged as the loader merges repeated listings).
pub fn add(text: &str, images: &[Image], addition: &Addition) -> Result<Edited, EditError> {
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let ends_with_newline = text.is_empty() || text.ends_with('\n');
    let quoted: Vec<String> = addition.tags.iter().map(|t| format!("\"{t}\"")).collect();
    let Some(image) = images.iter().find(|i| i.name == addition.image) else {
        let indent = item_indent(images);
        // After the image that ends last in the file (listings of one image may be apart).
        let at = images
            .iter()
            .map(|i| end_of_image(&lines, i))
            .max()
            .unwrap_or(lines.len());
        let entry = [
            format!("{indent}- name: {}", addition.image),
            format!("{indent}  dmap:"),
            format!(
                "{indent}    \"{}\": [{}]",
                addition.digest,
                quoted.join(", ")
            ),
        ];
        lines.splice(at..at, entry);
        return Ok(changed(
            lines,
            newline,
            ends_with_newline,
            vec![describe(addition, &addition.tags, "a new image")],
        ));
    };
    for entry in &image.digests {
        if entry.digest == addition.digest {
            continue;
        }
        if let Some(tag) = addition.tags.iter().find(|t| entry.tags.contains(t)) {
            return Err(EditError::TagElsewhere {
                tag: tag.clone(),
                image: image.name.clone(),
                other: entry.digest.clone(),
                line: entry.pos.line,
            });
        }
    }
    match image.digests.iter().find(|e| e.digest == addition.digest) {
        Some(entry) => {
            let missing: Vec<Tag> = addition
                .tags
                .iter()
                .filter(|t| !entry.tags.contains(t))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if missing.is_empty() {
                return Ok(Edited::Unchanged);
            }
            let index = line_index(entry.pos.line);
            let line = lines.get(index).cloned().unwrap_or_default();
            lines[index] = with_tags(&line, entry.pos.line, &missing)?;
            Ok(changed(
                lines,
                newline,
                ends_with_newline,
                vec![describe(addition, &missing, "a new tag")],
            ))
        }
        None => {
            let Some(last) = image.digests.iter().max_by_key(|e| e.pos.line) else {
                return Err(EditError::Layout {
                    line: image.pos.line,
                    reason: format!("image `{}` has no digest entry to follow", image.name),
                });
            };
            let indent = " ".repeat(last.pos.col.saturating_sub(1) as usize);
            let at = end_of_entry(&lines, line_index(last.pos.line), last.pos.col);
            let entry = format!("{indent}\"{}\": [{}]", addition.digest, quoted.join(", "));
            lines.insert(at, entry);
            Ok(changed(
                lines,
                newline,
                ends_with_newline,
                vec![describe(addition, &addition.tags, "a new digest")],
            ))
        }
    }
}

fn changed(
    lines: Vec<String>,
    newline: &str,
    ends_with_newline: bool,
    added: Vec<String>,
) -> Edited {
    let mut text = lines.join(newline);
    if ends_with_newline {
        text.push_str(newline);
    }
    Edited::Changed { text, added }
}

fn describe(addition: &Addition, tags: &[Tag], what: &str) -> String {
    let tags: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    let tags = if tags.is_empty() {
        "(no tag)".to_owned()
    } else {
        tags.join(", ")
    };
    format!(
        "{}: {tags} → {} ({what})",
        addition.image,
        addition.digest.short()
    )
}

/// The index in `lines` of 1-based line `line`.
fn line_index(line: u32) -> usize {
    (line as usize).saturating_sub(1)
}

/// The indentation of image items (`- name:`), from the first image; none in an empty file.
fn item_indent(images: &[Image]) -> String {
    // An image's position is its mapping's, two columns after the item's dash.
    images
        .first()
        .map(|i| " ".repeat(i.pos.col.saturating_sub(3) as usize))
        .unwrap_or_default()
}

/// The index of the line after the last line of `image` (its last digest entry and whatever
/// continues it).
fn end_of_image(lines: &[String], image: &Image) -> usize {
    match image.digests.iter().max_by_key(|e| e.pos.line) {
        Some(last) => end_of_entry(lines, line_index(last.pos.line), last.pos.col),
        None => end_of_entry(lines, line_index(image.pos.line), image.pos.col),
    }
}

/// The index of the first line after `start` that is not indented past column `col` (lines
/// continuing the entry that starts at `start`); blank lines and comments at the end stay
/// after the insertion point only when nothing more indented follows them.
fn end_of_entry(lines: &[String], start: usize, col: u32) -> usize {
    let mut end = start + 1;
    let mut index = start + 1;
    while let Some(line) = lines.get(index) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            index += 1;
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent + 1 > col as usize {
            index += 1;
            end = index;
        } else {
            break;
        }
    }
    end
}

/// `line` (a digest entry `KEY: [TAGS]` on line `number`) with `tags` appended to its list.
fn with_tags(line: &str, number: u32, tags: &[Tag]) -> Result<String, EditError> {
    let layout = |reason: &str| EditError::Layout {
        line: number,
        reason: reason.to_owned(),
    };
    let Some(colon) = find_value_colon(line) else {
        return Err(layout("the digest entry has no `: [tags]` on its line"));
    };
    let value = &line[colon + 1..];
    let Some(open) = value.find('[') else {
        return Err(layout(
            "the tags are not a flow list (`[\"v1\"]`) on the digest's line",
        ));
    };
    let Some(close) = value.rfind(']') else {
        return Err(layout("the tag list does not end on the digest's line"));
    };
    let inside = value[open + 1..close].trim();
    let quote = if inside.contains('\'') && !inside.contains('"') {
        '\''
    } else {
        '"'
    };
    let added: Vec<String> = tags.iter().map(|t| format!("{quote}{t}{quote}")).collect();
    let list = if inside.is_empty() {
        added.join(", ")
    } else {
        format!(
            "{}, {}",
            value[open + 1..close].trim_end(),
            added.join(", ")
        )
    };
    let list = list.trim_start();
    let before = &line[..colon + 1 + open + 1];
    let after = &value[close..];
    Ok(format!("{before}{list}{after}"))
}

/// The byte index of the colon ending a digest key (`"sha256:…":` or `sha256:…:`), skipping the
/// colon inside `sha256:`.
fn find_value_colon(line: &str) -> Option<usize> {
    let key_start = line.len() - line.trim_start().len();
    let rest = &line[key_start..];
    if let Some(quoted) = rest.strip_prefix('"').or_else(|| rest.strip_prefix('\'')) {
        let close = quoted.find(['"', '\''])?;
        let after = key_start + 1 + close + 1;
        return line[after..].find(':').map(|i| after + i);
    }
    // Unquoted: `sha256:HEX: [...]`, the second colon.
    let first = rest.find(':')?;
    rest[first + 1..]
        .find(':')
        .map(|i| key_start + first + 1 + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_appended_in_the_lists_own_quoting() {
        let tags = ["v2".parse().expect("tag")];
        let d = "sha256:aaaa";
        assert_eq!(
            with_tags(&format!("    \"{d}\": [\"v1\"]  # note"), 3, &tags).expect("edited"),
            format!("    \"{d}\": [\"v1\", \"v2\"]  # note")
        );
        assert_eq!(
            with_tags(&format!("    {d}: ['v1']"), 3, &tags).expect("edited"),
            format!("    {d}: ['v1', 'v2']")
        );
        assert_eq!(
            with_tags(&format!("    \"{d}\": []"), 3, &tags).expect("edited"),
            format!("    \"{d}\": [\"v2\"]")
        );
        assert!(with_tags(&format!("    \"{d}\":"), 3, &tags).is_err());
    }
}
