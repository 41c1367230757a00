//! Key references and output hygiene through the real `ota-sign`: a key in a file, in a
//! variable as PEM text or as the path a CI file-type variable gives, `--key env:NAME`; errors
//! that describe a bad value without printing it and say each cause once; a warning for a
//! private key others can read; `keygen` into a directory that does not exist yet; a reader
//! that closes the pipe early ends the command quietly.

#![allow(clippy::unwrap_used)]

use ota_core::exit;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn ota_sign() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ota-sign"));
    cmd.env_remove("OTA_SIGNING_KEY").stdin(Stdio::null());
    cmd
}

fn output(cmd: &mut Command) -> (Output, String) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// `ota-sign bundle` of a small image into `dir/NAME.bundle`, with `setup` adding the key.
fn bundle(dir: &Path, name: &str, setup: impl FnOnce(&mut Command)) -> (Output, String) {
    let image = dir.join("img");
    fs::write(&image, b"GOOD firmware bytes").unwrap();
    let mut cmd = ota_sign();
    cmd.args(["bundle", "--product", "p", "--version", "1.0.0", "--image"])
        .arg(format!("rootfs={}", image.display()))
        .arg("-o")
        .arg(dir.join(format!("{name}.bundle")));
    setup(&mut cmd);
    output(&mut cmd)
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("keys/release.key");
    // The directory does not exist yet: keygen makes it.
    let (out, stderr) = output(ota_sign().arg("keygen").arg("-o").arg(&key));
    assert!(out.status.success(), "{stderr}");
    (key, dir.join("keys/release.key.pub"))
}

fn verifies(dir: &Path, name: &str, public: &Path) {
    let (out, stderr) = output(
        ota_sign()
            .arg("verify")
            .arg("--trusted")
            .arg(public)
            .arg(dir.join(format!("{name}.bundle"))),
    );
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn a_key_in_a_variable_as_pem_or_as_a_path_or_named_by_env_signs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = keygen(d);
    let pem = fs::read_to_string(&key).unwrap();

    let (out, stderr) = bundle(d, "pem", |c| {
        c.env("OTA_SIGNING_KEY", &pem);
    });
    assert!(out.status.success(), "{stderr}");
    verifies(d, "pem", &public);

    // A CI file-type variable: the variable holds the path of the key file.
    let (out, stderr) = bundle(d, "path", |c| {
        c.env("OTA_SIGNING_KEY", &key);
    });
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("names a file"), "{stderr}");
    verifies(d, "path", &public);

    let (out, stderr) = bundle(d, "named", |c| {
        c.env("RELEASE_KEY", &pem)
            .args(["--key", "env:RELEASE_KEY"]);
    });
    assert!(out.status.success(), "{stderr}");
    verifies(d, "named", &public);
}

#[test]
fn a_bad_key_value_is_described_without_being_printed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (value, says) in [
        ("s3cr3t-token-value", "without a -----BEGIN line"),
        ("/run/secrets/no-such-key", "looks like a path"),
        ("", "empty"),
    ] {
        let (out, stderr) = bundle(d, "bad", |c| {
            c.env("OTA_SIGNING_KEY", value);
        });
        assert_eq!(out.status.code(), Some(i32::from(exit::USAGE)), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{value:?}: {stderr}");
        assert!(value.is_empty() || !stderr.contains(value), "{stderr}");
        assert!(!d.join("bad.bundle").exists());
    }
    let (out, stderr) = bundle(d, "unset", |c| {
        c.args(["--key", "env:NOT_SET_ANYWHERE"]);
    });
    assert_eq!(out.status.code(), Some(i32::from(exit::USAGE)), "{stderr}");
    assert!(stderr.contains("$NOT_SET_ANYWHERE is not set"), "{stderr}");
}

#[test]
fn a_missing_key_file_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stderr) = bundle(dir.path(), "x", |c| {
        c.args(["--key", "/nonexistent/release.key"]);
    });
    assert_eq!(out.status.code(), Some(i32::from(exit::IO)), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn a_private_key_others_can_read_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, _) = keygen(d);
    let (out, stderr) = bundle(d, "private", |c| {
        c.arg("--key").arg(&key);
    });
    assert!(
        out.status.success() && !stderr.contains("warning"),
        "{stderr}"
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let (out, stderr) = bundle(d, "readable", |c| {
        c.arg("--key").arg(&key);
    });
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}

