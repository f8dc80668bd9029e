//! Finding and reading manifest files: plain files, folders of them, and thin-manifest trees.
//!
//! Files are found by [`walk`](super::walk) (which never leaves the tree the user named, and
//! never enters a loop) and read by [`read`](super::read) (regular files of bounded size only);
//! every file refused on the way is an error diagnostic naming it, never quoting it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::decode::{self, Decoded};
use super::diagnostic::{self, Diagnostic, FileDiagnostics};
use super::policy::{self, POLICY_FILE, Policy};
use super::read::{self, kind};
use super::walk::{Found, find_files, refuse_linked_folder};
use super::yaml::{self, Pos};
use super::{PromotionManifest, check};

/// File name of a thin manifest's registries, below `manifests/<project>/`.
pub const THIN_MANIFEST_FILE: &str = "promoter-manifest.yaml";
/// File name of a thin manifest's images, below `images/<project>/`.
pub const THIN_IMAGES_FILE: &str = "images.yaml";

/// Manifests read from disk, with every problem found in them.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The manifests, sorted by project. Entries with errors are left out.
    pub manifests: Vec<PromotionManifest>,
    /// Every error and warning, sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// True when no diagnostic is an error: the manifests may be planned and promoted.
    pub fn is_valid(&self) -> bool {
        !diagnostic::has_errors(&self.diagnostics)
    }
}

/// A path that could not be read as manifests at all (a usage error, not a manifest problem).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path does not exist or cannot be inspected.
    #[error("cannot read {}", path.display())]
    Unreadable {
        /// The path given.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A folder with no manifest in it.
    #[error(
        "{} holds no manifests: expected YAML files, or a thin-manifest tree with manifests/<project>/promoter-manifest.yaml",
        path.display()
    )]
    Empty {
        /// The folder given.
        path: PathBuf,
    },
}

/// Reads every path as manifests and validates them together.
///
/// A path is a plain manifest file; a folder with a `manifests/` subfolder is a thin-manifest
/// tree; any other folder is searched for plain manifests (`*.yaml`, `*.yml`). Problems inside
/// files, and files refused (special files, links out of the folder, loops, files too large),
/// are returned as diagnostics; only paths that cannot be read at all are errors.
pub fn load(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    let mut images_path_seen: Vec<(Arc<Path>, Pos)> = Vec::new();
    for path in paths {
        load_path(path, &mut loaded, &mut images_path_seen)?;
    }
    warn_images_path_once(&mut images_path_seen, &mut loaded.diagnostics);
    check::overlapping_destinations(&loaded.manifests, &mut loaded.diagnostics);
    check::repository_lengths(&loaded.manifests, &mut loaded.diagnostics);
    loaded.manifests.sort_by(|a, b| a.project.cmp(&b.project));
    diagnostic::sort(&mut loaded.diagnostics);
    Ok(loaded)
}

/// Loads one path given by the user. The path itself is followed if it is a link (the user
/// named it); what is below it may not lead out of it.
fn load_path(
    path: &Path,
    loaded: &mut Loaded,
    images_path_seen: &mut Vec<(Arc<Path>, Pos)>,
) -> Result<(), LoadError> {
    let unreadable = |source| LoadError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    // `stat`, not `open`: looking at a FIFO does not wait for a writer.
    let meta = fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() && !meta.is_dir() {
        let msg = format!(
            "{}, not a regular file: refused, not read",
            kind(&meta.file_type())
        );
        FileDiagnostics::new(Arc::from(path), &mut loaded.diagnostics)
            .error(Pos { line: 1, col: 1 }, msg);
        return Ok(());
    }
    let root = fs::canonicalize(path).map_err(unreadable)?;
    if meta.is_file() {
        let found = Found {
            path: path.to_path_buf(),
            real: Some(root),
        };
        load_plain(&found, loaded);
        return Ok(());
    }
    let reported = loaded.diagnostics.len();
    let is_thin =
        fs::symlink_metadata(path.join("manifests")).is_ok_and(|m| m.is_dir() || m.is_symlink());
    let found_any = if is_thin {
        load_thin_tree(path, &root, loaded, images_path_seen)?
    } else {
        let yaml = |p: &Path| has_extension(p, &["yaml", "yml"]) && !is_policy_file(p);
        let files = find_files(path, &root, &yaml, &mut loaded.diagnostics)?;
        let found_any = !files.is_empty();
        for file in files {
            load_plain(&file, loaded);
        }
        found_any
    };
    // A folder whose manifests were all refused says why, rather than "no manifests".
    if !found_any && loaded.diagnostics.len() == reported {
        return Err(LoadError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// True for a policy file among plain manifests (`policy.yaml`, `NAME.policy.yaml`): read
/// through the manifest naming it, never as a manifest.
fn is_policy_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == POLICY_FILE || n.ends_with(".policy.yaml"))
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e))
}

