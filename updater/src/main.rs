//! `ota-update`: the device-side updater CLI. Parses arguments, prints progress and reports,
//! maps errors to exit codes; the logic lives in the `ota_updater` library.

mod cli;

/// The types the command line needs from the libraries (build.rs has stand-ins for them).
mod cli_types {
    pub use ota_core::progress::ProgressMode;
    pub use ota_updater::config::DEFAULT_CONFIG_PATH;
    pub use semver::Version;
}

use clap::Parser;
use cli::{Cli, Command, TufArgs, TufClock, TufCommand};
use ota_core::progress::{ProgressLines, ProgressMode};
use ota_updater::config::Config;
use ota_updater::fetch::Fetcher;
use ota_updater::install::{InstallEvent, InstallOptions};
use ota_updater::journal::InstallJournal;
use ota_updater::lifecycle::{self, BootOutcome, Status};
use ota_updater::source::{BundleSource, Forward, ReadThrough};
use ota_updater::updates::CheckReport;
use ota_updater::UpdateError;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    ota_core::exit::end_quietly_on_broken_pipe();
    let cli = Cli::parse();
    if let Command::Tuf(args) = cli.command {
        // The debugging client speaks only 0 / 1, like python-tuf's examples.
        return match run_tuf(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                ota_core::exit::report_error("ota-update tuf", 1, &err.to_string());
                ExitCode::FAILURE
            }
        };
    }
    // `boot --json` prints a failed health check as its own verdict line.
    let boot_json = matches!(cli.command, Command::Boot { json: true, .. });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err.exit_code();
            if boot_json && matches!(err, UpdateError::HealthCheck(_)) {
                eprintln!("ota-update: error: {err}");
            } else {
                ota_core::exit::report_error("ota-update", code, &err.to_string());
            }
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<(), UpdateError> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Install {
            source: None,
            allow_downgrade: true,
            ..
        } => Err(UpdateError::Config {
            // The repository path installs only newer releases; a downgrade is a deliberate
            // act on a specific, named bundle.
            path: "command line".into(),
            reason: "--allow-downgrade needs a SOURCE bundle; from the repository only newer releases are installed".into(),
        }),
        Command::Install {
            source: None,
            reboot,
            json,
            ..
        } => install_from_repository(&config, reboot, json),
        Command::Install {
            source: Some(source),
            allow_downgrade,
            reboot,
            json,
            progress,
        } => install_from_source(&config, &source, (allow_downgrade, reboot), json, progress),
        Command::Check { json } => check(&config, json),
        Command::Daemon { rounds, json } => ota_updater::updates::daemon(&config, rounds, json),
        Command::Tuf(_) => Ok(()),
        Command::Status { json } => print_json_or(&lifecycle::status(&config)?, json, print_status),
        Command::Boot { no_reboot, json } => boot(&config, no_reboot, json),
        Command::Commit { json } => {
            let slot = lifecycle::commit(&config)?;
            match json {
                true => json_line(&serde_json::json!({"committed": slot})),
                false => println!("slot {slot} committed: marked good"),
            }
            Ok(())
        }
        Command::Rollback { reboot, json } => {
            let slot = lifecycle::rollback(&config)?;
            match json {
                true => json_line(&serde_json::json!({"next_boot": slot, "reboot": reboot})),
                false => println!("slot {slot} verified and set to boot next; a newer release left is held (`ota-update release-hold` lifts it)"),
            }
            if reboot {
                lifecycle::request_reboot(&config)?;
            }
            Ok(())
        }
        Command::Hold {
            until,
            reason,
            json,
        } => hold(&config, until.as_deref(), &reason, json),
        Command::ReleaseHold { version, json } => {
            let released = lifecycle::release_hold(&config, version.as_ref())?;
            match json {
                true => json_line(&serde_json::json!({"lifted": released})),
                false => println!("{} hold(s) lifted", released.len()),
            }
            Ok(())
        }
        Command::SimulateBoot => {
            let slot = lifecycle::simulate_boot(&config)?;
            println!("simulated bootloader booted slot {slot}");
            Ok(())
        }
        Command::InitBootloader { force, json } => init_bootloader(&config, force, json),
    }
}

/// Prints `value` as pretty JSON, or with `text` for people.
fn print_json_or<T: serde::Serialize>(
    value: &T,
    json: bool,
    text: impl FnOnce(&T),
) -> Result<(), UpdateError> {
    if json {
        let line = serde_json::to_string_pretty(value).map_err(|e| UpdateError::Io {
            context: "cannot encode the report".into(),
            source: std::io::Error::other(e),
        })?;
        println!("{line}");
    } else {
        text(value);
    }
    Ok(())
}

