//! `ota-sign repo` as the vendor runs it: a malformed staging file is refused before anything
//! is written; `repo doctor` reports what devices would refuse (the rotation trap, expired
//! metadata) and what expires soon; `SOURCE_DATE_EPOCH` set in the past is warned about; the
//! hint `repo rotate` prints is the command that re-signs.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

fn ota_sign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ota-sign"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .output()
        .expect("run ota-sign")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(args: &[&str]) -> String {
    let out = ota_sign(args);
    assert!(
        out.status.success(),
        "ota-sign {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A repository with one key per role (all private, so `init` publishes version 1).
struct Vendor {
    dir: tempfile::TempDir,
}

impl Vendor {
    fn new(extra: &[&str]) -> Self {
        let v = Vendor {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for role in [
            "root",
            "targets",
            "snapshot",
            "timestamp",
            "targets-2027",
            "bundle",
        ] {
            ok(&["keygen", "--out", &v.key(role)]);
        }
        let repo = v.repo();
        let (root, targets) = (v.key("root"), v.key("targets"));
        let (snapshot, timestamp) = (v.key("snapshot"), v.key("timestamp"));
        let mut args = vec![
            "repo",
            "init",
            "--repo",
            &repo,
            "--root-key",
            &root,
            "--targets-key",
            &targets,
            "--snapshot-key",
            &snapshot,
            "--timestamp-key",
            &timestamp,
        ];
        args.extend_from_slice(extra);
        ok(&args);
        v
    }

    fn key(&self, name: &str) -> String {
        self.path(&format!("{name}.key"))
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn repo(&self) -> String {
        self.path("repo")
    }

    /// A small signed bundle.
    fn bundle(&self) -> String {
        let image = self.path("rootfs.img");
        fs::write(&image, b"GOOD firmware image\n".repeat(500)).expect("write image");
        let out = self.path("acme-router-2.0.0.bundle");
        ok(&[
            "bundle",
            "--product",
            "acme-router",
            "--version",
            "2.0.0",
            "--image",
            &format!("rootfs={image}"),
            "--key",
            &self.key("bundle"),
            "-o",
            &out,
        ]);
        out
    }

    fn doctor(&self, extra: &[&str]) -> (Option<i32>, Value) {
        let repo = self.repo();
        let mut args = vec!["repo", "doctor", "--repo", &repo, "--json"];
        args.extend_from_slice(extra);
        let out = ota_sign(&args);
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
        (out.status.code(), report)
    }
}

/// Every file under `dir` with its bytes.
fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), fs::read(&path).expect("read"));
            }
        }
    }
    out
}

#[test]
fn a_malformed_staging_file_is_refused_with_exit_5_and_nothing_written() {
    let v = Vendor::new(&[]);
    let bundle = v.bundle();
    let repo = v.repo();
    let staging = Path::new(&repo).join(".ota-repo/targets.json");
    let (targets, snapshot, timestamp) = (v.key("targets"), v.key("snapshot"), v.key("timestamp"));
    let key_pub = format!("{}.pub", v.key("bundle"));
    let commands: Vec<Vec<&str>> = vec![
        vec!["repo", "add", "--repo", &repo, &bundle],
        vec![
            "repo",
            "remove",
            "--repo",
            &repo,
            "acme-router-2.0.0.bundle",
        ],
        vec![
            "repo", "publish", "--repo", &repo, "--key", &targets, "--key", &snapshot, "--key",
            &timestamp,
        ],
        vec![
            "repo", "delegate", "--repo", &repo, "--name", "nas", "--paths", "nas/*", "--key",
            &key_pub,
        ],
        vec!["repo", "list", "--repo", &repo],
    ];
    for malformed in [
        &b"{ not json"[..],
        br#"{"_type": "targets", "spec_version": "1.0.31", "version": 1,
            "expires": "2030-01-01T00:00:00Z", "targets": []}"#,
        br#"{"_type": "targets", "spec_version": "1.0.31", "version": 1,
            "expires": "2030-01-01T00:00:00Z", "targets": {"x": 1}}"#,
        br#"[1, 2, 3]"#,
    ] {
        fs::write(&staging, malformed).expect("write staging");
        let before = snapshot_tree(Path::new(&repo));
        for args in &commands {
            let out = ota_sign(args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
            assert!(
                stderr.contains(&format!("malformed staging file {}", staging.display())),
                "{args:?}: {stderr}"
            );
            assert!(
                snapshot_tree(Path::new(&repo)) == before,
                "{args:?} wrote something"
            );
        }
    }
    // Deleting it starts again from the newest signed targets.
    fs::remove_file(&staging).expect("remove staging");
    ok(&["repo", "add", "--repo", &repo, &bundle]);
}

