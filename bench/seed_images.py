#!/usr/bin/env python3
"""Seed a registry with deterministic images for bench/promote-vs-skopeo.sh, over the raw
registry HTTP API (POST upload + PUT ?digest=, cross-repository mount, manifest PUT).

    seed_images.py images --registry HOST:PORT [--count 200] [--layer-kib 300] --list FILE
        COUNT single-platform OCI images, each tagged `v1` in its own repository
        `bench/img-NNN`: 3 layers (one base layer shared by all, pushed once and mounted into
        the other repositories, + 2 unique layers) and a config. Layers are gzip'd tars (mtime
        0) holding LAYER_KIB KiB of seeded pseudo-random bytes. Writes "REPOSITORY DIGEST" per
        image to FILE.
    seed_images.py big --registry HOST:PORT [--repo bench/big] [--mib 1024]
        One image whose single layer is a gzip'd tar (stored, level 0) of a MIB MiB file: a
        1 MiB pseudo-random block repeated with a counter. Generated twice while streaming
        (once to hash, once to upload), never held in memory.
    seed_images.py check --registry HOST:PORT --list FILE
        HEADs REPOSITORY:v1 for each line of FILE; fails unless each serves DIGEST.

On success one line of counts is printed to stdout, as KEY=VALUE pairs, e.g.
    images=200 blobs=601 unique_blob_bytes=... manifest_bytes=...

Python 3 standard library only (3.9+). Everything is deterministic: two runs push the same
digests.
"""

import argparse
import gzip
import hashlib
import http.client
import io
import json
import random
import sys
import tarfile
import urllib.parse
import zlib

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
TAG = "v1"


class Registry:
    """A keep-alive HTTP connection to a plain-HTTP registry."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=600)
        self.requests = 0

    def request(self, method, path, body=None, headers=None, expect=(200,)):
        self.requests += 1
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        data = response.read()
        if response.status not in expect:
            raise SystemExit(f"{method} {path}: HTTP {response.status}: {data[:300]!r}")
        return response

    def start_upload(self, repo, mount=None, source=None):
        """POST an upload (or a mount); returns the session path, or None when mounted."""
        path = f"/v2/{repo}/blobs/uploads/"
        if mount:
            path += "?" + urllib.parse.urlencode({"mount": mount, "from": source})
        response = self.request("POST", path, headers={"Content-Length": "0"}, expect=(201, 202))
        if response.status == 201:
            return None
        location = urllib.parse.urlsplit(response.getheader("Location"))
        return location.path + ("?" + location.query if location.query else "")

    @staticmethod
    def with_digest(session, digest):
        return session + ("&" if "?" in session else "?") + "digest=" + urllib.parse.quote(digest)

    def put_blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        session = self.start_upload(repo)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        self.request("PUT", self.with_digest(session, digest), data, headers, expect=(201,))
        return digest

    def put_blob_stream(self, repo, digest, size, chunks):
        """PUT ?digest= with a streamed body of SIZE bytes from the CHUNKS iterator."""
        session = self.start_upload(repo)
        self.requests += 1
        self.conn.putrequest("PUT", self.with_digest(session, digest))
        self.conn.putheader("Content-Type", "application/octet-stream")
        self.conn.putheader("Content-Length", str(size))
        self.conn.endheaders()
        for chunk in chunks:
            self.conn.send(chunk)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 201:
            raise SystemExit(f"PUT blob {digest} to {repo}: HTTP {response.status}: {data[:300]!r}")

    def mount(self, repo, digest, source):
        if self.start_upload(repo, mount=digest, source=source) is not None:
            raise SystemExit(f"mounting {digest} into {repo} from {source} was refused")

    def put_manifest(self, repo, reference, manifest):
        body = json.dumps(manifest, separators=(",", ":")).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        headers = {"Content-Type": OCI_MANIFEST, "Content-Length": str(len(body))}
        response = self.request("PUT", f"/v2/{repo}/manifests/{reference}", body, headers, expect=(201,))
        served = response.getheader("Docker-Content-Digest")
        if served != digest:
            raise SystemExit(f"{repo}:{reference}: pushed {digest}, registry says {served}")
        return digest, len(body)


def descriptor(media_type, digest, size):
    return {"mediaType": media_type, "digest": digest, "size": size}


def small_layer(seed, kib):
    """A gzip'd tar (mtime 0, root-owned) with one file of KIB KiB of seeded random bytes."""
    content = random.Random(seed).randbytes(kib * 1024)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/{seed}.bin")
        info.size, info.mtime, info.mode = len(content), 0, 0o644
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    blob = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    return blob, "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def config_blob(name, diff_ids):
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": [f"/data/{name}"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "seed_images.py"} for _ in diff_ids],
    }
    return json.dumps(config, separators=(",", ":")).encode()


def manifest_of(config, layers):
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}


