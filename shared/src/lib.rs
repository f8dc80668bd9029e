//! The image promoter's library: everything that is not an entry point.
//!
//! The promoter copies exactly the digests named in reviewed promotion manifests from a staging
//! registry to every production registry. This crate holds the pieces the CLI and the Lambda
//! functions share:
//!
//! - [`reference`](mod@reference): image names, tags and digests, parsed and validated (no IO);
//! - [`manifest`]: promotion manifests (plain files and thin-manifest trees), loaded from disk
//!   and validated with `FILE:LINE:COL` diagnostics;
//! - [`plan`]: the pure planner that turns manifests (and optionally the manifests before a
//!   change) into promotion units, plus its text, JSON and Markdown renderings;
//! - [`files`]: reading local files that must be regular and bounded (manifests, the state folder);
//! - [`http`]: the one HTTP transport (timeouts, capped reads, no downgrade, one retry policy);
//! - [`registry`]: the OCI distribution client (auth, retries, per-host limits);
//! - [`copy`]: the transfer engine that copies planned units between registries;
//! - [`events`]: decoders of the events that trigger the functions (webhooks, notifications);
//! - [`sign`]: cosign-compatible signatures (keys, payloads, signature images);
//! - [`policy`](mod@policy): checking staging digests against their project's policy
//!   (signatures, SLSA provenance, vulnerability scans);
//! - [`snapshot`]: what a registry holds under a prefix, in the `images.yaml` format or CSV;
//! - [`queue`]: the queues chaining the steps (SQS, in-process);
//! - [`state`]: runs, units, leases and the desired state, in object storage;
//! - [`source`]: fetching manifests (GitHub tarballs, object-store prefixes) to a local folder;
//! - [`audit`]: judging production pushes against the desired state;
//! - [`drift`]: how production differs from the manifests, read per repository (reconcile);
//! - [`notify`]: notification sinks (Slack, signed webhooks, GitHub commit status, SNS);
//! - [`steps`]: the step handlers the CLI and the functions run.

pub mod audit;
pub mod copy;
pub mod drift;
pub mod error_chain;
pub mod events;
pub mod files;
pub mod http;
pub mod manifest;
pub mod notify;
pub mod plan;
pub mod policy;
pub mod queue;
pub mod reference;
pub mod registry;
pub mod sign;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod steps;
