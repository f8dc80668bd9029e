//! Sigstore bundles attached to an image as OCI 1.1 referrers, as cosign 3 attaches them.
//!
//! A bundle is the one layer of an image manifest whose `artifactType` is the bundle media
//! type, whose config is the empty descriptor (`{}`), whose `subject` is the signed image and
//! whose annotations say what the bundle holds (`dev.sigstore.bundle.content`,
//! `dev.sigstore.bundle.predicateType`, `org.opencontainers.image.created`). It is pushed by
//! digest. A registry with the referrers API lists it by itself; for one without (CNCF
//! distribution 2.8), the fallback tag `sha256-<hex>` holds an image index listing the
//! referrers, which the promoter updates by reading it, adding its entries (keeping every
//! entry others put there) and reading it back after a pause, writing again when a concurrent
//! writer's index replaced its own (registries offer no conditional tag write).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::bundle::BUNDLE_MEDIA_TYPE;
use super::{MAX_ATTESTATION, SignError, blob_bytes};
use crate::reference::{Digest, Repository};
use crate::registry::{Client, Manifest, media_type};

/// Media type of the empty config (`{}`).
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty config's bytes.
const EMPTY_CONFIG: &[u8] = b"{}";
/// Annotation: what the bundle holds (`dsse-envelope`).
pub const CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
/// Annotation: the predicate type of the statement in the bundle.
pub const PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// Annotation: when the referrer was made.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// Prefix of every sigstore bundle media type (cosign reads any of them).
const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// Writes of the fallback index before giving up on a contended tag.
const FALLBACK_ATTEMPTS: u32 = 6;

/// The signed image, as a referrer's `subject` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

impl Subject {
    /// The subject descriptor of `manifest`.
    pub fn of(manifest: &Manifest) -> Self {
        Subject {
            media_type: manifest.media_type.clone(),
            digest: manifest.digest.clone(),
            size: manifest.bytes.len() as u64,
        }
    }
}

/// A bundle as a referrer: its bytes and the manifest attaching it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleReferrer {
    /// The predicate type of the statement it holds.
    pub predicate_type: String,
    /// The bundle JSON (the manifest's one layer).
    pub bundle: Bytes,
    /// The referrer manifest.
    pub manifest: Manifest,
    /// When it was made (RFC 3339), as annotated.
    pub created: String,
    /// Signed just now: its blob is in no repository yet (no HEAD before uploading it).
    pub fresh: bool,
}

impl BundleReferrer {
    /// The referrer of `bundle` (holding a statement of `predicate_type`) for `subject`.
    pub fn new(bundle: Bytes, predicate_type: &str, subject: &Subject, created: &str) -> Self {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "artifactType": BUNDLE_MEDIA_TYPE,
            "config": {
                "mediaType": EMPTY_MEDIA_TYPE,
                "digest": Digest::of(EMPTY_CONFIG),
                "size": EMPTY_CONFIG.len(),
                "artifactType": BUNDLE_MEDIA_TYPE,
            },
            "layers": [{
                "mediaType": BUNDLE_MEDIA_TYPE,
                "digest": Digest::of(&bundle),
                "size": bundle.len(),
            }],
            "subject": {
                "mediaType": subject.media_type,
                "digest": subject.digest,
                "size": subject.size,
            },
            "annotations": {
                CONTENT_ANNOTATION: "dsse-envelope",
                PREDICATE_ANNOTATION: predicate_type,
                CREATED_ANNOTATION: created,
            },
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default());
        BundleReferrer {
            predicate_type: predicate_type.to_owned(),
            bundle,
            manifest: Manifest {
                media_type: media_type::OCI_MANIFEST.to_owned(),
                digest: Digest::of(&bytes),
                bytes,
            },
            created: created.to_owned(),
            fresh: true,
        }
    }

    /// Its entry in a referrers index: the descriptor, its artifact type and annotations (so
    /// a reader can pick bundles by predicate type without fetching each).
    fn index_entry(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": media_type::OCI_MANIFEST,
            "digest": self.manifest.digest,
            "size": self.manifest.bytes.len(),
            "artifactType": BUNDLE_MEDIA_TYPE,
            "annotations": {
                CONTENT_ANNOTATION: "dsse-envelope",
                PREDICATE_ANNOTATION: self.predicate_type,
                CREATED_ANNOTATION: self.created,
            },
        })
    }
}

