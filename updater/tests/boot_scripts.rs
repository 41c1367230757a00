//! The shipped GRUB boot script parses with GRUB's own checker (`grub-script-check`, Debian
//! grub-common). Its behaviour on a real GRUB is exercised by the QEMU scenarios; here we make
//! sure it is at least valid GRUB script, and that the checker would notice if it were not.

use std::path::Path;
use std::process::Command;

fn grub_script_check(path: &Path) -> bool {
    Command::new("grub-script-check")
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "grub-script-check is not available ({e}): install the Debian package grub-common"
            )
        })
        .status
        .success()
}

#[test]
fn shipped_grub_cfg_is_valid_grub_script() {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/grub.cfg");
    assert!(grub_script_check(&cfg), "{} does not parse", cfg.display());
    // Negative control: the same script with its last `fi` removed must fail the check.
    let text = std::fs::read_to_string(&cfg).expect("grub.cfg");
    let cut = text.rfind("fi\n").expect("grub.cfg has an if");
    let broken = format!("{}{}", &text[..cut], &text[cut + 3..]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.cfg");
    std::fs::write(&path, broken).expect("write");
    assert!(
        !grub_script_check(&path),
        "grub-script-check accepted a broken script"
    );
}
