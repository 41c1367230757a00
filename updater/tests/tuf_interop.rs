//! The TUF client and repository against other implementations, over real HTTP:
//! - a repository written by python-tuf's Metadata API (a key type per role, a delegation, a
//!   space and non-ASCII text in the metadata) is consumed by `ota-update tuf`;
//! - a repository written by `ota-sign repo` is consumed by python-tuf's reference client
//!   (`tuf.ngclient`);
//! - a repository served by nginx instead of ota-server updates a simulated device end to end,
//!   and nginx's ETags make the next check a 304.
//!
//! The interop claims have negative controls beside them (a tampered target or snapshot must be
//! refused; the 304 is checked in nginx's own log), so a client that accepted anything would
//! fail here. A fourth test compares delegation path matching with python-tuf's (fnmatch
//! classes, `?` on non-ASCII; it found two fail-open differences, now fixed). The python
//! scripts are in
//! `tests/tuf/`; python-tuf comes from the venv `scripts/python-venv.sh` creates, and a missing
//! venv or nginx fails the test: a silent skip would leave the claim unchecked. `ota-sign` and
//! `ota-server` are the binaries cargo built beside `ota-update` (`cargo build` first).

// Test helpers unwrap freely: clippy's allow-unwrap-in-tests covers only #[test] functions.
#![allow(clippy::unwrap_used)]

use ota_test_support::{run_ok, slot_of, Nginx, Repo, Server};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

// ---------------------------------------------------------------- running the tools

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `cmd` (no standard input) and returns its output, whatever the exit status.
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn python() -> PathBuf {
    let p = match std::env::var_os("OTA_TUF_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => workspace().join(".venv-tuf/bin/python"),
    };
    assert!(
        p.exists(),
        "python-tuf venv not found at {}: run scripts/python-venv.sh (or set OTA_TUF_PYTHON)",
        p.display()
    );
    p
}

