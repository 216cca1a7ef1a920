//! Check tokens: parsed and verified, never a panic. Half the inputs are tokens as sent; the
//! other half are claims (and a header) signed with the application's key, so that the checks
//! after the signature (audience, times, subject) are reached too.
#![no_main]

use chrono::{TimeZone, Utc};
use deadbolt_core::token::{self, TokenPolicy, VerifyingKey};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = [
        VerifyingKey::new(1u8, KEY),
        VerifyingKey::new(2u8, b"second key"),
    ];
    let policy = TokenPolicy::new(["https://api.example.com", "api.example.com:8443"]);
    let now = Utc.timestamp_opt(1_764_230_400, 0).unwrap();
    let token = if mode & 1 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_string(),
            Err(_) => return,
        }
    } else {
        // The claims as the fuzzer wrote them, signed as a client would.
        match serde_json::from_slice::<serde_json::Value>(rest) {
            Ok(claims) => token::sign_hs256(&claims, KEY),
            Err(_) => return,
        }
    };
    let Ok(parsed) = token::parse(&token) else {
        return;
    };
    let _ = parsed.issuer();
    if let Ok(v) = parsed.verify(&keys, &policy, now) {
        // Whatever was accepted names one account, within bounds, and was signed by a key.
        assert!(!v.subject.is_empty() && v.subject.len() <= 512);
        assert!(v.key_id == 1 || v.key_id == 2);
        // A token accepted with both keys is refused with neither.
        assert!(parsed.verify::<u8>(&[], &policy, now).is_err());
    }
});
