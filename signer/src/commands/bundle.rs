//! `ota-sign bundle`: images in, one signed bundle out (written to a temporary file in the
//! output's directory and renamed into place, so a failed run leaves no half bundle).

use super::{parse_name_path, progress_bar, read_provenance};
use crate::cli::BundleArgs;
use crate::exit::UsageError;
use anyhow::{Context, Result};
use ota_core::bundle::{build_bundle, BuildOptions, ImageInput, Manifest};
use ota_core::keys::SigningKey;
use ota_core::progress::ProgressMode;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable holding a PEM private key when no `--key` is given.
pub const SIGNING_KEY_ENV: &str = "OTA_SIGNING_KEY";

pub fn run(args: BundleArgs) -> Result<()> {
    let options = build_options(&args)?;
    let keys = load_signing_keys(&args.keys)?;
    let (images, total) = image_inputs(&args)?;
    let manifest = write_bundle(&args.out, &options, images, &keys, (total, args.progress))?;
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

/// Product, version, creation time, chunk size and level from the command line.
fn build_options(args: &BundleArgs) -> Result<BuildOptions> {
    let version = semver::Version::parse(&args.release_version).map_err(|e| {
        UsageError(format!(
            "--version {:?} is not a semantic version (like 1.4.0): {e}",
            args.release_version
        ))
    })?;
    if args.xz_content && args.delta_format < 5 {
        return Err(UsageError(format!(
            "--xz-content makes `xz` operations, which need --delta-format 5 (got {}): drop one \
             of the two",
            args.delta_format
        ))
        .into());
    }
    Ok(BuildOptions {
        product: args.product.clone(),
        version,
        created: creation_time()?,
        chunk_size: parse_size(&args.chunk_size)?,
        zstd_level: args.level,
        temp_dir: output_dir(&args.out),
        provenance: read_provenance(args.provenance.as_deref())?,
        delta_format: args.delta_format,
        xz_content: args.xz_content,
    })
}

/// The payloads to build, in order: for each `--image`, one delta per `--base` of that name,
/// then the full image when it has no base or `--with-full` is given. Returns them with the
/// total bytes to read (for the progress bar). Every `--base` must name an `--image`.
fn image_inputs(args: &BundleArgs) -> Result<(Vec<ImageInput>, u64)> {
    let mut bases: Vec<(String, std::path::PathBuf)> = Vec::new();
    for spec in &args.bases {
        bases.push(parse_name_path(spec, "--base")?);
    }
    let mut total = 0u64;
    let mut images = Vec::with_capacity(args.images.len());
    let open = |path: &Path, what: &str| {
        File::open(path).with_context(|| format!("cannot open {what} {}", path.display()))
    };
    for spec in &args.images {
        let (name, path) = parse_name_path(spec, "--image")?;
        let size = open(&path, "image")?
            .metadata()
            .map(|m| m.len())
            .unwrap_or(0);
        let image_bases: Vec<&std::path::PathBuf> = bases
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, p)| p)
            .collect();
        // One delta per base, then the full image when there is no base or --with-full.
        for base in &image_bases {
            images.push(ImageInput {
                name: name.clone(),
                reader: Box::new(open(&path, "image")?),
                base: Some(open(base, "base image")?),
            });
            total += size;
        }
        if image_bases.is_empty() || args.with_full {
            images.push(ImageInput {
                name: name.clone(),
                reader: Box::new(open(&path, "image")?),
                base: None,
            });
            total += size;
        }
    }
    let image_names: Vec<&str> = args
        .images
        .iter()
        .filter_map(|i| i.split_once('=').map(|x| x.0))
        .collect();
    if let Some((name, _)) = bases
        .iter()
        .find(|(n, _)| !image_names.contains(&n.as_str()))
    {
        return Err(UsageError(format!(
            "--base names image '{name}', which no --image gives"
        ))
        .into());
    }
    Ok((images, total))
}

/// Builds the bundle into a temporary file in `out`'s directory (payload spooled through an
/// anonymous one), syncs it and renames it to `out`. `total` sizes the progress bar.
fn write_bundle(
    out: &Path,
    options: &BuildOptions,
    images: Vec<ImageInput>,
    keys: &[SigningKey],
    (total, progress): (u64, ProgressMode),
) -> Result<Manifest> {
    let dir = output_dir(out);
    let mut spool = tempfile::tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let staged = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let bar = progress_bar(total, "bundling", progress);
    let manifest = {
        let mut writer = BufWriter::with_capacity(1 << 20, staged.as_file());
        let manifest = build_bundle(options, images, keys, &mut spool, &mut writer, &|n| {
            bar.inc(n)
        })?;
        writer.flush().context("cannot write the bundle")?;
        manifest
    };
    bar.finish();
    staged
        .as_file()
        .sync_all()
        .context("cannot sync the bundle")?;
    staged
        .persist(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(manifest)
}

/// The output's directory: temporary files go there, next to where the bundle lands.
fn output_dir(out: &Path) -> std::path::PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    }
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
            "payload": match &i.payload {
                ota_core::bundle::PayloadKind::Full => serde_json::json!({"kind": "full", "chunks": i.chunks.len()}),
                ota_core::bundle::PayloadKind::Delta { base_sha256, ops, .. } => serde_json::json!({
                    "kind": "delta", "base_sha256": base_sha256.to_hex(), "operations": ops.count,
                }),
            },
            "stored_size": i.payload_len(),
        })).collect::<Vec<_>>(),
        "signed_by": signers,
    })
}

/// `SOURCE_DATE_EPOCH` when set (reproducible builds), the current time otherwise.
pub(super) fn creation_time() -> Result<u64> {
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
        return Ok(vec![crate::keys::from_env(SIGNING_KEY_ENV)?]);
    }
    paths
        .iter()
        .map(|p| crate::keys::load_private_key(p))
        .collect()
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

    #[test]
    fn default_delta_format_is_the_newest() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "ota-sign",
            "bundle",
            "--product",
            "p",
            "--version",
            "1.0.0",
            "--image",
            "a=b",
            "-o",
            "c",
        ])
        .unwrap();
        let crate::cli::Command::Bundle(args) = cli.command else {
            panic!("not the bundle command");
        };
        assert_eq!(args.delta_format, ota_core::delta::DELTA_FORMAT_LATEST);
    }
}
