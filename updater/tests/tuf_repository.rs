//! The TUF client against a repository made with `ota-sign repo`, served by `ota-server`,
//! through the real `ota-update check` / `install`: a normal update, online re-signing by the
//! server, then each attack from the TUF threat model. Every refusal must give its exit code and a one-line reason and leave the
//! slots and the bootloader state byte-identical.
#![allow(clippy::unwrap_used)]

use ota_core::exit;
use ota_core::keys::SigningKey;
use ota_core::tuf::repository::sign_envelope;
use ota_test_support::{bin, expect_one_line_error, image, Repo, Server, SimDevice};
use serde_json::{json, Value};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: u64 = 86_400;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A vendor repository (keys in `keys/`, the repository in `repo/`) and a simulated device
/// (file bootloader) in `device/` following it.
struct Fixture {
    dir: tempfile::TempDir,
    vendor: Repo,
    device: SimDevice,
    server: Option<Server>,
}

/// Which lifetimes the repository is created with, and when "now" is for the signer.
struct RepoOptions<'a> {
    expires: &'a [&'a str],
    epoch: Option<u64>,
    timestamp_keys: usize,
}

impl Default for RepoOptions<'_> {
    fn default() -> Self {
        Self {
            expires: &[],
            epoch: None,
            timestamp_keys: 1,
        }
    }
}

impl Fixture {
    fn new() -> Self {
        Self::with(RepoOptions::default())
    }

