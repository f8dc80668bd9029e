//! Turns YAML trees into manifest entries, reporting every problem on the way.
//!
//! Three kinds of file are decoded: a plain manifest (`registries` + `images`), a thin
//! manifest's `promoter-manifest.yaml` (`registries`, and the deprecated `imagesPath`), and a
//! thin manifest's `images.yaml` (a bare list of images). Entries with errors are left out of
//! the result; the diagnostics say why.
//!
//! Every check takes time linear in the number of entries: duplicates are found with hash
//! maps, never by searching what was read before (a file of 100,000 images or tags would
//! otherwise take minutes).

use std::collections::HashMap;
use std::sync::Arc;

use super::diagnostic::FileDiagnostics;
use super::fields::{Fields, Shape, list, scalar_text, text};
use super::seen::FirstSeen;
use super::yaml::{Node, Pos, ScalarKind, Value, scalar_kind};
use super::{DigestEntry, Image, Registry};
use crate::reference::{Digest, ImageName, RegistryName, Tag};

/// What one file contributed.
#[derive(Default)]
pub struct Decoded {
    /// Registry entries that decoded cleanly.
    pub registries: Vec<Registry>,
    /// Image entries that decoded cleanly (bad digests and tags left out).
    pub images: Vec<Image>,
    /// Where the deprecated `imagesPath` field was, if present.
    pub images_path: Option<Pos>,
    /// A plain manifest's `policy` field: the policy file it names, and where.
    pub policy: Option<(String, Pos)>,
}

const PLAIN_MANIFEST: Shape = Shape {
    what: "the manifest",
    fields: &["registries", "images", "policy"],
    deprecated: &[],
    refused: &[],
};
const THIN_MANIFEST: Shape = Shape {
    what: "promoter-manifest.yaml",
    fields: &["registries"],
    deprecated: &["imagesPath"],
    refused: &[(
        "images",
        "a thin manifest lists its images in images/<project>/images.yaml",
    )],
};
const REGISTRY: Shape = Shape {
    what: "a registry entry",
    fields: &["name", "src", "service-account"],
    deprecated: &[],
    refused: &[],
};
const IMAGE: Shape = Shape {
    what: "an image entry",
    fields: &["name", "dmap"],
    deprecated: &[],
    refused: &[],
};

const LIST_OF_IMAGES: &str = "a list of images (`- name: …` with a `dmap`)";

/// Decodes a plain manifest file's root.
pub fn plain(root: &Node, d: &mut FileDiagnostics<'_>) -> Decoded {
    let Some(fields) = Fields::read(root, &PLAIN_MANIFEST, d) else {
        d.error(
            root.pos,
            format!(
                "a manifest is a mapping with `registries` and `images`, but this file holds {}",
                root.value.describe()
            ),
        );
        return Decoded::default();
    };
    let registries = registries_field(&fields, d);
    let images = match fields.get("images") {
        Some(node) => images(node, &format!("`images` is {LIST_OF_IMAGES}"), d),
        None => {
            d.error(fields.pos, "the manifest has no `images` list");
            Vec::new()
        }
    };
    let policy = fields
        .get("policy")
        .and_then(|node| text(node, "policy", d).map(|file| (file.to_owned(), node.pos)));
    Decoded {
        registries,
        images,
        images_path: None,
        policy,
    }
}

/// Decodes a thin manifest's `promoter-manifest.yaml` root (registries only).
pub fn thin_registries(root: &Node, d: &mut FileDiagnostics<'_>) -> Decoded {
    let Some(fields) = Fields::read(root, &THIN_MANIFEST, d) else {
        d.error(
            root.pos,
            format!(
                "promoter-manifest.yaml is a mapping with `registries`, but this file holds {}",
                root.value.describe()
            ),
        );
        return Decoded::default();
    };
    let registries = registries_field(&fields, d);
    let images_path = fields.key("imagesPath").map(|k| k.pos);
    Decoded {
        registries,
        images: Vec::new(),
        images_path,
        policy: None,
    }
}

/// Decodes a thin manifest's `images.yaml` root (a bare list of images).
pub fn images_file(root: &Node, d: &mut FileDiagnostics<'_>) -> Vec<Image> {
    images(root, &format!("images.yaml is {LIST_OF_IMAGES}"), d)
}

