//! Repositories: a registry host and a path below it (`gcr.io/k8s-staging-foo/controller`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::name::{ImageName, NameError, RegistryName, check_full};

/// A repository in a registry: host (with port, if any) and a non-empty path, each following
/// the OCI distribution grammar. Cheap to clone (the text is shared).
///
/// Built from a manifest's registry and image names ([`RegistryName::repository`]) or parsed
/// from `HOST/PATH`; serialized as that text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Repository {
    /// `HOST/PATH`.
    full: Arc<str>,
    /// Where the path starts (after the first `/`).
    path_start: usize,
}

/// Why a string is not a repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    /// Only a host, or no host.
    #[error("`{0}` is not HOST/PATH")]
    NotHostAndPath(String),
    /// A host or path that breaks the grammar.
    #[error("`{name}`: {source}")]
    Name {
        /// The text given.
        name: String,
        /// What is wrong with it.
        #[source]
        source: NameError,
    },
}

impl Repository {
    /// `registry/image`, both already valid.
    pub(super) fn join(registry: &RegistryName, image: &ImageName) -> Self {
        let full = format!("{registry}/{image}");
        let path_start = registry.host().len() + 1;
        Repository {
            full: full.into(),
            path_start,
        }
    }

    /// The full name, `HOST/PATH`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The registry host, with its port if any (`127.0.0.1:5000`, `gcr.io`).
    pub fn host(&self) -> &str {
        &self.full[..self.path_start - 1]
    }

    /// The path below the host (`k8s-staging-foo/controller`), as the distribution API's URLs
    /// name the repository.
    pub fn path(&self) -> &str {
        &self.full[self.path_start..]
    }

    /// The same registry's repository at `path` (a cross-repository mount's source, say).
    pub fn sibling(&self, path: &ImageName) -> Repository {
        let full = format!("{}/{path}", self.host());
        Repository {
            full: full.into(),
            path_start: self.path_start,
        }
    }
}

impl FromStr for Repository {
    type Err = RepositoryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((host, path)) = s.split_once('/') else {
            return Err(RepositoryError::NotHostAndPath(s.to_owned()));
        };
        if host.is_empty() || path.is_empty() {
            return Err(RepositoryError::NotHostAndPath(s.to_owned()));
        }
        check_full(s).map_err(|source| RepositoryError::Name {
            name: s.to_owned(),
            source,
        })?;
        Ok(Repository {
            full: s.into(),
            path_start: host.len() + 1,
        })
    }
}

impl TryFrom<String> for Repository {
    type Error = RepositoryError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Repository> for String {
    fn from(value: Repository) -> String {
        value.full.to_string()
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.full, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_and_path() {
        let r: Repository = "127.0.0.1:5000/a/b".parse().expect("valid");
        assert_eq!((r.host(), r.path()), ("127.0.0.1:5000", "a/b"));
        assert_eq!(r.to_string(), "127.0.0.1:5000/a/b");
        let registry: RegistryName = "gcr.io/k8s-staging-foo".parse().expect("valid");
        let image: ImageName = "charts/kueue".parse().expect("valid");
        let joined = registry.repository(&image);
        assert_eq!(joined.host(), "gcr.io");
        assert_eq!(joined.path(), "k8s-staging-foo/charts/kueue");
        assert_eq!(
            joined,
            "gcr.io/k8s-staging-foo/charts/kueue"
                .parse::<Repository>()
                .expect("valid")
        );
        let other: ImageName = "x/y".parse().expect("valid");
        assert_eq!(joined.sibling(&other).as_str(), "gcr.io/x/y");
    }

    #[test]
    fn refuses_what_is_not_host_and_path() {
        for bad in [
            "gcr.io",
            "gcr.io/",
            "/a",
            "",
            "gcr.io/A",
            "nohost/a",
            "gcr.io/a//b",
        ] {
            assert!(bad.parse::<Repository>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serializes_as_text() {
        let r: Repository = "gcr.io/a/b".parse().expect("valid");
        let json = serde_json::to_string(&r).expect("serialize");
        assert_eq!(json, "\"gcr.io/a/b\"");
        let back: Repository = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Repository>("\"gcr.io\"").is_err());
    }
}