/// What reading one file gave.
enum Parsed {
    /// The file's YAML document.
    Tree(yaml::Node),
    /// A file with no YAML document (empty, or only comments).
    Empty,
    /// Unreadable or not YAML; already reported.
    Failed,
}

/// Reads and parses one file; problems become diagnostics (on the file's name in the tree).
fn parse_file(found: &Found, out: &mut Vec<Diagnostic>) -> (Arc<Path>, Parsed) {
    let file: Arc<Path> = Arc::from(found.path.as_path());
    let mut d = FileDiagnostics::new(Arc::clone(&file), out);
    let Some(real) = &found.real else {
        // Refused by the walk, and reported there.
        return (file, Parsed::Failed);
    };
    let text = match read::read_text(real) {
        Ok(text) => text,
        Err(e) => {
            d.error(Pos { line: 1, col: 1 }, e.message());
            return (file, Parsed::Failed);
        }
    };
    match yaml::parse(&text) {
        Ok(document) => {
            for problem in document.problems {
                d.error(problem.pos, problem.message);
            }
            match document.root {
                Some(root) => (file, Parsed::Tree(root)),
                None => (file, Parsed::Empty),
            }
        }
        Err(e) => {
            d.error(e.pos, e.message);
            (file, Parsed::Failed)
        }
    }
}

fn load_plain(found: &Found, loaded: &mut Loaded) {
    let (file, root) = parse_file(found, &mut loaded.diagnostics);
    let mut d = FileDiagnostics::new(Arc::clone(&file), &mut loaded.diagnostics);
    let root = match root {
        Parsed::Tree(root) => root,
        Parsed::Empty => {
            return empty_file_error(&mut d, "a manifest needs `registries` and `images`");
        }
        Parsed::Failed => return,
    };
    let Decoded {
        registries,
        images,
        policy,
        ..
    } = decode::plain(&root, &mut d);
    let policy = policy.and_then(|(named, pos)| plain_policy(&file, &named, pos, loaded));
    loaded.manifests.push(PromotionManifest {
        project: file.display().to_string(),
        registries_file: Arc::clone(&file),
        images_file: file,
        registries,
        images,
        policy,
    });
}

/// The policy a plain manifest (`file`) names at `pos`: a file beside it or below its folder.
fn plain_policy(
    file: &Arc<Path>,
    named: &str,
    pos: Pos,
    loaded: &mut Loaded,
) -> Option<Arc<Policy>> {
    let mut refuse = |msg: String| {
        FileDiagnostics::new(Arc::clone(file), &mut loaded.diagnostics).error(pos, msg);
        None
    };
    let relative = Path::new(named);
    let inside = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if named.is_empty() || !inside {
        return refuse(format!(
            "`policy` names a file beside the manifest or below its folder (a relative path without `..`), found `{named}`"
        ));
    }
    if !is_policy_file(relative) {
        return refuse(format!(
            "`policy` names `policy.yaml` or `NAME.policy.yaml` (files a folder of manifests is not read as manifests), found `{named}`"
        ));
    }
    let folder = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = folder.join(relative);
    // Resolved, the file must still be below the manifest's folder: a link out of it (to a
    // credentials file, say) is refused as the walk refuses one.
    let real = match (fs::canonicalize(&path), fs::canonicalize(folder)) {
        (Ok(real), Ok(root)) if real.starts_with(&root) => real,
        (Ok(_), Ok(_)) => {
            return refuse(format!(
                "`policy`: {} leads out of the manifest's folder: refused, not read",
                path.display()
            ));
        }
        (Err(e), _) | (_, Err(e)) => {
            return refuse(format!("`policy`: cannot read {}: {e}", path.display()));
        }
    };
    load_policy(
        &Found {
            path,
            real: Some(real),
        },
        loaded,
    )
}

/// Reads and checks one policy file.
fn load_policy(found: &Found, loaded: &mut Loaded) -> Option<Arc<Policy>> {
    let (file, root) = parse_file(found, &mut loaded.diagnostics);
    let mut d = FileDiagnostics::new(file, &mut loaded.diagnostics);
    match root {
        Parsed::Tree(root) => policy::decode(&root, &mut d).map(Arc::new),
        Parsed::Empty => {
            empty_file_error(&mut d, "a policy needs at least one rule");
            None
        }
        Parsed::Failed => None,
    }
}

/// Reports a file with no YAML document in it.
fn empty_file_error(d: &mut FileDiagnostics<'_>, need: &str) {
    d.error(
        Pos { line: 1, col: 1 },
        format!("the file is empty: {need}"),
    );
}

