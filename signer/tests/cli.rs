//! `ota-sign` through its real command line: round trips, tampering, truncation, keys,
//! thresholds, reproducibility, exit codes.

use ota_core::exit;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `ota-sign`, outside CI whatever runs the tests: in CI its automatic progress would add lines
/// to the standard error these tests read.
fn ota_sign() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ota-sign"));
    cmd.env_remove("CI");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run ota-sign")
}

fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "command failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs and returns the exit code, checking the error is exactly one line on stderr.
fn fails(cmd: &mut Command) -> i32 {
    let out = run(cmd);
    assert!(!out.status.success(), "expected failure, got success");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "error is not one line: {stderr}"
    );
    out.status.code().expect("exit code")
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(name);
    ok(ota_sign().arg("keygen").arg("--out").arg(&key));
    (key.clone(), dir.join(format!("{name}.pub")))
}

/// Deterministic pseudo-random bytes that compress somewhat, like firmware.
fn firmware_like(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let word = (x >> 33) as u32;
        // Runs of text-like bytes and runs of random bytes.
        if word.is_multiple_of(3) {
            out.extend_from_slice(b"libc.so.6 GLIBC_2.34 /usr/lib ");
        } else {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

struct Fixture {
    dir: tempfile::TempDir,
    key: PathBuf,
    public: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, public) = keygen(dir.path(), "vendor.key");
        Self { dir, key, public }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, data).expect("write");
        p
    }

    /// Bundles `images` (name, path) with small chunks so tests cover many chunks.
    fn bundle(&self, out: &str, images: &[(&str, &Path)], extra: &[&str]) -> PathBuf {
        let out = self.path(out);
        let mut cmd = ota_sign();
        cmd.args([
            "bundle",
            "--product",
            "acme-router",
            "--version",
            "1.2.3",
            "--level",
            "3",
        ])
        .args(["--chunk-size", "64K", "--key"])
        .arg(&self.key)
        .arg("-o")
        .arg(&out)
        .args(extra);
        for (name, path) in images {
            cmd.arg("--image").arg(format!("{name}={}", path.display()));
        }
        ok(&mut cmd);
        out
    }

    fn verify(&self, bundle: &Path) -> Command {
        let mut cmd = ota_sign();
        cmd.arg("verify")
            .arg("--trusted")
            .arg(&self.public)
            .arg(bundle);
        cmd
    }

    /// A small two-image bundle used by the tampering tests.
    fn small_bundle(&self) -> PathBuf {
        let rootfs = self.write("rootfs.img", &firmware_like(200_000, 1));
        let kernel = self.write("kernel.img", &firmware_like(70_001, 2));
        self.bundle(
            "small.bundle",
            &[("rootfs", &rootfs), ("kernel", &kernel)],
            &[],
        )
    }
}

#[test]
fn round_trip_of_several_images_is_byte_identical() {
    let f = Fixture::new();
    let sizes = [
        ("empty", 0usize),
        ("one", 1),
        ("odd", 3 * 65536 + 17),
        ("exact", 2 * 65536),
    ];
    let mut images = Vec::new();
    for (i, (name, size)) in sizes.iter().enumerate() {
        images.push((
            *name,
            f.write(&format!("{name}.img"), &firmware_like(*size, i as u64)),
        ));
    }
    let refs: Vec<(&str, &Path)> = images.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let bundle = f.bundle("multi.bundle", &refs, &[]);
    let mut cmd = f.verify(&bundle);
    for (name, _) in &images {
        cmd.arg("--extract").arg(format!(
            "{name}={}",
            f.path(&format!("{name}.out")).display()
        ));
    }
    let out = ok(&mut cmd);
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("OK: acme-router 1.2.3 verified: 4 image(s)"));
    for (name, path) in &images {
        let extracted = fs::read(f.path(&format!("{name}.out"))).expect("extracted image");
        assert_eq!(
            extracted,
            fs::read(path).expect("source"),
            "image {name} differs"
        );
    }
}

