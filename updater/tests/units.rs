//! The systemd units shipped in `updater/systemd/`: `systemd-analyze verify` accepts them, their
//! ordering cannot deadlock the boot verdict (the property docs/updater.md explains), and the
//! example health check script judges the states `systemctl` reports as documented.

// Test helpers unwrap freely: clippy's allow-unwrap-in-tests covers only #[test] functions.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the units are installed from.
fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// The shipped unit files, by name.
fn shipped_units() -> Vec<(String, String)> {
    let mut units: Vec<(String, String)> = fs::read_dir(units_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("service" | "timer" | "target")
            )
        })
        .map(|path| {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, fs::read_to_string(&path).unwrap())
        })
        .collect();
    units.sort();
    assert!(
        units.iter().any(|(n, _)| n == "ota-boot.service")
            && units.iter().any(|(n, _)| n == "ota-update.service"),
        "{units:?}"
    );
    units
}

/// A unit file as section → key → values (repeated keys and space-separated lists flattened).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            unit.entry(section.clone()).or_default();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap();
        let values = unit
            .entry(section.clone())
            .or_default()
            .entry(key.trim().to_owned())
            .or_default();
        if key.trim().starts_with("Exec") {
            values.push(value.trim().to_owned());
        } else {
            values.extend(value.split_whitespace().map(str::to_owned));
        }
    }
    unit
}

fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a [String] {
    unit.get(section)
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn units() -> BTreeMap<String, Unit> {
    shipped_units()
        .into_iter()
        .map(|(name, text)| (name, parse_unit(&text)))
        .collect()
}

fn systemd_analyze() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("systemd-analyze"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`systemd-analyze` is not installed: install the Debian package `systemd` \
                 (scripts/install-deps.sh does)"
            )
        })
}

#[test]
fn shipped_units_pass_systemd_analyze_verify() {
    // verify checks that ExecStart= binaries exist: the copies run the ota-update just built
    // instead of /usr/bin/ota-update, and nothing else is changed.
    let binary = env!("CARGO_BIN_EXE_ota-update");
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, text) in shipped_units() {
        let mut rewritten = String::new();
        for line in text.lines() {
            if let Some(command) = line.strip_prefix("ExecStart=") {
                let args = command
                    .strip_prefix("/usr/bin/ota-update ")
                    .unwrap_or_else(|| panic!("{name}: ExecStart= is not /usr/bin/ota-update"));
                rewritten.push_str(&format!("ExecStart={binary} {args}\n"));
            } else {
                rewritten.push_str(line);
                rewritten.push('\n');
            }
        }
        let path = dir.path().join(&name);
        fs::write(&path, rewritten).unwrap();
        paths.push(path);
    }
    let out = Command::new(systemd_analyze())
        .arg("verify")
        .args(&paths)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: Vec<&str> = report
        .lines()
        .filter(|line| {
            line.contains(&*dir.path().to_string_lossy())
                || shipped_units().iter().any(|(name, _)| line.contains(name))
        })
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify ({}):\n{report}",
        out.status
    );
}

#[test]
fn the_boot_transaction_never_waits_for_the_verdict() {
    let units = units();
    let boot = &units["ota-boot.service"];
    // The start job ends at exec: the job queue can drain while the verdict (and the health
    // check waiting for that drain) runs. Oneshot, notify or forking would hold it.
    assert_eq!(values(boot, "Service", "Type"), ["exec"]);
    assert!(values(boot, "Service", "ExecStartPost").is_empty());
    assert!(values(boot, "Service", "ExecStartPre").is_empty());
    // Started late in the boot, after the standard health-check hook point.
    for target in ["multi-user.target", "boot-complete.target"] {
        assert!(
            values(boot, "Unit", "After").contains(&target.to_owned()),
            "{target}"
        );
    }
    assert_eq!(values(boot, "Unit", "Wants"), ["boot-complete.target"]);
    assert_eq!(values(boot, "Install", "WantedBy"), ["multi-user.target"]);
    // It runs with the network down.
    for key in ["Wants", "Requires", "BindsTo", "Requisite", "After"] {
        assert!(
            !values(boot, "Unit", key)
                .iter()
                .any(|u| u.starts_with("network")),
            "ota-boot.service {key}= names a network unit"
        );
    }
    // The daemon follows a clean verdict: OnSuccess= needs the unit to turn inactive.
    assert_eq!(values(boot, "Unit", "OnSuccess"), ["ota-update.service"]);
    assert_ne!(values(boot, "Service", "RemainAfterExit"), ["yes"]);

    // Nothing in the boot transaction is ordered after the verdict: no shipped unit is
    // pulled into the boot and ordered after ota-boot.service, and ota-boot.service is
    // ordered before nothing.
    assert!(values(boot, "Unit", "Before").is_empty());
    for (name, unit) in &units {
        let after_boot = values(unit, "Unit", "After").contains(&"ota-boot.service".to_owned());
        let installed = unit.contains_key("Install");
        assert!(
            !(after_boot && installed),
            "{name} is enabled into the boot and ordered after ota-boot.service"
        );
        for key in ["RequiredBy", "WantedBy", "UpheldBy"] {
            for target in values(unit, "Install", key) {
                assert!(
                    name == "ota-boot.service" && target == "multi-user.target",
                    "{name}: {key}={target}"
                );
            }
        }
    }
}

