//! The client rules of docs/tuf-metadata.md ("Client rules"), each against a repository that
//! python-tuf's Metadata API wrote (`tests/tuf/conformance.py`), served over real HTTP by
//! `ota-server` or nginx, read by `ota-update tuf`:
//! - delegation confusion: a role delegated by two roles is checked against the delegator on
//!   each search path;
//! - delegated roles load lazily: a broken branch stops only the targets behind it, and a
//!   fast-forwarded delegated role recovers after a snapshot key rotation;
//! - unusual role names (`?`, `#`, `/delegatedrole`, `../delegatedrole`) are requested and
//!   cached percent-encoded, through ota-server and nginx;
//! - duplicate signature key ids invalidate the metadata; one key spelled two ways counts once;
//! - a target already downloaded is not fetched again (requests counted in nginx's log);
//! - `--clock system` checks a repository at a faked time (libfaketime);
//! - delegations written by `ota-sign repo delegate` / `add --role` / `publish --role` (names
//!   `?` and `#` included) read by `ota-update tuf` and python-tuf's client, through ota-server
//!   and nginx; a device's `check` skips a delegated role missing from the snapshot (said in
//!   its skipped list) but fails when the rollout role cannot be loaded.
//!
//! A missing python-tuf venv, nginx or faketime fails the test: a silent skip would leave the
//! claim unchecked. `cargo build` the binaries first (ota-server is not rebuilt by this crate).

#![allow(clippy::unwrap_used)]

use ota_test_support::{bin, image, run_ok, tool, Nginx, Repo, Server, SimDevice};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

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
    let mut cmd = Command::new(python());
    cmd.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/tuf")
            .join(script),
    )
    .args(args)
    .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// `conformance.py ARGS... DIR`: builds a repository, returns what the script printed.
fn make(args: &[&str], dir: &Path) -> Value {
    let mut all = args.to_vec();
    all.push(arg(dir));
    serde_json::from_str(&run_ok(&mut python_script("conformance.py", &all))).unwrap()
}

/// `ota-update tuf` with one metadata cache against one repository base URL.
struct Client {
    cache: PathBuf,
    base: String,
    /// Options before the subcommand (`--clock system`).
    options: Vec<String>,
    /// A command prefix (`faketime -f @2020-06-01`), if any.
    wrapper: Vec<String>,
}

impl Client {
    fn new(cache: PathBuf, base: &str, root: &Path) -> Self {
        let client = Client {
            cache,
            base: base.to_owned(),
            options: Vec::new(),
            wrapper: Vec::new(),
        };
        run_ok(&mut client.command(&["init", arg(root)]));
        client
    }

    fn command(&self, args: &[&str]) -> Command {
        let exe = env!("CARGO_BIN_EXE_ota-update");
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                // Only the wall clock moves back: timeouts keep the real monotonic clock.
                c.args(rest)
                    .arg(exe)
                    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["tuf", "--metadata-dir", arg(&self.cache)])
            .args(["--metadata-url", &format!("{}/metadata", self.base)])
            .args(&self.options)
            .args(args);
        cmd
    }

    fn refresh(&self) -> Output {
        run(&mut self.command(&["refresh"]))
    }

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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Requires `out` to have failed (exit 1, the debugging client's only failure code) with an
/// error containing `needle`.
fn refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(out), stderr(out));
    assert!(
        stderr(out).contains(needle),
        "expected {needle:?} in: {}",
        stderr(out)
    );
}

fn succeeded(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", stderr(out));
    stdout(out)
}

/// The bytes python-tuf wrote for target `name` (its first served copy).
fn served(repo: &Path, made: &Value, name: &str) -> Vec<u8> {
    let path = made["targets"][name][0].as_str().unwrap();
    fs::read(repo.join(path)).unwrap()
}

fn ota_server(dir: &Path) -> Server {
    Server::start(dir, &["--access-log", "off"])
}

