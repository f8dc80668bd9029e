//! The run ledger: every key a promotion run keeps in state, and every conditional write made
//! to them, behind verbs (record a run, claim a unit, write its record, mark it final, count
//! final units, conclude the run, mark it notified, reopen a unit).
//!
//! ```text
//! runs/<run>/run.json                RunRecord: trigger, revision, timings, status, counts
//! runs/<run>/plan.json               the planned units (what a redrive re-enqueues)
//! runs/<run>/units/<unit>.json       UnitRecord: status, attempts, worker, timings, bytes, error
//! runs/<run>/signatures/<unit>.json  how signing the unit went
//! runs/<run>/final/<unit>            marker: nothing more will happen to the unit
//! runs/<run>/failed/<unit>           marker: final by failure (a new enqueue retries it)
//! runs/<run>/counted/<unit>          marker: the unit was added to the counter
//! runs/<run>/finals                  counter: final units counted (decimal)
//! runs/<run>/notified                marker: the run's notification was enqueued
//! leases/<unit>                      LeaseRecord: who copies that unit, until when
//! desired/<revision>/index.json      DesiredIndex: what production should hold
//! desired/<revision>/order.json      RevisionOrder: its parent and sequence (forward only)
//! desired/<revision>/followed-by     the revision recorded with this one as its parent
//! desired/current                    the latest revision by that order (audit judges by it)
//! promoted/<shard>.json              what each unit was verified to hold ([`promoted`])
//! ```
//!
//! The protocol, at least once and idempotent at every step (a message may be delivered
//! twice, a worker may die between any two writes):
//!
//! 1. A run is recorded plan first, run record last (each create-if-absent), so a run record
//!    never exists without its plan.
//! 2. A unit is copied under its lease ([`lease`]); only the holder writes its record.
//! 3. When nothing more will happen to a unit, its final marker is created (create-if-absent).
//!    Then, unless its `counted` marker exists, one is added to the counter and the `counted`
//!    marker made: a delivery dying in between is redelivered and counts again, so the counter
//!    may run ahead of the markers but never behind. Whoever brings the counter to the run's
//!    unit count or past it, or is a redelivery of a counted unit (its first delivery may have
//!    died before concluding), lists the final markers and concludes the run when they cover
//!    it. (Raising the counter to a listing's count instead, as an earlier version did, can
//!    lose an increment made between the listing and the write, and the run never concludes;
//!    the ledger's property test found it.)
//! 4. Concluding counts the unit records and writes the run's status, then the notification is
//!    enqueued and only then the `notified` marker made: a worker dying in between leaves no
//!    marker, so a redelivery enqueues again (the notify step sends each notice once per sink,
//!    under its own claims), instead of a marker promising a notice that was never sent.
//! 5. Reopening a unit final by failure (a rerun retries it) removes its markers, takes one
//!    from the counter if it was counted, and removes `notified`, so the run is concluded and
//!    notified again.
//!
//! Every read-modify-write goes through [`cas`]: bounded, jittered, an error when it runs out.

pub mod cas;
pub mod lease;
pub mod promoted;
mod run;
mod units;

pub use run::record_desired;
pub use units::Final;

use crate::state::StateStore;

/// `runs/<run>/run.json`.
pub fn run_key(run: &str) -> String {
    format!("runs/{run}/run.json")
}

/// `runs/<run>/plan.json`.
pub fn plan_key(run: &str) -> String {
    format!("runs/{run}/plan.json")
}

/// `runs/<run>/units/<unit>.json`.
pub fn unit_key(run: &str, unit: &str) -> String {
    format!("runs/{run}/units/{unit}.json")
}

/// `runs/<run>/signatures/<unit>.json`.
pub fn signature_key(run: &str, unit: &str) -> String {
    format!("runs/{run}/signatures/{unit}.json")
}

/// `runs/<run>/final/<unit>`.
pub fn final_key(run: &str, unit: &str) -> String {
    format!("runs/{run}/final/{unit}")
}

/// `runs/<run>/failed/<unit>`.
pub fn failed_key(run: &str, unit: &str) -> String {
    format!("runs/{run}/failed/{unit}")
}

/// `runs/<run>/counted/<unit>`.
pub fn counted_key(run: &str, unit: &str) -> String {
    format!("runs/{run}/counted/{unit}")
}

/// `runs/<run>/finals`.
pub fn finals_key(run: &str) -> String {
    format!("runs/{run}/finals")
}

/// `runs/<run>/notified`.
pub fn notified_key(run: &str) -> String {
    format!("runs/{run}/notified")
}

/// `leases/<unit>`.
pub fn lease_key(unit: &str) -> String {
    format!("leases/{unit}")
}

/// `desired/<revision>/index.json`.
pub fn desired_key(revision: &str) -> String {
    format!("desired/{revision}/index.json")
}

/// `desired/current`.
pub const DESIRED_CURRENT: &str = "desired/current";

/// One run's part of the ledger.
#[derive(Clone, Copy)]
pub struct RunLedger<'a> {
    store: &'a StateStore,
    run: &'a str,
}

impl<'a> RunLedger<'a> {
    /// Run `run`'s records in `store`.
    pub fn new(store: &'a StateStore, run: &'a str) -> Self {
        RunLedger { store, run }
    }

    /// The run's id.
    pub fn run(&self) -> &str {
        self.run
    }

    /// The store.
    pub fn store(&self) -> &StateStore {
        self.store
    }
}

#[cfg(test)]
mod protocol_tests;
