//! GitHub commit statuses: `POST {api}/repos/{owner}/{name}/statuses/{sha}` with context
//! `promoter`, so that the merged manifest commit shows how its promotion went.

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName};

use super::http::{Post, header_value, parse_url};
use super::{CommitStatus, Delivery, Notice, NotifyError};

/// The sink's name.
const SINK: &str = "github-status";

/// The status context: one per tool, replaced on each update.
const CONTEXT: &str = "promoter";

/// GitHub keeps descriptions of up to 140 characters.
const DESCRIPTION_CHARS: usize = 140;

/// The REST API version the request is written for.
const API_VERSION: HeaderName = HeaderName::from_static("x-github-api-version");

/// Sets the notice's commit status, once; [`Delivery::Skipped`] without a commit.
pub(super) async fn send(
    client: &reqwest::Client,
    api_base: &str,
    token: &str,
    notice: &Notice,
) -> Result<Delivery, NotifyError> {
    let Some(commit) = &notice.commit else {
        return Ok(Delivery::Skipped);
    };
    let (owner, name) = repository(&commit.repository)?;
    if commit.sha.len() < 7
        || commit.sha.len() > 64
        || !commit.sha.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(NotifyError::InvalidCommit {
            field: "sha",
            value: commit.sha.clone(),
        });
    }
    let mut url = parse_url(SINK, api_base)?;
    url.path_segments_mut()
        .map_err(|()| NotifyError::InvalidUrl {
            sink: SINK,
            reason: "it cannot have a path".to_owned(),
        })?
        .pop_if_empty()
        .extend(["repos", owner, name, "statuses", &commit.sha]);
    let body = serde_json::to_vec(&body(commit))
        .map_err(|source| NotifyError::Encode { sink: SINK, source })?;
    let headers = vec![
        (
            AUTHORIZATION,
            header_value(SINK, "Authorization", &format!("Bearer {token}"), true)?,
        ),
        (
            ACCEPT,
            header_value(SINK, "Accept", "application/vnd.github+json", false)?,
        ),
        (
            API_VERSION,
            header_value(SINK, "X-GitHub-Api-Version", "2022-11-28", false)?,
        ),
    ];
    Post {
        sink: SINK,
        url,
        headers,
        body,
        secrets: vec![token],
    }
    .send(client)
    .await?;
    Ok(Delivery::Sent)
}

/// `owner/name`, each part made of letters, digits, `-`, `_` and `.` (and not `.` or `..`).
fn repository(full_name: &str) -> Result<(&str, &str), NotifyError> {
    let valid = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match full_name.split_once('/') {
        Some((owner, name)) if valid(owner) && valid(name) => Ok((owner, name)),
        _ => Err(NotifyError::InvalidCommit {
            field: "repository",
            value: full_name.to_owned(),
        }),
    }
}

/// The request body: `state`, `description` (shortened to 140 characters), `context` and
/// `target_url` when given.
fn body(commit: &CommitStatus) -> serde_json::Value {
    let mut body = serde_json::json!({
        "state": commit.state,
        "description": shorten(commit.description.trim(), DESCRIPTION_CHARS),
        "context": CONTEXT,
    });
    if let (Some(url), Some(object)) = (&commit.target_url, body.as_object_mut()) {
        object.insert("target_url".to_owned(), url.clone().into());
    }
    body
}

/// `text` if it has at most `max` characters, else its start and `…`, `max` characters in all.
pub(super) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let keep = text
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(0, |(end, _)| end);
            format!("{}…", text.get(..keep).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::CommitState;

    #[test]
    fn descriptions_are_cut_to_140_characters() {
        let commit = CommitStatus {
            repository: "o/r".into(),
            sha: "a".repeat(40),
            state: CommitState::Failure,
            description: "ü".repeat(300),
            target_url: Some("https://ci.example/run/1".into()),
        };
        let body = body(&commit);
        let description = body["description"].as_str().expect("a description");
        assert_eq!(description.chars().count(), 140);
        assert!(description.ends_with("ü…"));
        assert_eq!(body["state"], "failure");
        assert_eq!(body["context"], "promoter");
        assert_eq!(body["target_url"], "https://ci.example/run/1");
        assert_eq!(shorten("short", 140), "short");
        assert_eq!(shorten(&"x".repeat(140), 140), "x".repeat(140));
    }

    #[test]
    fn repositories_are_owner_slash_name() {
        assert_eq!(
            repository("kubernetes/k8s.io").expect("valid"),
            ("kubernetes", "k8s.io")
        );
        for bad in ["noslash", "a/b/c", "../x", "o/..", "/x", "o/n?x=1"] {
            assert!(repository(bad).is_err(), "{bad}");
        }
    }
}
