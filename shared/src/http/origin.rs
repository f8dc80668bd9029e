//! Origins (scheme, host, port): the unit credentials belong to.
//!
//! A registry's credentials are sent only to URLs of the registry's own origin, the rule
//! browsers apply to cookies and that docker and containerd apply to registry hosts. A URL the
//! registry names (an upload `Location`, a `Link` to the next page) may point anywhere; if it
//! points at another origin it is requested without credentials.

use std::fmt;

use reqwest::Url;

/// A URL's scheme, host and port (the default port made explicit).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// The origin of `url`.
    pub fn of(url: &Url) -> Origin {
        Origin {
            scheme: url.scheme().to_ascii_lowercase(),
            host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
            port: url.port_or_known_default(),
        }
    }

    /// The origin of the URL `text`, or `None` when it is not an absolute URL.
    pub fn parse(text: &str) -> Option<Origin> {
        Url::parse(text).ok().map(|url| Origin::of(&url))
    }

    /// True for `https`.
    pub fn is_secure(&self) -> bool {
        self.scheme == "https"
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_needs_scheme_host_and_port_alike() {
        let registry = Origin::parse("https://registry.example/v2/").expect("origin");
        for same in [
            "https://registry.example/v2/x/blobs/uploads/1",
            "https://REGISTRY.example:443/other",
        ] {
            assert_eq!(Origin::parse(same).as_ref(), Some(&registry), "{same}");
        }
        for other in [
            "http://registry.example/v2/",
            "https://registry.example:5000/v2/",
            "https://evil.example/v2/",
            "https://registry.example.evil.example/v2/",
        ] {
            assert_ne!(Origin::parse(other).as_ref(), Some(&registry), "{other}");
        }
        assert_eq!(Origin::parse("/v2/relative"), None);
        assert!(registry.is_secure());
        assert_eq!(registry.to_string(), "https://registry.example:443");
    }
}
