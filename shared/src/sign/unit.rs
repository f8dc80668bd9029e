//! Signing one promoted unit: its digest signed once per kind (and, when asked, each child of
//! an index), the same signature pushed to every destination.
//!
//! Signing is the sign step's, after copy-digest has promoted the unit: each destination is
//! checked to hold the digest first (a destination without it is refused: nothing is signed
//! that production does not serve). Then, per digest:
//!
//! - **legacy** (`sha256-<hex>.sig`): every destination is read; when one lacks a valid
//!   signature by the key, the digest is signed once and the signature added where it lacks.
//! - **bundles**: every destination's referrers are listed; for each statement (the
//!   signature, and for the unit's digest the promotion record and the verification summary),
//!   a bundle by the key already in some destination is reused, else one is signed; the same
//!   bundle is then pushed wherever it is not listed. "The same" is the same key and predicate
//!   type for the same digest: a statement is not made again because its time or run differs.
//!
//! Nothing is signed when every destination holds everything, and nothing is written.

use std::collections::HashMap;
use std::fmt;

use futures_util::future::try_join_all;

use super::attest::{Promotion, rfc3339};
use super::bundle::Bundle;
use super::intoto::{Envelope, PAYLOAD_TYPE, Statement, pre_authentication_encoding};
use super::referrer::{self, BundleReferrer, Listing, Subject};
use super::verify::read_checked;
use super::{SignError, Signer, append, is_valid, stored};
use crate::http::retry::retry_unit;
use crate::plan::Unit;
use crate::reference::{Digest, Repository};
use crate::registry::Client;

/// Most bundle candidates read per (digest, predicate type): a registry listing thousands of
/// referrers costs a bounded number of reads.
const MAX_CANDIDATES: usize = 32;

/// What was signed or attested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    /// The legacy `sha256-<hex>.sig` signature.
    LegacySignature,
    /// The signature as a sigstore bundle referrer.
    SignatureBundle,
    /// The promotion record bundle.
    Promotion,
    /// The verification summary bundle.
    VerificationSummary,
}

impl Artifact {
    /// The kind of bundle holding a statement of `predicate_type`.
    fn of_predicate(predicate_type: &str) -> Self {
        match predicate_type {
            super::attest::PROMOTION_PREDICATE => Artifact::Promotion,
            super::attest::VSA_PREDICATE => Artifact::VerificationSummary,
            _ => Artifact::SignatureBundle,
        }
    }

    /// Its short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Artifact::LegacySignature => "signature",
            Artifact::SignatureBundle => "signature bundle",
            Artifact::Promotion => "promotion attestation",
            Artifact::VerificationSummary => "verification summary",
        }
    }
}

/// Where one signature or attestation went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAt {
    /// The destination repository.
    pub repository: Repository,
    /// The signed digest when it is an index child, not the unit's digest.
    pub child: Option<Digest>,
    /// What.
    pub artifact: Artifact,
    /// False when a valid one by the key was there already.
    pub added: bool,
}

impl fmt::Display for SignedAt {
    /// `REPOSITORY` (`REPOSITORY@CHILD` for an index child), then what, unless it is the
    /// legacy signature.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.child {
            None => write!(f, "{}", self.repository)?,
            Some(child) => write!(f, "{}@{child}", self.repository)?,
        }
        match self.artifact {
            Artifact::LegacySignature => Ok(()),
            other => write!(f, " ({})", other.as_str()),
        }
    }
}

/// Where a unit's promotion came from: recorded in its promotion record and summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The run.
    pub run: String,
    /// The manifests' revision.
    pub revision: String,
    /// The manifest repository, when the revision is one of its commits.
    pub manifest_repository: Option<String>,
    /// Staging signatures verified before publishing (`REFERENCE`, digest), when a key was
    /// required.
    pub checked: Option<Vec<(String, Digest)>>,
}

