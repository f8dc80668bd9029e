//! Where a repository lives: `HOST[:PORT]/PATH`, and the URL scheme to reach it.

use std::fmt;
use std::net::IpAddr;

/// A repository in a registry, e.g. host `gcr.io` and path `k8s-staging-foo/controller`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// The registry host, with its port if any (`127.0.0.1:5000`).
    pub host: String,
    /// The repository path below the host.
    pub path: String,
}

/// A repository name without a `/` (no host, or no path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not HOST/PATH")]
pub struct RepositoryError(pub String);

impl Repository {
    /// Splits `HOST/PATH`.
    pub fn parse(full: &str) -> Result<Self, RepositoryError> {
        match full.split_once('/') {
            Some((host, path)) if !host.is_empty() && !path.is_empty() => Ok(Repository {
                host: host.to_owned(),
                path: path.to_owned(),
            }),
            _ => Err(RepositoryError(full.to_owned())),
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

/// True for hosts on the loopback interface: `localhost`, `127.0.0.0/8` and `[::1]`, with or
/// without a port. Only these (and hosts marked insecure) are spoken to over plain HTTP.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_detects_loopback() {
        let r = Repository::parse("127.0.0.1:5000/a/b").expect("valid");
        assert_eq!(
            (r.host.as_str(), r.path.as_str()),
            ("127.0.0.1:5000", "a/b")
        );
        assert!(Repository::parse("gcr.io").is_err());
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "gcr.io",
            "10.0.0.1:5000",
            "[2001:db8::1]:443",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
