//! A bearer-token issuer for distribution's `auth.token`: an EC P-256 self-signed certificate
//! (the registry's `rootcertbundle`), and an HTTP endpoint answering
//! `GET /token?service=S&scope=...` (Basic credentials required) with
//! `{"token", "access_token", "expires_in"}`: an ES256 JWT with the certificate in `x5c`,
//! granting every scope asked for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::http::{Credentials, percent_decode};

/// Seconds a token lives.
pub const TOKEN_LIFETIME_SECS: u64 = 300;

struct Shared {
    service: String,
    issuer: String,
    credentials: Credentials,
    key: EcdsaKeyPair,
    cert_der_b64: String,
    requests: AtomicUsize,
    issued: AtomicUsize,
    next_jti: AtomicUsize,
    scopes: Mutex<Vec<String>>,
}

/// A running token issuer on `127.0.0.1`, stopped on drop.
pub struct TokenIssuer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    port: u16,
    cert_pem: String,
    shared: Arc<Shared>,
}

impl TokenIssuer {
    /// Starts an issuer signing for `service` as `issuer`, requiring `credentials`.
    pub fn start(service: &str, issuer: &str, credentials: Credentials) -> Self {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate a P-256 key");
        let mut params =
            rcgen::CertificateParams::new(vec![issuer.to_owned()]).expect("certificate parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, issuer);
        let cert = params
            .self_signed(&key_pair)
            .expect("self-sign the issuer certificate");
        let der = cert.der().to_vec();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key_pair.serialize_der())
                .expect("load the signing key");
        let cert_pem = pem("CERTIFICATE", &der);

        let server = Arc::new(
            tiny_http::Server::http("127.0.0.1:0").expect("bind the token issuer on 127.0.0.1"),
        );
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let shared = Arc::new(Shared {
            service: service.to_owned(),
            issuer: issuer.to_owned(),
            credentials,
            key,
            cert_der_b64: STANDARD.encode(&der),
            requests: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
            next_jti: AtomicUsize::new(0),
            scopes: Mutex::new(Vec::new()),
        });
        let thread = {
            let server = Arc::clone(&server);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("token-issuer".into())
                .spawn(move || {
                    for request in server.incoming_requests() {
                        handle(&shared, request);
                    }
                })
                .expect("spawn the token issuer")
        };
        Self {
            server,
            thread: Some(thread),
            port,
            cert_pem,
            shared,
        }
    }

    /// The realm URL: `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The `service` (the JWT audience).
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The `issuer` (the JWT `iss`).
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The credentials it requires.
    pub fn credentials(&self) -> &Credentials {
        &self.shared.credentials
    }

    /// The certificate, PEM: the registry's `auth.token.rootcertbundle`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Requests received on the realm, refused ones included.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Tokens issued.
    pub fn issued(&self) -> usize {
        self.shared.issued.load(Ordering::SeqCst)
    }

    /// Every `scope` parameter of the tokens issued, in order.
    pub fn scopes(&self) -> Vec<String> {
        self.shared.scopes.lock().expect("scopes").clone()
    }

    /// Signs a token for `subject` granting `scopes` (`type:name:actions`), as the endpoint does.
    pub fn sign(&self, subject: &str, scopes: &[String]) -> String {
        sign(&self.shared, subject, scopes)
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(shared: &Shared, request: tiny_http::Request) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if path != "/token" || *request.method() != tiny_http::Method::Get {
        let _ =
            request.respond(tiny_http::Response::from_string("not found").with_status_code(404));
        return;
    }
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let authorized = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .is_some_and(|h| h.value.as_str() == shared.credentials.basic_header());
    if !authorized {
        let response =
            tiny_http::Response::from_string("{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}")
                .with_status_code(401)
                .with_header(header("WWW-Authenticate", "Basic realm=\"token-issuer\""))
                .with_header(header("Content-Type", "application/json"));
        let _ = request.respond(response);
        return;
    }
    let mut scopes = Vec::new();
    let mut service_ok = true;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "scope" => scopes.extend(percent_decode(value).split(' ').map(str::to_owned)),
            "service" => service_ok = percent_decode(value) == shared.service,
            _ => {}
        }
    }
    if !service_ok {
        let response = tiny_http::Response::from_string("unknown service").with_status_code(400);
        let _ = request.respond(response);
        return;
    }
    scopes.retain(|s| !s.is_empty());
    let token = sign(shared, &shared.credentials.username, &scopes);
    shared.scopes.lock().expect("scopes").extend(scopes);
    shared.issued.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_LIFETIME_SECS,
    });
    let response = tiny_http::Response::from_string(body.to_string())
        .with_header(header("Content-Type", "application/json"));
    let _ = request.respond(response);
}

fn sign(shared: &Shared, subject: &str, scopes: &[String]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let jti = shared.next_jti.fetch_add(1, Ordering::SeqCst);
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            // `type:name:actions`; the name may itself hold colons (a port).
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
            Some(serde_json::json!({ "type": kind, "name": name, "actions": actions }))
        })
        .collect();
    let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "x5c": [shared.cert_der_b64] });
    let claims = serde_json::json!({
        "iss": shared.issuer,
        "sub": subject,
        "aud": shared.service,
        "exp": now + TOKEN_LIFETIME_SECS,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{jti}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = shared
        .key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .expect("sign the token");
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    )
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
