//! Finding manifest files below a folder without leaving the tree the user named.
//!
//! The walk descends real folders only, so it always ends. What it meets:
//!
//! - a regular file the caller wants is found;
//! - a FIFO, socket or device with a wanted name is refused (never opened: opening a FIFO
//!   would wait for a writer);
//! - a symbolic link is resolved (`realpath`) and:
//!   - if it loops, or points at nothing while having a wanted name, it is refused;
//!   - if it points outside the root (the folder the user named), it is refused and never read,
//!     so that a link to a credentials file cannot have its content quoted in a diagnostic;
//!   - if it points at a folder (inside the root), it is refused: folders are not followed, so
//!     no file is read twice under two names and no link back up the tree can loop;
//!   - if it points at a regular file inside the root and has a wanted name, the file is found
//!     (read through its real path, reported under the link's name).
//!
//! Links and special files with other names are ignored, as files with other names are.
//! Every refusal is an error diagnostic at `LINK:1:1`.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diagnostic::{Diagnostic, FileDiagnostics};
use super::load::LoadError;
use super::read::kind;
use super::yaml::Pos;

/// Why a symbolic link to a folder is refused.
const LINKED_FOLDER: &str = "a symbolic link to a folder: not followed (manifests are read from \
                             real folders; put the folder here instead of a link)";

/// Reports `path` if it is a symbolic link, for a folder a walk would start in (a thin tree's
/// `manifests/` or `images/`); true when it was one.
pub fn refuse_linked_folder(path: &Path, out: &mut Vec<Diagnostic>) -> bool {
    let linked = fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
    if linked {
        FileDiagnostics::new(Arc::from(path), out)
            .error(Pos { line: 1, col: 1 }, LINKED_FOLDER.to_owned());
    }
    linked
}

/// A manifest file the walk found: one to read, or one refused (and already reported), kept
/// so that a thin tree's project is not also reported as missing that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file as named in the tree (a link's own path): what diagnostics name.
    pub path: PathBuf,
    /// The file to open: the same path, or a link's target inside the root; `None` when the
    /// file was refused and must not be read.
    pub real: Option<PathBuf>,
}

impl Found {
    /// A file to read where it is.
    pub fn at(path: &Path) -> Self {
        Found {
            path: path.to_path_buf(),
            real: Some(path.to_path_buf()),
        }
    }
}

/// A walk of one root: the canonical root, what is wanted, and where refusals go.
struct Walk<'a, 'o> {
    root: &'a Path,
    wanted: &'a dyn Fn(&Path) -> bool,
    out: &'o mut Vec<Diagnostic>,
}

