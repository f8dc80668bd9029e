//! The manifests folder of a GitHub repository at one commit, through the Git database API,
//! fetching only what changed since the last push.
//!
//! A manifest repository may be far larger than its manifests (kubernetes/k8s.io holds a few MB
//! of manifests among much else), so a push does not download the whole repository:
//!
//! 1. `GET {api}/repos/{owner}/{name}/git/trees/{sha}?recursive=1`: every path of the commit
//!    with its blob's SHA-1 and size (one request; a few MB for the largest repositories).
//! 2. Each blob below the manifests folder is read from the blob cache in state
//!    (`sources/github/blobs/<sha>`), and only the blobs not cached are fetched,
//!    `GET {api}/repos/{owner}/{name}/git/blobs/{sha}` with GitHub's raw media type, checked
//!    against their SHA-1 (a blob's id is the hash of its content, so a cached blob can never be
//!    stale) and cached. A push that changes one file costs the tree and that file.
//!
//! Symbolic links and submodules are skipped (as the tarball's links are). The number of files
//! and their bytes are capped like an archive's ([`super::MAX_FILES`], [`super::MAX_BYTES`]),
//! and every path must stay below the fetched folder. When GitHub truncates the tree (over
//! 100,000 entries or 7 MB) or has no trees API for the repository (404), the caller falls back
//! to the tarball.

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use serde::Deserialize;

use super::github::{GITHUB_RETRY, GithubRepo, api_request, check_inputs, status_error};
use super::{
    Fetched, MAX_BYTES, MAX_FILES, SourceError, finish, safe_relative, subdir_path, temp_dir,
};
use crate::http::retry;
use crate::state::StateStore;

/// The most bytes of a tree answer read.
const MAX_TREE_BYTES: usize = 64 * 1024 * 1024;

/// Blobs fetched at once.
const PARALLEL_BLOBS: usize = 8;

/// What fetching through the trees API cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeFetch {
    /// Requests to GitHub (the tree, and each blob not cached).
    pub requests: usize,
    /// Bytes downloaded from GitHub (answer bodies).
    pub downloaded: u64,
    /// Blobs found in the cache.
    pub cached: usize,
}

/// How a trees-API fetch ended.
#[derive(Debug)]
pub enum TreeOutcome {
    /// The manifests folder, fetched.
    Fetched(Fetched, TreeFetch),
    /// The tree cannot be used (truncated, or no trees API): fetch the tarball instead.
    UseTarball(&'static str),
}

#[derive(Deserialize)]
struct Tree {
    #[serde(default)]
    tree: Vec<Entry>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct Entry {
    path: String,
    mode: String,
    #[serde(rename = "type")]
    kind: String,
    sha: String,
    #[serde(default)]
    size: u64,
}

/// Fetches the folder `subdir` of `repo` at commit `sha` through the trees and blobs API,
/// reading and filling the blob cache in `cache` (see the module's docs).
pub async fn github_tree(
    http: &reqwest::Client,
    repo: &GithubRepo<'_>,
    sha: &str,
    subdir: &str,
    cache: &StateStore,
) -> Result<TreeOutcome, SourceError> {
    let repository = repo.repository;
    check_inputs(repo, sha, subdir)?;
    let below = subdir_path(subdir)?;
    let base = format!("{}/repos/{repository}", repo.api_base.trim_end_matches('/'));
    let mut cost = TreeFetch::default();
    let tree_url = format!("{base}/git/trees/{sha}?recursive=1");
    let Some(body) = get(
        http,
        repo,
        &tree_url,
        "application/vnd.github+json",
        MAX_TREE_BYTES,
    )
    .await?
    else {
        return Ok(TreeOutcome::UseTarball(
            "no trees API for the repository (404)",
        ));
    };
    cost.requests += 1;
    cost.downloaded += body.len() as u64;
    let tree: Tree = serde_json::from_slice(&body).map_err(|e| SourceError::Malformed {
        origin: format!("{repository}@{sha}"),
        reason: format!("the tree is not GitHub's JSON: {e}"),
    })?;
    if tree.truncated {
        return Ok(TreeOutcome::UseTarball("GitHub truncated the tree"));
    }
    let prefix = below
        .as_ref()
        .map(|p| format!("{}/", p.to_string_lossy()))
        .unwrap_or_default();
    let wanted = select(&tree.tree, &prefix, &format!("{repository}@{sha}"))?;
    let dir = temp_dir()?;
    // Per file: its bytes, the bytes downloaded for it, and whether it came from the cache.
    let fetched: Vec<(u64, u64, bool)> = futures_util::stream::iter(wanted)
        .map(|entry| {
            let blob_url = format!("{base}/git/blobs/{}", entry.sha);
            let dest = dir
                .path()
                .join(safe_relative(&entry.path).unwrap_or_default());
            async move {
                let (bytes, downloaded) = blob(http, repo, cache, &blob_url, entry).await?;
                write(&dest, &bytes).await?;
                let size = bytes.len() as u64;
                Ok::<_, SourceError>((size, downloaded.unwrap_or(0), downloaded.is_none()))
            }
        })
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect()
        .await?;
    let files = fetched.len();
    for (_, downloaded, cached) in &fetched {
        if *cached {
            cost.cached += 1;
        } else {
            cost.requests += 1;
            cost.downloaded += downloaded;
        }
    }
    let bytes = fetched.iter().map(|(size, _, _)| size).sum();
    tracing::info!(
        repository,
        sha,
        files,
        cached = cost.cached,
        requests = cost.requests,
        downloaded = cost.downloaded,
        "manifests fetched through the trees API"
    );
    let origin = format!("{repository}@{sha}");
    finish(dir, &origin, subdir, files, bytes).map(|f| TreeOutcome::Fetched(f, cost))
}

/// The regular files below `prefix`, each checked (a path that stays below the folder, a blob
/// id that is a SHA-1), within the file and byte caps.
fn select<'t>(
    entries: &'t [Entry],
    prefix: &str,
    origin: &str,
) -> Result<Vec<&'t Entry>, SourceError> {
    let malformed = |reason: String| SourceError::Malformed {
        origin: origin.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut seen = BTreeSet::new();
    for entry in entries.iter().filter(|e| e.path.starts_with(prefix)) {
        // Folders are made as their files are written; links and submodules are skipped.
        if entry.kind != "blob" || entry.mode == "120000" {
            continue;
        }
        if safe_relative(&entry.path).is_none() || !seen.insert(entry.path.as_str()) {
            return Err(malformed(format!(
                "path {:?} is not a plain relative path",
                entry.path
            )));
        }
        if entry.sha.len() != 40 || !entry.sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed(format!("blob id {:?} is not a SHA-1", entry.sha)));
        }
        bytes += entry.size;
        out.push(entry);
        if out.len() > MAX_FILES || bytes > MAX_BYTES {
            return Err(malformed(format!(
                "more than {MAX_FILES} files or {MAX_BYTES} bytes below the manifests folder"
            )));
        }
    }
    Ok(out)
}

