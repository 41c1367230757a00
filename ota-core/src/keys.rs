//! Signing and verifying keys: Ed25519 (the default) and ECDSA P-256 (what cloud KMSs and many
//! HSMs offer), in the PEM encodings `openssl` uses: PKCS#8 private keys (`BEGIN PRIVATE KEY`,
//! and SEC1 `BEGIN EC PRIVATE KEY` for P-256) and SPKI public keys (`BEGIN PUBLIC KEY`). A key
//! that lives elsewhere (a PKCS#11 token, a KMS behind a command) signs through
//! [`ExternalSigner`]; its signatures are checked against its public key before they are used.
//!
//! A key is named by its [`KeyId`]: the SHA-256 of the raw public key (Ed25519's 32 bytes, or
//! the 65-byte uncompressed SEC1 point of a P-256 key: the lengths differ, so the two kinds of
//! id never collide). A [`Signature`] is 64 bytes for both: Ed25519's, or P-256's `r ‖ s` over
//! SHA-256 of the message.

use crate::digest::Sha256Digest;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use std::fmt;
use std::path::Path;

/// Why a key could not be loaded or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not a private key of a supported kind.
    #[error("{origin}: not an Ed25519 or ECDSA P-256 private key in PEM (make one with `ota-sign keygen` or `openssl genpkey -algorithm ed25519`): {detail}")]
    BadPrivateKey {
        /// Where the text came from (a path or an environment variable).
        origin: String,
        /// The decoder's reason.
        detail: String,
    },
    /// The text is not a public key of a supported kind.
    #[error("{origin}: not an Ed25519 or ECDSA P-256 public key in PEM (make one with `ota-sign keygen` or `openssl pkey -pubout`): {detail}")]
    BadPublicKey {
        /// Where the text came from.
        origin: String,
        /// The decoder's reason.
        detail: String,
    },
    /// A key reference that cannot work as written (a wrong PIN, no such object, a bad URI).
    #[error("{reference}: {detail}")]
    Refused {
        /// The key reference, without secrets.
        reference: String,
        /// What was wrong and what to do.
        detail: String,
    },
    /// The signer behind a reference cannot be reached (no module, the command failed).
    #[error("{reference}: {detail}")]
    Unavailable {
        /// The key reference, without secrets.
        reference: String,
        /// What failed.
        detail: String,
    },
    /// An external signer answered with a signature its public key does not verify.
    #[error("{reference}: the signature it returned does not verify with its public key ({detail}): is it the right key, and does it sign {algorithm}?")]
    BadExternalSignature {
        /// The key reference.
        reference: String,
        /// The algorithm expected.
        algorithm: Algorithm,
        /// What was wrong with it.
        detail: String,
    },
}

impl KeyError {
    /// The exit code of the shared table ([`crate::exit`]): 3 when a file, module or command
    /// cannot be used, 1 for a signer that signs wrongly, 2 for the rest (a reference or key
    /// that cannot work as written).
    pub fn exit_code(&self) -> u8 {
        match self {
            KeyError::Read { .. } | KeyError::Unavailable { .. } => crate::exit::IO,
            KeyError::BadExternalSignature { .. } => crate::exit::FAILURE,
            _ => crate::exit::USAGE,
        }
    }
}

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Pure Ed25519 (RFC 8032), no prehash.
    Ed25519,
    /// ECDSA on P-256 over SHA-256 of the message.
    EcdsaP256,
}

impl Algorithm {
    /// Parses `ed25519` or `ecdsa-p256` (also `p256`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ed25519" => Some(Self::Ed25519),
            "ecdsa-p256" | "p256" | "ecdsa-sha2-nistp256" => Some(Self::EcdsaP256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256 => "ecdsa-p256",
        })
    }
}

/// Identifies a public key: SHA-256 over its raw encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct KeyId(pub Sha256Digest);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A 64-byte signature: Ed25519's, or P-256's `r ‖ s`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Signature([u8; 64]);

