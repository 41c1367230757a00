//! Downloads over HTTP(S) as a `Read` stream the installer consumes directly: nothing is
//! stored before it is verified, and the device never holds a whole bundle.
//!
//! Defences against a hostile or broken server or network (TUF's endless-data and
//! slow-retrieval attacks): a hard cap on the bytes read (the length the metadata promises),
//! a minimum-speed guard over a sliding window, a total deadline derived from the length and
//! that speed, and connect timeouts. A dropped connection is resumed with `Range` from the
//! byte already delivered (and verified by the reader downstream), guarded by `If-Range` so a
//! file replaced in between is not spliced: a resume answered with the whole (new) file fails
//! the download ([`FetchError::Replaced`]) instead of appending its tail to the old prefix,
//! and [`Fetcher::get_bytes`] then starts again from byte 0.

use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use reqwest::StatusCode;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Network settings (`[repository]` in the configuration).
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Extra trusted CA certificates (PEM) for a private PKI. When given, the built-in web
    /// roots are not trusted: the device talks to its vendor's servers only.
    pub ca_file: Option<PathBuf>,
    /// Time to establish a connection (TCP + TLS).
    pub connect_timeout: Duration,
    /// A transfer slower than this many bytes per second over [`Self::min_speed_window`] is
    /// abandoned (slow retrieval).
    pub min_bytes_per_sec: u64,
    /// The window over which the minimum speed is measured.
    pub min_speed_window: Duration,
    /// Times a dropped transfer is resumed before giving up.
    pub resume_attempts: u32,
    /// The `User-Agent` header: `ota-update/VERSION` plus, for a device, `(PRODUCT; RELEASE;
    /// CHANNEL)` so access logs can count the fleet without any device id.
    pub user_agent: String,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            ca_file: None,
            connect_timeout: Duration::from_secs(15),
            min_bytes_per_sec: 1024,
            min_speed_window: Duration::from_secs(30),
            resume_attempts: 5,
            user_agent: concat!("ota-update/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The HTTP client could not be built (bad CA file...).
    #[error("cannot set up HTTPS: {0}")]
    Setup(String),
    /// Connection, TLS or protocol failure.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url}: the server answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// More data than allowed: an endless-data attack or the wrong file.
    #[error("{url}: the server sends more than the {limit} bytes expected (endless data?)")]
    TooLong {
        /// The URL.
        url: String,
        /// The allowed length.
        limit: u64,
    },
    /// The bytes do not match the length or hash the signed metadata lists.
    #[error("{url}: {detail}; the download was discarded")]
    Unverified {
        /// The URL.
        url: String,
        /// What differed.
        detail: String,
    },
    /// The file changed on the server while it was being downloaded: a resume was answered
    /// with the whole new file (`If-Range` did not hold). Its bytes are not appended to the
    /// old ones; the download must start again from byte 0.
    #[error("{url}: the file changed on the server during the download (after {delivered} bytes); start again")]
    Replaced {
        /// The URL.
        url: String,
        /// Bytes of the old file already delivered.
        delivered: u64,
    },
    /// Below the minimum speed: a slow-retrieval attack or a dying link.
    #[error(
        "{url}: slower than {min} bytes/s over {window_secs} s (slow retrieval?); try again later"
    )]
    TooSlow {
        /// The URL.
        url: String,
        /// Minimum bytes per second.
        min: u64,
        /// Window in seconds.
        window_secs: u64,
    },
}

/// The answer to a conditional metadata request.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the copy the client holds is current.
    NotModified,
    /// The body, with the entity tag to send next time.
    Body {
        /// The bytes (at most the limit).
        bytes: Vec<u8>,
        /// The response's strong ETag, if any.
        etag: Option<String>,
    },
}

impl From<FetchError> for io::Error {
    fn from(e: FetchError) -> Self {
        io::Error::other(e)
    }
}

/// An HTTP(S) client with the device's trust and timeouts.
pub struct Fetcher {
    client: Client,
    settings: FetchSettings,
}

