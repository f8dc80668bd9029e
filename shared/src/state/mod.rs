//! Promotion state in object storage: one small key-value interface with versions and
//! conditional writes, over a local directory (the embedded default), S3, GCS, or memory.
//!
//! The functions are stateless; everything they must remember (runs, units, leases, the
//! desired state of production) is a JSON object here. Writes that must not race use the
//! store's own conditional writes: S3 `If-None-Match: *` / `If-Match: ETAG`, GCS
//! `ifGenerationMatch`, a lock file for the local directory. [`Backend`] is an enum rather
//! than a trait object: async methods in traits are not object-safe without boxing every call,
//! and the set of backends is closed.

pub mod claim;
mod error;
mod file;
mod gcs;
pub mod ledger;
mod memory;
pub mod records;
mod s3;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

pub use error::StateError;
pub use file::FileStore;
pub use gcs::GcsStore;
pub use memory::MemoryStore;
pub use s3::S3Store;

/// The version of a stored object, as its backend names it (S3 ETag, GCS generation, a content
/// hash for the local directory and memory). Opaque: only compared and sent back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// An object and the version it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// The content.
    pub bytes: Bytes,
    /// The version, for a later [`StateStore::update`].
    pub version: Version,
}

/// The backend a [`StateStore`] uses.
pub enum Backend {
    /// In this process only (unit tests).
    Memory(MemoryStore),
    /// A local directory: `file:///path` or a plain path.
    File(FileStore),
    /// S3 or an S3-compatible store: `s3://bucket/prefix` (boxed: the SDK client is large).
    S3(Box<S3Store>),
    /// Google Cloud Storage: `gs://bucket/prefix`.
    Gcs(Box<GcsStore>),
}

/// Where state lives: a backend, and a count of the requests made to it.
pub struct StateStore {
    backend: Backend,
    requests: AtomicU64,
}

impl From<Backend> for StateStore {
    fn from(backend: Backend) -> Self {
        StateStore {
            backend,
            requests: AtomicU64::new(0),
        }
    }
}

impl From<MemoryStore> for StateStore {
    fn from(store: MemoryStore) -> Self {
        Backend::Memory(store).into()
    }
}

impl From<FileStore> for StateStore {
    fn from(store: FileStore) -> Self {
        Backend::File(store).into()
    }
}

impl From<S3Store> for StateStore {
    fn from(store: S3Store) -> Self {
        Backend::S3(Box::new(store)).into()
    }
}

impl From<GcsStore> for StateStore {
    fn from(store: GcsStore) -> Self {
        Backend::Gcs(Box::new(store)).into()
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match &$self.backend {
            Backend::Memory($store) => $call,
            Backend::File($store) => $call,
            Backend::S3($store) => $call,
            Backend::Gcs($store) => $call,
        }
    };
}

impl StateStore {
    /// Opens the store a URL names: `memory://`, `file:///path` or a plain path, `s3://bucket[/prefix]`
    /// (configured the AWS way: `AWS_ENDPOINT_URL[_S3]`, region, credentials chain),
    /// `gs://bucket[/prefix]` (honouring `STORAGE_EMULATOR_HOST`, else Google credentials).
    pub async fn open(url: &str) -> Result<Self, StateError> {
        if url == "memory://" || url == "memory:" {
            return Ok(MemoryStore::default().into());
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return Ok(S3Store::open(rest).await?.into());
        }
        if let Some(rest) = url.strip_prefix("gs://") {
            return Ok(GcsStore::open(rest).await?.into());
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.contains("://") {
            return Err(StateError::BadUrl {
                url: url.to_owned(),
                reason: "use a path, file:///path, s3://bucket/prefix or gs://bucket/prefix"
                    .to_owned(),
            });
        }
        Ok(FileStore::open(path)?.into())
    }

    /// The store's URL, for messages.
    pub fn url(&self) -> String {
        dispatch!(self, s => s.url())
    }

    /// Requests made to the store so far (one per get, create, update, list page or delete).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads `key`; `None` when absent.
    pub async fn get(&self, key: &str) -> Result<Option<Object>, StateError> {
        self.count();
        dispatch!(self, s => s.get(key).await)
    }

    /// Writes `key` only if it does not exist; `None` when it already did (someone else won).
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<Option<Version>, StateError> {
        self.count();
        dispatch!(self, s => s.create(key, bytes).await)
    }

    /// Replaces `key` only if it is still at `expected`; `None` when it changed (or vanished).
    pub async fn update(
        &self,
        key: &str,
        bytes: Bytes,
        expected: &Version,
    ) -> Result<Option<Version>, StateError> {
        self.count();
        dispatch!(self, s => s.update(key, bytes, expected).await)
    }

    /// Every key starting with `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        self.count();
        dispatch!(self, s => s.list(prefix).await)
    }

    /// Deletes `key`; deleting an absent key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        self.count();
        dispatch!(self, s => s.delete(key).await)
    }
}
