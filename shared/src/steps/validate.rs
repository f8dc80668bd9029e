//! validate-manifest: a merged push (or an on-call request) becomes a recorded run and one
//! copy message per unit.
//!
//! From a GitHub push webhook: the `X-Hub-Signature-256` HMAC is checked first (nothing else
//! happens without a valid one), pushes to other branches and non-push events are ignored, a
//! delivery already handled (`X-GitHub-Delivery`) is not handled again, and the manifests are
//! fetched at the pushed commit (GitHub's tarball API). By hand: `{"revision": …, "manifests":
//! "s3://…"|"gs://…"|"file://…"}`. Either way the manifests are validated, planned, the run and
//! the desired state recorded, and every unit not yet final is enqueued. The run id derives
//! from the revision, so the same commit never makes two runs.

use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::events::{GithubError, PushEvent, verify_signature};
use crate::manifest;
use crate::plan;
use crate::source::{self, Fetched, GithubRepo};
use crate::state::records::{self, Trigger, TriggerKind, UnitFailure};
use crate::steps::promote::{record_run, run_id};

use super::deps::Deps;
use super::error::{StepError, malformed};
use super::http::{HttpRequest, HttpResponse};
use super::messages::{CopyMessage, encode};
use super::progress::{conclude_if_finished, failed_units, final_units, raise_finals, reopen};

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

/// `deliveries/<id>`: a GitHub delivery being or already handled.
pub fn delivery_key(delivery: &str) -> String {
    let safe: String = delivery
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("deliveries/{safe}")
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
    let delivery = request.header("x-github-delivery").map(str::to_owned);
    if let Some(id) = &delivery {
        let claimed = deps
            .store
            .create(&delivery_key(id), Bytes::from(push.after.clone()))
            .await?;
        if claimed.is_none() {
            return Ok(ValidateOutcome::Duplicate {
                delivery: id.clone(),
            });
        }
    }
    let result = promote_push(&push, deps).await;
    if result.is_err()
        && let Some(id) = &delivery
    {
        // Let GitHub's redelivery (or a retry) try again.
        deps.store.delete(&delivery_key(id)).await?;
    }
    result
}

async fn promote_push(push: &PushEvent, deps: &Deps) -> Result<ValidateOutcome, StepError> {
    let repo = GithubRepo {
        api_base: &deps.settings.github_api,
        repository: &push.repository.full_name,
        token: deps.settings.github_token.as_deref(),
    };
    let fetched =
        source::github_tarball(&deps.http, &repo, &push.after, &deps.settings.manifests_dir)
            .await?;
    let trigger = Trigger {
        kind: TriggerKind::Revision,
        revision: push.after.clone(),
        repository: Some(push.repository.full_name.clone()),
    };
    promote_fetched(&fetched, trigger, deps).await
}

/// Handles an on-call request.
pub async fn manual(request: &ManualRequest, deps: &Deps) -> Result<ValidateOutcome, StepError> {
    let fetched = source::object_prefix(&request.manifests, &deps.settings.manifests_dir).await?;
    let trigger = Trigger {
        kind: TriggerKind::Revision,
        revision: request.revision.clone(),
        repository: request.repository.clone(),
    };
    promote_fetched(&fetched, trigger, deps).await
}

async fn promote_fetched(
    fetched: &Fetched,
    trigger: Trigger,
    deps: &Deps,
) -> Result<ValidateOutcome, StepError> {
    let root = fetched.root().to_path_buf();
    let loaded = manifest::load(std::slice::from_ref(&root))?;
    if !loaded.is_valid() {
        return Ok(ValidateOutcome::Invalid {
            revision: trigger.revision,
            diagnostics: relative_diagnostics(&loaded.diagnostics, &root),
        });
    }
    let plan = plan::build(&loaded.manifests, None);
    enqueue_plan(&plan, trigger, deps).await
}

/// Records the run for `plan` and enqueues each unit that is not final yet: the second half
/// of validate-manifest, also what `promoter promote` runs before draining the queues.
pub async fn enqueue_plan(
    plan: &plan::Plan,
    trigger: Trigger,
    deps: &Deps,
) -> Result<ValidateOutcome, StepError> {
    let run = run_id(&trigger);
    record_run(&deps.store, plan, &trigger).await?;
    // Units final by success are skipped; units final by failure are tried again.
    let failed: std::collections::HashSet<String> =
        failed_units(&deps.store, &run).await?.into_iter().collect();
    for unit in &failed {
        reopen(&deps.store, &run, unit).await?;
    }
    let finished: std::collections::HashSet<String> =
        final_units(&deps.store, &run).await?.into_iter().collect();
    raise_finals(&deps.store, &run, finished.len()).await?;
    let mut enqueued = 0;
    for unit in plan.units.iter().filter(|u| !finished.contains(&u.id)) {
        let message = CopyMessage {
            run: run.clone(),
            unit: unit.id.clone(),
        };
        deps.queues.copy.send(&encode(&message)).await?;
        enqueued += 1;
    }
    if enqueued == 0 {
        conclude_if_finished(deps, &run, plan.units.len()).await?;
    }
    tracing::info!(run, revision = %trigger.revision, units = plan.units.len(), enqueued, "run enqueued");
    Ok(ValidateOutcome::Accepted {
        run,
        revision: trigger.revision,
        units: plan.units.len(),
        enqueued,
    })
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
    record_run(&deps.store, plan, &trigger).await?;
    if final_units(&deps.store, &run)
        .await?
        .iter()
        .any(|u| u == unit)
    {
        reopen(&deps.store, &run, unit).await?;
    }
    let failure = UnitFailure {
        message: "re-driven by on-call (runs retry --unit)".to_owned(),
        retryable: true,
    };
    records::mark_unit_failed(&deps.store, &run, unit, failure).await?;
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
