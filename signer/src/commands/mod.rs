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
