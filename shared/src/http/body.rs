//! Reading answers with a cap: a peer announcing or sending more than its kind of answer can
//! hold is cut off, not buffered.

use bytes::{Bytes, BytesMut};
use reqwest::Response;

/// The largest answer of each kind the promoter reads into memory.
pub mod limits {
    /// A manifest, image index or referrers index: the 4 MiB the distribution registry and
    /// most others accept on push (a larger one cannot have been pushed to them either).
    pub const MANIFEST: u64 = 4 << 20;
    /// The part of an error answer kept for a message.
    pub const ERROR_BODY: usize = 4 << 10;
    /// A token endpoint's answer (tokens are a few KiB; Google's identity tokens the largest).
    pub const TOKEN: u64 = 1 << 20;
    /// One page of `tags/list`: 1,000 tags of at most 128 characters, or Google's listing of
    /// every digest of a repository with its tags (a few MiB for Kubernetes' largest).
    pub const TAG_PAGE: u64 = 16 << 20;
    /// Pages of `tags/list` followed at most (with 1,000 tags a page, a million tags).
    pub const TAG_PAGES: usize = 1_000;
    /// A JSON answer of an API (GitHub, Cloud Storage metadata, a notification sink).
    pub const API: u64 = 16 << 20;
}

/// An answer that could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The answer announced or sent more than its kind may hold.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: u64,
    },
    /// The connection failed or timed out while reading.
    #[error("reading the answer")]
    Read(#[source] reqwest::Error),
    /// The answer is not the JSON expected.
    #[error("the answer is not the JSON expected")]
    Json(#[source] serde_json::Error),
}

impl BodyError {
    /// True when reading again may succeed (a broken or slow connection); an oversized or
    /// malformed answer will not change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BodyError::Read(_))
    }
}

/// Reads the whole body of `response`, failing as soon as it is known to exceed `limit` bytes
/// (from `Content-Length`, or while counting).
pub async fn read_capped(mut response: Response, limit: u64) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads the body of `response` as JSON of type `T`, at most `limit` bytes.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    response: Response,
    limit: u64,
) -> Result<T, BodyError> {
    let bytes = read_capped(response, limit).await?;
    serde_json::from_slice(&bytes).map_err(BodyError::Json)
}

/// The first `limit` bytes of the body of `response` as text (for an error message): never
/// fails, never reads further than it keeps.
pub async fn read_prefix(mut response: Response, limit: usize) -> String {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let cut = body.len() > limit;
    body.truncate(limit);
    let mut text = String::from_utf8_lossy(&body).into_owned();
    if cut {
        text.push('…');
    }
    text
}
