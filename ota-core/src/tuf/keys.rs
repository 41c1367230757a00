//! TUF public keys: `{"keytype", "scheme", "keyval": {"public"}}` objects, their key ids and
//! signature checks.
//!
//! The key id is the hex SHA-256 of the canonical JSON of the key object *as received*, unknown
//! fields included: python-tuf computes it that way, and re-serialising our own view of the key
//! could drop a field and give a different id.
//!
//! Only `ed25519`/`ed25519` verifies for now; a signature by a key of any other type or scheme
//! simply does not count (it is not an error for the whole metadata), so a role that mixes key
//! types still reaches its threshold with the keys we understand.

use super::canonical::{to_canonical_bytes, CanonicalError};
use crate::keys::{Signature, SigningKey, VerifyingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Why a key object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TufKeyError {
    /// A required field is missing or is not a string.
    #[error("TUF key: field '{0}' is missing or not a string")]
    MissingField(&'static str),
    /// The key object has no canonical form (it holds a float).
    #[error("TUF key: {0}")]
    Canonical(#[from] CanonicalError),
}

/// A TUF public key, kept with the JSON it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct TufKey {
    keytype: String,
    scheme: String,
    public: String,
    raw: Value,
    key_id: String,
}

impl TufKey {
    /// Reads a key object; its id is computed from `value` exactly as given.
    pub fn from_value(value: &Value) -> Result<Self, TufKeyError> {
        let field = |name: &'static str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(TufKeyError::MissingField(name))
        };
        let keytype = field("keytype")?;
        let scheme = field("scheme")?;
        let public = value
            .get("keyval")
            .and_then(|kv| kv.get("public"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(TufKeyError::MissingField("keyval.public"))?;
        let key_id = hex::encode(Sha256::digest(to_canonical_bytes(value)?));
        Ok(Self {
            keytype,
            scheme,
            public,
            raw: value.clone(),
            key_id,
        })
    }

    /// The TUF form of one of our ed25519 keys, as python-tuf 7 writes it (no
    /// `keyid_hash_algorithms`).
    pub fn from_ed25519(key: &VerifyingKey) -> Self {
        let value = json!({
            "keytype": "ed25519",
            "scheme": "ed25519",
            "keyval": {"public": hex::encode(key.as_bytes())},
        });
        // A fixed object of strings always has a canonical form.
        let key_id = to_canonical_bytes(&value)
            .map(|b| hex::encode(Sha256::digest(b)))
            .unwrap_or_default();
        Self {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            public: hex::encode(key.as_bytes()),
            raw: value,
            key_id,
        }
    }

    /// Hex SHA-256 of the canonical key object.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key type (`ed25519`, `ecdsa`, `rsa`, ...).
    pub fn keytype(&self) -> &str {
        &self.keytype
    }

    /// The signature scheme (`ed25519`, `ecdsa-sha2-nistp256`, `rsassa-pss-sha256`, ...).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The key object as received, for writing it back unchanged.
    pub fn to_value(&self) -> &Value {
        &self.raw
    }

    /// True when `sig_hex` is a valid signature of `message` by this key. Unsupported key types
    /// or schemes and undecodable keys or signatures give `false`, never an error.
    pub fn verifies(&self, message: &[u8], sig_hex: &str) -> bool {
        match (self.keytype.as_str(), self.scheme.as_str()) {
            ("ed25519", "ed25519") => verify_ed25519(&self.public, message, sig_hex),
            _ => false,
        }
    }
}

fn verify_ed25519(public_hex: &str, message: &[u8], sig_hex: &str) -> bool {
    let Ok(public) = <[u8; 32]>::try_from(hex::decode(public_hex).unwrap_or_default()) else {
        return false;
    };
    let Some(key) = VerifyingKey::from_bytes(&public) else {
        return false;
    };
    let Ok(sig_bytes) = hex::decode(sig_hex) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&sig_bytes) else {
        return false;
    };
    key.verifies(message, &signature)
}

/// Signs the canonical bytes of `signed` with an ed25519 key: returns `(keyid, hex signature)`
/// as they go in a TUF `signatures` entry.
pub fn sign_ed25519(key: &SigningKey, signed: &Value) -> Result<(String, String), CanonicalError> {
    let bytes = to_canonical_bytes(signed)?;
    let sig = key.sign(&bytes);
    let id = TufKey::from_ed25519(&key.verifying_key()).key_id;
    Ok((id, hex::encode(sig.to_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_signature_round_trip_and_tamper() {
        let sk = SigningKey::generate();
        let signed = json!({"_type": "targets", "version": 1, "x": "fw 2.bin"});
        let (id, sig) = sign_ed25519(&sk, &signed).unwrap();
        let key = TufKey::from_ed25519(&sk.verifying_key());
        assert_eq!(id, key.key_id());
        let bytes = to_canonical_bytes(&signed).unwrap();
        assert!(key.verifies(&bytes, &sig));
        let mut tampered = bytes.clone();
        tampered[3] ^= 1;
        assert!(!key.verifies(&tampered, &sig));
        assert!(!key.verifies(&bytes, "zz"));
    }

    #[test]
    fn key_id_covers_unknown_fields() {
        let plain = json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "00"}});
        let mut extra = plain.clone();
        extra["x-vendor"] = json!("kept");
        let a = TufKey::from_value(&plain).unwrap();
        let b = TufKey::from_value(&extra).unwrap();
        assert_ne!(a.key_id(), b.key_id());
        assert_eq!(b.to_value(), &extra);
    }

    #[test]
    fn key_id_matches_a_known_value() {
        // sha256 of the canonical bytes, computed independently with sha256sum.
        let v = json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "ab"}});
        let expected = hex::encode(Sha256::digest(
            br#"{"keytype":"ed25519","keyval":{"public":"ab"},"scheme":"ed25519"}"#,
        ));
        assert_eq!(TufKey::from_value(&v).unwrap().key_id(), expected);
    }

    #[test]
    fn unknown_scheme_does_not_count() {
        let sk = SigningKey::generate();
        let signed = json!({"a": 1});
        let (_, sig) = sign_ed25519(&sk, &signed).unwrap();
        let mut v = TufKey::from_ed25519(&sk.verifying_key()).to_value().clone();
        v["scheme"] = json!("ed25519-ph");
        let key = TufKey::from_value(&v).unwrap();
        assert!(!key.verifies(&to_canonical_bytes(&signed).unwrap(), &sig));
    }

    #[test]
    fn missing_fields_are_refused() {
        let v = json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {}});
        assert!(matches!(
            TufKey::from_value(&v),
            Err(TufKeyError::MissingField("keyval.public"))
        ));
    }
}