impl Signer {
    /// Signs `unit` in every destination, retrying what may pass a few times; returns where
    /// each signature went (in destination order, the unit's digest first).
    pub async fn sign_unit(
        &self,
        client: &Client,
        unit: &Unit,
        provenance: &Provenance,
    ) -> Result<Vec<SignedAt>, SignError> {
        retry_unit(SignError::is_retryable, || {
            self.sign_unit_once(client, unit, provenance)
        })
        .await
    }

    async fn sign_unit_once(
        &self,
        client: &Client,
        unit: &Unit,
        provenance: &Provenance,
    ) -> Result<Vec<SignedAt>, SignError> {
        let repositories: Vec<&Repository> =
            unit.destinations.iter().map(|d| &d.repository).collect();
        let heads = try_join_all(
            repositories
                .iter()
                .map(|r| client.manifest_head(r, &unit.digest)),
        )
        .await?;
        if let Some((absent, _)) = repositories
            .iter()
            .zip(&heads)
            .find(|(_, head)| head.is_none())
        {
            return Err(SignError::NotPromoted {
                repository: (*absent).clone(),
                digest: unit.digest.clone(),
            });
        }
        let mut digests = vec![(unit.digest.clone(), None)];
        if self.signs_children() {
            digests.extend(
                index_children(client, &unit.source, &unit.digest)
                    .await?
                    .into_iter()
                    .map(|child| (child.clone(), Some(child))),
            );
        }
        let reference = self.reference_for(repositories.iter().copied());
        let mut signed_at = Vec::new();
        for (digest, child) in digests {
            if self.format().legacy() {
                let pushed = self
                    .sign_legacy(client, &repositories, &reference, &digest)
                    .await?;
                signed_at.extend(pushed.into_iter().map(|(repository, added)| SignedAt {
                    repository,
                    child: child.clone(),
                    artifact: Artifact::LegacySignature,
                    added,
                }));
            }
            if self.format().bundle() {
                let promotion = Promotion {
                    digest: digest.clone(),
                    source: unit.source.clone(),
                    canonical: reference.clone(),
                    revision: provenance.revision.clone(),
                    manifest_repository: provenance.manifest_repository.clone(),
                    run: provenance.run.clone(),
                    time: rfc3339(crate::state::records::now()),
                    checked: provenance.checked.clone(),
                };
                let statements = promotion.statements(self.attests() && child.is_none());
                let pushed = self
                    .sign_bundles(client, &repositories, &digest, &statements)
                    .await?;
                signed_at.extend(pushed.into_iter().map(|(repository, artifact, added)| {
                    SignedAt {
                        repository,
                        child: child.clone(),
                        artifact,
                        added,
                    }
                }));
            }
        }
        Ok(signed_at)
    }

    /// The legacy signature of `digest` in each repository lacking one by the key (signed
    /// once, only when one lacks it).
    async fn sign_legacy(
        &self,
        client: &Client,
        repositories: &[&Repository],
        reference: &str,
        digest: &Digest,
    ) -> Result<Vec<(Repository, bool)>, SignError> {
        let mut out = Vec::with_capacity(repositories.len());
        let mut signed = None;
        for repository in repositories {
            let existing = stored(client, repository, digest).await?;
            if existing
                .iter()
                .any(|(layer, payload)| is_valid(layer, payload, self.public(), digest).is_some())
            {
                out.push(((*repository).clone(), false));
                continue;
            }
            let signature = match &signed {
                Some(signature) => signature,
                None => signed.insert(self.sign(reference, digest).await?),
            };
            append(client, repository, digest, signature, existing).await?;
            out.push(((*repository).clone(), true));
        }
        Ok(out)
    }

