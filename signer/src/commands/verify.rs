//! `ota-sign verify`: signatures, then every chunk and image hash in one streaming pass;
//! `--extract` keeps chosen images (each renamed into place only once it verified).

use super::{load_trust, open_bundle, parse_name_path, progress_bar};
use crate::cli::VerifyArgs;
use crate::exit::UsageError;
use anyhow::Result;
use ota_core::bundle::{BundleReader, DiscardSink, FileImageSink, ImageSink};
use std::collections::BTreeMap;

pub fn run(args: VerifyArgs) -> Result<()> {
    let trust = load_trust(&args.trusted, args.threshold)?;
    let mut extract = BTreeMap::new();
    for spec in &args.extract {
        let (name, path) = parse_name_path(spec, "--extract")?;
        if extract.insert(name.clone(), path).is_some() {
            return Err(UsageError(format!("--extract names image '{name}' twice")).into());
        }
    }
    let reader = BundleReader::open(open_bundle(&args.bundle)?, &trust)?;
    let manifest = reader.manifest().clone();
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
    let signed_by: Vec<String> = reader.signed_by().iter().map(|id| id.to_string()).collect();
    let bar = progress_bar(manifest.payload_size, "verifying");
    reader.stream_payload(
        |image| -> std::io::Result<Box<dyn ImageSink + Send>> {
            Ok(match extract.get(&image.name) {
                Some(path) => Box::new(FileImageSink::create(path)?),
                None => Box::new(DiscardSink),
            })
        },
        &|n| bar.inc(n),
    )?;
    bar.finish_and_clear();
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
        });
        println!("{result}");
    } else {
        println!(
            "OK: {} {} verified: {} image(s), signatures from {} trusted key(s) (threshold {}), every chunk and image hash matches",
            manifest.product,
            manifest.version,
            manifest.images.len(),
            signed_by.len(),
            args.threshold
        );
        for (name, path) in &extract {
            println!("extracted {name} to {}", path.display());
        }
    }
    Ok(())
}