#[test]
fn a_role_delegated_twice_is_checked_against_the_delegator_of_each_path() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let made = make(&["diamond"], &repo);
    assert_eq!(made["parent_b_verdict"], "UnsignedMetadataError", "{made}");
    let server = ota_server(&repo);
    let root = repo.join("metadata/1.root.json");

    // One run: team-a/x.bin loads `release` through parent-a (its keys signed it); team-b/y.bin
    // reaches the same role through parent-b, whose key did not sign it: refused, not reused.
    let client = Client::new(work.path().join("cache"), &server.base, &root);
    let downloads = work.path().join("downloads");
    let out = client.download(&["team-a/x.bin", "team-b/y.bin"], &downloads);
    refused(&out, "release: 0 of 1 required signatures");
    assert_eq!(
        fs::read(downloads.join("x.bin")).unwrap(),
        served(&repo, &made, "team-a/x.bin")
    );
    assert!(!downloads.join("y.bin").exists());

    // The next run starts from the cached `release`, and still refuses it for team-b.
    let out = client.download(&["team-b/y.bin"], &downloads);
    refused(&out, "release: 0 of 1 required signatures");
    assert!(!downloads.join("y.bin").exists());
}

#[test]
fn a_broken_delegated_branch_stops_only_the_targets_behind_it() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let made = make(&["broken-branches"], &repo);
    let server = ota_server(&repo);
    let client = Client::new(
        work.path().join("cache"),
        &server.base,
        &repo.join("metadata/1.root.json"),
    );
    // refresh loads the top-level roles only: the broken delegations are not touched.
    let said = succeeded(&client.refresh());
    assert_eq!(
        said.trim_end(),
        "refreshed: root v1, timestamp v1, snapshot v1"
    );
    let cached = fs::read_dir(&client.cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        cached.into_iter().collect::<Vec<_>>(),
        [
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );

    let downloads = work.path().join("downloads");
    succeeded(&client.download(&["fw.bin", "fine/x.bin"], &downloads));
    assert_eq!(
        fs::read(downloads.join("fw.bin")).unwrap(),
        served(&repo, &made, "fw.bin")
    );
    // Each broken branch fails the targets behind it, with its own reason.
    refused(
        &client.download(&["other/x.bin"], &downloads),
        "snapshot does not list missing.json",
    );
    refused(
        &client.download(&["bad/x.bin"], &downloads),
        "badsig: 0 of 1 required signatures",
    );
    refused(&client.download(&["gone/x.bin"], &downloads), "404");
    // The x.bin written is still fine's: the refused ones wrote nothing.
    assert_eq!(
        fs::read(downloads.join("x.bin")).unwrap(),
        served(&repo, &made, "fine/x.bin")
    );
}

#[test]
fn a_fast_forwarded_delegated_role_recovers_after_a_snapshot_key_rotation() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    make(&["fast-forward"], &repo);
    let server = ota_server(&repo);
    let client = Client::new(
        work.path().join("cache"),
        &server.base,
        &repo.join("metadata/1.root.json"),
    );
    let downloads = work.path().join("downloads");
    succeeded(&client.download(&["ff/a.bin"], &downloads));
    let version = |file: &str| -> u64 {
        let v: Value = serde_json::from_slice(&fs::read(client.cache.join(file)).unwrap()).unwrap();
        v["signed"]["version"].as_u64().unwrap()
    };
    assert_eq!(version("ff.json"), 99999);

    // The repository rotates the snapshot key (root v2) and puts ff back at version 1: the
    // snapshot trusted before is no baseline any more (5.3.11), so version 1 is accepted.
    let made = make(&["fast-forward", "--recover"], &repo);
    succeeded(&client.download(&["ff/b.bin"], &downloads));
    assert_eq!(version("ff.json"), 1);
    assert_eq!(version("root.json"), 2);
    assert_eq!(
        fs::read(downloads.join("b.bin")).unwrap(),
        served(&repo, &made, "ff/b.bin")
    );
    let said = succeeded(&client.refresh());
    assert_eq!(
        said.trim_end(),
        "refreshed: root v2, timestamp v2, snapshot v2"
    );
}