#[test]
fn three_gib_sparse_image_round_trips() {
    let f = Fixture::new();
    let path = f.path("big.img");
    let size: u64 = 3 << 30;
    {
        let mut file = fs::File::create(&path).expect("create");
        file.set_len(size).expect("set_len");
        // Data just past 2 GiB and at the very end catches 32-bit offset arithmetic.
        for (at, data) in [
            (0u64, &b"head"[..]),
            ((2 << 30) + 1, b"past-2GiB"),
            (size - 3, b"end"),
        ] {
            file.seek(SeekFrom::Start(at)).expect("seek");
            file.write_all(data).expect("write");
        }
    }
    let out = f.path("big.bundle");
    ok(ota_sign()
        .args([
            "bundle",
            "--product",
            "acme-router",
            "--version",
            "2.0.0",
            "--level",
            "1",
            "--key",
        ])
        .arg(&f.key)
        .arg("--image")
        .arg(format!("rootfs={}", path.display()))
        .arg("-o")
        .arg(&out));
    assert!(
        fs::metadata(&out).expect("bundle").len() < 1 << 20,
        "zeros should compress"
    );
    let extracted = f.path("big.out");
    ok(f.verify(&out)
        .arg("--extract")
        .arg(format!("rootfs={}", extracted.display())));
    assert_eq!(fs::metadata(&extracted).expect("extracted").len(), size);
    let mut file = fs::File::open(&extracted).expect("open");
    for (at, data) in [
        (0u64, &b"head"[..]),
        ((2 << 30) + 1, b"past-2GiB"),
        (size - 3, b"end"),
    ] {
        let mut buf = vec![0u8; data.len()];
        file.seek(SeekFrom::Start(at)).expect("seek");
        std::io::Read::read_exact(&mut file, &mut buf).expect("read");
        assert_eq!(buf, data);
    }
    // The hash check on extraction covered every other byte; check one zero region too.
    let mut buf = vec![1u8; 4096];
    file.seek(SeekFrom::Start(1 << 30)).expect("seek");
    std::io::Read::read_exact(&mut file, &mut buf).expect("read");
    assert!(buf.iter().all(|&b| b == 0));
}

/// Offsets of the header, manifest and signature block (everything before the payload).
fn head_len(bundle: &[u8]) -> usize {
    let manifest = u32::from_le_bytes(bundle[12..16].try_into().expect("4 bytes")) as usize;
    let sigs = u32::from_le_bytes(bundle[16..20].try_into().expect("4 bytes")) as usize;
    24 + manifest + sigs
}

