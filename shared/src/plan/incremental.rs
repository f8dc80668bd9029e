//! Planning only what is not promoted yet (`desired − promoted`), pure: the caller reads the
//! promoted ledger and answers, per unit id, the fingerprints of the destinations verified to
//! hold it and whether it was signed.
//!
//! A destination is fingerprinted with its tags, so a new tag on a promoted digest makes that
//! destination missing again (the copy engine then finds the manifest there and only adds the
//! tag), a mirror added to a project makes only that mirror missing, and a unit that failed
//! never got recorded and stays missing until a run promotes it.

use sha2::{Digest as _, Sha256};

use super::{Destination, Unit};

/// 16 hex digits of sha256(`REPOSITORY\nTAG,TAG,…`) (tags sorted, as the planner keeps them).
pub fn fingerprint(destination: &Destination) -> String {
    let mut hash = Sha256::new();
    hash.update(destination.repository.as_str().as_bytes());
    hash.update(b"\n");
    for (i, tag) in destination.tags.iter().enumerate() {
        if i > 0 {
            hash.update(b",");
        }
        hash.update(tag.as_str().as_bytes());
    }
    hex::encode(&hash.finalize()[..8])
}

/// The fingerprints of every destination of `unit`.
pub fn fingerprints(unit: &Unit) -> Vec<String> {
    unit.destinations.iter().map(fingerprint).collect()
}

/// What a unit's promoted record says, as [`missing`] needs it.
pub struct Promoted<'a> {
    /// Fingerprints of the destinations verified.
    pub destinations: &'a std::collections::BTreeSet<String>,
    /// Whether it was signed.
    pub signed: bool,
    /// Whether its attestations were attached.
    pub attested: bool,
}

/// What a run adds to each promoted digest besides copying it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// A signature.
    pub signature: bool,
    /// A bundle signature, promotion record and verification summary.
    pub attestations: bool,
}

/// The units of `units` with only their destinations not promoted yet; units with none left
/// out. A unit promoted without what `needs` asks for (unsigned, or signed before attestations
/// were made) is kept whole: it must be signed everywhere.
pub fn missing<'a>(
    units: &[Unit],
    needs: Needs,
    promoted: impl Fn(&str) -> Option<Promoted<'a>>,
) -> Vec<Unit> {
    units
        .iter()
        .filter_map(|unit| {
            let Some(record) = promoted(&unit.id) else {
                return Some(unit.clone());
            };
            if (needs.signature && !record.signed) || (needs.attestations && !record.attested) {
                return Some(unit.clone());
            }
            let destinations: Vec<Destination> = unit
                .destinations
                .iter()
                .filter(|d| !record.destinations.contains(&fingerprint(d)))
                .cloned()
                .collect();
            (!destinations.is_empty()).then(|| Unit {
                destinations,
                ..unit.clone()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    fn destination(repository: &str, tags: &[&str]) -> Destination {
        Destination {
            repository: repository.parse().expect("repository"),
            tags: tags
                .iter()
                .map(|t| t.parse().expect("tag"))
                .collect::<Vec<_>>()
                .into(),
        }
    }

    fn unit(id: &str, destinations: Vec<Destination>) -> Unit {
        Unit {
            id: id.to_owned(),
            source: "staging.example/app".parse().expect("repository"),
            digest: format!("sha256:{}", "a".repeat(64))
                .parse()
                .expect("digest"),
            destinations,
            policies: Vec::new(),
        }
    }

    #[test]
    fn only_what_is_not_promoted_is_planned() {
        let eu = destination("eu.example/app", &["v1"]);
        let us = destination("us.example/app", &["v1"]);
        let promoted_units = vec![
            unit("same", vec![eu.clone(), us.clone()]),
            unit("retag", vec![eu.clone(), us.clone()]),
            unit("mirror", vec![eu.clone()]),
        ];
        let mut ledger: HashMap<&str, (BTreeSet<String>, bool)> = HashMap::new();
        for u in &promoted_units {
            ledger.insert(u.id.as_str(), (fingerprints(u).into_iter().collect(), true));
        }
        ledger.insert("unsigned", (BTreeSet::from([fingerprint(&eu)]), false));
        let desired = vec![
            unit("same", vec![eu.clone(), us.clone()]),
            unit(
                "retag",
                vec![destination("eu.example/app", &["v1", "v1.0"]), us.clone()],
            ),
            unit("mirror", vec![eu.clone(), us.clone()]),
            unit("new", vec![eu.clone()]),
            unit("unsigned", vec![eu.clone()]),
        ];
        let lookup = |id: &str| {
            ledger.get(id).map(|(destinations, signed)| Promoted {
                destinations,
                signed: *signed,
                attested: *signed,
            })
        };
        let signing = Needs {
            signature: true,
            attestations: false,
        };
        let planned = missing(&desired, signing, lookup);
        let summary: Vec<(String, Vec<String>)> = planned
            .iter()
            .map(|u| {
                (
                    u.id.clone(),
                    u.destinations
                        .iter()
                        .map(|d| format!("{}:{}", d.repository, d.tags.len()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("retag".to_owned(), vec!["eu.example/app:2".to_owned()]),
                ("mirror".to_owned(), vec!["us.example/app:1".to_owned()]),
                ("new".to_owned(), vec!["eu.example/app:1".to_owned()]),
                ("unsigned".to_owned(), vec!["eu.example/app:1".to_owned()]),
            ]
        );
        // Without signing, the unsigned unit counts as promoted.
        assert_eq!(missing(&desired, Needs::default(), lookup).len(), 3);
        // Signed before attestations were made: planned again once they are asked for.
        let unattested = |id: &str| {
            lookup(id).map(|p| Promoted {
                attested: id != "same",
                ..p
            })
        };
        let attesting = Needs {
            signature: true,
            attestations: true,
        };
        let planned = missing(&desired, attesting, unattested);
        assert!(
            planned
                .iter()
                .any(|u| u.id == "same" && u.destinations.len() == 2)
        );
    }
}