impl Signature {
    /// From its 64 bytes.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        Self(*bytes)
    }

    /// From a slice, which must be 64 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 64]>::try_from(bytes).ok().map(Self)
    }

    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

/// Something outside this process that signs with a private key it keeps (a PKCS#11 token, a
/// KMS reached through a command).
pub trait ExternalSigner: Send + Sync {
    /// Signs `message`: an Ed25519 signature, or for P-256 a signature over SHA-256(message),
    /// as DER or as the 64 bytes `r ‖ s`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
}

enum Secret {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    External {
        reference: String,
        signer: Box<dyn ExternalSigner>,
    },
}

/// A private key that signs bundle manifests and TUF metadata.
pub struct SigningKey {
    secret: Secret,
    public: VerifyingKey,
}

impl SigningKey {
    /// Makes a new Ed25519 key from the operating system's random source.
    pub fn generate() -> Self {
        Self::generate_with(Algorithm::Ed25519)
    }

    /// Makes a new key of `algorithm` from the operating system's random source.
    pub fn generate_with(algorithm: Algorithm) -> Self {
        let mut rng = rand_core::OsRng;
        match algorithm {
            Algorithm::Ed25519 => Self::from_ed25519(ed25519_dalek::SigningKey::generate(&mut rng)),
            Algorithm::EcdsaP256 => Self::from_p256(p256::ecdsa::SigningKey::random(&mut rng)),
        }
    }

    fn from_ed25519(inner: ed25519_dalek::SigningKey) -> Self {
        let public = VerifyingKey(Public::Ed25519(inner.verifying_key()));
        Self {
            secret: Secret::Ed25519(inner),
            public,
        }
    }

    fn from_p256(inner: p256::ecdsa::SigningKey) -> Self {
        let public = VerifyingKey(Public::P256(*inner.verifying_key()));
        Self {
            secret: Secret::P256(inner),
            public,
        }
    }

    /// A key kept by `signer`, whose public half is `public`; `reference` names it in errors.
    pub fn external(
        reference: String,
        public: VerifyingKey,
        signer: Box<dyn ExternalSigner>,
    ) -> Self {
        Self {
            secret: Secret::External { reference, signer },
            public,
        }
    }

