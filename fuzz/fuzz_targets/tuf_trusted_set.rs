//! The TUF client's trusted set (spec §5.3–5.6): `TrustedSet::new`, `update_root`,
//! `update_timestamp`, `update_snapshot`, `update_targets` (top-level and delegated) and the
//! delegation searches `find_target` / `all_targets`, fed with fuzzed metadata after the
//! fixture repository's valid root (made by `ota-sign repo` with the fixture keys).
//!
//! The input is a list of records: an op byte, a u16 length, the payload. Op bits 0-2: 0
//! root (`new` when first, else `update_root`), 1 timestamp, 2 snapshot, 3 targets, 4 a
//! delegated role offered to searches (`NAME\0JSON`), 5 a delegated role loaded directly
//! (`NAME\0DELEGATOR\0JSON`), 6 a search for the payload as a target path, 7 freshness and
//! accessors. Bit 3: the payload is a `signed` object the harness signs with the role's key
//! (so the fuzzer gets past the signatures as a key holder would); bit 4: offered as the
//! cached copy; bit 5 (snapshot): first sign and load a timestamp listing it (length,
//! SHA-256, version); bit 6: sign with another role's key.
//!
//! Properties: the trusted timestamp version and the snapshot version it lists never go back;
//! a trusted snapshot is the version the trusted timestamp lists; a trusted targets role is
//! the version the snapshot lists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_core::keys::SigningKey;
use ota_core::tuf::keys::sign_role;
use ota_core::tuf::metadata::MetaFile;
use ota_core::tuf::trusted::{TrustError, TrustedSet};
use ota_fuzz::{
    rollout_key, root_key, snapshot_key, targets_key, timestamp_key, tuf_now, Cursor, FIXTURE_ROOT,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

fn envelope(signed: &Value, key: &SigningKey) -> Vec<u8> {
    match sign_role(key, signed) {
        Ok((keyid, sig)) => serde_json::to_vec(&json!({
            "signatures": [{"keyid": keyid, "sig": sig}],
            "signed": signed,
        }))
        .expect("JSON"),
        // No canonical form (a float): offered unsigned.
        Err(_) => serde_json::to_vec(&json!({"signatures": [], "signed": signed})).expect("JSON"),
    }
}

/// The payload as metadata bytes: as given, or its `signed` object signed by `key`.
fn metadata(payload: &[u8], sign: bool, key: &SigningKey) -> Vec<u8> {
    if sign {
        if let Ok(signed) = serde_json::from_slice::<Value>(payload) {
            return envelope(&signed, key);
        }
    }
    payload.to_vec()
}

fn split_nul(payload: &[u8]) -> (&str, &[u8]) {
    let at = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    let name = std::str::from_utf8(&payload[..at]).unwrap_or("");
    (name, payload.get(at + 1..).unwrap_or(&[]))
}

struct Watch {
    timestamp: u64,
    listed_snapshot: u64,
}

fn check_invariants(set: &TrustedSet, watch: &mut Watch) {
    if let Some(ts) = set.timestamp() {
        let v = ts.meta.common.version;
        assert!(
            v >= watch.timestamp,
            "timestamp went back from {} to {v}",
            watch.timestamp
        );
        let listed = ts.meta.snapshot.version;
        assert!(listed >= watch.listed_snapshot, "listed snapshot went back");
        watch.timestamp = v;
        watch.listed_snapshot = listed;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let mut set: Option<TrustedSet> = None;
    let mut delegated: HashMap<String, Vec<u8>> = HashMap::new();
    let mut watch = Watch {
        timestamp: 0,
        listed_snapshot: 0,
    };
    let now = tuf_now();
    let mut records = 0;
    while !input.is_empty() && records < 32 {
        records += 1;
        let op = input.u8();
        let payload = input.blob();
        let (sign, cache, link, wrong) = (
            op & 0x08 != 0,
            op & 0x10 != 0,
            op & 0x20 != 0,
            op & 0x40 != 0,
        );
        let kind = op & 7;
        let key_for = |own: &'static SigningKey| if wrong { targets_key() } else { own };
        if kind == 0 {
            let bytes = metadata(payload, sign, key_for(root_key()));
            match set.as_mut() {
                None => set = TrustedSet::new(&bytes, now).ok(),
                Some(s) => {
                    let _ = s.update_root(&bytes);
                }
            }
            continue;
        }
        let s = set.get_or_insert_with(|| {
            TrustedSet::new(FIXTURE_ROOT, now).expect("the fixture root is trusted")
        });
        match kind {
            1 => {
                let bytes = metadata(payload, sign, key_for(timestamp_key()));
                let _ = s.update_timestamp(&bytes, cache);
            }
            2 => {
                let bytes = metadata(payload, sign, key_for(snapshot_key()));
                if link {
                    let version = serde_json::from_slice::<Value>(payload)
                        .ok()
                        .and_then(|v| v.get("version").and_then(Value::as_u64))
                        .unwrap_or(1);
                    let ts_version = s.timestamp().map_or(1, |t| t.meta.common.version + 1);
                    let ts = json!({
                        "_type": "timestamp",
                        "spec_version": "1.0.31",
                        "version": ts_version,
                        "expires": "2035-01-01T00:00:00Z",
                        "meta": {"snapshot.json": {
                            "version": version,
                            "length": bytes.len(),
                            "hashes": {"sha256": hex::encode(Sha256::digest(&bytes))},
                        }},
                    });
                    let _ = s.update_timestamp(&envelope(&ts, timestamp_key()), false);
                }
                let ok = s.update_snapshot(&bytes, cache).is_ok();
                if ok {
                    let snap = s.snapshot().expect("trusted snapshot").meta.common.version;
                    let listed = s.timestamp().expect("timestamp").meta.snapshot.version;
                    assert_eq!(
                        snap, listed,
                        "snapshot trusted at another version than listed"
                    );
                }
            }
            3 => {
                let bytes = metadata(payload, sign, key_for(targets_key()));
                if s.update_targets(&bytes, "targets", "root", cache).is_ok() {
                    let v = s.targets("targets").expect("trusted").meta.common.version;
                    let listed = s.snapshot().expect("snapshot").meta.meta["targets.json"].version;
                    assert_eq!(v, listed, "targets trusted at another version than listed");
                }
            }
            4 => {
                let (name, rest) = split_nul(payload);
                delegated.insert(
                    name.to_owned(),
                    metadata(rest, sign, key_for(rollout_key())),
                );
            }
            5 => {
                let (name, rest) = split_nul(payload);
                let (delegator, rest) = split_nul(rest);
                let bytes = metadata(rest, sign, key_for(rollout_key()));
                let _ = s.update_targets(&bytes, name, delegator, cache);
            }
            6 => {
                let path = String::from_utf8_lossy(payload);
                let mut fetch = |role: &str, _: &MetaFile| -> Result<Vec<u8>, TrustError> {
                    if role == "targets" {
                        // The top-level role comes from records of kind 3 only.
                        return Err(TrustError::Order("not offered".into()));
                    }
                    delegated
                        .get(role)
                        .cloned()
                        .ok_or_else(|| TrustError::Order(format!("{role} not offered")))
                };
                let found = s.find_target(&path, &mut fetch);
                let all = s.all_targets(&[], &mut fetch);
                if ota_fuzz::debug() {
                    eprintln!(
                        "search {path:?}: {:?}",
                        found.map(|f| f.map(|(role, _)| role))
                    );
                    eprintln!(
                        "all targets: {:?}",
                        all.map(|a| (a.found.len(), a.unavailable))
                    );
                }
            }
            _ => {
                let _ = s.check_root_fresh();
                let _ = s.now();
                let _ = s.loaded_targets().count();
            }
        }
        if ota_fuzz::debug() {
            eprintln!(
                "record {records} op {op:#04x}: timestamp {:?} snapshot {:?} targets {:?}",
                s.timestamp().map(|t| t.meta.common.version),
                s.snapshot().map(|t| t.meta.common.version),
                s.loaded_targets()
                    .map(|(n, t)| (n.clone(), t.meta.common.version))
                    .collect::<Vec<_>>()
            );
        }
        check_invariants(s, &mut watch);
    }
});