/// A blob's content: from the cache, or fetched (and cached); with the bytes downloaded (`None`
/// when cached).
async fn blob(
    http: &reqwest::Client,
    repo: &GithubRepo<'_>,
    cache: &StateStore,
    url: &str,
    entry: &Entry,
) -> Result<(Bytes, Option<u64>), SourceError> {
    let key = format!("sources/github/blobs/{}", entry.sha.to_ascii_lowercase());
    if let Some(object) = cache
        .get(&key)
        .await
        .map_err(|e| SourceError::Cache(Box::new(e)))?
        && git_blob_id(&object.bytes) == entry.sha.to_ascii_lowercase()
    {
        return Ok((object.bytes, None));
    }
    let limit = usize::try_from(entry.size)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let bytes = get(http, repo, url, "application/vnd.github.raw+json", limit)
        .await?
        .ok_or_else(|| SourceError::Malformed {
            origin: repo.repository.to_owned(),
            reason: format!("blob {} of the tree is not found", entry.sha),
        })?;
    if git_blob_id(&bytes) != entry.sha.to_ascii_lowercase() {
        return Err(SourceError::Malformed {
            origin: repo.repository.to_owned(),
            reason: format!("blob {} does not hash to its id", entry.sha),
        });
    }
    cache
        .create(&key, bytes.clone())
        .await
        .map_err(|e| SourceError::Cache(Box::new(e)))?;
    let downloaded = bytes.len() as u64;
    Ok((bytes, Some(downloaded)))
}

/// Git's id of a blob holding `content`: SHA-1 of `blob LEN\0CONTENT`, in hex.
pub fn git_blob_id(content: &[u8]) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(format!("blob {}\0", content.len()).as_bytes());
    context.update(content);
    hex::encode(context.finish())
}

/// `GET url` with GitHub's headers and `accept`, its body read up to `limit` bytes (more is an
/// error); `None` on 404.
async fn get(
    http: &reqwest::Client,
    repo: &GithubRepo<'_>,
    url: &str,
    accept: &'static str,
    limit: usize,
) -> Result<Option<Bytes>, SourceError> {
    let repository = repo.repository;
    let transport = |source: reqwest::Error| SourceError::Transport {
        url: url.to_owned(),
        source: source.without_url(),
    };
    let request = api_request(http, repo, url, accept)?;
    let mut response = retry::send(&GITHUB_RETRY, request)
        .await
        .map_err(transport)?;
    if response.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !response.status().is_success() {
        return Err(status_error(repository, url, response).await);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > limit {
            return Err(SourceError::Malformed {
                origin: repository.to_owned(),
                reason: format!("GET {url} answered more than {limit} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(body)))
}

/// Writes `bytes` to `path`, making its folders.
async fn write(path: &Path, bytes: &[u8]) -> Result<(), SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    tokio::fs::write(path, bytes).await.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_are_gits() {
        // `git hash-object` of an empty file and of "hello\n".
        assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        assert_eq!(
            git_blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    fn entry(path: &str, kind: &str, mode: &str) -> Entry {
        Entry {
            path: path.to_owned(),
            mode: mode.to_owned(),
            kind: kind.to_owned(),
            sha: "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391".to_owned(),
            size: 1,
        }
    }

    #[test]
    fn only_files_below_the_folder_are_taken() {
        let entries = [
            entry("README.md", "blob", "100644"),
            entry("registry.k8s.io", "tree", "040000"),
            entry("registry.k8s.io/images/a/images.yaml", "blob", "100644"),
            entry("registry.k8s.io/link", "blob", "120000"),
            entry("registry.k8s.io/module", "commit", "160000"),
        ];
        let taken = select(&entries, "registry.k8s.io/", "o/r@x").expect("valid");
        let paths: Vec<&str> = taken.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["registry.k8s.io/images/a/images.yaml"]);
        let hostile = [entry("registry.k8s.io/../x", "blob", "100644")];
        assert!(select(&hostile, "registry.k8s.io/", "o/r@x").is_err());
    }
}
