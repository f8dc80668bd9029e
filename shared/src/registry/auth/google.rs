//! Registry credentials for Google Container Registry and Artifact Registry, from an OAuth2
//! access token obtained the way Google's client libraries do (Application Default Credentials).
//!
//! [`GoogleCredentials`] answers for `gcr.io`, `*.gcr.io`, `*.pkg.dev` (Artifact Registry's
//! `REGION-docker.pkg.dev`) and hosts named explicitly, with Basic credentials
//! `oauth2accesstoken` / access token. The token comes from, in this order:
//!
//! 1. the JSON key file named by `GOOGLE_APPLICATION_CREDENTIALS`:
//!    - `"type": "service_account"`: a JWT-bearer grant (RFC 7523) with an RS256-signed
//!      assertion (`iss` = `client_email`, `scope` = [`SCOPE`], `aud` = `token_uri`), posted to
//!      the file's `token_uri`;
//!    - `"type": "authorized_user"`: a refresh-token grant with the file's `client_id`,
//!      `client_secret` and `refresh_token`, posted to [`DEFAULT_TOKEN_URL`];
//! 2. gcloud's well-known file, `$CLOUDSDK_CONFIG/application_default_credentials.json` or
//!    `$HOME/.config/gcloud/application_default_credentials.json` (written by
//!    `gcloud auth application-default login`), read as in 1;
//! 3. the metadata server (GCE, GKE, Cloud Run, ...): `http://HOST/computeMetadata/v1/instance/
//!    service-accounts/default/token` with `Metadata-Flavor: Google`, where HOST is
//!    `$GCE_METADATA_HOST` or `metadata.google.internal`.
//!
//! The source is chosen when [`GoogleCredentials::from_env`] runs; the key file is read when a
//! token is needed. The token is shared by all hosts and cached until 60 s before it expires.
//! Secrets (keys, refresh tokens, access tokens) never appear in `Debug` output, errors or logs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;

use super::challenge::encode_query_value;
use super::docker_config::Credential;

/// The user name registries expect with a Google OAuth2 access token as password.
pub const USERNAME: &str = "oauth2accesstoken";

/// The OAuth2 scope asked for with service-account keys.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Google's OAuth2 token endpoint, used for `authorized_user` refresh tokens.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The metadata server's host when `GCE_METADATA_HOST` is not set.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";

/// How long before its expiry a cached access token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Lifetime of a service-account assertion, and assumed for tokens without `expires_in`.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Longest error-body excerpt kept in an error, in bytes.
const MAX_DETAIL: usize = 300;

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Why a Google access token could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// The host is neither a Google registry host nor one of the configured extra hosts.
    #[error("{host} is not a Google registry host")]
    NotGoogleHost {
        /// The registry host.
        host: String,
    },
    /// The credentials file could not be read.
    #[error("cannot read Google credentials file {}", path.display())]
    ReadKeyFile {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The credentials file is not JSON of the expected shape.
    #[error("invalid Google credentials file {}: {reason}", path.display())]
    ParseKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's values).
        reason: String,
    },
    /// The credentials file has a `type` this client does not support.
    #[error(
        "Google credentials file {} has type `{kind}`; supported: service_account, authorized_user",
        path.display()
    )]
    UnsupportedKeyType {
        /// The file.
        path: PathBuf,
        /// Its `type`.
        kind: String,
    },
    /// The service account's `private_key` is not a usable RSA key in PEM.
    #[error("the private key in Google credentials file {} is unusable: {reason}", path.display())]
    PrivateKey {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the key).
        reason: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("cannot build an HTTP client for Google tokens")]
    HttpClient {
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The token request could not be sent or its answer not read.
    #[error("token request to {url} failed")]
    Request {
        /// The token endpoint.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The token endpoint refused.
    #[error("token endpoint {url} answered {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Status {
        /// The token endpoint.
        url: String,
        /// The status it answered.
        status: reqwest::StatusCode,
        /// OAuth2 `error` and `error_description`, or the start of the body.
        detail: String,
    },
    /// The token endpoint's answer has no usable access token.
    #[error("unusable answer from token endpoint {url}: {reason}")]
    Response {
        /// The token endpoint.
        url: String,
        /// What is wrong (never the token).
        reason: String,
    },
}