    /// Each of `statements` about `digest` as a bundle in every repository: reused where
    /// one by the key exists, signed once otherwise. Returns (repository, what, added).
    async fn sign_bundles(
        &self,
        client: &Client,
        repositories: &[&Repository],
        digest: &Digest,
        statements: &[Statement],
    ) -> Result<Vec<(Repository, Artifact, bool)>, SignError> {
        let Some(first) = repositories.first() else {
            return Ok(Vec::new());
        };
        let Some(manifest) = client.manifest_get(first, digest).await? else {
            return Err(SignError::NotPromoted {
                repository: (*first).clone(),
                digest: digest.clone(),
            });
        };
        let subject = Subject::of(&manifest);
        let listings = try_join_all(repositories.iter().map(|repository| async move {
            let api = !self.lacks_referrers_api(repository.host());
            let listing = referrer::list(client, repository, digest, api).await?;
            if api && !listing.via_api {
                self.note_no_referrers_api(repository.host());
            }
            Ok::<_, SignError>(listing)
        }))
        .await?;
        let mut out = Vec::new();
        let mut to_push: HashMap<usize, Vec<BundleReferrer>> = HashMap::new();
        for statement in statements {
            let artifact = Artifact::of_predicate(&statement.predicate_type);
            let found = self
                .find_bundle(
                    client,
                    repositories,
                    &listings,
                    digest,
                    &statement.predicate_type,
                )
                .await?;
            let bundle = match found {
                Some(found) => found,
                None => self.sign_statement(statement, &subject).await?,
            };
            for (i, repository) in repositories.iter().enumerate() {
                let listed = listings[i].lists(&bundle.manifest.digest);
                out.push(((*repository).clone(), artifact, !listed));
                if !listed {
                    to_push.entry(i).or_default().push(bundle.clone());
                }
            }
        }
        // Mirrors in parallel: each one's fallback update pauses before reading back.
        try_join_all(to_push.iter().map(|(i, referrers)| {
            let referrers: Vec<&BundleReferrer> = referrers.iter().collect();
            let repository = repositories[*i];
            let via_api = listings[*i].via_api;
            async move {
                referrer::push(
                    client,
                    repository,
                    digest,
                    &referrers,
                    via_api,
                    &self.empty_configs,
                )
                .await
            }
        }))
        .await?;
        Ok(out)
    }

    /// A bundle by the key holding a statement of `predicate_type` about `digest`, listed in
    /// any of the repositories (the first found).
    async fn find_bundle(
        &self,
        client: &Client,
        repositories: &[&Repository],
        listings: &[Listing],
        digest: &Digest,
        predicate_type: &str,
    ) -> Result<Option<BundleReferrer>, SignError> {
        let mut read = 0;
        let mut seen = std::collections::HashSet::new();
        for (repository, listing) in repositories.iter().zip(listings) {
            for entry in listing
                .entries
                .iter()
                .filter(|e| e.may_hold(predicate_type))
            {
                if !seen.insert(entry.digest.clone()) {
                    continue;
                }
                if read == MAX_CANDIDATES {
                    return Ok(None);
                }
                read += 1;
                let Some((manifest, bytes, Ok(statement))) =
                    read_checked(client, repository, digest, &entry.digest, self.public()).await?
                else {
                    continue;
                };
                if statement.predicate_type == predicate_type {
                    return Ok(Some(BundleReferrer {
                        predicate_type: predicate_type.to_owned(),
                        bundle: bytes,
                        created: entry
                            .annotations
                            .get(referrer::CREATED_ANNOTATION)
                            .cloned()
                            .unwrap_or_default(),
                        manifest,
                        fresh: false,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// `statement` signed as a DSSE envelope in a bundle, attached to `subject`.
    async fn sign_statement(
        &self,
        statement: &Statement,
        subject: &Subject,
    ) -> Result<BundleReferrer, SignError> {
        let body = serde_json::to_vec(statement).unwrap_or_default();
        let signature = self
            .sign_bytes(&pre_authentication_encoding(PAYLOAD_TYPE, &body))
            .await?;
        let bundle = Bundle::of_envelope(Envelope::new(&body, &signature), self.public());
        Ok(BundleReferrer::new(
            bundle.to_bytes(),
            &statement.predicate_type,
            subject,
            &rfc3339(crate::state::records::now()),
        ))
    }
}

/// The children of `digest` in `repository` when it is an index (empty otherwise).
async fn index_children(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
) -> Result<Vec<Digest>, SignError> {
    let Some(manifest) = client.manifest_get(repository, digest).await? else {
        return Ok(Vec::new());
    };
    Ok(manifest.index_children())
}
