//! `ota-server` through its real interface: the binary on a loopback port, spoken to with raw
//! HTTP/1.1 over TCP (so that paths reach it exactly as sent, unnormalised) and with curl for
//! TLS.
#![allow(clippy::unwrap_used)]

use ota_core::exit;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const SECRET: &str = "TOPSECRET-outside-the-repository";

/// `ota-server` on a loopback port, its access log in a file beside the repository.
struct Server {
    inner: ota_test_support::Server,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(repo: &Path, extra: &[&str]) -> Self {
        let log = repo.parent().unwrap().join(format!(
            "access-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut args = vec!["--access-log", log.to_str().unwrap()];
        args.extend_from_slice(extra);
        let inner = ota_test_support::Server::start(repo, &args);
        let addr = inner.addr();
        Server { inner, addr, log }
    }
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Sends `head` (request line + headers, without the final blank line) with
/// `Connection: close` and reads the whole reply.
fn request(addr: SocketAddr, head: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{head}\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

fn get(addr: SocketAddr, path: &str, extra: &str) -> Reply {
    let head = if extra.is_empty() {
        format!("GET {path} HTTP/1.1")
    } else {
        format!("GET {path} HTTP/1.1\r\n{extra}")
    };
    request(addr, &head)
}

struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bundle: Vec<u8>,
}

fn repo() -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), SECRET).unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("targets")).unwrap();
    std::fs::write(root.join("timestamp.json"), br#"{"signed":{"version":7}}"#).unwrap();
    std::fs::write(root.join("3.root.json"), b"{\"root\":3}").unwrap();
    // Larger than the server's in-memory limit, so ranges go through the streaming path.
    let bundle: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(root.join("targets/router-2.0.0.bundle"), &bundle).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), root.join("leak.json")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
    Repo {
        _dir: dir,
        root,
        bundle,
    }
}

#[test]
fn get_and_head_with_validators_and_cache_headers() {
    let r = repo();
    let srv = Server::start(&r.root, &[]);
    let body = std::fs::read(r.root.join("timestamp.json")).unwrap();

    let g = get(srv.addr, "/timestamp.json", "");
    assert_eq!(g.status, 200);
    assert_eq!(g.body, body);
    assert_eq!(g.headers["content-length"], body.len().to_string());
    assert_eq!(g.headers["content-type"], "application/json");
    assert_eq!(
        g.headers["cache-control"],
        "public, max-age=10, must-revalidate"
    );
    assert_eq!(g.headers["accept-ranges"], "bytes");
    assert!(g.headers["etag"].starts_with('"'));
    assert!(g.headers["last-modified"].ends_with("GMT"));

    let h = request(srv.addr, "HEAD /timestamp.json HTTP/1.1");
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty(), "HEAD sent a body");
    assert_eq!(h.headers["content-length"], body.len().to_string());
    assert_eq!(h.headers["etag"], g.headers["etag"]);

    let v = get(srv.addr, "/3.root.json", "");
    assert_eq!(
        v.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );

    let b = get(srv.addr, "/targets/router-2.0.0.bundle", "");
    assert_eq!(b.status, 200);
    assert_eq!(b.headers["content-length"], r.bundle.len().to_string());
    assert!(b.body == r.bundle, "streamed body differs");
    assert_eq!(b.headers["content-type"], "application/octet-stream");

    let p = request(
        srv.addr,
        "POST /timestamp.json HTTP/1.1\r\nContent-Length: 0",
    );
    assert_eq!(p.status, 405);
    assert_eq!(p.headers["allow"], "GET, HEAD");
    assert_eq!(get(srv.addr, "/missing.json", "").status, 404);
    assert_eq!(get(srv.addr, "/targets", "").status, 404);
}

