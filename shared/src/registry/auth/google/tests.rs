//! Tests of [`GoogleCredentials`] against fake token endpoints on loopback: the metadata
//! server, a service-account key and an `authorized_user` file, through Google's library.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
    fn start(handler: impl Fn(&Request) -> Result<String, String> + Send + 'static) -> FakeServer {
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

/// A fresh RSA key: its PKCS#8 PEM and its public key (PKCS#1 DER).
fn rsa_key() -> (String, Vec<u8>) {
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
    (pem, public_key)
}

/// The header and claims of an RS256 JWT whose signature `public_key` verifies.
fn verified_jwt(jwt: &str, public_key: &[u8]) -> (serde_json::Value, serde_json::Value) {
    let (signing_input, signature) = jwt.rsplit_once('.').expect("a JWT");
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("base64url signature");
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(signing_input.as_bytes(), &signature)
        .expect("RS256 signature by the key");
    let (header, claims) = signing_input.split_once('.').expect("claims");
    let json = |part: &str| -> serde_json::Value {
        let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (json(header), json(claims))
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
        let path = request.path.split('?').next().unwrap_or_default();
        if request.method != "GET"
            || path != "/computeMetadata/v1/instance/service-accounts/default/token"
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
    assert_eq!(
        google.access_token().await.expect("cached"),
        "ya29.metadata"
    );
    assert_eq!(server.requests(), 1, "one token fetch for three uses");
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
async fn concurrent_first_uses_fetch_one_token() {
    let server = FakeServer::start(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        Ok(token_answer("ya29.once", 3599))
    });
    let host = server.url.trim_start_matches("http://").to_owned();
    let google = GoogleCredentials::with_metadata_host(host, vec![]);
    let tokens = futures_util::future::join_all((0..8).map(|_| google.access_token())).await;
    assert!(
        tokens
            .iter()
            .all(|t| t.as_deref().ok() == Some("ya29.once"))
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn service_account_key_for_registries_and_a_signed_token_for_apis() {
    let (pem, public_key) = rsa_key();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("key.json");
    let key_file = serde_json::json!({
        "type": "service_account",
        "project_id": "project",
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": "promoter@project.iam.gserviceaccount.com",
        "client_id": "1234",
        "token_uri": "http://127.0.0.1:9/token",
    })
    .to_string();
    std::fs::write(&path, &key_file).expect("write key file");

    let google = GoogleCredentials::with_key_file(&path, vec![]);
    let credential = google.credential("gcr.io").await.expect("key");
    assert_eq!(
        credential,
        Credential::Basic {
            username: JSON_KEY_USERNAME.to_owned(),
            password: STANDARD.encode(&key_file),
        }
    );
    assert!(!format!("{google:?} {credential:?}").contains("PRIVATE"));

    let token = google.access_token().await.expect("self-signed token");
    let (header, claims) = verified_jwt(&token, &public_key);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "key-1");
    assert_eq!(claims["iss"], "promoter@project.iam.gserviceaccount.com");
    assert_eq!(claims["scope"], SCOPE);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(exp > now && exp <= now + 3600 + 60, "exp {exp}, now {now}");
}

#[tokio::test]
async fn authorized_user_refresh_token() {
    let secret = "s3cr/et+&=";
    let server = FakeServer::start(move |request| {
        if request.method != "POST" || request.path != "/oauth2/token" {
            return Err(format!("unexpected {} {}", request.method, request.path));
        }
        let body: serde_json::Value =
            serde_json::from_str(&request.body).map_err(|e| e.to_string())?;
        if body["grant_type"] != "refresh_token"
            || body["client_id"] != "client.apps.googleusercontent.com"
            || body["client_secret"] != secret
            || body["refresh_token"] != "1//refresh"
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
    std::fs::write(
        &path,
        r#"{"type": "service_account", "private_key": 12345678"#,
    )
    .expect("write");
    let google = GoogleCredentials::with_key_file(&path, vec![]);
    let error = google.credential("gcr.io").await.expect_err("not JSON");
    assert!(matches!(error, GoogleError::ParseKeyFile { .. }), "{error}");
    assert!(!error.to_string().contains("12345678"), "{error}");

    let path = dir.path().join("no-key.json");
    std::fs::write(
        &path,
        r#"{"type": "authorized_user", "client_id": "c", "client_secret": "s3cr3t-value"}"#,
    )
    .expect("write");
    let google = GoogleCredentials::with_key_file(&path, vec![]);
    let error = google.credential("gcr.io").await.expect_err("incomplete");
    let text = crate::error_chain::error_chain(&error);
    assert!(matches!(error, GoogleError::Build { .. }), "{text}");
    assert!(!text.contains("s3cr3t-value"), "{text}");

    let path = dir.path().join("odd.json");
    std::fs::write(&path, r#"{"type": "gdch_service_account"}"#).expect("write");
    let google = GoogleCredentials::with_key_file(&path, vec![]);
    let error = google.credential("gcr.io").await.expect_err("unsupported");
    assert!(
        matches!(error, GoogleError::UnsupportedKeyType { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("gdch_service_account"),
        "{error}"
    );
}
