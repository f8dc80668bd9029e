"""Independent maker of in-toto attestations (not the promoter's code), for policy tests.

Usage:
  make_attestation.py keygen PREFIX
      Writes PREFIX.key (PKCS#8 PEM) and PREFIX.pub (SubjectPublicKeyInfo PEM), ECDSA P-256.
  make_attestation.py sign-image KEY REPOSITORY DIGEST
      Prints cosign 2's legacy signature of DIGEST as JSON: {"payload": the simple-signing
      payload, "signature": base64 ECDSA P-256 SHA-256 of the payload's bytes}, for a
      `sha256-<hex>.sig` image layer.
  make_attestation.py sign KEY DIGEST PREDICATE_TYPE PREDICATE_JSON_FILE [STATEMENT_TYPE]
      Prints a DSSE envelope (JSON) around an in-toto v1 statement about DIGEST
      (`sha256:<hex>`) with the given predicate, signed with Python's `cryptography`: ECDSA
      P-256 SHA-256 over the DSSE pre-authentication encoding
      `DSSEv1 <len(type)> <type> <len(body)> <body>`, as cosign does. STATEMENT_TYPE defaults
      to https://in-toto.io/Statement/v1 (`cosign attest` writes .../v0.1).
"""

import base64
import json
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PAYLOAD_TYPE = "application/vnd.in-toto+json"


def keygen(prefix):
    key = ec.generate_private_key(ec.SECP256R1())
    with open(prefix + ".key", "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(prefix + ".pub", "wb") as out:
        out.write(
            key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )


def load_key(key_file):
    with open(key_file, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def sign_image(key_file, repository, digest):
    payload = {
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    signature = load_key(key_file).sign(body, ec.ECDSA(hashes.SHA256()))
    print(json.dumps({"payload": body.decode(), "signature": base64.b64encode(signature).decode()}))


def pae(payload_type, body):
    head = "DSSEv1 %d %s %d " % (len(payload_type.encode()), payload_type, len(body))
    return head.encode() + body


def sign(key_file, digest, predicate_type, predicate_file,
         statement_type="https://in-toto.io/Statement/v1"):
    key = load_key(key_file)
    with open(predicate_file) as f:
        predicate = json.load(f)
    algorithm, hex_digest = digest.split(":", 1)
    statement = {
        "_type": statement_type,
        "subject": [{"name": "", "digest": {algorithm: hex_digest}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    body = json.dumps(statement, separators=(",", ":")).encode()
    signature = key.sign(pae(PAYLOAD_TYPE, body), ec.ECDSA(hashes.SHA256()))
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
    }
    print(json.dumps(envelope))


if __name__ == "__main__":
    if sys.argv[1:2] == ["keygen"] and len(sys.argv) == 3:
        keygen(sys.argv[2])
    elif sys.argv[1:2] == ["sign-image"] and len(sys.argv) == 5:
        sign_image(*sys.argv[2:])
    elif sys.argv[1:2] == ["sign"] and len(sys.argv) in (6, 7):
        sign(*sys.argv[2:])
    else:
        sys.exit(__doc__)