/// One entry of a referrers index.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Entry {
    /// The referrer manifest's digest.
    pub digest: Digest,
    /// Its artifact type, when listed.
    #[serde(rename = "artifactType", default)]
    pub artifact_type: Option<String>,
    /// Its annotations, when listed.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Entry {
    /// True when the entry may be a bundle: its artifact type is a bundle's, or unsaid.
    pub fn may_hold_any_bundle(&self) -> bool {
        self.artifact_type
            .as_deref()
            .is_none_or(|t| t.starts_with(BUNDLE_MEDIA_TYPE_PREFIX))
    }

    /// True when the entry may be a bundle holding a statement of `predicate_type`: a bundle
    /// (or an entry that does not say its type) whose listed predicate type, if any, matches.
    pub fn may_hold(&self, predicate_type: &str) -> bool {
        let bundle = self.may_hold_any_bundle();
        let predicate = self
            .annotations
            .get(PREDICATE_ANNOTATION)
            .is_none_or(|p| p == predicate_type);
        bundle && predicate
    }
}

#[derive(Deserialize)]
struct IndexEntries {
    #[serde(default)]
    manifests: Vec<serde_json::Value>,
}

/// What a repository lists as referrers of a digest.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// True when the registry's referrers API answered (it then lists pushed referrers itself).
    pub via_api: bool,
    /// The listed referrers (entries that do not parse are left out).
    pub entries: Vec<Entry>,
}

impl Listing {
    /// True when `digest` is listed.
    pub fn lists(&self, digest: &Digest) -> bool {
        self.entries.iter().any(|e| e.digest == *digest)
    }
}

