//! `ota-sign bundle`: images in, one signed bundle out (written to a temporary file in the
//! output's directory and renamed into place, so a failed run leaves no half bundle).

use super::{parse_name_path, progress_bar};
use crate::cli::BundleArgs;
use crate::exit::UsageError;
use anyhow::{Context, Result};
use ota_core::bundle::{build_bundle, BuildOptions, ImageInput, Manifest};
use ota_core::keys::SigningKey;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable holding a PEM private key when no `--key` is given.
pub const SIGNING_KEY_ENV: &str = "OTA_SIGNING_KEY";

pub fn run(args: BundleArgs) -> Result<()> {
    let version = semver::Version::parse(&args.release_version).map_err(|e| {
        UsageError(format!(
            "--version {:?} is not a semantic version (like 1.4.0): {e}",
            args.release_version
        ))
    })?;
    let options = BuildOptions {
        product: args.product.clone(),
        version,
        created: creation_time()?,
        chunk_size: parse_size(&args.chunk_size)?,
        zstd_level: args.level,
    };
    let keys = load_signing_keys(&args.keys)?;
    let mut total = 0u64;
    let mut images = Vec::with_capacity(args.images.len());
    for spec in &args.images {
        let (name, path) = parse_name_path(spec, "--image")?;
        let file =
            File::open(&path).with_context(|| format!("cannot open image {}", path.display()))?;
        total += file.metadata().map(|m| m.len()).unwrap_or(0);
        images.push(ImageInput {
            name,
            reader: Box::new(file),
        });
    }

    let dir = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let mut spool = tempfile::tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let staged = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let bar = progress_bar(total, "bundling");
    let manifest = {
        let mut out = BufWriter::with_capacity(1 << 20, staged.as_file());
        let manifest = build_bundle(&options, images, &keys, &mut spool, &mut out, &|n| {
            bar.inc(n)
        })?;
        out.flush().context("cannot write the bundle")?;
        manifest
    };
    bar.finish_and_clear();
    staged
        .as_file()
        .sync_all()
        .context("cannot sync the bundle")?;
    staged
        .persist(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let size = std::fs::metadata(&args.out)?.len();
    let signers: Vec<String> = keys
        .iter()
        .map(|k| k.verifying_key().key_id().to_string())
        .collect();
    if args.json {
        println!("{}", summary_json(&manifest, &args.out, size, &signers));
    } else {
        eprintln!(
            "wrote {} ({} bytes): {} {} with {} image(s), signed by {} key(s)",
            args.out.display(),
            size,
            manifest.product,
            manifest.version,
            manifest.images.len(),
            signers.len()
        );
    }
    Ok(())
}

fn summary_json(
    manifest: &Manifest,
    out: &Path,
    size: u64,
    signers: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "output": out.display().to_string(),
        "bundle_size": size,
        "product": manifest.product,
        "version": manifest.version.to_string(),
        "created": manifest.created,
        "payload_size": manifest.payload_size,
        "images": manifest.images.iter().map(|i| serde_json::json!({
            "name": i.name,
            "size": i.size,
            "sha256": i.sha256.to_hex(),
            "chunks": i.chunks.len(),
            "stored_size": i.chunks.iter().map(|c| u64::from(c.stored_size)).sum::<u64>(),
        })).collect::<Vec<_>>(),
        "signed_by": signers,
    })
}

/// `SOURCE_DATE_EPOCH` when set (reproducible builds), the current time otherwise.
fn creation_time() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            UsageError(format!(
                "SOURCE_DATE_EPOCH={text:?} is not a whole number of seconds"
            ))
            .into()
        }),
        Err(_) => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)),
    }
}

fn load_signing_keys(paths: &[std::path::PathBuf]) -> Result<Vec<SigningKey>> {
    if paths.is_empty() {
        let pem = std::env::var(SIGNING_KEY_ENV).map_err(|_| {
            UsageError(format!(
                "no signing key: pass --key KEY or put the PEM key in ${SIGNING_KEY_ENV}"
            ))
        })?;
        return Ok(vec![SigningKey::from_pem(&pem, SIGNING_KEY_ENV)?]);
    }
    Ok(paths
        .iter()
        .map(|p| SigningKey::from_file(p))
        .collect::<Result<_, _>>()?)
}

/// Parses `1048576`, `1024K` or `1M`.
fn parse_size(text: &str) -> Result<u32> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&text[..i], 1u64 << 20),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            UsageError(format!(
                "--chunk-size {text:?} is not a size like 1M, 256K or 65536"
            ))
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("256k").unwrap(), 256 << 10);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("5G").is_err());
        assert!(parse_size("M").is_err());
    }
}
