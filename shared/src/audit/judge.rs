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
mod tests {
    use super::*;

    const REPO: &str = "prod.example/images/app";
    const INDEX: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const IMAGE: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const OTHER: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn desired() -> DesiredIndex {
        DesiredIndex {
            schema: "promoter.desired/v1".into(),
            revision: "r1".into(),
            repositories: BTreeMap::from([
                (
                    REPO.to_owned(),
                    BTreeMap::from([
                        (INDEX.to_owned(), vec!["v1".to_owned(), "latest".to_owned()]),
                        (IMAGE.to_owned(), vec![]),
                    ]),
                ),
                ("prod.example/images/empty".to_owned(), BTreeMap::new()),
            ]),
        }
    }

    fn push(repository: &str, digest: Option<&str>, tag: Option<&str>) -> RegistryEvent {
        RegistryEvent {
            id: None,
            action: Action::Push,
            repository: repository.to_owned(),
            digest: digest.map(str::to_owned),
            tag: tag.map(str::to_owned),
        }
    }

    fn judged(digest: Option<&str>, tag: Option<&str>) -> Judgement {
        judge(&push(REPO, digest, tag), &desired())
    }

    fn reason(judgement: Judgement) -> Reason {
        match judgement {
            Judgement::Decided(Verdict::Unapproved { reason }) => reason,
            other => panic!("expected unapproved, got {other:?}"),
        }
    }

    fn why(judgement: Judgement) -> String {
        match judgement {
            Judgement::Decided(Verdict::Expected { why }) => why,
            other => panic!("expected expected, got {other:?}"),
        }
    }

    fn hex(digest: &str) -> &str {
        &digest[7..]
    }

    #[test]
    fn desired_digests_under_desired_tags_or_untagged_are_approved() {
        let approved = Judgement::Decided(Verdict::Approved);
        assert_eq!(judged(Some(INDEX), Some("v1")), approved);
        assert_eq!(judged(Some(INDEX), Some("latest")), approved);
        assert_eq!(judged(Some(INDEX), None), approved, "by digest");
        assert_eq!(judged(Some(IMAGE), None), approved, "a digest without tags");
    }

    #[test]
    fn deletes_are_always_unapproved() {
        let mut event = push(REPO, Some(INDEX), Some("v1"));
        event.action = Action::Delete;
        assert_eq!(reason(judge(&event, &desired())), Reason::Deleted);
        event.repository = "elsewhere.example/x".into();
        event.digest = None;
        assert_eq!(reason(judge(&event, &desired())), Reason::Deleted);
    }

    #[test]
    fn unknown_repositories() {
        let event = push("prod.example/images/other", Some(INDEX), Some("v1"));
        assert_eq!(reason(judge(&event, &desired())), Reason::UnknownRepository);
        let event = push("prod.example/images", Some(INDEX), None);
        assert_eq!(
            reason(judge(&event, &desired())),
            Reason::UnknownRepository,
            "a parent path is another repository"
        );
    }

    #[test]
    fn moved_tags_name_the_desired_digest() {
        assert_eq!(
            reason(judged(Some(OTHER), Some("v1"))),
            Reason::TagMoved {
                tag: "v1".into(),
                desired_digest: INDEX.into()
            }
        );
        assert_eq!(
            reason(judged(Some(IMAGE), Some("latest"))),
            Reason::TagMoved {
                tag: "latest".into(),
                desired_digest: INDEX.into()
            },
            "even onto another desired digest"
        );
    }

    #[test]
    fn tags_nobody_asked_for() {
        assert_eq!(
            reason(judged(Some(IMAGE), Some("v2"))),
            Reason::UnknownTag { tag: "v2".into() }
        );
        assert_eq!(
            reason(judged(Some(OTHER), Some("v2"))),
            Reason::UnknownDigest,
            "an undesired digest under an undesired tag"
        );
        assert_eq!(
            reason(judged(None, Some("v2"))),
            Reason::UnknownDigest,
            "an undesired tag, digest not given"
        );
    }

    #[test]
    fn untagged_unknown_digests_need_the_registry() {
        assert_eq!(
            judged(Some(OTHER), None),
            Judgement::NeedsLookup {
                digest: OTHER.into()
            },
            "maybe a child of the index or a referrer"
        );
        let event = push("prod.example/images/empty", Some(OTHER), None);
        assert_eq!(
            judge(&event, &desired()),
            Judgement::NeedsLookup {
                digest: OTHER.into()
            }
        );
        assert_eq!(reason(judged(None, None)), Reason::UnknownDigest);
    }