    /// Parses a PEM private key (Ed25519 or P-256 PKCS#8, P-256 SEC1); `origin` names the source
    /// in errors.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        let ed25519 = match ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            Ok(inner) => return Ok(Self::from_ed25519(inner)),
            Err(e) => e,
        };
        if let Ok(inner) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self::from_p256(inner));
        }
        if let Ok(secret) = p256::SecretKey::from_sec1_pem(pem) {
            return Ok(Self::from_p256(secret.into()));
        }
        Err(KeyError::BadPrivateKey {
            origin: origin.to_owned(),
            detail: ed25519.to_string(),
        })
    }

    /// Reads and parses a PEM private key file.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_text(path)?;
        Self::from_pem(&text, &path.display().to_string())
    }

    /// The PKCS#8 PEM encoding (what `openssl genpkey` writes); `None` for a key kept outside.
    pub fn to_pem(&self) -> Option<String> {
        let pem = match &self.secret {
            Secret::Ed25519(inner) => inner.to_pkcs8_pem(Default::default()),
            Secret::P256(inner) => inner.to_pkcs8_pem(Default::default()),
            Secret::External { .. } => return None,
        };
        pem.ok().map(|z| z.as_str().to_owned())
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.public
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    /// Signs `message` (Ed25519 without prehash; P-256 over SHA-256). A signature from an
    /// external signer is checked against the public key before it is returned.
    pub fn sign(&self, message: &[u8]) -> Result<Signature, KeyError> {
        match &self.secret {
            Secret::Ed25519(inner) => {
                use ed25519_dalek::Signer;
                Ok(Signature(inner.sign(message).to_bytes()))
            }
            Secret::P256(inner) => {
                use p256::ecdsa::signature::Signer;
                let signature: p256::ecdsa::Signature = inner.sign(message);
                Ok(Signature(signature.to_bytes().into()))
            }
            Secret::External { reference, signer } => {
                let bytes = signer.sign(message)?;
                self.check_external(reference, message, &bytes)
            }
        }
    }

    fn check_external(
        &self,
        reference: &str,
        message: &[u8],
        bytes: &[u8],
    ) -> Result<Signature, KeyError> {
        let bad = |detail: String| KeyError::BadExternalSignature {
            reference: reference.to_owned(),
            algorithm: self.algorithm(),
            detail,
        };
        let signature = match (self.algorithm(), bytes.len()) {
            (_, 64) => Signature::from_slice(bytes),
            (Algorithm::EcdsaP256, _) => p256::ecdsa::Signature::from_der(bytes)
                .ok()
                .map(|s| Signature(s.to_bytes().into())),
            (Algorithm::Ed25519, _) => None,
        }
        .ok_or_else(|| bad(format!("{} bytes that are not a signature", bytes.len())))?;
        if self.public.verifies(message, &signature) {
            Ok(signature)
        } else {
            Err(bad(
                "a well-formed signature of other bytes or by another key".into(),
            ))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Public {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// A public key that verifies bundle manifests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VerifyingKey(Public);

impl VerifyingKey {
    /// Parses an SPKI PEM public key (Ed25519 or P-256); `origin` names the source in errors.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        let ed25519 = match ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            Ok(inner) => return Ok(Self(Public::Ed25519(inner))),
            Err(e) => e,
        };
        p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map(|inner| Self(Public::P256(inner)))
            .map_err(|_| KeyError::BadPublicKey {
                origin: origin.to_owned(),
                detail: ed25519.to_string(),
            })
    }

    /// Parses a DER SubjectPublicKeyInfo (what KMS APIs return), Ed25519 or P-256.
    pub fn from_der(der: &[u8], origin: &str) -> Result<Self, KeyError> {
        if let Ok(inner) = ed25519_dalek::VerifyingKey::from_public_key_der(der) {
            return Ok(Self(Public::Ed25519(inner)));
        }
        p256::ecdsa::VerifyingKey::from_public_key_der(der)
            .map(|inner| Self(Public::P256(inner)))
            .map_err(|e| KeyError::BadPublicKey {
                origin: origin.to_owned(),
                detail: e.to_string(),
            })
    }

    /// Reads and parses an SPKI PEM public key file.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_text(path)?;
        Self::from_pem(&text, &path.display().to_string())
    }

    /// An Ed25519 key from its raw 32 bytes (as carried in TUF metadata, for instance).
    pub fn from_ed25519_bytes(bytes: &[u8; 32]) -> Option<Self> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .ok()
            .map(|inner| Self(Public::Ed25519(inner)))
    }

    /// A P-256 key from a SEC1 point (compressed or not).
    pub fn from_p256_sec1(bytes: &[u8]) -> Option<Self> {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
            .ok()
            .map(|inner| Self(Public::P256(inner)))
    }

    /// The algorithm of signatures this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Public::Ed25519(_) => Algorithm::Ed25519,
            Public::P256(_) => Algorithm::EcdsaP256,
        }
    }

    /// The SPKI PEM encoding (what `openssl pkey -pubout` writes).
    pub fn to_pem(&self) -> String {
        // Encoding a valid in-memory key into a growable string cannot fail.
        match &self.0 {
            Public::Ed25519(inner) => inner.to_public_key_pem(Default::default()),
            Public::P256(inner) => inner.to_public_key_pem(Default::default()),
        }
        .unwrap_or_default()
    }

    /// The raw public key: Ed25519's 32 bytes, or P-256's uncompressed 65-byte SEC1 point.
    pub fn raw(&self) -> Vec<u8> {
        match &self.0 {
            Public::Ed25519(inner) => inner.as_bytes().to_vec(),
            Public::P256(inner) => inner.to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    /// SHA-256 of the raw public key.
    pub fn key_id(&self) -> KeyId {
        KeyId(Sha256Digest::of(&self.raw()))
    }

    /// True when `signature` is a valid signature of `message` by this key: strict Ed25519, or
    /// ECDSA P-256 over SHA-256.
    pub fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        match &self.0 {
            Public::Ed25519(inner) => {
                let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
                // verify_strict refuses small-order keys and malleable signatures.
                inner.verify_strict(message, &signature).is_ok()
            }
            Public::P256(inner) => {
                use p256::ecdsa::signature::Verifier;
                p256::ecdsa::Signature::from_slice(&signature.0)
                    .is_ok_and(|s| inner.verify(message, &s).is_ok())
            }
        }
    }
}

