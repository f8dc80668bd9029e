//! Registry credentials for Amazon ECR, from the AWS SDK's `GetAuthorizationToken`.
//!
//! [`EcrCredentials`] answers for hosts shaped like
//! `<12-digit account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]` and for hosts named explicitly
//! (a VPC endpoint, a test registry). It asks ECR for an authorization token in the host's region
//! (the configured default region for explicit hosts), decodes it (base64 `AWS:password`) into
//! Basic credentials and caches them per host until five minutes before they expire.
//!
//! AWS configuration comes from the SDK's default chain (environment, profiles, IMDS, ...,
//! including `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_ECR`), loaded once on first use. Tokens
//! never appear in `Debug` output, errors or logs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ecr::config::Region;
use aws_sdk_ecr::error::SdkError;
use aws_sdk_ecr::operation::get_authorization_token::GetAuthorizationTokenError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::docker_config::Credential;

mod images;
mod repositories;

pub use images::EcrImage;
pub use repositories::RepositorySettings;

/// How long before `expiresAt` a cached token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long a token is kept when ECR gives no usable expiry (missing, or already past).
pub const FALLBACK_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Why ECR credentials could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    /// The host is neither an ECR registry host nor one of the configured extra hosts.
    #[error("{host} is not an ECR registry host")]
    NotEcrHost {
        /// The registry host.
        host: String,
    },
    /// An extra host was asked for and the AWS configuration has no default region.
    #[error("no AWS region configured to get an ECR token for {host} (set AWS_REGION)")]
    NoRegion {
        /// The registry host.
        host: String,
    },
    /// The `GetAuthorizationToken` call failed.
    #[error("ECR GetAuthorizationToken for {host} (region {region}) failed")]
    Api {
        /// The registry host.
        host: String,
        /// The region asked.
        region: String,
        /// The SDK error.
        #[source]
        source: Box<SdkError<GetAuthorizationTokenError>>,
    },
    /// A repository could not be looked up or created.
    #[error("ECR {action} of repository {name} on {host} failed: {reason}")]
    Repository {
        /// The registry host.
        host: String,
        /// The repository.
        name: String,
        /// `DescribeRepositories` or `CreateRepository`.
        action: &'static str,
        /// The SDK's error, with its causes.
        reason: String,
    },
    /// The answer carried no authorization token.
    #[error("ECR GetAuthorizationToken for {host} returned no token")]
    NoToken {
        /// The registry host.
        host: String,
    },
    /// The token is not base64 of `user:password`.
    #[error("the ECR token for {host} is malformed: {reason}")]
    TokenFormat {
        /// The registry host.
        host: String,
        /// What is wrong (never the token itself).
        reason: &'static str,
    },
}

/// A credential and when to replace it.
struct Cached {
    credential: Credential,
    refresh_at: Instant,
}

/// Credentials for ECR registries, fetched with the AWS SDK and cached per host.
pub struct EcrCredentials {
    config: tokio::sync::OnceCell<SdkConfig>,
    extra_hosts: Vec<String>,
    clients: Mutex<HashMap<(String, bool), aws_sdk_ecr::Client>>,
    cache: tokio::sync::Mutex<HashMap<String, Cached>>,
    token_requests: AtomicU64,
    repositories: Mutex<std::collections::HashSet<(String, String)>>,
    repository_settings: RepositorySettings,
}

impl fmt::Debug for EcrCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrCredentials")
            .field("extra_hosts", &self.extra_hosts)
            .field("token_requests", &self.token_requests())
            .finish_non_exhaustive()
    }
}

impl EcrCredentials {
    /// Credentials from the AWS SDK's default configuration chain (loaded once, on the first
    /// [`credential`](Self::credential) call), for ECR hosts and `extra_hosts`.
    pub async fn from_env(extra_hosts: Vec<String>) -> Self {
        Self::build(tokio::sync::OnceCell::new(), extra_hosts)
    }

    /// Credentials using `config` (credentials, default region, endpoint override), for ECR
    /// hosts and `extra_hosts`.
    pub fn with_config(config: SdkConfig, extra_hosts: Vec<String>) -> Self {
        Self::build(tokio::sync::OnceCell::new_with(Some(config)), extra_hosts)
    }

    fn build(config: tokio::sync::OnceCell<SdkConfig>, extra_hosts: Vec<String>) -> Self {
        EcrCredentials {
            config,
            extra_hosts,
            clients: Mutex::new(HashMap::new()),
            cache: tokio::sync::Mutex::new(HashMap::new()),
            token_requests: AtomicU64::new(0),
            repositories: Mutex::new(std::collections::HashSet::new()),
            repository_settings: RepositorySettings::default(),
        }
    }

