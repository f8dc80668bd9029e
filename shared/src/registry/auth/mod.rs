//! Registry authentication: credentials, `Www-Authenticate` challenges and bearer tokens.
//!
//! - [`challenge`]: parsing `Www-Authenticate` headers (Basic and Bearer, with parameters);
//! - [`docker_config`]: credentials from Docker's `config.json` (`$DOCKER_CONFIG`), including
//!   credential helpers (`credHelpers`, `credsStore`).

pub mod challenge;
pub mod docker_config;
pub mod ecr;
pub mod google;
pub mod session;
