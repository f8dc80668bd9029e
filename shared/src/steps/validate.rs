//! validate-manifest: a merged push (or an on-call request) becomes a recorded run and one
//! copy message per unit.
//!
//! From a GitHub push webhook: the `X-Hub-Signature-256` HMAC is checked first (nothing else
//! happens without a valid one), pushes to other branches and non-push events are ignored, a
//! delivery already handled (`X-GitHub-Delivery`) is not handled again (one whose handler died
//! is taken over: [`crate::state::claim`]), and the manifests folder is
//! fetched at the pushed commit (GitHub's trees and blobs API, only the blobs not cached in
//! state; the tarball where the tree is truncated). By hand: `{"revision": …, "manifests":
//! "s3://…"|"gs://…"|"file://…"}`. Either way the manifests are validated, planned, the run and
//! the desired state recorded, and every unit not yet final is enqueued. The run id derives
//! from the revision, so the same commit never makes two runs.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::events::{GithubError, PushEvent, verify_signature};
use crate::manifest;
use crate::plan;
use crate::source::{self, Fetched, GithubRepo};
use crate::state::claim::{self, Claim};
use crate::state::ledger::RunLedger;
use crate::state::ledger::promoted::load_promoted;
use crate::state::records::{self, Trigger, TriggerKind, UnitFailure};
use crate::steps::promote::{record_run, run_id};

use super::deps::Deps;
use super::error::{StepError, malformed};
use super::http::{HttpRequest, HttpResponse};
use super::messages::{CopyMessage, NotifyMessage, encode};
use super::progress::conclude_if_finished;

/// An on-call request to promote manifests from object storage (or a local folder).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualRequest {
    /// The manifests' revision (e.g. the merged commit): it names the run.
    pub revision: String,
    /// Where the manifests are: `s3://bucket/prefix`, `gs://bucket/prefix`, `file:///path`.
    pub manifests: String,
    /// The manifest repository (`owner/name`), for the commit status; optional.
    #[serde(default)]
    pub repository: Option<String>,
}

/// What validate-manifest did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ValidateOutcome {
    /// The run is recorded and its units enqueued.
    Accepted {
        /// The run id.
        run: String,
        /// The revision.
        revision: String,
        /// Units planned.
        units: usize,
        /// Copy messages sent now (units not yet final).
        enqueued: usize,
    },
    /// Nothing to do (another branch, a deleted branch, not a push).
    Ignored {
        /// Why.
        reason: String,
    },
    /// This delivery was handled before.
    Duplicate {
        /// The `X-GitHub-Delivery` id.
        delivery: String,
    },
    /// The manifests at that revision are invalid: nothing was recorded or copied.
    Invalid {
        /// The revision.
        revision: String,
        /// `FILE:LINE:COL: message`, paths relative to the repository.
        diagnostics: Vec<String>,
    },
}

impl ValidateOutcome {
    /// The HTTP status a webhook gets.
    pub fn http_status(&self) -> u16 {
        match self {
            ValidateOutcome::Accepted { .. } => 202,
            ValidateOutcome::Ignored { .. } | ValidateOutcome::Duplicate { .. } => 200,
            ValidateOutcome::Invalid { .. } => 422,
        }
    }
}

/// Handles a GitHub push webhook, answering as HTTP.
pub async fn handle_webhook(request: &HttpRequest, deps: &Deps) -> HttpResponse {
    HttpResponse::of(
        webhook(request, deps).await,
        ValidateOutcome::http_status,
        "webhook refused",
    )
}

