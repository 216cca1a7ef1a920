//! What the portal keeps: sign-in accounts, sessions, invitations.

#[allow(unused_imports)]
use crate::Store;
