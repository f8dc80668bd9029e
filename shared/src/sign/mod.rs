//! Cosign-compatible signing and verification of promoted images, in cosign's two formats.
//!
//! - **Legacy** ([`cosign`]): a simple-signing payload in the `sha256-<hex>.sig` image, appended
//!   to the signature image already there so that other signers' signatures survive.
//! - **Bundles** (cosign 3: [`intoto`], [`bundle`], [`referrer`]): sigstore bundles of DSSE
//!   envelopes attached as OCI referrers, holding cosign's signature statement and, for each
//!   promoted digest, a promotion record and a SLSA verification summary ([`attest`]).
//!
//! Each statement is signed once per digest and the same signature goes to every destination;
//! signing again with the same key adds nothing. [`verify`](mod@verify) reads either format;
//! [`keys`] and [`kms`] hold the keys.

pub mod att;
pub mod attest;
pub mod bundle;
pub mod cosign;
pub mod intoto;
pub mod keys;
pub mod kms;
pub mod referrer;
mod unit;
pub mod verify;

pub use unit::{Artifact, Provenance, SignedAt};
pub use verify::{Found, FoundBundle, LegacySignatures, verify_any};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::reference::{Digest, Repository, Tag};
use crate::registry::{Client, Manifest, RegistryError, media_type};
use cosign::{
    Layer, PAYLOAD_MEDIA_TYPE, Payload, SIGNATURE_ANNOTATION, SignatureManifest, signature_tag,
};
use keys::{KeyError, SigningKey, VerifyingKey};

/// Largest signature payload read back when verifying (payloads are a few hundred bytes).
const MAX_PAYLOAD: usize = 64 * 1024;
/// Largest bundle or attestation envelope read back (a vulnerability scan's statement can hold
/// thousands of findings).
const MAX_ATTESTATION: usize = 4 * 1024 * 1024;

/// Why signing or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The key could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// AWS KMS could not sign.
    #[error(transparent)]
    Kms(#[from] kms::KmsError),
    /// Asked to sign a digest a destination does not hold (it was never promoted there, or
    /// was deleted since).
    #[error("{repository} does not hold {digest}: nothing to sign")]
    NotPromoted {
        /// The destination repository.
        repository: Repository,
        /// The digest.
        digest: Digest,
    },
    /// The referrers fallback tag kept changing under concurrent writers.
    #[error("{repository}:{tag}: the referrers index kept changing under other writers")]
    Contended {
        /// The repository.
        repository: String,
        /// The fallback tag.
        tag: String,
    },
    /// The signature image in the registry is not one cosign would write.
    #[error("signature image {repository}:{tag} is malformed: {reason}")]
    Malformed {
        /// The repository.
        repository: String,
        /// The signature tag.
        tag: String,
        /// What is wrong.
        reason: String,
    },
}

impl SignError {
    /// True when signing again later may succeed: a registry or KMS request that failed for a
    /// reason that may pass. A bad key, a malformed signature image or a digest that is not
    /// promoted will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            SignError::Registry(e) => e.is_retryable(),
            SignError::Kms(e) => e.is_retryable(),
            SignError::Contended { .. } => true,
            SignError::Key(_) | SignError::NotPromoted { .. } | SignError::Malformed { .. } => {
                false
            }
        }
    }
}

/// A payload and its signature, made once and pushed everywhere.
#[derive(Clone, Debug)]
pub struct Signed {
    /// The payload bytes (what was signed).
    pub payload: Bytes,
    /// The base64 ASN.1 signature.
    pub signature: String,
}

/// What pushing a signature did in one repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The signature was added to the signature image.
    Added,
    /// A valid signature by this key for this digest was already there.
    AlreadySigned,
}

/// Signs `digest` under the name `reference`.
pub fn sign(
    key: &SigningKey,
    reference: &str,
    digest: &Digest,
    optional: serde_json::Map<String, serde_json::Value>,
) -> Result<Signed, SignError> {
    let payload =
        serde_json::to_vec(&Payload::new(reference, digest, optional)).unwrap_or_default();
    let signature = STANDARD.encode(key.sign(&payload)?);
    Ok(Signed {
        payload: Bytes::from(payload),
        signature,
    })
}