/// Handles a GitHub push webhook.
pub async fn webhook(request: &HttpRequest, deps: &Deps) -> Result<ValidateOutcome, StepError> {
    let secret = deps
        .settings
        .github_webhook_secret
        .as_deref()
        .ok_or_else(|| StepError::Config {
            variable: "PROMOTER_GITHUB_WEBHOOK_SECRET",
            reason: "not set: webhooks cannot be authenticated, so none is accepted".into(),
        })?;
    verify_signature(
        secret.as_bytes(),
        &request.body,
        request.header("x-hub-signature-256"),
    )
    .map_err(|e| match e {
        GithubError::MissingSignature => StepError::Unauthorized("no X-Hub-Signature-256 header"),
        _ => StepError::Unauthorized("X-Hub-Signature-256 does not match the body"),
    })?;
    let kind = request.header("x-github-event").unwrap_or("push");
    if kind != "push" {
        return Ok(ValidateOutcome::Ignored {
            reason: format!("a {kind} event, not a push"),
        });
    }
    let push = PushEvent::parse(&request.body).map_err(|e| malformed("push event", e))?;
    if !push.is_to_branch(&deps.settings.branch) {
        return Ok(ValidateOutcome::Ignored {
            reason: format!(
                "a push to {} (promoting {} only)",
                push.git_ref, deps.settings.branch
            ),
        });
    }
    let Some(id) = request.header("x-github-delivery") else {
        return promote_push(&push, deps).await;
    };
    let key = claim::delivery_key(id, &push.after);
    let claimed = match claim::claim(&deps.store, &key, SystemTime::now()).await? {
        Claim::Taken(version) => version,
        Claim::Handled => {
            return Ok(ValidateOutcome::Duplicate {
                delivery: id.to_owned(),
            });
        }
    };
    let result = promote_push(&push, deps).await;
    match &result {
        Ok(_) => claim::finish(&deps.store, &key, &claimed).await?,
        // Let GitHub's redelivery (or a retry) try again.
        Err(_) => claim::release(&deps.store, &key).await?,
    }
    result
}

async fn promote_push(push: &PushEvent, deps: &Deps) -> Result<ValidateOutcome, StepError> {
    let repo = GithubRepo {
        api_base: &deps.settings.github_api,
        repository: &push.repository.full_name,
        token: deps.settings.github_token.as_deref(),
    };
    let fetched = fetch_push(&repo, &push.after, deps).await?;
    let trigger = Trigger {
        kind: TriggerKind::Revision,
        revision: push.after.clone(),
        repository: Some(push.repository.full_name.clone()),
        parent: Some(push.before.clone()).filter(|b| !b.bytes().all(|c| c == b'0')),
    };
    promote_fetched(&fetched, trigger, deps).await
}

/// The manifests folder at the pushed commit: through the trees API and the blob cache (only
/// what changed is downloaded), or the tarball where GitHub cannot give the tree.
async fn fetch_push(repo: &GithubRepo<'_>, sha: &str, deps: &Deps) -> Result<Fetched, StepError> {
    let folder = &deps.settings.manifests_dir;
    match source::github_tree(&deps.http, repo, sha, folder, &deps.store).await? {
        source::TreeOutcome::Fetched(fetched, _) => Ok(fetched),
        source::TreeOutcome::UseTarball(why) => {
            tracing::info!(
                repository = repo.repository,
                sha,
                why,
                "fetching the tarball"
            );
            Ok(source::github_tarball(&deps.http, repo, sha, folder).await?)
        }
    }
}

/// Handles an on-call request.
pub async fn manual(request: &ManualRequest, deps: &Deps) -> Result<ValidateOutcome, StepError> {
    let fetched = source::object_prefix(&request.manifests, &deps.settings.manifests_dir).await?;
    let trigger = Trigger {
        kind: TriggerKind::Revision,
        revision: request.revision.clone(),
        repository: request.repository.clone(),
        parent: None,
    };
    promote_fetched(&fetched, trigger, deps).await
}

async fn promote_fetched(
    fetched: &Fetched,
    trigger: Trigger,
    deps: &Deps,
) -> Result<ValidateOutcome, StepError> {
    let root = fetched.root().to_path_buf();
    let loaded = match manifest::load(std::slice::from_ref(&root)) {
        Ok(loaded) => loaded,
        // The revision holds no manifests where the promoter is told to look (a moved folder,
        // a wrong `PROMOTER_MANIFEST_SUBDIR`): the repository's content is wrong, not the
        // promoter, and retrying will not change it. Alerted like invalid manifests.
        Err(error @ manifest::LoadError::Empty { .. }) => {
            let diagnostics = vec![format!(
                "{}: {}",
                trigger.revision,
                crate::error_chain::error_chain(&error).replace(&*root.to_string_lossy(), ".")
            )];
            alert_invalid(&trigger, &diagnostics, deps).await?;
            return Ok(ValidateOutcome::Invalid {
                revision: trigger.revision,
                diagnostics,
            });
        }
        Err(error) => return Err(error.into()),
    };
    if !loaded.is_valid() {
        let diagnostics = relative_diagnostics(&loaded.diagnostics, &root);
        alert_invalid(&trigger, &diagnostics, deps).await?;
        return Ok(ValidateOutcome::Invalid {
            revision: trigger.revision,
            diagnostics,
        });
    }
    let plan = plan::build(&loaded.manifests, None);
    enqueue_plan(&plan, trigger, deps).await
}

