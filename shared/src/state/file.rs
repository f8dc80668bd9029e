//! The embedded default: state in a local directory (`.promoter/` unless told otherwise).
//!
//! Keys are relative paths below the root. Writes go to a temporary file renamed into place, so
//! a reader never sees half a record, even after a crash. Conditional writes hold an exclusive
//! lock on `ROOT/.lock` (`flock`, released by the kernel if the process dies), so two processes
//! on one machine cannot both win. Versions are the sha256 of the content: a write of
//! identical bytes keeps the version, which is harmless for compare-and-swap on records that
//! carry their own counters and timestamps.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use super::{Object, StateError, Version};
use crate::files::FileError;
use crate::reference::Digest;

/// The largest record read: far above any record the promoter writes (a Kubernetes-sized
/// desired index is tens of MiB), and a bound when something else sits at a key.
pub const MAX_RECORD_BYTES: u64 = 256 << 20;

/// A state store in a local directory.
pub struct FileStore {
    root: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl FileStore {
    /// Opens (creating if needed) the directory at `path`.
    pub fn open(path: &str) -> Result<Self, StateError> {
        let root = PathBuf::from(path);
        fs::create_dir_all(&root).map_err(io_error(&root))?;
        Ok(FileStore { root })
    }

    /// `file:///ABSOLUTE/PATH`.
    pub fn url(&self) -> String {
        let absolute = fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        format!("file://{}", absolute.display())
    }

    /// The file of `key`, refusing keys that would leave the root.
    fn path(&self, key: &str) -> Result<PathBuf, StateError> {
        let relative = Path::new(key);
        let safe = !key.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
            && !key.ends_with('/');
        if !safe {
            return Err(StateError::BadUrl {
                url: key.to_owned(),
                reason: "not a valid state key".to_owned(),
            });
        }
        Ok(self.root.join(relative))
    }

    /// Runs `f` holding the store's exclusive lock (blocking; called from `spawn_blocking`).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, StateError>) -> Result<T, StateError> {
        let lock_path = self.root.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        lock.lock().map_err(io_error(&lock_path))?;
        let result = f();
        // Closing the file releases the lock too; unlock explicitly to say so.
        let _ = lock.unlock();
        result
    }

    fn read(path: &Path) -> Result<Option<Object>, StateError> {
        let bytes = match crate::files::read_regular(path, MAX_RECORD_BYTES) {
            Ok(bytes) => bytes,
            Err(FileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(FileError::Io(e)) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(io_error(path)(std::io::Error::other(
                    "a symlink, not a record",
                )));
            }
            Err(FileError::Io(e)) => return Err(io_error(path)(e)),
            Err(refused) => {
                return Err(io_error(path)(std::io::Error::other(format!(
                    "{refused}: not a record the promoter wrote"
                ))));
            }
        };
        let version = Version(Digest::of(&bytes).to_string());
        Ok(Some(Object {
            bytes: Bytes::from(bytes),
            version,
        }))
    }