/// Where access tokens come from.
enum Source {
    /// A `service_account` or `authorized_user` JSON file.
    KeyFile(PathBuf),
    /// The metadata server at this host (and optional port).
    Metadata(String),
}

/// A cached access token.
struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Credentials for Google registries, from Application Default Credentials.
pub struct GoogleCredentials {
    source: Source,
    token_url: String,
    extra_hosts: Vec<String>,
    http: tokio::sync::OnceCell<reqwest::Client>,
    cache: tokio::sync::Mutex<Option<Cached>>,
    token_requests: AtomicU64,
}

impl fmt::Debug for GoogleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::KeyFile(path) => format!("key file {}", path.display()),
            Source::Metadata(host) => format!("metadata server {host}"),
        };
        f.debug_struct("GoogleCredentials")
            .field("source", &source)
            .field("extra_hosts", &self.extra_hosts)
            .field("token_requests", &self.token_requests())
            .finish_non_exhaustive()
    }
}

impl GoogleCredentials {
    /// Credentials from the environment, as Google's libraries find them (see the module
    /// docs), for Google registry hosts and `extra_hosts`.
    pub fn from_env(extra_hosts: Vec<String>) -> Self {
        let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(path) = non_empty("GOOGLE_APPLICATION_CREDENTIALS") {
            return Self::with_key_file(path, extra_hosts);
        }
        let gcloud_dir = non_empty("CLOUDSDK_CONFIG")
            .map(PathBuf::from)
            .or_else(|| non_empty("HOME").map(|home| Path::new(&home).join(".config/gcloud")));
        if let Some(dir) = gcloud_dir {
            let well_known = dir.join("application_default_credentials.json");
            if well_known.is_file() {
                return Self::with_key_file(well_known, extra_hosts);
            }
        }
        let host = std::env::var("GCE_METADATA_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned());
        Self::with_metadata_host(host, extra_hosts)
    }

    /// Credentials from a `service_account` or `authorized_user` JSON file (read when a token is
    /// needed), for Google registry hosts and `extra_hosts`.
    pub fn with_key_file(path: impl Into<PathBuf>, extra_hosts: Vec<String>) -> Self {
        Self::new(Source::KeyFile(path.into()), extra_hosts)
    }

    /// Credentials from the metadata server at `host` (`host[:port]`, plain HTTP), for Google
    /// registry hosts and `extra_hosts`.
    pub fn with_metadata_host(host: impl Into<String>, extra_hosts: Vec<String>) -> Self {
        Self::new(Source::Metadata(host.into()), extra_hosts)
    }

    /// Uses `url` instead of [`DEFAULT_TOKEN_URL`] for `authorized_user` refresh tokens.
    #[must_use]
    pub fn with_token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = url.into();
        self
    }

    fn new(source: Source, extra_hosts: Vec<String>) -> Self {
        GoogleCredentials {
            source,
            token_url: DEFAULT_TOKEN_URL.to_owned(),
            extra_hosts,
            http: tokio::sync::OnceCell::new(),
            cache: tokio::sync::Mutex::new(None),
            token_requests: AtomicU64::new(0),
        }
    }