/// `invalid/<revision>.json`: invalid manifests that reached the promoted branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidRecord {
    /// `promoter.invalid/v1`.
    pub schema: String,
    /// The revision whose manifests are invalid.
    pub revision: String,
    /// The manifest repository (`owner/name`), when known: its commit gets a failure status.
    pub repository: Option<String>,
    /// `FILE:LINE:COL: message`, the first [`MAX_ALERTED_DIAGNOSTICS`].
    pub diagnostics: Vec<String>,
    /// How many there were in all.
    pub total: usize,
}

/// Diagnostics carried by an invalid-manifest alert at most.
pub const MAX_ALERTED_DIAGNOSTICS: usize = 50;

/// Invalid manifests on the promoted branch were merged past the presubmit: record them and
/// alert through notify (nothing is promoted from that revision). A redelivered push records
/// nothing new and sends the message again, which notify's per-sink claims make harmless.
async fn alert_invalid(
    trigger: &Trigger,
    diagnostics: &[String],
    deps: &Deps,
) -> Result<(), StepError> {
    let record = InvalidRecord {
        schema: "promoter.invalid/v1".to_owned(),
        revision: trigger.revision.clone(),
        repository: trigger.repository.clone(),
        diagnostics: diagnostics
            .iter()
            .take(MAX_ALERTED_DIAGNOSTICS)
            .cloned()
            .collect(),
        total: diagnostics.len(),
    };
    let key = format!("invalid/{}.json", claim::segment(&trigger.revision));
    deps.store.create(&key, records::encode(&record)).await?;
    let message = NotifyMessage::Invalid { key };
    deps.queues.notify.send(&encode(&message)).await?;
    tracing::warn!(revision = %trigger.revision, problems = diagnostics.len(), "invalid manifests on the promoted branch");
    Ok(())
}

/// Records the run for `plan` and enqueues each of its units that is not final yet: the
/// second half of validate-manifest, also what `promoter promote` runs before draining the
/// queues.
///
/// A new run holds only what the promoted ledger does not (`desired − promoted`, see
/// [`plan::incremental`]), unless the settings ask for full runs; the desired state recorded
/// is the whole plan's. A run already recorded (the same revision delivered again) keeps its
/// units.
pub async fn enqueue_plan(
    plan: &plan::Plan,
    trigger: Trigger,
    deps: &Deps,
) -> Result<ValidateOutcome, StepError> {
    enqueue(plan, true, trigger, deps).await
}

/// Records a run of exactly `repairs` (a reconcile's: the ledger is not asked, since what it
/// calls promoted is what went missing) and enqueues those not final yet.
pub async fn enqueue_repairs(
    repairs: &[plan::Unit],
    trigger: Trigger,
    deps: &Deps,
) -> Result<ValidateOutcome, StepError> {
    let plan = plan::Plan {
        units: repairs.to_vec(),
        ..plan::Plan::default()
    };
    enqueue(&plan, false, trigger, deps).await
}