def cmd_images(args):
    registry = Registry(args.registry)
    base_blob, base_diff = small_layer("base", args.layer_kib)
    base_digest = "sha256:" + hashlib.sha256(base_blob).hexdigest()
    base_home = None
    unique_bytes = len(base_blob)
    blobs = 1
    manifest_bytes = 0
    lines = []
    for n in range(args.count):
        repo = f"bench/img-{n:03d}"
        if base_home is None:
            registry.put_blob(repo, base_blob)
            base_home = repo
        else:
            registry.mount(repo, base_digest, base_home)
        layers = [descriptor(OCI_LAYER, base_digest, len(base_blob))]
        diff_ids = [base_diff]
        for l in (1, 2):
            blob, diff_id = small_layer(f"img-{n:03d}-layer-{l}", args.layer_kib)
            layers.append(descriptor(OCI_LAYER, registry.put_blob(repo, blob), len(blob)))
            diff_ids.append(diff_id)
            unique_bytes += len(blob)
        config = config_blob(f"img-{n:03d}", diff_ids)
        config_desc = descriptor(OCI_CONFIG, registry.put_blob(repo, config), len(config))
        unique_bytes += len(config)
        blobs += 3
        digest, size = registry.put_manifest(repo, TAG, manifest_of(config_desc, layers))
        manifest_bytes += size
        lines.append(f"{repo} {digest}\n")
    with open(args.list, "w", encoding="utf-8") as f:
        f.writelines(lines)
    print(
        f"images={args.count} blobs={blobs} unique_blob_bytes={unique_bytes} "
        f"manifest_bytes={manifest_bytes} seed_requests={registry.requests}"
    )


BLOCK = 1 << 20


def big_tar_gz(mib):
    """Yields (gzip chunk, uncompressed tar chunk) pairs for a tar of one MIB MiB file,
    compressed with gzip level 0 (stored blocks: fast, and random data would not shrink)."""
    block = random.Random("big-layer").randbytes(BLOCK)
    compressor = zlib.compressobj(0, zlib.DEFLATED, 31)  # wbits 31: gzip wrapper, mtime 0
    info = tarfile.TarInfo("data/big.bin")
    info.size, info.mtime, info.mode = mib * BLOCK, 0, 0o644
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    yield compressor.compress(header), header
    for i in range(mib):
        chunk = i.to_bytes(8, "big") + block[8:]
        yield compressor.compress(chunk), chunk
    # The file is a multiple of 512 bytes: no padding; then the two zero end-of-archive blocks.
    trailer = bytes(1024)
    yield compressor.compress(trailer) + compressor.flush(), trailer


def cmd_big(args):
    registry = Registry(args.registry)
    compressed, uncompressed, size = hashlib.sha256(), hashlib.sha256(), 0
    for gz, raw in big_tar_gz(args.mib):
        compressed.update(gz)
        uncompressed.update(raw)
        size += len(gz)
    layer_digest = "sha256:" + compressed.hexdigest()
    registry.put_blob_stream(args.repo, layer_digest, size, (gz for gz, _ in big_tar_gz(args.mib) if gz))
    config = config_blob("big", ["sha256:" + uncompressed.hexdigest()])
    config_desc = descriptor(OCI_CONFIG, registry.put_blob(args.repo, config), len(config))
    layers = [descriptor(OCI_LAYER, layer_digest, size)]
    digest, manifest_size = registry.put_manifest(args.repo, TAG, manifest_of(config_desc, layers))
    print(
        f"repository={args.repo} digest={digest} layer_bytes={size} "
        f"unique_blob_bytes={size + len(config)} manifest_bytes={manifest_size}"
    )


def cmd_check(args):
    registry = Registry(args.registry)
    checked = 0
    with open(args.list, encoding="utf-8") as f:
        for line in f:
            repo, digest = line.split()
            response = registry.request(
                "HEAD", f"/v2/{repo}/manifests/{TAG}", headers={"Accept": OCI_MANIFEST}
            )
            served = response.getheader("Docker-Content-Digest")
            if served != digest:
                raise SystemExit(f"{args.registry}/{repo}:{TAG} serves {served}, expected {digest}")
            checked += 1
    print(f"checked={checked}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    images = sub.add_parser("images", help="COUNT small images sharing a base layer")
    images.add_argument("--registry", required=True, help="HOST:PORT (plain HTTP)")
    images.add_argument("--count", type=int, default=200)
    images.add_argument("--layer-kib", type=int, default=300)
    images.add_argument("--list", required=True, help="where to write REPOSITORY DIGEST lines")
    big = sub.add_parser("big", help="one image with a big layer, streamed")
    big.add_argument("--registry", required=True, help="HOST:PORT (plain HTTP)")
    big.add_argument("--repo", default="bench/big")
    big.add_argument("--mib", type=int, default=1024)
    check = sub.add_parser("check", help="verify REPOSITORY:v1 digests")
    check.add_argument("--registry", required=True, help="HOST:PORT (plain HTTP)")
    check.add_argument("--list", required=True)
    args = ap.parse_args()
    if args.command in ("images",) and not 1 <= args.count <= 10000:
        ap.error("--count must be within 1..10000")
    {"images": cmd_images, "big": cmd_big, "check": cmd_check}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
