//! Registry push notifications, decoded to one shape whatever the registry.
//!
//! - CNCF distribution webhooks: `{"events":[{action, target{mediaType, digest, repository,
//!   tag}, request{host}}]}`; a multi-arch push sends each child by digest, then the index with
//!   its tag;
//! - Google Artifact Registry / GCR through a Pub/Sub push subscription: `{"message":{"data":
//!   base64(JSON {action: INSERT|DELETE, digest: "HOST/PATH@sha256:…", tag: "HOST/PATH:TAG"})}}`;
//! - Amazon ECR through EventBridge: `detail-type: "ECR Image Action"`, detail `{result,
//!   repository-name, image-digest, action-type: PUSH|DELETE, image-tag}`, with the registry
//!   `ACCOUNT.dkr.ecr.REGION.amazonaws.com` from the event's account and region.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// What happened in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A manifest (and possibly a tag) was pushed.
    Push,
    /// A manifest or tag was deleted.
    Delete,
}

/// One push or delete in a production repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryEvent {
    /// Push or delete.
    pub action: Action,
    /// `HOST/PATH` of the repository.
    pub repository: String,
    /// The manifest digest, when the event names one.
    pub digest: Option<String>,
    /// The tag, when the event names one.
    pub tag: Option<String>,
}

/// A notification that could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryEventError {
    /// Not the JSON shape of that source.
    #[error("not a {source_kind} notification: {reason}")]
    Shape {
        /// distribution, Pub/Sub or EventBridge.
        source_kind: &'static str,
        /// The parse error.
        reason: String,
    },
}

fn shape(source_kind: &'static str, reason: impl ToString) -> RegistryEventError {
    RegistryEventError::Shape {
        source_kind,
        reason: reason.to_string(),
    }
}

#[derive(Deserialize)]
struct Envelope {
    events: Vec<DistributionEvent>,
}

#[derive(Deserialize)]
struct DistributionEvent {
    action: String,
    target: Target,
    #[serde(default)]
    request: Option<Request>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    digest: Option<String>,
    repository: String,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    host: Option<String>,
}

/// Decodes a CNCF distribution notification body. Pulls, mounts and blob pushes are not
/// audit events and are left out; `registry_host` names the registry when the event's own
/// `request.host` is missing.
pub fn from_distribution(
    body: &[u8],
    registry_host: &str,
) -> Result<Vec<RegistryEvent>, RegistryEventError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| shape("distribution", e))?;
    Ok(envelope
        .events
        .into_iter()
        .filter(|e| {
            e.target.media_type.contains("manifest")
                || e.target.tag.is_some()
                || e.action == "delete"
        })
        .filter_map(|e| {
            let action = match e.action.as_str() {
                "push" => Action::Push,
                "delete" => Action::Delete,
                _ => return None,
            };
            let host = e
                .request
                .and_then(|r| r.host)
                .unwrap_or_else(|| registry_host.to_owned());
            Some(RegistryEvent {
                action,
                repository: format!("{host}/{}", e.target.repository),
                digest: e.target.digest,
                tag: e.target.tag,
            })
        })
        .collect())
}

#[derive(Deserialize)]
struct PubSubPush {
    message: PubSubMessage,
}

#[derive(Deserialize)]
struct PubSubMessage {
    data: String,
}

#[derive(Deserialize)]
struct GcrData {
    action: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

/// Decodes a Pub/Sub push of the `gcr` topic (Artifact Registry and GCR).
pub fn from_gcr_pubsub(body: &[u8]) -> Result<RegistryEvent, RegistryEventError> {
    let push: PubSubPush = serde_json::from_slice(body).map_err(|e| shape("Pub/Sub", e))?;
    let data = STANDARD
        .decode(push.message.data.as_bytes())
        .map_err(|e| shape("Pub/Sub", e))?;
    let data: GcrData = serde_json::from_slice(&data).map_err(|e| shape("Pub/Sub", e))?;
    let action = match data.action.as_str() {
        "INSERT" => Action::Push,
        "DELETE" => Action::Delete,
        other => return Err(shape("Pub/Sub", format!("unknown action {other}"))),
    };
    let (repository, digest) = match &data.digest {
        Some(full) => match full.split_once('@') {
            Some((repository, digest)) => (repository.to_owned(), Some(digest.to_owned())),
            None => return Err(shape("Pub/Sub", "digest without @")),
        },
        None => (String::new(), None),
    };
    let (repository, tag) = match &data.tag {
        Some(full) => match full.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name.to_owned(), Some(tag.to_owned())),
            _ => return Err(shape("Pub/Sub", "tag without :")),
        },
        None => (repository, None),
    };
    if repository.is_empty() {
        return Err(shape("Pub/Sub", "neither digest nor tag"));
    }
    Ok(RegistryEvent {
        action,
        repository,
        digest,
        tag,
    })
}

