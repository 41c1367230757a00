//! Progress for logs, shared by the command-line tools: where a terminal gets a progress bar
//! (drawn by the binaries), a CI log or a supervising program gets one line per 10 % on
//! standard error, as text (`bundling: 40 % (123 of 308 MiB, 12.3 s)`) or as JSON
//! (`{"event":"progress","what":"bundling","percent":40,"done":...,"total":...}`); and the one
//! JSON log line the long-running programs (`ota-update daemon --json`, `ota-server serve
//! --json`) write per event: [`json_log_line`].

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What `--progress` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar on a terminal; plain lines in CI (`CI` set, as GitLab and GitHub Actions do);
    /// nothing otherwise.
    #[default]
    Auto,
    /// A bar (when standard error is a terminal).
    Bar,
    /// Text lines.
    Plain,
    /// JSON lines.
    Json,
    /// Nothing.
    None,
}

impl ProgressMode {
    /// Parses `auto`, `plain`, `json` or `none`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "plain" => Ok(Self::Plain),
            "json" => Ok(Self::Json),
            "none" => Ok(Self::None),
            other => Err(format!(
                "--progress {other:?}: use auto, plain, json or none"
            )),
        }
    }

    /// What `Auto` means here and now.
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto if std::io::stderr().is_terminal() => Self::Bar,
            Self::Auto if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => Self::Plain,
            Self::Auto => Self::None,
            other => other,
        }
    }
}

/// Progress as lines: one each time another 10 % is done, and one at the end.
pub struct ProgressLines {
    what: &'static str,
    total: u64,
    json: bool,
    done: AtomicU64,
    /// The next percentage that prints a line (10, 20, ... 100).
    next: Mutex<u64>,
    started: Instant,
}

impl ProgressLines {
    /// Lines for `total` units of `what`, as JSON when `json`.
    pub fn new(what: &'static str, total: u64, json: bool) -> Self {
        Self {
            what,
            total,
            json,
            done: AtomicU64::new(0),
            next: Mutex::new(10),
            started: Instant::now(),
        }
    }

    /// `n` more units done (callable from several threads).
    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let percent = (done.min(self.total) * 100)
            .checked_div(self.total)
            .unwrap_or(100);
        let Ok(mut next) = self.next.lock() else {
            return;
        };
        if percent >= *next && *next <= 100 {
            *next = percent / 10 * 10 + 10;
            self.print(percent, done);
        }
    }

    /// The end: prints 100 % unless it was printed.
    pub fn finish(&self) {
        let Ok(mut next) = self.next.lock() else {
            return;
        };
        if *next <= 100 {
            *next = 110;
            self.print(100, self.done.load(Ordering::Relaxed));
        }
    }

    fn print(&self, percent: u64, done: u64) {
        let secs = self.started.elapsed().as_secs_f64();
        if self.json {
            let line = serde_json::json!({
                "event": "progress", "what": self.what, "percent": percent,
                "done": done, "total": self.total, "seconds": (secs * 10.0).round() / 10.0
            });
            eprintln!("{line}");
        } else {
            eprintln!(
                "{}: {percent:>3} % ({} of {} MiB, {secs:.1} s)",
                self.what,
                done >> 20,
                self.total >> 20
            );
        }
    }
}

/// A JSON log line `{"time", "event", "message", ...fields}` (time in RFC 3339 UTC seconds;
/// `fields`, an object, adds its members), as the daemon and the server write them.
pub fn json_log_line(event: &str, message: &str, fields: serde_json::Value) -> String {
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut line = serde_json::json!({"time": time, "event": event, "message": message});
    if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), fields) {
        line.extend(extra);
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_resolve() {
        assert_eq!(ProgressMode::parse("plain"), Ok(ProgressMode::Plain));
        assert!(ProgressMode::parse("bar").is_err());
        assert_eq!(ProgressMode::Json.resolve(), ProgressMode::Json);
    }

    #[test]
    fn lines_count_from_many_threads() {
        let lines = ProgressLines::new("test", 1000, false);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..250).for_each(|_| lines.inc(1)));
            }
        });
        lines.finish();
        assert_eq!(lines.done.load(Ordering::Relaxed), 1000);
        assert_eq!(*lines.next.lock().unwrap(), 110);
    }

    #[test]
    fn json_log_line_has_time_event_message_and_the_fields() {
        let line = json_log_line("round", "no update", serde_json::json!({"round": 3}));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "round");
        assert_eq!(value["message"], "no update");
        assert_eq!(value["round"], 3);
        assert!(value["time"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(!line.contains('\n'));
    }
}
