//! `ota-sign verify`: signatures, then every chunk and image hash in one streaming pass;
//! `--extract` keeps chosen images (each renamed into place only once it verified).

use super::{check_provenance, load_trust, open_bundle, parse_name_path, progress_bar};
use crate::cli::VerifyArgs;
use crate::exit::UsageError;
use anyhow::{Context, Result};
use ota_core::bundle::{BundleReader, FileImageSink, ImageAction, PayloadKind};
use ota_core::progress::ProgressMode;
use ota_core::release::{choose_payloads, manifest_offers};
use ota_core::Sha256Digest;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub fn run(args: VerifyArgs) -> Result<()> {
    let trust = load_trust(&args.trusted, args.threshold)?;
    let extract = parse_extract(&args.extract)?;
    let bases = parse_bases(&args.bases, &extract)?;
    let reader = BundleReader::open(open_bundle(&args.bundle)?, &trust)?;
    let manifest = reader.manifest().clone();
    check_extract_known(&manifest, &extract)?;
    if let Some(path) = &args.provenance {
        check_provenance(&manifest, path)?;
    }
    let (chosen, hashed) = choose_entries(&manifest, &bases)?;
    check_extract_chosen(&manifest, &extract, &chosen)?;
    let signed_by: Vec<String> = reader.signed_by().iter().map(|id| id.to_string()).collect();
    let bases = Bases {
        paths: &bases,
        hashed: &hashed,
    };
    let unchecked_images = stream_images(reader, &chosen, &bases, &extract, args.progress)?;
    if args.json {
        let result = serde_json::json!({
            "verified": true,
            "product": manifest.product,
            "version": manifest.version.to_string(),
            "images": manifest.images.iter().map(|i| serde_json::json!({
                "name": i.name, "size": i.size, "sha256": i.sha256.to_hex(),
                "extracted_to": extract.get(&i.name).map(|p| p.display().to_string()),
            })).collect::<Vec<_>>(),
            "signed_by": signed_by,
            "threshold": args.threshold,
            "deltas_not_applied": unchecked_images,
            "provenance": manifest.provenance,
            "provenance_document_checked": args.provenance.is_some(),
        });
        println!("{result}");
    } else {
        print_report(&args, &manifest, &signed_by, &extract, &unchecked_images);
    }
    Ok(())
}

/// The `--extract NAME=PATH` arguments; an image named twice is a usage error.
fn parse_extract(specs: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let mut extract = BTreeMap::new();
    for spec in specs {
        let (name, path) = parse_name_path(spec, "--extract")?;
        if extract.insert(name.clone(), path).is_some() {
            return Err(UsageError(format!("--extract names image '{name}' twice")).into());
        }
    }
    Ok(extract)
}

/// The `--base NAME=PATH` arguments with each base's size; a base that is also the image's
/// `--extract` output is a usage error.
fn parse_bases(
    specs: &[String],
    extract: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, (PathBuf, u64)>> {
    let mut bases = BTreeMap::new();
    for spec in specs {
        let (name, path) = parse_name_path(spec, "--base")?;
        if extract.get(&name).is_some_and(|out| same_file(out, &path)) {
            return Err(UsageError(format!(
                "--base and --extract name the same file for image '{name}': a delta reads its base while writing the new image, so they must differ (A/B)"
            ))
            .into());
        }
        let size = std::fs::metadata(&path)
            .with_context(|| format!("cannot open base image {}", path.display()))?
            .len();
        bases.insert(name, (path, size));
    }
    Ok(bases)
}

/// Every `--extract` names an image of the bundle.
fn check_extract_known(
    manifest: &ota_core::bundle::Manifest,
    extract: &BTreeMap<String, PathBuf>,
) -> Result<()> {
    for name in extract.keys() {
        if !manifest.images.iter().any(|i| &i.name == name) {
            let known: Vec<&str> = manifest.images.iter().map(|i| i.name.as_str()).collect();
            return Err(UsageError(format!(
                "--extract: the bundle has no image '{name}' (it has: {})",
                known.join(", ")
            ))
            .into());
        }
    }
    Ok(())
}

/// Every `--extract` names an image with a chosen entry (not only deltas without a base).
fn check_extract_chosen(
    manifest: &ota_core::bundle::Manifest,
    extract: &BTreeMap<String, PathBuf>,
    chosen: &[usize],
) -> Result<()> {
    for name in extract.keys() {
        if !chosen.iter().any(|c| manifest.images[*c].name == *name) {
            return Err(UsageError(format!(
                "--extract {name}: the bundle only has deltas for '{name}' and none matches a --base given; pass --base {name}=OLD with the exact base image"
            ))
            .into());
        }
    }
    Ok(())
}

/// Streams the payload once: chosen entries are applied (deltas on their base) into their
/// `--extract` file or discarded, the others only checked. Returns the images with a delta
/// that was not applied (checked only up to its operation hashes).
fn stream_images<R: std::io::Read>(
    reader: BundleReader<R>,
    chosen: &[usize],
    bases: &Bases<'_>,
    extract: &BTreeMap<String, PathBuf>,
    progress: ProgressMode,
) -> Result<Vec<String>> {
    let bar = progress_bar(reader.manifest().payload_size, "verifying", progress);
    let mut unchecked_images = Vec::new();
    reader.stream_payload(
        |index, image| -> std::io::Result<ImageAction> {
            let is_delta = matches!(image.payload, PayloadKind::Delta { .. });
            if !chosen.contains(&index) {
                if is_delta {
                    unchecked_images.push(image.name.clone());
                }
                return Ok(ImageAction::Check);
            }
            let base = match (&image.payload, bases.paths.get(&image.name)) {
                (PayloadKind::Delta { base_size, .. }, Some((path, _))) => {
                    Some(bases.open(&image.name, path, *base_size)?)
                }
                _ => None,
            };
            let sink: Box<dyn ota_core::bundle::ImageSink + Send> = match extract.get(&image.name) {
                Some(path) => Box::new(FileImageSink::create(path)?),
                None => Box::new(ota_core::bundle::DiscardSink),
            };
            Ok(ImageAction::Write { sink, base })
        },
        &|n| bar.inc(n),
    )?;
    bar.finish();
    Ok(unchecked_images)
}

/// The human-readable result.
fn print_report(
    args: &VerifyArgs,
    manifest: &ota_core::bundle::Manifest,
    signed_by: &[String],
    extract: &BTreeMap<String, PathBuf>,
    unchecked_images: &[String],
) {
    let checked = if unchecked_images.is_empty() {
        "every chunk and image hash matches"
    } else {
        "every hash that could be checked matches"
    };
    println!(
        "OK: {} {} verified: {} image(s), signatures from {} trusted key(s) (threshold {}), {checked}",
        manifest.product,
        manifest.version,
        manifest.images.len(),
        signed_by.len(),
        args.threshold
    );
    for (name, path) in extract {
        println!("extracted {name} to {}", path.display());
    }
    if let (Some(record), Some(path)) = (&manifest.provenance, &args.provenance) {
        println!(
            "provenance {} is the one the signed manifest names ({}) and attests every image; check its own signature with slsa-verifier or cosign",
            path.display(),
            record.predicate_type
        );
    }
    for name in unchecked_images {
        println!("note: a delta of image '{name}' was checked only up to its operation hashes; pass --base {name}=OLD to apply it and check its image hash");
    }
}

/// The `--base` files, and the SHA-256 of each prefix hashed to choose the entries.
struct Bases<'a> {
    paths: &'a BTreeMap<String, (PathBuf, u64)>,
    hashed: &'a BaseHashes,
}

