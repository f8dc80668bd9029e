//! Signing with an AWS KMS asymmetric key (`awskms:///KEY-ID-ALIAS-OR-ARN`, cosign's naming):
//! KMS signs with ECDSA_SHA_256 over the raw payload; the private key never leaves KMS.

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

use super::keys::VerifyingKey;

/// Error codes of KMS worth another try: throttling and KMS's own trouble. Everything else
/// (`AccessDeniedException`, `NotFoundException`, `DisabledException`, `KMSInvalidStateException`,
/// `InvalidKeyUsageException`, …) will not change by retrying.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "KMSInternalException",
    "KeyUnavailableException",
    "DependencyTimeoutException",
    "InternalFailureException",
    "ServiceUnavailableException",
];

/// A KMS key reference failed or KMS refused.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// Not `awskms://[ENDPOINT]/KEY`.
    #[error("`{0}` is not awskms://[ENDPOINT]/KEY-ID (e.g. awskms:///alias/promoter)")]
    BadReference(String),
    /// A KMS request failed.
    #[error("AWS KMS {operation} on {key}")]
    Request {
        /// `Sign` or `GetPublicKey`.
        operation: &'static str,
        /// The key.
        key: String,
        /// Whether trying again may help (throttling, KMS's own failures, the network).
        retryable: bool,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// KMS answered without what was asked for.
    #[error("AWS KMS {operation} on {key}: the answer has no {missing}")]
    Incomplete {
        /// `Sign` or `GetPublicKey`.
        operation: &'static str,
        /// The key.
        key: String,
        /// What was missing.
        missing: &'static str,
    },
}

impl KmsError {
    /// True when the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            KmsError::Request { retryable, .. } => *retryable,
            KmsError::BadReference(_) | KmsError::Incomplete { .. } => false,
        }
    }

    /// A failed request, judged once: transport failures and timeouts, and the
    /// [`RETRYABLE_CODES`] of the service, are retryable.
    fn request<E, R>(operation: &'static str, key: &str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let retryable = match &error {
            SdkError::ServiceError(service) => service
                .err()
                .code()
                .is_some_and(|code| RETRYABLE_CODES.contains(&code)),
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            _ => false,
        };
        KmsError::Request {
            operation,
            key: key.to_owned(),
            retryable,
            source: Box::new(error),
        }
    }
}

/// A signing key held by AWS KMS.
#[derive(Debug, Clone)]
pub struct KmsKey {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsKey {
    /// Parses `awskms://[ENDPOINT]/KEY` into (endpoint, key id).
    pub fn parse(reference: &str) -> Result<(Option<String>, String), KmsError> {
        let bad = || KmsError::BadReference(reference.to_owned());
        let rest = reference.strip_prefix("awskms://").ok_or_else(bad)?;
        let (endpoint, key) = rest.split_once('/').ok_or_else(bad)?;
        if key.is_empty() {
            return Err(bad());
        }
        let endpoint = (!endpoint.is_empty()).then(|| format!("https://{endpoint}"));
        Ok((endpoint, key.to_owned()))
    }

    /// The key `reference` names, configured the AWS way (region, credentials chain,
    /// `AWS_ENDPOINT_URL_KMS`), or with the endpoint the reference gives.
    pub async fn from_reference(reference: &str) -> Result<Self, KmsError> {
        let (endpoint, key_id) = Self::parse(reference)?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        Ok(Self::with_config(&loader.load().await, key_id))
    }

    /// The key `key_id` through a ready SDK configuration.
    pub fn with_config(config: &aws_config::SdkConfig, key_id: String) -> Self {
        KmsKey {
            client: aws_sdk_kms::Client::new(config),
            key_id,
        }
    }

    /// Signs `message` (ECDSA P-256 SHA-256, ASN.1 DER), in KMS.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KmsError> {
        let answer = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| KmsError::request("Sign", &self.key_id, e))?;
        answer
            .signature
            .map(Blob::into_inner)
            .ok_or_else(|| KmsError::Incomplete {
                operation: "Sign",
                key: self.key_id.clone(),
                missing: "signature",
            })
    }

    /// The public half, from KMS.
    pub async fn verifying_key(&self) -> Result<VerifyingKey, KmsError> {
        let answer = self
            .client
            .get_public_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|e| KmsError::request("GetPublicKey", &self.key_id, e))?;
        let der = answer
            .public_key
            .map(Blob::into_inner)
            .ok_or_else(|| KmsError::Incomplete {
                operation: "GetPublicKey",
                key: self.key_id.clone(),
                missing: "public key",
            })?;
        Ok(VerifyingKey::from_spki_der(der))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_like_cosigns() {
        assert_eq!(
            KmsKey::parse("awskms:///alias/promoter").expect("ok"),
            (None, "alias/promoter".to_owned())
        );
        assert_eq!(
            KmsKey::parse("awskms://kms.example:4566/arn:aws:kms:us-east-1:1:key/x").expect("ok"),
            (
                Some("https://kms.example:4566".to_owned()),
                "arn:aws:kms:us-east-1:1:key/x".to_owned()
            )
        );
        assert!(KmsKey::parse("awskms://").is_err());
        assert!(KmsKey::parse("file.key").is_err());
    }
}
