//! A run's own records: recording it, reading it back, concluding it, and its notification.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cas::{self, Decision, Modified};
use super::{DESIRED_CURRENT, RunLedger, desired_key, notified_key, plan_key, run_key};
use crate::state::records::{self, Counts, RunRecord, RunStatus, UnitStatus, encode, now};
use crate::state::{StateError, StateStore};

impl RunLedger<'_> {
    /// Records the run (`fresh`), its `plan` and the `desired` state it asks for (a reconcile
    /// run asks for none: it repairs the current one), unless the run is recorded already;
    /// returns the run record as stored.
    ///
    /// The plan and the desired state first, the run record last: a worker that dies between
    /// them leaves no run record, so a retry writes everything again (each write is
    /// create-if-absent), instead of finding a run without its plan.
    pub async fn record(
        &self,
        fresh: &RunRecord,
        plan: &impl Serialize,
        desired: Option<(&str, &impl Serialize)>,
    ) -> Result<RunRecord, StateError> {
        let key = run_key(self.run);
        if self.store.get(&key).await?.is_none() {
            self.store.create(&plan_key(self.run), encode(plan)).await?;
            if let Some((revision, desired)) = desired {
                let parent = fresh.trigger.parent.as_deref();
                record_desired(self.store, revision, desired, parent).await?;
            }
            if self.store.create(&key, encode(fresh)).await?.is_some() {
                tracing::info!(run = self.run, units = fresh.units, "run started");
            }
        }
        self.run_record().await?.ok_or_else(|| self.vanished(&key))
    }

    /// The run record, if the run is recorded.
    pub async fn run_record(&self) -> Result<Option<RunRecord>, StateError> {
        Ok(
            records::read::<RunRecord>(self.store, &run_key(self.run), "run record")
                .await?
                .map(|(r, _)| r),
        )
    }

    /// The run's plan (its units, as recorded).
    pub async fn plan<T: DeserializeOwned>(&self) -> Result<T, StateError> {
        let key = plan_key(self.run);
        records::read::<T>(self.store, &key, "plan")
            .await?
            .map(|(p, _)| p)
            .ok_or_else(|| self.vanished(&key))
    }

    /// Counts the run's units and records its status: complete, failed, or still running.
    ///
    /// `mine` are units this worker just finished (id, succeeded), which count as such even if
    /// their records lag; the others are counted from their records when `mine` does not
    /// cover the run.
    pub async fn conclude(&self, mine: &[(String, bool)]) -> Result<RunRecord, StateError> {
        let key = run_key(self.run);
        let planned = self
            .run_record()
            .await?
            .ok_or_else(|| self.vanished(&key))?;
        let counts = self.counts(planned.units, mine).await?;
        let status = match (counts.pending, counts.failed) {
            (0, 0) => RunStatus::Complete,
            (0, _) => RunStatus::Failed,
            _ => RunStatus::Running,
        };
        let written = cas::modify(self.store, &key, "run record", |current| {
            let Some(mut record): Option<RunRecord> = current else {
                return Err(self.vanished(&key));
            };
            if record.status == status && record.counts == counts {
                return Ok(Decision::Keep(record));
            }
            record.status = status;
            record.counts = counts;
            record.finished_at = (counts.pending == 0).then(now);
            Ok(Decision::Write(record))
        })
        .await?;
        Ok(match written {
            Modified::Written(record, _) | Modified::Kept(record) => record,
        })
    }

    /// Done, failed and pending units of a run of `planned` units.
    async fn counts(&self, planned: usize, mine: &[(String, bool)]) -> Result<Counts, StateError> {
        let mut status: HashMap<&str, bool> =
            mine.iter().map(|(u, ok)| (u.as_str(), *ok)).collect();
        let others;
        if mine.len() < planned {
            others = self.unit_records().await?;
            for record in &others {
                match record.status {
                    UnitStatus::Done => status.entry(&record.id).or_insert(true),
                    UnitStatus::Failed => status.entry(&record.id).or_insert(false),
                    UnitStatus::Running => continue,
                };
            }
        }
        let done = status.values().filter(|ok| **ok).count();
        let failed = status.len() - done;
        Ok(Counts {
            done,
            failed,
            pending: planned.saturating_sub(done + failed),
        })
    }

    /// Whether the run's notification was enqueued since it last concluded.
    pub async fn notified(&self) -> Result<bool, StateError> {
        Ok(self.store.get(&notified_key(self.run)).await?.is_some())
    }

    /// Records that the run's notification was enqueued (after enqueuing it; see the protocol).
    pub async fn mark_notified(&self) -> Result<(), StateError> {
        self.store
            .create(&notified_key(self.run), Bytes::from_static(b"enqueued"))
            .await
            .map(drop)
    }

    /// The error for a record that should be there and is not.
    pub(super) fn vanished(&self, key: &str) -> StateError {
        StateError::Remote {
            url: self.store.url(),
            operation: "GET",
            key: key.to_owned(),
            reason: "the record vanished while being used".to_owned(),
        }
    }
}