/// Reads the `registries` field and checks the set: one source, no duplicates.
fn registries_field(fields: &Fields<'_>, d: &mut FileDiagnostics<'_>) -> Vec<Registry> {
    let Some(node) = fields.get("registries") else {
        d.error(fields.pos, "the manifest has no `registries` list");
        return Vec::new();
    };
    let expected = "`registries` is a list of registries (`- name: …`)";
    let Some(items) = list(node, expected, d) else {
        return Vec::new();
    };
    let at = fields.key("registries").map_or(fields.pos, |k| k.pos);
    if items.is_empty() {
        let msg = "`registries` is empty: list the staging registry (with `src: true`) and the production registries";
        d.error(at, msg);
        return Vec::new();
    }
    let mut registries: Vec<Registry> = Vec::new();
    let mut first_lines = FirstSeen::with_capacity(items.len());
    let mut all_decoded = true;
    for item in items {
        let Some(registry) = registry(item, d) else {
            all_decoded = false;
            continue;
        };
        if let Some(first_line) = first_lines.repeat_of(&registry.name, registry.pos.line) {
            repeated_registry(&registry, first_line, &registries, d);
            continue;
        }
        registries.push(registry);
    }
    // An entry with an error may be the source: "no source" would then be a false alarm.
    if all_decoded {
        check_one_source(&registries, at, d);
    }
    registries
}

/// A registry listed again: the same entry twice is one destination (a warning: the
/// Kubernetes promoter accepts it and promotes once); listed with another `src` or
/// `service-account` it is ambiguous (an error).
fn repeated_registry(
    registry: &Registry,
    first_line: u32,
    registries: &[Registry],
    d: &mut FileDiagnostics<'_>,
) {
    let same = registries
        .iter()
        .find(|r| r.name == registry.name)
        .is_some_and(|first| {
            first.src == registry.src && first.service_account == registry.service_account
        });
    if same {
        let msg = format!(
            "registry `{}` is listed twice (first at line {first_line}): it is one destination",
            registry.name
        );
        d.warning(registry.pos, msg);
    } else {
        let msg = format!(
            "registry `{}` is listed twice (first at line {first_line}) with a different `src` or `service-account`: keep one entry",
            registry.name
        );
        d.error(registry.pos, msg);
    }
}

fn check_one_source(registries: &[Registry], at: Pos, d: &mut FileDiagnostics<'_>) {
    let mut sources = registries.iter().filter(|r| r.src);
    let Some(first) = sources.next() else {
        d.error(
            at,
            "no source registry: mark the staging registry with `src: true`",
        );
        return;
    };
    for extra in sources {
        let msg = format!(
            "a second source registry: exactly one registry has `src: true` (the first is `{}` at line {})",
            first.name, first.pos.line
        );
        d.error(extra.pos, msg);
    }
}

fn registry(node: &Node, d: &mut FileDiagnostics<'_>) -> Option<Registry> {
    let Some(fields) = Fields::read(node, &REGISTRY, d) else {
        let msg = format!(
            "a registry entry is a mapping with `name` (and `src` or `service-account`), found {}",
            node.value.describe()
        );
        d.error(node.pos, msg);
        return None;
    };
    let src = match fields.get("src") {
        Some(value) => src_flag(value, d)?,
        None => false,
    };
    let service_account = match fields.get("service-account") {
        Some(value) if !value.value.is_null() => {
            Some(text(value, "service-account", d)?.to_owned())
        }
        _ => None,
    };
    let Some(name_node) = fields.get("name") else {
        d.error(node.pos, "a registry entry needs a `name`");
        return None;
    };
    let name = text(name_node, "name", d)?;
    let name = match name.parse::<RegistryName>() {
        Ok(name) => name,
        Err(e) => {
            d.error(
                name_node.pos,
                format!("invalid registry name `{name}`: {e}"),
            );
            return None;
        }
    };
    Some(Registry {
        name,
        src,
        service_account,
        pos: node.pos,
    })
}

fn src_flag(node: &Node, d: &mut FileDiagnostics<'_>) -> Option<bool> {
    if let Value::Scalar { text, plain } = &node.value {
        match scalar_kind(text, *plain) {
            ScalarKind::Bool(b) => return Some(b),
            ScalarKind::Null => return Some(false),
            ScalarKind::Number | ScalarKind::Text => {}
        }
    }
    d.error(
        node.pos,
        format!("`src` is true or false, found {}", node.value.describe()),
    );
    None
}

