//! Registry names (`host[:port][/path]`) and image names (repository paths below a registry).
//!
//! The grammar is the OCI distribution specification's: a path component is
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, components are joined by `/`, and a host is
//! `domain-component(\.domain-component)*(:port)?` or a bracketed IPv6 address.

use std::fmt;
use std::str::FromStr;

/// Longest full repository name (`host/path`) that registries and clients accept.
pub const MAX_REPOSITORY_LEN: usize = 255;

/// A registry name as manifests spell it: a host, an optional port, and an optional path,
/// e.g. `us-docker.pkg.dev/prod/images/foo` or `127.0.0.1:5000`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RegistryName(String);

/// An image name: the repository path below a registry name, e.g. `controller` or
/// `charts/kueue`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ImageName(String);

/// Why a string is not a valid registry or image name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("the name is empty")]
    Empty,
    /// A registry name whose first component is not a host.
    #[error(
        "`{0}` does not start with a registry host; write the host first, like `gcr.io/{0}` or `127.0.0.1:5000/{0}`"
    )]
    NoHost(String),
    /// The host part is malformed.
    #[error("`{0}` is not a valid host[:port]")]
    BadHost(String),
    /// A path component breaks the grammar.
    #[error(
        "path component `{0}` is not valid: use lowercase letters and digits, separated by `.`, `_`, `__` or dashes"
    )]
    BadComponent(String),
    /// Two slashes in a row, or a leading or trailing slash.
    #[error("the name has an empty path component (a leading, trailing or doubled `/`)")]
    EmptyComponent,
}

impl RegistryName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host (and port) part, e.g. `gcr.io` or `127.0.0.1:5000`.
    pub fn host(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The repository of `image` in this registry: `REGISTRY/IMAGE`.
    pub fn repository(&self, image: &ImageName) -> super::Repository {
        super::Repository::join(self, image)
    }
}

impl ImageName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RegistryName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        let (host, path) = match s.split_once('/') {
            Some((host, path)) => (host, Some(path)),
            None => (s, None),
        };
        if !looks_like_host(host) {
            return Err(NameError::NoHost(s.to_owned()));
        }
        check_host(host)?;
        if let Some(path) = path {
            check_path(path)?;
        }
        Ok(RegistryName(s.to_owned()))
    }
}

impl FromStr for ImageName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        check_path(s)?;
        Ok(ImageName(s.to_owned()))
    }
}

impl fmt::Display for RegistryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a full repository name, `HOST/PATH` (the caller has split off a non-empty path).
pub(super) fn check_full(full: &str) -> Result<(), NameError> {
    let registry: RegistryName = full.parse()?;
    if registry.as_str().len() == registry.host().len() {
        return Err(NameError::EmptyComponent);
    }
    Ok(())
}

/// Docker's rule for telling a host from a first path component: it has a dot or a port, or
/// is `localhost`, or is a bracketed IPv6 address.
fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

fn check_host(host: &str) -> Result<(), NameError> {
    let bad = || NameError::BadHost(host.to_owned());
    let (name, port) = split_port(host).ok_or_else(bad)?;
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let name_ok = if let Some(inner) = name.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        name.split('.').all(is_domain_component)
    };
    if name_ok { Ok(()) } else { Err(bad()) }
}

/// Splits `host:port` (or `[v6]:port`) into name and optional port; `None` when malformed.
fn split_port(host: &str) -> Option<(&str, Option<&str>)> {
    if host.starts_with('[') {
        let end = host.find(']')?;
        let (name, rest) = host.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Some((name, Some(port))),
            None if rest.is_empty() => Some((name, None)),
            None => None,
        };
    }
    Some(match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    })
}

fn is_domain_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

fn check_path(path: &str) -> Result<(), NameError> {
    for component in path.split('/') {
        if component.is_empty() {
            return Err(NameError::EmptyComponent);
        }
        if !is_path_component(component) {
            return Err(NameError::BadComponent(component.to_owned()));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let mut i = 0;
    loop {
        let run_start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == run_start {
            return false; // a separator with no alphanumerics before it (or empty input)
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let sep_ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !sep_ok {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn registry_names() {
        for ok in [
            "gcr.io/k8s-staging-coredns",
            "us-docker.pkg.dev/prod/images/foo",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/foo",
            "127.0.0.1:5000",
            "localhost:5000/a/b",
            "[::1]:5000/x",
        ] {
            assert!(ok.parse::<RegistryName>().is_ok(), "{ok}");
        }
        assert!(matches!(
            "k8s-staging/foo".parse::<RegistryName>(),
            Err(NameError::NoHost(_))
        ));
        assert!(matches!(
            "gcr.io:abc/foo".parse::<RegistryName>(),
            Err(NameError::BadHost(_))
        ));
        assert!(matches!(
            "-bad.io/foo".parse::<RegistryName>(),
            Err(NameError::BadHost(_))
        ));
        assert_eq!(
            "gcr.io/Foo".parse::<RegistryName>(),
            Err(NameError::BadComponent("Foo".into()))
        );
        assert_eq!(
            "gcr.io/a//b".parse::<RegistryName>(),
            Err(NameError::EmptyComponent)
        );
        let name: RegistryName = "gcr.io:443/x".parse().expect("valid");
        assert_eq!(name.host(), "gcr.io:443");
    }

    #[test]
    fn image_names() {
        for ok in ["controller", "charts/kueue", "a__b", "a---b", "a.b_c", "0"] {
            assert!(ok.parse::<ImageName>().is_ok(), "{ok}");
        }
        for bad in ["", "A", "a___b", "a._b", "-a", "a-", "a/", "/a", "a b"] {
            assert!(bad.parse::<ImageName>().is_err(), "{bad}");
        }
    }

    proptest! {
        /// The hand-written matcher agrees with the specification's regular expression.
        #[test]
        fn image_name_matches_the_spec_regex(s in "[a-z0-9._/-]{0,24}") {
            let spec = regex::Regex::new(
                r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$",
            ).expect("spec regex");
            prop_assert_eq!(s.parse::<ImageName>().is_ok(), spec.is_match(&s));
        }

        #[test]
        fn registry_host_matches_the_spec_regex(s in "[a-zA-Z0-9.:-]{1,20}") {
            let spec = regex::Regex::new(
                r"^([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(:[0-9]+)?$",
            ).expect("spec regex");
            prop_assume!(looks_like_host(&s));
            prop_assert_eq!(check_host(&s).is_ok(), spec.is_match(&s));
        }
    }
}
