//! Malformed manifests (to be written).
