//! Key references: where `ota-sign` takes a private key from. `PATH` (a PEM file; a warning when
//! group or others can read it) or `env:NAME` (the PEM text in that variable, or the path of a
//! PEM file in it, as CI systems' file-type variables give). `OTA_SIGNING_KEY` without `--key`
//! is `env:OTA_SIGNING_KEY`. Errors say what the value looked like without printing it.

use crate::exit::UsageError;
use anyhow::{Context, Result};
use ota_core::keys::SigningKey;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Loads the private key `reference` names (a path, or `env:NAME`).
pub fn load_private_key(reference: &Path) -> Result<SigningKey> {
    match reference.to_str().and_then(|r| r.strip_prefix("env:")) {
        Some(name) => from_env(name),
        None => from_file(reference),
    }
}

/// A PEM file; warns when its mode lets group or others read it.
fn from_file(path: &Path) -> Result<SigningKey> {
    let key = SigningKey::from_file(path)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "ota-sign: warning: private key {} is readable by {} (mode {mode:04o}): `chmod 600 {}`",
                path.display(),
                if mode & 0o007 != 0 { "everyone" } else { "its group" },
                path.display()
            );
        }
    }
    Ok(key)
}

/// The key in variable `name`: PEM text, or the path of a PEM file (said on standard error).
pub fn from_env(name: &str) -> Result<SigningKey> {
    let value = std::env::var_os(name).ok_or_else(|| {
        UsageError(format!(
            "${name} is not set: put a PEM private key (or the path of one) in it, or pass --key FILE"
        ))
    })?;
    let text = value.to_string_lossy();
    if text.trim_start().starts_with("-----BEGIN") {
        return Ok(SigningKey::from_pem(&text, &format!("${name}"))?);
    }
    let path = Path::new(text.trim());
    if !text.trim().is_empty() && path.is_file() {
        eprintln!(
            "ota-sign: ${name} names a file: signing with the key in {}",
            path.display()
        );
        return from_file(path).with_context(|| format!("the file ${name} names"));
    }
    Err(UsageError(format!(
        "${name} holds neither a PEM private key nor the path of an existing file: {}",
        describe(&text)
    ))
    .into())
}

/// What a secret value looks like, without showing it.
fn describe(text: &str) -> String {
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
