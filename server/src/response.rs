//! What to answer for a file: status, validators, caching and the byte range, decided from the
//! file's metadata and the request headers alone (no I/O), so every HTTP rule is unit-tested.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::StatusCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the server knows about a file before reading it.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Its name (last path segment), for content type and caching policy.
    pub name: String,
    /// Length in bytes.
    pub len: u64,
    /// Modification time.
    pub modified: SystemTime,
    /// Inode number: part of the ETag, so a replaced file with the same size and second
    /// gets a new one.
    pub inode: u64,
}

/// The decided response.
#[derive(Debug)]
pub struct Plan {
    /// Status code.
    pub status: StatusCode,
    /// Headers to send.
    pub headers: HeaderMap,
    /// Bytes of the file to send as the body: (offset, length). None: no body.
    pub body: Option<(u64, u64)>,
}

impl FileInfo {
    /// Strong validator: changes whenever the file is replaced or rewritten.
    pub fn etag(&self) -> String {
        let nanos = self
            .modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("\"{:x}-{:x}-{:x}\"", self.inode, nanos, self.len)
    }
}

/// Cache policy by name. TUF metadata names tell what may change: `timestamp.json` changes
/// every few minutes and must stay fresh (freeze attacks are detected from it); versioned
/// metadata (`7.root.json`) and hash-prefixed targets never change once published; the rest
/// (unversioned `snapshot.json`, `targets.json`, `root.json`, plain bundle names) changes on
/// publish.
pub fn cache_control(name: &str) -> &'static str {
    if name == "timestamp.json" {
        "public, max-age=10, must-revalidate"
    } else if is_versioned(name) || is_hash_prefixed(name) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=60, must-revalidate"
    }
}