/// `desired/<revision>/order.json`: where a revision stands in the order of revisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RevisionOrder {
    /// `promoter.order/v1`.
    pub schema: String,
    /// The revision.
    pub revision: String,
    /// The revision it follows, when known (a push's `before`).
    pub parent: Option<String>,
    /// Its place: its parent's plus one, or, with no recorded parent, one past the revision
    /// that was current when it arrived.
    pub sequence: u64,
}

/// `desired/<revision>/order.json`.
pub fn order_key(revision: &str) -> String {
    format!("desired/{revision}/order.json")
}

/// `desired/<revision>/followed-by`: a revision recorded with this one as its parent.
pub fn follower_key(revision: &str) -> String {
    format!("desired/{revision}/followed-by")
}

/// Records what production should hold after `revision` (`index`, a
/// [`DesiredIndex`](crate::state::records::DesiredIndex) or a borrowed view serialized the same way; `revision` follows `parent`,
/// when known), and points `desired/current` at it unless a later revision is current already.
///
/// Revisions move forward only. Each revision gets a sequence once, when first recorded: one
/// less than a recorded revision that names it as its parent (it arrived late), else its
/// parent's plus one when the parent is recorded (GitHub's `before` → `after` chain), else one
/// past the current revision's (arrival order, for an on-call request or a push whose parent
/// the promoter never saw). A revision delivered again keeps its sequence, so a redelivered or
/// delayed push of an older commit is recorded (and its run promotes what it adds) but does
/// not take `desired/current`, which audit judges against, back to it.
pub async fn record_desired(
    store: &StateStore,
    revision: &str,
    index: &impl Serialize,
    parent: Option<&str>,
) -> Result<(), StateError> {
    store.create(&desired_key(revision), encode(index)).await?;
    let sequence = sequence_of(store, revision, parent).await?;
    let kept = cas::modify_bytes_with(store, DESIRED_CURRENT, async |current| {
        let Some(current) = current else {
            return Ok(Decision::Write(Bytes::from(revision.to_owned())));
        };
        let current = String::from_utf8_lossy(current).trim().to_owned();
        if current == revision {
            return Ok(Decision::Keep(current));
        }
        let current_sequence = order(store, &current).await?.map_or(0, |o| o.sequence);
        Ok(if sequence > current_sequence {
            Decision::Write(Bytes::from(revision.to_owned()))
        } else {
            Decision::Keep(current)
        })
    })
    .await?;
    if let Some(current) = kept.filter(|c| c != revision) {
        tracing::info!(revision, %current, "an older revision: desired/current stays at the newer one");
    }
    Ok(())
}

/// The recorded order of `revision`, if any.
async fn order(store: &StateStore, revision: &str) -> Result<Option<RevisionOrder>, StateError> {
    Ok(
        records::read::<RevisionOrder>(store, &order_key(revision), "revision order")
            .await?
            .map(|(o, _)| o),
    )
}

/// `revision`'s sequence: recorded, or given now (see [`record_desired`]).
async fn sequence_of(
    store: &StateStore,
    revision: &str,
    parent: Option<&str>,
) -> Result<u64, StateError> {
    if let Some(known) = order(store, revision).await? {
        return Ok(known.sequence);
    }
    if let Some(parent) = parent {
        store
            .create(&follower_key(parent), Bytes::from(revision.to_owned()))
            .await?;
    }
    let after = match parent {
        Some(parent) => order(store, parent).await?,
        None => None,
    };
    // A revision some recorded revision follows arrived late: it comes before that one.
    let follower = match store.get(&follower_key(revision)).await? {
        Some(object) => order(store, String::from_utf8_lossy(&object.bytes).trim()).await?,
        None => None,
    };
    let sequence = match (follower, after) {
        (Some(follower), _) => follower.sequence.saturating_sub(1),
        (None, Some(parent)) => parent.sequence + 1,
        (None, None) => {
            let current = match store.get(DESIRED_CURRENT).await? {
                Some(object) => {
                    let current = String::from_utf8_lossy(&object.bytes).trim().to_owned();
                    order(store, &current).await?.map_or(0, |o| o.sequence)
                }
                None => 0,
            };
            current + 1
        }
    };
    let record = RevisionOrder {
        schema: "promoter.order/v1".to_owned(),
        revision: revision.to_owned(),
        parent: parent.map(str::to_owned),
        sequence,
    };
    if store
        .create(&order_key(revision), encode(&record))
        .await?
        .is_some()
    {
        return Ok(sequence);
    }
    // Recorded meanwhile by another delivery of the same revision: its sequence stands.
    Ok(order(store, revision)
        .await?
        .map_or(sequence, |o| o.sequence))
}
