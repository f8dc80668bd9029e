//! Reading runs back (the `promoter runs` commands; re-driving them goes through the chain).

use crate::plan::Unit;
use crate::state::ledger::RunLedger;
use crate::state::records::{self, RunRecord, UnitRecord};
use crate::state::{StateError, StateStore};

/// Records read from state, and the keys that could not be read (with why), so that one bad
/// record is reported without hiding the others.
#[derive(Debug)]
pub struct Listing<T> {
    /// The records read.
    pub records: Vec<T>,
    /// `(key, error)` of each record that could not be read.
    pub unreadable: Vec<(String, String)>,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Listing {
            records: Vec::new(),
            unreadable: Vec::new(),
        }
    }
}

impl<T: serde::de::DeserializeOwned> Listing<T> {
    async fn read(&mut self, store: &StateStore, key: &str, what: &'static str) {
        match records::read::<T>(store, key, what).await {
            Ok(Some((record, _))) => self.records.push(record),
            Ok(None) => {}
            Err(error) => self
                .unreadable
                .push((key.to_owned(), crate::error_chain::error_chain(&error))),
        }
    }
}

/// Every run record, newest first, and the run records that could not be read.
pub async fn list_runs(store: &StateStore) -> Result<Listing<RunRecord>, StateError> {
    let mut listing = Listing::<RunRecord>::default();
    for key in store.list("runs/").await? {
        if key.ends_with("/run.json") && key.matches('/').count() == 2 {
            listing.read(store, &key, "run record").await;
        }
    }
    listing.records.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(listing)
}

/// Every unit record of run `id` that can be read, and those that cannot (for `runs show`;
/// the steps use [`RunLedger::unit_records`], which fails on a bad record).
pub async fn list_unit_records(
    store: &StateStore,
    id: &str,
) -> Result<Listing<UnitRecord>, StateError> {
    let mut listing = Listing::default();
    for key in store.list(&format!("runs/{id}/units/")).await? {
        listing.read(store, &key, "unit record").await;
    }
    Ok(listing)
}

/// A run's record and planned units.
pub async fn load_run(
    store: &StateStore,
    id: &str,
) -> Result<Option<(RunRecord, Vec<Unit>)>, StateError> {
    let ledger = RunLedger::new(store, id);
    let Some(record) = ledger.run_record().await? else {
        return Ok(None);
    };
    Ok(Some((record, ledger.plan::<Vec<Unit>>().await?)))
}
