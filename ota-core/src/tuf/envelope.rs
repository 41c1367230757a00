//! The signed envelope `{"signed": ..., "signatures": [{"keyid", "sig"}]}` and the threshold
//! count over it.
//!
//! Signatures are checked over the canonical bytes of `signed` as received (a
//! `serde_json::Value`, unknown fields included), never over a re-serialisation of parsed structs:
//! a field we do not model would otherwise vanish and break every signature.

use super::canonical::{to_canonical_bytes, CanonicalError};
use super::keys::TufKey;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Why an envelope could not be read or did not reach its threshold.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The bytes are not JSON or lack `signed` / `signatures`.
    #[error("{role}: malformed metadata envelope: {detail}")]
    Malformed {
        /// The role file being read.
        role: String,
        /// What was wrong.
        detail: String,
    },
    /// `signed` has no canonical form.
    #[error("{role}: {source}")]
    Canonical {
        /// The role file being read.
        role: String,
        /// The canonical JSON error.
        source: CanonicalError,
    },
    /// Two signatures name the same key id: the specification requires them to be unique, and
    /// such metadata is invalid as a whole (python-tuf cannot even represent it).
    #[error("{role}: the signatures name key id {keyid} more than once (key ids must be unique)")]
    DuplicateKeyId {
        /// The role file being read.
        role: String,
        /// The repeated key id.
        keyid: String,
    },
    /// Fewer distinct authorised keys signed than the threshold requires.
    #[error("{role}: {valid} of {threshold} required signatures")]
    ThresholdNotMet {
        /// The role file being checked.
        role: String,
        /// Distinct authorised keys with a valid signature.
        valid: usize,
        /// The role's threshold.
        threshold: usize,
    },
}

/// A parsed envelope: `signed` kept as received, plus its signatures.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The signed object exactly as received.
    pub signed: Value,
    /// `(keyid, hex signature)` pairs in received order.
    pub signatures: Vec<(String, String)>,
}

