//! Resuming interrupted installs through the real CLI: an install cut by a power loss
//! (fault injection) part-way through a 12 MiB image continues from its journal, writing and
//! reading only what was missing; a changed slot or another bundle starts over; an install from
//! a slow HTTP server killed with SIGKILL at ~70 % downloads less than half of the bundle on
//! its next run (a Range request after the head), from a URL and from a TUF repository (the
//! daemon resumes it), then trial-boots and commits.
//!
//! The HTTP server here is written for the test: it throttles, counts every byte it sends, and
//! honours `Range`/`If-Range` like nginx.

#![allow(clippy::unwrap_used)]

use ota_core::exit;
use ota_test_support::{bin, image_with_bytes, Repo, SimDevice};
use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SLOT: usize = 16 << 20;
const IMAGE: usize = 12 << 20;

/// A device with 16 MiB slots, booted once on slot A (factory 1.0.0).
fn device(dir: &Path, trusted: &Path, extra: &str) -> SimDevice {
    let factory = image_with_bytes("GOOD 1.0.0", 1 << 20, 1);
    let device = SimDevice::new(&dir.join("device"), trusted, &factory, extra);
    let mut a = factory;
    a.resize(SLOT, 0);
    fs::write(device.path("slot-a.rootfs"), a).unwrap();
    fs::write(device.path("slot-b.rootfs"), vec![0u8; SLOT]).unwrap();
    assert_eq!(device.power_on(), Some(0));
    device
}

