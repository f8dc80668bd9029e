//! `Www-Authenticate` challenges and the token exchange of the OCI distribution token auth.
//!
//! A registry that wants credentials answers `401 Unauthorized` with a `Www-Authenticate` header
//! such as `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="…"`
//! (RFC 7235 syntax). This module parses that header ([`parse`]), builds the token request URL
//! for a Bearer challenge ([`token_url`], [`repository_scope`]) and reads the token server's JSON
//! answer ([`TokenResponse`]). Everything here is pure: no IO.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// How long a token lives when the token server does not say (`expires_in` omitted or zero), per
/// the token authentication specification.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A parsed authentication challenge the promoter knows how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic`: send `Authorization: Basic base64(user:password)` with every request.
    Basic {
        /// The protection space, if the server named one (informational only).
        realm: Option<String>,
    },
    /// `Bearer`: fetch a token from the realm, then send `Authorization: Bearer TOKEN`.
    Bearer(BearerChallenge),
}

/// The parameters of a `Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// URL of the token server (always present: a Bearer challenge without it is rejected).
    pub realm: String,
    /// The `service` to name in the token request, if given.
    pub service: Option<String>,
    /// The `scope` the registry asks for; may hold several space-separated entries.
    pub scope: Option<String>,
    /// An `error` such as `invalid_token` or `insufficient_scope` (RFC 6750), if given.
    pub error: Option<String>,
    /// Any other parameters (e.g. `error_description`), names lowercased, in header order.
    pub params: Vec<(String, String)>,
}

impl BearerChallenge {
    /// The individual entries of [`scope`](Self::scope), split at whitespace (none if absent).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split_whitespace()
    }
}

/// Why a `Www-Authenticate` value could not be parsed or a token URL could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The header value is empty or holds only separators.
    #[error("the Www-Authenticate header is empty")]
    Empty,
    /// A challenge was expected to start with an auth scheme (a token) at this byte offset.
    #[error("expected an auth scheme at byte {position} of the Www-Authenticate header")]
    ExpectedScheme {
        /// Byte offset into the header value.
        position: usize,
    },
    /// A parameter name was not followed by `=` and a value at this byte offset.
    #[error("expected a parameter value at byte {position} of the Www-Authenticate header")]
    ExpectedValue {
        /// Byte offset into the header value.
        position: usize,
    },
    /// Something other than `,` or the end of the header followed a parameter.
    #[error("unexpected character at byte {position} of the Www-Authenticate header")]
    UnexpectedCharacter {
        /// Byte offset into the header value.
        position: usize,
    },
    /// A quoted string was not closed before the end of the header.
    #[error(
        "unterminated quoted string starting at byte {position} of the Www-Authenticate header"
    )]
    UnterminatedQuote {
        /// Byte offset of the opening quote.
        position: usize,
    },
    /// None of the challenges uses a scheme the promoter supports (`Basic`, `Bearer`).
    #[error("unsupported authentication scheme `{scheme}` (only Basic and Bearer are supported)")]
    UnsupportedScheme {
        /// The first scheme the header offered.
        scheme: String,
    },
    /// A `Bearer` challenge has no (or an empty) `realm` parameter.
    #[error("the Bearer challenge has no realm (token server URL)")]
    MissingRealm,
    /// The realm is not an absolute `http://` or `https://` URL.
    #[error("the Bearer realm `{realm}` is not an absolute http(s) URL")]
    InvalidRealm {
        /// The realm as the registry sent it.
        realm: String,
    },
}

/// Parses a `Www-Authenticate` header value into the first challenge with a supported scheme.
///
/// The scheme is case-insensitive, parameter names are case-insensitive (and lowercased), values
/// are tokens or quoted strings (`\` escapes the next character). A header may list several
/// challenges (`Negotiate, Basic realm="x"`); unsupported ones are skipped. If a parameter occurs
/// twice, the first occurrence wins. A `Bearer` challenge must carry a non-empty `realm`.
pub fn parse(header: &str) -> Result<Challenge, ChallengeError> {
    let raw = parse_raw(header)?;
    let first_scheme = match raw.first() {
        Some(c) => c.scheme.clone(),
        None => return Err(ChallengeError::Empty),
    };
    for challenge in raw {
        if challenge.scheme.eq_ignore_ascii_case("basic") {
            let mut params = challenge.params;
            return Ok(Challenge::Basic {
                realm: take_param(&mut params, "realm"),
            });
        }
        if challenge.scheme.eq_ignore_ascii_case("bearer") {
            let mut params = challenge.params;
            let realm = take_param(&mut params, "realm")
                .filter(|r| !r.is_empty())
                .ok_or(ChallengeError::MissingRealm)?;
            let service = take_param(&mut params, "service");
            let scope = take_param(&mut params, "scope");
            let error = take_param(&mut params, "error");
            return Ok(Challenge::Bearer(BearerChallenge {
                realm,
                service,
                scope,
                error,
                params,
            }));
        }
    }
    Err(ChallengeError::UnsupportedScheme {
        scheme: first_scheme,
    })
}

