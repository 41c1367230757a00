//! Checks of the man pages and shell completions a program's build script generated
//! (build-support/cli_docs.rs writes them into the package's OUT_DIR, which its tests see as
//! `env!("OUT_DIR")`): the pages are exactly the expected ones, each renders with man-db's
//! `man -l` without a groff warning, and each completion script parses in its shell.

use crate::tool;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Checks the pages and completions of `bin` in `out_dir`; `pages` are the expected page names
/// without `.1` (the program, then one per visible subcommand). Returns each page as rendered
/// text, by name, for the caller's own checks.
pub fn check_cli_docs(out_dir: &Path, bin: &str, pages: &[&str]) -> BTreeMap<String, String> {
    let man_dir = out_dir.join("man");
    let mut found: Vec<String> = std::fs::read_dir(&man_dir)
        .unwrap_or_else(|e| panic!("no generated man pages in {}: {e}", man_dir.display()))
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    let mut expected: Vec<String> = pages.iter().map(|p| format!("{p}.1")).collect();
    expected.sort();
    assert_eq!(found, expected, "the generated man pages of {bin}");

    let man = tool("man", "man-db");
    let mut rendered = BTreeMap::new();
    for page in pages {
        let path = man_dir.join(format!("{page}.1"));
        let out = Command::new(&man)
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .expect("run man");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "man -l {}: {stderr}",
            path.display()
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page}: {text}"
        );
        rendered.insert((*page).to_owned(), text);
    }

    let completions = out_dir.join("completions");
    for (shell, package, file, check) in [
        ("bash", "bash", format!("{bin}.bash"), "-n"),
        ("zsh", "zsh", format!("_{bin}"), "-n"),
        ("fish", "fish", format!("{bin}.fish"), "--no-execute"),
    ] {
        let path = completions.join(&file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no {shell} completion {}: {e}", path.display()));
        assert!(
            text.contains(bin),
            "the {shell} completion does not name {bin}"
        );
        let out = Command::new(tool(shell, package))
            .arg(check)
            .arg(&path)
            .output()
            .expect("run the shell");
        assert!(
            out.status.success(),
            "{shell} {check} {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    rendered
}
