//! The promoted ledger: for each unit (source digest), which destinations were verified to hold
//! it with their tags, and whether it was signed. What lets a run plan only what a merge
//! changed (`desired − promoted`) instead of the whole manifest set.
//!
//! ```text
//! promoted/<shard>.json   PromotedShard: unit id → destination fingerprints, signed
//! ```
//!
//! A destination is recorded as a fingerprint of (repository, tags) made by the caller (the
//! planner's), not spelled out: at Kubernetes' size (16,500 units × 21 mirrors) the whole
//! ledger is about 3 MB in 256 shards of ~12 KB, read in one parallel pass per merge, where
//! spelled-out destinations would be ~30 MB. Shards are keyed by the unit id's first two hex
//! digits, so writers of one run spread over 256 keys; each write is a bounded
//! compare-and-set that only adds (a destination dropped from the manifests stays recorded,
//! which is harmless: it is no longer asked for).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::cas::{self, Decision};
use crate::state::records;
use crate::state::{StateError, StateStore};

/// Shard reads in flight at once.
const PARALLEL_READS: usize = 32;

/// `promoted/<shard>.json`, for unit `unit`'s shard (its id's first two characters).
pub fn promoted_key(unit: &str) -> String {
    let shard: String = unit.chars().take(2).collect();
    format!("promoted/{shard}.json")
}

/// One shard of the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedShard {
    /// `promoter.promoted/v1`.
    pub schema: String,
    /// Unit id → what was promoted of it.
    pub units: BTreeMap<String, PromotedUnit>,
}

/// What was verified of one unit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedUnit {
    /// Fingerprints of the destinations (repository and tags) verified to hold the digest.
    pub destinations: BTreeSet<String>,
    /// Whether it was signed (in every one of them).
    pub signed: bool,
    /// Whether its bundle signature, promotion record and verification summary were attached
    /// (in every one of them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attested: bool,
}

/// Records that unit `unit` is in the destinations `fingerprints` name (signed or not, and
/// attested or not).
pub async fn record_promoted(
    store: &StateStore,
    unit: &str,
    fingerprints: &[String],
    signed: bool,
    attested: bool,
) -> Result<(), StateError> {
    cas::modify(store, &promoted_key(unit), "promoted shard", |shard| {
        let mut shard: PromotedShard = shard.unwrap_or_else(|| PromotedShard {
            schema: "promoter.promoted/v1".to_owned(),
            ..PromotedShard::default()
        });
        let entry = shard.units.entry(unit.to_owned()).or_default();
        let known = entry.destinations.len();
        entry.destinations.extend(fingerprints.iter().cloned());
        // Signed stays true once true; a later unsigned promotion of the same destinations
        // (signing turned off) does not make it unsigned.
        let newly_signed = (signed && !entry.signed) || (attested && !entry.attested);
        entry.signed |= signed;
        entry.attested |= attested;
        Ok(if entry.destinations.len() == known && !newly_signed {
            Decision::Keep(())
        } else {
            Decision::Write(shard)
        })
    })
    .await
    .map(drop)
}

/// Forgets what was recorded of unit `unit` and is no longer true: the destinations
/// `fingerprints` name (found lacking the digest or a tag), and its signatures when
/// `unsigned` (found unsigned somewhere). What a reconcile does before repairing, so that a
/// repair that fails is planned again by the next run instead of being taken as promoted.
pub async fn forget_promoted(
    store: &StateStore,
    unit: &str,
    fingerprints: &[String],
    unsigned: bool,
) -> Result<(), StateError> {
    cas::modify(store, &promoted_key(unit), "promoted shard", |shard| {
        let Some(mut shard): Option<PromotedShard> = shard else {
            return Ok(Decision::Keep(()));
        };
        let Some(entry) = shard.units.get_mut(unit) else {
            return Ok(Decision::Keep(()));
        };
        let known = entry.destinations.len();
        for fingerprint in fingerprints {
            entry.destinations.remove(fingerprint);
        }
        let unsign = unsigned && (entry.signed || entry.attested);
        if unsign {
            entry.signed = false;
            entry.attested = false;
        }
        Ok(if entry.destinations.len() == known && !unsign {
            Decision::Keep(())
        } else {
            Decision::Write(shard)
        })
    })
    .await
    .map(drop)
}

/// The whole ledger: unit id → what was promoted of it (every shard read, in parallel).
pub async fn load_promoted(
    store: &StateStore,
) -> Result<HashMap<String, PromotedUnit>, StateError> {
    let keys = store.list("promoted/").await?;
    let shards: Vec<Option<PromotedShard>> = futures_util::stream::iter(keys)
        .map(|key| async move {
            Ok::<_, StateError>(
                records::read::<PromotedShard>(store, &key, "promoted shard")
                    .await?
                    .map(|(s, _)| s),
            )
        })
        .buffer_unordered(PARALLEL_READS)
        .try_collect()
        .await?;
    Ok(shards
        .into_iter()
        .flatten()
        .flat_map(|shard| shard.units)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[tokio::test]
    async fn records_add_up_and_signing_sticks() {
        let store = StateStore::from(MemoryStore::default());
        record_promoted(&store, "ab12", &["d1".into()], false, false)
            .await
            .expect("recorded");
        record_promoted(&store, "ab12", &["d2".into()], true, false)
            .await
            .expect("recorded");
        record_promoted(&store, "ab34", &["d1".into()], false, false)
            .await
            .expect("recorded");
        record_promoted(&store, "cd56", &["d9".into()], true, true)
            .await
            .expect("recorded");
        record_promoted(&store, "ab12", &["d1".into()], false, false)
            .await
            .expect("nothing new");
        let all = load_promoted(&store).await.expect("loaded");
        assert_eq!(all.len(), 3);
        forget_promoted(&store, "cd56", &["d9".into()], true)
            .await
            .expect("forgotten");
        forget_promoted(&store, "ef00", &["d1".into()], true)
            .await
            .expect("nothing to forget");
        let forgotten = &load_promoted(&store).await.expect("loaded")["cd56"];
        assert!(forgotten.destinations.is_empty());
        assert!(!forgotten.signed && !forgotten.attested);
        let ab12 = &all["ab12"];
        assert_eq!(ab12.destinations, ["d1".to_owned(), "d2".to_owned()].into());
        assert!(ab12.signed);
        assert!(!all["ab34"].signed);
        assert!(!ab12.attested);
        assert!(all["cd56"].attested);
        assert_eq!(
            store.list("promoted/").await.expect("list"),
            ["promoted/ab.json", "promoted/cd.json"]
        );
    }
}
