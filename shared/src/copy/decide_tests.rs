//! Table-driven tests of [`decide`]: every rule, on values, without a registry.

use std::sync::Arc;

use bytes::Bytes;

use super::decide::{
    ArtifactState, Child, DestinationState, Observed, Referrer, ReferrersState, Step, Tree, decide,
};
use super::document::Descriptor;
use super::error::CopyError;
use crate::plan::{Destination, Unit};
use crate::reference::{CosignArtifact, Digest, Repository, Tag};
use crate::registry::{Manifest, media_type};

fn repo(text: &str) -> Repository {
    text.parse().expect("a repository")
}

fn tag(text: &str) -> Tag {
    text.parse().expect("a tag")
}

fn manifest(media_type: &str, json: serde_json::Value) -> Manifest {
    let bytes = Bytes::from(serde_json::to_vec(&json).expect("JSON"));
    Manifest {
        media_type: media_type.to_owned(),
        digest: Digest::of(&bytes),
        bytes,
    }
}

fn blob(seed: &str) -> serde_json::Value {
    serde_json::json!({"mediaType": "application/octet-stream", "digest": Digest::of(seed.as_bytes()), "size": seed.len()})
}

/// An image with a config and one layer, both derived from `seed`.
fn image(seed: &str) -> Manifest {
    manifest(
        media_type::OCI_MANIFEST,
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": blob(&format!("{seed}-config")),
            "layers": [blob(&format!("{seed}-layer"))],
        }),
    )
}

fn descriptor(m: &Manifest) -> serde_json::Value {
    serde_json::json!({"mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len()})
}

fn index(children: &[&Manifest]) -> Manifest {
    manifest(
        media_type::OCI_INDEX,
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": children.iter().map(|c| descriptor(c)).collect::<Vec<_>>(),
        }),
    )
}

const US: &str = "prod.example/us/app";
const EU: &str = "prod.example/eu/app";
const STAGING: &str = "staging.example/app";

/// A unit promoting `top` from staging to US and EU with tag `v1`.
fn unit(top: &Manifest) -> Unit {
    let destination = |r: &str| Destination {
        repository: repo(r),
        tags: Arc::from(vec![tag("v1")]),
    };
    Unit {
        id: "unit".to_owned(),
        source: repo(STAGING),
        digest: top.digest.clone(),
        destinations: vec![destination(US), destination(EU)],
        policies: Vec::new(),
    }
}

fn at(r: &str, present: bool, v1: Option<&Digest>) -> DestinationState {
    DestinationState {
        repository: repo(r),
        present,
        tags: vec![(tag("v1"), v1.cloned())],
    }
}

fn tree(m: &Manifest) -> Tree {
    Tree {
        manifest: m.clone(),
        children: Vec::new(),
    }
}

/// Names steps compactly for the tables: `kind target detail`.
fn names(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::Present { at } => format!("present {at}"),
            Step::CopyBlobs { blobs, to, .. } => format!(
                "blobs {} -> {}",
                blobs.len(),
                to.iter()
                    .map(Repository::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Step::PutManifest { manifest, to, tag } => match tag {
                Some(tag) => format!("manifest {} {to} as {tag}", manifest.digest.short()),
                None => format!("manifest {} {to}", manifest.digest.short()),
            },
            Step::PutTag { tag, to, .. } => format!("tag {tag} {to}"),
            Step::PutArtifact { tag, to, blob, .. } => {
                let kind = if tag.as_str().ends_with(".sig") {
                    "sig"
                } else if tag.as_str().ends_with(".att") {
                    "att"
                } else {
                    "referrers"
                };
                let with = if blob.is_some() { " +config" } else { "" };
                format!("artifact {kind} {to}{with}")
            }
            Step::KeepArtifact { at, .. } => format!("keep {at}"),
        })
        .collect()
}