#[test]
fn conditional_gets_answer_304_without_a_body() {
    let r = repo();
    let srv = Server::start(&r.root, &[]);
    let first = get(srv.addr, "/timestamp.json", "");
    let etag = &first.headers["etag"];
    let again = get(
        srv.addr,
        "/timestamp.json",
        &format!("If-None-Match: {etag}"),
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(&again.headers["etag"], etag);
    let stale = get(srv.addr, "/timestamp.json", "If-None-Match: \"0-0-0\"");
    assert_eq!(stale.status, 200);
    let since = &first.headers["last-modified"];
    assert_eq!(
        get(
            srv.addr,
            "/timestamp.json",
            &format!("If-Modified-Since: {since}")
        )
        .status,
        304
    );

    // A new timestamp (written by rename, as publishers do) gets a new ETag.
    let tmp = r.root.join("timestamp.json.new");
    std::fs::write(&tmp, br#"{"signed":{"version":8}}"#).unwrap();
    std::fs::rename(&tmp, r.root.join("timestamp.json")).unwrap();
    let changed = get(
        srv.addr,
        "/timestamp.json",
        &format!("If-None-Match: {etag}"),
    );
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body, br#"{"signed":{"version":8}}"#);
    assert_ne!(&changed.headers["etag"], etag);
}

#[test]
fn small_files_served_from_memory_follow_every_change() {
    let r = repo();
    let srv = Server::start(&r.root, &[]);
    let path = r.root.join("timestamp.json");
    let v7 = std::fs::read(&path).unwrap();
    assert_eq!(get(srv.addr, "/timestamp.json", "").body, v7);
    // A range of a file the server holds in memory.
    let part = get(srv.addr, "/timestamp.json", "Range: bytes=2-7");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &v7[2..8]);

    // Rewritten in place with the same length (a careless publisher): new bytes, new ETag.
    std::thread::sleep(Duration::from_millis(20));
    let v8 = br#"{"signed":{"version":8}}"#;
    assert_eq!(v8.len(), v7.len());
    std::fs::write(&path, v8).unwrap();
    assert_eq!(get(srv.addr, "/timestamp.json", "").body, v8);

    // Grown past the in-memory limit: streamed from the file, whole.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let tmp = r.root.join("timestamp.json.new");
    std::fs::write(&tmp, &big).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let g = get(srv.addr, "/timestamp.json", "");
    assert_eq!(g.headers["content-length"], big.len().to_string());
    assert!(g.body == big, "large replacement differs");

    // And small again.
    std::fs::write(&tmp, v7.as_slice()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(get(srv.addr, "/timestamp.json", "").body, v7);
}

#[test]
fn byte_ranges() {
    let r = repo();
    let srv = Server::start(&r.root, &[]);
    let path = "/targets/router-2.0.0.bundle";
    let len = r.bundle.len();
    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-0", 0, 0),
        ("bytes=1000000-1999999", 1_000_000, 1_999_999),
        ("bytes=2999990-", 2_999_990, len - 1),
        ("bytes=2999990-99999999", 2_999_990, len - 1),
        ("bytes=-10", len - 10, len - 1),
        ("bytes=-99999999", 0, len - 1),
    ];
    for &(range, first, last) in cases {
        let g = get(srv.addr, path, &format!("Range: {range}"));
        assert_eq!(g.status, 206, "{range}");
        assert_eq!(
            g.headers["content-range"],
            format!("bytes {first}-{last}/{len}"),
            "{range}"
        );
        assert_eq!(g.headers["content-length"], (last - first + 1).to_string());
        assert!(g.body == r.bundle[first..=last], "{range}: wrong bytes");
    }
    for range in ["bytes=3000000-", "bytes=5000000-5000001", "bytes=-0"] {
        let g = get(srv.addr, path, &format!("Range: {range}"));
        assert_eq!(g.status, 416, "{range}");
        assert_eq!(g.headers["content-range"], format!("bytes */{len}"));
        assert!(g.body.is_empty());
    }
    // Ignored ranges: the whole file.
    for range in ["bytes=0-1,5-6", "bytes=9-3", "chunks=0-1", "bytes=x-"] {
        let g = get(srv.addr, path, &format!("Range: {range}"));
        assert_eq!(g.status, 200, "{range}");
        assert_eq!(g.body.len(), len, "{range}");
    }
    // Resuming with If-Range: the current ETag resumes, a stale one restarts from 0.
    let etag = get(srv.addr, path, "Range: bytes=0-0").headers["etag"].clone();
    let resumed = get(
        srv.addr,
        path,
        &format!("Range: bytes=100-\r\nIf-Range: {etag}"),
    );
    assert_eq!(resumed.status, 206);
    assert!(resumed.body == r.bundle[100..]);
    let restarted = get(srv.addr, path, "Range: bytes=100-\r\nIf-Range: \"old\"");
    assert_eq!(restarted.status, 200);
    assert_eq!(restarted.body.len(), len);
}

#[test]
fn no_path_leaves_the_repository() {
    let r = repo();
    let srv = Server::start(&r.root, &[]);
    let corpus = [
        "/../outside/secret",
        "/targets/../../outside/secret",
        "/%2e%2e/outside/secret",
        "/%2E%2E/outside/secret",
        "/.%2e/outside/secret",
        "/%2e%2e%2foutside%2fsecret",
        "/..%2foutside%2fsecret",
        "/targets/%2e%2e/%2e%2e/outside/secret",
        "/..\\outside\\secret",
        "/%5c..%5coutside%5csecret",
        "//outside/secret",
        "/leak.json",
        "/out/secret",
        "/timestamp.json%00/../../outside/secret",
        "/%c0%ae%c0%ae/outside/secret",
        "http://test/../outside/secret",
        "/./timestamp.json",
    ];
    for path in corpus {
        let g = get(srv.addr, path, "");
        assert!(
            matches!(g.status, 400 | 403 | 404),
            "{path}: status {}",
            g.status
        );
        assert!(
            !String::from_utf8_lossy(&g.body).contains(SECRET),
            "{path} leaked the secret"
        );
    }
    assert_eq!(get(srv.addr, "/leak.json", "").status, 403);
    assert_eq!(get(srv.addr, "/%2e%2e/outside/secret", "").status, 400);
    // Absolute paths on the request line without a leading slash are not requests for files.
    let abs = request(srv.addr, "GET /etc/passwd HTTP/1.1");
    assert_eq!(abs.status, 404);
}

#[test]
fn oversized_request_heads_are_refused() {
    let r = repo();
    let srv = Server::start(&r.root, &[]);
    let big = format!("X-Filler: {}", "a".repeat(64 * 1024));
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer and close before reading it all: a reset is as good as a 431.
    let _ = write!(
        s,
        "GET /timestamp.json HTTP/1.1\r\nHost: t\r\n{big}\r\n\r\n"
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    if !raw.is_empty() {
        assert_eq!(parse(&raw).status, 431);
    }
    assert_eq!(get(srv.addr, "/timestamp.json", "").status, 200);
}

#[test]
fn slow_clients_neither_block_others_nor_hold_a_slot_forever() {
    let r = repo();
    // Two connection slots, both taken by clients that never finish their request head.
    let srv = Server::start(
        &r.root,
        &["--header-timeout", "2", "--max-connections", "2"],
    );
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.write_all(b"GET /timestamp.json HTTP/1.1\r\nHost: slow\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        slow.push(s);
    }
    // A normal client is still served: the slow ones are cut at the header timeout.
    let g = get(srv.addr, "/timestamp.json", "");
    assert_eq!(g.status, 200);
    // And the slow connections were closed by the server (408 or a plain close).
    for mut s in slow {
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        if !raw.is_empty() {
            assert_eq!(parse(&raw).status, 408);
        }
    }
}

#[test]
fn clients_that_do_not_read_lose_their_slot_at_the_minimum_send_rate() {
    let r = repo();
    // 64 MiB: far more than the socket buffers of a connection hold.
    let big = r.root.join("targets/big.bundle");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(64 << 20).unwrap();
    let srv = Server::start(
        &r.root,
        &[
            "--max-connections",
            "8",
            "--send-timeout",
            "2",
            "--min-send-rate",
            "1024",
        ],
    );
    // Eight clients ask for the big file and never read: every slot is taken.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        write!(
            s,
            "GET /targets/big.bundle HTTP/1.1\r\nHost: stalled\r\n\r\n"
        )
        .unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    // A ninth client waits in the backlog only until the stalled ones are cut (2-2.5 s).
    let started = std::time::Instant::now();
    assert_eq!(get(srv.addr, "/timestamp.json", "").status, 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    // Every stalled connection is closed within two windows (the kernel growing its send
    // buffer after the first refused write can pass for progress in the first), with most of
    // the file unsent.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(started.elapsed()));
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n as u64,
            }
        }
        assert!(got < 60 << 20, "a stalled client got {got} bytes");
    }
    // A client reading at full speed gets the whole file under the same rule.
    let g = get(srv.addr, "/targets/big.bundle", "");
    assert_eq!(g.status, 200);
    assert_eq!(g.body.len(), 64 << 20);
}

