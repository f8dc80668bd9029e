//! Amazon ECR's per-action request quotas, kept by the client.
//!
//! ECR meters its registry API by the API action each request maps to, per account and region,
//! and answers past a quota with 429 (`ThrottlingException` on its own API). Its default
//! quotas, from "Amazon ECR service quotas" in the ECR user guide (each adjustable):
//!
//! | request | action | per second |
//! |---|---|---|
//! | `HEAD /v2/…/blobs/<digest>` | `BatchCheckLayerAvailability` | 1,000 |
//! | `GET`/`HEAD /v2/…/manifests/<ref>` | `BatchGetImage` | 2,000 |
//! | `GET /v2/…/blobs/<digest>` | `GetDownloadUrlForLayer` | 3,000 |
//! | `POST /v2/…/blobs/uploads/` | `InitiateLayerUpload` | 100 |
//! | `PATCH /v2/…/blobs/uploads/<id>` | `UploadLayerPart` | 500 |
//! | `PUT /v2/…/blobs/uploads/<id>` | `CompleteLayerUpload` | 100 |
//! | `PUT /v2/…/manifests/<ref>` | `PutImage` | 10 |
//!
//! [`EcrAction::of`] maps a request to its action, and the client waits for a token of that
//! action's rate on that host before sending (see [`super::limits::Limits::acquire`]), so a
//! promotion of thousands of digests into one ECR registry pushes manifests at 10/s instead
//! of being throttled and backing off. The quota is the account's, shared by every process;
//! each process keeps it on its own, so concurrent functions can still meet 429s, which are
//! retried honouring `Retry-After` like any registry's.

use std::num::NonZeroU32;

use reqwest::Method;

/// The ECR API action a registry request is metered as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcrAction {
    /// `HEAD` of a blob.
    BatchCheckLayerAvailability,
    /// `GET` or `HEAD` of a manifest.
    BatchGetImage,
    /// `GET` of a blob.
    GetDownloadUrlForLayer,
    /// `POST` starting an upload (or a mount).
    InitiateLayerUpload,
    /// `PATCH` of an upload.
    UploadLayerPart,
    /// `PUT` finishing an upload.
    CompleteLayerUpload,
    /// `PUT` of a manifest.
    PutImage,
}

impl EcrAction {
    /// The action `method` on the registry API path `path` (`/v2/NAME/…`) is metered as; `None`
    /// for requests outside those quotas (`/v2/`, tag listings, referrers).
    pub fn of(method: &Method, path: &str) -> Option<EcrAction> {
        let path = path.trim_end_matches('/');
        let uploads = path.contains("/blobs/uploads");
        let kind = |k: &str| path.rsplit('/').nth(1).is_some_and(|segment| segment == k);
        Some(match *method {
            Method::POST if uploads => EcrAction::InitiateLayerUpload,
            Method::PATCH if uploads => EcrAction::UploadLayerPart,
            Method::PUT if uploads => EcrAction::CompleteLayerUpload,
            Method::HEAD if kind("blobs") => EcrAction::BatchCheckLayerAvailability,
            Method::GET if kind("blobs") => EcrAction::GetDownloadUrlForLayer,
            Method::GET | Method::HEAD if kind("manifests") => EcrAction::BatchGetImage,
            Method::PUT if kind("manifests") => EcrAction::PutImage,
            _ => return None,
        })
    }

    /// Its default quota, requests per second.
    pub fn per_second(self) -> NonZeroU32 {
        let rate = match self {
            EcrAction::BatchCheckLayerAvailability => 1_000,
            EcrAction::BatchGetImage => 2_000,
            EcrAction::GetDownloadUrlForLayer => 3_000,
            EcrAction::InitiateLayerUpload => 100,
            EcrAction::UploadLayerPart => 500,
            EcrAction::CompleteLayerUpload => 100,
            EcrAction::PutImage => 10,
        };
        NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_their_actions() {
        let d = "sha256:abc";
        let cases = [
            (
                Method::HEAD,
                format!("/v2/a/b/blobs/{d}"),
                Some(EcrAction::BatchCheckLayerAvailability),
            ),
            (
                Method::GET,
                format!("/v2/a/b/blobs/{d}"),
                Some(EcrAction::GetDownloadUrlForLayer),
            ),
            (
                Method::GET,
                "/v2/a/manifests/v1".to_owned(),
                Some(EcrAction::BatchGetImage),
            ),
            (
                Method::HEAD,
                format!("/v2/a/manifests/{d}"),
                Some(EcrAction::BatchGetImage),
            ),
            (
                Method::PUT,
                "/v2/a/manifests/v1".to_owned(),
                Some(EcrAction::PutImage),
            ),
            (
                Method::POST,
                "/v2/a/blobs/uploads/".to_owned(),
                Some(EcrAction::InitiateLayerUpload),
            ),
            (
                Method::PATCH,
                "/v2/a/blobs/uploads/u-1".to_owned(),
                Some(EcrAction::UploadLayerPart),
            ),
            (
                Method::PUT,
                "/v2/a/blobs/uploads/u-1".to_owned(),
                Some(EcrAction::CompleteLayerUpload),
            ),
            (Method::GET, "/v2/a/tags/list".to_owned(), None),
            (Method::GET, "/v2/".to_owned(), None),
            (Method::GET, format!("/v2/a/referrers/{d}"), None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(EcrAction::of(&method, &path), expected, "{method} {path}");
        }
        // A repository named like a kind does not confuse it.
        assert_eq!(
            EcrAction::of(&Method::GET, "/v2/manifests/blobs/manifests/v1"),
            Some(EcrAction::BatchGetImage)
        );
        assert_eq!(EcrAction::PutImage.per_second().get(), 10);
    }
}
