//! GitHub push webhooks: `X-Hub-Signature-256` verification and the fields a promotion needs.

use aws_lc_rs::{constant_time, hmac};
use serde::Deserialize;

/// A webhook that must not be acted on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GithubError {
    /// No `X-Hub-Signature-256` header.
    #[error("the webhook has no X-Hub-Signature-256 header")]
    MissingSignature,
    /// The header is not `sha256=HEX`, or the HMAC does not match.
    #[error("the webhook's X-Hub-Signature-256 does not match its body")]
    BadSignature,
    /// The body is not a push event.
    #[error("the webhook body is not a GitHub push event: {0}")]
    NotAPush(String),
}

/// Checks `X-Hub-Signature-256: sha256=HEX(HMAC_SHA256(secret, body))`, in constant time,
/// before anything parses the body.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), GithubError> {
    let header = header.ok_or(GithubError::MissingSignature)?;
    let hex = header
        .strip_prefix("sha256=")
        .ok_or(GithubError::BadSignature)?;
    let claimed = decode_hex(hex).ok_or(GithubError::BadSignature)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let expected = hmac::sign(&key, body);
    constant_time::verify_slices_are_equal(expected.as_ref(), &claimed)
        .map_err(|_| GithubError::BadSignature)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a promotion needs from a push event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PushEvent {
    /// The pushed ref, e.g. `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit before the push.
    pub before: String,
    /// The pushed commit (the revision to promote).
    pub after: String,
    /// The repository.
    pub repository: Repository,
}

/// `repository` of a push event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
}

impl PushEvent {
    /// Parses a push event body (call [`verify_signature`] first).
    pub fn parse(body: &[u8]) -> Result<Self, GithubError> {
        serde_json::from_slice(body).map_err(|e| GithubError::NotAPush(e.to_string()))
    }

    /// True when the push is to `branch` (e.g. `main`) and not a deletion.
    pub fn is_to_branch(&self, branch: &str) -> bool {
        self.git_ref == format!("refs/heads/{branch}") && self.after.bytes().any(|b| b != b'0')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(secret: &[u8], body: &[u8]) -> String {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), body);
        format!(
            "sha256={}",
            tag.as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    }

    #[test]
    fn signatures_are_checked_before_parsing() {
        let body = br#"{"ref":"refs/heads/main","before":"a1","after":"b2","repository":{"full_name":"org/manifests"}}"#;
        let good = signature(b"s3cret", body);
        assert_eq!(verify_signature(b"s3cret", body, Some(&good)), Ok(()));
        assert_eq!(
            verify_signature(b"other", body, Some(&good)),
            Err(GithubError::BadSignature)
        );
        assert_eq!(
            verify_signature(b"s3cret", b"tampered", Some(&good)),
            Err(GithubError::BadSignature)
        );
        assert_eq!(
            verify_signature(b"s3cret", body, None),
            Err(GithubError::MissingSignature)
        );
        assert_eq!(
            verify_signature(b"s3cret", body, Some("sha1=00")),
            Err(GithubError::BadSignature)
        );
        let push = PushEvent::parse(body).expect("a push");
        assert!(push.is_to_branch("main"));
        assert!(!push.is_to_branch("dev"));
        assert_eq!(push.repository.full_name, "org/manifests");
    }

    #[test]
    fn branch_deletions_are_not_promotions() {
        let body = format!(
            r#"{{"ref":"refs/heads/main","before":"a1","after":"{}","repository":{{"full_name":"o/r"}}}}"#,
            "0".repeat(40)
        );
        assert!(
            !PushEvent::parse(body.as_bytes())
                .expect("a push")
                .is_to_branch("main")
        );
    }
}
