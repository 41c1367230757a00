//! Private keys for `ota-sign`'s commands: key references (a file, `env:NAME`, `pkcs11:URI`,
//! `cmd:COMMAND`; [`ota_core::keyref`]) resolved with the global `--pkcs11-module` option.

use anyhow::Result;
use ota_core::keyref::{self, KeyOptions};
use ota_core::keys::SigningKey;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static OPTIONS: OnceLock<KeyOptions> = OnceLock::new();

/// Records the command line's key options; called once, before any key is loaded.
pub fn configure(pkcs11_module: Option<PathBuf>) {
    let _ = OPTIONS.set(KeyOptions {
        program: "ota-sign",
        pkcs11_module,
    });
}

fn options() -> KeyOptions {
    OPTIONS.get().cloned().unwrap_or(KeyOptions {
        program: "ota-sign",
        pkcs11_module: None,
    })
}

/// The private key a `--key` value names.
pub fn load_private_key(reference: &Path) -> Result<SigningKey> {
    Ok(keyref::load_private_key(
        &reference.to_string_lossy(),
        &options(),
    )?)
}

/// The private key in variable `name` (PEM, a path, or a `pkcs11:`/`cmd:` reference).
pub fn from_env(name: &str) -> Result<SigningKey> {
    Ok(keyref::from_env(name, &options())?)
}

/// True for references that are not files: `env:`, `pkcs11:`, `cmd:` (always private keys).
pub fn is_reference(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|p| ["env:", "pkcs11:", "cmd:"].iter().any(|s| p.starts_with(s)))
}
