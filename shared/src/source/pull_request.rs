//! Opening a pull request that changes one file of a GitHub repository, through the REST API
//! alone (no clone, no `git push`): what `promoter manifest add --pull-request` does after its
//! edit, as `kpromo pr` does with a fork and `gh`.
//!
//! 1. `GET /repos/{r}`: the default branch, unless a base branch is given;
//! 2. `GET /repos/{r}/contents/{path}?ref={base}`: the file as the base holds it. It must be
//!    exactly what the local edit started from, or the pull request would carry more than the
//!    added lines: refused ([`PullRequestError::Diverged`], "update your checkout");
//! 3. `GET /repos/{r}/git/ref/heads/{base}`: the base commit;
//! 4. `POST /repos/{r}/git/refs`: a new branch at that commit;
//! 5. `PUT /repos/{r}/contents/{path}`: one commit on the branch with the edited file (the blob
//!    `sha` of step 2 makes GitHub refuse it if the file changed meanwhile);
//! 6. `POST /repos/{r}/pulls`: the pull request.
//!
//! When step 5 or 6 fails, the branch is deleted again (`DELETE /repos/{r}/git/refs/heads/…`,
//! best effort), so that running the same addition again can succeed.
//!
//! Reads are retried ([`GITHUB_RETRY`]); writes are sent once (a lost answer to a write that
//! happened would make a retry fail on the branch it created). Errors name the request, never
//! the token.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::github::{api_call, error_message};
use super::{GITHUB_RETRY, GithubRepo, SourceError};
use crate::http::{limits, read_json, retry};

/// The largest file changed this way (GitHub's contents API serves files up to 1 MiB inline).
const MAX_FILE_BYTES: usize = 1 << 20;

/// One file's change, and the pull request to open for it.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    /// The file's path in the repository (`/`-separated, from its root).
    pub path: &'a str,
    /// The file as the edit found it (the base branch must hold exactly this).
    pub before: &'a str,
    /// The file after the edit.
    pub after: &'a str,
    /// The branch to create.
    pub branch: &'a str,
    /// The base branch; `None`: the repository's default branch.
    pub base: Option<&'a str>,
    /// The commit message.
    pub message: &'a str,
    /// The pull request's title.
    pub title: &'a str,
    /// The pull request's description.
    pub body: &'a str,
}

/// A pull request opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Its number.
    pub number: u64,
    /// Its page.
    pub url: String,
    /// The base branch.
    pub base: String,
}

/// Why the pull request could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PullRequestError {
    /// The repository name or token cannot be used.
    #[error(transparent)]
    Input(#[from] SourceError),
    /// A request could not be made or its answer not read.
    #[error("{what} failed")]
    Transport {
        /// `METHOD URL`.
        what: String,
        /// The transport error, its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// GitHub answered with an error status.
    #[error("{what} answered {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        /// `METHOD URL`.
        what: String,
        /// The status.
        status: StatusCode,
        /// GitHub's message.
        message: String,
    },
    /// GitHub's answer is not what its API documents.
    #[error("{what}: unexpected answer: {reason}")]
    Malformed {
        /// `METHOD URL`.
        what: String,
        /// Why.
        reason: String,
    },
    /// The base branch's file is not what the local edit started from.
    #[error(
        "{path} on {base} differs from the file edited here: update your checkout (git pull) and run again, so that the pull request holds only the added lines"
    )]
    Diverged {
        /// The file.
        path: String,
        /// The base branch.
        base: String,
    },
    /// A branch name or path that would not stay one URL segment path (only letters, digits,
    /// `-`, `_`, `.` and `/`, no `..`).
    #[error("{what} `{value}` is refused: use letters, digits, `-`, `_`, `.` and `/` only")]
    InvalidName {
        /// What it names.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The file is too large for the contents API.
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes: open the pull request with git")]
    TooLarge {
        /// The file.
        path: String,
    },
}

/// Opens the pull request of `change` in `repo` (whose token must be allowed to create
/// branches and pull requests).
pub async fn open(
    http: &reqwest::Client,
    repo: &GithubRepo<'_>,
    change: &Change<'_>,
) -> Result<Opened, PullRequestError> {
    super::github::check_repository(repo.repository)?;
    check_name("the file's path", change.path)?;
    check_name("the branch", change.branch)?;
    if let Some(base) = change.base {
        check_name("the base branch", base)?;
    }
    if change.after.len() > MAX_FILE_BYTES {
        return Err(PullRequestError::TooLarge {
            path: change.path.to_owned(),
        });
    }
    let api = Api { http, repo };
    let base = match change.base {
        Some(base) => base.to_owned(),
        None => {
            #[derive(Deserialize)]
            struct Repository {
                default_branch: String,
            }
            api.get::<Repository>("").await?.default_branch
        }
    };
    check_name("the base branch", &base)?;
    let file = api.file(change.path, &base).await?;
    if file.too_large {
        return Err(PullRequestError::TooLarge {
            path: change.path.to_owned(),
        });
    }
    if file.text.as_deref() != Some(change.before) {
        return Err(PullRequestError::Diverged {
            path: change.path.to_owned(),
            base,
        });
    }
    #[derive(Deserialize)]
    struct Ref {
        object: Object,
    }
    #[derive(Deserialize)]
    struct Object {
        sha: String,
    }
    let head: Ref = api.get(&format!("/git/ref/heads/{base}")).await?;
    let _: serde_json::Value = api
        .write(
            Method::POST,
            "/git/refs",
            &json!({"ref": format!("refs/heads/{}", change.branch), "sha": head.object.sha}),
        )
        .await?;
    match commit_and_open(&api, change, &file.sha, &base).await {
        Ok(number_and_url) => Ok(Opened {
            number: number_and_url.0,
            url: number_and_url.1,
            base,
        }),
        Err(error) => {
            // The branch would make the next run of the same addition fail ("Reference already
            // exists"): removed, best effort; the error reported is the first one.
            let branch = format!("/git/refs/heads/{}", change.branch);
            if let Err(cleanup) = api.delete(&branch).await {
                tracing::warn!(error = %cleanup, "could not delete the branch of a failed pull request");
            }
            Err(error)
        }
    }
}