#[test]
fn copies_tags_and_refuses_as_the_rules_say() {
    let app = image("app");
    let other = image("other");
    let d = app.digest.short().to_owned();
    struct Case {
        name: &'static str,
        observed: Observed,
        expect: Result<Vec<String>, &'static str>,
    }
    let cases = [
        Case {
            name: "everything there: nothing but presence, staging not even read",
            observed: Observed {
                destinations: vec![
                    at(US, true, Some(&app.digest)),
                    at(EU, true, Some(&app.digest)),
                ],
                source: None,
                ..Observed::default()
            },
            expect: Ok(vec![format!("present {US}"), format!("present {EU}")]),
        },
        Case {
            name: "one destination lacks it: blobs, then the manifest under its tag (one PUT), there only",
            observed: Observed {
                destinations: vec![at(US, true, Some(&app.digest)), at(EU, false, None)],
                source: Some(Some(tree(&app))),
                ..Observed::default()
            },
            expect: Ok(vec![
                format!("present {US}"),
                format!("blobs 2 -> {EU}"),
                format!("manifest {d} {EU} as v1"),
            ]),
        },
        Case {
            name: "digest there, tag missing: only the tag",
            observed: Observed {
                destinations: vec![at(US, true, None), at(EU, true, Some(&app.digest))],
                source: Some(Some(tree(&app))),
                ..Observed::default()
            },
            expect: Ok(vec![
                format!("present {US}"),
                format!("present {EU}"),
                format!("tag v1 {US}"),
            ]),
        },
        Case {
            name: "a tag on another digest is never moved",
            observed: Observed {
                destinations: vec![at(US, false, None), at(EU, true, Some(&other.digest))],
                source: Some(Some(tree(&app))),
                ..Observed::default()
            },
            expect: Err("tag move"),
        },
        Case {
            name: "staging lacks the digest",
            observed: Observed {
                destinations: vec![at(US, false, None), at(EU, false, None)],
                source: Some(None),
                ..Observed::default()
            },
            expect: Err("source missing"),
        },
        Case {
            name: "the required maintainer's signature is missing: refused before anything",
            observed: Observed {
                staging_signed: Some(false),
                destinations: vec![at(US, false, None), at(EU, false, None)],
                source: Some(Some(tree(&app))),
                ..Observed::default()
            },
            expect: Err("unsigned"),
        },
        Case {
            name: "signed as required: copied",
            observed: Observed {
                staging_signed: Some(true),
                destinations: vec![
                    at(US, true, Some(&app.digest)),
                    at(EU, true, Some(&app.digest)),
                ],
                ..Observed::default()
            },
            expect: Ok(vec![format!("present {US}"), format!("present {EU}")]),
        },
    ];
    for case in cases {
        let got = decide(&unit(&app), &case.observed);
        match (&case.expect, got) {
            (Ok(expected), Ok(steps)) => assert_eq!(&names(&steps), expected, "{}", case.name),
            (
                Err("tag move"),
                Err(CopyError::TagMove {
                    current, wanted, ..
                }),
            ) => {
                assert_eq!(
                    (current, wanted),
                    (other.digest.clone(), app.digest.clone()),
                    "{}",
                    case.name
                );
            }
            (Err("source missing"), Err(CopyError::SourceMissing { digest, .. })) => {
                assert_eq!(digest, app.digest, "{}", case.name);
            }
            (Err("unsigned"), Err(CopyError::Unsigned { .. })) => {}
            (expected, got) => panic!("{}: expected {expected:?}, got {got:?}", case.name),
        }
    }
}

#[test]
fn the_manifest_goes_with_its_first_tag_and_the_other_tags_follow() {
    let app = image("app");
    let mut unit = unit(&app);
    unit.destinations.truncate(1);
    unit.destinations[0].tags = Arc::from(vec![tag("v1"), tag("latest")]);
    let observed = Observed {
        destinations: vec![DestinationState {
            repository: repo(US),
            present: false,
            tags: vec![(tag("v1"), None), (tag("latest"), None)],
        }],
        source: Some(Some(tree(&app))),
        ..Observed::default()
    };
    let steps = decide(&unit, &observed).expect("decided");
    let d = app.digest.short();
    assert_eq!(
        names(&steps),
        [
            format!("blobs 2 -> {US}"),
            format!("manifest {d} {US} as v1"),
            format!("tag latest {US}"),
        ]
    );
}