impl Envelope {
    /// Parses metadata bytes; `role` names the file in errors.
    pub fn from_bytes(bytes: &[u8], role: &str) -> Result<Self, EnvelopeError> {
        let malformed = |detail: String| EnvelopeError::Malformed {
            role: role.to_owned(),
            detail,
        };
        let mut value: Value =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        let signed = value
            .get_mut("signed")
            .map(Value::take)
            .filter(Value::is_object)
            .ok_or_else(|| malformed("no 'signed' object".into()))?;
        let list = value
            .get("signatures")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("no 'signatures' array".into()))?;
        let mut signatures = Vec::with_capacity(list.len());
        for entry in list {
            let keyid = entry.get("keyid").and_then(Value::as_str);
            let sig = entry.get("sig").and_then(Value::as_str);
            match (keyid, sig) {
                (Some(k), Some(s)) => signatures.push((k.to_owned(), s.to_owned())),
                _ => return Err(malformed("a signature lacks 'keyid' or 'sig'".into())),
            }
        }
        let envelope = Self { signed, signatures };
        envelope.check_unique_keyids(role)?;
        Ok(envelope)
    }

    /// Spec §4.2.1 (object format): "The keyid MUST be unique in the \"signatures\" array".
    fn check_unique_keyids(&self, role: &str) -> Result<(), EnvelopeError> {
        let mut seen = BTreeSet::new();
        for (keyid, _) in &self.signatures {
            if !seen.insert(keyid.as_str()) {
                return Err(EnvelopeError::DuplicateKeyId {
                    role: role.to_owned(),
                    keyid: keyid.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks that at least `threshold` distinct keys among `authorised` (key ids looked up in
    /// `keys`) made a valid signature. Signatures naming one key id twice make the envelope
    /// invalid; one key listed under several ids (or spelled several ways) counts once;
    /// signatures by keys that are not authorised, unknown, or of an unsupported scheme do not
    /// count.
    pub fn verify_threshold(
        &self,
        role: &str,
        keys: &HashMap<String, TufKey>,
        authorised: &[String],
        threshold: usize,
    ) -> Result<(), EnvelopeError> {
        let bytes =
            to_canonical_bytes(&self.signed).map_err(|source| EnvelopeError::Canonical {
                role: role.to_owned(),
                source,
            })?;
        self.check_unique_keyids(role)?;
        // Distinct keys are counted by the decoded public key, not by the label they are listed
        // under nor by the key object's spelling: python-tuf accepts arbitrary labels, and one
        // key listed under two labels (say its hex in lower and in upper case) must count once.
        let mut valid: BTreeSet<Vec<u8>> = BTreeSet::new();
        for (keyid, sig) in &self.signatures {
            if !authorised.iter().any(|a| a == keyid) {
                continue;
            }
            if let Some(key) = keys.get(keyid) {
                // A key that verifies always decodes; the computed id is only a fallback.
                let identity = key
                    .identity()
                    .map_or_else(|| key.key_id().as_bytes().to_vec(), <[u8]>::to_vec);
                if !valid.contains(&identity) && key.verifies(&bytes, sig) {
                    valid.insert(identity);
                }
            }
        }
        // A threshold of 0 would let unsigned metadata through.
        if threshold == 0 || valid.len() < threshold {
            return Err(EnvelopeError::ThresholdNotMet {
                role: role.to_owned(),
                valid: valid.len(),
                threshold,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::tuf::keys::sign_role;
    use serde_json::json;

    struct Fixture {
        keys: HashMap<String, TufKey>,
        signers: Vec<SigningKey>,
        ids: Vec<String>,
    }

    fn fixture(n: usize) -> Fixture {
        let signers: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate()).collect();
        let tuf: Vec<TufKey> = signers
            .iter()
            .map(|s| TufKey::from_verifying_key(&s.verifying_key()))
            .collect();
        let ids = tuf.iter().map(|k| k.key_id().to_owned()).collect();
        let keys = tuf
            .into_iter()
            .map(|k| (k.key_id().to_owned(), k))
            .collect();
        Fixture { keys, signers, ids }
    }

    fn envelope(signed: Value, by: &[&SigningKey]) -> Envelope {
        let signatures = by.iter().map(|k| sign_role(k, &signed).unwrap()).collect();
        Envelope { signed, signatures }
    }

    #[test]
    fn threshold_met_by_distinct_authorised_keys() {
        let f = fixture(2);
        let env = envelope(json!({"v": 1}), &[&f.signers[0], &f.signers[1]]);
        env.verify_threshold("root.json", &f.keys, &f.ids, 2)
            .unwrap();
    }

    #[test]
    fn duplicate_signature_keyids_make_the_envelope_invalid() {
        let f = fixture(2);
        let env = envelope(json!({"v": 1}), &[&f.signers[0], &f.signers[0]]);
        let err = env
            .verify_threshold("root.json", &f.keys, &f.ids, 1)
            .unwrap_err();
        assert!(matches!(err, EnvelopeError::DuplicateKeyId { .. }), "{err}");
        let bytes = serde_json::to_vec(&json!({"signed": env.signed, "signatures": [
            {"keyid": env.signatures[0].0, "sig": env.signatures[0].1},
            {"keyid": env.signatures[1].0, "sig": env.signatures[1].1}]}))
        .unwrap();
        let err = Envelope::from_bytes(&bytes, "root").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "root: the signatures name key id {} more than once (key ids must be unique)",
                f.ids[0]
            )
        );
    }

    #[test]
    fn one_key_spelled_two_ways_counts_once() {
        let f = fixture(1);
        let signer = &f.signers[0];
        let mut upper = f.keys[&f.ids[0]].to_value().clone();
        upper["keyval"]["public"] = json!(hex::encode_upper(signer.verifying_key().raw()));
        let upper = TufKey::from_value(&upper).unwrap();
        let upper_id = upper.key_id().to_owned();
        let mut keys = f.keys.clone();
        keys.insert(upper_id.clone(), upper);
        let signed = json!({"v": 1});
        let (_, sig) = sign_role(signer, &signed).unwrap();
        let env = Envelope {
            signed,
            signatures: vec![(f.ids[0].clone(), sig.clone()), (upper_id.clone(), sig)],
        };
        let both = vec![f.ids[0].clone(), upper_id];
        let err = env.verify_threshold("root", &keys, &both, 2).unwrap_err();
        assert_eq!(err.to_string(), "root: 1 of 2 required signatures");
        env.verify_threshold("root", &keys, &both, 1).unwrap();
    }

    #[test]
    fn one_key_under_two_labels_counts_once() {
        let f = fixture(1);
        let key = f.keys[&f.ids[0]].clone();
        let mut keys = f.keys.clone();
        keys.insert("custom-label".into(), key);
        let signed = json!({"v": 1});
        let (_, sig) = sign_role(&f.signers[0], &signed).unwrap();
        let env = Envelope {
            signed,
            signatures: vec![
                (f.ids[0].clone(), sig.clone()),
                ("custom-label".into(), sig),
            ],
        };
        let labels = vec![f.ids[0].clone(), "custom-label".to_owned()];
        let err = env.verify_threshold("root", &keys, &labels, 2).unwrap_err();
        assert_eq!(err.to_string(), "root: 1 of 2 required signatures");
        // A custom label alone is accepted, as python-tuf does.
        env.verify_threshold("root", &keys, &labels[1..], 1)
            .unwrap();
    }

    #[test]
    fn unauthorised_key_does_not_count() {
        let f = fixture(2);
        let env = envelope(json!({"v": 1}), &[&f.signers[0], &f.signers[1]]);
        let only_first = vec![f.ids[0].clone()];
        assert!(env
            .verify_threshold("targets.json", &f.keys, &only_first, 2)
            .is_err());
        env.verify_threshold("targets.json", &f.keys, &only_first, 1)
            .unwrap();
    }

    #[test]
    fn signature_over_other_content_does_not_count() {
        let f = fixture(1);
        let mut env = envelope(json!({"v": 1, "extra": "x"}), &[&f.signers[0]]);
        // Dropping an unknown field changes the signed bytes.
        env.signed = json!({"v": 1});
        assert!(env
            .verify_threshold("snapshot.json", &f.keys, &f.ids, 1)
            .is_err());
    }

    #[test]
    fn unknown_fields_are_part_of_the_signed_bytes() {
        let f = fixture(1);
        let bytes = serde_json::to_vec(&{
            let env = envelope(
                json!({"v": 1, "x-unknown": {"b": 2, "a": 1}}),
                &[&f.signers[0]],
            );
            json!({"signed": env.signed, "signatures": [
                {"keyid": env.signatures[0].0, "sig": env.signatures[0].1}]})
        })
        .unwrap();
        let env = Envelope::from_bytes(&bytes, "timestamp.json").unwrap();
        env.verify_threshold("timestamp.json", &f.keys, &f.ids, 1)
            .unwrap();
    }

    #[test]
    fn zero_threshold_is_refused() {
        let f = fixture(1);
        let env = envelope(json!({"v": 1}), &[&f.signers[0]]);
        assert!(env
            .verify_threshold("root.json", &f.keys, &f.ids, 0)
            .is_err());
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        for bad in [
            &b"{"[..],
            br#"{"signed": 1, "signatures": []}"#,
            br#"{"signed": {}}"#,
        ] {
            assert!(matches!(
                Envelope::from_bytes(bad, "root.json"),
                Err(EnvelopeError::Malformed { .. })
            ));
        }
    }
}
