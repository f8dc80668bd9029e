//! Lambda function notify (being written).

fn main() {}
