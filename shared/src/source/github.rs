//! A GitHub repository at one commit, from its tarball.
//!
//! `GET {api}/repos/{owner}/{name}/tarball/{sha}` answers with a redirect to a short-lived
//! download URL (`codeload…`, carrying a token of its own for private repositories); the
//! client follows it. The body is streamed through a bounded channel into the extraction on a
//! blocking thread, so the archive is never held whole in memory and the runtime never blocks.
//! Errors name the API URL requested, never the download URL (its query may hold a token) nor
//! the caller's token.

use std::fmt;
use std::io::{self, Read};

use bytes::{Buf as _, Bytes};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, RETRY_AFTER, USER_AGENT};
use tokio::sync::mpsc;

use crate::http::retry::{self, RetryPolicy};
use std::time::Duration;

use super::extract::{Limits, extract_tar_gz};
use super::{Fetched, SourceError, finish, subdir_path, temp_dir};

/// The GitHub REST API version asked for.
const API_VERSION: &str = "2022-11-28";

/// Chunks of the download waiting for the extraction.
const CHANNEL_CHUNKS: usize = 16;

/// The most bytes of an error answer read for its message.
const ERROR_BODY_BYTES: usize = 4096;

/// Retries of the tarball request (429, 5xx, broken connections): a few, within 20 s, so that
/// a GitHub hiccup does not fail the push while the function still has most of its time left
/// to download and validate (and a GitHub that stays down is reported well before it ends).
pub const GITHUB_RETRY: RetryPolicy = RetryPolicy {
    attempts: 4,
    base: Duration::from_millis(500),
    max: Duration::from_secs(5),
    budget: Duration::from_secs(20),
};

/// Where a GitHub repository is.
#[derive(Clone, Copy)]
pub struct GithubRepo<'a> {
    /// `https://api.github.com`, or a GitHub Enterprise base like
    /// `https://ghe.example.com/api/v3` (a trailing `/` is ignored).
    pub api_base: &'a str,
    /// `owner/name`.
    pub repository: &'a str,
    /// A token that can read the repository (sent as `Authorization: Bearer`), if it is private
    /// or to get the authenticated rate limit.
    pub token: Option<&'a str>,
}

impl fmt::Debug for GithubRepo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubRepo")
            .field("api_base", &self.api_base)
            .field("repository", &self.repository)
            .field("token", &self.token.map(|_| "<redacted>"))
            .finish()
    }
}

/// Downloads `GET {api_base}/repos/{owner}/{name}/tarball/{sha}` (following the redirect to
/// codeload), and extracts it, dropping the top-level folder GitHub adds.
///
/// `subdir` (`""` or `"."` for the whole tree) must be a folder of the repository; the
/// [`Fetched::root`] is that folder. `http` should have timeouts set; redirects must be
/// followed (reqwest's default).
pub async fn github_tarball(
    http: &reqwest::Client,
    repo: &GithubRepo<'_>,
    sha: &str,
    subdir: &str,
) -> Result<Fetched, SourceError> {
    let repository = repo.repository;
    check_inputs(repo, sha, subdir)?;
    let url = format!(
        "{}/repos/{repository}/tarball/{sha}",
        repo.api_base.trim_end_matches('/')
    );
    let origin = format!("{repository}@{sha}");
    let transport = |source: reqwest::Error| SourceError::Transport {
        url: url.clone(),
        source: source.without_url(),
    };

    let request = api_request(http, repo, &url, "application/vnd.github+json")?;
    tracing::debug!(%url, authenticated = repo.token.is_some(), "downloading a tarball");
    let mut response = retry::send(&GITHUB_RETRY, request)
        .await
        .map_err(transport)?;
    if !response.status().is_success() {
        return Err(status_error(repository, &url, response).await);
    }

    let dir = temp_dir()?;
    let (sender, receiver) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let dest = dir.path().to_path_buf();
    let task_origin = origin.clone();
    let extraction = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            receiver,
            current: Bytes::new(),
        };
        extract_tar_gz(reader, &dest, &task_origin, Limits::default())
    });
    let mut download_error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                // A closed channel: the extraction is over (finished or failed), stop reading.
                if sender.send(chunk).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                download_error = Some(transport(error));
                break;
            }
        }
    }
    drop(sender);
    let extracted = extraction.await;
    if let Some(error) = download_error {
        return Err(error);
    }
    let extracted = extracted.map_err(|source| SourceError::Task {
        origin: origin.clone(),
        source,
    })??;
    finish(dir, &origin, subdir, extracted.files, extracted.bytes)
}

/// Refuses a repository, revision or subfolder that cannot be fetched, before any request.
pub(super) fn check_inputs(
    repo: &GithubRepo<'_>,
    sha: &str,
    subdir: &str,
) -> Result<(), SourceError> {
    if !is_repository(repo.repository) {
        return Err(SourceError::InvalidRepository {
            repository: repo.repository.to_owned(),
        });
    }
    if !is_revision(sha) {
        return Err(SourceError::InvalidRevision {
            revision: sha.to_owned(),
        });
    }
    subdir_path(subdir).map(drop)
}

