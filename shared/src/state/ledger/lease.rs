//! Leases: exactly one worker copies a unit at a time.
//!
//! A lease is the object `leases/<unit-id>`, created with create-if-absent, renewed and taken
//! over with update-if-version-matches, so two workers racing for it cannot both win. A lease
//! whose holder stopped renewing it expires; on the holder's own machine a dead holder is
//! recognised at once (its process is gone), so a rerun after `kill -9` resumes without waiting.

use std::time::Duration;

use super::cas::{self, Decision, Modified};
use super::lease_key;
use crate::state::records::{LeaseRecord, encode, now, read};
use crate::state::{StateError, StateStore, Version};

/// Who is working: `host:pid:start-time`, unique per process even across pid reuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    /// The identity written into leases and unit records.
    pub id: String,
}

impl Worker {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Worker {
            id: format!(
                "{}:{pid}:{}",
                host_name(),
                start_time(pid).unwrap_or_default()
            ),
        }
    }

    /// True when `owner` is a process of this machine that no longer runs.
    fn is_dead(owner: &str) -> bool {
        let mut parts = owner.rsplitn(3, ':');
        let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        if host != host_name() {
            return false;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            return false;
        };
        start_time(pid).is_none_or(|running| running != start)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), if it runs.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

/// A lease held by this worker.
#[derive(Debug)]
pub struct Lease {
    unit: String,
    record: LeaseRecord,
    version: Version,
}

/// The outcome of asking for a lease.
#[derive(Debug)]
pub enum Claim {
    /// This worker holds it now.
    Acquired(Lease),
    /// Another live worker holds it.
    HeldBy(LeaseRecord),
}

/// Asks for the lease of `unit`, for `ttl`: created when free, taken over when its holder
/// stopped renewing it (or died on this machine), else left to its holder.
pub async fn acquire(
    store: &StateStore,
    unit: &str,
    run: &str,
    worker: &Worker,
    ttl: Duration,
) -> Result<Claim, StateError> {
    let key = lease_key(unit);
    let record = LeaseRecord {
        schema: "promoter.lease/v1".to_owned(),
        unit: unit.to_owned(),
        run: run.to_owned(),
        owner: worker.id.clone(),
        expires_at: now() + ttl.as_secs(),
    };
    let mut previous = None;
    let asked = cas::modify(store, &key, "lease", |held: Option<LeaseRecord>| {
        Ok(match held {
            Some(held) if held.expires_at > now() && !Worker::is_dead(&held.owner) => {
                Decision::Keep(held)
            }
            Some(held) => {
                previous = Some(held.owner);
                Decision::Write(record.clone())
            }
            None => {
                previous = None;
                Decision::Write(record.clone())
            }
        })
    })
    .await?;
    if let (Modified::Written(..), Some(previous)) = (&asked, &previous) {
        tracing::info!(unit, %previous, "took over an expired lease");
    }
    Ok(match asked {
        Modified::Written(record, version) => Claim::Acquired(Lease {
            unit: unit.to_owned(),
            record,
            version,
        }),
        Modified::Kept(held) => Claim::HeldBy(held),
    })
}

