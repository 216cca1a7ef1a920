//! API tests: the real application on port 0, a fresh store and a fake clock per test.
//! One test binary (modules per area) keeps linking fast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_pages;
mod alerts;
mod backup;
mod caches;
mod checks;
mod cli;
mod config_file;
mod decisions;
mod faults;
mod fidelity;
mod first_run;
mod forms;
mod helpers;
mod hostile;
mod isolation;
mod logs;
mod openapi;
mod passkeys;
mod people;
#[path = "../support/pki.rs"]
mod pki;
mod portal;
mod replicas;
mod retention;
mod sdk;
mod served;
#[path = "../support/smtp.rs"]
mod smtp;
mod tenant;
mod throttling;
mod tls;
mod webhooks;
