//! The one compare-and-set loop of the ledger: read an object, decide, write it back only if
//! nobody wrote it meanwhile, and try again (after a jittered pause) when somebody did.
//!
//! Bounded: after [`MAX_ATTEMPTS`] lost races it returns [`StateError::Contended`] (retryable:
//! the message that asked for the change is delivered again), never `Ok` without the change.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::records::{decode, encode};
use crate::state::{StateError, StateStore, Version};

/// Lost races before giving up. Two workers racing on one key lose alternately; twelve losses
/// in a row (with pauses growing to a second) mean the key is hot beyond what retrying helps.
pub const MAX_ATTEMPTS: u32 = 12;

/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// What a decision made of the current value.
pub enum Decision<T, K> {
    /// Write this value (created when there was none, replaced at the version read).
    Write(T),
    /// Write nothing; the call returns this.
    Keep(K),
}

/// What [`modify`] did.
#[derive(Debug)]
pub enum Modified<T, K> {
    /// Wrote this value, now at this version.
    Written(T, Version),
    /// Wrote nothing, as decided.
    Kept(K),
}

/// Reads `key` (a JSON record of kind `what`), lets `decide` choose from its current value
/// (`None` when absent), and writes the decision conditionally; repeats when another writer
/// got there first. `decide` may run several times and must not have other effects.
pub async fn modify<T, K>(
    store: &StateStore,
    key: &str,
    what: &'static str,
    mut decide: impl FnMut(Option<T>) -> Result<Decision<T, K>, StateError>,
) -> Result<Modified<T, K>, StateError>
where
    T: Serialize + DeserializeOwned,
{
    modify_bytes(store, key, |current| {
        let value = match current {
            None => None,
            Some(bytes) => Some(decode::<T>(store, key, what, bytes)?),
        };
        Ok(match decide(value)? {
            Decision::Write(value) => Decision::Write((encode(&value), value)),
            Decision::Keep(kept) => Decision::Keep(kept),
        })
    })
    .await
}

/// Writes `value` at `key` whatever is there (created, or replaced at the version read):
/// for records only one writer owns, which a retried attempt of that writer overwrites.
pub async fn overwrite<T: Serialize>(
    store: &StateStore,
    key: &str,
    value: &T,
) -> Result<Version, StateError> {
    let bytes = encode(value);
    let written = modify_bytes(store, key, |_| {
        Ok(Decision::<_, ()>::Write((bytes.clone(), ())))
    })
    .await?;
    match written {
        Modified::Written((), version) => Ok(version),
        Modified::Kept(()) => unreachable_kept(store, key),
    }
}

/// Writes the raw `bytes` at `key` whatever is there (for pointers that are not JSON).
pub async fn overwrite_bytes(
    store: &StateStore,
    key: &str,
    bytes: Bytes,
) -> Result<Version, StateError> {
    let written = modify_bytes(store, key, |_| {
        Ok(Decision::<_, ()>::Write((bytes.clone(), ())))
    })
    .await?;
    match written {
        Modified::Written((), version) => Ok(version),
        Modified::Kept(()) => unreachable_kept(store, key),
    }
}

/// [`overwrite`] never keeps; this names the store and key should that ever change.
fn unreachable_kept(store: &StateStore, key: &str) -> Result<Version, StateError> {
    Err(StateError::Remote {
        url: store.url(),
        operation: "PUT",
        key: key.to_owned(),
        reason: "an overwrite decided to write nothing".to_owned(),
    })
}

/// Like [`modify`], over raw bytes, with a decision that may itself read the store (it is
/// awaited on each attempt; it must not write). Returns what was kept, or `None` when written.
pub async fn modify_bytes_with<K>(
    store: &StateStore,
    key: &str,
    mut decide: impl AsyncFnMut(Option<&Bytes>) -> Result<Decision<Bytes, K>, StateError>,
) -> Result<Option<K>, StateError> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(pause(attempt)).await;
        }
        let current = store.get(key).await?;
        let bytes = match decide(current.as_ref().map(|o| &o.bytes)).await? {
            Decision::Keep(kept) => return Ok(Some(kept)),
            Decision::Write(bytes) => bytes,
        };
        let written = match &current {
            None => store.create(key, bytes).await?,
            Some(object) => store.update(key, bytes, &object.version).await?,
        };
        if written.is_some() {
            return Ok(None);
        }
    }
    Err(StateError::Contended {
        url: store.url(),
        key: key.to_owned(),
        attempts: MAX_ATTEMPTS,
    })
}

