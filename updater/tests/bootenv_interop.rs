//! Interoperability of the bootloader environment codecs with the reference tools:
//! `grub-editenv` (Debian grub-common), `fw_printenv`/`fw_setenv` (Debian libubootenv-tool) and
//! `mkenvimage` (Debian u-boot-tools).
//!
//! A missing tool fails the test with the package to install: passing without the oracle would
//! prove nothing, and CI installs them.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ota_test_support::tool;
use ota_updater::bootloader::grubenv::GrubEnv;
use ota_updater::bootloader::ubootenv::{UbootEnv, UbootEnvConfig};

// ---------------------------------------------------------------------------------------------
// Helpers

fn grub_editenv() -> PathBuf {
    tool("grub-editenv", "grub-common")
}

fn fw_printenv() -> PathBuf {
    tool("fw_printenv", "libubootenv-tool")
}

fn fw_setenv() -> PathBuf {
    tool("fw_setenv", "libubootenv-tool")
}

fn mkenvimage() -> PathBuf {
    tool("mkenvimage", "u-boot-tools")
}

/// Runs a tool, fails the test with its stderr unless it succeeds, returns its stdout.
fn run<I, S>(program: &Path, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tool output is UTF-8")
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// GRUB

/// What `grub-editenv FILE list` prints for these variables.
fn grub_listing(env: &GrubEnv) -> String {
    env.iter().map(|(n, v)| format!("{n}={v}\n")).collect()
}

fn grub_vars(env: &GrubEnv) -> Vec<(String, String)> {
    env.iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// Values that exercise grub-editenv's escaping: backslash, newline, `=` and non-ASCII.
const AWKWARD_GRUB_VARS: &[(&str, &str)] = &[
    ("saved_entry", "gnulinux-advanced"),
    ("boot_order", "A B"),
    ("path", r"C:\boot\\x\"),
    ("multi", "line1\nline2\n"),
    ("equation", "a=b=c"),
    ("empty", ""),
    ("unicode", "café"),
];

#[test]
fn grub_editenv_lists_what_we_wrote() {
    let grub = grub_editenv();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let mut env = GrubEnv::new();
    for (name, value) in AWKWARD_GRUB_VARS {
        env.set(name, value).unwrap();
    }
    env.write(&path).unwrap();

    let listed = run(&grub, [path.as_os_str(), OsStr::new("list")]);
    assert_eq!(listed, grub_listing(&env));
}

#[test]
fn we_read_what_grub_editenv_created_and_changed() {
    let grub = grub_editenv();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let editenv = |args: &[&str]| {
        let mut all = vec![path.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&grub, all)
    };
    editenv(&["create"]);
    assert_eq!(grub_vars(&GrubEnv::read(&path).unwrap()), []);

    editenv(&["set", "a=1", "b=2", "c=3"]);
    editenv(&["set", "b=20"]);
    editenv(&["unset", "a"]);
    editenv(&["set", r"d=x\y", "e=l1\nl2", "f=p=q"]);

    let env = GrubEnv::read(&path).unwrap();
    assert_eq!(
        grub_vars(&env),
        owned(&[
            ("b", "20"),
            ("c", "3"),
            ("d", r"x\y"),
            ("e", "l1\nl2"),
            ("f", "p=q")
        ])
    );
    assert_eq!(grub_listing(&env), editenv(&["list"]));
}

#[test]
fn our_bytes_equal_grub_editenv_bytes_for_the_same_commands() {
    let grub = grub_editenv();
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    let ours = dir.path().join("ours");
    run(&grub, [theirs.as_os_str(), OsStr::new("create")]);
    let mut env = GrubEnv::new();
    env.write(&ours).unwrap();
    assert_eq!(fs::read(&ours).unwrap(), fs::read(&theirs).unwrap());

    // (name, Some(value)) sets, (name, None) unsets; checked after every step.
    let steps: &[(&str, Option<&str>)] = &[
        ("b", Some("1")),
        ("a", Some("2")),
        ("c", Some("3")),
        ("b", Some("a longer value than before")),
        ("a", None),
        ("a", Some("back")),
        ("b", Some("short")),
        ("k", Some(r"back\slash")),
        ("nl", Some("line1\nline2")),
        ("c", None),
        ("boot_order", Some("B A")),
        ("nl", Some("")),
    ];
    for (index, (name, value)) in steps.iter().enumerate() {
        match value {
            Some(value) => {
                let assignment = format!("{name}={value}");
                run(
                    &grub,
                    [theirs.as_os_str(), "set".as_ref(), assignment.as_ref()],
                );
                env.set(name, value).unwrap();
            }
            None => {
                run(&grub, [theirs.as_os_str(), "unset".as_ref(), name.as_ref()]);
                env.unset(name);
            }
        }
        env.write(&ours).unwrap();
        assert_eq!(
            fs::read(&ours).unwrap(),
            fs::read(&theirs).unwrap(),
            "bytes differ after step {index}: {name} = {value:?}"
        );
    }
}

#[test]
fn grub_editenv_and_we_take_turns_on_one_file() {
    let grub = grub_editenv();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    run(&grub, [path.as_os_str(), OsStr::new("create")]);
    run(&grub, [path.to_str().unwrap(), "set", "x=1", "y=2"]);

    // Reading and writing back unchanged keeps grub-editenv's bytes.
    let before = fs::read(&path).unwrap();
    let mut env = GrubEnv::read(&path).unwrap();
    env.write(&path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), before);

    env.set("x", "10").unwrap();
    env.set("z", "3").unwrap();
    env.write(&path).unwrap();
    run(&grub, [path.to_str().unwrap(), "unset", "y"]);
    run(&grub, [path.to_str().unwrap(), "set", "w=4"]);

    let env = GrubEnv::read(&path).unwrap();
    assert_eq!(
        grub_vars(&env),
        owned(&[("x", "10"), ("z", "3"), ("w", "4")])
    );
    assert_eq!(
        grub_listing(&env),
        run(&grub, [path.as_os_str(), OsStr::new("list")])
    );
}

// ---------------------------------------------------------------------------------------------
// U-Boot

const SIZE: usize = 0x2000;

/// Writes the fw_env.config for `config` next to the environment and returns its path.
fn fw_config(dir: &Path, config: &UbootEnvConfig) -> PathBuf {
    let path = dir.join("fw_env.config");
    let text = config
        .to_fw_env_config()
        .expect("config has an fw_env.config form");
    fs::write(&path, text).expect("write fw_env.config");
    path
}

/// The variables as `fw_printenv -c CONFIG` prints them.
fn printenv(config_file: &Path) -> Vec<(String, String)> {
    run(&fw_printenv(), [OsStr::new("-c"), config_file.as_os_str()])
        .lines()
        .map(|line| {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("fw_printenv printed {line:?}, not name=value"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// `fw_setenv -c CONFIG name [value]` (no value deletes).
fn setenv(config_file: &Path, name: &str, value: Option<&str>) {
    let mut args = vec![OsStr::new("-c"), config_file.as_os_str(), OsStr::new(name)];
    args.extend(value.map(OsStr::new));
    run(&fw_setenv(), args);
}

fn uboot_vars(env: &UbootEnv) -> Vec<(String, String)> {
    env.iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn uboot_env(pairs: &[(&str, &str)]) -> UbootEnv {
    let mut env = UbootEnv::new();
    for (name, value) in pairs {
        env.set(name, value).expect("valid test variable");
    }
    env
}

/// Runs `mkenvimage -s SIZE [-r] [-p 0] -o OUT` on `name=value` lines and returns the image.
fn mkenvimage_image(
    dir: &Path,
    pairs: &[(&str, &str)],
    redundant: bool,
    zero_pad: bool,
) -> Vec<u8> {
    let vars = dir.join("vars.txt");
    let out = dir.join("mkenvimage.out");
    let text: String = pairs.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
    fs::write(&vars, text).expect("write mkenvimage input");
    let size = format!("{SIZE:#x}");
    let mut args = vec!["-s", size.as_str()];
    if redundant {
        args.push("-r");
    }
    if zero_pad {
        args.extend(["-p", "0"]);
    }
    let (out_arg, vars_arg) = (out.to_string_lossy(), vars.to_string_lossy());
    args.extend(["-o", &*out_arg, &*vars_arg]);
    run(&mkenvimage(), args);
    fs::read(&out).expect("read mkenvimage output")
}

/// Writes `bytes` at `offset` in `path` (creating it), leaving the rest of the file alone.
fn place(path: &Path, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open disk image");
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.write_all(bytes))
        .expect("write into disk image");
}

/// A 64 KiB "disk" filled with 0xaa holding the copies at non-zero offsets.
fn disk_with_redundant_env(dir: &Path) -> (PathBuf, UbootEnvConfig) {
    let disk = dir.join("disk.img");
    fs::write(&disk, vec![0xaau8; 0x10000]).expect("create disk image");
    let config = UbootEnvConfig::redundant((disk.clone(), 0x4000), (disk.clone(), 0x8000), SIZE);
    (disk, config)
}

fn flags_of_copies(disk: &Path, config: &UbootEnvConfig) -> Vec<u8> {
    let bytes = fs::read(disk).expect("read disk image");
    config
        .copies
        .iter()
        .map(|(_, offset)| bytes[*offset as usize + 4])
        .collect()
}

const BOOT_VARS: &[(&str, &str)] = &[
    ("bootcmd", "run distro_bootcmd; reset"),
    ("BOOT_ORDER", "A B"),
    ("BOOT_A_LEFT", "3"),
    ("BOOT_B_LEFT", "3"),
    ("upgrade_available", "0"),
    ("equation", "a=b"),
];

#[test]
fn fw_printenv_reads_our_single_env_at_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    fs::write(&disk, vec![0xaau8; 0x10000]).unwrap();
    let config = UbootEnvConfig::single(&disk, 0x6000, SIZE);
    let config_file = fw_config(dir.path(), &config);

    let mut env = uboot_env(BOOT_VARS);
    env.create(&config).unwrap();
    assert_eq!(printenv(&config_file), uboot_vars(&env));

    env.set("BOOT_A_LEFT", "2").unwrap();
    env.unset("equation");
    env.write(&config).unwrap();
    assert_eq!(printenv(&config_file), uboot_vars(&env));

    // Nothing outside the environment was touched.
    let bytes = fs::read(&disk).unwrap();
    assert_eq!(bytes.len(), 0x10000);
    assert!(bytes[..0x6000].iter().all(|&b| b == 0xaa));
    assert!(bytes[0x6000 + SIZE..].iter().all(|&b| b == 0xaa));
}

#[test]
fn fw_printenv_reads_our_redundant_env_after_each_write() {
    let dir = tempfile::tempdir().unwrap();
    // Two files, one copy each, so that both fw_env.config lines name different devices.
    let config = UbootEnvConfig::redundant(
        (dir.path().join("env-a.bin"), 0),
        (dir.path().join("env-b.bin"), 0x1000),
        SIZE,
    );
    let config_file = fw_config(dir.path(), &config);
    let mut env = uboot_env(BOOT_VARS);
    env.create(&config).unwrap();
    assert_eq!(printenv(&config_file), uboot_vars(&env));

    for round in 0..4 {
        env.set("BOOT_A_LEFT", &round.to_string()).unwrap();
        env.set(&format!("round{round}"), "done").unwrap();
        env.write(&config).unwrap();
        assert_eq!(printenv(&config_file), uboot_vars(&env), "round {round}");
    }
}

#[test]
fn we_read_mkenvimage_then_fw_setenv_single() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("env.bin");
    // mkenvimage keeps the file's order; we report the variables sorted, as fw_printenv does.
    fs::write(&disk, mkenvimage_image(dir.path(), BOOT_VARS, false, false)).unwrap();
    let config = UbootEnvConfig::single(&disk, 0, SIZE);
    let config_file = fw_config(dir.path(), &config);

    let env = UbootEnv::read(&config).unwrap();
    let mut expected = owned(BOOT_VARS);
    expected.sort();
    assert_eq!(uboot_vars(&env), expected);
    assert_eq!(printenv(&config_file), expected);

    setenv(&config_file, "BOOT_ORDER", Some("B A"));
    setenv(&config_file, "equation", None);
    setenv(&config_file, "new_var", Some("with spaces"));
    let env = UbootEnv::read(&config).unwrap();
    assert_eq!(env.get("BOOT_ORDER"), Some("B A"));
    assert_eq!(env.get("equation"), None);
    assert_eq!(uboot_vars(&env), printenv(&config_file));
}

#[test]
fn we_follow_fw_setenv_across_redundant_copies() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, config) = disk_with_redundant_env(dir.path());
    // mkenvimage -r writes one copy (flags 1); the second slot holds 0xaa garbage, so invalid.
    let image = mkenvimage_image(dir.path(), BOOT_VARS, true, false);
    place(&disk, config.copies[0].1, &image);
    let config_file = fw_config(dir.path(), &config);
    assert_eq!(
        uboot_vars(&UbootEnv::read(&config).unwrap()),
        printenv(&config_file)
    );

    for round in 1..=5u8 {
        setenv(&config_file, "BOOT_A_LEFT", Some(&round.to_string()));
        // fw_setenv alternates copies: 1, 0, 1, ... with flags 2, 3, 4, ...
        let flags = flags_of_copies(&disk, &config);
        let written = usize::from(round % 2 == 1);
        assert_eq!(flags[written], round + 1, "round {round}: flags {flags:?}");

        let env = UbootEnv::read(&config).unwrap();
        assert_eq!(env.get("BOOT_A_LEFT"), Some(round.to_string().as_str()));
        assert_eq!(uboot_vars(&env), printenv(&config_file), "round {round}");
    }
}

#[test]
fn fw_setenv_keeps_working_after_our_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, config) = disk_with_redundant_env(dir.path());
    place(
        &disk,
        config.copies[0].1,
        &mkenvimage_image(dir.path(), BOOT_VARS, true, false),
    );
    let config_file = fw_config(dir.path(), &config);

    // mkenvimage's copy (flags 1) is active; we write the other one with flags 2.
    let mut env = UbootEnv::read(&config).unwrap();
    env.set("BOOT_ORDER", "B A").unwrap();
    env.write(&config).unwrap();
    assert_eq!(flags_of_copies(&disk, &config), [1, 2]);
    assert_eq!(printenv(&config_file), uboot_vars(&env));

    // fw_setenv sees our copy as active and writes the first one with flags 3.
    setenv(&config_file, "BOOT_B_LEFT", Some("1"));
    assert_eq!(flags_of_copies(&disk, &config), [3, 2]);
    let mut env = UbootEnv::read(&config).unwrap();
    assert_eq!(env.get("BOOT_ORDER"), Some("B A"));
    assert_eq!(env.get("BOOT_B_LEFT"), Some("1"));

    env.set("upgrade_available", "1").unwrap();
    env.write(&config).unwrap();
    assert_eq!(flags_of_copies(&disk, &config), [3, 4]);
    assert_eq!(printenv(&config_file), uboot_vars(&env));
}