/// The project name of `file` below `root`: its parent folder, relative to `root`.
fn project_of(root: &Path, file: &Path) -> Option<String> {
    let parent = file.parent()?.strip_prefix(root).ok()?;
    let parts: Vec<&str> = parent.iter().filter_map(|p| p.to_str()).collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Loads a thin-manifest tree; false when it holds no project at all.
fn load_thin_tree(
    dir: &Path,
    root: &Path,
    loaded: &mut Loaded,
    images_path_seen: &mut Vec<(Arc<Path>, Pos)>,
) -> Result<bool, LoadError> {
    let manifests_dir = dir.join("manifests");
    let images_dir = dir.join("images");
    let out = &mut loaded.diagnostics;
    if refuse_linked_folder(&manifests_dir, out) | refuse_linked_folder(&images_dir, out) {
        return Ok(true);
    }
    let named = |name: &'static str| move |p: &Path| p.file_name().is_some_and(|f| f == name);
    let mut projects: BTreeMap<String, (Option<Found>, Option<Found>)> = BTreeMap::new();
    for file in find_files(&manifests_dir, root, &named(THIN_MANIFEST_FILE), out)? {
        if let Some(project) = project_of(&manifests_dir, &file.path) {
            projects.entry(project).or_default().0 = Some(file);
        }
    }
    let mut policies: BTreeMap<String, Found> = BTreeMap::new();
    for file in find_files(&manifests_dir, root, &named(POLICY_FILE), out)? {
        if let Some(project) = project_of(&manifests_dir, &file.path) {
            policies.insert(project, file);
        }
    }
    if images_dir.is_dir() {
        for file in find_files(&images_dir, root, &named(THIN_IMAGES_FILE), out)? {
            if let Some(project) = project_of(&images_dir, &file.path) {
                projects.entry(project).or_default().1 = Some(file);
            }
        }
    }
    let found_any = !projects.is_empty();
    for (project, files) in projects {
        let policy = policies.remove(&project);
        let policy = policy.and_then(|found| load_policy(&found, loaded));
        load_thin_project(dir, project, files, policy, loaded, images_path_seen);
    }
    for found in policies.into_values() {
        let msg =
            format!("a policy without a {THIN_MANIFEST_FILE} beside it: no project to apply it to");
        FileDiagnostics::new(Arc::from(found.path.as_path()), &mut loaded.diagnostics)
            .error(Pos { line: 1, col: 1 }, msg);
    }
    Ok(found_any)
}

fn load_thin_project(
    dir: &Path,
    project: String,
    files: (Option<Found>, Option<Found>),
    policy: Option<Arc<Policy>>,
    loaded: &mut Loaded,
    images_path_seen: &mut Vec<(Arc<Path>, Pos)>,
) {
    let start = Pos { line: 1, col: 1 };
    let out = &mut loaded.diagnostics;
    match files {
        (Some(manifest), Some(images)) => {
            let (registries_file, registries_root) = parse_file(&manifest, out);
            let mut d = FileDiagnostics::new(Arc::clone(&registries_file), out);
            let decoded = match registries_root {
                Parsed::Tree(root) => decode::thin_registries(&root, &mut d),
                Parsed::Empty => {
                    empty_file_error(&mut d, "promoter-manifest.yaml needs `registries`");
                    Decoded::default()
                }
                Parsed::Failed => Decoded::default(),
            };
            if let Some(pos) = decoded.images_path {
                images_path_seen.push((Arc::clone(&registries_file), pos));
            }
            let (images_file, images_root) = parse_file(&images, out);
            let mut d = FileDiagnostics::new(Arc::clone(&images_file), out);
            let images = match images_root {
                Parsed::Tree(root) => decode::images_file(&root, &mut d),
                Parsed::Empty | Parsed::Failed => Vec::new(),
            };
            loaded.manifests.push(PromotionManifest {
                project,
                registries_file,
                images_file,
                registries: decoded.registries,
                images,
                policy,
            });
        }
        (Some(manifest), None) => {
            let expected = dir.join("images").join(&project).join(THIN_IMAGES_FILE);
            let msg = format!(
                "project `{project}` has no images file: expected {}",
                expected.display()
            );
            FileDiagnostics::new(Arc::from(manifest.path.as_path()), out).error(start, msg);
        }
        (None, Some(images)) => {
            let expected = dir
                .join("manifests")
                .join(&project)
                .join(THIN_MANIFEST_FILE);
            let msg = format!(
                "project `{project}` has images but no promoter manifest: expected {}",
                expected.display()
            );
            FileDiagnostics::new(Arc::from(images.path.as_path()), out).error(start, msg);
        }
        (None, None) => {}
    }
}

/// The deprecated `imagesPath` is accepted and ignored; say so once, not once per project.
fn warn_images_path_once(seen: &mut [(Arc<Path>, Pos)], out: &mut Vec<Diagnostic>) {
    seen.sort();
    let Some((file, pos)) = seen.first() else {
        return;
    };
    let also = match seen.len() {
        1 => String::new(),
        n => format!(" ({} other manifests carry it too)", n - 1),
    };
    let msg = format!(
        "`imagesPath` is deprecated and ignored: images are read from images/<project>/images.yaml{also}"
    );
    FileDiagnostics::new(Arc::clone(file), out).warning(*pos, msg);
}
