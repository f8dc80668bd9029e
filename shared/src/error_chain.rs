//! Printing an error with its causes on one line, for messages and records.

/// `error: cause: cause…`, following [`std::error::Error::source`].
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
