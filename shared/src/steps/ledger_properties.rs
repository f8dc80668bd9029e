//! Property tests of the run ledger's protocol as the steps use it: two workers handle the
//! messages of one run against the in-memory store, interleaved at every store operation in an
//! order proptest chooses, while workers are killed at random points (their message comes
//! back, as after an SQS visibility timeout) and messages are duplicated.
//!
//! Each message is what copy-digest does once a unit is copied with signing off: write the
//! unit's record, mark it final, and count the batch (`count_batch`, which concludes the run
//! and enqueues its notification). Afterwards, whatever the interleaving: the run is concluded
//! with the right counts, its notification was enqueued (at least once, at most once per
//! worker racing or killed after enqueuing: the notify step sends once per sink), the counter
//! is never behind the final markers, and a message delivered again later enqueues nothing
//! more.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;

use super::deps::Deps;
use super::error::StepError;
use super::progress::{Finalized, count_batch};
use crate::state::ledger::{Final, RunLedger, finals_key};
use crate::state::records::{
    Counts, DesiredIndex, RunRecord, RunStatus, Trigger, TriggerKind, UnitRecord, UnitStatus,
};

const RUN: &str = "r";

/// One delivery: a unit, and whether its copy succeeded.
type Message = (String, bool);

type Handling<'a> = Pin<Box<dyn Future<Output = Result<(), StepError>> + 'a>>;

/// What copy-digest does with one message once the copy is over (signing off).
async fn handle(deps: &Deps, unit: String, ok: bool, planned: usize) -> Result<(), StepError> {
    let unit = unit.as_str();
    let ledger = RunLedger::new(&deps.store, RUN);
    let status = if ok {
        UnitStatus::Done
    } else {
        UnitStatus::Failed
    };
    ledger.write_unit(&unit_record(unit, status)).await?;
    let how = if ok { Final::Done } else { Final::Failed };
    let uncounted = ledger.mark_final(unit, how).await?;
    let finalized = Finalized {
        run: RUN.to_owned(),
        unit: unit.to_owned(),
        planned,
        uncounted,
    };
    count_batch(deps, [&finalized]).await
}

fn unit_record(id: &str, status: UnitStatus) -> UnitRecord {
    UnitRecord {
        schema: "promoter.unit/v1".into(),
        run: RUN.into(),
        id: id.into(),
        source: "s".into(),
        digest: "d".into(),
        status,
        attempts: 1,
        worker: "w".into(),
        started_at: 1,
        finished_at: Some(2),
        seconds: Some(1.0),
        writes: 1,
        bytes: 1,
        error: None,
        policy: None,
    }
}

async fn recorded_run(deps: &Deps, units: usize) {
    let record = RunRecord {
        schema: "promoter.run/v1".into(),
        id: RUN.into(),
        trigger: Trigger {
            kind: TriggerKind::Revision,
            revision: "rev".into(),
            repository: None,
            parent: None,
        },
        units,
        started_at: 1,
        finished_at: None,
        status: RunStatus::Running,
        counts: Counts {
            pending: units,
            ..Counts::default()
        },
    };
    let desired = DesiredIndex {
        revision: "rev".into(),
        ..DesiredIndex::default()
    };
    RunLedger::new(&deps.store, RUN)
        .record(
            &record,
            &Vec::<String>::new(),
            Some((&desired.revision, &desired)),
        )
        .await
        .expect("the run is recorded");
}

