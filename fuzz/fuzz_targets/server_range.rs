//! `ota-server`'s Range header parser (`ota_server::response::parse_range`) and the response
//! planner around it (`plan`: Range, If-Range, If-None-Match, If-Modified-Since).
//!
//! Input: the file length in decimal on the first line, then `Name: value` header lines.
//! Properties: a satisfiable range lies inside the file (first <= last < length); a planned
//! body never reaches past the file; 206 answers carry the matching Content-Range, 416
//! answers no body.
#![no_main]

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_RANGE};
use hyper::StatusCode;
use libfuzzer_sys::fuzz_target;
use ota_server::response::{parse_range, plan, FileInfo};
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let len = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.trim().parse::<u64>().ok())
        .unwrap_or(1000);
    let mut headers = HeaderMap::new();
    for line in lines.take(8) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let Ok(text) = std::str::from_utf8(value) {
            if let Some(Ok((first, last))) = parse_range(text, len) {
                assert!(
                    first <= last && last < len,
                    "range {first}-{last} of {len} bytes"
                );
            }
        }
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let file = FileInfo {
        name: "timestamp.json".into(),
        len,
        modified: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        inode: 42,
    };
    for head in [false, true] {
        let p = plan(&file, &headers, head);
        if let Some((offset, n)) = p.body {
            assert!(!head, "a body for HEAD");
            assert!(
                offset.checked_add(n).is_some_and(|end| end <= len),
                "body past the file"
            );
        }
        match p.status {
            StatusCode::PARTIAL_CONTENT => {
                let cr = p.headers.get(CONTENT_RANGE).expect("Content-Range on 206");
                let cr = cr.to_str().expect("ASCII");
                assert!(
                    cr.starts_with("bytes ") && cr.ends_with(&format!("/{len}")),
                    "{cr}"
                );
                if let Some((offset, n)) = p.body {
                    assert!(n >= 1);
                    assert_eq!(cr, format!("bytes {offset}-{}/{len}", offset + n - 1));
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE => assert!(p.body.is_none()),
            StatusCode::OK => {
                if let Some(body) = p.body {
                    assert_eq!(body, (0, len));
                }
            }
            _ => {}
        }
    }
});