/// Builds the token request URL `REALM?service=S&scope=A&scope=B`.
///
/// Each element of `scopes` may itself hold several space-separated entries (so the challenge's
/// own `scope` can be passed as is); every entry becomes its own `scope` parameter, as the token
/// specification requires. `service` is included when the challenge named one. Values are
/// percent-encoded (everything but `A-Z a-z 0-9 - . _ ~`). If the realm already has a query the
/// parameters are appended with `&`; a fragment in the realm is dropped.
pub fn token_url(challenge: &BearerChallenge, scopes: &[String]) -> Result<String, ChallengeError> {
    let realm = challenge.realm.trim();
    let lower = realm.to_ascii_lowercase();
    let has_host = ["https://", "http://"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['/', '?', '#']));
    if !has_host {
        return Err(ChallengeError::InvalidRealm {
            realm: challenge.realm.clone(),
        });
    }
    let base = realm.split_once('#').map_or(realm, |(before, _)| before);

    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(service) = challenge.service.as_deref() {
        query.push(("service", service));
    }
    for entry in scopes.iter().flat_map(|s| s.split_whitespace()) {
        query.push(("scope", entry));
    }

    let mut url = base.to_owned();
    for (i, (name, value)) in query.iter().enumerate() {
        if i == 0 {
            if !url.contains('?') {
                url.push('?');
            } else if !url.ends_with(['?', '&']) {
                url.push('&');
            }
        } else {
            url.push('&');
        }
        url.push_str(name);
        url.push('=');
        url.push_str(&encode_query_value(value));
    }
    Ok(url)
}

/// The token scope for a repository: `repository:NAME:ACTION,ACTION` (e.g. `pull,push`).
pub fn repository_scope(repository: &str, actions: &[&str]) -> String {
    format!("repository:{repository}:{}", actions.join(","))
}

/// The JSON body a token server returns.
///
/// `Debug` redacts the tokens.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    #[serde(default)]
    pub token: Option<String>,
    /// The same token under its OAuth 2.0 name; used when `token` is absent.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Seconds the token stays valid after `issued_at` (default 60).
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// RFC 3339 time the token was issued, if the server said.
    #[serde(default)]
    pub issued_at: Option<String>,
    /// A refresh token, returned only for OAuth2 requests with `offline_token=true`.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    /// The token to send as `Authorization: Bearer …`: `token`, else `access_token` (empty
    /// strings count as absent).
    pub fn bearer(&self) -> Option<&str> {
        [&self.token, &self.access_token]
            .into_iter()
            .filter_map(|t| t.as_deref())
            .find(|t| !t.is_empty())
    }

    /// How long the token stays valid: `expires_in` seconds, or [`DEFAULT_TOKEN_LIFETIME`] when
    /// it is omitted or zero.
    pub fn lifetime(&self) -> Duration {
        match self.expires_in {
            Some(secs) if secs > 0 => Duration::from_secs(secs),
            _ => DEFAULT_TOKEN_LIFETIME,
        }
    }
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("TokenResponse")
            .field("token", &redact(&self.token))
            .field("access_token", &redact(&self.access_token))
            .field("expires_in", &self.expires_in)
            .field("issued_at", &self.issued_at)
            .field("refresh_token", &redact(&self.refresh_token))
            .finish()
    }
}