/// [`enqueue_plan`], of `desired − promoted` when `incremental`, else of the whole plan.
async fn enqueue(
    plan: &plan::Plan,
    incremental: bool,
    trigger: Trigger,
    deps: &Deps,
) -> Result<ValidateOutcome, StepError> {
    let run = run_id(&trigger);
    let ledger = RunLedger::new(&deps.store, &run);
    let units: Vec<plan::Unit> = if ledger.run_record().await?.is_some() {
        ledger.plan().await?
    } else {
        let units = if incremental {
            units_to_run(plan, deps).await?
        } else {
            plan.units.clone()
        };
        record_run(&deps.store, &units, plan, &trigger).await?;
        tracing::info!(
            run,
            planned = plan.units.len(),
            promoted_earlier = plan.units.len() - units.len(),
            "run recorded"
        );
        units
    };
    // Units final by success are skipped; units final by failure are tried again.
    for unit in ledger.failed_units().await? {
        ledger.reopen(&unit).await?;
    }
    let finished: std::collections::HashSet<String> =
        ledger.final_units().await?.into_iter().collect();
    let messages: Vec<String> = units
        .iter()
        .filter(|u| !finished.contains(&u.id))
        .map(|unit| {
            encode(&CopyMessage {
                run: run.clone(),
                unit: unit.id.clone(),
            })
        })
        .collect();
    // In batches: a 46,000-unit run is enqueued in seconds, within the webhook's time.
    deps.queues.copy.send_all(&messages).await?;
    let enqueued = messages.len();
    if enqueued == 0 {
        conclude_if_finished(deps, &run, units.len()).await?;
    }
    tracing::info!(run, revision = %trigger.revision, units = units.len(), enqueued, "run enqueued");
    Ok(ValidateOutcome::Accepted {
        run,
        revision: trigger.revision,
        units: units.len(),
        enqueued,
    })
}

/// The units of `plan` a new run copies: those the promoted ledger does not hold (with only
/// their missing destinations), or all of them for a full run.
async fn units_to_run(plan: &plan::Plan, deps: &Deps) -> Result<Vec<plan::Unit>, StepError> {
    if deps.settings.full {
        return Ok(plan.units.clone());
    }
    let promoted = load_promoted(&deps.store).await?;
    // The signer's own needs, else what the chain's sign function adds (validate-manifest
    // deployed has no key of its own).
    let needs = match &deps.signer {
        Some(signer) => plan::incremental::Needs {
            signature: true,
            attestations: signer.attaches_attestations(),
        },
        None => deps.settings.chain_signing.unwrap_or_default(),
    };
    Ok(plan::incremental::missing(&plan.units, needs, |id| {
        promoted.get(id).map(|p| plan::incremental::Promoted {
            destinations: &p.destinations,
            signed: p.signed,
            attested: p.attested,
        })
    }))
}

/// Re-drives one unit of a recorded run, even one that is done (an on-call repair: production
/// is observed first, so only what is missing is written): its final marker is removed and
/// its record marked failed (so that copy-digest copies instead of answering "done"), and one
/// copy message is sent for it. The run is recorded first when it is not yet.
pub async fn redrive_unit(
    plan: &plan::Plan,
    trigger: Trigger,
    unit: &str,
    deps: &Deps,
) -> Result<ValidateOutcome, StepError> {
    if !plan.units.iter().any(|u| u.id == unit) {
        return Err(StepError::Unknown {
            run: run_id(&trigger),
            what: format!("unit {unit}"),
        });
    }
    let run = run_id(&trigger);
    record_run(&deps.store, &plan.units, plan, &trigger).await?;
    let ledger = RunLedger::new(&deps.store, &run);
    ledger.reopen(unit).await?;
    let failure = UnitFailure {
        message: "re-driven by on-call (runs retry --unit)".to_owned(),
        retryable: true,
    };
    ledger.fail_unit(unit, &failure).await?;
    let message = CopyMessage {
        run: run.clone(),
        unit: unit.to_owned(),
    };
    deps.queues.copy.send(&encode(&message)).await?;
    tracing::info!(run, unit, "unit re-driven");
    Ok(ValidateOutcome::Accepted {
        run,
        revision: trigger.revision,
        units: plan.units.len(),
        enqueued: 1,
    })
}

