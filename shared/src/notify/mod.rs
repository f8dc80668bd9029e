//! Notification sinks (being written).