#[test]
fn fw_setenv_keeps_working_after_our_single_write() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("env.bin");
    let config = UbootEnvConfig::single(&disk, 0x1000, SIZE);
    let config_file = fw_config(dir.path(), &config);
    uboot_env(BOOT_VARS).create(&config).unwrap();

    setenv(&config_file, "BOOT_ORDER", Some("B A"));
    let mut env = UbootEnv::read(&config).unwrap();
    assert_eq!(env.get("BOOT_ORDER"), Some("B A"));
    env.set("BOOT_B_LEFT", "2").unwrap();
    env.write(&config).unwrap();
    setenv(&config_file, "bootcount", Some("1"));

    let env = UbootEnv::read(&config).unwrap();
    assert_eq!(env.get("BOOT_B_LEFT"), Some("2"));
    assert_eq!(env.get("bootcount"), Some("1"));
    assert_eq!(uboot_vars(&env), printenv(&config_file));
}

#[test]
fn create_matches_mkenvimage_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Sorted input, because we always write sorted and mkenvimage keeps the input order; -p 0
    // because we pad with zeros like U-Boot's saveenv.
    let mut sorted = BOOT_VARS.to_vec();
    sorted.sort();
    let env = uboot_env(&sorted);

    let single = UbootEnvConfig::single(dir.path().join("single.bin"), 0, SIZE);
    env.create(&single).unwrap();
    assert_eq!(
        fs::read(&single.copies[0].0).unwrap(),
        mkenvimage_image(dir.path(), &sorted, false, true)
    );

    let redundant = UbootEnvConfig::redundant(
        (dir.path().join("redundant.bin"), 0),
        (dir.path().join("redundant.bin"), SIZE as u64),
        SIZE,
    );
    env.create(&redundant).unwrap();
    let bytes = fs::read(&redundant.copies[0].0).unwrap();
    let image = mkenvimage_image(dir.path(), &sorted, true, true);
    assert_eq!(bytes[..SIZE], image[..]);
    // The second copy holds the same data with flags 0, so the first stays active.
    assert_eq!(bytes[SIZE + 4], 0);
    assert_eq!(bytes[SIZE + 5..], image[5..]);
}

