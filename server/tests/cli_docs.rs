//! The man pages and bash/zsh/fish completions that build.rs generates from `ota-server`'s
//! command line (ota_test_support::cli_docs: each page renders without warnings, each
//! completion parses).

use ota_test_support::cli_docs::check_cli_docs;
use std::path::Path;

#[test]
fn man_pages_and_completions_of_ota_server() {
    let pages = check_cli_docs(
        Path::new(env!("OUT_DIR")),
        "ota-server",
        &["ota-server", "ota-server-serve"],
    );
    let serve = &pages["ota-server-serve"];
    for option in ["--repo", "--tls-cert", "--timestamp-key", "--min-send-rate"] {
        assert!(serve.contains(option), "{option} missing:\n{serve}");
    }
}