impl Lease {
    /// Extends the lease by `ttl`; false when it was lost (taken over as expired).
    pub async fn renew(&mut self, store: &StateStore, ttl: Duration) -> Result<bool, StateError> {
        let mut record = self.record.clone();
        record.expires_at = now() + ttl.as_secs();
        match store
            .update(&lease_key(&self.unit), encode(&record), &self.version)
            .await?
        {
            Some(version) => {
                self.record = record;
                self.version = version;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Runs `work` while renewing the lease every third of `ttl`, so that work taking longer
    /// than `ttl` keeps it. A lease lost meanwhile (taken over as expired, e.g. after a long
    /// pause) is logged and the work finishes anyway: every step under a lease is idempotent.
    /// A state error while renewing ends the wait with that error (the work is dropped).
    pub async fn hold_while<T>(
        &mut self,
        store: &StateStore,
        ttl: Duration,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, StateError> {
        tokio::pin!(work);
        let mut renewals = tokio::time::interval(ttl / 3);
        renewals.tick().await;
        loop {
            tokio::select! {
                done = &mut work => return Ok(done),
                _ = renewals.tick() => {
                    // Boxed: a state write's future is large, and this one would otherwise
                    // sit inline in every future holding a lease.
                    if !Box::pin(self.renew(store, ttl)).await? {
                        tracing::warn!(lease = %self.unit, "lease lost while working; finishing anyway (every step is idempotent)");
                    }
                }
            }
        }
    }

    /// Gives the lease up (if it is still this worker's).
    pub async fn release(self, store: &StateStore) -> Result<(), StateError> {
        let key = lease_key(&self.unit);
        match read::<LeaseRecord>(store, &key, "lease").await? {
            Some((held, _)) if held.owner == self.record.owner => store.delete(&key).await,
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[tokio::test]
    async fn one_holder_at_a_time_and_dead_holders_are_taken_over() {
        let store = StateStore::from(MemoryStore::default());
        let me = Worker::current();
        let other = Worker {
            id: "elsewhere:1:1".to_owned(),
        };
        let ttl = Duration::from_secs(60);
        let Claim::Acquired(lease) = acquire(&store, "u1", "r", &me, ttl).await.expect("acquire")
        else {
            panic!("a free lease is acquired")
        };
        assert!(
            matches!(acquire(&store, "u1", "r", &other, ttl).await, Ok(Claim::HeldBy(h)) if h.owner == me.id)
        );
        lease.release(&store).await.expect("release");
        assert!(matches!(
            acquire(&store, "u1", "r", &other, ttl).await,
            Ok(Claim::Acquired(_))
        ));
        // A holder on this machine whose process is gone: taken over at once.
        let dead = Worker {
            id: format!("{}:999999999:0", host_name()),
        };
        let Claim::Acquired(_) = acquire(&store, "u2", "r", &dead, ttl)
            .await
            .expect("acquire")
        else {
            panic!("free")
        };
        assert!(matches!(
            acquire(&store, "u2", "r", &me, ttl).await,
            Ok(Claim::Acquired(_))
        ));
        // An expired lease of another machine: taken over.
        let Claim::Acquired(_) = acquire(&store, "u3", "r", &other, Duration::ZERO)
            .await
            .expect("acquire")
        else {
            panic!("free")
        };
        assert!(matches!(
            acquire(&store, "u3", "r", &me, ttl).await,
            Ok(Claim::Acquired(_))
        ));
    }

    /// Work outlasting the TTL keeps the lease (renewed every third of it); without renewal
    /// the same wait would let another worker take it over. Real time: expiries are seconds.
    #[tokio::test]
    async fn work_longer_than_the_ttl_keeps_the_lease() {
        let store = StateStore::from(MemoryStore::default());
        let holder = Worker {
            id: "elsewhere:1:1".to_owned(),
        };
        let ttl = Duration::from_secs(2);
        let Claim::Acquired(mut lease) = acquire(&store, "u", "r", &holder, ttl)
            .await
            .expect("acquire")
        else {
            panic!("a free lease is acquired")
        };
        let work = tokio::time::sleep(Duration::from_millis(3_500));
        lease
            .hold_while(&store, ttl, Box::pin(work))
            .await
            .expect("renewed");
        assert!(
            matches!(acquire(&store, "u", "r", &Worker::current(), ttl).await, Ok(Claim::HeldBy(h)) if h.owner == holder.id),
            "still held after 3.5 s of a 2 s lease"
        );
        // The same wait without renewal: expired, taken over.
        let Claim::Acquired(_) = acquire(&store, "v", "r", &holder, ttl)
            .await
            .expect("acquire")
        else {
            panic!("free")
        };
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        assert!(matches!(
            acquire(&store, "v", "r", &Worker::current(), ttl).await,
            Ok(Claim::Acquired(_))
        ));
    }

    #[test]
    fn this_process_is_alive() {
        assert!(!Worker::is_dead(&Worker::current().id));
    }
}
