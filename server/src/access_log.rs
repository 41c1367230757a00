//! One line per request, in the spirit of the common log format, plus the time taken:
//! `127.0.0.1:40522 - - [25/Nov/2026:07:40:00 +0000] "GET /timestamp.json HTTP/1.1" 304 0 0.1ms`.

use std::io::{LineWriter, Write};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Where the lines go; `None` discards them.
pub struct AccessLog {
    out: Option<Mutex<LineWriter<Box<dyn Write + Send>>>>,
}

impl AccessLog {
    /// Lines written to `out`, each flushed when complete.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Some(Mutex::new(LineWriter::new(out))),
        }
    }

    /// No log.
    pub fn off() -> Self {
        Self { out: None }
    }

    /// Records one request.
    pub fn record(&self, entry: &Entry<'_>) {
        let Some(out) = &self.out else { return };
        let line = format!(
            "{} - - [{}] \"{} {} {}\" {} {} {:.1}ms\n",
            entry.peer,
            clf_date(SystemTime::now()),
            entry.method,
            entry.target,
            entry.version,
            entry.status,
            entry.bytes,
            entry.elapsed.as_secs_f64() * 1000.0
        );
        if let Ok(mut out) = out.lock() {
            // A full disk must not take the server down: the request was served anyway.
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
    /// Time to build the response head.
    pub elapsed: Duration,
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

    #[test]
    fn dates_in_common_log_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_592_400);
        assert_eq!(clf_date(t), "25/Nov/2026:07:40:00 +0000");
    }
}
