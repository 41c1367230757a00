//! TUF public keys: `{"keytype", "scheme", "keyval": {"public"}}` objects, their key ids and
//! signature checks.
//!
//! The key id is the hex SHA-256 of the canonical JSON of the key object *as received*, unknown
//! fields included: python-tuf computes it that way, and re-serialising our own view of the key
//! could drop a field and give a different id.
//!
//! Verification covers the key types python-tuf / securesystemslib write (we only verify them;
//! signing stays ed25519):
//!
//! | keytype | scheme | `keyval.public` | signature (hex) |
//! | --- | --- | --- | --- |
//! | `ed25519` | `ed25519` | 32 raw bytes, hex | 64 raw bytes |
//! | `ecdsa` (or the legacy `ecdsa-sha2-nistp256`) | `ecdsa-sha2-nistp256` | PEM SubjectPublicKeyInfo, P-256 | DER ECDSA over SHA-256 of the message |
//! | `rsa` | `rsassa-pss-sha256` | PEM SubjectPublicKeyInfo, at most 4096 bits | RSASSA-PSS, SHA-256, MGF1-SHA-256 |
//!
//! ECDSA accepts both the low-S and high-S form of a signature, as OpenSSL (and so
//! securesystemslib) does. RSASSA-PSS accepts any salt length, as securesystemslib's
//! `PSS.AUTO` does: its signer uses the digest length (32) but other TUF signers use the
//! maximum. The `rsa` crate only checks a salt length it is given, so we first read the length
//! from the signature itself (`pss_salt_len`) and then let the crate check the signature with
//! it; a wrong guess can only make a valid signature fail, never an invalid one pass.
//!
//! A signature by a key of any other type or scheme, or by a key we cannot decode, simply does
//! not count (it is not an error for the whole metadata), so a role that mixes key types still
//! reaches its threshold with the keys we understand.

use super::canonical::{to_canonical_bytes, CanonicalError};
use crate::keys::{Algorithm, Signature, SigningKey, VerifyingKey};
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
    identity: Option<Vec<u8>>,
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
        let identity = public_identity(&keytype, &public);
        Ok(Self {
            keytype,
            scheme,
            public,
            raw: value.clone(),
            key_id,
            identity,
        })
    }

    /// The TUF form of one of our keys, as python-tuf 7 writes it (no `keyid_hash_algorithms`):
    /// `ed25519` with the hex public key, or `ecdsa`/`ecdsa-sha2-nistp256` with the SPKI PEM.
    pub fn from_verifying_key(key: &VerifyingKey) -> Self {
        match key.algorithm() {
            Algorithm::Ed25519 => Self::from_ed25519(key),
            Algorithm::EcdsaP256 => {
                let value = json!({
                    "keytype": "ecdsa",
                    "scheme": "ecdsa-sha2-nistp256",
                    "keyval": {"public": key.to_pem()},
                });
                // A P-256 SPKI PEM we wrote ourselves always decodes, so this never falls back.
                Self::from_value(&value).unwrap_or_else(|_| Self::from_ed25519(key))
            }
        }
    }

    fn from_ed25519(key: &VerifyingKey) -> Self {
        let raw = key.raw();
        let value = json!({
            "keytype": "ed25519",
            "scheme": "ed25519",
            "keyval": {"public": hex::encode(&raw)},
        });
        // A fixed object of strings always has a canonical form.
        let key_id = to_canonical_bytes(&value)
            .map(|b| hex::encode(Sha256::digest(b)))
            .unwrap_or_default();
        Self {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            public: hex::encode(&raw),
            raw: value,
            key_id,
            identity: Some([b"ed25519:".as_slice(), &raw].concat()),
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

    /// The public key itself, decoded: equal for two key objects holding the same key in
    /// different encodings (upper- or lower-case hex, PEM line breaks and surrounding
    /// whitespace, the legacy `ecdsa-sha2-nistp256` keytype, an unknown field), so a threshold
    /// counts keys, not their spellings. `None` when the key does not decode (it then verifies
    /// no signature either).
    pub fn identity(&self) -> Option<&[u8]> {
        self.identity.as_deref()
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
            ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
                verify_ecdsa_p256_sha256(&self.public, message, sig_hex)
            }
            ("rsa", "rsassa-pss-sha256") => verify_rsa_pss_sha256(&self.public, message, sig_hex),
            _ => false,
        }
    }
}

