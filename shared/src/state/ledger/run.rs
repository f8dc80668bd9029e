//! A run's own records: recording it, reading it back, concluding it, and its notification.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cas::{self, Decision, Modified};
use super::{DESIRED_CURRENT, RunLedger, desired_key, notified_key, plan_key, run_key};
use crate::state::records::{
    self, Counts, DesiredIndex, RunRecord, RunStatus, UnitStatus, encode, now,
};
use crate::state::{StateError, StateStore};

impl RunLedger<'_> {
    /// Records the run (`fresh`), its `plan` and the `desired` state it asks for, unless the
    /// run is recorded already; returns the run record as stored.
    ///
    /// The plan and the desired state first, the run record last: a worker that dies between
    /// them leaves no run record, so a retry writes everything again (each write is
    /// create-if-absent), instead of finding a run without its plan.
    pub async fn record(
        &self,
        fresh: &RunRecord,
        plan: &impl Serialize,
        desired: &DesiredIndex,
    ) -> Result<RunRecord, StateError> {
        let key = run_key(self.run);
        if self.store.get(&key).await?.is_none() {
            self.store.create(&plan_key(self.run), encode(plan)).await?;
            record_desired(self.store, desired).await?;
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

/// Records what production should hold after `index.revision`, and points `desired/current`
/// at it.
pub async fn record_desired(store: &StateStore, index: &DesiredIndex) -> Result<(), StateError> {
    store
        .create(&desired_key(&index.revision), encode(index))
        .await?;
    cas::overwrite_bytes(store, DESIRED_CURRENT, Bytes::from(index.revision.clone()))
        .await
        .map(drop)
}