    fn write(path: &Path, bytes: &[u8]) -> Result<Version, StateError> {
        let parent = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io_error(parent))?;
        let temporary = parent.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("record"),
            std::process::id()
        ));
        let mut file = File::create(&temporary).map_err(io_error(&temporary))?;
        file.write_all(bytes).map_err(io_error(&temporary))?;
        file.sync_all().map_err(io_error(&temporary))?;
        fs::rename(&temporary, path).map_err(io_error(path))?;
        Ok(Version(Digest::of(bytes).to_string()))
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        tokio::task::spawn_blocking(f).await.unwrap_or_else(|join| {
            Err(StateError::Io {
                path: "(state task)".to_owned(),
                source: std::io::Error::other(join.to_string()),
            })
        })
    }

    /// See [`super::StateStore::get`].
    pub async fn get(&self, key: &str) -> Result<Option<Object>, StateError> {
        let path = self.path(key)?;
        Self::blocking(move || Self::read(&path)).await
    }

    /// See [`super::StateStore::create`].
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<Option<Version>, StateError> {
        let path = self.path(key)?;
        let store = FileStore {
            root: self.root.clone(),
        };
        Self::blocking(move || {
            store.locked(|| match Self::read(&path)? {
                Some(_) => Ok(None),
                None => Self::write(&path, &bytes).map(Some),
            })
        })
        .await
    }

    /// See [`super::StateStore::update`].
    pub async fn update(
        &self,
        key: &str,
        bytes: Bytes,
        expected: &Version,
    ) -> Result<Option<Version>, StateError> {
        let path = self.path(key)?;
        let store = FileStore {
            root: self.root.clone(),
        };
        let expected = expected.clone();
        Self::blocking(move || {
            store.locked(|| match Self::read(&path)? {
                Some(current) if current.version == expected => {
                    Self::write(&path, &bytes).map(Some)
                }
                _ => Ok(None),
            })
        })
        .await
    }

    /// See [`super::StateStore::list`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        Self::blocking(move || {
            // Walk only the deepest folder the prefix names.
            let folder = match prefix.rfind('/') {
                Some(i) => root.join(&prefix[..i]),
                None => root.clone(),
            };
            let mut keys = Vec::new();
            let mut pending = vec![folder];
            while let Some(dir) = pending.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error(&dir)(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(io_error(&dir))?;
                    let path = entry.path();
                    let hidden = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'));
                    if hidden {
                        continue;
                    }
                    // The entry itself, symlinks not followed: folders are walked, regular
                    // files listed, anything else (a symlink, a FIFO, a device) left out.
                    let kind = entry.file_type().map_err(io_error(&path))?;
                    if kind.is_dir() {
                        pending.push(path);
                    } else if !kind.is_file() {
                        tracing::warn!(path = %path.display(), "not a regular file: left out of the state listing");
                    } else if let Ok(relative) = path.strip_prefix(&root) {
                        let key = relative.to_string_lossy().replace('\\', "/");
                        if key.starts_with(&prefix) {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    /// See [`super::StateStore::delete`].
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        let path = self.path(key)?;
        Self::blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path)(e)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = FileStore::open(&dir.path().to_string_lossy()).expect("a store");
        (dir, store)
    }

    fn make_fifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
    }

    /// Fails the test instead of hanging it.
    async fn promptly<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(30), future)
            .await
            .expect("answered without waiting on a special file")
    }

    #[tokio::test]
    async fn special_files_and_symlinks_at_a_key_are_refused_not_followed() {
        let (dir, store) = store();
        std::fs::create_dir_all(dir.path().join("runs/r")).expect("mkdir");
        make_fifo(&dir.path().join("runs/r/run.json"));
        let error = promptly(store.get("runs/r/run.json"))
            .await
            .expect_err("a FIFO is not a record");
        assert!(
            crate::error_chain::error_chain(&error).contains("runs/r/run.json"),
            "{error}"
        );

        let secret = dir.path().join("outside-secret");
        std::fs::write(&secret, "token").expect("write");
        std::os::unix::fs::symlink(&secret, dir.path().join("runs/r/plan.json")).expect("link");
        let error = promptly(store.get("runs/r/plan.json"))
            .await
            .expect_err("a symlink is not followed");
        assert!(
            crate::error_chain::error_chain(&error).contains("symlink"),
            "{error}"
        );

        std::os::unix::fs::symlink("/dev/zero", dir.path().join("runs/r/zero.json")).expect("link");
        promptly(store.get("runs/r/zero.json"))
            .await
            .expect_err("/dev/zero is not read");
    }

    #[tokio::test]
    async fn an_oversized_record_is_refused() {
        let (dir, store) = store();
        let file = std::fs::File::create(dir.path().join("big.json")).expect("create");
        file.set_len(MAX_RECORD_BYTES + 1).expect("a sparse file");
        let error = promptly(store.get("big.json"))
            .await
            .expect_err("too large");
        assert!(
            crate::error_chain::error_chain(&error).contains("larger than"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn listing_leaves_out_symlinks_loops_and_special_files() {
        let (dir, store) = store();
        store
            .create("runs/r/run.json", Bytes::from_static(b"{}"))
            .await
            .expect("create");
        std::os::unix::fs::symlink(dir.path().join("runs"), dir.path().join("runs/r/loop"))
            .expect("a loop");
        make_fifo(&dir.path().join("runs/r/fifo.json"));
        let keys = promptly(store.list("runs/")).await.expect("a listing");
        assert_eq!(keys, ["runs/r/run.json"]);
    }
}
