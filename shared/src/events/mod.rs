//! Decoders for the events that trigger the functions, pure (no IO): GitHub push webhooks
//! (with their HMAC signature), and registry push notifications from CNCF distribution,
//! Google Artifact Registry / GCR (Pub/Sub push) and Amazon ECR (EventBridge).
//!
//! Every registry notification decodes to the same [`RegistryEvent`]s, which the auditor
//! compares with the desired state.

mod github;
mod registry;

pub use github::{GithubError, PushEvent, verify_signature};
pub use registry::{
    Action, RegistryEvent, RegistryEventError, from_distribution, from_ecr_eventbridge,
    from_gcr_pubsub,
};
