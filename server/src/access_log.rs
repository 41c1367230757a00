//! One line per request, in the spirit of the common log format, plus the time taken:
//! `127.0.0.1:40522 - - [25/Nov/2026:07:40:00 +0000] "GET /timestamp.json HTTP/1.1" 304 0 0.1ms`.
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
        let line = format!(
            "{} - - [{}] \"{} {} {}\" {} {} {:.1}ms\n",
            entry.peer,
            now_for_log(),
            entry.method,
            entry.target,
            entry.version,
            entry.status,
            entry.bytes,
            entry.elapsed.as_secs_f64() * 1000.0
        );
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
    /// Time to build the response head.
    pub elapsed: Duration,
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

    #[test]
    fn dates_in_common_log_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_592_400);
        assert_eq!(clf_date(t), "25/Nov/2026:07:40:00 +0000");
    }
}
