//! `--provenance`: a bundle bound to its build provenance (an in-toto Statement, bare, in a
//! DSSE envelope or in a Sigstore bundle) through the real `ota-sign` command line: the signed
//! manifest records it, `inspect` shows it, `verify --provenance` checks a document against it,
//! `repo add --provenance` publishes it beside the bundle; provenance that does not attest the
//! images, or another document, is refused (exit 2) and nothing is written.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn ota_sign(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ota-sign"))
        .args(args)
        .current_dir(dir)
        .env_remove("CI")
        .env_remove("OTA_SIGNING_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = ota_sign(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = ota_sign(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    stderr
}

fn sha256_hex(bytes: &[u8]) -> String {
    ota_core::Sha256Digest::of(bytes).to_hex()
}

fn statement(subjects: &[(&str, &str)]) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects.iter().map(|(n, d)| json!({"name": n, "digest": {"sha256": d}})).collect::<Vec<_>>(),
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {"buildType": "https://example.com/firmware/make@v1"},
            "runDetails": {"builder": {"id": "https://github.com/acme/firmware/.github/workflows/release.yml@refs/tags/v2.0.0"}}
        }
    })
}

fn dsse(statement: &Value) -> Value {
    use base64::Engine;
    let payload =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(statement).unwrap());
    json!({"payloadType": "application/vnd.in-toto+json", "payload": payload,
           "signatures": [{"keyid": "", "sig": "MEUCIQ=="}]})
}

struct Fixture {
    dir: tempfile::TempDir,
    rootfs_sha: String,
    kernel_sha: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["keygen", "-o", "release.key"]);
    let rootfs: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let kernel = b"kernel image".repeat(1000);
    fs::write(d.join("rootfs.ext4"), &rootfs).unwrap();
    fs::write(d.join("bzImage"), &kernel).unwrap();
    Fixture {
        rootfs_sha: sha256_hex(&rootfs),
        kernel_sha: sha256_hex(&kernel),
        dir,
    }
}

const BUNDLE: &[&str] = &[
    "bundle",
    "--product",
    "acme-router",
    "--version",
    "2.0.0",
    "--image",
    "rootfs=rootfs.ext4",
    "--image",
    "kernel=bzImage",
    "--key",
    "release.key",
    "-o",
    "out.bundle",
];