    /// True for ECR registry hosts and the configured extra hosts.
    pub fn handles(&self, host: &str) -> bool {
        self.is_extra(host) || parse_host(host).is_some()
    }

    fn is_extra(&self, host: &str) -> bool {
        self.extra_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    }

    /// How many `GetAuthorizationToken` calls were made so far (credentials are cached).
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    /// Basic credentials (`AWS` and a token) for `host`, from the cache while still fresh.
    pub async fn credential(&self, host: &str) -> Result<Credential, EcrError> {
        let key = host.to_ascii_lowercase();
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.get(&key)
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.credential.clone());
        }
        let config = self.config().await;
        let (region, fips) = self.region_of(config, host)?;
        let client = self.client(config, &region, fips);
        tracing::debug!(host, region, "requesting an ECR authorization token");
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let output = client
            .get_authorization_token()
            .send()
            .await
            .map_err(|source| EcrError::Api {
                host: host.to_owned(),
                region: region.clone(),
                source: Box::new(source),
            })?;
        let (token, expires_at) = output
            .authorization_data()
            .iter()
            .find_map(|d| d.authorization_token().map(|t| (t, d.expires_at())))
            .ok_or_else(|| EcrError::NoToken {
                host: host.to_owned(),
            })?;
        let credential = decode_token(host, token)?;
        let expires_at = expires_at.and_then(|t| SystemTime::try_from(*t).ok());
        let lifetime = cache_lifetime(expires_at, SystemTime::now());
        tracing::debug!(
            host,
            cached_for_secs = lifetime.as_secs(),
            "got an ECR authorization token"
        );
        cache.insert(
            key,
            Cached {
                credential: credential.clone(),
                refresh_at: Instant::now() + lifetime,
            },
        );
        Ok(credential)
    }

    /// The AWS configuration, loaded on first use.
    async fn config(&self) -> &SdkConfig {
        self.config
            .get_or_init(|| aws_config::load_defaults(BehaviorVersion::latest()))
            .await
    }

    /// The region (and FIPS endpoint or not) of `host`: its name's, or the configured default
    /// for an extra host.
    fn region_of(&self, config: &SdkConfig, host: &str) -> Result<(String, bool), EcrError> {
        match parse_host(host) {
            Some(parsed) => Ok((parsed.region, parsed.fips)),
            None if self.is_extra(host) => {
                let region = config.region().ok_or_else(|| EcrError::NoRegion {
                    host: host.to_owned(),
                })?;
                Ok((region.as_ref().to_owned(), false))
            }
            None => Err(EcrError::NotEcrHost {
                host: host.to_owned(),
            }),
        }
    }

    fn client(&self, config: &SdkConfig, region: &str, fips: bool) -> aws_sdk_ecr::Client {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clients
            .entry((region.to_owned(), fips))
            .or_insert_with(|| {
                let mut builder = aws_sdk_ecr::config::Builder::from(config)
                    .region(Region::new(region.to_owned()));
                if fips {
                    builder = builder.use_fips(true);
                }
                aws_sdk_ecr::Client::from_conf(builder.build())
            })
            .clone()
    }
}

/// What an ECR registry host name says.
#[derive(Debug, PartialEq, Eq)]
struct EcrHost {
    account: String,
    region: String,
    fips: bool,
}

/// Parses `<12 digits>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]` (case-insensitively).
fn parse_host(host: &str) -> Option<EcrHost> {
    let host = host.to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let (&[account, "dkr", ecr, region, "amazonaws", "com"]
    | &[account, "dkr", ecr, region, "amazonaws", "com", "cn"]) = labels.as_slice()
    else {
        return None;
    };
    let fips = match ecr {
        "ecr" => false,
        "ecr-fips" => true,
        _ => return None,
    };
    let valid_region = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && valid_region).then(
        || EcrHost {
            account: account.to_owned(),
            region: region.to_owned(),
            fips,
        },
    )
}