/// A connection to `addr` from the loopback address `from` (such as 127.0.0.2): another peer.
fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(addr).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Sends a GET of `/timestamp.json` on `s` and reads the reply; None if the server closed
/// the connection without one.
fn get_on(mut s: TcpStream) -> Option<Reply> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = write!(
        s,
        "GET /timestamp.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    (!raw.is_empty()).then(|| parse(&raw))
}

#[test]
fn one_peer_cannot_hold_more_than_its_share_of_connections() {
    let r = repo();
    let srv = Server::start(
        &r.root,
        &["--max-connections-per-peer", "2", "--header-timeout", "30"],
    );
    // Two idle connections from 127.0.0.1: its share.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A third from the same peer is closed without an answer...
    assert!(get_on(TcpStream::connect(srv.addr).unwrap()).is_none());
    // ... while another peer is served.
    let other = get_on(connect_from("127.0.0.2", srv.addr)).expect("127.0.0.2 refused");
    assert_eq!(other.status, 200);
    // Once one of the two is closed, the peer is served again.
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(srv.addr, "/timestamp.json", "").status, 200);
}

#[test]
fn sigterm_lets_a_download_in_flight_finish() {
    let r = repo();
    let mut srv = Server::start(&r.root, &[]);
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /targets/router-2.0.0.bundle HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 1024];
    s.read_exact(&mut first).unwrap();
    let pid = srv.inner.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut raw = first.to_vec();
    s.read_to_end(&mut raw).unwrap();
    let reply = parse(&raw);
    assert_eq!(reply.status, 200);
    assert!(
        reply.body == r.bundle,
        "the download was cut by the shutdown"
    );
    let status = srv.inner.wait();
    assert!(status.success(), "{status}");
    // The log was written out before the exit.
    let log = std::fs::read_to_string(&srv.log).unwrap();
    assert!(
        log.contains("\"GET /targets/router-2.0.0.bundle HTTP/1.1\" 200 "),
        "{log}"
    );
    // New connections are refused after the shutdown.
    assert!(TcpStream::connect(srv.addr).is_err());
}

