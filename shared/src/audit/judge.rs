//! The pure judgement of one registry event against the desired state (no IO).
//!
//! A push is approved when the desired state names its digest in that repository, under that
//! tag if it carries one. The promoter's own artifacts are expected: cosign's
//! `sha256-<hex>.sig`, `.att` and `.sbom` tags and the OCI referrers fallback tag
//! `sha256-<hex>` of a desired digest. Everything else is unapproved, except untagged pushes
//! of digests the desired state does not name: those may be children of an approved index or
//! referrers of an approved image, which only the registry can tell
//! ([`Judgement::NeedsLookup`], resolved by [`judge_with_registry`](super::judge_with_registry)).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::events::{Action, RegistryEvent};
use crate::state::records::DesiredIndex;

/// Whether a production push was asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The digest is desired in that repository, and its tag (if any) is one the desired state
    /// gives that digest.
    Approved,
    /// Not named by the desired state, but something the promoter writes for what it names:
    /// a signature, attestation or SBOM tag, a referrers fallback tag, a child of an approved
    /// index, a referrer of an approved image.
    Expected {
        /// What the push is, in a few words.
        why: String,
    },
    /// Nobody asked for it.
    Unapproved {
        /// Why it is not approved.
        reason: Reason,
    },
}

/// Why a push (or delete) is unapproved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The desired state lists no such repository.
    UnknownRepository,
    /// The digest is not desired in that repository, nor a child or referrer of one that is.
    UnknownDigest,
    /// The digest is desired, but not under this tag, and no other digest has it either.
    UnknownTag {
        /// The tag pushed.
        tag: String,
    },
    /// The desired state gives this tag to another digest: the tag was moved.
    TagMoved {
        /// The tag pushed.
        tag: String,
        /// The digest the desired state gives the tag.
        desired_digest: String,
    },
    /// Something was deleted: the promoter never deletes.
    Deleted,
}

/// What [`judge`] can tell without the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// The verdict.
    Decided(Verdict),
    /// Only the registry can tell whether `digest` is a child of an approved index or a
    /// referrer of an approved digest: an untagged push of a digest the desired state does not
    /// name, or a signature / referrers tag of such a digest.
    NeedsLookup {
        /// The digest to look up in the event's repository.
        digest: String,
    },
    /// A push of a tag the desired state names, without the digest pushed (some Pub/Sub and
    /// EventBridge events): the registry tells which digest the tag points at.
    NeedsTagLookup {
        /// The tag to resolve in the event's repository.
        tag: String,
    },
}

fn unapproved(reason: Reason) -> Judgement {
    Judgement::Decided(Verdict::Unapproved { reason })
}

/// Judges `event` against `desired`, without IO.
pub fn judge(event: &RegistryEvent, desired: &DesiredIndex) -> Judgement {
    if event.action == Action::Delete {
        return unapproved(Reason::Deleted);
    }
    let Some(digests) = desired.repositories.get(&event.repository) else {
        return unapproved(Reason::UnknownRepository);
    };
    let Some(tag) = &event.tag else {
        return match &event.digest {
            Some(digest) if digests.contains_key(digest) => Judgement::Decided(Verdict::Approved),
            Some(digest) => Judgement::NeedsLookup {
                digest: digest.clone(),
            },
            None => unapproved(Reason::UnknownDigest),
        };
    };
    if let Some((subject, what)) = artifact_tag(tag) {
        return if digests.contains_key(&subject) {
            Judgement::Decided(Verdict::Expected {
                why: format!("{what} of approved {subject}"),
            })
        } else {
            Judgement::NeedsLookup { digest: subject }
        };
    }
    match (event.digest.as_deref(), tag_owner(digests, tag)) {
        (Some(digest), Some(owner)) if digest == owner => Judgement::Decided(Verdict::Approved),
        (Some(_), Some(owner)) => unapproved(Reason::TagMoved {
            tag: tag.clone(),
            desired_digest: owner.to_owned(),
        }),
        (None, Some(_)) => Judgement::NeedsTagLookup { tag: tag.clone() },
        (Some(digest), None) if digests.contains_key(digest) => {
            unapproved(Reason::UnknownTag { tag: tag.clone() })
        }
        (_, None) => unapproved(Reason::UnknownDigest),
    }
}

/// The digest the desired state gives `tag`, if any.
fn tag_owner<'a>(digests: &'a BTreeMap<String, Vec<String>>, tag: &str) -> Option<&'a str> {
    digests
        .iter()
        .find(|(_, tags)| tags.iter().any(|t| t == tag))
        .map(|(digest, _)| digest.as_str())
}

/// For a tag the promoter writes next to a digest (cosign's `sha256-<hex>.sig`, `.att`,
/// `.sbom`; the referrers fallback tag `sha256-<hex>`), the digest `sha256:<hex>` it belongs
/// to and what the tag is.
pub(crate) fn artifact_tag(tag: &str) -> Option<(String, &'static str)> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, what) = match rest.split_once('.') {
        None => (rest, "referrers fallback tag"),
        Some((hex, "sig")) => (hex, "cosign signature"),
        Some((hex, "att")) => (hex, "cosign attestation"),
        Some((hex, "sbom")) => (hex, "cosign SBOM"),
        Some(_) => return None,
    };
    let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then(|| (format!("sha256:{hex}"), what))
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::UnknownRepository => f.write_str("the desired state lists no such repository"),
            Reason::UnknownDigest => f.write_str(
                "the digest is not desired there, nor a child or referrer of a desired digest",
            ),
            Reason::UnknownTag { tag } => {
                write!(f, "the desired state does not give the digest tag {tag}")
            }
            Reason::TagMoved {
                tag,
                desired_digest,
            } => write!(
                f,
                "tag {tag} moved: the desired state gives it {desired_digest}"
            ),
            Reason::Deleted => f.write_str("deleted (the promoter never deletes)"),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Approved => f.write_str("approved"),
            Verdict::Expected { why } => write!(f, "expected: {why}"),
            Verdict::Unapproved { reason } => write!(f, "unapproved: {reason}"),
        }
    }
}

impl Verdict {
    /// True when nobody asked for the push: what the auditor alerts on.
    pub fn is_unapproved(&self) -> bool {
        matches!(self, Verdict::Unapproved { .. })
    }

    /// A one-line explanation of this verdict on `event`, naming its repository, digest and
    /// tag.
    pub fn explain<'a>(&'a self, event: &'a RegistryEvent) -> Explanation<'a> {
        Explanation {
            action: event.action,
            repository: &event.repository,
            digest: event.digest.as_deref(),
            tag: event.tag.as_deref(),
            verdict: self,
        }
    }
}

/// A verdict with what it was about, displayed on one line, e.g. `push to
/// gcr.io/prod/app of sha256:… tagged v1: unapproved: tag v1 moved: …`.
#[derive(Clone, Copy, Debug)]
pub struct Explanation<'a> {
    pub(crate) action: Action,
    pub(crate) repository: &'a str,
    pub(crate) digest: Option<&'a str>,
    pub(crate) tag: Option<&'a str>,
    pub(crate) verdict: &'a Verdict,
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Push => "push to",
            Action::Delete => "delete in",
        };
        write!(f, "{action} {}", self.repository)?;
        match self.digest {
            Some(digest) => write!(f, " of {digest}")?,
            None => f.write_str(" (digest not given)")?,
        }
        match self.tag {
            Some(tag) => write!(f, " tagged {tag}")?,
            None => f.write_str(" untagged")?,
        }
        write!(f, ": {}", self.verdict)
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