fn relative_diagnostics(diagnostics: &[manifest::Diagnostic], root: &Path) -> Vec<String> {
    let prefix = format!("{}/", root.display());
    diagnostics
        .iter()
        .map(|d| d.to_string().replace(&prefix, ""))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::CommitState;

    const INVALID: &str =
        "registries:\n- name: 127.0.0.1:5000/staging\n- name: 127.0.0.1:5001/prod\nimages: []\n";

    #[tokio::test]
    async fn invalid_manifests_on_the_branch_are_alerted() {
        let deps = Deps::in_memory();
        let dir = tempfile::tempdir().expect("a folder");
        std::fs::write(dir.path().join("m.yaml"), INVALID).expect("write");
        let request = ManualRequest {
            revision: "0123abcd".to_owned(),
            manifests: format!("file://{}", dir.path().display()),
            repository: Some("o/manifests".to_owned()),
        };
        let outcome = manual(&request, &deps).await.expect("validated");
        let ValidateOutcome::Invalid { diagnostics, .. } = outcome else {
            panic!("invalid manifests: {outcome:?}");
        };
        assert!(!diagnostics.is_empty());

        let messages = deps.queues.notify.receive(10).await.expect("receive");
        assert_eq!(messages.len(), 1);
        let message: NotifyMessage =
            super::super::messages::decode("notify message", &messages[0].body).expect("JSON");
        let NotifyMessage::Invalid { key } = message else {
            panic!("an invalid-manifest alert: {message:?}");
        };
        let (record, _) = records::read::<InvalidRecord>(&deps.store, &key, "record")
            .await
            .expect("read")
            .expect("recorded");
        assert_eq!(record.diagnostics, diagnostics);
        let notice = super::super::notify::invalid(&record);
        assert!(notice.title.contains("0123abcd"), "{}", notice.title);
        assert!(notice.text.contains("m.yaml"), "{}", notice.text);
        let status = notice.commit.expect("a commit status");
        assert_eq!(
            (status.repository.as_str(), status.state),
            ("o/manifests", CommitState::Failure)
        );
        // No run was recorded for that revision.
        assert!(deps.store.list("runs/").await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn a_revision_without_manifests_is_alerted_not_answered_500() {
        let deps = Deps::in_memory();
        let dir = tempfile::tempdir().expect("a folder");
        std::fs::write(dir.path().join("README.md"), "no manifests here").expect("write");
        let request = ManualRequest {
            revision: "feedbeef".to_owned(),
            manifests: format!("file://{}", dir.path().display()),
            repository: Some("o/manifests".to_owned()),
        };
        let outcome = manual(&request, &deps).await.expect("validated");
        assert_eq!(outcome.http_status(), 422);
        let ValidateOutcome::Invalid { diagnostics, .. } = outcome else {
            panic!("an invalid revision: {outcome:?}");
        };
        assert_eq!(diagnostics.len(), 1);
        assert!(
            diagnostics[0].contains("holds no manifests"),
            "{diagnostics:?}"
        );
        assert!(
            !diagnostics[0].contains(&*dir.path().to_string_lossy()),
            "the fetch folder is not shown: {diagnostics:?}"
        );
        assert_eq!(
            deps.queues.notify.receive(10).await.expect("receive").len(),
            1
        );
    }

    #[tokio::test]
    async fn an_older_revision_delivered_late_does_not_take_the_desired_state_back() {
        let deps = Deps::in_memory();
        let digest = format!("sha256:{}", "a".repeat(64));
        let revision = |rev: &str, tag: &str| {
            let dir = tempfile::tempdir().expect("a folder");
            let manifest = format!(
                "registries:\n- name: 127.0.0.1:9/staging\n  src: true\n- name: 127.0.0.1:9/prod\nimages:\n- name: app\n  dmap:\n    \"{digest}\": [\"{tag}\"]\n"
            );
            std::fs::write(dir.path().join("m.yaml"), manifest).expect("write");
            (
                ManualRequest {
                    revision: rev.to_owned(),
                    manifests: format!("file://{}", dir.path().display()),
                    repository: None,
                },
                dir,
            )
        };
        let current = async || {
            let object = deps
                .store
                .get(crate::state::ledger::DESIRED_CURRENT)
                .await
                .expect("read")
                .expect("set");
            String::from_utf8_lossy(&object.bytes).into_owned()
        };
        let (old, _a) = revision("1111111", "v1");
        let (new, _b) = revision("2222222", "v2");
        manual(&old, &deps).await.expect("validated");
        manual(&new, &deps).await.expect("validated");
        assert_eq!(current().await, "2222222");
        // The older revision requested again (an on-call request, a redelivery).
        let outcome = manual(&old, &deps).await.expect("validated");
        assert!(
            matches!(outcome, ValidateOutcome::Accepted { .. }),
            "{outcome:?}"
        );
        assert_eq!(
            current().await,
            "2222222",
            "audit keeps judging against the newer one"
        );
    }
}