/// The decoded public key, tagged with its algorithm, decoded exactly as [`TufKey::verifies`]
/// decodes it (so a key that verifies always has an identity): ed25519's 32 bytes, a P-256
/// point in compressed SEC1 form, an RSA key's DER SubjectPublicKeyInfo as re-encoded from its
/// modulus and exponent.
fn public_identity(keytype: &str, public: &str) -> Option<Vec<u8>> {
    match keytype {
        "ed25519" => {
            let bytes = <[u8; 32]>::try_from(hex::decode(public).ok()?).ok()?;
            Some([b"ed25519:".as_slice(), &bytes].concat())
        }
        "ecdsa" | "ecdsa-sha2-nistp256" => {
            use p256::pkcs8::DecodePublicKey;
            let key = p256::ecdsa::VerifyingKey::from_public_key_pem(public.trim()).ok()?;
            let point = key.to_encoded_point(true);
            Some([b"p256:".as_slice(), point.as_bytes()].concat())
        }
        "rsa" => {
            use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
            let key = rsa::RsaPublicKey::from_public_key_pem(public.trim()).ok()?;
            let der = key.to_public_key_der().ok()?;
            Some([b"rsa:".as_slice(), der.as_bytes()].concat())
        }
        _ => None,
    }
}

fn verify_ed25519(public_hex: &str, message: &[u8], sig_hex: &str) -> bool {
    let Ok(public) = <[u8; 32]>::try_from(hex::decode(public_hex).unwrap_or_default()) else {
        return false;
    };
    let Some(key) = VerifyingKey::from_ed25519_bytes(&public) else {
        return false;
    };
    let Ok(sig_bytes) = hex::decode(sig_hex) else {
        return false;
    };
    let Some(signature) = Signature::from_slice(&sig_bytes) else {
        return false;
    };
    key.verifies(message, &signature)
}

/// `ecdsa-sha2-nistp256`: a PEM SubjectPublicKeyInfo P-256 key, a DER signature over SHA-256.
fn verify_ecdsa_p256_sha256(public_pem: &str, message: &[u8], sig_hex: &str) -> bool {
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;
    // The SPKI's curve OID must be P-256: a P-384 key under this scheme does not decode.
    let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_pem(public_pem.trim()) else {
        return false;
    };
    let Ok(sig_bytes) = hex::decode(sig_hex) else {
        return false;
    };
    let Ok(signature) = p256::ecdsa::Signature::from_der(&sig_bytes) else {
        return false;
    };
    // Hashes `message` with SHA-256; no low-S rule, like OpenSSL.
    key.verify(message, &signature).is_ok()
}

/// `rsassa-pss-sha256`: a PEM SubjectPublicKeyInfo RSA key, RSASSA-PSS with SHA-256 and
/// MGF1-SHA-256, any salt length.
fn verify_rsa_pss_sha256(public_pem: &str, message: &[u8], sig_hex: &str) -> bool {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    // Refuses moduli over 4096 bits (`RsaPublicKey::MAX_SIZE`).
    let Ok(key) = rsa::RsaPublicKey::from_public_key_pem(public_pem.trim()) else {
        return false;
    };
    let Ok(sig_bytes) = hex::decode(sig_hex) else {
        return false;
    };
    let Some(salt_len) = pss_salt_len(&key, &sig_bytes) else {
        return false;
    };
    let Ok(signature) = rsa::pss::Signature::try_from(sig_bytes.as_slice()) else {
        return false;
    };
    rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(key, salt_len)
        .verify(message, &signature)
        .is_ok()
}

