#!/usr/bin/env python3
"""Generate a Kubernetes-scale thin-manifest tree for benchmarking `promoter`.

The tree is shaped like registry.k8s.io (kubernetes/k8s.io, registry.k8s.io/):

    OUT/manifests/<project>/promoter-manifest.yaml   source + destination registries
    OUT/images/<project>/images.yaml                 images, each with a dmap of digests

Defaults: 500 projects, 46,000 digests in all, 20 destination registries per project, so
46,000 x 20 = 920,000 (digest, destination) edges. Everything is deterministic (digests are
sha256 of a counter), so two runs with the same flags write byte-identical trees.

With --base-fraction F a second tree (the "base", as on the target branch before a change) is
written to --base-out (default OUT-base): the same registries, minus the last F of each
project's digests, so that `promoter plan OUT --base OUT-base` plans only what was "added".

On success one line of counts is printed to stdout, as KEY=VALUE pairs:
    projects=500 images=... digests=46000 destinations=20 edges=920000 [base_digests=... added_edges=...]

Python 3 standard library only.
"""

import argparse
import hashlib
import os
import sys

SERVICE_ACCOUNT = "k8s-infra-gcr-promoter@k8s-artifacts-prod.iam.gserviceaccount.com"
SOURCE = "us-central1-docker.pkg.dev/k8s-staging-images/{project}"
DESTINATION = "{region}-docker.pkg.dev/k8s-artifacts-prod/images/{project}"

# The Artifact Registry regions registry.k8s.io serves from (as in the real manifests).
REGIONS = [
    "asia-east1",
    "asia-south1",
    "asia-northeast1",
    "asia-northeast2",
    "australia-southeast1",
    "europe-north1",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west8",
    "europe-west9",
    "europe-west10",
    "southamerica-west1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
]

# Project name stems, combined with a counter to give distinct, realistic-looking names.
STEMS = [
    "coredns", "kueue", "ingress-nginx", "metrics-server", "kube-state-metrics",
    "cluster-api", "csi", "dns", "external-dns", "gateway-api", "kind", "kops",
    "provider-aws", "provider-azure", "provider-gcp", "sig-storage", "networking",
    "autoscaling", "descheduler", "node-problem-detector", "scheduler-plugins",
    "jobset", "kwok", "etcd", "pause", "kubernetes", "cri-tools", "nfd", "sig-windows",
    "secrets-store-csi", "kubebuilder", "e2e-test-images", "multitenancy", "build-image",
]

# Image name patterns within a project; some contain a slash, as in the real manifests.
IMAGE_PATTERNS = [
    "{p}",
    "charts/{p}",
    "{p}-controller",
    "{p}/webhook",
    "{p}-operator",
    "{p}-bundle",
]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output directory (created; must be empty or absent)")
    ap.add_argument("--projects", type=int, default=500, help="number of projects (500)")
    ap.add_argument("--digests", type=int, default=46000, help="digests in all (46000)")
    ap.add_argument(
        "--destinations", type=int, default=20, help="destination registries per project (20)"
    )
    ap.add_argument(
        "--base-fraction",
        type=float,
        default=None,
        metavar="F",
        help="also write a base tree without the last F (0 <= F < 1) of each project's digests",
    )
    ap.add_argument("--base-out", default=None, help="base tree directory (default OUT-base)")
    args = ap.parse_args(argv)
    if args.projects < 1:
        ap.error("--projects must be at least 1")
    if args.digests < args.projects:
        ap.error("--digests must be at least --projects (every project needs a digest)")
    if args.destinations < 1:
        ap.error("--destinations must be at least 1")
    if args.base_fraction is not None and not 0 <= args.base_fraction < 1:
        ap.error("--base-fraction must be in [0, 1)")
    if args.base_out is None:
        args.base_out = args.out.rstrip("/") + "-base"
    return args


def regions(n):
    """n distinct region names: the real ones first, then synthetic ones."""
    out = list(REGIONS[:n])
    i = 1
    while len(out) < n:
        out.append(f"synthetic-region{i}")
        i += 1
    return out


def project_name(i):
    return f"{STEMS[i % len(STEMS)]}-{i:04d}"


def digest(counter):
    return "sha256:" + hashlib.sha256(f"promoter-bench-digest-{counter}".encode()).hexdigest()


