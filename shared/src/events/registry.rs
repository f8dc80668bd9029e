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
//!
//! Each decoded event keeps its source's event id (distribution `id`, Pub/Sub
//! `message.messageId`, EventBridge `id`), the key an audit record is filed under.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// What happened in the registry (serialized `push` / `delete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A manifest (and possibly a tag) was pushed.
    Push,
    /// A manifest or tag was deleted.
    Delete,
}

/// One push or delete in a production repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryEvent {
    /// The source's id of the event (distribution event `id`, Pub/Sub `message.messageId`,
    /// EventBridge `id`), when it sent one.
    pub id: Option<String>,
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
    #[serde(default)]
    id: Option<String>,
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
    #[serde(default)]
    url: Option<String>,
}

impl Target {
    /// A manifest (image, index, artifact) rather than a blob: by its URL when the event has
    /// one, else by its media type (an OCI index's has no `manifest` in it).
    fn is_manifest(&self) -> bool {
        if let Some(url) = &self.url {
            if url.contains("/manifests/") {
                return true;
            }
            if url.contains("/blobs/") {
                return false;
            }
        }
        self.media_type.contains("manifest")
            || self.media_type == "application/vnd.oci.image.index.v1+json"
    }
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
        .filter(|e| e.target.is_manifest() || e.target.tag.is_some() || e.action == "delete")
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
                id: e.id,
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
    #[serde(rename = "messageId", default)]
    message_id: Option<String>,
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
        id: push.message.message_id,
        action,
        repository,
        digest,
        tag,
    })
}

#[derive(Deserialize)]
struct EventBridge {
    #[serde(default)]
    id: Option<String>,
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
        id: event.id,
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
                    id: Some("1".into()),
                    action: Action::Push,
                    repository: "127.0.0.1:5002/us/app".into(),
                    digest: Some(DIGEST.into()),
                    tag: Some("v1".into())
                },
                RegistryEvent {
                    id: Some("4".into()),
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
        assert_eq!(event.id.as_deref(), Some("1"));
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
        assert_eq!(event.id, None, "a message without messageId");
    }

    #[test]
    fn ecr_eventbridge_push() {
        let body = format!(
            r#"{{"version":"0","id":"4f5ec4d5-4de4-7aad-a046-56d5cfe1df0e","detail-type":"ECR Image Action","source":"aws.ecr","account":"123456789012","region":"eu-west-1","detail":{{"result":"SUCCESS","repository-name":"prod/app","image-digest":"{DIGEST}","action-type":"PUSH","image-tag":"v1","manifest-media-type":"application/vnd.oci.image.manifest.v1+json"}}}}"#
        );
        let event = from_ecr_eventbridge(body.as_bytes())
            .expect("decoded")
            .expect("successful");
        assert_eq!(
            event.repository,
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/prod/app"
        );
        assert_eq!(event.tag.as_deref(), Some("v1"));
        assert_eq!(
            event.id.as_deref(),
            Some("4f5ec4d5-4de4-7aad-a046-56d5cfe1df0e")
        );
        let failed = body.replace("SUCCESS", "FAILURE");
        assert_eq!(from_ecr_eventbridge(failed.as_bytes()), Ok(None));
    }

    #[test]
    fn untagged_oci_indexes_are_manifests_and_blobs_are_not() {
        let body = format!(
            r#"{{"events":[
            {{"id":"1","action":"push","target":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{DIGEST}","repository":"app"}}}},
            {{"id":"2","action":"push","target":{{"mediaType":"application/vnd.example+json","digest":"{DIGEST}","repository":"app","url":"http://h/v2/app/manifests/{DIGEST}"}}}},
            {{"id":"3","action":"push","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST}","repository":"app","url":"http://h/v2/app/blobs/{DIGEST}"}}}},
            {{"id":"4","action":"push","target":{{"mediaType":"application/octet-stream","digest":"{DIGEST}","repository":"app"}}}}
            ]}}"#
        );
        let events = from_distribution(body.as_bytes(), "h").expect("decoded");
        let ids: Vec<_> = events.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(ids, [Some("1"), Some("2")]);
    }

    #[test]
    fn actions_serialize_in_snake_case_and_ids_are_optional() {
        assert_eq!(
            serde_json::to_string(&[Action::Push, Action::Delete]).expect("json"),
            r#"["push","delete"]"#
        );
        let body = format!(
            r#"{{"events":[{{"action":"push","target":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{DIGEST}","repository":"app"}}}}]}}"#
        );
        let events = from_distribution(body.as_bytes(), "h").expect("decoded");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, None);
    }
}
