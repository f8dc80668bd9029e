//! The records kept in state (plain facts, no engine reports), and reading and writing them
//! as JSON. Their keys, and the writes that keep them consistent, are the
//! [ledger](super::ledger)'s.
//!
//! Every record carries a `schema` field; a record that does not parse (truncated, foreign) is
//! reported as [`StateError::Corrupt`] naming its key, never silently replaced.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Object, StateError, StateStore, Version};

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Units are being copied (or a worker died and the run awaits a rerun).
    Running,
    /// Every unit is done.
    Complete,
    /// Every unit finished, some failed.
    Failed,
}

impl RunStatus {
    /// The status as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// What started the run.
    pub kind: TriggerKind,
    /// The manifests' revision (a commit, or a hash of the plan).
    pub revision: String,
    /// The manifest repository (`owner/name`) when the revision is one of its commits: where
    /// the run's commit status goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The revision this one follows, when known (a GitHub push's `before`): how the desired
    /// state's revisions are ordered (see [`super::ledger::record_desired`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// What started a run. Serialized as its name (`cli`, `revision`), which is also part of the run
/// id: renaming a variant would give every later trigger of an old revision a new run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerKind {
    /// `promoter promote` or `promoter runs retry` on a machine (the revision is a hash of the
    /// plan).
    Cli,
    /// A revision of the manifest repository: a merged GitHub push, or an on-call request
    /// naming a revision.
    Revision,
    /// `promoter reconcile` or the scheduled reconcile: repairs what production lacks of the
    /// current desired state (the revision is `DESIRED.reconcile-TIME`; the run records no
    /// desired state of its own).
    Reconcile,
}

impl TriggerKind {
    /// The kind's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Cli => "cli",
            TriggerKind::Revision => "revision",
            TriggerKind::Reconcile => "reconcile",
        }
    }
}

impl std::fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unit counts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Units done.
    pub done: usize,
    /// Units failed.
    pub failed: usize,
    /// Units not finished.
    pub pending: usize,
}

/// `runs/<run-id>/run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `promoter.run/v1`.
    pub schema: String,
    /// The run's id, derived from its trigger.
    pub id: String,
    /// What started it.
    pub trigger: Trigger,
    /// Units planned.
    pub units: usize,
    /// Unix seconds.
    pub started_at: u64,
    /// Unix seconds, once every unit finished.
    pub finished_at: Option<u64>,
    /// Where it stands.
    pub status: RunStatus,
    /// Unit counts when last finished.
    pub counts: Counts,
}

/// Where a unit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitStatus {
    /// A worker is copying it (see its lease).
    Running,
    /// Every destination holds the digest and its tags.
    Done,
    /// The last attempt failed.
    Failed,
}

impl UnitStatus {
    /// The status as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitStatus::Running => "running",
            UnitStatus::Done => "done",
            UnitStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for UnitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a unit failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFailure {
    /// The error and its causes.
    pub message: String,
    /// Whether retrying may help.
    pub retryable: bool,
}

/// `runs/<run-id>/units/<unit-id>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitRecord {
    /// `promoter.unit/v1`.
    pub schema: String,
    /// The run.
    pub run: String,
    /// The unit.
    pub id: String,
    /// Source repository.
    pub source: String,
    /// Digest.
    pub digest: String,
    /// Where it stands.
    pub status: UnitStatus,
    /// Attempts started.
    pub attempts: u32,
    /// The worker of the last attempt (`host:pid:nonce`).
    pub worker: String,
    /// Unix seconds, last attempt.
    pub started_at: u64,
    /// Unix seconds, when finished.
    pub finished_at: Option<u64>,
    /// Seconds the last attempt took.
    pub seconds: Option<f64>,
    /// Blobs uploaded, blobs mounted, manifests and tags written by the last attempt.
    pub writes: usize,
    /// Bytes uploaded by the last attempt (blob sizes, per destination).
    pub bytes: u64,
    /// Why the last attempt failed.
    pub error: Option<UnitFailure>,
    /// The project's policy checked against the staging digest by the last attempt (its
    /// `warn` results are kept here; a failed `require` rule is also the unit's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::manifest::policy::Report>,
}

/// `leases/<unit-id>`: one worker copies a unit at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// `promoter.lease/v1`.
    pub schema: String,
    /// The unit.
    pub unit: String,
    /// The run the holder works for.
    pub run: String,
    /// `host:pid:nonce` of the holder.
    pub owner: String,
    /// Unix seconds after which another worker may take the lease over.
    pub expires_at: u64,
}

/// `desired/<revision>/index.json`: for each destination repository, each digest it should
/// hold and its tags. What the auditor compares pushes against.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredIndex {
    /// `promoter.desired/v1`.
    pub schema: String,
    /// The manifests' revision.
    pub revision: String,
    /// repository → digest → tags.
    pub repositories: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Destination repository → the staging repository it is promoted from. The auditor reads
    /// an approved index there when production does not hold it yet (an index's children are
    /// pushed, and notified, before the index itself).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, String>,
    /// Staging repository → the policies of the projects promoting from it: a reconcile
    /// repairing a digest checks them as the promotion did (a digest refused by policy is not
    /// copied by a repair either). Absent from indexes written before policies existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, Vec<crate::manifest::policy::Policy>>,
}

/// Reads and parses `key`; a record that does not parse is [`StateError::Corrupt`].
pub async fn read<T: DeserializeOwned>(
    store: &StateStore,
    key: &str,
    expected: &'static str,
) -> Result<Option<(T, Version)>, StateError> {
    let Some(Object { bytes, version }) = store.get(key).await? else {
        return Ok(None);
    };
    decode(store, key, expected, &bytes).map(|value| Some((value, version)))
}

/// Parses a record of kind `expected` read at `key`.
pub fn decode<T: DeserializeOwned>(
    store: &StateStore,
    key: &str,
    expected: &'static str,
    bytes: &[u8],
) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        url: store.url(),
        key: key.to_owned(),
        expected,
        reason: e.to_string(),
    })
}

/// Serializes a record.
pub fn encode<T: Serialize>(record: &T) -> Bytes {
    // Serializing these plain structs to a Vec cannot fail.
    Bytes::from(serde_json::to_vec_pretty(record).unwrap_or_default())
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