fn entries_of(index: &Manifest) -> Vec<Entry> {
    serde_json::from_slice::<IndexEntries>(&index.bytes)
        .map(|i| {
            i.manifests
                .into_iter()
                .filter_map(|m| serde_json::from_value(m).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The referrers of `subject` in `repository`: through the referrers API unless `api` is false
/// (the host is known to lack it), else from the fallback tag. Returns the listing and whether
/// the API answered.
pub async fn list(
    client: &Client,
    repository: &Repository,
    subject: &Digest,
    api: bool,
) -> Result<Listing, SignError> {
    if api && let Some(index) = client.referrers(repository, subject).await? {
        return Ok(Listing {
            via_api: true,
            entries: entries_of(&index),
        });
    }
    let index = fallback_index(client, repository, subject).await?;
    Ok(Listing {
        via_api: false,
        entries: index.as_ref().map(entries_of).unwrap_or_default(),
    })
}

/// The index the fallback tag of `subject` holds; `None` when there is none, or when the
/// registry resolves the tag to the subject itself (some do: that is no index).
async fn fallback_index(
    client: &Client,
    repository: &Repository,
    subject: &Digest,
) -> Result<Option<Manifest>, SignError> {
    let tag = subject.referrers_tag();
    let Some(index) = client.manifest_get(repository, &tag).await? else {
        return Ok(None);
    };
    if index.digest == *subject {
        return Ok(None);
    }
    let is_index = serde_json::from_slice::<serde_json::Value>(&index.bytes)
        .is_ok_and(|v| v.get("manifests").is_some_and(serde_json::Value::is_array));
    if !is_index {
        return Err(SignError::Malformed {
            repository: repository.to_string(),
            tag: tag.to_string(),
            reason: "the referrers fallback tag holds no image index (left alone)".into(),
        });
    }
    Ok(Some(index))
}

/// The referrer `digest` in `repository` and the bundle it holds, when it is a bundle
/// referrer of `subject` (one layer of a bundle media type); `None` when it is absent or
/// something else.
pub async fn read_bundle(
    client: &Client,
    repository: &Repository,
    subject: &Digest,
    digest: &Digest,
) -> Result<Option<(Manifest, Bytes)>, SignError> {
    #[derive(Deserialize)]
    struct Layer {
        #[serde(rename = "mediaType")]
        media_type: String,
        digest: Digest,
    }
    #[derive(Deserialize)]
    struct SubjectLink {
        digest: Digest,
    }
    #[derive(Deserialize)]
    struct Referrer {
        #[serde(default)]
        layers: Vec<Layer>,
        subject: Option<SubjectLink>,
    }
    let Some(manifest) = client.manifest_get(repository, digest).await? else {
        return Ok(None);
    };
    let Ok(parsed) = serde_json::from_slice::<Referrer>(&manifest.bytes) else {
        return Ok(None);
    };
    let [layer] = parsed.layers.as_slice() else {
        return Ok(None);
    };
    if !layer.media_type.starts_with(BUNDLE_MEDIA_TYPE_PREFIX)
        || parsed.subject.is_none_or(|s| s.digest != *subject)
    {
        return Ok(None);
    }
    let bundle = blob_bytes(client, repository, &layer.digest, MAX_ATTESTATION).await?;
    Ok(Some((manifest, bundle)))
}

/// Pushes `referrers` of `subject` to `repository` (blobs, then each manifest by digest) and,
/// unless the registry's referrers API lists them itself (`listing.via_api`), adds them to
/// the fallback index.
pub async fn push(
    client: &Client,
    repository: &Repository,
    subject: &Digest,
    referrers: &[&BundleReferrer],
    via_api: bool,
    known: &EmptyConfigs,
) -> Result<(), SignError> {
    if referrers.is_empty() {
        return Ok(());
    }
    if !known.contains(repository) {
        put_blob(client, repository, Bytes::from_static(EMPTY_CONFIG)).await?;
        known.insert(repository);
    }
    for referrer in referrers {
        if referrer.fresh {
            let digest = Digest::of(&referrer.bundle);
            client
                .upload_bytes(repository, &digest, referrer.bundle.clone())
                .await?;
        } else {
            put_blob(client, repository, referrer.bundle.clone()).await?;
        }
        client
            .manifest_put(repository, &referrer.manifest.digest, &referrer.manifest)
            .await?;
    }
    if via_api {
        return Ok(());
    }
    let entries: Vec<serde_json::Value> = referrers.iter().map(|r| r.index_entry()).collect();
    update_fallback(client, repository, subject, &entries).await
}

/// Repositories known to hold the empty config: checked once per repository and process
/// instead of once per referrer.
#[derive(Debug, Default)]
pub struct EmptyConfigs(std::sync::Mutex<std::collections::HashSet<Repository>>);

impl EmptyConfigs {
    fn contains(&self, repository: &Repository) -> bool {
        self.0.lock().is_ok_and(|known| known.contains(repository))
    }

    fn insert(&self, repository: &Repository) {
        if let Ok(mut known) = self.0.lock() {
            known.insert(repository.clone());
        }
    }
}

async fn put_blob(client: &Client, repository: &Repository, bytes: Bytes) -> Result<(), SignError> {
    let digest = Digest::of(&bytes);
    if !client.blob_exists(repository, &digest).await? {
        client.upload_bytes(repository, &digest, bytes).await?;
    }
    Ok(())
}

/// Adds `entries` to the fallback index of `subject`, keeping what it lists, until a read
/// after a pause shows them all.
async fn update_fallback(
    client: &Client,
    repository: &Repository,
    subject: &Digest,
    entries: &[serde_json::Value],
) -> Result<(), SignError> {
    let tag = subject.referrers_tag();
    for attempt in 0..FALLBACK_ATTEMPTS {
        let current = fallback_index(client, repository, subject).await?;
        let Some(merged) = merged_index(current.as_ref(), entries) else {
            return Ok(());
        };
        if attempt > 0 {
            tracing::info!(%repository, %tag, attempt, "referrers index changed under us: adding our entries again");
        }
        client.manifest_put(repository, &tag, &merged).await?;
        // A writer that read the index before this write may still replace it: look again
        // after a pause longer than its read-to-write step.
        tokio::time::sleep(Duration::from_millis(150 + fastrand::u64(0..250))).await;
    }
    Err(SignError::Contended {
        repository: repository.to_string(),
        tag: tag.to_string(),
    })
}

/// `current` (an index, or none: a new one) with the `entries` it lacks (by digest) appended,
/// every other entry kept as it is and its media type unchanged; `None` when it lists them all
/// or is not an index. Used for bundles here and for staging's referrers by the copy engine.
pub fn merged_index(current: Option<&Manifest>, entries: &[serde_json::Value]) -> Option<Manifest> {
    let mut json = match current {
        Some(current) => serde_json::from_slice(&current.bytes).ok()?,
        None => serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": [],
        }),
    };
    let listed = json.get_mut("manifests")?.as_array_mut()?;
    let mut added = false;
    for entry in entries {
        let digest = entry.get("digest");
        if !listed.iter().any(|e| e.get("digest") == digest) {
            listed.push(entry.clone());
            added = true;
        }
    }
    if !added {
        return None;
    }
    let bytes = Bytes::from(serde_json::to_vec(&json).ok()?);
    Some(Manifest {
        media_type: current
            .map_or(media_type::OCI_INDEX, |c| c.media_type.as_str())
            .to_owned(),
        digest: Digest::of(&bytes),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            media_type: media_type::OCI_MANIFEST.to_owned(),
            digest: Digest::of(b"image"),
            size: 5,
        }
    }

    #[test]
    fn a_referrer_is_cosigns_layout() {
        let referrer = BundleReferrer::new(
            Bytes::from_static(b"{\"bundle\":1}"),
            "https://sigstore.dev/cosign/sign/v1",
            &subject(),
            "2026-12-06T10:00:00Z",
        );
        let json: serde_json::Value =
            serde_json::from_slice(&referrer.manifest.bytes).expect("json");
        assert_eq!(json["artifactType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(json["config"]["mediaType"], EMPTY_MEDIA_TYPE);
        assert_eq!(
            json["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(json["layers"][0]["mediaType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(json["subject"]["digest"], Digest::of(b"image").as_str());
        assert_eq!(json["annotations"][CONTENT_ANNOTATION], "dsse-envelope");
        assert_eq!(
            json["annotations"][PREDICATE_ANNOTATION],
            "https://sigstore.dev/cosign/sign/v1"
        );
        assert_eq!(
            referrer.manifest.digest,
            Digest::of(&referrer.manifest.bytes)
        );
    }

    #[test]
    fn merging_keeps_every_entry_there_and_adds_only_what_is_missing() {
        let ours = BundleReferrer::new(Bytes::from_static(b"{}"), "p", &subject(), "t");
        let theirs = serde_json::json!({
            "mediaType": media_type::OCI_MANIFEST,
            "digest": Digest::of(b"theirs"),
            "size": 3,
            "artifactType": "application/spdx+json",
            "annotations": {"x": "y"},
        });
        let current = merged_index(None, std::slice::from_ref(&theirs)).expect("new index");
        let merged = merged_index(Some(&current), &[ours.index_entry()]).expect("merged");
        let json: serde_json::Value = serde_json::from_slice(&merged.bytes).expect("json");
        assert_eq!(json["mediaType"], media_type::OCI_INDEX);
        assert_eq!(json["manifests"][0], theirs);
        assert_eq!(
            json["manifests"][1]["digest"],
            ours.manifest.digest.as_str()
        );
        assert!(merged_index(Some(&merged), &[ours.index_entry(), theirs]).is_none());
        let entries = entries_of(&merged);
        assert!(entries[1].may_hold("p"));
        assert!(!entries[1].may_hold("q"));
        assert!(!entries[0].may_hold("p"));
    }
}
