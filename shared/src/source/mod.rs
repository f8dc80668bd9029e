//! Where manifests come from (being written).