    #[test]
    fn desired_tags_without_a_digest_need_the_registry() {
        assert_eq!(
            judged(None, Some("v1")),
            Judgement::NeedsTagLookup { tag: "v1".into() }
        );
    }

    #[test]
    fn artifact_tags_of_desired_digests_are_expected() {
        for (suffix, what) in [
            (".sig", "cosign signature"),
            (".att", "cosign attestation"),
            (".sbom", "cosign SBOM"),
            ("", "referrers fallback tag"),
        ] {
            let tag = format!("sha256-{}{suffix}", hex(INDEX));
            assert_eq!(
                why(judged(Some(OTHER), Some(&tag))),
                format!("{what} of approved {INDEX}"),
                "{tag}"
            );
            assert_eq!(
                why(judged(None, Some(&tag))),
                format!("{what} of approved {INDEX}"),
                "{tag} without a digest"
            );
        }
    }

    #[test]
    fn artifact_tags_of_other_digests_need_the_registry() {
        for suffix in [".sig", ".att", ".sbom", ""] {
            let tag = format!("sha256-{}{suffix}", hex(OTHER));
            assert_eq!(
                judged(Some(IMAGE), Some(&tag)),
                Judgement::NeedsLookup {
                    digest: OTHER.into()
                },
                "{tag}: maybe a signed child of the index"
            );
        }
    }

    #[test]
    fn look_alike_tags_are_ordinary_tags() {
        for tag in [
            format!("sha256-{}.sig2", hex(INDEX)),
            format!("sha256-{}", &hex(INDEX)[1..]),
            format!("sha256-{}", "A".repeat(64)),
            format!("sha512-{}.sig", hex(INDEX)),
            format!("sha256-{}.sig.sig", hex(INDEX)),
        ] {
            assert_eq!(artifact_tag(&tag), None, "{tag}");
            assert_eq!(
                reason(judged(Some(INDEX), Some(&tag))),
                Reason::UnknownTag { tag: tag.clone() }
            );
        }
    }

    #[test]
    fn verdicts_serialize_tagged_in_snake_case() {
        let moved = Verdict::Unapproved {
            reason: Reason::TagMoved {
                tag: "v1".into(),
                desired_digest: INDEX.into(),
            },
        };
        let json = serde_json::to_value(&moved).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"kind": "unapproved", "reason": {"kind": "tag_moved", "tag": "v1", "desired_digest": INDEX}})
        );
        for verdict in [
            moved,
            Verdict::Approved,
            Verdict::Expected { why: "x".into() },
            Verdict::Unapproved {
                reason: Reason::UnknownRepository,
            },
            Verdict::Unapproved {
                reason: Reason::UnknownDigest,
            },
            Verdict::Unapproved {
                reason: Reason::UnknownTag { tag: "t".into() },
            },
            Verdict::Unapproved {
                reason: Reason::Deleted,
            },
        ] {
            let text = serde_json::to_string(&verdict).expect("json");
            assert_eq!(
                serde_json::from_str::<Verdict>(&text).expect("parse"),
                verdict
            );
        }
        assert_eq!(
            serde_json::to_string(&Verdict::Approved).expect("json"),
            r#"{"kind":"approved"}"#
        );
    }

    #[test]
    fn explanations_name_repository_digest_and_tag() {
        let event = push(REPO, Some(OTHER), Some("v1"));
        let verdict = Verdict::Unapproved {
            reason: Reason::TagMoved {
                tag: "v1".into(),
                desired_digest: INDEX.into(),
            },
        };
        assert_eq!(
            verdict.explain(&event).to_string(),
            format!(
                "push to {REPO} of {OTHER} tagged v1: unapproved: tag v1 moved: the desired state gives it {INDEX}"
            )
        );
        let mut event = push(REPO, None, None);
        event.action = Action::Delete;
        let verdict = Verdict::Unapproved {
            reason: Reason::Deleted,
        };
        let line = verdict.explain(&event).to_string();
        assert_eq!(
            line,
            format!(
                "delete in {REPO} (digest not given) untagged: unapproved: deleted (the promoter never deletes)"
            )
        );
        assert!(!line.contains('\n'));
        assert!(!Verdict::Approved.is_unapproved());
        assert!(verdict.is_unapproved());
    }
}
