//! What staging holds about one digest, read once: which of the policy's keys signed it, and
//! every DSSE envelope attached to it (bundle referrers and the legacy `.att` image).
//!
//! Requests per digest: the referrers listing (the API, else its fallback tag), a manifest and
//! a blob per bundle (at most 64), the `.att` image and its layers, and (for the signature
//! rule) the `.sig` image and its layers; each read once whatever the number of keys and
//! rules.

use crate::manifest::policy::{Mode, Policy, PublicKey};
use crate::reference::{Digest, Repository};
use crate::registry::Client;
use crate::sign::attest::SIGNATURE_PREDICATE;
use crate::sign::bundle::Bundle;
use crate::sign::intoto::{Envelope, Statement};
use crate::sign::keys::VerifyingKey;
use crate::sign::{LegacySignatures, SignError, att, referrer};

/// Most bundle referrers read per digest (a hostile listing stays bounded).
const MAX_BUNDLES: usize = 64;
/// Most bytes of bundles and attestations read per digest (each is at most 4 MiB): what is
/// held in memory for one unit's check stays bounded whatever staging attaches.
const MAX_EVIDENCE_BYTES: usize = 32 * 1024 * 1024;

/// What staging holds about one digest.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Names of the signature rule's keys with a valid signature, each with its format.
    pub signed_by: Vec<(String, &'static str)>,
    /// Every DSSE envelope attached to the digest (unverified).
    pub envelopes: Vec<Envelope>,
}

impl Evidence {
    /// Reads what `policy`'s rules need about `digest` in `repository`: signatures only when
    /// the signature rule is on, attachments only when an attestation rule is.
    pub async fn read(
        client: &Client,
        repository: &Repository,
        digest: &Digest,
        policy: &Policy,
    ) -> Result<Self, SignError> {
        let mut evidence = Evidence::default();
        if policy.is_off() {
            return Ok(evidence);
        }
        // Every attachment once (bundle referrers and the `.att` image): bundles hold cosign 3's
        // signature statements as well as the attestations.
        evidence.envelopes = Box::pin(attached_envelopes(client, repository, digest)).await?;
        if let Some(rule) = policy.signature.as_ref().filter(|r| r.mode != Mode::Off) {
            let legacy = LegacySignatures::read(client, repository, digest).await?;
            let signed = evidence.statements(digest, &rule.keys, &[SIGNATURE_PREDICATE]);
            for key in &rule.keys {
                let verifying = VerifyingKey::from_spki_der(key.spki_der());
                if legacy.signed_by(&verifying) {
                    evidence.signed_by.push((key.name.clone(), "legacy"));
                } else if signed.iter().any(|(name, _)| *name == key.name) {
                    evidence.signed_by.push((key.name.clone(), "bundle"));
                }
            }
        }
        Ok(evidence)
    }

    /// The statements about `digest` of one of `predicate_types` that one of `keys` signed,
    /// each with the key's name.
    pub fn statements(
        &self,
        digest: &Digest,
        keys: &[PublicKey],
        predicate_types: &[&str],
    ) -> Vec<(String, Statement)> {
        let mut out = Vec::new();
        for envelope in &self.envelopes {
            for key in keys {
                let verifying = VerifyingKey::from_spki_der(key.spki_der());
                let Some(statement) = envelope.verified_statement(|m, s| verifying.verifies(m, s))
                else {
                    continue;
                };
                if statement.names_digest(digest)
                    && predicate_types.contains(&statement.predicate_type.as_str())
                {
                    out.push((key.name.clone(), statement));
                    break;
                }
            }
        }
        out
    }
}

/// Every DSSE envelope attached to `digest`: in its bundle referrers, and in its `.att` image.
async fn attached_envelopes(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
) -> Result<Vec<Envelope>, SignError> {
    let listing = Box::pin(referrer::list(client, repository, digest, true)).await?;
    let mut out = Vec::new();
    let mut budget = MAX_EVIDENCE_BYTES;
    for entry in listing
        .entries
        .iter()
        .filter(|e| e.may_hold_any_bundle())
        .take(MAX_BUNDLES)
    {
        let Some((_, bytes)) =
            referrer::read_bundle(client, repository, digest, &entry.digest).await?
        else {
            continue;
        };
        if bytes.len() > budget {
            tracing::warn!(%repository, %digest, "bundles past the read budget left out");
            break;
        }
        budget -= bytes.len();
        if let Some(envelope) = Bundle::parse(&bytes).ok().and_then(|b| b.dsse_envelope) {
            out.push(envelope);
        }
    }
    out.extend(att::envelopes(client, repository, digest, &mut budget).await?);
    Ok(out)
}