/// The signatures stored for `digest` in `repository`, each with its payload.
async fn stored(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
) -> Result<Vec<(Layer, Bytes)>, SignError> {
    Ok(stored_image(client, repository, digest)
        .await?
        .map(|(_, layers)| layers)
        .unwrap_or_default())
}

/// The signature image of `digest` in `repository` (its digest), with each layer's payload.
async fn stored_image(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
) -> Result<Option<(Digest, Vec<(Layer, Bytes)>)>, SignError> {
    let tag = signature_tag(digest);
    let Some(manifest) = client.manifest_get(repository, &tag).await? else {
        return Ok(None);
    };
    let parsed: SignatureManifest =
        serde_json::from_slice(&manifest.bytes).map_err(|e| SignError::Malformed {
            repository: repository.to_string(),
            tag: tag.to_string(),
            reason: e.to_string(),
        })?;
    let mut out = Vec::with_capacity(parsed.layers.len());
    for layer in parsed.layers {
        let layer_digest: Digest = layer.digest.parse().map_err(|e| SignError::Malformed {
            repository: repository.to_string(),
            tag: tag.to_string(),
            reason: format!("layer digest `{}`: {e}", layer.digest),
        })?;
        let payload = blob_bytes(client, repository, &layer_digest, MAX_PAYLOAD).await?;
        out.push((layer, payload));
    }
    Ok(Some((manifest.digest, out)))
}

/// A small blob (at most `max` bytes), whole, verified against its digest.
async fn blob_bytes(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    max: usize,
) -> Result<Bytes, SignError> {
    let mut download = client.blob_get(repository, digest).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = download.body.next().await {
        let chunk = chunk.map_err(|source| RegistryError::Transport {
            what: format!("GET blob {digest}"),
            source,
        })?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() > max {
            return Err(SignError::Malformed {
                repository: repository.to_string(),
                tag: digest.to_string(),
                reason: format!("signature payload larger than {max} bytes"),
            });
        }
    }
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(RegistryError::DigestMismatch {
            what: format!("blob {digest}"),
            expected: digest.to_string(),
            actual: actual.to_string(),
        }
        .into());
    }
    Ok(Bytes::from(bytes))
}

/// True when `layer` carries a signature of `payload` by `key` for `digest`.
fn is_valid(layer: &Layer, payload: &[u8], key: &VerifyingKey, digest: &Digest) -> Option<Payload> {
    let signature = STANDARD
        .decode(layer.annotations.get(SIGNATURE_ANNOTATION)?)
        .ok()?;
    if !key.verifies(payload, &signature) {
        return None;
    }
    let parsed: Payload = serde_json::from_slice(payload).ok()?;
    (parsed.critical.image.docker_manifest_digest == digest.as_str()
        && parsed.critical.kind == cosign::SIGNATURE_TYPE)
        .then_some(parsed)
}

/// Pushes `signed` (a signature of `digest`) to `repository`, appended to the signatures
/// already there; nothing is written when `key` already signed that digest there.
pub async fn push(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    signed: &Signed,
    key: &VerifyingKey,
) -> Result<Pushed, SignError> {
    let existing = stored(client, repository, digest).await?;
    if existing
        .iter()
        .any(|(layer, payload)| is_valid(layer, payload, key, digest).is_some())
    {
        return Ok(Pushed::AlreadySigned);
    }
    append(client, repository, digest, signed, existing).await?;
    Ok(Pushed::Added)
}

/// Writes the signature image of `digest` in `repository`: the `existing` layers (as just
/// read), then `signed`.
async fn append(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    signed: &Signed,
    existing: Vec<(Layer, Bytes)>,
) -> Result<(), SignError> {
    let payload_digest = Digest::of(&signed.payload);
    if !client.blob_exists(repository, &payload_digest).await? {
        client
            .upload_bytes(repository, &payload_digest, signed.payload.clone())
            .await?;
    }
    let mut layers: Vec<Layer> = existing.into_iter().map(|(layer, _)| layer).collect();
    layers.push(Layer {
        media_type: PAYLOAD_MEDIA_TYPE.to_owned(),
        size: signed.payload.len() as u64,
        digest: payload_digest.to_string(),
        annotations: [(SIGNATURE_ANNOTATION.to_owned(), signed.signature.clone())].into(),
    });
    put_signature_image(client, repository, &signature_tag(digest), &layers).await
}

