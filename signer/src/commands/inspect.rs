//! `ota-sign inspect`: shows a manifest. Without `--trusted` nothing is checked and the output
//! says so; with it, the manifest signatures are checked (the payload is not: use `verify`).

use super::{load_trust, open_bundle};
use crate::cli::InspectArgs;
use anyhow::Result;
use ota_core::bundle::{read_unverified, BundleReader, Manifest, PayloadKind};
use std::time::{Duration, UNIX_EPOCH};

pub fn run(args: InspectArgs) -> Result<()> {
    let input = open_bundle(&args.bundle)?;
    let (manifest, key_ids, status) = if args.trusted.is_empty() {
        let (manifest, ids) = read_unverified(input)?;
        let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        (manifest, ids, "unverified")
    } else {
        let trust = load_trust(&args.trusted, args.threshold)?;
        let reader = BundleReader::open(input, &trust)?;
        let ids = reader.signed_by().iter().map(|id| id.to_string()).collect();
        (reader.manifest().clone(), ids, "signatures-verified")
    };
    if args.json {
        let out = serde_json::json!({
            "status": status,
            "manifest": manifest,
            "signatures": key_ids,
        });
        println!("{out}");
        return Ok(());
    }
    if status == "unverified" {
        println!("UNVERIFIED: no signature was checked; pass --trusted PUB to check them, or use `ota-sign verify`.");
    } else {
        println!("Signatures verified (threshold {}); payload not checked: use `ota-sign verify` for that.", args.threshold);
    }
    print_manifest(&manifest, &key_ids, status == "unverified");
    Ok(())
}

fn print_manifest(m: &Manifest, key_ids: &[String], unverified: bool) {
    let created = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(m.created));
    println!("product:      {}", m.product);
    println!("version:      {}", m.version);
    println!("created:      {created} ({})", m.created);
    println!(
        "format:       {} (compression {}, chunk size {})",
        m.format, m.compression, m.chunk_size
    );
    println!("payload size: {}", m.payload_size);
    for image in &m.images {
        let kind = match &image.payload {
            PayloadKind::Full => "full".to_owned(),
            PayloadKind::Delta {
                base_sha256,
                base_size,
                ops,
            } => {
                format!(
                    "delta from base {base_sha256} ({base_size} bytes), {} operation(s)",
                    ops.count
                )
            }
        };
        let parts = match image.payload {
            PayloadKind::Full => format!(", {} chunk(s)", image.chunks.len()),
            PayloadKind::Delta { .. } => String::new(),
        };
        println!(
            "image {}: {} bytes, sha256 {}, {kind}{parts}, {} bytes stored",
            image.name,
            image.size,
            image.sha256,
            image.payload_len()
        );
    }
    if let Some(p) = &m.provenance {
        println!(
            "provenance:   {} ({}, {} bytes, sha256 {}){}",
            p.predicate_type,
            p.envelope,
            p.size,
            p.sha256,
            p.builder_id
                .as_deref()
                .map(|b| format!(", builder {b}"))
                .unwrap_or_default()
        );
    }
    let label = if unverified {
        "claimed signer"
    } else {
        "verified signer"
    };
    for id in key_ids {
        println!("{label}: {id}");
    }
}
