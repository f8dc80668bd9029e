//! Manifests from object storage: every object below a state-style URL, keys as relative paths.
//!
//! The URL is opened as a [`StateStore`] (`file:///path` or a plain path, `s3://bucket/prefix`,
//! `gs://bucket/prefix`, configured as for state), listed, and each object read (a few at a
//! time) and written to the same relative path in a temporary folder. Keys ending in `/`
//! (folder markers some tools create) are skipped; keys that are not plain relative paths
//! (`..`, empty or `.` segments) are refused. A local folder that does not exist is reported
//! as such rather than created, as opening it as a state store would.

use std::path::Path;

use futures_util::StreamExt as _;

use super::{Fetched, MAX_BYTES, MAX_FILES, SourceError, finish, safe_relative, subdir_path};
use crate::state::StateStore;

/// Objects read at the same time.
const CONCURRENT_READS: usize = 8;

/// Copies every object under a state-style URL (`file:///path`, `s3://bucket/prefix`,
/// `gs://bucket/prefix`) into a folder, keys as relative paths.
///
/// `subdir` (`""` or `"."` for everything) must be a folder of what was copied; the
/// [`Fetched::root`] is that folder. An empty prefix is an error ([`SourceError::NoObjects`]).
pub async fn object_prefix(url: &str, subdir: &str) -> Result<Fetched, SourceError> {
    subdir_path(subdir)?;
    if let Some(path) = local_path(url)
        && !Path::new(path).is_dir()
    {
        return Err(SourceError::NoObjects {
            url: url.to_owned(),
        });
    }
    let store = StateStore::open(url)
        .await
        .map_err(|source| SourceError::Store {
            url: url.to_owned(),
            source,
        })?;
    let url = store.url();
    let store_error = |source| SourceError::Store {
        url: store.url(),
        source,
    };
    let keys: Vec<String> = store
        .list("")
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|key| !key.is_empty() && !key.ends_with('/'))
        .collect();
    if keys.is_empty() {
        return Err(SourceError::NoObjects { url });
    }
    if keys.len() > MAX_FILES {
        return Err(SourceError::TooManyEntries {
            origin: url,
            limit: MAX_FILES,
        });
    }
    let mut targets = Vec::with_capacity(keys.len());
    for key in keys {
        match safe_relative(&key) {
            Some(relative) => targets.push((key, relative)),
            None => return Err(SourceError::UnsafeKey { url, key }),
        }
    }

    let dir = super::temp_dir()?;
    let tree = dir.path().to_path_buf();
    let mut reads = futures_util::stream::iter(targets)
        .map(|(key, relative)| {
            let store = &store;
            async move {
                let object = store.get(&key).await;
                (key, relative, object)
            }
        })
        .buffer_unordered(CONCURRENT_READS);
    let mut files = 0usize;
    let mut bytes = 0u64;
    while let Some((key, relative, object)) = reads.next().await {
        let Some(object) = object.map_err(store_error)? else {
            return Err(SourceError::Vanished { url, key });
        };
        bytes += object.bytes.len() as u64;
        if bytes > MAX_BYTES {
            return Err(SourceError::TooLarge {
                origin: url,
                entry: Some(key),
                limit: MAX_BYTES,
            });
        }
        let target = tree.join(relative);
        write(&target, &object.bytes).await?;
        files += 1;
    }
    drop(reads);
    finish(dir, &url, subdir, files, bytes)
}

/// The folder of a URL that [`StateStore::open`] takes as a local path.
fn local_path(url: &str) -> Option<&str> {
    let path = url.strip_prefix("file://").unwrap_or(url);
    (!path.contains("://") && !url.starts_with("memory:")).then_some(path)
}

/// Writes `bytes` to `target`, creating its folders (on tokio's blocking threads).
async fn write(target: &Path, bytes: &[u8]) -> Result<(), SourceError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io_error(parent))?;
    }
    tokio::fs::write(target, bytes)
        .await
        .map_err(io_error(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths() {
        assert_eq!(local_path("file:///tmp/x"), Some("/tmp/x"));
        assert_eq!(local_path("relative/dir"), Some("relative/dir"));
        assert_eq!(local_path("s3://b/p"), None);
        assert_eq!(local_path("gs://b/p"), None);
        assert_eq!(local_path("memory://"), None);
    }

    #[tokio::test]
    async fn copies_a_folder_and_refuses_missing_ones() {
        let source = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(source.path().join("a/b")).expect("folders");
        std::fs::write(source.path().join("a/b/c.yaml"), "x: 1\n").expect("file");
        std::fs::write(source.path().join("top.yaml"), "y: 2\n").expect("file");
        let url = format!("file://{}", source.path().display());
        let fetched = object_prefix(&url, "a").await.expect("fetched");
        assert_eq!((fetched.files, fetched.bytes), (2, 10));
        assert_eq!(fetched.root(), fetched.tree().join("a"));
        assert_eq!(
            std::fs::read_to_string(fetched.root().join("b/c.yaml")).expect("copied"),
            "x: 1\n"
        );

        let missing = source.path().join("nope");
        let error = object_prefix(&missing.display().to_string(), "")
            .await
            .expect_err("missing folder");
        assert!(matches!(error, SourceError::NoObjects { .. }), "{error:?}");
        assert!(!missing.exists(), "a missing folder is not created");
        let error = object_prefix(&url, "zzz")
            .await
            .expect_err("missing subdir");
        assert!(error.to_string().contains("`zzz`"), "{error}");
    }
}