/// Two workers and the queue they share.
struct Simulation<'a> {
    deps: &'a Deps,
    planned: usize,
    queue: VecDeque<Message>,
    workers: [Option<(Message, Handling<'a>)>; 2],
    kills: usize,
}

impl<'a> Simulation<'a> {
    /// One scheduling step of worker `w`: take a message if idle, then kill it (`kill`) or
    /// poll it once. False when there was nothing to do.
    fn step(&mut self, w: usize, kill: bool) -> bool {
        if self.workers[w].is_none() {
            let Some(message) = self.queue.pop_front() else {
                return false;
            };
            let future: Handling<'a> = Box::pin(handle(
                self.deps,
                message.0.clone(),
                message.1,
                self.planned,
            ));
            self.workers[w] = Some((message, future));
        }
        let Some((message, mut future)) = self.workers[w].take() else {
            return false;
        };
        if kill {
            self.kills += 1;
            self.queue.push_back(message);
            return true;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Pending => self.workers[w] = Some((message, future)),
            Poll::Ready(Ok(())) => {}
            // A retryable failure: the message comes back.
            Poll::Ready(Err(_)) => self.queue.push_back(message),
        }
        true
    }

    fn idle(&self) -> bool {
        self.queue.is_empty() && self.workers.iter().all(Option::is_none)
    }
}

async fn simulate(outcomes: Vec<bool>, duplicates: Vec<usize>, schedule: Vec<u8>) {
    let deps = Deps::in_memory();
    let planned = outcomes.len();
    recorded_run(&deps, planned).await;
    let mut queue: VecDeque<Message> = outcomes
        .iter()
        .enumerate()
        .map(|(i, ok)| (format!("u{i}"), *ok))
        .collect();
    for d in duplicates.iter() {
        let i = d % planned;
        queue.push_back((format!("u{i}"), outcomes[i]));
    }
    let mut sim = Simulation {
        deps: &deps,
        planned,
        queue,
        workers: [None, None],
        kills: 0,
    };
    for choice in schedule {
        let kill = choice % 16 == 15;
        sim.step(usize::from(choice & 1), kill);
        tokio::time::advance(Duration::from_millis(7)).await;
    }
    let mut steps = 0;
    while !sim.idle() {
        steps += 1;
        assert!(steps < 200_000, "the workers never finished");
        sim.step(steps % 2, false);
        tokio::time::advance(Duration::from_millis(7)).await;
    }
    let kills = sim.kills;
    drop(sim);

    let ledger = RunLedger::new(&deps.store, RUN);
    let record = ledger.run_record().await.expect("read").expect("the run");
    let done = outcomes.iter().filter(|ok| **ok).count();
    let expected = Counts {
        done,
        failed: planned - done,
        pending: 0,
    };
    assert_eq!(record.counts, expected);
    let status = if done == planned {
        RunStatus::Complete
    } else {
        RunStatus::Failed
    };
    assert_eq!(record.status, status);
    let counted: usize = deps
        .store
        .get(&finals_key(RUN))
        .await
        .expect("read")
        .map_or(0, |o| {
            String::from_utf8_lossy(&o.bytes)
                .trim()
                .parse()
                .unwrap_or(usize::MAX)
        });
    // Never behind the markers (the run would never conclude); ahead only by redeliveries of
    // units whose first delivery died between counting and recording it counted.
    assert!(
        (planned..=planned + kills + duplicates.len()).contains(&counted),
        "counter {counted} for {planned} units ({kills} kills, {} duplicates)",
        duplicates.len()
    );
    let notices = deps
        .queues
        .notify
        .receive(100)
        .await
        .expect("receive")
        .len();
    assert!(
        (1..=2 + kills).contains(&notices),
        "{notices} notices enqueued ({kills} workers killed)"
    );
    assert!(ledger.notified().await.expect("read"));
    // A late redelivery changes nothing and enqueues nothing.
    handle(&deps, "u0".to_owned(), outcomes[0], planned)
        .await
        .expect("handled");
    assert!(
        deps.queues
            .notify
            .receive(100)
            .await
            .is_ok_and(|m| m.is_empty())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_interleaving_concludes_and_notifies_the_run(
        outcomes in prop::collection::vec(prop::bool::weighted(0.8), 1..5),
        duplicates in prop::collection::vec(0usize..8, 0..4),
        schedule in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        runtime.block_on(simulate(outcomes, duplicates, schedule));
    }
}
