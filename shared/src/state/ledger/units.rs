//! A run's units in the ledger: their records, final markers, the counter of final units, and
//! reopening one to retry it.

use bytes::Bytes;
use serde::Serialize;

use super::cas::{self, Decision};
use super::{
    RunLedger, counted_key, failed_key, final_key, finals_key, notified_key, signature_key,
    unit_key,
};
use crate::state::records::{self, UnitFailure, UnitRecord, UnitStatus};
use crate::state::{StateError, Version};

/// How a unit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Final {
    /// Promoted (and signed, when signing is on).
    Done,
    /// Failed for good (tag move, missing source, …); its record says why.
    Failed,
}

impl RunLedger<'_> {
    /// Unit `unit`'s record and its version, if it has one.
    pub async fn unit_record(
        &self,
        unit: &str,
    ) -> Result<Option<(UnitRecord, Version)>, StateError> {
        records::read::<UnitRecord>(self.store, &unit_key(self.run, unit), "unit record").await
    }

    /// Every unit record of the run (a bad one is an error: see `history` for listings that
    /// go on past it).
    pub async fn unit_records(&self) -> Result<Vec<UnitRecord>, StateError> {
        let mut out = Vec::new();
        for key in self
            .store
            .list(&format!("runs/{}/units/", self.run))
            .await?
        {
            if let Some((record, _)) =
                records::read::<UnitRecord>(self.store, &key, "unit record").await?
            {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Writes a unit's record (only its lease holder does; a retried write of the holder
    /// replaces what is there).
    pub async fn write_unit(&self, record: &UnitRecord) -> Result<Version, StateError> {
        cas::overwrite(self.store, &unit_key(self.run, &record.id), record).await
    }

    /// Marks unit `unit` failed with `failure` (nothing when it has no record yet).
    pub async fn fail_unit(&self, unit: &str, failure: &UnitFailure) -> Result<(), StateError> {
        cas::modify(
            self.store,
            &unit_key(self.run, unit),
            "unit record",
            |current| {
                let Some(mut record): Option<UnitRecord> = current else {
                    return Ok(Decision::Keep(()));
                };
                record.status = UnitStatus::Failed;
                record.error = Some(failure.clone());
                Ok(Decision::Write(record))
            },
        )
        .await
        .map(drop)
    }

    /// Records how signing unit `unit` went (the last attempt's account replaces earlier ones).
    pub async fn record_signature(
        &self,
        unit: &str,
        record: &impl Serialize,
    ) -> Result<(), StateError> {
        cas::overwrite(self.store, &signature_key(self.run, unit), record)
            .await
            .map(drop)
    }

    /// Marks `unit` final (idempotent); true while the unit is not counted yet (this call
    /// made the marker, or an earlier delivery made it and died before counting it): the
    /// caller then counts it with [`RunLedger::count_finals`].
    pub async fn mark_final(&self, unit: &str, how: Final) -> Result<bool, StateError> {
        let text: &'static [u8] = match how {
            Final::Done => b"done",
            Final::Failed => b"failed",
        };
        if how == Final::Failed {
            self.store
                .create(&failed_key(self.run, unit), Bytes::from_static(b"failed"))
                .await?;
        }
        self.store
            .create(&final_key(self.run, unit), Bytes::from_static(text))
            .await?;
        Ok(self
            .store
            .get(&counted_key(self.run, unit))
            .await?
            .is_none())
    }

    /// Whether `unit` is final (nothing more will happen to it until it is reopened).
    pub async fn is_final(&self, unit: &str) -> Result<bool, StateError> {
        Ok(self.store.get(&final_key(self.run, unit)).await?.is_some())
    }

    /// Adds `units` (final, not counted yet) to the counter of final units, then records each
    /// as counted; returns the new count.
    ///
    /// A worker dying between the two is redelivered, finds its unit uncounted and counts it
    /// again: the counter may run ahead of the markers (harmless: a run is concluded only when
    /// a listing of its markers covers it), never behind them.
    pub async fn count_finals(&self, units: &[&str]) -> Result<usize, StateError> {
        let added = units.len();
        let written = cas::modify(self.store, &finals_key(self.run), "count", |count| {
            Ok(Decision::<usize, ()>::Write(count.unwrap_or(0) + added))
        })
        .await?;
        for unit in units {
            self.store
                .create(&counted_key(self.run, unit), Bytes::from_static(b"counted"))
                .await?;
        }
        Ok(match written {
            cas::Modified::Written(count, _) => count,
            cas::Modified::Kept(()) => added,
        })
    }

    /// The units marked final.
    pub async fn final_units(&self) -> Result<Vec<String>, StateError> {
        self.units_under(&format!("runs/{}/final/", self.run)).await
    }

    /// The units final by failure.
    pub async fn failed_units(&self) -> Result<Vec<String>, StateError> {
        self.units_under(&format!("runs/{}/failed/", self.run))
            .await
    }

    /// Makes a unit final by failure pending again (it is about to be retried), and lets the
    /// run be concluded and notified again when it ends.
    pub async fn reopen(&self, unit: &str) -> Result<(), StateError> {
        let counted = self
            .store
            .get(&counted_key(self.run, unit))
            .await?
            .is_some();
        self.store.delete(&final_key(self.run, unit)).await?;
        self.store.delete(&failed_key(self.run, unit)).await?;
        if counted {
            cas::modify(
                self.store,
                &finals_key(self.run),
                "count",
                |count: Option<usize>| {
                    Ok(match count {
                        Some(n) => Decision::<usize, ()>::Write(n.saturating_sub(1)),
                        None => Decision::Keep(()),
                    })
                },
            )
            .await?;
            self.store.delete(&counted_key(self.run, unit)).await?;
        }
        self.store.delete(&notified_key(self.run)).await
    }

    async fn units_under(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        Ok(self
            .store
            .list(prefix)
            .await?
            .into_iter()
            .filter_map(|key| key.strip_prefix(prefix).map(str::to_owned))
            .collect())
    }
}