#[test]
fn a_reader_closing_the_pipe_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, _) = keygen(d);
    let (out, stderr) = bundle(d, "b", |c| {
        c.arg("--key").arg(&key);
    });
    assert!(out.status.success(), "{stderr}");
    for _ in 0..3 {
        let mut child = ota_sign()
            .arg("inspect")
            .arg(d.join("b.bundle"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -0`: the reader is gone before the first line is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.is_empty(), "{stderr}");
    }
}

#[test]
fn repo_add_without_trusted_and_publish_with_an_unrelated_key_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = |name: &str| {
        let path = d.join(format!("keys/{name}.key"));
        let (out, stderr) = output(ota_sign().arg("keygen").arg("-o").arg(&path));
        assert!(out.status.success(), "{stderr}");
        path.display().to_string()
    };
    let (root, targets, snapshot, timestamp, stranger) = (
        key("root"),
        key("targets"),
        key("snapshot"),
        key("timestamp"),
        key("stranger"),
    );
    let repo = d.join("repo").display().to_string();
    let run = |args: &[&str]| output(ota_sign().args(args));
    let (out, stderr) = run(&[
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
    ]);
    assert!(out.status.success(), "{stderr}");
    let (out, stderr) = bundle(d, "fw", |c| {
        c.args(["--key", &targets]);
    });
    assert!(out.status.success(), "{stderr}");
    let fw = d.join("fw.bundle").display().to_string();
    let (out, stderr) = run(&["repo", "add", "--repo", &repo, &fw]);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("--trusted"),
        "{stderr}"
    );
    let trusted = format!("{targets}.pub");
    let (out, stderr) = run(&["repo", "add", "--repo", &repo, "--trusted", &trusted, &fw]);
    assert!(
        out.status.success() && !stderr.contains("warning"),
        "{stderr}"
    );
    let (out, stderr) = run(&[
        "repo", "publish", "--repo", &repo, "--key", &targets, "--key", &snapshot, "--key",
        &timestamp, "--key", &stranger,
    ]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("authorised for no role").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn with_json_an_error_is_also_a_json_object_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = keygen(d);
    let (out, stderr) = bundle(d, "fw", |c| {
        c.arg("--key").arg(&key);
    });
    assert!(out.status.success(), "{stderr}");
    let mut bytes = fs::read(d.join("fw.bundle")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(d.join("bad.bundle"), &bytes).unwrap();
    let error_of = |out: &Output| -> serde_json::Value {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(line).unwrap()["error"].clone()
    };
    let (out, stderr) = output(
        ota_sign()
            .args(["verify", "--json", "--trusted"])
            .arg(&public)
            .arg(d.join("bad.bundle")),
    );
    assert_eq!(
        out.status.code(),
        Some(i32::from(exit::CORRUPT)),
        "{stderr}"
    );
    let error = error_of(&out);
    assert_eq!(error["class"], "corrupt");
    assert_eq!(error["exit_code"], exit::CORRUPT);
    assert!(
        stderr.contains(error["message"].as_str().unwrap()),
        "{stderr}"
    );
    let (out, _) = bundle(d, "nokey", |c| {
        c.arg("--json").env("OTA_SIGNING_KEY", "x");
    });
    assert_eq!(out.status.code(), Some(i32::from(exit::USAGE)));
    assert_eq!(error_of(&out)["class"], "usage");
    // Without --json, standard output stays empty.
    let (out, _) = output(
        ota_sign()
            .args(["verify", "--trusted"])
            .arg(&public)
            .arg(d.join("bad.bundle")),
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn progress_for_logs_is_a_line_per_ten_percent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = keygen(d);
    // 4 MiB of an image that does not compress away, in 64 KiB chunks.
    let image: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(d.join("big.img"), &image).unwrap();
    let make = |name: &str, progress: Option<&str>, ci: bool| {
        let mut cmd = ota_sign();
        cmd.args([
            "bundle",
            "--product",
            "p",
            "--version",
            "1.0.0",
            "--chunk-size",
            "64K",
        ])
        .arg("--image")
        .arg(format!("rootfs={}", d.join("big.img").display()))
        .arg("--key")
        .arg(&key)
        .arg("-o")
        .arg(d.join(format!("{name}.bundle")));
        if let Some(p) = progress {
            cmd.args(["--progress", p]);
        }
        if ci {
            cmd.env("CI", "true");
        } else {
            cmd.env_remove("CI");
        }
        let (out, stderr) = output(&mut cmd);
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let plain = make("plain", Some("plain"), false);
    let lines: Vec<&str> = plain
        .lines()
        .filter(|l| l.starts_with("bundling:"))
        .collect();
    assert!(lines.len() >= 5 && lines.len() <= 11, "{plain}");
    assert!(lines.last().unwrap().contains("100 %"), "{plain}");
    let json = make("json", Some("json"), false);
    // The bundle's summary ("wrote ...") is on standard error too.
    let events: Vec<serde_json::Value> = json
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {json}")))
        .collect();
    assert!(events
        .iter()
        .all(|e| e["event"] == "progress" && e["what"] == "bundling"));
    assert_eq!(events.last().unwrap()["percent"], 100);
    // auto: lines in CI, nothing when stderr is not a terminal outside CI.
    assert!(make("ci", None, true).contains("bundling: 100 %"));
    assert!(!make("quiet", None, false).contains("bundling"));
    let (out, stderr) = output(
        ota_sign()
            .args(["verify", "--progress", "plain", "--trusted"])
            .arg(&public)
            .arg(d.join("plain.bundle")),
    );
    assert!(
        out.status.success() && stderr.contains("verifying: 100 %"),
        "{stderr}"
    );
}
