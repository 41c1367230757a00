//! TUF metadata parsing, no signatures needed: the envelope (`Envelope::from_bytes`), the
//! typed views of every role (`Root`, `Timestamp`, `Snapshot`, `Targets::from_signed` with
//! delegations), key objects (ed25519, ECDSA P-256 and RSA public keys decoded from hex or
//! PEM) and the threshold count of a root over its own keys (what `TrustedSet::new` does),
//! role-name encoding and delegation path patterns.
//!
//! Properties: what the writer produces from a parsed role (`to_signed`) parses again to the
//! same entries; `encode_role_name` gives only unreserved characters and `%XX`
//! (its file names `N.NAME.json` are then one path segment, even for `.` or `..`); a pattern without wildcards
//! matches exactly itself. Input that is not JSON is read as `PATTERN\nPATH` for the glob
//! matcher.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_core::tuf::envelope::Envelope;
use ota_core::tuf::metadata::{encode_role_name, path_matches, Root, Snapshot, Targets, Timestamp};
use serde_json::Value;

fn check_role_name(name: &str) {
    let encoded = encode_role_name(name);
    assert!(
        encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "encoded role name {encoded:?} holds an unsafe byte"
    );
}

fn check_glob(pattern: &str, path: &str) {
    let matched = path_matches(pattern, path);
    if !pattern.contains(['*', '?', '[']) {
        assert_eq!(
            matched,
            pattern == path,
            "literal pattern {pattern:?} vs {path:?}"
        );
    }
    if pattern == path && !pattern.contains(['*', '?', '[']) {
        assert!(matched);
    }
}

fn roles(signed: &Value, envelope: Option<&Envelope>) {
    if let Ok(root) = Root::from_signed(signed) {
        if let (Some(env), Some(role)) = (envelope, root.role("root")) {
            let _ = env.verify_threshold("root", &root.keys, &role.keyids, role.threshold);
        }
        for key in root.keys.values() {
            let _ = key.identity();
        }
    }
    if let Ok(ts) = Timestamp::from_signed(signed) {
        let again = Timestamp::from_signed(&ts.to_signed()).expect("written timestamp parses");
        assert_eq!(again.snapshot, ts.snapshot);
        assert_eq!(again.common.version, ts.common.version);
    }
    if let Ok(snap) = Snapshot::from_signed(signed) {
        let again = Snapshot::from_signed(&snap.to_signed()).expect("written snapshot parses");
        assert_eq!(again.meta, snap.meta);
    }
    if let Ok(targets) = Targets::from_signed(signed, "targets") {
        let again =
            Targets::from_signed(&targets.to_signed(), "targets").expect("written targets parse");
        assert_eq!(again.targets, targets.targets);
        assert_eq!(again.delegations, targets.delegations);
        if let Some(d) = &targets.delegations {
            for role in &d.roles {
                check_role_name(&role.name);
                for path in targets.targets.keys().take(8) {
                    let _ = role.is_trusted_for(path);
                    for pattern in role.paths.iter().flatten().take(8) {
                        check_glob(pattern, path);
                    }
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match Envelope::from_bytes(data, "root") {
        Ok(envelope) => roles(&envelope.signed, Some(&envelope)),
        Err(_) => match serde_json::from_slice::<Value>(data) {
            Ok(value) => roles(&value, None),
            Err(_) => {
                let text = String::from_utf8_lossy(data);
                let (pattern, path) = text.split_once('\n').unwrap_or((&text, ""));
                if pattern.len() <= 256 && path.len() <= 256 {
                    check_glob(pattern, path);
                    check_role_name(pattern);
                }
            }
        },
    }
});