/// The loop itself, over raw bytes: `decide` returns the bytes to write with the value to
/// return, or what to return without writing.
async fn modify_bytes<T, K>(
    store: &StateStore,
    key: &str,
    mut decide: impl FnMut(Option<&Bytes>) -> Result<Decision<(Bytes, T), K>, StateError>,
) -> Result<Modified<T, K>, StateError> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(pause(attempt)).await;
        }
        let current = store.get(key).await?;
        let (bytes, value) = match decide(current.as_ref().map(|o| &o.bytes))? {
            Decision::Keep(kept) => return Ok(Modified::Kept(kept)),
            Decision::Write(write) => write,
        };
        let written = match &current {
            None => store.create(key, bytes).await?,
            Some(object) => store.update(key, bytes, &object.version).await?,
        };
        if let Some(version) = written {
            return Ok(Modified::Written(value, version));
        }
    }
    Err(StateError::Contended {
        url: store.url(),
        key: key.to_owned(),
        attempts: MAX_ATTEMPTS,
    })
}

/// A random pause before attempt `attempt` (≥ 1): up to 10 ms doubled per lost race, at most
/// [`MAX_PAUSE`] ("full jitter", so racing writers spread out instead of colliding again).
fn pause(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(10)
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_PAUSE);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[tokio::test]
    async fn creates_then_updates_and_keeps_when_told() {
        let store = StateStore::from(MemoryStore::default());
        let add = |n: u64| {
            move |current: Option<u64>| {
                Ok::<_, StateError>(Decision::<u64, ()>::Write(current.unwrap_or(0) + n))
            }
        };
        assert!(matches!(
            modify(&store, "k", "count", add(2)).await,
            Ok(Modified::Written(2, _))
        ));
        assert!(matches!(
            modify(&store, "k", "count", add(3)).await,
            Ok(Modified::Written(5, _))
        ));
        let kept = modify(&store, "k", "count", |c: Option<u64>| Ok(Decision::Keep(c))).await;
        assert!(matches!(kept, Ok(Modified::Kept(Some(5)))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_increments_are_all_counted() {
        let store = std::sync::Arc::new(StateStore::from(MemoryStore::default()));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = std::sync::Arc::clone(&store);
                tokio::spawn(async move {
                    modify(&store, "k", "count", |c: Option<u64>| {
                        Ok(Decision::<u64, ()>::Write(c.unwrap_or(0) + 1))
                    })
                    .await
                    .map(|_| ())
                })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await, Ok(Ok(()))));
        }
        let read = store.get("k").await.ok().flatten().map(|o| o.bytes);
        assert_eq!(read.as_deref(), Some(&b"8"[..]));
    }

    #[tokio::test]
    async fn a_corrupt_record_is_reported_not_replaced() {
        let store = StateStore::from(MemoryStore::default());
        store.create("k", Bytes::from_static(b"{oops")).await.ok();
        let result = modify(&store, "k", "count", |c: Option<u64>| {
            Ok(Decision::<u64, ()>::Write(c.unwrap_or(0)))
        })
        .await;
        assert!(matches!(result, Err(StateError::Corrupt { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_that_always_changes_is_an_error_not_a_silent_success() {
        let dir = tempfile::tempdir().expect("a folder");
        let root = dir.path().to_string_lossy().into_owned();
        let store = StateStore::open(&root).await.expect("a file store");
        let mut decisions: u32 = 0;
        let result = modify(&store, "k", "count", |c: Option<u64>| {
            decisions += 1;
            // Another writer changes the key between this read and the write.
            std::fs::write(dir.path().join("k"), format!("{}", 1000 + decisions)).map_err(|e| {
                StateError::Io {
                    path: "k".to_owned(),
                    source: e,
                }
            })?;
            Ok(Decision::<u64, ()>::Write(c.unwrap_or(0) + 1))
        })
        .await;
        assert!(
            matches!(
                result,
                Err(StateError::Contended {
                    attempts: MAX_ATTEMPTS,
                    ..
                })
            ),
            "{result:?}"
        );
        assert_eq!(decisions, MAX_ATTEMPTS);
    }

    #[test]
    fn pauses_grow_but_stay_bounded() {
        for attempt in 1..40 {
            assert!(pause(attempt) <= MAX_PAUSE);
        }
    }
}
