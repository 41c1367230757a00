//! The download client against deliberately broken and hostile HTTP servers on loopback:
//! dropped connections (resumed with Range, nothing downloaded twice), a file replaced between
//! a drop and the resume (never spliced), endless data, slow retrieval, stalls, servers that
//! ignore ranges, error statuses.
#![allow(clippy::unwrap_used)]

use ota_test_support::free_port;
use ota_updater::fetch::{FetchError, FetchSettings, Fetcher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server that hands the n-th connection (and its request head, lower-cased) to `handler`.
/// Returns the base URL and the request heads seen.
fn serve<F>(handler: F) -> (String, Arc<Mutex<Vec<String>>>)
where
    F: Fn(usize, &str, &mut TcpStream) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/file", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let mut head = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            seen2.lock().unwrap().push(head.clone());
            handler(n, &head, &mut stream);
        }
    });
    (url, seen)
}

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 997) as u8)
        .collect()
}

fn fast_settings() -> FetchSettings {
    FetchSettings {
        connect_timeout: Duration::from_secs(2),
        min_bytes_per_sec: 1000,
        min_speed_window: Duration::from_secs(1),
        ..FetchSettings::default()
    }
}

#[test]
fn a_dropped_download_resumes_from_where_it_stopped() {
    let body = data(200_000);
    let served = body.clone();
    let (url, seen) = serve(move |n, head, s| match n {
        0 => {
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\nETag: \"v1\"\r\n\r\n"
            )
            .unwrap();
            s.write_all(&served[..70_000]).unwrap();
            // Dropped: the connection closes mid-body.
        }
        _ => {
            assert!(head.contains("range: bytes=70000-"), "{head}");
            assert!(head.contains("if-range: \"v1\""), "{head}");
            write!(
                s,
                "HTTP/1.1 206 Partial Content\r\nContent-Length: 130000\r\nContent-Range: bytes 70000-199999/200000\r\n\r\n"
            )
            .unwrap();
            s.write_all(&served[70_000..]).unwrap();
        }
    });
    let fetcher = Fetcher::new(fast_settings()).unwrap();
    let mut d = fetcher.open(&url, 200_000, true).unwrap();
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert!(got == body, "resumed download differs");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn a_server_ignoring_ranges_still_gives_the_right_bytes() {
    let body = data(100_000);
    let served = body.clone();
    let (url, _) = serve(move |n, _, s| {
        write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n").unwrap();
        let end = if n == 0 { 30_000 } else { 100_000 };
        s.write_all(&served[..end]).unwrap();
    });
    let fetcher = Fetcher::new(fast_settings()).unwrap();
    let mut got = Vec::new();
    fetcher
        .open(&url, 100_000, true)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == body);
}

/// A server whose file is replaced between a dropped first response (70,000 bytes of `old`,
/// ETag "v1") and the resume, which it answers as RFC 9110 says when `If-Range` does not hold:
/// 200 with the whole `new` file (ETag "v2").
fn replaced_midway(old: Vec<u8>, new: Vec<u8>) -> (String, Arc<Mutex<Vec<String>>>) {
    serve(move |n, head, s| {
        if n == 0 {
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\n\r\n",
                old.len()
            )
            .unwrap();
            s.write_all(&old[..70_000]).unwrap();
            return;
        }
        if n == 1 {
            assert!(head.contains("range: bytes=70000-"), "{head}");
            assert!(head.contains("if-range: \"v1\""), "{head}");
        } else {
            assert!(!head.contains("range:"), "{head}");
        }
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v2\"\r\n\r\n",
            new.len()
        )
        .unwrap();
        s.write_all(&new).unwrap();
    })
}

