//! The `penghubung` binary.
fn main() {}
