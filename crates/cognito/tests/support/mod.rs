//! What the end-to-end test and the Lambda benchmark share: the Runtime API emulator, function
//! processes, the real Deadbolt server, and Cognito events.
#![allow(dead_code)]

pub mod events;
pub mod function;
pub mod runtime_api;
pub mod server;
