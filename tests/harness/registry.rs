//! A real CNCF distribution (`docker-registry serve`) on `127.0.0.1`, with its own config and
//! filesystem storage in a temporary folder; killed on drop.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use super::http::Credentials;
use super::token::TokenIssuer;

/// The `service` of token-auth registries (the JWT audience).
pub const TOKEN_SERVICE: &str = "promoter-test-registry";
/// The `issuer` of token-auth registries.
pub const TOKEN_ISSUER: &str = "promoter-test-issuer";
/// The user the token issuer of [`TestRegistry::with_token_auth`] requires.
pub const TOKEN_USER: &str = "token-user";
/// Its password.
pub const TOKEN_PASSWORD: &str = "token-password";

const INSTALL_HINT: &str = "run infra/local/test.sh (or `infra/local/stack.sh install`), which \
                            installs docker-registry, skopeo and apache2-utils";

enum Auth {
    Anonymous,
    Htpasswd(Credentials),
    Token(Credentials),
}

/// Options of a [`TestRegistry`].
pub struct RegistryBuilder {
    auth: Auth,
    extra_config: String,
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RegistryBuilder {
    /// An anonymous registry.
    pub fn new() -> Self {
        Self {
            auth: Auth::Anonymous,
            extra_config: String::new(),
        }
    }

    /// Basic auth (`auth.htpasswd`, bcrypt from `htpasswd -Bbn`) with one user.
    pub fn htpasswd(mut self, user: &str, password: &str) -> Self {
        self.auth = Auth::Htpasswd(Credentials::new(user, password));
        self
    }

    /// Bearer-token auth (`auth.token`) through a [`TokenIssuer`] of its own, which requires
    /// [`TOKEN_USER`] / [`TOKEN_PASSWORD`].
    pub fn token_auth(mut self) -> Self {
        self.auth = Auth::Token(Credentials::new(TOKEN_USER, TOKEN_PASSWORD));
        self
    }

    /// Top-level YAML sections appended to the config as they are (`notifications:` ...).
    pub fn extra_config(mut self, yaml: &str) -> Self {
        self.extra_config.push_str(yaml);
        if !self.extra_config.ends_with('\n') {
            self.extra_config.push('\n');
        }
        self
    }

    /// Starts the registry and waits until `GET /v2/` answers (200 or 401).
    pub fn start(self) -> TestRegistry {
        let binary = find_binary("docker-registry").unwrap_or_else(|| {
            panic!("`docker-registry` (CNCF distribution) not found: {INSTALL_HINT}")
        });
        let dir = tempfile::Builder::new()
            .prefix("test-registry-")
            .tempdir()
            .expect("create the registry's temporary folder");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("create the storage folder");

        let (auth_yaml, credentials, issuer) = match self.auth {
            Auth::Anonymous => (String::new(), None, None),
            Auth::Htpasswd(credentials) => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, htpasswd_line(&credentials)).expect("write htpasswd");
                let yaml = format!(
                    "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                    yaml_path(&path)
                );
                (yaml, Some(credentials), None)
            }
            Auth::Token(credentials) => {
                let issuer = TokenIssuer::start(TOKEN_SERVICE, TOKEN_ISSUER, credentials.clone());
                let bundle = dir.path().join("token-ca.pem");
                std::fs::write(&bundle, issuer.cert_pem()).expect("write the root cert bundle");
                let yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: \
                     {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    issuer.realm(),
                    yaml_path(&bundle)
                );
                (yaml, Some(credentials), Some(issuer))
            }
        };

        let log_path = dir.path().join("registry.log");
        let config_path = dir.path().join("config.yml");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let secret = format!(
                "test-secret-{port}-{}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            );
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n\
                 health:\n  storagedriver:\n    enabled: false\n\
                 {auth_yaml}{extra}",
                root = yaml_path(&storage),
                extra = self.extra_config,
            );
            std::fs::write(&config_path, config).expect("write the registry config");
            let log = std::fs::File::create(&log_path).expect("create the registry log");
            let mut command = Command::new(&binary);
            command
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log);
            // distribution reads REGISTRY_* variables as config overrides: none may leak in.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("REGISTRY_") {
                    command.env_remove(key);
                }
            }
            let mut child = command.spawn().expect("spawn docker-registry");
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    return TestRegistry {
                        child,
                        port,
                        credentials,
                        issuer,
                        log_path,
                        storage,
                        dir,
                    };
                }
                Err(reason) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if !last_log.contains("address already in use") {
                        panic!("docker-registry did not start ({reason}); its log:\n{last_log}");
                    }
                }
            }
        }
        panic!("docker-registry found no free port; its last log:\n{last_log}");
    }
}

/// A running registry; the process is killed and its storage removed on drop.
pub struct TestRegistry {
    child: Child,
    port: u16,
    credentials: Option<Credentials>,
    issuer: Option<TokenIssuer>,
    log_path: PathBuf,
    storage: PathBuf,
    // Last: removed after the process is gone.
    dir: TempDir,
}

impl TestRegistry {
    /// An anonymous registry.
    pub fn start() -> Self {
        RegistryBuilder::new().start()
    }

    /// A registry with Basic auth for one user.
    pub fn with_htpasswd(user: &str, password: &str) -> Self {
        RegistryBuilder::new().htpasswd(user, password).start()
    }

    /// A registry with bearer-token auth, and its token issuer (credentials:
    /// [`TestRegistry::credentials`]).
    pub fn with_token_auth() -> Self {
        RegistryBuilder::new().token_auth().start()
    }

    /// Options: auth, extra config sections.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::new()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The filesystem driver's root: blobs are under
    /// `docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data` (see [`TestRegistry::blob_path`]).
    pub fn storage_root(&self) -> &Path {
        &self.storage
    }

    /// Where the registry keeps the blob `sha256:HEX`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The credentials clients need (htpasswd user, or the token issuer's user), if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The token issuer of a token-auth registry.
    pub fn token_issuer(&self) -> Option<&TokenIssuer> {
        self.issuer.as_ref()
    }

    /// Requests the token issuer received (0 without one): tests check tokens are cached.
    pub fn token_requests(&self) -> usize {
        self.issuer.as_ref().map_or(0, TokenIssuer::requests)
    }

    /// The folder holding config, log and storage.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary on `PATH` (or in `/usr/bin`, `/usr/sbin`).
pub(crate) fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn htpasswd_line(credentials: &Credentials) -> Vec<u8> {
    let binary = find_binary("htpasswd")
        .unwrap_or_else(|| panic!("`htpasswd` (apache2-utils) not found: {INSTALL_HINT}"));
    let output = Command::new(binary)
        .args(["-Bbn", &credentials.username, &credentials.password])
        .output()
        .expect("run htpasswd");
    assert!(
        output.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A path as a YAML scalar (a JSON string is a valid double-quoted YAML scalar).
fn yaml_path(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).expect("serialize a path")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port on 127.0.0.1")
        .port()
}

fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited with {status}"));
        }
        if let Some(200 | 401) = probe(port) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("GET /v2/ did not answer 200 or 401 within 15 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The status of `GET /v2/`, over a raw connection (no client: safe anywhere).
fn probe(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request =
        format!("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