impl Fetcher {
    /// A client for `settings`.
    pub fn new(settings: FetchSettings) -> Result<Self, FetchError> {
        let mut builder = Client::builder()
            .use_rustls_tls()
            .connect_timeout(settings.connect_timeout)
            // The per-request deadline is set from the expected length (see `open`).
            .timeout(None::<Duration>)
            .user_agent(settings.user_agent.as_str());
        if let Some(ca) = &settings.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| FetchError::Setup(format!("CA file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| FetchError::Setup(format!("CA file {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(FetchError::Setup(format!(
                    "CA file {}: no PEM certificate in it",
                    ca.display()
                )));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| FetchError::Setup(e.to_string()))?;
        Ok(Self { client, settings })
    }

    /// Starts downloading `url`, allowing at most `limit` bytes. With `exact`, the body must
    /// be exactly `limit` bytes long (TUF metadata gave the length).
    pub fn open(&self, url: &str, limit: u64, exact: bool) -> Result<Download, FetchError> {
        self.open_from(url, limit, exact, None)
    }

    /// [`Fetcher::open`], asking first for the `head` bytes only (a resumed install needs the
    /// bundle's head, then skips to where it stopped): the rest is requested when it is read
    /// or skipped to, so the bytes in between never cross the network.
    pub fn open_head(
        &self,
        url: &str,
        limit: u64,
        exact: bool,
        head: u64,
    ) -> Result<Download, FetchError> {
        self.open_from(url, limit, exact, Some(head).filter(|h| *h > 0))
    }

    fn open_from(
        &self,
        url: &str,
        limit: u64,
        exact: bool,
        head: Option<u64>,
    ) -> Result<Download, FetchError> {
        let mut download = Download {
            client: self.client.clone(),
            settings: self.settings.clone(),
            url: url.to_owned(),
            limit,
            exact,
            delivered: 0,
            validator: None,
            response: None,
            window_start: Instant::now(),
            window_bytes: 0,
            resumes_left: self.settings.resume_attempts,
            range_end: head,
            reopen: false,
        };
        download.request(0)?;
        Ok(download)
    }

    /// Downloads small metadata into memory, capped by `limit`; with `etag`, asks with
    /// `If-None-Match` so an unchanged file costs one 304 and no body.
    pub fn get_conditional(
        &self,
        url: &str,
        limit: u64,
        etag: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        let transport = |reason: String| FetchError::Transport {
            url: url.to_owned(),
            reason,
        };
        let mut req = self
            .client
            .get(url)
            .timeout(deadline_for(&self.settings, limit));
        if let Some(tag) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        let resp = req.send().map_err(|e| transport(error_chain(&e)))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok(Fetched::NotModified);
        }
        if status != StatusCode::OK {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status,
            });
        }
        if resp.content_length().is_some_and(|l| l > limit) {
            return Err(FetchError::TooLong {
                url: url.to_owned(),
                limit,
            });
        }
        let etag = resp
            .headers()
            .get(ETAG)
            .filter(|v| v.as_bytes().starts_with(b"\""))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        resp.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| {
                let timed_out = e.kind() == io::ErrorKind::TimedOut
                    || e.get_ref()
                        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                        .is_some_and(reqwest::Error::is_timeout);
                if timed_out {
                    FetchError::TooSlow {
                        url: url.to_owned(),
                        min: self.settings.min_bytes_per_sec,
                        window_secs: self.settings.min_speed_window.as_secs(),
                    }
                } else {
                    transport(e.to_string())
                }
            })?;
        if bytes.len() as u64 > limit {
            return Err(FetchError::TooLong {
                url: url.to_owned(),
                limit,
            });
        }
        Ok(Fetched::Body { bytes, etag })
    }

    /// Downloads `url` whole into memory (metadata: small, capped by `limit`). A file replaced
    /// on the server mid-download is downloaded again from byte 0 (once).
    pub fn get_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let mut again = true;
        loop {
            let mut d = self.open(url, limit, false)?;
            let mut out = Vec::new();
            match d.read_to_end(&mut out).map_err(|e| unwrap_io(url, e)) {
                Ok(_) => return Ok(out),
                Err(FetchError::Replaced { .. }) if again => again = false,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Time allowed for `len` bytes at the minimum speed, plus slack for the first byte.
fn deadline_for(settings: &FetchSettings, len: u64) -> Duration {
    let secs = len / settings.min_bytes_per_sec.max(1);
    settings.min_speed_window + settings.connect_timeout + Duration::from_secs(secs.min(1 << 32))
}

/// Turns an I/O error from a [`Download`] back into the [`FetchError`] it carries.
pub fn unwrap_io(url: &str, e: io::Error) -> FetchError {
    match e.downcast::<FetchError>() {
        Ok(fetch) => fetch,
        Err(e) => FetchError::Transport {
            url: url.to_owned(),
            reason: e.to_string(),
        },
    }
}

/// A download in progress: a `Read` that resumes and guards.
pub struct Download {
    client: Client,
    settings: FetchSettings,
    url: String,
    limit: u64,
    exact: bool,
    delivered: u64,
    /// ETag or Last-Modified of the first response, for If-Range on resume.
    validator: Option<String>,
    response: Option<Response>,
    window_start: Instant,
    window_bytes: u64,
    resumes_left: u32,
    /// End (exclusive) of the range the current response covers, when it is not the rest of
    /// the file.
    range_end: Option<u64>,
    /// The next read requests the rest of the file from `delivered` (after a skip or the end
    /// of a bounded range).
    reopen: bool,
}

impl Download {
    /// Bytes delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    fn transport(&self, reason: impl ToString) -> FetchError {
        FetchError::Transport {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    /// (Re)requests the body from byte `from`.
    fn request(&mut self, from: u64) -> Result<(), FetchError> {
        let remaining = self.limit.saturating_sub(from);
        let mut req = self
            .client
            .get(&self.url)
            .timeout(deadline_for(&self.settings, remaining));
        match self.range_end {
            Some(end) => req = req.header(RANGE, format!("bytes={from}-{}", end - 1)),
            None if from > 0 => req = req.header(RANGE, format!("bytes={from}-")),
            None => {}
        }
        if let Some(v) = self.validator.as_ref().filter(|_| from > 0) {
            req = req.header(IF_RANGE, v.as_str());
        }
        let resp = req.send().map_err(|e| self.transport(error_chain(&e)))?;
        let status = resp.status();
        if status == StatusCode::RANGE_NOT_SATISFIABLE && from > 0 && self.range_end.is_none() {
            // Skipped to the very end of the file (its last part was not needed): nothing is
            // left to read. A length check downstream still decides whether that end is right.
            self.response = None;
            return Ok(());
        }
        let skip = match status {
            StatusCode::OK if from > 0 && !self.same_file(&resp) => {
                // If-Range failed: the whole file, replaced since the first response. Its
                // tail must not follow the old prefix the reader already has.
                return Err(FetchError::Replaced {
                    url: self.url.clone(),
                    delivered: from,
                });
            }
            // From 0, or a server ignoring ranges for the same file: skip what was delivered.
            StatusCode::OK => {
                self.range_end = None;
                from
            }
            StatusCode::PARTIAL_CONTENT if from > 0 || self.range_end.is_some() => {
                let start = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(from) {
                    return Err(self.transport(format!(
                        "resumed at the wrong offset (asked {from}, got {start:?})"
                    )));
                }
                0
            }
            s if !s.is_success() => {
                return Err(FetchError::Status {
                    url: self.url.clone(),
                    status: s,
                })
            }
            s => return Err(self.transport(format!("unexpected status {s}"))),
        };
        if let Some(len) = resp.content_length().filter(|_| self.range_end.is_none()) {
            let total = if skip == 0 {
                from.saturating_add(len)
            } else {
                len
            };
            if total > self.limit {
                return Err(FetchError::TooLong {
                    url: self.url.clone(),
                    limit: self.limit,
                });
            }
        }
        if from == 0 {
            self.validator = resp
                .headers()
                .get(ETAG)
                .filter(|v| v.as_bytes().starts_with(b"\""))
                .or_else(|| resp.headers().get(LAST_MODIFIED))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        let mut resp = resp;
        if skip > 0 {
            // The server ignored the range: read past what was already delivered.
            io::copy(&mut (&mut resp).take(skip), &mut io::sink())
                .map_err(|e| self.transport(e))?;
        }
        self.response = Some(resp);
        Ok(())
    }

    /// Whether a 200 answer to a resume is the file first downloaded: its validator (strong
    /// ETag, else Last-Modified) is the one the first response gave. Without a validator
    /// nothing tells, and the chunk hashes downstream are the only guard (as for a 206).
    fn same_file(&self, resp: &Response) -> bool {
        let Some(validator) = &self.validator else {
            return true;
        };
        let header = if validator.starts_with('"') {
            ETAG
        } else {
            LAST_MODIFIED
        };
        resp.headers()
            .get(header)
            .is_some_and(|v| v.as_bytes() == validator.as_bytes())
    }

    fn too_slow(&self) -> FetchError {
        FetchError::TooSlow {
            url: self.url.clone(),
            min: self.settings.min_bytes_per_sec,
            window_secs: self.settings.min_speed_window.as_secs(),
        }
    }

    fn check_speed(&mut self, got: usize) -> Result<(), FetchError> {
        self.window_bytes += got as u64;
        let elapsed = self.window_start.elapsed();
        let s = &self.settings;
        if elapsed >= s.min_speed_window {
            let needed = s
                .min_bytes_per_sec
                .saturating_mul(s.min_speed_window.as_secs().max(1));
            if self.window_bytes < needed {
                return Err(self.too_slow());
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        Ok(())
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.reopen {
                self.reopen = false;
                self.window_start = Instant::now();
                self.window_bytes = 0;
                self.request(self.delivered)?;
            }
            let Some(resp) = self.response.as_mut() else {
                return Ok(0);
            };
            // Read one byte past the limit at most, to tell "exactly the limit" from "more".
            let room = (self.limit - self.delivered).saturating_add(1);
            let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            match resp.read(&mut buf[..want]) {
                Ok(0) if self.range_end == Some(self.delivered) => {
                    // The head asked for is read: the rest comes from a second request.
                    self.range_end = None;
                    self.response = None;
                    self.reopen = true;
                }
                Ok(0) => {
                    if self.exact && self.delivered < self.limit {
                        // Closed early: resume below.
                        if self.resume()? {
                            continue;
                        }
                    }
                    self.response = None;
                    return Ok(0);
                }
                Ok(n) => {
                    if self.delivered + n as u64 > self.limit {
                        return Err(FetchError::TooLong {
                            url: self.url.clone(),
                            limit: self.limit,
                        }
                        .into());
                    }
                    self.delivered += n as u64;
                    self.check_speed(n)?;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The request's deadline (length ÷ minimum speed) ran out.
                    let timed_out = e.kind() == io::ErrorKind::TimedOut
                        || e.get_ref()
                            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                            .is_some_and(reqwest::Error::is_timeout);
                    if timed_out {
                        return Err(self.too_slow().into());
                    }
                    if self.resume()? {
                        continue;
                    }
                    return Err(self.transport(e).into());
                }
            }
        }
    }
}

impl crate::source::Forward for Download {
    /// Drops the response and asks for the rest from the new offset when next read: the
    /// skipped bytes are never transferred.
    fn forward(&mut self, n: u64) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let to = self.delivered.saturating_add(n);
        if to > self.limit {
            return Err(FetchError::TooLong {
                url: self.url.clone(),
                limit: self.limit,
            }
            .into());
        }
        self.response = None;
        self.range_end = None;
        self.delivered = to;
        self.reopen = true;
        Ok(())
    }
}

impl Download {
    /// Re-requests from the current offset after a drop. Ok(false) when out of attempts.
    fn resume(&mut self) -> io::Result<bool> {
        if self.resumes_left == 0 {
            return Ok(false);
        }
        self.resumes_left -= 1;
        self.response = None;
        std::thread::sleep(Duration::from_millis(200));
        self.request(self.delivered)?;
        Ok(true)
    }
}

/// reqwest's errors keep the interesting part in their sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