fn is_versioned(name: &str) -> bool {
    name.split_once('.')
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_hash_prefixed(name: &str) -> bool {
    name.split_once('.').is_some_and(|(h, _)| {
        matches!(h.len(), 64 | 128) && h.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// Decides the answer to a GET or HEAD of `file` (the caller has checked the method; HEAD gets
/// the same headers and no body).
pub fn plan(file: &FileInfo, request: &HeaderMap, head: bool) -> Plan {
    let etag = file.etag();
    let mut headers = HeaderMap::new();
    let put = |h: &mut HeaderMap, name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put(&mut headers, header::ETAG, &etag);
    put(
        &mut headers,
        header::LAST_MODIFIED,
        &httpdate::fmt_http_date(file.modified),
    );
    put(
        &mut headers,
        header::CACHE_CONTROL,
        cache_control(&file.name),
    );
    put(&mut headers, header::ACCEPT_RANGES, "bytes");

    if not_modified(file, &etag, request) {
        return Plan {
            status: StatusCode::NOT_MODIFIED,
            headers,
            body: None,
        };
    }
    put(&mut headers, header::CONTENT_TYPE, content_type(&file.name));

    let range = request
        .get(header::RANGE)
        .filter(|_| if_range_holds(file, &etag, request))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, file.len));
    let (status, offset, len) = match range {
        None => (StatusCode::OK, 0, file.len),
        Some(Ok((start, end))) => {
            put(
                &mut headers,
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{}", file.len),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Some(Err(Unsatisfiable)) => {
            put(
                &mut headers,
                header::CONTENT_RANGE,
                &format!("bytes */{}", file.len),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
            return Plan {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                body: None,
            };
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Plan {
        status,
        headers,
        body: (!head).then_some((offset, len)),
    }
}

/// RFC 9110 §13.1.2–3: If-None-Match (weak comparison) wins over If-Modified-Since.
fn not_modified(file: &FileInfo, etag: &str, request: &HeaderMap) -> bool {
    if let Some(inm) = request.get(header::IF_NONE_MATCH) {
        let Ok(inm) = inm.to_str() else { return false };
        return inm
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    }
    if let Some(ims) = request.get(header::IF_MODIFIED_SINCE) {
        let since = ims
            .to_str()
            .ok()
            .and_then(|s| httpdate::parse_http_date(s).ok());
        if let Some(since) = since {
            // HTTP dates have whole seconds.
            let modified = file
                .modified
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(u64::MAX);
            let since = since
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            return modified <= since;
        }
    }
    false
}

/// If-Range with an ETag must match exactly (strong); with a date, the file must not be newer.
fn if_range_holds(file: &FileInfo, etag: &str, request: &HeaderMap) -> bool {
    let Some(value) = request.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    if value.starts_with('"') {
        return value == etag;
    }
    match httpdate::parse_http_date(value) {
        Ok(date) => httpdate::fmt_http_date(file.modified) == httpdate::fmt_http_date(date),
        Err(_) => false,
    }
}

/// The range is valid but covers no byte of the file.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Parses a Range header for a file of `len` bytes: `Some(Ok((first, last)))` inclusive,
/// `Some(Err(Unsatisfiable))` for a well-formed range outside the file, `None` when the header
/// is to be ignored (malformed, another unit, or several ranges: the whole file is served).
pub fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), Unsatisfiable>> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if first.is_empty() {
        // Suffix: the last N bytes.
        let n = parse(last)?;
        if n == 0 || len == 0 {
            return Some(Err(Unsatisfiable));
        }
        return Some(Ok((len.saturating_sub(n), len - 1)));
    }
    let start = parse(first)?;
    let end = if last.is_empty() {
        u64::MAX
    } else {
        parse(last)?
    };
    if end < start {
        return None;
    }
    if start >= len {
        return Some(Err(Unsatisfiable));
    }
    Some(Ok((start, end.min(len - 1))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn file(name: &str, len: u64) -> FileInfo {
        FileInfo {
            name: name.into(),
            len,
            modified: UNIX_EPOCH + Duration::from_secs(1_790_000_000),
            inode: 42,
        }
    }

    fn req(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-0", 10), Some(Ok((0, 0))));
        assert_eq!(parse_range("bytes=2-", 10), Some(Ok((2, 9))));
        assert_eq!(parse_range("bytes=2-100", 10), Some(Ok((2, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Some(Ok((7, 9))));
        assert_eq!(parse_range("bytes=-30", 10), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=9-9", 10), Some(Ok((9, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Some(Err(Unsatisfiable)));
        assert_eq!(parse_range("bytes=-0", 10), Some(Err(Unsatisfiable)));
        assert_eq!(parse_range("bytes=0-", 0), Some(Err(Unsatisfiable)));
        assert_eq!(parse_range("bytes=-1", 0), Some(Err(Unsatisfiable)));
        // Ignored: whole file.
        assert_eq!(parse_range("bytes=5-2", 10), None);
        assert_eq!(parse_range("bytes=0-1,4-5", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=a-b", 10), None);
        assert_eq!(parse_range("bytes=+1-2", 10), None);
        assert_eq!(parse_range("bytes=-", 10), None);
        assert_eq!(parse_range("bytes=99999999999999999999-", 10), None);
    }

    #[test]
    fn conditional_requests() {
        let f = file("timestamp.json", 100);
        let etag = f.etag();
        let p = plan(&f, &req(&[("if-none-match", &etag)]), false);
        assert_eq!(p.status, StatusCode::NOT_MODIFIED);
        assert!(p.body.is_none());
        assert_eq!(p.headers["etag"], etag.as_str());
        let weak = format!("\"x\", W/{etag}");
        assert_eq!(
            plan(&f, &req(&[("if-none-match", &weak)]), false).status,
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            plan(&f, &req(&[("if-none-match", "\"other\"")]), false).status,
            StatusCode::OK
        );
        let later = httpdate::fmt_http_date(f.modified + Duration::from_secs(5));
        let earlier = httpdate::fmt_http_date(f.modified - Duration::from_secs(5));
        assert_eq!(
            plan(&f, &req(&[("if-modified-since", &later)]), false).status,
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            plan(&f, &req(&[("if-modified-since", &earlier)]), false).status,
            StatusCode::OK
        );
        // If-None-Match takes precedence over If-Modified-Since.
        assert_eq!(
            plan(
                &f,
                &req(&[
                    ("if-none-match", "\"other\""),
                    ("if-modified-since", &later)
                ]),
                false
            )
            .status,
            StatusCode::OK
        );
    }

    #[test]
    fn range_responses() {
        let f = file("1.root.json", 10);
        let p = plan(&f, &req(&[("range", "bytes=2-4")]), false);
        assert_eq!(p.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(p.headers["content-range"], "bytes 2-4/10");
        assert_eq!(p.headers["content-length"], "3");
        assert_eq!(p.body, Some((2, 3)));
        let p = plan(&f, &req(&[("range", "bytes=10-")]), false);
        assert_eq!(p.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(p.headers["content-range"], "bytes */10");
        // If-Range with a stale validator: the whole file.
        let p = plan(
            &f,
            &req(&[("range", "bytes=2-4"), ("if-range", "\"stale\"")]),
            false,
        );
        assert_eq!(p.status, StatusCode::OK);
        assert_eq!(p.body, Some((0, 10)));
        let etag = f.etag();
        let p = plan(
            &f,
            &req(&[("range", "bytes=2-4"), ("if-range", &etag)]),
            false,
        );
        assert_eq!(p.status, StatusCode::PARTIAL_CONTENT);
        // HEAD: same headers, no body.
        let p = plan(&f, &req(&[("range", "bytes=2-4")]), true);
        assert_eq!(p.headers["content-length"], "3");
        assert!(p.body.is_none());
    }

    #[test]
    fn caching_by_name() {
        assert_eq!(
            cache_control("timestamp.json"),
            "public, max-age=10, must-revalidate"
        );
        assert!(cache_control("12.root.json").contains("immutable"));
        assert!(cache_control("3.snapshot.json").contains("immutable"));
        let hashed = format!("{}.router-2.0.0.bundle", "ab".repeat(32));
        assert!(cache_control(&hashed).contains("immutable"));
        assert!(cache_control("snapshot.json").contains("max-age=60"));
        assert!(cache_control("router-2.0.0.bundle").contains("max-age=60"));
        assert!(cache_control(".json").contains("max-age=60"));
    }
}
