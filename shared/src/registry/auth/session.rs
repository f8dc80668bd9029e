//! Authenticating requests: learn each host's scheme from its `401` challenge, then send Basic
//! credentials or a scoped bearer token, cached until shortly before it expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::challenge::{self, BearerChallenge, Challenge, TokenResponse};
use super::docker_config::{Credential, DockerConfig};
use super::ecr::EcrCredentials;
use super::google::GoogleCredentials;
use crate::registry::error::RegistryError;

/// Where credentials come from, tried in order: explicit ones, Docker's config (with its
/// credential helpers, as `docker login` and `docker-credential-gcr`/`ecr-login` leave them),
/// then the clouds' own: ECR's `GetAuthorizationToken` for ECR hosts, Google's access token
/// (key file, gcloud, metadata server) for `gcr.io` and `*.pkg.dev`. The same order as
/// crane's keychains: what the user configured wins over what the environment provides.
#[derive(Default)]
pub struct CredentialSources {
    /// Credentials given explicitly, by host (e.g. from flags or the environment).
    pub explicit: HashMap<String, Credential>,
    /// Docker's `config.json`, with its credential helpers.
    pub docker: Option<DockerConfig>,
    /// Amazon ECR tokens, for ECR hosts.
    pub ecr: Option<EcrCredentials>,
    /// Google access tokens, for Container Registry and Artifact Registry hosts.
    pub google: Option<GoogleCredentials>,
}

impl CredentialSources {
    async fn lookup(&self, host: &str) -> Result<Option<Credential>, RegistryError> {
        if let Some(credential) = self.explicit.get(host) {
            return Ok(Some(credential.clone()));
        }
        if let Some(docker) = &self.docker {
            let found =
                docker
                    .credential_for(host)
                    .await
                    .map_err(|source| RegistryError::Credentials {
                        host: host.to_owned(),
                        source,
                    })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        if let Some(ecr) = self.ecr.as_ref().filter(|e| e.handles(host)) {
            return ecr.credential(host).await.map(Some).map_err(|source| {
                RegistryError::EcrCredentials {
                    host: host.to_owned(),
                    source: Box::new(source),
                }
            });
        }
        if let Some(google) = self.google.as_ref().filter(|g| g.handles(host)) {
            return google.credential(host).await.map(Some).map_err(|source| {
                RegistryError::GoogleCredentials {
                    host: host.to_owned(),
                    source,
                }
            });
        }
        Ok(None)
    }
}

/// What a host asked for in its last challenge.
#[derive(Clone)]
enum Scheme {
    Basic,
    Bearer(BearerChallenge),
}

/// (host, sorted scopes): what a token is for.
type TokenKey = (String, String);

/// A cached bearer token.
struct Token {
    value: String,
    refresh_at: Instant,
}

/// Per-host authentication state, shared by every request of the process.
pub struct Authenticator {
    sources: CredentialSources,
    credentials: tokio::sync::Mutex<HashMap<String, Option<Credential>>>,
    schemes: Mutex<HashMap<String, Scheme>>,
    tokens: Mutex<HashMap<TokenKey, Token>>,
    /// One fetch at a time per (host, scopes): concurrent requests share its token.
    fetching: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<()>>>>,
    token_requests: std::sync::atomic::AtomicU64,
}

impl Authenticator {
    /// True for hosts whose credentials are ECR tokens (ECR hosts, and the extra ones named).
    pub fn is_ecr(&self, host: &str) -> bool {
        self.sources.ecr.as_ref().is_some_and(|e| e.handles(host))
    }

    /// Every image of `repository` from ECR's API when its host is an ECR host (empty when the
    /// repository does not exist); `None` for other hosts.
    pub async fn ecr_images(
        &self,
        repository: &crate::reference::Repository,
    ) -> Result<Option<Vec<super::ecr::EcrImage>>, RegistryError> {
        let host = repository.host();
        let Some(ecr) = self.sources.ecr.as_ref().filter(|e| e.handles(host)) else {
            return Ok(None);
        };
        let images = ecr
            .describe_images(host, repository.path())
            .await
            .map_err(|source| RegistryError::EcrCredentials {
                host: host.to_owned(),
                source: Box::new(source),
            })?;
        Ok(Some(images.unwrap_or_default()))
    }

