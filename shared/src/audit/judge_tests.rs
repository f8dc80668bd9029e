//! Tests of the pure judgement: every verdict and reason, artifact tags, and what needs the
//! registry.

use super::*;

const REPO: &str = "prod.example/images/app";
const INDEX: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const IMAGE: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const OTHER: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

fn desired() -> DesiredIndex {
    DesiredIndex {
        schema: "promoter.desired/v1".into(),
        sources: BTreeMap::new(),
        policies: BTreeMap::new(),
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