/// Every file below the real folder `dir` that `wanted` accepts (by its name in the tree),
/// sorted; entries refused on the way are reported into `out`.
///
/// `root` is the canonical path of the tree the user named: no link may lead out of it.
pub fn find_files(
    dir: &Path,
    root: &Path,
    wanted: &dyn Fn(&Path) -> bool,
    out: &mut Vec<Diagnostic>,
) -> Result<Vec<Found>, LoadError> {
    let mut walk = Walk { root, wanted, out };
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let unreadable = |source| LoadError::Unreadable {
            path: current.clone(),
            source,
        };
        for entry in fs::read_dir(&current).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let path = entry.path();
            // The entry itself, not what a link points at.
            let file_type = entry.file_type().map_err(unreadable)?;
            if file_type.is_dir() {
                pending.push(path);
            } else if file_type.is_symlink() {
                found.extend(walk.follow(path));
            } else if !(walk.wanted)(&path) {
                continue;
            } else if file_type.is_file() {
                found.push(Found::at(&path));
            } else {
                let msg = format!(
                    "{}, not a regular file: refused, not read",
                    kind(&file_type)
                );
                found.extend(walk.refuse_found(path, msg, true));
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

impl Walk<'_, '_> {
    /// The file a symbolic link leads to, if it may be read; refusals are reported, and a
    /// refused link with a wanted name is returned as refused.
    fn follow(&mut self, link: PathBuf) -> Option<Found> {
        let wanted = (self.wanted)(&link);
        let (target, meta) = match resolve(&link) {
            Ok(resolved) => resolved,
            Err(e) if is_loop(&e) => {
                let msg = format!("a symbolic link that loops ({e}): refused, not followed");
                return self.refuse_found(link, msg, wanted);
            }
            Err(e) if wanted => {
                let msg = format!("a symbolic link that cannot be followed ({e}): refused");
                return self.refuse_found(link, msg, wanted);
            }
            Err(_) => return None,
        };
        if !target.starts_with(self.root) {
            if !wanted && !meta.is_dir() {
                return None;
            }
            let msg = format!(
                "a symbolic link to a path outside {}: refused, not read",
                self.root.display()
            );
            return self.refuse_found(link, msg, wanted);
        }
        if meta.is_dir() {
            return self.refuse_found(link, LINKED_FOLDER.to_owned(), wanted);
        }
        if !wanted {
            return None;
        }
        if !meta.is_file() {
            let msg = format!(
                "a symbolic link to {}, not to a regular file: refused, not read",
                kind(&meta.file_type())
            );
            return self.refuse_found(link, msg, wanted);
        }
        Some(Found {
            path: link,
            real: Some(target),
        })
    }

    /// Reports `path` as refused; returns it as a refused file if its name is wanted.
    fn refuse_found(&mut self, path: PathBuf, message: String, wanted: bool) -> Option<Found> {
        self.refuse(&path, message);
        wanted.then_some(Found { path, real: None })
    }

    fn refuse(&mut self, path: &Path, message: String) {
        FileDiagnostics::new(Arc::from(path), self.out).error(Pos { line: 1, col: 1 }, message);
    }
}

/// A link's canonical target and what it is (looked at, never opened).
fn resolve(link: &Path) -> io::Result<(PathBuf, Metadata)> {
    let target = fs::canonicalize(link)?;
    let meta = fs::symlink_metadata(&target)?;
    Ok((target, meta))
}

/// True for "too many levels of symbolic links" (a loop).
fn is_loop(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        error.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn yaml(path: &Path) -> bool {
        path.extension().is_some_and(|e| e == "yaml")
    }

    /// Walks `root` (canonicalized) for `*.yaml`: what was found, relative, and the refusals.
    fn walk(root: &Path) -> (Vec<(String, String)>, Vec<String>) {
        let root = fs::canonicalize(root).expect("canonical");
        let mut out = Vec::new();
        let found = find_files(&root, &root, &yaml, &mut out).expect("walk");
        let rel = |p: &Path| p.strip_prefix(&root).unwrap_or(p).display().to_string();
        let found = found
            .iter()
            .map(|f| {
                let real = f.real.as_deref().map_or_else(|| "refused".to_owned(), rel);
                (rel(&f.path), real)
            })
            .collect();
        let mut refused: Vec<String> = out
            .iter()
            .map(|d| format!("{}: {}", rel(&d.file), d.message))
            .collect();
        refused.sort();
        (found, refused)
    }

    #[test]
    fn follows_file_links_inside_and_refuses_the_rest() {
        let outside = tempfile::tempdir().expect("temp dir");
        let secret = outside.path().join("credentials");
        fs::write(&secret, "aws_secret_access_key = hunter2\n").expect("write");
        let tree = tempfile::tempdir().expect("temp dir");
        let root = tree.path();
        fs::create_dir(root.join("a")).expect("mkdir");
        fs::write(root.join("a/real.yaml"), "x: 1\n").expect("write");
        symlink("real.yaml", root.join("a/inside.yaml")).expect("link");
        symlink(&secret, root.join("a/images.yaml")).expect("link");
        symlink(outside.path(), root.join("away")).expect("link");
        symlink("..", root.join("a/up")).expect("link");
        symlink("loop2.yaml", root.join("loop1.yaml")).expect("link");
        symlink("loop1.yaml", root.join("loop2.yaml")).expect("link");
        symlink("nothing", root.join("README")).expect("link");
        symlink(&secret, root.join("LICENSE")).expect("link");

        let (found, refused) = walk(root);
        let found: Vec<(&str, &str)> = found.iter().map(|(p, r)| (&**p, &**r)).collect();
        assert_eq!(
            found,
            [
                ("a/images.yaml", "refused"),
                ("a/inside.yaml", "a/real.yaml"),
                ("a/real.yaml", "a/real.yaml"),
                ("loop1.yaml", "refused"),
                ("loop2.yaml", "refused"),
            ]
        );
        let outside_root = fs::canonicalize(root).expect("canonical");
        let outside_msg = format!(
            "a symbolic link to a path outside {}: refused, not read",
            outside_root.display()
        );
        assert_eq!(
            refused,
            [
                format!("a/images.yaml: {outside_msg}"),
                "a/up: a symbolic link to a folder: not followed (manifests are read from real \
                 folders; put the folder here instead of a link)"
                    .to_owned(),
                format!("away: {outside_msg}"),
                "loop1.yaml: a symbolic link that loops (Too many levels of symbolic links (os \
                 error 40)): refused, not followed"
                    .to_owned(),
                "loop2.yaml: a symbolic link that loops (Too many levels of symbolic links (os \
                 error 40)): refused, not followed"
                    .to_owned(),
            ]
        );
        assert!(!refused.iter().any(|r| r.contains("hunter2")));
    }

    #[test]
    fn refuses_special_files_with_wanted_names() {
        let tree = tempfile::tempdir().expect("temp dir");
        for name in ["images.yaml", "other"] {
            let made = std::process::Command::new("mkfifo")
                .arg(tree.path().join(name))
                .status()
                .expect("mkfifo runs");
            assert!(made.success());
        }
        symlink("images.yaml", tree.path().join("to-fifo.yaml")).expect("link");
        let (found, refused) = walk(tree.path());
        let refused_files = [
            ("images.yaml".to_owned(), "refused".to_owned()),
            ("to-fifo.yaml".to_owned(), "refused".to_owned()),
        ];
        assert_eq!(found, refused_files);
        assert_eq!(
            refused,
            [
                "images.yaml: a FIFO (named pipe), not a regular file: refused, not read",
                "to-fifo.yaml: a symbolic link to a FIFO (named pipe), not to a regular file: \
                 refused, not read",
            ]
        );
    }
}
