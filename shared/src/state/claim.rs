//! Claims: work done once by one handler, taken over when its handler died. Used for webhook
//! deliveries (a push promoted once per delivery, a delivery whose handler crashed taken over by
//! GitHub's redelivery instead of being answered "duplicate") and for notifications (a notice
//! sent to a sink once, even when two workers hold the same message).
//!
//! A claim is an object `{claimed_at, done}`. It is created before the work; marked done after
//! it; deleted when the work fails (so that a redelivery or a retry tries again); and a claim
//! not done and older than the claim timeout (longer than a handler may run) belonged to a
//! handler that crashed or timed out: it is taken over with a conditional write, so only one
//! of several redeliveries takes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{StateError, StateStore, Version};

/// A claim older than this, not done, is taken over: longer than validate-manifest (120 s in
/// `infra/aws/template.yaml`) or one notification (60 s) may take.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(180);

/// What [`claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The work is this handler's (new, or taken over from a dead handler).
    Taken(Version),
    /// Another handler has finished it, or is working on it now.
    Handled,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    claimed_at: u64,
    #[serde(default)]
    done: bool,
}

/// `text` as one segment of a key: itself when it is short and plain (`[A-Za-z0-9-]`), else
/// `sha256-<hex>` of it, so that any header value makes a valid key.
pub fn segment(text: &str) -> String {
    let plain = !text.is_empty()
        && text.len() <= 64
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if plain {
        text.to_owned()
    } else {
        format!(
            "sha256-{}",
            crate::reference::Digest::of(text.as_bytes()).hex()
        )
    }
}

/// `deliveries/<id>/<revision>`: a GitHub delivery of a push. The revision is part of the key,
/// so an id reused for other content is handled, not skipped.
pub fn delivery_key(delivery: &str, revision: &str) -> String {
    format!("deliveries/{}/{}", segment(delivery), segment(revision))
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn encode(now: SystemTime, done: bool) -> Bytes {
    let record = Record {
        claimed_at: seconds(now),
        done,
    };
    Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
}

/// Claims the work named by `key` at `now`.
pub async fn claim(store: &StateStore, key: &str, now: SystemTime) -> Result<Claim, StateError> {
    if let Some(version) = store.create(key, encode(now, false)).await? {
        return Ok(Claim::Taken(version));
    }
    let Some(found) = store.get(key).await? else {
        // Released between the two reads: a retry of the failed work may claim it.
        return Ok(match store.create(key, encode(now, false)).await? {
            Some(version) => Claim::Taken(version),
            None => Claim::Handled,
        });
    };
    let stale = match serde_json::from_slice::<Record>(&found.bytes) {
        Ok(record) => !record.done && seconds(now) > record.claimed_at + CLAIM_TIMEOUT.as_secs(),
        // Not a claim this version writes: leave it be.
        Err(_) => false,
    };
    if !stale {
        return Ok(Claim::Handled);
    }
    tracing::warn!(key, "taking over work whose handler did not finish");
    Ok(
        match store
            .update(key, encode(now, false), &found.version)
            .await?
        {
            Some(version) => Claim::Taken(version),
            None => Claim::Handled,
        },
    )
}

/// Marks the claimed work done: later claims find it [`Claim::Handled`].
pub async fn finish(store: &StateStore, key: &str, claimed: &Version) -> Result<(), StateError> {
    let done = encode(SystemTime::now(), true);
    if store.update(key, done, claimed).await?.is_none() {
        // Taken over meanwhile (this handler was slower than the claim timeout): the handler
        // that took it over marks it.
        tracing::warn!(key, "the work was taken over before it was marked done");
    }
    Ok(())
}

/// Releases the claim after a failure, so that a redelivery or a retry tries again.
pub async fn release(store: &StateStore, key: &str) -> Result<(), StateError> {
    store.delete(key).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> StateStore {
        StateStore::from(super::super::MemoryStore::default())
    }

    const AFTER: &str = "0123456789abcdef0123456789abcdef01234567";

    fn k(id: &str) -> String {
        delivery_key(id, AFTER)
    }

    #[tokio::test]
    async fn a_delivery_is_handled_once() {
        let store = store();
        let now = SystemTime::now();
        let Claim::Taken(version) = claim(&store, &k("d-1"), now).await.expect("claim") else {
            panic!("the first claim is taken");
        };
        assert_eq!(
            claim(&store, &k("d-1"), now).await.expect("claim"),
            Claim::Handled,
            "in progress"
        );
        finish(&store, &k("d-1"), &version).await.expect("finish");
        let much_later = now + CLAIM_TIMEOUT * 10;
        assert_eq!(
            claim(&store, &k("d-1"), much_later).await.expect("claim"),
            Claim::Handled,
            "done stays done"
        );
    }

    #[tokio::test]
    async fn a_dead_handlers_claim_is_taken_over_once() {
        let store = store();
        let then = SystemTime::now();
        assert!(matches!(
            claim(&store, &k("d-2"), then).await.expect("claim"),
            Claim::Taken(_)
        ));
        // The handler died without finishing or releasing.
        let soon = then + CLAIM_TIMEOUT / 2;
        assert_eq!(
            claim(&store, &k("d-2"), soon).await.expect("claim"),
            Claim::Handled
        );
        let later = then + CLAIM_TIMEOUT + Duration::from_secs(5);
        assert!(matches!(
            claim(&store, &k("d-2"), later).await.expect("claim"),
            Claim::Taken(_)
        ));
        assert_eq!(
            claim(&store, &k("d-2"), later).await.expect("claim"),
            Claim::Handled,
            "taken over once"
        );
    }

    #[tokio::test]
    async fn a_released_claim_is_taken_again() {
        let store = store();
        let now = SystemTime::now();
        assert!(matches!(
            claim(&store, &k("d-3"), now).await.expect("claim"),
            Claim::Taken(_)
        ));
        release(&store, &k("d-3")).await.expect("release");
        assert!(matches!(
            claim(&store, &k("d-3"), now).await.expect("claim"),
            Claim::Taken(_)
        ));
    }

    #[test]
    fn any_delivery_id_makes_a_valid_key_and_the_revision_is_part_of_it() {
        assert_eq!(
            delivery_key("72d3162e-cc78-11e3-81ab-4c9367dc0958", AFTER),
            format!("deliveries/72d3162e-cc78-11e3-81ab-4c9367dc0958/{AFTER}")
        );
        for odd in ["", "../../etc", "a b", "é", &"x".repeat(1000)] {
            let key = delivery_key(odd, AFTER);
            let id = key
                .strip_prefix("deliveries/")
                .and_then(|rest| rest.split('/').next())
                .expect("an id segment");
            assert!(id.starts_with("sha256-") && id.len() == 71, "{key}");
        }
        assert_ne!(
            delivery_key("d", AFTER),
            delivery_key("d", "other"),
            "an id reused for other content"
        );
    }
}
