//! Reading signatures in either format: the legacy `.sig` image and sigstore bundle
//! referrers, each checked against a public key.

use super::bundle::{Bundle, BundleError};
use super::cosign::Payload;
use super::intoto::Statement;
use super::keys::VerifyingKey;
use super::{SignError, is_valid, referrer, stored_image};
use crate::reference::{Digest, Repository};
use crate::registry::{Client, Manifest};
use bytes::Bytes;

/// Most bundle referrers read per digest when verifying (a hostile listing stays bounded).
const MAX_BUNDLES: usize = 64;

/// A bundle referrer of a digest, and what checking it against the key said.
#[derive(Clone, Debug)]
pub struct FoundBundle {
    /// The referrer manifest.
    pub referrer: Digest,
    /// Its statement when the key signed it and it is about the digest, else why not.
    pub statement: Result<Statement, BundleError>,
}

/// A valid signature of a digest by a key, in either format.
#[derive(Clone, Debug)]
pub enum Found {
    /// A legacy signature in the `.sig` image (its digest), with its payload.
    Legacy {
        /// The signature image's digest.
        image: Digest,
        /// The signed payload.
        payload: Box<Payload>,
    },
    /// A bundle referrer holding cosign's signature statement.
    Bundle {
        /// The referrer manifest's digest.
        referrer: Digest,
    },
}

impl Found {
    /// The digest of what holds the signature (the `.sig` image or the referrer).
    pub fn holder(&self) -> &Digest {
        match self {
            Found::Legacy { image, .. } => image,
            Found::Bundle { referrer } => referrer,
        }
    }

    /// `legacy` or `bundle`.
    pub fn format(&self) -> &'static str {
        match self {
            Found::Legacy { .. } => "legacy",
            Found::Bundle { .. } => "bundle",
        }
    }
}

/// Every bundle referrer of `digest` in `repository` (referrers API, else the fallback tag),
/// each checked against `key`: verified statements about `digest`, or why each is not one.
pub async fn bundles(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    key: &VerifyingKey,
) -> Result<Vec<FoundBundle>, SignError> {
    let listing = referrer::list(client, repository, digest, true).await?;
    let mut out = Vec::new();
    for entry in listing
        .entries
        .iter()
        .filter(|e| e.may_hold_any_bundle())
        .take(MAX_BUNDLES)
    {
        if let Some((_, _, statement)) =
            read_checked(client, repository, digest, &entry.digest, key).await?
        {
            out.push(FoundBundle {
                referrer: entry.digest.clone(),
                statement,
            });
        }
    }
    Ok(out)
}

/// The referrer `referrer` of `digest` in `repository`, read and checked against `key`: its
/// manifest, its bundle, and the statement when `key` signed it and it is about `digest` (else
/// why not); `None` when it is no bundle referrer of `digest`.
pub(super) async fn read_checked(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    referrer: &Digest,
    key: &VerifyingKey,
) -> Result<Option<(Manifest, Bytes, Result<Statement, BundleError>)>, SignError> {
    let Some((manifest, bytes)) =
        referrer::read_bundle(client, repository, digest, referrer).await?
    else {
        return Ok(None);
    };
    let statement = Bundle::parse(&bytes)
        .and_then(|b| b.verified_statement(key))
        .and_then(|s| {
            if s.names_digest(digest) {
                Ok(s)
            } else {
                Err(BundleError::NotABundle(format!(
                    "its statement is not about {digest}"
                )))
            }
        });
    Ok(Some((manifest, bytes, statement)))
}

/// The legacy signatures of `digest` in `repository` (the `.sig` image's digest and each
/// layer with its payload), read once to be checked against several keys with
/// [`LegacySignatures::signed_by`].
pub struct LegacySignatures {
    digest: Digest,
    image: Option<(Digest, Vec<(super::cosign::Layer, Bytes)>)>,
}

impl LegacySignatures {
    /// Reads the `.sig` image of `digest` (none: no legacy signature).
    pub async fn read(
        client: &Client,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Self, SignError> {
        Ok(LegacySignatures {
            digest: digest.clone(),
            image: stored_image(client, repository, digest).await?,
        })
    }

    /// True when one of the signatures is `key`'s, of this digest.
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        self.image.as_ref().is_some_and(|(_, layers)| {
            layers
                .iter()
                .any(|(layer, payload)| is_valid(layer, payload, key, &self.digest).is_some())
        })
    }
}

/// The valid signatures of `digest` by `key` in `repository`, in either format: legacy
/// signatures from the `.sig` image, and bundles holding cosign's signature statement.
pub async fn verify_any(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    key: &VerifyingKey,
) -> Result<Vec<Found>, SignError> {
    let mut found = Vec::new();
    if let Some((image, layers)) = stored_image(client, repository, digest).await? {
        found.extend(
            layers
                .iter()
                .filter_map(|(layer, payload)| is_valid(layer, payload, key, digest))
                .map(|payload| Found::Legacy {
                    image: image.clone(),
                    payload: Box::new(payload),
                }),
        );
    }
    for bundle in bundles(client, repository, digest, key).await? {
        if let Ok(statement) = &bundle.statement
            && statement.predicate_type == super::attest::SIGNATURE_PREDICATE
        {
            found.push(Found::Bundle {
                referrer: bundle.referrer,
            });
        }
    }
    Ok(found)
}