#[test]
fn corrupt_active_copy_falls_back_to_the_other_like_fw_printenv() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, config) = disk_with_redundant_env(dir.path());
    let config_file = fw_config(dir.path(), &config);
    let old = uboot_env(BOOT_VARS);
    old.create(&config).unwrap();
    let mut new = old.clone();
    new.set("BOOT_ORDER", "B A").unwrap();
    new.write(&config).unwrap();
    assert_eq!(printenv(&config_file), uboot_vars(&new));

    // Flip a byte in the data of the active (second) copy.
    let mut bytes = fs::read(&disk).unwrap();
    bytes[config.copies[1].1 as usize + 20] ^= 0x01;
    fs::write(&disk, &bytes).unwrap();

    assert_eq!(UbootEnv::read(&config).unwrap(), old);
    assert_eq!(printenv(&config_file), uboot_vars(&old));
}

#[test]
fn flags_wraparound_agrees_with_fw_printenv() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, config) = disk_with_redundant_env(dir.path());
    let config_file = fw_config(dir.path(), &config);
    uboot_env(&[("v", "old")]).create(&config).unwrap();
    // Age the copies to the end of the counter, the first one active (255 > 254); the flags
    // byte is not covered by the CRC.
    let mut bytes = fs::read(&disk).unwrap();
    bytes[config.copies[0].1 as usize + 4] = 255;
    bytes[config.copies[1].1 as usize + 4] = 254;
    fs::write(&disk, &bytes).unwrap();
    assert_eq!(printenv(&config_file), [("v".to_owned(), "old".to_owned())]);

    let new = uboot_env(&[("v", "new")]);
    new.write(&config).unwrap();
    assert_eq!(flags_of_copies(&disk, &config), [255, 0]);
    assert_eq!(printenv(&config_file), uboot_vars(&new));

    // fw_setenv agrees that the copy with flags 0 is the newer one and writes the first copy.
    setenv(&config_file, "v", Some("newer"));
    assert_eq!(flags_of_copies(&disk, &config), [1, 0]);
    assert_eq!(UbootEnv::read(&config).unwrap().get("v"), Some("newer"));
}
