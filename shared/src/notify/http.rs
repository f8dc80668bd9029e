//! One JSON POST, shared by the HTTP sinks: the answer mapped to [`NotifyError`], with the URL
//! reduced to its origin and known secrets removed from whatever the receiver said.

use std::time::SystemTime;

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::NotifyError;
use crate::http::retry::parse_retry_after;

/// How much of an error answer's body to keep, in characters.
const DETAIL_CHARS: usize = 200;

/// `scheme://host[:port]` of `url`: what errors and logs may show of it.
pub(super) fn origin(url: &str) -> String {
    match Url::parse(url) {
        Ok(url) => url.origin().ascii_serialization(),
        Err(_) => "<invalid URL>".to_owned(),
    }
}

/// Parses an absolute `http(s)` URL.
pub(super) fn parse_url(sink: &'static str, url: &str) -> Result<Url, NotifyError> {
    let parsed = Url::parse(url).map_err(|e| NotifyError::InvalidUrl {
        sink,
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(parsed),
        _ => Err(NotifyError::InvalidUrl {
            sink,
            reason: format!("scheme {:?} or host missing", parsed.scheme()),
        }),
    }
}

/// A header value, marked sensitive when it carries a secret (so that the HTTP stack does not
/// log it).
pub(super) fn header_value(
    sink: &'static str,
    header: &'static str,
    value: &str,
    sensitive: bool,
) -> Result<HeaderValue, NotifyError> {
    let mut value =
        HeaderValue::from_str(value).map_err(|_| NotifyError::InvalidHeader { sink, header })?;
    value.set_sensitive(sensitive);
    Ok(value)
}

/// A POST of `body` (JSON) to `url` with `headers`; `secrets` are removed from error details.
pub(super) struct Post<'a> {
    /// The sink sending it.
    pub sink: &'static str,
    /// Where.
    pub url: Url,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The JSON body.
    pub body: Vec<u8>,
    /// Strings that must not appear in an error.
    pub secrets: Vec<&'a str>,
}

impl Post<'_> {
    /// Sends it once: `Ok` on a 2xx answer.
    pub async fn send(self, client: &reqwest::Client) -> Result<(), NotifyError> {
        let origin = self.url.origin().ascii_serialization();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.extend(self.headers);
        let response = client
            .post(self.url)
            .headers(headers)
            .body(self.body)
            .send()
            .await
            .map_err(|source| NotifyError::Transport {
                sink: self.sink,
                origin: origin.clone(),
                source: source.without_url(),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = response.text().await.unwrap_or_default();
        Err(NotifyError::Status {
            sink: self.sink,
            origin,
            status,
            detail: detail(&body, &self.secrets),
            retry_after,
        })
    }
}

/// The start of `body` on one line, with every secret (of 4 characters or more) masked.
fn detail(body: &str, secrets: &[&str]) -> String {
    let mut text = body.split_whitespace().collect::<Vec<_>>().join(" ");
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "<redacted>");
    }
    match text.char_indices().nth(DETAIL_CHARS) {
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or_default()),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_hide_paths_queries_and_credentials() {
        assert_eq!(
            origin("https://hooks.slack.com/services/T0/B0/XYZ?x=1"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            origin("http://user:pw@127.0.0.1:8080/hook"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin("hooks.slack.com/services/T0"), "<invalid URL>");
        assert!(parse_url("slack", "mailto:a@b").is_err());
        assert!(parse_url("slack", "https://h/x").is_ok());
    }

    #[test]
    fn details_are_short_single_lines_without_secrets() {
        assert_eq!(
            detail("bad\n credentials: Bearer ghp_abc", &["ghp_abc"]),
            "bad credentials: Bearer <redacted>"
        );
        let long = detail(&"é".repeat(500), &[]);
        assert_eq!(long.chars().count(), DETAIL_CHARS + 1);
    }
}