#[test]
fn access_log_has_a_line_per_request() {
    let r = repo();
    let srv = Server::start(&r.root, &[]);
    get(srv.addr, "/timestamp.json", "");
    get(srv.addr, "/missing.json", "");
    get(srv.addr, "/targets/router-2.0.0.bundle", "Range: bytes=0-9");
    let lines = log_lines(&srv, 3);
    let log = lines.join("\n");
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[0].contains("\"GET /timestamp.json HTTP/1.1\" 200 24 "),
        "{log}"
    );
    assert!(
        lines[1].contains("\"GET /missing.json HTTP/1.1\" 404 "),
        "{log}"
    );
    assert!(
        lines[2].contains("\"GET /targets/router-2.0.0.bundle HTTP/1.1\" 206 10 "),
        "{log}"
    );
    assert!(lines[0].starts_with("127.0.0.1:"));
}

/// The access log's lines once it holds `count` of them (the server's log thread writes them
/// within moments).
fn log_lines(srv: &Server, count: usize) -> Vec<String> {
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(&srv.log).unwrap();
        if log.lines().count() >= count {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    log.lines().map(str::to_owned).collect()
}

#[test]
fn access_log_is_in_combined_format_with_the_user_agent_escaped() {
    let r = repo();
    let srv = Server::start(&r.root, &[]);
    let ua = "ota-update/0.1.0 (acme-router; 1.0.0; stable)";
    get(srv.addr, "/timestamp.json", &format!("User-Agent: {ua}"));
    // A client trying to forge fields: a quote in the target, quotes, a backslash, a tab and a
    // byte above 0x7e in the user agent.
    let raw = b"GET /a\"b.json HTTP/1.1\r\nHost: t\r\nUser-Agent: x\" 200 1 \"-\" \"ota\\\tu\xff\r\nConnection: close\r\n\r\n";
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.write_all(raw).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    assert_eq!(parse(&reply).status, 404);
    get(srv.addr, "/timestamp.json", "");
    let lines = log_lines(&srv, 3);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].contains(&format!(
            "\"GET /timestamp.json HTTP/1.1\" 200 24 \"-\" \"{ua}\" "
        )),
        "{lines:#?}"
    );
    assert!(lines[0].ends_with("ms"), "{lines:#?}");
    assert!(
        lines[1].contains(
            "\"GET /a\\x22b.json HTTP/1.1\" 404 10 \"-\" \"x\\x22 200 1 \\x22-\\x22 \\x22ota\\x5C\\x09u\\xFF\" "
        ),
        "{lines:#?}"
    );
    // Exactly the six quotes of the three quoted fields: nothing the client sent ends one.
    assert_eq!(lines[1].matches('"').count(), 6, "{lines:#?}");
    // No User-Agent: "-", as nginx logs it.
    assert!(lines[2].contains("\" 200 24 \"-\" \"-\" "), "{lines:#?}");
}

