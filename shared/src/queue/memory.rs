//! An in-process queue with the same at-least-once contract as SQS: received messages stay
//! in flight until acknowledged, and [`MemoryQueue::redeliver`] returns the unacknowledged ones.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use super::Received;

/// A queue in this process.
#[derive(Default)]
pub struct MemoryQueue {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ready: VecDeque<String>,
    in_flight: BTreeMap<u64, String>,
    next: u64,
}

impl MemoryQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends one message.
    pub fn send(&self, body: &str) {
        self.state().ready.push_back(body.to_owned());
    }

    /// Takes up to `max` ready messages; they stay in flight until acknowledged.
    pub fn receive(&self, max: usize) -> Vec<Received> {
        let mut state = self.state();
        let mut out = Vec::new();
        while out.len() < max {
            let Some(body) = state.ready.pop_front() else {
                break;
            };
            state.next += 1;
            let id = state.next;
            state.in_flight.insert(id, body.clone());
            out.push(Received {
                body,
                receipt: id.to_string(),
            });
        }
        out
    }

    /// Acknowledges a message.
    pub fn acknowledge(&self, message: &Received) {
        if let Ok(id) = message.receipt.parse::<u64>() {
            self.state().in_flight.remove(&id);
        }
    }

    /// Puts every unacknowledged message back (as an expired SQS visibility timeout does).
    pub fn redeliver(&self) {
        let mut state = self.state();
        let pending: Vec<String> = std::mem::take(&mut state.in_flight).into_values().collect();
        state.ready.extend(pending);
    }

    /// Messages ready or in flight.
    pub fn len(&self) -> usize {
        let state = self.state();
        state.ready.len() + state.in_flight.len()
    }

    /// True when nothing is ready or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unacknowledged_messages_come_back() {
        let queue = MemoryQueue::default();
        queue.send("a");
        queue.send("b");
        let got = queue.receive(10);
        assert_eq!(
            got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        queue.acknowledge(&got[0]);
        assert!(queue.receive(10).is_empty(), "b is in flight");
        queue.redeliver();
        let again = queue.receive(10);
        assert_eq!(
            again.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        queue.acknowledge(&again[0]);
        assert!(queue.is_empty());
    }
}
