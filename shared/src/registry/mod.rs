//! OCI distribution client: manifests, blobs, tags, authentication, retries and rate limits.
//!
//! The transfer engine is the product's core and needs control over every request (exact
//! manifest bytes and Content-Type, manifest HEAD, mount with fallback, two-request uploads,
//! `Retry-After`), which the `oci-client` crate does not give; so this is a thin client of our
//! own on `reqwest` (rustls). Plain HTTP is used only for loopback hosts and hosts marked
//! insecure.

pub mod auth;
mod blobs;
mod client;
pub mod ecr_quota;
mod error;
pub mod limits;
mod listing;
mod loopback;
mod manifests;

pub use blobs::{Download, UploadStart};
pub use client::{Client, ClientConfig, RequestCounts};
pub use error::RegistryError;
pub use listing::{ListedManifest, RepositoryListing};
pub use loopback::is_loopback;
pub use manifests::{Manifest, ManifestHead, media_type};