/// Reads a list of image entries; `expected` starts the message when `node` is not a list.
fn images(node: &Node, expected: &str, d: &mut FileDiagnostics<'_>) -> Vec<Image> {
    if node.value.is_null() {
        return Vec::new();
    }
    let Some(items) = list(node, expected, d) else {
        return Vec::new();
    };
    let mut images: Vec<Image> = Vec::new();
    // Name → index in `images` of its first listing, and the later listings of each.
    let mut first: HashMap<ImageName, usize> = HashMap::with_capacity(items.len());
    let mut again: Vec<(usize, Image)> = Vec::new();
    for item in items {
        let Some(image) = image(item, d) else {
            continue;
        };
        match first.get(&image.name) {
            Some(&index) => {
                let msg = format!(
                    "image `{}` is listed again (first at line {}): its digests are added to that entry, as the Kubernetes promoter does",
                    image.name, images[index].pos.line
                );
                d.warning(image.pos, msg);
                again.push((index, image));
            }
            None => {
                first.insert(image.name.clone(), images.len());
                images.push(image);
            }
        }
    }
    merge_listings(&mut images, again, d);
    images
}

/// Adds the digests of later listings of an image to its first listing (in file order); a
/// digest listed in several gets the union of its tags, and a tag given to two digests across
/// listings is an error, as within one. Linear: two maps per merged image.
fn merge_listings(images: &mut [Image], again: Vec<(usize, Image)>, d: &mut FileDiagnostics<'_>) {
    let mut indexes: HashMap<usize, MergeIndex> = HashMap::new();
    for (index, later) in again {
        let target = &mut images[index];
        let known = indexes
            .entry(index)
            .or_insert_with(|| MergeIndex::of(target));
        for entry in later.digests {
            for tag in entry.tags.iter() {
                match known.tags.get(tag) {
                    Some((owner, line)) if *owner != entry.digest => {
                        let msg = format!(
                            "tag `{tag}` of image `{}` is also given to {} at line {line}; a tag names one digest",
                            target.name,
                            owner.short()
                        );
                        d.error(entry.pos, msg);
                    }
                    Some(_) => {}
                    None => {
                        known
                            .tags
                            .insert(tag.clone(), (entry.digest.clone(), entry.pos.line));
                    }
                }
            }
            match known.digests.get(&entry.digest) {
                Some(&i) => {
                    let kept = &mut target.digests[i];
                    let msg = format!(
                        "digest {} of image `{}` is also listed at line {}: its tags are merged",
                        entry.digest.short(),
                        target.name,
                        kept.pos.line
                    );
                    d.warning(entry.pos, msg);
                    let mut tags: Vec<Tag> =
                        kept.tags.iter().chain(entry.tags.iter()).cloned().collect();
                    tags.sort();
                    tags.dedup();
                    kept.tags = tags.into();
                }
                None => {
                    known
                        .digests
                        .insert(entry.digest.clone(), target.digests.len());
                    target.digests.push(entry);
                }
            }
        }
    }
}

/// An image's digests (index in its entry) and tags (owner digest and line), for merging.
struct MergeIndex {
    digests: HashMap<Digest, usize>,
    tags: HashMap<Tag, (Digest, u32)>,
}

impl MergeIndex {
    fn of(image: &Image) -> Self {
        let mut index = MergeIndex {
            digests: HashMap::with_capacity(image.digests.len()),
            tags: HashMap::new(),
        };
        for (i, entry) in image.digests.iter().enumerate() {
            index.digests.insert(entry.digest.clone(), i);
            for tag in entry.tags.iter() {
                index
                    .tags
                    .insert(tag.clone(), (entry.digest.clone(), entry.pos.line));
            }
        }
        index
    }
}

fn image(node: &Node, d: &mut FileDiagnostics<'_>) -> Option<Image> {
    let Some(fields) = Fields::read(node, &IMAGE, d) else {
        let msg = format!(
            "an image entry is a mapping with `name` and `dmap`, found {}",
            node.value.describe()
        );
        d.error(node.pos, msg);
        return None;
    };
    let Some(name_node) = fields.get("name") else {
        d.error(node.pos, "an image entry needs a `name`");
        return None;
    };
    let name = text(name_node, "name", d)?;
    let name = match name.parse::<ImageName>() {
        Ok(name) => name,
        Err(e) => {
            d.error(name_node.pos, format!("invalid image name `{name}`: {e}"));
            return None;
        }
    };
    let Some(dmap) = fields.get("dmap") else {
        d.error(
            node.pos,
            format!("image `{name}` has no `dmap` (digest → tags)"),
        );
        return None;
    };
    if dmap.value.is_null() || matches!(&dmap.value, Value::Map(m) if m.is_empty()) {
        let msg = format!(
            "image `{name}` has an empty `dmap`: list its digests (and their tags), or remove the image"
        );
        d.error(dmap.pos, msg);
        return None;
    }
    let digests = digest_map(dmap, &name, d);
    Some(Image {
        name,
        pos: node.pos,
        digests,
    })
}