#[derive(Deserialize)]
struct EventBridge {
    #[serde(rename = "detail-type")]
    detail_type: String,
    account: String,
    region: String,
    detail: EcrDetail,
}

#[derive(Deserialize)]
struct EcrDetail {
    result: String,
    #[serde(rename = "repository-name")]
    repository_name: String,
    #[serde(rename = "image-digest", default)]
    image_digest: Option<String>,
    #[serde(rename = "action-type")]
    action_type: String,
    #[serde(rename = "image-tag", default)]
    image_tag: Option<String>,
}

/// Decodes an EventBridge `ECR Image Action` event; `None` for a failed action.
pub fn from_ecr_eventbridge(body: &[u8]) -> Result<Option<RegistryEvent>, RegistryEventError> {
    let event: EventBridge = serde_json::from_slice(body).map_err(|e| shape("EventBridge", e))?;
    if event.detail_type != "ECR Image Action" {
        return Err(shape(
            "EventBridge",
            format!("detail-type {}", event.detail_type),
        ));
    }
    if event.detail.result != "SUCCESS" {
        return Ok(None);
    }
    let action = match event.detail.action_type.as_str() {
        "PUSH" => Action::Push,
        "DELETE" => Action::Delete,
        other => return Err(shape("EventBridge", format!("action-type {other}"))),
    };
    let host = format!("{}.dkr.ecr.{}.amazonaws.com", event.account, event.region);
    Ok(Some(RegistryEvent {
        action,
        repository: format!("{host}/{}", event.detail.repository_name),
        digest: event.detail.image_digest,
        tag: event.detail.image_tag.filter(|t| !t.is_empty()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn distribution_manifest_pushes_and_deletes() {
        let body = format!(
            r#"{{"events":[
            {{"id":"1","action":"push","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST}","repository":"us/app","tag":"v1"}},"request":{{"host":"127.0.0.1:5002"}}}},
            {{"id":"2","action":"push","target":{{"mediaType":"application/octet-stream","digest":"{DIGEST}","repository":"us/app"}}}},
            {{"id":"3","action":"pull","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST}","repository":"us/app"}}}},
            {{"id":"4","action":"delete","target":{{"digest":"{DIGEST}","repository":"us/app"}}}}
            ]}}"#
        );
        let events = from_distribution(body.as_bytes(), "prod.example").expect("decoded");
        assert_eq!(
            events,
            vec![
                RegistryEvent {
                    action: Action::Push,
                    repository: "127.0.0.1:5002/us/app".into(),
                    digest: Some(DIGEST.into()),
                    tag: Some("v1".into())
                },
                RegistryEvent {
                    action: Action::Delete,
                    repository: "prod.example/us/app".into(),
                    digest: Some(DIGEST.into()),
                    tag: None
                },
            ]
        );
        assert!(from_distribution(b"[1]", "h").is_err());
    }

    #[test]
    fn gcr_pubsub_insert_with_digest_and_tag() {
        let data = format!(
            r#"{{"action":"INSERT","digest":"us-docker.pkg.dev/p/images/app@{DIGEST}","tag":"us-docker.pkg.dev/p/images/app:v1"}}"#
        );
        let body = format!(
            r#"{{"message":{{"data":"{}","messageId":"1","publishTime":"t"}},"subscription":"s"}}"#,
            STANDARD.encode(data)
        );
        let event = from_gcr_pubsub(body.as_bytes()).expect("decoded");
        assert_eq!(event.repository, "us-docker.pkg.dev/p/images/app");
        assert_eq!(event.digest.as_deref(), Some(DIGEST));
        assert_eq!(event.tag.as_deref(), Some("v1"));
        let delete = format!(
            r#"{{"message":{{"data":"{}"}}}}"#,
            STANDARD.encode(r#"{"action":"DELETE","tag":"gcr.io/p/app:old"}"#)
        );
        let event = from_gcr_pubsub(delete.as_bytes()).expect("decoded");
        assert_eq!(
            (event.action, event.repository.as_str(), event.digest),
            (Action::Delete, "gcr.io/p/app", None)
        );
    }

    #[test]
    fn ecr_eventbridge_push() {
        let body = format!(
            r#"{{"detail-type":"ECR Image Action","source":"aws.ecr","account":"123456789012","region":"eu-west-1","detail":{{"result":"SUCCESS","repository-name":"prod/app","image-digest":"{DIGEST}","action-type":"PUSH","image-tag":"v1","manifest-media-type":"application/vnd.oci.image.manifest.v1+json"}}}}"#
        );
        let event = from_ecr_eventbridge(body.as_bytes())
            .expect("decoded")
            .expect("successful");
        assert_eq!(
            event.repository,
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/prod/app"
        );
        assert_eq!(event.tag.as_deref(), Some("v1"));
        let failed = body.replace("SUCCESS", "FAILURE");
        assert_eq!(from_ecr_eventbridge(failed.as_bytes()), Ok(None));
    }
}