/// Percent-encodes a query (or form) value: unreserved characters (RFC 3986 `A-Z a-z 0-9 - . _
/// ~`) are kept, every other byte of the UTF-8 text becomes `%XX` with upper-case hex digits.
pub fn encode_query_value(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Removes the first parameter called `name` from `params` and returns its value.
fn take_param(params: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let index = params.iter().position(|(n, _)| n == name)?;
    Some(params.remove(index).1)
}

/// One challenge as written, before interpretation.
struct RawChallenge {
    /// The auth scheme as written.
    scheme: String,
    /// Parameters with lowercased names; later duplicates dropped.
    params: Vec<(String, String)>,
}

/// Splits a header value into challenges (RFC 7235 `#challenge`, with `token68` tolerated).
fn parse_raw(header: &str) -> Result<Vec<RawChallenge>, ChallengeError> {
    let mut p = Cursor { s: header, pos: 0 };
    let mut out = Vec::new();
    p.skip_separators();
    while !p.at_end() {
        let start = p.pos;
        let scheme = p
            .token()
            .ok_or(ChallengeError::ExpectedScheme { position: start })?;
        let mut challenge = RawChallenge {
            scheme: scheme.to_owned(),
            params: Vec::new(),
        };
        let had_space = p.skip_ws();
        // The first item after the scheme: a token68, a parameter, or nothing.
        if !p.at_end() && p.peek() != Some(b',') {
            if !had_space {
                return Err(ChallengeError::UnexpectedCharacter { position: p.pos });
            }
            if !p.try_token68() {
                p.param(&mut challenge.params)?;
            }
        }
        // Further parameters, until the end or the start of the next challenge.
        loop {
            p.skip_ws();
            if p.at_end() {
                break;
            }
            if p.peek() != Some(b',') {
                return Err(ChallengeError::UnexpectedCharacter { position: p.pos });
            }
            p.skip_separators();
            if p.at_end() || !p.looks_like_param() {
                break;
            }
            p.param(&mut challenge.params)?;
        }
        out.push(challenge);
    }
    Ok(out)
}

/// A byte cursor over the header value.
struct Cursor<'a> {
    /// The whole header value.
    s: &'a str,
    /// Current byte offset (always on a char boundary).
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Whether the whole value has been consumed.
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// The current byte, if any.
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    /// Skips spaces and tabs; returns whether any were skipped.
    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Skips whitespace and list commas (empty list elements are allowed).
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    /// Consumes a `token` (RFC 7230 `tchar`s), if one starts here.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.s[start..self.pos])
    }

    /// Whether a `name =` parameter starts here (without consuming anything).
    fn looks_like_param(&mut self) -> bool {
        let start = self.pos;
        let found = self.token().is_some() && {
            self.skip_ws();
            self.peek() == Some(b'=')
        };
        self.pos = start;
        found
    }

    /// Consumes a `token68` if one stands alone here (followed by the end or a comma).
    fn try_token68(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        }) {
            self.pos += 1;
        }
        if self.pos == start {
            return false;
        }
        while self.peek() == Some(b'=') {
            self.pos += 1;
        }
        let before_ws = self.pos;
        self.skip_ws();
        if self.at_end() || self.peek() == Some(b',') {
            self.pos = before_ws;
            true
        } else {
            self.pos = start;
            false
        }
    }

    /// Consumes `name = value` and records it (first occurrence of a name wins).
    fn param(&mut self, params: &mut Vec<(String, String)>) -> Result<(), ChallengeError> {
        let start = self.pos;
        let name = self
            .token()
            .ok_or(ChallengeError::UnexpectedCharacter { position: start })?
            .to_ascii_lowercase();
        self.skip_ws();
        if self.peek() != Some(b'=') {
            return Err(ChallengeError::ExpectedValue { position: self.pos });
        }
        self.pos += 1;
        self.skip_ws();
        let value = self.value()?;
        if !params.iter().any(|(n, _)| *n == name) {
            params.push((name, value));
        }
        Ok(())
    }

    /// Consumes a quoted string or a bare value.
    ///
    /// Bare values are read leniently (up to a comma, whitespace or quote) because some servers
    /// send unquoted URLs, which are not RFC 7230 tokens.
    fn value(&mut self) -> Result<String, ChallengeError> {
        let start = self.pos;
        if self.peek() == Some(b'"') {
            let mut out = String::new();
            let mut chars = self.s[start + 1..].char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        self.pos = start + 1 + i + 1;
                        return Ok(out);
                    }
                    '\\' => match chars.next() {
                        Some((_, escaped)) => out.push(escaped),
                        None => break,
                    },
                    c => out.push(c),
                }
            }
            return Err(ChallengeError::UnterminatedQuote { position: start });
        }
        let rest = &self.s[start..];
        let len = rest.find([',', ' ', '\t', '"']).unwrap_or(rest.len());
        if len == 0 {
            return Err(ChallengeError::ExpectedValue { position: start });
        }
        self.pos += len;
        Ok(rest[..len].to_owned())
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bearer(header: &str) -> BearerChallenge {
        match parse(header) {
            Ok(Challenge::Bearer(b)) => b,
            other => panic!("expected a Bearer challenge from {header:?}, got {other:?}"),
        }
    }

    #[test]
    fn docker_hub_bearer() {
        let b = bearer(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(b.realm, "https://auth.docker.io/token");
        assert_eq!(b.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(b.scope.as_deref(), Some("repository:library/alpine:pull"));
        assert_eq!(b.error, None);
        assert!(b.params.is_empty());
    }

    #[test]
    fn basic_with_realm() {
        assert_eq!(
            parse(r#"Basic realm="Registry Realm""#),
            Ok(Challenge::Basic {
                realm: Some("Registry Realm".to_owned())
            })
        );
        assert_eq!(parse("Basic"), Ok(Challenge::Basic { realm: None }));
    }

    #[test]
    fn bearer_with_error() {
        let b = bearer(
            r#"Bearer realm="http://127.0.0.1:5000/auth",service="Docker registry",error="invalid_token""#,
        );
        assert_eq!(b.realm, "http://127.0.0.1:5000/auth");
        assert_eq!(b.service.as_deref(), Some("Docker registry"));
        assert_eq!(b.error.as_deref(), Some("invalid_token"));
    }

    #[test]
    fn scheme_and_names_are_case_insensitive() {
        let b = bearer(r#"bEaReR REALM="https://a/t", Service=svc"#);
        assert_eq!(b.realm, "https://a/t");
        assert_eq!(b.service.as_deref(), Some("svc"));
        assert!(matches!(
            parse("BASIC realm=x"),
            Ok(Challenge::Basic { .. })
        ));
    }

    #[test]
    fn quoted_commas_escapes_and_spaces() {
        let b = bearer(
            r#"Bearer realm = "https://a/t" ,  error_description="bad, \"very\" bad \\ here" ,scope="repository:a/b:pull repository:c/d:pull,push""#,
        );
        assert_eq!(
            b.params,
            vec![(
                "error_description".to_owned(),
                r#"bad, "very" bad \ here"#.to_owned()
            )]
        );
        assert_eq!(
            b.scopes().collect::<Vec<_>>(),
            vec!["repository:a/b:pull", "repository:c/d:pull,push"]
        );
    }

    #[test]
    fn unquoted_url_values_are_tolerated() {
        let b = bearer("Bearer realm=https://auth.example.com/token?x=1,service=example");
        assert_eq!(b.realm, "https://auth.example.com/token?x=1");
        assert_eq!(b.service.as_deref(), Some("example"));
    }

    #[test]
    fn first_duplicate_wins() {
        assert_eq!(
            bearer(r#"Bearer realm="https://a/1",realm="https://a/2""#).realm,
            "https://a/1"
        );
    }

    #[test]
    fn several_challenges_pick_the_supported_one() {
        let b =
            bearer(r#"Negotiate abc==, Bearer realm="https://a/t", service="s", Basic realm="r""#);
        assert_eq!(b.realm, "https://a/t");
        assert_eq!(b.service.as_deref(), Some("s"));
        assert!(b.params.is_empty());
        assert_eq!(
            parse(r#"Basic realm="r", Bearer realm="https://a/t""#),
            Ok(Challenge::Basic {
                realm: Some("r".to_owned())
            })
        );
    }

    #[test]
    fn errors() {
        assert_eq!(parse(""), Err(ChallengeError::Empty));
        assert_eq!(parse("  , "), Err(ChallengeError::Empty));
        assert_eq!(
            parse(r#"Bearer service="s""#),
            Err(ChallengeError::MissingRealm)
        );
        assert_eq!(
            parse(r#"Bearer realm="""#),
            Err(ChallengeError::MissingRealm)
        );
        assert_eq!(parse("Bearer"), Err(ChallengeError::MissingRealm));
        assert_eq!(
            parse(r#"Negotiate abc"#),
            Err(ChallengeError::UnsupportedScheme {
                scheme: "Negotiate".to_owned()
            })
        );
        assert_eq!(
            parse(r#"Bearer realm="https://a/t"#),
            Err(ChallengeError::UnterminatedQuote { position: 13 })
        );
        assert_eq!(
            parse(r#"Bearer realm="a\"#),
            Err(ChallengeError::UnterminatedQuote { position: 13 })
        );
        assert_eq!(
            parse(r#"Bearer realm="a", service=,"#),
            Err(ChallengeError::ExpectedValue { position: 26 })
        );
        // `realm=` alone is a token68, so there is no realm parameter.
        assert_eq!(parse("Bearer realm="), Err(ChallengeError::MissingRealm));
        assert_eq!(
            parse(r#"Bearer realm="a" service="s""#),
            Err(ChallengeError::UnexpectedCharacter { position: 17 })
        );
        assert_eq!(
            parse(r#"="x""#),
            Err(ChallengeError::ExpectedScheme { position: 0 })
        );
        assert_eq!(
            parse(r#"Bearer"realm""#),
            Err(ChallengeError::UnexpectedCharacter { position: 6 })
        );
    }

    fn challenge(realm: &str, service: Option<&str>) -> BearerChallenge {
        BearerChallenge {
            realm: realm.to_owned(),
            service: service.map(str::to_owned),
            scope: None,
            error: None,
            params: Vec::new(),
        }
    }

    #[test]
    fn token_url_encodes_service_and_each_scope() {
        let c = challenge("https://auth.docker.io/token", Some("registry.docker.io"));
        let scopes = vec![
            repository_scope("library/alpine", &["pull"]),
            "repository:a/b:pull,push repository:c:pull".to_owned(),
        ];
        assert_eq!(
            token_url(&c, &scopes),
            Ok("https://auth.docker.io/token?service=registry.docker.io\
                &scope=repository%3Alibrary%2Falpine%3Apull\
                &scope=repository%3Aa%2Fb%3Apull%2Cpush\
                &scope=repository%3Ac%3Apull"
                .to_owned())
        );
    }

    #[test]
    fn token_url_with_existing_query_fragment_or_nothing() {
        let c = challenge(
            "https://a.example/token?account=me#frag",
            Some("Docker registry"),
        );
        assert_eq!(
            token_url(&c, &[]),
            Ok("https://a.example/token?account=me&service=Docker%20registry".to_owned())
        );
        let c = challenge("https://a.example/token?", None);
        assert_eq!(
            token_url(&c, &["repository:x:pull".to_owned()]),
            Ok("https://a.example/token?scope=repository%3Ax%3Apull".to_owned())
        );
        let c = challenge("HTTP://127.0.0.1:5000/auth", None);
        assert_eq!(
            token_url(&c, &[]),
            Ok("HTTP://127.0.0.1:5000/auth".to_owned())
        );
    }

    #[test]
    fn token_url_rejects_relative_realms() {
        for realm in ["/token", "ftp://a/b", "https://", "https:///x", "token"] {
            let c = challenge(realm, None);
            assert_eq!(
                token_url(&c, &[]),
                Err(ChallengeError::InvalidRealm {
                    realm: realm.to_owned()
                }),
                "{realm}"
            );
        }
    }

    #[test]
    fn repository_scopes() {
        assert_eq!(
            repository_scope("library/alpine", &["pull", "push"]),
            "repository:library/alpine:pull,push"
        );
        assert_eq!(repository_scope("x", &["pull"]), "repository:x:pull");
    }

    #[test]
    fn token_response() {
        let r: TokenResponse = serde_json::from_str(
            r#"{"token":"t1","access_token":"t2","expires_in":3600,"issued_at":"2009-11-10T23:00:00Z"}"#,
        )
        .expect("valid JSON");
        assert_eq!(r.bearer(), Some("t1"));
        assert_eq!(r.lifetime(), Duration::from_secs(3600));
        assert_eq!(r.issued_at.as_deref(), Some("2009-11-10T23:00:00Z"));

        let r: TokenResponse =
            serde_json::from_str(r#"{"token":"","access_token":"t2"}"#).expect("valid JSON");
        assert_eq!(r.bearer(), Some("t2"));
        assert_eq!(r.lifetime(), DEFAULT_TOKEN_LIFETIME);

        let r: TokenResponse =
            serde_json::from_str(r#"{"expires_in":0,"extra":true}"#).expect("valid JSON");
        assert_eq!(r.bearer(), None);
        assert_eq!(r.lifetime(), Duration::from_secs(60));
    }

    #[test]
    fn token_response_debug_redacts() {
        let r: TokenResponse = serde_json::from_str(
            r#"{"token":"s3cr3t-a","access_token":"s3cr3t-b","refresh_token":"s3cr3t-c"}"#,
        )
        .expect("valid JSON");
        let shown = format!("{r:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    fn percent_decode(s: &str) -> Option<Vec<u8>> {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn query_encoding_round_trips(value in any::<String>()) {
            let encoded = encode_query_value(&value);
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
            prop_assert_eq!(percent_decode(&encoded), Some(value.into_bytes()));
        }

        #[test]
        fn quoted_values_round_trip(value in any::<String>()) {
            let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
            let header = format!(r#"Bearer realm="https://a/t", error_description="{quoted}""#);
            let b = match parse(&header) {
                Ok(Challenge::Bearer(b)) => b,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(b.params, vec![("error_description".to_owned(), value)]);
        }

        #[test]
        fn parse_never_panics(header in ".{0,64}") {
            let _ = parse(&header);
        }
    }
}