/// One JSON line (progress events, results).
fn json_line<T: serde::Serialize>(value: &T) {
    if let Ok(line) = serde_json::to_string(value) {
        println!("{line}");
    }
}

fn version_or(version: Option<&semver::Version>, unknown: &str) -> String {
    version.map_or_else(|| unknown.to_owned(), |v| v.to_string())
}

/// `install` without a SOURCE: the newest release for this device from the repository.
fn install_from_repository(config: &Config, reboot: bool, json: bool) -> Result<(), UpdateError> {
    let fetcher = ota_updater::updates::device_fetcher(config)?;
    let progress = |event: InstallEvent| {
        if json {
            json_line(&event);
        }
    };
    let (report, installed) = ota_updater::updates::install_update(config, &fetcher, &progress)?;
    let Some(installed) = installed else {
        if let Some(hold) = &report.held {
            return Err(UpdateError::Refused(format!(
                "updates are held ({}); `ota-update release-hold` lifts it",
                hold.reason
            )));
        }
        if json {
            json_line(
                &serde_json::json!({"event": "up_to_date", "version": report.booted_version, "reboot_pending": report.reboot_pending}),
            );
        } else if let Some(pending) = &report.reboot_pending {
            println!(
                "installed, reboot pending: {} in slot {} boots next, once, on trial",
                version_or(pending.version.as_ref(), "an update"),
                pending.slot
            );
        } else {
            println!(
                "up to date: no release newer than {} for {} on channel {}",
                version_or(report.booted_version.as_ref(), "the booted one"),
                report.product,
                report.channel
            );
        }
        return Ok(());
    };
    if !json {
        println!("installed {} into slot {}: it boots next, once, on trial; `ota-update boot` commits it after a healthy boot", installed.version, installed.slot);
    }
    if reboot {
        lifecycle::request_reboot(config)?;
    }
    Ok(())
}

/// Opens a bundle source: a file, an http(s):// URL (streamed, resumed) or - for stdin. A URL
/// whose earlier install was interrupted is asked for the bundle's head first, so the payload
/// already in the slot is not downloaded again.
fn open_source(config: &Config, source: &Path) -> Result<BundleSource, UpdateError> {
    let url = source
        .to_str()
        .filter(|s| s.starts_with("http://") || s.starts_with("https://"));
    let inner: Box<dyn Forward> = if source.as_os_str() == "-" {
        Box::new(ReadThrough(std::io::stdin()))
    } else if let Some(url) = url {
        // No metadata length for a plain URL: the bundle's own signed payload size ends the
        // read (a byte more is refused as corrupt).
        let fetcher = Fetcher::new(config.fetch.clone()).map_err(UpdateError::Fetch)?;
        let head = InstallJournal::load(&config.state_dir)
            .filter(|j| j.source == url)
            .map(|j| j.head_len);
        let download = match head {
            Some(head) => fetcher.open_head(url, u64::MAX, false, head),
            None => fetcher.open(url, u64::MAX, false),
        };
        Box::new(download.map_err(UpdateError::Fetch)?)
    } else {
        Box::new(std::fs::File::open(source).map_err(UpdateError::io(format!(
            "cannot open bundle {}",
            source.display()
        )))?)
    };
    Ok(BundleSource::new(inner))
}

/// How the install journal names a source given on the command line.
fn source_name(source: &Path) -> String {
    if source.as_os_str() == "-" {
        return "stdin".to_owned();
    }
    let is_url = source
        .to_str()
        .is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"));
    match std::path::absolute(source) {
        Ok(path) if !is_url => path.display().to_string(),
        _ => source.display().to_string(),
    }
}

