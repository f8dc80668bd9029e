//! The ledger's verbs on the in-memory store: markers, the counter, reopening, concluding.

use super::*;
use crate::state::MemoryStore;
use crate::state::records::{
    Counts, RunRecord, RunStatus, Trigger, TriggerKind, UnitFailure, UnitRecord, UnitStatus,
};

fn run_record(units: usize) -> RunRecord {
    RunRecord {
        schema: "promoter.run/v1".into(),
        id: "r".into(),
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
        counts: Counts::default(),
    }
}

fn unit_record(id: &str, status: UnitStatus) -> UnitRecord {
    UnitRecord {
        schema: "promoter.unit/v1".into(),
        run: "r".into(),
        id: id.into(),
        source: "s".into(),
        digest: "d".into(),
        status,
        attempts: 1,
        worker: "w".into(),
        started_at: 1,
        finished_at: None,
        seconds: None,
        writes: 0,
        bytes: 0,
        error: None,
        policy: None,
    }
}

async fn recorded(units: usize) -> StateStore {
    let store = StateStore::from(MemoryStore::default());
    let desired = crate::state::records::DesiredIndex {
        revision: "rev".into(),
        ..Default::default()
    };
    RunLedger::new(&store, "r")
        .record(
            &run_record(units),
            &Vec::<String>::new(),
            Some((&desired.revision, &desired)),
        )
        .await
        .expect("recorded");
    store
}

#[tokio::test]
async fn each_unit_is_counted_until_recorded_counted_and_a_reopened_one_uncounted() {
    let store = recorded(2).await;
    let ledger = RunLedger::new(&store, "r");
    assert_eq!(ledger.mark_final("a", Final::Done).await.ok(), Some(true));
    // Redelivered before it was counted: still to count.
    assert_eq!(ledger.mark_final("a", Final::Done).await.ok(), Some(true));
    assert_eq!(ledger.mark_final("b", Final::Failed).await.ok(), Some(true));
    assert_eq!(ledger.count_finals(&["a", "b"]).await.ok(), Some(2));
    assert_eq!(ledger.mark_final("a", Final::Done).await.ok(), Some(false));
    assert_eq!(ledger.failed_units().await.ok(), Some(vec!["b".to_owned()]));
    ledger.mark_notified().await.expect("marked");
    ledger.reopen("b").await.expect("reopened");
    assert!(ledger.failed_units().await.is_ok_and(|u| u.is_empty()));
    assert_eq!(ledger.final_units().await.ok(), Some(vec!["a".to_owned()]));
    assert!(
        !ledger.notified().await.expect("read"),
        "notified again later"
    );
    // Reopening uncounted b: a + b counted, then b again.
    assert_eq!(ledger.mark_final("b", Final::Done).await.ok(), Some(true));
    assert_eq!(ledger.count_finals(&["b"]).await.ok(), Some(2));
    // Reopening a unit that is not final (redriven in flight) leaves the counter alone.
    ledger.reopen("c").await.expect("reopened");
    assert_eq!(ledger.count_finals(&[]).await.ok(), Some(2));
}

#[tokio::test]
async fn recording_twice_keeps_the_first_record_and_points_at_the_revision() {
    let store = recorded(3).await;
    let ledger = RunLedger::new(&store, "r");
    let again = ledger
        .record(
            &run_record(99),
            &Vec::<String>::new(),
            Some(("", &crate::state::records::DesiredIndex::default())),
        )
        .await
        .expect("recorded");
    assert_eq!(again.units, 3);
    let current = store
        .get(DESIRED_CURRENT)
        .await
        .expect("read")
        .expect("set");
    assert_eq!(&current.bytes[..], b"rev");
    assert!(
        store
            .get(&desired_key("rev"))
            .await
            .expect("read")
            .is_some()
    );
}

#[tokio::test]
async fn concluding_counts_records_and_this_workers_units() {
    let store = recorded(3).await;
    let ledger = RunLedger::new(&store, "r");
    ledger
        .write_unit(&unit_record("a", UnitStatus::Done))
        .await
        .expect("written");
    ledger
        .write_unit(&unit_record("b", UnitStatus::Running))
        .await
        .expect("written");
    let record = ledger.conclude(&[]).await.expect("concluded");
    assert_eq!(record.status, RunStatus::Running);
    assert_eq!(
        record.counts,
        Counts {
            done: 1,
            failed: 0,
            pending: 2
        }
    );
    // This worker's units count as it saw them, whatever their records say yet.
    let record = ledger
        .conclude(&[("b".into(), true), ("c".into(), false)])
        .await
        .expect("concluded");
    assert_eq!(record.status, RunStatus::Failed);
    assert!(record.finished_at.is_some());
    // A failed unit's record says why.
    let failure = UnitFailure {
        message: "signing: refused".into(),
        retryable: false,
    };
    ledger.fail_unit("a", &failure).await.expect("failed");
    ledger
        .fail_unit("zz", &failure)
        .await
        .expect("nothing to mark");
    let (a, _) = ledger.unit_record("a").await.expect("read").expect("a");
    assert_eq!((a.status, a.error), (UnitStatus::Failed, Some(failure)));
    assert!(ledger.unit_record("zz").await.expect("read").is_none());
}

/// What `desired/current` names.
async fn current(store: &StateStore) -> String {
    let object = store
        .get(DESIRED_CURRENT)
        .await
        .expect("read")
        .expect("set");
    String::from_utf8_lossy(&object.bytes).into_owned()
}

async fn desire(store: &StateStore, revision: &str, parent: Option<&str>) {
    let index = crate::state::records::DesiredIndex {
        revision: revision.into(),
        ..Default::default()
    };
    record_desired(store, &index.revision, &index, parent)
        .await
        .expect("recorded");
}

#[tokio::test]
async fn revisions_move_forward_only() {
    let store = StateStore::from(MemoryStore::default());
    desire(&store, "a", None).await;
    desire(&store, "b", Some("a")).await;
    desire(&store, "c", Some("b")).await;
    assert_eq!(current(&store).await, "c");
    // b delivered again, late: recorded already, c stays current.
    desire(&store, "b", Some("a")).await;
    assert_eq!(current(&store).await, "c");
    // e follows x, which was never seen: e moves on by arrival; x, delivered late, is older
    // than e (e names it as its parent) and does not take over.
    desire(&store, "e", Some("x")).await;
    assert_eq!(
        current(&store).await,
        "e",
        "an unknown parent: arrival order"
    );
    desire(&store, "x", Some("c")).await;
    assert_eq!(
        current(&store).await,
        "e",
        "x came before e, which names it as parent"
    );
    // An on-call request for a recorded older revision does not go back either.
    desire(&store, "a", None).await;
    assert_eq!(current(&store).await, "e");
    // A new revision after e moves on; every index is recorded.
    desire(&store, "f", Some("e")).await;
    assert_eq!(current(&store).await, "f");
    for revision in ["a", "b", "c", "e", "x", "f"] {
        assert!(
            store
                .get(&desired_key(revision))
                .await
                .expect("read")
                .is_some()
        );
    }
}