#[test]
fn an_index_goes_after_its_children_each_only_where_lacking() {
    let amd64 = image("amd64");
    let arm64 = image("arm64");
    let multi = index(&[&amd64, &arm64]);
    let observed = Observed {
        destinations: vec![at(US, false, None), at(EU, false, None)],
        source: Some(Some(Tree {
            manifest: multi.clone(),
            children: vec![
                Child {
                    digest: amd64.digest.clone(),
                    lacking: vec![repo(US), repo(EU)],
                    tree: Some(tree(&amd64)),
                },
                Child {
                    digest: arm64.digest.clone(),
                    lacking: vec![repo(EU)],
                    tree: Some(tree(&arm64)),
                },
            ],
        })),
        ..Observed::default()
    };
    let steps = decide(&unit(&multi), &observed).expect("decided");
    let (a, b, m) = (
        amd64.digest.short(),
        arm64.digest.short(),
        multi.digest.short(),
    );
    assert_eq!(
        names(&steps),
        [
            format!("blobs 2 -> {US},{EU}"),
            format!("manifest {a} {US}"),
            format!("manifest {a} {EU}"),
            format!("blobs 2 -> {EU}"),
            format!("manifest {b} {EU}"),
            format!("manifest {m} {US} as v1"),
            format!("manifest {m} {EU} as v1"),
        ]
    );

    // A child staging does not have fails the unit before anything is written.
    let mut broken = observed.clone();
    if let Some(Some(tree)) = &mut broken.source {
        tree.children[1].tree = None;
    }
    assert!(matches!(
        decide(&unit(&multi), &broken),
        Err(CopyError::SourceMissing { digest, .. }) if digest == arm64.digest
    ));
}

#[test]
fn a_manifest_that_is_neither_image_nor_index_is_refused() {
    let schema1 = manifest(
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        serde_json::json!({"schemaVersion": 1, "fsLayers": []}),
    );
    let observed = Observed {
        destinations: vec![at(US, false, None), at(EU, false, None)],
        source: Some(Some(tree(&schema1))),
        ..Observed::default()
    };
    assert!(matches!(
        decide(&unit(&schema1), &observed),
        Err(CopyError::Document { .. })
    ));
}

/// A cosign signature image with one layer per `signatures` entry.
fn signature_image(signatures: &[&str]) -> Manifest {
    let layers: Vec<crate::sign::cosign::Layer> = signatures
        .iter()
        .map(|s| crate::sign::cosign::Layer {
            media_type: crate::sign::cosign::PAYLOAD_MEDIA_TYPE.to_owned(),
            size: s.len() as u64,
            digest: Digest::of(s.as_bytes()).to_string(),
            annotations: [(
                crate::sign::cosign::SIGNATURE_ANNOTATION.to_owned(),
                (*s).to_owned(),
            )]
            .into(),
        })
        .collect();
    let (bytes, _) = crate::sign::cosign::manifest_for(&layers);
    let bytes = Bytes::from(bytes);
    Manifest {
        media_type: media_type::OCI_MANIFEST.to_owned(),
        digest: Digest::of(&bytes),
        bytes,
    }
}

