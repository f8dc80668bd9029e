//! Registry credentials from Docker's `config.json`, read the way docker, crane and skopeo do.
//!
//! The file lives at `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`. For a
//! registry host, [`DockerConfig::credential_for`] looks in this order:
//!
//! 1. `credHelpers[host]`: run `docker-credential-<name> get`;
//! 2. `auths[host]` (keys like `host`, `https://host`, `https://index.docker.io/v1/` are matched by
//!    host): `identitytoken`, else `auth` (base64 `user:password`), else `username`/`password`;
//! 3. `credsStore`: run `docker-credential-<name> get`;
//! 4. nothing: anonymous.
//!
//! An `auths` entry without any credential (docker writes `{}` entries when a `credsStore` holds
//! the secret) falls through to step 3. Secrets never appear in `Debug` output or errors.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use tokio::io::AsyncWriteExt as _;

/// How long a credential helper may take before it is killed.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a credential helper answers (on stdout or stderr, exit status 1) when it has nothing for
/// the server; treated as "no credentials", not as an error.
const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";

/// The key docker uses for Docker Hub in `auths` and when asking credential helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// The host all Docker Hub aliases normalize to.
const DOCKER_HUB_HOST: &str = "index.docker.io";

/// Longest helper diagnostic kept in an error, in bytes.
const MAX_DIAGNOSTIC: usize = 1024;

