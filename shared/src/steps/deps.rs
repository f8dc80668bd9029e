//! What the step handlers need, built once per process: state, the registry client, the
//! queues, the signer, the notification sinks, and settings.
//!
//! A Lambda function builds its [`Deps`] from the environment ([`Deps::from_env`]); the CLI and
//! the tests build them from values. Every setting is an environment variable named
//! `PROMOTER_*` (listed on [`Deps::from_env`]), so one function's configuration reads the same
//! in a SAM template, a shell and a test.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::notify::Notifier;
use crate::queue::{MemoryQueue, Queue, SqsQueue};
use crate::registry::auth::docker_config::DockerConfig;
use crate::registry::auth::ecr::EcrCredentials;
use crate::registry::auth::google::GoogleCredentials;
use crate::registry::auth::session::CredentialSources;
use crate::registry::limits::LimitConfig;
use crate::registry::{Client, ClientConfig};
use crate::sign::keys::VerifyingKey;
use crate::sign::{KeySource, Signer};
use crate::state::StateStore;

use super::error::StepError;

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
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn list(name: &str) -> Vec<String> {
    var(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn config_error(variable: &'static str, reason: impl ToString) -> StepError {
    StepError::Config {
        variable,
        reason: reason.to_string(),
    }
}

impl Deps {
    /// Builds everything from the environment:
    ///
    /// - `PROMOTER_STATE`: `file:///path`, a folder, `s3://bucket/prefix`, `gs://bucket/prefix`
    ///   (default `.promoter`, except under Lambda, where it must be set);
    /// - `PROMOTER_COPY_QUEUE_URL`, `PROMOTER_SIGN_QUEUE_URL`, `PROMOTER_NOTIFY_QUEUE_URL`: SQS
    ///   queue URLs (unset: an in-process queue, whose messages an on-call `promoter invoke`
    ///   prints);
    /// - `PROMOTER_SIGN_KEY` (a key file or `awskms:///KEY`), `PROMOTER_SIGN_IDENTITIES`
    ///   (`PREFIX=CANONICAL,…`), `PROMOTER_SIGN_INDEX_CHILDREN` (`true`),
    ///   `PROMOTER_REQUIRE_SIGNATURE` (a maintainer's public key file);
    /// - `PROMOTER_INSECURE_REGISTRIES`, `PROMOTER_ECR_REGISTRIES`, `PROMOTER_GOOGLE_REGISTRIES`
    ///   (comma-separated hosts), `PROMOTER_MAX_REQUESTS_PER_SECOND`;
    /// - the [`Settings`] variables and the notification sinks' ([`Notifier::from_env`]).
    ///
    /// AWS clients read the usual AWS variables (`AWS_REGION`, `AWS_ENDPOINT_URL_SQS`, …).
    pub async fn from_env() -> Result<Deps, StepError> {
        let state = match var("PROMOTER_STATE") {
            Some(url) => url,
            // Under Lambda the working folder is read-only and lost: state must be named.
            None if var("AWS_LAMBDA_FUNCTION_NAME").is_some() => {
                return Err(config_error(
                    "PROMOTER_STATE",
                    "not set; a function keeps its state in s3://BUCKET/PREFIX or gs://BUCKET/PREFIX",
                ));
            }
            None => ".promoter".to_owned(),
        };
        let store = StateStore::open(&state).await?;
        let client = Arc::new(client_from_env().await?);
        let queues = queues_from_env().await;
        let signer = signer_from_env().await?;
        let required_signature = match var("PROMOTER_REQUIRE_SIGNATURE") {
            Some(path) => Some(
                VerifyingKey::from_pem_file(std::path::Path::new(&path))
                    .map_err(|e| config_error("PROMOTER_REQUIRE_SIGNATURE", e))?,
            ),
            None => None,
        };
        let notifier = Notifier::from_env()
            .await
            .map_err(|e| config_error("PROMOTER_*_WEBHOOK/SNS", e))?;
        let settings = settings_from_env()?;
        Ok(Deps {
            store,
            client,
            queues,
            signer,
            required_signature,
            notifier,
            settings,
            http: github_http_client()?,
        })
    }
}

/// The HTTP client used for GitHub (rustls, a User-Agent GitHub requires).
pub fn github_http_client() -> Result<reqwest::Client, StepError> {
    reqwest::Client::builder()
        .user_agent(concat!("promoter/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| config_error("HTTP client", e))
}

/// Plain settings from `PROMOTER_*` variables.
pub fn settings_from_env() -> Result<Settings, StepError> {
    let defaults = Settings::default();
    let lease_ttl = match var("PROMOTER_LEASE_SECONDS") {
        Some(v) => Duration::from_secs(
            v.parse::<u64>()
                .map_err(|e| config_error("PROMOTER_LEASE_SECONDS", e))?
                .max(3),
        ),
        None => defaults.lease_ttl,
    };
    Ok(Settings {
        branch: var("PROMOTER_BRANCH").unwrap_or(defaults.branch),
        github_webhook_secret: var("PROMOTER_GITHUB_WEBHOOK_SECRET"),
        github_api: var("PROMOTER_GITHUB_API")
            .map(|v| v.trim_end_matches('/').to_owned())
            .unwrap_or(defaults.github_api),
        github_token: var("PROMOTER_GITHUB_TOKEN"),
        manifests_dir: var("PROMOTER_MANIFESTS_DIR").unwrap_or_default(),
        audit_token: var("PROMOTER_AUDIT_TOKEN"),
        lease_ttl,
    })
}

async fn client_from_env() -> Result<Client, StepError> {
    let docker = DockerConfig::load().map_err(|e| config_error("DOCKER_CONFIG", e))?;
    let requests_per_second = match var("PROMOTER_MAX_REQUESTS_PER_SECOND") {
        Some(v) => NonZeroU32::new(
            v.parse::<u32>()
                .map_err(|e| config_error("PROMOTER_MAX_REQUESTS_PER_SECOND", e))?,
        ),
        None => None,
    };
    let config = ClientConfig {
        insecure_hosts: list("PROMOTER_INSECURE_REGISTRIES"),
        limits: LimitConfig {
            requests_per_second,
            ..LimitConfig::default()
        },
        ..ClientConfig::default()
    };
    let sources = CredentialSources {
        docker,
        ecr: Some(EcrCredentials::from_env(list("PROMOTER_ECR_REGISTRIES")).await),
        google: Some(GoogleCredentials::from_env(list(
            "PROMOTER_GOOGLE_REGISTRIES",
        ))),
        ..CredentialSources::default()
    };
    Client::new(config, sources).map_err(StepError::Registry)
}

async fn queues_from_env() -> Queues {
    let urls = [
        var("PROMOTER_COPY_QUEUE_URL"),
        var("PROMOTER_SIGN_QUEUE_URL"),
        var("PROMOTER_NOTIFY_QUEUE_URL"),
    ];
    let aws = if urls.iter().any(Option::is_some) {
        Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
    } else {
        None
    };
    let make = |url: &Option<String>| match (url, &aws) {
        (Some(url), Some(config)) => Queue::Sqs(Box::new(SqsQueue::new(config, url.clone()))),
        _ => Queue::Memory(MemoryQueue::default()),
    };
    Queues {
        copy: make(&urls[0]),
        sign: make(&urls[1]),
        notify: make(&urls[2]),
    }
}

async fn signer_from_env() -> Result<Option<Arc<Signer>>, StepError> {
    let Some(reference) = var("PROMOTER_SIGN_KEY") else {
        return Ok(None);
    };
    let key = KeySource::open(&reference).await?;
    let identities = list("PROMOTER_SIGN_IDENTITIES")
        .into_iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(p, c)| (p.to_owned(), c.to_owned()))
                .ok_or_else(|| {
                    config_error(
                        "PROMOTER_SIGN_IDENTITIES",
                        format!("{pair:?} is not PREFIX=CANONICAL"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let children = var("PROMOTER_SIGN_INDEX_CHILDREN").is_some_and(|v| v == "true" || v == "1");
    Ok(Some(Arc::new(
        Signer::new(key, identities).await?.with_children(children),
    )))
}
