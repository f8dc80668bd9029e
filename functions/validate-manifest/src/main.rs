//! Lambda function validate-manifest (being written).

fn main() {}
