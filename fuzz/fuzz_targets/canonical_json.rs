//! Canonical JSON (`ota_core::tuf::canonical::to_canonical_bytes`), the bytes every TUF
//! signature covers, on any JSON text.
//!
//! Properties: canonical bytes are a fixed point (parsing them and encoding again gives the
//! same bytes) and, when no string holds a control character (written raw, as
//! securesystemslib does, which JSON parsers refuse), they parse back to the same value; no whitespace appears outside strings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_core::tuf::canonical::to_canonical_bytes;
use serde_json::Value;

fn has_control(v: &Value) -> bool {
    let bad = |s: &str| s.chars().any(|c| c < ' ');
    match v {
        Value::String(s) => bad(s),
        Value::Array(a) => a.iter().any(has_control),
        Value::Object(m) => m.iter().any(|(k, v)| bad(k) || has_control(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(canonical) = to_canonical_bytes(&value) else {
        return;
    };
    if has_control(&value) {
        return;
    }
    let again: Value = serde_json::from_slice(&canonical).expect("canonical bytes are JSON");
    assert_eq!(again, value, "canonical bytes parse to another value");
    assert_eq!(
        to_canonical_bytes(&again).expect("still canonical"),
        canonical,
        "canonical bytes are not a fixed point"
    );
    // Outside strings there is no whitespace: the text minus its strings has none.
    let mut in_string = false;
    let mut escaped = false;
    for &b in &canonical {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else {
            assert!(!b.is_ascii_whitespace(), "whitespace outside strings");
        }
    }
});