fn read_key_text(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_sign_for_both_algorithms() {
        for algorithm in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
            let key = SigningKey::generate_with(algorithm);
            let again = SigningKey::from_pem(&key.to_pem().unwrap(), "test").unwrap();
            let public = VerifyingKey::from_pem(&key.verifying_key().to_pem(), "test").unwrap();
            assert_eq!(public, again.verifying_key());
            assert_eq!(public.algorithm(), algorithm);
            let sig = again.sign(b"manifest").unwrap();
            // Deterministic (RFC 8032; RFC 6979 for P-256): reproducible bundles.
            assert_eq!(sig, key.sign(b"manifest").unwrap());
            assert!(public.verifies(b"manifest", &sig));
            assert!(!public.verifies(b"manifesT", &sig));
        }
    }

    #[test]
    fn key_ids_differ_by_raw_length() {
        let ed = SigningKey::generate().verifying_key();
        let p = SigningKey::generate_with(Algorithm::EcdsaP256).verifying_key();
        assert_eq!(ed.raw().len(), 32);
        assert_eq!(p.raw().len(), 65);
        assert_eq!(p.key_id(), KeyId(Sha256Digest::of(&p.raw())));
    }

    #[test]
    fn a_signature_of_one_algorithm_does_not_verify_under_the_other() {
        let ed = SigningKey::generate();
        let p = SigningKey::generate_with(Algorithm::EcdsaP256);
        let sig = ed.sign(b"m").unwrap();
        assert!(!p.verifying_key().verifies(b"m", &sig));
        let sig = p.sign(b"m").unwrap();
        assert!(!ed.verifying_key().verifies(b"m", &sig));
    }

    struct Fixed(Vec<u8>);
    impl ExternalSigner for Fixed {
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, KeyError> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn external_signatures_are_checked_and_der_is_accepted() {
        use p256::ecdsa::signature::Signer;
        let local = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let der: p256::ecdsa::Signature = local.sign(b"m");
        let public = VerifyingKey(Public::P256(*local.verifying_key()));
        let key =
            |bytes: Vec<u8>| SigningKey::external("cmd:x".into(), public, Box::new(Fixed(bytes)));
        let good = key(der.to_der().as_bytes().to_vec()).sign(b"m").unwrap();
        assert!(public.verifies(b"m", &good));
        assert!(key(der.to_bytes().to_vec()).sign(b"m").is_ok());
        let err = key(der.to_bytes().to_vec()).sign(b"other").unwrap_err();
        assert!(
            matches!(err, KeyError::BadExternalSignature { .. }),
            "{err}"
        );
        let err = key(vec![1, 2, 3]).sign(b"m").unwrap_err();
        assert!(err.to_string().contains("3 bytes"), "{err}");
        assert!(key(vec![1; 64]).to_pem().is_none());
    }

    #[test]
    fn garbage_pem_is_refused_with_origin() {
        let err = SigningKey::from_pem("hello", "OTA_SIGNING_KEY")
            .err()
            .unwrap();
        assert!(err
            .to_string()
            .starts_with("OTA_SIGNING_KEY: not an Ed25519 or ECDSA P-256 private key"));
        assert!(VerifyingKey::from_pem("hello", "x").is_err());
    }
}
