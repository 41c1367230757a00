//! Writes the man pages and shell completions of `ota-server` from its command line
//! (`src/cli.rs`) into OUT_DIR (build-support/cli_docs.rs; `scripts/cli-docs.sh` copies them
//! out for packaging).

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;
#[path = "../build-support/cli_docs.rs"]
mod cli_docs;

fn main() {
    use clap::CommandFactory;
    cli_docs::build_script(cli::Cli::command(), "ota-server");
}
