//! `pkcs11:` key references (RFC 7512): a private key that never leaves a PKCS#11 token (an HSM,
//! a smart card, SoftHSM2 in tests), used through the `cryptoki` crate.
//!
//! Understood: path attributes `token`, `object`, `id`, `serial`, `manufacturer`, `model`,
//! `type` (`private`); query attributes `pin-value`, `pin-source` (a file, or `file:` URI),
//! `module-path`. The module comes from `module-path`, else `--pkcs11-module`, else
//! `$OTA_PKCS11_MODULE`; the PIN from the URI, else `$OTA_PKCS11_PIN`. Ed25519 keys sign with
//! `CKM_EDDSA`, P-256 keys with `CKM_ECDSA` over a SHA-256 computed here. The public key is read
//! from the token's public-key object with the same id (or label).

use super::KeyOptions;
use crate::keys::{ExternalSigner, KeyError, SigningKey, VerifyingKey};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::path::PathBuf;
use std::sync::Mutex;

/// DER of the P-256 curve's OID (1.2.840.10045.3.1.7), as `CKA_EC_PARAMS` holds it.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A parsed `pkcs11:` URI.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    token: Option<String>,
    object: Option<String>,
    id: Option<Vec<u8>>,
    serial: Option<String>,
    manufacturer: Option<String>,
    model: Option<String>,
    pin_value: Option<String>,
    pin_source: Option<String>,
    module_path: Option<PathBuf>,
}

impl Pkcs11Uri {
    /// Parses `pkcs11:attr=value;...?query=value&...`; values are percent-decoded.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or("does not start with pkcs11:")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut parsed = Self::default();
        for (part, separator) in [(path, ';'), (query, '&')] {
            for pair in part.split(separator).filter(|p| !p.is_empty()) {
                let (name, raw) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("{name:?} has no value", name = pair))?;
                let value: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
                parsed.set(name, value)?;
            }
        }
        if parsed.object.is_none() && parsed.id.is_none() {
            return Err("name the key with object= (its label) or id=".into());
        }
        Ok(parsed)
    }

    fn set(&mut self, name: &str, value: Vec<u8>) -> Result<(), String> {
        let text = || String::from_utf8(value.clone()).map_err(|_| format!("{name} is not UTF-8"));
        match name {
            "token" => self.token = Some(text()?),
            "object" => self.object = Some(text()?),
            "id" => self.id = Some(value),
            "serial" => self.serial = Some(text()?),
            "manufacturer" => self.manufacturer = Some(text()?),
            "model" => self.model = Some(text()?),
            "type" if value == b"private" => {}
            "type" => return Err("type= must be private: the key signs".into()),
            "pin-value" => self.pin_value = Some(text()?),
            "pin-source" => self.pin_source = Some(text()?),
            "module-path" => self.module_path = Some(PathBuf::from(text()?)),
            // Identify the library by path only; anything else we would silently ignore.
            other => return Err(format!("unsupported attribute {other:?}")),
        }
        Ok(())
    }

    /// The URI as it may be shown: a `pin-value` replaced by `***`.
    pub fn redact(uri: &str) -> String {
        match uri.find("pin-value=") {
            Some(at) => {
                let end = uri[at..].find('&').map_or(uri.len(), |e| at + e);
                format!("{}pin-value=***{}", &uri[..at], &uri[end..])
            }
            None => uri.to_owned(),
        }
    }
}

