//! Single-flight for blobs: each blob moves into a destination registry at most once, even
//! when many units need it at the same time. The first unit to need blob D in registry H
//! uploads it; the others wait, then mount it from the repository it went to.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::reference::{Digest, Repository};

/// A registry host and a blob.
type Key = (String, Digest);

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    InFlight,
    /// Uploaded into this repository of the host.
    Done(Repository),
    Failed,
}

/// The blobs in flight or done, per (registry host, digest), for one process.
#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<Key, watch::Receiver<State>>>,
    /// Every repository known to hold each blob, per host: nothing is mounted where the blob
    /// already is (distribution rewrites the repository's link on a mount, and a manifest PUT
    /// racing that rewrite is refused with MANIFEST_BLOB_UNKNOWN).
    holders: Mutex<HashMap<Key, HashSet<Repository>>>,
}

/// The outcome of asking for a blob.
pub enum Flight {
    /// The blob is already in this repository of the host: mount it from there.
    Done(Repository),
    /// The caller moves it, and must report how that went through the claim.
    Owner(Claim),
}

/// The duty to move one blob into one host. Dropped without [`Claim::done`], it reports a
/// failure and lets the next asker try.
pub struct Claim {
    key: Key,
    sender: watch::Sender<State>,
    flights: Arc<Flights>,
    finished: bool,
}

impl Flights {
    /// Claims blob `digest` for `host`, or waits for whoever has it and says where it went.
    pub async fn claim(self: &Arc<Self>, host: &str, digest: &Digest) -> Flight {
        let key = (host.to_owned(), digest.clone());
        loop {
            let mut receiver = {
                let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
                match map.get(&key) {
                    Some(receiver) => receiver.clone(),
                    None => {
                        let (sender, receiver) = watch::channel(State::InFlight);
                        map.insert(key.clone(), receiver);
                        return Flight::Owner(Claim {
                            key,
                            sender,
                            flights: Arc::clone(self),
                            finished: false,
                        });
                    }
                }
            };
            let state = match receiver.wait_for(|s| *s != State::InFlight).await {
                Ok(state) => state.clone(),
                Err(_) => State::Failed,
            };
            if let State::Done(repository) = state {
                return Flight::Done(repository);
            }
            // Failed: the owner removed the entry; loop to claim it anew.
            tokio::task::yield_now().await;
        }
    }

    /// The repository of `host` known to hold `digest` already, without waiting.
    pub fn known(&self, host: &str, digest: &Digest) -> Option<Repository> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match &*map.get(&(host.to_owned(), digest.clone()))?.borrow() {
            State::Done(repository) => Some(repository.clone()),
            State::InFlight | State::Failed => None,
        }
    }

    /// Records that `repository` holds `digest` (found there by a HEAD), so later units
    /// mount from it instead of uploading.
    pub fn record(&self, digest: &Digest, repository: &Repository) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((repository.host().to_owned(), digest.clone()))
            .or_insert_with(|| watch::channel(State::Done(repository.clone())).1);
        drop(map);
        self.add_holder(digest, repository);
    }

    /// Notes that `repository` holds `digest` (uploaded, mounted or found there).
    pub fn add_holder(&self, digest: &Digest, repository: &Repository) {
        let mut holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        holders
            .entry((repository.host().to_owned(), digest.clone()))
            .or_default()
            .insert(repository.clone());
    }

    /// True when `repository` is known to hold `digest`.
    pub fn holds(&self, digest: &Digest, repository: &Repository) -> bool {
        let holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        holders
            .get(&(repository.host().to_owned(), digest.clone()))
            .is_some_and(|h| h.contains(repository))
    }
}

impl Claim {
    /// The blob is now in `repository` (of the claimed host).
    pub fn done(mut self, repository: &Repository) {
        self.finished = true;
        self.sender.send_replace(State::Done(repository.clone()));
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.remove(&self.key);
        self.sender.send_replace(State::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"blob")
    }

    fn repo(name: &str) -> Repository {
        name.parse().expect("a repository")
    }

    #[tokio::test]
    async fn one_owner_others_wait_and_mount() {
        let flights = Arc::new(Flights::default());
        let Flight::Owner(claim) = flights.claim("h.io", &digest()).await else {
            panic!("first asker owns")
        };
        let waiter = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move {
                matches!(flights.claim("h.io", &digest()).await, Flight::Done(r) if r == repo("h.io/repo/a"))
            })
        };
        tokio::task::yield_now().await;
        claim.done(&repo("h.io/repo/a"));
        assert!(waiter.await.expect("waiter"));
        // Another host is separate.
        assert!(matches!(
            flights.claim("other", &digest()).await,
            Flight::Owner(_)
        ));
    }

    #[tokio::test]
    async fn a_failed_owner_hands_over() {
        let flights = Arc::new(Flights::default());
        let Flight::Owner(claim) = flights.claim("h.io", &digest()).await else {
            panic!("owner")
        };
        let waiter = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move {
                matches!(flights.claim("h.io", &digest()).await, Flight::Owner(_))
            })
        };
        tokio::task::yield_now().await;
        drop(claim);
        assert!(
            waiter.await.expect("waiter"),
            "the waiter becomes the owner"
        );
    }
}
