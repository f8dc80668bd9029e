//! The runs a worker has read: a warm Lambda container reads a run's plan once, not once per
//! message (a plan of tens of thousands of units is megabytes).
//!
//! Held by [`super::Deps`] (one per composition root), not a process-global: two sets of
//! dependencies in one process (tests, a CLI driving two stores) never share plans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::plan::Unit;
use crate::state::StateStore;
use crate::state::records::Trigger;
use crate::steps::promote::load_run;

use super::error::StepError;

/// Runs kept; the oldest is dropped past this.
const CAPACITY: usize = 8;

/// A run's trigger and plan, as recorded when it started (neither changes afterwards).
#[derive(Debug)]
pub struct RecordedRun {
    /// What started it.
    pub trigger: Trigger,
    /// Its units by id.
    pub units: HashMap<String, Unit>,
    /// Its number of units.
    pub planned: usize,
}

/// A state URL and a run id, and the run read there.
type Entry = ((String, String), Arc<RecordedRun>);

/// Runs already read, by state URL and run id (the last `CAPACITY`).
#[derive(Debug, Default)]
pub struct RunCache {
    runs: Mutex<Vec<Entry>>,
}

impl RunCache {
    /// Run `run` of `store`, read from the store the first time.
    pub async fn get(&self, store: &StateStore, run: &str) -> Result<Arc<RecordedRun>, StepError> {
        let key = (store.url(), run.to_owned());
        if let Some(recorded) = self.cached(&key) {
            return Ok(recorded);
        }
        let (record, units) = load_run(store, run)
            .await?
            .ok_or_else(|| StepError::Unknown {
                run: run.to_owned(),
                what: "the run".to_owned(),
            })?;
        let recorded = Arc::new(RecordedRun {
            trigger: record.trigger,
            planned: record.units,
            units: units.into_iter().map(|u| (u.id.clone(), u)).collect(),
        });
        let mut runs = self.lock();
        if runs.len() >= CAPACITY {
            runs.remove(0);
        }
        runs.push((key, Arc::clone(&recorded)));
        Ok(recorded)
    }

    fn cached(&self, key: &(String, String)) -> Option<Arc<RecordedRun>> {
        self.lock()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| Arc::clone(r))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
