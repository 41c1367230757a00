//! Canonical JSON as python-tuf / securesystemslib produce it, the bytes every TUF signature covers.
//!
//! The rules, which must match securesystemslib's `encode_canonical` byte for byte or signatures
//! made by one side will not verify on the other:
//! - object keys sorted by Unicode code point (UTF-8 byte order gives the same order, so plain
//!   `String` comparison is right; sorting by the *escaped* form is not);
//! - strings escape only `"` and `\`; control characters and non-ASCII are written raw, and
//!   nothing is normalised (a non-NFC string stays non-NFC);
//! - integers only: a float is refused, because its text form is not canonical;
//! - no whitespace anywhere.

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    /// Canonical JSON has no floats; TUF metadata never needs one.
    #[error("canonical JSON refuses the non-integer number {0}")]
    Float(String),
}

/// The canonical JSON bytes of `value`.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            // serde_json keeps integers as i64/u64; anything else was written with a fraction
            // or exponent and is a float.
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(CanonicalError::Float(n.to_string()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map is only sorted when `preserve_order` is off,
            // and another crate in the build could switch that feature on.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for byte in s.bytes() {
        // Only these two are escaped; UTF-8 continuation bytes never equal them.
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(to_canonical_bytes(v).unwrap()).unwrap()
    }

    #[test]
    fn no_whitespace_and_literals() {
        let v = json!({"b": [1, -2, true, false, null], "a": {"x": "y"}});
        assert_eq!(canon(&v), r#"{"a":{"x":"y"},"b":[1,-2,true,false,null]}"#);
    }

    #[test]
    fn keys_sort_by_code_point_not_by_escaped_form() {
        // '"' (0x22) sorts after ' ' (0x20) but before '.'; escaping would put a '\' (0x5c) there
        // and move "fw\"x" after "fw.bin".
        let v = json!({"fw.bin": 1, "fw\"x": 2, "fw 2.bin": 3, "fw": 4});
        assert_eq!(canon(&v), r#"{"fw":4,"fw 2.bin":3,"fw\"x":2,"fw.bin":1}"#);
    }

    #[test]
    fn non_ascii_keys_sort_by_code_point() {
        // U+00E9 < U+FB01 < U+1F600: UTF-8 byte order and code-point order agree.
        let v = json!({"\u{1F600}": 1, "\u{FB01}": 2, "\u{e9}": 3, "z": 4});
        assert_eq!(
            canon(&v),
            "{\"z\":4,\"\u{e9}\":3,\"\u{FB01}\":2,\"\u{1F600}\":1}"
        );
    }

    #[test]
    fn only_quote_and_backslash_are_escaped() {
        let v = json!("a\"b\\c\nd\te\u{1}f\u{7f}");
        assert_eq!(canon(&v).as_bytes(), b"\"a\\\"b\\\\c\nd\te\x01f\x7f\"");
    }

    #[test]
    fn non_nfc_strings_are_kept_as_is() {
        // "e" + combining acute accent, not the precomposed U+00E9.
        let decomposed = "caf\u{65}\u{301}";
        let v = json!({ decomposed: decomposed });
        let out = canon(&v);
        assert_eq!(out, format!("{{\"{decomposed}\":\"{decomposed}\"}}"));
        assert!(!out.contains('\u{e9}'));
    }

    #[test]
    fn floats_are_refused() {
        let v: Value = serde_json::from_str(r#"{"a": [1.5]}"#).unwrap();
        assert!(matches!(
            to_canonical_bytes(&v),
            Err(CanonicalError::Float(_))
        ));
        let v: Value = serde_json::from_str("1.0").unwrap();
        assert!(to_canonical_bytes(&v).is_err());
    }

    #[test]
    fn large_integers_are_exact() {
        let v: Value =
            serde_json::from_str("[18446744073709551615, -9223372036854775808]").unwrap();
        assert_eq!(canon(&v), "[18446744073709551615,-9223372036854775808]");
    }
}
