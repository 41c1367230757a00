//! Man pages and shell completions from a program's clap command line, written by the build
//! scripts of ota-update, ota-sign and ota-server (`#[path]`-included there) into
//! `OUT_DIR/man` (one page per command and subcommand, clap_mangen) and `OUT_DIR/completions`
//! (bash, zsh, fish; clap_complete). `scripts/cli-docs.sh` copies them out for packaging.

use std::path::{Path, PathBuf};

/// Stand-ins for library types a `cli.rs` names, shared by the build scripts: the pages need
/// only the help texts, never a parsed value.
#[allow(dead_code)]
pub mod stand_ins {
    /// `ota_core::progress::ProgressMode`, for `--progress`.
    #[derive(Clone, Debug)]
    pub struct ProgressMode;
    impl ProgressMode {
        pub fn parse(_: &str) -> Result<Self, String> {
            Ok(ProgressMode)
        }
    }
}

/// A build script's whole job for the pages: [`write`] into OUT_DIR (a failure stops the
/// build, saying where), and rerun when the command line or this file changes.
pub fn build_script(command: clap::Command, bin: &str) {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(e) = write(command, bin, &out_dir) {
        panic!(
            "cannot write the man pages and completions to {}: {e}",
            out_dir.display()
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=../build-support/cli_docs.rs");
}

/// Writes the pages and completions of `command`, whose program is called `bin`.
pub fn write(mut command: clap::Command, bin: &str, out_dir: &Path) -> std::io::Result<()> {
    let man = out_dir.join("man");
    let completions = out_dir.join("completions");
    // Pages of commands that no longer exist must not survive a rebuild.
    for dir in [&man, &completions] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
    }
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    command = command.bin_name(bin.to_owned());
    // Pages for the visible commands only, without clap's `help` subcommands.
    clap_mangen::generate_to(command.clone(), &man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut command, bin, &completions)?;
    }
    Ok(())
}