/// The SHA-256 of each base prefix hashed to choose the entries, by image and length.
type BaseHashes = BTreeMap<(String, u64), Sha256Digest>;

impl Bases<'_> {
    /// Opens image `name`'s base for a delta made from its first `len` bytes, with their hash
    /// when `choose_entries` computed it (the reader then does not hash them again).
    fn open(
        &self,
        name: &str,
        path: &std::path::Path,
        len: u64,
    ) -> std::io::Result<Box<dyn ota_core::delta::apply::BaseRead>> {
        let file = std::fs::File::open(path)?;
        let known = self.hashed.get(&(name.to_owned(), len)).copied();
        Ok(ota_core::delta::apply::HashedBase::boxed(file, len, known))
    }
}

/// Per image name, which manifest entry to apply ([`choose_payloads`], the rule the device
/// uses): the delta whose base hash matches the given base, else the full image. A base given
/// for an image that matches none of its deltas is an error (exit 7) even when a full image is
/// there too: the caller said which base the device runs. Images with only deltas and no base
/// given are checked as far as possible, not applied.
/// Also returns the base prefixes it hashed.
fn choose_entries(
    manifest: &ota_core::bundle::Manifest,
    bases: &BTreeMap<String, (std::path::PathBuf, u64)>,
) -> Result<(Vec<usize>, BaseHashes)> {
    let offers = manifest_offers(manifest);
    let mut names: Vec<&str> = offers
        .iter()
        .filter(|o| o.base.is_none() || bases.contains_key(o.name))
        .map(|o| o.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut read_error = None;
    let mut hashed = BTreeMap::new();
    let chosen = choose_payloads(&offers, &names, |name, len| {
        let (path, _) = bases.get(name)?;
        let sha256 = hash_prefix(path, len)
            .map_err(|e| read_error.get_or_insert(e))
            .ok()?;
        hashed.insert((name.to_owned(), len), sha256);
        Some(sha256)
    });
    if let Some(e) = read_error {
        return Err(e);
    }
    let wrong_base = |image: &str| ota_core::bundle::BundleError::WrongBase {
        image: image.to_owned(),
        reason: "the given base matches none of the bundle's deltas for it".into(),
    };
    let chosen = chosen.map_err(|e| wrong_base(&e.image))?;
    for (name, pick) in &chosen {
        let has_deltas = offers.iter().any(|o| o.name == name && o.base.is_some());
        if bases.contains_key(name) && has_deltas && !pick.delta {
            return Err(wrong_base(name).into());
        }
    }
    Ok((chosen.values().map(|c| c.index).collect(), hashed))
}

/// SHA-256 of the first `len` bytes of a file (all of it when shorter: then it cannot match).
fn hash_prefix(path: &std::path::Path, len: u64) -> Result<Sha256Digest> {
    use sha2::Digest;
    let mut file = std::io::Read::take(
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        len,
    );
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Sha256Digest::from_hasher(hasher))
}

/// Whether two paths name the same file (same device and inode).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
