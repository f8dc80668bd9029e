//! The one HTTP transport: every client the promoter makes (registries, token endpoints, GitHub,
//! Google Cloud Storage, notification sinks) comes from [`client`], with the same timeouts and
//! redirect rules; every answer is read through [`read_capped`] or [`read_prefix`]; every retry
//! follows [`retry::RetryPolicy`].
//!
//! What the transport guarantees, whoever calls it:
//!
//! - **Nothing hangs.** A connection must open within [`Timeouts::connect`]; an answer that sends
//!   nothing for [`Timeouts::idle`] fails; a whole exchange (headers and body) must end within
//!   [`Timeouts::request`], except transfers that opt into [`Timeouts::transfer`] (blobs,
//!   tarballs), which a trickling sender still cannot hold forever.
//! - **No downgrade.** A redirect from `https` to `http` is refused (reqwest already drops the
//!   `Authorization` header on a redirect to another host).
//! - **Nothing unbounded.** Bodies are read with a cap per kind ([`limits`]), checked against
//!   `Content-Length` first and counted as they stream.
//!
//! Credentials are the caller's to attach; [`Origin`] is how a caller decides whether a URL
//! (an upload `Location`, a `Link`, a token realm) belongs to the host its credentials are for.

mod body;
mod origin;
pub mod retry;

use std::time::Duration;

pub use body::{BodyError, limits, read_capped, read_json, read_prefix};
pub use origin::Origin;

/// How long the transport waits, per phase of a request.
///
/// The defaults are generous for healthy registries (a manifest or token answer takes well
/// under a second; a 1 GiB layer between regions a few minutes) and short enough that a dead
/// peer is reported in about a minute rather than at the Lambda's timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a TCP (and TLS) connection. Default 10 s.
    pub connect: Duration,
    /// Without receiving a single byte (headers or body). Default 30 s.
    pub idle: Duration,
    /// A whole exchange, headers and body, for everything but transfers. Default 60 s; the
    /// CLI's `--request-timeout` and `PROMOTER_REQUEST_TIMEOUT`.
    pub request: Duration,
    /// A whole blob or archive transfer. Default 30 minutes: enough for 10 GiB at 6 MB/s.
    pub transfer: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            request: Duration::from_secs(60),
            transfer: Duration::from_secs(30 * 60),
        }
    }
}

impl Timeouts {
    /// The defaults with a whole-exchange deadline of `request` (the idle timeout is never
    /// longer than the deadline).
    pub fn with_request(request: Duration) -> Self {
        let defaults = Timeouts::default();
        Timeouts {
            request,
            idle: defaults.idle.min(request),
            connect: defaults.connect.min(request),
            ..defaults
        }
    }
}

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("promoter/", env!("CARGO_PKG_VERSION"));

/// Redirects followed per request at most.
const MAX_REDIRECTS: usize = 10;

/// An HTTP client with `timeouts`, rustls, the promoter's `User-Agent` and the redirect policy
/// (at most ten, never from `https` to `http`). The whole-exchange deadline is
/// [`Timeouts::request`]; a transfer sets [`Timeouts::transfer`] on its request.
pub fn client(timeouts: &Timeouts) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeouts).build()
}

/// The builder behind [`client`], for a caller that must change one more setting (a
/// notification sink follows no redirect at all).
pub fn builder(timeouts: &Timeouts) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.idle)
        .timeout(timeouts.request)
        .redirect(redirect_policy())
        .pool_max_idle_per_host(64)
}

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|url| url.scheme() == "https");
        if downgrade {
            let refused = format!("refusing a redirect from https to {}", attempt.url());
            attempt.error(refused)
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}
