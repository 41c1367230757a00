//! One module per subcommand, plus the argument helpers they share.

mod bundle;
mod fleet;
mod inspect;
mod key;
mod keygen;
mod repo;
mod rollout;
mod verify;

use crate::cli::{Cli, Command};
use crate::exit::UsageError;
use anyhow::{Context, Result};
use ota_core::bundle::TrustPolicy;
use ota_core::keys::VerifyingKey;
use ota_core::progress::{ProgressLines, ProgressMode};
use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    crate::keys::configure(cli.pkcs11_module);
    match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Key(command) => key::run(command),
        Command::Bundle(args) => bundle::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Repo(command) => repo::run(command),
        Command::Rollout(command) => rollout::run(command),
        Command::Fleet(command) => fleet::run(command),
    }
}

/// Splits `NAME=PATH`.
fn parse_name_path(spec: &str, flag: &str) -> Result<(String, PathBuf)> {
    match spec.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err(UsageError(format!("{flag} expects NAME=PATH, got {spec:?}")).into()),
    }
}

/// Opens a bundle path, or standard input for `-`, buffered.
fn open_bundle(path: &Path) -> Result<Box<dyn Read + Send>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::with_capacity(1 << 20, io::stdin())));
    }
    let file =
        File::open(path).with_context(|| format!("cannot open bundle {}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
}

/// Loads trusted public keys and checks the threshold against them.
fn load_trust(paths: &[PathBuf], threshold: usize) -> Result<TrustPolicy> {
    let keys = paths
        .iter()
        .map(|p| VerifyingKey::from_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TrustPolicy::new(keys, threshold)?)
}

/// Progress as `--progress` asks: a bar on a terminal, lines for logs, or nothing.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines(ProgressLines),
    Hidden,
}

impl Progress {
    fn inc(&self, n: u64) {
        match self {
            Self::Bar(bar) => bar.inc(n),
            Self::Lines(lines) => lines.inc(n),
            Self::Hidden => {}
        }
    }

    fn finish(&self) {
        match self {
            Self::Bar(bar) => bar.finish_and_clear(),
            Self::Lines(lines) => lines.finish(),
            Self::Hidden => {}
        }
    }
}

fn progress_bar(total: u64, message: &'static str, mode: ProgressMode) -> Progress {
    match mode.resolve() {
        ProgressMode::Plain => Progress::Lines(ProgressLines::new(message, total, false)),
        ProgressMode::Json => Progress::Lines(ProgressLines::new(message, total, true)),
        ProgressMode::Bar if io::stderr().is_terminal() => {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(message);
            Progress::Bar(bar)
        }
        _ => Progress::Hidden,
    }
}

/// Reads and parses a provenance document (`--provenance FILE`).
fn read_provenance(
    path: Option<&Path>,
) -> Result<Option<ota_core::provenance::ProvenanceDocument>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let bytes = read_capped(path, ota_core::provenance::MAX_PROVENANCE_SIZE)?;
    let document = ota_core::provenance::ProvenanceDocument::parse(&bytes)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    Ok(Some(document))
}

/// Checks that `path` holds the provenance `manifest` names and that it attests every image.
fn check_provenance(manifest: &ota_core::bundle::Manifest, path: &Path) -> Result<()> {
    let Some(document) = read_provenance(Some(path))? else {
        return Ok(());
    };
    let Some(record) = &manifest.provenance else {
        return Err(UsageError(format!(
            "{}: the bundle's signed manifest names no provenance (it was built without --provenance)",
            path.display()
        ))
        .into());
    };
    if record.sha256 != document.record.sha256 {
        return Err(UsageError(format!(
            "{}: not the provenance the bundle names (sha256 {}, the signed manifest says {})",
            path.display(),
            document.record.sha256,
            record.sha256
        ))
        .into());
    }
    let images = manifest.images.iter().map(|i| (i.name.as_str(), &i.sha256));
    document
        .require_subjects(images)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    Ok(())
}

/// The whole file, refused when larger than `limit`.
fn read_capped(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > limit {
        return Err(UsageError(format!("{} is larger than {limit} bytes", path.display())).into());
    }
    Ok(bytes)
}
