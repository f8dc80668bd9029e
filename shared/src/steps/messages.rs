//! The messages that chain the steps through queues, as JSON.
//!
//! validate-manifest sends one [`CopyMessage`] per unit; copy-digest sends a [`SignMessage`]
//! per promoted unit (when signing is on); the unit that finishes a run sends a
//! [`NotifyMessage::Run`]; the auditor sends a [`NotifyMessage::Alert`] per unapproved push;
//! validate-manifest sends a [`NotifyMessage::Invalid`] for invalid manifests on the branch.
//! Delivery is at least once: every handler is idempotent on its message.

use serde::{Deserialize, Serialize};

use super::error::{StepError, malformed};

/// Copy one unit of a run to all its destinations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyMessage {
    /// The run id.
    pub run: String,
    /// The unit id.
    pub unit: String,
}

/// Sign one promoted unit's digest in all its destinations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignMessage {
    /// The run id.
    pub run: String,
    /// The unit id.
    pub unit: String,
}

/// Tell people something.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "notify", rename_all = "snake_case", deny_unknown_fields)]
pub enum NotifyMessage {
    /// A run finished: send its summary.
    Run {
        /// The run id.
        run: String,
    },
    /// The auditor found a push nobody approved.
    Alert {
        /// The audit record's key in state.
        key: String,
    },
    /// Invalid manifests reached the promoted branch.
    Invalid {
        /// The [`super::validate::InvalidRecord`]'s key in state.
        key: String,
    },
    /// A reconcile found drift only people may judge (tags moved, tags nobody asked for).
    Drift {
        /// The [`super::reconcile::DriftRecord`]'s key in state.
        key: String,
    },
}

/// Encodes a message.
pub fn encode<T: Serialize>(message: &T) -> String {
    // These plain structs always serialize.
    serde_json::to_string(message).unwrap_or_default()
}

/// Decodes a message body; `what` names the message kind in the error.
pub fn decode<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    body: &str,
) -> Result<T, StepError> {
    serde_json::from_str(body).map_err(|e| malformed(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_refuse_strangers() {
        let copy = CopyMessage {
            run: "r".into(),
            unit: "u".into(),
        };
        assert_eq!(
            decode::<CopyMessage>("copy message", &encode(&copy)).ok(),
            Some(copy)
        );
        let alert = NotifyMessage::Alert {
            key: "audit/k".into(),
        };
        assert_eq!(encode(&alert), r#"{"notify":"alert","key":"audit/k"}"#);
        assert!(decode::<CopyMessage>("copy message", r#"{"run":"r"}"#).is_err());
        assert!(decode::<CopyMessage>("copy message", r#"{"run":"r","unit":"u","x":1}"#).is_err());
    }
}
