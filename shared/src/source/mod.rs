//! Where manifests come from: fetching a manifest repository (or a copy of one) into a local
//! temporary folder that [`crate::manifest::load`] then reads.
//!
//! Three sources:
//!
//! - [`github_tree`]: the manifests folder at one commit, through GitHub's trees and blobs API,
//!   fetching only the blobs not in the blob cache in state (a push costs the tree and the files
//!   it changed). The validate-manifest function uses it on a push webhook;
//! - [`github_tarball`]: the repository at one commit, as the tarball GitHub (or GitHub
//!   Enterprise) serves at `GET {api}/repos/{owner}/{name}/tarball/{sha}`: where the tree is
//!   truncated or there is no trees API.
//! - [`object_prefix`]: every object below a state-style URL (`file:///path`,
//!   `s3://bucket/prefix`, `gs://bucket/prefix`), keys taken as relative paths. On-call uses it
//!   to validate manifests put in object storage by hand.
//!
//! Both fill a [`Fetched`]: a temporary folder deleted on drop, and the folder below it that
//! the caller asked for (`subdir`). Nothing fetched can leave that temporary folder: archive
//! entries and object keys that are absolute or hold `..` are refused, archive links are
//! skipped with a debug log (a manifest repository has no use for them), and the size and number of files are capped ([`MAX_BYTES`],
//! [`MAX_FILES`]) so that a hostile source cannot fill the disk, as are an archive's headers
//! ([`MAX_HEADER_BYTES`]) so that it cannot fill memory. Errors caused by what was fetched (a
//! hostile or broken archive) say so: [`SourceError::is_client_error`].

mod error;
mod extract;
mod github;
mod github_tree;
mod objects;
pub mod pull_request;

use std::path::{Component, Path, PathBuf};

use tempfile::TempDir;

pub use error::SourceError;
pub use github::{GITHUB_RETRY, GithubRepo, github_tarball};
pub use github_tree::{TreeFetch, TreeOutcome, git_blob_id, github_tree};
pub use objects::object_prefix;

/// The most bytes of file content one fetch may write.
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The most archive entries (files, folders, skipped links) or objects one fetch may hold.
pub const MAX_FILES: usize = 100_000;

/// The most bytes of an archive read between two entries: their headers, a GNU long name or
/// link, PAX records, and the unread content of the previous entry (a folder, a link).
///
/// A long path is a few hundred bytes and GitHub's PAX records are smaller; 64 KiB is far
/// beyond any real path (Linux allows 4 KiB), and bounds what is buffered for one entry.
pub const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// Manifests fetched into a temporary folder (deleted on drop).
#[derive(Debug)]
pub struct Fetched {
    /// The temporary folder holding the whole fetched tree; removed when dropped.
    dir: TempDir,
    /// The folder to read: the tree joined with the requested `subdir`.
    root: PathBuf,
    /// Regular files written (in the whole tree, not only below `subdir`).
    pub files: usize,
    /// Bytes of content written (in the whole tree).
    pub bytes: u64,
}

impl Fetched {
    /// The folder to give [`crate::manifest::load`]: the fetched tree joined with `subdir`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The whole fetched tree (the temporary folder), whatever `subdir` was.
    pub fn tree(&self) -> &Path {
        self.dir.path()
    }
}

/// A new empty temporary folder for one fetch.
fn temp_dir() -> Result<TempDir, SourceError> {
    tempfile::Builder::new()
        .prefix("promoter-manifests-")
        .tempdir()
        .map_err(|source| SourceError::Io {
            path: std::env::temp_dir(),
            source,
        })
}

/// The relative path `text` names, if it is one that stays below the folder it is joined to:
/// `/`-separated, no empty, `.` or `..` segment, not absolute, no NUL.
fn safe_relative(text: &str) -> Option<PathBuf> {
    if text.is_empty() || text.contains('\0') {
        return None;
    }
    let mut path = PathBuf::new();
    for segment in text.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return None;
        }
        path.push(segment);
    }
    path.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(path)
}

/// Checks `subdir` and finishes a fetch of `files` files and `bytes` bytes into `dir`:
/// `""` or `"."` is the whole tree, anything else must be a folder of it.
fn finish(
    dir: TempDir,
    origin: &str,
    subdir: &str,
    files: usize,
    bytes: u64,
) -> Result<Fetched, SourceError> {
    let root = match subdir_path(subdir)? {
        None => dir.path().to_path_buf(),
        Some(relative) => dir.path().join(relative),
    };
    if !root.is_dir() {
        return Err(SourceError::MissingSubdir {
            origin: origin.to_owned(),
            subdir: subdir.to_owned(),
        });
    }
    tracing::debug!(origin, subdir, files, bytes, "fetched manifests");
    Ok(Fetched {
        dir,
        root,
        files,
        bytes,
    })
}

/// `subdir` as a relative path (`None` for the whole tree), refusing ones that would leave it.
fn subdir_path(subdir: &str) -> Result<Option<PathBuf>, SourceError> {
    let trimmed = subdir.trim_end_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if trimmed.is_empty() || trimmed == "." {
        return Ok(None);
    }
    safe_relative(trimmed)
        .map(Some)
        .ok_or_else(|| SourceError::InvalidSubdir {
            subdir: subdir.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(safe_relative("a/b.yaml"), Some(PathBuf::from("a/b.yaml")));
        for bad in [
            "", "/a", "a/../b", "..", "a/./b", "./a", "a//b", "a/", "a\0b",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn subdirs() {
        for whole in ["", ".", "./", "/"] {
            assert_eq!(subdir_path(whole).ok().flatten(), None, "{whole:?}");
        }
        assert_eq!(
            subdir_path("./k8s.gcr.io/").ok().flatten(),
            Some(PathBuf::from("k8s.gcr.io"))
        );
        for bad in ["../x", "/etc", "a/../../b"] {
            assert!(
                matches!(subdir_path(bad), Err(SourceError::InvalidSubdir { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn missing_subdir_is_named() {
        let dir = temp_dir().expect("temp dir");
        let error = finish(dir, "somewhere", "nope", 0, 0).expect_err("missing");
        assert!(error.to_string().contains("`nope`"), "{error}");
        assert!(!error.is_retryable());
    }
}
