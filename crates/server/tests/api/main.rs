//! API tests: the real application on port 0, a fresh store and a fake clock per test.
//! One test binary (modules per area) keeps linking fast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checks;
mod cli;
mod decisions;
mod helpers;
mod isolation;
mod sdk;
mod served;
