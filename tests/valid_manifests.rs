//! Valid manifests (to be written).