#[test]
fn the_daemon_is_started_by_the_verdict_only_and_restarts_on_failure() {
    let units = units();
    let daemon = &units["ota-update.service"];
    assert!(!daemon.contains_key("Install"), "enabled on its own");
    assert_eq!(
        values(daemon, "Service", "ExecStart"),
        ["/usr/bin/ota-update daemon"]
    );
    assert_eq!(values(daemon, "Service", "Restart"), ["on-failure"]);
    assert_eq!(values(daemon, "Service", "RestartPreventExitStatus"), ["2"]);
    for key in ["Wants", "Requires", "BindsTo", "Requisite"] {
        assert!(
            values(daemon, "Unit", key).is_empty(),
            "ota-update.service pulls in {:?}",
            values(daemon, "Unit", key)
        );
    }
    // DeviceAllow= (also implied by PrivateDevices= and ProtectClock=) would close the slot
    // devices and the bootloader environment.
    for key in [
        "DeviceAllow",
        "DevicePolicy",
        "PrivateDevices",
        "ProtectClock",
    ] {
        assert!(values(daemon, "Service", key).is_empty(), "{key}");
    }
    let boot = &units["ota-boot.service"];
    assert_eq!(
        values(boot, "Service", "ExecStart"),
        ["/usr/bin/ota-update boot"]
    );
}

/// Runs the example health check with a fake `systemctl` answering `state`, listing
/// `failed` units and saying whether the default target is `active`; returns (exit code, output,
/// the systemctl calls).
fn health_check(state: &str, failed: &[&str], active: bool, ignore: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let listing: String = failed
        .iter()
        .map(|u| format!("{u} loaded failed failed Some unit\n"))
        .collect();
    fs::write(dir.path().join("failed"), listing).unwrap();
    let fake = dir.path().join("systemctl");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{calls}'\ncase \"$1\" in\n\
             is-system-running) echo {state}; [ {state} = running ];;\n\
             list-units) cat '{failed}';;\n\
             get-default) echo graphical.target;;\n\
             is-active) {active};;\n\
             *) exit 99;;\nesac\n",
            calls = calls.display(),
            failed = dir.path().join("failed").display(),
            active = if active { "true" } else { "false" },
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg(units_dir().join("health-check.example.sh"))
        .env("PATH", path)
        .env("OTA_HEALTH_IGNORE_UNITS", ignore)
        .output()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = fs::read_to_string(&calls).unwrap_or_default();
    (out.status.code().unwrap_or(-1), output, calls)
}

#[test]
fn example_health_check_waits_for_the_boot_and_judges_failed_units() {
    let (code, output, calls) = health_check("running", &[], true, "");
    assert_eq!(code, 0, "{output}");
    assert!(calls.starts_with("is-system-running --wait\n"), "{calls}");
    assert!(
        calls.contains("is-active --quiet graphical.target"),
        "{calls}"
    );

    let (code, output, _) = health_check("degraded", &["acme-web.service"], true, "");
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("failed units: acme-web.service"),
        "{output}"
    );

    let wait_online = "systemd-networkd-wait-online.service";
    let (code, output, _) = health_check("degraded", &[wait_online], true, wait_online);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("ignored failed unit"), "{output}");

    for state in ["maintenance", "stopping", "offline", ""] {
        let (code, output, _) = health_check(state, &[], true, "");
        assert_eq!(code, 1, "{state}: {output}");
    }
    let (code, output, _) = health_check("running", &[], false, "");
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("graphical.target is not active"),
        "{output}"
    );
}

#[test]
fn example_health_check_is_valid_sh_and_executable() {
    let script = units_dir().join("health-check.example.sh");
    let mode = fs::metadata(&script).unwrap().permissions().mode();
    assert_ne!(mode & 0o111, 0, "not executable");
    let out = Command::new("sh").arg("-n").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