/// Opens the token the URI names, logs in and finds the key.
pub fn load(uri: &str, options: &KeyOptions) -> Result<SigningKey, KeyError> {
    let reference = Pkcs11Uri::redact(uri);
    let refused = |detail: String| KeyError::Refused {
        reference: reference.clone(),
        detail,
    };
    let unavailable = |detail: String| KeyError::Unavailable {
        reference: reference.clone(),
        detail,
    };
    let parsed =
        Pkcs11Uri::parse(uri).map_err(|e| refused(format!("not a usable PKCS#11 URI: {e}")))?;
    let module = parsed
        .module_path
        .clone()
        .or_else(|| options.pkcs11_module.clone())
        .or_else(|| std::env::var_os("OTA_PKCS11_MODULE").map(PathBuf::from))
        .ok_or_else(|| refused("no PKCS#11 module: pass --pkcs11-module, set OTA_PKCS11_MODULE or add ?module-path= to the URI".into()))?;
    if !module.is_file() {
        return Err(unavailable(format!(
            "PKCS#11 module {} does not exist",
            module.display()
        )));
    }
    let context = Pkcs11::new(&module).map_err(|e| {
        unavailable(format!(
            "cannot load PKCS#11 module {}: {e}",
            module.display()
        ))
    })?;
    context
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| {
            unavailable(format!(
                "PKCS#11 module {} does not start: {e}",
                module.display()
            ))
        })?;
    let slot = find_slot(&context, &parsed).map_err(refused)?;
    let pin = read_pin(&parsed).map_err(refused)?;
    let session = context
        .open_ro_session(slot)
        .map_err(|e| unavailable(format!("cannot open a session: {e}")))?;
    session
        .login(UserType::User, Some(&pin))
        .map_err(|e| match e {
            CkError::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                _,
            ) => refused(
                "the token refused the PIN (wrong pin-value, pin-source or OTA_PKCS11_PIN)".into(),
            ),
            other => unavailable(format!("cannot log in: {other}")),
        })?;
    let (private, public) = find_key(&session, &parsed).map_err(refused)?;
    let mechanism = match public.algorithm() {
        crate::keys::Algorithm::Ed25519 => Pkcs11Mechanism::Eddsa,
        crate::keys::Algorithm::EcdsaP256 => Pkcs11Mechanism::EcdsaOverSha256,
    };
    let signer = TokenSigner {
        session: Mutex::new(session),
        key: private,
        mechanism,
        reference: reference.clone(),
    };
    Ok(SigningKey::external(reference, public, Box::new(signer)))
}

fn find_slot(context: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, String> {
    let slots = context
        .get_slots_with_token()
        .map_err(|e| format!("cannot list tokens: {e}"))?;
    let mut labels = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let Ok(info) = context.get_token_info(slot) else {
            continue;
        };
        let fits =
            |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have.trim());
        if !info.label().trim().is_empty() {
            labels.push(info.label().trim().to_owned());
        }
        if fits(&uri.token, info.label())
            && fits(&uri.serial, info.serial_number())
            && fits(&uri.manufacturer, info.manufacturer_id())
            && fits(&uri.model, info.model())
        {
            matching.push(slot);
        }
    }
    match matching.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(format!(
            "no token matches (tokens present: {})",
            if labels.is_empty() {
                "none".into()
            } else {
                labels.join(", ")
            }
        )),
        many => Err(format!(
            "{} tokens match: add token= or serial= to pick one",
            many.len()
        )),
    }
}

