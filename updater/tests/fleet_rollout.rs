//! Fleet control end to end with real processes: a vendor repository with a rollout role
//! (`ota-sign rollout`), served by ota-server holding the online snapshot/timestamp keys (and,
//! separately, by nginx with re-signing by `ota-sign repo refresh-timestamp`), and a fleet of
//! simulated devices (file bootloader, own state directories and device ids): a 50 % wave, pause,
//! resume, pull back to the previous release, and the attacks on rollout state.
#![allow(clippy::unwrap_used)]

use ota_core::exit;
use ota_test_support::{image, Nginx, Repo, Server, SimDevice};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

const FLEET: usize = 50;

struct Fleet {
    _dir: tempfile::TempDir,
    repo: Repo,
    server: Option<Server>,
    devices: Vec<SimDevice>,
}

/// A device of the fleet: the shared repository section, its own id, booted once.
fn device(dir: &Path, repo: &Repo, url: &str, id: &str) -> SimDevice {
    let dev = SimDevice::new(
        dir,
        &repo.bundle_pub(),
        &image("GOOD 1.0.0", 200_000, 1),
        "",
    );
    let section = dev.repository_section(url, &repo.initial_root());
    let config = fs::read_to_string(dev.config()).unwrap();
    let daemon = "[daemon]\ninterval_secs = 1\njitter_secs = 0\nreboot = false\n";
    fs::write(
        dev.config(),
        format!("device_id = \"{id}\"\n{config}\n{section}\n{daemon}"),
    )
    .unwrap();
    assert_eq!(dev.power_on(), Some(0));
    dev
}

impl Fleet {
    /// The repository with releases 1.0.0 (what the devices run) and 2.0.0, a rollout role
    /// for the fleet admin's key, served by ota-server with the online keys.
    fn new(size: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(&dir.path().join("vendor"));
        repo.sign(&["keygen", "-o", &repo.key("rollout")]);
        repo.add_release(
            "acme-router",
            "1.0.0",
            "stable",
            &image("GOOD 1.0.0", 200_000, 1),
        );
        repo.add_release(
            "acme-router",
            "2.0.0",
            "stable",
            &image("GOOD 2.0.0", 200_000, 2),
        );
        repo.publish();
        repo.sign(&[
            "rollout",
            "init",
            "--repo",
            &repo.root_dir(),
            "--rollout-key",
            &format!("{}.pub", repo.key("rollout")),
            "--key",
            &repo.key("targets"),
            "--key",
            &repo.key("snapshot"),
            "--key",
            &repo.key("timestamp"),
        ]);
        let server = Server::start(
            Path::new(&repo.root_dir()),
            &[
                "--access-log",
                "off",
                "--snapshot-key",
                &repo.key("snapshot"),
                "--timestamp-key",
                &repo.key("timestamp"),
                "--resign-interval",
                "1",
            ],
        );
        let devices = (0..size)
            .map(|i| {
                let id = format!("device-{i:04}");
                device(&dir.path().join(&id), &repo, &server.base, &id)
            })
            .collect();
        Fleet {
            _dir: dir,
            repo,
            server: Some(server),
            devices,
        }
    }

    /// `ota-sign rollout ACTION` for 2.0.0 with the rollout key only: ota-server's online keys
    /// make it visible.
    fn rollout(&self, action: &str, extra: &[&str]) -> String {
        let root = self.repo.root_dir();
        let key = self.repo.key("rollout");
        let mut args = vec![
            "rollout",
            action,
            "--repo",
            &root,
            "--product",
            "acme-router",
            "--version",
            "2.0.0",
            "--key",
            &key,
        ];
        args.extend(extra);
        self.repo.sign(&args)
    }