/// `install SOURCE`: a file, URL or stdin, verified by its own signatures.
fn install_from_source(
    config: &Config,
    source: &Path,
    (allow_downgrade, reboot): (bool, bool),
    json: bool,
    progress: ProgressMode,
) -> Result<(), UpdateError> {
    let input = open_source(config, source)?;
    let mode = progress.resolve();
    let bar = if !json && mode == ProgressMode::Bar && std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    // Lines for logs, once the payload size is known.
    let lines = std::cell::OnceCell::new();
    let line_mode = matches!(mode, ProgressMode::Plain | ProgressMode::Json) && !json;
    let lines_inc = |n: u64| {
        if let Some(l) = lines.get() {
            ProgressLines::inc(l, n);
        }
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "installing [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let events = |event: InstallEvent| {
        if json {
            json_line(&event);
            return;
        }
        match event {
            InstallEvent::Accepted {
                payload_size,
                ref images,
                ..
            } => {
                bar.set_length(payload_size);
                if line_mode {
                    let json_lines = mode == ProgressMode::Json;
                    let _ = lines.set(ProgressLines::new("installing", payload_size, json_lines));
                }
                bar.suspend(|| println!("applying {}", images.join(", ")));
            }
            InstallEvent::Resumed {
                verified_bytes,
                total_bytes,
                payload_skipped,
            } => {
                bar.inc(payload_skipped);
                lines_inc(payload_skipped);
                bar.suspend(|| {
                    println!(
                        "resuming an interrupted install: {} of {} image bytes already in the slot, verified",
                        verified_bytes, total_bytes
                    )
                });
            }
            InstallEvent::StartingOver { ref reason } => bar.suspend(|| {
                println!("an interrupted install cannot be resumed ({reason}): starting over")
            }),
            InstallEvent::Progress { bytes } => {
                bar.inc(bytes);
                lines_inc(bytes);
            }
            InstallEvent::Switched { .. } => {
                bar.finish_and_clear();
                if let Some(l) = lines.get() {
                    l.finish();
                }
            }
        }
    };
    let options = InstallOptions {
        allow_downgrade,
        source: Some(source_name(source)),
        ..InstallOptions::default()
    };
    let report = ota_updater::install::install(config, input, &options, &events)?;
    if !json {
        println!(
            "installed {} into slot {}: it boots next, once, on trial; `ota-update boot` commits it after a healthy boot",
            report.version, report.slot
        );
    }
    if reboot {
        lifecycle::request_reboot(config)?;
    }
    Ok(())
}

/// `check`: what this device would install now, and why not the others.
fn check(config: &Config, json: bool) -> Result<(), UpdateError> {
    let fetcher = ota_updater::updates::device_fetcher(config)?;
    let report = ota_updater::updates::check(config, &fetcher)?;
    print_json_or(&report, json, print_check)
}

fn print_check(report: &CheckReport) {
    let booted = version_or(report.booted_version.as_ref(), "unknown");
    match (&report.update, &report.reboot_pending, &report.held) {
        (Some(c), _, _) => println!(
            "update available: {} {} ({}, {} bytes) for {} on channel {}, booted {booted}",
            c.name, c.version, c.kind, c.length, report.product, report.channel
        ),
        (None, Some(p), _) => println!(
            "installed, reboot pending: {} in slot {} boots next, once, on trial (booted {booted})",
            version_or(p.version.as_ref(), "an update"),
            p.slot
        ),
        (None, None, Some(hold)) => println!(
            "updates held ({}): nothing is installed; booted {booted}",
            hold.reason
        ),
        (None, None, None) => println!(
            "up to date: {} {booted} on channel {}",
            report.product, report.channel
        ),
    }
    for skipped in &report.skipped {
        println!("skipped {}: {}", skipped.name, skipped.reason);
    }
    if report.refresh.clock_behind {
        println!("note: the system clock is behind the last verified time; expiry was checked against that time");
    }
}

/// `boot`: commit a healthy trial, or record the failure, say it, and reboot.
fn boot(config: &Config, no_reboot: bool, json: bool) -> Result<(), UpdateError> {
    let outcome = match lifecycle::boot(config) {
        Err(UpdateError::HealthCheck(reason)) => {
            // Say it before the reset: on a device the reboot command does not return. With
            // --json this line is the verdict (main adds no JSON error after it).
            if json {
                json_line(&serde_json::json!({"result": "fell_back", "reason": reason}));
            } else if !no_reboot {
                println!("health check failed: {reason}; rebooting");
            }
            if !no_reboot {
                lifecycle::request_reboot(config)?;
            }
            return Err(UpdateError::HealthCheck(reason));
        }
        other => other?,
    };
    if json {
        json_line(&outcome);
        return Ok(());
    }
    match outcome {
        BootOutcome::Steady { slot } => println!("booted slot {slot}: good, nothing to do"),
        BootOutcome::Committed { slot } => {
            println!("booted slot {slot} on trial: health check passed, committed")
        }
        BootOutcome::RollbackDetected { failed, running } => println!(
            "rollback detected: slot {failed} failed its trial boot, running slot {running}"
        ),
    }
    Ok(())
}

/// `hold [--until TIME]`.
fn hold(config: &Config, until: Option<&str>, reason: &str, json: bool) -> Result<(), UpdateError> {
    let until = until.map(parse_until).transpose()?;
    lifecycle::hold(config, until, reason)?;
    if json {
        let until = until.map(|t| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
        });
        json_line(&serde_json::json!({"held": true, "until": until, "reason": reason}));
        return Ok(());
    }
    match until {
        Some(t) => println!(
            "updates held until {}",
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t))
        ),
        None => println!("updates held until `ota-update release-hold`"),
    }
    Ok(())
}