#[test]
fn doctor_reports_the_rotation_trap_and_the_rotate_hint_fixes_it() {
    let v = Vendor::new(&[]);
    let repo = v.repo();
    let (code, report) = v.doctor(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    let roles: Vec<&str> = report["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles, ["root", "timestamp", "snapshot", "targets"]);
    assert!(report["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .all(|r| r["ok"] == true && r["signed_by"].as_array().map(Vec::len) == Some(1)));

    // Rotate the targets key and do nothing else: devices refuse the old targets signature.
    let new_pub = format!("{}.pub", v.key("targets-2027"));
    let said = ok(&[
        "repo",
        "rotate",
        "--repo",
        &repo,
        "--targets-key",
        &new_pub,
        "--key",
        &v.key("root"),
    ]);
    let hint = format!("ota-sign repo publish --repo {repo} --key <new targets key>");
    assert!(said.contains(&hint), "{said}");
    let (code, report) = v.doctor(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("targets v1 does not verify under root v2")
            && problems.contains("ota-sign repo publish --repo"),
        "{report:#}"
    );
    let out = ota_sign(&["repo", "doctor", "--repo", &repo]);
    assert_eq!(out.status.code(), Some(1));
    let human = text(&out.stdout);
    assert!(
        human.contains("REFUSED") && human.contains("problem: targets v1"),
        "{human}"
    );

    // The hint's command re-signs (it used to say "targets unchanged").
    let said = ok(&[
        "repo",
        "publish",
        "--repo",
        &repo,
        "--key",
        &v.key("targets-2027"),
        "--key",
        &v.key("snapshot"),
        "--key",
        &v.key("timestamp"),
    ]);
    assert_eq!(
        said.trim_end(),
        "published: targets v2, snapshot v2, timestamp v2"
    );
    let (code, report) = v.doctor(&[]);
    assert_eq!(code, Some(0), "{report:#}");
}

#[test]
fn doctor_lists_what_expires_soon_and_source_date_epoch_in_the_past_is_warned_about() {
    let v = Vendor::new(&["--expires", "timestamp=1d", "--expires", "snapshot=7d"]);
    let repo = v.repo();
    let (code, report) = v.doctor(&["--days", "3"]);
    assert_eq!(code, Some(0), "{report:#}");
    let expiring = report["expiring"].to_string();
    assert!(expiring.contains("timestamp v1 expires"), "{report:#}");
    assert!(
        !expiring.contains("snapshot") && !expiring.contains("targets"),
        "{report:#}"
    );

    // Signed "ten days ago": the 1-day timestamp is expired the moment it is published.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let out = Command::new(env!("CARGO_BIN_EXE_ota-sign"))
        .args(["repo", "refresh-timestamp", "--repo", &repo, "--key"])
        .arg(v.key("snapshot"))
        .arg("--key")
        .arg(v.key("timestamp"))
        .env("SOURCE_DATE_EPOCH", (now - 10 * 86_400).to_string())
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: SOURCE_DATE_EPOCH=")
            && stderr.contains("timestamp (expires")
            && stderr.contains("already expired"),
        "{stderr}"
    );
    // It wrote nothing due (v1 was fresh), so force a new timestamp through a change.
    let bundle = v.bundle();
    ok(&["repo", "add", "--repo", &repo, &bundle]);
    let out = Command::new(env!("CARGO_BIN_EXE_ota-sign"))
        .args(["repo", "publish", "--repo", &repo])
        .args(["--key", &v.key("targets"), "--key", &v.key("snapshot")])
        .args(["--key", &v.key("timestamp")])
        .env("SOURCE_DATE_EPOCH", (now - 10 * 86_400).to_string())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("already expired"));
    let (code, report) = v.doctor(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert!(
        report["problems"]
            .to_string()
            .contains("timestamp v2 expired at"),
        "{report:#}"
    );
}
