//! Keys that never leave an HSM or a KMS, end to end: SoftHSM2 tokens (keys generated inside
//! the token by OpenSC's `pkcs11-tool`) sign bundles and TUF metadata through `pkcs11:` URIs,
//! a script standing in for a cloud KMS signs through `cmd:`, and a simulated device verifies
//! and installs what they signed. Wrong PINs, missing objects and modules, and signers that
//! sign wrongly are refused with their exit codes, and nothing is written.

#![allow(clippy::unwrap_used)]

use ota_test_support::{bin, image, Repo, Server, SimDevice};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "4321";

/// A SoftHSM2 token `ota` in its own directory, with keys generated inside it.
struct Token {
    dir: PathBuf,
}

impl Token {
    fn new(dir: &Path) -> Self {
        let tokens = dir.join("tokens");
        fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let token = Token {
            dir: dir.to_owned(),
        };
        token.tool(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                "ota",
                "--pin",
                PIN,
                "--so-pin",
                "87654321",
            ],
        );
        token
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    fn tool(&self, program: &str, args: &[&str]) {
        let out = Command::new(program)
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap_or_else(|e| panic!("{program} (Debian softhsm2 and opensc): {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A key pair generated inside the token: `EC:prime256v1` or `EC:edwards25519`.
    fn keypair(&self, key_type: &str, label: &str, id: &str) {
        self.tool(
            "pkcs11-tool",
            &[
                "--module",
                SOFTHSM_MODULE,
                "--token-label",
                "ota",
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                key_type,
                "--label",
                label,
                "--id",
                id,
            ],
        );
    }

    /// The key reference of `label`, the PIN read from a file as a CI secret would be.
    fn uri(&self, label: &str) -> String {
        let pin = self.dir.join("pin");
        fs::write(&pin, format!("{PIN}\n")).unwrap();
        format!(
            "pkcs11:token=ota;object={label}?pin-source=file:{}",
            pin.display()
        )
    }
}

fn ota_sign(token: &Token, args: &[&str]) -> Output {
    Command::new(bin("ota-sign"))
        .args(args)
        .env("SOFTHSM2_CONF", token.conf())
        .env("OTA_PKCS11_MODULE", SOFTHSM_MODULE)
        .env_remove("OTA_PKCS11_PIN")
        .env_remove("CI")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(token: &Token, args: &[&str]) -> String {
    let out = ota_sign(token, args);
    assert!(
        out.status.success(),
        "ota-sign {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(token: &Token, args: &[&str], code: i32) -> String {
    let out = ota_sign(token, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "ota-sign {args:?}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    stderr
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn token_keys_sign_bundles_and_tuf_roles_and_a_device_installs() {
    let dir = tempfile::tempdir().unwrap();
    let token = Token::new(&dir.path().join("hsm"));
    token.keypair("EC:prime256v1", "targets", "01");
    token.keypair("EC:prime256v1", "bundle-p256", "02");
    token.keypair("EC:edwards25519", "bundle-ed25519", "03");
    let vendor = Repo::with_keys(&dir.path().join("vendor"), &[]);
    // The public halves, exported through the same references that sign.
    let targets_pub = dir.path().join("targets.pub");
    let bundle_pub = dir.path().join("bundle.pub");
    let report: Value = serde_json::from_str(&ok(
        &token,
        &[
            "key",
            "public",
            "--key",
            &token.uri("targets"),
            "-o",
            &path(&targets_pub),
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(report["algorithm"], "ecdsa-p256", "{report}");
    ok(
        &token,
        &[
            "key",
            "public",
            "--key",
            &token.uri("bundle-p256"),
            "-o",
            &path(&bundle_pub),
        ],
    );
    let root = vendor.root_dir();
    let (root_key, snapshot_key, timestamp_key) = (
        vendor.key("root"),
        vendor.key("snapshot"),
        vendor.key("timestamp"),
    );
    ok(
        &token,
        &[
            "repo",
            "init",
            "--repo",
            &root,
            "--root-key",
            &root_key,
            "--targets-key",
            &path(&targets_pub),
            "--snapshot-key",
            &snapshot_key,
            "--timestamp-key",
            &timestamp_key,
        ],
    );

    // Both token algorithms sign bundles that verify against the exported public keys.
    let rootfs = dir.path().join("rootfs");
    fs::write(&rootfs, image("GOOD 2.0.0", 200_000, 7)).unwrap();
    let image_spec = format!("rootfs={}", path(&rootfs));
    let ed_bundle = dir.path().join("ed.bundle");
    ok(
        &token,
        &[
            "bundle",
            "--product",
            "acme-router",
            "--version",
            "2.0.0",
            "--image",
            &image_spec,
            "--key",
            &token.uri("bundle-ed25519"),
            "-o",
            &path(&ed_bundle),
        ],
    );
    let ed_pub = dir.path().join("ed.pub");
    ok(
        &token,
        &[
            "key",
            "public",
            "--key",
            &token.uri("bundle-ed25519"),
            "-o",
            &path(&ed_pub),
        ],
    );
    ok(
        &token,
        &["verify", "--trusted", &path(&ed_pub), &path(&ed_bundle)],
    );
    fails(
        &token,
        &["verify", "--trusted", &path(&bundle_pub), &path(&ed_bundle)],
        4,
    );
    let bundle = dir.path().join("acme-router-2.0.0.bundle");
    ok(
        &token,
        &[
            "bundle",
            "--product",
            "acme-router",
            "--version",
            "2.0.0",
            "--image",
            &image_spec,
            "--key",
            &token.uri("bundle-p256"),
            "-o",
            &path(&bundle),
        ],
    );
    ok(
        &token,
        &[
            "repo",
            "add",
            "--repo",
            &root,
            "--trusted",
            &path(&bundle_pub),
            "--channel",
            "stable",
            &path(&bundle),
        ],
    );
    ok(
        &token,
        &[
            "repo",
            "publish",
            "--repo",
            &root,
            "--key",
            &token.uri("targets"),
            "--key",
            &snapshot_key,
            "--key",
            &timestamp_key,
        ],
    );
    // Consistent snapshots: the newest N.targets.json is what publish signed.
    let newest = (1..100)
        .map(|n| vendor.metadata(&format!("{n}.targets.json")))
        .take_while(|p| p.exists())
        .last()
        .expect("targets metadata");
    let targets: Value = serde_json::from_slice(&fs::read(newest).unwrap()).unwrap();
    let sig = targets["signatures"][0]["sig"].as_str().unwrap();
    assert!(sig.starts_with("30"), "a P-256 TUF signature is DER: {sig}");

    // The device trusts the token's bundle key and the repository's root; it installs.
    let server = Server::start(Path::new(&root), &["--access-log", "off"]);
    let device = SimDevice::new(
        &dir.path().join("device"),
        &bundle_pub,
        &image("GOOD 1.0.0", 200_000, 1),
        "",
    );
    let section = device.repository_section(&server.base, &vendor.initial_root());
    device.write_config(&section);
    device.ok(&["simulate-boot"]);
    device.ok(&["boot", "--no-reboot"]);
    device.ok(&["install"]);
    device.ok(&["simulate-boot"]);
    device.ok(&["boot", "--no-reboot"]);
    let status = device.json(&["status", "--json"]);
    assert_eq!(status["booted"], "B", "{status}");
}

#[test]
fn wrong_pin_missing_object_and_missing_module_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = Token::new(&dir.path().join("hsm"));
    token.keypair("EC:prime256v1", "release", "01");
    let rootfs = dir.path().join("rootfs");
    fs::write(&rootfs, image("GOOD", 10_000, 1)).unwrap();
    let image_spec = format!("rootfs={}", path(&rootfs));
    let out = dir.path().join("b.bundle");
    let bundle = |key: &str| {
        vec![
            "bundle",
            "--product",
            "p",
            "--version",
            "1.0.0",
            "--image",
            &image_spec,
            "--key",
            key,
            "-o",
            out.to_str().unwrap(),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let run = |key: &str, code: i32| {
        let args = bundle(key);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = fails(&token, &args, code);
        assert!(!out.exists(), "{key}: a bundle was written");
        err
    };
    let err = run("pkcs11:token=ota;object=release?pin-value=0000", 2);
    assert!(
        err.contains("refused the PIN") && !err.contains("0000"),
        "{err}"
    );
    let err = run(&token.uri("nothing-here"), 2);
    assert!(err.contains("no private key"), "{err}");
    let err = run("pkcs11:token=elsewhere;object=release?pin-value=4321", 2);
    assert!(
        err.contains("no token matches (tokens present: ota)"),
        "{err}"
    );
    let err = run(
        "pkcs11:token=ota;object=release?pin-value=4321&module-path=/nonexistent/pkcs11.so",
        3,
    );
    assert!(err.contains("does not exist"), "{err}");
    let err = run("pkcs11:token=ota;object=release;slot-description=x", 2);
    assert!(err.contains("unsupported attribute"), "{err}");
    // With the PIN from the environment, the same key signs.
    let args = bundle("pkcs11:token=ota;object=release");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let signed = Command::new(bin("ota-sign"))
        .args(&args)
        .env("SOFTHSM2_CONF", token.conf())
        .env("OTA_PKCS11_PIN", PIN)
        .env("OTA_PKCS11_MODULE", SOFTHSM_MODULE)
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
}

/// A KMS stand-in: keeps its key to itself, gives the public key as base64 DER (as
/// `aws kms get-public-key --output text` does), signs the SHA-256 it is given in base64 without
/// reading the message (as `aws kms sign --message-type DIGEST` does) and prints base64 DER.
fn kms_script(dir: &Path, key: &Path, public: &Path) -> String {
    let script = dir.join("kms.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\ncase \"$OTA_SIGN_ACTION\" in\n  public-key) openssl pkey -pubin -in {public} -outform DER | base64 ;;\n  sign) printf %s \"$OTA_SIGN_SHA256_BASE64\" | base64 -d > \"$0.digest\"\n        openssl pkeyutl -sign -inkey {key} -in \"$0.digest\" | base64 ;;\n  *) echo \"unknown action $OTA_SIGN_ACTION\" >&2; exit 2 ;;\nesac\n",
            public = public.display(), key = key.display()
        ),
    )
    .unwrap();
    format!("cmd:sh {}", script.display())
}

#[test]
fn an_external_signer_command_signs_what_a_device_installs_and_a_wrong_one_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    // No token here: the helpers only point SOFTHSM2_CONF at an unused file.
    let token = Token {
        dir: dir.path().to_owned(),
    };
    let key = dir.path().join("kms.key");
    ok(
        &token,
        &["keygen", "--algorithm", "ecdsa-p256", "-o", &path(&key)],
    );
    let public = dir.path().join("kms.key.pub");
    let reference = kms_script(dir.path(), &key, &public);
    let exported = dir.path().join("exported.pub");
    ok(
        &token,
        &["key", "public", "--key", &reference, "-o", &path(&exported)],
    );
    assert_eq!(fs::read(&exported).unwrap(), fs::read(&public).unwrap());

    let rootfs = dir.path().join("rootfs");
    fs::write(&rootfs, image("GOOD 2.0.0", 200_000, 3)).unwrap();
    let image_spec = format!("rootfs={}", path(&rootfs));
    let bundle = dir.path().join("b.bundle");
    let sign = |reference: &str| {
        vec![
            "bundle",
            "--product",
            "acme-router",
            "--version",
            "2.0.0",
            "--image",
            image_spec.as_str(),
            "--key",
            reference,
            "-o",
            bundle.to_str().unwrap(),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let args = sign(&reference);
    ok(&token, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let device = SimDevice::new(
        &dir.path().join("device"),
        &public,
        &image("GOOD 1.0.0", 200_000, 1),
        "",
    );
    device.ok(&["simulate-boot"]);
    device.ok(&["boot", "--no-reboot"]);
    device.ok(&["install", bundle.to_str().unwrap()]);
    fs::remove_file(&bundle).unwrap();

    // A command that signs with another key than the public key it gives: refused, exit 1.
    let other = dir.path().join("other.key");
    ok(
        &token,
        &["keygen", "--algorithm", "ecdsa-p256", "-o", &path(&other)],
    );
    let wrong = kms_script(dir.path(), &other, &public);
    let args = sign(&wrong);
    let err = fails(
        &token,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        1,
    );
    assert!(err.contains("does not verify with its public key"), "{err}");
    assert!(!bundle.exists());
    // A command that fails (the KMS unreachable): exit 3 with its last error line.
    let args = sign("cmd:echo 'AccessDeniedException: not allowed' >&2; exit 254");
    let err = fails(
        &token,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        3,
    );
    assert!(err.contains("AccessDeniedException: not allowed"), "{err}");
    assert!(!bundle.exists());
}
