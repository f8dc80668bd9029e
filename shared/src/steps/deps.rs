//! What the step handlers need, built once per process: state, the registry client, the
//! queues, the signer, the notification sinks, and settings.
//!
//! [`Deps::build`] (in [`super::config`]) makes them from a [`super::config::Config`], filled
//! from the environment by a Lambda function and from the command line by the CLI; tests build
//! them from values.

use std::sync::Arc;
use std::time::Duration;

use crate::notify::Notifier;
use crate::queue::{MemoryQueue, Queue};
use crate::registry::Client;
use crate::sign::Signer;
use crate::sign::keys::VerifyingKey;
use crate::state::StateStore;

/// The queues between the steps.
pub struct Queues {
    /// validate-manifest → copy-digest: one message per unit.
    pub copy: Queue,
    /// copy-digest → sign: one message per promoted unit.
    pub sign: Queue,
    /// sign, copy-digest, audit → notify.
    pub notify: Queue,
}

impl Queues {
    /// Three in-process queues (the embedded default).
    pub fn in_memory() -> Self {
        Queues {
            copy: Queue::Memory(MemoryQueue::default()),
            sign: Queue::Memory(MemoryQueue::default()),
            notify: Queue::Memory(MemoryQueue::default()),
        }
    }
}

/// Settings of the steps that are plain values.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The branch whose pushes are promoted (`PROMOTER_BRANCH`, default `main`).
    pub branch: String,
    /// The GitHub webhook secret (`PROMOTER_GITHUB_WEBHOOK_SECRET`); webhooks are refused
    /// without one.
    pub github_webhook_secret: Option<String>,
    /// GitHub's API base (`PROMOTER_GITHUB_API`, default `https://api.github.com`; GitHub
    /// Enterprise: `https://HOST/api/v3`).
    pub github_api: String,
    /// A token to read the manifest repository (`PROMOTER_GITHUB_TOKEN`); none for a public one.
    pub github_token: Option<String>,
    /// The manifests' folder inside the repository or prefix (`PROMOTER_MANIFESTS_DIR`, default
    /// the root).
    pub manifests_dir: String,
    /// The bearer token registries' notifications must carry (`PROMOTER_AUDIT_TOKEN`).
    pub audit_token: Option<String>,
    /// How long a unit's lease lasts without renewal (`PROMOTER_LEASE_SECONDS`, default 60).
    pub lease_ttl: Duration,
    /// Plan every unit of the manifests, not only what the promoted ledger does not hold yet
    /// (`PROMOTER_FULL_RUNS=true`; `promoter promote --full`): production is then observed
    /// whole, which repairs what was changed there behind the promoter's back.
    pub full: bool,
    /// What the chain's sign function adds to each digest, for a function that has no signer
    /// of its own but plans for one (validate-manifest: `PROMOTER_CHAIN_SIGNS=true`, with the
    /// sign function's `PROMOTER_SIGNATURE_FORMAT` and `PROMOTER_NO_ATTESTATIONS`), so that its
    /// incremental plans include digests promoted without them.
    pub chain_signing: Option<crate::plan::incremental::Needs>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            branch: "main".to_owned(),
            github_webhook_secret: None,
            github_api: "https://api.github.com".to_owned(),
            github_token: None,
            manifests_dir: String::new(),
            audit_token: None,
            lease_ttl: Duration::from_secs(60),
            full: false,
            chain_signing: None,
        }
    }
}

/// Everything a step handler uses.
pub struct Deps {
    /// Where runs, units, leases, the desired state and audit records live.
    pub store: StateStore,
    /// The registry client (shared limits and token caches).
    pub client: Arc<Client>,
    /// The queues between the steps.
    pub queues: Queues,
    /// Signs promoted digests; `None` when signing is off (copy-digest then skips sign).
    pub signer: Option<Arc<Signer>>,
    /// A maintainer's key every staging digest must be signed with, if any.
    pub required_signature: Option<VerifyingKey>,
    /// The notification sinks.
    pub notifier: Notifier,
    /// Plain settings.
    pub settings: Settings,
    /// HTTP client for GitHub.
    pub http: reqwest::Client,
    /// The runs this worker has read.
    pub runs: super::run_cache::RunCache,
}

#[cfg(test)]
impl Deps {
    /// Dependencies for unit tests: state and queues in memory, no sink, no signer, a client
    /// that reaches nothing unless a test gives it a loopback registry.
    pub(crate) fn in_memory() -> Deps {
        Deps {
            store: crate::state::StateStore::from(crate::state::MemoryStore::default()),
            client: std::sync::Arc::new(
                crate::registry::Client::new(
                    crate::registry::ClientConfig::default(),
                    crate::registry::auth::session::CredentialSources::default(),
                )
                .expect("a client"),
            ),
            queues: Queues::in_memory(),
            signer: None,
            required_signature: None,
            notifier: crate::notify::Notifier::new(Vec::new(), None),
            settings: Settings::default(),
            http: reqwest::Client::new(),
            runs: Default::default(),
        }
    }
}