#[test]
fn a_file_replaced_during_a_resumed_download_is_never_spliced() {
    let old = data(200_000);
    let new: Vec<u8> = data(200_000).iter().map(|b| b ^ 0x5a).collect();
    // A stream (the installer's case): the old prefix was handed on, so the download fails
    // cleanly; nothing of the new file follows the old bytes.
    let (url, seen) = replaced_midway(old.clone(), new.clone());
    let fetcher = Fetcher::new(fast_settings()).unwrap();
    let mut d = fetcher.open(&url, 200_000, true).unwrap();
    let mut got = Vec::new();
    let err = d.read_to_end(&mut got).unwrap_err();
    let err = ota_updater::fetch::unwrap_io(&url, err);
    assert!(
        matches!(
            err,
            FetchError::Replaced {
                delivered: 70_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(got == old[..70_000], "bytes of the new file were appended");
    assert_eq!(seen.lock().unwrap().len(), 2);
    // In memory (metadata): downloaded again from byte 0, the new file whole.
    let (url, seen) = replaced_midway(old.clone(), new.clone());
    let got = fetcher.get_bytes(&url, 200_000).unwrap();
    assert!(got == new, "not the new file from byte 0");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn a_server_ignoring_ranges_for_the_same_file_is_resumed() {
    // 200 to the resume, but with the first response's ETag: the same file, so the bytes
    // already delivered are skipped.
    let body = data(100_000);
    let served = body.clone();
    let (url, _) = serve(move |n, _, s| {
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nETag: \"same\"\r\n\r\n"
        )
        .unwrap();
        let end = if n == 0 { 30_000 } else { 100_000 };
        s.write_all(&served[..end]).unwrap();
    });
    let fetcher = Fetcher::new(fast_settings()).unwrap();
    let mut got = Vec::new();
    fetcher
        .open(&url, 100_000, true)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == body);
}

#[test]
fn endless_data_is_cut_at_the_expected_length() {
    let (url, _) = serve(|_, _, s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let chunk = vec![b'x'; 65536];
        while s.write_all(&chunk).is_ok() {}
    });
    let fetcher = Fetcher::new(fast_settings()).unwrap();
    let mut d = fetcher.open(&url, 100_000, false).unwrap();
    let mut got = Vec::new();
    let err = d.read_to_end(&mut got).unwrap_err();
    let err = ota_updater::fetch::unwrap_io(&url, err);
    assert!(
        matches!(err, FetchError::TooLong { limit: 100_000, .. }),
        "{err}"
    );
    assert!(d.delivered() <= 100_000);
}

#[test]
fn an_announced_length_over_the_limit_is_refused_before_the_body() {
    let (url, _) = serve(|_, _, s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\nxxxx"
        );
    });
    let fetcher = Fetcher::new(fast_settings()).unwrap();
    let err = fetcher.open(&url, 4096, false).err().unwrap();
    assert!(matches!(err, FetchError::TooLong { .. }), "{err}");
    assert!(err.to_string().contains("endless data"));
}

#[test]
fn a_trickling_server_is_abandoned() {
    let (url, _) = serve(|_, _, s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        for _ in 0..200 {
            if s.write_all(b"0123456789").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let fetcher = Fetcher::new(fast_settings()).unwrap();
    let mut d = fetcher.open(&url, 100_000, true).unwrap();
    let err = d.read_to_end(&mut Vec::new()).unwrap_err();
    let err = ota_updater::fetch::unwrap_io(&url, err);
    assert!(matches!(err, FetchError::TooSlow { .. }), "{err}");
}

#[test]
fn a_stalled_server_is_abandoned() {
    let (url, _) = serve(|_, _, s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        std::thread::sleep(Duration::from_secs(30));
    });
    let fetcher = Fetcher::new(FetchSettings {
        resume_attempts: 0,
        ..fast_settings()
    })
    .unwrap();
    let mut d = fetcher.open(&url, 1000, true).unwrap();
    let err = d.read_to_end(&mut Vec::new()).unwrap_err();
    let err = ota_updater::fetch::unwrap_io(&url, err);
    assert!(matches!(err, FetchError::TooSlow { .. }), "{err}");
}

#[test]
fn error_statuses_and_dead_servers_are_reported() {
    let (url, _) = serve(|_, _, s| {
        let _ = write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    });
    let fetcher = Fetcher::new(fast_settings()).unwrap();
    let err = fetcher.open(&url, 10, false).err().unwrap();
    assert!(matches!(err, FetchError::Status { .. }), "{err}");
    assert!(err.to_string().contains("404"));

    // Nothing listens here any more.
    let port = free_port();
    let err = fetcher
        .open(&format!("http://127.0.0.1:{port}/x"), 10, false)
        .err()
        .unwrap();
    assert!(matches!(err, FetchError::Transport { .. }), "{err}");
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let err = Fetcher::new(FetchSettings {
        ca_file: Some(ca),
        ..FetchSettings::default()
    })
    .err()
    .unwrap();
    assert!(matches!(err, FetchError::Setup(_)), "{err}");
}
