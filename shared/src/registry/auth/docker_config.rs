//! Docker config.json credentials (to be written).