/// The salt length of an RSASSA-PSS (SHA-256, MGF1-SHA-256) signature, read by decoding it as
/// RFC 8017 section 9.1.2 does up to step 10: the length of what follows the `0x01` that ends
/// the zero padding of DB. `None` when the encoded message is malformed. This only recovers
/// the parameter; the signature itself is checked afterwards by the `rsa` crate.
fn pss_salt_len(key: &rsa::RsaPublicKey, sig: &[u8]) -> Option<usize> {
    use rsa::traits::PublicKeyParts;
    const H_LEN: usize = 32;
    let n = key.n();
    // RFC 8017 8.1.2 step 1: the signature is exactly k octets; RSAVP1 wants s < n.
    if sig.len() != key.size() {
        return None;
    }
    let s = rsa::BigUint::from_bytes_be(sig);
    if &s >= n {
        return None;
    }
    let m = s.modpow(key.e(), n);
    // EM = I2OSP(m, emLen) with emBits = modBits - 1.
    let em_bits = n.bits().checked_sub(1)?;
    let em_len = em_bits.div_ceil(8);
    let m_bytes = m.to_bytes_be();
    if m_bytes.len() > em_len || em_len < H_LEN + 2 {
        return None;
    }
    let mut em = vec![0u8; em_len];
    em[em_len - m_bytes.len()..].copy_from_slice(&m_bytes);
    // 9.1.2 step 4: the trailer is 0xbc.
    if em[em_len - 1] != 0xbc {
        return None;
    }
    // Steps 5 to 9: DB = maskedDB xor MGF1(H), top bits cleared.
    let (db, rest) = em.split_at_mut(em_len - H_LEN - 1);
    let h = &rest[..H_LEN];
    for (counter, chunk) in (0u32..).zip(db.chunks_mut(H_LEN)) {
        let mask = Sha256::new()
            .chain_update(h)
            .chain_update(counter.to_be_bytes())
            .finalize();
        chunk.iter_mut().zip(mask).for_each(|(b, m)| *b ^= m);
    }
    db[0] &= 0xff >> (8 * em_len - em_bits);
    // Step 10: DB = zeros || 0x01 || salt.
    let one = db.iter().position(|&b| b != 0)?;
    (db[one] == 0x01).then(|| db.len() - one - 1)
}