/// Decodes an ECR authorization token: base64 of `user:password`.
fn decode_token(host: &str, token: &str) -> Result<Credential, EcrError> {
    let malformed = |reason| EcrError::TokenFormat {
        host: host.to_owned(),
        reason,
    };
    let bytes = STANDARD
        .decode(token.trim())
        .map_err(|_| malformed("not valid base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| malformed("not UTF-8 text"))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| malformed("not `user:password`"))?;
    if username.is_empty() || password.is_empty() {
        return Err(malformed("empty user or password"));
    }
    Ok(Credential::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// How long to keep a token expiring at `expires_at`: until [`REFRESH_MARGIN`] before then
/// (at least half its remaining life), or [`FALLBACK_LIFETIME`] when the expiry is missing or
/// already past, so that a bogus expiry never makes every call fetch again.
fn cache_lifetime(expires_at: Option<SystemTime>, now: SystemTime) -> Duration {
    match expires_at.and_then(|t| t.duration_since(now).ok()) {
        Some(remaining) if !remaining.is_zero() => {
            remaining.saturating_sub(REFRESH_MARGIN).max(remaining / 2)
        }
        _ => FALLBACK_LIFETIME,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    use aws_sdk_ecr::config::Credentials;

    use super::*;

    #[test]
    fn recognizes_ecr_hosts() {
        let parsed = |h: &str| parse_host(h).map(|p| (p.region, p.fips));
        assert_eq!(
            parsed("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            Some(("us-east-1".to_owned(), false))
        );
        assert_eq!(
            parsed("123456789012.DKR.ecr-fips.us-gov-west-1.amazonaws.com"),
            Some(("us-gov-west-1".to_owned(), true))
        );
        assert_eq!(
            parsed("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some(("cn-north-1".to_owned(), false))
        );
        for other in [
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
            "12345678901a.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "123456789012.dkr.ecr..amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.org",
            "123456789012.dkr.ecr-gov.us-east-1.amazonaws.com",
            "public.ecr.aws",
            "gcr.io",
        ] {
            assert_eq!(parse_host(other), None, "{other}");
        }
        let ecr = EcrCredentials::with_config(
            SdkConfig::builder().build(),
            vec!["Registry.Example:5000".to_owned()],
        );
        assert!(ecr.handles("registry.example:5000"));
        assert!(ecr.handles("123456789012.dkr.ecr.eu-west-3.amazonaws.com"));
        assert!(!ecr.handles("registry.example"));
    }

    #[test]
    fn token_decoding_and_redaction() {
        let credential = decode_token("h", &STANDARD.encode("AWS:s3cr3t")).expect("decodes");
        assert_eq!(
            credential,
            Credential::Basic {
                username: "AWS".to_owned(),
                password: "s3cr3t".to_owned()
            }
        );
        assert!(!format!("{credential:?}").contains("s3cr3t"));
        for bad in ["%%%", &STANDARD.encode("no-colon"), &STANDARD.encode(":x")] {
            let error = decode_token("h", bad).expect_err("malformed");
            assert!(!error.to_string().contains(bad), "{error}");
        }
    }

    #[test]
    fn cache_lifetime_never_loops() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(
            cache_lifetime(Some(now + 12 * hour), now),
            12 * hour - REFRESH_MARGIN
        );
        assert_eq!(cache_lifetime(None, now), FALLBACK_LIFETIME);
        assert_eq!(cache_lifetime(Some(now - hour), now), FALLBACK_LIFETIME);
        assert_eq!(cache_lifetime(Some(now), now), FALLBACK_LIFETIME);
        // Less than the margin left: keep it for half of what remains, never zero.
        let short = Duration::from_secs(120);
        assert_eq!(cache_lifetime(Some(now + short), now), short / 2);
    }

    /// A `moto_server` child process, killed on drop.
    struct Moto {
        child: Child,
        port: u16,
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn moto_binary() -> PathBuf {
        if let Some(path) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("moto_server"))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "moto_server not found: set MOTO_SERVER to its path or put it on PATH \
                     (infra/local/test.sh installs it)"
                )
            })
    }

    fn start_moto() -> Moto {
        let binary = moto_binary();
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut moto = Moto { child, port };
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited early: {status}");
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    #[tokio::test]
    async fn fetches_and_caches_tokens_from_moto() {
        let moto = start_moto();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(format!("http://127.0.0.1:{}", moto.port))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .load()
            .await;
        let test_registry = "127.0.0.1:5000".to_owned();
        let ecr = EcrCredentials::with_config(config, vec![test_registry.clone()]);
        let expected = Credential::Basic {
            username: "AWS".to_owned(),
            password: "123456789012-auth-token".to_owned(),
        };
        let host = "123456789012.dkr.ecr.us-west-2.amazonaws.com";
        assert_eq!(ecr.credential(host).await.expect("token"), expected);
        assert_eq!(ecr.token_requests(), 1);
        // moto's `expiresAt` is in 2015: the token is still cached, not fetched again.
        assert_eq!(ecr.credential(host).await.expect("cached"), expected);
        assert_eq!(ecr.token_requests(), 1);
        // An explicit host uses the default region; it has its own cache entry.
        assert_eq!(
            ecr.credential(&test_registry).await.expect("token"),
            expected
        );
        assert_eq!(ecr.token_requests(), 2);
        let error = ecr
            .credential("registry.example")
            .await
            .expect_err("not ECR");
        assert!(matches!(error, EcrError::NotEcrHost { .. }), "{error}");
        assert_eq!(ecr.token_requests(), 2);
        assert!(!format!("{ecr:?}").contains("auth-token"));
    }
}
