//! The JSON form of a plan. The schema is stable: fields may be added, never renamed or removed.
//!
//! ```json
//! {
//!   "schema": "promoter.plan/v1",
//!   "summary": { "units": 1, "edges": 2, "tags": 2, "repositories": 2, "removals": 0 },
//!   "units": [
//!     {
//!       "id": "0f3c…(16 hex)",
//!       "source": "gcr.io/k8s-staging-foo/controller",
//!       "digest": "sha256:…",
//!       "destinations": [
//!         { "repository": "us-docker.pkg.dev/prod/images/foo/controller", "tags": ["v1.2.0"] }
//!       ]
//!     }
//!   ],
//!   "removals": [
//!     { "repository": "…", "digest": "sha256:…", "digest_removed": true, "tags": ["v1.0"] }
//!   ]
//! }
//! ```
//!
//! - `units` are sorted by `source`, then `digest`; `destinations` by `repository`; one unit per
//!   (source repository, digest). An *edge* is one (unit, destination) pair.
//! - With `--base`, `tags` lists only the tags the change adds; a destination whose digest and
//!   tags the base already had does not appear.
//! - `removals` is empty unless `--base` is given with `--allow-removal`.
//! - `policy` (present only when new digests were checked against their project's policy):
//!   `[{ "source", "digest", "report": { "policy": FILE, "verdicts": [{ "rule", "mode",
//!   "passed", "detail" }] } }]`.

use std::io::{self, BufWriter, Write};

use serde::Serialize;

use crate::plan::{Checked, Plan, Removal, Summary, Unit};

/// The value of the `schema` field.
pub const SCHEMA: &str = "promoter.plan/v1";

#[derive(Serialize)]
struct Document<'p> {
    schema: &'static str,
    summary: Summary,
    units: Units<'p>,
    removals: &'p [Removal],
    #[serde(skip_serializing_if = "<[Checked]>::is_empty")]
    policy: &'p [Checked],
}

/// The units as the schema lists them: without the policies they carry (those are the policy
/// files' content, recorded with a run for its workers; the check's results are in `policy`).
struct Units<'p>(&'p [Unit]);

#[derive(Serialize)]
struct UnitView<'p> {
    id: &'p str,
    source: &'p crate::reference::Repository,
    digest: &'p crate::reference::Digest,
    destinations: &'p [crate::plan::Destination],
}

impl Serialize for Units<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|u| UnitView {
            id: &u.id,
            source: &u.source,
            digest: &u.digest,
            destinations: &u.destinations,
        }))
    }
}

/// Writes the plan as one compact JSON document followed by a newline, streaming (no copy of
/// the plan). Compact, because a Kubernetes-scale plan is ~900,000 edges: pipe it to `jq` to read.
pub fn write(plan: &Plan, out: &mut dyn Write) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let document = Document {
        schema: SCHEMA,
        summary: plan.summary(),
        units: Units(&plan.units),
        removals: &plan.removals,
        policy: &plan.checked,
    };
    serde_json::to_writer(&mut out, &document)?;
    out.write_all(b"\n")?;
    out.flush()
}