    /// True for `gcr.io`, `*.gcr.io`, `*.pkg.dev` and the configured extra hosts.
    pub fn handles(&self, host: &str) -> bool {
        let lower = host.to_ascii_lowercase();
        let subdomain_of = |domain: &str| {
            lower
                .strip_suffix(domain)
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty())
        };
        lower == "gcr.io"
            || subdomain_of("gcr.io")
            || subdomain_of("pkg.dev")
            || self
                .extra_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
    }

    /// How many access tokens were fetched so far (tokens are cached).
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    /// Basic credentials (`oauth2accesstoken` and an access token) for `host`.
    pub async fn credential(&self, host: &str) -> Result<Credential, GoogleError> {
        if !self.handles(host) {
            return Err(GoogleError::NotGoogleHost {
                host: host.to_owned(),
            });
        }
        Ok(Credential::Basic {
            username: USERNAME.to_owned(),
            password: self.access_token().await?,
        })
    }

    /// The cached access token, or a new one.
    async fn access_token(&self) -> Result<String, GoogleError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let http = self
            .http
            .get_or_try_init(|| async {
                crate::http::client(&crate::http::Timeouts::default())
                    .map_err(|source| GoogleError::HttpClient { source })
            })
            .await?;
        let (url, request) = match &self.source {
            Source::Metadata(host) => {
                let url = format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                );
                let request = http.get(&url).header("Metadata-Flavor", "Google");
                (url, request)
            }
            Source::KeyFile(path) => {
                let (url, form) = match read_key_file(path).await? {
                    KeyFile::ServiceAccount(key) => {
                        let assertion = sign_assertion(path, &key, SystemTime::now())?;
                        let form = [("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)];
                        (key.token_uri, form_body(&form))
                    }
                    KeyFile::AuthorizedUser(user) => {
                        let form = [
                            ("grant_type", "refresh_token"),
                            ("client_id", &user.client_id),
                            ("client_secret", &user.client_secret),
                            ("refresh_token", &user.refresh_token),
                        ];
                        (self.token_url.clone(), form_body(&form))
                    }
                };
                let request = http
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form);
                (url, request)
            }
        };
        tracing::debug!(url, "requesting a Google access token");
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let (token, lifetime) = send(&url, request).await?;
        tracing::debug!(
            url,
            expires_in_secs = lifetime.as_secs(),
            "got a Google access token"
        );
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN),
        });
        Ok(token)
    }
}

/// A credentials file, by its `type`.
enum KeyFile {
    ServiceAccount(ServiceAccountKey),
    AuthorizedUser(AuthorizedUser),
}

/// The fields of a `service_account` key file this client uses.
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    DEFAULT_TOKEN_URL.to_owned()
}

/// The fields of an `authorized_user` file (from `gcloud auth application-default login`).
#[derive(Deserialize)]
struct AuthorizedUser {
    client_id: String,
    client_secret: String,
    refresh_token: String,
}

async fn read_key_file(path: &Path) -> Result<KeyFile, GoogleError> {
    let text = tokio::fs::read(path)
        .await
        .map_err(|source| GoogleError::ReadKeyFile {
            path: path.to_owned(),
            source,
        })?;
    let parse_error = |e: serde_json::Error| GoogleError::ParseKeyFile {
        path: path.to_owned(),
        reason: describe_json_error(&e),
    };
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    let Kind { kind } = serde_json::from_slice(&text).map_err(parse_error)?;
    match kind.as_str() {
        "service_account" => serde_json::from_slice(&text)
            .map(KeyFile::ServiceAccount)
            .map_err(parse_error),
        "authorized_user" => serde_json::from_slice(&text)
            .map(KeyFile::AuthorizedUser)
            .map_err(parse_error),
        _ => Err(GoogleError::UnsupportedKeyType {
            path: path.to_owned(),
            kind,
        }),
    }
}

/// A JSON error without the values it may quote (they may be secrets): only missing fields and
/// the position are named.
fn describe_json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if message.starts_with("missing field") {
        return message;
    }
    let kind = match error.classify() {
        serde_json::error::Category::Io => "IO error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Eof => "unexpected end",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}

/// The signed JWT asserting `key`'s identity, issued at `now`.
fn sign_assertion(
    path: &Path,
    key: &ServiceAccountKey,
    now: SystemTime,
) -> Result<String, GoogleError> {
    let key_error = |reason| GoogleError::PrivateKey {
        path: path.to_owned(),
        reason,
    };
    let key_pair = parse_private_key(&key.private_key).map_err(key_error)?;
    let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &key.private_key_id {
        header["kid"] = serde_json::Value::from(kid.as_str());
    }
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": key.token_uri,
        "iat": iat,
        "exp": iat + TOKEN_LIFETIME.as_secs(),
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key_pair.public_modulus_len()];
    key_pair
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| key_error("signing failed"))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// An RSA key from PEM: PKCS#8 (`PRIVATE KEY`, what Google issues) or PKCS#1
/// (`RSA PRIVATE KEY`).
fn parse_private_key(pem: &str) -> Result<RsaKeyPair, &'static str> {
    let mut label = None;
    let mut body = String::new();
    for line in pem.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("-----BEGIN ") {
            label = Some(rest.trim_end_matches('-').to_owned());
        } else if line.starts_with("-----END ") {
            break;
        } else if label.is_some() {
            body.push_str(line);
        }
    }
    let label = label.ok_or("no PEM `BEGIN` line")?;
    let der = STANDARD
        .decode(body)
        .map_err(|_| "the PEM body is not valid base64")?;
    match label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der).map_err(|e| e.description_()),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der).map_err(|e| e.description_()),
        _ => Err("not a `PRIVATE KEY` or `RSA PRIVATE KEY` PEM block"),
    }
}