#[test]
fn provenance_is_bound_shown_checked_and_published() {
    let f = fixture();
    let d = f.dir.path();
    let doc = serde_json::to_vec(&dsse(&statement(&[
        ("rootfs.ext4", &f.rootfs_sha),
        ("bzImage", &f.kernel_sha),
    ])))
    .unwrap();
    fs::write(d.join("provenance.intoto.json"), &doc).unwrap();
    let args = [BUNDLE, &["--provenance", "provenance.intoto.json"]].concat();
    ok(d, &args);

    let inspected: Value = serde_json::from_str(&ok(
        d,
        &[
            "inspect",
            "--json",
            "--trusted",
            "release.key.pub",
            "out.bundle",
        ],
    ))
    .unwrap();
    let record = &inspected["manifest"]["provenance"];
    assert_eq!(record["sha256"], sha256_hex(&doc), "{inspected}");
    assert_eq!(record["size"], doc.len());
    assert_eq!(record["envelope"], "dsse");
    assert_eq!(record["predicate_type"], "https://slsa.dev/provenance/v1");
    assert!(record["builder_id"]
        .as_str()
        .unwrap()
        .contains("release.yml"));
    assert!(ok(d, &["inspect", "out.bundle"])
        .contains("provenance:   https://slsa.dev/provenance/v1 (dsse"));

    let verified: Value = serde_json::from_str(&ok(
        d,
        &[
            "verify",
            "--json",
            "--trusted",
            "release.key.pub",
            "--provenance",
            "provenance.intoto.json",
            "out.bundle",
        ],
    ))
    .unwrap();
    assert_eq!(verified["provenance_document_checked"], true);
    // Another document attesting the same images is not the one the release names.
    fs::write(
        d.join("other.json"),
        serde_json::to_vec(&statement(&[
            ("rootfs.ext4", &f.rootfs_sha),
            ("bzImage", &f.kernel_sha),
        ]))
        .unwrap(),
    )
    .unwrap();
    let err = fails(
        d,
        &[
            "verify",
            "--trusted",
            "release.key.pub",
            "--provenance",
            "other.json",
            "out.bundle",
        ],
        2,
    );
    assert!(err.contains("not the provenance the bundle names"), "{err}");

    // Published beside the bundle, named in the bundle's custom metadata.
    let keys = ["root", "targets", "snapshot", "timestamp"];
    for role in keys {
        ok(d, &["keygen", "-o", &format!("{role}.key")]);
    }
    ok(
        d,
        &[
            "repo",
            "init",
            "--repo",
            "repo",
            "--root-key",
            "root.key",
            "--targets-key",
            "targets.key",
            "--snapshot-key",
            "snapshot.key",
            "--timestamp-key",
            "timestamp.key",
        ],
    );
    ok(
        d,
        &[
            "repo",
            "add",
            "--repo",
            "repo",
            "--trusted",
            "release.key.pub",
            "--provenance",
            "provenance.intoto.json",
            "--name",
            "acme-router-2.0.0.bundle",
            "out.bundle",
        ],
    );
    ok(
        d,
        &[
            "repo",
            "publish",
            "--repo",
            "repo",
            "--key",
            "targets.key",
            "--key",
            "snapshot.key",
            "--key",
            "timestamp.key",
        ],
    );
    let listed: Value =
        serde_json::from_str(&ok(d, &["repo", "list", "--repo", "repo", "--json"])).unwrap();
    let published = &listed["published"];
    let custom = &published["acme-router-2.0.0.bundle"]["custom"]["provenance"];
    assert_eq!(custom["sha256"], sha256_hex(&doc), "{listed}");
    assert_eq!(custom["target"], "acme-router-2.0.0.bundle.provenance.json");
    let document = &published["acme-router-2.0.0.bundle.provenance.json"];
    assert_eq!(document["hashes"]["sha256"], sha256_hex(&doc), "{listed}");
    assert_eq!(document["length"], doc.len());
}

#[test]
fn provenance_that_does_not_attest_every_image_is_refused() {
    let f = fixture();
    let d = f.dir.path();
    // Attests the rootfs only: the kernel is not covered.
    fs::write(
        d.join("partial.json"),
        serde_json::to_vec(&statement(&[("rootfs.ext4", &f.rootfs_sha)])).unwrap(),
    )
    .unwrap();
    let err = fails(d, &[BUNDLE, &["--provenance", "partial.json"]].concat(), 2);
    assert!(err.contains("does not attest image 'kernel'"), "{err}");
    assert!(!d.join("out.bundle").exists());
    for (name, text) in [
        ("garbage.json", "{\"hello\": 1}"),
        ("text.json", "not json"),
    ] {
        fs::write(d.join(name), text).unwrap();
        let err = fails(d, &[BUNDLE, &["--provenance", name]].concat(), 2);
        assert!(err.contains(name), "{err}");
        assert!(!d.join("out.bundle").exists());
    }
    // Without --provenance the manifest has no such field at all (older updaters read it).
    ok(d, BUNDLE);
    let inspected: Value =
        serde_json::from_str(&ok(d, &["inspect", "--json", "out.bundle"])).unwrap();
    assert!(
        inspected["manifest"].get("provenance").is_none(),
        "{inspected}"
    );
    let err = fails(
        d,
        &[
            "verify",
            "--trusted",
            "release.key.pub",
            "--provenance",
            "partial.json",
            "out.bundle",
        ],
        2,
    );
    assert!(err.contains("names no provenance"), "{err}");
}
