//! The man pages and bash/zsh/fish completions that build.rs generates from `ota-update`'s
//! command line: one page per visible command, each rendered by man-db without warnings, the
//! completions parsed by their shells (ota_test_support::cli_docs), and the values the build
//! script stands in for are the library's.

use ota_test_support::cli_docs::check_cli_docs;
use std::path::Path;

const PAGES: &[&str] = &[
    "ota-update",
    "ota-update-install",
    "ota-update-check",
    "ota-update-daemon",
    "ota-update-tuf",
    "ota-update-tuf-init",
    "ota-update-tuf-refresh",
    "ota-update-tuf-download",
    "ota-update-status",
    "ota-update-boot",
    "ota-update-commit",
    "ota-update-rollback",
    "ota-update-hold",
    "ota-update-release-hold",
    "ota-update-init-bootloader",
];

#[test]
fn man_pages_and_completions_of_ota_update() {
    let pages = check_cli_docs(Path::new(env!("OUT_DIR")), "ota-update", PAGES);
    let main = &pages["ota-update"];
    // build.rs stands in for the library's default configuration path: the same one.
    assert!(
        main.contains(ota_updater::config::DEFAULT_CONFIG_PATH),
        "{main}"
    );
    let install = &pages["ota-update-install"];
    for option in ["--allow-downgrade", "--reboot", "--progress", "SOURCE"] {
        assert!(install.contains(option), "{option} missing:\n{install}");
    }
}

#[test]
fn the_check_fails_on_a_page_man_warns_about_and_on_a_broken_completion() {
    let dir = tempfile::tempdir().unwrap();
    let (man, completions) = (dir.path().join("man"), dir.path().join("completions"));
    std::fs::create_dir_all(&man).unwrap();
    std::fs::create_dir_all(&completions).unwrap();
    let good_page = ".TH X 1\n.SH NAME\nx \\- a tool\n.SH SYNOPSIS\nx\n";
    let completions_ok = [
        ("x.bash", "complete -F _x x\n_x() { :; }\n"),
        ("_x", "#compdef x\n_x() { : }\n"),
        ("x.fish", "complete -c x -l help\n"),
    ];
    let write = |page: &str, bash: &str| {
        std::fs::write(man.join("x.1"), page).unwrap();
        for (file, text) in completions_ok {
            std::fs::write(completions.join(file), text).unwrap();
        }
        std::fs::write(completions.join("x.bash"), bash).unwrap();
    };
    let checks = |page: &str, bash: &str| {
        write(page, bash);
        let path = dir.path().to_owned();
        std::panic::catch_unwind(move || check_cli_docs(&path, "x", &["x"])).is_ok()
    };
    assert!(
        checks(good_page, completions_ok[0].1),
        "the control must pass"
    );
    assert!(!checks(
        &format!("{good_page}.BOGUSMACRO\n"),
        completions_ok[0].1
    ));
    assert!(!checks(good_page, "_x() { if; }\ncomplete -F _x x\n"));
}
