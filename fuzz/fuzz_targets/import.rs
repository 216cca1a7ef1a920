//! SDK import payloads: any bytes are rows or a 400, never a panic; accepted rows are within the
//! row limit and came from an array of objects.
#![no_main]

use deadbolt_core::import::{parse_import, MAX_IMPORT_ROWS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rows) = parse_import(data) {
        assert!(rows.len() <= MAX_IMPORT_ROWS);
        let v: serde_json::Value = serde_json::from_slice(data).expect("accepted rows are JSON");
        let list = v.as_array().expect("accepted rows are an array");
        assert_eq!(list.len(), rows.len());
        assert!(list.iter().all(serde_json::Value::is_object));
    }
});