    /// Waits until the first device sees the rollout in `state` (the server re-signs every
    /// second).
    fn wait_for_state(&self, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let check = self.devices[0].json(&["check", "--json"]);
            if check["rollout"]["state"] == state {
                return;
            }
            assert!(Instant::now() < deadline, "never saw {state}: {check:#}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The indices of the devices offered 2.0.0 now.
    fn offered(&self) -> BTreeSet<usize> {
        self.devices
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                let check = d.json(&["check", "--json"]);
                let offered = check["update"]["version"] == "2.0.0";
                assert_eq!(offered, check["rollout"]["eligible"] == true, "{check:#}");
                offered
            })
            .map(|(i, _)| i)
            .collect()
    }
}

fn booted_version(dev: &SimDevice) -> (String, String) {
    let status = dev.json(&["status", "--json"]);
    let booted = status["booted"].as_str().unwrap().to_owned();
    let version = ota_test_support::slot_of(&status, &booted)["record"]["version"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    (booted, version)
}

#[test]
fn waves_pause_resume_and_pull_move_the_fleet() {
    let fleet = Fleet::new(FLEET);
    // Before any rollout entry 2.0.0 goes to everyone (today's behaviour).
    assert_eq!(fleet.offered().len(), FLEET);

    fleet.rollout("start", &["--waves", "0s=50%"]);
    fleet.wait_for_state("active");
    let half = fleet.offered();
    assert!(
        (FLEET * 3 / 10..=FLEET * 7 / 10).contains(&half.len()),
        "{} of {FLEET} offered at 50 %",
        half.len()
    );

    fleet.rollout("pause", &[]);
    fleet.wait_for_state("paused");
    assert!(fleet.offered().is_empty(), "a paused release was offered");

    fleet.rollout("resume", &[]);
    fleet.wait_for_state("active");
    assert_eq!(
        fleet.offered(),
        half,
        "resume must offer the same devices again"
    );

    // The eligible half installs and commits 2.0.0.
    for &i in &half {
        let dev = &fleet.devices[i];
        dev.ok(&["daemon", "--rounds", "1"]);
        assert_eq!(dev.power_on(), Some(0));
        assert_eq!(booted_version(dev), ("B".into(), "2.0.0".into()));
    }

    // Pulled: each of them goes back to 1.0.0 after one daemon round and a reboot, without
    // --allow-downgrade, and none installs 2.0.0 again.
    let out = fleet.rollout("pull", &[]);
    assert!(out.contains("pulled"), "{out}");
    fleet.wait_for_state("pulled");
    for &i in &half {
        let dev = &fleet.devices[i];
        let check = dev.json(&["check", "--json"]);
        assert_eq!(check["update"]["version"], "1.0.0", "{check:#}");
        let why = check["update"]["authorised_downgrade"].as_str().unwrap();
        assert!(why.contains("authorised by rollout metadata v"), "{why}");
        dev.ok(&["daemon", "--rounds", "1"]);
        assert_eq!(dev.power_on(), Some(0));
        assert_eq!(booted_version(dev), ("A".into(), "1.0.0".into()));
        let status = dev.json(&["status", "--json"]);
        let reason = status["last_result"]["reason"].as_str().unwrap();
        assert!(reason.contains("rollout metadata v"), "{reason}");
        let slot_b = fs::metadata(dev.path("slot-b.rootfs")).unwrap();
        dev.ok(&["daemon", "--rounds", "2"]);
        let again = fs::metadata(dev.path("slot-b.rootfs")).unwrap();
        assert_eq!(
            (slot_b.mtime(), slot_b.mtime_nsec()),
            (again.mtime(), again.mtime_nsec()),
            "the pulled release was written again"
        );
        assert!(dev.json(&["check", "--json"])["update"].is_null());
    }
    // The devices that never had it are not offered anything either.
    assert!(fleet.offered().is_empty());
    let status = fleet.repo.sign(&[
        "rollout",
        "status",
        "--repo",
        &fleet.repo.root_dir(),
        "--json",
    ]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["rollouts"][0]["state"], "pulled");
    drop(fleet.server);
}

#[test]
fn a_release_promoted_to_another_channel_is_offered_there_without_a_copy() {
    let fleet = Fleet::new(2);
    fleet.repo.add_release(
        "acme-router",
        "3.0.0",
        "beta",
        &image("GOOD 3.0.0", 200_000, 3),
    );
    fleet.repo.publish();
    let dev = &fleet.devices[0];
    assert_eq!(dev.json(&["check", "--json"])["update"]["version"], "2.0.0");
    let root = fleet.repo.root_dir();
    let key = fleet.repo.key("rollout");
    fleet.repo.sign(&[
        "rollout",
        "start",
        "--repo",
        &root,
        "--product",
        "acme-router",
        "--version",
        "3.0.0",
        "--channel",
        "stable",
        "--waves",
        "0s=100%",
        "--key",
        &key,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let check = dev.json(&["check", "--json"]);
        if check["update"]["version"] == "3.0.0" {
            assert_eq!(check["update"]["name"], "acme-router-3.0.0.bundle");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "3.0.0 never offered on stable: {check:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// What a device holds that an attack must not change.
fn device_bytes(dev: &SimDevice) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (dev.slot("A"), dev.slot("B"), dev.bootloader())
}

#[test]
fn forged_and_replayed_rollout_state_is_refused() {
    let mut fleet = Fleet::new(1);
    // Static serving from here on: the attacker holds the online keys (the server's), not
    // the rollout key.
    fleet.server = None;
    let repo = &fleet.repo;
    let server = Server::start(Path::new(&repo.root_dir()), &["--access-log", "off"]);
    let dev = &fleet.devices[0];
    let config = fs::read_to_string(dev.config()).unwrap();
    let old_url = config
        .lines()
        .find(|l| l.starts_with("url = "))
        .unwrap()
        .to_owned();
    fs::write(
        dev.config(),
        config.replace(&old_url, &format!("url = \"{}\"", server.base)),
    )
    .unwrap();
    let refresh = || {
        repo.sign(&[
            "repo",
            "refresh-timestamp",
            "--repo",
            &repo.root_dir(),
            "--key",
            &repo.key("snapshot"),
            "--key",
            &repo.key("timestamp"),
        ])
    };
    fleet.rollout("start", &["--waves", "0s=100%"]);
    refresh();
    assert_eq!(dev.json(&["check", "--json"])["rollout"]["state"], "active");
    fleet.rollout("pause", &[]);
    refresh();
    assert_eq!(dev.json(&["check", "--json"])["rollout"]["state"], "paused");
    let before = device_bytes(dev);
    let meta = Path::new(&repo.root_dir()).join("metadata");
    let newest = (1..100)
        .rev()
        .find(|v| meta.join(format!("{v}.rollout.json")).exists())
        .unwrap();

    // 1. Replay: the old "active" rollout metadata listed again by a re-signed snapshot.
    let paused = fs::read(meta.join(format!("{newest}.rollout.json"))).unwrap();
    fs::remove_file(meta.join(format!("{newest}.rollout.json"))).unwrap();
    refresh();
    let stderr = dev.fails(&["check"], exit::METADATA);
    assert!(stderr.contains("rollout"), "{stderr}");
    assert_eq!(device_bytes(dev), before);

    // 2. Forged: rollout state "active" signed by a key the delegation does not name.
    repo.sign(&["keygen", "-o", &repo.key("attacker")]);
    let forged = ota_core::tuf::repository::sign_envelope(
        &serde_json::from_slice::<Value>(&paused).unwrap()["signed"]
            .as_object()
            .map(|signed| {
                let mut signed = signed.clone();
                signed.insert("version".into(), (newest + 1).into());
                let text = serde_json::to_string(&signed)
                    .unwrap()
                    .replace("paused", "active");
                serde_json::from_str::<Value>(&text).unwrap()
            })
            .unwrap(),
        &[&ota_core::keys::SigningKey::from_file(Path::new(&repo.key("attacker"))).unwrap()],
    )
    .unwrap();
    fs::write(meta.join(format!("{}.rollout.json", newest + 1)), forged).unwrap();
    refresh();
    let code = dev.run(&["check"]).status.code();
    assert_eq!(code, Some(i32::from(exit::SIGNATURE)));
    assert_eq!(device_bytes(dev), before);

    // 3. A downgrade offered by unsigned data: the genuine paused state edited to "pulled"
    //    (its signature no longer matches), so a device on 2.0.0 would move back.
    let text = String::from_utf8(paused.clone())
        .unwrap()
        .replace("paused", "pulled");
    fs::write(meta.join(format!("{}.rollout.json", newest + 2)), text).unwrap();
    refresh();
    let code = dev.run(&["install"]).status.code();
    assert_eq!(code, Some(i32::from(exit::SIGNATURE)));
    assert_eq!(device_bytes(dev), before);
    // Signing rollout state with a key the delegation does not name fails at the signer too.
    let root = repo.root_dir();
    let attacker = repo.key("attacker");
    let out = std::process::Command::new(ota_test_support::bin("ota-sign"))
        .args([
            "rollout",
            "resume",
            "--repo",
            &root,
            "--product",
            "acme-router",
            "--version",
            "2.0.0",
            "--key",
            &attacker,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(i32::from(exit::USAGE)));
}

#[test]
fn a_pull_installs_the_previous_release_when_the_other_slot_no_longer_holds_it() {
    let fleet = Fleet::new(1);
    let dev = &fleet.devices[0];
    // 1.0.0 (factory, A) → 2.0.0 (B) → 2.1.0 (A): slot B holds 2.0.0.
    dev.ok(&["daemon", "--rounds", "1"]);
    assert_eq!(dev.power_on(), Some(0));
    fleet.repo.add_release(
        "acme-router",
        "2.1.0",
        "stable",
        &image("GOOD 2.1.0", 200_000, 4),
    );
    fleet.repo.publish();
    dev.ok(&["daemon", "--rounds", "1"]);
    assert_eq!(dev.power_on(), Some(0));
    assert_eq!(booted_version(dev), ("A".into(), "2.1.0".into()));
    // Both 2.x releases are pulled: the newest the device may run is 1.0.0, which no slot
    // holds any more: it is installed (full), as authorised by the signed rollout state.
    let root = fleet.repo.root_dir();
    let key = fleet.repo.key("rollout");
    for version in ["2.1.0", "2.0.0"] {
        fleet.repo.sign(&[
            "rollout",
            "pull",
            "--repo",
            &root,
            "--product",
            "acme-router",
            "--version",
            version,
            "--key",
            &key,
        ]);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let check = dev.json(&["check", "--json"]);
        if check["update"]["version"] == "1.0.0" {
            break;
        }
        assert!(Instant::now() < deadline, "{check:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
    dev.ok(&["daemon", "--rounds", "1"]);
    assert_eq!(dev.slot("B")[..10], image("GOOD 1.0.0", 200_000, 1)[..10]);
    assert_eq!(dev.power_on(), Some(0));
    assert_eq!(booted_version(dev), ("B".into(), "1.0.0".into()));
    let status = dev.json(&["status", "--json"]);
    assert!(status["holds"].as_array().unwrap().is_empty(), "{status:#}");
    let downgrade = &status["authorised_downgrade"];
    assert_eq!(downgrade["from"], "2.1.0", "{status:#}");
    assert_eq!(downgrade["to"], "1.0.0");
    assert!(downgrade["reason"]
        .as_str()
        .unwrap()
        .contains("authorised by rollout metadata v"));
    // An explicit downgrade by hand is still refused without --allow-downgrade.
    let old = fleet
        .repo
        .bundle("acme-router", "0.9.0", &image("GOOD 0.9.0", 200_000, 9));
    dev.fails(&["install", old.to_str().unwrap()], exit::DOWNGRADE);
}

/// The same fleet story served by nginx (static files only): the admin's commands re-sign
/// snapshot and timestamp themselves (`--key snapshot.key --key timestamp.key`), or
/// `ota-sign repo refresh-timestamp` does.
#[test]
fn static_nginx_repository_stages_pauses_and_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new(&dir.path().join("vendor"));
    repo.sign(&["keygen", "-o", &repo.key("rollout")]);
    repo.add_release(
        "acme-router",
        "1.0.0",
        "stable",
        &image("GOOD 1.0.0", 200_000, 1),
    );
    repo.add_release(
        "acme-router",
        "2.0.0",
        "stable",
        &image("GOOD 2.0.0", 200_000, 2),
    );
    repo.publish();
    let root = repo.root_dir();
    let (rollout, snapshot, timestamp) = (
        repo.key("rollout"),
        repo.key("snapshot"),
        repo.key("timestamp"),
    );
    repo.sign(&[
        "rollout",
        "init",
        "--repo",
        &root,
        "--rollout-key",
        &format!("{rollout}.pub"),
        "--key",
        &repo.key("targets"),
        "--key",
        &snapshot,
        "--key",
        &timestamp,
    ]);
    let nginx = Nginx::start(Path::new(&root));
    let devices: Vec<SimDevice> = (0..10)
        .map(|i| {
            let id = format!("nginx-device-{i}");
            device(&dir.path().join(&id), &repo, &nginx.url, &id)
        })
        .collect();
    // nginx's ETag is the file's mtime in seconds and its length: a timestamp re-signed
    // within the same second at the same length gets the old ETag and devices a 304. Real
    // re-signing is seconds apart; here each change waits for the next second.
    let next_second = || std::thread::sleep(Duration::from_millis(1100));
    let admin = |action: &str, extra: &[&str], online: bool| {
        next_second();
        let mut args = vec![
            "rollout",
            action,
            "--repo",
            &root,
            "--product",
            "acme-router",
            "--version",
            "2.0.0",
            "--key",
            &rollout,
        ];
        args.extend(extra);
        if online {
            args.extend(["--key", snapshot.as_str(), "--key", timestamp.as_str()]);
        }
        repo.sign(&args)
    };
    let offered = || -> BTreeSet<usize> {
        devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.json(&["check", "--json"])["update"]["version"] == "2.0.0")
            .map(|(i, _)| i)
            .collect()
    };
    let out = admin("start", &["--waves", "0s=100%"], true);
    assert!(out.contains("devices see it at their next poll"), "{out}");
    assert_eq!(offered().len(), 10);
    // Without the online keys the command says what to run; nothing changes until it is run.
    let out = admin("pause", &[], false);
    assert!(out.contains("refresh-timestamp"), "{out}");
    assert_eq!(offered().len(), 10);
    next_second();
    repo.sign(&[
        "repo",
        "refresh-timestamp",
        "--repo",
        &root,
        "--key",
        &snapshot,
        "--key",
        &timestamp,
    ]);
    assert!(offered().is_empty());
    admin("resume", &[], true);
    assert_eq!(offered().len(), 10);
    let dev = &devices[0];
    dev.ok(&["daemon", "--rounds", "1"]);
    assert_eq!(dev.power_on(), Some(0));
    assert_eq!(booted_version(dev), ("B".into(), "2.0.0".into()));
    admin("pull", &[], true);
    dev.ok(&["daemon", "--rounds", "1"]);
    assert_eq!(dev.power_on(), Some(0));
    assert_eq!(booted_version(dev), ("A".into(), "1.0.0".into()));
    assert!(offered().is_empty());
    // Devices sent their release in the User-Agent, and nothing else identifying.
    let log = nginx.access_log();
    assert!(log.contains("ota-update/"), "{log}");
    assert!(log.contains("(acme-router; 1.0.0; stable)"), "{log}");
    assert!(
        !log.contains("nginx-device-"),
        "a device id reached the server"
    );
}
