//! Lambda function sign (being written).

fn main() {}
