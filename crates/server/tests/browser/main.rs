//! Browser tests: the portal in headless Chromium, driven through chromedriver. One binary
//! (`cargo test -p deadbolt --test browser`); screenshots go to `target/screenshots/`.
//! Without Chromium they fail, unless DEADBOLT_SKIP_BROWSER=1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_pages;
mod harness;
mod journey;
mod layout;
mod passkeys;
mod people;
mod security;
#[path = "../support/smtp.rs"]
mod smtp;