/// The commit on the new branch, then the pull request: its number and page.
async fn commit_and_open(
    api: &Api<'_>,
    change: &Change<'_>,
    base_blob: &str,
    base: &str,
) -> Result<(u64, String), PullRequestError> {
    let _: serde_json::Value = api
        .write(
            Method::PUT,
            &format!("/contents/{}", change.path),
            &json!({
                "message": change.message,
                "content": STANDARD.encode(change.after),
                "sha": base_blob,
                "branch": change.branch,
            }),
        )
        .await?;
    #[derive(Deserialize)]
    struct Pull {
        number: u64,
        html_url: String,
    }
    let pull: Pull = api
        .write(
            Method::POST,
            "/pulls",
            &json!({"title": change.title, "body": change.body, "head": change.branch, "base": base}),
        )
        .await?;
    Ok((pull.number, pull.html_url))
}

/// A file as the contents API serves it.
struct File {
    /// Its blob id.
    sha: String,
    /// Its text, when it is UTF-8.
    text: Option<String>,
    /// GitHub served no content (`encoding: none`: a file over 1 MiB).
    too_large: bool,
}

/// Requests to one repository's API.
struct Api<'a> {
    http: &'a reqwest::Client,
    repo: &'a GithubRepo<'a>,
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        format!(
            "{}/repos/{}{path}",
            self.repo.api_base.trim_end_matches('/'),
            self.repo.repository
        )
    }

    /// `GET /repos/{r}{path}` as JSON, retried.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PullRequestError> {
        let url = self.url(path);
        let request = api_call(self.http, self.repo, Method::GET, &url, JSON)?;
        let what = format!("GET {url}");
        let response = retry::send(&GITHUB_RETRY, request)
            .await
            .map_err(|e| transport(&what, e))?;
        answer(&what, response).await
    }

    /// A write (`POST`, `PUT`) of `body` to `/repos/{r}{path}`, sent once.
    async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, PullRequestError> {
        let url = self.url(path);
        let what = format!("{method} {url}");
        let request = api_call(self.http, self.repo, method, &url, JSON)?.json(body);
        let response = request.send().await.map_err(|e| transport(&what, e))?;
        answer(&what, response).await
    }

    /// `DELETE /repos/{r}{path}`, sent once (GitHub answers 204, no body).
    async fn delete(&self, path: &str) -> Result<(), PullRequestError> {
        let url = self.url(path);
        let what = format!("DELETE {url}");
        let request = api_call(self.http, self.repo, Method::DELETE, &url, JSON)?;
        let response = request.send().await.map_err(|e| transport(&what, e))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(PullRequestError::Status {
            what,
            status: response.status(),
            message: error_message(response).await,
        })
    }

    /// `path` on branch `base`.
    async fn file(&self, path: &str, base: &str) -> Result<File, PullRequestError> {
        #[derive(Deserialize)]
        struct Contents {
            sha: String,
            #[serde(default)]
            content: String,
            #[serde(default)]
            encoding: String,
        }
        let contents: Contents = self.get(&format!("/contents/{path}?ref={base}")).await?;
        let text = (contents.encoding == "base64")
            .then(|| {
                let compact: String = contents
                    .content
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                STANDARD.decode(compact).ok()
            })
            .flatten()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        Ok(File {
            sha: contents.sha,
            text,
            too_large: contents.encoding == "none",
        })
    }
}

const JSON: &str = "application/vnd.github+json";

/// Refuses a name that is not a plain path of URL-safe characters.
fn check_name(what: &'static str, value: &str) -> Result<(), PullRequestError> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/');
    let plain = !value.is_empty()
        && value.chars().all(safe)
        && value
            .split('/')
            .all(|part| !part.is_empty() && part != "..");
    if plain {
        Ok(())
    } else {
        Err(PullRequestError::InvalidName {
            what,
            value: value.chars().take(100).collect(),
        })
    }
}

fn transport(what: &str, source: reqwest::Error) -> PullRequestError {
    PullRequestError::Transport {
        what: what.to_owned(),
        source: source.without_url(),
    }
}

/// The JSON of a successful answer, or the error of another.
async fn answer<T: DeserializeOwned>(
    what: &str,
    response: reqwest::Response,
) -> Result<T, PullRequestError> {
    let status = response.status();
    if !status.is_success() {
        return Err(PullRequestError::Status {
            what: what.to_owned(),
            status,
            message: error_message(response).await,
        });
    }
    read_json(response, limits::API)
        .await
        .map_err(|e| PullRequestError::Malformed {
            what: what.to_owned(),
            reason: e.to_string(),
        })
}
