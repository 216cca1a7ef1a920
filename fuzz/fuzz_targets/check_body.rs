//! Check bodies: any bytes are answered (a context or a 400), never a panic, and what is kept
//! is bounded.
#![no_main]

use deadbolt_core::body::{parse_check_body, BodyError, MAX_FIELD, MAX_INTEGRATION_DATA};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_check_body(data) {
        Ok(c) => {
            assert!(
                std::str::from_utf8(data).is_ok(),
                "accepted bytes that are not UTF-8"
            );
            for f in [&c.ip, &c.device, &c.location, &c.integration_type] {
                assert!(f.as_deref().map_or(0, str::len) <= MAX_FIELD);
            }
            // Kept data is JSON (a truncation notice is a JSON string) and bounded.
            if let Some(d) = &c.integration_data {
                assert!(d.len() <= MAX_INTEGRATION_DATA);
            }
        }
        Err(BodyError::NotObject) => {
            let first = data.iter().find(|b| !b.is_ascii_whitespace());
            assert!(first.is_some() && first != Some(&b'{'));
        }
        Err(_) => {}
    }
});