fn digest_map(node: &Node, image: &ImageName, d: &mut FileDiagnostics<'_>) -> Vec<DigestEntry> {
    if node.value.is_null() {
        return Vec::new();
    }
    let Value::Map(entries) = &node.value else {
        let msg = format!(
            "`dmap` maps digests to lists of tags, found {}",
            node.value.describe()
        );
        d.error(node.pos, msg);
        return Vec::new();
    };
    let mut out: Vec<DigestEntry> = Vec::with_capacity(entries.len());
    let mut tag_owner: HashMap<Tag, (Digest, u32)> = HashMap::new();
    let mut digest_lines: HashMap<Digest, u32> = HashMap::with_capacity(entries.len());
    for (key, value) in entries {
        let Some(digest) = digest_key(key, d) else {
            continue;
        };
        if let Some(first_line) = digest_lines.get(&digest) {
            let msg = format!(
                "digest {} is listed twice for image `{image}` (first at line {first_line})",
                digest.short()
            );
            d.error(key.pos, msg);
            continue;
        }
        digest_lines.insert(digest.clone(), key.pos.line);
        let tags = tag_list(value, &digest, d);
        for (tag, pos) in &tags {
            match tag_owner.get(tag) {
                Some((other, line)) => {
                    let msg = format!(
                        "tag `{tag}` of image `{image}` is also given to {} at line {line}; a tag names one digest",
                        other.short()
                    );
                    d.error(*pos, msg);
                }
                None => {
                    tag_owner.insert(tag.clone(), (digest.clone(), pos.line));
                }
            }
        }
        // Sorted, so that every output lists tags in one stable order.
        let mut tags: Vec<Tag> = tags.into_iter().map(|(t, _)| t).collect();
        tags.sort();
        let tags: Arc<[Tag]> = tags.into();
        out.push(DigestEntry {
            digest,
            tags,
            pos: key.pos,
        });
    }
    out
}

fn digest_key(key: &Node, d: &mut FileDiagnostics<'_>) -> Option<Digest> {
    let Some(raw) = scalar_text(key) else {
        d.error(
            key.pos,
            format!("a `dmap` key is a digest, found {}", key.value.describe()),
        );
        return None;
    };
    match raw.parse::<Digest>() {
        Ok(digest) => Some(digest),
        Err(e) => {
            d.error(key.pos, format!("invalid digest `{raw}`: {e}"));
            None
        }
    }
}

/// Reads the tags of one digest, with their positions; duplicates and bad tags are reported.
fn tag_list(node: &Node, digest: &Digest, d: &mut FileDiagnostics<'_>) -> Vec<(Tag, Pos)> {
    if node.value.is_null() {
        return Vec::new();
    }
    let Value::Seq(items) = &node.value else {
        let hint = match &node.value {
            Value::Scalar { text, .. } => format!("; write [\"{text}\"]"),
            _ => String::new(),
        };
        let msg = format!(
            "the tags of {} are a list like [\"v1.0\"] (or [] for none), found {}{hint}",
            digest.short(),
            node.value.describe()
        );
        d.error(node.pos, msg);
        return Vec::new();
    };
    let mut tags: Vec<(Tag, Pos)> = Vec::with_capacity(items.len());
    let mut first_lines = FirstSeen::with_capacity(items.len());
    for item in items {
        let Some(tag) = tag(item, d) else { continue };
        if first_lines.repeat_of(&tag, item.pos.line).is_some() {
            d.error(
                item.pos,
                format!("tag `{tag}` is listed twice for {}", digest.short()),
            );
            continue;
        }
        tags.push((tag, item.pos));
    }
    tags
}

fn tag(node: &Node, d: &mut FileDiagnostics<'_>) -> Option<Tag> {
    let Value::Scalar { text, plain } = &node.value else {
        d.error(
            node.pos,
            format!("a tag is text, found {}", node.value.describe()),
        );
        return None;
    };
    let kind = match scalar_kind(text, *plain) {
        ScalarKind::Text if text.is_empty() => {
            d.error(node.pos, "empty tag: remove it, or write the tag's name");
            return None;
        }
        ScalarKind::Text => None,
        ScalarKind::Number => Some("a number"),
        ScalarKind::Bool(_) => Some("a boolean"),
        ScalarKind::Null => {
            d.error(node.pos, "empty tag: remove it, or write the tag's name");
            return None;
        }
    };
    if let Some(kind) = kind {
        d.error(
            node.pos,
            format!("tag {text} is read by YAML as {kind}; quote it: \"{text}\""),
        );
        return None;
    }
    match text.parse::<Tag>() {
        Ok(tag) => Some(tag),
        Err(e) => {
            d.error(node.pos, format!("invalid tag `{text}`: {e}"));
            None
        }
    }
}
