//! cosign 2's attestations (`cosign attest` without bundles): an image tagged
//! `sha256-<hex>.att` beside the subject, one layer per attestation, each layer a DSSE envelope
//! (`application/vnd.dsse.envelope.v1+json`) around an in-toto statement.
//!
//! Only read here (the policy checks staging's attestations); the promoter writes its own
//! attestations as bundles.

use serde::Deserialize;

use super::intoto::Envelope;
use super::{MAX_ATTESTATION, SignError, blob_bytes};
use crate::reference::{CosignArtifact, Digest, Repository};
use crate::registry::Client;

/// The media type of an attestation layer.
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Most layers read from one attestation image (a hostile image stays bounded).
const MAX_LAYERS: usize = 64;

/// The DSSE envelopes in the attestation image of `digest` in `repository` (none when there is
/// no such image); layers that are not envelopes are skipped. At most `budget` bytes are read
/// (the layers' declared sizes are counted before reading; the budget is lowered by what was
/// read): layers past it are left out.
pub async fn envelopes(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    budget: &mut usize,
) -> Result<Vec<Envelope>, SignError> {
    #[derive(Deserialize)]
    struct Layer {
        #[serde(rename = "mediaType")]
        media_type: String,
        digest: Digest,
        #[serde(default)]
        size: u64,
    }
    #[derive(Deserialize)]
    struct Image {
        #[serde(default)]
        layers: Vec<Layer>,
    }
    let tag = digest.cosign_tag(CosignArtifact::Attestation);
    let Some(manifest) = client.manifest_get(repository, &tag).await? else {
        return Ok(Vec::new());
    };
    let Ok(image) = serde_json::from_slice::<Image>(&manifest.bytes) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for layer in image
        .layers
        .iter()
        .filter(|l| l.media_type == ENVELOPE_MEDIA_TYPE)
        .take(MAX_LAYERS)
    {
        let declared = usize::try_from(layer.size).unwrap_or(usize::MAX);
        if declared > *budget {
            tracing::warn!(%repository, %digest, "attestations past the read budget left out");
            break;
        }
        let bytes = blob_bytes(
            client,
            repository,
            &layer.digest,
            MAX_ATTESTATION.min(*budget),
        )
        .await?;
        *budget = budget.saturating_sub(bytes.len());
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(&bytes) {
            out.push(envelope);
        }
    }
    Ok(out)
}