fn read_pin(uri: &Pkcs11Uri) -> Result<AuthPin, String> {
    if let Some(pin) = &uri.pin_value {
        return Ok(AuthPin::from(pin.clone()));
    }
    if let Some(source) = &uri.pin_source {
        let path = source
            .strip_prefix("file://")
            .or_else(|| source.strip_prefix("file:"))
            .unwrap_or(source);
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read pin-source {path}: {e}"))?;
        return Ok(AuthPin::from(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    std::env::var("OTA_PKCS11_PIN")
        .map(AuthPin::from)
        .map_err(|_| {
            "no PIN: add pin-source= (or pin-value=) to the URI or set OTA_PKCS11_PIN".into()
        })
}

/// The private key's handle and its public key.
fn find_key(session: &Session, uri: &Pkcs11Uri) -> Result<(ObjectHandle, VerifyingKey), String> {
    let mut template = Vec::new();
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    let find = |class: ObjectClass| {
        let mut t = vec![Attribute::Class(class)];
        t.extend(template.iter().cloned());
        session
            .find_objects(&t)
            .map_err(|e| format!("cannot search the token: {e}"))
    };
    let private = match find(ObjectClass::PRIVATE_KEY)?.as_slice() {
        [one] => *one,
        [] => return Err("no private key with that object/id in the token (list them with `pkcs11-tool --list-objects --login`)".into()),
        many => return Err(format!("{} private keys match: add id= to pick one", many.len())),
    };
    let Some(public) = find(ObjectClass::PUBLIC_KEY)?.first().copied() else {
        return Err("the token holds no public-key object for this key (import the public key with the same id and label)".into());
    };
    let wanted = [
        AttributeType::KeyType,
        AttributeType::EcParams,
        AttributeType::EcPoint,
    ];
    let attributes = session
        .get_attributes(public, &wanted)
        .map_err(|e| format!("cannot read the public key: {e}"))?;
    Ok((private, public_key(&attributes)?))
}

fn public_key(attributes: &[Attribute]) -> Result<VerifyingKey, String> {
    let (mut key_type, mut params, mut point) = (None, None, None);
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(t) => key_type = Some(*t),
            Attribute::EcParams(p) => params = Some(p.as_slice()),
            Attribute::EcPoint(p) => point = Some(p.as_slice()),
            _ => {}
        }
    }
    let point =
        point.ok_or("the public key has no CKA_EC_POINT (only Ed25519 and P-256 keys sign)")?;
    // CKA_EC_POINT is the point in a DER OCTET STRING; some tokens store it bare.
    let candidates = [unwrap_octet_string(point), Some(point)];
    let decoded = match key_type {
        Some(t) if t == KeyType::EC_EDWARDS => candidates.into_iter().flatten().find_map(|p| {
            <&[u8; 32]>::try_from(p)
                .ok()
                .and_then(VerifyingKey::from_ed25519_bytes)
        }),
        Some(t) if t == KeyType::EC && params == Some(P256_PARAMS) => candidates
            .into_iter()
            .flatten()
            .find_map(VerifyingKey::from_p256_sec1),
        Some(t) if t == KeyType::EC => return Err("the key is on another curve than P-256".into()),
        _ => return Err("the key is neither Ed25519 nor ECDSA P-256".into()),
    };
    decoded.ok_or_else(|| "the token's public key does not decode".into())
}

fn unwrap_octet_string(der: &[u8]) -> Option<&[u8]> {
    match der {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => Some(rest),
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => Some(rest),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Pkcs11Mechanism {
    Eddsa,
    EcdsaOverSha256,
}

struct TokenSigner {
    session: Mutex<Session>,
    key: ObjectHandle,
    mechanism: Pkcs11Mechanism,
    reference: String,
}

impl ExternalSigner for TokenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let session = self.session.lock().map_err(|_| KeyError::Unavailable {
            reference: self.reference.clone(),
            detail: "the token session was poisoned by an earlier failure".into(),
        })?;
        let result = match self.mechanism {
            Pkcs11Mechanism::Eddsa => {
                let params = EddsaParams::new(EddsaSignatureScheme::Pure);
                session.sign(&Mechanism::Eddsa(params), self.key, message)
            }
            Pkcs11Mechanism::EcdsaOverSha256 => {
                let digest = crate::Sha256Digest::of(message);
                session.sign(&Mechanism::Ecdsa, self.key, &digest.0)
            }
        };
        result.map_err(|e| KeyError::Unavailable {
            reference: self.reference.clone(),
            detail: format!("the token did not sign: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_with_percent_encoding_and_refuse_what_we_cannot_honour() {
        let uri = Pkcs11Uri::parse("pkcs11:token=OTA%20keys;object=release;id=%01%02?pin-source=file:/run/pin&module-path=/usr/lib/m.so").unwrap();
        assert_eq!(uri.token.as_deref(), Some("OTA keys"));
        assert_eq!(uri.object.as_deref(), Some("release"));
        assert_eq!(uri.id.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(uri.pin_source.as_deref(), Some("file:/run/pin"));
        assert_eq!(uri.module_path, Some(PathBuf::from("/usr/lib/m.so")));
        assert!(Pkcs11Uri::parse("pkcs11:token=a")
            .unwrap_err()
            .contains("object="));
        assert!(Pkcs11Uri::parse("pkcs11:object=a;slot-description=x")
            .unwrap_err()
            .contains("slot-description"));
        assert!(Pkcs11Uri::parse("pkcs11:object=a;type=cert").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:object").is_err());
    }

    #[test]
    fn pins_never_show() {
        assert_eq!(
            Pkcs11Uri::redact("pkcs11:object=k?pin-value=1234&module-path=/m"),
            "pkcs11:object=k?pin-value=***&module-path=/m"
        );
        assert_eq!(
            Pkcs11Uri::redact("pkcs11:object=k?pin-value=1234"),
            "pkcs11:object=k?pin-value=***"
        );
    }

    #[test]
    fn ec_points_are_unwrapped_from_their_octet_string() {
        assert_eq!(unwrap_octet_string(&[4, 2, 9, 9]), Some(&[9u8, 9][..]));
        assert_eq!(unwrap_octet_string(&[4, 3, 9, 9]), None);
    }
}