/// `ota-update --config ... ARGS` with fault-injection variables.
fn run_with(device: &SimDevice, args: &[&str], env: &[(&str, &Path)], at: Option<u64>) -> Output {
    let mut cmd = Command::new(bin("ota-update"));
    cmd.arg("--config").arg(device.config()).args(args);
    cmd.env_remove("OTA_FAULT_AT").env_remove("OTA_FAULT_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(n) = at {
        cmd.env("OTA_FAULT_AT", n.to_string());
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn labels(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        // "N label": the step number, then its label.
        .map(|l| l.split_once(' ').map_or(l, |(_, label)| label).to_owned())
        .collect()
}

fn status(device: &SimDevice) -> Value {
    device.json(&["status", "--json"])
}

struct Release {
    _dir: tempfile::TempDir,
    repo: Repo,
    v2: Vec<u8>,
    bundle: PathBuf,
}

fn release() -> Release {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new(&dir.path().join("vendor"));
    let v2 = image_with_bytes("GOOD 2.0.0", IMAGE, 2);
    let img = dir.path().join("v2.rootfs");
    fs::write(&img, &v2).unwrap();
    let bundle = dir.path().join("v2.bundle");
    let spec = format!("rootfs={}", img.display());
    repo.sign(&[
        "bundle",
        "--key",
        &repo.key("bundle"),
        "--product",
        "acme-router",
        "--version",
        "2.0.0",
        "--image",
        &spec,
        "--chunk-size",
        "262144",
        "-o",
        &bundle.display().to_string(),
    ]);
    Release {
        _dir: dir,
        repo,
        v2,
        bundle,
    }
}

/// Cuts the power right after the `k`-th journal write of a clean install (counted on a
/// first device), on a second device; returns that device and the clean run's labels.
fn install_cut_after_journal_write(r: &Release, dir: &Path, k: usize) -> (SimDevice, Vec<String>) {
    let bundle = r.bundle.display().to_string();
    let clean = device(&dir.join("clean"), &r.repo.bundle_pub(), "");
    let log = dir.join("clean.log");
    let out = run_with(
        &clean,
        &["install", &bundle],
        &[("OTA_FAULT_LOG", &log)],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps = labels(&log);
    let at = steps
        .iter()
        .enumerate()
        .filter(|(_, l)| l.as_str() == "journal: saved")
        .nth(k)
        .map(|(i, _)| i as u64 + 1)
        .unwrap();
    let cut = device(&dir.join("cut"), &r.repo.bundle_pub(), "");
    let out = run_with(&cut, &["install", &bundle], &[], Some(at));
    assert!(!out.status.success(), "the install was not cut");
    (cut, steps)
}

#[test]
fn an_install_cut_by_a_power_loss_continues_where_its_verified_bytes_end() {
    let r = release();
    let dir = tempfile::tempdir().unwrap();
    // The journal is written once at the start, then at each checkpoint (every 1 MiB here).
    let (device, clean) = install_cut_after_journal_write(&r, dir.path(), 8);
    let s = status(&device);
    let resumable = &s["resumable_install"];
    assert_eq!(resumable["version"], "2.0.0", "{s:#}");
    let written = resumable["written_bytes"].as_u64().unwrap();
    assert!(
        (6 << 20..=9 << 20).contains(&written),
        "{written} bytes written"
    );
    assert_eq!(resumable["total_bytes"], IMAGE as u64);
    let text = device.ok(&["status"]);
    assert!(
        text.contains("resumable:") && text.contains("2.0.0"),
        "{text}"
    );

    let log = dir.path().join("resume.log");
    let bundle = r.bundle.display().to_string();
    let out = run_with(
        &device,
        &["install", "--progress", "plain", &bundle],
        &[("OTA_FAULT_LOG", &log)],
        None,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("resuming an interrupted install"),
        "{stdout}"
    );
    // Progress lines for logs start where the resume starts: none below 50 %.
    let percents: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("installing:"))
        .collect();
    assert!(
        percents.last().is_some_and(|l| l.contains("100 %")),
        "{stderr}"
    );
    assert!(!percents.iter().any(|l| l.contains(" 10 %")), "{stderr}");
    // Slot writes: the clean run's pieces against the resumed run's.
    let pieces = |steps: &[String]| steps.iter().filter(|l| *l == "slot: piece written").count();
    let (all, again) = (pieces(&clean), pieces(&labels(&log)));
    assert!(
        again * 100 <= all * 40,
        "{again} of {all} pieces written again"
    );
    assert!(status(&device)["resumable_install"].is_null());
    assert!(!device.path("state/install-journal.json").exists());
    assert_eq!(device.power_on(), Some(0));
    assert_eq!(&device.slot("B")[..IMAGE], &r.v2[..]);
    let s = status(&device);
    assert_eq!(s["booted"], "B");
    assert_eq!(s["last_result"]["kind"], "committed", "{s:#}");
}

#[test]
fn a_changed_slot_or_another_bundle_starts_over() {
    let r = release();
    let dir = tempfile::tempdir().unwrap();
    let bundle = r.bundle.display().to_string();
    let (device, _) = install_cut_after_journal_write(&r, dir.path(), 5);
    // Something else wrote the slot since: its prefix no longer hashes as recorded.
    let mut b = device.slot("B");
    b[1000] ^= 0xff;
    fs::write(device.path("slot-b.rootfs"), b).unwrap();
    let out = device.ok(&["install", &bundle]);
    assert!(
        out.contains("starting over") && out.contains("are not what was written"),
        "{out}"
    );
    assert_eq!(&device.slot("B")[..IMAGE], &r.v2[..]);

    // Another bundle (3.0.0) after an interrupted 2.0.0: the journal is not used.
    let (device, _) = install_cut_after_journal_write(&r, &dir.path().join("second"), 5);
    let v3 = image_with_bytes("GOOD 3.0.0", IMAGE, 3);
    let v3_bundle = r.repo.bundle("acme-router", "3.0.0", &v3);
    let out = device.ok(&["install", &v3_bundle.display().to_string()]);
    assert!(
        out.contains("starting over") && out.contains("different bundle"),
        "{out}"
    );
    assert_eq!(device.power_on(), Some(0));
    assert_eq!(&device.slot("B")[..IMAGE], &v3[..]);
}

#[test]
fn a_corrupt_journal_is_ignored_and_a_refusal_leaves_it() {
    let r = release();
    let dir = tempfile::tempdir().unwrap();
    let bundle = r.bundle.display().to_string();
    let (device, _) = install_cut_after_journal_write(&r, dir.path(), 5);
    // A refused bundle (another product) does not touch the journal and is recorded.
    let journal = fs::read(device.path("state/install-journal.json")).unwrap();
    let other = r.repo.bundle("other-product", "9.0.0", b"GOOD other");
    let out = device.run(&["install", "--json", &other.display().to_string()]);
    assert_eq!(out.status.code(), Some(i32::from(exit::INCOMPATIBLE)));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let error: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(error["error"]["class"], "incompatible", "{stdout}");
    assert_eq!(error["error"]["exit_code"], exit::INCOMPATIBLE, "{stdout}");
    assert_eq!(
        fs::read(device.path("state/install-journal.json")).unwrap(),
        journal
    );
    let s = status(&device);
    assert_eq!(s["last_result"]["kind"], "install_refused", "{s:#}");
    assert!(!s["resumable_install"].is_null());
    // A journal that does not parse is as good as none.
    fs::write(
        device.path("state/install-journal.json"),
        b"{\"format\": 1, trunc",
    )
    .unwrap();
    assert!(status(&device)["resumable_install"].is_null());
    let out = device.ok(&["install", &bundle]);
    assert!(!out.contains("resuming"), "{out}");
    assert_eq!(device.power_on(), Some(0));
    assert_eq!(&device.slot("B")[..IMAGE], &r.v2[..]);
}

// ------------------------------------------------------------ a slow HTTP server

/// Serves the files under `root` at `rate` bytes per second, counting the bytes it sends.
struct SlowServer {
    base: String,
    sent: Arc<AtomicU64>,
}

impl SlowServer {
    fn start(root: &Path, rate: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let (root, counter) = (root.to_owned(), sent.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, counter) = (root.clone(), counter.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &root, rate, &counter);
                });
            }
        });
        SlowServer { base, sent }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