/// Every entry under `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn unusual_role_names_are_percent_encoded_through_ota_server_and_nginx() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let made = make(&["unusual-names"], &repo);
    let roles: Vec<&str> = made["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(roles, ["?", "#", "/delegatedrole", "../delegatedrole"]);
    let names = ["r0/fw.bin", "r1/fw.bin", "r2/fw.bin", "r3/fw.bin"];
    let root = repo.join("metadata/1.root.json");
    let nginx = Nginx::start(&repo);
    let server = ota_server(&repo);

    for (label, base) in [("ota-server", &server.base), ("nginx", &nginx.url)] {
        let client_dir = work.path().join(label);
        let client = Client::new(client_dir.join("cache"), base, &root);
        for (i, name) in names.iter().enumerate() {
            let downloads = client_dir.join(format!("downloads{i}"));
            succeeded(&client.download(&[name], &downloads));
            assert_eq!(
                fs::read(downloads.join("fw.bin")).unwrap(),
                served(&repo, &made, name),
                "{label}: {name}"
            );
        }
        // The cache holds every role under its quoted name, and nothing left the directory.
        let required = [
            "root.json",
            "timestamp.json",
            "snapshot.json",
            "targets.json",
            "%3F.json",
            "%23.json",
            "%2Fdelegatedrole.json",
            "..%2Fdelegatedrole.json",
        ];
        let optional = ["clock-floor", "timestamp.json.etag"];
        let cached = tree(&client.cache);
        for file in required {
            assert!(
                cached.iter().any(|c| c == file),
                "{label}: no {file} in {cached:?}"
            );
        }
        assert!(
            cached
                .iter()
                .all(|c| required.contains(&c.as_str()) || optional.contains(&c.as_str())),
            "{label}: unexpected cache files {cached:?}"
        );
        let mut outside = tree(&client_dir);
        outside.retain(|n| !n.starts_with("cache") && !n.starts_with("downloads"));
        assert!(
            outside.is_empty(),
            "{label}: files outside the cache: {outside:?}"
        );
    }
    // nginx's log shows the requests as python-tuf makes them (urllib.parse.quote(name, "")).
    let log = nginx.access_log();
    for quoted in ["%3F", "%23", "%2Fdelegatedrole", "..%2Fdelegatedrole"] {
        let request = format!("\"GET /metadata/1.{quoted}.json HTTP/1.1\" 200");
        assert!(log.contains(&request), "no {request} in:\n{log}");
    }
    // python-tuf's client reads the same layout from nginx.
    for name in names {
        let out = run_ok(&mut python_script(
            "ngclient_fetch.py",
            &[
                arg(&root),
                arg(&work.path().join("python-cache")),
                &format!("{}/metadata", nginx.url),
                &format!("{}/targets", nginx.url),
                arg(&work.path().join("python-downloads")),
                name,
            ],
        ));
        let got: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(got["name"], name);
    }
}

#[test]
fn duplicate_signature_key_ids_make_metadata_invalid() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let made = make(&["duplicate-sigs"], &repo);
    assert!(
        made["python_tuf"]
            .as_str()
            .unwrap()
            .contains("Multiple signatures found for keyid"),
        "{made}"
    );
    let server = ota_server(&repo);
    let client = Client::new(
        work.path().join("cache"),
        &server.base,
        &repo.join("metadata/1.root.json"),
    );
    refused(&client.refresh(), "more than once (key ids must be unique)");
    // Control: the same timestamp with its signature listed once is accepted.
    fs::copy(
        repo.join(".keys/timestamp.good.json"),
        repo.join("metadata/timestamp.json"),
    )
    .unwrap();
    succeeded(&client.refresh());
}

