//! The HTTP core of the registry client: building URLs, authenticating, limiting and retrying.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::auth::session::{Authenticator, CredentialSources};
use super::error::RegistryError;
use super::limits::{LimitConfig, Limits};
use super::retry::{RetryPolicy, is_retryable_status, parse_retry_after};
use crate::reference::Repository;

/// How the client talks to registries.
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    /// Hosts (`HOST[:PORT]`) to reach over plain HTTP besides loopback ones.
    pub insecure_hosts: Vec<String>,
    /// Per-host concurrency and rate limits.
    pub limits: LimitConfig,
    /// Retries on 429, 5xx and connection errors.
    pub retry: RetryPolicy,
}

/// Counts of requests sent, for reports and benchmarks.
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// Every request sent to a registry (retries and auth round trips included).
    pub total: AtomicU64,
    /// Requests answered 429 or 5xx and retried.
    pub retried: AtomicU64,
}

/// A registry client shared by every task of the process.
pub struct Client {
    pub(super) http: reqwest::Client,
    auth: Authenticator,
    limits: Limits,
    config: ClientConfig,
    /// Requests sent so far.
    pub counts: RequestCounts,
}

/// What a request is for: its repository and whether it writes.
pub(super) struct Target<'a> {
    pub repository: &'a Repository,
    pub push: bool,
    /// Another repository of the same host read from (a cross-repository mount).
    pub mount_from: Option<&'a str>,
}

impl Client {
    /// A client with `config`, drawing credentials from `credentials`.
    pub fn new(
        config: ClientConfig,
        credentials: CredentialSources,
    ) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("promoter/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|source| RegistryError::Transport {
                what: "building the HTTP client".to_owned(),
                source,
            })?;
        Ok(Client {
            http,
            auth: Authenticator::new(credentials),
            limits: Limits::new(config.limits),
            config,
            counts: RequestCounts::default(),
        })
    }

    /// The authenticator (token counts, for tests and reports).
    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    /// `https://HOST/v2/` or, for loopback and insecure hosts, `http://HOST/v2/`.
    pub(super) fn base_url(&self, host: &str) -> String {
        let plain =
            super::is_loopback(host) || self.config.insecure_hosts.iter().any(|h| h == host);
        format!("{}://{host}/v2/", if plain { "http" } else { "https" })
    }

    /// `BASE/PATH/KIND/REFERENCE`, e.g. `.../v2/foo/manifests/v1`.
    pub(super) fn url(&self, repository: &Repository, kind: &str, reference: &str) -> String {
        format!(
            "{}{}/{kind}/{reference}",
            self.base_url(repository.host()),
            repository.path()
        )
    }

    /// Resolves an upload `Location` (absolute or relative to the host) to a URL.
    pub(super) fn resolve_location(&self, host: &str, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            return location.to_owned();
        }
        let base = self.base_url(host);
        let origin = base.trim_end_matches("/v2/");
        if location.starts_with('/') {
            format!("{origin}{location}")
        } else {
            format!("{base}{location}")
        }
    }

    fn scopes(target: &Target<'_>) -> Vec<String> {
        let actions = if target.push { "pull,push" } else { "pull" };
        let mut scopes = vec![format!("repository:{}:{actions}", target.repository.path())];
        if let Some(from) = target.mount_from {
            scopes.push(format!("repository:{from}:pull"));
        }
        scopes
    }

    /// Sends a request built by `build`, with authentication, limits and retries.
    ///
    /// `build` is called once per try, so the body must be cheap to rebuild (no streams: see
    /// [`Client::send_once`]). Answers other than 401, 429 and 5xx are returned as they are,
    /// for the caller to interpret (404 often means "absent").
    pub(super) async fn send(
        &self,
        target: &Target<'_>,
        what: &(dyn Fn() -> String + Sync),
        build: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Sync),
    ) -> Result<Response, RegistryError> {
        let host = target.repository.host();
        let scopes = Self::scopes(target);
        let mut authenticated = false;
        let mut retry = 0;
        loop {
            let (request, sent_auth) = self.authorize(build(&self.http), host, &scopes).await?;
            let permit = self.limits.acquire(host).await;
            self.counts.total.fetch_add(1, Ordering::Relaxed);
            let sent = request.send().await;
            drop(permit);
            let wait = match sent {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    authenticated = true;
                    let challenge = header_str(response.headers().get(WWW_AUTHENTICATE));
                    self.auth
                        .on_unauthorized(
                            &self.http,
                            host,
                            &scopes,
                            challenge.as_deref(),
                            sent_auth.as_deref(),
                        )
                        .await?;
                    continue;
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    return Err(RegistryError::Auth {
                        host: host.to_owned(),
                        reason: format!("{}: still 401 Unauthorized with credentials", what()),
                    });
                }
                Ok(response) if is_retryable_status(response.status()) => {
                    if retry + 1 >= self.config.retry.attempts {
                        return Err(status_error(what(), response).await);
                    }
                    let after = header_str(response.headers().get(RETRY_AFTER))
                        .and_then(|v| parse_retry_after(&v, SystemTime::now()));
                    self.counts.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(status = %response.status(), request = %what(), "retrying");
                    after
                }
                Ok(response) => return Ok(response),
                Err(source) => {
                    if retry + 1 >= self.config.retry.attempts || !is_retryable_transport(&source) {
                        return Err(RegistryError::Transport {
                            what: what(),
                            source,
                        });
                    }
                    tracing::debug!(error = %source, request = %what(), "retrying");
                    None
                }
            };
            retry += 1;
            tokio::time::sleep(self.config.retry.delay(retry, wait)).await;
        }
    }

    /// Sends a request once (a streamed body cannot be replayed): authentication must already
    /// be known for the host, which the upload's first request (POST) ensured.
    pub(super) async fn send_once(
        &self,
        target: &Target<'_>,
        request: RequestBuilder,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Response, RegistryError> {
        let host = target.repository.host();
        let (request, _) = self.authorize(request, host, &Self::scopes(target)).await?;
        let permit = self.limits.acquire(host).await;
        self.counts.total.fetch_add(1, Ordering::Relaxed);
        let sent = request.send().await;
        drop(permit);
        sent.map_err(|source| RegistryError::Transport {
            what: what(),
            source,
        })
    }

    /// Adds the `Authorization` header known for `host` and `scopes`; returns it too.
    async fn authorize(
        &self,
        request: RequestBuilder,
        host: &str,
        scopes: &[String],
    ) -> Result<(RequestBuilder, Option<String>), RegistryError> {
        Ok(match self.auth.header(&self.http, host, scopes).await? {
            Some(value) => (
                request.header(reqwest::header::AUTHORIZATION, &value),
                Some(value),
            ),
            None => (request, None),
        })
    }
}

/// "GET https://host/v2/…" for messages.
pub(super) fn describe(method: &Method, url: &str) -> String {
    format!("{method} {url}")
}

fn header_str(value: Option<&HeaderValue>) -> Option<String> {
    value.and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn is_retryable_transport(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

/// Turns an unexpected answer into an error carrying the start of its body.
pub(super) async fn status_error(what: String, response: Response) -> RegistryError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let mut detail: String = body.trim().chars().take(300).collect();
    if detail.len() < body.trim().len() {
        detail.push('…');
    }
    RegistryError::Status {
        what,
        status,
        detail,
    }
}