/// Writes a signature image with `layers` (and its config) under `tag`.
async fn put_signature_image(
    client: &Client,
    repository: &Repository,
    tag: &Tag,
    layers: &[Layer],
) -> Result<(), SignError> {
    let (manifest, config) = cosign::manifest_for(layers);
    let config_digest = Digest::of(&config);
    if !client.blob_exists(repository, &config_digest).await? {
        client
            .upload_bytes(repository, &config_digest, Bytes::from(config))
            .await?;
    }
    let manifest = Manifest {
        media_type: media_type::OCI_MANIFEST.to_owned(),
        digest: Digest::of(&manifest),
        bytes: Bytes::from(manifest),
    };
    client.manifest_put(repository, tag, &manifest).await?;
    Ok(())
}

/// The payloads of every valid signature by `key` for `digest` in `repository` (empty when
/// there is none: unsigned, or signed by other keys only, or tampered with).
pub async fn verify(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    key: &VerifyingKey,
) -> Result<Vec<Payload>, SignError> {
    let stored = stored(client, repository, digest).await?;
    Ok(stored
        .iter()
        .filter_map(|(layer, payload)| is_valid(layer, payload, key, digest))
        .collect())
}

/// Which signature formats are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureFormat {
    /// cosign's legacy `sha256-<hex>.sig` signature image only.
    Legacy,
    /// A sigstore bundle referrer only (cosign 3).
    Bundle,
    /// Both: cosign 3 reads the bundle, older clients the `.sig`.
    #[default]
    Both,
}

impl SignatureFormat {
    /// True when the legacy signature is written.
    pub fn legacy(self) -> bool {
        matches!(self, SignatureFormat::Legacy | SignatureFormat::Both)
    }

    /// True when bundles are written.
    pub fn bundle(self) -> bool {
        matches!(self, SignatureFormat::Bundle | SignatureFormat::Both)
    }
}

impl std::str::FromStr for SignatureFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "legacy" => Ok(SignatureFormat::Legacy),
            "bundle" => Ok(SignatureFormat::Bundle),
            "both" => Ok(SignatureFormat::Both),
            other => Err(format!("`{other}` is not bundle, legacy or both")),
        }
    }
}

/// Signs promoted units: one signature per digest, pushed to every destination.
pub struct Signer {
    key: KeySource,
    format: SignatureFormat,
    attest: bool,
    no_referrers_api: std::sync::Mutex<std::collections::HashSet<String>>,
    operations: std::sync::atomic::AtomicU64,
    empty_configs: referrer::EmptyConfigs,
    children: bool,
    public: VerifyingKey,
    identities: Vec<(String, String)>,
    optional: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(_) => f.write_str("KeySource::File(private part hidden)"),
            KeySource::Kms(key) => write!(f, "KeySource::Kms({key:?})"),
        }
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("identities", &self.identities)
            .finish_non_exhaustive()
    }
}

/// Where the private key is.
pub enum KeySource {
    /// A key file.
    File(SigningKey),
    /// An AWS KMS key.
    Kms(kms::KmsKey),
}

impl KeySource {
    /// Opens `reference`: `awskms://…` for a KMS key, else a PEM key file path.
    pub async fn open(reference: &str) -> Result<Self, SignError> {
        if reference.starts_with("awskms://") {
            return Ok(KeySource::Kms(
                kms::KmsKey::from_reference(reference).await?,
            ));
        }
        Ok(KeySource::File(SigningKey::from_pem_file(
            std::path::Path::new(reference),
        )?))
    }