def build_model(n_projects, n_digests):
    """[(project, [(image, [(digest, [tags])])])], deterministic.

    Digests are spread over projects unevenly (like the real registry: a few big projects,
    many small ones) but always summing to n_digests.
    """
    # Uneven but deterministic weights 1..9, then a largest-remainder split.
    weights = [1 + (i * 7919) % 9 for i in range(n_projects)]
    total_w = sum(weights)
    spare = n_digests - n_projects  # every project gets one digest first
    shares = [spare * w // total_w for w in weights]
    left = spare - sum(shares)
    for i in sorted(range(n_projects), key=lambda i: (-(spare * weights[i] % total_w), i))[:left]:
        shares[i] += 1
    counts = [1 + s for s in shares]
    assert sum(counts) == n_digests

    counter = 0
    model = []
    for p in range(n_projects):
        name = project_name(p)
        n_images = min(1 + (p * 31) % 6, counts[p])  # 1..6 images
        per_image = [counts[p] // n_images] * n_images
        for k in range(counts[p] % n_images):
            per_image[k] += 1
        images = []
        for k in range(n_images):
            entries = []
            for j in range(per_image[k]):
                tag = f"v{1 + j // 100}.{(j // 10) % 10}.{j % 10}"
                tags = [tag]
                if counter % 7 == 3:  # some digests carry two tags
                    tags.append(f"{tag}-{('linux', 'debian', 'distroless')[counter % 3]}")
                entries.append((digest(counter), tags))
                counter += 1
            images.append((IMAGE_PATTERNS[k].format(p=name), entries))
        model.append((name, images))
    return model


def write_file(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def manifest_text(p, project, dest_regions):
    lines = [f"# google group for {SOURCE.format(project=project)} is k8s-infra-staging-{project}@kubernetes.io"]
    lines.append("registries:")
    lines.append(f"- name: {SOURCE.format(project=project)}")
    lines.append("  src: true")
    for region in dest_regions:
        lines.append(f"- name: {DESTINATION.format(region=region, project=project)}")
        lines.append(f"  service-account: {SERVICE_ACCOUNT}")
    if p % 5 == 0:  # the deprecated field, still found in many real manifests
        lines.append(f'imagesPath: "../../images/{project}/images.yaml"')
    return "\n".join(lines) + "\n"


def images_text(images):
    lines = []
    for image, entries in images:
        if not entries:
            continue
        lines.append(f"- name: {image}")
        lines.append("  dmap:")
        for dg, tags in entries:
            tag_list = ", ".join(f'"{t}"' for t in tags)
            lines.append(f'    "{dg}": [{tag_list}]')
    return "\n".join(lines) + "\n"


def write_tree(out, model, dest_regions, keep=None):
    """Writes the tree; keep(project_index, n) -> how many of the project's digests to keep."""
    if os.path.exists(out) and os.listdir(out):
        sys.exit(f"error: {out} exists and is not empty")
    digests = images = 0
    for p, (project, project_images) in enumerate(model):
        write_file(
            os.path.join(out, "manifests", project, "promoter-manifest.yaml"),
            manifest_text(p, project, dest_regions),
        )
        if keep is not None:
            total = sum(len(e) for _, e in project_images)
            left = keep(total)
            trimmed = []
            for image, entries in project_images:
                trimmed.append((image, entries[:left]))
                left -= len(trimmed[-1][1])
            project_images = trimmed
        written = [(i, e) for i, e in project_images if e]
        images += len(written)
        digests += sum(len(e) for _, e in written)
        write_file(os.path.join(out, "images", project, "images.yaml"), images_text(written))
    return images, digests


def main(argv):
    args = parse_args(argv)
    dest_regions = regions(args.destinations)
    model = build_model(args.projects, args.digests)
    n_images, n_digests = write_tree(args.out, model, dest_regions)
    counts = {
        "projects": args.projects,
        "images": n_images,
        "digests": n_digests,
        "destinations": args.destinations,
        "edges": n_digests * args.destinations,
    }
    if args.base_fraction is not None:
        f = args.base_fraction
        _, base_digests = write_tree(
            args.base_out, model, dest_regions, keep=lambda n: n - round(n * f)
        )
        counts["base_digests"] = base_digests
        counts["added_edges"] = (n_digests - base_digests) * args.destinations
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