    fn with(opts: RepoOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vendor = Repo::with_keys(dir.path(), &["timestamp2"]);
        let mut args: Vec<String> = Vec::new();
        if opts.timestamp_keys == 2 {
            args.extend([
                "--timestamp-key".into(),
                vendor.key("timestamp2"),
                "--timestamp-threshold".into(),
                "2".into(),
            ]);
        }
        for e in opts.expires {
            args.extend(["--expires".into(), (*e).into()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        vendor.init(&refs, opts.epoch);
        let device = SimDevice::new(
            &dir.path().join("device"),
            &vendor.bundle_pub(),
            &image("GOOD 1.0.0", 200_000, 1),
            "",
        );
        fs::copy(vendor.initial_root(), device.path("root.json")).unwrap();
        Fixture {
            dir,
            vendor,
            device,
            server: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn key(&self, name: &str) -> PathBuf {
        PathBuf::from(self.vendor.key(name))
    }
    fn repo(&self) -> PathBuf {
        PathBuf::from(self.vendor.root_dir())
    }
    fn meta(&self, name: &str) -> PathBuf {
        self.vendor.metadata(name)
    }
    fn signing_key(&self, name: &str) -> SigningKey {
        SigningKey::from_file(&self.key(name)).unwrap()
    }

    fn sign_ok(&self, args: &[&str], epoch: Option<u64>) -> String {
        self.vendor.sign_at(args, epoch)
    }

    /// Builds a bundle for `product`/`version` and stages it in the repository.
    fn add_release(&self, product: &str, version: &str, channel: &str) {
        let seed = version.bytes().map(u32::from).sum::<u32>();
        let rootfs = image(&format!("GOOD {version}"), 200_000, seed);
        let bundle = self.vendor.bundle(product, version, &rootfs);
        self.vendor.add(&bundle, &["--channel", channel]);
    }

    /// `ota-sign repo publish` with the given role keys.
    fn publish(&self, keys: &[&str], epoch: Option<u64>) {
        self.vendor.publish_with(keys, epoch);
    }

    fn publish_all(&self) {
        self.publish(&["targets", "snapshot", "timestamp", "timestamp2"], None);
    }

    /// Starts the server (once) and writes the device configuration pointing at `url`.
    fn serve(&mut self) -> String {
        if self.server.is_none() {
            self.server = Some(Server::start(&self.repo(), &["--access-log", "off"]));
        }
        let url = self.server.as_ref().unwrap().base.clone();
        self.configure(&url, "");
        url
    }

    fn configure(&self, url: &str, extra: &str) {
        self.device.write_config(&format!(
            "[repository]\nurl = \"{url}\"\nroot = \"root.json\"\n{extra}"
        ));
        if !self.device.path("bootloader.json").exists() {
            self.ok(&["simulate-boot"]);
            self.ok(&["boot", "--no-reboot"]);
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.device.run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.device.ok(args)
    }

    fn check(&self) -> Value {
        serde_json::from_str(&self.ok(&["check", "--json"])).unwrap()
    }

    /// The device state an attack must not change.
    fn device_bytes(&self) -> Vec<Vec<u8>> {
        ["slot-a.rootfs", "slot-b.rootfs", "bootloader.json"]
            .iter()
            .map(|f| fs::read(self.path(&format!("device/{f}"))).unwrap())
            .collect()
    }

    /// `check` and `install` both refuse with `code` and a reason containing `needle`; nothing
    /// on the device changes.
    fn refused(&self, code: i32, needle: &str) -> String {
        let before = self.device_bytes();
        let mut last = String::new();
        for args in [&["check"][..], &["install"][..]] {
            let stderr = expect_one_line_error(&self.run(args), args, code);
            assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
            last = stderr;
        }
        assert!(
            self.device_bytes() == before,
            "a refused update changed the device"
        );
        last
    }

    /// `install` refuses (the metadata is fine, the target is not): exit `code`, one line
    /// containing `needle`, the running slot and the boot order untouched.
    fn install_refused(&self, code: i32, needle: &str) {
        let before = self.device_bytes();
        let stderr = expect_one_line_error(&self.run(&["install"]), &["install"], code);
        assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
        let after = self.device_bytes();
        assert!(after[0] == before[0], "the running slot changed");
        let status: Value = serde_json::from_str(&self.ok(&["status", "--json"])).unwrap();
        assert!(status["pending"].is_null(), "{status}");
        assert_eq!(status["next_boot"], "A", "{status}");
    }

    fn read_json(&self, path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    /// Re-signs `signed` with `keys` into `path` (an attacker holding those keys).
    fn write_signed(&self, path: &Path, signed: &Value, keys: &[&str]) {
        let keys: Vec<SigningKey> = keys.iter().map(|k| self.signing_key(k)).collect();
        let refs: Vec<&SigningKey> = keys.iter().collect();
        fs::write(path, sign_envelope(signed, &refs).unwrap()).unwrap();
    }

    /// A new timestamp pointing at `N.snapshot.json`, signed by `keys`.
    fn forge_timestamp(&self, version: u64, snapshot_version: u64, keys: &[&str]) {
        let snap = fs::read(self.meta(&format!("{snapshot_version}.snapshot.json"))).unwrap();
        let mut ts = self.read_json(&self.meta("timestamp.json"))["signed"].clone();
        ts["version"] = json!(version);
        ts["meta"]["snapshot.json"] = json!({
            "version": snapshot_version,
            "length": snap.len(),
            "hashes": {"sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&snap))},
        });
        self.write_signed(&self.meta("timestamp.json"), &ts, keys);
    }
}

#[test]
fn updates_from_the_repository_then_is_up_to_date_with_a_304() {
    let mut f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    f.serve();
    let report = f.check();
    assert_eq!(report["update"]["version"], "2.0.0", "{report}");
    assert_eq!(report["update"]["kind"], "full");
    f.ok(&["install"]);
    f.ok(&["simulate-boot"]);
    f.ok(&["boot", "--no-reboot"]);
    let status: Value = serde_json::from_str(&f.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["booted"], "B");
    let report = f.check();
    assert!(report["update"].is_null(), "{report}");
    assert_eq!(report["refresh"]["timestamp_not_modified"], true);
    assert_eq!(report["refresh"]["files_downloaded"], 0);
    // The cache holds verified metadata under unversioned names.
    for name in [
        "root.json",
        "timestamp.json",
        "snapshot.json",
        "targets.json",
    ] {
        assert!(f.path("device/state/tuf").join(name).exists(), "{name}");
    }
    let out = f.ok(&["install"]);
    assert!(out.contains("up to date"), "{out}");
}

#[test]
fn wrong_signature_is_refused() {
    let mut f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    f.serve();
    let mut ts = f.read_json(&f.meta("timestamp.json"));
    let sig = ts["signatures"][0]["sig"].as_str().unwrap().to_owned();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    ts["signatures"][0]["sig"] = json!(format!("{flipped}{}", &sig[1..]));
    fs::write(f.meta("timestamp.json"), serde_json::to_vec(&ts).unwrap()).unwrap();
    f.refused(
        i32::from(exit::SIGNATURE),
        "timestamp: 0 of 1 required signatures",
    );

    // Signed by a key the root does not authorise for the role (the targets key).
    let signed = ts["signed"].clone();
    f.write_signed(&f.meta("timestamp.json"), &signed, &["targets"]);
    f.refused(i32::from(exit::SIGNATURE), "timestamp: 0 of 1");
}

#[test]
fn threshold_not_met_is_refused() {
    let mut f = Fixture::with(RepoOptions {
        timestamp_keys: 2,
        ..Default::default()
    });
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    f.serve();
    assert_eq!(f.check()["update"]["version"], "2.0.0");
    // A new timestamp with only one of the two required signatures.
    f.forge_timestamp(5, 2, &["timestamp"]);
    f.refused(
        i32::from(exit::SIGNATURE),
        "timestamp: 1 of 2 required signatures",
    );
    // The same key twice still counts once.
    f.forge_timestamp(5, 2, &["timestamp", "timestamp"]);
    f.refused(i32::from(exit::SIGNATURE), "1 of 2");
    f.forge_timestamp(5, 2, &["timestamp", "timestamp2"]);
    assert!(f.check()["update"].is_object());
}

#[test]
fn rollback_of_each_role_is_refused() {
    let mut f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    f.serve();
    let old_timestamp = fs::read(f.meta("timestamp.json")).unwrap();
    f.add_release("acme-router", "2.1.0", "stable");
    f.publish_all();
    assert_eq!(f.check()["update"]["version"], "2.1.0");

    // Timestamp: the older file replayed.
    let new_timestamp = fs::read(f.meta("timestamp.json")).unwrap();
    fs::write(f.meta("timestamp.json"), &old_timestamp).unwrap();
    // (init published version 1 of every role, so the releases made versions 2 and 3.)
    f.refused(
        i32::from(exit::METADATA),
        "timestamp: version 2 is older than the trusted version 3",
    );
    fs::write(f.meta("timestamp.json"), &new_timestamp).unwrap();

    // Snapshot: a newer timestamp (attacker holds the online key) pointing at snapshot v2.
    f.forge_timestamp(4, 2, &["timestamp"]);
    f.refused(
        i32::from(exit::METADATA),
        "snapshot (as listed by timestamp): version 2 is older than the trusted version 3",
    );
    fs::write(f.meta("timestamp.json"), &new_timestamp).unwrap();

    // Targets: snapshot v4 listing targets v2 (online keys compromised), with a timestamp.
    let mut snap = f.read_json(&f.meta("3.snapshot.json"))["signed"].clone();
    snap["version"] = json!(4);
    snap["meta"]["targets.json"]["version"] = json!(2);
    f.write_signed(&f.meta("4.snapshot.json"), &snap, &["snapshot"]);
    f.forge_timestamp(4, 4, &["timestamp"]);
    f.refused(
        i32::from(exit::METADATA),
        "targets.json: version 2 is older than the trusted version 3",
    );

    // The forged timestamp v4 verified (the online key signed it), so the device now holds it
    // and refuses the vendor's v3: a compromised online key is fixed by rotating it, which
    // also discards the cached timestamp and snapshot (spec 5.3.11, fast-forward recovery).
    fs::write(f.meta("timestamp.json"), &new_timestamp).unwrap();
    f.refused(
        i32::from(exit::METADATA),
        "timestamp: version 3 is older than the trusted version 4",
    );
    f.sign_ok(
        &["keygen", "-o", f.key("snapshot2").to_str().unwrap()],
        None,
    );
    f.sign_ok(
        &[
            "repo",
            "rotate",
            "--repo",
            f.repo().to_str().unwrap(),
            "--snapshot-key",
            f.key("snapshot2").to_str().unwrap(),
            "--timestamp-key",
            f.key("timestamp2").to_str().unwrap(),
            "--key",
            f.key("root").to_str().unwrap(),
        ],
        None,
    );
    f.publish(&["snapshot2", "timestamp2"], None);
    let report = f.check();
    assert_eq!(report["refresh"]["root_version"], 2, "{report}");
    assert_eq!(report["update"]["version"], "2.1.0", "{report}");
}

/// The repository signed two days ago with lifetimes that make `role` expired today.
fn expired_fixture(role: &str) -> Fixture {
    let then = unix_now() - 2 * DAY;
    let expires = match role {
        "timestamp" => ["timestamp=1d", "snapshot=30d", "targets=30d", "root=30d"],
        "snapshot" => ["timestamp=30d", "snapshot=1d", "targets=30d", "root=30d"],
        "targets" => ["timestamp=30d", "snapshot=30d", "targets=1d", "root=30d"],
        _ => ["timestamp=30d", "snapshot=30d", "targets=30d", "root=1d"],
    };
    let mut f = Fixture::with(RepoOptions {
        expires: &expires,
        epoch: Some(then),
        ..Default::default()
    });
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish(&["targets", "snapshot", "timestamp"], Some(then));
    f.serve();
    f
}

#[test]
fn expired_metadata_of_every_role_is_refused_freeze() {
    for role in ["timestamp", "snapshot", "targets", "root"] {
        let f = expired_fixture(role);
        let err = f.refused(
            i32::from(exit::EXPIRED),
            &format!("{role} metadata expired at"),
        );
        assert!(err.contains("freeze"), "{err}");
    }
}

#[test]
fn a_clock_set_back_cannot_revive_expired_metadata() {
    let mut f = Fixture::with(RepoOptions {
        expires: &["timestamp=1d"],
        ..Default::default()
    });
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    f.serve();
    f.check();
    let floor = fs::read_to_string(f.path("device/state/tuf/clock-floor")).unwrap();
    assert!(floor.trim().parse::<u64>().unwrap() + 60 >= unix_now());
    // The device once saw a time two days ahead: the one-day timestamp is expired for it, even
    // though the system clock (now) is behind that.
    fs::write(
        f.path("device/state/tuf/clock-floor"),
        format!("{}\n", unix_now() + 2 * DAY),
    )
    .unwrap();
    f.refused(i32::from(exit::EXPIRED), "timestamp metadata expired");
}

#[test]
fn mix_and_match_is_refused() {
    let mut f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    f.add_release("acme-router", "2.1.0", "stable");
    f.publish_all();
    f.serve();
    // The current snapshot lists targets v3 (v1 came with init); serve v2 under the v3 name.
    fs::copy(f.meta("2.targets.json"), f.meta("3.targets.json")).unwrap();
    f.refused(
        i32::from(exit::METADATA),
        "targets: version 2 does not match version 3 listed by snapshot",
    );
}

#[test]
fn endless_data_and_tampered_targets_are_refused() {
    let mut f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    f.serve();
    let target = fs::read_dir(f.path("repo/targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".bundle"))
        .unwrap();
    let good = fs::read(&target).unwrap();

    // Endless metadata: a timestamp past its 16,384-byte cap, a next root past 512,000 bytes.
    let timestamp = f.meta("timestamp.json");
    let good_timestamp = fs::read(&timestamp).unwrap();
    let mut endless = good_timestamp.clone();
    endless.extend(std::iter::repeat_n(b' ', 20_000));
    fs::write(&timestamp, &endless).unwrap();
    f.refused(i32::from(exit::NETWORK), "more than the 16384 bytes");
    fs::write(&timestamp, &good_timestamp).unwrap();
    let next_root = f.meta("2.root.json");
    fs::write(&next_root, vec![b' '; 600_000]).unwrap();
    f.refused(i32::from(exit::NETWORK), "more than the 512000 bytes");
    fs::remove_file(&next_root).unwrap();
    f.check();

    // More bytes than the signed length: the download stops at the length.
    let mut longer = good.clone();
    longer.extend(std::iter::repeat_n(0u8, 1 << 20));
    fs::write(&target, &longer).unwrap();
    f.install_refused(i32::from(exit::NETWORK), "more than the");

    // Same length, one byte changed in the payload's tail: the bundle's chunk hash or the TUF
    // hash catches it before the switch.
    let mut changed = good.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0x55;
    fs::write(&target, &changed).unwrap();
    let before = f.device_bytes();
    let out = f.run(&["install"]);
    assert_eq!(out.status.code(), Some(i32::from(exit::CORRUPT)), "{out:?}");
    assert!(
        f.device_bytes()[2] == before[2],
        "the bootloader state changed"
    );
    let status: Value = serde_json::from_str(&f.ok(&["status", "--json"])).unwrap();
    assert!(status["pending"].is_null(), "{status}");

    fs::write(&target, &good).unwrap();
    f.ok(&["install"]);
}

/// How a [`hostile_server`] sends target bodies (metadata is always served plainly).
#[derive(Clone, Copy)]
enum TargetBehaviour {
    /// About this many bytes per second.
    Trickle(usize),
    /// The first target request gets the full Content-Length but only half the body, then the
    /// connection drops; later requests honour `Range: bytes=N-` with a 206.
    DropOnceThenRanges,
}

/// Request lines seen and target body bytes sent by a [`hostile_server`].
type ServerLog = std::sync::Arc<std::sync::Mutex<(Vec<String>, u64)>>;

/// A server that answers every request with the file from `dir`, sending target bodies as
/// `behaviour` says. Returns its URL and its log.
fn hostile_server(dir: PathBuf, behaviour: TargetBehaviour) -> (String, ServerLog) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log: ServerLog = Default::default();
    let log2 = log.clone();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (dir, log, dropped) = (dir.clone(), log2.clone(), dropped.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap_or(0);
                let mut range_from = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("range: bytes=") {
                        range_from = v.trim().trim_end_matches('-').parse::<usize>().ok();
                        request.push_str(line.trim_end());
                    }
                }
                log.lock().unwrap().0.push(request.trim_end().to_owned());
                let path = request
                    .split(' ')
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/');
                let Ok(body) = fs::read(dir.join(path)) else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                };
                if !path.starts_with("targets/") {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&body);
                    return;
                }
                let sent = |n: usize| log.lock().unwrap().1 += n as u64;
                match behaviour {
                    TargetBehaviour::Trickle(bytes_per_sec) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        for piece in body.chunks(bytes_per_sec.max(1) / 10 + 1) {
                            if stream.write_all(piece).is_err() {
                                return;
                            }
                            sent(piece.len());
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    TargetBehaviour::DropOnceThenRanges => {
                        let from = range_from.unwrap_or(0).min(body.len());
                        let head = if from > 0 {
                            format!(
                                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                                body.len() - from,
                                body.len() - 1,
                                body.len()
                            )
                        } else {
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                        };
                        let _ = stream.write_all(head.as_bytes());
                        let rest = &body[from..];
                        let cut = !dropped.swap(true, std::sync::atomic::Ordering::SeqCst);
                        let part = if cut { &rest[..rest.len() / 2] } else { rest };
                        if stream.write_all(part).is_ok() {
                            sent(part.len());
                        }
                    }
                }
            });
        }
    });
    (url, log)
}

#[test]
fn a_dropped_download_resumes_without_fetching_verified_bytes_again() {
    let f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    let (url, log) = hostile_server(f.repo(), TargetBehaviour::DropOnceThenRanges);
    f.configure(&url, "");
    f.ok(&["install"]);
    let status: Value = serde_json::from_str(&f.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["pending"]["version"], "2.0.0");
    let (requests, sent) = log.lock().unwrap().clone();
    let target: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/targets/"))
        .collect();
    assert_eq!(target.len(), 2, "{requests:?}");
    let length = fs::read_dir(f.path("repo/targets"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    // The resume asks for exactly the bytes after the half it received.
    let expected = format!("range: bytes={}-", length / 2);
    assert!(
        target[1].to_ascii_lowercase().contains(&expected),
        "{requests:?}"
    );
    assert_eq!(sent, length, "bytes were sent twice: {requests:?}");
}

#[test]
fn slow_retrieval_is_abandoned() {
    let f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    let (url, _) = hostile_server(f.repo(), TargetBehaviour::Trickle(500));
    f.configure(
        &url,
        "min_speed_bytes_per_sec = 5000\nmin_speed_window_secs = 2\nconnect_timeout_secs = 2",
    );
    let started = std::time::Instant::now();
    f.install_refused(i32::from(exit::NETWORK), "slow retrieval");
    // 200 kB at 500 B/s would take minutes; the guard gives up after its window.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn root_rotation_needs_both_thresholds_and_revokes_old_keys() {
    let mut f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    f.serve();
    assert_eq!(f.check()["refresh"]["root_version"], 1);
    let pre_rotation_timestamp = fs::read(f.meta("timestamp.json")).unwrap();

    // Rotate the root key and the timestamp key: root v2 signed by old and new root keys.
    f.sign_ok(&["keygen", "-o", f.key("root2").to_str().unwrap()], None);
    let repo = f.repo();
    f.sign_ok(
        &[
            "repo",
            "rotate",
            "--repo",
            repo.to_str().unwrap(),
            "--root-key",
            f.key("root2").to_str().unwrap(),
            "--timestamp-key",
            f.key("timestamp2").to_str().unwrap(),
            "--key",
            f.key("root").to_str().unwrap(),
            "--key",
            f.key("root2").to_str().unwrap(),
        ],
        None,
    );
    // The timestamp signed by the revoked key no longer verifies: publish re-signs it.
    f.publish(&["snapshot", "timestamp2"], None);
    let report = f.check();
    assert_eq!(report["refresh"]["root_version"], 2, "{report}");
    assert_eq!(report["update"]["version"], "2.0.0");

    // The revoked timestamp key signs a "newer" timestamp: refused.
    let mut ts: Value = serde_json::from_slice(&pre_rotation_timestamp).unwrap();
    ts["signed"]["version"] = json!(99);
    f.write_signed(
        &f.meta("timestamp.json"),
        &ts["signed"].clone(),
        &["timestamp"],
    );
    f.refused(
        i32::from(exit::SIGNATURE),
        "timestamp: 0 of 1 required signatures",
    );
    f.publish(&["snapshot", "timestamp2"], None);

    // Root v3 signed by the new key only (not by v2's root key): refused.
    let mut root3 = f.read_json(&f.meta("2.root.json"))["signed"].clone();
    root3["version"] = json!(3);
    f.sign_ok(&["keygen", "-o", f.key("root3").to_str().unwrap()], None);
    let root3_key = f.signing_key("root3");
    let tuf_key = ota_core::tuf::keys::TufKey::from_verifying_key(&root3_key.verifying_key());
    root3["keys"][tuf_key.key_id()] = tuf_key.to_value().clone();
    root3["roles"]["root"]["keyids"] = json!([tuf_key.key_id()]);
    f.write_signed(&f.meta("3.root.json"), &root3, &["root3"]);
    f.refused(
        i32::from(exit::SIGNATURE),
        "root: 0 of 1 required signatures",
    );
    // Signed by both the v2 root key and the new one: accepted.
    f.write_signed(&f.meta("3.root.json"), &root3, &["root2", "root3"]);
    assert_eq!(f.check()["refresh"]["root_version"], 3);
}

#[test]
fn other_products_channels_and_older_versions_are_not_installed() {
    let mut f = Fixture::new();
    f.add_release("acme-nas", "9.0.0", "stable");
    f.add_release("acme-router", "7.0.0", "beta");
    f.add_release("acme-router", "0.9.0", "stable");
    f.add_release("acme-router", "1.0.0", "stable");
    f.publish_all();
    f.serve();
    let report = f.check();
    assert!(report["update"].is_null(), "{report}");
    let skipped = report["skipped"].to_string();
    assert!(
        skipped.contains("0.9.0 is not newer than the booted 1.0.0"),
        "{skipped}"
    );
    assert!(!skipped.contains("acme-nas"), "{skipped}");
    let before = f.device_bytes();
    let out = f.ok(&["install"]);
    assert!(out.contains("up to date"), "{out}");
    assert!(f.device_bytes() == before);
    // A downgrade is only ever a named bundle, never a repository pick.
    let out = f.run(&["install", "--allow-downgrade"]);
    assert_eq!(out.status.code(), Some(i32::from(exit::USAGE)));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-downgrade needs a SOURCE"));
    assert!(f.device_bytes() == before);

    f.add_release("acme-router", "1.1.0", "stable");
    f.publish_all();
    assert_eq!(f.check()["update"]["version"], "1.1.0");
}

#[test]
fn a_delta_is_preferred_when_it_applies_to_the_running_slot() {
    let mut f = Fixture::new();
    // Two bundles of 2.0.0: full, and a delta against the factory image in slot A.
    let base = f.path("device/slot-a.rootfs");
    let mut new = fs::read(&base).unwrap();
    new[..10].copy_from_slice(b"GOOD 2.0.0");
    let img = f.path("v2.img");
    fs::write(&img, &new).unwrap();
    for (name, extra) in [("full.bundle", None), ("delta.bundle", Some(&base))] {
        let out = f.path(name);
        let mut args = vec![
            "bundle".to_owned(),
            "--product".into(),
            "acme-router".into(),
            "--version".into(),
            "2.0.0".into(),
            "--image".into(),
            format!("rootfs={}", img.display()),
            "--key".into(),
            f.key("bundle").to_str().unwrap().into(),
            "-o".into(),
            out.to_str().unwrap().into(),
        ];
        if let Some(b) = extra {
            args.extend(["--base".into(), format!("rootfs={}", b.display())]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        f.sign_ok(&refs, None);
        f.sign_ok(
            &[
                "repo",
                "add",
                "--repo",
                f.repo().to_str().unwrap(),
                out.to_str().unwrap(),
            ],
            None,
        );
    }
    f.publish_all();
    f.serve();
    let report = f.check();
    assert_eq!(report["update"]["name"], "delta.bundle", "{report}");
    assert_eq!(report["update"]["kind"], "delta");
    f.ok(&["install"]);
    assert_eq!(
        &fs::read(f.path("device/slot-b.rootfs")).unwrap()[..new.len()],
        &new[..]
    );
}

#[test]
fn ota_sign_repo_refuses_without_the_role_keys_and_writes_nothing() {
    let f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    let before = fs::read_dir(f.path("repo/metadata")).unwrap().count();
    let out = Command::new(bin("ota-sign"))
        .args(["repo", "publish", "--repo"])
        .arg(f.repo())
        .arg("--key")
        .arg(f.key("snapshot"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(i32::from(exit::USAGE)), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("targets: 0 of the given keys are authorised"),
        "{err}"
    );
    assert_eq!(
        before,
        fs::read_dir(f.path("repo/metadata")).unwrap().count()
    );
    let mut read = String::new();
    fs::File::open(f.meta("timestamp.json"))
        .unwrap()
        .read_to_string(&mut read)
        .unwrap();
    assert!(read.contains("\"version\":1"));
}

#[test]
fn online_keys_on_the_server_keep_the_repository_fresh() {
    // Timestamp and snapshot live 4 s: without the server re-signing them the device would
    // refuse them as expired within seconds.
    let mut f = Fixture::with(RepoOptions {
        expires: &["timestamp=4s", "snapshot=4s"],
        ..Default::default()
    });
    let (ts_key, snap_key) = (f.key("timestamp"), f.key("snapshot"));
    let server = Server::start(
        &f.repo(),
        &[
            "--access-log",
            "off",
            "--timestamp-key",
            ts_key.to_str().unwrap(),
            "--snapshot-key",
            snap_key.to_str().unwrap(),
            "--resign-interval",
            "1",
        ],
    );
    let url = server.base.clone();
    f.server = Some(server);
    f.configure(&url, "");
    assert!(f.check()["update"].is_null());

    // CI publishes a release with the targets key only; the server's keys make it visible.
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish(&["targets"], None);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = f.run(&["check", "--json"]);
        if out.status.success() {
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            if report["update"]["version"] == "2.0.0" {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the release never became visible"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Well past the 4 s lifetimes, the metadata is still fresh.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(f.check()["update"]["version"], "2.0.0");
    let ts = f.read_json(&f.meta("timestamp.json"));
    assert!(ts["signed"]["version"].as_u64().unwrap() >= 4, "{ts}");
}

#[test]
fn daemon_installs_and_reboots_then_backs_off_on_errors() {
    let mut f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    f.publish_all();
    let url = f.serve();
    let marker = f.path("device/rebooted");
    f.configure(
        &url,
        "\n[daemon]\ninterval_secs = 1\njitter_secs = 0\nreboot = true\n",
    );
    // The reboot command leaves a marker instead of rebooting the test machine.
    let toml = fs::read_to_string(f.path("device/updater.toml"))
        .unwrap()
        .replace(
            "reboot_command = [\"true\"]",
            &format!("reboot_command = [\"touch\", \"{}\"]", marker.display()),
        );
    fs::write(f.path("device/updater.toml"), toml).unwrap();
    let out = f.run(&["daemon", "--rounds", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("installed"), "{stderr}");
    assert!(
        marker.exists(),
        "the daemon did not reboot after installing"
    );
    let status: Value = serde_json::from_str(&f.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["pending"]["version"], "2.0.0");

    // A dead repository: the daemon logs, backs off, and keeps running (two rounds here).
    f.configure(
        "http://127.0.0.1:9",
        "\n[daemon]\ninterval_secs = 4\njitter_secs = 0\n",
    );
    let started = std::time::Instant::now();
    let out = f.run(&["daemon", "--rounds", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("retrying in about").count(), 2, "{stderr}");
    // First back-off: a quarter interval doubled = 2 s, before the second round.
    assert!(started.elapsed() >= Duration::from_secs(2), "{stderr}");
}

#[test]
fn a_removed_target_is_no_longer_offered() {
    let mut f = Fixture::new();
    f.add_release("acme-router", "2.0.0", "stable");
    f.add_release("acme-router", "2.1.0", "stable");
    f.publish_all();
    f.serve();
    assert_eq!(f.check()["update"]["version"], "2.1.0");
    let repo = f.repo();
    let repo = repo.to_str().unwrap();
    // 2.1.0 is pulled (a bad release): staged, then published.
    f.sign_ok(
        &["repo", "remove", "--repo", repo, "acme-router-2.1.0.bundle"],
        None,
    );
    let listed = f.sign_ok(&["repo", "list", "--repo", repo], None);
    assert!(
        listed.contains(
            "acme-router-2.1.0.bundle: acme-router 2.1.0 channel stable (removal staged)"
        ),
        "{listed}"
    );
    assert_eq!(
        f.check()["update"]["version"],
        "2.1.0",
        "visible before publish"
    );
    f.publish_all();
    assert_eq!(f.check()["update"]["version"], "2.0.0");
    // Removing it twice is a usage error.
    let out = Command::new(bin("ota-sign"))
        .args(["repo", "remove", "--repo", repo, "acme-router-2.1.0.bundle"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(i32::from(exit::USAGE)));
}
