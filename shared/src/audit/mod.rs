//! Auditing production pushes (being written).
