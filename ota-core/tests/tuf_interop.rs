//! Interoperability with real python-tuf / securesystemslib, run from the venv that
//! `scripts/python-venv.sh` creates. A missing venv fails the test: a silent skip would let the
//! interop claim go unchecked.
#![allow(clippy::unwrap_used)]

use ota_core::tuf::canonical::to_canonical_bytes;
use ota_core::tuf::keys::TufKey;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn python() -> PathBuf {
    let p = match std::env::var_os("OTA_TUF_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-tuf/bin/python"),
    };
    assert!(
        p.exists(),
        "python-tuf venv not found at {}: run scripts/python-venv.sh (or set OTA_TUF_PYTHON)",
        p.display()
    );
    p
}

fn run_python(script: &str, stdin: &[u8]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tuf")
        .join(script);
    let mut child = Command::new(python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn canonical_bytes_equal_securesystemslib() {
    let values: Vec<Value> = vec![
        json!({"fw": 1, "fw 2.bin": 2, "fw\"x": 3, "fw.bin": 4, "fw\\y": 5}),
        json!({"\u{1F600}": 1, "\u{FB01}": 2, "\u{e9}": 3, "Z": 4, "a": [true, false, null]}),
        json!({"ctl": "a\u{1}b\nc\td\u{7f}\u{1f}", "quote": "\"\\"}),
        json!({"custom": {"name": "caf\u{65}\u{301}", "nfc": "caf\u{e9}"}}),
        json!({"n": [0, -1, 9007199254740993_i64, 18446744073709551615_u64]}),
        json!({"signed": {"_type": "targets", "spec_version": "1.0.31", "version": 7,
               "expires": "2030-01-01T00:00:00Z", "targets": {"fw 2.bin": {"length": 3,
               "hashes": {"sha256": "00"}, "custom": {"x": {}}}}}, "signatures": []}),
    ];
    let input = serde_json::to_vec(&values).unwrap();
    let lines = run_python("canonical.py", &input);
    let theirs: Vec<&str> = lines.lines().collect();
    assert_eq!(theirs.len(), values.len());
    for (value, their_hex) in values.iter().zip(theirs) {
        let ours = to_canonical_bytes(value).unwrap();
        assert_eq!(
            hex::encode(&ours),
            their_hex,
            "canonical bytes differ for {value}: ours {}",
            String::from_utf8_lossy(&ours)
        );
    }
}

#[test]
fn ecdsa_and_rsa_signatures_by_securesystemslib_verify() {
    let signed = json!({"_type": "targets", "version": 3, "targets": {"fw \u{e9}.bin": {}}});
    let message = to_canonical_bytes(&signed).unwrap();
    let mut tampered = message.clone();
    tampered[0] ^= 1; // the same byte sign_vectors.py flips
    let out: Value = serde_json::from_str(&run_python("sign_vectors.py", &message)).unwrap();
    let vectors = out["vectors"].as_array().unwrap();
    let mut schemes_seen = Vec::new();
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let key = TufKey::from_value(&v["key"]).unwrap();
        if let Some(id) = v["keyid"].as_str() {
            assert_eq!(
                key.key_id(),
                id,
                "{name}: key id differs from securesystemslib's"
            );
        }
        let signatures = v["signatures"].as_array().unwrap();
        assert!(!signatures.is_empty(), "{name}: no signatures");
        for sig in signatures {
            let sig = sig.as_str().unwrap();
            assert!(key.verifies(&message, sig), "{name}: {sig} refused");
            assert!(
                !key.verifies(&tampered, sig),
                "{name}: {sig} accepted a tampered message"
            );
        }
        schemes_seen.push((key.keytype().to_owned(), key.scheme().to_owned()));
    }
    for expected in [
        ("ecdsa", "ecdsa-sha2-nistp256"),
        ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256"),
        ("rsa", "rsassa-pss-sha256"),
    ] {
        assert!(
            schemes_seen
                .iter()
                .any(|(t, s)| (t.as_str(), s.as_str()) == expected),
            "no {expected:?} vector from sign_vectors.py"
        );
    }
}