    async fn public(&self) -> Result<VerifyingKey, SignError> {
        Ok(match self {
            KeySource::File(key) => key.verifying_key()?,
            KeySource::Kms(key) => key.verifying_key().await?,
        })
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(match self {
            KeySource::File(key) => key.sign(message)?,
            KeySource::Kms(key) => key.sign(message).await?,
        })
    }
}

impl Signer {
    /// A signer with `key`. `identities` rewrite destination names into the canonical public
    /// name signed as `docker-reference` (`PREFIX=CANONICAL`, e.g.
    /// `us-docker.pkg.dev/prod/images=registry.example.io`), so that one signature verifies in
    /// every mirror; without a match the first destination's name is used.
    pub async fn new(key: KeySource, identities: Vec<(String, String)>) -> Result<Self, SignError> {
        let public = key.public().await?;
        let mut optional = serde_json::Map::new();
        optional.insert(
            "promoter".to_owned(),
            serde_json::Value::from(concat!("promoter/", env!("CARGO_PKG_VERSION"))),
        );
        Ok(Signer {
            key,
            public,
            identities,
            optional,
            format: SignatureFormat::default(),
            attest: true,
            no_referrers_api: std::sync::Mutex::default(),
            operations: std::sync::atomic::AtomicU64::new(0),
            empty_configs: referrer::EmptyConfigs::default(),
            children: false,
        })
    }

    /// Writes signatures in `format` (default: both).
    #[must_use]
    pub fn with_format(mut self, format: SignatureFormat) -> Self {
        self.format = format;
        self
    }

    /// Attaches (default) or not the promotion record and verification summary, when bundles
    /// are written.
    #[must_use]
    pub fn with_attestations(mut self, attest: bool) -> Self {
        self.attest = attest;
        self
    }

    /// The signature formats written.
    pub fn format(&self) -> SignatureFormat {
        self.format
    }

    /// True when promotion records and verification summaries are attached.
    pub fn attests(&self) -> bool {
        self.attest
    }

    /// True when each signed digest gets a bundle signature, a promotion record and a
    /// verification summary.
    pub fn attaches_attestations(&self) -> bool {
        self.attest && self.format.bundle()
    }

    /// True when `host` said it has no referrers API.
    fn lacks_referrers_api(&self, host: &str) -> bool {
        self.no_referrers_api
            .lock()
            .is_ok_and(|hosts| hosts.contains(host))
    }

    /// Notes that `host` has no referrers API (asked once per signer).
    fn note_no_referrers_api(&self, host: &str) {
        if let Ok(mut hosts) = self.no_referrers_api.lock() {
            hosts.insert(host.to_owned());
        }
    }

    /// The key's ASN.1 DER signature of `message`.
    async fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.operations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.key.sign(message).await
    }

    /// Signing operations made so far (each a KMS `Sign` request with a KMS key).
    pub fn operations(&self) -> u64 {
        self.operations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Also signs every child manifest of an index (each platform's image), not only the index.
    #[must_use]
    pub fn with_children(mut self, children: bool) -> Self {
        self.children = children;
        self
    }

    /// True when index children are signed too.
    pub fn signs_children(&self) -> bool {
        self.children
    }

    /// The public key, for checking what is already signed.
    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    /// The name signed for a digest going to `destinations`.
    pub fn reference_for<'a>(
        &self,
        destinations: impl IntoIterator<Item = &'a Repository> + Clone,
    ) -> String {
        for repository in destinations.clone() {
            let repository = repository.as_str();
            for (prefix, canonical) in &self.identities {
                if let Some(rest) = repository.strip_prefix(prefix.as_str())
                    && (rest.is_empty() || rest.starts_with('/'))
                {
                    return format!("{canonical}{rest}");
                }
            }
        }
        destinations
            .into_iter()
            .next()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Signs `digest`, named `reference`.
    pub async fn sign(&self, reference: &str, digest: &Digest) -> Result<Signed, SignError> {
        let payload = serde_json::to_vec(&Payload::new(reference, digest, self.optional.clone()))
            .unwrap_or_default();
        let signature = STANDARD.encode(self.sign_bytes(&payload).await?);
        Ok(Signed {
            payload: Bytes::from(payload),
            signature,
        })
    }
}
