//! Per-host request limits shared by every request the process makes: a concurrency limit
//! (requests in flight, headers round trip) and a rate limit (requests per second).
//!
//! Registries throttle by host (Artifact Registry answers 429 past its quota; the Kubernetes
//! promoter needs ~50 req/s against it), so the limits are keyed by `HOST[:PORT]` and shared by
//! copying, observing and signing alike. A permit covers sending a request and receiving the
//! response headers, not streaming a body: a blob being streamed from staging to production
//! holds no permit, so a fan-out can never wait on itself.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ecr_quota::EcrAction;

/// Requests per second per host for Google's registries (`gcr.io`, `*.gcr.io`, `*.pkg.dev`)
/// when no rate is configured: Artifact Registry's per-project quota throttles past roughly
/// this (the Kubernetes promoter settled on ~50 req/s).
pub const GOOGLE_REQUESTS_PER_SECOND: u32 = 50;

/// Limits applied to each registry host.
///
/// The rate limit is there to stay inside a registry's quota, and only quota'd registries have
/// one by default: Google's (see [`GOOGLE_REQUESTS_PER_SECOND`]). ECR meters each API action
/// on its own, and is paced per action instead ([`Limits::pace`], [`super::ecr_quota`]). Other
/// hosts (Docker Hub mirrors, self-hosted registries) are limited only by `concurrency` unless
/// a rate is set; every 429 answer is still honoured through `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitConfig {
    /// Requests in flight per host.
    pub concurrency: usize,
    /// Requests started per second per host (with a burst of the same size), for every host;
    /// `None` for the defaults above.
    pub requests_per_second: Option<NonZeroU32>,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            concurrency: 32,
            requests_per_second: None,
        }
    }
}

impl LimitConfig {
    /// The rate limit for `host`, if any.
    pub fn rate_for(&self, host: &str) -> Option<NonZeroU32> {
        self.requests_per_second.or_else(|| {
            let name = host.split(':').next().unwrap_or(host);
            let google =
                name == "gcr.io" || name.ends_with(".gcr.io") || name.ends_with(".pkg.dev");
            google
                .then(|| NonZeroU32::new(GOOGLE_REQUESTS_PER_SECOND))
                .flatten()
        })
    }
}

struct HostLimit {
    in_flight: Arc<Semaphore>,
    rate: Option<DefaultDirectRateLimiter>,
}

/// The limits of every host seen so far.
pub struct Limits {
    config: LimitConfig,
    hosts: Mutex<HashMap<String, Arc<HostLimit>>>,
    /// ECR's per-action rates, per host (see [`super::ecr_quota`]).
    actions: Mutex<HashMap<(String, EcrAction), Arc<DefaultDirectRateLimiter>>>,
}

/// Permission to send one request to a host; dropping it frees the slot.
pub struct Permit {
    _in_flight: Option<OwnedSemaphorePermit>,
}

impl Limits {
    /// Limits with `config` for every host.
    pub fn new(config: LimitConfig) -> Self {
        Limits {
            config,
            hosts: Mutex::new(HashMap::new()),
            actions: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a token of ECR action `action`'s rate on `host` (its default quota, with a
    /// burst of the same size).
    pub async fn pace(&self, host: &str, action: EcrAction) {
        let limiter = {
            let mut actions = self
                .actions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(actions.entry((host.to_owned(), action)).or_insert_with(|| {
                Arc::new(RateLimiter::direct(Quota::per_second(action.per_second())))
            }))
        };
        limiter.until_ready().await;
    }

    /// Waits for a concurrency slot and a rate token for `host`.
    pub async fn acquire(&self, host: &str) -> Permit {
        let limit = self.host(host);
        // `acquire_owned` fails only on a closed semaphore, and these are never closed.
        let permit = Arc::clone(&limit.in_flight).acquire_owned().await.ok();
        if let Some(rate) = &limit.rate {
            rate.until_ready().await;
        }
        Permit { _in_flight: permit }
    }

    fn host(&self, host: &str) -> Arc<HostLimit> {
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let config = self.config;
        Arc::clone(hosts.entry(host.to_owned()).or_insert_with(|| {
            Arc::new(HostLimit {
                in_flight: Arc::new(Semaphore::new(config.concurrency.max(1))),
                rate: config
                    .rate_for(host)
                    .map(|rate| RateLimiter::direct(Quota::per_second(rate))),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn rate_limit_spaces_requests_per_host() {
        let limits = Limits::new(LimitConfig {
            concurrency: 4,
            requests_per_second: NonZeroU32::new(20),
        });
        let start = Instant::now();
        // The burst is 20; 30 requests need at least ~0.5 s more at 20/s.
        for _ in 0..30 {
            drop(limits.acquire("a:1").await);
        }
        assert!(start.elapsed().as_millis() >= 400, "{:?}", start.elapsed());
        // Another host has its own budget.
        let other = Instant::now();
        drop(limits.acquire("b:1").await);
        assert!(other.elapsed().as_millis() < 50);
    }

    #[test]
    fn google_hosts_are_rate_limited_by_default_others_not() {
        let config = LimitConfig::default();
        assert_eq!(
            config.rate_for("us-docker.pkg.dev").map(NonZeroU32::get),
            Some(50)
        );
        assert_eq!(config.rate_for("gcr.io").map(NonZeroU32::get), Some(50));
        assert_eq!(
            config.rate_for("eu.gcr.io:443").map(NonZeroU32::get),
            Some(50)
        );
        assert_eq!(config.rate_for("127.0.0.1:5000"), None);
        assert_eq!(config.rate_for("123.dkr.ecr.us-east-1.amazonaws.com"), None);
        let set = LimitConfig {
            requests_per_second: NonZeroU32::new(7),
            ..config
        };
        assert_eq!(set.rate_for("127.0.0.1:5000").map(NonZeroU32::get), Some(7));
    }

    #[tokio::test]
    async fn ecr_actions_are_paced_each_at_its_own_rate() {
        let limits = Limits::new(LimitConfig::default());
        let start = Instant::now();
        // PutImage: 10/s with a burst of 10; 13 need about 0.3 s more.
        for _ in 0..13 {
            limits.pace("ecr:1", EcrAction::PutImage).await;
        }
        assert!(start.elapsed().as_millis() >= 250, "{:?}", start.elapsed());
        // Another action, or the same one on another host, has its own budget.
        let other = Instant::now();
        for _ in 0..50 {
            limits.pace("ecr:1", EcrAction::BatchGetImage).await;
        }
        limits.pace("ecr:2", EcrAction::PutImage).await;
        assert!(other.elapsed().as_millis() < 50, "{:?}", other.elapsed());
    }

    #[tokio::test]
    async fn concurrency_limit_holds_back_the_next_request() {
        let limits = Limits::new(LimitConfig {
            concurrency: 2,
            ..LimitConfig::default()
        });
        let a = limits.acquire("h").await;
        let _b = limits.acquire("h").await;
        let third =
            tokio::time::timeout(std::time::Duration::from_millis(50), limits.acquire("h")).await;
        assert!(
            third.is_err(),
            "a third request waits while two are in flight"
        );
        drop(a);
        let third =
            tokio::time::timeout(std::time::Duration::from_millis(50), limits.acquire("h")).await;
        assert!(third.is_ok());
    }
}
