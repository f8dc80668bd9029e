//! Lambda function copy-digest (being written).

fn main() {}