/// One request per connection: GET with optional `Range: bytes=A-[B]` and `If-Range`.
fn serve(stream: TcpStream, root: &Path, rate: u64, sent: &AtomicU64) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let (mut range, mut if_range) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap();
            range = Some((a.parse::<u64>().unwrap(), b.parse::<u64>().ok()));
        } else if lower.starts_with("if-range:") {
            if_range = Some(line[9..].trim().to_owned());
        }
    }
    let path = request.split(' ').nth(1).unwrap_or("/");
    let mut out = stream;
    let Ok(body) = fs::read(root.join(path.trim_start_matches('/'))) else {
        return out.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let etag = format!("\"{}\"", body.len());
    let range = range.filter(|_| if_range.as_deref().is_none_or(|v| v == etag));
    let (status, from, to) = match range {
        Some((a, b)) => (
            "206 Partial Content",
            a,
            b.map_or(body.len() as u64, |b| b + 1),
        ),
        None => ("200 OK", 0, body.len() as u64),
    };
    let to = to.min(body.len() as u64);
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
        to - from,
        to.saturating_sub(1),
        body.len()
    );
    out.write_all(head.as_bytes())?;
    let piece = (rate / 50).max(1024) as usize;
    for part in body[from as usize..to as usize].chunks(piece) {
        out.write_all(part)?;
        sent.fetch_add(part.len() as u64, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Starts `ota-update ARGS`, SIGKILLs it once the server sent `fraction` of `len` bytes.
fn kill_at(device: &SimDevice, args: &[&str], server: &SlowServer, len: u64, fraction: f64) {
    let mut child = Command::new(bin("ota-update"))
        .arg("--config")
        .arg(device.config())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (server.sent() as f64) < fraction * len as f64 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the install ended before the kill"
        );
        assert!(Instant::now() < deadline, "the install does not progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn an_install_from_a_slow_url_killed_at_70_percent_downloads_less_than_half_again() {
    let r = release();
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("www");
    fs::create_dir_all(&served).unwrap();
    fs::copy(&r.bundle, served.join("v2.bundle")).unwrap();
    let len = fs::metadata(&r.bundle).unwrap().len();
    let server = SlowServer::start(&served, 2 << 20);
    let device = device(dir.path(), &r.repo.bundle_pub(), "");
    let url = format!("{}/v2.bundle", server.base);
    kill_at(&device, &["install", &url], &server, len, 0.7);
    assert!(!status(&device)["resumable_install"].is_null());

    let before = server.sent();
    let out = device.ok(&["install", &url]);
    let again = server.sent() - before;
    assert!(out.contains("resuming"), "{out}");
    assert!(again * 2 <= len, "downloaded {again} of {len} bytes again");
    println!("url: the resumed install downloaded {again} of {len} bundle bytes");
    assert_eq!(device.power_on(), Some(0));
    assert_eq!(status(&device)["last_result"]["kind"], "committed");
    assert_eq!(&device.slot("B")[..IMAGE], &r.v2[..]);
}

#[test]
fn the_daemon_resumes_a_repository_install_killed_at_70_percent() {
    let r = release();
    let trusted = r.repo.bundle_pub().display().to_string();
    r.repo
        .add(&r.bundle, &["--trusted", &trusted, "--channel", "stable"]);
    r.repo.publish();
    let dir = tempfile::tempdir().unwrap();
    let len = fs::metadata(&r.bundle).unwrap().len();
    let server = SlowServer::start(Path::new(&r.repo.root_dir()), 2 << 20);
    let device = device(dir.path(), &r.repo.bundle_pub(), "");
    let section = device.repository_section(&server.base, &r.repo.initial_root());
    device.write_config(&format!(
        "{section}\n[daemon]\ninterval_secs = 1\njitter_secs = 0\nreboot = false"
    ));
    kill_at(&device, &["install"], &server, len, 0.7);
    let s = status(&device);
    assert!(
        s["resumable_install"]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("repository target")),
        "{s:#}"
    );
    let before = server.sent();
    device.ok(&["daemon", "--rounds", "1"]);
    let again = server.sent() - before;
    assert!(
        again * 2 <= len,
        "downloaded {again} of {len} bytes again (metadata included)"
    );
    println!("repository: the resumed install downloaded {again} of {len} bundle bytes");
    assert!(status(&device)["reboot_pending"].as_bool().unwrap());
    assert_eq!(device.power_on(), Some(0));
    assert_eq!(status(&device)["last_result"]["kind"], "committed");
}

#[test]
fn an_install_goes_on_when_its_journal_cannot_be_written() {
    let r = release();
    let dir = tempfile::tempdir().unwrap();
    let device = device(dir.path(), &r.repo.bundle_pub(), "");
    // A directory where the journal goes: every journal write fails.
    fs::create_dir_all(device.path("state/install-journal.json/x")).unwrap();
    let out = device.run(&["install", &r.bundle.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot write the install journal"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("cannot write the install journal").count(),
        1,
        "{stderr}"
    );
    assert_eq!(device.power_on(), Some(0));
    assert_eq!(&device.slot("B")[..IMAGE], &r.v2[..]);
}

#[test]
fn a_repository_bundle_with_a_delta_and_a_full_image_installs_and_resumes() {
    let r = release();
    let dir = tempfile::tempdir().unwrap();
    let device = device(dir.path(), &r.repo.bundle_pub(), "");
    // The delta from what slot A holds, and the full image after it (for other devices): the
    // device skips the full image's payload, the last bytes of the bundle.
    let base = dir.path().join("factory.img");
    fs::write(&base, &device.slot("A")[..1 << 20]).unwrap();
    let img = dir.path().join("v2.rootfs");
    fs::write(&img, &r.v2).unwrap();
    let bundle = dir.path().join("acme-router-2.0.0.bundle");
    r.repo.sign(&[
        "bundle",
        "--key",
        &r.repo.key("bundle"),
        "--product",
        "acme-router",
        "--version",
        "2.0.0",
        "--image",
        &format!("rootfs={}", img.display()),
        "--base",
        &format!("rootfs={}", base.display()),
        "--with-full",
        "--chunk-size",
        "262144",
        "-o",
        &bundle.display().to_string(),
    ]);
    let trusted = r.repo.bundle_pub().display().to_string();
    r.repo
        .add(&bundle, &["--trusted", &trusted, "--channel", "stable"]);
    r.repo.publish();
    let server = SlowServer::start(Path::new(&r.repo.root_dir()), 64 << 20);
    let section = device.repository_section(&server.base, &r.repo.initial_root());
    device.write_config(&section);
    // Cut after the first checkpoint of the delta, then resume from the repository.
    let log = dir.path().join("clean.log");
    let clean = self::device(&dir.path().join("clean"), &r.repo.bundle_pub(), "");
    clean.write_config(&clean.repository_section(&server.base, &r.repo.initial_root()));
    let out = run_with(&clean, &["install"], &[("OTA_FAULT_LOG", &log)], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = labels(&log)
        .iter()
        .position(|l| l == "slot: checkpoint synced")
        .map(|i| i as u64 + 2)
        .unwrap();
    let out = run_with(&device, &["install"], &[], Some(at));
    assert!(!out.status.success(), "the install was not cut");
    assert!(!status(&device)["resumable_install"].is_null());
    let out = device.ok(&["install", "--json"]);
    assert!(out.contains("\"event\":\"resumed\""), "{out}");
    assert_eq!(device.power_on(), Some(0));
    assert_eq!(&device.slot("B")[..IMAGE], &r.v2[..]);
}
