//! Key references: where the signing tools take a private key from.
//!
//! - `PATH`: a PEM file (a warning when group or others can read it);
//! - `env:NAME`: the PEM text in that variable, or the path of a PEM file in it, as CI systems'
//!   file-type variables give (said on standard error);
//! - `pkcs11:...`: a key in a PKCS#11 token (RFC 7512 URI; [`pkcs11`]);
//! - `cmd:COMMAND`: an external signer such as a cloud KMS behind a script ([`command`]).
//!
//! Errors say what a secret value looked like without printing it. Built only with the
//! `key-references` feature: the device's updater never holds a private key.

pub mod command;
pub mod pkcs11;

use crate::keys::{KeyError, SigningKey};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How references are resolved: who is speaking in warnings, and the PKCS#11 module to load
/// when a `pkcs11:` URI names none (else `$OTA_PKCS11_MODULE`).
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    /// The program's name, for warnings (`ota-sign`).
    pub program: &'static str,
    /// `--pkcs11-module`, if given.
    pub pkcs11_module: Option<PathBuf>,
}

/// Loads the private key `reference` names.
pub fn load_private_key(reference: &str, options: &KeyOptions) -> Result<SigningKey, KeyError> {
    if let Some(name) = reference.strip_prefix("env:") {
        from_env(name, options)
    } else if reference.starts_with("pkcs11:") {
        pkcs11::load(reference, options)
    } else if let Some(command) = reference.strip_prefix("cmd:") {
        command::load(command)
    } else {
        from_file(Path::new(reference), options)
    }
}

/// A PEM file; warns when its mode lets group or others read it.
fn from_file(path: &Path, options: &KeyOptions) -> Result<SigningKey, KeyError> {
    let key = SigningKey::from_file(path)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "{}: warning: private key {} is readable by {} (mode {mode:04o}): `chmod 600 {}`",
                options.program,
                path.display(),
                if mode & 0o007 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                path.display()
            );
        }
    }
    Ok(key)
}

/// The key in variable `name`: PEM text, the path of a PEM file (said on standard error), or a
/// `pkcs11:`/`cmd:` reference.
pub fn from_env(name: &str, options: &KeyOptions) -> Result<SigningKey, KeyError> {
    let refused = |detail: String| KeyError::Refused {
        reference: format!("${name}"),
        detail,
    };
    let value = std::env::var_os(name).ok_or_else(|| KeyError::Refused {
        reference: format!("${name} is not set"),
        detail:
            "put a PEM private key (or the path of one, or a key reference) in it, or pass --key"
                .into(),
    })?;
    let text = value.to_string_lossy();
    if text.trim_start().starts_with("-----BEGIN") {
        return SigningKey::from_pem(&text, &format!("${name}"));
    }
    let trimmed = text.trim();
    if trimmed.starts_with("pkcs11:") || trimmed.starts_with("cmd:") {
        return load_private_key(trimmed, options);
    }
    let path = Path::new(trimmed);
    if !trimmed.is_empty() && path.is_file() {
        eprintln!(
            "{}: ${name} names a file: signing with the key in {}",
            options.program,
            path.display()
        );
        return from_file(path, options);
    }
    Err(refused(format!(
        "holds neither a PEM private key nor the path of an existing file: {}",
        describe(&text)
    )))
}

/// What a secret value looks like, without showing it.
pub fn describe(text: &str) -> String {
    if text.trim().is_empty() {
        return format!("it is empty ({} bytes of whitespace)", text.len());
    }
    let lines = text.lines().count();
    let kind = if text.contains('\0') {
        "with NUL bytes"
    } else if text.trim_start().starts_with('/') || text.contains('/') {
        "that looks like a path (no such file)"
    } else if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/=\n\r ".contains(&b))
    {
        "of base64-like characters without a -----BEGIN line (a masked variable cannot hold a PEM: use a file-type variable)"
    } else {
        "without a -----BEGIN line"
    };
    format!("{} bytes on {lines} line(s), {kind}", text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_show_the_value() {
        for secret in [
            "s3cretvalue",
            "/run/secrets/missing-key",
            "",
            "  \n",
            "a\0b",
        ] {
            let d = describe(secret);
            assert!(
                secret.trim().is_empty() || !d.contains(secret.trim()),
                "{d}"
            );
        }
        assert!(describe("/nope").contains("path"));
        assert!(describe("").contains("empty"));
    }
}
