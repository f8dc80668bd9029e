//! Lambda function audit (being written).

fn main() {}
