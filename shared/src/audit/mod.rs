//! Auditing production pushes: each registry notification (decoded to a
//! [`RegistryEvent`](crate::events::RegistryEvent)) is judged against the desired state
//! ([`DesiredIndex`](crate::state::records::DesiredIndex)) and filed as an [`AuditRecord`].
//!
//! - [`judge`] is pure: approved, expected (the promoter's own signatures, attestations,
//!   SBOMs and referrers fallback tags), unapproved (with a [`Reason`]), or "ask the
//!   registry" for an untagged digest the desired state does not name;
//! - [`judge_with_registry`] answers those by reading production: children of desired
//!   indexes, OCI `subject`s of referrers;
//! - [`AuditRecord`], [`audit_key`] and [`event_id`] are what is kept in state, at
//!   `audit/events/<event-id>-<content>.json`.

mod error;
mod judge;
mod lookup;
mod record;

pub use error::AuditError;
pub use judge::{Explanation, Judgement, Reason, Verdict, judge};
pub use lookup::{SUBJECT_HOPS, judge_with_registry};
pub use record::{
    AUDIT_SCHEMA, AuditRecord, SOURCE_DISTRIBUTION, SOURCE_ECR, SOURCE_GCR, audit_key, event_id,
};