#[test]
fn staging_artifacts_are_carried_merged_or_left_alone() {
    let app = image("app");
    let staging_sig = signature_image(&["maintainer"]);
    let release_sig = signature_image(&["release"]);
    let staging_att = image("attestation");
    let other_att = image("other-attestation");
    let present = Observed {
        destinations: vec![
            at(US, true, Some(&app.digest)),
            at(EU, true, Some(&app.digest)),
        ],
        artifacts: vec![
            ArtifactState {
                kind: CosignArtifact::Signature,
                staging: staging_sig.clone(),
                at: vec![
                    // US has none: staging's is copied as it is.
                    (repo(US), None, None),
                    // EU has the release signature only: both end up there.
                    (
                        repo(EU),
                        Some(release_sig.digest.clone()),
                        Some(release_sig.clone()),
                    ),
                ],
            },
            ArtifactState {
                kind: CosignArtifact::Attestation,
                staging: staging_att.clone(),
                at: vec![
                    // US has the very same: nothing to do.
                    (repo(US), Some(staging_att.digest.clone()), None),
                    // EU has a different one: tags are never moved.
                    (repo(EU), Some(other_att.digest.clone()), None),
                ],
            },
        ],
        ..Observed::default()
    };
    let steps = decide(&unit(&app), &present).expect("decided");
    assert_eq!(
        names(&steps),
        [
            format!("present {US}"),
            format!("present {EU}"),
            format!("blobs 2 -> {US}"),
            format!("artifact sig {US}"),
            format!("blobs 2 -> {EU}"),
            format!("artifact sig {EU} +config"),
            format!("keep {EU}"),
        ]
    );
    let Some(Step::PutArtifact { manifest, .. }) = steps.get(5) else {
        panic!("the merged signature image")
    };
    let merged: crate::sign::cosign::SignatureManifest =
        serde_json::from_slice(&manifest.bytes).expect("a signature image");
    let signers: Vec<&str> = merged
        .layers
        .iter()
        .filter_map(|l| l.annotations.get(crate::sign::cosign::SIGNATURE_ANNOTATION))
        .map(String::as_str)
        .collect();
    assert_eq!(signers, ["release", "maintainer"], "both signers survive");

    // Staging's signatures already all there: nothing is rewritten.
    let mut again = present.clone();
    let both = signature_image(&["release", "maintainer"]);
    again.artifacts[0].at[1] = (repo(EU), Some(both.digest.clone()), Some(both));
    let steps = decide(&unit(&app), &again).expect("decided");
    assert!(!names(&steps).contains(&format!("artifact sig {EU} +config")));
}

#[test]
fn referrers_are_copied_and_listed_by_the_fallback_tag_merged_with_what_is_there() {
    let app = image("app");
    let sbom = image("sbom");
    let staging_index = index(&[&sbom]);
    let other_referrer = image("someone-elses");
    let eu_index = index(&[&other_referrer]);
    let observed = Observed {
        destinations: vec![
            at(US, true, Some(&app.digest)),
            at(EU, true, Some(&app.digest)),
        ],
        referrers: Some(ReferrersState {
            index: staging_index.clone(),
            referrers: vec![Referrer {
                descriptor: Descriptor {
                    media_type: sbom.media_type.clone(),
                    digest: sbom.digest.clone(),
                    size: sbom.bytes.len() as u64,
                    urls: Vec::new(),
                },
                lacking: vec![repo(US), repo(EU)],
                tree: Some(tree(&sbom)),
            }],
            at: vec![(repo(US), None), (repo(EU), Some(eu_index.clone()))],
        }),
        ..Observed::default()
    };
    let steps = decide(&unit(&app), &observed).expect("decided");
    let s = sbom.digest.short();
    assert_eq!(
        names(&steps),
        [
            format!("present {US}"),
            format!("present {EU}"),
            format!("blobs 2 -> {US}"),
            format!("manifest {s} {US}"),
            format!("artifact referrers {US}"),
            format!("blobs 2 -> {EU}"),
            format!("manifest {s} {EU}"),
            format!("artifact referrers {EU}"),
        ]
    );
    // US gets staging's index as it is; EU's index keeps its referrer and gains staging's.
    let put = |i: usize| match &steps[i] {
        Step::PutArtifact { manifest, tag, .. } => {
            assert_eq!(*tag, app.digest.referrers_tag());
            manifest.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(put(4), staging_index);
    let merged: serde_json::Value = serde_json::from_slice(&put(7).bytes).expect("JSON");
    let listed: Vec<&str> = merged["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["digest"].as_str())
        .collect();
    assert_eq!(
        listed,
        [other_referrer.digest.as_str(), sbom.digest.as_str()]
    );

    // Destinations listing it already, and holding it: nothing at all.
    let mut done = observed.clone();
    if let Some(referrers) = &mut done.referrers {
        referrers.referrers[0].lacking.clear();
        referrers.at = vec![
            (repo(US), Some(staging_index.clone())),
            (repo(EU), Some(staging_index)),
        ];
    }
    let steps = decide(&unit(&app), &done).expect("decided");
    assert_eq!(
        names(&steps),
        [format!("present {US}"), format!("present {EU}")]
    );
}