#[test]
fn one_key_listed_under_two_spellings_counts_once() {
    for keytype in ["ed25519", "ecdsa"] {
        let work = tempfile::tempdir().unwrap();
        let repo = work.path().join("repo");
        let made = make(&["key-twice", keytype], &repo);
        let role = made["role"].as_str().unwrap();
        // python-tuf 7 counts key ids, so it takes the two spellings for two keys.
        assert_eq!(made["python_tuf_threshold_met"], true, "{made}");
        let server = ota_server(&repo);
        let client = Client::new(
            work.path().join("cache"),
            &server.base,
            &repo.join("metadata/1.root.json"),
        );
        refused(
            &client.refresh(),
            &format!("{role}: 1 of 2 required signatures"),
        );
    }
}

/// How many times nginx served `GET path` (status 200).
fn gets(nginx: &Nginx, path: &str) -> usize {
    let request = format!("\"GET {path} HTTP/1.1\" 200");
    nginx.access_log().matches(&request).count()
}

#[test]
fn a_target_already_downloaded_is_not_fetched_again() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let made = make(&["broken-branches"], &repo);
    let nginx = Nginx::start(&repo);
    let client = Client::new(
        work.path().join("cache"),
        &nginx.url,
        &repo.join("metadata/1.root.json"),
    );
    let served_path = format!("/{}", made["targets"]["fw.bin"][0].as_str().unwrap());
    let downloads = work.path().join("downloads");
    let first = succeeded(&client.download(&["fw.bin"], &downloads));
    assert!(first.starts_with("downloaded fw.bin"), "{first}");
    assert_eq!(gets(&nginx, &served_path), 1);
    let second = succeeded(&client.download(&["fw.bin"], &downloads));
    assert!(second.starts_with("fw.bin already present"), "{second}");
    assert_eq!(gets(&nginx, &served_path), 1, "{}", nginx.access_log());

    // A local copy that no longer matches (one byte changed) is fetched again and replaced.
    let local = downloads.join("fw.bin");
    let mut bytes = fs::read(&local).unwrap();
    bytes[10] ^= 1;
    fs::write(&local, bytes).unwrap();
    let third = succeeded(&client.download(&["fw.bin"], &downloads));
    assert!(third.starts_with("downloaded fw.bin"), "{third}");
    assert_eq!(gets(&nginx, &served_path), 2);
    assert_eq!(fs::read(&local).unwrap(), served(&repo, &made, "fw.bin"));
}

#[test]
fn clock_system_checks_a_repository_at_a_faked_time() {
    let faketime = tool("faketime", "faketime");
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    make(&["expired-2021"], &repo);
    let server = ota_server(&repo);
    let root = repo.join("metadata/1.root.json");
    let in_2020 = |cache: &str, options: &[&str]| {
        let mut client = Client::new(work.path().join(cache), &server.base, &root);
        client.options = options.iter().map(|s| (*s).to_owned()).collect();
        client.wrapper = vec![
            arg(&faketime).to_owned(),
            "-f".into(),
            "@2020-06-01 00:00:00".into(),
        ];
        client
    };
    // Today the repository has expired, whatever the policy.
    let today = Client::new(work.path().join("today"), &server.base, &root);
    refused(
        &today.refresh(),
        "root metadata expired at 2021-01-01T00:00:00Z",
    );
    let mut today_system = Client::new(work.path().join("today-system"), &server.base, &root);
    today_system.options = vec!["--clock".into(), "system".into()];
    refused(&today_system.refresh(), "expired at 2021-01-01T00:00:00Z");

    // At a faked 2020-06-01: `--clock system` accepts it and records no floor ...
    let system = in_2020("system", &["--clock", "system"]);
    let said = succeeded(&system.refresh());
    assert_eq!(
        said.trim_end(),
        "refreshed: root v1, timestamp v1, snapshot v1"
    );
    assert!(!system.cache.join("clock-floor").exists());
    let downloads = work.path().join("downloads");
    succeeded(&system.download(&["fw.bin"], &downloads));

    // ... while the device policy (the default) still uses this binary's build time as a
    // floor: the faked clock cannot revive expired metadata.
    let floor = in_2020("floor", &[]);
    refused(&floor.refresh(), "expired at 2021-01-01T00:00:00Z");
    let explicit = in_2020("floor-explicit", &["--clock", "floor"]);
    refused(&explicit.refresh(), "expired at 2021-01-01T00:00:00Z");
}

