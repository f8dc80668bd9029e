//! The HTTP core of the registry client: building URLs, authenticating, limiting and retrying.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use reqwest::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Request, RequestBuilder, Response, StatusCode};

use super::auth::session::{Authenticator, CredentialSources};
use super::ecr_quota::EcrAction;
use super::error::RegistryError;
use super::limits::{LimitConfig, Limits};
use crate::http::retry::{
    RetryPolicy, is_retryable_status, is_retryable_transport, parse_retry_after,
};
use crate::http::{self, Origin, Timeouts, limits};
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
    /// Connect, idle and whole-request timeouts.
    pub timeouts: Timeouts,
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
        let http = http::client(&config.timeouts).map_err(|source| RegistryError::Transport {
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
        format!("{}://{host}/v2/", self.scheme(host))
    }

    fn scheme(&self, host: &str) -> &'static str {
        let plain =
            super::is_loopback(host) || self.config.insecure_hosts.iter().any(|h| h == host);
        if plain { "http" } else { "https" }
    }

    /// The origin the credentials of `host` belong to.
    fn origin(&self, host: &str) -> Option<Origin> {
        Origin::parse(&self.base_url(host))
    }

    /// The time a blob or archive transfer may take in all.
    pub(super) fn transfer_timeout(&self) -> std::time::Duration {
        self.config.timeouts.transfer
    }

    /// `BASE/PATH/KIND/REFERENCE`, e.g. `.../v2/foo/manifests/v1`.
    pub(super) fn url(&self, repository: &Repository, kind: &str, reference: &str) -> String {
        format!(
            "{}{}/{kind}/{reference}",
            self.base_url(repository.host()),
            repository.path()
        )
    }

    /// Resolves a URL the registry of `host` named (an upload `Location`, a `Link`), absolute
    /// or relative to the host, refusing one that would go from https to plain http.
    pub(super) fn resolve_location(
        &self,
        host: &str,
        location: &str,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<String, RegistryError> {
        let base = self.base_url(host);
        if location.starts_with("http://") || location.starts_with("https://") {
            if base.starts_with("https://") && location.starts_with("http://") {
                return Err(RegistryError::Insecure {
                    what: what(),
                    url: location.to_owned(),
                });
            }
            return Ok(location.to_owned());
        }
        let origin = base.trim_end_matches("/v2/");
        Ok(if location.starts_with('/') {
            format!("{origin}{location}")
        } else {
            format!("{base}{location}")
        })
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
        if target.push {
            self.auth.ensure_repository(target.repository).await?;
        }
        let scopes = Self::scopes(target);
        let secure = self.scheme(host) == "https";
        let started = Instant::now();
        let mut authenticated = false;
        let mut retry = 0;
        loop {
            let request = build(&self.http)
                .build()
                .map_err(|source| RegistryError::Transport {
                    what: what(),
                    source,
                })?;
            if self.auth.is_ecr(host)
                && let Some(action) = EcrAction::of(request.method(), request.url().path())
            {
                self.limits.pace(host, action).await;
            }
            let (request, sent_auth) = self.authorize(request, host, &scopes).await?;
            let permit = self.limits.acquire(host).await;
            self.counts.total.fetch_add(1, Ordering::Relaxed);
            let sent = self.http.execute(request).await;
            drop(permit);
            let wait = match sent {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    authenticated = true;
                    let challenge = header_str(response.headers().get(WWW_AUTHENTICATE));
                    self.auth
                        .on_unauthorized(
                            &self.http,
                            host,
                            secure,
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
                    let after = header_str(response.headers().get(RETRY_AFTER))
                        .and_then(|v| parse_retry_after(&v, SystemTime::now()));
                    let Some(wait) = self.config.retry.next_wait(retry + 1, after, started) else {
                        return Err(status_error(what(), response).await);
                    };
                    self.counts.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(status = %response.status(), request = %what(), "retrying");
                    wait
                }
                Ok(response) => return Ok(response),
                Err(source) => {
                    let wait = self.config.retry.next_wait(retry + 1, None, started);
                    let Some(wait) = wait.filter(|_| is_retryable_transport(&source)) else {
                        return Err(RegistryError::Transport {
                            what: what(),
                            source,
                        });
                    };
                    tracing::debug!(error = %source, request = %what(), "retrying");
                    wait
                }
            };
            retry += 1;
            tokio::time::sleep(wait).await;
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
        let request = request.build().map_err(|source| RegistryError::Transport {
            what: what(),
            source,
        })?;
        let (request, _) = self.authorize(request, host, &Self::scopes(target)).await?;
        let permit = self.limits.acquire(host).await;
        self.counts.total.fetch_add(1, Ordering::Relaxed);
        let sent = self.http.execute(request).await;
        drop(permit);
        sent.map_err(|source| RegistryError::Transport {
            what: what(),
            source,
        })
    }

    /// Adds the `Authorization` header known for `host` and `scopes`, and returns it too, when
    /// the request goes to `host`'s own origin: a URL the registry named (an upload `Location`,
    /// a `Link`) on another host, port or scheme is sent without credentials.
    async fn authorize(
        &self,
        mut request: Request,
        host: &str,
        scopes: &[String],
    ) -> Result<(Request, Option<String>), RegistryError> {
        if self.origin(host).as_ref() != Some(&Origin::of(request.url())) {
            tracing::debug!(url = %request.url(), host, "another origin: no credentials");
            return Ok((request, None));
        }
        let Some(value) = self.auth.header(&self.http, host, scopes).await? else {
            return Ok((request, None));
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| RegistryError::Auth {
            host: host.to_owned(),
            reason: "the credential is not a valid header value".to_owned(),
        })?;
        header.set_sensitive(true);
        request
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, header);
        Ok((request, Some(value)))
    }
}

/// "GET https://host/v2/…" for messages.
pub(super) fn describe(method: &Method, url: &str) -> String {
    format!("{method} {url}")
}

fn header_str(value: Option<&HeaderValue>) -> Option<String> {
    value.and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Turns an unexpected answer into an error carrying the start of its body.
pub(super) async fn status_error(what: String, response: Response) -> RegistryError {
    let status = response.status();
    let body = http::read_prefix(response, limits::ERROR_BODY).await;
    // Control characters become spaces: the text ends up in records, terminals and notices.
    let mut detail: String = body
        .trim()
        .chars()
        .take(300)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if detail.len() < body.trim().len() {
        detail.push('…');
    }
    RegistryError::Status {
        what,
        status,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_may_not_leave_https() {
        let client =
            Client::new(ClientConfig::default(), CredentialSources::default()).expect("a client");
        let what = || "POST https://registry.example/v2/app/blobs/uploads/".to_owned();
        let refused = client
            .resolve_location(
                "registry.example",
                "http://registry.example/upload/1",
                &what,
            )
            .expect_err("a downgrade");
        assert!(
            matches!(refused, RegistryError::Insecure { .. }),
            "{refused}"
        );
        assert_eq!(
            client
                .resolve_location("registry.example", "/upload/1?x=1", &what)
                .expect("relative"),
            "https://registry.example/upload/1?x=1"
        );
        assert_eq!(
            client
                .resolve_location("127.0.0.1:5000", "http://127.0.0.1:5000/u", &what)
                .expect("plain http on loopback"),
            "http://127.0.0.1:5000/u"
        );
    }
}
