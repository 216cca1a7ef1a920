//! Deadbolt's domain rules, free of I/O: time is always a parameter.

pub mod account;
pub mod body;
pub mod clock;
pub mod decision;
pub mod duration;
pub mod error;
pub mod import;
pub mod normalize;
pub mod token;

pub use account::{AccountKey, AccountNames};
pub use clock::{Clock, FakeClock, SystemClock};
pub use decision::{
    decide, AccountState, Decision, Enrolment, PersonLocks, Reason, Schedule, UnenrolledPolicy,
};
pub use error::Error;
