//! A raw registry HTTP client for the harness: `reqwest::blocking`, independent of the
//! promoter's own client. Follows `401` challenges: Basic, or the bearer-token flow (the token is
//! fetched from the challenge's realm with Basic credentials and cached per scope).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::HeaderMap;

use super::off_runtime;
use super::registry::TestRegistry;

/// A user name and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl Credentials {
    /// Credentials from a user name and password.
    pub fn new(username: &str, password: &str) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The value of an `Authorization: Basic ...` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// `user:password`, as `skopeo --creds` takes it.
    pub fn colon_pair(&self) -> String {
        format!("{}:{}", self.username, self.password)
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Unknown,
    Basic,
    Bearer,
}

struct AuthState {
    scheme: Scheme,
    /// Bearer tokens by scope.
    tokens: HashMap<String, String>,
}

/// Every manifest media type, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// A blocking client for one registry, with optional credentials.
pub struct RawClient {
    base: String,
    credentials: Option<Credentials>,
    client: reqwest::blocking::Client,
    auth: Mutex<AuthState>,
}

impl RawClient {
    /// A client for `host` (`127.0.0.1:PORT`, plain HTTP).
    pub fn new(host: &str, credentials: Option<Credentials>) -> Self {
        let client = off_runtime(|| {
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .redirect(reqwest::redirect::Policy::limited(5))
                .build()
                .expect("build the harness HTTP client")
        });
        Self {
            base: format!("http://{host}"),
            credentials,
            client,
            auth: Mutex::new(AuthState {
                scheme: Scheme::Unknown,
                tokens: HashMap::new(),
            }),
        }
    }

    /// A client for a test registry, with its credentials if it has any.
    pub fn for_registry(registry: &TestRegistry) -> Self {
        Self::new(&registry.host(), registry.credentials().cloned())
    }

    /// A client for a test registry without credentials.
    pub fn anonymous(registry: &TestRegistry) -> Self {
        Self::new(&registry.host(), None)
    }

    /// `http://HOST`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request: `url` is a path (`/v2/...`) or an absolute URL (an upload `Location`).
    /// `repo` gives the token scope (`repository:REPO:pull,push`) when the challenge names none.
    /// Answers `401` challenges once: Basic, or bearer through the realm.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        repo: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        let url = if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        };
        let default_scope = format!("repository:{repo}:pull,push");
        off_runtime(|| {
            let first = self.send_once(method, &url, &default_scope, headers, body);
            if first.status != 401 || self.credentials.is_none() {
                return first;
            }
            let Some(challenge) = first.header("www-authenticate").map(str::to_owned) else {
                return first;
            };
            if !self.answer_challenge(&challenge, &default_scope) {
                return first;
            }
            self.send_once(method, &url, &default_scope, headers, body)
        })
    }

    /// `GET /v2/REPO/blobs/DIGEST`.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Response {
        self.send(
            "GET",
            &format!("/v2/{repo}/blobs/{digest}"),
            repo,
            &[],
            None,
        )
    }

    /// `GET /v2/REPO/manifests/REFERENCE`, accepting every manifest media type.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Response {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.send("GET", &path, repo, &[("Accept", MANIFEST_ACCEPT)], None)
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = self.client.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(value) = self.authorization(scope) {
            request = request.header("Authorization", value);
        }
        if let Some(body) = body {
            request = request.body(body.to_vec());
        }
        let response = request.send().unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .unwrap_or_else(|e| panic!("{url}: reading the body: {e}"));
        Response {
            status,
            headers,
            body: body.to_vec(),
        }
    }

    fn authorization(&self, scope: &str) -> Option<String> {
        let credentials = self.credentials.as_ref()?;
        let state = self.auth.lock().expect("auth state");
        match state.scheme {
            Scheme::Unknown => None,
            Scheme::Basic => Some(credentials.basic_header()),
            Scheme::Bearer => state.tokens.get(scope).map(|t| format!("Bearer {t}")),
        }
    }

    /// Prepares credentials for a retry; false if the challenge cannot be answered.
    fn answer_challenge(&self, challenge: &str, default_scope: &str) -> bool {
        let Some(credentials) = &self.credentials else {
            return false;
        };
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            self.auth.lock().expect("auth state").scheme = Scheme::Basic;
            return true;
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let Some(realm) = params.get("realm") else {
            return false;
        };
        // Tokens are cached by the scope this client asks for, so that the next request of the
        // same repository finds it.
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| default_scope.to_owned());
        // Ask for the client's own scope too, so the cached token serves every later request
        // of the repository (a pull-only token cached under the push scope would not).
        let mut url = format!("{realm}?scope={}", percent_encode(&scope));
        if scope != default_scope {
            url.push_str(&format!("&scope={}", percent_encode(default_scope)));
        }
        if let Some(service) = params.get("service") {
            url.push_str(&format!("&service={}", percent_encode(service)));
        }
        let response = self
            .client
            .get(&url)
            .header("Authorization", credentials.basic_header())
            .send()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        if !response.status().is_success() {
            return false;
        }
        let json: serde_json::Value = response.json().expect("a token response");
        let Some(token) = json
            .get("token")
            .or_else(|| json.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
        else {
            return false;
        };
        let mut state = self.auth.lock().expect("auth state");
        state.scheme = Scheme::Bearer;
        state.tokens.insert(default_scope.to_owned(), token.clone());
        state.tokens.insert(scope, token);
        true
    }
}

/// Parses `Scheme k="v",k2=v2` into the scheme and its parameters (quoted values may hold
/// commas).
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    (scheme.to_owned(), params)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (as a space).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
