//! What staging holds about one digest, read once: which of the policy's keys signed it, and
//! every DSSE envelope attached to it (bundle referrers and the legacy `.att` image).

use crate::manifest::policy::{Mode, Policy, PublicKey};
use crate::reference::{Digest, Repository};
use crate::registry::Client;
use crate::sign::bundle::Bundle;
use crate::sign::intoto::{Envelope, Statement};
use crate::sign::keys::VerifyingKey;
use crate::sign::{SignError, att, referrer, verify_any};

/// Most bundle referrers read per digest (a hostile listing stays bounded).
const MAX_BUNDLES: usize = 64;

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
        if let Some(rule) = policy.signature.as_ref().filter(|r| r.mode != Mode::Off) {
            for key in &rule.keys {
                let verifying = VerifyingKey::from_spki_der(key.spki_der());
                let found = Box::pin(verify_any(client, repository, digest, &verifying)).await?;
                if let Some(first) = found.first() {
                    evidence.signed_by.push((key.name.clone(), first.format()));
                }
            }
        }
        let attestations_needed = policy
            .provenance
            .as_ref()
            .is_some_and(|r| r.mode != Mode::Off)
            || policy
                .vulnerabilities
                .as_ref()
                .is_some_and(|r| r.mode != Mode::Off);
        if attestations_needed {
            evidence.envelopes = attached_envelopes(client, repository, digest).await?;
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
        if let Some(envelope) = Bundle::parse(&bytes).ok().and_then(|b| b.dsse_envelope) {
            out.push(envelope);
        }
    }
    out.extend(att::envelopes(client, repository, digest).await?);
    Ok(out)
}