/// An `application/x-www-form-urlencoded` body.
fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The fields of a token answer this client uses (OAuth2 and metadata server alike).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// The fields of an OAuth2 error answer.
#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Sends a token request (retried on 429, 5xx and connection errors, its answer read up to
/// [`crate::http::limits::TOKEN`]); returns the access token and its lifetime.
async fn send(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<(String, Duration), GoogleError> {
    let request_error = |source| GoogleError::Request {
        url: url.to_owned(),
        source,
    };
    let policy = crate::http::retry::RetryPolicy::default();
    let response = crate::http::retry::send(&policy, request)
        .await
        .map_err(request_error)?;
    let status = response.status();
    let body = match crate::http::read_capped(response, crate::http::limits::TOKEN).await {
        Ok(body) => body,
        Err(crate::http::BodyError::Read(source)) => return Err(request_error(source)),
        Err(other) => {
            return Err(GoogleError::Response {
                url: url.to_owned(),
                reason: other.to_string(),
            });
        }
    };
    if !status.is_success() {
        let detail = match serde_json::from_slice::<ErrorResponse>(&body) {
            Ok(ErrorResponse {
                error,
                error_description: Some(description),
            }) => format!("{error}: {description}"),
            Ok(ErrorResponse { error, .. }) => error,
            Err(_) => excerpt(&String::from_utf8_lossy(&body)),
        };
        return Err(GoogleError::Status {
            url: url.to_owned(),
            status,
            detail,
        });
    }
    let response_error = |reason| GoogleError::Response {
        url: url.to_owned(),
        reason,
    };
    let parsed: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| response_error(describe_json_error(&e)))?;
    let token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| response_error("no access_token".to_owned()))?;
    let lifetime = parsed
        .expires_in
        .map_or(TOKEN_LIFETIME, Duration::from_secs);
    Ok((token, lifetime))
}

