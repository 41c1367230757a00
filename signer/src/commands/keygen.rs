//! `ota-sign keygen`: a new ed25519 key pair in the same PEM forms openssl writes.

use crate::cli::KeygenArgs;
use crate::exit::UsageError;
use anyhow::{Context, Result};
use ota_core::keys::SigningKey;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub fn run(args: KeygenArgs) -> Result<()> {
    let mut public_path = args.out.clone().into_os_string();
    public_path.push(".pub");
    let public_path = std::path::PathBuf::from(public_path);
    if !args.force {
        for path in [&args.out, &public_path] {
            if path.exists() {
                return Err(UsageError(format!(
                    "{} already exists; pass --force to replace it",
                    path.display()
                ))
                .into());
            }
        }
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    let key = SigningKey::generate();
    write_file(&args.out, key.to_pem().as_bytes(), 0o600)?;
    write_file(&public_path, key.verifying_key().to_pem().as_bytes(), 0o644)?;
    println!(
        "wrote {} and {} (key id {})",
        args.out.display(),
        public_path.display(),
        key.verifying_key().key_id()
    );
    Ok(())
}

/// Creates the file with `mode` from the start, so a private key is never readable by others,
/// not even for a moment.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
