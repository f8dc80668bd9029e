//! The generic webhook: the notice as JSON, with `X-Promoter-Event`, `X-Promoter-Delivery` and,
//! when a secret is set, `X-Promoter-Signature-256: sha256=HEX(HMAC_SHA256(secret, body))`, the
//! convention of GitHub's `X-Hub-Signature-256`, so receivers can reuse their verifiers.

use aws_lc_rs::hmac;
use reqwest::header::HeaderName;

use super::http::{Post, header_value, parse_url};
use super::{Delivery, Notice, NotifyError};

/// The sink's name.
const SINK: &str = "webhook";

/// `run_summary` or `alert`.
const EVENT: HeaderName = HeaderName::from_static("x-promoter-event");
/// The notice's id, for receivers to drop duplicates.
const DELIVERY: HeaderName = HeaderName::from_static("x-promoter-delivery");
/// The body's HMAC.
const SIGNATURE: HeaderName = HeaderName::from_static("x-promoter-signature-256");

/// Posts `notice` to `url`, signed with `secret` if given, once.
pub(super) async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    notice: &Notice,
) -> Result<Delivery, NotifyError> {
    let parsed = parse_url(SINK, url)?;
    let body = notice.payload(SINK)?.into_bytes();
    let mut headers = vec![
        (
            EVENT,
            header_value(SINK, "X-Promoter-Event", notice.kind.as_str(), false)?,
        ),
        (
            DELIVERY,
            header_value(SINK, "X-Promoter-Delivery", &notice.id, false)?,
        ),
    ];
    if let Some(secret) = secret {
        let signature = signature_header(secret.as_bytes(), &body);
        headers.push((
            SIGNATURE,
            header_value(SINK, "X-Promoter-Signature-256", &signature, false)?,
        ));
    }
    let mut secrets = vec![url];
    secrets.extend(secret);
    Post {
        sink: SINK,
        url: parsed,
        headers,
        body,
        secrets,
    }
    .send(client)
    .await?;
    Ok(Delivery::Sent)
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`: the value of
/// `X-Promoter-Signature-256`.
pub fn signature_header(secret: &[u8], body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), body);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in tag.as_ref() {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

/// Lowercase hexadecimal digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::verify_signature;

    #[test]
    fn signatures_follow_githubs_convention() {
        // The example in GitHub's "Validating webhook deliveries".
        assert_eq!(
            signature_header(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let body = br#"{"kind":"alert"}"#;
        let header = signature_header(b"s3cret", body);
        assert_eq!(verify_signature(b"s3cret", body, Some(&header)), Ok(()));
    }
}
