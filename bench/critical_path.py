#!/usr/bin/env python3
"""The round trips on the critical path of a run, from bench/delay_proxy.py traces.

    critical_path.py --one-way-ms 15 [--chain FILE] [--kinds FILE] LABEL=TRACE...

Each TRACE is a delay proxy's --trace file (one per registry the run spoke to, all on the
same monotonic clock), LABEL a name for it in the chain (e.g. staging, production).

Every request turn is a node costing one round trip; so is every TCP connection (its
handshake, which the proxy charges as one round trip before the first bytes leave). A request
depends on its connection's handshake and on every request answered (first byte of the
answer written back to the client) before it began; a handshake depends on every request
answered before the client connected. The critical path is the longest chain of such
dependencies, so it counts round trips that had to happen one after the other; round trips
the client overlapped (parallel blobs, parallel connections) count once. Dependencies are
inferred from times only, so a request that merely happened to begin after another's answer
counts as waiting for it: the count is an upper bound of the client's true dependency
chain, never below it.

Prints one line of KEY=VALUE pairs to stdout:
    round_trips=K connections=C requests=R span_s=S
(span_s: first connection to last answer byte). --chain FILE writes the chain, one round trip
a line, with times relative to the first connection; --kinds FILE one line counting the
chain's round trips by kind of request (e.g. "40 GET tags/list; 12 (TCP handshake); ...").
"""

import argparse
import collections
import json
import re
import sys

# Registry API paths, most specific first.
KINDS = [
    (re.compile(r"^/v2/?$"), "/v2/"),
    (re.compile(r"/manifests/sha256:"), "manifests/<digest>"),
    (re.compile(r"/manifests/"), "manifests/<tag>"),
    (re.compile(r"/tags/list"), "tags/list"),
    (re.compile(r"/referrers/"), "referrers/<digest>"),
    (re.compile(r"/blobs/uploads/\?(.*&)?mount="), "blobs/uploads/?mount="),
    (re.compile(r"/blobs/uploads/$"), "blobs/uploads/"),
    (re.compile(r"/blobs/uploads/"), "blobs/uploads/<session>"),
    (re.compile(r"/blobs/"), "blobs/<digest>"),
]


def kind_of(text):
    """"GET tags/list" for a request line, the text itself for a handshake or non-HTTP."""
    parts = text.split(" ")
    if len(parts) < 2 or not parts[1].startswith("/"):
        return text
    for pattern, kind in KINDS:
        if pattern.search(parts[1]):
            return f"{parts[0]} {kind}"
    return f"{parts[0]} other"


def load(specs):
    turns = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"expected LABEL=TRACE, got {spec!r}")
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    turn = json.loads(line)
                    turn["label"] = label
                    turns.append(turn)
    return turns


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--one-way-ms", type=float, required=True)
    ap.add_argument("--chain", help="write the critical path here, one round trip a line")
    ap.add_argument("--kinds", help="write the critical path's round trips by kind here")
    ap.add_argument("traces", nargs="+", metavar="LABEL=TRACE")
    args = ap.parse_args()
    delay = args.one_way_ms / 1000.0
    turns = load(args.traces)
    if not turns:
        raise SystemExit("no request in the traces")

    # Nodes: (start, ready, label, text, connection key); a handshake is ready one round trip
    # after the client connected.
    nodes = []
    handshake_of = {}
    for turn in turns:
        key = (turn["label"], turn["conn"])
        if key not in handshake_of:
            handshake_of[key] = len(nodes)
            nodes.append(
                {
                    "start": turn["accepted"],
                    "ready": turn["accepted"] + 2 * delay,
                    "label": turn["label"],
                    "text": "(TCP handshake)",
                    "answered": True,
                }
            )
    requests = []
    for turn in turns:
        answered = turn["answered"]
        requests.append(len(nodes))
        nodes.append(
            {
                "start": turn["start"],
                "ready": answered if answered is not None else turn["start"],
                "label": turn["label"],
                "text": turn["line"] + ("" if answered is not None else " (never answered)"),
                "answered": answered is not None,
                "handshake": handshake_of[(turn["label"], turn["conn"])],
            }
        )

    # Longest chain, in order of start (every predecessor starts before its successor).
    order = sorted(range(len(nodes)), key=lambda i: (nodes[i]["start"], nodes[i]["ready"]))
    depth = [0] * len(nodes)
    parent = [None] * len(nodes)
    # Only answered requests can be waited for through time; a handshake only by its own
    # connection's requests (the client never sees the proxy's virtual handshake end).
    answered_requests = sorted(
        (i for i in requests if nodes[i]["answered"]), key=lambda i: nodes[i]["ready"]
    )
    for i in order:
        node = nodes[i]
        best, best_parent = 0, None
        for j in answered_requests:
            if nodes[j]["ready"] > node["start"]:
                break
            if depth[j] > best:
                best, best_parent = depth[j], j
        h = node.get("handshake")
        if h is not None and depth[h] > best:
            best, best_parent = depth[h], h
        depth[i] = best + 1
        parent[i] = best_parent

    last = max(range(len(nodes)), key=lambda i: (depth[i], nodes[i]["ready"]))
    chain = []
    i = last
    while i is not None:
        chain.append(i)
        i = parent[i]
    chain.reverse()
    t0 = min(n["start"] for n in nodes)
    span = max((t["end"] or t["start"]) for t in turns) - t0

    if args.chain:
        with open(args.chain, "w", encoding="utf-8") as f:
            for k, i in enumerate(chain, 1):
                n = nodes[i]
                f.write(
                    f"{k:3d}  +{n['start'] - t0:7.3f}s -> +{n['ready'] - t0:7.3f}s  "
                    f"{n['label']:<11} {n['text']}\n"
                )
    if args.kinds:
        counts = collections.Counter(kind_of(nodes[i]["text"]) for i in chain)
        with open(args.kinds, "w", encoding="utf-8") as f:
            f.write("; ".join(f"{n} {k}" for k, n in counts.most_common()) + "\n")
    print(
        f"round_trips={depth[last]} connections={len(handshake_of)} "
        f"requests={len(requests)} span_s={span:.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
