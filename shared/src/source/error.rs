//! Errors of fetching manifests, each naming what was fetched and from where (never a token).

use std::path::PathBuf;

use reqwest::StatusCode;

use crate::state::StateError;

/// A fetch of manifests that failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A repository name that is not `owner/name`.
    #[error("GitHub repository `{repository}` is not of the form owner/name")]
    InvalidRepository {
        /// The name given.
        repository: String,
    },
    /// A commit (or ref) that cannot be put in a tarball URL.
    #[error("GitHub revision `{revision}` is not a commit SHA or ref name")]
    InvalidRevision {
        /// The revision given.
        revision: String,
    },
    /// A token that is not a valid HTTP header value (the token itself is not shown).
    #[error("the GitHub token for {repository} is not a valid HTTP header value")]
    InvalidToken {
        /// The repository it was for.
        repository: String,
    },
    /// A `subdir` that is absolute or climbs out of the fetched tree.
    #[error("subfolder `{subdir}` is not a relative path inside the fetched tree")]
    InvalidSubdir {
        /// The subfolder given.
        subdir: String,
    },
    /// The request could not be made or its answer not read (connection, timeout, body).
    #[error("GET {url} failed")]
    Transport {
        /// The URL requested (before redirects, so without the download token GitHub adds).
        url: String,
        /// The transport error, with its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// GitHub answered with an error status.
    #[error(
        "GitHub repository {repository}: GET {url} answered {status}{}{}",
        if *rate_limited { " (rate limited)" } else { "" },
        if message.is_empty() { String::new() } else { format!(": {message}") }
    )]
    Status {
        /// The repository (`owner/name`).
        repository: String,
        /// The URL requested (before redirects).
        url: String,
        /// The status of the final answer.
        status: StatusCode,
        /// True when GitHub said the rate limit is exhausted (a 403 or 429 with
        /// `x-ratelimit-remaining: 0` or `retry-after`).
        rate_limited: bool,
        /// The start of GitHub's message, if any.
        message: String,
    },
    /// The archive is not a readable tar.gz.
    #[error("the archive of {origin} is not a valid tar.gz{}", at_entry(entry.as_deref()))]
    Archive {
        /// What was fetched (`owner/name@sha`).
        origin: String,
        /// The last entry read before the failure, if any.
        entry: Option<String>,
        /// The decoding error.
        #[source]
        source: std::io::Error,
    },
    /// An archive entry that would write outside the tree, or is not a file or folder.
    #[error(
        "the archive of {origin} holds entry `{}`, which is refused: {reason}",
        shown(entry)
    )]
    UnsafeEntry {
        /// What was fetched.
        origin: String,
        /// The entry's path as the archive gives it.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An object key that would write outside the tree.
    #[error(
        "{url} holds object `{}`, which is refused: not a relative path without `..`",
        shown(key)
    )]
    UnsafeKey {
        /// The URL of the objects.
        url: String,
        /// The key, below the URL's prefix.
        key: String,
    },
    /// The content is larger than [`super::MAX_BYTES`].
    #[error("{origin} is larger than the {limit} bytes allowed{}", at_entry(entry.as_deref()))]
    TooLarge {
        /// What was fetched.
        origin: String,
        /// The entry or key that passed the limit, if known.
        entry: Option<String>,
        /// The limit, in bytes.
        limit: u64,
    },
    /// More than [`super::MAX_HEADER_BYTES`] read between two entries of an archive (a
    /// GNU long name or link, PAX records, or content of something that is not a file).
    #[error(
        "the archive of {origin} has more than {limit} bytes of headers (long names, PAX records) before one entry{}",
        after_entry(after.as_deref())
    )]
    OversizedHeader {
        /// What was fetched.
        origin: String,
        /// The last entry read before them, if any.
        after: Option<String>,
        /// The limit, in bytes.
        limit: u64,
    },
    /// More entries or objects than [`super::MAX_FILES`].
    #[error("{origin} holds more than the {limit} entries allowed")]
    TooManyEntries {
        /// What was fetched.
        origin: String,
        /// The limit.
        limit: usize,
    },
    /// Writing the fetched tree to the local disk failed.
    #[error("cannot write {}", path.display())]
    Io {
        /// The local file or folder.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Listing or reading objects failed.
    #[error("cannot fetch manifests from {url}")]
    Store {
        /// The URL of the objects.
        url: String,
        /// The store's error.
        #[source]
        source: StateError,
    },
    /// An object that was listed and then was gone when read.
    #[error("object `{key}` of {url} was deleted while it was being fetched")]
    Vanished {
        /// The URL of the objects.
        url: String,
        /// The key, below the URL's prefix.
        key: String,
    },
    /// Nothing under the URL (or a local folder that does not exist).
    #[error("no objects under {url}")]
    NoObjects {
        /// The URL of the objects.
        url: String,
    },
    /// The requested subfolder is not in what was fetched.
    #[error("{origin} has no folder `{subdir}`")]
    MissingSubdir {
        /// What was fetched.
        origin: String,
        /// The subfolder asked for.
        subdir: String,
    },
    /// GitHub's tree or a blob of it is refused (not its JSON, a path that leaves the folder, a
    /// blob that does not hash to its id, too many files or bytes).
    #[error("GitHub's answer for {origin} is refused: {reason}")]
    Malformed {
        /// What was fetched (`owner/name@sha`).
        origin: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing the blob cache in state failed.
    #[error("the manifests' blob cache in state failed")]
    Cache(#[source] Box<StateError>),
    /// The extraction task panicked or was cancelled.
    #[error("extracting {origin} did not finish")]
    Task {
        /// What was being extracted.
        origin: String,
        /// Why the task ended.
        #[source]
        source: tokio::task::JoinError,
    },
}

fn at_entry(entry: Option<&str>) -> String {
    entry
        .map(|e| format!(" (at `{}`)", shown(e)))
        .unwrap_or_default()
}

fn after_entry(entry: Option<&str>) -> String {
    entry
        .map(|e| format!(" (after `{}`)", shown(e)))
        .unwrap_or_default()
}

/// The most characters of an archive's entry name or object key an error shows.
const MAX_NAME_CHARS: usize = 256;

/// `name`, cut to [`MAX_NAME_CHARS`] with `…`: archive names can be 64 KiB long.
fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(MAX_NAME_CHARS) {
        Some((end, _)) => format!("{}…", &name[..end]).into(),
        None => name.into(),
    }
}

impl SourceError {
    /// True when trying again later may succeed: connection trouble, timeouts, 5xx, 429 and
    /// rate limits, a store's failed request, an object deleted mid-fetch. False for answers
    /// that will not change: 404, 401, 403, bad archives, refused entries, limits, bad input.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Transport { source, .. } => !(source.is_builder() || source.is_redirect()),
            SourceError::Status {
                status,
                rate_limited,
                ..
            } => *rate_limited || is_retryable_status(*status),
            SourceError::Store { source, .. } => matches!(source, StateError::Remote { .. }),
            SourceError::Vanished { .. } => true,
            SourceError::Cache(source) => matches!(**source, StateError::Remote { .. }),
            SourceError::InvalidRepository { .. }
            | SourceError::InvalidRevision { .. }
            | SourceError::InvalidToken { .. }
            | SourceError::InvalidSubdir { .. }
            | SourceError::Archive { .. }
            | SourceError::UnsafeEntry { .. }
            | SourceError::UnsafeKey { .. }
            | SourceError::TooLarge { .. }
            | SourceError::OversizedHeader { .. }
            | SourceError::TooManyEntries { .. }
            | SourceError::Io { .. }
            | SourceError::NoObjects { .. }
            | SourceError::MissingSubdir { .. }
            | SourceError::Malformed { .. }
            | SourceError::Task { .. } => false,
        }
    }
}

