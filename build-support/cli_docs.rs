//! Man pages and shell completions from a program's clap command line, written by the build
//! scripts of ota-update, ota-sign and ota-server (`#[path]`-included there) into
//! `OUT_DIR/man` (one page per command and subcommand, clap_mangen) and `OUT_DIR/completions`
//! (bash, zsh, fish; clap_complete). `scripts/cli-docs.sh` copies them out for packaging.

use std::path::Path;

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
