//! The command line's options as the library's one configuration type
//! ([`promoter::steps::Config`]): every command that reaches registries, state or a key builds
//! its dependencies through [`promoter::steps::Deps::build`] from what this module fills in.
//!
//! The options read the same `PROMOTER_*` variables as the functions (clap's `env`); what the
//! command line has no option for (GitHub, notification sinks, queue URLs) comes from the
//! environment as for a function, except the queues: the CLI always chains the steps over
//! queues in this process.

use std::num::NonZeroU32;
use std::time::Duration;

use promoter::http::Timeouts;
use promoter::registry::Client;
use promoter::steps::config::{
    QueueUrls, RegistryConfig, SigningConfig, registry_client, settings_from_env,
};
use promoter::steps::{Config, Settings};

use crate::cli::{PromoteArgs, RegistryArgs, StateArgs};

/// How registries are reached, from the command line (and, for creating ECR repositories,
/// `PROMOTER_ECR_TAG_MUTABILITY` and `PROMOTER_ECR_SCAN_ON_PUSH`).
pub fn registries(args: &RegistryArgs) -> anyhow::Result<RegistryConfig> {
    Ok(RegistryConfig {
        insecure_hosts: args.insecure_registries.clone(),
        ecr_registries: args.ecr_registries.clone(),
        google_registries: args.google_registries.clone(),
        max_concurrent_requests: args.max_concurrent_requests,
        max_requests_per_second: args.max_requests_per_second.and_then(NonZeroU32::new),
        ecr_repositories: promoter::steps::config::ecr_repository_settings()?,
    })
}

/// The HTTP timeouts the command line asks for.
pub fn timeouts(args: &RegistryArgs) -> Timeouts {
    Timeouts::with_request(Duration::from_secs(args.request_timeout))
}

/// The registry client the command line asks for.
pub async fn client(args: &RegistryArgs) -> anyhow::Result<Client> {
    Ok(registry_client(&registries(args)?, &timeouts(args)).await?)
}

/// The steps' settings: the environment's, with the lease the command line gives.
fn settings(state: &StateArgs) -> anyhow::Result<Settings> {
    Ok(Settings {
        lease_ttl: Duration::from_secs(state.lease_seconds.max(3)),
        ..settings_from_env()?
    })
}

/// `promoter promote`'s configuration: state in memory with `--no-state` (or a dry run, which
/// records nothing), the given state otherwise.
pub fn promote(args: &PromoteArgs) -> anyhow::Result<Config> {
    let state = if args.no_state || args.dry_run {
        "memory://".to_owned()
    } else {
        args.state.url.clone()
    };
    Ok(Config {
        state,
        registries: registries(&args.registries)?,
        signing: SigningConfig {
            key: args.key.clone(),
            identities: args.sign_identities.clone(),
            index_children: args.sign_index_children,
            require_signature: args.require_signature.clone(),
            format: args.signature_format,
            no_attestations: args.no_attestations,
        },
        queues: QueueUrls::default(),
        settings: Settings {
            full: args.full || settings_from_env()?.full,
            ..settings(&args.state)?
        },
        timeouts: timeouts(&args.registries),
    })
}

/// `promoter runs retry`'s configuration: the recorded state, and a signer when given a key.
pub fn retry(
    state: &StateArgs,
    registries_args: &RegistryArgs,
    key: Option<String>,
    identities: Vec<(String, String)>,
) -> anyhow::Result<Config> {
    Ok(Config {
        state: state.url.clone(),
        registries: registries(registries_args)?,
        signing: SigningConfig {
            key,
            identities,
            ..SigningConfig::default()
        },
        queues: QueueUrls::default(),
        settings: settings(state)?,
        timeouts: timeouts(registries_args),
    })
}

/// `promoter runs redrive`'s configuration: the recorded state and copy-digest's SQS queue
/// (the AWS way: region, credentials, `AWS_ENDPOINT_URL_SQS`).
pub fn redrive(state: &StateArgs, copy_queue_url: String) -> anyhow::Result<Config> {
    Ok(Config {
        state: state.url.clone(),
        queues: QueueUrls {
            copy: Some(copy_queue_url),
            ..QueueUrls::default()
        },
        settings: settings(state)?,
        ..Config::default()
    })
}
