//! A harness for tests against real registries: CNCF distribution started on loopback
//! ([`registry`]), a bearer-token issuer of its own ([`token`]), images built from nothing and
//! pushed with raw HTTP, independently of the promoter's client ([`image`], [`http`]), and
//! `skopeo` as an independent reader ([`skopeo`]). Also: a recording HTTP server for webhooks
//! and fake APIs ([`receiver`]), a scriptable fake registry for failures and attacks
//! ([`fake_registry`]), and a test re-run in a child process with its own environment
//! ([`child`]). A fault-injecting proxy in front of a real registry ([`fault_proxy`]) makes
//! it answer 429s, 503s, cut connections and stalls on a seeded fraction of requests.
//!
//! Needs `docker-registry`, `skopeo` and `htpasswd` on the machine: `infra/local/test.sh`
//! installs them (through `infra/local/stack.sh install`).
//!
//! Every call is safe inside an async test: blocking HTTP runs on a helper thread.

pub mod child;
pub mod fake_registry;
pub mod fault_proxy;
pub mod federation;
pub mod gcs;
pub mod http;
pub mod image;
pub mod lambda;
pub mod moto;
pub mod receiver;
pub mod registry;
pub mod seaweed;
pub mod server;
pub mod skopeo;
pub mod token;

pub use http::{Credentials, RawClient, Response};
pub use image::{
    Image, Index, IndexFormat, Layer, ManifestFormat, Platform, Pushed, Seeder, layer,
    multi_platform, push_multi, push_single, single,
};
pub use registry::{RegistryBuilder, TestRegistry};
pub use skopeo::{digest_of, inspect_raw, try_inspect_raw};
pub use token::TokenIssuer;

/// Runs `f` on a helper thread and waits for it, so that blocking clients (`reqwest::blocking`
/// panics inside a Tokio runtime) can be used from async tests. Panics propagate.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