/// Flips one byte of a copy of `original` at each offset and expects `verify` to refuse it.
fn assert_each_flip_refused(f: &Fixture, original: &[u8], offsets: &[usize]) {
    let workers = 4;
    std::thread::scope(|scope| {
        for w in 0..workers {
            let mine: Vec<usize> = offsets.iter().copied().skip(w).step_by(workers).collect();
            let path = f.path(&format!("tampered-{w}.bundle"));
            scope.spawn(move || {
                for at in mine {
                    let mut copy = original.to_vec();
                    copy[at] ^= 0x01 << (at % 8);
                    fs::write(&path, &copy).expect("write");
                    let out = run(&mut f.verify(&path));
                    assert!(!out.status.success(), "flip at offset {at} was accepted");
                    let code = out.status.code().expect("code");
                    assert!(
                        [
                            i32::from(exit::SIGNATURE),
                            i32::from(exit::CORRUPT),
                            i32::from(exit::UNSUPPORTED)
                        ]
                        .contains(&code),
                        "flip at {at}: unexpected exit {code}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            });
        }
    });
}

#[test]
fn every_byte_of_header_manifest_and_signatures_is_protected() {
    let f = Fixture::new();
    let original = fs::read(f.small_bundle()).expect("bundle");
    let offsets: Vec<usize> = (0..head_len(&original)).collect();
    assert!(
        offsets.len() > 500,
        "the head should be sizeable: {}",
        offsets.len()
    );
    assert_each_flip_refused(&f, &original, &offsets);
}

#[test]
fn sampled_payload_bytes_are_protected() {
    let f = Fixture::new();
    let original = fs::read(f.small_bundle()).expect("bundle");
    let start = head_len(&original);
    let payload = original.len() - start;
    let samples = 240;
    let offsets: Vec<usize> = (0..samples)
        .map(|i| start + i * payload / samples)
        .chain([original.len() - 1])
        .collect();
    assert_each_flip_refused(&f, &original, &offsets);
}

#[test]
fn truncated_and_extended_bundles_are_refused() {
    let f = Fixture::new();
    let original = fs::read(f.small_bundle()).expect("bundle");
    let path = f.path("cut.bundle");
    let mut cuts: Vec<usize> = (0..40).map(|i| i * original.len() / 40).collect();
    cuts.extend([1, 23, 24, 25, head_len(&original), original.len() - 1]);
    for cut in cuts {
        fs::write(&path, &original[..cut]).expect("write");
        assert_eq!(
            fails(&mut f.verify(&path)),
            i32::from(exit::CORRUPT),
            "cut at {cut}"
        );
    }
    let mut longer = original.clone();
    longer.push(0);
    fs::write(&path, &longer).expect("write");
    assert_eq!(fails(&mut f.verify(&path)), i32::from(exit::CORRUPT));
}

#[test]
fn wrong_key_and_unmet_threshold_are_refused() {
    let f = Fixture::new();
    let bundle = f.small_bundle();
    let (_, other_public) = keygen(f.dir.path(), "other.key");
    assert_eq!(
        fails(
            ota_sign()
                .arg("verify")
                .arg("--trusted")
                .arg(&other_public)
                .arg(&bundle)
        ),
        i32::from(exit::SIGNATURE)
    );
    // Trusting both keys but requiring two: only one signed.
    assert_eq!(
        fails(
            ota_sign()
                .arg("verify")
                .arg("--trusted")
                .arg(&f.public)
                .arg("--trusted")
                .arg(&other_public)
                .args(["--threshold", "2"])
                .arg(&bundle)
        ),
        i32::from(exit::SIGNATURE)
    );
    // A threshold larger than the trusted set is a usage error, not a verification result.
    assert_eq!(
        fails(
            ota_sign()
                .arg("verify")
                .arg("--trusted")
                .arg(&f.public)
                .args(["--threshold", "2"])
                .arg(&bundle)
        ),
        i32::from(exit::USAGE)
    );
}

#[test]
fn two_signers_meet_threshold_two() {
    let f = Fixture::new();
    let (second, second_public) = keygen(f.dir.path(), "second.key");
    let image = f.write("img", &firmware_like(100_000, 9));
    let bundle = f.bundle(
        "two.bundle",
        &[("rootfs", &image)],
        &["--key", second.to_str().expect("utf8")],
    );
    ok(ota_sign()
        .arg("verify")
        .arg("--trusted")
        .arg(&f.public)
        .arg("--trusted")
        .arg(&second_public)
        .args(["--threshold", "2"])
        .arg(&bundle));
}

#[test]
fn duplicate_signatures_from_one_key_count_once() {
    let f = Fixture::new();
    let (_, other_public) = keygen(f.dir.path(), "other.key");
    let original = fs::read(f.small_bundle()).expect("bundle");
    // Rewrite the signature block so it carries the same valid signature twice.
    let manifest_len = u32::from_le_bytes(original[12..16].try_into().expect("4")) as usize;
    let sig_start = 24 + manifest_len;
    let entry = original[sig_start + 4..sig_start + 4 + 96].to_vec();
    let mut forged = original[..sig_start].to_vec();
    forged[16..20].copy_from_slice(&(4u32 + 2 * 96).to_le_bytes());
    forged.extend_from_slice(&2u32.to_le_bytes());
    forged.extend_from_slice(&entry);
    forged.extend_from_slice(&entry);
    forged.extend_from_slice(&original[sig_start + 4 + 96..]);
    let path = f.write("dup.bundle", &forged);
    // With threshold 1 the duplicated bundle is still fine...
    ok(&mut f.verify(&path));
    // ...but two copies of one key's signature do not make two signers.
    let mut cmd = ota_sign();
    cmd.arg("verify")
        .arg("--trusted")
        .arg(&f.public)
        .arg("--trusted")
        .arg(&other_public)
        .args(["--threshold", "2"])
        .arg(&path);
    assert_eq!(fails(&mut cmd), i32::from(exit::SIGNATURE));
}

#[test]
fn unsigned_bundle_is_refused() {
    let f = Fixture::new();
    let original = fs::read(f.small_bundle()).expect("bundle");
    let manifest_len = u32::from_le_bytes(original[12..16].try_into().expect("4")) as usize;
    let sig_start = 24 + manifest_len;
    let mut unsigned = original[..sig_start].to_vec();
    unsigned[16..20].copy_from_slice(&4u32.to_le_bytes());
    unsigned.extend_from_slice(&0u32.to_le_bytes());
    unsigned.extend_from_slice(&original[sig_start + 4 + 96..]);
    let path = f.write("unsigned.bundle", &unsigned);
    assert_eq!(fails(&mut f.verify(&path)), i32::from(exit::SIGNATURE));
}

#[test]
fn newer_format_version_gets_its_own_exit_code() {
    let f = Fixture::new();
    let mut bytes = fs::read(f.small_bundle()).expect("bundle");
    bytes[8] = 2;
    let path = f.write("v2.bundle", &bytes);
    let out = run(&mut f.verify(&path));
    assert_eq!(out.status.code(), Some(i32::from(exit::UNSUPPORTED)));
    assert!(String::from_utf8_lossy(&out.stderr).contains("format version 2 is not supported"));
    assert_eq!(
        fails(ota_sign().arg("inspect").arg(&path)),
        i32::from(exit::UNSUPPORTED)
    );
}

#[test]
fn not_a_bundle_is_corrupt() {
    let f = Fixture::new();
    let path = f.write("junk.bundle", b"this is not a bundle at all, just text");
    assert_eq!(fails(&mut f.verify(&path)), i32::from(exit::CORRUPT));
}

#[test]
fn same_inputs_and_source_date_epoch_give_identical_bundles() {
    let f = Fixture::new();
    let image = f.write("img", &firmware_like(300_000, 5));
    let a = f.bundle("a.bundle", &[("rootfs", &image)], &[]);
    let first = fs::read(&a).expect("a");
    let mut cmd = ota_sign();
    let b = f.path("b.bundle");
    let build = |cmd: &mut Command, out: &Path| {
        cmd.env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "bundle",
                "--product",
                "acme-router",
                "--version",
                "1.2.3",
                "--level",
                "3",
            ])
            .args(["--chunk-size", "64K", "--key"])
            .arg(&f.key)
            .arg("--image")
            .arg(format!("rootfs={}", image.display()))
            .arg("-o")
            .arg(out);
    };
    build(&mut cmd, &b);
    ok(&mut cmd);
    let mut again = ota_sign();
    let c = f.path("c.bundle");
    build(&mut again, &c);
    ok(&mut again);
    assert_eq!(fs::read(&b).expect("b"), fs::read(&c).expect("c"));
    // The creation time really comes from SOURCE_DATE_EPOCH.
    let out = ok(ota_sign().arg("inspect").arg("--json").arg(&b));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["manifest"]["created"], 1700000000);
    assert_ne!(
        first,
        fs::read(&b).expect("b"),
        "a different creation time must change the bytes"
    );
}

#[test]
fn openssl_made_keys_sign_and_verify() {
    let f = Fixture::new();
    let key = f.path("openssl.pem");
    let public = f.path("openssl.pub");
    let status = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .expect("openssl must be installed (Debian package openssl)");
    assert!(status.success());
    assert!(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("openssl")
        .success());
    let image = f.write("img", &firmware_like(50_000, 3));
    let bundle = f.path("ossl.bundle");
    ok(ota_sign()
        .args(["bundle", "--product", "p", "--version", "1.0.0", "--key"])
        .arg(&key)
        .arg("--image")
        .arg(format!("rootfs={}", image.display()))
        .arg("-o")
        .arg(&bundle));
    ok(ota_sign()
        .arg("verify")
        .arg("--trusted")
        .arg(&public)
        .arg(&bundle));
    // And our public key file is read by openssl: it is standard SPKI PEM.
    assert!(Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-in"])
        .arg(&f.public)
        .status()
        .expect("openssl")
        .success());
}

#[test]
fn signing_key_from_environment_variable() {
    let f = Fixture::new();
    let pem = fs::read_to_string(&f.key).expect("key");
    let image = f.write("img", &firmware_like(10_000, 4));
    let bundle = f.path("env.bundle");
    ok(ota_sign()
        .env("OTA_SIGNING_KEY", pem)
        .args(["bundle", "--product", "p", "--version", "1.0.0", "--image"])
        .arg(format!("rootfs={}", image.display()))
        .arg("-o")
        .arg(&bundle));
    ok(&mut f.verify(&bundle));
    let mut cmd = ota_sign();
    cmd.env("OTA_SIGNING_KEY", "garbage")
        .args(["bundle", "--product", "p", "--version", "1.0.0", "--image"])
        .arg(format!("rootfs={}", image.display()))
        .arg("-o")
        .arg(f.path("bad.bundle"));
    assert_eq!(fails(&mut cmd), i32::from(exit::USAGE));
    assert!(!f.path("bad.bundle").exists());
}

#[test]
fn keygen_writes_private_key_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let mode = fs::metadata(&f.key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(fs::read_to_string(&f.key)
        .expect("key")
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(fs::read_to_string(&f.public)
        .expect("pub")
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    // Refuses to overwrite without --force.
    assert_eq!(
        fails(ota_sign().arg("keygen").arg("--out").arg(&f.key)),
        i32::from(exit::USAGE)
    );
}

#[test]
fn verify_reads_standard_input() {
    let f = Fixture::new();
    let bundle = f.small_bundle();
    let out = Command::new(env!("CARGO_BIN_EXE_ota-sign"))
        .arg("verify")
        .arg("--trusted")
        .arg(&f.public)
        .arg("-")
        .stdin(fs::File::open(&bundle).expect("open"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn inspect_says_unverified_without_trusted_keys() {
    let f = Fixture::new();
    let bundle = f.small_bundle();
    let out = ok(ota_sign().arg("inspect").arg(&bundle));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("UNVERIFIED"), "{text}");
    assert!(text.contains("image rootfs: 200000 bytes"));
    let out = ok(ota_sign()
        .arg("inspect")
        .arg("--trusted")
        .arg(&f.public)
        .arg(&bundle));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Signatures verified"));
    let (_, other) = keygen(f.dir.path(), "o.key");
    assert_eq!(
        fails(
            ota_sign()
                .arg("inspect")
                .arg("--trusted")
                .arg(&other)
                .arg(&bundle)
        ),
        i32::from(exit::SIGNATURE)
    );
}

#[test]
fn extract_of_unknown_image_is_a_usage_error_and_writes_nothing() {
    let f = Fixture::new();
    let bundle = f.small_bundle();
    let mut cmd = f.verify(&bundle);
    cmd.arg("--extract")
        .arg(format!("nope={}", f.path("nope.out").display()));
    assert_eq!(fails(&mut cmd), i32::from(exit::USAGE));
    assert!(!f.path("nope.out").exists());
}

#[test]
fn corrupt_payload_leaves_no_extracted_file() {
    let f = Fixture::new();
    let mut bytes = fs::read(f.small_bundle()).expect("bundle");
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    let path = f.write("bad.bundle", &bytes);
    let out_path = f.path("kernel.out");
    let mut cmd = f.verify(&path);
    cmd.arg("--extract")
        .arg(format!("kernel={}", out_path.display()));
    assert_eq!(fails(&mut cmd), i32::from(exit::CORRUPT));
    assert!(!out_path.exists());
    let leftovers: Vec<_> = fs::read_dir(f.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn delta_bundle_extracts_with_its_base_and_refuses_another() {
    let f = Fixture::new();
    let old = firmware_like(400_000, 20);
    let mut new = old.clone();
    new[200_000..210_000].copy_from_slice(&firmware_like(10_000, 21));
    let old_path = f.write("old.img", &old);
    let new_path = f.write("new.img", &new);
    let delta = f.bundle(
        "delta.bundle",
        &[("rootfs", &new_path)],
        &["--base", &format!("rootfs={}", old_path.display())],
    );
    let full = f.bundle("full.bundle", &[("rootfs", &new_path)], &[]);
    let delta_size = fs::metadata(&delta).expect("delta").len();
    assert!(
        delta_size * 4 < fs::metadata(&full).expect("full").len(),
        "delta {delta_size} bytes is not small"
    );
    let out = f.path("new.out");
    ok(f.verify(&delta)
        .arg("--base")
        .arg(format!("rootfs={}", old_path.display()))
        .arg("--extract")
        .arg(format!("rootfs={}", out.display())));
    assert_eq!(fs::read(&out).expect("out"), new);
    // Without a base the delta's operation hashes are checked, and the output says what was not.
    let text = String::from_utf8_lossy(&ok(&mut f.verify(&delta)).stdout).into_owned();
    assert!(
        text.contains("checked only up to its operation hashes"),
        "{text}"
    );
    // Another base: refused with the wrong-base exit code, nothing extracted.
    let other = f.write("other.img", &firmware_like(400_000, 22));
    let out2 = f.path("new2.out");
    let mut cmd = f.verify(&delta);
    cmd.arg("--base")
        .arg(format!("rootfs={}", other.display()))
        .arg("--extract")
        .arg(format!("rootfs={}", out2.display()));
    assert_eq!(fails(&mut cmd), i32::from(exit::INCOMPATIBLE));
    assert!(!out2.exists());
    // Base and output may not be the same file (A/B).
    let mut cmd = f.verify(&delta);
    cmd.arg("--base")
        .arg(format!("rootfs={}", old_path.display()))
        .arg("--extract")
        .arg(format!("rootfs={}", old_path.display()));
    assert_eq!(fails(&mut cmd), i32::from(exit::USAGE));
    assert_eq!(fs::read(&old_path).expect("old"), old);
}

/// `--xz-content` through the CLI on squashfs-tools' own images: a delta several times
/// smaller, extracted exactly; asked for with a delta format that has no `xz` operation, a
/// usage error.
#[test]
fn xz_content_deltas_of_squashfs_images_extract_exactly() {
    let f = Fixture::new();
    let squashfs = |name: &str, extra: &[u8]| {
        let dir = f.path(name);
        fs::create_dir_all(&dir).expect("dir");
        let mut text: Vec<u8> = (0..30_000u32)
            .flat_map(|i| format!("{i} manual line {}\n", i % 97).into_bytes())
            .collect();
        text.splice(300_000..300_000, extra.iter().copied());
        fs::write(dir.join("manual.txt"), text).expect("write");
        fs::write(dir.join("lib.so"), firmware_like(300_000, 30)).expect("write");
        let image = f.path(&format!("{name}.sqfs"));
        let status = Command::new("mksquashfs")
            .arg(&dir)
            .arg(&image)
            .args(["-comp", "xz", "-noappend", "-all-root"])
            .stdout(Stdio::null())
            .status()
            .expect("mksquashfs (squashfs-tools; scripts/install-deps.sh installs it)");
        assert!(status.success());
        image
    };
    let old = squashfs("old", b"");
    let new = squashfs("new", b"an added paragraph of the manual\n");
    let base = format!("rootfs={}", old.display());
    let plain = f.bundle("plain.bundle", &[("rootfs", &new)], &["--base", &base]);
    let xz = f.bundle(
        "xz.bundle",
        &[("rootfs", &new)],
        &["--base", &base, "--xz-content"],
    );
    let (plain_len, xz_len) = (
        fs::metadata(&plain).expect("plain").len(),
        fs::metadata(&xz).expect("xz").len(),
    );
    assert!(xz_len * 2 < plain_len, "{xz_len} vs {plain_len} bytes");
    let out = f.path("new.out");
    ok(f.verify(&xz)
        .arg("--base")
        .arg(&base)
        .arg("--extract")
        .arg(format!("rootfs={}", out.display())));
    assert_eq!(fs::read(&out).expect("out"), fs::read(&new).expect("new"));
    let mut cmd = ota_sign();
    cmd.args(["bundle", "--product", "p", "--version", "1.0.0", "--key"])
        .arg(&f.key)
        .args(["--image", &format!("rootfs={}", new.display())])
        .args(["--base", &base, "--xz-content", "--delta-format", "4", "-o"])
        .arg(f.path("refused.bundle"));
    assert_eq!(fails(&mut cmd), i32::from(exit::USAGE));
    assert!(!f.path("refused.bundle").exists());
}

#[path = "../../ota-core/tests/support/hostile.rs"]
mod hostile;

/// `ota-sign ARGS` with at most 128 MiB of address space (`ulimit -v 131072`): a reader whose
/// memory follows what a signed bundle declares aborts there instead of finishing cleanly.
fn ota_sign_limited() -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -v 131072; exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_ota-sign"))
        .env_remove("CI");
    cmd
}

#[test]
fn hostile_signed_deltas_are_refused_in_bounded_memory() {
    let f = Fixture::new();
    let key = ota_core::keys::SigningKey::from_file(&f.key).expect("key");
    let base = firmware_like(1 << 20, 30);
    let base_path = f.write("base.img", &base);
    let target = |image_size| hostile::Target {
        product: "acme-router",
        version: "2.0.0",
        base: &base,
        image_size,
    };
    let count = 1 << 22;
    // (what, bundle, refused without --base too, the reason given)
    let cases: [(&str, Vec<u8>, bool, &str); 4] = [
        (
            "op-list bomb (4,194,304 operations, 306 MB of list in a few KB)",
            hostile::op_list_bomb(&key, &target(count), count),
            true,
            "operation 0 of delta image 'rootfs' does not match its signed SHA-256",
        ),
        (
            // Without a base the patch is only hash-checked (it cannot be applied).
            "control-triple bomb (1.4 million empty bsdiff triples)",
            hostile::control_triple_bomb(&key, &target(2 << 20), 2 << 20),
            false,
            "control entries for 2097152 bytes",
        ),
        (
            "a 2^63-byte image of zeros",
            hostile::huge_zero_op(&key, &target(1 << 63), 1 << 63),
            true,
            "more than 274877906944",
        ),
        (
            "a 2^63-byte zero operation in a 1 MiB image",
            hostile::huge_zero_op(&key, &target(1 << 20), 1 << 63),
            true,
            "past the image end",
        ),
    ];
    for (what, bytes, refused_without_base, reason) in cases {
        let bundle = f.write("hostile.bundle", &bytes);
        for with_base in [true, false] {
            if !with_base && !refused_without_base {
                let mut cmd = ota_sign_limited();
                ok(cmd
                    .arg("verify")
                    .arg("--trusted")
                    .arg(&f.public)
                    .arg(&bundle));
                continue;
            }
            let mut cmd = ota_sign_limited();
            cmd.arg("verify").arg("--trusted").arg(&f.public);
            if with_base {
                cmd.arg("--base")
                    .arg(format!("rootfs={}", base_path.display()));
            }
            let out = run(cmd.arg(&bundle));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(i32::from(exit::CORRUPT)),
                "{what} (base: {with_base}): {stderr}"
            );
            assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr}");
            assert!(stderr.contains(reason), "{what}: {stderr}");
        }
    }
    // The same limit leaves room for a real delta.
    let mut new = base.clone();
    new[500_000..520_000].copy_from_slice(&firmware_like(20_000, 31));
    let new_path = f.write("new.img", &new);
    let delta = f.bundle(
        "delta.bundle",
        &[("rootfs", &new_path)],
        &["--base", &format!("rootfs={}", base_path.display())],
    );
    let out = f.path("new.out");
    ok(ota_sign_limited()
        .arg("verify")
        .arg("--trusted")
        .arg(&f.public)
        .arg("--base")
        .arg(format!("rootfs={}", base_path.display()))
        .arg("--extract")
        .arg(format!("rootfs={}", out.display()))
        .arg(&delta));
    assert!(fs::read(&out).expect("out") == new);
}

#[test]
fn with_full_bundle_serves_devices_without_the_base() {
    let f = Fixture::new();
    let old = firmware_like(300_000, 23);
    let mut new = old.clone();
    new[1000] ^= 0xff;
    let old_path = f.write("old.img", &old);
    let new_path = f.write("new.img", &new);
    let bundle = f.bundle(
        "both.bundle",
        &[("rootfs", &new_path)],
        &[
            "--base",
            &format!("rootfs={}", old_path.display()),
            "--with-full",
        ],
    );
    let json: serde_json::Value =
        serde_json::from_slice(&ok(ota_sign().arg("inspect").arg("--json").arg(&bundle)).stdout)
            .expect("json");
    let kinds: Vec<&str> = json["manifest"]["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["payload"]["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["delta", "full"]);
    // Without a base (a device that holds none of the bases) the full image is applied.
    let out = f.path("out.img");
    ok(f.verify(&bundle)
        .arg("--extract")
        .arg(format!("rootfs={}", out.display())));
    assert_eq!(fs::read(&out).expect("out"), new);
    // A base given that matches none of the deltas is a wrong base (exit 7), whatever else the
    // bundle carries: the caller said which base the device runs.
    let other = f.write("other.img", &firmware_like(300_000, 24));
    let wrong = f
        .verify(&bundle)
        .arg("--base")
        .arg(format!("rootfs={}", other.display()))
        .output()
        .expect("run");
    assert_eq!(wrong.status.code(), Some(i32::from(exit::INCOMPATIBLE)));
}

/// An access log holding ota-server lines (with and without the user agent), nginx `combined`
/// lines (with an escaped quote, another time zone, a non-device agent) and garbage.
const ACCESS_LOG: &str = r#"10.0.0.1:40001 - - [25/Nov/2026:07:40:00 +0000] "GET /2.root.json HTTP/1.1" 404 10 "-" "ota-update/0.1.0 (acme-router; 1.0.0; stable)" 0.1ms
10.0.0.1:40002 - - [25/Nov/2026:07:50:00 +0000] "GET /timestamp.json HTTP/1.1" 304 0 "-" "ota-update/0.1.0 (acme-router; 1.0.0; stable)" 0.1ms
10.0.0.2 - - [25/Nov/2026:07:41:00 +0000] "GET /timestamp.json HTTP/1.1" 304 0 "-" "ota-update/0.1.0 (acme-router; 1.0.0; stable)"
garbage line
10.0.0.2 - - [25/Nov/2026:07:59:59 +0000] "GET /targets/x.bundle HTTP/1.1" 200 4096 "-" "ota-update/0.1.0 (acme-router; 2.0.0; stable)"
[2001:db8::1]:443 - - [25/Nov/2026:07:10:00 +0000] "GET /a\x22b HTTP/1.1" 404 10 "-" "ota-update/0.1.0 (acme\x22router; 1.0.0; beta)" 0.2ms
127.0.0.1:5 - - [25/Nov/2026:07:12:00 +0000] "GET /timestamp.json HTTP/1.1" 200 24 0.1ms
10.0.0.3 - - [25/Nov/2026:07:13:00 +0000] "GET / HTTP/1.1" 404 153 "-" "curl/8.0"

10.0.0.9 - - [25/Nov/2026:07:
10.0.0.1 - - [25/Nov/2026:09:05:00 +0100] "GET /timestamp.json HTTP/1.1" 200 700 "-" "ota-update/0.1.0 (acme-router; 2.0.0; stable)"
"#;

#[test]
fn fleet_report_counts_devices_per_release_from_both_log_formats() {
    let f = Fixture::new();
    let log = f.write("access.log", ACCESS_LOG.as_bytes());
    let report = |extra: &[&str]| {
        let out = ok(ota_sign()
            .args(["fleet", "report", "--access-log"])
            .arg(&log)
            .args(extra));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let text = report(&[]);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .take_while(|l| !l.starts_with("devices:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let expected: Vec<Vec<&str>> = vec![
        vec![
            "bucket", "(UTC)", "product", "release", "channel", "requests", "devices",
        ],
        vec![
            "2026-11-25T07:00:00Z",
            "acme\"router",
            "1.0.0",
            "beta",
            "1",
            "1",
        ],
        // One device on two connections, one behind another address.
        vec![
            "2026-11-25T07:00:00Z",
            "acme-router",
            "1.0.0",
            "stable",
            "3",
            "2",
        ],
        vec![
            "2026-11-25T07:00:00Z",
            "acme-router",
            "2.0.0",
            "stable",
            "1",
            "1",
        ],
        vec![
            "2026-11-25T08:00:00Z",
            "acme-router",
            "2.0.0",
            "stable",
            "1",
            "1",
        ],
    ];
    assert_eq!(rows, expected, "{text}");
    assert!(text.contains("lower bound"), "{text}");
    assert!(
        text.contains("10 lines: 6 from ota-update devices, 2 other requests, 2 not parsed"),
        "{text}"
    );
    assert!(text.contains("access.log:4)"), "{text}");

    let json: serde_json::Value =
        serde_json::from_str(&report(&["--json", "--bucket", "1d"])).expect("json");
    assert_eq!(json["bucket_secs"], 86_400);
    assert_eq!(
        (&json["lines"], &json["parsed"], &json["unparsed"]),
        (&10.into(), &8.into(), &2.into())
    );
    assert_eq!(json["unparsed_lines"][1]["line"], 10, "{json:#}");
    assert_eq!(json["device_requests"], 6);
    assert_eq!(json["other_requests"], 2);
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{json:#}");
    let stable_2 = &rows[2];
    assert_eq!(stable_2["bucket"], "2026-11-25T00:00:00Z");
    assert_eq!(stable_2["bucket_unix"], 1_795_564_800);
    assert_eq!(
        (&stable_2["release"], &stable_2["channel"]),
        (&"2.0.0".into(), &"stable".into())
    );
    // 10.0.0.2 and 10.0.0.1 ran 2.0.0 that day.
    assert_eq!(
        (&stable_2["requests"], &stable_2["devices"]),
        (&2.into(), &2.into())
    );
    assert_eq!(stable_2["bytes"], 4796);
    assert!(json["device_estimate"]
        .as_str()
        .expect("text")
        .contains("NAT"));

    // Several logs at once, one from standard input; a bad bucket is a usage error, a missing
    // log an I/O error.
    let out = ota_sign()
        .args(["fleet", "report", "--json", "--access-log", "-"])
        .arg(&log)
        .stdin(fs::File::open(&log).expect("log"))
        .output()
        .expect("run");
    let both: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(both["device_requests"], 12, "{both:#}");
    assert_eq!(both["rows"][1]["devices"], 2, "{both:#}");
    assert_eq!(both["rows"][1]["requests"], 6, "{both:#}");
    let code = fails(
        ota_sign()
            .args(["fleet", "report", "--bucket", "0s", "--access-log"])
            .arg(&log),
    );
    assert_eq!(code, i32::from(exit::USAGE));
    let missing = f.path("missing.log");
    let code = fails(
        ota_sign()
            .args(["fleet", "report", "--access-log"])
            .arg(&missing),
    );
    assert_eq!(code, i32::from(exit::IO));
}