/// `--until`: an RFC 3339 time, or a duration from now (`12h`, `7d`).
fn parse_until(text: &str) -> Result<u64, UpdateError> {
    let at = humantime::parse_rfc3339_weak(text)
        .ok()
        .or_else(|| {
            humantime::parse_duration(text)
                .ok()
                .map(|d| SystemTime::now() + d)
        })
        .ok_or_else(|| UpdateError::Config {
            path: "command line".into(),
            reason: format!(
                "--until {text:?}: give an RFC 3339 time (2027-01-31T00:00:00Z) or a duration (12h, 7d)"
            ),
        })?;
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0))
}

fn run_tuf(args: TufArgs) -> Result<(), UpdateError> {
    use ota_updater::tuf_client::{
        download_target_to, target_url, ClockPolicy, Downloaded, MetadataCache, TufClient,
    };
    let cache = MetadataCache::new(&args.metadata_dir);
    let missing = |flag: &str| UpdateError::Config {
        path: "command line".into(),
        reason: format!("{flag} is required for this command"),
    };
    match args.command {
        TufCommand::Init { root_json } => {
            let bytes = std::fs::read(&root_json).map_err(UpdateError::io(format!(
                "cannot read {}",
                root_json.display()
            )))?;
            cache.init_root(&bytes, true)?;
            match args.json {
                true => {
                    json_line(&serde_json::json!({"trusted_root_stored_in": args.metadata_dir}))
                }
                false => println!("trusted root stored in {}", args.metadata_dir.display()),
            }
            Ok(())
        }
        TufCommand::Refresh | TufCommand::Download => {
            let url = args
                .metadata_url
                .as_deref()
                .ok_or_else(|| missing("--metadata-url"))?;
            let settings = ota_updater::fetch::FetchSettings {
                ca_file: args.ca_file.clone(),
                ..Default::default()
            };
            let fetcher = Fetcher::new(settings).map_err(UpdateError::Fetch)?;
            let clock = match args.clock {
                TufClock::Floor => ClockPolicy::Floor,
                TufClock::System => ClockPolicy::System,
            };
            let client = TufClient::new(&fetcher, url, cache).with_clock(clock);
            let (mut set, mut report) = client.refresh()?;
            if matches!(args.command, TufCommand::Refresh) {
                // Every top-level role; delegated roles wait for a search (spec 5.6.7).
                client.load_top_targets(&mut set, &mut report)?;
                if args.json {
                    json_line(&serde_json::json!({"root_version": report.root_version,
                        "timestamp_version": report.timestamp_version,
                        "snapshot_version": report.snapshot_version}));
                } else {
                    println!(
                        "refreshed: root v{}, timestamp v{}, snapshot v{}",
                        report.root_version, report.timestamp_version, report.snapshot_version
                    );
                }
                return Ok(());
            }
            let base = args
                .target_base_url
                .as_deref()
                .ok_or_else(|| missing("--target-base-url"))?;
            let dir = args
                .target_dir
                .as_ref()
                .ok_or_else(|| missing("--target-dir"))?;
            if args.target_names.is_empty() {
                return Err(missing("--target-name"));
            }
            let consistent = set.root().meta.consistent_snapshot;
            let mut results = Vec::new();
            for name in &args.target_names {
                let entry = client.find_target(&mut set, name, &mut report)?;
                let url = target_url(base, name, &entry, consistent);
                // The target's path may hold '/': keep only a safe file name locally.
                let file_name = name.rsplit('/').next().unwrap_or(name);
                if file_name.is_empty() || file_name == "." || file_name == ".." {
                    return Err(UpdateError::Refused(format!(
                        "target name {name:?} has no usable file name"
                    )));
                }
                let fetched = download_target_to(&fetcher, &url, &entry, &dir.join(file_name))?;
                let status = match fetched {
                    Downloaded::Fetched => "downloaded",
                    Downloaded::AlreadyPresent => "already_present",
                };
                if !args.json {
                    match fetched {
                        Downloaded::Fetched => {
                            println!("downloaded {name} ({} bytes)", entry.length)
                        }
                        Downloaded::AlreadyPresent => {
                            println!("{name} already present ({} bytes)", entry.length)
                        }
                    }
                }
                results.push(
                    serde_json::json!({"name": name, "length": entry.length, "status": status}),
                );
            }
            if args.json {
                json_line(&serde_json::json!({"targets": results}));
            }
            Ok(())
        }
    }
}