    /// Makes sure `repository` exists before it is written, on registries that do not create
    /// repositories on push (ECR: [`EcrCredentials::ensure_repository`]); nothing elsewhere.
    pub async fn ensure_repository(
        &self,
        repository: &crate::reference::Repository,
    ) -> Result<(), RegistryError> {
        let host = repository.host();
        if let Some(ecr) = self.sources.ecr.as_ref().filter(|e| e.handles(host)) {
            ecr.ensure_repository(host, repository.path())
                .await
                .map_err(|source| RegistryError::EcrCredentials {
                    host: host.to_owned(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    /// An authenticator drawing credentials from `sources`.
    pub fn new(sources: CredentialSources) -> Self {
        Authenticator {
            sources,
            credentials: tokio::sync::Mutex::new(HashMap::new()),
            schemes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            token_requests: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many tokens were fetched so far (for tests and benchmarks: tokens are cached).
    pub fn token_requests(&self) -> u64 {
        self.token_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The `Authorization` header for a request to `host` needing `scopes`, if known yet.
    ///
    /// Once a host is known to use bearer tokens, a token for new scopes is fetched up front,
    /// sparing the registry a `401` round trip per repository.
    pub async fn header(
        &self,
        http: &reqwest::Client,
        host: &str,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let scheme = lock(&self.schemes).get(host).cloned();
        match scheme {
            None => Ok(None),
            Some(Scheme::Basic) => Ok(self.credential(host).await?.as_ref().map(basic_header)),
            Some(Scheme::Bearer(challenge)) => {
                if let Some(token) = self.cached_token(host, scopes) {
                    return Ok(Some(token));
                }
                self.fetch_once(http, host, &challenge, scopes, None)
                    .await?;
                Ok(self.cached_token(host, scopes))
            }
        }
    }

    fn cached_token(&self, host: &str, scopes: &[String]) -> Option<String> {
        let key = (host.to_owned(), scope_key(scopes));
        lock(&self.tokens)
            .get(&key)
            .filter(|t| Instant::now() < t.refresh_at)
            .map(|t| format!("Bearer {}", t.value))
    }

    /// Handles a `401` from `host` to a request sent with `sent` (its `Authorization` header,
    /// if any): learns the host's scheme and, for Bearer, fetches a token for `scopes`, unless
    /// a concurrent request already replaced the token that was refused. Returns an error when
    /// nothing more can be tried.
    ///
    /// A registry reached over https (`secure`) must name an https token realm: the realm is
    /// sent the registry's credentials, which must not travel in clear text.
    pub async fn on_unauthorized(
        &self,
        http: &reqwest::Client,
        host: &str,
        secure: bool,
        scopes: &[String],
        www_authenticate: Option<&str>,
        sent: Option<&str>,
    ) -> Result<(), RegistryError> {
        let header = www_authenticate.ok_or_else(|| RegistryError::Auth {
            host: host.to_owned(),
            reason: "401 without a Www-Authenticate challenge".to_owned(),
        })?;
        let parsed = challenge::parse(header).map_err(|source| RegistryError::Challenge {
            host: host.to_owned(),
            source,
        })?;
        match parsed {
            Challenge::Basic { .. } => {
                if self.credential(host).await?.is_none() {
                    return Err(no_credentials(host));
                }
                lock(&self.schemes).insert(host.to_owned(), Scheme::Basic);
            }
            Challenge::Bearer(bearer) => {
                refuse_downgrade(host, secure, &bearer.realm)?;
                lock(&self.schemes).insert(host.to_owned(), Scheme::Bearer(bearer.clone()));
                self.fetch_once(http, host, &bearer, scopes, sent).await?;
            }
        }
        Ok(())
    }

    /// Fetches a token for (`host`, `scopes`) unless another task just did: fetches are
    /// serialized per key, and a cached token other than `stale` (the one refused) is kept.
    async fn fetch_once(
        &self,
        http: &reqwest::Client,
        host: &str,
        bearer: &BearerChallenge,
        scopes: &[String],
        stale: Option<&str>,
    ) -> Result<(), RegistryError> {
        let key = (host.to_owned(), scope_key(scopes));
        let gate = Arc::clone(lock(&self.fetching).entry(key).or_default());
        let _one_at_a_time = gate.lock().await;
        if let Some(token) = self.cached_token(host, scopes)
            && Some(token.as_str()) != stale
        {
            return Ok(());
        }
        self.fetch_token(http, host, bearer, scopes).await
    }

    async fn credential(&self, host: &str) -> Result<Option<Credential>, RegistryError> {
        let mut cache = self.credentials.lock().await;
        if let Some(known) = cache.get(host) {
            return Ok(known.clone());
        }
        let found = self.sources.lookup(host).await?;
        cache.insert(host.to_owned(), found.clone());
        Ok(found)
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        host: &str,
        bearer: &BearerChallenge,
        scopes: &[String],
    ) -> Result<(), RegistryError> {
        let auth_error = |reason: String| RegistryError::Auth {
            host: host.to_owned(),
            reason,
        };
        let credential = self.credential(host).await?;
        let request = match &credential {
            Some(Credential::IdentityToken(refresh_token)) => {
                // The OAuth2 refresh-token grant of the distribution token spec.
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("client_id", "promoter".to_owned()),
                    ("refresh_token", refresh_token.clone()),
                ];
                if let Some(service) = &bearer.service {
                    form.push(("service", service.clone()));
                }
                form.extend(scopes.iter().map(|s| ("scope", s.clone())));
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", challenge::encode_query_value(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                http.post(&bearer.realm)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
            other => {
                let url = challenge::token_url(bearer, scopes).map_err(|source| {
                    RegistryError::Challenge {
                        host: host.to_owned(),
                        source,
                    }
                })?;
                let request = http.get(url);
                match other {
                    Some(credential) => {
                        request.header(reqwest::header::AUTHORIZATION, basic_header(credential))
                    }
                    None => request,
                }
            }
        };
        self.token_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = request
            .send()
            .await
            .map_err(|e| auth_error(format!("token request to {} failed: {e}", bearer.realm)))?;
        let status = response.status();
        if !status.is_success() {
            let hint = if credential.is_none() {
                " (no credentials configured for this host)"
            } else {
                ""
            };
            return Err(auth_error(format!(
                "token endpoint {} answered {status}{hint}",
                bearer.realm
            )));
        }
        let token: TokenResponse = crate::http::read_json(response, crate::http::limits::TOKEN)
            .await
            .map_err(|e| {
                auth_error(format!(
                    "unreadable token response: {}",
                    crate::error_chain::error_chain(&e)
                ))
            })?;
        let value = token
            .bearer()
            .ok_or_else(|| auth_error("token response has no token".to_owned()))?
            .to_owned();
        let lifetime = token.lifetime();
        // Refresh a little early: at 90% of the lifetime, and at least 10 s before expiry.
        let early = (lifetime / 10).max(Duration::from_secs(10)).min(lifetime);
        let refresh_at = Instant::now() + lifetime - early;
        lock(&self.tokens).insert(
            (host.to_owned(), scope_key(scopes)),
            Token { value, refresh_at },
        );
        Ok(())
    }
}

/// Refuses a plain-http token realm named by a registry reached over https.
fn refuse_downgrade(host: &str, secure: bool, realm: &str) -> Result<(), RegistryError> {
    let realm_secure = crate::http::Origin::parse(realm.trim()).is_some_and(|o| o.is_secure());
    if secure && !realm_secure {
        return Err(RegistryError::Auth {
            host: host.to_owned(),
            reason: format!(
                "the registry is reached over https but names the token realm {realm}: \
                 refusing to send its credentials without TLS"
            ),
        });
    }
    Ok(())
}

fn no_credentials(host: &str) -> RegistryError {
    RegistryError::Auth {
        host: host.to_owned(),
        reason: "the registry asks for credentials and none are configured (docker login, or DOCKER_CONFIG)"
            .to_owned(),
    }
}

fn basic_header(credential: &Credential) -> String {
    let (user, secret) = match credential {
        Credential::Basic { username, password } => (username.as_str(), password.as_str()),
        Credential::IdentityToken(token) => ("<token>", token.as_str()),
    };
    format!("Basic {}", STANDARD.encode(format!("{user}:{secret}")))
}

fn scope_key(scopes: &[String]) -> String {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.join(" ")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::refuse_downgrade;

    #[test]
    fn an_https_registry_may_not_name_a_plain_http_realm() {
        let refused =
            refuse_downgrade("gcr.io", true, "http://gcr.io/v2/token").expect_err("a downgrade");
        assert!(refused.to_string().contains("without TLS"), "{refused}");
        assert!(refuse_downgrade("gcr.io", true, "https://gcr.io/v2/token").is_ok());
        assert!(refuse_downgrade("gcr.io", true, "https://auth.example/token").is_ok());
        assert!(
            refuse_downgrade("127.0.0.1:5000", false, "http://127.0.0.1:5001/token").is_ok(),
            "a plain-http registry (loopback, insecure) may use a plain-http realm"
        );
    }
}
