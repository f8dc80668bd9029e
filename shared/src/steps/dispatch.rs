//! The five functions by name, and the queue-fed steps behind them: which handler a queue
//! message goes to, and what it returned.
//!
//! The in-process chain ([`super::local`]), the CLI and the Lambda adapters (the
//! `promoter-lambda` crate) all hand a message to [`message`] (or a decoded [`QueueMessage`] to
//! [`QueueMessage::handle`]), so a message is handled the same way wherever it is received.
//! How payloads arrive (SQS batches, Function URLs, EventBridge) is not decided here: that is
//! the adapters' business.

use std::str::FromStr;

use serde::Serialize;

use super::copy::Engines;
use super::deps::Deps;
use super::error::{StepError, malformed};
use super::messages::{CopyMessage, NotifyMessage, SignMessage, decode};
use super::progress::{Finalized, count_batch};
use super::{copy, notify, sign};

/// The functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Function {
    /// validate-manifest.
    ValidateManifest,
    /// copy-digest.
    CopyDigest,
    /// sign.
    Sign,
    /// notify.
    Notify,
    /// audit.
    Audit,
}

impl Function {
    /// Every function, in chain order.
    pub const ALL: [Function; 5] = [
        Function::ValidateManifest,
        Function::CopyDigest,
        Function::Sign,
        Function::Notify,
        Function::Audit,
    ];

    /// Its name (the binary's and the folder's).
    pub fn name(self) -> &'static str {
        match self {
            Function::ValidateManifest => "validate-manifest",
            Function::CopyDigest => "copy-digest",
            Function::Sign => "sign",
            Function::Notify => "notify",
            Function::Audit => "audit",
        }
    }
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Function {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Function::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Function::ALL.iter().map(|f| f.name()).collect();
                format!("no function {name:?}; one of {}", names.join(", "))
            })
    }
}

/// A message of one of the queue-fed functions (copy-digest, sign, notify), decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueMessage {
    /// copy-digest's.
    Copy(CopyMessage),
    /// sign's.
    Sign(SignMessage),
    /// notify's.
    Notify(NotifyMessage),
}

impl From<CopyMessage> for QueueMessage {
    fn from(message: CopyMessage) -> Self {
        QueueMessage::Copy(message)
    }
}

impl From<SignMessage> for QueueMessage {
    fn from(message: SignMessage) -> Self {
        QueueMessage::Sign(message)
    }
}

impl From<NotifyMessage> for QueueMessage {
    fn from(message: NotifyMessage) -> Self {
        QueueMessage::Notify(message)
    }
}

impl QueueMessage {
    /// Decodes a message body for `function`; validate-manifest and audit take no queue
    /// messages.
    pub fn decode(function: Function, body: &str) -> Result<Self, StepError> {
        match function {
            Function::CopyDigest => decode::<CopyMessage>("copy message", body).map(Into::into),
            Function::Sign => decode::<SignMessage>("sign message", body).map(Into::into),
            Function::Notify => decode::<NotifyMessage>("notify message", body).map(Into::into),
            Function::ValidateManifest | Function::Audit => Err(malformed(
                "queue message",
                format!("{} is not fed by a queue", function.name()),
            )),
        }
    }

    /// Runs the message's step with the batch's engines.
    pub async fn handle(&self, deps: &Deps, engines: &Engines) -> Result<Output, StepError> {
        Ok(match self {
            QueueMessage::Copy(message) => {
                Output::Copy(copy::copy_digest(message, deps, &engines.copy).await?)
            }
            QueueMessage::Sign(message) => {
                Output::Sign(sign::sign(message, deps, engines.sign.as_ref()).await?)
            }
            QueueMessage::Notify(message) => Output::Notify(notify::notify(message, deps).await?),
        })
    }
}

/// Handles one queue message body for `function` with the batch's engines.
pub async fn message(
    function: Function,
    body: &str,
    deps: &Deps,
    engines: &Engines,
) -> Result<Output, StepError> {
    QueueMessage::decode(function, body)?
        .handle(deps, engines)
        .await
}

/// What a queue-fed step returned.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// copy-digest's.
    Copy(copy::CopyOutcome),
    /// sign's.
    Sign(sign::SignOutcome),
    /// notify's.
    Notify(notify::NotifyOutcome),
}

impl Output {
    /// The unit this message made final, if any.
    pub fn finalized(&self) -> Option<&Finalized> {
        match self {
            Output::Copy(outcome) => outcome.finalized.as_ref(),
            Output::Sign(outcome) => outcome.finalized.as_ref(),
            Output::Notify(_) => None,
        }
    }
}

/// Counts the units a batch made final (see [`super::progress`]). On failure the messages
/// that made units final should come back (their redelivery counts the markers).
pub async fn count_outputs<'a>(
    deps: &Deps,
    outputs: impl IntoIterator<Item = &'a Output>,
) -> Result<(), StepError> {
    let finalized: Vec<&Finalized> = outputs.into_iter().filter_map(Output::finalized).collect();
    if finalized.is_empty() {
        return Ok(());
    }
    count_batch(deps, finalized).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_parse_by_name_and_messages_decode_by_function() {
        for function in Function::ALL {
            assert_eq!(function.name().parse::<Function>(), Ok(function));
            assert_eq!(function.to_string(), function.name());
        }
        assert!(
            "copy"
                .parse::<Function>()
                .is_err_and(|e| e.contains("copy-digest"))
        );
        let body = r#"{"run":"r","unit":"u"}"#;
        assert!(matches!(
            QueueMessage::decode(Function::CopyDigest, body),
            Ok(QueueMessage::Copy(_))
        ));
        assert!(matches!(
            QueueMessage::decode(Function::Sign, body),
            Ok(QueueMessage::Sign(_))
        ));
        assert!(QueueMessage::decode(Function::Notify, body).is_err());
        assert!(
            QueueMessage::decode(Function::Audit, body)
                .is_err_and(|e| e.to_string().contains("audit is not fed by a queue"))
        );
    }
}