impl SourceError {
    /// True when the fault is in what was sent: the push's repository name or revision, or
    /// what the repository (or prefix) holds: a broken or hostile archive, a refused entry or
    /// key, a limit passed, no objects, no such subfolder. A webhook answers these with a 4xx
    /// status (trying again cannot help, and the promoter is not at fault); every other
    /// failure (transport, GitHub's answers, the local disk, configuration) is the
    /// promoter's side.
    pub fn is_client_error(&self) -> bool {
        match self {
            SourceError::InvalidRepository { .. }
            | SourceError::InvalidRevision { .. }
            | SourceError::Archive { .. }
            | SourceError::UnsafeEntry { .. }
            | SourceError::UnsafeKey { .. }
            | SourceError::TooLarge { .. }
            | SourceError::OversizedHeader { .. }
            | SourceError::TooManyEntries { .. }
            | SourceError::NoObjects { .. }
            | SourceError::MissingSubdir { .. }
            | SourceError::Malformed { .. } => true,
            SourceError::InvalidToken { .. }
            | SourceError::InvalidSubdir { .. }
            | SourceError::Transport { .. }
            | SourceError::Status { .. }
            | SourceError::Io { .. }
            | SourceError::Store { .. }
            | SourceError::Vanished { .. }
            | SourceError::Cache(_)
            | SourceError::Task { .. } => false,
        }
    }
}

/// 429, and 5xx except 501 and 505 (which will not change).
fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && status != StatusCode::HTTP_VERSION_NOT_SUPPORTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, rate_limited: bool) -> SourceError {
        SourceError::Status {
            repository: "o/r".to_owned(),
            url: "https://api.github.com/repos/o/r/tarball/abc".to_owned(),
            status: StatusCode::from_u16(code).expect("status"),
            rate_limited,
            message: String::new(),
        }
    }

    #[test]
    fn retryable_statuses() {
        for code in [429, 500, 502, 503, 504] {
            assert!(status(code, false).is_retryable(), "{code}");
        }
        for code in [400, 401, 403, 404, 422, 501] {
            assert!(!status(code, false).is_retryable(), "{code}");
        }
        assert!(status(403, true).is_retryable());
        for code in [404, 500] {
            assert!(!status(code, false).is_client_error(), "{code}");
        }
        assert_eq!(
            status(403, true).to_string(),
            "GitHub repository o/r: GET https://api.github.com/repos/o/r/tarball/abc answered \
             403 Forbidden (rate limited)"
        );
    }

    #[test]
    fn long_entry_names_are_cut() {
        let entry = format!("o-r-abc/{}", "a".repeat(60_000));
        let error = SourceError::UnsafeEntry {
            origin: "o/r@abc".to_owned(),
            entry,
            reason: "a `..` component",
        };
        let text = error.to_string();
        assert!(text.len() < 400, "{} characters", text.len());
        assert!(
            text.contains("aaa…`") && text.ends_with("a `..` component"),
            "{text}"
        );
        assert!(error.is_client_error());
    }
}