/// `python tests/tuf/SCRIPT ARGS...` with the python-tuf venv.
fn python_script(script: &str, args: &[&str]) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tuf")
        .join(script);
    let mut cmd = Command::new(python());
    // delegation_cases.py imports make_repo.py: no __pycache__ left in the source tree.
    cmd.arg(script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

// ---------------------------------------------------------------- files

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Replaces the byte at `at` with `new` (a different value): same length, one byte changed.
fn tamper_byte(path: &Path, at: usize, new: u8) {
    let mut bytes = fs::read(path).unwrap();
    assert_ne!(bytes[at], new, "tampering must change {}", path.display());
    bytes[at] = new;
    fs::write(path, bytes).unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(list) => list
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

// ---------------------------------------------------------------- servers

/// `ota-server` serving a directory on a free loopback port.
fn ota_server(dir: &Path) -> Server {
    Server::start(dir, &["--access-log", "off"])
}

// ---------------------------------------------------------------- the debugging TUF client

/// `ota-update tuf` with one metadata cache, against one repository base URL.
struct TufClient {
    cache: PathBuf,
    base: String,
}

impl TufClient {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ota-update"));
        cmd.args(["tuf", "--metadata-dir", arg(&self.cache)])
            .args(["--metadata-url", &format!("{}/metadata", self.base)])
            .args(args);
        cmd
    }

    fn init(&self, root_json: &Path) {
        run_ok(&mut self.command(&["init", arg(root_json)]));
    }

    /// `refresh`, expected to succeed; returns its report line.
    fn refresh(&self) -> String {
        run_ok(&mut self.command(&["refresh"]))
    }

    /// `download` of `names` into `target_dir`, whatever the outcome.
    fn download(&self, names: &[&str], target_dir: &Path) -> Output {
        let mut args = Vec::new();
        for name in names {
            args.extend(["--target-name", name]);
        }
        let targets = format!("{}/targets", self.base);
        args.extend([
            "--target-base-url",
            &targets,
            "--target-dir",
            arg(target_dir),
        ]);
        args.push("download");
        run(&mut self.command(&args))
    }
}

// ---------------------------------------------------------------- a vendor using ota-sign

/// A vendor using `ota-sign`: one key per TUF role and the bundle key devices trust
/// ([`Repo::with_keys`]), bundles of `testdata`, and a repository publishing them.
struct Vendor(Repo);

impl Vendor {
    fn new(dir: &Path) -> Self {
        Vendor(Repo::with_keys(dir, &[]))
    }

    /// A vendor whose four TUF role keys are ECDSA P-256 (`ecdsa-sha2-nistp256`), as in a KMS.
    fn new_p256(dir: &Path) -> Self {
        let repo = Repo::with_keys(dir, &[]);
        for role in ["root", "targets", "snapshot", "timestamp"] {
            let key = repo.key(role);
            repo.sign(&["keygen", "--algorithm", "ecdsa-p256", "--force", "-o", &key]);
        }
        Vendor(repo)
    }

    /// The bundle key's public half (the device's `vendor.pub`).
    fn bundle_pub(&self) -> PathBuf {
        self.0.bundle_pub()
    }

    /// `acme-router-VERSION.bundle` of `testdata/vN` (rootfs and kernel), signed with the bundle
    /// key.
    fn bundle(&self, version: &str) -> PathBuf {
        let major = version.split('.').next().unwrap();
        let images = workspace().join(format!("testdata/v{major}"));
        let (rootfs, kernel) = (images.join("rootfs.img"), images.join("kernel.img"));
        self.0.bundle_images(
            "acme-router",
            version,
            &[("rootfs", &rootfs), ("kernel", &kernel)],
        )
    }

    /// A repository in `DIR/repo` with `bundles` published on the stable channel.
    fn repository(&self, bundles: &[&Path]) -> PathBuf {
        self.0.init(&[], None);
        for bundle in bundles {
            self.0.add(bundle, &[]);
        }
        self.0.publish();
        PathBuf::from(self.0.root_dir())
    }
}

/// The published snapshot file the timestamp names (`N.snapshot.json`).
fn current_snapshot(repo: &Path) -> PathBuf {
    let timestamp: Value =
        serde_json::from_slice(&fs::read(repo.join("metadata/timestamp.json")).unwrap()).unwrap();
    let version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    repo.join(format!("metadata/{version}.snapshot.json"))
}

// ---------------------------------------------------------------- a simulated device

/// The demo device of `testdata/device` (file bootloader, rootfs and kernel slots, the
/// debugfs health check): release 1.0.0 in slot A, booted once.
struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    fn new(vendor_pub: &Path) -> Self {
        let d = Device {
            dir: tempfile::tempdir().unwrap(),
        };
        for file in ["updater.toml", "health-check.sh"] {
            fs::copy(workspace().join("testdata/device").join(file), d.path(file)).unwrap();
        }
        fs::copy(vendor_pub, d.path("vendor.pub")).unwrap();
        for (image, size) in [("rootfs", 8 << 20), ("kernel", 1 << 20)] {
            for slot in ["a", "b"] {
                let f = fs::File::create(d.path(&format!("slot-{slot}.{image}"))).unwrap();
                f.set_len(size).unwrap();
            }
            let factory = fs::read(workspace().join(format!("testdata/v1/{image}.img"))).unwrap();
            fs::OpenOptions::new()
                .write(true)
                .open(d.path(&format!("slot-a.{image}")))
                .unwrap()
                .write_all(&factory)
                .unwrap();
        }
        d.ok(&["simulate-boot"]);
        d.ok(&["boot", "--no-reboot"]);
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Points the device at a repository, trusting `root_json` (shipped with the device).
    fn subscribe(&self, url: &str, root_json: &Path) {
        fs::copy(root_json, self.path("root.json")).unwrap();
        let mut config = fs::OpenOptions::new()
            .append(true)
            .open(self.path("updater.toml"))
            .unwrap();
        write!(
            config,
            "\n[repository]\nurl = \"{url}\"\nroot = \"root.json\"\n"
        )
        .unwrap();
    }

    fn ok(&self, args: &[&str]) -> String {
        run_ok(
            Command::new(env!("CARGO_BIN_EXE_ota-update"))
                .arg("--config")
                .arg(self.path("updater.toml"))
                .args(args),
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

// ---------------------------------------------------------------- the tests

#[test]
fn python_tuf_repository_is_consumed_by_ota_update_tuf() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let made: Value =
        serde_json::from_str(&run_ok(&mut python_script("make_repo.py", &[arg(&repo)]))).unwrap();
    // What python-tuf wrote for each target: served under one name per hash.
    let served = |name: &str| -> Vec<PathBuf> {
        made["targets"][name]
            .as_array()
            .unwrap_or_else(|| panic!("make_repo.py served no {name}: {made}"))
            .iter()
            .map(|p| repo.join(p.as_str().unwrap()))
            .collect()
    };
    let server = ota_server(&repo);
    let client = TufClient {
        cache: work.path().join("cache"),
        base: server.base.clone(),
    };
    client.init(&repo.join(made["root"].as_str().unwrap()));

    let refreshed = client.refresh();
    assert_eq!(
        refreshed.trim_end(),
        "refreshed: root v1, timestamp v1, snapshot v1"
    );

    // Both targets, the delegated one found through "router"; the CLI keeps the file name.
    let downloads = work.path().join("downloads");
    let out = client.download(&["fw 2.bin", "router/fw.bin"], &downloads);
    assert!(
        out.status.success(),
        "download failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, file) in [("fw 2.bin", "fw 2.bin"), ("router/fw.bin", "fw.bin")] {
        let expected = fs::read(&served(name)[0]).unwrap();
        let got = fs::read(downloads.join(file)).unwrap();
        assert!(
            got == expected,
            "{name}: downloaded bytes differ from python-tuf's target"
        );
    }

    // python-tuf publishes snapshot and timestamp v2: the next refresh moves to them.
    let bumped: Value = serde_json::from_str(&run_ok(&mut python_script(
        "make_repo.py",
        &["--bump", arg(&repo)],
    )))
    .unwrap();
    assert_eq!(bumped, serde_json::json!({"timestamp": 2, "snapshot": 2}));
    assert_eq!(
        client.refresh().trim_end(),
        "refreshed: root v1, timestamp v2, snapshot v2"
    );

    // Negative control: one byte of the served target changes (same length) -> refused, and
    // nothing is left in the target directory.
    for copy in served("fw 2.bin") {
        let len = fs::metadata(&copy).unwrap().len() as usize;
        let old = fs::read(&copy).unwrap()[len / 2];
        tamper_byte(&copy, len / 2, old ^ 0xff);
    }
    let refused_dir = work.path().join("refused");
    let out = client.download(&["fw 2.bin"], &refused_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "tampered target: {stderr}");
    assert!(
        stderr.contains("differs from the signed metadata"),
        "refused for another reason than the hash: {stderr}"
    );
    assert_eq!(entries(&refused_dir), Vec::<String>::new());
}

/// Every role signed with P-256 keys: python-tuf (securesystemslib's `ecdsa-sha2-nistp256`)
/// accepts the metadata `ota-sign` writes, and downloads the bundle.
#[test]
fn p256_signed_repository_is_read_by_python_ngclient() {
    let work = tempfile::tempdir().unwrap();
    let vendor = Vendor::new_p256(work.path());
    let bundle = vendor.bundle("2.0.0");
    let repo = vendor.repository(&[&bundle]);
    let root: Value =
        serde_json::from_slice(&fs::read(repo.join("metadata/1.root.json")).unwrap()).unwrap();
    let keytypes: Vec<&str> = root["signed"]["keys"]
        .as_object()
        .unwrap()
        .values()
        .map(|k| k["scheme"].as_str().unwrap())
        .collect();
    assert!(
        keytypes.iter().all(|s| *s == "ecdsa-sha2-nistp256"),
        "{keytypes:?}"
    );
    let server = ota_server(&repo);
    let downloads = work.path().join("downloads");
    let got: Value = serde_json::from_str(&run_ok(&mut python_script(
        "ngclient_fetch.py",
        &[
            arg(&repo.join("metadata/1.root.json")),
            arg(&work.path().join("cache")),
            &format!("{}/metadata", server.base),
            &format!("{}/targets", server.base),
            arg(&downloads),
            "acme-router-2.0.0.bundle",
        ],
    )))
    .unwrap();
    let downloaded = fs::read(got["path"].as_str().unwrap()).unwrap();
    assert!(
        downloaded == fs::read(&bundle).unwrap(),
        "python-tuf downloaded other bytes"
    );
}

#[test]
fn ota_sign_repository_is_read_by_python_ngclient() {
    let work = tempfile::tempdir().unwrap();
    let vendor = Vendor::new(work.path());
    let bundle = vendor.bundle("2.0.0");
    let repo = vendor.repository(&[&bundle]);
    let server = ota_server(&repo);
    let root_json = repo.join("metadata/1.root.json");
    let fetch = |cache: &str, downloads: &Path| {
        python_script(
            "ngclient_fetch.py",
            &[
                arg(&root_json),
                arg(&work.path().join(cache)),
                &format!("{}/metadata", server.base),
                &format!("{}/targets", server.base),
                arg(downloads),
                "acme-router-2.0.0.bundle",
            ],
        )
    };

    let downloads = work.path().join("downloads");
    let got: Value = serde_json::from_str(&run_ok(&mut fetch("cache", &downloads))).unwrap();
    let expected = fs::read(&bundle).unwrap();
    let downloaded = fs::read(got["path"].as_str().unwrap()).unwrap();
    assert!(
        downloaded == expected,
        "python-tuf downloaded other bytes than the bundle"
    );
    assert_eq!(got["length"], expected.len());
    assert_eq!(got["hashes"]["sha256"], sha256_hex(&expected));
    assert_eq!(got["custom"]["product"], "acme-router");
    assert_eq!(got["custom"]["version"], "2.0.0");
    assert_eq!(got["custom"]["channel"], "stable");

    // Negative control: the snapshot's expiry pushed 70 years out (one byte, still valid
    // JSON). A fresh cache must refuse it: the timestamp's hash and the snapshot signature no
    // longer match.
    let snapshot = current_snapshot(&repo);
    let text = fs::read_to_string(&snapshot).unwrap();
    let year = text
        .find("\"expires\":\"20")
        .expect("a compact expires field")
        + 11;
    tamper_byte(&snapshot, year + 2, b'9');
    let tampered: Value = serde_json::from_slice(&fs::read(&snapshot).unwrap()).unwrap();
    let expires = tampered["signed"]["expires"].as_str().unwrap();
    assert!(
        expires.starts_with("209"),
        "tampered the wrong byte: {expires}"
    );
    let out = run(&mut fetch("fresh-cache", &work.path().join("refused")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "tampered snapshot: {stderr}");
    assert!(stderr.contains("refused:"), "not a TUF refusal: {stderr}");
    assert_eq!(entries(&work.path().join("refused")), Vec::<String>::new());
}

#[test]
fn repository_served_by_nginx_installs_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let vendor = Vendor::new(work.path());
    let bundle = vendor.bundle("2.0.0");
    let repo = vendor.repository(&[&bundle]);
    let nginx = Nginx::start(&repo);
    let device = Device::new(&vendor.bundle_pub());
    device.subscribe(&nginx.url, &repo.join("metadata/1.root.json"));

    // No source: the newest release for acme-router on stable, from the repository.
    let said = device.ok(&["install"]);
    assert!(said.contains("installed 2.0.0 into slot B"), "{said}");
    for image in ["rootfs", "kernel"] {
        let v2 = fs::read(workspace().join(format!("testdata/v2/{image}.img"))).unwrap();
        let slot = fs::read(device.path(&format!("slot-b.{image}"))).unwrap();
        assert!(
            slot[..v2.len()] == v2[..],
            "slot B {image} is not release 2.0.0's"
        );
    }
    assert!(device.ok(&["simulate-boot"]).contains("slot B"));
    assert!(device.ok(&["boot", "--no-reboot"]).contains("committed"));
    let status = device.json(&["status", "--json"]);
    assert_eq!(status["booted"], "B");
    assert_eq!(status["pending"], Value::Null);
    assert_eq!(status["last_result"]["kind"], "committed");
    let slot_b = slot_of(&status, "B");
    assert_eq!(slot_b["record"]["version"], "2.0.0");
    assert_eq!(slot_b["record"]["content"], "good");
    assert_eq!(
        slot_b["boot"],
        serde_json::json!({"good": true, "tries": 0})
    );

    // Up to date now; nginx answers the cached timestamp's ETag with 304 Not Modified.
    let check = device.json(&["check", "--json"]);
    assert_eq!(check["update"], Value::Null, "{check:#}");
    assert_eq!(check["booted_version"], "2.0.0");
    assert_eq!(
        check["refresh"]["timestamp_not_modified"], true,
        "{check:#}"
    );
    let log = nginx.access_log();
    assert!(
        log.contains("\"GET /metadata/timestamp.json HTTP/1.1\" 304"),
        "nginx did not answer a conditional request with 304:\n{log}"
    );

    // What docs/repository.md says of its nginx configuration: the staging directory is not
    // served, and the cache policy is ota-server's.
    assert!(repo.join(".ota-repo/settings.json").exists());
    let (status, _) = nginx.head("/.ota-repo/settings.json");
    assert!(status.contains(" 403 "), "{status}");
    let first_in = |dir: &str, suffix: &str| {
        fs::read_dir(repo.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|name| name.ends_with(suffix))
            .map(|name| format!("/{dir}/{name}"))
            .unwrap()
    };
    let bundle_path = first_in("targets", ".bundle");
    let snapshot_path = first_in("metadata", ".snapshot.json");
    for (path, policy) in [
        (
            "/metadata/timestamp.json",
            "public, max-age=10, must-revalidate",
        ),
        (
            "/metadata/1.root.json",
            "public, max-age=31536000, immutable",
        ),
        (
            snapshot_path.as_str(),
            "public, max-age=31536000, immutable",
        ),
        (bundle_path.as_str(), "public, max-age=31536000, immutable"),
        ("/metadata/root.json", "public, max-age=60, must-revalidate"),
    ] {
        let (status, cache_control) = nginx.head(path);
        assert!(status.contains(" 200 "), "{path}: {status}");
        assert_eq!(cache_control.as_deref(), Some(policy), "{path}");
    }
}

/// Which target paths a delegation covers, python-tuf's `DelegatedRole.is_delegated_path` (the
/// function its ngclient walks delegations with) against `ota-update tuf download`: each case
/// is a role delegated one pattern and listing one path, covered or not.
///
/// It found two differences in `ota_core::tuf::metadata::path_matches`, since fixed: `[seq]`
/// taken literally (so `literal/[ab].bin` covered the path `literal/[ab].bin`) and `?`
/// matching one byte (so `two/??.bin` covered `two/é.bin`); both were fail-open.
#[test]
fn delegation_path_patterns_match_like_python_tuf() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let made: Value = serde_json::from_str(&run_ok(&mut python_script(
        "delegation_cases.py",
        &[arg(&repo)],
    )))
    .unwrap();
    let cases = made["cases"].as_array().unwrap();
    let verdicts: Vec<bool> = cases.iter().map(|c| c["delegated"] == true).collect();
    assert!(
        verdicts.contains(&true) && verdicts.contains(&false),
        "the cases must include covered and uncovered paths: {made}"
    );
    let server = ota_server(&repo);
    let client = TufClient {
        cache: work.path().join("cache"),
        base: server.base.clone(),
    };
    client.init(&repo.join(made["root"].as_str().unwrap()));

    let mut disagreements = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (pattern, path) = (
            case["pattern"].as_str().unwrap(),
            case["path"].as_str().unwrap(),
        );
        let out = client.download(&[path], &work.path().join(format!("case{i}")));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let found = out.status.success();
        assert!(
            found || stderr.contains("is not listed by the repository's signed metadata"),
            "{path}: failed for another reason than not being found: {stderr}"
        );
        if found != verdicts[i] {
            disagreements.push(format!(
                "pattern {pattern:?}, path {path:?}: python-tuf {}, ota-update tuf {}",
                if verdicts[i] {
                    "covered"
                } else {
                    "not covered"
                },
                if found { "found it" } else { "did not find it" },
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "delegation path matching differs from python-tuf:\n{}",
        disagreements.join("\n")
    );
}
