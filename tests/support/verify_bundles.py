"""Independent verifier of sigstore bundle referrers (not the promoter's code).

Usage: verify_bundles.py REGISTRY REPOSITORY DIGEST PUBLIC_KEY_PEM

Reads the referrers of DIGEST in REPOSITORY on the plain-HTTP REGISTRY (the OCI referrers API,
else the `sha256-<hex>` fallback tag), and for each referrer holding one sigstore bundle layer,
checks the bundle's DSSE envelope with Python's `cryptography`: ECDSA P-256 SHA-256 over the
DSSE pre-authentication encoding, the payload an in-toto v1 statement whose subject digest is
DIGEST. Prints one JSON object: predicate type -> number of bundles that verify, plus
"rejected" (bundles that do not) and "hints" (the keys' hints found).
"""

import base64
import hashlib
import json
import sys
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFESTS = INDEX + ", application/vnd.oci.image.manifest.v1+json"


def get(url, accept=None):
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, "", b""


def referrers(base, digest):
    status, content_type, body = get(f"{base}/referrers/{digest}", INDEX)
    if status == 200 and content_type.startswith(INDEX):
        return json.loads(body).get("manifests", [])
    status, _, body = get(f"{base}/manifests/sha256-{digest.split(':')[1]}", MANIFESTS)
    if status != 200:
        return []
    return json.loads(body).get("manifests", [])


def pae(payload_type, body):
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(body), body)


def main():
    registry, repository, digest, pem = sys.argv[1:5]
    key = serialization.load_pem_public_key(open(pem, "rb").read())
    base = f"http://{registry}/v2/{repository}"
    counts = {"rejected": 0, "hints": []}
    for entry in referrers(base, digest):
        status, _, raw = get(f"{base}/manifests/{entry['digest']}", MANIFESTS)
        if status != 200 or "sha256:" + hashlib.sha256(raw).hexdigest() != entry["digest"]:
            continue
        manifest = json.loads(raw)
        layers = manifest.get("layers", [])
        if len(layers) != 1 or not layers[0]["mediaType"].startswith("application/vnd.dev.sigstore.bundle"):
            continue
        status, _, blob = get(f"{base}/blobs/{layers[0]['digest']}")
        if "sha256:" + hashlib.sha256(blob).hexdigest() != layers[0]["digest"]:
            counts["rejected"] += 1
            continue
        bundle = json.loads(blob)
        counts["hints"].append(bundle["verificationMaterial"]["publicKey"]["hint"])
        envelope = bundle["dsseEnvelope"]
        body = base64.b64decode(envelope["payload"])
        try:
            if len(envelope["signatures"]) != 1:
                raise InvalidSignature()
            signature = base64.b64decode(envelope["signatures"][0]["sig"])
            key.verify(signature, pae(envelope["payloadType"], body), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            counts["rejected"] += 1
            continue
        statement = json.loads(body)
        subject_ok = any(s["digest"].get("sha256") == digest.split(":")[1] for s in statement["subject"])
        if (
            envelope["payloadType"] != "application/vnd.in-toto+json"
            or statement["_type"] != "https://in-toto.io/Statement/v1"
            or not subject_ok
            or manifest.get("subject", {}).get("digest") != digest
        ):
            counts["rejected"] += 1
            continue
        predicate_type = statement["predicateType"]
        counts[predicate_type] = counts.get(predicate_type, 0) + 1
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
