//! Signing keys: ECDSA P-256 key pairs in PEM files, named the way cosign names them
//! (`PREFIX.key`: PKCS#8 private key, `PREFIX.pub`: SubjectPublicKeyInfo public key).

use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Why a key could not be read, written or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the PEM block expected.
    #[error("key file {path}: expected a PEM `{label}` block")]
    NotPem {
        /// The file.
        path: PathBuf,
        /// The PEM label expected.
        label: &'static str,
    },
    /// The key is not an ECDSA P-256 key.
    #[error("key file {path}: not an ECDSA P-256 key ({reason})")]
    Rejected {
        /// The file.
        path: PathBuf,
        /// What the crypto library said.
        reason: String,
    },
    /// The random generator or the signer failed.
    #[error("signing failed")]
    Crypto,
    /// A key file that already exists is not overwritten.
    #[error("{path} exists: not overwriting a key")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

const PRIVATE_LABEL: &str = "PRIVATE KEY";
const PUBLIC_LABEL: &str = "PUBLIC KEY";

/// A private key that signs.
pub struct SigningKey {
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(ECDSA P-256, private part hidden)")
    }
}

/// A public key that verifies.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    spki_der: Vec<u8>,
}

/// `-----BEGIN LABEL-----` … `-----END LABEL-----` around base64 of `der`, 64 columns.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the first `label` PEM block of `text`.
fn unpem(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })
}

impl SigningKey {
    /// Reads a PKCS#8 P-256 private key from a PEM file.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let der = unpem(&read(path)?, PRIVATE_LABEL).ok_or_else(|| KeyError::NotPem {
            path: path.to_owned(),
            label: PRIVATE_LABEL,
        })?;
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der).map_err(|e| {
                KeyError::Rejected {
                    path: path.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        Ok(SigningKey { pair })
    }

    /// Generates a key pair and writes `PREFIX.key` (mode 0600) and `PREFIX.pub`; refuses to
    /// overwrite either.
    pub fn generate(prefix: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
        let private_path = prefix.with_extension("key");
        let public_path = prefix.with_extension("pub");
        for path in [&private_path, &public_path] {
            if path.exists() {
                return Err(KeyError::Exists { path: path.clone() });
            }
        }
        let document =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyError::Crypto)?;
        let key = SigningKey {
            pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, document.as_ref())
                .map_err(|e| KeyError::Rejected {
                    path: private_path.clone(),
                    reason: e.to_string(),
                })?,
        };
        write_private(&private_path, &pem(PRIVATE_LABEL, document.as_ref()))?;
        let public = key.verifying_key()?;
        std::fs::write(&public_path, public.to_pem()).map_err(|source| KeyError::Io {
            path: public_path.clone(),
            source,
        })?;
        Ok((private_path, public_path))
    }

    /// The public half.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let der = self
            .pair
            .public_key()
            .as_der()
            .map_err(|_| KeyError::Crypto)?;
        Ok(VerifyingKey {
            spki_der: der.as_ref().to_vec(),
        })
    }

    /// An ASN.1 DER ECDSA P-256 SHA-256 signature of `message` (as cosign stores them).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let signature = self
            .pair
            .sign(&SystemRandom::new(), message)
            .map_err(|_| KeyError::Crypto)?;
        Ok(signature.as_ref().to_vec())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<(), KeyError> {
    std::fs::write(path, text).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })
}

impl VerifyingKey {
    /// Reads a public key (SubjectPublicKeyInfo PEM) from a file.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let der = unpem(&read(path)?, PUBLIC_LABEL).ok_or_else(|| KeyError::NotPem {
            path: path.to_owned(),
            label: PUBLIC_LABEL,
        })?;
        let key = VerifyingKey { spki_der: der };
        // Reject anything that is not a P-256 key now rather than at every verification.
        aws_lc_rs::signature::ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key.spki_der)
            .map_err(|e| KeyError::Rejected {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(key)
    }

    /// A public key from its SubjectPublicKeyInfo DER (as KMS returns it).
    pub fn from_spki_der(der: Vec<u8>) -> Self {
        VerifyingKey { spki_der: der }
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key as PEM.
    pub fn to_pem(&self) -> String {
        pem(PUBLIC_LABEL, &self.spki_der)
    }

    /// True when `signature` (ASN.1 DER) is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.spki_der)
            .verify(message, signature)
            .is_ok()
            || aws_lc_rs::signature::ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.spki_der)
                .is_ok_and(|k| k.verify_sig(message, signature).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_and_are_not_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = dir.path().join("cosign");
        let (private, public) = SigningKey::generate(&prefix).expect("generate");
        let key = SigningKey::from_pem_file(&private).expect("read private");
        let verifying = VerifyingKey::from_pem_file(&public).expect("read public");
        let signature = key.sign(b"payload").expect("sign");
        assert!(verifying.verifies(b"payload", &signature));
        assert!(!verifying.verifies(b"payloaD", &signature));
        assert!(matches!(
            SigningKey::generate(&prefix),
            Err(KeyError::Exists { .. })
        ));
        assert!(!format!("{key:?}").contains("BEGIN"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&private)
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
