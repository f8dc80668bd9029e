//! Finding and reading manifest files: plain files, folders of them, and thin-manifest trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::decode::{self, Decoded};
use super::diagnostic::{self, Diagnostic, FileDiagnostics};
use super::read::{self, kind};
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
/// files are returned as diagnostics; only paths that cannot be read at all are errors.
pub fn load(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    let mut images_path_seen: Vec<(Arc<Path>, Pos)> = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| LoadError::Unreadable {
            path: path.clone(),
            source,
        })?;
        if !meta.is_file() && !meta.is_dir() {
            // A FIFO, socket or device: refused from its metadata, never opened.
            let msg = format!(
                "{}, not a regular file: refused, not read",
                kind(&meta.file_type())
            );
            FileDiagnostics::new(Arc::from(path.as_path()), &mut loaded.diagnostics)
                .error(Pos { line: 1, col: 1 }, msg);
        } else if meta.is_file() {
            load_plain(path, &mut loaded);
        } else if path.join("manifests").is_dir() {
            load_thin_tree(path, &mut loaded, &mut images_path_seen)?;
        } else {
            let files = find_files(path, &|p| has_extension(p, &["yaml", "yml"]))?;
            if files.is_empty() {
                return Err(LoadError::Empty { path: path.clone() });
            }
            for file in files {
                load_plain(&file, &mut loaded);
            }
        }
    }
    warn_images_path_once(&mut images_path_seen, &mut loaded.diagnostics);
    check::overlapping_destinations(&loaded.manifests, &mut loaded.diagnostics);
    check::repository_lengths(&loaded.manifests, &mut loaded.diagnostics);
    loaded.manifests.sort_by(|a, b| a.project.cmp(&b.project));
    diagnostic::sort(&mut loaded.diagnostics);
    Ok(loaded)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e))
}

/// Every file below `dir` (recursively) that `wanted` accepts, sorted.
fn find_files(dir: &Path, wanted: &dyn Fn(&Path) -> bool) -> Result<Vec<PathBuf>, LoadError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let unreadable = |source| LoadError::Unreadable {
            path: current.clone(),
            source,
        };
        for entry in std::fs::read_dir(&current).map_err(unreadable)? {
            let path = entry.map_err(unreadable)?.path();
            if path.is_dir() {
                pending.push(path);
            } else if wanted(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
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

/// Reads and parses one file; problems become diagnostics.
fn parse_file(path: &Path, out: &mut Vec<Diagnostic>) -> (Arc<Path>, Parsed) {
    let file: Arc<Path> = Arc::from(path);
    let mut d = FileDiagnostics::new(Arc::clone(&file), out);
    let text = match std::fs::canonicalize(path)
        .map_err(read::ReadError::Io)
        .and_then(|real| read::read_text(&real))
    {
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

fn load_plain(path: &Path, loaded: &mut Loaded) {
    let (file, root) = parse_file(path, &mut loaded.diagnostics);
    let mut d = FileDiagnostics::new(Arc::clone(&file), &mut loaded.diagnostics);
    let root = match root {
        Parsed::Tree(root) => root,
        Parsed::Empty => {
            return empty_file_error(&mut d, "a manifest needs `registries` and `images`");
        }
        Parsed::Failed => return,
    };
    let Decoded {
        registries, images, ..
    } = decode::plain(&root, &mut d);
    loaded.manifests.push(PromotionManifest {
        project: file.display().to_string(),
        registries_file: Arc::clone(&file),
        images_file: file,
        registries,
        images,
    });
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

fn load_thin_tree(
    dir: &Path,
    loaded: &mut Loaded,
    images_path_seen: &mut Vec<(Arc<Path>, Pos)>,
) -> Result<(), LoadError> {
    let manifests_dir = dir.join("manifests");
    let images_dir = dir.join("images");
    let named = |name: &'static str| move |p: &Path| p.file_name().is_some_and(|f| f == name);
    let mut projects: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    for file in find_files(&manifests_dir, &named(THIN_MANIFEST_FILE))? {
        if let Some(project) = project_of(&manifests_dir, &file) {
            projects.entry(project).or_default().0 = Some(file);
        }
    }
    if images_dir.is_dir() {
        for file in find_files(&images_dir, &named(THIN_IMAGES_FILE))? {
            if let Some(project) = project_of(&images_dir, &file) {
                projects.entry(project).or_default().1 = Some(file);
            }
        }
    }
    if projects.is_empty() {
        return Err(LoadError::Empty {
            path: dir.to_path_buf(),
        });
    }
    for (project, files) in projects {
        load_thin_project(dir, project, files, loaded, images_path_seen);
    }
    Ok(())
}

fn load_thin_project(
    dir: &Path,
    project: String,
    files: (Option<PathBuf>, Option<PathBuf>),
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
            });
        }
        (Some(manifest), None) => {
            let expected = dir.join("images").join(&project).join(THIN_IMAGES_FILE);
            let msg = format!(
                "project `{project}` has no images file: expected {}",
                expected.display()
            );
            FileDiagnostics::new(Arc::from(manifest.as_path()), out).error(start, msg);
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
            FileDiagnostics::new(Arc::from(images.as_path()), out).error(start, msg);
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