#[test]
fn serves_https_with_the_given_certificate() {
    let r = repo();
    let dir = r.root.parent().unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl req failed");
    let srv = Server::start(
        &r.root,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("https://{}/timestamp.json", srv.addr);
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&cert)
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout,
        std::fs::read(r.root.join("timestamp.json")).unwrap()
    );
    // A client that does not trust the certificate is not served.
    let untrusted = Command::new("curl")
        .args(["-sS", "--fail"])
        .arg(&url)
        .output()
        .unwrap();
    assert!(!untrusted.status.success());
}

#[test]
fn bad_invocations_exit_with_distinct_codes() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ota-server"))
            .args(args)
            .output()
            .unwrap()
    };
    let missing = run(&[
        "serve",
        "--repo",
        "/nonexistent/repo",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(missing.status.code(), Some(i32::from(exit::IO)));
    assert_eq!(String::from_utf8_lossy(&missing.stderr).lines().count(), 1);
    let usage = run(&["serve", "--repo", ".", "--tls-cert", "x.pem"]);
    assert_eq!(usage.status.code(), Some(i32::from(exit::USAGE)));
    let r = repo();
    let bad_tls = run(&[
        "serve",
        "--repo",
        r.root.to_str().unwrap(),
        "--tls-cert",
        "/nonexistent.pem",
        "--tls-key",
        "/nonexistent.key",
    ]);
    assert_eq!(bad_tls.status.code(), Some(i32::from(exit::USAGE)));
    assert!(String::from_utf8_lossy(&bad_tls.stderr).contains("TLS"));
}