/// `ota-sign ARGS` (real time); returns the output whatever the status.
fn ota_sign(args: &[&str]) -> Output {
    run(Command::new(bin("ota-sign"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH"))
}

fn ota_sign_ok(args: &[&str]) -> String {
    succeeded(&ota_sign(args))
}

#[test]
fn delegations_written_by_ota_sign_are_read_by_ota_update_and_python_tuf() {
    let work = tempfile::tempdir().unwrap();
    let vendor = Repo::with_keys(work.path(), &["supplier", "question", "hash"]);
    vendor.init(&[], None);
    let repo = vendor.root_dir();
    let public = |name: &str| format!("{}.pub", vendor.key(name));
    // Three delegated roles, two with names that must be percent-encoded in URLs.
    for (role, pattern, key) in [
        ("supplier", "supplier/*", "supplier"),
        ("?", "q/*", "question"),
        ("#", "h/*", "hash"),
    ] {
        let said = ota_sign_ok(&[
            "repo",
            "delegate",
            "--repo",
            &repo,
            "--name",
            role,
            "--paths",
            pattern,
            "--key",
            &public(key),
            "--terminating",
        ]);
        assert!(said.contains("staged delegation"), "{said}");
    }
    vendor.publish();
    let mut names = Vec::new();
    for (role, dir, key, version) in [
        ("supplier", "supplier", "supplier", "2.0.0"),
        ("?", "q", "question", "3.0.0"),
        ("#", "h", "hash", "4.0.0"),
    ] {
        let bundle = vendor.bundle(
            "acme-nas",
            version,
            &image(&format!("GOOD {version}"), 50_000, 7),
        );
        let name = format!("{dir}/acme-nas-{version}.bundle");
        ota_sign_ok(&[
            "repo",
            "add",
            "--repo",
            &repo,
            "--role",
            role,
            "--name",
            &name,
            bundle.to_str().unwrap(),
        ]);
        // A target outside the role's paths is refused: devices would never look for it.
        let out = ota_sign(&[
            "repo",
            "add",
            "--repo",
            &repo,
            "--role",
            role,
            "--name",
            "elsewhere/x.bundle",
            bundle.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("outside the paths delegated"),
            "{}",
            stderr(&out)
        );
        let said = ota_sign_ok(&[
            "repo",
            "publish",
            "--repo",
            &repo,
            "--role",
            role,
            "--key",
            &vendor.key(key),
            "--key",
            &vendor.key("snapshot"),
            "--key",
            &vendor.key("timestamp"),
        ]);
        assert!(said.contains(&format!("{role} v1")), "{said}");
        names.push((name, bundle));
    }
    // Published under the role names as they are (what servers map the quoted URLs to).
    for file in ["1.supplier.json", "1.?.json", "1.#.json"] {
        assert!(vendor.metadata(file).is_file(), "{file}");
    }
    // The doctor sees every role signed and listed.
    ota_sign_ok(&["repo", "doctor", "--repo", &repo]);

    let repo_dir = PathBuf::from(&repo);
    let root = vendor.initial_root();
    let nginx = Nginx::start(&repo_dir);
    let server = ota_server(&repo_dir);
    for (label, base) in [("ota-server", &server.base), ("nginx", &nginx.url)] {
        let client = Client::new(work.path().join(label).join("cache"), base, &root);
        for (i, (name, bundle)) in names.iter().enumerate() {
            let downloads = work.path().join(label).join(format!("d{i}"));
            succeeded(&client.download(&[name], &downloads));
            let file = name.rsplit('/').next().unwrap();
            assert!(fs::read(downloads.join(file)).unwrap() == fs::read(bundle).unwrap());
        }
    }
    for (name, _) in &names {
        let out = run_ok(&mut python_script(
            "ngclient_fetch.py",
            &[
                arg(&root),
                arg(&work.path().join("python-cache")),
                &format!("{}/metadata", nginx.url),
                &format!("{}/targets", nginx.url),
                arg(&work.path().join("python-downloads")),
                name,
            ],
        ));
        let got: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(got["custom"]["product"], "acme-nas", "{got}");
    }
}

#[test]
fn a_device_skips_a_broken_delegated_branch_but_not_an_unavailable_rollout_role() {
    let work = tempfile::tempdir().unwrap();
    let vendor = Repo::with_keys(work.path(), &["supplier", "rollout"]);
    vendor.init(&[], None);
    let repo = vendor.root_dir();
    vendor.add_release(
        "acme-router",
        "2.0.0",
        "stable",
        &image("GOOD 2.0.0", 200_000, 2),
    );
    // Delegated, never signed: the snapshot does not list supplier.json.
    ota_sign_ok(&[
        "repo",
        "delegate",
        "--repo",
        &repo,
        "--name",
        "supplier",
        "--paths",
        "supplier/*",
        "--key",
        &format!("{}.pub", vendor.key("supplier")),
    ]);
    vendor.publish();
    let server = ota_server(Path::new(&repo));
    let device = SimDevice::new(
        &work.path().join("device"),
        &vendor.bundle_pub(),
        &image("GOOD 1.0.0", 200_000, 1),
        "",
    );
    let section = device.repository_section(&server.base, &vendor.initial_root());
    device.write_config(&section);
    device.ok(&["simulate-boot"]);
    device.ok(&["boot", "--no-reboot"]);

    let check = device.json(&["check", "--json"]);
    assert_eq!(check["update"]["version"], "2.0.0", "{check:#}");
    let skipped = check["skipped"].as_array().unwrap();
    assert!(
        skipped.iter().any(|s| s["name"] == "role supplier"
            && s["reason"]
                .as_str()
                .unwrap()
                .contains("snapshot does not list supplier.json")),
        "{check:#}"
    );
    assert_eq!(check["refresh"]["unavailable"][0]["name"], "role supplier");
    let text = device.ok(&["check"]);
    assert!(
        text.contains("skipped role supplier: delegated metadata unavailable"),
        "{text}"
    );

    // The rollout role can pause or pull a release: when it cannot be loaded, check fails.
    ota_sign_ok(&[
        "rollout",
        "init",
        "--repo",
        &repo,
        "--rollout-key",
        &format!("{}.pub", vendor.key("rollout")),
        "--key",
        &vendor.key("targets"),
        "--key",
        &vendor.key("snapshot"),
        "--key",
        &vendor.key("timestamp"),
    ]);
    ota_sign_ok(&[
        "rollout",
        "start",
        "--repo",
        &repo,
        "--product",
        "acme-router",
        "--version",
        "2.0.0",
        "--waves",
        "0s=100%",
        "--key",
        &vendor.key("rollout"),
        "--key",
        &vendor.key("snapshot"),
        "--key",
        &vendor.key("timestamp"),
    ]);
    assert_eq!(
        device.json(&["check", "--json"])["rollout"]["state"],
        "active"
    );
    ota_sign_ok(&[
        "rollout",
        "pause",
        "--repo",
        &repo,
        "--product",
        "acme-router",
        "--version",
        "2.0.0",
        "--key",
        &vendor.key("rollout"),
        "--key",
        &vendor.key("snapshot"),
        "--key",
        &vendor.key("timestamp"),
    ]);
    // An attacker (or a broken upload) withholds the new rollout.json: the device must not
    // fall back to "no rollout entry, offered to everyone".
    let newest = fs::read_dir(vendor.metadata(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| {
            n.strip_suffix(".rollout.json")
                .and_then(|v| v.parse::<u64>().ok())
        })
        .max()
        .unwrap();
    fs::remove_file(vendor.metadata(&format!("{newest}.rollout.json"))).unwrap();
    let out = device.run(&["check"]);
    assert!(!out.status.success(), "check passed without rollout.json");
    assert!(stderr(&out).contains("rollout.json"), "{}", stderr(&out));
}
