//! Printing plans (to be written).
