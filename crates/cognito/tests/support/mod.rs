//! What the end-to-end test and the Lambda benchmark share: the Runtime API emulator, function
//! processes, the real Deadbolt server, and Cognito events.
#![allow(dead_code)]

pub mod events;
pub mod function;
#[path = "../../../server/tests/support/pki.rs"]
pub mod pki;
pub mod runtime_api;
pub mod server;