/// The start of `text`, on one line, at most [`MAX_DETAIL`] bytes.
fn excerpt(text: &str) -> String {
    let line = text.trim().replace(['\r', '\n'], " ");
    match line.char_indices().nth(MAX_DETAIL) {
        Some((end, _)) if end < line.len() => format!("{}...", &line[..end]),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;

    /// A request as the fake server saw it.
    struct Request {
        method: String,
        path: String,
        headers: HashMap<String, String>,
        body: String,
    }

    /// A minimal HTTP/1.1 server on a loopback port answering with `handler`; counts requests.
    struct FakeServer {
        url: String,
        requests: Arc<AtomicUsize>,
    }

    impl FakeServer {
        fn start(
            handler: impl Fn(&Request) -> Result<String, String> + Send + 'static,
        ) -> FakeServer {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("address"));
            let requests = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&requests);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let Some(request) = read_request(&mut stream) else {
                        continue;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = match handler(&request) {
                        Ok(body) => ("200 OK", body),
                        Err(problem) => (
                            "400 Bad Request",
                            serde_json::json!({"error": "test_check", "error_description": problem})
                                .to_string(),
                        ),
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
            FakeServer { url, requests }
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    fn read_request(stream: &mut std::net::TcpStream) -> Option<Request> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let method = parts.next()?.to_owned();
        let path = parts.next()?.to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).ok()?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':')?;
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some(Request {
            method,
            path,
            headers,
            body: String::from_utf8(body).ok()?,
        })
    }

    fn form_fields(body: &str) -> HashMap<String, String> {
        let decode = |s: &str| {
            let bytes = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'%' if i + 2 < bytes.len() => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                        out.push(u8::from_str_radix(hex, 16).expect("hex"));
                        i += 3;
                    }
                    b'+' => {
                        out.push(b' ');
                        i += 1;
                    }
                    b => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            String::from_utf8(out).expect("UTF-8")
        };
        body.split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect()
    }

    fn token_answer(token: &str, expires_in: u64) -> String {
        serde_json::json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"})
            .to_string()
    }

    fn expected(token: &str) -> Credential {
        Credential::Basic {
            username: USERNAME.to_owned(),
            password: token.to_owned(),
        }
    }

    #[test]
    fn recognizes_google_hosts() {
        let google = GoogleCredentials::with_metadata_host("x", vec!["127.0.0.1:5000".to_owned()]);
        for host in [
            "gcr.io",
            "us.gcr.io",
            "EU.GCR.IO",
            "us-docker.pkg.dev",
            "europe-west1-docker.pkg.dev",
            "127.0.0.1:5000",
        ] {
            assert!(google.handles(host), "{host}");
        }
        for host in [
            "notgcr.io",
            ".gcr.io",
            "gcr.io.evil.example",
            "pkg.dev",
            "xpkg.dev",
            "docker.io",
            "127.0.0.1:5001",
        ] {
            assert!(!google.handles(host), "{host}");
        }
    }

    #[tokio::test]
    async fn metadata_server_token_is_cached() {
        let server = FakeServer::start(|request| {
            if request.method != "GET"
                || request.path != "/computeMetadata/v1/instance/service-accounts/default/token"
            {
                return Err(format!("unexpected {} {}", request.method, request.path));
            }
            if request.headers.get("metadata-flavor").map(String::as_str) != Some("Google") {
                return Err("no Metadata-Flavor: Google".to_owned());
            }
            Ok(token_answer("ya29.metadata", 3599))
        });
        let host = server.url.trim_start_matches("http://").to_owned();
        let google = GoogleCredentials::with_metadata_host(host, vec![]);
        let credential = google.credential("gcr.io").await.expect("token");
        assert_eq!(credential, expected("ya29.metadata"));
        assert!(!format!("{credential:?} {google:?}").contains("ya29"));
        let again = google
            .credential("us-docker.pkg.dev")
            .await
            .expect("cached");
        assert_eq!(again, expected("ya29.metadata"));
        assert_eq!(server.requests(), 1);
        assert_eq!(google.token_requests(), 1);
        let error = google
            .credential("docker.io")
            .await
            .expect_err("not Google");
        assert!(
            matches!(error, GoogleError::NotGoogleHost { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn tokens_expiring_within_the_margin_are_not_reused() {
        let server = FakeServer::start(|_| Ok(token_answer("ya29.short", 30)));
        let host = server.url.trim_start_matches("http://").to_owned();
        let google = GoogleCredentials::with_metadata_host(host, vec![]);
        google.credential("gcr.io").await.expect("token");
        google.credential("gcr.io").await.expect("token");
        assert_eq!(server.requests(), 2);
    }

    #[tokio::test]
    async fn service_account_key_signs_a_verified_assertion() {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let public_key = key.public_key().as_ref().to_vec();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&key).expect("PKCS#8");
        let encoded = STANDARD.encode(pkcs8.as_ref());
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );

        let audience = Arc::new(std::sync::OnceLock::<String>::new());
        let expected_aud = Arc::clone(&audience);
        let server = FakeServer::start(move |request| {
            if request.method != "POST" || request.path != "/token" {
                return Err(format!("unexpected {} {}", request.method, request.path));
            }
            let form = form_fields(&request.body);
            if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER_GRANT) {
                return Err(format!("grant_type {:?}", form.get("grant_type")));
            }
            let assertion = form.get("assertion").ok_or("no assertion")?;
            let (signing_input, signature) =
                assertion.rsplit_once('.').ok_or("assertion is not a JWT")?;
            let signature = URL_SAFE_NO_PAD
                .decode(signature)
                .map_err(|e| e.to_string())?;
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public_key)
                .verify(signing_input.as_bytes(), &signature)
                .map_err(|_| "bad RS256 signature")?;
            let (header, claims) = signing_input.split_once('.').ok_or("no claims")?;
            let json = |part: &str| -> Result<serde_json::Value, String> {
                let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())?;
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())
            };
            let (header, claims) = (json(header)?, json(claims)?);
            let aud = expected_aud.get().ok_or("audience unknown")?;
            let checks = [
                (header["alg"] == "RS256", "alg"),
                (header["typ"] == "JWT", "typ"),
                (header["kid"] == "key-1", "kid"),
                (
                    claims["iss"] == "promoter@project.iam.gserviceaccount.com",
                    "iss",
                ),
                (claims["scope"] == SCOPE, "scope"),
                (claims["aud"] == aud.as_str(), "aud"),
            ];
            if let Some((_, name)) = checks.iter().find(|(ok, _)| !ok) {
                return Err(format!("wrong {name}: {header} {claims}"));
            }
            let iat = claims["iat"].as_u64().ok_or("no iat")?;
            let exp = claims["exp"].as_u64().ok_or("no exp")?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_secs();
            if exp != iat + 3600 || iat.abs_diff(now) > 60 {
                return Err(format!("bad iat {iat} / exp {exp} (now {now})"));
            }
            Ok(token_answer("ya29.service-account", 3599))
        });
        let token_uri = format!("{}/token", server.url);
        audience.set(token_uri.clone()).expect("set once");

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("key.json");
        let key_file = serde_json::json!({
            "type": "service_account",
            "project_id": "project",
            "private_key_id": "key-1",
            "private_key": pem,
            "client_email": "promoter@project.iam.gserviceaccount.com",
            "client_id": "1234",
            "token_uri": token_uri,
        });
        std::fs::write(&path, key_file.to_string()).expect("write key file");

        let google = GoogleCredentials::with_key_file(&path, vec![]);
        let credential = google.credential("gcr.io").await.expect("token");
        assert_eq!(credential, expected("ya29.service-account"));
        google.credential("eu.gcr.io").await.expect("cached");
        assert_eq!(server.requests(), 1);
        assert!(!format!("{google:?}").contains("PRIVATE"));
    }

    #[tokio::test]
    async fn authorized_user_refresh_token() {
        let secret = "s3cr/et+&=";
        let server = FakeServer::start(move |request| {
            if request.method != "POST" || request.path != "/oauth2/token" {
                return Err(format!("unexpected {} {}", request.method, request.path));
            }
            let form = form_fields(&request.body);
            let field = |name: &str| form.get(name).map(String::as_str);
            if field("grant_type") != Some("refresh_token")
                || field("client_id") != Some("client.apps.googleusercontent.com")
                || field("client_secret") != Some(secret)
                || field("refresh_token") != Some("1//refresh")
            {
                return Err("wrong refresh-token grant".to_owned());
            }
            Ok(token_answer("ya29.user", 3599))
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("adc.json");
        let user = serde_json::json!({
            "type": "authorized_user",
            "client_id": "client.apps.googleusercontent.com",
            "client_secret": secret,
            "refresh_token": "1//refresh",
        });
        std::fs::write(&path, user.to_string()).expect("write file");
        let google = GoogleCredentials::with_key_file(&path, vec![])
            .with_token_url(format!("{}/oauth2/token", server.url));
        let credential = google.credential("gcr.io").await.expect("token");
        assert_eq!(credential, expected("ya29.user"));
        google.credential("gcr.io").await.expect("cached");
        assert_eq!(server.requests(), 1);
    }

    #[tokio::test]
    async fn errors_never_quote_secrets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.json");
        // A private key that is not a string, and one that is not a key.
        std::fs::write(
            &path,
            r#"{"type": "service_account", "client_email": "a@b", "private_key": 12345678}"#,
        )
        .expect("write");
        let google = GoogleCredentials::with_key_file(&path, vec![]);
        let error = google.credential("gcr.io").await.expect_err("bad file");
        assert!(!error.to_string().contains("12345678"), "{error}");
        std::fs::write(
            &path,
            r#"{"type": "service_account", "client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----"}"#,
        )
        .expect("write");
        let error = google.credential("gcr.io").await.expect_err("bad key");
        assert!(matches!(error, GoogleError::PrivateKey { .. }), "{error}");
        assert!(!error.to_string().contains("c2VjcmV0"), "{error}");
        std::fs::write(&path, r#"{"type": "external_account"}"#).expect("write");
        let error = google.credential("gcr.io").await.expect_err("unsupported");
        assert!(error.to_string().contains("external_account"), "{error}");
    }
}