/// `GET url` with GitHub's API headers, `accept`, and the token (marked sensitive) if any.
pub(super) fn api_request(
    http: &reqwest::Client,
    repo: &GithubRepo<'_>,
    url: &str,
    accept: &'static str,
) -> Result<reqwest::RequestBuilder, SourceError> {
    api_call(http, repo, reqwest::Method::GET, url, accept)
}

/// A `method` request to GitHub's API at `url`, with the API's headers and the token.
pub(super) fn api_call(
    http: &reqwest::Client,
    repo: &GithubRepo<'_>,
    method: reqwest::Method,
    url: &str,
    accept: &'static str,
) -> Result<reqwest::RequestBuilder, SourceError> {
    let mut request = http
        .request(method, url)
        .header(ACCEPT, accept)
        .header("X-GitHub-Api-Version", API_VERSION)
        .header(USER_AGENT, concat!("promoter/", env!("CARGO_PKG_VERSION")));
    if let Some(token) = repo.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            SourceError::InvalidToken {
                repository: repo.repository.to_owned(),
            }
        })?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    Ok(request)
}

/// The error of a non-success answer to `GET url`: its status, GitHub's message, and whether
/// the rate limit is exhausted (a 403 or 429 with `retry-after` or no requests remaining).
pub(super) async fn status_error(
    repository: &str,
    url: &str,
    response: reqwest::Response,
) -> SourceError {
    let status = response.status();
    let rate_limited = matches!(
        status,
        StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    ) && (response.headers().contains_key(RETRY_AFTER)
        || response
            .headers()
            .get("x-ratelimit-remaining")
            .is_some_and(|v| v.as_bytes() == b"0"));
    let message = error_message(response).await;
    SourceError::Status {
        repository: repository.to_owned(),
        url: url.to_owned(),
        status,
        rate_limited,
        message,
    }
}

/// GitHub's `message`, or the start of the body, of an error answer.
pub(super) async fn error_message(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(ERROR_BODY_BYTES);
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(&body)
        && let Some(serde_json::Value::String(message)) = fields.get("message")
    {
        return message.chars().take(200).collect();
    }
    let text = String::from_utf8_lossy(&body);
    let mut message: String = text.trim().chars().take(200).collect();
    if message.len() < text.trim().len() {
        message.push('…');
    }
    message
}

/// Refuses a repository name that is not `owner/name`.
pub(super) fn check_repository(repository: &str) -> Result<(), SourceError> {
    if is_repository(repository) {
        Ok(())
    } else {
        Err(SourceError::InvalidRepository {
            repository: repository.to_owned(),
        })
    }
}

/// `owner/name`, each made of ASCII letters, digits, `-`, `_` and `.` (not `.` or `..`).
fn is_repository(repository: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    repository
        .split_once('/')
        .is_some_and(|(owner, name)| part(owner) && part(name))
}

/// A commit SHA or ref name that can stand in a URL path as it is.
fn is_revision(revision: &str) -> bool {
    !revision.is_empty()
        && revision.len() <= 255
        && !revision.starts_with('/')
        && !revision.split('/').any(|s| s.is_empty() || s == "..")
        && revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

/// The download, chunk by chunk, as a blocking reader; end of file when the sender is gone.
struct ChannelReader {
    receiver: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_repository("kubernetes/k8s.io"));
        assert!(is_repository("o/r"));
        for bad in ["o", "o/r/x", "/r", "o/", "o/..", "o r/x", "o/r?x"] {
            assert!(!is_repository(bad), "{bad}");
        }
        assert!(is_revision("0123456789abcdef0123456789abcdef01234567"));
        assert!(is_revision("refs/heads/main"));
        for bad in ["", "/x", "a/../b", "a//b", "a?b", "a b", "a#b", "a%2f"] {
            assert!(!is_revision(bad), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let repo = GithubRepo {
            api_base: "https://api.github.com",
            repository: "o/r",
            token: Some("ghs_secret"),
        };
        let text = format!("{repo:?}");
        assert!(
            !text.contains("ghs_secret") && text.contains("redacted"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn bad_input_makes_no_request() {
        let http = reqwest::Client::new();
        // Nothing listens on port 9: a request would be a transport error.
        let repo = |repository| GithubRepo {
            api_base: "http://127.0.0.1:9",
            repository,
            token: Some("bad\ntoken"),
        };
        let error = github_tarball(&http, &repo("o"), "abc", "")
            .await
            .expect_err("bad repository");
        assert!(matches!(error, SourceError::InvalidRepository { .. }));
        let error = github_tarball(&http, &repo("o/r"), "a b", "")
            .await
            .expect_err("bad revision");
        assert!(matches!(error, SourceError::InvalidRevision { .. }));
        let error = github_tarball(&http, &repo("o/r"), "abc", "../x")
            .await
            .expect_err("bad subdir");
        assert!(matches!(error, SourceError::InvalidSubdir { .. }));
        let error = github_tarball(&http, &repo("o/r"), "abc", "")
            .await
            .expect_err("bad token");
        assert!(matches!(error, SourceError::InvalidToken { .. }));
        assert!(!error.to_string().contains("bad"), "{error}");
    }
}