/// Signs the canonical bytes of `signed`: returns `(keyid, hex signature)` as they go in a TUF
/// `signatures` entry (Ed25519's 64 bytes; for P-256 the DER signature
/// `ecdsa-sha2-nistp256` carries).
pub fn sign_role(
    key: &SigningKey,
    signed: &Value,
) -> Result<(String, String), crate::tuf::repository::RepoError> {
    let bytes = to_canonical_bytes(signed)?;
    let sig = key.sign(&bytes)?;
    let id = TufKey::from_verifying_key(&key.verifying_key()).key_id;
    let encoded = match key.algorithm() {
        Algorithm::Ed25519 => hex::encode(sig.to_bytes()),
        Algorithm::EcdsaP256 => {
            let der = p256::ecdsa::Signature::from_slice(&sig.to_bytes())
                .map(|s| s.to_der().as_bytes().to_vec())
                .map_err(|e| crate::keys::KeyError::BadExternalSignature {
                    reference: "P-256 key".into(),
                    algorithm: Algorithm::EcdsaP256,
                    detail: e.to_string(),
                })?;
            hex::encode(der)
        }
    };
    Ok((id, encoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_signature_round_trip_and_tamper() {
        let sk = SigningKey::generate();
        let signed = json!({"_type": "targets", "version": 1, "x": "fw 2.bin"});
        let (id, sig) = sign_role(&sk, &signed).unwrap();
        let key = TufKey::from_verifying_key(&sk.verifying_key());
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
        let (_, sig) = sign_role(&sk, &signed).unwrap();
        let mut v = TufKey::from_verifying_key(&sk.verifying_key())
            .to_value()
            .clone();
        v["scheme"] = json!("ed25519-ph");
        let key = TufKey::from_value(&v).unwrap();
        assert!(!key.verifies(&to_canonical_bytes(&signed).unwrap(), &sig));
    }

    /// A TUF key object as securesystemslib writes it for a PEM public key.
    fn pem_key(keytype: &str, scheme: &str, pem: &str) -> TufKey {
        TufKey::from_value(
            &json!({"keytype": keytype, "scheme": scheme, "keyval": {"public": pem}}),
        )
        .unwrap()
    }

    fn p256_key() -> (p256::ecdsa::SigningKey, String) {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        (sk, pem)
    }

    fn p256_sign(sk: &p256::ecdsa::SigningKey, message: &[u8]) -> p256::ecdsa::Signature {
        use p256::ecdsa::signature::Signer;
        sk.sign(message)
    }

    /// One 2048-bit key for all RSA tests: generating it takes about a second even optimised.
    fn rsa_key() -> &'static (rsa::RsaPrivateKey, String) {
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        static KEY: std::sync::OnceLock<(rsa::RsaPrivateKey, String)> = std::sync::OnceLock::new();
        KEY.get_or_init(|| {
            let sk = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
            let pem = sk
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap();
            (sk, pem)
        })
    }

    fn rsa_pss_sign(sk: &rsa::RsaPrivateKey, salt_len: usize, message: &[u8]) -> String {
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(sk.clone(), salt_len);
        hex::encode(
            signer
                .sign_with_rng(&mut rand_core::OsRng, message)
                .to_bytes(),
        )
    }

    #[test]
    fn ecdsa_p256_signature_round_trip_and_tamper() {
        let (sk, pem) = p256_key();
        let message = br#"{"_type":"root","version":1}"#;
        let sig = hex::encode(p256_sign(&sk, message).to_der());
        let key = pem_key("ecdsa", "ecdsa-sha2-nistp256", &pem);
        assert!(key.verifies(message, &sig));
        // The legacy keytype, named after the scheme, still verifies.
        assert!(pem_key("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256", &pem).verifies(message, &sig));
        let mut tampered = message.to_vec();
        tampered[5] ^= 1;
        assert!(!key.verifies(&tampered, &sig));
        let mut bad_sig = hex::decode(&sig).unwrap();
        let last = bad_sig.len() - 1;
        bad_sig[last] ^= 1;
        assert!(!key.verifies(message, &hex::encode(bad_sig)));
        // Another key's signature does not count.
        let (other, _) = p256_key();
        assert!(!key.verifies(message, &hex::encode(p256_sign(&other, message).to_der())));
    }

    #[test]
    fn ecdsa_accepts_high_s_like_openssl_but_only_der() {
        let (sk, pem) = p256_key();
        let key = pem_key("ecdsa", "ecdsa-sha2-nistp256", &pem);
        let message = b"targets";
        let sig = p256_sign(&sk, message);
        // p256 signs low-S; OpenSSL signs either form, so the negated S must verify too.
        let (r, s) = sig.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert_ne!(high, sig);
        assert!(key.verifies(message, &hex::encode(high.to_der())));
        // The raw r || s form is not what securesystemslib writes.
        assert!(!key.verifies(message, &hex::encode(sig.to_bytes())));
    }

    #[test]
    fn ecdsa_refuses_wrong_scheme_keytype_and_key() {
        let (sk, pem) = p256_key();
        let message = b"snapshot";
        let sig = hex::encode(p256_sign(&sk, message).to_der());
        assert!(!pem_key("ecdsa", "ecdsa-sha2-nistp384", &pem).verifies(message, &sig));
        assert!(
            !pem_key("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp256", &pem).verifies(message, &sig)
        );
        assert!(!pem_key("rsa", "ecdsa-sha2-nistp256", &pem).verifies(message, &sig));
        assert!(!pem_key("rsa", "rsassa-pss-sha256", &pem).verifies(message, &sig));
        // An RSA key or garbage in place of the P-256 key.
        let rsa_pem = &rsa_key().1;
        assert!(!pem_key("ecdsa", "ecdsa-sha2-nistp256", rsa_pem).verifies(message, &sig));
        for junk in [
            "",
            "00",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ] {
            assert!(!pem_key("ecdsa", "ecdsa-sha2-nistp256", junk).verifies(message, &sig));
        }
        let key = pem_key("ecdsa", "ecdsa-sha2-nistp256", &pem);
        for junk in ["", "zz", "30", "3006020100020100"] {
            assert!(!key.verifies(message, junk), "{junk:?}");
        }
    }

    #[test]
    fn rsa_pss_signature_round_trip_and_tamper() {
        let (sk, pem) = rsa_key();
        let message = br#"{"_type":"timestamp","version":3}"#;
        let sig = rsa_pss_sign(sk, 32, message);
        let key = pem_key("rsa", "rsassa-pss-sha256", pem);
        assert!(key.verifies(message, &sig));
        let mut tampered = message.to_vec();
        tampered[2] ^= 1;
        assert!(!key.verifies(&tampered, &sig));
        let mut bad_sig = hex::decode(&sig).unwrap();
        bad_sig[100] ^= 1;
        assert!(!key.verifies(message, &hex::encode(bad_sig)));
    }

    #[test]
    fn rsa_pss_accepts_any_salt_length() {
        let (sk, pem) = rsa_key();
        let key = pem_key("rsa", "rsassa-pss-sha256", pem);
        let message = b"root";
        // 2048-bit key: emLen 256, so the longest salt is 256 - 32 - 2.
        for salt_len in [0, 20, 32, 64, 222] {
            let sig = rsa_pss_sign(sk, salt_len, message);
            assert!(key.verifies(message, &sig), "salt length {salt_len}");
            assert!(!key.verifies(b"roou", &sig), "salt length {salt_len}");
        }
    }

    #[test]
    fn rsa_refuses_wrong_scheme_padding_and_key() {
        use rsa::signature::{SignatureEncoding, Signer};
        let (sk, pem) = rsa_key();
        let message = b"targets";
        let sig = rsa_pss_sign(sk, 32, message);
        for (keytype, scheme) in [
            ("rsa", "rsassa-pss-sha384"),
            ("rsa", "rsa-pkcs1v15-sha256"),
            ("ecdsa", "rsassa-pss-sha256"),
            ("rsa", "ecdsa-sha2-nistp256"),
        ] {
            assert!(
                !pem_key(keytype, scheme, pem).verifies(message, &sig),
                "{keytype}/{scheme}"
            );
        }
        let key = pem_key("rsa", "rsassa-pss-sha256", pem);
        // A PKCS#1 v1.5 signature by the same key is not a PSS signature.
        let v15 = rsa::pkcs1v15::SigningKey::<Sha256>::new(sk.clone()).sign(message);
        assert!(!key.verifies(message, &hex::encode(v15.to_bytes())));
        // Wrong lengths, a value above the modulus, non-hex.
        let n = hex::decode(&sig).unwrap().len();
        for junk in [
            String::new(),
            "zz".into(),
            "00".repeat(n - 1),
            "ff".repeat(n),
            "00".repeat(n),
        ] {
            assert!(!key.verifies(message, &junk));
        }
        let (_, p256_pem) = p256_key();
        assert!(!pem_key("rsa", "rsassa-pss-sha256", &p256_pem).verifies(message, &sig));
        assert!(!pem_key("rsa", "rsassa-pss-sha256", "not a pem").verifies(message, &sig));
    }

    #[test]
    fn one_key_in_several_encodings_has_one_identity() {
        let sk = SigningKey::generate();
        let lower = TufKey::from_verifying_key(&sk.verifying_key());
        let mut upper_value = lower.to_value().clone();
        upper_value["keyval"]["public"] = json!(hex::encode_upper(sk.verifying_key().raw()));
        upper_value["x-label"] = json!("same key");
        let upper = TufKey::from_value(&upper_value).unwrap();
        assert_ne!(lower.key_id(), upper.key_id());
        assert!(lower.identity().is_some());
        assert_eq!(lower.identity(), upper.identity());
        // The upper-case spelling verifies too: it is the same key.
        let signed = json!({"a": 1});
        let (_, sig) = sign_role(&sk, &signed).unwrap();
        assert!(upper.verifies(&to_canonical_bytes(&signed).unwrap(), &sig));
        let other = TufKey::from_verifying_key(&SigningKey::generate().verifying_key());
        assert_ne!(lower.identity(), other.identity());

        // PEM keys: CRLF line ends, surrounding whitespace, the legacy keytype.
        let (_, pem) = p256_key();
        let ecdsa = pem_key("ecdsa", "ecdsa-sha2-nistp256", &pem);
        let crlf = pem_key("ecdsa", "ecdsa-sha2-nistp256", &pem.replace('\n', "\r\n"));
        let padded = pem_key("ecdsa", "ecdsa-sha2-nistp256", &format!("\n  {pem}  \n"));
        let legacy = pem_key("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256", &pem);
        assert!(ecdsa.identity().is_some());
        for variant in [&crlf, &padded, &legacy] {
            assert_ne!(variant.key_id(), ecdsa.key_id());
            assert_eq!(variant.identity(), ecdsa.identity());
        }
        let rsa_pem = &rsa_key().1;
        let rsa = pem_key("rsa", "rsassa-pss-sha256", rsa_pem);
        let rsa_crlf = pem_key("rsa", "rsassa-pss-sha256", &rsa_pem.replace('\n', "\r\n"));
        assert!(rsa.identity().is_some());
        assert_eq!(rsa.identity(), rsa_crlf.identity());
        assert!(pem_key("ecdsa", "ecdsa-sha2-nistp256", "junk")
            .identity()
            .is_none());
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