/// Credentials for one registry.
///
/// `Debug` shows the username but never the password or token.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A username and password (or a registry access token used as password).
    Basic {
        /// The user name.
        username: String,
        /// The password (secret).
        password: String,
    },
    /// An identity (OAuth2 refresh) token, exchanged at the token server for bearer tokens.
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => {
                f.debug_tuple("IdentityToken").field(&"<redacted>").finish()
            }
        }
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    /// The config file exists but could not be read.
    #[error("cannot read Docker config {}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The config text is not valid JSON of the expected shape.
    #[error("invalid Docker config JSON")]
    Parse {
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The config file is not valid JSON of the expected shape.
    #[error("invalid Docker config {}", path.display())]
    ParseFile {
        /// The config file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An `auths` entry's `auth` field is not valid base64.
    #[error("the `auth` of Docker config entry `{key}` is not valid base64")]
    AuthBase64 {
        /// The `auths` key (a registry address, not a secret).
        key: String,
        /// The decoding error.
        #[source]
        source: base64::DecodeError,
    },
    /// An `auths` entry's decoded `auth` field is not UTF-8 text.
    #[error("the `auth` of Docker config entry `{key}` is not UTF-8 text")]
    AuthUtf8 {
        /// The `auths` key (a registry address, not a secret).
        key: String,
        /// The UTF-8 error.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// An `auths` entry's decoded `auth` field has no `:` between user and password.
    #[error("the `auth` of Docker config entry `{key}` is not `user:password`")]
    AuthFormat {
        /// The `auths` key (a registry address, not a secret).
        key: String,
    },
    /// A `credHelpers` or `credsStore` name is not a plain program suffix.
    #[error("invalid credential helper name `{helper}`")]
    InvalidHelperName {
        /// The configured name.
        helper: String,
    },
    /// `docker-credential-<name>` is not an executable file on the search path.
    #[error("credential helper `{program}` not found on PATH")]
    HelperNotFound {
        /// The program name, e.g. `docker-credential-ecr-login`.
        program: String,
    },
    /// The helper could not be started.
    #[error("cannot run credential helper `{program}`")]
    HelperSpawn {
        /// The program name.
        program: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the running helper (stdin, stdout) failed.
    #[error("IO error talking to credential helper `{program}`")]
    HelperIo {
        /// The program name.
        program: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The helper did not finish in time and was killed.
    #[error("credential helper `{program}` did not answer within {timeout:?}")]
    HelperTimeout {
        /// The program name.
        program: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The helper exited unsuccessfully (other than "credentials not found").
    #[error("credential helper `{program}` failed ({status}): {message}")]
    HelperFailed {
        /// The program name.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its trimmed stderr (or, if empty, its stdout, where helpers print errors), truncated.
        message: String,
    },
    /// The helper succeeded but its stdout is not the expected JSON.
    #[error("credential helper `{program}` returned invalid JSON")]
    HelperResponse {
        /// The program name.
        program: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// The parts of Docker's `config.json` that hold registry credentials.
///
/// `Debug` lists hosts and helper names but never secrets.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DockerConfig {
    /// `auths`: credentials stored in the file, by registry address.
    #[serde(default, deserialize_with = "null_as_default")]
    auths: BTreeMap<String, AuthEntry>,
    /// `credHelpers`: helper name by registry address.
    #[serde(default, rename = "credHelpers", deserialize_with = "null_as_default")]
    cred_helpers: BTreeMap<String, String>,
    /// `credsStore`: the default helper name.
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// One `auths` entry.
#[derive(Clone, Default, Deserialize)]
struct AuthEntry {
    /// base64 of `user:password`.
    #[serde(default)]
    auth: Option<String>,
    /// Plain user name.
    #[serde(default)]
    username: Option<String>,
    /// Plain password.
    #[serde(default)]
    password: Option<String>,
    /// Identity (refresh) token.
    #[serde(default)]
    identitytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("AuthEntry")
            .field("auth", &redact(&self.auth))
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("identitytoken", &redact(&self.identitytoken))
            .finish()
    }
}

impl AuthEntry {
    /// The credential this entry holds, if any (`key` names the entry in errors).
    fn credential(&self, key: &str) -> Result<Option<Credential>, DockerConfigError> {
        if let Some(token) = non_empty(&self.identitytoken) {
            return Ok(Some(Credential::IdentityToken(token.to_owned())));
        }
        if let Some(auth) = non_empty(&self.auth) {
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let bytes =
                engine
                    .decode(auth.trim())
                    .map_err(|source| DockerConfigError::AuthBase64 {
                        key: key.to_owned(),
                        source,
                    })?;
            let text = String::from_utf8(bytes).map_err(|source| DockerConfigError::AuthUtf8 {
                key: key.to_owned(),
                source,
            })?;
            let (username, password) =
                text.split_once(':')
                    .ok_or_else(|| DockerConfigError::AuthFormat {
                        key: key.to_owned(),
                    })?;
            return Ok(Some(Credential::Basic {
                username: username.to_owned(),
                password: password.trim_end_matches('\0').to_owned(),
            }));
        }
        match (non_empty(&self.username), non_empty(&self.password)) {
            (Some(username), Some(password)) => Ok(Some(Credential::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            })),
            _ => Ok(None),
        }
    }
}

/// What a credential helper prints for `get`.
#[derive(Deserialize)]
struct HelperResponse {
    /// The user name, or `<token>` when `Secret` is an identity token.
    #[serde(rename = "Username", default)]
    username: String,
    /// The password or identity token.
    #[serde(rename = "Secret", default)]
    secret: String,
}

impl DockerConfig {
    /// Reads `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    ///
    /// Returns `Ok(None)` when the file does not exist (or neither variable is set).
    pub fn load() -> Result<Option<DockerConfig>, DockerConfigError> {
        Self::load_from(std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME"))
    }

    /// [`load`](Self::load) with the two environment variables passed in.
    fn load_from(
        docker_config: Option<OsString>,
        home: Option<OsString>,
    ) -> Result<Option<DockerConfig>, DockerConfigError> {
        let dir = match (docker_config, home) {
            (Some(dir), _) if !dir.is_empty() => PathBuf::from(dir),
            (_, Some(home)) if !home.is_empty() => PathBuf::from(home).join(".docker"),
            _ => return Ok(None),
        };
        let path = dir.join("config.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse_file(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DockerConfigError::Read { path, source }),
        }
    }

    /// Reads and parses a config file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<DockerConfig, DockerConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| DockerConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_file(path, &text)
    }

    /// Parses config JSON text.
    pub fn from_json(text: &str) -> Result<DockerConfig, DockerConfigError> {
        serde_json::from_str(text).map_err(|source| DockerConfigError::Parse { source })
    }

    /// Parses config JSON read from `path`.
    fn parse_file(path: &Path, text: &str) -> Result<DockerConfig, DockerConfigError> {
        serde_json::from_str(text).map_err(|source| DockerConfigError::ParseFile {
            path: path.to_owned(),
            source,
        })
    }

    /// The credential for a registry host (e.g. `ghcr.io`, `localhost:5000`, `docker.io`), or
    /// `None` for anonymous access. See the [module docs](self) for the lookup order. Helpers are
    /// looked up on `$PATH` and killed after [`HELPER_TIMEOUT`].
    pub async fn credential_for(
        &self,
        host: &str,
    ) -> Result<Option<Credential>, DockerConfigError> {
        self.credential_with(host, std::env::var_os("PATH").as_deref(), HELPER_TIMEOUT)
            .await
    }

    /// [`credential_for`](Self::credential_for) with an explicit helper search path and timeout.
    async fn credential_with(
        &self,
        host: &str,
        search_path: Option<&OsStr>,
        timeout: Duration,
    ) -> Result<Option<Credential>, DockerConfigError> {
        let host = normalize_host(host);
        if let Some(helper) = find_by_host(&self.cred_helpers, &host).filter(|h| !h.is_empty()) {
            tracing::debug!(%host, helper, "using credHelpers entry");
            return run_helper(helper, &server_url(&host), search_path, timeout).await;
        }
        if let Some((key, entry)) = find_entry_by_host(&self.auths, &host)
            && let Some(credential) = entry.credential(key)?
        {
            tracing::debug!(%host, key, "using auths entry");
            return Ok(Some(credential));
        }
        if let Some(store) = self.creds_store.as_deref().filter(|s| !s.is_empty()) {
            tracing::debug!(%host, helper = store, "using credsStore");
            return run_helper(store, &server_url(&host), search_path, timeout).await;
        }
        Ok(None)
    }
}

/// Deserializes `null` as the type's default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The value if it is present and not empty.
fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Reduces a registry address to its host: drops an `http(s)://` scheme and any path, lowercases,
/// and maps Docker Hub's aliases (`docker.io`, `registry-1.docker.io`) to `index.docker.io`.
fn normalize_host(address: &str) -> String {
    let address = address.trim();
    let lower = address.to_ascii_lowercase();
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
        .unwrap_or(&lower);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "docker.io" | "registry-1.docker.io" => DOCKER_HUB_HOST.to_owned(),
        other => other.to_owned(),
    }
}

/// The server URL to hand a credential helper for a normalized host (docker's form for Hub).
fn server_url(host: &str) -> String {
    if host == DOCKER_HUB_HOST {
        DOCKER_HUB_SERVER.to_owned()
    } else {
        host.to_owned()
    }
}

/// The value whose key normalizes to `host`.
fn find_by_host<'a, V>(map: &'a BTreeMap<String, V>, host: &str) -> Option<&'a V> {
    find_entry_by_host(map, host).map(|(_, v)| v)
}

/// The entry whose key normalizes to `host`: an exact key first, then the first (sorted) key
/// that normalizes to it.
fn find_entry_by_host<'a, V>(map: &'a BTreeMap<String, V>, host: &str) -> Option<(&'a str, &'a V)> {
    if let Some((key, value)) = map.get_key_value(host) {
        return Some((key.as_str(), value));
    }
    map.iter()
        .find(|(key, _)| normalize_host(key) == host)
        .map(|(key, value)| (key.as_str(), value))
}

/// Finds `program` as an executable file in one of the `search_path` directories.
fn find_program(program: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    let search_path = search_path?;
    std::env::split_paths(search_path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file the current user may execute.
#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `path` is a file (no execute bit to check).
#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Runs `docker-credential-<helper> get` for `server_url` (credential helper protocol).
async fn run_helper(
    helper: &str,
    server_url: &str,
    search_path: Option<&OsStr>,
    timeout: Duration,
) -> Result<Option<Credential>, DockerConfigError> {
    if helper.is_empty() || helper.contains(['/', '\\', '\0']) || helper.starts_with('.') {
        return Err(DockerConfigError::InvalidHelperName {
            helper: helper.to_owned(),
        });
    }
    let program = format!("docker-credential-{helper}");
    let executable =
        find_program(&program, search_path).ok_or_else(|| DockerConfigError::HelperNotFound {
            program: program.clone(),
        })?;

    let spawn = || {
        tokio::process::Command::new(&executable)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
    };
    // A helper installed a moment ago can still be open for writing in a process forked
    // meanwhile (ETXTBSY, "text file busy"): that passes within milliseconds.
    let mut spawned = spawn();
    for _ in 0..10 {
        match &spawned {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                spawned = spawn();
            }
            _ => break,
        }
    }
    let mut child = spawned.map_err(|source| DockerConfigError::HelperSpawn {
        program: program.clone(),
        source,
    })?;
    let stdin = child.stdin.take();
    let exchange = async move {
        if let Some(mut stdin) = stdin {
            match stdin.write_all(server_url.as_bytes()).await {
                // A helper may exit without reading its input; its status tells what happened.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                _ => {}
            }
            // Dropping stdin closes it, which ends the helper's input.
        }
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DockerConfigError::HelperTimeout {
            program: program.clone(),
            timeout,
        })?
        .map_err(|source| DockerConfigError::HelperIo {
            program: program.clone(),
            source,
        })?;

    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stdout.contains(NOT_FOUND_MESSAGE) || stderr.contains(NOT_FOUND_MESSAGE) {
            return Ok(None);
        }
        let message = if stderr.trim().is_empty() {
            stdout.trim()
        } else {
            stderr.trim()
        };
        return Err(DockerConfigError::HelperFailed {
            program,
            status: output.status,
            message: truncate(message, MAX_DIAGNOSTIC).to_owned(),
        });
    }

    let response: HelperResponse = serde_json::from_slice(&output.stdout)
        .map_err(|source| DockerConfigError::HelperResponse { program, source })?;
    Ok(match (response.username.as_str(), response.secret) {
        (_, secret) if secret.is_empty() => None,
        ("<token>", secret) => Some(Credential::IdentityToken(secret)),
        (username, secret) => Some(Credential::Basic {
            username: username.to_owned(),
            password: secret,
        }),
    })
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes tests that write and run helper scripts: exec'ing a script while another
    /// thread still holds it open for writing fails with "text file busy".
    static HELPERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn config(json: &str) -> DockerConfig {
        DockerConfig::from_json(json).expect("valid config")
    }

    fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// Credential lookup that never runs a helper (empty search path).
    async fn lookup(
        cfg: &DockerConfig,
        host: &str,
    ) -> Result<Option<Credential>, DockerConfigError> {
        cfg.credential_with(host, Some(OsStr::new("")), HELPER_TIMEOUT)
            .await
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[tokio::test]
    async fn auths_key_forms_match_by_host() {
        let cfg = config(&format!(
            r#"{{"auths": {{
                "ghcr.io": {{"auth": "{a}"}},
                "https://quay.io": {{"auth": "{b}"}},
                "http://localhost:5000/v1/": {{"username": "u3", "password": "p3"}},
                "https://index.docker.io/v1/": {{"auth": "{d}", "email": "x@example.com"}},
                "Example.COM:8443": {{"identitytoken": "idt"}}
            }}}}"#,
            a = b64("u1:p1:with:colons"),
            b = b64("u2:p2"),
            d = b64("hub:pw"),
        ));
        assert_eq!(
            lookup(&cfg, "ghcr.io").await.expect("ok"),
            Some(basic("u1", "p1:with:colons"))
        );
        assert_eq!(
            lookup(&cfg, "quay.io").await.expect("ok"),
            Some(basic("u2", "p2"))
        );
        assert_eq!(
            lookup(&cfg, "localhost:5000").await.expect("ok"),
            Some(basic("u3", "p3"))
        );
        for hub in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        ] {
            assert_eq!(
                lookup(&cfg, hub).await.expect("ok"),
                Some(basic("hub", "pw")),
                "{hub}"
            );
        }
        assert_eq!(
            lookup(&cfg, "example.com:8443").await.expect("ok"),
            Some(Credential::IdentityToken("idt".to_owned()))
        );
        assert_eq!(lookup(&cfg, "localhost:5001").await.expect("ok"), None);
        assert_eq!(lookup(&cfg, "gcr.io").await.expect("ok"), None);
    }

    #[tokio::test]
    async fn identity_token_wins_and_unpadded_base64_is_accepted() {
        let cfg = config(&format!(
            r#"{{"auths": {{
                "a.example": {{"auth": "{a}", "identitytoken": "tok"}},
                "b.example": {{"auth": "{b}"}}
            }}}}"#,
            a = b64("u:p"),
            b = b64("user:pw").trim_end_matches('='),
        ));
        assert_eq!(
            lookup(&cfg, "a.example").await.expect("ok"),
            Some(Credential::IdentityToken("tok".to_owned()))
        );
        assert_eq!(
            lookup(&cfg, "b.example").await.expect("ok"),
            Some(basic("user", "pw"))
        );
    }

    #[tokio::test]
    async fn bad_auth_fields_are_errors_without_secrets() {
        let cfg = config(&format!(
            r#"{{"auths": {{
                "a.example": {{"auth": "!!not base64!!"}},
                "b.example": {{"auth": "{b}"}}
            }}}}"#,
            b = b64("no-colon-secret"),
        ));
        let err = lookup(&cfg, "a.example").await.expect_err("bad base64");
        assert!(matches!(err, DockerConfigError::AuthBase64 { ref key, .. } if key == "a.example"));
        let err = lookup(&cfg, "b.example").await.expect_err("no colon");
        assert!(matches!(err, DockerConfigError::AuthFormat { .. }));
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn parsing_tolerates_nulls_and_unknown_fields_and_rejects_bad_json() {
        let cfg =
            config(r#"{"auths": null, "credHelpers": null, "credsStore": null, "psFormat": "x"}"#);
        assert!(cfg.auths.is_empty() && cfg.cred_helpers.is_empty() && cfg.creds_store.is_none());
        assert!(matches!(
            DockerConfig::from_json("{"),
            Err(DockerConfigError::Parse { .. })
        ));
        assert!(matches!(
            DockerConfig::from_json(r#"{"auths": []}"#),
            Err(DockerConfigError::Parse { .. })
        ));
    }

    #[test]
    fn load_follows_docker_config_then_home() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docker_dir = dir.path().join("custom");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&docker_dir).expect("mkdir");
        std::fs::create_dir_all(home.join(".docker")).expect("mkdir");
        std::fs::write(
            docker_dir.join("config.json"),
            r#"{"credsStore": "custom"}"#,
        )
        .expect("write");
        std::fs::write(
            home.join(".docker/config.json"),
            r#"{"credsStore": "home"}"#,
        )
        .expect("write");

        let load = |dc: Option<&Path>, h: Option<&Path>| {
            DockerConfig::load_from(
                dc.map(|p| p.as_os_str().to_owned()),
                h.map(|p| p.as_os_str().to_owned()),
            )
        };
        let store = |c: Option<DockerConfig>| c.and_then(|c| c.creds_store);
        assert_eq!(
            store(load(Some(&docker_dir), Some(&home)).expect("ok")),
            Some("custom".to_owned())
        );
        assert_eq!(
            store(load(None, Some(&home)).expect("ok")),
            Some("home".to_owned())
        );
        assert_eq!(
            store(load(Some(Path::new("")), Some(&home)).expect("ok")),
            Some("home".to_owned())
        );
        // DOCKER_CONFIG set but without a config.json: no fallback to HOME, like docker.
        assert!(
            load(Some(&dir.path().join("missing")), Some(&home))
                .expect("ok")
                .is_none()
        );
        assert!(load(None, None).expect("ok").is_none());

        std::fs::write(docker_dir.join("config.json"), "not json").expect("write");
        assert!(matches!(
            load(Some(&docker_dir), None),
            Err(DockerConfigError::ParseFile { ref path, .. }) if path.ends_with("custom/config.json")
        ));
        assert!(matches!(
            DockerConfig::from_path(dir.path().join("nope.json")),
            Err(DockerConfigError::Read { .. })
        ));
        let cfg = DockerConfig::from_path(home.join(".docker/config.json")).expect("ok");
        assert_eq!(cfg.creds_store.as_deref(), Some("home"));
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let cfg = config(&format!(
            r#"{{"auths": {{
                "a.example": {{"auth": "{a}"}},
                "b.example": {{"username": "bob", "password": "s3cr3t-pw"}},
                "c.example": {{"identitytoken": "s3cr3t-tok"}}
            }}, "credsStore": "desktop"}}"#,
            a = b64("alice:s3cr3t-auth"),
        ));
        let shown = format!(
            "{cfg:?} {:?} {:?}",
            basic("alice", "s3cr3t-pw"),
            Credential::IdentityToken("s3cr3t-tok".to_owned())
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains(&b64("alice:s3cr3t-auth")), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("bob") && shown.contains("desktop"),
            "{shown}"
        );
    }

    /// Writes an executable `docker-credential-<name>` shell script into `dir`.
    fn write_helper(dir: &Path, name: &str, body: &str) {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(format!("docker-credential-{name}"));
        let mut file = std::fs::File::create(&path).expect("create helper");
        file.write_all(format!("#!/bin/sh\n{body}\n").as_bytes())
            .expect("write helper");
        file.sync_all().expect("sync helper");
        drop(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod helper");
    }

    /// A helper knowing `good.example` (basic), `token.example` (identity token) and Docker Hub,
    /// failing for `broken.example`, and "not found" for everything else.
    const TEST_HELPER: &str = r#"[ "$1" = get ] || exit 2
host=$(cat)
case "$host" in
  good.example) echo '{"ServerURL":"good.example","Username":"helper-user","Secret":"helper-pw"}' ;;
  token.example) echo '{"ServerURL":"token.example","Username":"<token>","Secret":"helper-tok"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"hub-user","Secret":"hub-pw"}' ;;
  empty.example) echo '{"ServerURL":"empty.example","Username":"","Secret":""}' ;;
  garbage.example) echo 'not json' ;;
  broken.example) echo "keychain locked" >&2; exit 3 ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#;

    #[tokio::test]
    async fn credential_helper_protocol() {
        let _guard = HELPERS.lock().await;
        let dir = tempfile::tempdir().expect("tempdir");
        write_helper(dir.path(), "test", TEST_HELPER);
        let path =
            std::env::join_paths([Path::new("/nonexistent"), dir.path()]).expect("join PATH");
        let cfg = config(r#"{"credsStore": "test"}"#);
        let get =
            |host: &'static str| cfg.credential_with(host, Some(path.as_os_str()), HELPER_TIMEOUT);

        assert_eq!(
            get("good.example").await.expect("ok"),
            Some(basic("helper-user", "helper-pw"))
        );
        assert_eq!(
            get("https://good.example/").await.expect("ok"),
            Some(basic("helper-user", "helper-pw"))
        );
        assert_eq!(
            get("token.example").await.expect("ok"),
            Some(Credential::IdentityToken("helper-tok".to_owned()))
        );
        assert_eq!(
            get("docker.io").await.expect("ok"),
            Some(basic("hub-user", "hub-pw"))
        );
        assert_eq!(get("other.example").await.expect("ok"), None);
        assert_eq!(get("empty.example").await.expect("ok"), None);
        assert!(matches!(
            get("garbage.example").await,
            Err(DockerConfigError::HelperResponse { ref program, .. }) if program == "docker-credential-test"
        ));
        let err = get("broken.example").await.expect_err("helper fails");
        let text = err.to_string();
        assert!(
            matches!(err, DockerConfigError::HelperFailed { ref message, .. } if message == "keychain locked"),
            "{text}"
        );
        assert!(
            text.contains("docker-credential-test") && text.contains("keychain locked"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn precedence_cred_helpers_then_auths_then_creds_store() {
        let _guard = HELPERS.lock().await;
        let dir = tempfile::tempdir().expect("tempdir");
        write_helper(
            dir.path(),
            "store",
            r#"cat >/dev/null; echo '{"Username":"from-store","Secret":"s"}'"#,
        );
        write_helper(
            dir.path(),
            "per-host",
            r#"cat >/dev/null; echo '{"Username":"from-helper","Secret":"s"}'"#,
        );
        let path = dir.path().as_os_str();
        let cfg = config(&format!(
            r#"{{
                "auths": {{
                    "helped.example": {{"auth": "{a}"}},
                    "https://filed.example/v1/": {{"auth": "{a}"}},
                    "https://index.docker.io/v1/": {{}}
                }},
                "credHelpers": {{"helped.example": "per-host", "missing.example": "absent"}},
                "credsStore": "store"
            }}"#,
            a = b64("from-file:s"),
        ));
        let user = |c: Option<Credential>| match c {
            Some(Credential::Basic { username, .. }) => username,
            other => format!("{other:?}"),
        };
        let get = |host: &'static str| cfg.credential_with(host, Some(path), HELPER_TIMEOUT);
        assert_eq!(
            user(get("helped.example").await.expect("ok")),
            "from-helper"
        );
        assert_eq!(user(get("filed.example").await.expect("ok")), "from-file");
        // An empty `auths` entry (as docker writes next to a credsStore) falls through.
        assert_eq!(user(get("docker.io").await.expect("ok")), "from-store");
        assert_eq!(
            user(get("elsewhere.example").await.expect("ok")),
            "from-store"
        );
        assert!(matches!(
            get("missing.example").await,
            Err(DockerConfigError::HelperNotFound { ref program }) if program == "docker-credential-absent"
        ));
        // Without a credsStore, an unknown host is anonymous.
        let no_store = config(r#"{"credHelpers": {"helped.example": "per-host"}}"#);
        assert_eq!(
            no_store
                .credential_with("x.example", Some(path), HELPER_TIMEOUT)
                .await
                .expect("ok"),
            None
        );
    }

    #[tokio::test]
    async fn helper_timeout_and_bad_names() {
        let _guard = HELPERS.lock().await;
        let dir = tempfile::tempdir().expect("tempdir");
        write_helper(dir.path(), "slow", "exec sleep 5");
        let path = dir.path().as_os_str();
        let cfg = config(r#"{"credsStore": "slow"}"#);
        let started = std::time::Instant::now();
        let err = cfg
            .credential_with("a.example", Some(path), Duration::from_millis(200))
            .await
            .expect_err("times out");
        assert!(
            matches!(err, DockerConfigError::HelperTimeout { .. }),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(4));

        for name in ["../slow", "a/b", ".hidden"] {
            let cfg = DockerConfig {
                creds_store: Some(name.to_owned()),
                ..DockerConfig::default()
            };
            assert!(matches!(
                cfg.credential_with("a.example", Some(path), HELPER_TIMEOUT)
                    .await,
                Err(DockerConfigError::InvalidHelperName { .. })
            ));
        }
    }

    #[test]
    fn host_normalization() {
        assert_eq!(
            normalize_host("https://Index.Docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(normalize_host("docker.io"), "index.docker.io");
        assert_eq!(
            normalize_host("http://localhost:5000/v2/"),
            "localhost:5000"
        );
        assert_eq!(normalize_host(" ghcr.io "), "ghcr.io");
        assert_eq!(server_url("index.docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_url("ghcr.io"), "ghcr.io");
        assert_eq!(truncate("héllo", 2), "h");
    }
}
