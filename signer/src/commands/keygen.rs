//! `ota-sign keygen`: a new Ed25519 or ECDSA P-256 key pair in the PEM forms openssl writes.

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
    let key = SigningKey::generate_with(args.algorithm);
    let private_pem = key
        .to_pem()
        .context("the new key has no PEM encoding (an encoder failure): nothing written")?;
    write_file(&args.out, private_pem.as_bytes(), 0o600)?;
    write_file(&public_path, key.verifying_key().to_pem().as_bytes(), 0o644)?;
    let key_id = key.verifying_key().key_id();
    if args.json {
        let report = serde_json::json!({
            "private_key": args.out, "public_key": public_path,
            "key_id": key_id.to_string(), "algorithm": args.algorithm.to_string(),
        });
        println!("{report}");
    } else {
        println!(
            "wrote {} and {} ({} key id {key_id})",
            args.out.display(),
            public_path.display(),
            args.algorithm
        );
    }
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