/// `ota-update init-bootloader`: one line on stdout saying what was written, warnings on stderr.
fn init_bootloader(config: &Config, force: bool, json: bool) -> Result<(), UpdateError> {
    let report = ota_updater::bootloader::init_environment(config, force)?;
    if json {
        json_line(&serde_json::json!({"summary": report.summary(), "warnings": report.warnings}));
        return Ok(());
    }
    println!("{}", report.summary());
    for warning in &report.warnings {
        eprintln!("ota-update: warning: {warning}");
    }
    Ok(())
}

fn print_status(s: &Status) {
    match (&s.booted, &s.booted_error) {
        (Some(slot), _) => println!("booted slot:  {slot}"),
        (None, Some(e)) => println!("booted slot:  unknown ({e})"),
        (None, None) => println!("booted slot:  unknown"),
    }
    println!(
        "next boot:    {} (bootloader {}, order {})",
        s.next_boot.as_ref().map(|x| x.as_str()).unwrap_or("none"),
        s.bootloader,
        s.order
            .iter()
            .map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    for slot in &s.slots {
        print_slot_status(slot);
    }
    print_pending(s);
    print_holds(&s.holds);
    if let Some(r) = &s.recovered {
        println!(
            "recovered:    records rebuilt from the bootloader state: {}{}",
            r.reason,
            r.kept_as
                .as_ref()
                .map(|k| format!(" (old file kept as {k})"))
                .unwrap_or_default()
        );
    }
    if let Some(d) = &s.authorised_downgrade {
        println!("downgrade:    to {} authorised: {}", d.to, d.reason);
    }
    if let Some(note) = &s.bootloader_uninitialised {
        println!("bootloader:   not initialised: {note}");
    }
    if let Some(r) = &s.resumable_install {
        println!(
            "resumable:    install of {} into slot {} from {}: {} of {} image bytes durable ({} %); unless an install is running now, installing the same bundle again continues there",
            r.version,
            r.slot,
            r.source,
            r.written_bytes,
            r.total_bytes,
            (r.written_bytes * 100).checked_div(r.total_bytes).unwrap_or(0)
        );
    }
    print_last_result(s);
}

/// One `slot X: version ..., content, bootloader flags, image hashes` line of the status.
fn print_slot_status(slot: &lifecycle::SlotStatus) {
    let (content, version, hashes) = match &slot.record {
        Some(r) => (
            serde_json::to_value(r.content)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            r.version
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "unknown".into()),
            r.images
                .iter()
                .map(|(n, i)| format!("{n}={}…", &i.sha256.to_hex()[..16]))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        None => (
            "never written by the updater".into(),
            "unknown".into(),
            String::new(),
        ),
    };
    println!(
        "slot {}{}: version {version}, {content}, bootloader good={} tries={} {hashes}",
        slot.name,
        if slot.booted { " (booted)" } else { "" },
        u8::from(slot.boot.good),
        slot.boot.tries
    );
}

/// The `pending:` line and one `failed:` line per release that failed its trial here.
fn print_pending(s: &Status) {
    match &s.pending {
        Some(p) if s.reboot_pending => println!(
            "pending:      {} in slot {}: installed, reboot pending (boots next, once, on trial)",
            version_or(p.version.as_ref(), "an update"),
            p.slot
        ),
        Some(p) => println!(
            "pending:      {} in slot {}, waiting for its trial boot",
            version_or(p.version.as_ref(), "an update"),
            p.slot
        ),
        None => println!("pending:      none"),
    }
    for failed in &s.failed_releases {
        println!(
            "failed:       {} (not installed again without a source): {}",
            version_or(failed.version.as_ref(), "unknown version"),
            failed.reason
        );
    }
}

/// One `hold:` line per hold in force.
fn print_holds(holds: &[ota_updater::state::Hold]) {
    for hold in holds {
        let until = hold.until.map_or_else(
            || "until released".to_owned(),
            |t| {
                let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t));
                format!("until {at}")
            },
        );
        let what = hold
            .version
            .as_ref()
            .map_or_else(|| "all updates".to_owned(), |v| format!("release {v}"));
        println!("hold:         {what} {until}: {}", hold.reason);
    }
}

/// The `last result:` line.
fn print_last_result(s: &Status) {
    match &s.last_result {
        Some(o) => println!(
            "last result:  {} (slot {}{}): {}",
            serde_json::to_value(o.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            o.slot,
            o.version
                .as_ref()
                .map(|v| format!(", {v}"))
                .unwrap_or_default(),
            o.reason
        ),
        None => println!("last result:  none"),
    }
}
