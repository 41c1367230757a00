//! One line per request in nginx's *combined* format, plus the time taken:
//! `127.0.0.1:40522 - - [25/Nov/2026:07:40:00 +0000] "GET /timestamp.json HTTP/1.1" 304 0 "-"
//! "ota-update/0.1.0 (acme-router; 1.0.0; stable)" 0.1ms` (one line). The client address keeps its
//! port, the referer is always `-`, a missing `User-Agent` is `-`. Tools that read combined logs
//! (and `ota-sign fleet report`) ignore the trailing time. The request target and the user agent
//! are escaped as nginx escapes them: `"`, `\` and bytes below 0x20 or above 0x7e become `\xHH`,
//! so a client cannot forge fields or lines.
//!
//! Lines go into a shared 64 KiB buffer that a background thread flushes every 200 ms (and
//! that flushes itself when full), as nginx's `access_log ... buffer= flush=` does: a `write`
//! per request cost 13 % of the request rate, and handing each line to a writer thread cost
//! more than that (bench/server.sh).

use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

type Sink = Mutex<BufWriter<Box<dyn Write + Send>>>;

/// Where the lines go; `None` discards them.
pub struct AccessLog {
    out: Option<Arc<Sink>>,
}

impl AccessLog {
    /// Lines written to `out`, at most 200 ms after they were recorded.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        let sink: Arc<Sink> = Arc::new(Mutex::new(BufWriter::with_capacity(64 * 1024, out)));
        let weak = Arc::downgrade(&sink);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let Some(sink) = weak.upgrade() else { break };
            // A full disk must not take the server down: the requests were served anyway.
            let flushed = sink.lock().map(|mut out| out.flush().is_ok());
            drop(flushed);
        });
        Self { out: Some(sink) }
    }

    /// Writes out every line recorded so far (at shutdown).
    pub fn flush(&self) {
        if let Some(out) = &self.out {
            if let Ok(mut out) = out.lock() {
                let _ = out.flush();
            }
        }
    }

    /// No log.
    pub fn off() -> Self {
        Self { out: None }
    }

    /// Records one request.
    pub fn record(&self, entry: &Entry<'_>) {
        let Some(out) = &self.out else { return };
        let line = format_line(entry, &now_for_log());
        if let Ok(mut out) = out.lock() {
            let _ = out.write_all(line.as_bytes());
        }
    }
}

/// One request, as logged.
pub struct Entry<'a> {
    /// Client address.
    pub peer: SocketAddr,
    /// Method.
    pub method: &'a str,
    /// Request target as received (path and query).
    pub target: &'a str,
    /// `HTTP/1.1` etc.
    pub version: &'a str,
    /// Status code sent.
    pub status: u16,
    /// Body bytes announced.
    pub bytes: u64,
    /// The `User-Agent` header's bytes, if sent.
    pub user_agent: Option<&'a [u8]>,
    /// Time to build the response head.
    pub elapsed: Duration,
}

/// One log line (with its newline) for `entry` at `time` (already in log format).
fn format_line(entry: &Entry<'_>, time: &str) -> String {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(160 + entry.target.len());
    let _ = write!(line, "{} - - [{time}] \"{} ", entry.peer, entry.method);
    escape_into(&mut line, entry.target.as_bytes());
    let _ = write!(
        line,
        " {}\" {} {} \"-\" \"",
        entry.version, entry.status, entry.bytes
    );
    match entry.user_agent {
        Some(agent) => escape_into(&mut line, agent),
        None => line.push('-'),
    }
    let _ = writeln!(line, "\" {:.1}ms", entry.elapsed.as_secs_f64() * 1000.0);
    line
}

/// Appends `bytes` with `"`, `\` and bytes outside 0x20..=0x7e as `\xHH` (nginx's
/// `escape=default`).
fn escape_into(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\' {
            out.push(char::from(b));
        } else {
            out.push_str("\\x");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// The current time for a log line, formatted once per second per thread.
fn now_for_log() -> String {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, clf_date(now));
        }
        c.1.clone()
    })
}

/// `25/Nov/2026:07:40:00 +0000`, from the RFC 7231 date httpdate gives.
fn clf_date(t: SystemTime) -> String {
    // "Wed, 25 Nov 2026 07:40:00 GMT"
    let http = httpdate::fmt_http_date(t);
    let parts: Vec<&str> = http.split(' ').collect();
    match parts.as_slice() {
        [_, day, month, year, time, _] => format!("{day}/{month}/{year}:{time} +0000"),
        _ => http,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(target: &'a str, user_agent: Option<&'a [u8]>) -> Entry<'a> {
        Entry {
            peer: SocketAddr::from(([127, 0, 0, 1], 40522)),
            method: "GET",
            target,
            version: "HTTP/1.1",
            status: 304,
            bytes: 0,
            user_agent,
            elapsed: Duration::from_micros(120),
        }
    }

    #[test]
    fn lines_in_combined_format_with_the_time_taken() {
        let ua = b"ota-update/0.1.0 (acme-router; 1.0.0; stable)";
        assert_eq!(
            format_line(
                &entry("/timestamp.json", Some(ua)),
                "25/Nov/2026:07:40:00 +0000"
            ),
            "127.0.0.1:40522 - - [25/Nov/2026:07:40:00 +0000] \"GET /timestamp.json HTTP/1.1\" \
             304 0 \"-\" \"ota-update/0.1.0 (acme-router; 1.0.0; stable)\" 0.1ms\n"
        );
        assert!(format_line(&entry("/", None), "t").ends_with(" 304 0 \"-\" \"-\" 0.1ms\n"));
    }

    #[test]
    fn quotes_backslashes_and_control_bytes_are_escaped_as_nginx_does() {
        let line = format_line(
            &entry("/a\"b\\c", Some(b"x\" 200 1 \"-\" \"forged\n\t\xff")),
            "t",
        );
        assert!(line.contains("\"GET /a\\x22b\\x5Cc HTTP/1.1\""), "{line}");
        assert!(
            line.contains("\"x\\x22 200 1 \\x22-\\x22 \\x22forged\\x0A\\x09\\xFF\""),
            "{line}"
        );
        assert_eq!(line.matches('"').count(), 6, "{line}");
        assert_eq!(line.matches('\n').count(), 1, "{line}");
    }

    #[test]
    fn dates_in_common_log_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_592_400);
        assert_eq!(clf_date(t), "25/Nov/2026:07:40:00 +0000");
    }
}
