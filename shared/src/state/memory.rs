//! An in-memory store with the same conditional semantics as the real ones, for unit tests of
//! the logic built on state.
//!
//! Every operation first yields to the scheduler once, as a request to a real store would:
//! tasks (and the ledger's property tests, which poll two workers by hand) interleave at each
//! store operation, not only where the code under test happens to sleep.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;

use super::{Object, StateError, Version};

/// A store living in this process only.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, (Bytes, u64)>>,
    next: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Bytes, u64)>> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next_version(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// `memory://`.
    pub fn url(&self) -> String {
        "memory://".to_owned()
    }

    /// See [`super::StateStore::get`].
    pub async fn get(&self, key: &str) -> Result<Option<Object>, StateError> {
        tokio::task::yield_now().await;
        Ok(self.lock().get(key).map(|(bytes, v)| Object {
            bytes: bytes.clone(),
            version: Version(v.to_string()),
        }))
    }

    /// See [`super::StateStore::create`].
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<Option<Version>, StateError> {
        tokio::task::yield_now().await;
        let mut objects = self.lock();
        if objects.contains_key(key) {
            return Ok(None);
        }
        let version = self.next_version();
        objects.insert(key.to_owned(), (bytes, version));
        Ok(Some(Version(version.to_string())))
    }

    /// See [`super::StateStore::update`].
    pub async fn update(
        &self,
        key: &str,
        bytes: Bytes,
        expected: &Version,
    ) -> Result<Option<Version>, StateError> {
        tokio::task::yield_now().await;
        let mut objects = self.lock();
        match objects.get(key) {
            Some((_, current)) if current.to_string() == expected.0 => {
                let version = self.next_version();
                objects.insert(key.to_owned(), (bytes, version));
                Ok(Some(Version(version.to_string())))
            }
            _ => Ok(None),
        }
    }

    /// See [`super::StateStore::list`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        tokio::task::yield_now().await;
        Ok(self
            .lock()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    /// See [`super::StateStore::delete`].
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        tokio::task::yield_now().await;
        self.lock().remove(key);
        Ok(())
    }
}
