//! In-toto statements and their DSSE envelopes: what cosign 3 signs.
//!
//! A statement (`https://in-toto.io/Statement/v1`) names its subject (an image's name and
//! digest) and carries a typed predicate. It is signed as a DSSE envelope: the signature
//! covers the pre-authentication encoding `DSSEv1 <len(type)> <type> <len(body)> <body>`
//! (lengths in decimal bytes), never the bare body, so a signature cannot be replayed under
//! another payload type. See <https://github.com/secure-systems-lab/dsse/blob/master/protocol.md>.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::reference::Digest;

/// `_type` of an in-toto statement, version 1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `_type` of an in-toto statement, version 0.1: what `cosign attest` and the SLSA GitHub
/// generator (provenance v0.2) write. Read, never written.
pub const STATEMENT_TYPE_V01: &str = "https://in-toto.io/Statement/v0.1";
/// The subject digest algorithm (the promoter handles sha256 digests only).
const DIGEST_ALGORITHM: &str = "sha256";
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// An in-toto statement about one subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub kind: String,
    /// What the statement is about.
    pub subject: Vec<Subject>,
    /// The predicate's type (a URI).
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    pub predicate: serde_json::Value,
}

/// A statement's subject (an in-toto resource descriptor): a name and its digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The artifact's name (`NAME@DIGEST` of a promotion record; cosign's own signature
    /// statement names none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Algorithm → hex digest.
    pub digest: std::collections::BTreeMap<String, String>,
    /// Claims about the subject (cosign's `-a KEY=VALUE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Statement {
    /// A statement of `predicate_type` about the image `name` at `digest` (`name` empty:
    /// the digest alone, as cosign's signature statement).
    pub fn about(
        name: &str,
        digest: &Digest,
        predicate_type: &str,
        predicate: serde_json::Value,
    ) -> Self {
        Statement {
            kind: STATEMENT_TYPE.to_owned(),
            subject: vec![Subject {
                name: name.to_owned(),
                digest: [(DIGEST_ALGORITHM.to_owned(), digest.hex().to_owned())].into(),
                annotations: None,
            }],
            predicate_type: predicate_type.to_owned(),
            predicate,
        }
    }

    /// True when the statement is about `digest` (any subject with that digest).
    pub fn names_digest(&self, digest: &Digest) -> bool {
        self.subject
            .iter()
            .any(|s| s.digest.get(DIGEST_ALGORITHM).map(String::as_str) == Some(digest.hex()))
    }
}

/// A DSSE envelope, as a sigstore bundle carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The base64 payload.
    pub payload: String,
    /// The payload's type ([`PAYLOAD_TYPE`]).
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Its signatures.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// The base64 ASN.1 DER ECDSA signature.
    pub sig: String,
    /// An optional key id (cosign leaves it empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
}

/// The bytes a DSSE signature covers: `DSSEv1 <len> <type> <len> <body>`.
pub fn pre_authentication_encoding(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl Envelope {
    /// The envelope of `body` (a serialized statement) with one signature.
    pub fn new(body: &[u8], signature: &[u8]) -> Self {
        Envelope {
            payload: STANDARD.encode(body),
            payload_type: PAYLOAD_TYPE.to_owned(),
            signatures: vec![EnvelopeSignature {
                sig: STANDARD.encode(signature),
                keyid: String::new(),
            }],
        }
    }

    /// The decoded payload, if it is base64.
    pub fn body(&self) -> Option<Vec<u8>> {
        STANDARD.decode(&self.payload).ok()
    }

    /// The statement inside, when any signature verifies under `verifies(message, signature)`
    /// and the payload is an in-toto statement (version 1 or 0.1: the same fields).
    pub fn verified_statement(&self, verifies: impl Fn(&[u8], &[u8]) -> bool) -> Option<Statement> {
        if self.payload_type != PAYLOAD_TYPE {
            return None;
        }
        let body = self.body()?;
        let message = pre_authentication_encoding(&self.payload_type, &body);
        let signed = self.signatures.iter().any(|s| {
            STANDARD
                .decode(&s.sig)
                .is_ok_and(|signature| verifies(&message, &signature))
        });
        if !signed {
            return None;
        }
        let statement: Statement = serde_json::from_slice(&body).ok()?;
        [STATEMENT_TYPE, STATEMENT_TYPE_V01]
            .contains(&statement.kind.as_str())
            .then_some(statement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_authentication_encoding_follows_the_dsse_protocol() {
        // The example of the DSSE protocol document.
        assert_eq!(
            pre_authentication_encoding("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn an_envelope_verifies_only_over_its_encoding_and_type() {
        let digest = Digest::of(b"image");
        let statement = Statement::about(
            "registry.example/app",
            &digest,
            "https://example/p",
            serde_json::json!({}),
        );
        let body = serde_json::to_vec(&statement).expect("serialize");
        let encoded = pre_authentication_encoding(PAYLOAD_TYPE, &body);
        // A "signature" that is the message itself, checked by equality.
        let envelope = Envelope::new(&body, &encoded);
        let verified = envelope
            .verified_statement(|message, signature| message == signature)
            .expect("verifies");
        assert!(verified.names_digest(&digest));
        assert!(!verified.names_digest(&Digest::of(b"other")));
        let mut older = statement.clone();
        older.kind = STATEMENT_TYPE_V01.to_owned();
        let body_v01 = serde_json::to_vec(&older).expect("serialize");
        let signed_v01 = Envelope::new(
            &body_v01,
            &pre_authentication_encoding(PAYLOAD_TYPE, &body_v01),
        );
        assert_eq!(
            signed_v01
                .verified_statement(|message, signature| message == signature)
                .map(|s| s.kind),
            Some(STATEMENT_TYPE_V01.to_owned()),
            "cosign attest's v0.1 statements are read"
        );
        let mut other = statement.clone();
        other.kind = "https://example/Statement".to_owned();
        let body_other = serde_json::to_vec(&other).expect("serialize");
        let signed_other = Envelope::new(
            &body_other,
            &pre_authentication_encoding(PAYLOAD_TYPE, &body_other),
        );
        assert!(
            signed_other
                .verified_statement(|message, signature| message == signature)
                .is_none()
        );
        let mut retyped = envelope.clone();
        retyped.payload_type = "application/json".to_owned();
        assert!(
            retyped
                .verified_statement(|message, signature| message == signature)
                .is_none()
        );
        assert!(
            envelope
                .verified_statement(|message, _| message == body.as_slice())
                .is_none()
        );
    }
}
