//! OCI distribution client: manifests, blobs, tags, authentication, retries and rate limits.

pub mod auth;
